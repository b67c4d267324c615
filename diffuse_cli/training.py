"""Training the step-conditioned denoiser (design.md §2): data pipeline, loss, loop, EMA, checkpoints.

One code path serves images (2D) and audio/signals (1D) and every tf.distribute strategy; only the
network and the patch sampler depend on rank. Per step:

    t ~ mix(uniform{1..T}, sigma_to_t(sigma ~ log-uniform[low-noise range]))
    eps ~ N(0, I);  x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps;  loss = L(eps_hat(x_t, t), eps)

Adam with warm-up + cosine decay, global-norm clipping (over the all-reduced gradient), and an EMA copy
of the weights that validation and the export use.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import summary_pb2  # noqa: E402

from diffuse_cli import io, modelstore, networks  # noqa: E402
from diffuse_cli.errors import InputError, Interrupted  # noqa: E402
from diffuse_cli.schedule import SCHEDULES, Schedule  # noqa: E402

LOSSES = ("mse", "l1", "ssim")
STRATEGIES = ("default", "mirrored", "multi-worker")
ProgressFn = Callable[[dict], None]

# Low-noise range the second half of each batch is drawn from, in model units (design §2, §7):
# images 1..60 on the 0-255 scale; audio in [-1, 1] full scale; signals in robust (MAD) units.
LOW_NOISE_SIGMA = {"image": (2.0 / 255.0, 120.0 / 255.0), "audio": (5e-4, 0.2), "signal": (0.02, 1.5)}
VAL_SIGMA_MODEL = {"image": 25.0 / 127.5, "audio": 0.1, "signal": 0.1}
HOLDOUT_MIN_FILES = 8  # with this many files or more, some are held out for validation only


@dataclass
class TrainOptions:
    """Everything `diffuse train` can set. Sizes in samples/pixels, sigmas as documented per field."""

    data: list[str]
    out: str
    arch: str = "unet"
    widths: Sequence[int] = (32, 64, 128)
    blocks: int = 1
    dense_hidden: int = 128
    length: int | None = None  # dense: fixed signal length (default: patch_size or 256)
    embedding: str = "sinusoidal"
    embedding_dim: int = 64
    activation_noise: float = 0.0
    kernel_size: int | None = None  # conv kernel (default 3 for images, 7 for 1D)
    schedule: str = "linear"
    timesteps: int = 1000
    patch_size: int | None = None  # image patch side (64) / 1D segment length (1024)
    channels: int | None = None  # images: convert to 1 (luma) or 3 channels; None = the data's own
    batch_size: int | str = 16  # global batch (split across replicas), or "auto": the largest that fits memory
    max_steps: int | None = None
    epochs: int | None = None  # with neither max_steps nor epochs: 10 epochs
    steps_per_epoch: int = 200
    lr: float = 2e-4
    warmup_steps: int | None = None  # default min(500, 5% of the steps)
    min_lr_fraction: float = 0.05  # cosine decays to lr * this
    grad_clip: float = 1.0  # global-norm clip of the all-reduced gradient (0: off)
    loss: str = "mse"  # mse | l1 | ssim | combinations with '+', e.g. mse+ssim
    loss_weights: Sequence[float] | dict | None = None  # one per loss term (default 1; ssim 0.1 when mixed)
    ema: float = 0.999
    checkpoint_every: int = 100
    keep: int = 3
    resume: bool = False
    export_only: bool = False
    strategy: str = "default"
    precision: str = "auto"  # auto (mixed on a GPU, else float32) | float32 | mixed (float16 compute)
    xla: str = "auto"  # auto (on with a GPU) | on | off: XLA-compile the forward/backward pass
    seed: int = 0
    val_sigma: float | None = None  # file units (25 for 8-bit images); None = domain default
    val_count: int = 16  # fixed validation patches
    low_noise_fraction: float = 0.5
    low_noise_sigma: tuple[float, float] | None = None  # model units; None = LOW_NOISE_SIGMA[domain]
    low_noise_sigma_file: tuple[float, float] | None = None  # the same in file units (the CLI's); overrides it
    memory_limit_mb: float = 2048.0  # decoded data above this is streamed from disk file by file
    patches_per_file: int = 32  # streaming: patches cut from each file per visit
    log_every: int = 10
    extra: dict = field(default_factory=dict)  # free-form notes copied into the training summary


# ================================================================================================
# Data: files -> training items (arrays in model units) -> random patches
# ================================================================================================
def _check_channels_image(x: np.ndarray, want: int | None, source: str) -> np.ndarray:
    """Convert an image to ``want`` channels (3 -> 1: ITU-R 601 luma; 1 -> 3: repeat)."""
    have = x.shape[-1]
    if want is None or want == have:
        return x
    if want == 1 and have == 3:
        return (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None].astype(np.float32)
    if want == 3 and have == 1:
        return np.repeat(x, 3, axis=-1)
    raise InputError(f"{source}: cannot convert a {have}-channel image to {want} channels; use --channels 1 or 3")


def media_items(media: io.Media, channels: int | None) -> list[np.ndarray]:
    """Training items of one file, float32 in model units.

    Image: one (H, W, C) array. Audio: one (N, 1) array per channel. Signal: one (N, 1) per channel,
    robust-normalised per file and channel (``z = (x - median) / (1.4826 MAD)``) like denoise does.
    """
    x = np.asarray(media.samples)
    if media.domain == "image":
        return [_check_channels_image(x.astype(np.float32), channels, media.source)]
    if x.ndim == 1:
        x = x[:, None]
    if media.domain == "signal":
        x, _, _ = io.robust_normalize(x.astype(np.float64))
    return [np.ascontiguousarray(x[:, c : c + 1], dtype=np.float32) for c in range(x.shape[1])]


def _domain_by_extension(path: str) -> str:
    fmt = io.format_from_extension(path)
    if fmt is None:
        raise InputError(f"{path}: unknown file type; use images, WAV/FLAC/OGG audio or CSV/TXT/NPY signals")
    return io.domain_of_format(fmt)


class DataSource:
    """Training data: either all items in memory, or a file list loaded lazily (data larger than RAM).

    Also fixes the validation set: held-out files when there are enough, else fixed patches of the
    training files, drawn with a seed of their own.
    """

    def __init__(self, files: list[str], options: TrainOptions, channels: int | None) -> None:
        if not files:
            raise InputError("data: no input files; give image, audio or signal files, folders or globs")
        if "-" in files:
            raise InputError("data: training cannot read stdin ('-'); give files or folders")
        domains = {p: _domain_by_extension(p) for p in files}
        kinds = sorted(set(domains.values()))
        if len(kinds) > 1:
            raise InputError(
                f"data: mixes {' and '.join(kinds)} files; train one model per kind (separate folders)"
            )
        self.domain = kinds[0]
        self.rank = 2 if self.domain == "image" else 1
        self.notes: list[str] = []
        rng = np.random.default_rng([options.seed, 17])
        order = list(files)
        holdout: list[str] = []
        if len(files) >= HOLDOUT_MIN_FILES:
            n_hold = max(1, len(files) // 20)
            picks = set(rng.choice(len(files), size=n_hold, replace=False).tolist())
            holdout = [f for i, f in enumerate(order) if i in picks]
            order = [f for i, f in enumerate(order) if i not in picks]
        self.files = order
        self.holdout = holdout
        factor = 8.0 if self.domain == "image" else 4.0  # decoded float32 vs bytes on disk (rough)
        est_mb = factor * sum(os.path.getsize(p) for p in files) / 2**20
        self.in_memory = est_mb <= options.memory_limit_mb
        first = io.load(self.files[0])
        self.sample_rate = first.sample_rate
        self.scale = float(first.scale)
        if self.domain == "image":
            self.channels = channels or first.samples.shape[-1]
        else:
            self.channels = 1  # every channel of an audio/signal file is its own 1-channel signal
        self.items: list[np.ndarray] = []
        if self.in_memory:
            self.items = self._load_all(self.files, channels, check_mixed=channels is None)
        self.patches_per_file = max(1, int(options.patches_per_file))

    def _load_all(self, files: list[str], channels: int | None, check_mixed: bool) -> list[np.ndarray]:
        items: list[np.ndarray] = []
        seen: dict[int, str] = {}
        rates: set[int] = set()
        for path in files:
            media = io.load(path)
            if media.domain != self.domain:
                raise InputError(f"{path}: is {media.domain} data among {self.domain} files; train one model per kind")
            if media.domain == "image":
                seen.setdefault(media.samples.shape[-1], path)
                if check_mixed and len(seen) > 1:
                    a, b = sorted(seen)
                    raise InputError(
                        f"{path}: mixes {a}-channel and {b}-channel images (e.g. {seen[a]}); pass --channels 1 "
                        "or 3 to convert, or train gray and color models separately"
                    )
            if media.sample_rate:
                rates.add(int(media.sample_rate))
            items.extend(media_items(media, self.channels if self.domain == "image" else None))
        if len(rates) > 1:
            self.notes.append(f"audio sample rates differ ({sorted(rates)}); the model records {self.sample_rate}")
        return items

    def load_file(self, path: str) -> list[np.ndarray]:
        """Items of one file for streaming (images converted to the model's channels)."""
        media = io.load(path)
        if media.domain != self.domain:
            raise InputError(f"{path}: is {media.domain} data among {self.domain} files; train one model per kind")
        return media_items(media, self.channels if self.domain == "image" else None)

    def validation_patches(self, size: int, count: int, seed: int) -> np.ndarray:
        """``count`` fixed patches (no augmentation), from held-out files when there are any."""
        rng = np.random.default_rng([seed, 23])
        if self.holdout:
            items = self._load_all(self.holdout, self.channels, check_mixed=False)
        elif self.in_memory:
            items = self.items
        else:
            items = [it for p in self.files[: min(8, len(self.files))] for it in self.load_file(p)]
        sampler = PatchSampler(self.rank, size, augment=False, domain=self.domain)
        usable = sampler.usable(items)
        if not usable:
            raise _too_small(self.domain, size)
        return np.stack([sampler.sample(usable[rng.integers(len(usable))], rng) for _ in range(count)])


def _too_small(domain: str, size: int) -> InputError:
    what = "images are smaller than" if domain == "image" else "signals are shorter than"
    return InputError(f"data: all {what} --patch-size {size}; use a smaller --patch-size or bigger inputs")


class PatchSampler:
    """Random patches (images: crop, flips, rot90) or segments (1D: crop, polarity, audio gain)."""

    def __init__(self, rank: int, size: int, augment: bool, domain: str) -> None:
        self.rank, self.size, self.augment, self.domain = rank, size, augment, domain

    def usable(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """Items big enough to cut from; images smaller than a patch are mirror-padded (if >= half)."""
        out = []
        for it in items:
            if self.rank == 2:
                h, w = it.shape[:2]
                if min(h, w) >= self.size:
                    out.append(it)
                elif min(h, w) * 2 >= self.size:
                    ph, pw = max(0, self.size - h), max(0, self.size - w)
                    out.append(np.pad(it, ((0, ph), (0, pw), (0, 0)), mode="symmetric"))
            elif it.shape[0] >= self.size:
                out.append(it)
        return out

    def sample(self, item: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        if self.rank == 2:
            i = rng.integers(item.shape[0] - s + 1)
            j = rng.integers(item.shape[1] - s + 1)
            p = item[i : i + s, j : j + s]
            if self.augment:
                if rng.random() < 0.5:
                    p = p[:, ::-1]
                p = np.rot90(p, k=int(rng.integers(4)))
        else:
            i = rng.integers(item.shape[0] - s + 1)
            p = item[i : i + s]
            if self.augment:
                if rng.random() < 0.5:
                    p = -p  # polarity: the noise model is symmetric
                if self.domain == "audio":
                    p = p * np.float32(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        return np.ascontiguousarray(p, dtype=np.float32)


class BatchMaker:
    """In-memory data: batch number k is drawn with its own seed ``(seed, pipeline, k)``.

    So a run resumed at step s sees exactly the batches an uninterrupted run sees, and batches can be
    built in parallel (tf.data map) without losing determinism. Items are picked in proportion to size.
    """

    def __init__(self, source: DataSource, size: int, batch: int, seed: int, pipeline: int) -> None:
        self.sampler = PatchSampler(source.rank, size, augment=True, domain=source.domain)
        self.items = self.sampler.usable(source.items)
        if not self.items:
            raise _too_small(source.domain, size)
        weights = np.array([float(np.prod(it.shape[:-1])) for it in self.items])
        self.weights = weights / weights.sum()
        self.batch, self.seed, self.pipeline = batch, seed, pipeline

    def __call__(self, index: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.pipeline, int(index)])
        picks = rng.choice(len(self.items), size=self.batch, p=self.weights)
        return np.stack([self.sampler.sample(self.items[k], rng) for k in picks])


def stream_patches(source: DataSource, size: int, seed: int, pipeline: int, shard: int, shards: int,
                   start_step: int) -> Iterator[np.ndarray]:
    """Streaming data (larger than memory): the files of this shard in shuffled order, loaded one at a
    time, ``patches_per_file`` random patches from each visit (a shuffle buffer mixes files)."""
    rng = np.random.default_rng([seed, pipeline, shard, start_step])
    sampler = PatchSampler(source.rank, size, augment=True, domain=source.domain)
    files = source.files[shard::shards] or source.files
    while True:
        for idx in rng.permutation(len(files)):
            items = sampler.usable(source.load_file(files[idx]))
            for _ in range(source.patches_per_file if items else 0):
                yield sampler.sample(items[rng.integers(len(items))], rng)


def make_dataset(
    source: DataSource, size: int, batch: int, seed: int, pipeline: int, first_batch: int
) -> tf.data.Dataset:
    """tf.data pipeline of (batch, *patch, C) float32, seeded, prefetched (AUTOTUNE).

    In memory: ``counter(first_batch) -> map(BatchMaker)`` in parallel, deterministic order.
    Streaming: interleaved per-shard file generators -> shuffle -> batch.
    """
    shape = (size, size, source.channels) if source.rank == 2 else (size, 1)
    if source.in_memory:
        maker = BatchMaker(source, size, batch, seed, pipeline)

        def build(index: tf.Tensor) -> tf.Tensor:
            out = tf.numpy_function(maker, [index], tf.float32, stateful=False)
            return tf.ensure_shape(out, (batch, *shape))

        ds = tf.data.Dataset.counter(first_batch).map(
            build, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        shards = max(1, min(4, len(source.files)))
        spec = tf.TensorSpec(shape, tf.float32)

        def one_shard(shard: tf.Tensor) -> tf.data.Dataset:
            return tf.data.Dataset.from_generator(
                lambda s: stream_patches(source, size, seed, pipeline, int(s), shards, first_batch),
                output_signature=spec,
                args=(shard,),
            )

        ds = tf.data.Dataset.range(shards).interleave(
            one_shard, cycle_length=shards, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        ds = ds.shuffle(max(4 * batch, 1024), seed=seed + 7 * pipeline + first_batch)
        ds = ds.batch(batch, drop_remainder=True)
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.prefetch(tf.data.AUTOTUNE).with_options(opts)


# ================================================================================================
# Diffusion math in TensorFlow (the numpy originals live in schedule.py)
# ================================================================================================
class TfSchedule:
    """alpha_bar at real t and sigma -> t as TF ops, interpolating exactly like schedule.py (log-linear)."""

    def __init__(self, schedule: Schedule) -> None:
        log_ab = np.log(np.maximum(schedule.alpha_bar, 1e-300))
        self.T = schedule.timesteps
        self.steps = tf.constant(np.arange(self.T + 1, dtype=np.float32))
        self.log_ab = tf.constant(log_ab.astype(np.float32))
        self.neg_log_ab = tf.constant((-log_ab).astype(np.float32))

    @staticmethod
    def interp(x: tf.Tensor, xp: tf.Tensor, fp: tf.Tensor) -> tf.Tensor:
        """``np.interp`` for increasing ``xp`` (clamped at the ends)."""
        n = tf.shape(xp)[0]
        idx = tf.clip_by_value(tf.searchsorted(xp, x, side="right"), 1, n - 1)
        x0, x1 = tf.gather(xp, idx - 1), tf.gather(xp, idx)
        y0, y1 = tf.gather(fp, idx - 1), tf.gather(fp, idx)
        w = tf.clip_by_value((x - x0) / tf.maximum(x1 - x0, 1e-12), 0.0, 1.0)
        return y0 + w * (y1 - y0)

    def alpha_bar_at(self, t: tf.Tensor) -> tf.Tensor:
        """``log ab(t)`` linear between integer steps."""
        return tf.exp(self.interp(t, self.steps, self.log_ab))

    def sigma_to_t(self, sigma: tf.Tensor) -> tf.Tensor:
        """Real t with ``alpha_bar(t) = 1 / (1 + sigma^2)``."""
        return self.interp(tf.math.log1p(tf.square(sigma)), self.neg_log_ab, self.steps)


def scalar_summary(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar via core ``tf.summary.write`` (the ``tensorboard`` package is not required)."""
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


def _bcast(v: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """(B,) -> (B, 1, ..., 1) matching the rank of ``like`` (schedule.broadcast_to_rank in TF)."""
    return tf.reshape(v, tf.concat([tf.shape(v), tf.ones(tf.rank(like) - 1, tf.int32)], 0))


def _gaussian_window(size: int, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def ssim_per_example(x: tf.Tensor, y: tf.Tensor, rank: int, data_range: tf.Tensor | float) -> tf.Tensor:
    """Gaussian-window SSIM (Wang et al. 2004) per example, for rank 1 or 2 (one code path).

    ``ssim = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``,
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, window 11 (or the patch size if smaller), sigma 1.5.
    1D inputs (B, N, C) are treated as images of height 1.
    """
    if rank == 1:
        x, y = x[:, None], y[:, None]
    channels = x.shape[-1]
    size = int(min(11, x.shape[2] or 11, (x.shape[1] or 11) if rank == 2 else 11))
    g = _gaussian_window(size)
    kernel = np.outer(g, g) if rank == 2 else g[None, :]
    kernel = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)))

    def blur(v: tf.Tensor) -> tf.Tensor:
        return tf.nn.depthwise_conv2d(v, kernel, strides=[1, 1, 1, 1], padding="VALID")

    L = tf.reshape(tf.cast(data_range, tf.float32), [-1, 1, 1, 1])
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return tf.reduce_mean(s, axis=[1, 2, 3])


def parse_loss(loss: str, weights: Sequence[float] | dict | None) -> dict[str, float]:
    """``"mse+ssim"`` with weights ``(1, 0.1)`` or ``{"mse": 1, "ssim": 0.1}`` -> ``{"mse": 1.0, "ssim": 0.1}``."""
    names = [n.strip().lower() for n in str(loss).split("+") if n.strip()]
    if not names or any(n not in LOSSES for n in names) or len(set(names)) != len(names):
        raise InputError(f"--loss {loss}: unknown; use mse, l1, ssim or a mix such as mse+ssim")
    if weights is None:
        return {n: (0.1 if n == "ssim" and len(names) > 1 else 1.0) for n in names}
    if isinstance(weights, dict):
        if set(weights) != set(names):
            raise InputError(f"--loss-weights: give one weight for each of {', '.join(names)}")
        values = [float(weights[n]) for n in names]
    else:
        values = [float(w) for w in weights]
        if len(values) != len(names):
            raise InputError(f"--loss-weights: give {len(names)} weights, one for each of {', '.join(names)}")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise InputError("--loss-weights: weights must be >= 0 and not all 0")
    return dict(zip(names, values))


def per_example_loss(
    terms: dict[str, float], eps: tf.Tensor, eps_hat: tf.Tensor, x0: tf.Tensor, x_t: tf.Tensor,
    ab: tf.Tensor, rank: int, domain: str,
) -> tf.Tensor:
    """Weighted sum of loss terms per example, shape (B,).

    mse: ``mean (eps_hat - eps)^2`` (the seed's loss); l1: ``mean |eps_hat - eps|``;
    ssim: ``ab * (1 - SSIM(x0_hat, x0))`` on ``x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)``; the
    ``ab`` weight keeps the wildly noisy x0 estimates of large t from dominating.
    """
    axes = list(range(1, len(eps.shape)))
    total = tf.zeros(tf.shape(eps)[:1])
    if "mse" in terms:
        total += terms["mse"] * tf.reduce_mean(tf.square(eps_hat - eps), axis=axes)
    if "l1" in terms:
        total += terms["l1"] * tf.reduce_mean(tf.abs(eps_hat - eps), axis=axes)
    if "ssim" in terms:
        abb = _bcast(ab, x_t)
        x0_hat = (x_t - tf.sqrt(1.0 - abb) * eps_hat) / tf.sqrt(abb)
        if domain == "image":
            data_range = tf.constant(2.0)
        else:  # per-example dynamic range of the clean segment (audio and signals have no fixed range)
            data_range = tf.maximum(tf.reduce_max(x0, axis=axes) - tf.reduce_min(x0, axis=axes), 1e-3)
        total += terms["ssim"] * ab * (1.0 - ssim_per_example(x0_hat, x0, rank, data_range))
    return total


# ================================================================================================
# Model config, strategy, checkpoint
# ================================================================================================
PRECISIONS = ("auto", "float32", "mixed")


def use_mixed_precision(precision: str) -> bool:
    """``auto``: float16 compute where a GPU is visible (tensor cores; on CPU float16 is slower), else float32."""
    return modelstore.gpu_visible() if precision == "auto" else precision == "mixed"


XLA_MODES = ("auto", "on", "off")


def use_xla(mode: str) -> bool:
    """``auto``: XLA where a GPU is visible. On 2 CPU cores it was measured no faster (bench/README.md)."""
    return modelstore.gpu_visible() if mode == "auto" else mode == "on"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: no distribution; mirrored: all GPUs (else all logical CPUs); multi-worker: TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(f"--strategy {name}: unknown; use one of {', '.join(STRATEGIES)}")


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    spec = resolver.cluster_spec().as_dict()
    if "chief" in spec:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def _validate_options(o: TrainOptions) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise InputError(message)

    need(o.arch in networks.ARCHS, f"--arch {o.arch}: unknown; use one of {', '.join(networks.ARCHS)}")
    need(o.embedding in networks.EMBEDDINGS, f"--embedding {o.embedding}: unknown; use sinusoidal or learned")
    need(o.schedule in SCHEDULES, f"--schedule {o.schedule}: unknown; use one of {', '.join(SCHEDULES)}")
    need(o.xla in XLA_MODES, f"--xla {o.xla}: unknown; use one of {', '.join(XLA_MODES)}")
    need(o.precision in PRECISIONS, f"--precision {o.precision}: unknown; use one of {', '.join(PRECISIONS)}")
    need(o.strategy in STRATEGIES, f"--strategy {o.strategy}: unknown; use one of {', '.join(STRATEGIES)}")
    need(len(o.widths) >= 1 and all(int(w) >= 1 for w in o.widths), "--widths: give positive integers, e.g. 32,64,128")
    need(o.blocks >= 1, "--blocks: must be at least 1")
    need(o.batch_size == "auto" or (isinstance(o.batch_size, int) and o.batch_size >= 1),
         f"--batch-size {o.batch_size}: give a positive whole number or auto")
    need(2 <= o.timesteps <= 100_000, "--timesteps: must be 2..100000")
    need(o.embedding_dim >= 1, "--embedding-dim: must be at least 1")
    need(o.max_steps is None or o.max_steps >= 1, "--max-steps: must be at least 1")
    need(o.epochs is None or o.epochs >= 1, "--epochs: must be at least 1")
    need(o.steps_per_epoch >= 1, "--steps-per-epoch: must be at least 1")
    need(math.isfinite(o.lr) and o.lr > 0, "--lr: must be a positive number")
    need(0.0 <= o.ema < 1.0, "--ema: must be in [0, 1)")
    need(o.checkpoint_every >= 1, "--checkpoint-every: must be at least 1")
    need(o.keep >= 1, "--keep: must be at least 1")
    need(o.activation_noise >= 0, "--activation-noise: must be >= 0")
    need(0.0 <= o.low_noise_fraction <= 1.0, "--low-noise-fraction: must be in [0, 1]")
    need(o.channels in (None, 1, 3), "--channels: must be 1 or 3")
    need(o.patch_size is None or o.patch_size >= 4, "--patch-size: must be at least 4")
    need(o.length is None or o.length >= 1, "--length: must be positive")
    need(o.val_sigma is None or (math.isfinite(o.val_sigma) and o.val_sigma > 0), "--val-sigma: must be > 0")
    parse_loss(o.loss, o.loss_weights)


def config_from_options(o: TrainOptions, source: DataSource) -> dict:
    """A model config for ``o`` on ``source``'s data."""
    if o.arch == "dense" and source.domain == "image":
        raise InputError("--arch dense: the seed's Dense model is for fixed-length 1D signals; use --arch unet")
    patch = o.patch_size or (64 if source.domain == "image" else 1024)
    length = None
    if o.arch == "dense":
        length = int(o.length or o.patch_size or 256)
        patch = length
    cfg = modelstore.default_config(
        source.domain,
        source.channels,
        arch=o.arch,
        widths=[int(w) for w in o.widths],
        blocks=int(o.blocks),
        dense_hidden=int(o.dense_hidden),
        length=length,
        embedding=o.embedding,
        embedding_dim=int(o.embedding_dim),
        activation_noise=float(o.activation_noise),
        kernel_size=o.kernel_size,
        schedule=o.schedule,
        timesteps=int(o.timesteps),
        patch_size=int(patch),
        sample_rate=int(source.sample_rate) if source.sample_rate else None,
    )
    return modelstore.validate_config(cfg, "options")


def make_optimizer(options: TrainOptions, total: int) -> keras.optimizers.Optimizer:
    """Adam with linear warm-up to ``lr`` then cosine decay to ``lr * min_lr_fraction`` at ``total``.

    Always a schedule object (never a float): the optimizer's variable list, and so the checkpoint
    layout, must be the same when a checkpoint is rebuilt by :func:`load_training_state`.
    """
    warmup = options.warmup_steps if options.warmup_steps is not None else min(500, max(1, total // 20))
    warmup = max(1, min(int(warmup), total))
    lr_schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=options.lr / warmup,
        decay_steps=max(1, total - warmup),
        alpha=options.min_lr_fraction,
        warmup_target=options.lr,
        warmup_steps=warmup,
    )
    return keras.optimizers.Adam(learning_rate=lr_schedule)


# --batch-size auto: the largest power of two up to this whose activations fit in half the free memory.
AUTO_BATCH_CAP = 128
AUTO_MEMORY_SHARE = 0.5


def forward_bytes_per_patch(model: keras.Model, config: dict) -> int:
    """Bytes of every tensor the training-mode forward pass of one patch produces (batch 1, traced, not run).

    An upper bound on what backprop keeps alive per patch: measured on the 2D U-Net 16-128 at 96x96,
    this sum is 88 MiB and the peak resident memory grew by 28 MiB per patch (batch 16 -> 64).
    """
    patch = int(config["patch_size"])
    shape = [1, *(patch if d is None else d for d in model.inputs[0].shape[1:])]

    def forward(x_t: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        return model([x_t, t], training=True)

    graph = tf.function(forward).get_concrete_function(
        tf.TensorSpec(shape, tf.float32), tf.TensorSpec([1], tf.float32)
    ).graph
    total = 0
    for op in graph.get_operations():
        for out in op.outputs:  # per-example tensors only (weights and scalars do not grow with the batch)
            if out.shape.rank and out.shape.is_fully_defined() and out.shape[0] == 1 and out.dtype.size:
                total += out.shape.num_elements() * out.dtype.size
    return total


def available_memory() -> tuple[int, str]:
    """Free memory for training and where it was read: the least free GPU (nvidia-smi) when TensorFlow
    sees a GPU, else the host's MemAvailable, lowered to the cgroup's limit when one is set."""
    if modelstore.gpu_visible():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            return int(min(float(v) for v in out.split()) * 2**20), "free on the GPU"
        except (OSError, ValueError, subprocess.SubprocessError):
            pass  # no nvidia-smi: fall back to the host's figure
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(free), 0), "available"


def auto_batch_size(per_patch: int, available: int, replicas: int = 1, cap: int = AUTO_BATCH_CAP) -> int:
    """``2^k * replicas``, the largest with ``2^k * replicas <= cap`` and ``batch * per_patch <= share * available``
    (at least ``replicas``: one patch per replica always runs)."""
    budget = AUTO_MEMORY_SHARE * available
    batch = replicas
    while batch * 2 <= max(cap, replicas) and batch * 2 * per_patch <= budget:
        batch *= 2
    return batch


class _Run:
    """Model, EMA copy, optimizer and checkpoint of one training run (all created inside the strategy)."""

    def __init__(self, config: dict, options: TrainOptions, total: int, ckpt_dir: str, chief: bool) -> None:
        self.mixed = use_mixed_precision(options.precision)
        self.xla = use_xla(options.xla)
        self.model = networks.build_network(config, mixed_precision=self.mixed)
        self.ema_model = networks.build_network(config, mixed_precision=self.mixed)
        self.ema_model.set_weights(self.model.get_weights())
        inner = make_optimizer(options, total)
        # Mixed precision: the loss is scaled so float16 gradients do not underflow; the wrapper unscales
        # them and skips steps whose gradients overflowed (lowering the scale).
        self.optimizer = keras.optimizers.LossScaleOptimizer(inner) if self.mixed else inner
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The inner optimizer is what is checkpointed, so a run resumes in either precision.
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, ema=self.ema_model, optimizer=inner, step=self.step
        )
        # Non-chief workers of a multi-worker run write to a scratch folder (all must call save()).
        directory = ckpt_dir if chief else os.path.join(ckpt_dir, f".worker-{os.getpid()}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=options.keep)

    def save(self) -> str:
        return self.manager.save(checkpoint_number=int(self.step.numpy()))


def _write_run_config(path: str, config: dict, history: list[dict], seconds: float = 0.0) -> None:
    """checkpoints/config.json: the architecture a --resume or --export-only rebuilds, the history and the
    training time so far (so the total survives interruptions and resumes)."""
    data = {**config, "training": {"status": "in progress", "history": history, "seconds": round(seconds, 2)}}
    modelstore._atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None


# ================================================================================================
# Validation
# ================================================================================================
class Validator:
    """One-step denoising of fixed patches at ``sigma`` (model units): PSNR for images, SNR for 1D.

    ``x_t* = sqrt(ab*) x0 + sqrt(1 - ab*) eps`` with ``t* = sigma_to_t(sigma)``; ``x0_hat = predict_x0``.
    """

    def __init__(self, patches: np.ndarray, sigma: float, schedule: Schedule, domain: str, seed: int) -> None:
        self.x0 = patches.astype(np.float64)
        self.domain = domain
        self.metric = "psnr" if domain == "image" else "snr"
        rng = np.random.default_rng([seed, 29])
        eps = rng.standard_normal(self.x0.shape)
        self.t = float(schedule.sigma_to_t(sigma))
        self.ab = float(schedule.alpha_bar_at(self.t))
        self.x_t = (math.sqrt(self.ab) * self.x0 + math.sqrt(1 - self.ab) * eps).astype(np.float32)
        self.sigma = sigma
        self.baseline = self.score(self.x_t / math.sqrt(self.ab))  # eps_hat = 0: the noisy input itself

    def score(self, x0_hat: np.ndarray) -> float:
        if self.domain == "image":
            mse = float(np.mean((np.clip(x0_hat, -1, 1) - self.x0) ** 2))
            return 10.0 * math.log10(4.0 / max(mse, 1e-20))
        err = float(np.sum((x0_hat - self.x0) ** 2))
        return 10.0 * math.log10(max(float(np.sum(self.x0**2)), 1e-20) / max(err, 1e-20))

    def __call__(self, model: keras.Model) -> float:
        outs = []
        for i in range(0, len(self.x_t), 16):
            xb = self.x_t[i : i + 16]
            outs.append(np.asarray(model([xb, np.full((len(xb),), self.t, np.float32)], training=False)))
        eps_hat = np.concatenate(outs).astype(np.float64)
        return self.score((self.x_t - math.sqrt(1 - self.ab) * eps_hat) / math.sqrt(self.ab))


# ================================================================================================
# Signals
# ================================================================================================
class StopFlag:
    """SIGINT/SIGTERM set a flag (the loop saves a checkpoint, then raises Interrupted); old handlers return."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ================================================================================================
# Training
# ================================================================================================
def total_steps(o: TrainOptions) -> int:
    """max_steps, else epochs * steps_per_epoch (10 epochs when neither is given)."""
    if o.max_steps is not None:
        return int(o.max_steps)
    return int((o.epochs or 10) * o.steps_per_epoch)


def train(options: TrainOptions, progress: ProgressFn | None = None) -> dict:
    """Train (or resume, or only export) a denoiser into ``options.out``; returns a summary dict.

    Events passed to ``progress``: start, step, epoch, checkpoint, done (see module docs / spec).
    SIGINT/SIGTERM during the loop: a checkpoint is saved, then errors.Interrupted is raised.
    """
    emit = progress or (lambda event: None)
    _validate_options(options)
    out = options.out
    ckpt_dir = os.path.join(out, modelstore.CHECKPOINT_DIR)
    run_config_path = os.path.join(ckpt_dir, "config.json")
    if options.export_only:
        return _export_only(options, emit)

    t_begin = time.time()
    keras.utils.set_random_seed(options.seed)
    files = io.expand_inputs(options.data)
    source = DataSource(files, options, options.channels)
    has_ckpt = tf.train.latest_checkpoint(ckpt_dir) is not None
    saved_cfg = _read_json(run_config_path)
    if has_ckpt and not options.resume:
        raise InputError(f"{out}: already has training checkpoints; pass --resume to continue or choose a new --out")
    if options.resume and has_ckpt and saved_cfg is not None:
        config = modelstore.validate_config(saved_cfg, run_config_path)
        if config["domain"] != source.domain or config["channels"] != source.channels:
            raise InputError(
                f"{out}: the checkpoint is a {config['channels']}-channel {config['domain']} model but the data is "
                f"{source.channels}-channel {source.domain}; resume with the same kind of data"
            )
    else:
        config = config_from_options(options, source)
    patch = int(config["patch_size"])
    multiple = networks.size_multiple(config)
    if config["arch"] == "unet" and patch % multiple:
        raise InputError(
            f"--patch-size {patch}: must be a multiple of {multiple} for {len(config['widths'])} U-Net levels"
        )
    terms = parse_loss(options.loss, options.loss_weights)
    schedule = Schedule.create(config["schedule"], config["timesteps"])
    total = total_steps(options)

    strategy = make_strategy(options.strategy)
    chief = _is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        run = _Run(config, options, total, ckpt_dir, chief)
    notes = list(source.notes)
    if options.batch_size == "auto":
        per_patch = forward_bytes_per_patch(run.model, config)
        available, where = available_memory()
        options = replace(options, batch_size=auto_batch_size(per_patch, available, replicas))
        notes.append(f"--batch-size auto: {options.batch_size} (at most {per_patch / 2**20:.0f} MiB of "
                     f"activations per patch, {available / 2**30:.1f} GiB {where})")
    if options.batch_size % replicas:
        raise InputError(f"--batch-size {options.batch_size}: must be a multiple of the {replicas} replicas")
    start_step = 0
    if options.resume and has_ckpt:
        run.checkpoint.restore(run.manager.latest_checkpoint).assert_existing_objects_matched()
        start_step = int(run.step.numpy())

    val_sigma = (options.val_sigma / source.scale) if options.val_sigma else VAL_SIGMA_MODEL[source.domain]
    if options.low_noise_sigma_file:
        lo, hi = options.low_noise_sigma_file
        options = replace(options, low_noise_sigma=(lo / source.scale, hi / source.scale))
    validator = Validator(
        source.validation_patches(patch, options.val_count, options.seed), val_sigma, schedule, source.domain,
        options.seed,
    )
    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each input pipeline feeds replicas_per_pipeline replicas one per-replica batch per step.
        per_pipeline = max(1, replicas // ctx.num_input_pipelines)
        return make_dataset(source, patch, ctx.get_per_replica_batch_size(options.batch_size), options.seed,
                            ctx.input_pipeline_id, start_step * per_pipeline)

    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    train_fn = _make_train_fn(run, strategy, schedule, config, options, terms, source.domain)

    history: list[dict] = list(((saved_cfg or {}).get("training") or {}).get("history", [])) if start_step else []
    prior = _read_json(os.path.join(out, modelstore.CONFIG_NAME)) if options.resume else None
    prior_seconds = float(((prior or {}).get("training") or {}).get("seconds", 0.0))
    if start_step:  # an interrupted run recorded its time next to its checkpoints
        prior_seconds = max(prior_seconds, float(((saved_cfg or {}).get("training") or {}).get("seconds", 0.0)))
    if chief:  # only now that the data is known to be usable (a bad data set leaves no folder behind)
        os.makedirs(ckpt_dir, exist_ok=True)
        _write_run_config(run_config_path, config, history, prior_seconds)
    writer = tf.summary.create_file_writer(os.path.join(out, "logs")) if chief else tf.summary.create_noop_writer()
    msg = (f"training a {config['arch']} on {len(source.files)} {source.domain} file(s)"
           f"{f' (+{len(source.holdout)} held out)' if source.holdout else ''}, {replicas} replica(s), "
           f"{'in memory' if source.in_memory else 'streamed from disk'}"
           f"{', mixed precision (float16 compute)' if run.mixed else ''}; validation "
           f"{validator.metric.upper()} of noisy input {validator.baseline:.2f} dB")
    if start_step:
        msg += f"; resumed at step {start_step}"
    for note in notes:
        emit({"event": "start", "message": note, "step": start_step, "total": total})
    emit({"event": "start", "step": start_step, "total": total, "message": msg})

    step = start_step
    last_loss = float("nan")
    val = float("nan")
    last_saved = start_step if start_step else -1
    pending: list[tf.Tensor] = []  # loss tensors not yet read (reading syncs the device)
    epoch_losses: list[float] = []
    first_loss = float("nan")
    iterator = iter(dataset)
    t_run = time.time()

    def flush() -> None:
        nonlocal pending, last_loss, first_loss
        if pending:
            values = [float(v.numpy()) for v in pending]
            if math.isnan(first_loss):
                first_loss = float(np.mean(values))
            epoch_losses.extend(values)
            last_loss = float(np.mean(values))
            pending = []

    with StopFlag() as stop, writer.as_default():
        while step < total:
            pending.append(train_fn(iterator))
            step += 1
            if step % options.log_every == 0 or step == total:
                flush()
                rate = (step - start_step) * options.batch_size / max(time.time() - t_run, 1e-9)
                scalar_summary("loss", last_loss, step=step)
                scalar_summary("learning_rate", float(run.optimizer.learning_rate), step=step)
                emit({"event": "step", "step": step, "total": total, "loss": last_loss, "patches_per_s": rate})
            if step % options.checkpoint_every == 0:
                path = run.save()
                last_saved = step
                emit({"event": "checkpoint", "step": step, "total": total, "path": path})
            if step % options.steps_per_epoch == 0 or step == total:
                flush()
                epoch_loss = float(np.mean(epoch_losses)) if epoch_losses else last_loss
                epoch_losses = []
                val = validator(run.ema_model)
                history.append({"step": step, "loss": round(epoch_loss, 6), f"val_{validator.metric}": round(val, 4)})
                scalar_summary("epoch_loss", epoch_loss, step=step)
                scalar_summary(f"val_{validator.metric}", val, step=step)
                writer.flush()
                emit({"event": "epoch", "step": step, "total": total, "loss": epoch_loss,
                      f"val_{validator.metric}": val, "val_metric": validator.metric,
                      "message": f"step {step}/{total}: loss {epoch_loss:.4f}, validation "
                                 f"{validator.metric.upper()} {val:.2f} dB (noisy {validator.baseline:.2f} dB)"})
                if chief:
                    _write_run_config(run_config_path, config, history, prior_seconds + time.time() - t_begin)
            if stop.signum is not None:
                flush()
                path = run.save() if last_saved != step else run.manager.latest_checkpoint
                emit({"event": "checkpoint", "step": step, "total": total, "path": path,
                      "message": f"interrupted: checkpoint saved at step {step}; continue with --resume"})
                raise Interrupted(stop.signum)
    if last_saved != step:
        run.save()
    if not chief:  # a non-chief worker's checkpoints are scratch copies
        shutil.rmtree(run.manager.directory, ignore_errors=True)
    if math.isnan(val):  # nothing trained this run (resumed at or past the end): still report a figure
        val = validator(run.ema_model)
    seconds = prior_seconds + (time.time() - t_begin)
    summary = {
        "steps": step,
        "loss": history[-1]["loss"] if history else last_loss,
        "first_loss": first_loss,  # mean loss of the first logged steps of this run (1.0 at zero init)
        "val_metric": validator.metric,
        f"val_{validator.metric}": val,
        "val_baseline": validator.baseline,
        "val_sigma_model": val_sigma,
        "seconds": round(seconds, 2),
        "seed": options.seed,
        "files": len(source.files),
        "holdout_files": len(source.holdout),
        "domain": source.domain,
        "channels": source.channels,
        "batch_size": options.batch_size,
        "loss_terms": terms,
        "lr": options.lr,
        "low_noise_fraction": options.low_noise_fraction,
        "low_noise_sigma_model_units": list(options.low_noise_sigma or LOW_NOISE_SIGMA[source.domain]),
        "strategy": options.strategy,
        "precision": "mixed" if run.mixed else "float32",
        "xla": run.xla,
        "history": history,
        **options.extra,
    }
    if chief:  # JSON has no NaN: a figure that was never measured is stored as null
        stored = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
        modelstore.save_model(out, {**config, "training": stored}, run.ema_model)
    summary.update({"model_dir": out, "checkpoint": run.manager.latest_checkpoint})
    emit({"event": "done", "step": step, "total": total, "loss": last_loss, f"val_{validator.metric}": val,
          "message": f"saved model to {out} ({validator.metric.upper()} {val:.2f} dB on validation)"})
    return summary


def _make_train_fn(
    run: _Run, strategy: tf.distribute.Strategy, schedule: Schedule, config: dict, options: TrainOptions,
    terms: dict[str, float], domain: str,
) -> Callable:
    """The compiled step: sample t and eps (stateless, seeded by (seed, replica, step)), q_sample,
    predict eps, loss, all-reduce + global-norm clip, Adam, then the EMA update with warm-up:
    ``decay = min(ema, (1 + step) / (10 + step))``; ``ema_w = decay * ema_w + (1 - decay) * w``.
    """
    tfs = TfSchedule(schedule)
    rank = networks.network_rank(config)
    lo, hi = options.low_noise_sigma or LOW_NOISE_SIGMA[domain]
    log_lo, log_hi = math.log(lo), math.log(hi)
    global_batch = options.batch_size
    replicas = strategy.num_replicas_in_sync
    model, optimizer = run.model, run.optimizer
    T = float(schedule.timesteps)

    def gradients(x0: tf.Tensor, x_t: tf.Tensor, t: tf.Tensor, eps: tf.Tensor, ab: tf.Tensor):
        """Forward, loss and backward: the part XLA compiles (``--xla``); the optimizer stays outside."""
        with tf.GradientTape() as tape:
            eps_hat = tf.cast(model([x_t, t], training=True), tf.float32)
            per_ex = per_example_loss(terms, eps, eps_hat, x0, x_t, ab, rank, domain)
            loss = tf.nn.compute_average_loss(per_ex, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss) if run.mixed else loss
        return loss, tape.gradient(scaled, model.trainable_variables)

    if run.xla:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(x0: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        ctx = tf.distribute.get_replica_context()
        rid = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(options.seed, tf.int64) * 1009 + rid, step]), num=4
        )
        batch = tf.shape(x0)[0]
        t_uniform = tf.floor(tf.random.stateless_uniform([batch], seeds[0], minval=1.0, maxval=T + 1.0))
        t_uniform = tf.minimum(t_uniform, T)
        sigma = tf.exp(tf.random.stateless_uniform([batch], seeds[1], minval=log_lo, maxval=log_hi))
        t_low = tf.clip_by_value(tfs.sigma_to_t(sigma), 1e-3, T)
        use_low = tf.random.stateless_uniform([batch], seeds[2]) < options.low_noise_fraction
        t = tf.where(use_low, t_low, t_uniform)
        ab = tfs.alpha_bar_at(t)
        eps = tf.random.stateless_normal(tf.shape(x0), seeds[3])
        abb = _bcast(ab, x0)
        x_t = tf.sqrt(abb) * x0 + tf.sqrt(1.0 - abb) * eps
        loss, grads = gradients(x0, x_t, t, eps, ab)
        variables = model.trainable_variables
        # The learned step table gets sparse (IndexedSlices) gradients; it is small, make them dense.
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        # Clip the *global* gradient: all-reduce first, clip, then hand the optimizer 1/replicas of it
        # (Keras sums over replicas again inside apply_gradients).
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if options.grad_clip > 0:  # scaled gradients (mixed precision) are clipped at the scaled norm
            clip = options.grad_clip * (tf.cast(optimizer.dynamic_scale, tf.float32) if run.mixed else 1.0)
            grads, _ = tf.clip_by_global_norm(grads, clip)
        grads = [g / replicas for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    ema_pairs = list(zip(run.ema_model.weights, run.model.weights))

    @tf.function
    def train_fn(iterator) -> tf.Tensor:
        x0 = next(iterator)
        step = run.step.read_value()
        per_replica = strategy.run(replica_step, args=(x0, step))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        stepf = tf.cast(step, tf.float32)
        decay = tf.minimum(options.ema, (1.0 + stepf) / (10.0 + stepf))
        for e, w in ema_pairs:
            e.assign(decay * e + (1.0 - decay) * w)
        run.step.assign_add(1)
        return loss

    return train_fn


@dataclass
class TrainingState:
    """What a checkpoint holds, rebuilt outside training (for --export-only, inspection and tests)."""

    config: dict
    model: keras.Model
    ema_model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: int
    checkpoint_path: str


def load_training_state(model_dir: str) -> TrainingState:
    """Rebuild the run of ``model_dir`` from checkpoints/config.json and restore its latest checkpoint.

    The optimizer's slots are built before restoring, so its moments and ``iterations`` come back too.
    """
    ckpt_dir = os.path.join(model_dir, modelstore.CHECKPOINT_DIR)
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest is None:
        raise InputError(f"{model_dir}: no checkpoint found; train first (diffuse train ... --out {model_dir})")
    path = os.path.join(ckpt_dir, "config.json")
    raw = _read_json(path)
    if raw is None:
        raise InputError(f"{path}: missing or unreadable; cannot rebuild the checkpointed model")
    config = modelstore.validate_config(raw, path)
    model = networks.build_network(config)
    ema_model = networks.build_network(config)
    optimizer = make_optimizer(TrainOptions(data=[], out=model_dir), 1000)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=model, ema=ema_model, optimizer=optimizer, step=step)
    ckpt.restore(latest).expect_partial()
    return TrainingState(config, model, ema_model, optimizer, int(step.numpy()), latest)


def _export_only(options: TrainOptions, emit: ProgressFn) -> dict:
    """Restore the latest checkpoint of ``out`` and write config.json, EMA weights and the SavedModel."""
    out = options.out
    state = load_training_state(out)
    history = (state.config.get("training") or {}).get("history", [])
    prior = (_read_json(os.path.join(out, modelstore.CONFIG_NAME)) or {}).get("training") or {}
    summary = {**prior, "steps": state.step, "history": history,
               "exported_from": os.path.basename(state.checkpoint_path)}
    if history:
        summary["loss"] = history[-1].get("loss")
    modelstore.save_model(out, {**state.config, "training": summary}, state.ema_model)
    emit({"event": "done", "step": state.step, "total": state.step,
          "message": f"exported step {state.step} to {out}"})
    return {**summary, "model_dir": out, "checkpoint": state.checkpoint_path}


def options_dict(options: TrainOptions) -> dict:
    """TrainOptions as a JSON-friendly dict (for logs and --json output)."""
    d = asdict(options)
    d["widths"] = list(d["widths"])
    return d
