"""``tare-dosimetry``: Y-90 radioembolization dosimetry from the command line.

One module per command (:data:`COMMANDS`), each with ``add_parser(subparsers)`` and
``main(args) -> exit status``; options shared by several commands are in :mod:`.common`.

Exit status: 0 success; 2 bad input (one-line message naming the file or option);
1 unexpected error (message, and the traceback with --debug); 3 in ``batch`` when some
cases failed (the others are written).
"""

import argparse
import importlib
import sys

from ..errors import TAREDosimetryError
from ..version import __version__
from .common import EPILOG

__all__ = ["main", "build_parser", "COMMANDS"]

#: Command name -> module of this package (in the order ``--help`` lists them).
COMMANDS = {"run": "run", "plan": "plan", "compare": "compare", "demo": "demo", "batch": "batch", "presets": "presets"}


def _command_module(name):
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tare-dosimetry",
        description="Y-90 radioembolization (TARE/SIRT) dosimetry: dose map, DVH, per-segment metrics and PASS/FAIL "
        "against dose thresholds, from a SPECT or PET image and segments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        _command_module(name).add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    handler = _command_module(args.command).main
    debug = getattr(args, "debug", False)
    try:
        return handler(args)
    except TAREDosimetryError as exc:
        if debug:
            raise
        print(f"tare-dosimetry: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tare-dosimetry: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: one line unless --debug
        if debug:
            raise
        print(f"tare-dosimetry: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
