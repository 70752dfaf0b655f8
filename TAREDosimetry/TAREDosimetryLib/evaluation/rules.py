"""Dose threshold rules, presets from the literature, and their PASS/FAIL evaluation.

A rule says: for every segment of ``role`` (or the segment called ``segment``), ``metric``
``comparison`` ``threshold``, e.g. tumour ``mean_gy > 79.5``.  Each evaluation reports the
rule, the measured value, PASS/FAIL (or N/A when no segment has that role) and the source.

Metrics are the keys of the per-segment metrics table (``mean_gy``, ``d70_gy``, ``v100_pct``,
``eud_gy``, ``bed_gy``, ``cumulative_mean_gy`` (lung: this treatment plus
``prior_lung_dose_gy``), ...) or DVH names (``D70``, ``D2cc``, ``V100Gy``).

Rule files are JSON or TOML::

    {"name": "my centre", "rules": [
        {"role": "tumor", "metric": "mean_gy", "comparison": ">=", "threshold": 120,
         "unit": "Gy", "label": "tumour response", "source": "EANM 2022"}]}

A rule may be conditional on clinical inputs (``when``, see :mod:`.conditions`) and may be
``optional`` (its N/A does not make the case INCOMPLETE).  A rule set may state its ``scope``:
what the thresholds were derived from (tumour type, microsphere, imaging), shown in the report and
compared with the case.

The presets are data (``presets/*.json``, sources in ``presets/sources.json``); each rule names
the table row it comes from (``row``).  See ``tare-dosimetry presets``.
"""

import json
import math
import os
import re
from dataclasses import asdict, dataclass

from ..errors import InputError
from ..imaging.provenance import sha256_of_path
from . import conditions as cond
from .dvh import parse_metric
from .roles import ROLE_LABELS, canonical_role

__all__ = [
    "Rule", "RuleSet", "RuleEvaluation", "PRESETS", "DEFAULT_PRESET", "load_rules", "select_rules", "evaluate_rules",
    "RETIRED_PRESETS", "DEFAULT_PRESET_NOTE", "missing_segment_reason",
]

COMPARISONS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


@dataclass(frozen=True)
class Rule:
    """One threshold.  ``role`` or ``segment`` selects the segments it applies to."""

    role: str = ""
    metric: str = "mean_gy"
    comparison: str = ">"
    threshold: float = 0.0
    unit: str = ""  # empty: the metric's own unit (Gy, %, mL, g, GBq; none for tn_ratio)
    label: str = ""
    source: str = ""
    segment: str = ""
    kind: str = "efficacy"  # 'efficacy' (target to reach) or 'safety' (limit not to exceed)
    #: N/A does not make the case INCOMPLETE.
    optional: bool = False
    #: Conditions on clinical inputs (:class:`.conditions.Condition` or dicts), all must hold.
    when: tuple = ()
    #: Where the threshold comes from, e.g. "EANM 2022 table 2: HCC, unilobar, normal liver".
    row: str = ""

    def __post_init__(self):
        where = f"rule {self.label or self.metric!r}"
        object.__setattr__(self, "when", tuple(
            c if isinstance(c, cond.Condition) else cond.Condition.from_dict(c, where) for c in (self.when or ())))
        if not isinstance(self.optional, bool):
            raise InputError(f"{where}: optional must be true or false, got {self.optional!r}")
        if not self.role and not self.segment:
            raise InputError(f"rule {self.label or self.metric!r}: give a 'role' or a 'segment'")
        if self.role:
            object.__setattr__(self, "role", canonical_role(self.role, where=f"role of rule {self.label or self.metric!r}"))
        if self.comparison not in COMPARISONS:
            raise InputError(f"rule {self.label or self.metric!r}: comparison must be one of {', '.join(COMPARISONS)}, got {self.comparison!r}")
        try:
            t = float(self.threshold)
        except (TypeError, ValueError):
            raise InputError(f"rule {self.label or self.metric!r}: threshold must be a number, got {self.threshold!r}") from None
        if not math.isfinite(t):
            raise InputError(f"rule {self.label or self.metric!r}: threshold must be finite, got {self.threshold!r}")
        object.__setattr__(self, "threshold", t)
        if not _metric_known(self.metric):
            raise InputError(
                f"rule {self.label or self.metric!r}: unknown metric {self.metric!r}; use e.g. mean_gy, median_gy, "
                "max_gy, d70_gy, v100_pct, eud_gy, bed_gy, tn_ratio, cumulative_mean_gy, D70, V100Gy"
            )
        _check_metric_level(self.metric)
        object.__setattr__(self, "unit", _checked_unit(self.metric, self.unit))
        if self.kind not in ("efficacy", "safety"):
            raise InputError(f"rule {self.label or self.metric!r}: kind must be 'efficacy' or 'safety', got {self.kind!r}")
        if not self.label:
            who = self.segment or self.role
            object.__setattr__(self, "label", f"{who} {self.metric} {self.comparison} {self.threshold:g} {self.unit}".strip())

    @property
    def text(self):
        return f"{self.metric} {self.comparison} {self.threshold:g} {self.unit}".strip()

    @property
    def conditions_text(self):
        return " and ".join(c.text for c in self.when)

    def to_dict(self):
        d = asdict(self)
        d["when"] = [c.to_dict() for c in self.when]
        return d


