"""Dose maps computed elsewhere (``tare-dosimetry evaluate``): read, with their unit checked.

Formats: DICOM RT Dose (DoseUnits GY; a Simplicit90Y, MIM or treatment-planning export), NRRD,
NIfTI and MetaImage (.mhd/.mha from GATE or TOPAS Monte Carlo).  The unit comes from the header
(RT Dose DoseUnits; a ``unit``/``units``/``dose_unit``/``DoseUnits`` key of NRRD or MetaImage
metadata) or from ``dose_unit`` (``--dose-unit Gy|cGy|mGy``); when both are given they must agree,
and when neither is, the map is refused rather than guessed.  ``dose_scale`` multiplies the map after
the unit conversion (e.g. total decays per simulated primary for a Monte Carlo dose per primary).
"""

import os

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..resample import volume_from_sitk
from ..volume import Volume
from .dicomseries import is_dicom_file, quiet_itk, select_series
from .filecheck import check_image_file_complete
from .images import check_exists, itk_reason, strip_image_suffix
from .rtdose import read_rtdose

__all__ = ["DOSE_UNITS", "read_dose_map", "dose_volume_in_gy", "unit_factor"]

#: Dose units accepted, with their factor to Gy.
DOSE_UNITS = {"gy": 1.0, "cgy": 0.01, "mgy": 0.001}
_UNIT_KEYS = ("unit", "units", "dose_unit", "doseunits", "dose_units")
#: Largest plausible voxel dose (Gy) of a radioembolization; above it the unit is questioned.
MAX_PLAUSIBLE_GY = 5000.0


def unit_factor(unit, what):
    """Factor to Gy of a unit name ('Gy', 'cGy', 'mGy', any case)."""
    key = str(unit).strip().lower()
    if key not in DOSE_UNITS:
        raise InputError(f"{what}: dose unit {unit!r} is not one of Gy, cGy, mGy")
    return DOSE_UNITS[key]


def _header_unit(img):
    for key in img.GetMetaDataKeys():
        if key.strip().lower() in _UNIT_KEYS:
            return img.GetMetaData(key).strip()
    return ""


def _read_image_dose(path, what):
    check_image_file_complete(path, what)
    try:
        with quiet_itk():
            img = sitk.ReadImage(str(path), sitk.sitkFloat64)
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read {path} as an image ({itk_reason(exc, path)})") from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what}: {path} is not a 3-D scalar image")
    unit = _header_unit(img)
    vol = volume_from_sitk(img, name=os.path.basename(strip_image_suffix(path)))
    return vol, unit, []


def _read_any(path, what, series_uids):
    """(Volume in the file's values, unit from the header or '', notes)."""
    if os.path.isdir(path):
        series = select_series(path, what=what, kinds=("rtdose",), series_uids=series_uids)
        if len(series.files) != 1:
            raise InputError(f"{what}: RT Dose series {series.series_uid} has {len(series.files)} files; give one file")
        path = series.files[0]
    if is_dicom_file(path) or str(path).lower().endswith(".dcm"):
        vol, notes = read_rtdose(path, what)
        return vol, "Gy", notes
    return _read_image_dose(path, what)


def _checked_values(vol, what, notes):
    arr = np.asarray(vol.array, dtype=np.float64)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise InputError(f"{what}: {bad} NaN or infinite voxel(s) in the dose map")
    neg = arr < 0
    if np.any(neg):
        notes.append(f"{what}: {int(neg.sum())} negative voxel(s) (down to {arr.min():.3g} Gy) set to 0")
        arr = np.where(neg, 0.0, arr)
    if arr.max() > MAX_PLAUSIBLE_GY:
        notes.append(f"{what}: maximum {arr.max():.4g} Gy is above {MAX_PLAUSIBLE_GY:g} Gy: is the unit right "
                     "(cGy or mGy read as Gy)?")
    if arr.max() <= 0:
        raise InputError(f"{what}: the dose map is zero everywhere")
    return arr.astype(np.float32)


def read_dose_map(path, *, dose_unit=None, dose_scale=1.0, series_uids=(), what="dose map"):
    """A dose map in Gy from a file of another tool.

    Parameters
    ----------
    path : RT Dose file (or a folder holding one), NRRD, NIfTI, MHA/MHD.
    dose_unit : 'Gy', 'cGy', 'mGy' or None (then the header must say).
    dose_scale : factor applied after the unit conversion.
    series_uids : to choose an RT Dose in a folder holding several.

    Returns
    -------
    (Volume float32 in Gy, record dict for metrics.json, notes list)

    Raises
    ------
    InputError : unknown or conflicting unit, no unit at all, unreadable file, NaN voxels.
    """
    check_exists(path, what)
    if not (np.isfinite(dose_scale) and dose_scale > 0):
        raise InputError(f"--dose-scale must be a positive number, got {dose_scale!r}")
    vol, header_unit, notes = _read_any(str(path), what, series_uids)
    if header_unit and dose_unit and unit_factor(header_unit, what) != unit_factor(dose_unit, "--dose-unit"):
        raise InputError(f"{what}: the file says its unit is {header_unit}, --dose-unit says {dose_unit}; they disagree")
    unit = header_unit or dose_unit
    if not unit:
        raise InputError(f"{what}: {path} does not state its dose unit; give --dose-unit Gy, cGy or mGy")
    dose, more = dose_volume_in_gy(vol, unit, dose_scale=dose_scale, what=what)
    record = {"dose_file": os.path.abspath(str(path)), "unit": unit, "unit_source": "header" if header_unit else "--dose-unit",
              "factor_to_gy": unit_factor(unit, what) * float(dose_scale), "dose_scale": float(dose_scale),
              "max_gy": float(dose.array.max())}
    return dose, record, notes + more


def dose_volume_in_gy(volume, unit, *, dose_scale=1.0, what="dose map"):
    """A dose map already in memory (e.g. a volume of the Slicer scene) in Gy, checked as
    :func:`read_dose_map` checks a file's.

    Parameters
    ----------
    volume : Volume, (Z, Y, X) dose values in ``unit``; not modified.
    unit : 'Gy', 'cGy' or 'mGy'.
    dose_scale : factor applied after the unit conversion.

    Returns
    -------
    (Volume float32 in Gy on the same grid, notes list: negative voxels set to 0, an implausible maximum)

    Raises
    ------
    InputError : unknown unit, NaN or infinite voxels, a map that is zero everywhere.
    """
    if not (np.isfinite(dose_scale) and dose_scale > 0):
        raise InputError(f"{what}: the dose scale must be a positive number, got {dose_scale!r}")
    factor = unit_factor(unit, what) * float(dose_scale)
    notes = []
    gy = _checked_values(volume.with_array(np.asarray(volume.array, np.float64) * factor), what, notes)
    return Volume(gy, grid=volume.grid, name=volume.name, unit="Gy"), notes
