"""The node-free half of the Slicer panel (TAREDosimetryLib.panel): panel fields to engine
parameters (with engines that have or lack a field), volume choice, case folders, signatures."""

import dataclasses
import os

import pytest

from TAREDosimetryLib import panel
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.params import DosimetryParams


def _values(**changes):
    values = dict(
        calibration="relative", administeredActivityGBq=1.8, residualPercent=2.0, lungShuntFractionPercent=8.0,
        referenceRegion="liver", hoursAfterAdministration=panel.NOT_GIVEN, imageDecayCorrected=False,
        doseMethod="dvk", computeDevice="cpu", kGyKgPerGBq=49.67, halfLifeH=64.05, tissueDensityGPerMl=1.05,
        lungDensityGPerMl=0.28, densityFromCt=False, defaultLungMassG=900.0, lungDoseFrom="lsf", dvkLungMode="ldm",
        dvkRadiusMm=9.0, sampling="linear", dvhBinWidthGy=0.0, dvhCurveStepGy=0.2, dLevelsPct="50, 70, 90",
        vLevelsGy="100 205", eudAlphaPerGy=0.03, tumorAlphaBetaGy=12.0, normalAlphaBetaGy=3.0, tRepairH=2.0,
        priorLungDoseGy=12.5, microsphere="glass", indication="hcc", treatmentApproach="", bilirubinMgDl=1.4,
        hepaticReservePercent=panel.NOT_GIVEN, allowUnusualActivity=False, phase="post",
    )
    values.update(changes)
    return values


def test_every_panel_field_reaches_its_engine_parameter():
    p = panel.engine_params(_values())
    assert (p.method, p.device, p.dvk_lung_mode, p.dvk_radius_mm, p.sampling) == ("dvk", "cpu", "ldm", 9.0, "linear")
    assert p.residual_fraction == pytest.approx(0.02) and p.lung_shunt_fraction == pytest.approx(0.08)
    assert p.prior_lung_dose_gy == 12.5 and p.default_lung_mass_g == 900.0 and p.lung_dose_from == "lsf"
    assert p.d_levels_pct == (50.0, 70.0, 90.0) and p.v_levels_gy == (100.0, 205.0)
    assert p.dvh_bin_width_gy is None and p.dvh_curve_step_gy == 0.2
    assert (p.eud_alpha_per_gy, p.tumor_alpha_beta_gy, p.normal_alpha_beta_gy, p.t_repair_h) == (0.03, 12.0, 3.0, 2.0)
    assert (p.tissue_density_g_ml, p.lung_density_g_ml, p.density_from_ct, p.half_life_h) == (1.05, 0.28, False, 64.05)


def test_every_engine_parameter_has_a_panel_field():
    """The panel can reproduce any manifest row: every DosimetryParams field is on the panel."""
    mapped = {engine for _, engine, _, _ in panel.PANEL_FIELDS}
    missing = sorted(set(panel.engine_fields()) - mapped)
    assert not missing, f"DosimetryParams fields without a panel field: {missing}"


def test_not_given_numbers_use_the_engine_default_when_it_cannot_say_unknown():
    kwargs, _ = panel.engine_param_kwargs(_values(lungShuntFractionPercent=panel.NOT_GIVEN))
    default = DosimetryParams().lung_shunt_fraction
    if default is None:  # the engine knows "unknown": None is passed and judged by the engine
        assert kwargs["lung_shunt_fraction"] is None
    else:  # an older engine: its default applies, as before
        assert "lung_shunt_fraction" not in kwargs
    assert "hours_since_administration" not in kwargs or kwargs["hours_since_administration"] is None


# Stand-ins for the engine's parameter class before and after the clinical fields were added.
@dataclasses.dataclass(frozen=True)
class _OldParams:
    calibration: str = "relative"
    lung_shunt_fraction: float = 0.0
    prior_lung_dose_gy: float = 0.0


@dataclasses.dataclass(frozen=True)
class _NewParams(_OldParams):
    lung_shunt_fraction: float = None
    microsphere: str = None
    indication: str = None
    treatment_approach: str = None
    bilirubin_mg_dl: float = None
    hepatic_reserve_pct: float = None
    allow_unusual_activity: bool = False


