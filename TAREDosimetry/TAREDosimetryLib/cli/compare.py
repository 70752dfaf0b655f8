"""``tare-dosimetry compare``: predicted (plan, or a run on the MAA) versus delivered (post-treatment run)."""

import argparse
import os

from .common import add_output_options, params_from_args, progress_printer, roles_from_args

HELP = "predicted vs delivered: post-treatment dose mapped onto the plan, differences, Dice, gamma"
EXAMPLES = """examples:
  tare-dosimetry compare --planned plan1/ --delivered post1/ --out cmp1
  tare-dosimetry compare --planned plan1/dose.nrrd --planned-activity-gbq 2.1 --segmentation maa.seg.nrrd \\
      --delivered post1/ --planned-image maa_ct.nrrd --delivered-image pet_ct.nrrd --registration rigid --out cmp2
  tare-dosimetry compare --planned plan1/ --delivered post1/ --transform slicer_export.tfm --out cmp3

--planned and --delivered take a result folder of plan, run or evaluate (dose.nrrd with plan.json or
metrics.json, which also give the activity, the segmentation and the images used), or a dose map of
another tool (RT Dose file or a folder holding one, NRRD, NIfTI, MHA/MHD) read as `evaluate` reads it:
its unit from the header or --planned-dose-unit / --delivered-dose-unit, times --...-dose-scale.
The transform maps planning space to post-treatment space (ITK convention).
"""


def add_parser(sub):
    p = sub.add_parser("compare", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
                       description="Compare the predicted dose (plan) with the delivered one (post-treatment Y-90 PET or "
                       "Bremsstrahlung SPECT result) on the planning segments.")
    g = p.add_argument_group("inputs")
    g.add_argument("--planned", required=True, metavar="DIR|DOSE", help="plan or run result folder, or a dose map (RT Dose, NRRD, NIfTI...)")
    g.add_argument("--delivered", required=True, metavar="DIR|DOSE",
                   help="post-treatment run (or evaluate) result folder, or a dose map (RT Dose, NRRD, NIfTI...)")
    for side in ("planned", "delivered"):
        g.add_argument(f"--{side}-dose-unit", choices=("Gy", "cGy", "mGy"), default=None,
                       help=f"unit of a --{side} dose map whose header does not say (an RT Dose always does)")
        g.add_argument(f"--{side}-dose-scale", type=float, default=1.0, metavar="FACTOR",
                       help=f"factor applied to a --{side} dose map after the unit (e.g. a Monte Carlo dose per decay times the decays)")
    g.add_argument("--segmentation", metavar="PATH", help="planning segments (default: the one recorded in the planned result)")
    g.add_argument("--labels", metavar="SPEC", help="names of a label map's values")
    g.add_argument("--role", action="append", default=[], metavar="NAME=ROLE", help="set a segment's role (repeatable)")
    g.add_argument("--roles-json", metavar="FILE", help="JSON object {segment name: role}")
    g.add_argument("--planned-image", metavar="PATH", help="planning image for registration (default: the recorded CT, else SPECT)")
    g.add_argument("--delivered-image", metavar="PATH", help="post-treatment image for registration (default: recorded CT, else PET/SPECT)")
    g.add_argument("--planned-activity-gbq", type=float, help="planned activity (default: from plan.json / metrics.json)")
    g.add_argument("--delivered-activity-gbq", type=float, help="delivered activity (default: from the delivered metrics.json)")
    r = p.add_argument_group("registration and comparison")
    r.add_argument("--registration", choices=("auto", "rigid", "bspline", "none"), default="auto",
                   help="rigid: mutual information, multi-resolution; bspline: rigid then B-spline; none: same space; "
                   "auto: rigid when both images are known, else none")
    r.add_argument("--transform", metavar="FILE", help="use this ITK transform (planning -> post-treatment) instead of registering")
    r.add_argument("--gamma", default="5,4", metavar="PCT,MM", help="gamma criteria, dose %% (global) and distance mm (default 5,4)")
    r.add_argument("--gamma-cutoff-pct", type=float, default=10.0, help="low-dose cut-off, %% of the planned maximum (default 10)")
    r.add_argument("--gamma-local", action="store_true", help="local instead of global dose difference")
    r.add_argument("--gamma-implementation", choices=("auto", "pymedphys", "engine"), default="auto",
                   help="pymedphys (pip install pymedphys), the engine's own, or auto (pymedphys when installed)")
    r.add_argument("--dice-levels-gy", default="100,200", metavar="GY,...", help="isodose levels for Dice (default 100,200)")
    r.add_argument("--params", metavar="JSON", default=None, help="parameters (densities, D/V levels) from a JSON file")
    add_output_options(p)
    return p


