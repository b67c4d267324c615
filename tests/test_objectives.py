"""Training objectives: EDM coefficients at known sigma (hand-computed) and exact eps round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffuse_cli import objectives as obj
from diffuse_cli.schedule import Schedule, predict_x0


def test_edm_coefficients_hand_computed():
    # sigma = sd = 0.5: sigma^2 + sd^2 = 0.5
    c_skip, c_out, c_in = obj.edm_coefficients(0.5, 0.5)
    assert c_skip == pytest.approx(0.5)
    assert c_out == pytest.approx(0.25 / math.sqrt(0.5))
    assert c_in == pytest.approx(1 / math.sqrt(0.5))
    assert obj.edm_loss_weight(0.5, 0.5) == pytest.approx(8.0)
    # sigma = 1.5, sd = 0.5: total 2.5
    c_skip, c_out, c_in = obj.edm_coefficients(1.5, 0.5)
    assert (c_skip, c_out, c_in) == pytest.approx((0.1, 0.75 / math.sqrt(2.5), 1 / math.sqrt(2.5)))
    assert obj.edm_loss_weight(1.5, 0.5) == pytest.approx(2.5 / 0.5625)


@pytest.mark.parametrize("sigma", [0.01, 0.2, 1.0, 5.0])
def test_loss_weight_is_one_over_c_out_squared(sigma):
    _, c_out, _ = obj.edm_coefficients(sigma, 0.5)
    assert obj.edm_loss_weight(sigma, 0.5) == pytest.approx(1 / c_out**2)


@pytest.mark.parametrize("objective", obj.OBJECTIVES)
def test_target_output_gives_back_the_true_eps_and_x0(objective):
    """A network that outputs exactly its training target predicts the true noise and the clean data."""
    rng = np.random.default_rng(0)
    schedule = Schedule.create("linear", 1000)
    t = np.array([3.0, 57.5, 400.0])
    ab = schedule.alpha_bar_at(t)
    x0 = rng.uniform(-1, 1, (3, 16, 16, 1))
    eps = rng.normal(size=x0.shape)
    x_t = np.sqrt(ab)[:, None, None, None] * x0 + np.sqrt(1 - ab)[:, None, None, None] * eps
    target = obj.training_target(x0, eps, ab, objective, 0.5)
    eps_hat = obj.eps_from_output(target, x_t, ab, objective, 0.5)
    np.testing.assert_allclose(eps_hat, eps, atol=2e-4)
    np.testing.assert_allclose(predict_x0(x_t, eps_hat, ab), x0, atol=2e-4)


def test_edm_input_is_c_in_times_observation():
    schedule = Schedule.create("linear", 1000)
    ab = schedule.alpha_bar_at(np.array([100.0]))
    sigma = math.sqrt((1 - ab[0]) / ab[0])
    x_t = np.full((1, 4, 1), 0.3)
    fed = obj.network_input(x_t, ab, "edm", 0.5)
    np.testing.assert_allclose(fed, 0.3 / math.sqrt(ab[0]) / math.sqrt(sigma**2 + 0.25), rtol=1e-6)
    assert obj.network_input(x_t, ab, "eps", 0.5) is x_t


def test_zero_network_output_means_wiener_shrinkage_for_edm():
    """With F = 0, D = c_skip y: the optimal linear estimate for zero-mean data of variance sd^2."""
    ab = np.array([0.8])
    sigma = math.sqrt(0.2 / 0.8)
    y = np.full((1, 5, 1), 1.0)
    x_t = y * math.sqrt(0.8)
    eps = obj.eps_from_output(np.zeros_like(y), x_t, ab, "edm", 0.5)
    x0 = predict_x0(x_t, eps, ab)
    np.testing.assert_allclose(x0, 0.25 / (sigma**2 + 0.25), rtol=1e-5)
