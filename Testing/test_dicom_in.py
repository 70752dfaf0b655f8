"""DICOM in: series choice, slice order and rescale, PET units, radionuclide and timing from the header.

The series are synthetic (Testing/dicom_synth.py), with known timing, so the decay factor the engine
applies is checked against 2 ** (dt / T_half) to 1e-9.
"""

import json
import os

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from conftest import box_case  # noqa: E402
from dicom_synth import (  # noqa: E402
    new_study, pet_attributes, radiopharmaceutical, write_image_series, write_nm_multiframe,
)
from TAREDosimetryLib import DosimetryParams, GeometryError, InputError  # noqa: E402
from TAREDosimetryLib.batch import run_case_files  # noqa: E402
from TAREDosimetryLib.cli import main  # noqa: E402
from TAREDosimetryLib.imaging import read_image  # noqa: E402
from TAREDosimetryLib.imaging.caseinputs import DicomOptions, read_case_inputs  # noqa: E402
from TAREDosimetryLib.imaging.dicomactivity import header_activity_params  # noqa: E402
from TAREDosimetryLib.imaging.dicomtiming import activity_timing, read_activity_header  # noqa: E402
from TAREDosimetryLib.imaging.images import write_image  # noqa: E402

HALF_LIFE_H = 64.05
BQ_ML_PER_COUNT = 1.6e6  # the box case's counts (10 in the liver) -> about 1 GBq in all


def _pet_case(tmp_path, attributes=None, per_slice=None, slopes=None, name="pet"):
    """A Y-90 PET series of the box case (Bq/mL) and its label map; returns (pet folder, labels path, conc)."""
    act, seg = box_case()
    conc = act.array.astype(float) * BQ_ML_PER_COUNT
    attrs = pet_attributes(radiopharm=radiopharmaceutical(start_datetime="20240502143000")) if attributes is None else attributes
    folder = str(tmp_path / name)
    write_image_series(folder, conc, act.spacing_mm, act.origin_mm, modality="PT", attributes=attrs, per_slice=per_slice,
                       slopes=slopes)
    labels = np.zeros(act.shape, np.uint8)
    labels[seg.mask("liver")] = 1
    labels[seg.mask("tumour")] = 2
    lab = str(tmp_path / "labels.nii.gz")
    if not os.path.exists(lab):
        write_image(act.with_array(labels), lab, dtype=np.uint8)
    return folder, lab, conc


def _inputs(folder, lab, **options):
    params = DosimetryParams(calibration="absolute")
    return read_case_inputs(folder, lab, labels="1=liver,2=tumour", modality="pet", params=params,
                            dicom=DicomOptions(**options))


# -- timing ------------------------------------------------------------------------------------
def test_pet_timing_from_the_header_gives_the_decay_factor_to_1e9(tmp_path):
    folder, lab, _ = _pet_case(tmp_path)  # administered 2024-05-02 14:30:00, series 2024-05-03 10:15:00, START
    result, _ = run_case_files(folder, lab, labels="1=liver,2=tumour", modality="pet",
                               params=DosimetryParams(calibration="absolute"))
    hours = 19.75
    assert result.params.hours_since_administration == pytest.approx(hours, rel=1e-12)
    assert result.summary["decay_correction_factor"] == pytest.approx(2.0 ** (hours / HALF_LIFE_H), rel=1e-9)
    rec = result.inputs["activity_dicom"]
    assert result.inputs["timing_source"] == "DICOM header"
    assert rec["header_timing"]["reference"] == "series start"
    assert rec["header"]["units"] == "BQML" and rec["header"]["radionuclide_code"] == "14691008"


def test_decay_correction_datetime_fractional_seconds_and_time_zones(tmp_path):
    attrs = pet_attributes(radiopharm=radiopharmaceutical(start_datetime="20240502143000.250000+0200"))
    attrs["TimezoneOffsetFromUTC"] = "+0200"  # the series' DA/TM values are local times at UTC+2
    folder, lab, _ = _pet_case(tmp_path, attributes=attrs,
                               per_slice=lambda k: {"DecayCorrectionDateTime": "20240503101500.750000+0200"})
    header = read_activity_header(sorted(os.path.join(folder, f) for f in os.listdir(folder)))
    timing = activity_timing(header, HALF_LIFE_H)
    assert timing.reference == "decay-correction time (0018,9701)"
    assert timing.hours_since_administration == pytest.approx(19.75 + 0.5 / 3600.0, rel=1e-12)


