"""Bounding boxes of every segment in one pass equal the per-segment definition."""

import numpy as np
import pytest

from TAREDosimetryLib import Segmentation
from TAREDosimetryLib.imaging.labelboxes import label_boxes, occupied_box
from TAREDosimetryLib.imaging.segmentation import SegmentInfo
from TAREDosimetryLib.volume import Grid


def _definition(layer, label):
    m = layer == label
    box = []
    for axis in range(3):
        idx = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
        if idx.size == 0:
            return None
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def _random_layers(rng, n_layers, shape, labels, interleaved, dtype=np.uint8):
    raw = np.zeros(shape + (n_layers,), dtype)
    for ly in range(n_layers):
        for v in labels:
            lo = [int(rng.integers(0, n - 2)) for n in shape]
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape)]
            block = raw[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2], ly]
            block[rng.random(block.shape) < 0.3] = v
    layers = np.moveaxis(raw, -1, 0)
    return layers if interleaved else np.ascontiguousarray(layers)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_label_boxes_equal_the_box_of_each_mask(seed, interleaved, split, monkeypatch):
    import TAREDosimetryLib.imaging.labelboxes as lb

    if split:  # the first pass split between 3 threads (uneven parts of planes)
        monkeypatch.setattr(lb, "_SPLIT_BYTES", 0)
        monkeypatch.setenv("TARE_DOSIMETRY_THREADS", "3")
    rng = np.random.default_rng(seed)
    layers = _random_layers(rng, 3, (17, 19, 23), (1, 2, 5, 7), interleaved)
    wanted = [(ly, v) for ly in range(3) for v in (1, 2, 3, 5, 7, 0)]  # 3: absent; 0: background
    got = label_boxes(layers, wanted)
    for ly, v in wanted:
        assert got[(ly, v)] == _definition(layers[ly], v), (ly, v)


def test_label_boxes_of_large_label_values_and_signed_layers():
    layers = np.zeros((1, 6, 7, 8), np.int32)
    layers[0, 1:3, 2:5, 3] = 100_000  # above the labelled-object scan: one mask per label
    layers[0, 4, 6, 7] = 2
    got = label_boxes(layers, [(0, 100_000), (0, 2), (0, 9)])
    assert got[(0, 100_000)] == (slice(1, 3), slice(2, 5), slice(3, 4))
    assert got[(0, 2)] == (slice(4, 5), slice(6, 7), slice(7, 8))
    assert got[(0, 9)] is None


def test_occupied_box_of_empty_and_full_blocks():
    assert occupied_box(np.zeros((3, 4, 5, 2), np.uint8)) is None
    a = np.zeros((3, 4, 5, 2), bool)
    a[2, 0, 4, 1] = True
    assert occupied_box(a) == (slice(2, 3), slice(0, 1), slice(4, 5))


def test_segmentation_boxes_are_shared_by_subsets_and_kept_by_new_segments():
    rng = np.random.default_rng(3)
    layers = _random_layers(rng, 2, (9, 10, 11), (1, 4), interleaved=True)
    infos = [SegmentInfo(f"s{ly}{v}", layer=ly, label_value=v) for ly in range(2) for v in (1, 4)]
    seg = Segmentation(layers, Grid((9, 10, 11), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), infos)
    sub = seg.subset(["s04"])
    for s in infos:
        assert seg.bbox(s.name) == _definition(layers[s.layer], s.label_value)
    assert sub.bbox("s04") == seg.bbox("s04")
    extra = np.zeros((9, 10, 11), bool)
    extra[3:5, 1, 2:9] = True
    more = seg.with_segment("extra", extra)
    assert more.bbox("extra") == (slice(3, 5), slice(1, 2), slice(2, 9))
    assert more.bbox("s11") == seg.bbox("s11")


def test_many_labels_use_one_scan_and_agree_with_the_definition(monkeypatch):
    import TAREDosimetryLib.imaging.labelboxes as lb

    rng = np.random.default_rng(11)
    layers = _random_layers(rng, 1, (15, 16, 17), tuple(range(1, 13)), interleaved=False)
    wanted = [(0, v) for v in range(1, 14)]
    for few in (0, 100):  # labelled-object scan; one comparison per label
        monkeypatch.setattr(lb, "_FEW_LABELS", few)
        got = label_boxes(layers, wanted)
        for key in wanted:
            assert got[key] == _definition(layers[0], key[1]), (few, key)


@pytest.mark.parametrize("half", [True, False])
def test_the_copy_the_boxes_were_found_in_serves_the_masks(half):
    """Interleaved layers whose occupied box is at most half the grid: the boxes are found in a
    compact copy of that box, which the masks then read (same masks as from the layers)."""
    from TAREDosimetryLib.imaging.labelboxes import segment_boxes

    rng = np.random.default_rng(5)
    raw = np.zeros((12, 14, 16, 2), np.uint8)
    box = (slice(2, 6), slice(3, 9), slice(1, 15)) if half else (slice(0, 12), slice(0, 14), slice(1, 15))
    part = raw[box]
    part[..., 0][rng.random(part.shape[:3]) < 0.3] = 3
    part[..., 1][rng.random(part.shape[:3]) < 0.3] = 1
    layers = np.moveaxis(raw, -1, 0)
    found, compact = segment_boxes(layers, [(0, 3), (1, 1)])
    assert found == {(0, 3): _definition(layers[0], 3), (1, 1): _definition(layers[1], 1)}
    assert (compact is not None) == half
    infos = [SegmentInfo("a", layer=0, label_value=3), SegmentInfo("b", layer=1, label_value=1)]
    seg = Segmentation(layers, Grid((12, 14, 16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), infos)
    for s in infos:
        b = seg.bbox(s.name)
        assert np.array_equal(seg.mask(s.name, b), layers[s.layer][b] == s.label_value)
    if half:
        assert seg._compact_layers()[0] == compact[0] and np.array_equal(seg._compact_layers()[1], compact[1])


def test_a_label_map_of_one_layer_is_not_copied():
    """A label map (one layer) is contiguous already: its boxes are found in place, no copy is made
    (a copy of a 1e9-voxel label map's occupied box would add hundreds of MB)."""
    from TAREDosimetryLib.imaging.labelboxes import segment_boxes

    layers = np.zeros((1, 10, 12, 14), np.uint8)
    layers[0, 2:4, 3:5, 4:6] = 2
    found, compact = segment_boxes(layers, [(0, 2)])
    assert found == {(0, 2): (slice(2, 4), slice(3, 5), slice(4, 6))} and compact is None
