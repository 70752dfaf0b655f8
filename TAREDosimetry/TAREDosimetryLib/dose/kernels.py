"""Y-90 voxel S values (dose-voxel kernels) for any voxel size, from a dose point kernel.

The voxel S value S(delta) is the mean absorbed dose in a target voxel per decay uniformly
distributed in a source voxel displaced by ``delta`` (PHYSICS.md, "Dose-voxel-kernel (DVK)
convolution")::

    S(delta) = (1/V^2) int_source int_target d(|x - y|) dy dx = int p_delta(u) d(|u|) du

with ``u = y - x`` the displacement; for two boxes of size h = (hx, hy, hz) its density
``p_delta`` is a product of one tent (triangle) function per axis, ``(h - |u - delta|) / h^2``
(the box autocorrelation).  ``d(r) = E'(r) / (4 pi rho r^2)`` is the dose point kernel written
through the energy ``E(r)`` deposited within radius r, so nothing diverges at r = 0.

Integration method (deterministic, no sampling)
-----------------------------------------------
The tent product is a polynomial (degree <= 1 per axis) on each of the 8 sub-boxes into which
the planes ``u_a = delta_a`` cut its support.  The integral over a box B of ``poly(u) d(|u|)``
is the signed sum, over the faces F of B, of the integrals over the cones (pyramids) from the
origin to F (sign + when the face looks away from the origin, - when towards it; faces in a
plane through the origin contribute nothing).  Along each ray of a cone, with r the distance
from the origin,

    int_0^|q| poly(r q/|q|) E'(r) dr = sum_k c_k(q/|q|) M_k(|q|),   M_k(s) = int_0^s r^k E'(r) dr

is exact for the tabulated shells (E' constant within each shell), so only a smooth 2-D
integral over each face remains; it is done with Gauss-Legendre nodes (``QUADRATURE_ORDER``
per face side and sub-face).  Face points never reach the origin, so the r^-2 divergence of
the point kernel never appears, and the sum of S over all offsets, times the voxel mass,
is the kernel's total energy exactly in the continuum (the tents form a partition of unity).

Density scaling: ``d_rho(r) = rho^2 d_water(rho r)``, i.e. ``E_rho(r) = E_water(rho r)`` and
``M_k,rho(s) = rho^-k M_k,water(rho s)`` (rho relative to water, 1 g/mL).

Truncation: a target voxel is kept when its nearest point is closer than ``radius_mm`` to the
source voxel (default :data:`DEFAULT_RADIUS_MM` = 12 mm, within which 99.6 % of the Y-90
energy is deposited in water; the rest is the bremsstrahlung tail).  The kernel therefore
holds at least the energy deposited within ``radius_mm`` and at most the total; see
:func:`kernel_energy_mev`.

References
----------
.. [Graves2019] Graves SA, Flynn RT, Hyer DE, "Dose point kernels for 2,174 radionuclides",
   Med Phys 46 (2019) 5284-5293, doi:10.1002/mp.13789 (EGSnrc, water; 0.9336 MeV per decay).
.. [Lanconelli2012] Lanconelli N et al., "A free database of radionuclide voxel S values for
   the dosimetry of nonuniform activity distributions", Phys Med Biol 57 (2012) 517-533,
   doi:10.1088/0031-9155/57/2/517 (validation data).
"""

import functools
import math
import os

import numpy as np

from ..errors import InputError
from ..params import check_positive
from ..threads import cpu_threads

__all__ = [
    "DEFAULT_RADIUS_MM",
    "DEFAULT_KERNEL_DENSITY_G_ML",
    "DPK_TOTAL_ENERGY_MEV",
    "MEV_PER_G_TO_MGY_PER_MBQ_S",
    "QUADRATURE_ORDER",
    "point_kernel_table",
    "energy_within_mev",
    "voxel_s_values",
    "voxel_energy_fractions",
    "kernel_energy_mev",
    "clear_kernel_cache",
    "MAX_KERNEL_VOXELS",
    "radius_within_limit",
]

#: Default truncation radius (mm): nearest-point distance between source and target voxels.
DEFAULT_RADIUS_MM = 12.0
#: Default medium density (g/mL): ICRP soft tissue, as in [Lanconelli2012].
DEFAULT_KERNEL_DENSITY_G_ML = 1.04
#: Mean energy deposited per decay by the packaged point kernel (MeV) [Graves2019].
DPK_TOTAL_ENERGY_MEV = 0.9336
#: 1 MeV/g per decay = 0.16022 mGy per MBq s (1e6 decays x 1.602176634e-13 J / 1e-3 kg).
MEV_PER_G_TO_MGY_PER_MBQ_S = 0.1602176634
#: Gauss-Legendre nodes per sub-face side; 6 gives S values converged to ~1e-7 relative.
QUADRATURE_ORDER = 6

_TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "y90_dpk_graves2019.txt")
#: Most voxels of one kernel (its box); :func:`radius_within_limit` truncates a kernel to stay within.
MAX_KERNEL_VOXELS = 2_000_000
_MAX_KERNEL_VOXELS = MAX_KERNEL_VOXELS
_CHUNK = 64  # offsets per quadrature batch: about 5 MB of temporaries per thread (256: 20 MB, 2048: 140 MB, no faster)
_SERIAL_OFFSETS = 512  # kernels of at most this many distinct offsets are computed in the calling thread


# --------------------------------------------------------------------------- point kernel
@functools.lru_cache(maxsize=1)
def point_kernel_table():
    """The packaged Y-90 point kernel [Graves2019] as spherical shells in water.

    Returns
    -------
    outer_radius_mm : (N,) ndarray of float, read-only
    energy_mev : (N,) ndarray of float, read-only; energy deposited per decay in each shell
        (the inner radius of shell i is the outer radius of shell i - 1, 0 for the first).
    """
    table = np.loadtxt(_TABLE_PATH, comments="#", dtype=np.float64)
    r_mm = table[:, 0] * 10.0
    e_mev = table[:, 1].copy()
    r_mm.flags.writeable = False
    e_mev.flags.writeable = False
    return r_mm, e_mev


@functools.lru_cache(maxsize=1)
def _moment_tables():
    """Shell boundaries and cumulative radial moments of the energy density E'(r) (water)."""
    r_out, e = point_kernel_table()
    r_in = np.concatenate(([0.0], r_out[:-1]))
    e_density = e / (r_out - r_in)  # MeV/mm, constant within each shell
    before = np.zeros((4, r_out.size))
    for k in range(4):
        per_shell = e_density * (r_out ** (k + 1) - r_in ** (k + 1)) / (k + 1)
        before[k, 1:] = np.cumsum(per_shell)[:-1]
    return r_in, r_out, e_density, before


@functools.lru_cache(maxsize=16)
def _moment_polynomials(density):
    """Per shell j and moment k: M_k,rho(s) = a[j, k] + c[j, k] (rho s)^(k+1) for s in shell j
    (the shell's constant E' integrated, with the density scaling folded in); and a lookup of the
    shell of any radius on a uniform lattice as fine as the finest shell."""
    r_in, r_out, e_density, before = _moment_tables()
    a = np.empty((r_out.size, 4))
    c = np.empty((r_out.size, 4))
    for k in range(4):
        a[:, k] = (before[k] - e_density * r_in ** (k + 1) / (k + 1)) / density**k
        c[:, k] = e_density / (k + 1) / density**k
    step = float(np.min(r_out - r_in))
    lattice = np.searchsorted(r_out, np.arange(int(np.ceil(r_out[-1] / step)) + 2) * step, side="left")
    return a, c, step, np.minimum(lattice, r_out.size - 1)


def _shell_of(s, step, lattice, r_out):
    """Index of the shell holding radius s (the first outer radius >= s), as ``np.searchsorted``:
    the lattice cell gives it or the one after (a cell holds at most one shell boundary)."""
    j = lattice[(s * (1.0 / step)).astype(np.int64)]
    j += r_out[j] < s
    return np.minimum(j, r_out.size - 1)


def _moments(s_mm, density):
    """M_k(s) = int_0^s r^k E'_rho(r) dr for k = 0..3, shape (4,) + s.shape (MeV mm^k)."""
    _, r_out, _, _ = _moment_tables()
    a, c, step, lattice = _moment_polynomials(float(density))
    s = np.minimum(np.asarray(s_mm, dtype=np.float64) * density, r_out[-1])
    j = _shell_of(s, step, lattice, r_out)
    out = np.empty((4,) + s.shape)
    sp = s.copy()  # (rho s)^(k+1)
    for k in range(4):
        np.multiply(c[j, k], sp, out=out[k])
        out[k] += a[j, k]
        if k < 3:
            sp *= s
    return out


def energy_within_mev(radius_mm, density_g_ml=1.0):
    """Energy per decay (MeV) deposited within ``radius_mm`` of a point source in a medium of
    relative density ``density_g_ml`` (water-scaled point kernel [Graves2019])."""
    return float(_moments(np.asarray([radius_mm], dtype=np.float64), float(density_g_ml))[0, 0])


