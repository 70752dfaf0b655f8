"""The report reads like a physicist wrote it: the verdict in words, prediction or verification,
no tumour headings or isodoses without tumours, colours told apart, DVH labels off the curves,
and a dry run that shows the segments, roles, volumes and rules without computing anything."""

import html
import json
import os
import re
from itertools import combinations

import numpy as np
import pytest

from conftest import box_case
from TAREDosimetryLib import DosimetryParams, Segmentation, run_case
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.evaluation.phase import case_phase
from TAREDosimetryLib.evaluation.rules import Rule, RuleEvaluation, RuleSet
from TAREDosimetryLib.imaging.phantom import demo_case_inputs, make_phantom
from TAREDosimetryLib.reporting import figures
from TAREDosimetryLib.reporting.colors import MIN_DELTA_E, delta_e, display_colors
from TAREDosimetryLib.reporting.html import write_report_html
from TAREDosimetryLib.reporting.wording import banner, evaluation_sentence, metric_words
from TAREDosimetryLib.volume import Grid
from test_resultfolder import case_files

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    case = make_phantom(analytic=False, seed=0)
    result = run_case(case.activity, case.segmentation, params=case.params, ct=case.ct, inputs=demo_case_inputs(case, 0))
    path = tmp_path_factory.mktemp("wording") / "report.html"
    write_report_html(result, str(path), background=case.ct, segmentation=case.segmentation)
    return result, case, path.read_text(encoding="utf-8")


def _banner_div(text):
    return re.search(r'<div class="banner".*?</div></div>|<div class="banner".*?</ul></div>', text, re.S).group(0)


def test_the_banner_says_the_failure_in_words_with_the_status_once(demo):
    result, _, text = demo
    assert banner(result)["headline"] == "FAIL: tumour 3 mean dose 48.4 Gy < 79.5 Gy (partial volume)"
    div = _banner_div(text)
    assert "<b>FAIL</b>tumour 3 mean dose 48.4 Gy &lt; 79.5 Gy (partial volume)" in div
    assert "mean_gy" not in div and not re.search(r"FAIL\W+FAIL", re.sub(r"<[^>]+>", " ", div))
    # the cumulative lung rule is optional and N/A: the demo gives no prior lung dose (review finding 4)
    assert "3 of 5 rule evaluations met, 1 failed, 1 not evaluated (rule set breast-liver-metastases)" in div


