"""Quality metrics: PSNR, SSIM (images), SNR and SI-SDR (signals). numpy only.

A metric that is not a finite number is still a float: PSNR/SNR of identical data is ``inf``, SSIM of an
image smaller than its 11x11 window is ``nan``. JSON has neither: :func:`json_safe` turns them into null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SSIM_WINDOW = 11  # side of the Gaussian window (radius 5)


def mse(ref: np.ndarray, x: np.ndarray) -> float:
    """Mean squared error ``mean((ref - x)^2)``."""
    diff = np.asarray(ref, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return float(np.mean(diff**2))


def psnr(ref: np.ndarray, x: np.ndarray, data_range: float) -> float:
    """Peak SNR in dB: ``10 log10(data_range^2 / MSE)``; inf when identical."""
    err = mse(ref, x)
    return float("inf") if err == 0 else float(10.0 * np.log10(data_range**2 / err))


def snr_db(ref: np.ndarray, x: np.ndarray, zero_mean: bool = False) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum(ref^2) / sum((x - ref)^2))``; inf when identical.

    ``zero_mean``: the signal power is taken around each channel's (last axis) mean,
    ``sum((ref - mean(ref))^2)``, so a DC level (20 degrees C of a temperature log) is not counted as signal.
    """
    ref = np.asarray(ref, dtype=np.float64)
    noise = np.asarray(x, dtype=np.float64) - ref
    den = float(np.sum(noise**2))
    signal = ref - channel_means(ref) if zero_mean else ref
    return float("inf") if den == 0 else float(10.0 * np.log10(np.sum(signal**2) / den))


def channel_means(x: np.ndarray) -> np.ndarray:
    """Mean of each channel (last axis; a 1-D array is one channel), shaped to broadcast against ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim <= 1:
        return np.asarray(np.mean(x)) if x.size else np.asarray(0.0)
    return np.mean(x.reshape(-1, x.shape[-1]), axis=0)


def si_sdr(ref: np.ndarray, x: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), per channel then averaged.

    ``s = (<x, r> / <r, r>) r``, ``SI-SDR = 10 log10(|s|^2 / |x - s|^2)``, both zero-mean.
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    x = np.asarray(x, dtype=np.float64).reshape(len(ref), -1)
    values = []
    for c in range(ref.shape[1]):
        r = ref[:, c] - ref[:, c].mean()
        e = x[:, c] - x[:, c].mean()
        target = (np.dot(e, r) / max(np.dot(r, r), 1e-20)) * r
        residual = e - target
        values.append(10.0 * np.log10(max(np.sum(target**2), 1e-20) / max(np.sum(residual**2), 1e-20)))
    return float(np.mean(values))


SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1D Gaussian ``g_i = exp(-((i - (size - 1) / 2) / sigma)^2 / 2) / sum_j g_j`` (SSIM's window)."""
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    return g / g.sum()


def _gaussian_filter(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with 'valid' borders (as in Wang et al.'s reference SSIM)."""
    k = gaussian_window()
    windows = np.lib.stride_tricks.sliding_window_view
    rows = windows(img, len(k), axis=1) @ k
    return np.moveaxis(windows(rows, len(k), axis=0), -1, -1) @ k


def ssim(ref: np.ndarray, x: np.ndarray, data_range: float) -> float:
    """Structural similarity (Wang et al. 2004), 11x11 Gaussian window (sigma 1.5), mean over channels.

    ``SSIM = ((2 mu_x mu_y + C1)(2 cov_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))``,
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``. ``nan`` (not computable) when the image is smaller than
    the window in either direction.
    """
    ref = np.asarray(ref, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if ref.ndim == 2:
        ref, x = ref[..., None], x[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for c in range(ref.shape[-1]):
        a, b = ref[..., c], x[..., c]
        if min(a.shape) < SSIM_WINDOW:
            return math.nan
        mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
        var_a = _gaussian_filter(a * a) - mu_a**2
        var_b = _gaussian_filter(b * b) - mu_b**2
        cov = _gaussian_filter(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float when it is finite, else None (JSON has no inf or nan: they become null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(record: Any) -> Any:
    """A copy of a JSON-bound record (dicts, lists, numbers, strings) with every float passed through
    :func:`finite_or_none`, numpy scalars included: ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(record, dict):
        return {key: json_safe(value) for key, value in record.items()}
    if isinstance(record, (list, tuple)):
        return [json_safe(value) for value in record]
    if isinstance(record, (bool, np.bool_)):
        return bool(record)
    if isinstance(record, (int, np.integer)):
        return int(record)
    if isinstance(record, (float, np.floating)):
        return finite_or_none(record)
    return record
