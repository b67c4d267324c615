"""Shared fixtures: small synthetic data sets and tiny models trained once per session with training.train().

The tiny models are real (a U-Net with widths [8, 16] trained a few hundred steps), so tests of denoise,
the CLI and the model store can use them; they take seconds to train on two CPU cores. They are saved without
model.tflite (converting is slower than training them; denoise then runs them on TensorFlow): the LiteRT path
has its own tests (test_litert.py, test_cli_litert.py, test_networks.py).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_IMAGE = dict(widths=(8, 16), patch_size=32, batch_size=8, max_steps=300, steps_per_epoch=100, lr=2e-3,
                  checkpoint_every=100, log_every=10, seed=0, tflite=False)
TINY_1D = dict(widths=(8, 16), patch_size=256, batch_size=8, max_steps=300, steps_per_epoch=100, lr=2e-3,
               checkpoint_every=100, log_every=10, seed=0, tflite=False)


# ------------------------------------------------------------------------------------- synthetic data
def cartoon_image(h: int, w: int, seed: int, channels: int = 1) -> np.ndarray:
    """8-bit piecewise-smooth image: smooth waves plus flat discs (edges), the kind of structure a tiny
    denoiser learns quickly. Shape (h, w) for gray, (h, w, 3) for color."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        img = 128 + 50 * np.sin(x / (5.0 + seed % 4 + c)) * np.cos(y / 7.0)
        planes.append(img)
    img = np.stack(planes, -1)
    for _ in range(6):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = int(rng.integers(4, max(5, min(h, w) // 4)))
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(30, 225, size=channels)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def smooth_signal(n: int, seed: int) -> np.ndarray:
    """A 1D signal in arbitrary units: a few sinusoids plus steps, random offset and scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    x = sum(rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * t / rng.uniform(40, 400) + rng.uniform(0, 6)) for _ in range(3))
    for _ in range(4):
        x[rng.integers(0, n):] += rng.normal(0, 1.0)
    return rng.uniform(0.5, 20) * x + rng.normal(0, 100)


def speechlike(sr: int, seconds: float, seed: int) -> np.ndarray:
    """Harmonic bursts with pauses, peak ~0.3: a stand-in for speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = rng.uniform(100, 200) + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(1, 2) * t), 0, None) ** 2
    return (0.3 * voiced * envelope).astype(np.float32)


def write_images(folder: str, count: int = 4, size: int = 64, channels: int = 1, seed: int = 0,
                 prefix: str = "img") -> str:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        Image.fromarray(cartoon_image(size, size, seed + k, channels)).save(os.path.join(folder, f"{prefix}{k}.png"))
    return folder


def write_signals(folder: str, count: int = 4, length: int = 4096, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        np.save(os.path.join(folder, f"sig{k}.npy"), smooth_signal(length, seed + k))
    return folder


def write_audio(folder: str, count: int = 3, sr: int = 16000, seconds: float = 1.0, seed: int = 0) -> str:
    import soundfile as sf

    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        sf.write(os.path.join(folder, f"speech{k}.wav"), speechlike(sr, seconds, seed + k), sr, subtype="PCM_16")
    return folder


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def synthetic_image_dir(tmp_path_factory) -> str:
    """Four 64x64 gray PNGs."""
    return write_images(str(tmp_path_factory.mktemp("images")))


@pytest.fixture(scope="session")
def synthetic_signal_dir(tmp_path_factory) -> str:
    """Four NPY signals of 4096 samples in arbitrary units."""
    return write_signals(str(tmp_path_factory.mktemp("signals")))


@pytest.fixture(scope="session")
def synthetic_audio_dir(tmp_path_factory) -> str:
    """Three 1-second 16 kHz PCM_16 WAVs of speech-like bursts."""
    return write_audio(str(tmp_path_factory.mktemp("audio")))


def _train(data: str, out: str, **overrides) -> str:
    from diffuse_cli import training

    training.train(training.TrainOptions(data=[data], out=out, **overrides))
    return out


@pytest.fixture(scope="session")
def tiny_image_model_dir(tmp_path_factory, synthetic_image_dir) -> str:
    """A gray (1-channel) image U-Net, widths [8, 16], patch 32, 300 steps (config.json has the history)."""
    return _train(synthetic_image_dir, str(tmp_path_factory.mktemp("models") / "tiny-image"), **TINY_IMAGE)


@pytest.fixture(scope="session")
def tiny_signal_model_dir(tmp_path_factory, synthetic_signal_dir) -> str:
    """A 1-channel 1D signal U-Net, widths [8, 16], segments of 256, 300 steps."""
    return _train(synthetic_signal_dir, str(tmp_path_factory.mktemp("models") / "tiny-signal"), **TINY_1D)


@pytest.fixture(scope="session")
def tiny_audio_model_dir(tmp_path_factory, synthetic_audio_dir) -> str:
    """A 1-channel audio U-Net (16 kHz), widths [8, 16], segments of 256, 300 steps."""
    return _train(synthetic_audio_dir, str(tmp_path_factory.mktemp("models") / "tiny-audio"), **TINY_1D)
