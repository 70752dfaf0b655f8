"""One batch at a time per output folder: ``OUT/.batch.lock`` holds the host and process id of the
batch writing there.  A lock left by a process that no longer runs (on this host) is taken over."""

import contextlib
import json
import os
import socket

from ..errors import InputError

__all__ = ["batch_lock", "LOCK_NAME"]

LOCK_NAME = ".batch.lock"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _holder(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _try_create(path, me):
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(me, fh)
    return True


@contextlib.contextmanager
def batch_lock(out_dir):
    """Hold the output folder's batch lock for the duration of the ``with`` block.

    Raises InputError when another live batch holds it (on this host; a lock of another host is
    respected until removed by hand: the message names the file).
    """
    path = os.path.join(out_dir, LOCK_NAME)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    if not _try_create(path, me):
        other = _holder(path)
        same_host = other.get("host") == me["host"]
        if same_host and isinstance(other.get("pid"), int) and not _alive(other["pid"]):
            os.remove(path)  # stale: its batch ended without removing it
            if not _try_create(path, me):
                raise InputError(f"--out {out_dir}: another batch is writing to it (lock {path})")
        else:
            who = f"process {other.get('pid', '?')} on {other.get('host', '?')}"
            raise InputError(f"--out {out_dir}: another batch is writing to it ({who}); wait for it to end, or remove "
                             f"{path} if that batch no longer runs")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
