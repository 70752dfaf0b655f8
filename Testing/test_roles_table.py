"""Role guessing on names taken from real segmentations: TotalSegmentator class names, 3D Slicer's
Segment Editor defaults and terminology, radiotherapy/MIM exports (AAPM TG-263 style, where
"Liver-GTV" means liver minus GTV), Simplicit90Y-style dosimetry exports, the shared Taranis MAA
case, and non-English names.  A tumour-free liver must never be guessed as tumour."""

import pytest

from TAREDosimetryLib.evaluation.roles import guess_role, unrecognised_names

NAMES = [
    # TotalSegmentator (total task, v2 class names, and the liver_vessels / liver_segments tasks)
    ("liver", "liver"), ("spleen", "other"), ("kidney_right", "other"), ("kidney_left", "other"),
    ("gallbladder", "other"), ("stomach", "other"), ("pancreas", "other"), ("adrenal_gland_right", "other"),
    ("lung_upper_lobe_left", "lung"), ("lung_lower_lobe_left", "lung"), ("lung_upper_lobe_right", "lung"),
    ("lung_middle_lobe_right", "lung"), ("lung_lower_lobe_right", "lung"), ("esophagus", "other"), ("trachea", "other"),
    ("duodenum", "other"), ("small_bowel", "other"), ("colon", "other"), ("urinary_bladder", "other"),
    ("vertebrae_L1", "other"), ("heart", "other"), ("aorta", "other"), ("inferior_vena_cava", "other"),
    ("portal_vein_and_splenic_vein", "other"), ("pulmonary_vein", "other"), ("liver_vessels", "other"),
    ("liver_tumor", "tumor"), ("liver_segment_4", "other"),
    # 3D Slicer Segment Editor defaults and terminology names
    ("Segment_1", "other"), ("Segment_2", "other"), ("Liver", "liver"), ("Tumor", "tumor"), ("Lesion", "tumor"),
    ("Mass", "tumor"), ("Neoplasm", "tumor"), ("Right lung", "lung"), ("Left lung", "lung"), ("Lung", "lung"),
    # Radiotherapy / MIM exports (TG-263: '-' is subtraction)
    ("Liver-GTV", "normal_liver"), ("Lungs-GTV", "lung"), ("Lungs", "lung"), ("Lung_L", "lung"), ("Lung_R", "lung"),
    ("GTV", "tumor"), ("GTV_1", "tumor"), ("GTVp", "tumor"), ("GTV1", "tumor"), ("PTV", "other"), ("Body", "other"),
    ("External", "other"), ("Liver_Normal", "normal_liver"), ("NonTumorLiver", "normal_liver"), ("Kidney_L", "other"),
    ("Bowel_Small", "other"), ("Liver+GTV", "liver"),
    # Simplicit90Y-style and other dosimetry exports
    ("Whole Liver", "liver"), ("Perfused Volume", "perfused"), ("Perfused Liver", "perfused"),
    ("Treatment Volume", "perfused"), ("Perfused Normal Liver", "perfused_normal"), ("Normal Liver", "normal_liver"),
    ("Non-Perfused Liver", "other"), ("Right Lobe", "right_lobe"), ("Left Lobe", "left_lobe"), ("Tumor 1", "tumor"),
    ("Tumor Total", "tumor"),
    # The shared Taranis MAA case (Slicer .seg.nrrd)
    ("Tumor 2", "tumor"), ("perfused volume", "perfused"), ("perfused normal", "perfused_normal"),
    ("whole liver normal", "normal_liver"),
    # Tumour-free liver, however it is written: never a tumour
    ("tumor-free liver", "normal_liver"), ("liver without tumour", "normal_liver"), ("Liver - Tumor", "normal_liver"),
    ("liver minus tumours", "normal_liver"), ("non-tumoral liver", "normal_liver"), ("tumour free", "normal_liver"),
    ("Non-tumorous liver", "normal_liver"), ("Liver \u2013 Tumours", "normal_liver"), ("Leber ohne Tumor", "normal_liver"),
    # Accents and other languages
    ("Tum\u00f6r", "tumor"), ("L\u00e4sion", "tumor"), ("h\u00edgado", "liver"), ("foie", "liver"), ("Leber", "liver"),
    ("Lebermetastase", "tumor"), ("M\u00e9tastase 1", "tumor"), ("tumeur", "tumor"), ("Tumore 1", "tumor"),
    ("lesi\u00f3n 2", "tumor"), ("fegato", "liver"), ("foie sain", "normal_liver"), ("h\u00edgado sano", "normal_liver"),
    ("gesunde Leber", "normal_liver"), ("poumon droit", "lung"), ("Lunge links", "lung"), ("pulm\u00f3n", "lung"),
    ("rechter Leberlappen", "right_lobe"), ("lobe gauche", "left_lobe"),
]


def test_the_table_holds_at_least_60_real_names():
    assert len(NAMES) >= 60 and len({n for n, _ in NAMES}) == len(NAMES)


@pytest.mark.parametrize("name, role", NAMES)
def test_role_guessed_from_a_real_segment_name(name, role):
    assert guess_role(name) == role


def test_no_tumour_free_liver_name_is_a_tumour():
    free = [n for n, r in NAMES if r == "normal_liver"]
    assert free and all(guess_role(n) != "tumor" for n in free)


def test_names_left_to_other_are_listed_unless_a_known_organ_or_overridden():
    names = ["Segment_1", "spleen", "Tissue", "Tumor 1", "ROI 3", "PTV"]
    assert unrecognised_names(names) == ["Segment_1", "Tissue", "ROI 3"]
    assert unrecognised_names(names, {"segment_1": "tumor"}) == ["Tissue", "ROI 3"]


def test_pipeline_warns_about_unrecognised_names():
    import numpy as np

    from conftest import box_case
    from TAREDosimetryLib import Segmentation, run_case
    from TAREDosimetryLib.params import DosimetryParams

    act, seg = box_case()
    extra = np.zeros(act.shape, bool)
    extra[3:5, 3:5, 3:5] = True
    seg2 = Segmentation.from_masks({"liver": seg.mask("liver"), "Tum\u00f6r 1": seg.mask("tumour"), "Segment_7": extra}, seg.grid)
    r = run_case(act, seg2, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.0))
    assert r.inputs["roles"]["Tum\u00f6r 1"] == "tumor"
    assert any("role not recognised from the name of segment(s) 'Segment_7'" in w for w in r.warnings), r.warnings
