"""Segments from DICOM: a DICOM SEG (read with highdicom) or an RT Structure Set (:mod:`.rtstruct`).

A DICOM SEG keeps its own geometry (its frames' positions, cropped to the frames that hold
segments), its segment labels and its recommended display colours (CIELab, converted to RGB).
FRACTIONAL segments are thresholded at one half (with a note).  A path may be the SEG or RTSTRUCT
file, or a folder holding one (chosen like an image series: ``--series UID`` when there are several).
"""

import os

import numpy as np

from ..errors import GeometryError, InputError
from ..volume import Grid
from .dicomseries import dicom_files, is_dicom_file, scan_dicom_folder, select_series
from .rtstruct import read_rtstruct
from .segmentation import Segmentation

__all__ = ["read_dicom_seg", "read_dicom_segments", "is_dicom_segmentation_path", "require_highdicom"]


def require_highdicom(what):
    """The highdicom module, or an InputError naming the pip install."""
    try:
        import highdicom
    except ImportError:
        raise InputError(f"{what} needs the Python package highdicom: pip install highdicom "
                         "(or pip install TAREDosimetry[dicom])") from None
    return highdicom


def _grid_of(volume, path):
    """Grid of a highdicom Volume whose array is (slices, rows, columns) = (z, y, x)."""
    a = np.asarray(volume.affine, float)
    k_vec, j_vec, i_vec = a[:3, 0], a[:3, 1], a[:3, 2]
    spacing = tuple(float(np.linalg.norm(v)) for v in (i_vec, j_vec, k_vec))
    if min(spacing) <= 0:
        raise GeometryError(f"segmentation {path}: degenerate geometry (spacing {spacing})")
    direction = np.column_stack([i_vec / spacing[0], j_vec / spacing[1], k_vec / spacing[2]])
    return Grid(volume.array.shape[:3], spacing, tuple(a[:3, 3]), tuple(direction.reshape(-1)))


def _color(description):
    value = description.get("RecommendedDisplayCIELabValue")
    if not value:
        return None
    import highdicom

    rgb = highdicom.color.CIELabColor.from_dicom_value(tuple(int(v) for v in value)).to_rgb()
    return tuple(c / 255.0 for c in rgb)


def read_dicom_seg(path):
    """Segmentation from a DICOM SEG file (BINARY, FRACTIONAL or LABELMAP)."""
    hd = require_highdicom("reading a DICOM SEG")
    try:
        seg = hd.seg.segread(str(path))
        vol = seg.get_volume()
    except (ValueError, RuntimeError, AttributeError) as exc:
        raise InputError(f"segmentation {path}: cannot read this DICOM SEG as a volume ({exc})") from None
    numbers = list(vol.get_channel_values(vol.channel_descriptors[0])) if vol.channel_descriptors else list(seg.segment_numbers)
    arr = np.asarray(vol.array)
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    notes, colors = [], {}
    if str(seg.SegmentationType) == "FRACTIONAL":
        notes.append(f"segmentation {path}: FRACTIONAL segments thresholded at 0.5")

    def masks():  # one at a time: each is packed into the segmentation before the next is made
        names = set()
        for n, number in enumerate(numbers):
            desc = seg.get_segment_description(int(number))
            name = str(desc.SegmentLabel or f"segment {number}")
            unique, dup = name, 2
            while unique in names:
                unique, dup = f"{name} ({dup})", dup + 1
            names.add(unique)
            color = _color(desc)
            if color is not None:
                colors[unique] = color
            yield unique, (arr[..., n] >= 0.5 if arr.dtype.kind == "f" else arr[..., n] > 0)

    out = Segmentation.from_masks(masks(), _grid_of(vol, path), colors=colors, source=os.path.abspath(str(path)))
    out.notes.extend(notes)
    return out


def is_dicom_segmentation_path(path):
    """True when ``path`` is a DICOM file, or a folder holding DICOM files (SEG or RTSTRUCT expected)."""
    path = str(path)
    if os.path.isdir(path):
        return bool(dicom_files(path))
    return is_dicom_file(path) or path.lower().endswith(".dcm")


def read_dicom_segments(path, *, reference=None, reference_for_uid="", series_uids=(), spacing_mm=1.0):
    """(Segmentation, DicomSeries) of a DICOM SEG or RT Structure Set file or folder.

    reference : Grid of the CT (RT Structure Sets are drawn on its voxels); reference_for_uid: its
    FrameOfReferenceUID when the CT is DICOM.
    """
    path = str(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    series_list = scan_dicom_folder(folder, recursive=os.path.isdir(path))
    if not os.path.isdir(path):
        series_list = [s for s in series_list if os.path.abspath(path) in {os.path.abspath(f) for f in s.files}]
    series = select_series(folder, what="segmentation", kinds=("seg", "rtstruct"), series_uids=series_uids,
                           series=series_list)
    file = path if not os.path.isdir(path) else series.files[0]
    if len(series.files) > 1 and os.path.isdir(path):
        raise InputError(f"segmentation: series {series.series_uid} in {path} has {len(series.files)} files; give one file")
    if series.kind == "seg":
        return read_dicom_seg(file), series
    return read_rtstruct(file, reference, reference_for_uid=reference_for_uid, spacing_mm=spacing_mm), series
