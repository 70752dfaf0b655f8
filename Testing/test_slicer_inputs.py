"""The panel's inputs wired to the engine (issues 10 and 12, "In Slicer"): PET timing and units from the DICOM
header of a volume loaded from Slicer's DICOM database, a dose map evaluated instead of computed, the dry
run ("Check inputs"), the DICOM and PDF exports, and the panel's verdict in the engine's words.

Run against the stand-ins of Testing/slicer_standins.py (real VTK, the real engine), with a stand-in for
Slicer's DICOM database that reads the synthetic series' files (Testing/test_slicer_dicom_glue.py).
"""

import json
import os
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("vtk", reason="vtk is not installed")
pydicom = pytest.importorskip("pydicom")

import slicer_standins as st  # noqa: E402
from conftest import box_case  # noqa: E402
from dicom_synth import pet_attributes, radiopharmaceutical  # noqa: E402
from test_dicom_in import _pet_case  # noqa: E402
from test_slicer_dicom_glue import FakeDatabase, _uids_in_slice_order  # noqa: E402
from test_slicer_glue import FakeSubjectHierarchy, _fake_pn, _fake_widget, _segmentation_node  # noqa: E402

from TAREDosimetryLib import mrmlconvert as mc  # noqa: E402
from TAREDosimetryLib.errors import InputError  # noqa: E402
from TAREDosimetryLib.imaging import read_image  # noqa: E402
from TAREDosimetryLib.params import DosimetryParams  # noqa: E402

LABELS = "1=liver,2=tumour"


@pytest.fixture
def mod(monkeypatch):
    module, slicer = st.install(monkeypatch)
    module.slicer_standin = slicer
    slicer.util.arrayFromVolume = lambda node: node.array
    from TAREDosimetrySlicer.dicomtiming import DicomActivityHeader

    DicomActivityHeader._headerCache = {}
    return module


class FakeVolumeNode(st.FakeNode):
    """A scalar volume node holding an engine Volume's voxels and geometry (arrayFromVolume returns .array)."""

    def __init__(self, volume, name, attributes=None, units=""):
        super().__init__(name, "vtkMRMLScalarVolumeNode")
        self.array = np.asarray(volume.array)
        self.ijk_to_ras = mc.ijk_to_ras_from_grid(volume.grid)
        self.attributes.update(attributes or {})
        self.units = units

    def GetImageData(self):
        return object()

    def GetIJKToRASMatrix(self, m):
        m.DeepCopy(st._vtk_matrix(self.ijk_to_ras))

    def GetVoxelValueUnits(self):
        return SimpleNamespace(GetCodeValue=lambda: self.units) if self.units else None


def _dicom_pet(mod, tmp_path, attributes=None):
    """(PET node loaded 'from DICOM', segmentation node, folder, label path, logic)."""
    folder, lab, _ = _pet_case(tmp_path, attributes=attributes)
    uids, files = _uids_in_slice_order(folder)
    mod.slicer_standin.dicomDatabase = FakeDatabase(files)
    node = FakeVolumeNode(read_image(folder, "PET image"), "PET", {"DICOM.instanceUIDs": uids})
    from TAREDosimetryLib.imaging.segmentation_io import read_segmentation

    logic, segNode = _segmentation_node(mod, read_segmentation(lab, label_names=LABELS))
    return node, segNode, folder, lab, logic


def _compute(logic, node, segNode, params, **options):
    from TAREDosimetryLib import panel

    step = panel.RunProgress()
    case = logic.readNodes(node, segNode, None, params, step, **options)
    return logic.computeCase(case, rules="hcc-glass", step=step)


# -- 1. PET timing from the loaded volume's DICOM attributes -----------------------------------------------

