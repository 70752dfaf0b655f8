"""One batch case as an independent task: the same function runs in the batch's own process, in a
worker process of the local pool, or on a Dask worker of a cluster.

A task is a plain dict (picklable); :func:`run_one_case` never raises for a case that fails: it
returns the case's summary entry (a plain dict) with the error.  It is idempotent: a retry after a
worker died finds a result that the earlier attempt finished (same content hash) and reports it
instead of failing on a non-empty folder.

The case's result folder is locked (:func:`~..reporting.resultfolder.output_lock`, the lock every
``write_outputs`` takes) from the check of what it holds to the batch record written after the
result: a ``run --out`` into the same folder meanwhile stops at once, and hidden folders that a
killed earlier attempt left there are cleared (a half-done swap put back) before the check.
"""

import os
import socket
import time
import traceback

from ..errors import InputError, TAREDosimetryError
from ..threads import THREADS_ENV
from .record import case_fingerprint, content_sha256, read_record, remove_record, result_state, write_record

__all__ = ["make_task", "new_entry", "run_one_case", "skipped_entry", "unchanged_entry", "case_params"]


def make_task(case, *, defaults, rules, out_dir, overwrite=False, rerun=False, report=True, runner=None, debug=False,
              threads=None, outputs=None):
    """The task dict of one manifest case (see the module docstring).

    ``outputs``: options of the default runner (:func:`~.casefiles.run_files_and_write`):
    ``exports`` (DicomExports), ``pdf``, ``dicom`` (DicomOptions), ``send`` (callable(files)).
    """
    return {
        "case": case, "defaults": defaults, "rules": rules, "dest": os.path.join(out_dir, case["case_id"]),
        "overwrite": bool(overwrite), "rerun": bool(rerun), "report": bool(report), "runner": runner,
        "debug": bool(debug), "threads": threads, "attempt": 1, "outputs": dict(outputs or {}),
    }


def new_entry(case_id, dest, status="pending"):
    """A summary entry with every column empty."""
    return {
        "case_id": case_id, "status": status, "overall": "", "incomplete_reasons": "", "warnings": 0,
        "first_warning": "", "error": "", "note": "", "attempts": 0, "seconds": 0.0, "cpu_s": "", "peak_rss_mb": "",
        "worker": "", "content_sha256": "", "out_dir": dest,
    }


def case_params(task):
    """The case's DosimetryParams: the batch defaults with the manifest row's changes."""
    changes = task["case"]["params_changes"]
    return task["defaults"].replace(**changes) if changes else task["defaults"]


def _fingerprint(task, params):
    rules = task["case"]["thresholds"] or task["rules"]
    fp = case_fingerprint(task["case"], params, rules, task["report"], task.get("outputs"))
    return rules, fp, content_sha256(fp)


def skipped_entry(task, record, digest):
    """The entry of a case skipped because its complete result has the same content hash."""
    case = task["case"]
    entry = new_entry(case["case_id"], task["dest"], "skipped")
    entry.update(
        overall=record.get("overall", ""), warnings=record.get("warnings", 0), first_warning=record.get("first_warning", ""),
        incomplete_reasons=record.get("incomplete_reasons", ""), content_sha256=digest,
        note=f"unchanged since {record.get('finished', 'an earlier run')} (same inputs and parameters); --rerun recomputes it",
    )
    return entry


def unchanged_entry(task):
    """The skipped entry when the case's folder holds a complete result of the same inputs and
    parameters (and ``--rerun`` was not given), else None.  Hashes the inputs only when a record exists."""
    if task["rerun"] or task["case"]["error"]:
        return None
    record = read_record(task["dest"])
    if record is None or not os.path.isfile(os.path.join(task["dest"], "metrics.json")):
        return None
    try:
        _rules, _fp, digest = _fingerprint(task, case_params(task))
    except (TAREDosimetryError, OSError):
        return None
    return skipped_entry(task, record, digest) if record.get("content_sha256") == digest else None


