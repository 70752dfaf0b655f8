"""Activity accounting: vial activity decayed to the infusion time, residual, net administered
activity, and which glass-microsphere vial gives the prescribed activity on which day and hour.

Y-90 decays with the half-life of ``params.half_life_h`` (64.05 h NNDC; the instructions for use
of both devices print 64.1 h)::

    A_vial(t) = A_cal exp(-ln2 (t - t_cal) / T_half)
    A_net     = A_vial(t_infusion) (1 - residual_fraction)       or  A_vial(t_infusion) - A_residual

Glass microspheres (TheraSphere) come in vials of 3, 5, 7, 10, 15 and 20 GBq at their calibration
time (TheraSphere instructions for use); a vial holds the activity needed
A_needed = A_prescribed / (1 - residual_fraction) at t = t_cal + T_half log2(A_cal / A_needed).
"""

import datetime
import math

from .. import physics
from ..errors import InputError
from .compartments import check_fraction, check_positive

__all__ = ["GLASS_VIAL_SIZES_GBQ", "decayed_activity_gbq", "net_administered_gbq", "parse_time", "glass_vial_schedule"]

#: TheraSphere dose sizes at calibration (GBq), TheraSphere instructions for use.
GLASS_VIAL_SIZES_GBQ = (3.0, 5.0, 7.0, 10.0, 15.0, 20.0)


def parse_time(text, name):
    """A datetime from ISO 8601 text ('2026-03-01T12:00', '2026-03-01 12:00'); InputError naming ``name``."""
    if isinstance(text, datetime.datetime):
        return text
    try:
        return datetime.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise InputError(f"{name} must be a date and time like 2026-03-01T12:00, got {text!r}") from None


def _hours_between(t0, t1):
    if (t0.tzinfo is None) != (t1.tzinfo is None):
        raise InputError("give both times with a time zone (+01:00) or both without")
    return (t1 - t0).total_seconds() / 3600.0


def decayed_activity_gbq(calibration_gbq, calibration_time, at_time, half_life_h=physics.Y90_HALF_LIFE_H):
    """Activity (GBq) at ``at_time`` of a vial of ``calibration_gbq`` at ``calibration_time`` (before: more)."""
    a = check_positive("vial activity at calibration (GBq)", calibration_gbq)
    hours = _hours_between(parse_time(calibration_time, "vial calibration time"), parse_time(at_time, "infusion time"))
    return a * physics.decay_factor(hours, half_life_h), hours


def net_administered_gbq(vial_gbq_at_infusion, residual_fraction=None, residual_gbq=None):
    """(net administered GBq, residual GBq): from a residual fraction or a measured residual activity."""
    v = check_positive("vial activity at infusion (GBq)", vial_gbq_at_infusion)
    if residual_fraction is not None and residual_gbq is not None:
        raise InputError("give the residual as a fraction or as a measured activity, not both")
    if residual_gbq is not None:
        r = float(residual_gbq)
        if not (math.isfinite(r) and 0 <= r < v):
            raise InputError(f"residual activity must be >= 0 and below the vial activity ({v:g} GBq), got {residual_gbq!r}")
        return v - r, r
    f = check_fraction("residual_fraction", residual_fraction or 0.0)
    return v * (1.0 - f), v * f


def _when(calibration_time, hours):
    if calibration_time is None:
        return None
    return (parse_time(calibration_time, "vial calibration time") + datetime.timedelta(hours=hours)).isoformat(timespec="minutes")


def glass_vial_schedule(prescribed_gbq, residual_fraction=0.0, calibration_time=None, sizes_gbq=GLASS_VIAL_SIZES_GBQ,
                        half_life_h=physics.Y90_HALF_LIFE_H, max_days=14.0):
    """When each glass vial size holds the activity to infuse for ``prescribed_gbq`` net.

    Returns
    -------
    list of dicts, one per vial size large enough within ``max_days``: vial_gbq, needed_gbq (in the
    vial at infusion), hours_after_calibration, day (0 = calibration day), hour_of_day (when a
    calibration time is given), at (ISO time or None).  Before that time the vial holds more
    (infuse part of it); later it holds less than prescribed.
    """
    needed = check_positive("prescribed activity (GBq)", prescribed_gbq) / (1.0 - check_fraction("residual_fraction", residual_fraction))
    rows = []
    for size in sizes_gbq:
        if size < needed:
            continue
        hours = half_life_h * math.log2(size / needed)
        if hours > 24.0 * max_days:
            continue
        at = _when(calibration_time, hours)
        row = {"vial_gbq": size, "needed_gbq": needed, "hours_after_calibration": hours, "day": int(hours // 24), "at": at}
        if at is not None:
            t = parse_time(at, "time")
            row.update(day=(t.date() - parse_time(calibration_time, "vial calibration time").date()).days,
                       hour_of_day=t.hour + t.minute / 60.0)
        rows.append(row)
    return rows
