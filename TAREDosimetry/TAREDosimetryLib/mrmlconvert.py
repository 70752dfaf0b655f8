"""Node-free helpers of the Slicer module: geometry, table rows, colours, display windows.

Everything here is plain Python and NumPy so that it is unit-tested without 3D Slicer
(``Testing/test_mrmlconvert.py``); ``TAREDosimetry.py`` only moves these values in and out of
MRML nodes.  Nothing here imports ``slicer``, ``qt``, ``ctk`` or ``vtk``.

Coordinate conventions
----------------------
Slicer volume nodes give ``IJKToRAS``: a 4x4 matrix mapping the voxel index ``(i, j, k, 1)`` to
RAS millimetres.  The engine works in LPS (see :mod:`.volume`).  The two frames differ by a
sign flip of the first two axes, ``LPS = diag(-1, -1, 1) @ RAS``, so
``ijk_to_lps = diag(-1, -1, 1, 1) @ ijk_to_ras``.  Arrays are ``(k, j, i)`` = ``(z, y, x)`` in
both ``slicer.util.arrayFromVolume`` and the engine, so voxel arrays need no transposition.
"""

import json

import numpy as np

from .errors import InputError
from .volume import Grid

__all__ = [
    "RAS_FROM_LPS",
    "PASS_COLOR",
    "FAIL_COLOR",
    "INCOMPLETE_COLOR",
    "grid_from_ijk_to_ras",
    "ijk_to_ras_from_grid",
    "grid_from_image_to_world",
    "extent_shape",
    "union_extent",
    "lattice_offset",
    "place_in_extent",
    "compose_ras",
    "role_rows",
    "roles_from_rows",
    "RULE_COLUMNS",
    "rule_rows",
    "ruleset_from_rows",
    "dose_window_gy",
    "segment_status",
    "status_colors",
    "status_color",
    "STATUS_CSS_COLORS",
    "status_css_color",
    "status_lines",
    "metrics_columns",
    "evaluation_columns",
    "case_status_columns",
    "dvh_columns",
    "threshold_lines_gy",
    "safe_column_name",
    "ras_matrix_from_lps",
    "lps_matrix_from_ras",
]

#: 4x4 matrix that turns LPS into RAS coordinates (its own inverse).
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Override colours shown on segments, (r, g, b) in [0, 1].
PASS_COLOR = (0.10, 0.80, 0.20)
FAIL_COLOR = (0.90, 0.10, 0.10)
#: Amber: the case (or the text of the panel) when a rule could not be evaluated.
INCOMPLETE_COLOR = (0.95, 0.65, 0.05)


# -- geometry ----------------------------------------------------------------------------------

def grid_from_ijk_to_ras(ijk_to_ras, shape_zyx):
    """Engine :class:`Grid` (LPS) of a Slicer volume.

    Parameters
    ----------
    ijk_to_ras : (4, 4) array_like
        The node's ``IJKToRAS`` matrix (voxel index to RAS mm).
    shape_zyx : tuple of int, (nz, ny, nx)
        Shape of ``slicer.util.arrayFromVolume(node)``.

    Returns
    -------
    Grid with ``spacing_mm`` (x, y, z) = lengths of the i, j, k columns, ``origin_mm`` = LPS
    position of voxel (0, 0, 0), and ``direction`` = unit i, j, k columns in LPS.
    """
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise InputError(f"IJKToRAS must be a finite 4x4 matrix, got {m.tolist()!r}")
    lps = RAS_FROM_LPS @ m
    axes = lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"IJKToRAS has a zero-length voxel axis; spacing {tuple(spacing)}")
    direction = axes / spacing
    return Grid(tuple(int(s) for s in shape_zyx), tuple(spacing), tuple(lps[:3, 3]), tuple(direction.reshape(-1)))


def ijk_to_ras_from_grid(grid):
    """The 4x4 ``IJKToRAS`` matrix (ndarray) of an engine :class:`Grid`; inverse of
    :func:`grid_from_ijk_to_ras`."""
    return RAS_FROM_LPS @ grid.ijk_to_lps


def extent_shape(extent):
    """(nz, ny, nx) of a VTK extent ``(i0, i1, j0, j1, k0, k1)`` (inclusive); (0, 0, 0) when empty."""
    i0, i1, j0, j1, k0, k1 = (int(v) for v in extent)
    return (max(0, k1 - k0 + 1), max(0, j1 - j0 + 1), max(0, i1 - i0 + 1))


