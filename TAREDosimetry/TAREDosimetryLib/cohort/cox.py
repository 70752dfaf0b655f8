"""Cox proportional-hazards regression (lifelines): hazard ratios with 95 % CIs and p, and the
proportional-hazards check, univariable (one covariate at a time) and multivariable.

lifelines is an optional dependency (the ``cohort`` extra), imported only here.  Ties are handled
with Efron's method (as R's ``coxph`` default); lifelines reproduces R's coefficients to the printed
digits (Testing/test_cohort_stats.py, the Rossi recidivism model of Fox and Weisberg).  The
proportional-hazards check is the Schoenfeld-residual test with the Kaplan-Meier time transform
(as R's ``cox.zph`` default transform).
"""

import contextlib
import math
import warnings

import numpy as np

from ..errors import InputError

__all__ = ["require_lifelines", "cox_model", "cox_univariable", "MIN_EVENTS_PER_COVARIATE"]

#: Fewer events per covariate than this make a multivariable model overfitted (Peduzzi et al. 1995).
MIN_EVENTS_PER_COVARIATE = 10
PH_ALPHA = 0.05


def require_lifelines():
    """The lifelines package, or an InputError naming the pip install."""
    try:
        import lifelines
    except ImportError as exc:
        raise InputError(
            f"Cox regression needs lifelines ({exc}): pip install lifelines (or pip install 'TAREDosimetry[cohort]')"
        ) from None
    return lifelines


def _frame(time, event, covariates, cluster):
    """Complete-case pandas DataFrame of the model's columns, and the number of rows dropped."""
    import pandas as pd

    data = {"_time": np.asarray(time, float), "_event": np.asarray(event, float)}
    for name, values in covariates.items():
        data[name] = np.asarray(values, float)
    if cluster is not None:
        data["_cluster"] = np.asarray(cluster, dtype=object)
    df = pd.DataFrame(data)
    numeric = [c for c in df.columns if c != "_cluster"]
    keep = np.isfinite(df[numeric].to_numpy(dtype=float)).all(axis=1)
    if cluster is not None:
        keep &= df["_cluster"].notna().to_numpy()
    full = df[keep]
    return full, len(df) - len(full)


def _ph_check(fitter, df, lifelines):
    """{covariate: {'statistic', 'p'}} of the Schoenfeld-residual test (KM time transform)."""
    from lifelines.statistics import proportional_hazard_test

    try:
        res = proportional_hazard_test(fitter, df, time_transform="km")
    except Exception as exc:  # a degenerate model: say so rather than fail the analysis
        return {"error": f"{type(exc).__name__}: {exc}"}
    s = res.summary
    return {str(name): {"statistic": float(row["test_statistic"]), "p": float(row["p"])} for name, row in s.iterrows()}


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else None


def cox_model(time, event, covariates, *, cluster=None, label="multivariable"):
    """Fit one Cox model.

    Parameters
    ----------
    time : (N,) months; event : (N,) 0/1; covariates : {name: (N,) float} (indicators for categories).
    cluster : (N,) ids, optional: cluster-robust (sandwich) standard errors, e.g. lesions within patients.

    Returns
    -------
    dict: ``model``, ``n``, ``events``, ``excluded`` (rows with a missing value), ``covariates``
    {name: {``hr``, ``ci``, ``p``, ``coef``, ``se``}}, ``concordance``, ``likelihood_ratio`` {chi2, df,
    p}, ``ph_test`` {name: {statistic, p}}, ``assumptions``, ``warnings``.
    """
    lifelines = require_lifelines()
    df, dropped = _frame(time, event, covariates, cluster)
    out = {"model": f"Cox proportional hazards ({label}), Efron ties", "n": int(len(df)),
           "events": int(df["_event"].sum()) if len(df) else 0, "excluded": int(dropped), "covariates": {},
           "concordance": None, "ph_test": {}, "robust": cluster is not None,
           "assumptions": "proportional hazards (checked: Schoenfeld residuals, KM time transform); log-linear "
                          "effect of continuous covariates; independent censoring" +
                          ("; standard errors robust to clustering" if cluster is not None else ""),
           "warnings": []}
    names = list(covariates)
    if cluster is not None and len(df):
        out["event_clusters"] = int(df.loc[df["_event"] > 0, "_cluster"].nunique())
    if out["events"] < 2 or any(df[n].nunique() < 2 for n in names):
        out["warnings"].append("no model: fewer than 2 events, or a covariate without variation")
        return out
    cph = lifelines.CoxPHFitter()
    kw = {"cluster_col": "_cluster", "robust": True} if cluster is not None else {}
    with _lifelines_warnings(out):  # lifelines' own warnings become one line of the model's warnings
        try:
            cph.fit(df, duration_col="_time", event_col="_event", **kw)
        except Exception as exc:  # convergence failure (separation, collinearity)
            out["warnings"].append(f"no model: the fit failed ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            return out
        s = cph.summary
        for n in names:
            r = s.loc[n]
            out["covariates"][n] = {"hr": _clean(r["exp(coef)"]), "ci": [_clean(r["exp(coef) lower 95%"]),
                                    _clean(r["exp(coef) upper 95%"])], "p": _clean(r["p"]), "coef": _clean(r["coef"]),
                                    "se": _clean(r["se(coef)"])}
        out["concordance"] = _clean(cph.concordance_index_)
        lr = cph.log_likelihood_ratio_test()
        out["likelihood_ratio"] = {"chi2": _clean(lr.test_statistic), "df": int(lr.degrees_freedom), "p": _clean(lr.p_value)}
        out["ph_test"] = _ph_check(cph, df.drop(columns=["_cluster"], errors="ignore"), lifelines) if cluster is None else {}
    _cox_warnings(out, names)
    return out


@contextlib.contextmanager
def _lifelines_warnings(out):
    """Catch the warnings lifelines prints while fitting (a ConvergenceWarning on a small cohort or a
    covariate that separates the events comes with a traceback-like text on stderr) and append one
    warning that says what they mean to ``out['warnings']``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            text = _lifelines_warning_text(caught)
            if text:
                out["warnings"].append(text)


def _lifelines_warning_text(caught):
    """One line for the warnings lifelines gave (None when none)."""
    if not caught:
        return None
    first = " ".join(str(caught[0].message).split()).split(". ")[0].rstrip(".")
    if any("Convergence" in w.category.__name__ or "converge" in str(w.message).lower() for w in caught):
        return (f"the Cox fit did not converge cleanly (lifelines: {first}): too few patients, or a covariate that "
                "separates the events from the rest; its hazard ratio, CI and p are unreliable")
    return f"lifelines warned while fitting ({len(caught)} warning(s); first: {first})"


def _cox_warnings(out, names):
    events = out.get("event_clusters", out["events"])  # clustered rows: the independent units with an event
    epv = events / max(1, len(names))
    if len(names) > 1 and epv < MIN_EVENTS_PER_COVARIATE:
        out["warnings"].append(f"{events} events for {len(names)} covariates ({epv:.1f} per covariate, fewer than "
                               f"{MIN_EVENTS_PER_COVARIATE}): the model may be overfitted")
    for n, t in out["ph_test"].items():
        if isinstance(t, dict) and t.get("p") is not None and t["p"] < PH_ALPHA:
            out["warnings"].append(f"{n}: proportional hazards doubtful (Schoenfeld test p = {t['p']:.3g})")


def cox_univariable(time, event, covariates, *, cluster=None):
    """{name: one-covariate model} for each covariate (each on its own complete cases)."""
    return {n: cox_model(time, event, {n: v}, cluster=cluster, label="univariable") for n, v in covariates.items()}
