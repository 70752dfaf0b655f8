"""Writing a case's results to a folder, all or nothing.

Files: ``dose.nrrd`` (Gy, activity grid, same physical geometry as the input image),
``metrics.json`` (parameters, constants, versions, per-segment metrics, rule evaluations),
``metrics.csv``, ``dvh.csv`` (segment, dose_gy, volume_pct), ``dvh.png`` and ``report.html``;
on request ``report.pdf`` and the DICOM exports ``dose.dcm`` (RT Dose), ``segments.dcm`` (SEG) and
``metrics_sr.dcm`` (SR) (:mod:`.dicomexport`).

Everything is first written to a hidden temporary folder next to the destination and moved in
only when every file is complete, so a failure never leaves a half-written result that looks
finished.  An existing non-empty folder is refused unless ``overwrite=True``; then only the
files listed above are replaced and the user's other files stay.
"""

import csv
import json
import os
import shutil
import tempfile

import numpy as np

from ..errors import InputError
from ..imaging.images import write_image
from .tables import metrics_table_rows

__all__ = ["OUTPUT_FILES", "check_output_dir", "write_outputs", "metrics_csv_rows", "dvh_csv_rows"]

OUTPUT_FILES = ("dose.nrrd", "metrics.json", "metrics.csv", "dvh.csv", "dvh.png", "report.html", "report.pdf", "dose.dcm",
                "segments.dcm", "metrics_sr.dcm")


def check_output_dir(out_dir, overwrite=False):
    """Raise InputError when ``out_dir`` cannot receive results (before any work is done)."""
    out_dir = str(out_dir)
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise InputError(f"--out {out_dir}: exists and is not a folder")
        if os.listdir(out_dir) and not overwrite:
            raise InputError(f"--out {out_dir}: folder exists and is not empty; choose another folder or add --overwrite")
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    if not os.path.isdir(parent):
        raise InputError(f"--out {out_dir}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--out {out_dir}: parent folder {parent} is not writable")


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


def metrics_csv_rows(result):
    """(header, rows) of the per-segment metrics table (one row per segment), as in the HTML report."""
    cols, rows = metrics_table_rows(result)
    return list(cols), [[_fmt(v) for v in r] for r in rows]


def dvh_csv_rows(result):
    """(header, rows) of the cumulative DVH curves, every ``params.dvh_curve_step_gy`` Gy."""
    rows = []
    for s in result.segments:
        if s.dvh is None:
            continue
        dose, vol = s.dvh.curve(result.params.dvh_curve_step_gy)
        rows.extend([s.name, f"{d:.6g}", f"{v:.6g}"] for d, v in zip(dose, vol))
    return ["segment", "dose_gy", "volume_pct"], rows


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _write_extra_outputs(result, tmp, *, dicom, pdf, background, segmentation, progress):
    """report.pdf and the DICOM exports (dose.dcm, segments.dcm, metrics_sr.dcm); their record goes
    into ``result.summary['exports']``.  Returns the file names written."""
    names = []
    if pdf:
        from .pdf import write_report_pdf

        if progress:
            progress(0.45, "writing report.pdf")
        write_report_pdf(result, os.path.join(tmp, "report.pdf"), background=background, segmentation=segmentation)
        names.append("report.pdf")
    if dicom is not None and dicom.wanted:
        from .dicomexport import write_dicom_exports

        written, record = write_dicom_exports(result, tmp, dicom, segmentation=segmentation, progress=progress)
        names += written
        result.summary["exports"] = record
    return names


def write_outputs(result, out_dir, *, overwrite=False, report=True, background=None, segmentation=None, progress=None,
                  dicom=None, pdf=False):
    """Write the result files into ``out_dir`` (see module docstring).

    Parameters
    ----------
    result : CaseResult
    out_dir : str
    overwrite : bool, replace our files in an existing non-empty folder.
    report : bool, also write dvh.png and report.html (needs matplotlib for the figures).
    background : Volume, optional, image under the dose in the report's slices (CT or SPECT).
    segmentation : Segmentation, optional, contours in the report's slices (and the DICOM SEG).
    dicom : :class:`~.dicomexport.DicomExports`, optional: RT Dose, SEG and SR to write.
    pdf : bool, also write report.pdf (needs matplotlib).

    Returns
    -------
    list of the written file paths.
    """
    check_output_dir(out_dir, overwrite)
    out_dir = os.path.abspath(str(out_dir))
    parent = os.path.dirname(out_dir)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".partial-", dir=parent)
    try:
        # mkdtemp makes the folder private (0700); the result folder it becomes gets the usual
        # permissions of a new folder (0777 less the umask), as os.makedirs would give it.
        os.chmod(tmp, 0o777 & ~_current_umask())
        if progress:
            progress(0.0, "writing dose.nrrd")
        write_image(result.dose_gy, os.path.join(tmp, "dose.nrrd"))
        _write_csv(os.path.join(tmp, "metrics.csv"), *metrics_csv_rows(result))
        _write_csv(os.path.join(tmp, "dvh.csv"), *dvh_csv_rows(result))
        names = ["dose.nrrd", "metrics.csv", "dvh.csv"]
        if report:
            from .figures import plot_dvh
            from .html import write_report_html

            if progress:
                progress(0.4, "writing dvh.png and report.html")
            try:
                plot_dvh(result, os.path.join(tmp, "dvh.png"))
                names.append("dvh.png")
            except ImportError as exc:
                result.warnings.append(f"dvh.png not written: {exc}")
            write_report_html(result, os.path.join(tmp, "report.html"), background=background, segmentation=segmentation)
            names.append("report.html")
        names += _write_extra_outputs(result, tmp, dicom=dicom, pdf=pdf, background=background,
                                      segmentation=segmentation, progress=progress)
        # metrics.json last: its presence marks a complete result.
        with open(os.path.join(tmp, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(result.to_dict(), fh, indent=2, allow_nan=False)
        names.append("metrics.json")
        if not os.path.exists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
            if os.path.isdir(out_dir):
                os.rmdir(out_dir)
            os.replace(tmp, out_dir)
        else:
            # Replace our files only; metrics.json goes last so the folder never looks complete early.
            for n in OUTPUT_FILES:  # stale results of an earlier run (metrics.json among them)
                if n not in names or n == "metrics.json":
                    stale = os.path.join(out_dir, n)
                    if os.path.isfile(stale):
                        os.remove(stale)
            for n in names:
                os.replace(os.path.join(tmp, n), os.path.join(out_dir, n))
            shutil.rmtree(tmp, ignore_errors=True)
        return [os.path.join(out_dir, n) for n in names]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
