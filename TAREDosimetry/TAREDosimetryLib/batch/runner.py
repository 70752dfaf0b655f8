"""Running every case of a manifest: in this process, on local worker processes, or on a Dask cluster.

Each case is an independent task writing ``OUT/<case_id>/`` (:mod:`.tasks`); a case whose complete
result has the same inputs and parameters (content hash, :mod:`.record`) is skipped unless
``rerun``; a failing case is recorded and the others go on; the summary (:mod:`.summary`) is
rewritten as cases finish, and an interrupted batch leaves one that lists the finished cases and
marks the others ``not_run``.
"""

import os
import signal
import time

from ..errors import InputError
from ..params import DosimetryParams
from .lock import batch_lock
from .manifest import read_manifest
from .progress import BatchProgress
from .summary import summary_path, write_summary
from .tasks import make_task, new_entry, run_one_case, unchanged_entry

__all__ = ["run_manifest", "BatchSummary", "BatchInterrupted", "check_batch_out_dir", "plan_execution"]


class BatchSummary(list):
    """The batch's entries (a list of dicts, in manifest order) with ``path``, the summary file written."""

    def __init__(self, entries, path):
        super().__init__(entries)
        self.path = path


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP) during a batch; ``summary`` holds the entries as written to
    ``summary.path``; ``signum`` the signal (SIGINT for Ctrl-C)."""

    def __init__(self, summary, signum=int(signal.SIGINT)):
        super().__init__(f"batch interrupted; summary of the finished cases in {summary.path}")
        self.summary = summary
        self.signum = int(signum)


def check_batch_out_dir(out_dir):
    """Create the batch's output folder; InputError when it cannot be one (a file, an unwritable parent)."""
    out_dir = str(out_dir)
    if not out_dir.strip():
        raise InputError("--out is empty: give the batch's output folder")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"--out {out_dir}: exists and is not a folder (the batch writes one sub-folder per case there)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"--out {out_dir}: the folder is not writable")
    return os.path.abspath(out_dir)


def plan_execution(workers=None, dask=False, scheduler=None, runner=None):
    """'serial' (this process), 'processes' (local workers) or 'dask'; InputError for contradictions."""
    if workers is not None and (int(workers) != workers or workers < 1):
        raise InputError(f"--workers must be a whole number >= 1, got {workers!r}")
    if scheduler and workers is not None:
        raise InputError("--workers starts local workers; with --scheduler the cluster's workers run the cases (omit --workers)")
    if scheduler is not None and not str(scheduler).strip():
        raise InputError("--scheduler is empty: give the Dask scheduler's address, e.g. tcp://host:8786")
    mode = "dask" if (dask or scheduler) else ("processes" if workers else "serial")
    if mode != "serial" and runner is not None and getattr(runner, "__qualname__", "").count("<locals>"):
        raise InputError("a case runner defined inside a function cannot be sent to worker processes; run serially")
    return mode


def _execute(mode, tasks, on_done, workers, scheduler, retries, max_memory_bytes, log, client=None):
    if mode == "serial":
        for t in tasks:
            on_done(run_one_case(t))
    elif mode == "processes":
        from .pool import run_in_worker_processes

        run_in_worker_processes(tasks, on_done, workers=workers, retries=retries, max_memory_bytes=max_memory_bytes, log=log)
    else:
        from .daskcluster import run_on_dask

        run_on_dask(tasks, on_done, scheduler=scheduler, workers=workers or os.cpu_count() or 1, retries=retries,
                    max_memory_bytes=max_memory_bytes, log=log, client=client)


