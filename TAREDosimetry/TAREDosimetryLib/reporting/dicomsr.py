"""Per-segment dose metrics as a DICOM Structured Report (``metrics_sr.dcm``), with highdicom.

A Comprehensive 3D SR holding a TID 1500 Measurement Report: for every segment of the DICOM SEG one
"volumetric ROI measurements" group (TID 1411) that refers to that segment, with

* Volume (SCT 118565006, mL) and Mass (SCT 4147007, g);
* Absorbed Dose (DCM 128513, Gy) with the derivations Mean, Median, Minimum and Maximum, so that a
  PACS viewer shows the mean dose of each structure;
* D70, D90, V100Gy, EUD and BED, which have no standard code, under the private coding scheme
  ``99TAREDOS`` (the value names what it is: "D70: minimum dose to the hottest 70 % of the volume");
* one qualitative evaluation per rule judged on the segment: the rule, and PASS, FAIL or N/A.

Entries the engine adds (derived normal liver, lungs as a whole) have no segment in the SEG and are
left out; metrics.json and metrics.csv hold them.
"""

import math

from ..imaging.dicomseg import require_highdicom
from ..version import __version__
from .dicomref import MANUFACTURER, new_uid, save_dataset

__all__ = ["write_metrics_sr", "PRIVATE_SCHEME", "sr_measurements"]

PRIVATE_SCHEME = "99TAREDOS"
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


def _evaluations(hd, result, segment_name):
    out = []
    for ev in result.evaluations:
        if ev.segment_name != segment_name:
            continue
        name = hd.sr.CodedConcept("RULE", PRIVATE_SCHEME, f"{ev.rule.label} {ev.rule.comparison} {ev.rule.threshold:g} {ev.rule.unit}"[:64])
        value = hd.sr.CodedConcept(ev.status.replace("/", ""), PRIVATE_SCHEME, ev.status)
        out.append(hd.sr.QualitativeEvaluation(name=name, value=value))
    return out


def _groups(hd, result, seg_ds):
    from pydicom.sr.codedict import codes

    numbers = {str(d.SegmentLabel): int(d.SegmentNumber) for d in seg_ds.SegmentSequence}
    groups = []
    for s in result.segments:
        if s.name[:64] not in numbers:
            continue
        ref = hd.sr.ReferencedSegment(sop_class_uid=seg_ds.SOPClassUID, sop_instance_uid=seg_ds.SOPInstanceUID,
                                      segment_number=numbers[s.name[:64]],
                                      source_series=hd.sr.SourceSeriesForSegmentation(seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid(), identifier=s.name[:64]), referenced_segment=ref,
            finding_type=codes.SCT.Neoplasm if s.role == "tumor" else codes.SCT.AnatomicalStructure,
            measurements=sr_measurements(hd, s.metrics), qualitative_evaluations=_evaluations(hd, result, s.name) or None))
    return groups


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
