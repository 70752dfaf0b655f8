"""Several cases in one scene, each with its outputs grouped under its study, and its result kept in the scene.

A case's output nodes carry the attributes of :mod:`.outputnodes` (which output, which case, which
SPECT/PET node), so selecting a SPECT/PET in the panel finds that case's outputs again, and a
second case never overwrites the first.  The result itself is stored as a text node holding the
engine's result record (``TAREDosimetryLib.evaluation.stored``: metrics.json + DVH curves), saved
with the scene: a reloaded scene still shows the summary, rules, metrics and DVH, and can export.

A record node also holds the signature of the inputs it was computed from
(``panel.inputs_signature``) and, when the result no longer matches the panel (inputs changed,
segments edited, a later calculation failed), why: Export and the PASS/FAIL colours are then
disabled and the panel says so.
"""

import json

import vtk

import slicer

from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.evaluation.stored import result_from_record, result_record

from .outputnodes import CASE_ACTIVITY_ATTRIBUTE, CASE_NAME_ATTRIBUTE, DOSE_UNIT_NAME, DOSE_UNIT_NAME_ATTRIBUTE, \
    DOSE_UNIT_VALUE_ATTRIBUTE, OUTPUT_NAMES, OUTPUT_ROLE_ATTRIBUTE

#: Record-node attributes: inputs signature of the result, and why the result is not current ('' when it is).
SIGNATURE_ATTRIBUTE = "TAREDosimetry.InputsSignature"
STALE_ATTRIBUTE = "TAREDosimetry.StaleReason"
#: Classes of the output nodes a case can have.
OUTPUT_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLTextNode")