def _threads_per_case(mode, workers, threads_per_case):
    if threads_per_case:
        return int(threads_per_case)
    if mode == "serial" or mode == "dask" and not workers:
        return None  # this process's own cores, or what each cluster worker has
    return max(1, (os.cpu_count() or 1) // int(workers))


def _tasks_and_entries(cases, out_dir, options):
    """(tasks to run, entries by case_id with the skipped ones filled in)."""
    tasks, entries = [], {}
    for case in cases:
        task = make_task(case, out_dir=out_dir, **options)
        skipped = unchanged_entry(task)
        entries[case["case_id"]] = skipped or new_entry(case["case_id"], task["dest"])
        if skipped is None:
            tasks.append(task)
    return tasks, entries


#: Least seconds between two rewrites of the summary while cases finish (a batch of thousands of cases
#: would otherwise rewrite it thousands of times); it is always written at the end and on interruption.
SUMMARY_INTERVAL_S = 1.0


def _run_all(mode, tasks, entries, summary, progress, execution):
    """Run the tasks, recording each finished case in ``entries`` and (at most every
    :data:`SUMMARY_INTERVAL_S`) in the summary file."""
    last = [time.monotonic()]

    def on_done(entry):
        entries[entry["case_id"]] = entry
        progress.update(entry)
        if time.monotonic() - last[0] >= SUMMARY_INTERVAL_S:
            write_summary(summary.path, entries.values())
            last[0] = time.monotonic()

    progress.started()
    if not tasks:
        return  # every case unchanged: no workers or cluster to start
    try:
        _execute(mode, tasks, on_done, **execution)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP raised as an interrupt by the command line
        _not_run(entries, "the batch was interrupted before this case finished")
        write_summary(summary.path, entries.values())
        raise BatchInterrupted(BatchSummary(entries.values(), summary.path),
                               getattr(exc, "signum", int(signal.SIGINT))) from None
    except Exception as exc:  # the executor itself failed (e.g. no Dask scheduler): say so in the summary too
        _not_run(entries, f"the batch stopped before this case finished: {exc}")
        write_summary(summary.path, entries.values())
        raise


def _not_run(entries, why):
    for e in entries.values():
        if e["status"] == "pending":
            e.update(status="not_run", error=why)


def run_manifest(manifest_path, out_dir, *, defaults=None, rules=None, overwrite=False, report=True, log=None,
                 debug=False, runner=None, workers=None, dask=False, scheduler=None, rerun=False, retries=1,
                 max_memory_gb=None, threads_per_case=None, exports=None, pdf=False, dicom=None, send=None):
    """Run every case of a manifest; results in ``out_dir/<case_id>/``, summary in ``out_dir``.

    Parameters
    ----------
    manifest_path, out_dir : str
    defaults : DosimetryParams, the parameters of every case before its manifest row's changes.
    rules : preset name, rule file or RuleSet for cases whose row names none.
    overwrite : bool, replace earlier results whose inputs or parameters changed, and batch_summary.csv.
    rerun : bool, recompute every case even when its result is complete and unchanged (replacing it).
    runner : callable(case, params, rules, dest, overwrite, report) -> CaseResult, optional: runs one
        case and writes its outputs into ``dest`` (default: the engine on the case's files).  With
        workers it must be a module-level function (it is sent to them).
    workers : int, local worker processes (None: every case in this process).
    dask, scheduler : run on Dask: a LocalCluster of ``workers`` processes, or the scheduler at this address.
    retries : int, runs again of a case whose worker died before it is recorded as failed.
    max_memory_gb : float, memory limit of each worker (local workers: the case is stopped and
        recorded as failed above it; Dask: the worker's ``memory_limit``).
    threads_per_case : int, CPU threads one case may use (default: the cores divided by the workers).
    exports, pdf, dicom, send : for the default runner: DicomExports, report.pdf, DicomOptions
        (the case's ``series`` and timing columns complete it), and a callable(files) that sends a
        case's DICOM files (a failed send fails the case; its results stay written).  With workers,
        ``send`` must be picklable (it runs where the case runs).

    Returns
    -------
    BatchSummary (a list of entry dicts in manifest order, see :mod:`.summary`; ``.path`` the file).
    Raises BatchInterrupted on Ctrl-C, after writing the summary of the finished cases.
    """
    mode = plan_execution(workers, dask, scheduler, runner)
    if retries is None or int(retries) < 0:
        raise InputError(f"--retries must be >= 0, got {retries!r}")
    if max_memory_gb is not None and not float(max_memory_gb) > 0:
        raise InputError(f"--max-memory-gb must be > 0, got {max_memory_gb!r}")
    cases = read_manifest(manifest_path)
    options = dict(defaults=defaults or DosimetryParams(), rules=rules, overwrite=overwrite, rerun=rerun, report=report,
                   runner=runner, debug=debug, threads=_threads_per_case(mode, workers, threads_per_case),
                   outputs=dict(exports=exports, pdf=bool(pdf), dicom=dicom, send=send))
    execution = dict(workers=workers, scheduler=scheduler, retries=int(retries), log=log,
                     max_memory_bytes=float(max_memory_gb) * 2**30 if max_memory_gb else None)
    execution["client"] = _scheduler_client(mode, scheduler)  # an unreachable scheduler is refused before --out is made
    try:
        return _run_in(check_batch_out_dir(out_dir), cases, mode, options, execution)
    finally:
        if execution["client"] is not None:
            execution["client"].close()


def _scheduler_client(mode, scheduler):
    """A client connected to ``--scheduler`` (InputError when none answers), or None."""
    if mode != "dask" or not scheduler:
        return None
    from .daskcluster import connect_scheduler

    return connect_scheduler(scheduler)


def _run_in(out_dir, cases, mode, options, execution):
    """The batch in ``out_dir`` (created), once its arguments are checked and the scheduler, if any, answered."""
    with batch_lock(out_dir):
        summary = BatchSummary([], summary_path(out_dir, options["overwrite"]))
        tasks, entries = _tasks_and_entries(cases, out_dir, options)
        write_summary(summary.path, entries.values())
        progress = BatchProgress(len(cases), execution["log"])
        for e in entries.values():
            if e["status"] == "skipped":
                progress.update(e)
        _run_all(mode, tasks, entries, summary, progress, execution)
        write_summary(summary.path, entries.values())
    return BatchSummary(entries.values(), summary.path)
