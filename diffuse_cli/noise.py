"""Noise models: Gaussian (sigma or target SNR), salt-and-pepper, Poisson (camera) and forward diffusion q(x_t | x_0).

numpy only. The array functions work in model units; :func:`noise_media` takes a user's
options in the file's own units (design §1) and converts them once, here at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffuse_cli import metrics
from diffuse_cli.errors import InputError
from diffuse_cli.schedule import Schedule, q_sample

KINDS = ("gaussian", "salt-pepper", "poisson", "diffusion")


def add_noise(data: np.ndarray, noise_scale: float = 0.1, rng: np.random.Generator | None = None) -> np.ndarray:
    """The seed's noise addition layer: ``data + N(0, noise_scale^2)`` (here with an explicit generator)."""
    rng = rng or np.random.default_rng()
    return data + rng.normal(scale=noise_scale, size=np.shape(data))


def sigma_for_snr(x: np.ndarray, snr_db: float, zero_mean: bool = False) -> float:
    """Noise std that gives a target SNR: ``sigma = sqrt(P / 10^(snr_db / 10))`` with ``P = mean(x^2)``.

    ``zero_mean`` (signals): ``P = mean((x - mean_c(x))^2)``, the power around each channel's (last axis)
    mean, so a DC level (20 degrees C of a temperature log) does not count as signal.
    """
    x = np.asarray(x, dtype=np.float64)
    if zero_mean:
        x = x - metrics.channel_means(x)
    power = float(np.mean(x**2))
    return float(np.sqrt(power / 10.0 ** (snr_db / 10.0)))


