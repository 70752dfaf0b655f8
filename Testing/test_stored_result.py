"""A result kept as a record (what the Slicer module stores in the scene) and rebuilt from it:
the files written from the rebuilt result equal those of the original run."""

import json
import math
import os

import numpy as np
import pytest

from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.evaluation.dvh import DVH
from TAREDosimetryLib.evaluation.stored import CurveDVH, result_from_record, result_record
from TAREDosimetryLib.pipeline import run_case
from TAREDosimetryLib.reporting.outputs import write_outputs


@pytest.fixture(scope="module")
def phantom_result(analytic_phantom):
    case = analytic_phantom
    return run_case(case.activity, case.segmentation, params=case.params.replace(density_from_ct=False), ct=case.ct,
                    rules="hcc-glass", inputs={"activity": "phantom SPECT"})


def _round_trip(result):
    return json.loads(json.dumps(result_record(result, run_id="run-1"), allow_nan=False))


def _read(folder, name):
    with open(os.path.join(folder, name), "rb") as fh:
        return fh.read()


def test_record_is_plain_json_with_metrics_and_curves(phantom_result):
    record = _round_trip(phantom_result)
    assert record["format"] == "TAREDosimetry result record" and record["run_id"] == "run-1"
    assert record["metrics"]["overall_status"] == phantom_result.overall_status
    names = {c["name"] for c in record["dvh"]}
    assert names == {s.name for s in phantom_result.segments if s.dvh is not None}


def test_files_written_from_the_rebuilt_result_equal_the_originals(phantom_result, tmp_path):
    rebuilt = result_from_record(_round_trip(phantom_result), dose_gy=phantom_result.dose_gy)
    write_outputs(phantom_result, str(tmp_path / "original"), report=False)
    write_outputs(rebuilt, str(tmp_path / "rebuilt"), report=False)
    for name in ("metrics.json", "metrics.csv", "dvh.csv", "dose.nrrd"):
        a, b = _read(tmp_path / "original", name), _read(tmp_path / "rebuilt", name)
        if name == "dose.nrrd":  # header lines may carry no date; the voxels must be equal
            assert a.split(b"\n\n", 1)[-1] == b.split(b"\n\n", 1)[-1]
        else:
            assert a == b, name


def test_rebuilt_result_keeps_status_evaluations_and_summary(phantom_result):
    rebuilt = result_from_record(_round_trip(phantom_result))
    assert rebuilt.overall_status == phantom_result.overall_status
    assert rebuilt.summary_line() == phantom_result.summary_line()
    assert [e.status for e in rebuilt.evaluations] == [e.status for e in phantom_result.evaluations]
    assert [e.rule for e in rebuilt.evaluations] == [e.rule for e in phantom_result.evaluations]
    assert rebuilt.params == phantom_result.params and rebuilt.run_id == "run-1"
    for a, b in zip(rebuilt.segments, phantom_result.segments):
        assert a.name == b.name and a.role == b.role and a.segment_id == b.segment_id
        assert a.metrics["mean_gy"] == b.metrics["mean_gy"]


def test_report_can_be_written_from_the_rebuilt_result(phantom_result, analytic_phantom, tmp_path):
    pytest.importorskip("matplotlib")
    rebuilt = result_from_record(_round_trip(phantom_result), dose_gy=phantom_result.dose_gy)
    write_outputs(rebuilt, str(tmp_path / "r"), report=True, background=analytic_phantom.ct,
                  segmentation=analytic_phantom.segmentation)
    html = _read(tmp_path / "r", "report.html").decode("utf-8")
    assert phantom_result.overall_status in html and "tumour 1" in html


def test_stored_status_wins_over_the_evaluations():
    """The record's status is the one shown (a later engine may compute it differently)."""
    from TAREDosimetryLib.evaluation.rules import load_rules

    rules = load_rules("breast-liver-metastases").to_dict()
    record = {"format": "TAREDosimetry result record", "version": 1, "metrics": {
        "parameters": {"administered_activity_gbq": 1.0}, "rules": rules, "evaluations": [], "segments": [],
        "overall_status": "INCOMPLETE", "incomplete_reasons": ["bilirubin not given"]}, "dvh": []}
    rebuilt = result_from_record(record)
    assert rebuilt.overall_status == "INCOMPLETE" and rebuilt.incomplete_reasons == ["bilirubin not given"]


