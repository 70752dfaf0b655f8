"""Parameters of one dosimetry calculation, as one immutable, validated object.

A :class:`DosimetryParams` is written next to every result (``metrics.json``) so that any
number can be reproduced.  Units are in the field names.
"""

import math
from dataclasses import asdict, dataclass, fields, replace

from . import physics
from .errors import InputError

__all__ = ["DosimetryParams", "CALIBRATIONS", "REFERENCE_REGIONS", "DOSE_METHODS", "DEVICES", "SAMPLINGS", "PHASES"]

CALIBRATIONS = ("relative", "absolute")
#: Region whose counts are set equal to the activity that reached the liver (relative calibration).
REFERENCE_REGIONS = ("liver", "perfused", "image")
DOSE_METHODS = ("ldm", "dvk")
DEVICES = ("auto", "cpu", "gpu")
#: How values of the dose grid are read at the centres of the metrics grid.
SAMPLINGS = ("nearest", "linear")
#: Treatment phase of a case: 'pre' (a prediction: MAA SPECT, planning) or 'post' (a verification of
#: the delivered dose: Y-90 PET or Bremsstrahlung SPECT); None: inferred from the inputs, if they say.
PHASES = ("pre", "post")
LUNG_DOSE_SOURCES = ("auto", "lsf", "image")
DVK_LUNG_MODES = ("kernel", "ldm")


def _check_choice(name, value, choices):
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


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
        residual_fraction : fraction left in the vial/catheter, in [0, 1).
        lung_shunt_fraction : LSF in [0, 1).
        reference_region : 'liver' (default), 'perfused' or 'image': the region whose counts
            stand for A_adm (1 - residual) (1 - LSF).
        hours_since_administration : scan time minus administration time (absolute calibration).
        image_decay_corrected : the absolute image is already decay-corrected to administration.
        allow_negative : go on when negative voxels sum to more than 5 % of the positive total
            (they are set to 0 either way; below 5 % a warning says how much was clipped).
    Dose
        method : 'ldm' (local deposition) or 'dvk' (dose-voxel-kernel convolution).
        device : 'auto', 'cpu' or 'gpu' (array backend for DVK).
        k_gy_kg_per_gbq : dose per activity for full local absorption.
        half_life_h : Y-90 half-life (decay correction, BED).
        tissue_density_g_ml, lung_density_g_ml : constant densities used without CT.
        density_from_ct : use the CT (HU -> density) when a CT is given.
        default_lung_mass_g : lung mass when no lung segment exists.
        lung_dose_from : 'lsf' (uniform lung dose from the LSF), 'image' (voxel dose in the lung
            segments) or 'auto' (lsf for relative, image for absolute calibration).
        dvk_lung_mode : with DVK, 'kernel' (density-corrected kernel dose) or 'ldm' (keep local
            deposition in lung voxels).
        dvk_radius_mm : kernel truncation radius in tissue, mm (12 mm holds 99.6 % of the
            beta energy; the rest is the bremsstrahlung tail).
    Metrics
        sampling : 'nearest' or 'linear' reading of dose at the metrics grid's voxel centres.
        dvh_bin_width_gy : None for exact (sorted-voxel) metrics, else the bin width in Gy.
        dvh_curve_step_gy : dose step of the DVH curves written to dvh.csv / the plot.
        d_levels_pct, v_levels_gy : D_x and V_x metrics to report.
        eud_alpha_per_gy : radiosensitivity for EUD.
        tumor_alpha_beta_gy, normal_alpha_beta_gy, t_repair_h : BED parameters.
        prior_lung_dose_gy : lung dose of earlier treatments (cumulative lung rule).
    Context
        phase : None, 'pre' (the doses are a prediction: MAA SPECT, planning) or 'post' (a
            verification of the delivered dose: Y-90 PET or Bremsstrahlung SPECT); None lets the
            report infer it from the inputs where they say (:mod:`.evaluation.phase`).
    """

    calibration: str = "relative"
    administered_activity_gbq: float = None
    residual_fraction: float = 0.0
    lung_shunt_fraction: float = 0.0
    reference_region: str = "liver"
    hours_since_administration: float = 0.0
    image_decay_corrected: bool = False
    allow_negative: bool = False

    method: str = "ldm"
    device: str = "auto"
    k_gy_kg_per_gbq: float = physics.K_GY_KG_PER_GBQ
    half_life_h: float = physics.Y90_HALF_LIFE_H
    tissue_density_g_ml: float = physics.TISSUE_DENSITY_G_ML
    lung_density_g_ml: float = physics.LUNG_DENSITY_G_ML
    density_from_ct: bool = True
    default_lung_mass_g: float = physics.DEFAULT_LUNG_MASS_G
    lung_dose_from: str = "auto"
    dvk_lung_mode: str = "kernel"
    dvk_radius_mm: float = 12.0

    sampling: str = "nearest"
    dvh_bin_width_gy: float = None
    dvh_curve_step_gy: float = 0.1
    d_levels_pct: tuple = (2, 5, 10, 30, 50, 70, 90, 95, 98)
    v_levels_gy: tuple = (20, 30, 40, 70, 100, 120, 150, 205)
    eud_alpha_per_gy: float = 0.036
    tumor_alpha_beta_gy: float = 10.0
    normal_alpha_beta_gy: float = 2.5
    t_repair_h: float = 1.5
    prior_lung_dose_gy: float = 0.0
    phase: str = None

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
        _check_number("residual_fraction", self.residual_fraction, lo=0, hi=1, hi_open=True)
        _check_number("lung_shunt_fraction", self.lung_shunt_fraction, lo=0, hi=1, hi_open=True)
        _check_number("hours_since_administration", self.hours_since_administration, lo=0)
        _check_number("k_gy_kg_per_gbq", self.k_gy_kg_per_gbq, lo=0, lo_open=True)
        _check_number("half_life_h", self.half_life_h, lo=0, lo_open=True)
        _check_number("tissue_density_g_ml", self.tissue_density_g_ml, lo=0, lo_open=True, hi=5)
        _check_number("lung_density_g_ml", self.lung_density_g_ml, lo=0, lo_open=True, hi=5)
        _check_number("dvk_radius_mm", self.dvk_radius_mm, lo=1.0, hi=50.0)
        _check_number("default_lung_mass_g", self.default_lung_mass_g, lo=0, lo_open=True)
        _check_number("dvh_bin_width_gy", self.dvh_bin_width_gy, lo=0, lo_open=True, allow_none=True)
        _check_bin_width(self.dvh_bin_width_gy)
        _check_number("dvh_curve_step_gy", self.dvh_curve_step_gy, lo=0, lo_open=True)
        _check_number("eud_alpha_per_gy", self.eud_alpha_per_gy, lo=0, lo_open=True)
        _check_number("tumor_alpha_beta_gy", self.tumor_alpha_beta_gy, lo=0, lo_open=True)
        _check_number("normal_alpha_beta_gy", self.normal_alpha_beta_gy, lo=0, lo_open=True)
        _check_number("t_repair_h", self.t_repair_h, lo=0)
        _check_number("prior_lung_dose_gy", self.prior_lung_dose_gy, lo=0)
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
        return d

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return cls(**data)
