"""Denoising a loaded file or an array: the steps in order, each done by its own module.

numpy only; the model is any :class:`~diffuse_cli.denoising.options.DenoisingModel`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from diffuse_cli import schedule as sch
from diffuse_cli.calibration import sigma_scale
from diffuse_cli.colour import OPPONENT_NOISE_GAIN, from_opponent, to_opponent
from diffuse_cli.denoising.estimate import axis_channels, estimation_pieces, group_sigmas, signal_noise
from diffuse_cli.denoising.fit import check_model_fits, check_sigma_model, needs_resampling, uses_opponent
from diffuse_cli.denoising.options import DenoiseOptions, DenoisingModel, ProgressFn, validate_options
from diffuse_cli.denoising.reverse import PositionNoise, reverse_from_observation, t_star
from diffuse_cli.denoising.tiling import Reader, Sink, plan_tiles, stream_tiles, tiles_per_call
from diffuse_cli.enums import Method, NoiseKind
from diffuse_cli.fullband import denoise_high_band, split_bands
from diffuse_cli.impulses import detect_impulses, fill_impulses, looks_salt_pepper
from diffuse_cli.resample import noise_std_factor, resample
from diffuse_cli.residual_check import CheckResult, ResidualSums, judge

if TYPE_CHECKING:
    from diffuse_cli.io import Media

_SIGMA_FLOOR = 0.015  # model units (~2 levels of 8-bit): below this a filled salt-pepper image is left as is
_NO_NOISE_T = 1e-3  # a t* at or below this has nothing to remove: the channels are passed through
_CAVEATS = {  # estimate.signal_caveats -> the note a user sees
    "short": "noise level estimated from under 64 samples: unreliable; give --sigma",
    "structure": "noise level estimated from the top of the band only (the series' own content fills the fine "
                 "detail): check it, or give --sigma",
}
_SHRINK_STEPS = 3  # the fallback halves a failing group's sigma at most this often, then keeps its input
_COLOURED_MIN_SECONDS = 2.0  # audio shorter than this is taken as white noise (the noise spectrum needs pauses)
OPPONENT_NAMES = ("luma", "red-blue", "magenta-green")  # the rows of colour.OPPONENT


def denoise_media(
    media: Media,
    model: DenoisingModel,
    options: DenoiseOptions,
    progress: ProgressFn | None = None,
    in_place: bool = False,
) -> tuple[Media, dict]:
    """Clean a loaded file: units, salt-and-pepper fill, noise level, tiled reverse process.

    Images and audio: ``sigma_model = sigma_file / media.scale``. Signals: robust-normalised per channel
    (``z = (x - median) / scale``), so ``sigma_model = sigma_file / scale``, and mapped back afterwards;
    time or index columns are never changed. A gray model cleans a colour image's opponent channels one by
    one (CBM3D's approach), the transform applied band by band as the tiles need it. Audio at another rate
    than the model's: see :class:`_Rates` and :func:`_clean_resampled`. Returns the cleaned Media (clipped
    to its value range, alpha untouched) and a report dict.

    Do no harm: as the rows are finished, :mod:`diffuse_cli.residual_check` compares what was removed with
    the noise assumed, per channel group; the report's ``check`` gives its verdict. With ``options.on_harm``
    ``"fallback"`` a failing group is cleaned again with half its sigma, up to ``_SHRINK_STEPS`` times, and
    keeps its input when none passes (:func:`_fall_back`).

    ``in_place``: write the cleaned samples over ``media.samples`` as the rows are finished (each row is
    written after the last tile that reads it), so a large file needs no second full-size array; for
    callers that do not use the noisy samples afterwards. Ignored where the output cannot share the
    input's array (resampled audio, integer samples, a read-only array) and with the fallback, which
    cleans again from the input.
    """
    validate_options(options)
    if options.noise_kind == NoiseKind.poisson:
        return _denoise_poisson(media, model, options, progress)
    notes = check_model_fits(model.config, media)
    x = np.asarray(media.samples)  # no copy: images and audio are float32 already
    x = x[:, None] if x.ndim == 1 else x
    z, centre, unit = _to_model_units(x, media)
    value_range = media.value_range if media.domain != "signal" else None
    z, kind, impulses = _remove_impulses(z, options.noise_kind, value_range, notes)
    rates = _Rates.split(z, media, model, notes) if needs_resampling(model.config, media) else None
    coloured = {}  # with --sigma the user asserts white noise; a multi-channel model has no such path
    upsampled = rates is not None and rates.high is None  # nothing above the file's band: not noise colour
    if media.domain == "audio" and options.sigma is None and int(model.config.channels) == 1 and not upsampled:
        rate = int(model.config.sample_rate or media.sample_rate)
        if rates:
            rates.low, coloured = _whiten_coloured(rates.low, rate, notes, copy=False)
        else:
            z, coloured = _whiten_coloured(z, rate, notes, copy=True)
    # The result: float32 for images and audio (the work dtype too), float64 for signals.
    dtype = media.samples.dtype if np.issubdtype(media.samples.dtype, np.floating) else np.float32
    work = np.dtype(np.float64 if rates else dtype)
    opponent = uses_opponent(model.config, media, z.shape[-1])
    unit = unit / OPPONENT_NOISE_GAIN if opponent else unit  # file-unit sigma s -> s * gain_k / scale
    read, shape = (rates.estimate_from(z) if rates else (_reader(z, work, opponent), z.shape))
    noise = _noise_levels(read, shape[:-1], _channel_groups(model, opponent, z.shape[-1]), unit, model, options,
                          value_range, rates.factor if rates else 1.0, media.domain, notes)
    for c, prepared in coloured.items():  # the white floor left after the coloured excess was removed
        noise.sigmas[c] = noise.blind[c] = float(prepared.sigma)
    calibrated = options.calibrate and options.method == Method.onestep and not noise.estimated
    calibration = model.config.sigma_calibration if calibrated else ()
    plan, untouched = _start_steps(noise, kind, model.schedule, notes, calibration)
    data_range = value_range if media.domain == "image" else None
    fallback = options.on_harm == "fallback"  # it cleans again from the input, so the input must be kept

    def clean_with(plan: list[tuple[slice, float | None]], sums: ResidualSums,
                   result: np.ndarray | None = None) -> np.ndarray:
        if rates:
            return _clean_resampled(rates, z.shape[0], media, model, options, plan, progress, sums)
        result = np.empty(z.shape, dtype=work) if result is None else result
        sink = _writer(result, x, work, opponent, centre, unit, untouched, value_range)
        model_input = _reader(z, work, opponent)
        _clean(model_input, z.shape, plan, model, options, _checked(sink, model_input, sums), progress, work,
               data_range)
        return result

    sums = ResidualSums(int(shape[-1]), int(model.rank))
    first = None if rates else _output_array(x, z.shape, work, in_place and not fallback)
    result = clean_with(plan, sums, first)
    verdicts = _judge(plan, sums, noise, model.schedule)
    harm = _Harm(verdicts)
    if fallback and not harm.passed:
        harm = _fall_back(harm, plan, noise, model.schedule, clean_with, int(shape[-1]), int(model.rank), result,
                          x, opponent)
    result = result[:, 0] if media.samples.ndim == 1 else result
    report = _report(noise, plan, kind, impulses, options, model.schedule, notes, opponent, calibration)
    report["check"] = harm.report(noise, opponent)
    if rates and rates.high is not None:
        report["energy_above_band"] = rates.share
    if coloured:
        report["noise_spectrum"] = {c: p.report(scale=float(noise.unit[c])) for c, p in coloured.items()}
    return media.with_samples(result.astype(dtype, copy=False)), report


def _denoise_poisson(media: Media, model: DenoisingModel, options: DenoiseOptions,
                     progress: ProgressFn | None) -> tuple[Media, dict]:
    """Camera noise (:mod:`diffuse_cli.denoising.poisson`): each channel through the Anscombe transform, the
    stabilised image cleaned by :func:`denoise_media` as Gaussian noise of the sigma that transform gives,
    then the exact unbiased inverse. The report's ``sigma`` is the read noise; ``gain`` and ``peak`` the
    photon noise's."""
    from diffuse_cli.denoising.poisson import denoise_poisson
    from diffuse_cli.errors import InputError

    if media.domain != "image":
        raise InputError(f"{media.source}: --noise-kind poisson is photon noise for images; use gaussian for "
                         f"{media.domain}")
    top = 2.0 * float(media.scale)  # the file's range is 0..top: 255, 65535, or 2 * 0.5 for float images
    z = (np.asarray(media.samples, dtype=np.float64) + 1.0) * media.scale
    # the stabilised noise is Gaussian and unclipped: the model's calibration for clipped files does not apply
    gaussian = replace(options, noise_kind=NoiseKind.gaussian, gain=None, calibrate=False)
    inner: dict = {}

    def denoise_gaussian(y: np.ndarray, sigma: float) -> np.ndarray:
        out, info = denoise_media(media.with_samples((y / media.scale - 1.0).astype(np.float32)), model,
                                  replace(gaussian, sigma=sigma), progress)
        inner.update(info)
        return (out.samples.astype(np.float64) + 1.0) * media.scale

    x, poisson = denoise_poisson(z, denoise_gaussian, top, gain=options.gain, sigma=options.sigma,
                                 source=media.source)
    how = "estimated" if poisson["gain_estimated"] else "given"
    notes = list(inner.get("notes", [])) + [
        f"Poisson noise: gain {poisson['gain']:.3g} ({how}; peak {poisson['peak']:.3g} counts), read noise "
        f"{poisson['sigma']:.3g}; cleaned as Gaussian noise of {poisson['stabilised_sigma']:.3g} after the "
        "Anscombe transform"]
    inner.pop("sigma_per_channel", None)  # the transformed image's, not the file's
    report = {**inner, **poisson, "noise_kind_used": "poisson", "notes": notes}
    cleaned = np.clip(x / media.scale - 1.0, -1.0, 1.0).astype(media.samples.dtype, copy=False)
    return media.with_samples(cleaned), report


