"""The density of a case with lung segments and no CT as a boxed map (issue 14, memory).

Without a CT the density is the tissue density everywhere but on the lungs' box, where tissue and
lung mix by each voxel's lung fraction.  The engine keeps it as a
:class:`~TAREDosimetryLib.volume.BoxedArray` (one number outside the box, an array inside it) and
never makes the full-size map: these tests compare every reader (LDM, DVK, the overlap sampler,
the metrics, run_case and evaluate_dose_case) against the full map the engine made before, bit for
bit, and bound the memory of a case.
"""

import pickle

import numpy as np
import pytest

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, run_case
from TAREDosimetryLib.volume import BoxedArray, BoxedValues, BoxedVolume, Grid, uniform_value, volume_values

K = 49.67


def _random_boxed(rng, shape=(9, 11, 13), box=(slice(2, 7), slice(3, 11), slice(0, 5))):
    inside = rng.uniform(0.2, 1.1, tuple(s.stop - s.start for s in box)).astype(np.float32)
    return BoxedArray(1.03, box, inside, shape)


def _full(boxed):
    """The full map written out by hand (not through the class)."""
    full = np.full(boxed.shape, np.float32(1.03), np.float32)
    full[boxed.box] = boxed.inside
    return full


def test_a_boxed_array_reads_as_the_full_array_by_slices_and_flat_indices(monkeypatch):
    import TAREDosimetryLib.volume as volume

    monkeypatch.setattr(volume, "_TAKE_BLOCK", 7)  # many blocks, some wholly outside the box's planes
    rng = np.random.default_rng(3)
    b = _random_boxed(rng)
    full = _full(b)
    assert np.array_equal(np.asarray(b), full) and np.asarray(b).dtype == np.float32
    for key in (slice(0, 3), slice(1, 8), slice(6, 20), (slice(2, 5), slice(None), slice(4, 9)), (slice(0, 9), slice(10, 11)),
                slice(5, 5)):
        assert np.array_equal(b[key], full[key]), key
    assert b[0:2].flags.writeable and not np.shares_memory(b[2:4], b.inside)  # a new array, not a view
    for dtype in (np.int32, np.int64):
        index = rng.integers(0, full.size, 500).astype(dtype)  # unsorted, repeated
        assert np.array_equal(b.take(index), full.reshape(-1)[index])
    values = BoxedValues(b, np.arange(full.size)[::3])
    assert len(values) == values.size == full.reshape(-1)[::3].size
    assert np.array_equal(values[5:40], full.reshape(-1)[::3][5:40])
    assert np.array_equal(np.asarray(values, dtype=np.float64), full.reshape(-1)[::3].astype(np.float64))
    assert uniform_value(b) is None and uniform_value(values) is None
    with pytest.raises(TypeError):
        b[full > 1]  # noqa: B018 - not readable by a mask: np.asarray() says so
    with pytest.raises(TypeError):
        b[::2]  # noqa: B018
    with pytest.raises(TypeError):
        values[[1, 2]]  # noqa: B018
    from TAREDosimetryLib.errors import GeometryError

    for box, inside in (((slice(0, 4, 2), slice(0, 2), slice(0, 2)), np.ones((2, 2, 2))), ((slice(0, 2),) * 2, np.ones((2, 2))),
                        ((slice(0, 2),) * 3, np.ones((2, 2, 3)))):
        with pytest.raises(GeometryError):
            BoxedArray(1.0, box, inside, (5, 5, 5))


def test_a_boxed_volume_makes_its_array_only_when_asked():
    rng = np.random.default_rng(4)
    b = _random_boxed(rng)
    vol = BoxedVolume(b, Grid(b.shape, (2.0, 2.0, 3.0)), name="density", unit="g/mL")
    assert "box=" in repr(vol) and vol._whole is None  # repr reads no array
    assert volume_values(vol) is b and vol._whole is None
    again = pickle.loads(pickle.dumps(vol))
    assert again._whole is None and np.array_equal(again.boxed.inside, b.inside) and again.grid == vol.grid
    arr = vol.array
    assert np.array_equal(arr, _full(b)) and vol.array is arr and not arr.flags.writeable
    assert isinstance(vol, Volume) and vol.with_array(arr).array is arr


def _reference_density(grid, params, fraction):
    """The density map without a CT as the engine made it before (a full float32 map)."""
    rho = np.full(grid.shape, np.float32(params.tissue_density_g_ml), np.float32)
    f = fraction.values.astype(np.float64)
    rho[fraction.box] = params.tissue_density_g_ml * (1.0 - f) + params.lung_density_g_ml * f
    return rho


