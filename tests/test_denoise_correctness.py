"""Correct numbers for every input: sigma through resampling, time columns, the reported sigma, DDPM noise
that does not depend on the tiling, the x0 clamp for images, and audio above the model's band.

Dummy models (numpy functions) except where a test says it uses a bundled model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from diffuse_cli import denoising as dn
from diffuse_cli import resample
from diffuse_cli import schedule as sch
from diffuse_cli.colour import from_opponent, to_opponent
from diffuse_cli.denoising import reverse, tiling
from diffuse_cli.io import Media
from tests.test_denoise import SCHEDULE, DummyModel, pointwise, smooth_image

ROOT = Path(__file__).resolve().parent.parent


def _audio(x: np.ndarray, rate: int) -> Media:
    x = np.asarray(x, dtype=np.float32)
    return Media(domain="audio", samples=x[:, None] if x.ndim == 1 else x, fmt="wav", sample_rate=rate,
                 subtype="FLOAT")


def _recorder(ts: list, fn=None):
    """A dummy network that records the steps it is called at (and returns ``fn``, default eps = 0)."""

    def model_fn(x_t, t):
        ts.extend(t.tolist())
        return np.zeros_like(x_t) if fn is None else fn(x_t, t)

    return model_fn


def _snr_db(clean: np.ndarray, x: np.ndarray) -> float:
    return 10 * math.log10(np.sum(clean**2) / np.sum((x - clean) ** 2))


def _zero_x0(x_t, t):
    """The denoiser of pure noise: ``x0_hat = 0``, i.e. ``eps = x_t / sqrt(1 - ab)``."""
    ab = SCHEDULE.alpha_bar_at(t).reshape((-1,) + (1,) * (x_t.ndim - 1))
    return x_t / np.sqrt(1 - ab)


# --------------------------------------------------------------------------- 3: --sigma through resampling


@pytest.mark.parametrize(("rate", "model_rate"), [(44100, 16000), (48000, 16000), (8000, 16000)])
def test_noise_std_factor_matches_soxr(rate, model_rate):
    """White noise of std s at ``rate``, resampled by soxr: std s * sqrt(min(1, model_rate / rate))."""
    s = 0.05
    noise = s * np.random.default_rng(0).standard_normal((rate * 4, 1))
    measured = float(np.std(resample.resample(noise, rate, model_rate)))
    factor = resample.noise_std_factor(rate, model_rate)
    assert factor == pytest.approx(math.sqrt(min(1.0, model_rate / rate)))
    assert measured == pytest.approx(s * factor, rel=0.04)  # soxr's roll-off near Nyquist: ~2.5% less power
    if rate > model_rate:  # the noise density inside the pass band is exactly the ideal low-pass's
        z = resample.resample(noise, rate, model_rate)[:, 0]
        frames = z[: len(z) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        psd = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) / np.sum(np.hanning(512) ** 2)
        band = slice(10, 200)  # 300 Hz .. 6.2 kHz
        assert math.sqrt(np.mean(psd[band])) == pytest.approx(s * factor, rel=0.02)


def test_given_sigma_is_converted_through_resampling_and_reported_in_file_units():
    rate, s = 44100, 0.05
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    ts: list = []
    model = DummyModel(_recorder(ts), rank=1, domain="audio", sample_rate=16000)
    _, info = dn.denoise_media(_audio(tone, rate), model, dn.DenoiseOptions(sigma=s))
    expected_model_sigma = s * math.sqrt(16000 / rate)
    assert set(np.round(ts, 6)) == {round(dn.t_star(SCHEDULE, expected_model_sigma), 6)}
    assert info["sigma"] == pytest.approx(s) and info["sigma_model"] == pytest.approx(expected_model_sigma)


@pytest.mark.parametrize("rate", [44100, 8000])
def test_estimated_sigma_of_resampled_audio_is_in_file_units(rate):
    """The estimate is the file's noise std, whatever the model's rate (8 kHz: the upsampled signal has no
    detail above 4 kHz for the estimate to see, so it must be estimated at the file's rate)."""
    s = 0.02
    t = np.arange(2 * rate) / rate
    noisy = 0.3 * np.sin(2 * np.pi * 300 * t) + s * np.random.default_rng(1).standard_normal(t.size)
    ts: list = []
    model = DummyModel(_recorder(ts), rank=1, domain="audio", sample_rate=16000)
    _, info = dn.denoise_media(_audio(noisy, rate), model, dn.DenoiseOptions())
    factor = math.sqrt(min(1.0, 16000 / rate))
    assert info["sigma"] == pytest.approx(s, rel=0.15)
    assert info["sigma_model"] == pytest.approx(info["sigma"] * factor, rel=1e-9)
    assert ts and min(ts) == pytest.approx(dn.t_star(SCHEDULE, info["sigma_model"]), abs=1e-3)


# --------------------------------------------------------------------------- 4 and 5: time columns, the reported sigma


def _signal(columns: list[np.ndarray]) -> Media:
    return Media(domain="signal", samples=np.stack(columns, -1).astype(np.float64), fmt="csv", columns=None)


@pytest.mark.parametrize("sigma", [None, 0.2])
def test_index_column_is_never_denoised(sigma):
    """``i,value``: the index column comes back bit-exact, with or without --sigma; the report says so."""
    n = 3000
    rng = np.random.default_rng(0)
    index = np.arange(n, dtype=np.float64)
    value = np.sin(np.arange(n) / 40) + 0.2 * rng.standard_normal(n)
    model = DummyModel(_zero_x0, rank=1, domain="signal")
    out, info = dn.denoise_media(_signal([index, value]), model, dn.DenoiseOptions(sigma=sigma))
    np.testing.assert_array_equal(out.samples[:, 0], index)
    assert np.abs(out.samples[:, 1] - value).max() > 0.1  # the value column was cleaned
    assert info["sigma_per_channel"][0] is None
    assert info["sigma_per_channel"][1] == pytest.approx(0.2, rel=0.15)
    assert info["sigma"] == pytest.approx(info["sigma_per_channel"][1])


@pytest.mark.parametrize("sigma", [None, 0.2])
def test_index_column_is_kept_by_a_two_channel_model(sigma):
    """A 2-channel model cleans both columns together; the index column is put back, and its units (sample
    numbers) play no part in converting --sigma or in the reported sigma."""
    n = 3000
    index = np.arange(n, dtype=np.float64)
    value = np.sin(np.arange(n) / 40) + 0.2 * np.random.default_rng(1).standard_normal(n)
    model = DummyModel(_zero_x0, rank=1, domain="signal", channels=2)
    out, info = dn.denoise_media(_signal([index, value]), model, dn.DenoiseOptions(sigma=sigma))
    np.testing.assert_array_equal(out.samples[:, 0], index)
    assert np.abs(out.samples[:, 1] - value).max() > 0.5  # x0 = 0: the value column was cleaned (to its median)
    assert info["sigma"] == pytest.approx(0.2, rel=0.15)


def test_headline_sigma_skips_a_rounded_time_column():
    """An ECG-like CSV: time rounded to 4 decimals (not an exact straight line, so estimated ~1e-6 and left
    alone) and a value column with noise 0.2: the headline sigma is the value column's, not their median."""
    n = 3600
    time = np.round(np.arange(n) / 360, 4)
    value = np.sin(np.arange(n) / 30) + 0.2 * np.random.default_rng(2).standard_normal(n)
    model = DummyModel(_zero_x0, rank=1, domain="signal")
    out, info = dn.denoise_media(_signal([time, value]), model, dn.DenoiseOptions())
    np.testing.assert_array_equal(out.samples[:, 0], time)
    assert info["sigma"] == pytest.approx(0.2, rel=0.15)
    assert info["sigma_per_channel"][0] is None and info["sigma_per_channel"][1] == pytest.approx(info["sigma"])
    assert info["sigma_model"] > 0.05  # the value column's noise in model units, not a median with ~0


def test_headline_sigma_of_a_colour_image_is_the_luma_one():
    """JPEG-like: i.i.d. RGB noise of std 20 whose chroma was then smoothed away (4x4 blocks). The luma
    channel carries the noise (its estimate, in RGB-equivalent file units, is 20); the chroma estimates are
    far smaller and must not become the headline."""
    rng = np.random.default_rng(4)
    clean = np.concatenate([smooth_image(96, 96, seed=k) for k in range(3)], -1) * 0.6
    opp = to_opponent(clean + 20 / 127.5 * rng.standard_normal(clean.shape))
    for c in (1, 2):  # chroma: 4x4 block means, as JPEG's subsampling and quantisation do
        blocks = opp[..., c].reshape(24, 4, 24, 4).mean(axis=(1, 3))
        opp[..., c] = np.repeat(np.repeat(blocks, 4, 0), 4, 1)
    media = Media(domain="image", samples=from_opponent(opp).astype(np.float32), fmt="png", scale=127.5)
    model = DummyModel(lambda x_t, t: np.zeros_like(x_t), channels=1, multiple=8)
    _, info = dn.denoise_media(media, model, dn.DenoiseOptions(tile=128))
    luma = info["sigma_per_channel"][0]
    assert luma == pytest.approx(20, rel=0.15)
    assert info["sigma"] == pytest.approx(luma)
    assert info["sigma_channels"] == ["luma", "red-blue", "magenta-green"]
    chroma = [s for s in info["sigma_per_channel"][1:] if s is not None]
    assert all(s < 5 for s in chroma)


# --------------------------------------------------------------------------- 8: DDPM noise independent of tiling


def test_position_noise_is_standard_normal_and_the_same_wherever_a_tile_lies():
    noise = reverse.PositionNoise(seed=5)
    whole = noise.draw(step=2, origins=[(0, 0)], channel=0, shape=(1, 64, 80, 2))[0]
    part = noise.draw(step=2, origins=[(10, 17), (30, 0)], channel=0, shape=(2, 20, 30, 2))
    np.testing.assert_array_equal(part[0], whole[10:30, 17:47])
    np.testing.assert_array_equal(part[1], whole[30:50, 0:30])
    big = noise.draw(step=0, origins=[(0, 0)], channel=0, shape=(1, 512, 512, 1)).ravel()
    assert abs(big.mean()) < 0.01 and big.std() == pytest.approx(1.0, abs=0.01)
    for q, z in ((0.1, -1.2815515655446004), (0.5, 0.0), (0.975, 1.959963984540054)):
        assert np.quantile(big, q) == pytest.approx(z, abs=0.02)
    img = big.reshape(512, 512)
    for a, b in ((img[:, 1:], img[:, :-1]), (img[1:], img[:-1])):  # neighbours are independent
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    other = [noise.draw(step=3, origins=[(0, 0)], channel=0, shape=(1, 64, 80, 2))[0],  # another step
             noise.draw(step=2, origins=[(0, 0)], channel=1, shape=(1, 64, 80, 2))[0],  # another channel group
             reverse.PositionNoise(seed=6).draw(step=2, origins=[(0, 0)], channel=0, shape=(1, 64, 80, 2))[0]]
    for o in other:
        assert abs(np.corrcoef(o.ravel(), whole.ravel())[0, 1]) < 0.03
    line = noise.draw(step=1, origins=[(100,)], channel=0, shape=(1, 50, 1))
    np.testing.assert_array_equal(line[0, 10:], noise.draw(step=1, origins=[(110,)], channel=0, shape=(1, 40, 1))[0])


def test_ddpm_same_seed_same_output_for_any_tile_and_batch():
    x = smooth_image(70, 90) + 0.1 * np.random.default_rng(0).standard_normal((70, 90, 1))
    media = Media(domain="image", samples=x.astype(np.float32), fmt="png", scale=127.5)
    outs = []
    for tile, overlap, batch in ((128, 32, 8), (32, 8, 1), (24, 6, 5)):
        model = DummyModel(pointwise, multiple=4)
        out, _ = dn.denoise_media(media, model, dn.DenoiseOptions(sigma=20, method="ddpm", steps=4, seed=9,
                                                                  tile=tile, overlap=overlap, batch=batch))
        outs.append(out.samples)
        assert len({s[1:3] for s in model.shapes}) == 1 and len(model.shapes) >= (1 if tile == 128 else 4)
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(outs[2], outs[0], rtol=0, atol=1e-6)
    other_seed, _ = dn.denoise_media(media, DummyModel(pointwise), dn.DenoiseOptions(sigma=20, method="ddpm",
                                                                                      steps=4, seed=10))
    assert np.abs(other_seed.samples - outs[0]).max() > 1e-2


def test_ddpm_overlaps_have_the_noise_of_interiors():
    """A flat input and eps = 0: the output is the DDPM noise itself. Averaging independent draws in the
    overlaps would leave them about 20% smoother than the tile interiors."""
    x = np.zeros((96, 384, 1))
    out = dn.denoise_array(x, DummyModel(lambda x_t, t: np.zeros_like(x_t)), 0.3,
                           dn.DenoiseOptions(method="ddpm", steps=3, tile=64, overlap=32, seed=1), None)
    starts = tiling.tile_starts(384, 64, 32)
    assert len(starts) > 8
    overlap_cols = sorted({c for a, b in zip(starts, starts[1:]) for c in range(b, a + 64)})
    interior_cols = sorted(set(range(384)) - set(overlap_cols))
    assert len(interior_cols) > 20
    ratio = out[:, overlap_cols].std() / out[:, interior_cols].std()
    assert ratio == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------- 9: x0 clamp for images


def test_clip_eps_formula():
    """``x0 = clip(predict_x0(x_t, eps, ab), lo, hi)``, ``eps' = (x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""
    rng = np.random.default_rng(0)
    x_t, eps, ab = rng.uniform(-2, 2, (4, 8, 8, 1)), rng.standard_normal((4, 8, 8, 1)), 0.7
    new = sch.clip_eps(x_t, eps, ab, -1.0, 1.0)
    x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    clipped = np.clip(x0, -1, 1)
    np.testing.assert_allclose(sch.predict_x0(x_t, new, ab), clipped, atol=1e-12)
    np.testing.assert_allclose(new, (x_t - math.sqrt(ab) * clipped) / math.sqrt(1 - ab), atol=1e-12)
    inside = np.abs(x0) <= 1
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(new[inside], eps[inside])  # untouched where x0 is in range: bit-identical


def _overshoot(x_t, t):
    """x0_hat = 1.6 x_t / sqrt(ab) above t = 60 (overshoots near +-1), x0_hat = 0.5 x_t / sqrt(ab) below:
    ``eps = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab)``. From sigma 0.3 (t* = 88.6) in 2 steps: 1.6, then 0.5."""
    ab = SCHEDULE.alpha_bar_at(t).reshape((-1,) + (1,) * (x_t.ndim - 1))
    gain = np.where(t > 60, 1.6, 0.5).reshape(ab.shape)
    return (x_t - gain * x_t) / np.sqrt(1 - ab)


def _hand_ddim(y: np.ndarray, sigma: float, steps: int, clip: bool) -> np.ndarray:
    t0 = float(SCHEDULE.sigma_to_t(sigma))
    seq = np.linspace(t0, 0, steps + 1)
    x = math.sqrt(float(SCHEDULE.alpha_bar_at(t0))) * y
    for t, s in zip(seq[:-1], seq[1:]):
        ab_t, ab_s = float(SCHEDULE.alpha_bar_at(t)), float(SCHEDULE.alpha_bar_at(s))
        x0 = (1.6 if t > 60 else 0.5) * x / math.sqrt(ab_t)
        x0 = np.clip(x0, -1, 1) if clip else x0
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        x = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps
    return x


def test_ddim_clamps_the_x0_estimate_of_images():
    y = np.linspace(-0.95, 0.95, 64).reshape(8, 8, 1)
    sigma = 0.3
    media = Media(domain="image", samples=y.astype(np.float32), fmt="png", scale=127.5)
    out, _ = dn.denoise_media(media, DummyModel(_overshoot), dn.DenoiseOptions(sigma=sigma * 127.5, method="ddim",
                                                                                steps=2))
    clamped, free = _hand_ddim(y, sigma, 2, True), _hand_ddim(y, sigma, 2, False)
    assert np.abs(clamped - np.clip(free, -1, 1)).max() > 0.05  # the clamp changes the result
    np.testing.assert_allclose(out.samples, clamped, atol=2e-5)
    # Signals have no known range: no clamp.
    free_out = dn.denoise_array(y, DummyModel(_overshoot), sigma, dn.DenoiseOptions(method="ddim", steps=2), None)
    np.testing.assert_allclose(free_out, free, atol=1e-5)
    # One step is the posterior mean: never clamped by the reverse process.
    one = reverse.reverse_from_observation(DummyModel(_overshoot), y[None], float(SCHEDULE.sigma_to_t(sigma)),
                                           "onestep", 1, None, data_range=(-1.0, 1.0))
    assert one.max() > 1.2


def test_ddpm_clamps_the_x0_estimate_of_images():
    """DDPM's posterior mean is taken with the clamped x0 (the noise is the same with and without)."""
    y = np.linspace(-0.95, 0.95, 64).reshape(8, 8, 1)
    t0 = float(SCHEDULE.sigma_to_t(0.3))
    run = {}
    for key, data_range in (("clamped", (-1.0, 1.0)), ("free", None)):
        run[key] = reverse.reverse_from_observation(DummyModel(_overshoot), y[None], t0, "ddpm", 2,
                                                    reverse.PositionNoise(3), origins=[(0, 0)],
                                                    data_range=data_range)[0]
    noise = reverse.PositionNoise(3).draw(0, [(0, 0)], 0, (1, 8, 8, 1))[0]
    ab_t, ab_s = float(SCHEDULE.alpha_bar_at(t0)), float(SCHEDULE.alpha_bar_at(t0 / 2))
    x = math.sqrt(ab_t) * y
    x0 = np.clip(1.6 * x / math.sqrt(ab_t), -1, 1)
    alpha = ab_t / ab_s
    mean = math.sqrt(ab_s) * (1 - alpha) / (1 - ab_t) * x0 + math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t) * x
    x_s = mean + math.sqrt((1 - alpha) * (1 - ab_s) / (1 - ab_t)) * noise
    last = 0.5 * x_s / math.sqrt(ab_s)  # the last step lands on x0_hat(x_s) (gain 0.5 at t*/2 = 44), in range
    np.testing.assert_allclose(run["clamped"], last, atol=1e-5)
    assert np.abs(last).max() < 1 and np.abs(run["clamped"] - run["free"]).max() > 0.05


