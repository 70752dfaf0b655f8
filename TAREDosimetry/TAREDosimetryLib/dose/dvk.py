"""Dose-voxel-kernel (DVK) dose maps: FFT convolution of the activity with Y-90 voxel kernels.

Method (PHYSICS.md, "Dose-voxel-kernel (DVK) convolution" and "Consistency with LDM")
-------------------------------------------------------------------------------------
1. Energy emitted in each voxel as local deposition counts it: ``Q_j = K A_j`` (J, with
   ``K`` in Gy kg/GBq = J/GBq).
2. Energy deposited in each voxel: ``E = f (*) Q``, where ``f`` is the voxel kernel as energy
   fractions normalised to 1 over its support (:func:`kernels.voxel_energy_fractions`), so the
   total energy is ``K sum A`` exactly (less what leaves the image), whatever mean beta energy
   ``K`` implies.  In a large uniform region the dose equals the LDM dose.
3. Dose: ``D_i = E_i / m_i`` with ``m_i = rho_i V`` the voxel mass.

Density correction (density map given): each *source* voxel uses the kernel of its density
class, scaled as ``d_rho(r) = rho^2 d_water(rho r)``: voxels below
:data:`LOW_DENSITY_CLASS_G_ML` (lung) use the kernel of their activity-weighted mean density
(at least :data:`MIN_KERNEL_DENSITY_G_ML`), the other voxels that of their own mean density; the
classes are convolved in turn, each on the box its activity reaches, and added into the
whole-grid class's result (one spectrum of the grid in memory).  Deposited energy is divided by
the *local* mass (3.), i.e. the soft-tissue kernel dose is scaled by rho_tissue / rho_i.  This
conserves energy voxel by voxel and reproduces LDM in the interior of any uniform region, lung
included (so lung doses compare with LDM-based lung limits).  Near a tissue/lung interface
the energy that a tissue source sends into lung is deposited with the tissue kernel's range
and divided by the lung mass, which over-estimates the first millimetres of lung (the
kernel assumes a homogeneous medium: +32 % in the first lung voxel and -9 % in the last liver
voxel of a uniform-dose phantom with 3 mm voxels); ``lung_mode='ldm'`` avoids this by keeping
local deposition in the lung voxels, and keeps in each tissue source voxel the energy its
kernel would have carried into them (so energy is conserved there too).  Voxels of density <= 0 get 0 Gy (as LDM); voxels below
:data:`MIN_DOSE_DENSITY_G_ML` (air, bowel gas) are given the dose of that density, which bounds
the 1/rho artefact there (energy is not conserved in such voxels).

Convolution: zero-padded real FFTs (no wrap-around: each axis is padded to a fast length >=
n + kernel half-width, the kernel is placed wrapped around index 0), float32 data and spectra,
numpy.fft (small grids) or scipy.fft on all cores, or cupyx.scipy.fft on a GPU.  The x and y
transforms run a slab of planes at a time into one spectrum buffer, the z transform in place,
and the real output is written back into the spectrum's memory, so the memory is the spectrum
(about 4 bytes per padded voxel).  For the
symmetric voxel kernels the spectrum is real and computed directly by separable cosine sums (no
kernel FFT), a slab of planes at a time.

Axis order: activity arrays are (z, y, x), spacing (x, y, z).  The kernel is built in voxel
index space from the grid spacing, so it is right for any orthonormal direction matrix.
"""

import functools
import math
import time

import numpy as np

from . import kernels
from .backend import get_backend, next_fast_len
from ..errors import InputError
from ..params import DVK_LUNG_MODES as LUNG_MODES
from ..params import check_positive
from ..volume import BoxedArray, Volume, uniform_value, volume_values

__all__ = [
    "LOW_DENSITY_CLASS_G_ML",
    "MIN_KERNEL_DENSITY_G_ML",
    "MIN_DOSE_DENSITY_G_ML",
    "LUNG_MODES",
    "convolve_fft",
    "dvk_energy_j",
    "dvk_dose_gy",
]

#: Source voxels below this density (g/mL) form the low-density (lung) kernel class.
LOW_DENSITY_CLASS_G_ML = 0.6
#: Lowest density for which a kernel is built (its range grows as 1/rho), g/mL.
MIN_KERNEL_DENSITY_G_ML = 0.2
#: Voxels below this density (but > 0) get the dose they would have at this density, g/mL.
MIN_DOSE_DENSITY_G_ML = 0.05


