"""The Slicer glue for DICOM (TAREDosimetrySlicer/dicomtiming.py, rtdoseexport.py), run with stand-ins for
Slicer's DICOM database, subject hierarchy and SlicerRT's export plugin (no Slicer here).

What the stand-ins do is what Slicer's sources say (docs/slicer_api_check.md, "DICOM"): the volume node
attribute ``DICOM.instanceUIDs`` lists one SOP Instance UID per slice, ``slicer.dicomDatabase.fileForInstance``
gives the file, ``DicomRtImportExportPlugin`` examines subject-hierarchy items and exports exportables.
"""

import importlib
import os
import sys
import types

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from conftest import REPO, box_case  # noqa: E402
from test_dicom_in import _pet_case  # noqa: E402
from TAREDosimetryLib import DosimetryParams, InputError  # noqa: E402
from TAREDosimetryLib.imaging import read_image  # noqa: E402

MODULE_DIR = os.path.join(REPO, "TAREDosimetry")


class FakeDatabase:
    def __init__(self, files):
        self.by_uid = {}
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            self.by_uid[str(ds.SOPInstanceUID)] = (f, ds)

    def fileForInstance(self, uid):
        return self.by_uid.get(uid, ("", None))[0]

    def fileValue(self, path, tag):
        group, element = (int(t, 16) for t in tag.split(","))
        ds = next(ds for f, ds in self.by_uid.values() if f == path)
        return str(ds[(group, element)].value)


class FakeNode:
    def __init__(self, name, attributes=None):
        self.name, self.attributes = name, dict(attributes or {})

    def GetName(self):
        return self.name

    def GetID(self):
        return f"vtkMRMLScalarVolumeNode{id(self)}"

    def GetAttribute(self, key):
        return self.attributes.get(key)

    def SetAttribute(self, key, value):
        self.attributes[key] = value


def _uids_in_slice_order(folder):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))  # written in k order
    return " ".join(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files), files


@pytest.fixture
def glue(monkeypatch):
    """Import the glue modules with a stand-in ``slicer`` module; returns (slicer stub, dicomtiming, rtdoseexport)."""
    slicer = types.ModuleType("slicer")
    slicer.modules = types.SimpleNamespace()
    slicer.mrmlScene = object()
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    dicomlib = types.ModuleType("DICOMLib")
    dicomlib.DICOMUtils = types.SimpleNamespace(imported=[], importDicom=lambda folder: dicomlib.DICOMUtils.imported.append(folder) or True)
    monkeypatch.setitem(sys.modules, "DICOMLib", dicomlib)
    monkeypatch.syspath_prepend(MODULE_DIR)
    for name in ("TAREDosimetrySlicer.rtdoseexport", "TAREDosimetrySlicer.dicomtiming"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    timing = importlib.import_module("TAREDosimetrySlicer.dicomtiming")
    export = importlib.import_module("TAREDosimetrySlicer.rtdoseexport")
    return slicer, timing, export, dicomlib.DICOMUtils


def test_pet_timing_of_a_volume_loaded_from_dicom(glue, tmp_path):
    slicer, timing, _, _ = glue
    folder, _, _ = _pet_case(tmp_path)
    uids, files = _uids_in_slice_order(folder)
    slicer.dicomDatabase = FakeDatabase(files)
    node = FakeNode("PET", {"DICOM.instanceUIDs": uids})
    activity = read_image(folder, "PET image")
    act2, params, record, warnings = timing.DicomActivityHeader.applyToActivity(node, activity, DosimetryParams(calibration="absolute"))
    assert params.hours_since_administration == pytest.approx(19.75) and record["timing_source"] == "DICOM header"
    assert act2 is activity and warnings == []
    assert "19.7500 h" in timing.DicomActivityHeader.describeTiming(node)
    kept = timing.DicomActivityHeader.applyToActivity(node, activity, DosimetryParams(calibration="absolute", hours_since_administration=20.0),
                                                      timingOverridden=True)[1]
    assert kept.hours_since_administration == 20.0


def test_a_volume_not_from_dicom_is_left_as_it_is_and_missing_files_are_reported(glue, tmp_path):
    slicer, timing, _, _ = glue
    act, _ = box_case()
    params = DosimetryParams(calibration="absolute", hours_since_administration=3.0)
    assert timing.DicomActivityHeader.applyToActivity(FakeNode("nrrd"), act, params) == (act, params, None, [])
    assert timing.DicomActivityHeader.describeTiming(FakeNode("nrrd")) == ""
    slicer.dicomDatabase = FakeDatabase([])
    with pytest.raises(InputError, match="no longer in the DICOM database"):
        timing.DicomActivityHeader.dicomFilesOfVolume(FakeNode("PET", {"DICOM.instanceUIDs": "1.2.3"}))


def test_engine_rt_dose_joins_the_study_of_the_loaded_ct_and_is_imported(glue, tmp_path):
    from dicom_synth import write_image_series

    slicer, _, export, utils = glue
    folder, _, _ = _pet_case(tmp_path)
    pet_uids, pet_files = _uids_in_slice_order(folder)
    first = pydicom.dcmread(pet_files[0])
    study = {k: first.get(k) for k in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                                     "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID")}
    act, _ = box_case()
    ct_files = write_image_series(str(tmp_path / "ct"), np.zeros(act.shape), act.spacing_mm, act.origin_mm, study=study,
                                  series_number=2)[0]
    ct_uids, _ = _uids_in_slice_order(str(tmp_path / "ct"))
    slicer.dicomDatabase = FakeDatabase(pet_files + ct_files)
    dose = act.with_array(np.ones(act.shape, np.float32) * 12.5)
    path = export.RtDoseExport.writeEngineRtDose(dose, str(tmp_path / "rt"), FakeNode("CT", {"DICOM.instanceUIDs": ct_uids}),
                                                 FakeNode("PET", {"DICOM.instanceUIDs": pet_uids}))
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == study["StudyInstanceUID"] and ds.FrameOfReferenceUID == study["FrameOfReferenceUID"]
    assert len(ds.ReferencedImageSequence) == len(ct_files) and len(ds.SourceImageSequence) == len(pet_files)
    assert utils.imported == [str(tmp_path / "rt")]


