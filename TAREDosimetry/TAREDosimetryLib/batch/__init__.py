"""Many cases: a manifest CSV run in this process, on local worker processes or on a Dask cluster.

::

    manifest.py     reading the manifest (one case per row) and its checks
    casefiles.py    one case from files (DICOM too): read, run the engine or evaluate a dose map, write the result folder
    record.py       the content hash of a case's inputs and parameters (resume) and batch_record.json
    tasks.py        one case as an independent, idempotent task (the unit every executor runs)
    pool.py         local worker processes (a dead worker's case retried, then recorded as failed)
    daskcluster.py  a Dask distributed cluster (LocalCluster or a scheduler address)
    progress.py     cases done, failed, skipped and the time left
    summary.py      batch_summary.csv and the console report
    lock.py         one batch at a time per output folder
    runner.py       run_manifest: all of the above
"""

from ..lazy import lazy_names

#: Public name -> module of this package that defines it.  The modules are imported when a name is
#: first used (PEP 562), so that one case from files (``run``) does not import the batch machinery
#: (worker pools, threads, subprocesses).
_WHERE = {
    "evaluate_dose_files": "casefiles", "run_case_files": "casefiles", "run_files_and_write": "casefiles",
    "MANIFEST_COLUMNS": "manifest", "read_manifest": "manifest",
    "BatchInterrupted": "runner", "BatchSummary": "runner", "run_manifest": "runner",
    "SUMMARY_COLUMNS": "summary",
}

__all__ = ["read_manifest", "run_case_files", "evaluate_dose_files", "run_files_and_write", "run_manifest", "MANIFEST_COLUMNS",
           "SUMMARY_COLUMNS", "BatchSummary", "BatchInterrupted"]

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