@pytest.mark.parametrize("record, match", [
    ({"format": "something else", "metrics": {}}, "not a TAREDosimetry result record"),
    ({"format": "TAREDosimetry result record", "version": 99, "metrics": {}}, "version 99"),
    ({"format": "TAREDosimetry result record", "version": 1, "metrics": {"rules": {"rules": "x"}}}, "cannot be read back|rules"),
])
def test_bad_records_are_refused_with_a_message(record, match):
    with pytest.raises(InputError, match=match):
        result_from_record(record)


def test_curve_dvh_reads_like_the_voxel_dvh_at_the_stored_points():
    rng = np.random.default_rng(3)
    dvh = DVH(rng.gamma(4.0, 20.0, 5000), voxel_volume_ml=0.1)
    dose, vol = dvh.curve(0.1)
    curve = CurveDVH(dose, vol, 0.1)
    d2, v2 = curve.curve(0.1)
    assert np.array_equal(d2, dose) and np.array_equal(v2, vol)
    for x in (10.0, 50.0, 90.0):
        assert curve.dose_at_volume_pct(x) == pytest.approx(dvh.dose_at_volume_pct(x), abs=0.11)
    for d in (20.0, 80.0):
        assert curve.volume_pct_at_dose(d) == pytest.approx(dvh.volume_pct_at_dose(d), abs=1e-9)
    assert curve.max_gy <= dvh.max_gy + 0.1 and curve.max_gy >= dvh.max_gy - 0.1
    coarse_d, coarse_v = curve.curve(1.0)
    assert coarse_d[1] == 1.0 and math.isclose(coarse_v[10], dvh.volume_pct_at_dose(10.0), abs_tol=1e-9)


def test_curve_dvh_refuses_curves_that_are_not_dvhs():
    with pytest.raises(InputError, match="must not increase"):
        CurveDVH([0.0, 1.0, 2.0], [50.0, 100.0, 0.0], 1.0)
    with pytest.raises(InputError, match="equal length"):
        CurveDVH([0.0, 1.0], [100.0], 1.0)


def test_an_incomplete_result_keeps_its_reasons_choices_and_warnings(analytic_phantom):
    """Issue 8's status survives the scene: an LSF not given (input reason), a rule whose clinical input
    is not given (N/A, INCOMPLETE), a rule whose condition is false (N/A, complete), partial-volume warnings."""
    from TAREDosimetryLib import mrmlconvert as mc
    from TAREDosimetryLib.evaluation.rules import RuleSet

    case = analytic_phantom
    rules = RuleSet.from_dict({"name": "t", "rules": [
        {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1, "unit": "Gy", "row": "test row 1"},
        {"role": "normal_liver", "metric": "mean_gy", "comparison": "<", "threshold": 1000, "unit": "Gy", "label": "needs bilirubin",
         "when": [{"input": "bilirubin_mg_dl", "op": ">", "value": 1.1}]},
        {"role": "normal_liver", "metric": "mean_gy", "comparison": "<", "threshold": 1000, "unit": "Gy", "label": "false condition",
         "when": [{"input": "hepatic_reserve_pct", "op": "<", "value": 30}]},
    ]})
    params = case.params.replace(density_from_ct=False, lung_shunt_fraction=None, hepatic_reserve_pct=50.0, resolution_fwhm_mm=40.0)
    original = run_case(case.activity, case.segmentation, params=params, ct=case.ct, rules=rules)
    assert original.overall_status == "INCOMPLETE" and original.input_reasons
    assert any(s.warnings for s in original.segments)
    rebuilt = result_from_record(_round_trip(original))
    assert rebuilt.input_reasons == original.input_reasons
    assert rebuilt.incomplete_reasons == original.incomplete_reasons
    assert [(e.reason, e.makes_incomplete, e.warnings, e.rule.row) for e in rebuilt.evaluations] == \
        [(e.reason, e.makes_incomplete, e.warnings, e.rule.row) for e in original.evaluations]
    assert [s.warnings for s in rebuilt.segments] == [s.warnings for s in original.segments]
    assert (rebuilt.explicit_choices, rebuilt.scope_warnings, rebuilt.rules_note) == \
        (original.explicit_choices, original.scope_warnings, original.rules_note)
    # The panel's lines of the reloaded scene say INCOMPLETE and why, never PASS.
    assert mc.status_lines(rebuilt) == mc.status_lines(original)
    lines = mc.status_lines(rebuilt)
    assert lines[0].startswith("INCOMPLETE: ") and all(r in lines[0] for r in original.incomplete_reasons)
    assert any("lung shunt fraction not given" in line for line in lines)
    assert mc.case_status_columns(rebuilt) == mc.case_status_columns(original)
