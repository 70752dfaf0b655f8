"""Categorical factor against a binary outcome: Fisher's exact test.

A 2 x 2 table gets Fisher's exact test with the conditional maximum-likelihood odds ratio and its
exact confidence interval (as R's ``fisher.test``); a factor with more than two levels gets the
Fisher-Freeman-Halton exact test over every table with the same margins (R x 2, enumerated).
"""

import math

import numpy as np

__all__ = ["crosstab", "fisher_test"]

_MAX_TABLES = 2_000_000


def crosstab(factor, outcome):
    """(levels, table) of a factor against a 0/1 outcome: table[i] = [count outcome 0, count outcome 1]
    of level i; rows with a missing factor (None or '') or outcome are left out."""
    pairs = [(f, int(o)) for f, o in zip(factor, outcome) if f not in (None, "") and o is not None
             and not (isinstance(o, float) and math.isnan(o))]
    levels = sorted({f for f, _ in pairs}, key=str)
    table = np.zeros((len(levels), 2), dtype=np.int64)
    for f, o in pairs:
        table[levels.index(f), o] += 1
    return levels, table


def _log_table_prob(col0, rows, n, c0):
    """log P of an R x 2 table (column-0 counts ``col0``) under fixed margins (multivariate hypergeometric)."""
    lg = math.lgamma
    num = sum(lg(r + 1) for r in rows) + lg(c0 + 1) + lg(n - c0 + 1)
    den = lg(n + 1) + sum(lg(a + 1) + lg(r - a + 1) for a, r in zip(col0, rows))
    return num - den


def _freeman_halton_p(table):
    """Exact p of the Fisher-Freeman-Halton test of an R x 2 table (sum of the probabilities of
    all tables with the same margins that are no more probable than the observed one)."""
    rows = [int(r) for r in table.sum(axis=1)]
    n, c0 = int(table.sum()), int(table[:, 0].sum())
    observed = _log_table_prob(table[:, 0].tolist(), rows, n, c0)
    total, count = 0.0, 0

    def walk(i, left, col0):
        nonlocal total, count
        if i == len(rows) - 1:
            if 0 <= left <= rows[i]:
                count += 1
                lp = _log_table_prob(col0 + [left], rows, n, c0)
                if lp <= observed + 1e-7:
                    total += math.exp(lp)
            return
        rest = sum(rows[i + 1:])
        for a in range(max(0, left - rest), min(rows[i], left) + 1):
            if count > _MAX_TABLES:
                raise OverflowError("too many tables")
            walk(i + 1, left - a, col0 + [a])

    walk(0, c0, [])
    return min(1.0, total)


def fisher_test(factor, outcome, *, factor_name="factor", outcome_name="outcome"):
    """Fisher's exact test of a categorical ``factor`` against a binary ``outcome`` (0/1).

    Returns
    -------
    dict: ``test``, ``assumptions``, ``factor``, ``outcome``, ``levels``, ``table`` (rows: levels;
    columns: outcome 0, 1), ``n``, ``p``, and for a 2 x 2 table ``odds_ratio`` (conditional MLE,
    odds of outcome 1 in the second level over the first) with ``odds_ratio_ci`` (exact 95 %);
    ``warnings`` when the test cannot say much (a level or an outcome class empty).

    References
    ----------
    Fisher RA. J R Stat Soc 1922;85:87-94. Freeman GH, Halton JH. Biometrika 1951;38:141-149.
    """
    from scipy import stats

    levels, table = crosstab(factor, outcome)
    out = {
        "test": "Fisher's exact test, two-sided" if len(levels) <= 2 else "Fisher-Freeman-Halton exact test",
        "assumptions": "independent patients; margins fixed; no minimum expected count needed",
        "factor": factor_name, "outcome": outcome_name, "levels": [str(v) for v in levels],
        "table": table.tolist(), "n": int(table.sum()), "p": None, "odds_ratio": None, "odds_ratio_ci": None,
        "warnings": [],
    }
    if len(levels) < 2 or (table.sum(axis=0) == 0).any():
        out["warnings"].append(f"no test: {factor_name} needs two levels and {outcome_name} both outcomes")
        return out
    if len(levels) == 2:
        out["p"] = float(stats.fisher_exact(table[:, ::-1])[1])
        _odds_ratio(table, out)
    else:
        try:
            out["p"] = _freeman_halton_p(table)
        except OverflowError:
            out["warnings"].append("no test: too many tables to enumerate for the exact test")
    return out


def _odds_ratio(table, out):
    """Conditional MLE odds ratio (second level vs first, outcome 1 vs 0) and its exact 95 % CI (scipy >= 1.10)."""
    try:
        from scipy.stats.contingency import odds_ratio
    except ImportError:
        out["warnings"].append("odds ratio not computed (needs scipy >= 1.10)")
        return
    t = np.array([[table[1, 1], table[1, 0]], [table[0, 1], table[0, 0]]])
    r = odds_ratio(t, kind="conditional")
    ci = r.confidence_interval(confidence_level=0.95)
    out["odds_ratio"] = float(r.statistic)
    out["odds_ratio_ci"] = [float(ci.low), float(ci.high)]
