"""Reading segmentations: 3D Slicer .seg.nrrd, label maps with a name table, mask folders, and
(through :mod:`.dicomseg`) DICOM SEG and RT Structure Sets.

* ``.seg.nrrd`` (one or several layers, shared layers, overlapping segments);
* label-map images with a {label: name} table (JSON file, ``value=name`` pairs, or the
  built-in ``totalsegmentator`` table, see :mod:`.labels`);
* folders of binary mask images (one segment per file, named after the file).
"""

import os

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..resample import array_from_sitk, resample_mask, volume_from_sitk
from ..volume import Grid
from .dicomseg import is_dicom_segmentation_path, read_dicom_segments
from .dicomseries import quiet_itk
from .images import IMAGE_SUFFIXES, check_exists, read_image, read_sitk_image, strip_image_suffix
from .labels import is_builtin_table, parse_label_names
from .segmentation import SegmentInfo, Segmentation, label_values

__all__ = ["read_segmentation", "read_segmentation_with_source"]


def _read_seg_nrrd(img, path):
    keys = set(img.GetMetaDataKeys())
    n_layers = img.GetNumberOfComponentsPerPixel()
    if img.GetDimension() != 3:
        raise GeometryError(f"segmentation {path}: expected 3-D voxels (with optional layers), got {img.GetDimension()}-D")
    arr = array_from_sitk(img)  # (z, y, x) or (z, y, x, L), ITK's buffer without a copy
    layers = arr[np.newaxis] if n_layers == 1 else np.moveaxis(arr, -1, 0)
    grid = Grid(arr.shape[:3], img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    segments = []
    i = 0
    while f"Segment{i}_Name" in keys or f"Segment{i}_ID" in keys:
        get = lambda k, d="", i=i: img.GetMetaData(f"Segment{i}_{k}") if f"Segment{i}_{k}" in keys else d  # noqa: E731
        name = get("Name") or get("ID")
        try:
            color = tuple(float(c) for c in get("Color", "0.5 0.5 0.5").split()[:3])
            layer = int(get("Layer", "0") or 0)
            label = int(get("LabelValue", "1") or 1)
        except ValueError:
            raise InputError(f"segmentation {path}: malformed metadata for Segment{i} ({name!r})") from None
        segments.append(SegmentInfo(name, get("ID") or name, color, layer, label))
        i += 1
    if not segments:
        raise InputError(f"segmentation {path}: a .seg.nrrd without Segment0_Name metadata")
    if layers.dtype.kind not in "ui":
        layers = layers.astype(np.uint16 if layers.max() > 255 else np.uint8)
    return Segmentation(layers, grid, segments, source=str(path))


def _read_mask_folder(path):
    """A folder of mask images, one segment each (named after the file), read one mask at a time:
    the grid is chosen from the headers (the finest; the first of equals, so no detail is lost),
    then each mask is read, checked, brought to it and packed into the segmentation's layers
    before the next is read (a folder of 100 CT-sized masks never holds 100 images at once)."""
    files = sorted(
        f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES) and not f.lower().endswith(".hdr")
    )
    if not files:
        raise InputError(f"segmentation folder {path}: no mask images ({', '.join(IMAGE_SUFFIXES)}) in it")
    stems = {}
    for f in files:
        stems.setdefault(strip_image_suffix(f), []).append(f)
    twice = [names for names in stems.values() if len(names) > 1]
    if twice:
        raise InputError(f"segmentation folder {path}: {' and '.join(twice[0])} would both be segment "
                         f"{strip_image_suffix(twice[0][0])!r}; keep one file per segment")
    grids = [_header_grid(os.path.join(path, f), f"mask {f}") for f in files]
    grid = min((g for g in grids if g is not None), key=lambda g: g.voxel_volume_ml, default=None)
    if grid is None:  # no header read: reading the first file says why
        read_image(os.path.join(path, files[0]), what=f"mask {files[0]}")
        raise InputError(f"segmentation folder {path}: none of its files is a 3-D image")

    def masks():
        for f in files:
            vol = read_image(os.path.join(path, f), what=f"mask {f}")
            _check_binary(vol.array, os.path.join(path, f))
            yield strip_image_suffix(f), resample_mask(vol.array != 0, vol.grid, grid)

    return Segmentation.from_masks(masks(), grid, source=str(path))


