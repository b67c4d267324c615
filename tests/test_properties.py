"""Property-based tests (hypothesis): savers and loaders round-trip within quantisation, noise functions keep
shapes, dtypes and ranges and are reproducible with a seed.

Each property is kept fast (25-40 examples, no deadline): the whole file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffuse_cli import io
from diffuse_cli.noise import (
    NoiseOptions,
    add_noise,
    add_salt_pepper,
    forward_diffusion,
    noise_media,
    quantize_like_file,
    sigma_for_snr,
)
from diffuse_cli.schedule import Schedule

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
UNIT = st.floats(-1.0, 1.0, allow_nan=False, width=32)
SIDE = st.integers(1, 24)
SEEDS = st.integers(0, 2**32 - 1)


def image_samples(channels: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, st.tuples(SIDE, SIDE, st.just(channels)), elements=UNIT)


def image_media(samples: np.ndarray, bit_depth: int = 8) -> io.Media:
    scale = {8: 127.5, 16: 32767.5}[bit_depth]
    return io.Media("image", samples, "png", scale=scale, bit_depth=bit_depth, mode="L")


# ------------------------------------------------------------------------------------------- images


@FAST
@given(st.sampled_from([1, 3]).flatmap(image_samples))
def test_png_8_bit_save_then_load_within_half_a_level(samples):
    back = io.load_bytes(io.encode(image_media(samples), "png"), "p.png")
    assert back.samples.shape == samples.shape and back.samples.dtype == np.float32
    assert back.bit_depth == 8
    np.testing.assert_allclose(back.samples, samples, atol=0.5 / 127.5 + 1e-6)
    # what noise_media reports as "written" is exactly what the file holds
    np.testing.assert_allclose(back.samples, quantize_like_file(back, samples), atol=1e-6)


@FAST
@given(image_samples(1))
def test_png_16_bit_gray_save_then_load_within_half_a_level(samples):
    back = io.load_bytes(io.encode(image_media(samples, 16), "png"), "p.png")
    assert back.bit_depth == 16 and back.samples.shape == samples.shape
    np.testing.assert_allclose(back.samples, samples, atol=0.5 / 32767.5 + 1e-6)


@FAST
@given(image_samples(1), st.sampled_from(["png", "tiff", "bmp"]))
def test_8_bit_levels_round_trip_exactly(samples, fmt):
    levels = np.round((samples + 1.0) * 127.5) / 127.5 - 1.0  # already quantised: nothing may change
    media = image_media(levels.astype(np.float32))
    back = io.load_bytes(io.encode(media, fmt), f"p.{fmt}")
    np.testing.assert_allclose(back.samples, media.samples, atol=1e-6)
    again = io.load_bytes(io.encode(back, fmt), f"q.{fmt}")
    np.testing.assert_array_equal(again.samples, back.samples)


@FAST
@given(image_samples(1))
def test_float_tiff_is_exact(samples):
    media = io.Media("image", samples, "tiff", scale=0.5, bit_depth=32, mode="F")
    back = io.load_bytes(io.encode(media, "tiff"), "p.tif")
    assert back.bit_depth == 32
    np.testing.assert_allclose(back.samples, samples, atol=1e-6)


@FAST
@given(st.sampled_from([1, 3]).flatmap(image_samples), st.data())
def test_save_writes_a_loadable_file_and_nothing_else(tmp_path_factory, samples, data):
    folder = tmp_path_factory.mktemp("save")
    ext = data.draw(st.sampled_from([".png", ".tif", ".bmp", ".webp"]))
    path = folder / f"out{ext}"
    io.save(image_media(samples), str(path))
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp file left
    back = io.load(str(path))
    if ext == ".webp" and samples.shape[2] == 1:  # WebP has no gray mode: written as RGB (with a note)
        samples = np.repeat(samples, 3, axis=2)
    np.testing.assert_allclose(back.samples, samples, atol=0.5 / 127.5 + 1e-6)


# ------------------------------------------------------------------------------------------- audio

AUDIO = hnp.arrays(np.float32, st.tuples(st.integers(1, 400), st.integers(1, 2)), elements=UNIT)
RATES = st.sampled_from([8000, 16000, 22050, 44100, 48000])


@FAST
@given(AUDIO, RATES)
def test_wav_pcm16_save_then_load_within_one_step(samples, rate):
    media = io.Media("audio", samples, "wav", sample_rate=rate, subtype="PCM_16")
    back = io.load_bytes(io.encode(media, "wav"), "p.wav")
    assert back.sample_rate == rate and back.subtype == "PCM_16" and back.samples.shape == samples.shape
    # PCM_16 holds -32768..32767: the step is 1/32768, +1.0 clips to 32767/32768
    np.testing.assert_allclose(back.samples, samples, atol=1.0 / 32768 + 1e-7)


@FAST
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 400), st.integers(1, 2)),
                  elements=st.floats(-4.0, 4.0, allow_nan=False, width=32)), RATES)
def test_wav_float_is_exact_and_not_clipped(samples, rate):
    media = io.Media("audio", samples, "wav", sample_rate=rate, subtype="FLOAT")
    back = io.load_bytes(io.encode(media, "wav"), "p.wav")
    assert back.subtype == "FLOAT" and back.value_range is None
    np.testing.assert_array_equal(back.samples, samples)


@FAST
@given(AUDIO, RATES)
def test_flac_pcm16_round_trip(samples, rate):
    media = io.Media("audio", samples, "flac", sample_rate=rate, subtype="PCM_16")
    back = io.load_bytes(io.encode(media, "flac"), "p.flac")
    np.testing.assert_allclose(back.samples, samples, atol=1.0 / 32768 + 1e-7)
    assert sf.check_format("FLAC", back.subtype)


# ------------------------------------------------------------------------------------------- signals

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300)
SIGNAL = hnp.arrays(np.float64, st.tuples(st.integers(1, 50), st.integers(1, 4)), elements=FINITE)


@FAST
@given(SIGNAL, st.sampled_from([",", ";", "\t"]), st.booleans())
def test_csv_save_then_load_is_exact(values, delimiter, header):
    columns = [f"c{i}" for i in range(values.shape[1])] if header else None
    media = io.Media("signal", values, "csv", columns=columns, delimiter=delimiter, dtype="float64")
    back = io.load_bytes(io.encode(media, "csv"), "p.csv")
    np.testing.assert_array_equal(back.samples, values)
    assert back.columns == columns
    if values.shape[1] > 1:  # one column has no delimiter to keep
        assert back.delimiter == delimiter


@FAST
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 50), st.integers(1, 3)),
                  elements=st.integers(-(2**40), 2**40)))
def test_integer_csv_stays_integer(values):
    media = io.Media("signal", values.astype(np.float64), "csv", delimiter=",", dtype="int64")
    text = io.encode(media, "csv")
    assert b"." not in text
    back = io.load_bytes(text, "p.csv")
    assert back.dtype == "int64"
    np.testing.assert_array_equal(back.samples, values)


@FAST
@given(SIGNAL, st.sampled_from(["float64", "float32", "int16", "int32"]), st.booleans())
def test_npy_save_then_load_within_dtype(values, dtype, one_d):
    if one_d:
        values = values[:, :1]
    # A 2-D array is read with time along its longer axis (io notes it): the property holds for (time, channels)
    # arrays with more samples than channels; the other layout is io's own test (--axis).
    assume(one_d or values.shape[0] > values.shape[1])
    info = np.iinfo(dtype) if dtype.startswith("int") else np.finfo(dtype)
    values = np.clip(values, info.min, info.max)
    media = io.Media("signal", values, "npy", dtype=dtype, one_dimensional=one_d)
    back = io.load_bytes(io.encode(media, "npy"), "p.npy")
    assert back.dtype == dtype and back.one_dimensional == one_d and back.samples.shape == values.shape
    expected = np.rint(values) if dtype.startswith("int") else values.astype(dtype).astype(np.float64)
    np.testing.assert_array_equal(back.samples, expected)


# ------------------------------------------------------------------------------------------- noise

ARRAYS = hnp.arrays(np.float64, st.tuples(st.integers(1, 16), st.integers(1, 16), st.integers(1, 3)),
                    elements=st.floats(-1, 1, allow_nan=False))


@FAST
@given(ARRAYS, st.floats(0.0, 5.0), SEEDS)
def test_add_noise_shape_and_seed(x, scale, seed):
    a = add_noise(x, scale, np.random.default_rng(seed))
    b = add_noise(x, scale, np.random.default_rng(seed))
    assert a.shape == x.shape and a.dtype == np.float64 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    if scale == 0:
        np.testing.assert_array_equal(a, x)


@FAST
@given(ARRAYS, st.floats(0.0, 1.0), st.floats(0.0, 1.0), SEEDS)
def test_salt_pepper_hits_exactly_and_only_extremes(x, amount, ratio, seed):
    noisy, mask = add_salt_pepper(x, amount, ratio, -1.0, 1.0, np.random.default_rng(seed))
    again, mask2 = add_salt_pepper(x, amount, ratio, -1.0, 1.0, np.random.default_rng(seed))
    n = x.shape[0] * x.shape[1]
    assert noisy.shape == x.shape and mask.shape == x.shape[:2]
    assert mask.sum() == round(amount * n)
    np.testing.assert_array_equal(noisy[~mask], x[~mask])  # untouched elsewhere
    assert set(np.unique(noisy[mask])) <= {-1.0, 1.0}
    assert np.sum(np.all(noisy[mask] == 1.0, axis=-1)) == round(ratio * mask.sum())
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(mask, mask2)


@FAST
@given(ARRAYS, st.floats(0.0, 1000.0), st.sampled_from(["linear", "cosine"]), SEEDS)
def test_forward_diffusion_shape_seed_and_scale(x, step, kind, seed):
    schedule = Schedule.create(kind, 1000)
    a = forward_diffusion(x, step, schedule, np.random.default_rng(seed))
    b = forward_diffusion(x, step, schedule, np.random.default_rng(seed))
    assert a.shape == x.shape and a.dtype == np.float64 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    ab = float(schedule.alpha_bar_at(step))
    assert 0.0 < ab <= 1.0
    if ab == 1.0:  # t = 0: no noise at all
        np.testing.assert_array_equal(a, x)
        return
    eps = (a - np.sqrt(ab) * x) / np.sqrt(1 - ab)  # recovers the standard normal draw
    np.testing.assert_allclose(eps, np.random.default_rng(seed).standard_normal(x.shape), atol=1e-6)


@FAST
@given(ARRAYS, st.floats(-20, 40))
def test_sigma_for_snr_gives_that_snr_in_expectation(x, snr):
    assume(np.mean(x**2) > 1e-6)
    sigma = sigma_for_snr(x, snr)
    np.testing.assert_allclose(10 * np.log10(np.mean(x**2) / sigma**2), snr, atol=1e-6)


def _image(seed: int, shape: tuple[int, int, int]) -> io.Media:
    levels = np.random.default_rng(seed).integers(0, 256, size=shape)
    return image_media((levels / 127.5 - 1.0).astype(np.float32))


NOISE_OPTIONS = st.one_of(
    st.builds(NoiseOptions, kind=st.just("gaussian"), sigma=st.floats(1.0, 80.0)),
    st.builds(NoiseOptions, kind=st.just("gaussian"), snr=st.floats(-5.0, 30.0)),
    st.builds(NoiseOptions, kind=st.just("salt-pepper"), amount=st.floats(0.05, 1.0), salt_ratio=st.floats(0, 1)),
    st.builds(NoiseOptions, kind=st.just("diffusion"), step=st.floats(5.0, 1000.0),
              schedule=st.sampled_from(["linear", "cosine"])),
)


@FAST
@given(NOISE_OPTIONS, st.tuples(st.integers(8, 24), st.integers(8, 24), st.sampled_from([1, 3])), SEEDS, SEEDS)
def test_noise_media_image_range_dtype_and_seeds(opts, shape, seed, other):
    media = _image(seed % 1000, shape)
    opts.seed = seed
    noisy, report = noise_media(media, opts)
    again, _ = noise_media(media, opts)
    assert noisy.samples.shape == media.samples.shape and noisy.samples.dtype == np.float32
    assert noisy.samples.min() >= -1.0 and noisy.samples.max() <= 1.0
    levels = (noisy.samples.astype(np.float64) + 1.0) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # 8-bit levels: what the file will hold
    np.testing.assert_array_equal(noisy.samples, again.samples)
    assert np.isfinite(report["psnr_db"]) or np.array_equal(noisy.samples, media.samples)
    assume(other != seed)
    # Every pixel pepper (or salt) whatever the seed: no randomness left for a seed to change.
    assume(not (opts.kind == "salt-pepper" and opts.amount >= 1.0 and opts.salt_ratio in (0.0, 1.0)))
    opts.seed = other
    different, _ = noise_media(media, opts)
    assert not np.array_equal(different.samples, noisy.samples)


@FAST
@given(hnp.arrays(np.float64, st.tuples(st.integers(16, 200), st.integers(1, 3)),
                  elements=st.floats(-1e3, 1e3, allow_nan=False)), st.floats(0.01, 10.0), SEEDS)
def test_noise_media_signal_keeps_units_and_seed(values, sigma, seed):
    assume(np.ptp(values) > 0)
    media = io.Media("signal", values, "csv", delimiter=",", dtype="float64")
    opts = NoiseOptions(kind="gaussian", sigma=sigma, seed=seed)
    noisy, report = noise_media(media, opts)
    again, _ = noise_media(media, opts)
    assert noisy.samples.dtype == np.float64 and noisy.samples.shape == values.shape
    np.testing.assert_array_equal(noisy.samples, again.samples)
    for column in report.get("untouched_columns", []):  # a time/index axis is left alone
        np.testing.assert_array_equal(noisy.samples[:, column], values[:, column])
    assert np.all(np.isfinite(noisy.samples))
