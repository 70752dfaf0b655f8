"""Per-segment dose metrics as a DICOM Structured Report (``metrics_sr.dcm``), with highdicom.

A Comprehensive 3D SR holding a TID 1500 Measurement Report with one measurement group per entry
of the result, so that a PACS viewer shows what metrics.json holds:

* every segment of the DICOM SEG: a "volumetric ROI measurements" group (TID 1411) that refers
  to that segment;
* every entry the engine adds (the whole liver and normal liver it derives, the lungs of the LSF
  model): a "measurements" group (TID 1501) with the entry's name as tracking identifier and no
  SEG reference (there is no segment to refer to);
* the case itself: a TID 1501 group tracked as :data:`CASE_TRACKING_ID` holding the overall status
  (PASS, FAIL or INCOMPLETE, with every reason the case is incomplete as TEXT) and the rules that
  were judged on no entry (N/A: a condition that does not hold, a clinical input or a segment
  missing).

Each group holds

* Volume (SCT 118565006, mL) and Mass (SCT 4147007, g);
* Absorbed Dose (DCM 128513, Gy) with the derivations Mean, Median, Minimum and Maximum, so that a
  PACS viewer shows the mean dose of each structure;
* D70, D90, V100Gy, EUD and BED, which have no standard code, under the private coding scheme
  ``99TAREDOS`` (the value names what it is: "D70: minimum dose to the hottest 70 % of the volume");
* one qualitative evaluation per rule judged on the entry: the rule, and PASS, FAIL or N/A, with
  TEXT children giving the rule in full, the measured value and, for N/A, the reason.
"""

import math

from ..imaging.dicomseg import require_highdicom
from ..version import __version__
from .dicomref import MANUFACTURER, new_uid, save_dataset

__all__ = ["write_metrics_sr", "PRIVATE_SCHEME", "CASE_TRACKING_ID", "sr_measurements"]

PRIVATE_SCHEME = "99TAREDOS"
#: Tracking identifier of the group holding the overall status and the rules judged on no entry.
CASE_TRACKING_ID = "case"
#: TEXT children of a qualitative evaluation (private codes): the rule in full, the value measured, the reason.
_TEXT_CODES = {"rule": ("RULETEXT", "Rule"), "measured": ("MEASURED", "Measured value"), "reason": ("REASON", "Reason"),
               "incomplete": ("INCOMPLETE", "Reason the case is incomplete")}
_PRIVATE = {
    "d70_gy": ("D70", "D70: minimum dose to the hottest 70 % of the volume"),
    "d90_gy": ("D90", "D90: minimum dose to the hottest 90 % of the volume"),
    "v100_pct": ("V100GY", "V100Gy: percentage of the volume receiving at least 100 Gy"),
    "eud_gy": ("EUD", "Equivalent uniform dose"),
    "bed_gy": ("BED", "Biologically effective dose (mean)"),
}


def _measurement(hd, name, value, unit, derivation=None):
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation)


def sr_measurements(hd, metrics):
    """The highdicom Measurements of one segment's metrics (missing or non-finite values left out)."""
    from pydicom.sr.codedict import codes

    def ok(key):
        v = metrics.get(key)
        return v is not None and isinstance(v, (int, float)) and math.isfinite(v)

    gy, ml, g, pct = (hd.sr.CodedConcept(u, "UCUM", m) for u, m in (("Gy", "Gy"), ("ml", "mL"), ("g", "g"), ("%", "%")))
    out = []
    if ok("volume_ml"):
        out.append(_measurement(hd, codes.SCT.Volume, metrics["volume_ml"], ml))
    if ok("mass_g"):
        out.append(_measurement(hd, codes.SCT.Mass, metrics["mass_g"], g))
    for key, derivation in (("mean_gy", codes.SCT.Mean), ("median_gy", codes.SCT.Median), ("min_gy", codes.SCT.Minimum),
                            ("max_gy", codes.SCT.Maximum)):
        if ok(key):
            out.append(_measurement(hd, codes.DCM.AbsorbedDose, metrics[key], gy, derivation))
    for key, (value, meaning) in _PRIVATE.items():
        if ok(key):
            out.append(_measurement(hd, hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning), metrics[key],
                                    pct if key.endswith("_pct") else gy))
    return out


