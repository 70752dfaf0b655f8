"""The quantities the closed-form models need (volumes, masses, T/N, LSF, lung mass), typed in
(calculator mode) or measured on an MAA case, each with where it came from."""

import math
from dataclasses import dataclass, field

from .. import physics
from ..errors import InputError
from .compartments import check_fraction, check_positive
from .lsf import LsfEstimate

__all__ = ["PlanInputs", "calculator_inputs", "inputs_from_case"]


@dataclass
class PlanInputs:
    """Volumes in mL, masses in g, with ``sources`` {quantity: how it was obtained}.

    liver_volume_ml : whole liver, tumours included.  perfused_volume_ml : the treated volume
    (default the liver).  tumor_volume_ml : tumours inside the perfused volume (None: unknown).
    """

    liver_volume_ml: float
    perfused_volume_ml: float
    tumor_volume_ml: float = None
    tn_ratio: float = None
    lsf: LsfEstimate = None
    lung_mass_g: float = physics.DEFAULT_LUNG_MASS_G
    density_g_ml: float = physics.TISSUE_DENSITY_G_ML
    height_cm: float = None
    weight_kg: float = None
    masses_g: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    def mass_kg(self, what):
        """Mass in kg of 'liver', 'perfused', 'tumor', 'normal' (perfused minus tumours) or 'whole_normal'."""
        if what in self.masses_g:
            return self.masses_g[what] / 1000.0
        vol = {"liver": self.liver_volume_ml, "perfused": self.perfused_volume_ml, "tumor": self.tumor_volume_ml}
        if what == "normal":
            return (self.perfused_volume_ml - self.tumor_volume_ml) * self.density_g_ml / 1000.0
        if what == "whole_normal":
            return (self.liver_volume_ml - self.tumor_volume_ml) * self.density_g_ml / 1000.0
        return vol[what] * self.density_g_ml / 1000.0

    def to_dict(self):
        d = {k: getattr(self, k) for k in ("liver_volume_ml", "perfused_volume_ml", "tumor_volume_ml", "tn_ratio", "lung_mass_g",
                                           "density_g_ml", "height_cm", "weight_kg")}
        d["lung_shunt"] = self.lsf.to_dict() if self.lsf else None
        d["masses_g"] = {w: 1000.0 * self.mass_kg(w) for w in ("liver", "perfused", "tumor", "normal", "whole_normal")
                         if self.tumor_volume_ml is not None or w in ("liver", "perfused")}
        d["sources"] = dict(self.sources)
        return d


def calculator_inputs(liver_volume_ml, *, perfused_volume_ml=None, tumor_volume_ml=None, tn_ratio=None, lung_shunt_fraction=None,
                      lung_mass_g=None, density_g_ml=physics.TISSUE_DENSITY_G_ML, height_cm=None, weight_kg=None):
    """:class:`PlanInputs` from typed-in values (checked; one-line errors naming the option)."""
    liver = check_positive("--liver-volume-ml", liver_volume_ml)
    perfused = liver if perfused_volume_ml is None else check_positive("--perfused-volume-ml", perfused_volume_ml)
    if perfused > liver * (1 + 1e-9):
        raise InputError(f"--perfused-volume-ml ({perfused:g}) exceeds --liver-volume-ml ({liver:g}); the liver volume includes the tumours")
    tumor = None
    if tumor_volume_ml is not None:
        tumor = float(tumor_volume_ml)
        if not (math.isfinite(tumor) and 0 < tumor < perfused):
            raise InputError(f"--tumor-volume-ml must be > 0 and below the perfused volume ({perfused:g} mL), got {tumor_volume_ml!r}")
    if lung_shunt_fraction is None:
        raise InputError("--lung-shunt-fraction is required (the lung dose depends on it; 0 must be given explicitly)")
    lsf = LsfEstimate(check_fraction("--lung-shunt-fraction", lung_shunt_fraction), "given")
    sources = {"volumes": "given", "lung_shunt_fraction": "given",
               "lung_mass_g": "given" if lung_mass_g is not None else f"default {physics.DEFAULT_LUNG_MASS_G:g} g (no lung mass given)"}
    return PlanInputs(
        liver, perfused, tumor, None if tn_ratio is None else check_positive("--tn-ratio", tn_ratio), lsf,
        physics.DEFAULT_LUNG_MASS_G if lung_mass_g is None else check_positive("--lung-mass-g", lung_mass_g),
        check_positive("--density", density_g_ml), height_cm, weight_kg, sources=sources,
    )


def _sum(segments, key):
    return sum(s.metrics[key] for s in segments)


def inputs_from_case(base, lsf, *, height_cm=None, weight_kg=None):
    """:class:`PlanInputs` measured on a run_case result of the MAA (segment volumes and masses,
    T/N of activity concentration, lung mass from the lung segments or the default)."""
    by_role = {}
    for s in base.segments:
        by_role.setdefault(s.role, []).append(s)
    liver = by_role.get("liver") or (by_role.get("right_lobe", []) + by_role.get("left_lobe", []))
    if not liver:
        raise InputError("planning from images needs a liver segment (role liver, or the lobes)")
    perfused = by_role.get("perfused") or liver
    tumors = by_role.get("tumor", [])
    normal = by_role.get("perfused_normal") or by_role.get("normal_liver", [])[:1]
    inp = PlanInputs(_sum(liver, "volume_ml"), _sum(perfused, "volume_ml"), _sum(tumors, "volume_ml") if tumors else None,
                     lsf=lsf, lung_mass_g=float(base.summary.get("lung_mass_g") or base.params.lung_mass_used_g),
                     density_g_ml=base.params.tissue_density_g_ml, height_cm=height_cm, weight_kg=weight_kg)
    inp.masses_g = {"liver": _sum(liver, "mass_g"), "perfused": _sum(perfused, "mass_g")}
    inp.sources = {"volumes": "segments " + ", ".join(s.name for s in liver + perfused + tumors if s), "lung_shunt_fraction": lsf.method,
                   "lung_mass_g": "lung segments" if base.inputs.get("roles") and "lung" in base.inputs["roles"].values()
                   else f"default {base.params.lung_mass_used_g:g} g (no lung segment)"}
    if tumors and normal:
        m_t, a_t = _sum(tumors, "mass_g"), _sum(tumors, "activity_gbq")
        m_n, a_n = normal[0].metrics["mass_g"], normal[0].metrics["activity_gbq"]
        inp.masses_g.update(tumor=m_t, normal=m_n, whole_normal=_sum(by_role.get("normal_liver", normal)[:1], "mass_g"))
        inp.tn_ratio = (a_t / m_t) / (a_n / m_n) if a_n > 0 else None
        inp.sources["tn_ratio"] = f"MAA activity concentration, tumours ({', '.join(s.name for s in tumors)}) / {normal[0].name}"
    return inp
