"""The dose engine as a VTK pipeline stage (the only engine module that imports vtk).

:class:`TAREDoseFilter` takes an activity ``vtkImageData`` (GBq per voxel, point scalars) on
input port 0 and, optionally, a density ``vtkImageData`` (g/mL) on port 1 and a lung mask
``vtkImageData`` (non-zero = lung) on port 2, both with the activity's dimensions, and produces
a dose ``vtkImageData`` (Gy, float32) with the activity's full geometry: extent, spacing, origin
and direction matrix (VTK 9).  It calls the same engine functions as the command line
(:func:`.ldm.ldm_dose_gy`, :func:`.dvk.dvk_dose_gy`) with every parameter of
:class:`~TAREDosimetryLib.params.DosimetryParams` that concerns the dose map (method, device,
K, tissue density, DVK lung mode and kernel radius; :meth:`TAREDoseFilter.SetParameters`), on
NumPy *views* of the VTK arrays; the dose array is handed to VTK without a copy.

Geometry
    The filter keeps the image's frame: the physical position of point (i, j, k) (absolute
    extent indices) is ``origin + D diag(spacing) (i, j, k)``, as in VTK 9.  The Slicer module
    gives it LPS geometry; any frame works, since the kernel depends only on the spacing.
Device
    DVK runs on the array backend of :mod:`.backend`: CuPy on a usable CUDA GPU when the device
    is 'gpu' or 'auto', else NumPy/scipy.fft.  :meth:`TAREDoseFilter.GetDeviceUsed` says which
    one ran the last execution (LDM always runs in NumPy).
Progress and abort
    The filter fires ``vtkCommand.ProgressEvent`` (``GetProgress()`` in [0, 1]) at each stage of
    the convolution.  An observer may call ``AbortExecuteOn()``; the execution then stops at the
    next stage with :class:`~TAREDosimetryLib.errors.CancelledError`.
Errors
    VTK's Python algorithm prints and swallows an exception raised in ``RequestData`` (the output
    is then simply empty).  This filter keeps the exception instead (:meth:`GetLastError`), and
    :meth:`UpdateOrRaise` updates the pipeline and re-raises it, so callers see the engine's own
    message (an ``InputError``, ``GPUUnavailableError``, ``MemoryError``...).

VTK point order has x fastest, then y, then z, which is NumPy C order for a ``(z, y, x)``
array: ``vtk_to_numpy(scalars).reshape(nz, ny, nx)`` is a view, no copy.

Examples
--------
>>> f = TAREDoseFilter(method="dvk", device="auto")       # doctest: +SKIP
>>> f.SetInputData(activity_image)                         # doctest: +SKIP
>>> dose_image = f.UpdateOrRaise()                         # doctest: +SKIP
>>> f.GetDeviceUsed()                                      # doctest: +SKIP
'CPU (NumPy 2.1.0: numpy.fft up to 4000000 values, scipy.fft on 8 workers above)'
"""

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm

from .. import physics
from ..errors import CancelledError, InputError
from ..params import DEVICES, DOSE_METHODS as METHODS, DVK_LUNG_MODES, check_positive
from ..volume import Volume
from .kernels import DEFAULT_RADIUS_MM
from .ldm import ldm_dose_gy

__all__ = ["TAREDoseFilter", "image_to_volume", "array_to_image_scalars", "volume_to_image", "LDM_DEVICE"]

#: What :meth:`TAREDoseFilter.GetDeviceUsed` reports for local deposition (plain NumPy arithmetic).
LDM_DEVICE = "CPU (NumPy, local deposition)"


def _direction(image):
    """Row-major 3x3 direction of a VTK 9 image (identity for VTK < 9, which has none)."""
    getter = getattr(image, "GetDirectionMatrix", None)
    if getter is None:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    m = getter()
    return tuple(m.GetElement(r, c) for r in range(3) for c in range(3))


def image_to_volume(image, name="image"):
    """A :class:`Volume` whose array is a (z, y, x) view of the image's point scalars.

    The volume's origin is the physical position of the image's first point (extent start),
    so an image whose extent does not start at 0 keeps its place in space.

    Parameters
    ----------
    image : vtkImageData with one-component point scalars
    name : str, named in error messages
    """
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise InputError(f"{name} has no point scalars")
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"{name} must have 1 scalar component, got {scalars.GetNumberOfComponents()}")
    nx, ny, nz = image.GetDimensions()
    if min(nx, ny, nz) < 1 or scalars.GetNumberOfTuples() != nx * ny * nz:
        raise InputError(f"{name}: {scalars.GetNumberOfTuples()} scalars for dimensions {(nx, ny, nz)}")
    array = numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx)
    direction = _direction(image)
    start = np.asarray(image.GetExtent()[0::2], dtype=np.float64) * np.asarray(image.GetSpacing())
    origin = np.asarray(image.GetOrigin()) + np.asarray(direction).reshape(3, 3) @ start
    return Volume(array, image.GetSpacing(), tuple(origin), direction, name=name)


