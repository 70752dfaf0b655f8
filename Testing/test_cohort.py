"""The cohort analysis: the synthetic cohort recovers the published summaries; the engine's own batch
output on synthetic patients with known doses gives those doses in the cohort tables; the clinical
table's mistakes are one-line errors; `tare-dosimetry cohort` writes what it says."""

import csv
import json
import os

import numpy as np
import pytest

from TAREDosimetryLib import Volume
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.cohort.analysis import CohortOptions, analyse_cohort
from TAREDosimetryLib.cohort.clinical import COLUMN_DOCS, ClinicalSpec
from TAREDosimetryLib.cohort.dataset import load_cohort
from TAREDosimetryLib.cohort.synthetic import PUBLISHED, write_synthetic_clinical_csv
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging.images import write_image

lifelines = pytest.importorskip("lifelines")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- (b) the synthetic cohort recovers the study's published summaries --------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "clinical.csv"
    write_synthetic_clinical_csv(str(path), seed=0)
    data = load_cohort(str(path), ClinicalSpec())
    return data, analyse_cohort(data, CohortOptions(n_boot=1000, seed=0))


def test_synthetic_cohort_recovers_the_published_dose_summaries_and_a_threshold_between_the_groups(synthetic):
    data, res = synthetic
    d = res["dose_by_response"]
    for group, key in (("responders", "responders_dose_gy"), ("non_responders", "non_responders_dose_gy")):
        got = {k: round(d[group][k], 1) for k in ("median", "q1", "q3")}
        assert got == PUBLISHED[key], group
    assert (d["responders"]["n"], d["non_responders"]["n"]) == (46, 14) and d["not_evaluable"] == 4
    assert d["p_wilcoxon"] < 0.001  # published p < 0.001
    roc = res["roc"]
    nonresp_q3, resp_q1 = PUBLISHED["non_responders_dose_gy"]["q3"], PUBLISHED["responders_dose_gy"]["q1"]
    assert nonresp_q3 < roc["youden_threshold"] < resp_q1  # between the groups (published: 79.5 Gy)
    assert roc["youden_ci"][0] < PUBLISHED["threshold_gy"] < roc["youden_ci"][1]
    assert roc["given_threshold"]["threshold_gy"] == 79.5 and roc["auc"] > 0.85
    assert len(data.patients) == PUBLISHED["patients"]


def test_synthetic_cohort_recovers_the_published_survival_medians(synthetic):
    _data, res = synthetic
    s = res["survival"]
    assert s["overall"]["median_months"] == PUBLISHED["median_os_months"] and s["overall"]["n"] == 64
    assert s["groups"]["responders"]["median_months"] == PUBLISHED["median_os_responders_months"]
    assert s["groups"]["non_responders"]["median_months"] == PUBLISHED["median_os_non_responders_months"]
    assert s["logrank"]["n"] == {"non_responders": 14, "responders": 46}
    assert s["overall"]["at_risk"][0] == 64 and s["at_risk_times_months"][:3] == [0.0, 6.0, 12.0]


def test_cohort_json_sections_name_tests_assumptions_and_sample_sizes(synthetic):
    _data, res = synthetic
    d = res["dose_by_response"]
    assert {"n", "median", "q1", "q3"} <= set(d["responders"]) and "p_wilcoxon" in d
    assert "Wilcoxon rank-sum" in d["test"]["test"] and d["test"]["assumptions"] and d["test"]["n"]["responders"] == 46
    assert {"auc", "auc_ci", "youden_threshold", "youden_ci"} <= set(res["roc"])
    assert set(res["survival"]["groups"]) == {"responders", "non_responders"} and "logrank_p" in res["survival"]
    assert all({"median_months", "ci"} <= set(g) for g in res["survival"]["groups"].values())
    cox = res["cox"]
    assert {"univariable", "multivariable"} <= set(cox) and cox["univariable"]["bilobar"]["hr"] > 1
    assert all({"hr", "ci", "p"} <= set(v) for v in cox["univariable"].values())
    assert res["fisher"] and all(f["test"] and f["assumptions"] and "n" in f for f in res["fisher"])
    assert any("hepatotoxicity" in f["outcome"] for f in res["fisher"])


