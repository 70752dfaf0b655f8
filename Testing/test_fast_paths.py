"""Fast paths of issue 14 against the straightforward computation they replace.

Each test computes the same quantity both ways in the same run: reading without a copy vs
SimpleITK's copying reader, a constant density as one number vs a full map, the LDM dose in one
pass vs the element-wise expression of the engine before the speed work.
"""

import gc

import numpy as np
import pytest
import SimpleITK as sitk

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, run_case
from TAREDosimetryLib.dose.ldm import ldm_dose_gy
from TAREDosimetryLib.resample import array_from_sitk
from TAREDosimetryLib.volume import Grid, uniform_array, uniform_value


def test_array_from_sitk_shares_the_buffer_and_keeps_the_image_alive():
    rng = np.random.default_rng(0)
    ref = rng.random((7, 8, 9)).astype(np.float32)
    img = sitk.GetImageFromArray(ref)
    arr = array_from_sitk(img)
    assert np.array_equal(arr, sitk.GetArrayFromImage(img))
    assert np.shares_memory(arr, sitk.GetArrayViewFromImage(img))  # no copy
    del img
    gc.collect()
    part = arr[2:4]
    del arr
    gc.collect()
    assert np.array_equal(part, ref[2:4])  # the buffer outlives the image variable
    part[0, 0, 0] = 5.0  # writable: the buffer belongs to the array alone
    assert part[0, 0, 0] == 5.0


def test_uniform_arrays_take_no_memory_and_say_their_value():
    a = uniform_array(1.03, (400, 400, 400))
    assert a.nbytes > 0 and a.base is not None and a.strides == (0, 0, 0)
    assert uniform_value(a) == pytest.approx(1.03) and a.dtype == np.float32
    assert uniform_value(np.full((3, 3, 3), 1.03, np.float32)) is None  # an ordinary array is read as one
    assert uniform_value(np.ones((1, 1, 1))) == 1.0


def _reference_ldm(activity, rho, k):
    """The engine's LDM before issue 14: element-wise float32 expression on full arrays."""
    mass_kg = np.asarray(rho, dtype=np.float32) * np.float32(activity.voxel_volume_ml * 1e-3)
    with np.errstate(divide="ignore", invalid="ignore"):
        dose = np.float32(k) * np.asarray(activity.array, np.float32) / mass_kg
    return np.where(np.isfinite(dose), dose, np.float32(0)).astype(np.float32)


@pytest.mark.parametrize("block", [1 << 22, 1000])
def test_ldm_in_one_pass_is_bit_identical_to_the_elementwise_expression(block, monkeypatch):
    import TAREDosimetryLib.dose.ldm as ldm

    monkeypatch.setattr(ldm, "_BLOCK", block)
    rng = np.random.default_rng(1)
    act = Volume((rng.random((13, 17, 19)) * 1e-3).astype(np.float32), (2.0, 3.0, 2.5))
    rho = (rng.random(act.shape) * 1.5).astype(np.float32)
    rho[0, 0, :4] = 0.0  # zero density: zero dose
    k = 49.67
    for density in (1.03, Volume(uniform_array(1.03, act.shape), grid=act.grid), Volume(rho, grid=act.grid)):
        r = density.array if isinstance(density, Volume) else np.full(act.shape, density, np.float32)
        got = ldm_dose_gy(act, density, k).array
        assert np.array_equal(got, _reference_ldm(act, r, k))


def test_constant_density_case_equals_the_case_with_a_full_density_map(monkeypatch):
    """A case without CT and lungs: the density is one number; the metrics equal those of the
    same case with the density map materialised."""
    import TAREDosimetryLib.dose.density as density

    from conftest import box_case

    act, seg = box_case()
    params = DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05)
    fast = run_case(act, seg, params=params)
    assert uniform_value(fast.density_g_ml.array) == pytest.approx(params.tissue_density_g_ml)
    monkeypatch.setattr(density, "uniform_array", lambda v, shape: np.full(shape, np.float32(v), np.float32))
    slow = run_case(act, seg, params=params)
    assert uniform_value(slow.density_g_ml.array) is None
    assert np.array_equal(fast.dose_gy.array, slow.dose_gy.array)
    for a, b in zip(fast.segments, slow.segments):
        for k, v in a.metrics.items():  # sums reordered: equal to float64 rounding
            assert v == pytest.approx(b.metrics[k], rel=1e-12, abs=1e-12, nan_ok=True), (a.name, k)


def test_point_sampling_of_a_constant_map_reads_it_inside_the_image_and_0_outside():
    from TAREDosimetryLib.evaluation.sampling import MetricsSampler
    from TAREDosimetryLib.resample import resample_volume
    from TAREDosimetryLib.imaging.segmentation import Segmentation

    agrid = Grid((10, 12, 14), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    sgrid = Grid((40, 30, 30), (1.0, 1.0, 1.0), (20.0, 15.0, 10.0))  # reaches beyond the activity image in z
    m = np.zeros(sgrid.shape, bool)
    m[2:39, 3:25, 4:26] = True
    sampler = MetricsSampler(Segmentation.from_masks({"s": m}, sgrid), agrid, ["s"], interpolation="linear")
    const = Volume(uniform_array(1.04, agrid.shape), grid=agrid)
    full = Volume(np.full(agrid.shape, 1.04, np.float32), grid=agrid)
    expected = resample_volume(full, sampler.grid, "linear").array
    got = sampler.sample(const, "linear")
    assert np.allclose(got, expected, rtol=1e-7, atol=0) and np.array_equal(got == 0, expected == 0)


# -- DVH: the partial-voxel representation against the sorted-weights definition -----------------
def _reference_weighted(d, w):
    """The weighted DVH of the module docstring, straightforwardly: a stable sort of the doses with
    their weights, c_k = (w_1 + ... + w_k) / W on the doses in decreasing order."""
    order = np.argsort(d, kind="stable")
    asc, w_asc = d[order].astype(np.float64), w[order]
    desc, w_desc = asc[::-1], w_asc[::-1]
    total = w.sum()
    c = np.cumsum(w_desc) / total
    suffix = np.concatenate([np.cumsum(w_asc[::-1])[::-1], [0.0]]) / total

    def dose_at(f):  # the step DVH: the dose of the first voxel whose cumulative fraction reaches f
        k = int(np.searchsorted(c, f * (1 - 1e-9), side="left"))
        return desc[min(k, desc.size - 1)]

    def volume_at(x):
        return 100.0 * suffix[np.searchsorted(asc, x, side="left")]

    mean = np.dot(w_asc, asc) / total
    sd = np.sqrt(np.dot(w_asc, (asc - mean) ** 2) / total)
    return dose_at, volume_at, mean, sd, total


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("stable_sort_branch", [False, True])
def test_weighted_dvh_equals_the_sorted_weights_definition(seed, stable_sort_branch, monkeypatch):
    """Integer doses (many ties, as counts of a SPECT), whole and partial voxels mixed in runs of
    equal doses, weights above 1 (supersampling), float32 weights: D, V, mean, SD, median, curve."""
    import TAREDosimetryLib.evaluation.dvh as dvh_module
    from TAREDosimetryLib.evaluation.dvh import DVH

    if stable_sort_branch:
        monkeypatch.setattr(dvh_module, "_MAX_MIXED_RUNS", 0)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    d = rng.integers(0, 25, n).astype(np.float32) * np.float32(1.7)
    w = np.where(rng.random(n) < 0.6, 1.0, rng.uniform(0.01, 1.2, n))
    if seed % 3 == 0:
        w = w.astype(np.float32)
    h = DVH(d, 0.1, weights=w)
    dose_at, volume_at, mean, sd, total = _reference_weighted(d, w.astype(np.float64))
    assert h.volume_ml == pytest.approx(0.1 * total, rel=1e-12)
    for x in (0, 0.5, 2, 5, 10, 30, 50, 70, 90, 95, 98, 99.9, 100):
        assert h.dose_at_volume_pct(x) == pytest.approx(dose_at(x / 100), rel=1e-12, abs=1e-9), x
    for v in (0.0, 1.7, 3.4, 5.0, 17.0, 40.8, 100.0):
        assert h.volume_pct_at_dose(v) == pytest.approx(volume_at(v), rel=1e-12, abs=1e-12), v
    assert h.mean_gy == pytest.approx(mean, rel=1e-12) and h.sd_gy == pytest.approx(sd, rel=1e-9)
    dose, vol = h.curve(0.5)
    assert np.allclose(vol, [volume_at(x) for x in dose], rtol=1e-12, atol=1e-12)


def test_searching_a_float32_dvh_rounds_the_dose_up_not_to_nearest():
    """V(d) counts doses >= d compared in float64 although the sorted doses stay float32."""
    from TAREDosimetryLib.evaluation.dvh import DVH, _first_not_below

    x = np.float32(100.0)
    below = np.nextafter(x, np.float32(0))
    d = np.array([below, x, x, np.nextafter(x, np.float32(200))], np.float32)
    h = DVH(d, 1.0)
    q = float(below) + 1e-12  # between two float32 values
    assert h.volume_pct_at_dose(q) == 75.0 and h.volume_pct_at_dose(float(below)) == 100.0
    assert list(_first_not_below(np.sort(d), [q, 100.0, 1e40, -1e40])) == [1, 1, 4, 0]


@pytest.mark.parametrize("calibration", ["relative", "absolute"])
def test_overwriting_the_activity_image_gives_the_same_case(calibration):
    """``overwrite_activity=True`` turns the image's array into the activity map: same results,
    the image changed only when asked (with negative voxels clipped in it)."""
    from conftest import box_case

    act, seg = box_case()
    arr = act.array.copy()
    arr[0, 0, :3] = -1.0  # negative voxels are clipped
    params = (DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05, allow_negative=True)
              if calibration == "relative" else
              DosimetryParams(calibration="absolute", image_decay_corrected=True, lung_shunt_fraction=0.05,
                              administered_activity_gbq=1.0))
    kept = Volume(arr.copy(), grid=act.grid)
    plain = run_case(kept, seg, params=params)
    assert np.array_equal(kept.array, arr)  # not asked: not changed
    used = Volume(arr.copy(), grid=act.grid)
    fast = run_case(used, seg, params=params, overwrite_activity=True)
    assert np.shares_memory(fast.activity_gbq.array, used.array)
    assert np.array_equal(fast.activity_gbq.array, plain.activity_gbq.array)
    assert np.array_equal(fast.dose_gy.array, plain.dose_gy.array)
    assert fast.summary == plain.summary and fast.warnings == plain.warnings
    for a, b in zip(fast.segments, plain.segments):
        assert a.metrics == pytest.approx(b.metrics, nan_ok=True)


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, 1, 0, 0, 0, -1), (0, 1, 0, -1, 0, 0, 0, 0, 1)])
def test_streamed_nrrd_reads_back_as_simpleitks_own(tmp_path, direction, monkeypatch):
    """dose.nrrd written plane by plane reads back (ITK) with the voxels, geometry and header
    entries that SimpleITK's own writer gives."""
    import TAREDosimetryLib.imaging.nrrdwrite as nw
    from TAREDosimetryLib.imaging.images import write_image

    monkeypatch.setattr(nw, "_CHUNK_BYTES", 100)  # many slabs
    rng = np.random.default_rng(2)
    vol = Volume(rng.random((7, 5, 6)).astype(np.float32), (0.97656, 1.5, 2.5), (-249.51159668, 3.0, 932.8), direction)
    meta = {"NRRD_content": "Y-90 absorbed dose in Gy (LDM)", "unit": "Gy", "software": "TAREDosimetry x"}
    ours, theirs = str(tmp_path / "a.nrrd"), str(tmp_path / "b.nrrd")
    nw.write_nrrd(vol, ours, metadata=meta)
    write_image(vol, theirs, metadata=meta)
    a, b = sitk.ReadImage(ours), sitk.ReadImage(theirs)
    assert np.array_equal(sitk.GetArrayFromImage(a), vol.array)
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-15) and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=1e-15)
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-15)
    for key in ("NRRD_content", "unit", "software"):
        assert a.GetMetaData(key) == b.GetMetaData(key)


