"""Units of the clinical table's quantities: read from the column header (``bilirubin_umol_l``) or
from the values (``20 umol/L``), converted to one unit per quantity, and mixtures refused.

Canonical units: time in months, bilirubin mg/dL, albumin g/dL, AST and ALT U/L, dose Gy.
A column whose header and values give no unit is taken in the canonical unit, and the analysis
says so (a note); a value outside the usual range of its quantity gets a warning (a unit slip).
"""

import math
import re

import numpy as np

from ..errors import InputError

__all__ = ["QUANTITIES", "quantity_of_header", "unit_from_suffix", "parse_number", "read_quantity", "MISSING"]

#: Month length used to convert days and weeks: 365.25 / 12 days.
DAYS_PER_MONTH = 30.4375
#: Bilirubin: 1 mg/dL = 17.104 umol/L (molar mass 584.66 g/mol).
BILIRUBIN_UMOL_PER_MG_DL = 17.104

#: quantity -> (canonical unit, {unit token: factor to the canonical unit}, plausible range in it)
QUANTITIES = {
    "time": ("months", {"months": 1.0, "month": 1.0, "mo": 1.0, "days": 1 / DAYS_PER_MONTH, "day": 1 / DAYS_PER_MONTH,
                        "d": 1 / DAYS_PER_MONTH, "weeks": 7 / DAYS_PER_MONTH, "week": 7 / DAYS_PER_MONTH,
                        "wk": 7 / DAYS_PER_MONTH, "years": 12.0, "year": 12.0, "y": 12.0}, (0.0, 240.0)),
    "bilirubin": ("mg/dL", {"mg/dl": 1.0, "umol/l": 1 / BILIRUBIN_UMOL_PER_MG_DL}, (0.0, 30.0)),
    "albumin": ("g/dL", {"g/dl": 1.0, "g/l": 0.1}, (1.0, 7.0)),
    "ast": ("U/L", {"u/l": 1.0, "iu/l": 1.0}, (0.0, 5000.0)),
    "alt": ("U/L", {"u/l": 1.0, "iu/l": 1.0}, (0.0, 5000.0)),
    "dose": ("Gy", {"gy": 1.0, "cgy": 0.01}, (0.0, 3000.0)),
}
#: Header suffixes (after the quantity's name and '_') and the unit token each one means.
_HEADER_UNITS = {
    "months": "months", "month": "months", "mo": "months", "days": "days", "d": "days", "weeks": "weeks",
    "years": "years", "mg_dl": "mg/dl", "umol_l": "umol/l", "g_dl": "g/dl", "g_l": "g/l", "u_l": "u/l", "iu_l": "iu/l",
    "gy": "gy", "cgy": "cgy",
}
#: Cell texts that mean "no value".
MISSING = {"", "na", "n/a", "nan", "none", "null", "-", ".", "missing", "unknown", "ne", "not evaluable"}
_NUMBER_RX = re.compile(r"^\s*([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _token(unit):
    t = unit.strip().lower().replace(" ", "").replace("\u00b5", "u").replace("\u03bc", "u")
    return t.replace("mcmol", "umol")


def unit_from_suffix(header, quantity):
    """The unit token a header's suffix gives for ``quantity`` (``os_days`` -> 'days'), else None."""
    h = header.strip().lower()
    for suffix in sorted(_HEADER_UNITS, key=len, reverse=True):
        token = _HEADER_UNITS[suffix]
        if h.endswith("_" + suffix) and token in QUANTITIES[quantity][1]:
            return token
    return None


def quantity_of_header(header):
    """(quantity, unit token or None) of a laboratory column header such as ``bilirubin_umol_l`` or
    ``ast``; (None, None) when the header names none of bilirubin, albumin, AST, ALT."""
    h = header.strip().lower()
    for q in ("bilirubin", "albumin", "ast", "alt"):
        if h == q or h.startswith(q + "_"):
            return q, unit_from_suffix(h, q)
    return None, None


def parse_number(text, where, decimal_comma=False):
    """(value, unit text) of a cell such as '1.5', '20 umol/L' or '1,5' (when ``decimal_comma``);
    (nan, '') for a missing value.  InputError for anything else."""
    t = (text or "").strip()
    if t.lower() in MISSING:
        return math.nan, ""
    m = _NUMBER_RX.match(t)
    if not m or (m.group(2) and not re.match(r"[A-Za-z\u00b5\u03bc%/]", m.group(2))):
        raise InputError(f"{where}: expected a number, got {text!r}")
    num = m.group(1)
    if "," in num:
        if not decimal_comma:
            raise InputError(f"{where}: {text!r} has a decimal comma; write {num.replace(',', '.')} (or use ';' between columns)")
        num = num.replace(",", ".")
    return float(num), m.group(2)


def _value_units(cells, where, decimal_comma):
    """(values, {unit token: [row numbers]}, rows without a unit among the non-missing)."""
    values, units, bare = [], {}, []
    for row, text in cells:
        v, unit = parse_number(text, f"{where} row {row}", decimal_comma)
        values.append(v)
        if unit:
            units.setdefault(_token(unit), []).append(row)
        elif math.isfinite(v):
            bare.append(row)
    return np.array(values, dtype=np.float64), units, bare


def _rows_text(rows):
    return ", ".join(str(r) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def read_quantity(header, cells, quantity, *, where, header_unit=None, decimal_comma=False):
    """Values of one quantity's column in its canonical unit.

    Parameters
    ----------
    header : str, the column's name; cells : list of (row number, text).
    quantity : a key of :data:`QUANTITIES`; header_unit : unit token the header gives, if any.

    Returns
    -------
    (values (N,) float array in the canonical unit, the canonical unit, notes list, warnings list).
    Raises InputError for mixed units, a unit that contradicts the header, or an unknown unit.
    """
    canonical, factors, (lo, hi) = QUANTITIES[quantity]
    values, units, bare = _value_units(cells, f"{where} column {header}", decimal_comma)
    if len(units) > 1:
        parts = "; ".join(f"{u} (rows {_rows_text(r)})" for u, r in units.items())
        raise InputError(f"{where}: column {header} mixes units: {parts}; give every value in one unit")
    unit = next(iter(units), None)
    if unit and header_unit and unit != header_unit:
        raise InputError(f"{where}: column {header} says {header_unit} in its name but values in rows "
                         f"{_rows_text(units[unit])} are in {unit}")
    if units and bare and not header_unit:
        raise InputError(f"{where}: column {header}: some values carry a unit ({unit}) and others (rows {_rows_text(bare)}) "
                         f"do not; give the unit in the header (e.g. {quantity}_...) or with every value")
    unit = unit or header_unit
    notes, warnings = [], []
    if unit is None:
        unit = _token(canonical)
        notes.append(f"column {header}: no unit in its name or values; taken as {canonical}")
    if unit not in factors:
        raise InputError(f"{where}: column {header}: unknown unit {unit!r} for {quantity}; "
                         f"accepted: {', '.join(sorted(set(factors)))}")
    out = values * factors[unit]
    if factors[unit] != 1.0:
        notes.append(f"column {header}: {unit} converted to {canonical} (x {factors[unit]:.6g})")
    finite = out[np.isfinite(out)]
    if finite.size and (finite.min() < lo or finite.max() > hi):
        warnings.append(f"column {header}: values from {finite.min():.4g} to {finite.max():.4g} {canonical} (after "
                        f"conversion from {unit}) lie outside the usual {lo:g}-{hi:g} {canonical}: check the unit")
    return out, canonical, notes, warnings
