"""The metrics grid: segment masks on it, and reading activity-grid maps there.

Metrics are computed on the finer of the two grids.  When the segmentation's voxels are
smaller than the activity image's (the usual case: segments drawn on CT), every segment voxel
takes the dose of the activity voxel that contains its centre ('nearest' sampling) or the
trilinear interpolation of the dose there ('linear').  When the activity grid is the finer
one, the segment masks are read (nearest neighbour) at the activity voxel centres instead.
Only the bounding box of the segments is sampled, which keeps CT-sized grids cheap.
"""

import numpy as np

from ..errors import GeometryError, InputError
from ..resample import grid_inside, inside_mask, resample_mask, resample_volume

__all__ = ["MetricsSampler", "union_box", "union_mask", "lung_mask_on_grid"]


def union_box(boxes):
    """Bounding box (tuple of z, y, x slices) of the given boxes, None entries skipped; None when none is left."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def union_mask(segmentation, names):
    """(box, bool mask of the union of the named segments inside box), or (None, None) when all are empty."""
    box = union_box(segmentation.bbox(n) for n in names)
    if box is None:
        return None, None
    mask = np.zeros(tuple(sl.stop - sl.start for sl in box), bool)
    for n in names:
        mask |= segmentation.mask(n, box)
    return box, mask


class MetricsSampler:
    """Segment masks on the metrics grid, and reading of activity-grid maps on that grid.

    Parameters
    ----------
    segmentation : Segmentation
    activity_grid : Grid of the activity (and dose) image
    names : segment names to prepare (others are ignored)
    """

    def __init__(self, segmentation, activity_grid, names):
        self.activity_grid = activity_grid
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
        """(Z, Y, X) float32 values of an activity-grid ``volume`` on the metrics grid."""
        if self._crop is not None:
            return np.asarray(volume.array[self._crop], dtype=np.float32)
        return resample_volume(volume, self.grid, interpolation).array

    def union(self, names):
        m = np.zeros(self.grid.shape, dtype=bool)
        for n in names:
            if n in self.masks:
                m |= self.masks[n]
        return m

    def describe(self):
        return {
            "grid": "segmentation" if self.seg_finer else "activity",
            "note": (
                "segment voxels read the dose of the activity voxel holding their centre"
                if self.seg_finer
                else "segment masks resampled (nearest) to the activity grid"
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