def _lung_case(same_grid=False):
    """(activity Volume, Segmentation, Grid of the activity): liver, tumour and a lung on top; the
    segmentation on a finer grid shifted by a third of a voxel (partial lung voxels), or the same grid."""
    agrid = Grid((30, 32, 34), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    sgrid = agrid if same_grid else Grid((45, 48, 51), (2.0, 2.0, 2.0), (0.5, -0.4, 0.3))
    z, y, x = np.meshgrid(*(np.arange(n) for n in sgrid.shape), indexing="ij")
    liver = (z > 0.15 * sgrid.shape[0]) & (z < 0.6 * sgrid.shape[0]) & (y > 4) & (y < sgrid.shape[1] - 4) & (x > 3) & (x < sgrid.shape[2] - 5)
    tumour = liver & ((z - 0.4 * sgrid.shape[0]) ** 2 + (y - sgrid.shape[1] / 2) ** 2 + (x - sgrid.shape[2] / 2) ** 2 < 16)
    lung = (z > 0.68 * sgrid.shape[0]) & (z < 0.95 * sgrid.shape[0]) & (y > 6) & (y < 0.5 * sgrid.shape[1]) & (x > 5) & (x < 0.7 * sgrid.shape[2])
    seg = Segmentation.from_masks({"liver": liver & ~tumour, "tumour": tumour, "lung": lung}, sgrid)
    rng = np.random.default_rng(5)
    counts = rng.uniform(0.5, 1.5, agrid.shape).astype(np.float32)
    counts[agrid.shape[0] // 3:agrid.shape[0] // 2, 10:20, 10:20] *= 6
    counts[-2:, :, :3] = 0.0  # empty voxels
    return Volume(counts, grid=agrid, name="spect"), seg, agrid


@pytest.mark.parametrize("same_grid", [False, True])
def test_density_with_a_lung_segment_is_boxed_and_equals_the_full_map(same_grid):
    from TAREDosimetryLib.dose.density import averaged_density_map_g_ml
    from TAREDosimetryLib.evaluation.sampling import fraction_in_box

    _, seg, agrid = _lung_case(same_grid)
    params = DosimetryParams(lung_density_g_ml=0.3)
    fraction = fraction_in_box(seg, ["lung"], agrid)
    density, outside_ct, _ = averaged_density_map_g_ml(agrid, params, lung_fraction=fraction)
    assert isinstance(density, BoxedVolume) and outside_ct is None
    assert density.boxed.box == fraction.box and density.boxed.inside.size < 0.3 * np.prod(agrid.shape)
    assert density._whole is None  # nothing made the full array
    assert np.array_equal(density.array, _reference_density(agrid, params, fraction))
    assert (0 < fraction.values).any() and ((0 < fraction.values) & (fraction.values < 1)).any() != same_grid


@pytest.mark.parametrize("block", [1 << 22, 1000])
def test_ldm_of_a_boxed_density_is_bit_identical_to_the_elementwise_expression(block, monkeypatch):
    import TAREDosimetryLib.dose.ldm as ldm
    from test_fast_paths import _reference_ldm

    monkeypatch.setattr(ldm, "_BLOCK", block)
    rng = np.random.default_rng(6)
    act = Volume((rng.random((13, 17, 19)) * 1e-3).astype(np.float32), (2.0, 3.0, 2.5))
    box = (slice(3, 11), slice(0, 9), slice(5, 19))
    inside = rng.uniform(0.2, 1.2, (8, 9, 14)).astype(np.float32)
    inside[0, 0, :3] = 0.0  # zero density: zero dose
    density = BoxedVolume(BoxedArray(1.03, box, inside, act.shape), act.grid)
    got = ldm.ldm_dose_gy(act, density, K).array
    assert np.array_equal(got, _reference_ldm(act, _full(density.boxed), K))
    assert density._whole is None
    wide = BoxedVolume(BoxedArray(0.0, box, inside.astype(np.float64) / 3, act.shape), act.grid)  # float64, 0 outside the box
    with np.errstate(all="raise"):
        got = ldm.ldm_dose_gy(act, wide, K).array
    assert np.array_equal(got, _reference_ldm(act, np.asarray(wide.boxed, np.float32), K)) and not got[0].any()


@pytest.mark.parametrize("lung_mode", ["kernel", "ldm"])
def test_dvk_of_a_boxed_density_is_bit_identical_to_the_full_map(lung_mode):
    from TAREDosimetryLib.dose.dvk import dvk_dose_gy

    rng = np.random.default_rng(7)
    act = Volume(rng.uniform(0, 1e-3, (22, 20, 24)).astype(np.float32), (3.0, 3.0, 3.0))
    box = (slice(12, 22), slice(2, 14), slice(4, 20))
    f = rng.choice([0.0, 0.4, 1.0], (10, 12, 16))
    inside = (1.03 * (1 - f) + 0.3 * f).astype(np.float32)
    boxed = BoxedVolume(BoxedArray(1.03, box, inside, act.shape), act.grid)
    full = Volume(_full(boxed.boxed), grid=act.grid)
    lung = np.zeros(act.shape, bool)
    lung[box] = f >= 0.5
    kw = dict(k_gy_kg_per_gbq=K, device="cpu", lung_mask=lung, lung_mode=lung_mode)
    got = dvk_dose_gy(act, density_g_ml=boxed, **kw).array
    assert np.array_equal(got, dvk_dose_gy(act, density_g_ml=full, **kw).array)
    assert boxed._whole is None
    # one value inside and out: read as that number, as a full map of one value is
    flat = BoxedVolume(BoxedArray(1.03, box, np.full(inside.shape, np.float32(1.03)), act.shape), act.grid)
    assert np.array_equal(dvk_dose_gy(act, density_g_ml=flat, k_gy_kg_per_gbq=K, device="cpu").array,
                          dvk_dose_gy(act, density_g_ml=Volume(_full(flat.boxed), grid=act.grid), k_gy_kg_per_gbq=K,
                                      device="cpu").array)


def test_dvk_refuses_a_boxed_density_with_negative_or_non_finite_values():
    from TAREDosimetryLib.dose.dvk import dvk_dose_gy
    from TAREDosimetryLib.errors import InputError

    act = Volume(np.ones((6, 6, 6), np.float32), (3.0, 3.0, 3.0))
    for inside, outside in ((np.full((2, 2, 2), -1.0, np.float32), 1.03), (np.full((2, 2, 2), np.nan, np.float32), 1.03),
                            (np.ones((2, 2, 2), np.float32), np.inf)):
        box = (slice(0, 2),) * 3
        with pytest.raises(InputError, match="negative or non-finite"):
            dvk_dose_gy(act, density_g_ml=BoxedVolume(BoxedArray(outside, box, inside, act.shape), act.grid), k_gy_kg_per_gbq=K)


def test_the_overlap_sampler_and_the_metrics_read_a_boxed_map_as_the_full_map():
    from TAREDosimetryLib.evaluation.metrics import segment_metrics
    from TAREDosimetryLib.evaluation.overlapsampling import OverlapSampler

    act, seg, agrid = _lung_case()
    sampler = OverlapSampler(seg, agrid, ["liver", "tumour", "lung"])
    rng = np.random.default_rng(8)
    inside = rng.uniform(0.2, 1.1, (12, 20, 25)).astype(np.float32)
    boxed = BoxedVolume(BoxedArray(1.03, (slice(18, 30), slice(0, 20), slice(3, 28)), inside, agrid.shape), agrid)
    full = _full(boxed.boxed)
    mapped = sampler.sample(boxed)
    assert mapped is boxed.boxed
    dose = rng.uniform(0, 80, agrid.shape).astype(np.float32)
    params = DosimetryParams()
    for name in ("liver", "tumour", "lung"):
        region = sampler.regions[name]
        values, weights = sampler.read(mapped, region)
        assert isinstance(values, BoxedValues) and weights is not None
        assert np.array_equal(np.asarray(values), full.reshape(-1)[region.index])
        a = segment_metrics(dose.reshape(-1)[region.index], values, 1.0, sampler.voxel_volume_ml, "tumor", params, weights=weights)[0]
        b = segment_metrics(dose.reshape(-1)[region.index], full.reshape(-1)[region.index], 1.0, sampler.voxel_volume_ml, "tumor",
                            params, weights=weights)[0]
        assert a == b, name
    assert boxed._whole is None


def _cases_with_the_full_map(monkeypatch, run):
    """``run()`` twice: as it is (boxed density), and with the density made a full map as before."""
    import TAREDosimetryLib.dose.density as density

    boxed = run()
    made = density._tissue_and_lung_g_ml

    def full_map(grid, params, lung_fraction):
        out = made(grid, params, lung_fraction)
        return Volume(np.array(out.array), grid=grid, name="density", unit="g/mL")

    monkeypatch.setattr(density, "_tissue_and_lung_g_ml", full_map)
    return boxed, run()


def _assert_same_results(a, b):
    assert a.summary.keys() == b.summary.keys()
    for k, v in a.summary.items():
        assert v == b.summary[k] or (v != v and b.summary[k] != b.summary[k]), k
    assert [s.name for s in a.segments] == [s.name for s in b.segments]
    for x, y in zip(a.segments, b.segments):
        assert x.metrics.keys() == y.metrics.keys()
        for k, v in x.metrics.items():
            assert v == y.metrics[k] or (v != v and y.metrics[k] != y.metrics[k]), (x.name, k)


@pytest.mark.parametrize("method, lung_mode, lung_from, same_grid", [
    ("ldm", "kernel", "lsf", False), ("ldm", "kernel", "image", True), ("dvk", "kernel", "image", False),
    ("dvk", "ldm", "lsf", True), ("ldm", "kernel", "image", False)])
def test_a_case_with_a_lung_segment_equals_the_case_with_the_full_density_map(method, lung_mode, lung_from, same_grid, monkeypatch):
    act, seg, _ = _lung_case(same_grid)
    params = DosimetryParams(administered_activity_gbq=1.5, lung_shunt_fraction=0.06, method=method, dvk_lung_mode=lung_mode,
                             lung_dose_from=lung_from, device="cpu")
    boxed, full = _cases_with_the_full_map(monkeypatch, lambda: run_case(act, seg, params=params))
    assert isinstance(boxed.density_g_ml, BoxedVolume) and not isinstance(full.density_g_ml, BoxedVolume)
    assert boxed.density_g_ml._whole is None  # the case never made the full map
    assert np.array_equal(boxed.dose_gy.array, full.dose_gy.array)
    _assert_same_results(boxed, full)
    assert np.array_equal(boxed.density_g_ml.array, full.density_g_ml.array)  # the public array, made on demand


def test_a_dose_map_evaluated_with_a_lung_segment_equals_the_full_density_map(monkeypatch):
    from TAREDosimetryLib.pipeline import evaluate_dose_case

    act, seg, agrid = _lung_case()
    dose = Volume(np.random.default_rng(9).uniform(0, 120, agrid.shape).astype(np.float32), grid=agrid, name="dose")
    boxed, full = _cases_with_the_full_map(monkeypatch, lambda: evaluate_dose_case(dose, seg))
    assert isinstance(boxed.density_g_ml, BoxedVolume) and boxed.density_g_ml._whole is None
    _assert_same_results(boxed, full)


def test_the_dose_of_a_result_is_computed_again_from_its_density(monkeypatch):
    """What the Slicer self-test does: dose_map_gy of the result's activity and density (boxed)."""
    from TAREDosimetryLib.dose.dosemap import dose_map_gy

    act, seg, _ = _lung_case()
    for method in ("ldm", "dvk"):
        params = DosimetryParams(administered_activity_gbq=1.5, lung_shunt_fraction=0.06, method=method, device="cpu")
        r = run_case(act, seg, params=params)
        assert np.array_equal(dose_map_gy(r.activity_gbq, r.density_g_ml, r.params).array, r.dose_gy.array)


def _traced_peak(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method", ["ldm", "dvk"])
def test_a_case_with_a_lung_segment_makes_no_full_size_density_map(method, monkeypatch):
    """The peak of a case with a lung segment (no CT) stays within that of the same case whose lung
    segment is ignored plus a small share of one float32 map of the grid (measured: 0.09 map, LDM and
    DVK).  Before, the full density map and its temporaries added 1.5 maps (4 bytes per voxel each)."""
    import TAREDosimetryLib.dose.backend as backend
    import TAREDosimetryLib.dose.dvk as dvk

    monkeypatch.setattr(dvk, "_SLAB_VALUES", 1 << 14)  # small slab temporaries of the FFTs: the full-size arrays show
    monkeypatch.setattr(backend, "_NUMPY_BLOCK_VALUES", 1 << 14)
    grid = Grid((120, 128, 128), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))  # 2e6 voxels: a float32 map is 7.9 MB
    liver = np.zeros(grid.shape, bool)
    liver[10:70, 20:110, 20:110] = True
    tumour = np.zeros(grid.shape, bool)
    tumour[30:42, 50:70, 50:70] = True
    lung = np.zeros(grid.shape, bool)
    lung[90:110, 30:70, 30:90] = True  # its box: 2.4 % of the grid
    seg = Segmentation.from_masks({"liver": liver & ~tumour, "tumour": tumour, "lung": lung}, grid)
    counts = np.where(liver, np.float32(1.0), np.float32(0.05)) + 4 * tumour.astype(np.float32)
    params = DosimetryParams(administered_activity_gbq=1.5, lung_shunt_fraction=0.06, method=method, device="cpu")

    def case(roles):
        return lambda: run_case(Volume(counts.copy(), grid=grid), seg, params=params, roles=roles)

    case({})()  # kernels cached, modules imported
    with_lung = _traced_peak(case({}))
    without = _traced_peak(case({"lung": "ignore"}))
    one_map = 4 * np.prod(grid.shape)
    assert with_lung - without < 0.25 * one_map, (with_lung - without) / one_map


def test_a_region_asked_for_once_is_not_kept():
    from TAREDosimetryLib.evaluation.overlapsampling import OverlapSampler

    _, seg, agrid = _lung_case()
    sampler = OverlapSampler(seg, agrid, ["liver", "tumour", "lung"])
    once = sampler.region(["liver", "lung"], keep=False)
    assert once.index.size > sampler.regions["lung"].index.size and not sampler._cache
    kept = sampler.region(["liver", "lung"])
    assert np.array_equal(kept.index, once.index) and sampler.region(["liver", "lung"], keep=False) is kept
