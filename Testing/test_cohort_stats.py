"""Cohort statistics against textbook examples with published results, to the printed digits.

- Cox model of the Rossi recidivism data (lifelines ships it): Fox J, Weisberg S. "Cox
  proportional-hazards regression for survival data in R", appendix to An R Companion to Applied
  Regression (2nd ed., 2011), printed `coxph` output.
- Kaplan-Meier medians, log-rank and a one-covariate Cox model of the NCCTG lung-cancer data
  (lifelines ships R survival's `lung`): R `survfit(Surv(time, status) ~ 1)` prints median 310
  (95 % CI 285-363); `~ sex`: 270 (212-310) and 426 (348-550); `survdiff`: chi-square 10.3 on 1 df,
  observed 112 / 53, expected 91.6 / 73.4; `coxph(~ sex)`: coef -0.531, exp(coef) 0.588 (0.424-0.816),
  se 0.167, p 0.00149 (Therneau's survival package; e.g. the tutorial by E. Zabor).
- R's help examples: `wilcox.test` of Hollander & Wolfe's depression data (W = 35; two-sided exact
  p = 0.2544) and `fisher.test` of the Tea Tasting experiment (p = 0.4857, odds ratio 6.408309).
"""

import itertools
import math

import numpy as np
import pytest

from TAREDosimetryLib.cohort.contingency import fisher_test
from TAREDosimetryLib.cohort.groups import rank_sum_test, summary_stats
from TAREDosimetryLib.cohort.roc import auc_delong, bootstrap_ci, roc_analysis, threshold_performance, wilson_ci, youden
from TAREDosimetryLib.cohort.survival import kaplan_meier, km_median, km_summary, logrank_test, numbers_at_risk


def _round(x, digits):
    return float(f"{x:.{digits}f}")


@pytest.fixture(scope="module")
def lung():
    datasets = pytest.importorskip("lifelines.datasets")
    return datasets.load_lung()


@pytest.fixture(scope="module")
def rossi():
    datasets = pytest.importorskip("lifelines.datasets")
    return datasets.load_rossi()


# -- Cox (lifelines) -----------------------------------------------------------------------------
def test_rossi_cox_model_reproduces_fox_and_weisberg_to_the_printed_digits(rossi):
    from TAREDosimetryLib.cohort.cox import cox_model

    covs = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    m = cox_model(rossi["week"], rossi["arrest"], {c: rossi[c] for c in covs})
    printed = {  # coef, exp(coef), se(coef), Pr(>|z|)
        "fin": (-0.37942, 0.68426, 0.19138, 0.04742), "age": (-0.05744, 0.94418, 0.02200, 0.00903),
        "race": (0.31390, 1.36875, 0.30799, 0.30812), "wexp": (-0.14980, 0.86088, 0.21222, 0.48029),
        "mar": (-0.43370, 0.64810, 0.38187, 0.25606), "paro": (-0.08487, 0.91863, 0.19576, 0.66461),
        "prio": (0.09150, 1.09581, 0.02865, 0.00140),
    }
    for c, (coef, hr, se, p) in printed.items():
        got = m["covariates"][c]
        assert _round(got["coef"], 5) == coef and _round(got["hr"], 5) == hr and _round(got["se"], 5) == se, c
        assert abs(got["p"] - p) <= 0.000011, c
    assert m["n"] == 432 and m["events"] == 114
    assert _round(m["likelihood_ratio"]["chi2"], 2) == 33.27 and m["likelihood_ratio"]["df"] == 7
    # exp(coef) 95 % limits printed for fin: 0.4702 - 0.9957; prio: 1.0360 - 1.1591
    assert [_round(v, 4) for v in m["covariates"]["fin"]["ci"]] == [0.4702, 0.9957]
    assert [_round(v, 4) for v in m["covariates"]["prio"]["ci"]] == [1.0360, 1.1591]
    # the proportional-hazards check flags age (its effect declines with time, Fox & Weisberg)
    assert m["ph_test"]["age"]["p"] < 0.05 and any(w.startswith("age: proportional hazards") for w in m["warnings"])
    assert m["ph_test"]["fin"]["p"] > 0.5


def test_lung_cox_by_sex_reproduces_r_coxph(lung):
    from TAREDosimetryLib.cohort.cox import cox_univariable

    m = cox_univariable(lung["time"], lung["status"], {"sex": lung["sex"]})["sex"]
    c = m["covariates"]["sex"]
    assert _round(c["coef"], 3) == -0.531 and _round(c["hr"], 3) == 0.588 and _round(c["se"], 3) == 0.167
    assert [_round(v, 3) for v in c["ci"]] == [0.424, 0.816] and _round(c["p"], 5) == 0.00149


def test_cox_with_clustered_rows_uses_robust_errors_and_warns_about_few_events():
    pytest.importorskip("lifelines")
    from TAREDosimetryLib.cohort.cox import cox_model

    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    t = rng.exponential(10 * np.exp(-0.5 * x))
    e = (rng.random(30) < 0.3).astype(int)
    m = cox_model(np.repeat(t, 2), np.repeat(e, 2), {"x": np.repeat(x, 2), "z": rng.normal(size=60)},
                  cluster=np.repeat(np.arange(30), 2))
    assert m["robust"] and "robust to clustering" in m["assumptions"]
    assert any("events for 2 covariates" in w for w in m["warnings"])


