"""A multi-territory plan (plan.json): every territory's activity, the total, the joint lung dose.

``plan.json`` of a multi-territory plan has the single-territory layout with
``models = {"territories": entry}`` (the entry's ``predicted`` and ``evaluations`` are those of
all injections together at their activities; ``activities_gbq`` {territory: GBq}),
``recommended = {"model": "territories", "activity_gbq": total, "activities_gbq", "binding_constraint"}``
and ``territories`` (:func:`.territories.plan_territories`'s summary: per territory its
activity, binding constraint, LSF, lung dose, predicted metrics; the total activity and lung dose;
the joint limits).  The what-if table scales every territory's activity together.
"""

from ..evaluation.rules import RuleSet
from .plan import Plan, _default_what_if, model_entry, prescription_warnings, what_if_rows
from .prescription import Prescription
from .search import UNKNOWN
from .territories import plan_territories
from .vials import glass_vial_schedule

__all__ = ["make_territory_plan", "TERRITORY_MODEL_NAME"]

TERRITORY_MODEL_NAME = "territories"


def _binding(summary):
    if summary["binding_constraint"]:
        return summary["binding_constraint"]
    return "; ".join(f"{n}: {e['binding_constraint']}" for n, e in summary["territories"].items())


def _all_reached(summary):
    """The plan's ``target_reached`` from the territories': False if one is False, "unknown" if one is, None if none has a target."""
    reached = [e["target_reached"] for e in summary["territories"].values() if e["target_reached"] is not None]
    if not reached:
        return None
    if False in reached:
        return False
    return UNKNOWN if UNKNOWN in reached else True


def make_territory_plan(inputs, params, prescription, territories, *, device, strategy="target", what_if_gbq=None,
                        vial_calibration=None):
    """:class:`~.plan.Plan` of several territories (list of :class:`~.territories.Territory`); the
    plan's prescription holds the territories' own targets too."""
    model, summary = plan_territories(territories, prescription.rules.rules, strategy=strategy,
                                      prior_lung_dose_gy=params.prior_lung_dose_term_gy)
    own = tuple(r for t in territories for r in t.rules)
    if own:
        rs, cs = prescription.rules, prescription.case_rules
        prescription = Prescription(RuleSet(rs.name, tuple(rs.rules) + own, rs.description, scope=rs.scope, origin=rs.origin),
                                    prescription.origin + " and per-territory targets", prescription.not_applied,
                                    RuleSet(cs.name, tuple(cs.rules) + own, cs.description, scope=cs.scope, origin=cs.origin),
                                    prescription.assumptions)
    total = summary["total_activity_gbq"]
    binding = _binding(summary)
    entry = model_entry(model, prescription, activity_gbq=total, binding=binding)
    not_judged = [f"{n}: {label}" for n, e in summary["territories"].items() for label in e.get("targets_not_judged", [])]
    entry.update(target_reached=_all_reached(summary), targets_not_judged=not_judged, strategy=strategy,
                 activities_gbq=summary["activities_gbq"], notes=entry["notes"] + summary["notes"])
    recommended = {"model": TERRITORY_MODEL_NAME, "activity_gbq": total, "activities_gbq": summary["activities_gbq"],
                   "binding_constraint": binding, "target_reached": entry["target_reached"], "targets_not_judged": not_judged}
    if device == "glass":
        for e in summary["territories"].values():
            if e["activity_gbq"] > 0:
                e["vials"] = glass_vial_schedule(e["activity_gbq"], params.residual_fraction_used, vial_calibration, half_life_h=params.half_life_h)
    plan = Plan(device, prescription, inputs, {TERRITORY_MODEL_NAME: entry}, recommended, params=params,
                skipped={}, territories=summary)
    plan.what_if = what_if_rows(model, prescription, what_if_gbq or _default_what_if(total))
    plan.warnings += list(inputs.lsf.warnings) if inputs is not None and inputs.lsf else []
    plan.warnings += prescription_warnings(prescription)
    plan.territory_model = model
    return plan