def test_admin_decay_correction_means_factor_one(tmp_path):
    attrs = pet_attributes(decay="ADMIN", radiopharm=radiopharmaceutical(start_datetime="20240502143000"))
    folder, lab, _ = _pet_case(tmp_path, attributes=attrs)
    case = _inputs(folder, lab)
    assert case.params.image_decay_corrected is True
    assert case.info["activity_dicom"]["header_timing"]["hours_since_administration"] == pytest.approx(19.75)
    result, _ = run_case_files(folder, lab, labels="1=liver,2=tumour", modality="pet", params=DosimetryParams(calibration="absolute"))
    assert result.summary["decay_correction_factor"] == 1.0


def test_no_decay_correction_with_two_bed_positions_corrects_each_slice_to_the_first(tmp_path):
    # NONE: each slice's values hold at its Frame Reference Time; the second bed was 30 min later.
    frt = lambda k: {"FrameReferenceTime": 600000.0 + (1800000.0 if k >= 10 else 0.0), "DecayFactor": "1"}  # noqa: E731
    attrs = pet_attributes(decay="NONE", radiopharm=radiopharmaceutical(start_datetime="20240502143000"))
    folder, lab, conc = _pet_case(tmp_path, attributes=attrs, per_slice=frt)
    case = _inputs(folder, lab)
    assert case.params.hours_since_administration == pytest.approx(19.75 + 10 / 60.0, rel=1e-12)
    raw = read_image(folder, "PET image").array.astype(float)
    factor = 2.0 ** (0.5 / HALF_LIFE_H)
    np.testing.assert_allclose(case.activity.array[10:], raw[10:] * factor, rtol=1e-6)
    np.testing.assert_array_equal(case.activity.array[:10], raw[:10])
    assert any("decay-corrected to the first" in w for w in case.warnings)


def test_series_time_after_the_acquisition_time_uses_the_acquisition_time(tmp_path):
    attrs = pet_attributes(series_time="113000", acquisition_time="101500",
                           radiopharm=radiopharmaceutical(start_datetime="20240502143000"))
    folder, lab, _ = _pet_case(tmp_path, attributes=attrs)
    case = _inputs(folder, lab)
    assert case.params.hours_since_administration == pytest.approx(19.75)
    assert any("QIBA" in w for w in case.warnings)


@pytest.mark.parametrize("radiopharm, decay, message", [
    (radiopharmaceutical(start_time="143000"), "START", "not its date"),
    (radiopharmaceutical(start_datetime=None), "START", r"RadiopharmaceuticalStartDateTime \(0018,1078\) missing"),
    (None, "START", "does not say when the activity was administered"),
    (radiopharmaceutical(start_datetime="20240502143000", start_time="150000"), "START", "disagree"),
    (radiopharmaceutical(start_datetime="20240503143000"), "START", "before the administration"),
    (radiopharmaceutical(start_datetime="20240502143000"), None, r"no DecayCorrection \(0054,1102\)"),
    (radiopharmaceutical(start_datetime="20240502143000"), "FRAME", "START, ADMIN or NONE was expected"),
])
def test_missing_or_conflicting_timing_is_refused_with_the_attribute_named(tmp_path, radiopharm, decay, message):
    folder, lab, _ = _pet_case(tmp_path, attributes=pet_attributes(decay=decay, radiopharm=radiopharm))
    with pytest.raises(InputError, match=message):
        _inputs(folder, lab)


def test_decay_factor_that_contradicts_the_header_times_is_refused(tmp_path):
    # START at the series time; frame reference 10 min later: the factor should be ~1.0018, not 1.2
    per = lambda k: {"FrameReferenceTime": 600000.0, "DecayFactor": "1.2"}  # noqa: E731
    folder, lab, _ = _pet_case(tmp_path, per_slice=per)
    with pytest.raises(InputError, match="DecayFactor 1.2 contradicts its own times"):
        _inputs(folder, lab)
    ok = lambda k: {"FrameReferenceTime": 600000.0, "DecayFactor": f"{2 ** ((1 / 6) / HALF_LIFE_H):.8f}"}  # noqa: E731
    folder, lab, _ = _pet_case(tmp_path, per_slice=ok, name="pet_ok")
    assert _inputs(folder, lab).params.hours_since_administration == pytest.approx(19.75)


