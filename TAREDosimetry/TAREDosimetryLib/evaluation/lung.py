"""The lungs: mass of the lung segments for the LSF lung model, and its uniform lung dose.

LSF model (PHYSICS.md): D_L = K A_adm (1 - residual) LSF / m_lung, with the lung mass from the
lung segments (CT density, Kao et al. 2014, when a CT is given) or a default mass.
"""

import numpy as np

from .. import physics
from ..resample import resample_volume
from .sampling import union_mask

__all__ = ["lsf_lung_mass_g", "MIN_PLAUSIBLE_LUNG_MASS_G"]

#: Lung segments lighter than this (g) can hardly hold both whole lungs (adults: about 1000 g);
#: the LSF lung dose K A LSF / m is then overestimated, and the case gets a warning.
MIN_PLAUSIBLE_LUNG_MASS_G = 400.0


def lsf_lung_mass_g(segmentation, lung_names, ct, params):
    """Mass (g) and volume (mL) of the union of the lung segments, for the LSF lung model.

    The lung mass does not enter the dose map, so it is measured on the segmentation's own grid:
    lung voxels outside the activity image count (whichever grid the metrics use), the CT is
    read there directly (Kao density), and lung voxels the CT does not cover take
    ``params.lung_density_g_ml``.
    """
    box, lung_all = union_mask(segmentation, lung_names)
    if box is None:
        return 0.0, 0.0
    grid = segmentation.grid.crop(box)
    vv = grid.voxel_volume_ml
    lung_vol = float(np.count_nonzero(lung_all)) * vv
    if ct is not None and params.density_from_ct:
        hu = resample_volume(ct, grid, "linear", default=float("nan")).array[lung_all]
        rho = np.where(np.isnan(hu), np.float32(params.lung_density_g_ml), physics.lung_hu_to_density_g_ml(np.nan_to_num(hu)))
        return float(rho.astype(np.float64).sum() * vv), lung_vol
    return lung_vol * params.lung_density_g_ml, lung_vol
