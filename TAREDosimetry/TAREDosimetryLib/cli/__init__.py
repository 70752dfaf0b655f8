"""``tare-dosimetry``: Y-90 radioembolization dosimetry from the command line.

One module per command (:data:`COMMANDS`), each with ``add_parser(subparsers)`` and
``main(args) -> exit status``; options shared by several commands are in :mod:`.common`.

Exit status: 0 success; 2 bad input (one-line message naming the file or option);
1 unexpected error (message, and the traceback with --debug); 3 in ``batch`` when some
cases failed (the others are written); 4 in ``rerun`` when the result was not reproduced; 128 + the signal number when stopped by Ctrl-C (130),
SIGTERM (143) or SIGHUP (129): nothing half-written is left behind.
"""

from . import startup  # noqa: F401 - first: it sets the environment NumPy's BLAS reads when it loads

import argparse
import contextlib
import importlib
import os
import signal
import sys

from ..errors import TAREDosimetryError
from ..version import __version__
from .common import EPILOG

__all__ = ["main", "build_parser", "COMMANDS"]

#: Command name -> module of this package (in the order ``--help`` lists them).
COMMANDS = {
    "run": "run", "plan": "plan", "compare": "compare", "evaluate": "evaluate", "demo": "demo", "batch": "batch",
    "cohort": "cohort", "rerun": "rerun", "presets": "presets", "dicom-ls": "dicomls",
}


def _command_module(name):
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser(commands=None):
    """The argument parser of ``tare-dosimetry`` with the subcommands ``commands`` (default: all)."""
    parser = argparse.ArgumentParser(
        prog="tare-dosimetry",
        description="Y-90 radioembolization (TARE/SIRT) dosimetry: dose map, DVH, per-segment metrics and PASS/FAIL "
        "against dose thresholds, from a SPECT or PET image and segments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands or COMMANDS:
        _command_module(name).add_parser(sub)
    return parser


def _named_command(argv):
    """The command named first on the command line, or None (then every command is parsed, for the
    overall help and the 'invalid choice' message): a command's parser alone is built without
    importing the other commands' modules (cohort statistics, DICOM networking, planning)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return args[0] if args and args[0] in COMMANDS else None


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGTERM, SIGHUP), handled as Ctrl-C is."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def _stop_signals_as_interrupts():
    """SIGTERM and SIGHUP raise :class:`Interrupted` while the command runs (main thread only), so
    that they unwind like Ctrl-C: partial folders removed, locks released."""
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, _raise_interrupted)
        except (ValueError, OSError):  # not the main thread: leave the signals alone
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted_status(exc):
    signum = getattr(exc, "signum", int(getattr(signal, "SIGINT", 2)))
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    print(f"tare-dosimetry: interrupted ({name}); nothing half-written was left", file=sys.stderr)
    return 128 + int(signum)


class _ClosedPipeGuard:
    """``sys.stdout`` that goes quiet once its reader has gone (``tare-dosimetry presets | head``):
    the rest of the output is dropped and the command ends normally, instead of an "internal
    error: BrokenPipeError" (and a batch cut short because a pager was closed).  The standard
    output is then pointed at the null device, so that nothing fails when Python flushes it at exit."""

    def __init__(self, stream):
        self._stream = stream
        self.reader_gone = False

    def write(self, text):
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self):
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self):
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture): nothing to point
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _quiet_when_the_reader_goes():
    guard = _ClosedPipeGuard(sys.stdout)
    sys.stdout = guard
    try:
        yield guard
    finally:
        if sys.stdout is guard:
            sys.stdout = guard._stream


def main(argv=None):
    with _quiet_when_the_reader_goes():
        return _main(argv)


def _main(argv):
    named = _named_command(argv)
    parser = build_parser([named] if named else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    handler = _command_module(args.command).main
    debug = getattr(args, "debug", False)
    try:
        with _stop_signals_as_interrupts():
            return handler(args)
    except TAREDosimetryError as exc:
        if debug:
            raise
        print(f"tare-dosimetry: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return _interrupted_status(exc)
    except Exception as exc:  # unexpected: one line unless --debug
        if debug:
            raise
        print(f"tare-dosimetry: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
