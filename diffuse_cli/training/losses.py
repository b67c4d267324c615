"""Loss terms of the training step, per example: MSE and L1 on the network output against its target
(the noise, the clean data or EDM's F*: ``training.tf_objectives``), SSIM on the implied clean data.

The SSIM here is :func:`diffuse_cli.metrics.ssim` in TensorFlow (batched, differentiable, rank 1 or 2);
tests/test_train_losses.py pins the two equal.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from diffuse_cli.metrics import SSIM_WINDOW, gaussian_window


def ssim_per_example(x: tf.Tensor, y: tf.Tensor, rank: int, data_range: tf.Tensor | float) -> tf.Tensor:
    """Gaussian-window SSIM (Wang et al. 2004) per example, shape (B,), for rank 1 or 2 (one code path).

    ``ssim = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``,
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, window 11 (or the patch size if smaller), sigma 1.5, valid
    positions only, mean over positions and channels. 1D inputs (B, N, C) are images of height 1.
    """
    if rank == 1:
        x, y = x[:, None], y[:, None]
    channels = x.shape[-1]
    size = int(min(SSIM_WINDOW, x.shape[2] or SSIM_WINDOW, (x.shape[1] or SSIM_WINDOW) if rank == 2 else SSIM_WINDOW))
    g = gaussian_window(size).astype(np.float32)
    kernel = np.outer(g, g) if rank == 2 else g[None, :]
    kernel = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)))

    def blur(v: tf.Tensor) -> tf.Tensor:
        return tf.nn.depthwise_conv2d(v, kernel, strides=[1, 1, 1, 1], padding="VALID")

    L = tf.reshape(tf.cast(data_range, tf.float32), [-1, 1, 1, 1])
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return tf.reduce_mean(s, axis=[1, 2, 3])


def per_example_loss(
    terms: dict[str, float], target: tf.Tensor, output: tf.Tensor, x0: tf.Tensor, x0_hat: tf.Tensor,
    ab: tf.Tensor, rank: int, domain: str,
) -> tf.Tensor:
    """Weighted sum of loss terms per example, shape (B,).

    mse: ``mean (output - target)^2`` (with the eps objective: the seed's loss); l1: ``mean |output - target|``;
    ssim: ``ab * (1 - SSIM(x0_hat, x0))`` on the clean-data estimate ``x0_hat``; the ``ab`` weight keeps
    the wildly noisy x0 estimates of large t from dominating.
    """
    axes = list(range(1, len(target.shape)))
    total = tf.zeros(tf.shape(target)[:1])
    if "mse" in terms:
        total += terms["mse"] * tf.reduce_mean(tf.square(output - target), axis=axes)
    if "l1" in terms:
        total += terms["l1"] * tf.reduce_mean(tf.abs(output - target), axis=axes)
    if "ssim" in terms:
        if domain == "image":
            data_range = tf.constant(2.0)
        else:  # per-example dynamic range of the clean segment (audio and signals have no fixed range)
            data_range = tf.maximum(tf.reduce_max(x0, axis=axes) - tf.reduce_min(x0, axis=axes), 1e-3)
        total += terms["ssim"] * ab * (1.0 - ssim_per_example(x0_hat, x0, rank, data_range))
    return total
