"""Procedural "dead leaves" images: opaque discs of power-law radii falling on each other.

The dead leaves model (Matheron; Lee, Mumford and Huang 2001) is scale invariant when the radii have
density ``p(r) ~ r^-3``, and its occlusions, edges and flat areas resemble natural images' statistics
closely enough that denoisers trained on it approach those trained on photographs (Achddou et al. 2021,
"Synthetic images as a regularity prior for image restoration neural networks"). Here each disc carries a
random grey level, a linear shading and, for some, a sinusoidal texture, so regions are not perfectly flat;
the image is rendered at twice the size and averaged down (anti-aliased edges), then blurred by a random
small Gaussian (out-of-focus regions).

Pure NumPy; every image is a function of its generator (same seed, same image).
"""

from __future__ import annotations

import numpy as np


def power_law_radii(n: int, r_min: float, r_max: float, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` radii with density ``p(r) = C r^-alpha`` on ``[r_min, r_max]`` (``alpha != 1``), by inverse CDF.

    ``F(r) = (r^(1-alpha) - r_min^(1-alpha)) / (r_max^(1-alpha) - r_min^(1-alpha))``, so
    ``r = (r_min^(1-alpha) + u (r_max^(1-alpha) - r_min^(1-alpha)))^(1 / (1-alpha))`` for ``u ~ U(0, 1)``.
    """
    e = 1.0 - alpha
    u = rng.random(n)
    return (r_min**e + u * (r_max**e - r_min**e)) ** (1.0 / e)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian ``exp(-x^2 / (2 sigma^2))`` on ``|x| <= 3 sigma`` (at least one tap)."""
    half = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders; ``sigma <= 0`` returns a copy."""
    if sigma <= 0:
        return img.copy()
    k = gaussian_kernel(sigma)
    half = len(k) // 2
    padded = np.pad(img, half, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 1, padded, k, mode="valid")
    return np.apply_along_axis(np.convolve, 0, rows, k, mode="valid")


def dead_leaves(
    size: int,
    rng: np.random.Generator,
    r_min: float = 2.0,
    r_max: float = 200.0,
    alpha: float = 3.0,
    max_discs: int = 30000,
    max_blur: float = 1.2,
) -> np.ndarray:
    """A ``size`` x ``size`` dead leaves image in ``[0, 1]`` (float64).

    Discs are drawn front to back: each one only paints pixels no earlier disc covered (the first disc
    is on top), until every pixel is covered or ``max_discs`` were drawn (then the rest takes the mean).
    Radii (in output pixels) follow :func:`power_law_radii`; a disc's value is
    ``g + s ((x - cx) cos(theta) + (y - cy) sin(theta)) / r + a sin(2 pi f d)``, with ``g ~ U(0, 1)``, a
    shading ``s`` of up to 0.15 across the disc, and for a quarter of the discs a stripe texture of
    amplitude ``a <= 0.08`` along a random direction ``d``; values are clipped to ``[0, 1]``.
    """
    big = 2 * size  # rendered at twice the size, then 2x2-averaged: anti-aliased edges
    out = np.full((big, big), np.nan)
    uncovered = big * big
    radii = power_law_radii(max_discs, r_min, r_max, alpha, rng) * 2
    for r in radii:
        cy, cx = rng.uniform(-r, big + r, size=2)
        y0, y1 = max(0, int(cy - r)), min(big, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(big, int(cx + r) + 1)
        g, s, theta = rng.random(), rng.uniform(0, 0.15), rng.uniform(0, 2 * np.pi)
        textured = rng.random() < 0.25
        amp, freq, phi = rng.uniform(0, 0.08), rng.uniform(0.05, 0.4), rng.uniform(0, 2 * np.pi)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        inside = (dx * dx + dy * dy <= r * r) & np.isnan(out[y0:y1, x0:x1])
        if not inside.any():
            continue
        along = dx * np.cos(theta) + dy * np.sin(theta)
        value = g + s * along / r
        if textured:
            value = value + amp * np.sin(freq * (dx * np.sin(phi) - dy * np.cos(phi)) + phi)
        block = out[y0:y1, x0:x1]
        block[inside] = np.clip(value[inside], 0.0, 1.0)
        uncovered -= int(inside.sum())
        if uncovered == 0:
            break
    out[np.isnan(out)] = np.nanmean(out) if uncovered < big * big else 0.5
    small = out.reshape(size, 2, size, 2).mean(axis=(1, 3))
    return np.clip(gaussian_blur(small, rng.uniform(0, max_blur)), 0.0, 1.0)


def dead_leaves_uint8(size: int, seed: int) -> np.ndarray:
    """:func:`dead_leaves` with its defaults from ``np.random.default_rng(seed)``, as 8-bit grey levels."""
    img = dead_leaves(size, np.random.default_rng(seed))
    return np.round(img * 255).astype(np.uint8)
