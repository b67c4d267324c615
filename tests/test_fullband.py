"""diffuse_cli.fullband: the model's band and the band above it, complementary, the high band cleaned."""

from __future__ import annotations

import numpy as np
import pytest

from diffuse_cli import fullband


@pytest.mark.parametrize("rate", [44100, 48000])
def test_split_then_merge_is_the_input(rate):
    rng = np.random.default_rng(rate)
    for x in (rng.standard_normal(rate // 2), rng.standard_normal((rate // 3 + 7, 2))):
        low, high = fullband.split_bands(x, rate, 16000)
        assert high.shape == x.shape and low.shape[1:] == x.shape[1:]
        assert abs(low.shape[0] - round(x.shape[0] * 16000 / rate)) <= 1
        np.testing.assert_allclose(fullband.merge_bands(low, high, rate, 16000), x, atol=1e-6)


def test_high_band_holds_what_lies_above_the_model_band():
    rate = 48000
    t = np.arange(rate) / rate
    low_tone, high_tone = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 12000 * t)
    low, high = fullband.split_bands(low_tone + high_tone, rate, 16000)
    edge = slice(rate // 10, -rate // 10)  # away from the resampler's start and end
    residual = high[edge] - high_tone[edge]
    assert 10 * np.log10(np.sum(residual**2) / np.sum(high_tone[edge] ** 2)) < -40


@pytest.mark.parametrize("rate", [44100, 48000])
def test_a_tone_above_8_khz_survives_without_noise(rate):
    t = np.arange(rate) / rate
    x = 0.3 * np.sin(2 * np.pi * 12000 * t)
    low, high = fullband.split_bands(x, rate, 16000)
    out = fullband.merge_bands(low, fullband.denoise_high_band(high, rate), rate, 16000)
    assert 10 * np.log10(np.sum(x**2) / np.sum((out - x) ** 2)) > 20.0


def test_noise_in_the_high_band_is_reduced_and_a_tone_in_it_kept():
    rate = 48000
    rng = np.random.default_rng(3)
    t = np.arange(2 * rate) / rate
    tone = 0.1 * np.sin(2 * np.pi * 10000 * t)
    noise = 0.05 * rng.standard_normal(len(t))
    _, high_noise = fullband.split_bands(noise, rate, 16000)
    _, high = fullband.split_bands(tone + noise, rate, 16000)
    cleaned = fullband.denoise_high_band(high, rate)
    # noise alone: down by more than 10 dB (the least gain allows 30)
    alone = fullband.denoise_high_band(high_noise, rate)
    assert 10 * np.log10(np.sum(high_noise**2) / np.sum(alone**2)) > 10.0
    # with the tone: closer to the tone than before
    before = np.sum((high - tone) ** 2)
    after = np.sum((cleaned - tone) ** 2)
    assert 10 * np.log10(before / after) > 6.0


def test_median_over_bins_removes_a_narrow_peak_and_keeps_a_slope():
    psd = np.linspace(1.0, 2.0, 50)
    peaked = psd.copy()
    peaked[20:23] = 100.0
    np.testing.assert_allclose(fullband.median_over_bins(peaked)[15:28], psd[15:28], rtol=0.05)
    np.testing.assert_allclose(fullband.median_over_bins(psd)[5:-5], psd[5:-5], rtol=1e-12)
