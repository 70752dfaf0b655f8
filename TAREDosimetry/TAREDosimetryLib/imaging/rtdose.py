"""Reading a DICOM RT Dose as a dose map in Gy (an external dose for ``evaluate``, or our own dose.dcm).

Geometry from ImagePositionPatient, ImageOrientationPatient, PixelSpacing and GridFrameOffsetVector
(relative offsets when the first is 0, else absolute z positions, which DICOM allows only for axial
planes); frames sorted along the normal and checked for even spacing.  Values are the stored
pixels times DoseGridScaling.  DoseUnits must be GY (RELATIVE doses cannot meet Gy thresholds);
DoseType EFFECTIVE (biologically weighted) is read with a remark, ERROR refused.
"""

import numpy as np

from ..errors import GeometryError, InputError
from ..volume import Grid, Volume
from .dicomseries import require_pydicom

__all__ = ["read_rtdose", "is_rtdose"]

RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"


def is_rtdose(path):
    """True when ``path`` is a DICOM file of the RT Dose SOP class."""
    pydicom = require_pydicom("reading an RT Dose")
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # not DICOM at all
        return False
    return str(ds.get("SOPClassUID", "")) == RTDOSE_SOP_CLASS or str(ds.get("Modality", "")) == "RTDOSE"


def _frame_positions(ds, what):
    """Positions of the frames along the normal, relative to ImagePositionPatient (mm)."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    offsets = [float(v) for v in (ds.get("GridFrameOffsetVector") or [0.0])]
    if len(offsets) != n:
        raise GeometryError(f"{what}: GridFrameOffsetVector has {len(offsets)} values for {n} frames")
    if offsets[0] != 0.0:  # absolute z positions (axial planes only)
        iop = [float(v) for v in ds.ImageOrientationPatient]
        if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-6):
            raise GeometryError(f"{what}: absolute GridFrameOffsetVector with non-axial ImageOrientationPatient {iop}")
        offsets = [o - float(ds.ImagePositionPatient[2]) for o in offsets]
    return np.asarray(offsets, float)


def _grid(ds, what, n_frames):
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    offsets = _frame_positions(ds, what)
    order = np.argsort(offsets, kind="stable")
    offsets = offsets[order]
    if n_frames > 1:
        gaps = np.diff(offsets)
        if np.any(gaps <= 0) or np.any(np.abs(gaps - gaps.mean()) > 0.01 * gaps.mean()):
            raise GeometryError(f"{what}: the dose frames are not evenly spaced (GridFrameOffsetVector gaps "
                                f"{gaps.min():.3f}..{gaps.max():.3f} mm)")
        sz = float(gaps.mean())
    else:
        sz = float(ds.get("SliceThickness", 0) or 0) or 1.0
    sy, sx = (float(v) for v in ds.PixelSpacing)
    origin = np.array([float(v) for v in ds.ImagePositionPatient]) + normal * offsets[0]
    direction = np.column_stack([row, col, normal]).reshape(-1)
    return Grid((n_frames, int(ds.Rows), int(ds.Columns)), (sx, sy, sz), tuple(origin), tuple(direction)), order


def _check_units(ds, what, notes):
    units = str(ds.get("DoseUnits", "")).strip().upper()
    if units != "GY":
        raise InputError(f"{what}: DoseUnits is {units or 'missing'}; an RT Dose in GY is expected (RELATIVE doses "
                         "have no absolute scale to compare with thresholds in Gy)")
    dose_type = str(ds.get("DoseType", "")).strip().upper()
    if dose_type == "ERROR":
        raise InputError(f"{what}: DoseType ERROR (an uncertainty map), not a dose")
    if dose_type == "EFFECTIVE":
        notes.append(f"{what}: DoseType EFFECTIVE (biologically weighted dose), not PHYSICAL")


def read_rtdose(path, what="dose"):
    """A dose map in Gy from an RT Dose file.

    Returns
    -------
    (Volume float32 in Gy, notes) with notes a list of remarks.

    Raises
    ------
    InputError, GeometryError : not an RT Dose, units other than GY, uneven frames.
    """
    pydicom = require_pydicom("reading an RT Dose")
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise InputError(f"{what}: cannot read {path} as DICOM ({exc})") from None
    if str(ds.get("SOPClassUID", "")) != RTDOSE_SOP_CLASS and str(ds.get("Modality", "")) != "RTDOSE":
        raise InputError(f"{what}: {path} is a DICOM {ds.get('Modality', '?')} object, not an RT Dose")
    notes = []
    _check_units(ds, what, notes)
    pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    grid, order = _grid(ds, what, pixels.shape[0])
    scaling = float(ds.get("DoseGridScaling", 1.0) or 1.0)
    dose = (pixels[order] * scaling).astype(np.float32)
    return Volume(dose, grid=grid, name=str(path).rsplit("/", 1)[-1], unit="Gy"), notes
