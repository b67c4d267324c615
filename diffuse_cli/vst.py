"""Signal-dependent (Poisson-Gaussian) noise through a Gaussian denoiser: the generalised Anscombe transform.

Camera noise is ``z = alpha * p + n`` with ``p ~ Poisson(x / alpha)`` and ``n ~ N(0, sigma^2)``: its variance
``alpha * x + sigma^2`` grows with the signal. The forward transform makes it approximately unit-variance
Gaussian, a Gaussian denoiser cleans it at sigma = 1, and the exact unbiased inverse (Makitalo and Foi 2013)
maps the denoised value back: it is the ``x`` whose expected transformed observation equals the denoised
value, which removes the bias the plain algebraic inverse has at low counts.

Pure NumPy; values are in the data's own units (0..255 for 8-bit images): ``alpha`` is in those units per
count, ``sigma`` in those units.
"""

from __future__ import annotations

import numpy as np

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(32)  # E[g(n)], n ~ N(0, 1), probabilists' nodes
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()
_EXACT_POISSON_MAX = 400.0  # counts: above this mean the Poisson part is taken as Gaussian (error << 0.01 count)


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
    (Makitalo and Foi 2011), within ~0.02 counts of the exact one for d > ~1; below that the Poisson mean is ~0.
    """
    d = np.maximum(np.asarray(d, dtype=np.float64), 0.8)
    s = np.sqrt(1.5)
    out = d**2 / 4.0 + s / 4.0 / d - 11.0 / 8.0 / d**2 + 5.0 / 8.0 * s / d**3 - 1.0 / 8.0
    return np.maximum(out, 0.0)


def gat_inverse(d: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """Closed-form unbiased inverse of :func:`gat_forward` (Makitalo and Foi 2013, eq. 11).

    With ``sigma_s = sigma / alpha``: ``x = alpha * (E^-1(d) - sigma_s^2)`` where ``E^-1`` is the closed-form
    exact unbiased inverse of the Anscombe transform, clipped at 0. For ``sigma = 0`` it reduces to the Poisson
    case. :func:`gat_inverse_exact` computes the inverse numerically, for any sigma and for clipped data.
    """
    sigma_s = sigma / alpha
    return alpha * np.maximum(_anscombe_exact_unbiased_inverse(d) - sigma_s**2, 0.0)


def expected_gat(x: np.ndarray, alpha: float, sigma: float, clip: tuple[float, float] | None = None) -> np.ndarray:
    """``E[f(c(z)) | x]`` for ``z = alpha p + n``, ``p ~ Poisson(x / alpha)``, ``n ~ N(0, sigma^2)``.

    ``f`` is :func:`gat_forward` and ``c`` clips to ``clip`` (the file's value range: saturated pixels), or is
    the identity when ``clip`` is None. The sum over the Poisson probabilities is exact up to a mean of 400
    counts (above it the Poisson part is Gaussian with the same mean and variance); the expectation over the
    Gaussian part is Gauss-Hermite quadrature with 32 nodes.
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    lam = np.maximum(x, 0.0) / alpha

    def f(z: np.ndarray) -> np.ndarray:
        return gat_forward(z if clip is None else np.clip(z, *clip), alpha, sigma)

    nodes = _GH_NODES if sigma > 0 else np.zeros(1)
    weights = _GH_WEIGHTS if sigma > 0 else np.ones(1)
    out = np.empty_like(lam)
    small = lam <= _EXACT_POISSON_MAX
    if small.any():
        kmax = int(np.ceil(lam[small].max() + 12.0 * np.sqrt(lam[small].max()) + 30.0))
        k = np.arange(kmax + 1, dtype=np.float64)
        log_factorial = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
        for i in np.flatnonzero(small):  # one row of Poisson probabilities per level
            li = lam[i]
            pmf = np.exp(k * np.log(li) - li - log_factorial) if li > 0 else (k == 0).astype(np.float64)
            values = f(alpha * k[:, None] + sigma * nodes[None, :]) @ weights
            out[i] = pmf @ values
    big = ~small
    if big.any():  # Poisson ~ N(lam, lam): z ~ N(x, alpha x + sigma^2)
        sd = np.sqrt(alpha * x[big] + sigma**2)
        out[big] = f(x[big, None] + sd[:, None] * _GH_NODES[None, :]) @ _GH_WEIGHTS
    return out


def gat_inverse_exact(d: np.ndarray, alpha: float, sigma: float, clip: tuple[float, float] | None = None,
                      x_max: float | None = None, points: int = 257) -> np.ndarray:
    """Exact unbiased inverse of :func:`gat_forward`: the ``x`` with ``E[f(c(z)) | x] = d`` (:func:`expected_gat`).

    The expectation is tabulated at ``x = u^2`` for ``u`` uniform on ``[0, sqrt(x_max)]`` (it is close to
    linear in ``u``) and inverted by linear interpolation in ``u``; it increases with ``x``, so the inverse is
    unique. ``x_max``: the top of the clean values, by default ``clip[1]``, else the algebraic inverse of the
    largest ``d`` with room. ``d`` below ``E[f | x=0]`` gives 0; above the table's top, ``x_max``.
    """
    d = np.asarray(d, dtype=np.float64)
    if x_max is None:
        if clip is not None:
            x_max = float(clip[1])
        else:
            top = float(np.max(d)) if d.size else 1.0
            x_max = 1.2 * max(alpha * (top / 2.0) ** 2 - 0.375 * alpha**2 - sigma**2, 0.0) + 10.0 * alpha
    u = np.linspace(0.0, np.sqrt(x_max), points)
    table = np.maximum.accumulate(expected_gat(u**2, alpha, sigma, clip))  # guard against rounding wiggles
    return np.interp(d, table, u) ** 2


def _haar_blocks(z: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per 2x2 block of a 2-D array: the mean level, the diagonal Haar detail ``(a - b - c + d) / 2`` (its
    variance is the pixel noise variance; it is ~0 on smooth content), the mean squared detail of the 8
    neighbouring blocks (how busy the surroundings are, independent of this block's own noise) and the
    block's largest value."""
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    a, b = z[0:h:2, 0:w:2], z[0:h:2, 1:w:2]
    c, d = z[1:h:2, 0:w:2], z[1:h:2, 1:w:2]
    level = (a + b + c + d) / 4.0
    detail = (a - b - c + d) / 2.0
    energy = np.pad(detail**2, 1, mode="reflect")
    rows, cols = detail.shape
    around = sum(energy[i : i + rows, j : j + cols] for i in range(3) for j in range(3)) - detail**2
    top = np.maximum(np.maximum(a, b), np.maximum(c, d))
    return level.ravel(), detail.ravel(), (around / 8.0).ravel(), top.ravel()


def _fit_line(m: np.ndarray, v: np.ndarray, alpha: float | None, sigma: float | None) -> tuple[float, float]:
    """Least-squares ``v = alpha m + sigma^2`` with either parameter fixed when given; both kept >= 0."""
    if alpha is None and sigma is None:
        slope, intercept = np.polyfit(m, v, 1)
    elif alpha is None:
        intercept = sigma**2
        slope = float(np.sum(m * (v - intercept)) / max(float(np.sum(m * m)), 1e-300))
    else:
        slope = alpha
        intercept = sigma**2 if sigma is not None else float(np.mean(v - slope * m))
    return float(max(slope, 0.0)), float(np.sqrt(max(intercept, 0.0)))


def estimate_poisson_gaussian(z: np.ndarray, clip: tuple[float, float] | None = None, bins: int = 16,
                              alpha: float | None = None, sigma: float | None = None,
                              calm: float = 0.5) -> tuple[float, float]:
    """Estimate ``(alpha, sigma)`` of ``var(z | x) = alpha x + sigma^2`` from one image (H, W) or (H, W, C).

    Every channel's 2x2 blocks are pooled (the noise is per channel, with one gain) and grouped into ``bins``
    levels of equal count. In each level, the blocks whose neighbours are the calmest (fraction ``calm``) give
    the noise variance as the mean squared diagonal Haar detail, which stays unbiased for the discrete values
    of low counts (a median of absolute deviations does not). A least-squares line through (level mean,
    variance) gives the slope ``alpha`` and the intercept ``sigma^2``; a given ``alpha`` or ``sigma`` is held.

    ``clip``: the range the values were clipped to (a file's 0..255): levels whose blocks reach the top
    more than 1 % of the time are left out at first, then every level within 2 standard deviations
    (``sqrt(alpha m + sigma^2)``) of the top, or within ``2 sigma`` of the bottom, under the current fit,
    until the set settles. Raises ValueError when fewer than two levels remain (an image under ~16x16 pixels).
    """
    z = np.asarray(z, dtype=np.float64)
    z = z[..., None] if z.ndim == 2 else z
    if z.shape[0] < 16 or z.shape[1] < 16:
        raise ValueError(f"{z.shape[0]}x{z.shape[1]} pixels: too small to estimate the noise from")
    parts = [_haar_blocks(z[..., c]) for c in range(z.shape[-1])]
    level, detail, around, top = (np.concatenate([p[i] for p in parts]) for i in range(4))
    edges = np.unique(np.quantile(level, np.linspace(0.0, 1.0, bins + 1)))
    means, variances, saturated = [], [], []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = np.flatnonzero((level >= lo) & ((level < hi) if i < len(edges) - 2 else (level <= hi)))
        if sel.size < 50:
            continue
        quiet = sel[around[sel] <= np.quantile(around[sel], calm)]
        means.append(float(level[sel].mean()))
        variances.append(float(np.mean(detail[quiet] ** 2)))
        saturated.append(float(np.mean(top[sel] >= clip[1])) if clip is not None else 0.0)
    m, v = np.asarray(means), np.asarray(variances)
    if m.size < 2:
        raise ValueError(f"{m.size} usable level(s): too few to estimate the noise from")
    keep = np.asarray(saturated) <= 0.01
    keep = keep if keep.sum() >= 2 else np.ones(m.size, dtype=bool)
    a, s = _fit_line(m[keep], v[keep], alpha, sigma)
    for _ in range(5 if clip is not None else 0):
        sd = np.sqrt(a * m + s**2)
        new = (m + 2.0 * sd <= clip[1]) & (m - 2.0 * s >= clip[0])
        if new.sum() < 2 or np.array_equal(new, keep):
            break
        keep = new
        a, s = _fit_line(m[keep], v[keep], alpha, sigma)
    return a, s
