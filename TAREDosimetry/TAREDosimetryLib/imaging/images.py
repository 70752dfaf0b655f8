"""Reading and writing images (SimpleITK at the edge of the engine).

Images (SPECT, PET, CT, dose): NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha,
.mhd) and DICOM (a folder of series, or one file; see :mod:`.dicomimage`).  Everything read is converted to the engine's
:class:`~TAREDosimetryLib.volume.Volume` convention: arrays (z, y, x), spacing/origin (x, y, z),
LPS physical space.  Segmentations are read by :mod:`.segmentation_io`.
"""

import os

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..resample import volume_from_sitk, volume_to_sitk
from ..volume import Volume
from .dicomimage import read_dicom_image
from .dicomseries import is_dicom_file, quiet_itk

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_image_with_source", "write_image", "strip_image_suffix", "check_exists"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".img", ".hdr")
_SUFFIXES_LONGEST_FIRST = tuple(sorted(IMAGE_SUFFIXES, key=len, reverse=True))


def strip_image_suffix(name):
    """``name`` (a file name or path) without its image suffix ('seg.nii.gz' -> 'seg'), any case."""
    name = str(name)
    for suf in _SUFFIXES_LONGEST_FIRST:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def check_exists(path, what):
    if path is None or str(path) == "":
        raise InputError(f"{what}: no path given")
    if not os.path.exists(path):
        raise InputError(f"{what}: file not found: {path}")


def _dicom_unit(source):
    """The Units attribute (0054,1001) of a DICOM series ('' when absent or pydicom is missing)."""
    try:
        import pydicom
    except ImportError:
        return ""
    ds = pydicom.dcmread(source.files[0], stop_before_pixels=True, specific_tags=["Units"])
    return str(ds.get("Units", "")).strip()


def _read_file(path, what):
    try:
        with quiet_itk():
            return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise InputError(f"{what}: cannot read {path} as an image ({first})") from None


def _is_dicom_path(path):
    return os.path.isdir(path) or str(path).lower().endswith((".dcm", ".ima")) or is_dicom_file(path)


def read_image_with_source(path, what="image", *, modalities=(), series_uids=()):
    """(float32 :class:`Volume`, DicomImageSource or None): :func:`read_image` that also says which
    DICOM series and files the image came from (None for other formats)."""
    check_exists(path, what)
    unit, source = "", None
    if _is_dicom_path(path):
        img, source = read_dicom_image(path, what, modalities=modalities, series_uids=series_uids)
        unit = _dicom_unit(source)
    else:
        img = _read_file(path, what)
    if img.GetDimension() != 3:
        size = "x".join(str(s) for s in img.GetSize())
        raise GeometryError(f"{what}: {path} is {img.GetDimension()}-D ({size}); a 3-D image is expected")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{what}: {path} has {img.GetNumberOfComponentsPerPixel()} components per voxel (4-D or vector image); "
            "a 3-D scalar image is expected"
        )
    if min(img.GetSize()) < 1:
        raise GeometryError(f"{what}: {path} is empty ({img.GetSize()})")
    vol = volume_from_sitk(img, name=os.path.basename(os.path.normpath(str(path))), unit=unit)
    return Volume(vol.array.astype(np.float32, copy=False), grid=vol.grid, name=vol.name, unit=unit), source


def read_image(path, what="image", *, modalities=(), series_uids=()):
    """Read a 3-D scalar image as a float32 :class:`Volume`.

    Parameters
    ----------
    path : str, a file (.nii[.gz], .nrrd, .mha, .dcm, ...) or a DICOM folder.
    what : str, how error messages name the input ('SPECT image', 'CT image', ...).
    modalities : DICOM modalities preferred when a folder holds several series ('PT', 'CT', ...).
    series_uids : SeriesInstanceUIDs chosen by the user (``--series``).

    Raises
    ------
    InputError : missing or unreadable file, not 3-D, several components, an unclear DICOM series.
    """
    return read_image_with_source(path, what, modalities=modalities, series_uids=series_uids)[0]


def write_image(volume, path, dtype=np.float32, compress=True):
    """Write a Volume (any format SimpleITK writes, chosen by the suffix)."""
    sitk.WriteImage(volume_to_sitk(volume, dtype=dtype), str(path), useCompression=compress)