def denoise_array(
    x: np.ndarray,
    model: DenoisingModel,
    sigma_model: float,
    options: DenoiseOptions,
    rng: np.random.Generator | None = None,
    progress: ProgressFn | None = None,
    data_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Clean ``x`` ((H, W, C) for rank-2 models, (N, C) for rank-1) observed with noise ``sigma_model``.

    Finds ``t* = sigma_to_t(sigma_model)`` and runs the reverse process over overlapping tiles/chunks.
    A 1-channel model cleans each channel of a multi-channel input on its own. DDPM noise is drawn by
    position (:class:`~diffuse_cli.denoising.reverse.PositionNoise`) from a seed taken from ``rng``, or
    ``options.seed`` when ``rng`` is None. ``data_range``: DDIM/DDPM clip their x0 estimates to it.
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
    out = np.empty(x.shape, dtype=out_dtype)

    def sink(a: int, rows: np.ndarray) -> None:
        out[a : a + rows.shape[0]] = rows

    seed = int(rng.integers(2**63)) if rng is not None else options.seed
    _clean(lambda a, b: x[a:b], x.shape, groups, model, options, sink, progress, out_dtype, data_range, seed)
    return out


# --------------------------------------------------------------------------- the steps of denoise_media


@dataclass
class _Noise:
    """The noise level of each channel group, in model units at the model's rate, and how it maps to the
    file's units."""

    groups: list[slice]  # channels cleaned together (one each for a 1-channel model)
    sigmas: list[float]  # model units; 0 for a channel with nothing to clean (e.g. a time column)
    unit: np.ndarray  # file units per model unit, per channel (resampled audio: over _Rates.factor)
    estimated: bool
    axes: list[int]  # time or index columns: never changed
    blind: list[float]  # the blind estimate of each group, model units (the sigmas themselves when estimated)


def _clean(read: Reader, shape: tuple[int, ...], plan: list[tuple[slice, float | None]], model: DenoisingModel,
           options: DenoiseOptions, sink: Sink, progress: ProgressFn | None, work: np.dtype | type,
           data_range: tuple[float, float] | None, seed: int | None = None) -> None:
    """The reverse process over the tiles of an input of ``shape`` (spatial + channels), rows to ``sink``.
    DDPM noise by position from ``seed`` (default ``options.seed``), so any tiling gives the same result."""
    if min(shape[:-1]) == 0:  # e.g. a few samples of audio, none left at the model's rate
        return
    tiling = plan_tiles(model, shape[:-1], options)
    noise = PositionNoise.fresh(options.seed if seed is None else seed)
    clean = functools.partial(reverse_from_observation, model, method=options.method, steps=options.steps,
                              rng=noise, data_range=data_range)
    stream_tiles(read, shape[-1], plan, tiling, clean, sink, tiles_per_call(tiling, options.batch), progress, work)


def _checked(sink: Sink, model_input: Reader, sums: ResidualSums | None) -> Sink:
    """``sink``, after adding each band of (input, output) rows in model units to the do-no-harm check's
    ``sums`` (the input rows are read before ``sink`` may write over them)."""
    if sums is None:
        return sink

    def checked(a: int, rows: np.ndarray) -> None:
        sums.add(model_input(a, a + rows.shape[0]), rows)
        sink(a, rows)

    return checked


def _judge(plan: list[tuple[slice, float | None]], sums: ResidualSums, noise: _Noise, schedule: sch.Schedule,
           only: set[int] | None = None) -> dict[int, CheckResult]:
    """The check's verdict (:func:`diffuse_cli.residual_check.judge`) for each channel group the model
    cleaned, by its index in ``plan`` (``only``: these groups), with the sigma its t* stands for."""
    verdicts = {}
    for i, (g, t) in enumerate(plan):
        if t is not None and (only is None or i in only):
            verdicts[i] = judge(sums.group(g), float(schedule.t_to_sigma(t)), noise.blind[i])
    return verdicts


@dataclass
class _Harm:
    """The check of a run: the verdict of each cleaned channel group and, after a fallback, the sigma each
    failing group was finally cleaned with (model units; None: its input was kept)."""

    verdicts: dict[int, CheckResult]
    fallback: dict[int, float | None] | None = None

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts.values())

    def report(self, noise: _Noise, opponent: bool) -> dict:
        """``check`` for ``--json``: ``passed`` and the numbers of the first failing channel group (else of
        the first cleaned one), what was done (``action``: none, warn, fallback; after a fallback the sigma
        it used, file units, or ``kept_input``) and a one-line ``message`` when it failed; with several
        groups, ``channel`` names the one shown and ``per_channel`` lists them all."""
        if not self.verdicts:
            return {"passed": True, "action": "none", "message": None}
        entries = {i: self._entry(i, noise) for i in self.verdicts}
        failing = [i for i, v in self.verdicts.items() if not v.passed]
        shown = failing[0] if failing else min(self.verdicts)
        info: dict = {"passed": not failing, **entries[shown]}
        if len(noise.groups) > 1:
            info["channel"] = _channel_name(shown, opponent)
        if len(entries) > 1:
            info["per_channel"] = [{"channel": _channel_name(i, opponent), **e} for i, e in entries.items()]
        info["action"] = "none" if not failing else ("fallback" if self.fallback is not None else "warn")
        info["message"] = self._message(noise, failing, opponent) if failing else None
        return info

    def _entry(self, i: int, noise: _Noise) -> dict:
        entry = {k: v for k, v in self.verdicts[i].report().items() if k != "passed"}
        entry["passed"] = self.verdicts[i].passed
        if self.fallback is not None and i in self.fallback:
            s = self.fallback[i]
            scale = _group_unit(noise.unit, noise.groups[i], noise.axes)
            entry["fallback_sigma"] = None if s is None else float(f"{s * scale:.6g}")
            entry["kept_input"] = s is None
        return entry

    def _message(self, noise: _Noise, failing: list[int], opponent: bool) -> str:
        """Why each failing group failed, and what was done: one line."""
        parts = []
        for i in failing:
            v, scale = self.verdicts[i], _group_unit(noise.unit, noise.groups[i], noise.axes)
            why = {"noise level": f"the input shows noise of only about {noise.blind[i] * scale:.3g}",
                   "anti-correlated": f"the output opposes what was removed (correlation "
                                      f"{v.output_correlation:+.2f})",
                   "structure": f"what was removed follows the signal's edges and bursts (correlation "
                                f"{v.structure_correlation:.2f})"}
            where = f"{_channel_name(i, opponent)}: " if len(noise.groups) > 1 else ""
            sigma = noise.sigmas[i] * scale
            text = f"{where}sigma {sigma:.4g} removed more than noise (" + "; ".join(why[r] for r in v.reasons) + ")"
            if self.fallback is None:
                text += "; give a smaller --sigma, or --on-harm fallback"
            elif self.fallback.get(i) is None:
                text += f"; kept the input as it was (sigma {sigma / 2 ** _SHRINK_STEPS:.3g} failed too)"
            else:
                text += f"; cleaned again with sigma {self.fallback[i] * scale:.4g}"
            parts.append(text)
        return "do no harm: " + " | ".join(parts)


