"""Conditions on clinical inputs that select a threshold rule.

The published limits depend on the patient and the treatment: the EANM 2022 glass table asks for a
whole-normal-liver dose < 50 Gy when the bilirubin exceeds 1.1 mg/dL, a perfused-normal-liver dose
< 120 Gy when the hepatic reserve is under 30 %, and perfused-volume targets that depend on the
treatment approach (segmentectomy, lobectomy).  A rule carries such conditions in ``when``::

    {"input": "bilirubin_mg_dl", "op": ">", "value": 1.1}
    {"input": "treatment_approach", "op": "in", "value": ["segmentectomy"]}
    {"input": "treatment_approach", "op": "not_in", "value": ["segmentectomy"], "if_unknown": "apply"}

:func:`check` gives one of three outcomes: the rule applies, it does not apply (the condition is
false: shown, but the case stays complete), or the input is not given (``if_unknown``:
'incomplete', the default, makes the rule N/A and the case INCOMPLETE with the reason
"bilirubin not given"; 'apply' evaluates the rule anyway, for conditions that only exclude a
scenario; 'skip' leaves the rule out without making the case incomplete).
"""

import math
from dataclasses import dataclass

from ..errors import InputError
from ..params import CLINICAL_FIELDS, INDICATIONS, MICROSPHERES, TREATMENT_APPROACHES

__all__ = ["Condition", "CLINICAL_INPUTS", "check", "APPLIES", "DOES_NOT_APPLY", "UNKNOWN", "SKIP"]

APPLIES, DOES_NOT_APPLY, UNKNOWN, SKIP = "applies", "does not apply", "unknown", "skip"

#: Clinical input -> (words in messages, command-line option, unit or allowed values).
CLINICAL_INPUTS = {
    "bilirubin_mg_dl": ("bilirubin", "--bilirubin-mg-dl", "mg/dL"),
    "hepatic_reserve_pct": ("hepatic reserve", "--hepatic-reserve-pct", "%"),
    "treatment_approach": ("treatment approach", "--treatment-approach", TREATMENT_APPROACHES),
    "microsphere": ("microsphere type", "--microsphere", MICROSPHERES),
    "indication": ("indication", "--indication", INDICATIONS),
}
_NUMERIC_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
_SET_OPS = ("in", "not_in")
_IF_UNKNOWN = ("incomplete", "apply", "skip")


@dataclass(frozen=True)
class Condition:
    """``input`` ``op`` ``value``: e.g. bilirubin_mg_dl > 1.1, treatment_approach in (lobectomy,)."""

    input: str
    op: str
    value: object
    if_unknown: str = "incomplete"

    def __post_init__(self):
        if self.input not in CLINICAL_FIELDS:
            raise InputError(f"condition on unknown clinical input {self.input!r}; known: {', '.join(CLINICAL_FIELDS)}")
        if self.if_unknown not in _IF_UNKNOWN:
            raise InputError(f"condition on {self.input}: if_unknown must be one of {', '.join(_IF_UNKNOWN)}, got {self.if_unknown!r}")
        allowed = CLINICAL_INPUTS[self.input][2]
        if isinstance(allowed, tuple):
            self._check_set(allowed)
        else:
            self._check_number()

    def _check_set(self, allowed):
        if self.op not in _SET_OPS:
            raise InputError(f"condition on {self.input}: op must be 'in' or 'not_in', got {self.op!r}")
        values = (self.value,) if isinstance(self.value, str) else tuple(self.value or ())
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise InputError(f"condition on {self.input}: values must be among {', '.join(allowed)}, got {self.value!r}")
        object.__setattr__(self, "value", values)

    def _check_number(self):
        if self.op not in _NUMERIC_OPS:
            raise InputError(f"condition on {self.input}: op must be one of {', '.join(_NUMERIC_OPS)}, got {self.op!r}")
        try:
            v = float(self.value)
        except (TypeError, ValueError):
            raise InputError(f"condition on {self.input}: value must be a number, got {self.value!r}") from None
        if not math.isfinite(v):
            raise InputError(f"condition on {self.input}: value must be finite, got {self.value!r}")
        object.__setattr__(self, "value", v)

    @property
    def text(self):
        """e.g. 'bilirubin > 1.1 mg/dL', 'treatment approach lobectomy', 'treatment approach not segmentectomy'."""
        words, _option, unit = CLINICAL_INPUTS[self.input]
        if self.op in _SET_OPS:
            return f"{words} {'not ' if self.op == 'not_in' else ''}{' or '.join(self.value)}"
        return f"{words} {self.op} {self.value:g} {unit}"

    def holds(self, value):
        if self.op == "in":
            return value in self.value
        if self.op == "not_in":
            return value not in self.value
        return _NUMERIC_OPS[self.op](float(value), self.value)

    def to_dict(self):
        return {"input": self.input, "op": self.op,
                "value": list(self.value) if isinstance(self.value, tuple) else self.value, "if_unknown": self.if_unknown}

    @classmethod
    def from_dict(cls, data, where="condition"):
        if not isinstance(data, dict) or not {"input", "op", "value"} <= set(data):
            raise InputError(f"{where}: a condition is an object with 'input', 'op' and 'value', got {data!r}")
        unknown = set(data) - {"input", "op", "value", "if_unknown"}
        if unknown:
            raise InputError(f"{where}: unknown condition field(s) {', '.join(sorted(unknown))}")
        return cls(**data)


def _value_text(cond, value):
    words, _option, unit = CLINICAL_INPUTS[cond.input]
    return f"{words} {value}" if isinstance(unit, tuple) else f"{words} {float(value):g} {unit}"


def check(conditions, clinical):
    """(outcome, reason) of a rule's conditions for the case's clinical inputs.

    conditions : sequence of Condition (all must hold).
    clinical : dict {input name: value or None}.

    outcome is APPLIES, DOES_NOT_APPLY (reason says which condition is false), UNKNOWN (an input
    the rule needs was not given; reason names it and the option that gives it) or SKIP.
    """
    missing = []
    for cond in conditions:
        value = clinical.get(cond.input)
        if value is None:
            if cond.if_unknown == "incomplete":
                missing.append(cond)
            elif cond.if_unknown == "skip":
                return SKIP, f"{CLINICAL_INPUTS[cond.input][0]} not given (the rule is for {cond.text})"
            continue
        if not cond.holds(value):
            return DOES_NOT_APPLY, f"does not apply: {_value_text(cond, value)} (the rule is for {cond.text})"
    if missing:
        parts = [f"{CLINICAL_INPUTS[c.input][0]} not given (the rule is for {c.text}; give {CLINICAL_INPUTS[c.input][1]})"
                 for c in missing]
        return UNKNOWN, "; ".join(parts)
    return APPLIES, ""
