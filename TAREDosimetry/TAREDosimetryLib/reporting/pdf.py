"""The report as a PDF (``report.pdf``), for the patient record and PACS archiving.

The same content as report.html, page by page on A4, drawn with matplotlib's PDF backend (the
``report`` extra; nothing else is needed): the banner and rule table, the per-segment metrics, the
DVH, the dose over CT through each tumour, warnings, how the dose was obtained (parameters, DICOM
timing, inputs) and the known limits.  Tables longer than a page continue on the next one.
"""

import datetime
import io
import textwrap

from .figures import PASS_COLORS, plot_dose_slices, plot_dvh, require_matplotlib
from .html import KNOWN_LIMITS, dose_origin_text
from .tables import format_metric, metrics_table_rows

__all__ = ["write_report_pdf"]

A4_PORTRAIT = (8.27, 11.69)
A4_LANDSCAPE = (11.69, 8.27)
ROWS_PER_PAGE = 28
_METRIC_COLUMNS = ("name", "role", "volume_ml", "mass_g", "mean_gy", "d70_gy", "d90_gy", "d95_gy", "v100_pct", "eud_gy",
                   "bed_gy", "tn_ratio")
_TITLES = {"name": "segment", "role": "role", "volume_ml": "vol. (mL)", "mass_g": "mass (g)", "mean_gy": "mean (Gy)",
           "d70_gy": "D70 (Gy)", "d90_gy": "D90 (Gy)", "d95_gy": "D95 (Gy)", "v100_pct": "V100Gy (%)", "eud_gy": "EUD (Gy)",
           "bed_gy": "BED (Gy)", "tn_ratio": "T/N"}


def _page(size=A4_PORTRAIT):
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _text(fig, y, text, size=9, width=110, **kw):
    """Wrapped text from the top at fraction y; returns the y below it."""
    lines = []
    for para in str(text).replace("$", r"\$").split("\n"):
        lines += textwrap.wrap(para, width) or [""]
    for line in lines:
        fig.text(0.06, y, line, fontsize=size, va="top", **kw)
        y -= 0.0165 * size / 9.0
    return y


def _table(fig, rect, header, rows, status_col=None, widths=None):
    ax = fig.add_axes(rect)
    ax.axis("off")
    if not rows:
        return
    tab = ax.table(cellText=rows, colLabels=header, loc="upper left", cellLoc="left", colWidths=widths)
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1.0, 1.25)
    for (r, c), cell in tab.get_celld().items():
        if r == 0:
            cell.set_facecolor("#eeeeee")
        elif status_col is not None and c == status_col:
            fg, bg = PASS_COLORS.get(rows[r - 1][c], PASS_COLORS["N/A"])
            cell.set_facecolor(bg)
            cell.get_text().set_color(fg)


def _chunks(rows):
    return [rows[i:i + ROWS_PER_PAGE] for i in range(0, len(rows), ROWS_PER_PAGE)] or [[]]


def _summary_pages(result, title):
    status = result.overall_status
    fg, bg = PASS_COLORS.get(status, PASS_COLORS["N/A"])
    rows = []
    for ev in result.evaluations:
        r = ev.rule
        key = "_gy" if str(r.unit).lower() == "gy" else "_pct" if r.unit == "%" else ""
        rows.append([textwrap.shorten(ev.segment_name or "(none)", 24), textwrap.shorten(r.label, 30),
                     format_metric(key, ev.measured), r.comparison, f"{r.threshold:g}", r.unit, ev.status,
                     textwrap.shorten(r.source, 46)])
    pages = []
    for n, chunk in enumerate(_chunks(rows)):
        fig = _page()
        y = 0.96
        if n == 0:
            y = _text(fig, y, title, size=15, weight="bold")
            now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            y = _text(fig, y - 0.005, f"{now}. {dose_origin_text(result)}; rule set {getattr(result.rules, 'name', '')}.", size=8)
            y = _text(fig, y, "Research software, not a medical device: not for clinical decisions.", size=8, color="#8a4b00")
            banner = textwrap.wrap(result.summary_line(), 88)
            fig.patches.append(_banner(fig, y - 0.008, len(banner), fg, bg))
            y = _text(fig, y - 0.015, "\n".join(banner), size=9, color=fg, width=200, weight="bold")
        _table(fig, [0.04, 0.05, 0.92, y - 0.08], ["segment", "rule", "measured", "cmp", "threshold", "unit", "status", "source"],
               chunk, status_col=6, widths=[0.15, 0.21, 0.08, 0.04, 0.07, 0.04, 0.06, 0.35])
        pages.append(fig)
    return pages


