"""The module's Slicer glue (TAREDosimetrySlicer) and widget logic, run against stand-ins for Slicer
(Testing/slicer_standins.py) with real VTK and the real engine.  Each test names the issue-10 defect it
guards; each fails on the code before that defect was fixed."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("vtk", reason="vtk is not installed")

import slicer_standins as st  # noqa: E402

from TAREDosimetryLib.errors import CancelledError, GPUUnavailableError, InputError  # noqa: E402


@pytest.fixture
def mod(monkeypatch):
    module, slicer = st.install(monkeypatch)
    module.slicer_standin = slicer
    return module


@pytest.fixture(scope="module")
def phantom():
    from TAREDosimetryLib.imaging.phantom import make_phantom

    return make_phantom(analytic=True, spacing_mm=5.0)


def _segmentation_node(mod, segmentation):
    logic = mod.TAREDosimetryLogic()
    node = st.FakeSegmentationNode("segments")
    logic.addEngineSegments(segmentation, node)
    return logic, node


# -- defect 2: segments on their own geometry, no temporary nodes --------------------------------------

def test_segments_are_read_on_their_own_lattice_without_temporary_nodes(mod, phantom):
    from TAREDosimetryLib.pipeline import run_case

    logic, node = _segmentation_node(mod, phantom.segmentation)
    mod.slicer_standin.mrmlScene.strict = True  # any AddNewNodeByClass fails
    read = logic.segmentationFromNode(node)
    orig = phantom.segmentation
    assert read.grid.spacing_mm == orig.grid.spacing_mm and read.grid.direction == orig.grid.direction
    # The read grid is the original lattice cropped to the segments: an integer shift of the origin.
    shift = np.linalg.solve(orig.grid.direction_matrix * np.asarray(orig.grid.spacing_mm), np.subtract(read.grid.origin_mm, orig.grid.origin_mm))
    assert np.allclose(shift, np.round(shift), atol=1e-9)
    i, j, k = (int(v) for v in np.round(shift))
    nz, ny, nx = read.grid.shape
    for info in orig.segments:
        np.testing.assert_array_equal(read.mask(read.info(info.name)), orig.mask(info)[k:k + nz, j:j + ny, i:i + nx], err_msg=info.name)
        assert read.info(info.name).color == info.color
    # Same numbers as the engine on the original segmentation.
    params = phantom.params.replace(density_from_ct=False)
    a = run_case(phantom.activity, orig, params=params)
    b = run_case(phantom.activity, read, params=params)
    for x, y in zip(a.segments, b.segments):
        assert x.metrics["volume_ml"] == pytest.approx(y.metrics["volume_ml"], rel=1e-12)
        assert x.metrics["mean_gy"] == pytest.approx(y.metrics["mean_gy"], rel=1e-9)


def test_segments_of_different_extents_on_one_lattice_are_not_resampled(mod):
    from TAREDosimetryLib.volume import Grid

    logic = mod.TAREDosimetryLogic()
    node = st.FakeSegmentationNode()
    m = np.diag([-2.0, -2.0, 2.5, 1.0])  # RAS of an LPS-identity lattice, 2 x 2 x 2.5 mm
    big = np.ones((4, 5, 6), np.uint8)
    small = np.ones((2, 2, 2), np.uint8)
    for name, mask, start in (("liver", big, (0, 0, 0)), ("tumour", small, (7, 9, 3))):
        seg = st.vtkSegment()
        seg.SetName(name)
        seg.AddRepresentation("Binary labelmap", st.image_from_mask(mask, m, start))
        node.GetSegmentation().AddSegment(seg, name)
    st.vtkOrientedImageDataResample.calls.clear()
    read = logic.segmentationFromNode(node)
    assert not st.vtkOrientedImageDataResample.calls
    assert read.grid.shape == (5, 11, 9)  # k 0..4, j 0..10, i 0..8
    assert read.grid.same_as(Grid((5, 11, 9), (2.0, 2.0, 2.5), (0.0, 0.0, 0.0)))
    assert read.mask(read.info("tumour")).sum() == 8 and read.mask(read.info("liver")).sum() == big.size
    assert read.mask(read.info("tumour"))[3:5, 9:11, 7:9].all()
    assert not read.notes


def test_a_segment_on_another_lattice_is_resampled_and_said(mod):
    logic = mod.TAREDosimetryLogic()
    node = st.FakeSegmentationNode()
    fine = np.diag([-2.0, -2.0, 2.0, 1.0])
    shifted = fine.copy()
    shifted[0, 3] = -1.0  # half a voxel off the others' lattice
    for name, matrix in (("liver", fine), ("lungs", fine), ("odd", shifted)):
        seg = st.vtkSegment()
        seg.SetName(name)
        seg.AddRepresentation("Binary labelmap", st.image_from_mask(np.ones((3, 3, 3), np.uint8), matrix))
        node.GetSegmentation().AddSegment(seg, name)
    read = logic.segmentationFromNode(node)
    assert read.grid.spacing_mm == (2.0, 2.0, 2.0)
    assert any("'odd' lies on another voxel lattice" in n for n in read.notes)


def test_empty_and_duplicate_segments_are_refused_with_a_message(mod):
    logic = mod.TAREDosimetryLogic()
    node = st.FakeSegmentationNode("my segments")
    seg = st.vtkSegment()
    seg.SetName("liver")
    seg.AddRepresentation("Binary labelmap", st.image_from_mask(np.zeros((2, 2, 2), np.uint8), np.eye(4)))
    node.GetSegmentation().AddSegment(seg, "liver")
    with pytest.raises(InputError, match="every segment of 'my segments' is empty"):
        logic.segmentationFromNode(node)
    node.GetSegmentation().AddSegment(seg, "liver copy")
    with pytest.raises(InputError, match="unique; repeated: liver"):
        logic.segmentationFromNode(node)


# -- defect 1 and the VTK pipeline: every parameter, errors, Cancel, device --------------------------------

@pytest.mark.parametrize("changes", [{"method": "ldm"}, {"method": "dvk"}, {"method": "dvk", "dvk_radius_mm": 7.0},
                                     {"method": "dvk", "dvk_lung_mode": "ldm"}, {"method": "dvk", "k_gy_kg_per_gbq": 50.0}])
def test_dose_through_the_filter_equals_the_engine(mod, phantom, changes):
    from TAREDosimetryLib.dose.density import density_map_g_ml
    from TAREDosimetryLib.dose.dosemap import dose_map_gy
    from TAREDosimetryLib.volume import Volume

    params = phantom.params.replace(device="cpu", **changes)
    activity = Volume(phantom.activity.array * np.float32(1e-6), grid=phantom.activity.grid)
    lung = phantom.segmentation.mask(phantom.segmentation.info("lung right"))
    density = density_map_g_ml(activity.grid, params, lung_mask=lung)[0]
    logic = mod.TAREDosimetryLogic()
    dose = logic.makeDoseFunction()(activity, density, params, lung)
    expected = dose_map_gy(activity, density, params, lung_mask=lung)
    np.testing.assert_array_equal(dose.array, expected.array)
    assert dose.grid.same_as(activity.grid)
    assert logic.lastDoseDevice.startswith("CPU")


def test_engine_errors_arrive_with_their_message_not_an_empty_output(mod, phantom):
    from TAREDosimetryLib.dose.backend import gpu_status

    logic = mod.TAREDosimetryLogic()
    if not gpu_status()[0]:
        with pytest.raises(GPUUnavailableError, match="no GPU is usable"):
            logic.doseWithVtkFilter(phantom.activity, None, phantom.params.replace(method="dvk", device="gpu"))
    bad = np.full((2, 2, 2), 1.0, np.float32)
    from TAREDosimetryLib.volume import Volume

    with pytest.raises(InputError, match="density image dimensions"):
        logic.doseWithVtkFilter(phantom.activity, Volume(bad, (1, 1, 1)), phantom.params.replace(method="dvk", device="cpu"))


def test_cancel_from_the_progress_stops_the_filter(mod, phantom):
    logic = mod.TAREDosimetryLogic()
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if fraction > 0.15:
            raise CancelledError("stopped by the user (Cancel)")

    with pytest.raises(CancelledError):
        logic.doseWithVtkFilter(phantom.activity, None, phantom.params.replace(method="dvk", device="cpu"), progress=progress)
    assert not any("inverse" in m for m in seen)


# -- defect 3: stale results ------------------------------------------------------------------------------

def _fake_pn(mod, node, activity=None, **changes):
    cls = mod.TAREDosimetryParameterNode
    values = {name: getattr(cls, name, None) for name in cls.__annotations__}
    activity = activity or SimpleNamespace(GetImageData=lambda: object(), GetName=lambda: "SPECT", GetID=lambda: "vol1", GetAttribute=lambda key: None)
    values.update(activityVolume=activity, segmentation=node, administeredActivityGBq=1.8, lungShuntFractionPercent=8.0)
    values.update(changes)
    return SimpleNamespace(**values)


def test_a_failed_run_marks_the_stored_result_not_current(mod, phantom):
    logic, node = _segmentation_node(mod, phantom.segmentation)
    pn = _fake_pn(mod, node)
    record = st.FakeTextNode("result")
    record.SetText(json.dumps({"format": "x"}))
    record.SetAttribute("TAREDosimetry.InputsSignature", logic.inputsSignature(pn))
    pn.resultRecord = record
    assert logic.whyResultNotCurrent(record, logic.inputsSignature(pn)) == ""

    def failing_run(*args, **kwargs):
        raise InputError("the engine refused the case")

    logic.run = failing_run
    with pytest.raises(InputError, match="refused"):
        logic.process(pn, show=False)
    assert "did not finish" in logic.whyResultNotCurrent(record, logic.inputsSignature(pn))
    pn.exportDirectory = "/tmp"
    with pytest.raises(InputError, match="Export is not possible: the last calculation did not finish"):
        logic.exportCase(pn, report=False)


def test_changed_inputs_make_the_result_not_current(mod, phantom):
    logic, node = _segmentation_node(mod, phantom.segmentation)
    pn = _fake_pn(mod, node)
    record = st.FakeTextNode("result")
    record.SetText("{}")
    record.SetAttribute("TAREDosimetry.InputsSignature", logic.inputsSignature(pn))
    for change in ({"residualPercent": 5.0}, {"segmentRolesJson": '{"liver": "ignore"}'}, {"rulePreset": "hcc-resin"},
                   {"activityVolume": SimpleNamespace(GetImageData=lambda: object(), GetName=lambda: "other", GetID=lambda: "vol9",
                                                     GetAttribute=lambda key: None)}):
        assert "changed" in logic.whyResultNotCurrent(record, logic.inputsSignature(_fake_pn(mod, node, **change))), change
    assert "no result" in logic.whyResultNotCurrent(None, "x")


def _fake_widget(mod, logic, pn):
    class W:
        def __init__(self):
            self.calls = []
            self.enabled, self.toolTip, self.text, self.styleSheet = True, "", "", ""
            self.props = {}

        def setMRMLTableNode(self, node):
            self.calls.append(node)

        def setProperty(self, key, value):
            self.props[key] = value

        def property(self, key):
            return self.props.get(key)

        def setVisible(self, v):
            self.visible = v

        def setValue(self, v):
            self.value = v

        def setFormat(self, f):
            self.format = f

    ui = SimpleNamespace(**{n: W() for n in (
        "exportButton", "showStatusColorsButton", "restoreColorsButton", "showDvhButton", "metricsTableView", "summaryLabel",
        "statusLabel", "applyButton", "cancelButton", "progressBar")})
    w = mod.TAREDosimetryWidget.__new__(mod.TAREDosimetryWidget)
    w.ui, w.logic, w._parameterNode, w._run, w._observedSegmentation, w._caseActivityID = ui, logic, pn, None, None, "vol1"
    w._parameterNodeGuiTag = None
    w.updateGuiState = lambda *a: None
    return w


def test_no_table_and_no_export_without_a_stored_result(mod, phantom):
    logic, node = _segmentation_node(mod, phantom.segmentation)
    old_table = st.FakeNode("old patient metrics", "vtkMRMLTableNode")
    pn = _fake_pn(mod, node, metricsTable=old_table, resultRecord=None)
    w = _fake_widget(mod, logic, pn)
    w._showResult(pn)
    assert w.ui.metricsTableView.calls[-1] is None, "the previous patient's table stays on screen"
    assert not w.ui.exportButton.enabled and not w.ui.showStatusColorsButton.enabled
    assert w.ui.summaryLabel.text == "No results yet."


def test_scene_close_forgets_everything_in_memory(mod, phantom):
    logic, node = _segmentation_node(mod, phantom.segmentation)
    w = _fake_widget(mod, logic, None)
    logic.lastResult = "old patient"
    mod.CaseOutputs._resultCache = {"run": "old patient"}
    w.onSceneStartClose(None, None)
    assert logic.lastResult is None and mod.CaseOutputs._resultCache == {}
    assert w.ui.metricsTableView.calls[-1] is None and w._caseActivityID is None


def test_the_result_is_stored_as_a_record_and_read_back_after_the_memory_is_cleared(mod, phantom):
    from TAREDosimetryLib.pipeline import run_case

    logic = mod.TAREDosimetryLogic()
    result = run_case(phantom.activity, phantom.segmentation, params=phantom.params)
    outputs = {}
    record = logic.storeResult(result, outputs, "case A", "sig")
    assert outputs["resultRecord"] is record and record.GetAttribute("TAREDosimetry.InputsSignature") == "sig"
    assert logic.resultFromScene(record) is result  # same run: the in-memory result (exact voxel DVHs)
    logic.clearResults()
    stored = logic.resultFromScene(record)
    assert stored is not result and stored.overall_status == result.overall_status
    assert stored.to_dict() == json.loads(json.dumps(result.to_dict()))


# -- defect 7: no re-entrant Apply, Cancel -----------------------------------------------------------------

def test_apply_is_not_reentrant_and_cancel_stops_the_run(mod, phantom):
    logic, node = _segmentation_node(mod, phantom.segmentation)
    pn = _fake_pn(mod, node)
    w = _fake_widget(mod, logic, pn)
    calls = []

    def process(pn_, progress=None, show=True):
        calls.append(1)
        assert not w.ui.applyButton.enabled
        w.onApplyButton()  # a second click delivered while the first run processes events
        progress(0.2, "dose map")
        w.onCancelButton()
        progress(0.3, "dose map")  # the next progress step raises
        raise AssertionError("not reached")

    logic.process = process
    w.onApplyButton()
    assert calls == [1]
    assert "cancelled" in w.ui.statusLabel.text and w._run is None


# -- defect 4: DICOM folders through the engine's reader ---------------------------------------------------

def test_a_dicom_folder_is_loaded_with_the_engines_reader(mod, tmp_path):
    import SimpleITK as sitk

    from TAREDosimetryLib.imaging.images import read_image

    arr = np.random.default_rng(0).integers(0, 1000, (4, 8, 9)).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for i in range(image.GetDepth()):
        s = image[:, :, i]
        for key, value in (("0008|0060", "PT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.91"), ("0020|0013", str(i)),
                           ("0020|0032", "\\".join(str(c) for c in image.TransformIndexToPhysicalPoint((0, 0, i)))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0")):
            s.SetMetaData(key, value)
        writer.SetFileName(str(tmp_path / f"{i}.dcm"))
        writer.Execute(s)
    added = {}
    mod.slicer_standin.util.addVolumeFromArray = lambda a, ijkToRAS=None, name=None: added.update(array=a, ijkToRAS=ijkToRAS, name=name) or "node"
    assert mod.TAREDosimetryLogic().loadImageNode(str(tmp_path), "PET image") == "node"
    expected = read_image(str(tmp_path))
    np.testing.assert_array_equal(added["array"], expected.array)
    from TAREDosimetryLib import mrmlconvert as mc

    np.testing.assert_allclose(added["ijkToRAS"], mc.ijk_to_ras_from_grid(expected.grid))


# -- defect 6: SlicerRT's dose unit, outputs under the study ------------------------------------------------

class FakeSubjectHierarchy:
    def __init__(self):
        self.parent, self.names, self.attrs, self.level, self.data = {1: 0}, {1: "scene"}, {}, {}, {}

    def _new(self, parent, name, level=""):
        item = max(self.parent) + 1
        self.parent[item], self.names[item], self.level[item] = parent, name, level
        return item

    def GetSceneItemID(self):
        return 1

    def GetItemByDataNode(self, node):
        return next((i for i, n in self.data.items() if n is node), 0)

    def GetItemAncestorAtLevel(self, item, level):
        while item:
            item = self.parent.get(item, 0)
            if self.level.get(item) == level:
                return item
        return 0

    def GetItemChildWithName(self, parent, name):
        return next((i for i, p in self.parent.items() if p == parent and self.names[i] == name), 0)

    def CreateSubjectItem(self, parent, name):
        return self._new(parent, name, "Patient")

    def CreateStudyItem(self, parent, name):
        return self._new(parent, name, "Study")

    def CreateFolderItem(self, parent, name):
        return self._new(parent, name, "Folder")

    def CreateItem(self, parent, node):
        item = self._new(parent, node.GetName())
        self.data[item] = node
        return item

    def GetItemParent(self, item):
        return self.parent[item]

    def SetItemParent(self, item, parent):
        self.parent[item] = parent

    def GetItemAttribute(self, item, key):
        return self.attrs.get((item, key), "")

    def SetItemAttribute(self, item, key, value):
        self.attrs[(item, key)] = value


def test_outputs_go_under_the_inputs_study_which_gets_the_dose_unit(mod):
    sh = FakeSubjectHierarchy()
    mod.slicer_standin.mrmlScene.sh = sh
    patient = sh.CreateSubjectItem(1, "Doe^J")
    study = sh.CreateStudyItem(patient, "SPECT/CT 2024")
    spect = st.FakeNode("SPECT", "vtkMRMLScalarVolumeNode")
    sh.CreateItem(study, spect)
    dose, table = st.FakeNode("dose", "vtkMRMLScalarVolumeNode"), st.FakeNode("metrics", "vtkMRMLTableNode")
    logic = mod.TAREDosimetryLogic()
    logic.groupUnderStudy({"doseVolume": dose, "metricsTable": table, "dvhChart": None}, spect, "P1")
    assert sh.GetItemAncestorAtLevel(sh.GetItemByDataNode(dose), "Study") == study
    assert sh.names[sh.GetItemParent(sh.GetItemByDataNode(table))] == "TARE dosimetry: P1"
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitName") == "GY"
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitValue") == "1.0"


def test_inputs_without_a_study_get_a_case_subject_and_an_existing_unit_is_kept(mod):
    sh = FakeSubjectHierarchy()
    mod.slicer_standin.mrmlScene.sh = sh
    spect = st.FakeNode("SPECT from nrrd", "vtkMRMLScalarVolumeNode")
    sh.CreateItem(1, spect)
    dose = st.FakeNode("dose", "vtkMRMLScalarVolumeNode")
    logic = mod.TAREDosimetryLogic()
    logic.groupUnderStudy({"doseVolume": dose}, spect, "P2")
    study = sh.GetItemAncestorAtLevel(sh.GetItemByDataNode(dose), "Study")
    assert study and sh.names[sh.GetItemParent(study)] == "TARE case P2"
    assert sh.GetItemParent(sh.GetItemByDataNode(spect)) == 1  # the input stays where it was
    sh.SetItemAttribute(study, "DicomRtImport.DoseUnitName", "RELATIVE")
    logic.groupUnderStudy({"doseVolume": dose}, spect, "P2")
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitName") == "RELATIVE"


# -- several cases in one scene ---------------------------------------------------------------------------

def test_each_case_finds_its_own_outputs(mod):
    scene = mod.slicer_standin.mrmlScene
    a, b = st.FakeNode("A", "vtkMRMLScalarVolumeNode"), st.FakeNode("B", "vtkMRMLScalarVolumeNode")
    for owner in (a, b):
        for key, cls in (("doseVolume", "vtkMRMLScalarVolumeNode"), ("metricsTable", "vtkMRMLTableNode"), ("resultRecord", "vtkMRMLTextNode")):
            n = st.FakeNode(f"{owner.GetName()} {key}", cls)
            n.SetAttribute("TAREDosimetry.Output", key)
            n.SetAttribute("TAREDosimetry.CaseActivityNodeID", owner.GetID())
            n.SetAttribute("TAREDosimetry.Case", f"case {owner.GetName()}")
            scene.nodes.append(n)
    logic = mod.TAREDosimetryLogic()
    found = logic.outputsOfCase(b)
    assert {k: n.GetName() for k, n in found.items()} == {"doseVolume": "B doseVolume", "metricsTable": "B metricsTable",
                                                          "resultRecord": "B resultRecord"}
    from TAREDosimetrySlicer.cases import caseNameOfNode

    assert caseNameOfNode(found["resultRecord"]) == "case B" and logic.outputsOfCase(None) == {}


# -- defect 8: export into <folder>/<case>/, in the panel's words ------------------------------------------

def test_export_writes_into_the_case_folder_and_speaks_the_panels_words(mod, phantom, tmp_path):
    from TAREDosimetryLib.pipeline import run_case

    logic, node = _segmentation_node(mod, phantom.segmentation)
    result = run_case(phantom.activity, phantom.segmentation, params=phantom.params)
    pn = _fake_pn(mod, node, exportDirectory=str(tmp_path), caseName="P 7/pre", exportOverwrite=False, resultRecord=object(),
                  ctVolume=None, doseVolume=None)
    logic.whyResultNotCurrent = lambda record, signature: ""
    logic.resultFromScene = lambda record, dose=None: result
    logic.volumeFromNode = lambda node, name="", unit="": phantom.activity
    folder = logic.exportCase(pn, report=False)
    assert folder == os.path.join(str(tmp_path), "P 7_pre") and os.path.isfile(os.path.join(folder, "metrics.json"))
    assert sorted(os.listdir(tmp_path)) == ["P 7_pre"]
    with pytest.raises(InputError) as err:
        logic.exportCase(pn, report=False)
    assert "tick 'Overwrite existing files'" in str(err.value) and "--" not in str(err.value)


# -- defect 9: TOML only where it can be read ---------------------------------------------------------------

def test_rule_files_offer_toml_only_when_it_can_be_read(mod, monkeypatch):
    from TAREDosimetryLib import panel
    from TAREDosimetrySlicer import tablesections

    asked, filters = [], []
    monkeypatch.setattr(panel, "toml_reader_available", lambda: False)
    fake_qt = SimpleNamespace(QFileDialog=SimpleNamespace(getOpenFileName=lambda parent, title, folder, f: filters.append(f) or ""))
    monkeypatch.setattr(tablesections, "qt", fake_qt)
    section = tablesections.RulesSection.__new__(tablesections.RulesSection)
    section.logic = SimpleNamespace(ensureTomlReader=lambda askUser: asked.append(askUser) or False)
    section.tomlDeclined = False
    section.onLoadRules()
    section.onLoadRules()
    assert filters == ["Rule files (*.json)"] * 2 and asked == [True]  # asked once, then JSON only


# -- defect 10: the SPECT/PET selector ---------------------------------------------------------------------

def test_the_default_activity_volume_is_an_nm_pt_volume_or_nothing(mod):
    scene = mod.slicer_standin.mrmlScene
    sh = FakeSubjectHierarchy()
    scene.sh = sh
    ct = st.FakeNode("3: CT 5mm", "vtkMRMLScalarVolumeNode")
    sh.CreateItem(1, ct)
    sh.SetItemAttribute(sh.GetItemByDataNode(ct), "DICOM.Modality", "CT")
    scene.nodes.append(ct)
    logic = mod.TAREDosimetryLogic()
    assert logic.defaultActivityVolume() is None
    pet = st.FakeNode("4: Y90 recon", "vtkMRMLScalarVolumeNode")
    sh.CreateItem(1, pet)
    sh.SetItemAttribute(sh.GetItemByDataNode(pet), "DICOM.Modality", "PT")
    scene.nodes.append(pet)
    assert logic.defaultActivityVolume() is pet


def test_the_activity_selector_can_stay_empty():
    import xml.etree.ElementTree as ET

    root = ET.parse(os.path.join(st.MODULE_DIR, "Resources", "UI", "TAREDosimetry.ui")).getroot()
    selector = next(w for w in root.iter("widget") if w.get("name") == "activitySelector")
    props = {p.get("name"): p for p in selector.findall("property")}
    assert props["noneEnabled"].findtext("bool") == "true", "without a None item Qt selects the first volume (often the CT)"


# -- defects 5 and 11: tables --------------------------------------------------------------------------------

def test_result_tables_are_locked_with_titles_and_no_deprecated_call(mod):
    calls = []

    class Table(st.FakeNode):
        def __getattr__(self, name):
            return lambda *args: calls.append((name, args)) or 0

    logic = mod.TAREDosimetryLogic()
    logic._updateTable(Table("t", "vtkMRMLTableNode"), "t", [("segment", "", ["A"]), ("mean_gy", "Gy", [1.0])])
    names = [c[0] for c in calls]
    assert ("SetLocked", (True,)) == calls[names.index("EndModify") - 1]
    assert ("SetUseColumnTitleAsColumnHeader", (True,)) in calls and "SetUseColumnNameAsColumnHeader" not in names
    assert ("SetColumnTitle", ("mean_gy", "mean (Gy)")) in calls


# -- inputs under a transform -------------------------------------------------------------------------------

def test_a_volume_under_a_linear_transform_is_used_through_it(mod):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    transform = SimpleNamespace(IsTransformToWorldLinear=lambda: 1, GetName=lambda: "registration",
                                GetMatrixTransformToWorld=lambda m: m.DeepCopy(st._vtk_matrix(np.array(
                                    [[1, 0, 0, 10.0], [0, 1, 0, -5.0], [0, 0, 1, 2.5], [0, 0, 0, 1]]))))
    node = SimpleNamespace(GetImageData=lambda: object(), GetName=lambda: "SPECT", GetParentTransformNode=lambda: transform,
                           GetIJKToRASMatrix=lambda m: m.DeepCopy(st._vtk_matrix(np.diag([-4.0, -4.0, 3.0, 1.0]))))
    mod.slicer_standin.util.arrayFromVolume = lambda n: arr
    logic = mod.TAREDosimetryLogic()
    vol = logic.volumeFromNode(node)
    assert vol.origin_mm == pytest.approx((-10.0, 5.0, 2.5))  # RAS (10, -5, 2.5) in LPS
    assert "registration" in logic.transformNote(node, "SPECT/PET volume") and "linear" in logic.transformNote(node, "x")


# -- Sample Data ---------------------------------------------------------------------------------------------

def test_the_demo_patient_is_registered_with_a_local_loader(mod, monkeypatch):
    registered = []
    sample_data = SimpleNamespace(SampleDataLogic=SimpleNamespace(registerCustomSampleDataSource=lambda **kw: registered.append(kw)))
    monkeypatch.setitem(__import__("sys").modules, "SampleData", sample_data)
    from TAREDosimetrySlicer import sampledata

    sampledata.registerSampleData()
    (kw,) = registered
    assert kw["category"] == "TARE Dosimetry" and isinstance(kw["uris"], str) and callable(kw["customDownloader"])
    assert os.path.isfile(kw["thumbnailFileName"])


def test_switching_the_spect_shows_that_cases_outputs_and_name(mod):
    scene = mod.slicer_standin.mrmlScene
    a, b = st.FakeNode("A", "vtkMRMLScalarVolumeNode"), st.FakeNode("B", "vtkMRMLScalarVolumeNode")
    dose_a = st.FakeNode("P1 dose (Gy)", "vtkMRMLScalarVolumeNode")
    dose_a.attributes.update({"TAREDosimetry.Output": "doseVolume", "TAREDosimetry.CaseActivityNodeID": a.GetID(),
                              "TAREDosimetry.Case": "P1"})
    scene.nodes.append(dose_a)
    logic = mod.TAREDosimetryLogic()
    pn = _fake_pn(mod, None, activity=a, caseName="P1", doseVolume=dose_a)
    w = _fake_widget(mod, logic, pn)
    w._caseActivityID, w._caseNameShown = None, ""
    w._switchCase(pn)  # first look at the panel: keeps what the scene holds
    assert pn.doseVolume is dose_a and pn.caseName == "P1"
    pn.activityVolume = b
    w._switchCase(pn)  # a case without outputs yet: new nodes at Apply, not case A's name
    assert pn.doseVolume is None and pn.caseName == ""
    pn.caseName = "P2"
    w._switchCase(pn)
    pn.activityVolume = a
    w._switchCase(pn)  # back to case A: its outputs and name
    assert pn.doseVolume is dose_a and pn.caseName == "P1"
    pn.activityVolume, pn.caseName = b, "demo"  # set together, as the Sample Data loader does
    w._switchCase(pn)
    assert pn.caseName == "demo"


def test_an_empty_segment_does_not_decide_the_lattice_and_is_refused_by_name(mod, phantom):
    from TAREDosimetryLib.pipeline import run_case

    logic, node = _segmentation_node(mod, phantom.segmentation)
    empty = st.vtkSegment()
    empty.SetName("empty segment")
    empty.AddRepresentation("Binary labelmap", st.vtkOrientedImageData())  # no voxels, identity geometry
    node.GetSegmentation().AddSegment(empty, "empty")
    st.vtkOrientedImageDataResample.calls.clear()
    read = logic.segmentationFromNode(node)
    assert not st.vtkOrientedImageDataResample.calls and not read.notes
    assert read.grid.spacing_mm == phantom.segmentation.grid.spacing_mm
    with pytest.raises(InputError, match="'empty segment'.* empty"):
        run_case(phantom.activity, read, params=phantom.params)


def test_every_output_of_a_run_is_tagged_with_its_case(mod):
    a = st.FakeNode("A", "vtkMRMLScalarVolumeNode")
    outputs = {"doseVolume": st.FakeNode("d", "vtkMRMLScalarVolumeNode"), "resultRecord": st.FakeTextNode("r"), "dvhChart": None}
    mod.TAREDosimetryLogic().tagOutputs(outputs, a, "P1")
    for key in ("doseVolume", "resultRecord"):
        assert outputs[key].attributes == {"TAREDosimetry.Output": key, "TAREDosimetry.Case": "P1",
                                           "TAREDosimetry.CaseActivityNodeID": a.GetID()}
    mod.slicer_standin.mrmlScene.nodes += [n for n in outputs.values() if n is not None]
    assert set(mod.TAREDosimetryLogic().outputsOfCase(a)) == {"doseVolume", "resultRecord"}
