"""Benchmark of one whole case on the shared MAA case against its floor (issue 14).

Each measure is a fresh Python process (as a user runs it), repeated ``--repeat`` times in
interleaved rounds (so that the load of a shared machine falls on every variant alike); the
JSON keeps every run, the README quotes medians and ranges:

* ``floor``: import NumPy and SimpleITK, read both inputs (the gzip'd 42-Mvoxel .seg.nrrd is most
  of it), one pass over their voxels: what any tool pays before computing anything;
* ``report`` / ``no_report``: ``tare-dosimetry run`` with the arguments of the issue (SPECT,
  segmentation, ``--administered-activity-gbq 1.8 --lung-shunt-fraction 0.06``), with the HTML
  report and dvh.png, and with ``--no-report``;
* ``dvk_report`` / ``dvk_no_report``: the same with ``--method dvk``, each run right after its LDM
  run; what DVK adds is given as the difference of the medians and as the median of the differences
  within a round (``*_paired``: the two runs seconds apart, so a change of the machine's speed
  between rounds cancels out);
* with ``--baseline-repo`` (a checkout of the engine before the speed work, e.g.
  ``git archive 5513721 | tar -x -C /tmp/base``), the same runs of that engine, in the same rounds.

Python bytecode is compiled once into a cache (``PYTHONPYCACHEPREFIX``) as an installed package
has it; a first, untimed run of each variant fills it.  Wall time of the whole process, its CPU
time (user + system) and its peak resident memory (VmHWM) are recorded.

Usage: python benchmarks/bench_case.py [--repeat 5] [--baseline-repo /tmp/base] [--json ...]
Data: TARE_DOSIMETRY_TEST_DATA (default ../shared/data next to the checkout).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FLOOR = r"""
import sys
import numpy as np
import SimpleITK as sitk
images = [sitk.ReadImage(p) for p in sys.argv[1:3]]
arrays = [sitk.GetArrayViewFromImage(i) for i in images]
total = sum(float(a.sum(dtype=np.float64)) for a in arrays)
"""
_RUN = r"""
import sys
from TAREDosimetryLib.cli import main
sys.exit(main(sys.argv[1:]))
"""
_PEAK = r"""
import atexit
def _peak():
    with open("/proc/self/status") as fh:
        kb = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))
    with open(__PEAK_FILE__, "w") as fh:
        fh.write(str(kb))
atexit.register(_peak)
"""


def _data():
    d = os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))
    spect = os.path.join(d, "maa-spect-patient2", "patient_2_SPECT.nrrd")
    seg = os.path.join(d, "maa-spect-patient2", "patient_2_Segmentation.seg.nrrd")
    if not (os.path.isfile(spect) and os.path.isfile(seg)):
        sys.exit(f"MAA case not found under {d}; set TARE_DOSIMETRY_TEST_DATA")
    return spect, seg


def _variants(spect, seg, tmp, baseline):
    base = ["run", "--spect", spect, "--segmentation", seg, "--administered-activity-gbq", "1.8",
            "--lung-shunt-fraction", "0.06", "--quiet", "--overwrite"]
    runs = {"report": [], "dvk_report": ["--method", "dvk"], "no_report": ["--no-report"],
            "dvk_no_report": ["--method", "dvk", "--no-report"]}  # each DVK run right after its LDM run
    out = {"floor": (None, _FLOOR, [spect, seg])}
    engines = [("", REPO)] + ([("baseline_", baseline)] if baseline else [])
    for prefix, repo in engines:
        for name, extra in runs.items():
            out[prefix + name] = (repo, _RUN, base + extra + ["--out", os.path.join(tmp, prefix + name)])
    return out


def _child(repo, code, args, cache, tmp):
    env = dict(os.environ, PYTHONPYCACHEPREFIX=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if repo is not None:
        env["PYTHONPATH"] = os.path.join(repo, "TAREDosimetry")
    peak_file = os.path.join(tmp, "peak.txt")
    prelude = _PEAK.replace("__PEAK_FILE__", repr(peak_file))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", prelude + code] + args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"benchmark run failed ({args[:1]}): {r.stderr.strip()[-500:]}")
    with open(peak_file) as fh:
        peak_mb = int(fh.read()) / 1024
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_mb}


def _summary(runs):
    walls = [r["wall_s"] for r in runs]
    return {"runs": runs, "wall_s_median": float(np.median(walls)), "wall_s_range": [min(walls), max(walls)],
            "cpu_s_median": float(np.median([r["cpu_s"] for r in runs])),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def bench(repeat, baseline):
    spect, seg = _data()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "pycache")
        variants = _variants(spect, seg, tmp, baseline)
        for repo, code, args in variants.values():  # untimed: compiles the bytecode cache, warms the files
            _child(repo, code, args, cache, tmp)
        for _ in range(repeat):
            for name, (repo, code, args) in variants.items():
                results.setdefault(name, []).append(_child(repo, code, args, cache, tmp))
    return {name: _summary(runs) for name, runs in results.items()}


def _paired_adds(res, dvk, ldm):
    """Median over the rounds of (DVK run - the LDM run just before it): the pair ran seconds apart,
    so a change of the shared machine's speed between rounds cancels out."""
    return float(np.median([d["wall_s"] - b["wall_s"] for d, b in zip(res[dvk]["runs"], res[ldm]["runs"])]))


def _ratios(res, prefix=""):
    floor = res["floor"]["wall_s_median"]
    m = {k: res[prefix + k]["wall_s_median"] for k in ("report", "no_report", "dvk_report", "dvk_no_report")}
    return {"report_over_floor": m["report"] / floor, "no_report_over_floor": m["no_report"] / floor,
            "dvk_adds_s_with_report": m["dvk_report"] - m["report"], "dvk_adds_s_no_report": m["dvk_no_report"] - m["no_report"],
            "dvk_adds_s_with_report_paired": _paired_adds(res, prefix + "dvk_report", prefix + "report"),
            "dvk_adds_s_no_report_paired": _paired_adds(res, prefix + "dvk_no_report", prefix + "no_report")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline-repo", default=None, help="checkout of the engine before the speed work")
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "case.json"))
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]
    res = bench(args.repeat, args.baseline_repo)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "platform": platform.platform(), "load_1min": [load_start, os.getloadavg()[0]]},
        "case": "MAA SPECT 128x128x160 + segmentation 512x512x161x4 layers (7 segments); --administered-activity-gbq 1.8 "
                "--lung-shunt-fraction 0.06",
        "repeat": args.repeat, "results": res, "ratios": _ratios(res),
    }
    if args.baseline_repo:
        out["baseline_repo"] = os.path.abspath(args.baseline_repo)
        out["baseline_ratios"] = _ratios(res, "baseline_")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)
    brief = {k: (round(v["wall_s_median"], 3), [round(x, 3) for x in v["wall_s_range"]], round(v["cpu_s_median"], 3))
             for k, v in res.items()}
    print(json.dumps({"median, range, cpu (s)": brief, "ratios": out["ratios"], "baseline_ratios": out.get("baseline_ratios")},
                     indent=1))


if __name__ == "__main__":
    main()
