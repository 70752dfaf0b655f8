"""The case pipeline against analytic results, geometry invariances and bad input."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from conftest import box_case, lung_liver_labels
from TAREDosimetryLib import DosimetryParams, GeometryError, InputError, Segmentation, Volume, run_case
from TAREDosimetryLib.resample import resample_volume
from TAREDosimetryLib.volume import Grid

K = 49.67


def _params(**kw):
    # An LSF of 0 given explicitly: these tests are about other things (an LSF not given is refused
    # with lung rules, see test_requirements.py).
    base = dict(administered_activity_gbq=2.0, lung_shunt_fraction=0.0)
    base.update(kw)
    return DosimetryParams(**base)


def test_uniform_liver_mean_dose_is_k_a_over_m_and_energy_balances():
    shape = (16, 18, 20)
    grid = Grid(shape, (3.0, 3.0, 3.0))
    liver = np.zeros(shape, bool)
    liver[2:14, 3:15, 4:16] = True
    counts = np.where(liver, 7.0, 0.0).astype(np.float32)
    seg = Segmentation.from_masks({"liver": liver}, grid)
    p = _params(residual_fraction=0.05, lung_shunt_fraction=0.1)
    r = run_case(Volume(counts, grid=grid), seg, params=p)
    a_liver = 2.0 * 0.95 * 0.9
    mass_kg = liver.sum() * grid.voxel_volume_ml * 1.03e-3
    m = r.segment("liver").metrics
    assert_allclose(m["mean_gy"], K * a_liver / mass_kg, rtol=1e-6)
    assert_allclose(m["activity_gbq"], a_liver, rtol=1e-6)
    assert_allclose(m["mass_g"], mass_kg * 1e3, rtol=1e-6)
    # energy balance over the whole dose map: sum D m = K sum A
    dose, rho = r.dose_gy.array.astype(np.float64), r.density_g_ml.array.astype(np.float64)
    energy = (dose * rho * grid.voxel_volume_ml * 1e-3).sum()
    assert_allclose(energy, K * r.activity_gbq.array.sum(dtype=np.float64), rtol=1e-6)
    # uniform dose: every D_x equals the mean, V below it is 100 %
    assert_allclose(m["d90_gy"], m["mean_gy"], rtol=1e-6)
    assert_allclose(m["d2_gy"], m["mean_gy"], rtol=1e-6)


def test_lung_dose_from_lsf_without_lung_segment_uses_default_mass():
    act, seg = box_case()
    r = run_case(act, seg, params=_params(lung_shunt_fraction=0.1, residual_fraction=0.0))
    lung = r.segment("lungs (LSF model)").metrics
    assert_allclose(lung["mean_gy"], K * 2.0 * 0.1 / 1.0, rtol=1e-6)  # 1000 g default
    assert np.isnan(lung["cumulative_mean_gy"])  # no prior lung dose given: unknown (review finding 4)
    first = run_case(act, seg, params=_params(lung_shunt_fraction=0.1, residual_fraction=0.0, prior_lung_dose_gy=0.0))
    assert_allclose(first.segment("lungs (LSF model)").metrics["cumulative_mean_gy"], lung["mean_gy"])


def test_two_compartment_tn_ratio_equals_uptake_ratio():
    act, seg = box_case(tumour_uptake=4.0)
    r = run_case(act, seg, params=_params())
    assert r.inputs["derived_normal_liver"] is True
    t = r.segment("tumour").metrics
    n = r.segment("normal liver (derived)").metrics
    assert_allclose(t["tn_ratio"], 4.0, rtol=1e-6)
    assert_allclose(t["mean_gy"] / n["mean_gy"], 4.0, rtol=1e-6)
    # the tumour and the normal liver share the liver's activity
    assert_allclose(t["activity_gbq"] + n["activity_gbq"], 2.0, rtol=1e-6)


def test_dose_scales_linearly_with_administered_activity():
    act, seg = box_case()
    r1 = run_case(act, seg, params=_params(administered_activity_gbq=1.0))
    r3 = run_case(act, seg, params=_params(administered_activity_gbq=3.0))
    for a, b in zip(r1.segments, r3.segments):
        if a.role != "lung":
            assert_allclose(b.metrics["mean_gy"], 3 * a.metrics["mean_gy"], rtol=1e-6)
            assert_allclose(b.metrics["d70_gy"], 3 * a.metrics["d70_gy"], rtol=1e-6)


def test_analytic_phantom_reproduces_closed_form_means(analytic_phantom):
    p = analytic_phantom
    r = run_case(p.activity, p.segmentation, params=p.params)
    for s in r.segments:
        assert_allclose(s.metrics["mean_gy"], p.expected_mean_gy[s.name], rtol=1e-5, err_msg=s.name)


@pytest.mark.parametrize("sampling, tol_mean, tol_dv", [("nearest", 0.02, 0.08), ("linear", 0.02, 0.02)])
def test_metrics_same_on_coarser_shifted_z_reversed_activity_grid(sampling, tol_mean, tol_dv):
    """Activity on a 2x coarser grid, shifted by half a fine voxel and stored z-reversed.

    The uptake is a smooth function of position, so both grids sample the same physical
    distribution.  Stated tolerances (tumour of radius 15 mm = 3.75 coarse voxels, uptake
    gradient of 12 mm sigma): means and activities within 2 %; D50/D90 within 8 % with nearest
    sampling (the coarse dose is piecewise constant) and 2 % with linear sampling.
    """
    fine = Grid((60, 60, 60), (2.0, 2.0, 2.0), (-59.0, -59.0, -59.0))
    z, y, x = np.meshgrid(*(fine.origin_mm[a] + 2.0 * np.arange(60) for a in (2, 1, 0)), indexing="ij")
    liver = x**2 + y**2 + z**2 < 50.0**2
    tumour = (x - 15) ** 2 + y**2 + z**2 < 15.0**2
    seg = Segmentation.from_masks({"liver": liver, "tumour": tumour}, fine)

    def uptake(xx, yy, zz):
        return 1.0 + 5.0 * np.exp(-((xx - 15) ** 2 + yy**2 + zz**2) / (2 * 12.0**2))

    coarse = Grid((31, 31, 31), (4.0, 4.0, 4.0), (-61.0, -61.0, 59.0), (1, 0, 0, 0, 1, 0, 0, 0, -1))
    cz, cy, cx = np.meshgrid(*(np.arange(31) * 4.0 for _ in range(3)), indexing="ij")
    coarse_counts = uptake(coarse.origin_mm[0] + cx, coarse.origin_mm[1] + cy, coarse.origin_mm[2] - cz)
    p = _params(sampling=sampling)
    r_fine = run_case(Volume(uptake(x, y, z).astype(np.float32), grid=fine), seg, params=p)
    r_coarse = run_case(Volume(coarse_counts.astype(np.float32), grid=coarse), seg, params=p)
    assert r_coarse.metrics_grid["grid"] == "segmentation"
    for name in ("liver", "tumour", "normal liver (derived)"):
        a, b = r_fine.segment(name).metrics, r_coarse.segment(name).metrics
        assert_allclose(b["mean_gy"], a["mean_gy"], rtol=tol_mean, err_msg=name)
        assert_allclose(b["activity_gbq"], a["activity_gbq"], rtol=tol_mean, err_msg=name)
        assert_allclose(b["volume_ml"], a["volume_ml"], rtol=1e-9, err_msg=name)  # volumes from the segment grid
        for key in ("d50_gy", "d90_gy"):
            assert_allclose(b[key], a[key], rtol=tol_dv, err_msg=f"{name} {key}")


def test_segmentation_coarser_than_activity_is_measured_on_activity_grid():
    act, seg = box_case(shape=(20, 24, 28), spacing=(2.0, 2.0, 2.0))
    # Same physical segments on a 2x coarser grid (voxel centres shifted accordingly).
    coarse = Grid((10, 12, 14), (4.0, 4.0, 4.0), (1.0, 1.0, 1.0))
    liver = resample_volume(Volume(seg.mask("liver").astype(np.float32), grid=seg.grid), coarse, "nearest").array > 0.5
    seg_c = Segmentation.from_masks({"liver": liver}, coarse)
    r = run_case(act, seg_c, params=_params())
    assert r.metrics_grid["grid"] == "activity"
    assert_allclose(r.segment("liver").metrics["activity_gbq"], 2.0, rtol=1e-6)


def test_energy_balance_on_the_segment_grid_with_nearest_sampling(demo_phantom):
    p = demo_phantom
    r = run_case(p.activity, p.segmentation, params=p.params.replace(density_from_ct=False))
    for s in r.segments:
        if s.role in ("liver", "tumor", "right_lobe", "left_lobe", "normal_liver"):
            m = s.metrics
            assert_allclose(m["mean_gy"] * m["mass_g"] * 1e-3, K * m["activity_gbq"], rtol=1e-5, err_msg=s.name)


def test_absolute_calibration_with_decay():
    act, seg = box_case()
    conc = act.with_array(act.array * np.float32(1e5))  # Bq/mL
    hours = 64.05
    p = DosimetryParams(calibration="absolute", hours_since_administration=hours)
    r = run_case(conc, seg, params=p)
    expected = float(conc.array[seg.mask("liver")].sum() * act.voxel_volume_ml * 1e-9 * 2.0)
    assert_allclose(r.segment("liver").metrics["activity_gbq"], expected, rtol=1e-5)
    r2 = run_case(conc, seg, params=p.replace(image_decay_corrected=True))
    assert_allclose(r2.segment("liver").metrics["activity_gbq"], expected / 2.0, rtol=1e-5)


def test_rule_evaluation_pass_and_fail_with_sources():
    act, seg = box_case(tumour_uptake=5.0)
    r = run_case(act, seg, params=_params(administered_activity_gbq=0.5))
    ev = {e.segment_name: e for e in r.evaluations if e.rule.role == "tumor"}
    t = r.segment("tumour").metrics["mean_gy"]
    assert ev["tumour"].measured == pytest.approx(t)
    assert ev["tumour"].status == ("PASS" if t > 79.5 else "FAIL")
    assert "Deipolyi" in ev["tumour"].rule.source
    # A large activity with a 30 % shunt: the tumour passes, the lungs (745 Gy) fail.
    r_hi = run_case(act, seg, params=_params(administered_activity_gbq=50.0, lung_shunt_fraction=0.3, allow_unusual_activity=True))
    assert any("50 GBq is outside the 0.05-20 GBq" in w for w in r_hi.warnings)
    statuses = {(e.segment_name, e.rule.metric): e.status for e in r_hi.evaluations}
    assert statuses[("tumour", "mean_gy")] == "PASS"
    assert statuses[("lungs (LSF model)", "mean_gy")] == "FAIL"
    assert r_hi.overall_status == "FAIL"


# -- bad input: clear errors, inputs untouched ---------------------------------------------------
def test_negative_voxels_are_clipped_reported_and_input_untouched():
    act, seg = box_case()
    arr = act.array.copy()
    arr[0, 0, 0] = -5.0
    a = act.with_array(arr)
    before = a.array.copy()
    r = run_case(a, seg, params=_params())
    assert any("negative voxel" in w for w in r.warnings)
    assert r.summary["negative_voxels_clipped"] == 1
    np.testing.assert_array_equal(a.array, before)


def test_nan_voxels_are_refused():
    act, seg = box_case()
    arr = act.array.copy()
    arr[5, 5, 5] = np.nan
    with pytest.raises(InputError, match="1 NaN"):
        run_case(act.with_array(arr), seg, params=_params())


def test_zero_counts_in_reference_region():
    act, seg = box_case()
    arr = np.zeros_like(act.array)
    arr[0, 0, 0] = 1.0  # counts only outside the liver
    with pytest.raises(InputError, match="reference region .*no counts"):
        run_case(act.with_array(arr), seg, params=_params())


def test_no_overlap_between_image_and_segments():
    act, seg = box_case()
    far = Volume(act.array, act.spacing_mm, (1000.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="do not overlap"):
        run_case(far, seg, params=_params())


def test_segment_partly_outside_image():
    act, seg = box_case()
    shifted = Volume(act.array, act.spacing_mm, (20.0, 0.0, 0.0))  # 10 voxels along x
    with pytest.raises(GeometryError, match="outside the activity image"):
        run_case(shifted, seg, params=_params())


def test_empty_segment_is_refused_unless_ignored():
    act, seg = box_case()
    masks = {n: seg.mask(n) for n in seg.names}
    masks["lesion 9"] = np.zeros(seg.grid.shape, bool)
    seg2 = Segmentation.from_masks(masks, seg.grid)
    with pytest.raises(InputError, match="'lesion 9'.* empty"):
        run_case(act, seg2, params=_params())
    r = run_case(act, seg2, params=_params(), roles={"lesion 9": "ignore"})
    assert "lesion 9" not in [s.name for s in r.segments]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"lung_shunt_fraction": 1.0}, "lung_shunt_fraction must be < 1"),
        ({"lung_shunt_fraction": -0.1}, "lung_shunt_fraction must be >= 0"),
        ({"residual_fraction": 1.2}, "residual_fraction must be < 1"),
        ({"administered_activity_gbq": -1.0}, "administered_activity_gbq must be > 0"),
        ({"administered_activity_gbq": 0.0}, "administered_activity_gbq must be > 0"),
        ({"method": "mc"}, "method must be one of"),
        ({"tissue_density_g_ml": 0}, "tissue_density_g_ml"),
    ],
)
def test_parameters_out_of_range(kw, match):
    with pytest.raises(InputError, match=match):
        _params(**kw)


def test_missing_administered_activity():
    act, seg = box_case()
    with pytest.raises(InputError, match="administered_activity_gbq is required"):
        run_case(act, seg, params=DosimetryParams(lung_shunt_fraction=0.0))


def test_unknown_role_and_unknown_segment_in_roles():
    act, seg = box_case()
    with pytest.raises(InputError, match="unknown role for segment 'tumour': 'tumer'"):
        run_case(act, seg, params=_params(), roles={"tumour": "tumer"})
    with pytest.raises(InputError, match="no such segment"):
        run_case(act, seg, params=_params(), roles={"tumor 7": "tumor"})


def test_unknown_preset():
    act, seg = box_case()
    with pytest.raises(InputError, match="unknown threshold preset 'hcc'"):
        run_case(act, seg, params=_params(), rules="hcc")


def test_perfused_reference_region_needs_perfused_segment():
    act, seg = box_case()
    with pytest.raises(InputError, match="reference region 'perfused' needs a segment with role"):
        run_case(act, seg, params=_params(reference_region="perfused"))


def test_ct_density_air_and_outside_ct_get_tissue_density():
    """A CT that covers half the image, with air in it: no meaningless air doses, a warning."""
    act, seg = box_case()
    ct_arr = np.full(act.shape, 14.0, np.float32)  # 14 HU -> 1.03 g/mL
    ct_arr[:, :, :3] = -1000.0  # air column inside the image (holds no liver)
    half = Volume(ct_arr[:12], act.spacing_mm, act.origin_mm)  # covers z < 12 only
    counts = act.array.copy()
    counts[:, :, :3] = 1.0  # blurred counts in air
    r = run_case(act.with_array(counts), seg, params=_params(), ct=half)
    rho = r.density_g_ml.array
    assert_allclose(rho[:, :, :3], 1.03, rtol=1e-6)  # air -> tissue density
    assert_allclose(rho[12:], 1.03, rtol=1e-6)  # outside the CT -> tissue density
    assert r.dose_gy.array.max() < 10 * r.segment("tumour").metrics["mean_gy"]
    assert any("CT does not cover" in w and "'liver'" in w for w in r.warnings)


def test_dose_function_hook_and_precomputed_dose_give_the_same_result():
    from TAREDosimetryLib.dose.ldm import ldm_dose_gy

    act, seg = box_case()
    calls = []

    def my_dose(activity_gbq, density_g_ml, params, lung_mask):
        calls.append(activity_gbq.grid)
        return ldm_dose_gy(activity_gbq, density_g_ml, params.k_gy_kg_per_gbq)

    r0 = run_case(act, seg, params=_params())
    r1 = run_case(act, seg, params=_params(), dose_function=my_dose)
    r2 = run_case(act, seg, params=_params(), dose_gy=r0.dose_gy)
    assert len(calls) == 1 and calls[0].same_as(act.grid)
    for r in (r1, r2):
        assert [s.to_dict() for s in r.segments] == [s.to_dict() for s in r0.segments]  # NaN-safe (None)
    with pytest.raises(GeometryError, match="dose function must return a Volume"):
        run_case(act, seg, params=_params(), dose_function=lambda a, d, p, m: Volume(np.zeros((2, 2, 2))))
    with pytest.raises(InputError, match="either dose_gy or dose_function"):
        run_case(act, seg, params=_params(), dose_gy=r0.dose_gy, dose_function=my_dose)


def test_dvk_through_the_pipeline_conserves_energy_and_honours_the_radius():
    act, seg = box_case()
    # 12 mm of empty margin, so that no kernel energy leaves the image
    act = Volume(np.pad(act.array, 6), act.spacing_mm, tuple(o - 12.0 for o in act.origin_mm))
    p = _params(method="dvk", device="cpu")
    r12 = run_case(act, seg, params=p)
    r6 = run_case(act, seg, params=p.replace(dvk_radius_mm=6.0))
    e = lambda r: float((r.dose_gy.array.astype(np.float64) * r.density_g_ml.array * act.voxel_volume_ml * 1e-3).sum())  # noqa: E731
    assert_allclose(e(r12), K * 2.0, rtol=1e-5)
    assert_allclose(e(r6), K * 2.0, rtol=1e-5)
    assert not np.allclose(r12.dose_gy.array, r6.dose_gy.array)
    assert r12.to_dict()["parameters"]["dvk_radius_mm"] == 12.0
    with pytest.raises(InputError, match="dvk_radius_mm"):
        p.replace(dvk_radius_mm=0.5)


def test_lsf_lung_model_with_absolute_calibration_reports_the_lung_dose():
    # lung_dose_from='lsf' with an absolute image used to drop the lung segments and report no
    # lung dose at all (lung rules N/A, overall PASS) without a word.
    act, seg = box_case()
    p = DosimetryParams(calibration="absolute", lung_dose_from="lsf", administered_activity_gbq=2.0,
                        lung_shunt_fraction=0.1, hours_since_administration=0.0)
    r = run_case(act, seg, params=p)
    lung = r.segment("lungs (LSF model)").metrics
    assert_allclose(lung["mean_gy"], K * 2.0 * 0.1 / 1.0, rtol=1e-6)  # 1000 g default lung mass
    assert {e.status for e in r.evaluations if e.rule.role == "lung" and not e.rule.optional} == {"PASS"}
    with pytest.raises(InputError, match="administered_activity_gbq is required by the LSF lung model"):
        run_case(act, seg, params=DosimetryParams(calibration="absolute", lung_dose_from="lsf", image_decay_corrected=True))


def test_summary_lung_mean_dose_is_mass_weighted_over_all_lung_segments():
    # Two lung lobes of different size and uptake, image-based lung dose: the summary's lung mean
    # dose is energy over the lungs' mass, not the plain average of the two lobes' means.
    shape = (20, 24, 28)
    grid = Grid(shape, (2.0, 2.0, 2.0))
    liver = np.zeros(shape, bool)
    liver[2:-2, 2:12, 2:-2] = True
    upper = np.zeros(shape, bool)
    upper[4:-2, 14:-2, 2:-2] = True
    lower = np.zeros(shape, bool)
    lower[2:4, 14:-2, 2:-2] = True
    counts = np.zeros(shape, np.float32)
    counts[liver], counts[upper], counts[lower] = 1000.0, 50.0, 500.0
    seg = Segmentation.from_masks({"liver": liver, "lung upper": upper, "lung lower": lower}, grid)
    r = run_case(Volume(counts, grid=grid), seg, params=DosimetryParams(calibration="absolute", image_decay_corrected=True))
    lobes = [r.segment(n).metrics for n in ("lung upper", "lung lower")]
    expected = sum(m["mean_gy"] * m["mass_g"] for m in lobes) / sum(m["mass_g"] for m in lobes)
    assert_allclose(r.summary["lung_mean_gy"], expected, rtol=1e-6)
    assert_allclose(r.summary["lung_mass_g"], sum(m["mass_g"] for m in lobes), rtol=1e-6)


def test_segmentation_without_segments_is_refused_with_its_own_message():
    # An all-zero label map gives a Segmentation with no segments; the error used to claim that
    # "every segment has role 'ignore'".
    grid = Grid((4, 4, 4))
    seg = Segmentation.from_labelmap(np.zeros((4, 4, 4), np.uint8), grid, None, source="zeros.nii.gz")
    with pytest.raises(InputError, match=r"segmentation \(zeros.nii.gz\) holds no segments"):
        run_case(Volume(np.ones((4, 4, 4), np.float32), grid=grid), seg, params=_params())


def test_lsf_lung_mass_counts_lung_voxels_outside_a_finer_activity_image():
    # Segments on a 4 mm grid, activity on a finer 2 mm grid that covers only part of the lung:
    # the LSF lung mass was taken on the (activity) metrics grid and lost the uncovered lung,
    # overestimating the lung dose.
    sg = Grid((20, 20, 20), (4.0, 4.0, 4.0))
    liver = np.zeros(sg.shape, bool)
    liver[2:8, 4:16, 4:16] = True
    lung = np.zeros(sg.shape, bool)
    lung[9:18, 4:16, 4:16] = True
    seg = Segmentation.from_masks({"liver": liver, "lung": lung}, sg)
    ag = Grid((28, 40, 40), (2.0, 2.0, 2.0), (-1.0, -1.0, -1.0))  # z up to 54 mm; the lung reaches 70 mm
    r = run_case(Volume(np.ones(ag.shape, np.float32), grid=ag), seg, params=_params(lung_shunt_fraction=0.1))
    assert r.metrics_grid["grid"] == "activity"
    mass_g = lung.sum() * sg.voxel_volume_ml * 0.30
    assert_allclose(r.summary["lung_mass_g"], mass_g, rtol=1e-6)
    assert_allclose(r.segment("lungs (LSF model)").metrics["mean_gy"], K * 2.0 * 0.1 / (mass_g * 1e-3), rtol=1e-6)


def test_lsf_lung_dose_from_partial_lung_segments_is_flagged():
    # Lung segments of a few grams (e.g. only the lung bases on an abdominal CT, as in the
    # TotalSegmentator example) gave lung doses of hundreds of Gy without a word.
    shape = (20, 24, 28)
    grid = Grid(shape, (2.0, 2.0, 2.0))
    liver = np.zeros(shape, bool)
    liver[2:-2, 2:12, 2:-2] = True
    lung = np.zeros(shape, bool)
    lung[2:6, 14:-2, 2:-2] = True
    seg = Segmentation.from_masks({"liver": liver, "lung base": lung}, grid)
    counts = np.where(liver, 10.0, 0.0).astype(np.float32)
    r = run_case(Volume(counts, grid=grid), seg, params=_params(lung_shunt_fraction=0.1))
    assert any("lung segments ('lung base') weigh only" in w for w in r.warnings), r.warnings


def test_rule_naming_a_missing_segment_is_warned_not_silently_na():
    act, seg = box_case()
    rules = {"name": "typo", "rules": [
        {"segment": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1.0},  # the segment is 'tumour'
        {"role": "liver", "metric": "mean_gy", "comparison": ">", "threshold": 1.0}]}
    r = run_case(act, seg, params=_params(), rules=rules)
    assert r.overall_status == "INCOMPLETE"  # the N/A row makes the case incomplete...
    assert any("segment 'tumor' was not measured" in x for x in r.incomplete_reasons), r.incomplete_reasons
    assert any("names segment 'tumor', which was not measured" in w for w in r.warnings), r.warnings  # ...and is warned


def test_decay_options_ignored_by_relative_calibration_are_warned():
    # --hours-since-administration / --decay-corrected do nothing to a relative calibration; they
    # were accepted without a word (a user who forgot --quantitative got counts scaled to A_adm).
    act, seg = box_case()
    r = run_case(act, seg, params=_params(hours_since_administration=20.0))
    assert any("ignored with relative calibration" in w for w in r.warnings), r.warnings
    assert not any("ignored with relative" in w for w in run_case(act, seg, params=_params()).warnings)


def test_absolute_image_with_implausible_total_activity_is_warned():
    act, seg = box_case()
    r = run_case(act, seg, params=DosimetryParams(calibration="absolute", image_decay_corrected=True))  # counts, not Bq/mL
    assert any("really in Bq/mL" in w for w in r.warnings)
    ok = run_case(act.with_array(act.array * np.float32(2e5)), seg, params=DosimetryParams(calibration="absolute", image_decay_corrected=True))
    assert not any("really in Bq/mL" in w for w in ok.warnings)


def test_unnamed_labels_of_a_label_map_are_reported():
    act, seg = box_case()
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    lab[0, 0, 0] = 9
    s2 = Segmentation.from_labelmap(lab, seg.grid, {1: "liver", 2: "tumour"}, source="labels.nii.gz")
    r = run_case(act, s2, params=_params())
    assert any("label value(s) 9 of labels.nii.gz have no name" in w for w in r.warnings)


def test_sheared_direction_matrix_is_refused():
    with pytest.raises(GeometryError, match="orthonormal"):
        Grid((2, 2, 2), (1, 1, 1), (0, 0, 0), (1, 0.5, 0, 0, 1, 0, 0, 0, 1))


def test_image_based_lung_dose_is_judged_on_the_lungs_as_a_whole():
    """Two lung segments, one hot: lung rules apply to the union (mass-weighted mean), not per lobe."""
    shape = (20, 24, 40)
    grid = Grid(shape, (3.0, 3.0, 3.0))
    liver = np.zeros(shape, bool)
    liver[4:16, 4:20, 2:14] = True
    lobe_a = np.zeros(shape, bool)
    lobe_a[4:16, 4:20, 16:26] = True
    lobe_b = np.zeros(shape, bool)
    lobe_b[4:16, 4:20, 28:38] = True
    conc = np.zeros(shape, np.float32)
    conc[liver] = 1e6  # Bq/mL
    conc[lobe_a] = 2e5  # hot lobe
    conc[lobe_b] = 1e4
    seg = Segmentation.from_masks({"liver": liver, "lung upper": lobe_a, "lung lower": lobe_b}, grid)
    r = run_case(Volume(conc, grid=grid), seg, params=DosimetryParams(calibration="absolute", image_decay_corrected=True))
    whole = r.segment("lungs (all segments)").metrics["mean_gy"]
    assert_allclose(whole, (r.segment("lung upper").metrics["mean_gy"] + r.segment("lung lower").metrics["mean_gy"]) / 2, rtol=1e-5)
    assert_allclose(r.summary["lung_mean_gy"], whole, rtol=1e-6)
    lung_rows = [e for e in r.evaluations if e.rule.role == "lung"]
    assert {e.segment_name for e in lung_rows} == {"lungs (all segments)"}
    assert r.segment("lung upper").metrics["mean_gy"] > 30 > whole  # the hot lobe alone would have failed
    assert all(e.status == "PASS" for e in lung_rows if not e.rule.optional)  # cumulative: no prior dose given, N/A


def test_progress_names_each_segment_of_the_metrics_step_in_order():
    """The metrics step reports per segment (the Slicer panel's Cancel is checked at each report)."""
    activity, seg = box_case()
    seen = []
    run_case(activity, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05), progress=lambda f, m: seen.append((f, m)))
    metric_steps = [m for f, m in seen if m.startswith("metrics and DVH: ")]
    assert metric_steps == ["metrics and DVH: liver", "metrics and DVH: tumour", "metrics and DVH: normal liver (derived)"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_ct_coverage_warning_tells_segments_outside_the_ct_from_voxels_on_its_edge():
    """A segment wholly inside the CT whose activity voxels straddle the CT's edge is not "not covered"
    (the demo's lungs); a segment with voxels outside the CT is."""
    from TAREDosimetryLib.volume import Grid

    act_grid = Grid((6, 6, 6), (4.0, 4.0, 4.0), (2.0, 2.0, 2.0))  # voxel boundaries 0..24 mm
    seg_grid = Grid((24, 24, 24), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    ct_grid = Grid((22, 24, 24), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))  # z 0..22 mm: the top activity slice straddles it
    liver = np.zeros(seg_grid.shape, bool)
    liver[2:21, 2:22, 2:22] = True  # z up to 21 mm: inside the CT, in the straddling activity slice
    tumour = np.zeros(seg_grid.shape, bool)
    tumour[18:24, 8:12, 8:12] = True  # z up to 24 mm: partly outside the CT
    liver[18:24, 8:12, 8:12] = False  # a label-map-like layout: the tumour is not in the liver mask
    seg = Segmentation.from_masks({"liver": liver, "tumour": tumour}, seg_grid)
    activity = Volume(np.ones(act_grid.shape, np.float32), grid=act_grid)
    ct = Volume(np.full(ct_grid.shape, 40.0, np.float32), grid=ct_grid)
    p = DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0)
    r = run_case(activity, seg, params=p, ct=ct)
    not_covered = [w for w in r.warnings if "does not cover" in w]
    edge = [w for w in r.warnings if "straddle the edge" in w]
    assert len(not_covered) == 1 and "'tumour'" in not_covered[0] and "'liver'" not in not_covered[0]
    assert len(edge) == 1 and "'liver'" in edge[0]


