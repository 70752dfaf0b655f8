"""Parameters of one dosimetry calculation, as one immutable, validated object.

A :class:`DosimetryParams` is written next to every result (``metrics.json``) so that any
number can be reproduced.  Units are in the field names.
"""

import math
from dataclasses import asdict, dataclass, fields, replace

from . import physics
from .errors import InputError

__all__ = [
    "DosimetryParams", "CALIBRATIONS", "REFERENCE_REGIONS", "DOSE_METHODS", "DEVICES", "SAMPLINGS", "PHASES",
    "MICROSPHERES", "INDICATIONS", "TREATMENT_APPROACHES", "RC_AXES", "USUAL_ACTIVITY_GBQ", "CLINICAL_FIELDS", "rc_table",
]

CALIBRATIONS = ("relative", "absolute")
#: Region whose counts are set equal to the activity that reached the liver (relative calibration).
REFERENCE_REGIONS = ("liver", "perfused", "image")
DOSE_METHODS = ("ldm", "dvk")
DEVICES = ("auto", "cpu", "gpu")
#: How the dose is measured on the segments: 'overlap' (exact partial-voxel weighting, each
#: activity voxel counts with the fraction of its volume inside the segment), or point sampling
#: at the segment voxels' centres: 'nearest' or 'linear' (approximations; see evaluation.sampling).
SAMPLINGS = ("overlap", "nearest", "linear")
#: Treatment phase of a case: 'pre' (a prediction: MAA SPECT, planning) or 'post' (a verification of
#: the delivered dose: Y-90 PET or Bremsstrahlung SPECT); None: inferred from the inputs, if they say.
PHASES = ("pre", "post")
LUNG_DOSE_SOURCES = ("auto", "lsf", "image")
DVK_LUNG_MODES = ("kernel", "ldm")
#: Clinical inputs that select threshold rules (None = not given).
MICROSPHERES = ("glass", "resin")
INDICATIONS = ("hcc", "icc", "mcrc", "breast", "other")
TREATMENT_APPROACHES = ("unilobar", "bilobar", "segmentectomy", "lobectomy")
CLINICAL_FIELDS = ("microsphere", "indication", "treatment_approach", "bilirubin_mg_dl", "hepatic_reserve_pct")
#: What a recovery-coefficient table is indexed by.
RC_AXES = ("diameter_mm", "volume_ml")
#: Administered Y-90 activities of radioembolization, GBq; outside is refused as a likely unit slip
#: (MBq typed as GBq) unless ``allow_unusual_activity``.
USUAL_ACTIVITY_GBQ = (0.05, 20.0)