def _text_items(hd, pairs):
    """TEXT content items (relationship HAS PROPERTIES) from (key of :data:`_TEXT_CODES`, text) pairs; empty texts left out."""
    out = []
    for key, text in pairs:
        if text:
            value, meaning = _TEXT_CODES[key]
            out.append(hd.sr.TextContentItem(name=hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning), value=str(text)[:1024],
                                             relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES))
    return out


def _qualitative(hd, name, status, texts):
    """A QualitativeEvaluation ``name`` = ``status`` ('PASS', 'FAIL', 'N/A', 'INCOMPLETE') with TEXT children."""
    item = hd.sr.QualitativeEvaluation(name=name, value=hd.sr.CodedConcept(status.replace("/", ""), PRIVATE_SCHEME, status))
    children = _text_items(hd, texts)
    if children:  # a QualitativeEvaluation is a template holding one CODE content item: the children go there
        item[0].ContentSequence = hd.sr.ContentSequence(children, is_root=False)
    return item


def _rule_evaluation(hd, ev):
    r = ev.rule
    rule_text = f"{r.label or r.text}: {r.metric} {r.comparison} {r.threshold:g} {r.unit}".strip()
    measured = f"{ev.measured:.6g} {r.unit}".strip() if isinstance(ev.measured, (int, float)) and math.isfinite(ev.measured) else ""
    name = hd.sr.CodedConcept("RULE", PRIVATE_SCHEME, rule_text[:64])
    return _qualitative(hd, name, ev.status, (("rule", rule_text), ("measured", measured), ("reason", ev.reason)))


def _evaluations(hd, result, segment_name):
    return [_rule_evaluation(hd, ev) for ev in result.evaluations if ev.segment_name == segment_name]


def _case_group(hd, result):
    """The TID 1501 group of the case: overall status with its reasons, and the rules judged on no entry."""
    status = _qualitative(hd, hd.sr.CodedConcept("OVERALL", PRIVATE_SCHEME, "Overall status"), result.overall_status,
                          [("incomplete", reason) for reason in result.incomplete_reasons])
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid(), identifier=CASE_TRACKING_ID),
        qualitative_evaluations=[status] + _evaluations(hd, result, ""))


def _groups(hd, result, seg_ds):
    from pydicom.sr.codedict import codes

    numbers = {str(d.SegmentLabel): int(d.SegmentNumber) for d in seg_ds.SegmentSequence}
    groups = []
    for s in result.segments:
        common = dict(tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid(), identifier=s.name[:64]),
                      finding_type=codes.SCT.Neoplasm if s.role == "tumor" else codes.SCT.AnatomicalStructure,
                      measurements=sr_measurements(hd, s.metrics) or None, qualitative_evaluations=_evaluations(hd, result, s.name) or None)
        if s.name[:64] not in numbers:  # an entry the engine derived: no segment of the SEG to refer to
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))
            continue
        ref = hd.sr.ReferencedSegment(sop_class_uid=seg_ds.SOPClassUID, sop_instance_uid=seg_ds.SOPInstanceUID,
                                      segment_number=numbers[s.name[:64]],
                                      source_series=hd.sr.SourceSeriesForSegmentation(seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **common))
    return groups + [_case_group(hd, result)]


def write_metrics_sr(result, seg_ds, path, ctx):
    """Write the TID 1500 measurement report of ``result`` (segments of ``seg_ds``); returns the dataset."""
    hd = require_highdicom("writing a DICOM SR")
    from pydicom.sr.codedict import codes

    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=new_uid(), name="TAREDosimetry", manufacturer_name=MANUFACTURER, model_name=f"TAREDosimetry {__version__}"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=_groups(hd, result, seg_ds))
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg_ds], content=report[0], series_instance_uid=new_uid(), series_number=ctx.next_series_number(),
        sop_instance_uid=new_uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True, is_final=False,
        is_verified=False, series_description=f"TARE dose metrics ({result.overall_status})"[:64])
    save_dataset(sr, path)
    return sr