_PLAIN_METRICS = {
    "mean_gy", "median_gy", "sd_gy", "min_gy", "max_gy", "eud_gy", "bed_gy", "tn_ratio",
    "cumulative_mean_gy", "volume_ml", "mass_g", "activity_gbq", "activity_pct",
    "mean_gy_rc_corrected", "recovery_coefficient",
}


#: Unit of each metric family, and the spellings a rule may give for it.
_UNIT_SPELLINGS = {
    "Gy": ("gy",), "%": ("%", "pct", "percent"), "mL": ("ml", "cc", "cm3"), "g": ("g",), "GBq": ("gbq",),
    "": ("", "ratio", "-", "1", "none"),
}
_PLAIN_UNITS = {
    "volume_ml": "mL", "mass_g": "g", "activity_gbq": "GBq", "activity_pct": "%", "tn_ratio": "", "recovery_coefficient": "",
}


def metric_unit(metric):
    """The unit of a rule metric: 'Gy' (doses, D_x), '%' (v<x>_pct, V<x>Gy, activity_pct),
    'mL' (v<x>_ml, volume_ml), 'g', 'GBq', or '' (tn_ratio)."""
    m = str(metric)
    if m in _PLAIN_UNITS:
        return _PLAIN_UNITS[m]
    if m.endswith("_gy"):
        return "Gy"
    if re.fullmatch(r"v\d+(\.\d+)?_(pct|ml)", m):
        return "%" if m.endswith("_pct") else "mL"
    parsed = parse_metric(m)
    return "Gy" if parsed is None or parsed[0] == "D" else "%"


def _checked_unit(metric, unit):
    """The canonical spelling of ``unit``, which must be the unit of ``metric`` (empty: that unit)."""
    expected = metric_unit(metric)
    given = str(unit or "").strip()
    if not given:
        return expected
    if given.lower() in _UNIT_SPELLINGS[expected]:
        return expected
    what = {"Gy": "a dose", "%": "a percentage", "mL": "a volume", "g": "a mass", "GBq": "an activity", "": "a ratio"}[expected]
    raise InputError(
        f"unit {given!r} does not match metric {metric!r}, which is {what}" + (f" in {expected}" if expected else " (no unit)")
        + "; correct the unit or the metric"
    )


def _check_metric_level(metric):
    """D_x needs x within 0-100 % (d200_gy asks for the dose to twice the volume)."""
    m = re.fullmatch(r"d(\d+(?:\.\d+)?)_gy", str(metric))
    parsed = parse_metric(metric)
    level = float(m.group(1)) if m else parsed[1] if parsed and parsed[0] == "D" and parsed[2] == "%" else None
    if level is not None and level > 100:
        raise InputError(f"metric {metric!r} asks for the dose to {level:g} % of the volume; D levels are within 0-100 %")


def _metric_known(metric):
    m = str(metric)
    if m in _PLAIN_METRICS:
        return True
    if re.fullmatch(r"d\d+(\.\d+)?_gy|v\d+(\.\d+)?_(pct|ml)", m):
        return True
    return parse_metric(m) is not None


#: Keys a rule set's ``scope`` may hold (what its thresholds were derived from).
SCOPE_KEYS = ("indication", "microsphere", "imaging", "derived_from", "population", "auto_select", "notes")


