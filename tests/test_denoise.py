"""The denoising package: noise estimation, t*, one-step/DDIM/DDPM from an observation, tiling,
colour, salt-and-pepper, model fit, the whole job.

All with dummy models (numpy functions standing in for the network), so the suite runs in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from diffuse_cli import colour
from diffuse_cli import denoising as dn
from diffuse_cli import impulses as imp
from diffuse_cli.config import default_config
from diffuse_cli.denoising import estimate, tiling
from diffuse_cli.enums import Method, NoiseKind
from diffuse_cli.errors import InputError
from diffuse_cli.schedule import Schedule

SCHEDULE = Schedule.create("linear", 1000)
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


# --------------------------------------------------------------------------- dummy models


class DummyModel:
    """``eps = f(x_t, t)`` with the attributes denoise needs; counts calls and remembers tile shapes."""

    def __init__(self, fn, rank=2, channels=1, multiple=4, arch="unet", length=None, domain=None, **config):
        self.fn = fn
        self.schedule = SCHEDULE
        self.rank = rank
        self.size_multiple = multiple if arch != "dense" else length
        self.config = default_config(domain or ("image" if rank == 2 else "audio"), channels, arch=arch,
                                     length=length, **config)
        self.shapes: list[tuple] = []

    def eps(self, x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
        assert x_t.dtype == np.float32 and t.dtype == np.float32 and t.shape == (x_t.shape[0],)
        self.shapes.append(x_t.shape)
        return np.asarray(self.fn(x_t.astype(np.float64), t.astype(np.float64)), dtype=np.float32)


def oracle(x0: np.ndarray, **kw) -> DummyModel:
    """The true eps for a known clean batch element x0: ``eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""

    def fn(x_t, t):
        ab = SCHEDULE.alpha_bar_at(t).reshape((-1,) + (1,) * (x_t.ndim - 1))
        return (x_t - np.sqrt(ab) * x0[None]) / np.sqrt(1 - ab)

    return DummyModel(fn, **kw)


def pointwise(x_t, t):
    """diffusers-style dummy: ``eps = x_t * t / (t + 1)`` (per element, no neighbours)."""
    return x_t * (t / (t + 1)).reshape((-1,) + (1,) * (x_t.ndim - 1))


def local3(x_t, t):
    """A model whose output depends on a 3x3 (or 3-sample) neighbourhood: x_t minus its local mean."""
    rank = x_t.ndim - 2
    pad = np.pad(x_t, [(0, 0)] + [(1, 1)] * rank + [(0, 0)], mode="edge")
    acc = np.zeros_like(x_t)
    offsets = np.stack(np.meshgrid(*[np.arange(3)] * rank, indexing="ij"), -1).reshape(-1, rank)
    for off in offsets:
        sl = (slice(None),) + tuple(slice(o, o + n) for o, n in zip(off, x_t.shape[1:-1])) + (slice(None),)
        acc += pad[sl]
    return 0.5 * (x_t - acc / len(offsets))


def smooth_image(h: int, w: int, c: int = 1, seed: int = 0) -> np.ndarray:
    """A natural-ish image in [-0.8, 0.8]: smooth shading plus a few sharp-edged shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = 0.4 * np.sin(6 * x + 1) * np.cos(4 * y) + 0.2 * np.sin(11 * (x + y))
    for _ in range(6):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        img[y0 : y0 + h // 5, x0 : x0 + w // 6] += rng.uniform(-0.3, 0.3)
    img = np.clip(img, -0.8, 0.8)
    return np.repeat(img[..., None], c, axis=2) * np.linspace(1.0, 0.8, c)


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A texture with no flat region: a random field with the 1/f^1.2 amplitude spectrum typical of
    photos, plus fine stripes, in [-0.7, 0.7]. (A rougher exact-1/f field reads about 17% high at sigma 10:
    its own finest-scale detail is ~6 levels of 8-bit, which no blind estimator can tell from noise.)"""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1
    field_ = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((h, w))) / f**1.2))
    field_ = field_ / np.abs(field_).max()
    y, x = np.mgrid[0:h, 0:w]
    img = 0.5 * field_ + 0.15 * np.sin(x / 3.0 + y / 7.0)
    return (0.7 * img / np.abs(img).max())[..., None]


# --------------------------------------------------------------------------- the reverse process


def test_t_star_matches_sigma():
    for sigma in (10 / 127.5, 25 / 127.5, 50 / 127.5):
        t = dn.t_star(SCHEDULE, sigma)
        assert 0 < t < SCHEDULE.timesteps and t != int(t)
        assert SCHEDULE.t_to_sigma(t) == pytest.approx(sigma, rel=1e-9)


