"""One dosimetry case, from images and segments to metrics and PASS/FAIL, as named steps.

:func:`run_case` reads as the data flow; each step is a function of its own that can be
tested and timed alone::

    check_inputs          activity image, CT and segmentation are usable and overlap
    resolve_roles         every segment's role (guessed from its name, or given)
    check_required_inputs inputs that must not be defaulted (LSF, scan time)  (evaluation.requirements)
    build_metrics_grid    the segment regions on the metrics grid        (evaluation.sampling)
    whole_liver_step      the whole liver: liver parts and the tumours in them (evaluation.liver)
    derive_normal_liver   whole liver minus tumours, when no normal-liver segment exists
    derive_perfused_normal perfused minus tumours, when no perfused-normal segment exists
    activity_step         activity map, GBq per voxel, on the activity grid    (dose.activity)
    lsf_source_step       an LSF not given taken from the image's counts (lung dose from the image)
    density_step          density map, g/mL, on the activity grid (constant or CT) (dose.density)
    dose_step             dose map, Gy, on the activity grid (LDM or DVK)     (dose.dosemap)
    dose_method_check     warnings on the dose method for the image (DVK on PET/SPECT)
    segment_results_step  dose, density and activity read on the metrics grid; metrics + DVH
    tumour_lobes_step     share of each tumour's volume in the right and left lobe segments
    lung_step             lung dose: LSF model, or the lungs of the image as one organ
    partial_volume_step   segments too small for the resolution; RC-corrected tumour means (evaluation.partial_volume)
    tn_ratio_step         tumour-to-normal-liver ratios
    rules_step            rule evaluations (PASS/FAIL/N/A with reasons and sources) (evaluation.rules)
    scope_step            the thresholds' scope vs the case (warnings)   (evaluation.scope)

The metrics grid and its sampling are described in :mod:`.evaluation.sampling`.
"""

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .dose import activity as act
from .dose.density import averaged_density_map_g_ml, density_map_g_ml
from .dose.dosemap import dose_computation_record, dose_map_gy
from .errors import GeometryError, InputError
from .evaluation.liver import whole_liver
from .evaluation.lung import MIN_PLAUSIBLE_LUNG_MASS_G, lsf_lung_mass_g
from .evaluation.metrics import segment_metrics, uniform_metrics
from .evaluation.partial_volume import apply_partial_volume
from .evaluation.requirements import (
    INDICATION_NOT_GIVEN, LSF_NOT_GIVEN, LUNG_MASS_NOT_MEASURED, PRIOR_LUNG_DOSE_NOT_GIVEN, check_required_inputs,
)
from .evaluation.results import CaseResult, SegmentResult
from .evaluation.roles import assign_roles, unrecognised_names
from .evaluation.rules import DEFAULT_PRESET_NOTE, evaluate_rules, select_rules
from .evaluation.sampling import fraction_in_box, lung_mask_on_grid, make_sampler
from .evaluation.scope import scope_warnings
from .params import DosimetryParams
from .resample import grid_inside, inside_mask
from .volume import Volume, uniform_array, uniform_value

__all__ = [
    "run_case",
    "evaluate_dose_case",
    "CaseRoles",
    "check_inputs",
    "check_not_label_map",
    "resolve_roles",
    "build_metrics_grid",
    "whole_liver_step",
    "derive_normal_liver",
    "derive_perfused_normal",
    "partial_volume_step",
    "scope_step",
    "activity_step",
    "lsf_source_step",
    "density_step",
    "dose_step",
    "dose_method_check",
    "segment_results_step",
    "tumour_lobes_step",
    "lung_step",
    "tn_ratio_step",
    "rules_step",
    "DERIVED_NORMAL_LIVER",
    "DERIVED_PERFUSED_NORMAL",
    "WHOLE_LIVER_ENTRY",
    "LUNG_LSF_ENTRY",
    "LUNG_ALL_ENTRY",
]

DERIVED_NORMAL_LIVER = "normal liver (derived)"
DERIVED_PERFUSED_NORMAL = "perfused normal liver (derived)"
WHOLE_LIVER_ENTRY = "whole liver (derived)"
LUNG_LSF_ENTRY = "lungs (LSF model)"
LUNG_ALL_ENTRY = "lungs (all segments)"
#: Fraction of a segment that may lie outside the activity image before the case is refused.
MAX_OUTSIDE_FRACTION = 0.005
#: Total activities (GBq) outside this range make an absolute-calibration image suspect (units).
PLAUSIBLE_Y90_GBQ = (0.05, 20.0)
#: Colours of the entries the engine adds (derived normal liver, lungs as one organ).
_NORMAL_LIVER_COLOR = (0.56, 0.79, 0.49)
_LIVER_COLOR = (0.87, 0.51, 0.40)
_LUNG_COLOR = (0.44, 0.72, 0.82)


@dataclass
class CaseRoles:
    """The role of every segment of a case, and the groups the steps use.

    role_of : {segment name: role}; used : names measured (role not 'ignore'), in order;
    lung_from : 'lsf' or 'image' (the effective lung-dose source); derived : True when
    :data:`DERIVED_NORMAL_LIVER` was added; whole_liver : the segments whose union is the whole
    liver (:mod:`.evaluation.liver`); notes : {derived entry: what it is}; parts_of_whole :
    liver segments that role-based rules skip because :data:`WHOLE_LIVER_ENTRY` is the whole.
    """

    role_of: dict
    used: list
    lung_from: str
    derived: bool = False
    by_role: dict = field(default_factory=dict)
    whole_liver: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    parts_of_whole: list = field(default_factory=list)

    def __post_init__(self):
        self.by_role = {}
        for n in self.used:
            self.by_role.setdefault(self.role_of[n], []).append(n)

    @property
    def tumors(self):
        return self.by_role.get("tumor", [])

    @property
    def liver_names(self):
        """The liver segments (role liver), else the lobes."""
        return self.by_role.get("liver") or (self.by_role.get("right_lobe", []) + self.by_role.get("left_lobe", []))

    @property
    def lung_names(self):
        return [n for n in self.used if self.role_of[n] == "lung"]


def _progress(cb, fraction, message):
    if cb is not None:
        cb(float(fraction), message)


def _bounds_text(grid):
    lo, hi = grid.physical_bounds_mm()
    return f"{np.round(lo, 1).tolist()}..{np.round(hi, 1).tolist()} mm"


