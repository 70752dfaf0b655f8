"""Multi-compartment planning: several perfused territories, each its own injection and activity.

A treatment may inject two or more arterial territories (e.g. the right lobe and segment 4), each
with its own catheter position, MAA distribution, lung shunt and activity.  Each territory has a
model of its own injection (MIRD or partition in calculator mode; from images, the MAA counts of
the territory's segment, each voxel read by its centre, as a voxel model), and its activity is
found as in a single-territory plan, from the targets and the limits of its own compartments.

Organs that span territories (lungs, whole liver, whole normal liver: :data:`JOINT_ROLES`) receive
from every injection.  Their mean doses add up (every injection's mean is energy over the same
organ mass), so the limits on their means are checked on the sum:
``D_lung = sum_t K A_t (1 - R) LSF_t / M_lung`` (plus earlier treatments for the cumulative dose);
a territory without tumour puts all its liver activity in the whole normal liver.  A sum that
cannot be made exact (a territory's model lacks the organ, or its share of it is unknown, e.g. a
tumour volume without T/N) is NaN with the reason: its rule is N/A, never judged on a partial sum.
When a joint limit is exceeded, every territory's activity is scaled down by the same factor
``f = (limit - prior) / (sum - prior)``, and that joint limit becomes the binding constraint of
the plan (a stated policy: the user may instead lower one territory's activity and re-check with
the what-if table).  Joint limits on other metrics (a lung V20, a whole-liver D70) are not
additive and are not evaluated across territories (said in the notes).
"""

import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..evaluation.rules import Rule, RuleSet
from .compartments import check_fraction, check_positive
from .models import Compartment
from .prescription import is_target
from .search import choose_activity, rule_bounds

__all__ = ["JOINT_ROLES", "Territory", "TerritoryModel", "TerritorySpec", "parse_territory", "territory_rules", "plan_territories",
           "ADDITIVE_METRICS", "territory_rule"]

#: Roles of organs that receive activity from every territory (their mean doses add up).
JOINT_ROLES = ("lung", "liver", "normal_liver")
ADDITIVE_METRICS = ("mean_gy", "activity_gbq")
_KEYS = {"perfused_ml": "perfused_volume_ml", "tumor_ml": "tumor_volume_ml", "tumour_ml": "tumor_volume_ml", "tn": "tn_ratio",
         "tn_ratio": "tn_ratio", "lsf": "lung_shunt_fraction", "target_gy": "target_gy"}


@dataclass
class TerritorySpec:
    """A territory as the user gave it: its name (a segment name from images) and optional values."""

    name: str
    perfused_volume_ml: float = None
    tumor_volume_ml: float = None
    tn_ratio: float = None
    lung_shunt_fraction: float = None
    target_gy: float = None


def parse_territory(text):
    """A :class:`TerritorySpec` from ``"NAME"`` or ``"NAME: key=value, key=value"``.

    Keys: perfused_ml, tumor_ml, tn, lsf, target_gy (the MIRD mean-dose target of this territory's
    perfused volume, e.g. 400 Gy for a segmentectomy next to a lobar treatment)."""
    name, _, rest = str(text).partition(":")
    name = name.strip()
    if not name:
        raise InputError(f"--territory {text!r}: expected 'NAME' or 'NAME: perfused_ml=..., tumor_ml=..., tn=..., lsf=..., target_gy=...'")
    values = {}
    for item in (p for p in re.split(r"[,;]", rest) if p.strip()):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in _KEYS:
            raise InputError(f"--territory {text!r}: unknown item {item.strip()!r}; keys: perfused_ml, tumor_ml, tn, lsf, target_gy")
        try:
            values[_KEYS[key]] = float(val)
        except ValueError:
            raise InputError(f"--territory {text!r}: {key} must be a number, got {val.strip()!r}") from None
    spec = TerritorySpec(name, **values)
    for k in ("perfused_volume_ml", "tumor_volume_ml", "tn_ratio", "target_gy"):
        if getattr(spec, k) is not None:
            check_positive(f"--territory {name!r} {k}", getattr(spec, k))
    if spec.lung_shunt_fraction is not None:
        check_fraction(f"--territory {name!r} lsf", spec.lung_shunt_fraction)
    return spec