# --------------------------------------------------------------------------- 16: audio above the model's band


def test_tone_above_the_models_band_survives():
    """A 12 kHz tone at 48 kHz is above the 16 kHz model's band: kept (was deleted), with a note giving the
    share of the energy above 8 kHz; with noise (an alarm tone at 6 dB SNR), the band above is cleaned too.
    The split and the high-band cleaner themselves are tested in test_fullband.py."""
    rate = 48000
    tone = 0.5 * np.sin(2 * np.pi * 12000 * np.arange(rate) / rate)
    model = DummyModel(_zero_x0, rank=1, domain="audio", sample_rate=16000)
    out, info = dn.denoise_media(_audio(tone, rate), model, dn.DenoiseOptions())
    assert _snr_db(tone, out.samples[:, 0].astype(np.float64)) > 20
    # No noise: the model's band (nothing) is left alone and the two bands sum back to the input.
    np.testing.assert_allclose(out.samples[:, 0], tone, rtol=0, atol=1e-5)
    assert any("100 % of the energy is above 8000 Hz" in n and "spectral shrinkage" in n for n in info["notes"])
    assert info["energy_above_band"] == pytest.approx(1.0, abs=1e-3)
    noisy = tone + 0.25 * np.random.default_rng(3).standard_normal(rate)  # an alarm tone at 6 dB SNR
    out, info = dn.denoise_media(_audio(noisy, rate), model, dn.DenoiseOptions())
    assert _snr_db(tone, out.samples[:, 0].astype(np.float64)) > _snr_db(tone, noisy) + 6
    assert info["sigma"] == pytest.approx(0.25, rel=0.15)


