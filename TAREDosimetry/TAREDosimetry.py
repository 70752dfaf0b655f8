"""TAREDosimetry: Y-90 radioembolization dosimetry in 3D Slicer.

The module is a thin face on the engine in ``TAREDosimetryLib`` (plain Python, no Slicer):
the logic turns MRML nodes into engine volumes and segmentations, calls
:func:`TAREDosimetryLib.pipeline.run_case` (its dose step through the engine's VTK filter), and
turns the result back into nodes (dose volume, tables, DVH chart, PASS/FAIL segment colours, the
result record kept in the scene).  Every number comes from the engine.

Sections: module metadata, parameter node, widget, logic.  The logic's MRML helpers, the widget's
table sections, the Sample Data loader and the self-test (TAREDosimetryTest, imported here) are in
the sibling package TAREDosimetrySlicer, one file per concept.
"""

import enum
import json
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
    vtkMRMLTextNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib import panel, physics
from TAREDosimetryLib.errors import CancelledError, InputError
from TAREDosimetryLib.evaluation.rules import DEFAULT_PRESET, RuleSet, load_rules
from TAREDosimetryLib.params import SAMPLINGS, DosimetryParams
from TAREDosimetrySlicer.caseloading import CaseLoading
from TAREDosimetrySlicer.caserun import CaseRunning
from TAREDosimetrySlicer.cases import CaseOutputs, caseNameOfNode
from TAREDosimetrySlicer.dependencies import Dependencies
from TAREDosimetrySlicer.export import ResultExport
from TAREDosimetrySlicer.inputpanel import InputSection
from TAREDosimetrySlicer.nodes import NodeConversion
from TAREDosimetrySlicer.outputnodes import OUTPUT_NAMES, OutputNodes
from TAREDosimetrySlicer.planningpanel import PlanningPanel
from TAREDosimetrySlicer.rtdoseexport import RtDoseExport
from TAREDosimetrySlicer.sampledata import registerSampleData
from TAREDosimetrySlicer.segmentread import SegmentReading
from TAREDosimetrySlicer.selftest import TAREDosimetryTest  # noqa: F401  (slicer.selfTests and ctest find it here)
from TAREDosimetrySlicer.tablesections import RolesSection, RulesSection
from TAREDosimetrySlicer.vtkdose import VtkDose


#
# TAREDosimetry
#