@pytest.mark.parametrize("method", ["onestep", "ddim", "ddpm"])
def test_true_eps_recovers_clean_image(method):
    x0 = smooth_image(32, 32)
    sigma = 25 / 127.5
    y = x0 + sigma * np.random.default_rng(1).standard_normal(x0.shape)
    model = oracle(x0)
    opts = dn.DenoiseOptions(method=method, steps=5, tile=64)
    out = dn.denoise_array(y, model, sigma, opts, np.random.default_rng(0))
    assert out.shape == x0.shape and out.dtype == np.float64  # float64 in, float64 out
    assert np.max(np.abs(out - x0)) < 1e-4
    assert len(model.shapes) == (1 if method == "onestep" else 5)
    assert dn.denoise_array(y.astype(np.float32), model, sigma, opts, None).dtype == np.float32


def test_never_starts_from_pure_noise():
    """The network only ever sees steps at or below t*, never T."""
    seen = []

    def fn(x_t, t):
        seen.extend(t.tolist())
        return pointwise(x_t, t)

    sigma = 15 / 127.5
    dn.denoise_array(smooth_image(16, 16), DummyModel(fn), sigma, dn.DenoiseOptions(method="ddim", steps=4),
                     np.random.default_rng(0))
    t_star = dn.t_star(SCHEDULE, sigma)
    assert max(seen) == pytest.approx(t_star, abs=1e-3) and max(seen) < 100


def test_onestep_reference_values_with_diffusers_dummy():
    """``x0 = (sqrt(ab) y - sqrt(1 - ab) eps) / sqrt(ab)`` with ``eps = x_t t / (t + 1)``, computed by hand."""
    y = np.linspace(-1, 1, 64).reshape(8, 8, 1)
    sigma = 0.2
    t = float(SCHEDULE.sigma_to_t(sigma))
    ab = 1 / (1 + sigma**2)
    x_t = math.sqrt(ab) * y
    expected = (x_t - math.sqrt(1 - ab) * x_t * t / (t + 1)) / math.sqrt(ab)
    out = dn.denoise_array(y, DummyModel(pointwise), sigma, dn.DenoiseOptions(), None)
    np.testing.assert_allclose(out, expected, atol=1e-5)


# Hand-computed schedule for the tests below, independent of diffuse_cli.schedule: linear betas for
# T = 1000 (1e-4 .. 0.02), alpha_bar their cumulative product, log-linear between integer steps.
_HAND_AB = np.concatenate([[1.0], np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))])


def _hand_alpha_bar(t: float) -> float:
    i = min(int(math.floor(t)), 999)
    f = t - i
    return math.exp((1 - f) * math.log(_HAND_AB[i]) + f * math.log(_HAND_AB[i + 1]))


def _hand_t_star(sigma: float) -> float:
    """Bisection for alpha_bar(t) = 1 / (1 + sigma^2)."""
    lo, hi, target = 0.0, 1000.0, 1 / (1 + sigma**2)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _hand_alpha_bar(mid) > target else (lo, mid)
    return (lo + hi) / 2


def _recording(calls: list):
    """A dummy network ``eps = x_t * t / (t + 1)`` that records what it is given."""

    def fn(x_t, t):
        calls.append((x_t.copy(), t.copy()))
        return pointwise(x_t, t)

    return fn


@pytest.mark.parametrize("method", ["onestep", "ddim", "ddpm"])
def test_network_gets_the_scaled_observation_at_t_star(method):
    """The first call sees ``x_t* = sqrt(alpha_bar(t*)) * y`` at ``t*`` (both by hand), whatever the method."""
    y = smooth_image(16, 16) + 0.1 * np.random.default_rng(0).standard_normal((16, 16, 1))
    sigma = 0.2
    calls: list = []
    dn.denoise_array(y, DummyModel(_recording(calls)), sigma, dn.DenoiseOptions(method=method, steps=3),
                     np.random.default_rng(0))
    x_t, t = calls[0]
    t_hand = _hand_t_star(sigma)
    assert t.shape == (1,) and t[0] == pytest.approx(t_hand, abs=1e-4)
    assert 40 < t_hand < 60  # sigma 0.2 of the linear schedule: not 0, not T
    np.testing.assert_allclose(x_t[0], math.sqrt(_hand_alpha_bar(t_hand)) * y, rtol=0, atol=1e-6)
    assert math.sqrt(_hand_alpha_bar(t_hand)) < 0.99  # the scale is not 1: this would notice its loss


