"""Relative calibration when the image holds the lungs (review findings 2 and 19).

The reviewer's synthetic SPECT (/tmp/review/mksyn.py): 5 mm voxels (0.125 mL), liver 750 mL at 100
counts per voxel with an 8 mL tumour at 500, lungs 1350 mL at 20, background 1.  Counts: liver
(tumour included) 5936 x 100 + 64 x 500 = 625600; lungs 10800 x 20 = 216000; background
19200 x 1 = 19200.  A_adm 2 GBq, residual 5 %.
"""

import numpy as np
from numpy.testing import assert_allclose

from conftest import lung_liver_labels

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, run_case
from TAREDosimetryLib.evaluation.requirements import LSF_NOT_GIVEN

K = 49.67
C_LIVER, C_LUNG, C_BACKGROUND = 625600.0, 216000.0, 19200.0
LIVER_G = 750.0 * 1.03
LUNG_G = 1350.0 * 0.30


def _case(with_lungs=True):
    grid, lab = lung_liver_labels()
    counts = np.select([lab == 3, lab == 1, lab == 2], [20.0, 100.0, 500.0], 1.0).astype(np.float32)
    masks = {"liver": lab == 1, "tumour": lab == 2}
    if with_lungs:
        masks["lung"] = lab == 3
    return Volume(counts, grid=grid, name="syn"), Segmentation.from_masks(masks, grid)


def _params(**kw):
    base = dict(administered_activity_gbq=2.0, residual_fraction=0.05)
    base.update(kw)
    return DosimetryParams(**base)


def test_image_reference_region_leaves_the_lung_counts_to_the_lung_shunt():
    """Finding 2: with --reference-region image the lung counts took part of A_ref although the
    lungs' activity is A_adm (1 - R) LSF already: whole liver 79.9 instead of 109.95 Gy (-27 %).
    A_ref = 2 x 0.95 x 0.9 = 1.71 GBq spreads over the counts outside the lungs (liver and
    background): the liver holds 1.71 x 625600 / 644800 GBq."""
    act, seg = _case()
    r = run_case(act, seg, params=_params(lung_shunt_fraction=0.1, reference_region="image"))
    a_liver = 1.71 * C_LIVER / (C_LIVER + C_BACKGROUND)
    assert_allclose(r.segment("whole liver (derived)").metrics["activity_gbq"], a_liver, rtol=1e-6)
    assert_allclose(r.summary["reference_counts"], C_LIVER + C_BACKGROUND, rtol=1e-9)
    assert_allclose(r.summary["counts_outside_reference_fraction"], C_LUNG / (C_LIVER + C_LUNG + C_BACKGROUND), rtol=1e-9)
    tumour = r.segment("tumour").metrics
    assert_allclose(tumour["activity_gbq"], 1.71 * 32000.0 / (C_LIVER + C_BACKGROUND), rtol=1e-6)
    assert_allclose(tumour["mean_gy"], K * 1.71 * 32000.0 / (C_LIVER + C_BACKGROUND) / (8.0 * 1.03e-3), rtol=1e-6)
    assert not any("assumes no lung counts" in w for w in r.warnings)


def test_image_reference_region_without_lung_segments_says_what_it_assumes():
    act, seg = _case(with_lungs=False)
    r = run_case(act, seg, params=_params(lung_shunt_fraction=0.1, reference_region="image"))
    assert any("assumes no lung counts in the image" in w for w in r.warnings)
    r0 = run_case(act, seg, params=_params(lung_shunt_fraction=0.1))
    assert not any("assumes no lung counts" in w for w in r0.warnings)


def test_image_lung_dose_reports_the_images_lung_shunt_and_warns_when_the_given_one_differs():
    """Finding 19: the image's LSF is 216000 / (216000 + 625600) = 0.2567; an LSF of 0.10 given with
    --lung-dose-from image contradicts it: a warning gives both values."""
    act, seg = _case()
    lsf_image = C_LUNG / (C_LUNG + C_LIVER)
    r = run_case(act, seg, params=_params(lung_shunt_fraction=0.1, lung_dose_from="image"))
    assert_allclose(r.summary["image_lung_shunt_fraction"], lsf_image, rtol=1e-9)
    assert r.summary["lung_shunt_fraction_source"] == "given"
    warned = [w for w in r.warnings if "lung shunt fraction" in w and "differs" in w]
    assert len(warned) == 1 and "10.0 %" in warned[0] and "25.7 %" in warned[0]
    close = run_case(act, seg, params=_params(lung_shunt_fraction=0.25, lung_dose_from="image"))  # within 2 points
    assert not any("differs" in w for w in close.warnings)


def test_image_lung_dose_without_a_given_lsf_uses_the_images_lsf_in_the_calibration():
    """No LSF given: A_ref = A_adm (1 - R) (1 - LSF_image), so that the lungs hold A_adm (1 - R)
    LSF_image = 2 x 0.95 x 0.2567 = 0.4877 GBq and liver + lungs = 1.9 GBq, what left the vial."""
    act, seg = _case()
    lsf_image = C_LUNG / (C_LUNG + C_LIVER)
    r = run_case(act, seg, params=_params(lung_dose_from="image"))
    assert r.summary["lung_shunt_fraction_source"] == "image counts"
    assert_allclose(r.summary["lung_shunt_fraction_used"], lsf_image, rtol=1e-9)
    lung = r.segment("lung").metrics
    assert_allclose(lung["activity_gbq"], 1.9 * lsf_image, rtol=1e-6)
    assert_allclose(lung["mean_gy"], K * 1.9 * lsf_image / (LUNG_G * 1e-3), rtol=1e-6)
    liver_side = r.segment("liver").metrics["activity_gbq"] + r.segment("tumour").metrics["activity_gbq"]
    assert_allclose(liver_side + lung["activity_gbq"], 1.9, rtol=1e-6)
    assert LSF_NOT_GIVEN not in r.incomplete_reasons
    assert any("lung shunt fraction from the image's counts" in c for c in r.explicit_choices)
    assert r.params.lung_shunt_fraction is None  # the parameters record what was given