# -- (c) the engine's own batch output: known doses come out in the cohort tables -----------------------
@pytest.fixture(scope="module")
def batch_results(tmp_path_factory, analytic_phantom):
    """Five analytic patients (dose scales with the administered activity) run by the batch."""
    root = tmp_path_factory.mktemp("cohort_batch")
    ph = analytic_phantom
    write_image(ph.activity, str(root / "activity.nrrd"))
    masks = root / "segments"
    masks.mkdir()
    for name in ph.segmentation.names:
        write_image(Volume(ph.segmentation.mask(name).astype(np.uint8), grid=ph.segmentation.grid),
                    str(masks / f"{name}.nrrd"), dtype=np.uint8)
    activities = [0.6, 1.0, 1.4, 1.8, 2.6]
    lines = ["case_id,spect,segmentation,administered_activity_gbq,residual_fraction,lung_shunt_fraction,roles"]
    for i, a in enumerate(activities):
        roles = "tumour 3=ignore" if i == 0 else ""  # patient 0: only right-lobe tumours -> unilobar
        lines.append(f"pt{i},activity.nrrd,segments,{a},{ph.params.residual_fraction},{ph.params.lung_shunt_fraction},{roles}")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    out = root / "results"
    assert main(["batch", "--manifest", str(root / "cases.csv"), "--out", str(out), "--quiet", "--no-report"]) == 0
    scale = {f"pt{i}": a / ph.params.administered_activity_gbq for i, a in enumerate(activities)}
    return root, out, scale


def _clinical_lesion_table(root, scale, ph):
    rows = ["case_id,lesion,response,patient_response,os_months,os_event"]
    for k, (cid, f) in enumerate(scale.items()):
        for t in ("tumour 1", "tumour 2", "tumour 3"):
            if cid == "pt0" and t == "tumour 3":
                continue
            resp = "PR" if ph.expected_mean_gy[t] * f > 150 else "SD"
            rows.append(f"{cid},{t},{resp},{'PR' if k % 2 else 'PD'},{6 + 3 * k},{k % 2}")
    path = root / "clinical.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_engine_batch_output_gives_the_known_doses_in_the_cohort_tables(batch_results, analytic_phantom, tmp_path):
    root, results, scale = batch_results
    ph = analytic_phantom
    clinical = _clinical_lesion_table(root, scale, ph)
    out = tmp_path / "cohort"
    assert main(["cohort", "--results", str(results), "--clinical", str(clinical), "--out", str(out), "--quiet",
                 "--no-figures", "--bootstrap", "200", "--no-cox"]) == 0
    lesions = {(r["case_id"], r["lesion"]): r for r in _rows(out / "lesions.csv")}
    dose_col = next(c for c in _rows(out / "lesions.csv")[0] if c.startswith("dose"))
    for (cid, lesion), r in lesions.items():
        assert float(r[dose_col]) == pytest.approx(ph.expected_mean_gy[lesion] * scale[cid], rel=1e-4), (cid, lesion)
    vol = {t: float(ph.segmentation.mask(t).sum()) for t in ("tumour 1", "tumour 2", "tumour 3")}
    patients = {r["case_id"]: r for r in _rows(out / "patients.csv")}
    pcol = next(c for c in _rows(out / "patients.csv")[0] if c.startswith("tumour_dose"))
    for cid, f in scale.items():
        ts = ["tumour 1", "tumour 2"] + ([] if cid == "pt0" else ["tumour 3"])
        expected = sum(ph.expected_mean_gy[t] * f * vol[t] for t in ts) / sum(vol[t] for t in ts)  # energy / mass
        assert float(patients[cid][pcol]) == pytest.approx(expected, rel=1e-4), cid
        nt = ph.expected_mean_gy["normal liver (derived)"] * f
        if cid != "pt0":
            assert float(patients[cid]["nontumoral_liver_mean_gy"]) == pytest.approx(nt, rel=1e-4)
    assert patients["pt0"]["extent_from_segments"] == "unilobar" and patients["pt1"]["extent_from_segments"] == "bilobar"
    res = json.loads((out / "cohort.json").read_text())
    lesion = res["dose_by_response_lesions"]
    assert lesion["clustering"]["n_patients"] == 5 and lesion["clustering"]["n_lesions"] == 14
    assert "cluster bootstrap over patients" in lesion["clustering"]["method"]
    assert res["roc_lesions"]["auc"] == 1.0  # responses were set from the known doses (> 150 Gy)