@pytest.mark.parametrize("zero_fraction, strategy", [(0.0, "Z_RLE"), (0.7, "Z_DEFAULT_STRATEGY")])
def test_a_map_that_hardly_compresses_is_deflated_with_run_lengths_only(tmp_path, zero_fraction, strategy, monkeypatch):
    """dose.nrrd's zlib strategy follows a sample of the map: smooth float noise (a convolved dose)
    is deflated with run-length matches only (as small, faster), a map with many zeros (a local
    deposition dose) with the default; either way the file reads back voxel for voxel (ITK and gzip)."""
    import gzip
    import zlib

    import TAREDosimetryLib.imaging.nrrdwrite as nw

    monkeypatch.setattr(nw, "_CHUNK_BYTES", 4096)  # several slabs and gzip members
    rng = np.random.default_rng(4)
    arr = (rng.random((24, 40, 44)) * 50).astype(np.float32)
    arr[rng.random(arr.shape) < zero_fraction] = 0
    vol = Volume(arr, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    assert nw._strategy(arr, np.dtype(np.float32), 1) == getattr(zlib, strategy)
    path = str(tmp_path / "dose.nrrd")
    nw.write_nrrd(vol, path)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(path)), arr)
    data = open(path, "rb").read()
    body = gzip.decompress(data[data.index(b"\n\n") + 2:])
    assert np.array_equal(np.frombuffer(body, "<f4").reshape(arr.shape), arr)
    size = len(data)
    monkeypatch.setattr(nw, "_strategy", lambda *a: zlib.Z_DEFAULT_STRATEGY)
    nw.write_nrrd(vol, path)
    assert size <= 1.02 * len(open(path, "rb").read())  # never notably larger than the default's


