"""Predicted versus delivered: the post-treatment dose mapped onto the planning frame and segments.

Steps (:func:`compare_doses`): the delivered dose is read on the planning dose grid through the
registration transform (trilinear; points outside the delivered image read 0 and are counted);
both doses are measured on the planning segments as ``run`` measures them, each with the sampling
its result was computed with (``DosimetryParams.sampling``; default ``overlap``, the exact
partial-voxel weighting, :func:`~TAREDosimetryLib.evaluation.sampling.make_sampler`), so that the
planned column equals the plan's own metrics (mean, D_x, V_x); per segment the absolute (delivered - predicted) and relative (% of predicted)
differences; Dice coefficients of the isodose volumes (dose >= L) at each level; the gamma pass
rate (:mod:`.gamma`) over the planning segments; the dose-difference map; and the planned versus
delivered activity with the bands users report (within 10 %, within 20 %, outside).

Densities: both doses are weighed with the planning case's density map (:func:`planning_density`:
the one ``run`` computed for the planned result, from its CT and lung segments with its recorded
parameters), so that means are those of the planned result and the differences are those of the
doses; without it (a dose map from another tool) tissue density everywhere, lung density in lung
segments.
"""

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..evaluation.metrics import segment_metrics
from ..evaluation.roles import assign_roles
from ..evaluation.sampling import make_sampler
from ..params import SAMPLINGS
from ..pipeline import CaseRoles, density_step
from ..volume import uniform_array
from .gamma import gamma_index
from .registration import resample_onto

__all__ = ["Comparison", "compare_doses", "planning_density", "activity_band", "dice", "COMPARED_METRICS", "BANDS_PCT"]

COMPARED_METRICS = ("mean_gy", "d50_gy", "d70_gy", "d90_gy", "v100_pct", "v205_pct")
#: Quality bands of the delivered activity against the planned one (|difference| in % of planned).
BANDS_PCT = (10.0, 20.0)


def activity_band(planned_gbq, delivered_gbq):
    """{'planned_gbq', 'delivered_gbq', 'difference_gbq', 'difference_pct', 'band'} (band: 'within 10 %',
    'within 20 %' or 'outside 20 %'); None when either activity is unknown."""
    if planned_gbq is None or delivered_gbq is None:
        return None
    if not planned_gbq > 0:
        raise InputError(f"planned activity must be positive, got {planned_gbq!r}")
    diff = 100.0 * (delivered_gbq - planned_gbq) / planned_gbq
    band = next((f"within {b:g} %" for b in BANDS_PCT if abs(diff) <= b + 1e-9), f"outside {BANDS_PCT[-1]:g} %")
    return {"planned_gbq": planned_gbq, "delivered_gbq": delivered_gbq, "difference_gbq": delivered_gbq - planned_gbq,
            "difference_pct": diff, "band": band}


def dice(a, b):
    """Dice coefficient 2|A and B| / (|A| + |B|) of two boolean arrays (NaN when both are empty)."""
    na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    return float("nan") if na + nb == 0 else 2.0 * np.count_nonzero(a & b) / (na + nb)


@dataclass
class Comparison:
    """Predicted vs delivered for one case (``to_dict`` is comparison.json; the maps are Volumes)."""

    segments: list
    dice: list
    gamma: dict
    activity: dict
    delivered_on_plan: object
    difference_gy: object
    gamma_map: object = None
    registration: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def to_dict(self):
        g = {k: v for k, v in (self.gamma or {}).items() if k != "gamma"}
        return {"segments": self.segments, "isodose_dice": self.dice, "gamma": g, "activity": self.activity,
                "registration": self.registration, "warnings": list(self.warnings)}


def _differences(planned, delivered):
    out = {}
    for k in COMPARED_METRICS:
        p, d = planned.get(k), delivered.get(k)
        if p is None or d is None:
            continue
        out[k] = {"planned": p, "delivered": d, "difference": d - p, "difference_pct": 100.0 * (d - p) / p if p else None}
    return out