def _channel_name(i: int, opponent: bool) -> str:
    """A channel group as the report names it: its index, or its opponent channel's name."""
    return OPPONENT_NAMES[i] if opponent else f"channel {i}"


def _fall_back(harm: _Harm, plan: list[tuple[slice, float | None]], noise: _Noise, schedule: sch.Schedule,
               clean_with: Callable[..., np.ndarray], channels: int, rank: int, result: np.ndarray, x: np.ndarray,
               opponent: bool) -> _Harm:
    """Clean each failing channel group again with half its sigma, up to ``_SHRINK_STEPS`` times, until the
    check passes; a group that never passes keeps its input. The other groups keep their output.
    Writes into ``result`` (file units); ``x`` is the input, unchanged. Returns the check with the
    fallback's sigmas."""
    final = {i: t for i, (_, t) in enumerate(plan)}  # each group's t* in the end (None: its input kept)
    sigma = {i: float(schedule.t_to_sigma(plan[i][1])) for i, v in harm.verdicts.items() if not v.passed}
    failing, chosen = set(sigma), {}
    again, again_plan = None, None
    for _ in range(_SHRINK_STEPS):
        trial = {}
        for i in sorted(failing):
            sigma[i] /= 2
            t = t_star(schedule, sigma[i])
            trial[i] = t if t > _NO_NOISE_T else None
        # A gray model on a colour image: every opponent channel makes every RGB channel, so all groups run.
        again_plan = [(g, trial[i] if i in trial else (final[i] if opponent else None))
                      for i, (g, _) in enumerate(plan)]
        sums = ResidualSums(channels, rank)
        again = clean_with(again_plan, sums)
        verdicts = _judge(again_plan, sums, noise, schedule, only=failing)
        passed = {i for i in failing if trial[i] is not None and verdicts[i].passed}
        for i in passed:
            final[i], chosen[i] = trial[i], sigma[i]
            if not opponent:
                result[..., plan[i][0]] = again[..., plan[i][0]]
        failing -= passed
        if not failing:
            break
    for i in failing:
        final[i], chosen[i] = None, None
        if not opponent:
            result[..., plan[i][0]] = x[..., plan[i][0]]
    if opponent:
        final_plan = [(g, final[i]) for i, (g, _) in enumerate(plan)]
        if final_plan != again_plan:
            again = clean_with(final_plan, ResidualSums(channels, rank))
        result[...] = again
    return _Harm(harm.verdicts, chosen)