def test_the_console_prints_the_same_words(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet", "--no-report"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "FAIL: tumour 3 mean dose 48.4 Gy < 79.5 Gy (partial volume)"
    assert "Post-treatment verification" in out[2]


def _ev(metric, measured, status, comparison=">", threshold=79.5, segment="Tumor 1", role="tumor", unit=""):
    return RuleEvaluation(Rule(role=role, metric=metric, comparison=comparison, threshold=threshold, unit=unit,
                               label="tumour response"), segment, measured, status)


@pytest.mark.parametrize("ev, words", [
    (_ev("mean_gy", 183.08, "PASS"), "Tumor 1 mean dose 183.1 Gy > 79.5 Gy"),
    (_ev("mean_gy", 79.46, "FAIL"), "Tumor 1 mean dose 79.46 Gy < 79.5 Gy"),  # not "79.5 Gy < 79.5 Gy"
    (_ev("mean_gy", 79.5, "FAIL"), "Tumor 1 mean dose 79.5 Gy = 79.5 Gy"),
    (_ev("d70_gy", 99.0, "FAIL", ">=", 100), "Tumor 1 D70 99.0 Gy < 100 Gy"),
    (_ev("V100Gy", 42.0, "FAIL", ">=", 50), "Tumor 1 V100Gy 42.0 % < 50 %"),
    (_ev("tn_ratio", 2.345, "PASS", ">", 2), "Tumor 1 T/N ratio 2.35 > 2"),
    (_ev("mean_gy", float("nan"), "N/A", segment=""), "no tumour segment measured for 'tumour response' (mean dose > 79.5 Gy)"),
])
def test_each_evaluation_in_words(ev, words):
    assert evaluation_sentence(ev) == words


def test_an_na_sentence_gives_the_evaluations_own_reason():
    """Review finding 15: every N/A read "no ... segment measured" although the case had the segment
    and the reason was a clinical input not given."""
    from TAREDosimetryLib.evaluation.rules import missing_segment_reason

    rule = Rule(role="normal_liver", metric="mean_gy", comparison="<", threshold=50, unit="Gy",
                label="whole normal liver mean dose < 50 Gy (bilirubin > 1.1 mg/dL)")
    why = "bilirubin not given (--bilirubin-mg-dl): the rule applies when bilirubin > 1.1 mg/dL"
    words = evaluation_sentence(RuleEvaluation(rule, "", float("nan"), "N/A", why))
    assert words == f"'{rule.label}' (mean dose < 50 Gy) not evaluated: {why}"
    assert "segment measured" not in words
    missing = evaluation_sentence(RuleEvaluation(rule, "", float("nan"), "N/A", missing_segment_reason(rule)))
    assert missing.startswith("no normal liver segment measured for") or missing.startswith("no normal (non-tumoural) liver")
    lung = Rule(role="lung", metric="cumulative_mean_gy", comparison="<", threshold=50, unit="Gy", label="lung cumulative")
    words = evaluation_sentence(RuleEvaluation(lung, "lungs (LSF model)", float("nan"), "N/A", "prior lung dose not given"))
    assert words == "lungs (LSF model) cumulative mean dose could not be measured ('lung cumulative'): prior lung dose not given"


def test_metric_words():
    assert [metric_words(m) for m in ("mean_gy", "d98_gy", "v20_pct", "cumulative_mean_gy", "D2cc")] == [
        "mean dose", "D98", "V20Gy", "cumulative mean dose", "D2cc"]


class _Stub:
    """A result as issue 8b's engine gives it: INCOMPLETE with reasons."""

    def __init__(self, status, evaluations, reasons=()):
        self.overall_status, self.evaluations, self.incomplete_reasons = status, evaluations, list(reasons)
        self.rules = RuleSet("ours", tuple(e.rule for e in evaluations))
        self.params, self.inputs = DosimetryParams(), {}


def test_the_banner_handles_pass_incomplete_and_nothing_evaluated():
    ok = _Stub("PASS", [_ev("mean_gy", 120.0, "PASS")])
    assert banner(ok)["headline"] == "PASS: every rule judged was met (1 rule evaluation)"
    inc = _Stub("INCOMPLETE", [_ev("mean_gy", 120.0, "PASS")], ["administered activity defaulted", "no lung segment"])
    b = banner(inc)
    assert b["headline"] == "INCOMPLETE: administered activity defaulted; no lung segment"
    na = _Stub("N/A", [_ev("mean_gy", float("nan"), "N/A", segment="")])
    assert banner(na)["headline"].startswith("N/A: no rule could be evaluated: no tumour segment measured")


# -- prediction or verification --------------------------------------------------------------
@pytest.mark.parametrize("params, inputs, phase", [
    (DosimetryParams(), {"activity_image": "/data/p1/MAA_SPECT.nii.gz"}, "pre"),
    (DosimetryParams(), {"activity_image": "/data/maa-spect-patient2/patient_2_SPECT.nrrd"}, "pre"),
    (DosimetryParams(), {"activity_image": "/data/p1/y90_brems.nrrd"}, "post"),
    (DosimetryParams(), {"activity_image": "/data/p1/pet", "modality": "pet"}, "post"),
    (DosimetryParams(), {"activity_image": "/data/p1/spect.nrrd"}, None),
    (DosimetryParams(phase="pre"), {"activity_image": "/data/p1/y90_brems.nrrd"}, "pre"),
])
def test_the_phase_comes_from_the_option_or_the_inputs(params, inputs, phase):
    assert case_phase(params, inputs)["phase"] == phase


def test_the_report_and_metrics_json_say_prediction_or_verification(demo, tmp_path):
    result, _, text = demo
    assert "Post-treatment verification (delivered dose)" in text and "bremsstrahlung" in text
    assert result.to_dict()["phase"]["phase"] == "post"
    spect, labels = case_files(tmp_path)
    out = tmp_path / "pre"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--administered-activity-gbq",
                 "1", "--lung-shunt-fraction", "0.05", "--phase", "pre", "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["parameters"]["phase"] == "pre" and m["phase"]["basis"] == "given (--phase)"
    assert "Pre-treatment prediction (planning)" in (out / "report.html").read_text(encoding="utf-8")


# -- no tumour ----------------------------------------------------------------------------------
def test_without_tumour_no_tumour_heading_and_no_tumour_isodose(tmp_path):
    act, seg = box_case()
    liver_only = seg.subset(["liver"])
    result = run_case(act, liver_only, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05), rules="hcc-resin")
    path = tmp_path / "r.html"
    write_report_html(result, str(path), segmentation=liver_only)
    text = path.read_text(encoding="utf-8")
    assert "Dose slices through the tumours" not in text and "Dose slices through liver (no tumour segment)" in text
    planes = figures.dose_slice_planes(result, None, liver_only)
    assert figures._tumour_isodoses(result, planes, 1e6) == []
    with_tumour = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05), rules="hcc-resin")
    assert figures._tumour_isodoses(with_tumour, figures.dose_slice_planes(with_tumour, None, seg), 1e6) == [100.0]


# -- colours ------------------------------------------------------------------------------------
def test_liver_lobes_normal_liver_and_lungs_get_colours_told_apart(demo):
    result, case, _ = demo
    colors = figures.figure_colors(result, case.segmentation, result.inputs["roles"])
    organs = [n for n in colors if result.inputs["roles"].get(n, "lung") in ("liver", "right_lobe", "left_lobe", "normal_liver", "lung")]
    assert len(organs) >= 6
    for a, b in combinations(colors, 2):
        assert delta_e(colors[a], colors[b]) >= MIN_DELTA_E, (a, b, colors[a], colors[b])
    assert colors["tumour 1"] == tuple(result.segment("tumour 1").color)  # tumours keep their own colours


