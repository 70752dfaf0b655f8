"""Segments from DICOM: RT Structure Set rasterisation against analytic shapes, DICOM SEG round trips.

Stated tolerances (1 x 1 x 2.5 mm CT lattice, contours on the CT slices, 128-point circles):
a 40 mm sphere within 1 % of 4/3 pi R^3; a ring with a hole within 2 % of pi (R^2 - r^2) h; a 3 mm
sphere kept, within 30 % of its contours' volume (area x slab), and a contour smaller than half a
pixel kept as one voxel.
"""

import json
import os

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_synth import circle, new_study, write_image_series, write_rtstruct  # noqa: E402
from TAREDosimetryLib import GeometryError, InputError, Volume  # noqa: E402
from TAREDosimetryLib.imaging.rtstruct import fill_polygons, read_rtstruct  # noqa: E402
from TAREDosimetryLib.imaging.segmentation_io import read_segmentation_with_source  # noqa: E402
from TAREDosimetryLib.volume import Grid  # noqa: E402

CT = Grid((40, 80, 80), (1.0, 1.0, 2.5), (-39.5, -39.5, -50.0))


def _slices_z(grid=CT):
    return grid.origin_mm[2] + grid.spacing_mm[2] * np.arange(grid.shape[0])


def _sphere(c, radius):
    return [circle(c[0], c[1], z, np.sqrt(radius**2 - (z - c[2]) ** 2)) for z in _slices_z() if abs(z - c[2]) < radius]


def _volume_ml(seg, name):
    return seg.voxel_count(name) * seg.grid.voxel_volume_ml


def _read(tmp_path, rois, reference=CT, name="rs.dcm", **kw):
    path = str(tmp_path / name)
    write_rtstruct(path, rois, **kw)
    return read_rtstruct(path, reference)


# -- the in-plane fill -------------------------------------------------------------------------
def test_fill_of_a_pixel_aligned_square_and_a_half_covered_pixel():
    square = np.array([[1.5, 1.5], [4.5, 1.5], [4.5, 3.5], [1.5, 3.5]])  # covers pixels i 2..4, j 2..3 exactly
    cover = fill_polygons([square], (6, 7))
    expected = np.zeros((6, 7))
    expected[2:4, 2:5] = 1
    np.testing.assert_allclose(cover, expected)
    half = np.array([[-0.5, -0.5], [0.0, -0.5], [0.0, 0.5], [-0.5, 0.5]])
    assert fill_polygons([half], (2, 2))[0, 0] == pytest.approx(0.5)


def test_even_odd_fill_makes_holes_and_islands_whatever_the_winding():
    outer = circle(0, 0, 0, 10)[:, :2] + 20
    hole = circle(0, 0, 0, 5, clockwise=True)[:, :2] + 20
    island = circle(0, 0, 0, 2)[:, :2] + 20
    cover = fill_polygons([outer, hole, island], (41, 41))
    assert cover[20, 20] == 1.0 and cover[20, 23] == 0.0 and cover[20, 27] == 1.0 and cover[20, 32] == 0.0
    ring_area = np.pi * (10**2 - 5**2 + 2**2)
    assert cover.sum() == pytest.approx(ring_area, rel=0.01)


# -- analytic shapes ---------------------------------------------------------------------------
def test_sphere_volume_within_1_percent(tmp_path):
    radius, centre = 20.0, (0.3, -0.4, -10.0)
    seg = _read(tmp_path, [("sphere", (255, 0, 0), _sphere(centre, radius))])
    assert _volume_ml(seg, "sphere") == pytest.approx(4 / 3 * np.pi * radius**3 / 1000, rel=0.01)
    assert seg.info("sphere").color == pytest.approx((1.0, 0.0, 0.0))
    assert seg.grid.spacing_mm == CT.spacing_mm  # the CT's voxels


def test_ring_with_a_hole_volume_within_2_percent_and_the_hole_empty(tmp_path):
    zs = [z for z in _slices_z() if -10 <= z < 10]
    contours = [circle(1.0, 2.0, z, 15.0) for z in zs] + [circle(1.0, 2.0, z, 7.0) for z in zs]
    seg = _read(tmp_path, [("ring", (0, 255, 0), contours)])
    expected = np.pi * (15.0**2 - 7.0**2) * len(zs) * 2.5 / 1000
    assert _volume_ml(seg, "ring") == pytest.approx(expected, rel=0.02)
    k = int(np.argmin(np.abs(_slices_z(seg.grid) - zs[2])))
    ijk = np.rint(seg.grid.lps_to_ijk @ np.array([1.0, 2.0, zs[2], 1.0])).astype(int)
    mask = seg.mask("ring")
    assert not mask[k, ijk[1], ijk[0]]  # the hole's centre
    assert mask[k, ijk[1], ijk[0] + 11]  # in the ring


