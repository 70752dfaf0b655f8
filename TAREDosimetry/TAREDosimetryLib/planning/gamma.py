"""Gamma index of a dose distribution against a reference one on the same grid (Low et al. 1998).

    gamma(p) = min over q of sqrt( |q - p|^2 / DTA^2 + (D_eval(q) - D_ref(p))^2 / dD^2 )

with dD = ``dose_pct`` % of the global normalisation (the reference maximum in the mask, unless
given) or of D_ref(p) (``local``); points whose reference dose is below ``cutoff_pct`` % of the
normalisation are not evaluated.  A point passes when gamma <= 1.

Implementations (``implementation``): ``"pymedphys"`` (pymedphys.gamma, a well-kept open
implementation: ``pip install pymedphys``), ``"engine"`` (the search below) or ``"auto"``
(pymedphys when installed, else the engine's).  The engine's search evaluates D_eval by trilinear
interpolation at offsets q - p on a grid of step DTA / ``interp_fraction`` inside the sphere of
radius ``max_gamma`` x DTA, shell by shell in increasing distance, and stops for a point as soon
as the next shell's distance term alone exceeds its best gamma (exact for the offsets searched).
Validated against analytic cases (a pure dose scaling gives gamma = |scale - 1| D / dD; a pure
shift of a linear ramp gives gamma = shift / DTA when the dose term vanishes) and against
pymedphys in the tests.

References
----------
.. [Low1998] Low DA, Harms WB, Mutic S, Purdy JA, "A technique for the quantitative evaluation of
   dose distributions", Med Phys 25 (1998) 656, doi:10.1118/1.598248.
.. [Wendling2007] Wendling M et al., "A fast algorithm for gamma evaluation in 3D", Med Phys 34
   (2007) 1647, doi:10.1118/1.2721657 (search by increasing distance with early exit).
"""

import warnings

import numpy as np
from scipy import ndimage

from ..errors import InputError

__all__ = ["gamma_index", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("auto", "pymedphys", "engine")


def _offsets_by_shell(step_mm, radius_mm, spacing_zyx):
    """Offsets (mm, z y x) within ``radius_mm`` on a grid of ``step_mm``, grouped by distance."""
    n = int(np.floor(radius_mm / step_mm + 1e-9))
    ax = np.arange(-n, n + 1) * step_mm
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    off = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1)
    dist = np.sqrt((off ** 2).sum(axis=1))
    keep = dist <= radius_mm + 1e-9
    off, dist = off[keep], dist[keep]
    order = np.argsort(dist, kind="stable")
    off, dist = off[order], dist[order]
    shells = np.unique(np.round(dist, 9))
    return [(d, off[np.isclose(dist, d, atol=1e-9)] / np.asarray(spacing_zyx)) for d in shells]


def _engine_gamma(ref, ev, spacing_zyx, points, dd, dta_mm, interp_fraction, max_gamma):
    """Gamma of each point (N, 3 index coordinates, z y x) by the shell search; inf beyond max_gamma."""
    d_ref = ref[tuple(points.T)]
    dd = np.broadcast_to(np.asarray(dd, np.float64), d_ref.shape)
    best = np.full(points.shape[0], np.inf)
    active = np.arange(points.shape[0])
    for dist, offs in _offsets_by_shell(dta_mm / interp_fraction, dta_mm * max_gamma, spacing_zyx):
        if active.size == 0:
            break
        still = best[active] > dist / dta_mm  # a farther shell cannot lower gamma below its distance term
        active = active[still]
        if active.size == 0:
            break
        base = points[active].astype(np.float64)
        for o in offs:
            coords = (base + o).T
            val = ndimage.map_coordinates(ev, coords, order=1, mode="nearest")
            g2 = (dist / dta_mm) ** 2 + ((val - d_ref[active]) / dd[active]) ** 2
            best[active] = np.minimum(best[active], np.sqrt(g2))
    return best


def _pymedphys_gamma(ref, ev, spacing_zyx, dose_pct, dta_mm, cutoff_pct, norm, local, max_gamma, interp_fraction):
    import pymedphys

    axes = tuple(np.arange(n) * s for n, s in zip(ref.shape, spacing_zyx))
    with warnings.catch_warnings():  # quiet=True silences the versions that print; later ones log, and warn of it
        warnings.filterwarnings("ignore", message="Parameter `quiet` will be deprecated", category=DeprecationWarning)
        g = pymedphys.gamma(axes, ref, axes, ev, dose_pct, dta_mm, lower_percent_dose_cutoff=cutoff_pct,
                            interp_fraction=interp_fraction, max_gamma=max_gamma, local_gamma=local,
                            global_normalisation=norm, quiet=True, interp_algo="scipy")
    return np.asarray(g, dtype=np.float64)


