"""A synthetic cohort built to match the published summaries of the breast-cancer study behind the
default threshold preset, for the validation tests, the ``tare-dosimetry cohort --demo`` and the README.

Published (Deipolyi AR et al., "Relationship of radiation dose to efficacy of radioembolization of
liver metastasis from breast cancer", Eur J Radiol 2021): 64 patients, 60 with a PET response;
46 responders with tumour dose 167 (IQR 96-217) Gy against 54 (45-62) Gy in the 14 non-responders
(Wilcoxon p < 0.001); a 79.5 Gy threshold for response; median overall survival 11 months, 17 months
with response against 10 without (log-rank p = 0.027).

Construction (deterministic for a seed): each group's doses are a smooth sorted sequence whose
order statistics around the quartiles are placed so that the quartiles (linear interpolation, R
type 7) equal the published ones exactly; survival times are placed so that the Kaplan-Meier
medians are exactly 17 and 10 months and, with the four patients without a response assessment
(early deaths, as patients who did not reach follow-up imaging), 11 months over all 64.  Nothing
else of the study is reproduced: extent, AST, ALT, bilirubin, albumin and hepatotoxicity are
illustrative, drawn so that bilobar disease and a high AST go with shorter survival.
"""

import csv

import numpy as np

__all__ = ["PUBLISHED", "synthetic_breast_cohort", "write_synthetic_clinical_csv"]

PUBLISHED = {
    "source": "Deipolyi AR et al., Eur J Radiol 2021 (breast-cancer liver metastases, Y-90 radioembolization)",
    "patients": 64, "with_response": 60, "responders": 46, "non_responders": 14,
    "responders_dose_gy": {"median": 167.0, "q1": 96.0, "q3": 217.0},
    "non_responders_dose_gy": {"median": 54.0, "q1": 45.0, "q3": 62.0},
    "threshold_gy": 79.5, "median_os_months": 11.0, "median_os_responders_months": 17.0,
    "median_os_non_responders_months": 10.0,
}

# index -> value of the sorted doses (Gy); the pairs around each quartile fix it exactly:
# responders (n = 46): Q1 at position 11.25, median 22.5, Q3 33.75 (0-based, type 7)
_RESP_ANCHORS = {0: 42.0, 3: 68.0, 11: 95.0, 12: 99.0, 22: 165.0, 23: 169.0, 33: 214.0, 34: 218.0, 45: 410.0}
# non-responders (n = 14): Q1 at 3.25, median 6.5, Q3 9.75
_NON_ANCHORS = {0: 21.0, 3: 44.0, 4: 48.0, 6: 53.0, 7: 55.0, 9: 59.0, 10: 63.0, 12: 74.0, 13: 102.0}


def _anchored_sequence(n, anchors, rng, jitter=0.25):
    """Sorted values with the anchors fixed, geometric between them, interior points jittered
    within their gaps (order kept)."""
    keys = sorted(anchors)
    x = np.empty(n)
    for a, b in zip(keys[:-1], keys[1:]):
        x[a:b + 1] = np.geomspace(anchors[a], anchors[b], b - a + 1)
    free = [i for i in range(1, n - 1) if i not in anchors]
    for i in free:
        lo, hi = x[i - 1], x[i + 1]
        x[i] = x[i] + rng.uniform(-jitter, jitter) * min(x[i] - lo, hi - x[i])
    return np.round(x, 1)


def _deaths_then(rng, n, before, at_times, after_range, censored, censor_range):
    """Survival times of a group: ``before`` = [(t_min, t_max, count)] deaths spread in ranges,
    deaths at exactly ``at_times``, deaths spread over ``after_range``, and ``censored`` alive at
    the end of follow-up in ``censor_range``.  Returns (times, events) of ``n`` patients."""
    times, events = [], []
    for lo, hi, k in before:
        times += list(np.round(np.linspace(lo, hi, k), 1))
        events += [1] * k
    times += list(at_times)
    events += [1] * len(at_times)
    k_after = n - len(times) - censored
    times += list(np.round(np.sort(rng.uniform(*after_range, k_after)), 1))
    events += [1] * k_after
    times += list(np.round(np.sort(rng.uniform(*censor_range, censored)), 1))
    events += [0] * censored
    return np.array(times), np.array(events)


