"""Reading and writing images (SimpleITK at the edge of the engine).

Images (SPECT, PET, CT, dose): NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha,
.mhd) and DICOM series folders.  Everything read is converted to the engine's
:class:`~TAREDosimetryLib.volume.Volume` convention: arrays (z, y, x), spacing/origin (x, y, z),
LPS physical space.  Segmentations are read by :mod:`.segmentation_io`.
"""

import os

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..resample import volume_from_sitk, volume_to_sitk
from ..volume import Volume

__all__ = ["IMAGE_SUFFIXES", "read_image", "write_image", "strip_image_suffix", "check_exists"]

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


def _read_dicom_series(folder, what):
    reader = sitk.ImageSeriesReader()
    try:
        ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read the DICOM folder {folder}: {exc}") from None
    if not ids:
        raise InputError(f"{what}: {folder} is a folder but holds no DICOM series (nor is it a folder of masks here)")
    # The series with the most files is taken; name the others so the user knows.
    files_by_id = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in ids}
    sid = max(files_by_id, key=lambda s: len(files_by_id[s]))
    reader.SetFileNames(files_by_id[sid])
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read DICOM series {sid} in {folder}: {exc}") from None
    unit = ""
    try:
        if reader.HasMetaDataKey(0, "0054|1001"):
            unit = reader.GetMetaData(0, "0054|1001").strip()
    except RuntimeError:
        pass
    return img, unit


def read_image(path, what="image"):
    """Read a 3-D scalar image as a float32 :class:`Volume`.

    Parameters
    ----------
    path : str, a file (.nii[.gz], .nrrd, .mha, ...) or a DICOM series folder.
    what : str, how error messages name the input ('SPECT image', 'CT image', ...).

    Raises
    ------
    InputError : missing or unreadable file, not 3-D, several components.
    """
    check_exists(path, what)
    unit = ""
    if os.path.isdir(path):
        img, unit = _read_dicom_series(path, what)
    else:
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
            raise InputError(f"{what}: cannot read {path} as an image ({first})") from None
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
    return Volume(vol.array.astype(np.float32, copy=False), grid=vol.grid, name=vol.name, unit=unit)


def write_image(volume, path, dtype=np.float32, compress=True):
    """Write a Volume (any format SimpleITK writes, chosen by the suffix)."""
    sitk.WriteImage(volume_to_sitk(volume, dtype=dtype), str(path), useCompression=compress)

