"""Planning from the MAA SPECT/CT: the case at 1 GBq, the LSF, the measured inputs, the voxel model."""

from ..errors import InputError
from ..evaluation.roles import assign_roles
from ..pipeline import run_case
from .inputs import inputs_from_case
from .lsf import LsfEstimate, lsf_from_spect
from .voxel import VoxelDoseModel

__all__ = ["REFERENCE_ACTIVITY_GBQ", "LSF_SOURCES", "case_lsf", "voxel_model_from_images"]

#: Activity at which the MAA case is computed once; every other activity is a scaling of it.
REFERENCE_ACTIVITY_GBQ = 1.0
LSF_SOURCES = ("given", "images")


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
                            height_cm=None, weight_kg=None, inputs=None, progress=None):
    """(VoxelDoseModel, PlanInputs, params used): the MAA case computed once at
    :data:`REFERENCE_ACTIVITY_GBQ` with the LSF of ``lsf_source`` (or the given LsfEstimate ``lsf``,
    e.g. a planar one)."""
    lsf = lsf or case_lsf(spect, segmentation, roles, params, lsf_source)
    p = params.replace(calibration="relative", administered_activity_gbq=REFERENCE_ACTIVITY_GBQ, lung_shunt_fraction=lsf.value,
                       phase=params.phase or "pre")  # an MAA plan is a prediction
    base = run_case(spect, segmentation, params=p, roles=roles, ct=ct, rules=rules, inputs=inputs, progress=progress)
    model = VoxelDoseModel(base)
    plan_inputs = inputs_from_case(base, lsf, height_cm=height_cm, weight_kg=weight_kg)
    return model, plan_inputs, p