def add_salt_pepper(
    x: np.ndarray,
    amount: float,
    salt_ratio: float,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Set a fraction ``amount`` of positions (pixels or samples, all channels together) to an extreme.

    Exactly ``round(amount * n)`` positions are hit; of those, ``round(salt_ratio * hits)`` become
    ``high`` (salt) and the rest ``low`` (pepper). Returns (noisy, mask of hit positions).
    """
    x = np.array(x, copy=True)
    positions = x.shape[:-1]  # last axis is channels
    n = int(np.prod(positions))
    hits = int(round(amount * n))
    chosen = rng.choice(n, size=hits, replace=False)
    n_salt = int(round(salt_ratio * hits))
    flat = x.reshape(n, x.shape[-1])
    flat[chosen[:n_salt]] = high
    flat[chosen[n_salt:]] = low
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return flat.reshape(x.shape), mask.reshape(positions)


def add_poisson(
    x: np.ndarray, peak: float, top: float, rng: np.random.Generator, sigma: float = 0.0
) -> np.ndarray:
    """Camera (Poisson-Gaussian) noise on clean values ``x`` in ``0..top``: ``z = g p + n`` with ``g = top / peak``,
    ``p ~ Poisson(x / g)`` and ``n ~ N(0, sigma^2)``.

    ``peak`` is the photon count at ``top`` (fewer counts: more noise); ``sigma`` (read noise) is in ``x``'s
    units. Negative ``x`` counts as 0. Not clipped: the caller clips to the file's range.
    """
    gain = float(top) / float(peak)
    counts = rng.poisson(np.maximum(np.asarray(x, dtype=np.float64), 0.0) / gain)
    noisy = gain * counts
    if sigma > 0:
        noisy = noisy + rng.normal(0.0, sigma, size=noisy.shape)
    return noisy


def forward_diffusion(
    x0: np.ndarray, step: float, schedule: Schedule, rng: np.random.Generator
) -> np.ndarray:
    """Forward diffusion at step t: ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``, eps ~ N(0, I)."""
    eps = rng.standard_normal(np.shape(x0))
    return q_sample(np.asarray(x0, dtype=np.float64), eps, schedule.alpha_bar_at(step))


@dataclass
class NoiseOptions:
    """What ``diffuse noise`` asks for. sigma is in the file's own units (0-255 for 8-bit images)."""

    kind: str = "gaussian"
    sigma: float | None = None
    snr: float | None = None
    amount: float = 0.05
    salt_ratio: float = 0.5
    peak: float | None = None  # poisson: photon count at the top of the range
    step: float | None = None
    schedule: str = "linear"
    timesteps: int = 1000
    seed: int | None = None


def validate_options(opts: NoiseOptions) -> None:
    """Reject impossible option values with a one-line reason (exit code 2 in the CLI)."""
    if opts.kind not in KINDS:
        raise InputError(f"--kind {opts.kind!r}: unknown noise kind; use one of {', '.join(KINDS)}")
    if opts.kind == "gaussian":
        if (opts.sigma is None) == (opts.snr is None):
            raise InputError("--kind gaussian needs exactly one of --sigma or --snr")
        if opts.sigma is not None and not (np.isfinite(opts.sigma) and opts.sigma >= 0):
            raise InputError(f"--sigma {opts.sigma}: must be a finite number >= 0")
        if opts.snr is not None and not np.isfinite(opts.snr):
            raise InputError(f"--snr {opts.snr}: must be a finite number of dB")
    if opts.kind == "salt-pepper":
        if not 0 <= opts.amount <= 1:
            raise InputError(f"--amount {opts.amount}: must be a fraction between 0 and 1")
        if not 0 <= opts.salt_ratio <= 1:
            raise InputError(f"--salt-ratio {opts.salt_ratio}: must be between 0 and 1")
    if opts.kind == "poisson":
        if opts.peak is None or not (np.isfinite(opts.peak) and opts.peak > 0):
            raise InputError("--kind poisson needs --peak, the photon count at full scale (> 0; fewer is "
                             "noisier, e.g. 30)")
        if opts.snr is not None:
            raise InputError("--snr is for --kind gaussian; --kind poisson takes --peak (and --sigma for read "
                             "noise)")
        if opts.sigma is not None and not (np.isfinite(opts.sigma) and opts.sigma >= 0):
            raise InputError(f"--sigma {opts.sigma}: must be a finite number >= 0 (the read noise)")
    if opts.kind == "diffusion":
        if opts.timesteps < 2 or opts.timesteps > 100_000:
            raise InputError(f"--timesteps {opts.timesteps}: must be between 2 and 100000")
        if opts.step is None or not (0 <= opts.step <= opts.timesteps):
            raise InputError(f"--step {opts.step}: --kind diffusion needs --step between 0 and --timesteps")
        if opts.schedule not in ("linear", "cosine"):
            raise InputError(f"--schedule {opts.schedule!r}: use linear or cosine")


def axis_columns(x: np.ndarray) -> list[int]:
    """Columns of an (N, C) signal that are time/index axes: exact straight lines (second differences ~ 0), or
    strictly monotonic with steps that vary by at most half their median, ``max|d2| <= 0.5 median|d|`` (a time
    axis written with rounded decimals, or with an occasional gap)."""
    if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        return []
    d = np.diff(x, axis=0)
    d2 = np.abs(np.diff(x, n=2, axis=0))
    span = np.max(np.abs(x), axis=0) + 1e-300

    def is_axis(c: int) -> bool:
        if not np.ptp(x[:, c]) > 0:
            return False
        if np.all(d2[:, c] <= 1e-9 * span[c]):
            return True
        monotonic = bool(np.all(d[:, c] > 0) or np.all(d[:, c] < 0))
        return monotonic and float(np.max(d2[:, c])) <= 0.5 * float(np.median(np.abs(d[:, c])))

    return [c for c in range(x.shape[1]) if is_axis(c)]


def quantize_like_file(media, samples: np.ndarray) -> np.ndarray:
    """What the saved file will hold: clipped to the value range; for integer images rounded to levels, for
    CSV/TXT signals rounded to the decimals each column was read with (in the input's own format)."""
    out = np.asarray(samples, dtype=np.float64)
    if media.value_range is not None:
        out = np.clip(out, *media.value_range)
    if media.domain == "image" and media.bit_depth in (8, 16):
        out = np.round((out + 1.0) * media.scale) / media.scale - 1.0
    if media.domain == "signal":
        from diffuse_cli.io import round_like_text

        out = round_like_text(media, out)
    return out


def noise_media(media, opts: NoiseOptions):
    """Add the requested noise to a loaded file; returns (noisy Media, report dict).

    The report gives the noise actually used in file units and the achieved PSNR
    (images, on the 0..max scale) or SNR (audio/signals) of what will be written.
    """
    validate_options(opts)
    rng = np.random.default_rng(opts.seed)
    full = np.asarray(media.samples, dtype=np.float64)
    report: dict = {"kind": opts.kind, "seed": opts.seed}
    # A straight-line column of a signal (time or index axis, e.g. "time" in a sensor CSV) is not a
    # measurement: it is left untouched and out of the SNR.
    axes = axis_columns(full) if media.domain == "signal" else []
    measured = [c for c in range(full.shape[-1]) if c not in axes]
    if axes:
        report["untouched_columns"] = axes
    x = full[..., measured]
    if opts.kind == "gaussian":
        if opts.sigma is not None:
            sigma_model = opts.sigma / media.scale
        else:
            sigma_model = sigma_for_snr(x, opts.snr, zero_mean=media.domain == "signal")
            if sigma_model == 0:
                what = "does not vary" if media.domain == "signal" else "is silent (all zeros)"
                raise InputError(f"{media.source}: the {media.domain} {what}, so no noise level gives "
                                 f"--snr {opts.snr:g} dB; use --sigma to add noise of a given size")
        noisy = x + rng.standard_normal(x.shape) * sigma_model
        report["sigma"] = sigma_model * media.scale
    elif opts.kind == "salt-pepper":
        if media.value_range is not None:
            low, high = media.value_range
        else:  # signals have no fixed range: use their own extremes
            low, high = float(x.min()), float(x.max())
        noisy, mask = add_salt_pepper(x, opts.amount, opts.salt_ratio, low, high, rng)
        report["amount"] = float(mask.mean())
        report["salt_ratio"] = opts.salt_ratio
    elif opts.kind == "poisson":
        if media.domain != "image":
            raise InputError(f"{media.source}: --kind poisson is photon noise for images; use --kind gaussian "
                             f"for {media.domain}")
        top = 2.0 * media.scale  # the file's 0..top range
        read = float(opts.sigma or 0.0)
        noisy = add_poisson((x + 1.0) * media.scale, opts.peak, top, rng, sigma=read) / media.scale - 1.0
        report.update(peak=opts.peak, gain=top / opts.peak, sigma=read)
    else:
        schedule = Schedule.create(opts.schedule, opts.timesteps)
        if media.domain == "signal":
            # Signals have arbitrary units: diffuse in robust-normalised units and map back.
            from diffuse_cli.io import robust_denormalize, robust_normalize

            z, centre, scale = robust_normalize(x)
            noisy = robust_denormalize(forward_diffusion(z, opts.step, schedule, rng), centre, scale)
        else:
            noisy = forward_diffusion(x, opts.step, schedule, rng)
        ab = float(schedule.alpha_bar_at(opts.step))
        report.update(step=opts.step, schedule=opts.schedule, timesteps=opts.timesteps, alpha_bar=ab)
    out = full.copy()
    out[..., measured] = noisy
    written = quantize_like_file(media, out)
    # Against the input's own file values (exact levels, not their float32 copies): --sigma 0 reports inf.
    clean = quantize_like_file(media, full)[..., measured]
    report.update(quality_report(media, clean, written[..., measured]))
    return media.with_samples(written.astype(media.samples.dtype)), report


def quality_report(media, clean: np.ndarray, other: np.ndarray) -> dict:
    """PSNR/SSIM-free quick report: PSNR (dB, file scale) for images, SNR (dB) for audio and signals.

    A signal's SNR is taken around each channel's mean (as ``--snr`` sets it); the caller passes only the
    measured columns, not time/index axes (:func:`axis_columns`).
    """
    if media.domain == "image":
        return {"psnr_db": round(metrics.psnr(clean, other, data_range=2.0), 4)}
    return {"snr_db": round(metrics.snr_db(clean, other, zero_mean=media.domain == "signal"), 4)}
