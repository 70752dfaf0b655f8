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
from ..volume import Volume

__all__ = ["ldm_dose_gy", "density_array"]


def density_array(activity_gbq, density_g_ml):
    if isinstance(density_g_ml, Volume):
        if not density_g_ml.grid.same_as(activity_gbq.grid):
            raise InputError("density_g_ml must be on the activity grid (resample it first)")
        rho = np.asarray(density_g_ml.array, dtype=np.float32)
    else:
        rho = float(density_g_ml)
        if not rho > 0:
            raise InputError(f"density_g_ml must be positive, got {density_g_ml!r}")
    return rho


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
    """
    rho = density_array(activity_gbq, density_g_ml)
    mass_kg = np.asarray(rho, dtype=np.float32) * np.float32(activity_gbq.voxel_volume_ml * 1e-3)
    a = np.asarray(activity_gbq.array, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        dose = np.float32(k_gy_kg_per_gbq) * a / mass_kg
    dose = np.where(np.isfinite(dose), dose, np.float32(0)).astype(np.float32, copy=False)
    return activity_gbq.with_array(dose, name="dose", unit="Gy")
