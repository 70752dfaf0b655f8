"""The engine's image type: a 3-D array with its physical geometry.

Conventions (used everywhere in the engine)
-------------------------------------------
* ``array`` is indexed ``(z, y, x)`` = ``(k, j, i)``, as ``SimpleITK.GetArrayFromImage`` and
  Slicer's ``arrayFromVolume`` return it.
* ``spacing_mm`` and ``origin_mm`` are ``(x, y, z)`` tuples, as ``SimpleITK.Image.GetSpacing()``.
* Physical space is DICOM/ITK **LPS** in millimetres.  ``direction`` is the 3x3 matrix (row-major
  tuple of 9) whose *columns* are the directions of the i, j, k axes, as in ITK.  The physical
  position of voxel centre (i, j, k) is ``origin + direction @ diag(spacing) @ (i, j, k)``.
  (Slicer works in RAS; the Slicer module converts at its edge.)
"""

from dataclasses import dataclass

import numpy as np

from .errors import GeometryError, InputError

__all__ = ["Volume", "Grid", "uniform_array", "uniform_value", "BoxedArray", "BoxedValues", "BoxedVolume", "volume_values"]


def _as_triplet(value, name, positive=False):
    try:
        t = tuple(float(v) for v in value)
    except TypeError:
        raise InputError(f"{name} must be 3 numbers (x, y, z), got {value!r}") from None
    if len(t) != 3 or not all(np.isfinite(t)):
        raise InputError(f"{name} must be 3 finite numbers (x, y, z), got {value!r}")
    if positive and not all(v > 0 for v in t):
        raise InputError(f"{name} must be 3 positive values (x, y, z), got {value!r}")
    return t


@dataclass(frozen=True)
class Grid:
    """Geometry of a voxel grid without its values.

    Parameters
    ----------
    shape : tuple of int, (nz, ny, nx)
    spacing_mm : tuple of float, (x, y, z)
    origin_mm : tuple of float, (x, y, z), LPS position of voxel (0, 0, 0)'s centre
    direction : tuple of 9 float, row-major 3x3, columns = i, j, k axis directions (LPS)
    """

    shape: tuple
    spacing_mm: tuple = (1.0, 1.0, 1.0)
    origin_mm: tuple = (0.0, 0.0, 0.0)
    direction: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"grid shape must be 3 positive sizes (z, y, x), got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing_mm", _as_triplet(self.spacing_mm, "spacing_mm", positive=True))
        object.__setattr__(self, "origin_mm", _as_triplet(self.origin_mm, "origin_mm"))
        d = np.asarray(self.direction, dtype=np.float64).reshape(-1)
        if d.size != 9 or not np.all(np.isfinite(d)):
            raise GeometryError(f"direction must be 9 numbers (3x3 row-major), got {self.direction!r}")
        m = d.reshape(3, 3)
        if not np.allclose(m.T @ m, np.eye(3), atol=1e-3):  # also refuses shears with |det| = 1
            raise GeometryError(f"direction must be an orthonormal 3x3 matrix, got {tuple(d)}")
        object.__setattr__(self, "direction", tuple(float(v) for v in d))

    @property
    def voxel_volume_ml(self):
        """Volume of one voxel in mL (cm^3)."""
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz * 1e-3

    @property
    def direction_matrix(self):
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def ijk_to_lps(self):
        """4x4 homogeneous matrix mapping voxel index (i, j, k, 1) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing_mm)
        m[:3, 3] = self.origin_mm
        return m

    @property
    def lps_to_ijk(self):
        return np.linalg.inv(self.ijk_to_lps)

    def physical_bounds_mm(self):
        """Axis-aligned LPS bounding box (min xyz, max xyz) of the voxel *boundaries*."""
        nz, ny, nx = self.shape
        corners = np.array(
            [[i, j, k, 1.0] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5) for k in (-0.5, nz - 0.5)]
        )
        pts = corners @ self.ijk_to_lps.T
        return pts[:, :3].min(axis=0), pts[:, :3].max(axis=0)

    def same_as(self, other, tol_mm=1e-3):
        """True when both grids have the same shape and (within ``tol_mm``) the same geometry."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-6)
        )

    def overlap_fraction(self, other):
        """Fraction of this grid's bounding box that lies inside ``other``'s (0 when disjoint)."""
        a0, a1 = self.physical_bounds_mm()
        b0, b1 = other.physical_bounds_mm()
        inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
        va = np.prod(a1 - a0)
        return float(np.prod(inter) / va) if va > 0 else 0.0

    def crop(self, bbox):
        """The sub-grid of a (z, y, x) tuple of slices (steps of 1)."""
        starts = [sl.start or 0 for sl in bbox]
        stops = [sl.stop if sl.stop is not None else n for sl, n in zip(bbox, self.shape)]
        k0, j0, i0 = starts
        origin = self.ijk_to_lps @ np.array([i0, j0, k0, 1.0])
        shape = tuple(b - a for a, b in zip(starts, stops))
        return Grid(shape, self.spacing_mm, tuple(origin[:3]), self.direction)

    def to_dict(self):
        return {
            "shape_zyx": list(self.shape),
            "spacing_mm_xyz": list(self.spacing_mm),
            "origin_mm_xyz_lps": list(self.origin_mm),
            "direction": list(self.direction),
        }


