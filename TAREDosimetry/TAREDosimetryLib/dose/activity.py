"""Activity maps (GBq per voxel) from SPECT counts or from quantitative images (Bq/mL).

Relative calibration (Bremsstrahlung SPECT, MAA SPECT) [PHYSICS.md]::

    A_ref = A_administered (1 - residual_fraction) (1 - LSF)
    A_i   = A_ref C_i / sum_{j in reference region} C_j

The reference region must not hold the lungs (their activity is the shunt, A_adm (1 - R) LSF):
the reference region 'image' is the image without the lung segments' counts.  The image's own
lung shunt fraction is LSF_image = C_lung / (C_lung + C_liver) (:func:`image_lung_shunt_fraction`).

Absolute calibration (Y-90 PET, quantitative SPECT)::

    A_i(t0) = c_i V_i exp(lambda dt)     (dt = scan - administration; skipped when decay-corrected)
"""

import math

import numpy as np

from .. import physics
from ..errors import InputError

__all__ = [
    "check_finite",
    "clip_negative",
    "negative_voxels_warning",
    "MAX_NEGATIVE_FRACTION",
    "reference_activity_gbq",
    "lung_activity_gbq",
    "scale_counts_to_gbq",
    "absolute_activity_gbq",
    "image_lung_shunt_fraction",
    "lsf_disagreement",
    "LSF_TOLERANCE_POINTS",
    "LSF_TOLERANCE_RELATIVE",
]


def check_finite(image, what="activity image"):
    """Raise InputError when the image holds NaN or infinite voxels (two passes, no mask unless it does)."""
    a = image.array
    if a.dtype.kind == "f" and a.size and not (math.isfinite(float(a.min())) and math.isfinite(float(a.max()))):
        n = int(np.count_nonzero(~np.isfinite(a)))
        named = what if not image.name or image.name in what else f"{what} {image.name}"  # the file once
        raise InputError(f"{named} holds {n} NaN or infinite voxel(s); fix or mask the image first")


def clip_negative(image, in_place=False):
    """Counts with negative voxels set to zero.

    Parameters
    ----------
    image : Volume
    in_place : bool; True: when the image's array is float32, its negative voxels are set to 0
        in it (the image is changed; for a caller that owns it), instead of in a copy.

    Returns
    -------
    (array float32, n_negative, negative_fraction) where negative_fraction is the sum of the
    negative values over the sum of the positive ones (what clipping removes).  The array is
    the image's own when nothing was clipped (or ``in_place``), else a new one.
    """
    a = np.asarray(image.array, dtype=np.float32)
    if a.size == 0 or not float(a.min()) < 0:
        return a, 0, 0.0
    neg = a < 0
    n = int(np.count_nonzero(neg))
    neg_sum = float(-a[neg].sum(dtype=np.float64))
    pos_sum = float(a.sum(dtype=np.float64)) + neg_sum
    out = a if (in_place or a is not image.array) and a.flags.writeable else a.copy()
    out[neg] = 0.0
    return out, n, (neg_sum / pos_sum if pos_sum > 0 else math.inf)


#: Negative voxels summing to more than this fraction of the positive total stop the run (unless
#: allowed): an image with a negative offset or a subtraction image, not reconstruction noise.
MAX_NEGATIVE_FRACTION = 0.05


def negative_voxels_warning(n_negative, negative_fraction, positive_total, what, allow=False):
    """The warning for clipped negative voxels, or InputError when they are too many.

    Parameters
    ----------
    n_negative : int, voxels below 0; negative_fraction : float, their sum over the positive total.
    positive_total : float, sum of the positive voxels (image units); what : the image's name.
    allow : bool, clip whatever their share (``allow_negative``).

    Returns
    -------
    str or None (no negative voxel).
    """
    if not n_negative:
        return None
    pct = 100.0 * negative_fraction
    if negative_fraction > MAX_NEGATIVE_FRACTION and not allow:
        raise InputError(
            f"{n_negative} negative voxel(s) in the {what} sum to {pct:.3g} % of the positive total (more than "
            f"{100 * MAX_NEGATIVE_FRACTION:g} %): a negative offset, a subtraction image or the wrong image? Check the "
            "image, or add --allow-negative to set them to 0 and go on"
        )
    return (
        f"{n_negative} negative voxel(s) in the {what} were set to 0: they summed to "
        f"{-negative_fraction * positive_total:.4g} (image units), {pct:.3g} % of the positive total, which clipping removes"
    )


def _require_activity(params):
    if params.administered_activity_gbq is None:
        raise InputError("administered_activity_gbq is required with relative calibration (--administered-activity-gbq)")


