"""Tiles and streaming: inputs of any size cleaned in overlapping tiles (images) or chunks (1D).

Tiles are laid out for the least padded area, cleaned in batches, and blended with a smooth window
band by band along the first axis: besides the input and the output, memory holds one band of tiles
and its running sums, never a full-size float64 copy. numpy only; what cleans a batch of tiles is
passed in (:data:`CleanFn`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from diffuse_cli.denoising.options import DenoiseOptions, DenoisingModel, ProgressFn

Reader = Callable[[int, int], np.ndarray]  # rows a:b of the input (first spatial axis), model units
Sink = Callable[[int, np.ndarray], None]  # finished output rows a:a + len(rows), handed over in order
# (batch of tiles, t*, origins=[tile origin per tile], channel=first channel of the group) -> cleaned batch;
# the origins and channel let DDPM draw its noise by position (reverse.PositionNoise).
CleanFn = Callable[..., np.ndarray]

# Spatial elements per network call, all tiles of the call together: at most ``options.batch`` tiles and
# at most this many pixels (one 512x512 tile, four 256x256), or a quarter of it in samples (four
# 16384-sample chunks). On CPU smaller calls keep the activations in cache; larger ones were no faster
# and hold more memory (bench/README.md).
CALL_ELEMENTS = 1 << 18


def round_up(n: int, m: int) -> int:
    """The smallest multiple of ``m`` that is at least ``n``."""
    return -(-n // m) * m


def tile_starts(size: int, length: int, overlap: int) -> list[int]:
    """Starts of the fewest tiles of ``length`` that cover ``size`` with at least ``overlap`` between
    neighbours, spread evenly (first at 0, last ending at the border)."""
    if size <= length:
        return [0]
    count = -(-(size - overlap) // max(length - overlap, 1))
    return [i * (size - length) // (count - 1) for i in range(count)]


def axis_layout(size: int, tile: int, overlap: int, multiple: int, granule: int) -> tuple[int, list[int]]:
    """Tile length and starts along one axis, with the least padded area.

    An axis that fits in one tile gets one tile of ``size`` rounded up to the network's ``multiple``.
    Otherwise: the fewest tiles no longer than ``tile`` (rounded up to ``granule``, a multiple of
    ``multiple``) that cover the axis with ``overlap``, each as short as that allows, rounded up to ``granule``.
    A 512-pixel side with tile 256 and overlap 32 is three tiles of 192, not three of 256.
    """
    cap = round_up(max(tile, granule), granule)
    if size <= cap:
        return round_up(size, multiple), [0]
    count = max(2, -(-(size - overlap) // max(cap - overlap, 1)))
    while True:
        length = round_up(-(-(size + (count - 1) * overlap) // count), granule)
        if length <= cap:
            return length, tile_starts(size, length, overlap)
        count += 1


def ramp_window(length: int, ramp: int, start_ramp: bool, end_ramp: bool) -> np.ndarray:
    """1D blending window: 1 inside, ``sin^2(pi (i + 1/2) / (2 ramp))`` rising over the first ``ramp``
    samples (when a neighbour tile overlaps there) and the mirror falling at the end.

    The rise of one tile and the fall of its neighbour over the same ``ramp`` samples sum to 1
    (sin^2 + cos^2); the weights never reach 0, so dividing by their sum is always safe.
    """
    w = np.ones(length, dtype=np.float64)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        rise = np.sin(np.pi * (np.arange(ramp) + 0.5) / (2 * ramp)) ** 2
        if start_ramp:
            w[:ramp] = rise
        if end_ramp:
            w[length - ramp :] = rise[::-1]
    return w


@functools.lru_cache(maxsize=256)
def axis_window(length: int, size: int, start: int, ramp: int) -> np.ndarray:
    """Blending weights along one axis of the tile at ``start``: the ramp window over the part inside the
    input, 0 over the padding."""
    valid = min(length, size - start)
    full = np.zeros(length, dtype=np.float64)
    full[:valid] = ramp_window(valid, ramp, start > 0, start + length < size)
    full.flags.writeable = False
    return full


@dataclass(frozen=True)
class Tiling:
    """Tile geometry over the spatial axes (1 or 2) of one array."""

    shape: tuple[int, ...]  # spatial shape of the input
    tile: tuple[int, ...]  # tile size per axis (a multiple of the network's size multiple)
    starts: tuple[tuple[int, ...], ...]  # tile starts per axis
    overlap: int  # blending ramp length

    @classmethod
    def plan(cls, shape: tuple[int, ...], tile: int, overlap: int, multiple: int, exact: bool,
             granule: int | None = None) -> Tiling:
        """``exact``: every tile is exactly ``tile`` long (dense models with a fixed length); otherwise
        :func:`axis_layout` per axis (``granule``: what tile lengths are rounded to, default ``multiple``)."""
        sizes, starts = [], []
        for n in shape:
            if exact:
                length, axis_starts = tile, tile_starts(n, tile, overlap)
            else:
                length, axis_starts = axis_layout(n, tile, overlap, multiple, granule or multiple)
            sizes.append(length)
            starts.append(tuple(axis_starts))
        split = [t for t, s in zip(sizes, starts) if len(s) > 1]
        ramp = max(0, min(overlap, min(split) // 2)) if split else 0
        return cls(tuple(shape), tuple(sizes), tuple(starts), ramp)

    @property
    def count(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    @property
    def padded_ratio(self) -> float:
        """Elements the network processes over elements of the input (1.0: no overlap, no padding)."""
        return self.count * float(np.prod(self.tile)) / float(np.prod(self.shape))

    def positions(self) -> Iterator[tuple[int, ...]]:
        """Tile origins, sorted along the first axis (the order the streaming blend relies on)."""
        yield from itertools.product(*self.starts)

    def window(self, pos: tuple[int, ...]) -> np.ndarray:
        """Separable product of per-axis ramps, shape = tile."""
        w = None
        for p, t, n in zip(pos, self.tile, self.shape):
            axis = axis_window(t, n, int(p), self.overlap)
            w = axis if w is None else np.multiply.outer(w, axis)
        return w

    def cut(self, band: np.ndarray, pos: tuple[int, ...], row0: int) -> np.ndarray:
        """The tile at ``pos`` from ``band`` (the input's rows from ``row0``), reflect-padded at the end where
        the input is shorter than the tile."""
        sl = (slice(pos[0] - row0, pos[0] - row0 + self.tile[0]),)
        sl += tuple(slice(p, p + t) for p, t in zip(pos[1:], self.tile[1:]))
        piece = band[sl]
        pad = [(0, t - s) for t, s in zip(self.tile, piece.shape[: len(self.tile)])]
        if any(b for _, b in pad):
            piece = np.pad(piece, pad + [(0, 0)], mode="reflect" if min(piece.shape[:-1]) > 1 else "edge")
        return piece


def plan_tiles(model: DenoisingModel, shape: tuple[int, ...], options: DenoiseOptions) -> Tiling:
    """Tiles for a model: dense models their fixed length; image tiles the least padded area within
    ``options.tile``; 1D chunks of at most ``options.chunk``, lengths rounded to an eighth of it (a long
    recording is cut into chunks of exactly ``options.chunk``; a short one into a few shorter chunks)."""
    if model.config.arch == "dense":
        length = int(model.config.length)
        if shape[0] < length:
            raise ValueError(f"signal of {shape[0]} samples is shorter than the dense model's {length}")
        return Tiling.plan(shape, length, min(options.chunk_overlap, length // 4), 1, exact=True)
    multiple = int(model.size_multiple)
    if int(model.rank) == 2:
        return Tiling.plan(shape, options.tile, options.overlap, multiple, exact=False)
    granule = max(multiple, round_up(options.chunk // 8, multiple))
    return Tiling.plan(shape, options.chunk, options.chunk_overlap, multiple, exact=False, granule=granule)


def tiles_per_call(tiling: Tiling, batch: int) -> int:
    """Tiles per network call: at most ``batch`` and at most :data:`CALL_ELEMENTS` elements (1D: a quarter)."""
    budget = CALL_ELEMENTS if len(tiling.shape) == 2 else CALL_ELEMENTS // 4
    return max(1, min(batch, budget // int(np.prod(tiling.tile))))


class _RunningSums:
    """The blend of the output rows not yet handed over, ``lo .. lo + len(acc)``: ``sum(w * tile)`` per
    channel and ``sum(w)``."""

    def __init__(self, rest: tuple[int, ...], channels: int, dtype: type) -> None:
        self.rest, self.channels, self.dtype = rest, channels, dtype
        self.acc = np.zeros((0, *rest, channels), dtype=dtype)
        self.wsum = np.zeros((0, *rest), dtype=dtype)
        self.lo = 0  # first row not yet handed over

    def extend_to(self, end: int) -> None:
        """Hold the sums of every row before ``end``."""
        grow = end - self.lo - self.acc.shape[0]
        if grow > 0:
            self.acc = np.concatenate([self.acc, np.zeros((grow, *self.rest, self.channels), dtype=self.dtype)])
            self.wsum = np.concatenate([self.wsum, np.zeros((grow, *self.rest), dtype=self.dtype)])

    def place(self, tiling: Tiling, pos: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...], np.ndarray]:
        """Add the weights of the tile at ``pos``; return where it lands in the sums, its part inside the
        input, and its weights (with a channel axis)."""
        sl = tuple(slice(q, min(q + t, n)) for q, t, n in zip(pos, tiling.tile, tiling.shape))
        inside = tuple(slice(0, s.stop - s.start) for s in sl)
        sl = (slice(sl[0].start - self.lo, sl[0].stop - self.lo), *sl[1:])
        w = tiling.window(pos)[inside]
        self.wsum[sl] += w
        return sl, inside, w[..., None]

    def add(self, places: list, channels: slice, cleaned: np.ndarray) -> None:
        """Add cleaned tiles (one per place) to the sums of ``channels``."""
        for (sl, inside, w), tile_out in zip(places, cleaned):
            self.acc[sl + (channels,)] += w * tile_out[inside]

    def hand_over(self, upto: int, sink: Sink, read: Reader, passive: list[slice]) -> None:
        """Blend the rows before ``upto`` (no later tile touches them) and give them to ``sink``; the
        ``passive`` channels are copied from the input."""
        if upto <= self.lo:
            return
        k = upto - self.lo
        rows = self.acc[:k] / self.wsum[:k, ..., None]
        if passive:
            given = read(self.lo, upto)
            for g in passive:
                rows[..., g] = given[..., g]
        sink(self.lo, rows)
        self.acc, self.wsum, self.lo = self.acc[k:], self.wsum[k:], upto


def stream_tiles(
    read: Reader,
    channels: int,
    groups: list[tuple[slice, float | None]],
    tiling: Tiling,
    clean: CleanFn,
    sink: Sink,
    per_call: int,
    progress: ProgressFn | None = None,
    dtype: type = np.float64,
) -> None:
    """Clean the tiles of an input of spatial shape ``tiling.shape``, one band of rows at a time.

    ``groups``: (channel slice, t*) pairs; each slice is cleaned by its own ``clean(tiles, t*, origins=...,
    channel=...)`` calls (``per_call`` tiles at a time; ``origins`` the tiles' positions, ``channel`` the
    slice's first channel), or passed through when t* is None. ``sink`` gets the output rows (``dtype``,
    model units) in order, each row once: ``sum(w * tile) / sum(w)``, the sums kept in ``dtype`` (float32
    for images and audio: half the memory of a band). Only the tiles of the current
    band, their input rows and the running sums are held, so memory stays bounded by what ``read``
    and ``sink`` keep. No row is read after it is handed to the sink, so the sink may overwrite the input.
    """
    n0, length0 = tiling.shape[0], tiling.tile[0]
    active = [(g, t) for g, t in groups if t is not None]
    passive = [g for g, t in groups if t is None]
    if not active:
        for a in range(0, n0, max(length0, 1)):
            sink(a, np.array(read(a, min(a + length0, n0)), dtype=dtype))
        return
    positions = list(tiling.positions())
    total, done = len(positions) * len(active), 0
    sums = _RunningSums(tiling.shape[1:], channels, dtype)
    bands: dict[int, np.ndarray] = {}  # input rows of the tile rows in flight, by start
    for i in range(0, len(positions), per_call):
        group = positions[i : i + per_call]
        sums.extend_to(max(min(p[0] + length0, n0) for p in group))
        for start in sorted({p[0] for p in group} - bands.keys()):
            bands[start] = read(start, min(start + length0, n0))
        places = [sums.place(tiling, p) for p in group]
        for g, t_start in active:
            tiles = np.stack([tiling.cut(bands[p[0]][..., g], p, p[0]) for p in group])
            sums.add(places, g, clean(tiles, t_start, origins=group, channel=g.start or 0))
            done += len(group)
            if progress is not None:
                progress(done, total)
        upto = positions[i + per_call][0] if i + per_call < len(positions) else n0
        sums.hand_over(upto, sink, read, passive)
        for start in [s for s in bands if s < upto]:
            del bands[start]