def test_tumour_lobe_overlap_is_measured_on_the_segments():
    # A tumour straddling the lobe boundary (x = 14) lies half in each lobe; one left of it only in
    # the right lobe.  The cohort analysis derives bilobar disease from these numbers.
    from TAREDosimetryLib import Segmentation, Volume
    from TAREDosimetryLib.volume import Grid

    shape = (12, 16, 28)
    grid = Grid(shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    liver = np.zeros(shape, bool)
    liver[1:-1, 1:-1, 1:-1] = True
    right, left = liver.copy(), liver.copy()
    right[:, :, 14:] = False
    left[:, :, :14] = False
    across = np.zeros(shape, bool)
    across[4:8, 4:8, 10:18] = True  # 4 of its 8 columns on each side of x index 14
    inside = np.zeros(shape, bool)
    inside[4:8, 10:14, 3:7] = True
    seg = Segmentation.from_masks({"liver": liver, "right lobe": right, "left lobe": left, "tumour A": across,
                                   "tumour B": inside}, grid)
    counts = np.where(liver, 10.0, 0.0).astype(np.float32)
    res = run_case(Volume(counts, grid=grid), seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05))
    a, b = res.segment("tumour A").metrics, res.segment("tumour B").metrics
    assert a["in_right_lobe_pct"] == pytest.approx(50.0) and a["in_left_lobe_pct"] == pytest.approx(50.0)
    assert b["in_right_lobe_pct"] == pytest.approx(100.0) and b["in_left_lobe_pct"] == 0.0
    assert "in_right_lobe_pct" not in res.segment("liver").metrics
    # An external dose evaluated on the same segments reports the same shares.
    from TAREDosimetryLib.pipeline import evaluate_dose_case

    ev = evaluate_dose_case(res.dose_gy, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05))
    assert ev.segment("tumour A").metrics["in_left_lobe_pct"] == pytest.approx(50.0)
    assert ev.segment("tumour B").metrics["in_right_lobe_pct"] == pytest.approx(100.0)
    # Without lobe segments, no lobe keys at all (not a misleading 0 %).
    res2 = run_case(Volume(counts, grid=grid), seg.subset(["liver", "tumour A"]),
                    params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05))
    assert not any(k.startswith("in_") for k in res2.segment("tumour A").metrics)


