"""``tare-dosimetry``: Y-90 radioembolization dosimetry from the command line.

Exit status: 0 success; 2 bad input (one-line message naming the file or option);
1 unexpected error (message, and the traceback with --debug); 3 in ``batch`` when some
cases failed (the others are written).
"""

import argparse
import json
import os
import sys
import time

from . import __version__
from .errors import InputError, TAREDosimetryError
from .params import CALIBRATIONS, DEVICES, DOSE_METHODS, REFERENCE_REGIONS, SAMPLINGS, DosimetryParams

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  tare-dosimetry demo --out demo_out
  tare-dosimetry run --spect spect.nrrd --segmentation seg.seg.nrrd --ct ct.nii.gz \\
      --administered-activity-gbq 1.8 --lung-shunt-fraction 0.06 --out case1
  tare-dosimetry run --pet pet_dicom/ --quantitative --hours-since-administration 20 \\
      --segmentation labels.nii.gz --labels totalsegmentator --role "label 7=tumor" --out case2
  tare-dosimetry batch --manifest cases.csv --out results/
  tare-dosimetry presets

Relative calibration (SPECT counts): A_ref = A_adm (1 - residual) (1 - LSF) is spread over the
reference region's counts. Absolute calibration (--quantitative): the image is in Bq/mL.
Local deposition: D = 49.67 Gy kg/GBq x A / m. Research software, not a medical device.
"""


def _progress_printer(quiet):
    start = time.perf_counter()

    def show(fraction, message):
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    return show


def _add_dose_options(p):
    g = p.add_argument_group("dose")
    g.add_argument("--method", choices=DOSE_METHODS, default=None,
                   help="ldm: local deposition (default); dvk: dose-voxel-kernel convolution")
    g.add_argument("--device", choices=DEVICES, default=None, help="array backend for DVK: auto (GPU if usable), cpu, gpu")
    g.add_argument("--density", type=float, metavar="G_ML", default=None,
                   help="constant tissue density in g/mL (default 1.03; from the CT when --ct is given and this is not)")
    g.add_argument("--lung-density", type=float, metavar="G_ML", default=None, help="lung density without CT (default 0.30)")
    g.add_argument("--lung-mass-g", type=float, default=None, help="lung mass when there is no lung segment (default 1000 g)")
    g.add_argument("--k", dest="k_gy_kg_per_gbq", type=float, default=None, metavar="GY_KG_PER_GBQ",
                   help="dose per activity for full local absorption (default 49.67 Gy kg/GBq)")
    g.add_argument("--half-life-h", type=float, default=None, help="Y-90 half-life in hours (default 64.05)")
    g.add_argument("--lung-dose-from", choices=("auto", "lsf", "image"), default=None,
                   help="lung dose from the LSF model (uniform) or the image; auto: lsf for relative, image for absolute")
    g.add_argument("--dvk-radius-mm", type=float, default=None,
                   help="with --method dvk: kernel truncation radius in tissue, mm (default 12)")
    g.add_argument("--dvk-lung-mode", choices=("kernel", "ldm"), default=None,
                   help="with --method dvk: density-corrected kernel in lung, or local deposition there")


def _add_metric_options(p):
    g = p.add_argument_group("metrics and thresholds")
    g.add_argument("--thresholds", default=None, metavar="PRESET|FILE",
                   help="threshold preset (see 'tare-dosimetry presets'; default breast-liver-metastases) or a JSON/TOML rule file")
    g.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="reading the dose at segment voxels: nearest (default, exact partial-voxel handling) or linear")
    g.add_argument("--dvh-bin-width-gy", type=float, default=None, help="bin width for D/V metrics (default: exact, sorted voxels)")
    g.add_argument("--prior-lung-dose-gy", type=float, default=None, help="lung dose of earlier treatments (cumulative lung rule)")
    g.add_argument("--params", metavar="JSON", default=None,
                   help="start from the parameters in a JSON file (a metrics.json of an earlier run, or a plain object)")


def _add_output_options(p):
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty, unless --overwrite)")
    g.add_argument("--overwrite", action="store_true", help="replace our result files in a non-empty folder (other files are kept)")
    g.add_argument("--no-report", action="store_true", help="skip dvh.png and report.html (faster; no matplotlib needed)")
    g.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    g.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tare-dosimetry",
        description="Y-90 radioembolization (TARE/SIRT) dosimetry: dose map, DVH, per-segment metrics and PASS/FAIL "
        "against dose thresholds, from a SPECT or PET image and segments.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="dosimetry of one case", formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Dosimetry of one case from image files.", epilog=_EPILOG)
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
    a.add_argument("--residual-fraction", type=float, help="fraction left in vial and catheter, [0, 1) (default 0)")
    a.add_argument("--lung-shunt-fraction", type=float, help="lung shunt fraction LSF, [0, 1) (default 0)")
    a.add_argument("--reference-region", choices=REFERENCE_REGIONS,
                   help="region whose counts equal A_adm (1 - residual) (1 - LSF): liver (default), perfused, image")
    a.add_argument("--quantitative", action="store_true", help="absolute calibration: the image is in Bq/mL")
    a.add_argument("--relative", action="store_true", help="relative calibration even for --pet")
    a.add_argument("--hours-since-administration", type=float, help="scan time minus administration time, h (absolute)")
    a.add_argument("--decay-corrected", action="store_true", help="the Bq/mL image is already decay-corrected to administration")
    _add_dose_options(run)
    _add_metric_options(run)
    _add_output_options(run)

    demo = sub.add_parser("demo", help="run the built-in synthetic patient end to end",
                          description="A deterministic synthetic Y-90 Bremsstrahlung SPECT/CT (liver with two lobes, "
                          "three tumours, lungs with an 8 %% shunt), run end to end.")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic noise (default 0)")
    _add_dose_options(demo)
    _add_metric_options(demo)
    _add_output_options(demo)

    batch = sub.add_parser("batch", help="run a manifest (CSV) of cases",
                           description="Run every case of a manifest CSV (see the README); failing cases are listed "
                           "at the end and do not stop the others.")
    batch.add_argument("--manifest", required=True, metavar="CSV")
    _add_dose_options(batch)
    _add_metric_options(batch)
    _add_output_options(batch)

    sub.add_parser("presets", help="list the threshold presets and their sources")
    return parser


def _params_from_args(args, base=None):
    p = base or DosimetryParams()
    if getattr(args, "params", None):
        p = _load_params_file(args.params)
    changes = {}
    mapping = {
        "method": "method", "device": "device", "lung_density": "lung_density_g_ml", "lung_mass_g": "default_lung_mass_g",
        "k_gy_kg_per_gbq": "k_gy_kg_per_gbq", "half_life_h": "half_life_h", "lung_dose_from": "lung_dose_from",
        "dvk_lung_mode": "dvk_lung_mode", "dvk_radius_mm": "dvk_radius_mm", "sampling": "sampling", "dvh_bin_width_gy": "dvh_bin_width_gy",
        "prior_lung_dose_gy": "prior_lung_dose_gy", "administered_activity_gbq": "administered_activity_gbq",
        "residual_fraction": "residual_fraction", "lung_shunt_fraction": "lung_shunt_fraction",
        "reference_region": "reference_region", "hours_since_administration": "hours_since_administration",
    }
    for arg, field_name in mapping.items():
        v = getattr(args, arg, None)
        if v is not None:
            changes[field_name] = v
    if getattr(args, "density", None) is not None:
        changes["tissue_density_g_ml"] = args.density
        changes["density_from_ct"] = False
    if getattr(args, "quantitative", False) and getattr(args, "relative", False):
        raise InputError("--quantitative (absolute calibration) and --relative contradict each other; give one")
    if getattr(args, "quantitative", False) or (getattr(args, "pet", None) and not getattr(args, "relative", False)):
        changes["calibration"] = "absolute"
    if getattr(args, "relative", False):
        changes["calibration"] = "relative"
    if getattr(args, "decay_corrected", False):
        changes["image_decay_corrected"] = True
    return p.replace(**changes) if changes else p


def _read_json(option, path):
    """The JSON value in the file given to ``option``; InputError naming both when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{option} {path}: not valid JSON ({exc})") from None


