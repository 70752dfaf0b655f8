"""The whole liver and the reference region, whatever the segment format.

A label map cannot let a tumour voxel also be liver: its liver label is the liver without the
tumours.  The whole liver (reference region 'liver' of relative calibration, and the whole-liver
row) is the union of the liver parts and the tumours in them, so the same anatomy given as
overlapping masks or as a label map gives the same doses.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from TAREDosimetryLib import DosimetryParams, InputError, Segmentation, Volume, run_case
from TAREDosimetryLib.pipeline import DERIVED_NORMAL_LIVER, WHOLE_LIVER_ENTRY
from TAREDosimetryLib.volume import Grid

K = 49.67


def anatomy():
    """(activity Volume on a 4 mm grid, segment grid, liver, tumour A, tumour B masks on a 1.5 mm grid)."""
    seg_grid = Grid((30, 40, 44), (1.5, 1.5, 1.5), (0.0, 0.0, 0.0))
    z, y, x = np.indices(seg_grid.shape)
    liver = ((x - 22) / 18.0) ** 2 + ((y - 20) / 16.0) ** 2 + ((z - 15) / 12.0) ** 2 < 1
    tumour_a = ((x - 14) ** 2 + (y - 18) ** 2 + (z - 14) ** 2 < 25) & liver
    tumour_b = (x - 30) ** 2 + (y - 24) ** 2 + (z - 16) ** 2 < 16
    image = Grid((13, 17, 18), (4.0, 4.0, 4.0), (-2.0, -2.5, -1.0))
    rng = np.random.default_rng(11)
    counts = rng.gamma(3.0, 5.0, size=image.shape).astype(np.float32)
    return Volume(counts, grid=image), seg_grid, liver, tumour_a, tumour_b


def overlapping_and_label_map():
    activity, grid, liver, a, b = anatomy()
    overlapping = Segmentation.from_masks({"liver": liver | b, "tumour A": a, "tumour B": b}, grid)
    label = np.zeros(grid.shape, np.uint8)
    label[liver | b] = 1
    label[a] = 2  # tumours on top
    label[b] = 3
    label_map = Segmentation.from_labelmap(label, grid, {1: "liver", 2: "tumour A", 3: "tumour B"})
    return activity, overlapping, label_map


@pytest.mark.parametrize("sampling", ["overlap", "nearest"])
def test_label_map_and_overlapping_masks_give_the_same_doses(sampling):
    activity, overlapping, label_map = overlapping_and_label_map()
    p = DosimetryParams(administered_activity_gbq=1.8, residual_fraction=0.02, lung_shunt_fraction=0.07, sampling=sampling)
    a = run_case(activity, overlapping, params=p)
    b = run_case(activity, label_map, params=p)
    # The overlapping liver segment holds the tumours: it is the whole liver.  The label map's
    # liver label does not: the whole liver is added as a derived row.
    assert WHOLE_LIVER_ENTRY not in [s.name for s in a.segments]
    pairs = [("liver", WHOLE_LIVER_ENTRY), ("tumour A", "tumour A"), ("tumour B", "tumour B"),
             (DERIVED_NORMAL_LIVER, DERIVED_NORMAL_LIVER)]
    for na, nb in pairs:
        ma, mb = a.segment(na).metrics, b.segment(nb).metrics
        for key in ("mean_gy", "activity_gbq", "volume_ml", "mass_g", "d70_gy", "v100_pct", "eud_gy"):
            assert_allclose(mb[key], ma[key], rtol=1e-6, err_msg=f"{na} {key}")
    # the label's liver is the liver without the tumours: the derived normal liver
    assert_allclose(b.segment("liver").metrics["mean_gy"], b.segment(DERIVED_NORMAL_LIVER).metrics["mean_gy"], rtol=1e-6)
    assert b.segment("liver").rules_by_role is False and b.segment(WHOLE_LIVER_ENTRY).role == "liver"
    assert b.inputs["whole_liver_segments"] == ["liver", "tumour A", "tumour B"]
    assert_allclose(b.segment(WHOLE_LIVER_ENTRY).metrics["activity_gbq"], 1.8 * 0.98 * 0.93, rtol=1e-6)


def test_reference_activity_and_shares_are_reported_not_an_inflated_image_total():
    activity, overlapping, _ = overlapping_and_label_map()
    p = DosimetryParams(administered_activity_gbq=2.0, residual_fraction=0.05, lung_shunt_fraction=0.1)
    r = run_case(activity, overlapping, params=p)
    s = r.summary
    assert_allclose(s["reference_activity_gbq"], 2.0 * 0.95 * 0.9, rtol=1e-12)
    assert s["reference_region_segments"] == "liver, tumour A, tumour B"
    assert "image_activity_gbq" not in s  # counts outside the reference region are not GBq that anyone measured
    counts_inside = s["reference_counts"]
    assert_allclose(s["counts_outside_reference_fraction"], 1 - counts_inside / s["image_total"], rtol=1e-9)
    assert 0.3 < s["counts_outside_reference_fraction"] < 0.9  # uniform noise fills this image
    assert_allclose(r.segment("liver").metrics["activity_pct"], 100.0, rtol=1e-6)
    shares = r.segment("tumour A").metrics["activity_pct"] + r.segment(DERIVED_NORMAL_LIVER).metrics["activity_pct"]
    assert_allclose(shares + r.segment("tumour B").metrics["activity_pct"], 100.0, rtol=1e-6)


def test_lobes_and_tumours_without_a_liver_segment_get_a_whole_liver_row():
    activity, grid, liver, a, b = anatomy()
    x = np.indices(grid.shape)[2]
    right, left = liver & (x < 22) & ~a, liver & (x >= 22) & ~b
    seg = Segmentation.from_masks({"right lobe": right, "left lobe": left, "tumour A": a, "tumour B": b}, grid)
    r = run_case(activity, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0))
    whole = r.segment(WHOLE_LIVER_ENTRY).metrics
    assert_allclose(whole["volume_ml"], (liver | b).sum() * grid.voxel_volume_ml, rtol=1e-9)
    assert_allclose(whole["activity_gbq"], 1.0, rtol=1e-6)


def test_a_tumour_away_from_the_liver_is_not_whole_liver_and_is_named():
    activity, grid, liver, a, _ = anatomy()
    far = np.zeros(grid.shape, bool)
    far[2:5, 2:5, 2:5] = True  # a corner of the image, far from the liver
    seg = Segmentation.from_masks({"liver": liver, "tumour A": a, "lung nodule": far}, grid)
    r = run_case(activity, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0), roles={"lung nodule": "tumor"})
    assert r.inputs["whole_liver_segments"] == ["liver", "tumour A"]
    assert any("'lung nodule'" in w and "not counted in the whole liver" in w for w in r.warnings)
    assert_allclose(r.segment("liver").metrics["activity_gbq"], 1.0, rtol=1e-6)


def test_reference_region_liver_needs_a_liver_part():
    activity, grid, _, a, b = anatomy()
    seg = Segmentation.from_masks({"tumour A": a, "tumour B": b}, grid)
    with pytest.raises(InputError, match="reference region 'liver' needs a segment with role liver"):
        run_case(activity, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0))


# -- dose method warnings and known limits ---------------------------------------------------------
@pytest.mark.parametrize("modality, words", [("pet", "DVK on a Y-90 PET"), ("spect", "DVK on a SPECT"), (None, "DVK on a PET or SPECT image")])
def test_dvk_on_a_pet_or_spect_image_is_warned_about(modality, words):
    activity, overlapping, _ = overlapping_and_label_map()
    p = DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0, method="dvk", device="cpu")
    r = run_case(activity, overlapping, params=p, inputs={"modality": modality} if modality else None)
    warning = [w for w in r.warnings if w.startswith("DVK on")]
    assert len(warning) == 1 and words in warning[0] and "Pasciak" in warning[0]
    r_ldm = run_case(activity, overlapping, params=p.replace(method="ldm"), inputs={"modality": "pet"})
    assert not any(w.startswith("DVK on") for w in r_ldm.warnings)


def test_report_known_limits_follow_the_dose_method_and_sampling():
    from TAREDosimetryLib.reporting.html import KNOWN_LIMITS, known_limits

    activity, overlapping, _ = overlapping_and_label_map()
    p = DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0)
    assert known_limits(run_case(activity, overlapping, params=p)) == list(KNOWN_LIMITS)
    dvk = known_limits(run_case(activity, overlapping, params=p.replace(method="dvk", device="cpu")))
    assert any("+32 %" in t and "-9 %" in t for t in dvk) and any("blurs twice" in t for t in dvk)
    dvk_ldm = known_limits(run_case(activity, overlapping, params=p.replace(method="dvk", device="cpu", dvk_lung_mode="ldm")))
    assert any("energy conserved" in t for t in dvk_ldm)
    nearest = known_limits(run_case(activity, overlapping, params=p.replace(sampling="nearest")))
    assert any("Point sampling ('nearest')" in t for t in nearest)


@pytest.mark.parametrize("seed", range(4))
def test_numpy_dilation_equals_scipy_binary_dilation(seed):
    from scipy import ndimage

    from TAREDosimetryLib.evaluation.liver import _dilated

    m = np.random.default_rng(seed).random((5, 7, 6)) < 0.15
    assert np.array_equal(_dilated(m), ndimage.binary_dilation(m))