# -- steps ------------------------------------------------------------------------------------
def check_inputs(activity, segmentation, ct, what):
    """Refuse an activity image that is not a finite Volume, a non-finite CT, a segmentation
    that does not overlap the image, and a segmentation without segments."""
    if not isinstance(activity, Volume):
        raise InputError(f"{what} must be a Volume, got {type(activity).__name__}")
    act.check_finite(activity, what)
    if ct is not None:
        act.check_finite(ct, "CT image")
    if segmentation.grid.overlap_fraction(activity.grid) <= 0:
        raise GeometryError(
            f"the segmentation ({segmentation.source or 'segments'}) and the {what} do not overlap in physical "
            f"space (segmentation bounds {_bounds_text(segmentation.grid)}, image bounds "
            f"{_bounds_text(activity.grid)}, LPS)"
        )
    if not segmentation.names:
        raise InputError(
            f"the segmentation ({segmentation.source or 'segments'}) holds no segments (e.g. a label map of zeros, "
            "or a label table that names none of its labels)"
        )
    check_not_label_map(activity, segmentation, what)


def check_not_label_map(activity, segmentation, what):
    """Refuse an activity image that is a label layer of the segmentation (the label map given as
    the SPECT/PET): same grid, the same voxel values, and at least two labels in it (a uniform
    one-segment phantom equal to its mask is a legitimate test image)."""
    if not activity.grid.same_as(segmentation.grid):
        return
    a = activity.array
    for layer in segmentation.layers:
        if layer.shape == a.shape and np.array_equal(a[:2], layer[:2]) and np.array_equal(a, layer):
            if np.unique(layer[layer > 0]).size >= 2:
                raise InputError(
                    f"the {what} holds exactly the label values of the segmentation ({segmentation.source or 'segments'}) "
                    "on its grid: was the label map given as the activity image? Give the SPECT/PET with --spect/--pet "
                    "and the label map with --segmentation"
                )


def resolve_roles(segmentation, roles, params, warnings=None):
    """:class:`CaseRoles` from the segment names and the user's overrides ``roles``; names whose
    role could not be guessed (left as 'other') are listed in ``warnings``."""
    role_of = assign_roles(segmentation.names, roles)
    unknown = unrecognised_names(segmentation.names, roles)
    if unknown and warnings is not None:
        warnings.append(
            f"role not recognised from the name of segment(s) {', '.join(repr(n) for n in unknown)}: role 'other' "
            f"(reported, judged by no rule); set roles with --role \"NAME=ROLE\" if they are liver, tumour, lung..."
        )
    used = [n for n in segmentation.names if role_of[n] != "ignore"]
    if not used:
        raise InputError("every segment has role 'ignore': nothing to measure")
    lung_from = params.effective_lung_dose_from
    if lung_from == "lsf" and params.calibration == "absolute" and params.administered_activity_gbq is None:
        raise InputError(
            "administered_activity_gbq is required by the LSF lung model (lung_dose_from 'lsf') with absolute "
            "calibration: give --administered-activity-gbq, or --lung-dose-from image"
        )
    return CaseRoles(role_of, used, lung_from)


def build_metrics_grid(segmentation, activity_grid, roles, params, what, warnings):
    """The metrics-grid sampler of the measured segments (``params.sampling``); refuses empty
    segments and segments more than :data:`MAX_OUTSIDE_FRACTION` outside the image (warns below that)."""
    sampler = make_sampler(segmentation, activity_grid, roles.used, params.sampling)
    if sampler.empty:
        raise InputError(
            f"segment(s) {', '.join(repr(n) for n in sampler.empty)} are empty (no voxels); remove them or give them "
            f"role ignore (e.g. --role \"{sampler.empty[0]}=ignore\")"
        )
    lung_names = roles.lung_names
    for n in roles.used:
        if roles.lung_from == "lsf" and n in lung_names:
            continue  # LSF lung model needs only the lung mass, not lung uptake
        outside = 1.0 - sampler.inside_fraction[n]
        if outside > MAX_OUTSIDE_FRACTION:
            raise GeometryError(
                f"segment {n!r}: {100 * outside:.1f} % of its volume lies outside the {what}; the dose there is unknown "
                f"(crop the segment, or give it role ignore: --role \"{n}=ignore\")"
            )
        if outside > 1e-9:
            warnings.append(f"segment {n!r}: {100 * outside:.2f} % of its volume lies outside the activity image (dose 0 there)")
    grid_info = sampler.describe()
    if grid_info.get("supersampling_converged") is False:
        change = grid_info.get("supersampling_relative_change")
        warnings.append(
            "the segmentation is oblique to the activity image: partial-voxel fractions by supersampling "
            f"({grid_info['supersampling_points_per_axis_xyz']} points per axis) "
            + (f"changed by {100 * change:.2f} % at the last refinement" if change is not None else "could not be refined")
            + " (not converged below 1 %)"
        )
    return sampler


def whole_liver_step(segmentation, sampler, roles, warnings):
    """The whole liver (:mod:`.evaluation.liver`): the union of the liver parts and the tumours in
    them.  When the liver segment(s) do not already hold it all (a label map, or lobes only), the
    union is added as :data:`WHOLE_LIVER_ENTRY` (role liver) and the liver segments are reported
    but left to it for role-based rules.  Returns the updated roles."""
    wl = whole_liver(segmentation, roles.role_of, roles.used)
    if wl.tumours_outside:
        warnings.append(
            f"tumour segment(s) {', '.join(repr(t) for t in wl.tumours_outside)} neither overlap nor touch the liver "
            "segments: they are not counted in the whole liver (nor in the reference region 'liver')"
        )
    roles = replace(roles, whole_liver=wl.segments)
    if not wl.segments or wl.liver_segments_are_whole or not wl.anatomical:
        return roles
    if not sampler.add_region(WHOLE_LIVER_ENTRY, wl.segments):
        return roles
    liver_segments = roles.by_role.get("liver", [])
    note = "union of " + ", ".join(wl.segments)
    return replace(
        roles,
        role_of=dict(roles.role_of, **{WHOLE_LIVER_ENTRY: "liver"}),
        used=roles.used + [WHOLE_LIVER_ENTRY],
        notes=dict(roles.notes, **{WHOLE_LIVER_ENTRY: note}),
        parts_of_whole=list(liver_segments),
    )


def derive_normal_liver(sampler, roles, warnings):
    """Add 'whole liver minus tumours' as :data:`DERIVED_NORMAL_LIVER` when the case has a whole
    liver and tumour segments but no normal-liver segment; returns the updated roles."""
    liver = [n for n in roles.whole_liver if roles.role_of[n] != "tumor"]
    if roles.by_role.get("normal_liver") or not liver or not roles.tumors or not roles.liver_names:
        return roles
    if not sampler.add_region(DERIVED_NORMAL_LIVER, roles.whole_liver, minus=roles.tumors):
        warnings.append("normal liver (liver minus tumours) is empty; no normal-liver metrics")
        return roles
    return replace(
        roles,
        role_of=dict(roles.role_of, **{DERIVED_NORMAL_LIVER: "normal_liver"}),
        used=roles.used + [DERIVED_NORMAL_LIVER],
        derived=True,
        notes=dict(roles.notes, **{DERIVED_NORMAL_LIVER: "liver minus tumours"}),
    )


