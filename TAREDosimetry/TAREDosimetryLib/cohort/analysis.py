"""The cohort analysis: every table of the study from a :class:`~.dataset.CohortData`.

Sections (the keys of cohort.json): ``dose_by_response`` (patients; and ``dose_by_response_lesions``
with how lesions cluster in patients), ``roc`` (and ``roc_lesions``), ``fisher`` and
``toxicity_continuous`` (hepatotoxicity against categorical and continuous factors),
``survival`` (Kaplan-Meier by response, log-rank; ``survival_by_extent``), ``cox`` (univariable and
multivariable hazard ratios with the proportional-hazards check).  Each test names itself, its
assumptions and its sample sizes, and warns when a group is too small.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .contingency import fisher_test
from .groups import rank_sum_test, summary_stats
from .roc import bootstrap_ci, roc_analysis
from .survival import km_summary, logrank_test

__all__ = ["CohortOptions", "analyse_cohort", "cox_candidates"]


@dataclass
class CohortOptions:
    """Choices of the analysis (the flags of ``tare-dosimetry cohort``)."""

    threshold_gy: float = 79.5
    n_boot: int = 2000
    seed: int = 0
    toxicity_min_grade: int = 3
    multivariable: tuple = None
    selection_p: float = 0.10
    km_step_months: float = 6.0
    cox: bool = True


def _arr(records, key):
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in records], float)


def _dose_groups(records):
    rows = [r for r in records if r.get("response") is not None and r.get("dose") is not None]
    return rows, [r["dose"] for r in rows if r["response"] == 1], [r["dose"] for r in rows if r["response"] == 0]


def dose_by_response(data):
    """Medians (IQR) of the patient dose by response and the rank-sum test."""
    rows, resp, non = _dose_groups(data.patients)
    test = rank_sum_test(resp, non, names=("responders", "non_responders"))
    return {"level": "patient", "metric": data.dose_metric, "unit": data.dose_unit, "source": data.dose_source,
            "responders": summary_stats(resp), "non_responders": summary_stats(non), "p_wilcoxon": test["p"],
            "test": test, "not_evaluable": sum(1 for r in data.patients if r.get("response") is None)}


def dose_by_response_lesions(data, options):
    """Per-lesion medians by lesion response; the test accounts for lesions clustered in patients."""
    rows, resp, non = _dose_groups(data.lesions)
    if not rows:
        return None
    per_patient = np.unique([r["case_id"] for r in rows], return_counts=True)[1]
    test = rank_sum_test(resp, non, names=("responding lesions", "non-responding lesions"))
    boot = bootstrap_ci([r["dose"] for r in rows], [r["response"] for r in rows], n_boot=options.n_boot,
                        seed=options.seed, clusters=[r["case_id"] for r in rows])
    p_cluster = None
    if boot.get("auc_se"):
        from scipy import stats

        auc = test["w"] / (len(resp) * len(non)) if resp and non else None
        p_cluster = float(2 * stats.norm.sf(abs(auc - 0.5) / boot["auc_se"])) if auc is not None else None
    return {"level": "lesion", "metric": data.dose_metric, "unit": data.dose_unit,
            "responders": summary_stats(resp), "non_responders": summary_stats(non),
            "p_wilcoxon_independent": test["p"], "p_cluster_bootstrap": p_cluster, "test": test,
            "clustering": {"n_lesions": len(rows), "n_patients": int(per_patient.size),
                           "lesions_per_patient": {"min": int(per_patient.min()), "median": float(np.median(per_patient)),
                                                   "max": int(per_patient.max())},
                           "method": "lesions of one patient are not independent: p_cluster_bootstrap tests AUC = 0.5 "
                                     f"(the rank-sum hypothesis) with the SE of a cluster bootstrap over patients "
                                     f"({boot['n_boot']} resamples, seed {boot['seed']}); p_wilcoxon_independent "
                                     "treats lesions as independent and is shown for comparison only"}}


def roc_sections(data, options):
    rows, _r, _n = _dose_groups(data.patients)
    roc = roc_analysis([r["dose"] for r in rows], [r["response"] for r in rows], threshold_gy=options.threshold_gy,
                       n_boot=options.n_boot, seed=options.seed)
    roc.update(level="patient", metric=data.dose_metric, unit=data.dose_unit)
    out = {"roc": roc}
    lrows, _r, _n = _dose_groups(data.lesions)
    if lrows:
        lroc = roc_analysis([r["dose"] for r in lrows], [r["response"] for r in lrows],
                            threshold_gy=options.threshold_gy, n_boot=options.n_boot, seed=options.seed,
                            clusters=[r["case_id"] for r in lrows])
        lroc.update(level="lesion", metric=data.dose_metric, unit=data.dose_unit,
                    clustering="AUC and threshold CIs by cluster bootstrap: whole patients resampled")
        out["roc_lesions"] = lroc
    return out


# -- hepatotoxicity ---------------------------------------------------------------------------------
def _toxic(p, min_grade):
    g = p.get("toxicity_grade")
    return None if g is None else int(g >= min_grade)


def _categorical_factors(data):
    """{factor name: value per patient} of the categorical factors for Fisher's test."""
    factors = {"extent": [p.get("extent") for p in data.patients],
               "response": [None if p.get("response") is None else ("responder" if p["response"] else "non-responder")
                            for p in data.patients]}
    for name, kind in data.covariate_kinds.items():
        if kind == "categorical":
            vals = [p["covariates"].get(name) for p in data.patients]
            if 2 <= len({v for v in vals if v is not None}) <= 6:
                factors[name] = vals
    return factors


