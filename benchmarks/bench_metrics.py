"""Per-segment metrics on a 2e7-voxel segment against Taranis' DVH functions, and the lung kernel (issue 14).

1. **Metrics of one large segment.**  A dose map of 340^3 voxels with an ellipsoid segment of
   about 2e7 voxels on the same grid.  Ours: the segment's doses, density and activity read from
   its region, then every metric of :func:`~TAREDosimetryLib.evaluation.metrics.segment_metrics`
   (mass-weighted mean, median, SD, min, max, D2..D98, V20..V205 in % and mL, EUD, BED, activity,
   mass) and the DVH curve every 0.1 Gy.  Taranis (the MIT-licensed 3D Slicer extension
   github:4burakfe/SlicerRadioembolizationDosimetry, ``Taranis/TaranisLib/dosimetry.py``): its
   ``segmentDoseStatistics`` (mean, volume, activity over the mask), a sort of the segment's
   doses, its ``doseAtVolumePercent`` (D50..D99), ``volumePercentAtDose`` (V30..V80) and
   ``cumulativeDvh`` every 0.1 Gy.  Taranis' functions are read from the file given by
   ``--taranis`` or the environment variable ``TARANIS_DOSIMETRY_PY`` (its module imports
   Slicer, so only these functions are taken from its source); without it the benchmark runs
   ours alone and says so.  No Taranis code is part of this project.
2. **The lung (density-scaled) kernel at 1 mm**: 12 mm water-equivalent truncation at
   0.3 g/mL (40 mm, an 81^3 kernel), built from scratch (cache cleared), median of 3.

Usage: python benchmarks/bench_metrics.py [--taranis /path/to/dosimetry.py] [--repeat 5]
"""

import argparse
import ast
import hashlib
import json
import math
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

from TAREDosimetryLib import DosimetryParams  # noqa: E402
from TAREDosimetryLib.dose import kernels  # noqa: E402
from TAREDosimetryLib.evaluation.metrics import segment_metrics  # noqa: E402
from TAREDosimetryLib.volume import uniform_array  # noqa: E402

TARANIS_FUNCTIONS = ("segmentDoseStatistics", "doseAtVolumePercent", "volumePercentAtDose", "cumulativeDvh")


def load_taranis(path):
    """Taranis' DVH functions, compiled from their source in ``path`` (the rest of the module is
    not run: it needs 3D Slicer).  Returns ({name: function}, sha256 of the file)."""
    with open(path, "rb") as fh:
        source = fh.read()
    tree = ast.parse(source)
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in TARANIS_FUNCTIONS]
    missing = set(TARANIS_FUNCTIONS) - {f.name for f in funcs}
    if missing:
        raise SystemExit(f"{path}: functions {sorted(missing)} not found")
    namespace = {"np": np, "math": math}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), path, "exec"), namespace)
    return {n: namespace[n] for n in TARANIS_FUNCTIONS}, hashlib.sha256(source).hexdigest()


def make_segment(n=340, seed=0):
    """(dose Gy (n^3 float32), mask, flat indices of the mask (int32)): a smooth dose with noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32),) * 3, indexing="ij", sparse=True)
    mask = (x / 0.98) ** 2 + (y / 0.98) ** 2 + (z / 0.98) ** 2 <= 1.0
    dose = (120.0 * np.exp(-((x - 0.2) ** 2 + y**2 + z**2) / 0.3) + 20.0).astype(np.float32)
    dose *= rng.gamma(20.0, 1 / 20.0, dose.shape).astype(np.float32)
    return dose, mask, np.flatnonzero(mask).astype(np.int32)


def ours(dose, index, activity, params, voxel_ml):
    d = dose.reshape(-1)[index]
    a = float(activity.reshape(-1)[index].sum(dtype=np.float64)) / voxel_ml
    m, dvh = segment_metrics(d, uniform_array(1.03, (index.size,)), a, voxel_ml, "tumor", params, name="segment",
                             overwrite_dose=True)
    dvh.curve(0.1)
    return m


def taranis(funcs, dose, mask, voxel_ml):
    mean, volume, act = funcs["segmentDoseStatistics"](dose, mask, voxel_ml, 49.67, 1.03)
    s = np.sort(dose[mask])
    d = [funcs["doseAtVolumePercent"](s, x) for x in (50, 60, 70, 80, 90, 95, 99)]
    v = [funcs["volumePercentAtDose"](s, x) for x in (30, 40, 50, 60, 70, 80)]
    funcs["cumulativeDvh"](s, np.arange(0.0, float(s[-1]) + 0.1, 0.1))
    return mean, d, v


def _timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": float(np.median(times)), "range_s": [min(times), max(times)], "runs_s": times}


def bench_metrics(taranis_path, repeat):
    dose, mask, index = make_segment()
    activity = dose * np.float32(1e-5)
    params, voxel_ml = DosimetryParams(), 0.001
    out = {"segment_voxels": int(index.size), "grid": list(dose.shape), "ours": _timed(lambda: ours(dose, index, activity, params, voxel_ml), repeat)}
    if taranis_path:
        funcs, sha = load_taranis(taranis_path)
        out["taranis"] = _timed(lambda: taranis(funcs, dose, mask, voxel_ml), repeat)
        out["taranis_source"] = {"path": taranis_path, "sha256": sha}
        out["taranis_over_ours"] = out["taranis"]["median_s"] / out["ours"]["median_s"]
        m = ours(dose, index, activity, params, voxel_ml)
        t_mean, t_d, _ = taranis(funcs, dose, mask, voxel_ml)
        out["check"] = {"mean_gy_ours": m["mean_gy"], "mean_gy_taranis": t_mean, "d50_ours": m["d50_gy"], "d50_taranis": t_d[0]}
    else:
        out["taranis"] = "not run: give --taranis PATH/Taranis/TaranisLib/dosimetry.py (or TARANIS_DOSIMETRY_PY)"
    return out


def bench_lung_kernel(repeat):
    def build():
        kernels.clear_kernel_cache()
        kernels.voxel_energy_fractions((1.0, 1.0, 1.0), 0.3, radius_mm=12.0 / 0.3)

    res = _timed(build, repeat)
    res.update(spacing_mm=1.0, density_g_ml=0.3, radius_mm=40.0, kernel_shape=[81, 81, 81], cpus=os.cpu_count())
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--taranis", default=os.environ.get("TARANIS_DOSIMETRY_PY"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "metrics.json"))
    args = ap.parse_args(argv)
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                       "load_1min": os.getloadavg()[0]},
           "segment_metrics_2e7": bench_metrics(args.taranis, args.repeat),
           "lung_kernel_1mm": bench_lung_kernel(3)}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(res, fh, indent=2)
    print(json.dumps({k: v for k, v in res.items()}, indent=1, default=str)[:3000])


if __name__ == "__main__":
    main()
