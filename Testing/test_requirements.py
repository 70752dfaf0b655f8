"""Inputs that must not be defaulted: the lung shunt fraction, the scan time of a quantitative (PET)
image, and an administered activity in the wrong unit.  Never a 0.0 Gy lung PASS from a default
LSF, never a silent decay factor of 1, never 1000 times the dose from MBq typed as GBq."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from conftest import box_case
from TAREDosimetryLib import InputError, Segmentation, Volume, run_case
from TAREDosimetryLib.evaluation.requirements import LSF_NOT_GIVEN
from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.volume import Grid

K = 49.67


def test_lsf_not_given_with_lung_rules_is_an_error_not_a_zero_lung_dose():
    act, seg = box_case()
    p = DosimetryParams(administered_activity_gbq=1.0)
    assert p.lung_shunt_fraction is None  # the default is "not given", not 0
    with pytest.raises(InputError, match=r"lung_shunt_fraction \(--lung-shunt-fraction\) is not given.*0 is accepted as an explicit choice"):
        run_case(act, seg, params=p)


def test_lsf_zero_given_explicitly_runs_and_is_recorded():
    act, seg = box_case()
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0, residual_fraction=0.0,
                                                  indication="breast"))
    assert r.segment("lungs (LSF model)").metrics["mean_gy"] == 0.0
    assert any("lung shunt fraction 0 given explicitly" in c for c in r.explicit_choices)
    assert r.to_dict()["explicit_choices"] == r.explicit_choices
    assert not r.input_reasons


def test_lsf_not_given_without_lung_rules_makes_the_case_incomplete():
    # Relative calibration scales to A_adm (1 - residual) (1 - LSF): an LSF not given is taken as 0
    # there (doses too high by 1/(1 - LSF)) and said; no lung entry is invented.
    act, seg = box_case()
    rules = {"name": "t", "rules": [{"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1.0}]}
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, residual_fraction=0.0), rules=rules)
    assert r.overall_status == "INCOMPLETE" and r.incomplete_reasons == [LSF_NOT_GIVEN]
    assert "lungs (LSF model)" not in [s.name for s in r.segments]
    assert any("lung dose not computed" in w for w in r.warnings)
    assert_allclose(r.segment("liver").metrics["activity_gbq"], 1.0, rtol=1e-6)


def test_lsf_not_given_with_image_lung_dose_is_taken_from_the_images_counts():
    """Review finding 19 (lead's decision): with the lung dose from the image and no LSF given, the
    calibration uses the image's LSF C_lung / (C_lung + C_liver), stated as a choice (this case was
    INCOMPLETE with the LSF taken as 0 before)."""
    shape = (20, 24, 28)
    grid = Grid(shape, (2.0, 2.0, 2.0))
    liver = np.zeros(shape, bool)
    liver[2:-2, 2:12, 2:-2] = True
    lung = np.zeros(shape, bool)
    lung[2:-2, 14:-2, 2:-2] = True
    counts = np.where(liver, 100.0, np.where(lung, 5.0, 0.0)).astype(np.float32)
    seg = Segmentation.from_masks({"liver": liver, "lung": lung}, grid)
    rules = {"name": "t", "rules": [{"role": "liver", "metric": "mean_gy", "comparison": ">", "threshold": 1.0},
                                    {"role": "lung", "metric": "mean_gy", "comparison": "<", "threshold": 1e4}]}
    r = run_case(Volume(counts, grid=grid), seg, rules=rules,
                 params=DosimetryParams(administered_activity_gbq=1.0, lung_dose_from="image"))
    assert LSF_NOT_GIVEN not in r.incomplete_reasons
    c_liver, c_lung = 100.0 * liver.sum(), 5.0 * lung.sum()
    assert r.summary["lung_shunt_fraction_used"] == pytest.approx(c_lung / (c_lung + c_liver), rel=1e-9)
    assert any("from the image's counts" in c for c in r.explicit_choices)
    assert any(e.rule.role == "lung" and e.status == "PASS" for e in r.evaluations)


def test_pet_without_scan_time_is_an_error_and_zero_hours_is_an_explicit_choice():
    act, seg = box_case()
    conc = act.with_array(act.array * np.float32(1e5))
    with pytest.raises(InputError, match="needs the time from administration to the scan.*--decay-corrected"):
        run_case(conc, seg, params=DosimetryParams(calibration="absolute"))
    r0 = run_case(conc, seg, params=DosimetryParams(calibration="absolute", hours_since_administration=0.0))
    assert any("0 h given explicitly" in c for c in r0.explicit_choices)
    rd = run_case(conc, seg, params=DosimetryParams(calibration="absolute", image_decay_corrected=True))
    assert_allclose(rd.segment("liver").metrics["activity_gbq"], r0.segment("liver").metrics["activity_gbq"], rtol=1e-6)
    r20 = run_case(conc, seg, params=DosimetryParams(calibration="absolute", hours_since_administration=64.05))
    assert_allclose(r20.segment("liver").metrics["activity_gbq"], 2 * r0.segment("liver").metrics["activity_gbq"], rtol=1e-5)


@pytest.mark.parametrize("activity, hint", [(1800.0, r"1800 MBq = 1\.8 GBq"), (0.01, "10 MBq")])
def test_activity_outside_0_05_to_20_gbq_is_refused_with_the_unit_slip_named(activity, hint):
    with pytest.raises(InputError, match=f"administered_activity_gbq {activity:g} GBq is outside the 0.05-20 GBq.*{hint}"):
        DosimetryParams(administered_activity_gbq=activity)


def test_unusual_activity_runs_on_request_with_a_warning():
    act, seg = box_case()
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=25.0, lung_shunt_fraction=0.0,
                                                  allow_unusual_activity=True))
    assert any("25 GBq is outside the 0.05-20 GBq" in w for w in r.warnings)
    assert_allclose(r.segment("liver").metrics["activity_gbq"], 25.0, rtol=1e-6)
    # the limits themselves are accepted without a word
    DosimetryParams(administered_activity_gbq=0.05)
    DosimetryParams(administered_activity_gbq=20.0)


def test_params_files_of_older_runs_keep_their_explicit_values():
    # A metrics.json written before these changes holds lung_shunt_fraction 0.0 and
    # hours_since_administration 0.0 explicitly: they stay explicit values.
    p = DosimetryParams.from_dict({"administered_activity_gbq": 1.8, "lung_shunt_fraction": 0.0,
                                   "hours_since_administration": 0.0})
    assert p.lung_shunt_fraction == 0.0 and p.hours_since_administration == 0.0


def test_batch_refuses_a_pet_row_without_scan_time_and_goes_on(tmp_path):
    import csv
    import os

    from TAREDosimetryLib.cli import main
    from TAREDosimetryLib.imaging.images import write_image

    act, seg = box_case()
    pet = str(tmp_path / "pet.nrrd")
    write_image(act.with_array(act.array * np.float32(3e5)), pet)
    labels = str(tmp_path / "labels.nrrd")
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    write_image(act.with_array(lab), labels)
    p, lb = os.path.basename(pet), os.path.basename(labels)
    (tmp_path / "cases.csv").write_text(
        "case_id,pet,segmentation,labels,hours_since_administration,image_decay_corrected\n"
        f'notime,{p},{lb},"1=liver,2=tumour",,\n'
        f'zero,{p},{lb},"1=liver,2=tumour",0,\n'
        f'corrected,{p},{lb},"1=liver,2=tumour",,true\n'
    )
    out = tmp_path / "batch"
    assert main(["batch", "--manifest", str(tmp_path / "cases.csv"), "--out", str(out), "--quiet", "--no-report"]) == 3
    with open(out / "batch_summary.csv") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert rows["notime"]["status"] == "failed" and "needs the time from administration" in rows["notime"]["error"]
    assert rows["zero"]["status"] == rows["corrected"]["status"] == "ok"
    # no lung segment, image lung dose: the lung rules are N/A, so the case is not a PASS
    assert rows["zero"]["overall"] in ("INCOMPLETE", "FAIL") and "no segment with role lung" in rows["zero"]["incomplete_reasons"]
