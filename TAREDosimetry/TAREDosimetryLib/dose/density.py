"""Mass density maps (g/mL) on the activity grid: constant, or from a CT (HU -> density).

References
----------
Schneider W, Bortfeld T, Schlegel W, Phys Med Biol 45 (2000) 459 (HU -> density, general);
Kao YH et al., EJNMMI Res (2014) (lung: rho = (HU + 1000) / 1000).
"""

import numpy as np

from .. import physics
from ..resample import inside_mask, resample_volume
from ..volume import Volume

__all__ = ["density_map_g_ml", "MIN_DENSITY_G_ML"]

#: Densities below this (g/mL) count as air when the density comes from a CT.
MIN_DENSITY_G_ML = 0.05


def density_map_g_ml(grid, params, ct=None, lung_mask=None):
    """Mass density on ``grid``, g/mL.

    Without a CT (or with ``params.density_from_ct`` False): ``params.tissue_density_g_ml``
    everywhere and ``params.lung_density_g_ml`` in ``lung_mask``.  With a CT (HU, any grid,
    read trilinearly): the Schneider et al. 2000 table, and in ``lung_mask`` the Kao et al. 2014
    lung formula (at least ``MIN_DENSITY_G_ML``).  Air (below ``MIN_DENSITY_G_ML``) outside the
    lungs and voxels the CT does not cover take the tissue density: counts there are blur and
    scatter, and air density would turn them into meaningless doses of thousands of Gy.

    Returns
    -------
    (Volume float32 g/mL, outside_ct (Z, Y, X) bool ndarray or None, description str)
    """
    if ct is None or not params.density_from_ct:
        rho = np.full(grid.shape, np.float32(params.tissue_density_g_ml), np.float32)
        if lung_mask is not None:
            rho[lung_mask] = np.float32(params.lung_density_g_ml)
        text = "constant (tissue %.3g g/mL, lung %.3g g/mL)" % (params.tissue_density_g_ml, params.lung_density_g_ml)
        return Volume(rho, grid=grid, name="density", unit="g/mL"), None, text
    outside_ct = ~inside_mask(ct.grid, grid)
    hu = resample_volume(ct, grid, "linear", default=-1000.0).array
    rho = physics.hu_to_density_g_ml(hu)
    if lung_mask is not None:
        rho = np.where(lung_mask, np.maximum(physics.lung_hu_to_density_g_ml(hu), MIN_DENSITY_G_ML), rho)
        air = (rho < MIN_DENSITY_G_ML) & ~lung_mask
    else:
        air = rho < MIN_DENSITY_G_ML
    rho = np.where(air | outside_ct, np.float32(params.tissue_density_g_ml), rho).astype(np.float32)
    text = (
        f"CT (Schneider 2000; lung segments: Kao 2014, at least {MIN_DENSITY_G_ML} g/mL); air (< {MIN_DENSITY_G_ML} g/mL) "
        f"and voxels outside the CT: tissue density {params.tissue_density_g_ml:g} g/mL"
    )
    return Volume(rho, grid=grid, name="density", unit="g/mL"), outside_ct, text
