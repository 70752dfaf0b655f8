"""The clinical table of a cohort: one row per patient, or one row per lesion.

A CSV file (``,``, ``;`` or tab between columns; with ``;`` or tab a decimal comma is accepted).
Columns (names are the defaults; the flags of ``tare-dosimetry cohort`` rename them):

- ``case_id`` (required): the case's folder name in the batch results (``OUT/<case_id>/``).
- ``lesion``: the tumour segment's name, for one row per lesion (patient columns repeat, equal).
- ``response`` (``--response-column``): response of the lesion (lesion rows) or the patient:
  PERCIST (CMR, PMR, SMD, PMD), mRECIST/RECIST/EASL (CR, PR, SD, PD), or responder/non-responder,
  yes/no, 1/0.  Responders by default: CR, PR, CMR, PMR (``--responders`` changes the list);
  NE, NA or empty: not evaluable (left out of the response analyses, counted).
- ``patient_response``: the patient's response when the rows are lesions (same categories).
- ``os_months`` (``--time-column``) and ``os_event`` (``--event-column``: 1/dead/death/yes or
  0/alive/censored/no): overall survival.  The unit comes from the name (``os_days``,
  ``os_weeks``, ``os_years``) or the values (``12 months``); converted to months.
- ``hepatotoxicity_grade`` (``--toxicity-column``): CTCAE grade 0-5 (``G3``, ``grade 3``);
  hepatotoxicity = grade >= ``--toxicity-min-grade`` (3).
- ``bilirubin_mg_dl`` (or ``bilirubin_umol_l``), ``albumin_g_dl`` (or ``albumin_g_l``),
  ``ast_u_l``, ``alt_u_l``: pre-treatment laboratory values (units from the name or the values).
- ``extent``: unilobar or bilobar disease (the analysis also derives it from the segments).
- ``dose_gy`` (``--dose-column``): the tumour dose when it comes from other software (no
  ``--results``); per lesion on lesion rows.  ``dose_cgy`` is converted.
- any other column: a patient covariate (numeric, or categorical with its levels), equal on all of
  a patient's rows.

Mixed units within a column, a unit contradicting the column's name, unknown categories, an
unknown case_id and a missing column are refused with one line naming the file, row and column.
"""

import csv
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .units import MISSING, parse_number, quantity_of_header, read_quantity, unit_from_suffix

__all__ = ["ClinicalSpec", "ClinicalTable", "read_clinical_table", "DEFAULT_RESPONDERS", "DEFAULT_NON_RESPONDERS",
           "COLUMN_DOCS", "parse_response", "parse_event"]

DEFAULT_RESPONDERS = ("CR", "PR", "CMR", "PMR", "complete response", "partial response",
                      "complete metabolic response", "partial metabolic response", "responder", "response", "yes",
                      "y", "1", "true", "R")
DEFAULT_NON_RESPONDERS = ("SD", "PD", "SMD", "PMD", "stable disease", "progressive disease",
                          "stable metabolic disease", "progressive metabolic disease", "non-responder",
                          "nonresponder", "no response", "no", "n", "0", "false", "NR")
_EVENT = {"1": 1, "dead": 1, "death": 1, "died": 1, "deceased": 1, "yes": 1, "true": 1, "event": 1,
          "0": 0, "alive": 0, "censored": 0, "no": 0, "false": 0}
_EXTENT = {"unilobar": "unilobar", "uni": "unilobar", "unilobular": "unilobar", "bilobar": "bilobar", "bi": "bilobar",
           "bilobular": "bilobar"}
#: The columns a clinical table may have, for --help and the docs: (name, meaning).
COLUMN_DOCS = (
    ("case_id", "required; the case's folder in the batch results"),
    ("lesion", "tumour segment name, for one row per lesion"),
    ("response", "CR/PR/SD/PD (mRECIST, RECIST, EASL), CMR/PMR/SMD/PMD (PERCIST), yes/no, 1/0; NE = not evaluable"),
    ("patient_response", "the patient's response when rows are lesions"),
    ("os_months", "overall survival time (os_days, os_weeks, os_years converted)"),
    ("os_event", "1/dead or 0/alive (censored)"),
    ("hepatotoxicity_grade", "CTCAE grade 0-5"),
    ("bilirubin_mg_dl", "or bilirubin_umol_l"),
    ("albumin_g_dl", "or albumin_g_l"),
    ("ast_u_l", "AST, U/L"),
    ("alt_u_l", "ALT, U/L"),
    ("extent", "unilobar or bilobar"),
    ("dose_gy", "tumour dose from other software (or dose_cgy), with no --results"),
    ("any other", "a patient covariate: numeric, or categorical (equal on a patient's lesion rows)"),
)


