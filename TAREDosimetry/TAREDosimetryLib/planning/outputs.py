"""Result folders of ``tare-dosimetry plan`` and ``compare``, written all or nothing like ``run``'s
(:func:`TAREDosimetryLib.reporting.outputs.write_folder`).

Plan folder: ``plan.json`` (written last: it marks a complete plan), ``what_if.csv``,
``report.html``; from images also the MAA case at the recommended activity (``dose.nrrd``,
``metrics.json``, ``metrics.csv``, ``dvh.csv``, ``dvh.png``) and ``dose_per_gbq.nrrd``.
"""

import csv
import json
import os

from ..imaging.images import write_image
from ..reporting.html import page_html
from ..reporting.outputs import OUTPUT_FILES, write_case_files, write_folder
from .planreport import plan_section_html, what_if_csv_rows

__all__ = ["PLAN_FILES", "write_plan_folder", "write_csv"]

PLAN_FILES = ("plan.json", "what_if.csv", "report.html", "dose_per_gbq.nrrd") + tuple(f for f in OUTPUT_FILES if f != "report.html")


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_plan_folder(plan, out_dir, *, case=None, background=None, segmentation=None, overwrite=False, report=True):
    """Write a :class:`~.plan.Plan` (and, from images, ``case``: the MAA CaseResult at the
    recommended activity) into ``out_dir``; returns the written paths."""
    d = plan.to_dict()
    section = plan_section_html(d)

    def write_files(tmp):
        names = []
        if case is not None:
            names += write_case_files(case, tmp, report=report, background=background, segmentation=segmentation,
                                      extra_report_html=section)
            write_image(plan.voxel_model.dose_per_gbq, os.path.join(tmp, "dose_per_gbq.nrrd"))
            names.append("dose_per_gbq.nrrd")
        elif report:
            with open(os.path.join(tmp, "report.html"), "w", encoding="utf-8") as fh:
                fh.write(page_html("Y-90 radioembolization treatment plan", [section]))
            names.append("report.html")
        write_csv(os.path.join(tmp, "what_if.csv"), *what_if_csv_rows(d))
        names.append("what_if.csv")
        with open(os.path.join(tmp, "plan.json"), "w", encoding="utf-8") as fh:
            json.dump(d, fh, indent=2, allow_nan=False)
        return names + ["plan.json"]

    return write_folder(out_dir, write_files, PLAN_FILES, overwrite=overwrite, last="plan.json")