def _banner(fig, y, n_lines, fg, bg):
    from matplotlib.patches import Rectangle

    h = 0.012 + 0.0165 * n_lines
    return Rectangle((0.04, y - h), 0.92, h, transform=fig.transFigure, facecolor=bg, edgecolor=fg, zorder=-1)


def _metrics_pages(result):
    columns, rows = metrics_table_rows(result)
    idx = {c: n for n, c in enumerate(columns)}
    keys = [k for k in _METRIC_COLUMNS if k in idx]
    body = [[format_metric(k, row[idx[k]]) if k not in ("name", "role") else str(row[idx[k]]) for k in keys] for row in rows]
    pages = []
    for chunk in _chunks(body):
        fig = _page(A4_LANDSCAPE)
        fig.text(0.04, 0.95, "Per-segment metrics (all metrics: metrics.csv)", fontsize=12, weight="bold")
        widths = [0.2 if k == "name" else 0.1 if k == "role" else 0.07 for k in keys]
        _table(fig, [0.04, 0.05, 0.92, 0.86], [_TITLES[k] for k in keys], chunk, widths=widths)
        pages.append(fig)
    return pages


def _image_page(png, heading):
    import matplotlib.image as mpimg

    fig = _page(A4_LANDSCAPE)
    fig.text(0.04, 0.95, heading, fontsize=12, weight="bold")
    ax = fig.add_axes([0.03, 0.03, 0.94, 0.88])
    ax.imshow(mpimg.imread(io.BytesIO(png), format="png"))
    ax.axis("off")
    return fig


def _record_page(result):
    d = result.to_dict()
    fig = _page()
    y = _text(fig, 0.96, "Warnings", size=12, weight="bold")
    for w in d.get("warnings") or ["None."]:
        y = _text(fig, y, f"- {w}", size=7.5, width=130)
    y = _text(fig, y - 0.01, "How the dose was obtained", size=12, weight="bold")
    inputs = {k: v for k, v in (d.get("inputs") or {}).items() if k not in ("roles", "activity_dicom")}
    timing = ((d.get("inputs") or {}).get("activity_dicom") or {}).get("header_timing")
    lines = [f"{k}: {v}" for k, v in inputs.items()] + ([f"DICOM timing: {timing}"] if timing else [])
    lines += [f"{k}: {v}" for k, v in (d.get("parameters") or {}).items()]
    for line in lines:
        if y < 0.2:
            break
        y = _text(fig, y, line, size=7, width=140)
    y = _text(fig, y - 0.01, "Known limits", size=12, weight="bold")
    for t in KNOWN_LIMITS:
        y = _text(fig, y, f"- {t}", size=7.5, width=130)
    return fig


def write_report_pdf(result, path, *, background=None, segmentation=None, title=None):
    """Write the report as a multi-page PDF (A4).

    Parameters
    ----------
    result : CaseResult
    path : str, the .pdf file.
    background, segmentation : as for :func:`~.html.write_report_html` (dose slices need both, or
        the activity map as background).

    Returns
    -------
    int : the number of pages.
    """
    require_matplotlib()
    from matplotlib.backends.backend_pdf import PdfPages

    title = title or "Y-90 radioembolization dosimetry report"
    pages = _summary_pages(result, title) + _metrics_pages(result)
    pages.append(_image_page(plot_dvh(result), "Dose-volume histograms"))
    if segmentation is not None and (background is not None or result.activity_gbq is not None):
        pages.append(_image_page(plot_dose_slices(result, background, segmentation), "Dose through the segments"))
    pages.append(_record_page(result))
    meta = {"Title": title, "Author": "TAREDosimetry", "Subject": f"{result.overall_status}: {result.summary_line()}"[:250],
            "Creator": "TAREDosimetry (matplotlib)"}
    with PdfPages(str(path), metadata=meta) as pdf:
        for fig in pages:
            pdf.savefig(fig)
    return len(pages)