def test_the_header_gives_the_timing_of_an_absolute_pet_as_the_command_line_does(mod, tmp_path):
    from TAREDosimetryLib.batch import run_case_files

    node, segNode, folder, lab, logic = _dicom_pet(mod, tmp_path)
    params = DosimetryParams(calibration="absolute", lung_shunt_fraction=0.05)
    result = _compute(logic, node, segNode, params)
    assert result.params.hours_since_administration == pytest.approx(19.75, rel=1e-12)
    assert result.inputs["timing_source"] == "DICOM header" and result.inputs["activity_dicom"]["source"]["node"] == "PET"
    cli, _ = run_case_files(folder, lab, labels=LABELS, modality="pet", params=params, rules="hcc-glass")
    assert result.summary["decay_correction_factor"] == pytest.approx(cli.summary["decay_correction_factor"], rel=1e-12)
    for a, b in zip(result.segments, cli.segments):
        assert a.metrics["mean_gy"] == pytest.approx(b.metrics["mean_gy"], rel=1e-6), a.name


def test_the_panels_hours_override_the_header_and_the_difference_is_said(mod, tmp_path):
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path)
    result = _compute(logic, node, segNode, DosimetryParams(calibration="absolute", lung_shunt_fraction=0.05,
                                                            hours_since_administration=30.0))
    assert result.params.hours_since_administration == 30.0 and result.inputs["timing_source"] == "panel"
    assert any("30 h given overrides the header's 19.750 h" in w for w in result.warnings)


def test_the_header_satisfies_the_timing_requirement_only_when_it_has_one(mod, tmp_path):
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path)
    pn = _fake_pn(mod, segNode, activity=node, calibration=mod.CalibrationMode.absolute)
    assert logic.whyNotRunnable(pn) == ""
    plain = FakeVolumeNode(read_image(_pet_case(tmp_path / "x")[0], "PET image"), "PET from NRRD")
    reason = logic.whyNotRunnable(_fake_pn(mod, segNode, activity=plain, calibration=mod.CalibrationMode.absolute))
    assert "'Hours since administration'" in reason and "--" not in reason
    folder, _, _ = _pet_case(tmp_path, attributes=pet_attributes(radiopharm=None), name="undated")  # no administration time
    uids, files = _uids_in_slice_order(folder)
    mod.slicer_standin.dicomDatabase.by_uid.update(FakeDatabase(files).by_uid)
    undated = FakeVolumeNode(read_image(folder, "PET image"), "undated", {"DICOM.instanceUIDs": uids})
    reason = logic.whyNotRunnable(_fake_pn(mod, segNode, activity=undated, calibration=mod.CalibrationMode.absolute))
    assert "'Hours since administration'" in reason


def test_counts_in_the_header_refuse_absolute_calibration_in_the_panels_words(mod, tmp_path):
    attrs = pet_attributes(units="CNTS", radiopharm=radiopharmaceutical(start_datetime="20240502143000"))
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path, attributes=attrs)
    with pytest.raises(InputError) as err:
        _compute(logic, node, segNode, DosimetryParams(calibration="absolute", lung_shunt_fraction=0.05))
    from TAREDosimetryLib import panel

    message = panel.in_panel_words(err.value)
    assert "counts (Units CNTS), not Bq/mL" in message and "'Relative (scale counts to administered activity)'" in message
    assert "--" not in message
    result = _compute(logic, node, segNode, DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05))
    assert result.params.calibration == "relative" and "timing_source" not in result.inputs


def test_another_radionuclide_is_refused_unless_allowed(mod, tmp_path):
    attrs = pet_attributes(radiopharm=radiopharmaceutical(start_datetime="20240502143000", half_life_s=6586.2))  # F-18
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path, attributes=attrs)
    params = DosimetryParams(calibration="absolute", lung_shunt_fraction=0.05)
    with pytest.raises(InputError, match="not Y-90"):
        _compute(logic, node, segNode, params)
    result = _compute(logic, node, segNode, params, allowOtherRadionuclide=True)
    assert any("computed as Y-90" in w for w in result.warnings)


