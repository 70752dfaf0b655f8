"""Dose-volume histograms and the D/V metrics read from them.

Two modes:

* **exact** (``bin_width_gy=None``): the voxel doses are sorted, and the cumulative DVH is the
  step function of the voxels themselves (each voxel receives one dose: no dose is spread inside
  a voxel).  With doses in decreasing order d_1 >= d_2 >= ... >= d_N (each voxel a volume
  fraction 1/N), ``D(x)`` -- the minimum dose received by the hottest x % of the volume -- is the
  dose d_k of the voxel in which the cumulative volume k/N reaches x/100 (k = ceil(N x / 100),
  ``D(x) = d_1`` for x <= 100/N).  ``V(d)`` is the exact fraction of voxels with dose >= d.  So
  D_x, V_x and the median agree: ``V(D(x)) >= x`` always, and no D_x lies between two voxel
  doses (a value no voxel receives).
* **binned** (``bin_width_gy=w``): a histogram with bins [0, w), [w, 2w), ...; the cumulative DVH
  is exact at the bin edges and linear between them (interpolated, never the value of the
  nearest bin); ``D`` inverts that piecewise-linear curve.  ``D`` never exceeds the largest voxel
  dose (inside the top bin the line would otherwise reach the bin's upper edge: a region of 0 Gy
  would read D50 = half a bin).

Volumes are voxel counts times the voxel volume (all voxels of one DVH have the same volume).

**Weighted voxels** (``weights=w``, exact partial-voxel sampling): voxel i stands for the volume
``w_i * voxel_volume_ml`` (``w_i`` is the fraction of the voxel inside the region).  With the doses
in decreasing order and ``c_k = (w_1 + ... + w_k) / W`` the cumulative volume fraction, ``D(x)`` is
the dose d_k of the first voxel with c_k >= x/100 (the step DVH as above); ``V(d)`` is the exact
weighted fraction with dose >= d; mean, SD and median are weighted (the median splits the volume
in halves).  With all weights 1 this is the unweighted DVH above.  The binned mode histograms the
weights.

A voxel's cumulative fraction that equals x/100 up to floating-point rounding
(:data:`FRACTION_TOLERANCE`) counts as reaching it (0.7 x 10 voxels is the 7th voxel, not the 8th).
"""

import math
import re

import numpy as np

from ..errors import InputError

__all__ = ["DVH", "parse_metric"]

_METRIC_RX = re.compile(
    r"^\s*(?P<kind>[DV])\s*(?P<value>\d+(\.\d+)?)\s*(?P<unit>%|cc|ml|gy|pct)?\s*$", re.IGNORECASE
)


def parse_metric(text):
    """Parse 'D90', 'D2cc', 'V100Gy', 'V20' (Gy), 'V100Gy%' style names.

    Returns
    -------
    (kind, value, unit) with kind 'D' or 'V' and unit '%', 'ml' (D) or 'Gy' (V), or None when
    ``text`` is not such a metric.
    """
    t = str(text).strip().replace("_", "")
    m = _METRIC_RX.match(t.replace("Gy%", "Gy"))
    if not m:
        return None
    kind = m.group("kind").upper()
    value = float(m.group("value"))
    unit = (m.group("unit") or "").lower()
    if kind == "D":
        return ("D", value, "ml" if unit in ("cc", "ml") else "%")
    return ("V", value, "Gy")


