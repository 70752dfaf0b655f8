"""The dose step of a case through the engine's VTK pipeline stage (``TAREDosimetryLib.dose.vtkfilter``)."""

from typing import Optional

import numpy as np
import vtk

from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.volume import Volume


class VtkDose:
    """run_case's ``dose_function`` computed by the VTK filter."""

    @classmethod
    def vtkDoseFunction(cls, activityGBq: Volume, density, params: DosimetryParams, lungMask=None) -> Volume:
        """The dose step of ``run_case`` (its ``dose_function``): the engine's VTK filter
        (density on port 1, lung mask on port 2 for DVK with ``dvk_lung_mode='ldm'``).

        The filter has no kernel-radius setting: a DVK radius other than the kernel default
        (``dvk_radius_mm``) is computed by the engine's own ``dose_map_gy`` instead, so that the
        numbers always equal the command line's."""
        from TAREDosimetryLib.dose import kernels

        radius = getattr(params, "dvk_radius_mm", None)
        if params.method == "dvk" and radius is not None and float(radius) != float(kernels.DEFAULT_RADIUS_MM):
            from TAREDosimetryLib.dose.dosemap import dose_map_gy

            return dose_map_gy(activityGBq, density, params, lung_mask=lungMask)
        return cls.doseWithVtkFilter(activityGBq, density, params, lungMask=lungMask)

    @staticmethod
    def doseWithVtkFilter(activityGBq: Volume, density=None, params: Optional[DosimetryParams] = None,
                          lungMask=None) -> Volume:
        """Dose (Gy) of an activity map (GBq per voxel) through the engine's VTK filter
        (``TAREDosimetryLib.dose.vtkfilter.TAREDoseFilter``: port 0 activity, optional port 1 density in
        g/mL, optional port 2 lung mask), on the same grid.  ``density``: a Volume on the activity
        grid, a number (g/mL), or None for the tissue density of ``params``.  ``lungMask``: (k, j, i) bool
        array on the activity grid, used by DVK with ``dvk_lung_mode='ldm'``."""
        from vtk.util import numpy_support

        from TAREDosimetryLib.dose.vtkfilter import TAREDoseFilter

        params = params or DosimetryParams()
        nz, ny, nx = activityGBq.array.shape

        def toImage(array):
            # VTK point order is i fastest, then j, then k: a C-order (k, j, i) array ravelled.
            image = vtk.vtkImageData()
            image.SetDimensions(nx, ny, nz)
            image.SetSpacing(*activityGBq.grid.spacing_mm)
            image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
            return image

        lungMode = getattr(params, "dvk_lung_mode", "kernel")
        # A constant density (a number) is the filter's tissue density; a Volume goes to port 1.
        constantDensity = params.tissue_density_g_ml if density is None or isinstance(density, Volume) else float(density)
        doseFilter = TAREDoseFilter(method=params.method, device=params.device, k_gy_kg_per_gbq=params.k_gy_kg_per_gbq,
                                    tissue_density_g_ml=constantDensity, lung_mode=lungMode)
        doseFilter.SetInputDataObject(0, toImage(np.asarray(activityGBq.array, dtype=np.float32)))
        if isinstance(density, Volume):
            doseFilter.SetInputDataObject(1, toImage(np.asarray(density.array, dtype=np.float32)))
        if params.method == "dvk" and lungMode == "ldm" and lungMask is not None and np.any(lungMask):
            doseFilter.SetInputDataObject(2, toImage(np.asarray(lungMask, dtype=np.uint8)))
        doseFilter.Update()
        scalars = doseFilter.GetOutputDataObject(0).GetPointData().GetScalars()
        array = numpy_support.vtk_to_numpy(scalars).reshape(activityGBq.array.shape)
        return activityGBq.with_array(np.array(array, dtype=np.float32), name="dose", unit="Gy")