@dataclass
class ClinicalSpec:
    """Which column holds what, and how categories map (the flags of ``tare-dosimetry cohort``).
    A column named explicitly (``explicit``) must exist; a default one may be absent."""

    response_column: str = "response"
    patient_response_column: str = "patient_response"
    time_column: str = "os_months"
    event_column: str = "os_event"
    toxicity_column: str = "hepatotoxicity_grade"
    extent_column: str = "extent"
    lesion_column: str = "lesion"
    dose_column: str = None
    responders: tuple = DEFAULT_RESPONDERS
    non_responders: tuple = DEFAULT_NON_RESPONDERS
    toxicity_min_grade: int = 3
    explicit: tuple = ()


@dataclass
class ClinicalTable:
    """Parsed clinical data.  ``patients``: {case_id: {field: value}} in file order; ``lesions``:
    list of {case_id, lesion, response, dose_gy}; ``covariate_kinds``: {name: 'numeric'|'categorical'};
    ``units``: {column: unit}; ``notes`` and ``warnings`` (said in cohort.json and the report)."""

    path: str
    patients: dict
    lesions: list
    covariate_kinds: dict
    units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    not_evaluable: int = 0


def _norm(text):
    return re.sub(r"\s+", " ", (text or "").strip().lower())


def parse_response(text, spec, where):
    """1 (responder), 0 (non-responder) or None (not evaluable / missing)."""
    t = _norm(text)
    if t in MISSING:
        return None
    if t in {_norm(r) for r in spec.responders}:
        return 1
    if t in {_norm(r) for r in spec.non_responders}:
        return 0
    raise InputError(f"{where}: response {text!r} is neither a responder category ({', '.join(spec.responders[:4])}, "
                     f"...) nor a non-responder one ({', '.join(spec.non_responders[:4])}, ...); set --responders / "
                     "--non-responders, or write NE for not evaluable")


def parse_event(text, where):
    t = _norm(text)
    if t in MISSING:
        return None
    if t not in _EVENT:
        raise InputError(f"{where}: event {text!r} must be 1/dead/death/yes (event) or 0/alive/censored/no (censored)")
    return _EVENT[t]


def _parse_grade(text, where):
    t = _norm(text)
    if t in MISSING:
        return None
    m = re.fullmatch(r"(?:ctcae\s*)?(?:grade\s*|g)?([0-5])", t)
    if not m:
        raise InputError(f"{where}: hepatotoxicity grade {text!r} must be a CTCAE grade 0-5 (e.g. 3, G3, grade 3)")
    return int(m.group(1))


def _parse_extent(text, where):
    t = _norm(text)
    if t in MISSING:
        return None
    if t not in _EXTENT:
        raise InputError(f"{where}: extent {text!r} must be unilobar or bilobar")
    return _EXTENT[t]


def _read_rows(path):
    """(header, rows as dicts, row numbers, decimal_comma) of a CSV with ',', ';' or tab between columns."""
    if not os.path.isfile(path):
        raise InputError(f"--clinical {path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--clinical {path}: cannot be read as UTF-8 text ({exc})") from None
    first = text.splitlines()[0] if text.strip() else ""
    delim = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(text.splitlines(), delimiter=delim)
    rows = [r for r in reader]
    if not rows or not any(h.strip() for h in rows[0]):
        raise InputError(f"--clinical {path}: empty file (a header row with case_id is needed)")
    header = [h.strip() for h in rows[0]]
    out, numbers = [], []
    for n, r in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in r):
            continue
        if len(r) > len(header):
            raise InputError(f"--clinical {path} row {n}: {len(r)} fields but the header has {len(header)}"
                             + (" (a decimal comma? write 1.5, or use ';' between columns)" if delim == "," else ""))
        out.append({h: (r[i].strip() if i < len(r) else "") for i, h in enumerate(header)})
        numbers.append(n)
    return header, out, numbers, delim != ","