def derive_perfused_normal(sampler, roles, warnings):
    """Add 'perfused minus tumours' as :data:`DERIVED_PERFUSED_NORMAL` (role perfused_normal) when
    the case has a perfused-volume segment but no perfused-normal segment: the resin normal-liver
    limits (EANM 2022 table 3) are limits on the perfused normal liver."""
    perfused = roles.by_role.get("perfused", [])
    if roles.by_role.get("perfused_normal") or not perfused:
        return roles
    if not sampler.add_region(DERIVED_PERFUSED_NORMAL, perfused, minus=roles.tumors):
        warnings.append("perfused normal liver (perfused minus tumours) is empty; no perfused-normal metrics")
        return roles
    return replace(
        roles,
        role_of=dict(roles.role_of, **{DERIVED_PERFUSED_NORMAL: "perfused_normal"}),
        used=roles.used + [DERIVED_PERFUSED_NORMAL],
        notes=dict(roles.notes, **{DERIVED_PERFUSED_NORMAL: "perfused volume minus tumours"}),
    )


def _reference_names(roles, params):
    """Segments of the reference region of relative calibration ('liver': the whole liver)."""
    if params.reference_region == "liver":
        names = [n for n in roles.whole_liver if n in roles.role_of]
    else:
        names = roles.by_role.get("perfused", [])
    if not names:
        raise InputError(
            f"reference region '{params.reference_region}' needs a segment with role "
            f"{'liver (or lobes, normal liver, perfused)' if params.reference_region == 'liver' else 'perfused'}; "
            "roles found: " + ", ".join(f"{n}={roles.role_of[n]}" for n in roles.used)
        )
    return names


def _calibrate(values, counts_m, sampler, roles, params, total_image, summary, out=None, lungs=None):
    """Activity array (GBq per voxel) from clipped image values, relative or absolute (into ``out``
    when given: ``values`` itself when the caller owns them).  ``lungs``: :class:`_LungCounts`
    (relative calibration): the reference 'image' leaves the lung counts out, and the LSF used
    is the image's when none is given and the lung dose comes from the image."""
    if params.calibration == "relative":
        lung_counts = lungs.lung if lungs is not None else 0.0
        if params.reference_region == "image":
            ref_counts, ref_names = total_image - lung_counts, []
        else:
            ref_names = _reference_names(roles, params)
            ref_counts = sampler.integrate(counts_m, sampler.region(ref_names))
        lsf_image = lungs.lsf_used if lungs is not None else None
        act_arr, factor = act.scale_counts_to_gbq(values, ref_counts, params, out=out, lsf=lsf_image)
        summary.update(
            reference_region=params.reference_region,
            reference_region_segments=(", ".join(ref_names) if ref_names else
                                       "whole image" + (" without the lung segments" if lung_counts > 0 else "")),
            reference_counts=ref_counts,
            counts_outside_reference_fraction=max(0.0, 1.0 - ref_counts / total_image),
            gbq_per_count=factor,
            reference_activity_gbq=act.reference_activity_gbq(params, lsf_image),
            lung_activity_gbq=act.lung_activity_gbq(params, lsf_image),
            administered_activity_gbq=params.administered_activity_gbq,
            activity_pct_of="reference region activity A_adm (1 - residual) (1 - LSF)",
        )
    else:
        act_arr, factor = act.absolute_activity_gbq(values, sampler.activity_grid.voxel_volume_ml, params, out=out)  # Bq/mL
        summary.update(decay_correction_factor=factor, activity_pct_of="image activity")
    return act_arr


@dataclass
class _LungCounts:
    """Counts of the lung segments and of the whole liver (relative calibration), the image's LSF
    C_lung / (C_lung + C_liver) (None without both), and the LSF the calibration uses when none is
    given (the image's, with the lung dose from the image; else None)."""

    lung: float
    liver: float
    lsf_image: float = None
    lsf_used: float = None


def _lung_counts(counts_m, sampler, roles, params):
    """:class:`_LungCounts` of a relative calibration, or None (absolute calibration; and when no
    lung counts are needed: no lung segment, or the reference is not 'image' and the lung dose not
    from the image)."""
    by_image = roles.lung_from == "image"
    if params.calibration != "relative" or not roles.lung_names or not (by_image or params.reference_region == "image"):
        return None
    lung = sampler.integrate(counts_m, sampler.region(roles.lung_names))
    liver_names = roles.whole_liver or roles.liver_names
    liver = sampler.integrate(counts_m, sampler.region(liver_names)) if liver_names and by_image else 0.0
    out = _LungCounts(lung, liver)
    if liver_names and by_image:
        out.lsf_image = act.image_lung_shunt_fraction(lung, liver)
    if roles.lung_from == "image" and params.lung_shunt_fraction is None:
        out.lsf_used = out.lsf_image
    return out


def _lung_shunt_notes(lungs, roles, params, summary, warnings):
    """The image's LSF in the summary, and the warnings: a given LSF that the image contradicts
    (lung dose from the image), a reference 'image' without lung segments to leave out."""
    if params.calibration != "relative":
        return
    if params.reference_region == "image" and not roles.lung_names and params.lung_shunt_fraction != 0:
        warnings.append(
            "reference region 'image' without lung segments: A_ref = A_adm (1 - residual) (1 - LSF) is spread over every "
            "count of the image, so the image reference assumes no lung counts in the image (lung counts would take part "
            "of A_ref although the lungs' activity is the shunt's); segment the lungs to leave their counts out"
        )
    if lungs is None or roles.lung_from != "image" or lungs.lsf_image is None:
        return
    summary["image_lung_shunt_fraction"] = lungs.lsf_image
    if params.lung_shunt_fraction is not None:
        summary.update(lung_shunt_fraction_used=params.lung_shunt_fraction, lung_shunt_fraction_source="given")
        disagreement = act.lsf_disagreement(params.lung_shunt_fraction, lungs.lsf_image)
        if disagreement:
            warnings.append(disagreement)
    elif lungs.lsf_used is not None:
        summary.update(lung_shunt_fraction_used=lungs.lsf_used, lung_shunt_fraction_source="image counts")


