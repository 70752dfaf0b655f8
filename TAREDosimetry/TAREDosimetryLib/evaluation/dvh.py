"""Dose-volume histograms and the D/V metrics read from them.

Two modes, both interpolated (never the value of the nearest bin):

* **exact** (``bin_width_gy=None``): the voxel doses are sorted.  With doses in decreasing order
  d_1 >= d_2 >= ... >= d_N (each voxel a volume fraction 1/N), the cumulative DVH passes through
  the points (k/N, d_k), joined by straight lines.  ``D(x)`` reads the dose at volume fraction
  x/100 on that line (``D(x) = d_1`` for x <= 100/N); ``V(d)`` is the exact fraction of voxels
  with dose >= d.
* **binned** (``bin_width_gy=w``): a histogram with bins [0, w), [w, 2w), ...; the cumulative DVH
  is exact at the bin edges and linear between them; ``D`` inverts that piecewise-linear curve.

Volumes are voxel counts times the voxel volume (all voxels of one DVH have the same volume).
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
    """

    def __init__(self, dose_gy, voxel_volume_ml=1.0, bin_width_gy=None, name=""):
        d = np.asarray(dose_gy).ravel()
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
        self._set_sorted(np.sort(d))

    def _set_sorted(self, ascending):
        """Store the voxel doses (sorted, increasing) and, in binned mode, the histogram."""
        d = ascending
        self._asc = ascending
        self._sorted_desc = self._asc[::-1]  # a view
        self.n_voxels = d.size
        if self.bin_width_gy is not None:
            top = max(float(self._sorted_desc[0]), 0.0)
            n_bins = int(math.floor(top / self.bin_width_gy)) + 1
            edges = np.arange(n_bins + 1, dtype=np.float64) * self.bin_width_gy
            counts, _ = np.histogram(np.clip(d, 0, None), bins=edges)
            # cumulative fraction with dose >= edge_k: sum of counts from bin k upwards
            cum = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]]) / d.size
            self._edges, self._cum = edges, cum
            self.differential_counts = counts

    def scaled(self, factor):
        """The DVH of the doses times ``factor`` (> 0), without sorting again: the dose map of a
        plan at another activity (doses proportional to activity).  D_x and the statistics scale
        by ``factor``; V_x is read on the scaled doses."""
        f = float(factor)
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"DVH scale factor must be a positive number, got {factor!r}")
        out = DVH.__new__(DVH)
        out.name, out.voxel_volume_ml, out.bin_width_gy = self.name, self.voxel_volume_ml, self.bin_width_gy
        out._set_sorted(self._asc * (np.float32(f) if self._asc.dtype == np.float32 else f))
        return out

    # -- basic statistics ------------------------------------------------------------------------
    @property
    def volume_ml(self):
        return self.n_voxels * self.voxel_volume_ml

    @property
    def max_gy(self):
        return float(self._sorted_desc[0])

    @property
    def min_gy(self):
        return float(self._sorted_desc[-1])

    @property
    def mean_gy(self):
        return float(self._sorted_desc.mean(dtype=np.float64))

    @property
    def median_gy(self):
        d, n = self._sorted_desc, self.n_voxels  # already sorted: no partition needed
        return float(d[n // 2]) if n % 2 else 0.5 * (float(d[n // 2 - 1]) + float(d[n // 2]))

    @property
    def sd_gy(self):
        return float(self._sorted_desc.std(dtype=np.float64))

    @property
    def doses_gy(self):
        """Voxel doses in decreasing order (read-only view)."""
        v = self._sorted_desc.view()
        v.flags.writeable = False
        return v

    # -- D and V ---------------------------------------------------------------------------------
    def dose_at_volume_pct(self, volume_pct):
        """D_x: minimum dose received by the hottest ``volume_pct`` % of the volume, Gy."""
        x = float(volume_pct)
        if not 0 <= x <= 100:
            raise InputError(f"volume_pct must be within [0, 100], got {volume_pct!r}")
        f = x / 100.0
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
        # binned: cum is non-increasing along edges; find dose where cum == f
        cum, edges = self._cum, self._edges
        if f >= cum[0]:
            # Every voxel receives at least the highest edge where the curve is still at 100 %
            # (the edge below the minimum dose), not 0 Gy.
            return float(edges[np.flatnonzero(cum >= cum[0])[-1]])
        if f <= 0:
            return float(edges[-1])
        # np.interp needs increasing x: reverse
        return float(np.interp(f, cum[::-1], edges[::-1]))

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
        if self.bin_width_gy is None:
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
        counts, _ = np.histogram(np.clip(self._sorted_desc, 0, None), bins=edges)
        return edges[:-1], 100.0 * counts / self.n_voxels
