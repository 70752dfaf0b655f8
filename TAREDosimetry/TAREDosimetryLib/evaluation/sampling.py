"""The metrics grid: segment regions on it, and reading activity-grid maps there.

Three samplings (``DosimetryParams.sampling``):

* ``'overlap'`` (default, :class:`~.overlapsampling.OverlapSampler`): exact partial-voxel
  weighting.  Metrics are computed on the activity grid, and each activity voxel j counts in
  segment s with f_sj, the fraction of its volume inside s (box overlap of the two grids, or
  supersampling for oblique grids), whichever grid is the finer.
* ``'nearest'`` and ``'linear'`` (:class:`MetricsSampler`, point sampling): metrics on the finer
  of the two grids.  When the segmentation's voxels are smaller than the activity image's,
  every segment voxel takes the dose of the activity voxel that contains its centre
  ('nearest') or the trilinear interpolation of the dose there ('linear').  When the activity
  grid is the finer one, the segment masks are read (nearest neighbour) at the activity voxel
  centres instead.  Point sampling aliases when the slice thicknesses do not divide each
  other (some activity slices read twice, others never): an approximation, not exact.

Both give regions of the metrics grid (a boolean mask, or voxel indices with weights) that
:meth:`read` and :meth:`integrate` use, so the pipeline does not depend on the sampling.
Only the bounding box of the segments is sampled, which keeps CT-sized grids cheap.
"""

import numpy as np

from ..errors import GeometryError, InputError
from ..overlap import OverlapResult, overlap_sum
from ..resample import grid_inside, inside_mask, resample_mask, resample_volume
from ..volume import Volume, uniform_value

__all__ = ["MetricsSampler", "make_sampler", "union_box", "union_mask", "lung_mask_on_grid", "fraction_on_grid",
           "fraction_in_box"]


