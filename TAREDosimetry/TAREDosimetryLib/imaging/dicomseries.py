"""DICOM folders: the series they hold, and the choice of one by modality and SeriesInstanceUID.

A hospital export often puts the PET, the CT, an RT Structure Set and a DICOM SEG in one folder
(and sub-folders).  :func:`scan_dicom_folder` groups the files by SeriesInstanceUID, reading only
their headers; :func:`select_series` picks the series an input needs (a PET image, a CT, a
segmentation, a dose) and refuses, listing the candidates, when the choice is not clear.  Nothing is
taken silently: the old rule "the series with the most files" is gone.

Headers are read with pydicom (bundled in 3D Slicer; ``pip install TAREDosimetry[dicom]``).  Without
pydicom, image series are still found through GDCM (SimpleITK), with fewer details.
"""

import contextlib
import os
from dataclasses import dataclass, field

import SimpleITK as sitk

from ..errors import InputError

__all__ = [
    "DicomSeries", "SOP_CLASSES", "scan_dicom_folder", "select_series", "series_table", "quiet_itk",
    "require_pydicom", "is_dicom_file", "dicom_files",
]

#: SOP Class UID -> (short name, kind).  Kinds: image, rtdose, rtstruct, seg, sr, other.
SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": ("CT Image", "image"),
    "1.2.840.10008.5.1.4.1.1.2.1": ("Enhanced CT Image", "image"),
    "1.2.840.10008.5.1.4.1.1.4": ("MR Image", "image"),
    "1.2.840.10008.5.1.4.1.1.20": ("NM Image", "image"),
    "1.2.840.10008.5.1.4.1.1.128": ("PET Image", "image"),
    "1.2.840.10008.5.1.4.1.1.130": ("Enhanced PET Image", "image"),
    "1.2.840.10008.5.1.4.1.1.7": ("Secondary Capture", "other"),
    "1.2.840.10008.5.1.4.1.1.481.2": ("RT Dose", "rtdose"),
    "1.2.840.10008.5.1.4.1.1.481.3": ("RT Structure Set", "rtstruct"),
    "1.2.840.10008.5.1.4.1.1.481.5": ("RT Plan", "other"),
    "1.2.840.10008.5.1.4.1.1.66.4": ("Segmentation", "seg"),
    "1.2.840.10008.5.1.4.1.1.66.7": ("Label Map Segmentation", "seg"),
    "1.2.840.10008.5.1.4.1.1.88.22": ("Enhanced SR", "sr"),
    "1.2.840.10008.5.1.4.1.1.88.33": ("Comprehensive SR", "sr"),
    "1.2.840.10008.5.1.4.1.1.88.34": ("Comprehensive 3D SR", "sr"),
    "1.2.840.10008.5.1.4.1.1.104.1": ("Encapsulated PDF", "other"),
}

_HEADER_TAGS = (
    "SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "StudyInstanceUID",
    "FrameOfReferenceUID", "PatientID", "SeriesDate", "SeriesTime", "Rows", "Columns", "NumberOfFrames",
)


def require_pydicom(what):
    """The pydicom module, or an InputError naming ``what`` needs it and how to install it."""
    try:
        import pydicom
    except ImportError:
        raise InputError(f"{what} needs the Python package pydicom: pip install pydicom "
                         "(or pip install TAREDosimetry[dicom])") from None
    return pydicom


