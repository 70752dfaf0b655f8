"""The cohort's data set: the clinical table joined with the doses (batch results or a dose column).

One :class:`CohortData` holds a record per patient and per lesion, with plain values:

- patient: ``case_id``, ``dose`` (the chosen metric, patient level), ``response`` (1/0/None),
  ``time_months``, ``event``, ``toxicity_grade``, ``extent_table``, ``extent_derived``, ``extent``
  (the table's value, else the derived one), ``nontumoral_liver_gy``, ``n_tumours``, ``covariates``.
- lesion: ``case_id``, ``lesion``, ``dose``, ``response`` (1/0/None), ``mass_g``, ``volume_ml``.
"""

from dataclasses import dataclass, field, replace

from ..errors import InputError
from .clinical import read_clinical_table
from .doses import case_doses, metric_key, read_case_metrics, result_case_ids

__all__ = ["CohortData", "load_cohort"]


@dataclass
class CohortData:
    patients: list
    lesions: list
    dose_metric: str
    dose_unit: str
    dose_source: str
    covariate_kinds: dict
    clinical_path: str = ""
    results_dir: str = ""
    units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    lesion_response: bool = False


def _unit_of(key):
    return "Gy" if key.endswith("_gy") else "%" if key.endswith("_pct") else "mL" if key.endswith("_ml") else ""


def _patient_record(p, doses=None):
    rec = {k: p.get(k) for k in ("case_id", "response", "response_raw", "time_months", "event", "toxicity_grade")}
    rec.update(extent_table=p.get("extent"), extent_derived=None, covariates=dict(p.get("covariates") or {}),
               dose=p.get("dose_gy"), nontumoral_liver_gy=None, perfused_normal_gy=None, n_tumours=None)
    if doses is not None:
        rec.update(dose=doses["patient_dose"], extent_derived=doses["extent_derived"], n_tumours=doses["n_tumours"],
                   nontumoral_liver_gy=doses["nontumoral_liver_gy"], perfused_normal_gy=doses["perfused_normal_gy"],
                   case_status=doses["overall_status"], case_warnings=doses["warnings"])
    rec["extent"] = rec["extent_table"] or rec["extent_derived"]
    return rec


def _lesions_from_results(cid, table_lesions, doses, where):
    """Lesion records of one case: its tumour segments, with the table's lesion responses when given."""
    by_name = {les["lesion"]: les for les in doses["lesions"]}
    out = []
    if table_lesions:
        for tl in table_lesions:
            if tl["lesion"] not in by_name:
                raise InputError(f"{where}: case {cid!r}: lesion {tl['lesion']!r} is not a tumour segment of its result "
                                 f"(tumours: {', '.join(by_name) or 'none'})")
            les = by_name[tl["lesion"]]
            out.append(dict(les, case_id=cid, response=tl["response"]))
    else:
        out = [dict(les, case_id=cid, response=None) for les in doses["lesions"]]
    return out


def _extent_notes(patients, data):
    for p in patients:
        if p["extent_table"] and p["extent_derived"] and p["extent_table"] != p["extent_derived"]:
            data.warnings.append(f"case {p['case_id']}: extent {p['extent_table']} in the clinical table, "
                                 f"{p['extent_derived']} from the segments (the table's value is used)")


def load_cohort(clinical_path, spec, *, results_dir=None, dose_metric="mean_gy", lobe_min_pct=5.0):
    """Read the clinical table and the doses into a :class:`CohortData`.

    With ``results_dir`` the doses come from the batch results (``spec.dose_column`` must then not
    be given); without it from the clinical table's dose column (``spec.dose_column``, default
    ``dose_gy``).  Unknown case_ids and lesions are refused (InputError).
    """
    spec = replace(spec)  # the caller's spec stays as it was
    if results_dir:
        if spec.dose_column:
            raise InputError("--dose-column and --results both give the dose: use one")
        return _from_results(clinical_path, spec, results_dir, metric_key(dose_metric), lobe_min_pct)
    spec.dose_column = spec.dose_column or "dose_gy"
    if "dose_column" not in spec.explicit:
        spec.explicit = tuple(spec.explicit) + ("dose_column",)
    table = read_clinical_table(clinical_path, spec)
    data = CohortData([_patient_record(p) for p in table.patients.values()], [], spec.dose_column, "Gy",
                      f"column {spec.dose_column} of the clinical table", table.covariate_kinds, clinical_path,
                      units=table.units, notes=list(table.notes), warnings=list(table.warnings))
    data.lesions = [dict(les, dose=les["dose_gy"]) for les in table.lesions]
    _patient_dose_from_lesions(data)
    data.lesion_response = any(les["response"] is not None for les in data.lesions)
    return data


def _patient_dose_from_lesions(data):
    """Without results and with one dose per lesion: the patient's dose is the plain mean of its lesions'
    (no masses are known), said in the notes."""
    used = False
    for p in data.patients:
        if p["dose"] is None:
            vals = [les["dose"] for les in data.lesions if les["case_id"] == p["case_id"] and les["dose"] is not None]
            if vals:
                p["dose"] = sum(vals) / len(vals)
                used = True
    if used:
        data.notes.append("patient dose = plain mean of its lesions' doses from the clinical table (lesion masses unknown)")


def _from_results(clinical_path, spec, results_dir, key, lobe_min_pct):
    ids = result_case_ids(results_dir)
    table = read_clinical_table(clinical_path, spec, known_case_ids=set(ids))
    data = CohortData([], [], key, _unit_of(key), f"{key} of the tumour segments in {results_dir}/<case_id>/metrics.json",
                      table.covariate_kinds, clinical_path, results_dir, units=table.units, notes=list(table.notes),
                      warnings=list(table.warnings))
    lesions_by_case = {}
    for tl in table.lesions:
        lesions_by_case.setdefault(tl["case_id"], []).append(tl)
    for cid, p in table.patients.items():
        doses = case_doses(read_case_metrics(results_dir, cid), key, cid, lobe_min_pct)
        data.patients.append(_patient_record(p, doses))
        data.lesions += _lesions_from_results(cid, lesions_by_case.get(cid), doses, f"--clinical {clinical_path}")
        if doses["n_tumours"] == 0:
            data.warnings.append(f"case {cid}: no tumour segment in its result: no tumour dose")
    extra = sorted(set(ids) - set(table.patients))
    if extra:
        data.notes.append(f"{len(extra)} case(s) of --results have no clinical row and are not analysed: "
                          + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
    data.lesion_response = any(les["response"] is not None for les in data.lesions)
    _extent_notes(data.patients, data)
    return data
