"""The dose map of a case by the method its parameters name (LDM or DVK)."""

from .ldm import ldm_dose_gy

__all__ = ["dose_map_gy", "dose_computation_record"]


def dose_map_gy(activity_gbq, density_g_ml, params, lung_mask=None, progress=None, notes=None):
    """Dose map by the method in ``params.method`` ('ldm' or 'dvk').

    Parameters
    ----------
    activity_gbq : Volume, GBq per voxel.
    density_g_ml : float or Volume on the activity grid.
    params : DosimetryParams
    lung_mask : (Z, Y, X) bool ndarray on the activity grid, optional; used by DVK when
        ``params.dvk_lung_mode == 'ldm'``.
    notes : list, optional; DVK appends what it had to say about its kernels (truncations).
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
        notes=notes,
    )


def dose_computation_record(params, source="computed"):
    """Which method and device computed the dose map (recorded in metrics.json and the report).

    ``device='auto'`` may pick the GPU or the CPU: this says which one ran.  LDM is a voxel-wise
    product and always runs on the CPU (NumPy).  ``source`` is 'computed', 'dose function' (a
    caller's function, e.g. the VTK filter in Slicer) or 'given' (a dose map passed in).
    """
    import numpy as np

    record = {"method": params.method, "device_requested": params.device, "dose_source": source}
    if params.method == "dvk":
        from .backend import get_backend

        backend = get_backend(params.device)
        record.update(device_used=backend.name, device_description=backend.description)
        if backend.name == "gpu":
            record["cupy"] = backend.xp.__version__
    else:
        record.update(device_used="cpu", device_description=f"CPU (NumPy {np.__version__})")
    return record
