"""Benchmark of a batch: synthetic cases run serially, on 1 and on N local worker processes, and on an
embedded Dask LocalCluster of N workers, in one run on this machine, at two batch sizes.

The cases are the demo's synthetic patient (Bremsstrahlung-like SPECT on a 4.8 mm grid, CT and 8
segments on a 2.5 mm grid of 136 x 96 x 104) with a noise seed and administered activity each,
written as NRRD files and a mask folder per case.  Each mode runs the same manifest into a fresh
folder, with the report (dvh.png, report.html with dose slices: the batch's default) unless
``--no-report`` (engine only: about 0.3 s a case, where worker start-up dominates).

Measured for each batch size (``--cases``, default 8, 16 and 32: the first cases of one set): wall
time of the batch (workers' start-up included), cases per minute, the ratio to the serial run, the
median per-case time in the workers and the largest per-case peak resident memory of a worker (the
summary's ``peak_rss_mb``), and the median CPU time of a case (``cpu_s``, all threads), the cost
from which a cluster's throughput per node follows.  ``speedup_workers_vs_1`` is the ratio of the
cases per minute of ``--workers`` processes to one worker process for that whole batch.

The rate (``rate``): a batch's wall time is a fixed start-up (each worker a new Python process
importing NumPy, SimpleITK, the engine and matplotlib, and its first case's first-time costs) plus
the time of its cases; the difference between the two batch sizes' wall times is the time of the
extra cases alone, so ``(N2 - N1) / (wall(N2) - wall(N1))`` is the cases per minute once the batch
runs (what a cohort of many cases gets), and ``wall(N1) - N1 x that time a case`` the fixed
start-up.  ``rate.speedup_workers_vs_1`` is the ratio of those rates (issue 14's goal: >= 1.8 with
2 workers on 2 free cores); the whole-batch ratios approach it as batches grow.

The ratio is what counts when the cores are free; on a loaded machine (the 1-minute load average is
recorded) the CPU time per case is the figure that carries over.  ``--repo`` runs the engine of
another checkout (e.g. main, to compare before and after a change).  The modes and sizes alternate
within each of ``--repeat`` rounds and the best wall time of each (mode, size) is kept (best of N,
as the other benchmarks), so a change of the machine's load during the run does not favour one.

Usage: python benchmarks/bench_batch.py [--repo CHECKOUT] [--cases 8,16,32] [--workers 2] [--repeat 3]
       [--modes serial,processes_1,processes,dask_local] [--no-report] [--json benchmarks/results/batch.json]
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


def make_cases(folder, sizes):
    """max(sizes) synthetic cases (files) and a manifest of the first n cases for each n in sizes;
    returns {n: manifest path}."""
    from TAREDosimetryLib import Volume
    from TAREDosimetryLib.imaging.images import write_image
    from TAREDosimetryLib.imaging.phantom import make_phantom

    rows = []
    for i in range(max(sizes)):
        case = make_phantom(analytic=False, seed=i)
        d = os.path.join(folder, f"c{i}")
        os.makedirs(os.path.join(d, "segments"))
        write_image(case.activity, os.path.join(d, "spect.nrrd"))
        write_image(case.ct, os.path.join(d, "ct.nrrd"))
        for name in case.segmentation.names:
            write_image(Volume(case.segmentation.mask(name).astype(np.uint8), grid=case.segmentation.grid),
                        os.path.join(d, "segments", f"{name}.nrrd"), dtype=np.uint8)
        rows.append(f"c{i},c{i}/spect.nrrd,c{i}/ct.nrrd,c{i}/segments,{1.2 + 0.2 * (i % 8):.1f},0.08")
    manifests = {}
    for n in sizes:
        manifests[n] = os.path.join(folder, f"cases_{n}.csv")
        with open(manifests[n], "w") as fh:
            fh.write("\n".join(["case_id,spect,ct,segmentation,administered_activity_gbq,lung_shunt_fraction"]
                               + rows[:n]) + "\n")
    return manifests


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


MODES = {"serial": {}, "processes_1": {"workers": 1}, "processes": {"workers": None},
         "dask_local": {"workers": None, "dask": True}}


def _mode_options(mode, workers):
    return {k: (workers if v is None else v) for k, v in MODES[mode].items()}


def _whole_batch_ratios(res):
    """Each mode's ratio to the serial run, and N workers' to one worker's, for one batch size."""
    for k in ("processes_1", "processes", "dask_local"):
        if "wall_s" in res.get(k, {}) and "wall_s" in res.get("serial", {}):
            res[k]["speedup_vs_serial"] = round(res["serial"]["wall_s"] / res[k]["wall_s"], 2)
    if "wall_s" in res.get("processes_1", {}) and "wall_s" in res.get("processes", {}):
        res["speedup_workers_vs_1"] = round(res["processes_1"]["wall_s"] / res["processes"]["wall_s"], 2)
    return res


