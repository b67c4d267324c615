"""One training run, from options to the saved model: the short list of steps :func:`train` performs."""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import replace

import keras
import tensorflow as tf

from diffuse_cli import io, modelstore
from diffuse_cli.config import ModelConfig, default_config, load_config
from diffuse_cli.enums import Arch
from diffuse_cli.errors import InputError
from diffuse_cli.models import MODELS_DIR, list_bundled
from diffuse_cli.schedule import Schedule
from diffuse_cli.training.checkpoints import RunFolder, RunState, export_checkpoint
from diffuse_cli.training.data import DataSource, distributed_dataset
from diffuse_cli.training.loop import ProgressFn, TrainLoop
from diffuse_cli.training.options import (
    NoiseLevels,
    TrainOptions,
    check_options,
    default_objective,
    loss_terms,
    noise_levels,
    total_steps,
)
from diffuse_cli.training.resources import choose_batch_size, is_chief, make_strategy
from diffuse_cli.training.validation import Validator


def train(options: TrainOptions, progress: ProgressFn | None = None) -> dict:
    """Train (or resume, or only export) a denoiser into ``options.out``; returns a summary dict.

    Events passed to ``progress``: start, step, epoch, checkpoint, done (see :class:`TrainLoop`).
    SIGINT/SIGTERM during the loop: a checkpoint is saved, then errors.Interrupted is raised.
    """
    emit = progress or (lambda event: None)
    options = check_options(options)
    if options.export_only:
        return export_only(options.out, emit, options.tflite)
    t_begin = time.time()
    keras.utils.set_random_seed(options.seed)
    source = DataSource(io.expand_inputs(options.data), options)
    folder = RunFolder(options.out)
    if folder.has_checkpoint and not options.resume:
        raise InputError(f"{options.out}: already has training checkpoints; pass --resume to continue or choose a "
                         "new --out")
    if options.init_from and folder.has_checkpoint:
        raise InputError(f"{options.out}: has checkpoints to --resume from; drop --init-from to continue them, or "
                         "choose a new --out to start from --init-from's weights")
    init_dir = init_source(options.init_from) if options.init_from else None
    config = model_config(options, source, folder, init_dir)
    strategy = make_strategy(options.strategy)
    chief = is_chief(strategy)
    with strategy.scope():
        run = RunState(config, options, total_steps(options), folder.ckpt_dir, chief)
    options, notes = settle_batch_size(options, run, config, strategy.num_replicas_in_sync)
    start_step = run.restore_latest() if options.resume and folder.has_checkpoint else 0
    if init_dir:
        load_init_weights(run, init_dir)

    levels = noise_levels(options, source.domain, source.scale)
    patches = source.validation_patches(config.patch_size, options.val_count, options.seed)
    validator = Validator(patches, levels.validation, Schedule.create(config.schedule, config.timesteps),
                          source.domain, options.seed, config.objective, config.sigma_data)
    dataset = distributed_dataset(strategy, source, config.patch_size, options.batch_size, options.seed, start_step)
    history, prior_seconds = folder.earlier_training(options.resume, start_step)

    def record(history: list[dict]) -> None:
        if chief:
            folder.write_run_config(config, history, prior_seconds + time.time() - t_begin)

    record(history)  # only now that the data is known to be usable (a bad data set leaves no folder behind)
    writer = tf.summary.create_file_writer(os.path.join(options.out, "logs")) if chief else \
        tf.summary.create_noop_writer()
    loop = TrainLoop(run, strategy, config, options, levels, validator, emit, record, start_step, history)
    for note in source.notes + notes:
        emit({"event": "start", "message": note, "step": start_step, "total": loop.total})
    emit({"event": "start", "step": start_step, "total": loop.total,
          "message": start_message(config, source, strategy.num_replicas_in_sync, run.mixed, validator, start_step)})
    loop.run_loop(dataset, writer)
    return finish(loop, config, source, levels, chief, prior_seconds + (time.time() - t_begin), emit)


def export_only(out: str, emit: ProgressFn, tflite: bool = True) -> dict:
    """``--export-only``: the latest checkpoint of ``out`` written as the model (config, EMA weights, SavedModel,
    and model.tflite unless ``tflite`` is False)."""
    summary = export_checkpoint(out, tflite=tflite)
    emit({"event": "done", "step": summary["steps"], "total": summary["steps"],
          "message": f"exported step {summary['steps']} to {out}"})
    return summary


