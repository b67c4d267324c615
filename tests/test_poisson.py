"""Poisson-Gaussian denoising through a Gaussian denoiser (diffuse_cli.denoising.poisson), with stand-in
denoisers: the exact mean of a constant image, identity, a box filter."""

from __future__ import annotations

import numpy as np
import pytest

from diffuse_cli import vst
from diffuse_cli.denoising.poisson import denoise_poisson, stabilising_map
from diffuse_cli.errors import InputError
from diffuse_cli.noise import add_poisson


def _noisy_constant(levels: list[float], peak: float, top: float, seed: int, size: int = 256) -> tuple:
    """A constant image per channel (levels in 0..top) with Poisson noise, clipped to 0..top."""
    rng = np.random.default_rng(seed)
    clean = np.stack([np.full((size, size), v) for v in levels], axis=-1)
    return clean, np.clip(add_poisson(clean, peak, top, rng), 0, top)


def _channel_mean(y: np.ndarray, sigma: float) -> np.ndarray:
    """The ideal denoiser of a constant image: each channel's mean everywhere."""
    return np.broadcast_to(y.mean(axis=(0, 1), keepdims=True), y.shape).copy()


@pytest.mark.parametrize("top", [255.0, 1.0])
def test_constant_colour_image_comes_back_unbiased_in_its_units(top):
    """Each RGB channel is transformed on its own and inverted without bias, in 0..255 and in 0..1 alike."""
    levels = [0.1 * top, 0.4 * top, 0.8 * top]
    clean, z = _noisy_constant(levels, peak=10.0, top=top, seed=1)
    x, report = denoise_poisson(z, _channel_mean, top, gain=top / 10.0, sigma=0.0)
    assert x.shape == z.shape and x.dtype == np.float64
    np.testing.assert_allclose(x.mean(axis=(0, 1)), levels, rtol=0.01)
    # the algebraic inverse of the same means is off by about gain / 4
    f0, width = stabilising_map(top, top / 10.0, 0.0)
    d = vst.gat_forward(z, top / 10.0, 0.0).mean(axis=(0, 1))
    algebraic = (top / 10.0) * ((d / 2) ** 2 - 0.375)
    assert np.all(np.abs(algebraic - levels) > 5 * np.abs(x.mean(axis=(0, 1)) - levels))
    assert report["peak"] == pytest.approx(10.0)


def test_the_gaussian_denoiser_sees_the_input_range_and_the_stabilised_sigma():
    """y = (f(z) - f(0)) * top / (f(top) - f(0)): 0..top like the input, noise std top / (f(top) - f(0)), which
    is the sigma it is told."""
    rng = np.random.default_rng(2)
    clean = np.tile(np.linspace(0, 255, 128), (128, 1))
    gain, read = 255.0 / 30, 3.0
    z = add_poisson(clean, 30.0, 255.0, rng, sigma=read)  # not clipped: no saturation to account for
    seen = {}

    def identity(y, sigma):
        seen["y"], seen["sigma"] = y.copy(), sigma
        return y

    x, report = denoise_poisson(z, identity, 255.0, gain=gain, sigma=read, clipped=False)
    f = 2.0 * np.sqrt(np.maximum(z / gain + 0.375 + (read / gain) ** 2, 0.0))  # f(z) in counts' form
    f0, f255 = (2.0 * np.sqrt(v / gain + 0.375 + (read / gain) ** 2) for v in (0.0, 255.0))
    np.testing.assert_allclose(seen["y"], (f - f0) * 255.0 / (f255 - f0), atol=1e-9)
    assert seen["sigma"] == pytest.approx(255.0 / (f255 - f0)) == pytest.approx(report["stabilised_sigma"])
    residual = seen["y"][:, 1:] - seen["y"][:, :-1]  # neighbours' noise difference (the ramp's step is tiny)
    assert np.std(residual[:, 20:]) / np.sqrt(2) == pytest.approx(seen["sigma"], rel=0.1)
    # identity in: out is the unbiased inverse of f(z) itself, in z's units and shape; the closed form of
    # Makitalo and Foi (vst.gat_inverse) agrees with the numerical one wherever the counts are not tiny
    assert x.shape == z.shape
    mid = clean > 60
    np.testing.assert_allclose(x[mid], vst.gat_inverse(f[mid], gain, read), atol=0.1 * gain)
    assert np.mean(x[mid] - z[mid]) == pytest.approx(gain / 4, abs=0.1 * gain)