def test_user_timing_overrides_the_header_and_the_difference_is_reported(tmp_path):
    folder, lab, _ = _pet_case(tmp_path)
    params = DosimetryParams(calibration="absolute", hours_since_administration=18.0)
    case = read_case_inputs(folder, lab, labels="1=liver,2=tumour", modality="pet", params=params,
                            dicom=DicomOptions(timing_overridden=True))
    assert case.params.hours_since_administration == 18.0
    assert case.info["timing_source"] == "command line"
    assert any("18 h given overrides the header's 19.750 h" in w for w in case.warnings)
    # a header without timing is fine when the user gives it
    folder2, _, _ = _pet_case(tmp_path, attributes=pet_attributes(radiopharm=None), name="pet2")
    case2 = read_case_inputs(folder2, lab, labels="1=liver,2=tumour", modality="pet", params=params,
                             dicom=DicomOptions(timing_overridden=True))
    assert case2.params.hours_since_administration == 18.0


# -- units and radionuclide --------------------------------------------------------------------
def test_units_other_than_bq_per_ml_are_refused_for_absolute_calibration(tmp_path):
    folder, lab, _ = _pet_case(tmp_path, attributes=pet_attributes(units="CNTS", radiopharm=radiopharmaceutical(start_datetime="20240502143000")))
    with pytest.raises(InputError, match=r"counts \(Units CNTS\), not Bq/mL"):
        _inputs(folder, lab)
    folder, lab, _ = _pet_case(tmp_path, attributes=pet_attributes(units=None, radiopharm=radiopharmaceutical(start_datetime="20240502143000")), name="nounits")
    with pytest.raises(InputError, match="no Units"):
        _inputs(folder, lab)
    case = _inputs(folder, lab, quantitative_explicit=True)
    assert any("Bq/mL taken as --quantitative says" in w for w in case.warnings)


def test_y90_pet_with_another_radionuclide_is_refused_unless_allowed(tmp_path):
    f18 = radiopharmaceutical(start_datetime="20240503090000", half_life_s=6586.2, code=("77004003", "SCT", "^18^Fluorine"))
    folder, lab, _ = _pet_case(tmp_path, attributes=pet_attributes(radiopharm=f18))
    with pytest.raises(InputError, match=r"radionuclide \^18\^Fluorine, half-life 1.829 h, not Y-90"):
        _inputs(folder, lab)
    case = _inputs(folder, lab, allow_other_radionuclide=True)
    assert any("--allow-other-radionuclide" in w for w in case.warnings)
    # the half-life alone names another nuclide too
    hl = radiopharmaceutical(start_datetime="20240502143000", code=None, half_life_s=6586.2)
    folder, lab, _ = _pet_case(tmp_path, attributes=pet_attributes(radiopharm=hl), name="hl")
    with pytest.raises(InputError, match="not Y-90"):
        _inputs(folder, lab)


def test_radionuclide_text_forms_of_y90_are_recognised():
    from TAREDosimetryLib.imaging.dicomactivity import radionuclide_is_y90
    from TAREDosimetryLib.imaging.dicomtiming import ActivityHeader

    for text in ("^90^Yttrium", "Y-90", "90Y", "Yttrium-90", "Y90", "yttrium 90"):
        assert radionuclide_is_y90(ActivityHeader(radionuclide=text), HALF_LIFE_H) is True, text
    for text in ("^18^Fluorine", "Ga-68", "Tc99m"):
        assert radionuclide_is_y90(ActivityHeader(radionuclide=text), HALF_LIFE_H) is False, text
    assert radionuclide_is_y90(ActivityHeader(), HALF_LIFE_H) is None
    assert radionuclide_is_y90(ActivityHeader(half_life_s=64.1 * 3600), HALF_LIFE_H) is True


def test_spect_relative_calibration_records_the_header_without_requiring_timing(tmp_path):
    act, seg = box_case()
    path = str(tmp_path / "spect.dcm")
    write_nm_multiframe(path, act.array.astype(float) * 3.0, act.spacing_mm, act.origin_mm)
    header = read_activity_header([path])
    params, record, warnings, factors = header_activity_params(
        DosimetryParams(administered_activity_gbq=1.0), header, modality="spect")
    assert params == DosimetryParams(administered_activity_gbq=1.0) and factors is None and warnings == []
    assert record["header"]["modality"] == "NM"


# -- pixels and geometry -----------------------------------------------------------------------
def test_each_slice_keeps_its_own_rescale_slope_even_when_the_first_is_one(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 50.0, (5, 6, 7))
    slopes = [1.0, 0.0017, 0.0021, 0.0009, 0.0013]
    values[0] = np.round(values[0])
    _, stored, slopes = write_image_series(str(tmp_path / "p"), values, (2, 2, 3), (0, 0, 0), modality="PT", slopes=slopes,
                                           attributes=pet_attributes())
    v = read_image(str(tmp_path / "p"), "PET image")
    np.testing.assert_allclose(v.array, (stored * np.array(slopes)[:, None, None]).astype(np.float32), rtol=1e-7)


