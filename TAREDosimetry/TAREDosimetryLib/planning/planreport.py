"""The plan section of report.html: the recommended activity, every model with its binding
constraint, the prescription, the inputs and their sources, the what-if table and the vials."""

from ..reporting.html import escape as _e
from ..reporting.html import html_table, status_cell
from ..reporting.tables import format_metric

__all__ = ["plan_section_html", "what_if_csv_rows", "compare_section_html", "comparison_csv_rows"]


def _num(key, v):
    return f'<td class="num">{_e(format_metric(key, v))}</td>'


def _yes_no(v, not_judged=()):
    """Cell text of ``target_reached``: yes, no, unknown (with the targets the model could not judge), or a dash."""
    text = "\u2013" if v is None else (v if isinstance(v, str) else ("yes" if v else "no"))
    return text + (f" (not judged: {'; '.join(not_judged)})" if not_judged else "")


def _reached_text(rec):
    """The banner's words on the targets of the recommended model."""
    reached, not_judged = rec.get("target_reached"), rec.get("targets_not_judged") or []
    text = "" if reached is None else ("; every target reached" if reached is True else
                                       "; the targets are NOT reached within the limits" if reached is False else "")
    if not_judged:
        text += f"; targets the {rec['model']} model cannot evaluate (not judged): " + "; ".join(not_judged)
    return text


def _order_text(rec):
    """The activity to order (whole MBq that still meets the binding rule), when it differs from the exact one."""
    order = rec.get("activity_to_order_gbq")
    if order is None or rec.get("activity_gbq") is None or abs(order - rec["activity_gbq"]) < 1e-12:
        return ""
    return (f" Activity to order: {order:.3f} GBq (the exact {rec['activity_gbq']:.6f} GBq moved to a whole MBq on the side "
            "that keeps the binding rule met).")


def _models_table(d):
    rows = []
    for name, m in d["models"].items():
        pred = m.get("predicted") or {}
        key = "; ".join(f"{c}: {format_metric('mean_gy', v.get('mean_gy'))} Gy" for c, v in pred.items() if v.get("mean_gy") is not None)
        rec = " (recommended)" if name == d["recommended"]["model"] else ""
        rows.append(f"<tr><td>{_e(name + rec)}</td>{_num('activity_gbq', m['activity_gbq'])}<td>{_e(m['binding_constraint'] or '')}</td>"
                    f"<td>{_e(_yes_no(m.get('target_reached'), m.get('targets_not_judged')))}</td><td>{_e(key)}</td></tr>")
    for name, why in (d.get("skipped_models") or {}).items():
        rows.append(f"<tr><td>{_e(name)}</td><td class=\"num\">\u2013</td><td colspan=\"3\">{_e('not computed: ' + why)}</td></tr>")
    return html_table(["model", "activity (GBq)", "binding constraint", "targets reached", "predicted mean doses"], rows)


def _rules_table(presc):
    rows = []
    for kind in ("targets", "limits"):
        for r in presc[kind]:
            who = r["segment"] or r["role"]
            rows.append(f"<tr><td>{_e(kind[:-1])}</td><td>{_e(who)}</td><td>{_e(r['metric'])} {_e(r['comparison'])} {r['threshold']:g} "
                        f"{_e(r['unit'])}</td><td class=\"src\">{_e(r['source'])}</td></tr>")
    return html_table(["", "applies to", "rule", "source"], rows)


