"""Y-90 voxel S values (TAREDosimetryLib.dose.kernels).

Reference data (skipped when absent; env TARE_DOSIMETRY_TEST_DATA, default ../shared/data):
- Graves SA, Flynn RT, Hyer DE, Med Phys 46 (2019) 5284, doi:10.1002/mp.13789: the Y-90 dose
  point kernel the packaged table comes from.
- Lanconelli N et al., Phys Med Biol 57 (2012) 517, doi:10.1088/0031-9155/57/2/517: Y-90 voxel S
  values in soft tissue (3, 4, 4.42, 5, 6 mm cubic voxels, one octant, mGy/(MBq s)).
"""

import os
import sys
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "TAREDosimetry") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

from TAREDosimetryLib.dose import kernels  # noqa: E402
from TAREDosimetryLib.errors import InputError  # noqa: E402

DATA = os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))
DPK_CSV = os.path.join(DATA, "y90-dpk-graves2019", "90Y_64.10H_beta.io_processed.csv")
LANCONELLI = os.path.join(DATA, "y90-vsv-lanconelli2012")
LANCONELLI_FILES = {3.0: "90Y3mmsoft.txt", 4.0: "90Y4mmsoft.txt", 4.42: "90Y4.42mmsoft.txt", 5.0: "90Y5mmsoft.txt", 6.0: "90Y6mmsoft.txt"}
SOFT_TISSUE_G_ML = 1.04


