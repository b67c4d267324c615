"""Generalised Anscombe transform: variance stabilisation, an unbiased round trip, the noise estimate."""

from __future__ import annotations

import numpy as np
import pytest

from diffuse_cli import vst
from diffuse_cli.noise import add_poisson


@pytest.mark.parametrize("peak", [5.0, 30.0, 200.0])
def test_round_trip_unbiased_on_constant_image(peak):
    """An ideal denoiser outputs E[f(z)]; the inverse of that must give back the constant (no bias)."""
    rng = np.random.default_rng(1)
    z = rng.poisson(peak, size=400_000).astype(np.float64)
    ideal = vst.gat_forward(z, 1.0, 0.0).mean()
    assert vst.gat_inverse(np.array(ideal), 1.0, 0.0) == pytest.approx(peak, rel=0.01)
    assert vst.gat_inverse_exact(np.array(ideal), 1.0, 0.0) == pytest.approx(peak, rel=0.01)
    # the plain algebraic inverse is biased at low counts: the reason for the exact unbiased one
    algebraic = (ideal / 2) ** 2 - 3 / 8
    if peak <= 5:
        assert abs(algebraic - peak) > 3 * abs(vst.gat_inverse(np.array(ideal), 1.0, 0.0) - peak)


@pytest.mark.parametrize("level", [0.5, 2.0, 10.0, 60.0])
def test_exact_inverse_unbiased_poisson_gaussian_in_file_units(level):
    """A constant image of `level` counts, gain 4 file units per count, read noise 6: the exact inverse of the
    mean transformed value is the constant; the algebraic inverse is off by ~alpha/4 file units."""
    rng = np.random.default_rng(5)
    alpha, sigma, n = 4.0, 6.0, 400_000
    x = level * alpha
    z = alpha * rng.poisson(level, n) + rng.normal(0, sigma, n)
    ideal = vst.gat_forward(z, alpha, sigma).mean()
    tolerance = 4 * vst.gat_forward(z, alpha, sigma).std() / np.sqrt(n)  # Monte Carlo error of `ideal`, in f units
    slope = 2.0 / np.sqrt(alpha * x + sigma**2 + 0.375 * alpha**2)  # df/dx: f-unit error -> file units
    exact = float(vst.gat_inverse_exact(np.array(ideal), alpha, sigma))
    assert exact == pytest.approx(x, abs=tolerance / slope + 0.02 * alpha)
    algebraic = alpha * (ideal / 2) ** 2 - 0.375 * alpha - sigma**2 / alpha
    assert abs(algebraic - x) > 3 * abs(exact - x)


@pytest.mark.parametrize("peak", [5.0, 30.0])
def test_exact_inverse_unbiased_on_saturated_constant_image(peak):
    """A bright constant clipped at the top of the file's range: the mean of the clipped values is biased low,
    the inverse with `clip` is not."""
    rng = np.random.default_rng(6)
    alpha = 255.0 / peak
    x = 230.0
    z = np.clip(add_poisson(np.full(400_000, x), peak, 255.0, rng), 0, 255)
    ideal = vst.gat_forward(z, alpha, 0.0).mean()
    clipped = float(vst.gat_inverse_exact(np.array(ideal), alpha, 0.0, clip=(0.0, 255.0)))
    unaware = float(vst.gat_inverse_exact(np.array(ideal), alpha, 0.0))
    assert clipped == pytest.approx(x, abs=2.0)
    assert unaware < x - 5.0


def test_expected_gat_matches_monte_carlo():
    rng = np.random.default_rng(7)
    alpha, sigma = 2.0, 3.0
    for x in (0.0, 3.0, 40.0, 1500.0):  # 1500 / 2 = 750 counts: the Gaussian approximation of the Poisson part
        z = alpha * rng.poisson(x / alpha, 200_000) + rng.normal(0, sigma, 200_000)
        f = vst.gat_forward(z, alpha, sigma)
        assert vst.expected_gat(np.array([x]), alpha, sigma)[0] == pytest.approx(f.mean(), abs=4 * f.std() / 450)


