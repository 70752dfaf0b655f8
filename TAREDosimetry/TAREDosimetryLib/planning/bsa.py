"""The body-surface-area (BSA) method for resin microspheres: an empirical activity, not a dosimetric one.

SIR-Spheres instructions for use (Sirtex Medical)::

    BSA (m^2)  = 0.20247 H^0.725 W^0.425                 (H height in m, W weight in kg)
    A (GBq)    = (BSA - 0.2) + V_T / (V_T + V_N)         (whole liver)
    A_lobe     = A x V_perfused / V_liver                (lobar treatment: fraction of the liver by volume)

and the activity is reduced for the lung shunt: LSF < 10 %: none; 10-15 %: -20 %; 15-20 %: -40 %;
> 20 %: do not treat.  The method ignores the tumour-to-normal ratio and the absorbed doses it gives
(Kao et al., Ann Nucl Med 25 (2011) 455; Lam et al., JVIR 25 (2014) 1085): the plan says so.
"""

from ..errors import InputError
from .compartments import check_fraction, check_positive

__all__ = ["BSA_LSF_REDUCTIONS", "bsa_m2", "bsa_lsf_reduction", "bsa_activity_gbq", "EMPIRICAL_NOTE"]

#: (upper LSF bound exclusive, activity reduction) rows of the SIR-Spheres instructions for use;
#: LSF above the last bound: do not treat.
BSA_LSF_REDUCTIONS = ((0.10, 0.0), (0.15, 0.20), (0.20, 0.40))
EMPIRICAL_NOTE = ("BSA method: empirical activity of the SIR-Spheres instructions for use, not a dosimetric method "
                  "(it ignores the tumour-to-normal ratio; the absorbed doses it gives vary widely between patients)")


def bsa_m2(height_cm, weight_kg):
    """Body surface area (m^2) by the formula of the SIR-Spheres instructions for use, 0.20247 H^0.725 W^0.425."""
    h_m = check_positive("height_cm", height_cm) / 100.0
    w = check_positive("weight_kg", weight_kg)
    if not (0.5 <= h_m <= 2.5):
        raise InputError(f"height_cm must be between 50 and 250 cm, got {height_cm!r}")
    if not (10 <= w <= 400):
        raise InputError(f"weight_kg must be between 10 and 400 kg, got {weight_kg!r}")
    return 0.20247 * h_m ** 0.725 * w ** 0.425


def bsa_lsf_reduction(lsf):
    """(fraction by which the BSA activity is reduced, or None for 'do not treat', rule text)."""
    lsf = check_fraction("lung_shunt_fraction", lsf)
    lo = 0.0
    for upper, reduction in BSA_LSF_REDUCTIONS:
        if lsf < upper:
            return reduction, f"LSF {100 * lsf:.1f} % in [{100 * lo:g}, {100 * upper:g}) %: activity reduced by {100 * reduction:g} %"
        lo = upper
    return None, f"LSF {100 * lsf:.1f} % > {100 * lo:g} %: do not treat (SIR-Spheres instructions for use)"


def bsa_activity_gbq(height_cm, weight_kg, tumor_volume_ml, liver_volume_ml, lsf, perfused_volume_ml=None):
    """Activity of the BSA method and how it was reached.

    Parameters
    ----------
    height_cm, weight_kg : float
    tumor_volume_ml : float, tumour volume (mL), part of ``liver_volume_ml``.
    liver_volume_ml : float, whole liver volume, tumours included (mL).
    lsf : float, lung shunt fraction.
    perfused_volume_ml : float, optional; a lobar treatment scales by perfused / liver volume.

    Returns
    -------
    dict with activity_gbq (None when the LSF forbids treatment), bsa_m2, whole_liver_gbq,
    lobar_fraction, lsf_reduction, steps (list of str).
    """
    v_t = float(tumor_volume_ml)
    v_l = check_positive("liver_volume_ml", liver_volume_ml)
    if not 0 <= v_t < v_l:
        raise InputError(f"tumor_volume_ml must be >= 0 and below the liver volume ({v_l:g} mL), got {tumor_volume_ml!r}")
    bsa = bsa_m2(height_cm, weight_kg)
    whole = (bsa - 0.2) + v_t / v_l  # V_T / (V_T + V_N) with V_N = V_liver - V_T
    frac = 1.0 if perfused_volume_ml is None else check_positive("perfused_volume_ml", perfused_volume_ml) / v_l
    if frac > 1.0 + 1e-9:
        raise InputError(f"perfused_volume_ml ({perfused_volume_ml:g}) exceeds the liver volume ({v_l:g} mL)")
    reduction, text = bsa_lsf_reduction(lsf)
    steps = [f"BSA = 0.20247 x {height_cm / 100:g}^0.725 x {weight_kg:g}^0.425 = {bsa:.4f} m2",
             f"whole-liver activity = (BSA - 0.2) + {v_t:g}/{v_l:g} = {whole:.4f} GBq"]
    if frac < 1.0:
        steps.append(f"lobar fraction by volume {frac:.4f}")
    steps.append(text)
    activity = None if reduction is None else whole * frac * (1.0 - reduction)
    return {"activity_gbq": activity, "bsa_m2": bsa, "whole_liver_gbq": whole, "lobar_fraction": frac,
            "lsf_reduction": reduction, "steps": steps}
