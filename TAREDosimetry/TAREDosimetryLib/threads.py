"""How many CPU threads one case may use.

A case uses threads for the FFTs of the dose-voxel kernel, the kernel quadrature and the
compression of dose.nrrd.  A batch worker sharing the cores with others sets
``TARE_DOSIMETRY_THREADS`` (batch/tasks.py), and every place that starts threads asks
:func:`cpu_threads`, so parallel cases do not oversubscribe the cores.
"""

import contextlib
import os

__all__ = ["cpu_threads", "THREADS_ENV", "environment_kept"]

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


@contextlib.contextmanager
def environment_kept():
    """This process's environment as it was before the block, whatever the block set or removed (the
    thread variables a worker process is started with, or those a Dask nanny leaves behind)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
