"""The LiteRT runtime (litert_model) against the Keras network it was converted from (tflite_export).

Agreement is ``max |litert - keras| / max |keras|`` on tiles of the sample files in model units, the
way denoise feeds them (``x_t = sqrt(alpha_bar(t)) * y``); the .tflite checks are run on damaged and
foreign files; and the runtime module must work with TensorFlow unimportable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffuse_cli import io, litert_model
from diffuse_cli import models as bundled
from diffuse_cli.config import WEIGHTS_NAME, default_config
from diffuse_cli.encoding import sinusoidal_step_encoding
from diffuse_cli.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {"image": ROOT / "sample_data" / "photo-gray-noisy.png", "audio": ROOT / "sample_data" / "speech-noisy.wav"}
BUNDLED = {e["name"]: e["path"] for e in bundled.list_bundled()}
TOLERANCE = 1e-4


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


_KERAS: dict[str, object] = {}


def keras_model(name: str):
    if name not in _KERAS:
        from diffuse_cli import modelstore

        _KERAS[name] = modelstore.load_model(BUNDLED[name], mixed_precision=False)
    return _KERAS[name]


def sample_batches(domain: str, schedule) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two batches cut from the domain's noisy sample: one large tile, then three smaller ones at other
    positions and steps (different shapes and batch sizes through one interpreter)."""
    y = io.load(str(SAMPLES[domain])).samples.astype(np.float32)  # model units, as denoise uses them
    if domain == "image":  # 256 x 256 x 1
        big = [(0, 256, 0, 256)]
        small = [(0, 136, 0, 200), (120, 256, 56, 256), (60, 196, 24, 224)]
        tiles = [[y[a:b, c:d] for a, b, c, d in big], [y[a:b, c:d] for a, b, c, d in small]]
    else:  # (50076, 1)
        tiles = [[y[8000:8000 + 16384]], [y[s:s + 4096] for s in (0, 20000, 45000)]]
    batches = []
    for group, steps in zip(tiles, ([37.5], [3.25, 60.0, 420.0])):
        t = np.array(steps, np.float32)
        scale = np.sqrt(schedule.alpha_bar_at(t)).reshape(-1, *([1] * group[0].ndim))
        batches.append(((scale * np.stack(group)).astype(np.float32), t))
    return batches


# ----------------------------------------------------------------------------------------------- bundled
def test_every_bundled_model_ships_a_tflite():
    assert {"photo-gray", "speech-16k"} <= set(BUNDLED)
    for name, path in BUNDLED.items():
        tflite = Path(path) / litert_model.TFLITE_NAME
        assert tflite.is_file(), f"{name}: run python -m diffuse_cli.tflite_export {path}"
        assert 0 < tflite.stat().st_size < 20 * 2**20


@pytest.mark.parametrize("name", ["photo-gray", "speech-16k"])
def test_bundled_litert_matches_keras_on_sample_tiles(name):
    lite = litert_model.open_for_inference(BUNDLED[name])
    keras = keras_model(name)
    assert isinstance(lite, litert_model.LiteRTModel)
    assert (lite.rank, lite.size_multiple, lite.channels, lite.domain) == (
        keras.rank, keras.size_multiple, keras.channels, keras.domain)
    for x_t, t in sample_batches(lite.domain, lite.schedule):
        expected = keras.eps(x_t, t)
        got = lite.eps(x_t, t)
        assert got.dtype == np.float32 and got.shape == x_t.shape
        assert relative_error(got, expected) <= TOLERANCE, (name, x_t.shape)
        assert np.max(np.abs(expected)) > 0.01  # a real signal, not a zero network
    # Back to the first shape: the interpreter re-plans and still agrees.
    x_t, t = sample_batches(lite.domain, lite.schedule)[0]
    assert relative_error(lite.eps(x_t, t), keras.eps(x_t, t)) <= TOLERANCE


@pytest.mark.parametrize("name", ["photo-gray", "speech-16k"])
def test_bundled_step_encodings_match_the_keras_layer(name):
    lite = litert_model.open_for_inference(BUNDLED[name])
    steps = np.array([0, 0.5, 1, 10.25, 499.5, 999, 1000], np.float32)
    got = lite.step_encodings(steps)
    assert got.dtype == np.float32 and got.shape == (len(steps), lite.config.embedding_dim)
    np.testing.assert_allclose(got, keras_model(name).step_encodings(steps), rtol=0, atol=1e-7)
    # The seed's formula, computed independently in float64.
    np.testing.assert_allclose(got, sinusoidal_step_encoding(steps.astype(np.float64), 64), rtol=0, atol=1e-7)


def test_outputs_survive_the_next_call():
    """Each eps call returns its own array: the engine keeps results while it runs the next tiles."""
    lite = litert_model.open_for_inference(BUNDLED["photo-gray"])
    x_t = np.random.default_rng(0).standard_normal((1, 32, 32, 1)).astype(np.float32)
    first = lite.eps(x_t, [10.0])
    kept = first.copy()
    second = lite.eps(-x_t, [500.0])
    np.testing.assert_array_equal(first, kept)
    assert np.max(np.abs(first - second)) > 0.1


def test_no_tflite_means_none(tmp_path):
    for name in ("config.json", WEIGHTS_NAME):
        shutil.copy(Path(BUNDLED["photo-gray"]) / name, tmp_path / name)
    assert litert_model.open_for_inference(str(tmp_path)) is None


def test_runtime_imports_neither_tensorflow_nor_keras():
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None; sys.modules['keras'] = None  # any import of them now fails\n"
        "import numpy as np\n"
        "from diffuse_cli import litert_model\n"
        f"m = litert_model.open_for_inference({BUNDLED['photo-gray']!r})\n"
        "out = m.eps(np.zeros((2, 64, 48, 1), np.float32), [5.0, 50.0])\n"
        "print(out.shape, sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras')"
        " and sys.modules[k] is not None))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(2, 64, 48, 1) []"


