"""Local worker processes for a batch: each runs one case at a time; a worker that dies is replaced.

Unlike ``concurrent.futures.ProcessPoolExecutor`` (where one dead worker breaks the whole pool and
fails every case in flight), each worker here has its own pipe, so the batch knows which case a
dead worker was running: that case alone is retried (``retries`` times) and then recorded as
failed, never lost; the other workers go on.  A worker whose resident memory exceeds
``max_memory_bytes`` is stopped and its case recorded as failed (it would exceed it again).

Workers are started with the ``spawn`` method (no fork of a process holding threads): a script
that calls the batch with workers must guard its entry point with ``if __name__ == "__main__":``.
"""

import multiprocessing
import os
import multiprocessing.connection
import signal
from collections import deque

from ..threads import THREADS_ENV, cpu_threads, environment_kept
from .tasks import new_entry, run_one_case

__all__ = ["run_in_worker_processes", "worker_rss_bytes"]

_POLL_S = 0.25


def _worker_main(conn):
    """A worker's loop: receive a task, send back its entry; None ends it.  Ctrl-C is the batch's
    to handle (ignored here); SIGTERM ends the case cleanly (partial outputs removed) and the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(run_one_case(task))


#: Thread-count variables of the BLAS and OpenMP libraries NumPy may use; read once, when the worker
#: imports NumPy, so they are set in the worker's environment before it starts.
_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _worker_environment(threads):
    """{variable: value} capping a worker's library threads at ``threads`` (unless the user set them)."""
    env = {THREADS_ENV: str(threads)}
    env.update({v: str(threads) for v in _BLAS_THREAD_VARIABLES if v not in os.environ})
    return env


class _Worker:
    def __init__(self, ctx, index, threads):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child,), name=f"tare-batch-worker-{index}", daemon=True)
        with environment_kept():
            os.environ.update(_worker_environment(threads))  # the spawned process inherits it at start
            self.process.start()
        child.close()
        self.task = None

    def give(self, task):
        self.task = task
        self.conn.send(task)

    def stop(self, timeout=5.0):
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout if self.task is None else 0.1)
        if self.process.is_alive():
            self.process.terminate()  # SIGTERM: the case removes its partial output
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def worker_rss_bytes(pid):
    """Resident memory of a process in bytes (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _death_text(exitcode):
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def _lost_entry(task, why):
    entry = new_entry(task["case"]["case_id"], task["dest"], "failed")
    entry.update(error=why, attempts=task["attempt"])
    return entry


class _Pool:
    """The workers and the bookkeeping of lost cases."""

    def __init__(self, workers, retries, max_memory_bytes, on_done, log):
        self.ctx = multiprocessing.get_context("spawn")
        self.count = 0
        self.threads = max(1, cpu_threads() // max(1, int(workers)))
        self.workers = [self._new() for _ in range(workers)]
        self.retries, self.max_memory_bytes = retries, max_memory_bytes
        self.on_done, self.log = on_done, log or (lambda m: None)

    def _new(self):
        self.count += 1
        return _Worker(self.ctx, self.count, self.threads)

    def replace(self, i):
        w = self.workers[i]
        w.task = None
        w.stop(timeout=1.0)
        self.workers[i] = self._new()

    def lost(self, task, why, pending):
        """A case whose worker died: retried while attempts are left, else recorded as failed."""
        if task["attempt"] <= self.retries:
            self.log(f"{task['case']['case_id']}: the worker {why} while running it; retrying "
                     f"(attempt {task['attempt'] + 1} of {self.retries + 1})")
            pending.appendleft(dict(task, attempt=task["attempt"] + 1))
        else:
            n = task["attempt"]
            self.on_done(_lost_entry(task, f"the worker process {why} while running this case "
                                            f"({n} attempt{'s' if n > 1 else ''}); nothing of it was written"))

    def over_memory(self, w):
        rss = worker_rss_bytes(w.process.pid) if self.max_memory_bytes else None
        return rss is not None and rss > self.max_memory_bytes, rss

    def check(self, i, pending):
        """Collect worker i's result, or handle its death or its memory overrun."""
        w = self.workers[i]
        if w.task is None:
            return
        if w.conn.poll():
            try:
                entry = w.conn.recv()
            except (EOFError, OSError):
                entry = None
            if entry is not None:
                w.task = None
                self.on_done(entry)
                return
        if not w.process.is_alive():
            task = w.task
            self.replace(i)
            self.lost(task, _death_text(w.process.exitcode), pending)
            return
        over, rss = self.over_memory(w)
        if over:
            task = w.task
            w.process.kill()
            self.replace(i)
            self.on_done(_lost_entry(task, f"the case used {rss / 2**30:.2f} GB, more than the worker's memory limit "
                                           f"of {self.max_memory_bytes / 2**30:.2f} GB (--max-memory-gb); it was stopped"))

    def run(self, tasks):
        pending = deque(tasks)
        while pending or any(w.task is not None for w in self.workers):
            for w in self.workers:
                if w.task is None and pending:
                    w.give(pending.popleft())
            busy = [w for w in self.workers if w.task is not None]
            multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=_POLL_S)
            for i in range(len(self.workers)):
                self.check(i, pending)

    def close(self):
        for w in self.workers:
            w.stop()


def run_in_worker_processes(tasks, on_done, *, workers, retries=1, max_memory_bytes=None, log=None):
    """Run the tasks on ``workers`` local processes; ``on_done(entry)`` is called in this process
    for each finished case (in order of completion).  On Ctrl-C the workers are stopped (their
    cases' partial outputs removed) and KeyboardInterrupt propagates."""
    tasks = list(tasks)
    pool = _Pool(max(1, min(int(workers), len(tasks))), int(retries), max_memory_bytes, on_done, log)
    try:
        pool.run(tasks)
    finally:
        pool.close()
