"""Run a manifest of TARE dosimetry cases inside 3D Slicer, without the GUI.

Usage (everything after ``--`` goes to this script)::

    Slicer --no-splash --no-main-window \\
        --python-script /path/to/TAREDosimetry/TAREDosimetryScripts/TAREDosimetryBatch.py -- \\
        --manifest cases.csv --out results [--rules hcc-glass] [--params params.json] \\
        [--overwrite] [--rerun] [--no-report]

The manifest is the engine's format (see ``TAREDosimetryLib/batch/manifest.py``: columns case_id, spect or
pet, segmentation, ct, labels, roles, thresholds, quantitative and any DosimetryParams field).
Each case is loaded into the scene, run through the module's logic (the same code as the Apply
button), and the engine's outputs are written to ``OUT/<case_id>/``.  A failing case is
recorded and the batch goes on; the failures are listed at the end, a summary is written to
``OUT/batch_summary.csv`` (an earlier one is kept: the new one is then ``batch_summary-2.csv``), and
Slicer exits with status 1 when any case failed (0 otherwise).  As with ``tare-dosimetry batch``, a
rerun skips the cases whose result is complete and whose inputs and parameters are unchanged
(content hash); ``--rerun`` recomputes them.  Cases run one at a time in Slicer's process.

From Slicer's Python console the same is::

    from TAREDosimetryScripts import TAREDosimetryBatch
    summary = TAREDosimetryBatch.run_manifest("cases.csv", "results")

The script lives in a sub-folder of the module on purpose: Slicer registers every ``.py`` file directly
in a module folder as a scripted module (qSlicerAbstractModuleFactoryManager::registerModules) and
reports an error at start-up for a file without a module class of its name.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_DIR = os.path.dirname(HERE)  # holds TAREDosimetry.py and TAREDosimetryLib/
if MODULE_DIR not in sys.path:  # works also when the module is not on Slicer's module path
    sys.path.insert(0, MODULE_DIR)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="TAREDosimetryBatch.py",
        description="Run the TAREDosimetry Slicer logic on every case of a manifest CSV.",
    )
    parser.add_argument("--manifest", required=True, help="CSV manifest (engine format; paths relative to it)")
    parser.add_argument("--out", required=True, help="output folder; one sub-folder per case")
    parser.add_argument("--rules", default=None, help="threshold preset name or rule file (default: engine default preset)")
    parser.add_argument("--params", default=None, help="JSON file of DosimetryParams fields used as defaults for every case")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results whose inputs or parameters changed, and batch_summary.csv")
    parser.add_argument("--rerun", action="store_true", help="recompute every case, also unchanged ones")
    parser.add_argument("--no-report", action="store_true", help="skip report.html and dvh.png")
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    return parser.parse_args(args)


def _default_params(path):
    from TAREDosimetryLib.params import DosimetryParams

    if not path:
        return DosimetryParams()
    try:
        with open(path, encoding="utf-8") as fh:
            return DosimetryParams.from_dict(json.load(fh))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--params {path}: cannot be read ({exc})") from None


def run_manifest(manifest, out_dir, rules=None, defaults=None, overwrite=False, report=True, log=print, rerun=False):
    """Run every case of ``manifest`` through the Slicer logic; returns a list of summary dicts
    (case_id, status 'ok'/'failed'/'skipped', overall PASS/FAIL/INCOMPLETE, incomplete_reasons, warnings, error,
    out_dir, seconds).

    The loop, the per-case error handling and ``batch_summary.csv`` are the engine's
    (``TAREDosimetryLib.batch.run_manifest``); only running one case goes through MRML nodes here."""
    import slicer
    from TAREDosimetry import TAREDosimetryLogic
    from TAREDosimetryLib import batch
    from TAREDosimetryLib.batch.summary import final_report_lines
    from TAREDosimetryLib.errors import InputError

    logic = TAREDosimetryLogic()

    def runCase(case, params, caseRules, dest, caseOverwrite, caseReport):
        if case.get("dose"):  # a row that evaluates an external dose map: the command line's 'batch' does that
            raise InputError(f"case {case['case_id']}: 'dose' rows (external dose maps) are evaluated by "
                             "tare-dosimetry batch, not by this script")
        try:
            # Images (files or DICOM series folders) and segments are read by the engine's readers, as the
            # command line reads them; the nodes are removed after the case.
            return logic.runFromFiles(
                case["image"], case["segmentation"], ctPath=case["ct"], params=params, roles=case["roles"],
                rules=caseRules, outDir=dest, labelNames=case["labels"], report=caseReport, overwrite=caseOverwrite,
                caseName=case.get("case_id", ""),
            )
        finally:
            slicer.app.processEvents()

    summary = batch.run_manifest(manifest, out_dir, defaults=defaults, rules=rules, overwrite=overwrite, report=report,
                                 log=log, runner=runCase, rerun=rerun)
    for line in final_report_lines(summary, summary.path):
        log(line)
    return summary


def main(argv):
    args = parse_args(argv)
    try:
        summary = run_manifest(args.manifest, args.out, rules=args.rules, defaults=_default_params(args.params),
                               overwrite=args.overwrite, report=not args.no_report, rerun=args.rerun)
    except Exception as exc:  # a manifest that cannot be read at all
        print(f"TAREDosimetryBatch: {exc}", file=sys.stderr)
        return 2
    return 1 if any(e["status"] == "failed" for e in summary) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
