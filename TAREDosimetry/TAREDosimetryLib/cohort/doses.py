"""Doses of a cohort from batch results: per lesion and per patient from each case's metrics.json.

A results folder is the ``--out`` of ``tare-dosimetry batch``: one ``<case_id>/metrics.json`` per
case.  Per lesion, the chosen metric of each tumour segment (``mean_gy`` by default; any metric of
metrics.json: ``d70_gy``, ``bed_gy``, ``eud_gy``, ``v100_pct``...).  Per patient, the lesions'
values weighted by their mass: for ``mean_gy`` that is exactly the mean dose of all the tumours
together (energy over mass); for D/V metrics, BED and EUD it is a mass-weighted average of the
lesions' values (not the metric of the union).  The non-tumoural liver dose is the mean dose of the
normal-liver segment (given or derived: liver minus tumours), and of the perfused normal liver
when there is one.

Extent: a lobe is involved by a tumour when at least ``lobe_min_pct`` % of the tumour's volume lies in
that lobe's segment (``in_right_lobe_pct`` / ``in_left_lobe_pct`` of metrics.json); the disease is
bilobar when the tumours together involve both lobes, unilobar when one; unknown without lobe segments.
"""

import json
import os

import numpy as np

from ..errors import InputError

__all__ = ["metric_key", "result_case_ids", "read_case_metrics", "case_doses", "derive_extent", "LOBE_MIN_PCT"]

#: Share of a tumour's volume inside a lobe segment from which that lobe counts as involved.
LOBE_MIN_PCT = 5.0
_ALIASES = {"mean": "mean_gy", "median": "median_gy", "max": "max_gy", "min": "min_gy", "bed": "bed_gy",
            "eud": "eud_gy", "mean_dose": "mean_gy"}


def metric_key(name):
    """metrics.json key of a metric name: 'D70' -> 'd70_gy', 'V100' -> 'v100_pct', 'BED' -> 'bed_gy', 'mean_gy' as is."""
    from ..evaluation.dvh import parse_metric

    t = str(name).strip()
    if t.lower() in _ALIASES:
        return _ALIASES[t.lower()]
    parsed = None if "_" in t else parse_metric(t)
    if parsed is None:
        return t.lower()
    kind, value, unit = parsed
    if kind == "D" and unit == "%":
        return f"d{value:g}_gy"
    if kind == "V":
        return f"v{value:g}_pct"
    raise InputError(f"--dose-metric {name}: D-at-volume metrics in mL are not in metrics.json; use D<percent>, "
                     "mean_gy, bed_gy, eud_gy or v<Gy>_pct")


def result_case_ids(results_dir):
    """Case ids with a complete result (``<id>/metrics.json``) in a batch's output folder."""
    if not os.path.isdir(results_dir):
        raise InputError(f"--results {results_dir}: not a folder (the --out of tare-dosimetry batch)")
    ids = sorted(d for d in os.listdir(results_dir)
                 if not d.startswith(".") and os.path.isfile(os.path.join(results_dir, d, "metrics.json")))
    if not ids:
        raise InputError(f"--results {results_dir}: no <case_id>/metrics.json in it (the --out of tare-dosimetry batch)")
    return ids


def read_case_metrics(results_dir, case_id):
    path = os.path.join(results_dir, case_id, "metrics.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"--results: {path} cannot be read ({exc})") from None


def _value(seg, key, case_id):
    if key not in seg:
        avail = sorted(k for k, v in seg.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise InputError(f"case {case_id}: segment {seg.get('name')!r} has no metric {key!r}; available: {', '.join(avail)}")
    v = seg[key]
    return float(v) if v is not None else float("nan")


def derive_extent(lesions, min_pct=LOBE_MIN_PCT):
    """'bilobar', 'unilobar' or None (no lobe overlap recorded) from the lesions' lobe shares."""
    lobes, known = set(), False
    for les in lesions:
        for lobe, key in (("right", "in_right_lobe_pct"), ("left", "in_left_lobe_pct")):
            v = les.get(key)
            if v is not None:
                known = True
                if v >= min_pct:
                    lobes.add(lobe)
    if not known or not lobes:
        return None
    return "bilobar" if len(lobes) == 2 else "unilobar"


def case_doses(metrics, key, case_id, lobe_min_pct=LOBE_MIN_PCT):
    """Per-lesion and per-patient doses of one case's metrics.json.

    Returns
    -------
    dict: ``lesions`` [{lesion, dose, mass_g, volume_ml, in_right_lobe_pct, in_left_lobe_pct}],
    ``patient_dose`` (mass-weighted), ``nontumoral_liver_gy``, ``perfused_normal_gy``,
    ``extent_derived``, ``overall_status``, ``warnings`` (count).
    """
    segs = metrics.get("segments") or []
    lesions = []
    for s in segs:
        if s.get("role") == "tumor":
            lesions.append({"lesion": s.get("name"), "dose": _value(s, key, case_id), "mass_g": s.get("mass_g"),
                            "volume_ml": s.get("volume_ml"), "in_right_lobe_pct": s.get("in_right_lobe_pct"),
                            "in_left_lobe_pct": s.get("in_left_lobe_pct")})
    mass = np.array([les["mass_g"] or 0.0 for les in lesions], float)
    dose = np.array([les["dose"] for les in lesions], float)
    ok = np.isfinite(dose) & (mass > 0)
    patient = float((dose[ok] * mass[ok]).sum() / mass[ok].sum()) if ok.any() else None
    by_role = {}
    for s in segs:
        by_role.setdefault(s.get("role"), s)
    normal = by_role.get("normal_liver")
    perfused = by_role.get("perfused_normal")
    return {"lesions": lesions, "patient_dose": patient, "n_tumours": len(lesions),
            "nontumoral_liver_gy": normal.get("mean_gy") if normal else None,
            "perfused_normal_gy": perfused.get("mean_gy") if perfused else None,
            "extent_derived": derive_extent(lesions, lobe_min_pct),
            "overall_status": metrics.get("overall_status"), "warnings": len(metrics.get("warnings") or [])}
