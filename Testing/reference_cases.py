"""Reference outputs of a pinned engine version, for the speed work of issue 14.

Every speed-up must keep the results bit-identical or within float32 rounding.  This module
builds a set of cases (the demo, the analytic phantom, synthetic grids that are equal, cropped,
finer, coarser or oblique, and the shared MAA case), runs them through ``run_case`` and reduces
each to numbers: every metric of every segment, the numeric summary, and checksums of the dose
and activity maps.  ``reference_outputs.json`` holds these numbers as computed by the engine
at the commit named in it (before the speed work); ``test_reference_outputs.py`` recomputes
them with the current engine and compares.

Regenerate (only when a result is meant to change, and say why in the commit)::

    python3 Testing/reference_cases.py --write
"""

import functools
import json
import math
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.join(REPO, "TAREDosimetry") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

REFERENCE_PATH = os.path.join(HERE, "reference_outputs.json")

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, run_case  # noqa: E402
from TAREDosimetryLib.volume import Grid  # noqa: E402


def _box_grid_case(act_shape, act_spacing, act_origin, seg_shape, seg_spacing, seg_origin, seg_direction=None):
    """Activity with a smooth uptake pattern on one grid, a liver ellipsoid and two tumours on another."""
    agrid = Grid(act_shape, act_spacing, act_origin)
    z, y, x = np.meshgrid(*(act_origin[a] + act_spacing[a] * np.arange(act_shape[2 - a]) for a in (2, 1, 0)),
                          indexing="ij", sparse=True)
    counts = (100.0 + 40.0 * np.sin(x / 17.0) * np.cos(y / 23.0) + 0.5 * z).astype(np.float32)
    counts += (900.0 * np.exp(-((x - 30) ** 2 + (y - 40) ** 2 + (z - 35) ** 2) / 200.0)).astype(np.float32)
    activity = Volume(counts, grid=agrid, name="synthetic")
    sgrid = Grid(seg_shape, seg_spacing, seg_origin, seg_direction) if seg_direction else Grid(seg_shape, seg_spacing, seg_origin)
    pts = np.stack(np.meshgrid(*(np.arange(n) for n in seg_shape[::-1]), indexing="ij"), -1).reshape(-1, 3)  # i, j, k
    lps = pts @ sgrid.ijk_to_lps[:3, :3].T + sgrid.ijk_to_lps[:3, 3]
    X, Y, Z = (lps[:, a].reshape(seg_shape[::-1]).transpose(2, 1, 0) for a in range(3))
    liver = ((X - 35) / 28) ** 2 + ((Y - 38) / 24) ** 2 + ((Z - 36) / 22) ** 2 <= 1
    t1 = ((X - 30) ** 2 + (Y - 40) ** 2 + (Z - 35) ** 2 <= 81) & liver
    t2 = ((X - 48) ** 2 + (Y - 30) ** 2 + (Z - 40) ** 2 <= 36) & liver
    lung = ((X - 35) / 25) ** 2 + ((Y - 38) / 20) ** 2 + ((Z - 66) / 6) ** 2 <= 1
    seg = Segmentation.from_masks({"liver": liver, "tumour 1": t1, "tumour 2": t2, "lung": lung}, sgrid)
    return activity, seg