def test_gray_shapes_2d_and_one_channel():
    rng = np.random.default_rng(3)
    clean = np.tile(np.linspace(20, 235, 64), (64, 1))
    z = np.clip(add_poisson(clean, 30.0, 255.0, rng), 0, 255)
    x2, _ = denoise_poisson(z, lambda y, s: y, 255.0, gain=8.5, sigma=0.0)
    x3, _ = denoise_poisson(z[..., None], lambda y, s: y, 255.0, gain=8.5, sigma=0.0)
    assert x2.shape == (64, 64) and x3.shape == (64, 64, 1)
    np.testing.assert_array_equal(x2, x3[..., 0])


def _box(y: np.ndarray, sigma: float) -> np.ndarray:
    """A 5x5 box filter per channel (edges replicated)."""
    y3 = y[..., None] if y.ndim == 2 else y
    p = np.pad(y3, ((2, 2), (2, 2), (0, 0)), mode="edge")
    out = sum(p[i : i + y3.shape[0], j : j + y3.shape[1]] for i in range(5) for j in range(5)) / 25.0
    return out[..., 0] if y.ndim == 2 else out


def test_estimated_report_and_a_box_filter_cleans_a_smooth_colour_image():
    i, j = np.mgrid[0:192, 0:192] / 191.0
    clean = 255.0 * np.stack([j, 0.5 * (i + j), 1.0 - i], axis=-1)
    rng = np.random.default_rng(4)
    z = np.clip(np.round(add_poisson(clean, 30.0, 255.0, rng, sigma=4.0)), 0, 255)
    x, report = denoise_poisson(z, _box, 255.0)
    assert report["gain_estimated"] and report["sigma_estimated"]
    assert report["gain"] == pytest.approx(8.5, rel=0.15)
    assert report["peak"] == pytest.approx(255.0 / report["gain"])
    inner = (slice(3, -3), slice(3, -3))  # the box filter's replicated edges blur the ramp
    err_noisy = np.sqrt(np.mean((z - clean)[inner] ** 2))
    err_clean = np.sqrt(np.mean((x - clean)[inner] ** 2))
    assert err_clean < 0.35 * err_noisy
    assert abs(np.mean((x - clean)[inner])) < 1.0  # no bias over the whole range


def test_a_given_gain_is_held_and_the_read_noise_estimated():
    rng = np.random.default_rng(5)
    clean = np.tile(np.linspace(0, 255, 256), (256, 1))
    z = np.clip(np.round(add_poisson(clean, 100.0, 255.0, rng, sigma=8.0)), 0, 255)
    _, report = denoise_poisson(z, lambda y, s: y, 255.0, gain=2.55)
    assert report["gain"] == 2.55 and not report["gain_estimated"]
    assert report["sigma_estimated"] and report["sigma"] == pytest.approx(8.0, rel=0.3)


def test_a_flat_image_without_a_gain_is_a_one_line_error_naming_the_file():
    with pytest.raises(InputError, match=r"flat\.png: cannot estimate the Poisson noise .*give --gain and --sigma"):
        denoise_poisson(np.full((64, 64), 100.0), lambda y, s: y, 255.0, source="flat.png")


def test_add_poisson_mean_and_variance():
    rng = np.random.default_rng(6)
    x = np.full(200_000, 100.0)
    z = add_poisson(x, peak=20.0, top=255.0, rng=rng, sigma=5.0)
    gain = 255.0 / 20.0
    assert z.mean() == pytest.approx(100.0, abs=0.3)
    assert z.var() == pytest.approx(gain * 100.0 + 25.0, rel=0.02)
    counts = add_poisson(x, peak=20.0, top=255.0, rng=rng) / gain
    np.testing.assert_array_equal(counts, np.round(counts))  # whole photon counts times the gain
