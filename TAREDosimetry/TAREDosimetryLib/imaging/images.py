"""Reading and writing images (SimpleITK at the edge of the engine).

Images (SPECT, PET, CT, dose): NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha,
.mhd) and DICOM (a folder of series, or one file; see :mod:`.dicomimage`).  Everything read is converted to the engine's
:class:`~TAREDosimetryLib.volume.Volume` convention: arrays (z, y, x), spacing/origin (x, y, z),
LPS physical space.  Segmentations are read by :mod:`.segmentation_io`.
"""

import os
import re

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..resample import volume_from_sitk, volume_to_sitk
from ..volume import Volume
from .dicomimage import read_dicom_image
from .dicomseries import is_dicom_file, quiet_itk
from .filecheck import check_image_file_complete
from . import prefetch

__all__ = [
    "IMAGE_SUFFIXES", "read_image", "read_image_with_source", "read_sitk_image", "itk_reason", "write_image",
    "strip_image_suffix", "check_exists",
]

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
    m = re.search(r"fread got only (\d+) (\d+)-sized things, not (\d+)", text)  # a raw NRRD cut short
    if m:
        got, size, want = (int(g) for g in m.groups())
        return f"truncated: {got * size} of the {want * size} bytes of voxel data are there; copy it again"
    text = re.sub(r"^(sitk::ERROR|itk::ERROR|ITK ERROR)\s*:\s*", "", text)
    text = re.sub(r"^\[[a-z]+\]\s*\w+:\s*", "", text)  # [nrrd] _nrrdFormatNRRD_read: ...
    for name in {str(path), os.path.basename(str(path))}:
        text = text.replace(f'"{name}"', "it").replace(name, "it")
    return text or "unknown reason"


def _dicom_unit(source):
    """The Units attribute (0054,1001) of a DICOM series ('' when absent or pydicom is missing)."""
    try:
        import pydicom
    except ImportError:
        return ""
    ds = pydicom.dcmread(source.files[0], stop_before_pixels=True, specific_tags=["Units"])
    return str(ds.get("Units", "")).strip()


def _is_dicom_path(path):
    return os.path.isdir(path) or str(path).lower().endswith((".dcm", ".ima")) or is_dicom_file(path)


def _read_non_dicom(path, what):
    img = read_sitk_image(path, what)
    if "Segment0_Name" in img.GetMetaDataKeys() or "Segment0_ID" in img.GetMetaDataKeys():
        raise InputError(f"{what}: {path} is a 3D Slicer segmentation (.seg.nrrd), not an image; give it as --segmentation")
    return img


def read_image_with_source(path, what="image", *, modalities=(), series_uids=()):
    """(float32 :class:`Volume`, DicomImageSource or None): :func:`read_image` that also says which
    DICOM series and files the image came from (None for other formats)."""
    check_exists(path, what)
    unit, source = "", None
    if os.path.isdir(path) and not os.listdir(path):
        raise InputError(f"{what}: {path} is an empty folder; expected an image file or a folder of DICOM files")
    if _is_dicom_path(path):
        img, source = read_dicom_image(path, what, modalities=modalities, series_uids=series_uids)
        unit = _dicom_unit(source)
    else:
        img = _read_non_dicom(path, what)
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


def read_sitk_image(path, what="image"):
    """A SimpleITK image read from the file ``path``, refused with one clear line when the file is
    truncated or damaged (:mod:`.filecheck`) or not an image ITK reads."""
    ahead = prefetch.take(path)  # checked and read in the background already (tare-dosimetry run)
    if ahead is not None:
        return ahead
    check_image_file_complete(path, what)
    try:
        with quiet_itk():
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

