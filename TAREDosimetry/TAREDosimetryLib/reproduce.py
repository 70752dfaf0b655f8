"""Reproducing a result from its metrics.json: ``tare-dosimetry rerun`` and ``run --params``.

A metrics.json holds everything a result was computed from: the parameters, the full rule set
(with where it came from), the role of every segment as used, the label table, and the input
files with their SHA-256 (:mod:`.imaging.provenance`).  :func:`rerun_record` reads the same files
again (refusing any whose hash changed), runs the case with the recorded parameters, rules, roles
and labels, and returns the new result, whose metrics.json equals the old one apart from the
entries in :data:`VARYING_KEYS` (the date and the computing times).  The demo's synthetic patient
is rebuilt from its seed.  The MAA case a ``plan`` wrote (``inputs.plan``) is reproduced the way the
plan made it: the case at the plan's reference activity, scaled to the planned activity
(:func:`~.planning.imageplan.plan_case`); the combined case of a multi-territory plan is refused
with what to do (run the plan again).
"""

import json
import math
import os

from .errors import InputError
from .params import DosimetryParams
from .pipeline import DERIVED_NORMAL_LIVER, DERIVED_PERFUSED_NORMAL, WHOLE_LIVER_ENTRY

__all__ = [
    "VARYING_KEYS",
    "read_record",
    "record_params",
    "record_rules",
    "record_rules_spec",
    "record_roles",
    "record_labels",
    "check_inputs_unchanged",
    "rerun_record",
    "compare_records",
]

#: Top-level entries of metrics.json that differ between two runs of the same case.
VARYING_KEYS = ("timings_s", "created_utc")
_INPUT_NAMES = {"activity_image": "activity image", "segmentation": "segmentation", "ct": "CT image", "labels": "label table",
                "dose_file": "dose map"}
#: Entries the engine adds to the segments (not segments of the input segmentation).
_DERIVED_ENTRIES = (DERIVED_NORMAL_LIVER, DERIVED_PERFUSED_NORMAL, WHOLE_LIVER_ENTRY)


def read_record(path):
    """The metrics.json of a result folder (or the file itself) as a dict; InputError when it is not one."""
    path = str(path)
    file = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise InputError(f"{path}: not a result folder (no metrics.json in it)" if os.path.isdir(path) else f"{path}: file not found")
    try:
        with open(file, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: cannot be read as JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("parameters"), dict):
        raise InputError(f"{file}: not the metrics.json of a result (no 'parameters')")
    return record


def record_params(record):
    return DosimetryParams.from_dict(record["parameters"])


def record_rules(record):
    """The recorded rule set as a dict for :func:`~.evaluation.rules.load_rules` (None when absent)."""
    rules = record.get("rules")
    return rules if isinstance(rules, dict) and isinstance(rules.get("rules"), list) else None


def record_roles(record):
    """{segment name: role} to give again: the roles the user gave (``inputs.roles_given``; the
    others are guessed again from the names, with the same warnings), or, in a record without
    them, the roles of every segment of the input segmentation as used."""
    inputs = record.get("inputs") or {}
    if isinstance(inputs.get("roles_given"), dict):
        return dict(inputs["roles_given"])
    roles = inputs.get("roles") or {}
    return {n: r for n, r in roles.items() if n not in _DERIVED_ENTRIES}


def record_rules_spec(record):
    """What to give as the rules of a rerun: None when the rule set was chosen from the clinical
    inputs and is still that preset (chosen again, with the same note), else the recorded rule set
    (a dict; None when the record has none)."""
    from .evaluation.rules import PRESETS

    rules = record_rules(record)
    if rules is None:
        return None
    preset = PRESETS.get(str((rules.get("origin") or {}).get("preset", "")))
    auto = record.get("rules_chosen") not in (None, "given")
    if auto and preset is not None and json.loads(json.dumps(preset.to_dict())) == rules:
        return None
    return rules


def record_labels(record):
    return (record.get("inputs") or {}).get("labels")


def check_inputs_unchanged(record):
    """Raise InputError naming the first recorded input file that is missing or whose SHA-256 changed."""
    from .imaging.provenance import sha256_of_path

    inputs = record.get("inputs") or {}
    for key, digest in (inputs.get("sha256") or {}).items():
        path = inputs.get(key)
        what = _INPUT_NAMES.get(key, key)
        if not path or not os.path.exists(path):
            raise InputError(f"the {what} of this result, {path}, is not there any more; it cannot be rerun")
        if sha256_of_path(path) != digest:
            raise InputError(
                f"the {what} {path} changed since this result was made (its SHA-256 differs): a rerun would not "
                "reproduce it; to compute with the new file use: tare-dosimetry run ... --params metrics.json"
            )


def _rerun_demo(record, params, rules, progress):
    from .imaging.phantom import demo_case_inputs, make_phantom
    from .pipeline import run_case

    seed = int(record["inputs"]["demo_seed"])
    case = make_phantom(analytic=False, seed=seed)
    result = run_case(case.activity, case.segmentation, params=params, ct=case.ct, rules=rules, roles=record_roles(record),
                      inputs=demo_case_inputs(case, seed), progress=progress)
    return result, {"activity": case.activity, "segmentation": case.segmentation, "ct": case.ct}


