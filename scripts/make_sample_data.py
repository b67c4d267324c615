"""Generate the small sample inputs in sample_data/ (run once; the outputs are committed).

    .venv/bin/pip install scikit-image      # generator only, not a runtime dependency
    apt-get install -y espeak-ng            # Debian's speech synthesiser, for speech.wav
    .venv/bin/python scripts/make_sample_data.py

Everything is deterministic (fixed crops, fixed seeds); see sample_data/README.md for sources and licences.
The photos come from images shipped inside the scikit-image wheel (no download).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image
from scipy.signal import resample_poly

OUT = Path(__file__).resolve().parent.parent / "sample_data"
IMAGE_SIGMA = 25.0  # on the 0..255 scale, the usual denoising benchmark level
SPEECH_SNR_DB = 10.0
SPEECH_TEXT = "Noise goes in, and a clean voice comes out."
SPEECH_RATE = 16000
SENSOR_SIGMA = 0.25  # degrees C


def skimage_file(name: str) -> Path:
    """Path of an image bundled inside the installed scikit-image package (never downloaded)."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / name
    if not path.exists():
        sys.exit(f"{path}: not shipped with this scikit-image; install scikit-image>=0.19")
    return path


def add_gaussian(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """``clip(round(x + sigma * n), 0, 255)`` with ``n ~ N(0, 1)`` from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    noisy = pixels.astype(np.float64) + sigma * rng.standard_normal(pixels.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def save_png(pixels: np.ndarray, name: str) -> None:
    Image.fromarray(pixels).save(OUT / name, format="PNG", optimize=True)
    print(f"wrote {name}: {pixels.shape} {pixels.dtype}")


def make_photos() -> None:
    with Image.open(skimage_file("camera.png")) as im:
        camera = np.asarray(im.convert("L"))
    gray = camera[40:296, 150:406]  # the photographer and his camera
    with Image.open(skimage_file("coffee.png")) as im:
        coffee = np.asarray(im.convert("RGB"))
    color = coffee[60:316, 200:456]  # the cup and saucer, with wood grain around
    with Image.open(skimage_file("astronaut.png")) as im:
        astronaut = np.asarray(im.convert("RGB")).astype(np.float64)
    # Luminance (ITU-R 709 weights, as skimage.color.rgb2gray) in float, then 16-bit: the weighted sum
    # of three 8-bit channels has finer steps than 8 bits, so the 16-bit file holds real extra precision.
    luma = astronaut @ np.array([0.2125, 0.7154, 0.0721])
    gray16 = np.rint(luma[10:266, 130:386] * (65535.0 / 255.0)).astype(np.uint16)

    save_png(gray, "photo-gray.png")
    save_png(color, "photo-color.png")
    save_png(gray16, "photo-gray16.png")
    save_png(add_gaussian(gray, IMAGE_SIGMA), "photo-gray-noisy.png")
    save_png(add_gaussian(color, IMAGE_SIGMA), "photo-color-noisy.png")


def make_speech() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "speech.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", raw, SPEECH_TEXT], check=True)
        voice, rate = sf.read(raw, dtype="float64", always_2d=True)
    voice = voice[:, 0]
    if rate != SPEECH_RATE:
        divisor = np.gcd(rate, SPEECH_RATE)
        voice = resample_poly(voice, SPEECH_RATE // divisor, rate // divisor)
    loud = np.nonzero(np.abs(voice) > 0.01)[0]
    pad = int(0.15 * SPEECH_RATE)  # keep a little silence either side, like a real recording
    voice = voice[max(loud[0] - pad, 0) : loud[-1] + pad]
    voice = np.round(voice / np.abs(voice).max() * 0.7 * 32767) / 32768  # peak -3 dBFS, on the PCM_16 grid
    rng = np.random.default_rng(0)
    # SNR = 10 log10(P_signal / P_noise) over the whole clip.
    noise_power = np.mean(voice**2) / 10 ** (SPEECH_SNR_DB / 10)
    noisy = np.clip(voice + np.sqrt(noise_power) * rng.standard_normal(voice.shape), -1.0, 1.0)
    sf.write(OUT / "speech.wav", voice, SPEECH_RATE, subtype="PCM_16")
    sf.write(OUT / "speech-noisy.wav", noisy, SPEECH_RATE, subtype="PCM_16")
    print(f"wrote speech.wav / speech-noisy.wav: {len(voice) / SPEECH_RATE:.2f} s at {SPEECH_RATE} Hz")


def make_sensor() -> None:
    """A room temperature logger, one reading every 30 s for ~16.7 h (2000 rows), in degrees C."""
    rng = np.random.default_rng(0)
    time_s = np.arange(2000) * 30
    hours = time_s / 3600.0
    drift = 20.5 + 0.12 * hours  # the building slowly warms up
    hvac = 0.45 * np.sin(2 * np.pi * hours / 0.75)  # thermostat cycle, 45 min
    sun = 0.9 * np.exp(-(((hours - 11.0) / 2.5) ** 2))  # sun on the window in the afternoon
    steps = np.zeros_like(hours)
    for start, height in ((3.2, -1.1), (7.9, 0.8), (13.4, -0.6)):  # door opened / heater switched
        steps += height * (hours >= start)
    clean = drift + hvac + sun + steps
    noisy = clean + SENSOR_SIGMA * rng.standard_normal(clean.shape)
    for name, values in (("sensor.csv", clean), ("sensor-noisy.csv", noisy)):
        rows = "".join(f"{t},{v:.3f}\n" for t, v in zip(time_s, values, strict=True))
        (OUT / name).write_text("time,value\n" + rows)
        print(f"wrote {name}: {len(values)} rows")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    make_photos()
    make_speech()
    make_sensor()
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"sample_data: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
