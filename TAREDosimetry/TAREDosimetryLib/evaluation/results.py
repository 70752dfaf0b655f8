"""Results of one case: per-segment metrics (:class:`SegmentResult`) and the whole case
(:class:`CaseResult`), with the JSON form written to metrics.json."""

import datetime
import math
from dataclasses import dataclass, field

import numpy as np

from .. import physics
from ..params import DosimetryParams
from ..version import __version__
from ..volume import Volume
from .dvh import DVH
from .radiobiology import radiobiology_table
from .status import incomplete_reasons, overall_status
from .phase import case_phase

__all__ = ["SegmentResult", "CaseResult", "json_number", "software_versions"]


@dataclass
class SegmentResult:
    """Metrics of one segment.  ``metrics`` keys carry their unit (``mean_gy``, ``volume_ml``...)."""

    name: str
    role: str
    metrics: dict
    dvh: DVH = None
    segment_id: str = ""
    color: tuple = (0.5, 0.5, 0.5)
    note: str = ""
    #: False for a part whose organ is judged as a whole (a lung lobe next to "lungs (all segments)"):
    #: role-based rules skip it; a rule naming the segment still applies.
    rules_by_role: bool = True
    #: Warnings on this segment's numbers (e.g. partial volume), shown on its row and next to its rules.
    warnings: list = field(default_factory=list)
    #: True when the segment is too small for the image resolution (see evaluation.partial_volume).
    pv_warning: bool = False
    #: {metric: why it is not available} for metrics left NaN on purpose (e.g. the cumulative lung
    #: dose without a prior lung dose): the reason of their rules' N/A.
    unavailable: dict = field(default_factory=dict)

    def to_dict(self):
        d = {"name": self.name, "segment_id": self.segment_id, "role": self.role, "color": list(self.color)}
        d.update({k: json_number(v) for k, v in self.metrics.items()})
        if self.note:
            d["note"] = self.note
        d["pv_warning"] = bool(self.pv_warning)
        d["warnings"] = list(self.warnings)
        return d


def software_versions():
    """Versions of the software that computes a result (Python, the engine and its libraries)."""
    import platform

    import scipy
    import SimpleITK

    return {
        "name": "TAREDosimetry",
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "SimpleITK": SimpleITK.Version_VersionString() if hasattr(SimpleITK, "Version_VersionString") else str(SimpleITK.Version()),
        "platform": platform.platform(terse=True),
    }


def json_number(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass
class CaseResult:
    """Everything one case produced.  Nothing in it refers back to mutable inputs."""

    params: DosimetryParams
    rules: object
    activity_gbq: Volume
    dose_gy: Volume
    density_g_ml: object
    segments: list
    evaluations: list
    warnings: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    metrics_grid: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    #: Inputs not given that the calculation replaced by a stated fallback (each makes the case
    #: INCOMPLETE), e.g. an LSF taken as 0 in a relative calibration.
    input_reasons: list = field(default_factory=list)
    #: Explicit choices the report shows (an LSF of 0 given on purpose, a scan at 0 h).
    explicit_choices: list = field(default_factory=list)
    #: What the rule set was derived from vs this case: warnings when they differ.
    scope_warnings: list = field(default_factory=list)
    #: How the rule set was chosen ('given', or from the clinical inputs).
    rules_note: str = ""
    #: Method and device that computed the dose map (see dose.dosemap.dose_computation_record).
    computation: dict = field(default_factory=dict)
    #: When the result was made (UTC, ISO 8601); with timings_s the only entry a rerun changes.
    created_utc: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    def segment(self, name):
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def overall_status(self):
        """'PASS', 'FAIL' or 'INCOMPLETE' (see :mod:`.status`): PASS only when every rule that
        is not optional was evaluated and passed and no input the calculation needs was defaulted."""
        return overall_status(self.evaluations, self.input_reasons)

    @property
    def incomplete_reasons(self):
        """Why the case is (or, when it FAILs, would also be) incomplete: list of str."""
        return incomplete_reasons(self.evaluations, self.input_reasons)

    def summary_line(self, with_reasons=True):
        """One line: status, rules passed, each evaluated rule, and (``with_reasons``) why the case is incomplete."""
        ev = [e for e in self.evaluations if e.status in ("PASS", "FAIL")]
        n_fail = sum(e.status == "FAIL" for e in ev)
        parts = []
        for e in ev:
            pv = " (partial volume)" if e.warnings else ""
            parts.append(f"{e.segment_name} {e.rule.metric} {e.measured:.1f} {e.rule.comparison} {e.rule.threshold:g}: {e.status}{pv}")
        head = f"{self.overall_status}: {len(ev) - n_fail}/{len(ev)} evaluated rules pass ({self.rules.name})"
        reasons = self.incomplete_reasons
        tail = f"; incomplete: {' | '.join(reasons)}" if reasons and with_reasons else ""
        return head + ("; " + "; ".join(parts) if parts else "") + tail

    def to_dict(self):
        return {
            "software": software_versions(),
            "created_utc": self.created_utc,
            "computation": dict(self.computation),
            "phase": case_phase(self.params, self.inputs),
            "inputs": self.inputs,
            "parameters": self.params.to_dict(),
            "constants": {
                "k_gy_kg_per_gbq": self.params.k_gy_kg_per_gbq,
                "y90_half_life_h": self.params.half_life_h,
                "y90_mean_beta_energy_mev": physics.Y90_MEAN_BETA_ENERGY_MEV,
                "tissue_density_g_ml": self.params.tissue_density_g_ml,
                "lung_density_g_ml": self.params.lung_density_g_ml,
                "hu_to_density_table": [list(p) for p in physics.SCHNEIDER_HU_DENSITY],
            },
            "radiobiology": radiobiology_table(self.params),
            "metrics_grid": self.metrics_grid,
            "summary": {k: json_number(v) for k, v in self.summary.items()},
            "overall_status": self.overall_status,
            "incomplete_reasons": self.incomplete_reasons,
            "explicit_choices": list(self.explicit_choices),
            "clinical_inputs": self.params.clinical_inputs(),
            "rules": self.rules.to_dict(),
            "rules_chosen": self.rules_note,
            "scope_warnings": list(self.scope_warnings),
            "evaluations": [e.to_dict() for e in self.evaluations],
            "segments": [s.to_dict() for s in self.segments],
            "warnings": list(self.warnings),
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }
