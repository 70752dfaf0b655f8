"""Segments too small for the image resolution, and an optional recovery-coefficient correction.

SPECT and PET blur the activity (FWHM: Bremsstrahlung SPECT 15-20 mm, MAA SPECT 10-15 mm, Y-90
PET 5-8 mm; PHYSICS.md): the mean dose of a small segment is biased low and its D/V metrics are
unreliable.  The rule used here, stated in the report and the README:

a segment gets a partial-volume warning when

1. it covers fewer than :data:`MIN_ACTIVITY_VOXELS` (30) activity-image voxels
   (its volume / the activity voxel volume), or
2. its equivalent-sphere diameter ``d = (6 V / pi)^(1/3)`` is under :data:`DIAMETER_FACTOR` (2) x
   the largest edge of the activity voxel, or
3. a resolution is given (``resolution_fwhm_mm``) and ``d`` is under 2 x FWHM.

The warning is on the segment's row (metrics.json ``warnings``, ``pv_warning``), next to the
PASS/FAIL of its rules, and in the report; it does not change the status.

A recovery-coefficient (RC) table measured on a phantom (e.g. NEMA IEC body spheres, for the same
scanner and reconstruction) may be given: tumour mean doses are then also reported divided by the
RC interpolated at the tumour's equivalent-sphere diameter (or volume), as
``mean_gy_rc_corrected``, BESIDE the uncorrected ``mean_gy``.  Rules keep judging ``mean_gy``; a
rule that names ``mean_gy_rc_corrected`` judges the corrected value (the user's explicit choice).
Outside the table's range the end value is used, with a warning.
"""

import csv
import json
import math

import numpy as np

from ..errors import InputError
from ..params import RC_AXES, rc_table

__all__ = [
    "MIN_ACTIVITY_VOXELS",
    "DIAMETER_FACTOR",
    "equivalent_diameter_mm",
    "partial_volume_reasons",
    "read_recovery_coefficients",
    "recovery_coefficient",
    "apply_partial_volume",
]

#: Fewer activity voxels than this in a segment: partial-volume warning.
MIN_ACTIVITY_VOXELS = 30
#: Equivalent-sphere diameter under this many activity voxel edges (or FWHMs): warning.
DIAMETER_FACTOR = 2.0


def equivalent_diameter_mm(volume_ml):
    """Diameter (mm) of the sphere of volume ``volume_ml`` (mL = 1000 mm^3)."""
    v_mm3 = float(volume_ml) * 1000.0
    return (6.0 * v_mm3 / math.pi) ** (1.0 / 3.0) if v_mm3 > 0 else 0.0


def partial_volume_reasons(volume_ml, activity_spacing_mm, fwhm_mm=None):
    """(activity voxels, equivalent diameter mm, [reasons]) of a segment; no reasons: no warning.

    volume_ml : float, the segment's volume.
    activity_spacing_mm : (3,) voxel size of the activity image (x, y, z), mm.
    fwhm_mm : float or None, the image resolution if known.
    """
    spacing = np.asarray(activity_spacing_mm, dtype=np.float64)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_vox = float(volume_ml) / voxel_ml
    d = equivalent_diameter_mm(volume_ml)
    edge = float(spacing.max())
    reasons = []
    if n_vox < MIN_ACTIVITY_VOXELS:
        reasons.append(f"{n_vox:.1f} activity voxels (< {MIN_ACTIVITY_VOXELS})")
    if d < DIAMETER_FACTOR * edge:
        reasons.append(f"equivalent-sphere diameter {d:.1f} mm < {DIAMETER_FACTOR:g} x {edge:.2f} mm voxel")
    if fwhm_mm and d < DIAMETER_FACTOR * fwhm_mm:
        reasons.append(f"equivalent-sphere diameter {d:.1f} mm < {DIAMETER_FACTOR:g} x {fwhm_mm:g} mm FWHM")
    return n_vox, d, reasons


def _rows_from_csv(path):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if len(rows) < 3 or len(rows[0]) != 2:
        raise InputError(f"recovery-coefficient file {path}: expected a header 'diameter_mm,rc' (or 'volume_ml,rc') "
                         "and at least 2 rows of 2 numbers")
    header = [h.strip().lower() for h in rows[0]]
    try:
        points = [(float(a), float(b)) for a, b in rows[1:]]
    except ValueError:
        raise InputError(f"recovery-coefficient file {path}: rows must hold 2 numbers each") from None
    return header[0], header[1], points