def test_read_timing_button_shows_the_header_and_sets_the_calibration_from_its_units(mod, tmp_path):
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path)
    pn = _fake_pn(mod, segNode, activity=node)
    section, ui, said = _input_section(mod, logic, pn)
    section.update(pn)
    assert "19.7500 h" in ui.dicomTimingLabel.text and "Bq/mL" in ui.dicomTimingLabel.text and ui.readDicomTimingButton.enabled
    section.onReadDicomHeader()
    assert pn.calibration == mod.CalibrationMode.absolute and "absolute calibration" in said[-1]
    pn.hoursAfterAdministration = 20.0
    section.update(pn)
    assert "override it" in ui.dicomTimingLabel.text
    pn.activityVolume = FakeVolumeNode(read_image(_pet_case(tmp_path / "y")[0], "PET image"), "nrrd")
    section.update(pn)
    assert not ui.readDicomTimingButton.enabled and "not loaded from Slicer's DICOM database" in ui.dicomTimingLabel.text


class _W:
    def __init__(self):
        self.enabled, self.text, self.toolTip, self.visible, self.font = True, "", "", True, SimpleNamespace(setFamily=lambda f: None)

    def connect(self, signal, slot):
        pass

    def setVisible(self, v):
        self.visible = v

    def setPlainText(self, text):
        self.text = text


def _input_section(mod, logic, pn):
    from TAREDosimetrySlicer import inputpanel

    inputpanel.qt = SimpleNamespace(QFontDatabase=SimpleNamespace(FixedFont=1, systemFont=lambda f: SimpleNamespace(family=lambda: "mono")))
    names = ("readDicomTimingButton", "checkInputsButton", "exportSlicerRtButton", "checkInputsText", "doseUnitComboBox",
             "inputIsDoseCheckBox", "doseInputLabel", "activityCollapsibleButton", "doseCollapsibleButton", "dicomTimingLabel",
             "exportButton")
    ui = SimpleNamespace(**{n: _W() for n in names})
    said = []
    return inputpanel.InputSection(ui, logic, lambda: pn, said.append), ui, said


# -- 3. Evaluate an existing dose volume -----------------------------------------------------------------

def _dose_case(mod, units="Gy", attributes=None, scale=1.0):
    from TAREDosimetryLib.pipeline import run_case

    act, seg = box_case()
    computed = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05))
    dose = computed.dose_gy.with_array(computed.dose_gy.array * np.float32(scale))
    node = FakeVolumeNode(dose, "MC dose", attributes, units=units)
    logic, segNode = _segmentation_node(mod, seg)
    return node, segNode, logic, computed


def test_a_slicerrt_dose_volume_is_evaluated_not_computed_with_the_engines_numbers(mod):
    from TAREDosimetryLib.pipeline import evaluate_dose_case

    node, segNode, logic, computed = _dose_case(mod, units="", attributes={"DicomRtImport.DoseVolume": "1"})
    sh = FakeSubjectHierarchy()
    mod.slicer_standin.mrmlScene.sh = sh
    study = sh.CreateStudyItem(sh.CreateSubjectItem(1, "P"), "S")
    sh.CreateItem(study, node)
    sh.SetItemAttribute(study, "DicomRtImport.DoseUnitName", "GY")
    assert logic.isDoseInput(node)
    result = _compute(logic, node, segNode, DosimetryParams(), doseInput=True)
    assert result.summary["dose_source"] == "external" and result.summary["dose_map"]["unit_source"] == \
        "its study's DicomRtImport.DoseUnitName"
    expected = evaluate_dose_case(computed.dose_gy, logic.segmentationFromNode(segNode), rules="hcc-glass")
    for a, b in zip(result.segments, expected.segments):
        assert a.metrics["mean_gy"] == pytest.approx(b.metrics["mean_gy"], rel=1e-9)
    assert result.inputs["dose"] == "MC dose" and result.summary["dose_device"].startswith("none")


def test_a_dose_in_cgy_is_converted_and_conflicting_or_missing_units_are_refused(mod):
    node, segNode, logic, computed = _dose_case(mod, units="cGy", scale=100.0)
    result = _compute(logic, node, segNode, DosimetryParams(), doseInput=True)
    tumour = computed.segment("tumour").metrics["mean_gy"]
    assert result.segment("tumour").metrics["mean_gy"] == pytest.approx(tumour, rel=1e-6)
    with pytest.raises(InputError, match="voxel value units say cGy, the panel's 'Dose unit' say Gy; they disagree"):
        _compute(logic, node, segNode, DosimetryParams(), doseInput=True, doseUnit="Gy")
    node.units = ""
    with pytest.raises(InputError, match="does not say its unit"):
        _compute(logic, node, segNode, DosimetryParams(), doseInput=True)
    node.units = "[hnsf'U]"
    with pytest.raises(InputError, match="not a dose unit"):
        _compute(logic, node, segNode, DosimetryParams(), doseInput=True)


