"""What the DICOM header of a PET or SPECT series says about its activity: units, decay correction,
time since administration, radionuclide.

Absolute calibration needs the image in Bq/mL and the time its values refer to, relative to the
administration: ``A(t0) = c V exp(lambda dt)`` (PHYSICS.md).  The header holds both, spread over
several attributes (DICOM PS3.3 C.8.9.1 PET Series, C.8.9.2 PET Isotope, C.8.9.4 PET Image):

* Units (0054,1001): BQML for Bq/mL; CNTS, GML (SUV) and others are not activity concentrations.
* Decay Correction (0054,1102): ADMIN (values already at administration), START (at the acquisition
  start; the Decay Correction DateTime (0018,9701) when present, else the Series Date/Time, or the
  earliest Acquisition Date/Time when the Series Time is later, as the QIBA vendor-neutral SUV
  pseudo-code does), NONE (each slice at its own Frame Reference Time (0054,1300) after the Series
  Time, or mid-frame: Acquisition Time + Actual Frame Duration / 2).
* Radiopharmaceutical Start DateTime (0018,1078), or Start Time (0018,1072) with no date: a Y-90
  scan may follow the administration by a day or more, so a time without a date is refused.
* Radionuclide Code Sequence (0054,0300), Radionuclide Half Life (0018,1075), Decay Factor (0054,1321).

Missing or conflicting fields raise :class:`InputError` naming the attribute; the user then gives
``--hours-since-administration`` or ``--decay-corrected``, which override the header.
"""

import datetime as _dt
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

__all__ = [
    "ActivityHeader", "ActivityTiming", "read_activity_header", "activity_timing",
    "header_from_datasets", "parse_dicom_datetime", "Y90_CODE", "UNIT_MEANINGS",
]

#: SNOMED CT code of ^90^Yttrium (DICOM CID 4020 PET Radionuclide).
Y90_CODE = "14691008"
#: Relative difference between a header half-life and Y-90's that names another radionuclide.
HALF_LIFE_TOLERANCE = 0.02
#: Relative difference between a header DecayFactor and the one its own times give: a conflict.
DECAY_FACTOR_TOLERANCE = 0.02
#: Images more than this many hours after administration get a remark (about 8 half-lives).
LATE_SCAN_H = 21 * 24.0
UNIT_MEANINGS = {"BQML": "Bq/mL", "CNTS": "counts", "GML": "SUV (g/mL)", "PROPCNTS": "proportional to counts",
                  "CPS": "counts per second", "NONE": "no unit", "PCNT": "percent"}


@dataclass(frozen=True)
class ActivityHeader:
    """The activity-related attributes of one series (slice lists in k order, None where absent)."""

    modality: str = ""
    units: str = ""
    value_transform: tuple = (1.0, 0.0)
    decay_correction: str = ""
    series_datetime: object = None
    acquisition_datetimes: tuple = ()
    frame_reference_ms: tuple = ()
    frame_duration_ms: tuple = ()
    decay_factors: tuple = ()
    decay_correction_datetime: object = None
    administration_datetime: object = None
    administration_time_only: str = ""
    radionuclide: str = ""
    radionuclide_code: str = ""
    half_life_s: float = None
    total_dose_bq: float = None
    notes: tuple = ()

    def to_dict(self):
        iso = lambda t: t.isoformat() if t is not None else None  # noqa: E731
        acq = [t for t in self.acquisition_datetimes if t is not None]
        return {
            "modality": self.modality, "units": self.units or None, "value_transform_to_units": list(self.value_transform),
            "decay_correction": self.decay_correction or None,
            "series_datetime": iso(self.series_datetime), "first_acquisition_datetime": iso(min(acq)) if acq else None,
            "decay_correction_datetime": iso(self.decay_correction_datetime),
            "administration_datetime": iso(self.administration_datetime),
            "radionuclide": self.radionuclide or None, "radionuclide_code": self.radionuclide_code or None,
            "radionuclide_half_life_s": self.half_life_s, "radionuclide_total_dose_bq": self.total_dose_bq,
        }


