"""Noise-level estimation: the std of white Gaussian noise in an image or a 1D signal, blind.

numpy only; values in the input's own (model) units. Images: the smaller of a block-quantile estimate on
the finest Haar detail and Immerkaer's operator. 1D: the smaller of the Haar MAD (Donoho) and a spectral
estimate over the upper half of the band; for measured series (domain "signal", not audio) also the Welch
power in the top quarter of the band (:func:`_sigma_top_band_1d`), and :func:`signal_caveats` says when
a series' estimate is unreliable (:func:`signal_noise` gives both, each channel's estimates computed once).
A large input is estimated from evenly spread crops or windows (:func:`estimation_pieces`), so the estimate
never needs a full-size float64 copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from diffuse_cli.noise import axis_columns

MAD_TO_STD = 0.6744897501960817  # median(|N(0,1)|): sigma = MAD / 0.6745 (Donoho)
_Z10 = -1.2815515655446004  # standard normal 10% quantile
_BLOCK = 8  # block side in detail coefficients (2D: 8x8 = 16x16 pixels; 1D: 64 coefficients)
_FRAME = 512  # spectral estimate: samples per Hann-windowed frame
# The 10% quantile over frames of the per-frame median below, relative to sigma^2, for white noise
# (measured on 10^7 samples; the Hann window correlates neighbouring bins, so no closed form).
_SPECTRAL_Q10 = 0.816

# Inputs with more than _ESTIMATE_WHOLE values per channel are not read whole to estimate their noise
# (the estimate takes several float64 arrays of the size it reads): evenly spread crops (256 x 256) or
# windows (65536 samples) totalling _ESTIMATE_SAMPLE values per channel (2 Mpixel; 131 s of 16 kHz audio).
_ESTIMATE_WHOLE = 1 << 22
_ESTIMATE_SAMPLE = 1 << 21
_ESTIMATE_CROP = 256  # a multiple of the 16-pixel blocks
_ESTIMATE_WINDOW = 1 << 16  # a multiple of the 512-sample frames

# Measured series (domain "signal"): the top-band Welch estimate's band and frames, and when to warn.
_TOP_BAND = 0.375  # normalised frequency (cycles/sample) where the top band starts; it ends at Nyquist
_TOP_FRAME_MIN = 32  # shortest Welch frame; a series shorter than this gets no top-band estimate
_SHORT_SERIES = 64  # fewer samples than this: too few for a reliable blind estimate
_DISAGREEMENT = 2.0  # Haar / top-band beyond this: content, not noise, dominates the finest details


# --------------------------------------------------------------------------- public


def estimate_sigma(x: np.ndarray, rank: int, value_range: tuple[float, float] | None = None, *,
                   domain: str | None = None) -> float:
    """Robust noise std of ``x`` in its own (model) units; median over channels.

    ``x`` is (H, W, C) for rank 2 and (N, C) for rank 1. ``value_range`` (images, PCM audio) lets the
    estimate skip clipped regions. ``domain`` ``"signal"`` (a measured series, not audio) adds the
    top-band estimate. See :func:`_sigma_image_crops` and :func:`_sigma_signal_channel`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == rank:
        x = x[..., None]
    return estimate_sigma_pieces(x[None], rank, value_range, domain=domain)


def estimate_sigma_pieces(pieces: np.ndarray, rank: int, value_range: tuple[float, float] | None, *,
                          domain: str | None = None) -> float:
    """:func:`estimate_sigma` over pieces of one input, pooled: (N, H, W, C) crops or (K, L, C) windows."""
    values = channel_sigmas(pieces, rank, value_range, domain=domain)
    return float(np.median(values)) if values else 0.0


def group_sigmas(pieces: np.ndarray, groups: list[slice], rank: int,
                 value_range: tuple[float, float] | None, *, domain: str | None = None) -> list[float]:
    """The noise std of each channel group of the pieces: the median of its channels' estimates, time or
    index columns (:func:`axis_channels`) left out; 0 for a group of such columns only."""
    values = channel_sigmas(pieces, rank, value_range, domain=domain)
    axes = set(axis_channels(pieces)) if rank == 1 else set()
    return _group_medians(values, groups, axes)