def test_clinical_inputs_are_passed_only_to_an_engine_that_has_them():
    values = _values(lungShuntFractionPercent=panel.NOT_GIVEN)
    old_kwargs, old_skipped = panel.engine_param_kwargs(values, _OldParams)
    assert old_kwargs == {"calibration": "relative", "prior_lung_dose_gy": 12.5}
    assert {"microsphere", "indication", "bilirubinMgDl", "hepaticReservePercent", "allowUnusualActivity"} <= set(old_skipped)
    new_kwargs, new_skipped = panel.engine_param_kwargs(values, _NewParams)
    assert new_kwargs["microsphere"] == "glass" and new_kwargs["indication"] == "hcc"
    assert new_kwargs["bilirubin_mg_dl"] == 1.4
    assert new_kwargs["hepatic_reserve_pct"] is None and new_kwargs["treatment_approach"] is None
    assert new_kwargs["lung_shunt_fraction"] is None  # "not given" reaches an engine that can say unknown
    assert "microsphere" not in new_skipped
    assert panel.engine_params(values, _NewParams).bilirubin_mg_dl == 1.4


def test_panel_values_are_the_inverse_of_the_mapping():
    p = panel.engine_params(_values())
    again = panel.engine_params(dict(_values(), **panel.panel_values(p)))
    assert again == p
    shown = panel.panel_values(DosimetryParams(lung_shunt_fraction=0.05, dvh_bin_width_gy=None))
    assert shown["lungShuntFractionPercent"] == pytest.approx(5.0) and shown["dvhBinWidthGy"] == 0.0


@pytest.mark.parametrize("text, expected", [("2, 50, 98", (2.0, 50.0, 98.0)), ("70;90", (70.0, 90.0)), (" 100 ", (100.0,))])
def test_levels_are_read_from_text(text, expected):
    assert panel.parse_levels(text) == expected
    assert panel.parse_levels(panel.format_levels(expected)) == expected


@pytest.mark.parametrize("text", ["", "50, lots", "D90"])
def test_bad_levels_name_the_field(text):
    with pytest.raises(InputError, match="D levels"):
        panel.engine_params(_values(dLevelsPct=text))


def test_bad_engine_values_are_refused_by_the_engine_with_its_message():
    with pytest.raises(InputError, match="dvk_radius_mm"):
        panel.engine_params(_values(dvkRadiusMm=0.5))


def test_activity_volume_prefers_nm_pt_and_never_offers_a_ct():
    ct = {"id": "ct", "name": "CT abdomen", "modality": "CT"}
    label = {"id": "lab", "name": "SPECT labels", "modality": "", "excluded": True}
    spect_file = {"id": "s", "name": "patient_2_SPECT", "modality": ""}
    pet = {"id": "pet", "name": "Y90 recon", "modality": "PT"}
    assert panel.pick_activity_volume([ct, label, spect_file, pet]) == "pet"
    assert panel.pick_activity_volume([ct, label, spect_file]) == "s"
    assert panel.pick_activity_volume([ct, label, {"id": "x", "name": "volume 1", "modality": ""}]) is None
    assert panel.pick_activity_volume([{"id": "ct2", "name": "PET-CT attenuation", "modality": "CT"}]) is None


def test_export_goes_into_a_case_folder_never_the_chosen_folder(tmp_path):
    folder = panel.case_export_folder(str(tmp_path), panel.case_name("", "patient 2 / SPECT"))
    assert os.path.dirname(folder) == str(tmp_path) and os.path.basename(folder) == "patient 2 _ SPECT"
    assert panel.case_export_folder("/out", panel.case_name("P001 pre", "SPECT")) == os.path.join("/out", "P001 pre")
    with pytest.raises(InputError, match="output folder"):
        panel.case_export_folder("", "x")
    assert panel.safe_folder_name("..") == "case" and panel.case_name("", "") == "case"


def test_signature_changes_with_any_input():
    base = {"activity": "vtkMRMLScalarVolumeNode1", "params": DosimetryParams().to_dict(), "roles": {"T": "tumor"}}
    same = panel.inputs_signature(dict(base))
    assert panel.inputs_signature(base) == same
    assert panel.inputs_signature(dict(base, roles={"T": "ignore"})) != same
    assert panel.inputs_signature(dict(base, activity="vtkMRMLScalarVolumeNode2")) != same


