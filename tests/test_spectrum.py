"""diffuse_cli.spectrum: STFT round trips and the blind noise PSD estimate on noise of known spectrum.

The reference spectrum of a noise is computed without the estimator: the mean periodogram of the noise
alone (same realisation, every frame), or sigma^2 for white noise. Octave-band levels are compared where
the speech (sample_data/speech.wav, measured alone) is weaker than the noise in that band.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffuse_cli import spectrum as sp

SR = 16000
SPEECH = Path(__file__).resolve().parents[1] / "sample_data" / "speech.wav"


def speech() -> np.ndarray:
    x, sr = sf.read(SPEECH, dtype="float64")
    assert sr == SR
    return x


def shaped_noise(n: int, gain, seed: int) -> np.ndarray:
    """Gaussian noise with amplitude response ``gain(f)`` (f in Hz), unit variance."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    out = np.fft.irfft(spec * gain(np.fft.rfftfreq(n, 1.0 / SR)), n)
    return out / np.std(out)


def hum(n: int, seed: int, f0: float = 50.0, harmonics: int = 7) -> np.ndarray:
    """Mains hum: harmonics 1..7 of f0 with amplitude 1/h and random phases, unit variance."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    out = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, harmonics + 1))
    return out / np.std(out)


NOISES = {
    "white": lambda n, s: shaped_noise(n, lambda f: np.ones_like(f), s),
    "pink": lambda n, s: shaped_noise(n, lambda f: 1 / np.sqrt(np.maximum(f, 20.0)), s),
    "brown": lambda n, s: shaped_noise(n, lambda f: 1 / np.maximum(f, 20.0), s),
    "band 1-3 kHz": lambda n, s: shaped_noise(n, lambda f: ((f > 1000) & (f < 3000)) + 0.03, s),
    "hum + floor": lambda n, s: hum(n, s) + 0.05 * shaped_noise(n, lambda f: np.ones_like(f), s + 1),
}


def band_levels_db(psd: np.ndarray) -> np.ndarray:
    edges = [(lo, hi) for lo, _, hi in sp.octave_edges(SR)]
    return 10 * np.log10(sp.band_variances(psd, SR, edges))


# --------------------------------------------------------------------------- STFT


@pytest.mark.parametrize("n", [1, 100, 511, 512, 1000, 16001])
def test_stft_istft_reconstructs_exactly(n):
    x = np.random.default_rng(n).standard_normal(n)
    spec = sp.stft(x)
    assert spec.shape == (sp.stft_frames(n), sp.FRAME // 2 + 1)
    np.testing.assert_allclose(sp.istft(spec, n), x, atol=1e-12)


def test_blocks_of_frames_are_the_frames_of_the_whole():
    x = np.random.default_rng(1).standard_normal(5003)
    whole = sp.stft(x, 256, 64)
    parts = [sp.stft(x, 256, 64, first, min(7, len(whole) - first)) for first in range(0, len(whole), 7)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # filtering block by block with unit gains returns the input; with a gain of 0.5 half of it
    np.testing.assert_allclose(sp.filter_frames(x, lambda s, f: np.ones(s.shape), 256, 64, block=5), x, atol=1e-12)
    np.testing.assert_allclose(sp.filter_frames(x, lambda s, f: np.full(s.shape, 0.5), 256, 64, block=3), x / 2,
                               atol=1e-12)


def test_istft_refuses_a_frame_count_that_does_not_fit():
    with pytest.raises(ValueError, match="frames"):
        sp.istft(np.zeros((3, 257), complex), 16000)


def test_frame_for_rate_is_about_32_ms():
    assert sp.frame_for_rate(16000) == (512, 128)
    for rate in (8000, 44100, 48000):
        frame, hop = sp.frame_for_rate(rate)
        assert 0.02 <= frame / rate <= 0.05 and hop * 4 == frame


def test_full_frames_hold_no_padding():
    n = 3000
    inner = sp.full_frames(n)
    x = np.ones(n)
    spec = sp.stft(x)
    dc = spec[:, 0].real  # sum of the window over the samples under the frame
    np.testing.assert_allclose(dc[inner], np.sum(sp.hann(sp.FRAME)))
    assert dc[inner.start - 1] < np.sum(sp.hann(sp.FRAME)) and dc[inner.stop] < np.sum(sp.hann(sp.FRAME))


# --------------------------------------------------------------------------- noise PSD


def test_white_noise_psd_within_1_db_in_every_bin():
    sigma = 0.1
    x = sigma * np.random.default_rng(3).standard_normal(10 * SR)
    est = sp.estimate_noise_psd(x, SR)
    err = 10 * np.log10(est.psd / sigma**2)
    assert np.all(np.abs(err) < 1.0), (err.min(), err.max())
    assert abs(10 * np.log10(sp.noise_variance(est.psd) / sigma**2)) < 0.3


@pytest.mark.parametrize("seed", [4, 5])
def test_white_noise_octave_bands_within_1_db_on_3_seconds(seed):
    sigma = 0.05
    x = sigma * np.random.default_rng(seed).standard_normal(3 * SR)
    est = sp.estimate_noise_psd(x, SR)
    truth = band_levels_db(np.full(est.psd.shape, sigma**2))
    assert np.all(np.abs(band_levels_db(est.psd) - truth) < 1.0)


@pytest.mark.parametrize("kind", list(NOISES))
def test_coloured_noise_octave_bands_within_2_db(kind):
    n = 3 * SR
    noise = 0.05 * NOISES[kind](n, 7)
    est = sp.estimate_noise_psd(noise, SR)
    truth = band_levels_db(sp.periodogram(sp.stft(noise)).mean(axis=0))
    err = band_levels_db(est.psd) - truth
    assert np.all(np.abs(err) < 2.0), dict(zip([c for _, c, _ in sp.octave_edges(SR)], err.round(2)))


@pytest.mark.parametrize("kind", list(NOISES))
@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_noise_under_speech_octave_bands_within_2_db_where_speech_is_weaker(kind, snr_db):
    x = speech()
    noise = NOISES[kind](len(x), 11)
    noise *= math.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
    est = sp.estimate_noise_psd(x + noise, SR)
    truth = band_levels_db(sp.periodogram(sp.stft(noise)).mean(axis=0))
    speech_db = band_levels_db(sp.periodogram(sp.stft(x)).mean(axis=0))
    weak = speech_db < truth  # bands where the noise is stronger than the speech
    assert weak.any()
    err = (band_levels_db(est.psd) - truth)[weak]
    assert np.all(np.abs(err) < 2.0), err.round(2)
    # where speech dominates the estimate can only be raised by it, never far below the noise
    assert np.all(band_levels_db(est.psd) - truth > -2.0)


def test_tracking_follows_a_step_in_noise_level():
    rng = np.random.default_rng(8)
    x = np.concatenate([0.01 * rng.standard_normal(4 * SR), 0.04 * rng.standard_normal(4 * SR)])
    est = sp.estimate_noise_psd(x, SR, track=True, track_seconds=1.0)
    frames = sp.stft_frames(len(x))
    per_frame = est.at_frames(0, frames)
    assert per_frame.shape == (frames, sp.FRAME // 2 + 1)
    early = sp.noise_variance(per_frame[frames // 8])
    late = sp.noise_variance(per_frame[7 * frames // 8])
    assert abs(10 * np.log10(early / 0.01**2)) < 1.0
    assert abs(10 * np.log10(late / 0.04**2)) < 1.0
    # the stationary estimate is the low quantile over both halves: near the quieter one
    assert abs(10 * np.log10(sp.noise_variance(est.psd) / 0.01**2)) < 3.0


def test_octave_bands_tile_the_spectrum_and_match_white_noise():
    sigma = 0.1
    psd = np.full(sp.FRAME // 2 + 1, sigma**2)
    est = sp.NoiseSpectrum(psd, psd, float(SR), sp.FRAME, sp.HOP)
    bands = sp.octave_bands(est, scale=2.0)
    assert bands[0]["low_hz"] == 0.0 and bands[-1]["high_hz"] == SR / 2
    assert math.isclose(sum(b["sigma"] ** 2 for b in bands), (2.0 * sigma) ** 2, rel_tol=1e-9)
    one_k = next(b for b in bands if b["centre_hz"] == 1000.0)
    width = 1000 * (math.sqrt(2) - 1 / math.sqrt(2))  # 707 Hz: that share of the 8 kHz band
    expected_db = 20 * math.log10(2.0 * sigma * math.sqrt(width / (SR / 2)))
    assert abs(one_k["level_db"] - expected_db) < 0.3  # bins are 31.25 Hz wide: the edges round


def test_estimate_is_deterministic_and_refuses_short_input():
    x = np.random.default_rng(9).standard_normal(SR)
    a, b = sp.estimate_noise_psd(x, SR), sp.estimate_noise_psd(x, SR)
    np.testing.assert_array_equal(a.psd, b.psd)
    with pytest.raises(ValueError, match="at least"):
        sp.estimate_noise_psd(np.zeros(300), SR)


def test_quantile_bias_of_white_noise():
    low, mid = sp.quantile_bias()
    assert low.shape == mid.shape == (sp.FRAME // 2 + 1,)
    assert np.all(low > 0.2) and np.all(low < mid) and np.all(mid < 1.0)