# --------------------------------------------------------------------------------------- damaged files
@pytest.fixture()
def photo_dir(tmp_path) -> Path:
    """A copy of the bundled gray photo model (config, weights, tflite) to damage."""
    for name in ("config.json", WEIGHTS_NAME, litert_model.TFLITE_NAME):
        shutil.copy(Path(BUNDLED["photo-gray"]) / name, tmp_path / name)
    return tmp_path


def expect_refused(model_dir: Path, *words: str) -> str:
    with pytest.raises(InputError) as caught:
        litert_model.open_for_inference(str(model_dir))
    message = str(caught.value)
    assert "\n" not in message
    assert str(model_dir / litert_model.TFLITE_NAME) in message
    assert "python -m diffuse_cli.tflite_export" in message
    for word in words:
        assert word in message, message
    return message


def test_empty_tflite_is_refused(photo_dir):
    (photo_dir / litert_model.TFLITE_NAME).write_bytes(b"")
    expect_refused(photo_dir, "empty")


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
def test_truncated_tflite_is_refused(photo_dir, fraction):
    path = photo_dir / litert_model.TFLITE_NAME
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    expect_refused(photo_dir)


def test_random_bytes_are_refused(photo_dir):
    path = photo_dir / litert_model.TFLITE_NAME
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())
    expect_refused(photo_dir, "not a LiteRT")


def test_random_bytes_behind_the_identifier_are_refused(photo_dir):
    path = photo_dir / litert_model.TFLITE_NAME
    noise = np.random.default_rng(1).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes()
    path.write_bytes(noise[:4] + b"TFL3" + noise[8:])
    expect_refused(photo_dir)


def test_another_models_tflite_is_refused(photo_dir):
    shutil.copy(Path(BUNDLED["speech-16k"]) / litert_model.TFLITE_NAME, photo_dir / litert_model.TFLITE_NAME)
    expect_refused(photo_dir, "another network", "domain")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_damaged_weights_inside_the_tflite_are_refused(photo_dir, seed):
    """Flipped bytes in the bulk of the file (its weights) still parse as a flatbuffer: the stored digest
    catches them."""
    path = photo_dir / litert_model.TFLITE_NAME
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(len(data) // 10, len(data) * 9 // 10, 20):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    expect_refused(photo_dir)


def test_other_weights_are_refused(photo_dir):
    weights = photo_dir / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the .tflite now belongs to other weights
    weights.write_bytes(bytes(data))
    expect_refused(photo_dir, "other weights")


def test_wrong_channels_behind_matching_metadata_is_refused(photo_dir):
    """A valid flatbuffer whose metadata claims the photo model but whose inputs are 1D: the signature
    check refuses it."""
    from diffuse_cli import tflite_export
    from diffuse_cli.config import load_config

    config = load_config(str(photo_dir))
    foreign = (Path(BUNDLED["speech-16k"]) / litert_model.TFLITE_NAME).read_bytes()
    meta = {"format": litert_model.METADATA_FORMAT, "network": litert_model.network_signature(config),
            "weights_sha256": litert_model.file_sha256(str(photo_dir / WEIGHTS_NAME)),
            "content_sha256": litert_model.content_digest(foreign)}
    forged = tflite_export.with_metadata(foreign, litert_model.METADATA_NAME, json.dumps(meta).encode())
    (photo_dir / litert_model.TFLITE_NAME).write_bytes(forged)
    expect_refused(photo_dir, "x_t", "[-1, -1, -1, 1]")


# ------------------------------------------------------------------------------- other architectures
def random_network(config):
    """A network built from ``config`` with every weight random (the U-Net's zero-initialised layers too),
    so its output is not trivially zero."""
    from diffuse_cli import networks

    model = networks.build_network(config)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["unet2d-rgb-learned", "dense-signal"])
def test_export_round_trip_other_architectures(tmp_path, kind):
    """Write config + weights + tflite like training does, open with LiteRT, compare with Keras."""
    from diffuse_cli import modelstore, tflite_export

    if kind == "unet2d-rgb-learned":
        config = default_config("image", 3, widths=[8, 16], embedding="learned", embedding_dim=16,
                                timesteps=100)
        shapes = [(1, 24, 40, 3), (3, 16, 16, 3)]
    else:
        config = default_config("signal", 2, arch="dense", length=32, dense_hidden=24, embedding_dim=8)
        shapes = [(1, 32, 2), (4, 32, 2)]
    model = random_network(config)
    model.save_weights(str(tmp_path / WEIGHTS_NAME))
    modelstore.write_config(str(tmp_path), config)
    tflite_export.write(str(tmp_path), model, config)

    lite = litert_model.open_for_inference(str(tmp_path))
    keras = modelstore.load_model(str(tmp_path), mixed_precision=False)
    rng = np.random.default_rng(1)
    for shape in shapes:
        x_t = rng.standard_normal(shape).astype(np.float32)
        t = rng.uniform(0, config.timesteps, shape[0]).astype(np.float32)
        assert relative_error(lite.eps(x_t, t), keras.eps(x_t, t)) <= TOLERANCE, shape
    steps = np.array([0, 0.25, 7.5, config.timesteps - 0.5, config.timesteps], np.float32)
    np.testing.assert_allclose(lite.step_encodings(steps), keras.step_encodings(steps), rtol=0, atol=1e-6)


def test_export_command_reports_a_bad_directory(tmp_path, capsys):
    from diffuse_cli import tflite_export

    assert tflite_export.main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
