"""``tare-dosimetry demo``: the built-in synthetic patient, end to end."""

from .common import (
    add_clinical_options,
    add_dose_options,
    add_export_options,
    add_metric_options,
    add_output_options,
    exports_from_args,
    params_from_args,
    params_record,
    progress_printer,
    write_and_report,
)

HELP = "run the built-in synthetic patient end to end"


def add_parser(sub):
    demo = sub.add_parser("demo", help=HELP,
                          description="A deterministic synthetic Y-90 Bremsstrahlung SPECT/CT (liver with two lobes, "
                          "three tumours, lungs with an 8 %% shunt), run end to end.")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic noise (default 0)")
    add_clinical_options(demo)
    add_dose_options(demo)
    add_metric_options(demo)
    add_output_options(demo)
    add_export_options(demo)
    return demo


def main(args):
    from ..reporting.resultfolder import reserve_output_dir

    with reserve_output_dir(args.out, args.overwrite):  # refuse before any work; one writer at a time
        return _demo(args)


def _demo(args):
    from ..imaging.phantom import demo_case_inputs, make_phantom
    from ..pipeline import run_case
    from ..reproduce import record_roles, record_rules_spec

    exports = exports_from_args(args)  # the demo's DICOM exports form a standalone study
    if not args.no_report or args.pdf:
        from ..reporting.figures import preload_matplotlib

        preload_matplotlib()  # the figures' import overlaps reading and computing the case
    progress = progress_printer(args.quiet)
    progress(0.0, "building the synthetic patient")
    case = make_phantom(analytic=False, seed=args.seed)
    params = params_from_args(args, base=case.params)
    record = params_record(args)
    rules = args.thresholds if args.thresholds or record is None else record_rules_spec(record)
    roles = record_roles(record) if record is not None and "demo_seed" in (record.get("inputs") or {}) else None
    result = run_case(case.activity, case.segmentation, params=params, ct=case.ct, rules=rules, roles=roles,
                      inputs=demo_case_inputs(case, args.seed),
                      progress=progress)
    return write_and_report(args, result, background=case.ct, segmentation=case.segmentation, exports=exports, progress=progress)
