"""What a batch case was computed from, by content: the key that lets a rerun skip finished cases.

After a case's result folder is complete, the batch writes ``batch_record.json`` into it: the
sha256 of every input file (a DICOM or mask folder: of its files, in order of their relative
paths), the case's effective parameters, the rule set (its content, not its name: a preset whose
thresholds change between versions counts as changed), the roles, the label names, the modality
and whether the report was asked for, and one ``content_sha256`` over all of these.  Paths are
not part of the key: moving the data to another disk does not force a rerun.

A case is *complete and unchanged* when its folder holds ``metrics.json`` and a record whose
``content_sha256`` equals the one computed now.  The software version is recorded but not part
of the key (``--rerun`` recomputes after an upgrade).
"""

import datetime
import hashlib
import json
import os

from ..version import __version__

__all__ = ["RECORD_FILE", "file_sha256", "path_digest", "case_fingerprint", "content_sha256", "read_record",
           "write_record", "remove_record", "result_state"]

RECORD_FILE = "batch_record.json"
_CHUNK = 1 << 20


def file_sha256(path):
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def path_digest(path):
    """{'sha256': ...} of a file, or of a folder's files (relative path and content, sorted);
    {'missing': True} when the path does not exist (the engine then says what is wrong)."""
    if not path or not os.path.exists(path):
        return {"missing": True}
    if os.path.isfile(path):
        return {"sha256": file_sha256(path)}
    h = hashlib.sha256()
    n = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            h.update(os.path.relpath(full, path).replace(os.sep, "/").encode("utf-8") + b"\0")
            h.update(file_sha256(full).encode("ascii"))
            n += 1
    return {"sha256": h.hexdigest(), "files": n}


def _rules_key(rules):
    """The rule set by content: a rule file's sha256, else the loaded rules' dict."""
    from ..evaluation.rules import load_rules

    if isinstance(rules, str) and os.path.isfile(rules):
        return {"rule_file": path_digest(rules)}
    try:
        return {"rules": load_rules(rules).to_dict()}
    except Exception:  # a bad spec: the case fails with the engine's message; the key only needs to be stable
        return {"rules_spec": str(rules)}


def case_fingerprint(case, params, rules, report):
    """Everything that determines a case's result, by content (a JSON-able dict without paths)."""
    labels = case.get("labels")
    return {
        "image": path_digest(case.get("image")),
        "segmentation": path_digest(case.get("segmentation")),
        "ct": path_digest(case["ct"]) if case.get("ct") else None,
        "labels": path_digest(labels) if labels and os.path.isfile(str(labels)) else labels,
        "roles": sorted([str(k), str(v)] for k, v in (case.get("roles") or {}).items()),
        "modality": case.get("modality"),
        "parameters": params.to_dict(),
        "thresholds": _rules_key(rules),
        "report": bool(report),
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
        "paths": {k: case.get(k) for k in ("image", "segmentation", "ct", "labels", "thresholds")},
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
