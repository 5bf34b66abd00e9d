"""Nice axis ticks: round values inside the data range, with a format that shows them exactly.

bqplot leaves ticks to d3, which (with a fixed format) can print uneven or repeated labels and
ticks outside the data; the views set ``Axis.tick_values`` and the scale's limits from these
helpers instead.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["log_ticks", "nice_limits", "nice_step", "nice_ticks", "set_ticks", "tick_format"]


def nice_step(span: float, n: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``n`` ticks over
    ``span``."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(n, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * power * (1 + 1e-9):
            return m * power
    return 10.0 * power


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> np.ndarray:
    """Round tick values inside ``[lo, hi]`` (about ``n`` of them; whole numbers when
    ``integer``). A degenerate range gives its one value."""
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    if hi - lo <= 0:
        return np.array([lo])
    step = nice_step(hi - lo, n)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = np.arange(first, hi + step * 1e-9, step)
    return np.round(ticks, 12) + 0.0  # no -0.0


def log_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    """At most ``n`` round ticks inside ``[lo, hi]`` (both > 0) for a log axis: 1, 2 and 5
    times powers of ten, or the powers alone (every k-th) when those would crowd it."""
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    powers = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for steps in ((1, 2, 5), (1,)):
        ticks = [m * 10.0 ** k for k in powers for m in steps if lo <= m * 10.0 ** k <= hi]
        if len(ticks) <= n:
            break
    ticks = ticks[::max(1, -(-len(ticks) // n))] or [lo]
    return np.array(ticks)


def nice_limits(lo: float, hi: float, pad: float = 0.05) -> tuple[float, float]:
    """``[lo, hi]`` widened by ``pad`` of its span on both sides (by 1 when it is empty)."""
    lo, hi = float(lo), float(hi)
    span = hi - lo
    if not span > 0:
        return lo - 1.0, hi + 1.0
    return lo - pad * span, hi + pad * span


def tick_format(ticks: np.ndarray, percent: bool = False) -> str:
    """A d3 format that prints every value of ``ticks`` exactly and no more digits."""
    ticks = np.asarray(ticks, dtype=float)
    scale = 100.0 if percent else 1.0
    decimals = 0
    while decimals < 6 and not np.allclose(np.round(ticks * scale, decimals), ticks * scale,
                                           rtol=0, atol=1e-9):
        decimals += 1
    return f".{decimals}{'%' if percent else 'f'}"


def set_ticks(axis, scale, lo: float, hi: float, limits: tuple[float, float] | None = None,
              n: int = 4, percent: bool = False):
    """Give a bqplot ``axis`` round ticks inside ``[lo, hi]`` and its ``scale`` the limits
    ``limits`` (``[lo, hi]`` plus 6% by default).

    The format goes first, then the tick values, then the limits: the front end redraws the
    axis when the limits change, and a format changed after the values was left unused (ticks
    of 0.5 read "1" under the earlier ".0f").
    """
    ticks = nice_ticks(lo, hi, n)
    axis.tick_format = tick_format(ticks, percent)
    axis.tick_values = ticks
    limits = nice_limits(lo, hi, 0.06) if limits is None else limits
    with scale.hold_sync():
        scale.min, scale.max = limits