def test_ddim_steps_by_hand():
    """DDIM (eta 0) with ``eps = x_t t / (t + 1)`` over 2 steps t* -> t*/2 -> 0, every formula written out:
    ``x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``, ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) eps``."""
    y = np.linspace(-0.9, 0.9, 64).reshape(8, 8, 1)
    sigma = 0.3
    calls: list = []
    out = dn.denoise_array(y, DummyModel(_recording(calls)), sigma,
                           dn.DenoiseOptions(method="ddim", steps=2), None)
    t0 = _hand_t_star(sigma)
    x = math.sqrt(_hand_alpha_bar(t0)) * y
    for k, (t, s) in enumerate([(t0, t0 / 2), (t0 / 2, 0.0)]):
        ab_t, ab_s = _hand_alpha_bar(t), _hand_alpha_bar(s)
        assert calls[k][1][0] == pytest.approx(t, abs=1e-4)
        np.testing.assert_allclose(calls[k][0][0], x, atol=1e-6)  # the state the network sees at step k
        eps = x * t / (t + 1)
        x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        x = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps
    assert len(calls) == 2
    np.testing.assert_allclose(out, x, atol=1e-5)
    assert np.abs(out - y).max() > 1e-2  # the steps changed the input


def test_ddpm_steps_by_hand():
    """Ancestral DDPM with ``eps = x_t t / (t + 1)`` over 2 steps, the noise of step k drawn by position
    (reverse.PositionNoise, tested in test_denoise_correctness.py):
    ``mean = sqrt(ab_s) beta / (1 - ab_t) x0 + sqrt(alpha) (1 - ab_s) / (1 - ab_t) x_t``,
    ``var = beta (1 - ab_s) / (1 - ab_t)`` with ``alpha = ab_t / ab_s``, ``beta = 1 - alpha``."""
    from diffuse_cli.denoising.reverse import PositionNoise

    y = np.linspace(-0.9, 0.9, 64).reshape(8, 8, 1)
    sigma = 0.3
    out = dn.denoise_array(y, DummyModel(pointwise), sigma, dn.DenoiseOptions(method="ddpm", steps=2, seed=7))
    noise = PositionNoise(7)
    t0 = _hand_t_star(sigma)
    x = math.sqrt(_hand_alpha_bar(t0)) * y[None]
    for k, (t, s) in enumerate([(t0, t0 / 2), (t0 / 2, 0.0)]):
        ab_t, ab_s = _hand_alpha_bar(t), _hand_alpha_bar(s)
        eps = x * t / (t + 1)
        x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        alpha = ab_t / ab_s
        beta = 1 - alpha
        mean = math.sqrt(ab_s) * beta / (1 - ab_t) * x0 + math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t) * x
        x = mean + math.sqrt(beta * (1 - ab_s) / (1 - ab_t)) * noise.draw(k, [(0, 0)], 0, x.shape)
    np.testing.assert_allclose(out, x[0], atol=1e-5)
    assert np.abs(out - y).max() > 1e-2


def test_ddpm_honours_seed():
    x = smooth_image(24, 24)
    opts = dn.DenoiseOptions(method="ddpm", steps=4)
    model = DummyModel(pointwise)

    def run(seed):
        return dn.denoise_array(x, model, 0.2, opts, np.random.default_rng(seed))

    np.testing.assert_array_equal(run(3), run(3))
    assert np.max(np.abs(run(3) - run(4))) > 1e-3


