"""The plan behind an activity slider: predicted doses and PASS/FAIL at any activity, in milliseconds.

:class:`PlanExplorer` holds a planning model (the voxel model of the MAA case computed once at
1 GBq, or a compartment model) and a prescription.  :meth:`PlanExplorer.step` scales the model to
an activity and evaluates the rules: the Slicer Plan section calls it on every slider move and
shows the rows and the PASS/FAIL segment colours it returns (``benchmarks/bench_plan.py`` times
it on the shared MAA case; the goal is under 100 ms).  Node-free: tested with plain pytest.
"""

import math
from dataclasses import dataclass, field

from ..errors import InputError
from ..evaluation.rules import evaluate_rules
from .search import choose_activity

__all__ = ["PlanExplorer", "PlanStep", "TABLE_METRICS", "slider_range_gbq", "compare_rows", "COMPARE_TABLE_METRICS"]

#: Metrics shown per segment in the Plan table (metrics.json names).
TABLE_METRICS = ("mean_gy", "d70_gy", "v100_pct")
COMPARE_TABLE_METRICS = ("mean_gy", "d70_gy", "v100_pct")


@dataclass
class PlanStep:
    """Predicted doses at one activity: ``rows`` [{segment, role, metrics..., status}],
    ``segment_status`` {segment: PASS|FAIL} (segments with evaluated rules only), ``overall``
    (FAIL when a rule fails, PASS when every evaluated rule passes, N/A when none applies),
    ``failed_rules`` (labels) and ``not_evaluated`` (rules that match no segment)."""

    activity_gbq: float
    rows: list
    segment_status: dict
    overall: str
    failed_rules: list = field(default_factory=list)
    not_evaluated: list = field(default_factory=list)


def _status_by_segment(evaluations):
    status = {}
    for ev in evaluations:
        if ev.status in ("PASS", "FAIL") and ev.segment_name:
            status[ev.segment_name] = "FAIL" if "FAIL" in (ev.status, status.get(ev.segment_name)) else "PASS"
    return status


class PlanExplorer:
    """A planning model and its prescription, explored at any activity.

    Parameters
    ----------
    model : object with ``predict(activity_gbq)`` -> compartments (``name``, ``role``, ``metrics``),
        e.g. :class:`~.voxel.VoxelDoseModel`.
    prescription : :class:`~.prescription.Prescription` (targets and limits).
    """

    def __init__(self, model, prescription, table_metrics=TABLE_METRICS):
        self.model = model
        self.prescription = prescription
        self.table_metrics = tuple(table_metrics)

    def step(self, activity_gbq):
        """:class:`PlanStep` at ``activity_gbq`` administered."""
        a = float(activity_gbq)
        if not (math.isfinite(a) and a > 0):
            raise InputError(f"activity must be a positive number of GBq, got {activity_gbq!r}")
        comps = self.model.predict(a)
        evaluations = evaluate_rules(self.prescription.rules, comps)
        status = _status_by_segment(evaluations)
        rows = [{"segment": c.name, "role": c.role, **{k: c.metrics.get(k) for k in self.table_metrics},
                 "status": status.get(c.name, "")} for c in comps]
        evaluated = [e for e in evaluations if e.status in ("PASS", "FAIL")]
        overall = "FAIL" if any(e.status == "FAIL" for e in evaluated) else ("PASS" if evaluated else "N/A")
        return PlanStep(a, rows, status, overall, sorted({e.rule.label for e in evaluated if e.status == "FAIL"}),
                        sorted({e.rule.label for e in evaluations if e.status not in ("PASS", "FAIL")}))

    def recommend(self, strategy="target"):
        """The :class:`~.search.ActivityChoice` of the prescription (the least activity reaching the targets under the limits)."""
        return choose_activity(self.model, self.prescription.rules.rules, strategy)


def slider_range_gbq(recommended_gbq, *, low_fraction=0.25, high_fraction=2.0, steps=200):
    """(minimum, maximum, single step) of an activity slider around the recommended activity (GBq)."""
    a = float(recommended_gbq)
    if not (math.isfinite(a) and a > 0):
        a = 1.0
    lo, hi = a * low_fraction, a * high_fraction
    step = 10 ** math.floor(math.log10((hi - lo) / steps))
    return round(lo / step) * step or step, round(hi / step) * step, step


def compare_rows(comparison_dict, metrics=COMPARE_TABLE_METRICS):
    """Rows of the Compare table from ``Comparison.to_dict()``: [segment, metric, predicted,
    delivered, difference, difference %] as display strings."""
    rows = []
    for s in comparison_dict["segments"]:
        for k in metrics:
            m = s["metrics"].get(k)
            if m is None:
                continue
            pct = m.get("difference_pct")
            rows.append([s["name"], k, f"{m['planned']:.4g}", f"{m['delivered']:.4g}", f"{m['difference']:+.4g}",
                         "" if pct is None else f"{pct:+.1f}"])
    return rows
