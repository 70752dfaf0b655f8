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
from ..volume import Volume, uniform_value

__all__ = ["ldm_dose_gy", "density_array"]


def density_array(activity_gbq, density_g_ml):
    """Density as a float32 array on the activity grid, or a float (one value: a number, or a
    map made by :func:`~TAREDosimetryLib.volume.uniform_array`)."""
    if isinstance(density_g_ml, Volume):
        if not density_g_ml.grid.same_as(activity_gbq.grid):
            raise InputError("density_g_ml must be on the activity grid (resample it first)")
        one = uniform_value(density_g_ml.array)
        if one is None:
            return np.asarray(density_g_ml.array, dtype=np.float32)
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
    ``dose = K A / (rho V)`` in float32, written once into the output array (one pass; block by
    block with a density map), with the same rounding as the element-wise expression
    ``float32(K) * A / (float32(rho) * float32(V))``.
    """
    rho = density_array(activity_gbq, density_g_ml)
    voxel_kg = np.float32(activity_gbq.voxel_volume_ml * 1e-3)
    k = np.float32(k_gy_kg_per_gbq)
    a = np.asarray(activity_gbq.array)
    dose = np.empty(a.shape, np.float32)
    flat_a, flat_d = a.reshape(-1), dose.reshape(-1)
    if np.isscalar(rho):
        mass_kg = np.float32(rho) * voxel_kg  # > 0
        for s in range(0, flat_a.size, _BLOCK):
            out = flat_d[s:s + _BLOCK]
            np.multiply(k, flat_a[s:s + _BLOCK], out=out, dtype=np.float32)
            np.divide(out, mass_kg, out=out)
        return activity_gbq.with_array(dose, name="dose", unit="Gy")
    flat_rho = rho.reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in range(0, flat_a.size, _BLOCK):
            out = flat_d[s:s + _BLOCK]
            np.multiply(k, flat_a[s:s + _BLOCK], out=out, dtype=np.float32)
            np.divide(out, flat_rho[s:s + _BLOCK] * voxel_kg, out=out)
            out[~np.isfinite(out)] = 0.0
    return activity_gbq.with_array(dose, name="dose", unit="Gy")
