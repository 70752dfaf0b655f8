"""Geometry between grids: SimpleITK conversion and resampling of volumes and masks.

Every reading of one grid's values at another grid's voxel centres goes through this module,
in physical (LPS) space, so grids with other spacings, origins or axis directions line up.
Arrays are (z, y, x); spacing and origin (x, y, z), as in :mod:`~TAREDosimetryLib.volume`.
"""

import numpy as np
import SimpleITK as sitk

from .volume import Volume

__all__ = [
    "array_from_sitk",
    "volume_to_sitk",
    "volume_from_sitk",
    "with_geometry",
    "resample_volume",
    "resample_mask",
    "inside_mask",
    "grid_inside",
]


# -- SimpleITK <-> Volume ---------------------------------------------------------------------
class _ImageBuffer:
    """Keeps a SimpleITK image alive while a NumPy array uses its voxel buffer (the array's base)."""

    __slots__ = ("image", "__array_interface__")

    def __init__(self, image, view):
        self.image = image
        interface = dict(view.__array_interface__)
        interface["data"] = (interface["data"][0], False)  # writable: the buffer is unique to ``image``
        self.__array_interface__ = interface


def array_from_sitk(image):
    """(Z, Y, X[, C]) ndarray on the voxel buffer of ``image``, without a copy.

    SimpleITK's ``GetArrayFromImage`` copies the buffer (a second image's worth of memory and a
    pass over it); here the array shares it and keeps the image alive as its ``base``, so the
    buffer lives exactly as long as the array (or a view of it).  The image is made unique first,
    so no other SimpleITK image shares the buffer; the caller should not use ``image`` afterwards.
    """
    view = sitk.GetArrayViewFromImage(image)  # makes the buffer unique to ``image``
    return np.asarray(_ImageBuffer(image, view))


def volume_from_sitk(image, name="", unit=""):
    """Volume from a 3-D scalar SimpleITK image (the array uses ITK's buffer: :func:`array_from_sitk`)."""
    arr = array_from_sitk(image)
    return Volume(arr, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), name=name, unit=unit)


def with_geometry(img, grid):
    """``img`` with the spacing, origin and direction of ``grid``."""
    img.SetSpacing(grid.spacing_mm)
    img.SetOrigin(grid.origin_mm)
    img.SetDirection(grid.direction)
    return img


def volume_to_sitk(volume, dtype=None):
    arr = np.asarray(volume.array if dtype is None else volume.array.astype(dtype, copy=False))
    return with_geometry(sitk.GetImageFromArray(arr), volume.grid)


def _grid_reference(grid, pixel=sitk.sitkFloat32):
    return with_geometry(sitk.Image(int(grid.shape[2]), int(grid.shape[1]), int(grid.shape[0]), pixel), grid)


def resample_volume(volume, grid, interpolation="linear", default=0.0):
    """Values of ``volume`` read at the voxel centres of ``grid`` (float32).

    interpolation : 'linear' or 'nearest'.  Points outside ``volume`` get ``default``.
    """
    if volume.grid.same_as(grid):
        return Volume(np.asarray(volume.array, dtype=np.float32), grid=grid, name=volume.name, unit=volume.unit)
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interpolation]
    src = volume_to_sitk(volume, dtype=np.float32)
    out = sitk.Resample(src, _grid_reference(grid), sitk.Transform(), interp, float(default), sitk.sitkFloat32)
    return Volume(array_from_sitk(out), grid=grid, name=volume.name, unit=volume.unit)


def resample_mask(mask, src_grid, grid):
    """A boolean mask on ``src_grid`` read (nearest neighbour) at the voxel centres of ``grid``."""
    if src_grid.same_as(grid):
        return np.asarray(mask, dtype=bool)
    img = with_geometry(sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8)), src_grid)
    out = sitk.Resample(img, _grid_reference(grid, sitk.sitkUInt8), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayViewFromImage(out).astype(bool)


def inside_mask(src_grid, grid):
    """(Z, Y, X) bool on ``grid``: the voxel centres that lie inside ``src_grid``'s voxels (its
    field of view), read as :func:`resample_mask` reads; only a uint8 copy of ``src_grid``'s size."""
    return resample_mask(np.ones(src_grid.shape, np.uint8), src_grid, grid)



def grid_inside(inner, outer):
    """True when every voxel centre of ``inner`` lies inside the voxels of ``outer``."""
    nz, ny, nx = inner.shape
    corners = np.array([[i, j, k, 1.0] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])
    ijk = (corners @ inner.ijk_to_lps.T) @ outer.lps_to_ijk.T
    limits = np.array([outer.shape[2], outer.shape[1], outer.shape[0]], float) - 0.5
    return bool(np.all(ijk[:, :3] >= -0.5) and np.all(ijk[:, :3] < limits))
