"""The voxel-based planning model: the MAA dose map per GBq, scaled to any administered activity.

Every dose of a relative-calibration case is proportional to the administered activity (LDM and
DVK alike), so one :func:`~TAREDosimetryLib.pipeline.run_case` at a reference activity A0 gives
the case at any activity A by scaling with s = A / A0: doses, D_x, means and activities by s,
V_x read on the scaled DVH, EUD from the scaled voxel doses, and the mass-weighted BED as
s mean0 + s^2 (BED0 - mean0) (BED = D + c D^2 voxel by voxel).  Volumes, masses, T/N and
activity shares do not change.  :meth:`VoxelDoseModel.predict` does this in a few milliseconds
(the Slicer activity slider) and :meth:`VoxelDoseModel.case_at` returns the whole
:class:`CaseResult` that ``run_case`` would give at A (tested to 1e-6).
"""

import dataclasses
import re

import numpy as np

from .. import physics
from ..errors import InputError
from ..evaluation.radiobiology import eud_alpha_per_gy
from ..evaluation.results import SegmentResult
from ..evaluation.rules import evaluate_rules
from .models import Compartment

__all__ = ["VoxelDoseModel"]

_SCALES = re.compile(r"^(mean_gy|mean_gy_rc_corrected|median_gy|sd_gy|min_gy|max_gy|activity_gbq|d\d+(\.\d+)?_gy)$")
_V_PCT = re.compile(r"^v(\d+(?:\.\d+)?)_pct$")
_V_ML = re.compile(r"^v(\d+(?:\.\d+)?)_ml$")


def _scaled_metrics(metrics, dvh, s, params, role):
    out = {}
    for k, v in metrics.items():
        if v is None:
            out[k] = v
        elif _SCALES.match(k):
            out[k] = v * s
        elif _V_PCT.match(k) and dvh is not None:
            out[k] = dvh.volume_pct_at_dose(float(_V_PCT.match(k).group(1)))
        elif _V_ML.match(k) and dvh is not None:
            out[k] = dvh.volume_ml_at_dose(float(_V_ML.match(k).group(1)))
        elif k == "eud_gy" and dvh is not None and np.isfinite(v):  # NaN: no EUD for this role
            out[k] = physics.eud_gy(dvh.doses_gy.astype(np.float64), eud_alpha_per_gy(role, params), dvh.weights)
        elif k == "bed_gy":
            out[k] = s * metrics["mean_gy"] + s * s * (v - metrics["mean_gy"])
        elif k == "cumulative_mean_gy":
            out[k] = metrics["mean_gy"] * s + params.prior_lung_dose_term_gy
        else:
            out[k] = v
    return out


class VoxelDoseModel:
    """A relative-calibration case computed at one activity, scaled to others.

    Parameters
    ----------
    base : CaseResult of :func:`run_case` with relative calibration and ``administered_activity_gbq`` A0.
    name : str, the model's name in a plan.
    """

    def __init__(self, base, name="voxel"):
        if base.params.calibration != "relative" or not base.params.administered_activity_gbq:
            raise InputError("the voxel planning model needs a relative-calibration case with an administered activity (MAA SPECT)")
        self.base = base
        self.a0_gbq = float(base.params.administered_activity_gbq)
        self.name = name
        self.notes = [f"MAA dose map ({base.params.method.upper()}) scaled from {self.a0_gbq:g} GBq; the MAA distribution stands "
                      "for the Y-90 microspheres' (an assumption: catheter position, flow and particle differences change it)"]

    @property
    def dose_per_gbq(self):
        """The dose map per GBq administered (Volume, Gy/GBq)."""
        return self.base.dose_gy.with_array((self.base.dose_gy.array / np.float32(self.a0_gbq)).astype(np.float32), unit="Gy/GBq")

    def _segments_at(self, activity_gbq, cls):
        a = float(activity_gbq)
        if not a > 0:
            raise InputError(f"activity_gbq must be positive, got {activity_gbq!r}")
        s = a / self.a0_gbq
        p = self.base.params
        out = []
        for seg in self.base.segments:
            dvh = seg.dvh.scaled(s) if seg.dvh is not None else None
            metrics = _scaled_metrics(seg.metrics, dvh, s, p, seg.role)
            if cls is SegmentResult:
                out.append(dataclasses.replace(seg, metrics=metrics, dvh=dvh))
            else:
                out.append(Compartment(seg.name, seg.role, metrics, dvh, seg.rules_by_role, seg.note))
        return out

    def predict(self, activity_gbq):
        """Per-segment metrics (list of :class:`Compartment`) at ``activity_gbq`` administered."""
        return self._segments_at(activity_gbq, Compartment)

    def case_at(self, activity_gbq, rules=None):
        """The :class:`CaseResult` of the MAA case at ``activity_gbq`` (rules: the base's when None)."""
        s = float(activity_gbq) / self.a0_gbq
        segments = self._segments_at(activity_gbq, SegmentResult)
        ruleset = rules if rules is not None else self.base.rules
        summary = {k: (v * s if isinstance(v, float) and (k.endswith("_gbq") or k in ("gbq_per_count", "lung_mean_gy")) else v)
                   for k, v in self.base.summary.items()}
        b = self.base
        return dataclasses.replace(
            b, params=b.params.replace(administered_activity_gbq=float(activity_gbq)), rules=ruleset,
            activity_gbq=b.activity_gbq.with_array((b.activity_gbq.array * np.float32(s)).astype(np.float32)),
            dose_gy=b.dose_gy.with_array((b.dose_gy.array * np.float32(s)).astype(np.float32)),
            segments=segments, evaluations=evaluate_rules(ruleset, segments, b.params.clinical_inputs()), summary=summary,
            warnings=list(b.warnings), timings_s={},
        )
