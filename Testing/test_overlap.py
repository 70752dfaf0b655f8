"""Exact partial-voxel weighting (sampling='overlap'): the overlap operator and the case metrics
against hand calculations.

Every expected value is computed here independently of the engine: 1-D interval overlaps
``|[a, b] ∩ [c, d]| = max(0, min(b, d) - max(a, c))`` multiplied over the three axes (the
fraction of an image voxel inside an axis-aligned box), sums over the image voxels, and for
the oblique case a fine quadrature of the rotated box.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, run_case
from TAREDosimetryLib.overlap import axis_alignment, coverage, overlap_sum
from TAREDosimetryLib.volume import Grid

K = 49.67
RHO = 1.03
FLIP_Z = (1, 0, 0, 0, 1, 0, 0, 0, -1)


def interval_overlap(a, b, c, d):
    return np.clip(np.minimum(b, d) - np.maximum(a, c), 0.0, None)


def box_fractions(grid, lo_mm, hi_mm):
    """Fraction of every voxel of an identity-direction ``grid`` inside the box [lo, hi] (x, y, z mm)."""
    per_axis = []
    for a in range(3):
        n = grid.shape[2 - a]
        h = grid.spacing_mm[a]
        centres = grid.origin_mm[a] + h * np.arange(n)
        per_axis.append(interval_overlap(centres - h / 2, centres + h / 2, lo_mm[a], hi_mm[a]) / h)
    fx, fy, fz = per_axis
    return fz[:, None, None] * fy[None, :, None] * fx[None, None, :]


def box_mask(grid, lo_mm, hi_mm):
    """Voxels of an identity-direction ``grid`` whose centres lie in the box (the box must fall on voxel faces)."""
    axes = [grid.origin_mm[a] + grid.spacing_mm[a] * np.arange(grid.shape[2 - a]) for a in range(3)]
    inside = [(c > lo) & (c < hi) for c, lo, hi in zip(axes, lo_mm, hi_mm)]
    return inside[2][:, None, None] & inside[1][None, :, None] & inside[0][None, None, :]


def absolute_params(**kw):
    """Absolute calibration without decay: the image is Bq/mL and A_j = c_j V_j exactly."""
    base = dict(calibration="absolute", image_decay_corrected=True, lung_dose_from="image", tissue_density_g_ml=RHO)
    base.update(kw)
    return DosimetryParams(**base)


def exact_mean_gy(conc_bq_ml, f):
    """Mean LDM dose of a region with fractions f over an image of concentrations c (constant density):
    K sum f A / sum f m = K sum f c V 1e-9 / (rho sum f V 1e-3)."""
    return K * 1e-9 * float((f * conc_bq_ml).sum()) / (RHO * 1e-3 * float(f.sum()))


# -- the operator -------------------------------------------------------------------------------
def test_box_overlap_fractions_of_a_box_not_aligned_with_the_image_grid():
    image = Grid((7, 6, 9), (2.0, 3.0, 2.5), (-1.3, 0.4, -2.2))
    seg = Grid((60, 80, 70), (0.25, 0.2, 0.3), (-3.0, -1.0, -5.0))
    lo, hi = (1.125, 2.1, -0.35), (9.875, 9.9, 9.85)  # on the segment voxels' faces, not the image's
    r = overlap_sum(box_mask(seg, lo, hi), seg, image)
    expected = box_fractions(image, lo, hi)
    got = np.zeros(image.shape)
    got[r.box] = r.values
    assert r.info["method"] == "box overlap"
    assert_allclose(got, expected, atol=1e-12)
    assert 0 < expected.max() == pytest.approx(1.0) and np.any((expected > 0) & (expected < 0.2))


def test_segment_voxels_larger_than_image_voxels():
    """The other direction: each segment voxel covers several image voxels and parts of others."""
    image = Grid((20, 22, 24), (0.8, 0.7, 0.9), (0.1, 0.2, 0.3))
    seg = Grid((5, 6, 7), (3.3, 3.1, 3.7), (-1.0, -0.5, -0.2))
    mask = np.zeros(seg.shape, bool)
    mask[1:4, 1:5, 2:6] = True
    lo = tuple(seg.origin_mm[a] + seg.spacing_mm[a] * (start - 0.5) for a, start in zip(range(3), (2, 1, 1)))
    hi = tuple(seg.origin_mm[a] + seg.spacing_mm[a] * (stop - 0.5) for a, stop in zip(range(3), (6, 5, 4)))
    r = overlap_sum(mask, seg, image)
    got = np.zeros(image.shape)
    got[r.box] = r.values
    assert_allclose(got, box_fractions(image, lo, hi), atol=1e-12)
    assert_allclose(got.sum() * image.voxel_volume_ml, mask.sum() * seg.voxel_volume_ml, rtol=1e-12)


def test_flipped_and_permuted_image_axes_give_the_same_fractions():
    """An image stored with reversed z and x axes and swapped i/j axes is the same physical grid."""
    seg = Grid((40, 30, 50), (0.25, 0.2, 0.3), (-1.0, -1.0, -5.0))
    z, y, x = np.meshgrid(*(seg.origin_mm[a] + seg.spacing_mm[a] * np.arange(seg.shape[2 - a]) for a in (2, 1, 0)), indexing="ij")
    mask = (x > 0.3) & (x < 5.1) & (y > 0.5) & (y < 3.0) & (z > -2.0) & (z < 3.1)
    plain = Grid((6, 5, 7), (2.0, 1.5, 3.0), (-1.0, -1.0, -10.0))
    # index i runs along -y, j along -x, k along -z; the same voxel boxes as ``plain``
    direction = (0, -1, 0, -1, 0, 0, 0, 0, -1)
    origin = (-1.0 + 2.0 * 6, -1.0 + 1.5 * 4, -10.0 + 3.0 * 5)
    other = Grid((6, 7, 5), (1.5, 2.0, 3.0), origin, direction)
    assert axis_alignment(seg, other) is not None
    a, b = overlap_sum(mask, seg, plain), overlap_sum(mask, seg, other)
    full_a, full_b = np.zeros(plain.shape), np.zeros(other.shape)
    full_a[a.box], full_b[b.box] = a.values, b.values
    # voxel (k, j, i) of ``other`` is voxel (5 - k, 4 - i, 6 - j) of ``plain``
    assert_allclose(full_b, np.transpose(full_a[::-1, ::-1, ::-1], (0, 2, 1)), atol=1e-12)


def test_coverage_is_the_fraction_inside_the_field_of_view():
    ct = Grid((10, 10, 10), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))  # covers [-0.5, 9.5] mm
    image = Grid((3, 3, 3), (4.0, 4.0, 4.0), (-2.0, -2.0, -2.0))  # voxels [-4, 0], [0, 4], [4, 8] mm
    c = coverage(ct, image)
    per_axis = np.array([0.5 / 4, 1.0, 1.0])
    assert_allclose(c.values, per_axis[:, None, None] * per_axis[None, :, None] * per_axis[None, None, :], atol=1e-12)


def rotated_box_case(angle_deg=30.0):
    """A box segment on a 1 mm grid rotated about z, over an axis-aligned 2.5 x 2.5 x 2 mm image."""
    t = np.deg2rad(angle_deg)
    rot = (np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t), 0, 0, 0, 1)
    seg = Grid((16, 28, 30), (1.0, 1.0, 1.0), (0.3, -10.2, 0.4), rot)
    mask = np.zeros(seg.shape, bool)
    mask[3:13, 8:20, 5:25] = True
    image = Grid((10, 20, 20), (2.5, 2.5, 2.0), (-12.0, -12.0, -3.0))
    return seg, mask, image


def exact_x_index_mean(seg, image, n=1500):
    """Volume mean of the image's x index over the rotated box, by a fine midpoint quadrature in
    the box's own plane (the box's extent along z does not change the x index)."""
    q = (np.arange(n) + 0.5) / n
    i, j = np.meshgrid(4.5 + 20 * q, 7.5 + 12 * q, indexing="ij")
    p = image.lps_to_ijk @ seg.ijk_to_lps
    return float(np.floor(p[0, 0] * i + p[0, 1] * j + p[0, 3] + 0.5).mean())


def test_oblique_grids_are_supersampled_and_converge_to_the_exact_answer():
    seg, mask, image = rotated_box_case()
    assert axis_alignment(seg, image) is None
    r = overlap_sum(mask, seg, image)
    assert r.info["method"] == "supersampling" and r.info["converged"]
    assert min(r.info["points_per_axis"]) >= 5
    # volume is conserved exactly, whatever the number of points
    assert_allclose(r.values.sum() * image.voxel_volume_ml, mask.sum() * seg.voxel_volume_ml, rtol=1e-12)
    x_index = np.arange(r.box[2].start, r.box[2].stop)[None, None, :]
    mean = float((r.values * x_index).sum() / r.values.sum())
    assert_allclose(mean, exact_x_index_mean(seg, image), rtol=5e-5)  # 2.3e-5 at 9 points per axis


# -- case metrics ---------------------------------------------------------------------------------
def test_box_segment_not_aligned_with_the_image_mean_to_1e6():
    image = Grid((8, 9, 10), (4.0, 4.0, 2.5), (-2.0, -3.0, 1.0))
    rng = np.random.default_rng(4)
    conc = rng.uniform(1e5, 9e5, size=image.shape)
    seg = Grid((90, 120, 130), (0.3, 0.25, 0.2), (-4.0, -5.0, -0.5))
    lo, hi = (3.05, 2.125, 3.0), (25.25, 22.125, 16.6)
    liver = box_mask(seg, lo, hi)
    r = run_case(Volume(conc.astype(np.float32), grid=image), Segmentation.from_masks({"liver": liver}, seg), params=absolute_params())
    f = box_fractions(image, lo, hi)
    m = r.segment("liver").metrics
    assert_allclose(m["mean_gy"], exact_mean_gy(conc, f), rtol=1e-6)
    assert_allclose(m["activity_gbq"], float((f * conc).sum()) * image.voxel_volume_ml * 1e-9, rtol=1e-6)
    assert_allclose(m["volume_ml"], liver.sum() * seg.voxel_volume_ml, rtol=1e-9)
    assert_allclose(m["mass_g"], RHO * liver.sum() * seg.voxel_volume_ml, rtol=1e-6)


def slab_case(shift_mm=0.0, sampling="overlap"):
    """1 x 1 x 4 mm segment voxels over a 4 x 4 x 2 mm image whose slices alternate 4 and 1 (Bq/mL x 1e5).

    The segment is a box 16 x 16 mm in-plane and 5 segment voxels (20 mm) thick starting at
    z = shift: each segment voxel covers half an image slice, a whole one (of 4) and another
    half; its centre lies in the middle of the slice of 4, the only one nearest sampling reads.
    Exact mean concentration: (0.5 + 1 x 4 + 0.5) / 2 = 2.5 per segment voxel, whatever the
    shift (the slice pattern has a period of 4 mm, the segment voxel thickness).
    """
    image = Grid((20, 8, 8), (4.0, 4.0, 2.0), (0.0, 0.0, 0.0))  # slice k spans [2k - 1, 2k + 1] mm
    conc = np.where(np.arange(20) % 2 == 1, 4.0, 1.0)[:, None, None] * np.ones(image.shape) * 1e5
    seg = Grid((6, 24, 24), (1.0, 1.0, 4.0), (2.5, 2.5, 2.0 + shift_mm))  # voxel k spans [4k, 4k + 4] + shift
    mask = np.zeros(seg.shape, bool)
    mask[0:5, 2:18, 2:18] = True
    r = run_case(Volume(conc.astype(np.float32), grid=image), Segmentation.from_masks({"liver": mask}, seg),
                 params=absolute_params(sampling=sampling))
    return r.segment("liver").metrics["mean_gy"], K * 1e-9 * 2.5e5 / (RHO * 1e-3)


def test_1x1x4_mm_segments_over_a_4x4x2_mm_image_nearest_reads_every_other_slice():
    exact_overlap, expected = slab_case(sampling="overlap")
    nearest, _ = slab_case(sampling="nearest")
    assert_allclose(exact_overlap, expected, rtol=1e-6)
    assert_allclose(nearest / expected, 1.6, rtol=1e-6)  # only the slices of 4 are read: 4 / 2.5


@pytest.mark.parametrize("shift_mm", [0.3, 0.7, 1.0, 1.5, 1.9, -0.45])
def test_means_are_invariant_to_sub_voxel_shifts_of_the_segmentation(shift_mm):
    got, expected = slab_case(shift_mm)
    assert_allclose(got, expected, rtol=1e-6)


def test_nearest_sampling_is_not_shift_invariant():
    values = [slab_case(s, "nearest")[0] for s in (0.0, 0.5, 1.5)]
    assert max(values) / min(values) > 3.0  # 4 / 1: it reads only the slices of 4, or only those of 1


def test_flipped_image_gives_the_same_metrics():
    """The same physical activity stored z- and x-reversed: every metric identical to 1e-6."""
    image = Grid((8, 9, 10), (4.0, 4.0, 2.5), (-2.0, -3.0, 1.0))
    rng = np.random.default_rng(5)
    conc = rng.uniform(1e5, 9e5, size=image.shape).astype(np.float32)
    flipped = Grid(image.shape, image.spacing_mm, (-2.0 + 4.0 * 9, -3.0, 1.0 + 2.5 * 7), (-1, 0, 0, 0, 1, 0, 0, 0, -1))
    seg = Grid((90, 120, 130), (0.3, 0.25, 0.2), (-4.0, -5.0, -0.5))
    segmentation = Segmentation.from_masks({"liver": box_mask(seg, (3.05, 2.125, 3.0), (25.25, 22.125, 16.6))}, seg)
    a = run_case(Volume(conc, grid=image), segmentation, params=absolute_params()).segment("liver").metrics
    b = run_case(Volume(conc[::-1, :, ::-1].copy(), grid=flipped), segmentation, params=absolute_params()).segment("liver").metrics
    for key in ("mean_gy", "activity_gbq", "volume_ml", "mass_g", "d50_gy", "d90_gy", "v100_pct", "eud_gy", "bed_gy", "sd_gy"):
        assert_allclose(b[key], a[key], rtol=1e-6, err_msg=key)


def partition_case():
    """Three segments that partition the image exactly, on a grid whose voxels do not divide the image's."""
    image = Grid((6, 8, 10), (4.0, 4.0, 2.5), (0.0, 0.0, 0.0))  # field of view [-2, 38] x [-2, 30] x [-1.25, 13.75]
    n = (13, 11, 7)  # segment voxels per axis (x, y, z) across the same field of view
    spacing = (40.0 / n[0], 32.0 / n[1], 15.0 / n[2])
    seg = Grid((n[2], n[1], n[0]), spacing, tuple(-h0 + s / 2 for h0, s in zip((2.0, 2.0, 1.25), spacing)))
    k, j, i = np.indices(seg.shape)
    label = np.where(i < 5, 1, np.where(j < 6, 2, 3))
    masks = {"liver": label == 1, "tumour": label == 2, "other part": label == 3}
    return image, Segmentation.from_masks(masks, seg)


