"""The prescription of a plan: targets to reach and limits not to exceed, as threshold rules.

Defaults come from the threshold preset of the device and indication (stated in the plan; without
an indication the HCC preset of the device, said in the plan's origin and warnings).  The preset's
conditional rules (``when``: treatment approach, bilirubin, hepatic reserve) are selected for the
case's clinical inputs: a rule whose condition does not hold is left out, and one whose clinical
input is not given is left out of the search and listed in ``not_applied`` with what to give
(a plan never aims at a rule it could not judge).  The case the plan writes (the MAA case at the
recommended activity) is judged by ``case_rules`` instead: every rule of the preset with its
condition, as ``run`` would judge the same inputs (a rule whose clinical input is not given is N/A
and makes the case INCOMPLETE), with the same command-line replacements and additions.
``--target-gy`` (MIRD: mean dose to the perfused volume), ``--tumor-target-gy``,
``--normal-liver-limit-gy`` and ``--lung-limit-gy`` replace the matching default rules that
apply to the case (in ``case_rules`` a conditional rule that does not apply, or whose clinical
input is not given, stays: N/A there, as in ``run``), and
rules given as text (``"tumor d70_gy>=100"``, ``"normal_liver mean_gy<40"``,
``"segment=Tumor 1 mean_gy>=150"``) are added.  A rule with ``>``/``>=`` is a target (it sets a
lower bound on the activity), one with ``<``/``<=`` a limit (an upper bound).
"""

import dataclasses
import re
from dataclasses import dataclass

from ..errors import InputError
from ..evaluation import conditions as cond
from ..evaluation.roles import canonical_role
from ..evaluation.rules import PRESETS, Rule, RuleSet, load_rules

__all__ = ["Prescription", "DEFAULT_PRESET_BY_DEVICE", "NO_INDICATION_NOTE", "default_preset_name", "parse_rule_text", "build_prescription",
           "is_target", "select_case_rules"]

#: Preset whose rules are the default prescription, by (device, indication); indication None = HCC
#: (stated in the plan).  Indication 'other' has no preset: give --thresholds.
DEFAULT_PRESET_BY_DEVICE = {
    ("glass", None): "hcc-glass", ("glass", "hcc"): "hcc-glass", ("glass", "icc"): "icc-glass", ("glass", "mcrc"): "mcrc-glass",
    ("resin", None): "hcc-resin", ("resin", "hcc"): "hcc-resin", ("resin", "icc"): "icc-resin", ("resin", "mcrc"): "mcrc-resin",
    ("glass", "breast"): "breast-liver-metastases", ("resin", "breast"): "breast-liver-metastases",
}
#: Said in the plan when the default preset was chosen without an indication.
NO_INDICATION_NOTE = "indication not given: the HCC preset of the microspheres is assumed (give --indication)"
_RULE_RX = re.compile(r"^\s*(?P<who>.+?)\s+(?P<metric>[A-Za-z][\w.]*)\s*(?P<op>>=|<=|>|<)\s*(?P<value>[-+]?\d+(\.\d+)?)\s*(?P<unit>Gy|%|mL|ml)?\s*$")


def is_target(rule):
    """True for a rule that activity must reach (``>``, ``>=``), False for a limit (``<``, ``<=``)."""
    return rule.comparison in (">", ">=")


def default_preset_name(device, indication=None):
    """Name of the preset that gives the default targets and limits for a device and indication."""
    if device not in ("glass", "resin"):
        raise InputError(f"device must be 'glass' or 'resin', got {device!r}")
    if (device, indication) not in DEFAULT_PRESET_BY_DEVICE:
        raise InputError(f"no threshold preset for indication {indication!r}: give --thresholds (a preset or a rule file); "
                         f"presets: {', '.join(PRESETS)}")
    return DEFAULT_PRESET_BY_DEVICE[(device, indication)]


def parse_rule_text(text, source="command line"):
    """A :class:`Rule` from ``"WHO METRIC OP VALUE"``; WHO is a role or ``segment=NAME``."""
    m = _RULE_RX.match(str(text))
    if not m:
        raise InputError(f"--target {text!r}: expected 'ROLE METRIC OP VALUE' (e.g. \"tumor d70_gy>=100\", "
                         "\"normal_liver mean_gy<40\", \"segment=Tumor 1 mean_gy>=150\")")
    who, op, value = m.group("who").strip(), m.group("op"), float(m.group("value"))
    kind = "efficacy" if op in (">", ">=") else "safety"
    unit = m.group("unit") or ("%" if m.group("metric").endswith("_pct") else "Gy")
    common = dict(metric=m.group("metric"), comparison=op, threshold=value, unit=unit, kind=kind, source=source)
    if who.lower().startswith("segment="):
        return Rule(segment=who.split("=", 1)[1].strip(), **common)
    return Rule(role=canonical_role(who, where=f"role in --target {text!r}"), **common)


