"""A self-contained HTML report of one :class:`CaseResult` (inline CSS, figures as base64 PNG)."""

import base64
import datetime
import html
import json

from ..errors import TAREDosimetryError
from ..evaluation.partial_volume import DIAMETER_FACTOR, MIN_ACTIVITY_VOXELS
from ..evaluation.phase import case_phase
from ..evaluation.roles import ROLE_LABELS
from ..evaluation.scope import scope_lines
from .figures import PASS_COLORS, MissingDependencyError, plot_dvh, require_matplotlib
from .slicehtml import SLICES_CSS, dose_slices_html
from .tables import HEAD_KEYS, RX_D, RX_VPCT, column_title, format_metric, metrics_table_rows
from .wording import banner

__all__ = ["KNOWN_LIMITS", "known_limits", "write_report_html", "page_html", "escape", "html_table", "status_cell", "png_img"]

#: Known limits of the method, from PHYSICS.md ("Known limits to state in the user documentation").
KNOWN_LIMITS = (
    "Bremsstrahlung SPECT resolution is about 15-20 mm FWHM (Y-90 PET about 5-8 mm): mean doses and D90 of "
    "small lesions are biased low (partial-volume effect). Segments with fewer than "
    f"{MIN_ACTIVITY_VOXELS} activity voxels or an equivalent-sphere diameter under {DIAMETER_FACTOR:g} x the voxel size "
    "(or the FWHM, when given) are flagged; no correction is applied unless a recovery-coefficient table is given, "
    "and then the corrected tumour means are shown beside the uncorrected ones, which the rules judge.",
    "The local deposition method (LDM) ignores beta transport (mean range about 2.5 mm); the dose-voxel-kernel "
    "(DVK) convolution assumes homogeneous soft tissue unless density corrected.",
    "Research software, not a medical device.",
)
#: Limits that apply with the dose-voxel kernel (docs/dvk.md), by ``dvk_lung_mode``.
_DVK_LIMITS = {
    "kernel": "DVK at a liver/lung interface: the homogeneous, density-scaled kernel over-estimates the first lung "
              "voxel (+32 % on a uniform-dose liver/lung phantom with 3 mm voxels) and under-estimates the last liver "
              "voxel (-9 %); dvk_lung_mode 'ldm' keeps local deposition in the lungs.",
    "ldm": "DVK with dvk_lung_mode 'ldm': lung voxels get local deposition; the energy tissue sources would carry into "
           "the lung stays in the source voxels (energy conserved), so the first lung millimetres get no dose from the liver.",
}
_DVK_BLUR_LIMIT = ("DVK on a PET or SPECT image blurs twice (the scanner's resolution already exceeds the beta range): "
                   "peaks and D_x of small volumes are biased low; LDM is recommended for such images (Pasciak et al. 2014).")
_POINT_SAMPLING_LIMIT = ("Point sampling ('{0}') reads the dose at segment voxel centres: not exact when the grids' voxel "
                         "sizes do not divide each other (use the default 'overlap' for exact partial-voxel weighting).")