def grid_from_image_to_world(image_to_world_ras, extent):
    """Engine :class:`Grid` (LPS) of a Slicer oriented image (a segment's binary labelmap).

    Parameters
    ----------
    image_to_world_ras : (4, 4) array_like, the image's ``ImageToWorld`` matrix: absolute voxel
        index (i, j, k, 1) -> RAS mm (the index counts from 0 of the lattice, not of the extent).
    extent : (i0, i1, j0, j1, k0, k1), inclusive, non-empty.

    Returns
    -------
    Grid whose voxel (0, 0, 0) is the extent's first voxel.
    """
    shape = extent_shape(extent)
    if min(shape) < 1:
        raise InputError(f"empty extent {tuple(extent)}")
    m = np.array(image_to_world_ras, dtype=np.float64)
    start = np.array([extent[0], extent[2], extent[4], 1.0])
    m[:, 3] = m @ start
    return grid_from_ijk_to_ras(m, shape)


def union_extent(extents):
    """Smallest extent holding every non-empty extent of ``extents``; None when all are empty."""
    boxes = [tuple(int(v) for v in e) for e in extents if min(extent_shape(e)) > 0]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes),
            max(b[3] for b in boxes), min(b[4] for b in boxes), max(b[5] for b in boxes))


def lattice_offset(reference_ras, other_ras, tol_mm=1e-3):
    """(di, dj, dk) such that voxel (i, j, k) of ``other`` is voxel (i + di, j + dj, k + dk) of
    ``reference`` (two ImageToWorld matrices of the same lattice), or None when the lattices differ
    (other spacing or directions, or an origin shifted by a fraction of a voxel)."""
    a = np.asarray(reference_ras, dtype=np.float64)
    b = np.asarray(other_ras, dtype=np.float64)
    if not np.allclose(a[:3, :3], b[:3, :3], atol=tol_mm * 1e-3, rtol=1e-6):
        return None
    shift = np.linalg.solve(a[:3, :3], b[:3, 3] - a[:3, 3])
    rounded = np.round(shift)
    if not np.allclose(a[:3, :3] @ (shift - rounded), 0.0, atol=tol_mm):
        return None
    return tuple(int(v) for v in rounded)


