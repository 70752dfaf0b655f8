"""Figures of a cohort analysis (matplotlib, optional, imported when drawing; no pyplot state):
dose by response with the thresholds, the ROC curve, Kaplan-Meier curves with numbers at risk,
and a forest plot of the Cox hazard ratios."""

import numpy as np

from ..reporting.figures import png_bytes, require_matplotlib
from .survival import kaplan_meier

__all__ = ["plot_dose_by_response", "plot_roc", "plot_km", "plot_forest", "cohort_figures"]

_RESP, _NON = "#1f77b4", "#d62728"
_GROUP_COLORS = {"responders": _RESP, "non_responders": _NON, "bilobar": "#9467bd", "unilobar": "#2ca02c"}


def _figure(w, h, dpi=110):
    Figure, Canvas = require_matplotlib()
    fig = Figure(figsize=(w, h), dpi=dpi)
    Canvas(fig)
    return fig


def _fmt_ci(ci, digits=2):
    """' (lo-hi)', with NR for a limit not reached; '' without an interval."""
    if not ci or (ci[0] is None and ci[1] is None):
        return ""
    text = [("NR" if v is None else f"{v:.{digits}f}") for v in ci]
    return f" ({text[0]}-{text[1]})"


def plot_dose_by_response(data, result, path=None, seed=0):
    """Box plot and points of the patient dose by response, with the given and the Youden thresholds."""
    fig = _figure(5.2, 4.4)
    ax = fig.add_axes([0.15, 0.12, 0.8, 0.78])
    groups = [("responders", 1, _RESP), ("non_responders", 0, _NON)]
    values = [[p["dose"] for p in data.patients if p.get("response") == r and p.get("dose") is not None] for _, r, _c in groups]
    ax.boxplot(values, positions=[1, 2], widths=0.5, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(seed)
    for i, (vals, (_name, _r, color)) in enumerate(zip(values, groups), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(vals)), vals, s=16, color=color, alpha=0.75, zorder=3)
    roc = result.get("roc") or {}
    thr = result["options"]["threshold_gy"]
    if thr is not None:
        ax.axhline(thr, color="#444", ls="--", lw=1, label=f"given threshold {thr:g} {data.dose_unit}")
    if roc.get("youden_threshold") is not None:
        ax.axhline(roc["youden_threshold"], color="#ff7f0e", ls=":", lw=1.5,
                   label=f"Youden {roc['youden_threshold']:.3g}{_fmt_ci(roc.get('youden_ci'), 0)} {data.dose_unit}")
    ax.set_xticks([1, 2])
    ax.set_xticklabels([f"responders\n(n={len(values[0])})", f"non-responders\n(n={len(values[1])})"])
    ax.set_ylabel(f"tumour dose, {data.dose_metric} ({data.dose_unit})")
    p = result["dose_by_response"].get("p_wilcoxon")
    ax.set_title("Tumour dose by response" + (f" (rank-sum p = {p:.2g})" if p is not None else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return png_bytes(fig, path)


def plot_roc(result, path=None):
    """ROC curve with the AUC (95 % CI), the Youden point and the given threshold's point."""
    r = result["roc"]
    fig = _figure(4.6, 4.6)
    ax = fig.add_axes([0.14, 0.12, 0.8, 0.8])
    c = r["curve"]
    fpr = 1.0 - np.array(c["specificity"], float)
    ax.step(fpr, c["sensitivity"], where="post", color=_RESP, lw=1.8,
            label=f"AUC {r['auc']:.2f}{_fmt_ci(r['auc_ci'])}" if r["auc"] is not None else "AUC n/a")
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    for perf, marker, label in ((r.get("youden_performance"), "o", "Youden"), (r.get("given_threshold"), "s", "given")):
        if perf and perf["sensitivity"]["value"] is not None and perf["specificity"]["value"] is not None:
            ax.plot(1 - perf["specificity"]["value"], perf["sensitivity"]["value"], marker, color="#ff7f0e" if marker == "o"
                    else "#444", label=f"{label} {perf['threshold_gy']:.3g}")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"ROC of tumour dose for response ({r['level']} level)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(fig, path)


def _km_groups(data, key):
    rows = [p for p in data.patients if p.get("time_months") is not None and p.get("event") is not None]
    if key == "survival":
        label = lambda p: None if p.get("response") is None else ("responders" if p["response"] else "non_responders")  # noqa: E731
    else:
        label = lambda p: p.get("extent")  # noqa: E731
    groups = {}
    for p in rows:
        g = label(p)
        if g is not None:
            groups.setdefault(g, []).append((p["time_months"], p["event"]))
    return groups


def plot_km(data, result, path=None, key="survival"):
    """Kaplan-Meier curves by group (censoring ticks), medians in the legend, numbers at risk below."""
    sec = result[key]
    groups = _km_groups(data, key)
    fig = _figure(6.8, 4.8)
    ax = fig.add_axes([0.2, 0.33, 0.76, 0.6])
    for g, pairs in sorted(groups.items()):
        t, e = np.array(pairs, float).T
        km = kaplan_meier(t, e)
        color = _GROUP_COLORS.get(g)
        xs = np.concatenate([[0.0], km["time"]])
        ys = np.concatenate([[1.0], km["survival"]])
        s = sec["groups"][g]
        med = "not reached" if s["median_months"] is None else f"{s['median_months']:.3g}{_fmt_ci(s['ci'], 1)}"
        ax.step(np.append(xs, t.max()), np.append(ys, ys[-1]), where="post", color=color, lw=1.8,
                label=f"{g.replace('_', '-')}: median {med} months")
        cens = t[e == 0]
        ax.plot(cens, [ys[np.searchsorted(xs, c, side="right") - 1] for c in cens], "|", color=color, ms=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("overall survival")
    p = sec.get("logrank_p")
    ax.set_title("Kaplan-Meier overall survival" + (f" (log-rank p = {p:.2g})" if p is not None else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    times = sec["at_risk_times_months"]
    ax.set_xticks(times)
    ax.set_xlim(0, times[-1] if times and times[-1] > 0 else 1)
    _at_risk_rows(fig, ax, sec, times)
    return png_bytes(fig, path)


def _at_risk_rows(fig, ax, sec, times):
    tab = fig.add_axes([0.2, 0.04, 0.76, 0.17], sharex=ax)
    tab.set_axis_off()
    ax.set_xlabel("months")
    names = sorted(sec["groups"])
    for row, g in enumerate(names):
        y = len(names) - row
        tab.text(-0.05, y, g.replace("_", "-"), transform=tab.get_yaxis_transform(), ha="right", va="center", fontsize=8,
                 color=_GROUP_COLORS.get(g, "black"))
        for t, n in zip(times, sec["groups"][g]["at_risk"]):
            tab.text(t, y, str(n), ha="center", va="center", fontsize=8)
    tab.set_ylim(0.3, len(names) + 0.9)
    tab.text(0.0, len(names) + 0.8, "number at risk", transform=tab.get_yaxis_transform(), fontsize=8, va="center")


def plot_forest(result, path=None):
    """Forest plot of the hazard ratios (log scale) with 95 % CIs, univariable then multivariable."""
    cox = result["cox"]
    rows = [("univariable", k, v) for k, v in cox["univariable"].items() if v.get("hr")]
    rows += [("multivariable", k, v) for k, v in cox["multivariable"].items() if v.get("hr")]
    fig = _figure(7.2, 0.45 * len(rows) + 1.4)
    ax = fig.add_axes([0.36, 0.8 / (0.45 * len(rows) + 1.4), 0.4, 1 - 1.2 / (0.45 * len(rows) + 1.4)])
    for i, (model, name, v) in enumerate(rows):
        y = len(rows) - i
        color = "#1f77b4" if model == "univariable" else "#d62728"
        lo, hi = v["ci"] if v.get("ci") and None not in v["ci"] else (v["hr"], v["hr"])
        ax.plot([lo, hi], [y, y], color=color, lw=1.5)
        ax.plot(v["hr"], y, "s", color=color, ms=5)
        ax.text(-0.02, y, f"{name} ({model[:5]}.)", transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
        p = f"{v['p']:.2g}" if v.get("p") is not None else ""
        ax.text(1.02, y, f"{v['hr']:.2f}{_fmt_ci(v.get('ci'))}  p={p}", transform=ax.get_yaxis_transform(), ha="left",
                va="center", fontsize=8)
    ax.axvline(1.0, color="#666", lw=0.8, ls="--")
    ax.set_xscale("log")
    _log_ticks(ax)
    ax.set_yticks([])
    ax.set_ylim(0.3, len(rows) + 0.7)
    ax.set_xlabel("hazard ratio (95 % CI), log scale")
    ax.set_title("Cox proportional hazards, overall survival", fontsize=10)
    return png_bytes(fig, path)


def _log_ticks(ax):
    """Plain tick labels (0.25, 0.5, 1, 2, 4 ...) on a log axis, no minor labels."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    lo, hi = ax.get_xlim()
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 10, 20, 50, 100) if lo <= t <= hi] or [1]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def cohort_figures(data, result, folder=None):
    """{file name: PNG bytes} of every figure that applies (written into ``folder`` when given)."""
    import os

    out = {}
    jobs = [("dose_by_response.png", lambda p: plot_dose_by_response(data, result, p)), ("roc.png", lambda p: plot_roc(result, p))]
    if result.get("survival"):
        jobs.append(("km_response.png", lambda p: plot_km(data, result, p)))
    if result.get("survival_by_extent") and len(result["survival_by_extent"]["groups"]) > 1:
        jobs.append(("km_extent.png", lambda p: plot_km(data, result, p, key="survival_by_extent")))
    cox = result.get("cox") or {}
    if any(v.get("hr") for v in list(cox.get("univariable", {}).values()) + list(cox.get("multivariable", {}).values())):
        jobs.append(("forest.png", lambda p: plot_forest(result, p)))
    for name, draw in jobs:
        out[name] = draw(os.path.join(folder, name) if folder else None)
    return out
