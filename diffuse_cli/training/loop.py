"""The optimisation loop: :class:`TrainLoop` runs the compiled training step, logs, checkpoints and validates.

One step, on every replica (seeded by ``(seed, replica, step)``, so a resumed run repeats an uninterrupted one):

    t ~ mix(uniform{1..T}, sigma_to_t(sigma ~ log-uniform[low-noise range]))
    eps ~ N(0, I);  x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps;  loss = L(F(input(x_t), t), target)

with the objective's network input and target (``tf_objectives``): eps: ``x_t`` -> eps (the seed's loss);
x0: ``x_t`` -> x_0; edm: ``c_in y`` -> ``(x_0 - c_skip y) / c_out`` with ``y = x_t / sqrt(ab_t)``.
Then the gradient is all-reduced, clipped by its global norm and applied by Adam, and the EMA copy of the
weights (what validation and the export use) follows the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from diffuse_cli.config import ModelConfig
from diffuse_cli.errors import Interrupted
from diffuse_cli.schedule import Schedule
from diffuse_cli.training.checkpoints import RunState
from diffuse_cli.training.losses import per_example_loss
from diffuse_cli.training.options import NoiseLevels, TrainOptions, loss_terms, total_steps
from diffuse_cli.training.signals import StopFlag
from diffuse_cli.training.tf_objectives import network_input, predict_x0_from_output, training_target
from diffuse_cli.training.tf_schedule import TfSchedule, q_sample
from diffuse_cli.training.validation import Validator

ProgressFn = Callable[[dict], None]


def scalar_summary(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar via core ``tf.summary.write`` (the ``tensorboard`` package is not required)."""
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


