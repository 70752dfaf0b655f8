"""The activity that meets the targets under the limits, for any planning model.

Every dose metric grows with the administered activity (doses are proportional to it), so each
rule on each compartment it applies to gives one bound: a target (``>=``) the least activity
that reaches it, a limit (``<=``) the largest activity that keeps under it.  Metrics proportional
to activity (means, D_x, max...) are solved in closed form (A = threshold / metric per GBq); the
others (V_x, EUD, BED, the cumulative lung dose) by bisection to 1e-9 relative.  Strict
comparisons (``>``, ``<``) are met with a relative margin of 1e-9.

Strategy ``target`` (default): the least activity that reaches every target, unless that exceeds
the largest safe activity, which then binds.  Strategy ``max-safe``: the largest safe activity.

A target the model cannot evaluate (no compartment with its role, e.g. the perfused-volume target
of the partition model, or a DVH metric of a compartment model) is listed in
``targets_not_judged``, and ``target_reached`` is then never True: ``False`` when a judged target is
missed, else :data:`UNKNOWN` ("unknown").
"""

import math
import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..evaluation.rules import evaluate_rules
from .prescription import is_target

__all__ = ["RuleBound", "ActivityChoice", "rule_bounds", "choose_activity", "STRATEGIES", "A_MIN_GBQ", "A_MAX_GBQ", "UNKNOWN",
           "reached_state", "unjudged_targets"]

STRATEGIES = ("target", "max-safe")
#: ``target_reached`` of a model that reaches every target it can judge but cannot judge them all.
UNKNOWN = "unknown"
A_MIN_GBQ, A_MAX_GBQ = 1e-4, 100.0
_LINEAR = re.compile(r"^(mean_gy|mean_gy_rc_corrected|median_gy|sd_gy|min_gy|max_gy|activity_gbq|d\d+(\.\d+)?_gy|D\d+(\.\d+)?(%|cc|ml)?)$", re.IGNORECASE)
_CONSTANT = {"volume_ml", "mass_g", "tn_ratio", "activity_pct", "recovery_coefficient", "activity_voxels", "equivalent_diameter_mm"}
_MARGIN = 1e-9


#: Dispensing step of a planned activity: the activity to order is a whole number of MBq.
ACTIVITY_STEP_GBQ = 0.001
#: Relative margin kept from the binding rule when the activity is moved to a whole MBq.
ACTIVITY_MARGIN = 1e-6


def activity_to_order_gbq(exact_gbq, binding_is_target, target_gbq=math.nan, limit_gbq=math.inf):
    """The activity to order: ``exact_gbq`` (where the binding rule is met exactly) moved to a whole
    :data:`ACTIVITY_STEP_GBQ` (1 MBq), up when a target binds and down when a limit binds, keeping a
    relative margin of :data:`ACTIVITY_MARGIN`, so that a dose recomputed at the printed activity
    (float32 dose maps, an activity read to the MBq) still meets the binding rule.  Where the move
    would cross the other side's bound the exact activity is kept."""
    if not (math.isfinite(exact_gbq) and exact_gbq > 0):
        return exact_gbq
    if binding_is_target:
        moved = math.ceil(exact_gbq * (1 + ACTIVITY_MARGIN) / ACTIVITY_STEP_GBQ) * ACTIVITY_STEP_GBQ
        return round(moved, 3) if moved <= limit_gbq else exact_gbq
    moved = math.floor(exact_gbq * (1 - ACTIVITY_MARGIN) / ACTIVITY_STEP_GBQ) * ACTIVITY_STEP_GBQ
    return round(moved, 3) if moved > 0 and not moved < target_gbq else exact_gbq


@dataclass
class RuleBound:
    """The activity bound one rule sets on one compartment (``gbq`` inf: never binds / unreachable)."""

    rule: object
    compartment: str
    gbq: float
    target: bool
    note: str = ""

    @property
    def text(self):
        return f"{self.compartment} {self.rule.metric} {self.rule.comparison} {self.rule.threshold:g} {self.rule.unit}".strip()

    def to_dict(self):
        return {"rule": self.rule.label, "compartment": self.compartment, "kind": "target" if self.target else "limit",
                "activity_gbq": self.gbq if math.isfinite(self.gbq) else None, "note": self.note}


def _measure(model, rule, name, activity):
    ev = [e for e in evaluate_rules(_single(rule), model.predict(activity)) if e.segment_name == name]
    return ev[0].measured if ev else float("nan")


def _single(rule):
    from ..evaluation.rules import RuleSet

    return RuleSet("one rule", (rule,))


def _passes(rule, value):
    ops = {">": value > rule.threshold, ">=": value >= rule.threshold, "<": value < rule.threshold, "<=": value <= rule.threshold}
    return ops[rule.comparison]


def _bisect(model, rule, name, target):
    """Least activity passing a target, or largest passing a limit, in [A_MIN_GBQ, A_MAX_GBQ]."""
    lo, hi = A_MIN_GBQ, A_MAX_GBQ
    f_lo, f_hi = _measure(model, rule, name, lo), _measure(model, rule, name, hi)
    if target:
        if _passes(rule, f_lo):
            return lo
        if not _passes(rule, f_hi):
            return math.inf
    else:
        if _passes(rule, f_hi):
            return math.inf
        if not _passes(rule, f_lo):
            return 0.0
    while hi - lo > 1e-9 * hi:
        mid = 0.5 * (lo + hi)
        ok = _passes(rule, _measure(model, rule, name, mid))
        if ok == target:
            hi = mid
        else:
            lo = mid
    return hi if target else lo


