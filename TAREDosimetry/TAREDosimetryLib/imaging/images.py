"""Reading and writing images (SimpleITK at the edge of the engine).

Images (SPECT, PET, CT, dose): NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha,
.mhd) and DICOM series folders.  Everything read is converted to the engine's
:class:`~TAREDosimetryLib.volume.Volume` convention: arrays (z, y, x), spacing/origin (x, y, z),
LPS physical space.  Segmentations are read by :mod:`.segmentation_io`.
"""

import contextlib
import os
import re

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..resample import volume_from_sitk, volume_to_sitk
from ..volume import Volume
from .filecheck import check_image_file_complete

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_sitk_image", "itk_reason", "write_image", "strip_image_suffix", "check_exists"]

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


def itk_reason(exc, path):
    """The reason in an ITK/SimpleITK exception, in one line without the path (the caller names it)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else "unknown reason"
    if "Unable to determine ImageIO reader" in text:
        return "not an image format SimpleITK reads (NIfTI, NRRD, MetaImage, Analyze), or a damaged file"
    m = re.search(r"expected (\d+) bytes but received (\d+)", text)
    if m:
        return f"truncated: {m.group(2)} of the {m.group(1)} bytes of voxel data are there; copy it again"
    text = re.sub(r"^(sitk::ERROR|itk::ERROR|ITK ERROR)\s*:\s*", "", text)
    text = re.sub(r"^\[[a-z]+\]\s*\w+:\s*", "", text)  # [nrrd] _nrrdFormatNRRD_read: ...
    for name in {str(path), os.path.basename(str(path))}:
        text = text.replace(f'"{name}"', "it").replace(name, "it")
    return text or "unknown reason"


@contextlib.contextmanager
def _itk_warnings_off():
    """ITK's warnings are printed raw on stderr (GDCM's "No Series were found"); the engine says
    what went wrong in its own message instead."""
    old = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(old)


def _read_dicom_series(folder, what):
    if not os.listdir(folder):
        raise InputError(f"{what}: {folder} is an empty folder; expected an image file or a folder of DICOM files")
    reader = sitk.ImageSeriesReader()
    try:
        with _itk_warnings_off():
            ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read the DICOM folder {folder} ({itk_reason(exc, folder)})") from None
    if not ids:
        raise InputError(f"{what}: the folder {folder} holds no DICOM series; expected an image file or a folder of DICOM files")
    # The series with the most files is taken; name the others so the user knows.
    files_by_id = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in ids}
    sid = max(files_by_id, key=lambda s: len(files_by_id[s]))
    reader.SetFileNames(files_by_id[sid])
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with _itk_warnings_off():
            img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read DICOM series {sid} in {folder} ({itk_reason(exc, folder)})") from None
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
        img = read_sitk_image(path, what)
        if "Segment0_Name" in img.GetMetaDataKeys() or "Segment0_ID" in img.GetMetaDataKeys():
            raise InputError(f"{what}: {path} is a 3D Slicer segmentation (.seg.nrrd), not an image; give it as --segmentation")
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


def read_sitk_image(path, what="image"):
    """A SimpleITK image read from the file ``path``, refused with one clear line when the file is
    truncated or damaged (:mod:`.filecheck`) or not an image ITK reads."""
    check_image_file_complete(path, what)
    try:
        with _itk_warnings_off():
            return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read {path} ({itk_reason(exc, path)})") from None


def write_image(volume, path, dtype=np.float32, compress=True, metadata=None):
    """Write a Volume (any format SimpleITK writes, chosen by the suffix).

    metadata : dict of str, optional; header entries (NRRD: ``NRRD_content`` becomes the
        ``content:`` field, other keys ``key:=value`` lines).
    """
    img = volume_to_sitk(volume, dtype=dtype)
    for key, value in (metadata or {}).items():
        img.SetMetaData(str(key), str(value))
    sitk.WriteImage(img, str(path), useCompression=compress)

