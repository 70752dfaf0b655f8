"""DICOM RT Structure Sets: planar contours rasterised into segments.

The lattice
    The voxels of the referenced CT (its spacing, axes and voxel positions), extended or cropped to
    cover every contour with a margin, so that no structure is cut at the CT's edge (the "grid
    cut-off" of some DVH tools).  Without a CT: the contours' own planes (slices at the contour
    spacing) with ``spacing_mm`` (1 mm) in the plane.

Between planes
    A closed planar contour stands for the slab half-way to its neighbouring planes (the usual
    reading of DICOM contours): every slice of the lattice takes the contours of the nearest plane
    within half the structure's plane spacing.  Nothing is interpolated between planes.

In the plane
    All the contours of a structure on one plane are filled together with the even-odd rule, so an
    inner contour is a hole, a contour inside the hole an island again, and keyhole contours work
    too.  Each voxel is sampled at ``SUBSAMPLES`` x ``SUBSAMPLES`` points and belongs to the
    structure when at least half of it is inside.  A plane whose contours cover no voxel by half
    (a structure smaller than a voxel) keeps its most-covered voxel: a tiny structure is never
    lost, and a note says so.

Accuracy (tests on analytic shapes, 1 x 1 x 2.5 mm lattice): a 40 mm sphere within 1 % of its
volume, a ring with a hole within 2 %, a 3 mm sphere kept, within 30 % of its contours' volume.
"""

import os

import numpy as np

from ..errors import GeometryError, InputError
from ..volume import Grid
from .dicomseries import require_pydicom
from .segmentation import Segmentation

__all__ = ["read_rtstruct", "rtstruct_rois", "rasterise_rois", "iter_rasterised_rois", "lattice_for_contours", "fill_polygons",
           "SUBSAMPLES"]

#: Sub-samples per voxel edge for the in-plane fill.
SUBSAMPLES = 4
#: Contour points of one plane may scatter this far (in slices) off their plane.
PLANE_TOLERANCE = 0.05
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def rtstruct_rois(ds):
    """The ROIs of an RT Structure Set dataset.

    Returns
    -------
    list of dicts: number, name, color (r, g, b in [0, 1] or None), contours (list of (N, 3) LPS mm
    arrays of CLOSED_PLANAR contours), skipped (count of other contour types).
    """
    names = {int(r.ROINumber): str(r.get("ROIName", "") or f"ROI {r.ROINumber}") for r in ds.get("StructureSetROISequence") or []}
    rois = []
    for item in ds.get("ROIContourSequence") or []:
        number = int(item.ReferencedROINumber)
        color = item.get("ROIDisplayColor")
        contours, skipped = [], 0
        for c in item.get("ContourSequence") or []:
            pts = np.asarray([float(v) for v in c.get("ContourData") or []], float).reshape(-1, 3)
            if str(c.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR" or len(pts) < 3:
                skipped += 1
                continue
            contours.append(pts)
        rois.append({"number": number, "name": names.get(number, f"ROI {number}"),
                     "color": tuple(float(v) / 255.0 for v in color) if color else None, "contours": contours,
                     "skipped": skipped})
    return rois


def lattice_for_contours(contours, reference=None, spacing_mm=1.0, margin=2):
    """The Grid the contours are drawn on (see the module docstring)."""
    pts = np.concatenate(contours)
    if reference is not None:
        ijk = np.c_[pts, np.ones(len(pts))] @ reference.lps_to_ijk.T
        lo = np.floor(ijk[:, :3].min(axis=0)).astype(int) - margin
        hi = np.ceil(ijk[:, :3].max(axis=0)).astype(int) + margin
        origin = reference.ijk_to_lps @ np.array([lo[0], lo[1], lo[2], 1.0])
        shape = (hi[2] - lo[2] + 1, hi[1] - lo[1] + 1, hi[0] - lo[0] + 1)
        return Grid(shape, reference.spacing_mm, tuple(origin[:3]), reference.direction)
    if abs(abs(_plane_normal(contours[0])[2]) - 1) > 1e-3:
        raise GeometryError("RT Structure Set: contours that are not axial need a CT (--ct) to be drawn on")
    zs = np.unique(np.round([c[0, 2] for c in contours], 3))
    dz = float(np.median(np.diff(zs))) if len(zs) > 1 else spacing_mm
    lo, hi = pts.min(axis=0) - margin * spacing_mm, pts.max(axis=0) + margin * spacing_mm
    shape = (int(round((zs[-1] - zs[0]) / dz)) + 1 + 2 * margin, int(np.ceil((hi[1] - lo[1]) / spacing_mm)) + 1,
             int(np.ceil((hi[0] - lo[0]) / spacing_mm)) + 1)
    return Grid(shape, (spacing_mm, spacing_mm, dz), (lo[0], lo[1], zs[0] - margin * dz))


def _plane_normal(pts):
    centred = pts - pts.mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)[2][-1]


