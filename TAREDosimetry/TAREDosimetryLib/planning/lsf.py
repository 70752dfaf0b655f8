"""Lung shunt fraction (LSF) from MAA images, each estimate recorded with its method.

* SPECT/CT: LSF = C_lung / (C_lung + C_liver), counts summed over the lung and liver segments
  (attenuation- and scatter-corrected SPECT is the preferred method, EANM 2022).
* Planar: the geometric mean of anterior and posterior counts of each organ,
  GM = sqrt(C_ant C_post), then LSF = GM_lung / (GM_lung + GM_liver).  Planar LSF overestimates
  the lung shunt (no attenuation or scatter correction, liver scatter into the lung ROI; reviewed
  in "Lung shunt fraction calculation methods", PMC9793490, 2022): the estimate carries that warning.

Counts are read from the image as it is (no decay correction is needed: both organs are imaged at
the same time).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..evaluation.sampling import union_mask
from ..resample import resample_mask

__all__ = ["LsfEstimate", "lsf_from_counts", "lsf_planar", "lsf_from_spect", "planar_roi_counts", "PLANAR_WARNING"]

PLANAR_WARNING = ("planar LSF (geometric mean of anterior and posterior counts) overestimates the lung shunt "
                  "(no attenuation or scatter correction); SPECT/CT is preferred")


@dataclass
class LsfEstimate:
    """A lung shunt fraction with the method and counts it came from."""

    value: float
    method: str
    counts: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def to_dict(self):
        return {"value": self.value, "percent": 100.0 * self.value, "method": self.method, "counts": dict(self.counts),
                "warnings": list(self.warnings)}


def _count(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number of counts, got {value!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise InputError(f"{name} must be >= 0 counts, got {value!r}")
    return v


def lsf_from_counts(lung_counts, liver_counts, method="counts"):
    """LSF = C_lung / (C_lung + C_liver) as an :class:`LsfEstimate`."""
    cl, cv = _count("lung counts", lung_counts), _count("liver counts", liver_counts)
    if cl + cv <= 0:
        raise InputError("lung and liver counts are both 0: no LSF can be computed")
    return LsfEstimate(cl / (cl + cv), method, {"lung": cl, "liver": cv})


def lsf_planar(lung_anterior, lung_posterior, liver_anterior, liver_posterior):
    """LSF from planar anterior/posterior counts by the geometric mean, with the overestimation warning."""
    vals = [_count(n, v) for n, v in (("lung anterior counts", lung_anterior), ("lung posterior counts", lung_posterior),
                                      ("liver anterior counts", liver_anterior), ("liver posterior counts", liver_posterior))]
    gm_lung, gm_liver = math.sqrt(vals[0] * vals[1]), math.sqrt(vals[2] * vals[3])
    est = lsf_from_counts(gm_lung, gm_liver, method="planar geometric mean")
    est.counts = {"lung_anterior": vals[0], "lung_posterior": vals[1], "liver_anterior": vals[2], "liver_posterior": vals[3],
                  "lung_geometric_mean": gm_lung, "liver_geometric_mean": gm_liver}
    est.warnings.append(PLANAR_WARNING)
    return est


def planar_roi_counts(image, roi_mask):
    """Sum of a planar image's counts inside a 2-D ROI mask (same shape), negative pixels clipped."""
    img, roi = np.asarray(image, dtype=np.float64), np.asarray(roi_mask, dtype=bool)
    if img.ndim != 2 or img.shape != roi.shape:
        raise InputError(f"planar image and ROI must be 2-D arrays of one shape, got {img.shape} and {roi.shape}")
    if not np.all(np.isfinite(img)):
        raise InputError("planar image holds NaN or infinite pixels")
    return float(np.clip(img[roi], 0, None).sum())


def _segment_counts(spect, segmentation, names):
    """Counts of the SPECT voxels whose centres lie in the union of the named segments."""
    box, union = union_mask(segmentation, names)
    if box is None:
        raise InputError(f"segment(s) {', '.join(names)} are empty")
    full = np.zeros(segmentation.grid.shape, bool)
    full[box] = union
    mask = resample_mask(full, segmentation.grid, spect.grid)
    return float(np.clip(np.asarray(spect.array, np.float64)[mask], 0, None).sum()), int(np.count_nonzero(mask))


def lsf_from_spect(spect, segmentation, lung_names, liver_names):
    """LSF from MAA SPECT/CT counts in the lung and liver segments.

    Parameters
    ----------
    spect : Volume, MAA SPECT counts (z, y, x).
    segmentation : Segmentation, any grid overlapping the SPECT.
    lung_names, liver_names : lists of segment names (the whole lungs; the whole liver, tumours included).

    Segment masks are read at the SPECT voxel centres (nearest); a lung segment that does not
    cover the whole lungs gives a too-low LSF (the estimate warns when its lung voxels are few).
    """
    if not lung_names:
        raise InputError("LSF from SPECT/CT needs lung segments (role lung); none found")
    if not liver_names:
        raise InputError("LSF from SPECT/CT needs liver segments (role liver, lobes, tumours); none found")
    c_lung, n_lung = _segment_counts(spect, segmentation, list(lung_names))
    c_liver, _ = _segment_counts(spect, segmentation, list(liver_names))
    est = lsf_from_counts(c_lung, c_liver, method="SPECT/CT segment counts")
    est.counts.update(lung_segments=list(lung_names), liver_segments=list(liver_names), lung_voxels=n_lung)
    lung_ml = n_lung * spect.grid.voxel_volume_ml
    if lung_ml < 1500:
        est.warnings.append(f"the lung segments cover only {lung_ml:.0f} mL of the SPECT (adult lungs 3000-6000 mL): "
                            "lungs outside the field of view or the segments are missed, the LSF is underestimated")
    return est