# --------------------------------------------------------------------------- quadrature
def _legendre(n, x):
    """(P_n(x), P_n'(x)) by the three-term recurrence (|x| < 1)."""
    below, p = np.ones_like(x), x.copy()
    for k in range(2, n + 1):
        below, p = p, ((2 * k - 1) * x * p - (k - 1) * below) / k
    return p, n * (x * p - below) / (x * x - 1.0)


def gauss_legendre(n):
    """Nodes and weights of the ``n``-point Gauss-Legendre rule on [-1, 1] (n >= 2): the nodes
    first as the eigenvalues of the rule's symmetric tridiagonal Jacobi matrix (Golub & Welsch
    1969), then polished by two Newton steps on P_n; the weights 2 / ((1 - x^2) P_n'(x)^2).
    Agrees with ``numpy.polynomial.legendre.leggauss`` to 1e-15 (nodes) and 1e-14 (weights, n <= 32)
    without importing ``numpy.polynomial`` (25 ms)."""
    k = np.arange(1.0, n)
    beta = k / np.sqrt(4.0 * k * k - 1.0)
    x = np.linalg.eigvalsh(np.diag(beta, 1) + np.diag(beta, -1))
    for _ in range(2):
        p, dp = _legendre(n, x)
        x = x - p / dp
    _, dp = _legendre(n, x)
    w = 2.0 / ((1.0 - x * x) * dp * dp)
    return (x - x[::-1]) / 2.0, (w + w[::-1]) / 2.0  # exactly symmetric


def _s_values_mev_per_g(h, delta_index, density, order):
    """S values (MeV/g per decay) for displacements ``delta_index * h``.

    h : (3,) voxel size in mm, any axis order; delta_index : (N, 3) int in the same order.
    """
    g, w = gauss_legendre(order)
    t = (g + 1.0) / 2.0
    delta = delta_index * h  # (N, 3)
    total = np.zeros(delta.shape[0])
    for a in range(3):
        b, d = [ax for ax in range(3) if ax != a]
        # Face planes u_a = c: (c, factor, alpha, beta).  factor = signed |c| of the cone
        # (-c for a low face, +c for a high face); the middle plane is the high face of the
        # lower sub-box and the low face of the upper one, whose polynomials are subtracted.
        ha, da = h[a], delta[:, a]
        c = np.stack([da - ha, da, da + ha], axis=1)  # (N, 3)
        factor = np.stack([-(da - ha), da, da + ha], axis=1)
        alpha = np.stack([(ha - da), -2.0 * da, (da + ha)], axis=1) / ha**2
        beta = np.broadcast_to(np.array([1.0, 2.0, -1.0]) / ha**2, c.shape)
        nodes, weights, alphas, betas = [], [], [], []
        for ax in (b, d):
            hx, dx = h[ax], delta[:, ax][:, None]
            lo = dx - hx + t * hx  # lower piece, tent rising
            hi = dx + t * hx  # upper piece, tent falling
            nodes.append(np.concatenate([lo, hi], axis=1))  # (N, 2n)
            weights.append(np.concatenate([w, w]) * hx / 2.0)
            alphas.append(np.concatenate([np.broadcast_to((hx - dx) / hx**2, lo.shape), np.broadcast_to((dx + hx) / hx**2, hi.shape)], axis=1))
            betas.append(np.concatenate([np.full(lo.shape[1], 1.0 / hx**2), np.full(hi.shape[1], -1.0 / hx**2)]))
        # Broadcast to (N, plane 3, node_b 2n, node_d 2n).
        qa = c[:, :, None, None]
        qb = nodes[0][:, None, :, None]
        qd = nodes[1][:, None, None, :]
        q2 = qa * qa + qb * qb + qd * qd
        qn = np.sqrt(q2)
        inv = 1.0 / qn
        ga = beta[:, :, None, None] * qa * inv
        gb = betas[0][None, None, :, None] * qb * inv
        gd = betas[1][None, None, None, :] * qd * inv
        aa = alpha[:, :, None, None]
        ab = alphas[0][:, None, :, None]
        ad = alphas[1][:, None, None, :]
        m = _moments(qn, density)
        ab_ad = ab * ad
        gb_gd = gb * gd
        poly = aa * ab_ad * m[0]
        poly += (ga * ab_ad + aa * (gb * ad + ab * gd)) * m[1]
        poly += (aa * gb_gd + ga * (gb * ad + ab * gd)) * m[2]
        poly += ga * gb_gd * m[3]
        poly *= factor[:, :, None, None] * inv * inv * inv
        wgt = weights[0][:, None] * weights[1][None, :]
        total += np.einsum("npij,ij->n", poly, wgt)
    rho_g_per_mm3 = density * 1e-3
    return total / (4.0 * math.pi * rho_g_per_mm3)


