"""What `diffuse train` can set: :class:`TrainOptions`, defined once, its checks, and the noise levels
it implies in model units. No TensorFlow here.

Noise levels are given in file units (25 for an 8-bit image means 25 grey levels) and converted to model
units (``sigma_model = sigma_file / scale``, the file's ``Media.scale``) in one place,
:func:`noise_levels`, once the data (and so the scale) is known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum

from diffuse_cli.enums import Arch, Embedding, Loss, Objective, Precision, ScheduleKind, Strategy, Xla
from diffuse_cli.errors import InputError

# Low-noise range the ``low_noise_fraction`` share of each batch is drawn from, in model units: images
# 1..60 grey levels (of 255, model range [-1, 1]); audio in [-1, 1] full scale; signals in robust (MAD) units.
LOW_NOISE_SIGMA = {"image": (2.0 / 255.0, 120.0 / 255.0), "audio": (5e-4, 0.2), "signal": (0.02, 1.5)}
VAL_SIGMA_MODEL = {"image": 25.0 / 127.5, "audio": 0.1, "signal": 0.1}
LOSS_TERMS = ("mse", "l1", "ssim")


@dataclass(frozen=True)
class TrainOptions:
    """Everything `diffuse train` can set (the CLI's options by the same names). Sizes in samples/pixels."""

    data: list[str]
    out: str
    arch: str = "unet"  # an Arch value (the CLI passes the member)
    widths: Sequence[int] = (32, 64, 128)
    blocks: int = 1
    dense_hidden: int = 128
    length: int | None = None  # dense: fixed signal length (default: patch_size or 256)
    embedding: str = "sinusoidal"  # Embedding
    embedding_dim: int = 64
    activation_noise: float = 0.0
    kernel_size: int | None = None  # conv kernel (default 3 for images, 7 for 1D)
    schedule: str = "linear"  # ScheduleKind
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
    objective: str | None = None  # Objective; None: edm for a U-Net, eps (the seed's loss) for dense
    loss: str = "mse"  # Loss: mse, l1, ssim or a sum such as mse+ssim
    loss_weights: Sequence[float] | dict | None = None  # one per loss term (default 1; ssim 0.1 when mixed)
    ema: float = 0.999
    checkpoint_every: int = 100
    keep: int = 3
    resume: bool = False
    export_only: bool = False
    init_from: str | None = None  # a model directory or a bundled model's name: start from its weights
    tflite: bool = True  # also write model.tflite (LiteRT) with the saved model
    strategy: str = "default"  # Strategy
    precision: str = "auto"  # Precision; auto: mixed (float16 compute) on a GPU, else float32
    xla: str = "auto"  # Xla; auto: on with a GPU. XLA-compiles the forward/backward pass
    seed: int = 0
    val_sigma: float | None = None  # file units (25 for 8-bit images); None = VAL_SIGMA_MODEL[domain]
    val_count: int = 16  # fixed validation patches
    low_noise_fraction: float = 0.5
    low_noise_sigma: tuple[float, float] | None = None  # file units, LO < HI; None = LOW_NOISE_SIGMA[domain]
    memory_limit_mb: float = 2048.0  # decoded data above this is streamed from disk file by file
    patches_per_file: int = 32  # streaming: patches cut from each file per visit
    log_every: int = 10
    extra: dict = field(default_factory=dict)  # free-form notes copied into the training summary


FIELDS = tuple(f.name for f in fields(TrainOptions))

def choice(kind: type[Enum], value: object, flag: str) -> str:
    """The ``.value`` of ``value`` (a member of ``kind`` or its string); InputError naming ``flag`` otherwise."""
    try:
        return kind(value).value
    except ValueError:
        names = ", ".join(str(m.value) for m in kind)
        raise InputError(f"{flag} {value}: unknown; use one of {names}") from None


def check_options(o: TrainOptions) -> TrainOptions:
    """``o`` with its fixed choices as plain strings, after checking every range (InputError naming the option)."""
    o = replace(
        o, arch=choice(Arch, o.arch, "--arch"), embedding=choice(Embedding, o.embedding, "--embedding"),
        schedule=choice(ScheduleKind, o.schedule, "--schedule"), loss=choice(Loss, o.loss, "--loss"),
        strategy=choice(Strategy, o.strategy, "--strategy"), precision=choice(Precision, o.precision, "--precision"),
        xla=choice(Xla, o.xla, "--xla"),
        objective=None if o.objective is None else choice(Objective, o.objective, "--objective"),
    )
    for ok, message in _range_checks(o):
        if not ok:
            raise InputError(message)
    loss_terms(o)
    return o


def _range_checks(o: TrainOptions) -> list[tuple[bool, str]]:
    """(holds, message) for every numeric option."""
    low = o.low_noise_sigma
    return [
        (len(o.widths) >= 1 and all(int(w) >= 1 for w in o.widths), "--widths: give positive integers, e.g. 32,64,128"),
        (o.blocks >= 1, "--blocks: must be at least 1"),
        (o.batch_size == "auto" or (isinstance(o.batch_size, int) and o.batch_size >= 1),
         f"--batch-size {o.batch_size}: give a positive whole number or auto"),
        (2 <= o.timesteps <= 100_000, "--timesteps: must be 2..100000"),
        (o.embedding_dim >= 1, "--embedding-dim: must be at least 1"),
        (o.max_steps is None or o.max_steps >= 1, "--max-steps: must be at least 1"),
        (o.epochs is None or o.epochs >= 1, "--epochs: must be at least 1"),
        (o.steps_per_epoch >= 1, "--steps-per-epoch: must be at least 1"),
        (math.isfinite(o.lr) and o.lr > 0, "--lr: must be a positive number"),
        (0.0 <= o.ema < 1.0, "--ema: must be in [0, 1)"),
        (o.checkpoint_every >= 1, "--checkpoint-every: must be at least 1"),
        (o.keep >= 1, "--keep: must be at least 1"),
        (o.activation_noise >= 0, "--activation-noise: must be >= 0"),
        (0.0 <= o.low_noise_fraction <= 1.0, "--low-noise-fraction: must be in [0, 1]"),
        (low is None or (len(low) == 2 and 0 < low[0] < low[1] < math.inf),
         f"--low-noise-sigma {','.join(f'{v:g}' for v in low or ())}: give LO,HI with 0 < LO < HI, e.g. 1,100"),
        (o.channels in (None, 1, 3), "--channels: must be 1 or 3"),
        (o.patch_size is None or o.patch_size >= 4, "--patch-size: must be at least 4"),
        (o.length is None or o.length >= 1, "--length: must be positive"),
        (o.val_sigma is None or (math.isfinite(o.val_sigma) and o.val_sigma > 0), "--val-sigma: must be > 0"),
    ]


def loss_terms(o: TrainOptions) -> dict[str, float]:
    """``--loss mse+ssim`` with weights ``(1, 0.1)`` or ``{"mse": 1, "ssim": 0.1}`` -> ``{"mse": 1.0, "ssim": 0.1}``.

    Without weights every term weighs 1, except SSIM in a mix: 0.1.
    """
    names = choice(Loss, o.loss, "--loss").split("+")
    weights = o.loss_weights
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


def default_objective(o: TrainOptions) -> str:
    """``--objective``, else edm for a U-Net (every noise level weighted equally) and eps for dense."""
    if o.objective is not None:
        return o.objective
    return Objective.edm.value if o.arch == Arch.unet else Objective.eps.value


def total_steps(o: TrainOptions) -> int:
    """max_steps, else epochs * steps_per_epoch (10 epochs when neither is given)."""
    if o.max_steps is not None:
        return int(o.max_steps)
    return int((o.epochs or 10) * o.steps_per_epoch)


@dataclass(frozen=True)
class NoiseLevels:
    """The options' noise levels in model units for data of one domain and scale."""

    low_noise: tuple[float, float]  # log-uniform range of the low-noise share of each batch
    validation: float  # noise of the validation patches


def noise_levels(o: TrainOptions, domain: str, scale: float) -> NoiseLevels:
    """File units -> model units: ``sigma_model = sigma_file / scale``; domain defaults where not given."""
    low = LOW_NOISE_SIGMA[domain]
    if o.low_noise_sigma:
        low = (o.low_noise_sigma[0] / scale, o.low_noise_sigma[1] / scale)
    val = o.val_sigma / scale if o.val_sigma else VAL_SIGMA_MODEL[domain]
    return NoiseLevels(low_noise=(float(low[0]), float(low[1])), validation=float(val))

