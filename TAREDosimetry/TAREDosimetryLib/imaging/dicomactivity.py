"""The parameters an activity image's DICOM header gives, and the checks before they are used.

:func:`header_activity_params` is the one place that turns an :class:`ActivityHeader`
(:mod:`.dicomtiming`) into calculation parameters:

* absolute calibration needs Bq/mL (Units BQML); counts, SUV or other units are refused, and a header
  without Units is accepted only when the user said ``--quantitative`` explicitly;
* a Y-90 PET whose header names another radionuclide (code, name or half-life) is refused unless
  ``allow_other_radionuclide`` (the scanner's quantification and decay correction used that
  nuclide's values);
* the time since administration and the decay correction come from the header unless the user
  gave them (``--hours-since-administration`` / ``--decay-corrected``); then the user's values win,
  and a disagreement with the header is reported.

Every decision is recorded (``record``, written to metrics.json under ``inputs.activity_dicom``).
"""

import re

from ..errors import InputError
from .dicomtiming import UNIT_MEANINGS, HALF_LIFE_TOLERANCE, Y90_CODE, activity_timing

__all__ = ["radionuclide_is_y90", "check_radionuclide", "check_units", "header_activity_params", "activity_values"]

_Y90_TEXT = re.compile(r"(\^?90\^?\s*-?\s*y(ttrium)?\b)|(\by(ttrium)?\s*-?\s*\^?90\b)", re.IGNORECASE)
#: Hours by which the user's time may differ from the header's before a remark is made.
TIMING_REMARK_H = 0.05


def radionuclide_is_y90(header, y90_half_life_h):
    """True (the header says Y-90), False (it names another radionuclide), None (it says nothing)."""
    verdicts = []
    text = header.radionuclide.strip()
    if text:
        verdicts.append(bool(_Y90_TEXT.search(text)))
    elif header.radionuclide_code:
        verdicts.append(header.radionuclide_code == Y90_CODE)
    if header.half_life_s:
        verdicts.append(abs(header.half_life_s / 3600.0 / y90_half_life_h - 1.0) <= HALF_LIFE_TOLERANCE)
    if not verdicts:
        return None
    return all(verdicts)


def _nuclide_text(header):
    parts = [header.radionuclide or (f"code {header.radionuclide_code}" if header.radionuclide_code else "")]
    if header.half_life_s:
        parts.append(f"half-life {header.half_life_s / 3600.0:.4g} h")
    return ", ".join(p for p in parts if p)


def check_radionuclide(header, y90_half_life_h, *, allow_other=False):
    """Remarks (list of str) on the header's radionuclide for a Y-90 image.

    Raises
    ------
    InputError : the header names another radionuclide and ``allow_other`` is False.
    """
    verdict = radionuclide_is_y90(header, y90_half_life_h)
    if verdict is None:
        return ["the image's header names no radionuclide; Y-90 is assumed"]
    if verdict:
        return []
    if not allow_other:
        raise InputError(
            f"the {header.modality or 'image'} header names radionuclide {_nuclide_text(header)}, not Y-90: the scanner's "
            "quantification and decay correction used that radionuclide's values. Refused; add "
            "--allow-other-radionuclide to compute it as Y-90 anyway")
    return [f"the header names radionuclide {_nuclide_text(header)}, not Y-90; computed as Y-90 because "
            "--allow-other-radionuclide was given"]


def check_units(header, calibration, *, quantitative_explicit=False):
    """Remarks (list of str) on the image's units for the chosen calibration.

    Raises
    ------
    InputError : absolute calibration of an image that is not in Bq/mL, or whose header has no
        Units when the user did not say --quantitative.
    """
    units = header.units
    meaning = UNIT_MEANINGS.get(units, units)
    if calibration == "absolute":
        if units == "BQML":
            return []
        if units:
            raise InputError(f"the image's header gives its values in {meaning} (Units {units}), not Bq/mL: absolute "
                             "calibration needs Bq/mL (use --relative to scale counts to the administered activity)")
        if not quantitative_explicit:
            raise InputError("the image's header has no Units (0054,1001): it does not say the values are Bq/mL; add "
                             "--quantitative if they are, or --relative for counts")
        return ["the image's header has no Units; Bq/mL taken as --quantitative says"]
    if units == "BQML":
        return ["the image is in Bq/mL (quantitative); relative calibration scales it to the administered activity "
                "(--quantitative would use the Bq/mL values)"]
    return []


