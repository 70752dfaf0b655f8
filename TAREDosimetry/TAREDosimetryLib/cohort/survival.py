"""Kaplan-Meier survival, median survival with its confidence interval, numbers at risk, and the
log-rank test, on plain arrays (numpy and scipy only).

Conventions follow R's ``survival`` package (``survfit``, ``survdiff``), so results can be checked
against its printed output: Greenwood variance; pointwise confidence intervals on the log scale
(``conf.type = "log"``, R's default) or the log-log scale; the median is the first time the curve
is at or below 0.5 (the midpoint of a flat stretch at exactly 0.5), and its confidence limits are
the first times the upper and the lower pointwise limits reach 0.5 (Brookmeyer and Crowley 1982).
"""

import numpy as np

__all__ = ["kaplan_meier", "km_median", "numbers_at_risk", "logrank_test", "km_summary"]

_Z95 = 1.959963984540054
_EQ_TOL = 1e-9


def _te(time, event, group=None):
    """Times, 0/1 events (and groups) of the subjects whose time and event are known."""
    t = np.asarray(time, dtype=np.float64).ravel()
    e = np.asarray(event, dtype=np.float64).ravel()
    keep = np.isfinite(t) & np.isfinite(e)
    if group is None:
        return t[keep], (e[keep] > 0).astype(int)
    return t[keep], (e[keep] > 0).astype(int), np.asarray(group, dtype=object).ravel()[keep]


def kaplan_meier(time, event, conf_type="log", level=0.95):
    """The Kaplan-Meier estimate at each distinct time with an event.

    Parameters
    ----------
    time : (N,) array_like, follow-up times (any unit; months in the cohort analysis).
    event : (N,) array_like, 1 for the event (death), 0 for censored.
    conf_type : 'log' (R's default) or 'log-log'.

    Returns
    -------
    dict of arrays: ``time``, ``at_risk``, ``events``, ``survival``, ``lower``, ``upper``
    (pointwise CI), ``std_err`` (Greenwood, of S); and ``n``, ``n_events``.
    """
    t, e = _te(time, event)
    times = np.unique(t[e == 1])
    at_risk = np.array([(t >= u).sum() for u in times], dtype=np.float64)
    d = np.array([((t == u) & (e == 1)).sum() for u in times], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d / at_risk)
        gw = np.cumsum(d / (at_risk * (at_risk - d)))  # Greenwood: var(log S)
        z = _Z95 if level == 0.95 else _z(level)
        se_log = np.sqrt(gw)
        if conf_type == "log":
            lower, upper = surv * np.exp(-z * se_log), np.minimum(1.0, surv * np.exp(z * se_log))
        elif conf_type == "log-log":
            se_ll = se_log / np.abs(np.log(surv))
            lower, upper = surv ** np.exp(z * se_ll), surv ** np.exp(-z * se_ll)
        else:
            raise ValueError(f"conf_type must be 'log' or 'log-log', got {conf_type!r}")
        lower = np.where(surv > 0, lower, np.nan)
        upper = np.where(surv > 0, upper, np.nan)
        std_err = np.where(surv > 0, surv * se_log, np.nan)
    return {"time": times, "at_risk": at_risk.astype(int), "events": d.astype(int), "survival": surv,
            "lower": lower, "upper": upper, "std_err": std_err, "n": int(t.size), "n_events": int(e.sum()),
            "conf_type": conf_type}


def _z(level):
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2.0))


def _first_below_half(times, curve):
    """First time a step curve (value ``curve[i]`` from ``times[i]`` on) is <= 0.5; the midpoint
    to the next step when it sits exactly at 0.5; None when it never gets there."""
    for i, v in enumerate(curve):
        if not np.isfinite(v):
            continue
        if abs(v - 0.5) < _EQ_TOL:
            nxt = times[i + 1] if i + 1 < len(times) else None
            return float(times[i]) if nxt is None else float((times[i] + nxt) / 2.0)
        if v < 0.5:
            return float(times[i])
    return None


