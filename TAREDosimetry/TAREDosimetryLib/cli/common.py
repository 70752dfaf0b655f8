"""Options and helpers shared by the commands: option groups, parameters from the command
line, progress on stderr, the one-line result summary."""

import json
import os
import sys
import time

from ..errors import InputError
from ..params import DEVICES, DOSE_METHODS, INDICATIONS, MICROSPHERES, PHASES, SAMPLINGS, TREATMENT_APPROACHES, DosimetryParams

__all__ = [
    "EPILOG", "progress_printer", "add_dose_options", "add_metric_options", "add_output_options", "add_clinical_options",
    "params_from_args", "read_json", "load_params_file", "params_record", "same_input", "roles_from_args", "print_result",
    "add_dicom_input_options", "dicom_options_from_args", "add_export_options", "exports_from_args", "send_exports", "write_and_report", "make_sender",
]

EPILOG = """examples:
  tare-dosimetry demo --out demo_out
  tare-dosimetry run --spect spect.nrrd --segmentation seg.seg.nrrd --ct ct.nii.gz \\
      --administered-activity-gbq 1.8 --lung-shunt-fraction 0.06 --out case1
  tare-dosimetry run --pet pet_dicom/ --hours-since-administration 20 \\
      --segmentation labels.nii.gz --labels totalsegmentator --role "label 7=tumor" --out case2
  tare-dosimetry run --pet export/ --ct export/ --segmentation export/rtstruct.dcm --out case3 \\
      --rtdose --dicom-sr --send PACS@pacs.example.org:11112
  tare-dosimetry evaluate --dose mc_dose.mhd --dose-unit Gy --segmentation seg.seg.nrrd --out eval1
  tare-dosimetry dicom-ls export/
  tare-dosimetry batch --manifest cases.csv --out results/
  tare-dosimetry presets

Relative calibration (SPECT counts): A_ref = A_adm (1 - residual) (1 - LSF) is spread over the
reference region's counts. Absolute calibration (--quantitative): the image is in Bq/mL.
Local deposition: D = 49.67 Gy kg/GBq x A / m. Research software, not a medical device.
"""


def progress_printer(quiet):
    start = time.perf_counter()

    def show(fraction, message):
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    return show


def add_dose_options(p):
    g = p.add_argument_group("dose")
    g.add_argument("--method", choices=DOSE_METHODS, default=None,
                   help="ldm: local deposition (default); dvk: dose-voxel-kernel convolution")
    g.add_argument("--device", choices=DEVICES, default=None, help="array backend for DVK: auto (GPU if usable), cpu, gpu")
    g.add_argument("--density", type=float, metavar="G_ML", default=None,
                   help="constant tissue density in g/mL (default 1.03; from the CT when --ct is given and this is not)")
    g.add_argument("--lung-density", type=float, metavar="G_ML", default=None, help="lung density without CT (default 0.30)")
    g.add_argument("--lung-mass-g", type=float, default=None,
                   help="lung mass (g) of the LSF lung model when there is no lung segment (not given: the conventional "
                   "1000 g is assumed and a case whose lung rules judge it is INCOMPLETE)")
    g.add_argument("--k", dest="k_gy_kg_per_gbq", type=float, default=None, metavar="GY_KG_PER_GBQ",
                   help="dose per activity for full local absorption (default 49.67 Gy kg/GBq)")
    g.add_argument("--half-life-h", type=float, default=None, help="Y-90 half-life in hours (default 64.05)")
    g.add_argument("--lung-dose-from", choices=("auto", "lsf", "image"), default=None,
                   help="lung dose from the LSF model (uniform) or the image; auto: lsf for relative, image for absolute")
    g.add_argument("--dvk-radius-mm", type=float, default=None,
                   help="with --method dvk: kernel truncation radius in tissue, mm (default 12)")
    g.add_argument("--dvk-lung-mode", choices=("kernel", "ldm"), default=None,
                   help="with --method dvk: density-corrected kernel in lung, or local deposition there")


