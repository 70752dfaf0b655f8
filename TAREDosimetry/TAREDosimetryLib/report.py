"""Figures (DVH, dose slices) and a self-contained HTML report of one :class:`CaseResult`.

matplotlib is an optional dependency: it is imported inside the functions that draw, through
``matplotlib.figure.Figure`` and the Agg canvas (no pyplot, no global state, no display), so
the engine imports and the tables of the report are written without it.  Functions that need
it raise :class:`MissingDependencyError` naming ``pip install matplotlib``.

Dose slices
-----------
Every image is resampled onto one common 2-D plane in physical (LPS) space, so images on
different grids (a SPECT with a reversed z axis, a CT, a segmentation drawn on the CT) line
up whatever their voxel orders.  The plane is centred on the tumour's centroid and shown in
the radiological convention: axial planes with the patient's right on the image left and
anterior at the top; coronal planes with the patient's right on the image left and superior
at the top.  In LPS, x grows towards the patient's left, y towards posterior and z towards
superior, so the axial plane's columns run along +x and its rows along +y, and the coronal
plane's columns along +x and its rows along -z.  :func:`dose_slice_planes` returns the
resampled 2-D arrays, so the geometry can be checked without looking at pictures.
"""

import base64
import datetime
import html
import io as _io
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from . import io as tio
from .errors import TAREDosimetryError
from .roles import ROLE_LABELS, guess_role
from .volume import Grid

__all__ = [
    "MissingDependencyError",
    "KNOWN_LIMITS",
    "metrics_table_rows",
    "format_metric",
    "plot_dvh",
    "SlicePlane",
    "dose_slice_planes",
    "plot_dose_slices",
    "write_report_html",
]

#: Known limits of the method, from PHYSICS.md ("Known limits to state in the user documentation").
KNOWN_LIMITS = (
    "Bremsstrahlung SPECT resolution is about 15-20 mm FWHM (Y-90 PET about 5-8 mm): mean doses and D90 of "
    "small lesions are biased low (partial-volume effect).",
    "The local deposition method (LDM) ignores beta transport (mean range about 2.5 mm); the dose-voxel-kernel "
    "(DVK) convolution assumes homogeneous soft tissue unless density corrected.",
    "Research software, not a medical device.",
)

#: Display window of a CT background (soft tissue: level 40 HU, width 400 HU).
CT_WINDOW_HU = (-160.0, 240.0)
_PASS_COLORS = {"PASS": ("#1e7b34", "#d8f0dd"), "FAIL": ("#b21f2d", "#f8d7da"), "N/A": ("#5a5a5a", "#e6e6e6")}


class MissingDependencyError(TAREDosimetryError, RuntimeError):
    """An optional package (matplotlib) needed for figures is not installed."""


