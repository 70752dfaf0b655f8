"""What a result was computed from: the input files with their SHA-256, as recorded in metrics.json.

A file's hash is the SHA-256 of its bytes.  A folder (a DICOM series, a folder of masks) is hashed
as the SHA-256 of the text lines ``<sha256 of the file>  <path relative to the folder>`` of every
file in it (sub-folders included, sorted by path, hidden files too), so that the same files give
the same hash on any machine and any change of a file, a name or the set of files changes it.
A DICOM input also records the hash of the files of the series actually read
(``sha256_series``, :func:`sha256_of_files`): one slice given as the image reads its whole series,
and a folder may hold other series besides.
"""

import hashlib
import os

__all__ = ["sha256_of_path", "sha256_of_files", "input_record"]

_CHUNK = 1 << 20


def _sha256_of_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of_path(path):
    """Hex SHA-256 of a file, or of a folder's files (see module docstring); None when absent."""
    path = str(path)
    if os.path.isfile(path):
        return _sha256_of_file(path)
    if not os.path.isdir(path):
        return None
    lines = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            lines.append(f"{_sha256_of_file(full)}  {rel}\n")
    return hashlib.sha256("".join(sorted(lines, key=lambda ln: ln[66:])).encode("utf-8")).hexdigest()


def sha256_of_files(files):
    """Hex SHA-256 of a set of files (a DICOM series): of the lines ``<sha256>  <file name>``
    sorted by name, so that the same files give the same hash wherever they lie."""
    lines = sorted(f"{_sha256_of_file(f)}  {os.path.basename(str(f))}\n" for f in files)
    return hashlib.sha256("".join(sorted(lines, key=lambda ln: ln[66:])).encode("utf-8")).hexdigest()


def _labels_entry(labels):
    """The label table as given: text ('1=liver,...', 'totalsegmentator'), a file path (absolute), or a dict."""
    if labels is None:
        return None
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    text = str(labels)
    return os.path.abspath(text) if os.path.isfile(text) else text


def input_record(image, segmentation, *, ct=None, labels=None, modality="spect", activity_unit="", label_names=None,
                 series_files=None):
    """The ``inputs`` entry of metrics.json for a case read from files.

    Parameters
    ----------
    image, segmentation, ct : str paths (files or folders) of the activity image, the segments and the CT.
    labels : the label table as given (text, file path or dict), or None.
    modality : 'spect' or 'pet'; activity_unit : unit read from the image (DICOM), or ''.
    label_names : {value: name} of the label map as used (None for other segmentations).
    series_files : {input: files of the DICOM series read for it}, optional (DICOM inputs).

    Returns
    -------
    dict with the absolute paths (``activity_image``, ``segmentation``, ``ct``), ``modality``,
    ``activity_unit``, ``labels``, ``label_names``, ``sha256`` ({input: hex digest}) and, for
    DICOM inputs, ``sha256_series`` ({input: hex digest of the series' files}).
    """
    paths = {"activity_image": image, "segmentation": segmentation, "ct": ct}
    record = {k: (os.path.abspath(str(v)) if v else None) for k, v in paths.items()}
    record.update(modality=modality, activity_unit=activity_unit or None, labels=_labels_entry(labels))
    if label_names:
        record["label_names"] = {str(int(v)): str(n) for v, n in sorted(label_names.items())}
    hashes = {k: sha256_of_path(v) for k, v in record.items() if k in paths and v}
    if isinstance(record["labels"], str) and os.path.isfile(record["labels"]):
        hashes["labels"] = sha256_of_path(record["labels"])
    record["sha256"] = hashes
    series = {k: sha256_of_files(files) for k, files in (series_files or {}).items() if files}
    if series:
        record["sha256_series"] = series
    return record