def reference_activity_gbq(params, lsf=None):
    """A_adm (1 - residual) (1 - LSF): activity that reached the reference region, GBq.

    ``lsf``: the LSF to use when ``params`` gives none (e.g. the image's own, see
    :func:`image_lung_shunt_fraction`).  An LSF not given (None) counts as 0 here, and a residual
    not given as 0; the pipeline refuses that where lung rules need the LSF and otherwise records it
    as a reason the case is INCOMPLETE.
    """
    _require_activity(params)
    lsf = params.lung_shunt_fraction if params.lung_shunt_fraction is not None else (lsf or 0.0)
    return params.administered_activity_gbq * (1.0 - params.residual_fraction_used) * (1.0 - lsf)


def lung_activity_gbq(params, lsf=None):
    """A_adm (1 - residual) LSF: activity shunted to the lungs, GBq (None when no LSF is given,
    in ``params`` or as ``lsf``)."""
    _require_activity(params)
    lsf = params.lung_shunt_fraction if params.lung_shunt_fraction is not None else lsf
    if lsf is None:
        return None
    return params.administered_activity_gbq * (1.0 - params.residual_fraction_used) * lsf


#: A given LSF and the image's differ when they are more than 2 percentage points and more than 20 %
#: (relative) apart: either way a planar and a tomographic LSF of one patient rarely differ more.
LSF_TOLERANCE_POINTS = 0.02
LSF_TOLERANCE_RELATIVE = 0.20


def image_lung_shunt_fraction(lung_counts, liver_counts):
    """LSF_image = C_lung / (C_lung + C_liver), from the counts in the lung segments and in the
    whole liver; None when they hold no counts."""
    total = float(lung_counts) + float(liver_counts)
    return float(lung_counts) / total if total > 0 and math.isfinite(total) else None


def lsf_disagreement(given, from_image):
    """A warning (str) when the given LSF and the image's differ by more than 2 percentage points
    or 20 % of the image's value; None when they agree or either is unknown."""
    if given is None or from_image is None:
        return None
    diff = abs(float(given) - float(from_image))
    if diff <= LSF_TOLERANCE_POINTS and diff <= LSF_TOLERANCE_RELATIVE * max(float(from_image), 1e-12):
        return None
    return (
        f"the lung shunt fraction given ({100 * given:.1f} %) differs from the image's own, C_lung / (C_lung + C_liver) = "
        f"{100 * from_image:.1f} %: the lung dose read from the image (on the liver's counts-to-activity scale) then "
        "disagrees with the LSF (the lungs and liver together hold more or less than A_adm (1 - residual)); check the "
        "LSF, the lung segments, scatter into the lungs and the registration"
    )


def _scaled(values, factor, out=None):
    """float32 ``values * float32(factor)``, into ``out`` when given (may be ``values`` itself)."""
    if out is None:
        return (values * np.float32(factor)).astype(np.float32, copy=False)
    return np.multiply(values, np.float32(factor), out=out, dtype=np.float32)


def scale_counts_to_gbq(counts, reference_counts, params, out=None, lsf=None):
    """Relative calibration: counts (array) times A_ref / reference_counts.

    Parameters
    ----------
    counts : (Z, Y, X) float32 ndarray, non-negative counts per voxel.
    reference_counts : float, counts of the reference region (same counts, same units).
    params : DosimetryParams
    out : float32 ndarray of the shape of ``counts``, optional (``counts`` itself: scaled in place).
    lsf : float, optional: the LSF to use when ``params`` gives none (the image's own).

    Returns
    -------
    (activity_gbq ndarray float32, gbq_per_count float)
    """
    a_ref = reference_activity_gbq(params, lsf)
    if not reference_counts > 0 or not math.isfinite(reference_counts):
        raise InputError(
            f"the reference region ({params.reference_region}) holds no counts (sum = {reference_counts:g}): "
            "check that the segments lie on the uptake, or choose another --reference-region"
        )
    factor = a_ref / reference_counts
    return _scaled(counts, factor, out), factor


def absolute_activity_gbq(concentration_bq_ml, voxel_volume_ml, params, out=None):
    """Absolute calibration: GBq per voxel at administration time.

    concentration_bq_ml : (Z, Y, X) ndarray, Bq/mL (negative values already clipped).
    out : float32 ndarray, optional (``concentration_bq_ml`` itself: converted in place).
    """
    if params.image_decay_corrected:
        factor = 1.0
    elif params.hours_since_administration is None:
        raise InputError(
            "absolute calibration (Bq/mL image, e.g. --pet) needs the time from administration to the scan: give "
            "hours_since_administration (--hours-since-administration H; 0 when scanned at administration), or "
            "image_decay_corrected (--decay-corrected) when the image is already decay-corrected to administration"
        )
    else:
        factor = 1.0 / physics.decay_factor(params.hours_since_administration, params.half_life_h)
    return _scaled(concentration_bq_ml, voxel_volume_ml * 1e-9 * factor, out), factor
