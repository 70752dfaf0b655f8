"""One dosimetry case, from images and segments to metrics and PASS/FAIL.

Data flow (each step a function of the engine)::

    activity image (counts or Bq/mL) + segmentation + roles + DosimetryParams
      -> activity map, GBq per voxel, on the activity grid            (activity.py)
      -> density map, g/mL, on the activity grid (constant or CT)     (physics.py)
      -> dose map, Gy, on the activity grid (LDM or DVK)              (dose.py, dvk.py)
      -> dose, density and activity read on the *metrics grid*        (this module)
      -> per-segment metrics and DVH, rule evaluations                (dvh.py, rules.py)

The metrics grid
----------------
Metrics are computed on the finer of the two grids.  When the segmentation's voxels are
smaller than the activity image's (the usual case: segments drawn on CT), every segment voxel
takes the dose of the activity voxel that contains its centre ('nearest' sampling, the
default) or the trilinear interpolation of the dose there ('linear').  With 'nearest' a
partial activity voxel on a segment's edge counts with exactly the fraction of it that lies
inside the segment (to the segment grid's resolution), and energy balance holds exactly:
sum over the segment of D m = K A_segment.  When the activity grid is the finer one, the
segment masks are read (nearest neighbour) at the activity voxel centres instead.
Only the bounding box of the segments is sampled, which keeps CT-sized grids cheap.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import activity as act
from . import physics
from .dose import dose_map_gy
from .dvh import DVH
from .errors import GeometryError, InputError
from .io import inside_mask, resample_mask, resample_volume
from .params import DosimetryParams
from .roles import assign_roles
from .rules import evaluate_rules, load_rules
from .volume import Volume

__all__ = [
    "SegmentResult",
    "CaseResult",
    "run_case",
    "MetricsSampler",
    "segment_metrics",
    "density_map_g_ml",
    "lung_mask_on_grid",
    "DERIVED_NORMAL_LIVER",
]

DERIVED_NORMAL_LIVER = "normal liver (derived)"
LUNG_LSF_ENTRY = "lungs (LSF model)"
LUNG_ALL_ENTRY = "lungs (all segments)"
#: Fraction of a segment that may lie outside the activity image before the case is refused.
MAX_OUTSIDE_FRACTION = 0.005
#: Total activities (GBq) outside this range make an absolute-calibration image suspect (units).
PLAUSIBLE_Y90_GBQ = (0.05, 20.0)
#: Densities below this (g/mL) count as air when the density comes from a CT.
MIN_DENSITY_G_ML = 0.05
#: Lung segments lighter than this (g) can hardly hold both whole lungs (adults: about 1000 g);
#: the LSF lung dose K A LSF / m is then overestimated, and the case gets a warning.
MIN_PLAUSIBLE_LUNG_MASS_G = 400.0


@dataclass
class SegmentResult:
    """Metrics of one segment.  ``metrics`` keys carry their unit (``mean_gy``, ``volume_ml``...)."""

    name: str
    role: str
    metrics: dict
    dvh: DVH = None
    segment_id: str = ""
    color: tuple = (0.5, 0.5, 0.5)
    note: str = ""
    #: False for a part whose organ is judged as a whole (a lung lobe next to "lungs (all segments)"):
    #: role-based rules skip it; a rule naming the segment still applies.
    rules_by_role: bool = True

    def to_dict(self):
        d = {"name": self.name, "segment_id": self.segment_id, "role": self.role, "color": list(self.color)}
        d.update({k: _json_number(v) for k, v in self.metrics.items()})
        if self.note:
            d["note"] = self.note
        return d


def _json_number(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass
class CaseResult:
    """Everything one case produced.  Nothing in it refers back to mutable inputs."""

    params: DosimetryParams
    rules: object
    activity_gbq: Volume
    dose_gy: Volume
    density_g_ml: object
    segments: list
    evaluations: list
    warnings: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    metrics_grid: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)

    def segment(self, name):
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def overall_status(self):
        """'PASS' when every evaluated rule passes, 'FAIL' when one fails, 'N/A' when none applied."""
        st = [e.status for e in self.evaluations if e.status != "N/A"]
        if not st:
            return "N/A"
        return "FAIL" if "FAIL" in st else "PASS"

    def summary_line(self):
        ev = [e for e in self.evaluations if e.status != "N/A"]
        n_fail = sum(e.status == "FAIL" for e in ev)
        parts = []
        for e in ev:
            parts.append(f"{e.segment_name} {e.rule.metric} {e.measured:.1f} {e.rule.comparison} {e.rule.threshold:g}: {e.status}")
        head = f"{self.overall_status}: {len(ev) - n_fail}/{len(ev)} rules pass ({self.rules.name})"
        return head + ("; " + "; ".join(parts) if parts else "")

    def to_dict(self):
        from . import __version__

        import scipy
        import SimpleITK

        return {
            "software": {
                "name": "TAREDosimetry",
                "version": __version__,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "SimpleITK": SimpleITK.Version_VersionString() if hasattr(SimpleITK, "Version_VersionString") else str(SimpleITK.Version()),
            },
            "inputs": self.inputs,
            "parameters": self.params.to_dict(),
            "constants": {
                "k_gy_kg_per_gbq": self.params.k_gy_kg_per_gbq,
                "y90_half_life_h": self.params.half_life_h,
                "y90_mean_beta_energy_mev": physics.Y90_MEAN_BETA_ENERGY_MEV,
                "tissue_density_g_ml": self.params.tissue_density_g_ml,
                "lung_density_g_ml": self.params.lung_density_g_ml,
                "hu_to_density_table": [list(p) for p in physics.SCHNEIDER_HU_DENSITY],
            },
            "metrics_grid": self.metrics_grid,
            "summary": {k: _json_number(v) for k, v in self.summary.items()},
            "overall_status": self.overall_status,
            "rules": self.rules.to_dict(),
            "evaluations": [e.to_dict() for e in self.evaluations],
            "segments": [s.to_dict() for s in self.segments],
            "warnings": list(self.warnings),
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }


# ---------------------------------------------------------------------------------------------
def _union_box(boxes):
    """Bounding box (tuple of z, y, x slices) of the given boxes, None entries skipped; None when none is left."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def _union_mask(segmentation, names):
    """(box, bool mask of the union of the named segments inside box), or (None, None) when all are empty."""
    box = _union_box(segmentation.bbox(n) for n in names)
    if box is None:
        return None, None
    mask = np.zeros(tuple(sl.stop - sl.start for sl in box), bool)
    for n in names:
        mask |= segmentation.mask(n, box)
    return box, mask


