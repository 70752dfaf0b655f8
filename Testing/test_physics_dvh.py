"""Constants, closed-form relations and DVH metrics on analytic dose distributions."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from TAREDosimetryLib import physics
from TAREDosimetryLib.evaluation.dvh import DVH, parse_metric
from TAREDosimetryLib.errors import InputError


def test_k_from_half_life_and_mean_energy_is_in_published_range():
    # PHYSICS.md: 49.38 to 49.80 Gy kg/GBq depending on the constants.
    assert 49.38 <= physics.k_gy_kg_per_gbq() <= 49.80
    assert_allclose(physics.k_gy_kg_per_gbq(64.1, 0.9336), 49.80, atol=0.01)


def test_decay_factor_is_one_half_after_one_half_life():
    assert_allclose(physics.decay_factor(physics.Y90_HALF_LIFE_H), 0.5, rtol=1e-12)


def test_schneider_table_points_are_reproduced():
    hu = [p[0] for p in physics.SCHNEIDER_HU_DENSITY]
    rho = [p[1] for p in physics.SCHNEIDER_HU_DENSITY]
    assert_allclose(physics.hu_to_density_g_ml(hu), rho, rtol=1e-6)
    assert_allclose(physics.hu_to_density_g_ml([-2000, 5000]), [0.00121, 2.8], rtol=1e-6)


def test_lung_density_formula_is_clipped():
    assert_allclose(physics.lung_hu_to_density_g_ml([-1100, -700, 0, 500]), [0.0, 0.3, 1.0, 1.1], rtol=1e-6)


def test_bed_permanent_implant_formula():
    # D = 100 Gy, alpha/beta 10, T_rep 1.5 h, T_half 64.05 h
    expected = 100 * (1 + 100 * 1.5 / ((1.5 + 64.05) * 10))
    assert_allclose(physics.bed_permanent_implant_gy(100.0, 10.0, 1.5), expected, rtol=1e-12)
    assert physics.bed_permanent_implant_gy(0.0, 2.5, 1.5) == 0


def test_eud_of_uniform_dose_is_that_dose_and_below_mean_otherwise():
    assert_allclose(physics.eud_gy(np.full(100, 80.0), 0.036), 80.0, rtol=1e-12)
    d = np.array([10.0, 200.0])
    expected = -math.log(0.5 * (math.exp(-0.036 * 10) + math.exp(-0.036 * 200))) / 0.036
    assert_allclose(physics.eud_gy(d, 0.036), expected, rtol=1e-12)
    assert physics.eud_gy(d, 0.036) < d.mean()


@pytest.mark.parametrize("bw", [None, 0.1, 1.0])
def test_dvh_metrics_of_uniform_distribution(bw):
    # Doses spread uniformly over [0, 100] Gy: D_x = 100 - x, V_d = 100 - d (percent).
    d = np.linspace(0, 100, 200001)
    h = DVH(d, voxel_volume_ml=0.001, bin_width_gy=bw)
    for x in (2, 10, 50, 70, 90, 98):
        assert_allclose(h.dose_at_volume_pct(x), 100 - x, atol=0.02)
    for dose in (20, 30.05, 79.5, 100):
        assert_allclose(h.volume_pct_at_dose(dose), 100 - dose, atol=0.02)
    assert_allclose(h.volume_ml, 200.001, rtol=1e-9)
    assert_allclose(h.mean_gy, 50, atol=1e-9)


def test_exact_d_x_is_the_dose_of_the_voxel_where_the_volume_is_reached():
    # Two voxels only: D_x is a dose a voxel receives (the step DVH), never a value between them;
    # V at a dose is exact; the binned DVH is linear inside a bin.
    h = DVH([10.0, 30.0], bin_width_gy=None)
    assert h.dose_at_volume_pct(50) == 30.0  # hottest half = the 30 Gy voxel
    assert h.dose_at_volume_pct(75) == 10.0  # 75 % is reached only in the 10 Gy voxel
    assert h.dose_at_volume_pct(100) == 10.0 and h.dose_at_volume_pct(0) == 30.0
    assert h.volume_pct_at_dose(20) == 50.0
    hb = DVH(np.full(1000, 55.0), bin_width_gy=10.0)  # one bin [50, 60)
    assert hb.volume_pct_at_dose(55) == pytest.approx(50.0)  # linear inside the bin, not 100 or 0


def test_exact_d_x_counts_a_rounded_fraction_as_reached():
    # 0.7 x 10 is 7.000000000000001 in floating point: D70 of 10 voxels is the 7th hottest voxel.
    h = DVH(np.arange(10, 0, -1, dtype=float))  # 10, 9, ..., 1 Gy
    assert h.dose_at_volume_pct(70) == 4.0
    assert h.dose_at_volume_pct(10) == 10.0 and h.dose_at_volume_pct(11) == 9.0
    w = DVH(np.arange(10, 0, -1, dtype=float), weights=np.full(10, 0.1))
    assert w.dose_at_volume_pct(70) == 4.0 and w.dose_at_volume_pct(30) == 8.0


def test_exact_d_x_agrees_with_v_x_and_the_median():
    # V(D_x) >= x for every x, and D_x is a voxel dose: the row's D_x cannot contradict its V_x.
    rng = np.random.default_rng(5)
    for weights in (None, rng.uniform(0.05, 1.0, 37)):
        h = DVH(rng.gamma(2.0, 30.0, 37), 1.0, weights=weights)
        for x in np.linspace(0, 100, 201):
            d = h.dose_at_volume_pct(x)
            assert d in set(h.doses_gy.tolist())
            assert h.volume_pct_at_dose(d) >= x - 1e-9
        assert h.dose_at_volume_pct(50) >= h.median_gy


def test_dvh_d_cc_and_statistic_names():
    h = DVH(np.arange(1, 101, dtype=float), voxel_volume_ml=1.0)
    assert h.statistic("D2cc") == pytest.approx(h.dose_at_volume_pct(2))
    assert h.statistic("V50Gy") == pytest.approx(51.0)
    assert h.statistic("mean") == pytest.approx(50.5)
    assert parse_metric("D90") == ("D", 90.0, "%")
    assert parse_metric("V100Gy") == ("V", 100.0, "Gy")
    assert parse_metric("mean_gy") is None
    with pytest.raises(InputError, match="unknown DVH metric"):
        h.statistic("Q7")


def test_dvh_doubling_dose_doubles_metrics():
    rng = np.random.default_rng(1)
    d = rng.gamma(2.0, 20.0, 5000)
    a, b = DVH(d), DVH(2 * d)
    for x in (10, 50, 90):
        assert_allclose(b.dose_at_volume_pct(x), 2 * a.dose_at_volume_pct(x), rtol=1e-12)
    assert_allclose(b.volume_pct_at_dose(60), a.volume_pct_at_dose(30))


def test_dvh_curve_is_monotone_and_starts_at_100():
    h = DVH(np.random.default_rng(0).uniform(0, 50, 1000))
    dose, vol = h.curve(0.1)
    assert vol[0] == 100.0 and vol[-1] == 0.0
    assert np.all(np.diff(vol) <= 0)


@pytest.mark.parametrize("bad, match", [([], "no voxels"), ([1.0, np.nan], "NaN")])
def test_dvh_rejects_bad_input(bad, match):
    with pytest.raises(InputError, match=match):
        DVH(bad)


def test_binned_d100_is_the_bin_edge_below_the_minimum_dose_not_zero():
    # D100 is the minimum dose of the region; the binned DVH returned 0 Gy for it whatever the doses.
    from TAREDosimetryLib.evaluation.dvh import DVH

    d = np.array([42.37, 50.0, 61.2, 80.0])
    binned = DVH(d, 1.0, bin_width_gy=0.1)
    assert_allclose(binned.dose_at_volume_pct(100), 42.3, atol=1e-9)
    assert binned.dose_at_volume_pct(100) <= DVH(d, 1.0).dose_at_volume_pct(100) == 42.37
    assert_allclose(DVH(np.full(10, 5.0), 1.0, bin_width_gy=0.1).dose_at_volume_pct(100), 5.0, atol=1e-9)


def test_segment_eud_is_volume_weighted_as_in_physics_md():
    # EUD = -(1/alpha) ln((1/N) sum exp(-alpha D_i)) over the voxels; it was weighted by voxel mass,
    # which moves it wherever density varies (CT density, lung).
    from TAREDosimetryLib.params import DosimetryParams
    from TAREDosimetryLib.evaluation.metrics import segment_metrics

    dose = np.array([20.0, 20.0, 120.0, 120.0], np.float32)
    rho = np.array([0.3, 0.3, 1.05, 1.05], np.float32)
    p = DosimetryParams()
    m, _ = segment_metrics(dose, rho, np.zeros(4, np.float32), 0.1, "tumor", p)
    alpha = p.eud_alpha_per_gy
    expected = -np.log(np.mean(np.exp(-alpha * dose.astype(np.float64)))) / alpha
    assert_allclose(m["eud_gy"], expected, rtol=1e-9)


# -- weighted voxels (exact partial-voxel sampling) ----------------------------------------------
def test_weighted_dvh_equals_the_dvh_of_repeated_voxels():
    """A voxel of weight 3 is three voxels: V, mean, SD, median and the volumes agree exactly."""
    rng = np.random.default_rng(21)
    d = rng.uniform(0, 100, 57)
    w = rng.integers(1, 4, 57).astype(float)
    a, b = DVH(np.repeat(d, w.astype(int)), 0.2), DVH(d, 0.2, weights=w)
    for x in (0, 12.5, 50, 99):
        assert b.volume_pct_at_dose(x) == pytest.approx(a.volume_pct_at_dose(x), rel=1e-12)
    for key in ("mean_gy", "sd_gy", "median_gy", "volume_ml", "max_gy", "min_gy"):
        assert getattr(b, key) == pytest.approx(getattr(a, key), rel=1e-12), key
    assert_allclose(b.curve(1.0)[1], a.curve(1.0)[1], rtol=1e-12)


def test_weighted_d_x_is_the_dose_of_the_voxel_where_the_cumulative_weight_reaches_x():
    """Doses 30, 20, 10 Gy with weights 0.5, 1, 0.5: the cumulative volume fractions are 0.25,
    0.75, 1; D50 is reached in the 20 Gy voxel (the hottest 50 % all receive >= 20 Gy), D10 = 30
    Gy (hottest part), D80 = D100 = 10 Gy."""
    h = DVH([10.0, 30.0, 20.0], 1.0, weights=[0.5, 0.5, 1.0])
    assert h.dose_at_volume_pct(50) == pytest.approx(20.0)
    assert h.dose_at_volume_pct(25) == pytest.approx(30.0)
    assert h.dose_at_volume_pct(10) == pytest.approx(30.0)
    assert h.dose_at_volume_pct(80) == pytest.approx(10.0)
    assert h.dose_at_volume_pct(100) == pytest.approx(10.0)
    assert h.volume_pct_at_dose(15) == pytest.approx(75.0)
    assert h.volume_ml == pytest.approx(2.0) and h.mean_gy == pytest.approx(20.0)


def test_weighted_dvh_with_unit_weights_is_the_unweighted_dvh():
    rng = np.random.default_rng(22)
    d = rng.gamma(2.0, 20.0, 200)
    for width in (None, 0.5):
        a, b = DVH(d, 0.3, width), DVH(d, 0.3, width, weights=np.ones(200))
        for x in (1, 2, 30, 50, 70, 90, 98):
            assert b.dose_at_volume_pct(x) == pytest.approx(a.dose_at_volume_pct(x), rel=1e-12)
        assert b.median_gy == pytest.approx(a.median_gy, rel=1e-12)


def test_bad_weights_are_refused():
    with pytest.raises(InputError, match="weights"):
        DVH([1.0, 2.0], weights=[1.0])
    with pytest.raises(InputError, match="finite and >= 0"):
        DVH([1.0, 2.0], weights=[1.0, -0.5])
    with pytest.raises(InputError, match="no voxels"):
        DVH([1.0, 2.0], weights=[0.0, 0.0])