def test_toml_rule_files_are_offered_only_when_readable(monkeypatch):
    import importlib.util

    assert panel.rule_file_filter(True) == "Rule files (*.json *.toml)"
    assert panel.rule_file_filter(False) == "Rule files (*.json)"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert panel.toml_reader_available() is False


def test_run_progress_scales_parts_and_stops_after_cancel():
    from TAREDosimetryLib.errors import CancelledError

    seen = []
    progress = panel.RunProgress(lambda f, m: seen.append((round(f, 6), m)))
    progress(0.1, "reading nodes")
    part = progress.part(0.2, 0.6)
    part(0.5, "dose")
    part(0.25, "late message")  # never goes backwards
    assert seen == [(0.1, "reading nodes"), (0.4, "dose"), (0.4, "late message")]
    progress.cancel()
    with pytest.raises(CancelledError, match="Cancel"):
        part(0.9, "dose")
    assert len(seen) == 3


def test_cancel_pressed_while_the_panel_updates_stops_at_once():
    from TAREDosimetryLib.errors import CancelledError

    progress = panel.RunProgress()
    progress.report = lambda f, m: progress.cancel()  # the click is processed during the update
    with pytest.raises(CancelledError):
        progress(0.5, "metrics")


def test_parameters_are_read_from_a_params_file_or_a_metrics_json(tmp_path):
    import json

    p = DosimetryParams(administered_activity_gbq=2.2, method="dvk", prior_lung_dose_gy=7.0)
    (tmp_path / "params.json").write_text(json.dumps(dict(p.to_dict(), future_field=1)))
    (tmp_path / "metrics.json").write_text(json.dumps({"parameters": p.to_dict(), "segments": []}))
    (tmp_path / "bad.json").write_text("[1, 2]")
    read, ignored = panel.params_from_file(str(tmp_path / "params.json"))
    assert read == p and ignored == ["future_field"]
    assert panel.params_from_file(str(tmp_path / "metrics.json"))[0] == p
    with pytest.raises(InputError, match="bad.json: expected a JSON object"):
        panel.params_from_file(str(tmp_path / "bad.json"))
    with pytest.raises(InputError, match="cannot be read"):
        panel.params_from_file(str(tmp_path / "missing.json"))


# -- issue 8's inputs on the panel ---------------------------------------------------------------------------

def test_not_given_lsf_and_pet_time_reach_the_engine_as_none_never_zero():
    p = panel.engine_params(_values(lungShuntFractionPercent=panel.NOT_GIVEN, bilirubinMgDl=panel.NOT_GIVEN))
    assert p.lung_shunt_fraction is None and p.hours_since_administration is None and p.bilirubin_mg_dl is None
    given = panel.engine_params(_values(lungShuntFractionPercent=0.0, hoursAfterAdministration=0.0, bilirubinMgDl=0.0))
    assert given.lung_shunt_fraction == 0.0 and given.hours_since_administration == 0.0 and given.bilirubin_mg_dl == 0.0


def test_partial_volume_fields_reach_the_engine():
    p = panel.engine_params(_values(resolutionFwhmMm=15.0, recoveryCoefficients="37: 0.85, 10: 0.35; 17=0.6",
                                    recoveryCoefficientAxis="volume_ml"))
    assert p.resolution_fwhm_mm == 15.0 and p.recovery_coefficient_axis == "volume_ml"
    assert p.recovery_coefficients == ((10.0, 0.35), (17.0, 0.6), (37.0, 0.85))
    none = panel.engine_params(_values(resolutionFwhmMm=0.0, recoveryCoefficients=""))
    assert none.resolution_fwhm_mm is None and none.recovery_coefficients is None
    shown = panel.panel_values(p)
    assert shown["recoveryCoefficients"] == "10: 0.35, 17: 0.6, 37: 0.85" and shown["resolutionFwhmMm"] == 15.0
    assert panel.engine_params(dict(_values(), **shown)) == p