def place_in_extent(array_zyx, extent, target_extent):
    """A copy of ``array_zyx`` (the voxels of ``extent``) placed in a zero array of ``target_extent``
    (same lattice; ``extent`` must lie inside it).  Returns an array of shape extent_shape(target)."""
    out = np.zeros(extent_shape(target_extent), dtype=np.asarray(array_zyx).dtype)
    if min(extent_shape(extent)) == 0:
        return out
    lo = [extent[2 * a] - target_extent[2 * a] for a in range(3)]  # i, j, k offsets
    hi = [extent[2 * a + 1] - target_extent[2 * a] + 1 for a in range(3)]
    if min(lo) < 0 or any(h > n for h, n in zip(hi, extent_shape(target_extent)[::-1])):
        raise InputError(f"extent {tuple(extent)} does not lie inside {tuple(target_extent)}")
    out[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = array_zyx
    return out


def compose_ras(node_to_world_ras, image_to_node_ras):
    """ImageToWorld of an image inside a node under a linear transform: ``node_to_world @ image_to_node``."""
    return np.asarray(node_to_world_ras, dtype=np.float64) @ np.asarray(image_to_node_ras, dtype=np.float64)


# -- segment roles -------------------------------------------------------------------------------

def role_rows(segment_names, saved_roles=None):
    """Rows ``[(name, role), ...]`` for the role table of the panel.

    The role is the one saved earlier for that name (``saved_roles``, e.g. from the parameter
    node) when it is a known role, else the engine's guess (:func:`.roles.guess_role`).
    """
    from .evaluation.roles import ROLES, guess_role

    saved = saved_roles or {}
    rows = []
    for name in segment_names:
        role = saved.get(name)
        rows.append((name, role if role in ROLES else guess_role(name)))
    return rows


def roles_from_rows(rows):
    """``{name: role}`` from role-table rows; InputError naming the row for an unknown role."""
    from .evaluation.roles import canonical_role

    out = {}
    for name, role in rows:
        out[str(name)] = canonical_role(role, where=f"role of segment {name!r}")
    return out


# -- threshold rules -----------------------------------------------------------------------------

#: Columns of the editable rule table, in order (all are Rule fields).  ``optional`` is
#: 'true'/'' and ``when`` the rule's conditions as JSON (empty when unconditional).
RULE_COLUMNS = ("role", "segment", "metric", "comparison", "threshold", "unit", "kind", "label", "source",
                "optional", "when", "row")


def _rule_cell(rule, col):
    value = getattr(rule, col, "")
    if col == "when":
        return json.dumps([c.to_dict() for c in value]) if value else ""
    if col == "optional":
        return "true" if value else ""
    return f"{value:g}" if isinstance(value, float) else str(value or "")


def rule_rows(ruleset):
    """Rows of strings (one per rule, columns :data:`RULE_COLUMNS`) for the rule table."""
    return [[_rule_cell(rule, col) for col in RULE_COLUMNS] for rule in ruleset.rules]


def _rule_from_cells(d, n):
    """Typed Rule fields from the text cells of row ``n`` (1-based)."""
    if "threshold" in d:
        try:
            d["threshold"] = float(d["threshold"])
        except ValueError:
            raise InputError(f"rule row {n}: threshold must be a number, got {d['threshold']!r}") from None
    if "optional" in d:
        if d["optional"].lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise InputError(f"rule row {n}: optional must be true or false, got {d['optional']!r}")
        d["optional"] = d["optional"].lower() in ("true", "yes", "1")
    if "when" in d:
        try:
            d["when"] = json.loads(d["when"])
        except ValueError as exc:
            raise InputError(f"rule row {n}: conditions ('when') must be JSON, e.g. "
                             f'[{{"input": "bilirubin_mg_dl", "op": ">", "value": 1.1}}] ({exc})') from None
    return d


def ruleset_from_rows(name, rows, description="", scope=None):
    """A :class:`.rules.RuleSet` from edited table rows (lists of strings, :data:`RULE_COLUMNS`).

    Empty rows are skipped; errors name the row (1-based) and the field.  ``scope``: the scope of
    the preset the rows were edited from (kept, so the report still says what it was derived from).
    """
    from .evaluation.rules import RuleSet

    rules = []
    for row in rows:
        cells = [str(c).strip() for c in row]
        if not any(cells):
            continue
        if len(cells) != len(RULE_COLUMNS):
            raise InputError(f"rule row {len(rules) + 1} has {len(cells)} cells, expected {len(RULE_COLUMNS)}")
        d = {col: cell for col, cell in zip(RULE_COLUMNS, cells) if cell != ""}
        rules.append(_rule_from_cells(d, len(rules) + 1))
    if not rules:
        raise InputError("the threshold rule table is empty; choose a preset or add a rule")
    return RuleSet.from_dict({"name": name, "description": description, "rules": rules, "scope": dict(scope or {})},
                             source="rule table")


# -- display -------------------------------------------------------------------------------------

def dose_window_gy(dose_gy, upper_percentile=99.5):
    """(lower, upper) dose window in Gy for display: 0 up to a high percentile of the dose in
    voxels that received any (so a single hot voxel does not wash the colours out).

    dose_gy : ndarray of float (any shape), or a (min, max) pair.
    Returns (0.0, 1.0) for an all-zero dose so that the window is never empty.
    """
    a = np.asarray(dose_gy, dtype=np.float64)
    if a.shape == (2,):
        lo, hi = float(min(a)), float(max(a))
        return (min(0.0, lo), hi if hi > 0 else 1.0)
    positive = a[np.isfinite(a) & (a > 0)]
    if positive.size == 0:
        return (0.0, 1.0)
    hi = float(np.percentile(positive, upper_percentile))
    if not hi > 0:
        hi = float(positive.max())
    return (0.0, hi)


def ras_matrix_from_lps(matrix_lps):
    """A 4x4 point transform in RAS from the same transform in LPS (``F M F``, F = diag(-1, -1, 1, 1)).

    The engine's registration transform maps a planning point to the post-treatment point (ITK's
    convention, :mod:`.planning.registration`).  In Slicer that is the *TransformFromParent* of a
    linear transform node placed over the post-treatment volume (Slicer also saves transforms to
    ITK files as TransformFromParent, ``vtkMRMLTransformStorageNode``): the post-treatment volume,
    under that node, is then shown aligned with the planning images."""
    m = np.asarray(matrix_lps, dtype=float)
    if m.shape != (4, 4):
        raise InputError(f"transform matrix must be 4x4, got shape {m.shape}")
    return RAS_FROM_LPS @ m @ RAS_FROM_LPS


def lps_matrix_from_ras(matrix_ras):
    """The inverse conversion of :func:`ras_matrix_from_lps` (the same operation: F is its own inverse)."""
    return ras_matrix_from_lps(matrix_ras)


def segment_status(evaluations):
    """``{segment name: 'PASS' | 'FAIL'}``: FAIL when any rule failed on the segment, PASS when
    at least one rule applied and all passed.  Segments without rules (and N/A rows) are absent."""
    status = {}
    for ev in evaluations:
        if ev.status not in ("PASS", "FAIL") or not ev.segment_name:
            continue
        if ev.status == "FAIL" or status.get(ev.segment_name) == "FAIL":
            status[ev.segment_name] = "FAIL"
        else:
            status[ev.segment_name] = "PASS"
    return status


def status_colors(evaluations, pass_color=PASS_COLOR, fail_color=FAIL_COLOR):
    """``{segment name: (r, g, b)}`` override colours from :func:`segment_status`."""
    return {name: (pass_color if s == "PASS" else fail_color) for name, s in segment_status(evaluations).items()}


def status_color(status):
    """(r, g, b) of an overall status: PASS green, FAIL red, INCOMPLETE amber."""
    return {"PASS": PASS_COLOR, "FAIL": FAIL_COLOR}.get(status, INCOMPLETE_COLOR)


def _css_colors():
    from .evaluation.status import STATUS_COLORS

    return {status: text for status, (text, _background) in STATUS_COLORS.items()}


#: Colours of the overall status in the panel (CSS; the reports' text colours,
#: :data:`.evaluation.status.STATUS_COLORS`); INCOMPLETE (rules not evaluated) in amber.
STATUS_CSS_COLORS = _css_colors()


def status_css_color(status):
    """CSS colour of an overall status ('PASS', 'FAIL', 'INCOMPLETE'; grey for anything else)."""
    return STATUS_CSS_COLORS.get(str(status), STATUS_CSS_COLORS["N/A"])


def status_lines(result):
    """Lines of the panel's result summary, in the engine's words (:func:`.reporting.wording.banner`,
    as the report's banner and the console say it): the verdict ("FAIL: tumour 3 mean dose 48.3 Gy
    < 79.5 Gy", "INCOMPLETE: <reasons>", "PASS: every rule judged was met (...)"), what a FAIL would also lack,
    the rule count and the treatment phase, explicit choices (an LSF of 0 given on purpose...), the
    device that computed the dose, and the engine's warnings (scope and DICOM header warnings among them)."""
    from .reporting.wording import banner

    said = banner(result)
    lines = [said["headline"]]
    lines += [f"Also incomplete: {reason}" for reason in said["also_incomplete"]]
    lines += said["lines"][:2]  # rule count and phase; each evaluation is in the thresholds table, in words
    lines += [f"Explicit choice: {c}" for c in (getattr(result, "explicit_choices", None) or [])]
    device = (getattr(result, "summary", None) or {}).get("dose_device")
    if device:
        lines.append(f"Dose computed on: {device}")
    return lines + [f"Warning: {w}" for w in result.warnings]


# -- tables ----------------------------------------------------------------------------------------

def _metric_unit(key):
    for suffix, unit in (("_gy", "Gy"), ("_pct", "%"), ("_ml", "mL"), ("_g", "g"), ("_gbq", "GBq"), ("_kg", "kg")):
        if key.endswith(suffix):
            return unit
    return ""


def metrics_columns(segment_results, status_by_segment=None):
    """Columns of the metrics table: ``[(name, unit, values), ...]``.

    The first columns are ``segment`` and ``role`` (strings), then ``status`` (PASS/FAIL/"")
    when ``status_by_segment`` is given, then ``warnings`` (the segment's warnings, e.g. partial
    volume, joined by '; ') when any segment has one, then every metric key found in any
    segment, in the order first seen; a segment lacking a key gets NaN.
    """
    segs = list(segment_results)
    keys = []
    for s in segs:
        for k in s.metrics:
            if k not in keys:
                keys.append(k)
    cols = [("segment", "", [s.name for s in segs]), ("role", "", [s.role for s in segs])]
    if status_by_segment is not None:
        cols.append(("status", "", [status_by_segment.get(s.name, "") for s in segs]))
    if any(getattr(s, "warnings", None) for s in segs):
        cols.append(("warnings", "", ["; ".join(getattr(s, "warnings", None) or ()) for s in segs]))
    for k in keys:
        values = []
        for s in segs:
            v = s.metrics.get(k)
            try:
                values.append(float(v) if v is not None else float("nan"))
            except (TypeError, ValueError):
                values.append(float("nan"))
        cols.append((k, _metric_unit(k), values))
    return cols


def evaluation_columns(evaluations):
    """Columns of the rule-results table (strings and floats), one row per evaluation: the result in
    words ("FAIL: tumour 3 mean dose 48.3 Gy < 79.5 Gy", :func:`.reporting.wording.evaluation_sentence`),
    the rule, measured value and status, the reason of an N/A, the segment's warnings (partial volume),
    the rule's conditions, kind, source and table row."""
    from .reporting.wording import evaluation_sentence

    rows = [e.to_dict() for e in evaluations]
    names = ("segment", "role", "rule", "metric", "comparison", "threshold", "unit", "measured", "status", "reason",
             "warnings", "conditions", "kind", "source", "row")
    cols = [("result", "", [f"{e.status}: {evaluation_sentence(e)}" for e in evaluations])]
    for n in names:
        values = [r.get(n) for r in rows]
        if n in ("threshold", "measured"):
            values = [float("nan") if v is None else float(v) for v in values]
        elif n == "warnings":
            values = ["; ".join(v or ()) for v in values]
        else:
            values = ["" if v is None else str(v) for v in values]
        cols.append((n, "", values))
    return cols


def case_status_columns(result):
    """Columns ``item``, ``value`` of the case-status table: the overall status (PASS, FAIL or
    INCOMPLETE), the verdict in words (the report's banner), the rule set and how it was chosen, then one row per incomplete reason, explicit
    choice and scope warning, and the clinical inputs (``not given`` when None)."""
    from .reporting.wording import banner

    rows = [("overall status", result.overall_status), ("verdict", banner(result)["headline"]),
            ("rule set", f"{result.rules.name} ({result.rules_note or 'given'})")]
    rows += [("incomplete: not evaluated or not given", r) for r in result.incomplete_reasons]
    rows += [("explicit choice", c) for c in result.explicit_choices]
    rows += [("outside the thresholds' scope", w) for w in result.scope_warnings]
    rows += [(k.replace("_", " "), "not given" if v is None else str(v)) for k, v in result.params.clinical_inputs().items()]
    return [("item", "", [r[0] for r in rows]), ("value", "", [r[1] for r in rows])]


def safe_column_name(name, taken=()):
    """A table/plot column name from a segment name: printable, unique within ``taken``."""
    base = "".join(c if (c.isalnum() or c in " _-+.()") else "_" for c in str(name)).strip() or "segment"
    out, n = base, 2
    while out in taken:
        out = f"{base} ({n})"
        n += 1
    return out


def dvh_columns(segment_results, step_gy=0.5, max_points=2000):
    """Cumulative DVH table on one common dose axis.

    Returns ``(dose_gy, [(column name, segment result, volume_pct), ...])`` where ``dose_gy``
    is a 1-D float array from 0 to the highest segment maximum and each ``volume_pct`` gives
    the % of that segment's volume receiving at least that dose (interpolated from the
    engine's DVH curve).  ``step_gy`` grows when needed so that at most ``max_points`` rows are made.
    """
    segs = [s for s in segment_results if getattr(s, "dvh", None) is not None]
    if not segs:
        return np.zeros(0), []
    curves = [s.dvh.curve(step_gy) for s in segs]
    top = max(float(np.max(d)) if len(d) else 0.0 for d, _ in curves)
    step = float(step_gy)
    if top / step > max_points:
        step = top / max_points
    dose = np.arange(0.0, top + step, step)
    out, taken = [], set()
    for s, (d, v) in zip(segs, curves):
        d = np.asarray(d, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        if d.size == 0:
            vol = np.zeros_like(dose)
        else:
            vol = np.interp(dose, d, v, left=float(v[0]), right=0.0)
        name = safe_column_name(s.name, taken)
        taken.add(name)
        out.append((name, s, vol))
    return dose, out


def threshold_lines_gy(ruleset):
    """Vertical reference lines for the DVH chart: ``[(label, dose_gy), ...]``, one per distinct
    dose threshold of a rule whose unit is Gy (mean, D_x, EUD ... rules)."""
    lines, seen = [], set()
    for r in ruleset.rules:
        if str(r.unit).lower() != "gy":
            continue
        t = float(r.threshold)
        if t in seen:
            continue
        seen.add(t)
        who = r.segment or r.role
        lines.append((f"{who} {r.comparison} {t:g} Gy", t))
    return lines
