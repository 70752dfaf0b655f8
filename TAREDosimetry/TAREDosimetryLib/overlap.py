"""Exact partial-voxel overlap between two voxel grids.

For values ``v`` given on the voxels of a *source* grid (a 0/1 segment mask, a density map),
:func:`overlap_sum` returns, for every voxel j of a *destination* grid::

    out_j = sum_i v_i |B_i ∩ B_j| / |B_j|

with B_i and B_j the voxel boxes in physical (LPS) space.  For a segment mask, ``out_j = f_sj``
is the fraction of destination voxel j's volume that lies inside the segment; for a density
map, ``out_j`` is the volume average of the density over the part of voxel j the source covers
(times that covered fraction, :func:`coverage`).  ``sum_j out_j |B_j| = sum_i v_i |B_i|`` for
every source voxel inside the destination image: nothing is counted twice or lost.

Two methods
-----------
* **box overlap** (grids axis-aligned with each other: the direction matrices are equal up to
  a permutation of the axes and sign flips, e.g. a z-reversed SPECT over a CT; the tolerance is
  1e-3 destination voxel of displacement over the source's extent).  ``|B_i ∩ B_j|`` is then
  the product of three 1-D interval overlaps, so the sum is applied separably, one axis at a
  time, with banded 1-D overlap matrices (a source voxel meets at most
  ``ceil(h_src / h_dst) + 1`` destination voxels per axis).  Exact to floating-point round-off.
* **supersampling** (oblique grids): every non-zero source voxel is split into ``n`` points per
  axis (``n >= 5``, more when a source voxel spans several destination voxels), each carrying
  ``1/n^3`` of it to the destination voxel that holds the point.  ``n`` grows by 2 until the
  result changes by less than :data:`SUPERSAMPLING_TOLERANCE` (relative L1 norm over the
  destination voxels) or reaches :data:`MAX_SUPERSAMPLING_POINTS`; the points used and the last
  change are reported.

Arrays are (z, y, x); spacing and origin (x, y, z); the grids' ``ijk_to_lps`` matrices map index
(i, j, k) = (x, y, z) to LPS, as in :mod:`~TAREDosimetryLib.volume`.
"""

from dataclasses import dataclass, field

import numpy as np

from .errors import GeometryError, InputError

__all__ = [
    "OverlapResult",
    "overlap_sum",
    "destination_box",
    "unit_mapping",
    "coverage",
    "axis_alignment",
    "SUPERSAMPLING_TOLERANCE",
    "MIN_SUPERSAMPLING_POINTS",
    "MAX_SUPERSAMPLING_POINTS",
]

#: Relative L1 change between two supersampling levels below which the result is converged.
SUPERSAMPLING_TOLERANCE = 1e-2
#: Fewest points per axis per source voxel in supersampling.
MIN_SUPERSAMPLING_POINTS = 5
#: Most points per axis per source voxel in supersampling.
MAX_SUPERSAMPLING_POINTS = 11
#: Most point evaluations (source voxels x points) one supersampling refinement may take; beyond
#: it the refinement stops and the result is reported as not converged.
MAX_SUPERSAMPLING_WORK = 4e9
#: Largest displacement (in destination voxels) over the source's extent for which two grids
#: count as axis-aligned.
ALIGNMENT_TOLERANCE_VOXELS = 1e-3
#: Overlaps below this (in destination voxel lengths) are round-off of touching faces.
_EPS = 1e-9
#: Elements per block when a large source array is converted to floating point.
_BLOCK = 1 << 23
#: Bytes of the one buffer a mask is converted into, block by block (small enough not to be
#: fresh memory of note, large enough for the matrix products to run at full speed).
_CONVERT_BYTES = 1 << 22
_NUDGE = (1e-7 * 2**0.5, 1e-7 * 3**0.5, 1e-7 * 5**0.5)


@dataclass
class OverlapResult:
    """Values on a box of the destination grid.

    box : tuple of 3 slices (z, y, x) of the destination grid; ``None`` when no source voxel
        meets the destination image.
    values : (Z, Y, X) float ndarray on that box (``sum_i v_i |B_i ∩ B_j| / |B_j|``).
    info : dict, ``method`` ('box overlap' or 'supersampling') and, for supersampling,
        ``points_per_axis`` (x, y, z) and ``relative_change`` of the last refinement.
    """

    box: tuple
    values: np.ndarray
    info: dict = field(default_factory=dict)


def _src_to_dst_index(src_grid, dst_grid):
    """4x4 matrix taking a source index (i, j, k, 1) to the continuous destination index."""
    return dst_grid.lps_to_ijk @ src_grid.ijk_to_lps


