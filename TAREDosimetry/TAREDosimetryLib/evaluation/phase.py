"""Is a case a prediction or a verification?

The same numbers mean different things before and after a treatment: from a Tc-99m MAA SPECT
(planning) the doses are a *prediction* of what Y-90 microspheres would deliver (MAA and
microspheres distribute differently), from a Y-90 PET or Bremsstrahlung SPECT they are a
*verification* of the dose delivered.  The report says which, from ``params.phase`` when given
(``--phase pre|post``), else from what the inputs say: a PET image is a Y-90 PET (post); a DICOM
activity image whose radiopharmaceutical header names Tc-99m (pre) or Y-90 (post), by the
radionuclide's name or its half-life; names of the image files or their series descriptions that
say MAA / Tc-99m / planning (pre) or Bremsstrahlung / Y-90 / post-treatment (post).  When nothing
says, the report says so.
"""

import os
import re

from ..physics import Y90_HALF_LIFE_H

__all__ = ["PHASE_TITLES", "case_phase"]

#: Tc-99m half-life, h (ICRP Publication 107, 2008: 6.015 h; the DICOM radiopharmaceutical header
#: gives it in seconds); a header half-life within 10 % of it names Tc-99m (MAA: a planning scan).
TC99M_HALF_LIFE_H = 6.015
_HALF_LIFE_TOLERANCE = 0.10

PHASE_TITLES = {
    "pre": "Pre-treatment prediction (planning)",
    "post": "Post-treatment verification (delivered dose)",
    None: "Treatment phase not stated",
}
_PRE = re.compile(r"(?<![a-z])(maa|tc-?99m?|99m-?tc|technetium|planning|pre[-_ ]?(treatment|therapy|tx)|work-?up)(?![a-z])")
_POST = re.compile(r"(?<![a-z])(brems\w*|y-?90|90-?y|yttrium|post[-_ ]?(treatment|therapy|tx)|verification)(?![a-z])")


def _named_phase(texts):
    """('pre'|'post', the word that says it) from file names and descriptions, or (None, '')."""
    for text in texts:
        low = str(text).lower()
        pre, post = _PRE.search(low), _POST.search(low)
        if pre and not post:
            return "pre", pre.group(0)
        if post and not pre:
            return "post", post.group(0)
    return None, ""


def _dicom_phase(inputs):
    """('pre'|'post', why) from the activity image's DICOM header (radionuclide, half-life, series
    description), or (None, '')."""
    record = inputs.get("activity_dicom") or {}
    header = record.get("header") or {}
    half_life_s = header.get("radionuclide_half_life_s")
    if half_life_s:
        hours = float(half_life_s) / 3600.0
        for phase, ref, name in (("pre", TC99M_HALF_LIFE_H, "Tc-99m"), ("post", Y90_HALF_LIFE_H, "Y-90")):
            if abs(hours - ref) <= _HALF_LIFE_TOLERANCE * ref:
                return phase, f"the DICOM header's radionuclide half-life is {hours:.4g} h ({name})"
    texts = [header.get("radionuclide") or "", header.get("radionuclide_code") or "", (record.get("source") or {}).get("description") or ""]
    phase, word = _named_phase(texts)
    return (phase, f"the DICOM header says {word!r}") if phase else (None, "")


def case_phase(params, inputs):
    """The phase of a case and what it rests on.

    Parameters
    ----------
    params : DosimetryParams (its ``phase``, when not None, decides).
    inputs : dict, the result's ``inputs`` record (modality, activity_image, description, and
        ``phase_basis``: why a phase that the user did not give was set, e.g. by ``plan``).

    Returns
    -------
    dict: ``phase`` ('pre', 'post' or None), ``title`` (words for the report) and ``basis``
    (why: 'given (--phase)', 'the activity image is a PET', the DICOM header, 'the input name says ...', or what
    to do when nothing says).
    """
    inputs = inputs or {}
    given = getattr(params, "phase", None)
    if given is not None:  # a command that sets the phase itself (an MAA plan) records why in inputs['phase_basis']
        phase, basis = given, inputs.get("phase_basis") or "given (--phase)"
    elif inputs.get("modality") == "pet":
        phase, basis = "post", "the activity image is a PET (Y-90 PET)"
    elif _dicom_phase(inputs)[0] is not None:
        phase, basis = _dicom_phase(inputs)
    else:
        image = str(inputs.get("activity_image") or "")
        phase, word = _named_phase([os.path.basename(image), image, inputs.get("description") or ""])
        basis = (f"the input name or description says {word!r}" if phase else
                 "nothing in the inputs says whether this is an MAA prediction or a Y-90 verification; give --phase pre|post")
    return {"phase": phase, "title": PHASE_TITLES[phase], "basis": basis}
