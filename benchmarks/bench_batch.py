"""Cases per minute of ``tare-dosimetry batch`` with 1 and 2 worker processes (issue 14).

A manifest of ``--cases`` copies of the shared MAA case (the same files under different case ids)
is run with ``--workers 1`` and then ``--workers 2`` (``--rerun``, ``--no-report``), each
``--repeat`` times; the ratio of the median cases per minute is what counts (goal >= 1.8 on two
cores).  The engine is the checkout given by ``--repo`` (default: this one); ``--workers`` needs
the batch package of issue 13.  Run it when the machine is quiet: other processes on the cores
take from the workers.

Usage: python benchmarks/bench_batch.py [--repo /path/to/checkout] [--cases 8] [--repeat 3]
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


def _data():
    d = os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))
    spect = os.path.join(d, "maa-spect-patient2", "patient_2_SPECT.nrrd")
    seg = os.path.join(d, "maa-spect-patient2", "patient_2_Segmentation.seg.nrrd")
    if not (os.path.isfile(spect) and os.path.isfile(seg)):
        sys.exit(f"MAA case not found under {d}; set TARE_DOSIMETRY_TEST_DATA")
    return spect, seg


def write_manifest(path, n_cases):
    spect, seg = _data()
    lines = ["case_id,spect,segmentation,administered_activity_gbq,lung_shunt_fraction"]
    lines += [f"case{i:03d},{spect},{seg},1.8,0.06" for i in range(n_cases)]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def run_batch(repo, manifest, out, workers):
    env = dict(os.environ, PYTHONPATH=os.path.join(repo, "TAREDosimetry"))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "batch", "--manifest", manifest, "--out", out,
                        "--workers", str(workers), "--rerun", "--overwrite", "--no-report", "--quiet"],
                       capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-3:]}
    return {"wall_s": wall}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=REPO, help="checkout whose engine runs the batch (default: this one)")
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "batch.json"))
    args = ap.parse_args(argv)
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min_at_start": os.getloadavg()[0]},
           "repo": os.path.abspath(args.repo), "cases": args.cases, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = os.path.join(tmp, "cases.csv")
        write_manifest(manifest, args.cases)
        for workers in (1, 2):
            runs = [run_batch(args.repo, manifest, os.path.join(tmp, f"out{workers}"), workers) for _ in range(args.repeat)]
            ok = [r["wall_s"] for r in runs if "wall_s" in r]
            if not ok:
                res["runs"][workers] = {"error": runs[0]["error"]}
                continue
            res["runs"][workers] = {"wall_s": ok, "median_wall_s": float(np.median(ok)),
                                    "cases_per_minute": 60.0 * args.cases / float(np.median(ok))}
    one, two = res["runs"].get(1, {}), res["runs"].get(2, {})
    if "cases_per_minute" in one and "cases_per_minute" in two:
        res["speedup_2_workers"] = two["cases_per_minute"] / one["cases_per_minute"]
    res["machine"]["load_1min_at_end"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(res, fh, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
