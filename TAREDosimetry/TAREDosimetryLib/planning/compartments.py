"""Closed-form compartment models of pre-treatment planning: MIRD single compartment and the
partition model (tumour, normal liver, lung).

Symbols (PHYSICS.md, "Pre-treatment planning"): A administered activity (GBq), K dose per
activity for full local absorption (Gy kg/GBq), LSF lung shunt fraction, R residual fraction
(activity left in vial and catheter), M masses (kg), r = (C_T/M_T) / (C_N/M_N) the
tumour-to-normal ratio of activity concentrations::

    MIRD single compartment   D = K A (1 - LSF)(1 - R) / M        A = D M / (K (1 - LSF)(1 - R))
    lung                      D_L = K A (1 - R) LSF / M_L
    partition                 D_N = K A (1 - LSF)(1 - R) / (r M_T + M_N),   D_T = r D_N

(1 - LSF) divides in the activity formula: a common calculator bug puts it in the numerator.

References
----------
.. [MIRD29] Kesner AL et al., "MIRD Pamphlet No. 29: MIRDy90 - a 90Y research microsphere dosimetry
   tool", J Nucl Med (2024): single-compartment and partition-model formulas.
.. [Ho1996] Ho S et al., "Partition model for estimating radiation doses from yttrium-90
   microspheres in treating hepatic tumours", Eur J Nucl Med 23 (1996) 947.
.. [EANM2022] Weber M et al., EANM procedure guideline for the treatment of liver cancer and liver
   metastases with intra-arterial radioactive compounds, EJNMMI 49 (2022) 1682.
"""

import math

from .. import physics
from ..errors import InputError
from ..params import check_positive

__all__ = [
    "check_fraction",
    "check_positive",
    "mird_dose_gy",
    "mird_activity_gbq",
    "lung_dose_gy",
    "lung_activity_limit_gbq",
    "partition_doses_gy",
    "partition_activity_for_normal_gbq",
    "partition_activity_for_tumor_gbq",
]


def check_fraction(name, value):
    """``value`` as a float in [0, 1); InputError naming ``name`` otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and 0 <= v < 1):
        raise InputError(f"{name} must be a fraction in [0, 1), got {value!r}")
    return v


def _delivered_fraction(lsf, residual_fraction):
    return (1.0 - check_fraction("lung_shunt_fraction", lsf)) * (1.0 - check_fraction("residual_fraction", residual_fraction))


def mird_dose_gy(activity_gbq, mass_kg, lsf, residual_fraction=0.0, k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """Mean dose (Gy) of the perfused volume of mass ``mass_kg`` for an administered ``activity_gbq``."""
    a = float(activity_gbq)
    if not (math.isfinite(a) and a >= 0):
        raise InputError(f"activity_gbq must be a number >= 0, got {activity_gbq!r}")
    return k_gy_kg_per_gbq * a * _delivered_fraction(lsf, residual_fraction) / check_positive("mass_kg", mass_kg)


def mird_activity_gbq(target_gy, mass_kg, lsf, residual_fraction=0.0, k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """Administered activity (GBq) giving the mean dose ``target_gy`` to the perfused mass ``mass_kg``."""
    d = check_positive("target_gy", target_gy)
    return d * check_positive("mass_kg", mass_kg) / (k_gy_kg_per_gbq * _delivered_fraction(lsf, residual_fraction))


def lung_dose_gy(activity_gbq, lsf, lung_mass_kg, residual_fraction=0.0, k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """Mean lung dose (Gy), K A (1 - R) LSF / M_L."""
    lsf = check_fraction("lung_shunt_fraction", lsf)
    r = check_fraction("residual_fraction", residual_fraction)
    return k_gy_kg_per_gbq * float(activity_gbq) * (1.0 - r) * lsf / check_positive("lung_mass_kg", lung_mass_kg)


def lung_activity_limit_gbq(limit_gy, lsf, lung_mass_kg, residual_fraction=0.0, k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """Largest administered activity (GBq) keeping the lung dose at ``limit_gy``; inf when LSF is 0."""
    lsf = check_fraction("lung_shunt_fraction", lsf)
    if lsf == 0:
        return math.inf
    r = check_fraction("residual_fraction", residual_fraction)
    return check_positive("limit_gy", limit_gy) * check_positive("lung_mass_kg", lung_mass_kg) / (k_gy_kg_per_gbq * (1.0 - r) * lsf)


def partition_doses_gy(activity_gbq, tumor_mass_kg, normal_mass_kg, tn_ratio, lsf, lung_mass_kg,
                       residual_fraction=0.0, k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """{'tumor', 'normal_liver', 'lung'}: mean doses (Gy) of the partition model at ``activity_gbq``."""
    mt, mn = check_positive("tumor_mass_kg", tumor_mass_kg), check_positive("normal_mass_kg", normal_mass_kg)
    r = check_positive("tn_ratio", tn_ratio)
    d_n = k_gy_kg_per_gbq * float(activity_gbq) * _delivered_fraction(lsf, residual_fraction) / (r * mt + mn)
    return {
        "tumor": r * d_n,
        "normal_liver": d_n,
        "lung": lung_dose_gy(activity_gbq, lsf, lung_mass_kg, residual_fraction, k_gy_kg_per_gbq),
    }


def partition_activity_for_normal_gbq(normal_gy, tumor_mass_kg, normal_mass_kg, tn_ratio, lsf, residual_fraction=0.0,
                                      k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """Administered activity (GBq) giving the normal liver the mean dose ``normal_gy``."""
    mt, mn = check_positive("tumor_mass_kg", tumor_mass_kg), check_positive("normal_mass_kg", normal_mass_kg)
    r = check_positive("tn_ratio", tn_ratio)
    d = check_positive("normal_gy", normal_gy)
    return d * (r * mt + mn) / (k_gy_kg_per_gbq * _delivered_fraction(lsf, residual_fraction))


def partition_activity_for_tumor_gbq(tumor_gy, tumor_mass_kg, normal_mass_kg, tn_ratio, lsf, residual_fraction=0.0,
                                     k_gy_kg_per_gbq=physics.K_GY_KG_PER_GBQ):
    """Administered activity (GBq) giving the tumour the mean dose ``tumor_gy`` (D_T = r D_N)."""
    r = check_positive("tn_ratio", tn_ratio)
    return partition_activity_for_normal_gbq(check_positive("tumor_gy", tumor_gy) / r, tumor_mass_kg, normal_mass_kg, r, lsf,
                                             residual_fraction, k_gy_kg_per_gbq)