# -- HTML report --------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:14px;color:#222;margin:24px auto;max-width:1200px;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc;padding-bottom:3px}
h3{font-size:14px;margin:14px 0 4px}
.meta{color:#555;font-size:12.5px}.disclaimer{color:#8a4b00;font-weight:bold}
.banner{padding:12px 16px;border-radius:6px;margin:16px 0;font-size:15px}
.banner b{font-size:20px;margin-right:12px}.banner-sub{font-size:12.5px;margin-top:4px}
.banner-list{font-size:12.5px;margin:4px 0 0;padding-left:20px}.phase{font-size:15px;margin:10px 0 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f1f1}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.status{font-weight:bold;text-align:center}
td.src{font-size:11.5px;color:#444;max-width:420px}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:6px 0}
.note{color:#555;font-style:italic}ul{margin-top:4px}
.pv{color:#8a5300;font-size:11.5px}.reasons{margin:4px 0 12px}
code{font-size:12px}
""" + SLICES_CSS


def _e(text):
    return html.escape(str(text), quote=True)


escape = _e


def _status_cell(status, pv=False):
    fg, bg = PASS_COLORS.get(status, PASS_COLORS["N/A"])
    flag = '<br><span class="pv">partial volume</span>' if pv else ""
    return f'<td class="status" style="color:{fg};background:{bg}">{_e(status)}{flag}</td>'


def _value_text(v):
    """Text of a parameter / constant value."""
    if isinstance(v, float):
        return format_metric("", v)
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, (list, tuple)) for x in v):
            return ", ".join("(" + ", ".join(_value_text(y) for y in x) + ")" for x in v)
        return ", ".join(_value_text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    if v is None:
        return "\u2013"
    return str(v)


def _kv_table(d):
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_value_text(v))}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _table(headers, rows_html):
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows_html)}</tbody></table></div>'


def _evaluations_html(result):
    rows = []
    for ev in result.evaluations:
        r = ev.rule
        seg = ev.segment_name or f"(no segment with role {ROLE_LABELS.get(r.role, r.role or r.segment)})"
        unit = r.unit
        key = "_gy" if str(unit).lower() == "gy" else "_pct" if unit == "%" else ""
        note = "; ".join([ev.reason] * bool(ev.reason) + list(ev.warnings))
        if ev.status == "N/A" and not ev.makes_incomplete:
            note += " (does not make the case incomplete)"
        label = r.label + (f" [when {r.conditions_text}]" if r.when else "") + (" [optional]" if r.optional else "")
        rows.append(
            "<tr>"
            f"<td>{_e(seg)}</td><td>{_e(label)}</td>"
            f'<td class="num">{_e(format_metric(key, ev.measured))}</td>'
            f'<td class="num">{_e(r.comparison)}</td>'
            f'<td class="num">{_e(f"{r.threshold:g}")}</td><td>{_e(unit)}</td>'
            f"{_status_cell(ev.status, bool(ev.warnings))}<td>{_e(note)}</td><td>{_e(r.kind)}</td>"
            f'<td class="src">{_e(r.source)}{"<br><i>" + _e(r.row) + "</i>" if r.row else ""}</td>'
            "</tr>"
        )
    if not rows:
        return '<p class="note">The rule set holds no rules.</p>'
    return _table(["segment", "rule", "measured", "comparison", "threshold", "unit", "status", "reason / warning", "kind",
                   "source (table row)"], rows)


def _metrics_html(result):
    columns, rows = metrics_table_rows(result)
    idx = {c: n for n, c in enumerate(columns)}
    notes = {s.name: "; ".join([s.note] * bool(s.note) + list(getattr(s, "warnings", ()))) for s in result.segments}
    head = list(HEAD_KEYS)
    head[head.index("mean_gy") + 1:head.index("mean_gy") + 1] = ["mean_gy_rc_corrected", "recovery_coefficient"]
    main = [k for k in head + ["eud_gy", "bed_gy", "tn_ratio", "equivalent_diameter_mm", "activity_voxels"] if k in idx]
    dvh_keys = [k for k in columns if RX_D.match(k) or RX_VPCT.match(k)]
    if "cumulative_mean_gy" in idx and any(row[idx["cumulative_mean_gy"]] is not None for row in rows):
        main.append("cumulative_mean_gy")

    def render(keys, with_note):
        body = []
        for row in rows:
            name, role = row[0], row[1]
            cells = [f"<td>{_e(name)}</td><td>{_e(ROLE_LABELS.get(role, role))}</td>"]
            cells += [f'<td class="num">{_e(format_metric(k, row[idx[k]]))}</td>' for k in keys]
            if with_note:
                cells.append(f"<td>{_e(notes.get(name, ''))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        heads = ["segment", "role"] + [column_title(k) for k in keys] + (["note"] if with_note else [])
        return _table(heads, body)

    out = "<h3>Dose, activity and mass</h3>" + render(main, True)
    if dvh_keys:
        out += "<h3>DVH metrics</h3>" + render(dvh_keys, False)
    out += (
        '<p class="note">Mean dose is mass-weighted (energy / mass); D<sub>x</sub> is the minimum dose to the hottest '
        "x % of the volume (the dose of the voxel where the cumulative volume reaches x %; interpolated within bins "
        "with a DVH bin width), V<sub>x</sub>Gy the percentage of the volume receiving at least x Gy (both volume-based, "
        "partial voxels by their volume inside the segment).  T/N: tumour mean dose / mean dose of the normal-liver reference.  Partial volume: a segment "
        f"with fewer than {MIN_ACTIVITY_VOXELS} activity voxels or an equivalent-sphere diameter under "
        f"{DIAMETER_FACTOR:g} x the activity voxel size (or the FWHM, when given) is flagged in the note column; "
        "RC-corrected means (when a recovery-coefficient table is given) are shown beside the uncorrected ones, "
        "which the rules judge.</p>"
    )
    return out


def _radiobiology_html(d):
    table = d.get("radiobiology") or {}
    rows = [
        f"<tr><td>{_e(name)}</td><td class=\"num\">{_e(format_metric('', v['bed_alpha_beta_gy']))}</td>"
        f"<td class=\"num\">{_e(format_metric('', v['bed_t_repair_h']))}</td>"
        f"<td class=\"num\">{_e(format_metric('', v['eud_alpha_per_gy']) if v['eud_alpha_per_gy'] else 'no EUD')}</td>"
        f'<td class="src">{_e(v["source"])}</td></tr>'
        for name, v in table.items()
    ]
    return "<h2>Radiobiology (BED, EUD)</h2>" + _table(["tissue", "alpha/beta (Gy)", "repair half-time (h)", "EUD alpha (1/Gy)",
                                                        "source"], rows)


def _img(png, alt):
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _slices_heading(result):
    """'Dose slices through the tumours', or through what the slices show when there is no tumour."""
    if any(s.role == "tumor" for s in result.segments):
        return "Dose slices through the tumours"
    livers = [s.name for s in result.segments if s.role == "liver"]
    return f"Dose slices through {livers[0]} (no tumour segment)" if livers else "Dose slices (no tumour segment)"


def _figures_html(result, background, segmentation, dvh_png=None):
    parts = []
    try:
        require_matplotlib()
    except MissingDependencyError as exc:
        return f'<p class="note">Figures need matplotlib, which is not installed ({_e(exc)}).</p>'
    parts.append("<h3>Cumulative dose-volume histograms</h3>" + _img(dvh_png or plot_dvh(result), "cumulative DVH"))
    if segmentation is None:
        parts.append('<p class="note">Dose slices need the segmentation (not given to the report).</p>')
    else:
        try:
            panels = dose_slices_html(result, background, segmentation)
        except TAREDosimetryError as exc:
            parts.append(f'<p class="note">Dose slices could not be drawn: {_e(exc)}</p>')
        else:
            parts.append(f"<h3>{_e(_slices_heading(result))}</h3>" + panels)
            parts.append(
                '<p class="note">Radiological convention: patient right on the image left; axial: anterior at the top; '
                "coronal: superior at the top.  Images are resampled onto each plane in physical space.</p>"
            )
    return "".join(parts)


def write_report_html(result, path, *, background=None, segmentation=None, title=None, extra_html=None, dvh_png=None):
    """Write a self-contained HTML report (inline CSS, figures as base64 PNG, no scripts).

    Parameters
    ----------
    result : CaseResult
    path : str, the .html file to write.
    background : Volume, optional; the background of the dose slices (CT in HU, or the SPECT);
        default the activity map.
    segmentation : Segmentation, optional; needed for the dose slices.
    title : str, optional.
    extra_html : str, optional; an HTML section placed under the banner (e.g. the treatment plan).
    dvh_png : bytes, optional; the DVH figure already drawn (:func:`~.figures.plot_dvh` of this
        result, e.g. for dvh.png), so that it is not drawn twice.

    Returns
    -------
    str : ``path``.

    The report holds: title, date, software versions and the research-use disclaimer; the
    overall PASS/FAIL banner and summary line; the rule evaluations; the per-segment metrics;
    warnings; the DVH and dose-slice figures (when matplotlib is installed); the calibration
    summary, parameters, constants, metrics grid and inputs; and the known limits.
    """
    d = result.to_dict()
    title = title or "Y-90 radioembolization dosimetry report"
    sw = _software_versions(d)
    p = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head><body>']
    p += _head_html(result, title, sw)
    if extra_html:
        p.append(extra_html)
    p.append("<h2>Rule evaluations</h2>")
    desc = getattr(result.rules, "description", "")
    if desc:
        p.append(f'<p class="meta">{_e(getattr(result.rules, "name", ""))}: {_e(desc)}</p>')
    p.append(_evaluations_html(result))
    p.append("<h2>Per-segment metrics</h2>")
    p.append(_metrics_html(result))
    p.append("<h2>Warnings</h2>")
    warn = d.get("warnings") or []
    if warn:
        p.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in warn) + "</ul>")
    else:
        p.append('<p class="note">None.</p>')
    p.append("<h2>Figures</h2>")
    p.append(_figures_html(result, background, segmentation, dvh_png))
    p.append(_radiobiology_html(d))
    p += _record_html(d)
    p.append("<h2>Known limits</h2><ul>" + "".join(f"<li>{_e(t)}</li>" for t in known_limits(result)) + "</ul>")
    p.append(f'<p class="meta">{_e(sw.get("name", "TAREDosimetry"))} {_e(sw.get("version", ""))} \u2014 research software, not a medical device.</p>')
    p.append("</body></html>\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(p))
    return str(path)


def known_limits(result):
    """The known limits of the method that apply to ``result`` (its dose method and sampling)."""
    limits = list(KNOWN_LIMITS[:-1])
    params = result.params
    if params.method == "dvk":
        limits += [_DVK_LIMITS[params.dvk_lung_mode], _DVK_BLUR_LIMIT]
    if params.sampling != "overlap":
        limits.append(_POINT_SAMPLING_LIMIT.format(params.sampling))
    return limits + [KNOWN_LIMITS[-1]]


def _software_versions(d):
    sw = dict(d.get("software", {}))
    try:
        import matplotlib

        sw["matplotlib"] = matplotlib.__version__
    except ImportError:
        sw["matplotlib"] = "not installed"
    return sw


def _device_text(result):
    comp = getattr(result, "computation", None) or {}
    device = comp.get("device_description") or comp.get("device_used")
    if not device:
        return ""
    asked = comp.get("device_requested")
    return f" on {device}" + (f" (asked: {asked})" if asked and asked != comp.get("device_used") else "")


def dose_origin_text(result):
    """How the dose was obtained: computed (method, the device that ran, calibration) or read from another tool's file."""
    if result.summary.get("dose_source") == "external":
        rec = result.summary.get("dose_map") or {}
        return f"Dose: external dose map {rec.get('dose_file', '')} ({rec.get('unit', '')}, factor {rec.get('factor_to_gy', 1):g} to Gy)"
    return f"Dose method: {result.params.method.upper()}{_device_text(result)}; calibration: {result.params.calibration}"


def _banner_html(result):
    """The verdict in words: status word once, what decides it, the rule count, every evaluation."""
    b = banner(result)
    fg, bg = PASS_COLORS.get(b["status"], PASS_COLORS["N/A"])
    items = "".join(f"<li>{_e(line)}</li>" for line in b["lines"][2:])
    return (
        f'<div class="banner" style="background:{bg};color:{fg};border:2px solid {fg}"><b>{_e(b["status"])}</b>'
        f'{_e(b["message"])}<div class="banner-sub">{_e(b["lines"][0])}</div><ul class="banner-list">{items}</ul></div>'
    )


def _head_html(result, title, sw):
    """Title, date, software, disclaimer, the treatment phase and the verdict banner."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    sw_text = ", ".join(f"{k} {v}" for k, v in sw.items() if k not in ("name", "version"))
    phase = case_phase(result.params, result.inputs)
    return [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Generated {_e(now)} by {_e(sw.get("name", "TAREDosimetry"))} {_e(sw.get("version", ""))} '
        f"({_e(sw_text)}).<br>{_e(dose_origin_text(result))}; "
        f"rule set: {_e(getattr(result.rules, 'name', ''))}.<br>"
        '<span class="disclaimer">Research software, not a medical device: not for clinical decisions.</span></p>',
        f'<p class="phase phase-{_e(phase["phase"] or "unknown")}"><b>{_e(phase["title"])}</b> \u2014 {_e(phase["basis"])}'
        + (". The doses are predicted from the MAA distribution, which may differ from the microspheres'."
           if phase["phase"] == "pre" else "") + "</p>",
        _banner_html(result),
    ] + _status_details_html(result)


def _items(title, items, cls="reasons"):
    return f'<p class="meta"><b>{_e(title)}</b></p><ul class="{cls}">' + "".join(f"<li>{_e(t)}</li>" for t in items) + "</ul>"


def _status_details_html(result):
    """Under the banner: why the case is incomplete, explicit choices, and the thresholds' scope vs the case."""
    out = []
    reasons = result.incomplete_reasons
    if reasons:
        title = "Not evaluated, or evaluated with an input not given (the case is INCOMPLETE):" if result.overall_status == "INCOMPLETE" \
            else "Also not evaluated:"
        out.append(_items(title, reasons))
    if result.explicit_choices:
        out.append(_items("Explicit choices:", result.explicit_choices))
    scope = scope_lines(result.rules, result.params, result.inputs, rules_note=getattr(result, "rules_note", None))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in scope)
    chosen = f" ({result.rules_note})" if result.rules_note else ""
    out.append(f'<p class="meta"><b>Scope of the thresholds \u2018{_e(getattr(result.rules, "name", ""))}\u2019{_e(chosen)}:</b></p>'
               f"<table>{rows}</table>")
    if result.scope_warnings:
        out.append(_items("Outside the thresholds' scope:", result.scope_warnings))
    return out


def _inputs_html(inputs):
    """The inputs with their SHA-256 (files and folders), then the other input entries."""
    inputs = dict(inputs)
    hashes = inputs.pop("sha256", None) or {}
    rows = [f"<tr><th>{_e(k)}</th><td>{_e(_value_text(v))}</td><td><code>{_e(hashes.get(k, ''))}</code></td></tr>"
            for k, v in inputs.items() if v is not None and v != ""]
    return f'<div class="scroll"><table><thead><tr><th>input</th><th>value</th><th>SHA-256</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _record_html(d):
    """What the result was computed from: calibration summary, parameters, constants, grid,
    computation (the device that ran), inputs with their SHA-256, roles, timings."""
    inputs = dict(d.get("inputs") or {})
    roles = inputs.pop("roles", None)
    p = []
    p.append("<h2>Calibration and activity summary</h2>")
    p.append(_kv_table(d.get("summary") or {}))
    p.append("<h2>Parameters</h2>")
    p.append(_kv_table(d.get("parameters") or {}))
    p.append("<h2>Constants</h2>")
    p.append(_kv_table(d.get("constants") or {}))
    p.append("<h2>Metrics grid</h2>")
    p.append(_kv_table(d.get("metrics_grid") or {}))
    p.append("<h2>Computation</h2>")
    p.append(_kv_table(dict(d.get("computation") or {}, created_utc=d.get("created_utc", ""))))
    p.append("<h2>Inputs</h2>")
    if inputs:
        p.append(_inputs_html(inputs))
    if roles:
        p.append("<h3>Segment roles</h3>")
        p.append(_table(["segment", "role"], [f"<tr><td>{_e(n)}</td><td>{_e(ROLE_LABELS.get(r, r))}</td></tr>" for n, r in roles.items()]))
    if d.get("timings_s"):
        p.append("<h3>Computation times (s)</h3>" + _kv_table(d["timings_s"]))
    return p


# -- pieces for other result pages (plan, comparison) -----------------------------------------------
def html_table(headers, rows_html):
    """A scrollable table; ``rows_html`` are ``<tr>...</tr>`` strings (cells escaped by the caller)."""
    return _table(headers, rows_html)


def status_cell(status):
    """A ``<td>`` coloured by PASS/FAIL/N/A."""
    return _status_cell(status)


def png_img(png, alt):
    """An inline ``<img>`` of PNG bytes."""
    return _img(png, alt)


def page_html(title, body_parts):
    """A complete self-contained page (the report's CSS) holding ``body_parts`` (HTML strings)."""
    head = f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head><body>'
    foot = '<p class="meta">TAREDosimetry \u2014 research software, not a medical device.</p></body></html>\n'
    return "\n".join([head, f"<h1>{_e(title)}</h1>"] + list(body_parts) + [foot])