def _report(progress, fraction, message):
    if progress is not None:
        progress(float(fraction), message)


# --------------------------------------------------------------------------- convolution
def _check_kernel(kernel):
    k = np.asarray(kernel)
    if k.ndim != 3 or any(s % 2 == 0 for s in k.shape):
        raise InputError(f"kernel must be a 3-D array with odd sizes (z, y, x), got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise InputError("kernel holds non-finite values")
    return k


def _is_mirror_symmetric(k):
    return all(np.array_equal(k, np.flip(k, axis=a)) for a in range(3))


def _crop_kernel(k, shape):
    """Drop kernel offsets that cannot reach any output voxel (|offset| >= n on an axis)."""
    sl = []
    for size, n in zip(k.shape, shape):
        half = size // 2
        keep = min(half, n - 1)
        sl.append(slice(half - keep, half + keep + 1))
    return k[tuple(sl)]


def _padded_shape(shape, halves):
    return tuple(next_fast_len(n + h) for n, h in zip(shape, halves))


def _symmetric_spectrum(k, padded, backend, dtype):
    """Real spectrum (rfftn layout) of a mirror-symmetric kernel placed wrapped around index 0.

    K^(f) = sum_d k(d) prod_a cos(2 pi f_a d_a / L_a), done as three small matrix products.
    """
    hz, hy, hx = (s // 2 for s in k.shape)
    octant = np.array(k[hz:, hy:, hx:], dtype=np.float64)
    for axis, half in enumerate((hz, hy, hx)):
        w = np.full(half + 1, 2.0)
        w[0] = 1.0
        shape = [1, 1, 1]
        shape[axis] = half + 1
        octant *= w.reshape(shape)
    lz, ly, lx = padded

    def cos_matrix(length, half, n_freq):
        f = np.arange(n_freq, dtype=np.float64)[:, None]
        d = np.arange(half + 1, dtype=np.float64)[None, :]
        return np.cos(2.0 * np.pi * ((f * d) % length) / length)

    cx = cos_matrix(lx, hx, lx // 2 + 1)
    cy = cos_matrix(ly, hy, ly)
    cz = cos_matrix(lz, hz, lz)
    t = np.einsum("zyx,fx->zyf", octant, cx)  # (hz+1, hy+1, Fx), small
    t = np.einsum("gy,zyf->zgf", cy, t)  # (hz+1, Ly, Fx), small
    t_dev = backend.asarray(t.reshape(hz + 1, -1).astype(dtype))
    cz_dev = backend.asarray(cz.astype(dtype))
    return cz_dev, t_dev  # the spectrum is cz @ t, (Lz, Ly * Fx): made a slab of planes at a time by the caller


#: Planes of the kernel spectrum made at a time when it multiplies a data spectrum.
_SPECTRUM_SLAB = 16


def _multiply_by_kernel_spectrum(spec, k, padded, backend, dtype):
    """``spec`` (rfftn layout) times the kernel's spectrum, in place; a mirror-symmetric kernel's
    real spectrum is made a slab of planes at a time (no second full-size spectrum)."""
    if not _is_mirror_symmetric(k):
        kspec = _kernel_spectrum(k, padded, backend, dtype)
        backend.xp.multiply(spec, kspec, out=spec)
        return spec
    cz, t = _symmetric_spectrum(k, padded, backend, dtype)
    for z0 in range(0, spec.shape[0], _SPECTRUM_SLAB):
        planes = spec[z0:z0 + _SPECTRUM_SLAB]  # a view whatever the layout (a reshape of a strided array may copy)
        planes *= (cz[z0:z0 + _SPECTRUM_SLAB] @ t).reshape(planes.shape)
    return spec


def _kernel_spectrum(k, padded, backend, dtype):
    if _is_mirror_symmetric(k):
        cz, t = _symmetric_spectrum(k, padded, backend, dtype)
        return (cz @ t).reshape(padded[0], padded[1], padded[2] // 2 + 1)
    wrapped = np.zeros(padded, dtype=dtype)
    hz, hy, hx = (s // 2 for s in k.shape)
    zi = np.arange(-hz, hz + 1) % padded[0]
    yi = np.arange(-hy, hy + 1) % padded[1]
    xi = np.arange(-hx, hx + 1) % padded[2]
    wrapped[np.ix_(zi, yi, xi)] = k
    return backend.rfftn(backend.asarray(wrapped), padded)


#: Values of a slab of planes transformed at a time where numpy.fft writes into given memory (bounds
#: the temporaries of the x and y transforms: about 1 MB each; at 4 MB they were fresh memory on every
#: slab of the MAA case, 5,000 page faults, and its transforms are as fast: 0.068 s instead of 0.073 s).
_SLAB_VALUES = 1 << 17
#: Slabs are this many times larger for scipy.fft on every core, the GPU and NumPy before 2.0, which make
#: new arrays anyway: each call starts its threads (on 300x512x512, slabs of 2^17 values took 0.93-1.17 s
#: against 0.85 s).
_NEW_MEMORY_SLAB_FACTOR = 4


def _slab(source, z0, z1):
    """Planes ``z0:z1`` of a source: an array, or a callable ``source(z0, z1)`` that makes them."""
    return source(z0, z1) if callable(source) else source[z0:z1]


def _convolve_sum(arrays, kernel_list, backend, dtype=np.float32, progress=None, shape=None, extents=None):
    """sum_c kernel_c (*) array_c, 'same' size, zero-padded; returns a NumPy array of dtype.

    ``arrays`` may hold callables ``source(z0, z1)`` returning planes z0:z1 of the array (made
    a slab at a time, never whole).  ``extents``: for each array, the index box
    ``(z0, z1, y0, y1, x0, x1)`` that holds its non-zero voxels, or None (anywhere); an array is
    convolved on that box grown by its kernel's half-width (its whole reach), clipped to the grid.

    The arrays are convolved one after the other, the smallest box first; each result is written
    into the memory of its own spectrum (:func:`_inverse`); the largest is convolved on the whole
    grid and receives the others: the memory is one spectrum of the largest box (about 4 bytes per
    padded voxel) and the smaller boxes' results, whatever the number of classes.

    ``progress(fraction, message)`` is called before each class's transforms (fraction of this
    convolution, in [0, 1)); it may raise to stop the work."""
    shape = tuple(shape) if shape is not None else arrays[0].shape
    ks = [_crop_kernel(_check_kernel(k), shape) for k in kernel_list]
    extents = [None] * len(ks) if extents is None else list(extents)
    boxes = [_reach_box(e, k.shape, shape) for e, k in zip(extents, ks)]
    order = sorted(range(len(ks)), key=lambda i: _box_voxels(boxes[i]))
    boxes[order[-1]] = _reach_box(None, None, shape)  # the largest on the whole grid: the output in its memory
    parts = []
    for n, i in enumerate(order):
        _report(progress, n / len(ks), f"FFT of density class {i + 1} of {len(ks)}")
        box_shape = tuple(s.stop - s.start for s in boxes[i])
        parts.append((boxes[i], _convolve_one(_boxed(arrays[i], boxes[i], shape), ks[i], box_shape, backend, dtype)))
    out = parts.pop()[1]
    for box, part in parts:
        out[box] += part
    del parts
    return np.ascontiguousarray(backend.to_numpy(out))


def _reach_box(extent, kernel_shape, shape):
    """Slices of the grid that a source within ``extent`` (z0, z1, y0, y1, x0, x1; None: anywhere)
    reaches through a kernel of ``kernel_shape``."""
    if extent is None:
        return tuple(slice(0, n) for n in shape)
    return tuple(slice(max(0, extent[2 * a] - kernel_shape[a] // 2), min(shape[a], extent[2 * a + 1] + kernel_shape[a] // 2))
                 for a in range(3))


def _box_voxels(box):
    return int(np.prod([s.stop - s.start for s in box]))


def _boxed(source, box, shape):
    """``source`` (array or callable of planes) restricted to ``box``; itself when the box is the grid."""
    if all(s.start == 0 and s.stop == n for s, n in zip(box, shape)):
        return source
    bz, by, bx = box
    return lambda z0, z1: _slab(source, bz.start + z0, bz.start + z1)[:, by, bx]


def _convolve_one(source, kernel, shape, backend, dtype):
    """kernel (*) source on ``shape``, zero-padded to fast sizes; the result lives in the memory of
    its spectrum (see :func:`_inverse` and :func:`_real_result`)."""
    k = _crop_kernel(kernel, shape)
    padded = _padded_shape(shape, tuple(s // 2 for s in k.shape))
    cdtype = np.complex64 if np.dtype(dtype) == np.float32 else np.complex128
    spec = backend.xp.empty((padded[0], padded[1], padded[2] // 2 + 1), dtype=cdtype)
    spec = _forward(source, spec, shape, padded, backend, dtype)
    spec = _multiply_by_kernel_spectrum(spec, k, padded, backend, dtype)
    _inverse(spec, shape, padded, backend, dtype)
    return _real_result(spec, shape, dtype)


def _real_result(buffer, shape, dtype):
    """The (Z, Y, X) real result :func:`_inverse` left at the start of ``buffer``.  A NumPy buffer
    that owns its memory is first shrunk to the result's bytes in place (``ndarray.resize``, a
    realloc: no copy), so the padding's memory goes back at once instead of living as long as the
    dose map; no view of the buffer exists at that point."""
    n = int(np.prod(shape))
    if isinstance(buffer, np.ndarray) and buffer.flags.owndata and buffer.flags.c_contiguous:
        per_item = buffer.itemsize // np.dtype(dtype).itemsize
        buffer.resize((-(-n // per_item),), refcheck=False)
    return buffer.view(dtype).reshape(-1)[:n].reshape(shape)


def _planes_per_slab(padded, backend):
    values = _SLAB_VALUES if backend.takes_out(int(np.prod(padded))) else _SLAB_VALUES * _NEW_MEMORY_SLAB_FACTOR
    return max(1, values // (padded[1] * (padded[2] // 2 + 1)))


def _forward(source, spec, shape, padded, backend, dtype):
    """rfftn of ``source`` zero-padded to ``padded``, written into ``spec`` (returned).

    Slab by slab of planes: the x transform of the data rows, then the y transform (padded),
    into the slab's planes of ``spec``; the padding planes are zeroed and the z transform is
    done in place: no full-size temporary besides ``spec``.  With numpy.fft 2.0+ the x transform
    goes into one buffer made for the first slab and the y transform straight into ``spec``:
    no new memory per slab (on a virtual machine each fresh page costs a fault of 5-40 us).
    """
    size = int(np.prod(padded))
    step = _planes_per_slab(padded, backend)
    rows_buffer = (np.empty((min(step, shape[0]), shape[1], padded[2] // 2 + 1), dtype=spec.dtype)
                   if backend.takes_out(size) else None)
    for z0 in range(0, shape[0], step):
        z1 = min(shape[0], z0 + step)
        part = backend.asarray(_slab(source, z0, z1), dtype=dtype)
        rows = backend.rfft(part, padded[2], 2, size=size, out=None if rows_buffer is None else rows_buffer[: z1 - z0])
        target = spec[z0:z1]
        planes = backend.fft(rows, padded[1], 1, size=size, out=target)
        if planes is not target:  # a library that made new memory
            target[...] = planes
        del part, rows, planes, target
    del rows_buffer
    spec[shape[0]:] = 0
    return backend.fft_in_place(spec, 0, size=size)


def _inverse(spec, shape, padded, backend, dtype):
    """Inverse of :func:`_forward` cropped to ``shape``, written into the memory of ``spec``.

    After the in-place z transform, slab by slab of planes: the y and x inverse transforms, the
    real planes stored at the start of the buffer (as ``dtype``, C order; :func:`_real_result`
    reads them).  Real plane z ends before spectral plane z + 1 starts (4 Y X < 8 Ly (Lx / 2 + 1)
    bytes a plane), so no plane is overwritten before it is read.
    """
    size = int(np.prod(padded))
    spec = backend.fft_in_place(spec, 0, inverse=True, size=size)
    out = spec.view(dtype).reshape(-1)[: int(np.prod(shape))].reshape(shape)
    step = _planes_per_slab(padded, backend)
    for z0 in range(0, shape[0], step):
        z1 = min(shape[0], z0 + step)
        rows = backend.ifft(spec[z0:z1], 1, size=size)[:, : shape[1]]
        part = backend.irfft(rows, padded[2], 2, size=size)[:, :, : shape[2]]
        out[z0:z1] = part
        del rows, part


def convolve_fft(array, kernel, backend=None, *, dtype=np.float32):
    """Convolution of a 3-D array with a 3-D kernel, output the size of ``array``.

    Same result as ``scipy.signal.fftconvolve(array, kernel, mode='same')`` for an odd-sized
    kernel (centre at the middle element), computed with zero-padded real FFTs of fast sizes.

    Parameters
    ----------
    array : (Z, Y, X) ndarray (NumPy, or CuPy with a GPU backend)
    kernel : (2 nz + 1, 2 ny + 1, 2 nx + 1) ndarray, centre at the middle
    backend : Backend or {'auto', 'cpu', 'gpu'}, optional (default 'cpu')
    dtype : numpy float dtype of the computation (float32 default; float64 for references)

    Returns
    -------
    (Z, Y, X) NumPy ndarray of ``dtype``
    """
    a = array if not isinstance(array, np.ndarray) else np.asarray(array)
    if a.ndim != 3:
        raise InputError(f"array must be 3-D (z, y, x), got shape {a.shape}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}")
    be = get_backend("cpu" if backend is None else backend)
    return _convolve_sum([a], [kernel], be, dtype)


# --------------------------------------------------------------------------- dose
def _density_input(activity_gbq, density_g_ml):
    if isinstance(density_g_ml, Volume):
        if not density_g_ml.grid.same_as(activity_gbq.grid):
            raise InputError(
                f"density_g_ml must be on the activity grid (resample it first); got shape {density_g_ml.shape}, "
                f"spacing {density_g_ml.spacing_mm} for activity shape {activity_gbq.shape}, spacing {activity_gbq.spacing_mm}"
            )
        values = volume_values(density_g_ml)
        one = uniform_value(values)
        if one is not None:
            if not (math.isfinite(one) and one > 0):
                raise InputError(f"density_g_ml must be positive, got a map of {one!r}")
            return float(np.float32(one))
        return _density_map(values)
    try:
        rho = float(density_g_ml)
    except (TypeError, ValueError):
        raise InputError(f"density_g_ml must be a number or a Volume, got {density_g_ml!r}") from None
    if not (math.isfinite(rho) and rho > 0):
        raise InputError(f"density_g_ml must be positive, got {density_g_ml!r}")
    return rho


def _density_map(values):
    """A density map's float32 values (an array, or a :class:`~TAREDosimetryLib.volume.BoxedArray`
    read a slab of planes at a time, never made whole), checked; a float when it holds one value."""
    if isinstance(values, BoxedArray):
        rho = values.astype(np.float32)
        parts = (rho.inside, rho.outside)
    else:
        rho = np.asarray(values, dtype=np.float32)
        parts = (rho,)
    if not all(np.all(np.isfinite(p)) and p.min() >= 0 for p in parts):
        raise InputError("density_g_ml holds negative or non-finite values")
    rmin, rmax = min(float(p.min()) for p in parts), max(float(p.max()) for p in parts)
    if rmin == rmax:
        if not rmin > 0:
            raise InputError(f"density_g_ml must be positive, got a map of {rmin!r}")
        return rmin
    return rho


def _kernel_density(rho_values, weights):
    """Activity-weighted mean density, rounded to 0.01 g/mL (few distinct, cached kernels)."""
    total = float(weights.sum())
    mean = float((rho_values * weights).sum() / total) if total > 0 else float(rho_values.mean())
    return round(max(mean, MIN_KERNEL_DENSITY_G_ML), 2)


def _class_kernel(spacing, kd, radius_mm):
    """(energy-fraction kernel, description) of a density class: truncated at ``radius_mm / rho``
    (water-equivalent), or at the largest radius whose box stays within the kernel size limit
    (fine voxels, low densities), which the description states with the energy held there."""
    wanted = radius_mm / min(kd, 1.0)
    r = kernels.radius_within_limit(spacing, wanted)
    f = kernels.voxel_energy_fractions(spacing, kd, radius_mm=r)
    info = {"density_g_ml": kd, "kernel_shape_zyx": list(f.shape), "radius_mm": r}
    if r < wanted:
        held = 100.0 * kernels.energy_within_mev(r, kd) / kernels.DPK_TOTAL_ENERGY_MEV
        info["truncated"] = (
            f"the DVK kernel of density {kd:g} g/mL was truncated at {r:.1f} mm (not {wanted:.1f} mm) to stay within "
            f"{kernels.MAX_KERNEL_VOXELS} voxels at {min(spacing):g} mm voxels: the point kernel deposits {held:.1f} % of "
            f"its energy within {r:.1f} mm; the rest ({100 - held:.1f} %) is deposited within the kernel (normalised), "
            "not further away"
        )
    return f, info


def _source_classes(a, rho, spacing, radius_mm):
    """[(source activity, energy-fraction kernel, description, extent)] per density class.

    A class's source is a callable ``source(z0, z1)`` making its planes (no full-size class masks
    or copies); its extent is the index box (z0, z1, y0, y1, x0, x1) of its non-zero activity
    (None for a uniform density: the whole grid)."""
    r = kernels.DEFAULT_RADIUS_MM if radius_mm is None else float(radius_mm)
    if np.isscalar(rho):
        kd = round(float(rho), 4)
        f, info = _class_kernel(spacing, kd, r)
        return [(a, f, dict(info, **{"class": "uniform"}), None)]
    out = []
    for name, low in (("tissue", False), ("low-density", True)):
        stats = _class_sums(rho, a, low)
        if stats["extent"] is None:
            continue
        kd = _kernel_density_of(stats)
        f, info = _class_kernel(spacing, kd, r)
        out.append((functools.partial(_class_planes, a, rho, low), f, dict(info, **{"class": name}), stats["extent"]))
    return out


def _class_mask(rho_planes, low):
    """The voxels of a density class in some planes: below :data:`LOW_DENSITY_CLASS_G_ML` (low) or not."""
    below = rho_planes < LOW_DENSITY_CLASS_G_ML
    return below if low else ~below


def _planes_value(rho, z0, z1):
    """The one density of planes z0:z1 of a boxed map that do not meet its box; else None."""
    return rho.value_of_planes(z0, z1) if isinstance(rho, BoxedArray) else None


def _class_planes(a, rho, low, z0, z1):
    """Planes z0:z1 of a density class's activity (0 outside the class); planes of one density
    (a boxed map outside its box) are the activity itself or zeros, with no mask or copy."""
    one = _planes_value(rho, z0, min(z1, a.shape[0]))
    if one is not None:
        return a[z0:z1] if bool(_class_mask(one, low)) else np.zeros(a[z0:z1].shape, np.float32)
    return np.where(_class_mask(rho[z0:z1], low), a[z0:z1], np.float32(0))


def _class_sums(rho, a, low):
    """Sums over a density class (``low``: the voxels below :data:`LOW_DENSITY_CLASS_G_ML`, else the
    others) for its kernel density, plane slab by slab (no full-size masks or float64 copies):
    sum rho |a|, sum |a|, sum rho, voxel count, and the extent (z0, z1, y0, y1, x0, x1) of its
    non-zero activity (None when it has none)."""
    out = {"rho_a": 0.0, "a": 0.0, "rho": 0.0, "n": 0}
    z_any, y_any, x_any = np.zeros(a.shape[0], bool), np.zeros(a.shape[1], bool), np.zeros(a.shape[2], bool)
    for z0 in range(0, a.shape[0], 16):
        m = _class_mask(rho[z0:z0 + 16], low)
        r = rho[z0:z0 + 16][m].astype(np.float64)
        w = np.abs(a[z0:z0 + 16][m]).astype(np.float64)
        out["rho_a"] += float(np.dot(r, w))
        out["a"] += float(w.sum())
        out["rho"] += float(r.sum())
        out["n"] += int(r.size)
        if np.any(w):
            m &= a[z0:z0 + 16] != 0
            z_any[z0:z0 + 16] = m.any(axis=(1, 2))
            y_any |= m.any(axis=(0, 2))
            x_any |= m.any(axis=(0, 1))
    out["extent"] = _extent(z_any, y_any, x_any)
    return out


def _extent(*flags):
    """(z0, z1, y0, y1, x0, x1) of the set flags along each axis; None when none is set."""
    if not flags[0].any():
        return None
    box = []
    for f in flags:
        idx = np.flatnonzero(f)
        box += [int(idx[0]), int(idx[-1]) + 1]
    return tuple(box)


def _kernel_density_of(stats):
    """Activity-weighted mean density of a class (:func:`_class_sums`), as :func:`_kernel_density`."""
    mean = stats["rho_a"] / stats["a"] if stats["a"] > 0 else stats["rho"] / max(stats["n"], 1)
    return round(max(mean, MIN_KERNEL_DENSITY_G_ML), 2)


def _activity_input(activity_gbq):
    if not isinstance(activity_gbq, Volume):
        raise InputError(f"activity_gbq must be a Volume, got {type(activity_gbq).__name__}")
    a = np.asarray(activity_gbq.array, dtype=np.float32)
    # One float64 sum instead of an isfinite() mask: NaN or inf anywhere makes it non-finite.
    if not math.isfinite(float(a.sum(dtype=np.float64))):
        raise InputError("activity_gbq holds non-finite values (NaN or inf)")
    return a


def _convolved_activity(a, rho, spacing, radius_mm, backend, keep_out_of=None, progress=None):
    """sum_c f_c (*) A_c (GBq deposited-equivalent per voxel), float32, and class descriptions.

    keep_out_of : (Z, Y, X) bool ndarray, optional (the lung voxels of ``lung_mode='ldm'``):
        the part of each source's kernel that falls in these voxels, ``A_c (f_c (*) mask)`` (the
        kernels are mirror-symmetric, so the convolution is the correlation), is added back to
        the source voxel itself: that energy stays in tissue instead of being lost.
    progress : callable(fraction, message), optional.
    """
    classes = _source_classes(a, rho, spacing, radius_mm)
    if not classes:
        return np.zeros(a.shape, np.float32), []
    out = _convolve_sum([c[0] for c in classes], [c[1] for c in classes], backend, np.float32, progress=progress, shape=a.shape,
                        extents=[c[3] for c in classes])
    if keep_out_of is not None:
        mask = (lambda z0, z1: keep_out_of[z0:z1].astype(np.float32))  # noqa: E731
        for source, fractions, _, _ in classes:
            kept = _convolve_sum([mask], [fractions], backend, np.float32, shape=a.shape)
            for z0 in range(0, a.shape[0], 16):
                out[z0:z0 + 16] += _slab(source, z0, z0 + 16) * kept[z0:z0 + 16]
            del kept
    return out, [c[2] for c in classes]


def _energy_to_dose(energy, rho, k_per_voxel_kg):
    """In place, a slab of planes at a time: ``energy`` (GBq-equivalent) -> Gy with the local mass;
    voxels below :data:`MIN_DOSE_DENSITY_G_ML` take that density, voxels of density <= 0 get 0 Gy."""
    for z0 in range(0, energy.shape[0], 16):
        part = energy[z0:z0 + 16]
        part *= k_per_voxel_kg
        one = _planes_value(rho, z0, min(z0 + 16, energy.shape[0]))
        r = rho[z0:z0 + 16] if one is None else one  # planes of one density (a boxed map outside its box): the number
        part /= np.maximum(r, np.float32(MIN_DOSE_DENSITY_G_ML))
        if one is None:
            part[r <= 0] = 0.0
        elif one <= 0:
            part[...] = 0.0


def _local_dose_in(dose, lung, a, rho, k_per_voxel_kg):
    """In place, a slab of planes at a time: the local-deposition dose ``k a / rho`` in the ``lung``
    voxels (0 where the density is 0); ``rho`` an array or a BoxedArray (read by slabs)."""
    for z0 in range(0, dose.shape[0], 16):
        m = lung[z0:z0 + 16]
        if not m.any():
            continue
        r = rho[z0:z0 + 16][m]
        with np.errstate(divide="ignore", invalid="ignore"):
            local = k_per_voxel_kg * a[z0:z0 + 16][m] / r
        dose[z0:z0 + 16][m] = np.where(r > 0, local, np.float32(0))


def dvk_energy_j(activity_gbq, *, density_g_ml, k_gy_kg_per_gbq, device="auto", radius_mm=None):
    """Energy deposited per voxel (J) by DVK convolution (before division by mass).

    Same arguments as :func:`dvk_dose_gy`; returns a (Z, Y, X) float32 ndarray whose sum is
    ``K sum A`` less the energy carried out of the image.
    """
    a = _activity_input(activity_gbq)
    rho = _density_input(activity_gbq, density_g_ml)
    energy, _ = _convolved_activity(a, rho, activity_gbq.spacing_mm, radius_mm, get_backend(device))
    energy *= np.float32(k_gy_kg_per_gbq)
    return energy


def dvk_dose_gy(
    activity_gbq,
    *,
    density_g_ml,
    k_gy_kg_per_gbq,
    device="auto",
    lung_mask=None,
    lung_mode="kernel",
    progress=None,
    radius_mm=None,
    notes=None,
):
    """Absorbed dose by dose-voxel-kernel convolution, LDM-consistent (see module docstring).

    Parameters
    ----------
    activity_gbq : Volume, (Z, Y, X), GBq in each voxel (time-zero activity); spacing (x, y, z).
    density_g_ml : float or Volume on the activity grid, g/mL.  A map turns on the density
        correction (density classes; dose = deposited energy / local mass).
    k_gy_kg_per_gbq : float, dose per activity for full local absorption (J/GBq).
    device : {'auto', 'cpu', 'gpu'} or Backend.  'gpu' without a usable GPU raises
        GPUUnavailableError.
    lung_mask : (Z, Y, X) bool ndarray on the activity grid, optional.
    lung_mode : {'kernel', 'ldm'}.  'kernel': lung voxels get the density-corrected kernel
        dose (at a liver/lung interface the homogeneous kernel puts too much energy in the first
        lung voxel: +32 % and -9 % in the last liver voxel on a uniform-dose phantom with 3 mm
        voxels, docs/dvk.md).  'ldm': lung voxels keep local deposition, ``K A_i / m_i``, and
        their activity is not convolved; the energy that tissue sources would send into lung
        voxels stays in the source voxel, so energy is conserved and a uniform liver keeps its
        LDM dose up to the lung.  Reason: the kernel assumes a homogeneous medium, while lung
        is low-density and lung limits (30 Gy) come from LDM / partition-model lung doses.
    progress : callable(fraction, message), optional.
    radius_mm : float, optional; kernel truncation in water-equivalent mm (default 12 mm; a
        class of density rho < 1 uses radius_mm / rho, within :data:`~.kernels.MAX_KERNEL_VOXELS`
        voxels: a kernel that would be larger is truncated further, and said in ``notes``).
    notes : list, optional; sentences about the computation (kernel truncations) are appended.

    Returns
    -------
    Volume, (Z, Y, X) float32, Gy, on the activity grid.
    """
    t0 = time.perf_counter()
    a = _activity_input(activity_gbq)
    k = check_positive("k_gy_kg_per_gbq", k_gy_kg_per_gbq)
    if lung_mode not in LUNG_MODES:
        raise InputError(f"lung_mode must be one of {', '.join(LUNG_MODES)}; got {lung_mode!r}")
    if radius_mm is not None and not (float(radius_mm) > 0):
        raise InputError(f"radius_mm must be positive, got {radius_mm!r}")
    lung = None
    if lung_mask is not None:
        lung = np.asarray(lung_mask)
        if lung.shape != activity_gbq.shape:
            raise InputError(f"lung_mask must have the activity shape {activity_gbq.shape} (z, y, x), got {lung.shape}")
        lung = lung.astype(bool, copy=False)
        if lung_mode != "ldm" or not lung.any():
            lung = None
    backend = get_backend(device)
    rho = _density_input(activity_gbq, density_g_ml)
    _report(progress, 0.0, f"DVK: kernels ({backend.description})")

    a_nonnegative = bool(a.min() >= 0) if a.size else True
    a_conv = np.where(lung, np.float32(0), a) if lung is not None else a
    _report(progress, 0.2, "DVK: FFT convolution")
    stage = None if progress is None else (lambda f, m: progress(0.2 + 0.7 * f, "DVK: " + m))
    dose, classes = _convolved_activity(a_conv, rho, activity_gbq.spacing_mm, radius_mm, backend, keep_out_of=lung, progress=stage)
    if notes is not None:
        notes.extend(c["truncated"] for c in classes if "truncated" in c)
    del a_conv
    _report(progress, 0.9, "DVK: dose from energy")

    # dose = K * (f (*) A) / m, in place on the convolution output.
    voxel_kg = activity_gbq.voxel_volume_ml * 1e-3
    if np.isscalar(rho):
        scale = np.float32(k / (rho * voxel_kg))
        dose *= scale
        if lung is not None:
            dose[lung] = a[lung] * scale
    else:
        _energy_to_dose(dose, rho, np.float32(k / voxel_kg))
        if lung is not None:
            _local_dose_in(dose, lung, a, rho, np.float32(k / voxel_kg))
    if a_nonnegative:
        np.maximum(dose, np.float32(0), out=dose)  # FFT round-off (~1e-7 of the maximum) in empty regions
    _report(progress, 1.0, f"DVK done in {time.perf_counter() - t0:.2f} s")
    return activity_gbq.with_array(dose, name="dose", unit="Gy")
