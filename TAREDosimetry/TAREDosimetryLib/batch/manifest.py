"""Reading a batch manifest: one case per row of a CSV file.

Manifest (CSV, one case per row; paths relative to the manifest's folder)::

    case_id,spect,segmentation,ct,administered_activity_gbq,lung_shunt_fraction,thresholds,roles
    p001,p001/spect.nrrd,p001/seg.seg.nrrd,,1.8,0.06,,
    p002,p002/pet,p002/labels.nii.gz,p002/ct,,,,liver=liver;lesion A=tumor

Columns: ``case_id`` and ``segmentation`` are required, and one of ``spect`` / ``pet`` / ``dose``.
Optional: ``ct``, ``labels`` (label names for a label map), ``roles`` (``NAME=ROLE`` separated by
``;``), ``thresholds`` (preset or rule file), ``quantitative`` (true/false; a ``pet`` image is
quantitative unless this says false, as ``--pet`` on the command line), and any field of
:class:`~TAREDosimetryLib.params.DosimetryParams` (``residual_fraction``, ``method``, the clinical
inputs ``microsphere``, ``indication``, ``treatment_approach``, ``bilirubin_mg_dl``,
``hepatic_reserve_pct``; ``recovery_coefficients`` is a CSV/JSON file relative to the manifest).
Empty cells take the defaults (an empty ``lung_shunt_fraction`` is "not given", never 0).
DICOM columns: ``series`` (SeriesInstanceUIDs separated by ``;``), and ``dose`` / ``dose_unit`` /
``dose_scale`` for a row that evaluates a dose map computed elsewhere instead of an activity image.
A row with a bad option is recorded as a failed case and the others go on; a manifest whose
structure is wrong (unknown columns, a row with more fields than the header, a case_id that cannot
be a folder name or is one of the batch's own file names) is refused as a whole before any case runs.
"""

import csv
import os
from dataclasses import fields

from ..errors import InputError
from ..evaluation.roles import parse_role_assignments
from ..params import DosimetryParams

__all__ = ["read_manifest", "MANIFEST_COLUMNS", "RESERVED_PREFIXES", "check_case_id"]

_PARAM_FIELDS = {f.name: f for f in fields(DosimetryParams)}
MANIFEST_COLUMNS = ("case_id", "spect", "pet", "segmentation", "ct", "labels", "roles", "thresholds", "quantitative",
                    "series", "dose", "dose_unit", "dose_scale") + tuple(_PARAM_FIELDS)
_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
#: Names in the batch's output folder that belong to the batch itself (summaries, its record
#: files): a case_id may not start with one of them (case-insensitively).
RESERVED_PREFIXES = ("batch_summary", ".")


def _parse_bool(name, text, where):
    key = text.strip().lower()
    if key not in _BOOL:
        raise InputError(f"{where}: column {name} must be true/false, got {text!r}")
    return _BOOL[key]


def _parse_value(name, text, where):
    default = _PARAM_FIELDS[name].default
    kind = _PARAM_FIELDS[name].type  # the declared type: fields whose default is None (not given) have one too
    if name == "recovery_coefficients":
        from ..evaluation.partial_volume import read_recovery_coefficients

        return read_recovery_coefficients(text)
    if isinstance(default, bool) or kind is bool:
        return _parse_bool(name, text, where)
    if isinstance(default, tuple) or kind is tuple:
        try:
            return tuple(float(v) for v in text.replace(";", " ").split())
        except ValueError:
            raise InputError(f"{where}: column {name} must be numbers separated by ';', got {text!r}") from None
    if isinstance(default, str) or kind is str:
        return text.strip()
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: column {name} must be a number, got {text!r}") from None


