"""Overall status PASS / FAIL / INCOMPLETE: no path (engine, CLI, batch, Slicer tables, report)
says PASS while a rule was not evaluated or an input it needs was defaulted."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import box_case
from TAREDosimetryLib import Volume, mrmlconvert as mc, run_case
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.evaluation.rules import Rule, RuleEvaluation, RuleSet, evaluate_rules
from TAREDosimetryLib.evaluation.status import STATUS_COLORS, incomplete_reasons, overall_status
from TAREDosimetryLib.imaging.images import write_image
from TAREDosimetryLib.params import DosimetryParams


def _ev(status, optional=False, required=True, reason=""):
    return RuleEvaluation(Rule("tumor", "mean_gy", ">", 79.5, optional=optional), "T" if status != "N/A" else "",
                          50.0, status, reason, required)


@pytest.mark.parametrize(
    "statuses, inputs, expected",
    [
        (["PASS", "PASS"], [], "PASS"),
        (["PASS", "FAIL"], [], "FAIL"),
        (["FAIL", "N/A"], [], "FAIL"),  # a failure wins; the N/A is still listed
        (["PASS", "N/A"], [], "INCOMPLETE"),
        (["PASS"], ["lung shunt fraction not given"], "INCOMPLETE"),
        ([], [], "INCOMPLETE"),  # nothing evaluated is not a pass
    ],
)
def test_overall_status(statuses, inputs, expected):
    evs = [_ev(s, reason="no segment with role tumour") for s in statuses]
    assert overall_status(evs, inputs) == expected
    assert bool(incomplete_reasons(evs, inputs)) == ("N/A" in statuses or bool(inputs) or not statuses)


def test_optional_and_not_applicable_rules_leave_the_case_complete():
    assert overall_status([_ev("PASS"), _ev("N/A", optional=True)]) == "PASS"
    assert overall_status([_ev("PASS"), _ev("N/A", required=False, reason="does not apply: bilirubin 0.8 mg/dL")]) == "PASS"
    # ...but a case where no rule applies at all is not a PASS
    assert overall_status([_ev("N/A", required=False)]) == "INCOMPLETE"


def test_incomplete_has_its_own_colour():
    assert len({STATUS_COLORS[s] for s in ("PASS", "FAIL", "INCOMPLETE", "N/A")}) == 4


def test_no_lung_segment_with_image_lung_dose_is_incomplete_not_pass():
    # Absolute calibration, lung dose from the image, no lung segment: the lung rules are N/A. This
    # used to read "PASS: all 1 rule evaluations passed".
    act, seg = box_case()
    conc = act.with_array(act.array * np.float32(3e5))  # plausible Bq/mL
    r = run_case(conc, seg, params=DosimetryParams(calibration="absolute", hours_since_administration=2.0),
                 rules={"name": "t", "rules": [
                     {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1.0},
                     {"role": "lung", "metric": "mean_gy", "comparison": "<", "threshold": 30.0}]})
    assert r.overall_status == "INCOMPLETE"
    assert any("lung mean_gy < 30 Gy" in x and "no segment with role lung" in x for x in r.incomplete_reasons), r.incomplete_reasons
    assert r.summary_line().startswith("INCOMPLETE")
    d = r.to_dict()
    assert d["overall_status"] == "INCOMPLETE" and d["incomplete_reasons"] == r.incomplete_reasons
    na = [e for e in d["evaluations"] if e["status"] == "N/A"]
    assert na and na[0]["counts_as_incomplete"] and na[0]["reason"]


def test_optional_rule_in_a_rule_file_does_not_make_the_case_incomplete():
    act, seg = box_case()
    rules = {"name": "t", "rules": [
        {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1.0},
        {"role": "perfused", "metric": "mean_gy", "comparison": ">", "threshold": 1.0, "optional": True}]}
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0, residual_fraction=0.0),
                 rules=rules)
    assert r.overall_status == "PASS" and r.incomplete_reasons == []
    with pytest.raises(Exception, match="optional must be true or false"):
        RuleSet.from_dict({"rules": [dict(rules["rules"][1], optional="sometimes")]})


BILIRUBIN_RULES = {"name": "bilirubin test", "rules": [
    {"role": "liver", "metric": "mean_gy", "comparison": ">", "threshold": 1.0},
    {"role": "normal_liver", "metric": "mean_gy", "comparison": "<", "threshold": 1e6,
     "when": [{"input": "bilirubin_mg_dl", "op": ">", "value": 1.1}]}]}


def _files(tmp_path):
    (tmp_path / "rules.json").write_text(json.dumps(BILIRUBIN_RULES))
    act, seg = box_case()
    spect = str(tmp_path / "spect.nrrd")
    write_image(act, spect)
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    labels = str(tmp_path / "labels.nii.gz")
    write_image(Volume(lab, grid=seg.grid), labels)
    return spect, labels


def test_cli_writes_incomplete_status_and_reasons(tmp_path, capsys):
    spect, labels = _files(tmp_path)
    out = tmp_path / "out"
    code = main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--administered-activity-gbq",
                 "1", "--lung-shunt-fraction", "0", "--thresholds", str(tmp_path / "rules.json"), "--out", str(out), "--quiet",
                 "--no-report"])
    assert code == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("INCOMPLETE") and "bilirubin not given" in first
    m = json.loads((out / "metrics.json").read_text())
    assert m["overall_status"] == "INCOMPLETE"
    assert any("bilirubin not given" in x for x in m["incomplete_reasons"])
    assert m["clinical_inputs"]["bilirubin_mg_dl"] is None


def test_batch_summary_carries_the_status_and_its_reasons(tmp_path):
    spect, labels = _files(tmp_path)
    manifest = tmp_path / "cases.csv"
    sp, lb = os.path.basename(spect), os.path.basename(labels)
    manifest.write_text(
        "case_id,spect,segmentation,labels,administered_activity_gbq,lung_shunt_fraction,residual_fraction,thresholds,microsphere,"
        "bilirubin_mg_dl,treatment_approach\n"
        f'a,{sp},{lb},"1=liver,2=tumour",1.0,0,0,rules.json,glass,,unilobar\n'
        f'b,{sp},{lb},"1=liver,2=tumour",1.0,0,0,rules.json,glass,0.8,unilobar\n'
    )
    out = tmp_path / "batch"
    assert main(["batch", "--manifest", str(manifest), "--out", str(out), "--quiet", "--no-report"]) == 0
    with open(out / "batch_summary.csv") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert rows["a"]["overall"] == "INCOMPLETE" and "bilirubin not given" in rows["a"]["incomplete_reasons"]
    assert rows["b"]["overall"] == "PASS" and rows["b"]["incomplete_reasons"] == ""
    m = json.loads((out / "b" / "metrics.json").read_text())
    assert m["clinical_inputs"] == {"microsphere": "glass", "indication": None, "treatment_approach": "unilobar",
                                    "bilirubin_mg_dl": 0.8, "hepatic_reserve_pct": None}


def test_slicer_tables_and_panel_line_show_incomplete():
    # The Slicer logic shows mc.status_lines(...) (the report banner's words) and the status / evaluation tables.
    act, seg = box_case()
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0), rules="hcc-resin")
    assert r.overall_status == "INCOMPLETE"
    assert mc.status_lines(r)[0].startswith("INCOMPLETE: ")
    status = dict(zip(*[c[2] for c in mc.case_status_columns(r)]))
    assert status["overall status"] == "INCOMPLETE"
    reasons = [v for k, v in zip(*[c[2] for c in mc.case_status_columns(r)]) if k.startswith("incomplete")]
    assert reasons == r.incomplete_reasons
    cols = {n: v for n, _, v in mc.evaluation_columns(r.evaluations)}
    assert any("no segment with role perfused normal liver" in x for x in cols["reason"])


def test_report_banner_is_amber_incomplete_with_its_reasons(tmp_path):
    pytest.importorskip("matplotlib")
    from TAREDosimetryLib.reporting.html import write_report_html

    act, seg = box_case()
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0), rules="hcc-resin")
    path = write_report_html(r, str(tmp_path / "r.html"), segmentation=seg)
    text = open(path, encoding="utf-8").read()
    fg, bg = STATUS_COLORS["INCOMPLETE"]
    assert f"background:{bg};color:{fg}" in text and "<b>INCOMPLETE</b>" in text
    assert "the case is INCOMPLETE" in text and "no segment with role perfused normal liver" in text


def test_evaluate_rules_gives_a_reason_for_every_na():
    ev = evaluate_rules(RuleSet("x", (Rule("lung", "mean_gy", "<", 30), Rule(segment="T9", metric="mean_gy"))), [])
    assert [e.reason for e in ev] == ["no segment with role lung (segment the lungs, or use the LSF lung model)",
                                      "segment 'T9' was not measured"]
