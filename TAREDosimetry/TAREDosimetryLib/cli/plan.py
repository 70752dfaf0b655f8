"""``tare-dosimetry plan``: the activity to order, from an MAA SPECT/CT or from typed-in volumes."""

import argparse

from ..params import DOSE_METHODS, DEVICES, INDICATIONS, REFERENCE_REGIONS, SAMPLINGS
from .common import add_clinical_options, add_output_options, params_from_args, progress_printer, roles_from_args

HELP = "pre-treatment plan: the activity to order (MIRD, partition, BSA, voxel models)"
EXAMPLES = """examples:
  tare-dosimetry plan --spect maa_spect.nrrd --segmentation seg.seg.nrrd --device glass --lung-shunt-fraction 0.06 --out plan1
  tare-dosimetry plan --spect maa.nrrd --segmentation seg.seg.nrrd --device resin --target "tumor d70_gy>=100" --out plan2
  tare-dosimetry plan --liver-volume-ml 1500 --tumor-volume-ml 200 --tn-ratio 4 --lung-shunt-fraction 0.08 \\
      --device resin --height-cm 175 --weight-kg 80 --target-gy 120 --out plan3
  tare-dosimetry plan --liver-volume-ml 1600 --lung-shunt-fraction 0.06 --device glass \\
      --territory "right lobe: perfused_ml=1000, tumor_ml=150, tn=3" --territory "segment 4: perfused_ml=150, target_gy=400" --out plan4
  tare-dosimetry plan --spect maa.nrrd --segmentation seg.seg.nrrd --device glass --lung-shunt-fraction 0.06 \\
      --territory "right lobe" --territory "segment 4: lsf=0.03, target_gy=400" --out plan5
"""


def _inputs_group(p):
    g = p.add_argument_group("from images (MAA SPECT/CT)")
    g.add_argument("--spect", metavar="PATH", help="MAA SPECT (relative counts)")
    g.add_argument("--segmentation", metavar="PATH", help="segments (.seg.nrrd, label map, mask folder), as for run")
    g.add_argument("--ct", metavar="PATH", help="CT in HU (density, lung mass)")
    g.add_argument("--labels", metavar="SPEC", help="names of a label map's values")
    g.add_argument("--role", action="append", default=[], metavar="NAME=ROLE", help="set a segment's role (repeatable)")
    g.add_argument("--roles-json", metavar="FILE", help="JSON object {segment name: role}")
    g.add_argument("--reference-region", choices=REFERENCE_REGIONS, help="counts standing for the liver activity (default liver)")
    g.add_argument("--lsf-from", choices=("given", "images"), default=None,
                   help="LSF from --lung-shunt-fraction (given) or from the lung and liver segments' counts (images)")
    g.add_argument("--planar-lsf", metavar="LUNG_ANT,LUNG_POST,LIVER_ANT,LIVER_POST",
                   help="LSF from planar anterior/posterior ROI counts (geometric mean; overestimates the shunt)")
    g.add_argument("--method", choices=DOSE_METHODS, default=None, help="voxel model dose: ldm (default) or dvk")
    g.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="how the dose is measured on the segments: overlap (default, exact partial-voxel weighting), nearest or linear")
    g.add_argument("--compute-device", dest="device", choices=DEVICES, default=None, help="array backend for DVK")
    c = p.add_argument_group("calculator mode (no images)")
    c.add_argument("--liver-volume-ml", type=float, help="whole liver volume, tumours included (mL)")
    c.add_argument("--perfused-volume-ml", type=float, help="perfused (treated) volume, mL (default: the liver)")
    c.add_argument("--tumor-volume-ml", type=float, help="tumour volume inside the perfused volume, mL")
    c.add_argument("--tn-ratio", type=float, help="tumour-to-normal ratio of MAA concentration")