class Volume:
    """A scalar 3-D image: ``array`` (z, y, x) plus its :class:`Grid`.

    The array is kept as given (no copy); functions of the engine never write into an input
    volume's array, they return new volumes.
    """

    __slots__ = ("array", "grid", "name", "unit")

    def __init__(self, array, spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0), direction=None, *, grid=None, name="", unit=""):
        array = np.asarray(array)
        if array.ndim != 3:
            raise GeometryError(
                f"{name or 'image'} must be 3-D (z, y, x); got an array of {array.ndim} dimension(s), shape {array.shape}"
            )
        if grid is None:
            grid = Grid(array.shape, spacing_mm, origin_mm, direction if direction is not None else Grid.direction)
        elif tuple(grid.shape) != array.shape:
            raise GeometryError(f"array shape {array.shape} does not match grid shape {grid.shape}")
        self.array = array
        self.grid = grid
        self.name = name
        self.unit = unit

    # Convenience views of the grid -------------------------------------------------------
    @property
    def shape(self):
        return self.grid.shape

    @property
    def spacing_mm(self):
        return self.grid.spacing_mm

    @property
    def origin_mm(self):
        return self.grid.origin_mm

    @property
    def direction(self):
        return self.grid.direction

    @property
    def voxel_volume_ml(self):
        return self.grid.voxel_volume_ml

    def with_array(self, array, *, name=None, unit=None):
        """A new Volume on the same grid with other values."""
        return Volume(array, grid=self.grid, name=self.name if name is None else name, unit=self.unit if unit is None else unit)

    def __repr__(self):
        return (
            f"Volume(name={self.name!r}, shape={self.shape}, spacing_mm={self.spacing_mm}, "
            f"unit={self.unit!r}, dtype={self.array.dtype})"
        )


def uniform_array(value, shape, dtype=np.float32):
    """A read-only (Z, Y, X) array of one value that takes no memory (a broadcast view).

    For maps that are constant (the density without a CT and without lungs): every reader sees
    an ordinary array; :func:`uniform_value` lets the engine use the number instead.
    """
    return np.broadcast_to(np.asarray(value, dtype=dtype), tuple(shape))


def uniform_value(array):
    """The value of an array made by :func:`uniform_array` (all strides 0), else None (also for a
    :class:`BoxedArray` or :class:`BoxedValues`, which are not made whole to be asked)."""
    if isinstance(array, (BoxedArray, BoxedValues)):
        return None
    a = np.asarray(array)
    if a.size == 0 or any(st != 0 for st, n in zip(a.strides, a.shape) if n > 1):
        return None
    return float(a.reshape(-1)[:1][0]) if a.ndim else float(a)


#: Voxels read at a time by :meth:`BoxedArray.take` (bounds its index temporaries).
_TAKE_BLOCK = 1 << 16