class TrainLoop:
    """Steps ``run`` from ``start_step`` to ``total_steps(options)``, emitting progress events.

    ``record(history)`` is called after every epoch (the caller writes the run's state next to its
    checkpoints). Events: step (mean loss of the steps since the last one), checkpoint, epoch (mean loss
    of the epoch, validation score).
    """

    def __init__(self, run: RunState, strategy: tf.distribute.Strategy, config: ModelConfig, options: TrainOptions,
                 levels: NoiseLevels, validator: Validator, emit: ProgressFn,
                 record: Callable[[list[dict]], None], start_step: int = 0, history: list[dict] | None = None) -> None:
        self.run, self.strategy, self.options = run, strategy, options
        self.rank, self.domain = config.rank, config.domain
        self.objective, self.sigma_data = config.objective, float(config.sigma_data)
        self.schedule = TfSchedule(Schedule.create(config.schedule, config.timesteps))
        self.terms = loss_terms(options)
        self.log_sigma = (math.log(levels.low_noise[0]), math.log(levels.low_noise[1]))
        self.validator, self.emit, self.record = validator, emit, record
        self.total = total_steps(options)
        self.start_step = self.step = start_step
        self.history = list(history or [])
        self.last_saved = start_step if start_step else -1
        self.pending: list[tf.Tensor] = []  # loss tensors not yet read (reading syncs the device)
        self.epoch_losses: list[float] = []
        self.window_loss = self.first_loss = self.val = float("nan")
        self.window = 0
        self._forward_backward = (tf.function(self.forward_backward, jit_compile=True) if run.xla
                                  else self.forward_backward)
        self._train_fn = tf.function(self._distributed_step)

    # ------------------------------------------------------------------------------ the compiled step
    def sample_noise(self, x0: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(t, eps) for one replica's batch: stateless, seeded by ``(seed, replica, step)``."""
        rid = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(self.options.seed, tf.int64) * 1009 + rid, step]), num=4
        )
        batch = tf.shape(x0)[0]
        T = float(self.schedule.timesteps)
        t_uniform = tf.minimum(tf.floor(tf.random.stateless_uniform([batch], seeds[0], minval=1.0, maxval=T + 1.0)), T)
        log_lo, log_hi = self.log_sigma
        sigma = tf.exp(tf.random.stateless_uniform([batch], seeds[1], minval=log_lo, maxval=log_hi))
        t_low = tf.clip_by_value(self.schedule.sigma_to_t(sigma), 1e-3, T)
        use_low = tf.random.stateless_uniform([batch], seeds[2]) < self.options.low_noise_fraction
        eps = tf.random.stateless_normal(tf.shape(x0), seeds[3])
        return tf.where(use_low, t_low, t_uniform), eps

    def forward_backward(self, x0: tf.Tensor, x_t: tf.Tensor, t: tf.Tensor, eps: tf.Tensor, ab: tf.Tensor):
        """(loss, gradients): forward, loss and backward, the part XLA compiles (``--xla``).

        The loss is this replica's share of the global batch mean, so the replicas' gradients sum to the
        gradient of the global mean; with mixed precision the gradients are of the scaled loss.
        """
        model, optimizer = self.run.model, self.run.optimizer
        objective, sd = self.objective, self.sigma_data
        fed = network_input(x_t, ab, objective, sd)
        target = training_target(x0, eps, x_t, ab, objective, sd)
        with tf.GradientTape() as tape:
            output = tf.cast(model([fed, t], training=True), tf.float32)
            x0_hat = predict_x0_from_output(output, x_t, ab, objective, sd) if "ssim" in self.terms else x0
            per_ex = per_example_loss(self.terms, target, output, x0, x0_hat, ab, self.rank, self.domain)
            loss = tf.nn.compute_average_loss(per_ex, global_batch_size=self.options.batch_size)
            scaled = optimizer.scale_loss(loss) if self.run.mixed else loss
        return loss, tape.gradient(scaled, model.trainable_variables)

    def optimize(self, grads: list) -> None:
        """All-reduce, clip the *global* gradient, then hand the optimizer 1/replicas of it (Keras sums over
        replicas again inside apply_gradients)."""
        ctx = tf.distribute.get_replica_context()
        # The learned step table gets sparse (IndexedSlices) gradients; it is small, make them dense.
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.options.grad_clip > 0:  # scaled gradients (mixed precision) are clipped at the scaled norm
            scale = tf.cast(self.run.optimizer.dynamic_scale, tf.float32) if self.run.mixed else 1.0
            grads, _ = tf.clip_by_global_norm(grads, self.options.grad_clip * scale)
        replicas = self.strategy.num_replicas_in_sync
        self.run.optimizer.apply_gradients(zip([g / replicas for g in grads], self.run.model.trainable_variables))

    def replica_update(self, x0: tf.Tensor, t: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
        """One optimizer step on one replica's batch at given steps ``t`` and noise ``eps``; its loss share."""
        ab = self.schedule.alpha_bar_at(t)
        loss, grads = self._forward_backward(x0, q_sample(x0, eps, ab), t, eps, ab)
        self.optimize(grads)
        return loss

    def replica_step(self, x0: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        t, eps = self.sample_noise(x0, step)
        return self.replica_update(x0, t, eps)

    def update_ema(self, step: tf.Tensor) -> None:
        """``decay = min(ema, (1 + step) / (10 + step))``; ``ema_w = decay * ema_w + (1 - decay) * w``."""
        stepf = tf.cast(step, tf.float32)
        decay = tf.minimum(self.options.ema, (1.0 + stepf) / (10.0 + stepf))
        for e, w in zip(self.run.ema_model.weights, self.run.model.weights):
            e.assign(decay * e + (1.0 - decay) * w)

    def _distributed_step(self, iterator) -> tf.Tensor:
        x0 = next(iterator)
        step = self.run.step.read_value()
        per_replica = self.strategy.run(self.replica_step, args=(x0, step))
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        self.update_ema(step)
        self.run.step.assign_add(1)
        return loss

    # ------------------------------------------------------------------------------ the loop
    def run_loop(self, dataset: tf.distribute.DistributedDataset, writer: tf.summary.SummaryWriter) -> None:
        """Train to the last step; SIGINT/SIGTERM save a checkpoint and raise errors.Interrupted."""
        o = self.options
        iterator = iter(dataset)
        self.t_start = time.time()
        with StopFlag() as stop, writer.as_default():
            while self.step < self.total:
                self.run_step(iterator)
                if self.step % o.log_every == 0 or self.step == self.total:
                    self.log_step()
                if self.step % o.checkpoint_every == 0:
                    self.save()
                if self.step % o.steps_per_epoch == 0 or self.step == self.total:
                    self.end_epoch(writer)
                if stop.signum is not None:
                    self.stop(stop.signum)
        if self.last_saved != self.step:
            self.run.save()

    def run_step(self, iterator) -> None:
        self.pending.append(self._train_fn(iterator))
        self.step += 1

    def flush_losses(self) -> None:
        """Read the queued losses: the window's mean, the epoch's list, the run's first figure."""
        if self.pending:
            values = [float(v.numpy()) for v in self.pending]
            if math.isnan(self.first_loss):
                self.first_loss = float(np.mean(values))
            self.epoch_losses.extend(values)
            self.window_loss, self.window = float(np.mean(values)), len(values)
            self.pending = []

    def log_step(self) -> None:
        self.flush_losses()
        rate = (self.step - self.start_step) * self.options.batch_size / max(time.time() - self.t_start, 1e-9)
        scalar_summary("loss", self.window_loss, step=self.step)
        scalar_summary("learning_rate", float(self.run.optimizer.learning_rate), step=self.step)
        self.emit({"event": "step", "step": self.step, "total": self.total, "loss": self.window_loss,
                   "loss_steps": self.window, "patches_per_s": rate})

    def save(self, message: str | None = None) -> None:
        path = self.run.save() if self.last_saved != self.step else self.run.latest
        self.last_saved = self.step
        event = {"event": "checkpoint", "step": self.step, "total": self.total, "path": path}
        self.emit({**event, "message": message} if message else event)

    def validate(self) -> float:
        """The validation score of the EMA weights (dB)."""
        self.val = self.validator(self.run.ema_model)
        return self.val

    def end_epoch(self, writer: tf.summary.SummaryWriter) -> None:
        self.flush_losses()
        epoch_loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else self.window_loss
        self.epoch_losses = []
        val, metric = self.validate(), self.validator.metric
        self.history.append({"step": self.step, "loss": round(epoch_loss, 6), f"val_{metric}": round(val, 4)})
        scalar_summary("epoch_loss", epoch_loss, step=self.step)
        scalar_summary(f"val_{metric}", val, step=self.step)
        writer.flush()
        self.emit({"event": "epoch", "step": self.step, "total": self.total, "loss": epoch_loss,
                   f"val_{metric}": val, "val_metric": metric,
                   "message": f"step {self.step}/{self.total}: epoch mean loss {epoch_loss:.4f}, validation "
                              f"{metric.upper()} {val:.2f} dB (noisy {self.validator.baseline:.2f} dB)"})
        self.record(self.history)

    def stop(self, signum: int) -> None:
        self.flush_losses()
        self.save(f"interrupted: checkpoint saved at step {self.step}; continue with --resume")
        raise Interrupted(signum)
