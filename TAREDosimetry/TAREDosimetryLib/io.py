"""Reading and writing images and segmentations (SimpleITK at the edge of the engine).

Supported inputs
----------------
Images (SPECT, PET, CT): NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd)
and DICOM series folders.  Segmentations: 3D Slicer ``.seg.nrrd`` (one or several layers,
shared layers, overlapping segments), label-map images with a {label: name} table (JSON file,
``value=name`` pairs, or the built-in ``totalsegmentator`` table) and folders of binary mask
images (one segment per file, named after the file).

Everything read is converted to the engine's :class:`~TAREDosimetryLib.volume.Volume`
convention: arrays (z, y, x), spacing/origin (x, y, z), LPS physical space.
"""

import json
import os

import numpy as np
import SimpleITK as sitk

from .errors import GeometryError, InputError
from .segmentation import SegmentInfo, Segmentation
from .volume import Grid, Volume

__all__ = [
    "IMAGE_SUFFIXES",
    "TOTALSEGMENTATOR_LABELS",
    "read_image",
    "write_image",
    "read_segmentation",
    "parse_label_names",
    "strip_image_suffix",
    "volume_to_sitk",
    "volume_from_sitk",
    "resample_volume",
    "resample_mask",
    "inside_mask",
]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".img", ".hdr")
_SUFFIXES_LONGEST_FIRST = tuple(sorted(IMAGE_SUFFIXES, key=len, reverse=True))

#: TotalSegmentator "total" task, classes 1-14 (the ones met in liver dosimetry).
TOTALSEGMENTATOR_LABELS = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach",
    7: "pancreas", 8: "adrenal_gland_right", 9: "adrenal_gland_left", 10: "lung_upper_lobe_left",
    11: "lung_lower_lobe_left", 12: "lung_upper_lobe_right", 13: "lung_middle_lobe_right",
    14: "lung_lower_lobe_right",
}


def strip_image_suffix(name):
    """``name`` (a file name or path) without its image suffix ('seg.nii.gz' -> 'seg'), any case."""
    name = str(name)
    for suf in _SUFFIXES_LONGEST_FIRST:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


# -- SimpleITK <-> Volume ---------------------------------------------------------------------
def volume_from_sitk(image, name="", unit=""):
    """Volume from a 3-D scalar SimpleITK image (array copied out of ITK's buffer)."""
    arr = sitk.GetArrayFromImage(image)
    return Volume(arr, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), name=name, unit=unit)


def _with_geometry(img, grid):
    """``img`` with the spacing, origin and direction of ``grid``."""
    img.SetSpacing(grid.spacing_mm)
    img.SetOrigin(grid.origin_mm)
    img.SetDirection(grid.direction)
    return img


def volume_to_sitk(volume, dtype=None):
    arr = np.asarray(volume.array if dtype is None else volume.array.astype(dtype, copy=False))
    return _with_geometry(sitk.GetImageFromArray(arr), volume.grid)


def _grid_reference(grid, pixel=sitk.sitkFloat32):
    return _with_geometry(sitk.Image(int(grid.shape[2]), int(grid.shape[1]), int(grid.shape[0]), pixel), grid)


def resample_volume(volume, grid, interpolation="linear", default=0.0):
    """Values of ``volume`` read at the voxel centres of ``grid`` (float32).

    interpolation : 'linear' or 'nearest'.  Points outside ``volume`` get ``default``.
    """
    if volume.grid.same_as(grid):
        return Volume(np.asarray(volume.array, dtype=np.float32), grid=grid, name=volume.name, unit=volume.unit)
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interpolation]
    src = volume_to_sitk(volume, dtype=np.float32)
    out = sitk.Resample(src, _grid_reference(grid), sitk.Transform(), interp, float(default), sitk.sitkFloat32)
    return Volume(sitk.GetArrayFromImage(out), grid=grid, name=volume.name, unit=volume.unit)


def resample_mask(mask, src_grid, grid):
    """A boolean mask on ``src_grid`` read (nearest neighbour) at the voxel centres of ``grid``."""
    if src_grid.same_as(grid):
        return np.asarray(mask, dtype=bool)
    img = _with_geometry(sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8)), src_grid)
    out = sitk.Resample(img, _grid_reference(grid, sitk.sitkUInt8), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayViewFromImage(out).astype(bool)


def inside_mask(src_grid, grid):
    """(Z, Y, X) bool on ``grid``: the voxel centres that lie inside ``src_grid``'s voxels (its
    field of view), read as :func:`resample_mask` reads; only a uint8 copy of ``src_grid``'s size."""
    return resample_mask(np.ones(src_grid.shape, np.uint8), src_grid, grid)


# -- images -----------------------------------------------------------------------------------
def _check_exists(path, what):
    if path is None or str(path) == "":
        raise InputError(f"{what}: no path given")
    if not os.path.exists(path):
        raise InputError(f"{what}: file not found: {path}")


def _read_dicom_series(folder, what):
    reader = sitk.ImageSeriesReader()
    try:
        ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read the DICOM folder {folder}: {exc}") from None
    if not ids:
        raise InputError(f"{what}: {folder} is a folder but holds no DICOM series (nor is it a folder of masks here)")
    # The series with the most files is taken; name the others so the user knows.
    files_by_id = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in ids}
    sid = max(files_by_id, key=lambda s: len(files_by_id[s]))
    reader.SetFileNames(files_by_id[sid])
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{what}: cannot read DICOM series {sid} in {folder}: {exc}") from None
    unit = ""
    try:
        if reader.HasMetaDataKey(0, "0054|1001"):
            unit = reader.GetMetaData(0, "0054|1001").strip()
    except RuntimeError:
        pass
    return img, unit


def read_image(path, what="image"):
    """Read a 3-D scalar image as a float32 :class:`Volume`.

    Parameters
    ----------
    path : str, a file (.nii[.gz], .nrrd, .mha, ...) or a DICOM series folder.
    what : str, how error messages name the input ('SPECT image', 'CT image', ...).

    Raises
    ------
    InputError : missing or unreadable file, not 3-D, several components.
    """
    _check_exists(path, what)
    unit = ""
    if os.path.isdir(path):
        img, unit = _read_dicom_series(path, what)
    else:
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
            raise InputError(f"{what}: cannot read {path} as an image ({first})") from None
    if img.GetDimension() != 3:
        size = "x".join(str(s) for s in img.GetSize())
        raise GeometryError(f"{what}: {path} is {img.GetDimension()}-D ({size}); a 3-D image is expected")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{what}: {path} has {img.GetNumberOfComponentsPerPixel()} components per voxel (4-D or vector image); "
            "a 3-D scalar image is expected"
        )
    if min(img.GetSize()) < 1:
        raise GeometryError(f"{what}: {path} is empty ({img.GetSize()})")
    vol = volume_from_sitk(img, name=os.path.basename(os.path.normpath(str(path))), unit=unit)
    return Volume(vol.array.astype(np.float32, copy=False), grid=vol.grid, name=vol.name, unit=unit)


def write_image(volume, path, dtype=np.float32, compress=True):
    """Write a Volume (any format SimpleITK writes, chosen by the suffix)."""
    sitk.WriteImage(volume_to_sitk(volume, dtype=dtype), str(path), useCompression=compress)


# -- segmentations ----------------------------------------------------------------------------
def parse_label_names(spec):
    """{label value: name} from a JSON file, 'v=name,v=name' text, a dict, or 'totalsegmentator'."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        items = spec.items()
    elif str(spec).strip().lower() in ("totalsegmentator", "total"):
        return dict(TOTALSEGMENTATOR_LABELS)
    elif os.path.isfile(str(spec)):
        try:
            with open(spec, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InputError(f"label table {spec}: not valid JSON ({exc})") from None
        if isinstance(data, list):  # [{"value": 5, "name": "liver"}, ...]
            try:
                data = {d["value"]: d["name"] for d in data}
            except (KeyError, TypeError):
                raise InputError(f"label table {spec}: a list must hold objects with 'value' and 'name'") from None
        if not isinstance(data, dict):
            raise InputError(f"label table {spec}: expected an object {{\"5\": \"liver\", ...}}")
        items = data.items()
    else:
        items = []
        for part in str(spec).split(","):
            if "=" not in part:
                raise InputError(f"label names: expected VALUE=NAME pairs or a JSON file, got {part!r} in {spec!r}")
            items.append(tuple(part.split("=", 1)))
    out = {}
    for value, name in items:
        try:
            v = int(str(value).strip())
        except ValueError:
            raise InputError(f"label names: label value {value!r} is not a whole number") from None
        if v <= 0:
            raise InputError(f"label names: label value must be positive, got {v}")
        out[v] = str(name).strip()
    return out


def _read_seg_nrrd(img, path):
    keys = set(img.GetMetaDataKeys())
    n_layers = img.GetNumberOfComponentsPerPixel()
    if img.GetDimension() != 3:
        raise GeometryError(f"segmentation {path}: expected 3-D voxels (with optional layers), got {img.GetDimension()}-D")
    arr = sitk.GetArrayFromImage(img)  # (z, y, x) or (z, y, x, L)
    layers = arr[np.newaxis] if n_layers == 1 else np.moveaxis(arr, -1, 0)
    grid = Grid(arr.shape[:3], img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    segments = []
    i = 0
    while f"Segment{i}_Name" in keys or f"Segment{i}_ID" in keys:
        get = lambda k, d="": img.GetMetaData(f"Segment{i}_{k}") if f"Segment{i}_{k}" in keys else d  # noqa: E731
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
    files = sorted(
        f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES) and not f.lower().endswith(".hdr")
    )
    if not files:
        raise InputError(f"segmentation folder {path}: no mask images ({', '.join(IMAGE_SUFFIXES)}) in it")
    read = {}
    for f in files:
        name = strip_image_suffix(f)
        vol = read_image(os.path.join(path, f), what=f"mask {f}")
        values = np.unique(vol.array)
        if values.size > 2 or (values.size == 2 and values[0] != 0):
            raise InputError(f"mask {os.path.join(path, f)}: a binary mask (0 and one other value) is expected, found {values.size} values")
        read[name] = vol
    # Masks on different grids are brought to the finest one (the first of equals), so no detail is lost.
    grid = min((v.grid for v in read.values()), key=lambda g: g.voxel_volume_ml)
    masks = {name: resample_mask(v.array != 0, v.grid, grid) for name, v in read.items()}
    return Segmentation.from_masks(masks, grid, source=str(path))


def read_segmentation(path, label_names=None):
    """Read segments from a .seg.nrrd, a label-map image or a folder of mask images.

    Parameters
    ----------
    path : str
    label_names : None, dict {value: name}, JSON path, 'v=name,...' text or 'totalsegmentator';
        used for label maps (of the built-in table, only the labels present in the map become
        segments).  Without it a label map's segments are named 'label <v>'; a JSON
        file next to the label map with the same stem (``seg.nii.gz`` -> ``seg.json``) is used
        when present.
    """
    _check_exists(path, "segmentation")
    if os.path.isdir(path):
        if not any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(path)):
            raise InputError(f"segmentation folder {path}: no mask images in it")
        return _read_mask_folder(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise InputError(f"segmentation: cannot read {path} ({first})") from None
    if "Segment0_Name" in img.GetMetaDataKeys() or "Segment0_ID" in img.GetMetaDataKeys():
        return _read_seg_nrrd(img, path)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError(
            f"segmentation {path}: a 3-D label map is expected, got {img.GetDimension()}-D with "
            f"{img.GetNumberOfComponentsPerPixel()} component(s) and no Slicer segment metadata"
        )
    names = parse_label_names(label_names)
    builtin_table = isinstance(label_names, str) and label_names.strip().lower() in ("totalsegmentator", "total")
    if names is None:
        stem = strip_image_suffix(path)
        if os.path.isfile(stem + ".json"):
            names = parse_label_names(stem + ".json")
    vol = volume_from_sitk(img)
    if builtin_table:
        # A built-in table lists every class its tool can output; a scan holds only some of them
        # (e.g. no upper lung lobes on an abdominal CT).  Classes absent from this map are not segments.
        present = set(np.unique(vol.array).tolist())
        names = {v: n for v, n in names.items() if v in present}
    return Segmentation.from_labelmap(vol.array, vol.grid, names, source=str(path))