def _what_if_table(rows):
    names = []
    for r in rows:
        names += [n for n in r["predicted"] if n not in names]
    body = []
    for r in rows:
        cells = [_num("activity_gbq", r["activity_gbq"])]
        cells += [_num("mean_gy", (r["predicted"].get(n) or {}).get("mean_gy")) for n in names]
        cells.append(status_cell(r["status"]))
        unjudged = r.get("not_evaluated_rules") or []
        text = ", ".join(r["failed_rules"]) + (("; " if r["failed_rules"] else "") + "not evaluated: " + ", ".join(unjudged) if unjudged else "")
        cells.append(f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return html_table(["activity (GBq)"] + [f"{n} mean (Gy)" for n in names] + ["status", "failed (and not evaluated) rules"], body)


def _vials_table(vials):
    rows = [f"<tr>{_num('activity_gbq', v['vial_gbq'])}{_num('activity_gbq', v['needed_gbq'])}"
            f"<td class=\"num\">{v['hours_after_calibration']:.1f}</td><td class=\"num\">{v['day']}</td><td>{_e(v.get('at') or '')}</td></tr>"
            for v in vials]
    return html_table(["vial at calibration (GBq)", "needed in vial (GBq)", "hours after calibration", "day", "date and time"], rows)


def plan_section_html(plan_dict):
    """HTML of the plan (``Plan.to_dict()``), to place under the report's banner."""
    d, rec = plan_dict, plan_dict["recommended"]
    split = rec.get("activities_gbq") or {}
    split_text = (" = " + " + ".join(f"{n} {a:.3f} GBq" for n, a in split.items()) + "; ") if split else ""
    p = ["<h2>Treatment plan</h2>",
         f'<div class="banner" style="background:#e8f0fb;color:#123a6b;border:2px solid #123a6b"><b>{rec["activity_gbq"]:.3f} GBq</b>'
         f'{_e(split_text)}{_e(rec["model"])} model ({_e(d["device"])} microspheres); binding constraint: {_e(rec["binding_constraint"])}'
         f'{_e(_reached_text(rec))}</div>',
         '<p class="note">Predicted doses: the MAA distribution stands for the microspheres\'. The activity is the net activity '
         'administered to the patient (residual excluded); the vial must hold activity / (1 - residual).'
         + _order_text(rec) + '</p>',
         "<h3>Models</h3>", _models_table(d), "<h3>Prescription</h3>", f'<p class="meta">{_e(d["prescription"]["origin"])}</p>',
         _rules_table(d["prescription"])]
    inp = d.get("inputs") or {}
    if inp:
        shown = {k: v for k, v in inp.items() if k not in ("sources", "masses_g", "lung_shunt") and v is not None}
        lsf = inp.get("lung_shunt") or {}
        rows = [f"<tr><th>{_e(k)}</th><td>{_e(format_metric(k, v))}</td></tr>" for k, v in shown.items()]
        rows += [f"<tr><th>LSF</th><td>{lsf.get('percent', 0):.2f} % ({_e(lsf.get('method', ''))})</td></tr>"] if lsf else []
        rows += [f"<tr><th>mass {_e(k)} (g)</th><td>{_e(format_metric('mass_g', v))}</td></tr>" for k, v in (inp.get("masses_g") or {}).items()]
        rows += [f"<tr><th>source of {_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in (inp.get("sources") or {}).items()]
        p += ["<h3>Inputs</h3>", f"<table>{''.join(rows)}</table>"]
    p += [f"<h3>What if (model {_e(rec['model'])})</h3>", _what_if_table(d.get("what_if") or [])]
    if d.get("vials"):
        p += ["<h3>Glass vials: when each holds the activity to infuse</h3>", _vials_table(d["vials"])]
    if d.get("territories"):
        p += ["<h3>Territories</h3>", _territories_html(d["territories"])]
    notes = [n for m in d["models"].values() for n in m.get("notes", [])] + list(d.get("warnings") or [])
    if notes:
        p.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in dict.fromkeys(notes)) + "</ul>")
    return "\n".join(p)


def _territories_html(t):
    rows = [f"<tr><td>{_e(name)}</td>{_num('activity_gbq', e['activity_gbq'])}<td class=\"num\">{100 * e['lung_shunt_fraction']:.1f}</td>"
            f"<td>{_e(e['binding_constraint'])}</td><td>{_e(_yes_no(e.get('target_reached'), e.get('targets_not_judged')))}</td>"
            f"{_num('mean_gy', e['lung_mean_gy'])}</tr>"
            for name, e in t["territories"].items()]
    rows.append(f"<tr><th>total</th>{_num('activity_gbq', t['total_activity_gbq'])}<td></td><td>{_e(t.get('binding_constraint') or '')}</td>"
                f"<td></td>{_num('mean_gy', t['total_lung_mean_gy'])}</tr>")
    out = [html_table(["territory", "activity (GBq)", "LSF (%)", "binding constraint", "targets reached", "lung mean dose (Gy)"], rows)]
    for name, e in t["territories"].items():
        pred = e.get("predicted") or {}
        cells = "; ".join(f"{c}: {format_metric('mean_gy', v.get('mean_gy'))} Gy" for c, v in pred.items() if v.get("mean_gy") is not None)
        out.append(f"<p><b>{_e(name)}</b> (its own injection): {_e(cells)}</p>")
        if e.get("vials"):
            out += [f"<p>Glass vials for {_e(name)}:</p>", _vials_table(e["vials"])]
    return "\n".join(out)


