"""Regions' voxel indices kept as runs (evaluation/runindex.py, issue 14: memory near the input size)."""

import numpy as np
import pytest

from TAREDosimetryLib.evaluation.overlapsampling import OverlapSampler
from TAREDosimetryLib.evaluation.runindex import MIN_MEAN_RUN, RunIndex, compact_index, same_index
from TAREDosimetryLib.imaging.segmentation import Segmentation
from TAREDosimetryLib.volume import Grid, Volume


def _random_sorted_index(rng, n_runs, max_len=40, gap=30):
    lengths = rng.integers(1, max_len, n_runs)
    starts = np.cumsum(np.r_[0, lengths[:-1]] + rng.integers(1, gap, n_runs))  # a gap of at least 1 after each run
    return np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)]).astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runs_give_back_every_index_and_every_block(seed):
    rng = np.random.default_rng(seed)
    index = _random_sorted_index(rng, 500)
    assert np.all(np.diff(index) > 0)
    runs = RunIndex.of(index)
    assert runs.size == len(runs) == index.size and runs.dtype == np.int32
    assert np.array_equal(np.asarray(runs), index)
    for _ in range(200):
        s, e = sorted(rng.integers(0, index.size + 1, 2))
        assert np.array_equal(runs[s:e], index[s:e])
    assert np.array_equal(runs[-7:], index[-7:]) and runs[5:5].size == 0
    with pytest.raises(TypeError):
        runs[3]


def test_compact_index_keeps_runs_only_when_smaller():
    rows = np.concatenate([np.arange(r * 1000, r * 1000 + 60) for r in range(50)]).astype(np.int32)  # 60-voxel rows
    c = compact_index(rows)
    assert isinstance(c, RunIndex) and c.starts.size == 50
    assert c.starts.nbytes + c.lengths.nbytes + c.ends.nbytes < rows.nbytes / 5
    scattered = np.arange(0, 4000, 2, dtype=np.int32)  # runs of one voxel: kept as an array
    assert compact_index(scattered) is scattered
    short = np.concatenate([np.arange(r * 100, r * 100 + MIN_MEAN_RUN - 1) for r in range(20)])
    assert isinstance(compact_index(short), np.ndarray)
    assert same_index(compact_index(rows), RunIndex.of(rows)) and not same_index(c, compact_index(rows[:-1]))
    assert same_index(scattered, scattered.copy()) and compact_index(np.zeros(0, np.int32)).size == 0


def test_overlap_regions_hold_runs_and_read_as_plain_indices():
    """A ball of 0.27 million voxels on the activity grid: its region holds a few kilobytes of runs
    (4 bytes a voxel as an index array), and reads and integrates exactly as the mask does."""
    grid = Grid((90, 100, 110), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    z, y, x = np.indices(grid.shape)
    ball = (z - 45) ** 2 + (y - 50) ** 2 + (x - 55) ** 2 <= 40 ** 2
    sampler = OverlapSampler(Segmentation.from_masks({"ball": ball}, grid), grid, ["ball"])
    region = sampler.regions["ball"]
    assert isinstance(region.index, RunIndex) and region.index.size == int(ball.sum())
    held = region.index.starts.nbytes + region.index.lengths.nbytes + region.index.ends.nbytes
    assert held < 0.15 * 4 * region.index.size  # 24 bytes a run of about 50 voxels
    rng = np.random.default_rng(5)
    arr = rng.random(grid.shape, dtype=np.float32)
    values, weights = sampler.read(sampler.sample(Volume(arr, grid=grid)), region)
    assert weights is None and values.dtype == np.float32 and np.array_equal(values, arr[ball])
    total = sampler.integrate(sampler.extensive(Volume(arr, grid=grid)), region)
    assert total == pytest.approx(float(arr[ball].sum(dtype=np.float64)), rel=1e-12)
    assert region.volume_voxels == float(ball.sum())