def test_lifelines_convergence_warnings_become_one_model_warning(capfd):
    """Review finding 20f: lifelines' ConvergenceWarning texts were printed raw on stderr for a small
    cohort; they are caught and said once, in words, among the model's warnings."""
    pytest.importorskip("lifelines")
    import warnings

    from TAREDosimetryLib.cohort.cox import cox_model

    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        m = cox_model(np.array([5.0, 8.0, 12.0, 20.0]), np.array([1, 1, 0, 1]), {"dose": np.array([50.0, 80.0, 200.0, 120.0])})
    assert escaped == [] and "ConvergenceWarning" not in capfd.readouterr().err
    said = [w for w in m["warnings"] if "did not converge cleanly" in w]
    assert len(said) == 1 and "unreliable" in said[0]


# -- Kaplan-Meier and log-rank (numpy, R conventions) ----------------------------------------------
def test_lung_km_medians_and_cis_reproduce_r_survfit(lung):
    med, ci = km_median(kaplan_meier(lung["time"], lung["status"]))
    assert (med, ci) == (310.0, (285.0, 363.0))
    male = km_summary(lung["time"][lung["sex"] == 1], lung["status"][lung["sex"] == 1])
    female = km_summary(lung["time"][lung["sex"] == 2], lung["status"][lung["sex"] == 2])
    assert (male["n"], male["events"], male["median_months"], male["ci"]) == (138, 112, 270.0, [212.0, 310.0])
    assert (female["n"], female["events"], female["median_months"], female["ci"]) == (90, 53, 426.0, [348.0, 550.0])


def test_lung_km_curve_equals_lifelines_and_log_log_ci_equals_its_median_ci(lung):
    lifelines = pytest.importorskip("lifelines")
    from lifelines.utils import median_survival_times

    km = kaplan_meier(lung["time"], lung["status"], conf_type="log-log")
    ref = lifelines.KaplanMeierFitter().fit(lung["time"], lung["status"])
    sf = ref.survival_function_.loc[km["time"]].to_numpy().ravel()
    np.testing.assert_allclose(km["survival"], sf, rtol=1e-12)
    lo, hi = median_survival_times(ref.confidence_interval_).to_numpy().ravel()
    assert km_median(km)[1] == (lo, hi)


def test_lung_logrank_by_sex_reproduces_r_survdiff(lung):
    r = logrank_test(lung["time"], lung["status"], lung["sex"])
    assert _round(r["chi2"], 1) == 10.3 and r["df"] == 1 and _round(r["p"], 3) == 0.001
    assert r["observed"] == {"1": 112.0, "2": 53.0}
    assert {k: _round(v, 1) for k, v in r["expected"].items()} == {"1": 91.6, "2": 73.4}


def test_km_median_at_exactly_one_half_is_the_midpoint_and_not_reached_is_none():
    # 4 subjects: deaths at 1 and 2 give S = 0.5 on [2, 3): R reports the median as 2.5
    med, _ = km_median(kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1]))
    assert med == 2.5
    s = km_summary([5, 6, 7, 8], [1, 0, 0, 0], at_times=[0, 6, 12])
    assert s["median_months"] is None and s["note"] == "median not reached" and s["at_risk"] == [4, 3, 0]
    assert numbers_at_risk([1, 2, np.nan, 5], [0, 2, 6]) == [3, 2, 0]


def test_logrank_three_groups_has_two_degrees_of_freedom_and_warns_small_groups():
    r = logrank_test([1, 2, 3, 4, 5, 6, 7, 8, 9], [1] * 9, ["a", "a", "a", "b", "b", "b", "c", "c", "c"])
    assert r["df"] == 2 and r["p"] < 0.05 and any("only 3 event(s)" in w for w in r["warnings"])


# -- rank-sum, Fisher --------------------------------------------------------------------------------
def test_rank_sum_reproduces_r_wilcox_test_example():
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    r = rank_sum_test(x, y, names=("first", "second"))
    assert r["w"] == 35.0 and _round(r["p"], 4) == 0.2544 and r["method"] == "exact"
    assert r["n"] == {"first": 10, "second": 5} and r["warnings"] == []


def test_rank_sum_with_ties_uses_the_corrected_normal_approximation():
    a, b = [1, 2, 2, 3, 3, 4, 5], [3, 4, 5, 5, 6, 6]
    r = rank_sum_test(a, b)
    # by hand: U, its mean, the tie-corrected variance, continuity correction 0.5
    allv = np.array(a + b, float)
    n1, n2, n = len(a), len(b), len(a) + len(b)
    u = sum((ai > bj) + 0.5 * (ai == bj) for ai in a for bj in b)
    ties = np.unique(allv, return_counts=True)[1]
    var = n1 * n2 / 12 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1)))
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    assert r["w"] == u and r["p"] == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert "normal approximation" in r["method"] and r["warnings"] == [] and r["p"] < 0.1