# --------------------------------------------------------------------------- validation
def _check_spacing(spacing_mm):
    try:
        t = tuple(float(v) for v in spacing_mm)
    except TypeError:
        raise InputError(f"spacing_mm must be 3 numbers (x, y, z), got {spacing_mm!r}") from None
    if len(t) != 3 or not all(math.isfinite(v) and v > 0 for v in t):
        raise InputError(f"spacing_mm must be 3 positive values (x, y, z), got {spacing_mm!r}")
    return t


def _normalise_args(spacing_mm, density_g_ml, radius_mm, order):
    spacing = _check_spacing(spacing_mm)
    density = check_positive("density_g_ml", density_g_ml, hi=25.0)
    radius = DEFAULT_RADIUS_MM if radius_mm is None else check_positive("radius_mm", radius_mm)
    order = int(order)
    if not 2 <= order <= 64:
        raise InputError(f"order must be an integer in [2, 64], got {order!r}")
    half = tuple(int(math.ceil(radius / s)) for s in spacing)  # x, y, z
    n_vox = (2 * half[0] + 1) * (2 * half[1] + 1) * (2 * half[2] + 1)
    if n_vox > _MAX_KERNEL_VOXELS:
        raise InputError(
            f"radius_mm={radius!r} at spacing_mm={spacing!r} (density {density!r}) needs a kernel of "
            f"{n_vox} voxels, more than {_MAX_KERNEL_VOXELS}; use a smaller radius or coarser voxels"
        )
    return spacing, density, radius, order, half


# --------------------------------------------------------------------------- public API
def _s_values_threaded(h, offsets, density, order):
    """S values (MeV/g per decay) of ``offsets`` (M, 3) in chunks, on every core (NumPy releases
    the GIL in the array work of each chunk)."""
    chunks = [offsets[i:i + _CHUNK] for i in range(0, offsets.shape[0], _CHUNK)]
    if offsets.shape[0] <= _SERIAL_OFFSETS:  # a small kernel: no threads (each would keep its own allocator arena)
        return np.concatenate([_s_values_mev_per_g(h, c, density, order) for c in chunks]) if chunks else np.zeros(0)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(chunks), cpu_threads())) as pool:
        return np.concatenate(list(pool.map(lambda c: _s_values_mev_per_g(h, c, density, order), chunks)))


def _distinct_offsets(idx, spacing):
    """(distinct offsets, inverse): offsets (M, 3) x, y, z whose components may be exchanged
    between axes of equal spacing (S is then the same: the point kernel is radial and the voxel
    box symmetric) reduced to one representative each (1/6 of them for cubic voxels)."""
    key = idx.copy()
    groups = {}
    for axis, h in enumerate(spacing):
        groups.setdefault(h, []).append(axis)
    for axes in groups.values():
        if len(axes) > 1:
            key[:, axes] = -np.sort(-key[:, axes], axis=1)  # decreasing within the group
    return np.unique(key, axis=0, return_inverse=True)


@functools.lru_cache(maxsize=64)
def _kernel_cached(spacing, density, radius, order, half):
    h = np.asarray(spacing, dtype=np.float64)  # x, y, z
    grids = np.meshgrid(*(np.arange(n + 1) for n in half), indexing="ij")
    idx = np.stack([gr.ravel() for gr in grids], axis=1)  # (M, 3) in x, y, z order
    gap = np.maximum(idx - 1, 0) * h
    keep = np.sqrt(np.sum(gap * gap, axis=1)) < radius
    idx = idx[keep]
    distinct, inverse = _distinct_offsets(idx, spacing)
    s = _s_values_threaded(h, distinct.astype(np.float64), density, order)[inverse.reshape(-1)]
    s = np.maximum(s, 0.0) * MEV_PER_G_TO_MGY_PER_MBQ_S  # round-off in the far tail can dip below 0
    hx, hy, hz = half
    kernel = np.zeros((2 * hz + 1, 2 * hy + 1, 2 * hx + 1))
    for sx in (1, -1):
        for sy in (1, -1):
            for sz in (1, -1):
                kernel[hz + sz * idx[:, 2], hy + sy * idx[:, 1], hx + sx * idx[:, 0]] = s
    kernel.flags.writeable = False
    return kernel


