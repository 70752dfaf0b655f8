"""``tare-dosimetry evaluate``: the metrics, DVHs, rules and report of a dose map computed elsewhere."""

import argparse

from .common import (
    add_clinical_options,
    add_dicom_input_options,
    add_export_options,
    add_metric_options,
    add_output_options,
    dicom_options_from_args,
    exports_from_args,
    params_from_args,
    progress_printer,
    roles_from_args,
    write_and_report,
)

HELP = "evaluate a dose map from another tool (RT Dose, NRRD, MHD) on segments"

EXAMPLES = """examples:
  tare-dosimetry evaluate --dose simplicit90y_dose.dcm --segmentation rtstruct.dcm --ct ct_dicom/ --out eval1
  tare-dosimetry evaluate --dose gate-Dose.mhd --dose-unit Gy --dose-scale 2.1e9 --segmentation seg.seg.nrrd --out mc
"""


def add_parser(sub):
    p = sub.add_parser("evaluate", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
                       description="Dose-volume histograms, metrics, threshold rules, report and exports of a dose map "
                       "computed elsewhere (treatment planning, Simplicit90Y or MIM export, GATE/TOPAS Monte Carlo), "
                       "exactly as for a dose computed by 'run'.")
    g = p.add_argument_group("inputs")
    g.add_argument("--dose", required=True, metavar="PATH",
                   help="dose map: DICOM RT Dose (file or folder), NRRD, NIfTI, MHA/MHD")
    g.add_argument("--dose-unit", choices=("Gy", "cGy", "mGy"), default=None,
                   help="unit of the dose map's values (required when its header does not say; must agree when it does)")
    g.add_argument("--dose-scale", type=float, default=1.0, metavar="FACTOR",
                   help="multiply the dose map by FACTOR after the unit conversion (e.g. decays per simulated primary)")
    g.add_argument("--segmentation", required=True, metavar="PATH",
                   help="3D Slicer .seg.nrrd, label map, mask folder, DICOM SEG or RT Structure Set")
    g.add_argument("--ct", metavar="PATH", help="CT in HU (density map, RT Structure Set grid, report background)")
    g.add_argument("--labels", metavar="SPEC", help="names of a label map's values (as for run)")
    g.add_argument("--role", action="append", default=[], metavar="NAME=ROLE", help="set a segment's role (repeatable)")
    g.add_argument("--roles-json", metavar="FILE", help="JSON object {segment name: role}")
    g.add_argument("--density", type=float, metavar="G_ML", default=None,
                   help="constant tissue density in g/mL for masses (default 1.03; from the CT when given)")
    g.add_argument("--lung-density", type=float, metavar="G_ML", default=None, help="lung density without CT (default 0.30)")
    add_clinical_options(p)
    add_dicom_input_options(p)
    add_metric_options(p)
    add_output_options(p)
    add_export_options(p)
    return p


def main(args):
    from ..reporting.resultfolder import reserve_output_dir

    with reserve_output_dir(args.out, args.overwrite):  # refuse before any work; one writer at a time
        return _evaluate(args)


def _evaluate(args):
    from ..batch import evaluate_dose_files
    from ..evaluation.rules import select_rules

    params = params_from_args(args)
    roles = roles_from_args(args)
    select_rules(args.thresholds, params)  # a bad preset or rule file fails before the images are read
    exports_from_args(args)
    progress = progress_printer(args.quiet)
    result, inputs = evaluate_dose_files(
        args.dose, args.segmentation, ct=args.ct, labels=args.labels, roles=roles, params=params, rules=args.thresholds,
        dose_unit=args.dose_unit, dose_scale=args.dose_scale, progress=progress, dicom=dicom_options_from_args(args))
    return write_and_report(args, result, background=inputs["ct"] or inputs["dose"], segmentation=inputs["segmentation"],
                            exports=exports_from_args(args, inputs["sources"]), progress=progress)
