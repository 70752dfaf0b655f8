"""Peak memory and time of whole cases against the voxel count (issue 14).

A synthetic case (an activity image and a label map on the same grid: a liver ellipsoid, two
tumours, a lung; 5 bytes of input per voxel: float32 activity + uint8 labels) is written to
NRRD files at several sizes and run with ``tare-dosimetry run --no-report`` in a fresh process
per size and method.  Each process reports

* ``peak_mb_over_imports``: peak resident memory (VmHWM, reset once the engine's modules a run uses
  are imported)
  minus the resident memory then (VmRSS), i.e. what reading the inputs and computing the case add;
* ``bytes_per_voxel``: that, divided by the voxels of the largest grid;
* the wall time of ``main()``.

Goals (README): LDM <= 12 bytes per voxel, DVK <= 20, linear in the voxels (the bytes per voxel
do not grow with the size).

A second mode, ``--large``, runs the segmentation-over-PET case of the issue: a label map of
``--seg-shape`` voxels (default 1000 x 1024 x 1024 = 1.05e9, 0.5 mm) over a 4 mm PET grid,
and reports the same figures.

Usage: python benchmarks/bench_memory.py [--sizes 200 300 400] [--methods ldm dvk] [--json ...]
       python benchmarks/bench_memory.py --large [--seg-shape 1000 1024 1024]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

_CHILD = r"""
import sys, time
from TAREDosimetryLib.cli import main
# The engine's modules a run imports (the package loads them on first use): imported before the baseline.
import SimpleITK, TAREDosimetryLib.batch.casefiles, TAREDosimetryLib.pipeline, TAREDosimetryLib.reporting.outputs  # noqa: E401

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM): a forked process inherits its parent's
    fh.write("5")
