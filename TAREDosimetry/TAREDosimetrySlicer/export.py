"""Writing a case's result folder from Slicer: into ``<folder>/<case name>/``, from the result kept in the scene.

The result comes from the scene (``cases.CaseOutputs.resultFromScene``), so Export works after the
scene was saved and reloaded; the report's background image and segment contours come from the
case's input nodes.  Messages use the panel's words.
"""

import os

from slicer.i18n import tr as _

from TAREDosimetryLib import panel
from TAREDosimetryLib.errors import InputError


class ResultExport:
    """The engine's result files (metrics, DVH, report, dose) written from the Slicer logic."""

    @staticmethod
    def exportResults(result, outDir: str, report: bool = True, overwrite: bool = False, inputs=None) -> str:
        """Write the engine's outputs (metrics CSV/JSON, DVH, report, dose file) into the folder ``outDir`` itself.

        inputs : {'activity', 'segmentation', 'ct'} engine objects of the run (report slices), optional.
        """
        if result is None:
            raise InputError(_("There is no result to export: press Apply first."))
        if not outDir or str(outDir).strip() in (".", ""):
            raise InputError(_("Choose an output folder in Export first."))
        from TAREDosimetryLib.reporting.outputs import write_outputs

        inputs = inputs or {}
        background = inputs.get("ct") if inputs.get("ct") is not None else inputs.get("activity")
        try:
            write_outputs(result, str(outDir), overwrite=overwrite, report=report, background=background,
                          segmentation=inputs.get("segmentation"))
        except InputError as exc:
            raise InputError(ResultExport.panelWords(str(exc))) from None
        return str(outDir)

    @staticmethod
    def panelWords(message: str) -> str:
        """An engine message about the output folder in the panel's words (no command-line options)."""
        text = message.replace("--out ", "").replace("add --overwrite", "tick 'Overwrite existing files'")
        return text.replace("--overwrite", "'Overwrite existing files'")

    def exportCase(self, pn, report: bool = True) -> str:
        """Export the panel's case into ``<export folder>/<case name>/``; returns that folder."""
        reason = self.whyResultNotCurrent(pn.resultRecord, self.inputsSignature(pn))
        if reason:
            raise InputError(_("Export is not possible: {reason}").format(reason=reason))
        result = self.resultFromScene(pn.resultRecord, pn.doseVolume)
        folder = panel.case_export_folder(str(pn.exportDirectory) if pn.exportDirectory else "", self.caseNameOf(pn))
        inputs = {"segmentation": self.segmentationFromNode(pn.segmentation)}
        background = pn.ctVolume or pn.activityVolume
        inputs["ct" if pn.ctVolume is not None else "activity"] = self.volumeFromNode(background)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        return self.exportResults(result, folder, report=report, overwrite=pn.exportOverwrite, inputs=inputs)
