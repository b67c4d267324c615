"""Denoising a loaded file or an array: the steps in order, each done by its own module.

numpy only; the model is any :class:`~diffuse_cli.denoising.options.DenoisingModel`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from diffuse_cli import schedule as sch
from diffuse_cli.colour import OPPONENT_NOISE_GAIN, from_opponent, to_opponent
from diffuse_cli.denoising.estimate import estimation_pieces, group_sigmas
from diffuse_cli.denoising.fit import check_model_fits, check_sigma_model, needs_resampling, uses_opponent
from diffuse_cli.denoising.options import DenoiseOptions, DenoisingModel, ProgressFn, validate_options
from diffuse_cli.denoising.reverse import reverse_from_observation, t_star
from diffuse_cli.denoising.tiling import Reader, Sink, plan_tiles, stream_tiles, tiles_per_call
from diffuse_cli.enums import Method, NoiseKind
from diffuse_cli.impulses import detect_impulses, fill_impulses, looks_salt_pepper

if TYPE_CHECKING:
    from diffuse_cli.io import Media

_SIGMA_FLOOR = 0.015  # model units (~2 levels of 8-bit): below this a filled salt-pepper image is left as is
_NO_NOISE_T = 1e-3  # a t* at or below this has nothing to remove: the channels are passed through


def denoise_media(
    media: Media,
    model: DenoisingModel,
    options: DenoiseOptions,
    progress: ProgressFn | None = None,
    in_place: bool = False,
) -> tuple[Media, dict]:
    """Clean a loaded file: units, salt-and-pepper fill, noise level, tiled reverse process.

    Images and audio: ``sigma_model = sigma_file / media.scale``. Signals: robust-normalised per channel
    (``z = (x - median) / scale``), so ``sigma_model = sigma_file / scale``, and mapped back afterwards.
    A gray model cleans a colour image's opponent channels one by one (CBM3D's approach), the transform
    applied band by band as the tiles need it. Returns the cleaned Media (clipped to its value range,
    alpha untouched) and a report dict.

    ``in_place``: write the cleaned samples over ``media.samples`` as the rows are finished (each row is
    written after the last tile that reads it), so a large file needs no second full-size array; for
    callers that do not use the noisy samples afterwards. Ignored where the output cannot share the
    input's array (resampled audio, integer samples, a read-only array).
    """
    validate_options(options)
    notes = check_model_fits(model.config, media)
    resampled = needs_resampling(model.config, media)
    x = np.asarray(media.samples)  # no copy: images and audio are float32 already
    x = x[:, None] if x.ndim == 1 else x
    z, centre, unit = _to_model_units(_resample(x, media, model) if resampled else x, media)
    value_range = media.value_range if media.domain != "signal" else None
    z, kind, impulses = _remove_impulses(z, options.noise_kind, value_range, notes)
    # The result: float32 for images and audio (the work dtype too), float64 for signals.
    dtype = media.samples.dtype if np.issubdtype(media.samples.dtype, np.floating) else np.float32
    work = np.dtype(np.float64 if resampled else dtype)
    opponent = uses_opponent(model.config, media, z.shape[-1])
    unit = unit / OPPONENT_NOISE_GAIN if opponent else unit  # file-unit sigma s -> s * gain_k / scale
    read = _reader(z, work, opponent)
    noise = _noise_levels(read, z.shape[:-1], _channel_groups(model, opponent, z.shape[-1]), unit, model,
                          options, value_range)
    plan, untouched = _start_steps(noise, kind, model.schedule, notes)
    result = _output_array(x, z.shape, work, in_place and not resampled)
    sink = _writer(result, x, work, opponent, centre, unit, untouched, value_range)
    tiling = plan_tiles(model, z.shape[:-1], options)
    clean = functools.partial(reverse_from_observation, model, method=options.method, steps=options.steps,
                              rng=np.random.default_rng(options.seed))
    stream_tiles(read, z.shape[-1], plan, tiling, clean, sink, tiles_per_call(tiling, options.batch), progress, work)
    if resampled:
        result = _resample_back(result, media, model, value_range)
    result = result[:, 0] if media.samples.ndim == 1 else result
    report = _report(noise, kind, impulses, options, model.schedule, notes)
    return media.with_samples(result.astype(dtype, copy=False)), report


def denoise_array(
    x: np.ndarray,
    model: DenoisingModel,
    sigma_model: float,
    options: DenoiseOptions,
    rng: np.random.Generator | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Clean ``x`` ((H, W, C) for rank-2 models, (N, C) for rank-1) observed with noise ``sigma_model``.

    Finds ``t* = sigma_to_t(sigma_model)`` and runs the reverse process over overlapping tiles/chunks.
    A 1-channel model cleans each channel of a multi-channel input on its own.
    Returns model units, same shape as ``x``; float64 for float64 input (signals), else float32.
    """
    x = np.asarray(x)
    out_dtype = np.float64 if x.dtype == np.float64 else np.float32  # signals keep precision
    rank = int(model.rank)
    if x.ndim == rank:
        x = x[..., None]
    if x.ndim != rank + 1:
        raise ValueError(f"expected a rank-{rank} input with channels, got shape {x.shape}")
    t_start = t_star(model.schedule, sigma_model)
    if t_start <= _NO_NOISE_T:  # no noise to remove
        return x.astype(out_dtype)
    channels = int(model.config.channels)
    if channels == x.shape[-1]:
        groups = [(slice(0, x.shape[-1]), t_start)]
    elif channels == 1:
        groups = [(slice(c, c + 1), t_start) for c in range(x.shape[-1])]
    else:
        raise ValueError(f"a {channels}-channel model cannot clean {x.shape[-1]} channels")
    tiling = plan_tiles(model, x.shape[:-1], options)
    out = np.empty(x.shape, dtype=out_dtype)

    def sink(a: int, rows: np.ndarray) -> None:
        out[a : a + rows.shape[0]] = rows

    clean = functools.partial(reverse_from_observation, model, method=options.method, steps=options.steps, rng=rng)
    stream_tiles(lambda a, b: x[a:b], x.shape[-1], groups, tiling, clean, sink, tiles_per_call(tiling, options.batch),
                 progress, out_dtype)
    return out


