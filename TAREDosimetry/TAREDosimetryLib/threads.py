"""How many CPU threads one case may use.

A case uses threads for the FFTs of the dose-voxel kernel, the kernel quadrature and the
compression of dose.nrrd.  A batch worker sharing the cores with others sets
``TARE_DOSIMETRY_THREADS`` (batch/tasks.py), and every place that starts threads asks
:func:`cpu_threads`, so parallel cases do not oversubscribe the cores.
"""

import os
import threading

__all__ = ["cpu_threads", "THREADS_ENV", "map_in_threads"]

#: Environment variable that caps the threads of one case (a positive whole number).
THREADS_ENV = "TARE_DOSIMETRY_THREADS"


def cpu_threads():
    """The cores this process may use, or fewer when :data:`THREADS_ENV` says so."""
    cap = os.environ.get(THREADS_ENV, "")
    if cap.isdigit() and int(cap) > 0:
        return int(cap)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def map_in_threads(func, items, threads=None):
    """``[func(x) for x in items]`` computed by up to ``threads`` threads (default
    :func:`cpu_threads`), the calling thread one of them: each takes the next item when it is
    free, the results keep the items' order.  For work that NumPy does without the interpreter
    lock.  The first error (by item order) is raised once every thread has stopped; no new item
    is started after an error (Ctrl-C included)."""
    items = list(items)
    n = min(len(items), threads or cpu_threads())
    if n < 2:
        return [func(x) for x in items]
    results, errors, taken, lock = [None] * len(items), [], [0], threading.Lock()

    def work():
        while True:
            with lock:
                i = taken[0]
                taken[0] += 1
            if i >= len(items) or errors:
                return
            try:
                results[i] = func(items[i])
            except BaseException as exc:  # noqa: B036 - handed to the calling thread, raised there
                errors.append((i, exc))
                return

    helpers = [threading.Thread(target=work, name=f"map-{k}") for k in range(1, n)]
    for t in helpers:
        t.start()
    try:
        work()
    finally:
        for t in helpers:
            t.join()
    if errors:
        raise min(errors, key=lambda e: e[0])[1]
    return results
