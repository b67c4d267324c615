"""Short-time spectra and the power spectrum of coloured, slowly varying noise.

numpy only. :func:`stft` / :func:`istft` are a Hann-windowed weighted overlap-add pair that reconstructs
its input exactly. :func:`estimate_noise_psd` estimates the noise power in every frequency bin of a noisy
signal (speech on top of fan noise, hum, pink or brown noise) as a bias-corrected low quantile of the
recursively smoothed periodogram: speech comes and goes in each bin, noise stays, so the lower tenth of a
bin's values over time is noise only. :func:`octave_bands` sums the estimate into octave bands for reports.

Units: a noise PSD holds, per rfft bin, the expected periodogram ``E|X_k|^2 / sum(w^2)``; white noise of
std ``s`` gives ``s^2`` in every bin, and ``noise_variance`` gives back the noise's variance per sample.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FRAME = 512  # samples per frame at 16 kHz (32 ms): the model band's bins are 31.25 Hz apart
HOP = 128  # a quarter frame: Hann^2 windows overlap-add to a constant
SMOOTHING = 0.8  # recursive smoothing of the periodogram over frames (time constant ~5 hops)
QUANTILE = 0.1  # the low quantile over time that is taken as noise only
TRACK_SECONDS = 2.0  # window of the tracking estimate: speech pauses occur within it
BLOCK_FRAMES = 4096  # frames per block when filtering a long signal (~33 s at 16 kHz)
_MAX_FRAMES = 16384  # the stationary estimate reads at most this many frames, evenly spread (~2 min at 16 kHz)
_PIECE_FRAMES = 512  # ... in pieces of this many consecutive frames
_CALIBRATION_SAMPLES = 1 << 18  # white noise simulated once per setting to find the quantile's bias


def frame_for_rate(sample_rate: float) -> tuple[int, int]:
    """``(frame, hop)`` for about 32 ms frames at any rate: the power of two nearest ``0.032 * rate``, hop
    a quarter of it (512/128 at 16 kHz, 1024/256 at 32-48 kHz)."""
    frame = 1 << max(4, round(math.log2(max(0.032 * float(sample_rate), 16.0))))
    return frame, frame // 4


def hann(frame: int) -> np.ndarray:
    """Periodic Hann window ``w[n] = sin^2(pi n / frame)``; its squares overlap-add to ``3 frame / 8 hop``
    at hops that divide ``frame / 4``."""
    return np.sin(np.pi * np.arange(frame) / frame) ** 2


def _check_frame(frame: int, hop: int) -> None:
    if frame < 4 or hop < 1 or frame % hop or frame // hop < 2:
        raise ValueError(f"frame {frame} must be a multiple (at least 2x) of hop {hop}")


def stft_frames(n: int, frame: int = FRAME, hop: int = HOP) -> int:
    """How many frames :func:`stft` makes of ``n`` samples: ``floor((n - 1 + frame - hop) / hop) + 1``, the
    frames that overlap the signal when frame ``l`` starts at sample ``l hop - (frame - hop)``, so that
    every sample is covered by ``frame / hop`` frames."""
    return (n - 1 + frame - hop) // hop + 1


def stft(x: np.ndarray, frame: int = FRAME, hop: int = HOP, first: int = 0, count: int | None = None) -> np.ndarray:
    """Short-time Fourier transform of a 1D signal: ``X[l, k] = sum_n w[n] x[l hop + n - (frame - hop)]
    exp(-2 pi i k n / frame)``, zeros outside the signal; shape ``(stft_frames(n), frame // 2 + 1)``.

    ``w`` is :func:`hann`. ``first``/``count``: only frames ``first .. first + count - 1`` (a long signal
    is transformed block by block with the same frames). :func:`full_frames` are wholly inside the signal.
    """
    _check_frame(frame, hop)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"stft takes a 1D signal, got shape {x.shape}")
    if count is None:
        count = stft_frames(len(x), frame, hop) - first
    a = first * hop - (frame - hop)  # first sample under frame `first`
    seg = np.zeros((count - 1) * hop + frame)
    lo, hi = max(a, 0), min(a + len(seg), len(x))
    if hi > lo:
        seg[lo - a : hi - a] = x[lo:hi]
    windows = sliding_window_view(seg, frame)[::hop]
    return np.fft.rfft(windows * hann(frame), axis=1)


class OverlapAdd:
    """Weighted overlap-add of frames into ``n`` samples, block by block (see :func:`istft`)."""

    def __init__(self, n: int, frame: int = FRAME, hop: int = HOP) -> None:
        _check_frame(frame, hop)
        self.n, self.frame, self.hop = n, frame, hop
        self.window = hann(frame)
        self.out = np.zeros((stft_frames(n, frame, hop) - 1) * hop + frame)

    def add(self, spec: np.ndarray, first: int) -> None:
        """Add frames ``first .. first + len(spec) - 1``: ``irfft(X[l]) * w`` at sample ``l hop``."""
        frames = spec.shape[0]
        parts, hop = self.frame // self.hop, self.hop
        y = (np.fft.irfft(spec, self.frame, axis=1) * self.window).reshape(frames, parts, hop)
        start = first * hop
        for r in range(parts):  # segment r of every frame lands r hops after the frame's start
            a = start + r * hop
            self.out[a : a + frames * hop] += y[:, r, :].reshape(-1)

    def result(self) -> np.ndarray:
        """The ``n`` samples: ``sum_l w y_l / sum_l w^2``. Every sample lies under ``frame / hop`` frames,
        so ``sum_l w^2`` at sample ``m`` is ``sum_r w^2[(m mod hop) + r hop]``, periodic in ``hop``. Call it
        once: it divides the accumulated frames in place."""
        start = self.frame - self.hop
        norm = np.sum((self.window**2).reshape(-1, self.hop), axis=0)
        out = self.out[start : start + self.n]
        shift = start % self.hop  # sample m of the signal is sample m + start of the frames' grid
        out /= np.resize(np.roll(norm, -shift), self.n)
        return out


def istft(spec: np.ndarray, n: int, frame: int = FRAME, hop: int = HOP) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add: ``x[m] = sum_l w[m - l hop] y_l[m - l hop] /
    sum_l w^2[m - l hop]`` with ``y_l = irfft(X[l])``; ``istft(stft(x), len(x)) == x`` to rounding.

    A modified spectrum gives the signal whose frames are closest to it in the least-squares sense
    (Griffin and Lim 1984).
    """
    spec = np.asarray(spec)
    if spec.shape[0] != stft_frames(n, frame, hop):
        raise ValueError(f"{spec.shape[0]} frames do not make {n} samples (need {stft_frames(n, frame, hop)})")
    ola = OverlapAdd(n, frame, hop)
    ola.add(spec, 0)
    return ola.result()


def filter_frames(x: np.ndarray, gains: Callable[[np.ndarray, int], np.ndarray], frame: int = FRAME,
                  hop: int = HOP, block: int = BLOCK_FRAMES) -> np.ndarray:
    """``istft(G * stft(x))`` computed ``block`` frames at a time, so a long signal never has its whole
    STFT in memory. ``gains(spec, first)`` returns the gains (or any complex factors) of frames
    ``first ..`` from their spectra, called in order (it may carry state from block to block)."""
    x = np.asarray(x, dtype=np.float64)
    total = stft_frames(len(x), frame, hop)
    ola = OverlapAdd(len(x), frame, hop)
    for first in range(0, total, block):
        spec = stft(x, frame, hop, first, min(block, total - first))
        ola.add(spec * gains(spec, first), first)
    return ola.result()


def full_frames(n: int, frame: int = FRAME, hop: int = HOP) -> slice:
    """The frames of :func:`stft` that lie wholly inside ``n`` samples (no zero padding in them)."""
    first = -(-(frame - hop) // hop)
    last = (n - hop) // hop  # frame l covers samples l hop - (frame - hop) .. l hop + hop - 1
    return slice(first, max(first, last + 1))


def periodogram(spec: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """``|X[l, k]|^2 / sum(w^2)``: white noise of variance ``s^2`` has expectation ``s^2`` in every bin."""
    return (spec.real**2 + spec.imag**2) / float(np.sum(hann(frame) ** 2))


def smooth_frames(power: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """First-order recursive smoothing over frames: ``P_s[l] = a P_s[l-1] + (1 - a) P[l]``, started at the
    mean of the first ``1 / (1 - a)`` frames (so the first frames are not a single periodogram)."""
    out = np.empty_like(power)
    head = max(1, int(round(1.0 / (1.0 - smoothing))))
    prev = power[:head].mean(axis=0)
    for i in range(power.shape[0]):
        prev = smoothing * prev + (1.0 - smoothing) * power[i]
        out[i] = prev
    return out


@functools.lru_cache(maxsize=16)
def quantile_bias(frame: int = FRAME, hop: int = HOP, smoothing: float = SMOOTHING,
                  quantile: float = QUANTILE) -> tuple[np.ndarray, np.ndarray]:
    """``(low, mid)``: per bin, the ``quantile`` and the median of the smoothed periodogram of white noise
    of unit variance, i.e. what :func:`estimate_noise_psd` divides by.

    A bin's smoothed periodogram of Gaussian noise is distributed like ``N_k`` times that of white noise
    (a scaled chi-square, 2 degrees of freedom per frame, correlated by the overlap and the smoothing, 1
    at 0 Hz and Nyquist), so its quantiles are ``N_k`` times these. No closed form covers the overlap,
    so they are measured once on simulated white noise (fixed seed; interior bins pooled).
    """
    rng = np.random.default_rng(12345)
    noise = rng.standard_normal(_CALIBRATION_SAMPLES)
    power = smooth_frames(periodogram(stft(noise, frame, hop), frame), smoothing)
    power = power[full_frames(len(noise), frame, hop)][int(4 / (1 - smoothing)) :]
    out = []
    for q in (quantile, 0.5):
        per_bin = np.quantile(power, q, axis=0)
        value = np.full(per_bin.shape, float(np.mean(per_bin[1:-1])))
        value[0], value[-1] = per_bin[0], per_bin[-1]
        out.append(value)
    return out[0], out[1]


@dataclass(frozen=True)
class NoiseSpectrum:
    """A noise power spectrum estimate (units: see the module docstring).

    ``psd`` (bins,) is the stationary noise estimate, ``mean_power`` (bins,) the input's mean periodogram
    (speech plus noise) over the same frames. ``track`` (blocks, bins), when asked for, follows slowly
    varying noise: the estimate over a window centred on frame ``track_frames[i]``.
    """

    psd: np.ndarray
    mean_power: np.ndarray
    sample_rate: float
    frame: int
    hop: int
    track: np.ndarray | None = None
    track_frames: np.ndarray | None = None

    @property
    def frequencies(self) -> np.ndarray:
        """Centre frequency of each bin in Hz: ``k * sample_rate / frame``."""
        return np.fft.rfftfreq(self.frame, 1.0 / self.sample_rate)

    def at_frames(self, first: int, count: int) -> np.ndarray:
        """The noise PSD of frames ``first .. first + count - 1``, (count, bins): the tracked estimate
        linearly interpolated between its blocks (held beyond the ends), or the stationary one repeated."""
        if self.track is None or self.track_frames is None or len(self.track_frames) < 2:
            return np.broadcast_to(self.psd, (count, self.psd.shape[0]))
        pos = np.interp(np.arange(first, first + count, dtype=np.float64), self.track_frames,
                        np.arange(len(self.track_frames), dtype=np.float64))
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(self.track_frames) - 1)
        frac = (pos - lo)[:, None]
        return (1 - frac) * self.track[lo] + frac * self.track[hi]


def noise_variance(psd: np.ndarray) -> float:
    """Variance per sample of noise with this PSD: the mean over the two-sided spectrum,
    ``(N_0 + 2 sum_{0<k<K} N_k + N_K) / frame`` with ``K = frame / 2``."""
    psd = np.asarray(psd, dtype=np.float64)
    frame = 2 * (psd.shape[-1] - 1)
    return float((psd[..., 0] + 2 * psd[..., 1:-1].sum(axis=-1) + psd[..., -1]) / frame)


def _low_quantile_estimate(power: np.ndarray, frame: int, hop: int, smoothing: float,
                           quantile: float) -> np.ndarray:
    """Per bin ``min(Q_q(P_s) / b_q, median(P_s) / b_50)`` over the frames of ``power`` (smoothed
    periodograms); ``b`` from :func:`quantile_bias`.

    The low quantile is robust to speech present in up to ``1 - q`` of the frames; the median term keeps a
    steady tone (hum), whose periodogram hardly varies, from being scaled up by ``1 / b_q``.
    """
    low, mid = quantile_bias(frame, hop, smoothing, quantile)
    q_low, q_mid = np.quantile(power, [quantile, 0.5], axis=0)
    return np.minimum(q_low / low, q_mid / mid)


def _smoothed_run(x: np.ndarray, first: int, count: int, frame: int, hop: int, smoothing: float) -> np.ndarray:
    """Smoothed periodograms of frames ``first .. first + count - 1``, less the first ``1 / (1 - a)``
    frames the smoother needs to forget its start (kept when the run is too short to spare them)."""
    power = smooth_frames(periodogram(stft(x, frame, hop, first, count), frame), smoothing)
    skip = int(round(1.0 / (1.0 - smoothing)))
    return power[skip:] if count > 4 * skip else power


def estimate_noise_psd(
    x: np.ndarray,
    sample_rate: float,
    frame: int | None = None,
    hop: int | None = None,
    track: bool = False,
    track_seconds: float = TRACK_SECONDS,
    smoothing: float = SMOOTHING,
    quantile: float = QUANTILE,
) -> NoiseSpectrum:
    """The noise power spectrum of a 1D signal, blind (no noise-only clip needed).

    ``P[l, k] = |X[l, k]|^2 / sum(w^2)`` (:func:`periodogram`), smoothed over frames
    (:func:`smooth_frames`), then per bin ``N_k = min(Q_q(P_s[., k]) / b_q, median(P_s[., k]) / b_50)``
    where ``b`` are the same statistics for white noise of unit variance (:func:`quantile_bias`), so the
    estimate is unbiased for stationary Gaussian noise of any colour. Speech raises a bin only while it is
    active; with pauses in more than ``q`` of the frames the quantile is noise only. Only frames wholly
    inside the signal count.

    ``track``: also the estimate over windows of ``track_seconds`` centred every quarter window (for noise
    whose level drifts), see :meth:`NoiseSpectrum.at_frames`. ``frame``/``hop`` default to
    :func:`frame_for_rate`. A long input is read in evenly spread runs of frames (at most ``_MAX_FRAMES``
    in all), so the cost is bounded; tracking reads every window.
    """
    if frame is None or hop is None:
        frame, hop = frame_for_rate(sample_rate)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"estimate_noise_psd takes a 1D signal, got shape {x.shape}")
    inner = full_frames(len(x), frame, hop)
    frames = inner.stop - inner.start
    if frames < 2:
        raise ValueError(f"a noise spectrum needs at least {frame + hop} samples, got {len(x)}")
    if frames <= _MAX_FRAMES:
        pooled = _smoothed_run(x, inner.start, frames, frame, hop, smoothing)
    else:
        starts = np.linspace(0, frames - _PIECE_FRAMES, _MAX_FRAMES // _PIECE_FRAMES).round().astype(int)
        pooled = np.concatenate([_smoothed_run(x, inner.start + s, _PIECE_FRAMES, frame, hop, smoothing)
                                 for s in starts])
    psd = _low_quantile_estimate(pooled, frame, hop, smoothing, quantile)
    mean_power = pooled.mean(axis=0)
    if not track:
        return NoiseSpectrum(psd, mean_power, float(sample_rate), frame, hop)
    window = min(frames, max(8, int(round(track_seconds * sample_rate / hop))))
    stride = max(1, window // 4)
    starts = np.arange(0, frames - window + 1, stride)
    blocks = [_low_quantile_estimate(_smoothed_run(x, inner.start + s, window, frame, hop, smoothing),
                                     frame, hop, smoothing, quantile) for s in starts]
    centres = inner.start + starts + window // 2
    return NoiseSpectrum(psd, mean_power, float(sample_rate), frame, hop, np.stack(blocks), centres)


# Octave bands: centres 1000 * 2^k Hz (IEC 61260 uses base-10 centres within 1% of these), edges at
# centre / sqrt(2) and centre * sqrt(2).
_OCTAVE_CENTRES = tuple(1000.0 * 2.0**k for k in range(-5, 5))  # 31.25 Hz .. 16 kHz


def band_variances(psd: np.ndarray, sample_rate: float, edges: list[tuple[float, float]]) -> np.ndarray:
    """The noise variance in each band ``[lo, hi)`` Hz: ``sum_{f_k in band} c_k N_k / frame`` with ``c_k = 2``
    for interior bins, 1 at 0 Hz and Nyquist, so bands that tile ``[0, rate/2]`` sum to
    :func:`noise_variance`."""
    psd = np.asarray(psd, dtype=np.float64)
    frame = 2 * (psd.shape[-1] - 1)
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    weight = np.full(psd.shape[-1], 2.0)
    weight[0] = weight[-1] = 1.0
    nyquist = sample_rate / 2
    out = []
    for lo, hi in edges:
        sel = (freqs >= lo) & ((freqs < hi) | ((hi >= nyquist) & (freqs <= nyquist)))
        out.append(float(np.sum(weight[sel] * psd[..., sel], axis=-1) / frame))
    return np.asarray(out)


def octave_edges(sample_rate: float) -> list[tuple[float, float, float]]:
    """``(low, centre, high)`` Hz of the octave bands (centres ``1000 * 2^k``, 31.25 Hz up) that start
    below Nyquist; the first starts at 0 Hz and the last ends at Nyquist, so they tile the spectrum."""
    nyquist = sample_rate / 2
    bands = [(c / math.sqrt(2), c, c * math.sqrt(2)) for c in _OCTAVE_CENTRES if c / math.sqrt(2) < nyquist]
    bands[0] = (0.0, bands[0][1], bands[0][2])
    bands[-1] = (bands[-1][0], bands[-1][1], nyquist)
    return bands


def octave_bands(spectrum: NoiseSpectrum, scale: float = 1.0) -> list[dict]:
    """Noise level per octave band, for reports and ``--json``: ``{"centre_hz", "low_hz", "high_hz",
    "sigma", "level_db"}`` with ``sigma = scale * sqrt(band variance)`` (the std of the noise restricted to
    the band, in the caller's units; the bands' ``sigma^2`` sum to the noise variance) and
    ``level_db = 20 log10(sigma)`` (dB re full scale for audio in [-1, 1])."""
    bands = octave_edges(spectrum.sample_rate)
    var = band_variances(spectrum.psd, spectrum.sample_rate, [(lo, hi) for lo, _, hi in bands])
    out = []
    for (lo, c, hi), v in zip(bands, var):
        sigma = float(scale * math.sqrt(max(v, 0.0)))
        out.append({"centre_hz": round(c, 2), "low_hz": round(lo, 2), "high_hz": round(hi, 2), "sigma": sigma,
                    "level_db": round(20 * math.log10(sigma), 2) if sigma > 0 else None})
    return out