def _common_group(p):
    g = p.add_argument_group("patient, device and activity")
    g.add_argument("--device", "--microsphere", dest="microsphere", choices=("glass", "resin"), required=True,
                   help="microsphere type (recorded as the case's microsphere; selects the default preset)")
    g.add_argument("--indication", choices=INDICATIONS, default=None,
                   help="tumour type; selects the default preset (not given: the HCC preset, stated in the plan)")
    g.add_argument("--lung-shunt-fraction", type=float, help="LSF in [0, 1) (required unless --lsf-from images or --planar-lsf)")
    g.add_argument("--residual-fraction", type=float, help="fraction left in vial and catheter (not given: taken as 0, said in the plan)")
    g.add_argument("--lung-mass-g", type=float, default=None, help="lung mass without lung segments (not given: the conventional 1000 g)")
    g.add_argument("--density", type=float, metavar="G_ML", default=None, help="tissue density g/mL (default 1.03)")
    g.add_argument("--k", dest="k_gy_kg_per_gbq", type=float, default=None, help="Gy kg/GBq (default 49.67; TheraSphere IFU: 50)")
    g.add_argument("--half-life-h", type=float, default=None, help="Y-90 half-life, h (default 64.05)")
    g.add_argument("--prior-lung-dose-gy", type=float, default=None, help="lung dose of earlier treatments")
    g.add_argument("--height-cm", type=float, help="patient height (BSA method)")
    g.add_argument("--weight-kg", type=float, help="patient weight (BSA method)")
    g.add_argument("--vial-calibration", metavar="TIME", help="glass vial calibration date/time (ISO, e.g. 2026-03-01T12:00)")
    g.add_argument("--params", metavar="JSON", default=None, help="start from the parameters of a JSON file")
    r = p.add_argument_group("models, targets and limits")
    r.add_argument("--model", default="all", help="mird, partition, bsa, voxel, or all (default: all the inputs allow); comma-separated")
    r.add_argument("--strategy", choices=("target", "max-safe"), default="target",
                   help="target: least activity reaching the targets (default); max-safe: largest activity within the limits")
    r.add_argument("--thresholds", metavar="PRESET|FILE", default=None,
                   help="preset or JSON/TOML rule file giving the default targets and limits (its rules that apply to the clinical inputs)")
    r.add_argument("--target-gy", type=float, help="MIRD: mean dose to the perfused volume, Gy")
    r.add_argument("--tumor-target-gy", type=float, help="tumour mean dose target, Gy")
    r.add_argument("--normal-liver-limit-gy", type=float, help="normal liver mean dose limit, Gy")
    r.add_argument("--lung-limit-gy", type=float, help="lung mean dose limit, Gy")
    r.add_argument("--target", action="append", default=[], metavar="RULE",
                   help="extra target or limit, e.g. \"tumor d70_gy>=100\", \"normal_liver mean_gy<40\" (repeatable)")
    r.add_argument("--territory", action="append", default=[], metavar="NAME[: KEY=VALUE,...]",
                   help="multi-compartment plan: one perfused territory per option, each its own injection and activity "
                   "(from images: a segment name, optional 'lsf=0.05, target_gy=400'; calculator mode: 'right lobe: perfused_ml=1000, "
                   "tumor_ml=150, tn=3, lsf=0.05' or 'segment 4: perfused_ml=150, target_gy=400'); two or more")
    r.add_argument("--what-if-gbq", metavar="A,B,...", help="activities of the what-if table (default: the plan's -30 %% to +30 %%)")


def add_parser(sub):
    p = sub.add_parser("plan", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
                       description="Pre-treatment planning: the administered activity that reaches the dose targets within the "
                       "limits, by every model the inputs allow, and the recommended one.")
    _inputs_group(p)
    _common_group(p)
    add_clinical_options(p, choose_preset=False)
    add_output_options(p)
    return p


def _floats(option, text, n=None):
    from ..errors import InputError

    try:
        vals = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} expects numbers separated by commas, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise InputError(f"{option} expects {n} numbers separated by commas, got {text!r}")
    return vals


def _which_models(text):
    from ..planning.plan import MODEL_NAMES

    return MODEL_NAMES if text.strip().lower() == "all" else tuple(t.strip().lower() for t in text.split(",") if t.strip())


def _prescription(args, params):
    from ..planning.prescription import build_prescription

    return build_prescription(args.microsphere, args.indication, preset=args.thresholds, target_gy=args.target_gy,
                              tumor_target_gy=args.tumor_target_gy, normal_liver_limit_gy=args.normal_liver_limit_gy,
                              lung_limit_gy=args.lung_limit_gy, extra_rules=args.target, clinical=params.clinical_inputs())