def _segment_metrics(sampler, dose_arr, dens_arr, name, role, params):
    """Metrics of one segment from a dose read on ``sampler``'s metrics grid, weighed by ``dens_arr``
    (g/mL on the same grid), or by the role's constant density when ``dens_arr`` is None."""
    values, weights = sampler.read(dose_arr, sampler.regions[name])
    if dens_arr is None:
        rho = params.lung_density_g_ml if role == "lung" else params.tissue_density_g_ml
        dens = uniform_array(rho, values.shape)  # a constant density: a number to the metrics (no array)
    else:
        dens = sampler.read(dens_arr, sampler.regions[name])[0]
    # No activity behind a compared dose (its sum 0); the values read are a copy of ours: sorted in place.
    m, _ = segment_metrics(values, dens, 0.0, sampler.voxel_volume_ml, role, params, name=name, weights=weights,
                           overwrite_dose=True)
    return m


def _segment_rows(samplers, doses, densities, roles, params):
    """Per segment the planned and delivered metrics, each dose read by its own (sampler, sampling)
    and weighed by its density map (None: the roles' constant densities)."""
    cols = []
    for (sampler, mode), dose, density in zip(samplers, doses, densities):
        dens = None if density is None else sampler.sample(density, "nearest" if mode == "nearest" else "linear")
        cols.append((sampler, sampler.sample(dose, mode), dens))
    (sp, planned_arr, dens_p), (sd, delivered_arr, dens_d) = cols
    rows = []
    for name in [n for n in sp.regions if n in sd.regions]:
        role = roles[name]
        mp = _segment_metrics(sp, planned_arr, dens_p, name, role, params)
        md = _segment_metrics(sd, delivered_arr, dens_d, name, role, params)
        rows.append({"name": name, "role": role, "volume_ml": mp["volume_ml"], "metrics": _differences(mp, md)})
    return rows


def planning_density(segmentation, grid, params, *, roles=None, ct=None):
    """Density map (Volume, g/mL, on ``grid``: the planned dose's) as ``run`` made it for the planned
    result: from ``ct`` when given and ``params.density_from_ct``, lung density in the lung segments
    (volume fractions with ``params.sampling`` 'overlap', voxel centres otherwise)."""
    role_of = assign_roles(segmentation.names, roles)
    case_roles = CaseRoles(role_of, [n for n in segmentation.names if role_of[n] != "ignore"], "image")
    sampler = make_sampler(segmentation, grid, case_roles.used, params.sampling)
    density, _lung, _source = density_step(segmentation, sampler, case_roles, params, ct, [])
    return density


def _samplers(segmentation, grid, names, samplings):
    """((sampler, sampling) of the planned dose, (sampler, sampling) of the delivered one); one sampler when they agree."""
    for s in samplings:
        if s not in SAMPLINGS:
            raise InputError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {s!r}")
    made = {}
    for s in samplings:
        kind = "overlap" if s == "overlap" else "point"
        if kind not in made:
            made[kind] = make_sampler(segmentation, grid, names, "overlap" if kind == "overlap" else "nearest")
    return tuple((made["overlap" if s == "overlap" else "point"], s) for s in samplings)


def _outside_pct(sampler, grid_volume, outside, names):
    """% of the segments' union (by volume) that the delivered image does not cover."""
    values, weights = sampler.read(sampler.sample(grid_volume.with_array(outside.astype(np.float32)), "nearest"), sampler.region(names))
    weights = np.ones(values.shape) if weights is None else weights
    total = float(weights.sum())
    return 100.0 * float(np.dot(values > 0.5, weights)) / total if total > 0 else 0.0


def _dice_rows(planned, delivered, levels_gy, voxel_ml):
    rows = []
    for lv in levels_gy:
        a, b = planned >= lv, delivered >= lv
        rows.append({"level_gy": float(lv), "dice": dice(a, b), "planned_ml": float(a.sum() * voxel_ml),
                     "delivered_ml": float(b.sum() * voxel_ml)})
    return rows