@dataclass(frozen=True)
class ActivityTiming:
    """When the image's values hold, relative to the administration.

    hours_since_administration : reference time of the values minus administration, h.
    image_decay_corrected : the values are already at the administration time (ADMIN).
    slice_factors : (Z,) factors that bring every slice to the reference time (NONE with slices
        acquired at different times), or None.
    """

    hours_since_administration: float
    image_decay_corrected: bool
    reference: str
    reference_datetime: object
    administration_datetime: object
    slice_factors: object = None
    notes: tuple = field(default=())

    def describe(self):
        corrected = "values decay-corrected to the administration" if self.image_decay_corrected else "values at " + self.reference
        return (f"administered {self.administration_datetime.isoformat(sep=' ')}, reference {self.reference} "
                f"{self.reference_datetime.isoformat(sep=' ')}: {self.hours_since_administration:.4f} h ({corrected})")

    def to_dict(self):
        d = {"hours_since_administration": self.hours_since_administration,
             "image_decay_corrected": self.image_decay_corrected, "reference": self.reference,
             "reference_datetime": self.reference_datetime.isoformat(),
             "administration_datetime": self.administration_datetime.isoformat(), "notes": list(self.notes)}
        if self.slice_factors is not None:
            d["slice_decay_factors_min_max"] = [float(np.min(self.slice_factors)), float(np.max(self.slice_factors))]
        return d


# -- parsing ----------------------------------------------------------------------------------
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def parse_dicom_datetime(text, what="date-time"):
    """datetime of a DICOM DT ('YYYYMMDDHHMMSS.FFFFFF&ZZXX', the parts after the year optional);
    None for an empty value.  An offset (&ZZXX) gives an aware datetime."""
    text = str(text or "").strip()
    if not text:
        return None
    m = _DT.match(text)
    if not m:
        raise InputError(f"{what}: {text!r} is not a DICOM date-time (YYYYMMDDHHMMSS.FFFFFF)")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        t = _dt.datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0),
                         int((frac or "0").ljust(6, "0")))
    except ValueError as exc:
        raise InputError(f"{what}: {text!r} is not a valid date-time ({exc})") from None
    if tz:
        sign = 1 if tz[0] == "+" else -1
        t = t.replace(tzinfo=_dt.timezone(sign * _dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))))
    return t


def _date_time(date, time, what, tz=""):
    """datetime of a DA + TM pair (TM may be HH, HHMM, HHMMSS[.F]), at the UTC offset ``tz``
    (TimezoneOffsetFromUTC, '+HHMM') when given; None when either is empty."""
    date, time = str(date or "").strip(), str(time or "").strip().replace(":", "")
    if not date or not time:
        return None
    return parse_dicom_datetime(date + time + (tz or ""), what)


def _float_or_none(v):
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _radiopharmaceutical(ds, notes):
    seq = ds.get("RadiopharmaceuticalInformationSequence") or []
    if len(seq) > 1:
        notes.append(f"{len(seq)} radiopharmaceuticals in the header; the first is used")
    return seq[0] if seq else None


def _administration(item, ds):
    """(administration datetime or None, start time without date)."""
    if item is None:
        return None, ""
    admin = parse_dicom_datetime(item.get("RadiopharmaceuticalStartDateTime", ""), "RadiopharmaceuticalStartDateTime (0018,1078)")
    time_only = str(item.get("RadiopharmaceuticalStartTime", "") or "").strip()
    if admin is not None and time_only:
        clock = parse_dicom_datetime("20000101" + time_only.replace(":", ""), "RadiopharmaceuticalStartTime (0018,1072)")
        if abs((clock.hour * 3600 + clock.minute * 60 + clock.second) - (admin.hour * 3600 + admin.minute * 60 + admin.second)) > 1:
            raise InputError(f"the header's RadiopharmaceuticalStartDateTime ({admin.isoformat(sep=' ')}) and "
                             f"RadiopharmaceuticalStartTime ({time_only}) disagree: give --hours-since-administration")
    return admin, ("" if admin is not None else time_only)


def _radionuclide(item):
    if item is None:
        return "", "", None, None
    code_seq = item.get("RadionuclideCodeSequence") or []
    code = str(code_seq[0].get("CodeValue", "")) if code_seq else ""
    meaning = str(code_seq[0].get("CodeMeaning", "")) if code_seq else ""
    name = meaning or str(item.get("Radionuclide", "") or "")
    return name, code, _float_or_none(item.get("RadionuclideHalfLife")), _float_or_none(item.get("RadionuclideTotalDose"))


def _units(ds):
    """(units, value transform) of a dataset.  The transform (a, b) turns the values read (Rescale
    Slope/Intercept applied) into the unit's values, a v + b; it is not (1, 0) only when the unit comes
    from a Real World Value Mapping (quantitative NM SPECT) with its own slope and intercept."""
    units = str(ds.get("Units", "") or "").strip().upper()
    if units:
        return units, (1.0, 0.0)
    for rwv in ds.get("RealWorldValueMappingSequence") or []:  # quantitative SPECT (NM) often says it here
        for code in rwv.get("MeasurementUnitsCodeSequence") or []:
            if str(code.get("CodeValue", "")).replace(" ", "").lower() != "bq/ml":
                continue
            if "RealWorldValueLUTData" in rwv:
                raise InputError("the header maps its values to Bq/mL with a lookup table (RealWorldValueLUTData), "
                                 "which is not supported; convert the image to Bq/mL first")
            rs, ri = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            slope = float(rwv.get("RealWorldValueSlope", 1) or 1)
            intercept = float(rwv.get("RealWorldValueIntercept", 0) or 0)
            return "BQML", (slope / rs, intercept - ri * slope / rs)
    return "", (1.0, 0.0)


