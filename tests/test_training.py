"""Training: tiny models learn (images, 1D signals, the seed's dense model), exact resume after SIGINT,
SavedModel export usable from plain TensorFlow, mirrored strategy, learned embeddings, input errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from diffuse_cli import modelstore, training
from diffuse_cli.config import load_config
from diffuse_cli.encoding import sinusoidal_step_encoding
from diffuse_cli.errors import InputError, Interrupted
from diffuse_cli.training.data import DataSource
from tests.conftest import write_images, write_signals

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# model.tflite is left out (converting takes longer than these trainings); test_litert.py tests the export
SMALL = dict(widths=(8, 16), patch_size=32, batch_size=8, lr=2e-3, log_every=5, seed=1, tflite=False)


def summary_of(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "config.json")) as fh:
        return json.load(fh)["training"]


# ------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_image_unet_lowers_loss_and_raises_psnr(tiny_image_model_dir):
    s = summary_of(tiny_image_model_dir)
    assert s["steps"] == 300 and s["val_metric"] == "psnr"
    assert s["first_loss"] > 0.5  # zero-initialised output: the loss starts near E[eps^2] = 1
    assert s["loss"] < 0.5 * s["first_loss"]
    assert s["val_psnr"] > s["val_baseline"] + 4.0, s  # one-step denoising at sigma 25 beats the noisy input
    hist = s["history"]
    assert [h["step"] for h in hist] == [100, 200, 300]
    assert os.listdir(os.path.join(tiny_image_model_dir, "logs"))  # TensorBoard event file


@pytest.mark.slow
def test_signal_unet_lowers_loss_and_raises_snr(tiny_signal_model_dir):
    s = summary_of(tiny_signal_model_dir)
    cfg = load_config(tiny_signal_model_dir)
    assert (cfg.domain, cfg.channels, cfg.patch_size) == ("signal", 1, 256)
    assert s["loss"] < 0.5 * s["first_loss"]
    assert s["val_snr"] > s["val_baseline"] + 4.0, s


@pytest.fixture(scope="module")
def dense_learned_dir(tmp_path_factory, synthetic_signal_dir) -> str:
    out = str(tmp_path_factory.mktemp("dense") / "model")
    training.train(training.TrainOptions(
        data=[synthetic_signal_dir], out=out, arch="dense", length=64, embedding="learned", embedding_dim=16,
        batch_size=32, max_steps=1500, steps_per_epoch=500, lr=3e-3, checkpoint_every=1500, seed=0, tflite=False,
    ))
    return out


@pytest.mark.slow
def test_dense_seed_model_learns_on_fixed_length_signals(dense_learned_dir):
    s = summary_of(dense_learned_dir)
    cfg = load_config(dense_learned_dir)
    assert (cfg.arch, cfg.length, cfg.dense_hidden) == ("dense", 64, 128)
    assert s["loss"] < 0.5 * s["first_loss"]
    assert s["val_snr"] > s["val_baseline"] + 0.5, s


@pytest.mark.slow
def test_learned_embeddings_saved_and_returned(dense_learned_dir):
    loaded = modelstore.load_model(dense_learned_dir)
    state = training.load_training_state(dense_learned_dir)
    table = state.ema_model.get_layer("step_encoding").table.numpy()  # export holds the EMA weights
    steps = np.array([0, 1, 10, 500, 1000])
    enc = loaded.step_encodings(steps)
    np.testing.assert_allclose(enc, table[steps], atol=1e-6)
    np.testing.assert_allclose(loaded.step_encodings(np.array([10.5]))[0], 0.5 * (table[10] + table[11]), atol=1e-6)
    assert np.abs(enc - sinusoidal_step_encoding(steps, 16)).max() > 1e-4  # training moved the table


# ------------------------------------------------------------------------------------- resume and signals
@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory, synthetic_image_dir):
    """A: 40 steps straight. B: the same run stopped by SIGINT from another thread, then --resume to 40."""
    root = tmp_path_factory.mktemp("resume")
    opts = dict(SMALL, max_steps=40, steps_per_epoch=20, checkpoint_every=20)
    events: list[dict] = []
    a = str(root / "a")
    training.train(training.TrainOptions(data=[synthetic_image_dir], out=a, **opts), progress=events.append)

    b = str(root / "b")
    fired = threading.Event()

    def interrupt_later(event: dict) -> None:
        if event.get("event") == "step" and event["step"] >= 10 and not fired.is_set():
            fired.set()
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()

    # The disposition this relies on, whatever the test run inherited (nohup and `make test &` ignore SIGINT,
    # and Python then installs no handler of its own).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted) as info:
            training.train(training.TrainOptions(data=[synthetic_image_dir], out=b, **opts),
                           progress=interrupt_later)
        handler_after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, inherited)
    stopped = training.load_training_state(b)
    resumed_events: list[dict] = []
    summary = training.train(training.TrainOptions(data=[synthetic_image_dir], out=b, resume=True, **opts),
                             progress=resumed_events.append)
    return dict(a=a, b=b, events=events, signum=info.value.signum, handler_after=handler_after,
                stopped_step=stopped.step, stopped_iterations=int(stopped.optimizer.iterations.numpy()),
                stopped_moments=[v.numpy().copy() for v in stopped.optimizer.variables[2:4]],
                resumed_events=resumed_events, summary=summary)


@pytest.mark.slow
def test_sigint_saves_loadable_checkpoint_and_raises_interrupted(resume_runs):
    r = resume_runs
    assert r["signum"] == signal.SIGINT
    assert r["handler_after"] is signal.default_int_handler  # old handler restored
    assert 10 <= r["stopped_step"] < 40
    assert r["stopped_iterations"] == r["stopped_step"]
    assert any(np.abs(m).max() > 0 for m in r["stopped_moments"])  # Adam moments were saved


@pytest.mark.slow
def test_resume_continues_exactly_at_saved_step(resume_runs):
    r = resume_runs
    start = next(e for e in r["resumed_events"] if e["event"] == "start" and "resumed" in e.get("message", ""))
    assert start["step"] == r["stopped_step"]
    steps = [e["step"] for e in r["resumed_events"] if e["event"] == "step"]
    assert steps[0] > r["stopped_step"] and steps[-1] == 40
    assert r["summary"]["steps"] == 40
    a, b = training.load_training_state(r["a"]), training.load_training_state(r["b"])
    assert a.step == b.step == 40
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == 40
    # Same batches, same t and eps (seeded by step), same LR schedule: the interrupted run ends where the
    # uninterrupted one does -- weights, EMA and Adam moments.
    for va, vb in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-6)
    for wa, wb in zip(a.model.get_weights() + a.ema_model.get_weights(),
                      b.model.get_weights() + b.ema_model.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
    hist_b = summary_of(r["b"])["history"]
    assert [h["step"] for h in hist_b] == [20, 40]


@pytest.mark.slow
def test_progress_events(resume_runs):
    events = resume_runs["events"]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert {"step", "epoch", "checkpoint"} <= set(kinds)
    step = next(e for e in events if e["event"] == "step")
    assert {"step", "total", "loss", "patches_per_s"} <= set(step) and step["total"] == 40
    assert step["loss_steps"] == 5  # log_every: the step loss is the mean of the last 5 steps
    epoch = next(e for e in events if e["event"] == "epoch")
    assert "val_psnr" in epoch and np.isfinite(epoch["val_psnr"])
    # the epoch line's loss is the epoch's mean (not the step events' recent mean): it says so
    assert epoch["message"].startswith(f"step 20/40: epoch mean loss {epoch['loss']:.4f}, validation PSNR")
    assert epoch["loss"] == pytest.approx(summary_of(resume_runs["a"])["history"][0]["loss"], abs=1e-6)


@pytest.mark.slow
def test_export_only_rebuilds_model_files(resume_runs, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(resume_runs["a"], out)
    shutil.rmtree(os.path.join(out, "saved_model"))
    os.remove(os.path.join(out, "weights.weights.h5"))
    summary = training.train(training.TrainOptions(data=[], out=out, export_only=True, tflite=False))
    assert summary["steps"] == 40
    loaded = modelstore.load_model(out)
    reference = modelstore.load_model(resume_runs["a"])
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32)
    t = np.array([20.0, 200.0], np.float32)
    np.testing.assert_allclose(loaded.eps(x, t), reference.eps(x, t), atol=1e-6)
    with pytest.raises(InputError, match="no checkpoint"):
        training.train(training.TrainOptions(data=[], out=str(tmp_path / "empty"), export_only=True, tflite=False))


@pytest.mark.slow
def test_model_folder_files_get_the_usual_mode(synthetic_image_dir, tmp_path):
    """Every file the model folder gets (config.json, weights, checkpoints and their config, SavedModel, logs) has
    the mode any new file gets, 0666 less the umask: none is private (0600) while the others are not.
    model.tflite is checked the same way in test_networks.py (its export is slower than this training)."""
    out = tmp_path / "m"
    inherited = os.umask(0o027)
    try:
        training.train(training.TrainOptions(data=[synthetic_image_dir], out=str(out), max_steps=2, steps_per_epoch=2,
                                             checkpoint_every=1, val_count=2, **{**SMALL, "widths": (8,)}))
    finally:
        os.umask(inherited)
    modes = {os.path.relpath(os.path.join(root, name), out): stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
             for root, _, files in os.walk(out) for name in files}
    assert {"config.json", "weights.weights.h5", "checkpoints/config.json", "checkpoints/checkpoint"} <= set(modes)
    assert {path: oct(mode) for path, mode in modes.items() if mode != 0o640} == {}


# ------------------------------------------------------------------------------------- export, strategies
@pytest.mark.slow
def test_saved_model_in_fresh_process_matches_loaded_model(tiny_image_model_dir, tiny_signal_model_dir, tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "image": (tiny_image_model_dir, rng.normal(size=(2, 24, 40, 1)).astype(np.float32)),
        "signal": (tiny_signal_model_dir, rng.normal(size=(3, 200, 1)).astype(np.float32)),
    }
    t = {"image": np.array([12.5, 300.0], np.float32), "signal": np.array([1.0, 57.25, 900.0], np.float32)}
    for name, (_, x) in cases.items():
        np.save(tmp_path / f"{name}_x.npy", x)
        np.save(tmp_path / f"{name}_t.npy", t[name])
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        for name, model_dir in {[(n, d) for n, (d, _) in cases.items()]!r}:
            m = tf.saved_model.load(model_dir + "/saved_model")
            x = np.load(r"{tmp_path}/" + name + "_x.npy"); t = np.load(r"{tmp_path}/" + name + "_t.npy")
            eps = m.signatures["serving_default"](x_t=tf.constant(x), t=tf.constant(t))["eps"].numpy()
            np.save(r"{tmp_path}/" + name + "_eps.npy", eps)
        assert not any(name.startswith("diffuse_cli") for name in sys.modules)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, (model_dir, x) in cases.items():
        eps = np.load(tmp_path / f"{name}_eps.npy")
        expected = modelstore.load_model(model_dir).eps(x, t[name])
        assert eps.shape == x.shape
        # The export turns the edm output into eps in float32 inside the graph; the loader does it in float64.
        np.testing.assert_allclose(eps, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(synthetic_image_dir, tmp_path):
    out = str(tmp_path / "mirrored")
    script = textwrap.dedent(f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from diffuse_cli import training
        messages = []
        s = training.train(training.TrainOptions(
            data=[{synthetic_image_dir!r}], out={out!r}, strategy="mirrored", widths=(8, 16), patch_size=32,
            batch_size=8, max_steps=20, steps_per_epoch=10, checkpoint_every=10, lr=2e-3, tflite=False),
            progress=lambda e: messages.append(e.get("message", "")))
        print("RESULT", json.dumps({{"steps": s["steps"], "loss": s["loss"], "messages": messages}}))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["steps"] == 20 and np.isfinite(result["loss"])
    assert any("2 replica(s)" in m for m in result["messages"])
    loaded = modelstore.load_model(out)
    eps = loaded.eps(np.zeros((1, 32, 32, 1), np.float32), np.array([50.0], np.float32))
    assert np.all(np.isfinite(eps)) and os.path.isdir(os.path.join(out, "saved_model"))


@pytest.mark.slow
def test_one_sgd_step_is_the_same_on_one_and_two_replicas(tmp_path):
    """The same global batch, t and noise: the step on 2 mirrored replicas (all-reduce, global-norm clip, the
    optimizer's own sum over replicas) gives the loss and weights of the step on 1 replica."""
    script = textwrap.dedent(f"""
        import json
        import keras
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from diffuse_cli.config import default_config
        from diffuse_cli.training.checkpoints import RunState
        from diffuse_cli.training.loop import TrainLoop
        from diffuse_cli.training.options import TrainOptions, check_options, noise_levels
        from diffuse_cli.training.resources import make_strategy

        config = default_config("image", 1, widths=[8, 16], patch_size=16, timesteps=100, embedding_dim=16)
        options = check_options(TrainOptions(data=[], out="", batch_size=8, loss="mse+ssim", grad_clip=0.5))
        rng = np.random.default_rng(0)
        x0 = rng.uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32)
        t = rng.uniform(1, 100, 8).astype(np.float32)
        eps = rng.standard_normal(x0.shape).astype(np.float32)
        start, out = None, {{}}
        for name in ("default", "mirrored"):
            strategy = make_strategy(name)
            with strategy.scope():
                run = RunState(config, options, 10, {str(tmp_path)!r} + "/" + name, chief=True)
                run.optimizer = keras.optimizers.SGD(learning_rate=0.05)
                run.optimizer.build(run.model.trainable_variables)
            start = start or [rng.normal(0, 0.2, w.shape).astype(np.float32) for w in run.model.get_weights()]
            run.model.set_weights(start)
            loop = TrainLoop(run, strategy, config, options, noise_levels(options, "image", 127.5), None, print, print)
            n = strategy.num_replicas_in_sync

            def share(values):
                def pick(ctx):
                    k = ctx.replica_id_in_sync_group
                    return tf.constant(values[k * 8 // n : (k + 1) * 8 // n])
                return strategy.experimental_distribute_values_from_function(pick)

            @tf.function
            def step(a, b, c):
                per_replica = strategy.run(loop.replica_update, args=(a, b, c))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            loss = float(step(share(x0), share(t), share(eps)))
            np.savez({str(tmp_path)!r} + "/" + name + ".npz", *run.model.get_weights())
            out[name] = {{"replicas": n, "loss": loss}}
        np.savez({str(tmp_path)!r} + "/start.npz", *start)
        print("RESULT", json.dumps(out))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert (result["default"]["replicas"], result["mirrored"]["replicas"]) == (1, 2)
    assert np.isfinite(result["default"]["loss"])
    np.testing.assert_allclose(result["mirrored"]["loss"], result["default"]["loss"], rtol=1e-5)
    start, one, two = (np.load(tmp_path / f"{name}.npz") for name in ("start", "default", "mirrored"))
    moved = 0.0
    for key in start.files:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6)
        moved = max(moved, float(np.abs(one[key] - start[key]).max()))
    assert moved > 1e-4  # the step changed the weights


# ------------------------------------------------------------------------------------- other losses, streaming
@pytest.mark.slow
def test_mse_ssim_loss_color_images_with_holdout(tmp_path):
    data = write_images(str(tmp_path / "color"), count=8, size=48, channels=3, seed=10)
    s = training.train(training.TrainOptions(
        data=[data], out=str(tmp_path / "m"), loss="mse+ssim", loss_weights=(1.0, 0.2), max_steps=10,
        steps_per_epoch=10, **{**SMALL, "widths": (8, 8)}))
    assert s["holdout_files"] == 1 and s["files"] == 7 and s["channels"] == 3
    assert s["loss_terms"] == {"mse": 1.0, "ssim": 0.2} and np.isfinite(s["loss"])
    assert load_config(str(tmp_path / "m")).channels == 3


@pytest.mark.slow
def test_streaming_pipeline_with_1d_ssim(synthetic_signal_dir, tmp_path):
    s = training.train(training.TrainOptions(
        data=[synthetic_signal_dir], out=str(tmp_path / "m"), loss="ssim", memory_limit_mb=0, max_steps=10,
        steps_per_epoch=10, patches_per_file=8, **{**SMALL, "patch_size": 64}))
    assert s["domain"] == "signal" and np.isfinite(s["loss"]) and s["steps"] == 10


# ------------------------------------------------------------------------------------- input errors
def test_mixed_domains_rejected(tmp_path):
    write_images(str(tmp_path), count=1)
    write_signals(str(tmp_path), count=1)
    with pytest.raises(InputError, match="mixes image and signal"):
        training.train(training.TrainOptions(data=[str(tmp_path)], out=str(tmp_path / "m")))


def test_mixed_channels_rejected_unless_converted(tmp_path):
    write_images(str(tmp_path / "g"), count=1, channels=1)
    write_images(str(tmp_path / "c"), count=1, channels=3, seed=5, prefix="color")
    files = [str(tmp_path / "g" / "img0.png"), str(tmp_path / "c" / "color0.png")]
    with pytest.raises(InputError, match="--channels"):
        training.train(training.TrainOptions(data=files, out=str(tmp_path / "m")))
    source = DataSource(files, training.TrainOptions(data=files, out="", channels=1))
    assert source.channels == 1 and all(item.shape[-1] == 1 for item in source.items)


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(widths=(8, 16, 32), patch_size=30), "multiple of 4"),
        (dict(arch="dense"), "1D signals"),
        (dict(loss="perceptual"), "--loss"),
        (dict(loss="mse+ssim", loss_weights=(1.0,)), "2 weights"),
        (dict(strategy="tpu"), "--strategy"),
        (dict(embedding="rope"), "--embedding"),
        (dict(channels=2), "--channels"),
        (dict(patch_size=512), "smaller --patch-size"),
    ],
)
def test_bad_options_rejected(synthetic_image_dir, tmp_path, options, words):
    with pytest.raises(InputError, match=words):
        training.train(training.TrainOptions(data=[synthetic_image_dir], out=str(tmp_path / "m"), **options))


def test_existing_checkpoints_need_resume(tmp_path, synthetic_image_dir):
    ckpt = tmp_path / "m" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    (ckpt / "ckpt-5.index").write_bytes(b"")
    with pytest.raises(InputError, match="--resume"):
        training.train(training.TrainOptions(data=[synthetic_image_dir], out=str(tmp_path / "m")))


def test_stdin_and_missing_inputs_rejected(tmp_path):
    with pytest.raises(InputError, match="stdin"):
        training.train(training.TrainOptions(data=["-"], out=str(tmp_path / "m")))
    with pytest.raises(InputError, match="no such file"):
        training.train(training.TrainOptions(data=[str(tmp_path / "missing")], out=str(tmp_path / "m")))
