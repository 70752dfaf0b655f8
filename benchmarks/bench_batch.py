"""Benchmark of a batch: 8 synthetic cases run serially, on 1 and on 2 local worker processes, and on
an embedded Dask LocalCluster of 2 workers, in one run on this machine.

The cases are the demo's synthetic patient (Bremsstrahlung-like SPECT on a 4.8 mm grid, CT and 8
segments on a 2.5 mm grid of 136 x 96 x 104) with 8 noise seeds and administered activities,
written as NRRD files and a mask folder per case.  Each mode runs the same manifest into a fresh
folder, with the report (dvh.png, report.html with dose slices: the batch's default) unless
``--no-report`` (engine only: about 0.3 s a case, where worker start-up dominates).  Measured: wall
time of the batch (workers' start-up included), cases per minute, the ratio to the serial run, the
median per-case time in the workers and the largest per-case peak resident memory of a worker (the
summary's ``peak_rss_mb``), and the median CPU time of a case (``cpu_s``, all threads), the cost
from which a cluster's throughput per node follows.  The ratio is what counts when the cores are
free; on a loaded machine (the 1-minute load average is recorded) the CPU time per case is the
figure that carries over.  ``speedup_workers_vs_1`` is the ratio of the cases per minute of
``--workers`` processes to one worker process (issue 14's goal: >= 1.8 with 2 workers on 2 free cores).
``--repo`` runs the engine of another checkout (e.g. main, to compare before and after a change).

The modes alternate within each of ``--repeat`` rounds and the best wall time of each mode is kept
(best of N, as the other benchmarks), so a change of the machine's load during the run does not
favour one mode.

Usage: python benchmarks/bench_batch.py [--repo CHECKOUT] [--cases 8] [--workers 2] [--repeat 3] [--no-report]
       [--json benchmarks/results/batch.json]
"""

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_engine(repo):
    """Put the engine of checkout ``repo`` first on the path (worker processes inherit it)."""
    sys.path.insert(0, os.path.join(os.path.abspath(repo), "TAREDosimetry"))


def make_cases(folder, n):
    """n synthetic cases (files) and their manifest; returns the manifest path."""
    from TAREDosimetryLib import Volume
    from TAREDosimetryLib.imaging.images import write_image
    from TAREDosimetryLib.imaging.phantom import make_phantom

    rows = ["case_id,spect,ct,segmentation,administered_activity_gbq,lung_shunt_fraction"]
    for i in range(n):
        case = make_phantom(analytic=False, seed=i)
        d = os.path.join(folder, f"c{i}")
        os.makedirs(os.path.join(d, "segments"))
        write_image(case.activity, os.path.join(d, "spect.nrrd"))
        write_image(case.ct, os.path.join(d, "ct.nrrd"))
        for name in case.segmentation.names:
            write_image(Volume(case.segmentation.mask(name).astype(np.uint8), grid=case.segmentation.grid),
                        os.path.join(d, "segments", f"{name}.nrrd"), dtype=np.uint8)
        rows.append(f"c{i},c{i}/spect.nrrd,c{i}/ct.nrrd,c{i}/segments,{1.2 + 0.2 * i:.1f},0.08")
    path = os.path.join(folder, "cases.csv")
    with open(path, "w") as fh:
        fh.write("\n".join(rows) + "\n")
    return path


def run_mode(manifest, out, report, **kw):
    from TAREDosimetryLib.batch import run_manifest

    t0 = time.perf_counter()
    summary = run_manifest(manifest, out, report=report, **kw)
    wall = time.perf_counter() - t0
    assert all(e["status"] == "ok" for e in summary), [e["error"] for e in summary if e["status"] != "ok"]
    with open(summary.path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    secs = [float(r["seconds"]) for r in rows]
    cpu = [float(r["cpu_s"]) for r in rows]
    rss = [float(r["peak_rss_mb"]) for r in rows if r["peak_rss_mb"]]
    return {"wall_s": round(wall, 2), "cases_per_min": round(60.0 * len(rows) / wall, 1),
            "median_case_s": round(statistics.median(secs), 2), "median_case_cpu_s": round(statistics.median(cpu), 2),
            "max_peak_rss_mb": round(max(rss), 0) if rss else None, "workers_seen": len({r["worker"] for r in rows})}


def _best(runs):
    """The run with the shortest batch wall time, with every run's wall time and load beside it."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["all_wall_s"] = [r["wall_s"] for r in runs]
    best["load_average_1min"] = [r["load"] for r in runs]
    best.pop("load", None)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=REPO, help="checkout whose engine runs the batch (default: this one)")
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the modes alternate within a round (best of N)")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "batch.json"))
    args = ap.parse_args(argv)
    use_engine(args.repo)
    report = not args.no_report
    modes = {"serial": {}, "processes_1": {"workers": 1}, "processes": {"workers": args.workers},
             "dask_local": {"workers": args.workers, "dask": True}}
    runs = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_cases(tmp, args.cases)
        for k in range(args.repeat):
            for mode, kw in modes.items():
                try:
                    r = run_mode(manifest, os.path.join(tmp, f"{mode}{k}"), report, **kw)
                except ImportError as exc:  # dask not installed
                    r = {"skipped": str(exc)}
                r["load"] = round(os.getloadavg()[0], 2)
                runs[mode].append(r)
                print(mode, r, file=sys.stderr)
    res = {m: (_best(rs) if "wall_s" in rs[0] else rs[0]) for m, rs in runs.items()}
    for k in ("processes_1", "processes", "dask_local"):
        if "wall_s" in res[k]:
            res[k]["speedup_vs_serial"] = round(res["serial"]["wall_s"] / res[k]["wall_s"], 2)
    if "wall_s" in res["processes_1"] and "wall_s" in res["processes"]:  # cases per minute, N workers / 1 worker
        res["speedup_workers_vs_1"] = round(res["processes_1"]["wall_s"] / res["processes"]["wall_s"], 2)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
           "repo": os.path.abspath(args.repo), "cases": args.cases, "workers": args.workers, "report": report, "repeat": args.repeat,
           "note": "best of the rounds (modes alternate within a round); load averages of the shared VM beside",
           "results": res}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