def test_summary_stats_quartiles_are_r_type_7():
    s = summary_stats([1, 2, 3, 4, 10, np.nan])
    assert (s["n"], s["median"], s["q1"], s["q3"]) == (5, 3.0, 2.0, 4.0)
    assert summary_stats([])["median"] is None


def test_fisher_reproduces_r_tea_tasting():
    # guesses (rows: poured first milk/tea) against truth: 3 right of 4 each way
    factor = ["milk"] * 4 + ["tea"] * 4
    outcome = [1, 1, 1, 0, 1, 0, 0, 0]
    r = fisher_test(factor, outcome)
    assert _round(r["p"], 4) == 0.4857 and r["table"] == [[1, 3], [3, 1]]
    assert _round(1 / r["odds_ratio"], 3) == 6.408 and r["n"] == 8


def test_freeman_halton_equals_enumeration_over_every_relabelling():
    factor = ["a", "a", "a", "b", "b", "c", "c", "c", "c"]
    outcome = [1, 1, 0, 0, 0, 1, 1, 1, 0]
    r = fisher_test(factor, outcome)

    def prob_key(out):
        t = np.zeros((3, 2), int)
        for f, o in zip(factor, out):
            t["abc".index(f), o] += 1
        return tuple(map(tuple, t))

    # every assignment of the 5 events to the 9 subjects is equally likely under the null
    tables = [prob_key([1 if i in c else 0 for i in range(9)]) for c in itertools.combinations(range(9), 5)]
    counts = {t: tables.count(t) for t in set(tables)}
    obs = counts[prob_key(outcome)]
    p = sum(c for c in counts.values() if c <= obs) / len(tables)
    assert r["test"].startswith("Fisher-Freeman-Halton") and r["p"] == pytest.approx(p, rel=1e-9)


def test_fisher_without_both_outcomes_is_not_a_test():
    r = fisher_test(["a", "b", "a"], [0, 0, 0])
    assert r["p"] is None and r["warnings"]


# -- ROC -------------------------------------------------------------------------------------------
def test_auc_is_the_mann_whitney_statistic_and_delong_se_matches_the_bootstrap():
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    auc, _ = auc_delong(x + y, [1] * 10 + [0] * 5)
    assert auc == pytest.approx(35 / 50)
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(1.0, 1, 80), rng.normal(0, 1, 60)])
    lab = np.array([1] * 80 + [0] * 60)
    auc, (lo, hi) = auc_delong(s, lab)
    boot = bootstrap_ci(s, lab, n_boot=1500, seed=1)["auc_ci"]
    assert lo < auc < hi and (hi - lo) == pytest.approx(boot[1] - boot[0], rel=0.15)


def test_youden_threshold_separates_separable_groups_and_its_ci_is_seeded():
    doses = [40, 50, 55, 60, 62, 90, 120, 160, 170, 210]
    resp = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    thr, se, sp, j = youden(doses, resp)
    assert thr == 76.0 and (se, sp, j) == (1.0, 1.0, 1.0)
    a = roc_analysis(doses, resp, n_boot=300, seed=7)
    b = roc_analysis(doses, resp, n_boot=300, seed=7)
    assert a["youden_ci"] == b["youden_ci"] and 50 <= a["youden_ci"][0] <= 76 <= a["youden_ci"][1] <= 160
    assert a["given_threshold"]["threshold_gy"] == 79.5 and a["given_threshold"]["sensitivity"]["value"] == 1.0


def test_threshold_performance_counts_and_wilson_interval():
    p = threshold_performance([10, 20, 80, 90, 100], [0, 1, 1, 0, 1], 79.5)
    assert (p["tp"], p["fn"], p["tn"], p["fp"]) == (2, 1, 1, 1)
    assert p["sensitivity"]["value"] == pytest.approx(2 / 3)
    lo, hi = wilson_ci(8, 10)  # textbook Wilson interval for 8/10: 0.490 - 0.943
    assert (_round(lo, 3), _round(hi, 3)) == (0.490, 0.943)


def test_cluster_bootstrap_does_not_shrink_the_interval_when_lesions_repeat_a_patient():
    rng = np.random.default_rng(5)
    dose = np.concatenate([rng.normal(150, 50, 20), rng.normal(70, 30, 12)])
    resp = np.array([1] * 20 + [0] * 12)
    k = 4  # every patient's lesion counted 4 times: no new information
    naive = roc_analysis(np.repeat(dose, k), np.repeat(resp, k), n_boot=400, seed=2)
    clustered = roc_analysis(np.repeat(dose, k), np.repeat(resp, k), n_boot=400, seed=2,
                             clusters=np.repeat(np.arange(32), k))
    single = roc_analysis(dose, resp, n_boot=400, seed=2)
    width = lambda r: r["auc_ci"][1] - r["auc_ci"][0]  # noqa: E731
    assert width(naive) < 0.7 * width(single)  # treating copies as independent overstates precision
    assert width(clustered) == pytest.approx(width(single), rel=0.35)
    assert "cluster bootstrap" in clustered["auc_ci_method"]
