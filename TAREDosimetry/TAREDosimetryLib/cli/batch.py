"""``tare-dosimetry batch``: every case of a manifest CSV; failing cases do not stop the others."""

import os
import sys

from .common import (
    add_clinical_options,
    add_dicom_input_options,
    add_dose_options,
    add_export_options,
    add_metric_options,
    add_output_options,
    dicom_options_from_args,
    exports_from_args,
    make_sender,
    params_from_args,
)

HELP = "run a manifest (CSV) of cases"


def add_parser(sub):
    batch = sub.add_parser("batch", help=HELP,
                           description="Run every case of a manifest CSV (see the README); failing cases are listed "
                           "at the end and do not stop the others. A row with a 'dose' column evaluates an external "
                           "dose map; a 'series' column (UIDs separated by ';') chooses DICOM series.")
    batch.add_argument("--manifest", required=True, metavar="CSV")
    add_clinical_options(batch)
    add_dicom_input_options(batch)
    add_dose_options(batch)
    add_metric_options(batch)
    add_output_options(batch)
    add_export_options(batch)
    return batch


def main(args):
    from ..batch import run_manifest

    params = params_from_args(args)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    exports = exports_from_args(args)  # refuses --send without an export, and malformed destinations
    summary = run_manifest(args.manifest, args.out, defaults=params, rules=args.thresholds, overwrite=args.overwrite,
                           report=not args.no_report, log=log, debug=args.debug, exports=exports, pdf=args.pdf,
                           dicom=dicom_options_from_args(args), send=make_sender(args, echo=log))
    ok = [s for s in summary if s["status"] == "ok"]
    failed = [s for s in summary if s["status"] != "ok"]
    print(f"{len(ok)}/{len(summary)} cases done; summary in {os.path.join(args.out, 'batch_summary.csv')}")
    for s in failed:
        print(f"FAILED {s['case_id']}: {s['error'].splitlines()[0] if s['error'] else ''}")
    return 0 if not failed else 3