def _matplotlib():
    """(Figure, FigureCanvasAgg) classes, or MissingDependencyError."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "figures of the dosimetry report need matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'TAREDosimetry[report]')"
        ) from None
    return Figure, FigureCanvasAgg


def _new_figure(figsize, dpi):
    Figure, FigureCanvasAgg = _matplotlib()
    try:
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    except TypeError:  # matplotlib < 3.5
        fig = Figure(figsize=figsize, dpi=dpi, constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig, path=None):
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as fh:
            fh.write(data)
    return data


def _mpl_text(text):
    """Text safe for matplotlib (a '$' would start mathtext)."""
    return str(text).replace("$", r"\$")


# -- tables -------------------------------------------------------------------------------------
_HEAD_KEYS = ("volume_ml", "mass_g", "activity_gbq", "activity_pct", "mean_gy", "median_gy", "sd_gy", "min_gy", "max_gy")
_TAIL_KEYS = ("eud_gy", "bed_gy", "tn_ratio", "cumulative_mean_gy")
_RX_D = re.compile(r"^d(\d+(?:\.\d+)?)_gy$")
_RX_VPCT = re.compile(r"^v(\d+(?:\.\d+)?)_pct$")
_RX_VML = re.compile(r"^v(\d+(?:\.\d+)?)_ml$")


def _clean_number(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None


def metrics_table_rows(result):
    """Columns and rows of the per-segment metrics table (shared by the HTML report and CSV files).

    Parameters
    ----------
    result : CaseResult

    Returns
    -------
    columns : list of str
        ``name``, ``role``, then metric keys in a stable order: volume_ml, mass_g, activity_gbq,
        activity_pct, mean_gy, median_gy, sd_gy, min_gy, max_gy, the ``d<x>_gy`` keys (x
        increasing), ``v<x>_pct``, ``v<x>_ml``, eud_gy, bed_gy, tn_ratio, cumulative_mean_gy,
        then any other metric keys (alphabetical).  The fixed keys are always present, so files
        of different cases have the same leading columns.
    rows : list of list
        One row per segment of ``result.segments``, in order; numbers as Python float/int, and
        None for missing or non-finite values (a T/N ratio of a non-tumour, a NaN volume).
    """
    present = []
    for s in result.segments:
        for k in s.metrics:
            if k not in present:
                present.append(k)

    def by_level(rx):
        keys = [k for k in present if rx.match(k)]
        return sorted(keys, key=lambda k: float(rx.match(k).group(1)))

    keys = list(_HEAD_KEYS) + by_level(_RX_D) + by_level(_RX_VPCT) + by_level(_RX_VML) + list(_TAIL_KEYS)
    keys += sorted(k for k in present if k not in keys)
    columns = ["name", "role"] + keys
    rows = []
    for s in result.segments:
        rows.append([s.name, s.role] + [_clean_number(s.metrics.get(k)) for k in keys])
    return columns, rows


def format_metric(key, value):
    """Text of one metric value with a precision that suits its unit ('–' when missing)."""
    v = _clean_number(value)
    if v is None:
        return "\u2013"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and not key.endswith(("_gy", "_ml", "_g", "_gbq", "_pct", "_ratio")):
        return str(v)
    a = abs(v)
    if key.endswith("_gbq"):
        return f"{v:.3f}" if a >= 0.01 or v == 0 else f"{v:.3g}"
    if key.endswith("_ratio"):
        return f"{v:.2f}"
    if key.endswith("_pct"):
        return f"{v:.1f}"
    if key.endswith(("_ml", "_g")):
        return f"{v:.1f}" if a >= 10 or v == 0 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"
    if key.endswith("_gy"):
        return f"{v:.1f}" if a >= 1 or v == 0 else f"{v:.2f}"
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.4g}"
    return f"{v:.6g}"


def _column_title(key):
    m = _RX_D.match(key)
    if m:
        return f"D{m.group(1)} (Gy)"
    m = _RX_VPCT.match(key)
    if m:
        return f"V{m.group(1)}Gy (%)"
    m = _RX_VML.match(key)
    if m:
        return f"V{m.group(1)}Gy (mL)"
    fixed = {
        "name": "segment", "role": "role", "volume_ml": "volume (mL)", "mass_g": "mass (g)",
        "activity_gbq": "activity (GBq)", "activity_pct": "activity (% of image)", "mean_gy": "mean (Gy)",
        "median_gy": "median (Gy)", "sd_gy": "SD (Gy)", "min_gy": "min (Gy)", "max_gy": "max (Gy)",
        "eud_gy": "EUD (Gy)", "bed_gy": "BED (Gy)", "tn_ratio": "T/N", "cumulative_mean_gy": "cumulative mean (Gy)",
    }
    return fixed.get(key, key)


# -- DVH ----------------------------------------------------------------------------------------
def _dose_rules(result):
    """Rules whose metric is a dose in Gy (drawn as vertical lines on the DVH)."""
    out = []
    for r in getattr(result.rules, "rules", ()):
        metric = str(r.metric).strip().lower()
        if str(r.unit).strip().lower() == "gy" and not metric.startswith("v") and metric not in ("tn_ratio",):
            out.append(r)
    return out


def _dvh_x_max(result, rules):
    top = 0.0
    for s in result.segments:
        if s.dvh is not None:
            top = max(top, float(s.dvh.dose_at_volume_pct(1.0)))
    thr = max((float(r.threshold) for r in rules), default=0.0)
    x_max = max(top * 1.05, thr * 1.2)
    return x_max if x_max > 0 else 1.0


def plot_dvh(result, path=None, *, step_gy=None):
    """PNG of the cumulative DVHs of a case, with the dose thresholds of its rule set.

    Parameters
    ----------
    result : CaseResult
    path : str, optional; the PNG is also written there.
    step_gy : float, optional; dose step of the curves (default ``result.params.dvh_curve_step_gy``).

    Returns
    -------
    bytes : the PNG file (9 x 5.5 in at 120 dpi).

    Notes
    -----
    One curve per segment in the segment's colour (segments that share a colour get different
    line styles; every curve has a dark outline so that pale colours stay visible).  The x axis
    runs to the largest of the segments' D1 (dose to the hottest 1 %) and 1.2 x the largest
    threshold.  The LSF lung entry is a single step at its uniform dose.
    """
    _matplotlib()
    from matplotlib import patheffects

    step = float(step_gy or getattr(result.params, "dvh_curve_step_gy", None) or 0.1)
    if not step > 0:
        raise ValueError(f"step_gy must be positive, got {step_gy!r}")
    rules = _dose_rules(result)
    fig = _new_figure((9.0, 5.5), 120)
    ax = fig.add_subplot(1, 1, 1)
    styles = ("-", "--", "-.", ":")
    seen_colors = {}
    for s in result.segments:
        if s.dvh is None:
            continue
        d, v = s.dvh.curve(step)
        color = tuple(float(c) for c in s.color)
        key = tuple(round(c, 2) for c in color)
        n_same = seen_colors.get(key, 0)
        seen_colors[key] = n_same + 1
        lw = 2.4 if s.role == "tumor" else 1.7
        mean = _clean_number(s.metrics.get("mean_gy"))
        label = f"{s.name}: mean {format_metric('mean_gy', mean)} Gy"
        (line,) = ax.plot(d, v, color=color, lw=lw, ls=styles[n_same % len(styles)], label=_mpl_text(label), zorder=3)
        line.set_path_effects([patheffects.Stroke(linewidth=lw + 1.4, foreground="0.25"), patheffects.Normal()])
    x_max = _dvh_x_max(result, rules)
    # Threshold lines: one line per value, the labels of rules that share it joined.
    by_value = {}
    for r in rules:
        by_value.setdefault(float(r.threshold), []).append(r)
    # Labels run up from the bottom (lane 0) or down from the top (lane 1) so that close lines
    # (30, 40, 50 Gy on a 1000 Gy axis) do not print over each other.
    last_in_lane = [-1.0, -1.0]
    for value, rs in sorted(by_value.items()):
        color = "#b21f2d" if all(r.kind == "safety" for r in rs) else "#1e7b34"
        ax.axvline(value, color=color, ls="--", lw=1.3, zorder=2)
        text = "; ".join(dict.fromkeys(f"{r.label} {r.comparison} {value:g} Gy" for r in rs))
        frac = value / x_max
        lane = 0 if frac - last_in_lane[0] >= 0.022 else 1 if frac - last_in_lane[1] >= 0.022 else 0
        last_in_lane[lane] = frac
        ax.text(
            value, 2.0 if lane == 0 else 98.0, " " + _mpl_text(text) + " ", rotation=90, ha="right",
            va="bottom" if lane == 0 else "top", fontsize=8, color=color, zorder=4,
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75),
        )
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, 102)
    ax.set_yticks(np.arange(0, 101, 10))
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume receiving at least this dose (%)")
    ax.grid(True, which="major", color="0.85", lw=0.7)
    ax.minorticks_on()
    ax.grid(True, which="minor", color="0.93", lw=0.5)
    ax.set_axisbelow(True)
    rname = getattr(result.rules, "name", "")
    status = result.overall_status
    ax.set_title(_mpl_text(f"Cumulative DVH \u2014 rules: {rname}"), loc="left", fontsize=11)
    fg, bg = _PASS_COLORS.get(status, _PASS_COLORS["N/A"])
    ax.text(
        1.0, 1.015, status, transform=ax.transAxes, ha="right", va="bottom", fontsize=11, fontweight="bold",
        color="white", bbox=dict(boxstyle="round,pad=0.3", fc=fg, ec="none"),
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.92, title="segment", title_fontsize=8)
    return _png_bytes(fig, path)


# -- dose slices --------------------------------------------------------------------------------
_VIEWS = {
    # columns of the direction matrix: image column axis, image row axis, plane normal (LPS)
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}
_VIEW_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I")}  # left, right, top, bottom
_VIEW_AXES = {
    "axial": ("mm from centroid (patient right \u2190 \u2192 left)", "mm (anterior \u2191 \u2193 posterior)"),
    "coronal": ("mm from centroid (patient right \u2190 \u2192 left)", "mm (superior \u2191 \u2193 inferior)"),
}


@dataclass
class SlicePlane:
    """One 2-D plane through a segment, every image resampled onto it.

    Arrays are (rows, columns) = (ny, nx) in display order (row 0 at the top of the picture).

    segment : name of the segment the plane is centred on; view : 'axial' or 'coronal'.
    centre_lps : (3,) ndarray, the segment's centroid (LPS mm), at the plane's centre pixel.
    grid : Grid of shape (1, ny, nx) (the plane in physical space).
    background : (ny, nx) float ndarray (NaN outside the background image); background_is_ct : bool.
    dose_gy : (ny, nx) float ndarray, Gy (0 outside the dose map).
    masks : {segment name: (ny, nx) bool ndarray}; colors : {name: (r, g, b)}; roles : {name: role}.
    extent_mm : (left, right, bottom, top) of the picture in mm from the centroid (imshow extent,
        origin 'upper'); axis_labels : (x label, y label); letters : (left, right, top, bottom).
    """

    segment: str
    view: str
    centre_lps: np.ndarray
    grid: Grid
    background: np.ndarray
    background_is_ct: bool
    dose_gy: np.ndarray
    masks: dict = field(default_factory=dict)
    colors: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    extent_mm: tuple = ()
    axis_labels: tuple = ()
    letters: tuple = ()

    @property
    def centre_index(self):
        """(row, column) of the pixel at the centroid."""
        ny, nx = self.dose_gy.shape
        return (ny - 1) // 2, (nx - 1) // 2


def _roles_of(result, segmentation):
    roles = dict((result.inputs or {}).get("roles") or {})
    for n in segmentation.names:
        if n not in roles:
            roles[n] = guess_role(n)
    return roles


def _centroid_lps(segmentation, name):
    box = segmentation.bbox(name)
    if box is None:
        return None
    idx = np.nonzero(segmentation.mask(name, box))
    k, j, i = (float(np.mean(a)) + box[n].start for n, a in enumerate(idx))
    return (segmentation.grid.ijk_to_lps @ np.array([i, j, k, 1.0]))[:3]


def _extent_mm(segmentation, name):
    """Largest side (mm) of the segment's bounding box."""
    box = segmentation.bbox(name)
    if box is None:
        return 0.0
    sub = segmentation.grid.crop(box)
    lo, hi = sub.physical_bounds_mm()
    return float(np.max(hi - lo))


