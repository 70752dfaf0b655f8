"""Inputs a result depends on that must not be silently defaulted.

Three inputs used to have defaults that gave a plausible-looking but unfounded number:

- the lung shunt fraction (LSF): a default 0 gave "lung 0.0 Gy: PASS";
- the time from administration to a quantitative (Bq/mL) scan: a default 0 h gave a silent
  decay factor of 1;
- the administered activity: 1800 typed for 1800 MBq gave 1000 times the dose
  (refused in :class:`~TAREDosimetryLib.params.DosimetryParams`).

:func:`check_required_inputs` refuses a case whose rules need an input that was not given, and
returns the reasons that make a case INCOMPLETE (an input that was not given but that the
calculation used with a stated fallback) and the explicit choices (an LSF of 0, a scan at 0 h)
that the report must show.
"""

from ..errors import InputError
from ..params import USUAL_ACTIVITY_GBQ

__all__ = ["lung_rules", "check_required_inputs", "LSF_NOT_GIVEN"]

#: Reason of an INCOMPLETE case whose relative calibration used LSF 0 because none was given.
LSF_NOT_GIVEN = (
    "lung shunt fraction not given: taken as 0 in the calibration (A_ref = A_adm (1 - residual)); "
    "every liver and tumour dose is too high by the factor 1/(1 - LSF)"
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


def check_required_inputs(params, ruleset, lung_from, lung_names=()):
    """Refuse a case that would need an input not given; list what the report must say.

    Parameters
    ----------
    params : DosimetryParams
    ruleset : RuleSet, the rules the case is judged by.
    lung_from : str, 'lsf' or 'image', the effective source of the lung dose.
    lung_names : sequence of str, the segments with role lung.

    Returns
    -------
    (reasons, choices, warnings) : three lists of str.  ``reasons``: inputs not given that the
    calculation replaced by a stated fallback (each makes the case INCOMPLETE); ``choices``:
    explicit choices the report shows (an LSF of 0, a scan time of 0 h); ``warnings``: an
    unusual administered activity run on request.

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
    a = params.administered_activity_gbq
    if a is not None and not USUAL_ACTIVITY_GBQ[0] <= a <= USUAL_ACTIVITY_GBQ[1]:
        warnings.append(
            f"administered activity {a:g} GBq is outside the {USUAL_ACTIVITY_GBQ[0]:g}-{USUAL_ACTIVITY_GBQ[1]:g} GBq of Y-90 "
            "radioembolization; run on request (allow_unusual_activity): check the unit (GBq, not MBq)"
        )
    return reasons, choices, warnings
