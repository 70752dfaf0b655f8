"""A treatment plan: every model the inputs allow, the activity each gives and why, the
recommended activity, a what-if table, and the activity accounting (``plan.json``).

``plan.json``::

    {"models": {NAME: {"activity_gbq", "binding_constraint", "target_reached", "predicted":
                       {compartment or segment: {metric: value}}, "evaluations": [...], "bounds": [...], "notes": [...]}},
     "recommended": {"model", "activity_gbq", "binding_constraint"}, "prescription", "inputs",
     "what_if", "vials", "parameters", "warnings"}

Models: ``voxel`` (MAA dose map per GBq; images only), ``partition`` (tumour, normal liver, lung;
needs tumour volume and T/N), ``mird`` (perfused volume; needs a target on role perfused, ``--target-gy``), ``bsa`` (resin;
needs height and weight).  The recommended model is, among those that gave an activity, one that
judges the most targets (a model that cannot evaluate a target, e.g. the partition model and a
perfused-volume ``--target-gy``, is never recommended over one that can), the first of voxel,
partition, mird, bsa among equals.  Each entry lists its ``targets_not_judged``; its
``target_reached`` is then "unknown" (or false), never true.
"""

import dataclasses
import math
from dataclasses import dataclass, field

from .. import physics
from ..errors import InputError
from ..evaluation.results import json_number
from ..evaluation.rules import evaluate_rules
from ..evaluation.status import overall_status
from ..version import __version__
from .bsa import EMPIRICAL_NOTE, bsa_activity_gbq
from .models import MirdModel, PartitionModel, shared_model_arguments
from .prescription import NO_INDICATION_NOTE
from .search import activity_to_order_gbq, choose_activity, reached_state

__all__ = ["Plan", "json_clean", "MODEL_NAMES", "make_plan", "closed_form_models", "model_entry", "what_if_rows", "RECOMMENDATION_ORDER",
           "prescription_warnings", "recommended_model", "unjudged_target_warnings", "evaluate_predicted"]

MODEL_NAMES = ("mird", "partition", "bsa", "voxel")
RECOMMENDATION_ORDER = ("voxel", "partition", "mird", "bsa")


@dataclass
class Plan:
    """Everything a plan decided, and from what (``to_dict`` is plan.json)."""

    device: str
    prescription: object
    inputs: object
    models: dict
    recommended: dict
    what_if: list = field(default_factory=list)
    vials: list = field(default_factory=list)
    params: object = None
    warnings: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    territories: dict = field(default_factory=dict)
    voxel_model: object = None
    territory_model: object = None

    def to_dict(self):
        return json_clean({
            "software": {"name": "TAREDosimetry", "version": __version__},
            "device": self.device,
            "prescription": self.prescription.to_dict(),
            "inputs": self.inputs.to_dict() if self.inputs is not None else None,
            "models": self.models,
            "skipped_models": self.skipped,
            "recommended": self.recommended,
            "what_if": self.what_if,
            "vials": self.vials,
            "territories": self.territories,
            "parameters": self.params.to_dict() if self.params is not None else None,
            "constants": {"k_gy_kg_per_gbq": self.params.k_gy_kg_per_gbq if self.params else physics.K_GY_KG_PER_GBQ,
                          "y90_half_life_h": self.params.half_life_h if self.params else physics.Y90_HALF_LIFE_H},
            "warnings": list(self.warnings),
        })