def what_if_csv_rows(plan_dict):
    """(header, rows) of what_if.csv: activity_gbq, compartment, mean_gy, d70_gy, v100_pct, status."""
    rows = []
    for r in plan_dict.get("what_if") or []:
        for name, m in r["predicted"].items():
            rows.append([f"{r['activity_gbq']:.6g}", name] + [("" if m.get(k) is None else f"{m[k]:.6g}") for k in ("mean_gy", "d70_gy", "v100_pct")]
                        + [r["status"]])
    return ["activity_gbq", "compartment", "mean_gy", "d70_gy", "v100_pct", "status"], rows


def _dice_text(v):
    return "\u2013 (both empty)" if v is None else f"{v:.3f}"


def compare_section_html(comp, figure_png=None):
    """HTML of a comparison (``Comparison.to_dict()``), with the registration-check figure."""
    from ..reporting.html import png_img

    p = ["<h2>Predicted versus delivered</h2>"]
    act = comp.get("activity")
    if act:
        colour = "#1e7b34" if act["band"] == "within 10 %" else "#8a6d00" if act["band"] == "within 20 %" else "#b21f2d"
        p.append(f'<div class="banner" style="border:2px solid {colour};color:{colour}"><b>{_e(act["band"])}</b>'
                 f'delivered {act["delivered_gbq"]:.3f} GBq vs planned {act["planned_gbq"]:.3f} GBq ({act["difference_pct"]:+.1f} %)</div>')
    rows = []
    for s in comp["segments"]:
        for k, m in s["metrics"].items():
            pct = m.get("difference_pct")
            rows.append(f"<tr><td>{_e(s['name'])}</td><td>{_e(k)}</td>{_num(k, m['planned'])}{_num(k, m['delivered'])}"
                        f"{_num(k, m['difference'])}<td class=\"num\">{'' if pct is None else f'{pct:+.1f}'}</td></tr>")
    p += ["<h3>Per segment (planning segments)</h3>",
          html_table(["segment", "metric", "predicted", "delivered", "delivered - predicted", "difference (%)"], rows)]
    dice_rows = [f"<tr>{_num('level_gy', d['level_gy'])}<td class=\"num\">{_dice_text(d['dice'])}</td>"
                 f"{_num('planned_ml', d['planned_ml'])}{_num('delivered_ml', d['delivered_ml'])}</tr>" for d in comp["isodose_dice"]]
    p += ["<h3>Isodose overlap (Dice)</h3>", html_table(["isodose (Gy)", "Dice", "predicted volume (mL)", "delivered volume (mL)"], dice_rows)]
    g = comp.get("gamma") or {}
    if g:
        p.append(f"<h3>Gamma</h3><p>{_e(g['criteria'])}: pass rate <b>{g['pass_rate_pct']:.1f} %</b> of {g['n_points']} points "
                 f"(mean gamma {g['mean_gamma']:.2f}; normalisation {g['normalisation_gy']:.1f} Gy; implementation {_e(g['implementation'])}).</p>")
    reg = comp.get("registration") or {}
    if reg:
        p.append("<h3>Registration</h3><table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in reg.items()) + "</table>")
    if figure_png:
        p.append(png_img(figure_png, "registration check"))
    if comp.get("warnings"):
        p.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{_e(w)}</li>" for w in comp["warnings"]) + "</ul>")
    return "\n".join(p)


def comparison_csv_rows(comp):
    """(header, rows) of comparison.csv: segment, role, metric, predicted, delivered, difference, difference_pct."""
    rows = [[s["name"], s["role"], k] + ["" if m.get(c) is None else f"{m[c]:.6g}" for c in ("planned", "delivered", "difference", "difference_pct")]
            for s in comp["segments"] for k, m in s["metrics"].items()]
    return ["segment", "role", "metric", "predicted", "delivered", "difference", "difference_pct"], rows