def test_slices_are_sorted_along_their_normal_whatever_the_file_order(tmp_path):
    values = np.arange(4 * 5 * 6, dtype=float).reshape(4, 5, 6)
    reversed_z = (1, 0, 0, 0, 1, 0, 0, 0, -1)
    write_image_series(str(tmp_path / "ct"), values, (1.0, 1.5, 2.5), (10, 20, 30), reversed_z, slopes=[1.0] * 4)
    v = read_image(str(tmp_path / "ct"), "CT image")
    np.testing.assert_array_equal(v.array, values[::-1])  # k runs along +normal (+z) after reading
    assert v.origin_mm == pytest.approx((10, 20, 30 - 3 * 2.5))
    assert v.spacing_mm == pytest.approx((1.0, 1.5, 2.5))


def test_missing_slice_duplicate_slice_and_sheared_stacks_are_refused(tmp_path):
    values = np.ones((5, 4, 4))
    write_image_series(str(tmp_path / "gap"), values, (1, 1, 2), (0, 0, 0), slopes=[1.0] * 5)
    os.remove(sorted((tmp_path / "gap").iterdir())[2])
    with pytest.raises(GeometryError, match="slice spacing varies from 2.000 to 4.000 mm"):
        read_image(str(tmp_path / "gap"), "CT image")
    study = new_study()
    uid = pydicom.uid.generate_uid()
    write_image_series(str(tmp_path / "dup"), values, (1, 1, 2), (0, 0, 0), slopes=[1.0] * 5, study=study, series_uid=uid)
    write_image_series(str(tmp_path / "dup" / "again"), values[:1], (1, 1, 2), (0, 0, 0), slopes=[1.0], study=study,
                       series_uid=uid, series_number=2)
    with pytest.raises(GeometryError, match="two slices lie at the same position"):
        read_image(str(tmp_path / "dup"), "CT image")
    tilt = lambda k: {"ImagePositionPatient": [f"{0.3 * k:.3f}", "0", f"{2.0 * k:.3f}"]}  # noqa: E731
    write_image_series(str(tmp_path / "tilt"), values, (1, 1, 2), (0, 0, 0), slopes=[1.0] * 5, per_slice=tilt)
    with pytest.raises(GeometryError, match="sheared"):
        read_image(str(tmp_path / "tilt"), "CT image")


def test_nm_multiframe_spect_with_rescale_slope(tmp_path):
    values = np.random.default_rng(2).uniform(0, 900.0, (6, 8, 10))
    stored, slope = write_nm_multiframe(str(tmp_path / "nm.dcm"), values, (4.0, 4.0, 5.0), (-20, -20, 7))
    v = read_image(str(tmp_path / "nm.dcm"), "SPECT image")
    np.testing.assert_allclose(v.array, (stored * slope).astype(np.float32), rtol=1e-7)
    assert v.spacing_mm == pytest.approx((4.0, 4.0, 5.0)) and v.origin_mm == pytest.approx((-20, -20, 7))


# -- folders with several series ---------------------------------------------------------------
def _mixed_folder(tmp_path):
    study = new_study()
    values = np.ones((3, 4, 5))
    top = tmp_path / "export"
    pet = write_image_series(str(top / "a"), values * 100, (2, 2, 2), (0, 0, 0), modality="PT", study=study,
                             attributes=pet_attributes(radiopharm=radiopharmaceutical(start_datetime="20240502143000")))[0]
    ct = write_image_series(str(top / "b"), values * 40, (1, 1, 2), (0, 0, 0), modality="CT", study=study, series_number=2)[0]
    return str(top), study, pet, ct


def test_a_folder_with_pet_and_ct_gives_each_input_its_modality(tmp_path):
    top, _, pet, ct = _mixed_folder(tmp_path)
    assert read_image(top, "PET image", modalities=("PT",)).array.max() == pytest.approx(100, rel=1e-4)
    assert read_image(top, "CT image", modalities=("CT",)).array.max() == pytest.approx(40, rel=1e-4)


def test_several_candidate_series_are_refused_listing_them_and_chosen_with_series(tmp_path):
    top, study, _, _ = _mixed_folder(tmp_path)
    uid = pydicom.uid.generate_uid()
    write_image_series(os.path.join(top, "c"), np.full((3, 4, 5), 7.0), (2, 2, 2), (0, 0, 0), modality="PT", study=study,
                       series_uid=uid, series_number=3, description="PET second", attributes=pet_attributes())
    with pytest.raises(InputError, match=r"holds several PT series: .*PET second.*--series UID.*dicom-ls"):
        read_image(top, "PET image", modalities=("PT",))
    assert read_image(top, "PET image", modalities=("PT",), series_uids=(uid,)).array.max() == pytest.approx(7.0, rel=1e-4)


