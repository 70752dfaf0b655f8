"""A case's DICOM exports: which are written, under which names, and the record in metrics.json.

* ``dose.dcm``: the dose map as an RT Dose (:mod:`.rtdose`);
* ``segments.dcm``: the segments as a DICOM SEG (:mod:`.dicomseg`, highdicom);
* ``metrics_sr.dcm``: the per-segment metrics and rule results as a DICOM SR measurement report,
  TID 1500 (:mod:`.dicomsr`, highdicom), referring to the SEG's segments (so the SR comes with the SEG).

All of them share one :class:`~.dicomref.DicomContext`: the patient's study when the inputs were
DICOM, else a standalone study.
"""

from dataclasses import dataclass, field

from ..errors import InputError

__all__ = ["DicomExports", "EXPORT_FILES", "write_dicom_exports"]

EXPORT_FILES = {"rtdose": "dose.dcm", "seg": "segments.dcm", "sr": "metrics_sr.dcm"}


@dataclass(frozen=True)
class DicomExports:
    """Which DICOM objects to write, and what they refer to.

    sources : {'activity': DicomImageSource or None, 'ct': ...} of the case's inputs.
    patient_id, patient_name : for a standalone study (no DICOM input).
    """

    rtdose: bool = False
    seg: bool = False
    sr: bool = False
    sources: dict = field(default=None)
    patient_id: str = None
    patient_name: str = None

    @property
    def wanted(self):
        return [k for k in ("rtdose", "seg", "sr") if getattr(self, k)]


def _derivation(result):
    p = result.params
    return (f"Y-90 absorbed dose, {p.method.upper()}, K = {p.k_gy_kg_per_gbq:g} Gy kg/GBq, {p.calibration} calibration; "
            f"{result.summary.get('density_source', '')}")


def _record(name, ds):
    out = {"file": name, "sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID),
           "series_instance_uid": str(ds.SeriesInstanceUID), "study_instance_uid": str(ds.StudyInstanceUID)}
    if "FrameOfReferenceUID" in ds:
        out["frame_of_reference_uid"] = str(ds.FrameOfReferenceUID)
    if "DoseGridScaling" in ds:
        out["dose_grid_scaling"] = float(ds.DoseGridScaling)
    return out


def write_dicom_exports(result, folder, exports, *, segmentation=None, progress=None):
    """Write the wanted DICOM objects of ``result`` into ``folder``.

    Returns
    -------
    (file names written, record dict for metrics.json)
    """
    import os

    from .dicomref import dicom_context

    if not exports or not exports.wanted:
        return [], {}
    ctx = dicom_context(exports.sources, patient_id=exports.patient_id, patient_name=exports.patient_name)
    names, record = [], {"study": ctx.describe(), "objects": []}
    rtdose_ds = None
    if exports.seg or exports.sr:
        from .dicomseg import needs_rtdose_source

        if needs_rtdose_source(ctx) and not exports.rtdose:
            record["note"] = "dose.dcm written too: the SEG refers to it (no DICOM input image)"
    if exports.rtdose or "note" in record:
        from .rtdose import write_rtdose

        if progress:
            progress(0.5, f"writing {EXPORT_FILES['rtdose']} (RT Dose)")
        rtdose_ds = write_rtdose(result.dose_gy, os.path.join(folder, EXPORT_FILES["rtdose"]), ctx,
                                 derivation=_derivation(result))
        names.append(EXPORT_FILES["rtdose"])
        record["objects"].append(_record(EXPORT_FILES["rtdose"], rtdose_ds))
    seg_ds = None
    if exports.seg or exports.sr:
        if segmentation is None:
            raise InputError("DICOM SEG and SR exports need the case's segmentation")
        from .dicomseg import write_dicom_seg

        if progress:
            progress(0.55, f"writing {EXPORT_FILES['seg']} (DICOM SEG)")
        seg_ds = write_dicom_seg(segmentation, result, os.path.join(folder, EXPORT_FILES["seg"]), ctx, rtdose=rtdose_ds)
        names.append(EXPORT_FILES["seg"])  # also for the SR alone: its measurements refer to the SEG's segments
        record["objects"].append(_record(EXPORT_FILES["seg"], seg_ds))
    if exports.sr:
        from .dicomsr import write_metrics_sr

        if progress:
            progress(0.6, f"writing {EXPORT_FILES['sr']} (DICOM SR, TID 1500)")
        ds = write_metrics_sr(result, seg_ds, os.path.join(folder, EXPORT_FILES["sr"]), ctx)
        names.append(EXPORT_FILES["sr"])
        record["objects"].append(_record(EXPORT_FILES["sr"], ds))
    return names, record
