"""Radiobiological parameters per segment role, with their sources: BED and EUD.

- BED of a permanent, decaying Y-90 implant (formula: Dale 1985, :func:`..physics.bed_permanent_implant_gy`)
  uses alpha/beta and the repair half-time of the tissue: the tumour values for role 'tumor', the
  normal-liver values for every other role (lung included: there is no Y-90-specific lung value).
- EUD (``-(1/alpha) ln(mean exp(-alpha D))``) needs the radiosensitivity alpha of the tissue; only
  a tumour alpha is defined, so EUD is reported for tumours only (other segments: not computed).

The values are defaults of :class:`~TAREDosimetryLib.params.DosimetryParams` (override them there);
:func:`radiobiology_table` records, per role group, the values used and their sources in
metrics.json and the report.  They are population values, not patient-specific.
"""

__all__ = ["bed_parameters", "eud_alpha_per_gy", "radiobiology_table", "SOURCES"]

SOURCES = {
    "bed_formula": "BED of a permanent exponentially decaying implant: Dale RG, Br J Radiol 58 (1985) 515",
    "tumour": "alpha/beta 10 Gy: the conventional linear-quadratic value for tumours (early-responding tissue); "
              "repair half-time 1.5 h; as used for liver tumours in radioembolization BED analyses, reviewed with "
              "their uncertainties in Cremonesi M et al., Front Oncol 4 (2014) 210",
    "normal liver": "alpha/beta 2.5 Gy and repair half-time 1.5 h: conventional values for late-responding normal liver, "
                    "reviewed for radioembolization in Cremonesi M et al., Front Oncol 4 (2014) 210",
    "lung": "no Y-90-specific lung values: the normal-liver alpha/beta and repair half-time are applied to lung",
    "eud": "alpha 0.036 /Gy: the project's default tumour radiosensitivity (PHYSICS.md), of the order of the liver-tumour "
           "values discussed in Cremonesi M et al., Front Oncol 4 (2014) 210; no single measured source and not "
           "patient-specific (set eud_alpha_per_gy); EUD is reported for tumours only",
}


def bed_parameters(role, params):
    """(alpha/beta in Gy, repair half-time in h) for a segment of ``role``."""
    ab = params.tumor_alpha_beta_gy if role == "tumor" else params.normal_alpha_beta_gy
    return ab, params.t_repair_h


def eud_alpha_per_gy(role, params):
    """The EUD radiosensitivity (1/Gy) for ``role``; None for roles other than tumour (no EUD)."""
    return params.eud_alpha_per_gy if role == "tumor" else None


def radiobiology_table(params):
    """{group: {roles, bed_alpha_beta_gy, bed_t_repair_h, eud_alpha_per_gy, source}} for metrics.json and the report."""
    from .roles import ROLES

    normal_roles = [r for r in ROLES if r not in ("tumor", "lung", "ignore")]
    groups = (("tumour", ["tumor"], "tumour"), ("normal liver", normal_roles, "normal liver"), ("lung", ["lung"], "lung"))
    out = {}
    for name, roles, src in groups:
        ab, trep = bed_parameters(roles[0], params)
        alpha = eud_alpha_per_gy(roles[0], params)
        source = SOURCES[src] + ("; EUD: " + SOURCES["eud"] if alpha else "; EUD not computed")
        out[name] = {"roles": roles, "bed_alpha_beta_gy": ab, "bed_t_repair_h": trep, "eud_alpha_per_gy": alpha,
                     "source": source + "; BED formula: " + SOURCES["bed_formula"]}
    return out
