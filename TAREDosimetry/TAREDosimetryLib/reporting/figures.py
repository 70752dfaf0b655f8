"""Figures of one :class:`CaseResult`: the cumulative DVH and dose slices over CT or SPECT.

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

import io as _io
from dataclasses import dataclass, field

import numpy as np

from ..evaluation.status import STATUS_COLORS

from ..errors import TAREDosimetryError
from ..evaluation.roles import guess_role
from ..resample import resample_mask, resample_volume
from ..volume import Grid, Volume
from .colors import display_colors
from .tables import clean_number, format_metric

__all__ = [
    "MissingDependencyError",
    "PASS_COLORS",
    "plot_dvh",
    "dvh_figure",
    "figure_colors",
    "SlicePlane",
    "dose_slice_planes",
    "plane_rgb",
    "plot_dose_slices",
    "SliceFigure",
    "slice_figure",
    "plane_heading",
    "scale_bar_mm",
    "require_matplotlib",
    "png_bytes",
    "plot_registration_check",
]

#: Display window of a CT background (soft tissue: level 40 HU, width 400 HU).
CT_WINDOW_HU = (-160.0, 240.0)
#: (text, background) colour of each status: PASS green, FAIL red, INCOMPLETE amber, N/A grey.
PASS_COLORS = dict(STATUS_COLORS)


class MissingDependencyError(TAREDosimetryError, RuntimeError):
    """An optional package (matplotlib) needed for figures is not installed."""


def require_matplotlib():
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
    """A Figure on an Agg canvas, laid out by hand (no constrained layout: it redraws every text
    several times and took most of the report's time)."""
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


#: PNG compression of the figures (zlib level): 1 writes 2-3x faster than the default 6, for
#: files about 30 % larger.
PNG_COMPRESS_LEVEL = 1


def png_bytes(fig, path=None):
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as fh:
            fh.write(data)
    return data


def preload_matplotlib():
    """Start importing matplotlib's figure and Agg canvas in a background thread (0.3-0.7 s),
    so that the import overlaps the reading and the computation of a case whose report will be
    drawn; returns the thread (None when matplotlib is not installed).  Drawing later waits for
    the import as any import does."""
    import importlib.util
    import threading

    if importlib.util.find_spec("matplotlib") is None:
        return None

    def _import():
        try:
            require_matplotlib()
        except Exception:  # noqa: BLE001 - a failed import is reported when the figures are drawn
            pass

    thread = threading.Thread(target=_import, name="preload matplotlib", daemon=True)
    thread.start()
    return thread


def _mpl_text(text):
    """Text safe for matplotlib (a '$' would start mathtext)."""
    return str(text).replace("$", r"\$")


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
    """Right end of the DVH's dose axis: past every curve's maximum (no tail clipped) and every
    dose threshold."""
    top = 0.0
    for s in result.segments:
        if s.dvh is not None:
            top = max(top, float(s.dvh.max_gy))
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
    bytes : the PNG file (11 x 5.5 in at 120 dpi), the figure of :func:`dvh_figure`.
    """
    return png_bytes(dvh_figure(result, step_gy=step_gy), path)


def dvh_figure(result, *, step_gy=None):
    """The matplotlib Figure of :func:`plot_dvh` (11 x 5.5 in at 120 dpi).

    Notes
    -----
    One curve per segment, in colours told apart (:mod:`.colors`: the segment's own colour unless
    too close to another's; segments that still share a colour get other line styles; every curve
    has a dark outline so that pale colours stay visible).  The x axis runs to the largest of the
    segments' D1 (dose to the hottest 1 %) and 1.2 x the largest threshold.  The LSF lung entry is
    a single step at its uniform dose.  Threshold lines are labelled outside the plot, so that no
    text covers a curve: their doses on the top axis, their rules in the legend to the right of
    the plot, with the status.
    """
    require_matplotlib()
    step = float(step_gy or getattr(result.params, "dvh_curve_step_gy", None) or 0.1)
    if not step > 0:
        raise ValueError(f"step_gy must be positive, got {step_gy!r}")
    rules = _dose_rules(result)
    fig = _new_figure((11.0, 5.5), 120)
    ax = fig.add_subplot(1, 1, 1)
    _draw_dvh_curves(ax, result, step)
    x_max = _dvh_x_max(result, rules)
    threshold_handles = _draw_threshold_lines(ax, rules, x_max)
    legend = _dvh_axes(ax, result, x_max, threshold_handles)
    _place_dvh_axes(fig, ax, legend)
    return fig


def _place_dvh_axes(fig, ax, legend):
    """Axes position leaving room for the title and threshold doses above, the axis labels left
    and below, and the legend at the right (measured once, instead of a constrained layout)."""
    width_in, height_in = fig.get_size_inches()
    legend_in = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    left, right = 0.75 / width_in, 1.0 - (legend_in + 0.25) / width_in
    bottom, top = 0.55 / height_in, 1.0 - 0.75 / height_in
    ax.set_position([left, bottom, max(0.25, right - left), top - bottom])


def figure_colors(result, segmentation=None, roles=None):
    """{name: (r, g, b)} of the result's segments (and the segmentation's others), told apart (:mod:`.colors`)."""
    items = [(s.name, s.role, s.color) for s in result.segments]
    if segmentation is not None:
        roles = roles or {}
        items += [(n, roles.get(n, "other"), segmentation.info(n).color) for n in segmentation.names]
    return display_colors(items)


def _draw_dvh_curves(ax, result, step):
    """One curve per segment in its display colour; segments sharing a colour get other line styles."""
    from matplotlib import patheffects

    styles = ("-", "--", "-.", ":")
    seen_colors = {}
    colors = figure_colors(result)
    for s in result.segments:
        if s.dvh is None:
            continue
        d, v = s.dvh.curve(step)
        color = colors[s.name]
        key = tuple(round(c, 2) for c in color)
        n_same = seen_colors.get(key, 0)
        seen_colors[key] = n_same + 1
        lw = 2.4 if s.role == "tumor" else 1.7
        mean = clean_number(s.metrics.get("mean_gy"))
        label = f"{s.name}: mean {format_metric('mean_gy', mean)} Gy"
        (line,) = ax.plot(d, v, color=color, lw=lw, ls=styles[n_same % len(styles)], label=_mpl_text(label), zorder=3)
        line.set_path_effects([patheffects.Stroke(linewidth=lw + 1.4, foreground="0.25"), patheffects.Normal()])


def _draw_threshold_lines(ax, rules, x_max):
    """One vertical line per threshold value; returns legend handles naming the rules of each line.

    The doses are written on the top axis and the rules in the legend (outside the plot): a
    label inside the plot would cover the curves.
    """
    from matplotlib.lines import Line2D

    by_value = {}
    for r in rules:
        by_value.setdefault(float(r.threshold), []).append(r)
    handles, ticks = [], []
    for value, rs in sorted(by_value.items()):
        color = "#b21f2d" if all(r.kind == "safety" for r in rs) else "#1e7b34"
        ax.axvline(value, color=color, ls="--", lw=1.3, zorder=2)
        text = "; ".join(dict.fromkeys(r.label if f"{value:g} Gy" in r.label else f"{r.label} {r.comparison} {value:g} Gy"
                                       for r in rs))
        handles.append(Line2D([], [], color=color, ls="--", lw=1.3, label=_mpl_text(text)))
        ticks.append((value, color))
    top = ax.get_xaxis_transform()  # x in Gy, y in axes fractions: the doses just above the plot
    for value, color in ticks:
        ax.text(value, 1.012, f"{value:g}", transform=top, rotation=90, ha="center", va="bottom", fontsize=7.5,
                color=color, clip_on=False)
    return handles


def _dvh_axes(ax, result, x_max, threshold_handles=()):
    """Axes, grid, title, status and legend (outside, to the right) of the DVH plot."""
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, 102)
    ax.set_yticks(np.arange(0, 101, 10))
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume receiving at least this dose (%)")
    ax.grid(True, which="major", color="0.85", lw=0.7)
    _minor_grid(ax, x_max)
    ax.set_axisbelow(True)
    rname = getattr(result.rules, "name", "")
    status = result.overall_status
    # pad: the threshold doses are written just above the plot, under the title
    ax.set_title(_mpl_text(f"Cumulative DVH \u2014 rules: {rname}"), loc="left", fontsize=11, pad=24)
    fg, _ = PASS_COLORS.get(status, PASS_COLORS["N/A"])
    handles, labels = ax.get_legend_handles_labels()
    handles, labels = handles + list(threshold_handles), labels + [h.get_label() for h in threshold_handles]
    legend = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, framealpha=0.95,
                       title=f"{status}  \u2014  segments and thresholds", title_fontsize=8.5, borderaxespad=0.0)
    legend.get_title().set_color(fg)
    legend.get_title().set_fontweight("bold")
    return legend


def _minor_grid(ax, x_max):
    """Light grid lines between the major ticks (5 per major step on y, 4 or 5 on x), drawn as
    two line collections: minor tick objects cost a tenth of a second per figure."""
    xt = ax.xaxis.get_major_locator().tick_values(0.0, x_max)
    step_x = float(xt[1] - xt[0]) if len(xt) > 1 else x_max
    n_x = 4 if round(step_x / 10 ** np.floor(np.log10(step_x)), 6) in (2.0, 4.0, 8.0) else 5
    minor_x = np.arange(0.0, x_max + step_x, step_x / n_x)
    on_major = np.isclose(np.remainder(minor_x / step_x + 0.5, 1.0), 0.5)
    minor_x = minor_x[(minor_x > 0) & (minor_x < x_max) & ~on_major]
    minor_y = np.array([v for v in range(2, 101, 2) if v % 10], dtype=float)
    ax.vlines(minor_x, 0, 102, colors="0.93", lw=0.5, zorder=0.5)
    ax.hlines(minor_y, 0, x_max, colors="0.93", lw=0.5, zorder=0.5)


# -- dose slices --------------------------------------------------------------------------------
_VIEWS = {
    # columns of the direction matrix: image column axis, image row axis, plane normal (LPS)
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}
_VIEW_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I")}  # left, right, top, bottom
_VIEW_AXES = {
    # The y labels are turned a quarter turn and read upwards: the arrows point down and up the picture.
    "axial": ("patient right \u2190 \u2192 left", "posterior \u2190 \u2192 anterior"),
    "coronal": ("patient right \u2190 \u2192 left", "inferior \u2190 \u2192 superior"),
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


def _nearest_voxel_lps(segmentation, name, point):
    """LPS centre of the segment's voxel nearest to ``point`` (among at most 200 000 of its voxels)."""
    box = segmentation.bbox(name)
    idx = np.argwhere(segmentation.mask(name, box))[:, ::-1]  # (i, j, k) in the box
    idx = idx[::max(1, len(idx) // 200_000)]
    ijk = np.column_stack([idx + [box[2].start, box[1].start, box[0].start], np.ones(len(idx))])
    lps = (ijk @ segmentation.grid.ijk_to_lps.T)[:, :3]
    return lps[int(np.argmin(((lps - np.asarray(point, float)) ** 2).sum(axis=1)))]


def _plane_through(segmentation, name, centroid, view, fov_mm, pixel_mm):
    """(plane Grid, its centre): the plane through the segment's centroid, or, when the segment has no
    voxel there (separate parts, a crescent), moved along its normal to the segment's voxel nearest
    the centroid, so that a panel titled with a segment shows it."""
    plane = _plane_grid(centroid, view, fov_mm, pixel_mm)
    if _mask_on_plane(segmentation, name, plane).any():
        return plane, np.asarray(centroid, float)
    normal = np.asarray(_VIEWS[view][2], float)
    centre = np.asarray(centroid, float)
    centre = centre + float((_nearest_voxel_lps(segmentation, name, centre) - centre) @ normal) * normal
    return _plane_grid(centre, view, fov_mm, pixel_mm), centre


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

    box = _box_near(volume.grid, plane)
    if box is None:
        return np.full(plane.shape[1:], default, np.float32)
    sub = Volume(np.asarray(volume.array[box], dtype=np.float32), grid=volume.grid.crop(box))
    return resample_volume(sub, plane, interpolation, default=default).array[0]


def _mask_on_plane(segmentation, name, plane):
    near = _box_near(segmentation.grid, plane, margin=1)
    box = segmentation.bbox(name)
    if near is None or box is None:
        return np.zeros(plane.shape[1:], bool)
    box = _intersect(box, near)
    if box is None:
        return np.zeros(plane.shape[1:], bool)
    return resample_mask(segmentation.mask(name, box), segmentation.grid.crop(box), plane)[0]


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
    shown = figure_colors(result, segmentation, roles)
    colors = {n: shown[n] for n in contour}
    planes = []
    for name in _slice_targets(segmentation, roles, max_tumours):
        centre = _centroid_lps(segmentation, name)
        fov = float(fov_mm) if fov_mm else max(200.0, 1.6 * _extent_mm(segmentation, name))
        for view in views:
            plane, at = _plane_through(segmentation, name, centre, view, fov, pixel_mm)
            ny, nx = plane.shape[1:]
            half_x, half_y = nx * pixel_mm / 2, ny * pixel_mm / 2
            planes.append(
                SlicePlane(
                    segment=name,
                    view=view,
                    centre_lps=np.asarray(at, float),
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


@dataclass
class SliceFigure:
    """What the dose-slice figures show, whatever draws them (:func:`plot_dose_slices` for a PNG,
    :mod:`.slicehtml` for the HTML report): the planes, the colour scale of the dose wash from
    ``threshold`` to ``d_max`` Gy in ``cmap`` (``plane_max`` the largest dose in the planes), the
    isodose levels drawn, each segment's mean dose and the figure's title."""

    planes: list
    threshold: float
    d_max: float
    plane_max: float
    cmap: object
    isodoses: list
    means: dict
    title: str

    @property
    def rows(self):
        """Segment names (one row each) and views (one column each), in the order of the planes."""
        return list(dict.fromkeys(p.segment for p in self.planes)), list(dict.fromkeys(p.view for p in self.planes))

    def legend_entries(self):
        """The figure's legend, in the order the planes show them: {label: None for an isodose line,
        (colour, is a tumour) for a segment outline}."""
        items = {}
        for p in self.planes:
            for level in self.isodoses:
                if p.dose_gy.max() >= level:
                    items.setdefault(isodose_label(level), None)
            for n, m in p.masks.items():
                if m.any():
                    items.setdefault(n, (p.colors[n], p.roles.get(n) == "tumor"))
        return items


def slice_figure(result, background, segmentation, *, max_tumours=6, views=("axial", "coronal"), fov_mm=None, pixel_mm=None):
    """:class:`SliceFigure` of a case (see :func:`plot_dose_slices` for the arguments)."""
    require_matplotlib()
    planes = dose_slice_planes(result, background, segmentation, max_tumours=max_tumours, views=views, fov_mm=fov_mm,
                               pixel_mm=pixel_mm)
    if not planes:
        raise ValueError("no segment to show in the dose slices")
    d_max, plane_max = _dose_scale_max(result, planes)
    threshold = max(1.0, 0.01 * d_max)
    bg_name = "CT" if (background is not None and planes[0].background_is_ct) else ("background image" if background is not None else "activity (SPECT)")
    title = f"Dose map ({result.params.method.upper()}) on {bg_name}; wash from {threshold:.3g} Gy; radiological orientation"
    return SliceFigure(planes, threshold, d_max, plane_max, _dose_colormap(), _tumour_isodoses(result, planes, d_max),
                       {s.name: s.metrics.get("mean_gy") for s in result.segments}, title)


def plane_heading(p, mean_gy):
    """(title line, mean-dose line or '') of one plane: segment, view and the plane's position (LPS)."""
    x, y, z = p.centre_lps
    where = f"z = {z:.1f} mm" if p.view == "axial" else f"y = {y:.1f} mm"
    return f"{p.segment} \u2014 {p.view}, {where} (LPS)", ("" if mean_gy is None else f"mean dose {format_metric('mean_gy', mean_gy)} Gy")


def scale_bar_mm(width_mm):
    """Length of the scale bar of a plane ``width_mm`` wide: a round length, at most 0.3 of the width."""
    return next((v for v in (100, 50, 20, 10, 5) if v <= 0.3 * width_mm), 5)


def isodose_label(level):
    return f"{level:g} Gy isodose (tumour threshold)"


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
    of each tumour threshold of the rule set.  (The HTML report shows the same planes as HTML
    panels: :mod:`.slicehtml`.)
    """
    sf = slice_figure(result, background, segmentation, max_tumours=max_tumours, views=views, fov_mm=fov_mm)
    names, views = sf.rows
    nrows, ncols = len(names), len(views)
    fig = _new_figure((4.9 * ncols + 0.9, 5.2 * nrows + 1.0), dpi)
    axes, colorbar_axes = _slice_axes(fig, nrows, ncols)
    im = None
    for p in sf.planes:
        ax = axes[names.index(p.segment)][views.index(p.view)]
        im = _draw_dose_plane(ax, p, sf.cmap, sf.threshold, sf.d_max, sf.isodoses)
        _label_plane(ax, p, sf.means.get(p.segment))
    for cax in colorbar_axes:
        cb = fig.colorbar(im, cax=cax, extend="max" if sf.plane_max > sf.d_max else "neither")
        cb.set_label("dose (Gy)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    legend = {label: _legend_handle(entry) for label, entry in sf.legend_entries().items()}
    if legend:
        leg = fig.legend(
            list(legend.values()), [_mpl_text(k) for k in legend], loc="lower center", bbox_to_anchor=(0.5, 0.004),
            ncol=min(4, len(legend)), fontsize=8, facecolor="0.35", labelcolor="white", framealpha=1.0,
        )
        leg.get_frame().set_edgecolor("0.35")
    fig.suptitle(_mpl_text(sf.title), fontsize=10, y=1.0 - 0.12 / fig.get_size_inches()[1])
    return png_bytes(fig, path)


def _slice_axes(fig, nrows, ncols):
    """(rows of image axes, one colour-bar axes per row), placed by hand on the figure of
    (4.9 ncols + 0.9) x (5.2 nrows + 1.0) inches: 0.45 in for the title on top, then per row
    0.4 in for the plane titles, a 4.2 in square image and 0.6 in for the axis labels; the
    colour bar right of each row; the legend in the bottom 0.55 in."""
    width_in, height_in = fig.get_size_inches()
    rows, bars = [], []
    for r in range(nrows):
        top_in = height_in - 0.45 - 5.2 * r - 0.4
        bottom_in = top_in - 4.2
        rows.append([fig.add_axes([(0.6 + 4.9 * c) / width_in, bottom_in / height_in, 4.2 / width_in, 4.2 / height_in])
                     for c in range(ncols)])
        bars.append(fig.add_axes([(4.9 * ncols + 0.05) / width_in, (bottom_in + 0.2) / height_in, 0.15 / width_in,
                                  3.8 / height_in]))
    return rows, bars


def _tumour_isodoses(result, planes, d_max):
    """Dose levels of the tumour thresholds, drawn as isodose lines only when the planes go through
    tumours (without a tumour segment a tumour threshold line would mislead)."""
    if not any(p.roles.get(p.segment) == "tumor" for p in planes):
        return []
    return sorted({float(r.threshold) for r in _dose_rules(result) if r.role == "tumor" and r.kind == "efficacy" and 0 < r.threshold < d_max})


def _dose_colormap():
    """'turbo' (jet on old matplotlib) with transparent masked and below-range values."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps["turbo"]
    except (AttributeError, KeyError):  # matplotlib < 3.5
        import matplotlib.cm as cm

        cmap = cm.get_cmap("jet")
    try:
        return cmap.with_extremes(bad=(0, 0, 0, 0), under=(0, 0, 0, 0))
    except AttributeError:  # matplotlib < 3.4
        cmap = cmap.copy()
        cmap.set_bad(alpha=0.0)
        cmap.set_under(alpha=0.0)
        return cmap


_OUTLINE_WIDTH = 2.2


def _legend_handle(entry):
    """Legend line of a :meth:`SliceFigure.legend_entries` entry: a white dashed isodose line, or an outline."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    if entry is None:
        outline = [patheffects.withStroke(linewidth=_OUTLINE_WIDTH, foreground="black")]
        return Line2D([], [], color="white", ls="--", lw=1.0, path_effects=outline)
    colour, tumour = entry
    return Line2D([], [], color=colour, lw=2.2 if tumour else 1.4)


def _draw_dose_plane(ax, p, cmap, threshold, d_max, isodoses):
    """Background, dose wash, isodose lines and segment outlines of one plane, composed as one RGB
    image (:func:`plane_rgb`); returns the colour scale of the wash (for the colour bar)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    ax.imshow(plane_rgb(p, cmap, threshold, d_max, isodoses), extent=p.extent_mm, origin="upper", interpolation="nearest")
    return ScalarMappable(norm=Normalize(threshold, d_max), cmap=cmap)


def _shrunk(mask):
    """``mask`` less its voxels that touch the outside across a face (4-neighbourhood, in plane)."""
    out = mask.copy()
    out[1:, :] &= mask[:-1, :]
    out[:-1, :] &= mask[1:, :]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[0, :] = out[-1, :] = False
    out[:, 0] = out[:, -1] = False
    return out


def _grown(mask):
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _outline(mask, width):
    """The band of ``width`` pixels inside the edge of ``mask``."""
    inner = mask
    for _ in range(width):
        inner = _shrunk(inner)
    return mask & ~inner


#: Pixels across a plane's image (upsampled from the plane's own by a whole factor): about the
#: size it is drawn at, so that outlines one or two pixels wide look like lines.
_PLANE_PIXELS = 480


def _upsampled(a, factor):
    """``a`` (rows, columns[, channels]) with each pixel repeated ``factor`` times along both axes."""
    return a if factor == 1 else np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)


def plane_rgb(p, cmap, threshold, d_max, isodoses):
    """(u ny, u nx, 3) float RGB image of one :class:`SlicePlane`, composed pixel by pixel (u: a whole
    upsampling factor bringing the image to about :data:`_PLANE_PIXELS` pixels across).

    The background in grey (CT window or the image's 99.5th percentile), the dose from
    ``threshold`` to ``d_max`` Gy in ``cmap`` over it (opacity 0.55; above ``d_max`` the top
    colour), each isodose level of ``isodoses`` as a dashed white line, and the segments'
    outlines in their colours (4 pixels for the plane's own segment, 3 for tumours with a dark edge, 2 others).
    Drawing the planes as images instead of contour lines is most of the speed of the report.
    """
    lo, hi = _background_window(p)
    up = max(1, int(round(_PLANE_PIXELS / max(p.dose_gy.shape))))  # lines thin against the image, as drawn
    grey = np.clip((np.asarray(p.background, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    rgb = np.repeat(np.where(np.isfinite(grey), grey, 0.0)[..., None], 3, axis=2)
    dose = np.asarray(p.dose_gy, np.float64)
    wash = dose >= threshold
    if wash.any():
        colours = np.asarray(cmap(np.clip((dose[wash] - threshold) / max(d_max - threshold, 1e-12), 0.0, 1.0)))[:, :3]
        rgb[wash] = 0.45 * rgb[wash] + 0.55 * colours
    rgb = _upsampled(rgb, up)
    rows, cols = np.indices(rgb.shape[:2])
    dashes = ((rows + cols) // 8) % 2 == 0
    for level in isodoses:
        rgb[_outline(_upsampled(dose >= level, up), 2) & dashes] = 1.0
    order = sorted(p.masks, key=lambda n: (n == p.segment, p.roles.get(n) == "tumor"))  # the row's segment on top
    for n in order:
        m = _upsampled(p.masks[n], up)
        if not m.any():
            continue
        tumour = p.roles.get(n) == "tumor"
        band = _outline(m, 4 if n == p.segment else (3 if tumour else 2))
        if tumour:  # a dark edge keeps pale tumour colours visible on the dose wash
            rgb[_grown(_grown(band)) & ~band] = 0.0
        rgb[band] = p.colors[n]
    return rgb


def _label_plane(ax, p, mean_gy):
    """Axes, orientation letters and title of one plane."""
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=_OUTLINE_WIDTH, foreground="black")]
    ax.set_xlim(p.extent_mm[0], p.extent_mm[1])
    ax.set_ylim(p.extent_mm[2], p.extent_mm[3])
    ax.set_aspect("equal")
    ax.set_facecolor("black")
    ax.set_xticks([])  # a scale bar instead of tick labels: a tenth of the drawing time
    ax.set_yticks([])
    ax.set_xlabel(p.axis_labels[0], fontsize=7.5)
    ax.set_ylabel(p.axis_labels[1], fontsize=7.5)
    _scale_bar(ax, p.extent_mm, outline)
    left, right, top, bottom = p.letters
    for text, (x, y, ha, va) in zip(
        (left, right, top, bottom),
        ((0.015, 0.5, "left", "center"), (0.985, 0.5, "right", "center"), (0.5, 0.985, "center", "top"), (0.5, 0.015, "center", "bottom")),
    ):
        ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=10, fontweight="bold", path_effects=outline)
    head, mean = plane_heading(p, mean_gy)
    ax.set_title(_mpl_text(head + ("\n" + mean if mean else "")), fontsize=9)


def _scale_bar(ax, extent_mm, outline):
    """A white bar of a round length (about a quarter of the plane) at the bottom right, labelled in mm."""
    width = abs(extent_mm[1] - extent_mm[0])
    length = scale_bar_mm(width)
    up = 1.0 if extent_mm[3] > extent_mm[2] else -1.0  # the y limits are (bottom, top) = extent_mm[2:4]
    x1 = max(extent_mm[0], extent_mm[1]) - 0.05 * width
    y = extent_mm[2] + up * 0.07 * width
    ax.plot([x1 - length, x1], [y, y], color="white", lw=2.5, solid_capstyle="butt", path_effects=outline)
    ax.text(x1 - length / 2, y + up * 0.015 * width, f"{length:g} mm", color="white", fontsize=8, ha="center", va="bottom",
            path_effects=outline)


# -- registration check and dose difference (tare-dosimetry compare) ------------------------------------------
def _checker(a, b, tiles=8):
    ny, nx = a.shape
    yy, xx = np.meshgrid(np.arange(ny) * tiles // max(ny, 1), np.arange(nx) * tiles // max(nx, 1), indexing="ij")
    return np.where((yy + xx) % 2 == 0, a, b)


def _normalised(img, window):
    lo, hi = window if window is not None else np.percentile(img, (1, 99))
    return np.clip((img - lo) / ((hi - lo) or 1.0), 0, 1)


def plot_registration_check(fixed, moved, difference_gy=None, path=None, *, window=None, dpi=100):
    """PNG of the registration check: checkerboards of the planning image and the registered
    post-treatment image through the middle axial and coronal planes (array axes; z up in the
    coronal view), and the dose difference (delivered - planned, Gy) on the same planes.

    fixed, moved : (Z, Y, X) arrays on one grid (the moved image already resampled onto it).
    difference_gy : (Z, Y, X) array on that grid, optional.
    """
    fixed, moved = np.asarray(fixed, float), np.asarray(moved, float)
    ncol = 3 if difference_gy is not None else 2
    fig = _new_figure((4.2 * ncol, 7.6), dpi)
    axes = fig.subplots(2, ncol)
    nz, ny, nx = fixed.shape
    planes = (("axial", lambda a: a[nz // 2]), ("coronal", lambda a: a[::-1, ny // 2, :]))
    for row, (title, cut) in enumerate(planes):
        f, m = _normalised(cut(fixed), window), _normalised(cut(moved), window)
        axes[row, 0].imshow(_checker(f, m), cmap="gray", interpolation="nearest")
        axes[row, 0].set_title(f"{title}: checkerboard planning / registered")
        axes[row, 1].imshow(np.dstack([f, m, f]), interpolation="nearest")
        axes[row, 1].set_title(f"{title}: fused (green = post-treatment)")
        if difference_gy is not None:
            d = cut(np.asarray(difference_gy, float))
            lim = float(np.nanmax(np.abs(d))) or 1.0
            im = axes[row, 2].imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            axes[row, 2].set_title(f"{title}: delivered - planned (Gy)")
            fig.colorbar(im, ax=axes[row, 2], shrink=0.8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    return png_bytes(fig, path)