def _load_params_file(path):
    data = _read_json("--params", path)
    if isinstance(data, dict) and isinstance(data.get("parameters"), dict):
        data = data["parameters"]
    if not isinstance(data, dict):
        raise InputError(f"--params {path}: expected a JSON object of parameters")
    return DosimetryParams.from_dict(data)


def _roles_from_args(args):
    from .roles import canonical_role, parse_role_assignments

    roles = {}
    if args.roles_json:
        data = _read_json("--roles-json", args.roles_json)
        if not isinstance(data, dict):
            raise InputError(f"--roles-json {args.roles_json}: expected an object {{segment name: role}}")
        roles.update({str(k): canonical_role(v, where=f"role of {k!r} in {args.roles_json}") for k, v in data.items()})
    roles.update(parse_role_assignments(args.role))
    return roles


def _print_result(result, files, out):
    print(result.summary_line())
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"results in {out}: " + ", ".join(os.path.basename(f) for f in files))


def _cmd_run(args):
    from .batch import run_case_files
    from .outputs import check_output_dir, write_outputs

    check_output_dir(args.out, args.overwrite)  # refuse before any work
    params = _params_from_args(args)
    roles = _roles_from_args(args)
    rules = args.thresholds
    from .rules import load_rules

    load_rules(rules)  # a bad preset or rule file fails before the images are read
    progress = _progress_printer(args.quiet)
    image = args.spect or args.pet
    result, inputs = run_case_files(
        image, args.segmentation, ct=args.ct, labels=args.labels, roles=roles, params=params, rules=rules,
        modality="pet" if args.pet else "spect", progress=progress,
    )
    files = write_outputs(result, args.out, overwrite=args.overwrite, report=not args.no_report,
                          background=inputs["ct"] or inputs["activity"], segmentation=inputs["segmentation"], progress=progress)
    _print_result(result, files, args.out)
    return 0


