"""A dry run: what a case would be, without computing it (``tare-dosimetry run --dry-run``).

:func:`preview_case` takes the same inputs as :func:`~.pipeline.run_case` and runs only the
geometry steps (inputs checked, roles resolved, segments placed on the metrics grid): it says which
segments there are, the role each gets (guessed from its name or given), their volumes and the part
inside the activity image, the entries the engine adds (whole liver, derived normal and perfused
normal liver, lungs), the rules the run would choose and which segments each will judge (or why it
will not: a condition on the clinical inputs that is false, an input not given), and what would
stop the run.  No activity, dose or metric is computed.  It is the way to check the roles before a
long batch.
"""

from .dose import activity as act
from .errors import InputError
from .evaluation import conditions as cond
from .evaluation.phase import case_phase
from .evaluation.requirements import check_required_inputs
from .evaluation.roles import ROLE_LABELS
from .evaluation.rules import select_rules
from .params import DosimetryParams
from .pipeline import (
    LUNG_ALL_ENTRY,
    LUNG_LSF_ENTRY,
    build_metrics_grid,
    check_inputs,
    derive_normal_liver,
    derive_perfused_normal,
    resolve_roles,
    whole_liver_step,
)
from .reporting.wording import metric_words

__all__ = ["preview_case", "format_preview", "check_preview"]


def _given_names(names, roles):
    lower = {str(k).lower() for k in (roles or {})}
    return {n for n in names if n in (roles or {}) or n.lower() in lower}


def _volume_ml(sampler, region):
    """Volume of a sampler region (a boolean mask of the metrics grid, or an overlap Region), mL."""
    if region is None:
        return None
    n = region.volume_voxels if hasattr(region, "volume_voxels") else float(region.sum())
    return float(n * sampler.voxel_volume_ml)


def _segment_rows(segmentation, sampler, case_roles, roles):
    given = _given_names(segmentation.names, roles)
    rows = []
    for n in segmentation.names:
        note = "judged as part of the whole liver" if n in case_roles.parts_of_whole else ""
        rows.append({
            "name": n, "role": case_roles.role_of[n], "role_from": "given" if n in given else "guessed",
            "volume_ml": _volume_ml(sampler, sampler.regions.get(n)),
            "inside_pct": 100.0 * sampler.inside_fraction[n] if n in sampler.inside_fraction else None, "note": note,
        })
    return rows


def _added_entries(sampler, case_roles, params):
    """Entries the engine adds to the segments: whole liver, derived normal and perfused normal
    liver (in the order the pipeline adds them), the lungs as one organ."""
    added = [{"name": n, "role": case_roles.role_of[n], "role_from": "derived", "volume_ml": _volume_ml(sampler, sampler.regions.get(n)),
              "inside_pct": None, "note": case_roles.notes.get(n, "")}
             for n in case_roles.used if n in case_roles.notes]
    lungs = case_roles.lung_names
    if case_roles.lung_from == "lsf":
        added.append({"name": LUNG_LSF_ENTRY, "role": "lung", "role_from": "derived", "volume_ml": None, "inside_pct": None,
                      "note": "uniform lung dose from the lung shunt fraction; mass from "
                      + (", ".join(lungs) if lungs else f"the default {params.lung_mass_used_g:g} g")})
    elif len(lungs) > 1:
        added.append({"name": LUNG_ALL_ENTRY, "role": "lung", "role_from": "derived", "volume_ml": None, "inside_pct": None,
                      "note": "union of " + ", ".join(lungs) + " (judged by the lung rules)"})
    return added


def _judged(rule, entries, case_roles):
    """Names of the entries a rule that applies will judge (as :func:`~.evaluation.rules.evaluate_rules` matches them)."""
    if rule.segment:
        return [e["name"] for e in entries if e["name"] == rule.segment and e["role"] != "ignore"]
    lung_union = case_roles.lung_from == "lsf" or len(case_roles.lung_names) > 1
    return [e["name"] for e in entries if e["role"] == rule.role and e["name"] not in case_roles.parts_of_whole
            and not (rule.role == "lung" and lung_union and e["role_from"] != "derived")]


def _rule_targets(ruleset, entries, case_roles, params):
    """[{label, kind, text, segments, status}] for every rule: the segments it will judge, or why it
    will not (its condition on the clinical inputs is false, or an input it needs is not given)."""
    clinical = params.clinical_inputs()
    out = []
    for rule in ruleset.rules:
        outcome, why = cond.check(rule.when, clinical)
        names = _judged(rule, entries, case_roles) if outcome == cond.APPLIES else []
        status = ("applies" if names else "N/A") if outcome == cond.APPLIES else \
            "N/A (incomplete)" if outcome == cond.UNKNOWN else "not applied"
        text = f"{metric_words(rule.metric)} {rule.comparison} {rule.threshold:g} {rule.unit}".strip()
        if rule.when:
            text += f" when {rule.conditions_text}"
        out.append({"label": rule.label, "kind": rule.kind, "text": text, "segments": names, "status": status,
                    "reason": why, "optional": rule.optional})
    return out


