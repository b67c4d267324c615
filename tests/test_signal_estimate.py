"""Blind noise estimate of measured 1D series (domain "signal"): the top-band Welch estimate and the caveats."""

from __future__ import annotations

import numpy as np
import pytest

from diffuse_cli.denoising import estimate


def _sigma_at(x: np.ndarray, snr_db: float) -> float:
    """White-noise std that gives ``snr_db`` against the series' variance."""
    return float(np.sqrt(np.var(x) / 10 ** (snr_db / 10)))


def _sine_trend(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(4000)
    return np.sin(2 * np.pi * t / 200) + 0.002 * t


def _random_walk(rng: np.random.Generator) -> np.ndarray:
    return np.cumsum(rng.normal(size=4000))


def _monthly(rng: np.random.Generator) -> np.ndarray:
    """300 months: a yearly and a half-yearly cycle on a slow trend (the 6-month cycle fills Haar details)."""
    t = np.arange(300)
    return 10 * np.sin(2 * np.pi * t / 12) + 3 * np.cos(2 * np.pi * t / 6) + 0.05 * t


def _high_frequency(rng: np.random.Generator) -> np.ndarray:
    """Broadband content up to 0.42 cycles/sample (near Nyquist, like EEG or a fast seismogram)."""
    spectrum = np.fft.rfft(rng.normal(size=8192))
    spectrum[np.fft.rfftfreq(8192) > 0.42] = 0
    return np.fft.irfft(spectrum, 8192)


def _noisy(make, snr_db: float, seed: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    x = make(rng)
    sigma = _sigma_at(x, snr_db)
    return x + rng.normal(0.0, sigma, x.size), sigma


@pytest.mark.parametrize("make", [_sine_trend, _random_walk, _monthly], ids=["sine+trend", "walk", "monthly"])
@pytest.mark.parametrize("snr_db", [10, 20])
def test_signal_estimate_within_bounds(make, snr_db):
    for seed in range(4):
        y, sigma = _noisy(make, snr_db, seed)
        ratio = estimate.estimate_sigma(y[:, None], 1, domain="signal") / sigma
        assert 0.7 <= ratio <= 1.4, (seed, ratio)


@pytest.mark.parametrize("snr_db", [10, 20])
def test_high_frequency_content_lowers_the_estimate(snr_db):
    y, sigma = _noisy(_high_frequency, snr_db, 3)
    old = estimate.estimate_sigma(y[:, None], 1)  # what audio still gets
    new = estimate.estimate_sigma(y[:, None], 1, domain="signal")
    assert old > 2.0 * sigma  # the Haar and half-band estimates see the content
    assert new <= old
    assert new == pytest.approx(sigma, rel=0.25)


def test_audio_estimate_unchanged_by_the_signal_path():
    y, _ = _noisy(_high_frequency, 20, 1)
    assert estimate.estimate_sigma(y[:, None], 1, domain="audio") == estimate.estimate_sigma(y[:, None], 1)
    pieces = y[None, :, None]
    assert estimate.group_sigmas(pieces, [slice(0, 1)], 1, None) == [estimate.estimate_sigma(y[:, None], 1)]


def test_top_band_is_calibrated_on_white_noise():
    rng = np.random.default_rng(0)
    for n in (100, 1000, 20000):  # frames of 32, 64 and 512 samples
        assert estimate._sigma_top_band_1d(rng.normal(0.0, 0.3, n)) == pytest.approx(0.3, rel=0.2 if n < 500 else 0.06)
    assert estimate._sigma_top_band_1d(rng.normal(size=20)) is None  # shorter than one frame


def test_caveats_short_and_structure_dominated():
    rng = np.random.default_rng(5)
    one = [slice(0, 1)]
    short = np.sin(np.arange(50) / 5) + rng.normal(0, 0.1, 50)
    assert estimate.signal_caveats(short[None, :, None], one) == ["short"]
    plain, _ = _noisy(_sine_trend, 20, 0)
    assert estimate.signal_caveats(plain[None, :, None], one) == [None]
    busy, _ = _noisy(_high_frequency, 20, 0)
    assert estimate.signal_caveats(busy[None, :, None], one) == ["structure"]
    # a time column is left out; each group gets its own caveat
    both = np.stack([np.arange(plain.size, dtype=float), plain, busy[: plain.size]], -1)[None]
    assert estimate.signal_caveats(both, [slice(0, 1), slice(1, 2), slice(2, 3)]) == [None, None, "structure"]


def test_signal_noise_is_group_sigmas_and_caveats_at_once():
    """The joint call gives exactly what the two separate ones give (it only shares their per-channel work)."""
    plain, _ = _noisy(_sine_trend, 20, 0)
    busy, _ = _noisy(_high_frequency, 20, 0)
    walk, _ = _noisy(_random_walk, 10, 1)
    n = plain.size
    cases = [
        (np.stack([np.arange(n, dtype=float), plain, busy[:n], walk[:n]], -1)[None],
         [slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 4)]),
        (np.stack([plain, busy[:n]], -1).reshape(4, n // 4, 2), [slice(0, 2)]),  # windows, one group of two
        (plain[None, :50, None], [slice(0, 1)]),  # short
        (plain[None, :3, None], [slice(0, 1)]),  # too short for any estimate
    ]
    for pieces, groups in cases:
        sigmas, caveats = estimate.signal_noise(pieces, groups)
        assert sigmas == estimate.group_sigmas(pieces, groups, 1, None, domain="signal")
        assert caveats == estimate.signal_caveats(pieces, groups)
    sigmas, caveats = estimate.signal_noise(cases[0][0], cases[0][1])
    assert sigmas[0] == 0.0 and caveats == [None, None, "structure", None]
    assert all(s > 0 for s in sigmas[1:])