def _slices(heads, tz):
    acq = tuple(_date_time(h.get("AcquisitionDate", ""), h.get("AcquisitionTime", ""), "AcquisitionDate/Time", tz) for h in heads)
    frt = tuple(_float_or_none(h.get("FrameReferenceTime")) for h in heads)
    dur = tuple(_float_or_none(h.get("ActualFrameDuration")) for h in heads)
    dec = tuple(_float_or_none(h.get("DecayFactor")) for h in heads)
    return acq, frt, dur, dec


def header_from_datasets(heads):
    """:class:`ActivityHeader` of a series' datasets (pydicom, in k order)."""
    ds, notes = heads[0], []
    units, transform = _units(ds)
    item = _radiopharmaceutical(ds, notes)
    admin, time_only = _administration(item, ds)
    tz = str(ds.get("TimezoneOffsetFromUTC", "") or "").strip()
    series_dt = _date_time(ds.get("SeriesDate", ""), ds.get("SeriesTime", ""), "SeriesDate/SeriesTime", tz)
    acq, frt, dur, dec = _slices(heads, tz)
    name, code, half_life, total = _radionuclide(item)
    dc_dt = parse_dicom_datetime(ds.get((0x0018, 0x9701)).value if (0x0018, 0x9701) in ds else "", "DecayCorrectionDateTime (0018,9701)")
    return ActivityHeader(
        modality=str(ds.get("Modality", "")), units=units, value_transform=transform, decay_correction=str(ds.get("DecayCorrection", "") or "").strip().upper(),
        series_datetime=series_dt, acquisition_datetimes=acq, frame_reference_ms=frt, frame_duration_ms=dur,
        decay_factors=dec, decay_correction_datetime=dc_dt, administration_datetime=admin, administration_time_only=time_only,
        radionuclide=name, radionuclide_code=code, half_life_s=half_life, total_dose_bq=total, notes=tuple(notes),
    )


def read_activity_header(files):
    """:class:`ActivityHeader` of the DICOM files of one series, given in slice (k) order."""
    from .dicomseries import require_pydicom

    pydicom = require_pydicom("reading the activity image's DICOM header (units, timing)")
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if len(heads) == 1 and int(heads[0].get("NumberOfFrames", 1) or 1) > 1:
        heads = heads * int(heads[0].NumberOfFrames)  # one multi-frame file: the same timing for every frame
    return header_from_datasets(heads)


