"""Schedule math against closed forms, computed independently here."""

import math

import numpy as np
import pytest

from diffuse_cli import schedule as S


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alpha_bar_is_monotone_and_bounded(kind):
    sch = S.Schedule.create(kind, 1000)
    assert sch.alpha_bar[0] == 1.0
    assert np.all(np.diff(sch.alpha_bar) < 0)
    assert 0 < sch.alpha_bar[-1] < 1e-3


def test_linear_betas_closed_form():
    betas = S.linear_betas(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    ab = S.alpha_bars(betas)
    assert ab[10] == pytest.approx(math.prod(1 - b for b in betas[:10]))


def test_cosine_alpha_bar_closed_form():
    sch = S.Schedule.create("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 100, 500, 900):
        assert sch.alpha_bar[t] == pytest.approx(f(t) / f(0), rel=1e-9)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_sigma_t_round_trip(kind):
    sch = S.Schedule.create(kind, 1000)
    sigmas = np.array([0.01, 0.05, 2 * 15 / 255, 2 * 25 / 255, 2 * 50 / 255, 1.0, 3.0])
    t = sch.sigma_to_t(sigmas)
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(sch.t_to_sigma(t), sigmas, rtol=1e-9)


def test_design_note_steps_for_common_sigmas():
    """design.md §7: sigma 15/25/50 (0-255) sits near t = 33/57/115 (linear) and 68/117/232 (cosine)."""
    lin, cos = S.Schedule.create("linear"), S.Schedule.create("cosine")
    sig = np.array([15, 25, 50]) * 2 / 255
    np.testing.assert_allclose(lin.sigma_to_t(sig), [33, 57, 115], atol=1.0)
    np.testing.assert_allclose(cos.sigma_to_t(sig), [68, 117, 232], atol=1.0)


def test_fractional_t_interpolates_between_integers():
    sch = S.Schedule.create("linear", 1000)
    a, b = sch.alpha_bar[40], sch.alpha_bar[41]
    assert b < sch.alpha_bar_at(40.5) < a
    assert sch.alpha_bar_at(40.0) == pytest.approx(a)


def test_q_sample_formula():
    rng = np.random.default_rng(0)
    x0, eps = rng.normal(size=(4, 8, 8, 1)), rng.normal(size=(4, 8, 8, 1))
    ab = np.array([0.9, 0.5, 0.1, 0.01])
    xt = S.q_sample(x0, eps, ab)
    for i in range(4):
        np.testing.assert_allclose(xt[i], math.sqrt(ab[i]) * x0[i] + math.sqrt(1 - ab[i]) * eps[i])


def test_predict_x0_inverts_q_sample():
    rng = np.random.default_rng(1)
    x0, eps = rng.normal(size=(3, 100, 2)), rng.normal(size=(3, 100, 2))
    ab = np.array([0.99, 0.3, 0.02])
    np.testing.assert_allclose(S.predict_x0(S.q_sample(x0, eps, ab), eps, ab), x0, atol=1e-10)


def test_ddim_eta0_with_true_eps_recovers_x0():
    sch = S.Schedule.create("linear", 1000)
    rng = np.random.default_rng(2)
    x0, eps = rng.normal(size=(2, 16, 16, 3)), rng.normal(size=(2, 16, 16, 3))
    t_seq = S.step_sequence(300.0, 7)
    x = S.q_sample(x0, eps, sch.alpha_bar_at(t_seq[0]))
    for t, s in zip(t_seq[:-1], t_seq[1:]):
        x = S.ddim_step(x, eps, sch.alpha_bar_at(t), sch.alpha_bar_at(s))
        # on the deterministic path, x stays exactly at q_sample(x0, eps, ab_s)
        np.testing.assert_allclose(x, S.q_sample(x0, eps, sch.alpha_bar_at(s)), atol=1e-10)
    np.testing.assert_allclose(x, x0, atol=1e-10)


def test_ddpm_step_posterior_matches_paper_for_single_step():
    sch = S.Schedule.create("linear", 1000)
    t = 50
    beta, ab_t, ab_s = sch.betas[t - 1], sch.alpha_bar[t], sch.alpha_bar[t - 1]
    rng = np.random.default_rng(3)
    x0, eps, z = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    xt = S.q_sample(x0, eps, ab_t)
    # Ho et al. eq. 7: mu = sqrt(ab_{t-1}) beta_t/(1-ab_t) x0 + sqrt(alpha_t)(1-ab_{t-1})/(1-ab_t) x_t
    mu = math.sqrt(ab_s) * beta / (1 - ab_t) * x0 + math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t) * xt
    var = beta * (1 - ab_s) / (1 - ab_t)
    np.testing.assert_allclose(S.ddpm_step(xt, eps, ab_t, ab_s, z), mu + math.sqrt(var) * z, atol=1e-12)


def test_unknown_schedule_rejected():
    with pytest.raises(ValueError):
        S.Schedule.create("quadratic", 100)


def test_linear_betas_for_1000_steps_are_unchanged_bit_for_bit():
    """The bundled models were trained on these betas: the clipping must not move a single bit."""
    expected = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    assert S.linear_betas(1000).tobytes() == expected.tobytes()
    assert S.Schedule.create("linear", 1000).betas.tobytes() == expected.tobytes()


@pytest.mark.parametrize("timesteps", [2, 5, 10, 20])
def test_short_linear_schedules_keep_betas_below_one(timesteps):
    """Rescaled by 1000 / T, a short linear schedule would reach beta 2.0 at T = 10: clipped at 0.999."""
    betas = S.Schedule.create("linear", timesteps).betas
    assert np.all(betas > 0) and np.all(betas <= 0.999)
    ab = S.alpha_bars(betas)
    assert np.all(np.diff(ab) < 0) and np.all(ab > 0)


def test_last_step_of_a_short_linear_schedule_is_almost_pure_noise():
    sch = S.Schedule.create("linear", 10)
    # Independently: rescaled linear betas 0.01 .. 2.0, each capped at 0.999, multiplied up to step 9.
    betas = [min(0.01 + (2.0 - 0.01) * k / 9, 0.999) for k in range(10)]
    assert sch.alpha_bar[9] == pytest.approx(math.prod(1 - b for b in betas[:9]), rel=1e-9)
    assert sch.alpha_bar[9] < 1e-6 and sch.alpha_bar[10] < 1e-6


def test_make_betas_rejects_betas_outside_the_open_unit_interval():
    with pytest.raises(ValueError, match="beta"):
        S.check_betas(np.array([0.1, 1.5]))
    with pytest.raises(ValueError, match="beta"):
        S.check_betas(np.array([0.0, 0.5]))
