"""Synthetic DICOM data for the tests, written with pydicom: CT and PET series (one file per slice)
and NM multi-frame SPECT, with the timing, units and rescale attributes set by the test.

Geometry follows the engine's :class:`Volume`: arrays (z, y, x), spacing and origin (x, y, z), LPS mm,
direction columns = i, j, k axes.  Nothing here is part of the engine.
"""

import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
NM_SOP = "1.2.840.10008.5.1.4.1.1.20"
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def new_study(patient_id="TARE-TEST-1", patient_name="Test^Patient"):
    """Patient and study attributes shared by the series of one synthetic study."""
    return {
        "PatientID": patient_id, "PatientName": patient_name, "PatientBirthDate": "19600101", "PatientSex": "F",
        "StudyInstanceUID": generate_uid(), "StudyDate": "20240502", "StudyTime": "090000", "StudyID": "1",
        "AccessionNumber": "ACC1", "ReferringPhysicianName": "", "FrameOfReferenceUID": generate_uid(),
    }


def save(ds, path):
    """Write a dataset as a DICOM file (pydicom 2 and 3)."""
    if int(pydicom.__version__.split(".")[0]) < 3:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    else:
        ds.save_as(path, enforce_file_format=True)


def _dataset(sop_class, modality, study, series_uid, series_number, description):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    for k, v in study.items():
        setattr(ds, k, v)
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.Manufacturer = "TAREDosimetry tests"
    ds.PositionReferenceIndicator = ""
    return ds


def _pixels(ds, stored, signed):
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()


def _plane(ds, direction, spacing_xy):
    d = np.asarray(direction, float).reshape(3, 3)
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in list(d[:, 0]) + list(d[:, 1])]
    ds.PixelSpacing = [f"{spacing_xy[1]:.6g}", f"{spacing_xy[0]:.6g}"]  # row spacing (y), column spacing (x)


def write_image_series(folder, values, spacing, origin, direction=IDENTITY, *, modality="CT", study=None,
                       series_uid=None, slopes=None, intercept=0.0, attributes=None, per_slice=None,
                       series_number=1, description=None):
    """One file per slice; returns (paths in k order, stored int arrays, slopes).

    values : (Z, Y, X) float array of real-world values; stored = round((value - intercept) / slope).
    slopes : per-slice RescaleSlope (default: max |value| of the slice / 30000, 1 for an empty slice).
    attributes : dict set on every file; per_slice : callable(k) -> dict set on file k.
    """
    os.makedirs(folder, exist_ok=True)
    study = study or new_study()
    series_uid = series_uid or generate_uid()
    values = np.asarray(values, float)
    nz, ny, nx = values.shape
    d = np.asarray(direction, float).reshape(3, 3)
    if slopes is None:
        slopes = [max(np.abs(values[k]).max() / 30000.0, 1e-12) if np.any(values[k]) else 1.0 for k in range(nz)]
    sop = {"CT": CT_SOP, "PT": PET_SOP}.get(modality, CT_SOP)
    paths, stored_all = [], []
    for k in range(nz):
        ds = _dataset(sop, modality, study, series_uid, series_number, description or f"{modality} series")
        ds.InstanceNumber = k + 1
        pos = np.asarray(origin, float) + d[:, 2] * spacing[2] * k
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        _plane(ds, direction, spacing)
        ds.SliceThickness = f"{spacing[2]:.6g}"
        ds.Rows, ds.Columns = ny, nx
        ds.RescaleSlope = f"{slopes[k]:.10g}"
        ds.RescaleIntercept = f"{intercept:.10g}"
        ds.RescaleType = "HU" if modality == "CT" else "US"
        slope = float(ds.RescaleSlope)
        stored = np.round((values[k] - intercept) / slope)
        signed = modality == "CT"
        stored = np.clip(stored, -32768, 32767) if signed else np.clip(stored, 0, 65535)
        _pixels(ds, stored, signed)
        stored_all.append(stored)
        for key, v in (attributes or {}).items():
            setattr(ds, key, v)
        for key, v in (per_slice(k) if per_slice else {}).items():
            setattr(ds, key, v)
        path = os.path.join(folder, f"{modality}_{series_number:03d}_{k:04d}.dcm")
        save(ds, path)
        paths.append(path)
    return paths, np.array(stored_all), [float(f"{s:.10g}") for s in slopes]


def radiopharmaceutical(start_datetime=None, start_time=None, half_life_s=230400.0, total_dose_bq=2.0e9,
                        code=("14691008", "SCT", "^90^Yttrium"), name="Y-90 microspheres"):
    """A RadiopharmaceuticalInformationSequence item (values None are left out)."""
    item = Dataset()
    if start_datetime is not None:
        item.RadiopharmaceuticalStartDateTime = start_datetime
    if start_time is not None:
        item.RadiopharmaceuticalStartTime = start_time
    if half_life_s is not None:
        item.RadionuclideHalfLife = f"{half_life_s:.6g}"
    if total_dose_bq is not None:
        item.RadionuclideTotalDose = f"{total_dose_bq:.6g}"
    if code is not None:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = code
        item.RadionuclideCodeSequence = Sequence([c])
    if name:
        item.Radiopharmaceutical = name
    return Sequence([item])


