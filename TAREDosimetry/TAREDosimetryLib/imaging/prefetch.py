"""Reading a case's image files in the background while the program is still starting.

A command that will read an image file (a SPECT, a CT, a .seg.nrrd) can hand the paths to
:func:`start_reading` as soon as it knows them: one background thread reads them with SimpleITK,
one after the other in the order given, while the main thread imports the rest of the engine.
SimpleITK lets go of Python's interpreter lock while it reads, so the two overlap on a second core
(the 42-Mvoxel .seg.nrrd of the shared MAA case takes 0.2 s to inflate; the engine's own imports
take 0.05-0.1 s).  :func:`~.images.read_sitk_image` then :func:`take` s the image instead of
reading the file again.

Nothing about the result changes: the same reader reads the same file.  The file is identified by
its real path, size, modification time and inode, taken before the read and checked again at
:func:`take`; a file changed in between is read again.  The background thread checks the file as
the main thread would (:func:`~.filecheck.check_image_file_complete`: a truncated or damaged file
never reaches ITK, whose readers may print to the console); a file that fails the check, or a read
that fails, is simply done again in the main thread, which reports the problem in the engine's
words (the background error is discarded).  ITK's raw warnings are kept off the console
while background reads are pending, as :func:`~.dicomseries.quiet_itk` does for the main reads.

The reading thread is not a daemon: a process never tears down while ITK is still reading (that
crashes it), so a command that stops early (a bad option found after the read started) prints its
message at once and exits when the read is over.

Only plain image files are read ahead (none when an input is a DICOM series), by one thread, and
not at all when the case may use a single thread (``TARE_DOSIMETRY_THREADS=1``, :func:`~TAREDosimetryLib.threads.cpu_threads`).
"""

import os
import threading

from ..threads import cpu_threads

__all__ = ["start_reading", "take", "cancel", "pending"]

_LOCK = threading.Lock()
#: file identity -> _Read, for the reads started and not yet taken.
_READS = {}
#: SimpleITK's global warning display before the first pending read (restored when none is left).
_WARNINGS = []
#: The reading threads started (joined once nothing is pending).
_THREADS = []


def _identity(path):
    """(real path, size, modification time in ns, inode) of a regular file, or None."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    if not os.path.isfile(path):
        return None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


class _Read:
    """One file read in the background: the image, or None when the read failed."""

    def __init__(self, path):
        self.path = str(path)
        self.image = None
        self.done = threading.Event()

    def run(self, sitk):
        from .filecheck import check_image_file_complete

        try:  # a damaged file is not given to ITK (whose readers may print to the console)
            check_image_file_complete(self.path)
            self.image = sitk.ReadImage(self.path)
        except Exception:  # noqa: BLE001 - read again in the main thread, which reports it in its own words
            self.image = None
        finally:
            self.done.set()


def _readable(path):
    """True for a file SimpleITK reads directly (not a DICOM file or folder: those are read by series)."""
    from .images import IMAGE_SUFFIXES

    return str(path).lower().endswith(IMAGE_SUFFIXES)


def start_reading(paths):
    """Start reading the image files ``paths`` (None entries ignored) in one background thread, in
    the given order; returns the number of files it will read.  Nothing is read ahead when one of
    them is a DICOM file or folder or is missing: the main thread reads everything then, so that
    ITK never reads two files at once and a missing file is reported as usual."""
    paths = [p for p in paths if p]
    if cpu_threads() < 2 or not paths:
        return 0
    idents = [_identity(p) for p in paths]
    if any(i is None for i in idents) or not all(_readable(p) for p in paths):
        return 0  # a DICOM series (or a missing file) is read in the main thread, and then everything is
    wanted = {}
    for ident, path in zip(idents, paths):
        if ident not in _READS and ident not in wanted:
            wanted[ident] = _Read(path)
    if not wanted:
        return 0
    import SimpleITK as sitk

    with _LOCK:
        if not _READS:
            _WARNINGS[:] = [sitk.ProcessObject.GetGlobalWarningDisplay()]
            sitk.ProcessObject.SetGlobalWarningDisplay(False)
        _READS.update(wanted)
    reads = list(wanted.values())

    def read_all():
        for r in reads:
            r.run(sitk)

    # Not a daemon thread: the interpreter waits for it before it finalizes (a thread still inside
    # ITK while the process tears down crashes it), so a command that stops early exits when the
    # read it started is over.
    thread = threading.Thread(target=read_all, name="read images ahead", daemon=False)
    _THREADS.append(thread)
    thread.start()
    return len(reads)


def _restore_warnings():
    """SimpleITK's warning display as it was before the reads (call with _LOCK held, none pending)."""
    if _WARNINGS:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalWarningDisplay(_WARNINGS.pop())


def take(path):
    """The SimpleITK image read in the background from ``path`` (waiting for it), or None: no read
    was started for this file, it failed, or the file changed since it was started."""
    if not _READS:
        return None
    ident = _identity(path)
    with _LOCK:
        read = _READS.pop(ident, None) if ident is not None else None
    if read is None:
        return None
    read.done.wait()
    with _LOCK:
        last = not _READS
        if last:
            _restore_warnings()
    if last:
        _join()
    return read.image if _identity(path) == ident else None


def _join():
    """Wait for the reading threads to end (their reads are over: only their exit is left)."""
    while _THREADS:
        _THREADS.pop().join()


def cancel():
    """Forget the reads not taken (a command that stopped early).  Their thread ends on its own when
    its read is over; the interpreter waits for it before exiting."""
    with _LOCK:
        _READS.clear()
        _restore_warnings()


def pending():
    """The number of reads started and not taken."""
    return len(_READS)
