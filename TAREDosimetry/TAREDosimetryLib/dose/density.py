"""Mass density maps (g/mL) on the activity grid: constant, or from a CT (HU -> density).

Two ways to bring the CT (or the lung segments) to the activity grid: read at the activity
voxel centres (:func:`density_map_g_ml`, point sampling), or averaged over each activity voxel
(:func:`averaged_density_map_g_ml`, with ``sampling='overlap'``): the density of an activity
voxel is then the volume average of the CT-derived densities of the CT voxels (parts) it holds,
so its mass is exact.

References
----------
Schneider W, Bortfeld T, Schlegel W, Phys Med Biol 45 (2000) 459 (HU -> density, general);
Kao YH et al., EJNMMI Res (2014) (lung: rho = (HU + 1000) / 1000).
"""

import numpy as np

from .. import physics
from ..overlap import axis_alignment, coverage, overlap_sum
from ..resample import inside_mask, resample_volume
from ..volume import BoxedArray, BoxedVolume, Volume, uniform_array

__all__ = ["density_map_g_ml", "averaged_density_map_g_ml", "MIN_DENSITY_G_ML"]

#: Densities below this (g/mL) count as air when the density comes from a CT.
MIN_DENSITY_G_ML = 0.05


def density_map_g_ml(grid, params, ct=None, lung_mask=None):
    """Mass density on ``grid``, g/mL.

    Without a CT (or with ``params.density_from_ct`` False): ``params.tissue_density_g_ml``
    everywhere and ``params.lung_density_g_ml`` in ``lung_mask``.  With a CT (HU, any grid,
    read trilinearly): the Schneider et al. 2000 table, and in ``lung_mask`` the Kao et al. 2014
    lung formula (at least ``MIN_DENSITY_G_ML``).  Air (below ``MIN_DENSITY_G_ML``) outside the
    lungs and voxels the CT does not cover take the tissue density: counts there are blur and
    scatter, and air density would turn them into meaningless doses of thousands of Gy.  Lung
    voxels (``lung_mask``) the CT does not cover take ``params.lung_density_g_ml``, as the LSF
    lung mass does (a CT that misses the lung apices must not triple their mass).

    Returns
    -------
    (Volume float32 g/mL, outside_ct (Z, Y, X) bool ndarray or None, description str)
    """
    if ct is None or not params.density_from_ct:
        if lung_mask is None or not np.any(lung_mask):
            rho = uniform_array(params.tissue_density_g_ml, grid.shape)  # no memory: one number
        else:
            rho = np.full(grid.shape, np.float32(params.tissue_density_g_ml), np.float32)
            rho[lung_mask] = np.float32(params.lung_density_g_ml)
        text = "constant (tissue %.3g g/mL, lung %.3g g/mL)" % (params.tissue_density_g_ml, params.lung_density_g_ml)
        return Volume(rho, grid=grid, name="density", unit="g/mL"), None, text
    outside_ct = ~inside_mask(ct.grid, grid)
    hu = resample_volume(ct, grid, "linear", default=-1000.0).array
    rho = physics.hu_to_density_g_ml(hu)
    if lung_mask is not None:
        rho = np.where(lung_mask, np.maximum(physics.lung_hu_to_density_g_ml(hu), MIN_DENSITY_G_ML), rho)
        air = (rho < MIN_DENSITY_G_ML) & ~lung_mask
    else:
        air = rho < MIN_DENSITY_G_ML
    rho = np.where(air | outside_ct, np.float32(params.tissue_density_g_ml), rho).astype(np.float32)
    if lung_mask is not None:
        rho[outside_ct & lung_mask] = np.float32(params.lung_density_g_ml)
    text = (
        f"CT (Schneider 2000; lung segments: Kao 2014, at least {MIN_DENSITY_G_ML} g/mL); air (< {MIN_DENSITY_G_ML} g/mL) "
        f"and voxels outside the CT: tissue density {params.tissue_density_g_ml:g} g/mL (lung voxels outside the CT: "
        f"lung density {params.lung_density_g_ml:g} g/mL)"
    )
    return Volume(rho, grid=grid, name="density", unit="g/mL"), outside_ct, text


