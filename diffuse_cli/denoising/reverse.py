"""The reverse process from an observation: t*, then one posterior-mean step, DDIM or DDPM down to 0.

A noisy observation ``y = x + sigma * n`` is a diffusion state up to scale: with
``alpha_bar(t*) = 1 / (1 + sigma^2)``, ``sqrt(alpha_bar(t*)) * y`` has the distribution of ``x_t*``
(:func:`diffuse_cli.schedule.alpha_bar_to_sigma`). So the reverse process starts at t*, never from pure
noise at T (that would generate a new sample instead of cleaning this one). Every formula is
:mod:`diffuse_cli.schedule`'s; numpy only.

DDPM's noise is a function of the seed, the step and the position in the input (:class:`PositionNoise`),
so overlapping tiles draw the same noise where they overlap and the result does not depend on the tiling.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from diffuse_cli import schedule as sch
from diffuse_cli.enums import Method

if TYPE_CHECKING:
    from diffuse_cli.denoising.options import DenoisingModel

# DDPM noise is drawn in blocks on a fixed grid over the input, one generator per block: 64 x 64 positions
# (images) or 4096 samples (1D). A tile takes the blocks it covers; the block size only trades the cost of
# starting a generator against the noise drawn past a tile's edges.
NOISE_BLOCK = 64


@dataclass(frozen=True)
class PositionNoise:
    """DDPM noise as a function of (seed, step, position, channel), so the same wherever a tile lies.

    The input's positions are cut into blocks on a fixed grid (:data:`NOISE_BLOCK`); block ``i`` (a
    tuple: block row and column, or one index in 1D) of step ``k``, for the channel group starting at
    channel ``g``, holds ``default_rng([seed, k, g, *i]).standard_normal((*block, channels))``.
    Positions past the input's end (a padded tile) have values too, like any other.
    """

    seed: int

    @classmethod
    def fresh(cls, seed: int | None) -> PositionNoise:
        """For ``seed`` (any integer), or a random one when None (then each run differs)."""
        return cls(int(np.random.SeedSequence().entropy) % 2**64 if seed is None else int(seed) % 2**64)

    def draw(self, step: int, origins: list[tuple[int, ...]], channel: int, shape: tuple[int, ...]) -> np.ndarray:
        """Noise for a batch of tiles ``shape`` = (B, *tile, C) whose first elements lie at ``origins``."""
        out = np.empty(shape, dtype=np.float64)
        for b, origin in enumerate(origins):
            out[b] = self._region(step, channel, tuple(int(o) for o in origin), tuple(shape[1:-1]), int(shape[-1]))
        return out

    def _region(self, step: int, channel: int, origin: tuple[int, ...], tile: tuple[int, ...],
                channels: int) -> np.ndarray:
        """The noise of the tile at ``origin``: the blocks it covers, drawn whole, then cut to the tile."""
        block = (NOISE_BLOCK,) * 2 if len(tile) == 2 else (NOISE_BLOCK * NOISE_BLOCK,)
        first = [o // n for o, n in zip(origin, block)]
        last = [(o + t - 1) // n for o, t, n in zip(origin, tile, block)]
        region = np.empty((*[(hi - lo + 1) * n for lo, hi, n in zip(first, last, block)], channels))
        for index in itertools.product(*[range(lo, hi + 1) for lo, hi in zip(first, last)]):
            at = tuple(slice((i - lo) * n, (i - lo + 1) * n) for i, lo, n in zip(index, first, block))
            region[at] = np.random.default_rng([self.seed, step, channel, *index]).standard_normal((*block, channels))
        return region[tuple(slice(o - lo * n, o - lo * n + t) for o, lo, n, t in zip(origin, first, block, tile))]


def t_star(schedule: sch.Schedule, sigma_model: float) -> float:
    """The fractional step whose state matches noise ``sigma``: ``alpha_bar(t*) = 1 / (1 + sigma^2)``."""
    return float(schedule.sigma_to_t(sigma_model))


def reverse_from_observation(
    model: DenoisingModel,
    y: np.ndarray,
    t_start: float,
    method: Method | str,
    steps: int,
    rng: PositionNoise | np.random.Generator | None,
    origins: list[tuple[int, ...]] | None = None,
    channel: int = 0,
    data_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Clean a batch ``y`` (B, *spatial, C) of observations with noise sigma(t_start).

    ``x_t* = sqrt(alpha_bar(t*)) * y``; then ``onestep``: ``x0_hat = predict_x0(x_t*, eps(x_t*, t*))``
    (the posterior mean, never clipped here); ``ddim``: deterministic DDIM (eta = 0) along
    ``step_sequence(t*, steps)`` to 0; ``ddpm``: ancestral DDPM steps along the same sequence. The last
    step lands at t = 0, where ``alpha_bar = 1`` and the state is the clean estimate.

    DDPM noise: ``rng.draw(k, origins, channel, shape)`` for a :class:`PositionNoise` (``origins``: where
    each tile of the batch lies, ``channel``: its first channel), else ``rng.standard_normal``.
    ``data_range`` (images: (-1, 1)): DDIM and DDPM step from the x0 estimate clipped to it
    (:func:`diffuse_cli.schedule.clip_eps`).
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
    for k, (t, s) in enumerate(itertools.pairwise(sch.step_sequence(t_start, steps))):
        ab_t, ab_s = float(schedule.alpha_bar_at(t)), float(schedule.alpha_bar_at(s))
        eps = eps_at(x, float(t))
        if data_range is not None:
            eps = sch.clip_eps(x, eps, ab_t, *data_range)
        if method == Method.ddim:
            x = sch.ddim_step(x, eps, ab_t, ab_s)
        else:
            x = sch.ddpm_step(x, eps, ab_t, ab_s, _step_noise(rng, k, origins, channel, x.shape))
    return x


def _step_noise(rng: PositionNoise | np.random.Generator, step: int, origins: list[tuple[int, ...]] | None,
                channel: int, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(rng, PositionNoise):
        if origins is None or len(origins) != shape[0]:
            raise ValueError("PositionNoise needs the origin of every tile in the batch")
        return rng.draw(step, origins, channel, shape)
    return rng.standard_normal(shape)
