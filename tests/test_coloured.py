"""diffuse_cli.coloured: hum removal, the excess-noise gain, and what reaches the white-noise model.

Speech is sample_data/speech.wav (16 kHz); noises are generated with fixed seeds. One test runs the
bundled speech model (LiteRT) to check the whole chain against the plain white-noise path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffuse_cli import coloured as col
from diffuse_cli import spectrum as sp
from diffuse_cli.metrics import si_sdr

SR = 16000
ROOT = Path(__file__).resolve().parents[1]


def speech() -> np.ndarray:
    x, sr = sf.read(ROOT / "sample_data" / "speech.wav", dtype="float64")
    assert sr == SR
    return x


def shaped_noise(n: int, gain, seed: int) -> np.ndarray:
    """Gaussian noise with amplitude response ``gain(f)``, unit variance."""
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    out = np.fft.irfft(spec * gain(f), n)
    return out / np.std(out)


def tones(n: int, f0, harmonics: int, seed: int) -> np.ndarray:
    """Harmonics 1..h of ``f0`` (Hz, a number or one per sample: drift) with amplitude 1/h, unit variance."""
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))) / SR
    out = sum(np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h for h in range(1, harmonics + 1))
    return out / np.std(out)


def at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    return noise * math.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))


def band_db(x: np.ndarray) -> np.ndarray:
    edges = [(lo, hi) for lo, _, hi in sp.octave_edges(SR)]
    return 10 * np.log10(sp.band_variances(sp.periodogram(sp.stft(x)).mean(axis=0), SR, edges))


PINK = lambda f: 1 / np.sqrt(np.maximum(f, 20.0))  # noqa: E731  pink above 20 Hz, as a microphone sees it


# --------------------------------------------------------------------------- white noise and clean input


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_white_noise_is_passed_to_the_plain_path_unchanged(snr_db):
    x = speech()
    y = x + at_snr(x, np.random.default_rng(1).standard_normal(len(x)), snr_db)
    prepared = col.prepare_for_white_model(y, SR)
    assert not prepared.coloured and prepared.sigma is None and prepared.hum is None
    np.testing.assert_array_equal(prepared.signal, y)
    assert prepared.report()["noise_colour"] == "white"


def test_clean_speech_is_left_alone():
    x = speech()
    prepared = col.prepare_for_white_model(x, SR)
    assert si_sdr(x, prepared.signal) > 25.0
    assert not prepared.coloured


# --------------------------------------------------------------------------- the excess gain


def test_excess_gain_by_hand():
    frame, floor, a = 512, 1.0, col.DD_SMOOTHING
    noise = np.full(frame // 2 + 1, floor)  # bins at the floor: left alone
    noise[10] = 4.0  # excess E = 3
    norm = float(np.sum(sp.hann(frame) ** 2))
    spec = np.zeros((2, frame // 2 + 1), complex)
    spec[1, 10] = math.sqrt(27.0 * norm)  # frame 0: silence; frame 1: P = 27 = 9 E
    gains = col.ExcessWiener(noise, floor, frame)(spec, 0)
    assert np.all(np.delete(gains, 10, axis=1) == 1.0)
    # frame 0: xi = max(0, F / E) = 1/3, G = F / N = 1/4 (the floor is kept, the excess removed)
    assert math.isclose(gains[0, 10], 0.25)
    # frame 1: previous estimate G^2 P = 0, xi = (1 - a) (P / E - 1) = 8 (1 - a) (above 1/3)
    xi = (1 - a) * 8.0
    assert math.isclose(gains[1, 10], xi / (1 + xi))
    # a cut bin is zeroed; with floor 0 and a least gain, the classic Wiener with g_min
    cut = np.zeros(frame // 2 + 1, bool)
    cut[1] = True
    assert np.all(col.ExcessWiener(noise, floor, frame, cut)(spec, 0)[:, 1] == 0.0)
    classic = col.ExcessWiener(noise, 0.0, frame, dead_zone=1.0, min_gain=0.1)(spec, 0)
    assert math.isclose(classic[0, 10], 0.1) and math.isclose(classic[0, 3], 0.1)


def test_pink_noise_excess_is_removed_and_the_floor_kept():
    x = speech()
    noise = at_snr(x, shaped_noise(len(x), PINK, 2), 0.0)
    prepared = col.prepare_for_white_model(x + noise, SR)
    assert prepared.coloured and prepared.sigma is not None
    change = band_db(prepared.signal - x) - band_db(noise)  # what is left of the noise, per octave band
    centres = [c for _, c, _ in sp.octave_edges(SR)]
    low = [i for i, c in enumerate(centres) if 100 < c < 600]
    high = [i for i, c in enumerate(centres) if c >= 4000]
    assert np.all(change[low] < -2.5), change.round(1)  # pink excess: at least 2.5 dB less noise
    assert np.all(np.abs(change[high]) < 0.5), change.round(1)  # the white floor: left for the model
    assert si_sdr(x, prepared.signal) > si_sdr(x, x + noise) + 2.5
    # the model sees the floor: the noise's level in the upper part of the band, not its total
    true_psd = sp.periodogram(sp.stft(noise)).mean(axis=0)
    f = np.fft.rfftfreq(sp.FRAME, 1.0 / SR)
    assert true_psd[f == 7500.0][0] < prepared.sigma**2 < true_psd[f == 2000.0][0]


def test_rumble_below_50_hz_is_cut():
    x = speech()
    brown = shaped_noise(len(x), lambda f: 1 / np.maximum(f, f[1]), 3)  # 1/f down to the lowest bin
    y = x + at_snr(x, brown, 0.0)
    prepared = col.prepare_for_white_model(y, SR)
    assert prepared.lowcut_hz == col.LOWCUT_HZ
    assert si_sdr(x, prepared.signal) > 15.0


# --------------------------------------------------------------------------- hum


@pytest.mark.parametrize("f0", [50.03, 59.97])
def test_hum_fundamental_and_harmonics_are_found(f0):
    x = speech()
    y = x + at_snr(x, tones(len(x), f0, 5, 4), 0.0)
    hum = col.detect_hum(y, SR)
    assert hum is not None
    assert abs(np.mean(hum.f0) - f0) < 0.05
    assert {1, 2, 3} <= set(hum.harmonics) <= set(range(1, 40))


def test_drifting_hum_is_removed():
    x = speech()
    t = np.arange(len(x)) / SR
    hum_tones = at_snr(x, tones(len(x), 50.0 + 0.05 * np.sin(2 * np.pi * 0.2 * t), 7, 5), 0.0)
    cleaned, hum = col.remove_hum(x + hum_tones, SR)
    assert hum is not None
    left = cleaned - x
    assert 10 * np.log10(np.sum(left**2) / np.sum(hum_tones**2)) < -12.0
    assert si_sdr(x, cleaned) > 12.0


def test_no_hum_in_speech_or_white_noise():
    x = speech()
    assert col.detect_hum(x, SR) is None
    assert col.detect_hum(x + 0.02 * np.random.default_rng(6).standard_normal(len(x)), SR) is None
    assert col.detect_hum(x[: SR // 2], SR) is None  # too short to tell


def test_hum_and_fan_report_is_json():
    x = speech()
    n = len(x)
    fan = shaped_noise(n, lambda f: np.exp(-(((f - 300) / 200) ** 2)), 7)
    y = x + at_snr(x, tones(n, 50.0, 7, 8) + fan, 0.0)
    prepared = col.prepare_for_white_model(y, SR)
    assert prepared.coloured and prepared.hum is not None
    report = json.loads(json.dumps(prepared.report(scale=32768.0)))
    assert report["noise_colour"] == "coloured" and abs(report["hum"]["f0_hz"] - 50.0) < 0.05
    assert [b["centre_hz"] for b in report["noise_bands"]][:3] == [31.25, 62.5, 125.0]
    bands = {b["centre_hz"]: b["level_db"] for b in report["noise_bands"]}
    assert bands[250.0] > bands[4000.0] + 20  # the fan's band, far above the speech band's floor
    assert si_sdr(x, prepared.signal) > si_sdr(x, y) + 4.0


def test_prepare_is_deterministic():
    x = speech()
    y = x + at_snr(x, shaped_noise(len(x), PINK, 9), 5.0)
    a, b = col.prepare_for_white_model(y, SR), col.prepare_for_white_model(y, SR)
    np.testing.assert_array_equal(a.signal, b.signal)
    assert a.sigma == b.sigma


# --------------------------------------------------------------------------- with the bundled model


def test_bundled_model_on_pink_noise_beats_the_white_path():
    from diffuse_cli.denoising.estimate import estimate_sigma
    from diffuse_cli.denoising.options import DenoiseOptions
    from diffuse_cli.denoising.pipeline import denoise_array
    from diffuse_cli.litert_model import open_for_inference

    model = open_for_inference(str(ROOT / "diffuse_cli" / "models" / "speech-16k"), num_threads=1)
    assert model is not None

    def clean(y: np.ndarray, sigma: float) -> np.ndarray:
        return denoise_array(y.astype(np.float32)[:, None], model, sigma, DenoiseOptions())[:, 0]

    def plain(y: np.ndarray) -> np.ndarray:
        return clean(y, estimate_sigma(y[:, None], 1))

    x = speech()
    y = x + at_snr(x, shaped_noise(len(x), PINK, 10), 5.0)
    prepared = col.prepare_for_white_model(y, SR)
    ours, white_path = si_sdr(x, clean(prepared.signal, prepared.sigma)), si_sdr(x, plain(y))
    assert ours > white_path + 3.0, (ours, white_path)
    assert ours > si_sdr(x, prepared.signal) + 1.0  # the model adds to the classical step
