"""Networks and the model store: shapes, step encodings, activation noise, serialisation, config checks."""

from __future__ import annotations

import json
import os
import stat

import keras
import numpy as np
import pytest

from diffuse_cli import litert_model, modelstore, networks
from diffuse_cli.config import ModelConfig, default_config
from diffuse_cli.encoding import sinusoidal_step_encoding
from diffuse_cli.errors import InputError


def cfg(domain="image", channels=1, **kw) -> ModelConfig:
    return default_config(domain, channels, **{"widths": [8, 16], "embedding_dim": 16, **kw})


def write_model(model_dir: str, config: ModelConfig, model) -> None:
    """config.json and the weights, what load_model reads: the folders of the load tests, without the
    SavedModel and model.tflite exports that save_model adds (test_modelstore_save_load_* tests those)."""
    os.makedirs(model_dir, exist_ok=True)
    model.save_weights(os.path.join(model_dir, modelstore.WEIGHTS_NAME))
    modelstore.write_config(model_dir, config)


def randomize(model, seed=0, scale=0.2) -> None:
    """Random weights everywhere (the last conv is zero-initialised, so outputs would be all zero)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, scale, w.shape).astype(np.float32) for w in model.get_weights()])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(8, 8), (16, 24), (32, 32), (40, 64)])
def test_unet2d_output_shape_equals_input(channels, hw):
    model = networks.build_network(cfg("image", channels))
    x = np.random.default_rng(0).normal(size=(2, *hw, channels)).astype(np.float32)
    y = np.asarray(model([x, np.array([1.0, 500.5], np.float32)]))
    assert y.shape == x.shape
    assert np.all(y == 0)  # zero-initialised last conv: eps_hat = 0 before training (loss starts at 1)


@pytest.mark.parametrize("n", [16, 64, 250, 1024])
def test_unet1d_output_shape_equals_input(n):
    model = networks.build_network(cfg("audio", 1, widths=[8, 16, 16]))
    assert (model_cfg := cfg("audio", 1, widths=[8, 16, 16])).size_multiple == 4
    n = n - n % model_cfg.size_multiple
    randomize(model)
    x = np.random.default_rng(1).normal(size=(3, n, 1)).astype(np.float32)
    y = np.asarray(model([x, np.array([0.0, 10.0, 999.0], np.float32)]))
    assert y.shape == x.shape and np.all(np.isfinite(y))


def test_unet_deeper_and_wider_config():
    c = cfg("image", 3, widths=[8, 16, 32], blocks=2, kernel_size=3)
    model = networks.build_network(c)
    assert c.size_multiple == 4
    x = np.zeros((1, 24, 20, 3), np.float32)
    assert model([x, np.array([5.0], np.float32)]).shape == x.shape


def test_dense_model_shape_and_seed_builders():
    c = cfg("signal", 1, arch="dense", length=100, dense_hidden=128)
    model = networks.build_network(c)
    x = np.random.default_rng(0).normal(size=(4, 100, 1)).astype(np.float32)
    assert model([x, np.arange(4, dtype=np.float32)]).shape == x.shape
    assert c.size_multiple == 100
    assert model.get_layer("hidden").units == 128
    seed_net = networks.build_denoising_network((100,))
    assert seed_net.output_shape == (None, 100)
    full = networks.build_full_diffusion_model((100,), 128)
    out = full([np.zeros((2, 100), np.float32), sinusoidal_step_encoding(np.arange(2), 128).astype(np.float32)])
    assert out.shape == (2, 100)


@pytest.mark.parametrize("dim", [1, 7, 16, 128])
def test_sinusoidal_layer_matches_numpy_formula(dim):
    t = np.array([0.0, 0.5, 1.0, 33.25, 57.5, 250.75, 999.0, 1000.0], np.float32)
    got = np.asarray(networks.SinusoidalStepEncoding(dim)(t))
    want = sinusoidal_step_encoding(t.astype(np.float64), dim)
    assert got.shape == (len(t), dim)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_learned_encoding_shape_init_and_interpolation():
    layer = networks.LearnedStepEncoding(timesteps=100, dim=12)
    t = np.array([0.0, 2.0, 2.5, 100.0, 150.0], np.float32)
    enc = np.asarray(layer(t))
    assert enc.shape == (5, 12)
    table = sinusoidal_step_encoding(np.arange(101), 12)
    np.testing.assert_allclose(enc[1], table[2], atol=1e-6)  # starts as the sinusoidal table
    np.testing.assert_allclose(enc[2], 0.5 * (table[2] + table[3]), atol=1e-6)  # real t: linear interpolation
    np.testing.assert_allclose(enc[4], table[100], atol=1e-6)  # clipped to T
    assert layer.table.shape == (101, 12) and layer.table.trainable


def test_activation_noise_only_in_training():
    model = networks.build_network(cfg("image", 1, activation_noise=0.5))
    randomize(model)
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 1)).astype(np.float32)
    t = np.array([10.0, 20.0], np.float32)
    eval1, eval2 = (np.asarray(model([x, t], training=False)) for _ in range(2))
    train1 = np.asarray(model([x, t], training=True))
    np.testing.assert_array_equal(eval1, eval2)
    assert np.abs(train1 - eval1).max() > 1e-3
    quiet = networks.build_network(cfg("image", 1))
    assert not any(isinstance(layer, keras.layers.GaussianNoise) for layer in quiet.layers)


def test_no_lambda_layers_and_config_round_trip():
    for c in (cfg("image", 3), cfg("audio", 1, embedding="learned"), cfg("signal", 1, arch="dense", length=32)):
        model = networks.build_network(c)
        assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
        clone = keras.Model.from_config(model.get_config())
        assert clone.count_params() == model.count_params()


@pytest.mark.parametrize("embedding", ["sinusoidal", "learned"])
def test_weights_round_trip(tmp_path, embedding):
    c = cfg("image", 1, embedding=embedding, timesteps=50)
    model = networks.build_network(c)
    randomize(model, seed=3)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = networks.build_network(c)
    again.load_weights(path)
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 1)).astype(np.float32)
    t = np.array([3.5, 40.0], np.float32)
    np.testing.assert_array_equal(np.asarray(model([x, t])), np.asarray(again([x, t])))


def test_modelstore_save_load_eps_single_trace_and_encodings(tmp_path):
    c = cfg("image", 1, embedding="learned", timesteps=100)
    model = networks.build_network(c)
    randomize(model, seed=5)
    out = str(tmp_path / "m")
    inherited = os.umask(0o027)
    try:
        modelstore.save_model(out, c, model)
    finally:
        os.umask(inherited)
    assert sorted(os.listdir(out)) == ["config.json", "model.tflite", "saved_model", "weights.weights.h5"]
    # every file gets the mode any new file gets, 0666 less the umask: none is private (0600)
    modes = {os.path.relpath(os.path.join(root, name), out): stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
             for root, _, files in os.walk(out) for name in files}
    assert "model.tflite" in modes and {path: oct(mode) for path, mode in modes.items() if mode != 0o640} == {}
    loaded = modelstore.load_model(out)
    assert (loaded.rank, loaded.channels, loaded.size_multiple, loaded.domain) == (2, 1, 2, "image")
    rng = np.random.default_rng(6)
    for hw in [(16, 16), (24, 40), (8, 64)]:
        x = rng.normal(size=(3, *hw, 1)).astype(np.float32)
        t = np.array([1.0, 5.5, 90.0], np.float32)
        np.testing.assert_allclose(loaded.eps(x, t), np.asarray(model([x, t])), atol=1e-5)
    assert loaded.trace_count == 1  # None spatial dims: one trace for every tile size
    table = model.get_layer("step_encoding").table.numpy()
    np.testing.assert_allclose(loaded.step_encodings(np.array([0, 7, 100])), table[[0, 7, 100]], atol=1e-6)
    np.testing.assert_allclose(loaded.step_encodings(np.array([7.25]))[0], 0.75 * table[7] + 0.25 * table[8],
                               atol=1e-6)


def test_sinusoidal_model_step_encodings(tmp_path):
    c = cfg("signal", 1, embedding_dim=10)
    write_model(str(tmp_path), c, networks.build_network(c))
    loaded = modelstore.load_model(str(tmp_path))
    steps = np.array([0.0, 1.5, 600.0])
    np.testing.assert_allclose(loaded.step_encodings(steps), sinusoidal_step_encoding(steps, 10), atol=1e-6)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"arch": "transformer"}, "arch"),
        ({"domain": "video"}, "domain"),
        ({"channels": "3"}, "channels"),
        ({"channels": 9}, "channels"),
        ({"format_version": 2}, "format_version"),
        ({"widths": [8, -1]}, "widths"),
        ({"embedding": "rope"}, "embedding"),
        ({"schedule": "sqrt"}, "schedule"),
        ({"timesteps": True}, "timesteps"),
        ({"activation_noise": -1.0}, "activation_noise"),
        ({"mystery": 1}, "mystery"),
        ({"arch": "dense", "length": None}, "length"),
    ],
)
def test_validate_config_rejects(change, words):
    bad = {**default_config("image", 1).to_dict(), **change}
    with pytest.raises(InputError, match=words):
        modelstore.validate_config(bad, "model/config.json")


def test_validate_config_missing_key():
    c = default_config("audio", 1).to_dict()
    del c["domain"]
    with pytest.raises(InputError, match="domain"):
        modelstore.validate_config(c, "x")


def test_load_model_bad_directories(tmp_path):
    with pytest.raises(InputError, match="not found"):
        modelstore.load_model(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="config.json"):
        modelstore.load_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        modelstore.load_model(str(tmp_path))
    c = cfg("image", 1)
    (tmp_path / "config.json").write_text(json.dumps(c.to_dict()))
    with pytest.raises(InputError, match="missing"):
        modelstore.load_model(str(tmp_path))
    (tmp_path / "weights.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    with pytest.raises(InputError, match="cannot load weights"):
        modelstore.load_model(str(tmp_path))


def test_load_model_weights_of_another_architecture(tmp_path):
    small = cfg("image", 1)
    write_model(str(tmp_path), small, networks.build_network(small))
    bigger = {**small.to_dict(), "widths": [16, 32]}
    (tmp_path / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(InputError, match="does not match"):
        modelstore.load_model(str(tmp_path))


def test_loaded_edm_model_turns_network_output_into_eps(tmp_path):
    """objective 'edm': the network sees c_in * y and outputs F; eps follows from D = c_skip y + c_out F."""
    c = cfg("image", 1, objective="edm", sigma_data=0.5)
    model = networks.build_network(c)
    randomize(model, seed=7)
    modelstore.save_model(str(tmp_path), c, model)
    loaded = modelstore.load_model(str(tmp_path))
    assert loaded.config.objective == "edm"
    x_t = np.random.default_rng(8).normal(size=(2, 16, 16, 1)).astype(np.float32)
    t = np.array([20.0, 300.0], np.float32)
    ab = loaded.schedule.alpha_bar_at(t)[:, None, None, None]
    sigma = np.sqrt((1 - ab) / ab)
    y = x_t / np.sqrt(ab)
    f = np.asarray(model([(y / np.sqrt(sigma**2 + 0.25)).astype(np.float32), t]))
    d = 0.25 / (sigma**2 + 0.25) * y + sigma * 0.5 / np.sqrt(sigma**2 + 0.25) * f
    expected = (x_t - np.sqrt(ab) * d) / np.sqrt(1 - ab)
    np.testing.assert_allclose(loaded.eps(x_t, t), expected, rtol=1e-4, atol=1e-4)
    lite, note = litert_model.open_model(str(tmp_path))  # the .tflite written by save_model
    assert isinstance(lite, litert_model.LiteRTModel) and note is None
    np.testing.assert_allclose(lite.eps(x_t, t), expected, rtol=1e-4, atol=1e-4)


def test_open_model_prefers_litert_and_falls_back_with_a_note(tmp_path):
    c = cfg("signal", 1, embedding_dim=8)
    write_model(str(tmp_path), c, networks.build_network(c))
    model, note = litert_model.open_model(str(tmp_path))
    assert isinstance(model, modelstore.LoadedModel) and "no model.tflite" in note and "tflite_export" in note
    with pytest.raises(InputError, match="model.tflite: missing"):
        litert_model.open_model(str(tmp_path), runtime="litert")
    model, note = litert_model.open_model(str(tmp_path), runtime="tensorflow")
    assert isinstance(model, modelstore.LoadedModel) and note is None
