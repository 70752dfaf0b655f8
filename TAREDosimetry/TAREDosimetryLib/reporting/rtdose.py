"""The dose map as a DICOM RT Dose (``dose.dcm``).

A multi-frame RT Dose (DICOM PS3.3 A.18, C.8.8.3): DoseUnits GY, DoseType PHYSICAL, 32-bit unsigned
pixels times DoseGridScaling.  The scaling is chosen from the largest dose and written as the
decimal string readers will use, so the round-trip error is at most half a step:
max / (2 (2^32 - 2)) ~ 1e-10 of the maximum (the tests require < 1e-4).  Frames run along the
normal of ImageOrientationPatient (row x column direction): a grid whose k axis points the other
way (the MAA SPECT's reversed z) is written with its frames reversed, so GridFrameOffsetVector
increases from 0 (relative offsets).

DoseSummationType is PLAN.  A microsphere treatment has no DICOM RT Plan, so the Referenced RT Plan
Sequence (type 1C) is absent; strict validators report that, and SlicerRT, dicompyler-core,
pydicom and SimpleITK read the file (tested).  The dose joins the study and frame of reference of
the DICOM inputs, referring to the CT images (Referenced Image Sequence) and to the activity
images it was computed from (Source Image Sequence), or forms a standalone study
(:mod:`.dicomref`).
"""

import numpy as np

from ..errors import InputError
from ..imaging.dicomseries import require_pydicom
from .dicomref import base_dataset, dicom_context, save_dataset

__all__ = ["RTDOSE_SOP_CLASS", "rtdose_dataset", "write_rtdose", "frames_along_normal", "dose_grid_scaling"]

RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"
_MAX_STORED = 2**32 - 2


def frames_along_normal(volume):
    """(array (Z, Y, X), origin (x, y, z), direction 3x3) with k along the row x column normal."""
    d = volume.grid.direction_matrix
    arr = np.asarray(volume.array)
    if np.dot(np.cross(d[:, 0], d[:, 1]), d[:, 2]) > 0:
        return arr, np.asarray(volume.origin_mm, float), d
    last = volume.grid.ijk_to_lps @ np.array([0.0, 0.0, volume.shape[0] - 1, 1.0])
    flipped = d.copy()
    flipped[:, 2] = -d[:, 2]
    return arr[::-1], last[:3], flipped


def dose_grid_scaling(max_gy):
    """(DoseGridScaling as written (a DS of at most 16 characters), its float value)."""
    if not np.isfinite(max_gy) or max_gy < 0:
        raise InputError(f"RT Dose: the dose map's maximum is {max_gy!r}; a finite dose >= 0 is expected")
    if max_gy == 0:
        return "1", 1.0
    text = f"{max_gy / _MAX_STORED:.9e}"
    value = float(text)
    if max_gy / value > _MAX_STORED + 0.5:  # rounded down: take the next representable step up
        text = f"{value * (1 + 1e-9):.9e}"
        value = float(text)
    return text, value


def _geometry(ds, volume):
    arr, origin, d = frames_along_normal(volume)
    sx, sy, sz = volume.spacing_mm
    ds.ImagePositionPatient = [f"{v:.6f}" for v in origin]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in list(d[:, 0]) + list(d[:, 1])]
    ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]
    ds.SliceThickness = f"{sz:.6f}"
    ds.GridFrameOffsetVector = [f"{k * sz:.6f}" for k in range(arr.shape[0])]
    ds.FrameIncrementPointer = [0x3004000C]
    ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
    return arr


def _pixels(ds, arr):
    dose = np.asarray(arr, dtype=np.float64)
    if np.any(~np.isfinite(dose)):
        raise InputError("RT Dose: the dose map holds NaN or infinite voxels")
    dose = np.clip(dose, 0.0, None)  # float32 FFT round-off can leave -1e-7 Gy
    text, scale = dose_grid_scaling(float(dose.max()))
    stored = np.minimum(np.rint(dose / scale), _MAX_STORED).astype("<u4")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseGridScaling = text
    ds.PixelData = stored.tobytes()


def _references(ds, ctx):
    from pydicom.dataset import Dataset

    def items(pairs):
        out = []
        for sop_class, sop_uid in pairs:
            it = Dataset()
            it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = sop_class, sop_uid
            out.append(it)
        return out

    ref = [p for p in ctx.referenced_images if p not in ctx.source_images]
    if ref:
        ds.ReferencedImageSequence = items(ref)
    if ctx.source_images:
        ds.SourceImageSequence = items(ctx.source_images)


def rtdose_dataset(dose_gy, ctx=None, *, description="Y-90 absorbed dose (TAREDosimetry)", derivation=""):
    """The RT Dose dataset of a dose map.

    Parameters
    ----------
    dose_gy : Volume, (Z, Y, X) in Gy, LPS geometry.
    ctx : DicomContext (default: a standalone study).
    description : SeriesDescription.  derivation : DerivationDescription (method, constants).
    """
    require_pydicom("writing an RT Dose")
    ctx = ctx or dicom_context()
    ds = base_dataset(ctx, RTDOSE_SOP_CLASS, "RTDOSE", description)
    arr = _geometry(ds, dose_gy)
    _pixels(ds, arr)
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseComment = "Y-90 radioembolization absorbed dose; no RT Plan exists for this treatment"[:64]
    if derivation:
        ds.DerivationDescription = derivation[:1024]
    _references(ds, ctx)
    return ds


def write_rtdose(dose_gy, path, ctx=None, **kwargs):
    """Write :func:`rtdose_dataset` to ``path``; returns the dataset."""
    ds = rtdose_dataset(dose_gy, ctx, **kwargs)
    save_dataset(ds, path)
    return ds
