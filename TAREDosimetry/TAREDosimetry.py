"""TAREDosimetry: Y-90 radioembolization dosimetry in 3D Slicer.

The module is a thin face on the engine in ``TAREDosimetryLib`` (plain Python, no Slicer):
the logic turns MRML nodes into engine volumes and segmentations, calls
:func:`TAREDosimetryLib.pipeline.run_case`, and turns the result back into nodes (dose volume,
tables, DVH chart, PASS/FAIL segment colours).  Every number comes from the engine.

Sections: module metadata, parameter node, widget, logic, self-test.
"""

import enum
import importlib
import importlib.util
import json
import logging
import os
import pathlib
from typing import Annotated, Optional

import numpy as np
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
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib import physics
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.roles import ROLE_LABELS, ROLES
from TAREDosimetryLib.rules import DEFAULT_PRESET, PRESETS, RuleSet, load_rules
from TAREDosimetryLib.segmentation import Segmentation
from TAREDosimetryLib.volume import Volume

#: Attribute SlicerRT uses to recognise dose volumes (vtkSlicerRtCommon::IsDoseVolumeNode).
DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"
#: Colour table SlicerRT's Isodose logic creates for dose volumes (vtkSlicerRtCommon::DEFAULT_DOSE_COLOR_TABLE_NAME).
SLICERRT_DOSE_COLOR_TABLE_NAME = "Dose_ColorTable"
#: Built-in Slicer colour table used when SlicerRT is not installed (Base/Logic/Resources/ColorFiles).
FALLBACK_DOSE_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileColdToHotRainbow.txt"
#: Segmentation node attribute listing the segment IDs coloured by PASS/FAIL (so only those are restored).
STATUS_COLORED_ATTRIBUTE = "TAREDosimetry.StatusColoredSegmentIDs"
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