@dataclass
class Territory:
    """One injection: its name, its model (``predict(activity_gbq)`` -> compartments of this
    injection, joint organs included), its lung shunt fraction and its own extra rules."""

    name: str
    model: object
    lsf: float
    rules: tuple = ()
    notes: list = field(default_factory=list)


def _joint(c):
    return c.role in JOINT_ROLES


def _sum_joint(joint, c, prior_lung_gy):
    """Add compartment ``c`` of one injection into ``joint`` {role: Compartment} (additive metrics only;
    a NaN contribution makes the sum NaN, with the contributor's reason in ``missing``)."""
    if c.role not in joint:
        kept = {k: v for k, v in c.metrics.items() if k in ("mass_g", "volume_ml")}
        joint[c.role] = Compartment(c.name, c.role, dict(kept, mean_gy=0.0, activity_gbq=0.0), None, c.rules_by_role,
                                    "sum of every territory's injection")
    j = joint[c.role]
    for k in ADDITIVE_METRICS:
        if c.metrics.get(k) is not None:
            j.metrics[k] = j.metrics.get(k, 0.0) + c.metrics[k]
    if c.missing and c.missing not in j.missing:
        j.missing = "; ".join(x for x in (j.missing, c.missing) if x)
    if c.role == "lung":
        j.metrics["cumulative_mean_gy"] = j.metrics["mean_gy"] + prior_lung_gy


def _not_summable(joint, roles_of_territory):
    """Joint organs that only some territories' models hold: their sums would miss the others'
    share (underestimated), so they are made NaN with the reason (their rules are then N/A)."""
    for role, comp in joint.items():
        have = [n for n, roles in roles_of_territory.items() if role in roles]
        if len(have) < len(roles_of_territory):
            lacking = [n for n in roles_of_territory if n not in have]
            for k in ADDITIVE_METRICS + ("cumulative_mean_gy",):
                if k in comp.metrics:
                    comp.metrics[k] = float("nan")
            comp.missing = "; ".join(x for x in (comp.missing, f"the {role} dose of territory {', '.join(lacking)} is not modelled "
                                                 f"(its model has no {role} compartment), so the sum over territories is not known") if x)


class TerritoryModel:
    """Every territory at once; ``predict(total)`` splits ``total`` in the proportions of ``shares``.

    Compartments of one territory keep their names, prefixed with the territory's name when two
    territories have compartments of one name (closed-form models: 'right lobe: tumour').  The joint
    organs (:data:`JOINT_ROLES`) appear once, their means summed over the injections.
    """

    def __init__(self, territories, shares, prior_lung_dose_gy=0.0, name="territories"):
        self.territories = list(territories)
        total = sum(shares[t.name] for t in self.territories)
        if not total > 0:
            raise InputError("territory activities must add up to a positive activity")
        self.shares = {t.name: shares[t.name] / total for t in self.territories}
        self.prior_lung_dose_gy = float(prior_lung_dose_gy)
        self.name = name
        self.notes = [n for t in self.territories for n in t.notes]

    def predict_split(self, activities):
        """Compartments at the activities {territory: GBq}; a joint organ's sum that cannot be made
        exact (a territory's model lacks it, or its share is not known) has NaN metrics and says why
        in ``missing``."""
        per, joint, roles_of = [], {}, {}
        for t in self.territories:
            a = float(activities[t.name])
            comps = t.model.predict(a) if a > 0 else _zero(t.model.predict(1.0))
            roles_of[t.name] = {c.role for c in comps}
            for c in comps:
                if _joint(c):
                    _sum_joint(joint, c, self.prior_lung_dose_gy)
                else:
                    per.append((t.name, c))
        _not_summable(joint, roles_of)
        names = [c.name for _, c in per]
        out = []
        for tname, c in per:
            clash = names.count(c.name) > 1 and c.name != tname
            out.append(Compartment(f"{tname}: {c.name}", c.role, c.metrics, c.dvh, c.rules_by_role, c.note) if clash else c)
        return out + list(joint.values())

    def predict(self, activity_gbq):
        return self.predict_split({n: activity_gbq * s for n, s in self.shares.items()})