def _continuous_factors(data):
    factors = {f"tumour dose ({data.dose_metric})": _arr(data.patients, "dose"),
               "non-tumoural liver mean dose (Gy)": _arr(data.patients, "nontumoral_liver_gy")}
    for name, kind in data.covariate_kinds.items():
        if kind == "numeric":
            factors[name] = np.array([np.nan if p["covariates"].get(name) is None else p["covariates"][name]
                                      for p in data.patients], float)
    return {k: v for k, v in factors.items() if np.isfinite(v).any()}


def toxicity_sections(data, options):
    """Fisher's exact tests (categorical factors) and rank-sum tests (continuous ones) of
    hepatotoxicity (grade >= ``options.toxicity_min_grade``)."""
    toxic = [_toxic(p, options.toxicity_min_grade) for p in data.patients]
    if all(t is None for t in toxic):
        return {"fisher": [], "toxicity_continuous": [], "toxicity_definition": None}
    outcome = f"hepatotoxicity grade >= {options.toxicity_min_grade}"
    fisher = [fisher_test([f for f, t in zip(vals, toxic) if t is not None], [t for t in toxic if t is not None],
                          factor_name=name, outcome_name=outcome)
              for name, vals in _categorical_factors(data).items()]
    cont = []
    for name, vals in _continuous_factors(data).items():
        yes = [v for v, t in zip(vals, toxic) if t == 1]
        no = [v for v, t in zip(vals, toxic) if t == 0]
        test = rank_sum_test(yes, no, names=("toxicity", "no toxicity"))
        cont.append({"factor": name, "toxicity": summary_stats(yes), "no_toxicity": summary_stats(no), "p": test["p"],
                     "test": test})
    n_toxic = sum(1 for t in toxic if t == 1)
    return {"fisher": fisher, "toxicity_continuous": cont,
            "toxicity_definition": f"{outcome} (CTCAE); {n_toxic} of {sum(t is not None for t in toxic)} patients"}


# -- survival -----------------------------------------------------------------------------------------
def _at_times(time, step):
    t = np.asarray(time, float)
    top = np.nanmax(t) if np.isfinite(t).any() else 0.0
    return [float(x) for x in np.arange(0.0, top + 1e-9, step)]


def _km_by(data, label_of, options):
    rows = [p for p in data.patients if p.get("time_months") is not None and p.get("event") is not None]
    if not rows:
        return None
    time, event = _arr(rows, "time_months"), _arr(rows, "event")
    at = _at_times(time, options.km_step_months)
    groups = {}
    labels = [label_of(p) for p in rows]
    for g in sorted({v for v in labels if v is not None}, key=str):
        m = np.array([v == g for v in labels])
        groups[g] = km_summary(time[m], event[m], at_times=at)
    known = np.array([v is not None for v in labels])
    test = logrank_test(time[known], event[known], np.array(labels, dtype=object)[known])
    return {"groups": groups, "logrank_p": test["p"], "logrank": test, "overall": km_summary(time, event, at_times=at),
            "at_risk_times_months": at, "unit": "months"}


def survival_sections(data, options):
    out = {}
    by_resp = _km_by(data, lambda p: None if p.get("response") is None else
                     ("responders" if p["response"] else "non_responders"), options)
    if by_resp is not None:
        out["survival"] = by_resp
        if len([p for p in data.patients if p.get("extent")]) > 1:
            out["survival_by_extent"] = _km_by(data, lambda p: p.get("extent"), options)
    return out