def test_dose_mode_needs_no_activity_or_timing_but_a_unit(mod):
    node, segNode, logic, _ = _dose_case(mod, units="")
    pn = _fake_pn(mod, segNode, activity=node, inputIsDose=True, administeredActivityGBq=0.0,
                  calibration=mod.CalibrationMode.absolute)
    assert "choose Gy, cGy or mGy under 'Dose unit'" in logic.whyNotRunnable(pn)
    pn.doseUnit = mod.DoseUnit.Gy
    assert logic.whyNotRunnable(pn) == ""
    before = logic.inputsSignature(pn)
    pn.doseUnit = mod.DoseUnit.mGy
    assert logic.inputsSignature(pn) != before, "a changed dose unit makes the stored result not current"
    section, ui, _ = _input_section(mod, logic, pn)
    section.update(pn)
    assert not ui.activityCollapsibleButton.enabled and not ui.doseCollapsibleButton.enabled and ui.doseUnitComboBox.enabled
    assert "Dose map in mGy" in ui.doseInputLabel.text


def test_run_passes_the_panels_dose_mode_to_the_engine(mod):
    node, segNode, logic, _ = _dose_case(mod, units="Gy")
    for name in ("updateOutputNodes", "storeResult", "tagOutputs", "groupUnderStudy"):
        setattr(logic, name, lambda *a, **k: None)
    result = logic.run(node, segNode, show=False, doseInput=True)
    assert result.summary["dose_source"] == "external" and set(logic.lastInputs) == {"dose", "segmentation", "ct"}


# -- 4. Check inputs (dry run) -----------------------------------------------------------------------------

def test_check_inputs_lists_segments_roles_and_rules_without_computing(mod, tmp_path):
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path)
    pn = _fake_pn(mod, segNode, activity=node, calibration=mod.CalibrationMode.absolute, rulePreset="hcc-glass", rulesJson="")
    logic.makeDoseFunction = lambda **k: pytest.fail("the dry run computed a dose")
    lines = logic.previewPanelCase(pn)
    text = "\n".join(lines)
    assert lines[0].startswith("dry run") and "tumour" in text and "rules (hcc-glass" in text
    assert "the run would stop" not in text


def test_check_inputs_says_what_the_header_refuses_and_still_lists_the_segments(mod, tmp_path):
    attrs = pet_attributes(units="CNTS", radiopharm=radiopharmaceutical(start_datetime="20240502143000"))
    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path, attributes=attrs)
    pn = _fake_pn(mod, segNode, activity=node, calibration=mod.CalibrationMode.absolute, rulePreset="hcc-glass", rulesJson="",
                  hoursAfterAdministration=20.0)
    section, ui, said = _input_section(mod, logic, pn)
    section.onCheckInputs()
    assert ui.checkInputsText.visible and "tumour" in ui.checkInputsText.text
    stop = [line for line in ui.checkInputsText.text.splitlines() if line.startswith("the run would stop")]
    assert stop and "not Bq/mL" in stop[0] and "'Relative" in stop[0] and "1 problem(s)" in said[-1]


# -- 2. Exports: RT Dose in the patient's study, SEG/SR, PDF; SlicerRT route ---------------------------------

