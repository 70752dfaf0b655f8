"""Writing a cohort analysis folder, all or nothing: cohort.json, the CSV tables, the figures and
cohort.html are written to a hidden folder next to the destination and moved in when complete
(cohort.json last)."""

import csv
import json
import math
import os
import shutil
import tempfile

import numpy as np

from ..reporting.outputs import check_output_dir

__all__ = ["write_cohort_outputs", "json_ready", "COHORT_FILES"]

#: Every file an analysis may write (an earlier analysis's file that this one does not write is removed).
COHORT_FILES = ("cohort.json", "cohort.html", "patients.csv", "lesions.csv", "dose_by_response.csv", "roc.csv",
                "roc_curve.csv", "fisher.csv", "toxicity_continuous.csv", "survival.csv", "numbers_at_risk.csv", "cox.csv",
                "dose_by_response.png", "roc.png", "km_response.png", "km_extent.png", "forest.png")


def json_ready(obj):
    """A copy with numpy scalars as Python numbers and NaN/inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_ready(v) for v in obj.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _write_tables(folder, tables):
    for name, (header, rows) in tables.items():
        with open(os.path.join(folder, name), "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)


def _move_in(tmp, out_dir):
    if not os.path.exists(out_dir) or not os.listdir(out_dir):
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.replace(tmp, out_dir)
        return
    fresh = set(os.listdir(tmp))
    for stale in COHORT_FILES:  # cohort.json first: the folder must not look complete while files change
        if (stale == "cohort.json" or stale not in fresh) and os.path.isfile(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    names = sorted(os.listdir(tmp), key=lambda n: n == "cohort.json")  # cohort.json last
    for n in names:
        os.replace(os.path.join(tmp, n), os.path.join(out_dir, n))
    shutil.rmtree(tmp, ignore_errors=True)


def write_cohort_outputs(out_dir, data, result, *, figures=True, overwrite=False):
    """Write the analysis folder; returns the list of file names written.

    Figures need matplotlib; without it (or with ``figures=False``) the tables and cohort.html are
    written and a warning says the figures are missing.
    """
    from .figures import cohort_figures
    from .report import write_cohort_html
    from .tables import cohort_tables
    from ..reporting.figures import MissingDependencyError

    check_output_dir(out_dir, overwrite)
    out_dir = os.path.abspath(str(out_dir))
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".partial-", dir=os.path.dirname(out_dir))
    try:
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # the usual permissions of a new folder, not mkdtemp's private 0700
        tables = cohort_tables(data, result)
        _write_tables(tmp, tables)
        pngs = {}
        if figures:
            try:
                pngs = cohort_figures(data, result, tmp)
            except MissingDependencyError as exc:
                result["warnings"].append(f"figures not drawn: {exc}")
        write_cohort_html(os.path.join(tmp, "cohort.html"), data, result, tables, pngs)
        with open(os.path.join(tmp, "cohort.json"), "w", encoding="utf-8") as fh:
            json.dump(json_ready(result), fh, indent=2, allow_nan=False)
        names = sorted(os.listdir(tmp))
        _move_in(tmp, out_dir)
        return names
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