def _crossings(polygons, n, n_rows):
    """(sub-row index, x) of every crossing of a polygon edge with a sub-row centre line."""
    x0 = np.concatenate([p[:, 0] for p in polygons])
    y0 = np.concatenate([p[:, 1] for p in polygons])
    x1 = np.concatenate([np.roll(p[:, 0], -1) for p in polygons])
    y1 = np.concatenate([np.roll(p[:, 1], -1) for p in polygons])
    # rows r with y_lo <= y_r < y_hi, where y_r = -0.5 + (r + 0.5) / n (a vertex on a row counts once)
    r_lo = np.clip(np.ceil((np.minimum(y0, y1) + 0.5) * n - 0.5).astype(np.int64), 0, n_rows)
    r_hi = np.clip(np.ceil((np.maximum(y0, y1) + 0.5) * n - 0.5).astype(np.int64), 0, n_rows)
    counts = np.maximum(r_hi - r_lo, 0)
    edge = np.repeat(np.arange(len(x0)), counts)
    starts = np.cumsum(counts) - counts
    r = r_lo[edge] + (np.arange(counts.sum()) - starts[edge])
    y = -0.5 + (r + 0.5) / n
    x = x0[edge] + (y - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    return r, x


def fill_polygons(polygons, shape, subsamples=SUBSAMPLES):
    """Fraction of each pixel inside the polygons, even-odd rule over all of them.

    Parameters
    ----------
    polygons : list of (N, 2) arrays of (i, j) pixel coordinates (column, row; pixel centres at
        integers).
    shape : (ny, nx) of the plane.

    Returns
    -------
    (ny, nx) float32 array of covered fractions in [0, 1].
    """
    ny, nx = shape
    n = subsamples
    out = np.zeros((ny, nx), np.float32)
    allpts = np.concatenate(polygons)
    i0, j0 = (max(int(np.floor(v)) - 1, 0) for v in allpts.min(axis=0))
    i1, j1 = (int(np.ceil(v)) + 2 for v in allpts.max(axis=0))
    i1, j1 = min(i1, nx), min(j1, ny)
    if i1 <= i0 or j1 <= j0:
        return out
    wy, wx = j1 - j0, i1 - i0
    r, x = _crossings([p - (i0, j0) for p in polygons], n, wy * n)
    col = np.clip(np.ceil((x + 0.5 - 0.5 / n) * n).astype(np.int64), 0, wx * n)  # first sub-column right of x
    toggles = np.zeros((wy * n, wx * n + 1), np.uint8)
    np.add.at(toggles, (r, col), 1)
    # parity of the crossings left of each sub-sample (a uint8 sum wraps at 256, which keeps the parity)
    inside = np.bitwise_and(np.cumsum(toggles[:, :-1], axis=1, dtype=np.uint8), 1)
    per_row = inside.reshape(wy * n, wx, n).sum(axis=2, dtype=np.uint8)  # two one-axis sums: much faster than one over (1, 3)
    out[j0:j1, i0:i1] = per_row.reshape(wy, n, wx).sum(axis=1, dtype=np.uint8) / np.float32(n * n)
    return out


def _planes(contours, grid, name):
    """{plane position in slices (k, float): [(N, 2) arrays of (i, j)]} of one ROI on ``grid``."""
    planes = {}
    to_ijk = grid.lps_to_ijk
    for pts in contours:
        ijk = (np.c_[pts, np.ones(len(pts))] @ to_ijk.T)[:, :3]
        k = ijk[:, 2]
        if np.ptp(k) > PLANE_TOLERANCE * 2:
            raise GeometryError(f"RT Structure Set ROI {name!r}: a contour is not parallel to the slices of the grid it "
                                f"is drawn on (it spans {np.ptp(k):.2f} slices); oblique contours are not supported")
        planes.setdefault(round(float(k.mean()), 3), []).append(ijk[:, :2])
    return planes


def _rasterise_roi(contours, grid, name, notes):
    """(Z, Y, X) bool mask of one ROI on ``grid``."""
    planes = _planes(contours, grid, name)
    ks = np.array(sorted(planes))
    half = (float(np.median(np.diff(ks))) if len(ks) > 1 else 1.0) / 2.0
    mask = np.zeros(grid.shape, bool)
    filled, tiny = {}, 0
    for k in range(grid.shape[0]):
        nearest = ks[np.argmin(np.abs(ks - k))]
        if not (-half < k - nearest <= half + 1e-9):  # each slice belongs to one plane's slab
            continue
        if nearest not in filled:
            cover = fill_polygons(planes[nearest], grid.shape[1:])
            plane = cover >= 0.5
            if not plane.any() and cover.max() > 0:
                plane[np.unravel_index(np.argmax(cover), cover.shape)] = True
                tiny += 1
            filled[nearest] = plane
        mask[k] |= filled[nearest]
    if tiny:
        notes.append(f"RT Structure Set ROI {name!r}: {tiny} contour plane(s) smaller than half a voxel kept as their "
                     "most-covered voxel (a structure this small is mostly partial volume)")
    return mask


def rasterise_rois(rois, grid, notes):
    """{name: (Z, Y, X) bool mask} and {name: color} of the ROIs with contours, on ``grid``."""
    colors = {}
    masks = dict(iter_rasterised_rois(rois, grid, notes, colors))
    return masks, colors


def iter_rasterised_rois(rois, grid, notes, colors):
    """(name, (Z, Y, X) bool mask) of each ROI with contours, on ``grid``, one at a time (a mask can
    be packed into a segmentation and dropped before the next is drawn); a repeated name gets
    " (2)", " (3)"...; each ROI's colour goes into ``colors`` before its mask is given."""
    names = set()
    for roi in rois:
        name = roi["name"]
        if roi["skipped"]:
            notes.append(f"RT Structure Set ROI {name!r}: {roi['skipped']} contour(s) that are not CLOSED_PLANAR ignored")
        if not roi["contours"]:
            notes.append(f"RT Structure Set ROI {name!r} has no closed contours and is left out")
            continue
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name} ({n})", n + 1
        names.add(unique)
        mask = _rasterise_roi(roi["contours"], grid, name, notes)
        if roi["color"] is not None:
            colors[unique] = roi["color"]
        yield unique, mask


