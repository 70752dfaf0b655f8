"""The dose map of a case by the method its parameters name (LDM or DVK)."""

from .ldm import ldm_dose_gy

__all__ = ["dose_map_gy"]


def dose_map_gy(activity_gbq, density_g_ml, params, lung_mask=None, progress=None):
    """Dose map by the method in ``params.method`` ('ldm' or 'dvk').

    Parameters
    ----------
    activity_gbq : Volume, GBq per voxel.
    density_g_ml : float or Volume on the activity grid.
    params : DosimetryParams
    lung_mask : (Z, Y, X) bool ndarray on the activity grid, optional; used by DVK when
        ``params.dvk_lung_mode == 'ldm'``.
    """
    if params.method == "ldm":
        return ldm_dose_gy(activity_gbq, density_g_ml, params.k_gy_kg_per_gbq)
    from .dvk import dvk_dose_gy

    return dvk_dose_gy(
        activity_gbq,
        density_g_ml=density_g_ml,
        k_gy_kg_per_gbq=params.k_gy_kg_per_gbq,
        device=params.device,
        lung_mask=lung_mask,
        lung_mode=params.dvk_lung_mode,
        progress=progress,
        radius_mm=params.dvk_radius_mm,
    )