def lsf_source_step(summary, input_reasons, choices):
    """The LSF not given but taken from the image's counts (lung dose from the image): no longer
    a reason the case is INCOMPLETE, but a choice the report states.  Returns the reasons."""
    if summary.get("lung_shunt_fraction_source") != "image counts":
        return input_reasons
    choices.append(
        f"lung shunt fraction from the image's counts: {100 * summary['lung_shunt_fraction_used']:.2f} % = C_lung / "
        "(C_lung + C_liver) (none given), used in the calibration A_ref = A_adm (1 - residual) (1 - LSF)"
    )
    return [r for r in input_reasons if r != LSF_NOT_GIVEN]


def _activity_warnings(summary, params, what, warnings):
    if params.calibration == "absolute" and not (
        PLAUSIBLE_Y90_GBQ[0] <= summary["image_activity_gbq"] <= PLAUSIBLE_Y90_GBQ[1]
    ):
        warnings.append(
            f"the {what} holds {summary['image_activity_gbq']:.3g} GBq in all (absolute calibration), outside the "
            f"{PLAUSIBLE_Y90_GBQ[0]:g}-{PLAUSIBLE_Y90_GBQ[1]:g} GBq of Y-90 radioembolization: is the image really in Bq/mL "
            "(not counts, kBq/mL or SUV)?"
        )


def _counts_in_liver_and_lungs(counts_m, sampler, roles):
    """Counts of the image inside the whole liver (or liver segments) and the lungs; None without them."""
    names = (roles.whole_liver or roles.liver_names) + roles.lung_names
    # With lungs the union is not needed again (not kept: its indices would stay in memory); without, it is
    # the whole liver, the calibration's reference region next (kept: made once).
    return sampler.integrate(counts_m, sampler.region(names, keep=not roles.lung_names)) if names else None


def _uptake_outside_liver_and_lungs(inside, total_image, summary, warnings):
    if inside is None:
        return
    outside_frac = max(0.0, 1.0 - inside / total_image)
    summary["fraction_outside_liver_and_lungs"] = outside_frac
    if outside_frac > 0.20:
        warnings.append(
            f"{100 * outside_frac:.1f} % of the image counts lie outside the liver and lungs (more than 20 %): "
            "check extrahepatic uptake, the segmentation and the registration"
        )


def activity_step(activity, sampler, roles, params, what, warnings, overwrite=False):
    """(activity Volume in GBq per voxel on the activity grid, summary dict).

    Negative voxels are clipped to 0 (reported); relative calibration spreads
    A_adm (1 - residual) (1 - LSF) over the reference region's counts (the whole liver by
    default), absolute calibration reads Bq/mL with decay correction (:mod:`.dose.activity`).
    With relative calibration the counts outside the reference region are reported as a
    fraction (their activity is not a measured quantity), with absolute calibration the
    image's activity in GBq.  ``overwrite``: the image's float32 array becomes the activity map
    (no second image in memory; see :func:`run_case`).
    """
    agrid = activity.grid
    values, n_neg, neg_frac = act.clip_negative(activity, in_place=overwrite)
    total_image = float(values.sum(dtype=np.float64))
    clipped = act.negative_voxels_warning(n_neg, neg_frac, total_image, what, allow=params.allow_negative)
    if clipped:
        warnings.append(clipped)
    counts_m = sampler.extensive(Volume(values, grid=agrid))
    if not total_image > 0:
        raise InputError(f"the {what} holds no positive counts")
    summary = {"image_total": total_image, "negative_voxels_clipped": n_neg}
    if params.calibration == "relative" and (params.hours_since_administration or params.image_decay_corrected):
        warnings.append(
            f"hours_since_administration ({params.hours_since_administration or 0:g} h) and image_decay_corrected "
            f"({params.image_decay_corrected}) are ignored with relative calibration: the counts are scaled to the "
            "administered activity (use --quantitative for an image in Bq/mL)"
        )
    inside = _counts_in_liver_and_lungs(counts_m, sampler, roles)  # before the counts become GBq (in place)
    lungs = _lung_counts(counts_m, sampler, roles, params)
    own = values is not activity.array or (overwrite and values.flags.writeable)
    act_arr = _calibrate(values, counts_m, sampler, roles, params, total_image, summary, out=values if own else None, lungs=lungs)
    _lung_shunt_notes(lungs, roles, params, summary, warnings)
    if params.calibration == "absolute":
        summary["image_activity_gbq"] = float(act_arr.sum(dtype=np.float64))
    _activity_warnings(summary, params, what, warnings)
    _uptake_outside_liver_and_lungs(inside, total_image, summary, warnings)
    return Volume(act_arr, grid=agrid, name="activity", unit="GBq"), summary


def _pct_denominator_gbq(summary, activity_gbq):
    """Activity that ``activity_pct`` is a share of: the reference region's (relative) or the image's."""
    if "reference_activity_gbq" in summary:
        return summary["reference_activity_gbq"]
    return float(activity_gbq.array.sum(dtype=np.float64))


def density_step(segmentation, sampler, roles, params, ct, warnings):
    """(density Volume g/mL on the activity grid, lung mask on that grid or None, description).

    With ``sampling='overlap'`` each activity voxel's density is the volume average over the
    voxel (CT-derived densities, or tissue and lung by the lung fraction); else the CT is read
    at the voxel centres and lung voxels are those whose centre is in a lung segment.
    """
    agrid = sampler.activity_grid
    lung_names = roles.lung_names
    if params.sampling == "overlap":
        lung_fraction = fraction_in_box(segmentation, lung_names, agrid) if lung_names else None  # on its box only
        with_ct = ct is not None and params.density_from_ct
        lung_ct = lung_mask_on_grid(segmentation, lung_names, ct.grid) if (lung_names and with_ct) else None
        density, outside_ct, source = averaged_density_map_g_ml(agrid, params, ct, lung_fraction, lung_ct)
        lung_mask_act = None
        if lung_fraction is not None and lung_fraction.box is not None and params.method == "dvk" and params.dvk_lung_mode == "ldm":
            lung_mask_act = np.zeros(agrid.shape, bool)
            lung_mask_act[lung_fraction.box] = lung_fraction.values >= 0.5
    else:
        lung_mask_act = lung_mask_on_grid(segmentation, lung_names, agrid) if lung_names else None
        density, outside_ct, source = density_map_g_ml(agrid, params, ct=ct, lung_mask=lung_mask_act)
    if outside_ct is not None:
        _ct_coverage_warnings(segmentation, sampler, roles, params, ct, outside_ct, warnings)
    return density, lung_mask_act, source