def _check_frame_of_reference(ds, reference_for_uid, notes):
    refs = [str(r.FrameOfReferenceUID) for r in ds.get("ReferencedFrameOfReferenceSequence") or [] if "FrameOfReferenceUID" in r]
    if reference_for_uid and refs and reference_for_uid not in refs:
        raise GeometryError(f"RT Structure Set: its frame of reference ({refs[0]}) is not the CT's ({reference_for_uid}); "
                            "the contours would land in the wrong place")
    if not reference_for_uid:
        notes.append("RT Structure Set drawn on " + ("the CT's voxels (frame of reference not checked: the CT is not DICOM)"
                                                    if refs else "its own lattice"))


def read_rtstruct(path, reference=None, *, reference_for_uid="", spacing_mm=1.0):
    """Segments from an RT Structure Set file.

    Parameters
    ----------
    path : the RTSTRUCT file.
    reference : Grid of the CT the contours were drawn on (its voxel lattice is used), or None.
    reference_for_uid : the CT's FrameOfReferenceUID when it is DICOM (checked against the RTSTRUCT's).
    spacing_mm : in-plane spacing without a reference.

    Returns
    -------
    Segmentation (names and colours of the ROIs; notes on skipped or tiny contours).
    """
    pydicom = require_pydicom("reading an RT Structure Set")
    ds = pydicom.dcmread(str(path))
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise InputError(f"segmentation {path}: a DICOM {ds.get('Modality', '?')} object, not an RT Structure Set")
    rois = rtstruct_rois(ds)
    contours = [c for r in rois for c in r["contours"]]
    if not contours:
        raise InputError(f"segmentation {path}: the RT Structure Set holds no closed planar contours")
    notes = []
    _check_frame_of_reference(ds, reference_for_uid, notes)
    grid = lattice_for_contours(contours, reference, spacing_mm)
    colors = {}  # filled as the ROIs are drawn, one at a time
    seg = Segmentation.from_masks(iter_rasterised_rois(rois, grid, notes, colors), grid, colors=colors,
                                  source=os.path.abspath(str(path)))
    seg.notes.extend(notes)
    return seg