def _plane_grid(centre, view, fov_mm, pixel_mm):
    n = max(16, int(round(fov_mm / pixel_mm)))
    n += 1 - n % 2  # odd: the centroid falls on the centre pixel
    cols = _VIEWS[view]
    m = np.array(cols, dtype=np.float64).T  # columns = i, j, k axis directions
    origin = np.asarray(centre, float) - m @ np.array([(n - 1) / 2 * pixel_mm, (n - 1) / 2 * pixel_mm, 0.0])
    return Grid((1, n, n), (pixel_mm,) * 3, tuple(origin), tuple(m.reshape(-1)))


def _box_near(src_grid, plane_grid, margin=2):
    """(z, y, x) slices of ``src_grid`` covering the plane (plus a margin), or None if disjoint."""
    lo, hi = plane_grid.physical_bounds_mm()
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = (corners @ src_grid.lps_to_ijk.T)[:, :3]
    a = np.floor(ijk.min(axis=0)).astype(int) - margin
    b = np.ceil(ijk.max(axis=0)).astype(int) + margin + 1
    nx, ny, nz = src_grid.shape[2], src_grid.shape[1], src_grid.shape[0]
    box = []
    for lo_i, hi_i, size in ((a[2], b[2], nz), (a[1], b[1], ny), (a[0], b[0], nx)):
        lo_i, hi_i = max(int(lo_i), 0), min(int(hi_i), size)
        if hi_i <= lo_i:
            return None
        box.append(slice(lo_i, hi_i))
    return tuple(box)