def _ct_coverage_warnings(segmentation, sampler, roles, params, ct, outside_ct, warnings):
    """Say which segments the CT does not cover (their own voxels outside the CT), and, apart,
    which only reach activity voxels that straddle the CT's edge (a partial voxel outside the CT
    takes the tissue density, or the lung density for its lung part)."""
    agrid = sampler.activity_grid
    outside_ct_m = sampler.sample(Volume(outside_ct.astype(np.float32), grid=agrid), "nearest") > 0.5
    # Derived entries (whole liver, normal liver...) are made of segments that are named themselves.
    touching = [n for n in roles.used if n in sampler.regions and n in segmentation.names
                and np.any(sampler.read(outside_ct_m, sampler.regions[n])[0])]
    uncovered = [n for n in touching if _segment_outside_grid(segmentation, n, ct.grid)]
    lungs = set(roles.lung_names)
    for names, density in (([n for n in uncovered if n not in lungs], f"tissue density {params.tissue_density_g_ml:g} g/mL"),
                           ([n for n in uncovered if n in lungs],
                            f"lung density {params.lung_density_g_ml:g} g/mL (as the LSF lung mass)")):
        if names:
            warnings.append("the CT does not cover all of segment(s) " + ", ".join(repr(n) for n in names)
                            + f": {density} is used there")
    edge_only = [n for n in touching if n not in uncovered]
    if edge_only:
        warnings.append(
            "activity voxels of segment(s) " + ", ".join(repr(n) for n in edge_only) + " straddle the edge of the CT's "
            f"field of view: their part outside the CT takes the tissue density {params.tissue_density_g_ml:g} g/mL "
            f"(lung density {params.lung_density_g_ml:g} g/mL for a lung part)"
        )


def _segment_outside_grid(segmentation, name, grid):
    """True when some voxel of segment ``name`` (on its own grid) has its centre outside ``grid``."""
    box = segmentation.bbox(name)
    if box is None:
        return False
    crop = segmentation.grid.crop(box)
    if grid_inside(crop, grid):
        return False
    return bool(np.any(segmentation.mask(name, box) & ~inside_mask(grid, crop)))


def dose_step(activity_gbq, density, params, lung_mask, *, dose_gy=None, dose_function=None, progress=None, warnings=None):
    """Dose map in Gy on the activity grid: computed (:func:`dose_map_gy`, or ``dose_function``),
    or a given ``dose_gy`` checked for grid and finiteness."""
    agrid = activity_gbq.grid
    if dose_gy is not None and dose_function is not None:
        raise InputError("give either dose_gy or dose_function, not both")
    if dose_gy is None:
        _progress(progress, 0.35, f"dose map ({params.method})")
        compute = dose_function or (lambda a, d, p, m: dose_map_gy(a, d, p, lung_mask=m, notes=warnings))
        dose = compute(activity_gbq, density, params, lung_mask)
        if not isinstance(dose, Volume) or not dose.grid.same_as(agrid):
            raise GeometryError("the dose function must return a Volume on the activity image's grid")
        act.check_finite(dose, "dose map")
        return dose
    if not isinstance(dose_gy, Volume) or not dose_gy.grid.same_as(agrid):
        raise GeometryError("dose_gy must be a Volume on the activity image's grid")
    act.check_finite(dose_gy, "dose map")
    return dose_gy


def dose_method_check(params, inputs, warnings):
    """Warn when the dose-voxel kernel is applied to an image that the scanner has already blurred.

    A Y-90 PET (5-8 mm FWHM) or a SPECT (Bremsstrahlung 15-20 mm, MAA 10-15 mm) is already
    spread by more than the beta range; convolving it with the beta kernel blurs it a second
    time (peaks and D_x of small volumes biased low).  Local deposition is the method
    recommended for such images (Pasciak AS et al., Front Oncol 4 (2014) 121).
    """
    if params.method != "dvk":
        return
    modality = str((inputs or {}).get("modality") or "").lower()
    image = {"pet": "a Y-90 PET", "spect": "a SPECT (Bremsstrahlung or MAA)"}.get(modality, "a PET or SPECT image")
    warnings.append(
        f"DVK on {image}: the image is already blurred by the scanner's resolution (PET 5-8 mm, SPECT 10-20 mm FWHM, "
        "more than the 2.5 mm mean beta range), so the kernel blurs it twice and underestimates peaks and the D_x of "
        "small volumes; local deposition (LDM) is recommended for PET and SPECT (Pasciak et al. 2014)"
        + ("" if modality else "; ignore this if the activity map is not a measured image")
    )


@dataclass
class SampledMaps:
    """Dose (Gy), density (g/mL) and activity on the metrics grid.

    ``activity_gbq_ml`` divided by ``activity_divisor`` is the activity concentration (GBq/mL):
    with the overlap sampler the regions index the activity grid and the maps are the
    activity-grid arrays themselves (no copy); the division by the voxel volume is then done on
    the voxels read (the same float32 values as dividing the whole map first).
    """

    dose_gy: np.ndarray
    density_g_ml: np.ndarray
    activity_gbq_ml: np.ndarray
    voxel_volume_ml: float
    total_activity_gbq: float
    activity_divisor: float = 1.0

    def activity_sum_gbq_ml(self, sampler, region):
        """sum f a over the region's voxels, a the activity concentration (GBq/mL): read in blocks
        with the overlap sampler (no copy of the region's values), else from the values read."""
        if sampler.sampling == "overlap":
            return sampler.integrate(self.activity_gbq_ml, region) / self.activity_divisor
        return self.read_activity_gbq_ml(sampler, region)

    def read_activity_gbq_ml(self, sampler, region):
        """Activity concentration (GBq/mL) of the region's voxels (float32)."""
        values = sampler.read(self.activity_gbq_ml, region)[0]
        if self.activity_divisor == 1.0:
            return values
        if values.flags.writeable and values.dtype == np.float32:  # the values read are ours: divided in place
            return np.divide(values, np.float32(self.activity_divisor), out=values)
        return values / np.float32(self.activity_divisor)


def _per_ml(activity, voxel_volume_ml):
    """Activity per voxel / voxel volume (float32); a constant map stays a constant map."""
    one = uniform_value(activity)
    if one is not None:
        return uniform_array(np.float32(one) / np.float32(voxel_volume_ml), activity.shape)
    return activity / np.float32(voxel_volume_ml)


def sample_maps(sampler, dose, density, activity_gbq, params, total_activity_gbq):
    """:class:`SampledMaps` read on the metrics grid with ``params.sampling`` (with 'overlap'
    the metrics grid is the activity grid: the maps are taken as they are)."""
    interp = params.sampling
    other = "nearest" if interp == "nearest" else "linear"
    agrid = activity_gbq.grid
    if sampler.sampling == "overlap":
        return SampledMaps(sampler.sample(dose), sampler.sample(density), sampler.sample(activity_gbq),
                           sampler.voxel_volume_ml, total_activity_gbq, activity_divisor=float(np.float32(agrid.voxel_volume_ml)))
    return SampledMaps(
        sampler.sample(dose, interp),
        sampler.sample(density, other),
        sampler.sample(Volume(_per_ml(activity_gbq.array, agrid.voxel_volume_ml), grid=agrid), other),
        sampler.voxel_volume_ml,
        total_activity_gbq,
    )


