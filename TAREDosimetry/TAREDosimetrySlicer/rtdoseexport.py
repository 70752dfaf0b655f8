"""The dose as a DICOM RT Dose in the patient's study, from Slicer.

Two routes, both ending in Slicer's DICOM database (so the DICOM module can send it to a PACS):

* ``writeEngineRtDose``: the engine's RT Dose (:mod:`TAREDosimetryLib.reporting.rtdose`, the
  ``dose.dcm`` of the command line) in the study and frame of reference of the CT (or activity
  image) the user loaded from DICOM, referring to its images, without copying them.  Preferred.
* ``exportWithSlicerRT``: SlicerRT's DICOM RT export (``DicomRtImportExportPlugin``), as the DICOM
  module's Export dialog does.  SlicerRT writes the anatomical image again as a new series next to
  the dose (it needs the CT among its exportables), so this route is for users who want SlicerRT's
  objects.
"""

import os

import slicer

from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging.dicomimage import DicomImageSource
from TAREDosimetryLib.imaging.dicomseries import DicomSeries

from .dicomtiming import DicomActivityHeader

_PATIENT_TAGS = ("PatientName", "PatientID", "PatientSex", "PatientBirthDate")
_STUDY_TAGS = ("StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "StudyDescription")
DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"


class RtDoseExport:
    """Export of the dose volume as RT Dose into the patient's study (see the module docstring)."""

    @staticmethod
    def dicomSourceOfVolume(volumeNode):
        """The engine's DicomImageSource of a volume loaded from DICOM, or None."""
        files = DicomActivityHeader.dicomFilesOfVolume(volumeNode)
        if not files:
            return None
        uid = slicer.dicomDatabase.fileValue(files[0], "0020,000E")
        modality = slicer.dicomDatabase.fileValue(files[0], "0008,0060")
        return DicomImageSource(DicomSeries(series_uid=uid, modality=modality, files=tuple(files)), tuple(files))

    @staticmethod
    def _importFolder(folder):
        from DICOMLib import DICOMUtils

        if not DICOMUtils.importDicom(folder):
            raise InputError(f"the RT Dose was written to {folder} but could not be imported into the DICOM database")

    @staticmethod
    def importDicomFiles(files) -> None:
        """Add DICOM files written by the module to Slicer's DICOM database (referenced where they are, not
        copied), so the DICOM module lists them under the patient and can send them to a PACS."""
        import ctk

        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            raise InputError("the DICOM files were written but Slicer's DICOM database is not open (open the DICOM "
                             "module once), so they were not added to it: " + ", ".join(str(f) for f in files))
        indexer = ctk.ctkDICOMIndexer()
        indexer.addListOfFiles(database, [str(f) for f in files], False)
        indexer.waitForImportFinished()

    @staticmethod
    def writeEngineRtDose(doseVolume, outputFolder: str, referenceVolumeNode=None, activityVolumeNode=None,
                          importToDatabase: bool = True) -> str:
        """Write ``doseVolume`` (engine Volume in Gy, e.g. ``result.dose_gy``) as dose.dcm in ``outputFolder``.

        referenceVolumeNode : the CT loaded from DICOM (study, frame of reference, referenced images);
        activityVolumeNode : the SPECT/PET loaded from DICOM (source images; the study when there is no CT).
        Neither from DICOM: a standalone study.  Returns the path of dose.dcm.
        """
        from TAREDosimetryLib.reporting.dicomref import dicom_context
        from TAREDosimetryLib.reporting.rtdose import write_rtdose

        if not outputFolder:
            raise InputError("choose an output folder for the RT Dose")
        os.makedirs(outputFolder, exist_ok=True)
        sources = {"ct": RtDoseExport.dicomSourceOfVolume(referenceVolumeNode),
                   "activity": RtDoseExport.dicomSourceOfVolume(activityVolumeNode)}
        path = os.path.join(outputFolder, "dose.dcm")
        write_rtdose(doseVolume, path, dicom_context(sources))
        if importToDatabase:
            RtDoseExport._importFolder(outputFolder)
        return path

    @staticmethod
    def _studyTags(shNode, studyItem):
        patientItem = shNode.GetItemParent(studyItem)
        tags = {t: shNode.GetItemAttribute(patientItem, "DICOM." + t) for t in _PATIENT_TAGS}
        tags.update({t: shNode.GetItemAttribute(studyItem, "DICOM." + t) for t in _STUDY_TAGS})
        if not tags.get("StudyInstanceUID"):
            tags["StudyInstanceUID"] = shNode.GetItemUID(studyItem, "DICOM")
        return {k: v for k, v in tags.items() if v}

    @staticmethod
    def exportWithSlicerRT(doseNode, referenceVolumeNode, outputFolder: str, segmentationNode=None,
                           importToDatabase: bool = True, seriesDescription: str = "TARE Y-90 dose") -> str:
        """Export dose (and segments as RTSTRUCT) with SlicerRT into ``outputFolder``; returns the folder."""
        pluginClass = getattr(slicer.modules, "dicomPlugins", {}).get("DicomRtImportExportPlugin")
        if pluginClass is None:
            raise InputError("SlicerRT is not installed (Extensions Manager: SlicerRT); use writeEngineRtDose instead")
        if doseNode is None or referenceVolumeNode is None or not outputFolder:
            raise InputError("RT export needs the dose volume, the CT it refers to, and an output folder")
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        referenceItem = shNode.GetItemByDataNode(referenceVolumeNode)
        studyItem = shNode.GetItemAncestorAtLevel(referenceItem, "Study")
        if not studyItem:
            raise InputError(f"'{referenceVolumeNode.GetName()}' is not in a DICOM study (load it from the DICOM database)")
        doseNode.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")
        items = [referenceItem, shNode.GetItemByDataNode(doseNode)]
        if segmentationNode is not None:
            items.append(shNode.GetItemByDataNode(segmentationNode))
        for item in items[1:]:
            shNode.SetItemParent(item, studyItem)
        plugin = pluginClass()
        exportables = [e for item in items for e in plugin.examineForExport(item)]
        tags = RtDoseExport._studyTags(shNode, studyItem)
        os.makedirs(outputFolder, exist_ok=True)
        for exportable in exportables:
            exportable.directory = outputFolder
            for tag, value in tags.items():
                exportable.setTag(tag, value)
            if exportable.tag("Modality") == "RTDOSE":
                exportable.setTag("SeriesDescription", seriesDescription)
        message = plugin.export(exportables)
        if message:
            raise InputError(f"SlicerRT's RT export failed: {message}")
        if importToDatabase:
            RtDoseExport._importFolder(outputFolder)
        return outputFolder