def km_median(km):
    """(median, (lower, upper)) survival time of a :func:`kaplan_meier` estimate; None where not reached."""
    med = _first_below_half(km["time"], km["survival"])
    lo = _first_below_half(km["time"], km["lower"])
    hi = _first_below_half(km["time"], km["upper"])
    return med, (lo, hi)


def numbers_at_risk(time, at_times):
    """Number of subjects still followed (time >= t) at each of ``at_times``."""
    t = np.asarray(time, dtype=np.float64)
    t = t[np.isfinite(t)]
    return [int((t >= u).sum()) for u in at_times]


def logrank_test(time, event, group):
    """Log-rank (Mantel-Cox) test of equal survival across the groups.

    Returns
    -------
    dict: ``test``, ``assumptions``, ``chi2``, ``df``, ``p``, ``observed`` and ``expected`` events
    per group, ``n`` per group, ``warnings``.

    References
    ----------
    Mantel N. Cancer Chemother Rep 1966;50:163-170; as R's ``survdiff`` (rho = 0).
    """
    from scipy import stats

    t, e, g = _te(time, event, group)
    levels = sorted(set(g.tolist()), key=str)
    out = {"test": "log-rank (Mantel-Cox)",
           "assumptions": "independent censoring unrelated to the groups; proportional hazards give it most power",
           "groups": [str(v) for v in levels], "n": {str(v): int((g == v).sum()) for v in levels},
           "chi2": None, "df": len(levels) - 1, "p": None, "observed": {}, "expected": {}, "warnings": []}
    if len(levels) < 2:
        out["warnings"].append("no test: fewer than two groups")
        return out
    o, ex, var = _logrank_sums(t, e, g, levels)
    out["observed"] = {str(v): float(o[k]) for k, v in enumerate(levels)}
    out["expected"] = {str(v): float(ex[k]) for k, v in enumerate(levels)}
    diff = (o - ex)[:-1]
    chi2 = float(diff @ np.linalg.pinv(var[:-1, :-1]) @ diff)
    out.update(chi2=chi2, p=float(stats.chi2.sf(chi2, len(levels) - 1)))
    for v in levels:
        if o[levels.index(v)] < 5:
            out["warnings"].append(f"group {v}: only {int(o[levels.index(v)])} event(s); the log-rank p is unreliable")
    return out


def _logrank_sums(t, e, g, levels):
    """Observed and expected events per group, and the hypergeometric covariance matrix."""
    k = len(levels)
    o, ex, var = np.zeros(k), np.zeros(k), np.zeros((k, k))
    idx = np.array([levels.index(v) for v in g])
    for u in np.unique(t[e == 1]):
        risk = t >= u
        n_j = np.bincount(idx[risk], minlength=k).astype(float)
        d_j = np.bincount(idx[(t == u) & (e == 1)], minlength=k).astype(float)
        n, d = n_j.sum(), d_j.sum()
        o += d_j
        ex += d * n_j / n
        if n > 1:
            f = d * (n - d) / (n * n * (n - 1))
            var += f * (np.diag(n_j) * n - np.outer(n_j, n_j))
    return o, ex, var


def km_summary(time, event, *, at_times=None, conf_type="log"):
    """n, events, median (95 % CI) and numbers at risk at ``at_times`` of one group."""
    km = kaplan_meier(time, event, conf_type=conf_type)
    med, ci = km_median(km)
    out = {"n": km["n"], "events": km["n_events"], "median_months": med, "ci": list(ci),
           "ci_method": f"Greenwood, {conf_type} transform (R survfit default: log), Brookmeyer-Crowley"}
    if at_times is not None:
        out["at_risk"] = numbers_at_risk(time, at_times)
    if med is None:
        out["note"] = "median not reached"
    if ci[1] is None and med is not None:
        out["note"] = "upper confidence limit not reached"
    return out