def _pet_lung_case():
    """The reviewer's synthetic PET (/tmp/review/mksyn.py, finding 11): 5 mm voxels, liver 750 mL at
    1e6 Bq/mL with an 8 mL tumour, lungs 1350 mL at 2e5 Bq/mL (HU -700: Kao 0.30 g/mL)."""
    grid, lab = lung_liver_labels()
    pet = np.select([lab == 3, lab == 1, lab == 2], [2e5, 1e6, 5e6], 1e4).astype(np.float32)
    hu = np.where(lab == 3, -700.0, 40.0).astype(np.float32)
    seg = Segmentation.from_masks({"liver": lab == 1, "tumour": lab == 2, "lung": lab == 3}, grid)
    return Volume(pet, grid=grid), seg, hu


@pytest.mark.parametrize("sampling", ["overlap", "nearest"])
def test_lung_voxels_outside_the_ct_take_the_lung_density(sampling):
    """Review finding 11: a CT that misses the lung apices gave the lung voxels outside it the tissue
    density 1.03 g/mL: lung mass 897.75 g instead of 405 g, the image lung dose 18.5 instead of
    41.1 Gy, and a failing lung turned PASS.  Hand calculation: lung activity 1350 mL x 2e5 Bq/mL =
    0.27 GBq at the scan, x 2^(20/64.05) = 0.3352 GBq at administration; 49.67 x 0.3352 / 0.405 kg
    = 41.11 Gy, whether the CT covers the lungs or only half of their slices."""
    pet, seg, hu = _pet_lung_case()
    p = DosimetryParams(calibration="absolute", hours_since_administration=20.0, sampling=sampling)
    full = Volume(hu, grid=pet.grid)
    partial = Volume(hu[6:], (5.0, 5.0, 5.0), (-75.0, -75.0, 30.0))  # starts at z = 30 mm: 6 of the 12 lung slices
    expected_gy = K * 0.27 * 2 ** (20 / 64.05) / 0.405
    for ct in (full, partial):
        r = run_case(pet, seg, params=p, ct=ct)
        lung = r.segment("lung").metrics
        assert_allclose(lung["mass_g"], 405.0, rtol=1e-5)
        assert_allclose(lung["mean_gy"], expected_gy, rtol=1e-5)
        assert r.overall_status == "FAIL"  # lung > 30 Gy
    assert any("CT does not cover" in w and "'lung'" in w and "lung density 0.3 g/mL" in w for w in r.warnings)
    assert not any("tissue density" in w and "'lung'" in w for w in r.warnings)