def test_energy_balance_for_a_partition_of_the_image():
    image, seg = partition_case()
    rng = np.random.default_rng(6)
    counts = rng.gamma(2.0, 10.0, size=image.shape).astype(np.float32)
    p = DosimetryParams(administered_activity_gbq=2.0, reference_region="image", lung_shunt_fraction=0.0)
    r = run_case(Volume(counts, grid=image), seg, params=p, roles={"other part": "other"})
    energy = sum(s.metrics["mean_gy"] * s.metrics["mass_g"] * 1e-3 for s in r.segments if s.name in ("liver", "tumour", "other part"))
    assert_allclose(energy, K * 2.0, rtol=1e-6)
    volume = sum(r.segment(n).metrics["volume_ml"] for n in ("liver", "tumour", "other part"))
    assert_allclose(volume, np.prod(image.shape) * image.voxel_volume_ml, rtol=1e-9)


def test_energy_balance_for_a_partition_with_a_density_map_and_dvk():
    image, seg = partition_case()
    rng = np.random.default_rng(7)
    counts = rng.gamma(2.0, 10.0, size=image.shape).astype(np.float32)
    ct = Volume(rng.uniform(-200, 300, size=(30, 32, 40)).astype(np.float32), (1.0, 1.0, 0.5), (-1.5, -1.5, -1.0))
    p = DosimetryParams(administered_activity_gbq=2.0, reference_region="image", lung_shunt_fraction=0.0, method="dvk", device="cpu")
    r = run_case(Volume(counts, grid=image), seg, params=p, ct=ct, roles={"other part": "other"})
    energy = sum(r.segment(n).metrics["mean_gy"] * r.segment(n).metrics["mass_g"] * 1e-3 for n in ("liver", "tumour", "other part"))
    image_energy = float((r.dose_gy.array.astype(np.float64) * r.density_g_ml.array * image.voxel_volume_ml * 1e-3).sum())
    assert_allclose(energy, image_energy, rtol=1e-6)  # the segments hold the image's energy, none twice
    assert energy < K * 2.0  # DVK carries some energy out of this small image


