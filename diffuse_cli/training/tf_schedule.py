"""The diffusion schedule as TensorFlow ops for the compiled training step, derived from
:class:`diffuse_cli.schedule.Schedule` (its ``alpha_bar`` table) and interpolating exactly as it does:
``log alpha_bar`` linear between integer steps. tests/test_train_tf_schedule.py pins the two equal.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from diffuse_cli.schedule import Schedule


def interp(x: tf.Tensor, xp: tf.Tensor, fp: tf.Tensor) -> tf.Tensor:
    """``np.interp(x, xp, fp)`` for increasing ``xp``, clamped at the ends."""
    n = tf.shape(xp)[0]
    idx = tf.clip_by_value(tf.searchsorted(xp, x, side="right"), 1, n - 1)
    x0, x1 = tf.gather(xp, idx - 1), tf.gather(xp, idx)
    y0, y1 = tf.gather(fp, idx - 1), tf.gather(fp, idx)
    w = tf.clip_by_value((x - x0) / tf.maximum(x1 - x0, 1e-12), 0.0, 1.0)
    return y0 + w * (y1 - y0)


def broadcast_to_rank(v: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """(B,) -> (B, 1, ..., 1) matching the rank of ``like`` (``schedule.broadcast_to_rank``)."""
    return tf.reshape(v, tf.concat([tf.shape(v), tf.ones(tf.rank(like) - 1, tf.int32)], 0))


def q_sample(x0: tf.Tensor, eps: tf.Tensor, alpha_bar_t: tf.Tensor) -> tf.Tensor:
    """``schedule.q_sample``: ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps`` with ``ab_t`` of shape (B,)."""
    ab = broadcast_to_rank(alpha_bar_t, x0)
    return tf.sqrt(ab) * x0 + tf.sqrt(1.0 - ab) * eps


def predict_x0(x_t: tf.Tensor, eps: tf.Tensor, alpha_bar_t: tf.Tensor) -> tf.Tensor:
    """``schedule.predict_x0``: ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)`` with ``ab_t`` of shape (B,)."""
    ab = broadcast_to_rank(alpha_bar_t, x_t)
    return (x_t - tf.sqrt(1.0 - ab) * eps) / tf.sqrt(ab)


class TfSchedule:
    """``alpha_bar_at`` and ``sigma_to_t`` of a :class:`Schedule` as float32 TF ops."""

    def __init__(self, schedule: Schedule) -> None:
        log_ab = np.log(np.maximum(schedule.alpha_bar, 1e-300))
        self.timesteps = schedule.timesteps
        self.steps = tf.constant(np.arange(self.timesteps + 1, dtype=np.float32))
        self.log_ab = tf.constant(log_ab.astype(np.float32))
        self.neg_log_ab = tf.constant((-log_ab).astype(np.float32))

    def alpha_bar_at(self, t: tf.Tensor) -> tf.Tensor:
        """alpha_bar at real t in [0, T]: ``log ab(t)`` linear between integer steps."""
        return tf.exp(interp(t, self.steps, self.log_ab))

    def sigma_to_t(self, sigma: tf.Tensor) -> tf.Tensor:
        """Real t with ``alpha_bar(t) = 1 / (1 + sigma^2)``, i.e. ``-log ab(t) = log(1 + sigma^2)``."""
        return interp(tf.math.log1p(tf.square(sigma)), self.neg_log_ab, self.steps)