def test_a_label_map_palette_giving_spleen_and_liver_close_colours_is_told_apart():
    grid = Grid((4, 4, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    lab = np.zeros(grid.shape, np.uint8)
    lab[..., :3], lab[..., 3:5], lab[..., 5:] = 1, 4, 5  # TotalSegmentator: spleen, gallbladder, liver
    seg = Segmentation.from_labelmap(lab, grid, {1: "spleen", 4: "gallbladder", 5: "liver"})
    raw = {s.name: s.color for s in seg.segments}
    assert delta_e(raw["spleen"], raw["liver"]) < MIN_DELTA_E  # the palette's own colours are close
    shown = display_colors([(n, "liver" if n == "liver" else "other", c) for n, c in raw.items()])
    for a, b in combinations(shown, 2):
        assert delta_e(shown[a], shown[b]) >= MIN_DELTA_E


# -- DVH labels -----------------------------------------------------------------------------------
def test_dvh_threshold_labels_and_legend_do_not_cover_the_curves(demo):
    result, _, _ = demo
    fig = figures.dvh_figure(result)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    plot_box = ax.get_window_extent(renderer)
    texts = [t for t in ax.texts if t.get_text().strip()]
    legend = ax.get_legend()
    boxes = [t.get_window_extent(renderer) for t in texts] + [legend.get_window_extent(renderer)]
    for box in boxes:
        assert not box.overlaps(plot_box), box
    labels = " ".join(t.get_text() for t in legend.get_texts())
    assert "tumour mean dose > 79.5 Gy (objective response)" in labels and "lung mean dose per treatment < 30 Gy" in labels


# -- dry run --------------------------------------------------------------------------------------
def test_dry_run_shows_segments_roles_volumes_and_rules_and_writes_nothing(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    rules = tmp_path / "r.json"
    rules.write_text(json.dumps({"name": "ours", "rules": [
        {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 100},
        {"role": "perfused", "metric": "mean_gy", "comparison": "<", "threshold": 70}]}))
    before = sorted(os.listdir(tmp_path))
    code = main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=lesion A", "--role", "lesion A=tumour",
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--thresholds", str(rules), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and sorted(os.listdir(tmp_path)) == before
    assert re.search(r"liver\s+whole liver \(guessed\)\s+60\.9\s+100\.0 %", out), out
    assert re.search(r"lesion A\s+tumour \(given\)\s+0\.5", out)
    assert "normal liver (derived)" in out and "lungs (LSF model)" in out
    assert "mean dose > 100 Gy -> lesion A" in out
    assert "mean dose < 70 Gy -> N/A: no segment it applies to" in out
    assert "nothing written" in out


def test_dry_run_says_what_would_stop_the_run(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    assert main(["run", "--spect", spect, "--segmentation", labels, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "the run would stop: administered_activity_gbq is required" in captured.out
    assert captured.err.strip().startswith("tare-dosimetry: error: administered_activity_gbq is required")


def test_run_without_out_and_without_dry_run_is_exit_2(tmp_path, capsys):
    spect, labels = case_files(tmp_path)
    assert main(["run", "--spect", spect, "--segmentation", labels, "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05"]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_report_escapes_the_banner(demo):
    _, _, text = demo
    assert html.escape("48.4 Gy < 79.5 Gy") in text and "48.4 Gy < 79.5 Gy" not in text


def test_a_manifest_phase_column_sets_the_phase(tmp_path):
    spect, labels = case_files(tmp_path)
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,spect,segmentation,labels,administered_activity_gbq,lung_shunt_fraction,phase\n"
                        f'p1,{os.path.basename(spect)},{os.path.basename(labels)},"1=liver,2=tumour",1.0,0.05,pre\n')
    assert main(["batch", "--manifest", str(manifest), "--out", str(tmp_path / "b"), "--quiet", "--no-report"]) == 0
    m = json.loads((tmp_path / "b" / "p1" / "metrics.json").read_text())
    assert m["parameters"]["phase"] == "pre" and m["phase"]["title"].startswith("Pre-treatment prediction")


def test_a_pass_with_an_optional_rule_not_evaluated_says_so_in_the_headline():
    """The cumulative lung rule is optional: without a prior lung dose the case can PASS, but the headline
    must not read 'every rule met' while one was not evaluated."""
    activity, seg = box_case()
    p = DosimetryParams(administered_activity_gbq=1.0, residual_fraction=0.0, lung_shunt_fraction=0.05,
                        default_lung_mass_g=1000.0, indication="breast")
    r = run_case(activity, seg, params=p)
    assert r.overall_status == "PASS"
    head = banner(r)["headline"]
    assert head.startswith("PASS: every rule judged was met") and "not evaluated (optional or not applicable)" in head
    assert "prior lung dose not given" in head
