"""Training loss terms: the TensorFlow SSIM is metrics.ssim (same window, same formula, images of 11x11 and
more); --loss choices and weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from diffuse_cli import metrics
from diffuse_cli.enums import Loss
from diffuse_cli.errors import InputError
from diffuse_cli.training import losses
from diffuse_cli.training.options import TrainOptions, loss_terms


@pytest.mark.parametrize("shape, data_range", [((11, 11, 1), 2.0), ((32, 17, 1), 2.0), ((24, 40, 3), 1.0),
                                               ((64, 64, 1), 255.0)])
def test_ssim_matches_metrics_ssim(shape, data_range):
    rng = np.random.default_rng(sum(shape))
    ref = rng.uniform(0, data_range, (3, *shape))
    smooth = np.cumsum(rng.standard_normal((3, *shape)), axis=1) * 0.05 * data_range  # structure, not just noise
    noisy = ref + rng.normal(0, 0.1 * data_range, ref.shape)
    others = [noisy, 0.5 * ref + smooth, rng.uniform(0, data_range, ref.shape)]
    for other in others:
        got = losses.ssim_per_example(tf.constant(other, tf.float32), tf.constant(ref, tf.float32), 2, data_range)
        want = [metrics.ssim(r, o, data_range) for r, o in zip(ref, other)]
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    assert losses.ssim_per_example(tf.constant(ref, tf.float32), tf.constant(ref, tf.float32), 2,
                                   data_range).numpy() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("loss, weights, want", [
    ("mse", None, {"mse": 1.0}),
    ("mse+ssim", None, {"mse": 1.0, "ssim": 0.1}),
    (Loss.mse_ssim, (1.0, 0.2), {"mse": 1.0, "ssim": 0.2}),
    ("l1+ssim", {"ssim": 0.5, "l1": 2.0}, {"l1": 2.0, "ssim": 0.5}),
])
def test_loss_terms(loss, weights, want):
    assert loss_terms(TrainOptions(data=[], out="", loss=loss, loss_weights=weights)) == want


@pytest.mark.parametrize("loss, weights, words", [
    ("perceptual", None, "--loss perceptual: unknown; use one of mse, l1, ssim, mse+ssim"),
    ("mse+ssim", (1.0,), "give 2 weights"),
    ("mse", (-1.0,), "must be >= 0"),
    ("mse+l1", {"mse": 1.0}, "one weight for each of mse, l1"),
])
def test_bad_loss_rejected(loss, weights, words):
    with pytest.raises(InputError, match=words.replace("+", r"\+")):
        loss_terms(TrainOptions(data=[], out="", loss=loss, loss_weights=weights))
