"""Mixed precision (float16 compute, float32 weights): the network, a training run, resume across precisions.

On these CPU machines `auto` means float32; `mixed` is forced here so the GPU path is exercised (slowly).
"""

from __future__ import annotations

import json

import numpy as np

from diffuse_cli import modelstore, networks, training
from diffuse_cli.config import default_config
from tests.helpers import diffuse_in_process

CONFIG = default_config("image", 1, widths=[8, 16], embedding_dim=32, patch_size=32)


def test_mixed_network_matches_float32_with_the_same_weights():
    full = networks.build_network(CONFIG)
    rng = np.random.default_rng(0)
    # Non-zero output layer: the untrained U-Net's zero-initialised output would hide any difference.
    full.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in full.get_weights()])
    half = networks.build_network(CONFIG, mixed_precision=True)
    half.set_weights(full.get_weights())  # same variables (float32 in both)
    policies = {layer.name: layer.dtype_policy.name for layer in half.layers}
    assert policies["step_encoding"] == "float32" and policies["eps"] == "float32"
    assert policies["conv_1"] == "mixed_float16"
    x = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    t = np.array([10.0, 900.0], np.float32)
    a = np.asarray(full([x, t]))
    b = np.asarray(half([x, t]))
    assert b.dtype == np.float32
    rel = np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a**2))
    assert 0 < rel < 2e-2, rel  # float16 rounding: close, but not bit-equal
    # The global policy is restored: the next network is float32 again.
    assert networks.build_network(CONFIG).get_layer("conv_1").dtype_policy.name == "float32"


def test_mixed_training_learns_and_resumes_in_float32(synthetic_image_dir, tmp_path):
    out = str(tmp_path / "m")
    base = dict(data=[synthetic_image_dir], out=out, widths=(8, 16), patch_size=32, batch_size=8, lr=2e-3,
                log_every=5, seed=1, steps_per_epoch=20, val_count=4, objective="eps",  # thresholds set for eps
                tflite=False)  # no LiteRT export: not what is tested here, and slower than the training
    s = training.train(training.TrainOptions(**base, max_steps=40, precision="mixed"))
    assert s["precision"] == "mixed"
    assert s["loss"] < 0.7 * s["first_loss"], s  # it learns (scaled loss, unscaled gradients)
    assert s["val_psnr"] > s["val_baseline"] + 1.0, s
    loaded = modelstore.load_model(out)  # CPU: float32
    assert loaded.model.get_layer("conv_1").dtype_policy.name == "float32"
    # The checkpoint holds the inner optimizer: a float32 run continues it at the saved step.
    r = training.train(training.TrainOptions(**base, max_steps=50, precision="float32", resume=True))
    assert r["precision"] == "float32" and r["steps"] == 50
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["training"]["steps"] == 50


def test_cli_rejects_unknown_precision(synthetic_image_dir, tmp_path):
    r = diffuse_in_process("train", synthetic_image_dir, "--out", tmp_path / "m", "--precision", "half")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'--precision'" in lines[0], r.stderr
    assert "'half'" in lines[0] and "'float32'" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()


def test_xla_training_follows_the_graph_run(synthetic_image_dir, tmp_path):
    """Same seed, same batches: the XLA-compiled forward/backward gives the same losses up to rounding."""
    runs = {}
    for mode in ("off", "on"):
        runs[mode] = training.train(training.TrainOptions(
            data=[synthetic_image_dir], out=str(tmp_path / mode), widths=(8, 16), patch_size=32, batch_size=8,
            lr=2e-3, log_every=5, seed=3, max_steps=20, steps_per_epoch=10, val_count=4, xla=mode, objective="eps",
            tflite=False))
    assert runs["off"]["xla"] is False and runs["on"]["xla"] is True
    for a, b in zip(runs["off"]["history"], runs["on"]["history"]):
        assert a["step"] == b["step"]
        assert abs(a["loss"] - b["loss"]) <= 0.02 * a["loss"], (a, b)
    assert runs["off"]["loss"] < 0.8 * runs["off"]["first_loss"]