def add_metric_options(p):
    g = p.add_argument_group("metrics and thresholds")
    g.add_argument("--thresholds", default=None, metavar="PRESET|FILE",
                   help="threshold preset (see 'tare-dosimetry presets') or a JSON/TOML rule file (default: the preset of "
                   "--indication/--microsphere; with neither, breast-liver-metastases and the case is INCOMPLETE)")
    g.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="how the dose is measured on the segments: overlap (default: exact partial-voxel weighting, each activity "
                        "voxel counted with the fraction of its volume inside the segment), or point sampling at the segment "
                        "voxels' centres: nearest or linear (approximations)")
    g.add_argument("--dvh-bin-width-gy", type=float, default=None,
                   help="bin width for D/V metrics, at most 5 Gy (default: exact, from the sorted voxel doses)")
    g.add_argument("--prior-lung-dose-gy", type=float, default=None,
                   help="lung dose of earlier treatments, Gy (cumulative lung rule; 0 for a first treatment; not given: "
                   "the cumulative rule is N/A)")
    g.add_argument("--phase", choices=PHASES, default=None,
                   help="pre: the doses are a prediction (MAA SPECT, planning); post: a verification of the delivered dose "
                   "(Y-90 PET or Bremsstrahlung SPECT); default: from the inputs where they say")
    g.add_argument("--params", metavar="JSON", default=None,
                   help="start from the parameters in a JSON file: a plain object, or the metrics.json of an earlier result, "
                   "whose rule set (unless --thresholds) and, for the same segmentation, roles and label table are used too")
    g.add_argument("--resolution-fwhm-mm", type=float, default=None, metavar="MM",
                   help="image resolution (FWHM, mm): segments with an equivalent-sphere diameter under 2 x FWHM get a "
                   "partial-volume warning (always: under 30 activity voxels or 2 x the voxel size)")
    g.add_argument("--recovery-coefficients", metavar="CSV|JSON", default=None,
                   help="recovery-coefficient table from a phantom scan (columns diameter_mm,rc or volume_ml,rc): tumour "
                   "mean doses corrected by it are reported beside the uncorrected ones (rules judge the uncorrected "
                   "mean_gy unless a rule names mean_gy_rc_corrected)")


def add_clinical_options(p, choose_preset=True):
    """The clinical-input options; ``choose_preset=False`` leaves out --microsphere and --indication
    (a command that defines them itself, e.g. ``plan``'s --device)."""
    g = p.add_argument_group("clinical inputs (select conditional threshold rules; recorded in metrics.json)")
    if choose_preset:
        g.add_argument("--microsphere", choices=MICROSPHERES, default=None, help="microsphere type")
        g.add_argument("--indication", choices=INDICATIONS, default=None,
                       help="tumour type; with --microsphere and no --thresholds, chooses the matching preset")
    g.add_argument("--treatment-approach", choices=TREATMENT_APPROACHES, default=None,
                   help="selects the segmentectomy / lobectomy / unilobar / bilobar rules of the presets")
    g.add_argument("--bilirubin-mg-dl", type=float, default=None, metavar="MG_DL",
                   help="total bilirubin, mg/dL (glass: whole normal liver < 50 Gy when > 1.1 mg/dL)")
    g.add_argument("--hepatic-reserve-pct", type=float, default=None, metavar="PCT",
                   help="hepatic reserve (untreated liver fraction), %% (glass: perfused normal liver < 120 Gy when < 30 %%; "
                   "resin lobectomy: > 70 Gy with > 30 %%)")


def add_output_options(p, out_required=True):
    g = p.add_argument_group("output")
    g.add_argument("--out", required=out_required, metavar="DIR",
                   help="output folder (must not exist or be empty, unless --overwrite)")
    g.add_argument("--overwrite", action="store_true", help="replace our result files in a non-empty folder (other files are kept)")
    g.add_argument("--no-report", action="store_true", help="skip dvh.png and report.html (faster; no matplotlib needed)")
    g.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    g.add_argument("--debug", action="store_true", help="show tracebacks")


