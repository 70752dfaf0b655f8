"""Result folders of ``tare-dosimetry plan`` and ``compare``, written all or nothing like ``run``'s
(:func:`TAREDosimetryLib.reporting.outputs.write_folder`).

Compare folder: ``comparison.json`` (last), ``comparison.csv``, ``delivered_on_plan.nrrd``,
``dose_difference.nrrd`` (delivered - planned, Gy), ``gamma.nrrd`` (-1 where not evaluated),
``registration.tfm`` (when registered or given) and ``report.html``.

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
from .plan import json_clean
from .planreport import compare_section_html, comparison_csv_rows, plan_section_html, what_if_csv_rows

__all__ = ["PLAN_FILES", "COMPARE_FILES", "write_plan_folder", "write_compare_folder", "write_csv"]

COMPARE_FILES = ("comparison.json", "comparison.csv", "delivered_on_plan.nrrd", "dose_difference.nrrd", "gamma.nrrd", "registration.tfm",
                 "report.html")
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
            if plan.voxel_model is not None:  # a multi-territory plan has one dose per GBq per territory: none written
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


def _registration_png(comparison, fixed, moved):
    from ..reporting.figures import MissingDependencyError, plot_registration_check

    if fixed is None or moved is None:
        return None
    try:
        return plot_registration_check(fixed.array, moved.array, comparison.difference_gy.array)
    except MissingDependencyError as exc:
        comparison.warnings.append(f"registration figure not drawn: {exc}")
        return None


def write_compare_folder(comparison, out_dir, *, transform=None, fixed_image=None, moved_image=None, overwrite=False, report=True):
    """Write a :class:`~.compare.Comparison` into ``out_dir``; ``fixed_image`` and ``moved_image``
    (the planning image and the registered post-treatment image on its grid) give the figure."""
    from .registration import write_transform

    def write_files(tmp):
        names = []
        for name, vol in (("delivered_on_plan.nrrd", comparison.delivered_on_plan), ("dose_difference.nrrd", comparison.difference_gy),
                          ("gamma.nrrd", comparison.gamma_map)):
            if vol is not None:
                write_image(vol, os.path.join(tmp, name))
                names.append(name)
        if transform is not None:
            names.append(os.path.basename(write_transform(transform, os.path.join(tmp, "registration.tfm"))))
        d = json_clean(comparison.to_dict())
        write_csv(os.path.join(tmp, "comparison.csv"), *comparison_csv_rows(d))
        names.append("comparison.csv")
        if report:
            png = _registration_png(comparison, fixed_image, moved_image)
            with open(os.path.join(tmp, "report.html"), "w", encoding="utf-8") as fh:
                fh.write(page_html("Y-90 radioembolization: predicted versus delivered", [compare_section_html(json_clean(comparison.to_dict()), png)]))
            names.append("report.html")
        with open(os.path.join(tmp, "comparison.json"), "w", encoding="utf-8") as fh:
            json.dump(json_clean(comparison.to_dict()), fh, indent=2, allow_nan=False)
        return names + ["comparison.json"]

    return write_folder(out_dir, write_files, COMPARE_FILES, overwrite=overwrite, last="comparison.json")
