"""Absorbed dose maps (Gy) from activity maps (GBq per voxel).

Local deposition (LDM) [PHYSICS.md]: with permanent trapping and physical decay only, all
beta energy is absorbed in the voxel where the decay happens::

    D_i [Gy] = K [Gy kg/GBq] * A_i [GBq] / (rho_i [g/mL] * V_i [mL] * 1e-3 [kg/g])

so that energy balance is exact: sum_i D_i m_i = K sum_i A_i.

Dose-voxel-kernel convolution (DVK) lives in :mod:`.dvk`; :func:`.dosemap.dose_map_gy`
dispatches on ``params.method``.
"""

import numpy as np

from ..errors import InputError
from ..volume import BoxedArray, Volume, uniform_value, volume_values

__all__ = ["ldm_dose_gy", "density_array"]


def density_array(activity_gbq, density_g_ml):
    """Density on the activity grid: a float32 array, a :class:`~TAREDosimetryLib.volume.BoxedArray`
    (a :class:`~TAREDosimetryLib.volume.BoxedVolume`'s values, never made whole), or a float (one
    value: a number, or a map made by :func:`~TAREDosimetryLib.volume.uniform_array`)."""
    if isinstance(density_g_ml, Volume):
        if not density_g_ml.grid.same_as(activity_gbq.grid):
            raise InputError("density_g_ml must be on the activity grid (resample it first)")
        values = volume_values(density_g_ml)
        one = uniform_value(values)
        if one is None:
            return values.astype(np.float32) if isinstance(values, BoxedArray) else np.asarray(values, dtype=np.float32)
        rho = one
    else:
        rho = float(density_g_ml)
    if not rho > 0:
        raise InputError(f"density_g_ml must be positive, got {density_g_ml!r}")
    return rho


#: Voxels per block of the dose of a density map (bounds the temporaries).
_BLOCK = 1 << 22


def ldm_dose_gy(activity_gbq, density_g_ml, k_gy_kg_per_gbq):
    """Local-deposition dose.

    Parameters
    ----------
    activity_gbq : Volume, (Z, Y, X) float, GBq in each voxel (time-zero activity).
    density_g_ml : float or Volume on the same grid, g/mL.  Voxels of zero density get zero dose.
    k_gy_kg_per_gbq : float, dose per activity for full absorption.

    Returns
    -------
    Volume, (Z, Y, X) float32, Gy, on the activity grid.

    Notes
    -----
    ``dose = K A / (rho V)`` in float32, written once into the output array (block by block of
    planes with a density map; a boxed map: its constant on the whole grid, then its box), with
    the same rounding as the element-wise expression ``float32(K) * A / (float32(rho) * float32(V))``
    (non-finite results set to 0 wherever the density is a map).
    """
    rho = density_array(activity_gbq, density_g_ml)
    voxel_kg = np.float32(activity_gbq.voxel_volume_ml * 1e-3)
    k = np.float32(k_gy_kg_per_gbq)
    a = np.asarray(activity_gbq.array)
    dose = np.empty(a.shape, np.float32)
    if isinstance(rho, BoxedArray):
        with np.errstate(divide="ignore", invalid="ignore"):  # a density of 0 outside the box: 0 Gy there
            _constant_density_dose(a, dose, k, rho.outside * voxel_kg, zero_non_finite=True)
        _map_density_dose(a[rho.box], dose[rho.box], k, rho.inside, voxel_kg)
    elif np.isscalar(rho):
        _constant_density_dose(a, dose, k, np.float32(rho) * voxel_kg)  # mass > 0
    else:
        _map_density_dose(a, dose, k, rho, voxel_kg)
    return activity_gbq.with_array(dose, name="dose", unit="Gy")


def _constant_density_dose(a, dose, k, mass_kg, zero_non_finite=False):
    """``dose = k a / mass_kg`` (float32, one voxel mass), in place, block by block; non-finite results
    set to 0 when asked (as the dose of a density map does)."""
    flat_a, flat_d = a.reshape(-1), dose.reshape(-1)
    for s in range(0, flat_a.size, _BLOCK):
        out = flat_d[s:s + _BLOCK]
        np.multiply(k, flat_a[s:s + _BLOCK], out=out, dtype=np.float32)
        np.divide(out, mass_kg, out=out)
        if zero_non_finite and out.size and not np.isfinite(float(out.min()) + float(out.max())):  # two quick reductions
            out[~np.isfinite(out)] = 0.0


def _map_density_dose(a, dose, k, rho, voxel_kg):
    """``dose = k a / (rho voxel_kg)`` (float32) in place, a slab of planes at a time (``a``, ``dose``
    and ``rho`` may be views of a box); voxels of density 0 (non-finite results) get 0."""
    step = max(1, _BLOCK // max(1, a.shape[1] * a.shape[2]))
    with np.errstate(divide="ignore", invalid="ignore"):
        for z0 in range(0, a.shape[0], step):
            out = dose[z0:z0 + step]
            np.multiply(k, a[z0:z0 + step], out=out, dtype=np.float32)
            np.divide(out, rho[z0:z0 + step] * voxel_kg, out=out)
            out[~np.isfinite(out)] = 0.0
