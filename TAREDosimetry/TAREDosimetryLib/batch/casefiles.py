"""One case from files: read the images and the segmentation, run the engine, write the result folder."""

import os

from ..imaging.images import read_image
from ..imaging.segmentation_io import read_segmentation
from ..pipeline import run_case

__all__ = ["run_case_files", "run_files_and_write"]


def run_case_files(image, segmentation, *, ct=None, labels=None, roles=None, params=None, rules=None,
                   modality="spect", progress=None):
    """Read the files of one case and run it.

    Returns
    -------
    (CaseResult, inputs) where inputs holds the read Volumes/Segmentation for reports:
    {'activity', 'segmentation', 'ct'}.
    """
    what = "PET image" if modality == "pet" else "SPECT image"
    if progress:
        progress(0.0, f"reading {what} {image}")
    act = read_image(image, what=what)
    if progress:
        progress(0.0, f"reading segmentation {segmentation}")
    seg = read_segmentation(segmentation, label_names=labels)
    ct_vol = None
    if ct:
        if progress:
            progress(0.0, f"reading CT {ct}")
        ct_vol = read_image(ct, what="CT image")
    info = {
        "activity_image": os.path.abspath(str(image)),
        "modality": modality,
        "segmentation": os.path.abspath(str(segmentation)),
        "ct": os.path.abspath(str(ct)) if ct else None,
        "activity_unit": act.unit or None,
    }
    result = run_case(act, seg, params=params, roles=roles, ct=ct_vol, rules=rules, inputs=info, progress=progress)
    return result, {"activity": act, "segmentation": seg, "ct": ct_vol}


def run_files_and_write(case, params, rules, dest, overwrite, report):
    """The default case runner of a batch: the engine on the case's files, then ``write_outputs``.

    Parameters
    ----------
    case : dict, one case of :func:`~TAREDosimetryLib.batch.manifest.read_manifest`.
    params : DosimetryParams; rules : preset name, rule file or RuleSet; dest : result folder;
    overwrite : bool; report : bool (dvh.png and report.html).

    Returns
    -------
    CaseResult
    """
    from ..reporting.outputs import write_outputs

    result, inputs = run_case_files(
        case["image"], case["segmentation"], ct=case["ct"], labels=case["labels"], roles=case["roles"],
        params=params, rules=rules, modality=case["modality"],
    )
    write_outputs(result, dest, overwrite=overwrite, report=report,
                  background=inputs["ct"] or inputs["activity"], segmentation=inputs["segmentation"])
    return result