def _intersect(a, b):
    out = []
    for sa, sb in zip(a, b):
        lo, hi = max(sa.start, sb.start), min(sa.stop, sb.stop)
        if hi <= lo:
            return None
        out.append(slice(lo, hi))
    return tuple(out)


def _resample_on_plane(volume, plane, interpolation, default):
    from .volume import Volume

    box = _box_near(volume.grid, plane)
    if box is None:
        return np.full(plane.shape[1:], default, np.float32)
    sub = Volume(np.asarray(volume.array[box], dtype=np.float32), grid=volume.grid.crop(box))
    return tio.resample_volume(sub, plane, interpolation, default=default).array[0]


def _mask_on_plane(segmentation, name, plane):
    near = _box_near(segmentation.grid, plane, margin=1)
    box = segmentation.bbox(name)
    if near is None or box is None:
        return np.zeros(plane.shape[1:], bool)
    box = _intersect(box, near)
    if box is None:
        return np.zeros(plane.shape[1:], bool)
    return tio.resample_mask(segmentation.mask(name, box), segmentation.grid.crop(box), plane)[0]


def _looks_like_ct(volume):
    """CT when the unit says HU, or when the values reach air (<= -500) and tissue/bone (>= 100)."""
    unit = str(getattr(volume, "unit", "") or "").strip().upper()
    if unit == "HU":
        return True
    arr = np.asarray(volume.array)
    step = max(1, arr.size // 200000)
    sample = arr.reshape(-1)[::step]
    return bool(np.nanmin(sample) <= -500 and np.nanmax(sample) >= 100)


def _contour_names(segmentation, roles):
    """Segments drawn as contours: all but 'ignore' and, when a liver segment exists, the
    normal-liver segments (liver minus tumours: their outlines repeat the liver's and the tumours')."""
    names = [n for n in segmentation.names if roles.get(n) != "ignore"]
    if any(roles.get(n) in ("liver", "right_lobe", "left_lobe") for n in names):
        names = [n for n in names if roles.get(n) not in ("normal_liver", "perfused_normal")]
    return names


def _slice_targets(segmentation, roles, max_tumours):
    present = [n for n in segmentation.names if segmentation.bbox(n) is not None and roles.get(n) != "ignore"]
    tumours = [n for n in present if roles.get(n) == "tumor"][: max(0, int(max_tumours))]
    if tumours:
        return tumours
    livers = [n for n in present if roles.get(n) == "liver"]
    return livers[:1] or present[:1]


def dose_slice_planes(result, background, segmentation, *, max_tumours=6, views=("axial", "coronal"), fov_mm=None, pixel_mm=None):
    """The 2-D arrays drawn by :func:`plot_dose_slices`, one :class:`SlicePlane` per (segment, view).

    Parameters
    ----------
    result : CaseResult (its ``dose_gy`` map, Gy, is shown).
    background : Volume or None; a CT (HU) or any image; None: ``result.activity_gbq``.
    segmentation : Segmentation the case was run with (any grid).
    max_tumours : int, at most this many tumour segments; without tumours, the liver (or the
        first segment) is shown.
    views : sequence of 'axial' and/or 'coronal'.
    fov_mm : float, side of the square plane, mm (default max(200, 1.6 x the segment's size)).
    pixel_mm : float, pixel size, mm (default the finer in-plane spacing of the segmentation and
        the background, kept within [0.5, 2] mm).

    Returns
    -------
    list of SlicePlane, grouped by segment (in segmentation order), then by view.

    Notes
    -----
    Background and dose are read with linear interpolation, masks with nearest neighbour, at
    the plane's pixel centres in physical space (see the module docstring for orientations).
    """
    for v in views:
        if v not in _VIEWS:
            raise ValueError(f"views must be among {', '.join(_VIEWS)}, got {v!r}")
    bg = background if background is not None else result.activity_gbq
    is_ct = background is not None and _looks_like_ct(background)
    roles = _roles_of(result, segmentation)
    if pixel_mm is None:
        sp = min(min(segmentation.grid.spacing_mm[:2]), min(bg.grid.spacing_mm[:2]))
        pixel_mm = float(min(2.0, max(0.5, sp)))
    if not pixel_mm > 0:
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm!r}")
    contour = _contour_names(segmentation, roles)
    colors = {n: tuple(float(c) for c in segmentation.info(n).color) for n in contour}
    planes = []
    for name in _slice_targets(segmentation, roles, max_tumours):
        centre = _centroid_lps(segmentation, name)
        fov = float(fov_mm) if fov_mm else max(200.0, 1.6 * _extent_mm(segmentation, name))
        for view in views:
            plane = _plane_grid(centre, view, fov, pixel_mm)
            ny, nx = plane.shape[1:]
            half_x, half_y = nx * pixel_mm / 2, ny * pixel_mm / 2
            planes.append(
                SlicePlane(
                    segment=name,
                    view=view,
                    centre_lps=np.asarray(centre, float),
                    grid=plane,
                    background=_resample_on_plane(bg, plane, "linear", np.nan),
                    background_is_ct=is_ct,
                    dose_gy=_resample_on_plane(result.dose_gy, plane, "linear", 0.0),
                    masks={n: _mask_on_plane(segmentation, n, plane) for n in contour},
                    colors=dict(colors),
                    roles={n: roles.get(n, "other") for n in contour},
                    # origin 'upper': row 0 at the top. Rows run along +y (axial: anterior on top)
                    # or -z (coronal: superior on top), i.e. downwards on the picture.
                    extent_mm=(-half_x, half_x, -half_y, half_y) if view == "coronal" else (-half_x, half_x, half_y, -half_y),
                    axis_labels=_VIEW_AXES[view],
                    letters=_VIEW_LETTERS[view],
                )
            )
    return planes


