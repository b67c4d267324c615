"""Every bundled default model loads, matches its config, and still cleans its sample (a regression guard).

The floors are PSNR/SNR gains measured once on sample_data when the model was bundled, minus a margin;
they are not timings. A new bundled model needs a floor here (the test says so).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from diffuse_cli import models as bundled
from tests.helpers import diffuse

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"

# name -> (noisy sample, clean sample, gain floor in dB). Measured (bundling run): see README "Results".
FLOORS = {
    "photo-gray": ("photo-gray-noisy.png", "photo-gray.png", 9.0),  # measured +9.51 dB (v2, 1500 fine-tuning steps)
    "speech-16k": ("speech-noisy.wav", "speech.wav", 6.5),  # measured +8.4 dB (SNR 10.0 -> 18.4)
    "signal": ("sensor-noisy.csv", "sensor.csv", 11.0),  # measured +12.9 dB (value column 11.2 -> 24.1)
}


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".wav":
        return sf.read(path, dtype="float64")[0]
    if path.suffix == ".csv":  # the value column, around its mean (the time column is never touched)
        values = np.loadtxt(path, delimiter=",", skiprows=1)[:, 1]
        return values - values.mean()
    return np.asarray(Image.open(path), dtype=np.float64)


def _gain_db(clean: np.ndarray, noisy: np.ndarray, out: np.ndarray) -> float:
    """Error-power ratio before/after: the PSNR gain for images, the SNR gain for audio."""
    return 10 * math.log10(np.sum((noisy - clean) ** 2) / np.sum((out - clean) ** 2))


def test_models_are_bundled_with_floors_and_small():
    names = {e["name"] for e in bundled.list_bundled()}
    assert {"photo-gray", "speech-16k", "signal"} <= names, names
    assert names <= set(FLOORS), f"add a regression floor for {names - set(FLOORS)}"
    for e in bundled.list_bundled():
        size = sum(f.stat().st_size for f in Path(e["path"]).iterdir())
        assert size < 20 * 2**20, (e["name"], size)
        assert e["trained_on"], f"{e['name']}: config.json must say what it was trained on"


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_bundled_model_loads_and_matches_config(name):
    from diffuse_cli import modelstore

    path = bundled.MODELS_DIR / name
    cfg = json.loads((path / "config.json").read_text())
    model = modelstore.load_model(str(path))  # validates config.json and every weight array
    assert model.config.domain == cfg["domain"] and list(model.config.widths) == cfg["widths"]
    training = cfg["training"]
    assert training["steps"] > 0 and training["seconds"] > 0 and training["description"]


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_bundled_model_cleans_its_sample_without_model_argument(name, tmp_path):
    noisy_name, clean_name, floor = FLOORS[name]
    noisy, clean = SAMPLES / noisy_name, SAMPLES / clean_name
    out = tmp_path / ("out" + noisy.suffix)
    r = diffuse("denoise", noisy, "-o", out, "--json")  # no --model: the bundled one is chosen
    assert r.returncode == 0, r.stderr
    assert Path(json.loads(r.stdout)["model"]).name == name
    gain = _gain_db(_read(clean), _read(noisy), _read(out))
    assert gain > floor, f"{name}: gain {gain:.2f} dB fell below the floor {floor} dB"


def test_gray_model_cleans_the_colour_sample(tmp_path):
    out = tmp_path / "out.png"
    r = diffuse("denoise", SAMPLES / "photo-color-noisy.png", "-o", out)
    assert r.returncode == 0, r.stderr
    clean, noisy = _read(SAMPLES / "photo-color.png"), _read(SAMPLES / "photo-color-noisy.png")
    assert _read(out).shape == clean.shape
    assert _gain_db(clean, noisy, _read(out)) > 8.0


def test_audio_at_44k_is_resampled_for_the_16k_model(tmp_path):
    import soxr

    clean16, rate = sf.read(SAMPLES / "speech.wav", dtype="float64")
    noisy16, _ = sf.read(SAMPLES / "speech-noisy.wav", dtype="float64")
    clean, noisy = soxr.resample(clean16, rate, 44100), soxr.resample(noisy16, rate, 44100)
    sf.write(tmp_path / "noisy.wav", noisy, 44100, subtype="FLOAT")
    r = diffuse("denoise", tmp_path / "noisy.wav", "-o", tmp_path / "out.wav", "--json")
    assert r.returncode == 0, r.stderr
    out, out_rate = sf.read(tmp_path / "out.wav", dtype="float64")
    assert out_rate == 44100 and out.shape == noisy.shape  # same rate and length as the input
    assert _gain_db(clean, noisy, out) > 6.0
    assert any("44100 Hz -> 16000 Hz" in n for n in json.loads(r.stdout)["notes"])


def _savitzky_golay(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing (least-squares polynomial per window, reflected ends), NumPy only."""
    half = window // 2
    offsets = np.arange(-half, half + 1)
    coeffs = np.linalg.pinv(np.vander(offsets, order + 1, increasing=True))[0]
    padded = np.pad(x, half, mode="reflect")
    return np.convolve(padded, coeffs[::-1], mode="valid")


def test_signal_model_beats_the_best_savitzky_golay_on_the_sensor_sample(tmp_path):
    """The shipped sensor log: our value-column SNR gain beats Savitzky-Golay with its best window (an oracle
    choice, made with the clean signal)."""
    clean, noisy = _read(SAMPLES / "sensor.csv"), _read(SAMPLES / "sensor-noisy.csv")
    best = max(_gain_db(clean, noisy, _savitzky_golay(noisy, w, p)) for w in range(5, 202, 2) for p in (2, 3))
    out = tmp_path / "clean.csv"
    r = diffuse("denoise", SAMPLES / "sensor-noisy.csv", "-o", out)
    assert r.returncode == 0, r.stderr
    ours = _gain_db(clean, noisy, _read(out))
    assert ours > best + 0.5, f"ours {ours:.2f} dB vs Savitzky-Golay {best:.2f} dB"


def test_series_get_the_signal_model_and_audio_the_speech_model(tmp_path):
    values = np.loadtxt(SAMPLES / "sensor-noisy.csv", delimiter=",", skiprows=1)[:, 1]
    np.save(tmp_path / "series.npy", values)
    for src, expected in [(SAMPLES / "sensor-noisy.csv", "signal"), (tmp_path / "series.npy", "signal"),
                          (SAMPLES / "speech-noisy.wav", "speech-16k")]:
        r = diffuse("denoise", src, "-o", tmp_path / ("out" + src.suffix), "--json", "--force")
        assert r.returncode == 0, r.stderr
        record = json.loads(r.stdout)
        assert Path(record["model"]).name == expected, src
        assert any(f"bundled model '{expected}'" in n for n in record["notes"]), record["notes"]
