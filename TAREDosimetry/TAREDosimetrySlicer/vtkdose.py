"""The dose step of a case through the engine's VTK pipeline stage (``TAREDosimetryLib.dose.vtkfilter``).

Every dose parameter goes to the filter (method, device, K, tissue density, DVK lung mode and
kernel radius: ``SetParameters``); the activity, density and lung-mask images carry the full
grid geometry (spacing, origin, direction); the filter's progress goes to the panel and the
panel's Cancel aborts it; an error of the engine comes back as the engine raised it
(``UpdateOrRaise``), never as an empty output.  The device that computed the dose is kept in
``lastDoseDevice`` (the logic records it in the result: ``summary['dose_device']``).
"""

import numpy as np

from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.volume import Volume


class VtkDose:
    """run_case's ``dose_function`` computed by the VTK filter."""

    #: Description of the device that computed the last dose (CPU with its library, or the GPU).
    lastDoseDevice = ""

    def makeDoseFunction(self, progress=None):
        """run_case's ``dose_function(activity_gbq, density_g_ml, params, lung_mask)`` through the filter;
        ``progress(fraction, message)`` receives the filter's progress and may raise to cancel."""

        def doseFunction(activityGBq, density, params, lungMask=None):
            return self.doseWithVtkFilter(activityGBq, density, params, lungMask=lungMask, progress=progress)

        return doseFunction

    def vtkDoseFunction(self, activityGBq: Volume, density, params: DosimetryParams, lungMask=None) -> Volume:
        """The dose step of ``run_case`` (its ``dose_function``) without progress reporting."""
        return self.doseWithVtkFilter(activityGBq, density, params, lungMask=lungMask)

    def doseWithVtkFilter(self, activityGBq: Volume, density=None, params=None, lungMask=None, progress=None) -> Volume:
        """Dose (Gy) of an activity map (GBq per voxel) through the engine's VTK filter, on the same grid.

        density : a Volume on the activity grid (port 1), a number (g/mL), or None for the tissue
            density of ``params``.
        lungMask : (k, j, i) bool array on the activity grid (port 2), used by DVK with
            ``dvk_lung_mode='ldm'``.
        progress : callable(fraction, message); an exception it raises (the panel's Cancel) aborts the filter.
        """
        import vtk

        from TAREDosimetryLib.dose.vtkfilter import TAREDoseFilter, image_to_volume, volume_to_image

        params = params or DosimetryParams()
        doseFilter = TAREDoseFilter()
        doseFilter.SetParameters(params)
        if density is not None and not isinstance(density, Volume):
            doseFilter.SetTissueDensity(float(density))
        activity = np.ascontiguousarray(activityGBq.array, dtype=np.float32)
        doseFilter.SetInputDataObject(0, volume_to_image(activityGBq, activity, "activity_GBq"))
        if isinstance(density, Volume):
            doseFilter.SetInputDataObject(1, volume_to_image(activityGBq, np.ascontiguousarray(density.array, dtype=np.float32), "density"))
        if lungMask is not None and np.any(lungMask):
            doseFilter.SetInputDataObject(2, volume_to_image(activityGBq, np.ascontiguousarray(lungMask, dtype=np.uint8), "lung"))
        observer = None
        if progress is not None:
            def onProgress(caller, event):
                try:
                    progress(caller.GetProgress(), caller.GetProgressText() or "dose map")
                except Exception:  # the panel's Cancel: the filter stops at its next stage
                    caller.AbortExecuteOn()

            observer = doseFilter.AddObserver(vtk.vtkCommand.ProgressEvent, onProgress)
        try:
            output = doseFilter.UpdateOrRaise()
        finally:
            if observer is not None:
                doseFilter.RemoveObserver(observer)
        self.lastDoseDevice = doseFilter.GetDeviceUsed()
        dose = image_to_volume(output, "dose")
        return activityGBq.with_array(np.array(dose.array, dtype=np.float32), name="dose", unit="Gy")