def _centre(k):
    return tuple(s // 2 for s in k.shape)


def read_lanconelli(size_mm):
    """Full 11x11x11 kernel (index (i, j, k) + 5) mirrored from the published octant."""
    path = os.path.join(LANCONELLI, LANCONELLI_FILES[size_mm])
    if not os.path.isfile(path):
        pytest.skip(f"Lanconelli 2012 voxel S values not found at {path} (set TARE_DOSIMETRY_TEST_DATA)")
    table = np.loadtxt(path, skiprows=2, encoding="latin-1")
    full = np.zeros((11, 11, 11))
    for i, j, k, s in table:
        for si in (1, -1):
            for sj in (1, -1):
                for sk in (1, -1):
                    full[5 + si * int(i), 5 + sj * int(j), 5 + sk * int(k)] = s
    return full


# --------------------------------------------------------------------------- packaged table
def test_packaged_point_kernel_holds_the_published_total_energy():
    r_mm, e_mev = kernels.point_kernel_table()
    assert np.all(np.diff(r_mm) > 0) and np.all(e_mev >= 0)
    assert_allclose(e_mev.sum(), kernels.DPK_TOTAL_ENERGY_MEV, rtol=1e-4)
    # 99.6 % within 12 mm (Graves 2019, water)
    assert_allclose(kernels.energy_within_mev(12.0) / e_mev.sum(), 0.996, atol=0.001)


def test_packaged_point_kernel_matches_the_shared_csv():
    """The packaged shells equal the Graves 2019 csv (benchmarks/make_dpk_table.py)."""
    if not os.path.isfile(DPK_CSV):
        pytest.skip(f"Graves 2019 point kernel csv not found at {DPK_CSV} (set TARE_DOSIMETRY_TEST_DATA)")
    csv = np.loadtxt(DPK_CSV, delimiter=",", skiprows=2)
    r_mm, e_mev = kernels.point_kernel_table()
    n = r_mm.size
    assert_allclose(r_mm, csv[:n, 0] * 10.0, rtol=1e-12)
    assert_allclose(e_mev, csv[:n, 1], rtol=1e-12)
    assert np.all(csv[n:, 1] == 0.0)


# --------------------------------------------------------------------------- shape, symmetry
def test_kernel_is_odd_centred_and_symmetric():
    k = kernels.voxel_s_values((3.0, 3.0, 3.0))
    assert k.shape == (9, 9, 9)  # nearest-point truncation at 12 mm keeps offsets |i| <= 4
    c = _centre(k)
    assert k[c] == k.max()
    for axis in range(3):
        assert np.array_equal(k, np.flip(k, axis=axis))
    assert np.all(k >= 0)


def test_anisotropic_kernel_is_in_zyx_order():
    """spacing (x, y, z) = (4.42, 4.42, 2.5): z is the fine axis, so the array has the most
    planes along axis 0 and the z neighbour (closer) gets more dose than the x neighbour."""
    k = kernels.voxel_s_values((4.42, 4.42, 2.5))
    assert k.shape == (11, 7, 7)
    cz, cy, cx = _centre(k)
    assert k[cz + 1, cy, cx] > k[cz, cy, cx + 1]
    assert_allclose(k[cz, cy + 1, cx], k[cz, cy, cx + 1], rtol=1e-12)
    k2 = kernels.voxel_s_values((2.5, 4.42, 4.42))  # same voxel turned: x is the fine axis
    assert k2.shape == (7, 7, 11)
    assert_allclose(k2, np.transpose(k, (2, 1, 0)), rtol=1e-8, atol=1e-12 * k.max())


def test_self_value_of_3mm_voxel_matches_physics_notes():
    """PHYSICS.md: the point kernel over a 3 mm voxel gives S(0,0,0) ~ 1.58 mGy/(MBq s)."""
    k = kernels.voxel_s_values((3.0, 3.0, 3.0))
    assert_allclose(k[_centre(k)], 1.58, rtol=0.01)


def test_density_scaling_law():
    """d_rho(r) = rho^2 d_water(rho r) implies S_rho(h) = rho^2 S_water(rho h)."""
    low = kernels.voxel_s_values((4.0, 4.0, 6.0), 0.5, radius_mm=24.0)
    water = kernels.voxel_s_values((2.0, 2.0, 3.0), 1.0, radius_mm=12.0)
    assert low.shape == water.shape
    assert_allclose(low, 0.25 * water, rtol=1e-9, atol=1e-12 * water.max())


# --------------------------------------------------------------------------- energy
@pytest.mark.parametrize("spacing", [(3.0, 3.0, 3.0), (4.42, 4.42, 2.5), (1.0, 1.0, 1.0)])
def test_energy_within_truncation(spacing):
    """sum S m lies between the energy within the truncation radius and the total."""
    e = kernels.kernel_energy_mev(spacing, SOFT_TISSUE_G_ML)
    assert kernels.energy_within_mev(12.0, SOFT_TISSUE_G_ML) <= e <= kernels.DPK_TOTAL_ENERGY_MEV
    assert_allclose(e / kernels.DPK_TOTAL_ENERGY_MEV, 0.996, atol=0.002)


def test_untruncated_kernel_conserves_the_point_kernel_energy():
    """The tents of all offsets add up to 1, so sum S m is the energy the kernel reaches:
    between E(60 mm) and E(60 mm + 2 voxel diagonals) at a 60 mm truncation."""
    h = 3.0
    e = kernels.kernel_energy_mev((h, h, h), 1.0, radius_mm=60.0)
    lo = kernels.energy_within_mev(60.0)
    hi = kernels.energy_within_mev(60.0 + 2 * np.sqrt(3) * h)
    assert lo * (1 - 1e-5) <= e <= hi * (1 + 1e-5)


def test_energy_fractions_sum_to_one():
    f = kernels.voxel_energy_fractions((4.42, 4.42, 2.5), 1.03)
    assert_allclose(f.sum(), 1.0, rtol=1e-12)
    s = kernels.voxel_s_values((4.42, 4.42, 2.5), 1.03)
    assert_allclose(f, s / s.sum(), rtol=1e-12)


# --------------------------------------------------------------------------- determinism, cache
def test_same_input_gives_bit_identical_kernel():
    kernels.clear_kernel_cache()
    a = np.array(kernels.voxel_s_values((2.2, 2.7, 3.1), 1.01))
    kernels.clear_kernel_cache()
    b = np.array(kernels.voxel_s_values((2.2, 2.7, 3.1), 1.01))
    assert a.tobytes() == b.tobytes()


def test_kernels_are_cached_and_read_only():
    a = kernels.voxel_s_values((3.3, 3.3, 3.3))
    b = kernels.voxel_s_values([3.3, 3.3, 3.3], 1.04)
    assert a is b
    with pytest.raises(ValueError):
        a[0, 0, 0] = 1.0
    assert not kernels.voxel_energy_fractions((3.3, 3.3, 3.3)).flags.writeable


def test_new_spacing_kernel_is_fast():
    """Goal < 0.5 s on 2 cores at 1 mm (25^3 kernel); the bound here leaves room for load."""
    kernels.clear_kernel_cache()
    t = time.perf_counter()
    kernels.voxel_s_values((1.01, 1.02, 1.03))
    assert time.perf_counter() - t < 2.0


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "spacing, match",
    [((-1.0, 2.0, 2.0), "spacing_mm"), ((0.0, 2.0, 2.0), "spacing_mm"), ((2.0, 2.0), "spacing_mm"), (3.0, "spacing_mm"), ((np.nan, 1, 1), "spacing_mm")],
)
def test_bad_spacing_is_rejected(spacing, match):
    with pytest.raises(InputError, match=match):
        kernels.voxel_s_values(spacing)


def test_bad_density_radius_and_size_are_rejected():
    with pytest.raises(InputError, match=r"density_g_ml must be positive.*-1"):
        kernels.voxel_s_values((3, 3, 3), -1.0)
    with pytest.raises(InputError, match="radius_mm"):
        kernels.voxel_s_values((3, 3, 3), radius_mm=0)
    with pytest.raises(InputError, match="kernel of"):
        kernels.voxel_s_values((0.1, 0.1, 0.1), radius_mm=20.0)


