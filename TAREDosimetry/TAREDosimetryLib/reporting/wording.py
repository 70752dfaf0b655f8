"""Results in words, as a physicist would write them: the banner of the report and the console.

"FAIL: tumour 3 mean dose 48.3 Gy < 79.5 Gy" rather than "tumour 3 mean_gy 48.3 > 79.5: FAIL".
A rule evaluation becomes ``<segment> <metric in words> <measured> <relation> <threshold>``, where
the relation is the one that holds between the measured value and the threshold (so a failed
"> 79.5 Gy" rule reads "< 79.5 Gy").  :func:`banner` gives the overall status, the headline and
the lines under it; it handles PASS, FAIL (with what could not be evaluated besides), INCOMPLETE
(with its reasons) and a case where no rule could be evaluated.  A rule judged on a segment too
small for the image resolution is flagged "(partial volume)".
"""

import math
import re

from ..evaluation.phase import case_phase
from ..evaluation.roles import ROLE_LABELS
from ..evaluation.rules import missing_segment_reason
from .tables import format_metric

__all__ = ["metric_words", "quantity_text", "evaluation_sentence", "banner"]

_WORDS = {
    "mean_gy": "mean dose", "median_gy": "median dose", "max_gy": "maximum dose", "min_gy": "minimum dose",
    "sd_gy": "dose SD", "eud_gy": "EUD", "bed_gy": "mean BED", "tn_ratio": "T/N ratio",
    "cumulative_mean_gy": "cumulative mean dose", "volume_ml": "volume", "mass_g": "mass",
    "activity_gbq": "activity", "activity_pct": "share of the activity",
}


def metric_words(metric):
    """A metric key in words: 'mean_gy' -> 'mean dose', 'd70_gy' -> 'D70', 'v100_pct' -> 'V100Gy'."""
    m = str(metric)
    if m in _WORDS:
        return _WORDS[m]
    found = re.fullmatch(r"([dv])(\d+(?:\.\d+)?)_(gy|pct|ml)", m)
    if found:
        kind, level, unit = found.groups()
        return f"D{level}" if kind == "d" else f"V{level}Gy" + (" (volume)" if unit == "ml" else "")
    return m


def quantity_text(value, unit):
    """A value with its unit: '48.3 Gy', '35.2 %', '12.3 mL', '2.31' (ratio); '–' when not finite."""
    if value is None or not math.isfinite(float(value)):
        return "\u2013"
    key = {"Gy": "_gy", "%": "_pct", "mL": "_ml", "g": "_g", "GBq": "_gbq", "": "_ratio"}.get(unit, "")
    text = format_metric(key, float(value))
    return f"{text} {unit}".strip() if unit else text


def _threshold_text(rule):
    return f"{rule.threshold:g} {rule.unit}".strip()


def evaluation_sentence(ev):
    """One rule evaluation in words (see module docstring)."""
    rule = ev.rule
    words = metric_words(rule.metric)
    if ev.status == "N/A":
        reason = str(getattr(ev, "reason", "") or "")
        if not ev.segment_name and (not reason or reason == missing_segment_reason(rule)):
            who = f"segment {rule.segment!r}" if rule.segment else f"{ROLE_LABELS.get(rule.role, rule.role)} segment"
            return f"no {who} measured for {rule.label!r} ({words} {rule.comparison} {_threshold_text(rule)})"
        if not ev.segment_name:  # a clinical input not given, a condition that does not hold: its own reason
            return f"{rule.label!r} ({words} {rule.comparison} {_threshold_text(rule)}) not evaluated: {reason}"
        return f"{ev.segment_name} {words} could not be measured ({rule.label!r})" + (f": {reason}" if reason else "")
    measured = float(ev.measured)
    relation = "<" if measured < rule.threshold else ">" if measured > rule.threshold else "="
    value = quantity_text(measured, rule.unit)
    if value == _threshold_text(rule) and relation != "=":  # 79.46 would read "79.5 Gy < 79.5 Gy": more digits
        value = f"{measured:.6g} {rule.unit}".strip()
    return f"{ev.segment_name} {words} {value} {relation} {_threshold_text(rule)}"


def _counts_line(result, evaluations):
    n_pass = sum(e.status == "PASS" for e in evaluations)
    n_fail = sum(e.status == "FAIL" for e in evaluations)
    n_na = sum(e.status == "N/A" for e in evaluations)
    name = getattr(result.rules, "name", "")
    text = f"{n_pass} of {len(evaluations)} rule evaluations met, {n_fail} failed"
    return text + (f", {n_na} not evaluated" if n_na else "") + (f" (rule set {name})" if name else "")


def _flagged(ev):
    """The evaluation in words, flagged when its segment is too small for the image resolution."""
    return evaluation_sentence(ev) + (" (partial volume)" if getattr(ev, "warnings", None) else "")


def banner(result):
    """The overall verdict in words.

    Returns
    -------
    dict: ``status`` (the overall status word), ``message`` (what decides it, without the status
    word), ``headline`` ('STATUS: message'), ``lines`` (the rule count, the treatment phase and
    its basis, and every evaluation in words), ``also_incomplete`` (a FAIL's reasons it would
    also be incomplete: what could not be evaluated or was not given).
    """
    status = result.overall_status
    evs = list(result.evaluations)
    failed = [_flagged(e) for e in evs if e.status == "FAIL"]
    missing = [evaluation_sentence(e) for e in evs if e.status == "N/A"]
    reasons = list(getattr(result, "incomplete_reasons", None) or [])
    if status == "FAIL":
        message = "; ".join(failed)
    elif status == "PASS":
        judged = [e for e in evs if e.status == "PASS"]
        message = f"every rule judged was met ({len(judged)} rule evaluation{'s' if len(judged) != 1 else ''})"
        if missing:  # optional rules (or rules whose condition is false) not evaluated: said, not hidden
            message += "; not evaluated (optional or not applicable): " + "; ".join(missing)
    elif status == "INCOMPLETE":
        shown = reasons or missing
        message = "; ".join(shown) if shown else "not every rule could be evaluated"
    else:
        message = "no rule could be evaluated" + (": " + "; ".join(missing) if missing else "")
    phase = case_phase(result.params, result.inputs)
    lines = [_counts_line(result, evs), f"{phase['title']}: {phase['basis']}"]
    lines += [f"{e.status}: {_flagged(e)}" for e in evs]
    return {"status": status, "message": message, "headline": f"{status}: {message}", "lines": lines, "phase": phase,
            "also_incomplete": reasons if status == "FAIL" else []}
