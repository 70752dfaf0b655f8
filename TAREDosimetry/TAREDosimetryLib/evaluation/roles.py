"""Segment roles and a guesser that reads them from segment names.

Roles tell the engine what a segment is: they choose the reference region of relative
calibration, the density (lung), the BED parameters (tumour or normal tissue), the T/N ratio
and which threshold rules apply.
"""

import re
import unicodedata

from ..errors import InputError

__all__ = ["ROLES", "ROLE_LABELS", "guess_role", "assign_roles", "parse_role_assignments", "unrecognised_names"]

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

_LIVER = r"(liver|leber|foie|higado|fegato|lever|hepar)"
_TUMOUR = r"(tumou?rs?|tumeur|tumore|lesions?|lasion|gtv\w*|mets?|metasta\w*|hcc|nodules?)"
_NORMAL = r"(normal|healthy|non[\s_-]*tumou?r(al|ous)?|background|gesunde?|sain|sano|frisk|gezonde)"
#: Organs and structures that are recognised as 'other' (no warning): TotalSegmentator and RT names.
_KNOWN_OTHER = (
    r"\b(vessels?|veins?|vena|arter(y|ies)|aorta|portal|trachea|bronch\w*|spleen|splenic|kidneys?|renal|"
    r"gall\s*bladder|gallbladder|stomach|pancreas|duoden\w*|colon|bowel|intestin\w*|o?esophag\w*|heart|adrenal|"
    r"bladder|prostate|vertebra\w*|sacrum|ribs?|spinal|spine|femur|hip|humerus|scapula|clavicula|sternum|skull|"
    r"brain|muscles?|gluteus\w*|iliopsoas|autochthon\w*|thyroid|body|external|skin|couch|fat|ptv|bones?|"
    r"lymph\w*|cyst\w*|couinaud)\b|\bliver\s*segment\s*\d"
)

# Ordered: the first pattern that matches wins, so specific names come before general ones.
# Names are compared without accents (Tumör -> Tumor, hígado -> higado, Läsion -> Lasion).
_PATTERNS = (
    # "background liver" is the non-tumoural liver (normal_liver below), not a segment to ignore.
    ("ignore", r"\b(ignore|exclude[d]?)\b|\bbackground\b(?![\s_-]*(liver|leber|foie))"),
    ("other", _KNOWN_OTHER + r"|\bnon[\s_-]*perfus|\bunperfus|\buntreated"),
    ("lung", r"\blungs?\b|\bpulmo|lung_(upper|lower|middle)|\blobe\b.*\blung|\bpoumons?\b|\bpulmon|\bpolmon[ei]\b"
             r"|\blungen?\b|\blunga\b"),
    ("perfused_normal", r"perfused[\s_-]*(liver[\s_-]*)?(normal|healthy|non[\s_-]*tumou?r(al)?)|(normal|healthy)[\s_-]*perfused"),
    ("perfused", r"\bperfus|\bterritory\b|\bpv\b|\btreat(ed|ment)[\s_-]*(volume|territory|lobe|region|area)"),
    # Liver PLUS tumours is the whole liver; liver MINUS tumours (TG-263 "Liver-GTV") is normal liver.
    ("liver", _LIVER + r"[\s_]*(\+|plus|and|with|incl\w*|mit|avec|con)[\s_]*" + _TUMOUR),
    ("normal_liver", _LIVER + r"[\s_]*(-|\u2013|minus|without|w/o|excl\w*|ohne|sans|sin|senza|utan|zonder)[\s_]*(the\s+)?"
                     + _TUMOUR + r"|tumou?r[\s_-]*(free|frei)|\bnon[\s_-]*tumou?r(al|ous)?\b"
                     + r"|" + _NORMAL + r"[\s_-]*(whole[\s_-]*)?" + _LIVER + r"|" + _LIVER + r"[\s_-]*(normal|healthy|sain|sano)"
                     + r"|whole[\s_-]*liver[\s_-]*normal|\bntl\b|\bnormal\b"),
    ("tumor", r"tumou?r|tumeur|\btumore|\blesion|\blasion|\bmet(s|astas[ie]s)?\b|metasta|\bhcc\b|\bicc\b|cholangio"
              r"|\bnodules?\b|\bgtv|\btarget\b|\bmass\b|neoplas|carcinoma"),
    ("right_lobe", r"right[\s_-]*(liver[\s_-]*)?lobe|\brl\b|\brhl\b|liver[\s_-]*right|lobe[\s_-]*right|segments?\s*5-8"
                   r"|lobe[\s_-]*droit|lobulo[\s_-]*derecho|rechte[rn]?[\s_-]*(leber)?lappen"),
    ("left_lobe", r"left[\s_-]*(liver[\s_-]*)?lobe|\bll\b|\blhl\b|liver[\s_-]*left|lobe[\s_-]*left|segments?\s*2-4"
                  r"|lobe[\s_-]*gauche|lobulo[\s_-]*izquierdo|linke[rn]?[\s_-]*(leber)?lappen"),
    ("liver", _LIVER + r"|\bhepatic\b"),
)
_COMPILED = tuple((role, re.compile(p, re.IGNORECASE)) for role, p in _PATTERNS)


def _normalise(name):
    # Accents off (Tumör, hígado, Läsion); TotalSegmentator writes lung_lower_lobe_left: split
    # camelCase and underscores so that \b works.
    s = unicodedata.normalize("NFKD", str(name))
    s = "".join(c for c in s if not unicodedata.combining(c)).replace("\u00df", "ss")
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", s)
    return re.sub(r"[_]+", " ", s).strip()


def _match(name):
    """(role, recognised): the first pattern that matches, or ('other', False)."""
    s = _normalise(name)
    for role, rx in _COMPILED:
        if rx.search(s):
            return role, True
    return "other", False


def guess_role(name):
    """Role guessed from a segment name (case-insensitive; 'other' when nothing matches).

    >>> guess_role("Tumor 1"), guess_role("lung_lower_lobe_left"), guess_role("perfused normal")
    ('tumor', 'lung', 'perfused_normal')
    """
    return _match(name)[0]


def unrecognised_names(names, overrides=None):
    """Segment names whose role could not be guessed (role 'other' by default, no override given),
    in order: a name in a language or spelling the guesser does not know must be said, not
    silently left out of the rules."""
    given = {str(k).lower() for k in (overrides or {})}
    return [n for n in names if str(n).lower() not in given and not _match(n)[1]]


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
