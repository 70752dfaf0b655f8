"""Dose metrics of one region from its voxel values on the metrics grid.

Mean dose and mean BED are mass-weighted (energy over mass, = K A / M under local deposition);
the DVH, its D/V metrics and the EUD are volume-based (each voxel 1/N of the volume).  With
exact partial-voxel sampling each voxel j carries the fraction f_j of its volume inside the
region: the mass-weighted means use f_j m_j, the DVH, D/V metrics and EUD use f_j V_j, and the
activity is sum_j f_j A_j, so that mean = K sum f A / sum f m exactly under LDM.
"""

import numpy as np

from .. import physics
from .dvh import DVH
from .radiobiology import bed_parameters, eud_alpha_per_gy

__all__ = ["segment_metrics", "uniform_metrics"]


def segment_metrics(dose_gy, density_g_ml, activity_gbq_per_ml, voxel_volume_ml, role, params, name="", weights=None):
    """Metrics of one region from its voxel values on the metrics grid.

    Parameters
    ----------
    dose_gy, density_g_ml, activity_gbq_per_ml : (N,) arrays of the region's voxels.
    voxel_volume_ml : float
    role : str, selects the BED alpha/beta (tumour or normal tissue).
    params : DosimetryParams
    weights : (N,) array of float in [0, 1], optional: fraction of each voxel inside the region
        (exact partial-voxel sampling); None when every voxel lies wholly inside.

    Returns
    -------
    (metrics dict, DVH).  ``mean_gy`` and ``bed_gy`` are mass-weighted means (energy / mass, = K A / M
    under LDM); the DVH, its D/V metrics and ``eud_gy`` are volume-based.  ``eud_gy`` is NaN for
    roles other than tumour (no radiosensitivity defined for them).
    """
    dvh = DVH(dose_gy, voxel_volume_ml, params.dvh_bin_width_gy, name=name, weights=weights)
    mass_g_vox = density_g_ml.astype(np.float64) * voxel_volume_ml
    act = activity_gbq_per_ml.astype(np.float64)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        mass_g_vox, act = mass_g_vox * w, act * w
    mass_g = float(mass_g_vox.sum())
    d64 = dose_gy.astype(np.float64)
    mean = float((d64 * mass_g_vox).sum() / mass_g) if mass_g > 0 else dvh.mean_gy
    ab, t_repair_h = bed_parameters(role, params)
    bed = physics.bed_permanent_implant_gy(d64, ab, t_repair_h, params.half_life_h)
    m = {
        "volume_ml": dvh.volume_ml,
        "mass_g": mass_g,
        "activity_gbq": float(act.sum() * voxel_volume_ml),
        "mean_gy": mean,
        "median_gy": dvh.median_gy,
        "sd_gy": dvh.sd_gy,
        "min_gy": dvh.min_gy,
        "max_gy": dvh.max_gy,
    }
    for x in params.d_levels_pct:
        m[f"d{x:g}_gy"] = dvh.dose_at_volume_pct(x)
    for x in params.v_levels_gy:
        m[f"v{x:g}_pct"] = dvh.volume_pct_at_dose(x)
        m[f"v{x:g}_ml"] = dvh.volume_ml_at_dose(x)
    # EUD is over the volume (each voxel 1/N, or f_j V_j / sum f V), like the DVH it summarises;
    # only a tumour alpha is defined, so other roles get no EUD (evaluation.radiobiology).
    alpha = eud_alpha_per_gy(role, params)
    m["eud_gy"] = physics.eud_gy(d64, alpha, weights) if alpha else float("nan")
    m["bed_gy"] = float((bed * mass_g_vox).sum() / mass_g) if mass_g > 0 else float(bed.mean())
    return m, dvh


def uniform_metrics(dose_gy, mass_g, volume_ml, activity_gbq, role, params, name):
    """Metrics of a region with one uniform dose (the LSF lung model)."""
    vox = 1.0 if volume_ml is None else max(volume_ml, 1e-9)
    dvh = DVH(np.array([dose_gy]), vox, params.dvh_bin_width_gy, name=name)
    return segment_metrics(
        np.array([dose_gy], np.float32), np.array([mass_g / vox], np.float32),
        np.array([activity_gbq / vox], np.float32), vox, role, params, name,
    )[0], dvh
