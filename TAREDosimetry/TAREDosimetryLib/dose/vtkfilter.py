"""The dose engine as a VTK pipeline stage (the only engine module that imports vtk).

:class:`TAREDoseFilter` takes an activity ``vtkImageData`` (GBq per voxel, point scalars) on
input port 0 and, optionally, a density ``vtkImageData`` (g/mL, same dimensions) on port 1 and a
lung mask ``vtkImageData`` (non-zero = lung, same dimensions) on port 2, and produces a dose
``vtkImageData`` (Gy) with the same structure (extent, spacing, origin and direction).  It
calls the same engine functions as the command line and the Slicer module
(:func:`.ldm.ldm_dose_gy`, :func:`.dvk.dvk_dose_gy`), on NumPy *views* of the VTK arrays; the
dose array is handed to VTK without a copy (VTK keeps a reference to it).

VTK point order has x fastest, then y, then z, which is NumPy C order for a ``(z, y, x)``
array: ``vtk_to_numpy(scalars).reshape(nz, ny, nx)`` is a view, no copy.

Only NumPy work is done here (no VTK imaging filters), so VTK's SMP threading is not used.

Examples
--------
>>> f = TAREDoseFilter(method="dvk", device="cpu")        # doctest: +SKIP
>>> f.SetInputData(activity_image)                         # doctest: +SKIP
>>> f.Update(); dose_image = f.GetOutput()                 # doctest: +SKIP
"""

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm

from .. import physics
from .ldm import ldm_dose_gy
from ..errors import InputError
from ..params import DEVICES, DOSE_METHODS as METHODS, DVK_LUNG_MODES
from ..volume import Volume

__all__ = ["TAREDoseFilter", "image_to_volume", "array_to_image_scalars"]


def _direction(image):
    getter = getattr(image, "GetDirectionMatrix", None)
    if getter is None:  # VTK < 9
        return None
    m = getter()
    return tuple(m.GetElement(r, c) for r in range(3) for c in range(3))


def image_to_volume(image, name="image"):
    """A :class:`Volume` whose array is a (z, y, x) view of the image's point scalars.

    Parameters
    ----------
    image : vtkImageData with one-component point scalars
    """
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise InputError(f"{name} has no point scalars")
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"{name} must have 1 scalar component, got {scalars.GetNumberOfComponents()}")
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx)
    return Volume(array, image.GetSpacing(), image.GetOrigin(), _direction(image), name=name)


