"""Compile once: one model cleans files of many sizes with a bounded number of traces, tiles cover an
input with little padding, the streaming blend hands every row over once, and the noise estimate of a
large input (read from crops) agrees with the whole-input one.

Behavioural checks (trace counts, tile geometry), no timings.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from diffuse_cli import denoising as dn
from diffuse_cli import schedule as sch
from diffuse_cli.config import default_config
from diffuse_cli.denoising import estimate, tiling
from diffuse_cli.io import Media

IMAGE_SIZES = [(37, 53), (100, 100), (200, 130), (256, 256), (300, 500), (640, 480)]
SIGNAL_LENGTHS = [300, 1000, 4096, 20000, 70001]
MAX_TRACES = 2  # per model: one is what the relaxed input signature gives


def _image(h: int, w: int, channels: int, seed: int) -> Media:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    clean = 0.5 * np.sin(x / 9.0)[..., None] * np.cos(y / 13.0)[..., None] * np.ones(channels)
    noisy = np.clip(clean + 20 / 127.5 * rng.standard_normal((h, w, channels)), -1, 1)
    return Media(domain="image", samples=noisy.astype(np.float32), fmt="png", scale=127.5, bit_depth=8)


def test_folder_of_image_sizes_traces_once(tiny_image_model_dir):
    from diffuse_cli import modelstore

    model = modelstore.load_model(tiny_image_model_dir)
    for k, (h, w) in enumerate(IMAGE_SIZES):
        media = _image(h, w, 1, k)
        out, info = dn.denoise_media(media, model, dn.DenoiseOptions())  # sigma estimated
        assert out.samples.shape == (h, w, 1) and np.isfinite(out.samples).all()
        dn.denoise_media(media, model, dn.DenoiseOptions(sigma=20, method="ddim", steps=2))
    dn.denoise_media(_image(90, 70, 3, 9), model, dn.DenoiseOptions())  # colour: opponent channels, same trace
    assert 1 <= model.trace_count <= MAX_TRACES


def test_signals_of_many_lengths_trace_once(tiny_signal_model_dir):
    from diffuse_cli import modelstore

    model = modelstore.load_model(tiny_signal_model_dir)
    rng = np.random.default_rng(0)
    for n in SIGNAL_LENGTHS:
        x = np.cumsum(rng.standard_normal((n, 2)), axis=0) + 0.3 * rng.standard_normal((n, 2))
        media = Media(domain="signal", samples=x, fmt="npy")
        out, _ = dn.denoise_media(media, model, dn.DenoiseOptions(chunk=4096, chunk_overlap=256))
        assert out.samples.shape == (n, 2)
    assert 1 <= model.trace_count <= MAX_TRACES


@pytest.mark.parametrize("h,w", IMAGE_SIZES + [(512, 512), (1080, 1920), (13, 4000)])
def test_image_tiles_cover_with_little_padding(h, w):
    plan = tiling.Tiling.plan((h, w), 256, 32, 8, exact=False)
    assert all(t <= 256 and t % 8 == 0 for t in plan.tile)
    for n, t, starts in zip((h, w), plan.tile, plan.starts):
        assert starts[0] == 0 and (len(starts) == 1 or starts[-1] + t == n)
        assert all(b - a <= t - 32 for a, b in zip(starts, starts[1:]))  # overlap >= 32 everywhere
    # An axis that fits a tile is one tile; otherwise no more than ~1/4 extra per axis from overlap.
    assert plan.padded_ratio <= 1.6
    if h <= 256 and w <= 256:
        assert plan.count == 1
    assert tiling.Tiling.plan((512, 512), 256, 32, 8, exact=False).tile == (192, 192)


def test_long_recordings_use_one_chunk_length():
    lengths = {tiling.Tiling.plan((n,), 16384, 1024, 16, exact=False, granule=2048).tile
               for n in (200_000, 960_000, 57_600_000)}
    assert lengths == {(16384,)}


def test_stream_hands_over_every_row_once_in_order():
    class Pointwise:
        config = default_config("image", 1)
        schedule = sch.Schedule.create("linear", 1000)
        rank, size_multiple = 2, 4

        def eps(self, x_t, t):
            return np.zeros_like(x_t)

    x = np.random.default_rng(0).uniform(-1, 1, (203, 75, 2))
    options = dn.DenoiseOptions(tile=32, overlap=8, batch=3)
    plan = tiling.plan_tiles(Pointwise(), x.shape[:-1], options)
    seen = []
    out = np.full(x.shape, np.nan)

    def sink(a, rows):
        seen.append((a, a + rows.shape[0]))
        out[a : a + rows.shape[0]] = rows

    reads = []

    def read(a, b):
        reads.append(b - a)
        return x[a:b]

    groups = [(slice(0, 1), 50.0), (slice(1, 2), None)]  # channel 1 passed through
    clean = functools.partial(dn.reverse_from_observation, Pointwise(), method=options.method, steps=options.steps,
                              rng=None)
    tiling.stream_tiles(read, 2, groups, plan, clean, sink, tiling.tiles_per_call(plan, options.batch))
    assert seen[0][0] == 0 and seen[-1][1] == 203 and all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
    assert max(reads) <= plan.tile[0]  # never more than one tile row read at a time
    np.testing.assert_allclose(out[..., 1], x[..., 1])
    # eps = 0: one step returns y / sqrt(ab) * sqrt(ab) = y
    np.testing.assert_allclose(out[..., 0], x[..., 0], atol=1e-12)


def test_large_input_noise_estimate_from_crops(monkeypatch):
    rng = np.random.default_rng(1)
    h, w = 700, 900
    y, x = np.mgrid[0:h, 0:w]
    img = (0.5 * np.sin(x / 17.0) * np.cos(y / 11.0))[..., None] + 0.05 * rng.standard_normal((h, w, 1))
    whole = dn.estimate_sigma(img, 2, (-1.0, 1.0))
    monkeypatch.setattr(estimate, "_ESTIMATE_WHOLE", 1 << 17)  # force sampling ...
    monkeypatch.setattr(estimate, "_ESTIMATE_SAMPLE", 1 << 17)  # ... of 2 x 256 x 256 crops
    pieces = estimate.estimation_pieces(lambda a, b: img[a:b], (h, w), 2)
    assert pieces.shape[1:] == (256, 256, 1) and pieces.shape[0] >= 2
    assert estimate.estimate_sigma_pieces(pieces, 2, (-1.0, 1.0)) == pytest.approx(whole, rel=0.05)

    sig = np.sin(np.arange(400_000) / 50.0)[:, None] + 0.02 * rng.standard_normal((400_000, 1))
    whole_1d = dn.estimate_sigma(sig, 1)
    windows = estimate.estimation_pieces(lambda a, b: sig[a:b], (400_000,), 1)
    assert windows.shape == (2, 1 << 16, 1)
    assert estimate.estimate_sigma_pieces(windows, 1, None) == pytest.approx(whole_1d, rel=0.05)
    assert whole_1d == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("domain,shape,channels", [("image", (150, 97, 1), 1), ("image", (80, 130, 3), 1),
                                                   ("image", (64, 70, 3), 3), ("audio", (30000, 2), 1),
                                                   ("signal", (9000, 2), 1)])
def test_in_place_output_equals_a_fresh_array(domain, shape, channels):
    """Rows are written over the input only after the last tile that reads them."""

    class Local:  # a 3-tap smoother: tiles see their neighbours, so a row overwritten too early would show
        config = default_config(domain, channels)
        schedule = sch.Schedule.create("linear", 1000)
        rank, size_multiple = (2 if domain == "image" else 1), 4

        def eps(self, x_t, t):
            axis = 1
            return (0.5 * x_t + 0.25 * np.roll(x_t, 1, axis) + 0.25 * np.roll(x_t, -1, axis)).astype(np.float32)

    rng = np.random.default_rng(2)
    dtype = np.float64 if domain == "signal" else np.float32
    samples = np.clip(rng.normal(0, 0.3, shape), -1, 1).astype(dtype)
    kw = {"scale": 127.5} if domain == "image" else {"sample_rate": 16000} if domain == "audio" else {}
    options = dn.DenoiseOptions(sigma=0.1 if domain != "image" else 20, tile=32, overlap=8, chunk=4096,
                                chunk_overlap=256)
    fresh, _ = dn.denoise_media(Media(domain=domain, samples=samples.copy(), fmt="x", **kw), Local(), options)
    media = Media(domain=domain, samples=samples.copy(), fmt="x", **kw)
    inplace, _ = dn.denoise_media(media, Local(), options, in_place=True)
    assert inplace.samples is media.samples
    np.testing.assert_array_equal(inplace.samples, fresh.samples)
