"""Segments too small for the image resolution are flagged (never silently trusted), and an
optional recovery-coefficient table corrects tumour means BESIDE the uncorrected value."""

import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from conftest import box_case
from TAREDosimetryLib import InputError, run_case
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.evaluation.partial_volume import (
    equivalent_diameter_mm,
    partial_volume_reasons,
    read_recovery_coefficients,
    recovery_coefficient,
)
from TAREDosimetryLib.imaging.images import write_image
from TAREDosimetryLib.params import DosimetryParams

P = dict(administered_activity_gbq=1.0, lung_shunt_fraction=0.0, residual_fraction=0.0)
RC_TABLE = ((10.0, 0.30), (13.0, 0.45), (17.0, 0.60), (22.0, 0.70), (28.0, 0.78), (37.0, 0.85))  # NEMA-IEC-like


def test_equivalent_diameter_of_a_sphere():
    assert_allclose(equivalent_diameter_mm(4 / 3 * math.pi * 10.0 ** 3 / 1000.0), 20.0, rtol=1e-12)


@pytest.mark.parametrize(
    "volume_ml, spacing, fwhm, flagged",
    [
        (1.0, (4.42, 4.42, 2.5), None, True),    # 20.5 activity voxels < 30
        (5.0, (4.42, 4.42, 2.5), None, False),   # 102 voxels, d = 21.2 mm > 2 x 4.42 mm
        (5.0, (4.42, 4.42, 2.5), 15.0, True),    # d = 21.2 mm < 2 x 15 mm FWHM
        (0.9, (2.0, 2.0, 2.0), None, False),     # 112 voxels, d = 12.0 mm > 4 mm
        (0.03, (1.0, 1.0, 1.0), None, False),    # exactly 30 voxels, d = 3.86 mm > 2 mm: not flagged
        (0.029, (1.0, 1.0, 1.0), None, True),    # 29 voxels
        (0.5, (8.0, 8.0, 2.0), None, True),      # 3.9 voxels (and d = 9.8 mm < 2 x 8 mm: the largest edge counts)
    ],
)
def test_the_partial_volume_rule(volume_ml, spacing, fwhm, flagged):
    n_vox, d, reasons = partial_volume_reasons(volume_ml, spacing, fwhm)
    assert_allclose(n_vox, volume_ml * 1000.0 / np.prod(spacing), rtol=1e-12)
    expected = n_vox < 30 or d < 2 * max(spacing) or (fwhm is not None and d < 2 * fwhm)
    assert bool(reasons) == expected == flagged


def test_small_tumour_is_flagged_on_its_row_in_the_rule_table_and_in_the_report(tmp_path):
    act, seg = box_case()  # tumour 4x4x4 voxels of 2 mm: 64 voxels, d = 9.9 mm
    r = run_case(act, seg, params=DosimetryParams(**P))
    assert not r.segment("tumour").pv_warning
    r = run_case(act, seg, params=DosimetryParams(resolution_fwhm_mm=8.0, **P))  # 9.9 mm < 16 mm
    t = r.segment("tumour")
    assert t.pv_warning and "partial volume" in t.warnings[0] and "2 x 8 mm FWHM" in t.warnings[0]
    assert_allclose(t.metrics["activity_voxels"], 64.0, rtol=1e-9)
    assert not r.segment("liver").pv_warning
    ev = [e for e in r.evaluations if e.segment_name == "tumour"]
    assert ev and all(e.warnings and e.status in ("PASS", "FAIL") for e in ev)  # next to the PASS/FAIL, status unchanged
    d = r.to_dict()
    row = next(s for s in d["segments"] if s["name"] == "tumour")
    assert row["pv_warning"] is True and row["warnings"] == t.warnings
    assert next(e for e in d["evaluations"] if e["segment"] == "tumour")["warnings"] == t.warnings
    assert "(partial volume)" in r.summary_line()
    assert any("small for the image resolution" in w for w in r.warnings)
    pytest.importorskip("matplotlib")
    from TAREDosimetryLib.reporting.html import write_report_html

    text = open(write_report_html(r, str(tmp_path / "r.html"), segmentation=seg), encoding="utf-8").read()
    assert '<span class="pv">partial volume</span>' in text and "2 x 8 mm FWHM" in text


def test_rc_table_files_csv_and_json(tmp_path):
    c = tmp_path / "rc.csv"
    c.write_text("diameter_mm,rc\n" + "".join(f"{x},{rc}\n" for x, rc in RC_TABLE))
    j = tmp_path / "rc.json"
    j.write_text(json.dumps({"volume_ml": [0.5, 2.0, 10.0], "rc": [0.4, 0.6, 0.8]}))
    assert read_recovery_coefficients(str(c)) == (RC_TABLE, "diameter_mm")
    assert read_recovery_coefficients(str(j)) == (((0.5, 0.4), (2.0, 0.6), (10.0, 0.8)), "volume_ml")
    assert_allclose(recovery_coefficient(RC_TABLE, 15.0)[0], 0.525, rtol=1e-12)
    assert recovery_coefficient(RC_TABLE, 50.0) == (0.85, True)


