"""The model of each territory of a multi-territory plan: typed-in volumes (MIRD or partition), or
the MAA counts of the territory's segment (voxel model).

From images, each territory's injection is the MAA SPECT counts whose voxel centres lie in the
territory's segment (the MAA of every injection imaged together, told apart by the territory
segments; or one MAA SPECT per injection with the others' counts outside the segment).  That case
is computed once at 1 GBq with the territory's LSF (relative calibration over those counts only),
and scaled as :class:`~.voxel.VoxelDoseModel` does.  The territory's model holds the territory
segment (role perfused), the segments lying mostly (>= 50 % of their voxels) inside it, and the
organs that span territories (:data:`~.territories.JOINT_ROLES`).
"""

import numpy as np

from ..errors import InputError
from ..evaluation.roles import assign_roles
from ..pipeline import run_case
from ..resample import resample_mask
from .compartments import check_positive
from .models import Compartment, MirdModel, PartitionModel, shared_model_arguments
from .territories import JOINT_ROLES, Territory, territory_rule
from .voxel import VoxelDoseModel

__all__ = ["calculator_territories", "image_territories", "combined_case", "territory_members", "TerritoryVoxelModel", "INSIDE_FRACTION",
           "JointOrgansModel"]

#: A segment belongs to a territory when at least this fraction of its voxels lie inside it.
INSIDE_FRACTION = 0.5


def _closed_form(spec, inputs, params, lsf, whole_normal_kg):
    rho = inputs.density_g_ml / 1000.0
    common = shared_model_arguments(inputs, params, lsf)
    perfused = check_positive(f"--territory {spec.name!r} perfused_ml", spec.perfused_volume_ml)
    partition = spec.tumor_volume_ml is not None and spec.tn_ratio is not None and spec.target_gy is None
    if partition:
        if not spec.tumor_volume_ml < perfused:
            raise InputError(f"--territory {spec.name!r}: tumor_ml ({spec.tumor_volume_ml:g}) must be below perfused_ml ({perfused:g})")
        model = PartitionModel(spec.tumor_volume_ml * rho, (perfused - spec.tumor_volume_ml) * rho, spec.tn_ratio,
                               whole_normal_mass_kg=whole_normal_kg, name=f"partition ({spec.name})", **common)
        return model, "partition"
    return MirdModel(perfused * rho, perfused_name=spec.name, name=f"mird ({spec.name})", **common), "mird"


class JointOrgansModel:
    """A closed-form territory model with its share of the organs that span territories.

    The inner model (MIRD or partition) gives the territory's own compartments and its lungs; this
    adds the whole liver (every GBq that reaches this territory's liver tissue) and the whole normal
    liver (the part of it outside the tumours: all of it for a territory without tumour, the
    partition model's normal share for one with tumour volume and T/N).  When that share is not
    known (a tumour volume without T/N) the normal-liver dose is NaN with the reason in
    ``Compartment.missing``, so that the joint rule is N/A rather than judged on a partial sum.

    Parameters
    ----------
    inner : MirdModel or PartitionModel.
    liver_mass_kg, whole_normal_mass_kg : float, the whole liver and the whole normal liver (liver minus
        every territory's tumours), kg.
    normal_share : float in [0, 1] or None, the fraction of the territory's liver activity in normal liver.
    missing : str, why ``normal_share`` is None.
    """

    def __init__(self, inner, liver_mass_kg, whole_normal_mass_kg, normal_share, missing=""):
        self.inner, self.name, self.notes = inner, inner.name, list(getattr(inner, "notes", []))
        self.liver_mass_kg, self.whole_normal_mass_kg = float(liver_mass_kg), float(whole_normal_mass_kg)
        self.normal_share, self.missing = normal_share, missing

    def predict(self, activity_gbq):
        own = [c for c in self.inner.predict(activity_gbq) if c.role not in ("liver", "normal_liver")]
        m = self.inner
        a_liver = activity_gbq * (1.0 - m.residual_fraction) * (1.0 - m.lsf)
        k = m.k_gy_kg_per_gbq
        whole = Compartment("whole liver", "liver", {"mean_gy": k * a_liver / self.liver_mass_kg, "mass_g": 1000.0 * self.liver_mass_kg,
                                                      "activity_gbq": a_liver})
        a_n = float("nan") if self.normal_share is None else a_liver * self.normal_share
        normal = Compartment("whole normal liver", "normal_liver", {"mean_gy": k * a_n / self.whole_normal_mass_kg,
                                                                     "mass_g": 1000.0 * self.whole_normal_mass_kg, "activity_gbq": a_n},
                             missing=self.missing if self.normal_share is None else "")
        return own + [whole, normal]


