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


_CHUNK = 1 << 18  # candidates gathered at a time: memory stays bounded on huge inputs


def _neighbourhoods(padded: np.ndarray, part: tuple[np.ndarray, ...], size: int) -> np.ndarray:
    """Values of the ``size``-wide windows centred on the points ``part`` (indices into the unpadded
    array) of ``padded`` (padded by ``size // 2`` on each spatial axis): (points, size**rank)."""
    rank = padded.ndim - 1
    offsets = np.stack(np.meshgrid(*[np.arange(size)] * rank, indexing="ij"), -1).reshape(-1, rank)
    return np.stack([padded[tuple(part[d] + off[d] for d in range(rank)) + (part[-1],)] for off in offsets], -1)


def _pad(x: np.ndarray, size: int, value: float | None = None) -> np.ndarray:
    r, rank = size // 2, x.ndim - 1
    widths = [(r, r)] * rank + [(0, 0)]
    if value is not None:
        return np.pad(x, widths, mode="constant", constant_values=value)
    return np.pad(x, widths, mode="reflect" if min(x.shape[:-1]) > r else "edge")


def detect_impulses(
    x: np.ndarray, value_range: tuple[float, float] | None, margin: float = 0.05
) -> np.ndarray:
    """Impulse mask, same shape as x (*spatial, C): a value within one 8-bit level of a range end that
    differs by more than ``margin`` of the range from the median of its *non-extreme* 3x3 (1D: 5-sample)
    neighbours.

    Leaving the other end values out keeps dense impulses (30 %) from outvoting the true neighbours;
    a value whose neighbours are all at the ends (e.g. clipped sky) is compared with the plain median.
    """
    lo, hi, tol = _extremes(x, value_range)
    at_end = (x <= lo + tol) | (x >= hi - tol)
    if not at_end.any():
        return at_end
    size = 3 if x.ndim == 3 else 5
    padded = _pad(x, size)
    extreme = _pad(at_end, size)
    idx = np.nonzero(at_end)
    mask = np.zeros_like(at_end)
    for a in range(0, idx[0].size, _CHUNK):
        part = tuple(i[a : a + _CHUNK] for i in idx)
        vals = _neighbourhoods(padded, part, size)
        good = ~_neighbourhoods(extreme, part, size)
        some = good.any(axis=-1)
        ref = np.median(vals, axis=-1)
        if some.any():
            ref[some] = np.nanmedian(np.where(good[some], vals[some], np.nan), axis=-1)
        mask[part] = np.abs(x[part] - ref) > margin * (hi - lo)
    return mask


def fill_impulses(x: np.ndarray, mask: np.ndarray, max_size: int = 7) -> np.ndarray:
    """Adaptive median fill: each impulse takes the median of its non-impulse neighbours in the smallest
    window (3, 5, ... ``max_size``) that has any; what is still unfilled (dense clusters) is filled by
    repeating the pass with the filled values counted as good.
    """
    out = np.array(x, dtype=np.float64, copy=True)
    todo = np.array(mask, dtype=bool, copy=True)
    for _ in range(8):
        if not todo.any():
            break
        good = np.where(todo, np.nan, out)
        for size in range(3, max_size + 1, 2):
            idx = np.nonzero(todo)
            if idx[0].size == 0:
                break
            padded = _pad(good, size, value=np.nan)
            for a in range(0, idx[0].size, _CHUNK):
                part = tuple(i[a : a + _CHUNK] for i in idx)
                vals = _neighbourhoods(padded, part, size)
                ok = ~np.isnan(vals).all(axis=-1)
                if ok.any():
                    sel = tuple(p[ok] for p in part)
                    out[sel] = np.nanmedian(vals[ok], axis=-1)
                    todo[sel] = False
        # next pass: the values filled so far count as good neighbours
    if todo.any():  # an image made only of impulses: nothing better than the global median of the rest
        out[todo] = np.median(out[~todo]) if (~todo).any() else 0.0
    return out


def looks_salt_pepper(x: np.ndarray, value_range: tuple[float, float] | None) -> tuple[bool, int]:
    """Decide between salt-and-pepper and Gaussian noise: (is salt-pepper, impulses found).

    Salt-and-pepper when more than 0.5 % of the values are *strong* outliers (a quarter of the range
    away from their neighbourhood's median) sitting exactly at the ends, at least 8x as many as the
    strong outliers in the adjacent bands of 5 % of the range. Heavy clipped Gaussian noise has strong
    outliers just inside the ends too; dark or bright image content has few strong outliers at all.
    """
    lo, hi, tol = _extremes(x, value_range)
    at_end = (x <= lo + tol) | (x >= hi - tol)
    if not at_end.any():
        return False, 0
    med = median_filter(x, 3 if x.ndim == 3 else 5)  # the same reference for both counts
    strong = np.abs(x - med) > 0.25 * (hi - lo)
    strong_end = int(np.count_nonzero(at_end & strong))
    band = 0.05 * (hi - lo)
    near = ((x > lo + tol) & (x <= lo + tol + band)) | ((x < hi - tol) & (x >= hi - tol - band))
    strong_near = int(np.count_nonzero(near & strong))
    if strong_end <= 0.005 * x.size or strong_end < 8 * max(strong_near, 1):
        return False, 0
    return True, int(detect_impulses(x, value_range).sum())