def _check_columns(path, header, spec):
    if "case_id" not in header:
        raise InputError(f"--clinical {path}: no case_id column; columns: {', '.join(header)}")
    dup = sorted({h for h in header if header.count(h) > 1 and h})
    if dup:
        raise InputError(f"--clinical {path}: column(s) {', '.join(dup)} appear twice")
    for attr in spec.explicit:
        name = getattr(spec, attr)
        if name and name not in header:
            raise InputError(f"--clinical {path}: no column {name!r} (--{attr.replace('_', '-')}); columns: {', '.join(header)}")
    if "time_column" not in spec.explicit and spec.time_column not in header:
        found = [h for h in header if h.lower() in ("os_months", "os_days", "os_weeks", "os_years")]
        if len(found) == 1:
            spec.time_column = found[0]  # os_days, os_weeks or os_years: converted to months
    if spec.response_column not in header and spec.patient_response_column not in header:
        raise InputError(f"--clinical {path}: no response column {spec.response_column!r} (--response-column); "
                         f"columns: {', '.join(header)}")
    if (spec.time_column in header) != (spec.event_column in header):
        have, miss = ((spec.time_column, spec.event_column) if spec.time_column in header
                      else (spec.event_column, spec.time_column))
        raise InputError(f"--clinical {path}: column {have!r} without {miss!r}: survival needs both (--time-column, --event-column)")
    quantities = {}
    for h in header:
        q, _unit = quantity_of_header(h)
        if q:
            if q in quantities:
                raise InputError(f"--clinical {path}: two {q} columns ({quantities[q]}, {h}); keep one, in one unit")
            quantities[q] = h
    return quantities


def read_clinical_table(path, spec=None, known_case_ids=None):
    """Read and check a clinical table (see the module docstring).

    Parameters
    ----------
    path : str; spec : ClinicalSpec; known_case_ids : set of case_ids that have results (None: no
        check); a case_id outside it is refused.

    Returns
    -------
    ClinicalTable
    """
    spec = spec or ClinicalSpec()
    header, rows, numbers, decimal_comma = _read_rows(path)
    quantities = _check_columns(path, header, spec)
    where = f"--clinical {path}"
    _check_case_ids(rows, numbers, known_case_ids, where)
    table = ClinicalTable(path, {}, [], {})
    columns = _parse_columns(header, rows, numbers, spec, quantities, decimal_comma, where, table)
    lesion_rows = spec.lesion_column in header and any(r[spec.lesion_column] for r in rows)
    _assemble(rows, numbers, columns, spec, lesion_rows, where, table)
    return table


def _check_case_ids(rows, numbers, known, where):
    for r, n in zip(rows, numbers):
        if not r["case_id"]:
            raise InputError(f"{where} row {n}: case_id is empty")
    if known is not None:
        unknown = sorted({r["case_id"] for r in rows} - set(known), key=str)
        if unknown:
            raise InputError(f"{where}: case_id(s) {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''} have no result "
                             "in --results (no folder with a metrics.json: a failed or missing case, or a typo)")
    if not rows:
        raise InputError(f"{where}: no rows")


def _numeric_or_categorical(name, cells, decimal_comma, where):
    """(array of floats, 'numeric') when every non-missing cell is a number, else (list of str, 'categorical')."""
    try:
        vals = [parse_number(t, where, decimal_comma) for _, t in cells]
    except InputError:
        return [None if _norm(t) in MISSING else t.strip() for _, t in cells], "categorical"
    if any(u for _, u in vals):
        return [None if _norm(t) in MISSING else t.strip() for _, t in cells], "categorical"
    return np.array([v for v, _ in vals]), "numeric"


_ROLE_COLUMNS = ("response_column", "patient_response_column", "time_column", "event_column", "toxicity_column",
                 "extent_column", "lesion_column", "dose_column")


