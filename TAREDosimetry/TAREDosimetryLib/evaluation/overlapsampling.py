"""Exact partial-voxel weighting of segments on the activity grid (``sampling='overlap'``).

Each activity voxel j counts in segment s with f_sj, the fraction of its volume that lies
inside s (:func:`~TAREDosimetryLib.overlap.overlap_sum` of the segment's mask: box overlap of
axis-aligned grids, supersampling of oblique ones).  Metrics are then computed on the activity
grid itself, with no resampling of any map::

    activity_s = sum_j f_sj A_j              volume_s = sum_j f_sj V_j
    mass_s     = sum_j f_sj rho_j V_j        mean_s   = sum_j f_sj m_j D_j / mass_s

so that under local deposition mean_s = K activity_s / mass_s exactly, whichever grid is the
finer, and the volumes of a partition of the image add up to the image.  The DVH and every D/V
metric weigh voxel j by f_sj V_j (:class:`~.dvh.DVH` with weights).  Unions and differences of
segments (the whole liver, liver minus tumours, the lungs) are formed on the segmentation's
own grid before their fractions are taken, so overlapping segments are never counted twice.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import GeometryError, InputError
from ..overlap import destination_box, overlap_sum, unit_mapping
from ..volume import BoxedArray, BoxedValues, uniform_array, uniform_value, volume_values
from .runindex import compact_index, same_index
from .sampling import union_box, union_mask

__all__ = ["Region", "OverlapSampler"]

#: Masks larger than this (voxels) are contracted in float32 (half the memory; the fractions
#: then carry ~1e-7 relative round-off).
_FLOAT32_ABOVE_VOXELS = 1 << 24
#: Region voxels read at a time by :meth:`OverlapSampler.integrate`.
_READ_BLOCK = 1 << 16


@dataclass
class Region:
    """Voxels of the activity grid (flat C-order indices of the whole activity image, so that a map
    on that grid is read in place, with no copy of its metrics-grid crop) and the fraction f of
    each inside the region.

    index : (N,) int32 (int64 on grids of 2**31 voxels or more), sorted, kept as runs of
        consecutive voxels (:class:`~.runindex.RunIndex`: a few bytes a row of the region instead
        of 4 a voxel) unless the voxels are scattered; read it by slices (``index[s:e]``).
    weight : (N,) float64 (float32 for the fractions of large masks, computed in float32), or None
        when every voxel lies wholly inside (f = 1 to within rounding: the same grid, or a crop of it).
    """

    index: np.ndarray
    weight: np.ndarray = None

    def __post_init__(self):
        self.index = compact_index(self.index)

    @property
    def volume_voxels(self):
        """sum_j f_j: the region's volume in activity voxels."""
        return float(self.index.size) if self.weight is None else float(self.weight.sum(dtype=np.float64))


#: Fractions this close to 1 (4 units of rounding of their float type) are whole voxels.
_WHOLE_TOLERANCE = {np.float64: 4 * np.finfo(np.float64).eps, np.float32: 4 * np.finfo(np.float32).eps}


def _region_of_fractions(values, start, shape):
    """:class:`Region` of the voxels with fraction > 0 in ``values`` (Z, Y, X), a box at ``start``
    (z, y, x) of a grid of ``shape``: plane by plane into arrays of the region's size, so that no
    index triplets of the whole box are ever held."""
    index_type = np.int32 if int(np.prod(shape, dtype=np.int64)) < 2**31 else np.int64
    nx = values.shape[2]
    n = int(np.count_nonzero(values > 0))
    index, weight, filled = np.empty(n, index_type), np.empty(n, values.dtype), 0
    for kz in range(values.shape[0]):
        plane = values[kz].reshape(-1)
        flat = np.flatnonzero(plane > 0)
        if flat.size == 0:
            continue
        j, i = np.divmod(flat, nx)
        index[filled:filled + flat.size] = ((kz + start[0]) * shape[1] + (j + start[1])) * shape[2] + (i + start[2])
        weight[filled:filled + flat.size] = plane[flat]
        filled += flat.size
    if n == 0:
        return Region(index)
    tol = _WHOLE_TOLERANCE[weight.dtype.type]
    if float(weight.min()) >= 1.0 - tol and float(weight.max()) <= 1.0 + tol:
        weight = None  # every voxel whole: no weights to store or to read
    return Region(index, weight)


