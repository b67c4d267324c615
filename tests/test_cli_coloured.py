"""Speech in mains hum and coloured noise through the CLI pipe, as a user runs it (bundled speech model)."""

from __future__ import annotations

import io as pyio
import json
import os

import numpy as np
import soundfile as sf
import soxr

from tests.helpers import diffuse

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_data")


def _si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    a = np.dot(est, ref) / np.dot(ref, ref)
    return float(10 * np.log10(np.sum((a * ref) ** 2) / np.sum((a * ref - est) ** 2)))


def _hum_and_fan(n: int, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    hum = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 6)) / h for h in range(1, 8))
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / rate)
    fan = np.fft.irfft(spec * np.exp(-(((f - 300) / 200) ** 2)), n)
    noise = hum / np.std(hum) + fan / np.std(fan)
    return noise / np.std(noise)


def _noisy_48k(kind: str) -> tuple[np.ndarray, np.ndarray]:
    clean16, _ = sf.read(os.path.join(SAMPLES, "speech.wav"), dtype="float64")
    clean = soxr.resample(clean16, 16000, 48000)
    noise = _hum_and_fan(len(clean), 48000, 3) if kind == "hum" else np.random.default_rng(4).normal(size=len(clean))
    scale = np.sqrt(np.mean(clean**2) / 10 ** (5 / 10))  # 5 dB SNR
    return clean, np.clip(clean + scale * noise, -1, 1)


def _pipe(noisy: np.ndarray) -> tuple[np.ndarray, dict]:
    """`cat noisy.wav | diffuse denoise - -o - --json`: the cleaned samples and the JSON record (on stderr)."""
    buf = pyio.BytesIO()
    sf.write(buf, noisy, 48000, format="WAV", subtype="FLOAT")
    r = diffuse("denoise", "-", "-o", "-", "--json", stdin=buf.getvalue())
    assert r.returncode == 0, r.stderr
    out, rate = sf.read(pyio.BytesIO(r.stdout_bytes), dtype="float64")
    assert rate == 48000 and out.shape == noisy.shape
    return out, json.loads(r.stderr.strip().splitlines()[-1])


def test_pipe_cleans_48k_speech_in_hum_and_fan_noise():
    clean, noisy = _noisy_48k("hum")
    out, record = _pipe(noisy)
    before, after = _si_sdr(clean, noisy), _si_sdr(clean, out)
    assert after > before + 4.0, (before, after)  # measured 5.0 -> 11.9 dB
    spectrum = record["noise_spectrum"]["0"]
    assert spectrum["hum"] is not None and abs(spectrum["hum"]["f0_hz"] - 50) < 0.5
    assert any("mains hum" in n for n in record["notes"])


def test_white_noise_path_is_unchanged_by_the_coloured_step():
    """White noise: the coloured step finds nothing to remove, and no spectrum is reported."""
    clean, noisy = _noisy_48k("white")
    out, record = _pipe(noisy)
    assert "noise_spectrum" not in record
    assert _si_sdr(clean, out) > _si_sdr(clean, noisy) + 8.0
