"""Running cases from files: one case (``run_case_files``) or a manifest of many (``run_manifest``).

Manifest (CSV, one case per row; paths relative to the manifest's folder)::

    case_id,spect,segmentation,ct,administered_activity_gbq,lung_shunt_fraction,thresholds,roles
    p001,p001/spect.nrrd,p001/seg.seg.nrrd,,1.8,0.06,,
    p002,p002/pet,p002/labels.nii.gz,p002/ct,,,,liver=liver;lesion A=tumor

Columns: ``case_id`` and ``segmentation`` are required, and one of ``spect`` / ``pet``.
Optional: ``ct``, ``labels`` (label names for a label map), ``roles`` (``NAME=ROLE`` separated by
``;``), ``thresholds`` (preset or rule file), ``quantitative`` (true/false; a ``pet`` image is
quantitative unless this says false, as ``--pet`` on the command line), and any field of
:class:`~TAREDosimetryLib.params.DosimetryParams` (``residual_fraction``, ``method``, the clinical
inputs ``microsphere``, ``indication``, ``treatment_approach``, ``bilirubin_mg_dl``,
``hepatic_reserve_pct``; ``recovery_coefficients`` is a CSV/JSON file relative to the manifest).
Empty cells take the defaults (an empty ``lung_shunt_fraction`` is "not given", never 0).
A failing case is recorded and the others go on.
"""

import csv
import os
import time
import traceback
from dataclasses import fields

from .errors import InputError, TAREDosimetryError
from .imaging.caseinputs import DicomOptions, read_case_inputs
from .params import DosimetryParams
from .pipeline import run_case
from .evaluation.roles import parse_role_assignments

__all__ = ["read_manifest", "run_case_files", "evaluate_dose_files", "run_manifest", "MANIFEST_COLUMNS"]

_PARAM_FIELDS = {f.name: f for f in fields(DosimetryParams)}
MANIFEST_COLUMNS = ("case_id", "spect", "pet", "segmentation", "ct", "labels", "roles", "thresholds", "quantitative",
                    "series", "dose", "dose_unit", "dose_scale") + tuple(_PARAM_FIELDS)
_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _parse_bool(name, text, where):
    key = text.strip().lower()
    if key not in _BOOL:
        raise InputError(f"{where}: column {name} must be true/false, got {text!r}")
    return _BOOL[key]


def _parse_value(name, text, where):
    default = _PARAM_FIELDS[name].default
    kind = _PARAM_FIELDS[name].type  # the declared type: fields whose default is None (not given) have one too
    if name == "recovery_coefficients":
        from .evaluation.partial_volume import read_recovery_coefficients

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
    for req in ("case_id", "segmentation"):
        if req not in header:
            raise InputError(f"manifest {path}: column '{req}' is required")
    if "spect" not in header and "pet" not in header and "dose" not in header:
        raise InputError(f"manifest {path}: a 'spect', 'pet' or 'dose' column is required")
    return header, rows


def _check_case_id(cid, seen, where):
    if not cid:
        raise InputError(f"{where}: case_id is empty")
    if cid in seen:
        raise InputError(f"{where}: case_id {cid!r} repeated")
    if any(c in cid for c in "/\\:") or cid in (".", ".."):
        raise InputError(f"{where}: case_id {cid!r} must be usable as a folder name")


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
        _check_case_id(row.get("case_id", ""), seen, where)
        seen.add(row["case_id"])
        cases.append(_case_of_row(row, n, base, where))
    if not cases:
        raise InputError(f"manifest {path}: no cases in it")
    return cases


def run_case_files(image, segmentation, *, ct=None, labels=None, roles=None, params=None, rules=None,
                   modality="spect", progress=None, dicom=None):
    """Read the files of one case and run it.

    DICOM inputs are read with :func:`~.imaging.caseinputs.read_case_inputs`: the series chosen by
    modality and ``dicom.series_uids``, the activity image's units, radionuclide and timing taken
    from its header (they complete ``params``; the user's timing wins), RT Structure Sets
    rasterised onto the CT.

    Returns
    -------
    (CaseResult, inputs) where inputs holds the read Volumes/Segmentation for reports and exports:
    {'activity', 'segmentation', 'ct', 'sources'} (sources: the DICOM series of the activity image
    and the CT, or None).  'activity' is the activity map (GBq per voxel): the image read was
    turned into it (``run_case(..., overwrite_activity=True)``).
    """
    case = read_case_inputs(image, segmentation, ct=ct, labels=labels, modality=modality,
                            params=params or DosimetryParams(), dicom=dicom, progress=progress)
    # The image was read for this case alone: its array becomes the activity map (one image less in memory).
    result = run_case(case.activity, case.segmentation, params=case.params, roles=roles, ct=case.ct, rules=rules,
                      inputs=case.info, progress=progress, overwrite_activity=True)
    result.warnings[0:0] = case.warnings
    return result, {"activity": result.activity_gbq, "segmentation": case.segmentation, "ct": case.ct, "sources": case.sources}


