"""`diffuse denoise` on the LiteRT runtime: no TensorFlow in the process, same output as the TensorFlow path.

The runs that must do without TensorFlow are new processes in which it cannot be imported; the others call the
same entry point in this process (tests/helpers.py), which has TensorFlow loaded already."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf
from PIL import Image

from tests.helpers import diffuse, diffuse_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "sample_data")

# Imported first by Python (PYTHONPATH), it makes `import tensorflow` / `import keras` fail loudly.
BLOCKER = """
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Block())
"""


def _blocked_env(tmp_path) -> dict:
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": os.pathsep.join([str(shim), ROOT])}


def test_denoise_photo_and_speech_without_tensorflow_match_the_tensorflow_path(tmp_path):
    env = _blocked_env(tmp_path)
    for name, load in [("photo-gray-noisy.png", lambda p: np.asarray(Image.open(p), np.int32)),
                       ("speech-noisy.wav", lambda p: sf.read(p, dtype="int32")[0] >> 16)]:
        src = os.path.join(SAMPLES, name)
        lite, tf = str(tmp_path / f"lite-{name}"), str(tmp_path / f"tf-{name}")
        r = diffuse("denoise", src, "-o", lite, "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["runtime"] == "litert"
        r = diffuse_in_process("denoise", src, "-o", tf, "--json", "--runtime", "tensorflow")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["runtime"] == "tensorflow"
        a, b = load(lite), load(tf)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1, name  # one quantisation step at most (8-bit pixels, PCM_16 samples)
        assert not np.array_equal(a, load(src)), name  # and it did clean something


def test_tensorflow_blocker_really_blocks(tmp_path):
    """The shim works: asking for the TensorFlow runtime fails when TensorFlow cannot be imported."""
    out = str(tmp_path / "x.png")
    r = diffuse("denoise", os.path.join(SAMPLES, "photo-gray-noisy.png"), "-o", out, "--runtime", "tensorflow",
                env=_blocked_env(tmp_path))
    assert r.returncode != 0 and not os.path.exists(out)


def test_model_without_tflite_falls_back_to_tensorflow_with_a_note(tmp_path):
    import shutil

    model = tmp_path / "model"
    bundled = os.path.join(ROOT, "diffuse_cli", "models", "photo-gray")
    model.mkdir()
    for name in ("config.json", "weights.weights.h5"):
        shutil.copy(os.path.join(bundled, name), model / name)
    r = diffuse_in_process("denoise", os.path.join(SAMPLES, "photo-gray-noisy.png"), "-o", str(tmp_path / "o.png"),
                           "--model", str(model), "--json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["runtime"] == "tensorflow"
    assert any("no model.tflite" in n for n in record["notes"]) and "no model.tflite" in r.stderr
    r = diffuse_in_process("denoise", os.path.join(SAMPLES, "photo-gray-noisy.png"), "-o", str(tmp_path / "p.png"),
                           "--model", str(model), "--runtime", "litert")
    assert r.returncode == 2 and "model.tflite: missing" in r.stderr and len(r.stderr.strip().splitlines()) == 1