def _region_result(sampler, maps, region, name, role, params, dvhs=None):
    """(metrics, DVH) of one region; ``dvhs`` {id(region): DVH} shares the DVH of entries with the same region."""
    dose, weights = sampler.read(maps.dose_gy, region)
    shared = None if dvhs is None else dvhs.get(id(region))
    if shared is not None:
        shared = copy.copy(shared)  # the same sorted doses, its own name
        shared.name = name
    metrics, dvh = segment_metrics(
        dose, sampler.read(maps.density_g_ml, region)[0], maps.activity_sum_gbq_ml(sampler, region),
        maps.voxel_volume_ml, role, params, name=name, weights=weights, overwrite_dose=True, dvh=shared,  # values read are ours
    )
    if dvhs is not None:
        dvhs.setdefault(id(region), dvh)
    total = maps.total_activity_gbq
    metrics["activity_pct"] = 100.0 * metrics["activity_gbq"] / total if total > 0 else float("nan")
    return metrics, dvh


def segment_results_step(segmentation, sampler, maps, roles, params, progress=None):
    """One :class:`SegmentResult` per measured segment (the lungs of the LSF model excepted).
    ``progress(fraction, message)`` is called before each segment (a caller may stop there)."""
    results, dvhs = [], {}
    for i, n in enumerate(roles.used):
        _progress(progress, i / max(len(roles.used), 1), f"metrics and DVH: {n}")
        role = roles.role_of[n]
        if roles.lung_from == "lsf" and role == "lung":
            continue
        metrics, dvh = _region_result(sampler, maps, sampler.regions[n], n, role, params, dvhs)
        info = segmentation.info(n) if n not in roles.notes else None
        note = roles.notes.get(n, "")
        if n in roles.parts_of_whole:
            note = f"does not hold every tumour or liver part: the whole liver is {WHOLE_LIVER_ENTRY!r}"
        results.append(
            SegmentResult(
                n, role, metrics, dvh,
                segment_id=info.segment_id if info else n,
                color=info.color if info else (_LIVER_COLOR if n == WHOLE_LIVER_ENTRY else _NORMAL_LIVER_COLOR),
                note=note, rules_by_role=n not in roles.parts_of_whole,
            )
        )
    return results


#: Lobe roles whose overlap with each tumour is reported, and the metric key each one gets.
LOBE_OVERLAP_KEYS = {"right_lobe": "in_right_lobe_pct", "left_lobe": "in_left_lobe_pct"}


def tumour_lobes_step(segmentation, roles, results):
    """Per tumour, the percentage of its volume inside the right- and left-lobe segments.

    Measured on the segmentation's own grid (the segments as drawn), so it does not depend on
    the activity image.  Sets ``in_right_lobe_pct`` / ``in_left_lobe_pct`` on every tumour
    result when the case has segments of that lobe role; nothing when it has no lobe segment.
    A cohort analysis derives the disease extent (unilobar/bilobar) from these numbers.
    """
    lobes = {role: roles.by_role.get(role, []) for role in LOBE_OVERLAP_KEYS}
    if not any(lobes.values()):
        return
    for r in results:
        if r.role != "tumor" or r.name not in segmentation.names:
            continue
        box = segmentation.bbox(r.name)
        tumour = segmentation.mask(r.name, box)
        n_tumour = int(np.count_nonzero(tumour))
        for role, names in lobes.items():
            if not names or n_tumour == 0:
                continue
            lobe = np.zeros_like(tumour)
            for n in names:
                lobe |= segmentation.mask(n, box)
            r.metrics[LOBE_OVERLAP_KEYS[role]] = 100.0 * np.count_nonzero(tumour & lobe) / n_tumour


def _lsf_lung_result(segmentation, roles, params, ct, summary, warnings):
    """The uniform lung dose of the LSF model, as a result entry."""
    a_lung = act.lung_activity_gbq(params)
    lung_names = roles.lung_names
    if lung_names:
        lung_mass_g, lung_vol = lsf_lung_mass_g(segmentation, lung_names, ct, params)
        if lung_mass_g < MIN_PLAUSIBLE_LUNG_MASS_G:
            warnings.append(
                f"the lung segments ({', '.join(repr(n) for n in lung_names)}) weigh only {lung_mass_g:.0f} g "
                f"(adult lungs about 1000 g): if they do not cover both whole lungs, the LSF lung dose "
                f"K A LSF / m is overestimated; segment the whole lungs, or give these segments another role "
                f"to use a lung mass given with --lung-mass-g (conventional {params.lung_mass_used_g:g} g)"
            )
        note = "uniform lung dose from the LSF; mass from segments " + ", ".join(lung_names)
    elif params.default_lung_mass_g is not None:
        lung_mass_g, lung_vol = params.lung_mass_used_g, None
        note = f"uniform lung dose from the LSF; no lung segment, lung mass {lung_mass_g:g} g given (--lung-mass-g)"
    else:
        lung_mass_g, lung_vol = params.lung_mass_used_g, None
        note = f"uniform lung dose from the LSF; no lung segment, conventional lung mass {lung_mass_g:g} g assumed"
    d_lung = params.k_gy_kg_per_gbq * a_lung / (lung_mass_g * 1e-3) if lung_mass_g > 0 else float("nan")
    metrics, dvh = uniform_metrics(d_lung, lung_mass_g, lung_vol, a_lung, "lung", params, LUNG_LSF_ENTRY)
    if lung_vol is None:
        metrics["volume_ml"] = float("nan")
    metrics["activity_pct"] = float("nan")
    summary["lung_mean_gy"] = d_lung
    summary["lung_mass_g"] = lung_mass_g
    result = SegmentResult(LUNG_LSF_ENTRY, "lung", metrics, dvh, segment_id=",".join(lung_names), color=_LUNG_COLOR, note=note)
    if not lung_names and params.default_lung_mass_g is None:
        result.warnings.append(LUNG_MASS_NOT_MEASURED)
    return result