def _zero(comps):
    return [Compartment(c.name, c.role, {k: (0.0 if k in ("mean_gy", "activity_gbq") else v) for k, v in c.metrics.items()
                                         if k in ("mean_gy", "activity_gbq", "mass_g", "volume_ml")}, None, c.rules_by_role, c.note,
                        c.missing)
            for c in comps]


def territory_rules(rules, territory):
    """The rules of one territory's own search: the rules of its compartments (its own target on the
    perfused volume replacing the common one), its extra rules, and the joint organs' limits on its
    own share (a necessary condition; their sum is checked after)."""
    own = [r for r in rules if r.role not in JOINT_ROLES or not is_target(r)]
    if any(r.segment == territory.name and is_target(r) for r in territory.rules):
        own = [r for r in own if not (r.role == "perfused" and is_target(r))]
    return own + list(territory.rules)


def _joint_limits(rules):
    """(additive joint limits, notes on joint rules that cannot be evaluated across territories)."""
    limits, notes = [], []
    for r in rules:
        if r.role not in JOINT_ROLES or is_target(r):
            continue
        if r.metric in ("mean_gy", "cumulative_mean_gy"):
            limits.append(r)
        else:
            notes.append(f"rule {r.label!r} ({r.metric}) is not additive over territories and is not evaluated on their sum")
    return limits, notes


def _joint_comp(model, activities, rule):
    return next((c for c in model.predict_split(activities) if c.role == rule.role), None)


def _joint_value(model, activities, rule):
    """The joint organ's value of ``rule`` (None: no such organ; NaN: its sum is not known)."""
    comp = _joint_comp(model, activities, rule)
    return None if comp is None else comp.metrics.get(rule.metric)


def _joint_scale(model, activities, limits):
    """(scale <= 1 meeting every additive joint limit, the binding rule or None, joint value per rule).
    A limit whose sum is not known (NaN) cannot bind: it is left N/A (said in the evaluations)."""
    scale, binding, values = 1.0, None, {}
    for r in limits:
        v = _joint_value(model, activities, r)
        values[r.label] = v
        if v is None or v != v:
            continue
        prior = model.prior_lung_dose_gy if r.metric == "cumulative_mean_gy" else 0.0
        strict = r.comparison == "<"
        ok = v < r.threshold if strict else v <= r.threshold
        if ok:
            continue
        f = max(0.0, (r.threshold - prior) / (v - prior)) * ((1 - 1e-9) if strict else 1.0) if v > prior else 0.0
        if f < scale:
            scale, binding = f, r
    return scale, binding, values


def _rule_text(rule, suffix=""):
    who = rule.segment or rule.role
    return f"{who} {rule.metric} {rule.comparison} {rule.threshold:g} {rule.unit}{suffix}".strip()


def _territory_choice(territory, rules, strategy):
    """The ActivityChoice of one territory's own search; InputError naming the territory."""
    if strategy == "target" and not any(b.target and b.gbq == b.gbq for b in rule_bounds(territory.model, rules)):
        raise InputError(f"territory {territory.name!r}: no target applies to its compartments (no tumour lies in it?): give it its "
                         f"own, e.g. --territory '{territory.name}: target_gy=120' (MIRD mean dose of the territory)")
    try:
        return choose_activity(territory.model, RuleSet(f"territory {territory.name}", tuple(rules)).rules, strategy,
                               missing_compartment_unjudged=False)  # a territory is judged on the compartments it has
    except InputError as exc:
        raise InputError(f"territory {territory.name!r}: {exc}") from None