def pet_attributes(*, units="BQML", decay="START", series_date="20240503", series_time="101500",
                   acquisition_time=None, radiopharm=None):
    """The PET Series and Isotope attributes of a Y-90 PET (values None are left out)."""
    a = {"SeriesDate": series_date, "SeriesTime": series_time, "AcquisitionDate": series_date,
         "AcquisitionTime": acquisition_time or series_time, "Units": units, "DecayCorrection": decay,
         "CorrectedImage": ["ATTN", "DECY", "SCAT"], "SeriesType": ["STATIC", "IMAGE"], "ActualFrameDuration": 1200000}
    if radiopharm is not None:
        a["RadiopharmaceuticalInformationSequence"] = radiopharm
    return {k: v for k, v in a.items() if v is not None}


def write_nm_multiframe(path, values, spacing, origin, direction=IDENTITY, *, study=None, slope=None, intercept=0.0,
                        attributes=None, series_uid=None):
    """One NM multi-frame file (a reconstructed SPECT); returns (stored array, slope)."""
    study = study or new_study()
    values = np.asarray(values, float)
    nz, ny, nx = values.shape
    ds = _dataset(NM_SOP, "NM", study, series_uid or generate_uid(), 3, "SPECT recon")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = [0x00540080]
    ds.SliceVector = list(range(1, nz + 1))
    ds.NumberOfSlices = nz
    det = Dataset()
    det.ImagePositionPatient = [f"{v:.6f}" for v in origin]
    d = np.asarray(direction, float).reshape(3, 3)
    det.ImageOrientationPatient = [f"{v:.6f}" for v in list(d[:, 0]) + list(d[:, 1])]
    ds.DetectorInformationSequence = Sequence([det])
    ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]
    ds.SliceThickness = ds.SpacingBetweenSlices = f"{spacing[2]:.6g}"
    ds.Rows, ds.Columns = ny, nx
    slope = slope if slope is not None else max(np.abs(values).max() / 30000.0, 1e-12)
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
    stored = np.clip(np.round((values - intercept) / float(f"{slope:.10g}")), 0, 65535)
    _pixels(ds, stored, signed=False)
    for key, v in (attributes or {}).items():
        setattr(ds, key, v)
    save(ds, path)
    return stored, float(f"{slope:.10g}")


RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"


def write_rtstruct(path, rois, *, study=None, referenced_series_uid=None):
    """An RT Structure Set.  rois: list of (name, (r, g, b) 0-255, [contour (N, 3) LPS arrays])."""
    study = study or new_study()
    ds = _dataset(RTSTRUCT_SOP, "RTSTRUCT", study, generate_uid(), 10, "structures")
    ds.StructureSetLabel = "TEST"
    ds.StructureSetDate, ds.StructureSetTime = "20240503", "120000"
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = study["FrameOfReferenceUID"]
    if referenced_series_uid:
        series = Dataset()
        series.SeriesInstanceUID = referenced_series_uid
        st = Dataset()
        st.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        st.ReferencedSOPInstanceUID = study["StudyInstanceUID"]
        st.RTReferencedSeriesSequence = Sequence([series])
        ref_for.RTReferencedStudySequence = Sequence([st])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_for])
    roi_seq, contour_seq, obs_seq = [], [], []
    for n, (name, color, contours) in enumerate(rois, start=1):
        r = Dataset()
        r.ROINumber, r.ReferencedFrameOfReferenceUID, r.ROIName, r.ROIGenerationAlgorithm = n, study["FrameOfReferenceUID"], name, "MANUAL"
        roi_seq.append(r)
        rc = Dataset()
        rc.ReferencedROINumber, rc.ROIDisplayColor = n, list(color)
        items = []
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(pts, float).reshape(-1)]
            items.append(c)
        rc.ContourSequence = Sequence(items)
        contour_seq.append(rc)
        o = Dataset()
        o.ObservationNumber, o.ReferencedROINumber, o.RTROIInterpretedType, o.ROIInterpreter = n, n, "ORGAN", ""
        obs_seq.append(o)
    ds.StructureSetROISequence = Sequence(roi_seq)
    ds.ROIContourSequence = Sequence(contour_seq)
    ds.RTROIObservationsSequence = Sequence(obs_seq)
    save(ds, path)
    return ds


def circle(cx, cy, z, r, n=128, clockwise=False):
    """(n, 3) points of a circle of radius r mm at height z."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if clockwise:
        t = t[::-1]
    return np.c_[cx + r * np.cos(t), cy + r * np.sin(t), np.full(n, z)]
