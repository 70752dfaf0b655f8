"""A batch on a Dask distributed cluster: a scheduler given by address, or an embedded LocalCluster.

Each case is one Dask task (:func:`~TAREDosimetryLib.batch.tasks.run_one_case`) that reads its
inputs and writes ``OUT/<case_id>/`` itself, so inputs and the output folder must be on storage
every worker sees under the same paths (a shared file system).  When a worker dies (killed, or
stopped by its nanny above its memory limit), the scheduler runs the case again on another
worker; after ``retries`` such losses Dask gives up (``KilledWorker``) and the case is recorded as
failed, never lost.  Needs ``dask[distributed]`` (the ``cluster`` extra), imported only here.

A LocalCluster's nannies run in this process and, before starting each worker, write Dask's
``distributed.nanny.pre-spawn-environ`` into this process's environment (``OMP_NUM_THREADS=1``,
``OPENBLAS_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_=65536``, ...) and leave it there; the
environment is put back when the batch ends, so that what runs next in this process (a batch on
local workers, which would take those for the user's settings) is not changed by it.
"""

import uuid

from ..errors import InputError
from ..threads import environment_kept
from .tasks import new_entry, run_one_case

__all__ = ["run_on_dask", "require_distributed", "connect_scheduler"]

CONNECT_TIMEOUT_S = 20


def require_distributed():
    """The ``distributed`` module, or an InputError naming the pip install."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as exc:
        raise InputError(
            f"--dask and --scheduler need Dask distributed ({exc}): pip install 'dask[distributed]' "
            "(or the TAREDosimetry extra: pip install 'TAREDosimetry[cluster]')"
        ) from None
    return distributed


def _client(distributed, scheduler, workers, max_memory_bytes):
    """(client, cluster or None): connected to ``scheduler``, or to a new LocalCluster of ``workers`` processes."""
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there ({exc})") from None
    cluster = distributed.LocalCluster(
        n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
        memory_limit=int(max_memory_bytes) if max_memory_bytes else "auto",
    )
    return distributed.Client(cluster), cluster


def connect_scheduler(scheduler):
    """A ``distributed.Client`` connected to the scheduler at ``scheduler``; InputError naming the
    address when none answers within :data:`CONNECT_TIMEOUT_S` (checked before a batch writes anything)."""
    return _client(require_distributed(), scheduler, 1, None)[0]


def _lost_entry(task, exc, retries):
    entry = new_entry(task["case"]["case_id"], task["dest"], "failed")
    if type(exc).__name__ == "KilledWorker":
        entry["error"] = (f"the Dask worker running this case died {retries + 1} time(s) (killed, or stopped above its "
                          "memory limit); nothing of it was written")
        entry["attempts"] = retries + 1
    else:
        entry["error"] = f"Dask could not run this case: {type(exc).__name__}: {exc}"
    return entry


def run_on_dask(tasks, on_done, *, scheduler=None, workers=None, retries=1, max_memory_bytes=None, log=None, client=None):
    """Run the tasks on a Dask cluster; ``on_done(entry)`` is called here for each finished case.

    Parameters
    ----------
    scheduler : str, address of a running scheduler (``tcp://host:8786``); None starts a LocalCluster
        of ``workers`` processes (one thread each) with ``max_memory_bytes`` per worker.
    retries : int, how many times a case whose worker died is run again.
    client : ``distributed.Client`` already connected to ``scheduler`` (:func:`connect_scheduler`),
        optional; the caller closes it.
    """
    import dask

    distributed = require_distributed()
    log = log or (lambda m: None)
    with dask.config.set({"distributed.scheduler.allowed-failures": int(retries)}), environment_kept():
        tasks = list(tasks)
        given = client is not None
        if not given:
            client, cluster = _client(distributed, scheduler, max(1, min(int(workers or 1), len(tasks))), max_memory_bytes)
        else:
            cluster = None
        futures = {}
        try:
            log(f"Dask: {len(client.scheduler_info().get('workers', {}))} worker(s) at {client.scheduler.address}")
            for t in tasks:
                key = f"tare-case-{t['case']['case_id']}-{uuid.uuid4().hex[:8]}"
                futures[client.submit(run_one_case, t, key=key, pure=False)] = t
            for fut in distributed.as_completed(list(futures)):
                try:
                    entry = fut.result()
                except Exception as exc:  # KilledWorker, a lost scheduler, a task that cannot be unpickled
                    entry = _lost_entry(futures[fut], exc, retries)
                on_done(entry)
        finally:
            if futures:
                client.cancel(list(futures))
            if not given:
                client.close()
            if cluster is not None:
                cluster.close()