def _synthetic(kind):
    if kind == "same":
        return _box_grid_case((40, 42, 44), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (40, 42, 44), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    if kind == "crop":  # the segmentation grid is a crop of the activity grid
        return _box_grid_case((40, 42, 44), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (34, 36, 38), (2.0, 2.0, 2.0), (6.0, 4.0, 2.0))
    if kind == "seg_finer":  # 1 mm segmentation over a 3 mm activity grid, shifted by a third of a voxel
        return _box_grid_case((27, 28, 29), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0), (72, 74, 76), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    if kind == "act_finer":  # the activity grid is the finer one
        return _box_grid_case((80, 84, 88), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (27, 28, 29), (3.0, 3.0, 3.0), (0.5, 0.5, 0.5))
    if kind == "oblique":  # segmentation rotated 10 degrees about z
        c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
        return _box_grid_case((40, 42, 44), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (17, 20, 20), (4.0, 4.0, 4.0), (14.0, 2.0, 2.0),
                              (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    raise ValueError(kind)


@functools.lru_cache(maxsize=1)
def _maa(data_dir):
    from TAREDosimetryLib import imaging

    d = os.path.join(data_dir, "maa-spect-patient2")
    spect = imaging.read_image(os.path.join(d, "patient_2_SPECT.nrrd"))
    seg = imaging.read_segmentation(os.path.join(d, "patient_2_Segmentation.seg.nrrd"))
    return spect, seg


@functools.lru_cache(maxsize=1)
def _demo():
    from TAREDosimetryLib.imaging.phantom import make_phantom

    return make_phantom(analytic=False)


#: name -> (needs the shared data, builder(data_dir) -> kwargs of run_case)
CASES = {
    "demo_ldm": (False, lambda d: (lambda c: dict(activity=c.activity, segmentation=c.segmentation, params=c.params, ct=c.ct))(_demo())),
    "demo_dvk_ct": (False, lambda d: (lambda c: dict(activity=c.activity, segmentation=c.segmentation, ct=c.ct,
                                                      params=c.params.replace(method="dvk", lung_dose_from="image")))(_demo())),
    "demo_dvk_lung_ldm": (False, lambda d: (lambda c: dict(activity=c.activity, segmentation=c.segmentation, ct=c.ct,
                                                            params=c.params.replace(method="dvk", dvk_lung_mode="ldm",
                                                                                    lung_dose_from="image")))(_demo())),
    "demo_nearest": (False, lambda d: (lambda c: dict(activity=c.activity, segmentation=c.segmentation, ct=c.ct,
                                                       params=c.params.replace(sampling="nearest")))(_demo())),
    "analytic_5mm": (False, lambda d: (lambda c: dict(activity=c.activity, segmentation=c.segmentation, params=c.params))(
        __import__("TAREDosimetryLib.imaging.phantom", fromlist=["make_phantom"]).make_phantom(analytic=True, spacing_mm=5.0))),
}
for _kind in ("same", "crop", "seg_finer", "act_finer", "oblique"):
    for _sampling in ("overlap", "nearest", "linear"):
        CASES[f"{_kind}_{_sampling}"] = (False, lambda d, k=_kind, s=_sampling: dict(
            zip(("activity", "segmentation"), _synthetic(k)),
            params=DosimetryParams(administered_activity_gbq=2.0, lung_shunt_fraction=0.05, sampling=s, lung_dose_from="image")))
CASES["same_dvk"] = (False, lambda d: dict(zip(("activity", "segmentation"), _synthetic("same")),
                                           params=DosimetryParams(administered_activity_gbq=2.0, lung_shunt_fraction=0.05,
                                                                  method="dvk")))
CASES["maa_ldm"] = (True, lambda d: dict(zip(("activity", "segmentation"), _maa(d)),
                                         params=DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06)))
CASES["maa_dvk"] = (True, lambda d: dict(zip(("activity", "segmentation"), _maa(d)),
                                         params=DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06, method="dvk")))
CASES["maa_nearest"] = (True, lambda d: dict(zip(("activity", "segmentation"), _maa(d)),
                                             params=DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06,
                                                                    sampling="nearest")))
CASES["maa_linear"] = (True, lambda d: dict(zip(("activity", "segmentation"), _maa(d)),
                                            params=DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06,
                                                                   sampling="linear")))


def _number(v):
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    return None


def _map_stats(arr):
    a = np.asarray(arr, dtype=np.float64)
    return {"sum": float(a.sum()), "sum_sq": float((a * a).sum()), "max": float(a.max()), "min": float(a.min()),
            "p99": float(np.percentile(a, 99)), "shape": list(a.shape)}


def outputs_of(result):
    """The numbers of a CaseResult that the reference keeps."""
    segments = {}
    for s in result.segments:
        m = {k: _number(v) for k, v in s.metrics.items()}
        dose, vol = s.dvh.curve(1.0)
        m["dvh_curve_1gy"] = [float(x) for x in vol[:: max(1, vol.size // 40)]]
        segments[s.name] = {k: v for k, v in m.items() if v is not None}
    summary = {k: _number(v) for k, v in result.summary.items()}
    return {
        "segments": segments,
        "summary": {k: v for k, v in summary.items() if v is not None},
        "dose_gy": _map_stats(result.dose_gy.array),
        "activity_gbq": _map_stats(result.activity_gbq.array) if result.activity_gbq is not None else None,
        "density_g_ml": _map_stats(result.density_g_ml.array) if hasattr(result.density_g_ml, "array") else None,
        "statuses": [e.status for e in result.evaluations],
        "overall_status": getattr(result, "overall_status", None),
    }


def run_reference_case(name, data_dir):
    _, build = CASES[name]
    return outputs_of(run_case(**build(data_dir)))


def _commit():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"write {REFERENCE_PATH}")
    ap.add_argument("--data", default=os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data")))
    args = ap.parse_args(argv)
    out = {"commit": _commit(), "cases": {}}
    for name, (needs_data, _) in CASES.items():
        if needs_data and not os.path.isdir(os.path.join(args.data, "maa-spect-patient2")):
            print(f"skip {name}: no shared data", file=sys.stderr)
            continue
        out["cases"][name] = run_reference_case(name, args.data)
        print(name, "done", file=sys.stderr)
    if args.write:
        with open(REFERENCE_PATH, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)
    else:
        print(json.dumps(out, indent=1, sort_keys=True)[:2000])


if __name__ == "__main__":
    main()