@dataclass(frozen=True)
class Prescription:
    """Targets and limits (a RuleSet) and where they came from."""

    rules: RuleSet
    origin: str
    #: (rule label, why) of the preset's rules left out: condition false, or a clinical input not given.
    not_applied: tuple = ()
    #: The rules the written case is judged by (the preset's conditional rules kept); None: ``rules``.
    case_ruleset: object = None
    #: Clinical inputs the plan assumed (e.g. the indication): each makes the written case INCOMPLETE.
    assumptions: tuple = ()

    @property
    def case_rules(self):
        """RuleSet of the written case: every rule ``run`` would judge it by, conditions unresolved."""
        return self.case_ruleset if self.case_ruleset is not None else self.rules

    @property
    def targets(self):
        return [r for r in self.rules.rules if is_target(r)]

    @property
    def limits(self):
        return [r for r in self.rules.rules if not is_target(r)]

    def to_dict(self):
        return {"origin": self.origin, "targets": [r.to_dict() for r in self.targets], "limits": [r.to_dict() for r in self.limits],
                "not_applied": [{"rule": label, "reason": why} for label, why in self.not_applied]}

    @property
    def warnings(self):
        """Rules of the preset that the plan could not use because a clinical input is missing."""
        return [f"rule {label!r} not used by the plan: {why}" for label, why in self.not_applied if "not given" in why]


def select_case_rules(rules, clinical):
    """(rules that apply to the case, with their conditions resolved; [(label, why)] of the others).

    ``clinical``: {clinical input: value or None} (``DosimetryParams.clinical_inputs()``)."""
    kept, left_out = [], []
    for r in rules:
        outcome, why = cond.check(r.when, clinical or {})
        if outcome == cond.APPLIES:
            kept.append(dataclasses.replace(r, when=()) if r.when else r)
        else:
            left_out.append((r.label or r.text, why))
    return kept, left_out


def _simple_rules(target_gy, tumor_target_gy, normal_liver_limit_gy, lung_limit_gy, normal_role):
    """{(role, metric, is_target): Rule} of the plain options."""
    out = {}
    src = "command line"
    if target_gy is not None:
        out[("perfused", "mean_gy", True)] = Rule(role="perfused", metric="mean_gy", comparison=">=", threshold=target_gy,
                                                  label="perfused volume mean dose (MIRD target)", source=src)
    if tumor_target_gy is not None:
        out[("tumor", "mean_gy", True)] = Rule(role="tumor", metric="mean_gy", comparison=">=", threshold=tumor_target_gy,
                                               label="tumour mean dose", source=src)
    if normal_liver_limit_gy is not None:
        out[(normal_role, "mean_gy", False)] = Rule(role=normal_role, metric="mean_gy", comparison="<=", threshold=normal_liver_limit_gy,
                                                    label="normal liver mean dose", kind="safety", source=src)
    if lung_limit_gy is not None:
        out[("lung", "mean_gy", False)] = Rule(role="lung", metric="mean_gy", comparison="<=", threshold=lung_limit_gy,
                                               label="lung mean dose", kind="safety", source=src)
    return out


def build_prescription(device, indication=None, *, preset=None, target_gy=None, tumor_target_gy=None, normal_liver_limit_gy=None,
                       lung_limit_gy=None, extra_rules=(), normal_role=None, clinical=None):
    """The :class:`Prescription`: the preset's rules that apply to the case (``clinical``: the
    clinical inputs, :meth:`DosimetryParams.clinical_inputs`; the device is the microsphere type),
    the plain options replacing the matching ones, then ``extra_rules`` (Rule objects or rule
    texts).  ``preset``: a preset name or a rule file (default: :func:`default_preset_name`).
    ``normal_role`` (default: the role of the preset's normal-liver rule, else normal_liver) is the
    role ``normal_liver_limit_gy`` applies to."""
    name = preset or default_preset_name(device, indication)
    ruleset = load_rules(name)
    clinical = dict(clinical or {})
    clinical.setdefault("microsphere", device)
    clinical.setdefault("indication", indication)
    base, not_applied = select_case_rules(ruleset.rules, clinical)
    preset_normal = next((r.role for r in base if r.role in ("normal_liver", "perfused_normal") and not is_target(r)), "normal_liver")
    simple = _simple_rules(target_gy, tumor_target_gy, normal_liver_limit_gy, lung_limit_gy, normal_role or preset_normal)
    added = list(simple.values()) + [r if isinstance(r, Rule) else parse_rule_text(r) for r in extra_rules]
    rules = [r for r in base if (r.role, r.metric, is_target(r)) not in simple] + added
    case_rules = [r for r in ruleset.rules if (r.role, r.metric, is_target(r)) not in simple
                  or cond.check(r.when, clinical)[0] != cond.APPLIES] + added  # a rule not judged now stays, N/A as in run
    what = f"preset {ruleset.name}" if name in PRESETS else f"rule file {name}"
    origin = f"{what} ({ruleset.description})" + (" with command-line changes" if simple or extra_rules else "")
    assumed = (NO_INDICATION_NOTE,) if preset is None and indication is None else ()
    if assumed:
        origin += f"; {NO_INDICATION_NOTE}"

    def named(rs):
        return RuleSet(f"plan ({ruleset.name})", tuple(rs), ruleset.description, scope=ruleset.scope, origin=ruleset.origin)

    return Prescription(named(rules), origin, tuple(not_applied), named(case_rules), assumed)
