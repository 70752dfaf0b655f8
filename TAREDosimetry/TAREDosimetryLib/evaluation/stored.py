"""A case result kept as plain data (a *record*), and the result rebuilt from it.

The Slicer module stores a record in the scene next to the output nodes, so that a saved and
reloaded scene still has its result (summary, rules, metrics) and can still be exported.  The
record holds what ``metrics.json`` holds (:meth:`CaseResult.to_dict`) plus every segment's
cumulative DVH curve at ``params.dvh_curve_step_gy``, the curve ``dvh.csv`` and the DVH plot
are made of::

    {"format": "TAREDosimetry result record", "version": 1, "run_id": "3f0c...",
     "metrics": {... metrics.json ...},
     "dvh": [{"name": "tumour 1", "step_gy": 0.1, "dose_gy": [0.0, 0.1, ...], "volume_pct": [100.0, ...]}, ...]}

:func:`result_from_record` gives a :class:`StoredCaseResult`: a :class:`CaseResult` whose
``to_dict()`` is the stored metrics.json, whose status is the stored one, and whose segments
carry a :class:`CurveDVH` (the stored curve) instead of the voxel doses.  Written again with
``reporting.outputs.write_outputs``, it gives the same metrics.json, metrics.csv and dvh.csv as the
original run; the report's figures use the stored curves (the exact voxel DVH is not kept).
"""

import math
import uuid

import numpy as np

from ..errors import InputError
from ..params import DosimetryParams
from .results import CaseResult, SegmentResult
from .rules import Rule, RuleEvaluation, RuleSet

__all__ = ["RECORD_FORMAT", "RECORD_VERSION", "CurveDVH", "StoredCaseResult", "result_record", "result_from_record"]

RECORD_FORMAT = "TAREDosimetry result record"
RECORD_VERSION = 1


class CurveDVH:
    """A cumulative DVH known only by its curve (dose_gy increasing, volume_pct non-increasing).

    Offers what the reports read from a DVH: ``curve(step)`` (the stored points when ``step`` is
    the stored step, else linear interpolation), ``dose_at_volume_pct``, ``volume_pct_at_dose``
    and ``max_gy`` (the last dose of the curve with a volume above 0).
    """

    def __init__(self, dose_gy, volume_pct, step_gy, name=""):
        d = np.asarray(dose_gy, dtype=np.float64)
        v = np.asarray(volume_pct, dtype=np.float64)
        if d.ndim != 1 or d.shape != v.shape or d.size < 2 or not np.all(np.isfinite(d)) or not np.all(np.isfinite(v)):
            raise InputError(f"stored DVH of {name or 'a segment'}: dose and volume must be two finite lists of equal length >= 2")
        if np.any(np.diff(d) <= 0) or np.any(np.diff(v) > 1e-9):
            raise InputError(f"stored DVH of {name or 'a segment'}: dose must increase and volume must not increase")
        self.name, self.step_gy = name, float(step_gy)
        self._dose, self._vol = d, v

    @property
    def max_gy(self):
        positive = np.flatnonzero(self._vol > 0)
        return float(self._dose[positive[-1]]) if positive.size else 0.0

    def curve(self, step_gy=0.1, max_points=4000):
        if math.isclose(float(step_gy), self.step_gy, rel_tol=1e-12):
            return self._dose.copy(), self._vol.copy()
        step = float(step_gy)
        n = min(int(math.floor(self._dose[-1] / step)) + 2, max_points)
        dose = np.arange(n, dtype=np.float64) * max(step, self._dose[-1] / max(max_points - 2, 1))
        return dose, np.interp(dose, self._dose, self._vol, right=0.0)

    def volume_pct_at_dose(self, dose_gy):
        return float(np.interp(float(dose_gy), self._dose, self._vol, right=0.0))

    def dose_at_volume_pct(self, volume_pct):
        x = float(volume_pct)
        if x >= self._vol[0]:
            return float(self._dose[0])
        # np.interp needs increasing x: read the curve from its low-volume end.
        return float(np.interp(x, self._vol[::-1], self._dose[::-1]))


def result_record(result, run_id=None):
    """The record (plain dict, JSON-ready) of a :class:`CaseResult`; see the module docstring."""
    step = float(result.params.dvh_curve_step_gy)
    curves = []
    for s in result.segments:
        if s.dvh is None:
            continue
        dose, vol = s.dvh.curve(step)
        curves.append({"name": s.name, "step_gy": step, "dose_gy": [float(x) for x in dose],
                       "volume_pct": [float(x) for x in vol]})
    return {"format": RECORD_FORMAT, "version": RECORD_VERSION, "run_id": run_id or uuid.uuid4().hex,
            "metrics": result.to_dict(), "dvh": curves}


class StoredCaseResult(CaseResult):
    """A :class:`CaseResult` rebuilt from a record: ``to_dict()``, ``overall_status`` and
    ``incomplete_reasons`` are the stored ones; ``activity_gbq`` and ``density_g_ml`` are None."""

    record = None

    # Setters that ignore the value: whether CaseResult computes these or holds them as fields,
    # the stored values win (a field's default set by the dataclass __init__ is dropped).
    @property
    def overall_status(self):
        return self.record["metrics"].get("overall_status", "N/A")

    @overall_status.setter
    def overall_status(self, value):
        pass

    @property
    def incomplete_reasons(self):
        return list(self.record["metrics"].get("incomplete_reasons") or [])

    @incomplete_reasons.setter
    def incomplete_reasons(self, value):
        pass

    @property
    def run_id(self):
        return self.record.get("run_id", "")

    def to_dict(self):
        return self.record["metrics"]


