"""What a denoising run is given: its options and the model interface it needs.

numpy only. Any object with the :class:`DenoisingModel` attributes works (modelstore.LoadedModel, a
LiteRT model, a test dummy): the denoiser never imports a network runtime itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from diffuse_cli import schedule as sch
from diffuse_cli.enums import Method, NoiseKind
from diffuse_cli.errors import InputError

if TYPE_CHECKING:
    from diffuse_cli.config import ModelConfig

ProgressFn = Callable[[int, int], None]  # (tiles done, tiles in all)
# What to do when the removed part does not look like the assumed noise (diffuse_cli.residual_check):
# warn (a note), fallback (shrink sigma and clean again, at last keep the input), error (the caller refuses).
ON_HARM = ("warn", "fallback", "error")


class DenoisingModel(Protocol):
    """What denoising needs from a model."""

    config: ModelConfig
    schedule: sch.Schedule
    rank: int  # spatial axes: 2 images, 1 audio and signals
    size_multiple: int  # every tile side must be a multiple of this

    def eps(self, x_t: np.ndarray, t: np.ndarray) -> np.ndarray: ...


class InferenceModel:
    """The :class:`DenoisingModel` every runtime builds on: the facts denoising reads, taken from the config,
    and ``eps`` from the runtime's raw network call (:meth:`network`) through the config's objective."""

    runtime = ""  # what the --json record reports ("litert", "tensorflow")

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.schedule = sch.Schedule.create(config.schedule, config.timesteps)
        self.domain = config.domain
        self.channels = config.channels
        self.rank = config.rank
        self.size_multiple = config.size_multiple

    def network(self, fed: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The raw network output for its input ``fed`` (B, *spatial, C) at steps ``t`` (B,), float32."""
        raise NotImplementedError

    def eps(self, x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Predicted noise for a batch: ``x_t`` (B, *spatial, C), ``t`` (B,) real steps; float32 out.

        The network's own output is turned into eps for the model's objective (diffuse_cli.objectives).
        """
        from diffuse_cli import objectives

        x_t = np.ascontiguousarray(x_t, dtype=np.float32)
        t = np.broadcast_to(np.asarray(t, dtype=np.float32).reshape(-1), (x_t.shape[0],))
        ab = self.schedule.alpha_bar_at(t)
        return objectives.predict_eps(lambda fed: self.network(fed, t), x_t, ab, self.config.objective,
                                      self.config.sigma_data)


@dataclass
class DenoiseOptions:
    sigma: float | None = None  # file units; None = estimate
    method: Method = Method.onestep
    steps: int = 10  # DDIM/DDPM steps
    noise_kind: NoiseKind = NoiseKind.gaussian
    seed: int | None = None
    # Largest image tile side (pixels): a photo up to 512x512 is one network call with no overlap
    # (bench/README.md compares tile sizes).
    tile: int = 512
    overlap: int = 32  # image tile overlap (pixels)
    batch: int = 8  # most tiles or chunks per network call (also capped by tiling.CALL_ELEMENTS)
    chunk: int = 16384  # 1D chunk length (samples); dense models use their fixed length
    chunk_overlap: int = 1024  # 1D chunk overlap (samples)
    on_harm: str = "warn"  # one of ON_HARM
    # one-step with a given sigma: apply the model's measured sigma_calibration (diffuse_cli.calibration);
    # off only to measure that calibration (scripts/calibrate_sigma.py)
    calibrate: bool = True
    gain: float | None = None  # noise_kind poisson: file units per photon count; None = estimated

    def __post_init__(self) -> None:
        # Plain strings are accepted ("ddim"); an unknown one fails here with ValueError.
        self.method = Method(self.method)
        self.noise_kind = NoiseKind(self.noise_kind)


def validate_options(options: DenoiseOptions) -> None:
    """One-line InputError for option values that cannot work (the choices are checked by their Enums)."""
    if options.steps < 1:
        raise InputError(f"--steps {options.steps}: must be at least 1")
    poisson = options.noise_kind == NoiseKind.poisson
    if options.sigma is not None and not (math.isfinite(options.sigma) and (options.sigma > 0 or
                                                                            poisson and options.sigma == 0)):
        raise InputError(f"--sigma {options.sigma}: must be a positive number in the file's units (e.g. 25)"
                         + ("; with --noise-kind poisson it is the read noise, 0 allowed" if poisson else ""))
    if options.gain is not None and not poisson:
        raise InputError("--gain is for --noise-kind poisson (camera noise); drop it or add --noise-kind poisson")
    if options.gain is not None and not (math.isfinite(options.gain) and options.gain > 0):
        raise InputError(f"--gain {options.gain}: must be a positive number of file units per photon count "
                         "(255/peak for 8-bit)")
    if options.tile < 8:
        raise InputError(f"--tile {options.tile}: must be at least 8 pixels")
    if options.overlap < 0 or options.overlap >= options.tile:
        raise InputError(f"--overlap {options.overlap}: must be >= 0 and smaller than --tile {options.tile}")
    if options.batch < 1:
        raise InputError(f"--batch {options.batch}: must be at least 1")
    if options.on_harm not in ON_HARM:
        raise InputError(f"--on-harm {options.on_harm}: use one of {', '.join(ON_HARM)}")
    if options.chunk < 16 or not 0 <= options.chunk_overlap < options.chunk:
        raise InputError(f"chunk {options.chunk} / overlap {options.chunk_overlap}: need chunk >= 16 and "
                         "0 <= overlap < chunk")