#: CT slices converted to density at a time (bounds the memory of a large CT).
_CT_SLAB_SLICES = 32
#: Voxels whose tissue/lung mixture is computed at a time (float64 temporaries of 2 MB each).
_MIX_SLAB_VOXELS = 1 << 18


def _schneider_g_ml(hu):
    """:func:`physics.hu_to_density_g_ml` element-wise; a whole-number CT goes through a lookup
    table of its HU range (the same values, without interpolating every voxel)."""
    if np.issubdtype(hu.dtype, np.integer) and hu.size > 65536:
        lo, hi = int(hu.min()), int(hu.max())
        if hi - lo < 1 << 20:
            table = physics.hu_to_density_g_ml(np.arange(lo, hi + 1))
            return table[np.subtract(hu, lo, dtype=np.int32)]
    return physics.hu_to_density_g_ml(hu)


def _ct_density_g_ml(hu, lung, params):
    """Density of CT voxels (g/mL): Schneider 2000; in ``lung`` Kao 2014 (at least MIN_DENSITY_G_ML);
    air outside the lungs takes the tissue density (as :func:`density_map_g_ml`)."""
    rho = _schneider_g_ml(hu)
    if lung is not None and lung.any():
        rho[lung] = np.maximum(physics.lung_hu_to_density_g_ml(hu[lung]), np.float32(MIN_DENSITY_G_ML))
        air = rho < MIN_DENSITY_G_ML
        air &= ~lung
    else:
        air = rho < MIN_DENSITY_G_ML
    rho[air] = np.float32(params.tissue_density_g_ml)
    return rho


def _ct_average_on_grid(ct, grid, params, lung_mask_ct):
    """(sum over CT voxels of rho |B_ct ∩ B_j| / |B_j|, covered fraction of each voxel j), full size."""
    total = np.zeros(grid.shape, np.float64)
    for z0 in range(0, ct.shape[0], _CT_SLAB_SLICES):
        sl = slice(z0, min(ct.shape[0], z0 + _CT_SLAB_SLICES))
        lung = None if lung_mask_ct is None else lung_mask_ct[sl]
        rho = _ct_density_g_ml(np.asarray(ct.array[sl]), lung, params)
        part = overlap_sum(rho, ct.grid.crop((sl, slice(None), slice(None))), grid, dtype=np.float32)
        if part.box is not None:
            total[part.box] += part.values
    cov = coverage(ct.grid, grid)
    covered = np.zeros(grid.shape, np.float64)
    if cov.box is not None:
        covered[cov.box] = cov.values
    return total, np.clip(covered, 0.0, 1.0)


def _full_mask(grid, fraction):
    """(Z, Y, X) bool on ``grid``: voxels at least half inside (a full array or a (box, values) result)."""
    box, f = _box_and_values(grid, fraction)
    out = np.zeros(grid.shape, bool)
    if box is not None:
        out[box] = f >= 0.5
    return out