def union_box(boxes):
    """Bounding box (tuple of z, y, x slices) of the given boxes, None entries skipped; None when none is left."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def union_mask(segmentation, names, minus=()):
    """(box, bool mask of the union of the named segments, less those in ``minus``, inside box),
    or (None, None) when all are empty."""
    box = union_box(segmentation.bbox(n) for n in names)
    if box is None:
        return None, None
    mask = np.zeros(tuple(sl.stop - sl.start for sl in box), bool)
    for n in names:
        mask |= segmentation.mask(n, box)
    for n in minus:
        if segmentation.bbox(n) is not None:
            mask &= ~segmentation.mask(n, box)
    return box, mask


def make_sampler(segmentation, activity_grid, names, sampling="overlap"):
    """The metrics-grid sampler for ``sampling`` ('overlap', 'nearest' or 'linear')."""
    if sampling == "overlap":
        from .overlapsampling import OverlapSampler

        return OverlapSampler(segmentation, activity_grid, names)
    return MetricsSampler(segmentation, activity_grid, names, interpolation=sampling)


class MetricsSampler:
    """Point sampling: segment masks on the metrics grid, activity-grid maps read there.

    Parameters
    ----------
    segmentation : Segmentation
    activity_grid : Grid of the activity (and dose) image
    names : segment names to prepare (others are ignored)
    interpolation : 'nearest' or 'linear', how dose maps are read (:meth:`sample`)
    """

    sampling = "point"

    def __init__(self, segmentation, activity_grid, names, interpolation="nearest"):
        self.activity_grid = activity_grid
        self.interpolation = interpolation
        seg_grid = segmentation.grid
        boxes = {n: segmentation.bbox(n) for n in names}
        self.empty = [n for n, b in boxes.items() if b is None]
        present = [n for n in names if boxes[n] is not None]
        if not present:
            raise InputError("every segment is empty: nothing to measure")
        union = union_box(boxes[n] for n in present)
        seg_crop = seg_grid.crop(union)
        self.seg_finer = seg_grid.voxel_volume_ml <= activity_grid.voxel_volume_ml * (1 + 1e-6)
        if seg_grid.same_as(activity_grid):
            self.seg_finer = True
        # Fraction of each segment inside the activity image's field of view (on the segment grid).
        if grid_inside(seg_crop, activity_grid):
            fov = None  # the whole crop lies inside the activity image: no resampling needed
        else:
            fov = inside_mask(activity_grid, seg_crop)
        self.inside_fraction = {}
        masks_seg = {}
        for n in present:
            m = segmentation.mask(n, union)
            cnt = int(np.count_nonzero(m))
            if fov is None:
                self.inside_fraction[n] = 1.0
            else:
                self.inside_fraction[n] = float(np.count_nonzero(m & fov)) / cnt if cnt else 0.0
            masks_seg[n] = m
        if self.seg_finer:
            self.grid = seg_crop
            self.masks = masks_seg
            self._crop = None
        else:
            masks = {n: resample_mask(m, seg_crop, activity_grid) for n, m in masks_seg.items()}
            any_mask = np.logical_or.reduce(list(masks.values()))
            nz = [np.flatnonzero(any_mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
            if any(ix.size == 0 for ix in nz):
                raise GeometryError("no segment voxel lies inside the activity image (after resampling to its grid)")
            box = tuple(slice(int(ix[0]), int(ix[-1]) + 1) for ix in nz)
            self.grid = activity_grid.crop(box)
            self.masks = {n: m[box] for n, m in masks.items()}
            self._crop = box

    @property
    def voxel_volume_ml(self):
        return self.grid.voxel_volume_ml

    def sample(self, volume, interpolation="nearest"):
        """(Z, Y, X) float32 values of an activity-grid ``volume`` on the metrics grid.  A constant
        map (:func:`~TAREDosimetryLib.volume.uniform_array`) is not resampled: its value inside
        the activity image's field of view, 0 outside (as the resampling reads it)."""
        if self._crop is not None:
            return np.asarray(volume.array[self._crop], dtype=np.float32)
        one = uniform_value(volume.array)
        if one is not None:
            inside = inside_mask(volume.grid, self.grid)
            return np.where(inside, np.float32(one), np.float32(0.0))
        return resample_volume(volume, self.grid, interpolation).array

    def union(self, names):
        m = np.zeros(self.grid.shape, dtype=bool)
        for n in names:
            if n in self.masks:
                m |= self.masks[n]
        return m

    # -- the interface shared with OverlapSampler ----------------------------------------------
    @property
    def regions(self):
        """{name: region}: here boolean masks of the metrics grid."""
        return self.masks

    def region(self, names, minus=(), keep=True):
        """Region of the union of ``names`` less the union of ``minus`` (a mask of the metrics grid,
        made at each call: ``keep`` is the overlap sampler's)."""
        return self.union(names) & ~self.union(minus) if minus else self.union(names)

    def add_region(self, name, names, minus=()):
        """Register the region ``names`` less ``minus`` as ``name``; False when it is empty."""
        m = self.region(names, minus)
        if not np.any(m):
            return False
        self.masks[name] = m
        return True

    @staticmethod
    def read(array, region):
        """(values of the region's voxels, None): every voxel lies wholly in the region."""
        return array[region], None

    def extensive(self, volume):
        """``volume`` (an amount per activity voxel: counts, GBq) per mL on the metrics grid."""
        agrid = volume.grid
        return self.sample(Volume(volume.array / np.float32(agrid.voxel_volume_ml), grid=agrid), "nearest")

    def integrate(self, prepared, region):
        """Amount of an :meth:`extensive` quantity inside ``region``."""
        return float(prepared[region].sum(dtype=np.float64) * self.voxel_volume_ml)

    def describe(self):
        return {
            "grid": "segmentation" if self.seg_finer else "activity",
            "sampling": self.interpolation,
            "note": (
                f"point sampling ({self.interpolation}): segment voxels read the dose "
                + ("of the activity voxel holding their centre" if self.interpolation == "nearest" else "interpolated trilinearly")
                + " (not exact: aliases when slice thicknesses do not divide each other)"
                if self.seg_finer
                else "point sampling: segment masks resampled (nearest) to the activity grid (not exact)"
            ),
            **self.grid.to_dict(),
            "voxel_volume_ml": self.voxel_volume_ml,
        }


def lung_mask_on_grid(segmentation, lung_names, grid):
    """(Z, Y, X) bool mask of the union of the named segments, read (nearest) on ``grid``."""
    box, union = union_mask(segmentation, lung_names)
    if box is None:
        return np.zeros(grid.shape, bool)
    # Nearest-neighbour reading commutes with the union: one resampling for all the segments.
    full = np.zeros(segmentation.grid.shape, bool)
    full[box] = union
    return resample_mask(full, segmentation.grid, grid)


def fraction_in_box(segmentation, names, grid):
    """:class:`~TAREDosimetryLib.overlap.OverlapResult` on ``grid``: the fraction of each voxel of
    its box inside the union of the named segments (exact box overlap, or supersampling for
    oblique grids); the box is None when the segments are empty or outside ``grid``."""
    box, union = union_mask(segmentation, names)
    if box is None:
        return OverlapResult(None, np.zeros((0, 0, 0)))
    return overlap_sum(union, segmentation.grid.crop(box), grid)


def fraction_on_grid(segmentation, names, grid):
    """(Z, Y, X) float64 on ``grid``: the fraction of each voxel inside the union of the named
    segments (:func:`fraction_in_box` on the whole grid)."""
    out = np.zeros(grid.shape, np.float64)
    part = fraction_in_box(segmentation, names, grid)
    if part.box is not None:
        out[part.box] = part.values
    return out
