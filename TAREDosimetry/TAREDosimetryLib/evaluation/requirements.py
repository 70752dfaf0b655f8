"""Inputs a result depends on that must not be silently defaulted.

These inputs used to have defaults that gave a plausible-looking but unfounded number:

- the lung shunt fraction (LSF): a default 0 gave "lung 0.0 Gy: PASS";
- the time from administration to a quantitative (Bq/mL) scan: a default 0 h gave a silent
  decay factor of 1;
- the administered activity: 1800 typed for 1800 MBq gave 1000 times the dose
  (refused in :class:`~TAREDosimetryLib.params.DosimetryParams`);
- the residual fraction: a default 0 inflated every dose of a relative calibration by 1/(1 - R);
- the lung mass of the LSF model without lung segments: a conventional 1000 g decided lung PASS/FAIL;
- the prior lung dose: a default 0 made the cumulative lung rule a PASS on an unknown input;
- the indication: the breast-cancer preset judged any tumour.

:func:`check_required_inputs` refuses a case whose rules need an input that was not given, and
returns the reasons that make a case INCOMPLETE (an input that was not given but that the
calculation used with a stated fallback) and the explicit choices (an LSF of 0, a scan at 0 h)
that the report must show.
"""

from ..errors import InputError
from ..params import USUAL_ACTIVITY_GBQ
from .rules import DEFAULT_PRESET_NOTE

__all__ = [
    "lung_rules", "check_required_inputs", "LSF_NOT_GIVEN", "RESIDUAL_NOT_GIVEN", "LUNG_MASS_NOT_MEASURED",
    "PRIOR_LUNG_DOSE_NOT_GIVEN", "INDICATION_NOT_GIVEN",
]

#: Reason of an INCOMPLETE case whose relative calibration used LSF 0 because none was given.
LSF_NOT_GIVEN = (
    "lung shunt fraction not given: taken as 0 in the calibration (A_ref = A_adm (1 - residual)); "
    "every liver and tumour dose is too high by the factor 1/(1 - LSF)"
)
#: Reason of an INCOMPLETE case whose calibration took the residual fraction as 0 because none was given.
RESIDUAL_NOT_GIVEN = (
    "residual fraction not given: taken as 0 (all of the administered activity reached the patient); if some stayed "
    "in the vial and catheter, every dose computed from A_adm is too high by 1/(1 - residual): give "
    "--residual-fraction (0 is accepted as an explicit choice)"
)
#: Reason of an INCOMPLETE case whose lung rules judge the LSF lung dose on the conventional lung mass.
LUNG_MASS_NOT_MEASURED = (
    "lung mass not measured: conventional 1000 g assumed (no lung segment); give --lung-mass-g or segment the lungs"
)
#: N/A reason of the cumulative lung rule when no prior lung dose is given.
PRIOR_LUNG_DOSE_NOT_GIVEN = "prior lung dose not given (first treatment: give --prior-lung-dose-gy 0)"
#: Reason of an INCOMPLETE case judged with the default preset because nothing chose the thresholds.
INDICATION_NOT_GIVEN = (
    "indication not given: the default thresholds (breast-cancer liver metastases, Deipolyi 2021) were applied; "
    "give --indication or --thresholds"
)


def lung_rules(ruleset, lung_entry_names=()):
    """Rules of ``ruleset`` that judge the lungs: role 'lung', or a segment named in ``lung_entry_names``."""
    names = set(lung_entry_names)
    return [r for r in ruleset.rules if r.role == "lung" or (r.segment and r.segment in names)]


def _lsf_requirement(params, ruleset, lung_from, lung_names):
    """InputError when lung rules would be judged by the LSF model without an LSF."""
    if params.lung_shunt_fraction is not None or lung_from != "lsf":
        return
    judged = lung_rules(ruleset, ("lungs (LSF model)",))
    if not judged:
        return
    alternative = (
        "or --lung-dose-from image to take the lung dose from the lung segments' counts"
        if lung_names else "or segment the lungs and use --lung-dose-from image"
    )
    raise InputError(
        f"lung_shunt_fraction (--lung-shunt-fraction) is not given, but rule {judged[0].label!r} judges the lung dose "
        f"of the LSF model: give the LSF measured on the MAA scan (0 is accepted as an explicit choice: no lung shunt, "
        f"recorded in the report), {alternative}"
    )