def _normal_share(spec):
    """(fraction of a typed-in territory's liver activity in normal liver or None, why None, note)."""
    if spec.tumor_volume_ml is None:
        return 1.0, "", f"territory {spec.name}: no tumor_ml given, its whole perfused volume counts as normal liver"
    if spec.tn_ratio is None:
        return None, (f"territory {spec.name!r} holds a tumour (tumor_ml) without T/N (tn): its share of the normal-liver dose "
                      "is not known"), ""
    t, n = spec.tumor_volume_ml, spec.perfused_volume_ml - spec.tumor_volume_ml
    return n / (spec.tn_ratio * t + n), "", ""


def calculator_territories(specs, inputs, params):
    """:class:`Territory` list from typed-in territories (``TerritorySpec`` with perfused_ml).

    A territory with tumor_ml and tn (and no target_gy of its own) gets the partition model,
    otherwise the MIRD model of its perfused volume; its LSF defaults to the plan's.  Each model
    also holds its share of the whole liver and of the whole normal liver (the liver minus every
    territory's tumours), :class:`JointOrgansModel`: a territory without tumour counts wholly as
    normal liver."""
    tumours = sum(s.tumor_volume_ml or 0.0 for s in specs)
    perfused = sum(s.perfused_volume_ml or 0.0 for s in specs)
    if perfused > inputs.liver_volume_ml * (1 + 1e-9):
        raise InputError(f"the territories' perfused volumes ({perfused:g} mL) exceed --liver-volume-ml ({inputs.liver_volume_ml:g})")
    whole_normal_kg = (inputs.liver_volume_ml - tumours) * inputs.density_g_ml / 1000.0
    out = []
    for spec in specs:
        lsf = inputs.lsf.value if spec.lung_shunt_fraction is None else spec.lung_shunt_fraction
        model, kind = _closed_form(spec, inputs, params, lsf, whole_normal_kg)
        share, missing, note = _normal_share(spec)
        model = JointOrgansModel(model, inputs.mass_kg("liver"), whole_normal_kg, share, missing)
        rules = (territory_rule(spec.name, spec.target_gy),) if spec.target_gy is not None else ()
        notes = [f"territory {spec.name}: {kind} model, LSF {100 * lsf:.1f} %"] + ([note] if note else [])
        out.append(Territory(spec.name, model, lsf, rules, notes=notes))
    return out


class TerritoryVoxelModel:
    """A :class:`VoxelDoseModel` of one injection, showing only the territory's compartments."""

    def __init__(self, base_model, names, territory):
        self.base, self.names, self.territory = base_model, list(names), territory
        self.name = f"voxel ({territory})"
        self.notes = list(base_model.notes)

    def predict(self, activity_gbq):
        return [c for c in self.base.predict(activity_gbq) if c.name in self.names or c.role in JOINT_ROLES]


def _fraction_inside(segmentation, name, territory):
    box = segmentation.bbox(name)
    if box is None:
        return 0.0
    seg = segmentation.mask(name, box)
    return float(np.count_nonzero(seg & segmentation.mask(territory, box))) / max(1, int(np.count_nonzero(seg)))


def territory_members(segmentation, territory, role_of):
    """Segment names of one territory's model: itself, the joint organs, and the segments mostly inside it."""
    out = []
    for n in segmentation.names:
        if role_of[n] == "ignore":
            continue
        if n == territory or role_of[n] in JOINT_ROLES or _fraction_inside(segmentation, n, territory) >= INSIDE_FRACTION:
            out.append(n)
    return out


def _territory_counts(spect, segmentation, territory):
    box = segmentation.bbox(territory)
    if box is None:
        raise InputError(f"territory segment {territory!r} is empty")
    full = np.zeros(segmentation.grid.shape, bool)
    full[box] = segmentation.mask(territory, box)
    inside = resample_mask(full, segmentation.grid, spect.grid)
    counts = np.where(inside, np.clip(np.asarray(spect.array, np.float32), 0, None), np.float32(0))
    if not counts.sum() > 0:
        raise InputError(f"territory segment {territory!r} holds no MAA counts")
    return spect.with_array(counts.astype(np.float32), name=f"MAA counts of {territory}")


