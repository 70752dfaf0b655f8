"""The case's segments as a DICOM SEG (``segments.dcm``), with highdicom.

BINARY segments on the segmentation's own grid (cropped to the segments), overlapping where the
segments overlap (liver and tumour), each with its name, its role as a coded property (liver,
tumour, lung, ...) and its colour.  The SEG refers to the images the segments belong to: the
DICOM CT or activity series of the inputs, else the case's RT Dose (a standalone export), so it
always joins the case's study and frame of reference (:mod:`.dicomref`).
"""

import numpy as np

from ..errors import InputError
from ..imaging.dicomseg import require_highdicom
from ..version import __version__
from .dicomref import MANUFACTURER, new_uid, save_dataset

__all__ = ["write_dicom_seg", "segment_codes", "needs_rtdose_source"]


def segment_codes(role):
    """(category, type) codes (SNOMED CT) of a segment role."""
    from pydicom.sr.codedict import codes

    sct = codes.SCT
    table = {
        "tumor": (sct.MorphologicallyAbnormalStructure, sct.Neoplasm),
        "lung": (sct.AnatomicalStructure, sct.Lung),
    }
    if role in table:
        return table[role]
    if role in ("liver", "right_lobe", "left_lobe", "normal_liver", "perfused_normal", "perfused"):
        return sct.AnatomicalStructure, sct.Liver
    return sct.Tissue, sct.Tissue


def needs_rtdose_source(ctx):
    """True when the SEG cannot refer to single-frame DICOM images of the inputs (then it refers to
    the RT Dose, which must be written with it)."""
    return ctx.standalone or not ctx.source_datasets or any(int(d.get("NumberOfFrames", 1) or 1) > 1 for d in ctx.source_datasets)


def _identity_of(rtdose):
    """A single-frame view of the RT Dose: the image the SEG refers to when no DICOM image was input."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
              "StudyID", "AccessionNumber", "ReferringPhysicianName", "SeriesInstanceUID", "FrameOfReferenceUID",
              "SOPClassUID", "SOPInstanceUID", "Modality", "Rows", "Columns", "PixelSpacing", "ImageOrientationPatient",
              "ImagePositionPatient", "SpecificCharacterSet"):
        if k in rtdose:
            setattr(ds, k, rtdose.get(k))
    # highdicom reads the geometry of an image of a multi-frame IOD (RT Dose) from functional groups
    measures, orientation, shared = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = rtdose.PixelSpacing, rtdose.SliceThickness
    orientation.ImageOrientationPatient = rtdose.ImageOrientationPatient
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    position, frame = Dataset(), Dataset()
    position.ImagePositionPatient = rtdose.ImagePositionPatient
    frame.PlanePositionSequence = [position]
    ds.SharedFunctionalGroupsSequence, ds.PerFrameFunctionalGroupsSequence = [shared], [frame]
    ds.NumberOfFrames = 1
    return ds


def _volume(hd, segmentation, names, ctx):
    """highdicom Volume (slices, rows, columns, segments) of the named masks, cropped to their union."""
    from ..evaluation.sampling import union_box

    box = union_box(segmentation.bbox(n) for n in names)
    grid = segmentation.grid.crop(box)
    arr = np.stack([segmentation.mask(n, box) for n in names], axis=-1).astype(np.uint8)
    d = grid.direction_matrix
    sx, sy, sz = grid.spacing_mm
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = d[:, 2] * sz, d[:, 1] * sy, d[:, 0] * sx
    affine[:3, 3] = grid.origin_mm
    return hd.Volume(arr, affine, "PATIENT", ctx.frame_of_reference_uid, channels={"SegmentNumber": list(range(1, len(names) + 1))})


def _descriptions(hd, segmentation, names, roles):
    out = []
    for n, name in enumerate(names, start=1):
        info = segmentation.info(name)
        category, kind = segment_codes(roles.get(name, "other"))
        rgb = tuple(int(round(255 * min(max(c, 0.0), 1.0))) for c in info.color)
        out.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=name[:64], segmented_property_category=category, segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL, tracking_uid=new_uid(), tracking_id=name[:64],
            display_color=hd.color.CIELabColor.from_rgb(*rgb)))
    return out


def write_dicom_seg(segmentation, result, path, ctx, *, rtdose=None):
    """Write the non-empty segments of ``segmentation`` as a DICOM SEG; returns the dataset.

    result : the CaseResult (segment roles); ctx : DicomContext; rtdose : the RT Dose dataset,
    required when :func:`needs_rtdose_source`.
    """
    hd = require_highdicom("writing a DICOM SEG")
    names = [n for n in segmentation.names if segmentation.bbox(n) is not None]
    if not names:
        raise InputError("DICOM SEG: every segment is empty")
    if needs_rtdose_source(ctx):
        if rtdose is None:
            raise InputError("DICOM SEG without DICOM input images refers to the RT Dose: write it too (--rtdose)")
        sources = [_identity_of(rtdose)]
    else:
        sources = ctx.source_datasets
    roles = dict((result.inputs or {}).get("roles") or {})
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=_volume(hd, segmentation, names, ctx), segmentation_type="BINARY",
        segment_descriptions=_descriptions(hd, segmentation, names, roles), series_instance_uid=new_uid(),
        series_number=ctx.next_series_number(), sop_instance_uid=new_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="TAREDosimetry", software_versions=__version__, device_serial_number="none",
        content_label="TARE_SEGMENTS", content_description="segments of the TAREDosimetry dosimetry",
        series_description="TARE segments")
    save_dataset(seg, path)
    return seg