class TAREDosimetry(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("TARE Dosimetry")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["TAREDosimetry project contributors (https://github.com/TAREDosimetry/TAREDosimetry)"]
        self.parent.helpText = _("""
Y-90 radioembolization (TARE / SIRT) dosimetry from a SPECT or PET image and a segmentation:
dose map (local deposition or dose-voxel kernel), metrics and DVH per segment, and PASS/FAIL
against published dose thresholds. Try it: Sample Data > TARE demo patient > Apply.
Research software, not a medical device.
See the <a href="https://github.com/TAREDosimetry/TAREDosimetry">project page</a>.
""")
        self.parent.acknowledgementText = _("""
Dose thresholds: Deipolyi et al. (Eur J Radiol 2021) and the EANM 2022 procedure guideline.
Y-90 dose point kernel: Graves et al. 2019.
""")
        # The demo patient in Sample Data (generated locally), once the application has started.
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Parameter node
#

#: Panel labels of every choice; the enum values are the engine's (DosimetryParams), "" = not given.
_LABELS = {
    "CalibrationMode": {"relative": "Relative (scale counts to administered activity)", "absolute": "Absolute (image in Bq/mL)"},
    "ReferenceRegion": {"liver": "Whole liver", "perfused": "Perfused volume", "image": "Whole image"},
    "DoseMethod": {"ldm": "Local deposition (LDM)", "dvk": "Kernel convolution (DVK)"},
    "ComputeDevice": {"auto": "Automatic (GPU when usable)", "cpu": "CPU", "gpu": "GPU (CuPy)"},
    "LungDoseSource": {"auto": "Automatic (LSF for relative, image for absolute)", "lsf": "LSF model (uniform)",
                       "image": "Image (lung segments)"},
    "DvkLungMode": {"kernel": "Density-corrected kernel", "ldm": "Local deposition in lung"},
    "Microsphere": {"notGiven": "not given", "glass": "Glass (TheraSphere)", "resin": "Resin (SIR-Spheres)"},
    "Indication": {"notGiven": "not given", "hcc": "HCC", "icc": "Intrahepatic cholangiocarcinoma",
                   "mcrc": "Colorectal metastases", "breast": "Breast-cancer metastases", "other": "Other"},
    "TreatmentApproach": {"notGiven": "not given", "unilobar": "Unilobar", "bilobar": "Bilobar",
                          "segmentectomy": "Radiation segmentectomy", "lobectomy": "Radiation lobectomy"},
    "Phase": {"notGiven": "not given", "pre": "Pre-treatment (prediction, MAA)", "post": "Post-treatment (verification)"},
    "RecoveryCoefficientAxis": {"diameter_mm": "Equivalent-sphere diameter (mm)", "volume_ml": "Volume (mL)"},
    "DoseUnit": {"fromVolume": "From the volume (its units or SlicerRT's)", "Gy": "Gy", "cGy": "cGy", "mGy": "mGy"},
}


class _LabelledEnum(enum.Enum):
    def label(self):
        return _(_LABELS[type(self).__name__][self.name])


class CalibrationMode(_LabelledEnum):
    relative = "relative"
    absolute = "absolute"


class ReferenceRegion(_LabelledEnum):
    liver = "liver"
    perfused = "perfused"
    image = "image"


class DoseMethod(_LabelledEnum):
    ldm = "ldm"
    dvk = "dvk"


class ComputeDevice(_LabelledEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


class LungDoseSource(_LabelledEnum):
    auto = "auto"
    lsf = "lsf"
    image = "image"


class DvkLungMode(_LabelledEnum):
    kernel = "kernel"
    ldm = "ldm"


class Microsphere(_LabelledEnum):
    notGiven = ""
    glass = "glass"
    resin = "resin"


class Indication(_LabelledEnum):
    notGiven = ""
    hcc = "hcc"
    icc = "icc"
    mcrc = "mcrc"
    breast = "breast"
    other = "other"


class TreatmentApproach(_LabelledEnum):
    notGiven = ""
    unilobar = "unilobar"
    bilobar = "bilobar"
    segmentectomy = "segmentectomy"
    lobectomy = "lobectomy"


class Phase(_LabelledEnum):
    notGiven = ""
    pre = "pre"
    post = "post"


class RecoveryCoefficientAxis(_LabelledEnum):
    diameter_mm = "diameter_mm"
    volume_ml = "volume_ml"


class DoseUnit(_LabelledEnum):
    fromVolume = ""
    Gy = "Gy"
    cGy = "cGy"
    mGy = "mGy"


_ENGINE_DEFAULTS = {f: getattr(DosimetryParams, f, None) for f in ("sampling", "dvh_curve_step_gy", "d_levels_pct", "v_levels_gy")}
NOT_GIVEN = panel.NOT_GIVEN


@parameterNodeWrapper
class TAREDosimetryParameterNode:
    """Everything the panel shows, saved with the scene (field names: TAREDosimetryLib.panel.PANEL_FIELDS).

    Number fields at -1 (NOT_GIVEN) and choices 'notGiven' are "not given" (None for the engine, never 0;
    the LSF and PET-time fields were renamed when -1 came to mean "not given", so a scene saved before
    reads "not given", not a silent 0).  Outputs (re-used on every run of the same case): doseVolume,
    statusTable (overall status, incomplete reasons, explicit choices, scope warnings, clinical inputs),
    metricsTable, evaluationTable, dvhTable, dvhThresholdTable, dvhChart, resultRecord (the result kept in the scene).
    """

    activityVolume: vtkMRMLScalarVolumeNode
    ctVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    caseName: str = ""
    # The selected volume is a dose map computed elsewhere (also when SlicerRT tagged it): evaluate it.
    inputIsDose: bool = False
    doseUnit: DoseUnit = DoseUnit.fromVolume

    calibration: CalibrationMode = CalibrationMode.relative
    administeredActivityGBq: Annotated[float, WithinRange(0.0, 100.0)] = 0.0
    residualPercent: Annotated[float, WithinRange(NOT_GIVEN, 99.0)] = NOT_GIVEN
    lungShuntFractionPercent: Annotated[float, WithinRange(NOT_GIVEN, 99.0)] = NOT_GIVEN
    referenceRegion: ReferenceRegion = ReferenceRegion.liver
    hoursAfterAdministration: Annotated[float, WithinRange(NOT_GIVEN, 1000.0)] = NOT_GIVEN
    imageDecayCorrected: bool = False
    allowUnusualActivity: bool = False
    allowNegative: bool = False
    allowOtherRadionuclide: bool = False

    doseMethod: DoseMethod = DoseMethod.ldm
    computeDevice: ComputeDevice = ComputeDevice.auto
    kGyKgPerGBq: Annotated[float, WithinRange(1.0, 100.0)] = physics.K_GY_KG_PER_GBQ
    tissueDensityGPerMl: Annotated[float, WithinRange(0.5, 2.0)] = physics.TISSUE_DENSITY_G_ML
    lungDensityGPerMl: Annotated[float, WithinRange(0.05, 1.5)] = physics.LUNG_DENSITY_G_ML
    densityFromCt: bool = True

    # Advanced: every other DosimetryParams field, so that the panel reproduces any manifest row.
    priorLungDoseGy: Annotated[float, WithinRange(NOT_GIVEN, 500.0)] = NOT_GIVEN
    lungDoseFrom: LungDoseSource = LungDoseSource.auto
    defaultLungMassG: Annotated[float, WithinRange(NOT_GIVEN, 5000.0)] = NOT_GIVEN
    sampling: Annotated[str, Choice(list(SAMPLINGS))] = _ENGINE_DEFAULTS["sampling"] or SAMPLINGS[0]
    dvkLungMode: DvkLungMode = DvkLungMode.kernel
    dvkRadiusMm: Annotated[float, WithinRange(1.0, 50.0)] = 12.0
    halfLifeH: Annotated[float, WithinRange(1.0, 1000.0)] = physics.Y90_HALF_LIFE_H
    dvhBinWidthGy: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    dvhCurveStepGy: Annotated[float, WithinRange(0.01, 10.0)] = _ENGINE_DEFAULTS["dvh_curve_step_gy"] or 0.1
    dLevelsPct: str = panel.format_levels(_ENGINE_DEFAULTS["d_levels_pct"] or (50, 70, 90))
    vLevelsGy: str = panel.format_levels(_ENGINE_DEFAULTS["v_levels_gy"] or (100,))
    eudAlphaPerGy: Annotated[float, WithinRange(0.001, 1.0)] = 0.036
    tumorAlphaBetaGy: Annotated[float, WithinRange(0.1, 100.0)] = 10.0
    normalAlphaBetaGy: Annotated[float, WithinRange(0.1, 100.0)] = 2.5
    tRepairH: Annotated[float, WithinRange(0.0, 100.0)] = 1.5
    # Clinical inputs that select rules.
    microsphere: Microsphere = Microsphere.notGiven
    indication: Indication = Indication.notGiven
    treatmentApproach: TreatmentApproach = TreatmentApproach.notGiven
    bilirubinMgDl: Annotated[float, WithinRange(NOT_GIVEN, 50.0)] = NOT_GIVEN
    hepaticReservePercent: Annotated[float, WithinRange(NOT_GIVEN, 100.0)] = NOT_GIVEN
    phase: Phase = Phase.notGiven
    # Partial volume: image resolution (0 = not given) and an optional recovery-coefficient table.
    resolutionFwhmMm: Annotated[float, WithinRange(0.0, 100.0)] = 0.0
    recoveryCoefficients: str = ""
    recoveryCoefficientAxis: RecoveryCoefficientAxis = RecoveryCoefficientAxis.diameter_mm

    segmentRolesJson: str = "{}"
    rulePreset: str = DEFAULT_PRESET
    rulesJson: str = ""

    doseOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showDoseVolumeRendering: bool = False
    exportDirectory: pathlib.Path
    exportReport: bool = True
    exportOverwrite: bool = False
    exportPdf: bool = False
    exportRtDose: bool = False
    exportDicomSeg: bool = False
    exportDicomSr: bool = False
    exportToDicomDatabase: bool = True

    doseVolume: vtkMRMLScalarVolumeNode
    statusTable: vtkMRMLTableNode
    metricsTable: vtkMRMLTableNode
    evaluationTable: vtkMRMLTableNode
    dvhTable: vtkMRMLTableNode
    dvhThresholdTable: vtkMRMLTableNode
    dvhChart: vtkMRMLPlotChartNode
    resultRecord: vtkMRMLTextNode


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
        self._caseActivityID = None
        self._caseNameShown = ""
        self._run = None  # the RunProgress of a calculation in progress

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TAREDosimetry.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TAREDosimetryLogic()
        self.roles = RolesSection(self.ui, self.logic, lambda: self._parameterNode)
        self.rules = RulesSection(self.ui, self.logic, lambda: self._parameterNode, self.updateGuiState, self._setStatus)
        self.inputs = InputSection(self.ui, self.logic, lambda: self._parameterNode, self._setStatus)
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setVisible(False)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.editSegmentsButton.connect("clicked(bool)", self.onEditSegments)
        self.ui.importSegmentsButton.connect("clicked(bool)", self.onImportSegmentsFile)
        self.ui.importMaskFolderButton.connect("clicked(bool)", self.onImportMaskFolder)
        self.ui.showStatusColorsButton.connect("clicked(bool)", self.onShowStatusColors)
        self.ui.restoreColorsButton.connect("clicked(bool)", self.onRestoreColors)
        self.ui.showDvhButton.connect("clicked(bool)", self.onShowDvh)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.loadParametersButton.connect("clicked(bool)", self.onLoadParameters)
        self.ui.installGpuButton.connect("clicked(bool)", self.onInstallGpu)
        self.ui.doseOpacitySliderWidget.connect("valueChanged(double)", self.onDoseOpacityChanged)
        self.ui.volumeRenderingCheckBox.connect("toggled(bool)", self.onVolumeRenderingToggled)
        self.updateGpuInfo()
        # Plan and Compare sections: their own .ui and glue (TAREDosimetrySlicer/planningpanel.py).
        self.planningPanel = PlanningPanel(self.layout, self.resourcePath("UI/TAREDosimetryPlanning.ui"), self.logic, lambda: self._parameterNode)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.roles.update()  # segments may have been edited while the module was hidden

    def exit(self) -> None:
        # The segmentation stays observed (a segment edited in the Segment Editor makes the stored result
        # not current); while hidden, only that mark is made: no table rebuild per stroke.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiState)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self._run.cancel()
        self.setParameterNode(None)
        self.logic.clearResults()  # nothing of the closed scene's patient survives in memory
        self._caseActivityID = None
        self.ui.metricsTableView.setMRMLTableNode(None)
        self.ui.summaryLabel.text = _("No results yet.")

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        pn = self._parameterNode
        if not pn.activityVolume:
            pn.activityVolume = self.logic.defaultActivityVolume()  # NM/PT volumes only; never the CT
        if not pn.segmentation:
            pn.segmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")

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
            self.rules.updateFromParameterNode()
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
            self.roles.update()

    def onSegmentsChanged(self, caller=None, event=None) -> None:
        if self._run is None and self._parameterNode is not None:
            self.logic.markStale(self._parameterNode.resultRecord, _("the segments were edited after this result was computed: Apply again"))
        if self.parent.isEntered:
            self.roles.update()
            self.updateGuiState()

    def _switchCase(self, pn) -> None:
        """A newly selected SPECT/PET shows its own case's outputs (none yet: new nodes at Apply)."""
        activity = pn.activityVolume
        activityID = activity.GetID() if activity is not None else None
        if activityID == self._caseActivityID:
            self._caseNameShown = pn.caseName
            return
        previous, self._caseActivityID = self._caseActivityID, activityID  # before the changes below re-enter
        if previous is not None or not any(getattr(pn, key) for key in OUTPUT_NAMES):
            found = self.logic.outputsOfCase(activity)
            with slicer.util.NodeModify(pn):
                for key in OUTPUT_NAMES:
                    if getattr(pn, key) is not found.get(key):
                        setattr(pn, key, found.get(key))
                # The case name belongs to the case: never name case B's outputs and folder after case A
                # (a name set together with the new SPECT/PET, as the demo loader does, is kept).
                if found:
                    pn.caseName = caseNameOfNode(found.get("resultRecord") or next(iter(found.values())))
                elif previous is not None and pn.caseName == self._caseNameShown:
                    pn.caseName = ""
        self._caseNameShown = pn.caseName

    def updateGuiState(self, caller=None, event=None) -> None:
        """Show only the fields that apply, and enable Apply, Export and colours only when they can run (with the reason)."""
        pn = self._parameterNode
        if pn is None:
            return
        self._switchCase(pn)
        self._observeSegmentation(pn.segmentation)
        relative = pn.calibration == CalibrationMode.relative
        self.ui.relativeParametersWidget.setVisible(relative)
        self.ui.absoluteParametersWidget.setVisible(not relative)
        dvk = pn.doseMethod == DoseMethod.dvk
        self.ui.deviceComboBox.enabled = dvk
        self.ui.dvkLungModeComboBox.enabled = dvk
        self.ui.dvkRadiusSpinBox.enabled = dvk
        self.ui.densityFromCtCheckBox.enabled = pn.ctVolume is not None
        self.ui.editSegmentsButton.enabled = pn.activityVolume is not None or pn.ctVolume is not None
        self.ui.importSegmentsButton.enabled = self._run is None
        self.ui.importMaskFolderButton.enabled = self._run is None
        self._showResult(pn)
        self.inputs.update(pn, running=self._run is not None)

        reason = self.logic.whyNotRunnable(pn)
        if not reason and self.rules.rulesError:
            reason = _("Threshold rules: {error}").format(error=self.rules.rulesError)
        self.ui.applyButton.enabled = not reason and self._run is None
        self.ui.applyButton.toolTip = reason or _("Compute the dose map, metrics, DVH and PASS/FAIL.")
        if reason:
            self.ui.statusLabel.text = reason
        elif self.ui.statusLabel.text and not self.ui.statusLabel.property("showsRunMessage"):
            self.ui.statusLabel.text = ""

    def _showResult(self, pn) -> None:
        """The case's stored result: summary in its status colour, metrics table; Export only for a current result."""
        notCurrent = self.logic.whyResultNotCurrent(pn.resultRecord, self.logic.inputsSignature(pn))
        usable = not notCurrent and self._run is None
        self.ui.exportButton.enabled = usable
        self.ui.exportButton.toolTip = notCurrent or _("Write the result files into <output folder>/<case name>/.")
        self.ui.showStatusColorsButton.enabled = usable and pn.segmentation is not None
        self.ui.restoreColorsButton.enabled = pn.segmentation is not None
        self.ui.showDvhButton.enabled = pn.dvhChart is not None
        self.ui.metricsTableView.setMRMLTableNode(pn.metricsTable if pn.resultRecord is not None else None)
        if pn.resultRecord is None or not pn.resultRecord.GetText():
            if not self.ui.summaryLabel.property("showsRunMessage"):
                self.ui.summaryLabel.text = _("No results yet.")
                self.ui.summaryLabel.styleSheet = ""
            return
        try:
            result = self.logic.storedSummary(pn.resultRecord)
        except InputError as exc:
            self.ui.summaryLabel.text = str(exc)
            return
        lines = [panel.in_panel_words(line) for line in mc.status_lines(result)]
        lines += [_("Not current: {reason}").format(reason=notCurrent)] if notCurrent else []
        color = mc.status_css_color(result.overall_status if not notCurrent else "N/A")
        self.ui.summaryLabel.setProperty("showsRunMessage", False)
        self.ui.summaryLabel.text = "\n".join(lines)
        self.ui.summaryLabel.styleSheet = f"QLabel {{ border-left: 6px solid {color}; padding-left: 6px; }}"

    def updateGpuInfo(self) -> None:
        usable, text, requirement = self.logic.gpuSupport()
        self.ui.gpuInfoLabel.text = text
        self.ui.installGpuButton.setVisible(requirement is not None)
        self.ui.installGpuButton.toolTip = _("Install {package} (with your consent) so that the kernel convolution runs on the GPU.").format(
            package=requirement or "CuPy")

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
        if path:
            self._runImport(lambda: self.logic.importSegments(path, self.logic.ensureSegmentationNode(self._parameterNode)))

    def onImportMaskFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Folder of mask images"))
        if folder:
            self._runImport(lambda: self.logic.importSegments(folder, self.logic.ensureSegmentationNode(self._parameterNode)))

    def _runImport(self, job) -> None:
        try:
            with slicer.util.tryWithErrorDisplay(_("Import of segments failed."), waitCursor=True):
                names = job()
                self._setStatus(_("Imported segments: {names}").format(names=", ".join(names)))
        except Exception as exc:
            self._setStatus(_("Import failed: {error}").format(error=exc))
        self.roles.update()
        self.updateGuiState()

    def onLoadParameters(self) -> None:
        """Fill the panel from a parameters JSON or a metrics.json (reproducing an earlier or command-line run)."""
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Load parameters"), "", _("Parameters (*.json)"))
        if not path:
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the parameters."), waitCursor=True):
                ignored = self.logic.loadPanelParameters(self._parameterNode, path)
                self._setStatus(_("Parameters loaded from {path}").format(path=path) + (
                    " " + _("Not used (unknown here): {names}").format(names=", ".join(ignored)) if ignored else ""))
        except Exception as exc:
            self._setStatus(_("Could not load the parameters: {error}").format(error=exc))

    def onInstallGpu(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("GPU support could not be installed."), waitCursor=True):
            self.logic.installGpuSupport()
        self.updateGpuInfo()

    # -- apply -------------------------------------------------------------------------------
    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.setProperty("showsRunMessage", bool(text))
        self.ui.statusLabel.text = text

    def _progress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(round(100 * fraction)))
        self.ui.progressBar.setFormat(f"%p% {message}")
        slicer.app.processEvents()  # keeps the panel alive and lets Cancel through

    def onApplyButton(self) -> None:
        if self._run is not None:  # no second run from inside the first one's event processing
            return
        self._run = panel.RunProgress(self._progress)
        self.ui.applyButton.enabled = False
        self.ui.cancelButton.setVisible(True)
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setValue(0)
        self.ui.summaryLabel.setProperty("showsRunMessage", True)
        self.ui.summaryLabel.text = _("Computing...")
        try:
            with slicer.util.tryWithErrorDisplay(_("Dosimetry failed."), waitCursor=True):
                result = self.logic.process(self._parameterNode, progress=self._run, show=True)
                done = _("Done: the dose map was evaluated.") if result.summary.get("dose_source") == "external" else \
                    _("Done on {device}.").format(device=result.summary.get("dose_device", "?"))
                self._setStatus(done + (
                    " " + _("{n} warning(s), see Results.").format(n=len(result.warnings)) if result.warnings else ""))
        except CancelledError:
            self._setStatus(_("Stopped: the calculation was cancelled; no result was stored."))
        except Exception as exc:
            self._setStatus(_("Failed: {error}").format(error=exc))
        finally:
            self._run = None
            self.ui.summaryLabel.setProperty("showsRunMessage", False)
            self.ui.cancelButton.setVisible(False)
            self.ui.progressBar.setVisible(False)
            self.updateGuiState()

    def onCancelButton(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.setFormat(_("%p% stopping..."))

    # -- results -----------------------------------------------------------------------------
    def onShowStatusColors(self) -> None:
        pn = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not colour the segments.")):
            self.logic.showStatusColors(pn.segmentation, self.logic.resultFromScene(pn.resultRecord))

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
                folder = self.logic.exportCase(pn, report=report, askUser=True)
                self._setStatus(_("Results written to {folder}").format(folder=folder))
        except Exception as exc:
            self._setStatus(_("Export failed: {error}").format(error=exc))


#
# Logic
#


class TAREDosimetryLogic(ScriptedLoadableModuleLogic, NodeConversion, SegmentReading, OutputNodes, CaseOutputs,
                         CaseLoading, CaseRunning, ResultExport, RtDoseExport, Dependencies, VtkDose):
    """MRML glue around the engine: nodes -> engine objects -> run_case (or evaluate_dose_case) -> nodes.

    The node conversions, segment reading, output nodes, cases, loading, running (DICOM header, dose
    maps, dry run), export (RT Dose included), optional packages and the VTK dose step are mixed in from
    the sibling package ``TAREDosimetrySlicer`` (one file each).

    Usable without the GUI (Python console, ``Slicer --no-main-window --python-script``):
    :meth:`run` takes nodes, :meth:`runFromFiles` takes file paths, :meth:`process` takes the
    parameter node.  Inputs are never modified; outputs are re-used on every run of a case.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastResult = None
        #: Engine objects of the last run ({'activity', 'segmentation', 'ct'}), for report figures.
        self.lastInputs = {}

    def getParameterNode(self) -> TAREDosimetryParameterNode:
        return TAREDosimetryParameterNode(super().getParameterNode())

    def clearResults(self) -> None:
        """Forget the in-memory results (scene closed); the scene's stored results are the reference."""
        self.lastResult, self.lastInputs = None, {}
        self.clearResultCache()

    # -- parameters --------------------------------------------------------------------------
    @staticmethod
    def panelValues(pn) -> dict:
        """{panel field: plain value} of the parameter node (enums as their engine values)."""
        values = {}
        for name, _engine, _to, _from in panel.PANEL_FIELDS:
            value = getattr(pn, name)
            values[name] = value.value if isinstance(value, enum.Enum) else value
        return values

    @classmethod
    def engineParams(cls, pn) -> DosimetryParams:
        """The engine's DosimetryParams from the parameter node (fields this engine lacks are left out)."""
        return panel.engine_params(cls.panelValues(pn))

    def setPanelFromParams(self, pn, params, spect=None, ct=None, segmentation=None, caseName=None) -> None:
        """Show a DosimetryParams (and optionally the inputs) in the panel."""
        enums = {t.__name__: t for t in _LabelledEnum.__subclasses__()}
        with slicer.util.NodeModify(pn):
            for name, value in panel.panel_values(params).items():
                current = getattr(pn, name)
                if isinstance(current, enum.Enum):
                    value = enums[type(current).__name__](value)
                setattr(pn, name, value)
            for name, node in (("activityVolume", spect), ("ctVolume", ct), ("segmentation", segmentation)):
                if node is not None:
                    setattr(pn, name, node)
            if caseName is not None:
                pn.caseName = caseName

    def loadPanelParameters(self, pn, path: str) -> list:
        """Read a DosimetryParams JSON (or a metrics.json's 'parameters') into the panel; returns ignored fields."""
        params, ignored = panel.params_from_file(path)
        self.setPanelFromParams(pn, params)
        return ignored

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

    @staticmethod
    def caseNameOf(pn) -> str:
        return panel.case_name(pn.caseName, pn.activityVolume.GetName() if pn.activityVolume is not None else "")

    def inputsSignature(self, pn) -> str:
        """Signature of everything the panel's result depends on (see cases.py)."""
        ids = {k: (getattr(pn, k).GetID() if getattr(pn, k) is not None else None) for k in ("activityVolume", "ctVolume", "segmentation")}
        try:
            params = self.engineParams(pn).to_dict()
        except InputError as exc:
            params = {"invalid": str(exc)}
        return panel.inputs_signature({"nodes": ids, "params": params, "roles": self.savedRoles(pn), "input": self.inputOptions(pn),
                                       "rules": pn.rulesJson or pn.rulePreset, "case": self.caseNameOf(pn)})

    def inputOptions(self, pn) -> dict:
        """How the selected volume is read: a dose map (and its unit) or an activity image (radionuclide check)."""
        return {"doseInput": self.isDoseInput(pn.activityVolume, pn.inputIsDose), "doseUnit": pn.doseUnit.value,
                "allowOtherRadionuclide": pn.allowOtherRadionuclide}

    def defaultActivityVolume(self):
        """The scene's NM/PT volume to offer first, or None."""
        nodeID = panel.pick_activity_volume(self.activityCandidates())
        return slicer.mrmlScene.GetNodeByID(nodeID) if nodeID else None

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
        doseInput = self.isDoseInput(pn.activityVolume, pn.inputIsDose)
        if not doseInput and pn.calibration == CalibrationMode.relative and not pn.administeredActivityGBq > 0:
            return _("Enter the administered activity (GBq).")
        for key in OUTPUT_NAMES:
            node = getattr(pn, key)
            if node is not None and node in (pn.activityVolume, pn.ctVolume):
                return _("An output node is one of the inputs: choose another output.")
        try:
            self.engineParams(pn)
        except InputError as exc:
            return _("Parameters: {error}").format(error=panel.in_panel_words(exc))
        return self.whyInputsIncomplete(pn, names, doseInput)

    # -- running -------------------------------------------------------------------------------
    def process(self, pn, progress=None, show: bool = True):
        """Run the case described by the parameter node; output nodes are stored back in it.

        The case's stored result is marked not current at the start: a failed or cancelled run
        never leaves the earlier result looking like the answer to the new inputs."""
        reason = self.whyNotRunnable(pn)
        if reason:
            raise InputError(reason)
        self.markStale(pn.resultRecord, _("the last calculation did not finish: Apply again"))
        outputs = {key: getattr(pn, key) for key in OUTPUT_NAMES}
        signature = self.inputsSignature(pn)
        result = self.run(
            pn.activityVolume, pn.segmentation, ctNode=pn.ctVolume, params=self.engineParams(pn),
            roles=self.savedRoles(pn), rules=self.ruleSet(pn), outputs=outputs, progress=progress,
            show=show, doseOpacity=pn.doseOpacity, volumeRendering=pn.showDoseVolumeRendering,
            caseName=self.caseNameOf(pn), signature=signature, **self.inputOptions(pn),
        )
        with slicer.util.NodeModify(pn):
            for key, node in outputs.items():
                if getattr(pn, key) is not node:
                    setattr(pn, key, node)
        return result

    def run(self, activityNode, segmentationNode, ctNode=None, params=None, roles=None, rules=None, outputs=None,
            progress=None, show: bool = True, doseOpacity: float = 0.5, volumeRendering: bool = False,
            caseName: str = "", signature: str = "", group: bool = True, doseInput: bool = False, doseUnit: str = "",
            allowOtherRadionuclide: bool = False):
        """Dosimetry of one case given as nodes.

        Parameters
        ----------
        activityNode : vtkMRMLScalarVolumeNode, SPECT/PET (counts or Bq/mL; a DICOM header is used when it
            came from the DICOM database), or a dose map when ``doseInput``; a parent transform is used.
        segmentationNode : vtkMRMLSegmentationNode; each segment is read on its own geometry.
        ctNode : vtkMRMLScalarVolumeNode in HU, optional.
        params : DosimetryParams (engine defaults when None).
        roles : dict {segment name: role} overriding the guessed roles (names not in the segmentation are ignored).
        rules : RuleSet, preset name or rule-file path (engine default preset when None).
        outputs : dict of output nodes to re-use (keys of OUTPUT_NAMES), updated in place with the nodes used.
        progress : callable(fraction, message), optional; an exception it raises (Cancel) stops the run.
        show : show the dose over the CT, the chart in the layout and PASS/FAIL colours.
        caseName : names the output nodes (default: the SPECT/PET's name); signature : of the panel's inputs.
        group : put the outputs under the case's study in the subject hierarchy.
        doseInput : evaluate ``activityNode`` as a dose map computed elsewhere (unit: its attributes or ``doseUnit``).
        allowOtherRadionuclide : compute a PET whose DICOM header names another radionuclide as Y-90.

        Returns
        -------
        The engine's CaseResult (also kept as ``self.lastResult`` and stored in the scene).
        """
        outputs = {} if outputs is None else outputs
        for key, node in outputs.items():
            if node is not None and node in (activityNode, ctNode, segmentationNode):
                raise InputError(f"output {key} is one of the inputs; inputs are never overwritten")
        step = panel.RunProgress(progress)
        case = self.readNodes(activityNode, segmentationNode, ctNode, params, step, doseInput=doseInput, doseUnit=doseUnit,
                              allowOtherRadionuclide=allowOtherRadionuclide)
        result = self.computeCase(case, roles=roles, rules=rules, step=step)
        step(0.9, "output nodes")
        caseName = caseName or activityNode.GetName()
        self.updateOutputNodes(result, activityNode, outputs, caseName)
        self.storeResult(result, outputs, caseName, signature)
        self.tagOutputs(outputs, activityNode, caseName)
        if group:
            self.groupUnderStudy(outputs, activityNode, caseName)
        if show:
            self.showResults(result, outputs, segmentationNode, background=ctNode or activityNode,
                             doseOpacity=doseOpacity, volumeRendering=volumeRendering)
        step(1.0, "done")
        self.lastResult = result
        key = "dose" if case["dose"] is not None else "activity"
        self.lastInputs = {key: case["image"], "segmentation": case["segmentation"], "ct": case["ct"]}
        return result

    def previewPanelCase(self, pn) -> list:
        """The dry run of the panel's case (``Check inputs``): lines; nothing is computed or stored."""
        if pn.activityVolume is None or pn.segmentation is None:
            raise InputError(_("Select the SPECT / PET volume (or a dose map) and a segmentation first."))
        return self.previewCase(pn.activityVolume, pn.segmentation, pn.ctVolume, params=self.engineParams(pn),
                                roles=self.savedRoles(pn), rules=self.ruleSet(pn), **self.inputOptions(pn))