def _refuse_changed(dest):
    why = "other inputs or parameters" if read_record(dest) else "no batch record (an older version, or a run outside this batch)"
    raise InputError(
        f"{dest}: holds an earlier result with {why}; add --overwrite to replace it, or --rerun to recompute every case"
    )


def _run(task, entry):
    """Run the case (unless unchanged) and fill ``entry``; raises the case's error."""
    from ..reporting.resultfolder import output_lock, place_errors, remove_stale_partials

    case, dest = task["case"], task["dest"]
    if case["error"]:
        raise InputError(case["error"])
    params = case_params(task)
    rules, fp, digest = _fingerprint(task, params)
    entry["content_sha256"] = digest
    with output_lock(dest):
        with place_errors(dest):
            remove_stale_partials(dest)
        _run_locked(task, entry, params, rules, fp, digest)


def _run_locked(task, entry, params, rules, fp, digest):
    """:func:`_run` while holding the case folder's lock."""
    from ..reporting.outputs import check_output_dir
    from .casefiles import run_files_and_write

    case, dest = task["case"], task["dest"]
    state = result_state(dest, digest)
    if state == "unchanged" and not task["rerun"]:
        skipped = skipped_entry(task, read_record(dest), digest)
        entry.update({k: v for k, v in skipped.items() if k not in ("attempts", "worker")})
        return
    if state == "changed" and not (task["overwrite"] or task["rerun"]):
        _refuse_changed(dest)
    replace = task["overwrite"] or task["rerun"]
    check_output_dir(dest, replace)
    remove_record(dest)
    if task["runner"] is not None:
        result = task["runner"](case, params, rules, dest, replace, task["report"])
    else:
        result = run_files_and_write(case, params, rules, dest, replace, task["report"], **task.get("outputs", {}))
    warnings = list(getattr(result, "warnings", []) or [])
    entry.update(
        status="ok", overall=result.overall_status, warnings=len(warnings), first_warning=warnings[0] if warnings else "",
        incomplete_reasons=" | ".join(getattr(result, "incomplete_reasons", []) or []),
    )
    write_record(dest, case, fp, digest, entry)


def run_one_case(task):
    """Run one task; returns its summary entry (status 'ok', 'skipped' or 'failed', never raises for a
    case's own failure).  Records the wall and CPU time (all threads of the process), the attempt and
    the peak memory of the process."""
    t0, c0 = time.perf_counter(), time.process_time()
    _limit_threads(task.get("threads"))
    exact_peak = _reset_peak_rss()
    entry = new_entry(task["case"]["case_id"], task["dest"], "failed")
    entry.update(attempts=task.get("attempt", 1), worker=f"{socket.gethostname()}:{os.getpid()}")
    try:
        _run(task, entry)
    except TAREDosimetryError as exc:
        entry["error"] = str(exc)
    except MemoryError:
        entry["error"] = "out of memory while running this case (MemoryError)"
    except Exception as exc:  # an unexpected failure of one case must not stop the batch
        entry["error"] = f"internal error: {type(exc).__name__}: {exc}"
        if task.get("debug"):
            entry["error"] += "\n" + traceback.format_exc()
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    entry["cpu_s"] = round(time.process_time() - c0, 3)
    entry["peak_rss_mb"] = _peak_rss_mb(exact_peak)
    return entry


# -- the worker's resources -------------------------------------------------------------------------
def _limit_threads(threads):
    """Cap the threads one case uses (FFT workers, ITK filters) so parallel cases do not oversubscribe the cores."""
    if not threads:
        return
    os.environ[THREADS_ENV] = str(int(threads))
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    except (ImportError, AttributeError):
        pass


def _reset_peak_rss():
    """Reset the process's peak resident memory (Linux: /proc/self/clear_refs), so that the peak read
    after the case is the case's own; False where that is not possible (the peak is then the process's)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(exact):
    """Peak resident memory in MB: since the reset when ``exact``, else of the whole process so far."""
    if exact:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024.0, 1)
        except (OSError, ValueError, IndexError):
            pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)
    except (ImportError, OSError):
        return ""
