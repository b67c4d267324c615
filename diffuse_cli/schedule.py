"""Diffusion schedule math: betas, alpha_bar, q_sample, sigma <-> t, DDIM and DDPM steps.

Pure numpy functions, float64 inside. Steps are real numbers in [0, T]:
``alpha_bar(0) = 1`` (clean data) and ``alpha_bar(t) = prod_{s=1..t} (1 - beta_s)`` for
integer t; between integers log(alpha_bar) is interpolated linearly, so a noise level
that falls between two steps maps to a fractional t (the sinusoidal encoding takes real t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("linear", "cosine")
MAX_BETA = 0.999  # as in improved-diffusion: 1 - beta stays > 0, so alpha_bar stays positive and decreasing


def linear_betas(
    timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02, max_beta: float = MAX_BETA
) -> np.ndarray:
    """Linear betas (Ho et al. 2020): ``beta_t = min(s * (beta_start + (beta_end - beta_start) * (t-1)/(T-1)),
    max_beta)`` with ``s = 1000 / T``.

    The start/end are given for T = 1000 and rescaled by ``1000 / T`` so that other lengths span the
    same range of noise levels; below about 20 steps the rescaled end passes 1 (T = 10: 2.0), hence
    the cap. For T = 1000 no beta reaches the cap, so the betas are exactly ``linspace(1e-4, 0.02, T)``.
    """
    scale = 1000.0 / timesteps
    return np.minimum(np.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=np.float64), max_beta)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = MAX_BETA) -> np.ndarray:
    """Cosine betas (Nichol & Dhariwal 2021).

    ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2``,
    ``beta_t = min(1 - alpha_bar(t) / alpha_bar(t-1), max_beta)``.
    """

    def f(t: np.ndarray) -> np.ndarray:
        return np.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2

    t = np.arange(timesteps + 1, dtype=np.float64)
    ab = f(t) / f(np.zeros(1))
    return np.minimum(1.0 - ab[1:] / ab[:-1], max_beta)


def make_betas(kind: str, timesteps: int) -> np.ndarray:
    """Betas for a named schedule (``linear`` or ``cosine``), checked by :func:`check_betas`."""
    if kind == "linear":
        return check_betas(linear_betas(timesteps))
    if kind == "cosine":
        return check_betas(cosine_betas(timesteps))
    raise ValueError(f"unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")


def check_betas(betas: np.ndarray) -> np.ndarray:
    """``betas`` itself when every ``0 < beta_t <= MAX_BETA``; a ValueError otherwise (a beta of 1 or more
    would make alpha_bar zero or negative: the "noisiest" steps would not be noise)."""
    betas = np.asarray(betas, dtype=np.float64)
    bad = ~((betas > 0) & (betas <= MAX_BETA))
    if np.any(bad):
        index = int(np.argmax(bad))
        raise ValueError(f"beta_{index + 1} = {betas[index]!r} is outside (0, {MAX_BETA}]")
    return betas


def alpha_bars(betas: np.ndarray) -> np.ndarray:
    """Cumulative signal fraction: ``alpha_bar[t] = prod_{s=1..t} (1 - beta_s)``, with ``alpha_bar[0] = 1``.

    Returns an array of length T + 1 indexed by the step t.
    """
    return np.concatenate([[1.0], np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))])


@dataclass(frozen=True)
class Schedule:
    """A noise schedule: only float64 arrays and their names; it never calls a network."""

    kind: str
    timesteps: int
    betas: np.ndarray  # (T,), beta_t for t = 1..T
    alpha_bar: np.ndarray  # (T + 1,), alpha_bar[t] for t = 0..T

    @classmethod
    def create(cls, kind: str = "linear", timesteps: int = 1000) -> Schedule:
        if timesteps < 2:
            raise ValueError("timesteps must be at least 2")
        betas = make_betas(kind, timesteps)
        return cls(kind=kind, timesteps=timesteps, betas=betas, alpha_bar=alpha_bars(betas))

    def alpha_bar_at(self, t: np.ndarray | float) -> np.ndarray:
        """alpha_bar at real-valued steps t in [0, T], log-linear between integer steps."""
        return alpha_bar_at(self.alpha_bar, t)

    def sigma_to_t(self, sigma: np.ndarray | float) -> np.ndarray:
        """The (fractional) step whose diffusion state matches an observation with noise ``sigma``."""
        return sigma_to_t(self.alpha_bar, sigma)

    def t_to_sigma(self, t: np.ndarray | float) -> np.ndarray:
        """The observation noise level ``sigma`` that step t corresponds to."""
        return alpha_bar_to_sigma(self.alpha_bar_at(t))


def alpha_bar_at(alpha_bar: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Interpolate alpha_bar at real t: ``log ab(t) = (1-f) log ab[floor t] + f log ab[floor t + 1]``."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, len(alpha_bar) - 1)
    log_ab = np.log(np.maximum(alpha_bar, 1e-300))
    return np.exp(np.interp(t, np.arange(len(alpha_bar), dtype=np.float64), log_ab))


def broadcast_to_rank(values: np.ndarray, rank: int) -> np.ndarray:
    """Reshape a per-example value (batch,) to (batch, 1, ..., 1) so it broadcasts over an array of ``rank``.

    One helper for every formula below, so 1D signals and 2D images share them.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape + (1,) * (rank - values.ndim))


