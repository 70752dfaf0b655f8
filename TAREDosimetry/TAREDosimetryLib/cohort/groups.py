"""Two groups of a continuous measure: medians (IQR) and the Wilcoxon rank-sum (Mann-Whitney U) test.

Each function takes plain arrays and returns a plain dict that names the test, its assumptions and
its sample sizes, with ``warnings`` when a group is too small for the test to say much.
"""

import math

import numpy as np

__all__ = ["summary_stats", "rank_sum_test", "MIN_GROUP_N"]

#: Below this many observations in a group, a test's result is flagged as unreliable.
MIN_GROUP_N = 5
_EXACT_MAX_N = 50


def _finite(values):
    a = np.asarray(values, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def summary_stats(values):
    """n, median, first and third quartiles, min and max of the finite values.

    Quartiles by linear interpolation between order statistics (numpy's default, R's
    ``quantile(type = 7)``).  None for each statistic of an empty group.
    """
    a = _finite(values)
    if a.size == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None, "min": None, "max": None}
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"n": int(a.size), "median": float(med), "q1": float(q1), "q3": float(q3), "min": float(a.min()),
            "max": float(a.max())}


def _use_exact(a, b):
    """R's wilcox.test rule: the exact distribution when both groups have fewer than 50 values and there are no ties."""
    both = np.concatenate([a, b])
    return a.size < _EXACT_MAX_N and b.size < _EXACT_MAX_N and np.unique(both).size == both.size


def rank_sum_test(a, b, *, names=("group 1", "group 2"), min_n=MIN_GROUP_N):
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) test of group ``a`` against group ``b``.

    Parameters
    ----------
    a, b : (N,) array_like of float; non-finite values are dropped.
    names : (str, str), the groups' names in the result and its warnings.

    Returns
    -------
    dict: ``test``, ``assumptions``, ``n`` {name: n}, ``w`` (U statistic of ``a``: the number of
    pairs with a > b, ties counting 1/2; R's W), ``p``, ``method`` (exact, or normal approximation
    with continuity and tie corrections, as R's ``wilcox.test``), ``shift_hodges_lehmann`` (median
    of the pairwise differences a - b), ``warnings``.

    References
    ----------
    Mann HB, Whitney DR. Ann Math Stat 1947;18:50-60. Hodges JL, Lehmann EL. Ann Math Stat 1963;34:598-611.
    """
    from scipy import stats

    a, b = _finite(a), _finite(b)
    out = {
        "test": "Wilcoxon rank-sum (Mann-Whitney U), two-sided",
        "assumptions": "independent observations (one per patient, or one per lesion treated as independent); "
                       "tests whether values of one group tend to be larger than the other's (no normality assumed)",
        "n": {names[0]: int(a.size), names[1]: int(b.size)},
        "w": None, "p": None, "method": "", "shift_hodges_lehmann": None, "warnings": [],
    }
    if a.size == 0 or b.size == 0:
        out["warnings"].append(f"no test: {names[0] if a.size == 0 else names[1]} has no values")
        return out
    exact = _use_exact(a, b)
    res = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact" if exact else "asymptotic",
                             **({} if exact else {"use_continuity": True}))
    out.update(w=float(res.statistic), p=float(res.pvalue),
               method="exact" if exact else "normal approximation with continuity and tie corrections",
               shift_hodges_lehmann=float(np.median(np.subtract.outer(a, b))))
    for name, n in out["n"].items():
        if n < min_n:
            out["warnings"].append(f"{name}: only {n} value(s); the rank-sum test has little power and its p is unreliable")
    if not math.isfinite(out["p"]):
        out["p"] = None
    return out
