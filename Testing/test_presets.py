"""The threshold presets, pinned rule by rule to the row of the table they come from.

Sources: EANM 2022 procedure guideline (Weber M et al., Eur J Nucl Med Mol Imaging 49 (2022) 1682),
table 2 (90Y glass microspheres) and table 3 (90Y resin microspheres, modified from Levillain et al.
2021); DOSISPHERE-01 (Garin et al. 2021, reference [67] of table 2); Deipolyi et al. 2021 (breast);
the conventional 30/50 Gy lung limits (Leung 1995, Ho 1997: in neither EANM table).
Each entry: (role, metric, comparison, threshold, conditions as text, words of the table row).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, box_case
from TAREDosimetryLib import InputError, Segmentation, Volume, run_case
from TAREDosimetryLib.evaluation.rules import PRESETS, RuleSet, load_rules, select_rules
from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.volume import Grid

LUNG = [
    ("lung", "mean_gy", "<", 30, "", "lung < 30 Gy per treatment"),
    ("lung", "cumulative_mean_gy", "<", 50, "", "lung < 50 Gy cumulative"),
]
NOT_SEG = "treatment approach not segmentectomy"
RESIN = lambda ind, cmp, t, trow, limit, lrow: [  # noqa: E731
    ("tumor", "mean_gy", cmp, t, NOT_SEG, trow),
    ("perfused_normal", "mean_gy", "<", limit, "treatment approach not segmentectomy or lobectomy", lrow),
    ("perfused_normal", "mean_gy", ">", 70, "treatment approach lobectomy and hepatic reserve > 30 %",
     f"table 3, {ind}, lobectomy: normal perfused liver > 70 Gy, with a hepatic reserve > 30 %"),
    ("perfused", "mean_gy", ">", 150, "treatment approach segmentectomy", f"table 3, {ind}, segmentectomy: perfused volume > 150 Gy"),
] + LUNG
GLASS_NORMAL = [
    ("normal_liver", "mean_gy", "<", 50, "bilirubin > 1.1 mg/dL and " + NOT_SEG, "footnote ***: total bilirubin > 1.1 mg/dL: whole normal liver < 50 Gy"),
]

EXPECTED = {
    "breast-liver-metastases": [
        ("tumor", "mean_gy", ">", 79.5, "", "Deipolyi 2021: tumour dose threshold for objective response, 79.5 Gy")] + LUNG,
    "hcc-resin": RESIN("HCC", ">=", 100, "table 3, HCC, lobectomy/unilobar/bilobar: tumour dose >= 100-120 Gy", 40,
                       "table 3, HCC, unilobar and bilobar: normal perfused liver < 40 Gy"),
    "hcc-resin-compromised": RESIN("HCC", ">=", 100, "table 3, HCC, lobectomy/unilobar/bilobar: tumour dose >= 100-120 Gy", 30,
                                   "footnote ** (pretreated or compromised liver): normal perfused liver < 30 Gy"),
    "icc-resin": RESIN("ICC", ">=", 100, "table 3, ICC, lobectomy/unilobar/bilobar: tumour dose >= 100-120 Gy", 40,
                       "table 3, ICC, unilobar and bilobar: normal perfused liver < 40 Gy"),
    "mcrc-resin": RESIN("mCRC", ">", 100, "table 3, mCRC, lobectomy/unilobar/bilobar: tumour dose > 100 Gy", 40,
                        "table 3, mCRC, unilobar and bilobar: normal perfused liver < 40 Gy"),
    "hcc-glass": [
        ("tumor", "mean_gy", ">=", 205, NOT_SEG, "table 2, HCC, lobectomy/unilobar/bilobar: tumour dose >= 205 Gy"),
        ("normal_liver", "mean_gy", "<", 75, "treatment approach not segmentectomy or bilobar",
         "table 2, HCC, lobectomy and unilobar: whole normal liver < 75 Gy (range 50/90)"),
    ] + GLASS_NORMAL + [
        ("normal_liver", "mean_gy", "<", 90, "treatment approach bilobar and bilirubin <= 1.1 mg/dL",
         "table 2, HCC, bilobar, footnote ***: total bilirubin < 1.1 mg/dL: whole normal liver < 90 Gy"),
        ("perfused_normal", "mean_gy", "<", 120, "hepatic reserve < 30 % and treatment approach unilobar",
         "table 2, HCC, unilobar: normal perfused liver < 120 Gy if hepatic reserve < 30 %"),
        ("perfused", "mean_gy", ">", 400, "treatment approach segmentectomy", "table 2, HCC, segmentectomy: perfused volume > 400 Gy"),
        ("perfused", "mean_gy", ">", 150, "treatment approach lobectomy",
         "table 2, HCC, lobectomy: perfused volume > 150 Gy if whole-liver dose < 150 Gy"),
        ("liver", "mean_gy", "<", 150, "treatment approach lobectomy", "table 2, HCC, lobectomy: ... if whole-liver dose < 150 Gy"),
        ("perfused_normal", "mean_gy", ">=", 88, "treatment approach lobectomy",
         "table 2, HCC, lobectomy: normal perfused liver >= 88 Gy (first treatment)"),
    ] + LUNG,
    "icc-glass": [
        ("tumor", "mean_gy", ">=", 260, NOT_SEG, "table 2, ICC, lobectomy/unilobar/bilobar: tumour dose >= 260 Gy"),
        ("normal_liver", "mean_gy", "<", 75, NOT_SEG, "table 2, ICC, lobectomy, unilobar and bilobar: whole normal liver < 75 Gy"),
    ] + GLASS_NORMAL + [
        ("perfused", "mean_gy", ">", 400, "treatment approach segmentectomy", "table 2, ICC, segmentectomy: perfused volume > 400 Gy"),
        ("perfused", "mean_gy", ">=", 140, "treatment approach lobectomy", "table 2, ICC, lobectomy: perfused volume 140-150 Gy"),
    ] + LUNG,
    "mcrc-glass": [
        ("tumor", "mean_gy", ">=", 189, NOT_SEG, "table 2, mCRC, lobectomy/unilobar/bilobar: tumour dose >= 189 Gy"),
        ("normal_liver", "mean_gy", "<", 75, NOT_SEG, "table 2, mCRC, lobectomy, unilobar and bilobar: whole normal liver < 75 Gy"),
    ] + GLASS_NORMAL + [
        ("perfused", "mean_gy", ">", 400, "treatment approach segmentectomy", "table 2, mCRC, segmentectomy: perfused volume > 400 Gy"),
        ("perfused", "mean_gy", ">=", 140, "treatment approach lobectomy", "table 2, mCRC, lobectomy: perfused volume 140-150 Gy"),
    ] + LUNG,
}


def test_every_preset_is_pinned():
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_each_threshold_is_pinned_to_its_table_row(preset):
    got = [(r.role, r.metric, r.comparison, r.threshold, r.conditions_text, r.row) for r in PRESETS[preset].rules]
    assert len(got) == len(EXPECTED[preset])
    for g, (role, metric, cmp, thr, cond, row) in zip(got, EXPECTED[preset]):
        assert g[:5] == (role, metric, cmp, float(thr), cond), g
        assert row in g[5], (row, g[5])


def test_sources_cite_the_right_table():
    for name, rs in PRESETS.items():
        for r in rs.rules:
            if r.role == "lung":
                assert "not part of the EANM 2022 tables" in r.source and "Ho S et al." in r.source
            elif name.endswith("glass"):
                assert "table 2" in r.source and "Levillain" not in r.source  # only the resin table is Levillain's
            elif "resin" in name:
                assert "table 3" in r.source and "modified from Levillain" in r.source
    breast = PRESETS["breast-liver-metastases"].rules[0].source
    assert "Relationship of radiation dose to efficacy of radioembolization of liver metastasis from breast cancer" in breast
    assert "DOSISPHERE-01" in PRESETS["hcc-glass"].rules[0].source


def test_every_preset_states_its_scope():
    for name, rs in PRESETS.items():
        assert rs.scope["indication"] and rs.scope["microsphere"] and rs.scope["imaging"] and rs.scope["derived_from"], name
    assert PRESETS["breast-liver-metastases"].scope["imaging"] == ["bremsstrahlung_spect"]


def _clinical_case(**clinical):
    act, seg = box_case()
    return run_case(act, seg, params=DosimetryParams(administered_activity_gbq=0.05, lung_shunt_fraction=0.0, **clinical),
                    rules="hcc-glass")


def _ev(r, label_part):
    return [e for e in r.evaluations if label_part in e.rule.label]


def test_bilirubin_rule_needs_the_bilirubin():
    r = _clinical_case(treatment_approach="unilobar", hepatic_reserve_pct=40.0)
    (e,) = _ev(r, "bilirubin > 1.1")
    assert e.status == "N/A" and e.makes_incomplete and e.reason.startswith("bilirubin not given")
    assert r.overall_status in ("INCOMPLETE", "FAIL") and any("bilirubin not given" in x for x in r.incomplete_reasons)
    (e,) = _ev(_clinical_case(treatment_approach="unilobar", hepatic_reserve_pct=40.0, bilirubin_mg_dl=0.8), "bilirubin > 1.1")
    assert e.status == "N/A" and not e.makes_incomplete and "does not apply: bilirubin 0.8 mg/dL" in e.reason
    r = _clinical_case(treatment_approach="unilobar", hepatic_reserve_pct=40.0, bilirubin_mg_dl=1.5)
    (e,) = _ev(r, "bilirubin > 1.1")
    nl = r.segment("normal liver (derived)").metrics["mean_gy"]
    assert e.status == ("PASS" if nl < 50 else "FAIL") and e.measured == pytest.approx(nl)


def test_hepatic_reserve_and_treatment_approach_select_the_rules():
    r = _clinical_case(bilirubin_mg_dl=0.5)
    assert any("treatment approach not given" in x for x in r.incomplete_reasons)  # segmentectomy/lobectomy rules
    assert any("hepatic reserve not given" in x for x in r.incomplete_reasons)
    r = _clinical_case(bilirubin_mg_dl=0.5, treatment_approach="segmentectomy")
    seg_rule = next(e for e in r.evaluations if "segmentectomy" in e.rule.label)
    assert seg_rule.status == "N/A" and "no segment with role perfused volume" in seg_rule.reason
    assert all(e.status == "N/A" and not e.makes_incomplete for e in _ev(r, "tumour mean dose"))  # not applicable
    r = _clinical_case(bilirubin_mg_dl=0.5, treatment_approach="bilobar")
    assert not any("hepatic reserve" in x for x in r.incomplete_reasons)  # the < 120 Gy rule is for unilobar


def _perfused_case():
    shape = (24, 24, 24)
    grid = Grid(shape, (2.0, 2.0, 2.0))
    liver = np.zeros(shape, bool)
    liver[2:-2, 2:-2, 2:-2] = True
    perfused = np.zeros(shape, bool)
    perfused[2:-2, 2:-2, 2:12] = True
    tumour = np.zeros(shape, bool)
    tumour[6:12, 6:12, 4:10] = True
    counts = np.where(perfused, 10.0, 1.0).astype(np.float32) * liver
    counts[tumour] = 60.0
    seg = Segmentation.from_masks({"liver": liver, "right lobe territory": perfused, "tumour": tumour}, grid)
    return Volume(counts, grid=grid), seg, perfused & ~tumour


def test_resin_normal_liver_limit_judges_the_perfused_normal_liver():
    # EANM 2022 table 3 limits the NORMAL PERFUSED liver; the whole non-tumoural liver is lower and
    # used to pass while the perfused normal liver did not.
    act, seg, perfused_normal = _perfused_case()
    r = run_case(act, seg, rules="hcc-resin",
                 params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0, treatment_approach="unilobar"))
    pn = r.segment("perfused normal liver (derived)")
    assert pn.role == "perfused_normal" and pn.note == "perfused volume minus tumours"
    k_a = 49.67 * r.summary["gbq_per_count"]
    expected = k_a * float(act.array[perfused_normal].sum()) / (perfused_normal.sum() * act.voxel_volume_ml * 1.03e-3)
    assert pn.metrics["mean_gy"] == pytest.approx(expected, rel=1e-5)
    (e,) = [e for e in r.evaluations if e.rule.comparison == "<" and e.rule.role == "perfused_normal"]
    assert e.segment_name == "perfused normal liver (derived)" and e.measured == pytest.approx(expected, rel=1e-5)
    assert r.segment("normal liver (derived)").metrics["mean_gy"] < pn.metrics["mean_gy"]


def test_maa_case_with_hcc_resin_judges_its_perfused_normal_segment(maa_paths):
    from TAREDosimetryLib import imaging

    spect = imaging.read_image(maa_paths[0])
    seg = imaging.read_segmentation(maa_paths[1])
    r = run_case(spect, seg, rules="hcc-resin",
                 params=DosimetryParams(administered_activity_gbq=1.8, lung_shunt_fraction=0.06, treatment_approach="unilobar"))
    (e,) = [e for e in r.evaluations if e.rule.comparison == "<" and e.rule.role == "perfused_normal"]
    assert e.segment_name == "perfused normal"  # the segment the case provides, not "whole liver normal"
    pn, wn = r.segment("perfused normal").metrics["mean_gy"], r.segment("whole liver normal").metrics["mean_gy"]
    assert wn < 40 < pn and e.status == "FAIL"  # the whole normal liver would have passed
    assert "perfused normal liver (derived)" not in [s.name for s in r.segments]


def test_presets_are_chosen_from_indication_and_microsphere():
    assert select_rules(None, DosimetryParams())[0].name == "breast-liver-metastases"
    assert select_rules(None, DosimetryParams(indication="hcc", microsphere="glass"))[0].name == "hcc-glass"
    assert select_rules(None, DosimetryParams(indication="icc", microsphere="glass"))[0].name == "icc-glass"
    assert select_rules(None, DosimetryParams(indication="breast"))[0].name == "breast-liver-metastases"
    assert select_rules("hcc-resin", DosimetryParams(indication="mcrc"))[0].name == "hcc-resin"  # given rules win
    with pytest.raises(InputError, match="several threshold presets fit indication hcc: hcc-resin, hcc-glass"):
        select_rules(None, DosimetryParams(indication="hcc"))
    with pytest.raises(InputError, match="no threshold preset fits indication other"):
        select_rules(None, DosimetryParams(indication="other"))


def test_case_outside_the_scope_is_warned():
    act, seg = box_case()
    conc = act.with_array(act.array * np.float32(3e5))
    r = run_case(conc, seg, params=DosimetryParams(calibration="absolute", hours_since_administration=3.0),
                 inputs={"modality": "pet"})
    assert any("Y-90 PET" in w and "Bremsstrahlung SPECT" in w for w in r.scope_warnings), r.scope_warnings
    assert r.scope_warnings[0] in r.warnings
    r = run_case(act, seg, rules="hcc-glass",
                 params=DosimetryParams(administered_activity_gbq=0.05, lung_shunt_fraction=0.0, microsphere="resin", indication="mcrc"))
    assert any("microsphere (resin)" in w for w in r.scope_warnings) and any("indication (mcrc)" in w for w in r.scope_warnings)
    assert run_case(act, seg, params=DosimetryParams(administered_activity_gbq=0.05, lung_shunt_fraction=0.0)).scope_warnings == []


def test_an_inferred_phase_is_used_for_the_scope_check_and_the_scope_table():
    """Review finding 1: an MAA SPECT named as such (phase inferred 'pre', no --phase) judged with
    the breast preset (post-treatment Bremsstrahlung) got no scope warning, and the scope table
    said "imaging not stated" two lines under the banner's "Pre-treatment prediction"."""
    from TAREDosimetryLib.evaluation.scope import scope_lines

    act, seg = box_case()
    inputs = {"modality": "spect", "activity_image": "/data/patient_2_MAA_SPECT.nrrd"}
    p = DosimetryParams(administered_activity_gbq=2.0, residual_fraction=0.02, lung_shunt_fraction=0.06)
    r = run_case(act, seg, params=p, inputs=inputs)
    warned = [w for w in r.scope_warnings if "pre-treatment Tc-99m MAA SPECT (prediction)" in w]
    assert len(warned) == 1 and "Bremsstrahlung" in warned[0]
    assert r.to_dict()["phase"]["phase"] == "pre"
    case_line = dict(scope_lines(r.rules, r.params, r.inputs))["this case"]
    assert "imaging pre-treatment Tc-99m MAA SPECT (prediction) (the input name or description says 'maa')" in case_line
    same = run_case(act, seg, params=p.replace(phase="pre"), inputs=inputs)
    assert same.scope_warnings == r.scope_warnings
    unnamed = run_case(act, seg, params=p, inputs={"modality": "spect", "activity_image": "/data/spect.nrrd"})
    assert unnamed.scope_warnings == []
    assert "not stated" in dict(scope_lines(unnamed.rules, unnamed.params, unnamed.inputs))["this case"]


