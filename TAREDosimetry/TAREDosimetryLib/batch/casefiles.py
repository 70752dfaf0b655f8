"""One case from files: read the images (DICOM too) and the segments, run the engine (or evaluate an
external dose map), write the result folder with its exports."""

from dataclasses import replace

from ..imaging.caseinputs import DicomOptions, read_case_inputs
from ..params import DosimetryParams
from ..pipeline import run_case

__all__ = ["run_case_files", "evaluate_dose_files", "run_files_and_write", "case_dicom_options"]


def run_case_files(image, segmentation, *, ct=None, labels=None, roles=None, params=None, rules=None,
                   modality="spect", progress=None, dicom=None):
    """Read the files of one case and run it.

    DICOM inputs are read with :func:`~..imaging.caseinputs.read_case_inputs`: the series chosen by
    modality and ``dicom.series_uids``, the activity image's units, radionuclide and timing taken
    from its header (they complete ``params``; the user's timing wins), RT Structure Sets
    rasterised onto the CT.

    Returns
    -------
    (CaseResult, inputs) where inputs holds the read Volumes/Segmentation for reports and exports:
    {'activity', 'segmentation', 'ct', 'sources'} (sources: the DICOM series of the activity image
    and the CT, or None).  'activity' is the activity map (GBq per voxel): the image read was
    turned into it (``run_case(..., overwrite_activity=True)``).
    """
    case = read_case_inputs(image, segmentation, ct=ct, labels=labels, modality=modality,
                            params=params or DosimetryParams(), dicom=dicom, progress=progress)
    # The image was read for this case alone: its array becomes the activity map (one image less in memory).
    result = run_case(case.activity, case.segmentation, params=case.params, roles=roles, ct=case.ct, rules=rules,
                      inputs=case.info, progress=progress, overwrite_activity=True)
    result.warnings[0:0] = case.warnings
    return result, {"activity": result.activity_gbq, "segmentation": case.segmentation, "ct": case.ct, "sources": case.sources}


def evaluate_dose_files(dose, segmentation, *, ct=None, labels=None, roles=None, params=None, rules=None,
                        dose_unit=None, dose_scale=1.0, progress=None, dicom=None):
    """Read a dose map computed elsewhere and its segments, and evaluate it like a computed dose.

    Returns
    -------
    (CaseResult, inputs) as :func:`run_case_files` ('activity' is None).
    """
    from ..imaging.dosemaps import read_dose_map
    from ..imaging.provenance import sha256_of_path
    from ..pipeline import evaluate_dose_case

    dicom = dicom or DicomOptions()
    if progress:
        progress(0.0, f"reading dose map {dose}")
    dose_vol, record, notes = read_dose_map(dose, dose_unit=dose_unit, dose_scale=dose_scale, series_uids=dicom.series_uids)
    case = read_case_inputs(None, segmentation, ct=ct, labels=labels, params=params or DosimetryParams(), dicom=dicom,
                            progress=progress, reference=dose_vol)
    case.info.update(dose_map=record, dose_file=record["dose_file"])
    case.info.setdefault("sha256", {})["dose_file"] = sha256_of_path(dose)
    result = evaluate_dose_case(dose_vol, case.segmentation, params=case.params, roles=roles, ct=case.ct, rules=rules,
                                inputs=case.info, progress=progress)
    result.summary["dose_map"] = record
    result.warnings[0:0] = notes + case.warnings
    return result, {"activity": None, "segmentation": case.segmentation, "ct": case.ct, "sources": case.sources,
                    "dose": dose_vol}


def case_dicom_options(case, dicom=None):
    """The batch's DicomOptions completed by the case's manifest row: its ``series`` column, and its
    timing columns (which then win over a DICOM header)."""
    dicom = dicom or DicomOptions()
    return replace(dicom, series_uids=tuple(case.get("series") or ()) or dicom.series_uids,
                   timing_overridden=dicom.timing_overridden or bool(case.get("timing_given")))


def run_files_and_write(case, params, rules, dest, overwrite, report, *, exports=None, pdf=False, dicom=None,
                        send=None):
    """The default case runner of a batch: the engine on the case's files (or ``evaluate`` of an
    external dose), then ``write_outputs`` with the DICOM/PDF exports, then ``send(files)`` when given.

    Parameters
    ----------
    case : dict, one case of :func:`~TAREDosimetryLib.batch.manifest.read_manifest`.
    params : DosimetryParams; rules : preset name, rule file or RuleSet; dest : result folder;
    overwrite : bool; report : bool (dvh.png and report.html).
    exports : DicomExports or None; pdf : bool (report.pdf); dicom : DicomOptions of the batch
        (completed by the case's row, :func:`case_dicom_options`); send : callable(files) that sends
        the case's DICOM files (a failed send fails the case; its results stay written).

    Returns
    -------
    CaseResult
    """
    from ..reporting.outputs import write_outputs

    common = dict(ct=case["ct"], labels=case["labels"], roles=case["roles"], params=params, rules=rules,
                  dicom=case_dicom_options(case, dicom))
    if case.get("dose"):
        result, inputs = evaluate_dose_files(case["dose"], case["segmentation"], dose_unit=case.get("dose_unit"),
                                             dose_scale=case.get("dose_scale", 1.0), **common)
    else:
        result, inputs = run_case_files(case["image"], case["segmentation"], modality=case["modality"], **common)
    files = write_outputs(result, dest, overwrite=overwrite, report=report,
                          background=inputs["ct"] or inputs["activity"] or inputs.get("dose"),
                          segmentation=inputs["segmentation"], pdf=pdf,
                          dicom=replace(exports, sources=inputs["sources"]) if exports is not None else None)
    if send is not None:
        send(files)
    return result