base = status("VmRSS")
t = time.perf_counter()
rc = main(sys.argv[1:])
wall = time.perf_counter() - t
peak = status("VmHWM")
print("RESULT", rc, base, peak, wall)
"""


def _write_nrrd(array, spacing, origin, path):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    sitk.WriteImage(img, path, useCompression=False)


def _shapes(seg_shape, spacing, lung=True):
    """Liver, tumour (and lung) label map (uint8) of ``seg_shape`` (z, y, x) at ``spacing`` mm, slab by slab."""
    nz, ny, nx = seg_shape
    labels = np.zeros(seg_shape, np.uint8)
    y = (np.arange(ny) - ny / 2) * spacing
    x = (np.arange(nx) - nx / 2) * spacing
    ext = np.array([nx, ny, nz]) * spacing / 2  # half extents x, y, z
    for k in range(nz):
        z = (k - nz / 2) * spacing
        yy, xx = y[:, None], x[None, :]
        liver = (xx / (0.6 * ext[0])) ** 2 + (yy / (0.6 * ext[1])) ** 2 + (z / (0.5 * ext[2])) ** 2 <= 1
        t1 = (xx + 0.2 * ext[0]) ** 2 + yy**2 + z**2 <= (0.15 * ext.min()) ** 2
        t2 = (xx - 0.25 * ext[0]) ** 2 + (yy - 0.1 * ext[1]) ** 2 + (z - 0.1 * ext[2]) ** 2 <= (0.08 * ext.min()) ** 2
        lung_part = ((xx / (0.5 * ext[0])) ** 2 + (yy / (0.5 * ext[1])) ** 2 <= 1) & (z > 0.65 * ext[2])
        sl = labels[k]
        sl[liver] = 1
        sl[t1 & liver] = 2
        sl[t2 & liver] = 3
        if lung:
            sl[lung_part] = 4
    return labels


def make_case(folder, n, spacing=1.5, lung=False):
    """(activity path, label map path) of an n^3 case on one grid (liver, two tumours, optionally a lung)."""
    shape = (n, n, n)
    labels = _shapes(shape, spacing, lung)
    act = np.full(shape, 0.02, np.float32)
    uptake = np.array([0.02, 1.0, 6.0, 3.0, 0.1], np.float32)
    for k in range(n):  # slab by slab: no float64 temporaries
        act[k] = uptake[labels[k]]
    origin = (0.0, 0.0, 0.0)
    tag = f"{n}{'lung' if lung else ''}"
    a, s = os.path.join(folder, f"act{tag}.nrrd"), os.path.join(folder, f"seg{tag}.nrrd")
    _write_nrrd(act, (spacing,) * 3, origin, a)
    _write_nrrd(labels, (spacing,) * 3, origin, s)
    return a, s


ENGINE = REPO  # the checkout whose engine runs the cases (--repo)


def run_child(args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ENGINE, "TAREDosimetry"))
    r = subprocess.run([sys.executable, "-c", _CHILD] + args, capture_output=True, text=True, env=env)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    if r.returncode != 0 or not line or line[0].split()[1] != "0":
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:]}
    _, rc, base, peak, wall = line[0].split()
    return {"rc": int(rc), "imports_rss_mb": int(base) / 1024, "peak_mb_over_imports": (int(peak) - int(base)) / 1024,
            "wall_s": float(wall)}


def case_args(act, seg, out, method, lung=True):
    labels = "1=liver,2=tumour 1,3=tumour 2" + (",4=lung" if lung else "")
    return ["run", "--spect", act, "--segmentation", seg, "--labels", labels,
            "--administered-activity-gbq", "2", "--lung-shunt-fraction", "0.05", "--method", method,
            "--out", out, "--no-report", "--quiet", "--overwrite"]


def bench_sizes(sizes, methods, repeat, lung=False):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            act, seg = make_case(tmp, n, lung=lung)
            for method in methods:
                runs = [run_child(case_args(act, seg, os.path.join(tmp, "out"), method, lung)) for _ in range(repeat)]
                ok = [r for r in runs if "error" not in r]
                if not ok:
                    rows.append({"n": n, "voxels": n**3, "method": method, "lung": lung, "error": runs[0]["error"]})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                peak = min(r["peak_mb_over_imports"] for r in ok)
                rows.append({"n": n, "voxels": n**3, "method": method, "lung": lung, "peak_mb_over_imports": peak,
                             "bytes_per_voxel": peak * 2**20 / n**3, "wall_s_median": float(np.median([r["wall_s"] for r in ok])),
                             "wall_s_range": [min(r["wall_s"] for r in ok), max(r["wall_s"] for r in ok)]})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_large(seg_shape, seg_spacing, pet_spacing, folder):
    """A label map of ``seg_shape`` (z, y, x) at ``seg_spacing`` mm over a PET grid of ``pet_spacing`` mm."""
    t0 = time.perf_counter()
    labels = _shapes(seg_shape, seg_spacing, lung=True)
    extent = np.array(seg_shape[::-1]) * seg_spacing  # x, y, z mm
    pet_shape = tuple(int(np.ceil(e / pet_spacing)) for e in extent[::-1])
    origin_seg = (0.0, 0.0, 0.0)
    origin_pet = tuple((pet_spacing - seg_spacing) / 2 for _ in range(3))
    # PET: the label map's uptake averaged onto 4 mm voxels (counts)
    f = int(round(pet_spacing / seg_spacing))
    uptake = np.array([0.02, 1.0, 6.0, 3.0, 0.1], np.float32)
    pet = np.zeros(pet_shape, np.float32)
    for kz in range(pet_shape[0]):
        block = labels[kz * f:(kz + 1) * f]
        vals = uptake[block]
        pz, py, px = vals.shape[0], (vals.shape[1] // f) * f, (vals.shape[2] // f) * f
        m = vals[:, :py, :px].reshape(pz, py // f, f, px // f, f).mean(axis=(0, 2, 4))
        pet[kz, : m.shape[0], : m.shape[1]] = m
    a, s = os.path.join(folder, "pet.nrrd"), os.path.join(folder, "seg.nrrd")
    _write_nrrd(pet, (pet_spacing,) * 3, origin_pet, a)
    _write_nrrd(labels, (seg_spacing,) * 3, origin_seg, s)
    del labels, pet
    made = time.perf_counter() - t0
    res = run_child(case_args(a, s, os.path.join(folder, "out"), "ldm"))
    res.update(seg_shape_zyx=list(seg_shape), seg_voxels=int(np.prod(seg_shape)), pet_shape_zyx=list(pet_shape),
               case_written_s=made)
    if "peak_mb_over_imports" in res:
        res["bytes_per_seg_voxel"] = res["peak_mb_over_imports"] * 2**20 / res["seg_voxels"]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 300, 400])
    ap.add_argument("--methods", nargs="+", default=["ldm", "dvk"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lung", action="store_true", help="add a lung segment (without a CT the density mixes tissue and lung on the lung's box only)")
    ap.add_argument("--large", action="store_true", help="the 1e9-voxel segmentation over a PET grid")
    ap.add_argument("--seg-shape", type=int, nargs=3, default=[1000, 1024, 1024], help="z y x of the large label map")
    ap.add_argument("--seg-spacing", type=float, default=0.5)
    ap.add_argument("--pet-spacing", type=float, default=4.0)
    ap.add_argument("--folder", default=None, help="where the large case is written (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--repo", default=REPO, help="checkout whose engine runs the cases (default: this one)")
    args = ap.parse_args(argv)
    global ENGINE
    ENGINE = os.path.abspath(args.repo)
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
           "engine": ENGINE}
    if args.large:
        with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
            res["large"] = bench_large(tuple(args.seg_shape), args.seg_spacing, args.pet_spacing, tmp)
        print(json.dumps(res["large"], indent=1))
    else:
        res["sizes"] = bench_sizes(args.sizes, args.methods, args.repeat, args.lung)
    path = args.json or os.path.join(REPO, "benchmarks", "results", "memory_large.json" if args.large else "memory.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