def _blocking(activity, params, ruleset, case_roles, what, warnings):
    """What would stop the run later (the dry run computes no activity or dose)."""
    problems = []
    try:
        _reasons, _choices, more = check_required_inputs(params, ruleset, case_roles.lung_from, case_roles.lung_names)
        warnings.extend(more)
    except InputError as exc:
        problems.append(str(exc))
    if params.calibration == "relative" and params.reference_region == "perfused" and not case_roles.by_role.get("perfused"):
        problems.append("reference region 'perfused' needs a segment with role perfused")
    values, n_neg, neg_frac = act.clip_negative(activity)
    try:
        clipped = act.negative_voxels_warning(n_neg, neg_frac, float(values.sum(dtype="float64")), what, allow=params.allow_negative)
        if clipped:
            warnings.append(clipped)
    except InputError as exc:
        problems.append(str(exc))
    return problems


def preview_case(activity, segmentation, *, params=None, roles=None, ct=None, rules=None, inputs=None, what="activity image"):
    """What :func:`~.pipeline.run_case` would do with these inputs, computing no dose (see module docstring).

    Returns
    -------
    dict: ``activity`` and ``segmentation`` (grids), ``segments`` (rows: name, role, role_from
    'guessed'|'given'|'derived', volume_ml, inside_pct, note), ``rules`` (name, how it was chosen,
    and per rule its label, text, status and the segments it will judge), ``phase``, ``warnings``
    and ``blocking`` (what would stop the run).  Raises the InputError/GeometryError the run would
    raise in these steps.
    """
    params = params or DosimetryParams()
    ruleset, rules_note = select_rules(rules, params)
    warnings = list(getattr(segmentation, "notes", []))
    check_inputs(activity, segmentation, ct, what)
    case_roles = resolve_roles(segmentation, roles, params, warnings)
    sampler = build_metrics_grid(segmentation, activity.grid, case_roles, params, what, warnings)
    case_roles = whole_liver_step(segmentation, sampler, case_roles, warnings)
    case_roles = derive_normal_liver(sampler, case_roles, warnings)
    case_roles = derive_perfused_normal(sampler, case_roles, warnings)
    blocking = _blocking(activity, params, ruleset, case_roles, what, warnings)
    entries = _segment_rows(segmentation, sampler, case_roles, roles) + _added_entries(sampler, case_roles, params)
    return {
        "activity": {"what": what, "shape": tuple(activity.grid.shape), "spacing_mm": tuple(activity.grid.spacing_mm),
                     "total": float(activity.array.sum(dtype="float64")), "unit": activity.unit or ""},
        "segmentation": {"source": segmentation.source, "shape": tuple(segmentation.grid.shape),
                         "spacing_mm": tuple(segmentation.grid.spacing_mm)},
        "segments": entries,
        "rules": {"name": ruleset.name, "chosen": rules_note, "targets": _rule_targets(ruleset, entries, case_roles, params)},
        "phase": case_phase(params, inputs),
        "warnings": warnings,
        "blocking": blocking,
    }


def _grid_text(shape, spacing):
    z, y, x = shape
    return f"{x} x {y} x {z} voxels of " + " x ".join(f"{s:.2f}" for s in spacing) + " mm"


def _target_text(target):
    if target["segments"]:
        return ", ".join(target["segments"])
    if target["status"] == "not applied":
        return f"not applied ({target['reason']})"
    if target["status"] == "N/A (incomplete)":
        return f"N/A: {target['reason']}"
    return "N/A: no segment it applies to"


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
    chosen = f"; {preview['rules']['chosen']}" if preview["rules"].get("chosen") else ""
    lines += ["", f"rules ({preview['rules']['name']}{chosen}):"]
    for t in preview["rules"]["targets"]:
        lines.append(f"  {t['label']} ({t['kind']}{', optional' if t.get('optional') else ''}): {t['text']} -> {_target_text(t)}")
    lines += [f"warning: {w}" for w in preview["warnings"]]
    lines += [f"the run would stop: {b}" for b in preview["blocking"]]
    return lines


def check_preview(preview):
    """Raise InputError with the first thing that would stop the run (after the preview is shown)."""
    if preview["blocking"]:
        raise InputError(preview["blocking"][0])
