"""Planning models as objects that predict per-compartment metrics at any administered activity.

Every model has ``name``, ``predict(activity_gbq) -> list of Compartment`` and ``notes``; the
activity search (:mod:`.search`) and the rule evaluation (:func:`evaluation.rules.evaluate_rules`)
work on any of them alike.  Compartments carry the metric names of metrics.json (``mean_gy``...).

* :class:`MirdModel`: one perfused compartment (whole liver, lobe or segment) and the lungs.
* :class:`PartitionModel`: tumour, normal liver and lungs.
* the voxel model is :class:`.voxel.VoxelDoseModel`; the BSA method (:mod:`.bsa`) gives an activity
  without a dose model and is judged with the MIRD model of its perfused volume.
"""

from dataclasses import dataclass, field

from .. import physics
from .compartments import check_positive, lung_dose_gy, mird_dose_gy, partition_doses_gy

__all__ = ["Compartment", "MirdModel", "PartitionModel", "LUNG_COMPARTMENT", "shared_model_arguments"]

LUNG_COMPARTMENT = "lungs"


@dataclass
class Compartment:
    """Predicted metrics of one compartment or segment (duck-typed like evaluation.results.SegmentResult)."""

    name: str
    role: str
    metrics: dict
    dvh: object = None
    rules_by_role: bool = True
    note: str = ""
    #: Why a metric of this compartment is NaN (not known), e.g. a joint sum that cannot be made exact.
    missing: str = ""

    def to_dict(self):
        return {"role": self.role, **{k: v for k, v in self.metrics.items()}}


def _lung(activity_gbq, lsf, lung_mass_kg, residual, k, prior_gy):
    d = lung_dose_gy(activity_gbq, lsf, lung_mass_kg, residual, k)
    return Compartment(LUNG_COMPARTMENT, "lung", {"mean_gy": d, "cumulative_mean_gy": d + prior_gy, "mass_g": 1000.0 * lung_mass_kg,
                                                  "activity_gbq": activity_gbq * (1.0 - residual) * lsf})


def shared_model_arguments(inputs, params, lsf=None):
    """The arguments every closed-form model takes from the case and the parameters: LSF (``lsf``,
    default the inputs' own), lung mass (kg), residual fraction, K, and the prior lung dose."""
    return dict(lsf=inputs.lsf.value if lsf is None else lsf, lung_mass_kg=inputs.lung_mass_g / 1000.0,
                residual_fraction=params.residual_fraction_used, k_gy_kg_per_gbq=params.k_gy_kg_per_gbq,
                prior_lung_dose_gy=params.prior_lung_dose_term_gy)


@dataclass
class MirdModel:
    """MIRD single compartment: the perfused volume (role ``perfused``) and the lungs.

    perfused_mass_kg : mass of the perfused volume (whole liver, lobe or segment, tumours included).
    """

    perfused_mass_kg: float
    lsf: float
    lung_mass_kg: float = physics.DEFAULT_LUNG_MASS_G / 1000.0
    residual_fraction: float = 0.0
    k_gy_kg_per_gbq: float = physics.K_GY_KG_PER_GBQ
    prior_lung_dose_gy: float = 0.0
    perfused_name: str = "perfused volume"
    name: str = "mird"
    notes: list = field(default_factory=list)

    def __post_init__(self):
        check_positive("perfused mass (kg)", self.perfused_mass_kg)
        check_positive("lung mass (kg)", self.lung_mass_kg)

    def predict(self, activity_gbq):
        d = mird_dose_gy(activity_gbq, self.perfused_mass_kg, self.lsf, self.residual_fraction, self.k_gy_kg_per_gbq)
        a = activity_gbq * (1.0 - self.residual_fraction) * (1.0 - self.lsf)
        perfused = Compartment(self.perfused_name, "perfused", {"mean_gy": d, "mass_g": 1000.0 * self.perfused_mass_kg, "activity_gbq": a})
        return [perfused, _lung(activity_gbq, self.lsf, self.lung_mass_kg, self.residual_fraction, self.k_gy_kg_per_gbq,
                                self.prior_lung_dose_gy)]


@dataclass
class PartitionModel:
    """Partition model: tumour (role tumor), normal liver and lungs.

    tn_ratio : r = (C_T/M_T)/(C_N/M_N), from the MAA image or given.
    normal_mass_kg : the normal liver of the perfused territory (role perfused_normal).
    whole_normal_mass_kg : the whole normal liver (role normal_liver), optional; it differs from
        ``normal_mass_kg`` in a lobar or segmental treatment (the unperfused part receives no
        activity, so its mean is K A_N / M_whole).  Default: the same mass (whole-liver treatment).
    """

    tumor_mass_kg: float
    normal_mass_kg: float
    tn_ratio: float
    lsf: float
    lung_mass_kg: float = physics.DEFAULT_LUNG_MASS_G / 1000.0
    residual_fraction: float = 0.0
    k_gy_kg_per_gbq: float = physics.K_GY_KG_PER_GBQ
    prior_lung_dose_gy: float = 0.0
    whole_normal_mass_kg: float = None
    name: str = "partition"
    notes: list = field(default_factory=list)

    def __post_init__(self):
        for n in ("tumor_mass_kg", "normal_mass_kg", "tn_ratio", "lung_mass_kg"):
            check_positive(n.replace("_", " "), getattr(self, n))

    def predict(self, activity_gbq):
        d = partition_doses_gy(activity_gbq, self.tumor_mass_kg, self.normal_mass_kg, self.tn_ratio, self.lsf, self.lung_mass_kg,
                               self.residual_fraction, self.k_gy_kg_per_gbq)
        a_liver = activity_gbq * (1.0 - self.residual_fraction) * (1.0 - self.lsf)
        share_t = self.tn_ratio * self.tumor_mass_kg / (self.tn_ratio * self.tumor_mass_kg + self.normal_mass_kg)
        tumor = Compartment("tumour", "tumor", {"mean_gy": d["tumor"], "mass_g": 1000.0 * self.tumor_mass_kg,
                                                 "activity_gbq": a_liver * share_t, "tn_ratio": self.tn_ratio})
        a_n = a_liver * (1.0 - share_t)
        normal = Compartment("perfused normal liver", "perfused_normal",
                             {"mean_gy": d["normal_liver"], "mass_g": 1000.0 * self.normal_mass_kg, "activity_gbq": a_n})
        m_whole = self.whole_normal_mass_kg or self.normal_mass_kg
        whole = Compartment("whole normal liver", "normal_liver",
                            {"mean_gy": d["normal_liver"] * self.normal_mass_kg / m_whole, "mass_g": 1000.0 * m_whole, "activity_gbq": a_n})
        return [tumor, normal, whole, _lung(activity_gbq, self.lsf, self.lung_mass_kg, self.residual_fraction, self.k_gy_kg_per_gbq,
                                     self.prior_lung_dose_gy)]