def axis_alignment(src_grid, dst_grid):
    """Per source array axis (z, y, x): (destination array axis, scale, offset), or None when oblique.

    ``u = offset + scale * n`` maps source index n along that axis to the continuous
    destination index u along the matched axis (voxel j spans u in [j - 1/2, j + 1/2]).
    """
    p = _src_to_dst_index(src_grid, dst_grid)
    m = p[:3, :3]
    n_src = np.array(src_grid.shape[::-1], dtype=np.float64)  # (nx, ny, nz) per ijk component
    out = [None, None, None]
    used = set()
    for b in range(3):  # destination ijk component
        c = int(np.argmax(np.abs(m[b])))
        off = np.abs(m[b]) * n_src
        off[c] = 0.0
        if c in used or off.max() > ALIGNMENT_TOLERANCE_VOXELS:
            return None
        used.add(c)
        out[2 - c] = (2 - b, float(m[b, c]), float(p[b, 3]))
    return out


@dataclass
class _Band:
    """1-D overlaps between the voxels of a source axis and a destination axis (a banded matrix).

    Destination voxel j meets the source voxels ``start[j] .. start[j] + len(weights[j]) - 1``
    (consecutive: the axes map by an affine function), with overlaps ``weights[j]`` in
    destination voxel lengths; destination indices start at 0 (= ``j0`` of the caller).
    """

    start: list
    weights: list
    n_src: int

    @property
    def n_out(self):
        return len(self.start)

    def column_sums(self):
        """(n_out,) the sum of each destination voxel's overlaps."""
        return np.array([w.sum() for w in self.weights])