def signal_noise(pieces: np.ndarray, groups: list[slice]) -> tuple[list[float], list[str | None]]:
    """:func:`group_sigmas` and :func:`signal_caveats` of 1D pieces (K, L, C) of a measured series (domain
    ``"signal"``) at once: the same numbers, each channel's Haar and top-band estimates computed once for both."""
    pieces = np.asarray(pieces, dtype=np.float64)
    axes = set(axis_channels(pieces))
    found = {c: _Estimates1D.of(pieces[..., c], top_band=True) for c in range(pieces.shape[-1]) if c not in axes}
    values = [found[c].sigma if c in found else 0.0 for c in range(pieces.shape[-1])]
    return _group_medians(values, groups, axes), _caveats(pieces, groups, axes, lambda c: found[c])


def channel_sigmas(pieces: np.ndarray, rank: int, value_range: tuple[float, float] | None, *,
                   domain: str | None = None) -> list[float]:
    """The noise std of each channel of the pieces (crops (N, H, W, C) or windows (K, L, C) of one input).

    1D: a channel that is a straight line in every piece (a time or index column, see
    :func:`diffuse_cli.noise.axis_columns`) has no noise to remove: 0. ``domain`` ``"signal"``: measured
    series, whose content may reach the Nyquist frequency; the top-band estimate is added (not for audio,
    whose pinned behaviour it would change).
    """
    pieces = np.asarray(pieces, dtype=np.float64)
    if rank == 2:
        return [_sigma_image_crops(pieces[..., c], value_range) for c in range(pieces.shape[-1])]
    axes = axis_channels(pieces)
    top_band = domain == "signal"
    return [0.0 if c in axes else _sigma_signal_channel(pieces[..., c], top_band)
            for c in range(pieces.shape[-1])]


def signal_caveats(pieces: np.ndarray, groups: list[slice]) -> list[str | None]:
    """Why the blind noise estimate of each channel group of 1D pieces (K, L, C) of a measured series is
    unreliable, or None: ``"short"`` under 64 samples per channel; ``"structure"`` when, on some channel,
    the Haar MAD and the top-band estimate differ by more than 2x (content, not noise, fills the finest
    details, so the estimate leans on the top band alone). Time or index columns are left out."""
    pieces = np.asarray(pieces, dtype=np.float64)
    axes = set(axis_channels(pieces))
    return _caveats(pieces, groups, axes, lambda c: _Estimates1D.of(pieces[..., c], top_band=True, spectral=False))


def _group_medians(values: list[float], groups: list[slice], axes: set[int]) -> list[float]:
    """The median of each group's channel values, ``axes`` left out; 0 for a group of axes only."""
    medians = []
    for g in groups:
        kept = [values[c] for c in range(*g.indices(len(values))) if c not in axes]
        medians.append(float(np.median(kept)) if kept else 0.0)
    return medians


def _caveats(pieces: np.ndarray, groups: list[slice], axes: set[int],
             estimates: Callable[[int], _Estimates1D]) -> list[str | None]:
    """:func:`signal_caveats`, with each channel's estimates from ``estimates(channel)`` (asked only when needed)."""
    length = pieces.shape[0] * pieces.shape[1]
    caveats: list[str | None] = []
    for g in groups:
        kept = [c for c in range(*g.indices(pieces.shape[-1])) if c not in axes]
        if not kept:
            caveats.append(None)
        elif length < _SHORT_SERIES:
            caveats.append("short")
        else:
            caveats.append("structure" if any(estimates(c).structure_dominated for c in kept) else None)
    return caveats


def axis_channels(pieces: np.ndarray) -> list[int]:
    """The channels of 1D pieces (K, L, C) that are a time or index axis in every piece
    (:func:`diffuse_cli.noise.axis_columns`): never denoised."""
    return sorted(set.intersection(*(set(axis_columns(np.asarray(piece, dtype=np.float64))) for piece in pieces)))