def rerun_record(record, progress=None):
    """Run again the case of a metrics.json record; returns (CaseResult, {'activity', 'segmentation', 'ct'}).

    Raises InputError when an input file is missing or changed (see :func:`check_inputs_unchanged`).
    """
    from .batch import run_case_files

    params, rules = record_params(record), record_rules_spec(record)
    inputs = record.get("inputs") or {}
    if "demo_seed" in inputs:
        return _rerun_demo(record, params, rules, progress)
    if isinstance(inputs.get("plan"), dict):
        return _rerun_plan(record, params, rules, progress)
    if not (inputs.get("activity_image") or inputs.get("dose_file")) or not inputs.get("segmentation"):
        raise InputError("this result does not record its input files (made by an older version?); it cannot be rerun")
    check_inputs_unchanged(record)
    common = dict(ct=inputs.get("ct"), labels=record_labels(record), roles=record_roles(record), params=params, rules=rules,
                  progress=progress, dicom=_record_dicom_options(inputs))
    if inputs.get("dose_file"):  # 'evaluate' of a dose map computed elsewhere
        from .batch import evaluate_dose_files

        dose_map = inputs.get("dose_map") or {}
        unit = dose_map.get("unit") if dose_map.get("unit_source") == "--dose-unit" else None
        return evaluate_dose_files(inputs["dose_file"], inputs["segmentation"], dose_unit=unit,
                                   dose_scale=float(dose_map.get("dose_scale", 1.0)), **common)
    modality = inputs.get("modality") or "spect"
    if modality not in ("spect", "pet"):  # e.g. 'MAA SPECT (planning)', the display label older plan folders recorded
        raise InputError(f"this result records the modality {modality!r}, not 'spect' or 'pet' (a plan folder made by an older "
                         "version?): it cannot be rerun; run the plan (or run) again with the same inputs")
    return run_case_files(inputs["activity_image"], inputs["segmentation"], modality=modality, **common)


def _rerun_plan(record, params, rules, progress):
    """The MAA case of a plan folder, computed as the plan computed it (see module docstring)."""
    from .planning.imageplan import base_case, plan_case, read_maa_inputs
    from .planning.voxel import VoxelDoseModel

    inputs = record["inputs"]
    plan = inputs["plan"]
    if plan.get("model") == "territories" or "reference_activity_gbq" not in plan:
        raise InputError("this is the combined MAA case of a multi-territory plan: it cannot be rerun on its own; run the plan "
                         "again (tare-dosimetry plan ... --territory ...) with the same inputs to reproduce it")
    if not inputs.get("activity_image") or not inputs.get("segmentation"):
        raise InputError("this plan's case does not record its input files (made by an older version?): run the plan again")
    check_inputs_unchanged(record)
    case_in = read_maa_inputs(inputs["activity_image"], inputs["segmentation"], ct=inputs.get("ct"), labels=record_labels(record),
                              params=params.replace(administered_activity_gbq=float(plan["reference_activity_gbq"])),
                              dicom=_record_dicom_options(inputs), progress=progress)
    recorded = {k: inputs[k] for k in ("description", "phase_basis") if k in inputs}
    base = base_case(case_in, case_in.params, roles=record_roles(record), rules=rules, inputs=dict(case_in.info, **recorded),
                     progress=progress)
    case = plan_case(VoxelDoseModel(base), float(plan["activity_gbq"]), base.rules, assumptions=plan.get("assumptions") or (),
                     plan={k: v for k, v in plan.items() if k not in ("activity_gbq", "reference_activity_gbq", "assumptions")})
    return case, {"activity": case_in.activity, "segmentation": case_in.segmentation, "ct": case_in.ct, "sources": case_in.sources}


def _record_dicom_options(inputs):
    """The DicomOptions a DICOM case was read with (the same series, timing source, overrides)."""
    from .imaging.caseinputs import DicomOptions

    recorded = inputs.get("dicom_options") or {}
    return DicomOptions(series_uids=tuple(recorded.get("series_uids") or ()),
                        allow_other_radionuclide=bool(recorded.get("allow_other_radionuclide", False)),
                        timing_overridden=bool(recorded.get("timing_overridden", False)),
                        quantitative_explicit=bool(recorded.get("quantitative_explicit", False)))


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def compare_records(old, new, ignore=VARYING_KEYS, limit=20):
    """Differences between two metrics.json dicts, as 'path: old -> new' lines (at most ``limit``).

    Entries named in ``ignore`` (top level) are skipped; numbers must be equal to the bit.
    """
    out = []

    def walk(a, b, path):
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                if not path and k in ignore:
                    continue
                walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}" if path else str(k))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        elif not _same(a, b):
            out.append(f"{path}: {json.dumps(a)[:80]} -> {json.dumps(b)[:80]}")

    walk(old, new, "")
    return out
