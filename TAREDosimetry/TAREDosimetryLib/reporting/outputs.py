"""Writing a case's results to a folder, whole or not at all.

Files: ``dose.nrrd`` (Gy, activity grid, same physical geometry as the input image),
``metrics.json`` (parameters, constants, versions, per-segment metrics, rule evaluations),
``metrics.csv``, ``dvh.csv`` (segment, dose_gy, volume_pct), ``dvh.png`` and ``report.html``;
on request ``report.pdf`` and the DICOM exports ``dose.dcm`` (RT Dose), ``segments.dcm`` (SEG) and
``metrics_sr.dcm`` (SR) (:mod:`.dicomexport`).

Everything is first written to a hidden folder next to the destination and swapped in only when
every file is complete (:mod:`.resultfolder`): a failure or an interruption leaves the earlier
result and the user's other files exactly as they were, and a second run writing into the same
folder at the same time is refused.  An existing non-empty folder is refused unless
``overwrite=True``; then only the files listed above are replaced and the user's other files stay.
"""

import csv
import io
import json
import os
import shutil

import numpy as np

from ..imaging.nrrdwrite import write_nrrd
from .resultfolder import RESULT_FILES, check_output_dir, make_partial_dir, place_errors, reserve_output_dir, swap_into
from .tables import metrics_table_rows

__all__ = ["OUTPUT_FILES", "check_output_dir", "write_folder", "write_case_files", "write_outputs", "metrics_csv_rows", "dvh_csv_rows"]

#: Files of a result (metrics.json, which marks a complete result, last).
OUTPUT_FILES = RESULT_FILES


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


#: Text columns of metrics.csv after the numbers: what the row is (a derived entry, a default lung
#: mass), whether the segment is too small for the image resolution, and its warnings (' | ').
CSV_TEXT_COLUMNS = ("note", "pv_warning", "warnings")


def metrics_csv_rows(result):
    """(header, rows) of the per-segment metrics table (one row per segment), as in the HTML report,
    with the text columns :data:`CSV_TEXT_COLUMNS` at the end, so that a reader of the CSV alone sees a
    flagged row (metrics.json holds the same, per segment)."""
    cols, rows = metrics_table_rows(result)
    texts = [[s.note or "", "true" if s.pv_warning else "false", " | ".join(s.warnings)] for s in result.segments]
    return list(cols) + list(CSV_TEXT_COLUMNS), [[_fmt(v) for v in r] + t for r, t in zip(rows, texts)]


#: Columns of dvh.csv.
DVH_CSV_HEADER = ("segment", "dose_gy", "volume_pct")


def _dvh_columns(result):
    """(segment name, dose texts, volume texts) of each segment's cumulative DVH curve, every
    ``params.dvh_curve_step_gy`` Gy: the cells of dvh.csv (the dose texts repeat from one segment to
    the next: each dose formatted once)."""
    dose_text = {}
    for s in result.segments:
        if s.dvh is None:
            continue
        dose, vol = s.dvh.curve(result.params.dvh_curve_step_gy)
        yield (s.name, [dose_text.get(d) or dose_text.setdefault(d, f"{d:.6g}") for d in dose.tolist()],
               [f"{v:.6g}" for v in vol.tolist()])


def dvh_csv_rows(result):
    """(header, rows) of the cumulative DVH curves, every ``params.dvh_curve_step_gy`` Gy."""
    rows = []
    for name, doses, vols in _dvh_columns(result):
        rows.extend([name, d, v] for d, v in zip(doses, vols))
    return list(DVH_CSV_HEADER), rows


def dose_header(result):
    """Header entries of dose.nrrd saying what it is: the NRRD ``content`` field and key/value
    lines (unit Gy, the quantity, the method, the software), read by any NRRD reader."""
    from ..version import __version__

    method = {"ldm": "local deposition (LDM)", "dvk": "dose-voxel-kernel convolution (DVK)"}.get(result.params.method, result.params.method)
    external = result.summary.get("dose_source") == "external"
    if external:
        method = "an external dose map, evaluated"
    return {
        "NRRD_content": f"Y-90 absorbed dose in Gy ({method}), TAREDosimetry {__version__}",
        "unit": "Gy",
        "quantity": "absorbed dose",
        "radionuclide": "Y-90",
        "dose_method": "external" if external else result.params.method,
        "calibration": "" if external else result.params.calibration,
        "software": f"TAREDosimetry {__version__}",
        "created_utc": getattr(result, "created_utc", ""),
    }


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _csv_line(cells):
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


