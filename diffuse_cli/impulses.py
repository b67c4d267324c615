"""Salt-and-pepper (impulse) noise: detection, adaptive-median filling, and the auto decision.

Impulses are values stuck at the ends of the value range; they are found and filled before the
Gaussian part of the noise is cleaned by the diffusion model. numpy only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _padded_windows(x: np.ndarray, size: int) -> np.ndarray:
    """Sliding windows of side ``size`` over the spatial axes of (*spatial, C): (*spatial, C, size...)."""
    rank = x.ndim - 1
    r = size // 2
    padded = np.pad(x, [(r, r)] * rank + [(0, 0)], mode="reflect" if min(x.shape[:-1]) > r else "edge")
    return sliding_window_view(padded, (size,) * rank, axis=tuple(range(rank)))


def median_filter(x: np.ndarray, size: int = 3, rows: int = 256) -> np.ndarray:
    """Median over a ``size`` window (per channel, reflect at borders), in strips to bound memory."""
    out = np.empty_like(x)
    r = size // 2
    for a in range(0, x.shape[0], rows):
        b = min(a + rows, x.shape[0])
        lo, hi = max(a - r, 0), min(b + r, x.shape[0])
        win = _padded_windows(x[lo:hi], size)
        med = np.median(win.reshape(win.shape[: x.ndim] + (-1,)), axis=-1)
        out[a:b] = med[a - lo : a - lo + (b - a)]
    return out


def _extremes(x: np.ndarray, value_range: tuple[float, float] | None) -> tuple[float, float, float]:
    """The value range's ends (the data's own min/max when the format has no range) and a tolerance."""
    lo, hi = value_range if value_range is not None else (float(np.min(x)), float(np.max(x)))
    return lo, hi, (hi - lo) / 255.0  # one 8-bit level: impulses sit exactly at the ends


def detect_impulses(
    x: np.ndarray, value_range: tuple[float, float] | None, margin: float = 0.05
) -> np.ndarray:
    """Impulse mask, same shape as x (*spatial, C): a value within one 8-bit level of a range end that
    differs from its 3x3 (1D: 5-sample) median by more than ``margin`` of the range.
    """
    lo, hi, tol = _extremes(x, value_range)
    at_end = (x <= lo + tol) | (x >= hi - tol)
    if not at_end.any():
        return at_end
    # 1D: 5 samples, since two neighbouring impulses of one sign would win a 3-sample median.
    med = median_filter(x, 3 if x.ndim == 3 else 5)
    return at_end & (np.abs(x - med) > margin * (hi - lo))


def fill_impulses(x: np.ndarray, mask: np.ndarray, max_size: int = 7) -> np.ndarray:
    """Adaptive median fill: each impulse takes the median of its non-impulse neighbours in the smallest
    window (3, 5, ... ``max_size``) that has any; what is still unfilled (dense clusters) is filled by
    repeating the pass with the filled values counted as good.
    """
    out = np.array(x, dtype=np.float64, copy=True)
    todo = np.array(mask, dtype=bool, copy=True)
    rank = x.ndim - 1
    for _ in range(8):
        if not todo.any():
            break
        good = np.where(todo, np.nan, out)
        for size in range(3, max_size + 1, 2):
            idx = np.nonzero(todo)
            if idx[0].size == 0:
                break
            r = size // 2
            padded = np.pad(good, [(r, r)] * rank + [(0, 0)], mode="constant", constant_values=np.nan)
            offsets = np.stack(np.meshgrid(*[np.arange(size)] * rank, indexing="ij"), -1).reshape(-1, rank)
            for a in range(0, idx[0].size, 1 << 18):  # bounded gather
                part = tuple(i[a : a + (1 << 18)] for i in idx)
                vals = np.stack(
                    [padded[tuple(part[d] + off[d] for d in range(rank)) + (part[-1],)] for off in offsets], -1
                )
                ok = ~np.isnan(vals).all(axis=-1)
                if ok.any():
                    med = np.nanmedian(vals[ok], axis=-1)
                    sel = tuple(p[ok] for p in part)
                    out[sel] = med
                    todo[sel] = False
        # next pass: the values filled so far count as good neighbours
    if todo.any():  # an image made only of impulses: nothing better than the global median of the rest
        out[todo] = np.median(out[~todo]) if (~todo).any() else 0.0
    return out


def looks_salt_pepper(x: np.ndarray, value_range: tuple[float, float] | None) -> tuple[bool, int]:
    """Decide between salt-and-pepper and Gaussian noise: (is salt-pepper, impulses found).

    Salt-and-pepper when more than 0.5% of the values are impulses that disagree strongly (a quarter of
    the range) with their neighbourhood *and* the histogram spikes at the ends: at least 8x as many
    values at the ends as in the adjacent band of 5% of the range (clipped Gaussian noise rises
    smoothly towards the ends instead).
    """
    lo, hi, tol = _extremes(x, value_range)
    strong = detect_impulses(x, value_range, margin=0.25)
    fraction = float(strong.mean()) if strong.size else 0.0
    at_ends = np.count_nonzero((x <= lo + tol) | (x >= hi - tol))
    band = 0.05 * (hi - lo)
    near = np.count_nonzero(((x > lo + tol) & (x <= lo + tol + band)) | ((x < hi - tol) & (x >= hi - tol - band)))
    spike = at_ends >= 8 * max(near, 1)
    mask = detect_impulses(x, value_range)
    return bool(fraction > 0.005 and spike), int(mask.sum())
