"""A dry run: what a case would be, without computing it (``tare-dosimetry run --dry-run``).

:func:`preview_case` takes the same inputs as :func:`~.pipeline.run_case` and runs only the
geometry steps (inputs checked, roles resolved, segments placed on the metrics grid): it says which
segments there are, the role each gets (guessed from its name or given), their volumes and the part
inside the activity image, the entries the engine adds (derived normal liver, lungs), which segments
every rule will judge, and what would stop the run.  No activity, dose or metric is computed.  It
is the way to check the roles before a long batch.
"""

from .errors import InputError
from .evaluation.phase import case_phase
from .evaluation.roles import ROLE_LABELS
from .evaluation.rules import load_rules
from .params import DosimetryParams
from .reporting.wording import metric_words
from .pipeline import (
    DERIVED_NORMAL_LIVER,
    LUNG_ALL_ENTRY,
    LUNG_LSF_ENTRY,
    build_metrics_grid,
    check_inputs,
    derive_normal_liver,
    resolve_roles,
)

__all__ = ["preview_case", "format_preview", "check_preview"]


def _given_names(names, roles):
    lower = {str(k).lower() for k in (roles or {})}
    return {n for n in names if n in (roles or {}) or n.lower() in lower}


def _segment_rows(segmentation, sampler, case_roles, roles):
    given = _given_names(segmentation.names, roles)
    rows = []
    for n in segmentation.names:
        role = case_roles.role_of[n]
        mask = sampler.masks.get(n)
        rows.append({
            "name": n, "role": role, "role_from": "given" if n in given else "guessed",
            "volume_ml": float(mask.sum() * sampler.voxel_volume_ml) if mask is not None else None,
            "inside_pct": 100.0 * sampler.inside_fraction[n] if n in sampler.inside_fraction else None,
        })
    return rows


def _added_entries(sampler, case_roles, params):
    """Entries the engine adds to the segments: derived normal liver, the lungs as one organ."""
    added = []
    if case_roles.derived:
        mask = sampler.masks[DERIVED_NORMAL_LIVER]
        added.append({"name": DERIVED_NORMAL_LIVER, "role": "normal_liver", "role_from": "derived",
                      "volume_ml": float(mask.sum() * sampler.voxel_volume_ml), "inside_pct": None,
                      "note": "liver minus tumours"})
    lungs = case_roles.lung_names
    if case_roles.lung_from == "lsf":
        added.append({"name": LUNG_LSF_ENTRY, "role": "lung", "role_from": "derived", "volume_ml": None, "inside_pct": None,
                      "note": "uniform lung dose from the lung shunt fraction; mass from "
                      + (", ".join(lungs) if lungs else f"the default {params.default_lung_mass_g:g} g")})
    elif len(lungs) > 1:
        added.append({"name": LUNG_ALL_ENTRY, "role": "lung", "role_from": "derived", "volume_ml": None, "inside_pct": None,
                      "note": "union of " + ", ".join(lungs) + " (judged by the lung rules)"})
    return added


def _rule_targets(ruleset, entries, case_roles):
    """[(rule, [names it will judge])]; an empty list means the rule will be N/A."""
    lung_union = case_roles.lung_from == "lsf" or len(case_roles.lung_names) > 1
    out = []
    for rule in ruleset.rules:
        if rule.segment:
            names = [e["name"] for e in entries if e["name"] == rule.segment and e["role"] != "ignore"]
        else:
            names = [e["name"] for e in entries if e["role"] == rule.role
                     and not (rule.role == "lung" and lung_union and e["role_from"] != "derived")]
        out.append((rule, names))
    return out


def _blocking(params, case_roles):
    """What would stop the run later (the dry run computes no activity)."""
    problems = []
    if params.calibration == "relative" and params.administered_activity_gbq is None:
        problems.append("administered_activity_gbq is required with relative calibration (--administered-activity-gbq)")
    if params.calibration == "relative" and params.reference_region == "perfused" and not case_roles.by_role.get("perfused"):
        problems.append("reference region 'perfused' needs a segment with role perfused")
    return problems


