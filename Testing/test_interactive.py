"""Node-free logic of the Slicer Plan and Compare sections: the activity slider's steps, the
recommended activity, the slider range, the compare table rows, and the RAS/LPS transform matrices."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import box_case

from TAREDosimetryLib import DosimetryParams, mrmlconvert as mc, run_case
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.planning.interactive import PlanExplorer, compare_rows, slider_range_gbq
from TAREDosimetryLib.planning.prescription import build_prescription
from TAREDosimetryLib.planning.registration import matrix_lps, transform_from_matrix_lps
from TAREDosimetryLib.planning.voxel import VoxelDoseModel


@pytest.fixture(scope="module")
def explorer():
    counts, seg = box_case()
    model = VoxelDoseModel(run_case(counts, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05)))
    return PlanExplorer(model, build_prescription("resin", tumor_target_gy=100, normal_liver_limit_gy=40))


def test_slider_steps_scale_the_doses_and_flip_the_status_at_the_recommended_activity(explorer):
    choice = explorer.recommend()
    a = choice.activity_gbq
    at = explorer.step(a)
    below, above = explorer.step(0.9 * a), explorer.step(1.1 * a)
    tumour = next(r for r in at.rows if r["role"] == "tumor")
    assert tumour["mean_gy"] == pytest.approx(100, rel=1e-6) and at.segment_status["tumour"] == "PASS"
    assert below.segment_status["tumour"] == "FAIL" and below.overall == "FAIL" and "tumour mean dose" in below.failed_rules
    t_below = next(r for r in below.rows if r["role"] == "tumor")
    assert t_below["mean_gy"] == pytest.approx(90, rel=1e-6) and set(t_below) >= {"segment", "role", "mean_gy", "d70_gy", "v100_pct", "status"}
    assert above.segment_status["tumour"] == "PASS"


def test_overall_status_and_bad_activities(explorer):
    step = explorer.step(50.0)  # far above every limit
    assert step.overall == "FAIL" and any(s == "FAIL" for s in step.segment_status.values())
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises((InputError, ValueError)):
            explorer.step(bad)


def test_slider_range_brackets_the_recommended_activity():
    lo, hi, step = slider_range_gbq(2.345)
    assert lo < 2.345 < hi and step > 0 and (hi - lo) / step <= 2000
    assert slider_range_gbq(float("nan"))[1] > 0


def test_compare_rows_are_display_strings():
    d = {"segments": [{"name": "Tumor 1", "metrics": {"mean_gy": {"planned": 100.0, "delivered": 80.0, "difference": -20.0,
                                                               "difference_pct": -20.0}}}]}
    assert compare_rows(d) == [["Tumor 1", "mean_gy", "100", "80", "-20", "-20.0"]]


def _euler():
    t = sitk.Euler3DTransform()
    t.SetCenter((10.0, -20.0, 30.0))
    t.SetRotation(math.radians(3), math.radians(-2), math.radians(5))
    t.SetTranslation((4.0, -3.0, 2.5))
    return t


def test_transform_matrix_round_trip_and_ras_convention():
    t = _euler()
    m = matrix_lps(t)
    p = np.array([12.0, -40.0, 55.0])
    assert np.allclose(m[:3, :3] @ p + m[:3, 3], t.TransformPoint(tuple(p)))
    back = transform_from_matrix_lps(m)
    assert np.allclose(back.TransformPoint(tuple(p)), t.TransformPoint(tuple(p)))
    ras = mc.ras_matrix_from_lps(m)
    p_ras = np.array([-p[0], -p[1], p[2], 1.0])  # the same point in RAS
    q = np.asarray(t.TransformPoint(tuple(p)))
    assert np.allclose(ras @ p_ras, [-q[0], -q[1], q[2], 1.0])
    assert np.allclose(mc.lps_matrix_from_ras(ras), m)


def test_deformable_and_bad_matrices_are_refused():
    img = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    bs = sitk.BSplineTransformInitializer(img, [2, 2, 2])
    params = np.array(bs.GetParameters())
    params[5] = 3.0
    bs.SetParameters(tuple(params))
    with pytest.raises(InputError, match="not linear"):
        matrix_lps(bs)
    with pytest.raises(InputError, match="4x4"):
        transform_from_matrix_lps(np.eye(3))
    with pytest.raises(InputError, match="singular"):
        transform_from_matrix_lps(np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="4x4"):
        mc.ras_matrix_from_lps(np.eye(3))