@pytest.mark.parametrize("text, match", [("10 0.3 5", "recovery coefficients"), ("10: lots", "recovery coefficients"),
                                         ("10: 0.3", "at least 2"), ("10: 0.3, 20: 2.0", "RC at 20")])
def test_bad_recovery_coefficients_are_refused_with_a_message(text, match):
    with pytest.raises(InputError, match=match):
        panel.engine_params(_values(recoveryCoefficients=text))


def test_engine_messages_name_the_panel_fields_not_command_line_options():
    from TAREDosimetryLib.evaluation.requirements import check_required_inputs
    from TAREDosimetryLib.evaluation.rules import load_rules

    p = panel.engine_params(_values(lungShuntFractionPercent=panel.NOT_GIVEN, lungDoseFrom="lsf"))
    with pytest.raises(InputError) as info:
        check_required_inputs(p, load_rules("hcc-glass"), "lsf", [])
    text = panel.in_panel_words(info.value)
    assert "'Lung shunt fraction'" in text and "--" not in text
    pet = panel.engine_params(_values(calibration="absolute"))
    with pytest.raises(InputError) as info:
        check_required_inputs(pet, load_rules("hcc-glass"), "image", [])
    text = panel.in_panel_words(info.value)
    assert "'Hours since administration'" in text and "'Image already decay-corrected to administration'" in text and "--" not in text


# -- what an image's header says; the unit of a dose map in the scene ---------------------------------------

@pytest.mark.parametrize("units, calibration", [("BQML", "absolute"), ("bqml", "absolute"), ("CNTS", "relative"),
                                                ("GML", "relative"), ("", None), (None, None)])
def test_the_headers_units_decide_the_calibration_with_a_reason(units, calibration):
    chosen, why = panel.calibration_from_units(units)
    assert chosen == calibration and why
    if units == "CNTS":
        assert "counts (Units CNTS), not Bq/mL" in why


def test_a_dose_volumes_unit_comes_from_its_attributes_or_the_panel_and_must_agree():
    assert panel.dose_unit_of_volume("d", voxel_units="Gy") == ("Gy", "its voxel value units")
    assert panel.dose_unit_of_volume("d", study_unit="GY") == ("Gy", "its study's DicomRtImport.DoseUnitName")
    assert panel.dose_unit_of_volume("d", chosen="cGy") == ("cGy", "the panel's 'Dose unit'")
    assert panel.dose_unit_of_volume("d", voxel_units="Gy", study_unit="GY", chosen="Gy")[0] == "Gy"
    for kwargs, message in (({"study_unit": "RELATIVE"}, "RELATIVE: a relative dose cannot be judged in Gy"),
                            ({"voxel_units": "Bq/ml"}, "not a dose unit"),
                            ({"voxel_units": "mGy", "chosen": "Gy"}, "its voxel value units say mGy, the panel's 'Dose unit' say Gy"),
                            ({}, "does not say its unit: choose Gy, cGy or mGy under 'Dose unit'")):
        with pytest.raises(InputError, match=message):
            panel.dose_unit_of_volume("d", **kwargs)


def test_dicom_header_messages_name_the_panels_fields_not_command_line_options():
    from TAREDosimetryLib.imaging.dicomactivity import check_radionuclide, check_units
    from TAREDosimetryLib.imaging.dicomtiming import ActivityHeader

    messages = []
    for header, calibration in ((ActivityHeader(units="CNTS"), "absolute"), (ActivityHeader(units=""), "absolute")):
        with pytest.raises(InputError) as err:
            check_units(header, calibration)
        messages.append(str(err.value))
    messages += check_units(ActivityHeader(units=""), "absolute", quantitative_explicit=True)
    messages += check_units(ActivityHeader(units="BQML"), "relative")
    with pytest.raises(InputError) as err:
        check_radionuclide(ActivityHeader(modality="PT", radionuclide="^18^Fluorine"), 64.05)
    messages.append(str(err.value))
    messages += check_radionuclide(ActivityHeader(modality="PT", radionuclide="^18^Fluorine"), 64.05, allow_other=True)
    for message in messages:
        said = panel.in_panel_words(message)
        assert "--" not in said, said
    assert "'Allow a radionuclide other than Y-90'" in panel.in_panel_words(messages[-2])