def _image_roles(segmentation, specs, roles):
    missing = [s.name for s in specs if s.name not in segmentation.names]
    if missing:
        raise InputError(f"--territory: no segment named {', '.join(repr(m) for m in missing)}; segments: {', '.join(segmentation.names)}")
    typed = [s.name for s in specs if s.perfused_volume_ml is not None or s.tumor_volume_ml is not None or s.tn_ratio is not None]
    if typed:
        raise InputError(f"--territory {typed[0]!r}: from images the volumes and T/N are measured; give only lsf and target_gy")
    return dict(roles or {}, **{s.name: "perfused" for s in specs})


def image_territories(spect, segmentation, params, specs, *, roles=None, ct=None, rules=None, lsf_default=None, progress=None):
    """(list of :class:`Territory`, {territory: CaseResult at 1 GBq}) from the MAA SPECT and the territory segments.

    Parameters
    ----------
    spect : Volume, MAA SPECT counts.
    segmentation : Segmentation holding one segment per territory.
    params : DosimetryParams (method, densities, residual...).
    specs : list of TerritorySpec (names of segments; optional lsf and target_gy each).
    lsf_default : float, the LSF of a territory without its own.
    """
    all_roles = _image_roles(segmentation, specs, roles)
    role_of = assign_roles(segmentation.names, all_roles)
    out, bases = [], {}
    for i, spec in enumerate(specs):
        lsf = lsf_default if spec.lung_shunt_fraction is None else spec.lung_shunt_fraction
        if lsf is None:
            raise InputError(f"territory {spec.name!r}: give its LSF (--territory '{spec.name}: lsf=0.05') or --lung-shunt-fraction")
        if progress is not None:
            progress(i / len(specs), f"MAA case of territory {spec.name} at 1 GBq")
        p = params.replace(calibration="relative", administered_activity_gbq=1.0, lung_shunt_fraction=lsf, reference_region="image")
        base = run_case(_territory_counts(spect, segmentation, spec.name), segmentation, params=p, roles=all_roles, ct=ct, rules=rules)
        bases[spec.name] = base
        members = territory_members(segmentation, spec.name, role_of)
        rules_t = (territory_rule(spec.name, spec.target_gy),) if spec.target_gy is not None else ()
        out.append(Territory(spec.name, TerritoryVoxelModel(VoxelDoseModel(base), members, spec.name), lsf, rules_t,
                             notes=[f"territory {spec.name}: MAA counts of its segment, LSF {100 * lsf:.1f} %; segments "
                                    + ", ".join(m for m in members if role_of[m] not in JOINT_ROLES)]))
    return out, bases


def combined_case(spect, segmentation, params, bases, activities_gbq, *, roles=None, ct=None, rules=None, specs=(), inputs=None,
                  assumptions=()):
    """The CaseResult of every territory's injection together: dose = sum of each territory's dose
    per GBq times its activity; administered activity the total, LSF the activity-weighted one (so
    the lung dose is the sum of the territories'); a prediction (phase 'pre' unless given).
    ``inputs``: the input record (files, description); ``inputs.plan`` records the territories'
    activities and ``assumptions`` (clinical inputs the plan assumed, each an INCOMPLETE reason)."""
    total = float(sum(activities_gbq.values()))
    if not total > 0:
        raise InputError("the territories' activities add up to 0 GBq")
    names = list(bases)
    dose = sum(bases[n].dose_gy.array.astype(np.float64) * (activities_gbq[n] / bases[n].params.administered_activity_gbq) for n in names)
    lsf = sum(activities_gbq[n] * bases[n].params.lung_shunt_fraction for n in names) / total
    p = params.replace(calibration="relative", administered_activity_gbq=total, lung_shunt_fraction=lsf, phase=params.phase or "pre")
    all_roles = dict(roles or {}, **{n: "perfused" for n in names})
    dose_vol = bases[names[0]].dose_gy.with_array(dose.astype(np.float32), name="dose (all territories)", unit="Gy")
    split = {n: activities_gbq[n] for n in names}
    record = dict(inputs or {}, territories=split, plan={"model": "territories", "activities_gbq": split, "assumptions": list(assumptions)})
    case = run_case(spect, segmentation, params=p, roles=all_roles, ct=ct, rules=rules, dose_gy=dose_vol, inputs=record)
    case.input_reasons += [a for a in assumptions if a not in case.input_reasons]
    return case
