"""Whether a model can clean a file, and how: model-fit checks, the resampling decision, the noise range.

Each check fails with a one-line InputError that names the model (or option) and what would fit.
numpy only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from diffuse_cli import schedule as sch
from diffuse_cli.errors import InputError

if TYPE_CHECKING:
    from diffuse_cli.config import ModelConfig
    from diffuse_cli.io import Media

_CHANNEL_NAMES = {1: "gray (1-channel)", 3: "RGB (3-channel)"}


def check_model_fits(config: ModelConfig, media: Media, model_name: str = "model") -> list[str]:
    """InputError (one line, naming the model that would fit) when the model cannot clean this media.

    Image models need images with the same channel count (a gray model also cleans colour images,
    through the opponent channels); 1D models (audio or signal) take audio and signals alike, a
    1-channel 1D model cleaning each channel alone. Returns notes for the user.
    """
    samples = media.samples
    have = samples.shape[-1] if samples.ndim >= 2 else 1
    if media.domain == "image":
        return _check_image_model(config, media, have, model_name)
    return _check_1d_model(config, media, have, model_name)


def uses_opponent(config: ModelConfig, media: Media, channels: int) -> bool:
    """A gray model on a colour image: it cleans the opponent (luma/chroma) channels one by one."""
    return media.domain == "image" and int(config.channels) == 1 and channels == 3


def needs_resampling(config: ModelConfig, media: Media) -> bool:
    """Audio at another rate than the model's: resampled to the model's rate and back."""
    rate = config.sample_rate
    have = getattr(media, "sample_rate", None)
    return bool(media.domain == "audio" and rate and have and int(have) != int(rate))


def check_sigma_model(sigma_model: float, schedule: sch.Schedule, what: str) -> None:
    """A given noise level, in model units, must be positive and within the schedule's largest noise."""
    top = float(schedule.t_to_sigma(schedule.timesteps))
    if not (math.isfinite(sigma_model) and sigma_model > 0):
        raise InputError(f"{what}: must be a positive number in the file's units (e.g. 25 for 8-bit images)")
    if sigma_model > top:
        raise InputError(f"{what}: is {sigma_model:.4g} in model units, beyond the schedule's largest noise "
                         f"{top:.4g}; give the noise std in the file's units (e.g. 25 for 8-bit images)")


def _check_image_model(config: ModelConfig, media: Media, have: int, model_name: str) -> list[str]:
    kind, channels = config.domain, int(config.channels)
    if kind != "image":
        raise InputError(f"{model_name}: a {kind} model cannot clean the image {media.source or ''}; use an "
                         f"image model with {have} channel(s) (train one with `diffuse train --channels {have}` "
                         "on images)")
    if channels == 1 and have == 3:
        return ["gray model on a colour image: each opponent (luma/chroma) channel cleaned alone"]
    if channels != have:
        what = _CHANNEL_NAMES.get(have, f"{have}-channel")
        raise InputError(f"{model_name}: a {channels}-channel image model cannot clean this {what} image; it "
                         f"needs a {have}-channel image model (train one with `diffuse train --channels {have}`)")
    return []


def _check_1d_model(config: ModelConfig, media: Media, have: int, model_name: str) -> list[str]:
    kind, channels = config.domain, int(config.channels)
    if kind == "image":
        raise InputError(f"{model_name}: an image model cannot clean {media.domain} data; use an audio or signal "
                         "model (train one with `diffuse train` on audio or signal files)")
    if channels != 1 and channels != have:
        raise InputError(f"{model_name}: a {channels}-channel {kind} model cannot clean {have}-channel "
                         f"{media.domain} data; use a 1-channel model (it cleans each channel alone) or one "
                         f"with {have} channels")
    if config.arch == "dense":
        length = int(config.length or 0)
        if media.samples.shape[0] < length:
            raise InputError(f"{media.source or 'input'}: {media.samples.shape[0]} samples is shorter than the "
                             f"dense model's fixed length {length}; use a U-Net model or a longer signal")
    notes = []
    if kind != media.domain:
        article = "an" if str(kind)[:1] in "aeiou" else "a"
        notes.append(f"{article} {kind} model used on {media.domain} data (both are 1D)")
    if needs_resampling(config, media):
        rate = int(config.sample_rate)
        notes.append(f"resampled {media.sample_rate} Hz -> {rate} Hz (the model's rate) and back")
    return notes
