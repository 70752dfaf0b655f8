"""Issue 9's records, reruns, dry run and wording together with issues 8 and 12: reruns of DICOM
cases, of ``evaluate`` results and of auto-chosen presets reproduce bit for bit; the dry run shows
the whole liver and the conditional rules as the run judges them; every preset rule passes the
rule-unit check; dose.nrrd is read back by ``evaluate`` with its unit; INCOMPLETE and FAIL that
is also incomplete are said in words; the phase comes from a DICOM radiopharmaceutical header."""

import json
import os

import numpy as np
import pytest

from TAREDosimetryLib.cli import main
from TAREDosimetryLib.evaluation.phase import case_phase
from TAREDosimetryLib.evaluation.rules import PRESETS, RuleSet, load_rules, metric_unit
from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.reproduce import compare_records, read_record, rerun_record
from test_resultfolder import case_files

RUN = ["--labels", "1=liver,2=tumour", "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--residual-fraction", "0",
       "--quiet"]


def _run(spect, labels, out, *extra):
    return main(["run", "--spect", spect, "--segmentation", labels, *RUN, "--out", str(out), "--no-report", *extra])


def _reproduced(out):
    record = read_record(out)
    result, _ = rerun_record(record)
    return compare_records(record, json.loads(json.dumps(result.to_dict(), allow_nan=False)))


