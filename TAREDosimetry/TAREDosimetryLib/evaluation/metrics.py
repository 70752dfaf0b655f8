"""Dose metrics of one region from its voxel values on the metrics grid.

Mean dose and mean BED are mass-weighted (energy over mass, = K A / M under local deposition);
the DVH, its D/V metrics and the EUD are volume-based (each voxel 1/N of the volume).  With
exact partial-voxel sampling each voxel j carries the fraction f_j of its volume inside the
region: the mass-weighted means use f_j m_j, the DVH, D/V metrics and EUD use f_j V_j, and the
activity is sum_j f_j A_j, so that mean = K sum f A / sum f m exactly under LDM.
"""

import math

import numpy as np

from .. import physics
from ..volume import uniform_value
from .dvh import DVH
from .radiobiology import bed_parameters, eud_alpha_per_gy

__all__ = ["segment_metrics", "uniform_metrics"]


def segment_metrics(dose_gy, density_g_ml, activity_gbq_per_ml, voxel_volume_ml, role, params, name="", weights=None,
                    overwrite_dose=False, dvh=None):
    """Metrics of one region from its voxel values on the metrics grid.

    Parameters
    ----------
    dose_gy, density_g_ml, activity_gbq_per_ml : (N,) arrays of the region's voxels
        (``activity_gbq_per_ml`` may instead be a float: the region's sum of f a, already taken;
        ``density_g_ml`` may be :class:`~TAREDosimetryLib.volume.BoxedValues`, read block by block).
    voxel_volume_ml : float
    role : str, selects the BED alpha/beta (tumour or normal tissue).
    params : DosimetryParams
    weights : (N,) array of float in [0, 1], optional: fraction of each voxel inside the region
        (exact partial-voxel sampling); None when every voxel lies wholly inside.
    overwrite_dose : bool, default False; True lets the DVH sort ``dose_gy`` in place once the
        sums are taken (a caller's own copy of the region's doses: no second copy).
    dvh : DVH, optional; the DVH of these very voxels, already made (another entry with the same
        region): used as it is.

    Returns
    -------
    (metrics dict, DVH).  ``mean_gy`` and ``bed_gy`` are mass-weighted means (energy / mass, = K A / M
    under LDM); the DVH, its D/V metrics and ``eud_gy`` are volume-based.  ``eud_gy`` is NaN for
    roles other than tumour (no radiosensitivity defined for them).
    """
    ab, t_repair_h = bed_parameters(role, params)
    alpha = eud_alpha_per_gy(role, params)
    dmin = float(np.min(dose_gy)) if np.size(dose_gy) else 0.0  # shift of the EUD's exponentials (any value: stability)
    sums = _region_sums(dose_gy, density_g_ml, activity_gbq_per_ml, weights, voxel_volume_ml, alpha, dmin)
    if dvh is None:
        dvh = DVH(dose_gy, voxel_volume_ml, params.dvh_bin_width_gy, name=name, weights=weights, overwrite_dose=overwrite_dose)
    g = physics.bed_coefficient_per_gy(ab, t_repair_h, params.half_life_h)
    mass_g = sums["m"]
    m = {
        "volume_ml": dvh.volume_ml,
        "mass_g": mass_g,
        "activity_gbq": sums["a"] * voxel_volume_ml,
        "mean_gy": sums["md"] / mass_g if mass_g > 0 else dvh.mean_gy,
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
    m["eud_gy"] = dmin - math.log(sums["e"] / sums["w"]) / alpha if alpha else float("nan")
    # BED = D (1 + g D): its mass-weighted mean is (sum m D + g sum m D^2) / sum m.
    m["bed_gy"] = ((sums["md"] + g * sums["mdd"]) / mass_g if mass_g > 0
                   else (sums["d"] + g * sums["dd"]) / dose_gy.size)
    return m, dvh


#: Voxels per block of the region sums (the float64 temporaries stay in the processor's cache).
_BLOCK = 1 << 16


def _region_sums(dose, density, activity, weights, voxel_volume_ml, alpha, dmin):
    """Sums over a region's voxels in float64, block by block (no full-size float64 copies).

    With f the voxel weights (1 without weights) and m = f rho V the voxel masses (g): 'm' sum m,
    'md' sum m D, 'mdd' sum m D^2, 'a' sum f a (a in GBq/mL), 'w' sum f, 'e' sum f exp(-alpha (D - dmin))
    (0 without alpha), 'd' sum D and 'dd' sum D^2 (unweighted).  A constant density (a map of
    :func:`~TAREDosimetryLib.volume.uniform_array`) is used as the number it is.  The float64
    work arrays are allocated once (fresh arrays per block would each cost page faults).
    """
    rho = uniform_value(density)
    out = dict.fromkeys(("m", "md", "mdd", "a", "w", "e", "d", "dd"), 0.0)
    size = min(_BLOCK, dose.size)
    buf_d, buf_m, buf_w = np.empty(size), np.empty(size), np.empty(size)
    for s in range(0, dose.size, _BLOCK):
        sl = slice(s, s + _BLOCK)
        n = min(_BLOCK, dose.size - s)
        d, m, w = buf_d[:n], buf_m[:n], None
        np.copyto(d, dose[sl], casting="unsafe")
        if weights is not None:
            w = buf_w[:n]
            np.copyto(w, weights[sl], casting="unsafe")
        _block_sums(out, d, w, None if rho is not None else density[sl], m, voxel_volume_ml)
        if not np.isscalar(activity):
            out["a"] += float(activity[sl].sum(dtype=np.float64)) if w is None else float(np.dot(w, activity[sl]))
        if alpha:
            np.subtract(d, dmin, out=d)
            np.multiply(d, -alpha, out=d)
            np.exp(d, out=d)
            out["e"] += float(d.sum()) if w is None else float(np.dot(w, d))
    if np.isscalar(activity):
        out["a"] = float(activity)
    if rho is not None:
        scale = rho * voxel_volume_ml
        for k in ("m", "md", "mdd"):
            out[k] *= scale
    return out


def _block_sums(out, d, w, density, m, voxel_volume_ml):
    """Add one block's sums of D, D^2, weights and masses to ``out`` (``m``: a work array).  Without a
    density map (``density`` None) the masses are the weights (times rho V, applied at the end)."""
    sum_d, sum_dd = float(d.sum()), float(np.dot(d, d))
    out["d"] += sum_d
    out["dd"] += sum_dd
    out["w"] += float(d.size) if w is None else float(w.sum())
    if density is None and w is None:
        out["m"] += float(d.size)
        out["md"] += sum_d
        out["mdd"] += sum_dd
        return
    if density is None:
        mass = w
    else:
        np.multiply(density, voxel_volume_ml, out=m, dtype=np.float64)
        if w is not None:
            m *= w
        mass = m
    md = float(np.dot(mass, d))
    out["m"] += float(mass.sum())
    out["md"] += md
    out["mdd"] += float(np.dot(mass * d, d)) if mass.size <= 1 else _dot3(mass, d)


def _dot3(a, b):
    """sum a b b without a temporary (two dot products of the halves would not do: einsum)."""
    return float(np.einsum("i,i,i->", a, b, b))


def uniform_metrics(dose_gy, mass_g, volume_ml, activity_gbq, role, params, name):
    """Metrics of a region with one uniform dose (the LSF lung model)."""
    vox = 1.0 if volume_ml is None else max(volume_ml, 1e-9)
    dvh = DVH(np.array([dose_gy]), vox, params.dvh_bin_width_gy, name=name)
    return segment_metrics(
        np.array([dose_gy], np.float32), np.array([mass_g / vox], np.float32),
        np.array([activity_gbq / vox], np.float32), vox, role, params, name,
    )[0], dvh