def test_a_3mm_structure_is_kept_and_a_sub_pixel_one_is_one_voxel(tmp_path):
    z0 = float(_slices_z()[20])
    small = [circle(0.2, 0.1, z0, 1.5, n=64)]  # a 3 mm sphere: one contour, on its equator
    tiny = [np.array([[10.1, 10.1, z0], [10.5, 10.1, z0], [10.5, 10.5, z0], [10.1, 10.5, z0]])]  # 0.4 mm square
    seg = _read(tmp_path, [("3 mm", (0, 0, 255), small), ("tiny", (9, 9, 9), tiny)])
    contour_volume = np.pi * 1.5**2 * 2.5 / 1000
    assert 0 < _volume_ml(seg, "3 mm") == pytest.approx(contour_volume, rel=0.30)
    assert seg.voxel_count("tiny") == 1
    assert any("'tiny'" in n and "smaller than half a voxel" in n for n in seg.notes)


def test_a_structure_beyond_the_ct_edge_is_not_cut(tmp_path):
    radius, centre = 12.0, (35.0, 0.0, -10.0)  # half outside the CT's x range (-40..40)
    seg = _read(tmp_path, [("edge", (255, 255, 0), _sphere(centre, radius))])
    assert _volume_ml(seg, "edge") == pytest.approx(4 / 3 * np.pi * radius**3 / 1000, rel=0.015)


def test_contours_every_other_slice_fill_the_slices_between(tmp_path):
    zs = _slices_z()[10:30:2]
    seg = _read(tmp_path, [("box", (1, 2, 3), [np.array([[-10, -10, z], [10, -10, z], [10, 10, z], [-10, 10, z]]) for z in zs])])
    assert _volume_ml(seg, "box") == pytest.approx(20 * 20 * len(zs) * 5.0 / 1000, rel=0.01)


def test_without_a_ct_the_contours_get_their_own_1mm_lattice(tmp_path):
    radius, centre = 20.0, (0.3, -0.4, -10.0)
    seg = _read(tmp_path, [("sphere", (255, 0, 0), _sphere(centre, radius))], reference=None)
    assert seg.grid.spacing_mm == pytest.approx((1.0, 1.0, 2.5))
    assert _volume_ml(seg, "sphere") == pytest.approx(4 / 3 * np.pi * radius**3 / 1000, rel=0.01)


def test_oblique_contours_and_a_foreign_frame_of_reference_are_refused(tmp_path):
    tilted = circle(0, 0, 0, 10)
    tilted[:, 2] = tilted[:, 0] * 0.5
    with pytest.raises(GeometryError, match="not parallel to the slices"):
        _read(tmp_path, [("tilted", (1, 1, 1), [tilted])])
    path = str(tmp_path / "rs2.dcm")
    write_rtstruct(path, [("s", (1, 1, 1), _sphere((0, 0, 0), 5))])
    with pytest.raises(GeometryError, match="frame of reference .* is not the CT's"):
        read_rtstruct(path, CT, reference_for_uid="1.2.3.999")


def test_rois_without_closed_contours_are_left_out_with_a_note(tmp_path):
    seg = _read(tmp_path, [("sphere", (255, 0, 0), _sphere((0, 0, 0), 8)), ("empty", (0, 0, 0), [])])
    assert seg.names == ["sphere"] and any("'empty' has no closed contours" in n for n in seg.notes)
    with pytest.raises(InputError, match="holds no closed planar contours"):
        _read(tmp_path, [("empty", (0, 0, 0), [])], name="none.dcm")


# -- end to end: RTSTRUCT on a DICOM CT, SEG round trip ------------------------------------------
def _ct_and_rtstruct(tmp_path):
    study = new_study()
    ct_paths = write_image_series(str(tmp_path / "ct"), np.full(CT.shape, 40.0), CT.spacing_mm, CT.origin_mm, study=study,
                                  slopes=[1.0] * CT.shape[0])[0]
    ct_series = pydicom.dcmread(ct_paths[0]).SeriesInstanceUID
    rois = [("Liver", (200, 120, 80), _sphere((0, 0, -10), 25)), ("Tumor 1", (255, 0, 0), _sphere((8, 5, -10), 8))]
    os.makedirs(tmp_path / "rs")
    write_rtstruct(str(tmp_path / "rs" / "rtstruct.dcm"), rois, study=study, referenced_series_uid=ct_series)
    return study, str(tmp_path / "ct"), str(tmp_path / "rs")


