"""Clinical inputs that used to be silently defaulted (review findings 3, 4, 16, 17): the lung mass
of the LSF model without lung segments, the prior lung dose, the residual fraction, the indication.
Not given, each is said (INCOMPLETE with the reason, or an N/A with it); given, even as 0, each is
an explicit choice recorded in the result."""

import math

import pytest
from numpy.testing import assert_allclose

from conftest import box_case
from TAREDosimetryLib import DosimetryParams, run_case
from TAREDosimetryLib.evaluation.requirements import (
    INDICATION_NOT_GIVEN, LUNG_MASS_NOT_MEASURED, PRIOR_LUNG_DOSE_NOT_GIVEN, RESIDUAL_NOT_GIVEN,
)

K = 49.67
LUNG = "lungs (LSF model)"
#: Every input a complete case needs, given (the box case has no lung segment).
COMPLETE = dict(administered_activity_gbq=2.0, residual_fraction=0.02, lung_shunt_fraction=0.06, indication="breast",
                default_lung_mass_g=1000.0, prior_lung_dose_gy=0.0)


def _run(rules=None, **changes):
    act, seg = box_case(tumour_uptake=6.0)
    return run_case(act, seg, params=DosimetryParams(**dict(COMPLETE, **changes)), rules=rules)


def _evaluation(result, label):
    return next(e for e in result.evaluations if e.rule.label == label)


def test_a_case_with_every_input_given_is_complete():
    r = _run()
    assert r.overall_status == "PASS" and r.incomplete_reasons == []
    assert any("prior lung dose 0 Gy given" in c for c in r.explicit_choices)
    assert any("lung mass 1000 g given" in c for c in r.explicit_choices)


def test_lung_rules_judged_on_the_conventional_lung_mass_make_the_case_incomplete():
    """Finding 3: A 3 GBq, R 0.02, LSF 0.2 without lung segments: 49.67 x 3 x 0.98 x 0.2 / 1.0 kg =
    29.2 Gy (PASS < 30 Gy) on the conventional 1000 g, but 36.5 Gy (FAIL) for 800 g lungs: the
    assumed mass decides the verdict, so it must not read PASS."""
    r = _run(administered_activity_gbq=3.0, lung_shunt_fraction=0.2, default_lung_mass_g=None)
    lung = r.segment(LUNG)
    assert_allclose(lung.metrics["mean_gy"], K * 3.0 * 0.98 * 0.2 / 1.0, rtol=1e-6)
    assert _evaluation(r, "lung mean dose per treatment").status == "PASS"
    assert r.overall_status == "INCOMPLETE" and LUNG_MASS_NOT_MEASURED in r.incomplete_reasons
    assert LUNG_MASS_NOT_MEASURED in lung.warnings and "conventional lung mass 1000 g assumed" in lung.note
    given = _run(administered_activity_gbq=3.0, lung_shunt_fraction=0.2, default_lung_mass_g=800.0)
    assert_allclose(given.segment(LUNG).metrics["mean_gy"], K * 3.0 * 0.98 * 0.2 / 0.8, rtol=1e-6)
    assert given.overall_status == "FAIL" and LUNG_MASS_NOT_MEASURED not in given.incomplete_reasons
    assert any("lung mass 800 g given" in c for c in given.explicit_choices)