@dataclass(frozen=True)
class RuleSet:
    """Named rules with a description and a ``scope`` (dict, keys :data:`SCOPE_KEYS`): the
    indications and microspheres the thresholds were derived for (lists), the imaging they were
    derived from (``imaging``: list of 'bremsstrahlung_spect', 'maa_spect', 'y90_pet', or 'any'),
    the study population, and whether ``select_rules`` may choose it from the clinical inputs.
    ``origin`` says where the rules came from ({'preset': name} or {'file': path, 'sha256': hex});
    it is kept through to_dict/from_dict so a rerun records the same."""

    name: str
    rules: tuple = ()
    description: str = ""
    scope: dict = None
    origin: dict = None

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "scope", dict(self.scope or {}))

    def __hash__(self):
        return hash((self.name, self.rules, self.description))

    def to_dict(self):
        d = {"name": self.name, "description": self.description, "scope": dict(self.scope),
             "rules": [r.to_dict() for r in self.rules]}
        if self.origin:
            d["origin"] = dict(self.origin)
        return d

    @classmethod
    def from_dict(cls, data, source="rules"):
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise InputError(f"{source}: expected an object with a 'rules' list")
        rules = _rules_from_dicts(data["rules"], source)
        scope = data.get("scope") or {}
        if not isinstance(scope, dict) or set(scope) - set(SCOPE_KEYS):
            raise InputError(f"{source}: 'scope' must be an object with keys among {', '.join(SCOPE_KEYS)}")
        origin = data.get("origin")
        return cls(str(data.get("name", os.path.basename(str(source)))), tuple(rules), str(data.get("description", "")),
                   scope=scope, origin=dict(origin) if isinstance(origin, dict) else None)


def _rules_from_dicts(items, source):
    """Rules from a rule file's list of objects; errors name the file and the rule number."""
    rules = []
    allowed = set(Rule.__dataclass_fields__)
    for n, r in enumerate(items, 1):
        if not isinstance(r, dict):
            raise InputError(f"{source}: rule {n} must be an object, got {r!r}")
        unknown = set(r) - allowed
        if unknown:
            raise InputError(f"{source}: rule {n} has unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
        for req in ("metric", "comparison", "threshold"):
            if req not in r:
                raise InputError(f"{source}: rule {n} lacks '{req}'")
        try:
            rules.append(Rule(**r))
        except InputError as exc:
            raise InputError(f"{source}: rule {n}: {exc}") from None
    if not rules:
        raise InputError(f"{source}: the 'rules' list is empty")
    # A repeated rule would be evaluated and counted twice ("3/4 rules pass").
    seen = {}
    for n, r in enumerate(rules, 1):
        key = (r.role, r.segment, r.metric, r.comparison, r.threshold, tuple(json.dumps(c.to_dict()) for c in r.when))
        if key in seen:
            raise InputError(f"{source}: rule {n} repeats rule {seen[key]} ({r.text} for {r.segment or r.role})")
        seen[key] = n
    return rules


@dataclass(frozen=True)
class RuleEvaluation:
    """The outcome of one rule on one segment.

    ``status`` is 'PASS', 'FAIL' or 'N/A'.  ``reason`` says why a rule is N/A (no segment with
    its role, a clinical input not given, a condition that does not hold...).  ``required`` is
    False for an N/A that leaves the case complete (an optional rule, a condition that is false);
    an N/A with ``required`` True makes the case INCOMPLETE.  ``warnings`` are the segment's
    warnings (partial volume), shown next to the status.
    """

    rule: Rule
    segment_name: str
    measured: float
    status: str
    reason: str = ""
    required: bool = True
    warnings: tuple = ()

    @property
    def passed(self):
        return self.status == "PASS"

    @property
    def makes_incomplete(self):
        """True for an N/A that counts against the case (required, not optional)."""
        return self.status == "N/A" and self.required and not self.rule.optional

    def to_dict(self):
        return {
            "segment": self.segment_name,
            "role": self.rule.role,
            "rule": self.rule.label,
            "metric": self.rule.metric,
            "comparison": self.rule.comparison,
            "threshold": self.rule.threshold,
            "unit": self.rule.unit,
            "measured": None if self.measured is None or not math.isfinite(self.measured) else self.measured,
            "status": self.status,
            "reason": self.reason,
            "optional": self.rule.optional,
            "counts_as_incomplete": self.makes_incomplete,
            "conditions": self.rule.conditions_text,
            "warnings": list(self.warnings),
            "kind": self.rule.kind,
            "source": self.rule.source,
            "row": self.rule.row,
        }


# -- presets -----------------------------------------------------------------------------------
#: Folder of the preset files: one JSON file per preset, and ``sources.json`` holding the full
#: citations that rules name as ``"source": "@KEY"``.
PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


def _resolve_source(text, sources, where):
    if isinstance(text, str) and text.startswith("@"):
        try:
            return sources[text[1:]]
        except KeyError:
            raise InputError(f"{where}: unknown source key {text!r}; known: {', '.join(sorted(sources))}") from None
    return text


def read_preset_files(folder=PRESET_DIR):
    """{preset name: RuleSet} from the preset folder, in the order the files give (``order``)."""
    with open(os.path.join(folder, "sources.json"), encoding="utf-8") as fh:
        sources = json.load(fh)
    loaded = []
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".json") or fname == "sources.json":
            continue
        path = os.path.join(folder, fname)
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        for rule in data["rules"]:
            rule["source"] = _resolve_source(rule.get("source", ""), sources, path)
        data["origin"] = {"preset": data.get("name", fname[:-5])}
        ruleset = RuleSet.from_dict(data, source=f"preset file {path}")
        loaded.append((data.get("order", len(loaded)), ruleset))
    return {rs.name: rs for _, rs in sorted(loaded, key=lambda t: t[0])}


