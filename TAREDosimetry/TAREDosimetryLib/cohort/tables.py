"""The cohort analysis as CSV tables: (header, rows) per file.  The data tables (patients, lesions)
keep 6 significant digits; the statistics 4 (cohort.json keeps full precision)."""

__all__ = ["cohort_tables", "fmt"]


def fmt(v, digits=4):
    """A cell: numbers to ``digits`` significant digits, None as empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if v != v else f"{v:.{digits}g}"
    return str(v)


def _ci(ci, i):
    return fmt(ci[i]) if ci else ""


def patients_table(data):
    covs = list(data.covariate_kinds)
    header = ["case_id", f"tumour_dose ({data.dose_metric}, {data.dose_unit})", "n_tumours", "nontumoral_liver_mean_gy",
              "response", "responder", "os_months", "os_event", "hepatotoxicity_grade", "extent_table",
              "extent_from_segments", "extent_used"] + covs
    rows = []
    for p in data.patients:
        rows.append([p["case_id"], fmt(p.get("dose"), 6), fmt(p.get("n_tumours")), fmt(p.get("nontumoral_liver_gy"), 6),
                     p.get("response_raw") or "", fmt(p.get("response")), fmt(p.get("time_months"), 6), fmt(p.get("event")),
                     fmt(p.get("toxicity_grade")), p.get("extent_table") or "", p.get("extent_derived") or "",
                     p.get("extent") or ""] + [fmt(p["covariates"].get(c), 6) for c in covs])
    return header, rows


def lesions_table(data):
    header = ["case_id", "lesion", f"dose ({data.dose_metric}, {data.dose_unit})", "mass_g", "volume_ml",
              "in_right_lobe_pct", "in_left_lobe_pct", "responder"]
    rows = [[le["case_id"], le["lesion"], fmt(le.get("dose"), 6), fmt(le.get("mass_g"), 6), fmt(le.get("volume_ml"), 6),
             fmt(le.get("in_right_lobe_pct")), fmt(le.get("in_left_lobe_pct")), fmt(le.get("response"))]
            for le in data.lesions]
    return header, rows


def dose_by_response_table(result):
    header = ["level", "group", "n", "median", "q1", "q3", "min", "max", "unit", "p", "test"]
    rows = []
    for key in ("dose_by_response", "dose_by_response_lesions"):
        sec = result.get(key)
        if not sec:
            continue
        p = sec.get("p_wilcoxon", sec.get("p_cluster_bootstrap"))
        test = sec["test"]["test"] + ("" if key == "dose_by_response" else "; p by cluster bootstrap over patients")
        for g in ("responders", "non_responders"):
            s = sec[g]
            rows.append([sec["level"], g, s["n"], fmt(s["median"]), fmt(s["q1"]), fmt(s["q3"]), fmt(s["min"]),
                         fmt(s["max"]), sec["unit"], fmt(p), test])
    return header, rows


def roc_table(result):
    header = ["level", "n_responders", "n_non_responders", "auc", "auc_ci_low", "auc_ci_high", "auc_ci_method",
              "threshold", "threshold_ci_low", "threshold_ci_high", "sensitivity", "sens_ci_low", "sens_ci_high",
              "specificity", "spec_ci_low", "spec_ci_high"]
    rows = []
    for key in ("roc", "roc_lesions"):
        r = result.get(key)
        if not r:
            continue
        for label, perf, ci in (("Youden", r["youden_performance"], r["youden_ci"]), ("given", r["given_threshold"], None)):
            if not perf:
                continue
            se, sp = perf["sensitivity"], perf["specificity"]
            rows.append([f"{r['level']} ({label})", r["n"]["responders"], r["n"]["non_responders"], fmt(r["auc"]),
                         _ci(r["auc_ci"], 0), _ci(r["auc_ci"], 1), r["auc_ci_method"], fmt(perf["threshold_gy"]),
                         _ci(ci, 0), _ci(ci, 1), fmt(se["value"]), _ci(se["ci"], 0), _ci(se["ci"], 1), fmt(sp["value"]),
                         _ci(sp["ci"], 0), _ci(sp["ci"], 1)])
    return header, rows


def roc_curve_table(result):
    c = result["roc"]["curve"]
    return ["threshold", "sensitivity", "specificity"], [
        [fmt(t), fmt(se), fmt(sp)] for t, se, sp in zip(c["threshold_gy"], c["sensitivity"], c["specificity"])]


def fisher_table(result):
    header = ["factor", "outcome", "levels", "table (no, yes per level)", "n", "odds_ratio", "or_ci_low", "or_ci_high",
              "p", "test"]
    rows = [[f["factor"], f["outcome"], "; ".join(f["levels"]), "; ".join(f"{a}/{b}" for a, b in f["table"]), f["n"],
             fmt(f["odds_ratio"]), _ci(f["odds_ratio_ci"], 0), _ci(f["odds_ratio_ci"], 1), fmt(f["p"]), f["test"]]
            for f in result.get("fisher", [])]
    return header, rows


def toxicity_continuous_table(result):
    header = ["factor", "n_toxicity", "median_toxicity", "iqr_toxicity", "n_no_toxicity", "median_no_toxicity",
              "iqr_no_toxicity", "p", "test"]
    rows = []
    for t in result.get("toxicity_continuous", []):
        a, b = t["toxicity"], t["no_toxicity"]
        rows.append([t["factor"], a["n"], fmt(a["median"]), f"{fmt(a['q1'])}-{fmt(a['q3'])}", b["n"], fmt(b["median"]),
                     f"{fmt(b['q1'])}-{fmt(b['q3'])}", fmt(t["p"]), t["test"]["test"]])
    return header, rows


def survival_table(result):
    header = ["stratification", "group", "n", "events", "median_months", "ci_low", "ci_high", "logrank_p"]
    rows = []
    for key in ("survival", "survival_by_extent"):
        sec = result.get(key)
        if not sec:
            continue
        groups = dict(sec["groups"], all=sec["overall"])
        for g, s in groups.items():
            rows.append([key.replace("survival_by_", "") if key != "survival" else "response", g, s["n"], s["events"],
                         fmt(s["median_months"]), _ci(s["ci"], 0), _ci(s["ci"], 1), fmt(sec["logrank_p"]) if g != "all" else ""])
    return header, rows


def at_risk_table(result):
    sec = result["survival"]
    header = ["group"] + [fmt(t) for t in sec["at_risk_times_months"]]
    groups = dict(sec["groups"], all=sec["overall"])
    return header, [[g] + s["at_risk"] for g, s in groups.items()]


def cox_table(result):
    cox = result.get("cox") or {}
    header = ["model", "covariate", "meaning", "hr", "ci_low", "ci_high", "p", "ph_test_p", "n", "events"]
    rows = []
    for name, model in (cox.get("univariable_models") or {}).items():
        c = model["covariates"].get(name) or {}
        ph = (model.get("ph_test") or {}).get(name, {})
        rows.append(["univariable", name, cox["covariates"].get(name, ""), fmt(c.get("hr")), _ci(c.get("ci"), 0),
                     _ci(c.get("ci"), 1), fmt(c.get("p")), fmt(ph.get("p") if isinstance(ph, dict) else None),
                     model["n"], model["events"]])
    multi = cox.get("multivariable_model")
    for name, c in (multi or {}).get("covariates", {}).items():
        ph = (multi.get("ph_test") or {}).get(name, {})
        rows.append(["multivariable", name, cox["covariates"].get(name, ""), fmt(c["hr"]), _ci(c["ci"], 0), _ci(c["ci"], 1),
                     fmt(c["p"]), fmt(ph.get("p") if isinstance(ph, dict) else None), multi["n"], multi["events"]])
    return header, rows


def cohort_tables(data, result):
    """{file name: (header, rows)} of every table that has content."""
    tables = {"patients.csv": patients_table(data), "dose_by_response.csv": dose_by_response_table(result),
              "roc.csv": roc_table(result), "roc_curve.csv": roc_curve_table(result)}
    if data.lesions:
        tables["lesions.csv"] = lesions_table(data)
    if result.get("fisher") or result.get("toxicity_continuous"):
        tables["fisher.csv"] = fisher_table(result)
        tables["toxicity_continuous.csv"] = toxicity_continuous_table(result)
    if result.get("survival"):
        tables["survival.csv"] = survival_table(result)
        tables["numbers_at_risk.csv"] = at_risk_table(result)
    if result.get("cox"):
        tables["cox.csv"] = cox_table(result)
    return tables