def _write_dvh_csv(path, result):
    """dvh.csv as :func:`_write_csv` writes :func:`dvh_csv_rows` (same bytes), a segment's lines at a
    time, without the rows as lists (23 000 lines for the MAA case)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(_csv_line(DVH_CSV_HEADER))
        for name, doses, vols in _dvh_columns(result):
            prefix = _csv_line([name])[:-2]  # the numbers need no quoting; the segment's name may (commas, quotes)
            fh.write("".join([f"{prefix},{d},{v}\r\n" for d, v in zip(doses, vols)]))


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


def write_folder(out_dir, write_files, owned_files=OUTPUT_FILES, *, overwrite=False, last="metrics.json"):
    """Write a result folder whole or not at all (:mod:`.resultfolder`: lock, write aside, swap in).

    Parameters
    ----------
    out_dir : str
    write_files : callable(tmp_dir) -> list of the file names it wrote into ``tmp_dir``.
    owned_files : the file names this kind of result may hold; with ``overwrite`` only these are
        replaced (stale ones removed) and the user's other files stay.
    last : str, the file of ``owned_files`` that marks a complete result (moved in last).

    Returns
    -------
    list of the written file paths (in ``out_dir``).

    Raises
    ------
    InputError : ``out_dir`` cannot take the results (not empty without ``overwrite``, a result
        file name that is a folder or read-only, not writable, another run writing there), or
        writing failed for a reason of the place (permissions, disk full); nothing was changed.
    """
    kind = {"files": tuple(owned_files), "marker": last}
    with reserve_output_dir(out_dir, overwrite, **kind) as out_abs:
        with place_errors(out_dir):
            tmp = make_partial_dir(out_abs)
        try:
            with place_errors(out_dir):
                names = list(write_files(tmp))
                swap_into(tmp, out_abs, names, **kind)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [os.path.join(out_abs, n) for n in names]


def write_case_files(result, folder, *, report=True, background=None, segmentation=None, progress=None, extra_report_html=None,
                     dicom=None, pdf=False):
    """Write a case's files (:data:`OUTPUT_FILES`) into ``folder`` (the partial folder of
    :func:`write_folder`), metrics.json last; returns the names written."""
    from concurrent.futures import ThreadPoolExecutor

    if progress:
        progress(0.0, "writing dose.nrrd")
    with ThreadPoolExecutor(max_workers=1) as pool:  # zlib compresses dose.nrrd while the rest is written
        dose_file = pool.submit(write_nrrd, result.dose_gy, os.path.join(folder, "dose.nrrd"), metadata=dose_header(result))
        names = _write_tables_and_report(result, folder, report, background, segmentation, progress, extra_report_html)
        dose_file.result()  # its error, if any, is raised here
    names = ["dose.nrrd"] + names
    names += _write_extra_outputs(result, folder, dicom=dicom, pdf=pdf, background=background,
                                  segmentation=segmentation, progress=progress)
    # metrics.json last: its presence marks a complete result.
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(result.to_dict(), fh, indent=2, allow_nan=False)
    return names + ["metrics.json"]


def _write_tables_and_report(result, tmp, report, background, segmentation, progress, extra_report_html=None):
    """metrics.csv, dvh.csv and, with ``report``, dvh.png and report.html; returns their names."""
    _write_csv(os.path.join(tmp, "metrics.csv"), *metrics_csv_rows(result))
    _write_dvh_csv(os.path.join(tmp, "dvh.csv"), result)
    names = ["metrics.csv", "dvh.csv"]
    if report:
        from .figures import plot_dvh
        from .html import write_report_html

        if progress:
            progress(0.4, "writing dvh.png and report.html")
        dvh_png = None
        try:
            dvh_png = plot_dvh(result, os.path.join(tmp, "dvh.png"))  # drawn once: dvh.png and the report
            names.append("dvh.png")
        except ImportError as exc:
            result.warnings.append(f"dvh.png not written: {exc}")
        write_report_html(result, os.path.join(tmp, "report.html"), background=background, segmentation=segmentation,
                          dvh_png=dvh_png, extra_html=extra_report_html)
        names.append("report.html")
    return names


def write_outputs(result, out_dir, *, overwrite=False, report=True, background=None, segmentation=None, progress=None,
                  dicom=None, pdf=False, extra_report_html=None):
    """Write the result files into ``out_dir``, whole or not at all (see module docstring).

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
    extra_report_html : str, optional, an HTML section placed in report.html under the banner
        (the treatment plan of ``tare-dosimetry plan``).

    Returns
    -------
    list of the written file paths.

    Raises
    ------
    InputError : see :func:`write_folder`; nothing was changed.
    """

    def write_files(tmp):
        return write_case_files(result, tmp, report=report, background=background, segmentation=segmentation, progress=progress,
                                extra_report_html=extra_report_html, dicom=dicom, pdf=pdf)

    return write_folder(out_dir, write_files, OUTPUT_FILES, overwrite=overwrite)