class TAREDosimetryLogic(ScriptedLoadableModuleLogic):
    """MRML glue around the engine: nodes -> engine objects -> run_case -> nodes.

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

    # -- nodes -> engine ---------------------------------------------------------------------------
    @staticmethod
    def _checkNoTransform(node, what: str) -> None:
        if node is not None and node.GetParentTransformNode() is not None:
            raise InputError(f"{what} '{node.GetName()}' is under a transform; harden the transform (Data module) before computing dose")

    @staticmethod
    def volumeFromNode(volumeNode, name: str = "", unit: str = "") -> Volume:
        """An engine Volume (LPS) with a float32 copy of the node's voxels."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError(f"volume {name or '(none)'} has no image data")
        array = np.array(slicer.util.arrayFromVolume(volumeNode), dtype=np.float32, copy=True)
        if array.ndim != 3:
            raise InputError(f"volume '{volumeNode.GetName()}' must be a 3-D scalar volume, got array shape {array.shape}")
        grid = TAREDosimetryLogic._gridOfNode(volumeNode, array.shape)
        return Volume(array, grid=grid, name=name or volumeNode.GetName(), unit=unit)

    @staticmethod
    def _gridOfNode(volumeNode, shape):
        """Engine Grid (LPS) of a volume node whose voxel array has ``shape`` (k, j, i)."""
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        return mc.grid_from_ijk_to_ras(slicer.util.arrayFromVTKMatrix(ijkToRas), shape)

    @staticmethod
    def segmentNames(segmentationNode) -> list:
        seg = segmentationNode.GetSegmentation()
        return [seg.GetSegment(seg.GetNthSegmentID(i)).GetName() for i in range(seg.GetNumberOfSegments())]

    def segmentationFromNode(self, segmentationNode) -> Segmentation:
        """Engine Segmentation: one mask per segment (overlaps kept) on the segmentation's own
        geometry, cropped to the union of all segments."""
        import vtkSegmentationCorePython as vtkSegmentationCore

        seg = segmentationNode.GetSegmentation()
        ids = self._segmentIds(segmentationNode)
        if not ids:
            raise InputError(f"segmentation '{segmentationNode.GetName()}' has no segments")
        names = [seg.GetSegment(i).GetName() for i in ids]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"segment names must be unique; repeated: {', '.join(dup)}")
        idArray = vtk.vtkStringArray()
        for i in ids:
            idArray.InsertNextValue(i)
        # A merged labelmap only fixes the common geometry (union of the segments); each mask is
        # then exported on it separately so that overlapping segments stay whole.
        geometryNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__TAREDosimetry_geometry__")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, idArray, geometryNode, None, vtkSegmentationCore.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS
            ):
                raise InputError(f"segments of '{segmentationNode.GetName()}' could not be exported as a label map")
            shape = slicer.util.arrayFromVolume(geometryNode).shape
            grid = self._gridOfNode(geometryNode, shape)
            masks, colors, segIds = {}, {}, {}
            for segmentId, name in zip(ids, names):
                mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, geometryNode)
                if mask.shape != shape:
                    raise InputError(f"segment {name!r}: exported mask shape {mask.shape} differs from the common geometry {shape}")
                masks[name] = mask != 0
                colors[name] = tuple(seg.GetSegment(segmentId).GetColor())
                segIds[name] = segmentId
        finally:
            # The export made a colour table of its own for this label map: remove it with the node.
            if geometryNode.GetDisplayNode() and geometryNode.GetDisplayNode().GetColorNode():
                slicer.mrmlScene.RemoveNode(geometryNode.GetDisplayNode().GetColorNode())
            self._removeWithChildren(geometryNode)
        return Segmentation.from_masks(masks, grid, colors=colors, ids=segIds, source=segmentationNode.GetName())

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

    # -- engine -> nodes ---------------------------------------------------------------------------
    def updateOutputNodes(self, result, activityNode, outputs: dict) -> None:
        base = activityNode.GetName()
        outputs["doseVolume"] = self.updateDoseVolumeNode(result.dose_gy, outputs.get("doseVolume"), f"{base} dose (Gy)")
        status = mc.segment_status(result.evaluations)
        outputs["metricsTable"] = self._updateTable(
            outputs.get("metricsTable"), f"{base} TARE metrics", mc.metrics_columns(result.segments, status))
        outputs["evaluationTable"] = self._updateTable(
            outputs.get("evaluationTable"), f"{base} TARE thresholds", mc.evaluation_columns(result.evaluations))
        self.updateDvhNodes(result, outputs, base)

    def _newNode(self, className: str, name: str):
        return slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))

    def updateDoseVolumeNode(self, doseGy: Volume, doseNode=None, name: str = "dose (Gy)"):
        """Write the dose (Gy) into ``doseNode`` (created when None), tagged as a SlicerRT dose volume."""
        if doseNode is None:
            doseNode = self._newNode("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(doseNode, np.ascontiguousarray(doseGy.array, dtype=np.float32))
        doseNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(mc.ijk_to_ras_from_grid(doseGy.grid)))
        doseNode.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")
        doseNode.SetAttribute("TAREDosimetry.Unit", "Gy")
        if doseNode.GetDisplayNode() is None:
            doseNode.CreateDefaultDisplayNodes()
        display = doseNode.GetDisplayNode()
        display.SetAndObserveColorNodeID(self.doseColorNodeID())
        lower, upper = mc.dose_window_gy(doseGy.array)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(lower, upper)
        # Voxels with (almost) no dose are left transparent in the overlay.
        display.SetThreshold(max(1e-3, 0.01 * upper), float(np.max(doseGy.array)) + 1.0)
        display.ApplyThresholdOn()
        colors = slicer.modules.colors.logic()
        legend = colors.GetColorLegendDisplayNode(doseNode) or colors.AddDefaultColorLegendDisplayNode(doseNode)
        if legend is not None:
            legend.SetTitleText("Dose (Gy)")
        return doseNode

    @staticmethod
    def doseColorNodeID() -> str:
        """SlicerRT's dose colour table when SlicerRT is installed, else Slicer's ColdToHotRainbow."""
        node = slicer.mrmlScene.GetFirstNodeByName(SLICERRT_DOSE_COLOR_TABLE_NAME)
        if node is None and hasattr(slicer, "vtkSlicerIsodoseModuleLogic"):
            try:
                node = slicer.vtkSlicerIsodoseModuleLogic.CreateDefaultDoseColorTable(slicer.mrmlScene)
            except Exception:  # SlicerRT present but its logic not usable here: fall back
                node = None
        if node is not None:
            return node.GetID()
        if slicer.mrmlScene.GetNodeByID(FALLBACK_DOSE_COLOR_NODE_ID) is not None:
            return FALLBACK_DOSE_COLOR_NODE_ID
        return slicer.modules.colors.logic().GetColorTableNodeID(slicer.vtkMRMLColorTableNode.Rainbow)

    def _updateTable(self, tableNode, name: str, columns):
        """Replace the table's columns with ``[(name, unit, values), ...]`` (strings or floats)."""
        if tableNode is None:
            tableNode = self._newNode("vtkMRMLTableNode", name)
        wasModified = tableNode.StartModify()
        try:
            tableNode.RemoveAllColumns()
            for colName, unit, values in columns:
                if values and all(isinstance(v, str) for v in values):
                    array = vtk.vtkStringArray()
                    for v in values:
                        array.InsertNextValue(v)
                else:
                    array = vtk.vtkDoubleArray()
                    for v in values:
                        array.InsertNextValue(float(v))
                array.SetName(colName)
                tableNode.AddColumn(array)
                if unit:
                    tableNode.SetColumnUnitLabel(colName, unit)
            tableNode.SetUseColumnNameAsColumnHeader(True)
        finally:
            tableNode.EndModify(wasModified)
        return tableNode

    def updateDvhNodes(self, result, outputs: dict, base: str) -> None:
        """DVH table (dose + one volume column per segment), threshold lines, and a chart."""
        dose, curves = mc.dvh_columns(result.segments, step_gy=max(result.params.dvh_curve_step_gy, 0.5))
        columns = [("dose_gy", "Gy", list(dose))] + [(name, "%", list(vol)) for name, _seg, vol in curves]
        dvhTable = self._updateTable(outputs.get("dvhTable"), f"{base} DVH", columns)
        outputs["dvhTable"] = dvhTable
        lines = mc.threshold_lines_gy(result.rules)
        lineColumns = []
        for n, (_label, doseGy) in enumerate(lines):
            lineColumns.append((f"threshold{n}_gy", "Gy", [doseGy, doseGy]))
            lineColumns.append((f"threshold{n}_pct", "%", [0.0, 100.0]))
        if not lineColumns:
            lineColumns = [("threshold_none_gy", "Gy", [0.0, 0.0]), ("threshold_none_pct", "%", [0.0, 0.0])]
        lineTable = self._updateTable(outputs.get("dvhThresholdTable"), f"{base} DVH thresholds", lineColumns)
        outputs["dvhThresholdTable"] = lineTable

        chart = outputs.get("dvhChart")
        if chart is None:
            chart = self._newNode("vtkMRMLPlotChartNode", f"{base} DVH")
        # Re-running replaces this chart's series instead of adding more.
        old = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
        chart.RemoveAllPlotSeriesNodeIDs()
        for series in old:
            if series is not None:
                slicer.mrmlScene.RemoveNode(series)
        for name, seg, _vol in curves:
            series = self._newNode("vtkMRMLPlotSeriesNode", name)
            series.SetAndObserveTableNodeID(dvhTable.GetID())
            series.SetXColumnName("dose_gy")
            series.SetYColumnName(name)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            series.SetColor(*[float(c) for c in seg.color])
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        for n, (label, _doseGy) in enumerate(lines):
            series = self._newNode("vtkMRMLPlotSeriesNode", label)
            series.SetAndObserveTableNodeID(lineTable.GetID())
            series.SetXColumnName(f"threshold{n}_gy")
            series.SetYColumnName(f"threshold{n}_pct")
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
            series.SetColor(0.4, 0.4, 0.4)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetTitle(f"DVH {base}")
        chart.SetXAxisTitle("Dose (Gy)")
        chart.SetYAxisTitle("Volume (%)")
        chart.SetLegendVisibility(True)
        outputs["dvhChart"] = chart

    # -- display -------------------------------------------------------------------------------------
    def showResults(self, result, outputs: dict, segmentationNode, background=None, doseOpacity: float = 0.5,
                    volumeRendering: bool = False) -> None:
        doseNode = outputs["doseVolume"]
        slicer.util.setSliceViewerLayers(background=background, foreground=doseNode, foregroundOpacity=doseOpacity,
                                         fit=slicer.app.layoutManager() is not None)
        self.showDoseVolumeRendering(doseNode, volumeRendering)
        self.showChart(outputs.get("dvhChart"))
        self.showStatusColors(segmentationNode, result)

    @staticmethod
    def showChart(chartNode) -> None:
        if chartNode is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chartNode)

    @staticmethod
    def showDoseVolumeRendering(doseNode, visible: bool):
        """Show or hide GPU volume rendering of the dose with its dose colours (created on first use)."""
        vrLogic = slicer.modules.volumerendering.logic()
        display = vrLogic.GetFirstVolumeRenderingDisplayNode(doseNode)
        if display is None:
            if not visible:
                return None
            display = vrLogic.CreateDefaultVolumeRenderingNodes(doseNode)
        vrLogic.CopyDisplayToVolumeRenderingDisplayNode(display)
        display.SetVisibility(bool(visible))
        return display

    @staticmethod
    def _segmentIdsOf(segmentationNode, segmentResult) -> list:
        """Slicer segment IDs behind one engine segment result.  The engine's ``segment_id`` is the
        Slicer ID, or for a combined entry (lungs of the LSF model) a comma-separated list of
        segment names; derived entries (normal liver = liver minus tumours) have none."""
        seg = segmentationNode.GetSegmentation()
        ids = []
        for token in str(segmentResult.segment_id).split(","):
            token = token.strip()
            if not token:
                continue
            if seg.GetSegment(token) is None:
                token = seg.GetSegmentIdBySegmentName(token)
            if token and seg.GetSegment(token) is not None and token not in ids:
                ids.append(token)
        return ids

    def showStatusColors(self, segmentationNode, result) -> list:
        """Colour segments green (PASS) / red (FAIL) with display override colours; returns the IDs coloured."""
        if segmentationNode is None or result is None:
            return []
        if segmentationNode.GetDisplayNode() is None:
            segmentationNode.CreateDefaultDisplayNodes()
        display = segmentationNode.GetDisplayNode()
        self.restoreSegmentColors(segmentationNode)
        status = mc.segment_status(result.evaluations)
        colored = []
        for segResult in result.segments:
            if segResult.name not in status:
                continue
            color = mc.PASS_COLOR if status[segResult.name] == "PASS" else mc.FAIL_COLOR
            for segmentId in self._segmentIdsOf(segmentationNode, segResult):
                display.SetSegmentOverrideColor(segmentId, *color)
                colored.append(segmentId)
        segmentationNode.SetAttribute(STATUS_COLORED_ATTRIBUTE, json.dumps(colored))
        return colored

    @staticmethod
    def restoreSegmentColors(segmentationNode) -> None:
        """Remove the PASS/FAIL override colours (only those this module set)."""
        if segmentationNode is None or segmentationNode.GetDisplayNode() is None:
            return
        try:
            colored = json.loads(segmentationNode.GetAttribute(STATUS_COLORED_ATTRIBUTE) or "[]")
        except ValueError:
            colored = []
        display = segmentationNode.GetDisplayNode()
        seg = segmentationNode.GetSegmentation()
        for segmentId in colored:
            if seg.GetSegment(segmentId) is not None:
                display.UnsetSegmentOverrideColor(segmentId)
        segmentationNode.SetAttribute(STATUS_COLORED_ATTRIBUTE, "[]")

    # -- segments: create, edit, import --------------------------------------------------------------
    @staticmethod
    def ensureSegmentationNode(pn):
        """The parameter node's segmentation, created (geometry from CT or SPECT) when missing."""
        if pn.segmentation is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TARE segments")
            node.CreateDefaultDisplayNodes()
            reference = pn.ctVolume or pn.activityVolume
            if reference is not None:
                node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
            pn.segmentation = node
        return pn.segmentation

    def importSegments(self, path: str, segmentationNode, labelNames=None) -> list:
        """Add segments from a .seg.nrrd, a label map (one segment per label) or a folder of masks.

        labelNames : label names for label maps, anything the engine's ``io.parse_label_names``
            reads ({value: name}, 'v=name,v=name', a JSON file, 'totalsegmentator'); default names
            are 'label N', as the engine's own reader gives them.
        Returns the names of the segments added.
        """
        from TAREDosimetryLib.io import parse_label_names, strip_image_suffix

        labelNames = parse_label_names(labelNames)
        if os.path.isdir(path):
            added = []
            files = sorted(f for f in os.listdir(path) if f.lower().endswith((".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")))
            if not files:
                raise InputError(f"folder {path} holds no mask images (.nrrd, .nii, .nii.gz, .mha, .mhd)")
            for f in files:
                added += self._importLabelmapFile(os.path.join(path, f), segmentationNode, binary=True,
                                                  names={1: strip_image_suffix(f)})
            return added
        if not os.path.isfile(path):
            raise InputError(f"segmentation file not found: {path}")
        if path.lower().endswith(".seg.nrrd"):
            loaded = slicer.util.loadSegmentation(path)
            try:
                before = set(self._segmentIds(segmentationNode))
                for segmentId in self._segmentIds(loaded):
                    segmentationNode.GetSegmentation().CopySegmentFromSegmentation(loaded.GetSegmentation(), segmentId)
                return [segmentationNode.GetSegmentation().GetSegment(i).GetName()
                        for i in self._segmentIds(segmentationNode) if i not in before]
            finally:
                self._removeWithChildren(loaded)
        return self._importLabelmapFile(path, segmentationNode, binary=False, names=labelNames)

    @staticmethod
    def _segmentIds(segmentationNode) -> list:
        seg = segmentationNode.GetSegmentation()
        return [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]

    def _importLabelmapFile(self, path: str, segmentationNode, binary: bool, names=None) -> list:
        # singleFile: a mask among similarly named files is not read as one image series; show: views untouched.
        labelNode = slicer.util.loadLabelVolume(path, {"singleFile": True, "show": False})
        try:
            array = slicer.util.arrayFromVolume(labelNode)
            if binary:
                array[:] = array != 0
                slicer.util.arrayFromVolumeModified(labelNode)
            values = [int(v) for v in np.unique(array) if v != 0]
            if not values:
                raise InputError(f"{path} holds no labelled voxels")
            before = set(self._segmentIds(segmentationNode))
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelNode, segmentationNode):
                raise InputError(f"label map {path} could not be imported")
            newIds = [i for i in self._segmentIds(segmentationNode) if i not in before]
            added = []
            # New segments come in increasing label order, one per label value.
            for value, segmentId in zip(values, newIds):
                name = (names or {}).get(value, f"label {value}")
                segmentationNode.GetSegmentation().GetSegment(segmentId).SetName(name)
                added.append(name)
            return added
        finally:
            self._removeWithChildren(labelNode)

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

    @staticmethod
    def _removeWithChildren(node) -> None:
        """Remove a node with the nodes only it uses: its display nodes (colour legend and volume
        rendering included), its storage node and, for a chart, its plot series.  vtkMRMLScene.RemoveNode
        alone leaves them in the scene."""
        if node is None or not slicer.mrmlScene.IsNodePresent(node):
            return
        dependents = []
        if node.IsA("vtkMRMLPlotChartNode"):
            dependents += [node.GetNthPlotSeriesNode(i) for i in range(node.GetNumberOfPlotSeriesNodes())]
        if node.IsA("vtkMRMLDisplayableNode"):
            dependents += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            dependents.append(node.GetStorageNode())
        slicer.mrmlScene.RemoveNode(node)
        for dependent in dependents:
            if dependent is not None and slicer.mrmlScene.IsNodePresent(dependent):
                slicer.mrmlScene.RemoveNode(dependent)

    @staticmethod
    def ensureReportDependencies(askUser: bool = True) -> bool:
        """True when matplotlib (report figures) is importable; offers to install it when ``askUser``."""
        try:
            import matplotlib  # noqa: F401

            return True
        except ImportError:
            pass
        if not askUser or slicer.app.testingEnabled():
            logging.warning("TAREDosimetry: matplotlib is not installed; the report is skipped (metrics and DVH tables are written)")
            return False
        if _hasPackagingModule():  # Slicer >= 5.12
            # importlib, not "import slicer.packaging": that statement would make "slicer" a local name
            # of this whole function (UnboundLocalError at slicer.app above).
            packaging = importlib.import_module("slicer.packaging")
            try:
                packaging.pip_ensure(["matplotlib>=3.5"], requester="TAREDosimetry")
            except RuntimeError:  # the user declined the installation: export without the report
                return False
        elif slicer.util.confirmOkCancelDisplay(_("The HTML report needs the Python package matplotlib. Install it now?")):
            slicer.util.pip_install("matplotlib>=3.5")
        else:
            return False
        try:
            import matplotlib  # noqa: F401

            return True
        except ImportError:
            return False

    @staticmethod
    def exportResults(result, outDir: str, report: bool = True, overwrite: bool = False, inputs=None) -> str:
        """Write the engine's outputs (metrics CSV/JSON, DVH, report, dose file) to ``outDir``.

        inputs : {'activity', 'segmentation', 'ct'} engine objects of the run (report slices), optional.
        """
        if result is None:
            raise InputError("no result to export: run the calculation first")
        if not outDir or str(outDir) in (".", ""):
            raise InputError("choose an output folder first")
        try:
            from TAREDosimetryLib.outputs import write_outputs
        except ImportError as exc:
            raise InputError(f"this engine version cannot write outputs ({exc})") from None
        inputs = inputs or {}
        write_outputs(result, str(outDir), overwrite=overwrite, report=report,
                      background=inputs.get("ct") or inputs.get("activity"), segmentation=inputs.get("segmentation"))
        return str(outDir)

    # -- the engine's VTK filter ---------------------------------------------------------------------
    @classmethod
    def vtkDoseFunction(cls, activityGBq: Volume, density, params: DosimetryParams, lungMask=None) -> Volume:
        """The dose step of ``run_case`` (its ``dose_function``): the engine's VTK filter
        (density on port 1, lung mask on port 2 for DVK with ``dvk_lung_mode='ldm'``).

        The filter has no kernel-radius setting: a DVK radius other than the kernel default
        (``dvk_radius_mm``) is computed by the engine's own ``dose_map_gy`` instead, so that the
        numbers always equal the command line's."""
        from TAREDosimetryLib import kernels

        radius = getattr(params, "dvk_radius_mm", None)
        if params.method == "dvk" and radius is not None and float(radius) != float(kernels.DEFAULT_RADIUS_MM):
            from TAREDosimetryLib.dose import dose_map_gy

            return dose_map_gy(activityGBq, density, params, lung_mask=lungMask)
        return cls.doseWithVtkFilter(activityGBq, density, params, lungMask=lungMask)

    @staticmethod
    def doseWithVtkFilter(activityGBq: Volume, density=None, params: Optional[DosimetryParams] = None,
                          lungMask=None) -> Volume:
        """Dose (Gy) of an activity map (GBq per voxel) through the engine's VTK filter
        (``TAREDosimetryLib.vtkfilter.TAREDoseFilter``: port 0 activity, optional port 1 density in
        g/mL, optional port 2 lung mask), on the same grid.  ``density``: a Volume on the activity
        grid, a number (g/mL), or None for the tissue density of ``params``.  ``lungMask``: (k, j, i) bool
        array on the activity grid, used by DVK with ``dvk_lung_mode='ldm'``."""
        from vtk.util import numpy_support

        from TAREDosimetryLib.vtkfilter import TAREDoseFilter

        params = params or DosimetryParams()
        nz, ny, nx = activityGBq.array.shape

        def toImage(array):
            # VTK point order is i fastest, then j, then k: a C-order (k, j, i) array ravelled.
            image = vtk.vtkImageData()
            image.SetDimensions(nx, ny, nz)
            image.SetSpacing(*activityGBq.grid.spacing_mm)
            image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
            return image

        lungMode = getattr(params, "dvk_lung_mode", "kernel")
        # A constant density (a number) is the filter's tissue density; a Volume goes to port 1.
        constantDensity = params.tissue_density_g_ml if density is None or isinstance(density, Volume) else float(density)
        doseFilter = TAREDoseFilter(method=params.method, device=params.device, k_gy_kg_per_gbq=params.k_gy_kg_per_gbq,
                                    tissue_density_g_ml=constantDensity, lung_mode=lungMode)
        doseFilter.SetInputDataObject(0, toImage(np.asarray(activityGBq.array, dtype=np.float32)))
        if isinstance(density, Volume):
            doseFilter.SetInputDataObject(1, toImage(np.asarray(density.array, dtype=np.float32)))
        if params.method == "dvk" and lungMode == "ldm" and lungMask is not None and np.any(lungMask):
            doseFilter.SetInputDataObject(2, toImage(np.asarray(lungMask, dtype=np.uint8)))
        doseFilter.Update()
        scalars = doseFilter.GetOutputDataObject(0).GetPointData().GetScalars()
        array = numpy_support.vtk_to_numpy(scalars).reshape(activityGBq.array.shape)
        return activityGBq.with_array(np.array(array, dtype=np.float32), name="dose", unit="Gy")