def preview_case(activity, segmentation, *, params=None, roles=None, ct=None, rules=None, inputs=None, what="activity image"):
    """What :func:`~.pipeline.run_case` would do with these inputs, computing no dose (see module docstring).

    Returns
    -------
    dict: ``activity`` and ``segmentation`` (grids), ``segments`` (rows: name, role, role_from
    'guessed'|'given'|'derived', volume_ml, inside_pct, note), ``rules`` (name, and per rule its
    label, text and the segments it will judge), ``phase``, ``warnings`` and ``blocking`` (what
    would stop the run).  Raises the InputError/GeometryError the run would raise in these steps.
    """
    params = params or DosimetryParams()
    ruleset = load_rules(rules)
    warnings = list(getattr(segmentation, "notes", []))
    check_inputs(activity, segmentation, ct, what)
    case_roles = resolve_roles(segmentation, roles, params)
    sampler = build_metrics_grid(segmentation, activity.grid, case_roles, what, warnings)
    case_roles = derive_normal_liver(sampler, case_roles, warnings)
    entries = _segment_rows(segmentation, sampler, case_roles, roles) + _added_entries(sampler, case_roles, params)
    return {
        "activity": {"what": what, "shape": tuple(activity.grid.shape), "spacing_mm": tuple(activity.grid.spacing_mm),
                     "total": float(activity.array.sum(dtype="float64")), "unit": activity.unit or ""},
        "segmentation": {"source": segmentation.source, "shape": tuple(segmentation.grid.shape),
                         "spacing_mm": tuple(segmentation.grid.spacing_mm)},
        "segments": entries,
        "rules": {"name": ruleset.name, "targets": [{"label": r.label, "kind": r.kind, "segments": names,
                                                     "text": f"{metric_words(r.metric)} {r.comparison} {r.threshold:g} {r.unit}".strip()}
                                                    for r, names in _rule_targets(ruleset, entries, case_roles)]},
        "phase": case_phase(params, inputs),
        "warnings": warnings,
        "blocking": _blocking(params, case_roles),
    }


def _grid_text(shape, spacing):
    z, y, x = shape
    return f"{x} x {y} x {z} voxels of " + " x ".join(f"{s:.2f}" for s in spacing) + " mm"


def format_preview(preview):
    """The dry run as text (lines), for the console."""
    a, s = preview["activity"], preview["segmentation"]
    lines = ["dry run: inputs read and checked; no activity, dose or metric computed; nothing written",
             f"{a['what']}: {_grid_text(a['shape'], a['spacing_mm'])}; total {a['total']:.4g} {a['unit'] or '(image units)'}",
             f"segmentation {s['source']}: {_grid_text(s['shape'], s['spacing_mm'])}",
             f"{preview['phase']['title']}: {preview['phase']['basis']}", ""]
    roles = [f"{ROLE_LABELS.get(e['role'], e['role'])} ({e['role_from']})" for e in preview["segments"]]
    width = max(len("segment"), *(len(e["name"]) for e in preview["segments"]))
    rwidth = max(len("role"), *(len(r) for r in roles))
    lines.append(f"{'segment':<{width}}  {'role':<{rwidth}}  {'volume (mL)':>11}  {'in image':>8}")
    for e, role in zip(preview["segments"], roles):
        vol = "" if e["volume_ml"] is None else f"{e['volume_ml']:.1f}"
        inside = "" if e["inside_pct"] is None else f"{e['inside_pct']:.1f} %"
        note = f"  {e['note']}" if e.get("note") else ""
        lines.append(f"{e['name']:<{width}}  {role:<{rwidth}}  {vol:>11}  {inside:>8}{note}".rstrip())
    lines += ["", f"rules ({preview['rules']['name']}):"]
    for t in preview["rules"]["targets"]:
        judged = ", ".join(t["segments"]) if t["segments"] else "N/A: no segment it applies to"
        lines.append(f"  {t['label']} ({t['kind']}): {t['text']} -> {judged}")
    lines += [f"warning: {w}" for w in preview["warnings"]]
    lines += [f"the run would stop: {b}" for b in preview["blocking"]]
    return lines


def check_preview(preview):
    """Raise InputError with the first thing that would stop the run (after the preview is shown)."""
    if preview["blocking"]:
        raise InputError(preview["blocking"][0])