def test_series_uid_not_in_the_inputs_is_refused(tmp_path):
    folder, lab, _ = _pet_case(tmp_path)
    with pytest.raises(InputError, match=r"--series 1.2.3.4.5.6: matches no series of the inputs"):
        _inputs(folder, lab, series_uids=("1.2.3.4.5.6",))


def test_empty_folder_gives_one_clear_message_and_no_gdcm_warning(tmp_path, capfd):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("not DICOM")
    with pytest.raises(InputError, match="holds no DICOM series"):
        read_image(str(tmp_path / "e"), "PET image")
    err = capfd.readouterr().err
    assert "WARNING" not in err and "GDCM" not in err


def test_dicom_ls_lists_every_series(tmp_path, capsys):
    top, _, _, _ = _mixed_folder(tmp_path)
    assert main(["dicom-ls", top]) == 0
    out = capsys.readouterr().out
    assert "PT" in out and "CT" in out and "PET Image" in out and "CT Image" in out
    assert main(["dicom-ls", str(tmp_path / "nope")]) == 2


# -- command line ------------------------------------------------------------------------------
def test_run_with_a_dicom_pet_takes_the_timing_from_the_header(tmp_path, capsys):
    folder, lab, _ = _pet_case(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--pet", folder, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--out", str(out),
                 "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "timing from the DICOM header: 19.7500 h since administration" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["parameters"]["hours_since_administration"] == pytest.approx(19.75)
    assert m["inputs"]["timing_source"] == "DICOM header"
    assert m["summary"]["decay_correction_factor"] == pytest.approx(2.0 ** (19.75 / HALF_LIFE_H), rel=1e-9)
    out2 = tmp_path / "out2"
    assert main(["run", "--pet", folder, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--out", str(out2),
                 "--no-report", "--hours-since-administration", "20"]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["parameters"]["hours_since_administration"] == 20.0 and m2["inputs"]["timing_source"] == "command line"


def test_a_series_uid_for_the_pet_does_not_take_the_ct_input_of_the_same_folder(tmp_path):
    top, study, _, ct_paths = _mixed_folder(tmp_path)
    uid = pydicom.uid.generate_uid()
    write_image_series(os.path.join(top, "c"), np.full((3, 4, 5), 7.0), (2, 2, 2), (0, 0, 0), modality="PT", study=study,
                       series_uid=uid, series_number=3, description="PET second", attributes=pet_attributes())
    assert read_image(top, "PET image", modalities=("PT",), series_uids=(uid,)).array.max() == pytest.approx(7.0, rel=1e-4)
    assert read_image(top, "CT image", modalities=("CT",), series_uids=(uid,)).array.max() == pytest.approx(40.0, rel=1e-4)


def test_quantitative_nm_spect_is_read_in_bq_per_ml_through_its_real_world_value_mapping(tmp_path):
    from pydicom.dataset import Dataset

    act, seg = box_case()
    rwv, unit = Dataset(), Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    rwv.MeasurementUnitsCodeSequence = [unit]
    rwv.RealWorldValueSlope, rwv.RealWorldValueIntercept = 2500.0, 0.0
    rwv.RealWorldValueFirstValueMapped, rwv.RealWorldValueLastValueMapped = 0, 65535
    path = str(tmp_path / "qspect.dcm")
    stored, slope = write_nm_multiframe(path, act.array.astype(float) * 40.0, act.spacing_mm, act.origin_mm, slope=0.5,
                                        attributes={"RealWorldValueMappingSequence": [rwv]})
    lab = str(tmp_path / "labels.nii.gz")
    write_image(act.with_array(seg.mask("liver").astype(np.uint8) + seg.mask("tumour")), lab, dtype=np.uint8)
    case = read_case_inputs(path, lab, labels="1=liver,2=tumour", modality="spect",
                            params=DosimetryParams(calibration="absolute", hours_since_administration=20.0),
                            dicom=DicomOptions(timing_overridden=True, quantitative_explicit=True))
    np.testing.assert_allclose(case.activity.array, (stored * 2500.0).astype(np.float32), rtol=1e-6)
    assert case.info["activity_dicom"]["header"]["units"] == "BQML"
    assert any("Real World Value Mapping" in w for w in case.warnings)
