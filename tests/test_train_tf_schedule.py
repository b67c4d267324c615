"""The training step's TensorFlow schedule is schedule.Schedule: alpha_bar at fractional t, sigma -> t,
q_sample and predict_x0 agree with the numpy definitions (float32 rounding apart)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from diffuse_cli import schedule as sch
from diffuse_cli.training import tf_schedule


@pytest.mark.parametrize("kind, timesteps", [("linear", 1000), ("cosine", 1000), ("linear", 50), ("cosine", 200)])
def test_alpha_bar_and_sigma_to_t_match_numpy(kind, timesteps):
    schedule = sch.Schedule.create(kind, timesteps)
    tfs = tf_schedule.TfSchedule(schedule)
    rng = np.random.default_rng(0)
    # fractional steps everywhere, the integer steps, both ends, and beyond the ends (clamped)
    t = np.concatenate([rng.uniform(0, timesteps, 500), np.arange(timesteps + 1), [0.0, 0.25, timesteps - 0.5]])
    got = tfs.alpha_bar_at(tf.constant(t, tf.float32)).numpy()
    np.testing.assert_allclose(got, schedule.alpha_bar_at(t.astype(np.float32)), rtol=5e-6)
    assert tfs.alpha_bar_at(tf.constant([-3.0, timesteps + 5.0])).numpy() == pytest.approx(
        schedule.alpha_bar_at(np.array([0.0, timesteps])), rel=5e-6)

    # sigma from the whole range of the schedule (file units of images and 1D data alike)
    sigma = np.exp(rng.uniform(np.log(1e-3), np.log(float(schedule.t_to_sigma(timesteps))), 500))
    got_t = tfs.sigma_to_t(tf.constant(sigma, tf.float32)).numpy()
    want_t = schedule.sigma_to_t(sigma.astype(np.float32))
    np.testing.assert_allclose(got_t, want_t, rtol=1e-6, atol=1e-5)
    # and the round trip: the step found has the noise asked for
    np.testing.assert_allclose(schedule.t_to_sigma(got_t.astype(np.float64)), sigma, rtol=1e-3)


def test_q_sample_and_predict_x0_match_numpy():
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-1, 1, (4, 9, 7, 2)).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    ab = np.array([0.999, 0.5, 0.1, 1e-3], np.float32)
    x_t = tf_schedule.q_sample(tf.constant(x0), tf.constant(eps), tf.constant(ab)).numpy()
    np.testing.assert_allclose(x_t, sch.q_sample(x0, eps, ab), rtol=1e-5, atol=1e-6)
    x0_hat = tf_schedule.predict_x0(tf.constant(x_t), tf.constant(eps), tf.constant(ab)).numpy()
    np.testing.assert_allclose(x0_hat, sch.predict_x0(x_t, eps, ab), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3)  # with the true noise, back to x0
