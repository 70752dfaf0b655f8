"""Sorted flat voxel indices kept as runs of consecutive values (the regions of :mod:`.overlapsampling`).

A segment's voxels, in the C order of the activity grid, come in runs along x: a liver of 0.75
million voxels on a 200^3 grid is about 10 000 runs.  :class:`RunIndex` keeps each run's first
index and length (24 bytes a run instead of 4 bytes a voxel) and gives the indices back a block
at a time (``index[s:e]``), so that a region's indices are never all held at once while the
maps are read.  :func:`compact_index` keeps a plain array where the runs would not be smaller
(scattered voxels).
"""

import numpy as np

__all__ = ["RunIndex", "compact_index", "same_index"]

#: Runs are kept when the voxels average at least this many per run (24 bytes a run vs 4-8 a voxel).
MIN_MEAN_RUN = 8


class RunIndex:
    """Sorted, distinct flat indices as runs: ``starts`` (first index of each run), ``lengths``.

    Behaves as a read-only (N,) index array where the engine uses one: ``size``, ``len()``,
    slices of step 1 (``index[s:e]``: a new array of ``dtype``), and ``np.asarray(index)`` (every
    index, for callers outside the engine).
    """

    __slots__ = ("starts", "lengths", "ends", "dtype")
    ndim = 1

    def __init__(self, starts, lengths, dtype=np.int32):
        self.starts = np.asarray(starts, np.int64)
        self.lengths = np.asarray(lengths, np.int64)
        self.ends = np.cumsum(self.lengths)  # position in the index just after each run
        self.dtype = np.dtype(dtype)

    @classmethod
    def of(cls, index):
        """The runs of a sorted 1-D array of distinct indices."""
        index = np.asarray(index)
        if index.size == 0:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), index.dtype)
        return cls._of_breaks(index, np.flatnonzero(np.diff(index) != 1) + 1)

    @classmethod
    def _of_breaks(cls, index, first):
        """The runs of ``index`` whose runs start at positions 0 and ``first``."""
        bounds = np.concatenate(([0], first, [index.size]))
        return cls(index[bounds[:-1]], np.diff(bounds), index.dtype)

    @property
    def size(self):
        return int(self.ends[-1]) if self.ends.size else 0

    @property
    def shape(self):
        return (self.size,)

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"a RunIndex is read by slices of step 1; got {key!r}: use np.asarray() for every index")
        s, e, _ = key.indices(self.size)
        return self.block(s, e)

    def block(self, s, e):
        """Indices at positions ``s`` to ``e`` (exclusive) of the sorted index."""
        if e <= s:
            return np.zeros(0, self.dtype)
        r0 = int(np.searchsorted(self.ends, s, side="right"))
        r1 = int(np.searchsorted(self.ends, e - 1, side="right")) + 1
        ends, lengths = self.ends[r0:r1], self.lengths[r0:r1]
        firsts = ends - lengths  # position of each run's first index
        lo, hi = np.maximum(firsts, s), np.minimum(ends, e)
        counts = hi - lo
        base = self.starts[r0:r1] + (lo - firsts)  # index at each run's first position in the block
        out = np.repeat(base - (np.cumsum(counts) - counts), counts)
        out += np.arange(e - s, dtype=np.int64)
        return out.astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        out = self.block(0, self.size)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self):
        return f"RunIndex(size={self.size}, runs={self.starts.size}, dtype={self.dtype})"


def compact_index(index):
    """``index`` (sorted, distinct) as a :class:`RunIndex` when its runs are long enough to be
    smaller (:data:`MIN_MEAN_RUN` voxels a run on average), else as it is."""
    if isinstance(index, RunIndex) or np.size(index) == 0:
        return index
    index = np.asarray(index)
    first = np.flatnonzero(np.diff(index) != 1) + 1  # one pass: the runs' starts decide and make the runs
    return RunIndex._of_breaks(index, first) if index.size >= MIN_MEAN_RUN * (first.size + 1) else index


def same_index(a, b):
    """True when the index arrays or :class:`RunIndex` ``a`` and ``b`` hold the same indices."""
    if a.size != b.size:
        return False
    if isinstance(a, RunIndex) and isinstance(b, RunIndex):
        return np.array_equal(a.starts, b.starts) and np.array_equal(a.lengths, b.lengths)
    if isinstance(a, RunIndex) or isinstance(b, RunIndex):
        return False  # compact_index makes the same indices the same kind
    return np.array_equal(a, b)