def settle_batch_size(options: TrainOptions, run: RunState, config: ModelConfig,
                      replicas: int) -> tuple[TrainOptions, list[str]]:
    """The options with ``--batch-size auto`` replaced by the chosen size, and the note saying so; the batch
    must split evenly over the replicas."""
    notes = []
    if options.batch_size == "auto":
        batch, note = choose_batch_size(run.model, config, replicas)
        options = replace(options, batch_size=batch)
        notes.append(note)
    if options.batch_size % replicas:
        raise InputError(f"--batch-size {options.batch_size}: must be a multiple of the {replicas} replicas")
    return options, notes


def finish(loop: TrainLoop, config: ModelConfig, source: DataSource, levels: NoiseLevels, chief: bool,
           seconds: float, emit: ProgressFn) -> dict:
    """After the last step: the model written (chief only) with its training summary, which is returned."""
    run, out = loop.run, loop.options.out
    if not chief:  # a non-chief worker's checkpoints are scratch copies
        shutil.rmtree(run.manager.directory, ignore_errors=True)
    if math.isnan(loop.val):  # nothing trained this run (resumed at or past the end): still report a figure
        loop.validate()
    summary = run_summary(loop, source, levels, seconds)
    if chief:  # JSON has no NaN: a figure that was never measured is stored as null
        stored = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
        modelstore.save_model(out, replace(config, training=stored), run.ema_model, tflite=loop.options.tflite)
    summary.update({"model_dir": out, "checkpoint": run.latest})
    metric, val = loop.validator.metric, loop.val
    emit({"event": "done", "step": loop.step, "total": loop.total, "loss": loop.window_loss, f"val_{metric}": val,
          "message": f"saved model to {out} ({metric.upper()} {val:.2f} dB on validation)"})
    return summary


def model_config(options: TrainOptions, source: DataSource, folder: RunFolder,
                 init_dir: str | None = None) -> ModelConfig:
    """The resumed run's config, ``--init-from``'s network, or a new one from the options for ``source``'s
    data; checks the patch size."""
    config = folder.resumed_config() if options.resume else None
    if config is None and init_dir:
        config = init_config(options, source, init_dir)
    elif config is None:
        config = new_model_config(options, source)
    elif (config.domain, config.channels) != (source.domain, source.channels):
        raise InputError(
            f"{options.out}: the checkpoint is a {config.channels}-channel {config.domain} model but the data is "
            f"{source.channels}-channel {source.domain}; resume with the same kind of data"
        )
    if config.arch == Arch.unet and config.patch_size % config.size_multiple:
        raise InputError(f"--patch-size {config.patch_size}: must be a multiple of {config.size_multiple} for "
                         f"{len(config.widths)} U-Net levels")
    return config


def init_source(name: str) -> str:
    """``--init-from``: a model directory, else the bundled model of that name (``diffuse_cli/models``)."""
    if os.path.isdir(name):
        return name
    bundled = MODELS_DIR / name
    if name and os.sep not in name and bundled.is_dir():
        return str(bundled)
    names = ", ".join(e["name"] for e in list_bundled())
    raise InputError(f"--init-from {name}: no such model directory or bundled model; give a folder made by "
                     f"`diffuse train` or one of {names}")


def init_config(o: TrainOptions, source: DataSource, init_dir: str) -> ModelConfig:
    """The network of ``init_dir`` (arch, sizes, step encoding, schedule, objective, sigma_data) for ``source``'s
    data, with this run's patch size; InputError naming the first mismatch with the data or ``--objective``."""
    base = load_config(init_dir)
    flag = f"--init-from {o.init_from}"
    if base.domain != source.domain:
        raise InputError(f"{flag}: is a {base.domain} model but the data is {source.domain}; start from a "
                         f"{source.domain} model")
    if base.channels != source.channels:
        hint = f" (or pass --channels {base.channels})" if source.domain == "image" else ""
        raise InputError(f"{flag}: is a {base.channels}-channel model but the data has {source.channels} "
                         f"channel(s); start from a {source.channels}-channel model{hint}")
    rate = int(source.sample_rate) if source.sample_rate else None
    if source.domain == "audio" and base.sample_rate and rate != base.sample_rate:
        raise InputError(f"{flag}: is a {base.sample_rate} Hz model but the data is {rate} Hz; resample the data "
                         "or start from a model of its rate")
    if o.objective is not None and o.objective != base.objective:
        raise InputError(f"{flag}: was trained with --objective {base.objective}, not {o.objective}; drop "
                         "--objective (fine-tuning keeps the source's)")
    patch = base.length if base.arch == Arch.dense else int(o.patch_size or base.patch_size or 64)
    # the source's sigma calibration belongs to its weights: measure the new model's again
    return replace(base, patch_size=int(patch), sample_rate=rate if source.domain == "audio" else base.sample_rate,
                   training={}, sigma_calibration=())


