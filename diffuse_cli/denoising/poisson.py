"""Poisson-Gaussian (camera) noise cleaned by a Gaussian denoiser: stabilise, denoise, invert without bias.

numpy only. ``z = gain * p + n``, ``p ~ Poisson(x / gain)``, ``n ~ N(0, sigma^2)``: the generalised Anscombe
transform (:mod:`diffuse_cli.vst`) turns it into noise of standard deviation ~1, an affine map puts that into
the input's own value range (where the Gaussian denoiser is told the matching sigma), and the exact unbiased
inverse brings the denoised values back. Each colour channel is transformed on its own (photon noise is per
channel); the Gaussian denoiser then cleans the colour image as it cleans any other (a gray model through the
opponent channels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diffuse_cli import vst
from diffuse_cli.errors import InputError

GaussianDenoiser = Callable[[np.ndarray, float], np.ndarray]  # (noisy, sigma) -> clean, in the input's units


def stabilising_map(top: float, gain: float, sigma: float) -> tuple[float, float]:
    """``(offset, width)`` of the transformed range: ``f(0)`` and ``f(top) - f(0)`` for ``f = vst.gat_forward``.

    ``y = (f(z) - offset) * top / width`` lies in ``0..top`` like the input, with noise of standard
    deviation ``top / width``.
    """
    ends = vst.gat_forward(np.array([0.0, top]), gain, sigma)
    return float(ends[0]), float(ends[1] - ends[0])


def denoise_poisson(
    z: np.ndarray,
    denoise_gaussian: GaussianDenoiser,
    top: float,
    gain: float | None = None,
    sigma: float | None = None,
    clipped: bool = True,
    source: str = "",
) -> tuple[np.ndarray, dict]:
    """Clean Poisson-Gaussian noise from ``z`` ((H, W) or (H, W, C), values in ``0..top``, e.g. 0..255 or 0..1).

    ``gain`` (input units per count) and ``sigma`` (the Gaussian part, input units) are estimated from ``z``
    (:func:`diffuse_cli.vst.estimate_poisson_gaussian`) when None; a given one is held in the other's fit.
    ``clipped``: ``z`` was clipped to ``0..top`` (a file's range: saturated pixels), which the estimate and
    the inverse account for. Steps: ``f = gat_forward(z)``; ``y = (f - f(0)) * top / (f(top) - f(0))``;
    ``d = denoise_gaussian(y, top / (f(top) - f(0)))``; back to ``f``'s scale; ``x = gat_inverse_exact(d)``.

    Returns ``(x, report)``: ``x`` float64 in ``z``'s units and shape; ``report``: ``gain``, ``gain_estimated``,
    ``sigma``, ``sigma_estimated``, ``peak`` (counts at ``top``: ``top / gain``) and ``stabilised_sigma`` (what
    the Gaussian denoiser was given, input units). InputError when the image is too small or too flat to
    estimate from.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {z.shape}")
    clip = (0.0, float(top)) if clipped else None
    gain_estimated, sigma_estimated = gain is None, sigma is None
    if gain is None or sigma is None:
        try:
            gain, sigma = vst.estimate_poisson_gaussian(z, clip=clip, alpha=gain, sigma=sigma)
        except ValueError as exc:
            raise InputError(f"{source}: cannot estimate the Poisson noise ({exc}); give --gain and --sigma") from exc
    # No signal-dependent part found: a tiny gain keeps the transform defined (it is then affine, i.e. Gaussian).
    gain = max(float(gain), 1e-6 * float(top))
    sigma = float(sigma)
    offset, width = stabilising_map(top, gain, sigma)
    stabilised_sigma = float(top) / width
    y = (vst.gat_forward(z, gain, sigma) - offset) * stabilised_sigma
    d = np.asarray(denoise_gaussian(y, stabilised_sigma), dtype=np.float64)
    if d.shape != y.shape:
        raise ValueError(f"the Gaussian denoiser returned shape {d.shape} for {y.shape}")
    x = vst.gat_inverse_exact(offset + d / stabilised_sigma, gain, sigma, clip=clip)
    report = {"gain": gain, "gain_estimated": gain_estimated, "sigma": sigma, "sigma_estimated": sigma_estimated,
              "peak": float(top) / gain, "stabilised_sigma": stabilised_sigma}
    return x, report