class DVH:
    """Cumulative DVH of one region from its voxel doses.

    Parameters
    ----------
    dose_gy : (N,) array_like of float, the dose of each voxel of the region, Gy.
    voxel_volume_ml : float, volume of one voxel, mL.
    bin_width_gy : float or None, see module docstring.
    name : str
    weights : (N,) array_like of float >= 0, optional: the fraction of each voxel's volume that
        belongs to the region (exact partial-voxel sampling); voxels of weight 0 are dropped.
    overwrite_dose : bool, default False; True lets the DVH sort ``dose_gy`` in place (when it
        is a float32 or float64 array and no weights are given) instead of sorting a copy: for a
        caller whose array of the region's doses is its own and not needed in voxel order.

    Notes
    -----
    Storage: the doses sorted once (float32 maps stay float32), and for weighted voxels only the
    voxels of weight other than 1 (their places in the sorted order and the running sum of their
    weights): the cumulative volume up to any dose is the count of whole voxels plus that sum.
    Voxels whose weight is 1 to within the rounding of the weights' type count as whole (a
    region whose voxels are all whole is the unweighted DVH).
    """

    def __init__(self, dose_gy, voxel_volume_ml=1.0, bin_width_gy=None, name="", weights=None, overwrite_dose=False):
        d = np.asarray(dose_gy).ravel()
        self._part = None
        if weights is not None:
            d, weights = _positive_weights(d, weights, name)
        if d.dtype != np.float32:  # float32 dose maps are sorted as they are (twice as fast); sums use float64
            d = d.astype(np.float64)
        if d.size == 0:
            raise InputError(f"DVH of {name or 'region'}: no voxels")
        if not (math.isfinite(float(d.min())) and math.isfinite(float(d.max()))):  # NaN propagates: no mask needed
            raise InputError(f"DVH of {name or 'region'}: dose holds NaN or infinite values")
        if not voxel_volume_ml > 0:
            raise InputError(f"voxel_volume_ml must be positive, got {voxel_volume_ml!r}")
        if bin_width_gy is not None and not bin_width_gy > 0:
            raise InputError(f"bin_width_gy must be positive or None, got {bin_width_gy!r}")
        self.name = name
        self.voxel_volume_ml = float(voxel_volume_ml)
        self.bin_width_gy = None if bin_width_gy is None else float(bin_width_gy)
        if overwrite_dose and weights is None and d.flags.writeable:
            d.sort()  # the caller's own array (or our float64 copy of it): sorted where it is
            self._asc = d
        else:
            self._asc = np.sort(d)
        self._sorted_desc = self._asc[::-1]  # a view
        self.n_voxels = d.size
        if weights is not None:
            self._part = _PartialVoxels.of(d, weights, self._asc)
            self.weight_sum = self._part.total if self._part is not None else float(d.size)
        self._set_bins()

    def _set_bins(self):
        """In binned mode, the histogram and its cumulative curve (from the sorted doses)."""
        if self.bin_width_gy is not None:
            top = max(float(self._sorted_desc[0]), 0.0)
            n_bins = int(math.floor(top / self.bin_width_gy)) + 1
            self._edges = np.arange(n_bins + 1, dtype=np.float64) * self.bin_width_gy
            counts = self._histogram(self._edges)
            # cumulative fraction with dose >= edge_k: sum of counts from bin k upwards
            self._cum = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]]) / self._total_weight
            self.differential_counts = counts

    def scaled(self, factor):
        """The DVH of the doses times ``factor`` (> 0), without sorting again: the dose map of a
        plan at another activity (doses proportional to activity).  D_x and the statistics scale
        by ``factor``; V_x is read on the scaled doses.  Partial-volume weights are kept (the
        partial voxels keep their places: a positive factor keeps the order)."""
        f = float(factor)
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"DVH scale factor must be a positive number, got {factor!r}")
        out = DVH.__new__(DVH)
        out.name, out.voxel_volume_ml, out.bin_width_gy = self.name, self.voxel_volume_ml, self.bin_width_gy
        out._asc = self._asc * (np.float32(f) if self._asc.dtype == np.float32 else f)
        out._sorted_desc = out._asc[::-1]
        out.n_voxels, out._part = self.n_voxels, self._part  # _PartialVoxels is never modified: shared
        if hasattr(self, "weight_sum"):
            out.weight_sum = self.weight_sum
        out._set_bins()
        return out

    @property
    def _total_weight(self):
        return self._part.total if self._part is not None else float(self.n_voxels)

    def _histogram(self, edges):
        """Volume (in voxels, weighted) per dose bin (doses below 0 in the first bin)."""
        counts, _ = np.histogram(np.clip(self._asc, 0, None), bins=edges)
        if self._part is None:
            return counts
        return counts + self._part.histogram_correction(self._asc, edges)

    # -- basic statistics ------------------------------------------------------------------------
    @property
    def weighted(self):
        """True when the voxels carry partial-volume weights (some other than 1)."""
        return self._part is not None

    @property
    def volume_ml(self):
        return self._total_weight * self.voxel_volume_ml

    @property
    def max_gy(self):
        return float(self._sorted_desc[0])

    @property
    def min_gy(self):
        return float(self._sorted_desc[-1])

    @property
    def mean_gy(self):
        total = float(self._asc.sum(dtype=np.float64))
        if self._part is not None:
            total += self._part.weighted_minus_whole(self._asc, lambda x: x)
        return total / self._total_weight

    @property
    def median_gy(self):
        d, n = self._sorted_desc, self.n_voxels
        if self._part is not None:  # the weighted median: half of the volume on either side
            k = min(self._first_hot_fraction_at_least(0.5), n - 1)
            if abs(self._cum_desc(k) - 0.5) < 1e-12 and k + 1 < n:
                return 0.5 * (float(d[k]) + float(d[k + 1]))
            return float(d[k])
        return float(d[n // 2]) if n % 2 else 0.5 * (float(d[n // 2 - 1]) + float(d[n // 2]))  # already sorted

    @property
    def sd_gy(self):
        mean = self.mean_gy
        sq = _sum_of_squares(self._asc, mean)
        if self._part is not None:
            sq += self._part.weighted_minus_whole(self._asc, lambda x: (x - mean) ** 2)
        return float(math.sqrt(max(0.0, sq / self._total_weight)))

    @property
    def doses_gy(self):
        """Voxel doses in decreasing order (read-only view)."""
        v = self._sorted_desc.view()
        v.flags.writeable = False
        return v

    @property
    def weights(self):
        """The partial-volume weights of :attr:`doses_gy`, in the same order (float64, read-only),
        or None when every voxel counts whole."""
        if self._part is None:
            return None
        w = np.ones(self.n_voxels)
        w[self._part.pos] = np.diff(self._part.cum)
        v = w[::-1]
        v.flags.writeable = False
        return v

    # -- cumulative volume -------------------------------------------------------------------------
    def _cum_desc(self, k):
        """c_k: volume fraction of the k + 1 hottest voxels (k scalar or array, 0 <= k < N)."""
        return 1.0 - self._part.prefix(self.n_voxels - 1 - np.asarray(k)) / self._part.total

    def _suffix(self, i):
        """Volume fraction of the voxels from ascending place i on (i scalar or array, 0 <= i <= N)."""
        if self._part is None:
            return (self.n_voxels - np.asarray(i)) / self.n_voxels
        return 1.0 - self._part.prefix(np.asarray(i)) / self._part.total

    def _first_hot_fraction_at_least(self, f):
        """Smallest k with c_k >= f (N when none): a binary search, c_k grows with k."""
        lo, hi = 0, self.n_voxels
        while lo < hi:
            mid = (lo + hi) // 2
            if self._cum_desc(mid) >= f:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # -- D and V ---------------------------------------------------------------------------------
    def dose_at_volume_pct(self, volume_pct):
        """D_x: minimum dose received by the hottest ``volume_pct`` % of the volume, Gy."""
        x = float(volume_pct)
        if not 0 <= x <= 100:
            raise InputError(f"volume_pct must be within [0, 100], got {volume_pct!r}")
        f = x / 100.0
        if self.bin_width_gy is None and self.weighted:
            return self._weighted_dose_at_fraction(f)
        if self.bin_width_gy is None:
            n = self.n_voxels
            k = math.ceil(f * n * (1.0 - FRACTION_TOLERANCE))  # 1-based rank of the voxel where x % is reached
            return float(self._sorted_desc[min(max(k, 1), n) - 1])
        return self._within_dose_range(self._binned_dose_at_fraction(f))

    def _binned_dose_at_fraction(self, f):
        """D at volume fraction ``f`` on the binned curve (cum is non-increasing along the edges)."""
        cum, edges = self._cum, self._edges
        if f >= cum[0]:
            # Every voxel receives at least the highest edge where the curve is still at 100 %
            # (the edge below the minimum dose), not 0 Gy.
            return float(edges[np.flatnonzero(cum >= cum[0])[-1]])
        if f <= 0:
            return float(edges[-1])
        # np.interp needs increasing x: reverse
        return float(np.interp(f, cum[::-1], edges[::-1]))

    def _weighted_dose_at_fraction(self, f):
        """D at volume fraction f on the step DVH: the dose d_k of the first voxel with c_k >= f."""
        d = self._sorted_desc
        k = self._first_hot_fraction_at_least(f * (1.0 - FRACTION_TOLERANCE))
        return float(d[min(k, d.size - 1)])

    def _within_dose_range(self, dose_gy):
        """A binned D_x never above the largest voxel dose: the curve is linear inside a bin, but
        no voxel receives more than the maximum (a 0 Gy region must not read D50 = half a bin)."""
        return float(min(dose_gy, self.max_gy))

    def dose_at_volume_ml(self, volume_ml):
        """D_{x cc}: minimum dose to the hottest ``volume_ml`` mL, Gy."""
        v = float(volume_ml)
        if v < 0:
            raise InputError(f"volume_ml must be >= 0, got {volume_ml!r}")
        return self.dose_at_volume_pct(min(100.0, 100.0 * v / self.volume_ml))

    def volume_pct_at_dose(self, dose_gy):
        """V_x: percentage of the volume receiving at least ``dose_gy``."""
        d = float(dose_gy)
        if self.bin_width_gy is None:
            return 100.0 * float(self._suffix(int(_first_not_below(self._asc, d))))
        if d <= 0:
            return 100.0 * float(self._cum[0])
        return 100.0 * float(np.interp(d, self._edges, self._cum, right=0.0))

    def volume_ml_at_dose(self, dose_gy):
        return self.volume_pct_at_dose(dose_gy) * self.volume_ml / 100.0

    def statistic(self, name):
        """A metric by name: 'D90', 'D2cc', 'V100Gy', 'V20', 'mean', 'max', ... (Gy, % or mL)."""
        key = str(name).strip().lower()
        simple = {"mean": self.mean_gy, "dmean": self.mean_gy, "median": self.median_gy, "max": self.max_gy,
                  "dmax": self.max_gy, "min": self.min_gy, "dmin": self.min_gy, "sd": self.sd_gy}
        if key in simple:
            return simple[key]
        parsed = parse_metric(name)
        if parsed is None:
            raise InputError(f"unknown DVH metric {name!r}; use e.g. D90, D2cc, V100Gy, mean, max")
        kind, value, unit = parsed
        if kind == "D":
            return self.dose_at_volume_ml(value) if unit == "ml" else self.dose_at_volume_pct(value)
        return self.volume_pct_at_dose(value)

    # -- curves ----------------------------------------------------------------------------------
    def curve(self, step_gy=0.1, max_points=4000):
        """Cumulative DVH sampled every ``step_gy`` (coarsened to at most ``max_points`` points).

        Returns (dose_gy, volume_pct) arrays starting at 0 Gy and ending at the first dose with 0 %.
        """
        step = float(step_gy)
        top = max(self.max_gy, 0.0)
        n = int(math.floor(top / step)) + 2
        if n > max_points:
            step = top / (max_points - 2)
            n = max_points
        dose = np.arange(n, dtype=np.float64) * step
        if self.bin_width_gy is None:
            vol = 100.0 * self._suffix(_first_not_below(self._asc, dose))
        else:
            vol = np.array([self.volume_pct_at_dose(x) for x in dose])
        return dose, vol

    def differential(self, bin_width_gy=1.0):
        """Differential DVH: (bin left edges Gy, volume % per bin)."""
        w = float(bin_width_gy)
        top = max(self.max_gy, 0.0)
        edges = np.arange(int(math.floor(top / w)) + 2) * w
        return edges[:-1], 100.0 * self._histogram(edges) / self._total_weight


class _PartialVoxels:
    """The voxels of a weighted DVH whose weight is not 1, placed in the sorted doses.

    pos : (M,) int64, increasing: their places in the ascending dose order (among equal doses,
        before the whole voxels); cum : (M + 1,) float64, running sum of their weights in that
        order (from 0); total : the region's volume in voxels, ``N - M + cum[-1]``.
    """

    def __init__(self, pos, cum, n):
        self.pos, self.cum = pos, cum
        self.total = float(n - pos.size + cum[-1])

    @classmethod
    def of(cls, d, w, asc):
        """From the doses ``d``, weights ``w`` (> 0) and sorted doses ``asc``; None when all are whole.

        Equal doses are ordered as a stable sort of ``d`` orders them (by place in ``d``): where a
        run of equal doses meets the next dose, the curve's step is the weight of the run's last
        voxel in that order, so that voxel is put last (the others' order within the run does not
        change the curve)."""
        tol = _WHOLE_TOLERANCE[w.dtype.type]
        part = w < w.dtype.type(1) - tol
        part |= w > w.dtype.type(1) + tol
        if not part.any():
            return None
        pidx = np.flatnonzero(part)
        order = np.argsort(d[pidx], kind="stable")  # equal doses by place in d
        pidx = pidx[order]
        bd, bw = d[pidx], w[pidx]
        new_run = np.concatenate([[True], bd[1:] != bd[:-1]])
        starts = np.flatnonzero(new_run)
        run = np.cumsum(new_run) - 1
        xs = bd[starts]
        lo, hi = np.searchsorted(asc, xs, side="left"), np.searchsorted(asc, xs, side="right")
        pos = lo[run] + (np.arange(bd.size) - starts[run])  # partial voxels first in their run of equal doses
        ends = np.concatenate([starts[1:], [bd.size]]) - 1  # the last partial voxel of each run
        mixed = np.flatnonzero(hi - lo > ends - starts + 1)
        if mixed.size > _MAX_MIXED_RUNS:  # many runs mix whole and partial voxels: the places of a stable sort
            pos = np.flatnonzero(part[np.argsort(d, kind="stable")])
        elif mixed.size:
            last_whole = _last_whole_place(d, part, xs[mixed])
            moved = mixed[pidx[ends[mixed]] > last_whole]  # a partial voxel comes last in d: last in the run
            pos[ends[moved]] = hi[moved] - 1
        return cls(pos, np.concatenate([[0.0], np.cumsum(bw, dtype=np.float64)]), d.size)

    def prefix(self, i):
        """Volume (voxels) of the first ``i`` voxels in ascending order (i scalar or array, 0 <= i <= N)."""
        cnt = np.searchsorted(self.pos, i, side="left")
        return i - cnt + self.cum[cnt]

    def weighted_minus_whole(self, asc, fn):
        """sum over the partial voxels of (w - 1) fn(d): what weighting changes in a sum of fn(d)."""
        return float(np.dot(np.diff(self.cum) - 1.0, fn(asc[self.pos].astype(np.float64))))

    def histogram_correction(self, asc, edges):
        """Per bin, sum over the partial voxels of (w - 1): the weighted minus the plain histogram."""
        counts, _ = np.histogram(np.clip(asc[self.pos], 0, None), bins=edges, weights=np.diff(self.cum) - 1.0)
        return counts


#: Relative rounding allowed when a cumulative volume fraction is compared with x/100 (D_x).
FRACTION_TOLERANCE = 1e-9

#: Weights this close to 1 (4 units of rounding of their float type) count as whole voxels.
_WHOLE_TOLERANCE = {np.float64: 4 * np.finfo(np.float64).eps, np.float32: np.float32(4 * np.finfo(np.float32).eps)}

#: Most runs of equal doses mixing whole and partial voxels whose last voxel is looked up by one
#: search per voxel; beyond, the partial voxels are placed by a stable sort of all the doses.
_MAX_MIXED_RUNS = 1 << 14

#: Doses per block of a sum of squares (bounds the float64 work array).
_BLOCK = 1 << 16


def _last_whole_place(d, part, xs):
    """For each value of the sorted ``xs``, the largest place in ``d`` of a whole voxel (``part``
    False) with that dose (-1 when none); one pass over ``d`` in blocks."""
    last = np.full(xs.size, -1, np.int64)
    step = 1 << 18
    for s in range(0, d.size, step):
        block = d[s:s + step]
        k = np.minimum(np.searchsorted(xs, block), xs.size - 1)
        hit = np.flatnonzero((xs[k] == block) & ~part[s:s + step])
        if hit.size:
            np.maximum.at(last, k[hit], hit + s)
    return last


def _sum_of_squares(values, mean):
    """sum (v - mean)^2 in float64, block by block in one work array (no full-size float64 copy)."""
    total = 0.0
    buf = np.empty(min(_BLOCK, values.size))
    for s in range(0, values.size, _BLOCK):
        dev = buf[:min(_BLOCK, values.size - s)]
        np.subtract(values[s:s + _BLOCK], mean, out=dev, dtype=np.float64)
        total += float(np.dot(dev, dev))
    return total


def _first_not_below(asc, q):
    """Places of the first elements of the sorted ``asc`` that are >= ``q`` (scalar or array, float64
    comparison), without converting ``asc``: for a float32 array the queries are rounded up to the
    next float32 (no float32 lies between q and it), so the places are those of the float64 search."""
    q = np.asarray(q, dtype=np.float64)
    if asc.dtype != np.float32:
        return np.searchsorted(asc, q, side="left")
    with np.errstate(over="ignore"):
        q32 = q.astype(np.float32)
    q32 = np.where(q32.astype(np.float64) < q, np.nextafter(q32, np.float32(np.inf)), q32)
    return np.searchsorted(asc, q32, side="left")


def _positive_weights(d, weights, name):
    """(doses, weights) of the voxels with weight > 0; InputError for bad weights.  Float32 weights
    stay float32 (the fractions of large masks are computed in float32)."""
    w = np.asarray(weights).ravel()
    if w.dtype not in (np.float32, np.float64):
        w = w.astype(np.float64)
    if w.shape != d.shape:
        raise InputError(f"DVH of {name or 'region'}: {w.size} weights for {d.size} voxels")
    if w.size and not (math.isfinite(float(w.min())) and math.isfinite(float(w.max())) and w.min() >= 0):
        raise InputError(f"DVH of {name or 'region'}: weights must be finite and >= 0")
    if w.size and w.min() > 0:
        return d, w  # every voxel counts: no copies
    keep = w > 0
    return d[keep], w[keep]
