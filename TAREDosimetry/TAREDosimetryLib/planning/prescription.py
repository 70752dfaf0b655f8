"""The prescription of a plan: targets to reach and limits not to exceed, as threshold rules.

Defaults come from the threshold preset of the device and indication (stated in the plan);
``--target-gy`` (MIRD: mean dose to the perfused volume), ``--tumor-target-gy``,
``--normal-liver-limit-gy`` and ``--lung-limit-gy`` replace the matching default rule, and
rules given as text (``"tumor d70_gy>=100"``, ``"normal_liver mean_gy<40"``,
``"segment=Tumor 1 mean_gy>=150"``) are added.  A rule with ``>``/``>=`` is a target (it sets a
lower bound on the activity), one with ``<``/``<=`` a limit (an upper bound).
"""

import re
from dataclasses import dataclass

from ..errors import InputError
from ..evaluation.roles import canonical_role
from ..evaluation.rules import PRESETS, Rule, RuleSet

__all__ = ["Prescription", "DEFAULT_PRESET_BY_DEVICE", "default_preset_name", "parse_rule_text", "build_prescription", "is_target"]

#: Preset whose rules are the default prescription, by (device, indication); indication None = HCC.
DEFAULT_PRESET_BY_DEVICE = {
    ("glass", None): "hcc-glass", ("glass", "hcc"): "hcc-glass", ("glass", "mcrc"): "mcrc-glass",
    ("resin", None): "hcc-resin", ("resin", "hcc"): "hcc-resin", ("resin", "mcrc"): "mcrc-resin",
    ("glass", "breast"): "breast-liver-metastases", ("resin", "breast"): "breast-liver-metastases",
}
_RULE_RX = re.compile(r"^\s*(?P<who>.+?)\s+(?P<metric>[A-Za-z][\w.]*)\s*(?P<op>>=|<=|>|<)\s*(?P<value>[-+]?\d+(\.\d+)?)\s*(?P<unit>Gy|%|mL|ml)?\s*$")


def is_target(rule):
    """True for a rule that activity must reach (``>``, ``>=``), False for a limit (``<``, ``<=``)."""
    return rule.comparison in (">", ">=")


def default_preset_name(device, indication=None):
    """Name of the preset that gives the default targets and limits for a device and indication."""
    key = (device, indication if indication in ("hcc", "mcrc", "breast") else None)
    if key not in DEFAULT_PRESET_BY_DEVICE:
        raise InputError(f"device must be 'glass' or 'resin', got {device!r}")
    name = DEFAULT_PRESET_BY_DEVICE[key]
    return name if name in PRESETS else f"hcc-{device}"


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

    @property
    def targets(self):
        return [r for r in self.rules.rules if is_target(r)]

    @property
    def limits(self):
        return [r for r in self.rules.rules if not is_target(r)]

    def to_dict(self):
        return {"origin": self.origin, "targets": [r.to_dict() for r in self.targets], "limits": [r.to_dict() for r in self.limits]}


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
                       lung_limit_gy=None, extra_rules=(), normal_role=None):
    """The :class:`Prescription`: the preset's rules, the plain options replacing the matching ones, then ``extra_rules``
    (Rule objects or rule texts).  ``normal_role`` (default: the role of the preset's normal-liver rule, else
    normal_liver) is the role ``normal_liver_limit_gy`` applies to."""
    name = preset or default_preset_name(device, indication)
    if name not in PRESETS:
        raise InputError(f"unknown threshold preset {name!r}; presets: {', '.join(PRESETS)}")
    base = list(PRESETS[name].rules)
    preset_normal = next((r.role for r in base if r.role in ("normal_liver", "perfused_normal") and not is_target(r)), "normal_liver")
    simple = _simple_rules(target_gy, tumor_target_gy, normal_liver_limit_gy, lung_limit_gy, normal_role or preset_normal)
    rules = [r for r in base if (r.role, r.metric, is_target(r)) not in simple]
    rules += list(simple.values())
    rules += [r if isinstance(r, Rule) else parse_rule_text(r) for r in extra_rules]
    origin = f"preset {name} ({PRESETS[name].description})" + (" with command-line changes" if simple or extra_rules else "")
    return Prescription(RuleSet(f"plan ({name})", tuple(rules), PRESETS[name].description), origin)