PRESETS = read_preset_files()
DEFAULT_PRESET = "breast-liver-metastases"
#: Preset names that no longer exist, with what replaces them.
RETIRED_PRESETS = {
    "hcc-glass-bilirubin": "the bilirubin limit is a rule of 'hcc-glass' now: use --thresholds hcc-glass with "
                           "--bilirubin-mg-dl VALUE (whole normal liver < 50 Gy applies when bilirubin > 1.1 mg/dL)",
}


def _read_rule_file(path):
    lower = str(path).lower()
    try:
        if lower.endswith(".toml"):
            try:
                import tomllib as toml_reader  # Python 3.11+
            except ImportError:  # pragma: no cover - Python < 3.11
                try:
                    import tomli as toml_reader
                except ImportError:
                    raise InputError(f"rule file {path}: reading TOML on this Python needs 'tomli' (pip install tomli), or use JSON") from None
            with open(path, "rb") as fh:
                return toml_reader.load(fh)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"rule file {path}: cannot be read ({exc.strerror})") from None
    except Exception as exc:  # JSONDecodeError, TOMLDecodeError
        raise InputError(f"rule file {path}: malformed ({exc})") from None


def load_rules(spec=None):
    """A RuleSet from a preset name, a JSON/TOML file path, a dict or a RuleSet (None: default preset)."""
    if spec is None:
        return PRESETS[DEFAULT_PRESET]
    if isinstance(spec, RuleSet):
        return spec
    if isinstance(spec, dict):
        return RuleSet.from_dict(spec)
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    if text in RETIRED_PRESETS:
        raise InputError(f"threshold preset {text!r} was retired: {RETIRED_PRESETS[text]}")
    if os.path.exists(text):
        data = _read_rule_file(text)
        if isinstance(data, dict):
            data["origin"] = {"file": os.path.abspath(text), "sha256": sha256_of_path(text)}
        return RuleSet.from_dict(data, source=f"rule file {text}")
    if text.lower().endswith((".json", ".toml")):
        raise InputError(f"rule file not found: {text}")
    raise InputError(f"unknown threshold preset {text!r}; presets: {', '.join(PRESETS)} (or give a .json/.toml rule file)")


def _measure(rule, seg):
    m = rule.metric
    if m in seg.metrics:
        v = seg.metrics[m]
        return float("nan") if v is None else float(v)
    parsed = parse_metric(m)
    if parsed is not None and seg.dvh is not None:
        return float(seg.dvh.statistic(m))
    mm = re.fullmatch(r"([dv])(\d+(?:\.\d+)?)_(gy|pct|ml)", m)
    if mm and seg.dvh is not None:
        x = float(mm.group(2))
        if mm.group(1) == "d":
            return seg.dvh.dose_at_volume_pct(x)
        return seg.dvh.volume_pct_at_dose(x) if mm.group(3) == "pct" else seg.dvh.volume_ml_at_dose(x)
    return float("nan")