class BoxedArray:
    """A read-only (Z, Y, X) map that is one value outside a box of the grid and an array inside it.

    For maps that differ from a constant only on part of the grid (the density without a CT:
    tissue everywhere, tissue and lung mixed by the lung fraction on the lungs' box).  The engine
    reads it a slab at a time (``boxed[z0:z1]``, ``boxed[z0:z1, y0:y1, x0:x1]``: new arrays of
    that size) or at flat C-order indices (:meth:`take`), never whole; ``np.asarray(boxed)``
    makes the whole array (for callers outside the engine).

    Parameters
    ----------
    outside : float, the value outside the box (stored as ``inside``'s dtype).
    box : tuple of 3 slices (z, y, x), steps of 1, within ``shape``.
    inside : (Z, Y, X) ndarray of the box's shape (kept, made C-contiguous if it is not).
    shape : (nz, ny, nx) of the whole map.
    """

    __slots__ = ("outside", "box", "inside", "shape")
    ndim = 3

    def __init__(self, outside, box, inside, shape):
        shape = tuple(int(n) for n in shape)
        if len(box) != 3 or any(s.step not in (None, 1) for s in box):
            raise GeometryError(f"a boxed map needs 3 slices of step 1 (z, y, x); got {box}")
        box = tuple(slice(*s.indices(n)[:2]) for s, n in zip(box, shape))
        inside = np.ascontiguousarray(inside)
        if len(shape) != 3 or inside.shape != tuple(max(0, s.stop - s.start) for s in box):
            raise GeometryError(f"a boxed map needs 3 slices and values of the box's shape; got {box} and {inside.shape}")
        self.outside, self.box, self.inside, self.shape = inside.dtype.type(outside), box, inside, shape

    @property
    def dtype(self):
        return self.inside.dtype

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def astype(self, dtype):
        """This map with its values as ``dtype`` (itself when they are already)."""
        if self.dtype == dtype:
            return self
        return BoxedArray(np.dtype(dtype).type(self.outside), self.box, self.inside.astype(dtype), self.shape)

    def __array__(self, dtype=None, copy=None):
        full = np.full(self.shape, self.outside, self.dtype)
        full[self.box] = self.inside
        return full if dtype is None else full.astype(dtype, copy=False)

    def __getitem__(self, key):
        """The values of a sub-box (slices of steps 1, as ``array[z0:z1]``): a new array."""
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3 or not all(isinstance(k, slice) for k in key):
            raise TypeError(f"a BoxedArray is read by slices (or take()); got {key!r}: use np.asarray() for the whole array")
        ranges = [k.indices(n) for k, n in zip(key + (slice(None),) * (3 - len(key)), self.shape)]
        if any(r[2] != 1 for r in ranges):
            raise TypeError("a BoxedArray is read by slices of step 1")
        out = np.full(tuple(max(0, b - a) for a, b, _ in ranges), self.outside, self.dtype)
        meet = [(max(a, s.start), min(b, s.stop)) for (a, b, _), s in zip(ranges, self.box)]
        if all(lo < hi for lo, hi in meet):
            dst = tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(meet, ranges))
            src = tuple(slice(lo - s.start, hi - s.start) for (lo, hi), s in zip(meet, self.box))
            out[dst] = self.inside[src]
        return out

    def value_of_planes(self, z0, z1):
        """The one value of planes ``z0:z1`` when they do not meet the box (``outside``), else None."""
        return self.outside if z1 <= self.box[0].start or z0 >= self.box[0].stop else None

    def take(self, index):
        """(N,) values at flat C-order indices ``index`` (N,) of the whole map, read in blocks
        (``index``: an array, or an object read by slices such as a region's runs)."""
        index = index if hasattr(index, "block") else np.asarray(index)
        out = np.empty(index.size, self.dtype)
        plane = self.shape[1] * self.shape[2]
        first, last = self.box[0].start * plane, self.box[0].stop * plane
        for s in range(0, index.size, _TAKE_BLOCK):
            idx, part = index[s:s + _TAKE_BLOCK], out[s:s + _TAKE_BLOCK]
            if int(idx.max()) < first or int(idx.min()) >= last:
                part.fill(self.outside)  # a block beyond the box's planes
                continue
            self._take_block(idx, part)
        return out

    def _take_block(self, idx, part):
        z, rest = np.divmod(idx.astype(np.int64, copy=False), self.shape[1] * self.shape[2])
        y, x = np.divmod(rest, self.shape[2])
        local, hit = np.zeros(idx.size, np.int64), np.ones(idx.size, bool)
        for coord, s, n in zip((z, y, x), self.box, self.inside.shape):
            coord -= s.start
            hit &= (coord >= 0) & (coord < n)
            local *= n
            local += coord
        part.fill(self.outside)
        part[hit] = self.inside.reshape(-1)[local[hit]]


class BoxedValues:
    """(N,) values of a :class:`BoxedArray` at flat C-order indices (a region's voxels), read a block
    at a time by slicing (``values[s:e]``: a new array), never all at once; ``np.asarray(values)``
    makes them all."""

    __slots__ = ("boxed", "index")
    ndim = 1

    def __init__(self, boxed, index):
        self.boxed = boxed
        self.index = index if hasattr(index, "block") else np.asarray(index)  # a region's runs are read by slices

    @property
    def shape(self):
        return (self.index.size,)

    @property
    def size(self):
        return self.index.size

    @property
    def dtype(self):
        return self.boxed.dtype

    def __len__(self):
        return self.index.size

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"BoxedValues are read by slices of step 1; got {key!r}: use np.asarray() for all of them")
        return self.boxed.take(self.index[key])

    def __array__(self, dtype=None, copy=None):
        values = self.boxed.take(self.index)
        return values if dtype is None else values.astype(dtype, copy=False)


class BoxedVolume(Volume):
    """A :class:`Volume` whose values are a :class:`BoxedArray` (``boxed``).  The engine reads
    ``boxed`` (:func:`volume_values`); ``array`` makes the whole array on first use (read-only,
    kept), for callers that want a plain array."""

    __slots__ = ("boxed", "_whole")

    def __init__(self, boxed, grid, name="", unit=""):
        if not isinstance(boxed, BoxedArray) or tuple(grid.shape) != boxed.shape:
            raise GeometryError(f"a BoxedVolume needs a BoxedArray of the grid's shape {grid.shape}")
        self.boxed, self.grid, self.name, self.unit, self._whole = boxed, grid, name, unit, None

    @property
    def array(self):
        if self._whole is None:
            self._whole = np.asarray(self.boxed)
            self._whole.flags.writeable = False
        return self._whole

    def __reduce__(self):
        return BoxedVolume, (self.boxed, self.grid, self.name, self.unit)

    def __repr__(self):
        return (f"BoxedVolume(name={self.name!r}, shape={self.shape}, spacing_mm={self.spacing_mm}, unit={self.unit!r}, "
                f"dtype={self.boxed.dtype}, box={self.boxed.box})")


def volume_values(volume):
    """The values of ``volume`` as the engine reads them: the :class:`BoxedArray` of a
    :class:`BoxedVolume` (never made whole), else its array."""
    return volume.boxed if isinstance(volume, BoxedVolume) else volume.array