def _parse_columns(header, rows, numbers, spec, quantities, decimal_comma, where, table):
    """{column: parsed values per row} for every column used; fills units, notes, warnings, covariate kinds."""
    cols = {}
    cells = {h: list(zip(numbers, (r[h] for r in rows))) for h in header}
    for q, h in quantities.items():
        cols[h], unit, notes, warns = read_quantity(h, cells[h], q, where=where, header_unit=quantity_of_header(h)[1],
                                                    decimal_comma=decimal_comma)
        table.units[h] = unit
        table.notes += notes
        table.warnings += warns
    for attr, q in (("time_column", "time"), ("dose_column", "dose")):
        h = getattr(spec, attr)
        if h and h in header:
            cols[h], unit, notes, warns = read_quantity(h, cells[h], q, where=where, header_unit=unit_from_suffix(h, q),
                                                        decimal_comma=decimal_comma)
            table.units[h] = unit
            table.notes += notes
            table.warnings += warns
    used = {getattr(spec, a) for a in _ROLE_COLUMNS} | {"case_id"} | set(quantities.values())
    for name in [h for h in header if h not in used]:
        cols[name], table.covariate_kinds[name] = _numeric_or_categorical(name, cells[name], decimal_comma, where)
    for h in quantities.values():
        table.covariate_kinds.setdefault(h, "numeric")
    return cols


def _row_fields(i, r, n, columns, spec, where):
    """The parsed values of one row: response, patient-level fields, covariates."""
    w = f"{where} row {n}"
    get = lambda c: r.get(c, "")  # noqa: E731
    f = {"response": parse_response(get(spec.response_column), spec, w) if spec.response_column in r else None,
         "response_raw": get(spec.response_column),
         "patient_response": (parse_response(get(spec.patient_response_column), spec, w)
                              if spec.patient_response_column in r else None),
         "event": parse_event(get(spec.event_column), w) if spec.event_column in r else None,
         "toxicity_grade": _parse_grade(get(spec.toxicity_column), w) if spec.toxicity_column in r else None,
         "extent": _parse_extent(get(spec.extent_column), w) if spec.extent_column in r else None}
    for col, key in ((spec.time_column, "time_months"), (spec.dose_column, "dose_gy")):
        f[key] = _clean(columns[col][i]) if col in columns else None
    f["covariates"] = {c: _clean(columns[c][i]) for c in columns if c not in (spec.time_column, spec.dose_column)}
    return f


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


_PATIENT_FIELDS = ("time_months", "event", "toxicity_grade", "extent", "patient_response")


def _assemble(rows, numbers, columns, spec, lesion_rows, where, table):
    """Fill ``table.patients`` (patient-level fields must agree across a patient's rows) and ``table.lesions``."""
    seen_lesions = set()
    for i, (r, n) in enumerate(zip(rows, numbers)):
        f = _row_fields(i, r, n, columns, spec, where)
        cid = r["case_id"]
        p = table.patients.setdefault(cid, {"case_id": cid, "covariates": {}, "rows": []})
        p["rows"].append(n)
        if not lesion_rows and len(p["rows"]) > 1:
            raise InputError(f"{where} row {n}: case_id {cid!r} repeated (rows {p['rows'][0]} and {n}); for one row per "
                             f"lesion add a {spec.lesion_column!r} column")
        _merge_patient(p, f, lesion_rows, n, where, spec)
        if lesion_rows:
            key = (cid, r[spec.lesion_column])
            if not key[1]:
                raise InputError(f"{where} row {n}: lesion is empty (every row names a lesion, or none does)")
            if key in seen_lesions:
                raise InputError(f"{where} row {n}: lesion {key[1]!r} of case {cid!r} appears twice")
            seen_lesions.add(key)
            table.lesions.append({"case_id": cid, "lesion": key[1], "response": f["response"], "dose_gy": f["dose_gy"]})
    table.not_evaluable = sum(1 for p in table.patients.values() if p.get("response") is None)


def _merge_patient(p, f, lesion_rows, n, where, spec):
    items = [(k, f[k]) for k in _PATIENT_FIELDS] + [(f"covariate {k}", v) for k, v in f["covariates"].items()]
    if not lesion_rows:
        items += [("response", f["response"]), ("response_raw", f["response_raw"]), ("dose_gy", f["dose_gy"])]
    for key, value in items:
        store, name = (p["covariates"], key[10:]) if key.startswith("covariate ") else (p, key)
        old = store.get(name)
        if old is not None and value is not None and old != value:
            column = {"time_months": spec.time_column, "event": spec.event_column, "toxicity_grade": spec.toxicity_column,
                      "extent": spec.extent_column, "patient_response": spec.patient_response_column}.get(name, name)
            raise InputError(f"{where} row {n}: {column} of case {p['case_id']!r} is {value!r} here but {old!r} on row "
                             f"{p['rows'][0]}; patient values must agree on all of its rows")
        if value is not None or name not in store:
            store[name] = value
    if p.get("response") is None:
        p["response"] = p.get("patient_response")