@dataclass
class _Rates:
    """Audio at another rate than the model's: the model's part at its rate and, from a higher rate, the rest."""

    rate: int  # the file's
    model_rate: int
    factor: float  # noise std at the model's rate over the file's (resample.noise_std_factor)
    low: np.ndarray  # the audio at the model's rate
    high: np.ndarray | None  # above the model's band, at the file's rate (None from a lower rate)
    share: float  # the share of the energy in ``high``

    @classmethod
    def split(cls, z: np.ndarray, media: Media, model: DenoisingModel, notes: list[str]) -> _Rates:
        """From a higher rate, :func:`diffuse_cli.fullband.split_bands` (the two parts sum back exactly) and a
        note with the share of the energy above the model's band; from a lower one, resampled up."""
        rate, model_rate = int(media.sample_rate), int(model.config.sample_rate)
        factor = noise_std_factor(rate, model_rate)
        if rate < model_rate:
            return cls(rate, model_rate, factor, resample(z, rate, model_rate), None, 0.0)
        low, high = split_bands(z, rate, model_rate)
        total = float(np.sum(np.square(z, dtype=np.float64)))
        share = float(np.sum(np.square(high)) / total) if total > 0 else 0.0
        notes.append(f"{_percent(share)} % of the energy is above {model_rate // 2} Hz (the model's band): kept, "
                     "cleaned by spectral shrinkage, not by the model")
        return cls(rate, model_rate, factor, low, high, share)

    def estimate_from(self, z: np.ndarray) -> tuple[Reader, tuple[int, ...]]:
        """What the noise is estimated on: the lower of the two rates, where it needs no conversion (from a
        lower rate the factor is 1; at the model's rate the estimate is its noise, even for audio that was
        itself upsampled once and holds noise only below the model's Nyquist)."""
        data = z if self.high is None else self.low
        return (lambda a, b: data[a:b]), data.shape


