"""``tare-dosimetry run``: dosimetry of one case from image files."""

import argparse
import os

from ..errors import InputError

from ..params import REFERENCE_REGIONS
from .common import (
    EPILOG,
    add_clinical_options,
    add_dicom_input_options,
    add_dose_options,
    add_export_options,
    add_metric_options,
    add_output_options,
    params_from_args,
    params_record,
    dicom_options_from_args,
    exports_from_args,
    progress_printer,
    roles_from_args,
    same_input,
    write_and_report,
)

HELP = "dosimetry of one case"


def add_parser(sub):
    run = sub.add_parser("run", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Dosimetry of one case from image files.", epilog=EPILOG)
    g = run.add_argument_group("inputs")
    img = g.add_mutually_exclusive_group(required=True)
    img.add_argument("--spect", metavar="PATH", help="SPECT image (NIfTI, NRRD, MHA or a DICOM series folder)")
    img.add_argument("--pet", metavar="PATH", help="Y-90 PET image (implies --quantitative unless --relative)")
    g.add_argument("--segmentation", required=True, metavar="PATH",
                   help="3D Slicer .seg.nrrd, a label-map image, or a folder of binary mask images")
    g.add_argument("--ct", metavar="PATH", help="CT image in HU (density map, report background)")
    g.add_argument("--labels", metavar="SPEC",
                   help="names of a label map's values: JSON file, '5=liver,7=tumour', or 'totalsegmentator'")
    g.add_argument("--role", action="append", default=[], metavar="NAME=ROLE",
                   help="set a segment's role (repeatable); roles: liver, right_lobe, left_lobe, tumor, normal_liver, "
                   "perfused_normal, perfused, lung, other, ignore")
    g.add_argument("--roles-json", metavar="FILE", help="JSON object {segment name: role}")
    a = run.add_argument_group("activity")
    a.add_argument("--administered-activity-gbq", type=float, help="administered activity, GBq (relative calibration)")
    a.add_argument("--residual-fraction", type=float, help="fraction left in vial and catheter, [0, 1) (relative calibration: not given is "
                   "taken as 0 and the case is INCOMPLETE; 0 is an explicit choice)")
    a.add_argument("--lung-shunt-fraction", type=float,
                   help="lung shunt fraction LSF, [0, 1): required with relative calibration and lung rules of the LSF "
                   "model; 0 is an explicit choice (no shunt), recorded in the report")
    a.add_argument("--allow-unusual-activity", action="store_true",
                   help="run an administered activity outside 0.05-20 GBq (refused otherwise as a likely MBq/GBq slip)")
    a.add_argument("--reference-region", choices=REFERENCE_REGIONS,
                   help="region whose counts equal A_adm (1 - residual) (1 - LSF): liver (default), perfused, image")
    a.add_argument("--quantitative", action="store_true", help="absolute calibration: the image is in Bq/mL")
    a.add_argument("--relative", action="store_true", help="relative calibration even for --pet")
    a.add_argument("--hours-since-administration", type=float,
                   help="scan time minus administration time, h; required with absolute calibration (--pet) unless "
                   "--decay-corrected or a DICOM PET header gives it (this overrides the header; 0: scanned at administration)")
    a.add_argument("--decay-corrected", action="store_true", help="the Bq/mL image is already decay-corrected to administration (overrides a DICOM header)")
    a.add_argument("--allow-negative", action="store_true",
                   help="go on when negative voxels sum to more than 5 %% of the positive total (they are set to 0)")
    add_clinical_options(run)
    add_dicom_input_options(run)
    add_dose_options(run)
    add_metric_options(run)
    add_output_options(run, out_required=False)
    add_export_options(run)
    run.add_argument("--dry-run", action="store_true",
                     help="read and check the inputs, show the segments with their roles (guessed or given), volumes and "
                     "the rules that will apply; compute nothing, write nothing (--out not needed)")
    return run


def main(args):
    from ..reporting.resultfolder import reserve_output_dir

    if args.dry_run:
        return _dry_run(args)
    if args.out is None:
        raise InputError("--out is required: the folder for the results (or --dry-run to check the inputs only)")
    with reserve_output_dir(args.out, args.overwrite):  # refuse before any work; one writer at a time
        return _run(args)


def _dry_run(args):
    from ..imaging.caseinputs import read_case_inputs
    from ..preview import check_preview, format_preview, preview_case

    _refuse_same_file(args)
    params = params_from_args(args)
    progress = progress_printer(args.quiet)
    rules, roles, labels = _case_choices(args, progress)
    modality = "pet" if args.pet else "spect"
    case = read_case_inputs(args.spect or args.pet, args.segmentation, ct=args.ct, labels=labels, modality=modality,
                            params=params, dicom=dicom_options_from_args(args))
    preview = preview_case(case.activity, case.segmentation, params=case.params, roles=roles, ct=case.ct, rules=rules,
                           inputs=case.info, what="PET image" if args.pet else "SPECT image")
    preview["warnings"][0:0] = case.warnings
    print("\n".join(format_preview(preview)))
    check_preview(preview)
    return 0


def _same_file(a, b):
    """True when ``a`` and ``b`` are the same file (one DICOM folder may hold the image and its segments)."""
    try:
        return bool(a and b) and os.path.isfile(a) and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_same_file(args):
    if _same_file(args.spect or args.pet, args.segmentation):
        raise InputError(f"{'--pet' if args.pet else '--spect'} and --segmentation name the same file ({args.segmentation}): "
                         "give the activity image (SPECT/PET) and the segments separately")


def _case_choices(args, progress):
    """(rules, roles, labels) from the command line, completed from a --params metrics.json."""
    rules, roles, labels = args.thresholds, roles_from_args(args), args.labels
    record = params_record(args)
    if record is None:
        return rules, roles, labels
    from ..reproduce import record_labels, record_roles, record_rules, record_rules_spec  # the pipeline with it

    if rules is None and record_rules(record):
        rules = record_rules_spec(record)  # None: chosen again from the clinical inputs, as the first run did
        progress(0.0, f"rule set {record_rules(record).get('name', '')!r} from {args.params}")
    if same_input(record, "segmentation", args.segmentation):
        roles = dict(record_roles(record), **roles)
        labels = labels if labels is not None else record_labels(record)
        progress(0.0, f"segment roles and label table from {args.params}")
    return rules, roles, labels


def _run(args):
    from ..imaging import prefetch

    exports_from_args(args)  # refuse --send without an export before any work
    _refuse_same_file(args)
    params = params_from_args(args)
    # The files are read in the background while the stages are imported (in the order read_case_inputs
    # reads them).  A mistake found before they are read is still reported at once.
    prefetch.start_reading([args.spect or args.pet, args.ct, args.segmentation])
    try:
        from ..evaluation.rules import select_rules

        progress = progress_printer(args.quiet)
        rules, roles, labels = _case_choices(args, progress)
        select_rules(rules, params)  # a bad preset or rule file fails before the images are used
        return _run_case(args, params, progress, (rules, roles, labels))
    finally:
        prefetch.cancel()  # reads not taken (a case that stopped early) are forgotten


def _run_case(args, params, progress, choices):
    from ..batch import run_case_files

    if not args.no_report or args.pdf:
        from ..reporting.figures import preload_matplotlib

        preload_matplotlib()  # the figures' import overlaps reading and computing the case
    rules, roles, labels = choices
    image = args.spect or args.pet
    result, inputs = run_case_files(
        image, args.segmentation, ct=args.ct, labels=labels, roles=roles, params=params, rules=rules,
        modality="pet" if args.pet else "spect", progress=progress, dicom=dicom_options_from_args(args),
    )
    return write_and_report(args, result, background=inputs["ct"] or inputs["activity"], segmentation=inputs["segmentation"],
                            exports=exports_from_args(args, inputs["sources"]), progress=progress)