def plan_territories(territories, rules, *, strategy="target", prior_lung_dose_gy=0.0):
    """Activities of every territory and of the whole treatment.

    Parameters
    ----------
    territories : list of :class:`Territory` (names unique).
    rules : sequence of Rule (the prescription's targets and limits).
    strategy : 'target' or 'max-safe' (see :mod:`.search`), for each territory's own search.

    Returns
    -------
    (TerritoryModel at the chosen split, dict: ``territories`` {name: {activity_gbq,
    binding_constraint, target_reached, lung_shunt_fraction, lung_mean_gy, bounds, notes}},
    ``total_activity_gbq``, ``total_lung_mean_gy``, ``lung_cumulative_mean_gy``,
    ``binding_constraint`` (the joint limit that scaled every activity, or None), ``scale``,
    ``joint_limits``, ``notes``).
    """
    names = [t.name for t in territories]
    if len(territories) < 2 or len(set(names)) != len(names):
        raise InputError(f"a multi-territory plan needs two or more territories with distinct names, got {names}")
    rules = list(rules)
    chosen, per = {}, {}
    for t in territories:
        c = _territory_choice(t, territory_rules(rules, t), strategy)
        chosen[t.name] = c.activity_gbq
        per[t.name] = {"activity_gbq": c.activity_gbq, "binding_constraint": c.binding_constraint, "target_reached": c.target_reached,
                       "targets_not_judged": list(c.targets_not_judged), "lung_shunt_fraction": t.lsf,
                       "bounds": [b.to_dict() for b in c.bounds], "notes": list(c.notes)}
    model = TerritoryModel(territories, chosen, prior_lung_dose_gy)
    limits, notes = _joint_limits(rules)
    scale, binding, values = _joint_scale(model, chosen, limits)
    if scale < 1.0:
        text = _rule_text(binding, " (sum of all territories)")
        for name, e in per.items():
            e["activity_gbq"] = chosen[name] * scale
            e["binding_constraint"] = text
            e["target_reached"] = False if e["target_reached"] is not None else None
        notes.append(f"every territory's activity scaled by {scale:.4f} to keep {text}")
    final = {n: e["activity_gbq"] for n, e in per.items()}
    return model, _summary(model, territories, per, final, scale, binding, limits, notes)


def _partial_joint_notes(model, activities, limits):
    """Notes on the joint limits that are not evaluated because their sum over territories is not known."""
    notes = []
    for r in limits:
        comp = _joint_comp(model, activities, r)
        if comp is not None and comp.missing and comp.metrics.get(r.metric) != comp.metrics.get(r.metric):
            notes.append(f"rule {r.label!r} is not evaluated (N/A): {comp.missing}")
    return notes


def _summary(model, territories, per, final, scale, binding, limits, notes):
    notes = notes + _partial_joint_notes(model, final, limits)
    for t in territories:
        comps = t.model.predict(final[t.name]) if final[t.name] > 0 else []
        lung = next((c for c in comps if c.role == "lung"), None)
        per[t.name]["lung_mean_gy"] = lung.metrics["mean_gy"] if lung else None
        per[t.name]["predicted"] = {c.name: {"role": c.role, **c.metrics} for c in comps}
    joint = {c.role: c.metrics for c in model.predict_split(final) if c.role in JOINT_ROLES}
    lung = joint.get("lung") or {}
    total = sum(final.values())
    return {"territories": per, "total_activity_gbq": total, "activities_gbq": dict(final),
            "total_lung_mean_gy": lung.get("mean_gy"), "lung_cumulative_mean_gy": lung.get("cumulative_mean_gy"),
            "binding_constraint": _rule_text(binding, " (sum of all territories)") if binding is not None else None,
            "scale": scale, "joint_limits": [_joint_limit_entry(model, final, r) for r in limits if total > 0],
            "notes": notes}


def _joint_limit_entry(model, activities, rule):
    comp = _joint_comp(model, activities, rule)
    value = None if comp is None else comp.metrics.get(rule.metric)
    entry = {"rule": rule.label, "text": _rule_text(rule), "value": value}
    if comp is None:
        entry["status"], entry["reason"] = "N/A", f"no territory's model has a {rule.role} compartment"
    elif value != value:
        entry["status"], entry["reason"] = "N/A", comp.missing
    else:
        ok = {"<": value < rule.threshold, "<=": value <= rule.threshold}[rule.comparison]
        entry["status"] = "PASS" if ok else "FAIL"
    return entry


def territory_rule(territory_name, target_gy):
    """The MIRD target of one territory's perfused volume (its own ``target_gy``)."""
    return Rule(segment=territory_name, metric="mean_gy", comparison=">=", threshold=float(target_gy),
                label=f"{territory_name}: perfused volume mean dose (MIRD target)", source="--territory")

