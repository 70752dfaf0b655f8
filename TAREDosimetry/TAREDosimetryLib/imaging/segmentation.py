"""Segments (liver, lobes, tumours, lungs, ...) as binary masks on one grid.

A :class:`Segmentation` holds ``layers``, an integer array ``(L, z, y, x)``, and a list of
:class:`SegmentInfo`; a segment is the set of voxels of its layer equal to its label value.
This is the layout of 3D Slicer's ``.seg.nrrd`` files: segments that share a layer cannot
overlap, segments on different layers may.  Masks are made on demand, cropped to the
segment's bounding box when asked, so that many segments of a large CT grid stay cheap.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .labelboxes import occupied_box, segment_boxes

__all__ = ["SegmentInfo", "Segmentation", "label_values"]


@dataclass(frozen=True)
class SegmentInfo:
    """Name and storage of one segment.

    color : (r, g, b) in [0, 1], as 3D Slicer stores it.
    layer : index into ``Segmentation.layers``; label_value : value of the segment in that layer.
    """

    name: str
    segment_id: str = ""
    color: tuple = (0.5, 0.5, 0.5)
    layer: int = 0
    label_value: int = 1

    def __post_init__(self):
        if not str(self.name).strip():
            raise InputError("segment name must not be empty")
        if not self.segment_id:
            object.__setattr__(self, "segment_id", str(self.name))
        object.__setattr__(self, "color", tuple(float(c) for c in self.color))


_PALETTE = (
    (0.87, 0.51, 0.40), (0.95, 0.84, 0.57), (0.69, 0.48, 0.40), (0.44, 0.72, 0.82),
    (0.85, 0.40, 0.31), (0.56, 0.79, 0.49), (0.72, 0.54, 0.82), (0.95, 0.62, 0.23),
)


#: Label-map voxels whose values are gathered at a time by :func:`label_values`.
_LABEL_BLOCK = 1 << 18


def _place_mask(layers, labels, mask):
    """(layer index, label value) of a mask written into the first of ``layers`` (uint8 label
    images, with ``labels`` the last label used in each) where none of its voxels is taken and a
    label is free; into a new layer else."""
    box = occupied_box(mask[..., np.newaxis])
    for i, layer in enumerate(layers):
        if labels[i] < np.iinfo(np.uint8).max and (box is None or not np.any(layer[box][mask[box]])):
            labels[i] += 1
            if box is not None:
                layer[box][mask[box]] = labels[i]
            return i, labels[i]
    layers.append(np.zeros(mask.shape, np.uint8))
    labels.append(1)
    if box is not None:
        layers[-1][box][mask[box]] = 1
    return len(layers) - 1, 1


def label_values(labelmap):
    """The set of values in an integer label map, read in blocks of plane-aligned voxels, so that
    no sorted copy of the whole map is made (``np.unique`` of the whole map would add its size).
    8- and 16-bit maps mark their values in a table (no sort, and no import of ``numpy.ma``,
    which ``np.unique`` makes: 2 MB of memory for nothing)."""
    labelmap = np.atleast_1d(labelmap)
    plane = int(np.prod(labelmap.shape[1:], dtype=np.int64))
    step = max(1, _LABEL_BLOCK // max(plane, 1))
    small = labelmap.dtype.kind in "ui" and labelmap.dtype.itemsize <= 2 and labelmap.dtype.isnative
    seen = np.zeros(1 << (8 * labelmap.dtype.itemsize), bool) if small else None
    values = set()
    for k in range(0, labelmap.shape[0], step):
        block = labelmap[k:k + step]
        if small:
            seen[block.reshape(-1).view(np.uint8 if block.dtype.itemsize == 1 else np.uint16)] = True
        else:
            values.update(np.unique(block).tolist())
    if small:
        found = np.flatnonzero(seen)
        if labelmap.dtype.kind == "i":  # two's complement: the upper half of the table is negative
            found = found.astype(np.int64) - np.where(found >= seen.size // 2, seen.size, 0)
        values.update(int(v) for v in found)
    return values


class Segmentation:
    """Segments on one grid (see module docstring).

    Parameters
    ----------
    layers : (L, Z, Y, X) ndarray of unsigned int
    grid : Grid of the (Z, Y, X) part
    segments : list of SegmentInfo (unique names)
    """

    def __init__(self, layers, grid, segments, source=""):
        layers = np.asarray(layers)
        if layers.ndim == 3:
            layers = layers[np.newaxis]
        if layers.ndim != 4:
            raise InputError(f"segmentation layers must be (L, z, y, x); got shape {layers.shape} ({source or 'segmentation'})")
        if tuple(layers.shape[1:]) != tuple(grid.shape):
            raise InputError(f"segmentation layers shape {layers.shape[1:]} does not match grid {grid.shape}")
        names = [s.name for s in segments]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"segment names must be unique; repeated: {', '.join(dup)} ({source or 'segmentation'})")
        for s in segments:
            if not 0 <= s.layer < layers.shape[0]:
                raise InputError(f"segment {s.name!r} refers to layer {s.layer}, but there are {layers.shape[0]} layer(s)")
        self.layers = layers
        self.grid = grid
        self.segments = list(segments)
        self.source = source
        #: Remarks made while reading (e.g. unnamed labels left out); the pipeline reports them.
        self.notes = []
        #: {label value: name} when made from a label map (recorded with results), else None.
        self.label_names = None
        self._bbox_cache = {}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_masks(cls, masks, grid, colors=None, ids=None, source=""):
        """Segments from masks, which may overlap.  As in a Slicer segmentation, masks that do not
        overlap share a layer (labels 1, 2, ... in the order given; a new layer for a mask that
        meets every layer so far): N disjoint masks (a TotalSegmentator folder, the structures of
        an RT Structure Set) take the memory of one label map, not N.

        masks : dict {name: (Z, Y, X) bool ndarray}, in order, or an iterable of (name, mask)
            pairs (a generator: each mask is packed, and may be dropped, before the next is made).
        """
        layers, labels, infos = [], [], []
        for n, (name, m) in enumerate(masks.items() if hasattr(masks, "items") else masks):
            m = np.asarray(m)
            if m.shape != tuple(grid.shape):
                raise InputError(f"mask of segment {name!r} has shape {m.shape}, expected {grid.shape}")
            layer, label = _place_mask(layers, labels, m.astype(bool, copy=False))
            color = (colors or {}).get(name, _PALETTE[n % len(_PALETTE)])
            infos.append(SegmentInfo(name, (ids or {}).get(name, name), color, layer, label))
        if not infos:
            raise InputError(f"no segments given ({source or 'segmentation'})")
        stacked = layers[0][np.newaxis] if len(layers) == 1 else np.stack(layers)
        return cls(stacked, grid, infos, source=source)

    @classmethod
    def from_labelmap(cls, labelmap, grid, names, colors=None, source=""):
        """From an integer label image (Z, Y, X) and a {label value: name} table."""
        labelmap = np.asarray(labelmap)
        if not np.issubdtype(labelmap.dtype, np.integer):
            if not np.all(np.equal(np.mod(labelmap, 1), 0)):
                raise InputError(f"label map must hold whole numbers ({source or 'label map'})")
            labelmap = labelmap.astype(np.int64)
        if labelmap.min() < 0:
            raise InputError(f"label map holds negative labels ({source or 'label map'})")
        present = label_values(labelmap) - {0}
        if names is None:
            names = {v: f"label {v}" for v in sorted(present)}
        infos = []
        for n, (value, name) in enumerate(sorted(names.items())):
            value = int(value)
            if value <= 0:
                raise InputError(f"label values must be positive, got {value} for {name!r}")
            color = (colors or {}).get(name, _PALETTE[n % len(_PALETTE)])
            infos.append(SegmentInfo(str(name), str(name), color, 0, value))
        unnamed = sorted(present - {int(v) for v in names})
        top = int(labelmap.max())
        dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32  # never wrap a label around
        if top >= 2**32:
            raise InputError(f"label map holds label {top}, more than 2**32 - 1 ({source or 'label map'})")
        seg = cls(labelmap.astype(dtype, copy=False)[np.newaxis], grid, infos, source=source)
        seg.label_names = {s.label_value: s.name for s in infos}
        if unnamed:
            shown = ", ".join(str(v) for v in unnamed[:12]) + (" ..." if len(unnamed) > 12 else "")
            seg.notes.append(
                f"label value(s) {shown} of {source or 'the label map'} have no name in the label table and are not used"
            )
        return seg

    # -- access -------------------------------------------------------------------------------
    @property
    def names(self):
        return [s.name for s in self.segments]

    def info(self, name_or_info):
        if isinstance(name_or_info, SegmentInfo):
            return name_or_info
        for s in self.segments:
            if s.name == name_or_info or s.segment_id == name_or_info:
                return s
        raise InputError(f"no segment named {name_or_info!r}; segments: {', '.join(self.names)}")

    def mask(self, name_or_info, bbox=None):
        """Boolean mask (Z, Y, X) of one segment, or of the ``bbox`` part (tuple of slices)."""
        s = self.info(name_or_info)
        if bbox is not None:
            compact = self._compact_layers()
            if compact is not None and all(c.start <= b.start and b.stop <= c.stop for b, c in zip(bbox, compact[0])):
                shifted = tuple(slice(b.start - c.start, b.stop - c.start) for b, c in zip(bbox, compact[0]))
                return compact[1][s.layer][shifted] == s.label_value
            return self.layers[s.layer][bbox] == s.label_value
        return self.layers[s.layer] == s.label_value

    def _compact_layers(self):
        """(box, (L, z, y, x) C-contiguous copy of the layers in it) when the layers are interleaved
        in memory (a .seg.nrrd: each layer's voxels 1 byte in L) and the box of every segment is
        under half the grid: masks are then read from compact memory (made once); else None."""
        if hasattr(self, "_compact"):
            return self._compact
        boxes = [self.bbox(t) for t in self.segments]  # the first pass of the boxes may make the copy
        if not hasattr(self, "_compact"):
            self._compact = None
            if self.layers.shape[0] > 1 and not self.layers[0].flags.c_contiguous:
                boxes = [b for b in boxes if b is not None]
                if boxes:
                    box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))
                    if np.prod([b.stop - b.start for b in box]) * 2 <= np.prod(self.grid.shape):
                        self._compact = (box, np.ascontiguousarray(self.layers[(slice(None),) + box]))
        return self._compact

    def bbox(self, name_or_info):
        """Tuple of slices (z, y, x) of the segment's bounding box, or None when empty.

        The first call finds the boxes of every segment at once (:func:`.labelboxes.segment_boxes`:
        one pass over the voxels, not several per segment); they are cached, with the compact copy
        of interleaved layers that pass made (masks are read from it).
        """
        s = self.info(name_or_info)
        key = (s.layer, s.label_value)
        if key not in self._bbox_cache:
            wanted = {(t.layer, t.label_value) for t in self.segments} - set(self._bbox_cache)
            found, compact = segment_boxes(self.layers, wanted | {key})
            self._bbox_cache.update(found)
            if compact is not None and not hasattr(self, "_compact"):
                self._compact = compact  # the copy the boxes were found in serves the masks
        return self._bbox_cache[key]

    def voxel_count(self, name_or_info):
        box = self.bbox(name_or_info)
        return 0 if box is None else int(np.count_nonzero(self.mask(name_or_info, box)))

    def with_segment(self, name, mask, color=(0.56, 0.79, 0.49), segment_id=None):
        """A new Segmentation with one more segment on a new layer (existing layers shared, not copied)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(self.grid.shape):
            raise InputError(f"mask of {name!r} has shape {mask.shape}, expected {self.grid.shape}")
        if name in self.names:
            raise InputError(f"a segment named {name!r} exists already")
        new_layer = mask.astype(self.layers.dtype)[np.newaxis]
        layers = np.concatenate([self.layers, new_layer], axis=0)
        info = SegmentInfo(name, segment_id or name, color, layers.shape[0] - 1, 1)
        out = Segmentation(layers, self.grid, self.segments + [info], source=self.source)
        out.notes = list(self.notes)
        out._bbox_cache = dict(self._bbox_cache)  # the old layers keep their indices and voxels
        return out

    def subset(self, names):
        """Same layers, only the named segments (in the given order)."""
        out = Segmentation(self.layers, self.grid, [self.info(n) for n in names], source=self.source)
        out.notes = list(self.notes)
        out._bbox_cache = self._bbox_cache  # same layers: the boxes are shared
        return out

    def __repr__(self):
        return f"Segmentation({len(self.segments)} segments {self.names}, layers={self.layers.shape[0]}, grid={self.grid.shape})"