def test_retired_preset_says_what_replaces_it():
    with pytest.raises(InputError, match="'hcc-glass-bilirubin' was retired.*hcc-glass.*--bilirubin-mg-dl"):
        load_rules("hcc-glass-bilirubin")


def test_rule_conditions_round_trip_and_bad_conditions_are_refused():
    rs = PRESETS["hcc-glass"]
    assert RuleSet.from_dict(json.loads(json.dumps(rs.to_dict()))) == rs
    bad = {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1}
    for when, match in (([{"input": "albumin", "op": ">", "value": 3}], "unknown clinical input"),
                        ([{"input": "treatment_approach", "op": "in", "value": ["lobe"]}], "values must be among"),
                        ([{"input": "bilirubin_mg_dl", "op": "in", "value": 1}], "op must be one of"),
                        ([{"input": "bilirubin_mg_dl", "op": ">"}], "a condition is an object")):
        with pytest.raises(InputError, match=match):
            RuleSet.from_dict({"rules": [dict(bad, when=when)]})


def test_radiobiology_per_role_with_sources_and_eud_for_tumours_only():
    act, seg = box_case()
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=0.05, lung_shunt_fraction=0.0))
    rb = r.to_dict()["radiobiology"]
    assert rb["tumour"]["bed_alpha_beta_gy"] == 10.0 and rb["normal liver"]["bed_alpha_beta_gy"] == 2.5
    assert rb["tumour"]["eud_alpha_per_gy"] == 0.036 and rb["normal liver"]["eud_alpha_per_gy"] is None
    assert all("Dale RG" in v["source"] for v in rb.values()) and "Cremonesi" in rb["tumour"]["source"]
    assert "no Y-90-specific lung values" in rb["lung"]["source"]
    assert np.isfinite(r.segment("tumour").metrics["eud_gy"]) and np.isnan(r.segment("liver").metrics["eud_gy"])


def test_presets_command_lists_every_preset_with_scope_rows_and_sources():
    out = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "presets"], capture_output=True, text=True,
                         cwd=f"{REPO}/TAREDosimetry").stdout
    for name, rs in PRESETS.items():
        assert f"\n{name}" in "\n" + out
        assert all(r.row in out and r.source in out for r in rs.rules)
    assert out.count("scope  derived from:") == len(PRESETS)
    as_json = json.loads(subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "presets", "--json"], capture_output=True,
                                        text=True, cwd=f"{REPO}/TAREDosimetry").stdout)
    assert RuleSet.from_dict(as_json["hcc-glass"]) == PRESETS["hcc-glass"]
