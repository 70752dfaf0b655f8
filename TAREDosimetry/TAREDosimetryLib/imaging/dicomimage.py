"""One DICOM image series (or one multi-frame file) read as a SimpleITK image, checked.

* The series is chosen by :func:`.dicomseries.select_series` (modality, ``--series UID``).
* Slices are sorted along their normal (row x column direction) from ImagePositionPatient; the
  spacing must be uniform (a missing slice or two slices at one position are refused, as is a
  gantry-tilted, sheared stack), because ITK would otherwise take the first gap for all.
* Pixels are read as float64, so that every slice's own RescaleSlope/Intercept is applied exactly
  (ITK casts a series to the first slice's type: a first slice with slope 1 would make the whole PET
  integer and truncate the others).  NM multi-frame files (reconstructed SPECT) are read the same way.
"""

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from .dicomseries import is_dicom_file, quiet_itk, scan_dicom_folder, select_series

__all__ = ["DicomImageSource", "read_dicom_image", "IMAGE_MODALITIES"]

#: Preferred modalities for each kind of input image, in order.
IMAGE_MODALITIES = {"pet": ("PT",), "spect": ("NM", "PT"), "ct": ("CT",)}
#: Relative tolerance on the gaps between slices.
SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class DicomImageSource:
    """Where a DICOM image came from: the series, its files in slice (k) order, remarks."""

    series: object
    files: tuple
    notes: tuple = ()

    def to_dict(self):
        s = self.series
        return {"series_instance_uid": s.series_uid, "modality": s.modality, "sop_class": s.sop_class_name,
                "description": s.description, "study_instance_uid": s.study_uid,
                "frame_of_reference_uid": s.frame_of_reference_uid, "files": len(self.files)}


def _normal(ds):
    iop = [float(v) for v in ds.ImageOrientationPatient]
    return np.cross(iop[:3], iop[3:])


def _sorted_slices(pydicom, files, what):
    """Files sorted along the slice normal, after the spacing checks; returns (files, gap_mm)."""
    heads = [pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["ImagePositionPatient", "ImageOrientationPatient"])
             for f in files]
    if any("ImagePositionPatient" not in h or "ImageOrientationPatient" not in h for h in heads):
        raise GeometryError(f"{what}: a slice of the series lacks ImagePositionPatient or ImageOrientationPatient")
    normal = _normal(heads[0])
    pos = np.array([[float(v) for v in h.ImagePositionPatient] for h in heads])
    order = np.argsort(pos @ normal, kind="stable")
    pos, files = pos[order], [files[i] for i in order]
    if len(files) < 2:
        return files, None
    along = pos @ normal
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        raise GeometryError(f"{what}: two slices lie at the same position ({along[np.argmin(gaps)]:.2f} mm along the "
                            "normal): several frames or gates in one series; choose one with --series or split it")
    if np.any(np.abs(gaps - gaps.mean()) > SPACING_TOLERANCE * gaps.mean()):
        raise GeometryError(f"{what}: the slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm (a missing "
                            "slice, or a series of several parts); resample it to a uniform grid first")
    lateral = (pos[-1] - pos[0]) - normal * (along[-1] - along[0])
    if np.linalg.norm(lateral) > 0.1 * max(gaps.mean(), 1e-6):
        raise GeometryError(f"{what}: the slices are sheared ({np.linalg.norm(lateral):.2f} mm sideways from first to last; "
                            "gantry tilt); resample the series to an orthogonal grid first")
    return files, float(gaps.mean())


def _series_of_path(path, what, modalities, series_uids):
    """(DicomSeries, files) for a folder, or for one file (a multi-frame image, or one slice of a series)."""
    if os.path.isdir(path):
        series = select_series(path, what=what, kinds=("image",), modalities=modalities, series_uids=series_uids)
        return series, list(series.files)
    if not is_dicom_file(path):
        raise InputError(f"{what}: {path} is not a DICOM file")
    folder_series = scan_dicom_folder(os.path.dirname(os.path.abspath(path)), recursive=False)
    for s in folder_series:
        if os.path.abspath(path) in {os.path.abspath(f) for f in s.files}:
            return s, ([path] if s.frames > 1 else list(s.files))
    raise InputError(f"{what}: {path}: cannot read its DICOM header")


def read_dicom_image(path, what, *, modalities=(), series_uids=()):
    """(sitk.Image float64, :class:`DicomImageSource`) of a DICOM folder or file.

    Raises
    ------
    InputError, GeometryError : no or several candidate series, uneven or sheared slices, unreadable pixels.
    """
    series, files = _series_of_path(str(path), what, modalities, series_uids)
    notes = []
    if modalities and series.modality not in modalities:
        notes.append(f"{what}: series {series.series_uid} has modality {series.modality or 'unknown'}, "
                     f"not {'/'.join(modalities)}")
    try:
        import pydicom
    except ImportError:
        pydicom = None
    if len(files) > 1 and pydicom is not None:
        files, _gap = _sorted_slices(pydicom, files, what)
    elif len(files) > 1:
        with quiet_itk():
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(os.path.dirname(files[0]), series.series_uid))
    try:
        with quiet_itk():
            if len(files) == 1:
                img = sitk.ReadImage(files[0], sitk.sitkFloat64)
            else:
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(files)
                reader.SetOutputPixelType(sitk.sitkFloat64)
                img = reader.Execute()
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise InputError(f"{what}: cannot read DICOM series {series.series_uid} in {path} ({last})") from None
    return img, DicomImageSource(series, tuple(files), tuple(notes))
