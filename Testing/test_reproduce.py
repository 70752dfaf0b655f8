"""Reruns reproduce and records are complete: metrics.json holds what a result was computed from
(parameters, full rule set, roles and label table as used, inputs with SHA-256, device, software),
and `run --params metrics.json` or `rerun RESULT` give the same metrics.json apart from timings
and dates (the demo, and a case with custom roles and a rule file)."""

import hashlib
import json
import os

import pytest
import SimpleITK as sitk

from TAREDosimetryLib.cli import main
from TAREDosimetryLib.imaging.provenance import sha256_of_path
from TAREDosimetryLib.reproduce import compare_records
from test_resultfolder import case_files


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def custom_case(tmp_path_factory):
    """A run with a label table, a role given on the command line and a rule file; the rule fails."""
    folder = tmp_path_factory.mktemp("custom")
    spect, labels = case_files(folder)
    rules = folder / "centre.json"
    rules.write_text(json.dumps({"name": "our centre", "rules": [
        {"role": "tumor", "metric": "D70", "comparison": ">=", "threshold": 1e4, "source": "local protocol"},
        {"segment": "liver", "metric": "mean_gy", "comparison": "<", "threshold": 1e4, "source": "local protocol"}]}))
    out = folder / "first"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=nodule A", "--role", "nodule A=tumour",
                 "--administered-activity-gbq", "1.5", "--lung-shunt-fraction", "0.05", "--thresholds", str(rules),
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    return {"folder": folder, "spect": spect, "labels": labels, "rules": rules, "out": out}


def test_metrics_json_records_inputs_with_sha256_rules_roles_and_labels(custom_case):
    m = metrics(custom_case["out"])
    inputs = m["inputs"]
    with open(custom_case["spect"], "rb") as fh:
        assert inputs["sha256"]["activity_image"] == hashlib.sha256(fh.read()).hexdigest()
    assert inputs["sha256"]["segmentation"] == sha256_of_path(custom_case["labels"])
    assert inputs["labels"] == "1=liver,2=nodule A" and inputs["label_names"] == {"1": "liver", "2": "nodule A"}
    assert inputs["roles"] == {"liver": "liver", "nodule A": "tumor", "whole liver (derived)": "liver",
                              "normal liver (derived)": "normal_liver"}
    assert m["rules"]["name"] == "our centre" and len(m["rules"]["rules"]) == 2
    assert m["rules"]["origin"] == {"file": str(custom_case["rules"]), "sha256": sha256_of_path(custom_case["rules"])}
    assert m["overall_status"] == "FAIL"


def test_metrics_json_records_the_device_that_ran_and_the_software(custom_case):
    m = metrics(custom_case["out"])
    assert m["computation"]["method"] == "ldm" and m["computation"]["device_requested"] == "auto"
    assert m["computation"]["device_used"] == "cpu" and m["computation"]["device_description"]
    assert {"python", "numpy", "scipy", "SimpleITK", "version"} <= set(m["software"])
    assert m["created_utc"].endswith("+00:00")


def test_dose_nrrd_says_it_is_a_dose_in_gy(custom_case):
    img = sitk.ReadImage(str(custom_case["out"] / "dose.nrrd"))
    assert img.GetMetaData("unit") == "Gy" and img.GetMetaData("quantity") == "absorbed dose"
    assert "Y-90 absorbed dose in Gy" in img.GetMetaData("NRRD_content")
    with open(custom_case["out"] / "dose.nrrd", "rb") as fh:
        header = fh.read(800).decode("latin-1")
    assert "content: Y-90 absorbed dose in Gy" in header and "unit:=Gy" in header


def test_run_params_metrics_json_restores_rules_roles_and_labels_bit_for_bit(custom_case):
    # Before: --params restored the numbers only, and the failing case came back PASS under the default preset.
    again = custom_case["folder"] / "params_again"
    assert main(["run", "--spect", custom_case["spect"], "--segmentation", custom_case["labels"],
                 "--params", str(custom_case["out"] / "metrics.json"), "--out", str(again), "--quiet", "--no-report"]) == 0
    old, new = metrics(custom_case["out"]), metrics(again)
    assert new["overall_status"] == "FAIL"
    assert compare_records(old, new) == []