def _survival(rng):
    """(times, events) of responders (46), non-responders (14) and the four without response assessment."""
    resp = _deaths_then(rng, 46, [(1.5, 10.6, 19)], [11.0, 11.0, 14.0, 17.0, 17.0], (18.5, 44.0), 9, (24.0, 60.0))
    non = _deaths_then(rng, 14, [(1.0, 9.5, 6)], [10.0, 10.0], (12.0, 26.0), 2, (20.0, 30.0))
    ne = (np.array([1.2, 2.0, 2.5, 3.1]), np.array([1, 1, 1, 1]))
    return resp, non, ne


def _labs(rng, rank):
    """Illustrative covariates from a patient's survival rank (0 = earliest death, 1 = longest)."""
    bilobar = rng.random() < 0.75 - 0.45 * rank
    ast = 26.0 + 22.0 * (1.0 - rank) + rng.normal(0.0, 12.0)
    alt = 0.8 * ast + rng.normal(0.0, 8.0)
    bili = float(np.clip(rng.lognormal(np.log(0.6), 0.35) + 0.4 * (1.0 - rank) * rng.random(), 0.2, 3.0))
    albumin = float(np.clip(rng.normal(3.8 - 0.2 * (1.0 - rank), 0.4), 2.4, 4.8))
    grade = int(rng.choice([0, 1, 2, 3], p=[0.45, 0.3, 0.15, 0.1]) if bili < 1.2 else rng.choice([1, 2, 3], p=[0.3, 0.3, 0.4]))
    return {"extent": "bilobar" if bilobar else "unilobar", "ast_u_l": round(max(ast, 10.0)), "alt_u_l": round(max(alt, 8.0)),
            "bilirubin_mg_dl": round(bili, 2), "albumin_g_dl": round(albumin, 1), "hepatotoxicity_grade": grade}


def synthetic_breast_cohort(seed=0):
    """Rows of the synthetic clinical table (64 dicts; doses in ``dose_gy``; see the module docstring)."""
    rng = np.random.default_rng(seed)
    dose_r = rng.permutation(_anchored_sequence(46, _RESP_ANCHORS, rng))
    dose_n = rng.permutation(_anchored_sequence(14, _NON_ANCHORS, rng))
    (t_r, e_r), (t_n, e_n), (t_e, e_e) = _survival(rng)
    groups = [("responder", dose_r, t_r, e_r), ("non-responder", dose_n, t_n, e_n),
              ("not evaluable", np.array([38.0, 92.0, 131.0, 177.0]), t_e, e_e)]
    all_t = np.concatenate([g[2] + 100.0 * (1 - g[3]) for g in groups])  # censored rank last
    order = np.argsort(np.argsort(all_t)) / (len(all_t) - 1)
    rows, k = [], 0
    for label, doses, times, events in groups:
        cats = {"responder": ("CMR", "PMR"), "non-responder": ("SMD", "PMD"), "not evaluable": ("NE",)}[label]
        for d, t, e in zip(doses, times, events):
            row = {"case_id": f"syn{k + 1:02d}", "response": str(rng.choice(cats)), "os_months": float(t),
                   "os_event": int(e), "dose_gy": float(d)}
            row.update(_labs(rng, order[k]))
            rows.append(row)
            k += 1
    perm = rng.permutation(len(rows))
    rows = [rows[i] for i in perm]
    for i, r in enumerate(rows, start=1):
        r["case_id"] = f"syn{i:02d}"
    return rows


def write_synthetic_clinical_csv(path, seed=0):
    """Write :func:`synthetic_breast_cohort` as a clinical CSV; returns the rows."""
    rows = synthetic_breast_cohort(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows
