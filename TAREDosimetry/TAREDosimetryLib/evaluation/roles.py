"""Segment roles and a guesser that reads them from segment names.

Roles tell the engine what a segment is: they choose the reference region of relative
calibration, the density (lung), the BED parameters (tumour or normal tissue), the T/N ratio
and which threshold rules apply.
"""

import re

from ..errors import InputError

__all__ = ["ROLES", "ROLE_LABELS", "guess_role", "assign_roles", "parse_role_assignments"]

ROLES = (
    "liver",
    "right_lobe",
    "left_lobe",
    "tumor",
    "normal_liver",
    "perfused_normal",
    "perfused",
    "lung",
    "other",
    "ignore",
)

ROLE_LABELS = {
    "liver": "whole liver",
    "right_lobe": "right lobe",
    "left_lobe": "left lobe",
    "tumor": "tumour",
    "normal_liver": "normal (non-tumoural) liver",
    "perfused_normal": "perfused normal liver",
    "perfused": "perfused volume",
    "lung": "lung",
    "other": "other (reported, no rules)",
    "ignore": "ignored",
}

_ALIASES = {
    "tumour": "tumor", "tumor": "tumor", "lesion": "tumor", "tumors": "tumor", "tumours": "tumor",
    "normal": "normal_liver", "normal liver": "normal_liver", "normal_liver": "normal_liver",
    "healthy liver": "normal_liver", "non-tumoral liver": "normal_liver", "ntl": "normal_liver",
    "perfused normal": "perfused_normal", "perfused_normal": "perfused_normal",
    "right lobe": "right_lobe", "left lobe": "left_lobe", "lungs": "lung",
}

# Ordered: the first pattern that matches wins, so specific names come before general ones.
_PATTERNS = (
    # "background liver" is the non-tumoural liver (normal_liver below), not a segment to ignore.
    ("ignore", r"\b(ignore|exclude[d]?)\b|\bbackground\b(?![\s_-]*liver)"),
    ("lung", r"\blungs?\b|\bpulmo|lung_(upper|lower|middle)|\blobe\b.*\blung|\bpulmonary\b"),
    ("perfused_normal", r"perfused[\s_-]*(normal|healthy|non[\s_-]*tumou?r(al)?)|(normal|healthy)[\s_-]*perfused"),
    ("perfused", r"\bperfus|\bterritory\b|\bpv\b"),
    ("normal_liver", r"(normal|healthy|non[\s_-]*tumou?r(al)?|background)[\s_-]*(whole[\s_-]*)?liver"
                     r"|liver[\s_-]*(normal|healthy)|whole[\s_-]*liver[\s_-]*normal|\bntl\b|\bnormal\b"),
    ("tumor", r"tumou?r|\blesions?\b|\bmet(s|astas[ie]s)?\b|\bhcc\b|\bnodules?\b|\bgtv\b|\btarget\b|\bmass\b|\blesion\d"),
    ("right_lobe", r"right[\s_-]*(liver[\s_-]*)?lobe|\brl\b|\brhl\b|liver[\s_-]*right|lobe[\s_-]*right|segments?\s*5-8"),
    ("left_lobe", r"left[\s_-]*(liver[\s_-]*)?lobe|\bll\b|\blhl\b|liver[\s_-]*left|lobe[\s_-]*left|segments?\s*2-4"),
    ("liver", r"liver|\bhepar\b|\bleber\b|\bfoie\b|\bhigado\b"),
)
_COMPILED = tuple((role, re.compile(p, re.IGNORECASE)) for role, p in _PATTERNS)


def _normalise(name):
    # TotalSegmentator writes lung_lower_lobe_left; split camelCase and underscores so \b works.
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    return re.sub(r"[_]+", " ", s).strip()


def guess_role(name):
    """Role guessed from a segment name (case-insensitive; 'other' when nothing matches).

    >>> guess_role("Tumor 1"), guess_role("lung_lower_lobe_left"), guess_role("perfused normal")
    ('tumor', 'lung', 'perfused_normal')
    """
    s = _normalise(name)
    for role, rx in _COMPILED:
        if rx.search(s):
            return role
    return "other"


def canonical_role(role, where="role"):
    """Role name from a user spelling ('tumour', 'Normal liver', ...); InputError when unknown."""
    key = str(role).strip().lower().replace("-", " ")
    if key.replace(" ", "_") in ROLES:
        return key.replace(" ", "_")
    if key in _ALIASES:
        return _ALIASES[key]
    raise InputError(f"unknown {where}: {role!r}; expected one of: {', '.join(ROLES)}")


def parse_role_assignments(items):
    """Parse ``["NAME=ROLE", ...]`` (command line) into {name: role}."""
    out = {}
    for item in items or ():
        if "=" not in str(item):
            raise InputError(f"--role expects NAME=ROLE, got {item!r}")
        name, role = str(item).rsplit("=", 1)
        if not name.strip():
            raise InputError(f"--role expects NAME=ROLE with a segment name, got {item!r}")
        out[name.strip()] = canonical_role(role, where=f"role in --role {item!r}")
    return out


def assign_roles(names, overrides=None):
    """{name: role} for every segment name: guessed, then replaced by ``overrides``.

    An override naming a segment that does not exist is an error (a typo would otherwise
    silently leave the guessed role in place).
    """
    names = list(names)
    roles = {n: guess_role(n) for n in names}
    for name, role in (overrides or {}).items():
        match = name if name in roles else next((n for n in names if n.lower() == str(name).lower()), None)
        if match is None:
            raise InputError(f"role given for segment {name!r}, but there is no such segment; segments: {', '.join(names)}")
        roles[match] = canonical_role(role, where=f"role for segment {name!r}")
    return roles