def _cmd_demo(args):
    from .outputs import check_output_dir, write_outputs
    from .phantom import make_phantom
    from .pipeline import run_case

    check_output_dir(args.out, args.overwrite)
    progress = _progress_printer(args.quiet)
    progress(0.0, "building the synthetic patient")
    case = make_phantom(analytic=False, seed=args.seed)
    params = _params_from_args(args, base=case.params)
    result = run_case(case.activity, case.segmentation, params=params, ct=case.ct, rules=args.thresholds,
                      inputs={"activity_image": "synthetic Bremsstrahlung SPECT (demo)", "description": case.description},
                      progress=progress)
    files = write_outputs(result, args.out, overwrite=args.overwrite, report=not args.no_report,
                          background=case.ct, segmentation=case.segmentation, progress=progress)
    _print_result(result, files, args.out)
    return 0


def _cmd_batch(args):
    from .batch import run_manifest

    params = _params_from_args(args)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    summary = run_manifest(args.manifest, args.out, defaults=params, rules=args.thresholds, overwrite=args.overwrite,
                           report=not args.no_report, log=log, debug=args.debug)
    ok = [s for s in summary if s["status"] == "ok"]
    failed = [s for s in summary if s["status"] != "ok"]
    print(f"{len(ok)}/{len(summary)} cases done; summary in {os.path.join(args.out, 'batch_summary.csv')}")
    for s in failed:
        print(f"FAILED {s['case_id']}: {s['error'].splitlines()[0] if s['error'] else ''}")
    return 0 if not failed else 3


def _cmd_presets(args):
    from .rules import DEFAULT_PRESET, PRESETS

    for name, rs in PRESETS.items():
        print(f"{name}{' (default)' if name == DEFAULT_PRESET else ''}: {rs.description}")
        for r in rs.rules:
            print(f"    {r.role:13s} {r.text:32s} {r.label} [{r.source}]")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    handler = {"run": _cmd_run, "demo": _cmd_demo, "batch": _cmd_batch, "presets": _cmd_presets}[args.command]
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