def test_ddim_is_deterministic():
    x = smooth_image(24, 24)
    opts = dn.DenoiseOptions(method="ddim", steps=3)
    a = dn.denoise_array(x, DummyModel(pointwise), 0.2, opts, np.random.default_rng(1))
    b = dn.denoise_array(x, DummyModel(pointwise), 0.2, opts, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- tiling and chunking


def test_tiles_blend_to_untiled_for_pointwise_model():
    x = smooth_image(70, 90, c=3)
    big = dn.denoise_array(x, DummyModel(pointwise, channels=3), 0.2, dn.DenoiseOptions(tile=128), None)
    model = DummyModel(pointwise, channels=3)
    tiled = dn.denoise_array(x, model, 0.2, dn.DenoiseOptions(tile=32, overlap=8, batch=3), None)
    np.testing.assert_allclose(tiled, big, atol=1e-6)
    assert all(s[1:3] == (32, 32) and s[0] <= 3 for s in model.shapes)
    assert sum(s[0] for s in model.shapes) == 3 * 4  # 70 rows: 3 tiles, 90 columns: 4 tiles


def test_constant_image_stays_constant_across_tiles():
    x = np.full((50, 61, 1), 0.3)
    out = dn.denoise_array(x, DummyModel(pointwise), 0.1, dn.DenoiseOptions(tile=16, overlap=6), None)
    assert np.ptp(out) < 1e-6


def test_tiles_show_no_seams_with_local_model():
    """A model with a 3x3 receptive field sees the wrong neighbours at a tile's edge. The ramp windows give
    those edge pixels almost no weight, so the tiled output stays within a hair of the one-tile output,
    also in its jumps across tile borders (equal weights, no ramp, would leave errors of about 8e-3)."""
    x = smooth_image(96, 96) + 0.1 * np.random.default_rng(0).standard_normal((96, 96, 1))
    big = dn.denoise_array(x, DummyModel(local3), 0.2, dn.DenoiseOptions(tile=128), None)
    model = DummyModel(local3)
    tiled = dn.denoise_array(x, model, 0.2, dn.DenoiseOptions(tile=32, overlap=16), None)
    assert {s[1:3] for s in model.shapes} == {(32, 32)}  # really tiled
    diff = (tiled - big)[..., 0]
    assert np.abs(diff).max() < 5e-4
    starts = tiling.tile_starts(96, 32, 16)
    border_cols = sorted({s - 1 for s in starts if s > 0} | {s + 31 for s in starts if s + 32 < 96})
    seams = np.abs(np.diff(diff, axis=1))[:, border_cols]  # jump across a border, tiled minus untiled
    assert seams.max() < 5e-4


def test_small_image_is_one_padded_tile():
    model = DummyModel(pointwise, multiple=8)
    x = smooth_image(13, 21)
    out = dn.denoise_array(x, model, 0.2, dn.DenoiseOptions(), None)
    assert out.shape == x.shape
    assert model.shapes == [(1, 16, 24, 1)]


def test_oracle_tiles_equal_untiled_multistep():
    """DDIM run per tile (each tile t* -> 0) then blended equals the whole-image run for a local-free model."""
    x = smooth_image(40, 40)
    a = dn.denoise_array(x, DummyModel(pointwise), 0.3, dn.DenoiseOptions(method="ddim", steps=3, tile=64), None)
    b = dn.denoise_array(x, DummyModel(pointwise), 0.3,
                         dn.DenoiseOptions(method="ddim", steps=3, tile=16, overlap=4), None)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_progress_reports_every_batch():
    calls = []
    dn.denoise_array(smooth_image(64, 64), DummyModel(pointwise), 0.2,
                     dn.DenoiseOptions(tile=16, overlap=4, batch=4), None, progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert calls[-1][0] == total and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == math.ceil(total / 4)


def test_1d_chunking_overlap_add_matches_unchunked():
    rng = np.random.default_rng(0)
    n = 5000
    x = np.stack([np.sin(np.arange(n) / 40), np.cos(np.arange(n) / 17)], -1) + 0.05 * rng.standard_normal((n, 2))
    whole = dn.denoise_array(x, DummyModel(local3, rank=1, multiple=8), 0.1, dn.DenoiseOptions(chunk=8192), None)
    model = DummyModel(local3, rank=1, multiple=8)
    chunked = dn.denoise_array(x, model, 0.1, dn.DenoiseOptions(chunk=512, chunk_overlap=64, batch=4), None)
    assert chunked.shape == x.shape
    assert np.abs(chunked - whole).max() < 2e-3
    assert all(s[1:] == (512, 1) for s in model.shapes)  # 1-channel model: channels cleaned one by one


def test_dense_model_uses_its_fixed_length():
    x = np.sin(np.arange(1000) / 30)[:, None]
    model = DummyModel(pointwise, rank=1, arch="dense", length=128, domain="signal")
    out = dn.denoise_array(x, model, 0.1, dn.DenoiseOptions(), None)
    ref = dn.denoise_array(x, DummyModel(pointwise, rank=1), 0.1, dn.DenoiseOptions(), None)
    assert all(s[1] == 128 for s in model.shapes)
    np.testing.assert_allclose(out, ref, atol=1e-6)


# --------------------------------------------------------------------------- noise estimation


def _noisy(img: np.ndarray, sigma255: float, seed: int) -> np.ndarray:
    """Gaussian noise on the 0-255 scale, then quantised and clipped as an 8-bit file would be."""
    u = (img + 1) * 127.5 + sigma255 * np.random.default_rng(seed).standard_normal(img.shape)
    return np.clip(np.round(u), 0, 255) / 127.5 - 1


@pytest.mark.parametrize("sigma255", [10, 25, 50])
@pytest.mark.parametrize("kind", ["smooth", "textured"])
def test_estimate_sigma_images(kind, sigma255):
    img = smooth_image(192, 192, c=3) if kind == "smooth" else textured_image(192, 192)
    est = dn.estimate_sigma(_noisy(img, sigma255, 7), 2, (-1.0, 1.0)) * 127.5
    assert est == pytest.approx(sigma255, rel=0.15)


def _natural_photos() -> dict[str, np.ndarray]:
    """The three photos of sample_data (in the repository, so every machine tests the same ones), in [-1, 1]."""
    from PIL import Image

    def read(name: str, peak: float) -> np.ndarray:
        return np.asarray(Image.open(SAMPLE_DATA / name), dtype=np.float64) / (peak / 2) - 1

    return {"camera": read("photo-gray.png", 255.0)[..., None],
            "coffee (green)": read("photo-color.png", 255.0)[..., 1:2],
            "astronaut (16-bit)": read("photo-gray16.png", 65535.0)[..., None]}


@pytest.mark.parametrize("sigma255", [10, 25, 50])
@pytest.mark.parametrize("photo", ["camera", "coffee (green)", "astronaut (16-bit)"])
def test_estimate_sigma_natural_photos(photo, sigma255):
    image = _natural_photos()[photo]
    assert image.shape == (256, 256, 1)
    est = dn.estimate_sigma(_noisy(image, sigma255, 3), 2, (-1.0, 1.0)) * 127.5
    assert est == pytest.approx(sigma255, rel=0.15)


@pytest.mark.parametrize("sigma255", [10, 25, 50])
@pytest.mark.parametrize("freq", [50.0, 440.0, 2000.0])
def test_estimate_sigma_sine_plus_white_noise(sigma255, freq):
    n = 32000
    x = 0.8 * np.sin(2 * np.pi * freq * np.arange(n) / 16000)
    sigma = sigma255 / 127.5
    y = x + sigma * np.random.default_rng(int(freq)).standard_normal(n)
    assert dn.estimate_sigma(y[:, None], 1) == pytest.approx(sigma, rel=0.15)


def test_estimate_sigma_audio_with_silence():
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    burst = (t > 1.2) & (t < 1.8)
    noisy_everywhere = 0.5 * np.sin(2 * np.pi * 300 * t) * burst + 0.03 * rng.standard_normal(t.size)
    assert dn.estimate_sigma(noisy_everywhere[:, None], 1) == pytest.approx(0.03, rel=0.15)
    gated = np.where(burst, 0.5 * np.sin(2 * np.pi * 300 * t) + 0.03 * rng.standard_normal(t.size), 0.0)
    assert dn.estimate_sigma(gated[:, None], 1) == pytest.approx(0.03, rel=0.15)
    assert dn.estimate_sigma(np.zeros((1000, 1)), 1) == 0.0


def test_estimate_sigma_ignores_a_straight_time_column():
    """A time column next to a measurement (noise.axis_columns) has no noise; the measurement keeps its own."""
    rng = np.random.default_rng(0)
    n = 4000
    time = 1000.0 + 30.0 * np.arange(n)
    value = np.sin(np.arange(n) / 50) + 0.1 * rng.standard_normal(n)
    sigmas = estimate.channel_sigmas(np.stack([time, value], -1)[None], 1, None)
    assert sigmas[0] == 0.0 and sigmas[1] == pytest.approx(0.1, rel=0.15)
    # Windows of a long input: the column is an axis only when it is straight in every window.
    windows = np.stack([np.stack([time, value], -1)[a : a + 1000] for a in (0, 1500, 3000)])
    assert estimate.channel_sigmas(windows, 1, None)[0] == 0.0
    bent = windows.copy()
    bent[2, :, 0] += rng.normal(0, 40, 1000)  # a noisy measurement in the last window, not a time axis
    assert estimate.channel_sigmas(bent, 1, None)[0] > 0.0


# --------------------------------------------------------------------------- colour


def test_luma_is_the_first_opponent_channel_and_the_mean_of_rgb():
    rgb = np.random.default_rng(0).uniform(-1, 1, (5, 7, 3))
    np.testing.assert_allclose(colour.luma(rgb)[..., 0], (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / 3, atol=1e-15)
    np.testing.assert_allclose(colour.luma(rgb), colour.to_opponent(rgb)[..., :1], rtol=0, atol=1e-15)
    assert colour.luma(rgb.astype(np.float32)).dtype == np.float32 and colour.luma(rgb).shape == (5, 7, 1)
    gray = np.repeat(rgb[..., :1], 3, axis=-1)  # a gray pixel is its own luma, with no chroma
    np.testing.assert_allclose(colour.luma(gray), gray[..., :1], atol=1e-15)
    np.testing.assert_allclose(colour.to_opponent(gray)[..., 1:], 0.0, atol=1e-15)


def test_opponent_transform_round_trip_and_noise_gains():
    rgb = np.random.default_rng(1).uniform(-1, 1, (4, 6, 3))
    np.testing.assert_allclose(colour.from_opponent(colour.to_opponent(rgb)), rgb, atol=1e-14)
    rows = colour.OPPONENT
    gram = rows @ rows.T  # orthogonal rows: i.i.d. RGB noise stays independent across opponent channels
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-15)
    np.testing.assert_allclose(colour.OPPONENT_NOISE_GAIN, [math.sqrt(1 / 3), math.sqrt(1 / 2), math.sqrt(3 / 8)])
    np.testing.assert_allclose(np.abs(rows).sum(axis=1), 1.0)  # each channel stays within the RGB range


# --------------------------------------------------------------------------- salt-and-pepper


def _salt_pepper(img: np.ndarray, amount: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = img.copy()
    hit = rng.random(img.shape[:-1]) < amount
    out[hit] = np.where(rng.random(hit.sum()) < 0.5, -1.0, 1.0)[:, None]
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(4.0 / np.mean((a - b) ** 2))


def _median3(x: np.ndarray) -> np.ndarray:
    pad = np.pad(x, [(1, 1), (1, 1), (0, 0)], mode="reflect")
    stack = [pad[i : i + x.shape[0], j : j + x.shape[1]] for i in range(3) for j in range(3)]
    return np.median(np.stack(stack), axis=0)


def test_salt_pepper_fill_beats_median_filter():
    clean = smooth_image(128, 128, c=3)
    noisy = _salt_pepper(clean, 0.1, 0)
    mask = imp.detect_impulses(noisy, (-1.0, 1.0))
    assert abs(mask[..., 0].mean() - 0.1) < 0.02
    filled = imp.fill_impulses(noisy, mask)
    assert _psnr(clean, filled) > _psnr(clean, _median3(noisy)) + 3
    assert _psnr(clean, filled) > 35


def test_fill_handles_dense_impulse_clusters():
    x = np.zeros((20, 20, 1))
    mask = np.zeros_like(x, dtype=bool)
    mask[2:15, 2:15] = True
    x[mask] = 1.0
    filled = imp.fill_impulses(x, mask)
    np.testing.assert_allclose(filled, 0.0)


def test_auto_detects_salt_pepper_vs_gaussian():
    clean = smooth_image(128, 128)
    sp, count = imp.looks_salt_pepper(_salt_pepper(clean, 0.05, 1), (-1.0, 1.0))
    assert sp and count > 0.04 * clean.size
    for sigma255 in (10, 25, 50):
        for img in (clean, textured_image(128, 128), clean - 0.6):  # clean - 0.6: dark, so noise clips
            sp, _ = imp.looks_salt_pepper(_noisy(img, sigma255, 2), (-1.0, 1.0))
            assert not sp


def test_impulses_in_1d():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(4000) / 50)[:, None] * 0.5
    noisy = x.copy()
    hit = rng.random(4000) < 0.05
    noisy[hit, 0] = rng.choice([-1.0, 1.0], hit.sum())
    mask = imp.detect_impulses(noisy, (-1.0, 1.0))
    filled = imp.fill_impulses(noisy, mask)
    assert np.abs(filled - x).max() < 0.05


# --------------------------------------------------------------------------- models vs media


@dataclass
class FakeMedia:
    """Just the attributes denoise reads (io.Media has the same names)."""

    domain: str
    samples: np.ndarray
    scale: float = 1.0
    alpha: np.ndarray | None = None
    source: str = "x"
    notes: list = field(default_factory=list)

    @property
    def value_range(self):
        return (-1.0, 1.0) if self.domain in ("image", "audio") else None

    def with_samples(self, samples):
        import dataclasses

        return dataclasses.replace(self, samples=samples, notes=list(self.notes))


def test_check_model_fits_messages():
    gray = default_config("image", 1)
    rgb = FakeMedia("image", np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match=r"3-channel image model.*gray \(1-channel\).*1-channel image model"):
        dn.check_model_fits(default_config("image", 3), FakeMedia("image", np.zeros((8, 8, 1))))
    assert "opponent" in dn.check_model_fits(gray, rgb, "M")[0]
    with pytest.raises(InputError, match="audio model cannot clean the image"):
        dn.check_model_fits(default_config("audio", 1), rgb)
    with pytest.raises(InputError, match="image model cannot clean audio"):
        dn.check_model_fits(gray, FakeMedia("audio", np.zeros((100, 1))))
    with pytest.raises(InputError, match="shorter than the dense model's fixed length 256"):
        dn.check_model_fits(default_config("signal", 1, arch="dense", length=256),
                            FakeMedia("signal", np.zeros((100, 1))))
    with pytest.raises(InputError, match="2-channel audio model cannot clean 3-channel"):
        dn.check_model_fits(default_config("audio", 2), FakeMedia("audio", np.zeros((9, 3))))
    notes = dn.check_model_fits(default_config("audio", 1), FakeMedia("signal", np.zeros((100, 2))))
    assert notes and "1D" in notes[0]
    assert dn.check_model_fits(gray, FakeMedia("image", np.zeros((8, 8, 1)))) == []
    with pytest.raises(InputError, match="1-channel image model cannot clean this 2-channel image") as err:
        dn.check_model_fits(gray, FakeMedia("image", np.zeros((8, 8, 2))))
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the whole job


def test_denoise_media_image_units_and_report():
    clean = smooth_image(40, 40)
    noisy = _noisy(clean, 25, 0)
    alpha = np.full((40, 40), 200, dtype=np.uint8)
    media = FakeMedia("image", noisy.astype(np.float32), scale=127.5, alpha=alpha)
    seen = []
    model = oracle(clean, multiple=8)
    out, info = dn.denoise_media(media, model, dn.DenoiseOptions(sigma=25, tile=64),
                                 progress=lambda d, t: seen.append((d, t)))
    assert info["sigma"] == pytest.approx(25) and info["sigma_model"] == pytest.approx(25 / 127.5)
    assert info["sigma_estimated"] is False and info["method"] == "onestep" and info["steps"] == 1
    assert info["t_star"] == pytest.approx(float(SCHEDULE.sigma_to_t(25 / 127.5)))
    assert info["noise_kind_used"] == "gaussian" and info["impulses"] == 0
    assert out.alpha is alpha and out.samples.dtype == np.float32
    assert out.samples.min() >= -1 and out.samples.max() <= 1
    np.testing.assert_allclose(out.samples, clean, atol=1e-4)
    assert seen and seen[-1][0] == seen[-1][1]

    _, info = dn.denoise_media(media, model, dn.DenoiseOptions(tile=64))
    assert info["sigma_estimated"] is True and info["sigma"] == pytest.approx(25, rel=0.15)


@pytest.mark.parametrize("sigma", [0.0, -3.0, float("nan"), 1e9])
def test_bad_sigma_is_one_line_input_error(sigma):
    media = FakeMedia("image", np.zeros((16, 16, 1), dtype=np.float32), scale=127.5)
    with pytest.raises(InputError) as err:
        dn.denoise_media(media, DummyModel(pointwise), dn.DenoiseOptions(sigma=sigma))
    assert "--sigma" in str(err.value) and "\n" not in str(err.value)


def test_denoise_media_salt_pepper_and_auto():
    clean = smooth_image(64, 64)
    noisy = _salt_pepper(clean, 0.1, 5).astype(np.float32)
    media = FakeMedia("image", noisy, scale=127.5)
    model = DummyModel(pointwise)
    for kind in ("salt-pepper", "auto"):
        out, info = dn.denoise_media(media, model, dn.DenoiseOptions(noise_kind=kind))
        assert info["noise_kind_used"] == "salt-pepper"
        assert info["impulses"] > 0.08 * clean.size
        assert _psnr(clean, out.samples) > 30
    gauss = FakeMedia("image", _noisy(clean, 25, 1).astype(np.float32), scale=127.5)
    _, info = dn.denoise_media(gauss, model, dn.DenoiseOptions(noise_kind="auto"))
    assert info["noise_kind_used"] == "gaussian"


def test_denoise_media_signal_is_normalised_per_channel():
    rng = np.random.default_rng(0)
    n = 4096
    clean = np.stack([1000 + 50 * np.sin(np.arange(n) / 40), 0.01 * np.cos(np.arange(n) / 25)], -1)
    noisy = clean + np.array([5.0, 0.001]) * rng.standard_normal((n, 2))
    media = FakeMedia("signal", noisy)
    calls = []

    def fn(x_t, t):  # record the scale the network sees: robust-normalised, so O(1) for both channels
        calls.append(float(np.std(x_t)))
        return np.zeros_like(x_t)

    model = DummyModel(fn, rank=1, domain="signal")
    out, info = dn.denoise_media(media, model, dn.DenoiseOptions())
    assert out.samples.shape == noisy.shape and out.samples.dtype == np.float64
    assert all(0.2 < c < 5 for c in calls)
    assert info["sigma_per_channel"][0] == pytest.approx(5.0, rel=0.15)
    assert info["sigma_per_channel"][1] == pytest.approx(0.001, rel=0.15)
    # eps = 0 means x0_hat = y: the signal comes back exactly, in its own units.
    np.testing.assert_allclose(out.samples, noisy, rtol=1e-9, atol=1e-9)


def test_gray_model_on_colour_goes_through_the_opponent_transform():
    rng = np.random.default_rng(3)
    clean = np.concatenate([smooth_image(48, 48, seed=k) for k in range(3)], -1) * 0.6
    sigma = np.array([20.0, 20.0, 20.0])  # file units (0-255 scale), i.i.d. over RGB
    noisy = (clean + sigma / 127.5 * rng.standard_normal(clean.shape)).astype(np.float32)
    media = FakeMedia("image", noisy, scale=127.5)
    seen = []

    def fn(x_t, t):  # eps = 0: x0_hat = y, so only the transform and its inverse act on the data
        seen.append(x_t.shape[-1])
        return np.zeros_like(x_t)

    out, info = dn.denoise_media(media, DummyModel(fn, channels=1, multiple=8), dn.DenoiseOptions(tile=64))
    assert set(seen) == {1}  # the gray network only ever sees one channel
    np.testing.assert_allclose(out.samples, np.clip(noisy, -1, 1), atol=1e-5)
    # Each opponent channel's estimate, reported in RGB file units, is the RGB noise std.
    assert info["sigma_per_channel"] == pytest.approx(list(sigma), rel=0.15)
    assert any("opponent" in n for n in info["notes"])
    # The transform keeps i.i.d. noise independent: channel noise stds follow the row norms.
    opp = colour.to_opponent((noisy - clean).reshape(-1, 3))
    np.testing.assert_allclose(opp.std(axis=0), 20 / 127.5 * colour.OPPONENT_NOISE_GAIN, rtol=0.05)
    assert abs(np.corrcoef(opp.T)[0, 1]) < 0.05


def test_audio_is_resampled_to_the_model_rate_and_back():
    n, rate = 44100, 44100
    tt = np.arange(n) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * tt))[:, None].astype(np.float32)
    media = FakeMedia("audio", x)
    media.sample_rate = rate
    lengths = []

    def fn(x_t, t):
        lengths.append(x_t.shape[1])
        return np.zeros_like(x_t)

    model = DummyModel(fn, rank=1, domain="audio", sample_rate=16000)
    out, info = dn.denoise_media(media, model, dn.DenoiseOptions(sigma=0.01))
    assert out.samples.shape == x.shape  # same sample count as the input
    assert sum(lengths) < 0.5 * n  # the network ran at 16 kHz, not 44.1 kHz
    # A 440 Hz tone is inside the model's band: it survives the round trip.
    np.testing.assert_allclose(out.samples[1000:-1000], x[1000:-1000], atol=2e-3)
    assert any("44100 Hz -> 16000 Hz" in note for note in info["notes"])