def _rates(by_size):
    """Cases per minute of each mode once its batch runs, and its fixed start-up, from the two
    extreme batch sizes (see the module docstring)."""
    n1, n2 = min(by_size), max(by_size)
    out = {"from_batch_sizes": [n1, n2]}
    for mode in MODES:
        a, b = by_size[n1].get(mode, {}), by_size[n2].get(mode, {})
        if "wall_s" not in a or "wall_s" not in b or b["wall_s"] <= a["wall_s"]:
            continue
        per_case = (b["wall_s"] - a["wall_s"]) / (n2 - n1)
        out[mode] = {"cases_per_min": round(60.0 / per_case, 1), "s_per_case": round(per_case, 3),
                     "fixed_startup_s": round(a["wall_s"] - n1 * per_case, 2)}
    if "processes_1" in out and "processes" in out:
        out["speedup_workers_vs_1"] = round(out["processes"]["cases_per_min"] / out["processes_1"]["cases_per_min"], 2)
    return out


def _parse_sizes(text):
    sizes = sorted({int(x) for x in str(text).split(",") if x.strip()})
    if not sizes or sizes[0] < 1:
        raise SystemExit(f"--cases: give batch sizes >= 1 separated by commas, got {text!r}")
    return sizes


def _run_rounds(manifests, tmp, modes, workers, report, repeat):
    """{n: {mode: [run, ...]}}: the sizes and modes alternate within each round."""
    runs = {n: {m: [] for m in modes} for n in manifests}
    for k in range(repeat):
        for n, manifest in manifests.items():
            for mode in modes:
                try:
                    r = run_mode(manifest, os.path.join(tmp, f"{mode}_{n}_{k}"), report, **_mode_options(mode, workers))
                except ImportError as exc:  # dask not installed
                    r = {"skipped": str(exc)}
                r["load"] = round(os.getloadavg()[0], 2)
                runs[n][mode].append(r)
                print(n, mode, r, file=sys.stderr)
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=REPO, help="checkout whose engine runs the batch (default: this one)")
    ap.add_argument("--cases", default="8,16,32", help="batch sizes, comma-separated (the rate needs two)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the modes alternate within a round (best of N)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(MODES))
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "batch.json"))
    args = ap.parse_args(argv)
    sizes = _parse_sizes(args.cases)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"--modes: unknown {unknown}; choose from {list(MODES)}")
    use_engine(args.repo)
    report = not args.no_report
    with tempfile.TemporaryDirectory() as tmp:
        runs = _run_rounds(make_cases(tmp, sizes), tmp, modes, args.workers, report, args.repeat)
    by_size = {n: _whole_batch_ratios({m: (_best(rs) if "wall_s" in rs[0] else rs[0]) for m, rs in r.items()})
               for n, r in runs.items()}
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
           "repo": os.path.abspath(args.repo), "cases": sizes, "workers": args.workers, "report": report,
           "repeat": args.repeat, "note": "best of the rounds (modes and sizes alternate within a round); load averages "
                                          "of the shared VM beside",
           "results": {str(n): r for n, r in by_size.items()}}
    if len(sizes) > 1:
        out["rate"] = _rates(by_size)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
