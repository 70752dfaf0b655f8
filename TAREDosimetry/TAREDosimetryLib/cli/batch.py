"""``tare-dosimetry batch``: every case of a manifest CSV, in this process, on local worker processes
or on a Dask cluster; resumable; failing cases do not stop the others."""

import argparse
import signal
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

DESCRIPTION = """Run every case of a manifest CSV (see the README): results in OUT/<case_id>/, a summary in
OUT/batch_summary.csv (status, PASS/FAIL, warnings, errors, time and peak memory of every case).

Resume: run the same command again. Cases whose result is complete and whose inputs (by content),
parameters and rules are unchanged are skipped; failed and interrupted cases run again. --rerun
recomputes every case. An earlier batch_summary.csv is kept (the new summary is
batch_summary-2.csv, ...) unless --overwrite, which also replaces results whose inputs changed.

Parallel: --workers N runs N cases at a time in local worker processes (a worker that dies has its
case retried, then recorded as failed). --dask --workers N runs them on an embedded Dask
LocalCluster; --scheduler tcp://HOST:8786 on a running Dask cluster (inputs and OUT on storage every
worker sees under the same paths).

DICOM: a row with a 'dose' column evaluates an external dose map; a 'series' column (UIDs separated
by ';') chooses DICOM series; --rtdose/--dicom-seg/--dicom-sr/--pdf write the exports of every case
and --send sends them (a case skipped as unchanged is not sent again; --rerun does)."""


def add_parser(sub):
    batch = sub.add_parser("batch", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("--manifest", required=True, metavar="CSV")
    g = batch.add_argument_group("parallel and distributed runs")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run N cases at a time in local worker processes (default: one case at a time in this process)")
    g.add_argument("--dask", action="store_true",
                   help="run on an embedded Dask LocalCluster of --workers processes (needs dask[distributed])")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on the Dask cluster of this scheduler (needs dask[distributed]; shared storage)")
    g.add_argument("--retries", type=int, default=1, metavar="K",
                   help="run a case again up to K times when its worker process dies (default 1)")
    g.add_argument("--max-memory-gb", type=float, default=None, metavar="GB",
                   help="memory limit of each worker: a case above it is stopped and recorded as failed")
    g.add_argument("--threads-per-case", type=int, default=None, metavar="N",
                   help="CPU threads one case may use (default: the cores divided by --workers)")
    g.add_argument("--rerun", action="store_true",
                   help="recompute every case, also those whose result is complete and unchanged")
    add_clinical_options(batch)
    add_dicom_input_options(batch)
    add_dose_options(batch)
    add_metric_options(batch)
    add_output_options(batch)
    add_export_options(batch)
    return batch


def main(args):
    from ..batch import BatchInterrupted, run_manifest
    from ..batch.summary import final_report_lines

    params = params_from_args(args)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    exports = exports_from_args(args)  # refuses --send without an export, and malformed destinations
    try:  # SIGTERM and SIGHUP arrive as interrupts (cli.main): the batch ends as on Ctrl-C
        summary = run_manifest(
            args.manifest, args.out, defaults=params, rules=args.thresholds, overwrite=args.overwrite,
            report=not args.no_report, log=log, debug=args.debug, workers=args.workers, dask=args.dask,
            scheduler=args.scheduler, rerun=args.rerun, retries=args.retries, max_memory_gb=args.max_memory_gb,
            threads_per_case=args.threads_per_case, exports=exports, pdf=args.pdf, dicom=dicom_options_from_args(args),
            send=make_sender(args, echo=log),
        )
    except BatchInterrupted as exc:
        for line in final_report_lines(exc.summary, exc.summary.path):
            print(line)
        print(f"tare-dosimetry: interrupted ({_signal_name(exc.signum)}); the summary lists the finished cases: "
              f"{exc.summary.path}", file=sys.stderr)
        return 128 + exc.signum
    for line in final_report_lines(summary, summary.path):
        print(line)
    return 3 if any(e["status"] == "failed" for e in summary) else 0


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