def test_rerun_writes_an_identical_result(custom_case, capsys):
    again = custom_case["folder"] / "rerun_again"
    assert main(["rerun", str(custom_case["out"]), "--out", str(again), "--quiet", "--no-report"]) == 0
    assert "reproduced: the metrics.json" in capsys.readouterr().out
    assert compare_records(metrics(custom_case["out"]), metrics(again)) == []


def test_rerun_refuses_an_input_that_changed(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour",
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--out", str(out), "--quiet", "--no-report"]) == 0
    with open(spect, "ab") as fh:
        fh.write(b"\n")
    capsys.readouterr()
    assert main(["rerun", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"the activity image {spect} changed since this result was made" in err
    os.remove(spect)
    assert main(["rerun", str(out), "--quiet"]) == 2
    assert "is not there any more" in capsys.readouterr().err


def test_rerun_says_when_a_result_is_not_reproduced(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet", "--no-report"]) == 0
    m = metrics(out)
    m["segments"][0]["mean_gy"] += 1e-9  # as if computed by something else
    (out / "metrics.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["rerun", str(out), "--quiet"]) == 4
    text = capsys.readouterr().out
    assert "NOT reproduced" in text and "segments[0].mean_gy" in text


def test_rerun_and_params_reproduce_the_demo_with_its_rule_set(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["demo", "--out", str(first), "--quiet", "--no-report", "--thresholds", "hcc-resin"]) == 0
    assert main(["rerun", str(first), "--quiet"]) == 0
    assert "reproduced" in capsys.readouterr().out
    again = tmp_path / "again"
    assert main(["demo", "--out", str(again), "--quiet", "--no-report", "--params", str(first / "metrics.json")]) == 0
    assert metrics(again)["rules"]["name"] == "hcc-resin"
    assert compare_records(metrics(first), metrics(again)) == []


def test_rerun_of_a_folder_without_metrics_json_is_exit_2(tmp_path, capsys):
    assert main(["rerun", str(tmp_path)]) == 2
    assert "not a result folder (no metrics.json in it)" in capsys.readouterr().err


def test_folder_hash_changes_with_any_file_or_name_and_not_with_listing_order(tmp_path):
    d = tmp_path / "series"
    d.mkdir()
    for n in ("b.dcm", "a.dcm"):
        (d / n).write_bytes(n.encode())
    h = sha256_of_path(d)
    assert h == sha256_of_path(d)
    os.rename(d / "a.dcm", d / "c.dcm")
    assert sha256_of_path(d) != h
    os.rename(d / "c.dcm", d / "a.dcm")
    assert sha256_of_path(d) == h
    (d / "a.dcm").write_bytes(b"changed")
    assert sha256_of_path(d) != h


def test_dvk_records_the_device_it_ran_on():
    from TAREDosimetryLib.dose.backend import get_backend
    from TAREDosimetryLib.dose.dosemap import dose_computation_record
    from TAREDosimetryLib.params import DosimetryParams

    rec = dose_computation_record(DosimetryParams(method="dvk", device="auto"))
    assert rec["device_used"] == get_backend("auto").name and rec["device_description"] == get_backend("auto").description
    assert dose_computation_record(DosimetryParams(method="dvk", device="cpu"))["device_used"] == "cpu"


def test_the_report_records_the_device_and_the_input_hashes(tmp_path):
    pytest.importorskip("matplotlib")
    spect, labels = case_files(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour",
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--out", str(out), "--quiet"]) == 0
    text = (out / "report.html").read_text(encoding="utf-8")
    m = metrics(out)
    assert m["inputs"]["sha256"]["activity_image"] in text and m["inputs"]["sha256"]["segmentation"] in text
    assert f"LDM on {m['computation']['device_description']}" in text
    assert "<h2>Computation</h2>" in text and "device_used" in text
