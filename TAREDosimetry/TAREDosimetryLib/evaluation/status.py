"""The overall status of a case: PASS, FAIL or INCOMPLETE, with the reasons.

- FAIL when any evaluated rule fails;
- else INCOMPLETE when a rule that is not optional could not be evaluated (N/A: no segment with
  its role, a clinical input it needs not given, a metric not available), when an input the
  calculation needs was not given and replaced by a stated fallback (e.g. the lung shunt
  fraction of a relative calibration), or when no rule could be evaluated at all;
- PASS only when every rule that is not optional was evaluated and passed.

A rule whose condition is false (e.g. the bilirubin rule when the bilirubin is 0.8 mg/dL) and an
optional rule that is N/A are listed but leave the case complete.  A FAIL case still lists its
incomplete reasons: what was not judged is said, whatever the status.
"""

__all__ = ["STATUSES", "STATUS_COLORS", "overall_status", "incomplete_reasons"]

STATUSES = ("PASS", "FAIL", "INCOMPLETE")
#: (text colour, background colour) of each status in reports and panels; INCOMPLETE is amber,
#: distinct from PASS green and FAIL red.
STATUS_COLORS = {
    "PASS": ("#1e7b34", "#d8f0dd"),
    "FAIL": ("#b21f2d", "#f8d7da"),
    "INCOMPLETE": ("#8a5300", "#fff0c2"),
    "N/A": ("#5a5a5a", "#e6e6e6"),
}
NO_RULE_EVALUATED = "no rule could be evaluated"


def incomplete_reasons(evaluations, input_reasons=()):
    """Reasons (list of str, in order, no repeats) that keep the case from being complete.

    evaluations : sequence of RuleEvaluation.
    input_reasons : sequence of str, inputs not given that the calculation replaced by a stated
        fallback (from :func:`.requirements.check_required_inputs`).
    """
    out = []
    for text in input_reasons:
        if text not in out:
            out.append(text)
    for e in evaluations:
        if getattr(e, "makes_incomplete", False):
            text = f"rule '{e.rule.label}' not evaluated: {e.reason or 'no value'}"
            if text not in out:
                out.append(text)
    if not any(e.status in ("PASS", "FAIL") for e in evaluations):
        out.append(NO_RULE_EVALUATED)
    return out


def overall_status(evaluations, input_reasons=()):
    """'FAIL', 'INCOMPLETE' or 'PASS' (see module docstring)."""
    if any(e.status == "FAIL" for e in evaluations):
        return "FAIL"
    if incomplete_reasons(evaluations, input_reasons):
        return "INCOMPLETE"
    return "PASS"
