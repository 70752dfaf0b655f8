"""Reading the files of one case: activity image, segmentation, CT, with what their DICOM headers say.

:func:`read_case_inputs` is what ``run`` and ``batch`` use: it chooses the DICOM series (modality,
``--series``), reads the activity image's units, radionuclide and timing from its header
(:mod:`.dicomactivity`), rasterises RT Structure Sets onto the CT (or reads DICOM SEG), and returns
the parameters the headers complete, with a record of every decision for metrics.json.
"""

from dataclasses import dataclass, field

from ..errors import InputError

from .dicomactivity import activity_values, header_activity_params
from .dicomimage import IMAGE_MODALITIES
from .dicomtiming import read_activity_header
from .images import read_image_with_source
from .provenance import input_record
from .segmentation_io import read_segmentation_with_source

__all__ = ["DicomOptions", "CaseInputs", "read_case_inputs"]


@dataclass(frozen=True)
class DicomOptions:
    """The user's choices about DICOM inputs.

    series_uids : SeriesInstanceUIDs to take from folders holding several series (``--series``).
    allow_other_radionuclide : compute a PET whose header names another radionuclide than Y-90.
    timing_overridden : the user gave --hours-since-administration or --decay-corrected (these win
        over the header).
    quantitative_explicit : the user said --quantitative (Bq/mL even where the header has no Units).
    """

    series_uids: tuple = ()
    allow_other_radionuclide: bool = False
    timing_overridden: bool = False
    quantitative_explicit: bool = False


@dataclass
class CaseInputs:
    """The read inputs of one case, the parameters completed from headers, and the record."""

    activity: object
    segmentation: object
    ct: object
    params: object
    info: dict
    warnings: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)


def _say(progress, message):
    if progress:
        progress(0.0, message)


def _activity_from_header(activity, source, params, modality, dicom, progress):
    """(activity, params, record, warnings) after the activity image's DICOM header is applied."""
    _say(progress, f"reading the DICOM header of series {source.series.series_uid}")
    header = read_activity_header(source.files)
    params, record, warnings, factors = header_activity_params(
        params, header, modality=modality, timing_overridden=dicom.timing_overridden,
        quantitative_explicit=dicom.quantitative_explicit, allow_other_radionuclide=dicom.allow_other_radionuclide)
    record.update(source=source.to_dict())
    values = activity_values(activity.array, header, factors, params.calibration)
    if values is not activity.array:
        activity = activity.with_array(values)
    if params.calibration == "absolute":
        timing = record.get("header_timing")
        if record["timing_source"] == "DICOM header":
            _say(progress, f"timing from the DICOM header: {timing['hours_since_administration']:.4f} h since administration "
                           f"({timing['reference']} {timing['reference_datetime']}, administered {timing['administration_datetime']}"
                           f"{'; values decay-corrected to the administration' if timing['image_decay_corrected'] else ''})")
        else:
            _say(progress, "timing from the command line (the DICOM header's timing is not used)")
    for w in warnings:
        _say(progress, f"note: {w}")
    return activity, params, record, warnings


def _check_series_used(series_uids, sources, series=()):
    """Refuse --series UIDs that none of the inputs took (a typo must not go unnoticed)."""
    used = {s.series.series_uid for s in sources if s is not None} | {s.series_uid for s in series if s is not None}
    unused = [u for u in series_uids if u not in used]
    if unused:
        raise InputError(f"--series {', '.join(unused)}: matches no series of the inputs (used: "
                         f"{', '.join(sorted(used)) or 'none'}); 'tare-dosimetry dicom-ls FOLDER' lists a folder's series")


def read_case_inputs(image, segmentation, *, ct=None, labels=None, modality="spect", params, dicom=None, progress=None,
                     reference=None):
    """Read a case's files (see the module docstring).

    Parameters
    ----------
    image : path of the activity image (file or DICOM folder/file), or None (``evaluate``: a dose
        map is the image, given as ``reference``).
    segmentation : path (.seg.nrrd, label map, mask folder, DICOM SEG or RTSTRUCT).
    ct : path or None.  labels : label names for a label map.
    modality : 'spect' or 'pet'.
    params : DosimetryParams before the headers complete it.
    dicom : :class:`DicomOptions`.
    progress : callable(fraction, message) or None.
    reference : Volume on whose grid an RT Structure Set is drawn when there is no CT and no
        activity image.

    Returns
    -------
    :class:`CaseInputs`
    """
    dicom = dicom or DicomOptions()
    activity, source, record, warnings = None, None, None, []
    if image is not None:
        what = "PET image" if modality == "pet" else "SPECT image"
        _say(progress, f"reading {what} {image}")
        activity, source = read_image_with_source(image, what, modalities=IMAGE_MODALITIES[modality], series_uids=dicom.series_uids)
        warnings += list(source.notes) if source else []
        if source is not None:
            activity, params, record, more = _activity_from_header(activity, source, params, modality, dicom, progress)
            warnings += more
    ct_vol, ct_source = None, None
    if ct:
        _say(progress, f"reading CT {ct}")
        ct_vol, ct_source = read_image_with_source(ct, "CT image", modalities=IMAGE_MODALITIES["ct"], series_uids=dicom.series_uids)
    _say(progress, f"reading segmentation {segmentation}")
    seg, seg_series = read_segmentation_with_source(
        segmentation, label_names=labels, reference=ct_vol.grid if ct_vol is not None else None,
        reference_for_uid=ct_source.series.frame_of_reference_uid if ct_source is not None else "",
        series_uids=dicom.series_uids)
    _check_series_used(dicom.series_uids, [source, ct_source], [seg_series])
    info = input_record(image, segmentation, ct=ct, labels=labels, modality=modality if image is not None else None,
                        activity_unit=activity.unit if activity is not None else "",
                        label_names=getattr(seg, "label_names", None),
                        series_files={"activity_image": source.files if source is not None else None,
                                      "ct": ct_source.files if ct_source is not None else None,
                                      "segmentation": seg_series.files if seg_series is not None else None})
    if any(x is not None for x in (source, ct_source, seg_series)):
        # what decided the DICOM reading, so that a rerun reads the same series the same way
        info["dicom_options"] = {"series_uids": list(dicom.series_uids), "allow_other_radionuclide": dicom.allow_other_radionuclide,
                                 "timing_overridden": dicom.timing_overridden, "quantitative_explicit": dicom.quantitative_explicit}
    if record is not None:
        info["activity_dicom"] = record
        info["timing_source"] = record.get("timing_source")
    if ct_source is not None:
        info["ct_dicom"] = ct_source.to_dict()
    if seg_series is not None:
        info["segmentation_dicom"] = {"series_instance_uid": seg_series.series_uid, "sop_class": seg_series.sop_class_name,
                                      "frame_of_reference_uid": seg_series.frame_of_reference_uid}
    return CaseInputs(activity, seg, ct_vol, params, info, warnings, {"activity": source, "ct": ct_source})