def test_dvh_csv_written_line_by_line_equals_the_csv_module(tmp_path):
    """dvh.csv: the same bytes as csv.writer gives, names with commas and quotes included."""
    import csv

    from TAREDosimetryLib.reporting.outputs import _write_dvh_csv, dvh_csv_rows
    from conftest import box_case

    act, seg = box_case()
    seg = Segmentation.from_masks({'liver, "whole"': seg.mask("liver"), "tumour": seg.mask("tumour")}, seg.grid)
    r = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05),
                 roles={'liver, "whole"': "liver", "tumour": "tumor"})
    ours, theirs = tmp_path / "a.csv", tmp_path / "b.csv"
    _write_dvh_csv(str(ours), r)
    header, rows = dvh_csv_rows(r)
    with open(theirs, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    assert ours.read_bytes() == theirs.read_bytes() and b'"liver, ""whole"""' in ours.read_bytes()


# -- memory: no whole-map copies while reading regions and label values -----------------------
def _traced_peak(fn):
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return out, peak


def test_label_values_are_gathered_without_a_sorted_copy_of_the_map():
    from TAREDosimetryLib.imaging.segmentation import Segmentation, label_values

    labels = np.zeros((64, 256, 256), np.uint8)  # 4 MiB
    labels[10:20, 5:50, 7:9] = 3
    labels[-1, -1, -1] = 200
    values, peak = _traced_peak(lambda: label_values(labels))
    assert values == {0, 3, 200}
    for dtype in (np.int8, np.uint16, np.int16, np.int32, np.uint32):  # the table (8 and 16 bits) and np.unique
        small = labels[8:12].astype(dtype)  # planes holding 3s
        if np.dtype(dtype).kind == "i":
            small[0, 0, 0] = -1
        assert label_values(small) == {0, 3} | ({-1} if np.dtype(dtype).kind == "i" else set()), dtype
    assert peak < labels.nbytes / 2  # np.unique of the whole map sorts a copy of it
    seg, peak = _traced_peak(lambda: Segmentation.from_labelmap(labels, Grid(labels.shape, (1.0,) * 3, (0.0,) * 3), {3: "t"}))
    assert seg.names == ["t"] and peak < labels.nbytes / 2
    assert "200" in seg.notes[0]


def test_overlap_regions_are_read_in_place_without_copying_the_metrics_grid_crop():
    """The regions index the activity grid itself: reading a region of a map (and integrating an
    amount over it) allocates the region's values, not a copy of the segments' bounding box."""
    from TAREDosimetryLib.evaluation.overlapsampling import OverlapSampler
    from TAREDosimetryLib.imaging.segmentation import Segmentation

    grid = Grid((60, 200, 200), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    m1, m2 = np.zeros(grid.shape, bool), np.zeros(grid.shape, bool)
    m1[5:10, 10:14, 10:14] = True  # two small segments far apart: their union box is most of the grid
    m2[50:55, 180:190, 185:195] = True
    sampler = OverlapSampler(Segmentation.from_masks({"a": m1, "b": m2}, grid), grid, ["a", "b"])
    assert np.prod(sampler.grid.shape) > 0.6 * np.prod(grid.shape)  # the metrics grid (the union box)
    rng = np.random.default_rng(1)
    arr = rng.random(grid.shape, dtype=np.float32)
    mapped = sampler.sample(Volume(arr, grid=grid))
    assert np.shares_memory(mapped, arr)
    (values, weights), peak = _traced_peak(lambda: sampler.read(mapped, sampler.regions["b"]))
    assert weights is None and np.array_equal(values, arr[m2]) and peak < 10 * values.nbytes
    total, peak = _traced_peak(lambda: sampler.integrate(sampler.extensive(Volume(arr, grid=grid)), sampler.regions["a"]))
    assert total == pytest.approx(float(arr[m1].sum(dtype=np.float64)), rel=1e-12) and peak < arr.nbytes / 20


@pytest.mark.parametrize("with_lung", [False, True])
def test_no_region_is_made_twice_in_a_case(with_lung, monkeypatch):
    """The union of the liver segments (the calibration's reference region and the counts inside
    the liver) is made once; with lungs, the liver-and-lungs union only for its count."""
    from TAREDosimetryLib.evaluation.overlapsampling import OverlapSampler

    agrid = Grid((20, 24, 24), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    sgrid = Grid((40, 48, 48), (2.0, 2.0, 2.0), (-1.0, -1.0, -1.0))  # finer: fractions are computed
    z, y, x = np.indices(sgrid.shape)
    liver = (z - 20) ** 2 + (y - 24) ** 2 + (x - 20) ** 2 <= 15 ** 2
    tumour = (z - 20) ** 2 + (y - 24) ** 2 + (x - 26) ** 2 <= 5 ** 2
    masks = {"liver": liver & ~tumour, "tumour": tumour}
    if with_lung:
        masks["lung"] = (z < 6) & ~liver
    seg = Segmentation.from_masks(masks, sgrid)
    made = []
    original = OverlapSampler._region_of_mask

    def counted(self, mask, box):
        made.append((int(mask.sum()), tuple((s.start, s.stop) for s in box)))
        return original(self, mask, box)

    monkeypatch.setattr(OverlapSampler, "_region_of_mask", counted)
    act = Volume(np.ones(agrid.shape, np.float32), grid=agrid)
    run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05))
    assert len(made) == len(set(made)), made


def test_masks_that_do_not_overlap_share_a_layer():
    """Segmentation.from_masks packs masks as a Slicer segmentation does: disjoint masks share a
    layer (300 disjoint masks: 2 layers, not 300: 255 labels a uint8 layer), a mask that meets every
    layer so far gets a new one; every mask reads back exactly, an empty one as empty."""
    from TAREDosimetryLib.volume import Grid

    grid = Grid((12, 30, 40), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    masks = {}
    for k in range(300):  # disjoint single-voxel and two-voxel masks
        m = np.zeros(grid.shape, bool)
        z, y, x = np.unravel_index(2 * k, grid.shape)
        m[z, y, x] = True
        if k % 2:
            m[z, y, x + 1] = True
        masks[f"s{k}"] = m
    masks["over all"] = np.ones(grid.shape, bool)  # meets every layer: a new one
    masks["inside"] = np.zeros(grid.shape, bool)
    masks["inside"][5:7, 10:20, 10:30] = True  # layer 0 is full: fits beside the last 45 small masks
    masks["twice"] = masks["inside"].copy()  # meets "inside" and "over all": a layer of its own
    masks["empty"] = np.zeros(grid.shape, bool)
    seg = Segmentation.from_masks(masks, grid)
    info = {s.name: s for s in seg.segments}
    assert seg.layers.shape[0] == 4 and seg.layers.dtype == np.uint8
    assert info["s0"].layer == 0 and info["s254"].layer == 0 and info["s255"].layer == 1
    assert info["over all"].layer == 2 and info["inside"].layer == 1 and info["twice"].layer == 3
    for name, m in masks.items():
        assert np.array_equal(seg.mask(name), m), name
    assert seg.bbox("empty") is None and seg.voxel_count("s1") == 2