def json_clean(v):
    """A JSON-ready copy: numpy numbers as Python ones, NaN and inf as None."""
    if isinstance(v, dict):
        return {str(k): json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return json_number(v)


def _judged_from_evaluations(evaluations):
    """(judged targets reached: True/False/None, labels of the targets every evaluation left N/A)."""
    tgt = [e for e in evaluations if e.rule.comparison in (">", ">=")]
    judged = [e for e in tgt if e.status != "N/A"]
    labels = {e.rule.label or e.rule.text for e in judged}
    not_judged = []
    for e in tgt:
        label = e.rule.label or e.rule.text
        if e.status == "N/A" and label not in labels and label not in not_judged:
            not_judged.append(label)
    return (all(e.status == "PASS" for e in judged) if judged else None), not_judged


def model_entry(model, prescription, strategy="target", activity_gbq=None, binding=None):
    """plan.json entry of one model: its activity (searched, or the given ``activity_gbq``), the
    binding constraint, the predicted metrics and the rule evaluations at that activity, and the
    targets it could not judge."""
    if activity_gbq is None:
        choice = choose_activity(model, prescription.rules.rules, strategy)
        activity_gbq, binding, reached, bounds, notes = (choice.activity_gbq, choice.binding_constraint, choice.target_reached,
                                                         [b.to_dict() for b in choice.bounds], choice.notes)
        not_judged = list(choice.targets_not_judged)
    else:
        reached, bounds, notes, not_judged = None, [], [], []
    predicted = model.predict(activity_gbq) if activity_gbq and activity_gbq > 0 else []
    evaluations = evaluate_predicted(prescription.rules, predicted) if predicted else []
    if not bounds and evaluations:  # an activity given (BSA): judged on the evaluations at that activity
        judged_reached, not_judged = _judged_from_evaluations(evaluations)
        reached = reached_state(judged_reached, not_judged)
    return {
        "activity_gbq": activity_gbq,
        "binding_constraint": binding,
        "target_reached": reached,
        "targets_not_judged": not_judged,
        "strategy": strategy,
        "predicted": {c.name: {"role": c.role, **{k: v for k, v in c.metrics.items()}} for c in predicted},
        "evaluations": [e.to_dict() for e in evaluations],
        "bounds": bounds,
        "notes": list(getattr(model, "notes", [])) + notes,
    }


def evaluate_predicted(ruleset, compartments):
    """Rule evaluations of predicted compartments; an N/A on a compartment whose value is not known
    (``Compartment.missing``, e.g. a joint sum over territories that cannot be made exact) says why."""
    missing = {c.name: c.missing for c in compartments if getattr(c, "missing", "")}
    return [dataclasses.replace(e, reason=f"{e.reason}: {missing[e.segment_name]}") if e.status == "N/A" and e.segment_name in missing
            else e for e in evaluate_rules(ruleset, compartments)]


def recommended_model(entries):
    """Name of the model to recommend among ``entries`` {name: plan.json entry}: of those with an
    activity, the one with the fewest targets it could not judge, the first of
    :data:`RECOMMENDATION_ORDER` among equals; None when no model gave an activity."""
    ranked = [(len(entries[n].get("targets_not_judged") or []), i, n) for i, n in enumerate(RECOMMENDATION_ORDER)
              if n in entries and entries[n]["activity_gbq"]]
    return min(ranked)[2] if ranked else None


def _has_perfused_target(prescription):
    return any(r.role == "perfused" and r.comparison in (">", ">=") for r in prescription.rules.rules)


def closed_form_models(inputs, params, prescription, which, skipped):
    common = shared_model_arguments(inputs, params)
    models = {}
    if "mird" in which:
        if not _has_perfused_target(prescription):
            skipped["mird"] = "no target for the perfused volume (--target-gy, the MIRD mean dose to the perfused volume)"
        else:
            models["mird"] = MirdModel(inputs.mass_kg("perfused"), **common)
    if "partition" in which:
        if inputs.tumor_volume_ml is None or inputs.tn_ratio is None:
            skipped["partition"] = "needs the tumour volume and the T/N ratio (--tumor-volume-ml, --tn-ratio, or tumour and normal-liver segments)"
        else:
            models["partition"] = PartitionModel(inputs.mass_kg("tumor"), inputs.mass_kg("normal"), inputs.tn_ratio,
                                                 whole_normal_mass_kg=inputs.mass_kg("whole_normal"), **common)
    return models


def _bsa_entry(inputs, params, prescription, device):
    if device != "resin":
        return None, "the BSA method is for resin microspheres (--device resin)"
    if inputs.height_cm is None or inputs.weight_kg is None:
        return None, "needs --height-cm and --weight-kg"
    b = bsa_activity_gbq(inputs.height_cm, inputs.weight_kg, inputs.tumor_volume_ml or 0.0, inputs.liver_volume_ml, inputs.lsf.value,
                         perfused_volume_ml=inputs.perfused_volume_ml if inputs.perfused_volume_ml < inputs.liver_volume_ml else None)
    mird = MirdModel(inputs.mass_kg("perfused"), name="bsa", **shared_model_arguments(inputs, params))
    binding = "BSA formula (empirical)" if b["activity_gbq"] is not None else b["steps"][-1]
    entry = model_entry(mird, prescription, activity_gbq=b["activity_gbq"], binding=binding)
    entry["notes"] = [EMPIRICAL_NOTE] + b["steps"]
    entry["bsa_m2"] = b["bsa_m2"]
    return entry, None


def what_if_rows(model, prescription, activities_gbq):
    """Rows of the what-if table: activity -> predicted mean (and D70 where known) per compartment, and
    the status of the rules there (:func:`~TAREDosimetryLib.evaluation.status.overall_status`: FAIL,
    INCOMPLETE when a rule could not be judged, PASS)."""
    rows = []
    for a in activities_gbq:
        comps = model.predict(a)
        ev = evaluate_predicted(prescription.rules, comps)
        rows.append({"activity_gbq": a, "status": overall_status(ev),
                     "predicted": {c.name: {k: c.metrics.get(k) for k in ("mean_gy", "d70_gy", "v100_pct") if k in c.metrics}
                                   for c in comps},
                     "failed_rules": sorted({e.rule.label for e in ev if e.status == "FAIL"}),
                     "not_evaluated_rules": sorted({e.rule.label for e in ev if e.makes_incomplete})})
    return rows


def make_plan(inputs, params, prescription, *, device, which=MODEL_NAMES, strategy="target", voxel_model=None, what_if_gbq=None):
    """Plan every model in ``which`` that the inputs allow (see module docstring); returns a :class:`Plan`."""
    unknown = set(which) - set(MODEL_NAMES)
    if unknown:
        raise InputError(f"unknown planning model(s) {', '.join(sorted(unknown))}; models: {', '.join(MODEL_NAMES)}, all")
    skipped, entries, objects = {}, {}, {}
    objects.update(closed_form_models(inputs, params, prescription, which, skipped))
    if "voxel" in which:
        if voxel_model is None:
            skipped["voxel"] = "needs the MAA SPECT and segments (--spect, --segmentation)"
        else:
            objects["voxel"] = voxel_model
    for name, m in objects.items():
        try:
            entries[name] = model_entry(m, prescription, strategy)
        except InputError as exc:
            skipped[name] = str(exc)
    if "bsa" in which:
        entry, why = _bsa_entry(inputs, params, prescription, device)
        if entry is None:
            skipped["bsa"] = why
        else:
            entries["bsa"] = entry
    ordered = {n: entries[n] for n in MODEL_NAMES if n in entries}
    rec = recommended_model(ordered)
    if rec is None:
        raise InputError("no planning model could give an activity: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    recommended = {"model": rec, "activity_gbq": ordered[rec]["activity_gbq"], "activity_to_order_gbq": _to_order(ordered[rec]),
                   "binding_constraint": ordered[rec]["binding_constraint"],
                   "target_reached": ordered[rec]["target_reached"], "targets_not_judged": list(ordered[rec]["targets_not_judged"])}
    plan = Plan(device, prescription, inputs, ordered, recommended, params=params, skipped=skipped, voxel_model=voxel_model)
    model_for_table = objects.get(rec) or MirdModel(inputs.mass_kg("perfused"), **shared_model_arguments(inputs, params))
    a = recommended["activity_gbq"]
    plan.what_if = what_if_rows(model_for_table, prescription, what_if_gbq or _default_what_if(a))
    plan.warnings += list(inputs.lsf.warnings) if inputs.lsf else []
    plan.warnings += prescription_warnings(prescription)
    plan.warnings += unjudged_target_warnings(ordered, rec)
    return plan


def _to_order(entry):
    """The recommended activity as a whole MBq that still meets its binding rule (see
    :func:`.search.activity_to_order_gbq`)."""
    a = entry["activity_gbq"]
    bounds = entry.get("bounds") or []
    targets = [b["activity_gbq"] for b in bounds if b["kind"] == "target" and b["activity_gbq"] is not None]
    limits = [b["activity_gbq"] for b in bounds if b["kind"] == "limit" and b["activity_gbq"] is not None]
    if a is None or not (targets or limits):
        return a
    need = max(targets) if targets else math.nan
    binding_is_target = bool(targets) and math.isclose(a, need, rel_tol=1e-9)
    return activity_to_order_gbq(a, binding_is_target, need, min(limits) if limits else math.inf)


def unjudged_target_warnings(entries, rec):
    """Warnings on each target the recommended model cannot evaluate, naming the models that can."""
    out = []
    for label in entries[rec].get("targets_not_judged") or []:
        others = [f"{n} {e['activity_gbq']:.3f} GBq" for n, e in entries.items()
                  if n != rec and e["activity_gbq"] and label not in (e.get("targets_not_judged") or [])]
        out.append(f"target {label!r} is not judged by the recommended {rec} model (it has no compartment or metric for it)"
                   + (f"; judged by: {', '.join(others)}" if others else "; no model judges it"))
    return out


def prescription_warnings(prescription):
    """What the plan says about its prescription: rules it could not use (a clinical input not given),
    the indication assumed."""
    out = list(getattr(prescription, "warnings", []))
    if NO_INDICATION_NOTE in prescription.origin:
        out.append(NO_INDICATION_NOTE)
    return out


def _default_what_if(a):
    """The recommended activity and +-10, 20, 30 % around it."""
    steps = [a * f for f in (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)]
    return sorted(x for x in steps if x > 0 and math.isfinite(x))  # not rounded: the plan's own activity must read as planned
