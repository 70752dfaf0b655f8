"""The arithmetic by which the benchmarks turn wall times into the figures the README quotes.

Benchmarks are not timed tests (nothing here measures time); these check that a batch's rate and
fixed start-up, and DVK's paired addition, are derived correctly from given wall times.
"""

import importlib.util
import os

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_rate_separates_the_fixed_startup_from_the_time_a_case():
    bench = _load("bench_batch")
    # 1 worker: 0.8 s start-up + 0.40 s a case; 2 workers: 0.9 s + 0.20 s a case
    by_size = {n: {"processes_1": {"wall_s": 0.8 + 0.40 * n}, "processes": {"wall_s": 0.9 + 0.20 * n}}
               for n in (8, 16, 32)}
    rate = bench._rates(by_size)
    assert rate["from_batch_sizes"] == [8, 32]
    assert rate["processes_1"]["s_per_case"] == pytest.approx(0.40)
    assert rate["processes_1"]["fixed_startup_s"] == pytest.approx(0.8)
    assert rate["processes"]["cases_per_min"] == pytest.approx(300.0)
    assert rate["processes"]["fixed_startup_s"] == pytest.approx(0.9)
    assert rate["speedup_workers_vs_1"] == pytest.approx(2.0)
    # the whole batch of 8 is held back by the start-up: (0.8 + 3.2) / (0.9 + 1.6)
    ratios = bench._whole_batch_ratios(dict(by_size[8]))
    assert ratios["speedup_workers_vs_1"] == pytest.approx(1.6)


def test_batch_rate_leaves_out_a_mode_whose_larger_batch_was_not_slower():
    bench = _load("bench_batch")
    by_size = {8: {"processes_1": {"wall_s": 4.0}, "processes": {"skipped": "dask missing"}},
               32: {"processes_1": {"wall_s": 3.9}, "processes": {"skipped": "dask missing"}}}
    rate = bench._rates(by_size)
    assert "processes_1" not in rate and "speedup_workers_vs_1" not in rate


def test_batch_sizes_are_parsed_and_checked():
    bench = _load("bench_batch")
    assert bench._parse_sizes("32, 8,16,8") == [8, 16, 32]
    with pytest.raises(SystemExit, match="--cases"):
        bench._parse_sizes("0,8")


def test_dvk_addition_is_the_median_of_differences_within_rounds():
    bench = _load("bench_case")
    ldm = [1.0, 2.0, 1.1, 1.0, 3.0]  # the machine slowed down in rounds 2 and 5
    dvk = [1.2, 2.3, 1.3, 1.2, 3.2]
    res = {"no_report": {"runs": [{"wall_s": w} for w in ldm]},
           "dvk_no_report": {"runs": [{"wall_s": w} for w in dvk]}}
    assert bench._paired_adds(res, "dvk_no_report", "no_report") == pytest.approx(0.2)
