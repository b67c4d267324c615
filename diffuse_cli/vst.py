"""Signal-dependent (Poisson-Gaussian) noise through a Gaussian denoiser: the generalised Anscombe transform.

Camera noise is ``z = alpha * p + n`` with ``p ~ Poisson(x / alpha)`` and ``n ~ N(0, sigma^2)``: its variance
``alpha * x + sigma^2`` grows with the signal. The forward transform makes it approximately unit-variance
Gaussian, a Gaussian denoiser cleans it at sigma = 1, and the exact unbiased inverse (Makitalo and Foi 2013)
maps the denoised value back, correcting the bias that the plain algebraic inverse has at low counts.

Pure NumPy; values are in the file's own units (0..255 for 8-bit images).
"""

from __future__ import annotations

import numpy as np


def gat_forward(z: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """Generalised Anscombe transform: ``f(z) = (2 / alpha) sqrt(max(alpha z + 3/8 alpha^2 + sigma^2, 0))``.

    For ``alpha = 1, sigma = 0`` this is the classical Anscombe ``2 sqrt(z + 3/8)``; the output has noise of
    standard deviation ~1 wherever the counts are not tiny.
    """
    z = np.asarray(z, dtype=np.float64)
    return (2.0 / alpha) * np.sqrt(np.maximum(alpha * z + 0.375 * alpha**2 + sigma**2, 0.0))


def _anscombe_exact_unbiased_inverse(d: np.ndarray) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of ``2 sqrt(p + 3/8)`` for Poisson ``p``.

    ``E^-1(d) = d^2/4 + sqrt(3/2)/4 d^-1 - 11/8 d^-2 + 5/8 sqrt(3/2) d^-3 - 1/8``
    (Makitalo and Foi 2011), accurate to < 1e-3 counts for d > ~1; below that the Poisson mean is ~0.
    """
    d = np.maximum(np.asarray(d, dtype=np.float64), 0.8)
    s = np.sqrt(1.5)
    out = d**2 / 4.0 + s / 4.0 / d - 11.0 / 8.0 / d**2 + 5.0 / 8.0 * s / d**3 - 1.0 / 8.0
    return np.maximum(out, 0.0)


def gat_inverse(d: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """Unbiased inverse of :func:`gat_forward` for Poisson-Gaussian noise (Makitalo and Foi 2013, eq. 11).

    With ``sigma_s = sigma / alpha``: ``x = alpha * (E^-1(d) - sigma_s^2)`` where ``E^-1`` is the exact unbiased
    inverse of the Anscombe transform, clipped at 0. For ``sigma = 0`` it reduces to the Poisson case.
    """
    sigma_s = sigma / alpha
    return alpha * np.maximum(_anscombe_exact_unbiased_inverse(d) - sigma_s**2, 0.0)


def estimate_poisson_gaussian(z: np.ndarray, bins: int = 16) -> tuple[float, float]:
    """Estimate ``(alpha, sigma)`` of ``var(z | x) = alpha x + sigma^2`` from one image.

    Local means and robust local noise variances (the finest diagonal Haar detail, which is ~zero for smooth
    content) are grouped by level; a least-squares line through (mean, variance) gives the slope alpha and
    intercept sigma^2, both clipped to be non-negative.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 3:
        z = z.mean(axis=-1)
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    if h < 8 or w < 8:
        return 1.0, 0.0
    a, b = z[0:h:2, 0:w:2], z[0:h:2, 1:w:2]
    c, d = z[1:h:2, 0:w:2], z[1:h:2, 1:w:2]
    level = (a + b + c + d) / 4.0
    detail = (a - b - c + d) / 2.0  # variance of this term equals the pixel noise variance
    edges = np.quantile(level, np.linspace(0.0, 1.0, bins + 1))
    means, variances = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (level >= lo) & (level <= hi)
        if sel.sum() < 50:
            continue
        mad = np.median(np.abs(detail[sel] - np.median(detail[sel])))
        means.append(level[sel].mean())
        variances.append((mad / 0.6745) ** 2)
    if len(means) < 2:
        return 1.0, float(np.sqrt(variances[0])) if variances else 0.0
    slope, intercept = np.polyfit(np.asarray(means), np.asarray(variances), 1)
    return float(max(slope, 1e-6)), float(np.sqrt(max(intercept, 0.0)))
