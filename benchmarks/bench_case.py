"""Benchmark of one whole case and of the per-segment metrics, on the shared MAA case.

Measures, in one run on this machine:

1. ``tare-dosimetry run ... --no-report`` on the MAA case (SPECT 128x128x160, segmentation
   512x512x161 with 7 overlapping segments): wall time and peak resident memory of the process
   (a fresh Python process per repetition, peak RSS from ``resource.getrusage``).
2. Per-segment metrics (dose read on the segment voxels, sort, D/V metrics): the engine's path
   (segment bounding-box metrics grid, one resampling) against the naive baseline "dose resampled
   to the full CT grid, then a full-size boolean mask and a sort per segment", in the same
   process, on the same dose map.  The ratio is what counts.

Usage: python benchmarks/bench_case.py [--repeat 3] [--json benchmarks/results/case.json]
Data: TARE_DOSIMETRY_TEST_DATA (default ../shared/data next to the checkout).
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

from TAREDosimetryLib import DosimetryParams, imaging, run_case  # noqa: E402
from TAREDosimetryLib.evaluation.dvh import DVH  # noqa: E402
from TAREDosimetryLib.evaluation.metrics import segment_metrics  # noqa: E402
from TAREDosimetryLib.evaluation.sampling import MetricsSampler  # noqa: E402
from TAREDosimetryLib.resample import resample_volume  # noqa: E402


def _data():
    d = os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))
    spect = os.path.join(d, "maa-spect-patient2", "patient_2_SPECT.nrrd")
    seg = os.path.join(d, "maa-spect-patient2", "patient_2_Segmentation.seg.nrrd")
    if not (os.path.isfile(spect) and os.path.isfile(seg)):
        sys.exit(f"MAA case not found under {d}; set TARE_DOSIMETRY_TEST_DATA")
    return spect, seg


def bench_cli(spect, seg, repeat):
    runs = []
    code = (
        "import resource, sys, time; t=time.perf_counter();"
        "from TAREDosimetryLib.cli import main; rc=main(sys.argv[1:]);"
        "print('WALL', time.perf_counter()-t); print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "TAREDosimetry"))
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-c", code, "run", "--spect", spect, "--segmentation", seg, "--administered-activity-gbq", "1.8",
                 "--lung-shunt-fraction", "0.06", "--out", os.path.join(tmp, "o"), "--no-report", "--quiet"],
                capture_output=True, text=True, env=env,
            )
            wall_outer = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"run failed: {r.stderr}")
            vals = dict(line.split() for line in r.stdout.splitlines() if line.startswith(("WALL", "RSS_KB")))
            runs.append({"process_wall_s": wall_outer, "main_wall_s": float(vals["WALL"]), "peak_rss_mb": int(vals["RSS_KB"]) / 1024})
    best = min(runs, key=lambda x: x["process_wall_s"])
    return {"runs": runs, "best_process_wall_s": best["process_wall_s"], "best_main_wall_s": best["main_wall_s"],
            "peak_rss_mb": max(x["peak_rss_mb"] for x in runs)}


def naive_metrics(dose, seg, names, params):
    """Baseline: dose on the full CT grid, a full-size mask and a sort per segment."""
    full = resample_volume(dose, seg.grid, "nearest").array
    out = {}
    for n in names:
        mask = seg.layers[seg.info(n).layer] == seg.info(n).label_value  # full-size boolean mask
        h = DVH(full[mask], seg.grid.voxel_volume_ml)  # one sort per segment, as in the engine
        out[n] = {"mean_gy": h.mean_gy, "d70_gy": h.dose_at_volume_pct(70), "v100_pct": h.volume_pct_at_dose(100)}
        for x in params.d_levels_pct:
            h.dose_at_volume_pct(x)
        for x in params.v_levels_gy:
            h.volume_pct_at_dose(x)
    return out


def engine_metrics(dose, density, seg, names, params):
    sampler = MetricsSampler(seg, dose.grid, names)
    dm = sampler.sample(dose)
    rm = sampler.sample(density)
    out = {}
    for n in names:
        m = sampler.masks[n]
        met, _ = segment_metrics(dm[m], rm[m], rm[m], sampler.voxel_volume_ml, "tumor", params)
        out[n] = {"mean_gy": met["mean_gy"], "d70_gy": met["d70_gy"], "v100_pct": met["v100_pct"]}
    return out


def bench_metrics(spect_path, seg_path, repeat):
    spect = imaging.read_image(spect_path)
    seg = imaging.read_segmentation(seg_path)
    params = DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06)
    r = run_case(spect, seg, params=params)
    names = seg.names
    t_naive, t_engine = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a = naive_metrics(r.dose_gy, seg, names, params)
        t_naive.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = engine_metrics(r.dose_gy, r.density_g_ml, seg, names, params)
        t_engine.append(time.perf_counter() - t0)
    worst = max(abs(a[n]["mean_gy"] - b[n]["mean_gy"]) / a[n]["mean_gy"] for n in names)
    return {"naive_s": min(t_naive), "engine_s": min(t_engine), "speedup": min(t_naive) / min(t_engine),
            "max_rel_diff_mean_gy": worst, "segments": len(names), "pipeline_timings_s": r.timings_s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "case.json"))
    args = ap.parse_args(argv)
    spect, seg = _data()
    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()},
        "cli_run_maa_no_report": bench_cli(spect, seg, args.repeat),
        "per_segment_metrics": bench_metrics(spect, seg, args.repeat),
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(res, fh, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
