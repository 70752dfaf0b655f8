"""The speed work (issue 14) keeps every result: bit-identical or within float32 rounding.

``reference_outputs.json`` holds the numbers of the cases of :mod:`reference_cases` as computed
by the engine before the speed work (the commit is recorded in the file).  Each case is
recomputed here and compared number by number: every metric of every segment, its DVH curve,
the numeric summary, checksums of the dose, activity and density maps, and the rule statuses.
The MAA cases use the shared data (Burak Demir 2025, MIT; ../shared/data/maa-spect-patient2)
and skip without it.
"""

import json
import math

import numpy as np
import pytest

import reference_cases as rc

#: float32 rounding: values are float32 maps reduced in float64; reordered sums differ by a few ulps.
RTOL = 2e-6
ATOL = 1e-7

with open(rc.REFERENCE_PATH) as _fh:
    REFERENCE = json.load(_fh)


#: DVK doses come from float32 FFTs, whose round-off is absolute: about 1e-7 of the map's largest
#: value in every voxel, so low doses are compared to within that.
FFT_ATOL_OF_MAX = 2e-7


def _compare(ref, got, path, problems, atol=ATOL):
    if isinstance(ref, dict):
        for k, v in ref.items():
            if k not in got:
                problems.append(f"{path}/{k}: missing")
            else:
                _compare(v, got[k], f"{path}/{k}", problems, atol)
    elif isinstance(ref, list):
        if not isinstance(got, list) or len(got) != len(ref):
            problems.append(f"{path}: {got!r} != {ref!r}")
            return
        for i, (a, b) in enumerate(zip(ref, got)):
            _compare(a, b, f"{path}[{i}]", problems, atol)
    elif isinstance(ref, float):
        if not (isinstance(got, (int, float)) and math.isclose(got, ref, rel_tol=RTOL, abs_tol=atol)):
            problems.append(f"{path}: {got!r} != {ref!r}")
    elif ref != got:
        problems.append(f"{path}: {got!r} != {ref!r}")


@pytest.mark.parametrize("name", sorted(rc.CASES))
def test_results_match_the_reference_engine(name, request):
    needs_data, _ = rc.CASES[name]
    data_dir = request.getfixturevalue("maa_paths") and request.getfixturevalue("data_dir") if needs_data else None
    if name not in REFERENCE["cases"]:
        pytest.skip(f"{name} not in the reference file (made without the shared data)")
    got = rc.run_reference_case(name, data_dir)
    problems = []
    ref = REFERENCE["cases"][name]
    atol = ATOL + (FFT_ATOL_OF_MAX * ref["dose_gy"]["max"] if "dvk" in name else 0.0)
    _compare(ref, got, name, problems, atol)
    assert not problems, f"{len(problems)} difference(s) from the reference engine ({REFERENCE['commit'][:10]}):\n" + "\n".join(problems[:20])


def test_comparison_detects_a_change():
    """The comparison is not vacuous: a change of 1e-5 relative in one metric is found."""
    ref = REFERENCE["cases"]["same_overlap"]
    got = json.loads(json.dumps(ref))
    seg = next(iter(got["segments"]))
    got["segments"][seg]["mean_gy"] *= 1 + 1e-5
    problems = []
    _compare(ref, got, "x", problems)
    assert problems and "mean_gy" in problems[0]
    assert np.isfinite(ref["segments"][seg]["mean_gy"])
