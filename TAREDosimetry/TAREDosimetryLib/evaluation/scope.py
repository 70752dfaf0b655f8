"""What a rule set's thresholds were derived from, compared with the case it judges.

A threshold carries the conditions of the study that produced it: the tumour type, the
microsphere, and the imaging the doses were measured on.  The 79.5 Gy breast-cancer threshold,
for example, comes from post-treatment Bremsstrahlung SPECT/CT (15-20 mm FWHM, which lowers
small-tumour means); a Y-90 PET case, whose tumour means are higher for the same treatment, or an
MAA prediction judged against it is outside that scope.  :func:`scope_warnings` lists every
difference that is known; :func:`scope_lines` describes the scope and the case for the report.

The case's imaging follows its treatment phase as the report states it (:func:`.phase.case_phase`:
given with ``--phase``, or inferred from the inputs), so the scope check, the scope table and the
report's phase line never contradict each other.
"""

from .conditions import CLINICAL_INPUTS
from .phase import case_phase
from .requirements import INDICATION_NOT_GIVEN
from .rules import DEFAULT_PRESET_NOTE

__all__ = ["IMAGING_LABELS", "case_imaging", "scope_warnings", "scope_lines"]

IMAGING_LABELS = {
    "bremsstrahlung_spect": "post-treatment Y-90 Bremsstrahlung SPECT",
    "maa_spect": "pre-treatment Tc-99m MAA SPECT (prediction)",
    "y90_pet": "post-treatment Y-90 PET (or another quantitative, Bq/mL image)",
    "any": "MAA SPECT planning or post-treatment imaging",
}


def case_imaging(params, inputs=None):
    """The case's imaging as a key of :data:`IMAGING_LABELS`, or None when it cannot be told
    (a relative-calibration SPECT may be MAA or Bremsstrahlung unless its phase is known: given
    with ``params.phase`` or inferred from the inputs, :func:`.phase.case_phase`)."""
    modality = (inputs or {}).get("modality")
    if modality == "pet" or params.calibration == "absolute":
        return "y90_pet"
    phase = case_phase(params, inputs)["phase"]
    if phase == "pre":
        return "maa_spect"
    if phase == "post":
        return "bremsstrahlung_spect"
    return None


def _listed(scope, key):
    v = scope.get(key) or ()
    return (v,) if isinstance(v, str) else tuple(v)


def scope_warnings(ruleset, params, inputs=None):
    """Warnings (list of str) for every known difference between the case and the rule set's scope."""
    scope = getattr(ruleset, "scope", None) or {}
    name = getattr(ruleset, "name", "rules")
    out = []
    for key, words in (("indication", "indication"), ("microsphere", "microsphere")):
        allowed = _listed(scope, key)
        value = getattr(params, key, None)
        if allowed and value is not None and value not in allowed:
            out.append(f"the case's {words} ({value}) is outside the scope of the thresholds '{name}' "
                       f"(derived for {', '.join(allowed)}): the PASS/FAIL may not apply")
    imaging = _listed(scope, "imaging")
    kind = case_imaging(params, inputs)
    if imaging and "any" not in imaging and kind is not None and kind not in imaging:
        out.append(
            f"this {IMAGING_LABELS[kind]} case is judged with thresholds '{name}' derived from "
            f"{' or '.join(IMAGING_LABELS.get(i, i) for i in imaging)}"
            + (f" ({scope['derived_from']})" if scope.get("derived_from") else "")
            + ": doses measured on other imaging differ (resolution, partial volume, MAA vs Y-90 distribution)"
        )
    return out


def _imaging_text(kind, params, inputs):
    """The case's imaging in words, with what the phase rests on when the user did not give it."""
    if kind is None:
        return "not stated (relative-calibration SPECT: MAA or Bremsstrahlung; give --phase pre|post)"
    phase = case_phase(params, inputs)
    given = getattr(params, "phase", None) is not None and not (inputs or {}).get("phase_basis")
    return IMAGING_LABELS[kind] + ("" if given or phase["phase"] is None else f" ({phase['basis']})")


def scope_lines(ruleset, params, inputs=None, rules_note=None):
    """[(label, text), ...] describing the thresholds' scope and the case, for the report;
    ``rules_note`` (how the rule set was chosen) adds a line when the default preset was applied
    because nothing chose the thresholds."""
    scope = getattr(ruleset, "scope", None) or {}
    lines = []
    if scope.get("indication"):
        lines.append(("tumour type", ", ".join(_listed(scope, "indication"))))
    if scope.get("microsphere"):
        lines.append(("microsphere", ", ".join(_listed(scope, "microsphere"))))
    if scope.get("imaging"):
        lines.append(("imaging", "; ".join(IMAGING_LABELS.get(i, i) for i in _listed(scope, "imaging"))))
    for key in ("derived_from", "population", "notes"):
        if scope.get(key):
            lines.append((key.replace("_", " "), str(scope[key])))
    if rules_note == DEFAULT_PRESET_NOTE:
        lines.append(("thresholds chosen", INDICATION_NOT_GIVEN))
    kind = case_imaging(params, inputs)
    case = []
    for k, v in params.clinical_inputs().items():
        words, _option, unit = CLINICAL_INPUTS[k]
        case.append(f"{words} " + ("not given" if v is None else str(v) if isinstance(unit, tuple) else f"{v:g} {unit}"))
    case.append(f"imaging {_imaging_text(kind, params, inputs)}")
    lines.append(("this case", "; ".join(case)))
    return lines