def q_sample(x0: np.ndarray, eps: np.ndarray, alpha_bar_t: np.ndarray | float) -> np.ndarray:
    """Forward diffusion q(x_t | x_0): ``x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps``."""
    ab = broadcast_to_rank(alpha_bar_t, np.ndim(x0))
    return np.sqrt(ab) * x0 + np.sqrt(1.0 - ab) * eps


def alpha_bar_to_sigma(alpha_bar_t: np.ndarray | float) -> np.ndarray:
    """Observation noise of a diffusion state: ``sigma^2 = (1 - alpha_bar_t) / alpha_bar_t``.

    ``x_t / sqrt(alpha_bar_t) = x_0 + sigma * eps``, so a noisy observation ``y = x + sigma n``
    scaled by ``sqrt(alpha_bar_t)`` has exactly the distribution of x_t.
    """
    ab = np.asarray(alpha_bar_t, dtype=np.float64)
    return np.sqrt((1.0 - ab) / ab)


def sigma_to_alpha_bar(sigma: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`alpha_bar_to_sigma`: ``alpha_bar = 1 / (1 + sigma^2)``."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return 1.0 / (1.0 + sigma**2)


def sigma_to_t(alpha_bar: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    """Real step t with ``alpha_bar(t) = 1 / (1 + sigma^2)``, by inverting the log-linear interpolation.

    Clipped to [0, T]: sigma 0 gives t = 0, a sigma beyond the schedule's last step gives T.
    """
    target = np.log(sigma_to_alpha_bar(sigma))
    log_ab = np.log(np.maximum(alpha_bar, 1e-300))
    # log_ab decreases with t; np.interp needs increasing x, so interpolate on -log_ab.
    return np.interp(-target, -log_ab, np.arange(len(alpha_bar), dtype=np.float64))


def predict_x0(x_t: np.ndarray, eps: np.ndarray, alpha_bar_t: np.ndarray | float) -> np.ndarray:
    """Posterior-mean estimate of the clean data: ``x0_hat = (x_t - sqrt(1 - ab_t) * eps) / sqrt(ab_t)``."""
    ab = broadcast_to_rank(alpha_bar_t, np.ndim(x_t))
    return (x_t - np.sqrt(1.0 - ab) * eps) / np.sqrt(ab)


def clip_eps(x_t: np.ndarray, eps: np.ndarray, alpha_bar_t: np.ndarray | float, low: float,
             high: float) -> np.ndarray:
    """The eps whose clean-data estimate is clipped to the data range [low, high] (improved-diffusion's
    ``clip_denoised``): ``x0 = clip(predict_x0(x_t, eps, ab_t), low, high)``,
    ``eps' = (x_t - sqrt(ab_t) * x0) / sqrt(1 - ab_t)``.

    :func:`ddim_step` and :func:`ddpm_step` given ``eps'`` then step from the clipped x0 (DDIM keeps the
    direction consistent with it, DDPM takes its posterior mean around it). ``eps' = eps`` exactly where x0
    is inside the range. For ``ab_t = 1`` (t = 0) x0 is ``x_t`` and there is nothing to step: ``eps``.
    """
    ab = broadcast_to_rank(alpha_bar_t, np.ndim(x_t))
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    clipped = np.clip(x0, low, high)
    with np.errstate(divide="ignore", invalid="ignore"):
        recomputed = (x_t - np.sqrt(ab) * clipped) / np.sqrt(1.0 - ab)
    return np.where((clipped == x0) | (ab >= 1.0), eps, recomputed)


def ddim_step(
    x_t: np.ndarray,
    eps: np.ndarray,
    alpha_bar_t: np.ndarray | float,
    alpha_bar_prev: np.ndarray | float,
    eta: float = 0.0,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """One DDIM step (Song et al. 2021) from t to an earlier step s.

    ``x0 = predict_x0(x_t, eps, ab_t)``;
    ``sigma_s = eta * sqrt((1 - ab_s) / (1 - ab_t)) * sqrt(1 - ab_t / ab_s)``;
    ``x_s = sqrt(ab_s) * x0 + sqrt(1 - ab_s - sigma_s^2) * eps + sigma_s * z``.
    With eta = 0 the step is deterministic and, given the true eps, lands exactly on q(x_s | x_0)'s mean path.
    """
    rank = np.ndim(x_t)
    ab_t = broadcast_to_rank(alpha_bar_t, rank)
    ab_s = broadcast_to_rank(alpha_bar_prev, rank)
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    sigma_s = eta * np.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * np.sqrt(np.maximum(1.0 - ab_t / ab_s, 0.0))
    out = np.sqrt(ab_s) * x0 + np.sqrt(np.maximum(1.0 - ab_s - sigma_s**2, 0.0)) * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        out = out + sigma_s * noise
    return out


def ddpm_step(
    x_t: np.ndarray,
    eps: np.ndarray,
    alpha_bar_t: np.ndarray | float,
    alpha_bar_prev: np.ndarray | float,
    noise: np.ndarray,
) -> np.ndarray:
    """One ancestral DDPM step (Ho et al. 2020) from t to an earlier step s, sampling q(x_s | x_t, x0_hat).

    With ``alpha = ab_t / ab_s`` and ``beta = 1 - alpha``:
    ``mean = sqrt(ab_s) * beta / (1 - ab_t) * x0_hat + sqrt(alpha) * (1 - ab_s) / (1 - ab_t) * x_t``,
    ``var = beta * (1 - ab_s) / (1 - ab_t)``, ``x_s = mean + sqrt(var) * z``. For s = t - 1 these are
    the paper's posterior; for larger jumps the same formulas hold with the combined beta.
    """
    rank = np.ndim(x_t)
    ab_t = broadcast_to_rank(alpha_bar_t, rank)
    ab_s = broadcast_to_rank(alpha_bar_prev, rank)
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    alpha = ab_t / ab_s
    beta = 1.0 - alpha
    mean = np.sqrt(ab_s) * beta / (1.0 - ab_t) * x0 + np.sqrt(alpha) * (1.0 - ab_s) / (1.0 - ab_t) * x_t
    var = beta * (1.0 - ab_s) / (1.0 - ab_t)
    return mean + np.sqrt(np.maximum(var, 0.0)) * noise


def step_sequence(t_start: float, steps: int) -> np.ndarray:
    """Evenly spaced steps from ``t_start`` down to 0 inclusive (``steps`` jumps), for DDIM/DDPM sampling."""
    steps = max(int(steps), 1)
    return np.linspace(float(t_start), 0.0, steps + 1)