def test_cohort_of_a_d70_metric_reads_that_metric(batch_results, tmp_path):
    root, results, scale = batch_results
    clinical = tmp_path / "c.csv"
    clinical.write_text("case_id,response\n" + "".join(f"{c},{'PR' if i % 2 else 'SD'}\n" for i, c in enumerate(scale)))
    data = load_cohort(str(clinical), ClinicalSpec(), results_dir=str(results), dose_metric="D70")
    m = json.loads((results / "pt2" / "metrics.json").read_text())
    t = {s["name"]: s for s in m["segments"] if s["role"] == "tumor"}
    les = {le["lesion"]: le["dose"] for le in data.lesions if le["case_id"] == "pt2"}
    assert data.dose_metric == "d70_gy" and les == {k: v["d70_gy"] for k, v in t.items()}


# -- the clinical table's mistakes -------------------------------------------------------------------------
def _cohort(tmp_path, text, *extra, results=None):
    path = tmp_path / "clinical.csv"
    path.write_text(text)
    args = ["cohort", "--clinical", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-figures", "--no-cox",
            "--bootstrap", "100"]
    if results:
        args += ["--results", str(results)]
    return main(args + list(extra))


@pytest.mark.parametrize("text, extra, match", [
    ("case_id,response,dose_gy\np1,PR,100\np2,XX,50\n", (), "response 'XX' is neither"),
    ("case_id,response,dose_gy,bilirubin\np1,PR,100,1.2 mg/dL\np2,SD,50,20 umol/L\n", (), "mixes units"),
    ("case_id,response,dose_gy,bilirubin_mg_dl\np1,PR,100,1.2\np2,SD,50,20 umol/L\n", (), "says mg/dl in its name"),
    ("case_id,response,dose_gy,os_months\np1,PR,100,12\np2,SD,50,3\n", (), "without 'os_event'"),
    ("case_id,response,dose_gy\np1,PR,100\np2,SD,50\n", ("--time-column", "pfs"), "no column 'pfs'"),
    ("case_id,dose_gy\np1,100\n", (), "no response column"),
    ("case_id,response\np1,PR\n", (), "no column 'dose_gy'"),
    ("case_id,response,dose_gy\np1,PR,100\np1,SD,50\n", (), "case_id 'p1' repeated"),
    ("case_id,response,dose_gy\np1,PR,1,5\n", (), "decimal comma"),
    ("case_id,response,dose_gy,bilirubin_mg_dl,bilirubin_umol_l\np1,PR,1,1,17\n", (), "two bilirubin columns"),
    ("case_id,response,dose_gy,os_months,os_event\np1,PR,100,12,maybe\n", (), "event 'maybe'"),
    ("case_id,lesion,response,dose_gy,os_months,os_event\np1,a,PR,100,12,1\np1,b,SD,50,14,1\n", (),
     "os_months of case 'p1' is 14.0 here but 12.0"),
])
def test_clinical_table_mistakes_are_exit_2_with_one_line(tmp_path, capsys, text, extra, match):
    assert _cohort(tmp_path, text, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "internal error" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_case_ids_and_lesions_against_results_are_refused(batch_results, tmp_path, capsys):
    _root, results, _scale = batch_results
    assert _cohort(tmp_path, "case_id,response\npt1,PR\npt9,SD\n", results=results) == 2
    assert "case_id(s) pt9 have no result" in capsys.readouterr().err
    assert _cohort(tmp_path, "case_id,lesion,response\npt1,tumour 7,PR\n", results=results) == 2
    assert "lesion 'tumour 7' is not a tumour segment" in capsys.readouterr().err
    assert _cohort(tmp_path, "case_id,response\npt1,PR\n", "--dose-column", "dose_gy", results=results) == 2
    assert "use one" in capsys.readouterr().err


def test_units_are_converted_and_said(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("case_id;response;dose_cgy;bilirubin_umol_l;os_days;os_event;albumin\n"
                    "p1;PR;15000;17,104;365,25;dead;4,1\np2;SD;5000;34.208;30.4375;alive;3.2\n")
    spec = ClinicalSpec(dose_column="dose_cgy")
    data = load_cohort(str(path), spec)
    p1 = data.patients[0]
    assert p1["dose"] == pytest.approx(150.0) and p1["time_months"] == pytest.approx(12.0)
    assert p1["covariates"]["bilirubin_umol_l"] == pytest.approx(1.0) and p1["covariates"]["albumin"] == pytest.approx(4.1)
    assert data.units["bilirubin_umol_l"] == "mg/dL" and data.units["os_days"] == "months"
    assert any("albumin: no unit" in n for n in data.notes) and any("converted to mg/dL" in n for n in data.notes)


def test_implausible_values_for_the_unit_are_warned(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("case_id,response,dose_gy,bilirubin_mg_dl\np1,PR,100,25\np2,SD,50,40\n")
    data = load_cohort(str(path), ClinicalSpec())
    assert any("bilirubin_mg_dl" in w and "check the unit" in w for w in data.warnings)


def test_missing_lifelines_is_a_clear_error(monkeypatch):
    import builtins

    from TAREDosimetryLib.cohort.cox import require_lifelines

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "lifelines":
            raise ImportError("No module named 'lifelines'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(InputError, match=r"pip install lifelines"):
        require_lifelines()


def test_cohort_help_names_every_column_and_flag():
    from TAREDosimetryLib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["cohort"]
    text = sub.format_help()
    for name, _meaning in COLUMN_DOCS:
        assert name in text
    for flag in ("--dose-column", "--response-column", "--time-column", "--event-column", "--toxicity-column",
                 "--covariates", "--results", "--clinical", "--threshold-gy", "--dose-metric"):
        assert flag in text


def test_cohort_demo_writes_every_output(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["cohort", "--demo", "--out", str(out), "--quiet", "--bootstrap", "300"]) == 0
    files = set(os.listdir(out))
    assert {"cohort.json", "cohort.html", "patients.csv", "dose_by_response.csv", "roc.csv", "fisher.csv", "survival.csv",
            "numbers_at_risk.csv", "cox.csv", "dose_by_response.png", "roc.png", "km_response.png", "forest.png",
            "synthetic_clinical.csv"} <= files
    html = (out / "cohort.html").read_text()
    assert "Key results" in html and "data:image/png;base64" in html and "Methods and assumptions" in html
    res = json.loads((out / "cohort.json").read_text())
    assert res["n"]["patients"] == 64 and res["options"]["bootstrap_resamples"] == 300
    # a second run into the same folder is refused without --overwrite
    assert main(["cohort", "--demo", "--out", str(out), "--quiet"]) == 2


def test_multivariable_covariates_can_be_chosen_and_unknown_ones_are_refused(synthetic):
    data, _res = synthetic
    res = analyse_cohort(data, CohortOptions(n_boot=200, multivariable=("bilobar", "ast_u_l")))
    assert set(res["cox"]["multivariable"]) == {"bilobar", "ast_u_l"} and res["cox"]["selection"] == "given with --covariates"
    with pytest.raises(InputError, match="not available; the Cox covariates are"):
        analyse_cohort(data, CohortOptions(n_boot=200, multivariable=("shoe_size",)))


@pytest.mark.parametrize("text", [
    "case_id,response,dose_gy\np1,PR,100\np2,PR,120\np3,CR,90\n",                     # no non-responder
    "case_id,response,dose_gy\np1,PR,100\np2,SD,50\n",                                 # one of each
    "case_id,response,dose_gy,os_months,os_event,hepatotoxicity_grade\np1,PR,100,3,0,0\np2,SD,50,4,0,0\n",  # no death
    "case_id,response,dose_gy\np1,NE,100\np2,SD,\np3,PR,90\n",                         # missing values
])
def test_degenerate_cohorts_give_warnings_not_crashes(tmp_path, text):
    pytest.importorskip("matplotlib")
    path = tmp_path / "c.csv"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["cohort", "--clinical", str(path), "--out", str(out), "--quiet", "--bootstrap", "100"]) == 0
    res = json.loads((out / "cohort.json").read_text())
    assert res["warnings"]  # small groups, no test, no model: said out loud
    assert (out / "cohort.html").exists() and (out / "dose_by_response.png").exists()


def test_overwrite_replaces_the_analysis_and_removes_its_stale_files(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "c.csv"
    path.write_text("case_id,response,dose_gy,os_months,os_event\n" + "".join(
        f"p{i},{'PR' if i % 3 else 'SD'},{40 + 15 * i},{3 + i},{i % 2}\n" for i in range(12)))
    out = tmp_path / "out"
    (tmp_path / "out").mkdir()
    (out / "my_notes.txt").write_text("mine")
    assert main(["cohort", "--clinical", str(path), "--out", str(out), "--quiet", "--bootstrap", "100", "--overwrite"]) == 0
    assert (out / "km_response.png").exists() and (out / "cox.csv").exists()
    assert main(["cohort", "--clinical", str(path), "--out", str(out), "--quiet", "--bootstrap", "100", "--overwrite",
                 "--no-figures", "--no-cox"]) == 0
    assert not (out / "km_response.png").exists() and not (out / "cox.csv").exists()
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "cohort.json").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
