"""TAREDosimetry: Y-90 radioembolization dosimetry in 3D Slicer.

The module is a thin face on the engine in ``TAREDosimetryLib`` (plain Python, no Slicer):
the logic turns MRML nodes into engine volumes and segmentations, calls
:func:`TAREDosimetryLib.pipeline.run_case`, and turns the result back into nodes (dose volume,
tables, DVH chart, PASS/FAIL segment colours).  Every number comes from the engine.

Sections: module metadata, parameter node, widget, logic.  The logic's MRML helpers and the
self-test (TAREDosimetryTest, imported here) are in the sibling package TAREDosimetrySlicer.
"""

import enum
import json
import os
import pathlib
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer import (
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib import physics
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.evaluation.roles import ROLE_LABELS, ROLES
from TAREDosimetryLib.evaluation.rules import DEFAULT_PRESET, PRESETS, RuleSet, load_rules
from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetrySlicer.export import ResultExport
from TAREDosimetrySlicer.nodes import NodeConversion
from TAREDosimetrySlicer.outputnodes import DOSE_VOLUME_ATTRIBUTE, OutputNodes
from TAREDosimetrySlicer.planningpanel import PlanningPanel
from TAREDosimetrySlicer.segmentimport import SegmentImport
from TAREDosimetrySlicer.selftest import TAREDosimetryTest  # noqa: F401  (slicer.selfTests and ctest find it here)
from TAREDosimetrySlicer.vtkdose import VtkDose

CUSTOM_RULES_LABEL = "(custom rules)"


#
# TAREDosimetry
#


class TAREDosimetry(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("TARE Dosimetry")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["TAREDosimetry developers"]
        self.parent.helpText = _("""
Y-90 radioembolization (TARE / SIRT) dosimetry from a SPECT or PET image and a segmentation:
dose map (local deposition or dose-voxel kernel), metrics and DVH per segment, and PASS/FAIL
against published dose thresholds. Research software, not a medical device.
See the <a href="https://github.com/TAREDosimetry/TAREDosimetry">project page</a>.
""")
        self.parent.acknowledgementText = _("""
Dose thresholds: Deipolyi et al. (Eur J Radiol 2021) and the EANM 2022 procedure guideline.
Y-90 dose point kernel: Graves et al. 2019.
""")


#
# Parameter node
#


class CalibrationMode(enum.Enum):
    relative = "relative"
    absolute = "absolute"

    def label(self):
        return {"relative": _("Relative (scale counts to administered activity)"),
                "absolute": _("Absolute (image in Bq/mL)")}[self.name]


class ReferenceRegion(enum.Enum):
    liver = "liver"
    perfused = "perfused"
    image = "image"

    def label(self):
        return {"liver": _("Whole liver"), "perfused": _("Perfused volume"), "image": _("Whole image")}[self.name]


class DoseMethod(enum.Enum):
    ldm = "ldm"
    dvk = "dvk"

    def label(self):
        return {"ldm": _("Local deposition (LDM)"), "dvk": _("Kernel convolution (DVK)")}[self.name]


class ComputeDevice(enum.Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"

    def label(self):
        return {"auto": _("Automatic"), "cpu": _("CPU"), "gpu": _("GPU (CuPy)")}[self.name]


@parameterNodeWrapper
class TAREDosimetryParameterNode:
    """Everything the panel shows, saved with the scene.

    Inputs: activityVolume (SPECT/PET), ctVolume (optional), segmentation.
    Roles and rules: segmentRolesJson ({segment name: role}), rulePreset, rulesJson (edited
    rule set as RuleSet.to_dict() JSON; empty means the preset).
    Outputs (re-used on every run): doseVolume, metricsTable, evaluationTable, dvhTable,
    dvhThresholdTable, dvhChart.
    """

    activityVolume: vtkMRMLScalarVolumeNode
    ctVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode

    calibration: CalibrationMode = CalibrationMode.relative
    administeredActivityGBq: Annotated[float, WithinRange(0.0, 100.0)] = 1.0
    residualPercent: Annotated[float, WithinRange(0.0, 99.0)] = 0.0
    lungShuntPercent: Annotated[float, WithinRange(0.0, 99.0)] = 0.0
    referenceRegion: ReferenceRegion = ReferenceRegion.liver
    hoursSinceAdministration: Annotated[float, WithinRange(0.0, 1000.0)] = 0.0
    imageDecayCorrected: bool = False

    doseMethod: DoseMethod = DoseMethod.ldm
    computeDevice: ComputeDevice = ComputeDevice.auto
    kGyKgPerGBq: Annotated[float, WithinRange(1.0, 100.0)] = physics.K_GY_KG_PER_GBQ
    tissueDensityGPerMl: Annotated[float, WithinRange(0.5, 2.0)] = physics.TISSUE_DENSITY_G_ML
    lungDensityGPerMl: Annotated[float, WithinRange(0.05, 1.5)] = physics.LUNG_DENSITY_G_ML
    densityFromCt: bool = True

    segmentRolesJson: str = "{}"
    rulePreset: str = DEFAULT_PRESET
    rulesJson: str = ""

    doseOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showDoseVolumeRendering: bool = False
    exportDirectory: pathlib.Path
    exportReport: bool = True
    exportOverwrite: bool = False

    doseVolume: vtkMRMLScalarVolumeNode
    metricsTable: vtkMRMLTableNode
    evaluationTable: vtkMRMLTableNode
    dvhTable: vtkMRMLTableNode
    dvhThresholdTable: vtkMRMLTableNode
    dvhChart: vtkMRMLPlotChartNode


#
# Widget
#


class TAREDosimetryWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Gathers inputs into the parameter node and shows results; all work is in the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSegmentation = None
        self._updatingTables = False
        self._rulesError = ""

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TAREDosimetry.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = TAREDosimetryLogic()

        self.ui.rolesTable.setHorizontalHeaderLabels([_("Segment"), _("Role")])
        self.ui.rolesTable.horizontalHeader().setStretchLastSection(True)
        self.ui.rulesTable.setHorizontalHeaderLabels([c.capitalize() for c in mc.RULE_COLUMNS])
        self.ui.rulesTable.horizontalHeader().setStretchLastSection(True)
        self.ui.presetComboBox.addItems(list(PRESETS) + [CUSTOM_RULES_LABEL])
        for name, rs in PRESETS.items():
            self.ui.presetComboBox.setItemData(list(PRESETS).index(name), rs.description, qt.Qt.ToolTipRole)
        self.ui.progressBar.setVisible(False)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.editSegmentsButton.connect("clicked(bool)", self.onEditSegments)
        self.ui.importSegmentsButton.connect("clicked(bool)", self.onImportSegmentsFile)
        self.ui.importMaskFolderButton.connect("clicked(bool)", self.onImportMaskFolder)
        self.ui.refreshRolesButton.connect("clicked(bool)", lambda: self.updateRolesTable())
        self.ui.guessRolesButton.connect("clicked(bool)", self.onGuessRoles)
        self.ui.presetComboBox.connect("currentIndexChanged(int)", self.onPresetChanged)
        self.ui.rulesTable.connect("itemChanged(QTableWidgetItem*)", self.onRuleEdited)
        self.ui.addRuleButton.connect("clicked(bool)", self.onAddRule)
        self.ui.removeRuleButton.connect("clicked(bool)", self.onRemoveRule)
        self.ui.loadRulesButton.connect("clicked(bool)", self.onLoadRules)
        self.ui.resetRulesButton.connect("clicked(bool)", self.onResetRules)
        self.ui.showStatusColorsButton.connect("clicked(bool)", self.onShowStatusColors)
        self.ui.restoreColorsButton.connect("clicked(bool)", self.onRestoreColors)
        self.ui.showDvhButton.connect("clicked(bool)", self.onShowDvh)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.doseOpacitySliderWidget.connect("valueChanged(double)", self.onDoseOpacityChanged)
        self.ui.volumeRenderingCheckBox.connect("toggled(bool)", self.onVolumeRenderingToggled)
        # Plan and Compare sections: their own .ui and glue (TAREDosimetrySlicer/planningpanel.py).
        self.planningPanel = PlanningPanel(self.layout, self.resourcePath("UI/TAREDosimetryPlanning.ui"), self.logic, lambda: self._parameterNode)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiState)
        # No table rebuilds on every Segment Editor stroke while the module is hidden; enter() observes again.
        self._observeSegmentation(None, updateTable=False)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.activityVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and first.GetAttribute(DOSE_VOLUME_ATTRIBUTE) is None:
                self._parameterNode.activityVolume = first
        if not self._parameterNode.segmentation:
            seg = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if seg:
                self._parameterNode.segmentation = seg

    def setParameterNode(self, inputParameterNode: Optional[TAREDosimetryParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            if self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiState):
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiState)
            self.updateRulesTableFromParameterNode()
            self.updateGuiState()
        else:
            self._observeSegmentation(None)

    # -- keeping the panel consistent ----------------------------------------------------------
    def _observeSegmentation(self, segmentationNode, updateTable: bool = True) -> None:
        import vtkSegmentationCorePython as vtkSegmentationCore

        if segmentationNode is self._observedSegmentation:
            return
        events = (vtkSegmentationCore.vtkSegmentation.SegmentAdded, vtkSegmentationCore.vtkSegmentation.SegmentRemoved,
                  vtkSegmentationCore.vtkSegmentation.SegmentModified)
        if self._observedSegmentation is not None:
            for e in events:
                self.removeObserver(self._observedSegmentation, e, self.onSegmentsChanged)
        self._observedSegmentation = segmentationNode
        if segmentationNode is not None:
            for e in events:
                self.addObserver(segmentationNode, e, self.onSegmentsChanged)
        if updateTable:
            self.updateRolesTable()

    def onSegmentsChanged(self, caller=None, event=None) -> None:
        self.updateRolesTable()
        self.updateGuiState()

    def updateGuiState(self, caller=None, event=None) -> None:
        """Show only the fields that apply, and enable Apply only for a runnable case (with the reason)."""
        pn = self._parameterNode
        if pn is None:
            return
        self._observeSegmentation(pn.segmentation)
        relative = pn.calibration == CalibrationMode.relative
        self.ui.relativeParametersWidget.setVisible(relative)
        self.ui.absoluteParametersWidget.setVisible(not relative)
        self.ui.deviceComboBox.enabled = pn.doseMethod == DoseMethod.dvk
        self.ui.densityFromCtCheckBox.enabled = pn.ctVolume is not None
        self.ui.editSegmentsButton.enabled = pn.activityVolume is not None or pn.ctVolume is not None
        self.ui.importSegmentsButton.enabled = pn.activityVolume is not None or pn.segmentation is not None
        self.ui.importMaskFolderButton.enabled = self.ui.importSegmentsButton.enabled
        hasResult = self.logic.lastResult is not None
        self.ui.exportButton.enabled = hasResult
        self.ui.showStatusColorsButton.enabled = hasResult and pn.segmentation is not None
        self.ui.restoreColorsButton.enabled = pn.segmentation is not None
        self.ui.showDvhButton.enabled = pn.dvhChart is not None
        if pn.metricsTable is not None:
            self.ui.metricsTableView.setMRMLTableNode(pn.metricsTable)

        reason = self.logic.whyNotRunnable(pn)
        if not reason and self._rulesError:
            reason = _("Threshold rules: {error}").format(error=self._rulesError)
        self.ui.applyButton.enabled = not reason
        self.ui.applyButton.toolTip = reason or _("Compute the dose map, metrics, DVH and PASS/FAIL.")
        if reason:
            self.ui.statusLabel.text = reason
        elif self.ui.statusLabel.text and not self.ui.statusLabel.property("showsRunMessage"):
            self.ui.statusLabel.text = ""

    # -- roles -------------------------------------------------------------------------------
    def updateRolesTable(self) -> None:
        pn = self._parameterNode
        table = self.ui.rolesTable
        self._updatingTables = True
        try:
            names = self.logic.segmentNames(pn.segmentation) if pn is not None and pn.segmentation else []
            saved = self.logic.savedRoles(pn) if pn is not None else {}
            rows = mc.role_rows(names, saved)
            table.setRowCount(len(rows))
            for r, (name, role) in enumerate(rows):
                item = qt.QTableWidgetItem(name)
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                table.setItem(r, 0, item)
                combo = qt.QComboBox()
                for key in ROLES:
                    combo.addItem(ROLE_LABELS.get(key, key), key)
                combo.setCurrentIndex(ROLES.index(role))
                combo.connect("currentIndexChanged(int)", self.onRoleChanged)
                table.setCellWidget(r, 1, combo)
        finally:
            self._updatingTables = False
        if pn is not None:
            self.storeRolesFromTable()

    def storeRolesFromTable(self) -> None:
        table = self.ui.rolesTable
        rows = []
        for r in range(table.rowCount):
            combo = table.cellWidget(r, 1)
            rows.append((table.item(r, 0).text(), combo.itemData(combo.currentIndex)))
        text = json.dumps(mc.roles_from_rows(rows), sort_keys=True)
        if self._parameterNode.segmentRolesJson != text:
            self._parameterNode.segmentRolesJson = text

    def onRoleChanged(self, index=None) -> None:
        if not self._updatingTables and self._parameterNode is not None:
            self.storeRolesFromTable()

    def onGuessRoles(self) -> None:
        if self._parameterNode is not None:
            self._parameterNode.segmentRolesJson = "{}"
            self.updateRolesTable()

    # -- rules -------------------------------------------------------------------------------
    def _fillRulesTable(self, ruleset: RuleSet) -> None:
        table = self.ui.rulesTable
        self._updatingTables = True
        try:
            rows = mc.rule_rows(ruleset)
            table.setRowCount(len(rows))
            for r, row in enumerate(rows):
                for c, text in enumerate(row):
                    table.setItem(r, c, qt.QTableWidgetItem(text))
            table.resizeColumnsToContents()
        finally:
            self._updatingTables = False

    def _tableRows(self):
        table = self.ui.rulesTable
        rows = []
        for r in range(table.rowCount):
            rows.append([table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount)])
        return rows

    def updateRulesTableFromParameterNode(self) -> None:
        pn = self._parameterNode
        try:
            ruleset = self.logic.ruleSet(pn)
            self._rulesError = ""
        except InputError as exc:
            ruleset = PRESETS[DEFAULT_PRESET]
            self._rulesError = str(exc)
        label = CUSTOM_RULES_LABEL if pn.rulesJson else pn.rulePreset
        index = self.ui.presetComboBox.findText(label)
        wasBlocked = self.ui.presetComboBox.blockSignals(True)
        self.ui.presetComboBox.setCurrentIndex(index if index >= 0 else 0)
        self.ui.presetComboBox.blockSignals(wasBlocked)
        self._fillRulesTable(ruleset)

    def onPresetChanged(self, index: int) -> None:
        name = self.ui.presetComboBox.itemText(index)
        if self._parameterNode is None or name == CUSTOM_RULES_LABEL:
            return
        with slicer.util.NodeModify(self._parameterNode):
            self._parameterNode.rulePreset = name
            self._parameterNode.rulesJson = ""
        self._rulesError = ""
        self._fillRulesTable(PRESETS[name])
        self.updateGuiState()

    def onRuleEdited(self, item=None) -> None:
        if self._updatingTables or self._parameterNode is None:
            return
        self.storeRulesFromTable()

    def storeRulesFromTable(self) -> None:
        try:
            ruleset = mc.ruleset_from_rows(_("custom"), self._tableRows())
        except InputError as exc:
            self._rulesError = str(exc)
            self.updateGuiState()
            return
        self._rulesError = ""
        self._parameterNode.rulesJson = json.dumps(ruleset.to_dict())
        wasBlocked = self.ui.presetComboBox.blockSignals(True)
        self.ui.presetComboBox.setCurrentIndex(self.ui.presetComboBox.findText(CUSTOM_RULES_LABEL))
        self.ui.presetComboBox.blockSignals(wasBlocked)
        self.updateGuiState()

    def onAddRule(self) -> None:
        table = self.ui.rulesTable
        self._updatingTables = True
        try:
            r = table.rowCount
            table.insertRow(r)
            defaults = {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": "100", "unit": "Gy", "kind": "efficacy"}
            for c, col in enumerate(mc.RULE_COLUMNS):
                table.setItem(r, c, qt.QTableWidgetItem(defaults.get(col, "")))
        finally:
            self._updatingTables = False
        self.storeRulesFromTable()

    def onRemoveRule(self) -> None:
        table = self.ui.rulesTable
        # QAbstractItemView::selectedIndexes() is protected in Qt; the selection model's is public.
        rows = sorted({index.row() for index in table.selectionModel().selectedIndexes()}, reverse=True)
        if not rows:
            self.ui.statusLabel.text = _("Select the rule rows to remove first.")
            return
        self._updatingTables = True
        try:
            for r in rows:
                table.removeRow(r)
        finally:
            self._updatingTables = False
        self.storeRulesFromTable()

    def onLoadRules(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Load threshold rules"), "", _("Rule files (*.json *.toml)"))
        if not path:
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the rule file."), waitCursor=True):
                ruleset = load_rules(path)
                self._parameterNode.rulesJson = json.dumps(ruleset.to_dict())
                self.updateRulesTableFromParameterNode()
                self.updateGuiState()
        except Exception as exc:  # tryWithErrorDisplay showed it and re-raised
            self._setStatus(_("Could not load the rule file: {error}").format(error=exc))

    def onResetRules(self) -> None:
        self._parameterNode.rulesJson = ""
        self._rulesError = ""
        self.updateRulesTableFromParameterNode()
        self.updateGuiState()

    # -- inputs ------------------------------------------------------------------------------
    def onEditSegments(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the Segment Editor."), waitCursor=True):
            pn = self._parameterNode
            segNode = self.logic.ensureSegmentationNode(pn)
            source = pn.ctVolume or pn.activityVolume
            slicer.util.selectModule("SegmentEditor")
            editor = slicer.util.getModuleWidget("SegmentEditor").editor
            editor.setSegmentationNode(segNode)
            if source is not None:
                editor.setSourceVolumeNode(source)

    def onImportSegmentsFile(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            self.parent, _("Import segments"), "",
            _("Segmentations and label maps (*.seg.nrrd *.nrrd *.nii *.nii.gz *.mha *.mhd);;All files (*)"))
        if not path:
            return
        self._runImport(lambda: self.logic.importSegments(path, self.logic.ensureSegmentationNode(self._parameterNode)))

    def onImportMaskFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Folder of mask images"))
        if not folder:
            return
        self._runImport(lambda: self.logic.importSegments(folder, self.logic.ensureSegmentationNode(self._parameterNode)))

    def _runImport(self, job) -> None:
        try:
            with slicer.util.tryWithErrorDisplay(_("Import of segments failed."), waitCursor=True):
                names = job()
                self._setStatus(_("Imported segments: {names}").format(names=", ".join(names)))
        except Exception as exc:
            self._setStatus(_("Import failed: {error}").format(error=exc))
        self.updateRolesTable()
        self.updateGuiState()

    # -- apply -------------------------------------------------------------------------------
    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.setProperty("showsRunMessage", bool(text))
        self.ui.statusLabel.text = text

    def _progress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(round(100 * fraction)))
        self.ui.progressBar.setFormat(f"%p% {message}")
        slicer.app.processEvents()

    def onApplyButton(self) -> None:
        self.ui.applyButton.enabled = False
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setValue(0)
        try:
            with slicer.util.tryWithErrorDisplay(_("Dosimetry failed."), waitCursor=True):
                result = self.logic.process(self._parameterNode, progress=self._progress, show=True)
                lines = [mc.summary_line(result.evaluations)] + [_("Warning: {w}").format(w=w) for w in result.warnings]
                self.ui.summaryLabel.text = "\n".join(lines)
                self._setStatus(_("Done.") + (" " + _("{n} warning(s), see Results.").format(n=len(result.warnings)) if result.warnings else ""))
        except Exception as exc:
            self._setStatus(_("Failed: {error}").format(error=exc))
            self.ui.summaryLabel.text = _("No results: the last calculation failed.")
        finally:
            self.ui.progressBar.setVisible(False)
            self.updateGuiState()

    # -- results -----------------------------------------------------------------------------
    def onShowStatusColors(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not colour the segments.")):
            self.logic.showStatusColors(self._parameterNode.segmentation, self.logic.lastResult)

    def onRestoreColors(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not restore the segment colours.")):
            self.logic.restoreSegmentColors(self._parameterNode.segmentation)

    def onShowDvh(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the DVH chart.")):
            self.logic.showChart(self._parameterNode.dvhChart)

    def onDoseOpacityChanged(self, value: float) -> None:
        pn = self._parameterNode
        if pn is not None and pn.doseVolume is not None:
            slicer.util.setSliceViewerLayers(foregroundOpacity=value)

    def onVolumeRenderingToggled(self, checked: bool) -> None:
        pn = self._parameterNode
        if pn is not None and pn.doseVolume is not None:
            with slicer.util.tryWithErrorDisplay(_("Volume rendering of the dose failed."), waitCursor=True):
                self.logic.showDoseVolumeRendering(pn.doseVolume, checked)

    def onExport(self) -> None:
        pn = self._parameterNode
        try:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                report = pn.exportReport and self.logic.ensureReportDependencies(askUser=True)
                folder = self.logic.exportResults(self.logic.lastResult, str(pn.exportDirectory), report=report,
                                                  overwrite=pn.exportOverwrite, inputs=self.logic.lastInputs)
                self._setStatus(_("Results written to {folder}").format(folder=folder))
        except Exception as exc:
            self._setStatus(_("Export failed: {error}").format(error=exc))


#
# Logic
#


class TAREDosimetryLogic(ScriptedLoadableModuleLogic, NodeConversion, OutputNodes, SegmentImport, ResultExport, VtkDose):
    """MRML glue around the engine: nodes -> engine objects -> run_case -> nodes.

    The node conversions, output nodes, segment import, export and the VTK dose step are
    mixed in from the sibling package ``TAREDosimetrySlicer`` (one file each).

    Usable without the GUI (Python console, ``Slicer --no-main-window --python-script``):
    :meth:`run` takes nodes, :meth:`runFromFiles` takes file paths, :meth:`process` takes the
    parameter node.  Inputs are never modified; outputs are re-used on every run.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastResult = None
        #: Engine objects of the last run ({'activity', 'segmentation', 'ct'}), for report figures.
        self.lastInputs = {}

    def getParameterNode(self) -> TAREDosimetryParameterNode:
        return TAREDosimetryParameterNode(super().getParameterNode())

    # -- parameters --------------------------------------------------------------------------
    @staticmethod
    def engineParams(pn) -> DosimetryParams:
        """The engine's DosimetryParams from the parameter node (percent fields become fractions)."""
        return DosimetryParams(
            calibration=pn.calibration.value,
            administered_activity_gbq=pn.administeredActivityGBq if pn.calibration == CalibrationMode.relative else None,
            residual_fraction=pn.residualPercent / 100.0,
            lung_shunt_fraction=pn.lungShuntPercent / 100.0,
            reference_region=pn.referenceRegion.value,
            hours_since_administration=pn.hoursSinceAdministration,
            image_decay_corrected=pn.imageDecayCorrected,
            method=pn.doseMethod.value,
            device=pn.computeDevice.value,
            k_gy_kg_per_gbq=pn.kGyKgPerGBq,
            tissue_density_g_ml=pn.tissueDensityGPerMl,
            lung_density_g_ml=pn.lungDensityGPerMl,
            density_from_ct=pn.densityFromCt,
        )

    @staticmethod
    def ruleSet(pn) -> RuleSet:
        if pn.rulesJson:
            try:
                data = json.loads(pn.rulesJson)
            except ValueError as exc:
                raise InputError(f"saved custom rules are not valid JSON ({exc})") from None
            return RuleSet.from_dict(data, source="custom rules")
        return load_rules(pn.rulePreset or DEFAULT_PRESET)

    @staticmethod
    def savedRoles(pn) -> dict:
        try:
            roles = json.loads(pn.segmentRolesJson or "{}")
        except ValueError:
            return {}
        return roles if isinstance(roles, dict) else {}

    def whyNotRunnable(self, pn) -> str:
        """Empty string when Apply can run, else the reason shown in the panel."""
        if pn.activityVolume is None:
            return _("Select the SPECT / PET volume.")
        if pn.activityVolume.GetImageData() is None:
            return _("The SPECT / PET volume has no image data.")
        if pn.segmentation is None:
            return _("Select or create a segmentation.")
        names = self.segmentNames(pn.segmentation)
        if not names:
            return _("The segmentation has no segments: draw or import the liver, tumours, lungs...")
        if len(set(names)) != len(names):
            return _("Segment names must be unique (rename the duplicates).")
        if pn.calibration == CalibrationMode.relative and not pn.administeredActivityGBq > 0:
            return _("Enter the administered activity (GBq).")
        for node in (pn.doseVolume,):
            if node is not None and node in (pn.activityVolume, pn.ctVolume):
                return _("The dose output node is one of the inputs.")
        return ""

    # -- running -------------------------------------------------------------------------------
    def process(self, pn, progress=None, show: bool = True):
        """Run the case described by the parameter node; output nodes are stored back in it."""
        reason = self.whyNotRunnable(pn)
        if reason:
            raise InputError(reason)
        outputs = {
            "doseVolume": pn.doseVolume, "metricsTable": pn.metricsTable, "evaluationTable": pn.evaluationTable,
            "dvhTable": pn.dvhTable, "dvhThresholdTable": pn.dvhThresholdTable, "dvhChart": pn.dvhChart,
        }
        result = self.run(
            pn.activityVolume, pn.segmentation, ctNode=pn.ctVolume, params=self.engineParams(pn),
            roles=self.savedRoles(pn), rules=self.ruleSet(pn), outputs=outputs, progress=progress,
            show=show, doseOpacity=pn.doseOpacity, volumeRendering=pn.showDoseVolumeRendering,
        )
        with slicer.util.NodeModify(pn):
            for key, node in outputs.items():
                if getattr(pn, key) is not node:
                    setattr(pn, key, node)
        return result

    def run(self, activityNode, segmentationNode, ctNode=None, params=None, roles=None, rules=None,
            outputs=None, progress=None, show: bool = True, doseOpacity: float = 0.5, volumeRendering: bool = False):
        """Dosimetry of one case given as nodes.

        Parameters
        ----------
        activityNode : vtkMRMLScalarVolumeNode, SPECT/PET (counts or Bq/mL).
        segmentationNode : vtkMRMLSegmentationNode.
        ctNode : vtkMRMLScalarVolumeNode in HU, optional.
        params : DosimetryParams (engine defaults when None).
        roles : dict {segment name: role} overriding the guessed roles (names not in the
            segmentation are ignored).
        rules : RuleSet, preset name or rule-file path (engine default preset when None).
        outputs : dict of output nodes to re-use, updated in place with the nodes used
            (keys doseVolume, metricsTable, evaluationTable, dvhTable, dvhThresholdTable, dvhChart).
        progress : callable(fraction, message), optional.
        show : show the dose over the CT, the chart in the layout and PASS/FAIL colours.

        Returns
        -------
        The engine's CaseResult (also kept as ``self.lastResult``).
        """
        from TAREDosimetryLib.pipeline import run_case

        if activityNode is None or segmentationNode is None:
            raise InputError("a SPECT/PET volume and a segmentation are required")
        outputs = {} if outputs is None else outputs
        for key, node in outputs.items():
            if node is not None and node in (activityNode, ctNode, segmentationNode):
                raise InputError(f"output {key} is one of the inputs; inputs are never overwritten")
        for node, what in ((activityNode, "SPECT/PET volume"), (ctNode, "CT volume"), (segmentationNode, "segmentation")):
            self._checkNoTransform(node, what)

        def report(fraction, message):
            if progress is not None:
                progress(fraction, message)

        report(0.0, "reading nodes")
        activity = self.volumeFromNode(activityNode, unit="counts" if (params is None or params.calibration == "relative") else "Bq/mL")
        ct = self.volumeFromNode(ctNode, unit="HU") if ctNode is not None else None
        segmentation = self.segmentationFromNode(segmentationNode)
        known = set(segmentation.names)
        roleOverrides = {n: r for n, r in (roles or {}).items() if n in known}
        report(0.1, "dosimetry")
        # The dose step runs through the engine's VTK filter (run_case's dose_function hook).
        result = run_case(
            activity, segmentation, params=params, roles=roleOverrides, ct=ct, rules=rules,
            dose_function=self.vtkDoseFunction,
            inputs={"activity": activityNode.GetName(), "segmentation": segmentationNode.GetName(),
                    "ct": ctNode.GetName() if ctNode is not None else None},
            progress=lambda f, m: report(0.1 + 0.75 * f, m),
        )
        report(0.88, "output nodes")
        self.updateOutputNodes(result, activityNode, outputs)
        if show:
            self.showResults(result, outputs, segmentationNode, background=ctNode or activityNode,
                             doseOpacity=doseOpacity, volumeRendering=volumeRendering)
        report(1.0, "done")
        self.lastResult = result
        self.lastInputs = {"activity": activity, "segmentation": segmentation, "ct": ct}
        return result

    # -- files, batch, export ------------------------------------------------------------------------
    def runFromFiles(self, activityPath: str, segmentationPath: str, ctPath: str = None, params=None, roles=None,
                     rules=None, outDir: str = None, labelNames=None, report: bool = True, overwrite: bool = False,
                     keepNodes: bool = False, progress=None):
        """Load the images into the scene, run the case, write the engine's outputs to ``outDir``.

        Nodes created here are removed afterwards unless ``keepNodes``.  Returns the CaseResult.
        """
        created = []
        try:
            for p, what in ((activityPath, "SPECT/PET image"), (ctPath, "CT image")):
                if p and not os.path.exists(p):
                    raise InputError(f"{what} not found: {p}")
            activityNode = slicer.util.loadVolume(activityPath, {"show": False})
            created.append(activityNode)
            ctNode = None
            if ctPath:
                ctNode = slicer.util.loadVolume(ctPath, {"show": False})
                created.append(ctNode)
            segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TARE segments")
            created.append(segNode)
            segNode.CreateDefaultDisplayNodes()
            segNode.SetReferenceImageGeometryParameterFromVolumeNode(ctNode or activityNode)
            self.importSegments(segmentationPath, segNode, labelNames=labelNames)
            outputs = {}
            result = self.run(activityNode, segNode, ctNode=ctNode, params=params, roles=roles, rules=rules,
                              outputs=outputs, progress=progress, show=keepNodes and slicer.app.layoutManager() is not None)
            if not keepNodes:
                created += [n for n in outputs.values() if n is not None]
            if outDir:
                self.exportResults(result, outDir, report=report and self.ensureReportDependencies(askUser=False),
                                   overwrite=overwrite, inputs=self.lastInputs)
            return result
        finally:
            if not keepNodes:
                for node in created:
                    self._removeWithChildren(node)