def _region_of_unit_mask(mask, mapping, image_shape, crop_start, shape):
    """:class:`Region` (whole voxels) of a mask whose voxels are activity voxels: destination index
    = offset + sign x mask index per axis (``mapping``); voxels outside the activity image are
    left out; indices relative to the metrics grid (``shape``, at ``crop_start``), in C order.
    The indices are written plane by plane into one array of the mask's voxel count."""
    index_type = np.int32 if int(np.prod(shape, dtype=np.int64)) < 2**31 else np.int64
    (sz, oz), (sy, oy), (sx, ox) = mapping
    nx = mask.shape[2]
    index, filled = np.empty(int(np.count_nonzero(mask)), index_type), 0
    for kz in range(mask.shape[0]):
        z = oz + sz * kz
        if not 0 <= z < image_shape[0]:
            continue
        flat = np.flatnonzero(mask[kz])
        if flat.size == 0:
            continue
        j, i = np.divmod(flat, nx)
        y, x = oy + sy * j, ox + sx * i
        keep = (y >= 0) & (y < image_shape[1]) & (x >= 0) & (x < image_shape[2])
        y, x = y[keep] - crop_start[1], x[keep] - crop_start[2]
        index[filled:filled + y.size] = ((z - crop_start[0]) * shape[1] + y) * shape[2] + x
        filled += y.size
    index = index[:filled] if filled == index.size else index[:filled].copy()
    if any(sign < 0 for sign, _ in mapping):
        index.sort()  # C order of the metrics grid, as from the fractions
    return Region(index)


def _tight_box(mask, box):
    """The bounding box (z, y, x slices of the whole grid) of the voxels of ``mask`` (given on ``box``; not empty)."""
    out = []
    for axis in range(3):
        held = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        out.append(slice(box[axis].start + int(held[0]), box[axis].start + int(held[-1]) + 1))
    return tuple(out)


