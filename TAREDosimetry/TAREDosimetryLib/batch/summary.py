"""The batch summary: ``batch_summary.csv``, one row per manifest case, and its text for the console.

The summary is rewritten (atomically) as cases finish (at most once a second), with every case of the
manifest in it: cases not finished yet say ``pending``, and after an interruption ``not_run``, so a
summary never looks complete when it is not.  An earlier batch's ``batch_summary.csv`` is never
replaced unless ``overwrite``: the new one is ``batch_summary-2.csv`` (then -3, ...).

Columns: ``case_id``; ``status`` (ok, failed, skipped: unchanged result kept, pending, not_run);
``overall`` (PASS/FAIL/INCOMPLETE/N/A of the case); ``incomplete_reasons``; ``warnings`` (count)
and ``first_warning``; ``error``; ``note``; ``attempts`` (runs of the case, more than 1 when a
worker died); ``seconds`` (wall time) and ``cpu_s`` (CPU time of the process, all threads: the case's
cost); ``peak_rss_mb`` (peak resident memory of the process while it ran the
case); ``worker`` (host:pid); ``content_sha256`` (the resume key, see :mod:`.record`); ``out_dir``.
"""

import csv
import os

__all__ = ["SUMMARY_COLUMNS", "SUMMARY_NAME", "summary_path", "write_summary", "final_report_lines"]

SUMMARY_NAME = "batch_summary.csv"
SUMMARY_COLUMNS = ("case_id", "status", "overall", "incomplete_reasons", "warnings", "first_warning", "error", "note",
                   "attempts", "seconds", "cpu_s", "peak_rss_mb", "worker", "content_sha256", "out_dir")


def summary_path(out_dir, overwrite=False):
    """Where this batch's summary goes: ``batch_summary.csv``, or the first free ``batch_summary-N.csv``
    when an earlier summary exists and ``overwrite`` is False."""
    first = os.path.join(out_dir, SUMMARY_NAME)
    if overwrite or not os.path.lexists(first):
        return first
    n = 2
    while os.path.lexists(os.path.join(out_dir, f"batch_summary-{n}.csv")):
        n += 1
    return os.path.join(out_dir, f"batch_summary-{n}.csv")


def _cell(v):
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else ""
    return "" if v is None else str(v)


def write_summary(path, entries):
    """Write the entries (dicts with :data:`SUMMARY_COLUMNS`) to ``path`` atomically (temp file, rename)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(SUMMARY_COLUMNS)
            for e in entries:
                w.writerow([_cell(e.get(c, "")) for c in SUMMARY_COLUMNS])
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def final_report_lines(entries, path):
    """Console lines at the end of a batch: the counts, each case's warnings, each failure."""
    count = {s: sum(e["status"] == s for e in entries) for s in ("ok", "skipped", "failed", "not_run", "pending")}
    head = f"{count['ok']}/{len(entries)} cases done"
    if count["skipped"]:
        head += f", {count['skipped']} skipped (unchanged results kept; --rerun recomputes them)"
    if count["failed"]:
        head += f", {count['failed']} failed"
    if count["not_run"] or count["pending"]:
        head += f", {count['not_run'] + count['pending']} not run (interrupted)"
    lines = [f"{head}; summary in {path}"]
    warned = [e for e in entries if e["status"] in ("ok", "skipped") and int(e.get("warnings") or 0) > 0]
    if warned:
        lines.append(f"warnings in {len(warned)} case(s):")
        for e in warned:
            n = int(e["warnings"])
            lines.append(f"  {e['case_id']}: {n} warning{'s' if n > 1 else ''}; first: {e['first_warning']}")
    for e in entries:
        if e["status"] == "failed":
            lines.append(f"FAILED {e['case_id']}: {e['error'].splitlines()[0] if e['error'] else ''}")
    return lines
