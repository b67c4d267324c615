"""Training data: files -> items (float32 arrays in model units) -> random, augmented patches -> tf.data.

Images give one (H, W, C) item per file; audio and signals one (N, 1) item per channel. Data that fits in
``memory_limit_mb`` is decoded once and batch k is drawn with its own seed (so a resumed run sees the
batches an uninterrupted run sees); larger data is streamed from disk a file at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from diffuse_cli import colour, io
from diffuse_cli.errors import InputError
from diffuse_cli.training.options import TrainOptions

HOLDOUT_MIN_FILES = 8  # with this many files or more, some are held out for validation only
DECODED_PER_FILE_BYTE = {"image": 8.0, "audio": 4.0, "signal": 4.0}  # decoded float32 vs bytes on disk (rough)


def to_channels(x: np.ndarray, want: int | None, source: str) -> np.ndarray:
    """An (H, W, C) image with ``want`` channels: 3 -> 1 is :func:`colour.luma` (what a gray model sees at
    inference too), 1 -> 3 repeats the gray channel."""
    have = x.shape[-1]
    if want is None or want == have:
        return x
    if want == 1 and have == 3:
        return colour.luma(x.astype(np.float32)).astype(np.float32)
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
        return [to_channels(x.astype(np.float32), channels, media.source)]
    if x.ndim == 1:
        x = x[:, None]
    if media.domain == "signal":
        x, _, _ = io.robust_normalize(x.astype(np.float64))
    return [np.ascontiguousarray(x[:, c : c + 1], dtype=np.float32) for c in range(x.shape[1])]


def data_domain(files: list[str]) -> str:
    """The one domain (image, audio, signal) of ``files``, from their extensions; InputError otherwise."""
    if not files:
        raise InputError("data: no input files; give image, audio or signal files, folders or globs")
    if "-" in files:
        raise InputError("data: training cannot read stdin ('-'); give files or folders")
    kinds = set()
    for path in files:
        fmt = io.format_from_extension(path)
        if fmt is None:
            raise InputError(f"{path}: unknown file type; use images, WAV/FLAC/OGG audio or CSV/TXT/NPY signals")
        kinds.add(io.domain_of_format(fmt))
    if len(kinds) > 1:
        kinds_text = " and ".join(sorted(kinds))
        raise InputError(f"data: mixes {kinds_text} files; train one model per kind (separate folders)")
    return kinds.pop()


def split_holdout(files: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(training files, held-out files): 1 in 20 files (at least one) held out once there are enough."""
    if len(files) < HOLDOUT_MIN_FILES:
        return list(files), []
    rng = np.random.default_rng([seed, 17])
    picks = set(rng.choice(len(files), size=max(1, len(files) // 20), replace=False).tolist())
    return [f for i, f in enumerate(files) if i not in picks], [f for i, f in enumerate(files) if i in picks]


class DataSource:
    """Training data: either all items in memory, or a file list loaded lazily (data larger than RAM).

    Also fixes the validation set: held-out files when there are enough, else fixed patches of the
    training files, drawn with a seed of their own.
    """

    def __init__(self, files: list[str], options: TrainOptions) -> None:
        self.domain = data_domain(files)
        self.rank = 2 if self.domain == "image" else 1
        self.notes: list[str] = []
        self.files, self.holdout = split_holdout(files, options.seed)
        est_mb = DECODED_PER_FILE_BYTE[self.domain] * sum(os.path.getsize(p) for p in files) / 2**20
        self.in_memory = est_mb <= options.memory_limit_mb
        first = io.load(self.files[0])
        self.sample_rate = first.sample_rate
        self.scale = float(first.scale)
        # every channel of an audio/signal file is its own 1-channel signal
        self.channels = (options.channels or first.samples.shape[-1]) if self.domain == "image" else 1
        self.items: list[np.ndarray] = []
        if self.in_memory:
            self.items = self._load_all(self.files, check_mixed=options.channels is None)
        self.patches_per_file = max(1, int(options.patches_per_file))

    def _load_all(self, files: list[str], check_mixed: bool) -> list[np.ndarray]:
        items: list[np.ndarray] = []
        seen: dict[int, str] = {}
        rates: set[int] = set()
        for path in files:
            media = self._load(path)
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

    def _load(self, path: str) -> io.Media:
        media = io.load(path)
        if media.domain != self.domain:
            raise InputError(f"{path}: is {media.domain} data among {self.domain} files; train one model per kind")
        return media

    def load_file(self, path: str) -> list[np.ndarray]:
        """Items of one file for streaming (images converted to the model's channels)."""
        return media_items(self._load(path), self.channels if self.domain == "image" else None)

    def validation_patches(self, size: int, count: int, seed: int) -> np.ndarray:
        """``count`` fixed patches (no augmentation), from held-out files when there are any."""
        rng = np.random.default_rng([seed, 23])
        if self.holdout:
            items = self._load_all(self.holdout, check_mixed=False)
        elif self.in_memory:
            items = self.items
        else:
            items = [it for p in self.files[: min(8, len(self.files))] for it in self.load_file(p)]
        return self._patches(items, size, count, rng)

    def _patches(self, items: list[np.ndarray], size: int, count: int, rng: np.random.Generator) -> np.ndarray:
        sampler = PatchSampler(self.rank, size, augment=False, domain=self.domain)
        usable = sampler.usable(items)
        if not usable:
            raise too_small(self.domain, size)
        return np.stack([sampler.sample(usable[rng.integers(len(usable))], rng) for _ in range(count)])

    def data_std(self, size: int, seed: int, count: int = 256) -> float:
        """The data's standard deviation in model units (EDM's ``sigma_data``): the RMS about zero of
        ``count`` random training patches, the scale the network's input and output are normalised by."""
        items = self.items if self.in_memory else [
            it for p in self.files[: min(8, len(self.files))] for it in self.load_file(p)]
        patches = self._patches(items, size, count, np.random.default_rng([seed, 31]))
        return float(np.sqrt(np.mean(np.square(patches, dtype=np.float64))))


def too_small(domain: str, size: int) -> InputError:
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
            raise too_small(source.domain, size)
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


def distributed_dataset(
    strategy: tf.distribute.Strategy, source: DataSource, size: int, global_batch: int, seed: int, start_step: int
) -> tf.distribute.DistributedDataset:
    """One :func:`make_dataset` per input pipeline, each starting at the batch the run resumes at."""
    replicas = strategy.num_replicas_in_sync

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each input pipeline feeds replicas_per_pipeline replicas one per-replica batch per step.
        per_pipeline = max(1, replicas // ctx.num_input_pipelines)
        return make_dataset(source, size, ctx.get_per_replica_batch_size(global_batch), seed,
                            ctx.input_pipeline_id, start_step * per_pipeline)

    return strategy.distribute_datasets_from_function(dataset_fn)
