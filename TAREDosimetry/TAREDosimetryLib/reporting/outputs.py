"""Writing a case's results to a folder, all or nothing.

Files: ``dose.nrrd`` (Gy, activity grid, same physical geometry as the input image),
``metrics.json`` (parameters, constants, versions, per-segment metrics, rule evaluations),
``metrics.csv``, ``dvh.csv`` (segment, dose_gy, volume_pct), ``dvh.png`` and ``report.html``.

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

__all__ = ["OUTPUT_FILES", "check_output_dir", "write_folder", "write_case_files", "write_outputs", "metrics_csv_rows", "dvh_csv_rows"]

OUTPUT_FILES = ("dose.nrrd", "metrics.json", "metrics.csv", "dvh.csv", "dvh.png", "report.html")


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


def write_folder(out_dir, write_files, owned_files, *, overwrite=False, last="metrics.json"):
    """Write a result folder all or nothing (the rules of the module docstring).

    Parameters
    ----------
    out_dir : str
    write_files : callable(tmp_dir) -> list of the file names it wrote into ``tmp_dir``; the file
        ``last`` (when written) must be written last by it, as it marks a complete result.
    owned_files : the file names this kind of result may hold; with ``overwrite`` only these are
        replaced (stale ones removed) and the user's other files stay.

    Returns
    -------
    list of the written file paths (in ``out_dir``).
    """
    check_output_dir(out_dir, overwrite)
    out_dir = os.path.abspath(str(out_dir))
    parent = os.path.dirname(out_dir)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".partial-", dir=parent)
    try:
        # mkdtemp makes the folder private (0700); the result folder it becomes gets the usual
        # permissions of a new folder (0777 less the umask), as os.makedirs would give it.
        os.chmod(tmp, 0o777 & ~_current_umask())
        names = list(write_files(tmp))
        if not os.path.exists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
            if os.path.isdir(out_dir):
                os.rmdir(out_dir)
            os.replace(tmp, out_dir)
        else:
            # Replace our files only; the marker file goes last so the folder never looks complete early.
            for n in owned_files:  # stale results of an earlier run (the marker among them)
                if n not in names or n == last:
                    stale = os.path.join(out_dir, n)
                    if os.path.isfile(stale):
                        os.remove(stale)
            for n in [n for n in names if n != last] + [n for n in names if n == last]:
                os.replace(os.path.join(tmp, n), os.path.join(out_dir, n))
            shutil.rmtree(tmp, ignore_errors=True)
        return [os.path.join(out_dir, n) for n in names]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_case_files(result, folder, *, report=True, background=None, segmentation=None, progress=None, extra_report_html=None):
    """Write a case's files (:data:`OUTPUT_FILES`) into ``folder`` (a temporary folder of
    :func:`write_folder`), metrics.json last; returns the names written."""
    if progress:
        progress(0.0, "writing dose.nrrd")
    write_image(result.dose_gy, os.path.join(folder, "dose.nrrd"))
    _write_csv(os.path.join(folder, "metrics.csv"), *metrics_csv_rows(result))
    _write_csv(os.path.join(folder, "dvh.csv"), *dvh_csv_rows(result))
    names = ["dose.nrrd", "metrics.csv", "dvh.csv"]
    if report:
        from .figures import plot_dvh
        from .html import write_report_html

        if progress:
            progress(0.4, "writing dvh.png and report.html")
        try:
            plot_dvh(result, os.path.join(folder, "dvh.png"))
            names.append("dvh.png")
        except ImportError as exc:
            result.warnings.append(f"dvh.png not written: {exc}")
        write_report_html(result, os.path.join(folder, "report.html"), background=background, segmentation=segmentation,
                          extra_html=extra_report_html)
        names.append("report.html")
    # metrics.json last: its presence marks a complete result.
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(result.to_dict(), fh, indent=2, allow_nan=False)
    return names + ["metrics.json"]


def write_outputs(result, out_dir, *, overwrite=False, report=True, background=None, segmentation=None, progress=None,
                  extra_report_html=None):
    """Write the result files into ``out_dir`` (see module docstring).

    Parameters
    ----------
    result : CaseResult
    out_dir : str
    overwrite : bool, replace our files in an existing non-empty folder.
    report : bool, also write dvh.png and report.html (needs matplotlib for the figures).
    background : Volume, optional, image under the dose in the report's slices (CT or SPECT).
    segmentation : Segmentation, optional, contours in the report's slices.
    extra_report_html : str, optional, an HTML section placed in report.html under the banner
        (the treatment plan of ``tare-dosimetry plan``).

    Returns
    -------
    list of the written file paths.
    """

    def write_files(tmp):
        return write_case_files(result, tmp, report=report, background=background, segmentation=segmentation, progress=progress,
                                extra_report_html=extra_report_html)

    return write_folder(out_dir, write_files, OUTPUT_FILES, overwrite=overwrite)