def _clean_resampled(rates: _Rates, length: int, media: Media, model: DenoisingModel, options: DenoiseOptions,
                     plan: list[tuple[slice, float | None]], progress: ProgressFn | None,
                     sums: ResidualSums | None = None) -> np.ndarray:
    """The model cleans the audio at its own rate, then it goes back to the file's rate (``length`` samples).
    The part above the model's band is added back, in the channels the model cleans cleaned by
    :func:`diffuse_cli.fullband.denoise_high_band` (a per-frequency Wiener gain from that band's own noise
    estimate), in the others as it was. Clipped to the value range. ``sums`` gathers the do-no-harm check's
    sums at the model's rate."""
    out = np.empty(rates.low.shape, dtype=np.float64)

    def sink(a: int, rows: np.ndarray) -> None:
        out[a : a + rows.shape[0]] = rows

    low = lambda a, b: rates.low[a:b]  # noqa: E731
    _clean(low, rates.low.shape, plan, model, options, _checked(sink, low, sums), progress, np.float64, None)
    result = resample(out, rates.model_rate, rates.rate, length=length)
    if rates.high is not None:
        for g, t_start in plan:  # a channel the model leaves alone keeps its high band as it was
            high = rates.high[:, g]
            result[:, g] += denoise_high_band(high, rates.rate) if t_start is not None else high
    value_range = media.value_range
    return np.clip(result, *value_range) if value_range is not None else result