_RESULT_MARKERS = ("dose.nrrd", "plan.json", "metrics.json")


def _read_dose_file(option, path, what, dose_unit, dose_scale):
    """(dose Volume in Gy, notes) of another tool's dose map, read like ``evaluate`` reads it."""
    from ..errors import InputError
    from ..imaging.dosemaps import read_dose_map

    try:
        dose, _record, notes = read_dose_map(path, dose_unit=dose_unit, dose_scale=dose_scale, what=f"{option} {what} dose")
    except InputError as exc:  # name this command's options, not evaluate's
        raise InputError(str(exc).replace("--dose-unit", f"{option}-dose-unit").replace("--dose-scale", f"{option}-dose-scale")) from None
    return dose, notes


def _read_result(option, path, what, dose_unit=None, dose_scale=1.0):
    """{'dose', 'activity_gbq', 'segmentation', 'image', 'notes', 'sampling', 'record'} of a result folder or
    dose map (``sampling``: the one the result's metrics were computed with, ``record`` its metrics.json;
    None for a dose map)."""
    from ..errors import InputError
    from ..imaging.images import read_image
    from .common import read_json

    if os.path.isdir(path) and not any(os.path.exists(os.path.join(path, f)) for f in _RESULT_MARKERS):
        dose, notes = _read_dose_file(option, path, what, dose_unit, dose_scale)  # a DICOM folder holding an RT Dose
        return {"dose": dose, "activity_gbq": None, "segmentation": None, "image": None, "notes": notes, "sampling": None, "record": None}
    if os.path.isdir(path):
        dose_path = os.path.join(path, "dose.nrrd")
        rec_path = next((os.path.join(path, f) for f in ("plan.json", "metrics.json") if os.path.isfile(os.path.join(path, f))), None)
        if not os.path.isfile(dose_path) or rec_path is None:
            raise InputError(f"{option} {path}: not a result folder of plan or run (needs dose.nrrd and plan.json or metrics.json)")
        record = read_json(option, rec_path)
        metrics = read_json(option, os.path.join(path, "metrics.json")) if os.path.isfile(os.path.join(path, "metrics.json")) else record
    elif os.path.isfile(path):
        dose, notes = _read_dose_file(option, path, what, dose_unit, dose_scale)
        return {"dose": dose, "activity_gbq": None, "segmentation": None, "image": None, "notes": notes, "sampling": None, "record": None}
    else:
        raise InputError(f"{option} {path}: no such file or folder")
    inputs = metrics.get("inputs") or {}
    activity = (record.get("recommended") or {}).get("activity_gbq") or (metrics.get("parameters") or {}).get("administered_activity_gbq")
    if activity is None and (metrics.get("parameters") or {}).get("calibration") == "absolute":
        activity = (metrics.get("summary") or {}).get("image_activity_gbq")
    return {"dose": read_image(dose_path, what=f"{what} dose"), "activity_gbq": activity, "segmentation": inputs.get("segmentation"),
            "image": inputs.get("ct") or inputs.get("activity_image"), "notes": [],
            "sampling": (metrics.get("parameters") or {}).get("sampling") or "overlap",  # measured as the result was
            "record": metrics if isinstance(metrics.get("parameters"), dict) else None}


def _same_file(a, b):
    try:
        return bool(a and b) and os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _register(args, planned, delivered, progress):
    """(transform or None, registration record, fixed image, moved image)."""
    from ..errors import InputError
    from ..imaging.images import read_image
    from ..planning import registration as reg

    if args.transform:
        return reg.read_transform(args.transform), {"method": f"given transform {args.transform}"}, None, None
    fixed_path, moving_path = args.planned_image or planned["image"], args.delivered_image or delivered["image"]
    mode = args.registration
    if mode == "auto" and _same_file(fixed_path, moving_path):
        return None, {"method": "none: the planning and post-treatment images are the same file"}, None, None
    if mode == "auto":
        mode = "rigid" if fixed_path and moving_path and os.path.exists(fixed_path) and os.path.exists(moving_path) else "none"
    if mode == "none":
        return None, {"method": "none: both doses taken as in the same space"}, None, None
    if not (fixed_path and moving_path):
        raise InputError(f"--registration {mode} needs the planning and post-treatment images (--planned-image, --delivered-image)")
    fixed, moving = read_image(fixed_path, what="planning image"), read_image(moving_path, what="post-treatment image")
    progress(0.2, f"registering {os.path.basename(moving_path)} to {os.path.basename(fixed_path)} ({mode})")
    tfm, info = reg.rigid_register(fixed, moving)
    if mode == "bspline":
        tfm, info_b = reg.bspline_refine(fixed, moving, tfm)
        info = dict(info, **{"deformable": info_b["method"], "metric_value_after_bspline": info_b["metric_value"]})
    info.update(fixed=fixed_path, moving=moving_path)
    return tfm, info, fixed, reg.resample_onto(moving, fixed.grid, tfm, default=float(moving.array.min()))