# --------------------------------------------------------------------------- Lanconelli 2012
@pytest.mark.parametrize("size_mm", sorted(LANCONELLI_FILES))
def test_matches_lanconelli_voxel_s_values(size_mm):
    """Self and 6 face neighbours within 2 %, 12 edge and 8 corner neighbours within 5 %
    of Lanconelli et al. 2012 (soft tissue, density 1.04 g/mL)."""
    ref = read_lanconelli(size_mm)
    ours = kernels.voxel_s_values((size_mm,) * 3, SOFT_TISSUE_G_ML, radius_mm=7 * size_mm)
    c = _centre(ours)[0]
    ours = ours[c - 5 : c + 6, c - 5 : c + 6, c - 5 : c + 6]
    rel = ours / ref - 1.0
    idx = np.indices(ref.shape) - 5
    n_off = np.sum(np.abs(idx), axis=0)
    cheb = np.max(np.abs(idx), axis=0)
    near = cheb <= 1
    assert np.all(np.abs(rel[near & (n_off <= 1)]) < 0.02), rel[near & (n_off <= 1)]
    assert np.all(np.abs(rel[near & (n_off >= 2)]) < 0.05), rel[near & (n_off >= 2)]


def test_lanconelli_energy_agrees_with_ours():
    """Lanconelli's mirrored 3 mm kernel holds 0.934 MeV per decay (S x voxel mass at 1.04);
    our kernel at the same truncation (11^3) agrees within 0.6 %."""
    ref = read_lanconelli(3.0)
    m_g = SOFT_TISSUE_G_ML * 27e-3
    e_ref = ref.sum() * m_g / kernels.MEV_PER_G_TO_MGY_PER_MBQ_S
    ours = kernels.voxel_s_values((3.0,) * 3, SOFT_TISSUE_G_ML, radius_mm=21.0)
    c = _centre(ours)[0]
    e_ours = ours[c - 5 : c + 6, c - 5 : c + 6, c - 5 : c + 6].sum() * m_g / kernels.MEV_PER_G_TO_MGY_PER_MBQ_S
    assert_allclose(e_ref, 0.934, rtol=0.003)
    assert_allclose(e_ours, e_ref, rtol=0.006)


# Lanconelli et al. 2012 database, Y-90 in "Bone compact" (ICRU compact bone, 1.85 g/cm3; the
# density at which its 4.42 mm kernel holds 0.934 MeV per decay, as the soft-tissue one does):
# S(i, j, k) in mGy/(MBq s) for the self voxel, a face, an edge, a corner and the second shell.
LANCONELLI_BONE = {
    3.0: {(0, 0, 0): 1.40, (0, 0, 1): 1.75e-1, (0, 1, 1): 3.68e-2, (1, 1, 1): 9.29e-3, (0, 0, 2): 1.53e-3},
    4.0: {(0, 0, 0): 7.12e-1, (0, 0, 1): 6.86e-2, (0, 1, 1): 1.02e-2, (1, 1, 1): 1.77e-3, (0, 0, 2): 6.28e-5},
    4.42: {(0, 0, 0): 5.58e-1, (0, 0, 1): 4.87e-2, (0, 1, 1): 6.43e-3, (1, 1, 1): 9.78e-4, (0, 0, 2): 1.67e-5},
    5.0: {(0, 0, 0): 4.09e-1, (0, 0, 1): 3.16e-2, (0, 1, 1): 3.60e-3, (1, 1, 1): 4.69e-4, (0, 0, 2): 5.05e-6},
    6.0: {(0, 0, 0): 2.56e-1, (0, 0, 1): 1.64e-2, (0, 1, 1): 1.51e-3, (1, 1, 1): 1.59e-4, (0, 0, 2): 2.75e-6},
}
BONE_G_ML = 1.85


@pytest.mark.parametrize("size_mm", sorted(LANCONELLI_BONE))
def test_density_scaled_kernel_against_lanconelli_bone(size_mm):
    """The water kernel scaled to bone (rho^2 d(rho r)) against Lanconelli's Monte Carlo in bone.

    Measured deviations (ours / Lanconelli - 1, 3 to 6 mm): self +0.4 to +1.2 %, face -0.4 to
    -1.2 %, edge -2.2 to -3.7 %, corner -5.2 to -7.2 %, second shell (0, 0, 2) -16 to -42 %
    (where S is below 1e-3 of the self value: under 0.1 % of the energy).  Density scaling
    ignores that bone's electrons scatter more (higher Z) than water's: the scaled kernel
    is too short-ranged there.  docs/dvk.md states these numbers; the bands below pin them.
    """
    ours = kernels.voxel_s_values((size_mm,) * 3, BONE_G_ML)
    c = _centre(ours)[0]
    dev = {ijk: ours[c + ijk[0], c + ijk[1], c + ijk[2]] / s - 1 for ijk, s in LANCONELLI_BONE[size_mm].items()}
    assert 0.0 < dev[(0, 0, 0)] < 0.015
    assert -0.015 < dev[(0, 0, 1)] < 0.0
    assert -0.04 < dev[(0, 1, 1)] < -0.015
    assert -0.08 < dev[(1, 1, 1)] < -0.045
    assert -0.45 < dev[(0, 0, 2)] < -0.12


