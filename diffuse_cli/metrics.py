"""Quality metrics: PSNR, SSIM (images), SNR and SI-SDR (signals). numpy only."""

from __future__ import annotations

import numpy as np


def mse(ref: np.ndarray, x: np.ndarray) -> float:
    """Mean squared error ``mean((ref - x)^2)``."""
    diff = np.asarray(ref, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return float(np.mean(diff**2))


def psnr(ref: np.ndarray, x: np.ndarray, data_range: float) -> float:
    """Peak SNR in dB: ``10 log10(data_range^2 / MSE)``; inf when identical."""
    err = mse(ref, x)
    return float("inf") if err == 0 else float(10.0 * np.log10(data_range**2 / err))


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum(ref^2) / sum((x - ref)^2))``."""
    ref = np.asarray(ref, dtype=np.float64)
    noise = np.asarray(x, dtype=np.float64) - ref
    den = float(np.sum(noise**2))
    return float("inf") if den == 0 else float(10.0 * np.log10(np.sum(ref**2) / den))


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


def _gaussian_filter(img: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian blur with 'valid' borders (as in Wang et al.'s reference SSIM)."""
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    windows = np.lib.stride_tricks.sliding_window_view
    rows = windows(img, len(k), axis=1) @ k
    return np.moveaxis(windows(rows, len(k), axis=0), -1, -1) @ k


def ssim(ref: np.ndarray, x: np.ndarray, data_range: float) -> float:
    """Structural similarity (Wang et al. 2004), 11x11 Gaussian window (sigma 1.5), mean over channels.

    ``SSIM = ((2 mu_x mu_y + C1)(2 cov_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))``,
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
    """
    ref = np.asarray(ref, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if ref.ndim == 2:
        ref, x = ref[..., None], x[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for c in range(ref.shape[-1]):
        a, b = ref[..., c], x[..., c]
        if min(a.shape) < 11:
            raise ValueError("SSIM needs images at least 11x11")
        mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
        var_a = _gaussian_filter(a * a) - mu_a**2
        var_b = _gaussian_filter(b * b) - mu_b**2
        cov = _gaussian_filter(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))