def test_validate_options():
    for bad, option in (({"steps": 0}, "--steps"), ({"tile": 4}, "--tile"), ({"overlap": 600}, "--overlap"),
                        ({"overlap": -1}, "--overlap"), ({"batch": 0}, "--batch"), ({"sigma": -1.0}, "--sigma"),
                        ({"sigma": float("inf")}, "--sigma"), ({"chunk": 8}, "chunk"),
                        ({"chunk_overlap": 16384}, "chunk")):
        with pytest.raises(InputError, match=option):
            dn.validate_options(dn.DenoiseOptions(**bad))
    dn.validate_options(dn.DenoiseOptions())


def test_choice_options_are_enums():
    """The choices are Enums (the CLI shows and checks them); plain strings are accepted and converted."""
    opts = dn.DenoiseOptions(method="ddim", noise_kind="salt-pepper")
    assert opts.method is Method.ddim and opts.noise_kind is NoiseKind.salt_pepper
    with pytest.raises(ValueError, match="euler"):
        dn.DenoiseOptions(method="euler")
    with pytest.raises(ValueError, match="pink"):
        dn.DenoiseOptions(noise_kind="pink")
    assert [m.value for m in Method] == ["onestep", "ddim", "ddpm"]
    assert [k.value for k in NoiseKind] == ["gaussian", "salt-pepper", "poisson", "auto"]