def _image_lung_result(sampler, maps, roles, params, results, summary):
    """Lungs as one organ from the image: energy over mass of the union of the lung segments
    (not the plain average of the lobes' means, which would weight a small lobe like a large
    one); with several lung segments, an entry for the union that the lung rules judge."""
    lung_names = roles.lung_names
    lung_all = sampler.region(lung_names)
    dose, f = sampler.read(maps.dose_gy, lung_all)
    w = np.asarray(sampler.read(maps.density_g_ml, lung_all)[0], dtype=np.float64)
    if f is not None:
        w = w * f
    summary["lung_mean_gy"] = float((dose * w).sum() / w.sum()) if w.sum() > 0 else float("nan")
    summary["lung_mass_g"] = float(w.sum() * sampler.voxel_volume_ml)
    if len(lung_names) < 2:
        return None
    metrics, dvh = _region_result(sampler, maps, lung_all, LUNG_ALL_ENTRY, "lung", params)
    for r in results:
        if r.role == "lung":
            r.rules_by_role = False  # lung limits are on the lungs as a whole: judge the union, report the parts
    return SegmentResult(LUNG_ALL_ENTRY, "lung", metrics, dvh, segment_id=",".join(lung_names),
                         color=_LUNG_COLOR, note="union of " + ", ".join(lung_names))


def lung_step(segmentation, sampler, maps, roles, params, ct, results, summary, warnings):
    """Append the lung entry (LSF model, or the union of image lung segments) to ``results``,
    and the cumulative lung dose (this treatment + ``params.prior_lung_dose_gy``) to every lung entry
    (NaN when the prior lung dose is not given: its rule is N/A with :data:`PRIOR_LUNG_DOSE_NOT_GIVEN`).

    Without an LSF the LSF model gives no lung entry (a warning says so; lung rules judged by the
    LSF model refuse the case earlier, in :func:`check_required_inputs`)."""
    if roles.lung_from == "lsf" and params.lung_shunt_fraction is None:
        warnings.append("lung dose not computed: the lung shunt fraction is not given (--lung-shunt-fraction)")
    elif roles.lung_from == "lsf":
        results.append(_lsf_lung_result(segmentation, roles, params, ct, summary, warnings))
    elif roles.lung_names:
        entry = _image_lung_result(sampler, maps, roles, params, results, summary)
        if entry is not None:
            results.append(entry)
    for r in results:
        if r.role == "lung":
            r.metrics["cumulative_mean_gy"] = r.metrics["mean_gy"] + params.prior_lung_dose_term_gy
            if params.prior_lung_dose_gy is None:
                r.unavailable["cumulative_mean_gy"] = PRIOR_LUNG_DOSE_NOT_GIVEN


def tn_ratio_step(results, summary):
    """Tumour-to-normal ratios of mean dose, against perfused normal liver when present, else normal liver."""
    normal_ref = [r for r in results if r.role == "perfused_normal"] or [r for r in results if r.role == "normal_liver"]
    if not normal_ref:
        return
    ref = normal_ref[0]
    summary["tn_reference"] = ref.name
    for r in results:
        if r.role == "tumor":
            r.metrics["tn_ratio"] = r.metrics["mean_gy"] / ref.metrics["mean_gy"] if ref.metrics["mean_gy"] > 0 else float("nan")


def partial_volume_step(results, sampler, params, warnings):
    """Partial-volume warnings on segments too small for the activity image's resolution, and
    RC-corrected tumour means when a recovery-coefficient table is given (:mod:`.evaluation.partial_volume`)."""
    apply_partial_volume(results, sampler.activity_grid.spacing_mm, params, warnings)


def rules_step(ruleset, results, warnings, params=None):
    """Rule evaluations (conditional rules selected by the clinical inputs of ``params``); a
    rule naming a segment that was not measured also gets a warning (its N/A makes the case
    INCOMPLETE, and a misspelt name must be easy to spot)."""
    evaluations = evaluate_rules(ruleset, results, params.clinical_inputs() if params is not None else None)
    measured = {r.name for r in results}
    for rule in ruleset.rules:
        if rule.segment and rule.segment not in measured:
            warnings.append(
                f"rule {rule.label!r} names segment {rule.segment!r}, which was not measured (no such segment, or "
                f"role ignore); it is N/A. Measured segments: {', '.join(sorted(measured))}"
            )
    return evaluations


def scope_step(ruleset, params, inputs, warnings):
    """Warnings (also returned) when the case lies outside what the thresholds were derived from."""
    found = scope_warnings(ruleset, params, inputs)
    warnings.extend(found)
    return found


