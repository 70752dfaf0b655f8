"""The panel's input helpers around Apply: what the DICOM header says, a dose map instead of an activity
image, the dry run ("Check inputs"), and SlicerRT's RT export.

* *DICOM header*: the line under the activity parameters says what the SPECT/PET's header gives (units,
  time since administration) when the volume came from Slicer's DICOM database; *Read timing from DICOM
  header* reads it again and sets the calibration its units call for (Bq/mL: absolute; counts: relative).
  The header's time is used at Apply unless the panel gives the hours or ticks "decay corrected".
* *Dose map*: a volume SlicerRT tagged as a dose, or one the user ticks, is evaluated instead of computed:
  the activity and dose-calculation sections are disabled, the dose unit is shown.
* *Check inputs*: the engine's dry run (segments, roles, volumes, rules that will apply, what would stop
  the run), shown as text; nothing is computed.

The widget keeps one instance (``TAREDosimetryWidget.inputs``); all work is in the logic.
"""

import qt

import slicer
from slicer.i18n import tr as _

from TAREDosimetryLib import panel
from TAREDosimetryLib.errors import InputError

from .dicomtiming import DicomActivityHeader
from .outputnodes import DOSE_VOLUME_ATTRIBUTE


class InputSection:
    """DICOM header line and button, dose-map mode, Check inputs, SlicerRT export (see the module docstring)."""

    def __init__(self, ui, logic, parameterNode, setStatus):
        self.ui, self.logic, self.parameterNode, self.setStatus = ui, logic, parameterNode, setStatus
        self._describedNode = None  # (node ID, half-life) whose header line is shown
        self._headerLine = ""
        ui.readDicomTimingButton.connect("clicked(bool)", self.onReadDicomHeader)
        ui.checkInputsButton.connect("clicked(bool)", self.onCheckInputs)
        ui.exportSlicerRtButton.connect("clicked(bool)", self.onExportWithSlicerRT)
        ui.checkInputsText.setVisible(False)
        font = ui.checkInputsText.font  # the dry run's table needs a fixed-width font (as DataProbe sets one)
        font.setFamily(qt.QFontDatabase.systemFont(qt.QFontDatabase.FixedFont).family())
        ui.checkInputsText.font = font

    # -- keeping it consistent ----------------------------------------------------------------------
    def update(self, pn, running: bool = False) -> None:
        """Show the header line, the dose-map mode and enable the buttons for the panel's current inputs."""
        node = pn.activityVolume
        doseInput = self.logic.isDoseInput(node, pn.inputIsDose)
        tagged = node is not None and node.GetAttribute(DOSE_VOLUME_ATTRIBUTE) is not None
        self.ui.doseUnitComboBox.enabled = doseInput
        self.ui.inputIsDoseCheckBox.enabled = not tagged
        self.ui.inputIsDoseCheckBox.toolTip = (_("SlicerRT marked this volume as a dose (DicomRtImport.DoseVolume): it is evaluated as a dose map.")
                                               if tagged else _("Evaluate the selected volume as a dose map computed elsewhere (Gy, cGy or mGy)."))
        self.ui.doseInputLabel.text = self._doseUnitLine(node, pn) if doseInput else ""
        self.ui.activityCollapsibleButton.enabled = not doseInput
        self.ui.doseCollapsibleButton.enabled = not doseInput
        fromDicom = not doseInput and DicomActivityHeader.isFromDicom(node)
        self.ui.readDicomTimingButton.enabled = fromDicom and not running
        self.ui.dicomTimingLabel.text = self._timingLine(node, pn) if fromDicom else (
            _("not used: the selected volume is a dose map") if doseInput else
            _("none: the volume was not loaded from Slicer's DICOM database (enter the hours above)"))
        self.ui.checkInputsButton.enabled = node is not None and pn.segmentation is not None and not running
        self.ui.exportSlicerRtButton.enabled = self.ui.exportButton.enabled and pn.ctVolume is not None

    def _doseUnitLine(self, node, pn) -> str:
        try:
            unit, source = self.logic.doseUnitOfNode(node, pn.doseUnit.value)
        except InputError as exc:
            return panel.in_panel_words(exc)
        return _("Dose map in {unit} (from {source}): Apply evaluates it; no dose is computed.").format(unit=unit, source=source)

    def _timingLine(self, node, pn, reread: bool = False) -> str:
        key = (node.GetID(), pn.halfLifeH)
        if reread or key != self._describedNode:
            self._headerLine = DicomActivityHeader.describeTiming(node, pn.halfLifeH, reread=reread)
            self._describedNode = key
        overridden = pn.hoursAfterAdministration != panel.NOT_GIVEN or pn.imageDecayCorrected
        if overridden and pn.calibration.value == "absolute":
            return self._headerLine + " " + _("(not used: the hours or 'decay corrected' above override it)")
        return self._headerLine

    # -- buttons -------------------------------------------------------------------------------------------
    def onReadDicomHeader(self) -> None:
        """Read the header again and set the calibration its units call for."""
        pn = self.parameterNode()
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not read the DICOM header."), waitCursor=True):
                header = DicomActivityHeader.headerOfVolume(pn.activityVolume, reread=True)
                line = self._timingLine(pn.activityVolume, pn, reread=True)
                calibration, why = panel.calibration_from_units(header.units if header is not None else "")
                if calibration is not None and pn.calibration.value != calibration:
                    pn.calibration = type(pn.calibration)(calibration)
                self.setStatus(line + "\n" + _("Calibration: {why}.").format(why=why))
        except Exception as exc:
            self.setStatus(_("Could not read the DICOM header: {error}").format(error=exc))

    def onCheckInputs(self) -> None:
        """The engine's dry run of the panel's case, shown under Apply."""
        pn = self.parameterNode()
        try:
            with slicer.util.tryWithErrorDisplay(_("Check inputs failed."), waitCursor=True):
                lines = self.logic.previewPanelCase(pn)
                self.ui.checkInputsText.setPlainText("\n".join(lines))
                self.ui.checkInputsText.setVisible(True)
                stops = [line for line in lines if line.startswith("the run would stop")]
                self.setStatus(_("Inputs checked: nothing computed. {n} problem(s) would stop Apply.").format(n=len(stops))
                               if stops else _("Inputs checked: nothing computed; see the list under Apply."))
        except Exception as exc:
            self.setStatus(_("Check inputs: {error}").format(error=panel.in_panel_words(exc)))

    def onExportWithSlicerRT(self) -> None:
        pn = self.parameterNode()
        try:
            with slicer.util.tryWithErrorDisplay(_("SlicerRT export failed."), waitCursor=True):
                folder = self.logic.exportCaseWithSlicerRT(pn)
                self.setStatus(_("RT Dose and RT Structure Set written by SlicerRT into {folder}").format(folder=folder))
        except Exception as exc:
            self.setStatus(_("SlicerRT export failed: {error}").format(error=exc))
