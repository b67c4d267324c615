"""Denoising an observed input with a step-conditioned diffusion denoiser (numpy only).

A noisy observation ``y = x + sigma * n`` is a diffusion state up to scale: with
``alpha_bar(t*) = 1 / (1 + sigma^2)``, ``sqrt(alpha_bar(t*)) * y`` has the distribution of ``x_t*``.
So the noise level is estimated (when not given), the fractional step t* found, and the reverse process
run from t* (never from pure noise at T): one posterior-mean step (default), DDIM or DDPM.

Modules, in the order :func:`denoise_media` uses them:

* ``options``  -- :class:`DenoiseOptions`, and :class:`DenoisingModel`, what a model must provide;
* ``fit``      -- can this model clean this file (channels, domain, length), resampling, noise range;
* ``estimate`` -- blind noise-level estimation for images and 1D signals;
* ``reverse``  -- t* and the reverse process (one-step, DDIM, DDPM) from an observation; DDPM's noise by
  position (:class:`PositionNoise`), so the tiling never changes a result;
* ``tiling``   -- tile layout, blending windows and the band-by-band stream over any input size;
* ``pipeline`` -- :func:`denoise_media` and :func:`denoise_array`: the steps in order.

Colour (the opponent transform) is :mod:`diffuse_cli.colour`, salt-and-pepper :mod:`diffuse_cli.impulses`,
audio above a model's band :mod:`diffuse_cli.fullband`, resampling :mod:`diffuse_cli.resample`.
"""

from diffuse_cli.denoising.estimate import estimate_sigma
from diffuse_cli.denoising.fit import check_model_fits
from diffuse_cli.denoising.options import DenoiseOptions, DenoisingModel, ProgressFn, validate_options
from diffuse_cli.denoising.pipeline import denoise_array, denoise_media
from diffuse_cli.denoising.reverse import PositionNoise, reverse_from_observation, t_star

__all__ = [
    "DenoiseOptions",
    "DenoisingModel",
    "PositionNoise",
    "ProgressFn",
    "check_model_fits",
    "denoise_array",
    "denoise_media",
    "estimate_sigma",
    "reverse_from_observation",
    "t_star",
    "validate_options",
]
