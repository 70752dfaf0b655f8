"""Node-free helpers of the Slicer module (TAREDosimetryLib.mrmlconvert), tested without Slicer."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.evaluation.dvh import DVH
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.evaluation.rules import PRESETS, Rule, RuleEvaluation, RuleSet
from TAREDosimetryLib.volume import Grid


# -- geometry ----------------------------------------------------------------------------------

def _oblique_ijk_to_ras():
    # A rotated, anisotropic grid: columns are the i, j, k axes in RAS times their spacing.
    c, s = math.cos(0.3), math.sin(0.3)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    m = np.eye(4)
    m[:3, :3] = rot @ np.diag([4.42, 4.42, 2.5])
    m[:3, 3] = (-120.0, 80.0, -300.0)
    return m


def test_identity_ras_grid_has_flipped_lps_direction():
    g = mc.grid_from_ijk_to_ras(np.diag([2.0, 3.0, 4.0, 1.0]), (5, 6, 7))
    assert g.shape == (5, 6, 7)
    assert_allclose(g.spacing_mm, (2.0, 3.0, 4.0))
    assert_allclose(np.asarray(g.direction).reshape(3, 3), np.diag([-1.0, -1.0, 1.0]))
    assert_allclose(g.origin_mm, (0.0, 0.0, 0.0), atol=1e-12)


def test_grid_round_trip_preserves_ijk_to_ras():
    m = _oblique_ijk_to_ras()
    g = mc.grid_from_ijk_to_ras(m, (10, 20, 30))
    assert_allclose(mc.ijk_to_ras_from_grid(g), m, atol=1e-9)
    assert_allclose(g.spacing_mm, (4.42, 4.42, 2.5))


def test_voxel_maps_to_the_same_physical_point_in_ras_and_lps():
    m = _oblique_ijk_to_ras()
    g = mc.grid_from_ijk_to_ras(m, (10, 20, 30))
    ijk = np.array([3.0, 7.0, 2.0, 1.0])
    ras = m @ ijk
    lps = g.ijk_to_lps @ ijk
    assert_allclose(lps[:3], (-ras[0], -ras[1], ras[2]), atol=1e-9)


def test_lps_origin_grid_gives_ras_matrix_with_negated_x_y():
    g = Grid((2, 2, 2), (1.0, 1.0, 1.0), (10.0, 20.0, 30.0))
    m = mc.ijk_to_ras_from_grid(g)
    assert_allclose(m[:3, 3], (-10.0, -20.0, 30.0))


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.eye(3), np.full((4, 4), np.nan)])
def test_invalid_ijk_to_ras_is_rejected(bad):
    with pytest.raises(InputError):
        mc.grid_from_ijk_to_ras(bad, (2, 2, 2))


# -- roles -----------------------------------------------------------------------------------------

def test_role_rows_guess_then_keep_saved_choice():
    rows = mc.role_rows(["Liver", "Tumor 1", "Lungs", "thing"], saved_roles={"thing": "ignore", "Liver": "bogus"})
    assert rows == [("Liver", "liver"), ("Tumor 1", "tumor"), ("Lungs", "lung"), ("thing", "ignore")]


def test_roles_from_rows_accepts_aliases_and_rejects_unknown():
    assert mc.roles_from_rows([("A", "tumour"), ("B", "Normal liver")]) == {"A": "tumor", "B": "normal_liver"}
    with pytest.raises(InputError, match="B"):
        mc.roles_from_rows([("B", "spleen")])


# -- rules -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_rule_rows_round_trip_every_preset(preset):
    rs = PRESETS[preset]
    back = mc.ruleset_from_rows(rs.name, mc.rule_rows(rs), rs.description)
    assert back.rules == rs.rules


def test_ruleset_from_rows_reports_bad_threshold_and_empty_table():
    row = ["tumor", "", "mean_gy", ">", "lots", "Gy", "efficacy", "", "", "", "", ""]
    with pytest.raises(InputError, match="threshold"):
        mc.ruleset_from_rows("x", [row])
    bad_when = row[:4] + ["100"] + row[5:10] + ["{not json"] + row[11:]
    with pytest.raises(InputError, match="rule row 1: conditions .* must be JSON"):
        mc.ruleset_from_rows("x", [bad_when])
    bad_optional = row[:4] + ["100"] + row[5:9] + ["maybe"] + row[10:]
    with pytest.raises(InputError, match="optional must be true or false"):
        mc.ruleset_from_rows("x", [bad_optional])
    with pytest.raises(InputError, match="empty"):
        mc.ruleset_from_rows("x", [[""] * len(mc.RULE_COLUMNS)])


def test_edited_rule_row_changes_the_threshold():
    rows = mc.rule_rows(PRESETS["breast-liver-metastases"])
    rows[0][mc.RULE_COLUMNS.index("threshold")] = "100"
    rs = mc.ruleset_from_rows("edited", rows)
    assert rs.rules[0].threshold == 100.0


# -- display ---------------------------------------------------------------------------------------

def test_dose_window_ignores_a_single_hot_voxel():
    dose = np.zeros((10, 10, 10))
    dose[:5] = 50.0
    dose[0, 0, 0] = 1e4
    lo, hi = mc.dose_window_gy(dose)
    assert lo == 0.0
    assert 49.0 < hi < 1e4


def test_dose_window_of_empty_dose_is_not_empty():
    assert mc.dose_window_gy(np.zeros((3, 3, 3))) == (0.0, 1.0)
    assert mc.dose_window_gy((0.0, 0.0)) == (0.0, 1.0)
    assert mc.dose_window_gy((0.0, 80.0)) == (0.0, 80.0)


def _ev(seg, status, metric="mean_gy", comparison=">", threshold=79.5, measured=50.0):
    return RuleEvaluation(Rule("tumor", metric, comparison, threshold, "Gy"), seg, measured, status)


def test_a_segment_fails_when_any_of_its_rules_fails():
    evs = [_ev("T1", "PASS"), _ev("T1", "FAIL"), _ev("T2", "PASS"), _ev("", "N/A")]
    assert mc.segment_status(evs) == {"T1": "FAIL", "T2": "PASS"}
    colors = mc.status_colors(evs)
    assert colors == {"T1": mc.FAIL_COLOR, "T2": mc.PASS_COLOR}


def _box_result(rules, **params):
    from conftest import box_case

    from TAREDosimetryLib.params import DosimetryParams
    from TAREDosimetryLib.pipeline import run_case

    act, seg = box_case()
    return run_case(act, seg, params=DosimetryParams(**dict(dict(administered_activity_gbq=1.0, residual_fraction=0.0), **params)), rules=rules)


def _one_rule(threshold, comparison=">", role="tumor"):
    return RuleSet.from_dict({"name": "one", "rules": [
        {"role": role, "metric": "mean_gy", "comparison": comparison, "threshold": threshold, "unit": "Gy"}]})


def test_panel_lines_say_a_failure_as_the_report_banner_does():
    """The panel's verdict is the engine's wording ("FAIL: tumour mean dose 48.3 Gy < 20000 Gy"), never the
    old "mean_gy 48.3 > 20000" form."""
    from TAREDosimetryLib.reporting.wording import banner

    r = _box_result(_one_rule(20000.0), lung_shunt_fraction=0.05)
    lines = mc.status_lines(r)
    assert r.overall_status == "FAIL" and lines[0] == banner(r)["headline"]
    measured = r.segment("tumour").metrics["mean_gy"]
    assert lines[0] == f"FAIL: tumour mean dose {measured:.1f} Gy < 20000 Gy"
    assert "mean_gy" not in "\n".join(lines)
    assert lines[1] == "0 of 1 rule evaluations met, 1 failed (rule set one)"
    cols = {n: v for n, _, v in mc.evaluation_columns(r.evaluations)}
    assert cols["result"] == [lines[0]]
    status = dict(zip(*[c[2] for c in mc.case_status_columns(r)]))
    assert status["verdict"] == lines[0] and status["overall status"] == "FAIL"


def test_panel_lines_never_say_pass_with_an_unevaluated_rule_or_a_defaulted_input():
    r = _box_result(_one_rule(1.0), lung_shunt_fraction=None)  # LSF not given: INCOMPLETE with the reason
    lines = mc.status_lines(r)
    assert r.overall_status == "INCOMPLETE" and lines[0].startswith("INCOMPLETE: lung shunt fraction not given")
    failed = _box_result(_one_rule(20000.0), lung_shunt_fraction=None)
    lines = mc.status_lines(failed)
    assert lines[0].startswith("FAIL: tumour mean dose") and lines[1].startswith("Also incomplete: lung shunt fraction not given")
    passed = _box_result(_one_rule(1.0), lung_shunt_fraction=0.05)
    assert mc.status_lines(passed)[0] == "PASS: every rule judged was met (1 rule evaluation)"
    assert mc.status_color("INCOMPLETE") == mc.INCOMPLETE_COLOR not in (mc.PASS_COLOR, mc.FAIL_COLOR)


# -- tables ----------------------------------------------------------------------------------------

def _seg(name, role, doses, **metrics):
    dvh = DVH(np.asarray(doses, dtype=float), voxel_volume_ml=0.5, name=name)
    m = {"volume_ml": dvh.volume_ml, "mean_gy": dvh.mean_gy}
    m.update(metrics)
    return SimpleNamespace(name=name, role=role, metrics=m, dvh=dvh)


def test_metrics_columns_fill_missing_metrics_with_nan():
    segs = [_seg("Liver", "liver", [10, 20]), _seg("Tumor", "tumor", [100, 120], tn_ratio=6.0)]
    cols = mc.metrics_columns(segs, {"Tumor": "PASS"})
    names = [c[0] for c in cols]
    assert names[:3] == ["segment", "role", "status"]
    byname = {c[0]: c for c in cols}
    assert byname["status"][2] == ["", "PASS"]
    assert byname["mean_gy"][1] == "Gy" and byname["volume_ml"][1] == "mL"
    assert math.isnan(byname["tn_ratio"][2][0]) and byname["tn_ratio"][2][1] == 6.0


def test_dvh_columns_start_at_100_percent_and_reach_zero():
    segs = [_seg("A", "liver", [10.0] * 4), _seg("B", "tumor", [0.0, 50.0, 100.0, 150.0])]
    dose, cols = mc.dvh_columns(segs, step_gy=1.0)
    assert dose[0] == 0.0 and dose[-1] >= 150.0
    (na, _, va), (nb, _, vb) = cols
    assert (na, nb) == ("A", "B")
    assert va[0] == 100.0 and vb[0] == 100.0
    assert va[np.searchsorted(dose, 11.0)] == 0.0
    assert_allclose(vb[np.searchsorted(dose, 100.0)], 50.0)
    assert np.all(np.diff(vb) <= 1e-12)


def test_dvh_columns_limit_rows_and_make_unique_names():
    segs = [_seg("T/1", "tumor", [0.0, 1e5]), _seg("T_1", "tumor", [1.0])]
    dose, cols = mc.dvh_columns(segs, step_gy=0.1, max_points=500)
    assert len(dose) <= 502
    assert cols[0][0] == "T_1" and cols[1][0] == "T_1 (2)"


def test_threshold_lines_only_for_gray_rules_without_duplicates():
    rs = RuleSet("x", (
        Rule("tumor", "mean_gy", ">", 79.5, "Gy"),
        Rule("tumor", "d70_gy", ">", 79.5, "Gy"),
        Rule("tumor", "v100_pct", ">", 50, "%"),
        Rule("lung", "mean_gy", "<", 30, "Gy"),
    ))
    assert [t for _, t in mc.threshold_lines_gy(rs)] == [79.5, 30.0]


def test_evaluation_columns_have_one_row_per_evaluation():
    cols = dict((n, v) for n, _, v in mc.evaluation_columns([_ev("T1", "FAIL"), _ev("", "N/A", measured=float("nan"))]))
    assert cols["status"] == ["FAIL", "N/A"]
    assert cols["threshold"] == [79.5, 79.5]
    assert math.isnan(cols["measured"][1])


# -- segments on their own geometry (oriented image data of a segment's binary labelmap) ------------

def test_grid_of_an_extent_starts_at_its_first_voxel():
    m = _oblique_ijk_to_ras()
    g = mc.grid_from_image_to_world(m, (3, 12, -2, 7, 5, 9))
    assert g.shape == (5, 10, 10)
    whole = mc.grid_from_ijk_to_ras(m, (20, 20, 20))
    assert_allclose(g.origin_mm, (whole.ijk_to_lps @ [3, -2, 5, 1])[:3], atol=1e-9)
    assert g.direction == whole.direction and g.spacing_mm == whole.spacing_mm
    with pytest.raises(InputError, match="empty extent"):
        mc.grid_from_image_to_world(m, (0, -1, 0, 0, 0, 0))


def test_union_extent_ignores_empty_segments():
    assert mc.union_extent([(0, 4, 2, 3, 1, 1), (0, -1, 0, -1, 0, -1), (-2, 1, 3, 8, 0, 5)]) == (-2, 4, 2, 8, 0, 5)
    assert mc.union_extent([(0, -1, 0, -1, 0, -1)]) is None
    assert mc.extent_shape((0, 4, 2, 3, 1, 1)) == (1, 2, 5)


def test_lattice_offset_finds_integer_shifts_and_refuses_fractional_ones():
    m = _oblique_ijk_to_ras()
    shifted = m.copy()
    shifted[:3, 3] = m[:3, 3] + m[:3, :3] @ np.array([2.0, -3.0, 1.0])
    assert mc.lattice_offset(m, shifted) == (2, -3, 1)
    half = m.copy()
    half[:3, 3] = m[:3, 3] + m[:3, :3] @ np.array([0.5, 0.0, 0.0])
    assert mc.lattice_offset(m, half) is None
    finer = m.copy()
    finer[:3, :3] *= 0.5
    assert mc.lattice_offset(m, finer) is None


def test_place_in_extent_puts_voxels_where_they_belong():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # extent i 1..4, j 0..2, k 5..6
    out = mc.place_in_extent(a, (1, 4, 0, 2, 5, 6), (0, 5, -1, 2, 5, 7))
    assert out.shape == (3, 4, 6)
    assert_allclose(out[0:2, 1:4, 1:5], a)
    assert out.sum() == a.sum()
    with pytest.raises(InputError, match="inside"):
        mc.place_in_extent(a, (1, 4, 0, 2, 5, 6), (2, 5, 0, 2, 5, 6))


def test_status_colours_and_lines_show_incomplete_in_its_own_colour():
    assert len({mc.status_css_color(s) for s in ("PASS", "FAIL", "INCOMPLETE", "N/A")}) == 4
    r = _box_result(_one_rule(1.0), lung_shunt_fraction=None)
    r.summary["dose_device"] = "CPU"
    r.warnings.append("w1")
    lines = mc.status_lines(r)
    assert lines[0] == "INCOMPLETE: " + "; ".join(r.incomplete_reasons)
    assert "Dose computed on: CPU" in lines and lines[-1] == "Warning: w1"
