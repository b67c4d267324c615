"""Do no harm: does what denoising removed look like the noise it assumed?

numpy only. With input ``z``, output ``x`` and the assumed noise std ``sigma`` (one value per channel
group, in the units of ``z``), the removed part is ``r = z - x``. When the assumption holds, ``r`` is white
noise of std about ``sigma`` minus the part of it the output kept, so

* the input shows at least that much noise: its own blind noise estimate is not far below ``sigma``;
* ``r`` is not anti-correlated with ``x``: a denoiser that shrinks ``z`` towards the signal keeps part of
  each component and removes the rest, which correlates them positively or not at all; a negative
  correlation means the output holds the opposite of what was removed, detail the model invented because
  it was told to remove more noise than the input holds;
* the local energy of ``r`` does not follow the output's local activity (edges, beats, bursts): noise is
  as strong in flat stretches as in busy ones, removed signal is not.

:class:`ResidualSums` gathers the sums these need from rows of ``(z, x)`` handed over in order along the
first axis (time for 1D data, image rows), so a file of any size is checked without a second copy;
:func:`judge` turns the sums of a channel group into a :class:`CheckResult`. The thresholds were set on
generated inputs (synthetic series, dead-leaves images and the sample photos and speech with white noise,
cleaned blind and with the noise level known, and clean inputs given a wrong ``--sigma``): ordinary noisy
inputs pass, a clean input given several times its noise fails; ``bench/harm.py`` measures both.

What it cannot see: a noise level overestimated because the signal's own finest detail looks like white
noise. Then what was removed is noise-like too, and nothing in ``r`` tells it from noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# An input whose blind noise estimate is below this share of the assumed sigma holds less noise than
# assumed: the model is asked to remove detail that is not noise.
NOISE_RATIO_MIN = 0.5
# corr(r, x) below this: the output holds the opposite of what was removed (invented detail).
CORRELATION_MIN = -0.3
# Correlation of the residual's block energies with the output's block activity above this: the removed
# part follows the signal's structure.
STRUCTURE_MAX = 0.9
MIN_SAMPLES = 64  # fewer values per channel group: too few to judge, the check passes
MIN_BLOCKS = 16  # fewer blocks: the structure correlation is not judged
BLOCK = {1: 16, 2: 8}  # block side by rank: 16 samples, 8x8 pixels

# The sums kept per channel, by name (index into ResidualSums.sums).
_NAMES = (
    "n", "r", "rr", "x", "xx", "rx",  # moments of r and x
    "pairs", "a", "b", "ab",  # lag-1 pairs (r_t, r_t+1) along the first axis
    "blocks", "e", "act", "ee", "aa", "ea",  # block energy of r and activity of x
)
_I = {name: i for i, name in enumerate(_NAMES)}


def pearson(n: float, sa: float, sb: float, saa: float, sbb: float, sab: float) -> float:
    """Correlation from sums over ``n`` pairs: ``(n sab - sa sb) / sqrt((n saa - sa^2)(n sbb - sb^2))``;
    0 when either variance is 0 (or ``n`` < 2)."""
    if n < 2:
        return 0.0
    va, vb = n * saa - sa * sa, n * sbb - sb * sb
    if va <= 0 or vb <= 0:
        return 0.0
    return float(np.clip((n * sab - sa * sb) / math.sqrt(va * vb), -1.0, 1.0))


def residual_ratio(n: float, sr: float, srr: float, sigma: float) -> float:
    """``std(r) / sigma`` from ``n``, ``sum r`` and ``sum r^2`` (population std; 0 for ``sigma`` <= 0)."""
    if n < 1 or sigma <= 0:
        return 0.0
    return math.sqrt(max(srr / n - (sr / n) ** 2, 0.0)) / sigma


def lag1(n: float, sr: float, srr: float, pairs: float, sa: float, sb: float, sab: float) -> float:
    """Lag-1 autocorrelation of r along the first axis, ``sum (r_t - m)(r_t+1 - m) / sum (r_t - m)^2``
    with ``m`` the mean of r, from the moments and the sums over the pairs (``sa = sum r_t``,
    ``sb = sum r_t+1``, ``sab = sum r_t r_t+1``). White noise gives about 0."""
    if n < 2:
        return 0.0
    m = sr / n
    var = srr - n * m * m
    if var <= 0:
        return 0.0
    return float(np.clip((sab - m * (sa + sb) + pairs * m * m) / var, -1.0, 1.0))


class ResidualSums:
    """Running sums of ``r = z - x`` and ``x`` per channel, over rows handed over in order along the first
    axis: ``add(z_rows, x_rows)`` with rows (k, C) for rank 1 or (k, W, C) for rank 2. Lag-1 pairs span
    the handed-over bands (the last row is kept); blocks of ``BLOCK[rank]`` rows are formed as rows
    arrive (at most one block of rows is held) and a last incomplete block is left out."""

    def __init__(self, channels: int, rank: int) -> None:
        self.rank, self.block = int(rank), BLOCK[int(rank)]
        self.sums = np.zeros((len(_NAMES), channels), dtype=np.float64)
        self._last: np.ndarray | None = None  # the last row of r
        self._held: tuple[np.ndarray, np.ndarray] | None = None  # rows of (r, x) not yet in a block

    def add(self, z: np.ndarray, x: np.ndarray) -> None:
        """Take rows of the input ``z`` and the output ``x`` (same shape, same units)."""
        x = np.asarray(x, dtype=np.float64)
        r = np.asarray(z, dtype=np.float64) - x
        if r.shape[0] == 0:
            return
        s, axes = self.sums, tuple(range(r.ndim - 1))
        s[_I["n"]] += r.size // r.shape[-1]
        s[_I["r"]] += r.sum(axis=axes)
        s[_I["rr"]] += np.square(r).sum(axis=axes)
        s[_I["x"]] += x.sum(axis=axes)
        s[_I["xx"]] += np.square(x).sum(axis=axes)
        s[_I["rx"]] += (r * x).sum(axis=axes)
        chained = r if self._last is None else np.concatenate([self._last, r])
        a, b = chained[:-1], chained[1:]
        s[_I["pairs"]] += a.size // a.shape[-1]
        s[_I["a"]] += a.sum(axis=axes)
        s[_I["b"]] += b.sum(axis=axes)
        s[_I["ab"]] += (a * b).sum(axis=axes)
        self._last = r[-1:]
        if self._held is not None:
            r, x = np.concatenate([self._held[0], r]), np.concatenate([self._held[1], x])
        whole = r.shape[0] // self.block * self.block
        if whole:
            self._add_blocks(r[:whole], x[:whole])
        self._held = (r[whole:], x[whole:]) if whole < r.shape[0] else None

    def _add_blocks(self, r: np.ndarray, x: np.ndarray) -> None:
        """Block energy ``mean r^2`` and activity ``mean (finite differences of x)^2`` within each block
        (B samples, or B x B pixels, whole blocks only), gathered for their correlation."""
        e, act = _block_energy_activity(r, x, self.block)
        s = self.sums
        s[_I["blocks"]] += e.shape[0]
        s[_I["e"]] += e.sum(axis=0)
        s[_I["act"]] += act.sum(axis=0)
        s[_I["ee"]] += np.square(e).sum(axis=0)
        s[_I["aa"]] += np.square(act).sum(axis=0)
        s[_I["ea"]] += (e * act).sum(axis=0)

    def group(self, channels: slice) -> np.ndarray:
        """The sums of a channel group, pooled over its channels: one value per name."""
        return self.sums[:, channels].sum(axis=1)


def _block_energy_activity(r: np.ndarray, x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block (rows: a multiple of ``block``; rank 2: columns cut to whole blocks): ``mean r^2`` and the
    mean squared difference of neighbouring output values inside the block, along each spatial axis.
    Returns two (blocks, C) arrays."""
    k = r.shape[0] // block
    if r.ndim == 2:  # (k * B, C)
        rb, xb = r.reshape(k, block, -1), x.reshape(k, block, -1)
        return np.square(rb).mean(axis=1), np.square(np.diff(xb, axis=1)).mean(axis=1)
    w = r.shape[1] // block * block
    c = r.shape[-1]
    rb = r[:, :w].reshape(k, block, w // block, block, c)
    xb = x[:, :w].reshape(k, block, w // block, block, c)
    energy = np.square(rb).mean(axis=(1, 3))
    down, across = np.square(np.diff(xb, axis=1)), np.square(np.diff(xb, axis=3))
    activity = 0.5 * (down.mean(axis=(1, 3)) + across.mean(axis=(1, 3)))
    return energy.reshape(-1, c), activity.reshape(-1, c)


@dataclass(frozen=True)
class CheckResult:
    """One channel group's verdict and the numbers behind it (``--json`` prints them)."""

    passed: bool
    reasons: tuple[str, ...]  # why it failed: "noise level", "anti-correlated", "structure"
    noise_ratio: float | None  # the input's blind noise estimate over the assumed sigma
    residual_ratio: float  # std(r) / sigma
    output_correlation: float  # corr(r, x)
    structure_correlation: float  # corr(block energy of r, block activity of x)
    lag1: float  # lag-1 autocorrelation of r

    def report(self) -> dict:
        """JSON-ready numbers (rounded)."""
        def rounded(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        return {"passed": self.passed, "reasons": list(self.reasons), "noise_ratio": rounded(self.noise_ratio),
                "residual_ratio": rounded(self.residual_ratio),
                "output_correlation": rounded(self.output_correlation),
                "structure_correlation": rounded(self.structure_correlation), "lag1": rounded(self.lag1)}


def judge(sums: np.ndarray, sigma: float, blind: float | None) -> CheckResult:
    """The verdict for one channel group from its pooled sums (:meth:`ResidualSums.group`), the assumed
    noise std ``sigma`` and the input's blind estimate ``blind`` (same units; None: not known).

    Fails when ``blind / sigma < NOISE_RATIO_MIN`` ("noise level"), ``corr(r, x) < CORRELATION_MIN``
    ("anti-correlated") or, with at least ``MIN_BLOCKS`` blocks, the block-energy correlation exceeds
    ``STRUCTURE_MAX`` ("structure"). Under ``MIN_SAMPLES`` values it passes (too few to judge).
    """
    g = {name: float(sums[i]) for name, i in _I.items()}
    ratio = residual_ratio(g["n"], g["r"], g["rr"], sigma)
    corr = pearson(g["n"], g["r"], g["x"], g["rr"], g["xx"], g["rx"])
    structure = pearson(g["blocks"], g["e"], g["act"], g["ee"], g["aa"], g["ea"])
    rho = lag1(g["n"], g["r"], g["rr"], g["pairs"], g["a"], g["b"], g["ab"])
    noise_ratio = blind / sigma if blind is not None and sigma > 0 else None
    reasons = []
    if g["n"] >= MIN_SAMPLES:
        if noise_ratio is not None and noise_ratio < NOISE_RATIO_MIN:
            reasons.append("noise level")
        if corr < CORRELATION_MIN:
            reasons.append("anti-correlated")
        if g["blocks"] >= MIN_BLOCKS and structure > STRUCTURE_MAX:
            reasons.append("structure")
    return CheckResult(not reasons, tuple(reasons), noise_ratio, ratio, corr, structure, rho)


def check_arrays(z: np.ndarray, x: np.ndarray, sigma: float, blind: float | None = None,
                 rank: int = 1) -> CheckResult:
    """:func:`judge` over whole arrays (all channels pooled): ``z`` and ``x`` (N,), (N, C) or, for
    ``rank`` 2, (H, W) / (H, W, C)."""
    z, x = np.asarray(z, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if z.ndim == rank:
        z, x = z[..., None], x[..., None]
    sums = ResidualSums(z.shape[-1], rank)
    sums.add(z, x)
    return judge(sums.group(slice(None)), sigma, blind)