def compare_doses(planned_gy, delivered_gy, segmentation, params, *, transform=None, roles=None, dice_levels_gy=(100.0, 200.0),
                  gamma_options=None, planned_activity_gbq=None, delivered_activity_gbq=None, registration=None,
                  planned_sampling=None, delivered_sampling=None, density_params=None, ct=None):
    """:class:`Comparison` of a delivered dose (its own grid) with the planned dose and segments.

    Parameters
    ----------
    planned_gy : Volume, predicted dose (Gy) on the planning grid.
    delivered_gy : Volume, post-treatment dose (Gy), any grid.
    segmentation : Segmentation of the planning images.
    params : DosimetryParams (densities, D/V levels, BED/EUD parameters).
    transform : SimpleITK transform planning -> post-treatment space (None: the same space).
    gamma_options : dict of :func:`.gamma.gamma_index` keywords (dose_pct, dta_mm, cutoff_pct, implementation).
    planned_sampling, delivered_sampling : 'overlap', 'nearest' or 'linear', how each dose is read on
        the segments: the sampling its result was computed with (default ``params.sampling``).
    density_params, ct : the planned result's DosimetryParams and CT (Volume or None), optional: both
        doses are weighed with its density map (:func:`planning_density`, made for each column's
        sampling); default: the roles' constant densities.
    """
    grid = planned_gy.grid
    if transform is None and delivered_gy.grid.same_as(grid):
        mapped = delivered_gy.with_array(np.asarray(delivered_gy.array, np.float32))  # same grid: no interpolation
    else:
        mapped = resample_onto(delivered_gy, grid, transform, "linear", default=np.nan)
    outside = np.isnan(mapped.array)
    mapped_arr = np.where(outside, np.float32(0), mapped.array).astype(np.float32)
    mapped = mapped.with_array(mapped_arr, name="delivered dose on the planning grid", unit="Gy")
    role_of = assign_roles(segmentation.names, roles)
    used = [n for n in segmentation.names if role_of[n] != "ignore"]
    modes = (planned_sampling or params.sampling, delivered_sampling or params.sampling)
    samplers = _samplers(segmentation, grid, used, modes)
    densities = [None, None] if density_params is None else [
        planning_density(segmentation, grid, density_params.replace(sampling=m), roles=roles, ct=ct) for m in modes]
    warnings = []
    pct = _outside_pct(samplers[0][0], planned_gy, outside, used)
    if pct > 0:
        warnings.append(f"{pct:.1f} % of the planning segments lie outside the post-treatment image after registration (read as 0 Gy)")
    seg_mask_grid = _union_on_grid(segmentation, used, grid)
    g = gamma_index(planned_gy.array, mapped_arr, grid.spacing_mm, mask=seg_mask_grid, **(gamma_options or {}))
    return Comparison(
        _segment_rows(samplers, (planned_gy, mapped), densities, role_of, params),
        _dice_rows(planned_gy.array, mapped_arr, dice_levels_gy, grid.voxel_volume_ml), g,
        activity_band(planned_activity_gbq, delivered_activity_gbq), mapped,
        planned_gy.with_array((mapped_arr - planned_gy.array).astype(np.float32), name="dose difference (delivered - planned)", unit="Gy"),
        planned_gy.with_array(np.nan_to_num(g["gamma"], nan=-1.0).astype(np.float32), name="gamma (-1: not evaluated)", unit=""),
        dict(registration or {}), warnings,
    )


def _union_on_grid(segmentation, names, grid):
    from .. import resample
    from ..evaluation.sampling import union_mask

    box, union = union_mask(segmentation, names)
    full = np.zeros(segmentation.grid.shape, bool)
    full[box] = union
    return resample.resample_mask(full, segmentation.grid, grid)