def _header_grid(path, what):
    """The Grid of an image file from its header alone; None when the header is not a 3-D image's
    (reading the file then says what is wrong)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError:
        return None
    if reader.GetDimension() != 3:
        return None
    return Grid(tuple(int(n) for n in reversed(reader.GetSize())), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def _check_binary(values, path):
    """Refuse a mask with more than 0 and one other value (as ``np.unique`` would count them, without
    sorting the image: one pass, the distinct values counted only for the message)."""
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return
    first = nonzero.flat[0]
    several = not np.all(nonzero == first)
    if several or (first < 0 and nonzero.size < values.size):  # sorted values [v, 0, ...]: v is not 0
        found = np.unique(values).size
        raise InputError(f"mask {path}: a binary mask (0 and one other value) is expected, found {found} values")


def read_segmentation_with_source(path, label_names=None, *, reference=None, reference_for_uid="", series_uids=()):
    """(Segmentation, DicomSeries or None): :func:`read_segmentation`, also saying which DICOM series
    (SEG or RT Structure Set) the segments came from.

    reference : Grid of the CT, the voxels an RT Structure Set is drawn on (else its own 1 mm lattice);
    reference_for_uid : the CT's FrameOfReferenceUID (checked against the RT Structure Set's);
    series_uids : to choose a SEG or RTSTRUCT in a folder holding several.
    """
    check_exists(path, "segmentation")
    has_masks = os.path.isdir(path) and any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(path))
    if not has_masks and is_dicom_segmentation_path(path):
        return read_dicom_segments(path, reference=reference, reference_for_uid=reference_for_uid, series_uids=series_uids)
    return read_segmentation(path, label_names), None


def read_segmentation(path, label_names=None):
    """Read segments from a .seg.nrrd, a label-map image or a folder of mask images
    (DICOM SEG and RT Structure Sets: :func:`read_segmentation_with_source`).

    Parameters
    ----------
    path : str
    label_names : None, dict {value: name}, JSON path, 'v=name,...' text or 'totalsegmentator';
        used for label maps (of the built-in table, only the labels present in the map become
        segments).  Without it a label map's segments are named 'label <v>'; a JSON
        file next to the label map with the same stem (``seg.nii.gz`` -> ``seg.json``) is used
        when present.
    """
    check_exists(path, "segmentation")
    if os.path.isdir(path):
        if not any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(path)):
            raise InputError(f"segmentation folder {path}: no mask images in it")
        return _read_mask_folder(path)
    img = read_sitk_image(path, "segmentation")
    if "Segment0_Name" in img.GetMetaDataKeys() or "Segment0_ID" in img.GetMetaDataKeys():
        return _read_seg_nrrd(img, path)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError(
            f"segmentation {path}: a 3-D label map is expected, got {img.GetDimension()}-D with "
            f"{img.GetNumberOfComponentsPerPixel()} component(s) and no Slicer segment metadata"
        )
    names = parse_label_names(label_names)
    builtin_table = is_builtin_table(label_names)
    if names is None:
        stem = strip_image_suffix(path)
        if os.path.isfile(stem + ".json"):
            names = parse_label_names(stem + ".json")
    vol = volume_from_sitk(img)
    if builtin_table:
        # A built-in table lists every class its tool can output; a scan holds only some of them
        # (e.g. no upper lung lobes on an abdominal CT).  Classes absent from this map are not segments.
        present = label_values(vol.array)
        names = {v: n for v, n in names.items() if v in present}
    return Segmentation.from_labelmap(vol.array, vol.grid, names, source=str(path))
