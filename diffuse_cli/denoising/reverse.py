"""The reverse process from an observation: t*, then one posterior-mean step, DDIM or DDPM down to 0.

A noisy observation ``y = x + sigma * n`` is a diffusion state up to scale: with
``alpha_bar(t*) = 1 / (1 + sigma^2)``, ``sqrt(alpha_bar(t*)) * y`` has the distribution of ``x_t*``
(:func:`diffuse_cli.schedule.alpha_bar_to_sigma`). So the reverse process starts at t*, never from pure
noise at T (that would generate a new sample instead of cleaning this one). Every formula is
:mod:`diffuse_cli.schedule`'s; numpy only.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from diffuse_cli import schedule as sch
from diffuse_cli.enums import Method

if TYPE_CHECKING:
    from diffuse_cli.denoising.options import DenoisingModel


def t_star(schedule: sch.Schedule, sigma_model: float) -> float:
    """The fractional step whose state matches noise ``sigma``: ``alpha_bar(t*) = 1 / (1 + sigma^2)``."""
    return float(schedule.sigma_to_t(sigma_model))


def reverse_from_observation(
    model: DenoisingModel,
    y: np.ndarray,
    t_start: float,
    method: Method | str,
    steps: int,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Clean a batch ``y`` (B, *spatial, C) of observations with noise sigma(t_start).

    ``x_t* = sqrt(alpha_bar(t*)) * y``; then ``onestep``: ``x0_hat = predict_x0(x_t*, eps(x_t*, t*))``
    (the posterior mean); ``ddim``: deterministic DDIM (eta = 0) along ``step_sequence(t*, steps)`` to 0;
    ``ddpm``: ancestral DDPM steps along the same sequence (noise from ``rng``). The last step lands at
    t = 0, where ``alpha_bar = 1`` and the state is the clean estimate.
    """
    method = Method(method)
    schedule = model.schedule
    batch = y.shape[0]
    ab_start = float(schedule.alpha_bar_at(t_start))
    x = math.sqrt(ab_start) * np.asarray(y, dtype=np.float64)

    def eps_at(x_t: np.ndarray, t: float) -> np.ndarray:
        t_batch = np.full((batch,), t, dtype=np.float32)
        return np.asarray(model.eps(x_t.astype(np.float32), t_batch), dtype=np.float64)

    if method == Method.onestep:
        return sch.predict_x0(x, eps_at(x, t_start), ab_start)
    if method == Method.ddpm and rng is None:
        rng = np.random.default_rng()
    for t, s in itertools.pairwise(sch.step_sequence(t_start, steps)):
        ab_t, ab_s = float(schedule.alpha_bar_at(t)), float(schedule.alpha_bar_at(s))
        eps = eps_at(x, float(t))
        if method == Method.ddim:
            x = sch.ddim_step(x, eps, ab_t, ab_s)
        else:
            x = sch.ddpm_step(x, eps, ab_t, ab_s, rng.standard_normal(x.shape))
    return x
