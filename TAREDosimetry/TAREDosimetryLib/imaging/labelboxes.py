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

import numpy as np

__all__ = ["occupied_box", "label_boxes"]

#: Largest label value found by a labelled-object scan (it keeps one entry per value up to the
#: largest); layers with larger label values are scanned label by label.
_MAX_SCANNED_LABEL = 1 << 16
#: Up to this many labels in a layer, each is found by its own comparison (NumPy only).
_FEW_LABELS = 8


def _nonzero_span(projection):
    idx = np.flatnonzero(projection)
    return None if idx.size == 0 else slice(int(idx[0]), int(idx[-1]) + 1)


def _as_unsigned(a):
    """``a`` with non-zero exactly where it was (signed values viewed as unsigned, bool kept)."""
    if a.dtype.kind == "i":
        return a.view(a.dtype.str.replace("i", "u"))
    return a


def occupied_box(block):
    """Box (z, y, x slices) of the voxels of ``block`` (Z, Y, X, C) non-zero in any channel; None when all zero.

    The first reduction reads the whole array once; the next two read only the planes, then the
    rows, that hold a non-zero voxel.
    """
    b = _as_unsigned(np.asarray(block))
    zs = _nonzero_span(b.max(axis=(1, 2, 3)))
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
    by_layer = {}
    for layer, label in wanted:
        by_layer.setdefault(int(layer), set()).add(int(label))
    if not by_layer:
        return {}
    raw = _interleaved(layers)
    if raw is not None:  # the box of all layers holds each layer's labels
        union = occupied_box(raw)
        boxes = {ly: union for ly in by_layer}
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
        found = _boxes_of_layer(layers[ly][box], sorted(labels), [s.start for s in box])
        out.update({(ly, v): b for v, b in found.items()})
    return out
