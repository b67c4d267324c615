"""Training objectives and fine-tuning: the TF training target equals the NumPy reference
(diffuse_cli.objectives), an edm U-Net trains and denoises, --init-from loads the source weights exactly
and training continues, mismatches and --resume conflicts are one-line errors, --no-tflite."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from diffuse_cli import objectives
from diffuse_cli.schedule import Schedule, q_sample
from diffuse_cli.training.options import TrainOptions, default_objective
from tests.conftest import write_images, write_signals
from tests.helpers import diffuse_in_process

TINY = dict(widths=(8, 16), patch_size=32, batch_size=8, lr=2e-3, log_every=10, seed=0, tflite=False)


@pytest.mark.parametrize("objective", objectives.OBJECTIVES)
def test_tf_target_and_input_equal_the_numpy_reference(objective):
    import tensorflow as tf

    from diffuse_cli.training import tf_objectives

    schedule = Schedule.create("linear", 1000)
    rng = np.random.default_rng(3)
    t = np.array([1.0, 7.5, 60.0, 250.0, 600.0, 999.0])
    x0 = rng.uniform(-1, 1, (len(t), 8, 8, 1))
    eps = rng.standard_normal(x0.shape)
    ab = schedule.alpha_bar_at(t)
    x_t = q_sample(x0, eps, ab)
    f32 = lambda a: tf.constant(np.asarray(a, np.float32))  # noqa: E731
    sd = 0.37
    target = tf_objectives.training_target(f32(x0), f32(eps), f32(x_t), f32(ab), objective, sd).numpy()
    np.testing.assert_allclose(target, objectives.training_target(x0, eps, ab, objective, sd), rtol=2e-4, atol=2e-4)
    fed = tf_objectives.network_input(f32(x_t), f32(ab), objective, sd).numpy()
    np.testing.assert_allclose(fed, objectives.network_input(x_t, ab, objective, sd), rtol=1e-5, atol=1e-5)
    # the target output gives back the clean data (the estimate SSIM scores)
    x0_hat = tf_objectives.predict_x0_from_output(f32(target), f32(x_t), f32(ab), objective, sd).numpy()
    np.testing.assert_allclose(x0_hat, x0, atol=5e-3)
    output = rng.standard_normal(x0.shape)
    eps_tf = tf_objectives.eps_from_output(f32(output), f32(x_t), f32(ab), objective, sd).numpy()
    np.testing.assert_allclose(eps_tf, objectives.eps_from_output(output, x_t, ab, objective, sd), rtol=1e-3, atol=2e-3)


def test_edm_target_is_finite_where_float32_rounds_alpha_bar_to_one():
    import tensorflow as tf

    from diffuse_cli.training import tf_objectives

    x0, eps = tf.constant([[0.8]]), tf.constant([[0.3]])
    ab = tf.constant([1.0])  # sigma = 0: c_out = 0, F* = -eps (the limit)
    target = tf_objectives.training_target(x0, eps, x0, ab, "edm", 0.5).numpy()
    np.testing.assert_allclose(target, [[-0.3]], rtol=1e-6)


def test_default_objective_is_edm_for_unet_and_eps_for_dense():
    assert default_objective(TrainOptions(data=[], out="m")) == "edm"
    assert default_objective(TrainOptions(data=[], out="m", arch="dense")) == "eps"
    assert default_objective(TrainOptions(data=[], out="m", objective="x0")) == "x0"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    return write_images(str(tmp_path_factory.mktemp("obj-images")), count=4, size=64)


@pytest.fixture(scope="module")
def edm_model(tmp_path_factory, images) -> str:
    """A tiny edm U-Net trained on the command line, without model.tflite."""
    out = tmp_path_factory.mktemp("obj-models") / "edm"
    r = diffuse_in_process("train", images, "--out", out, "--widths", "8,16", "--patch-size", "32",
                           "--batch-size", "8", "--max-steps", "40", "--steps-per-epoch", "10", "--lr", "2e-3",
                           "--no-tflite", "--quiet")
    assert r.returncode == 0, r.stderr
    return str(out)


def test_edm_unet_trains_and_denoises(edm_model, images, tmp_path):
    cfg = json.loads(open(os.path.join(edm_model, "config.json")).read())
    assert cfg["objective"] == "edm" and cfg["sigma_data"] == 0.5
    losses = [h["loss"] for h in cfg["training"]["history"]]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses  # zero-initialised output: ~1 at step 0
    assert cfg["training"]["val_psnr"] > cfg["training"]["val_baseline"] + 3  # its one-step estimate denoises
    assert not os.path.exists(os.path.join(edm_model, "model.tflite"))  # --no-tflite
    r = diffuse_in_process("denoise", os.path.join(images, "img0.png"), "-o", tmp_path / "clean.png",
                           "--model", edm_model, "--sigma", "25", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "clean.png").stat().st_size > 0


def test_init_from_loads_the_weights_exactly_then_trains_on(edm_model, images, tmp_path, monkeypatch):
    from diffuse_cli import modelstore, training
    from diffuse_cli.training.loop import TrainLoop

    source = modelstore.load_model(edm_model, mixed_precision=False).model.get_weights()
    seen = {}
    run_loop = TrainLoop.run_loop

    def spy(loop, dataset, writer):  # the weights as the first step finds them
        seen["model"], seen["ema"] = loop.run.model.get_weights(), loop.run.ema_model.get_weights()
        return run_loop(loop, dataset, writer)

    monkeypatch.setattr(TrainLoop, "run_loop", spy)
    out = str(tmp_path / "tuned")
    summary = training.train(TrainOptions(data=[images], out=out, init_from=edm_model,
                                          **{**TINY, "max_steps": 5, "steps_per_epoch": 5}))
    for name in ("model", "ema"):
        assert len(seen[name]) == len(source)
        for a, b in zip(seen[name], source):
            np.testing.assert_array_equal(a, b)
    tuned = modelstore.load_model(out, mixed_precision=False)
    assert tuned.config.objective == "edm" and summary["steps"] == 5
    assert any(not np.array_equal(a, b) for a, b in zip(tuned.model.get_weights(), source))
    assert json.loads(open(os.path.join(out, "config.json")).read())["training"]["init_from"] == edm_model


def test_init_from_with_resume_on_checkpoints_is_refused(edm_model, images):
    from diffuse_cli import training
    from diffuse_cli.errors import InputError

    before = sorted(os.listdir(os.path.join(edm_model, "checkpoints")))
    with pytest.raises(InputError, match="drop --init-from") as info:
        training.train(TrainOptions(data=[images], out=edm_model, resume=True, init_from=edm_model, **TINY))
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(os.path.join(edm_model, "checkpoints"))) == before


def test_init_from_an_image_model_on_signals_is_one_line_exit_2(edm_model, tmp_path):
    signals = write_signals(str(tmp_path / "signals"), count=2, length=2048)
    out = tmp_path / "m"
    r = diffuse_in_process("train", signals, "--out", out, "--init-from", edm_model, "--max-steps", "2",
                           "--quiet")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "image model but the data is signal" in lines[0], r.stderr
    assert not out.exists()


def test_init_from_a_bundled_model_by_name(images, tmp_path):
    from diffuse_cli import training
    from diffuse_cli.config import load_config
    from diffuse_cli.models import MODELS_DIR

    out = str(tmp_path / "photo")
    training.train(TrainOptions(data=[images], out=out, init_from="photo-gray",
                                **{**TINY, "widths": (8,), "batch_size": 4, "max_steps": 2, "val_count": 4}))
    bundled, tuned = load_config(str(MODELS_DIR / "photo-gray")), load_config(out)
    assert tuned.widths == bundled.widths and tuned.objective == bundled.objective
    assert tuned.patch_size == 32 and tuned.training["init_from"] == "photo-gray"


def test_init_from_an_unknown_name_names_the_bundled_models(images, tmp_path):
    from diffuse_cli import training
    from diffuse_cli.errors import InputError

    with pytest.raises(InputError, match="photo-gray"):
        training.train(TrainOptions(data=[images], out=str(tmp_path / "m"), init_from="no-such-model", **TINY))