def test_forward_stabilises_variance_of_poisson_gaussian():
    rng = np.random.default_rng(2)
    alpha, sigma = 2.0, 3.0
    for level in (20.0, 100.0, 400.0):
        z = alpha * rng.poisson(level / alpha, 200_000) + rng.normal(0, sigma, 200_000)
        assert np.std(vst.gat_forward(z, alpha, sigma)) == pytest.approx(1.0, abs=0.05)


def test_round_trip_unbiased_poisson_gaussian():
    rng = np.random.default_rng(3)
    alpha, sigma, level = 2.0, 3.0, 60.0
    z = alpha * rng.poisson(level / alpha, 400_000) + rng.normal(0, sigma, 400_000)
    ideal = vst.gat_forward(z, alpha, sigma).mean()
    assert vst.gat_inverse(np.array(ideal), alpha, sigma) == pytest.approx(level, rel=0.01)


def test_estimate_gain_and_read_noise():
    rng = np.random.default_rng(4)
    ramp = np.tile(np.linspace(10, 240, 512), (512, 1))
    alpha, sigma = 1.5, 4.0
    z = alpha * rng.poisson(ramp / alpha) + rng.normal(0, sigma, ramp.shape)
    a_hat, s_hat = vst.estimate_poisson_gaussian(z)
    assert a_hat == pytest.approx(alpha, rel=0.1)
    assert s_hat == pytest.approx(sigma, rel=0.3)


def _scene(channels: int) -> np.ndarray:
    """A smooth 256x256 scene over the whole 0..255 range (each colour channel a different ramp)."""
    i, j = np.mgrid[0:256, 0:256] / 255.0
    planes = [255.0 * j, 255.0 * (0.5 * i + 0.5 * j), 255.0 * (1.0 - i)][:channels]
    return np.stack(planes, axis=-1) if channels > 1 else planes[0]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("peak", [5.0, 30.0, 255.0])
@pytest.mark.parametrize("read", [0.0, 5.0])
def test_estimate_on_8bit_clipped_images(channels, peak, read):
    """What an 8-bit file holds (rounded, clipped at 0 and 255): the noise std at mid-gray is within 10 %,
    and the gain within 15 % (the read noise is only pinned down where it is a visible part of the noise)."""
    rng = np.random.default_rng([channels, int(peak), int(read)])
    alpha = 255.0 / peak
    z = np.clip(np.round(add_poisson(_scene(channels), peak, 255.0, rng, sigma=read)), 0, 255)
    a_hat, s_hat = vst.estimate_poisson_gaussian(z, clip=(0.0, 255.0))
    assert a_hat == pytest.approx(alpha, rel=0.15)
    assert np.sqrt(a_hat * 128 + s_hat**2) == pytest.approx(np.sqrt(alpha * 128 + read**2), rel=0.1)
    if alpha * 128 < 4 * read**2:
        assert s_hat == pytest.approx(read, rel=0.3)


def test_estimate_holds_a_given_parameter():
    rng = np.random.default_rng(8)
    z = np.clip(np.round(add_poisson(_scene(1), 100.0, 255.0, rng, sigma=6.0)), 0, 255)
    a_hat, s_hat = vst.estimate_poisson_gaussian(z, clip=(0.0, 255.0), alpha=2.55)
    assert a_hat == 2.55 and s_hat == pytest.approx(6.0, rel=0.3)
    a_hat, s_hat = vst.estimate_poisson_gaussian(z, clip=(0.0, 255.0), sigma=6.0)
    assert s_hat == 6.0 and a_hat == pytest.approx(2.55, rel=0.1)


def test_estimate_refuses_a_tiny_image():
    with pytest.raises(ValueError, match="too small"):
        vst.estimate_poisson_gaussian(np.ones((8, 8)))
