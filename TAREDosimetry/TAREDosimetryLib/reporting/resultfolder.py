"""Result folders replaced whole or not at all, one writer at a time.

A run writes its files into a hidden sibling folder ``.NAME.partial-PID-XXXX`` and swaps them into
``NAME`` only when every file is complete:

* ``NAME`` missing or empty: the partial folder is renamed to ``NAME`` (one atomic rename).
* ``NAME`` holding an earlier result (``--overwrite``): the earlier result files are first moved
  aside into ``.NAME.previous-PID-XXXX`` (``metrics.json`` first, so the folder never looks
  complete half-way), then the new files are moved in (``metrics.json`` last).  When a move fails,
  everything moved so far is moved back: the earlier result and the user's other files stay exactly
  as they were.  Signals (Ctrl-C, SIGTERM, SIGHUP) are held back during the swap and act after it.

Other kinds of result (a treatment plan, a comparison) use the same mechanism with their own file
names and marker file (``files=`` and ``marker=`` of :func:`reserve_output_dir` and
:func:`swap_into`: ``plan.json``, ``comparison.json``).

A lock on ``NAME`` (the file ``.NAME.lock`` next to it, locked with ``flock``/``msvcrt.locking`` so
that it is released when its process dies) keeps a second run from writing into the same folder:
it stops at once with "another run is writing to NAME".  Holding the lock, a run knows that no live
run writes into ``NAME``, so hidden folders of an earlier, killed run are stale: partial folders are
removed, and the earlier result moved aside by a swap that was killed half-way is put back
(or dropped when the swap had completed, i.e. ``NAME/metrics.json`` is the new one).
"""

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading

from ..errors import InputError

__all__ = [
    "RESULT_FILES",
    "check_output_dir",
    "output_lock",
    "reserve_output_dir",
    "remove_stale_partials",
    "swap_into",
    "make_partial_dir",
    "signals_deferred",
    "os_error_as_input_error",
    "place_errors",
]

#: Result files of one case, in the order they are moved in (``metrics.json`` marks a complete
#: result: it is moved in last and moved out first).
RESULT_FILES = ("dose.nrrd", "metrics.csv", "dvh.csv", "dvh.png", "report.html", "report.pdf", "dose.dcm", "segments.dcm",
                "metrics_sr.dcm", "metrics.json")
#: errno values that say something about the place the results go (not a bug): exit 2.
_PLACE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EISDIR, errno.ENOTDIR, errno.EXDEV,
                 errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EBUSY, getattr(errno, "EDQUOT", errno.ENOSPC)}
_held = {}  # absolute folder -> [lock file descriptor, nesting depth]: locks held by this process
_held_guard = threading.Lock()


def _hidden(out_dir, kind):
    """Prefix of the hidden sibling folders/files of ``out_dir``: ``.NAME.partial-`` etc."""
    return os.path.join(os.path.dirname(out_dir), f".{os.path.basename(out_dir)}.{kind}")


def _check_name(out_dir):
    text = "" if out_dir is None else str(out_dir)
    if not text.strip():
        raise InputError(f"--out {text!r}: no folder name given; name the folder for the results (e.g. --out case1)")
    if text != text.strip():
        raise InputError(f"--out {text!r}: the folder name starts or ends with spaces; remove them")
    out_abs = os.path.abspath(text)
    if not os.path.basename(out_abs):
        raise InputError(f"--out {text}: the root of a drive cannot hold a result; name a folder in it")
    return out_abs


def _check_existing(out_dir, shown, overwrite, files):
    """Refuse an existing ``out_dir`` that cannot take the result files."""
    if not os.path.isdir(out_dir):
        raise InputError(f"--out {shown}: exists and is not a folder")
    if not os.listdir(out_dir):
        return
    if not overwrite:
        raise InputError(f"--out {shown}: folder exists and is not empty; choose another folder or add --overwrite")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"--out {shown}: the folder is not writable")
    for name in files:
        path = os.path.join(out_dir, name)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise InputError(f"--out {shown}: {name} there is a folder (or not a plain file); move it away or choose another folder")
        if os.path.isfile(path) and not os.stat(path).st_mode & stat.S_IWUSR:
            raise InputError(f"--out {shown}: {name} there is read-only (protected?); make it writable or choose another folder")