@pytest.mark.parametrize(
    "content, match",
    [
        ("diameter_mm,rc\n10,0.3\n", "at least 2"),
        ("size,rc\n10,0.3\n20,0.6\n", "columns must be diameter_mm or volume_ml"),
        ("diameter_mm,rc\n10,0.3\n20,2.0\n", r"RC at 20 must be in \(0, 1.5\]"),
        ("diameter_mm,rc\n10,x\n20,0.5\n", "2 numbers each"),
        ("diameter_mm,rc\n10,0.3\n10,0.5\n", "distinct"),
    ],
)
def test_bad_rc_files_name_the_file(tmp_path, content, match):
    f = tmp_path / "bad_rc.csv"
    f.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        read_recovery_coefficients(str(f))
    assert str(info.value).count("bad_rc.csv") == 1, str(info.value)  # named once (review finding 10b)
    assert "malformed" not in str(info.value)


def test_rc_corrected_mean_is_beside_the_uncorrected_one_and_rules_judge_the_uncorrected():
    act, seg = box_case()
    p = DosimetryParams(recovery_coefficients=RC_TABLE, **P)
    r = run_case(act, seg, params=p)
    t = r.segment("tumour").metrics
    rc = recovery_coefficient(RC_TABLE, t["equivalent_diameter_mm"])[0]  # 9.9 mm: below the table, end value
    assert_allclose(t["recovery_coefficient"], rc) and rc == 0.30
    assert_allclose(t["mean_gy_rc_corrected"], t["mean_gy"] / 0.30, rtol=1e-12)
    assert any("outside the RC table" in w for w in r.segment("tumour").warnings)
    assert "mean_gy_rc_corrected" not in r.segment("liver").metrics  # tumours only
    ev = next(e for e in r.evaluations if e.segment_name == "tumour")
    assert ev.rule.metric == "mean_gy" and ev.measured == pytest.approx(t["mean_gy"])
    # ...unless a rule names the corrected value (the user's explicit choice)
    rules = {"name": "rc", "rules": [{"role": "tumor", "metric": "mean_gy_rc_corrected", "comparison": ">", "threshold": 1.0}]}
    ev2 = run_case(act, seg, params=p, rules=rules).evaluations[0]
    assert ev2.measured == pytest.approx(t["mean_gy_rc_corrected"])
    no_table = run_case(act, seg, params=DosimetryParams(**P), rules=rules)
    assert no_table.overall_status == "INCOMPLETE" and "mean_gy_rc_corrected is not available" in no_table.incomplete_reasons[0]


def test_cli_reads_the_rc_table_and_records_it(tmp_path):
    act, seg = box_case()
    spect = str(tmp_path / "spect.nrrd")
    write_image(act, spect)
    labels = str(tmp_path / "labels.nrrd")
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    write_image(act.with_array(lab), labels)
    rc = tmp_path / "rc.csv"
    rc.write_text("volume_ml,rc\n0.1,0.2\n1.0,0.5\n10,0.8\n")
    out = tmp_path / "out"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--administered-activity-gbq",
                 "1", "--lung-shunt-fraction", "0", "--recovery-coefficients", str(rc), "--resolution-fwhm-mm", "12",
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["parameters"]["recovery_coefficients"] == [[0.1, 0.2], [1.0, 0.5], [10.0, 0.8]]
    assert m["parameters"]["recovery_coefficient_axis"] == "volume_ml" and m["parameters"]["resolution_fwhm_mm"] == 12.0
    t = next(s for s in m["segments"] if s["name"] == "tumour")
    assert t["pv_warning"] and t["mean_gy_rc_corrected"] > t["mean_gy"]


def test_manifest_column_reads_the_rc_file_relative_to_the_manifest(tmp_path):
    from TAREDosimetryLib.batch import read_manifest

    (tmp_path / "rc").mkdir()
    (tmp_path / "rc" / "nema.csv").write_text("diameter_mm,rc\n" + "".join(f"{x},{rc}\n" for x, rc in RC_TABLE))
    (tmp_path / "cases.csv").write_text(
        "case_id,spect,segmentation,recovery_coefficients,resolution_fwhm_mm,microsphere,allow_unusual_activity\n"
        "a,s.nrrd,seg.nrrd,rc/nema.csv,15,glass,true\nb,s.nrrd,seg.nrrd,rc/missing.csv,,,\n")
    a, b = read_manifest(str(tmp_path / "cases.csv"))
    assert a["params_changes"] == {"recovery_coefficients": RC_TABLE, "recovery_coefficient_axis": "diameter_mm",
                                   "resolution_fwhm_mm": 15.0, "microsphere": "glass", "allow_unusual_activity": True}
    assert "missing.csv" in b["error"] and "cannot be read" in b["error"]
