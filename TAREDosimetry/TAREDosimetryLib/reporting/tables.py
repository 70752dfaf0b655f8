"""The per-segment metrics table: column order, number formats and column titles.

Shared by the HTML report, metrics.csv and the Slicer tables, so every output shows the same
columns in the same order with the same precision.
"""

import math
import re

import numpy as np

__all__ = ["metrics_table_rows", "format_metric", "column_title", "clean_number", "HEAD_KEYS", "RX_D", "RX_VPCT", "RX_VML"]

HEAD_KEYS = ("volume_ml", "mass_g", "activity_gbq", "activity_pct", "mean_gy", "median_gy", "sd_gy", "min_gy", "max_gy")
_TAIL_KEYS = ("eud_gy", "bed_gy", "tn_ratio", "cumulative_mean_gy")
RX_D = re.compile(r"^d(\d+(?:\.\d+)?)_gy$")
RX_VPCT = re.compile(r"^v(\d+(?:\.\d+)?)_pct$")
RX_VML = re.compile(r"^v(\d+(?:\.\d+)?)_ml$")


def clean_number(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None


def metrics_table_rows(result):
    """Columns and rows of the per-segment metrics table (shared by the HTML report and CSV files).

    Parameters
    ----------
    result : CaseResult

    Returns
    -------
    columns : list of str
        ``name``, ``role``, then metric keys in a stable order: volume_ml, mass_g, activity_gbq,
        activity_pct, mean_gy, median_gy, sd_gy, min_gy, max_gy, the ``d<x>_gy`` keys (x
        increasing), ``v<x>_pct``, ``v<x>_ml``, eud_gy, bed_gy, tn_ratio, cumulative_mean_gy,
        then any other metric keys (alphabetical).  The fixed keys are always present, so files
        of different cases have the same leading columns.
    rows : list of list
        One row per segment of ``result.segments``, in order; numbers as Python float/int, and
        None for missing or non-finite values (a T/N ratio of a non-tumour, a NaN volume).
    """
    present = []
    for s in result.segments:
        for k in s.metrics:
            if k not in present:
                present.append(k)

    def by_level(rx):
        keys = [k for k in present if rx.match(k)]
        return sorted(keys, key=lambda k: float(rx.match(k).group(1)))

    keys = list(HEAD_KEYS) + by_level(RX_D) + by_level(RX_VPCT) + by_level(RX_VML) + list(_TAIL_KEYS)
    keys += sorted(k for k in present if k not in keys)
    columns = ["name", "role"] + keys
    rows = []
    for s in result.segments:
        rows.append([s.name, s.role] + [clean_number(s.metrics.get(k)) for k in keys])
    return columns, rows


def format_metric(key, value):
    """Text of one metric value with a precision that suits its unit ('–' when missing)."""
    v = clean_number(value)
    if v is None:
        return "\u2013"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and not key.endswith(("_gy", "_ml", "_g", "_gbq", "_pct", "_ratio")):
        return str(v)
    a = abs(v)
    if key.endswith("_gbq"):
        return f"{v:.3f}" if a >= 0.01 or v == 0 else f"{v:.3g}"
    if key.endswith("_ratio"):
        return f"{v:.2f}"
    if key.endswith("_pct"):
        return f"{v:.1f}"
    if key.endswith(("_ml", "_g")):
        return f"{v:.1f}" if a >= 10 or v == 0 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"
    if key.endswith("_gy"):
        return f"{v:.1f}" if a >= 1 or v == 0 else f"{v:.2f}"
    if key.endswith("_mm") or key == "activity_voxels":
        return f"{v:.1f}"
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.4g}"
    return f"{v:.6g}"


def column_title(key):
    m = RX_D.match(key)
    if m:
        return f"D{m.group(1)} (Gy)"
    m = RX_VPCT.match(key)
    if m:
        return f"V{m.group(1)}Gy (%)"
    m = RX_VML.match(key)
    if m:
        return f"V{m.group(1)}Gy (mL)"
    fixed = {
        "name": "segment", "role": "role", "volume_ml": "volume (mL)", "mass_g": "mass (g)",
        "activity_gbq": "activity (GBq)", "activity_pct": "activity share (%)", "mean_gy": "mean (Gy)",
        "median_gy": "median (Gy)", "sd_gy": "SD (Gy)", "min_gy": "min (Gy)", "max_gy": "max (Gy)",
        "eud_gy": "EUD (Gy)", "bed_gy": "BED (Gy)", "tn_ratio": "T/N", "cumulative_mean_gy": "cumulative mean (Gy)",
        "equivalent_diameter_mm": "equivalent-sphere diameter (mm)", "activity_voxels": "activity voxels",
        "mean_gy_rc_corrected": "mean, RC-corrected (Gy)", "recovery_coefficient": "RC",
        "in_right_lobe_pct": "in right lobe (% of volume)", "in_left_lobe_pct": "in left lobe (% of volume)",
    }
    return fixed.get(key, key)
