"""The state of a run on disk and in memory: model, EMA copy, optimizer and step in ``MODEL_DIR/checkpoints``,
with ``checkpoints/config.json`` (the architecture, history and time so far) next to them, so a run
resumes exactly (``--resume``) or exports its latest checkpoint (``--export-only``).

The checkpoint object names (model, ema, optimizer, step) are the on-disk layout: runs written by
earlier versions resume only while they stay the same.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import keras
import tensorflow as tf

from diffuse_cli import io, modelstore, networks
from diffuse_cli.config import CHECKPOINT_DIR, CONFIG_NAME, ModelConfig
from diffuse_cli.errors import InputError
from diffuse_cli.training.options import TrainOptions
from diffuse_cli.training.resources import use_mixed_precision, use_xla

RUN_CONFIG_NAME = "config.json"  # inside checkpoints/


def make_optimizer(options: TrainOptions, total: int) -> keras.optimizers.Optimizer:
    """Adam with linear warm-up to ``lr`` then cosine decay to ``lr * min_lr_fraction`` at ``total``.

    Always a schedule object (never a float): the optimizer's variable list, and so the checkpoint
    layout, must be the same when a checkpoint is rebuilt by :func:`load_training_state`.
    """
    warmup = options.warmup_steps if options.warmup_steps is not None else min(500, max(1, total // 20))
    warmup = max(1, min(int(warmup), total))
    lr_schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=options.lr / warmup,
        decay_steps=max(1, total - warmup),
        alpha=options.min_lr_fraction,
        warmup_target=options.lr,
        warmup_steps=warmup,
    )
    return keras.optimizers.Adam(learning_rate=lr_schedule)


class RunState:
    """Model, EMA copy, optimizer, step and checkpoint manager of one run (create inside the strategy's scope)."""

    def __init__(self, config: ModelConfig, options: TrainOptions, total: int, ckpt_dir: str, chief: bool) -> None:
        self.mixed = use_mixed_precision(options.precision)
        self.xla = use_xla(options.xla)
        self.model = networks.build_network(config, mixed_precision=self.mixed)
        self.ema_model = networks.build_network(config, mixed_precision=self.mixed)
        self.ema_model.set_weights(self.model.get_weights())
        inner = make_optimizer(options, total)
        # Mixed precision: the loss is scaled so float16 gradients do not underflow; the wrapper unscales
        # them and skips steps whose gradients overflowed (lowering the scale).
        self.optimizer = keras.optimizers.LossScaleOptimizer(inner) if self.mixed else inner
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The inner optimizer is what is checkpointed, so a run resumes in either precision.
        self.checkpoint = tf.train.Checkpoint(model=self.model, ema=self.ema_model, optimizer=inner, step=self.step)
        # Non-chief workers of a multi-worker run write to a scratch folder (all must call save()).
        directory = ckpt_dir if chief else os.path.join(ckpt_dir, f".worker-{os.getpid()}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=options.keep)

    def restore_latest(self) -> int:
        """Restore the latest checkpoint (every saved object must match); the step it holds."""
        self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.step.numpy())

    def save(self) -> str:
        return self.manager.save(checkpoint_number=int(self.step.numpy()))

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint


def read_json(path: str) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _training_record(raw: dict | None) -> dict:
    record = (raw or {}).get("training")
    return record if isinstance(record, dict) else {}


class RunFolder:
    """``MODEL_DIR`` of a run: its checkpoints, the run config next to them, and what earlier runs recorded."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.ckpt_dir = os.path.join(out, CHECKPOINT_DIR)
        self.run_config_path = os.path.join(self.ckpt_dir, RUN_CONFIG_NAME)
        self.has_checkpoint = tf.train.latest_checkpoint(self.ckpt_dir) is not None
        self.saved_run_config = read_json(self.run_config_path)

    def resumed_config(self) -> ModelConfig | None:
        """The architecture of the checkpoints being resumed (None when there are none to resume)."""
        if not self.has_checkpoint or self.saved_run_config is None:
            return None
        return ModelConfig.from_dict(self.saved_run_config, self.run_config_path)

    def earlier_training(self, resume: bool, start_step: int) -> tuple[list[dict], float]:
        """(epoch history, training seconds) that a resumed run continues from; ([], 0) for a new run."""
        if not resume:
            return [], 0.0
        saved = _training_record(self.saved_run_config)
        history = list(saved.get("history", [])) if start_step else []
        seconds = float(_training_record(read_json(os.path.join(self.out, CONFIG_NAME))).get("seconds", 0.0))
        if start_step:  # an interrupted run recorded its time next to its checkpoints
            seconds = max(seconds, float(saved.get("seconds", 0.0)))
        return history, seconds

    def write_run_config(self, config: ModelConfig, history: list[dict], seconds: float) -> None:
        """checkpoints/config.json: the architecture a --resume or --export-only rebuilds, the history and the
        training time so far (so the total survives interruptions and resumes)."""
        os.makedirs(self.ckpt_dir, exist_ok=True)
        training = {"status": "in progress", "history": history, "seconds": round(seconds, 2)}
        data = {**config.to_dict(), "training": training}
        io.atomic_write_bytes(self.run_config_path, (json.dumps(data, indent=2) + "\n").encode(), force=True)


@dataclass
class TrainingState:
    """What a checkpoint holds, rebuilt outside training (for --export-only, inspection and tests)."""

    config: ModelConfig
    model: keras.Model
    ema_model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: int
    checkpoint_path: str


def load_training_state(model_dir: str) -> TrainingState:
    """Rebuild the run of ``model_dir`` from checkpoints/config.json and restore its latest checkpoint.

    The optimizer's slots are built before restoring, so its moments and ``iterations`` come back too.
    """
    folder = RunFolder(model_dir)
    latest = tf.train.latest_checkpoint(folder.ckpt_dir)
    if latest is None:
        raise InputError(f"{model_dir}: no checkpoint found; train first (diffuse train ... --out {model_dir})")
    if folder.saved_run_config is None:
        raise InputError(f"{folder.run_config_path}: missing or unreadable; cannot rebuild the checkpointed model")
    config = ModelConfig.from_dict(folder.saved_run_config, folder.run_config_path)
    model = networks.build_network(config)
    ema_model = networks.build_network(config)
    optimizer = make_optimizer(TrainOptions(data=[], out=model_dir), 1000)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=model, ema=ema_model, optimizer=optimizer, step=step)
    ckpt.restore(latest).expect_partial()
    return TrainingState(config, model, ema_model, optimizer, int(step.numpy()), latest)


def export_checkpoint(out: str, tflite: bool = True) -> dict:
    """``--export-only``: restore the latest checkpoint of ``out`` and write config.json, EMA weights, the
    SavedModel and (unless ``tflite`` is False) model.tflite; the training summary written."""
    state = load_training_state(out)
    history = state.config.training.get("history", [])
    prior = _training_record(read_json(os.path.join(out, CONFIG_NAME)))
    summary = {**prior, "steps": state.step, "history": history,
               "exported_from": os.path.basename(state.checkpoint_path)}
    if history:
        summary["loss"] = history[-1].get("loss")
    modelstore.save_model(out, replace(state.config, training=summary), state.ema_model, tflite=tflite)
    return {**summary, "model_dir": out, "checkpoint": state.checkpoint_path}