def check_output_dir(out_dir, overwrite=False, files=RESULT_FILES):
    """Raise InputError when ``out_dir`` cannot receive results (before any work is done).

    ``files``: the names of the result files that an overwrite replaces (default: a case's).

    Refused: an empty name or one with leading/trailing spaces, a file, a non-empty folder
    without ``overwrite``, a folder that is not writable, a result file name there that is a
    folder, a link or a read-only file, a missing or read-only parent folder.
    """
    shown = str(out_dir)
    out_abs = _check_name(out_dir)
    if os.path.lexists(out_abs):
        _check_existing(out_abs, shown, overwrite, files)
    parent = os.path.dirname(out_abs)
    if not os.path.isdir(parent):
        raise InputError(f"--out {shown}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {shown}: parent folder {parent} is not writable")


def os_error_as_input_error(exc, out_dir):
    """An OSError about the place the results go, as an InputError naming it (else None)."""
    if not isinstance(exc, OSError) or exc.errno not in _PLACE_ERRNOS:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return InputError(f"--out {out_dir}: cannot write the results: {exc.strerror or exc}{where}")


@contextlib.contextmanager
def place_errors(out_dir):
    """Turn OSErrors about the place the results go (permissions, disk full...) into InputErrors."""
    try:
        yield
    except OSError as exc:
        converted = os_error_as_input_error(exc, out_dir)
        if converted is None:
            raise
        raise converted from None


# -- the lock ---------------------------------------------------------------------------------------
def _try_lock(fd):
    """Lock ``fd`` exclusively without waiting; False when another process holds it."""
    try:
        if os.name == "nt":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            return False
        raise
    return True


def _holder_of(path):
    try:
        with open(path, encoding="ascii") as fh:
            pid = fh.read().strip()
    except (OSError, ValueError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


def _acquire(out_dir):
    """File descriptor of the locked ``.NAME.lock``; InputError when another run holds it."""
    path = _hidden(out_dir, "lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise InputError(
                f"another run is writing to {out_dir}{_holder_of(path)}; wait for it to finish or choose another --out"
            )
        try:  # the holder before us may have removed the file after we opened it: lock the file that is there
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode("ascii"))
    return fd


def _release(out_dir, fd):
    with contextlib.suppress(OSError):
        os.remove(_hidden(out_dir, "lock"))  # while still locked; Windows refuses (the file stays, harmless)
    os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def output_lock(out_dir):
    """Hold the lock of the result folder ``out_dir`` (re-entrant within this process).

    Raises InputError "another run is writing to ..." when another process holds it.
    """
    out_abs = os.path.abspath(str(out_dir))
    with _held_guard:
        entry = _held.get(out_abs)
        if entry is None:
            with place_errors(out_dir):
                entry = _held[out_abs] = [_acquire(out_abs), 0]
        entry[1] += 1
    try:
        yield out_abs
    finally:
        with _held_guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[out_abs]
                _release(out_abs, entry[0])


@contextlib.contextmanager
def reserve_output_dir(out_dir, overwrite=False, *, files=RESULT_FILES, marker="metrics.json"):
    """Check ``out_dir``, lock it and clear stale hidden folders of killed runs; hold it meanwhile.

    Commands wrap their whole run in it, so that a second run into the same folder stops before
    doing any work, and the check is repeated under the lock.  ``files`` and ``marker``: the
    result files of this kind of result and the one among them that marks it complete.
    """
    check_output_dir(out_dir, overwrite, files)
    with output_lock(out_dir) as out_abs:
        remove_stale_partials(out_abs, files=files, marker=marker)
        check_output_dir(out_dir, overwrite, files)
        yield out_abs