def _overlap_band_1d(n_src, scale, offset, n_dst):
    """(first destination index j0, :class:`_Band`) of 1-D overlaps in destination voxel lengths; (None, None) when none."""
    centre = offset + scale * np.arange(n_src, dtype=np.float64)
    half = abs(scale) / 2.0
    lo, hi = centre - half, centre + half
    first = np.floor(lo + 0.5).astype(np.int64)
    rows, cols, vals = [], [], []
    for k in range(int(np.ceil(abs(scale))) + 2):
        j = first + k
        ov = np.minimum(hi, j + 0.5) - np.maximum(lo, j - 0.5)
        keep = (ov > _EPS) & (j >= 0) & (j < n_dst)
        rows.append(np.flatnonzero(keep))
        cols.append(j[keep])
        vals.append(ov[keep])
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    if cols.size == 0:
        return None, None
    order = np.lexsort((rows, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    j0, j1 = int(cols[0]), int(cols[-1]) + 1
    cuts = np.searchsorted(cols, np.arange(j0, j1 + 1))
    start = [int(rows[cuts[j]]) for j in range(j1 - j0)]
    weights = [vals[cuts[j]:cuts[j + 1]] for j in range(j1 - j0)]
    return j0, _Band(start, weights, n_src)


#: Largest band (source x destination voxels along one axis) contracted as a dense matrix product.
_DENSE_MAX = 1 << 18


def _contract_last_axis_dense(arr, band, dtype):
    """The last (memory-contiguous) axis contracted by one dense matrix product per block of rows:
    no transposed copy of the source (a small band: the zeros cost less than moving the data).
    A source of another type (a boolean mask) is converted a block at a time into one reused 4 MB
    buffer: no converted copy of the whole source (fresh memory costs more than the work)."""
    dense = np.zeros((band.n_src, band.n_out), dtype)
    for j, (a, w) in enumerate(zip(band.start, band.weights)):
        dense[a:a + w.size, j] = w
    rows = arr.reshape(-1, band.n_src)
    out = np.empty((rows.shape[0], band.n_out), dtype)
    if rows.dtype == dtype:
        step = max(1, _BLOCK // band.n_src)
        for s in range(0, rows.shape[0], step):
            np.matmul(rows[s:s + step], dense, out=out[s:s + step])
        return out.reshape(arr.shape[:-1] + (band.n_out,))
    step = max(1, min(rows.shape[0], _CONVERT_BYTES // (np.dtype(dtype).itemsize * band.n_src)))
    buffer = np.empty((step, band.n_src), dtype)
    for s in range(0, rows.shape[0], step):
        n = min(step, rows.shape[0] - s)
        np.copyto(buffer[:n], rows[s:s + n], casting="unsafe")
        np.matmul(buffer[:n], dense, out=out[s:s + n])
    return out.reshape(arr.shape[:-1] + (band.n_out,))


def _contract_axis(arr, band, axis, dtype):
    """``arr`` with ``axis`` contracted against ``band``: out[.., j, ..] = sum_i arr[.., i, ..] overlap(i, j).

    Each destination slab is one matrix-vector product (BLAS) of its overlaps with the
    consecutive source slabs it meets.  Works block by block along the first remaining axis,
    so a large boolean source is never converted to floating point all at once.
    """
    if axis == arr.ndim - 1 and arr.flags.c_contiguous and band.n_src * band.n_out <= _DENSE_MAX:
        return _contract_last_axis_dense(arr, band, dtype)
    weights = [w.astype(dtype) for w in band.weights]
    if axis == 0 and arr.dtype == dtype and arr.flags.c_contiguous:  # no conversion, no copy needed
        flat = arr.reshape(arr.shape[0], -1)
        out = np.empty((band.n_out, flat.shape[1]), dtype)
        for j, (a, w) in enumerate(zip(band.start, weights)):
            np.dot(w, flat[a:a + w.size], out=out[j])
        return out.reshape((band.n_out,) + arr.shape[1:])
    moved = np.moveaxis(arr, axis, 0)
    n_src, rest = moved.shape[0], moved.shape[1:]
    out = np.empty((band.n_out,) + rest, dtype)
    inner = int(np.prod(rest[1:], dtype=np.int64))
    step = max(1, _BLOCK // max(1, n_src * inner))
    for s in range(0, rest[0], step):
        block = np.ascontiguousarray(moved[:, s:s + step], dtype=dtype).reshape(n_src, -1)
        part = np.empty((band.n_out, block.shape[1]), dtype)
        for j, (a, w) in enumerate(zip(band.start, weights)):
            np.dot(w, block[a:a + w.size], out=part[j])
        out[:, s:s + step] = part.reshape((band.n_out, -1) + rest[1:])
    return np.moveaxis(out, 0, axis)


def _same_voxels(alignment):
    """True when every source voxel is exactly one destination voxel: same axis order, scales
    exactly +-1 and whole-voxel offsets, with no round-off (the 1-D overlaps are then exactly 1)."""
    return all(b == a and abs(scale) == 1.0 and offset == round(offset) and abs(offset) < 2**31
               for a, (b, scale, offset) in enumerate(alignment))


def _same_voxels_sum(values, alignment, dst_shape, dtype):
    """:func:`_box_overlap_sum` of a whole-number source (a mask) on :func:`_same_voxels` grids:
    its part inside the destination, flipped where an axis is reversed, as ``dtype`` (the same
    numbers the contractions give, without their temporaries)."""
    src, box = [], []
    for a, (_, scale, offset) in enumerate(alignment):
        n, off = values.shape[a], int(offset)
        if scale > 0:  # destination j = off + i
            i0, i1 = max(0, -off), min(n, dst_shape[a] - off)
            src.append(slice(i0, i1))
            box.append(slice(off + i0, off + i1))
        else:  # destination j = off - i
            i0, i1 = max(0, off - dst_shape[a] + 1), min(n, off + 1)
            src.append(slice(i1 - 1, i0 - 1 if i0 > 0 else None, -1))
            box.append(slice(off - i1 + 1, off - i0 + 1))
        if i1 <= i0:
            return OverlapResult(None, np.zeros((0, 0, 0), dtype), {"method": "box overlap"})
    return OverlapResult(tuple(box), np.ascontiguousarray(values[tuple(src)], dtype=dtype), {"method": "box overlap"})


def _box_overlap_sum(values, src_grid, dst_grid, alignment, dtype):
    """:class:`OverlapResult` by separable 1-D interval overlaps (axis-aligned grids)."""
    if (values.dtype == bool or np.issubdtype(values.dtype, np.integer)) and _same_voxels(alignment):
        return _same_voxels_sum(values, alignment, dst_grid.shape, dtype)
    mats, box = [], [None, None, None]
    for a, (b, scale, offset) in enumerate(alignment):
        j0, band = _overlap_band_1d(values.shape[a], scale, offset, dst_grid.shape[b])
        if band is None:
            return OverlapResult(None, np.zeros((0, 0, 0), dtype), {"method": "box overlap"})
        mats.append(band)
        box[b] = slice(j0, j0 + band.n_out)
    # Contract the axis that shrinks most first: the later passes then work on small arrays.
    # A source already in the working dtype is contracted along its first axis without a copy:
    # start there unless another axis shrinks it much more.
    shrink = [mats[a].n_out / max(1, mats[a].n_src) for a in range(3)]
    order = sorted(range(3), key=lambda a: (round(shrink[a], 9), -a))  # ties: the memory-contiguous axis first
    if values.dtype == dtype and values.flags.c_contiguous and shrink[0] <= 1.25 * shrink[order[0]]:
        order = [0] + [a for a in order if a != 0]
    out = values
    for a in order:
        out = _contract_axis(out, mats[a], a, dtype)
    perm = [alignment[a][0] for a in range(3)]  # source axis a -> destination axis perm[a]
    out = np.transpose(out, np.argsort(perm))
    return OverlapResult(tuple(box), np.ascontiguousarray(out), {"method": "box overlap"})


def overlap_sum(values, src_grid, dst_grid, *, dtype=np.float64, method="auto"):
    """``sum_i v_i |B_i ∩ B_j| / |B_j|`` for the destination voxels j the source meets.

    Parameters
    ----------
    values : (Z, Y, X) ndarray (bool or numbers) on ``src_grid``.
    src_grid, dst_grid : Grid.  Any spacings, origins and orthonormal directions.
    dtype : float dtype of the result (float64 default; float32 halves the memory of the
        first pass over a large source).
    method : 'auto' (box overlap when the grids are axis-aligned, else supersampling),
        'box' or 'supersampling'.

    Returns
    -------
    OverlapResult
    """
    values = np.asarray(values)
    if values.shape != tuple(src_grid.shape):
        raise InputError(f"values of shape {values.shape} (z, y, x) do not match the source grid's shape {src_grid.shape}")
    if method not in ("auto", "box", "supersampling"):
        raise InputError(f"method must be one of auto, box, supersampling; got {method!r}")
    alignment = axis_alignment(src_grid, dst_grid) if method in ("auto", "box") else None
    if alignment is None and method == "box":
        raise GeometryError("the grids are not axis-aligned with each other: the box overlap needs method 'supersampling' or 'auto'")
    if alignment is not None:
        return _box_overlap_sum(values, src_grid, dst_grid, alignment, dtype)
    return _supersampled_converged(values, src_grid, dst_grid)


#: Largest distance (in voxels) between a source voxel and a destination voxel for the grids to
#: count as the same voxels (:func:`unit_mapping`).
UNIT_TOLERANCE_VOXELS = 1e-9


def unit_mapping(src_grid, dst_grid):
    """Per source array axis (z, y, x), (sign, offset) with destination index = offset + sign x
    source index, when every source voxel is a destination voxel (same spacing, same axis order,
    whole-voxel shifts, axes possibly reversed: the same grid, or a crop of it); else None.

    Then the overlap of a mask is the mask itself: each voxel lies wholly in or out.
    """
    alignment = axis_alignment(src_grid, dst_grid)
    if alignment is None:
        return None
    out = []
    for a, (b, scale, offset) in enumerate(alignment):
        if b != a or abs(abs(scale) - 1.0) > UNIT_TOLERANCE_VOXELS or abs(offset - round(offset)) > UNIT_TOLERANCE_VOXELS:
            return None
        out.append((1 if scale > 0 else -1, int(round(offset))))
    return out


def destination_box(src_grid, dst_grid):
    """The box (z, y, x slices of ``dst_grid``) of :func:`overlap_sum`'s result for a source on
    ``src_grid`` (None when the grids do not meet), from the geometry alone (no voxel values)."""
    alignment = axis_alignment(src_grid, dst_grid)
    if alignment is None:
        return _dst_box_of(src_grid, dst_grid, _src_to_dst_index(src_grid, dst_grid))
    box = [None, None, None]
    for a, (b, scale, offset) in enumerate(alignment):
        j0, band = _overlap_band_1d(src_grid.shape[a], scale, offset, dst_grid.shape[b])
        if band is None:
            return None
        box[b] = slice(j0, j0 + band.n_out)
    return tuple(box)


def coverage(src_grid, dst_grid):
    """:class:`OverlapResult`: the fraction of each destination voxel inside the source grid's field of view."""
    alignment = axis_alignment(src_grid, dst_grid)
    if alignment is None:
        return overlap_sum(np.ones(src_grid.shape, np.uint8), src_grid, dst_grid)
    # The field of view is a box: its overlap is the outer product of three 1-D coverages.
    box, parts = [None, None, None], [None, None, None]
    for a, (b, scale, offset) in enumerate(alignment):
        j0, band = _overlap_band_1d(src_grid.shape[a], scale, offset, dst_grid.shape[b])
        if band is None:
            return OverlapResult(None, np.zeros((0, 0, 0)), {"method": "box overlap"})
        box[b] = slice(j0, j0 + band.n_out)
        parts[b] = band.column_sums()
    out = parts[0][:, None, None] * parts[1][None, :, None] * parts[2][None, None, :]
    return OverlapResult(tuple(box), out, {"method": "box overlap"})


# -- supersampling (oblique grids) ---------------------------------------------------------------
def _dst_box_of(src_grid, dst_grid, p):
    """Destination box (slices) holding every point of the source grid's voxels, clipped to the image."""
    nz, ny, nx = src_grid.shape
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5) for k in (-0.5, nz - 0.5)])
    u = corners @ p.T
    lo = np.floor(u[:, :3].min(axis=0) + 0.5).astype(int)
    hi = np.floor(u[:, :3].max(axis=0) + 0.5).astype(int) + 1
    n = np.array(dst_grid.shape[::-1])
    lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(lo[2 - a]), int(hi[2 - a])) for a in range(3))


def _supersampled_sum(values, src_grid, dst_grid, box, n_ijk):
    """(Z, Y, X) array on ``box``: each non-zero source voxel spread over n_i n_j n_k points."""
    p = _src_to_dst_index(src_grid, dst_grid)
    kk, jj, ii = np.nonzero(values)
    v = values[kk, jj, ii].astype(np.float64)
    base = np.stack([ii, jj, kk], axis=1).astype(np.float64) @ p[:3, :3].T + p[:3, 3]
    lo = np.array([box[2].start, box[1].start, box[0].start])
    size = np.array([box[2].stop, box[1].stop, box[0].stop]) - lo
    acc = np.zeros(int(np.prod(size)), np.float64)
    # Midpoint lattice in each source voxel, nudged by an irrational 1e-7 voxel so that no point
    # falls exactly on a destination face (a tie would be rounded the same way every time).
    offsets = [(np.arange(n) + 0.5) / n - 0.5 + _NUDGE[c] for c, n in enumerate(n_ijk)]
    step_k = np.outer(offsets[2], p[:3, 2])  # (n_k, 3)
    chunk = max(1, _BLOCK // (8 * len(offsets[2])))
    for s in range(0, v.size, chunk):
        b, w = base[s:s + chunk], v[s:s + chunk]
        for oi in offsets[0]:
            for oj in offsets[1]:
                u = b[:, None, :] + (p[:3, 0] * oi + p[:3, 1] * oj) + step_k[None]
                u = np.floor(u + 0.5).astype(np.int64).reshape(-1, 3) - lo
                inside = np.all((u >= 0) & (u < size), axis=1)
                flat = (u[inside, 2] * size[1] + u[inside, 1]) * size[0] + u[inside, 0]
                acc += np.bincount(flat, weights=np.repeat(w, len(offsets[2]))[inside], minlength=acc.size)
    scale = src_grid.voxel_volume_ml / dst_grid.voxel_volume_ml / float(np.prod(n_ijk))
    return (acc * scale).reshape(size[2], size[1], size[0])


def _supersampled_converged(values, src_grid, dst_grid):
    """:class:`OverlapResult` by supersampling, refined by 2 points per axis until converged."""
    p = _src_to_dst_index(src_grid, dst_grid)
    box = _dst_box_of(src_grid, dst_grid, p)
    if box is None:
        return OverlapResult(None, np.zeros((0, 0, 0)), {"method": "supersampling", "points_per_axis": [0, 0, 0],
                                                          "relative_change": 0.0, "converged": True})
    ratio = np.array(src_grid.spacing_mm) / min(dst_grid.spacing_mm)
    n = np.maximum(MIN_SUPERSAMPLING_POINTS, np.ceil(3 * ratio)).astype(int)
    prev = _supersampled_sum(values, src_grid, dst_grid, box, n)
    change, cur = float("nan"), prev
    n_sources = int(np.count_nonzero(values))
    while True:
        n_next = n + 2
        if n_sources * float(np.prod(n_next)) > MAX_SUPERSAMPLING_WORK:
            break
        cur = _supersampled_sum(values, src_grid, dst_grid, box, n_next)
        total = float(np.abs(cur).sum())
        change = float(np.abs(cur - prev).sum() / total) if total > 0 else 0.0
        n, prev = n_next, cur
        if change < SUPERSAMPLING_TOLERANCE or n.max() >= MAX_SUPERSAMPLING_POINTS:
            break
    info = {"method": "supersampling", "points_per_axis": [int(x) for x in n], "relative_change": change,
            "converged": bool(change < SUPERSAMPLING_TOLERANCE)}  # NaN (no refinement within the work limit): False
    return OverlapResult(box, cur, info)
