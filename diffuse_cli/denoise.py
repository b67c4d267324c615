"""Denoising an observed input with a step-conditioned diffusion denoiser (design.md §3 and §4).

A noisy observation ``y = x + sigma * n`` is a diffusion state up to scale: with
``alpha_bar(t*) = 1 / (1 + sigma^2)``, ``sqrt(alpha_bar(t*)) * y`` has the distribution of ``x_t*``.
So we estimate sigma (when not given), find the fractional step t*, and run the reverse process
from t* (never from pure noise at T): one posterior-mean step (default), DDIM or DDPM.

Inputs of any size are processed in overlapping tiles (images) or chunks (1D), laid out for the least
padded area, in batches, and blended with a smooth window band by band along the first axis: besides
the input and the output, memory holds one band of tiles (no full-size float64 copies); the noise of
a large input is estimated from evenly spread crops.
numpy only: the model is passed in as an object with ``eps(x_t, t)``, ``schedule``, ``rank``,
``size_multiple`` and ``config``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from diffuse_cli import schedule as sch
from diffuse_cli.errors import InputError
from diffuse_cli.impulses import detect_impulses, fill_impulses, looks_salt_pepper

if TYPE_CHECKING:  # io is numpy-only too, but only its dataclass is needed here for hints
    from diffuse_cli.io import Media

METHODS = ("onestep", "ddim", "ddpm")
NOISE_KINDS = ("gaussian", "salt-pepper", "auto")
MAD_TO_STD = 0.6744897501960817  # median(|N(0,1)|): sigma = MAD / 0.6745 (Donoho)
ProgressFn = Callable[[int, int], None]


class DenoisingModel(Protocol):
    """What denoise needs from a model (modelstore.LoadedModel or a test dummy)."""

    config: dict
    schedule: sch.Schedule
    rank: int
    size_multiple: int

    def eps(self, x_t: np.ndarray, t: np.ndarray) -> np.ndarray: ...


@dataclass
class DenoiseOptions:
    sigma: float | None = None  # file units; None = estimate
    method: str = "onestep"  # "onestep" | "ddim" | "ddpm"
    steps: int = 10  # DDIM/DDPM steps
    noise_kind: str = "gaussian"  # "gaussian" | "salt-pepper" | "auto"
    seed: int | None = None
    # Largest image tile side (pixels). 512: a photo up to 512x512 is one call with no overlap; 1.28x faster
    # than 256 on 512-wide photos at the same PSNR (bench/README.md).
    tile: int = 512
    overlap: int = 32  # image tile overlap (pixels)
    batch: int = 8  # most tiles or chunks per network call (also capped at _CALL_ELEMENTS elements)
    chunk: int = 16384  # 1D chunk length (samples); dense models use their fixed length
    chunk_overlap: int = 1024  # 1D chunk overlap (samples)


def validate_options(options: DenoiseOptions) -> None:
    """One-line InputError for option values that cannot work."""
    if options.method not in METHODS:
        raise InputError(f"--method {options.method}: unknown; use one of {', '.join(METHODS)}")
    if options.noise_kind not in NOISE_KINDS:
        raise InputError(f"--noise-kind {options.noise_kind}: unknown; use one of {', '.join(NOISE_KINDS)}")
    if options.steps < 1:
        raise InputError(f"--steps {options.steps}: must be at least 1")
    if options.sigma is not None and not (math.isfinite(options.sigma) and options.sigma > 0):
        raise InputError(f"--sigma {options.sigma}: must be a positive number in the file's units (e.g. 25)")
    if options.tile < 8:
        raise InputError(f"--tile {options.tile}: must be at least 8 pixels")
    if options.overlap < 0 or options.overlap >= options.tile:
        raise InputError(f"--overlap {options.overlap}: must be >= 0 and smaller than --tile {options.tile}")
    if options.batch < 1:
        raise InputError(f"--batch {options.batch}: must be at least 1")
    if options.chunk < 16 or not 0 <= options.chunk_overlap < options.chunk:
        raise InputError(f"chunk {options.chunk} / overlap {options.chunk_overlap}: need chunk >= 16 and "
                         "0 <= overlap < chunk")


# --------------------------------------------------------------------------- noise estimation


def _chi2_mean_quantile(k: int, z: float) -> float:
    """Quantile of chi2_k / k at the normal quantile z (Wilson-Hilferty: ``(1 - 2/9k + z sqrt(2/9k))^3``)."""
    c = 2.0 / (9.0 * k)
    return (1.0 - c + z * math.sqrt(c)) ** 3


_Z10 = -1.2815515655446004  # standard normal 10% quantile
_BLOCK = 8  # block side in detail coefficients (2D: 8x8 = 16x16 pixels; 1D: 64 coefficients)


def _haar_hh(im: np.ndarray) -> np.ndarray:
    """Finest diagonal Haar detail ``(a - b - c + d) / 2`` of each 2x2 cell (last two axes); white noise
    keeps its std."""
    h, w = im.shape[-2] // 2 * 2, im.shape[-1] // 2 * 2
    return (im[..., 0:h:2, 0:w:2] - im[..., 0:h:2, 1:w:2] - im[..., 1:h:2, 0:w:2] + im[..., 1:h:2, 1:w:2]) / 2.0


def _immerkaer_response(im: np.ndarray) -> np.ndarray:
    """Immerkaer's mask ``[1 -2 1; -2 4 -2; 1 -2 1]`` (second differences in both axes); noise std x 6."""
    return (im[..., :-2, :-2] - 2 * im[..., :-2, 1:-1] + im[..., :-2, 2:]
            - 2 * im[..., 1:-1, :-2] + 4 * im[..., 1:-1, 1:-1] - 2 * im[..., 1:-1, 2:]
            + im[..., 2:, :-2] - 2 * im[..., 2:, 1:-1] + im[..., 2:, 2:])


