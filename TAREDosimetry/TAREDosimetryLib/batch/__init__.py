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

from .casefiles import evaluate_dose_files, run_case_files, run_files_and_write
from .manifest import MANIFEST_COLUMNS, read_manifest
from .runner import BatchInterrupted, BatchSummary, run_manifest
from .summary import SUMMARY_COLUMNS

__all__ = ["read_manifest", "run_case_files", "evaluate_dose_files", "run_files_and_write", "run_manifest", "MANIFEST_COLUMNS",
           "SUMMARY_COLUMNS", "BatchSummary", "BatchInterrupted"]