def _tissue_and_lung_g_ml(grid, params, lung_fraction):
    """Density Volume without a CT: tissue, and lung in proportion to each voxel's lung fraction
    (float64 per slab of planes, stored float32) on the lung fraction's box only
    (:class:`~TAREDosimetryLib.volume.BoxedVolume`: the tissue density outside it, no full-size
    array); without lungs one number (:func:`uniform_array`).  ``lung_fraction``: a (Z, Y, X)
    array, or a result with ``box`` and ``values`` (the fractions on a box of the grid, 0 outside)."""
    box, f = _box_and_values(grid, lung_fraction)
    if box is None or not np.any(f):
        return Volume(uniform_array(params.tissue_density_g_ml, grid.shape), grid=grid, name="density", unit="g/mL")
    inside = np.empty(f.shape, np.float32)
    step = max(1, _MIX_SLAB_VOXELS // max(1, f.shape[1] * f.shape[2]))
    for z0 in range(0, f.shape[0], step):
        part = f[z0:z0 + step].astype(np.float64)
        inside[z0:z0 + step] = params.tissue_density_g_ml * (1.0 - part) + params.lung_density_g_ml * part
    return BoxedVolume(BoxedArray(params.tissue_density_g_ml, box, inside, grid.shape), grid, name="density", unit="g/mL")


def _box_and_values(grid, fraction):
    """(box, values) of a fraction given as a full array or as a (box, values) result; (None, None) when absent."""
    if fraction is None:
        return None, None
    if hasattr(fraction, "box"):
        return (None, None) if fraction.box is None else (fraction.box, np.asarray(fraction.values))
    return tuple(slice(0, n) for n in grid.shape), np.asarray(fraction)


def _lung_part_outside_ct(rho, covered, grid, params, lung_fraction):
    """In place: the part of each voxel outside the CT takes the lung density for the voxel's lung
    fraction instead of the tissue density (only on the lungs' box, where a voxel is not wholly covered)."""
    box, f = _box_and_values(grid, lung_fraction)
    if box is None:
        return
    out = 1.0 - covered[box]
    if not np.any(out > 0):
        return
    rho[box] += out * f * (params.lung_density_g_ml - params.tissue_density_g_ml)


def averaged_density_map_g_ml(grid, params, ct=None, lung_fraction=None, lung_mask_ct=None):
    """Mass density on ``grid`` (g/mL) as the volume average over each voxel (exact voxel masses).

    Parameters
    ----------
    grid : Grid of the activity image.
    params : DosimetryParams (tissue and lung densities, ``density_from_ct``).
    ct : Volume in HU, optional (any grid).
    lung_fraction : (Z, Y, X) float array on ``grid``, or an OverlapResult (fractions on a box of
        ``grid``), optional: fraction of each voxel inside the lung segments (without a CT the lung
        part has ``params.lung_density_g_ml``).
    lung_mask_ct : (Z, Y, X) bool array on the CT grid, optional: the lung segments there (Kao
        formula in those CT voxels).

    Returns
    -------
    (Volume float32 g/mL, outside_ct bool ndarray (voxels the CT does not wholly cover) or None,
    description str).  Without a CT the Volume is a constant map (no lungs, :func:`uniform_array`)
    or a :class:`~TAREDosimetryLib.volume.BoxedVolume` (the tissue density outside the lungs' box):
    no full-size array either way.  The part of a voxel outside the CT takes the tissue and lung densities in
    proportion to the voxel's lung fraction (a voxel wholly outside the CT: exactly its lung and
    tissue parts, as the LSF lung mass counts lung outside the CT at the lung density).  A CT oblique
    to ``grid`` (not axis-aligned with it) is read at the voxel centres as in
    :func:`density_map_g_ml`, and the description says so.
    """
    if ct is None or not params.density_from_ct:
        text = ("constant (tissue %.3g g/mL, lung %.3g g/mL), volume-averaged over each voxel (lung fraction)"
                % (params.tissue_density_g_ml, params.lung_density_g_ml))
        return _tissue_and_lung_g_ml(grid, params, lung_fraction), None, text
    if axis_alignment(ct.grid, grid) is None:
        # An oblique CT would need every CT voxel supersampled: read it at the voxel centres instead.
        lung = None if lung_fraction is None else _full_mask(grid, lung_fraction)
        density, outside_ct, text = density_map_g_ml(grid, params, ct=ct, lung_mask=lung)
        return density, outside_ct, text + "; the CT is oblique to the activity grid: read at the voxel centres, not volume-averaged"
    total, covered = _ct_average_on_grid(ct, grid, params, lung_mask_ct)
    rho = total + (1.0 - covered) * params.tissue_density_g_ml
    _lung_part_outside_ct(rho, covered, grid, params, lung_fraction)
    rho = rho.astype(np.float32)
    text = (
        f"CT (Schneider 2000; lung segments: Kao 2014, at least {MIN_DENSITY_G_ML} g/mL; air (< {MIN_DENSITY_G_ML} g/mL) "
        f"outside the lungs: tissue density), volume-averaged over each activity voxel; the part of a voxel outside "
        f"the CT: tissue density {params.tissue_density_g_ml:g} g/mL, lung density {params.lung_density_g_ml:g} g/mL "
        "for its lung part"
    )
    return Volume(rho, grid=grid, name="density", unit="g/mL"), covered < 1.0 - 1e-6, text