def _dose_scale_max(result, planes):
    """(top of the dose colour scale, largest dose in the planes), Gy.

    The scale runs to the largest D1 (dose to the hottest 1 %) of the tumours (without tumours:
    of the segments other than lungs), so that a few extreme voxels (low-density lung or air
    voxels next to activity, whose LDM dose is large) do not wash out the tumours; doses above
    it get the top colour.
    """
    plane_max = max(float(np.nanmax(p.dose_gy)) for p in planes)
    segs = [s for s in result.segments if s.dvh is not None and s.role == "tumor"]
    if not segs:
        segs = [s for s in result.segments if s.dvh is not None and s.role not in ("lung", "ignore")]
    tops = [float(s.dvh.dose_at_volume_pct(1.0)) for s in segs]
    top = max(tops) if tops else plane_max
    if not top > 0:
        top = plane_max if plane_max > 0 else 1.0
    return top, plane_max


def _background_window(plane):
    if plane.background_is_ct:
        return CT_WINDOW_HU
    vals = plane.background[np.isfinite(plane.background)]
    vals = vals[vals > 0]
    if vals.size == 0:
        return 0.0, 1.0
    hi = float(np.percentile(vals, 99.5))
    return 0.0, hi if hi > 0 else 1.0


def plot_dose_slices(result, background, segmentation, path=None, *, max_tumours=6, views=("axial", "coronal"), fov_mm=None, dpi=110):
    """PNG of dose slices through each tumour: background in grey, dose colour wash, contours.

    Parameters
    ----------
    result : CaseResult
    background : Volume or None; a CT (HU, soft-tissue window) or, when None, the case's
        activity map (the SPECT, as GBq per voxel).
    segmentation : Segmentation the case was run with.
    path : str, optional; the PNG is also written there.
    max_tumours : int; views : 'axial' and/or 'coronal'; fov_mm : side of each plane, mm.
    dpi : int

    Returns
    -------
    bytes : the PNG file.  One row per segment (tumours first; without tumours the liver), one
    column per view.  The dose wash is transparent below max(1 Gy, 1 % of the largest dose
    shown) and shares one colour scale across the figure.  Tumour contours are thick (the
    segment of the row thickest), other segments thin; a white dashed line marks the isodose
    of each tumour threshold of the rule set.
    """
    _matplotlib()
    import matplotlib
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    planes = dose_slice_planes(result, background, segmentation, max_tumours=max_tumours, views=views, fov_mm=fov_mm)
    if not planes:
        raise ValueError("no segment to show in the dose slices")
    names = list(dict.fromkeys(p.segment for p in planes))
    views = list(dict.fromkeys(p.view for p in planes))
    nrows, ncols = len(names), len(views)
    fig = _new_figure((4.9 * ncols + 0.9, 5.2 * nrows + 1.0), dpi)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    d_max, plane_max = _dose_scale_max(result, planes)
    threshold = max(1.0, 0.01 * d_max)
    try:
        cmap = matplotlib.colormaps["turbo"]
    except (AttributeError, KeyError):  # matplotlib < 3.5
        import matplotlib.cm as cm

        cmap = cm.get_cmap("jet")
    try:
        cmap = cmap.with_extremes(bad=(0, 0, 0, 0), under=(0, 0, 0, 0))
    except AttributeError:  # matplotlib < 3.4
        cmap = cmap.copy()
        cmap.set_bad(alpha=0.0)
        cmap.set_under(alpha=0.0)
    isodoses = sorted({float(r.threshold) for r in _dose_rules(result) if r.role == "tumor" and r.kind == "efficacy" and 0 < r.threshold < d_max})
    seg_means = {s.name: s.metrics.get("mean_gy") for s in result.segments}
    legend = {}
    im = None
    outline = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for p in planes:
        r, c = names.index(p.segment), views.index(p.view)
        ax = axes[r, c]
        grey = np.ma.masked_invalid(p.background)
        lo, hi = _background_window(p)
        ax.imshow(grey, cmap="gray", vmin=lo, vmax=hi, extent=p.extent_mm, origin="upper", interpolation="nearest")
        dose = np.ma.masked_less(p.dose_gy, threshold)
        im = ax.imshow(dose, cmap=cmap, vmin=threshold, vmax=d_max, alpha=0.55, extent=p.extent_mm, origin="upper", interpolation="nearest")
        ny, nx = p.dose_gy.shape
        xs = np.linspace(p.extent_mm[0], p.extent_mm[1], nx + 1)
        xs = (xs[:-1] + xs[1:]) / 2
        ys = np.linspace(p.extent_mm[3], p.extent_mm[2], ny + 1)  # top to bottom = row order
        ys = (ys[:-1] + ys[1:]) / 2
        for level in isodoses:
            if p.dose_gy.max() >= level:
                ax.contour(xs, ys, p.dose_gy, levels=[level], colors="white", linewidths=1.0, linestyles="--")
                legend[f"{level:g} Gy isodose (tumour threshold)"] = Line2D([], [], color="white", ls="--", lw=1.0, path_effects=outline)
        for n, m in p.masks.items():
            if not m.any():
                continue
            role = p.roles.get(n)
            lw = 2.6 if n == p.segment else (1.8 if role == "tumor" else 1.2)
            cs = ax.contour(xs, ys, m.astype(np.float32), levels=[0.5], colors=[p.colors[n]], linewidths=lw)
            if role == "tumor":  # a dark edge keeps pale tumour colours visible on the dose wash
                _set_path_effects(cs, [patheffects.Stroke(linewidth=lw + 1.6, foreground="black"), patheffects.Normal()])
            legend.setdefault(n, Line2D([], [], color=p.colors[n], lw=2.2 if role == "tumor" else 1.4))
        ax.set_xlim(p.extent_mm[0], p.extent_mm[1])
        ax.set_ylim(p.extent_mm[2], p.extent_mm[3])
        ax.set_aspect("equal")
        ax.set_facecolor("black")
        ax.tick_params(labelsize=7)
        ax.set_xlabel(p.axis_labels[0], fontsize=7.5)
        ax.set_ylabel(p.axis_labels[1], fontsize=7.5)
        left, right, top, bottom = p.letters
        for text, (x, y, ha, va) in zip(
            (left, right, top, bottom),
            ((0.015, 0.5, "left", "center"), (0.985, 0.5, "right", "center"), (0.5, 0.985, "center", "top"), (0.5, 0.015, "center", "bottom")),
        ):
            ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=10, fontweight="bold", path_effects=outline)
        x, y, z = p.centre_lps
        where = f"z = {z:.1f} mm" if p.view == "axial" else f"y = {y:.1f} mm"
        mean = seg_means.get(p.segment)
        head = f"{p.segment} \u2014 {p.view}, {where} (LPS)"
        if mean is not None:
            head += f"\nmean dose {format_metric('mean_gy', mean)} Gy"
        ax.set_title(_mpl_text(head), fontsize=9)
    for r in range(nrows):
        cb = fig.colorbar(im, ax=list(axes[r, :]), shrink=0.9, pad=0.01, extend="max" if plane_max > d_max else "neither")
        cb.set_label("dose (Gy)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    if legend:
        leg = fig.legend(
            list(legend.values()), [_mpl_text(k) for k in legend], loc="outside lower center" if _outside_ok() else "lower center",
            ncol=min(4, len(legend)), fontsize=8, facecolor="0.35", labelcolor="white", framealpha=1.0,
        )
        leg.get_frame().set_edgecolor("0.35")
    bg_name = "CT" if (background is not None and planes[0].background_is_ct) else ("background image" if background is not None else "activity (SPECT)")
    fig.suptitle(
        _mpl_text(f"Dose map ({result.params.method.upper()}) on {bg_name}; wash from {threshold:.3g} Gy; radiological orientation"),
        fontsize=10,
    )
    return _png_bytes(fig, path)


def _set_path_effects(contour_set, effects):
    if hasattr(contour_set, "collections") and not hasattr(contour_set, "get_paths"):  # matplotlib < 3.8
        for c in contour_set.collections:
            c.set_path_effects(effects)
    else:
        contour_set.set_path_effects(effects)


def _outside_ok():
    import matplotlib

    try:
        major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (3, 7)


# -- HTML report --------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:14px;color:#222;margin:24px auto;max-width:1200px;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc;padding-bottom:3px}
h3{font-size:14px;margin:14px 0 4px}
.meta{color:#555;font-size:12.5px}.disclaimer{color:#8a4b00;font-weight:bold}
.banner{padding:12px 16px;border-radius:6px;margin:16px 0;font-size:15px}
.banner b{font-size:20px;margin-right:12px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f1f1}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.status{font-weight:bold;text-align:center}
td.src{font-size:11.5px;color:#444;max-width:420px}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:6px 0}
.note{color:#555;font-style:italic}ul{margin-top:4px}
code{font-size:12px}
"""


def _e(text):
    return html.escape(str(text), quote=True)


def _status_cell(status):
    fg, bg = _PASS_COLORS.get(status, _PASS_COLORS["N/A"])
    return f'<td class="status" style="color:{fg};background:{bg}">{_e(status)}</td>'


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
        rows.append(
            "<tr>"
            f"<td>{_e(seg)}</td><td>{_e(r.label)}</td>"
            f'<td class="num">{_e(format_metric(key, ev.measured))}</td>'
            f'<td class="num">{_e(r.comparison)}</td>'
            f'<td class="num">{_e(f"{r.threshold:g}")}</td><td>{_e(unit)}</td>'
            f"{_status_cell(ev.status)}<td>{_e(r.kind)}</td>"
            f'<td class="src">{_e(r.source)}</td>'
            "</tr>"
        )
    if not rows:
        return '<p class="note">The rule set holds no rules.</p>'
    return _table(["segment", "rule", "measured", "comparison", "threshold", "unit", "status", "kind", "source"], rows)


def _metrics_html(result):
    columns, rows = metrics_table_rows(result)
    idx = {c: n for n, c in enumerate(columns)}
    notes = {s.name: s.note for s in result.segments}
    main = [k for k in list(_HEAD_KEYS) + ["eud_gy", "bed_gy", "tn_ratio"] if k in idx]
    dvh_keys = [k for k in columns if _RX_D.match(k) or _RX_VPCT.match(k)]
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
        heads = ["segment", "role"] + [_column_title(k) for k in keys] + (["note"] if with_note else [])
        return _table(heads, body)

    out = "<h3>Dose, activity and mass</h3>" + render(main, True)
    if dvh_keys:
        out += "<h3>DVH metrics</h3>" + render(dvh_keys, False)
    out += (
        '<p class="note">Mean dose is mass-weighted (energy / mass); D<sub>x</sub> is the minimum dose to the hottest '
        "x % of the volume, V<sub>x</sub>Gy the percentage of the volume receiving at least x Gy (both interpolated, "
        "volume-based).  T/N: tumour mean dose / mean dose of the normal-liver reference.</p>"
    )
    return out


def _img(png, alt):
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _figures_html(result, background, segmentation):
    parts = []
    try:
        _matplotlib()
    except MissingDependencyError as exc:
        return f'<p class="note">Figures need matplotlib, which is not installed ({_e(exc)}).</p>'
    parts.append("<h3>Cumulative dose-volume histograms</h3>" + _img(plot_dvh(result), "cumulative DVH"))
    if segmentation is None:
        parts.append('<p class="note">Dose slices need the segmentation (not given to the report).</p>')
    else:
        try:
            png = plot_dose_slices(result, background, segmentation)
        except TAREDosimetryError as exc:
            parts.append(f'<p class="note">Dose slices could not be drawn: {_e(exc)}</p>')
        else:
            parts.append("<h3>Dose slices through the tumours</h3>" + _img(png, "dose slices"))
            parts.append(
                '<p class="note">Radiological convention: patient right on the image left; axial: anterior at the top; '
                "coronal: superior at the top.  Images are resampled onto each plane in physical space.</p>"
            )
    return "".join(parts)


def write_report_html(result, path, *, background=None, segmentation=None, title=None):
    """Write a self-contained HTML report (inline CSS, figures as base64 PNG, no scripts).

    Parameters
    ----------
    result : CaseResult
    path : str, the .html file to write.
    background : Volume, optional; the background of the dose slices (CT in HU, or the SPECT);
        default the activity map.
    segmentation : Segmentation, optional; needed for the dose slices.
    title : str, optional.

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
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    sw = dict(d.get("software", {}))
    try:
        import matplotlib

        sw["matplotlib"] = matplotlib.__version__
    except ImportError:
        sw["matplotlib"] = "not installed"
    sw_text = ", ".join(f"{k} {v}" for k, v in sw.items() if k not in ("name", "version"))
    status = result.overall_status
    fg, bg = _PASS_COLORS.get(status, _PASS_COLORS["N/A"])
    inputs = dict(d.get("inputs") or {})
    roles = inputs.pop("roles", None)
    warn = d.get("warnings") or []
    p = []
    p.append(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head><body>')
    p.append(f"<h1>{_e(title)}</h1>")
    p.append(
        f'<p class="meta">Generated {_e(now)} by {_e(sw.get("name", "TAREDosimetry"))} {_e(sw.get("version", ""))} '
        f"({_e(sw_text)}).<br>Dose method: {_e(result.params.method.upper())}; calibration: {_e(result.params.calibration)}; "
        f"rule set: {_e(getattr(result.rules, 'name', ''))}.<br>"
        '<span class="disclaimer">Research software, not a medical device: not for clinical decisions.</span></p>'
    )
    banner_word = {"PASS": "PASS", "FAIL": "FAIL"}.get(status, "N/A")
    p.append(
        f'<div class="banner" style="background:{bg};color:{fg};border:2px solid {fg}"><b>{_e(banner_word)}</b>'
        f"{_e(result.summary_line())}</div>"
    )
    p.append("<h2>Rule evaluations</h2>")
    desc = getattr(result.rules, "description", "")
    if desc:
        p.append(f'<p class="meta">{_e(getattr(result.rules, "name", ""))}: {_e(desc)}</p>')
    p.append(_evaluations_html(result))
    p.append("<h2>Per-segment metrics</h2>")
    p.append(_metrics_html(result))
    p.append("<h2>Warnings</h2>")
    if warn:
        p.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in warn) + "</ul>")
    else:
        p.append('<p class="note">None.</p>')
    p.append("<h2>Figures</h2>")
    p.append(_figures_html(result, background, segmentation))
    p.append("<h2>Calibration and activity summary</h2>")
    p.append(_kv_table(d.get("summary") or {}))
    p.append("<h2>Parameters</h2>")
    p.append(_kv_table(d.get("parameters") or {}))
    p.append("<h2>Constants</h2>")
    p.append(_kv_table(d.get("constants") or {}))
    p.append("<h2>Metrics grid</h2>")
    p.append(_kv_table(d.get("metrics_grid") or {}))
    p.append("<h2>Inputs</h2>")
    if inputs:
        p.append(_kv_table(inputs))
    if roles:
        p.append("<h3>Segment roles</h3>")
        p.append(_table(["segment", "role"], [f"<tr><td>{_e(n)}</td><td>{_e(ROLE_LABELS.get(r, r))}</td></tr>" for n, r in roles.items()]))
    if d.get("timings_s"):
        p.append("<h3>Computation times (s)</h3>" + _kv_table(d["timings_s"]))
    p.append("<h2>Known limits</h2><ul>" + "".join(f"<li>{_e(t)}</li>" for t in KNOWN_LIMITS) + "</ul>")
    p.append(f'<p class="meta">{_e(sw.get("name", "TAREDosimetry"))} {_e(sw.get("version", ""))} \u2014 research software, not a medical device.</p>')
    p.append("</body></html>\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(p))
    return str(path)