def _lsf_estimate(args):
    from ..planning.lsf import lsf_planar

    if args.planar_lsf:
        return lsf_planar(*_floats("--planar-lsf", args.planar_lsf, 4))
    return None


def _image_inputs(args, params, prescription, progress):
    from ..planning.imageplan import maa_inputs_record, read_maa_inputs, voxel_model_from_images

    case_in = read_maa_inputs(args.spect, args.segmentation, ct=args.ct, labels=args.labels, params=params, progress=progress)
    progress(0.1, "MAA case at 1 GBq (voxel model)")
    model, inputs, p = voxel_model_from_images(
        None, None, case_in.params, roles=roles_from_args(args), rules=prescription.case_rules, lsf_source=args.lsf_from or "given",
        lsf=_lsf_estimate(args), height_cm=args.height_cm, weight_kg=args.weight_kg,
        inputs=maa_inputs_record(case_in.info, params.phase is not None), case_inputs=case_in)
    return model, inputs, p, {"background": case_in.ct or case_in.activity, "segmentation": case_in.segmentation}


def _calculator_inputs(args, params):
    from ..errors import InputError
    from ..planning.inputs import calculator_inputs

    if args.liver_volume_ml is None:
        raise InputError("give the MAA images (--spect and --segmentation) or, in calculator mode, --liver-volume-ml")
    lsf = _lsf_estimate(args)
    inputs = calculator_inputs(
        args.liver_volume_ml, perfused_volume_ml=args.perfused_volume_ml, tumor_volume_ml=args.tumor_volume_ml, tn_ratio=args.tn_ratio,
        lung_shunt_fraction=lsf.value if lsf else args.lung_shunt_fraction, lung_mass_g=args.lung_mass_g,
        density_g_ml=params.tissue_density_g_ml, height_cm=args.height_cm, weight_kg=args.weight_kg)
    if lsf:
        inputs.lsf = lsf
    return inputs


def _territory_plan(args, params, prescription, progress):
    """(Plan, combined CaseResult or None, extras) of a multi-territory plan."""
    from ..planning.territories import parse_territory
    from ..planning.territoryplan import make_territory_plan

    specs = [parse_territory(t) for t in args.territory]
    what_if = _floats("--what-if-gbq", args.what_if_gbq) if args.what_if_gbq else None
    if not args.spect:
        from ..planning.territorymodels import calculator_territories

        inputs = _calculator_inputs(args, params)
        plan = make_territory_plan(inputs, params, prescription, calculator_territories(specs, inputs, params), device=args.microsphere,
                                   strategy=args.strategy, what_if_gbq=what_if, vial_calibration=args.vial_calibration)
        return plan, None, {}
    return _image_territory_plan(args, params, prescription, specs, what_if, progress)


def _image_territory_plan(args, params, prescription, specs, what_if, progress):
    from ..errors import InputError
    from ..planning.imageplan import case_lsf, maa_inputs_record, read_maa_inputs
    from ..planning.inputs import inputs_from_case
    from ..planning.territorymodels import combined_case, image_territories
    from ..planning.territoryplan import make_territory_plan

    case_in = read_maa_inputs(args.spect, args.segmentation, ct=args.ct, labels=args.labels, params=params, progress=progress)
    spect, seg, ct, params = case_in.activity, case_in.segmentation, case_in.ct, case_in.params
    roles = roles_from_args(args)
    lsf = _lsf_estimate(args)
    if lsf is None and (args.lsf_from == "images" or args.lung_shunt_fraction is not None):
        lsf = case_lsf(spect, seg, roles, params, args.lsf_from or "given")
    territories, bases = image_territories(spect, seg, params, specs, roles=roles, ct=ct, rules=prescription.case_rules,
                                           lsf_default=lsf.value if lsf else None, progress=lambda f, m: progress(0.1 + 0.5 * f, m))
    plan = make_territory_plan(None, params, prescription, territories, device=args.microsphere, strategy=args.strategy,
                               what_if_gbq=what_if, vial_calibration=args.vial_calibration)
    progress(0.7, "all territories together at the planned activities")
    case = combined_case(spect, seg, params, bases, plan.recommended["activities_gbq"], roles=roles, ct=ct,
                         rules=plan.prescription.case_rules, inputs=maa_inputs_record(case_in.info, params.phase is not None),
                         assumptions=prescription.assumptions)
    case.warnings[0:0] = case_in.warnings
    try:
        plan.inputs = inputs_from_case(case, lsf or _weighted_lsf(plan), height_cm=args.height_cm, weight_kg=args.weight_kg)
    except InputError as exc:
        plan.warnings.append(f"inputs not measured: {exc}")
    return plan, case, {"background": ct or spect, "segmentation": seg}