def test_oblique_segmentation_mean_converges_to_the_exact_value():
    seg, mask, image = rotated_box_case()
    x_index = np.broadcast_to(np.arange(image.shape[2], dtype=np.float64), image.shape)
    conc = (1.0 + x_index) * 1e5
    r = run_case(Volume(conc.astype(np.float32), grid=image), Segmentation.from_masks({"liver": mask}, seg), params=absolute_params())
    assert r.metrics_grid["method"] == "supersampling" and r.metrics_grid["supersampling_converged"]
    expected = K * 1e-9 * (1.0 + exact_x_index_mean(seg, image)) * 1e5 / (RHO * 1e-3)
    assert_allclose(r.segment("liver").metrics["mean_gy"], expected, rtol=5e-5)
    assert_allclose(r.segment("liver").metrics["volume_ml"], mask.sum() * seg.voxel_volume_ml, rtol=1e-9)


def test_dvh_of_partial_voxels_is_weighted_by_their_fractions():
    """Two image voxels, 1 and 3 Gy: a segment holding all of the first and a quarter of the second
    is 80 % at 1 Gy and 20 % at 3 Gy (V2Gy = 20 %), its mean dose 1.4 Gy.  D_x is the step DVH's
    (review finding 14): D50 = D70 = D90 = 1 Gy, the dose of the voxel where the volume is reached
    (the interpolated 2.25, 1.75, 1.25 Gy were received by no voxel and contradicted V2Gy)."""
    image = Grid((1, 1, 2), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    conc = np.array([[[1.0, 3.0]]]) * RHO * 1e-3 / (K * 1e-9)  # LDM dose 1 and 3 Gy
    seg = Grid((4, 4, 5), (1.0, 1.0, 1.0), (-1.5, -1.5, -1.5))  # covers x in [-2, 3]: voxel 0 and a quarter of voxel 1
    r = run_case(Volume(conc.astype(np.float32), grid=image), Segmentation.from_masks({"liver": np.ones(seg.shape, bool)}, seg),
                 params=absolute_params(v_levels_gy=(2.0, 1.75), d_levels_pct=(10, 50, 70, 90)))
    m = r.segment("liver").metrics
    assert_allclose(m["mean_gy"], 1.4, rtol=1e-6)
    assert_allclose(m["v2_pct"], 20.0, rtol=1e-6)
    assert_allclose(m["volume_ml"], 0.080, rtol=1e-9)
    assert_allclose(m["d10_gy"], 3.0, rtol=1e-6)  # the hottest 20 % all receive 3 Gy
    for x in (50, 70, 90):
        assert_allclose(m[f"d{x}_gy"], 1.0, rtol=1e-6)
    assert_allclose(m["v1.75_pct"], 20.0, rtol=1e-6)  # consistent with D70 = 1 Gy < 1.75 Gy
    assert_allclose(m["median_gy"], 1.0, rtol=1e-6)


# -- densities and masses ---------------------------------------------------------------------------
def test_density_of_an_activity_voxel_is_the_volume_average_of_the_ct():
    """A 1 mm CT under 4 mm activity voxels: each activity voxel's density is the mean of the
    Schneider densities of the 64 CT voxels it holds (not the density of the HU at its centre)."""
    from TAREDosimetryLib import physics

    image = Grid((3, 4, 5), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0))  # field of view [-2, 18] x [-2, 14] x [-2, 10]
    rng = np.random.default_rng(8)
    hu = rng.choice([-50.0, 40.0, 250.0], size=(12, 16, 20)).astype(np.float32)
    ct = Volume(hu, (1.0, 1.0, 1.0), (-1.5, -1.5, -1.5))
    conc = np.full(image.shape, 2e5, np.float32)
    seg = Grid((12, 16, 20), (1.0, 1.0, 1.0), (-1.5, -1.5, -1.5))
    lo, hi = (1.0, 2.0, 0.0), (13.0, 11.0, 7.0)
    seg_mask = box_mask(seg, lo, hi)
    r = run_case(Volume(conc, grid=image), Segmentation.from_masks({"liver": seg_mask}, seg), ct=ct,
                 params=absolute_params(density_from_ct=True))
    rho_ct = physics.hu_to_density_g_ml(hu).astype(np.float64)
    expected = rho_ct.reshape(3, 4, 4, 4, 5, 4).mean(axis=(1, 3, 5))
    assert_allclose(r.density_g_ml.array, expected, rtol=1e-6)
    f = box_fractions(image, lo, hi)
    m = r.segment("liver").metrics
    assert_allclose(m["mass_g"], float((f * expected).sum()) * image.voxel_volume_ml, rtol=1e-6)
    assert_allclose(m["mean_gy"], K * float((f * conc * 1e-9).sum()) / (float((f * expected).sum()) * 1e-3), rtol=1e-6)


