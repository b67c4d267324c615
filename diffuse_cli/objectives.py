"""What the network's output means (the training objective) and how it becomes the predicted noise.

Every objective keeps the network step-conditioned: it receives the step encoding of the (real) step t
whose noise level is ``sigma(t) = sqrt((1 - alpha_bar_t) / alpha_bar_t)``. Only the scaling of its input
and the meaning of its output differ:

- ``eps``: the network predicts the noise from ``x_t``; loss ``|eps_hat - eps|^2`` (the seed's MSE).
- ``x0``: the network predicts the clean data from ``x_t``; loss ``|x0_hat - x0|^2``.
- ``edm``: Karras et al. 2022 preconditioning. With ``y = x_t / sqrt(alpha_bar_t) = x0 + sigma * eps``,
  ``D(y; sigma) = c_skip y + c_out F(c_in y; t)`` and the loss ``|F - (x0 - c_skip y) / c_out|^2``, which
  equals ``lambda(sigma) |D - x0|^2`` with ``lambda = 1 / c_out^2``: every noise level counts equally
  for the denoised output.

The denoising engine only ever sees ``eps(x_t, t)``: :func:`network_input` and :func:`eps_from_output`
wrap the raw network, so DDIM, DDPM and one-step work unchanged for every objective.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diffuse_cli.schedule import broadcast_to_rank

OBJECTIVES = ("eps", "x0", "edm")


def edm_coefficients(sigma: np.ndarray | float, sigma_data: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EDM preconditioning ``(c_skip, c_out, c_in)`` at noise level sigma.

    ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma^2 + sd^2)`` with ``sd`` the data's standard deviation.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / np.sqrt(total), 1.0 / np.sqrt(total)


def edm_loss_weight(sigma: np.ndarray | float, sigma_data: float) -> np.ndarray:
    """EDM's weight on ``|D - x0|^2``: ``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2``."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def network_input(x_t: np.ndarray, alpha_bar_t: np.ndarray | float, objective: str, sigma_data: float) -> np.ndarray:
    """What the network is fed for a diffusion state ``x_t``: ``x_t`` itself, or ``c_in y`` for ``edm``.

    ``y = x_t / sqrt(alpha_bar_t)`` is the observation at noise level ``sigma(alpha_bar_t)``.
    """
    if objective != "edm":
        return x_t
    ab = broadcast_to_rank(alpha_bar_t, np.ndim(x_t))
    sigma = np.sqrt((1.0 - ab) / ab)
    _, _, c_in = edm_coefficients(sigma, sigma_data)
    return (c_in * x_t / np.sqrt(ab)).astype(np.float32)


def eps_from_output(
    output: np.ndarray, x_t: np.ndarray, alpha_bar_t: np.ndarray | float, objective: str, sigma_data: float
) -> np.ndarray:
    """The predicted noise from the raw network output, for any objective.

    ``eps``: the output. ``x0``: ``eps = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab)``. ``edm``: the same with
    ``x0_hat = D = c_skip y + c_out F``, ``y = x_t / sqrt(ab)``. At ``ab = 1`` (t = 0, no noise) eps is
    undefined; the denoiser never asks for it there, and a tiny floor keeps the division finite.
    """
    if objective == "eps":
        return output
    ab = broadcast_to_rank(alpha_bar_t, np.ndim(x_t))
    x0_hat = output
    if objective == "edm":
        sigma = np.sqrt((1.0 - ab) / ab)
        c_skip, c_out, _ = edm_coefficients(sigma, sigma_data)
        x0_hat = c_skip * (x_t / np.sqrt(ab)) + c_out * output
    eps = (x_t - np.sqrt(ab) * x0_hat) / np.sqrt(np.maximum(1.0 - ab, 1e-12))
    return eps.astype(np.float32)


def predict_eps(
    network: Callable[[np.ndarray], np.ndarray],
    x_t: np.ndarray,
    alpha_bar_t: np.ndarray | float,
    objective: str,
    sigma_data: float,
) -> np.ndarray:
    """``eps`` for a diffusion state from ``network(input) -> output`` (the step already bound), any objective."""
    if objective == "eps":
        return network(x_t)
    output = network(network_input(x_t, alpha_bar_t, objective, sigma_data))
    return eps_from_output(output, x_t, alpha_bar_t, objective, sigma_data)


def training_target(
    x0: np.ndarray, eps: np.ndarray, alpha_bar_t: np.ndarray | float, objective: str, sigma_data: float
) -> np.ndarray:
    """The regression target of the network output (NumPy reference of the training loss).

    ``eps``: eps. ``x0``: x0. ``edm``: ``F* = (x0 - c_skip y) / c_out`` with ``y = x0 + sigma eps``.
    """
    if objective == "eps":
        return eps
    if objective == "x0":
        return x0
    ab = broadcast_to_rank(alpha_bar_t, np.ndim(x0))
    sigma = np.sqrt((1.0 - ab) / ab)
    c_skip, c_out, _ = edm_coefficients(sigma, sigma_data)
    y = x0 + sigma * eps
    return (x0 - c_skip * y) / c_out