def _timing_requirement(params):
    if params.calibration != "absolute" or params.image_decay_corrected:
        return
    if params.hours_since_administration is None:
        raise InputError(
            "absolute calibration (Bq/mL image, e.g. --pet) needs the time from administration to the scan: give "
            "hours_since_administration (--hours-since-administration H; 0 when scanned at administration), or "
            "image_decay_corrected (--decay-corrected) when the image is already decay-corrected to administration"
        )


def check_required_inputs(params, ruleset, lung_from, lung_names=(), rules_note=""):
    """Refuse a case that would need an input not given; list what the report must say.

    Parameters
    ----------
    params : DosimetryParams
    ruleset : RuleSet, the rules the case is judged by.
    lung_from : str, 'lsf' or 'image', the effective source of the lung dose.
    lung_names : sequence of str, the segments with role lung.
    rules_note : str, how the rule set was chosen (:func:`.rules.select_rules`): the default
        preset applied because nothing chose it makes the case INCOMPLETE.

    Returns
    -------
    (reasons, choices, warnings) : three lists of str.  ``reasons``: inputs not given that the
    calculation replaced by a stated fallback (each makes the case INCOMPLETE); ``choices``:
    explicit choices the report shows (an LSF of 0, a scan time of 0 h, a residual of 0, a prior
    lung dose of 0, a lung mass given); ``warnings``: an unusual administered activity run on request.

    Raises
    ------
    InputError
        Relative calibration without the administered activity; absolute calibration without
        the time since administration (and not decay-corrected);
        lung rules judged by the LSF model without an LSF.
    """
    if params.calibration == "relative" and params.administered_activity_gbq is None:
        raise InputError("administered_activity_gbq is required with relative calibration (--administered-activity-gbq)")
    _timing_requirement(params)
    _lsf_requirement(params, ruleset, lung_from, lung_names)
    reasons, choices, warnings = [], [], []
    if params.calibration == "relative" and params.lung_shunt_fraction is None:
        reasons.append(LSF_NOT_GIVEN)
    if params.lung_shunt_fraction == 0:
        choices.append("lung shunt fraction 0 given explicitly (no lung shunt): the LSF lung dose is 0 Gy by this choice")
    if params.calibration == "absolute" and not params.image_decay_corrected and params.hours_since_administration == 0:
        choices.append("time from administration to scan 0 h given explicitly: no decay correction applied")
    _residual_and_lung_inputs(params, ruleset, lung_from, lung_names, reasons, choices)
    if rules_note == DEFAULT_PRESET_NOTE:
        reasons.append(INDICATION_NOT_GIVEN)
    a = params.administered_activity_gbq
    if a is not None and not USUAL_ACTIVITY_GBQ[0] <= a <= USUAL_ACTIVITY_GBQ[1]:
        warnings.append(
            f"administered activity {a:g} GBq is outside the {USUAL_ACTIVITY_GBQ[0]:g}-{USUAL_ACTIVITY_GBQ[1]:g} GBq of Y-90 "
            "radioembolization; run on request (allow_unusual_activity): check the unit (GBq, not MBq)"
        )
    return reasons, choices, warnings


def _residual_and_lung_inputs(params, ruleset, lung_from, lung_names, reasons, choices):
    """Reasons and choices of the residual fraction, the LSF model's lung mass and the prior lung dose."""
    lsf_lung_judged = (lung_from == "lsf" and bool(params.lung_shunt_fraction)
                       and bool(lung_rules(ruleset, ("lungs (LSF model)",))))
    uses_residual = params.calibration == "relative" or lsf_lung_judged  # absolute: only the LSF lung activity
    if uses_residual and params.residual_fraction is None:
        reasons.append(RESIDUAL_NOT_GIVEN)
    elif uses_residual and params.residual_fraction == 0:
        choices.append("residual fraction 0 given explicitly: all of the administered activity reached the patient")
    if lsf_lung_judged and not lung_names:
        if params.default_lung_mass_g is None:
            reasons.append(LUNG_MASS_NOT_MEASURED)
        else:
            choices.append(f"lung mass {params.default_lung_mass_g:g} g given (--lung-mass-g; no lung segment) for the LSF lung dose")
    if params.prior_lung_dose_gy == 0:
        choices.append("prior lung dose 0 Gy given explicitly (first treatment): the cumulative lung dose is this treatment's")
