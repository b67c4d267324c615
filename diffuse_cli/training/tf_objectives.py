"""The training objectives (:mod:`diffuse_cli.objectives`) as TensorFlow ops for the compiled step:
what the network is fed, what its output is regressed on, and the clean-data estimate it implies.
tests/test_train_objective.py pins them equal to the NumPy reference.

``ab`` is alpha_bar of shape (B,); ``sigma^2 = (1 - ab) / ab`` and ``y = x_t / sqrt(ab) = x0 + sigma eps``.
"""

from __future__ import annotations

import tensorflow as tf

from diffuse_cli.training.tf_schedule import broadcast_to_rank, predict_x0


def _sigma_y(x_t: tf.Tensor, ab: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(sigma, y) broadcast against ``x_t``; ``1 - ab`` floored at 0 (float32 rounds ab to 1 at tiny t)."""
    ab = broadcast_to_rank(ab, x_t)
    return tf.sqrt(tf.maximum(1.0 - ab, 0.0) / ab), x_t / tf.sqrt(ab)


def network_input(x_t: tf.Tensor, ab: tf.Tensor, objective: str, sigma_data: float) -> tf.Tensor:
    """``x_t`` (eps, x0) or ``c_in y = y / sqrt(sigma^2 + sd^2)`` (edm)."""
    if objective != "edm":
        return x_t
    sigma, y = _sigma_y(x_t, ab)
    return y * tf.math.rsqrt(tf.square(sigma) + sigma_data**2)


def training_target(x0: tf.Tensor, eps: tf.Tensor, x_t: tf.Tensor, ab: tf.Tensor, objective: str,
                    sigma_data: float) -> tf.Tensor:
    """eps, x0, or edm's ``F* = (x0 - c_skip y) / c_out``.

    edm is computed as the equal ``F* = (sigma x0 / sd - sd eps) / sqrt(sigma^2 + sd^2)`` (substitute
    ``y = x0 + sigma eps``), which stays finite as sigma -> 0 where ``c_out`` vanishes.
    """
    if objective == "eps":
        return eps
    if objective == "x0":
        return x0
    sigma, _ = _sigma_y(x_t, ab)
    return (sigma * x0 / sigma_data - sigma_data * eps) * tf.math.rsqrt(tf.square(sigma) + sigma_data**2)


def predict_x0_from_output(output: tf.Tensor, x_t: tf.Tensor, ab: tf.Tensor, objective: str,
                           sigma_data: float) -> tf.Tensor:
    """The clean-data estimate: ``predict_x0(x_t, eps_hat)`` (eps), the output (x0), ``c_skip y + c_out F`` (edm)."""
    if objective == "eps":
        return predict_x0(x_t, output, ab)
    if objective == "x0":
        return output
    sigma, y = _sigma_y(x_t, ab)
    total = tf.square(sigma) + sigma_data**2
    return (sigma_data**2 * y + sigma * sigma_data * tf.sqrt(total) * output) / total


def eps_from_output(output: tf.Tensor, x_t: tf.Tensor, ab: tf.Tensor, objective: str, sigma_data: float) -> tf.Tensor:
    """``objectives.eps_from_output``: ``eps = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab)`` (the output itself for eps)."""
    if objective == "eps":
        return output
    x0_hat = predict_x0_from_output(output, x_t, ab, objective, sigma_data)
    abb = broadcast_to_rank(ab, x_t)
    return (x_t - tf.sqrt(abb) * x0_hat) / tf.sqrt(tf.maximum(1.0 - abb, 1e-12))
