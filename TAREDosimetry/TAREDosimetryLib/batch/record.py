"""What a batch case was computed from, by content: the key that lets a rerun skip finished cases.

After a case's result folder is complete, the batch writes ``batch_record.json`` into it: the
sha256 of every input file as metrics.json records it (:mod:`~..imaging.provenance`: a DICOM or
mask folder by its files, so the DICOM series read from it are covered; the external dose map of an
``evaluate`` row, a label-table file), the DICOM series chosen (``series`` column) and the other
DICOM reading options, the case's effective parameters (clinical inputs included), the rule set
(its content, not its name: a preset whose thresholds change between versions counts as changed; the
preset chosen from the clinical inputs when the row names none), the roles as given, the label
names, the modality, the dose unit and scale of an external dose, and which files the folder holds
(report, PDF, DICOM exports); and one ``content_sha256`` over all of these.  These are what a
result's metrics.json records for ``tare-dosimetry rerun`` (:mod:`~..reproduce`).  Paths are not
part of the key: moving the data to another disk does not force a rerun.

A case is *complete and unchanged* when its folder holds ``metrics.json`` and a record whose
``content_sha256`` equals the one computed now.  The software version is recorded but not part
of the key (``--rerun`` recomputes after an upgrade).  Sending to a PACS (``--send``) is not part
of the result: a skipped case is not sent again (``--rerun`` does).
"""

import datetime
import hashlib
import json
import os

from ..imaging.provenance import sha256_of_path
from ..version import __version__

__all__ = ["RECORD_FILE", "path_digest", "case_fingerprint", "content_sha256", "read_record", "write_record",
           "remove_record", "result_state"]

RECORD_FILE = "batch_record.json"


def path_digest(path):
    """{'sha256': ...} of a file, or of a folder's files (as metrics.json records them,
    :func:`~..imaging.provenance.sha256_of_path`); {'missing': True} when the path does not exist
    (the engine then says what is wrong)."""
    digest = sha256_of_path(path) if path else None
    return {"missing": True} if digest is None else {"sha256": digest}


def _rules_key(rules, params):
    """The rule set by content: a rule file's sha256, else the rule set the engine will use (a preset
    given by name, or the one chosen from the clinical inputs) as a dict."""
    from ..evaluation.rules import select_rules

    if isinstance(rules, str) and os.path.isfile(rules):
        return {"rule_file": path_digest(rules)}
    try:
        return {"rules": select_rules(rules, params)[0].to_dict()}
    except Exception:  # a bad spec: the case fails with the engine's message; the key only needs to be stable
        return {"rules_spec": str(rules)}


def _dicom_key(case, dicom):
    """The DICOM reading choices of the case (the batch's options completed by its row)."""
    from .casefiles import case_dicom_options

    d = case_dicom_options(case, dicom)
    return {"series_uids": sorted(d.series_uids), "allow_other_radionuclide": bool(d.allow_other_radionuclide),
            "timing_overridden": bool(d.timing_overridden), "quantitative_explicit": bool(d.quantitative_explicit)}


def _outputs_key(report, outputs):
    """Which files the result folder holds: the report, the PDF, the DICOM exports."""
    outputs = outputs or {}
    exports = outputs.get("exports")
    return {"report": bool(report), "pdf": bool(outputs.get("pdf")),
            "dicom_exports": sorted(exports.wanted) if exports is not None else [],
            "patient": [getattr(exports, "patient_id", None), getattr(exports, "patient_name", None)]}


def case_fingerprint(case, params, rules, report, outputs=None):
    """Everything that determines a case's result folder, by content (a JSON-able dict without paths).

    Parameters
    ----------
    case : dict of :func:`~.manifest.read_manifest`; params : DosimetryParams (effective);
    rules : the rules spec of the case; report : bool;
    outputs : dict, optional: ``exports`` (DicomExports or None), ``pdf`` (bool), ``dicom``
        (the batch's DicomOptions or None).
    """
    labels = case.get("labels")
    outputs = outputs or {}
    return {
        "image": path_digest(case.get("image")) if case.get("image") else None,
        "dose": path_digest(case.get("dose")) if case.get("dose") else None,
        "dose_unit": case.get("dose_unit"),
        "dose_scale": case.get("dose_scale", 1.0),
        "segmentation": path_digest(case.get("segmentation")),
        "ct": path_digest(case["ct"]) if case.get("ct") else None,
        "labels": path_digest(labels) if labels and os.path.isfile(str(labels)) else labels,
        "roles_given": sorted([str(k), str(v)] for k, v in (case.get("roles") or {}).items()),
        "modality": case.get("modality"),
        "dicom": _dicom_key(case, outputs.get("dicom")),
        "parameters": params.to_dict(),
        "thresholds": _rules_key(rules, params),
        "outputs": _outputs_key(report, outputs),
    }


def content_sha256(fingerprint):
    """Hex sha256 of a fingerprint's canonical JSON."""
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_record(dest):
    """The record dict of a result folder, or None when absent or unreadable."""
    try:
        with open(os.path.join(dest, RECORD_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(dest, case, fingerprint, digest, entry):
    """Write ``batch_record.json`` into a complete result folder (atomically: temp file, then rename)."""
    record = {
        "case_id": case["case_id"],
        "content_sha256": digest,
        "fingerprint": fingerprint,
        "paths": {k: case.get(k) for k in ("image", "dose", "segmentation", "ct", "labels", "thresholds")},
        "software_version": __version__,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "overall": entry.get("overall", ""),
        "warnings": entry.get("warnings", 0),
        "first_warning": entry.get("first_warning", ""),
        "incomplete_reasons": entry.get("incomplete_reasons", ""),
    }
    tmp = os.path.join(dest, f".{RECORD_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)
    os.replace(tmp, os.path.join(dest, RECORD_FILE))
    return record


def remove_record(dest):
    """Remove a folder's record before its result is replaced (a stale record must never vouch for it)."""
    try:
        os.remove(os.path.join(dest, RECORD_FILE))
    except FileNotFoundError:
        pass


def result_state(dest, digest):
    """'absent' (no folder or an empty one), 'unchanged' (complete, same content hash), 'changed'
    (complete, other inputs/parameters or no record), or 'other' (files but no metrics.json)."""
    if not os.path.isdir(dest) or not os.listdir(dest):
        return "absent"
    if not os.path.isfile(os.path.join(dest, "metrics.json")):
        return "other"
    record = read_record(dest)
    if record is not None and digest is not None and record.get("content_sha256") == digest:
        return "unchanged"
    return "changed"