class FakeSubjectHierarchy:
    def __init__(self):
        self.parent = {1: 0, 2: 1, 3: 2, 4: 0}  # patient 1 > study 2 > CT 3; dose 4 at the top
        self.attributes = {1: {"DICOM.PatientName": "Doe^Jane", "DICOM.PatientID": "P1"},
                           2: {"DICOM.StudyDate": "20240503", "DICOM.StudyInstanceUID": "1.2.3.4"}}
        self.by_node = {}

    def GetItemByDataNode(self, node):
        return self.by_node[node.name]

    def GetItemAncestorAtLevel(self, item, level):
        assert level == "Study"
        return 2 if item == 3 else 0

    def GetItemParent(self, item):
        return self.parent[item]

    def SetItemParent(self, item, parent):
        self.parent[item] = parent

    def GetItemAttribute(self, item, name):
        return self.attributes.get(item, {}).get(name, "")

    def GetItemUID(self, item, name):
        return ""


class FakeExportable:
    def __init__(self, item, modality):
        self.item, self.directory, self.tags = item, "", {"Modality": modality}

    def setTag(self, key, value):
        self.tags[key] = value

    def tag(self, key):
        return self.tags.get(key)


def test_slicer_rt_export_puts_the_dose_under_the_ct_study_with_its_patient_tags(glue, tmp_path):
    slicer, _, export, utils = glue
    sh = FakeSubjectHierarchy()
    ct, dose = FakeNode("CT"), FakeNode("Dose")
    sh.by_node = {"CT": 3, "Dose": 4}
    exported = []

    class Plugin:
        def examineForExport(self, item):
            return [FakeExportable(item, {3: "CT", 4: "RTDOSE"}[item])]

        def export(self, exportables):
            exported.extend(exportables)
            return ""

    slicer.modules.dicomPlugins = {"DicomRtImportExportPlugin": Plugin}
    slicer.vtkMRMLSubjectHierarchyNode = types.SimpleNamespace(GetSubjectHierarchyNode=lambda scene: sh)
    out = export.RtDoseExport.exportWithSlicerRT(dose, ct, str(tmp_path / "rt"))
    assert out == str(tmp_path / "rt") and utils.imported == [out]
    assert sh.parent[4] == 2 and dose.GetAttribute("DicomRtImport.DoseVolume") == "1"
    assert [e.tags["Modality"] for e in exported] == ["CT", "RTDOSE"]
    for e in exported:
        assert e.directory == out and e.tags["PatientID"] == "P1" and e.tags["StudyInstanceUID"] == "1.2.3.4"
    assert exported[1].tags["SeriesDescription"] == "TARE Y-90 dose"
    slicer.modules.dicomPlugins = {}
    with pytest.raises(InputError, match="SlicerRT is not installed"):
        export.RtDoseExport.exportWithSlicerRT(dose, ct, str(tmp_path / "rt2"))