class OverlapSampler:
    """Segments as fractional regions of the activity grid (see module docstring).

    Parameters
    ----------
    segmentation : Segmentation
    activity_grid : Grid of the activity (and dose) image
    names : segment names to prepare (others are ignored)
    """

    sampling = "overlap"

    def __init__(self, segmentation, activity_grid, names):
        self.segmentation = segmentation
        self.activity_grid = activity_grid
        self.seg_finer = segmentation.grid.voxel_volume_ml <= activity_grid.voxel_volume_ml * (1 + 1e-6)
        boxes = {n: segmentation.bbox(n) for n in names}
        self.empty = [n for n, b in boxes.items() if b is None]
        present = [n for n in names if boxes[n] is not None]
        if not present:
            raise InputError("every segment is empty: nothing to measure")
        self._infos = []
        # The metrics grid (the union of the segments' boxes on the activity grid) from the geometry
        # alone, then one segment at a time: its fractions are dropped once its region is made.
        placed = [destination_box(segmentation.grid.crop(boxes[n]), activity_grid) for n in present]
        placed = [b for b in placed if b is not None]
        if not placed:
            raise GeometryError("no segment voxel lies inside the activity image")
        self._crop = union_box(placed)
        self.grid = activity_grid.crop(self._crop)
        # One segment at a time (two at once would hold two segments' temporaries: +0.6 bytes per
        # voxel on the synthetic cases, for 5 ms on the MAA case).
        self.inside_fraction, self.regions = {}, {}
        for n in present:
            self.regions[n], self.inside_fraction[n] = self._segment_region(n, boxes[n])
        self._cache = {}

    def _segment_region(self, name, box):
        """(Region, fraction of the segment inside the activity image) of one segment."""
        mask = self.segmentation.mask(name, box)
        count = int(np.count_nonzero(mask))
        region = self._region_of_mask(mask, box)
        del mask
        inside = region.volume_voxels * self.activity_grid.voxel_volume_ml
        return region, min(1.0, inside / (count * self.segmentation.grid.voxel_volume_ml))

    # -- fractions ------------------------------------------------------------------------------
    def _fractions(self, mask, box):
        """OverlapResult of a mask given on ``box`` of the segmentation grid."""
        dtype = np.float32 if mask.size > _FLOAT32_ABOVE_VOXELS else np.float64
        result = overlap_sum(mask, self.segmentation.grid.crop(box), self.activity_grid, dtype=dtype)
        self._infos.append(result.info)
        return result

    def _region_of_mask(self, mask, box):
        """:class:`Region` of a mask given on ``box`` of the segmentation grid: straight from the
        mask when its voxels are activity voxels (:func:`~TAREDosimetryLib.overlap.unit_mapping`:
        the same grid or a crop of it; no fractions to compute), else from its overlap fractions."""
        src = self.segmentation.grid.crop(box)
        mapping = unit_mapping(src, self.activity_grid)
        if mapping is None:
            return self._region(self._fractions(mask, box))
        self._infos.append({"method": "box overlap"})
        return _region_of_unit_mask(mask, mapping, self.activity_grid.shape, (0, 0, 0), self.activity_grid.shape)

    def _region(self, result):
        """:class:`Region` of the metrics grid from an OverlapResult on the activity grid."""
        if result.box is None:
            return Region(np.zeros(0, np.int32))
        start = [result.box[a].start for a in range(3)]
        return _region_of_fractions(result.values, start, self.activity_grid.shape)

    # -- the interface shared with MetricsSampler ---------------------------------------------
    @property
    def voxel_volume_ml(self):
        return self.grid.voxel_volume_ml

    @property
    def masks(self):
        """{name: Region} (the name the point sampler uses for its boolean masks)."""
        return self.regions

    def region(self, names, minus=(), keep=True):
        """:class:`Region` of the union of ``names`` less the union of ``minus``, formed on the
        segmentation grid before the fractions are taken (cached unless ``keep`` is False: a
        region asked for once, whose indices need not outlive the caller's use)."""
        names = [n for n in names if n in self.regions]
        key = (tuple(names), tuple(minus))
        if key in self._cache:
            return self._cache[key]
        if len(names) == 1 and not minus:
            return self._cache.setdefault(key, self.regions[names[0]])
        box, mask = union_mask(self.segmentation, names, minus)
        if box is None or not mask.any():
            made = Region(np.zeros(0, np.int32))
        else:
            same = self._segment_with_mask(names, mask, box)
            made = self.regions[same] if same is not None else self._same_as_known(self._region_of_mask(mask, box))
        del mask
        if keep:
            self._cache[key] = made
        return made

    def _segment_with_mask(self, names, mask, box):
        """The segment among ``names`` whose voxels are exactly ``mask`` (on ``box`` of the segmentation
        grid), or None: a label map's liver less its tumours is the liver segment itself, whose region
        is already made (no second overlap of the same voxels)."""
        tight = _tight_box(mask, box)
        for n in names:  # only a segment of the same bounding box can hold the same voxels
            if n in self.regions and n in self.segmentation.names and self.segmentation.bbox(n) == tight:
                if np.array_equal(self.segmentation.mask(n, box), mask):
                    return n
        return None

    def _same_as_known(self, region):
        """``region``, or the region already known with the same voxels and fractions (a label
        map's liver is its whole liver minus the tumours): one copy of the indices, one DVH."""
        for known in list(self.regions.values()) + list(self._cache.values()):
            if same_index(known.index, region.index) and (
                    (known.weight is None and region.weight is None)
                    or (known.weight is not None and region.weight is not None and np.array_equal(known.weight, region.weight))):
                return known
        return region

    def add_region(self, name, names, minus=()):
        """Register the region ``names`` less ``minus`` as ``name``; False when it is empty."""
        r = self.region(names, minus)
        if r.index.size == 0:
            return False
        self.regions[name] = r
        return True

    def sample(self, volume, interpolation=None):
        """(Z, Y, X) float32 values of an activity-grid ``volume`` as :meth:`read` takes them: the
        whole array (the regions index the activity grid; no copy when it is float32), or the
        :class:`~TAREDosimetryLib.volume.BoxedArray` of a boxed map (never made whole)."""
        values = volume_values(volume)
        if isinstance(values, BoxedArray) and values.dtype == np.float32:
            return values
        return np.asarray(values, dtype=np.float32)

    @staticmethod
    def read(array, region):
        """(values of the region's voxels, their fractions f).  The values of a boxed map are
        :class:`~TAREDosimetryLib.volume.BoxedValues`, read a block at a time by their user."""
        if isinstance(array, BoxedArray):  # the box's values inside it, its constant outside
            return BoxedValues(array, region.index), region.weight
        one = uniform_value(array)
        if one is not None:  # a constant map (no memory): the number, repeated (a broadcast view)
            return uniform_array(one, (region.index.size,), np.asarray(array).dtype), region.weight
        flat, index = array.reshape(-1), region.index
        if isinstance(index, np.ndarray):
            return flat[index], region.weight
        out = np.empty(index.size, flat.dtype)
        for s in range(0, index.size, _READ_BLOCK):  # the runs' indices a block at a time
            np.take(flat, index[s:s + _READ_BLOCK], out=out[s:s + _READ_BLOCK])
        return out, region.weight

    def extensive(self, volume):
        """``volume`` (an amount per activity voxel: counts, GBq) as :meth:`integrate` takes it (the
        whole array, as :meth:`sample`)."""
        return np.asarray(volume.array)

    def integrate(self, prepared, region):
        """sum_j f_j x_j: the amount of an :meth:`extensive` quantity inside ``region`` (float64,
        read in blocks of the region: no copy of the whole region)."""
        flat, total = prepared.reshape(-1), 0.0
        for s in range(0, region.index.size, _READ_BLOCK):
            values = flat[region.index[s:s + _READ_BLOCK]]
            if region.weight is None:
                total += float(values.sum(dtype=np.float64))
            else:
                total += float(np.dot(values.astype(np.float64), region.weight[s:s + _READ_BLOCK].astype(np.float64)))
        return total

    def describe(self):
        methods = sorted({i["method"] for i in self._infos})
        out = {
            "grid": "activity",
            "sampling": "overlap",
            "method": ", ".join(methods),
            "note": "exact partial-voxel weighting: each activity voxel counts in a segment with the fraction f of its "
                    "volume inside it; mean = K sum f A / sum f m, DVH weighted by f V",
        }
        super_infos = [i for i in self._infos if i["method"] == "supersampling"]
        if super_infos:
            out["supersampling_points_per_axis_xyz"] = max((i["points_per_axis"] for i in super_infos), key=max)
            changes = [i["relative_change"] for i in super_infos if np.isfinite(i["relative_change"])]
            out["supersampling_relative_change"] = max(changes) if changes else None
            out["supersampling_converged"] = all(i["converged"] for i in super_infos)
        out.update(self.grid.to_dict())
        out["voxel_volume_ml"] = self.voxel_volume_ml
        return out