def _hasPackagingModule() -> bool:
    """True where Slicer has ``slicer.packaging`` (pip_ensure; Slicer 5.12 and later)."""
    return importlib.util.find_spec("slicer.packaging") is not None


#
# Self-test
#


class TAREDosimetryTest(ScriptedLoadableModuleTest):
    """Builds the engine's analytic phantom as MRML nodes, runs the logic, checks the numbers.

    Runs under ctest (slicer_add_python_unittest: every test_* method) and through
    ``slicer.selfTests['TAREDosimetry']()`` (runTest).
    """

    # Loose enough for the nearest-neighbour round trip through Slicer's segment export,
    # tight enough to catch a wrong unit, axis order or RAS/LPS flip.
    MEAN_DOSE_RTOL = 0.01

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_geometry_round_trip, self.test_phantom_mean_doses, self.test_dvh_and_chart,
                     self.test_pass_fail_colors_and_restore, self.test_rerun_reuses_output_nodes,
                     self.test_vtk_filter_matches_the_engine_dose, self.test_invalid_input_is_reported):
            self.setUp()
            test()

    # -- helpers ---------------------------------------------------------------------------------
    def _phantomNodes(self, spacing_mm=5.0):
        from TAREDosimetryLib.phantom import make_phantom

        case = make_phantom(analytic=True, spacing_mm=spacing_mm)
        activityNode = slicer.util.addVolumeFromArray(
            case.activity.array, ijkToRAS=mc.ijk_to_ras_from_grid(case.activity.grid), name="phantom SPECT")
        ctNode = slicer.util.addVolumeFromArray(case.ct.array, ijkToRAS=mc.ijk_to_ras_from_grid(case.ct.grid), name="phantom CT")
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "phantom segments")
        segNode.CreateDefaultDisplayNodes()
        segNode.SetReferenceImageGeometryParameterFromVolumeNode(ctNode)
        seg = case.segmentation
        for info in seg.segments:
            segmentId = segNode.GetSegmentation().AddEmptySegment(info.segment_id, info.name, info.color)
            slicer.util.updateSegmentBinaryLabelmapFromArray(seg.mask(info).astype(np.uint8), segNode, segmentId, ctNode)
        return case, activityNode, ctNode, segNode

    def _run(self, case, activityNode, ctNode, segNode, outputs=None, rules=None):
        logic = TAREDosimetryLogic()
        outputs = {} if outputs is None else outputs
        result = logic.run(activityNode, segNode, ctNode=ctNode, params=case.params.replace(density_from_ct=False),
                           roles=case.roles, rules=rules, outputs=outputs, show=True)
        return logic, result, outputs

    # -- tests -----------------------------------------------------------------------------------
    def test_geometry_round_trip(self):
        self.delayDisplay("Volume node geometry to engine grid and back")
        case, activityNode, _ct, _seg = self._phantomNodes()
        vol = TAREDosimetryLogic.volumeFromNode(activityNode)
        self.assertTrue(vol.grid.same_as(case.activity.grid), f"{vol.grid} != {case.activity.grid}")
        np.testing.assert_array_equal(vol.array, case.activity.array)
        self.delayDisplay("Test passed")

    def test_phantom_mean_doses(self):
        self.delayDisplay("Mean doses of the analytic phantom")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        checked = 0
        for seg in result.segments:
            expected = case.expected_mean_gy.get(seg.name)
            if expected is None:
                continue
            measured = seg.metrics["mean_gy"]
            self.assertAlmostEqual(measured / expected, 1.0, delta=self.MEAN_DOSE_RTOL,
                                   msg=f"{seg.name}: mean {measured:.3f} Gy, analytic {expected:.3f} Gy")
            checked += 1
        self.assertGreaterEqual(checked, 4)
        # The dose node holds the engine's dose, in Gy, on the SPECT grid, tagged for SlicerRT.
        doseNode = outputs["doseVolume"]
        self.assertEqual(doseNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE), "1")
        np.testing.assert_allclose(slicer.util.arrayFromVolume(doseNode), result.dose_gy.array, rtol=1e-6)
        # Inputs are untouched.
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(activityNode), case.activity.array)
        self.assertIsNone(activityNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE))
        # Metrics table: one row per segment result, mean dose column in Gy.
        table = outputs["metricsTable"]
        self.assertEqual(table.GetNumberOfRows(), len(result.segments))
        means = slicer.util.arrayFromTableColumn(table, "mean_gy")
        np.testing.assert_allclose(means, [s.metrics["mean_gy"] for s in result.segments], rtol=1e-9)
        self.delayDisplay("Test passed")

    def test_dvh_and_chart(self):
        self.delayDisplay("DVH table and chart")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        dvh = outputs["dvhTable"]
        dose = slicer.util.arrayFromTableColumn(dvh, "dose_gy")
        self.assertEqual(dose[0], 0.0)
        chart = outputs["dvhChart"]
        withDvh = [s for s in result.segments if s.dvh is not None]
        nLines = len(mc.threshold_lines_gy(result.rules))
        self.assertEqual(chart.GetNumberOfPlotSeriesNodes(), len(withDvh) + nLines)
        for i, seg in enumerate(withDvh):
            series = chart.GetNthPlotSeriesNode(i)
            np.testing.assert_allclose(series.GetColor(), seg.color, atol=1e-6)
            column = slicer.util.arrayFromTableColumn(dvh, series.GetYColumnName())
            self.assertAlmostEqual(float(column[0]), 100.0, places=3)
            self.assertLessEqual(float(column[-1]), 1e-6)
            # The curve's dose at 50 % agrees with the engine's median within one table step.
            d50 = float(np.interp(-50.0, -column, dose))
            self.assertAlmostEqual(d50, seg.dvh.dose_at_volume_pct(50.0), delta=2 * (dose[1] - dose[0]) + 1e-6)
        self.delayDisplay("Test passed")

    def test_pass_fail_colors_and_restore(self):
        self.delayDisplay("PASS/FAIL colours on the segments")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        display = segNode.GetDisplayNode()
        status = mc.segment_status(result.evaluations)
        self.assertTrue(status, "the default preset should apply to the phantom's tumours")
        expected = {"PASS": mc.PASS_COLOR, "FAIL": mc.FAIL_COLOR}
        for seg in result.segments:
            for segmentId in logic._segmentIdsOf(segNode, seg):
                color = display.GetSegmentOverrideColor(segmentId)
                if seg.name in status:
                    np.testing.assert_allclose([color[0], color[1], color[2]], expected[status[seg.name]], atol=1e-6)
        logic.restoreSegmentColors(segNode)
        for segmentId in logic._segmentIds(segNode):
            # An unset override colour reads as SEGMENT_COLOR_NO_OVERRIDE (-1): the segment's own colour shows.
            color = display.GetSegmentOverrideColor(segmentId)
            self.assertLess(color[0], 0.0, f"override colour of {segmentId} should be unset after restore")
        self.delayDisplay("Test passed")

    def test_rerun_reuses_output_nodes(self):
        self.delayDisplay("Re-running updates the same output nodes")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        counts = {c: slicer.mrmlScene.GetNumberOfNodesByClass(c) for c in
                  ("vtkMRMLScalarVolumeNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode")}
        first = dict(outputs)
        self._run(case, activityNode, ctNode, segNode, outputs=outputs, rules="hcc-glass")
        for key, node in first.items():
            self.assertIs(outputs[key], node, key)
        for c, n in counts.items():
            self.assertLessEqual(slicer.mrmlScene.GetNumberOfNodesByClass(c), n + (2 if c == "vtkMRMLPlotSeriesNode" else 0), c)
        self.delayDisplay("Test passed")

    def test_vtk_filter_matches_the_engine_dose(self):
        self.delayDisplay("The dose computed through the engine's VTK filter equals the engine's own dose_map_gy")
        from TAREDosimetryLib.dose import dose_map_gy

        case, activityNode, ctNode, segNode = self._phantomNodes()
        for method in ("ldm", "dvk"):
            params = case.params.replace(density_from_ct=False, method=method, device="cpu")
            result = TAREDosimetryLogic().run(activityNode, segNode, ctNode=ctNode, params=params, roles=case.roles,
                                              outputs={}, show=False)
            engine = dose_map_gy(result.activity_gbq, result.density_g_ml, result.params)
            np.testing.assert_allclose(result.dose_gy.array, engine.array, rtol=1e-5, atol=1e-6, err_msg=method)
        self.delayDisplay("Test passed")

    def test_invalid_input_is_reported(self):
        self.delayDisplay("Errors name the problem")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic = TAREDosimetryLogic()
        with self.assertRaises(InputError):
            logic.run(activityNode, segNode, params=case.params, outputs={"doseVolume": activityNode})
        pn = logic.getParameterNode()
        # The singleton parameter node may be bound to an open panel whose selector already picked the
        # phantom segmentation: set both inputs explicitly.
        with slicer.util.NodeModify(pn):
            pn.activityVolume = activityNode
            pn.segmentation = None
        self.assertIn("segmentation", logic.whyNotRunnable(pn).lower())
        self.delayDisplay("Test passed")
