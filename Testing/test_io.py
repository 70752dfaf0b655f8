"""Readers: images (NIfTI, NRRD, MHA, DICOM series), segmentations (.seg.nrrd, label maps, mask folders)."""

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_array_equal

from TAREDosimetryLib import GeometryError, InputError
from TAREDosimetryLib import imaging


def _image(arr, spacing=(2.0, 3.0, 4.0), origin=(10.0, -5.0, 7.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_read_image_formats_keep_values_and_geometry(tmp_path, suffix):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = str(tmp_path / f"img{suffix}")
    sitk.WriteImage(_image(arr), path)
    v = imaging.read_image(path)
    assert v.array.dtype == np.float32 and v.shape == (4, 5, 6)
    assert_array_equal(v.array, arr)
    assert v.spacing_mm == pytest.approx((2.0, 3.0, 4.0))
    assert v.origin_mm == pytest.approx((10.0, -5.0, 7.0), abs=1e-4)
    assert v.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, -1))


def test_read_dicom_series_folder(tmp_path):
    arr = np.random.default_rng(0).integers(0, 1000, (4, 8, 9)).astype(np.int16)
    vol = _image(arr, (2.0, 2.0, 3.0), (10.0, 20.0, 30.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for i in range(vol.GetDepth()):
        s = vol[:, :, i]
        pos = "\\".join(str(c) for c in vol.TransformIndexToPhysicalPoint((0, 0, i)))
        for k, val in (("0008|0060", "PT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.91"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.92"),
                       ("0020|0032", pos), ("0020|0013", str(i)), ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0054|1001", "BQML")):
            s.SetMetaData(k, val)
        writer.SetFileName(str(tmp_path / f"{i}.dcm"))
        writer.Execute(s)
    v = imaging.read_image(str(tmp_path))
    assert_array_equal(v.array, arr)
    assert v.spacing_mm == pytest.approx((2.0, 2.0, 3.0))
    assert v.origin_mm == pytest.approx((10.0, 20.0, 30.0))
    assert v.unit == "BQML"


def test_missing_unreadable_2d_and_4d_images(tmp_path):
    with pytest.raises(InputError, match="file not found: .*nope.nrrd"):
        imaging.read_image(str(tmp_path / "nope.nrrd"), what="SPECT image")
    bad = tmp_path / "garbage.nrrd"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="SPECT image: cannot read .*garbage.nrrd"):
        imaging.read_image(str(bad), what="SPECT image")
    flat = str(tmp_path / "flat.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.float32)), flat)
    with pytest.raises(GeometryError, match="2-D .* a 3-D image is expected"):
        imaging.read_image(flat)
    four = str(tmp_path / "four.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32)), four)
    with pytest.raises(InputError, match="4-D|3-D image is expected|components"):
        imaging.read_image(four)
    empty_dir = tmp_path / "emptydir"
    empty_dir.mkdir()
    with pytest.raises(InputError, match="holds no DICOM series|is an empty folder"):
        imaging.read_image(str(empty_dir))


def _write_seg_nrrd(path, layers, segments, spacing=(1.0, 2.0, 3.0)):
    arr = np.moveaxis(np.asarray(layers, np.uint8), 0, -1)  # (z, y, x, L)
    img = sitk.GetImageFromArray(arr, isVector=True)
    img.SetSpacing(spacing)
    for i, (name, layer, value) in enumerate(segments):
        for k, v in (("Name", name), ("ID", f"Segment_{i}"), ("Layer", str(layer)), ("LabelValue", str(value)), ("Color", "0.2 0.4 0.6")):
            img.SetMetaData(f"Segment{i}_{k}", v)
    sitk.WriteImage(img, str(path), True)


def test_seg_nrrd_shared_layers_and_overlap(tmp_path):
    layers = np.zeros((2, 5, 6, 7), np.uint8)
    layers[0, 1:3, 1:3, 1:3] = 1  # liver (layer 0 value 1)
    layers[0, 4, 4, 4] = 2  # lesion b shares layer 0
    layers[1, 2:4, 2:4, 2:4] = 1  # Tumor 1 overlaps the liver on layer 1
    path = tmp_path / "case.seg.nrrd"
    _write_seg_nrrd(path, layers, [("liver", 0, 1), ("Tumor 1", 1, 1), ("lesion b", 0, 2)])
    seg = imaging.read_segmentation(str(path))
    assert seg.names == ["liver", "Tumor 1", "lesion b"]
    assert seg.voxel_count("liver") == 8 and seg.voxel_count("Tumor 1") == 8 and seg.voxel_count("lesion b") == 1
    assert np.count_nonzero(seg.mask("liver") & seg.mask("Tumor 1")) == 1  # overlapping across layers
    assert seg.info("Tumor 1").color == pytest.approx((0.2, 0.4, 0.6))
    assert seg.grid.spacing_mm == pytest.approx((1.0, 2.0, 3.0))


def test_single_layer_seg_nrrd(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[1:3, 1:3, 1:3] = 3
    img = sitk.GetImageFromArray(arr)
    img.SetMetaData("Segment0_Name", "Liver")
    img.SetMetaData("Segment0_LabelValue", "3")
    img.SetMetaData("Segment0_Layer", "0")
    path = str(tmp_path / "one.seg.nrrd")
    sitk.WriteImage(img, path, True)
    seg = imaging.read_segmentation(path)
    assert seg.names == ["Liver"] and seg.voxel_count("Liver") == 8


def test_label_map_with_json_table_sidecar_and_inline_names(tmp_path):
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 5
    lab[3, 4, 5] = 7
    path = str(tmp_path / "labels.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(lab), path)
    seg = imaging.read_segmentation(path)
    assert seg.names == ["label 5", "label 7"]
    (tmp_path / "labels.json").write_text(json.dumps({"5": "liver", "7": "lesion"}))
    assert imaging.read_segmentation(path).names == ["liver", "lesion"]
    assert imaging.read_segmentation(path, label_names="5=Liver,7=Tumour 1").names == ["Liver", "Tumour 1"]
    table = tmp_path / "table.json"
    table.write_text(json.dumps([{"value": 5, "name": "whole liver"}]))
    assert imaging.read_segmentation(path, label_names=str(table)).names == ["whole liver"]
    with pytest.raises(InputError, match="VALUE=NAME"):
        imaging.read_segmentation(path, label_names="liver")


def test_totalsegmentator_table_names_only_present_labels(data_dir):
    path = os.path.join(data_dir, "ct-liver-totalseg", "example_seg.nii.gz")
    if not os.path.isfile(path):
        pytest.skip("TotalSegmentator example not in the shared data")
    seg = imaging.read_segmentation(path, label_names="totalsegmentator")
    assert "liver" in seg.names and "lung_lower_lobe_left" in seg.names
    # TotalSegmentator data/README: liver ~1043 mL
    assert seg.voxel_count("liver") * seg.grid.voxel_volume_ml == pytest.approx(1043, rel=0.01)


def test_mask_folder_with_different_grids(tmp_path):
    a = np.zeros((6, 6, 6), np.uint8)
    a[1:5, 1:5, 1:5] = 1
    sitk.WriteImage(_image(a, (2, 2, 2), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), str(tmp_path / "liver.nii.gz"))
    b = np.zeros((12, 12, 12), np.uint8)  # finer grid, same physical box
    b[4:8, 4:8, 4:8] = 255
    sitk.WriteImage(_image(b, (1, 1, 1), (-0.5, -0.5, -0.5), (1, 0, 0, 0, 1, 0, 0, 0, 1)), str(tmp_path / "Tumor A.nrrd"))
    (tmp_path / "notes.txt").write_text("ignored")
    seg = imaging.read_segmentation(str(tmp_path))
    assert sorted(seg.names) == ["Tumor A", "liver"]
    assert seg.grid.spacing_mm == (1.0, 1.0, 1.0)  # the finest grid of the masks
    assert seg.voxel_count("Tumor A") == 64
    assert seg.voxel_count("liver") == 512  # 4x4x4 voxels of 2 mm = 8x8x8 voxels of 1 mm


def test_mask_folder_rejects_non_binary_mask(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(27, dtype=np.uint8).reshape(3, 3, 3)), str(tmp_path / "x.nrrd"))
    with pytest.raises(InputError, match="binary mask .* found 27 values"):
        imaging.read_segmentation(str(tmp_path))


@pytest.mark.parametrize("values, ok", [((0, 1), True), ((0, 255), True), ((7, 7), True), ((0, 0), True),
                                        ((1, 2), False), ((0, -1), False), ((-1, -1), True), ((0, 1, 2), False)])
def test_a_mask_is_binary_as_np_unique_would_count_it(tmp_path, values, ok):
    """Masks are checked in one pass (no sorted copy of each image): 0 and one other value, or one
    value alone; two non-zero values, or a negative value beside 0 (np.unique's [v, 0]), are refused."""
    a = np.zeros((3, 4, 5), np.int16)
    a.flat[: len(values)] = values
    if values[0] == values[-1] and values[0] != 0:
        a[:] = values[0]
    sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "m.nrrd"))
    if ok:
        assert imaging.read_segmentation(str(tmp_path)).names == ["m"]
    else:
        with pytest.raises(InputError, match=f"binary mask .* found {np.unique(a).size} values"):
            imaging.read_segmentation(str(tmp_path))


def test_a_mask_folder_is_read_one_mask_at_a_time(tmp_path):
    """40 disjoint masks of 48^3 voxels (each 0.44 MB as float32 once read): the folder is read with
    a peak of a few masks, not 40 (they were all held, as float32, until the last was read), and
    they share one layer."""
    import tracemalloc

    shape = (48, 48, 48)
    for k in range(40):
        m = np.zeros(shape, np.uint8)
        m.flat[k * 2000:(k * 2000) + 1500] = 1
        sitk.WriteImage(sitk.GetImageFromArray(m), str(tmp_path / f"s{k:02d}.nrrd"))
    tracemalloc.start()
    try:
        seg = imaging.read_segmentation(str(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one = np.prod(shape) * 4
    assert seg.layers.shape[0] == 1 and len(seg.names) == 40
    assert peak < 8 * one, peak / one
    assert seg.voxel_count("s07") == 1500


def test_segmentation_missing_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="segmentation: file not found"):
        imaging.read_segmentation(str(tmp_path / "none.seg.nrrd"))
    with pytest.raises(InputError, match="no mask images"):
        imaging.read_segmentation(str(tmp_path))


def test_maa_seg_nrrd_layers_and_names(maa_paths):
    seg = imaging.read_segmentation(maa_paths[1])
    assert seg.names == ["gallbladder", "liver", "Tumor 1", "Tumor 2", "perfused volume", "whole liver normal", "perfused normal"]
    assert seg.layers.shape == (4, 161, 512, 512)
    assert seg.grid.spacing_mm == pytest.approx((0.976562, 0.976562, 2.5))


def test_write_image_round_trip(tmp_path):
    v = imaging.read_image  # noqa: F841 (keeps the name in scope for readers)
    from TAREDosimetryLib import Volume

    vol = Volume(np.random.default_rng(2).random((3, 4, 5)).astype(np.float32), (1.5, 2, 2.5), (1, 2, 3), (1, 0, 0, 0, -1, 0, 0, 0, -1))
    path = str(tmp_path / "d.nrrd")
    imaging.write_image(vol, path)
    back = imaging.read_image(path)
    assert_array_equal(back.array, vol.array)
    assert back.grid.same_as(vol.grid)


def test_builtin_totalsegmentator_table_keeps_only_labels_present_in_the_map(tmp_path):
    # The built-in table names 14 classes; a scan holds a few.  Absent classes used to become empty
    # segments, and the run then stopped ("segment(s) ... are empty") on any ordinary TotalSegmentator map.
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 5
    lab[3, 4, 5] = 11
    path = str(tmp_path / "seg.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(lab), path)
    seg = imaging.read_segmentation(path, label_names="totalsegmentator")
    assert seg.names == ["liver", "lung_lower_lobe_left"]
    assert all(seg.voxel_count(n) > 0 for n in seg.names)


def test_builtin_table_finds_the_present_labels_without_sorting_the_map(tmp_path, monkeypatch):
    """The labels present are found without np.unique of the whole map (a sorted copy of a
    total-body label map: 1 byte a voxel more at the peak)."""
    lab = np.zeros((6, 7, 8), np.uint8)
    lab[1:3, 1:3, 1:3] = 5
    path = str(tmp_path / "seg.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(lab), path)

    def no_unique(*a, **k):
        raise AssertionError("np.unique of the label map")

    monkeypatch.setattr(np, "unique", no_unique)
    assert imaging.read_segmentation(path, label_names="totalsegmentator").names == ["liver"]


def test_label_values_of_big_endian_maps():
    """A label map in big-endian byte order (as read by some NIfTI readers) gives its own values."""
    from TAREDosimetryLib.imaging.segmentation import Segmentation, label_values
    from TAREDosimetryLib.volume import Grid

    for dtype in (">u2", ">i2", "<u2", ">u1"):
        lab = np.array([[[5, 0, 300 if "1" not in dtype else 7]]], dtype)
        assert label_values(lab) == {0, 5, int(lab[0, 0, 2])}, dtype
    seg = Segmentation.from_labelmap(np.array([[[5, 0]]], ">u2"), Grid((1, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), None)
    assert seg.names == ["label 5"] and seg.voxel_count("label 5") == 1 and not seg.notes


def test_label_values_above_65535_are_not_wrapped_onto_other_labels():
    from TAREDosimetryLib.imaging.segmentation import Segmentation
    from TAREDosimetryLib.volume import Grid

    lab = np.zeros((4, 4, 4), np.int32)
    lab[0, 0, 0] = 70000  # 70000 mod 65536 = 4464
    lab[1, 1, 1:3] = 4464
    seg = Segmentation.from_labelmap(lab, Grid((4, 4, 4)), None)
    assert seg.voxel_count("label 70000") == 1
    assert seg.voxel_count("label 4464") == 2


def test_two_mask_files_of_one_name_are_refused_naming_both(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[1:3, 1:3, 1:3] = 1
    for f in ("liver.nrrd", "liver.nii.gz"):
        sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / f))
    with pytest.raises(InputError, match=r"liver.nii.gz and liver.nrrd would both be segment 'liver'"):
        imaging.read_segmentation(str(tmp_path))