def _weighted_lsf(plan):
    from ..planning.lsf import LsfEstimate

    t = plan.territories
    total = t["total_activity_gbq"]
    value = sum(e["activity_gbq"] * e["lung_shunt_fraction"] for e in t["territories"].values()) / total if total else 0.0
    return LsfEstimate(value, "activity-weighted mean of the territories' LSF")


def main(args):
    from ..planning.outputs import PLAN_FILES
    from ..reporting.resultfolder import reserve_output_dir

    with reserve_output_dir(args.out, args.overwrite, files=PLAN_FILES, marker="plan.json"):  # refuse before any work
        return _plan(args)


def _plan(args):
    from ..errors import InputError
    from ..planning.outputs import write_plan_folder
    from ..planning.vials import glass_vial_schedule

    progress = progress_printer(args.quiet)
    params = params_from_args(args)
    prescription = _prescription(args, params)
    if bool(args.spect) != bool(args.segmentation):
        raise InputError("planning from images needs both --spect and --segmentation")
    if args.territory:
        plan, case, extras = _territory_plan(args, params, prescription, progress)
    else:
        plan, case, extras = _single_plan(args, params, prescription, progress)
        if args.microsphere == "glass":
            plan.vials = glass_vial_schedule(plan.recommended["activity_gbq"], params.residual_fraction_used, args.vial_calibration,
                                             half_life_h=params.half_life_h)
    progress(0.8, "writing the plan")
    files = write_plan_folder(plan, args.out, case=case, overwrite=args.overwrite, report=not args.no_report, **extras)
    _print_plan(plan, files, args.out)
    return 0


def _single_plan(args, params, prescription, progress):
    from ..planning.plan import make_plan

    model, extras = None, {}
    if args.spect:
        model, inputs, params, extras = _image_inputs(args, params, prescription, progress)
    else:
        inputs = _calculator_inputs(args, params)
    what_if = _floats("--what-if-gbq", args.what_if_gbq) if args.what_if_gbq else None
    plan = make_plan(inputs, params, prescription, device=args.microsphere, which=_which_models(args.model), strategy=args.strategy,
                     voxel_model=model, what_if_gbq=what_if)
    case = None
    if model is not None:  # the MAA case at the recommended activity, judged as run would judge it
        from ..planning.imageplan import plan_case

        case = plan_case(model, plan.recommended["activity_gbq"], prescription.case_rules, assumptions=prescription.assumptions,
                         plan={"model": plan.recommended["model"]})
    return plan, case, extras


def _print_plan(plan, files, out):
    rec = plan.recommended
    print(f"recommended: {rec['activity_gbq']:.3f} GBq ({rec['model']} model); binding constraint: {rec['binding_constraint']}")
    order = rec.get("activity_to_order_gbq")
    if order is not None and abs(order - rec["activity_gbq"]) >= 1e-12:
        print(f"  activity to order: {order:.3f} GBq (exact {rec['activity_gbq']:.6f} GBq, moved to a whole MBq keeping the binding rule met)")
    for name, a in (rec.get("activities_gbq") or {}).items():
        print(f"  territory {name}: {a:.3f} GBq")
    if rec.get("targets_not_judged"):
        print(f"  targets the {rec['model']} model cannot evaluate (not judged): {'; '.join(rec['targets_not_judged'])}")
    for name, m in plan.models.items():
        unjudged = f"; cannot judge: {'; '.join(m['targets_not_judged'])}" if m.get("targets_not_judged") else ""
        print(f"  {name}: {m['activity_gbq'] if m['activity_gbq'] is None else round(m['activity_gbq'], 3)} GBq, {m['binding_constraint']}"
              f"{unjudged}")
    for name, why in plan.skipped.items():
        print(f"  {name}: not computed ({why})")
    for w in plan.warnings:
        print(f"warning: {w}")
    print("plan in " + out + ": " + ", ".join(f.rsplit("/", 1)[-1] for f in files))
