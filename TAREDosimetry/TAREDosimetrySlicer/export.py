"""Writing a case's result folder from Slicer: into ``<folder>/<case name>/``, from the result kept in the scene.

The result comes from the scene (``cases.CaseOutputs.resultFromScene``), so Export works after the
scene was saved and reloaded; the report's background image and segment contours come from the
case's input nodes.  Besides the engine's files (metrics, DVH, report, dose), the panel can ask for
the engine's DICOM exports (``write_outputs(dicom=...)``: RT Dose, DICOM SEG, DICOM SR, in the study
and frame of reference of the CT or SPECT/PET the user loaded from DICOM, referring to its images)
and the PDF report (``pdf=True``); the DICOM files are then added to Slicer's DICOM database, from
where the DICOM module sends them to a PACS.  Messages use the panel's words.
"""

import os

from slicer.i18n import tr as _

from TAREDosimetryLib import panel
from TAREDosimetryLib.errors import InputError

from .rtdoseexport import RtDoseExport


class ResultExport:
    """The engine's result files (metrics, DVH, report, dose, DICOM, PDF) written from the Slicer logic."""

    @staticmethod
    def exportResults(result, outDir: str, report: bool = True, overwrite: bool = False, inputs=None, dicom=None,
                      pdf: bool = False) -> list:
        """Write the engine's outputs (metrics CSV/JSON, DVH, report, dose file; ``dicom``: a DicomExports;
        ``pdf``: report.pdf) into the folder ``outDir`` itself; returns the files written.

        inputs : {'activity' or 'dose', 'segmentation', 'ct'} engine objects of the run (report slices), optional.
        """
        if result is None:
            raise InputError(_("There is no result to export: press Apply first."))
        if not outDir or str(outDir).strip() in (".", ""):
            raise InputError(_("Choose an output folder in Export first."))
        from TAREDosimetryLib.reporting.outputs import write_outputs

        inputs = inputs or {}
        background = next((inputs[k] for k in ("ct", "activity", "dose") if inputs.get(k) is not None), None)
        try:
            return write_outputs(result, str(outDir), overwrite=overwrite, report=report, background=background,
                                 segmentation=inputs.get("segmentation"), dicom=dicom, pdf=pdf)
        except InputError as exc:
            raise InputError(ResultExport.panelWords(str(exc))) from None

    @staticmethod
    def panelWords(message: str) -> str:
        """An engine message about the output folder in the panel's words (no command-line options)."""
        text = message.replace("--out ", "").replace("add --overwrite", "tick 'Overwrite existing files'")
        for option, label in (("--overwrite", "'Overwrite existing files'"), ("--rtdose", "'RT Dose'"),
                              ("--dicom-seg", "'DICOM SEG'"), ("--dicom-sr", "'DICOM SR'"), ("--pdf", "'PDF report'")):
            text = text.replace(option, label)
        return panel.in_panel_words(text)

    def dicomExportsOf(self, pn):
        """The engine's DicomExports the panel asks for (None when none): in the study of the CT, else of the
        SPECT/PET (or dose map), when they came from Slicer's DICOM database; a standalone study otherwise."""
        if not (pn.exportRtDose or pn.exportDicomSeg or pn.exportDicomSr):
            return None
        from TAREDosimetryLib.reporting.dicomexport import DicomExports

        sources = {"ct": self.dicomSourceOfVolume(pn.ctVolume), "activity": self.dicomSourceOfVolume(pn.activityVolume)}
        return DicomExports(rtdose=pn.exportRtDose, seg=pn.exportDicomSeg, sr=pn.exportDicomSr, sources=sources,
                            patient_name=self.caseNameOf(pn) if not any(sources.values()) else None)

    def ensureExportDependencies(self, pn, askUser: bool = True) -> None:
        """Offer the packages the chosen exports need; refuse with the panel's words when one is missing."""
        needs = [("pydicom", "pydicom>=2.3", pn.exportRtDose or pn.exportDicomSeg or pn.exportDicomSr, _("DICOM files are written with pydicom.")),
                 ("highdicom", "highdicom>=0.28", pn.exportDicomSeg or pn.exportDicomSr, _("DICOM SEG and SR are written with highdicom.")),
                 ("matplotlib", "matplotlib>=3.5", pn.exportPdf, _("The PDF report draws its pages with matplotlib."))]
        for importName, requirement, wanted, why in needs:
            if wanted and not self.ensurePackage(importName, requirement, why, askUser):
                raise InputError(_("{package} is not installed: untick the exports that need it, or install it "
                                   "(pip install {requirement}).").format(package=importName, requirement=requirement))

    def exportCase(self, pn, report: bool = True, askUser: bool = False) -> str:
        """Export the panel's case into ``<export folder>/<case name>/``; returns that folder."""
        reason = self.whyResultNotCurrent(pn.resultRecord, self.inputsSignature(pn))
        if reason:
            raise InputError(_("Export is not possible: {reason}").format(reason=reason))
        self.ensureExportDependencies(pn, askUser)
        result = self.resultFromScene(pn.resultRecord, pn.doseVolume)
        folder = panel.case_export_folder(str(pn.exportDirectory) if pn.exportDirectory else "", self.caseNameOf(pn))
        inputs = {"segmentation": self.segmentationFromNode(pn.segmentation)}
        background = pn.ctVolume or pn.activityVolume
        inputs["ct" if pn.ctVolume is not None else "activity"] = self.volumeFromNode(background)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        files = self.exportResults(result, folder, report=report, overwrite=pn.exportOverwrite, inputs=inputs,
                                   dicom=self.dicomExportsOf(pn), pdf=pn.exportPdf)
        dicomFiles = [f for f in files if str(f).endswith(".dcm")]
        if dicomFiles and pn.exportToDicomDatabase:
            RtDoseExport.importDicomFiles(dicomFiles)
        return folder

    def exportCaseWithSlicerRT(self, pn) -> str:
        """SlicerRT's DICOM RT export of the case's dose (and segments as RTSTRUCT) with the CT, into
        ``<export folder>/<case name>/SlicerRT``; returns that folder."""
        reason = self.whyResultNotCurrent(pn.resultRecord, self.inputsSignature(pn))
        if reason:
            raise InputError(_("Export is not possible: {reason}").format(reason=reason))
        if pn.ctVolume is None:
            raise InputError(_("SlicerRT's export needs the CT the dose refers to: select the CT under Inputs."))
        folder = os.path.join(panel.case_export_folder(str(pn.exportDirectory) if pn.exportDirectory else "", self.caseNameOf(pn)),
                              "SlicerRT")
        earlier = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        if earlier and not pn.exportOverwrite:
            raise InputError(_("{folder} already holds files: tick 'Overwrite existing files' or choose another folder.").format(folder=folder))
        for name in earlier:  # an earlier SlicerRT export of this case (SlicerRT names its files itself)
            if name.lower().endswith(".dcm"):
                os.remove(os.path.join(folder, name))
        return self.exportWithSlicerRT(pn.doseVolume, pn.ctVolume, folder, segmentationNode=pn.segmentation,
                                       importToDatabase=pn.exportToDicomDatabase)
