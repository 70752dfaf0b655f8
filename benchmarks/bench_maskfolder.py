"""A folder of disjoint organ masks (as TotalSegmentator writes one file per class) read as a
segmentation: time and peak memory of ``read_segmentation`` in a fresh process.

``--masks`` disjoint box-shaped organs on a ``--shape`` grid (1.5 mm, written as .nii.gz); each
variant runs in its own Python process (``--repeat`` times, interleaved with the baseline when
``--baseline-repo`` names a checkout of another engine, e.g. ``git archive 3fe442a | tar -x -C
/tmp/base``), which reports the wall time of the read and its peak resident memory (VmHWM) over the
memory after the imports.

Usage: python benchmarks/bench_maskfolder.py [--masks 30] [--shape 300 256 256] [--repeat 3]
       [--baseline-repo /tmp/base] [--json benchmarks/results/maskfolder.json]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import sys, time
from TAREDosimetryLib.imaging.segmentation_io import read_segmentation

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status("VmRSS")
t = time.perf_counter()
seg = read_segmentation(sys.argv[1])
wall = time.perf_counter() - t
print("RESULT", wall, (status("VmHWM") - base) / 1024, len(seg.names), seg.layers.shape[0])
"""


def write_folder(folder, n, shape):
    """``n`` disjoint box-shaped masks on a grid of ``shape`` (z, y, x) at 1.5 mm."""
    import SimpleITK as sitk

    per_axis = int(np.ceil(n ** (1 / 3)))
    steps = [s // per_axis for s in shape]
    k = 0
    for iz in range(per_axis):
        for iy in range(per_axis):
            for ix in range(per_axis):
                if k == n:
                    return
                m = np.zeros(shape, np.uint8)
                lo = [i * st + st // 8 for i, st in zip((iz, iy, ix), steps)]
                hi = [i * st + st - st // 8 for i, st in zip((iz, iy, ix), steps)]
                m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
                img = sitk.GetImageFromArray(m)
                img.SetSpacing((1.5, 1.5, 1.5))
                k += 1
                sitk.WriteImage(img, os.path.join(folder, f"organ_{k:03d}.nii.gz"), useCompression=True)


def run(repo, folder):
    env = dict(os.environ, PYTHONPATH=os.path.join(repo, "TAREDosimetry"))
    r = subprocess.run([sys.executable, "-c", _CHILD, folder], capture_output=True, text=True, env=env)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT")]
    if r.returncode != 0 or not line:
        raise SystemExit(f"read failed ({repo}): {r.stderr.strip()[-400:]}")
    wall, mb, names, layers = line[0].split()[1:]
    return {"wall_s": float(wall), "peak_mb_over_imports": float(mb), "segments": int(names), "layers": int(layers)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", type=int, default=30)
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 256, 256])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-repo", default=None)
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "maskfolder.json"))
    args = ap.parse_args(argv)
    engines = {"ours": REPO} | ({"baseline": os.path.abspath(args.baseline_repo)} if args.baseline_repo else {})
    runs = {k: [] for k in engines}
    with tempfile.TemporaryDirectory() as folder:
        write_folder(folder, args.masks, tuple(args.shape))
        for _ in range(args.repeat):
            for name, repo in engines.items():
                runs[name].append(run(repo, folder))
    res = {k: {"wall_s_median": float(np.median([r["wall_s"] for r in v])),
               "peak_mb_over_imports": max(r["peak_mb_over_imports"] for r in v), "layers": v[0]["layers"], "runs": v}
           for k, v in runs.items()}
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "masks": args.masks,
           "shape_zyx": args.shape, "voxels_per_mask": int(np.prod(args.shape)), "results": res}
    if "baseline" in res:
        out["ratios"] = {"time_baseline_over_ours": res["baseline"]["wall_s_median"] / res["ours"]["wall_s_median"],
                         "memory_baseline_over_ours": res["baseline"]["peak_mb_over_imports"] / res["ours"]["peak_mb_over_imports"]}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps({k: {x: v[x] for x in ("wall_s_median", "peak_mb_over_imports", "layers")} for k, v in res.items()}
                     | {"ratios": out.get("ratios")}, indent=1))


if __name__ == "__main__":
    main()
