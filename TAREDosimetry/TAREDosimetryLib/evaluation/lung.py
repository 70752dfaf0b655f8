"""The lungs: mass of the lung segments for the LSF lung model, and its uniform lung dose.

LSF model (PHYSICS.md): D_L = K A_adm (1 - residual) LSF / m_lung, with the lung mass from the
lung segments (CT density, Kao et al. 2014, when a CT is given) or a default mass.
"""

import numpy as np

from .. import physics
from ..overlap import overlap_sum
from ..resample import resample_volume
from .sampling import union_mask

__all__ = ["lsf_lung_mass_g", "MIN_PLAUSIBLE_LUNG_MASS_G"]

#: Lung segments lighter than this (g) can hardly hold both whole lungs (adults: about 1000 g);
#: the LSF lung dose K A LSF / m is then overestimated, and the case gets a warning.
MIN_PLAUSIBLE_LUNG_MASS_G = 400.0


def lsf_lung_mass_g(segmentation, lung_names, ct, params):
    """Mass (g) and volume (mL) of the union of the lung segments, for the LSF lung model.

    The lung mass does not enter the dose map, so it is measured on the segmentation's own grid:
    lung voxels outside the activity image count (whichever grid the metrics use), and lung
    voxels the CT does not cover take ``params.lung_density_g_ml``.  The CT's Kao density is
    read at the segment voxels' centres (linear) with point sampling; with
    ``sampling='overlap'`` (and a CT on another grid) the mass is exact:
    ``sum_j f_j rho_j V_j`` over the CT voxels j, f_j the fraction of CT voxel j inside the lungs.
    """
    box, lung_all = union_mask(segmentation, lung_names)
    if box is None:
        return 0.0, 0.0
    grid = segmentation.grid.crop(box)
    vv = grid.voxel_volume_ml
    lung_vol = float(np.count_nonzero(lung_all)) * vv
    if ct is None or not params.density_from_ct:
        return lung_vol * params.lung_density_g_ml, lung_vol
    if params.sampling == "overlap" and not ct.grid.same_as(segmentation.grid):
        return _lung_mass_on_ct_grid_g(lung_all, grid, ct, params, lung_vol), lung_vol
    hu = resample_volume(ct, grid, "linear", default=float("nan")).array[lung_all]
    rho = np.where(np.isnan(hu), np.float32(params.lung_density_g_ml), physics.lung_hu_to_density_g_ml(np.nan_to_num(hu)))
    return float(rho.astype(np.float64).sum() * vv), lung_vol


def _lung_mass_on_ct_grid_g(lung_all, grid, ct, params, lung_vol):
    """sum_j f_j rho_Kao(HU_j) V_ct over the CT voxels, plus the lung volume outside the CT at the lung density."""
    f = overlap_sum(lung_all, grid, ct.grid)
    if f.box is None:
        return lung_vol * params.lung_density_g_ml
    rho = physics.lung_hu_to_density_g_ml(ct.array[f.box]).astype(np.float64)
    inside_ml = float(f.values.sum()) * ct.grid.voxel_volume_ml
    mass = float(np.dot(f.values.ravel(), rho.ravel())) * ct.grid.voxel_volume_ml
    return mass + max(0.0, lung_vol - inside_ml) * params.lung_density_g_ml
