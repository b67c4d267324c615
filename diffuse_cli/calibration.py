"""A model's measured sigma calibration: the noise level to tell the network for a given true one.

A network trained on a range of noise levels can read an image as noisier (or cleaner) than it is at some
levels, and its one-step estimate then over-smooths (or leaves noise). ``scripts/calibrate_sigma.py``
measures, on training images, the scale k that gives the best one-step PSNR at each sigma, and stores the
curve in the model's ``config.json`` as ``sigma_calibration``; denoising tells the network k(sigma) * sigma.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def sigma_scale(curve: Sequence[Sequence[float]] | None, sigma: float) -> float:
    """k(sigma), linear in log(sigma) between the curve's points ``[[sigma_i, k_i], ...]`` (sorted by sigma)
    and constant beyond its ends; 1 for no curve or a sigma that is not positive and finite."""
    if not curve or not (math.isfinite(sigma) and sigma > 0):
        return 1.0
    xs = np.log([float(p[0]) for p in curve])
    ks = [float(p[1]) for p in curve]
    return float(np.interp(math.log(sigma), xs, ks))


def refine_peak(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The x of the best y: the grid point, moved to the vertex of the parabola through it and its two
    neighbours when both exist and the parabola opens downward (clamped to the neighbours' span)."""
    i = int(np.argmax(ys))
    if i == 0 or i == len(xs) - 1:
        return float(xs[i])
    x, y = np.asarray(xs[i - 1 : i + 2], float), np.asarray(ys[i - 1 : i + 2], float)
    a, b, _ = np.polyfit(x, y, 2)
    if a >= 0:
        return float(xs[i])
    return float(np.clip(-b / (2 * a), x[0], x[2]))