def array_to_image_scalars(array, name):
    """A vtkDataArray sharing memory with a C-contiguous (z, y, x) array (VTK keeps it alive)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    vtk_array = numpy_support.numpy_to_vtk(flat, deep=False)
    vtk_array.SetName(name)
    return vtk_array


def volume_to_image(volume, array=None, name="values"):
    """A vtkImageData with the volume's full geometry (spacing, origin, direction) whose point
    scalars share memory with ``array`` ((z, y, x), default the volume's own array)."""
    a = volume.array if array is None else array
    nz, ny, nx = np.shape(a)
    image = vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(*volume.spacing_mm)
    image.SetOrigin(*volume.origin_mm)
    if hasattr(image, "SetDirectionMatrix"):
        image.SetDirectionMatrix(*volume.direction)
    image.GetPointData().SetScalars(array_to_image_scalars(a, name))
    return image


class TAREDoseFilter(VTKPythonAlgorithmBase):
    """Y-90 dose (Gy) from activity (GBq per voxel) as a VTK algorithm.

    Parameters (also settable with Set*/Get* methods, or all at once with SetParameters)
    ----------
    method : {'ldm', 'dvk'}
    device : {'auto', 'cpu', 'gpu'} (DVK only; see module docstring)
    k_gy_kg_per_gbq : float, dose per activity for full local absorption
    tissue_density_g_ml : float, density used when input port 1 is not connected
    lung_mode : {'kernel', 'ldm'} (DVK only): with 'ldm', voxels of the lung mask (port 2) keep
        local deposition (see :func:`dvk.dvk_dose_gy`)
    radius_mm : float (DVK only), kernel truncation radius in tissue, mm

    Ports
    -----
    input 0 : vtkImageData, activity in GBq per voxel (point scalars)
    input 1 : vtkImageData, optional, density in g/mL, same dimensions as input 0
    input 2 : vtkImageData, optional, lung mask (non-zero = lung), same dimensions as input 0
    output 0 : vtkImageData, dose in Gy (float32 point scalars named ``dose_Gy``), geometry of input 0
    """

    def __init__(self, method="ldm", device="auto", k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ,
                 tissue_density_g_ml=physics.TISSUE_DENSITY_G_ML, lung_mode="kernel", radius_mm=DEFAULT_RADIUS_MM):
        VTKPythonAlgorithmBase.__init__(self, nInputPorts=3, inputType="vtkImageData", nOutputPorts=1, outputType="vtkImageData")
        self._method, self._device, self._lung_mode = "ldm", "auto", "kernel"
        self._k, self._rho, self._radius = physics.K_GY_KG_PER_GBQ, physics.TISSUE_DENSITY_G_ML, DEFAULT_RADIUS_MM
        self._error = None
        self._device_used = ""
        self.SetMethod(method)
        self.SetDevice(device)
        self.SetLungMode(lung_mode)
        self.SetK(k_gy_kg_per_gbq)
        self.SetTissueDensity(tissue_density_g_ml)
        self.SetRadius(radius_mm)

    # -- options ------------------------------------------------------------------------------
    def _set(self, attr, value):
        if getattr(self, attr) != value:
            setattr(self, attr, value)
            self.Modified()

    def SetMethod(self, method):
        if method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        self._set("_method", method)

    def GetMethod(self):
        return self._method

    def SetDevice(self, device):
        if device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
        self._set("_device", device)

    def GetDevice(self):
        return self._device

    def SetLungMode(self, lung_mode):
        if lung_mode not in DVK_LUNG_MODES:
            raise InputError(f"lung_mode must be one of {', '.join(DVK_LUNG_MODES)}; got {lung_mode!r}")
        self._set("_lung_mode", lung_mode)

    def GetLungMode(self):
        return self._lung_mode

    def SetK(self, k_gy_kg_per_gbq):
        self._set("_k", check_positive("k_gy_kg_per_gbq", k_gy_kg_per_gbq))

    def GetK(self):
        return self._k

    def SetTissueDensity(self, density_g_ml):
        self._set("_rho", check_positive("tissue_density_g_ml", density_g_ml))

    def GetTissueDensity(self):
        return self._rho

    def SetRadius(self, radius_mm):
        """Kernel truncation radius in tissue, mm (DVK; ``DosimetryParams.dvk_radius_mm``)."""
        self._set("_radius", check_positive("radius_mm", radius_mm))

    def GetRadius(self):
        return self._radius

    def SetParameters(self, params):
        """Take every dose-map setting of a DosimetryParams: method, device, K, tissue density,
        DVK lung mode and kernel radius (the density and lung mask maps go to ports 1 and 2)."""
        self.SetMethod(params.method)
        self.SetDevice(params.device)
        self.SetK(params.k_gy_kg_per_gbq)
        self.SetTissueDensity(params.tissue_density_g_ml)
        self.SetLungMode(getattr(params, "dvk_lung_mode", "kernel"))
        self.SetRadius(getattr(params, "dvk_radius_mm", DEFAULT_RADIUS_MM))

    # -- results of the last execution -----------------------------------------------------------
    def GetLastError(self):
        """The exception that stopped the last execution, or None."""
        return self._error

    def GetDeviceUsed(self):
        """Description of the device that computed the last dose ('' before the first one)."""
        return self._device_used

    # -- pipeline -------------------------------------------------------------------------------
    def SetInputData(self, *args):
        """SetInputData(image) or SetInputData(port, image), as vtkImageAlgorithm has it."""
        if len(args) == 1:
            self.SetInputDataObject(0, args[0])
        elif len(args) == 2:
            self.SetInputDataObject(int(args[0]), args[1])
        else:
            raise TypeError("SetInputData takes (image) or (port, image)")

    def GetOutput(self):
        """The dose vtkImageData (output port 0)."""
        return self.GetOutputDataObject(0)

    def UpdateOrRaise(self):
        """Update the pipeline; re-raise the exception that stopped the execution, if any.

        Returns
        -------
        vtkImageData, the dose (output port 0).
        """
        self.Update()
        if self._error is not None:
            raise self._error
        return self.GetOutput()

    def FillInputPortInformation(self, port, info):
        info.Set(vtkAlgorithm.INPUT_REQUIRED_DATA_TYPE(), "vtkImageData")
        if port in (1, 2):
            info.Set(vtkAlgorithm.INPUT_IS_OPTIONAL(), 1)
        return 1

    def _progress(self, fraction, message=""):
        """Report progress; stop with CancelledError when an observer asked to abort."""
        self.SetProgressText(str(message))
        self.UpdateProgress(float(fraction))
        if self.GetAbortExecute():
            raise CancelledError("the dose calculation was stopped by the user")

    def compute(self, activity, density=None, lung_mask=None):
        """The engine call on Volumes (used by RequestData; handy for tests).  Returns the dose Volume."""
        rho = self._rho if density is None else density
        if self._method == "ldm":
            self._device_used = LDM_DEVICE
            self._progress(0.1, "local deposition")
            return ldm_dose_gy(activity, rho, self._k)
        from .backend import get_backend
        from .dvk import dvk_dose_gy

        backend = get_backend(self._device)
        self._device_used = backend.description
        return dvk_dose_gy(activity, density_g_ml=rho, k_gy_kg_per_gbq=self._k, device=backend, lung_mask=lung_mask,
                           lung_mode=self._lung_mode, radius_mm=self._radius, progress=self._progress)

    def _optional_input(self, inInfo, port, image, name):
        """The Volume on an optional port (None when not connected), checked against port 0."""
        if self.GetNumberOfInputConnections(port) == 0:
            return None
        other = vtkImageData.GetData(inInfo[port])
        if tuple(other.GetDimensions()) != tuple(image.GetDimensions()):
            raise InputError(f"{name} image dimensions {other.GetDimensions()} differ from activity dimensions {image.GetDimensions()}")
        return image_to_volume(other, name)

    def RequestData(self, request, inInfo, outInfo):
        self._error, self._device_used = None, ""
        self.AbortExecuteOff()  # VTK keeps the flag from an earlier abort
        try:
            image = vtkImageData.GetData(inInfo[0])
            activity = image_to_volume(image, "activity")
            density = self._optional_input(inInfo, 1, image, "density")
            if density is not None:
                density = Volume(density.array, grid=activity.grid, name="density", unit="g/mL")
            lung = self._optional_input(inInfo, 2, image, "lung mask")
            dose = self.compute(activity, density, None if lung is None else lung.array != 0)
            self._progress(1.0, "done")
        except BaseException as exc:  # kept for UpdateOrRaise: VTK would print and drop it
            self._error = exc
            return 0
        out = vtkImageData.GetData(outInfo)
        out.CopyStructure(image)
        if hasattr(out, "SetDirectionMatrix"):
            out.SetDirectionMatrix(image.GetDirectionMatrix())
        out.GetPointData().SetScalars(array_to_image_scalars(np.asarray(dose.array, dtype=np.float32), "dose_Gy"))
        return 1