def voxel_s_values(spacing_mm, density_g_ml=DEFAULT_KERNEL_DENSITY_G_ML, *, radius_mm=None, order=QUADRATURE_ORDER):
    """Y-90 voxel S values for a homogeneous medium, in mGy/(MBq s) (= Gy/(GBq s)).

    Parameters
    ----------
    spacing_mm : tuple of float, (x, y, z)
        Voxel size in mm (anisotropic allowed).
    density_g_ml : float
        Density of the (homogeneous) medium, g/mL; the water point kernel is scaled as
        ``d_rho(r) = rho^2 d_water(rho r)``.  Default 1.04 (soft tissue, as Lanconelli 2012).
    radius_mm : float, optional
        Truncation: keep target voxels whose nearest point lies closer than this to the source
        voxel.  Default :data:`DEFAULT_RADIUS_MM` (12 mm).
    order : int
        Gauss-Legendre nodes per sub-face side (default :data:`QUADRATURE_ORDER`).

    Returns
    -------
    (2 nz + 1, 2 ny + 1, 2 nx + 1) ndarray of float64, read-only
        Indexed (z, y, x) with the source voxel at the centre; ``n_a = ceil(radius_mm /
        spacing_a)``.  Entries outside the truncation are 0.  The array is cached and shared:
        copy it before writing.  The same arguments give the same array bit for bit.

    Examples
    --------
    >>> s = voxel_s_values((3.0, 3.0, 3.0))
    >>> s.shape, round(float(s[4, 4, 4]), 2)
    ((9, 9, 9), 1.58)
    """
    spacing, density, radius, order, half = _normalise_args(spacing_mm, density_g_ml, radius_mm, order)
    return _kernel_cached(spacing, density, radius, order, half)


def kernel_energy_mev(spacing_mm, density_g_ml=DEFAULT_KERNEL_DENSITY_G_ML, *, radius_mm=None, order=QUADRATURE_ORDER):
    """Energy per decay held by the truncated kernel, sum_k S_k m_voxel, in MeV.

    Lies between :func:`energy_within_mev` (radius, density) and the point kernel's total
    (:data:`DPK_TOTAL_ENERGY_MEV`).
    """
    spacing, density, radius, order, half = _normalise_args(spacing_mm, density_g_ml, radius_mm, order)
    s = _kernel_cached(spacing, density, radius, order, half)
    mass_g = density * spacing[0] * spacing[1] * spacing[2] * 1e-3
    return float(s.sum() * mass_g / MEV_PER_G_TO_MGY_PER_MBQ_S)


@functools.lru_cache(maxsize=64)
def _fractions_cached(spacing, density, radius, order, half):
    s = _kernel_cached(spacing, density, radius, order, half)
    f = s / s.sum()
    f.flags.writeable = False
    return f


def voxel_energy_fractions(spacing_mm, density_g_ml=DEFAULT_KERNEL_DENSITY_G_ML, *, radius_mm=None, order=QUADRATURE_ORDER):
    """The kernel as fractions of the emitted energy deposited in each voxel, summing to 1.

    This is the LDM-consistent dose-voxel kernel (PHYSICS.md, "Consistency with LDM"):
    convolving ``K * A`` (J) with it redistributes exactly the energy that local deposition
    puts in each voxel, whatever mean beta energy ``K`` implies.  Same arguments, shape and
    axis order as :func:`voxel_s_values`; float64, read-only, cached.
    """
    spacing, density, radius, order, half = _normalise_args(spacing_mm, density_g_ml, radius_mm, order)
    return _fractions_cached(spacing, density, radius, order, half)


def _kernel_box_voxels(spacing, radius):
    return int(np.prod([2 * math.ceil(radius / h) + 1 for h in spacing]))


def radius_within_limit(spacing_mm, radius_mm, max_voxels=MAX_KERNEL_VOXELS):
    """The largest truncation radius <= ``radius_mm`` whose kernel box at ``spacing_mm`` (x, y, z)
    holds at most ``max_voxels`` voxels (fine voxels, or the long range of a low-density kernel);
    ``radius_mm`` itself when it fits."""
    spacing = _check_spacing(spacing_mm)
    radius = check_positive("radius_mm", radius_mm)
    if _kernel_box_voxels(spacing, radius) <= max_voxels:
        return radius
    lo, hi = 0.0, radius
    for _ in range(60):  # bisection on the radius: the box grows with it
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _kernel_box_voxels(spacing, mid) <= max_voxels else (lo, mid)
    return lo


def clear_kernel_cache():
    """Forget every cached kernel (for timing kernel generation)."""
    _kernel_cached.cache_clear()
    _fractions_cached.cache_clear()