# --------------------------------------------------------------------------- the steps of denoise_media


@dataclass
class _Noise:
    """The noise level of each channel group, in model units, and how it maps to the file's units."""

    groups: list[slice]  # channels cleaned together (one each for a 1-channel model)
    sigmas: list[float]  # model units; 0 for a channel with nothing to clean (e.g. a time column)
    unit: np.ndarray  # file units per model unit, per channel
    estimated: bool


def _resample(x: np.ndarray, media: Media, model: DenoisingModel) -> np.ndarray:
    """Audio to the model's rate (the model only knows its own; :func:`_resample_back` returns)."""
    from diffuse_cli.resample import resample

    return resample(x, int(media.sample_rate), int(model.config.sample_rate))


def _resample_back(result: np.ndarray, media: Media, model: DenoisingModel,
                   value_range: tuple[float, float] | None) -> np.ndarray:
    """Back to the file's rate and exact sample count, clipped to its range."""
    from diffuse_cli.resample import resample

    result = resample(result, int(model.config.sample_rate), int(media.sample_rate), length=media.samples.shape[0])
    return np.clip(result, *value_range) if value_range is not None else result


def _to_model_units(x: np.ndarray, media: Media) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(z, centre, unit)``: signals robust-normalised per channel, ``z = (x - centre) / unit``; images and
    audio as they are (``centre`` None), ``unit = media.scale`` file units per model unit."""
    if media.domain != "signal":
        return x, None, np.full((x.shape[-1],), float(media.scale))
    from diffuse_cli.io import robust_normalize

    z, centre, unit = robust_normalize(np.asarray(x, dtype=np.float64))
    return z, centre, np.broadcast_to(np.asarray(unit, dtype=np.float64), (x.shape[-1],))


def _remove_impulses(z: np.ndarray, kind: NoiseKind, value_range: tuple[float, float] | None,
                     notes: list[str]) -> tuple[np.ndarray, NoiseKind, int]:
    """Salt-and-pepper first: decide (``auto``), detect and fill the impulses; the Gaussian part is left
    to the model. Returns the filled samples, the noise kind used and the number of impulses."""
    if kind == NoiseKind.auto:
        is_sp, _ = looks_salt_pepper(z, value_range)
        kind = NoiseKind.salt_pepper if is_sp else NoiseKind.gaussian
        notes.append(f"auto: {'salt-and-pepper' if is_sp else 'Gaussian'} noise detected")
    if kind != NoiseKind.salt_pepper:
        return z, kind, 0
    mask = detect_impulses(z, value_range)
    return fill_impulses(z, mask), kind, int(mask.sum())


def _reader(z: np.ndarray, work: np.dtype, opponent: bool) -> Reader:
    """Rows of the model's input: ``z`` itself, or its opponent channels computed band by band (never a
    full-size copy)."""
    if opponent:
        return lambda a, b: to_opponent(z[a:b], work)
    return lambda a, b: z[a:b]


def _channel_groups(model: DenoisingModel, opponent: bool, channels: int) -> list[slice]:
    """A 1-channel model cleans each channel of a 1D input (or opponent channel) alone, from its own noise
    level; otherwise all channels go together."""
    per_channel = (int(model.rank) == 1 or opponent) and int(model.config.channels) == 1 and channels > 1
    return [slice(c, c + 1) for c in range(channels)] if per_channel else [slice(0, channels)]


def _noise_levels(read: Reader, shape: tuple[int, ...], groups: list[slice], unit: np.ndarray,
                  model: DenoisingModel, options: DenoiseOptions,
                  value_range: tuple[float, float] | None) -> _Noise:
    """Noise per channel group: the given ``--sigma`` (file units) converted and checked, or estimated."""
    if options.sigma is None:
        pieces = estimation_pieces(read, shape, int(model.rank))
        return _Noise(groups, group_sigmas(pieces, groups, int(model.rank), value_range), unit, True)
    sigmas = []
    for g in groups:
        s = float(options.sigma) / float(np.sqrt(np.mean(unit[g] ** 2)))
        check_sigma_model(s, model.schedule, f"--sigma {options.sigma}")
        sigmas.append(s)
    return _Noise(groups, sigmas, unit, False)


def _start_steps(noise: _Noise, kind: NoiseKind, schedule: sch.Schedule,
                 notes: list[str]) -> tuple[list[tuple[slice, float | None]], list[slice]]:
    """t* per channel group (None: passed through), and the groups left exactly as they were.

    An estimate beyond the schedule is capped at its largest noise (with a note); after a salt-and-pepper
    fill, an estimate below ``_SIGMA_FLOOR`` is quantisation, not noise, and the filled values are kept.
    """
    top = float(schedule.t_to_sigma(schedule.timesteps))
    plan: list[tuple[slice, float | None]] = []
    untouched: list[slice] = []
    for g, s in zip(noise.groups, noise.sigmas):
        if noise.estimated and s > top:
            notes.append(f"estimated noise {s:.3g} exceeds the model's range; capped at {top:.3g}")
            s = top
        skip = kind == NoiseKind.salt_pepper and noise.estimated and s < _SIGMA_FLOOR
        t_start = t_star(schedule, s) if s > 0 and not skip else 0.0
        if t_start > _NO_NOISE_T:
            plan.append((g, t_start))
            continue
        plan.append((g, None))
        if kind != NoiseKind.salt_pepper:
            untouched.append(g)
    return plan, untouched


def _output_array(x: np.ndarray, shape: tuple[int, ...], work: np.dtype, in_place: bool) -> np.ndarray:
    """The input's own array when cleaning in place is asked for and possible (same dtype, writeable; safe:
    stream_tiles reads no row after handing it over), else a new one."""
    if in_place and x.dtype == work and x.flags.writeable:
        return x
    return np.empty(shape, dtype=work)


def _writer(result: np.ndarray, x: np.ndarray, work: np.dtype, opponent: bool, centre: np.ndarray | None,
            unit: np.ndarray, untouched: list[slice], value_range: tuple[float, float] | None) -> Sink:
    """Where finished rows go: back to file units (inverse opponent transform, signal units; untouched
    signal channels copied bit-exact from ``x``), clipped, written into ``result``."""

    def sink(a: int, rows: np.ndarray) -> None:
        b = a + rows.shape[0]
        if opponent:
            rows = from_opponent(rows, work)
        if centre is not None:
            from diffuse_cli.io import robust_denormalize

            rows = robust_denormalize(rows, centre, unit)
            for g in untouched:  # bit-exact, not normalised and back
                rows[..., g] = x[a:b, g]
        if value_range is not None:
            np.clip(rows, *value_range, out=rows)
        result[a:b] = rows

    return sink


def _report(noise: _Noise, kind: NoiseKind, impulses: int, options: DenoiseOptions, schedule: sch.Schedule,
            notes: list[str]) -> dict:
    """What was done, for the user and ``--json``: sigma in file units (the median over the channels that
    had noise; a straight time column estimates 0 and is left alone), t*, method and notes."""
    sigma_file = [float(s * np.sqrt(np.mean(noise.unit[g] ** 2))) for g, s in zip(noise.groups, noise.sigmas)]
    noisy = [i for i, s in enumerate(noise.sigmas) if s > 0] or list(range(len(noise.groups)))
    sigma_model = float(np.median([noise.sigmas[i] for i in noisy]))
    top = float(schedule.t_to_sigma(schedule.timesteps))
    info = {
        "sigma": float(np.median([sigma_file[i] for i in noisy])),
        "sigma_model": sigma_model,
        "sigma_estimated": noise.estimated,
        "t_star": t_star(schedule, min(sigma_model, top)),
        "method": options.method.value,
        "steps": 1 if options.method == Method.onestep else int(options.steps),
        "noise_kind_used": kind.value,
        "impulses": impulses,
        "notes": notes,
    }
    if len(noise.groups) > 1:
        info["sigma_per_channel"] = sigma_file
    return info