def _grid_inside(inner, outer):
    """True when every voxel centre of ``inner`` lies inside the voxels of ``outer``."""
    nz, ny, nx = inner.shape
    corners = np.array([[i, j, k, 1.0] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])
    ijk = (corners @ inner.ijk_to_lps.T) @ outer.lps_to_ijk.T
    limits = np.array([outer.shape[2], outer.shape[1], outer.shape[0]], float) - 0.5
    return bool(np.all(ijk[:, :3] >= -0.5) and np.all(ijk[:, :3] < limits))


class MetricsSampler:
    """Segment masks on the metrics grid, and reading of activity-grid maps on that grid.

    Parameters
    ----------
    segmentation : Segmentation
    activity_grid : Grid of the activity (and dose) image
    names : segment names to prepare (others are ignored)
    """

    def __init__(self, segmentation, activity_grid, names):
        self.activity_grid = activity_grid
        seg_grid = segmentation.grid
        boxes = {n: segmentation.bbox(n) for n in names}
        self.empty = [n for n, b in boxes.items() if b is None]
        present = [n for n in names if boxes[n] is not None]
        if not present:
            raise InputError("every segment is empty: nothing to measure")
        union = _union_box(boxes[n] for n in present)
        seg_crop = seg_grid.crop(union)
        self.seg_finer = seg_grid.voxel_volume_ml <= activity_grid.voxel_volume_ml * (1 + 1e-6)
        if seg_grid.same_as(activity_grid):
            self.seg_finer = True
        # Fraction of each segment inside the activity image's field of view (on the segment grid).
        if _grid_inside(seg_crop, activity_grid):
            fov = None  # the whole crop lies inside the activity image: no resampling needed
        else:
            fov = inside_mask(activity_grid, seg_crop)
        self.inside_fraction = {}
        masks_seg = {}
        for n in present:
            m = segmentation.mask(n, union)
            cnt = int(np.count_nonzero(m))
            if fov is None:
                self.inside_fraction[n] = 1.0
            else:
                self.inside_fraction[n] = float(np.count_nonzero(m & fov)) / cnt if cnt else 0.0
            masks_seg[n] = m
        if self.seg_finer:
            self.grid = seg_crop
            self.masks = masks_seg
            self._crop = None
        else:
            masks = {n: resample_mask(m, seg_crop, activity_grid) for n, m in masks_seg.items()}
            any_mask = np.logical_or.reduce(list(masks.values()))
            nz = [np.flatnonzero(any_mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
            if any(ix.size == 0 for ix in nz):
                raise GeometryError("no segment voxel lies inside the activity image (after resampling to its grid)")
            box = tuple(slice(int(ix[0]), int(ix[-1]) + 1) for ix in nz)
            self.grid = activity_grid.crop(box)
            self.masks = {n: m[box] for n, m in masks.items()}
            self._crop = box

    @property
    def voxel_volume_ml(self):
        return self.grid.voxel_volume_ml

    def sample(self, volume, interpolation="nearest"):
        """(Z, Y, X) float32 values of an activity-grid ``volume`` on the metrics grid."""
        if self._crop is not None:
            return np.asarray(volume.array[self._crop], dtype=np.float32)
        return resample_volume(volume, self.grid, interpolation).array

    def union(self, names):
        m = np.zeros(self.grid.shape, dtype=bool)
        for n in names:
            if n in self.masks:
                m |= self.masks[n]
        return m

    def describe(self):
        return {
            "grid": "segmentation" if self.seg_finer else "activity",
            "note": (
                "segment voxels read the dose of the activity voxel holding their centre"
                if self.seg_finer
                else "segment masks resampled (nearest) to the activity grid"
            ),
            **self.grid.to_dict(),
            "voxel_volume_ml": self.voxel_volume_ml,
        }


def segment_metrics(dose_gy, density_g_ml, activity_gbq_per_ml, voxel_volume_ml, role, params, name=""):
    """Metrics of one region from its voxel values on the metrics grid.

    Parameters
    ----------
    dose_gy, density_g_ml, activity_gbq_per_ml : (N,) arrays of the region's voxels.
    voxel_volume_ml : float
    role : str, selects the BED alpha/beta (tumour or normal tissue).
    params : DosimetryParams

    Returns
    -------
    (metrics dict, DVH).  ``mean_gy`` and ``bed_gy`` are mass-weighted means (energy / mass, = K A / M
    under LDM); the DVH, its D/V metrics and ``eud_gy`` are volume-based.
    """
    dvh = DVH(dose_gy, voxel_volume_ml, params.dvh_bin_width_gy, name=name)
    mass_g_vox = density_g_ml.astype(np.float64) * voxel_volume_ml
    mass_g = float(mass_g_vox.sum())
    d64 = dose_gy.astype(np.float64)
    mean = float((d64 * mass_g_vox).sum() / mass_g) if mass_g > 0 else dvh.mean_gy
    ab = params.tumor_alpha_beta_gy if role == "tumor" else params.normal_alpha_beta_gy
    bed = physics.bed_permanent_implant_gy(d64, ab, params.t_repair_h, params.half_life_h)
    m = {
        "volume_ml": dvh.volume_ml,
        "mass_g": mass_g,
        "activity_gbq": float(activity_gbq_per_ml.astype(np.float64).sum() * voxel_volume_ml),
        "mean_gy": mean,
        "median_gy": dvh.median_gy,
        "sd_gy": dvh.sd_gy,
        "min_gy": dvh.min_gy,
        "max_gy": dvh.max_gy,
    }
    for x in params.d_levels_pct:
        m[f"d{x:g}_gy"] = dvh.dose_at_volume_pct(x)
    for x in params.v_levels_gy:
        m[f"v{x:g}_pct"] = dvh.volume_pct_at_dose(x)
        m[f"v{x:g}_ml"] = dvh.volume_ml_at_dose(x)
    # EUD is over the voxels, each 1/N of the volume (PHYSICS.md), like the DVH it summarises.
    m["eud_gy"] = physics.eud_gy(d64, params.eud_alpha_per_gy)
    m["bed_gy"] = float((bed * mass_g_vox).sum() / mass_g) if mass_g > 0 else float(bed.mean())
    return m, dvh


def _uniform_metrics(dose_gy, mass_g, volume_ml, activity_gbq, role, params, name):
    """Metrics of a region with one uniform dose (the LSF lung model)."""
    vox = 1.0 if volume_ml is None else max(volume_ml, 1e-9)
    dvh = DVH(np.array([dose_gy]), vox, params.dvh_bin_width_gy, name=name)
    return segment_metrics(
        np.array([dose_gy], np.float32), np.array([mass_g / vox], np.float32),
        np.array([activity_gbq / vox], np.float32), vox, role, params, name,
    )[0], dvh


def _lsf_lung_mass_g(segmentation, lung_names, ct, params):
    """Mass (g) and volume (mL) of the union of the lung segments, for the LSF lung model.

    The lung mass does not enter the dose map, so it is measured on the segmentation's own grid:
    lung voxels outside the activity image count (whichever grid the metrics use), the CT is
    read there directly (Kao density), and lung voxels the CT does not cover take
    ``params.lung_density_g_ml``.
    """
    box, lung_all = _union_mask(segmentation, lung_names)
    if box is None:
        return 0.0, 0.0
    grid = segmentation.grid.crop(box)
    vv = grid.voxel_volume_ml
    lung_vol = float(np.count_nonzero(lung_all)) * vv
    if ct is not None and params.density_from_ct:
        hu = resample_volume(ct, grid, "linear", default=float("nan")).array[lung_all]
        rho = np.where(np.isnan(hu), np.float32(params.lung_density_g_ml), physics.lung_hu_to_density_g_ml(np.nan_to_num(hu)))
        return float(rho.astype(np.float64).sum() * vv), lung_vol
    return lung_vol * params.lung_density_g_ml, lung_vol


def lung_mask_on_grid(segmentation, lung_names, grid):
    """(Z, Y, X) bool mask of the union of the named segments, read (nearest) on ``grid``."""
    box, union = _union_mask(segmentation, lung_names)
    if box is None:
        return np.zeros(grid.shape, bool)
    # Nearest-neighbour reading commutes with the union: one resampling for all the segments.
    full = np.zeros(segmentation.grid.shape, bool)
    full[box] = union
    return resample_mask(full, segmentation.grid, grid)


def density_map_g_ml(grid, params, ct=None, lung_mask=None):
    """Mass density on ``grid``, g/mL.

    Without a CT (or with ``params.density_from_ct`` False): ``params.tissue_density_g_ml``
    everywhere and ``params.lung_density_g_ml`` in ``lung_mask``.  With a CT (HU, any grid,
    read trilinearly): the Schneider et al. 2000 table, and in ``lung_mask`` the Kao et al. 2014
    lung formula (at least ``MIN_DENSITY_G_ML``).  Air (below ``MIN_DENSITY_G_ML``) outside the
    lungs and voxels the CT does not cover take the tissue density: counts there are blur and
    scatter, and air density would turn them into meaningless doses of thousands of Gy.

    Returns
    -------
    (Volume float32 g/mL, outside_ct (Z, Y, X) bool ndarray or None, description str)
    """
    if ct is None or not params.density_from_ct:
        rho = np.full(grid.shape, np.float32(params.tissue_density_g_ml), np.float32)
        if lung_mask is not None:
            rho[lung_mask] = np.float32(params.lung_density_g_ml)
        text = "constant (tissue %.3g g/mL, lung %.3g g/mL)" % (params.tissue_density_g_ml, params.lung_density_g_ml)
        return Volume(rho, grid=grid, name="density", unit="g/mL"), None, text
    outside_ct = ~inside_mask(ct.grid, grid)
    hu = resample_volume(ct, grid, "linear", default=-1000.0).array
    rho = physics.hu_to_density_g_ml(hu)
    if lung_mask is not None:
        rho = np.where(lung_mask, np.maximum(physics.lung_hu_to_density_g_ml(hu), MIN_DENSITY_G_ML), rho)
        air = (rho < MIN_DENSITY_G_ML) & ~lung_mask
    else:
        air = rho < MIN_DENSITY_G_ML
    rho = np.where(air | outside_ct, np.float32(params.tissue_density_g_ml), rho).astype(np.float32)
    text = (
        f"CT (Schneider 2000; lung segments: Kao 2014, at least {MIN_DENSITY_G_ML} g/mL); air (< {MIN_DENSITY_G_ML} g/mL) "
        f"and voxels outside the CT: tissue density {params.tissue_density_g_ml:g} g/mL"
    )
    return Volume(rho, grid=grid, name="density", unit="g/mL"), outside_ct, text


def _progress(cb, fraction, message):
    if cb is not None:
        cb(float(fraction), message)


def _validate_activity(activity, what):
    if not isinstance(activity, Volume):
        raise InputError(f"{what} must be a Volume, got {type(activity).__name__}")
    act.check_finite(activity, what)


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
    rules : RuleSet, preset name or rule-file path (default preset when None).
    dose_gy : Volume on the activity grid, optional: a dose map computed elsewhere (e.g. by the
        VTK filter in Slicer) to use instead of computing one.
    dose_function : callable(activity_gbq, density_g_ml, params, lung_mask) -> Volume, optional:
        computes the dose map from the activity (GBq/voxel) and density (g/mL) Volumes of the
        activity grid in place of :func:`~TAREDosimetryLib.dose.dose_map_gy` (the Slicer module
        passes one that runs the VTK filter :class:`~TAREDosimetryLib.vtkfilter.TAREDoseFilter`).
    inputs : dict, descriptions of the inputs (file names) recorded in the result.
    progress : callable(fraction, message), optional.

    Returns
    -------
    CaseResult
    """
    t_start = time.perf_counter()
    timings = {}
    params = params or DosimetryParams()
    ruleset = load_rules(rules)
    warnings = list(getattr(segmentation, "notes", []))
    what = "activity image" + (f" {activity.name}" if getattr(activity, "name", "") else "")
    _progress(progress, 0.0, "checking inputs")
    _validate_activity(activity, what)
    if ct is not None:
        act.check_finite(ct, "CT image")

    # -- geometry and roles -----------------------------------------------------------------
    agrid = activity.grid
    if segmentation.grid.overlap_fraction(agrid) <= 0:
        raise GeometryError(
            f"the segmentation ({segmentation.source or 'segments'}) and the {what} do not overlap in physical "
            f"space (segmentation bounds {np.round(segmentation.grid.physical_bounds_mm()[0], 1).tolist()}.."
            f"{np.round(segmentation.grid.physical_bounds_mm()[1], 1).tolist()} mm, image bounds "
            f"{np.round(agrid.physical_bounds_mm()[0], 1).tolist()}..{np.round(agrid.physical_bounds_mm()[1], 1).tolist()} mm, LPS)"
        )
    if not segmentation.names:
        raise InputError(
            f"the segmentation ({segmentation.source or 'segments'}) holds no segments (e.g. a label map of zeros, "
            "or a label table that names none of its labels)"
        )
    role_of = assign_roles(segmentation.names, roles)
    used = [n for n in segmentation.names if role_of[n] != "ignore"]
    if not used:
        raise InputError("every segment has role 'ignore': nothing to measure")
    lung_from = params.effective_lung_dose_from
    if lung_from == "lsf" and params.calibration == "absolute" and params.administered_activity_gbq is None:
        raise InputError(
            "administered_activity_gbq is required by the LSF lung model (lung_dose_from 'lsf') with absolute "
            "calibration: give --administered-activity-gbq, or --lung-dose-from image"
        )
    lung_names = [n for n in used if role_of[n] == "lung"]
    sampler = MetricsSampler(segmentation, agrid, used)
    if sampler.empty:
        raise InputError(
            f"segment(s) {', '.join(repr(n) for n in sampler.empty)} are empty (no voxels); remove them or give them "
            f"role ignore (e.g. --role \"{sampler.empty[0]}=ignore\")"
        )
    for n in used:
        if lung_from == "lsf" and n in lung_names:
            continue  # LSF lung model needs only the lung mass, not lung uptake
        outside = 1.0 - sampler.inside_fraction[n]
        if outside > MAX_OUTSIDE_FRACTION:
            raise GeometryError(
                f"segment {n!r}: {100 * outside:.1f} % of its volume lies outside the {what}; the dose there is unknown "
                f"(crop the segment, or give it role ignore: --role \"{n}=ignore\")"
            )
        if outside > 0:
            warnings.append(f"segment {n!r}: {100 * outside:.2f} % of its volume lies outside the activity image (dose 0 there)")
    timings["geometry"] = time.perf_counter() - t_start

    by_role = {}
    for n in used:
        by_role.setdefault(role_of[n], []).append(n)
    tumors = by_role.get("tumor", [])
    liver_names = by_role.get("liver") or (by_role.get("right_lobe", []) + by_role.get("left_lobe", []))
    derived = False
    if not by_role.get("normal_liver") and liver_names and tumors:
        sampler.masks[DERIVED_NORMAL_LIVER] = sampler.union(liver_names) & ~sampler.union(tumors)
        if np.count_nonzero(sampler.masks[DERIVED_NORMAL_LIVER]) == 0:
            del sampler.masks[DERIVED_NORMAL_LIVER]
            warnings.append("normal liver (liver minus tumours) is empty; no normal-liver metrics")
        else:
            derived = True
            role_of = dict(role_of)
            role_of[DERIVED_NORMAL_LIVER] = "normal_liver"
            used = used + [DERIVED_NORMAL_LIVER]

    # -- activity ----------------------------------------------------------------------------
    _progress(progress, 0.15, "activity map")
    t0 = time.perf_counter()
    values, n_neg, neg_frac = act.clip_negative(activity)
    if n_neg:
        warnings.append(
            f"{n_neg} negative voxel(s) in the {what} were set to 0 (they summed to {100 * neg_frac:.3g} % of the positive total)"
        )
    vv_act = agrid.voxel_volume_ml
    conc = Volume(values / np.float32(vv_act), grid=agrid)  # counts (or Bq) per mL
    conc_m = sampler.sample(conc, "nearest")
    total_image = float(values.sum(dtype=np.float64))
    if not total_image > 0:
        raise InputError(f"the {what} holds no positive counts")
    summary = {"image_total": total_image, "negative_voxels_clipped": n_neg}
    if params.calibration == "relative" and (params.hours_since_administration > 0 or params.image_decay_corrected):
        warnings.append(
            f"hours_since_administration ({params.hours_since_administration:g} h) and image_decay_corrected "
            f"({params.image_decay_corrected}) are ignored with relative calibration: the counts are scaled to the "
            "administered activity (use --quantitative for an image in Bq/mL)"
        )
    if params.calibration == "relative":
        if params.reference_region == "image":
            ref_counts = total_image
        else:
            ref_names = liver_names if params.reference_region == "liver" else by_role.get("perfused", [])
            if params.reference_region == "liver" and not ref_names:
                ref_names = by_role.get("normal_liver", []) + tumors + by_role.get("perfused_normal", [])
            if not ref_names:
                raise InputError(
                    f"reference region '{params.reference_region}' needs a segment with role "
                    f"{'liver (or right/left lobes)' if params.reference_region == 'liver' else 'perfused'}; roles found: "
                    + ", ".join(f"{n}={role_of[n]}" for n in used)
                )
            ref_counts = float(conc_m[sampler.union(ref_names)].sum(dtype=np.float64) * sampler.voxel_volume_ml)
        act_arr, factor = act.scale_counts_to_gbq(values, ref_counts, params)
        summary.update(
            reference_region=params.reference_region,
            reference_counts=ref_counts,
            gbq_per_count=factor,
            reference_activity_gbq=act.reference_activity_gbq(params),
            lung_activity_gbq=act.lung_activity_gbq(params),
            administered_activity_gbq=params.administered_activity_gbq,
        )
    else:
        act_arr, factor = act.absolute_activity_gbq(values, vv_act, params)  # values are Bq/mL
        summary.update(decay_correction_factor=factor)
    activity_gbq = Volume(act_arr, grid=agrid, name="activity", unit="GBq")
    summary["image_activity_gbq"] = float(act_arr.sum(dtype=np.float64))
    if params.calibration == "absolute" and not (
        PLAUSIBLE_Y90_GBQ[0] <= summary["image_activity_gbq"] <= PLAUSIBLE_Y90_GBQ[1]
    ):
        warnings.append(
            f"the {what} holds {summary['image_activity_gbq']:.3g} GBq in all (absolute calibration), outside the "
            f"{PLAUSIBLE_Y90_GBQ[0]:g}-{PLAUSIBLE_Y90_GBQ[1]:g} GBq of Y-90 radioembolization: is the image really in Bq/mL "
            "(not counts, kBq/mL or SUV)?"
        )
    if liver_names or lung_names:
        inside = float(conc_m[sampler.union(liver_names + lung_names)].sum(dtype=np.float64) * sampler.voxel_volume_ml)
        outside_frac = max(0.0, 1.0 - inside / total_image)
        summary["fraction_outside_liver_and_lungs"] = outside_frac
        if outside_frac > 0.20:
            warnings.append(
                f"{100 * outside_frac:.1f} % of the image counts lie outside the liver and lungs (more than 20 %): "
                "check extrahepatic uptake, the segmentation and the registration"
            )
    timings["activity"] = time.perf_counter() - t0

    # -- density -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    lung_mask_act = lung_mask_on_grid(segmentation, lung_names, agrid) if lung_names else None
    density, outside_ct, summary["density_source"] = density_map_g_ml(agrid, params, ct=ct, lung_mask=lung_mask_act)
    if outside_ct is not None:
        outside_ct_m = sampler.sample(Volume(outside_ct.astype(np.float32), grid=agrid), "nearest") > 0.5
        seg_outside_ct = [n for n in used if n in sampler.masks and np.any(sampler.masks[n] & outside_ct_m)]
        if seg_outside_ct:
            warnings.append(
                "the CT does not cover all of segment(s) " + ", ".join(repr(n) for n in seg_outside_ct)
                + f": tissue density {params.tissue_density_g_ml:g} g/mL is used there"
            )
    timings["density"] = time.perf_counter() - t0

    # -- dose ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    if dose_gy is not None and dose_function is not None:
        raise InputError("give either dose_gy or dose_function, not both")
    if dose_gy is None:
        _progress(progress, 0.35, f"dose map ({params.method})")
        compute = dose_function or (lambda a, d, p, m: dose_map_gy(a, d, p, lung_mask=m))
        dose = compute(activity_gbq, density, params, lung_mask_act)
        if not isinstance(dose, Volume) or not dose.grid.same_as(agrid):
            raise GeometryError("the dose function must return a Volume on the activity image's grid")
        act.check_finite(dose, "dose map")
    else:
        if not isinstance(dose_gy, Volume) or not dose_gy.grid.same_as(agrid):
            raise GeometryError("dose_gy must be a Volume on the activity image's grid")
        act.check_finite(dose_gy, "dose map")
        dose = dose_gy
    timings["dose"] = time.perf_counter() - t0

    # -- metrics --------------------------------------------------------------------------------
    _progress(progress, 0.7, "metrics and DVH")
    t0 = time.perf_counter()
    interp = params.sampling
    dose_m = sampler.sample(dose, interp)
    rho_m = sampler.sample(density, "nearest" if interp == "nearest" else "linear")
    actc_m = sampler.sample(Volume(act_arr / np.float32(vv_act), grid=agrid), "nearest" if interp == "nearest" else "linear")
    total_activity = summary["image_activity_gbq"]
    results = []
    lsf_lung = lung_from == "lsf"
    for n in used:
        role = role_of[n]
        if lsf_lung and role == "lung":
            continue
        msk = sampler.masks[n]
        metrics, dvh = segment_metrics(dose_m[msk], rho_m[msk], actc_m[msk], sampler.voxel_volume_ml, role, params, name=n)
        metrics["activity_pct"] = 100.0 * metrics["activity_gbq"] / total_activity if total_activity > 0 else float("nan")
        info = segmentation.info(n) if n != DERIVED_NORMAL_LIVER else None
        results.append(
            SegmentResult(
                n, role, metrics, dvh,
                segment_id=info.segment_id if info else n,
                color=info.color if info else (0.56, 0.79, 0.49),
                note="liver minus tumours" if info is None else "",
            )
        )
    # lungs
    if lsf_lung:
        a_lung = act.lung_activity_gbq(params)
        if lung_names:
            lung_mass_g, lung_vol = _lsf_lung_mass_g(segmentation, lung_names, ct, params)
            if lung_mass_g < MIN_PLAUSIBLE_LUNG_MASS_G:
                warnings.append(
                    f"the lung segments ({', '.join(repr(n) for n in lung_names)}) weigh only {lung_mass_g:.0f} g "
                    f"(adult lungs about 1000 g): if they do not cover both whole lungs, the LSF lung dose "
                    f"K A LSF / m is overestimated; segment the whole lungs, or give these segments another role "
                    f"to use the default lung mass ({params.default_lung_mass_g:g} g, --lung-mass-g)"
                )
            note = "uniform lung dose from the LSF; mass from segments " + ", ".join(lung_names)
        else:
            lung_mass_g, lung_vol = params.default_lung_mass_g, None
            note = f"uniform lung dose from the LSF; no lung segment, default lung mass {params.default_lung_mass_g:g} g"
        d_lung = params.k_gy_kg_per_gbq * a_lung / (lung_mass_g * 1e-3) if lung_mass_g > 0 else float("nan")
        metrics, dvh = _uniform_metrics(d_lung, lung_mass_g, lung_vol, a_lung, "lung", params, LUNG_LSF_ENTRY)
        if lung_vol is None:
            metrics["volume_ml"] = float("nan")
        metrics["activity_pct"] = float("nan")
        results.append(SegmentResult(LUNG_LSF_ENTRY, "lung", metrics, dvh, segment_id=",".join(lung_names), color=(0.44, 0.72, 0.82), note=note))
        summary["lung_mean_gy"] = d_lung
        summary["lung_mass_g"] = lung_mass_g
    elif lung_names:
        # Mean dose of the lungs as one organ: energy over mass of the union of the lung segments
        # (not the plain average of the lobes' means, which would weight a small lobe like a large one).
        lung_all = sampler.union(lung_names)
        w = rho_m[lung_all].astype(np.float64)
        summary["lung_mean_gy"] = float((dose_m[lung_all] * w).sum() / w.sum()) if w.sum() > 0 else float("nan")
        summary["lung_mass_g"] = float(w.sum() * sampler.voxel_volume_ml)
        if len(lung_names) > 1:
            # Lung limits are on the mean dose of the lungs as a whole: judge the union, report the parts.
            metrics, dvh = segment_metrics(dose_m[lung_all], rho_m[lung_all], actc_m[lung_all], sampler.voxel_volume_ml,
                                           "lung", params, name=LUNG_ALL_ENTRY)
            metrics["activity_pct"] = 100.0 * metrics["activity_gbq"] / total_activity if total_activity > 0 else float("nan")
            for r in results:
                if r.role == "lung":
                    r.rules_by_role = False
            results.append(SegmentResult(LUNG_ALL_ENTRY, "lung", metrics, dvh, segment_id=",".join(lung_names),
                                         color=(0.44, 0.72, 0.82), note="union of " + ", ".join(lung_names)))
    for r in results:
        if r.role == "lung":
            r.metrics["cumulative_mean_gy"] = r.metrics["mean_gy"] + params.prior_lung_dose_gy

    # T/N ratios against perfused normal liver when present, else normal liver.
    normal_ref = [r for r in results if r.role == "perfused_normal"] or [r for r in results if r.role == "normal_liver"]
    if normal_ref:
        ref = normal_ref[0]
        summary["tn_reference"] = ref.name
        for r in results:
            if r.role == "tumor":
                r.metrics["tn_ratio"] = r.metrics["mean_gy"] / ref.metrics["mean_gy"] if ref.metrics["mean_gy"] > 0 else float("nan")
    timings["metrics"] = time.perf_counter() - t0

    evaluations = evaluate_rules(ruleset, results)
    measured = {r.name for r in results}
    for rule in ruleset.rules:
        if rule.segment and rule.segment not in measured:
            # N/A rows do not count in the overall status: a misspelt name must not pass unnoticed.
            warnings.append(
                f"rule {rule.label!r} names segment {rule.segment!r}, which was not measured (no such segment, or "
                f"role ignore); it is N/A. Measured segments: {', '.join(sorted(measured))}"
            )
    timings["total"] = time.perf_counter() - t_start
    _progress(progress, 1.0, "done")
    return CaseResult(
        params=params,
        rules=ruleset,
        activity_gbq=activity_gbq,
        dose_gy=dose,
        density_g_ml=density,
        segments=results,
        evaluations=evaluations,
        warnings=warnings,
        summary=summary,
        inputs=dict(inputs or {}, roles={n: role_of[n] for n in role_of}, derived_normal_liver=derived),
        metrics_grid=sampler.describe(),
        timings_s=timings,
    )