def _read_manifest_rows(path):
    """(header, rows) of a manifest CSV; checks the columns."""
    if not os.path.isfile(path):
        raise InputError(f"manifest: file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"manifest {path}: cannot be read as CSV ({exc})") from None
    unknown = [h for h in header if h and h not in MANIFEST_COLUMNS]
    if unknown:
        raise InputError(f"manifest {path}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(MANIFEST_COLUMNS)}")
    _check_row_lengths(path, header, rows)
    for req in ("case_id", "segmentation"):
        if req not in header:
            raise InputError(f"manifest {path}: column '{req}' is required")
    if "spect" not in header and "pet" not in header and "dose" not in header:
        raise InputError(f"manifest {path}: a 'spect', 'pet' or 'dose' column is required")
    return header, rows


def _check_row_lengths(path, header, rows):
    """Refuse a row with more fields than the header (csv.DictReader keeps the extras under None)."""
    for n, raw in enumerate(rows, start=2):
        extra = raw.get(None)
        if extra:
            hint = ""
            if any(_looks_like_decimal_comma(v) for v in list(raw.values())[:-1] + list(extra)):
                hint = " (a decimal comma such as 1,5? write 1.5, or quote the cell)"
            raise InputError(
                f"manifest {path} line {n}: {len(header) + len(extra)} fields but the header has {len(header)}{hint}"
            )


def _looks_like_decimal_comma(text):
    t = (text or "").strip()
    return t.isdigit() and len(t) <= 6


def check_case_id(cid, seen, where):
    """Refuse a case_id that is empty, repeated (also only in letter case: folders on Windows and macOS
    do not tell them apart), not usable as a folder name, or one of the batch's own file names."""
    if not cid:
        raise InputError(f"{where}: case_id is empty")
    if cid.lower() in seen:
        raise InputError(f"{where}: case_id {cid!r} repeated (case_ids must differ in more than letter case)")
    if any(c in cid for c in '/\\:*?"<>|') or cid in (".", "..") or any(ord(c) < 32 for c in cid) or cid.endswith((" ", ".")):
        raise InputError(f"{where}: case_id {cid!r} must be usable as a folder name (no / \\ : * ? \" < > |, no trailing dot or space)")
    if cid.lower().startswith(RESERVED_PREFIXES):
        raise InputError(
            f"{where}: case_id {cid!r} is refused: names starting with {', '.join(repr(p) for p in RESERVED_PREFIXES)} "
            "belong to the batch's own files in the output folder"
        )


def _case_options(case, row, base, where):
    """Fill a case's labels, thresholds, roles and parameter changes from its manifest row."""
    if case["labels"] and os.path.exists(os.path.join(base, case["labels"])):
        case["labels"] = os.path.join(base, case["labels"])
    if case["thresholds"] and os.path.exists(os.path.join(base, case["thresholds"])):
        case["thresholds"] = os.path.join(base, case["thresholds"])
    if row.get("roles"):
        case["roles"] = parse_role_assignments([r for r in row["roles"].split(";") if r.strip()])
    for key, text in row.items():
        if key in _PARAM_FIELDS and text != "":
            if key == "recovery_coefficients":  # a file, relative to the manifest
                table, axis = _parse_value(key, os.path.join(base, text), where)
                case["params_changes"].update(recovery_coefficients=table, recovery_coefficient_axis=axis)
                continue
            case["params_changes"][key] = _parse_value(key, text, where)
    if row.get("quantitative"):
        if _parse_bool("quantitative", row["quantitative"], where):
            case["params_changes"]["calibration"] = "absolute"
        elif case["modality"] == "pet" and "calibration" not in case["params_changes"]:
            case["params_changes"]["calibration"] = "relative"  # as --pet --relative
    elif case["modality"] == "pet" and "calibration" not in case["params_changes"]:
        case["params_changes"]["calibration"] = "absolute"  # as --pet on the command line
    if not case["image"] and not case["dose"]:
        raise InputError(f"{where}: no spect, pet or dose given")
    if case["image"] and case["dose"]:
        raise InputError(f"{where}: give an activity image (spect/pet) or an external dose, not both")
    if row.get("dose_scale"):
        try:
            case["dose_scale"] = float(row["dose_scale"])
        except ValueError:
            raise InputError(f"{where}: column dose_scale must be a number, got {row['dose_scale']!r}") from None
    if not case["segmentation"]:
        raise InputError(f"{where}: no segmentation given")


def _case_of_row(row, n, base, where):
    def path_of(key):
        v = row.get(key, "")
        return os.path.normpath(os.path.join(base, v)) if v else None

    case = {
        "case_id": row.get("case_id", ""),
        "row": n,
        "image": path_of("spect") or path_of("pet"),
        "modality": "pet" if row.get("pet") and not row.get("spect") else "spect",
        "segmentation": path_of("segmentation"),
        "ct": path_of("ct"),
        "labels": row.get("labels") or None,
        "thresholds": row.get("thresholds") or None,
        "roles": {},
        "params_changes": {},
        "error": None,
        "series": tuple(u.strip() for u in row.get("series", "").split(";") if u.strip()),
        "dose": path_of("dose"),
        "dose_unit": row.get("dose_unit") or None,
        "dose_scale": 1.0,
        "timing_given": bool(row.get("hours_since_administration") or row.get("image_decay_corrected")),
    }
    try:
        _case_options(case, row, base, where)
    except InputError as exc:
        case["error"] = str(exc)  # recorded; the batch goes on with the other cases
    return case


def read_manifest(path):
    """Cases of a manifest CSV as a list of dicts (paths made absolute, params parsed).

    Each dict: case_id, image, modality ('spect'|'pet'), segmentation, ct, labels, roles (dict),
    thresholds, params_changes (dict of DosimetryParams fields), row (line number); series (tuple
    of SeriesInstanceUIDs), dose/dose_unit/dose_scale (an external dose to evaluate instead of an
    activity image), timing_given (the row gives hours_since_administration or
    image_decay_corrected, which then win over a DICOM header).
    """
    _header, rows = _read_manifest_rows(path)
    base = os.path.dirname(os.path.abspath(path))
    cases, seen = [], set()
    for n, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"manifest {path} line {n}"
        check_case_id(row.get("case_id", ""), seen, where)
        seen.add(row["case_id"].lower())
        cases.append(_case_of_row(row, n, base, where))
    if not cases:
        raise InputError(f"manifest {path}: no cases in it")
    return cases