def load_init_weights(run: RunState, init_dir: str) -> None:
    """``--init-from``: the source model's weights, exactly, into the model and its EMA copy (through the
    model store's checked loader); the optimizer and step stay fresh."""
    weights = modelstore.load_model(init_dir, mixed_precision=False).model.get_weights()
    run.model.set_weights(weights)
    run.ema_model.set_weights(weights)


def data_sigma(source: DataSource, patch: int, seed: int) -> float:
    """EDM's ``sigma_data`` in model units: 0.5 for images in [-1, 1] (Karras et al.'s value), the measured
    RMS of training patches for audio and signals (which have no fixed range), kept within the config's range."""
    if source.domain == "image":
        return 0.5
    return float(f"{min(max(source.data_std(patch, seed), 1e-3), 100.0):.4g}")


def new_model_config(o: TrainOptions, source: DataSource) -> ModelConfig:
    """A model config for ``o`` on ``source``'s data (dense: the patch is the fixed signal length)."""
    if o.arch == Arch.dense and source.domain == "image":
        raise InputError("--arch dense: the seed's Dense model is for fixed-length 1D signals; use --arch unet")
    patch = o.patch_size or (64 if source.domain == "image" else 1024)
    length = None
    if o.arch == Arch.dense:
        length = patch = int(o.length or o.patch_size or 256)
    return default_config(
        source.domain, source.channels, arch=o.arch, widths=[int(w) for w in o.widths], blocks=int(o.blocks),
        dense_hidden=int(o.dense_hidden), length=length, embedding=o.embedding,
        embedding_dim=int(o.embedding_dim), activation_noise=float(o.activation_noise), kernel_size=o.kernel_size,
        schedule=o.schedule, timesteps=int(o.timesteps), patch_size=int(patch),
        sample_rate=int(source.sample_rate) if source.sample_rate else None,
        objective=default_objective(o), sigma_data=data_sigma(source, int(patch), o.seed),
    )


def start_message(config: ModelConfig, source: DataSource, replicas: int, mixed: bool, validator: Validator,
                  start_step: int) -> str:
    held_out = f" (+{len(source.holdout)} held out)" if source.holdout else ""
    msg = (f"training a {config.arch} on {len(source.files)} {source.domain} file(s){held_out}, {replicas} "
           f"replica(s), {'in memory' if source.in_memory else 'streamed from disk'}"
           f"{', mixed precision (float16 compute)' if mixed else ''}; validation "
           f"{validator.metric.upper()} of noisy input {validator.baseline:.2f} dB")
    msg += f"; objective {config.objective}"
    if config.objective == "edm":
        msg += f" (sigma_data {config.sigma_data:g})"
    return msg + (f"; resumed at step {start_step}" if start_step else "")


def run_summary(loop: TrainLoop, source: DataSource, levels: NoiseLevels, seconds: float) -> dict:
    """What config.json records about the run (and ``train`` returns)."""
    metric, options = loop.validator.metric, loop.options
    return {
        "steps": loop.step,
        "loss": loop.history[-1]["loss"] if loop.history else loop.window_loss,  # mean loss of the last epoch
        "first_loss": loop.first_loss,  # mean loss of the first logged steps of this run (1.0 at zero init)
        "val_metric": metric,
        f"val_{metric}": loop.val,
        "val_baseline": loop.validator.baseline,
        "val_sigma_model": levels.validation,
        "seconds": round(seconds, 2),
        "seed": options.seed,
        "files": len(source.files),
        "holdout_files": len(source.holdout),
        "domain": source.domain,
        "channels": source.channels,
        "batch_size": options.batch_size,
        "loss_terms": loss_terms(options),
        "lr": options.lr,
        "low_noise_fraction": options.low_noise_fraction,
        "low_noise_sigma_model_units": list(levels.low_noise),
        "strategy": options.strategy,
        "precision": "mixed" if loop.run.mixed else "float32",
        "xla": loop.run.xla,
        "history": loop.history,
        **({"init_from": options.init_from} if options.init_from else {}),
        **options.extra,
    }