def params_from_args(args, base=None):
    p = base or DosimetryParams()
    if getattr(args, "params", None):
        p = load_params_file(args.params)
    changes = {}
    mapping = {
        "method": "method", "device": "device", "lung_density": "lung_density_g_ml", "lung_mass_g": "default_lung_mass_g",
        "k_gy_kg_per_gbq": "k_gy_kg_per_gbq", "half_life_h": "half_life_h", "lung_dose_from": "lung_dose_from",
        "dvk_lung_mode": "dvk_lung_mode", "dvk_radius_mm": "dvk_radius_mm", "sampling": "sampling", "dvh_bin_width_gy": "dvh_bin_width_gy",
        "prior_lung_dose_gy": "prior_lung_dose_gy", "phase": "phase", "administered_activity_gbq": "administered_activity_gbq",
        "residual_fraction": "residual_fraction", "lung_shunt_fraction": "lung_shunt_fraction",
        "reference_region": "reference_region", "hours_since_administration": "hours_since_administration",
        "microsphere": "microsphere", "indication": "indication", "treatment_approach": "treatment_approach",
        "bilirubin_mg_dl": "bilirubin_mg_dl", "hepatic_reserve_pct": "hepatic_reserve_pct",
        "resolution_fwhm_mm": "resolution_fwhm_mm",
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
    if getattr(args, "allow_unusual_activity", False):
        changes["allow_unusual_activity"] = True
    if getattr(args, "recovery_coefficients", None):
        from ..evaluation.partial_volume import read_recovery_coefficients

        changes["recovery_coefficients"], changes["recovery_coefficient_axis"] = read_recovery_coefficients(args.recovery_coefficients)
    if getattr(args, "allow_negative", False):
        changes["allow_negative"] = True
    p = p.replace(**changes) if changes else p
    check_device(p)
    return p


def check_device(params):
    """Refuse ``--device gpu`` for a DVK case when no GPU is usable, before any input is read (the
    dose step would refuse it only after reading and calibrating the case)."""
    if params.method == "dvk" and params.device == "gpu":
        from ..dose.backend import get_backend

        get_backend("gpu")  # GPUUnavailableError saying what is missing


def read_json(option, path):
    """The JSON value in the file given to ``option``; InputError naming both when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{option} {path}: not valid JSON ({exc})") from None


def load_params_file(path):
    data = read_json("--params", path)
    if isinstance(data, dict) and isinstance(data.get("parameters"), dict):
        data = data["parameters"]
    if not isinstance(data, dict):
        raise InputError(f"--params {path}: expected a JSON object of parameters")
    return DosimetryParams.from_dict(data)


def params_record(args):
    """The metrics.json of an earlier result given to --params, or None (no --params, or a plain
    object of parameters).  Its rule set, roles and label table are used where the command line
    gives none, so that a rerun judges the case as the first run did."""
    path = getattr(args, "params", None)
    if not path:
        return None
    data = read_json("--params", path)
    return data if isinstance(data, dict) and isinstance(data.get("parameters"), dict) else None


def same_input(record, key, path):
    """True when ``path`` is the input ``key`` of the record: the same file, or the same SHA-256."""
    from ..imaging.provenance import sha256_of_path

    inputs = (record or {}).get("inputs") or {}
    if not path or not inputs.get(key):
        return False
    if os.path.abspath(str(path)) == inputs[key]:
        return True
    digest = (inputs.get("sha256") or {}).get(key)
    return bool(digest) and sha256_of_path(path) == digest


def roles_from_args(args):
    from ..evaluation.roles import canonical_role, parse_role_assignments

    roles = {}
    if args.roles_json:
        data = read_json("--roles-json", args.roles_json)
        if not isinstance(data, dict):
            raise InputError(f"--roles-json {args.roles_json}: expected an object {{segment name: role}}")
        roles.update({str(k): canonical_role(v, where=f"role of {k!r} in {args.roles_json}") for k, v in data.items()})
    roles.update(parse_role_assignments(args.role))
    return roles


def print_result(result, files, out):
    from ..reporting.wording import banner

    verdict = banner(result)
    print(verdict["headline"])
    for line in verdict["lines"][:2]:  # the rule count; the treatment phase and its basis
        print(f"  {line}")
    for reason in verdict["also_incomplete"]:  # a FAIL that is also incomplete says so
        print(f"  also incomplete: {reason}")
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"results in {out}: " + ", ".join(os.path.basename(f) for f in files))


def add_dicom_input_options(p):
    g = p.add_argument_group("DICOM inputs")
    g.add_argument("--series", action="append", default=[], metavar="UID",
                   help="SeriesInstanceUID to read from a folder that holds several series (repeatable: one per input; "
                   "'tare-dosimetry dicom-ls FOLDER' lists them)")
    g.add_argument("--allow-other-radionuclide", action="store_true",
                   help="compute a PET whose DICOM header names another radionuclide than Y-90 (refused otherwise)")


def dicom_options_from_args(args):
    """The DicomOptions of the command line (series choice, radionuclide override, who gives the timing)."""
    from ..imaging.caseinputs import DicomOptions

    return DicomOptions(
        series_uids=tuple(u.strip() for u in getattr(args, "series", []) or [] if u.strip()),
        allow_other_radionuclide=bool(getattr(args, "allow_other_radionuclide", False)),
        timing_overridden=getattr(args, "hours_since_administration", None) is not None or bool(getattr(args, "decay_corrected", False)),
        quantitative_explicit=bool(getattr(args, "quantitative", False)),
    )


def add_export_options(p):
    g = p.add_argument_group("exports (DICOM, PDF) and sending to a PACS")
    g.add_argument("--rtdose", action="store_true",
                   help="also write dose.dcm, the dose as a DICOM RT Dose (in the study and frame of reference of DICOM "
                   "inputs, referring to the CT; else a standalone study)")
    g.add_argument("--dicom-seg", action="store_true", help="also write segments.dcm, the segments as a DICOM SEG (highdicom)")
    g.add_argument("--dicom-sr", action="store_true",
                   help="also write metrics_sr.dcm, the per-segment metrics as a DICOM SR measurement report (TID 1500; "
                   "comes with segments.dcm, whose segments it measures)")
    g.add_argument("--pdf", action="store_true", help="also write report.pdf (matplotlib)")
    g.add_argument("--send", action="append", default=[], metavar="AET@HOST:PORT",
                   help="send the DICOM exports to a PACS or DICOM node (C-ECHO, then C-STORE; repeatable; pynetdicom)")
    g.add_argument("--calling-aet", default="TAREDOSIMETRY", help="our AE title when sending (default TAREDOSIMETRY)")
    g.add_argument("--send-timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds (default 30)")
    g.add_argument("--send-retries", type=int, default=2, help="retries of a failed association (default 2)")


def exports_from_args(args, sources=None):
    """The DicomExports of the command line (None when no DICOM object is asked for)."""
    from ..reporting.dicomexport import DicomExports

    wanted = any(getattr(args, k, False) for k in ("rtdose", "dicom_seg", "dicom_sr"))
    if getattr(args, "send", None) and not wanted:
        raise InputError("--send: nothing to send; add --rtdose, --dicom-seg or --dicom-sr")
    make_sender(args)  # a malformed destination fails before any work
    if not wanted:
        return None
    return DicomExports(rtdose=bool(args.rtdose), seg=bool(args.dicom_seg), sr=bool(args.dicom_sr), sources=sources)


class DicomSender:
    """callable(files): C-STORE the DICOM files among ``files`` to every destination, one line each
    through ``echo``.  Picklable (a batch's worker processes send their own cases): ``progress`` and
    ``echo`` stay behind, and a worker writes its lines to its standard error."""

    def __init__(self, dests, calling_aet, timeout_s, retries, progress=None, echo=print):
        self.dests, self.calling_aet, self.timeout_s, self.retries = list(dests), calling_aet, timeout_s, retries
        self.progress, self.echo = progress, echo

    def __getstate__(self):
        return dict(self.__dict__, progress=None, echo=None)

    def __call__(self, files):
        from ..reporting.dicomsend import send_files

        echo = self.echo or (lambda m: print(m, file=sys.stderr, flush=True))
        dicom_files = [f for f in files if str(f).endswith(".dcm")]
        for dest in self.dests:
            report = send_files(dicom_files, dest, calling_aet=self.calling_aet, timeout_s=self.timeout_s,
                                retries=self.retries, progress=self.progress)
            echo(f"sent {report['sent']} DICOM object(s) to {dest}")


def make_sender(args, progress=None, echo=print):
    """:class:`DicomSender` to every --send destination, or None without --send.  The destinations
    are checked here, before any work."""
    specs = list(getattr(args, "send", None) or [])
    if not specs:
        return None
    from ..reporting.dicomsend import parse_destination

    dests = [parse_destination(spec) for spec in specs]
    return DicomSender(dests, args.calling_aet, args.send_timeout, args.send_retries, progress=progress, echo=echo)


def write_and_report(args, result, *, background, segmentation, exports, progress):
    """Write the case's result folder (the report unless --no-report), print the verdict and
    send the DICOM exports to the --send destinations; returns the exit status 0."""
    from ..reporting.outputs import write_outputs

    files = write_outputs(result, args.out, overwrite=args.overwrite, report=not args.no_report, background=background,
                          segmentation=segmentation, progress=progress, dicom=exports, pdf=args.pdf)
    print_result(result, files, args.out)
    send_exports(args, files, progress)
    return 0


def send_exports(args, files, progress):
    """Send the DICOM files among ``files`` to every --send destination (nothing without --send)."""
    sender = make_sender(args, progress)
    if sender is not None:
        sender(files)