class CaseOutputs:
    """Mixed into the logic: outputs per case, grouping in the subject hierarchy, the stored result."""

    #: In-memory results by run id (exact voxel DVHs); the scene's record is the reference.
    _resultCache = {}
    _summaryCache = {}

    @staticmethod
    def outputsOfCase(activityNode) -> dict:
        """{output key: node} of the case computed from ``activityNode`` (empty when none)."""
        found = {}
        if activityNode is None:
            return found
        for className in OUTPUT_CLASSES:
            for node in slicer.util.getNodesByClass(className):
                key = node.GetAttribute(OUTPUT_ROLE_ATTRIBUTE)
                if key in OUTPUT_NAMES and node.GetAttribute(CASE_ACTIVITY_ATTRIBUTE) == activityNode.GetID():
                    found.setdefault(key, node)
        return found

    @staticmethod
    def _studyItem(shNode, activityNode, caseName):
        """The SPECT/PET's study item, or a new patient + study named after the case when it has none
        (the inputs are left where they are)."""
        level = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()
        item = shNode.GetItemByDataNode(activityNode)
        study = shNode.GetItemAncestorAtLevel(item, level) if item else 0
        if study:
            return study
        scene = shNode.GetSceneItemID()
        patient = shNode.GetItemChildWithName(scene, f"TARE case {caseName}")
        if not patient:
            patient = shNode.CreateSubjectItem(scene, f"TARE case {caseName}")
        study = shNode.GetItemChildWithName(patient, "TARE dosimetry")
        return study or shNode.CreateStudyItem(patient, "TARE dosimetry")

    def groupUnderStudy(self, outputs: dict, activityNode, caseName: str) -> None:
        """Put the case's outputs in a folder 'TARE dosimetry: <case>' under the study of the SPECT/PET, and
        give the study the dose unit SlicerRT reads (GY) when it has none."""
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        if shNode is None:
            return
        study = self._studyItem(shNode, activityNode, caseName)
        if not shNode.GetItemAttribute(study, DOSE_UNIT_NAME_ATTRIBUTE):
            shNode.SetItemAttribute(study, DOSE_UNIT_NAME_ATTRIBUTE, DOSE_UNIT_NAME)
        if not shNode.GetItemAttribute(study, DOSE_UNIT_VALUE_ATTRIBUTE):
            shNode.SetItemAttribute(study, DOSE_UNIT_VALUE_ATTRIBUTE, "1.0")  # voxel values are Gy (no scaling)
        folderName = f"TARE dosimetry: {caseName}"
        folder = shNode.GetItemChildWithName(study, folderName) or shNode.CreateFolderItem(study, folderName)
        for node in outputs.values():
            if node is None:
                continue
            item = shNode.GetItemByDataNode(node) or shNode.CreateItem(folder, node)
            if shNode.GetItemParent(item) != folder:
                shNode.SetItemParent(item, folder)

    # -- the result stored in the scene ---------------------------------------------------------------
    def storeResult(self, result, outputs: dict, caseName: str, signature: str):
        """Write the result record into the case's text node (created when missing); returns the node."""
        node = outputs.get("resultRecord")
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTextNode", slicer.mrmlScene.GenerateUniqueName(
                OUTPUT_NAMES["resultRecord"].format(case=caseName)))
        record = result_record(result)
        node.SetForceCreateStorageNode(slicer.vtkMRMLTextNode.CreateStorageNodeAlways)  # saved as a file with the scene
        node.SetText(json.dumps(record, allow_nan=False), vtk.VTK_ENCODING_UTF_8)
        node.SetAttribute(SIGNATURE_ATTRIBUTE, signature)
        node.SetAttribute(STALE_ATTRIBUTE, "")
        outputs["resultRecord"] = node
        CaseOutputs._resultCache = {record["run_id"]: result}  # the last run, with its exact voxel DVHs
        return node

    @staticmethod
    def markStale(recordNode, reason: str) -> None:
        """Say that the stored result no longer matches the panel (kept in the scene)."""
        if recordNode is not None and not recordNode.GetAttribute(STALE_ATTRIBUTE):
            recordNode.SetAttribute(STALE_ATTRIBUTE, reason)

    @staticmethod
    def whyResultNotCurrent(recordNode, signature: str) -> str:
        """'' when the stored result is the one of the panel's current inputs, else the reason."""
        if recordNode is None or not recordNode.GetText():
            return "no result yet: Apply first"
        stale = recordNode.GetAttribute(STALE_ATTRIBUTE)
        if stale:
            return stale
        if recordNode.GetAttribute(SIGNATURE_ATTRIBUTE) != signature:
            return "the inputs or parameters changed since this result was computed: Apply again"
        return ""

    def resultFromScene(self, recordNode, doseNode=None):
        """The case result stored in ``recordNode`` (the in-memory one of the same run when available)."""
        if recordNode is None or not recordNode.GetText():
            raise InputError("no result stored for this case: Apply first")
        try:
            record = json.loads(recordNode.GetText())
        except ValueError as exc:
            raise InputError(f"the stored result of '{recordNode.GetName()}' is not valid JSON ({exc})") from None
        cached = CaseOutputs._resultCache.get(record.get("run_id"))
        if cached is not None:
            return cached
        dose = self.volumeFromNode(doseNode, unit="Gy") if doseNode is not None and doseNode.GetImageData() else None
        return result_from_record(record, dose_gy=dose)

    def storedSummary(self, recordNode):
        """The stored result without its dose map, parsed once per text change (the panel redraws often)."""
        key = (recordNode.GetID(), len(recordNode.GetText()), hash(recordNode.GetText()))
        if CaseOutputs._summaryCache.get("key") != key:
            CaseOutputs._summaryCache = {"key": key, "result": self.resultFromScene(recordNode)}
        return CaseOutputs._summaryCache["result"]

    @staticmethod
    def clearResultCache() -> None:
        CaseOutputs._resultCache = {}
        CaseOutputs._summaryCache = {}


def caseNameOfNode(node) -> str:
    """The case name an output node was made for ('' for other nodes)."""
    return (node.GetAttribute(CASE_NAME_ATTRIBUTE) or "") if node is not None else ""
