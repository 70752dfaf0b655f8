"""The dose slices of report.html as HTML panels (issue 14: the report in 1.5 s).

The planes are those of :func:`~.figures.plot_dose_slices` (:func:`~.figures.slice_figure`), each
composed as one RGB image by :func:`~.figures.plane_rgb` and written as its own PNG; titles, axis
labels, orientation letters, the scale bar, the colour bar and the legend are HTML and CSS, drawn
by the browser.  The same picture as the PNG figure (the PDF report keeps that one) at a fifth of
its drawing time: no text is rasterised and nothing is resampled a second time.

:func:`rgb_png` encodes an RGB array as a PNG file with :mod:`zlib` alone (filter 'Sub' on
every row, which turns the runs of repeated pixels of an upsampled plane into zeros).
"""

import base64
import html
import math
import struct
import zlib

import numpy as np

from .figures import plane_heading, plane_rgb, scale_bar_mm, slice_figure

__all__ = ["rgb_png", "dose_slices_html", "SLICES_CSS", "colour_bar_ticks", "tick_label"]

#: zlib level of the plane images: 1 compresses the filtered rows of the planes almost as well as 6, 3x faster.
PNG_ZLIB_LEVEL = 1

#: Style of the panels (added to the report's CSS).
SLICES_CSS = """
.sl{margin:6px 0 4px}.sl-title{font-size:13px;margin:4px 0 10px}
.sl-row{display:flex;flex-wrap:wrap;align-items:flex-start;gap:10px 22px;margin-bottom:16px}
.sl-plane{margin:0;width:440px;max-width:100%}
.sl-plane figcaption{font-size:12.5px;text-align:center;line-height:1.35;margin:0 0 4px 18px;height:4.05em;
 display:flex;flex-direction:column;justify-content:flex-end;overflow:hidden}
.sl-frame{display:flex;align-items:center}
.sl-ylab{writing-mode:vertical-rl;transform:rotate(180deg);font-size:11px;width:18px;text-align:center}
.sl-img{position:relative;line-height:0;flex:1;background:#000}
.sl-img img{width:100%;height:auto;margin:0;border:0;image-rendering:pixelated;display:block}
.sl-txt{position:absolute;color:#fff;font-weight:bold;font-size:14px;line-height:1;
 text-shadow:0 0 2px #000,0 0 2px #000,1px 1px 2px #000,-1px -1px 2px #000}
.sl-bar{position:absolute;height:4px;background:#fff;box-shadow:0 0 0 1px #000}
.sl-barlab{font-weight:normal;font-size:11px;text-align:center}
.sl-xlab{font-size:11px;text-align:center;margin:4px 0 0 18px}
.sl-cbar{display:flex;align-items:stretch;height:380px;margin-top:75px}
.sl-nobar{width:70px;font-size:11px;color:#555;margin-top:75px}
.sl-grad,.sl-ext,.sl-legend,.sl-key,.sl-bar,.sl-img{-webkit-print-color-adjust:exact;print-color-adjust:exact}
.sl-grad{width:14px;border:1px solid #444;position:relative}
.sl-ext{position:absolute;left:-1px;top:-15px;width:0;height:0;border-left:8px solid transparent;
 border-right:8px solid transparent;border-bottom:14px solid}
.sl-ticks{position:relative;width:40px;font-size:10.5px;line-height:1}
.sl-ticks span{position:absolute;left:5px;transform:translateY(50%)}
.sl-ticks span:before{content:"";position:absolute;left:-5px;top:50%;width:4px;border-top:1px solid #444}
.sl-cblab{writing-mode:vertical-rl;transform:rotate(180deg);font-size:11px;text-align:center}
.sl-legend{background:#595959;color:#fff;display:inline-flex;flex-wrap:wrap;gap:4px 18px;padding:5px 12px;
 font-size:12px;border-radius:3px}
.sl-key{display:inline-block;width:28px;height:0;border-top:3px solid;vertical-align:middle;margin-right:6px}
.sl-dash{border-top:2px dashed #fff;outline:1px solid #222}
"""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def rgb_png(rgb, level=PNG_ZLIB_LEVEL):
    """PNG file (bytes) of an (rows, columns, 3) RGB image: uint8, or floats in [0, 1] (rounded)."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"an (rows, columns, 3) RGB image is expected, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.rint(np.asarray(a, np.float64) * 255.0), 0, 255).astype(np.uint8)
    h, w = a.shape[:2]
    rows = np.empty((h, 1 + 3 * w), np.uint8)
    rows[:, 0] = 1  # filter 'Sub': each byte minus the byte one pixel to its left (modulo 256)
    flat = a.reshape(h, 3 * w)
    rows[:, 1:4] = flat[:, :3]
    np.subtract(flat[:, 3:], flat[:, :-3], out=rows[:, 4:])
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, no interlace
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + _png_chunk(b"IEND", b""))


def _step_decimals(step):
    """Decimals that write ``step`` (a round number: 1, 2, 2.5 or 5 times a power of ten) exactly."""
    for d in range(13):
        scaled = step * 10 ** d
        if abs(scaled - round(scaled)) <= 1e-6 * max(1.0, scaled):
            return d
    return 12


def tick_label(value, ticks):
    """``value`` written with the decimals that tell the ``ticks`` apart (whole numbers as they are)."""
    if len(ticks) < 2:
        return f"{value:.4g}"
    return f"{value:.{_step_decimals(min(abs(b - a) for a, b in zip(ticks, ticks[1:])))}f}"


def colour_bar_ticks(lo, hi, target=8):
    """Round dose values between ``lo`` and ``hi`` (at most ``target`` + 1 of them: steps of 1, 2, 2.5 or 5
    times a power of ten) for the colour bar."""
    if not hi > lo:
        return [float(lo)]
    raw = (hi - lo) / target
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    digits = _step_decimals(step) + 1
    return [round(first + k * step, digits) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _e(text):
    return html.escape(str(text), quote=True)


def _css_rgb(c):
    r, g, b = (int(round(255 * float(v))) for v in c[:3])
    return f"rgb({r},{g},{b})"


def _overlays(p):
    """Orientation letters and the scale bar over a plane image (positions in % of the image)."""
    left, right, top, bottom = p.letters
    out = [f'<span class="sl-txt" style="left:1.5%;top:50%;transform:translateY(-50%)">{_e(left)}</span>',
           f'<span class="sl-txt" style="right:1.5%;top:50%;transform:translateY(-50%)">{_e(right)}</span>',
           f'<span class="sl-txt" style="top:1.5%;left:50%;transform:translateX(-50%)">{_e(top)}</span>',
           f'<span class="sl-txt" style="bottom:1.5%;left:50%;transform:translateX(-50%)">{_e(bottom)}</span>']
    width = abs(p.extent_mm[1] - p.extent_mm[0])
    length = scale_bar_mm(width)
    frac = 100.0 * length / width
    out.append(f'<span class="sl-bar" style="right:5%;bottom:7%;width:{frac:.2f}%"></span>'
               f'<span class="sl-txt sl-barlab" style="right:5%;bottom:calc(7% + 8px);width:{frac:.2f}%">{length:g} mm</span>')
    return "".join(out)


def _plane_html(p, sf):
    """One plane: caption, image with its overlays, axis labels."""
    head, mean = plane_heading(p, sf.means.get(p.segment))
    png = rgb_png(plane_rgb(p, sf.cmap, sf.threshold, sf.d_max, sf.isodoses))
    src = base64.b64encode(png).decode("ascii")
    alt = f"{head}: dose over the background, segment outlines"
    return (f'<figure class="sl-plane"><figcaption>{_e(head)}' + (f"<br>{_e(mean)}" if mean else "") + "</figcaption>"
            f'<div class="sl-frame"><div class="sl-ylab">{_e(p.axis_labels[1])}</div>'
            f'<div class="sl-img"><img alt="{_e(alt)}" src="data:image/png;base64,{src}">{_overlays(p)}</div></div>'
            f'<div class="sl-xlab">{_e(p.axis_labels[0])}</div></figure>')


def _colour_bar_html(sf):
    """The dose colour scale from ``threshold`` (bottom) to ``d_max`` (top), with round ticks; an
    arrow on top when the planes hold doses above the scale (shown in the top colour)."""
    span = sf.d_max - sf.threshold
    if not span > 0:  # no dose above the wash threshold in these planes: nothing is coloured
        return f'<div class="sl-nobar">no dose of {sf.threshold:.3g} Gy or more in these planes: no colour wash</div>'
    stops = np.linspace(0.0, 1.0, 17)
    colours = np.asarray(sf.cmap(stops))
    grad = ", ".join(f"{_css_rgb(c)} {100 * s:.2f}%" for c, s in zip(colours, stops))
    values = colour_bar_ticks(sf.threshold, sf.d_max) if span > 1e-6 * sf.d_max else [sf.d_max]  # one colour: its dose
    ticks = "".join(f'<span style="bottom:{100 * (t - sf.threshold) / span:.2f}%">{tick_label(t, values)}</span>' for t in values)
    ext = f'<span class="sl-ext" style="border-bottom-color:{_css_rgb(colours[-1])}"></span>' if sf.plane_max > sf.d_max else ""
    return (f'<div class="sl-cbar" aria-label="dose colour scale, Gy"><div class="sl-grad" style="background:linear-gradient(to top, {grad})">'
            f'{ext}</div><div class="sl-ticks">{ticks}</div><div class="sl-cblab">dose (Gy)</div></div>')


def _legend_html(sf):
    """Isodose lines and segment outlines shown in the planes (as the PNG figure's legend)."""
    items = sf.legend_entries()
    if not items:
        return ""
    return '<div class="sl-legend">' + "".join(f"<span>{_legend_key(entry)}{_e(label)}</span>" for label, entry in items.items()) + "</div>"


def _legend_key(entry):
    """The line drawn before a legend label: white dashes for an isodose, the segment's colour for an outline."""
    if entry is None:
        return '<span class="sl-key sl-dash"></span>'
    colour, tumour = entry
    return f'<span class="sl-key" style="border-top-width:{3 if tumour else 2}px;color:{_css_rgb(colour)}"></span>'


def dose_slices_html(result, background, segmentation, **kwargs):
    """The dose slices of a case as an HTML fragment (``kwargs``: as :func:`~.figures.slice_figure`):
    one row per segment (tumours first; without tumours the liver), one panel per view, the colour
    bar at the end of each row, the legend under the rows."""
    sf = slice_figure(result, background, segmentation, **kwargs)
    names, views = sf.rows
    rows = []
    for name in names:
        planes = [p for v in views for p in sf.planes if p.segment == name and p.view == v]
        rows.append('<div class="sl-row">' + "".join(_plane_html(p, sf) for p in planes) + _colour_bar_html(sf) + "</div>")
    return f'<div class="sl"><p class="sl-title">{_e(sf.title)}</p>' + "".join(rows) + _legend_html(sf) + "</div>"