def test_the_lung_mass_is_not_asked_for_when_no_rule_judges_it():
    rules = {"name": "tumour only", "rules": [{"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1}]}
    r = _run(default_lung_mass_g=None, rules=rules)
    assert LUNG_MASS_NOT_MEASURED not in r.incomplete_reasons
    assert _run(default_lung_mass_g=None, lung_shunt_fraction=0.0).incomplete_reasons == []  # LSF 0: no lung dose


def test_the_cumulative_lung_rule_is_na_without_a_prior_lung_dose():
    """Finding 4: the cumulative rule read PASS on a prior lung dose silently taken as 0."""
    r = _run(prior_lung_dose_gy=None)
    e = _evaluation(r, "lung mean dose, cumulative")
    assert e.status == "N/A" and e.reason == PRIOR_LUNG_DOSE_NOT_GIVEN and not e.makes_incomplete
    assert math.isnan(r.segment(LUNG).metrics["cumulative_mean_gy"])
    assert r.overall_status == "PASS"  # the presets' cumulative rule is optional
    again = _run(prior_lung_dose_gy=25.0)
    lung = again.segment(LUNG).metrics
    assert_allclose(lung["cumulative_mean_gy"], lung["mean_gy"] + 25.0, rtol=1e-12)
    assert _evaluation(again, "lung mean dose, cumulative").status == "PASS"
    assert not any("prior lung dose 0" in c for c in again.explicit_choices)


def test_a_residual_fraction_not_given_is_taken_as_zero_and_said():
    """Finding 16: tumour doses were inflated by 1/(1 - R) with a PASS and no word."""
    r = _run(residual_fraction=None)
    given = _run(residual_fraction=0.02)
    assert_allclose(r.segment("tumour").metrics["mean_gy"], given.segment("tumour").metrics["mean_gy"] / 0.98, rtol=1e-6)
    assert r.overall_status == "INCOMPLETE" and RESIDUAL_NOT_GIVEN in r.incomplete_reasons
    zero = _run(residual_fraction=0.0)
    assert RESIDUAL_NOT_GIVEN not in zero.incomplete_reasons
    assert any("residual fraction 0 given" in c for c in zero.explicit_choices)


def test_absolute_calibration_does_not_ask_for_the_residual():
    import numpy as np

    act, seg = box_case()
    p = DosimetryParams(calibration="absolute", hours_since_administration=0.0, indication="breast", prior_lung_dose_gy=0.0)
    r = run_case(act.with_array(act.array * np.float32(1e5)), seg, params=p)
    assert RESIDUAL_NOT_GIVEN not in r.incomplete_reasons


def test_the_default_thresholds_without_an_indication_make_the_case_incomplete():
    """Finding 17: with no indication the breast-cancer preset judged any tumour, PASS, no word."""
    r = _run(indication=None)
    assert r.rules.name == "breast-liver-metastases"
    assert r.overall_status == "INCOMPLETE" and r.incomplete_reasons == [INDICATION_NOT_GIVEN]
    assert _run(indication=None, rules="breast-liver-metastases").incomplete_reasons == []  # --thresholds given
    assert _run(indication="breast").incomplete_reasons == []


def test_the_scope_table_says_the_default_thresholds_were_applied():
    from TAREDosimetryLib.evaluation.scope import scope_lines

    r = _run(indication=None)
    lines = dict(scope_lines(r.rules, r.params, r.inputs, rules_note=r.rules_note))
    assert "indication not given" in lines["thresholds chosen"]
    chosen = _run(indication="breast")
    assert "thresholds chosen" not in dict(scope_lines(chosen.rules, chosen.params, chosen.inputs, rules_note=chosen.rules_note))


@pytest.mark.parametrize("field", ["residual_fraction", "default_lung_mass_g", "prior_lung_dose_gy"])
def test_not_given_is_the_default_and_round_trips(field):
    p = DosimetryParams()
    assert getattr(p, field) is None
    assert getattr(DosimetryParams.from_dict(p.to_dict()), field) is None
    assert p.residual_fraction_used == 0.0 and p.lung_mass_used_g == 1000.0 and math.isnan(p.prior_lung_dose_term_gy)


def test_an_external_dose_judged_with_the_default_thresholds_is_incomplete_too():
    from TAREDosimetryLib.pipeline import evaluate_dose_case

    r = _run()
    dose = r.dose_gy
    _, seg = box_case(tumour_uptake=6.0)
    default = evaluate_dose_case(dose, seg)
    assert INDICATION_NOT_GIVEN in default.incomplete_reasons
    chosen = evaluate_dose_case(dose, seg, params=DosimetryParams(indication="breast", prior_lung_dose_gy=0.0))
    assert INDICATION_NOT_GIVEN not in chosen.incomplete_reasons
