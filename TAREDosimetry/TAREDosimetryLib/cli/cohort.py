"""``tare-dosimetry cohort``: dose-response, toxicity and survival statistics of a cohort, from a folder
of batch results (or doses in the clinical table) and a clinical table."""

import argparse
import os
import sys

HELP = "cohort statistics: dose by response, ROC threshold, toxicity, survival, Cox"


def _epilog():
    from ..cohort.clinical import COLUMN_DOCS

    cols = "\n".join(f"  {name:<22} {meaning}" for name, meaning in COLUMN_DOCS)
    return f"""clinical table columns (CSV with , ; or tab; names are the defaults of the flags above):
{cols}

examples:
  tare-dosimetry batch --manifest cases.csv --out results/
  tare-dosimetry cohort --results results/ --clinical clinical.csv --out cohort/
  tare-dosimetry cohort --clinical doses_and_outcomes.csv --dose-column dose_gy --out cohort/
  tare-dosimetry cohort --demo --out cohort_demo/      # a synthetic cohort matching a published study

Outputs: cohort.json, CSV tables (patients, lesions, dose_by_response, roc, roc_curve, fisher,
toxicity_continuous, survival, numbers_at_risk, cox), figures (dose_by_response, roc, km_response,
km_extent, forest) and cohort.html.  Research software, not a medical device."""


def add_parser(sub):
    p = sub.add_parser("cohort", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog(),
                       description="Tumour dose against response (medians, Wilcoxon rank-sum, ROC with the Youden "
                       "threshold), hepatotoxicity (Fisher's exact and rank-sum tests), overall survival (Kaplan-Meier, "
                       "log-rank) and Cox proportional hazards, from batch results and a clinical table.")
    src = p.add_argument_group("inputs")
    src.add_argument("--results", metavar="DIR", help="the --out folder of 'tare-dosimetry batch' (<case_id>/metrics.json)")
    src.add_argument("--clinical", metavar="CSV", help="clinical table, one row per patient or per lesion (columns below)")
    src.add_argument("--demo", action="store_true", help="analyse a synthetic cohort built to match a published study")
    col = p.add_argument_group("columns of the clinical table")
    col.add_argument("--dose-column", metavar="NAME", help="tumour dose column when there are no --results (default dose_gy)")
    col.add_argument("--response-column", metavar="NAME", help="response column (default response)")
    col.add_argument("--time-column", metavar="NAME", help="overall survival time (default os_months)")
    col.add_argument("--event-column", metavar="NAME", help="death (1) or censored (0) (default os_event)")
    col.add_argument("--toxicity-column", metavar="NAME", help="hepatotoxicity CTCAE grade (default hepatotoxicity_grade)")
    col.add_argument("--responders", metavar="A,B", help="response categories counted as responders (default CR,PR,CMR,PMR, yes, 1)")
    col.add_argument("--non-responders", metavar="A,B", help="categories counted as non-responders (default SD,PD,SMD,PMD, no, 0)")
    a = p.add_argument_group("analysis")
    a.add_argument("--dose-metric", default="mean_gy", metavar="METRIC",
                   help="tumour metric from metrics.json: mean_gy (default), D70, bed_gy, eud_gy, v100_pct, ...")
    a.add_argument("--threshold-gy", type=float, default=79.5, help="threshold whose performance is reported (default 79.5)")
    a.add_argument("--covariates", metavar="A,B,C",
                   help="multivariable Cox covariates (default: those with univariable p < 0.10); names as in cox.csv")
    a.add_argument("--toxicity-min-grade", type=int, default=3, help="hepatotoxicity = grade >= this (default 3)")
    a.add_argument("--lobe-overlap-min-pct", type=float, default=5.0,
                   help="a tumour involves a lobe when this %% of its volume lies in the lobe segment (default 5)")
    a.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    a.add_argument("--seed", type=int, default=0, help="seed of the bootstraps (default 0)")
    a.add_argument("--no-cox", action="store_true", help="skip the Cox models (they need lifelines)")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty, unless --overwrite)")
    o.add_argument("--overwrite", action="store_true", help="replace the analysis files in a non-empty folder")
    o.add_argument("--no-figures", action="store_true", help="tables and cohort.html only (no matplotlib needed)")
    o.add_argument("--quiet", action="store_true", help="no summary on the console")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _spec(args):
    from ..cohort.clinical import ClinicalSpec

    spec = ClinicalSpec()
    explicit = []
    for attr in ("dose_column", "response_column", "time_column", "event_column", "toxicity_column"):
        v = getattr(args, attr)
        if v:
            setattr(spec, attr, v)
            explicit.append(attr)
    for attr in ("responders", "non_responders"):
        v = getattr(args, attr)
        if v:
            setattr(spec, attr, tuple(x.strip() for x in v.split(",") if x.strip()))
    spec.toxicity_min_grade = args.toxicity_min_grade
    spec.explicit = tuple(explicit)
    return spec


def _check_args(args):
    from ..errors import InputError
    from ..reporting.outputs import check_output_dir

    if args.demo and (args.results or args.clinical):
        raise InputError("--demo analyses the built-in synthetic cohort: give no --results or --clinical with it")
    if not args.demo and not args.clinical:
        raise InputError("--clinical is required (the clinical table), with --results (batch output) or --dose-column")
    if args.bootstrap < 100:
        raise InputError(f"--bootstrap must be >= 100 resamples, got {args.bootstrap}")
    if not (0 <= args.toxicity_min_grade <= 5):
        raise InputError(f"--toxicity-min-grade must be a CTCAE grade 0-5, got {args.toxicity_min_grade}")
    if not str(args.out).strip():
        raise InputError("--out is empty: give the output folder")
    check_output_dir(args.out, args.overwrite)


def main(args):
    from ..cohort.analysis import CohortOptions, analyse_cohort
    from ..cohort.cox import require_lifelines
    from ..cohort.dataset import load_cohort
    from ..cohort.outputs import write_cohort_outputs
    from ..cohort.report import headline_lines

    _check_args(args)
    if not args.no_cox:
        require_lifelines()
    clinical = args.clinical
    if args.demo:
        clinical = _demo_table(args.out)
    data = load_cohort(clinical, _spec(args), results_dir=args.results, dose_metric=args.dose_metric,
                       lobe_min_pct=args.lobe_overlap_min_pct)
    if args.demo:
        from ..cohort.synthetic import PUBLISHED

        data.notes.insert(0, f"SYNTHETIC cohort built to match the published summaries of {PUBLISHED['source']}; its "
                             "extent, laboratory values and toxicity are illustrative, not the study's")
    covs = tuple(c.strip() for c in args.covariates.split(",") if c.strip()) if args.covariates else None
    options = CohortOptions(threshold_gy=args.threshold_gy, n_boot=args.bootstrap, seed=args.seed,
                            toxicity_min_grade=args.toxicity_min_grade, multivariable=covs, cox=not args.no_cox)
    result = analyse_cohort(data, options)
    names = write_cohort_outputs(args.out, data, result, figures=not args.no_figures, overwrite=args.overwrite or args.demo)
    if not args.quiet:
        for line in headline_lines(result):
            print(line)
        for w in result["warnings"]:
            print(f"warning: {w}")
        print(f"results in {args.out}: " + ", ".join(names))
    return 0


def _demo_table(out):
    """Write the synthetic clinical table into the (new) output folder and return its path."""
    from ..cohort.synthetic import write_synthetic_clinical_csv

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "synthetic_clinical.csv")
    write_synthetic_clinical_csv(path)
    print(f"synthetic clinical table: {path}", file=sys.stderr)
    return path
