"""cohort.html: the cohort analysis as one self-contained page (inline CSS, figures as base64 PNG)."""

import base64
import datetime
import html

from .tables import fmt

__all__ = ["write_cohort_html", "headline_lines"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:14px;color:#222;margin:24px auto;max-width:1150px;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc;padding-bottom:3px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:12.5px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f1f1f1}.warn{color:#8a4b00}.meta{color:#555;font-size:12.5px}img{max-width:100%;border:1px solid #ddd;margin:6px 0}
ul.key li{margin:3px 0}.scroll{overflow-x:auto}
"""


def _e(t):
    return html.escape(str(t), quote=True)


def _table(header, rows, limit=None):
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in shown)
    more = f'<p class="meta">{len(rows) - len(shown)} more rows in the CSV file.</p>' if len(shown) < len(rows) else ""
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>{more}'


def _group_text(s, unit):
    return f"{fmt(s['median'], 3)} ({fmt(s['q1'], 3)}-{fmt(s['q3'], 3)}) {unit}, n = {s['n']}"


def _pval(p):
    return "not tested" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def headline_lines(result):
    """The key results as sentences (the page's summary and the console's)."""
    out = []
    d = result["dose_by_response"]
    out.append(f"Tumour dose ({d['metric']}), responders {_group_text(d['responders'], d['unit'])} vs non-responders "
               f"{_group_text(d['non_responders'], d['unit'])}; Wilcoxon rank-sum p {_pval(d['p_wilcoxon'])}.")
    r = result.get("roc") or {}
    if r.get("auc") is not None and r.get("youden_performance"):
        g = r.get("given_threshold") or {}
        out.append(f"ROC AUC {r['auc']:.2f}{_ci_text(r['auc_ci'])}; Youden threshold {fmt(r['youden_threshold'], 4)} "
                   f"{d['unit']}{_ci_text(r['youden_ci'], 0)} (sensitivity {fmt(r['youden_performance']['sensitivity']['value'], 2)}, "
                   f"specificity {fmt(r['youden_performance']['specificity']['value'], 2)}); given threshold "
                   f"{fmt(g.get('threshold_gy'))} {d['unit']}: sensitivity {fmt((g.get('sensitivity') or {}).get('value'), 2)}, "
                   f"specificity {fmt((g.get('specificity') or {}).get('value'), 2)}.")
    s = result.get("survival")
    if s:
        parts = [f"{g.replace('_', '-')} {_median_text(v)}" for g, v in s["groups"].items()]
        out.append(f"Overall survival: all {_median_text(s['overall'])}; " + ", ".join(parts)
                   + f"; log-rank p {_pval(s['logrank_p'])}.")
    cox = result.get("cox") or {}
    if cox.get("multivariable"):
        out.append("Multivariable Cox: " + "; ".join(f"{k} HR {fmt(v['hr'], 3)}{_ci_text(v['ci'])}, p {_pval(v['p'])}"
                                                      for k, v in cox["multivariable"].items() if v.get("hr")) + ".")
    return out


def _ci_text(ci, digits=2):
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" (95 % CI {ci[0]:.{digits}f}-{ci[1]:.{digits}f})"


def _median_text(s):
    if s["median_months"] is None:
        return "median not reached"
    lo, hi = s["ci"]
    return f"{s['median_months']:.3g} months (95 % CI {fmt(lo, 3) or 'NA'}-{fmt(hi, 3) or 'NA'})"


def _img(png, alt):
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _methods(result):
    items = []
    for key in ("dose_by_response", "dose_by_response_lesions"):
        sec = result.get(key)
        if sec:
            t = sec["test"]
            items.append(f"{key}: {t['test']} ({t['method']}); {t['assumptions']}; n {t['n']}"
                         + (f"; {sec['clustering']['method']}" if key.endswith("lesions") else ""))
    if result.get("roc"):
        r = result["roc"]
        items.append(f"ROC: {r['test']}; AUC CI {r['auc_ci_method']}; Youden CI {r['youden_ci_method']}")
    if result.get("fisher"):
        items.append(f"hepatotoxicity: {result.get('toxicity_definition')}; Fisher's exact test for categorical factors "
                     "(Freeman-Halton for more than two levels), Wilcoxon rank-sum for continuous ones")
    if result.get("survival"):
        o = result["survival"]["overall"]
        items.append(f"survival: Kaplan-Meier, {o['ci_method']}; {result['survival']['logrank']['test']} "
                     f"({result['survival']['logrank']['assumptions']})")
    if result.get("cox"):
        m = next(iter(result["cox"]["univariable_models"].values()), None)
        if m:
            items.append(f"Cox: {m['model']}; {m['assumptions']}; multivariable covariates: {result['cox']['selection']}")
    return items


def write_cohort_html(path, data, result, tables, figures):
    """Write cohort.html: key results, warnings, figures, every table, methods and data notes."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>TAREDosimetry cohort analysis</title>"
             f"<style>{_CSS}</style></head><body><h1>Cohort analysis: tumour dose, response, toxicity and survival</h1>",
             f"<p class='meta'>TAREDosimetry {_e(result['software']['version'])}, "
             f"{_e(datetime.datetime.now().astimezone().isoformat(timespec='seconds'))}; clinical table "
             f"{_e(data.clinical_path)}; dose: {_e(data.dose_source)}; {result['n']['patients']} patients, "
             f"{result['n']['lesions']} lesions. Research software, not a medical device.</p>",
             "<h2>Key results</h2><ul class='key'>" + "".join(f"<li>{_e(s)}</li>" for s in headline_lines(result)) + "</ul>"]
    if result["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{_e(w)}</li>" for w in result["warnings"]) + "</ul>")
    for name, png in figures.items():
        parts.append(_img(png, name))
    for name, (header, rows) in tables.items():
        parts.append(f"<h2>{_e(name)}</h2>" + _table(header, rows, limit=200 if name in ("patients.csv", "lesions.csv",
                                                                                          "roc_curve.csv") else None))
    parts.append("<h2>Methods and assumptions</h2><ul>" + "".join(f"<li>{_e(m)}</li>" for m in _methods(result)) + "</ul>")
    if result["data"]["notes"]:
        parts.append("<h2>Data notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in result["data"]["notes"]) + "</ul>")
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