@pytest.mark.parametrize("n", [1, 3, 40])
def test_a_few_samples_at_another_rate_come_back_whole(n):
    x = 0.1 * np.random.default_rng(n).standard_normal((n, 2))
    model = DummyModel(pointwise, rank=1, domain="audio", sample_rate=16000)
    out, _ = dn.denoise_media(_audio(x, 44100), model, dn.DenoiseOptions(sigma=0.05))
    assert out.samples.shape == x.shape and np.all(np.isfinite(out.samples))


@pytest.mark.slow
def test_speech_at_44k_improves_with_the_bundled_model():
    """The bundled speech model on speech at 44.1 kHz with white noise 0.05: the given (true) sigma does at
    least as well as the estimate, and both clean far more than the noisy input."""
    import soundfile as sf

    from diffuse_cli import modelstore

    clean16, _ = sf.read(ROOT / "sample_data" / "speech.wav", dtype="float64")
    clean = resample.resample(clean16[:, None], 16000, 44100)[:, 0]
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape)
    model = modelstore.load_model(str(ROOT / "diffuse_cli" / "models" / "speech-16k"), mixed_precision=False)
    snr = {}
    for sigma in (None, 0.05):
        out, info = dn.denoise_media(_audio(noisy, 44100), model, dn.DenoiseOptions(sigma=sigma))
        snr[sigma] = _snr_db(clean, out.samples[:, 0].astype(np.float64))
        assert info["sigma"] == pytest.approx(0.05, rel=0.15)
    assert snr[0.05] > _snr_db(clean, noisy) + 10
    assert snr[0.05] >= snr[None] - 0.5
