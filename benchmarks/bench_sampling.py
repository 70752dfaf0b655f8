"""Benchmark: exact partial-voxel weighting ('overlap') against point sampling ('nearest').

Measures, in one run, the cost of a whole case (``run_case``) with each sampling and the ratio
overlap / nearest (goal: at most 2), and how far nearest sampling's mean doses are from the
exact ones:

1. the shared MAA case (SPECT 128x128x160 at 4.418 x 4.418 x 2.5 mm, z reversed; segmentation
   512x512x161 at 0.977 x 0.977 x 2.5 mm, 7 overlapping segments; no CT);
2. a synthetic 512 x 512 x 300 segmentation (0.8 x 0.8 x 1.0 mm: liver, two lobes, 4 tumours,
   lungs) over a Y-90 PET-like grid (180 x 180 x 120 at 2.34 x 2.34 x 2.78 mm: slice
   thicknesses that do not divide each other), absolute calibration, with a CT on the
   segmentation grid (density from the CT).

The segmentation object is built afresh for every run (its bounding boxes are cached), and the
two samplings alternate so that both see the same machine load.  Best of ``--repeat``.

Usage: PYTHONPATH=TAREDosimetry python3 benchmarks/bench_sampling.py [--repeat 3] [--json benchmarks/results/sampling.json]
Data: TARE_DOSIMETRY_TEST_DATA (default ../shared/data next to the checkout) for case 1.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, imaging, run_case  # noqa: E402
from TAREDosimetryLib.volume import Grid  # noqa: E402

SAMPLINGS = ("overlap", "nearest")


def _maa_case():
    d = os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))
    spect = os.path.join(d, "maa-spect-patient2", "patient_2_SPECT.nrrd")
    seg = os.path.join(d, "maa-spect-patient2", "patient_2_Segmentation.seg.nrrd")
    if not (os.path.isfile(spect) and os.path.isfile(seg)):
        return None
    params = DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06)
    return imaging.read_image(spect, "SPECT image"), (lambda: imaging.read_segmentation(seg)), None, params


def _ellipsoid(z, y, x, c, r):
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0


def _pet_case():
    """Synthetic liver, lobes, tumours and lungs on a 512 x 512 x 300 CT grid over a PET grid."""
    seg_grid = Grid((300, 512, 512), (0.8, 0.8, 1.0), (-204.4, -204.4, -149.5))
    z, y, x = np.ogrid[-149.5:150:300j, -204.4:205:512j, -204.4:205:512j]
    liver = _ellipsoid(z, y, x, (-20, 10, -10), (120, 90, 80))
    tumours = {f"tumour {i + 1}": _ellipsoid(z, y, x, c, (r, r, r)) & liver
               for i, (c, r) in enumerate([((-60, 20, -5), 25), ((10, -20, -30), 15), ((40, 40, 10), 9), ((-30, -40, 20), 6)])}
    masks = {"liver": liver, "right lobe": liver & (x < -10), "left lobe": liver & (x >= -10), **tumours,
             "lung right": _ellipsoid(z, y, x, (-80, 20, 110), (70, 70, 40)) & ~liver,
             "lung left": _ellipsoid(z, y, x, (80, 20, 110), (60, 70, 40)) & ~liver}
    ct = np.full(seg_grid.shape, -1000, np.int16)
    ct[_ellipsoid(z, y, x, (0, 0, 0), (190, 150, 400))] = 40
    ct[masks["lung right"] | masks["lung left"]] = -800
    ct[liver] = 60
    pet_grid = Grid((120, 180, 180), (2.34, 2.34, 2.78), (-210.0, -210.0, -165.0))
    pz, py, px = np.meshgrid(*(pet_grid.origin_mm[a] + pet_grid.spacing_mm[a] * np.arange(pet_grid.shape[2 - a])
                               for a in (2, 1, 0)), indexing="ij", sparse=True)
    conc = 2e4 * _ellipsoid(pz, py, px, (-20, 10, -10), (124, 94, 84))
    for c, r, u in [((-60, 20, -5), 27, 8.0), ((10, -20, -30), 17, 5.0), ((40, 40, 10), 11, 4.0), ((-30, -40, 20), 8, 3.0)]:
        conc = conc + 2e4 * u * np.exp(-((px - c[0]) ** 2 + (py - c[1]) ** 2 + (pz - c[2]) ** 2) / (2 * (r / 2) ** 2))
    pet = Volume(np.asarray(conc, np.float32), grid=pet_grid, name="PET")
    params = DosimetryParams(calibration="absolute", image_decay_corrected=True)
    return pet, (lambda: Segmentation.from_masks(masks, seg_grid)), Volume(ct, grid=seg_grid), params


def _time_case(activity, make_seg, ct, params, repeat):
    best, results = {}, {}
    for _ in range(repeat):
        for sampling in SAMPLINGS:
            seg = make_seg()
            t0 = time.perf_counter()
            r = run_case(activity, seg, params=params.replace(sampling=sampling), ct=ct)
            wall = time.perf_counter() - t0
            if sampling not in best or wall < best[sampling]["wall_s"]:
                best[sampling] = {"wall_s": wall, "steps_s": {k: round(v, 4) for k, v in r.timings_s.items()}}
            results[sampling] = r
    exact = {s.name: s.metrics for s in results["overlap"].segments}
    nearest_vs_exact = {s.name: round(100 * (s.metrics["mean_gy"] / exact[s.name]["mean_gy"] - 1), 3)
                        for s in results["nearest"].segments if s.name in exact and exact[s.name]["mean_gy"] > 0}
    return {
        "best": best,
        "ratio_overlap_over_nearest": best["overlap"]["wall_s"] / best["nearest"]["wall_s"],
        "nearest_mean_dose_deviation_pct": nearest_vs_exact,
        "volume_ml": {n: round(m["volume_ml"], 2) for n, m in exact.items() if m.get("volume_ml") == m.get("volume_ml")},
        "metrics_grid": {k: v for k, v in results["overlap"].metrics_grid.items() if k in ("grid", "sampling", "method")},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "sampling.json"))
    args = ap.parse_args(argv)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                       "platform": platform.platform()}}
    maa = _maa_case()
    if maa is not None:
        out["maa_case"] = _time_case(*maa, args.repeat)
    else:
        out["maa_case"] = "skipped: shared data not found (set TARE_DOSIMETRY_TEST_DATA)"
    out["pet_512x512x300"] = _time_case(*_pet_case(), args.repeat)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
