"""Bounding boxes of every segment of a segmentation, in one pass over its voxels.

A CT-sized segmentation (512 x 512 x 161 voxels, 4 layers: 169 MB) holds its segments in a small
part of the grid.  Instead of several full-grid passes per segment (a boolean mask, then one
projection per axis), :func:`label_boxes` finds

1. the box holding every non-zero voxel of the layers asked for: three reductions (a maximum
   over planes, then rows, then columns), each over the part left by the previous one, so the
   first, over the whole grid, is the only full pass; a .seg.nrrd's layers interleaved in memory
   (z, y, x, layer) are read together in that pass;
2. inside that box, the box of every label of a layer: one comparison per label for a few
   labels, else one labelled-object scan per layer (:func:`scipy.ndimage.find_objects`).

The result equals, label by label, the box of ``layer == label`` (tested against that
definition).  Arrays are (z, y, x); a box is a tuple of three slices (z, y, x).
"""

import threading

import numpy as np

from ..threads import cpu_threads

__all__ = ["occupied_box", "label_boxes", "segment_boxes"]

#: Largest label value found by a labelled-object scan (it keeps one entry per value up to the
#: largest); layers with larger label values are scanned label by label.
_MAX_SCANNED_LABEL = 1 << 16
#: Up to this many labels in a layer, each is found by its own comparison (NumPy only).
_FEW_LABELS = 8
#: Arrays of at least this many bytes have their first pass split between threads.
_SPLIT_BYTES = 1 << 25


def _nonzero_span(projection):
    idx = np.flatnonzero(projection)
    return None if idx.size == 0 else slice(int(idx[0]), int(idx[-1]) + 1)


def _as_unsigned(a):
    """``a`` with non-zero exactly where it was (signed values viewed as unsigned, bool kept)."""
    if a.dtype.kind == "i":
        return a.view(a.dtype.str.replace("i", "u"))
    return a


def _plane_maxima(b):
    """The largest value of each plane (axis 0) of ``b`` (Z, Y, X, C): the one pass over the whole
    array, split between the cores this case may use (NumPy reduces without the interpreter lock)
    when the array is large."""
    parts = min(cpu_threads(), b.shape[0]) if b.nbytes >= _SPLIT_BYTES else 1
    if parts < 2:
        return b.max(axis=(1, 2, 3))
    cuts = [b.shape[0] * i // parts for i in range(parts + 1)]
    out = [None] * parts

    def reduce(i):
        out[i] = b[cuts[i]:cuts[i + 1]].max(axis=(1, 2, 3))

    helpers = [threading.Thread(target=reduce, args=(i,)) for i in range(1, parts)]
    for t in helpers:
        t.start()
    reduce(0)
    for t in helpers:
        t.join()
    return np.concatenate(out)


def occupied_box(block):
    """Box (z, y, x slices) of the voxels of ``block`` (Z, Y, X, C) non-zero in any channel; None when all zero.

    The first reduction reads the whole array once; the next two read only the planes, then the
    rows, that hold a non-zero voxel.
    """
    b = _as_unsigned(np.asarray(block))
    zs = _nonzero_span(_plane_maxima(b))
    if zs is None:
        return None
    sub = b[zs]
    ys = _nonzero_span(sub.max(axis=(0, 2, 3)))
    xs = _nonzero_span(sub[:, ys].max(axis=0).max(axis=0).max(axis=1))  # outer axes first: fast
    return zs, ys, xs


def _interleaved(layers):
    """The (Z, Y, X, L) array whose channels are ``layers`` (L, Z, Y, X) when they are stored
    interleaved (a .seg.nrrd read by SimpleITK), else None."""
    view = np.moveaxis(layers, 0, -1)
    return view if view.flags.c_contiguous else None


def _boxes_of_layer(crop, labels, offset):
    """{label: box of the grid} of ``labels`` in ``crop`` (Z, Y, X), a part starting at ``offset``.

    A few labels: one comparison and :func:`occupied_box` per label (NumPy only).  Many labels:
    one labelled-object scan of the crop for all of them (scipy.ndimage, imported only then).
    """
    top = max(labels)
    if crop.dtype.kind in "ui" and len(labels) > _FEW_LABELS and min(labels) > 0 and top <= _MAX_SCANNED_LABEL:
        from scipy.ndimage import find_objects  # lazy: scipy.ndimage costs ~0.1-0.3 s to import

        found = find_objects(np.ascontiguousarray(crop), max_label=top)
        local = {v: (found[v - 1] if 0 < v <= len(found) else None) for v in labels}
    else:
        local = {v: occupied_box((crop == v)[..., np.newaxis]) for v in labels}
    return {v: None if box is None else tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, offset))
            for v, box in local.items()}


def label_boxes(layers, wanted):
    """Bounding boxes of labels of segmentation layers.

    Parameters
    ----------
    layers : (L, Z, Y, X) ndarray of int (or bool), the layers of a Segmentation.
    wanted : iterable of (layer index, label value) pairs.

    Returns
    -------
    dict {(layer, label): tuple of 3 slices (z, y, x), or None when the label is absent}
    """
    return segment_boxes(layers, wanted)[0]


def segment_boxes(layers, wanted):
    """:func:`label_boxes`, and the compact copy of the layers it worked on.

    Layers interleaved in memory (a .seg.nrrd) whose occupied box is at most half the grid are
    copied once, box only, into C-contiguous memory (L, z, y, x): each label's box is then found
    there (contiguous comparisons), and the copy serves the segments' masks afterwards.

    Returns
    -------
    (boxes, compact) : boxes as :func:`label_boxes`; compact is (box, (L, z, y, x) array) or None.
    """
    by_layer = {}
    for layer, label in wanted:
        by_layer.setdefault(int(layer), set()).add(int(label))
    if not by_layer:
        return {}, None
    raw = _interleaved(layers)
    compact = None
    if raw is not None:  # the box of all layers holds each layer's labels
        union = occupied_box(raw)
        boxes = {ly: union for ly in by_layer}
        interleaved = layers.shape[0] > 1 and not layers[0].flags.c_contiguous  # (one layer is contiguous already)
        if interleaved and union is not None and np.prod([s.stop - s.start for s in union]) * 2 <= np.prod(layers.shape[1:]):
            compact = (union, np.ascontiguousarray(layers[(slice(None),) + union]))
    else:
        boxes = {ly: occupied_box(layers[ly][..., np.newaxis]) for ly in by_layer}
    out = {}
    for ly, labels in by_layer.items():
        if 0 in labels:  # label 0 is the background: its box is not within the occupied one
            labels = labels - {0}
            out[(ly, 0)] = _boxes_of_layer(layers[ly], [0], [0, 0, 0])[0]
        if not labels:
            continue
        box = boxes[ly]
        if box is None:
            out.update({(ly, v): None for v in labels})
            continue
        crop = compact[1][ly] if compact is not None else layers[ly][box]
        found = _boxes_of_layer(crop, sorted(labels), [s.start for s in box])
        out.update({(ly, v): b for v, b in found.items()})
    return out, compact
