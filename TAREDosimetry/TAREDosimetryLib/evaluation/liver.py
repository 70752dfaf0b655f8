"""The whole liver: which segments make it, whatever the segment format.

A label map cannot let a tumour voxel also be liver: with labels 1 = liver and 2 = tumour, the
"liver" label is the liver *without* its tumours, while in an overlapping segmentation (3D
Slicer .seg.nrrd) the liver segment usually holds them.  So the whole liver is defined by
anatomy, not by one segment: the union of the segments with a liver role
(:data:`LIVER_PART_ROLES`: liver, lobes, normal liver, perfused normal liver, perfused volume)
and of the tumour segments that lie in it (that overlap it or touch it face to face).  This
union is the reference region 'liver' of relative calibration and the whole-liver row of the
results, so an overlapping .seg.nrrd and a label map of the same anatomy give the same doses.
"""

from dataclasses import dataclass, field

import numpy as np

from .sampling import union_mask

__all__ = ["LIVER_PART_ROLES", "ANATOMICAL_LIVER_ROLES", "WholeLiver", "whole_liver"]

#: Roles of the segments whose union (with the tumours in it) is the whole liver.
LIVER_PART_ROLES = ("liver", "right_lobe", "left_lobe", "normal_liver", "perfused_normal", "perfused")
#: Roles that outline liver anatomy (a perfused territory alone does not say where the liver is).
ANATOMICAL_LIVER_ROLES = ("liver", "right_lobe", "left_lobe", "normal_liver")


@dataclass
class WholeLiver:
    """The segments of the whole liver.

    segments : names whose union is the whole liver (liver parts, then the tumours in it).
    tumours_outside : tumour segments that neither overlap nor touch the liver parts.
    liver_segments_are_whole : True when the segments with role 'liver' already hold every
        voxel of the union (then they are the whole-liver row; no derived row is needed).
    anatomical : True when a liver, lobe or normal-liver segment outlines the liver.
    """

    segments: list = field(default_factory=list)
    tumours_outside: list = field(default_factory=list)
    liver_segments_are_whole: bool = False
    anatomical: bool = False


def _dilated(mask):
    """``mask`` grown by one voxel across each face (6-neighbourhood; outside the array is empty),
    as ``scipy.ndimage.binary_dilation`` with its default structure, in NumPy alone."""
    out = mask.copy()
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        out[tuple(lo)] |= mask[tuple(hi)]
        out[tuple(hi)] |= mask[tuple(lo)]
    return out


def _touches(segmentation, tumour, parts):
    """True when the tumour overlaps one of ``parts`` or touches it face to face."""
    box = segmentation.bbox(tumour)
    grown = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, segmentation.grid.shape))
    reach = _dilated(segmentation.mask(tumour, grown))
    return any(np.any(reach & segmentation.mask(p, grown)) for p in parts if segmentation.bbox(p) is not None)


def _voxel_count(segmentation, names):
    box, mask = union_mask(segmentation, names)
    return 0 if box is None else int(np.count_nonzero(mask))


def whole_liver(segmentation, role_of, used):
    """:class:`WholeLiver` of the measured segments ``used`` with roles ``role_of``."""
    parts = [n for n in used if role_of[n] in LIVER_PART_ROLES]
    if not parts:
        return WholeLiver()
    tumours = [n for n in used if role_of[n] == "tumor"]
    inside = [t for t in tumours if _touches(segmentation, t, parts)]
    segments = parts + inside
    liver_role = [n for n in parts if role_of[n] == "liver"]
    whole = bool(liver_role) and _voxel_count(segmentation, liver_role) == _voxel_count(segmentation, segments)
    return WholeLiver(
        segments=segments,
        tumours_outside=[t for t in tumours if t not in inside],
        liver_segments_are_whole=whole,
        anatomical=any(role_of[n] in ANATOMICAL_LIVER_ROLES for n in parts),
    )
