"""Cohort analysis: tumour dose against response, hepatotoxicity and survival over many cases.

From the results of ``tare-dosimetry batch`` (or doses in the clinical table) and a clinical table
to the tables, figures and page of a dose-response study, reproducibly (``tare-dosimetry cohort``)::

    units.py        units of clinical quantities (header or values), conversions, mixtures refused
    clinical.py     reading and checking the clinical table (patients or lesions; response categories)
    doses.py        doses per lesion and patient from each case's metrics.json; extent from the lobes
    dataset.py      the clinical table joined with the doses (CohortData)
    groups.py       medians (IQR), Wilcoxon rank-sum
    contingency.py  Fisher's exact test (2 x 2, Freeman-Halton)
    roc.py          ROC, AUC (DeLong), Youden threshold with a bootstrap CI, threshold performance
    survival.py     Kaplan-Meier, median with CI, numbers at risk, log-rank
    cox.py          Cox proportional hazards (lifelines, optional) with the PH check
    analysis.py     every section of cohort.json
    tables.py       the CSV tables
    figures.py      dose by response, ROC, Kaplan-Meier with numbers at risk, forest plot (matplotlib)
    report.py       cohort.html
    outputs.py      writing the analysis folder, all or nothing
    synthetic.py    a synthetic cohort matching a published study's summaries

The statistics are plain functions over arrays that return plain dicts naming the test, its
assumptions and its sample sizes, with warnings when a group is too small.
"""

from .analysis import CohortOptions, analyse_cohort
from .clinical import ClinicalSpec, read_clinical_table
from .dataset import CohortData, load_cohort
from .outputs import write_cohort_outputs

__all__ = ["CohortOptions", "analyse_cohort", "ClinicalSpec", "read_clinical_table", "CohortData", "load_cohort",
           "write_cohort_outputs"]
