"""Role guessing from segment names; threshold presets, rule files and their evaluation."""

import json

import pytest

from TAREDosimetryLib import InputError
from TAREDosimetryLib.evaluation.results import SegmentResult
from TAREDosimetryLib.evaluation.roles import assign_roles, guess_role, parse_role_assignments
from TAREDosimetryLib.evaluation.rules import DEFAULT_PRESET, PRESETS, RuleSet, evaluate_rules, load_rules


@pytest.mark.parametrize(
    "name, role",
    [
        ("Liver", "liver"), ("liver", "liver"), ("whole liver", "liver"), ("Tumor 1", "tumor"), ("tumour_2", "tumor"),
        ("lesion3", "tumor"), ("Met 2", "tumor"), ("liver metastasis", "tumor"), ("HCC", "tumor"), ("Lung left", "lung"),
        ("lung_upper_lobe_right", "lung"), ("Lungs", "lung"), ("right lobe", "right_lobe"), ("Left_Lobe", "left_lobe"),
        ("whole liver normal", "normal_liver"), ("normal liver", "normal_liver"), ("Non-tumoral liver", "normal_liver"),
        ("perfused normal", "perfused_normal"), ("perfused volume", "perfused"), ("Perfused territory", "perfused"),
        ("gallbladder", "other"), ("spleen", "other"), ("Segment_1", "other"),
    ],
)
def test_role_guesser_reads_common_names(name, role):
    assert guess_role(name) == role


def test_assign_roles_overrides_case_insensitively_and_checks_names():
    roles = assign_roles(["Liver", "Segment_1"], {"segment_1": "Tumour"})
    assert roles == {"Liver": "liver", "Segment_1": "tumor"}
    with pytest.raises(InputError, match="no such segment"):
        assign_roles(["Liver"], {"Lvier": "liver"})
    with pytest.raises(InputError, match="unknown role"):
        assign_roles(["Liver"], {"Liver": "kidney"})


def test_parse_role_assignments():
    assert parse_role_assignments(["a=b=tumor", "Lung left=lung"]) == {"a=b": "tumor", "Lung left": "lung"}
    with pytest.raises(InputError, match="NAME=ROLE"):
        parse_role_assignments(["tumour"])


def test_default_preset_is_breast_liver_metastases_at_79_5_gy():
    rs = load_rules()
    assert rs.name == DEFAULT_PRESET == "breast-liver-metastases"
    tumour = [r for r in rs.rules if r.role == "tumor"][0]
    assert (tumour.metric, tumour.comparison, tumour.threshold) == ("mean_gy", ">", 79.5)
    assert "Deipolyi" in tumour.source and "167" in tumour.source


def test_every_preset_holds_lung_rules_and_cites_every_rule():
    # The threshold values themselves are pinned to their table rows in test_presets.py.
    for rs in PRESETS.values():
        by_role = {(r.role, r.metric): r for r in rs.rules}
        assert by_role[("lung", "mean_gy")].threshold == 30
        assert by_role[("lung", "cumulative_mean_gy")].threshold == 50
        assert all(r.source and r.row for r in rs.rules), rs.name


def _seg(name, role, **metrics):
    return SegmentResult(name, role, metrics, None)


def test_evaluation_pass_fail_and_not_applicable():
    rs = PRESETS["hcc-resin"]
    ev = evaluate_rules(rs, [_seg("T1", "tumor", mean_gy=130.0), _seg("T2", "tumor", mean_gy=99.9)])
    status = {(e.segment_name, e.rule.role): e.status for e in ev}
    assert status[("T1", "tumor")] == "PASS"
    assert status[("T2", "tumor")] == "FAIL"
    assert status[("", "perfused_normal")] == "N/A"
    na = next(e for e in ev if e.rule.role == "perfused_normal" and e.rule.comparison == "<")
    assert "no segment with role perfused normal liver" in na.reason and na.makes_incomplete
    d = ev[0].to_dict()
    assert set(d) >= {"segment", "rule", "measured", "threshold", "status", "source", "reason", "row", "optional", "warnings"}


def test_rule_files_json_and_toml(tmp_path):
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"name": "centre", "rules": [{"role": "tumour", "metric": "D70", "comparison": ">=", "threshold": 100, "source": "local"}]}))
    rs = load_rules(str(j))
    assert rs.name == "centre" and rs.rules[0].role == "tumor" and rs.rules[0].metric == "D70"
    t = tmp_path / "r.toml"
    t.write_text('name = "toml rules"\n[[rules]]\nsegment = "Tumor 1"\nmetric = "mean_gy"\ncomparison = ">"\nthreshold = 79.5\n')
    rs2 = load_rules(str(t))
    assert rs2.rules[0].segment == "Tumor 1"


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "malformed"),
        (json.dumps({"rules": []}), "empty"),
        (json.dumps({"rules": [{"role": "tumor", "metric": "mean_gy", "comparison": "=>", "threshold": 1}]}), "comparison must be one of"),
        (json.dumps({"rules": [{"role": "tumor", "metric": "average", "comparison": ">", "threshold": 1}]}), "unknown metric"),
        (json.dumps({"rules": [{"role": "kidney", "metric": "mean_gy", "comparison": ">", "threshold": 1}]}), "unknown role"),
        (json.dumps({"rules": [{"role": "tumor", "metric": "mean_gy", "comparison": ">"}]}), "lacks 'threshold'"),
        (json.dumps({"rules": [{"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": "high"}]}), "must be a number"),
        (json.dumps({"rules": [{"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1, "colour": 2}]}), "unknown field"),
        (json.dumps([1, 2]), "expected an object"),
    ],
)
def test_malformed_rule_files_name_the_file_and_problem(tmp_path, content, match):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        load_rules(str(f))
    assert "bad.json" in str(info.value)


def test_unknown_preset_and_missing_rule_file():
    with pytest.raises(InputError, match="unknown threshold preset 'hcc'.*presets: breast-liver-metastases"):
        load_rules("hcc")
    with pytest.raises(InputError, match="rule file not found"):
        load_rules("/nonexistent/rules.json")


def test_ruleset_round_trip():
    rs = PRESETS["hcc-glass"]
    assert RuleSet.from_dict(rs.to_dict()) == rs


@pytest.mark.parametrize("name", ["background liver", "Background_Liver", "background-liver"])
def test_background_liver_is_guessed_as_normal_liver_not_ignored(name):
    # "background liver" is the usual name of the non-tumoural liver; ignoring it silently
    # dropped its metrics and left the normal-liver rules N/A.
    assert guess_role(name) == "normal_liver"
    assert guess_role("background") == "ignore"


def test_rule_file_with_a_repeated_rule_is_refused(tmp_path):
    # A duplicate was evaluated and counted twice in "n/m rules pass".
    rule = {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 100}
    f = tmp_path / "dup.json"
    f.write_text(json.dumps({"rules": [rule, {**rule, "threshold": 120}, dict(rule, label="again")]}))
    with pytest.raises(InputError, match="dup.json: rule 3 repeats rule 1"):
        load_rules(str(f))