def test_rtstruct_folder_is_drawn_on_the_dicom_ct(tmp_path):
    from TAREDosimetryLib.imaging import read_image

    study, ct, rs = _ct_and_rtstruct(tmp_path)
    ct_vol = read_image(ct, "CT image")
    seg, series = read_segmentation_with_source(rs, reference=ct_vol.grid, reference_for_uid=study["FrameOfReferenceUID"])
    assert series.modality == "RTSTRUCT" and seg.names == ["Liver", "Tumor 1"]
    assert _volume_ml(seg, "Tumor 1") == pytest.approx(4 / 3 * np.pi * 8**3 / 1000, rel=0.02)
    assert seg.info("Tumor 1").color == pytest.approx((1.0, 0.0, 0.0))


def test_run_with_an_rtstruct_gives_the_doses_of_the_same_shapes_as_masks(tmp_path):
    from TAREDosimetryLib.cli import main
    from TAREDosimetryLib.imaging.images import write_image

    study, ct, rs = _ct_and_rtstruct(tmp_path)
    counts = np.ones(CT.shape, np.float32)
    spect = str(tmp_path / "spect.nrrd")
    write_image(Volume(counts * 10, grid=CT), spect)
    out = tmp_path / "out"
    assert main(["run", "--spect", spect, "--ct", ct, "--segmentation", rs, "--administered-activity-gbq", "1.0", "--lung-shunt-fraction", "0",
                 "--out", str(out), "--no-report", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    seg = {s["name"]: s for s in m["segments"]}
    assert seg["Tumor 1"]["role"] == "tumor" and seg["Liver"]["role"] == "liver"
    assert seg["Tumor 1"]["mean_gy"] == pytest.approx(seg["Liver"]["mean_gy"], rel=1e-3)  # uniform uptake
    assert m["inputs"]["segmentation_dicom"]["sop_class"] == "RT Structure Set"


def test_dicom_seg_round_trip_keeps_masks_names_colours_and_overlaps(tmp_path):
    pytest.importorskip("highdicom")
    from conftest import box_case
    from TAREDosimetryLib import DosimetryParams, run_case
    from TAREDosimetryLib.imaging.dicomseg import read_dicom_seg
    from TAREDosimetryLib.reporting.dicomref import dicom_context
    from TAREDosimetryLib.reporting.dicomseg import write_dicom_seg
    from TAREDosimetryLib.reporting.rtdose import write_rtdose

    act, seg = box_case()
    result = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0))
    ctx = dicom_context(None)
    rd = write_rtdose(result.dose_gy, str(tmp_path / "dose.dcm"), ctx)
    path = str(tmp_path / "segments.dcm")
    ds = write_dicom_seg(seg, result, path, ctx, rtdose=rd)
    assert ds.SegmentsOverlap == "YES" and ds.StudyInstanceUID == ctx.study["StudyInstanceUID"]
    back = read_dicom_seg(path)
    assert back.names == seg.names
    for name in seg.names:
        assert back.info(name).color == pytest.approx(seg.info(name).color, abs=0.02)
        pts_a = _physical_points(seg, name)
        pts_b = _physical_points(back, name)
        np.testing.assert_allclose(np.sort(pts_a, axis=0), np.sort(pts_b, axis=0), atol=1e-3)


def _physical_points(seg, name):
    k, j, i = np.nonzero(seg.mask(name))
    return (np.c_[i, j, k, np.ones(len(i))] @ seg.grid.ijk_to_lps.T)[:, :3]


def test_one_export_folder_for_every_input_the_readme_example(tmp_path):
    """PET, CT and RTSTRUCT of one study in one folder: each input takes its own series."""
    from dicom_synth import pet_attributes, radiopharmaceutical
    from TAREDosimetryLib.cli import main

    study, ct, rs = _ct_and_rtstruct(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    os.rename(ct, export / "ct")
    os.rename(rs, export / "rs")
    pet = np.full(CT.shape, 1.6e5)
    write_image_series(str(export / "pet"), pet, CT.spacing_mm, CT.origin_mm, modality="PT", study=study, series_number=3,
                       attributes=pet_attributes(radiopharm=radiopharmaceutical(start_datetime="20240502143000")))
    out = tmp_path / "case3"
    assert main(["run", "--pet", str(export), "--ct", str(export), "--segmentation", str(export), "--out", str(out),
                 "--no-report", "--rtdose", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["activity_dicom"]["source"]["modality"] == "PT" and m["inputs"]["ct_dicom"]["modality"] == "CT"
    assert m["inputs"]["segmentation_dicom"]["sop_class"] == "RT Structure Set"
    assert m["parameters"]["hours_since_administration"] == pytest.approx(19.75)
    dose = pydicom.dcmread(out / "dose.dcm")
    assert dose.FrameOfReferenceUID == study["FrameOfReferenceUID"] and len(dose.ReferencedImageSequence) == CT.shape[0]