# -- stale folders of killed runs ------------------------------------------------------------------------
def _restore_previous(out_dir, backup, files, marker):
    """Finish what a killed swap left: drop ``backup`` when the swap completed, else put it back."""
    if os.path.isfile(os.path.join(out_dir, marker)):
        shutil.rmtree(backup, ignore_errors=True)
        return
    os.makedirs(out_dir, exist_ok=True)
    kept = set(os.listdir(backup))
    for name in files:  # files of the interrupted new result
        path = os.path.join(out_dir, name)
        if name not in kept and os.path.isfile(path):
            os.remove(path)
    for name in kept:
        os.replace(os.path.join(backup, name), os.path.join(out_dir, name))
    os.rmdir(backup)


def remove_stale_partials(out_dir, *, files=RESULT_FILES, marker="metrics.json"):
    """Remove the partial folders of ``out_dir`` left by killed runs, and resolve a killed swap
    (of a result made of ``files``, complete when ``marker`` is there).

    Call only while holding :func:`output_lock` of ``out_dir`` (no live run writes there then).
    Returns the paths handled.
    """
    out_abs = os.path.abspath(str(out_dir))
    parent, partial, previous = os.path.dirname(out_abs), _hidden(out_abs, "partial-"), _hidden(out_abs, "previous-")
    handled = []
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if path.startswith(partial) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif path.startswith(previous) and os.path.isdir(path):
            _restore_previous(out_abs, path, files, marker)
        else:
            continue
        handled.append(path)
    return handled


# -- writing aside and swapping in --------------------------------------------------------------------
def make_partial_dir(out_dir):
    """A new hidden folder next to ``out_dir`` with the usual permissions of a new folder."""
    tmp = tempfile.mkdtemp(prefix=os.path.basename(_hidden(out_dir, f"partial-{os.getpid()}-")), dir=os.path.dirname(out_dir))
    # mkdtemp makes the folder private (0700); the result folder it becomes gets the usual
    # permissions of a new folder (0777 less the umask), as os.makedirs would give it.
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    return tmp


@contextlib.contextmanager
def signals_deferred():
    """Hold back SIGINT, SIGTERM and SIGHUP (POSIX, main thread) until the block ends."""
    sigs = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs) if can else None
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _move_all(pairs, done):
    for src, dst in pairs:
        os.replace(src, dst)
        done.append((src, dst))


def _undo(done):
    """Move back what :func:`_move_all` moved (newest first); what cannot move back stays where it is."""
    for src, dst in reversed(done):
        with contextlib.suppress(OSError):
            os.replace(dst, src)


def _swap_files(tmp, out_dir, names, files, marker):
    """Move the earlier result files of ``out_dir`` aside and the new ones (``names`` in ``tmp``) in."""
    backup = tempfile.mkdtemp(prefix=os.path.basename(_hidden(out_dir, f"previous-{os.getpid()}-")), dir=os.path.dirname(out_dir))
    old = sorted((n for n in files if os.path.lexists(os.path.join(out_dir, n))), key=lambda n: n != marker)  # marker first
    new = sorted(names, key=lambda n: n == marker)  # marker last
    done = []
    try:
        _move_all([(os.path.join(out_dir, n), os.path.join(backup, n)) for n in old], done)
        _move_all([(os.path.join(tmp, n), os.path.join(out_dir, n)) for n in new], done)
    except BaseException:
        _undo(done)
        with contextlib.suppress(OSError):
            os.rmdir(backup)  # only when everything went back
        raise
    shutil.rmtree(backup, ignore_errors=True)


def swap_into(tmp, out_dir, names, *, files=RESULT_FILES, marker="metrics.json"):
    """Make the complete result in ``tmp`` (files ``names``) the content of ``out_dir``.

    An absent or empty ``out_dir`` becomes ``tmp`` by one rename; otherwise the earlier result
    files (those of ``files`` there) are swapped one by one (``marker`` out first, in last) and a
    failure moves everything back (see the module docstring).  Signals wait until the swap is over.
    """
    with signals_deferred():
        if not os.path.lexists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
            if os.path.isdir(out_dir):
                os.rmdir(out_dir)
            os.replace(tmp, out_dir)
            return
        _swap_files(tmp, out_dir, names, files, marker)