# -- timing -----------------------------------------------------------------------------------
def _same_zone(a, b, notes):
    """a and b made comparable: an offset on one side only is dropped (with a remark)."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        notes.append("one of the header's times carries a UTC offset and the other none: both read as local times")
        return a.replace(tzinfo=None), b.replace(tzinfo=None)
    return a, b


def _administration_or_refuse(header):
    if header.administration_datetime is not None:
        return header.administration_datetime
    if header.administration_time_only:
        raise InputError(
            f"the header gives the administration time ({header.administration_time_only}, RadiopharmaceuticalStartTime) "
            "but not its date (RadiopharmaceuticalStartDateTime (0018,1078)); a Y-90 scan may be a day or more later: "
            "give --hours-since-administration (or --decay-corrected)")
    raise InputError("the header does not say when the activity was administered (RadiopharmaceuticalStartDateTime "
                     "(0018,1078) missing): give --hours-since-administration (or --decay-corrected)")


def _start_reference(header, notes):
    """(label, datetime) of the acquisition start that START decay correction refers to."""
    if header.decay_correction_datetime is not None:
        return "decay-correction time (0018,9701)", header.decay_correction_datetime
    acq = [t for t in header.acquisition_datetimes if t is not None]
    first_acq = min(acq) if acq else None
    if header.series_datetime is not None and (first_acq is None or header.series_datetime <= first_acq):
        return "series start", header.series_datetime
    if first_acq is not None:
        if header.series_datetime is not None:
            notes.append(f"SeriesTime ({header.series_datetime.time()}) is later than the first AcquisitionTime "
                         f"({first_acq.time()}): the acquisition time is used (QIBA SUV rule)")
        return "acquisition start", first_acq
    raise InputError("DecayCorrection START but neither SeriesDate/SeriesTime nor AcquisitionDate/AcquisitionTime is "
                     "in the header: give --hours-since-administration")


def _slice_times(header):
    """Per-slice times of the values of an image without decay correction (NONE)."""
    out = []
    for acq, frt, dur in zip(header.acquisition_datetimes, header.frame_reference_ms, header.frame_duration_ms):
        if frt is not None and header.series_datetime is not None:
            out.append(header.series_datetime + _dt.timedelta(milliseconds=frt))
        elif acq is not None:
            out.append(acq + _dt.timedelta(milliseconds=(dur or 0.0) / 2.0))
        else:
            raise InputError("DecayCorrection NONE but a slice has neither FrameReferenceTime (0054,1300) nor "
                             "AcquisitionDate/AcquisitionTime: give --hours-since-administration")
    return out


def _none_reference(header, half_life_h, notes):
    """(label, reference datetime, per-slice factors or None) for DecayCorrection NONE."""
    if any(f is not None and abs(f - 1.0) > 1e-4 for f in header.decay_factors):
        raise InputError("the header says DecayCorrection NONE but gives DecayFactor values other than 1: conflicting "
                         "header; give --hours-since-administration or --decay-corrected")
    times = _slice_times(header)
    t0 = min(times)
    offsets_h = np.array([(t - t0).total_seconds() / 3600.0 for t in times])
    if offsets_h.max() * 3600.0 < 1.0:
        return "acquisition (no decay correction)", t0, None
    notes.append(f"slices acquired over {offsets_h.max() * 60:.1f} min (no decay correction in the image): each is "
                 "decay-corrected to the first")
    return "first acquisition (no decay correction)", t0, np.power(2.0, offsets_h / half_life_h)


def _check_decay_factors(header, reference_dt, half_life_h, notes):
    """Refuse DecayFactor values that contradict the header's own times (by more than 2 %)."""
    if header.series_datetime is None:
        return
    for k, (factor, frt) in enumerate(zip(header.decay_factors, header.frame_reference_ms)):
        if factor is None or frt is None:
            continue
        t, ref = _same_zone(header.series_datetime + _dt.timedelta(milliseconds=frt), reference_dt, notes)
        expected = 2.0 ** (((t - ref).total_seconds() / 3600.0) / half_life_h)
        if abs(factor / expected - 1.0) > DECAY_FACTOR_TOLERANCE:
            raise InputError(f"slice {k}: the header's DecayFactor {factor:.6g} contradicts its own times (expected "
                             f"{expected:.6g} for decay correction to {reference_dt.isoformat(sep=' ')}); conflicting "
                             "header: give --hours-since-administration or --decay-corrected")


def _check_decay_correction_value(dc):
    if not dc:
        raise InputError("the header has no DecayCorrection (0054,1102): it cannot say when its values hold; give "
                         "--hours-since-administration or --decay-corrected")
    if dc not in ("START", "ADMIN", "NONE"):
        raise InputError(f"the header's DecayCorrection is {dc!r}; START, ADMIN or NONE was expected")


def _has_scan_time(header):
    return header.series_datetime is not None or any(t is not None for t in header.acquisition_datetimes)


def activity_timing(header, half_life_h):
    """:class:`ActivityTiming` from the header (see the module docstring).

    With ADMIN the values are already at the administration (factor 1); the hours from the
    administration to the scan are still reported.

    Raises
    ------
    InputError : a needed attribute is missing, two attributes conflict, or the image's reference
        time is before the administration.
    """
    notes = list(header.notes)
    admin = _administration_or_refuse(header)
    dc = header.decay_correction
    _check_decay_correction_value(dc)
    factors = None
    if dc == "NONE":
        label, scan, factors = _none_reference(header, half_life_h, notes)
        ref = scan
    elif dc == "ADMIN" and not _has_scan_time(header):
        notes.append("the header gives no series or acquisition time: the time from administration to scan is unknown")
        label, scan, ref = "administration", admin, admin
    else:
        label, scan = _start_reference(header, notes)
        ref = admin if dc == "ADMIN" else scan
        label = "administration" if dc == "ADMIN" else label
        _check_decay_factors(header, ref, half_life_h, notes)
    admin_c, scan_c = _same_zone(admin, scan, notes)
    hours = (scan_c - admin_c).total_seconds() / 3600.0
    if hours < 0:
        raise InputError(f"the image's acquisition ({scan.isoformat(sep=' ')}) is before the administration "
                         f"({admin.isoformat(sep=' ')}) in the header: check the dates, or give --hours-since-administration")
    if hours > LATE_SCAN_H:
        notes.append(f"the image was acquired {hours / 24:.1f} days after the administration")
    return ActivityTiming(hours, dc == "ADMIN", label, ref, admin, factors, tuple(notes))