# -- the case ---------------------------------------------------------------------------------
def run_case(
    activity,
    segmentation,
    *,
    params=None,
    roles=None,
    ct=None,
    rules=None,
    dose_gy=None,
    dose_function=None,
    inputs=None,
    progress=None,
    overwrite_activity=False,
):
    """Full dosimetry of one case.

    Parameters
    ----------
    activity : Volume, (Z, Y, X).  Counts (relative calibration) or Bq/mL (absolute).
    segmentation : Segmentation (any grid overlapping the activity image).
    params : DosimetryParams (defaults when None; relative calibration needs
        ``administered_activity_gbq``).
    roles : dict {segment name: role}, overrides of the guessed roles.
    ct : Volume in HU, optional; gives the density map when ``params.density_from_ct``.
    rules : RuleSet, preset name or rule-file path; when None, the preset that fits
        ``params.indication`` and ``params.microsphere``, else the default preset.
    dose_gy : Volume on the activity grid, optional: a dose map computed elsewhere (e.g. by the
        VTK filter in Slicer) to use instead of computing one.
    dose_function : callable(activity_gbq, density_g_ml, params, lung_mask) -> Volume, optional:
        computes the dose map from the activity (GBq/voxel) and density (g/mL) Volumes of the
        activity grid in place of :func:`~TAREDosimetryLib.dose.dosemap.dose_map_gy` (the
        Slicer module passes one that runs the VTK filter
        :class:`~TAREDosimetryLib.dose.vtkfilter.TAREDoseFilter`).
    inputs : dict, descriptions of the inputs (file names) recorded in the result.
    progress : callable(fraction, message), optional.
    overwrite_activity : bool, default False.  True lets the case turn the activity image's
        float32 array into the activity map (GBq per voxel; ``result.activity_gbq`` then shares
        it) instead of holding both: one image less in memory, for a caller that read the image
        for this case alone and does not use it afterwards (the command line).  Inputs are
        otherwise never modified.

    Returns
    -------
    CaseResult
    """
    clock = _Clock()
    params = params or DosimetryParams()
    ruleset, rules_note = select_rules(rules, params)
    warnings = list(getattr(segmentation, "notes", []))
    what = "activity image" + (f" {activity.name}" if getattr(activity, "name", "") else "")
    _progress(progress, 0.0, "checking inputs")
    check_inputs(activity, segmentation, ct, what)
    case_roles = resolve_roles(segmentation, roles, params, warnings)
    input_reasons, choices, req_warnings = check_required_inputs(params, ruleset, case_roles.lung_from, case_roles.lung_names,
                                                                 rules_note=rules_note)
    warnings.extend(req_warnings)
    sampler = build_metrics_grid(segmentation, activity.grid, case_roles, params, what, warnings)
    case_roles = whole_liver_step(segmentation, sampler, case_roles, warnings)
    clock.lap("geometry", since_start=True)
    case_roles = derive_normal_liver(sampler, case_roles, warnings)
    case_roles = derive_perfused_normal(sampler, case_roles, warnings)
    _progress(progress, 0.15, "activity map")
    activity_gbq, summary = activity_step(activity, sampler, case_roles, params, what, warnings, overwrite=overwrite_activity)
    input_reasons = lsf_source_step(summary, input_reasons, choices)
    clock.lap("activity")
    density, lung_mask_act, summary["density_source"] = density_step(segmentation, sampler, case_roles, params, ct, warnings)
    clock.lap("density")
    dose = dose_step(activity_gbq, density, params, lung_mask_act, dose_gy=dose_gy, dose_function=dose_function, progress=progress,
                     warnings=warnings)
    dose_method_check(params, inputs, warnings)
    clock.lap("dose")
    _progress(progress, 0.7, "metrics and DVH")
    maps = sample_maps(sampler, dose, density, activity_gbq, params, _pct_denominator_gbq(summary, activity_gbq))
    results = segment_results_step(segmentation, sampler, maps, case_roles, params,
                                   progress=None if progress is None else (lambda f, m: progress(0.7 + 0.25 * f, m)))
    tumour_lobes_step(segmentation, case_roles, results)
    lung_step(segmentation, sampler, maps, case_roles, params, ct, results, summary, warnings)
    partial_volume_step(results, sampler, params, warnings)
    tn_ratio_step(results, summary)
    clock.lap("metrics")
    evaluations = rules_step(ruleset, results, warnings, params)
    found_scope = scope_step(ruleset, params, inputs, warnings)
    clock.lap("total", since_start=True)
    _progress(progress, 1.0, "done")
    return CaseResult(
        params=params, rules=ruleset, activity_gbq=activity_gbq, dose_gy=dose, density_g_ml=density,
        segments=results, evaluations=evaluations, warnings=warnings, summary=summary,
        inputs=dict(inputs or {}, roles=dict(case_roles.role_of), roles_given=dict(roles or {}), derived_normal_liver=case_roles.derived,
                    whole_liver_segments=list(case_roles.whole_liver)),
        metrics_grid=sampler.describe(), timings_s=clock.timings, input_reasons=input_reasons,
        explicit_choices=choices, scope_warnings=found_scope, rules_note=rules_note,
        computation=dose_computation_record(params, "given" if dose_gy is not None else "dose function" if dose_function else "computed"),
    )


def evaluate_dose_case(dose, segmentation, *, params=None, roles=None, ct=None, rules=None, inputs=None, progress=None):
    """Metrics, DVHs and rules of a dose map computed elsewhere, with the steps of :func:`run_case`.

    There is no activity image: the activity metrics are unknown (NaN, ``null`` in metrics.json)
    and the lung dose is the map's own dose in the lung segments (the LSF model needs an activity).
    Mass, mean dose (energy over mass) and the density map are as in ``run_case`` (CT or constant).

    Parameters
    ----------
    dose : Volume, (Z, Y, X) in Gy (see :func:`~TAREDosimetryLib.imaging.dosemaps.read_dose_map`).
    segmentation, params, roles, ct, rules, inputs, progress : as for :func:`run_case`.

    Returns
    -------
    CaseResult (``activity_gbq`` None; ``summary['dose_source']`` 'external').
    """
    clock = _Clock()
    params = (params or DosimetryParams()).replace(lung_dose_from="image")
    ruleset, rules_note = select_rules(rules, params)
    warnings = list(getattr(segmentation, "notes", []))
    what = "dose map" + (f" {dose.name}" if getattr(dose, "name", "") else "")
    _progress(progress, 0.0, "checking inputs")
    check_inputs(dose, segmentation, ct, what)
    case_roles = resolve_roles(segmentation, roles, params, warnings)
    sampler = build_metrics_grid(segmentation, dose.grid, case_roles, params, what, warnings)
    case_roles = whole_liver_step(segmentation, sampler, case_roles, warnings)
    case_roles = derive_normal_liver(sampler, case_roles, warnings)
    case_roles = derive_perfused_normal(sampler, case_roles, warnings)
    clock.lap("geometry", since_start=True)
    summary = {"dose_source": "external"}
    density, _lung, summary["density_source"] = density_step(segmentation, sampler, case_roles, params, ct, warnings)
    unknown = Volume(uniform_array(np.nan, dose.shape), grid=dose.grid, name="activity (unknown)", unit="GBq")
    _progress(progress, 0.7, "metrics and DVH")
    maps = sample_maps(sampler, Volume(np.asarray(dose.array, np.float32), grid=dose.grid), density, unknown, params,
                       float("nan"))
    results = segment_results_step(segmentation, sampler, maps, case_roles, params)
    tumour_lobes_step(segmentation, case_roles, results)
    lung_step(segmentation, sampler, maps, case_roles, params, ct, results, summary, warnings)
    partial_volume_step(results, sampler, params, warnings)
    tn_ratio_step(results, summary)
    clock.lap("metrics")
    evaluations = rules_step(ruleset, results, warnings, params)
    found_scope = scope_step(ruleset, params, inputs, warnings)
    clock.lap("total", since_start=True)
    _progress(progress, 1.0, "done")
    return CaseResult(
        params=params, rules=ruleset, activity_gbq=None, dose_gy=dose, density_g_ml=density, segments=results,
        evaluations=evaluations, warnings=warnings, summary=summary,
        inputs=dict(inputs or {}, roles=dict(case_roles.role_of), roles_given=dict(roles or {}), derived_normal_liver=case_roles.derived,
                    whole_liver_segments=list(case_roles.whole_liver)),
        metrics_grid=sampler.describe(), timings_s=clock.timings, scope_warnings=found_scope, rules_note=rules_note,
        input_reasons=[INDICATION_NOT_GIVEN] if rules_note == DEFAULT_PRESET_NOTE else [],
        computation={"dose_source": "external dose map", "device_used": "none (the dose was computed elsewhere)"},
    )


class _Clock:
    """Wall-clock seconds of each step (``timings_s`` of the result)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.timings = {}

    def lap(self, name, since_start=False):
        now = time.perf_counter()
        self.timings[name] = now - (self.start if since_start else self.last)
        self.last = now