#: How :func:`select_rules` says that nothing chose the rule set (no thresholds, indication or microsphere).
DEFAULT_PRESET_NOTE = "default preset (no indication or microsphere given)"


def select_rules(spec, params=None):
    """(RuleSet, note) for a case: the rules given (``spec``: preset name, file, dict, RuleSet),
    or, when ``spec`` is None, the preset whose scope fits the case's ``indication`` and
    ``microsphere`` (those not given match any), or the default preset when neither is given.

    ``note`` says how the rules were chosen.  InputError when no preset or several presets fit.
    """
    if spec is not None:
        return load_rules(spec), "given"
    indication = getattr(params, "indication", None)
    microsphere = getattr(params, "microsphere", None)
    if indication is None and microsphere is None:
        return PRESETS[DEFAULT_PRESET], DEFAULT_PRESET_NOTE
    fits = [
        rs for rs in PRESETS.values()
        if rs.scope.get("auto_select", True)
        and (indication is None or indication in rs.scope.get("indication", ()))
        and (microsphere is None or microsphere in rs.scope.get("microsphere", ()))
    ]
    asked = ", ".join(f"{k} {v}" for k, v in (("indication", indication), ("microsphere", microsphere)) if v)
    if len(fits) == 1:
        return fits[0], f"chosen from the clinical inputs ({asked})"
    if not fits:
        raise InputError(f"no threshold preset fits {asked}; give --thresholds PRESET or a rule file "
                         f"(presets: {', '.join(PRESETS)})")
    raise InputError(f"several threshold presets fit {asked}: {', '.join(rs.name for rs in fits)}; give --microsphere, "
                     "--indication or --thresholds to choose one")


def _matching_segments(rule, segs):
    return [
        s for s in segs
        if (rule.segment and s.name == rule.segment)
        or (not rule.segment and s.role == rule.role and getattr(s, "rules_by_role", True))
    ]


def missing_segment_reason(rule):
    """The N/A reason of ``rule`` when no measured segment matches it."""
    if rule.segment:
        return f"segment {rule.segment!r} was not measured"
    hint = {
        "perfused_normal": " (give a perfused-volume segment: perfused normal liver is then derived as perfused "
                           "minus tumours, or a perfused-normal segment)",
        "perfused": " (give a perfused-volume segment)",
        "lung": " (segment the lungs, or use the LSF lung model)",
    }.get(rule.role, "")
    return f"no segment with role {ROLE_LABELS.get(rule.role, rule.role)}{hint}"


def _evaluate_on(rule, s):
    v = _measure(rule, s)
    warn = tuple(getattr(s, "warnings", ()) or ())
    if not math.isfinite(v):
        why = (getattr(s, "unavailable", None) or {}).get(rule.metric) or f"{rule.metric} is not available for {s.name!r}"
        return RuleEvaluation(rule, s.name, v, "N/A", why, True, warn)
    status = "PASS" if COMPARISONS[rule.comparison](v, rule.threshold) else "FAIL"
    return RuleEvaluation(rule, s.name, v, status, "", True, warn)


def evaluate_rules(ruleset, segment_results, clinical=None):
    """Evaluate every rule on every matching segment result.

    Parameters
    ----------
    ruleset : RuleSet
    segment_results : iterable of objects with ``name``, ``role``, ``metrics`` (dict), ``dvh``
        and optionally ``warnings``.
    clinical : dict {clinical input: value or None}, optional (``DosimetryParams.clinical_inputs()``);
        selects the rules with conditions (``when``).

    Returns
    -------
    list of RuleEvaluation.  A rule with no matching segment, a rule whose condition does not
    hold and a rule whose clinical input is not given each give one 'N/A' row with the reason.
    """
    out = []
    segs = list(segment_results)
    clinical = dict(clinical or {})
    for rule in ruleset.rules:
        outcome, why = cond.check(rule.when, clinical)
        if outcome in (cond.DOES_NOT_APPLY, cond.SKIP):
            out.append(RuleEvaluation(rule, "", float("nan"), "N/A", why, False))
            continue
        if outcome == cond.UNKNOWN:
            out.append(RuleEvaluation(rule, "", float("nan"), "N/A", why, True))
            continue
        matching = _matching_segments(rule, segs)
        if not matching:
            out.append(RuleEvaluation(rule, "", float("nan"), "N/A", missing_segment_reason(rule), True))
            continue
        out.extend(_evaluate_on(rule, s) for s in matching)
    return out