def _sigma_image_channel(im: np.ndarray, value_range: tuple[float, float] | None) -> float:
    """Noise std of one image channel (H, W); see :func:`_sigma_image_crops`."""
    return _sigma_image_crops(im[None], value_range)


def _sigma_image_crops(ims: np.ndarray, value_range: tuple[float, float] | None) -> float:
    """Noise std of one image channel from crops ``ims`` (N, H, W) of it, pooled (N = 1: the whole image).

    The smaller of two robust estimates, both blind to flat regions:

    * block quantile: mean squared Haar HH detail in 16x16-pixel blocks; the 10% quantile of the
      block energies, divided by the chi2_64/64 quantile, is sigma^2 when at least a tenth of the
      image has little fine texture;
    * Immerkaer: ``sigma = sqrt(pi/2) * mean|M * im| / 6`` over pixels that are not on edges (the 10%
      largest gradients are left out, Tai & Yang 2008), which copes with textures that fill the image.
    Clipping shrinks the noise near the value range's ends: detail taken over a clipped pixel is left
    out, and so are blocks whose mean lies within 2.5 sigma of an end (re-estimated as sigma sharpens;
    when that leaves too few blocks, the fifth of blocks farthest from the ends is used).
    """
    n_crops = ims.shape[0]
    h2, w2 = ims.shape[1] // 2, ims.shape[2] // 2
    if h2 < 2 or w2 < 2:
        return 0.0
    nb_h, nb_w = max(h2 // _BLOCK, 1), max(w2 // _BLOCK, 1)
    bh, bw = min(_BLOCK, h2), min(_BLOCK, w2)
    ims = ims[:, : 2 * nb_h * bh, : 2 * nb_w * bw]  # whole blocks only
    if value_range is not None:
        lo, hi = value_range
        tol = (hi - lo) * 1e-4
        clipped = (ims <= lo + tol) | (ims >= hi - tol)
    else:
        lo, hi, clipped = -np.inf, np.inf, np.zeros(ims.shape, dtype=bool)
    hh = _haar_hh(ims)
    cell_ok = ~clipped.reshape(n_crops, nb_h * bh, 2, nb_w * bw, 2).any(axis=(2, 4))
    ok_blocks = cell_ok.reshape(n_crops, nb_h, bh, nb_w, bw)
    count = ok_blocks.sum(axis=(2, 4))
    energy = ((hh**2) * cell_ok).reshape(n_crops, nb_h, bh, nb_w, bw).sum(axis=(2, 4)) / np.maximum(count, 1)
    usable = (count >= 0.75 * bh * bw).ravel()
    energy = energy.ravel()
    means = ims.reshape(n_crops, nb_h, 2 * bh, nb_w, 2 * bw).mean(axis=(2, 4)).ravel()
    dist = np.minimum(means - lo, hi - means)
    lap = _immerkaer_response(ims)
    grad = np.abs(ims[:, 1:-1, 2:] - ims[:, 1:-1, :-2]) + np.abs(ims[:, 2:, 1:-1] - ims[:, :-2, 1:-1])
    # Immerkaer pixels (i+1, j+1) whose 3x3 neighbourhood has no clipped pixel, and their block.
    near_clip = sliding_window_view(clipped, (3, 3), axis=(1, 2)).any(axis=(3, 4))
    rows = np.arange(1, ims.shape[1] - 1) // (2 * bh)
    cols = np.arange(1, ims.shape[2] - 1) // (2 * bw)
    if not usable.any():
        usable = np.ones_like(usable)
    sigma = None
    for _ in range(4):
        valid = usable.copy()
        if sigma is not None and np.isfinite(lo):
            valid &= dist > 2.5 * sigma
            if valid.sum() < max(4, 0.05 * usable.sum()):
                valid = usable & (dist >= np.quantile(dist[usable], 0.8))
        blocks = math.sqrt(max(float(np.quantile(energy[valid], 0.1)), 0.0) / _chi2_mean_quantile(bh * bw, _Z10))
        pix_ok = valid.reshape(n_crops, nb_h, nb_w)[:, rows[:, None], cols[None, :]] & ~near_clip
        g = grad[pix_ok]
        if g.size >= 16:
            flat = g <= np.quantile(g, 0.9)
            immer = math.sqrt(math.pi / 2) * float(np.mean(np.abs(lap[pix_ok][flat]))) / 6.0
        else:
            immer = blocks
        new = min(blocks, immer)
        done = sigma is not None and abs(new - sigma) <= 0.01 * max(sigma, 1e-12)
        sigma = new
        if done:
            break
    return float(sigma)


def _sigma_haar_1d(x: np.ndarray) -> float:
    """Donoho: MAD of the finest Haar detail ``d_i = (x_2i - x_2i+1) / sqrt 2`` over 0.6745 (exact zeros,
    i.e. digital silence, left out). ``x`` is (N,) or windows (K, N), pooled."""
    n = x.shape[-1] // 2
    d = (x[..., 0 : 2 * n : 2] - x[..., 1 : 2 * n : 2]).ravel() / math.sqrt(2.0)
    d = d[d != 0]
    return float(np.median(np.abs(d)) / MAD_TO_STD) if d.size else 0.0


_FRAME = 512
# The 10% quantile over frames of the per-frame median above, relative to sigma^2, for white noise
# (measured on 10^7 samples; the Hann window correlates neighbouring bins, so no closed form).
_SPECTRAL_Q10 = 0.816


def _sigma_spectral_1d(x: np.ndarray) -> float | None:
    """White noise spreads evenly over frequency, signal content does not: per Hann-windowed frame of
    512 samples the median periodogram value over the upper half of the band is
    ``sigma^2 * sum(w^2) * ln 2`` (|X_k|^2 of white noise is exponential). The 10% quantile over non-silent
    frames (divided by its value for white noise, 0.816) picks the frames with the least high-frequency content.
    None when the signal is shorter than four frames. ``x`` is (N,) or windows (K, N), pooled.
    """
    x = x.reshape(-1, x.shape[-1])
    per_window = x.shape[1] // _FRAME
    if per_window * x.shape[0] < 4:
        return None
    w = np.hanning(_FRAME)
    norm = math.log(2.0) * float(np.sum(w**2))
    values = []
    for window in x:  # one window at a time: the periodograms of a long sample are not held at once
        seg = window[: per_window * _FRAME].reshape(-1, _FRAME)
        seg = seg[np.any(seg != seg[:, :1], axis=1)]  # constant (silent) frames carry no noise
        if seg.shape[0]:
            seg = seg - seg.mean(axis=1, keepdims=True)
            power = np.abs(np.fft.rfft(seg * w, axis=1)) ** 2
            upper = power[:, _FRAME // 4 : _FRAME // 2]  # skip the Nyquist bin (real-valued, not exponential)
            values.append(np.median(upper, axis=1) / norm)
    per_frame = np.concatenate(values) if values else np.zeros(0)
    if per_frame.size < 4:
        return None
    q = float(np.quantile(per_frame, 0.1)) / _SPECTRAL_Q10
    return math.sqrt(max(q, 0.0))


def _sigma_signal_channel(x: np.ndarray) -> float:
    """Noise std of one 1D channel (N,) or of windows (K, N) of it, pooled: the smaller of the Haar MAD
    and the spectral estimate.

    Both are consistent for white noise; content (a sine, speech, music) only pushes each upwards, and
    the spectral one ignores tones and low-frequency content. Digital silence is left out of both.
    """
    if x.shape[-1] < 4:
        return 0.0
    top = 1e-9 * max(float(np.max(np.abs(x))), 1e-300)
    if all(np.all(np.abs(np.diff(window, 2)) <= top) for window in x.reshape(-1, x.shape[-1])):
        return 0.0  # a straight line (e.g. a time column): nothing to clean
    haar = _sigma_haar_1d(x)
    spectral = _sigma_spectral_1d(x)
    return haar if spectral is None else min(haar, spectral)


def estimate_sigma(x: np.ndarray, rank: int, value_range: tuple[float, float] | None = None) -> float:
    """Robust noise std of ``x`` in its own (model) units; median over channels.

    ``x`` is (H, W, C) for rank 2 and (N, C) for rank 1. ``value_range`` (images, PCM audio) lets the
    estimate skip clipped regions. See :func:`_sigma_image_crops` and :func:`_sigma_signal_channel`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == rank:
        x = x[..., None]
    return _estimate_sigma_pieces(x[None], rank, value_range)


def _estimate_sigma_pieces(pieces: np.ndarray, rank: int, value_range: tuple[float, float] | None) -> float:
    """:func:`estimate_sigma` over pieces of one input, pooled: (N, H, W, C) crops or (K, L, C) windows."""
    pieces = np.asarray(pieces, dtype=np.float64)
    if rank == 2:
        values = [_sigma_image_crops(pieces[..., c], value_range) for c in range(pieces.shape[-1])]
    else:
        values = [_sigma_signal_channel(pieces[..., c]) for c in range(pieces.shape[-1])]
    return float(np.median(values)) if values else 0.0


# Inputs with more than _ESTIMATE_WHOLE values per channel are not read whole to estimate their noise
# (the estimate takes several float64 arrays of the size it reads): evenly spread crops (256 x 256) or
# windows (65536 samples) totalling _ESTIMATE_SAMPLE values per channel (2 Mpixel; 131 s of 16 kHz audio).
_ESTIMATE_WHOLE = 1 << 22
_ESTIMATE_SAMPLE = 1 << 21
_ESTIMATE_CROP = 256  # a multiple of the 16-pixel blocks
_ESTIMATE_WINDOW = 1 << 16  # a multiple of the 512-sample frames


def _estimation_pieces(read: Callable[[int, int], np.ndarray], shape: tuple[int, ...], rank: int) -> np.ndarray:
    """What the noise estimate reads: the whole input as one piece (1, *shape, C) when it has at most
    ``_ESTIMATE_WHOLE`` values per channel, else evenly spread crops (N, 256, 256, C) / windows (K, 65536, C)
    of ``_ESTIMATE_SAMPLE`` values per channel.
    ``read(a, b)`` gives rows ``a:b`` of the input in model units."""
    if int(np.prod(shape)) <= _ESTIMATE_WHOLE:
        return np.asarray(read(0, shape[0]), dtype=np.float64)[None]
    if rank == 1:
        count = max(1, _ESTIMATE_SAMPLE // _ESTIMATE_WINDOW)
        starts = np.linspace(0, shape[0] - _ESTIMATE_WINDOW, count).round().astype(int)
        return np.stack([np.asarray(read(s, s + _ESTIMATE_WINDOW), dtype=np.float64) for s in starts])
    h, w = shape
    ch, cw = min(_ESTIMATE_CROP, h), min(_ESTIMATE_CROP, w)
    count = max(1, _ESTIMATE_SAMPLE // (ch * cw))
    ny = min(max(1, round(math.sqrt(count * (h / ch) / (w / cw)))), -(-h // ch))
    nx = min(max(1, count // ny), -(-w // cw))
    crops = []
    for top in np.linspace(0, h - ch, ny).round().astype(int):
        band = read(top, top + ch)  # copies, not views: a view would keep the whole band alive
        crops.extend(np.array(band[:, left : left + cw], dtype=np.float64)
                     for left in np.linspace(0, w - cw, nx).round().astype(int))
        del band
    return np.stack(crops)


# --------------------------------------------------------------------------- the reverse process


def t_star(schedule: sch.Schedule, sigma_model: float) -> float:
    """The fractional step whose state matches noise ``sigma``: ``alpha_bar(t*) = 1 / (1 + sigma^2)``."""
    return float(schedule.sigma_to_t(sigma_model))


def reverse_from_observation(
    model: DenoisingModel,
    y: np.ndarray,
    t_start: float,
    method: str,
    steps: int,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Clean a batch ``y`` (B, *spatial, C) of observations with noise sigma(t_start).

    ``x_t* = sqrt(alpha_bar(t*)) * y``; then ``onestep``: ``x0_hat = predict_x0(x_t*, eps(x_t*, t*))``
    (the posterior mean); ``ddim``: deterministic DDIM (eta = 0) along ``step_sequence(t*, steps)`` to 0;
    ``ddpm``: ancestral DDPM steps along the same sequence (noise from ``rng``). The last step lands at
    t = 0, where ``alpha_bar = 1`` and the state is the clean estimate.
    """
    schedule = model.schedule
    batch = y.shape[0]
    ab_start = float(schedule.alpha_bar_at(t_start))
    x = math.sqrt(ab_start) * np.asarray(y, dtype=np.float64)

    def eps_at(x_t: np.ndarray, t: float) -> np.ndarray:
        t_batch = np.full((batch,), t, dtype=np.float32)
        return np.asarray(model.eps(x_t.astype(np.float32), t_batch), dtype=np.float64)

    if method == "onestep":
        return sch.predict_x0(x, eps_at(x, t_start), ab_start)
    if method == "ddpm" and rng is None:
        rng = np.random.default_rng()
    times = sch.step_sequence(t_start, steps)
    for t, s in itertools.pairwise(times):
        ab_t, ab_s = float(schedule.alpha_bar_at(t)), float(schedule.alpha_bar_at(s))
        eps = eps_at(x, float(t))
        if method == "ddim":
            x = sch.ddim_step(x, eps, ab_t, ab_s)
        elif method == "ddpm":
            x = sch.ddpm_step(x, eps, ab_t, ab_s, rng.standard_normal(x.shape))
        else:
            raise ValueError(f"unknown method {method!r}")
    return x


# --------------------------------------------------------------------------- tiling / chunking

# Spatial elements per network call, all tiles of the call together: at most ``options.batch`` tiles and
# at most this many pixels (one 512x512 tile, four 256x256), or a quarter of it in samples (four
# 16384-sample chunks). On CPU smaller calls keep the activations in cache; larger ones were no faster
# and hold more memory (bench/README.md).
_CALL_ELEMENTS = 1 << 18


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _tile_starts(size: int, length: int, overlap: int) -> list[int]:
    """Starts of the fewest tiles of ``length`` that cover ``size`` with at least ``overlap`` between
    neighbours, spread evenly (first at 0, last ending at the border)."""
    if size <= length:
        return [0]
    count = -(-(size - overlap) // max(length - overlap, 1))
    return [i * (size - length) // (count - 1) for i in range(count)]


def _axis_layout(size: int, tile: int, overlap: int, multiple: int, granule: int) -> tuple[int, list[int]]:
    """Tile length and starts along one axis, with the least padded area.

    An axis that fits in one tile gets one tile of ``size`` rounded up to the network's ``multiple``.
    Otherwise: the fewest tiles no longer than ``tile`` (rounded up to ``granule``, a multiple of
    ``multiple``) that cover the axis with ``overlap``, each as short as that allows, rounded up to ``granule``.
    A 512-pixel side with tile 256 and overlap 32 is three tiles of 192, not three of 256.
    """
    cap = _round_up(max(tile, granule), granule)
    if size <= cap:
        return _round_up(size, multiple), [0]
    count = max(2, -(-(size - overlap) // max(cap - overlap, 1)))
    while True:
        length = _round_up(-(-(size + (count - 1) * overlap) // count), granule)
        if length <= cap:
            return length, _tile_starts(size, length, overlap)
        count += 1


@functools.lru_cache(maxsize=256)
def _axis_window(length: int, size: int, start: int, ramp: int) -> np.ndarray:
    """Blending weights along one axis of the tile at ``start``: the ramp window over the part inside the
    input, 0 over the padding."""
    valid = min(length, size - start)
    full = np.zeros(length, dtype=np.float64)
    full[:valid] = _ramp_window(valid, ramp, start > 0, start + length < size)
    full.flags.writeable = False
    return full


def _ramp_window(length: int, ramp: int, start_ramp: bool, end_ramp: bool) -> np.ndarray:
    """1D blending window: 1 inside, ``sin^2(pi (i + 1/2) / (2 ramp))`` rising over the first ``ramp``
    samples (when a neighbour tile overlaps there) and the mirror falling at the end.

    The rise of one tile and the fall of its neighbour over the same ``ramp`` samples sum to 1
    (sin^2 + cos^2); the weights never reach 0, so dividing by their sum is always safe.
    """
    w = np.ones(length, dtype=np.float64)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        rise = np.sin(np.pi * (np.arange(ramp) + 0.5) / (2 * ramp)) ** 2
        if start_ramp:
            w[:ramp] = rise
        if end_ramp:
            w[length - ramp :] = rise[::-1]
    return w


@dataclass(frozen=True)
class _Tiling:
    """Tile geometry over the spatial axes (1 or 2) of one array."""

    shape: tuple[int, ...]  # spatial shape of the input
    tile: tuple[int, ...]  # tile size per axis (a multiple of the network's size multiple)
    starts: tuple[tuple[int, ...], ...]  # tile starts per axis
    overlap: int  # blending ramp length

    @classmethod
    def plan(cls, shape: tuple[int, ...], tile: int, overlap: int, multiple: int, exact: bool,
             granule: int | None = None) -> _Tiling:
        """``exact``: every tile is exactly ``tile`` long (dense models with a fixed length); otherwise
        :func:`_axis_layout` per axis (``granule``: what tile lengths are rounded to, default ``multiple``)."""
        sizes, starts = [], []
        for n in shape:
            if exact:
                length, axis_starts = tile, _tile_starts(n, tile, overlap)
            else:
                length, axis_starts = _axis_layout(n, tile, overlap, multiple, granule or multiple)
            sizes.append(length)
            starts.append(tuple(axis_starts))
        split = [t for t, s in zip(sizes, starts) if len(s) > 1]
        ramp = max(0, min(overlap, min(split) // 2)) if split else 0
        return cls(tuple(shape), tuple(sizes), tuple(starts), ramp)

    @property
    def count(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    @property
    def padded_ratio(self) -> float:
        """Elements the network processes over elements of the input (1.0: no overlap, no padding)."""
        return self.count * float(np.prod(self.tile)) / float(np.prod(self.shape))

    def positions(self) -> Iterator[tuple[int, ...]]:
        """Tile origins, sorted along the first axis (the order the streaming blend relies on)."""
        yield from itertools.product(*self.starts)

    def window(self, pos: tuple[int, ...]) -> np.ndarray:
        """Separable product of per-axis ramps, shape = tile."""
        w = None
        for p, t, n in zip(pos, self.tile, self.shape):
            axis = _axis_window(t, n, int(p), self.overlap)
            w = axis if w is None else np.multiply.outer(w, axis)
        return w

    def cut(self, band: np.ndarray, pos: tuple[int, ...], row0: int) -> np.ndarray:
        """The tile at ``pos`` from ``band`` (the input's rows from ``row0``), reflect-padded at the end where
        the input is shorter than the tile."""
        sl = (slice(pos[0] - row0, pos[0] - row0 + self.tile[0]),)
        sl += tuple(slice(p, p + t) for p, t in zip(pos[1:], self.tile[1:]))
        piece = band[sl]
        pad = [(0, t - s) for t, s in zip(self.tile, piece.shape[: len(self.tile)])]
        if any(b for _, b in pad):
            piece = np.pad(piece, pad + [(0, 0)], mode="reflect" if min(piece.shape[:-1]) > 1 else "edge")
        return piece


def _plan(model: DenoisingModel, shape: tuple[int, ...], options: DenoiseOptions) -> _Tiling:
    """Tiles for a model: dense models their fixed length; image tiles the least padded area within
    ``options.tile``; 1D chunks of at most ``options.chunk``, lengths rounded to an eighth of it (a long
    recording is cut into chunks of exactly ``options.chunk``; a short one into a few shorter chunks)."""
    if model.config.get("arch") == "dense":
        length = int(model.config["length"])
        if shape[0] < length:
            raise ValueError(f"signal of {shape[0]} samples is shorter than the dense model's {length}")
        return _Tiling.plan(shape, length, min(options.chunk_overlap, length // 4), 1, exact=True)
    multiple = int(model.size_multiple)
    if int(model.rank) == 2:
        return _Tiling.plan(shape, options.tile, options.overlap, multiple, exact=False)
    granule = max(multiple, _round_up(options.chunk // 8, multiple))
    return _Tiling.plan(shape, options.chunk, options.chunk_overlap, multiple, exact=False, granule=granule)


Reader = Callable[[int, int], np.ndarray]
Sink = Callable[[int, np.ndarray], None]


def _denoise_stream(
    read: Reader,
    shape: tuple[int, ...],
    channels: int,
    model: DenoisingModel,
    groups: list[tuple[slice, float | None]],
    options: DenoiseOptions,
    rng: np.random.Generator | None,
    tiling: _Tiling,
    sink: Sink,
    progress: ProgressFn | None = None,
    dtype: type = np.float64,
) -> None:
    """Run the reverse process over the tiles of an input of spatial ``shape``, one band of rows at a time.

    ``read(a, b)``: rows ``a:b`` (first spatial axis) of the input, (b - a, *rest, channels), model units.
    ``groups``: (channel slice, t*) pairs; each slice is cleaned by its own network calls from its own
    t*, or passed through when t* is None. ``sink(a, rows)``: finished output rows ``a:a + len(rows)``
    (``dtype``, model units), handed over in order, each row once. Output = ``sum(w * tile) / sum(w)``,
    the sums kept in ``dtype`` (float32 for images and audio: half the memory of a band).
    Only the tiles of the current band, their input and the running sums are held, never a full-size
    copy, so memory stays bounded by what ``read`` and ``sink`` keep.
    """
    n0, rest = shape[0], tuple(shape[1:])
    active = [(g, t) for g, t in groups if t is not None]
    passive = [g for g, t in groups if t is None]
    if not active:
        for a in range(0, n0, max(tiling.tile[0], 1)):
            sink(a, np.array(read(a, min(a + tiling.tile[0], n0)), dtype=dtype))
        return
    positions = list(tiling.positions())
    budget = _CALL_ELEMENTS if len(shape) == 2 else _CALL_ELEMENTS // 4
    per_call = max(1, min(options.batch, budget // int(np.prod(tiling.tile))))
    total = len(positions) * len(active)
    length0 = tiling.tile[0]
    acc = np.zeros((0, *rest, channels), dtype=dtype)  # rows lo .. lo + len(acc) of the output sums
    wsum = np.zeros((0, *rest), dtype=dtype)
    lo = 0  # first row not yet handed to the sink
    bands: dict[int, np.ndarray] = {}  # input rows of the tile rows in flight, by start
    done = 0
    i = 0
    while i < len(positions):
        group = positions[i : i + per_call]
        i += len(group)
        end = max(min(p[0] + length0, n0) for p in group)
        if end - lo > acc.shape[0]:
            grow = end - lo - acc.shape[0]
            acc = np.concatenate([acc, np.zeros((grow, *rest, channels), dtype=dtype)])
            wsum = np.concatenate([wsum, np.zeros((grow, *rest), dtype=dtype)])
        for p in group:
            if p[0] not in bands:
                bands[p[0]] = read(p[0], min(p[0] + length0, n0))
        places = []
        for p in group:
            sl = tuple(slice(q, min(q + t, n)) for q, t, n in zip(p, tiling.tile, shape))
            inside = tuple(slice(0, s.stop - s.start) for s in sl)
            sl = (slice(sl[0].start - lo, sl[0].stop - lo), *sl[1:])
            w = tiling.window(p)[inside]
            wsum[sl] += w
            places.append((sl, inside, w[..., None]))
        for g, t_start in active:
            batch = np.stack([tiling.cut(bands[p[0]][..., g], p, p[0]) for p in group])
            cleaned = reverse_from_observation(model, batch, t_start, options.method, options.steps, rng)
            for (sl, inside, w), tile_out in zip(places, cleaned):
                acc[sl + (g,)] += w * tile_out[inside]
            done += len(group)
            if progress is not None:
                progress(done, total)
        nxt = positions[i][0] if i < len(positions) else n0
        if nxt > lo:  # no later tile touches rows before nxt
            k = nxt - lo
            rows = acc[:k] / wsum[:k, ..., None]
            if passive:
                given = read(lo, nxt)
                for g in passive:
                    rows[..., g] = given[..., g]
            sink(lo, rows)
            acc, wsum, lo = acc[k:], wsum[k:], nxt
            for s in [s for s in bands if s < nxt]:
                del bands[s]


def denoise_array(
    x: np.ndarray,
    model: DenoisingModel,
    sigma_model: float,
    options: DenoiseOptions,
    rng: np.random.Generator | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Clean ``x`` ((H, W, C) for rank-2 models, (N, C) for rank-1) observed with noise ``sigma_model``.

    Finds ``t* = sigma_to_t(sigma_model)`` and runs :func:`reverse_from_observation` over overlapping
    tiles/chunks (design §4). A 1-channel model cleans each channel of a multi-channel input on its own.
    Returns model units, same shape as ``x``; float64 for float64 input (signals), else float32.
    """
    x = np.asarray(x)
    out_dtype = np.float64 if x.dtype == np.float64 else np.float32  # signals keep precision
    rank = int(model.rank)
    if x.ndim == rank:
        x = x[..., None]
    if x.ndim != rank + 1:
        raise ValueError(f"expected a rank-{rank} input with channels, got shape {x.shape}")
    t_start = t_star(model.schedule, sigma_model)
    if t_start <= 1e-3:  # no noise to remove
        return x.astype(out_dtype)
    channels = int(model.config.get("channels", x.shape[-1]))
    if channels == x.shape[-1]:
        groups = [(slice(0, x.shape[-1]), t_start)]
    elif channels == 1:
        groups = [(slice(c, c + 1), t_start) for c in range(x.shape[-1])]
    else:
        raise ValueError(f"a {channels}-channel model cannot clean {x.shape[-1]} channels")
    tiling = _plan(model, x.shape[:-1], options)
    out = np.empty(x.shape, dtype=out_dtype)

    def sink(a: int, rows: np.ndarray) -> None:
        out[a : a + rows.shape[0]] = rows

    _denoise_stream(lambda a, b: x[a:b], x.shape[:-1], x.shape[-1], model, groups, options, rng, tiling, sink,
                    progress, out_dtype)
    return out


# --------------------------------------------------------------------------- models vs media


def check_model_fits(config: dict, media: Media, model_name: str = "model") -> list[str]:
    """InputError (one line, naming the model that would fit) when the model cannot clean this media.

    Image models need images with the same channel count; 1D models (audio or signal) take audio and
    signals alike, a 1-channel 1D model cleaning each channel alone. Returns notes for the user.
    """
    kind = config.get("domain")
    channels = int(config.get("channels", 1))
    samples = media.samples
    have = samples.shape[-1] if samples.ndim >= 2 else 1
    names = {1: "gray (1-channel)", 3: "RGB (3-channel)"}
    what = names.get(have, f"{have}-channel")
    notes: list[str] = []
    if media.domain == "image":
        if kind != "image":
            raise InputError(f"{model_name}: a {kind} model cannot clean the image {media.source or ''}; use an "
                             f"image model with {have} channel(s) (train one with `diffuse train --channels {have}` "
                             "on images)")
        if channels == 1 and have == 3:
            notes.append("gray model on a colour image: each opponent (luma/chroma) channel cleaned alone")
            return notes
        if channels != have:
            raise InputError(f"{model_name}: a {channels}-channel image model cannot clean this {what} image; it "
                             f"needs a {have}-channel image model (train one with `diffuse train --channels {have}`)")
        return notes
    if kind == "image":
        raise InputError(f"{model_name}: an image model cannot clean {media.domain} data; use an audio or signal "
                         "model (train one with `diffuse train` on audio or signal files)")
    if channels != 1 and channels != have:
        raise InputError(f"{model_name}: a {channels}-channel {kind} model cannot clean {have}-channel "
                         f"{media.domain} data; use a 1-channel model (it cleans each channel alone) or one "
                         f"with {have} channels")
    if config.get("arch") == "dense":
        length = int(config.get("length") or 0)
        if samples.shape[0] < length:
            raise InputError(f"{media.source or 'input'}: {samples.shape[0]} samples is shorter than the dense "
                             f"model's fixed length {length}; use a U-Net model or a longer signal")
    if kind != media.domain:
        article = "an" if str(kind)[:1] in "aeiou" else "a"
        notes.append(f"{article} {kind} model used on {media.domain} data (both are 1D)")
    rate = config.get("sample_rate")
    if needs_resampling(config, media):
        notes.append(f"resampled {media.sample_rate} Hz -> {rate} Hz (the model's rate) and back")
        if int(media.sample_rate) > int(rate):
            notes.append(f"content above {int(rate) // 2} Hz (the model's band) is removed")
    return notes


# Opponent colour transform (as in CBM3D): luma and two chroma channels, each scaled into the RGB range
# (rows sum of |.| = 1) so a gray model sees values like a gray image's. The rows are orthogonal, so
# i.i.d. RGB noise of std s stays independent across channels, with std s * |row|.
OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / 2, 0.0, -1 / 2], [1 / 4, -1 / 2, 1 / 4]])
OPPONENT_NOISE_GAIN = np.sqrt((OPPONENT**2).sum(axis=1))


def needs_resampling(config: dict, media: Media) -> bool:
    rate = config.get("sample_rate")
    have = getattr(media, "sample_rate", None)
    return bool(media.domain == "audio" and rate and have and int(have) != int(rate))


# --------------------------------------------------------------------------- the whole job


def _check_sigma_model(sigma_model: float, schedule: sch.Schedule, what: str) -> None:
    top = float(schedule.t_to_sigma(schedule.timesteps))
    if not (math.isfinite(sigma_model) and sigma_model > 0):
        raise InputError(f"{what}: must be a positive number in the file's units (e.g. 25 for 8-bit images)")
    if sigma_model > top:
        raise InputError(f"{what}: is {sigma_model:.4g} in model units, beyond the schedule's largest noise "
                         f"{top:.4g}; give the noise std in the file's units (e.g. 25 for 8-bit images)")


_SIGMA_FLOOR = 0.015  # model units (~2 levels of 8-bit): below this a filled salt-pepper image is left as is


def denoise_media(
    media: Media,
    model: DenoisingModel,
    options: DenoiseOptions,
    progress: ProgressFn | None = None,
    in_place: bool = False,
) -> tuple[Media, dict]:
    """Clean a loaded file: units, noise estimate, salt-and-pepper fill, tiled reverse process.

    Images and audio: ``sigma_model = sigma_file / media.scale``. Signals: robust-normalised per channel
    (``z = (x - median) / scale``), so ``sigma_model = sigma_file / scale``, and mapped back afterwards.
    Returns the cleaned Media (clipped to its value range, alpha untouched) and a report dict.

    ``in_place``: write the cleaned samples over ``media.samples`` as the rows are finished (each row is
    written after the last tile that reads it), so a large file needs no second full-size array; for
    callers that do not use the noisy samples afterwards. Ignored where the output cannot share the
    input's array (resampled audio, integer samples, a read-only array).
    """
    validate_options(options)
    notes = check_model_fits(model.config, media)
    rank = int(model.rank)
    samples = np.asarray(media.samples)  # no copy: images and audio are float32 already
    one_d_input = samples.ndim == 1
    x = samples[:, None] if one_d_input else samples
    n_samples = x.shape[0]
    resampled = needs_resampling(model.config, media)
    if resampled:  # the model only knows its own rate; go there and come back to the same sample count
        from diffuse_cli.resample import resample

        x = resample(x, int(media.sample_rate), int(model.config["sample_rate"]))
    if media.domain == "signal":
        from diffuse_cli.io import robust_denormalize, robust_normalize

        z, centre, unit = robust_normalize(np.asarray(x, dtype=np.float64))
        unit = np.broadcast_to(np.asarray(unit, dtype=np.float64), (x.shape[-1],))
    else:
        z, centre, unit = x, None, np.full((x.shape[-1],), float(media.scale))
    value_range = media.value_range if media.domain != "signal" else None
    rng = np.random.default_rng(options.seed)

    # Salt-and-pepper: decide, detect and fill first; the Gaussian part is handled below.
    kind = options.noise_kind
    impulses = 0
    if kind == "auto":
        is_sp, impulses = looks_salt_pepper(z, value_range)
        kind = "salt-pepper" if is_sp else "gaussian"
        impulses = impulses if is_sp else 0
        notes.append(f"auto: {'salt-and-pepper' if is_sp else 'Gaussian'} noise detected")
    if kind == "salt-pepper":
        mask = detect_impulses(z, value_range)
        impulses = int(mask.sum())
        z = fill_impulses(z, mask)

    # The result: float32 for images and audio (the work dtype too), float64 for signals.
    dtype = media.samples.dtype if np.issubdtype(media.samples.dtype, np.floating) else np.float32
    work = np.dtype(np.float64 if resampled else dtype)

    # A gray model on a colour image cleans the opponent channels one by one (CBM3D's approach); the
    # transform is applied band by band as the tiles need it, never to a full-size copy.
    opponent = media.domain == "image" and int(model.config.get("channels", 1)) == 1 and z.shape[-1] == 3
    if opponent:
        unit = unit / OPPONENT_NOISE_GAIN  # file-unit sigma s -> s * gain_k / scale in channel k
        forward, inverse = OPPONENT.T.astype(work), np.linalg.inv(OPPONENT).T.astype(work)

        def read(a: int, b: int) -> np.ndarray:
            return np.asarray(z[a:b], dtype=work) @ forward
    else:

        def read(a: int, b: int) -> np.ndarray:
            return z[a:b]

    # Noise level: given (file units) or estimated (model units), per channel group.
    per_channel = (rank == 1 or opponent) and int(model.config.get("channels", 1)) == 1 and z.shape[-1] > 1
    groups = [slice(c, c + 1) for c in range(z.shape[-1])] if per_channel else [slice(0, z.shape[-1])]
    estimated = options.sigma is None
    pieces = _estimation_pieces(read, z.shape[:-1], rank) if estimated else None
    sigmas_model = []
    for g in groups:
        if estimated:
            s = _estimate_sigma_pieces(pieces[..., g], rank, value_range)
        else:
            s = float(options.sigma) / float(np.sqrt(np.mean(unit[g] ** 2)))
            _check_sigma_model(s, model.schedule, f"--sigma {options.sigma}")
        sigmas_model.append(s)
    del pieces

    top = float(model.schedule.t_to_sigma(model.schedule.timesteps))
    untouched: list[slice] = []
    plan: list[tuple[slice, float | None]] = []
    for g, s in zip(groups, sigmas_model):
        if estimated and s > top:
            notes.append(f"estimated noise {s:.3g} exceeds the model's range; capped at {top:.3g}")
            s = top
        skip = kind == "salt-pepper" and estimated and s < _SIGMA_FLOOR
        t_start = t_star(model.schedule, s) if s > 0 and not skip else 0.0
        if t_start <= 1e-3:  # nothing to remove: passed through
            if kind != "salt-pepper":
                untouched.append(g)
            plan.append((g, None))
        else:
            plan.append((g, t_start))

    # Output rows arrive in order: back to file units (inverse opponent transform, signal units),
    # clipped, written straight into the result.
    if in_place and not resampled and x.dtype == dtype and x.flags.writeable:
        result = x  # safe: _denoise_stream reads no row after handing it to the sink
    else:
        result = np.empty(z.shape, dtype=work)

    def sink(a: int, rows: np.ndarray) -> None:
        b = a + rows.shape[0]
        if opponent:
            rows = rows @ inverse
        if media.domain == "signal":
            rows = robust_denormalize(rows, centre, unit)
            for g in untouched:  # bit-exact, not normalised and back
                rows[..., g] = x[a:b, g]
        if value_range is not None:
            np.clip(rows, *value_range, out=rows)
        result[a:b] = rows

    _denoise_stream(read, z.shape[:-1], z.shape[-1], model, plan, options, rng, _plan(model, z.shape[:-1], options),
                    sink, progress, work)
    if resampled:
        result = resample(result, int(model.config["sample_rate"]), int(media.sample_rate), length=n_samples)
        if value_range is not None:
            result = np.clip(result, *value_range)
    if one_d_input:
        result = result[:, 0]
    cleaned = media.with_samples(result.astype(dtype, copy=False))
    sigma_file = [float(s * np.sqrt(np.mean(unit[g] ** 2))) for g, s in zip(groups, sigmas_model)]
    # Summaries over the channels that had noise (a straight time column estimates 0 and is left alone).
    noisy_channels = [i for i, s in enumerate(sigmas_model) if s > 0] or list(range(len(groups)))
    sigma_model = float(np.median([sigmas_model[i] for i in noisy_channels]))
    info = {
        "sigma": float(np.median([sigma_file[i] for i in noisy_channels])),
        "sigma_model": sigma_model,
        "sigma_estimated": estimated,
        "t_star": t_star(model.schedule, min(sigma_model, top)),
        "method": options.method,
        "steps": 1 if options.method == "onestep" else int(options.steps),
        "noise_kind_used": kind,
        "impulses": impulses,
        "notes": notes,
    }
    if len(groups) > 1:
        info["sigma_per_channel"] = sigma_file
    return cleaned, info
