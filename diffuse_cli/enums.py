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
    """What noise ``denoise`` removes: Gaussian, salt-and-pepper (impulses filled first), or detect which."""

    gaussian = "gaussian"
    salt_pepper = "salt-pepper"
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
