"""Dose-volume histograms and the D/V metrics read from them.

Two modes, both interpolated (never the value of the nearest bin):

* **exact** (``bin_width_gy=None``): the voxel doses are sorted.  With doses in decreasing order
  d_1 >= d_2 >= ... >= d_N (each voxel a volume fraction 1/N), the cumulative DVH passes through
  the points (k/N, d_k), joined by straight lines.  ``D(x)`` reads the dose at volume fraction
  x/100 on that line (``D(x) = d_1`` for x <= 100/N); ``V(d)`` is the exact fraction of voxels
  with dose >= d.
* **binned** (``bin_width_gy=w``): a histogram with bins [0, w), [w, 2w), ...; the cumulative DVH
  is exact at the bin edges and linear between them; ``D`` inverts that piecewise-linear curve.
  ``D`` never exceeds the largest voxel dose (inside the top bin the line would otherwise reach
  the bin's upper edge: a region of 0 Gy would read D50 = half a bin).

Volumes are voxel counts times the voxel volume (all voxels of one DVH have the same volume).

**Weighted voxels** (``weights=w``, exact partial-voxel sampling): voxel i stands for the volume
``w_i * voxel_volume_ml`` (``w_i`` is the fraction of the voxel inside the region).  With the doses
in decreasing order and ``c_k = (w_1 + ... + w_k) / W`` the cumulative volume fraction, the exact
cumulative DVH passes through the points (c_k, d_k), joined by straight lines, so that ``D(x)``
reads the dose at volume fraction x/100 on that line (``D(x) = d_1`` for x/100 <= c_1); ``V(d)``
is the exact weighted fraction with dose >= d; mean, SD and median are weighted (the median
splits the volume in halves).  With all weights 1 this is the unweighted DVH above.  The binned
mode histograms the weights.
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
    """

    def __init__(self, dose_gy, voxel_volume_ml=1.0, bin_width_gy=None, name="", weights=None):
        d = np.asarray(dose_gy).ravel()
        self._w_asc = None
        if weights is not None:
            d, weights = _positive_weights(d, weights, name)
        if d.dtype != np.float32:  # float32 dose maps are sorted as they are (twice as fast); sums use float64
            d = d.astype(np.float64)
        if d.size == 0:
            raise InputError(f"DVH of {name or 'region'}: no voxels")
        if not np.all(np.isfinite(d)):
            raise InputError(f"DVH of {name or 'region'}: dose holds NaN or infinite values")
        if not voxel_volume_ml > 0:
            raise InputError(f"voxel_volume_ml must be positive, got {voxel_volume_ml!r}")
        if bin_width_gy is not None and not bin_width_gy > 0:
            raise InputError(f"bin_width_gy must be positive or None, got {bin_width_gy!r}")
        self.name = name
        self.voxel_volume_ml = float(voxel_volume_ml)
        self.bin_width_gy = None if bin_width_gy is None else float(bin_width_gy)
        if weights is not None:
            order = np.argsort(d, kind="stable")
            self._set_sorted(d[order], weights[order])
            return
        self._set_sorted(np.sort(d))

    def _set_sorted(self, ascending, w_ascending=None, weight_curves=None):
        """Store the voxel doses (sorted, increasing), their weights if any, and in binned mode the
        histogram.  ``weight_curves``: the cumulative weight fractions of a DVH with the same weights
        in the same order (reused by :meth:`scaled`)."""
        d = ascending
        self._asc, self._w_asc = ascending, w_ascending
        self._sorted_desc = self._asc[::-1]  # a view
        self.n_voxels = d.size
        if w_ascending is not None:
            self._set_weights(w_ascending, weight_curves)
            return
        if self.bin_width_gy is not None:
            top = max(float(self._sorted_desc[0]), 0.0)
            n_bins = int(math.floor(top / self.bin_width_gy)) + 1
            edges = np.arange(n_bins + 1, dtype=np.float64) * self.bin_width_gy
            counts, _ = np.histogram(np.clip(d, 0, None), bins=edges)
            # cumulative fraction with dose >= edge_k: sum of counts from bin k upwards
            cum = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]]) / d.size
            self._edges, self._cum = edges, cum
            self.differential_counts = counts

    def _set_weights(self, w, weight_curves=None):
        """Weights of the sorted doses, cumulative weight fractions, binned curve."""
        self._w_desc = w[::-1]
        if weight_curves is None:
            weight_sum = float(w.sum())
            cum_desc = np.cumsum(self._w_desc) / weight_sum  # c_k, volume fraction of the k hottest
            # fraction of the volume with dose >= asc[i]: sum of the weights from i upwards
            suffix = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]]) / weight_sum
            weight_curves = (weight_sum, cum_desc, suffix)
        self.weight_sum, self._cum_desc, self._suffix = weight_curves
        if self.bin_width_gy is not None:
            top = max(float(self._sorted_desc[0]), 0.0)
            n_bins = int(math.floor(top / self.bin_width_gy)) + 1
            edges = np.arange(n_bins + 1, dtype=np.float64) * self.bin_width_gy
            counts, _ = np.histogram(np.clip(self._asc, 0, None), bins=edges, weights=w)
            self._edges = edges
            self._cum = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]]) / self.weight_sum
            self.differential_counts = counts

    def scaled(self, factor):
        """The DVH of the doses times ``factor`` (> 0), without sorting again: the dose map of a
        plan at another activity (doses proportional to activity).  D_x and the statistics scale
        by ``factor``; V_x is read on the scaled doses.  Partial-volume weights are kept."""
        f = float(factor)
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"DVH scale factor must be a positive number, got {factor!r}")
        out = DVH.__new__(DVH)
        out.name, out.voxel_volume_ml, out.bin_width_gy = self.name, self.voxel_volume_ml, self.bin_width_gy
        curves = (self.weight_sum, self._cum_desc, self._suffix) if self.weighted else None
        out._set_sorted(self._asc * (np.float32(f) if self._asc.dtype == np.float32 else f), self._w_asc, curves)
        return out

    # -- basic statistics ------------------------------------------------------------------------
    @property
    def weighted(self):
        """True when the voxels carry partial-volume weights."""
        return self._w_asc is not None

    @property
    def volume_ml(self):
        if self.weighted:
            return self.weight_sum * self.voxel_volume_ml
        return self.n_voxels * self.voxel_volume_ml

    @property
    def max_gy(self):
        return float(self._sorted_desc[0])

    @property
    def min_gy(self):
        return float(self._sorted_desc[-1])

    @property
    def mean_gy(self):
        if self.weighted:
            return float(np.dot(self._w_asc, self._asc.astype(np.float64)) / self.weight_sum)
        return float(self._sorted_desc.mean(dtype=np.float64))

    @property
    def median_gy(self):
        if self.weighted:  # the weighted median: half of the volume on either side
            c, d = self._cum_desc, self._sorted_desc
            k = min(int(np.searchsorted(c, 0.5, side="left")), d.size - 1)
            if abs(c[k] - 0.5) < 1e-12 and k + 1 < d.size:
                return 0.5 * (float(d[k]) + float(d[k + 1]))
            return float(d[k])
        d, n = self._sorted_desc, self.n_voxels  # already sorted: no partition needed
        return float(d[n // 2]) if n % 2 else 0.5 * (float(d[n // 2 - 1]) + float(d[n // 2]))

    @property
    def sd_gy(self):
        if self.weighted:
            dev = self._asc.astype(np.float64) - self.mean_gy
            return float(math.sqrt(max(0.0, np.dot(self._w_asc, dev * dev) / self.weight_sum)))
        return float(self._sorted_desc.std(dtype=np.float64))

    @property
    def doses_gy(self):
        """Voxel doses in decreasing order (read-only view)."""
        v = self._sorted_desc.view()
        v.flags.writeable = False
        return v

    @property
    def weights(self):
        """The partial-volume weights of :attr:`doses_gy`, in the same order (read-only view), or
        None when every voxel counts whole."""
        if self._w_asc is None:
            return None
        v = self._w_desc.view()
        v.flags.writeable = False
        return v

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
            pos = f * n  # fractional voxel rank (1-based) on the cumulative line
            if pos <= 1:
                return float(self._sorted_desc[0])
            k = int(math.floor(pos))
            if k >= n:
                return float(self._sorted_desc[-1])
            t = pos - k
            return float((1 - t) * float(self._sorted_desc[k - 1]) + t * float(self._sorted_desc[k]))
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
        """D at volume fraction f on the line through the points (c_k, d_k)."""
        c, d = self._cum_desc, self._sorted_desc
        if f <= c[0]:
            return float(d[0])
        k = int(np.searchsorted(c, f, side="left"))
        if k >= d.size:
            return float(d[-1])
        t = (f - c[k - 1]) / (c[k] - c[k - 1])
        return float((1 - t) * float(d[k - 1]) + t * float(d[k]))

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
        if self.bin_width_gy is None and self.weighted:
            return 100.0 * float(self._suffix[np.searchsorted(self._asc, d, side="left")])
        if self.bin_width_gy is None:
            # count of voxels with dose >= d in a decreasing array
            n_ge = self.n_voxels - np.searchsorted(self._asc, d, side="left")
            return 100.0 * n_ge / self.n_voxels
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
        if self.bin_width_gy is None and self.weighted:
            vol = 100.0 * self._suffix[np.searchsorted(self._asc, dose, side="left")]
        elif self.bin_width_gy is None:
            n_ge = self.n_voxels - np.searchsorted(self._asc, dose, side="left")
            vol = 100.0 * n_ge / self.n_voxels
        else:
            vol = np.array([self.volume_pct_at_dose(x) for x in dose])
        return dose, vol

    def differential(self, bin_width_gy=1.0):
        """Differential DVH: (bin left edges Gy, volume % per bin)."""
        w = float(bin_width_gy)
        top = max(self.max_gy, 0.0)
        edges = np.arange(int(math.floor(top / w)) + 2) * w
        if self.weighted:
            counts, _ = np.histogram(np.clip(self._asc, 0, None), bins=edges, weights=self._w_asc)
            return edges[:-1], 100.0 * counts / self.weight_sum
        counts, _ = np.histogram(np.clip(self._sorted_desc, 0, None), bins=edges)
        return edges[:-1], 100.0 * counts / self.n_voxels


def _positive_weights(d, weights, name):
    """(doses, weights) of the voxels with weight > 0; InputError for bad weights."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != d.shape:
        raise InputError(f"DVH of {name or 'region'}: {w.size} weights for {d.size} voxels")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise InputError(f"DVH of {name or 'region'}: weights must be finite and >= 0")
    keep = w > 0
    return d[keep], w[keep]