def _rows_from_json(path):
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    axis = next((a for a in RC_AXES if isinstance(data, dict) and a in data), None)
    if axis is None or not isinstance(data.get("rc"), list) or len(data["rc"]) != len(data[axis]):
        raise InputError(f"recovery-coefficient file {path}: expected {{\"diameter_mm\": [...], \"rc\": [...]}} "
                         "(or volume_ml), lists of equal length")
    return axis, "rc", list(zip(data[axis], data["rc"]))


def read_recovery_coefficients(path):
    """((x, rc), ...), axis) from a CSV (header ``diameter_mm,rc`` or ``volume_ml,rc``) or a JSON
    file ``{"diameter_mm": [10, 13, 17, 22, 28, 37], "rc": [...]}``; InputError naming the file."""
    try:
        if str(path).lower().endswith(".json"):
            axis, rc_name, points = _rows_from_json(path)
        else:
            axis, rc_name, points = _rows_from_csv(path)
    except OSError as exc:
        raise InputError(f"recovery-coefficient file {path}: cannot be read ({exc.strerror})") from None
    except InputError:  # already names the file (an InputError is a ValueError too)
        raise
    except ValueError as exc:  # malformed JSON
        raise InputError(f"recovery-coefficient file {path}: malformed ({exc})") from None
    if axis not in RC_AXES or rc_name not in ("rc", "recovery_coefficient"):
        raise InputError(f"recovery-coefficient file {path}: columns must be diameter_mm or volume_ml, then rc; "
                         f"got {axis!r}, {rc_name!r}")
    try:
        return rc_table(points), axis
    except InputError as exc:
        raise InputError(f"recovery-coefficient file {path}: {exc}") from None


def recovery_coefficient(table, x):
    """(RC interpolated linearly at ``x``, True when ``x`` lies outside the table and the end value was used)."""
    xs = np.array([p[0] for p in table])
    rcs = np.array([p[1] for p in table])
    return float(np.interp(x, xs, rcs)), bool(x < xs[0] or x > xs[-1])


def _correct_tumour(result, params, d_mm):
    x = d_mm if params.recovery_coefficient_axis == "diameter_mm" else result.metrics.get("volume_ml")
    rc, outside = recovery_coefficient(params.recovery_coefficients, x)
    result.metrics["recovery_coefficient"] = rc
    result.metrics["mean_gy_rc_corrected"] = result.metrics["mean_gy"] / rc
    if outside:
        unit = "mm" if params.recovery_coefficient_axis == "diameter_mm" else "mL"
        result.warnings.append(f"recovery coefficient: {x:.3g} {unit} lies outside the RC table; its end value {rc:.3g} is used")


def apply_partial_volume(results, activity_spacing_mm, params, warnings):
    """Add ``activity_voxels`` and ``equivalent_diameter_mm`` to every measured segment, flag the
    segments too small for the resolution (``pv_warning``, a warning on the row and one case
    warning listing them), and add the RC-corrected tumour mean doses when a table is given."""
    flagged = []
    for r in results:
        v = r.metrics.get("volume_ml")
        if r.dvh is None or v is None or not math.isfinite(v) or v <= 0 or "LSF model" in r.name:
            continue
        n_vox, d, reasons = partial_volume_reasons(v, activity_spacing_mm, params.resolution_fwhm_mm)
        r.metrics["activity_voxels"] = n_vox
        r.metrics["equivalent_diameter_mm"] = d
        if reasons:
            r.pv_warning = True
            r.warnings.append("partial volume: " + "; ".join(reasons) + ": mean dose and D/V metrics biased low")
            flagged.append(r.name)
        if params.recovery_coefficients is not None and r.role == "tumor":
            _correct_tumour(r, params, d)
    if flagged:
        warnings.append(
            f"segment(s) {', '.join(repr(n) for n in flagged)} are small for the image resolution (partial volume: "
            f"fewer than {MIN_ACTIVITY_VOXELS} activity voxels or an equivalent-sphere diameter under "
            f"{DIAMETER_FACTOR:g} x the voxel size{' or the FWHM' if params.resolution_fwhm_mm else ''}): their mean doses "
            "are biased low"
        )
