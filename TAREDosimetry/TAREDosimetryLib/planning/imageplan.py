"""Planning from the MAA SPECT/CT: the case at 1 GBq, the LSF, the measured inputs, the voxel model,
and the case a plan writes (the MAA case at the recommended activity), which ``rerun`` reproduces.

The written case records in ``inputs`` the files with their SHA-256 (as ``run``: modality
``spect``), ``description`` "MAA SPECT (planning)", ``phase_basis`` when the plan set the phase,
and ``plan`` (:func:`plan_case`): the model, the recommended activity, the reference activity the
MAA case was computed at, and the clinical inputs the plan assumed.  Its rule set is the plan's
``case_rules`` (every rule ``run`` would judge these inputs by, the plan's own targets included),
so its status is the one ``run`` gives at that activity (INCOMPLETE when a conditional rule's
clinical input is missing, or the indication was assumed).
"""

import dataclasses

from ..errors import InputError
from ..evaluation.roles import assign_roles
from ..imaging.caseinputs import CaseInputs, read_case_inputs
from ..pipeline import run_case
from .inputs import inputs_from_case
from .lsf import LsfEstimate, lsf_from_spect
from .voxel import VoxelDoseModel

__all__ = ["REFERENCE_ACTIVITY_GBQ", "LSF_SOURCES", "MAA_DESCRIPTION", "PLAN_PHASE_BASIS", "case_lsf", "voxel_model_from_images",
           "read_maa_inputs", "maa_inputs_record", "plan_case", "base_case"]

#: Activity at which the MAA case is computed once; every other activity is a scaling of it.
REFERENCE_ACTIVITY_GBQ = 1.0
LSF_SOURCES = ("given", "images")
#: ``inputs.description`` of a plan's case, and why its phase is 'pre' when --phase was not given.
MAA_DESCRIPTION = "MAA SPECT (planning)"
PLAN_PHASE_BASIS = "set by the plan (tare-dosimetry plan): the MAA SPECT case at the planned activity is a prediction"


def read_maa_inputs(spect, segmentation, *, ct=None, labels=None, params, dicom=None, progress=None):
    """:class:`~TAREDosimetryLib.imaging.caseinputs.CaseInputs` of an MAA case, read as ``run`` reads
    a SPECT case (files or DICOM, with the input record and SHA-256 that ``rerun`` checks)."""
    return read_case_inputs(spect, segmentation, ct=ct, labels=labels, modality="spect", params=params, dicom=dicom, progress=progress)


def maa_inputs_record(info, phase_given):
    """The ``inputs`` record of a plan's MAA case: the files' record ``info`` (machine-readable
    modality 'spect'), its description, and why the phase is 'pre' when the user did not say."""
    extra = {"description": MAA_DESCRIPTION}
    if not phase_given:
        extra["phase_basis"] = PLAN_PHASE_BASIS
    return dict(info, **extra)


def base_case(case_inputs, params, *, roles=None, rules=None, inputs=None, progress=None):
    """The MAA case at :data:`REFERENCE_ACTIVITY_GBQ` (``params`` relative, with the LSF and phase
    already set), the read inputs' warnings first."""
    p = params.replace(administered_activity_gbq=REFERENCE_ACTIVITY_GBQ)
    base = run_case(case_inputs.activity, case_inputs.segmentation, params=p, roles=roles, ct=case_inputs.ct, rules=rules, inputs=inputs,
                    progress=progress)
    base.warnings[0:0] = case_inputs.warnings
    return base


def plan_case(model, activity_gbq, rules, *, assumptions=(), plan=None):
    """The case a plan writes: ``model`` (:class:`~.voxel.VoxelDoseModel`) at ``activity_gbq``
    judged by ``rules`` (the prescription's ``case_rules``); ``assumptions`` (clinical inputs the
    plan assumed) make it INCOMPLETE; ``plan`` {model, ...} is recorded in ``inputs.plan``."""
    case = model.case_at(activity_gbq, rules=rules)
    record = dict(plan or {}, activity_gbq=float(activity_gbq), reference_activity_gbq=model.a0_gbq, assumptions=list(assumptions))
    return dataclasses.replace(case, inputs=dict(case.inputs, plan=record),
                               input_reasons=list(case.input_reasons) + [a for a in assumptions if a not in case.input_reasons])


def case_lsf(spect, segmentation, roles, params, source):
    """The LSF estimate: the given ``params.lung_shunt_fraction`` or SPECT/CT counts of the lung and liver segments."""
    if source not in LSF_SOURCES:
        raise InputError(f"--lsf-from must be one of {', '.join(LSF_SOURCES)}, got {source!r}")
    if source == "given":
        if params.lung_shunt_fraction is None:
            raise InputError("--lung-shunt-fraction is required, or --lsf-from images with lung segments")
        return LsfEstimate(params.lung_shunt_fraction, "given")
    role_of = assign_roles(segmentation.names, roles)
    lung = [n for n, r in role_of.items() if r == "lung"]
    liver = [n for n, r in role_of.items() if r == "liver"] or [n for n, r in role_of.items() if r in ("right_lobe", "left_lobe")]
    return lsf_from_spect(spect, segmentation, lung, liver)


def voxel_model_from_images(spect, segmentation, params, *, roles=None, ct=None, rules=None, lsf_source="given", lsf=None,
                            height_cm=None, weight_kg=None, inputs=None, progress=None, case_inputs=None):
    """(VoxelDoseModel, PlanInputs, params used): the MAA case computed once at
    :data:`REFERENCE_ACTIVITY_GBQ` with the LSF of ``lsf_source`` (or the given LsfEstimate ``lsf``,
    e.g. a planar one).  ``case_inputs`` (:func:`read_maa_inputs`) replaces ``spect``,
    ``segmentation`` and ``ct`` and adds the read inputs' warnings to the case."""
    if case_inputs is None:
        case_inputs = CaseInputs(spect, segmentation, ct, params, dict(inputs or {}))
    lsf = lsf or case_lsf(case_inputs.activity, case_inputs.segmentation, roles, params, lsf_source)
    p = params.replace(calibration="relative", administered_activity_gbq=REFERENCE_ACTIVITY_GBQ, lung_shunt_fraction=lsf.value,
                       phase=params.phase or "pre")  # an MAA plan is a prediction
    base = base_case(case_inputs, p, roles=roles, rules=rules, inputs=inputs, progress=progress)
    model = VoxelDoseModel(base)
    plan_inputs = inputs_from_case(base, lsf, height_cm=height_cm, weight_kg=weight_kg)
    return model, plan_inputs, p
