"""The fixed choices of the command-line options, one ``str`` Enum each.

Typer shows them in ``--help`` (``[onestep|ddim|ddpm]``) and rejects other values with its standard
one-line usage error (exit 2). The engine compares against ``.value`` strings, so configs and JSON stay
plain text.
"""

from __future__ import annotations

from enum import Enum


class Method(str, Enum):
    """How ``denoise`` runs the reverse process from the observation."""

    onestep = "onestep"
    ddim = "ddim"
    ddpm = "ddpm"


class NoiseKind(str, Enum):
    """What noise ``denoise`` removes: Gaussian, salt-and-pepper (impulses filled first), Poisson-Gaussian camera
    noise (through the Anscombe transform), or detect which of the first two."""

    gaussian = "gaussian"
    salt_pepper = "salt-pepper"
    poisson = "poisson"
    auto = "auto"


class Arch(str, Enum):
    unet = "unet"
    dense = "dense"


class Embedding(str, Enum):
    sinusoidal = "sinusoidal"
    learned = "learned"


class ScheduleKind(str, Enum):
    linear = "linear"
    cosine = "cosine"


class Loss(str, Enum):
    """Training loss terms, alone or summed (``+``); ``--loss-weights`` follow the order of the value."""

    mse = "mse"
    l1 = "l1"
    ssim = "ssim"
    mse_ssim = "mse+ssim"
    l1_ssim = "l1+ssim"
    mse_l1 = "mse+l1"
    mse_l1_ssim = "mse+l1+ssim"


class Objective(str, Enum):
    """What the trained network outputs (diffuse_cli.objectives): the noise, the clean data, or EDM's F."""

    eps = "eps"
    x0 = "x0"
    edm = "edm"


class Precision(str, Enum):
    """Training and inference arithmetic: auto (mixed on a GPU, else float32), float32, mixed (float16 compute)."""

    auto = "auto"
    float32 = "float32"
    mixed = "mixed"


class Xla(str, Enum):
    """XLA-compile the training forward/backward pass: auto (on with a GPU), on, off."""

    auto = "auto"
    on = "on"
    off = "off"


class Strategy(str, Enum):
    """tf.distribute strategy of a training run."""

    default = "default"
    mirrored = "mirrored"
    multi_worker = "multi-worker"


class Runtime(str, Enum):
    """What runs a model's network at inference: LiteRT (model.tflite, no TensorFlow) or TensorFlow."""

    auto = "auto"
    litert = "litert"
    tensorflow = "tensorflow"


class OnHarm(str, Enum):
    """``denoise --on-harm``: what to do when the removed part does not look like the noise assumed."""

    auto = "auto"  # fallback for CSV/TXT/NPY signals, warn for images and audio (cleaned in place)
    warn = "warn"
    fallback = "fallback"
    error = "error"
