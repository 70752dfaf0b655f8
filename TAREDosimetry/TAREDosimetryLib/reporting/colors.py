"""Colours of the segments in the figures: their own colours, unless two can hardly be told apart.

Segmentations often give the liver, its lobes and the normal liver shades of one colour (3D Slicer's
liver colours), and a label map's palette may give the spleen the liver's colour.  On a DVH or a
contour plot they are then indistinguishable.  :func:`display_colors` keeps each segment's colour
when it differs enough from the colours already taken (CIE76 colour difference of at least
:data:`MIN_DELTA_E`), tumours first, and otherwise gives it a colour of its role, or of a palette
chosen to be told apart (Okabe and Ito's colour-blind-safe set, then a few more), the first one
far enough from every colour taken.  The segmentation's own colours (metrics.json, Slicer) are not
changed.
"""

import numpy as np

__all__ = ["MIN_DELTA_E", "delta_e", "display_colors"]

#: Smallest CIE76 difference (Lab units) between two segments' colours in a figure; about 2.3 is
#: just noticeable side by side, lines and thin contours need much more.
MIN_DELTA_E = 25.0

#: Colours tried first for a role (shades of one family: lungs blue, liver brown, ...).
_ROLE_COLORS = {
    "liver": ((0.72, 0.45, 0.30), (0.55, 0.34, 0.16)),
    "right_lobe": ((0.90, 0.60, 0.00), (0.95, 0.75, 0.35)),
    "left_lobe": ((0.80, 0.47, 0.65), (0.62, 0.30, 0.55)),
    "normal_liver": ((0.00, 0.62, 0.45), (0.50, 0.80, 0.20)),
    "perfused_normal": ((0.35, 0.80, 0.55), (0.10, 0.50, 0.30)),
    "perfused": ((0.94, 0.89, 0.26), (0.75, 0.70, 0.10)),
    "lung": ((0.34, 0.71, 0.91), (0.00, 0.45, 0.70), (0.62, 0.84, 0.96), (0.25, 0.33, 0.70)),
    "tumor": ((0.84, 0.15, 0.16), (0.95, 0.84, 0.30), (0.60, 0.20, 0.60), (1.00, 0.50, 0.00)),
    "other": ((0.60, 0.60, 0.60), (0.40, 0.40, 0.40)),
}
#: Okabe M, Ito K, "Color Universal Design (CUD): how to make figures and presentations that are
#: friendly to colorblind people" (2008): their set, then darker and lighter extras.
_PALETTE = (
    (0.90, 0.62, 0.00), (0.34, 0.71, 0.91), (0.00, 0.62, 0.45), (0.94, 0.89, 0.26), (0.00, 0.45, 0.70),
    (0.84, 0.37, 0.00), (0.80, 0.47, 0.65), (0.55, 0.34, 0.16), (0.40, 0.20, 0.60), (0.10, 0.10, 0.10),
    (0.60, 0.60, 0.60), (0.50, 0.80, 0.20), (1.00, 0.60, 0.80), (0.20, 0.80, 0.80), (0.70, 0.00, 0.30),
)
_ORDER = ("tumor", "liver", "right_lobe", "left_lobe", "normal_liver", "perfused_normal", "perfused", "lung")


def _lab(rgb):
    """CIE L*a*b* (D65) of an sRGB colour with components in [0, 1]."""
    c = np.clip(np.asarray(rgb, dtype=np.float64)[:3], 0.0, 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a, b):
    """CIE76 colour difference between two sRGB colours (components in [0, 1])."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def _far_enough(color, taken):
    return all(delta_e(color, t) >= MIN_DELTA_E for t in taken)


def _replacement(role, taken):
    candidates = list(_ROLE_COLORS.get(role, ())) + list(_PALETTE)
    for c in candidates:
        if _far_enough(c, taken):
            return c
    return max(candidates, key=lambda c: min(delta_e(c, t) for t in taken))  # the least close


def display_colors(items):
    """{name: (r, g, b)} for a figure, every pair told apart (see module docstring).

    Parameters
    ----------
    items : iterable of (name, role, (r, g, b)), e.g. the segments of a result.

    Returns
    -------
    dict in the order of ``items``; tumours keep their colours first, then the liver, lobes,
    normal liver, perfused volumes and lungs, then the rest in the given order.
    """
    items = [(str(n), str(r), tuple(float(x) for x in c[:3])) for n, r, c in items]
    rank = {role: k for k, role in enumerate(_ORDER)}
    chosen, taken = {}, []
    for name, role, color in sorted(items, key=lambda it: rank.get(it[1], len(_ORDER))):
        if name in chosen:
            continue
        pick = color if _far_enough(color, taken) else _replacement(role, taken)
        chosen[name] = pick
        taken.append(pick)
    return {name: chosen[name] for name, _, _ in items}