# -- issue 14: the quadrature's fast paths against the direct evaluation -------------------------
def _direct_moments(s_mm, density):
    """M_k(s) straight from the shells (np.searchsorted on the table), as before issue 14."""
    r_in, r_out, e_density, before = kernels._moment_tables()
    s = np.minimum(np.asarray(s_mm, dtype=np.float64) * density, r_out[-1])
    j = np.minimum(np.searchsorted(r_out, s), r_out.size - 1)
    return np.stack([(before[k][j] + e_density[j] * (s ** (k + 1) - r_in[j] ** (k + 1)) / (k + 1)) / density**k
                     for k in range(4)])


@pytest.mark.parametrize("density", [1.0, 0.3, 1.92])
def test_moments_by_shell_polynomials_equal_the_direct_integral(density):
    rng = np.random.default_rng(0)
    r_out = kernels._moment_tables()[1]
    s = np.concatenate([rng.uniform(0, 200, 5000), r_out[:50] / density, r_out[990:1010] / density, [0.0, 1e6]])
    assert_allclose(kernels._moments(s, density), _direct_moments(s, density), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 3.0), (1.0, 1.5, 2.0)])
def test_symmetric_offsets_share_one_s_value(spacing):
    """Offsets whose components are exchanged between axes of equal spacing get S computed once;
    the values equal the quadrature of every offset."""
    half = (3, 3, 3)
    idx = np.stack([g.ravel() for g in np.meshgrid(*(np.arange(n + 1) for n in half), indexing="ij")], axis=1)
    distinct, inverse = kernels._distinct_offsets(idx, spacing)
    assert distinct.shape[0] <= idx.shape[0]
    if len(set(spacing)) == 1:
        assert distinct.shape[0] == 20  # 4^3 offsets, 20 up to permutation
    h = np.asarray(spacing, float)
    every = kernels._s_values_mev_per_g(h, idx.astype(float), 0.3, 6)
    shared = kernels._s_values_mev_per_g(h, distinct.astype(float), 0.3, 6)[inverse.reshape(-1)]
    assert_allclose(shared, every, rtol=1e-12, atol=1e-18)


def test_lung_kernel_at_1_mm_is_built_and_fine_voxels_are_truncated_not_refused():
    """The 40 mm (12 mm / 0.3) lung kernel at 1 mm voxels is built; at 0.5 mm it would exceed the
    size limit: the DVK truncates it and says how much energy the truncation radius holds."""
    from TAREDosimetryLib.dose.dvk import _class_kernel

    f, info = _class_kernel((1.0, 1.0, 1.0), 0.3, 12.0)
    assert f.shape == (81, 81, 81) and "truncated" not in info and f.sum() == pytest.approx(1.0)
    f, info = _class_kernel((0.5, 0.5, 0.5), 0.3, 12.0)
    assert f.size <= kernels.MAX_KERNEL_VOXELS and info["radius_mm"] < 40.0
    assert "truncated at" in info["truncated"] and "% of its energy" in info["truncated"]
    held = kernels.energy_within_mev(info["radius_mm"], 0.3) / kernels.DPK_TOTAL_ENERGY_MEV
    assert 0.95 < held < 0.999
    assert kernels.radius_within_limit((0.5, 0.5, 0.5), 40.0) == pytest.approx(info["radius_mm"])
    assert kernels.radius_within_limit((3.0, 3.0, 3.0), 12.0) == 12.0


@pytest.mark.parametrize("n", [2, 3, 6, 8, 16, 33, 64])
def test_the_gauss_legendre_rule_is_numpys_and_exact_to_degree_2n_minus_1(n):
    from TAREDosimetryLib.dose.kernels import gauss_legendre

    x, w = gauss_legendre(n)
    ref_x, ref_w = np.polynomial.legendre.leggauss(n)
    assert np.abs(x - ref_x).max() < 1e-15 and np.abs(w / ref_w - 1).max() < 1e-11
    assert np.array_equal(x, -x[::-1]) and np.array_equal(w, w[::-1])
    for degree in (0, 1, 2, 2 * n - 2, 2 * n - 1):  # integral of x^d over [-1, 1]
        exact = 0.0 if degree % 2 else 2.0 / (degree + 1)
        assert (w * x**degree).sum() == pytest.approx(exact, abs=1e-14)