def _check_choice(name, value, choices, allow_none=False):
    if value is None and allow_none:
        return
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_positive(name, value, hi=None):
    """``value`` as a float; InputError naming ``name`` unless it is a finite number > 0 (and <= ``hi``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0) or (hi is not None and v > hi):
        bound = f" and <= {hi}" if hi is not None else ""
        raise InputError(f"{name} must be positive{bound}, got {value!r}")
    return v


def _check_number(name, value, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False):
    if value is None and allow_none:
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise InputError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise InputError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value!r}")


#: Coarsest DVH bin allowed, Gy: D_x and V_x from a binned DVH move by up to one bin width, and
#: published thresholds are given to 1 Gy or better.
MAX_DVH_BIN_WIDTH_GY = 5.0


def _check_bin_width(width_gy):
    if width_gy is not None and float(width_gy) > MAX_DVH_BIN_WIDTH_GY:
        raise InputError(
            f"dvh_bin_width_gy must be <= {MAX_DVH_BIN_WIDTH_GY:g} Gy (D and V metrics of a binned DVH move by up to one bin "
            f"width; leave it unset for exact metrics), got {width_gy!r}"
        )


@dataclass(frozen=True)
class DosimetryParams:
    """Everything that determines a result, with defaults from PHYSICS.md.

    Activity
        calibration : 'relative' (counts proportional to activity; SPECT) or 'absolute'
            (image in Bq/mL; Y-90 PET, quantitative SPECT).
        administered_activity_gbq : activity injected (relative calibration), GBq.
        residual_fraction : fraction left in the vial/catheter, in [0, 1), or None when not given:
            relative calibration then takes 0 and the case is INCOMPLETE (every liver and tumour
            dose too high by 1/(1 - residual) if some activity stayed behind); 0 given is an
            explicit choice recorded in the report.  Absolute calibration does not use it (except
            in the LSF lung model's lung activity).
        lung_shunt_fraction : LSF in [0, 1), or None when not given (not measured): relative
            calibration with lung rules judged by the LSF model then refuses to run; 0 is an
            explicit choice (no shunt) recorded in the report.
        reference_region : 'liver' (default), 'perfused' or 'image': the region whose counts
            stand for A_adm (1 - residual) (1 - LSF).
        hours_since_administration : scan time minus administration time (absolute calibration),
            or None when not given: absolute calibration then needs it (0 when scanned at
            administration) or ``image_decay_corrected``; never a silent decay factor 1.
        image_decay_corrected : the absolute image is already decay-corrected to administration.
        allow_unusual_activity : run an administered activity outside 0.05-20 GBq (with a warning)
            instead of refusing it as a likely unit slip.
        allow_negative : go on when negative voxels sum to more than 5 % of the positive total
            (they are set to 0 either way; below 5 % a warning says how much was clipped).
    Clinical inputs (None = not given; they select conditional threshold rules and are recorded)
        microsphere : 'glass' or 'resin'.
        indication : 'hcc', 'icc', 'mcrc', 'breast' or 'other'.
        treatment_approach : 'unilobar', 'bilobar', 'segmentectomy' or 'lobectomy'.
        bilirubin_mg_dl : total serum bilirubin, mg/dL.
        hepatic_reserve_pct : hepatic reserve (untreated liver fraction), % of the liver volume.
    Dose
        method : 'ldm' (local deposition) or 'dvk' (dose-voxel-kernel convolution).
        device : 'auto', 'cpu' or 'gpu' (array backend for DVK).
        k_gy_kg_per_gbq : dose per activity for full local absorption.
        half_life_h : Y-90 half-life (decay correction, BED).
        tissue_density_g_ml, lung_density_g_ml : constant densities used without CT.
        density_from_ct : use the CT (HU -> density) when a CT is given.
        default_lung_mass_g : lung mass (g) for the LSF lung model when no lung segment exists, or
            None when not given: the conventional 1000 g (:data:`physics.DEFAULT_LUNG_MASS_G`) is
            then assumed and a case whose lung rules are judged with it is INCOMPLETE; a mass
            given is an explicit choice recorded in the report.
        lung_dose_from : 'lsf' (uniform lung dose from the LSF), 'image' (voxel dose in the lung
            segments) or 'auto' (lsf for relative, image for absolute calibration).
        dvk_lung_mode : with DVK, 'kernel' (density-corrected kernel dose) or 'ldm' (keep local
            deposition in lung voxels).
        dvk_radius_mm : kernel truncation radius in tissue, mm (12 mm holds 99.6 % of the
            beta energy; the rest is the bremsstrahlung tail).
    Metrics
        sampling : 'overlap' (default: exact partial-voxel weighting on the activity grid; also
            makes the density map a volume average over each activity voxel) or point sampling
            at the segment voxels' centres, 'nearest' or 'linear' (approximations).
        dvh_bin_width_gy : None for exact (sorted-voxel) metrics, else the bin width in Gy.
        dvh_curve_step_gy : dose step of the DVH curves written to dvh.csv / the plot.
        d_levels_pct, v_levels_gy : D_x and V_x metrics to report.
        eud_alpha_per_gy : radiosensitivity for EUD.
        tumor_alpha_beta_gy, normal_alpha_beta_gy, t_repair_h : BED parameters.
        prior_lung_dose_gy : lung dose of earlier treatments (cumulative lung rule), Gy, or None
            when not given: the cumulative lung dose is then unknown (the presets' cumulative rule
            is optional: N/A); 0 (a first treatment) is an explicit choice recorded in the report.
    Partial volume
        resolution_fwhm_mm : the image's spatial resolution (FWHM), mm, optional: a segment whose
            equivalent-sphere diameter is under 2 x FWHM gets a partial-volume warning.
        recovery_coefficients : optional ((x, rc), ...) table from a phantom scan (e.g. NEMA IEC
            body spheres), x in ``recovery_coefficient_axis`` units; tumour mean doses divided
            by the interpolated RC are reported as ``mean_gy_rc_corrected`` beside the
            uncorrected value (rules keep judging ``mean_gy`` unless a rule names the corrected one).
        recovery_coefficient_axis : 'diameter_mm' (equivalent-sphere diameter) or 'volume_ml'.
    Context
        phase : None, 'pre' (the doses are a prediction: MAA SPECT, planning) or 'post' (a
            verification of the delivered dose: Y-90 PET or Bremsstrahlung SPECT); None lets the
            report infer it from the inputs where they say (:mod:`.evaluation.phase`).
    """

    calibration: str = "relative"
    administered_activity_gbq: float = None
    residual_fraction: float = None
    lung_shunt_fraction: float = None
    reference_region: str = "liver"
    hours_since_administration: float = None
    image_decay_corrected: bool = False
    allow_unusual_activity: bool = False
    allow_negative: bool = False

    microsphere: str = None
    indication: str = None
    treatment_approach: str = None
    bilirubin_mg_dl: float = None
    hepatic_reserve_pct: float = None

    method: str = "ldm"
    device: str = "auto"
    k_gy_kg_per_gbq: float = physics.K_GY_KG_PER_GBQ
    half_life_h: float = physics.Y90_HALF_LIFE_H
    tissue_density_g_ml: float = physics.TISSUE_DENSITY_G_ML
    lung_density_g_ml: float = physics.LUNG_DENSITY_G_ML
    density_from_ct: bool = True
    default_lung_mass_g: float = None
    lung_dose_from: str = "auto"
    dvk_lung_mode: str = "kernel"
    dvk_radius_mm: float = 12.0

    sampling: str = "overlap"
    dvh_bin_width_gy: float = None
    dvh_curve_step_gy: float = 0.1
    d_levels_pct: tuple = (2, 5, 10, 30, 50, 70, 90, 95, 98)
    v_levels_gy: tuple = (20, 30, 40, 70, 100, 120, 150, 205)
    eud_alpha_per_gy: float = 0.036
    tumor_alpha_beta_gy: float = 10.0
    normal_alpha_beta_gy: float = 2.5
    t_repair_h: float = 1.5
    prior_lung_dose_gy: float = None
    phase: str = None

    resolution_fwhm_mm: float = None
    recovery_coefficients: tuple = None
    recovery_coefficient_axis: str = "diameter_mm"

    def __post_init__(self):
        _check_choice("calibration", self.calibration, CALIBRATIONS)
        _check_choice("reference_region", self.reference_region, REFERENCE_REGIONS)
        _check_choice("method", self.method, DOSE_METHODS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("lung_dose_from", self.lung_dose_from, LUNG_DOSE_SOURCES)
        _check_choice("dvk_lung_mode", self.dvk_lung_mode, DVK_LUNG_MODES)
        if self.phase is not None:
            _check_choice("phase", self.phase, PHASES)
        _check_number("administered_activity_gbq", self.administered_activity_gbq, lo=0, lo_open=True, allow_none=True)
        self._check_activity_range()
        _check_number("residual_fraction", self.residual_fraction, lo=0, hi=1, hi_open=True, allow_none=True)
        _check_number("lung_shunt_fraction", self.lung_shunt_fraction, lo=0, hi=1, hi_open=True, allow_none=True)
        _check_number("hours_since_administration", self.hours_since_administration, lo=0, allow_none=True)
        self._check_clinical_inputs()
        self._check_partial_volume_inputs()
        _check_number("k_gy_kg_per_gbq", self.k_gy_kg_per_gbq, lo=0, lo_open=True)
        _check_number("half_life_h", self.half_life_h, lo=0, lo_open=True)
        _check_number("tissue_density_g_ml", self.tissue_density_g_ml, lo=0, lo_open=True, hi=5)
        _check_number("lung_density_g_ml", self.lung_density_g_ml, lo=0, lo_open=True, hi=5)
        _check_number("dvk_radius_mm", self.dvk_radius_mm, lo=1.0, hi=50.0)
        _check_number("default_lung_mass_g", self.default_lung_mass_g, lo=0, lo_open=True, allow_none=True)
        _check_number("dvh_bin_width_gy", self.dvh_bin_width_gy, lo=0, lo_open=True, allow_none=True)
        _check_bin_width(self.dvh_bin_width_gy)
        _check_number("dvh_curve_step_gy", self.dvh_curve_step_gy, lo=0, lo_open=True)
        _check_number("eud_alpha_per_gy", self.eud_alpha_per_gy, lo=0, lo_open=True)
        _check_number("tumor_alpha_beta_gy", self.tumor_alpha_beta_gy, lo=0, lo_open=True)
        _check_number("normal_alpha_beta_gy", self.normal_alpha_beta_gy, lo=0, lo_open=True)
        _check_number("t_repair_h", self.t_repair_h, lo=0)
        _check_number("prior_lung_dose_gy", self.prior_lung_dose_gy, lo=0, allow_none=True)
        for name in ("d_levels_pct", "v_levels_gy"):
            values = getattr(self, name)
            try:
                t = tuple(float(v) for v in values)
            except TypeError:
                raise InputError(f"{name} must be a list of numbers, got {values!r}") from None
            for v in t:
                if not (math.isfinite(v) and v >= 0 and (name != "d_levels_pct" or v <= 100)):
                    raise InputError(f"{name} holds an invalid value {v!r}")
            object.__setattr__(self, name, t)

    def _check_activity_range(self):
        a = self.administered_activity_gbq
        lo, hi = USUAL_ACTIVITY_GBQ
        if a is None or self.allow_unusual_activity or lo <= float(a) <= hi:
            return
        hint = (f" Was it given in MBq ({float(a):g} MBq = {float(a) / 1000:g} GBq)?" if float(a) > hi
                else f" Was it given in TBq or as a fraction ({float(a):g} GBq = {float(a) * 1000:g} MBq)?")
        raise InputError(
            f"administered_activity_gbq {float(a):g} GBq is outside the {lo:g}-{hi:g} GBq of Y-90 radioembolization."
            + hint + " Give the activity in GBq, or --allow-unusual-activity to run it anyway (with a warning)"
        )

    def _check_clinical_inputs(self):
        _check_choice("microsphere", self.microsphere, MICROSPHERES, allow_none=True)
        _check_choice("indication", self.indication, INDICATIONS, allow_none=True)
        _check_choice("treatment_approach", self.treatment_approach, TREATMENT_APPROACHES, allow_none=True)
        _check_number("bilirubin_mg_dl", self.bilirubin_mg_dl, lo=0, hi=50, allow_none=True)
        _check_number("hepatic_reserve_pct", self.hepatic_reserve_pct, lo=0, hi=100, allow_none=True)

    def _check_partial_volume_inputs(self):
        _check_number("resolution_fwhm_mm", self.resolution_fwhm_mm, lo=0, lo_open=True, hi=100, allow_none=True)
        _check_choice("recovery_coefficient_axis", self.recovery_coefficient_axis, RC_AXES)
        if self.recovery_coefficients is not None:
            object.__setattr__(self, "recovery_coefficients", rc_table(self.recovery_coefficients))

    def clinical_inputs(self):
        """{name: value} of the clinical inputs that select conditional rules (None = not given)."""
        return {name: getattr(self, name) for name in CLINICAL_FIELDS}

    @property
    def residual_fraction_used(self):
        """The residual fraction the calculation uses: the one given, else 0 (relative calibration
        then makes the case INCOMPLETE, see :mod:`.evaluation.requirements`)."""
        return 0.0 if self.residual_fraction is None else float(self.residual_fraction)

    @property
    def lung_mass_used_g(self):
        """The LSF model's lung mass without lung segments: the one given, else the conventional
        1000 g (:data:`physics.DEFAULT_LUNG_MASS_G`; the case is then INCOMPLETE where lung rules judge it)."""
        return physics.DEFAULT_LUNG_MASS_G if self.default_lung_mass_g is None else float(self.default_lung_mass_g)

    @property
    def prior_lung_dose_term_gy(self):
        """What earlier treatments add to this treatment's lung dose: the prior lung dose given, else
        NaN (not given: the cumulative lung dose is unknown, its rule N/A)."""
        return float("nan") if self.prior_lung_dose_gy is None else float(self.prior_lung_dose_gy)

    @property
    def effective_lung_dose_from(self):
        if self.lung_dose_from != "auto":
            return self.lung_dose_from
        return "lsf" if self.calibration == "relative" else "image"

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise InputError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def to_dict(self):
        d = asdict(self)
        d["d_levels_pct"] = list(self.d_levels_pct)
        d["v_levels_gy"] = list(self.v_levels_gy)
        if self.recovery_coefficients is not None:
            d["recovery_coefficients"] = [list(p) for p in self.recovery_coefficients]
        return d

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def rc_table(table):
    """((x, rc), ...) sorted by x, validated: at least 2 points, x > 0 distinct, 0 < rc <= 1.5."""
    try:
        pairs = tuple((float(x), float(rc)) for x, rc in table)
    except (TypeError, ValueError):
        raise InputError(f"recovery_coefficients must be (x, rc) pairs of numbers, got {table!r}") from None
    pairs = tuple(sorted(pairs))
    if len(pairs) < 2:
        raise InputError(f"recovery_coefficients needs at least 2 (x, rc) points, got {len(pairs)}")
    xs = [x for x, _ in pairs]
    if any(not (math.isfinite(x) and x > 0) for x in xs) or len(set(xs)) != len(xs):
        raise InputError(f"recovery_coefficients: x values must be positive, finite and distinct, got {xs}")
    for x, rc in pairs:
        if not (math.isfinite(rc) and 0 < rc <= 1.5):
            raise InputError(f"recovery_coefficients: RC at {x:g} must be in (0, 1.5], got {rc!r}")
    return pairs