def main(args):
    from ..planning.outputs import COMPARE_FILES
    from ..reporting.resultfolder import reserve_output_dir

    with reserve_output_dir(args.out, args.overwrite, files=COMPARE_FILES, marker="comparison.json"):  # refuse before any work
        return _compare(args)


def _compare(args):
    from ..errors import InputError
    from ..imaging.segmentation_io import read_segmentation
    from ..planning.compare import compare_doses
    from ..planning.outputs import write_compare_folder
    from .plan import _floats

    progress = progress_printer(args.quiet)
    params = params_from_args(args)
    planned = _read_result("--planned", args.planned, "planned", args.planned_dose_unit, args.planned_dose_scale)
    delivered = _read_result("--delivered", args.delivered, "delivered", args.delivered_dose_unit, args.delivered_dose_scale)
    seg_path = args.segmentation or planned["segmentation"]
    if not seg_path:
        raise InputError("--segmentation (the planning segments) is required: the planned result does not record one")
    seg = read_segmentation(seg_path, label_names=args.labels)
    roles = _planning_roles(args, planned["record"], seg_path)
    density_params, ct = _planning_density(planned, progress)
    dd_pct, dta = _floats("--gamma", args.gamma, 2)
    tfm, reg_info, fixed, moved = _register(args, planned, delivered, progress)
    progress(0.6, "mapping the delivered dose onto the planning segments; Dice; gamma")
    comp = compare_doses(planned["dose"], delivered["dose"], seg, params, transform=tfm, roles=roles, density_params=density_params, ct=ct,
                         dice_levels_gy=_floats("--dice-levels-gy", args.dice_levels_gy),
                         gamma_options={"dose_pct": dd_pct, "dta_mm": dta, "cutoff_pct": args.gamma_cutoff_pct, "local": args.gamma_local,
                                        "implementation": args.gamma_implementation},
                         planned_activity_gbq=args.planned_activity_gbq or planned["activity_gbq"],
                         delivered_activity_gbq=args.delivered_activity_gbq or delivered["activity_gbq"], registration=reg_info,
                         planned_sampling=planned["sampling"], delivered_sampling=delivered["sampling"])
    comp.warnings.extend(planned["notes"] + delivered["notes"])
    files = write_compare_folder(comp, args.out, transform=tfm, fixed_image=fixed, moved_image=moved, overwrite=args.overwrite,
                                 report=not args.no_report)
    _print_summary(comp.to_dict(), files, args.out)
    return 0


def _planning_roles(args, record, seg_path):
    """Segment roles: the planned result's (when it used this segmentation), then the command line's."""
    from ..reproduce import record_roles
    from .common import same_input

    recorded = record_roles(record) if record is not None and same_input(record, "segmentation", seg_path) else {}
    return dict(recorded, **roles_from_args(args))


def _planning_density(planned, progress):
    """(parameters, CT Volume or None) of the planned result's density map; (None, None) for a dose map of another tool."""
    from ..imaging.images import read_image
    from ..params import DosimetryParams

    record = planned["record"]
    if record is None:
        return None, None
    ct_path = (record.get("inputs") or {}).get("ct")
    ct = read_image(ct_path, what="planning CT") if ct_path and os.path.exists(ct_path) else None
    if ct is not None:
        progress(0.15, f"density of the planned result from its CT {ct_path}")
    return DosimetryParams.from_dict(record["parameters"]), ct


def _print_summary(d, files, out):
    if d["activity"]:
        a = d["activity"]
        print(f"activity: delivered {a['delivered_gbq']:.3f} GBq vs planned {a['planned_gbq']:.3f} GBq ({a['difference_pct']:+.1f} %, {a['band']})")
    for s in d["segments"]:
        m = s["metrics"].get("mean_gy")
        if m:
            print(f"  {s['name']}: mean {m['planned']:.1f} -> {m['delivered']:.1f} Gy ({m['difference_pct']:+.1f} %)")
    g = d["gamma"]
    print(f"gamma {g['criteria']}: {g['pass_rate_pct']:.1f} % pass ({g['implementation']})")
    for w in d["warnings"]:
        print(f"warning: {w}")
    print(f"comparison in {out}: " + ", ".join(os.path.basename(f) for f in files))