def estimation_pieces(read: Callable[[int, int], np.ndarray], shape: tuple[int, ...], rank: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- images


def _chi2_mean_quantile(k: int, z: float) -> float:
    """Quantile of chi2_k / k at the normal quantile z (Wilson-Hilferty: ``(1 - 2/9k + z sqrt(2/9k))^3``)."""
    c = 2.0 / (9.0 * k)
    return (1.0 - c + z * math.sqrt(c)) ** 3


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


@dataclass
class _ImageStatistics:
    """What the iterative image estimate reuses: per block (flattened over crops) and per inner pixel."""

    grid: tuple[int, int, int]  # crops, block rows, block columns
    cells: int  # detail coefficients per block
    bounded: bool  # the value range is known (clipping can occur)
    energy: np.ndarray  # mean squared Haar HH detail over the unclipped cells of each block
    usable: np.ndarray  # blocks with at least 3/4 of their cells unclipped
    dist: np.ndarray  # distance of each block's mean to the nearer end of the value range
    lap: np.ndarray  # Immerkaer response at pixels (i+1, j+1)
    grad: np.ndarray  # gradient magnitude |dx| + |dy| at the same pixels
    near_clip: np.ndarray  # the pixel's 3x3 neighbourhood holds a clipped pixel
    rows: np.ndarray  # block row of each inner pixel row
    cols: np.ndarray  # block column of each inner pixel column


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
    stats = _image_statistics(ims, value_range)
    if stats is None:
        return 0.0
    sigma = None
    for _ in range(4):
        new = _image_estimate(stats, sigma)
        done = sigma is not None and abs(new - sigma) <= 0.01 * max(sigma, 1e-12)
        sigma = new
        if done:
            break
    return float(sigma)


def _image_statistics(ims: np.ndarray, value_range: tuple[float, float] | None) -> _ImageStatistics | None:
    """Block energies and Immerkaer inputs of crops (N, H, W), whole blocks only; None when too small."""
    n_crops = ims.shape[0]
    h2, w2 = ims.shape[1] // 2, ims.shape[2] // 2
    if h2 < 2 or w2 < 2:
        return None
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
    count = cell_ok.reshape(n_crops, nb_h, bh, nb_w, bw).sum(axis=(2, 4))
    energy = ((hh**2) * cell_ok).reshape(n_crops, nb_h, bh, nb_w, bw).sum(axis=(2, 4)) / np.maximum(count, 1)
    usable = (count >= 0.75 * bh * bw).ravel()
    means = ims.reshape(n_crops, nb_h, 2 * bh, nb_w, 2 * bw).mean(axis=(2, 4)).ravel()
    return _ImageStatistics(
        grid=(n_crops, nb_h, nb_w), cells=bh * bw, bounded=bool(np.isfinite(lo)), energy=energy.ravel(),
        usable=usable if usable.any() else np.ones_like(usable), dist=np.minimum(means - lo, hi - means),
        lap=_immerkaer_response(ims),
        grad=np.abs(ims[:, 1:-1, 2:] - ims[:, 1:-1, :-2]) + np.abs(ims[:, 2:, 1:-1] - ims[:, :-2, 1:-1]),
        near_clip=sliding_window_view(clipped, (3, 3), axis=(1, 2)).any(axis=(3, 4)),
        rows=np.arange(1, ims.shape[1] - 1) // (2 * bh), cols=np.arange(1, ims.shape[2] - 1) // (2 * bw))


def _image_estimate(stats: _ImageStatistics, sigma: float | None) -> float:
    """One pass: the smaller of the block-quantile and Immerkaer estimates over the blocks that are far
    enough (2.5 ``sigma``, the previous estimate) from the value range's ends."""
    valid = stats.usable.copy()
    if sigma is not None and stats.bounded:
        valid &= stats.dist > 2.5 * sigma
        if valid.sum() < max(4, 0.05 * stats.usable.sum()):
            valid = stats.usable & (stats.dist >= np.quantile(stats.dist[stats.usable], 0.8))
    quantile = max(float(np.quantile(stats.energy[valid], 0.1)), 0.0)
    blocks = math.sqrt(quantile / _chi2_mean_quantile(stats.cells, _Z10))
    pix_ok = valid.reshape(stats.grid)[:, stats.rows[:, None], stats.cols[None, :]] & ~stats.near_clip
    g = stats.grad[pix_ok]
    if g.size < 16:
        return blocks
    flat = g <= np.quantile(g, 0.9)
    immer = math.sqrt(math.pi / 2) * float(np.mean(np.abs(stats.lap[pix_ok][flat]))) / 6.0
    return min(blocks, immer)


# --------------------------------------------------------------------------- 1D


def _sigma_haar_1d(x: np.ndarray) -> float:
    """Donoho: MAD of the finest Haar detail ``d_i = (x_2i - x_2i+1) / sqrt 2`` over 0.6745 (exact zeros,
    i.e. digital silence, left out). ``x`` is (N,) or windows (K, N), pooled."""
    n = x.shape[-1] // 2
    d = (x[..., 0 : 2 * n : 2] - x[..., 1 : 2 * n : 2]).ravel() / math.sqrt(2.0)
    d = d[d != 0]
    return float(np.median(np.abs(d)) / MAD_TO_STD) if d.size else 0.0


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


def _top_band_frame(n: int) -> int:
    """Welch frame length for ``n`` samples: 512, or ``n / 8`` rounded down to a power of two (at least 32)
    when the series is shorter than eight 512-sample frames."""
    if n >= 8 * _FRAME:
        return _FRAME
    return max(_TOP_FRAME_MIN, 1 << int(math.floor(math.log2(max(n / 8, _TOP_FRAME_MIN)))))


def _sigma_top_band_1d(x: np.ndarray) -> float | None:
    """``sqrt(median_f P(f))`` over normalised frequencies ``0.375 <= f < 0.5``, where ``P`` is the Welch
    power spectrum (Hann frames of :func:`_top_band_frame` samples, 50 % overlap, each frame's mean removed,
    ``P = mean |X_k|^2 / sum(w^2)``, so white noise of std s gives ``P = s^2``). Measured series seldom
    carry much content in the top quarter of the band, where the finest Haar detail still sees it.
    None when a window is shorter than one frame. ``x`` is (N,) or windows (K, N), pooled."""
    x = x.reshape(-1, x.shape[-1])
    frame = _top_band_frame(x.size)
    if x.shape[1] < frame:
        return None
    w = np.hanning(frame)
    band = (np.fft.rfftfreq(frame) >= _TOP_BAND) & (np.fft.rfftfreq(frame) < 0.5)
    total, count = np.zeros(int(band.sum())), 0
    for window in x:  # one window at a time: the frames of a long sample are not held at once
        seg = sliding_window_view(window, frame)[:: frame // 2]
        seg = seg[np.any(seg != seg[:, :1], axis=1)]  # constant stretches (gaps, held values) carry no noise
        seg = seg - seg.mean(axis=1, keepdims=True)
        total += np.sum(np.abs(np.fft.rfft(seg * w, axis=1)[:, band]) ** 2, axis=0)
        count += seg.shape[0]
    if count == 0:
        return None
    power = total / (count * float(np.sum(w**2)))
    return math.sqrt(max(float(np.median(power)), 0.0))


@dataclass(frozen=True)
class _Estimates1D:
    """The blind estimates of one 1D channel (N,) or of windows (K, N) of it, pooled; None where one is
    unavailable (fewer than 4 samples, too short for its frames, or not asked for)."""

    haar: float | None
    spectral: float | None
    top: float | None  # the top-band estimate, for measured series

    @classmethod
    def of(cls, x: np.ndarray, top_band: bool, spectral: bool = True) -> _Estimates1D:
        if x.shape[-1] < 4:
            return cls(None, None, None)
        return cls(_sigma_haar_1d(x), _sigma_spectral_1d(x) if spectral else None,
                   _sigma_top_band_1d(x) if top_band else None)

    @property
    def sigma(self) -> float:
        """The smallest estimate (content only pushes each upwards); 0 when none is available."""
        found = [e for e in (self.haar, self.spectral, self.top) if e is not None]
        return min(found) if found else 0.0

    @property
    def structure_dominated(self) -> bool:
        """The Haar MAD and the top-band estimate differ by more than 2x (see :func:`signal_caveats`); False
        when either is unavailable or zero."""
        if self.haar is None or self.top is None or self.haar <= 0 or self.top <= 0:
            return False
        return max(self.haar, self.top) > _DISAGREEMENT * min(self.haar, self.top)


def _sigma_signal_channel(x: np.ndarray, top_band: bool = False) -> float:
    """Noise std of one 1D channel (N,) or of windows (K, N) of it, pooled: the smaller of the Haar MAD
    and the spectral estimate, and with ``top_band`` (measured series) of :func:`_sigma_top_band_1d` too.

    All are consistent for white noise; content (a sine, speech, music) only pushes each upwards, and
    the spectral one ignores tones and low-frequency content. Digital silence is left out of all.
    """
    return _Estimates1D.of(x, top_band).sigma