@contextlib.contextmanager
def quiet_itk():
    """Keep ITK/GDCM's raw warnings (e.g. "No Series were found") off the console; the engine says
    what went wrong in its own words."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def is_dicom_file(path):
    """True when ``path`` is a file with the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder, recursive=True):
    """Sorted paths of the DICOM files (with preamble) in ``folder`` (and its sub-folders)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(str(folder)):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if is_dicom_file(os.path.join(dirpath, f))]
        if not recursive:
            break
    return out


@dataclass(frozen=True)
class DicomSeries:
    """One series of a folder: its identity, what it is, and its files (sorted by name)."""

    series_uid: str
    modality: str = ""
    sop_class_uid: str = ""
    description: str = ""
    files: tuple = ()
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    patient_id: str = ""
    series_number: str = ""
    date_time: str = ""
    rows: int = 0
    columns: int = 0
    frames: int = 1
    notes: tuple = field(default=())

    @property
    def sop_class_name(self):
        return SOP_CLASSES.get(self.sop_class_uid, (self.sop_class_uid or "unknown", "other"))[0]

    @property
    def kind(self):
        """'image', 'rtdose', 'rtstruct', 'seg', 'sr' or 'other'."""
        if self.sop_class_uid in SOP_CLASSES:
            return SOP_CLASSES[self.sop_class_uid][1]
        return "image" if self.rows and self.columns else "other"

    def size_text(self):
        if self.kind != "image":
            return f"{len(self.files)} file(s)"
        depth = self.frames if len(self.files) == 1 else len(self.files)
        return f"{self.columns}x{self.rows}x{depth}"

    def describe(self):
        """One line: modality, SOP class, size, date, description, UID."""
        desc = f" '{self.description}'" if self.description else ""
        when = f" {self.date_time}" if self.date_time else ""
        return f"{self.modality or '?':7s} {self.sop_class_name:22s} {self.size_text():13s}{when}{desc}  {self.series_uid}"


def _header_row(pydicom, path):
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
    except Exception:  # an unreadable or foreign file is skipped, never fatal
        return None
    return {t: ds.get(t, "") for t in _HEADER_TAGS}


def _series_from_rows(rows):
    by_uid = {}
    for path, r in rows:
        by_uid.setdefault(str(r["SeriesInstanceUID"]), []).append((path, r))
    out = []
    for uid, items in by_uid.items():
        r = items[0][1]
        out.append(DicomSeries(
            series_uid=uid, modality=str(r["Modality"]), sop_class_uid=str(r["SOPClassUID"]),
            description=str(r["SeriesDescription"]), files=tuple(sorted(p for p, _ in items)),
            study_uid=str(r["StudyInstanceUID"]), frame_of_reference_uid=str(r["FrameOfReferenceUID"]),
            patient_id=str(r["PatientID"]), series_number=str(r["SeriesNumber"]),
            date_time=f"{r['SeriesDate']} {r['SeriesTime']}".strip(), rows=int(r["Rows"] or 0),
            columns=int(r["Columns"] or 0), frames=int(r["NumberOfFrames"] or 1),
        ))
    return sorted(out, key=lambda s: (s.study_uid, s.modality, s.series_number, s.series_uid))


def _gdcm_series(folder, uid):
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()

    def tag(t):
        return reader.GetMetaData(t).strip() if reader.HasMetaDataKey(t) else ""

    return DicomSeries(uid, tag("0008|0060"), tag("0008|0016"), tag("0008|103e"), tuple(files),
                       tag("0020|000d"), tag("0020|0052"), tag("0010|0020"), tag("0020|0011"),
                       rows=int(tag("0028|0010") or 0), columns=int(tag("0028|0011") or 0),
                       notes=("listed through GDCM: install pydicom for RT and SEG objects",))


def _scan_with_gdcm(folder):
    """Image series through GDCM when pydicom is missing (top folder only)."""
    with quiet_itk():
        return [_gdcm_series(folder, uid) for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))]


def scan_dicom_folder(folder, recursive=True):
    """The series of a folder (and its sub-folders), from the file headers.

    Returns
    -------
    list of :class:`DicomSeries`, sorted by study, modality and series number.

    Raises
    ------
    InputError : not a folder.
    """
    if not os.path.isdir(str(folder)):
        raise InputError(f"{folder}: not a folder")
    try:
        import pydicom
    except ImportError:
        return _scan_with_gdcm(folder)
    rows = []
    for path in dicom_files(folder, recursive):
        r = _header_row(pydicom, path)
        if r is not None and r["SeriesInstanceUID"]:
            rows.append((path, r))
    return _series_from_rows(rows)


def series_table(series):
    """The lines ``tare-dosimetry dicom-ls`` prints for a list of series."""
    if not series:
        return ["(no DICOM series)"]
    head = f"{'MODALITY':7s} {'TYPE':22s} {'SIZE':13s} DATE TIME 'DESCRIPTION'  SERIES INSTANCE UID"
    return [head] + [s.describe() for s in series]


def _chosen_by_uid(candidates, series_uids, modalities):
    """The candidates named by --series.  A named series of another modality than this input's, in a
    folder that has series of this input's modality, is meant for another input (the CT's UID when
    the PET is read from the same folder) and is not taken here."""
    named = [s for s in candidates if s.series_uid in set(series_uids or ())]
    if not modalities:
        return named
    own = [s for s in named if s.modality in modalities]
    if own or any(s.modality in modalities for s in candidates):
        return own
    return named


def _refuse(folder, what, message, series):
    listing = "; ".join(f"{s.modality} {s.sop_class_name} '{s.description}' {s.series_uid}" for s in series)
    raise InputError(f"{what}: {folder} {message}: {listing or 'none'} (choose with --series UID; "
                     f"'tare-dosimetry dicom-ls {folder}' lists them)")


def select_series(folder, *, what, kinds=("image",), modalities=(), series_uids=(), series=None):
    """The one series of ``folder`` that an input needs.

    Parameters
    ----------
    what : str, the input's name in messages ('PET image', 'CT image', 'segmentation', ...).
    kinds : the acceptable kinds ('image', 'rtdose', 'rtstruct', 'seg').
    modalities : preferred modalities, in order ('PT'; 'NM', 'PT'; 'CT'); a series of another
        modality is taken only when it is the only candidate (the caller warns).
    series_uids : SeriesInstanceUIDs chosen by the user (``--series``); one of them that lies in
        this folder and is of an acceptable kind is taken.
    series : the folder's series when already scanned.

    Raises
    ------
    InputError : no candidate, or several and no UID to choose (the message lists them).
    """
    series = scan_dicom_folder(folder) if series is None else series
    if not series:
        raise InputError(f"{what}: {folder} holds no DICOM series (no file in it has a DICOM header)")
    candidates = [s for s in series if s.kind in kinds]
    chosen = _chosen_by_uid(candidates, series_uids, modalities)
    if len(chosen) == 1:
        return chosen[0]
    if len(chosen) > 1:
        _refuse(folder, what, "matches several of the --series UIDs given", chosen)
    if not candidates:
        _refuse(folder, what, f"holds no {'/'.join(kinds)} series; it holds", series)
    for modality in modalities:
        preferred = [s for s in candidates if s.modality == modality]
        if len(preferred) == 1:
            return preferred[0]
        if len(preferred) > 1:
            _refuse(folder, what, f"holds several {modality} series", preferred)
    if len(candidates) == 1:
        return candidates[0]
    _refuse(folder, what, "holds several candidate series", candidates)