def array_to_image_scalars(array, name):
    """A vtkDataArray sharing memory with a C-contiguous (z, y, x) array (VTK keeps it alive)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    vtk_array = numpy_support.numpy_to_vtk(flat, deep=False)
    vtk_array.SetName(name)
    return vtk_array


class TAREDoseFilter(VTKPythonAlgorithmBase):
    """Y-90 dose (Gy) from activity (GBq per voxel) as a VTK algorithm.

    Parameters (also settable with Set*/Get* methods; each marks the filter modified)
    ----------
    method : {'ldm', 'dvk'}
    device : {'auto', 'cpu', 'gpu'} (DVK only)
    k_gy_kg_per_gbq : float, dose per activity for full local absorption
    tissue_density_g_ml : float, density used when input port 1 is not connected
    lung_mode : {'kernel', 'ldm'} (DVK only): with 'ldm', voxels of the lung mask (port 2) keep
        local deposition (see :func:`dvk.dvk_dose_gy`)

    Ports
    -----
    input 0 : vtkImageData, activity in GBq per voxel (point scalars)
    input 1 : vtkImageData, optional, density in g/mL, same dimensions as input 0
    input 2 : vtkImageData, optional, lung mask (non-zero = lung), same dimensions as input 0
    output 0 : vtkImageData, dose in Gy (float32 point scalars named ``dose_Gy``)
    """

    def __init__(self, method="ldm", device="auto", k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ,
                 tissue_density_g_ml=physics.TISSUE_DENSITY_G_ML, lung_mode="kernel"):
        VTKPythonAlgorithmBase.__init__(self, nInputPorts=3, inputType="vtkImageData", nOutputPorts=1, outputType="vtkImageData")
        self._method = "ldm"
        self._device = "auto"
        self._lung_mode = "kernel"
        self.SetMethod(method)
        self.SetDevice(device)
        self.SetLungMode(lung_mode)
        self._k = float(k_gy_kg_per_gbq)
        self._rho = float(tissue_density_g_ml)

    # -- options ------------------------------------------------------------------------------
    def SetMethod(self, method):
        if method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        if method != self._method:
            self._method = method
            self.Modified()

    def GetMethod(self):
        return self._method

    def SetDevice(self, device):
        if device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
        if device != self._device:
            self._device = device
            self.Modified()

    def GetDevice(self):
        return self._device

    def SetLungMode(self, lung_mode):
        if lung_mode not in DVK_LUNG_MODES:
            raise InputError(f"lung_mode must be 'kernel' or 'ldm'; got {lung_mode!r}")
        if lung_mode != self._lung_mode:
            self._lung_mode = lung_mode
            self.Modified()

    def GetLungMode(self):
        return self._lung_mode

    def SetK(self, k_gy_kg_per_gbq):
        if not float(k_gy_kg_per_gbq) > 0:
            raise InputError(f"k_gy_kg_per_gbq must be positive, got {k_gy_kg_per_gbq!r}")
        self._k = float(k_gy_kg_per_gbq)
        self.Modified()

    def GetK(self):
        return self._k

    def SetTissueDensity(self, density_g_ml):
        if not float(density_g_ml) > 0:
            raise InputError(f"tissue_density_g_ml must be positive, got {density_g_ml!r}")
        self._rho = float(density_g_ml)
        self.Modified()

    def GetTissueDensity(self):
        return self._rho

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

    def FillInputPortInformation(self, port, info):
        info.Set(vtkAlgorithm.INPUT_REQUIRED_DATA_TYPE(), "vtkImageData")
        if port in (1, 2):
            info.Set(vtkAlgorithm.INPUT_IS_OPTIONAL(), 1)
        return 1

    def compute(self, activity, density=None, lung_mask=None):
        """The engine call on Volumes (used by RequestData; handy for tests)."""
        rho = self._rho if density is None else density
        if self._method == "ldm":
            return ldm_dose_gy(activity, rho, self._k)
        from .dvk import dvk_dose_gy

        return dvk_dose_gy(activity, density_g_ml=rho, k_gy_kg_per_gbq=self._k, device=self._device,
                           lung_mask=lung_mask, lung_mode=self._lung_mode)

    def RequestData(self, request, inInfo, outInfo):
        image = vtkImageData.GetData(inInfo[0])
        activity = image_to_volume(image, "activity")
        density = None
        if self.GetNumberOfInputConnections(1) > 0:
            dimage = vtkImageData.GetData(inInfo[1])
            if tuple(dimage.GetDimensions()) != tuple(image.GetDimensions()):
                raise InputError(
                    f"density image dimensions {dimage.GetDimensions()} differ from activity dimensions {image.GetDimensions()}"
                )
            dvol = image_to_volume(dimage, "density")
            density = Volume(dvol.array, grid=activity.grid, name="density", unit="g/mL")
        lung_mask = None
        if self.GetNumberOfInputConnections(2) > 0:
            limage = vtkImageData.GetData(inInfo[2])
            if tuple(limage.GetDimensions()) != tuple(image.GetDimensions()):
                raise InputError(
                    f"lung mask dimensions {limage.GetDimensions()} differ from activity dimensions {image.GetDimensions()}"
                )
            lung_mask = image_to_volume(limage, "lung mask").array != 0
        dose = self.compute(activity, density, lung_mask)
        out = vtkImageData.GetData(outInfo)
        out.CopyStructure(image)
        out.GetPointData().SetScalars(array_to_image_scalars(dose.array, "dose_Gy"))
        return 1