def _bound_of(model, rule, name, target):
    metric = rule.metric
    if metric in _CONSTANT:
        ok = _passes(rule, _measure(model, rule, name, 1.0))
        return (A_MIN_GBQ if target else math.inf) if ok else (math.inf if target else 0.0), "does not depend on the activity"
    if _LINEAR.match(metric):
        per_gbq = _measure(model, rule, name, 1.0)
        if not math.isfinite(per_gbq):
            return math.nan, "not evaluable with this model"
        if per_gbq <= 0:
            return math.inf, "no dose in this compartment"
        a = rule.threshold / per_gbq
        strict = rule.comparison in (">", "<")
        return (a * (1 + _MARGIN) if target else a * (1 - _MARGIN)) if strict else a, ""
    if not math.isfinite(_measure(model, rule, name, 1.0)):
        return math.nan, "not evaluable with this model"
    return _bisect(model, rule, name, target), ""


def rule_bounds(model, rules):
    """One :class:`RuleBound` per (rule, compartment it applies to); rules that match no
    compartment of the model, or that the model cannot evaluate (a DVH metric of a compartment
    model), get a bound of NaN with the reason."""
    out = []
    for rule in rules:
        target = is_target(rule)
        names = [e.segment_name for e in evaluate_rules(_single(rule), model.predict(1.0)) if e.segment_name]
        if not names:
            out.append(RuleBound(rule, "", math.nan, target, f"no compartment with role {rule.role or rule.segment} in the {model.name} model"))
            continue
        for name in names:
            gbq, note = _bound_of(model, rule, name, target)
            out.append(RuleBound(rule, name, gbq, target, note))
    return out


@dataclass
class ActivityChoice:
    """The activity of a model and why: the binding rule, whether the targets are reached."""

    activity_gbq: float
    binding_constraint: str
    target_reached: object
    strategy: str
    bounds: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    #: Labels of the targets this model cannot evaluate (no compartment, metric not available).
    targets_not_judged: list = field(default_factory=list)


def reached_state(judged_reached, not_judged):
    """``target_reached`` from whether the judged targets are reached (None: no judged target) and the
    targets that could not be judged: False when one judged target is missed, :data:`UNKNOWN` when some
    target could not be judged, None when there is no target at all, else True."""
    if judged_reached is False:
        return False
    if not_judged:
        return UNKNOWN
    return judged_reached


def unjudged_targets(bounds, missing_compartment=True):
    """Labels (in order, no repeats) of the targets among ``bounds`` that have no usable bound on any
    compartment; ``missing_compartment`` False leaves out those that match no compartment at all
    (a territory without a tumour is not judged on the tumour target)."""
    judged = {id(b.rule) for b in bounds if b.target and not math.isnan(b.gbq)}
    out = []
    for b in bounds:
        label = b.rule.label or b.text
        if not missing_compartment and not b.compartment:
            continue
        if b.target and id(b.rule) not in judged and label not in out:
            out.append(label)
    return out


def choose_activity(model, rules, strategy="target", missing_compartment_unjudged=True):
    """:class:`ActivityChoice` for ``model`` under ``rules`` (targets and limits); a target that
    matches no compartment of the model counts as not judged unless ``missing_compartment_unjudged``
    is False (see :func:`unjudged_targets`)."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    bounds = rule_bounds(model, rules)
    usable = [b for b in bounds if not math.isnan(b.gbq)]
    targets, limits = [b for b in usable if b.target], [b for b in usable if not b.target]
    notes = [f"rule {b.rule.label!r}: {b.note}" for b in bounds if math.isnan(b.gbq)]
    need = max(targets, key=lambda b: b.gbq) if targets else None
    safe = min(limits, key=lambda b: b.gbq) if limits else None
    a_need = need.gbq if need else math.nan
    a_safe = safe.gbq if safe else math.inf
    if strategy == "max-safe" or need is None:
        if safe is None or not math.isfinite(a_safe):
            raise InputError(f"{model.name} model: no limit bounds the activity (give a limit, e.g. --lung-limit-gy or a "
                             "'<' rule), and no target to aim at")
        chosen, binding = a_safe, safe
    elif math.isfinite(a_need) and a_need <= a_safe:
        chosen, binding = a_need, need
    else:
        if not math.isfinite(a_safe):
            raise InputError(f"{model.name} model: the target {need.text} cannot be reached below {A_MAX_GBQ:g} GBq and no limit bounds the activity")
        chosen, binding = a_safe, safe
    if chosen <= 0:
        notes.append(f"limit {binding.text} is exceeded at any activity")
    not_judged = unjudged_targets(bounds, missing_compartment_unjudged)
    reached = None if need is None else bool(math.isfinite(a_need) and chosen >= a_need * (1 - 1e-12))
    return ActivityChoice(chosen, binding.text, reached_state(reached, not_judged), strategy, bounds, notes, not_judged)
