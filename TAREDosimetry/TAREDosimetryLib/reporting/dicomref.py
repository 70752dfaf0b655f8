"""The DICOM identity of what a case writes (RT Dose, SEG, SR): patient, study, frame of reference,
and the images it refers to.

When the inputs came from DICOM, the exports join the patient's study: same Patient and Study,
the Frame of Reference of the CT (else of the activity image), references to the CT's images and
to the activity images the dose was derived from.  Otherwise they form a standalone study of their
own (new Study and Frame of Reference UIDs, a placeholder patient that the user should replace
before sending to a PACS).  One :class:`DicomContext` is made per case, so every object of the case
lands in one study and one frame of reference.
"""

import datetime as _dt
from dataclasses import dataclass, field

from ..errors import InputError
from ..imaging.dicomseries import require_pydicom
from ..version import __version__

__all__ = ["DicomContext", "dicom_context", "new_uid", "save_dataset", "base_dataset", "MANUFACTURER"]

MANUFACTURER = "TAREDosimetry"
_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
                 "OtherPatientIDs", "IssuerOfPatientID")
_STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
               "StudyDescription")


def new_uid():
    """A new DICOM UID (pydicom's root)."""
    return require_pydicom("writing DICOM").uid.generate_uid()


@dataclass
class DicomContext:
    """Patient, study and frame of reference shared by a case's DICOM exports.

    patient, study : {keyword: value}; frame_of_reference_uid : str.
    referenced_images : [(SOP Class UID, SOP Instance UID)] of the CT (or activity) images the
        exports are drawn on; source_images : the same for the activity images the dose comes from.
    source_datasets : header-only pydicom datasets of the reference series (highdicom needs them).
    standalone : True when no DICOM input gave the identity.
    """

    patient: dict
    study: dict
    frame_of_reference_uid: str
    referenced_images: list = field(default_factory=list)
    source_images: list = field(default_factory=list)
    source_datasets: list = field(default_factory=list)
    referenced_series_uid: str = ""
    standalone: bool = True
    series_counter: int = 900

    def next_series_number(self):
        self.series_counter += 1
        return self.series_counter

    def describe(self):
        if self.standalone:
            return f"standalone study {self.study['StudyInstanceUID']} (no DICOM input: placeholder patient)"
        return (f"study {self.study['StudyInstanceUID']} of patient {self.patient.get('PatientID', '')}, frame of "
                f"reference {self.frame_of_reference_uid}")


def _headers(pydicom, files):
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _standalone(patient_id, patient_name):
    now = _dt.datetime.now()
    study = {"StudyInstanceUID": new_uid(), "StudyDate": now.strftime("%Y%m%d"), "StudyTime": now.strftime("%H%M%S"),
             "StudyID": "TARE", "AccessionNumber": "", "ReferringPhysicianName": "",
             "StudyDescription": "TAREDosimetry results"}
    patient = {"PatientName": patient_name or "Unknown^TAREDosimetry", "PatientID": patient_id or "TARE-UNKNOWN",
               "PatientBirthDate": "", "PatientSex": ""}
    return DicomContext(patient, study, new_uid())


def dicom_context(sources=None, *, patient_id=None, patient_name=None):
    """The :class:`DicomContext` of a case.

    sources : {'ct': DicomImageSource or None, 'activity': DicomImageSource or None} (the
        ``sources`` of :func:`~TAREDosimetryLib.batch.run_case_files`), or None.
    patient_id, patient_name : used only for a standalone study.
    """
    pydicom = require_pydicom("writing DICOM (RT Dose, SEG, SR)")
    sources = sources or {}
    ref, act = sources.get("ct"), sources.get("activity")
    main = ref or act
    if main is None:
        return _standalone(patient_id, patient_name)
    heads = _headers(pydicom, main.files)
    first = heads[0]
    if not first.get("StudyInstanceUID") or not first.get("FrameOfReferenceUID"):
        raise InputError(f"the DICOM series {main.series.series_uid} has no StudyInstanceUID or FrameOfReferenceUID: "
                         "its exports cannot join its study")
    ctx = DicomContext(
        patient={k: first.get(k) for k in _PATIENT_KEYS if k in first},
        study={k: first.get(k, "") for k in _STUDY_KEYS},
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        referenced_images=[(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in heads],
        source_datasets=heads, referenced_series_uid=str(first.SeriesInstanceUID), standalone=False)
    if act is not None:
        act_heads = heads if act is main else _headers(pydicom, act.files)
        ctx.source_images = [(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in act_heads]
    return ctx


def save_dataset(ds, path):
    """Write ``ds`` as a DICOM file with its file meta information (pydicom 2 and 3)."""
    pydicom = require_pydicom("writing DICOM")
    if int(pydicom.__version__.split(".")[0]) < 3:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)
    else:
        ds.save_as(str(path), enforce_file_format=True)


def base_dataset(ctx, sop_class_uid, modality, series_description):
    """A dataset with file meta, SOP Common, Patient, General Study, General Series, Frame of Reference
    and General Equipment attributes filled from ``ctx``."""
    pydicom = require_pydicom("writing DICOM")
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    now = _dt.datetime.now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    for k, v in list(ctx.patient.items()) + list(ctx.study.items()):
        setattr(ds, k, v if v is not None else "")
    ds.Modality = modality
    ds.SeriesInstanceUID = new_uid()
    ds.SeriesNumber = ctx.next_series_number()
    ds.SeriesDescription = series_description
    ds.SeriesDate, ds.SeriesTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "TAREDosimetry"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    return ds
