"""Full-band audio with a model of a lower rate: the band the model covers, and the band above it.

numpy only (resampling by :mod:`diffuse_cli.resample`). A 16 kHz model cleans 0-8 kHz; a 44.1 or 48 kHz
recording also has 8-22/24 kHz (sibilants, breath, air). :func:`split_bands` gives the model's band at
the model's rate and the rest at the file's rate, complementary by construction: :func:`merge_bands`
of the two, unchanged, is the input to rounding. The high band is cleaned by :func:`denoise_high_band`
(a Wiener gain from its own noise PSD) instead of being deleted.
"""

from __future__ import annotations

import numpy as np

from diffuse_cli import spectrum as sp
from diffuse_cli.coloured import ExcessWiener

HIGH_MIN_GAIN = 0.03  # the high band is attenuated by at most 30 dB (no holes)
HIGH_DD_SMOOTHING = 0.98  # decision-directed weight (Ephraim and Malah): smooth gains, little musical noise
TONE_MEDIAN_BINS = 9  # the noise PSD is median-filtered over this many bins: steady tones stay signal


def split_bands(x: np.ndarray, sample_rate: int, model_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``: ``low = R_down(x)`` at ``model_rate`` and ``high = x - R_up(low)`` at ``sample_rate``
    (same shape as ``x``), ``R`` the resampler of :func:`diffuse_cli.resample.resample` (flat pass band,
    so ``high`` holds what lies above the model's Nyquist). ``merge_bands(low, high) == x``."""
    from diffuse_cli.resample import resample

    x = np.asarray(x, dtype=np.float64)
    low = resample(x, int(sample_rate), int(model_rate))
    high = x - resample(low, int(model_rate), int(sample_rate), length=x.shape[0])
    return low, high


def merge_bands(low: np.ndarray, high: np.ndarray, sample_rate: int, model_rate: int) -> np.ndarray:
    """``R_up(low) + high``, at ``sample_rate`` with ``high``'s length: the inverse of :func:`split_bands`."""
    from diffuse_cli.resample import resample

    high = np.asarray(high, dtype=np.float64)
    return resample(np.asarray(low, dtype=np.float64), int(model_rate), int(sample_rate),
                    length=high.shape[0]) + high


def median_over_bins(psd: np.ndarray, width: int = TONE_MEDIAN_BINS) -> np.ndarray:
    """Running median of a PSD over ``width`` neighbouring bins (edges repeated): broadband noise keeps
    its level, a peak narrower than half the width (a steady tone) is replaced by its surroundings."""
    half = width // 2
    padded = np.pad(np.asarray(psd, dtype=np.float64), half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)


def denoise_high_band(high: np.ndarray, sample_rate: int) -> np.ndarray:
    """The high band less its noise, channel by channel: the decision-directed Wiener gain
    (:class:`diffuse_cli.coloured.ExcessWiener` with floor 0, least gain ``HIGH_MIN_GAIN``) with the
    noise PSD :func:`diffuse_cli.spectrum.estimate_noise_psd` median-filtered over
    ``TONE_MEDIAN_BINS`` bins, so steady tones (which a low-quantile estimate takes for noise) are kept.
    A signal too short for a noise estimate is returned as it is."""
    high = np.asarray(high, dtype=np.float64)
    columns = high[:, None] if high.ndim == 1 else high
    frame, hop = sp.frame_for_rate(sample_rate)
    out = np.empty_like(columns)
    for c in range(columns.shape[1]):
        x = columns[:, c]
        if sp.full_frames(len(x), frame, hop).stop - sp.full_frames(len(x), frame, hop).start < 2:
            out[:, c] = x
            continue
        noise = median_over_bins(sp.estimate_noise_psd(x, sample_rate, frame, hop).psd)
        gains = ExcessWiener(noise, 0.0, frame, smoothing=HIGH_DD_SMOOTHING, dead_zone=1.0,
                             min_gain=HIGH_MIN_GAIN)
        out[:, c] = sp.filter_frames(x, gains, frame, hop)
    return out[:, 0] if high.ndim == 1 else out