def _whiten_coloured(z: np.ndarray, rate: int, notes: list[str], copy: bool) -> tuple[np.ndarray, dict]:
    """Audio at the model's rate, each channel with mains hum and coloured noise above its white floor removed
    (:func:`diffuse_cli.coloured.prepare_for_white_model`), so the white-noise model cleans what is left at the
    floor's sigma. Returns the samples (a copy when ``copy`` and a channel changed: the input stays as it
    was) and the prepared channels by index (only those whose noise was not white)."""
    from diffuse_cli.coloured import prepare_for_white_model

    prepared = {}
    if z.shape[0] < _COLOURED_MIN_SECONDS * rate:  # too short to tell coloured noise from the signal's spectrum
        return z, prepared
    for c in range(z.shape[-1]):
        p = prepare_for_white_model(z[:, c], rate)
        if not p.coloured:
            continue
        if not prepared and copy:
            z = z.copy()
        z[:, c] = p.signal
        prepared[c] = p
        notes.extend(n for n in p.notes if n not in notes)
    return z, prepared


def _percent(share: float) -> str:
    """A share as a percentage with sensible digits: 62, 4.3, 0.02."""
    pct = 100.0 * share
    return f"{pct:.0f}" if pct >= 10 else f"{pct:.2g}"


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
                  model: DenoisingModel, options: DenoiseOptions, value_range: tuple[float, float] | None,
                  rate_factor: float = 1.0, domain: str | None = None, notes: list[str] | None = None) -> _Noise:
    """Noise per channel group in model units at the model's rate: the given ``--sigma`` (file units, at
    the file's rate) times ``rate_factor / unit``, checked; or estimated on what ``read`` gives (for
    resampled audio, :meth:`_Rates.estimate_from`). Time or index columns of 1D data get 0 in either case.
    The blind estimate is made with a given sigma too: the do-no-harm check compares the two."""
    rank, channels = int(model.rank), unit.shape[0]
    # 1D: the blind estimate is the noise level, or with --sigma the do-no-harm check's reference.
    pieces = estimation_pieces(read, shape, rank) if options.sigma is None or rank == 1 else None
    axes = axis_channels(pieces) if rank == 1 and (options.sigma is None or channels > 1) else []
    if options.sigma is None:
        if domain == "signal" and rank == 1:  # each channel's estimates computed once for both
            sigmas, caveats = signal_noise(pieces, groups)
            if notes is not None:
                notes.extend(_CAVEATS[c] for c in dict.fromkeys(caveats) if c)
        else:
            sigmas = group_sigmas(pieces, groups, rank, value_range, domain=domain)
        return _Noise(groups, sigmas, unit / rate_factor, True, axes, list(sigmas))
    reference = pieces if pieces is not None else _reference_crops(read, shape)
    blind = group_sigmas(reference, groups, rank, value_range, domain=domain)
    sigmas = []
    for g in groups:
        s = rate_factor * float(options.sigma) / _group_unit(unit, g, axes)
        check_sigma_model(s, model.schedule, f"--sigma {options.sigma}")
        only_axes = all(c in axes for c in range(*g.indices(channels)))
        sigmas.append(0.0 if only_axes else s)
    return _Noise(groups, sigmas, unit / rate_factor, False, axes, blind)