def test_export_writes_the_rt_dose_into_the_studys_folder_and_adds_it_to_the_database(mod, tmp_path, monkeypatch):
    node, segNode, folder, _, logic = _dicom_pet(mod, tmp_path)
    params = DosimetryParams(calibration="absolute", lung_shunt_fraction=0.05)
    result = _compute(logic, node, segNode, params)
    added = []

    class Indexer:
        def addListOfFiles(self, db, files, copy):
            added.append((files, copy))

        def waitForImportFinished(self):
            pass

    monkeypatch.setitem(sys.modules, "ctk", types.SimpleNamespace(ctkDICOMIndexer=Indexer))
    mod.slicer_standin.dicomDatabase.isOpen = True
    pn = _fake_pn(mod, segNode, activity=node, exportDirectory=str(tmp_path / "out"), caseName="P1", exportOverwrite=False,
                  resultRecord=object(), ctVolume=None, doseVolume=None, exportRtDose=True)
    logic.whyResultNotCurrent = lambda record, signature: ""
    logic.resultFromScene = lambda record, dose=None: result
    out = logic.exportCase(pn, report=False)
    ds = pydicom.dcmread(os.path.join(out, "dose.dcm"))
    pet = pydicom.dcmread(os.path.join(folder, sorted(os.listdir(folder))[0]), stop_before_pixels=True)
    assert ds.Modality == "RTDOSE" and ds.StudyInstanceUID == pet.StudyInstanceUID and ds.FrameOfReferenceUID == pet.FrameOfReferenceUID
    assert added == [([os.path.join(out, "dose.dcm")], False)]
    m = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert m["inputs"]["timing_source"] == "DICOM header"


def test_export_asks_for_missing_packages_and_slicerrt_needs_the_ct(mod, monkeypatch):
    logic = mod.TAREDosimetryLogic()
    pn = SimpleNamespace(exportRtDose=False, exportDicomSeg=True, exportDicomSr=False, exportPdf=False)
    asked = []
    logic.ensurePackage = lambda name, req, why, askUser: asked.append(name) or name != "highdicom"
    with pytest.raises(InputError, match="highdicom is not installed"):
        logic.ensureExportDependencies(pn, askUser=True)
    assert asked == ["pydicom", "highdicom"]
    pn = SimpleNamespace(resultRecord=object(), ctVolume=None)
    logic.whyResultNotCurrent = lambda record, signature: ""
    logic.inputsSignature = lambda pn: ""
    with pytest.raises(InputError, match="needs the CT"):
        logic.exportCaseWithSlicerRT(pn)


# -- the verdict in the engine's words -------------------------------------------------------------------

def test_the_panel_summary_speaks_the_reports_words(mod, tmp_path):
    from TAREDosimetryLib.reporting.wording import banner

    node, segNode, _, _, logic = _dicom_pet(mod, tmp_path)
    result = _compute(logic, node, segNode, DosimetryParams(calibration="absolute", lung_shunt_fraction=0.05))
    pn = _fake_pn(mod, segNode, activity=node, resultRecord=st.FakeTextNode("r"))
    pn.resultRecord.SetText("{}")
    w = _fake_widget(mod, logic, pn)
    logic.storedSummary = lambda record: result
    logic.whyResultNotCurrent = lambda record, signature: ""
    w._showResult(pn)
    first = w.ui.summaryLabel.text.splitlines()[0]
    assert first == banner(result)["headline"] and first.split(":")[0] == result.overall_status
    assert "mean_gy" not in w.ui.summaryLabel.text


def test_an_unreadable_dicom_file_is_said_in_the_panel_not_raised_into_it(mod, tmp_path):
    node, segNode, folder, _, logic = _dicom_pet(mod, tmp_path)
    first = sorted(os.path.join(folder, f) for f in os.listdir(folder))[0]
    with open(first, "wb") as fh:
        fh.write(b"not DICOM any more")
    from TAREDosimetrySlicer.dicomtiming import DicomActivityHeader

    line = DicomActivityHeader.describeTiming(node)
    assert line.startswith("DICOM header: volume 'PET': its DICOM files could not be read")
    pn = _fake_pn(mod, segNode, activity=node, calibration=mod.CalibrationMode.absolute)
    assert "'Hours since administration'" in logic.whyNotRunnable(pn)
    with pytest.raises(InputError, match="could not be read"):
        _compute(logic, node, segNode, DosimetryParams(calibration="absolute", hours_since_administration=20.0))