def evaluate_dose_files(dose, segmentation, *, ct=None, labels=None, roles=None, params=None, rules=None,
                        dose_unit=None, dose_scale=1.0, progress=None, dicom=None):
    """Read a dose map computed elsewhere and its segments, and evaluate it like a computed dose.

    Returns
    -------
    (CaseResult, inputs) as :func:`run_case_files` ('activity' is None).
    """
    from .imaging.dosemaps import read_dose_map
    from .imaging.provenance import sha256_of_path
    from .pipeline import evaluate_dose_case

    dicom = dicom or DicomOptions()
    if progress:
        progress(0.0, f"reading dose map {dose}")
    dose_vol, record, notes = read_dose_map(dose, dose_unit=dose_unit, dose_scale=dose_scale, series_uids=dicom.series_uids)
    case = read_case_inputs(None, segmentation, ct=ct, labels=labels, params=params or DosimetryParams(), dicom=dicom,
                            progress=progress, reference=dose_vol)
    case.info.update(dose_map=record, dose_file=record["dose_file"])
    case.info.setdefault("sha256", {})["dose_file"] = sha256_of_path(dose)
    result = evaluate_dose_case(dose_vol, case.segmentation, params=case.params, roles=roles, ct=case.ct, rules=rules,
                                inputs=case.info, progress=progress)
    result.summary["dose_map"] = record
    result.warnings[0:0] = notes + case.warnings
    return result, {"activity": None, "segmentation": case.segmentation, "ct": case.ct, "sources": case.sources,
                    "dose": dose_vol}


def _run_files_and_write(case, params, rules, dest, overwrite, report, *, exports=None, pdf=False, dicom=None,
                         send=None):
    """Default case runner of :func:`run_manifest`: engine on files (or ``evaluate`` of an external
    dose), then write_outputs with the DICOM/PDF exports, then ``send(files)`` when given."""
    from dataclasses import replace

    from .reporting.outputs import write_outputs

    dicom = dicom or DicomOptions()
    dicom = replace(dicom, series_uids=tuple(case.get("series") or ()) or dicom.series_uids,
                    timing_overridden=dicom.timing_overridden or bool(case.get("timing_given")))
    common = dict(ct=case["ct"], labels=case["labels"], roles=case["roles"], params=params, rules=rules, dicom=dicom)
    if case.get("dose"):
        result, inputs = evaluate_dose_files(case["dose"], case["segmentation"], dose_unit=case.get("dose_unit"),
                                             dose_scale=case.get("dose_scale", 1.0), **common)
    else:
        result, inputs = run_case_files(case["image"], case["segmentation"], modality=case["modality"], **common)
    files = write_outputs(result, dest, overwrite=overwrite, report=report,
                          background=inputs["ct"] or inputs["activity"] or inputs.get("dose"),
                          segmentation=inputs["segmentation"], pdf=pdf,
                          dicom=replace(exports, sources=inputs["sources"]) if exports is not None else None)
    if send is not None:
        send(files)
    return result


def run_manifest(manifest_path, out_dir, *, defaults=None, rules=None, overwrite=False, report=True, log=None,
                 debug=False, runner=None, exports=None, pdf=False, dicom=None, send=None):
    """Run every case of a manifest; results in ``out_dir/<case_id>/``.

    A case that fails is recorded (its error message) and the others go on; no partial
    output of a failed case is left behind.  Writes ``out_dir/batch_summary.csv``.

    Parameters
    ----------
    runner : callable(case, params, rules, dest, overwrite, report) -> CaseResult, optional.
        Runs one case and writes its outputs into ``dest``; the default reads the files and
        calls the engine.  (The Slicer batch script passes one that goes through MRML nodes.)
    exports, pdf, dicom, send : for the default runner: DicomExports, report.pdf, DicomOptions
        (the case's ``series`` and timing columns complete it), and a callable(files) that sends
        a case's DICOM files (a failed send fails the case; its results stay written).

    Returns
    -------
    list of dicts: case_id, status ('ok' or 'failed'), error, out_dir, overall (PASS, FAIL or
    INCOMPLETE), incomplete_reasons (joined by ' | '), seconds.
    """
    from .reporting.outputs import check_output_dir

    cases = read_manifest(manifest_path)
    os.makedirs(out_dir, exist_ok=True)
    defaults = defaults or DosimetryParams()
    if runner is None:
        from functools import partial

        runner = partial(_run_files_and_write, exports=exports, pdf=pdf, dicom=dicom, send=send)
    summary = []
    for i, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        dest = os.path.join(out_dir, case["case_id"])
        entry = {"case_id": case["case_id"], "status": "failed", "error": "", "out_dir": dest, "overall": "",
                 "incomplete_reasons": "", "seconds": 0.0}
        if log:
            log(f"[{i}/{len(cases)}] {case['case_id']}")
        try:
            if case["error"]:
                raise InputError(case["error"])
            params = defaults.replace(**case["params_changes"]) if case["params_changes"] else defaults
            check_output_dir(dest, overwrite)
            result = runner(case, params, case["thresholds"] or rules, dest, overwrite, report)
            entry.update(status="ok", overall=result.overall_status,
                         incomplete_reasons=" | ".join(getattr(result, "incomplete_reasons", ())))
        except TAREDosimetryError as exc:
            entry["error"] = str(exc)
        except Exception as exc:  # an unexpected failure of one case must not stop the batch
            entry["error"] = f"internal error: {type(exc).__name__}: {exc}"
            if debug:
                entry["error"] += "\n" + traceback.format_exc()
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        if log:
            log(f"    {entry['status']}" + (f" ({entry['overall']})" if entry["overall"] else "") + (f": {entry['error']}" if entry["error"] else ""))
        summary.append(entry)
    with open(os.path.join(out_dir, "batch_summary.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["case_id", "status", "overall", "incomplete_reasons", "error", "out_dir", "seconds"])
        w.writeheader()
        w.writerows(summary)
    return summary