def _choose(implementation):
    if implementation not in IMPLEMENTATIONS:
        raise InputError(f"gamma implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
    if implementation == "engine":
        return "engine"
    try:
        import pymedphys  # noqa: F401
    except ImportError:
        if implementation == "pymedphys":
            raise InputError("gamma implementation 'pymedphys' needs pymedphys: pip install pymedphys") from None
        return "engine"
    return "pymedphys"


def gamma_index(reference_gy, evaluated_gy, spacing_mm, *, dose_pct=5.0, dta_mm=4.0, cutoff_pct=10.0, mask=None, global_max_gy=None,
                local=False, max_gamma=2.0, interp_fraction=5, implementation="auto"):
    """Gamma evaluation of ``evaluated_gy`` against ``reference_gy``.

    Parameters
    ----------
    reference_gy, evaluated_gy : (Z, Y, X) ndarrays on one grid, Gy.
    spacing_mm : (x, y, z) voxel spacing, mm.
    dose_pct, dta_mm : criteria (e.g. 5 % / 4 mm).
    cutoff_pct : reference points below this % of the normalisation are not evaluated.
    mask : (Z, Y, X) bool, optional; only reference points inside it are evaluated.
    global_max_gy : normalisation dose (default: reference maximum inside the mask).
    local : dD relative to the local reference dose instead of the normalisation.
    max_gamma : search radius in units of DTA (gamma beyond it reads as > max_gamma).

    Returns
    -------
    dict: pass_rate_pct, mean_gamma, n_points, implementation, criteria text, gamma (Z, Y, X)
    float array, NaN where not evaluated.
    """
    ref, ev = np.asarray(reference_gy, np.float64), np.asarray(evaluated_gy, np.float64)
    if ref.shape != ev.shape or ref.ndim != 3:
        raise InputError(f"gamma: reference and evaluated doses must be 3-D arrays of one shape, got {ref.shape} and {ev.shape}")
    if not (dose_pct > 0 and dta_mm > 0 and 0 <= cutoff_pct < 100):
        raise InputError(f"gamma criteria must be positive (got {dose_pct} %, {dta_mm} mm) and cutoff in [0, 100) (got {cutoff_pct})")
    m = np.ones(ref.shape, bool) if mask is None else np.asarray(mask, bool)
    norm = float(global_max_gy) if global_max_gy is not None else float(ref[m].max()) if m.any() else 0.0
    if not norm > 0:
        raise InputError("gamma: the reference dose is zero everywhere it is evaluated")
    sel = m & (ref >= cutoff_pct / 100.0 * norm)
    spacing_zyx = tuple(float(s) for s in spacing_mm)[::-1]
    impl = _choose(implementation)
    gamma = np.full(ref.shape, np.nan)
    if impl == "pymedphys":
        g = _pymedphys_gamma(np.where(m, ref, 0.0), ev, spacing_zyx, dose_pct, dta_mm, cutoff_pct, norm, local, max_gamma, interp_fraction)
        gamma[sel] = g[sel]
    else:
        pts = np.argwhere(sel)
        dd = dose_pct / 100.0 * (ref[sel] if local else norm)
        gamma[sel] = _engine_gamma(ref, ev, spacing_zyx, pts, dd, dta_mm, interp_fraction, max_gamma)
    vals = gamma[sel]
    vals = np.where(np.isnan(vals), np.inf, vals)  # pymedphys: NaN beyond max_gamma
    n = int(vals.size)
    return {"pass_rate_pct": 100.0 * float(np.count_nonzero(vals <= 1.0)) / n if n else float("nan"),
            "mean_gamma": float(np.mean(np.minimum(vals, max_gamma))) if n else float("nan"), "n_points": n,
            "implementation": impl, "criteria": f"{dose_pct:g} % / {dta_mm:g} mm, {'local' if local else 'global'}, cutoff {cutoff_pct:g} %",
            "normalisation_gy": norm, "gamma": gamma}