def _reference_crops(read: Reader, shape: tuple[int, ...], side: int = 64, grid: int = 3) -> np.ndarray:
    """The do-no-harm check's reference for an image cleaned with a given sigma: ``grid x grid`` crops of
    ``side`` pixels spread evenly over it (N, side, side, C), or the whole image when it is smaller. The
    blind estimate on them only has to tell whether the image holds half the noise assumed, and costs a
    small fraction of the full estimate's time."""
    h, w = shape
    if h * w <= grid * grid * side * side:
        return np.asarray(read(0, h), dtype=np.float64)[None]
    ch, cw = min(side, h), min(side, w)
    crops = []
    for top in np.linspace(0, h - ch, grid).round().astype(int):
        band = read(top, top + ch)
        crops.extend(np.array(band[:, left : left + cw], dtype=np.float64)
                     for left in np.linspace(0, w - cw, grid).round().astype(int))
    return np.stack(crops)


def _group_unit(unit: np.ndarray, group: slice, axes: list[int]) -> float:
    """File units per model unit of a channel group: the root mean square over its channels, time or index
    columns left out (their units, seconds or sample numbers, say nothing about the measurements')."""
    members = list(range(*group.indices(unit.shape[0])))
    channels = [c for c in members if c not in axes] or members
    return float(np.sqrt(np.mean(unit[channels] ** 2)))