# -- Cox ------------------------------------------------------------------------------------------------
def cox_candidates(data):
    """{covariate name: value per patient (float, NaN missing)} for the Cox models, with what each means."""
    pts = data.patients
    cands, meaning = {}, {}
    if any(p.get("response") is not None for p in pts):
        cands["responder"] = _arr(pts, "response")
        meaning["responder"] = "responder (1) vs non-responder (0)"
    scale = 10.0 if data.dose_unit == "Gy" else 1.0
    dose_name = "tumour_dose_per_10gy" if scale == 10.0 else "tumour_dose"
    cands[dose_name] = _arr(pts, "dose") / scale
    meaning[dose_name] = f"tumour {data.dose_metric}, per {'10 Gy' if scale == 10.0 else data.dose_unit or 'unit'}"
    if any(p.get("extent") for p in pts):
        cands["bilobar"] = np.array([np.nan if not p.get("extent") else float(p["extent"] == "bilobar") for p in pts])
        meaning["bilobar"] = "bilobar (1) vs unilobar (0) disease"
    if np.isfinite(_arr(pts, "nontumoral_liver_gy")).any():
        cands["nontumoral_liver_dose_per_10gy"] = _arr(pts, "nontumoral_liver_gy") / 10.0
        meaning["nontumoral_liver_dose_per_10gy"] = "non-tumoural liver mean dose, per 10 Gy"
    for name, kind in data.covariate_kinds.items():
        vals = [p["covariates"].get(name) for p in pts]
        if kind == "numeric":
            cands[name] = np.array([np.nan if v is None else float(v) for v in vals])
            meaning[name] = f"{name}, per {data.units.get(name, 'unit')}"
        else:
            levels = sorted({v for v in vals if v is not None}, key=str)
            for lev in levels[1:] if 2 <= len(levels) <= 6 else []:
                key = f"{name}={lev}"
                cands[key] = np.array([np.nan if v is None else float(v == lev) for v in vals])
                meaning[key] = f"{name} {lev} vs {levels[0]}"
    return {k: v for k, v in cands.items() if np.isfinite(v).sum() >= 2}, meaning


def cox_section(data, options):
    """Univariable Cox models of every candidate, and the multivariable model of ``options.multivariable``
    (default: the candidates with univariable p < ``options.selection_p``)."""
    from .cox import cox_model, cox_univariable

    rows = [i for i, p in enumerate(data.patients) if p.get("time_months") is not None and p.get("event") is not None]
    if not rows:
        return None
    cands, meaning = cox_candidates(data)
    time, event = _arr(data.patients, "time_months")[rows], _arr(data.patients, "event")[rows]
    cands = {k: v[rows] for k, v in cands.items()}
    uni = cox_univariable(time, event, cands)
    table = {k: m["covariates"].get(k, {"hr": None, "ci": None, "p": None}) for k, m in uni.items()}
    if options.multivariable:
        unknown = [c for c in options.multivariable if c not in cands]
        if unknown:
            raise InputError(f"--covariates: {', '.join(unknown)} not available; the Cox covariates are: {', '.join(cands)}")
        chosen, selection = list(options.multivariable), "given with --covariates"
    else:
        chosen = [k for k, v in table.items() if v.get("p") is not None and v["p"] < options.selection_p]
        selection = f"univariable p < {options.selection_p:g} (--covariates to choose)"
    multi = cox_model(time, event, {c: cands[c] for c in chosen}) if len(chosen) >= 1 else None
    return {"univariable": table, "univariable_models": uni,
            "multivariable": multi["covariates"] if multi else {}, "multivariable_model": multi,
            "selection": selection, "covariates": meaning,
            "warnings": [f"univariable: {w}" for m in uni.values() for w in m["warnings"]]
            + [f"multivariable: {w}" for w in (multi or {}).get("warnings", [])]}


# -- the whole analysis -----------------------------------------------------------------------------------
def _counts(data):
    pts = data.patients
    return {"patients": len(pts), "with_dose": sum(p.get("dose") is not None for p in pts),
            "with_response": sum(p.get("response") is not None for p in pts),
            "responders": sum(p.get("response") == 1 for p in pts),
            "with_survival": sum(p.get("time_months") is not None and p.get("event") is not None for p in pts),
            "lesions": len(data.lesions), "lesions_with_response": sum(le.get("response") is not None for le in data.lesions)}


def _collect_warnings(result):
    out = []
    for key, sec in result.items():
        if isinstance(sec, dict):
            out += [f"{key}: {w}" for w in sec.get("warnings", [])]
            test = sec.get("test")
            out += [f"{key}: {w}" for w in (test.get("warnings", []) if isinstance(test, dict) else [])]
        elif isinstance(sec, list):
            out += [f"{key} ({t.get('factor', '')}): {w}" for t in sec for w in t.get("warnings", [])]
    return out


def analyse_cohort(data, options=None):
    """Every section of the cohort analysis (the content of cohort.json) from a CohortData."""
    from ..version import __version__

    options = options or CohortOptions()
    result = {"software": {"name": "TAREDosimetry", "version": __version__},
              "data": {"clinical_table": data.clinical_path, "results": data.results_dir or None,
                       "dose_metric": data.dose_metric, "dose_unit": data.dose_unit, "dose_source": data.dose_source,
                       "units": data.units, "notes": list(data.notes)},
              "options": {"threshold_gy": options.threshold_gy, "bootstrap_resamples": options.n_boot,
                          "seed": options.seed, "toxicity_min_grade": options.toxicity_min_grade},
              "n": _counts(data), "dose_by_response": dose_by_response(data)}
    lesion = dose_by_response_lesions(data, options)
    if lesion:
        result["dose_by_response_lesions"] = lesion
    result.update(roc_sections(data, options))
    result.update(toxicity_sections(data, options))
    result.update(survival_sections(data, options))
    if options.cox and "survival" in result:
        result["cox"] = cox_section(data, options)
    result["warnings"] = list(data.warnings) + _collect_warnings(result)
    return result