def _check_record(record):
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or not isinstance(record.get("metrics"), dict):
        raise InputError("the stored result is not a TAREDosimetry result record (it may come from another program)")
    if int(record.get("version", 0)) > RECORD_VERSION:
        raise InputError(f"the stored result has record version {record.get('version')}; this TAREDosimetry reads up to "
                         f"{RECORD_VERSION}: update the extension")


def _params_from(metrics):
    """DosimetryParams of the record; fields this engine does not know are dropped (older/newer records)."""
    known = set(DosimetryParams.__dataclass_fields__)
    data = {k: v for k, v in (metrics.get("parameters") or {}).items() if k in known}
    for key in ("d_levels_pct", "v_levels_gy"):
        if key in data and data[key] is not None:
            data[key] = tuple(data[key])
    return DosimetryParams.from_dict(data)


def _rule_of(e, ruleset):
    """The stored rule set's rule of an evaluation row (same label, metric, comparison, threshold and
    table row), else a rule described by the row itself (a rule set edited by hand)."""
    match = [r for r in ruleset.rules if r.label == e.get("rule") and r.metric == e.get("metric")
             and r.comparison == e.get("comparison") and r.threshold == float(e.get("threshold"))
             and r.row == (e.get("row") or r.row)]
    if match:
        return match[0]
    return Rule(role=e.get("role") or "", segment="" if e.get("role") else (e.get("segment") or ""),
                metric=e["metric"], comparison=e["comparison"], threshold=float(e["threshold"]),
                unit=e.get("unit", ""), label=e.get("rule", ""), source=e.get("source", ""), kind=e.get("kind", "efficacy"),
                optional=bool(e.get("optional", False)), row=e.get("row") or "")


def _evaluations_from(metrics, ruleset):
    """RuleEvaluations of the record, each with its rule, its N/A reason, whether its N/A counted
    against the case, and the segment's warnings."""
    out = []
    for e in metrics.get("evaluations") or []:
        rule = _rule_of(e, ruleset)
        measured = e.get("measured")
        # An N/A that did not count against the case (a false condition) was not required.
        required = not (e["status"] == "N/A" and not e.get("counts_as_incomplete", True) and not rule.optional)
        out.append(RuleEvaluation(rule, e.get("segment") or "", float("nan") if measured is None else float(measured), e["status"],
                                  reason=e.get("reason") or "", required=required, warnings=tuple(e.get("warnings") or ())))
    return out


def _input_reasons_from(metrics, evaluations):
    """The stored incomplete reasons that are not the rules' own: the inputs that were not given."""
    from .status import incomplete_reasons

    from_rules = set(incomplete_reasons(evaluations))
    return [r for r in metrics.get("incomplete_reasons") or [] if r not in from_rules]


_SEGMENT_KEYS = ("name", "segment_id", "role", "color", "note", "warnings", "pv_warning")


def _segments_from(metrics, curves):
    out = []
    for d in metrics.get("segments") or []:
        values = {k: (float("nan") if v is None else v) for k, v in d.items() if k not in _SEGMENT_KEYS}
        c = curves.get(d["name"])
        dvh = None if c is None else CurveDVH(c["dose_gy"], c["volume_pct"], c["step_gy"], name=d["name"])
        out.append(SegmentResult(d["name"], d.get("role", ""), values, dvh, segment_id=d.get("segment_id", ""),
                                 color=tuple(d.get("color") or (0.5, 0.5, 0.5)), note=d.get("note", ""),
                                 warnings=list(d.get("warnings") or []), pv_warning=bool(d.get("pv_warning", False))))
    return out


def result_from_record(record, dose_gy=None):
    """The :class:`StoredCaseResult` of a record (as made by :func:`result_record`).

    Parameters
    ----------
    record : dict
    dose_gy : Volume, optional; the dose map (Gy) of the run, e.g. read back from the dose node.
    """
    _check_record(record)
    metrics = record["metrics"]
    try:
        ruleset = RuleSet.from_dict(metrics.get("rules") or {}, source="stored rules")
        curves = {c["name"]: c for c in record.get("dvh") or []}
        evaluations = _evaluations_from(metrics, ruleset)
        result = StoredCaseResult(
            params=_params_from(metrics), rules=ruleset, activity_gbq=None, dose_gy=dose_gy, density_g_ml=None,
            segments=_segments_from(metrics, curves), evaluations=evaluations,
            warnings=list(metrics.get("warnings") or []), summary=dict(metrics.get("summary") or {}),
            inputs=dict(metrics.get("inputs") or {}), metrics_grid=dict(metrics.get("metrics_grid") or {}),
            timings_s=dict(metrics.get("timings_s") or {}), input_reasons=_input_reasons_from(metrics, evaluations),
            explicit_choices=list(metrics.get("explicit_choices") or []), scope_warnings=list(metrics.get("scope_warnings") or []),
            rules_note=str(metrics.get("rules_chosen") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the stored result cannot be read back ({type(exc).__name__}: {exc})") from None
    result.record = record
    return result
