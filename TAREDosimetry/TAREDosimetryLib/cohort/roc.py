"""ROC analysis of a dose against a binary response: AUC with its confidence interval, the Youden
threshold with a bootstrap confidence interval, and the performance of a given threshold.

Convention: a case is predicted a responder when its dose is >= the threshold (higher dose, more
response).  Candidate thresholds are the midpoints between consecutive distinct observed doses
(as pROC reports them), so a threshold never sits on an observed value.
"""

import numpy as np

__all__ = ["roc_curve", "auc_delong", "youden", "threshold_performance", "bootstrap_ci", "wilson_ci", "roc_analysis"]

_Z95 = 1.959963984540054


def _xy(scores, labels):
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    keep = np.isfinite(s) & np.isfinite(y)
    return s[keep], y[keep].astype(int)


def roc_curve(scores, labels):
    """(thresholds, sensitivity, specificity) for every candidate threshold, from +inf (nobody
    predicted a responder) to -inf (everybody), thresholds decreasing."""
    s, y = _xy(scores, labels)
    u = np.unique(s)
    cuts = np.concatenate([[np.inf], (u[1:] + u[:-1])[::-1] / 2.0, [-np.inf]])
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (pos.size - np.searchsorted(pos, cuts, side="left")) / pos.size if pos.size else np.full(cuts.size, np.nan)
        spec = np.searchsorted(neg, cuts, side="left") / neg.size if neg.size else np.full(cuts.size, np.nan)
    return cuts, np.asarray(sens, float), np.asarray(spec, float)


def auc_delong(scores, labels, level=0.95):
    """(AUC, (low, high)): the Mann-Whitney AUC (ties count 1/2) with DeLong's variance.

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 1988;44:837-845.
    """
    s, y = _xy(scores, labels)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return None, None
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(psi.mean())
    if pos.size < 2 or neg.size < 2:
        return auc, None
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    se = float(np.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size))
    z = _Z95 if level == 0.95 else _z(level)
    return auc, (max(0.0, auc - z * se), min(1.0, auc + z * se))


def _z(level):
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2.0))


def youden(scores, labels):
    """(threshold, sensitivity, specificity, J) maximising J = sensitivity + specificity - 1; among
    equal J the highest threshold (fewest cases called responders)."""
    cuts, sens, spec = roc_curve(scores, labels)
    j = sens + spec - 1.0
    finite = np.isfinite(cuts) & np.isfinite(j)
    if not finite.any():
        return None, None, None, None
    idx = np.flatnonzero(finite)[np.argmax(j[finite])]
    return float(cuts[idx]), float(sens[idx]), float(spec[idx]), float(j[idx])


def wilson_ci(k, n, level=0.95):
    """Wilson score interval of a proportion k/n (None when n is 0)."""
    if n == 0:
        return None
    z = _Z95 if level == 0.95 else _z(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def threshold_performance(scores, labels, threshold_gy):
    """Counts, sensitivity, specificity, PPV and NPV (Wilson 95 % CIs) of ``dose >= threshold_gy``."""
    s, y = _xy(scores, labels)
    pred = s >= threshold_gy
    tp, fn = int((pred & (y == 1)).sum()), int((~pred & (y == 1)).sum())
    tn, fp = int((~pred & (y == 0)).sum()), int((pred & (y == 0)).sum())

    def prop(k, n):
        return {"value": k / n if n else None, "ci": wilson_ci(k, n)}

    return {"threshold_gy": float(threshold_gy), "tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": prop(tp, tp + fn), "specificity": prop(tn, tn + fp),
            "ppv": prop(tp, tp + fp), "npv": prop(tn, tn + fn)}


def bootstrap_ci(scores, labels, *, n_boot=2000, seed=0, clusters=None, level=0.95):
    """Percentile bootstrap CIs of the Youden threshold and the AUC.

    Without ``clusters``: stratified resampling (responders and non-responders resampled
    separately, their numbers kept, as pROC's default).  With ``clusters`` (one id per value, e.g.
    the patient of each lesion): whole clusters are resampled, so lesions of one patient stay
    together (cluster bootstrap).  Seeded: the same inputs and seed give the same interval.

    Returns
    -------
    dict: ``youden_ci``, ``auc_ci`` ((low, high) or None), ``auc_se`` (bootstrap SE of the AUC),
    ``n_boot``, ``seed``, ``method``.
    """
    s, y = _xy(scores, labels)
    rng = np.random.default_rng(seed)
    thr, aucs = [], []
    for _ in range(int(n_boot)):
        idx = _resample(rng, y, None if clusters is None else np.asarray(clusters)[:len(y)])
        ys = y[idx]
        if ys.min() == ys.max():
            continue
        t = youden(s[idx], ys)[0]
        if t is not None and np.isfinite(t):
            thr.append(t)
        aucs.append(auc_delong(s[idx], ys)[0])
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    ci = (lambda v: (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if len(v) >= 20 else None)
    method = ("cluster bootstrap (whole clusters resampled)" if clusters is not None
              else "stratified bootstrap (responders and non-responders resampled separately)")
    se = float(np.std(aucs, ddof=1)) if len(aucs) >= 20 else None
    return {"youden_ci": ci(thr), "auc_ci": ci(aucs), "auc_se": se, "n_boot": int(n_boot), "seed": int(seed), "method": method}


def _resample(rng, y, clusters):
    if clusters is None:
        parts = [rng.choice(np.flatnonzero(y == k), size=int((y == k).sum()), replace=True) for k in (0, 1)]
        return np.concatenate(parts)
    ids = np.unique(clusters)
    chosen = rng.choice(ids, size=ids.size, replace=True)
    members = {c: np.flatnonzero(clusters == c) for c in ids}
    return np.concatenate([members[c] for c in chosen])


def roc_analysis(scores, labels, *, threshold_gy=79.5, n_boot=2000, seed=0, clusters=None):
    """AUC (DeLong 95 % CI, or the cluster-bootstrap CI when ``clusters`` is given), the Youden
    threshold with its bootstrap CI and performance, the given threshold's performance, and the curve."""
    s, y = _xy(scores, labels)
    auc, auc_ci = auc_delong(s, y)
    thr, sens, spec, j = youden(s, y)
    boot = bootstrap_ci(s, y, n_boot=n_boot, seed=seed, clusters=clusters)
    cuts, se_curve, sp_curve = roc_curve(s, y)
    out = {
        "test": "ROC analysis of dose against response (responder predicted when dose >= threshold)",
        "n": {"responders": int((y == 1).sum()), "non_responders": int((y == 0).sum())},
        "auc": auc, "auc_ci": list(auc_ci) if auc_ci else None,
        "auc_ci_method": "DeLong" if clusters is None else boot["method"],
        "youden_threshold": thr, "youden_ci": list(boot["youden_ci"]) if boot["youden_ci"] else None,
        "youden_ci_method": f"{boot['method']}, {boot['n_boot']} resamples, seed {boot['seed']}, percentile interval",
        "youden_index": j,
        "youden_performance": threshold_performance(s, y, thr) if thr is not None else None,
        "given_threshold": threshold_performance(s, y, threshold_gy) if threshold_gy is not None else None,
        "curve": {"threshold_gy": [None if not np.isfinite(c) else float(c) for c in cuts],
                  "sensitivity": se_curve.tolist(), "specificity": sp_curve.tolist()},
        "warnings": [],
    }
    if clusters is not None:
        out["auc_ci"] = list(boot["auc_ci"]) if boot["auc_ci"] else None
    if auc is not None and auc < 0.5:
        out["warnings"].append(f"AUC {auc:.2f} < 0.5: higher doses go with less response in these data")
    return out