def _timing_or_none(header, half_life_h):
    try:
        return activity_timing(header, half_life_h), None
    except InputError as exc:
        return None, str(exc)


def _apply_timing(params, header, timing_overridden, record, warnings):
    """(params, slice factors or None) with the header's timing unless the user gave it."""
    timing, problem = _timing_or_none(header, params.half_life_h)
    if timing is not None:
        record["header_timing"] = timing.to_dict()
    if timing_overridden:
        record["timing_source"] = "command line"
        given = params.hours_since_administration
        if timing is not None and given is not None and not params.image_decay_corrected and not \
                timing.image_decay_corrected and abs(timing.hours_since_administration - given) > TIMING_REMARK_H:
            warnings.append(f"hours since administration {params.hours_since_administration:g} h given overrides the "
                            f"header's {timing.hours_since_administration:.3f} h")
        return params, None
    if timing is None:
        raise InputError(problem)
    record["timing_source"] = "DICOM header"
    warnings.extend(timing.notes)
    return params.replace(hours_since_administration=timing.hours_since_administration,
                          image_decay_corrected=timing.image_decay_corrected), timing.slice_factors


def header_activity_params(params, header, *, modality="pet", timing_overridden=False, quantitative_explicit=False,
                           allow_other_radionuclide=False):
    """(params, record, warnings, slice_factors) for an activity image with a DICOM header.

    Parameters
    ----------
    params : DosimetryParams before the header is used.
    header : ActivityHeader.
    modality : 'pet' or 'spect' (the input the image was given as); the radionuclide check applies
        to PET with absolute calibration.
    timing_overridden : the user gave --hours-since-administration or --decay-corrected.
    quantitative_explicit : the user said --quantitative (the image is in Bq/mL).
    allow_other_radionuclide : compute a PET whose header names another radionuclide.

    Returns
    -------
    params : with hours_since_administration and image_decay_corrected from the header (absolute
        calibration, timing not overridden).
    record : dict for metrics.json (header attributes, timing, source, remarks).
    warnings : list of str for the result's warnings.
    slice_factors : (Z,) factors to multiply the image's slices by (NONE decay correction with
        slices acquired at different times), or None.  (Apply also ``header.value_transform``:
        :func:`activity_values`.)
    """
    warnings, factors = [], None
    record = {"header": header.to_dict()}
    warnings += check_units(header, params.calibration, quantitative_explicit=quantitative_explicit)
    if modality == "pet" and params.calibration == "absolute":
        warnings += check_radionuclide(header, params.half_life_h, allow_other=allow_other_radionuclide)
    if params.calibration == "absolute":
        a, b = header.value_transform
        if (a, b) != (1.0, 0.0):
            warnings.append(f"values converted to Bq/mL with the header's Real World Value Mapping ({a:.6g} v + {b:.6g})")
        params, factors = _apply_timing(params, header, timing_overridden, record, warnings)
    else:
        timing, _problem = _timing_or_none(header, params.half_life_h)
        if timing is not None:
            record["header_timing"] = timing.to_dict()
    record["remarks"] = list(warnings)
    return params, record, warnings, factors


def activity_values(array, header, slice_factors, calibration):
    """The image's values as the calibration needs them: Bq/mL through the header's Real World Value
    Mapping (absolute calibration), times the per-slice decay factors; ``array`` (Z, Y, X) is not modified."""
    import numpy as np

    out = np.asarray(array, dtype=np.float32)
    a, b = header.value_transform
    if calibration == "absolute" and (a, b) != (1.0, 0.0):
        out = (out * np.float32(a) + np.float32(b)).astype(np.float32)
    if slice_factors is not None:
        out = (out * np.asarray(slice_factors, np.float32)[:, None, None]).astype(np.float32)
    return out
