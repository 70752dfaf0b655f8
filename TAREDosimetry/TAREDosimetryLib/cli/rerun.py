"""``tare-dosimetry rerun``: compute a result again from its metrics.json and say whether it reproduces."""

import json

from .common import print_result, progress_printer

HELP = "compute a result again from its metrics.json (same inputs, parameters, rules, roles) and compare"

#: Exit status when the rerun does not reproduce the recorded metrics.json.
NOT_REPRODUCED = 4


def add_parser(sub):
    p = sub.add_parser(
        "rerun", help=HELP,
        description="Read RESULT_FOLDER/metrics.json, check that its input files are unchanged (SHA-256), run the case "
        "again with the recorded parameters, rule set, segment roles and label table, and compare the new metrics.json "
        "with the recorded one (timings and dates apart). Exit 0 when identical, 4 when not, 2 when an input is missing "
        "or changed.",
    )
    p.add_argument("result", metavar="RESULT_FOLDER", help="folder of an earlier result (or its metrics.json)")
    p.add_argument("--out", metavar="DIR", default=None, help="also write the new result there (default: compare only)")
    p.add_argument("--overwrite", action="store_true", help="replace our result files in a non-empty --out folder")
    p.add_argument("--no-report", action="store_true", help="with --out: skip dvh.png and report.html")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(args):
    from ..reporting.resultfolder import reserve_output_dir
    from ..reproduce import read_record

    record = read_record(args.result)
    if args.out is None:
        return _rerun(args, record)
    with reserve_output_dir(args.out, args.overwrite):
        return _rerun(args, record)


def _rerun(args, record):
    from ..reporting.outputs import write_outputs
    from ..reproduce import compare_records, read_record, rerun_record

    progress = progress_printer(args.quiet)
    result, inputs = rerun_record(record, progress=progress)
    if args.out is not None:
        files = write_outputs(result, args.out, overwrite=args.overwrite, report=not args.no_report,
                              background=inputs["ct"] or inputs["activity"], segmentation=inputs["segmentation"], progress=progress)
        print_result(result, files, args.out)
        new = read_record(args.out)
    else:
        new = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    differences = compare_records(record, new)
    if not differences:
        print(f"reproduced: the metrics.json of {args.result} is identical apart from timings and dates")
        return 0
    print(f"NOT reproduced: the metrics.json of {args.result} differs in {len(differences)}"
          f"{'+' if len(differences) >= 20 else ''} place(s):")
    for line in differences:
        print(f"  {line}")
    return NOT_REPRODUCED