def test_without_ct_a_voxel_is_tissue_and_lung_in_proportion():
    image = Grid((2, 2, 2), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    seg = Grid((8, 8, 8), (1.0, 1.0, 1.0), (-1.5, -1.5, -1.5))
    lung = np.zeros(seg.shape, bool)
    lung[:, :, :5] = True  # x in [-2, 3]: all of the first voxel column, a quarter of the second
    liver = ~lung
    conc = np.full(image.shape, 1e5, np.float32)
    r = run_case(Volume(conc, grid=image), Segmentation.from_masks({"liver": liver, "lung": lung}, seg),
                 params=absolute_params(lung_density_g_ml=0.3))
    rho = r.density_g_ml.array
    assert_allclose(rho[:, :, 0], 0.3, rtol=1e-6)
    assert_allclose(rho[:, :, 1], 0.25 * 0.3 + 0.75 * RHO, rtol=1e-6)
    total_mass = sum(r.segment(n).metrics["mass_g"] for n in ("liver", "lung"))
    assert_allclose(total_mass, float(rho.astype(np.float64).sum()) * image.voxel_volume_ml, rtol=1e-6)


def test_lsf_lung_mass_is_exact_over_a_ct_on_another_grid():
    """LSF model: lung mass = sum over CT voxels of (fraction inside the lung) x Kao density x volume."""
    from TAREDosimetryLib import physics

    image = Grid((10, 10, 10), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    seg = Grid((40, 40, 40), (1.0, 1.0, 1.0), (-1.5, -1.5, -1.5))
    liver = box_mask(seg, (0.0, 0.0, 0.0), (30.0, 30.0, 12.0))
    lo, hi = (2.0, 3.0, 15.0), (31.0, 29.0, 36.0)
    lung = box_mask(seg, lo, hi)
    ct_grid = Grid((14, 17, 19), (2.1, 2.3, 2.6), (-2.2, -1.9, -2.4))  # ends at z = 32.7 mm
    rng = np.random.default_rng(9)
    hu = rng.uniform(-950, -600, size=ct_grid.shape).astype(np.float32)
    counts = np.ones(image.shape, np.float32)
    p = DosimetryParams(administered_activity_gbq=2.0, lung_shunt_fraction=0.1)
    r = run_case(Volume(counts, grid=image), Segmentation.from_masks({"liver": liver, "lung": lung}, seg),
                 params=p, ct=Volume(hu, grid=ct_grid))
    f = box_fractions(ct_grid, lo, hi)
    inside_ml = float(f.sum()) * ct_grid.voxel_volume_ml
    expected = float((f * physics.lung_hu_to_density_g_ml(hu)).sum()) * ct_grid.voxel_volume_ml
    expected += (lung.sum() * seg.voxel_volume_ml - inside_ml) * p.lung_density_g_ml  # lung beyond the CT
    assert inside_ml < 0.9 * lung.sum() * seg.voxel_volume_ml  # the CT does not cover the whole lung
    assert_allclose(r.summary["lung_mass_g"], expected, rtol=1e-6)
    assert_allclose(r.segment("lungs (LSF model)").metrics["mean_gy"], K * 2.0 * 0.1 / (expected * 1e-3), rtol=1e-6)


def test_bad_overlap_arguments_are_refused():
    from TAREDosimetryLib import GeometryError, InputError

    seg, mask, image = rotated_box_case()
    with pytest.raises(InputError, match="do not match the source grid"):
        overlap_sum(mask[:-1], seg, image)
    with pytest.raises(GeometryError, match="not axis-aligned"):
        overlap_sum(mask, seg, image, method="box")
    with pytest.raises(InputError, match="method must be one of"):
        overlap_sum(mask, seg, image, method="exact")
    with pytest.raises(InputError, match="sampling must be one of overlap, nearest, linear"):
        DosimetryParams(sampling="area")


def test_whole_number_ct_gives_the_same_densities_as_a_float_ct():
    """An int16 CT goes through a lookup table of its HU range: the same densities as the float path."""
    image = Grid((6, 6, 6), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    rng = np.random.default_rng(12)
    hu = rng.integers(-1024, 1800, size=(48, 48, 48)).astype(np.int16)
    seg = Grid((48, 48, 48), (0.5, 0.5, 0.5), (-1.75, -1.75, -1.75))
    segmentation = Segmentation.from_masks({"liver": box_mask(seg, (0.0, 0.0, 0.0), (20.0, 20.0, 20.0))}, seg)
    conc = np.full(image.shape, 1e5, np.float32)
    runs = [run_case(Volume(conc, grid=image), segmentation, ct=Volume(h, grid=seg), params=absolute_params(density_from_ct=True))
            for h in (hu, hu.astype(np.float32))]
    assert_allclose(runs[0].density_g_ml.array, runs[1].density_g_ml.array, rtol=1e-6)


def test_activity_grid_finer_than_the_segments():
    """3.3 x 3.1 x 3.7 mm segment voxels over a 0.8 x 0.7 x 0.9 mm image: each image voxel counts
    with the part of it inside the segment's (coarse) voxels."""
    image = Grid((30, 34, 36), (0.8, 0.7, 0.9), (0.1, 0.2, 0.3))
    rng = np.random.default_rng(13)
    conc = rng.uniform(1e5, 9e5, size=image.shape)
    seg = Grid((5, 6, 7), (3.3, 3.1, 3.7), (-1.0, -0.5, -0.2))
    mask = np.zeros(seg.shape, bool)
    mask[1:4, 1:5, 2:6] = True
    lo = tuple(seg.origin_mm[a] + seg.spacing_mm[a] * (start - 0.5) for a, start in zip(range(3), (2, 1, 1)))
    hi = tuple(seg.origin_mm[a] + seg.spacing_mm[a] * (stop - 0.5) for a, stop in zip(range(3), (6, 5, 4)))
    r = run_case(Volume(conc.astype(np.float32), grid=image), Segmentation.from_masks({"liver": mask}, seg), params=absolute_params())
    f = box_fractions(image, lo, hi)
    m = r.segment("liver").metrics
    assert r.metrics_grid["grid"] == "activity"
    assert_allclose(m["mean_gy"], exact_mean_gy(conc, f), rtol=1e-6)
    assert_allclose(m["volume_ml"], mask.sum() * seg.voxel_volume_ml, rtol=1e-9)


def test_an_oblique_ct_is_read_at_the_voxel_centres_and_said_so():
    from TAREDosimetryLib import physics

    seg, mask, image = rotated_box_case()
    ct = Volume(np.full(seg.shape, 40, np.int16), grid=seg)  # the rotated grid
    conc = np.full(image.shape, 1e5, np.float32)
    r = run_case(Volume(conc, grid=image), Segmentation.from_masks({"liver": mask}, seg), ct=ct,
                 params=absolute_params(density_from_ct=True))
    assert "oblique to the activity grid: read at the voxel centres" in r.summary["density_source"]
    rho_40 = float(physics.hu_to_density_g_ml(40.0))
    assert_allclose(r.segment("liver").metrics["mass_g"], rho_40 * mask.sum() * seg.voxel_volume_ml, rtol=1e-5)


def test_supersampling_stops_within_its_work_limit(monkeypatch):
    from TAREDosimetryLib import overlap

    seg, mask, image = rotated_box_case()
    monkeypatch.setattr(overlap, "MAX_SUPERSAMPLING_WORK", 1.0)
    r = overlap.overlap_sum(mask, seg, image)
    assert r.info["converged"] is False and r.info["points_per_axis"] == [5, 5, 5]
    assert_allclose(r.values.sum() * image.voxel_volume_ml, mask.sum() * seg.voxel_volume_ml, rtol=1e-12)
    result = run_case(Volume(np.full(image.shape, 1e5, np.float32), grid=image), Segmentation.from_masks({"liver": mask}, seg),
                      params=absolute_params())
    assert any("oblique" in w and "not converged" in w for w in result.warnings)


def _brute_force_overlap(values, src, dst):
    """sum_i v_i |B_i ∩ B_j| / |B_j| voxel pair by voxel pair (identity or flipped directions)."""
    out = np.zeros(dst.shape)
    lo_d, hi_d = [], []
    for a in range(3):  # x, y, z
        sign = dst.direction[3 * a + a]
        c = dst.origin_mm[a] + sign * dst.spacing_mm[a] * np.arange(dst.shape[2 - a])
        lo_d.append(c - dst.spacing_mm[a] / 2)
        hi_d.append(c + dst.spacing_mm[a] / 2)
    for k, j, i in zip(*np.nonzero(values)):
        f = []
        for a, n in zip(range(3), (i, j, k)):
            sign = src.direction[3 * a + a]
            c = src.origin_mm[a] + sign * src.spacing_mm[a] * n
            f.append(interval_overlap(c - src.spacing_mm[a] / 2, c + src.spacing_mm[a] / 2, lo_d[a], hi_d[a]) / dst.spacing_mm[a])
        out += values[k, j, i] * f[2][:, None, None] * f[1][None, :, None] * f[0][None, None, :]
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block", [1 << 23, 7])
def test_banded_box_overlap_equals_the_voxel_pair_sum(seed, block, monkeypatch):
    """The banded 1-D contraction (blocks of any size, finer or coarser source, flipped axes)
    equals the overlap summed voxel pair by voxel pair."""
    import TAREDosimetryLib.overlap as ov

    monkeypatch.setattr(ov, "_BLOCK", block)
    monkeypatch.setattr(ov, "_CONVERT_BYTES", 8 * block)  # a mask converted a row, or many rows, at a time
    rng = np.random.default_rng(seed)
    src_spacing = tuple(rng.choice([0.7, 1.0, 2.5, 4.4], 3))
    src = Grid((9, 8, 7), src_spacing, tuple(rng.uniform(-3, 3, 3)), FLIP_Z if seed % 2 else (1, 0, 0, 0, 1, 0, 0, 0, 1))
    dst = Grid((10, 9, 11), tuple(rng.choice([1.1, 2.0, 3.3], 3)), (-6.0, -5.0, -8.0))
    values = rng.random(src.shape) * (rng.random(src.shape) < 0.6)
    expected = _brute_force_overlap(values, src, dst)
    for v in (values, values > 0.3):
        got = overlap_sum(v, src, dst, method="box")
        full = np.zeros(dst.shape)
        if got.box is not None:
            full[got.box] = got.values
        exp = expected if v.dtype != bool else _brute_force_overlap(v.astype(float), src, dst)
        assert_allclose(full, exp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_destination_box_from_the_geometry_is_the_box_of_the_overlap(seed):
    from TAREDosimetryLib.overlap import destination_box

    rng = np.random.default_rng(seed)
    c, s = np.cos(0.2), np.sin(0.2)
    direction = (c, -s, 0, s, c, 0, 0, 0, 1) if seed == 4 else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    src = Grid((5, 6, 7), tuple(rng.choice([0.8, 1.0, 3.0], 3)), tuple(rng.uniform(-20, 20, 3)), direction)
    dst = Grid((9, 10, 11), (2.0, 2.5, 3.0), (-10.0, -12.0, -9.0))
    got = overlap_sum(np.ones(src.shape, bool), src, dst)
    assert destination_box(src, dst) == got.box
    far = Grid((3, 3, 3), (1.0, 1.0, 1.0), (500.0, 500.0, 500.0))
    assert destination_box(far, dst) is None and overlap_sum(np.ones(far.shape, bool), far, dst).box is None


def test_a_mask_on_the_same_voxels_gives_the_fractions_of_the_contractions(monkeypatch):
    """Grids whose voxels coincide exactly (same spacing, whole-voxel shifts, reversed axes): the
    mask itself as the fractions, equal bit for bit to the separable contractions (and no box
    when the grids do not meet)."""
    import TAREDosimetryLib.overlap as ov

    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(200):
        shape, dshape = tuple(rng.integers(1, 9, 3)), tuple(rng.integers(1, 9, 3))
        flips = np.diag([-1.0 if f else 1.0 for f in rng.integers(0, 2, 3)])
        spacing = (1.5, 2.0, 2.5)
        shift = rng.integers(-4, 4, 3)
        src = Grid(shape, spacing, tuple(float(k) * h for k, h in zip(shift, spacing)), tuple(flips.reshape(-1)))
        dst = Grid(dshape, spacing, (0.0, 0.0, 0.0))
        values = rng.random(shape) < 0.5 if trial % 2 else rng.integers(0, 4, shape).astype(np.int16)
        assert ov._same_voxels(ov.axis_alignment(src, dst))
        fast = ov.overlap_sum(values, src, dst)
        with monkeypatch.context() as m:
            m.setattr(ov, "_same_voxels", lambda alignment: False)
            slow = ov.overlap_sum(values, src, dst)
        assert fast.box == slow.box
        if fast.box is not None:
            assert fast.values.dtype == slow.values.dtype and fast.values.tobytes() == slow.values.tobytes()
            checked += 1
    assert checked > 40, checked  # the others: grids that do not meet, no box either way
    half_voxel = Grid((4, 4, 4), (1.5, 2.0, 2.5), (0.75, 0.0, 0.0))
    assert not ov._same_voxels(ov.axis_alignment(half_voxel, Grid((4, 4, 4), (1.5, 2.0, 2.5))))


@pytest.mark.parametrize("block", [1, 50, 1 << 16])
def test_a_mask_converted_block_by_block_gives_the_numbers_of_its_float_copy(block, monkeypatch):
    """The first contraction of a boolean mask converts it into one small reused buffer, a block of
    rows at a time (the last block partial): the same numbers, bit for bit, as the contraction of
    the mask converted whole."""
    import TAREDosimetryLib.overlap as ov

    rng = np.random.default_rng(3)
    src = Grid((6, 23, 64), (1.0, 0.9765625, 2.5), (0.3, -1.1, 0.7))
    dst = Grid((5, 9, 17), (4.7952, 4.7952, 3.1), (-2.0, -3.0, -1.0))
    mask = rng.random(src.shape) < 0.4
    monkeypatch.setattr(ov, "_CONVERT_BYTES", 8 * block)  # float64: block elements
    from_mask = overlap_sum(mask, src, dst, dtype=np.float64)
    from_float = overlap_sum(mask.astype(np.float64), src, dst, dtype=np.float64)
    assert from_mask.box == from_float.box
    assert np.array_equal(from_mask.values, from_float.values)