def _start_steps(noise: _Noise, kind: NoiseKind, schedule: sch.Schedule, notes: list[str],
                 calibration: tuple[tuple[float, float], ...] = ()) -> tuple[list[tuple[slice, float | None]],
                                                                              list[slice]]:
    """t* per channel group (None: passed through), and the channels left exactly as they were.

    ``calibration``: the model's measured ``sigma_calibration`` for a given sigma (one-step): t* is taken
    for ``sigma_scale(calibration, s) * s`` (:mod:`diffuse_cli.calibration`). The do-no-harm check keeps
    judging against ``s`` itself.

    An estimate beyond the schedule is capped at its largest noise (with a note); after a salt-and-pepper
    fill, an estimate below ``_SIGMA_FLOOR`` is quantisation, not noise, and the filled values are kept.
    Time or index columns cleaned with others (a multi-channel model) are put back as they were.
    """
    top = float(schedule.t_to_sigma(schedule.timesteps))
    plan: list[tuple[slice, float | None]] = []
    untouched = [slice(c, c + 1) for c in noise.axes]
    for g, s in zip(noise.groups, noise.sigmas):
        if noise.estimated and s > top:
            notes.append(f"estimated noise {s:.3g} exceeds the model's range; capped at {top:.3g}")
            s = top
        skip = kind == NoiseKind.salt_pepper and noise.estimated and s < _SIGMA_FLOOR
        t_start = t_star(schedule, s * sigma_scale(calibration, s)) if s > 0 and not skip else 0.0
        if t_start > _NO_NOISE_T:
            plan.append((g, t_start))
            continue
        plan.append((g, None))
        if kind != NoiseKind.salt_pepper and g not in untouched:
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


def _report(noise: _Noise, plan: list[tuple[slice, float | None]], kind: NoiseKind, impulses: int,
            options: DenoiseOptions, schedule: sch.Schedule, notes: list[str], opponent: bool,
            calibration: tuple[tuple[float, float], ...] = ()) -> dict:
    """What was done, for the user and ``--json``: sigma in file units (:func:`_headline`), t* (of the
    calibrated sigma where ``calibration`` applies), method and
    notes. With several channel groups, ``sigma_per_channel`` gives each one's sigma in file units, None
    for one left as it was (a time column, a channel with no noise); ``sigma_channels`` names the opponent
    channels of a colour image cleaned by a gray model (their sigmas in RGB-equivalent units)."""
    sigma_file = [s * _group_unit(noise.unit, g, noise.axes) for g, s in zip(noise.groups, noise.sigmas)]
    cleaned = [i for i, (_, t) in enumerate(plan) if t is not None]
    headline = _headline(cleaned, noise.sigmas, opponent)
    sigma_model = float(np.median([noise.sigmas[i] for i in headline]))
    top = float(schedule.t_to_sigma(schedule.timesteps))
    info = {
        "sigma": float(np.median([sigma_file[i] for i in headline])),
        "sigma_model": sigma_model,
        "sigma_estimated": noise.estimated,
        "t_star": t_star(schedule, min(sigma_model * sigma_scale(calibration, sigma_model), top)),
        "method": options.method.value,
        "steps": 1 if options.method == Method.onestep else int(options.steps),
        "noise_kind_used": kind.value,
        "impulses": impulses,
        "notes": notes,
    }
    if len(noise.groups) > 1:
        info["sigma_per_channel"] = [sigma_file[i] if i in cleaned else None for i in range(len(noise.groups))]
    if opponent:
        info["sigma_channels"] = list(OPPONENT_NAMES)
    return info


def _headline(cleaned: list[int], sigmas: list[float], opponent: bool) -> list[int]:
    """The channel groups the headline sigma is the median of: the luma alone for a colour image (its
    chroma planes are often smoothed, JPEG's are, and would pull the median far below the noise one sees),
    else the groups actually cleaned; when none was, those with an estimate above 0 (or all)."""
    if opponent and 0 in cleaned:
        return [0]
    if cleaned:
        return cleaned
    return [i for i, s in enumerate(sigmas) if s > 0] or list(range(len(sigmas)))