# -- reruns -------------------------------------------------------------------------------------
def test_rerun_of_a_preset_chosen_from_the_clinical_inputs_keeps_how_it_was_chosen(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    out = tmp_path / "auto"
    assert _run(spect, labels, out, "--indication", "hcc", "--microsphere", "glass") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["rules"]["name"] == "hcc-glass" and m["rules_chosen"].startswith("chosen from the clinical inputs")
    assert m["rules"]["origin"] == {"preset": "hcc-glass"}
    assert _reproduced(out) == []
    capsys.readouterr()
    assert main(["rerun", str(out)]) == 0 and "reproduced" in capsys.readouterr().out


def test_rerun_keeps_guessed_roles_guessed_and_given_roles_given(tmp_path):
    spect, labels = case_files(tmp_path)
    out = tmp_path / "roles"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=lesion X", "--role", "lesion X=tumor",
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--quiet", "--no-report",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["roles_given"] == {"lesion X": "tumor"}
    assert m["inputs"]["roles"]["whole liver (derived)"] == "liver"
    assert _reproduced(out) == []


def test_rerun_of_an_evaluated_dose_map_reads_the_same_map_with_the_same_unit(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    first = tmp_path / "first"
    assert _run(spect, labels, first) == 0
    ev = tmp_path / "ev"  # dose.nrrd says its unit (Gy) in its header: no --dose-unit needed
    assert main(["evaluate", "--dose", str(first / "dose.nrrd"), "--segmentation", labels, "--labels", "1=liver,2=tumour",
                 "--out", str(ev), "--quiet", "--no-report"]) == 0
    m0, m1 = (json.loads((d / "metrics.json").read_text()) for d in (first, ev))
    assert m1["summary"]["dose_map"]["unit"] == "Gy" and m1["summary"]["dose_map"]["unit_source"] == "header"
    assert m1["inputs"]["sha256"]["dose_file"] and m1["computation"]["dose_source"] == "external dose map"
    mean = {s["name"]: s["mean_gy"] for s in m0["segments"]}
    assert {s["name"]: s["mean_gy"] for s in m1["segments"]}["tumour"] == pytest.approx(mean["tumour"], rel=1e-6)
    assert _reproduced(ev) == []
    with open(first / "dose.nrrd", "ab") as fh:  # the map changes: the rerun is refused, naming it
        fh.write(b"\0")
    capsys.readouterr()
    assert main(["rerun", str(ev)]) == 2
    assert "the dose map" in capsys.readouterr().err


def test_dicom_case_records_the_series_read_and_reruns_bit_for_bit(tmp_path, capsys):
    pytest.importorskip("pydicom")
    from dicom_synth import pet_attributes, radiopharmaceutical, write_image_series
    from test_rtstruct_seg import CT, _ct_and_rtstruct

    study, ct, rs = _ct_and_rtstruct(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    os.rename(ct, export / "ct")
    os.rename(rs, export / "rs")
    write_image_series(str(export / "pet"), np.full(CT.shape, 1.6e5), CT.spacing_mm, CT.origin_mm, modality="PT", study=study,
                       series_number=3, attributes=pet_attributes(radiopharm=radiopharmaceutical(start_datetime="20240502143000")))
    args = ["--pet", str(export), "--ct", str(export), "--segmentation", str(export), "--quiet"]
    assert main(["run", *args, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "Liver" in dry and "Tumor 1" in dry and "Post-treatment verification" in dry
    out = tmp_path / "case"
    assert main(["run", *args, "--out", str(out), "--no-report"]) == 0
    inputs = json.loads((out / "metrics.json").read_text())["inputs"]
    assert inputs["timing_source"] == "DICOM header" and inputs["dicom_options"]["timing_overridden"] is False
    assert set(inputs["sha256_series"]) == {"activity_image", "ct", "segmentation"}
    assert inputs["sha256"]["activity_image"] == inputs["sha256"]["segmentation"]  # one folder, hashed whole
    capsys.readouterr()
    assert main(["rerun", str(out)]) == 0 and "reproduced" in capsys.readouterr().out


# -- dry run --------------------------------------------------------------------------------------
def test_dry_run_shows_the_whole_liver_and_the_conditional_rules_as_the_run_judges_them(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    base = ["run", "--spect", spect, "--segmentation", labels, *RUN, "--thresholds", "hcc-glass", "--dry-run"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "whole liver (derived)" in out and "union of liver, tumour" in out
    assert "normal liver (derived)" in out and "judged as part of the whole liver" in out
    assert "when bilirubin > 1.1 mg/dL" in out and "N/A: bilirubin not given" in out
    assert main(base + ["--bilirubin-mg-dl", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "not applied (does not apply: bilirubin 0.8 mg/dL" in out


def test_dry_run_stops_where_the_run_would_for_a_missing_lung_shunt_fraction(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour",
                 "--administered-activity-gbq", "1", "--dry-run", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "the run would stop: lung_shunt_fraction (--lung-shunt-fraction) is not given" in captured.out


# -- rule units -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_rule_has_the_unit_of_its_metric_and_survives_a_metrics_json(name):
    preset = PRESETS[name]
    for rule in preset.rules:
        assert rule.unit == metric_unit(rule.metric), (name, rule.label)
    again = RuleSet.from_dict(json.loads(json.dumps(preset.to_dict())))
    assert again.to_dict() == preset.to_dict() and again.origin == {"preset": name}


def test_rule_units_percent_volume_and_ratio_are_accepted_and_a_wrong_one_named(tmp_path):
    rules = {"name": "units", "rules": [
        {"role": "tumor", "metric": "v100_pct", "comparison": ">", "threshold": 50, "unit": "%"},
        {"role": "tumor", "metric": "volume_ml", "comparison": ">", "threshold": 1, "unit": "mL"},
        {"role": "tumor", "metric": "tn_ratio", "comparison": ">", "threshold": 2, "unit": "ratio"},
        {"role": "tumor", "metric": "recovery_coefficient", "comparison": ">", "threshold": 0.5},
        {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 100, "unit": "Gy",
         "when": [{"input": "bilirubin_mg_dl", "op": ">", "value": 1.1}]}]}
    path = tmp_path / "units.json"
    path.write_text(json.dumps(rules))
    rs = load_rules(str(path))
    assert [r.unit for r in rs.rules] == ["%", "mL", "", "", "Gy"]
    rules["rules"][2]["unit"] = "Gy"
    path.write_text(json.dumps(rules))
    with pytest.raises(Exception, match=r"rule 3: unit 'Gy' does not match metric 'tn_ratio'"):
        load_rules(str(path))


# -- wording --------------------------------------------------------------------------------------
def _rule_file(tmp_path, tumour_threshold_gy):
    rules = tmp_path / "r.json"
    rules.write_text(json.dumps({"name": "ours", "rules": [
        {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": tumour_threshold_gy},
        {"role": "perfused", "metric": "mean_gy", "comparison": "<", "threshold": 70}]}))
    return str(rules)


def test_an_incomplete_case_says_incomplete_and_why_on_the_console_and_in_the_report(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    out = tmp_path / "inc"
    capsys.readouterr()
    assert main(["run", "--spect", spect, "--segmentation", labels, *RUN, "--thresholds", _rule_file(tmp_path, 1),
                 "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("INCOMPLETE: rule 'perfused mean_gy < 70 Gy' not evaluated: no segment with role perfused volume "
                     "(give a perfused-volume segment)")
    m = json.loads((out / "metrics.json").read_text())
    assert m["overall_status"] == "INCOMPLETE" and len(m["incomplete_reasons"]) == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>INCOMPLETE</b>rule &#x27;perfused mean_gy &lt; 70 Gy&#x27; not evaluated" in html


def test_a_fail_that_is_also_incomplete_says_both(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    capsys.readouterr()
    assert main(["run", "--spect", spect, "--segmentation", labels, *RUN, "--thresholds", _rule_file(tmp_path, 1e5),
                 "--out", str(tmp_path / "o"), "--no-report"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL: tumour mean dose") and "< 100000 Gy" in lines[0]
    assert any(ln.strip().startswith("also incomplete: rule 'perfused mean_gy < 70 Gy' not evaluated: no segment") for ln in lines)


@pytest.mark.parametrize("half_life_s, phase", [(21654.0, "pre"), (230580.0, "post"), (None, None)])
def test_the_phase_comes_from_the_dicom_radiopharmaceutical_header(half_life_s, phase):
    inputs = {"activity_image": "/data/p1/NM000001", "modality": "spect",
              "activity_dicom": {"header": {"radionuclide_half_life_s": half_life_s}, "source": {"description": "SPECT"}}}
    assert case_phase(DosimetryParams(), inputs)["phase"] == phase
    named = dict(inputs, activity_dicom={"header": {"radionuclide": "^99m^Technetium"}, "source": {}})
    assert case_phase(DosimetryParams(), named)["phase"] == "pre"
