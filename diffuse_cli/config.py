"""A model's configuration: one frozen, typed :class:`ModelConfig`, built and validated from ``config.json``
in one place (:meth:`ModelConfig.from_dict`), and read by attribute everywhere else.

No TensorFlow here: the LiteRT runtime, the CLI and the denoising engine read configs without it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace

from diffuse_cli.errors import InputError
from diffuse_cli.objectives import OBJECTIVES
from diffuse_cli.schedule import SCHEDULES

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.weights.h5"
SAVED_MODEL_DIR = "saved_model"
CHECKPOINT_DIR = "checkpoints"
DOMAINS = ("image", "audio", "signal")
ARCHS = ("unet", "dense")
EMBEDDINGS = ("sinusoidal", "learned")

# key: (JSON types, required). ``None`` in types means JSON null is allowed.
_SCHEMA: dict[str, tuple[tuple, bool]] = {
    "format_version": ((int,), True),
    "domain": ((str,), True),
    "channels": ((int,), True),
    "arch": ((str,), True),
    "widths": ((list,), False),
    "blocks": ((int,), False),
    "dense_hidden": ((int,), False),
    "length": ((int, type(None)), False),
    "embedding": ((str,), False),
    "embedding_dim": ((int,), False),
    "activation_noise": ((int, float), False),
    "kernel_size": ((int, type(None)), False),
    "schedule": ((str,), False),
    "timesteps": ((int,), False),
    "patch_size": ((int, type(None)), False),
    "sample_rate": ((int, type(None)), False),
    "objective": ((str,), False),
    "sigma_data": ((int, float), False),
    "sigma_calibration": ((list,), False),
    "training": ((dict,), False),
}


def default_kernel_size(domain: str) -> int:
    """3x3 for images; 1D uses a longer kernel (7) so a few levels see a few hundred samples of audio."""
    return 3 if domain == "image" else 7


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network and run it: field names are the ``config.json`` keys."""

    domain: str
    channels: int
    format_version: int = FORMAT_VERSION
    arch: str = "unet"
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: int = 1
    dense_hidden: int = 128
    length: int | None = None
    embedding: str = "sinusoidal"
    embedding_dim: int = 64
    activation_noise: float = 0.0
    kernel_size: int | None = None
    schedule: str = "linear"
    timesteps: int = 1000
    patch_size: int | None = None
    sample_rate: int | None = None
    objective: str = "eps"  # what the network outputs (diffuse_cli.objectives); absent in older models
    sigma_data: float = 0.5  # the data's standard deviation in model units, for the edm objective
    # [[sigma, k], ...] in model units, sigma increasing: one-step tells the network k * sigma
    # (diffuse_cli.calibration; measured by scripts/calibrate_sigma.py). Empty: k = 1.
    sigma_calibration: tuple[tuple[float, float], ...] = ()
    training: dict = field(default_factory=dict, compare=False)

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, cfg: object, source: str) -> ModelConfig:
        """Check types, names and ranges of a parsed ``config.json``; fill defaults for optional keys.

        Any problem raises InputError naming ``source`` (the config file) and the offending key.
        """
        _check_types(cfg, source)
        assert isinstance(cfg, dict)
        values = {k: v for k, v in cfg.items() if k in _SCHEMA}
        values["widths"] = tuple(values.get("widths", cls.widths))
        values["sigma_calibration"] = _calibration_points(values.get("sigma_calibration", []), source)
        for key in ("activation_noise", "sigma_data"):
            if key in values:
                values[key] = float(values[key])
        values.setdefault("patch_size", 64 if cfg["domain"] == "image" else 1024)
        config = cls(**values)
        config._check_ranges(source)
        return config

    def to_dict(self) -> dict:
        """The JSON-ready dict ``config.json`` holds (widths as a list)."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        out["sigma_calibration"] = [list(p) for p in self.sigma_calibration]
        if not self.sigma_calibration:
            del out["sigma_calibration"]
        return out

    def replace(self, **changes: object) -> ModelConfig:
        """A copy with ``changes`` applied (the config stays frozen)."""
        return replace(self, **changes)

    # ----------------------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        """2 for images, 1 for audio and signals."""
        return 2 if self.domain == "image" else 1

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the network accepts are multiples of this: ``2 ** (len(widths) - 1)``; dense: length."""
        if self.arch == "dense":
            return int(self.length or 0)
        return 2 ** (len(self.widths) - 1)

    @property
    def kernel(self) -> int:
        """The convolution kernel size in use: ``kernel_size`` or the domain's default."""
        return int(self.kernel_size or default_kernel_size(self.domain))

    @property
    def parameter_lower_bound(self) -> int:
        """Weights the network has at the least, from its largest layers alone (no building).

        Dense: the two big matrices ``(L*C) x H`` and ``H x (L*C)``. U-Net: the second convolution of every
        encoder block, ``k^rank * w * w`` per block. Plus a learned step table, ``(T + 1) * dim``. A weights
        file holding less than this cannot belong to the config (checked before anything is allocated).
        """
        total = (self.timesteps + 1) * self.embedding_dim if self.embedding == "learned" else 0
        if self.arch == "dense":
            return total + 2 * int(self.length or 0) * self.channels * self.dense_hidden
        k = self.kernel**self.rank
        return total + sum(self.blocks * k * w * w for w in self.widths)

    # ----------------------------------------------------------------------------------------------
    def _check_ranges(self, source: str) -> None:
        def bad(key: str, problem: str) -> InputError:
            return _bad(source, key, problem)

        if not 1 <= self.channels <= 4:
            raise bad("channels", f"is {self.channels}; must be 1..4")
        if self.arch not in ARCHS:
            raise bad("arch", f"is {self.arch!r}; use one of {', '.join(ARCHS)}")
        if self.embedding not in EMBEDDINGS:
            raise bad("embedding", f"is {self.embedding!r}; use one of {', '.join(EMBEDDINGS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"is {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.objective not in OBJECTIVES:
            raise bad("objective", f"is {self.objective!r}; use one of {', '.join(OBJECTIVES)}")
        if not (math.isfinite(self.sigma_data) and 0.0 < self.sigma_data <= 100.0):
            raise bad("sigma_data", "must be a number in (0, 100]")
        if not 2 <= self.timesteps <= 100_000:
            raise bad("timesteps", "must be 2..100000")
        if not 1 <= self.embedding_dim <= 4096:
            raise bad("embedding_dim", "must be 1..4096")
        if not (math.isfinite(self.activation_noise) and 0.0 <= self.activation_noise <= 10.0):
            raise bad("activation_noise", "must be a number in [0, 10]")
        if self.kernel_size is not None and not 1 <= self.kernel_size <= 63:
            raise bad("kernel_size", "must be 1..63 or null")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise bad("sample_rate", "must be positive or null")
        if self.patch_size is not None and self.patch_size < 1:
            raise bad("patch_size", "must be positive or null")
        if self.arch == "unet":
            if not self.widths or len(self.widths) > 8 or not all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in self.widths
            ):
                raise bad("widths", "must be a list of 1..8 integers in 1..4096")
            if not 1 <= self.blocks <= 16:
                raise bad("blocks", "must be 1..16")
            return
        if self.domain == "image":
            raise bad("arch", "'dense' is for fixed-length 1D signals, not images; use 'unet'")
        if self.length is None or not 1 <= self.length <= 1_000_000:
            raise bad("length", "must be a positive integer for arch 'dense'")
        if not 1 <= self.dense_hidden <= 1_000_000:
            raise bad("dense_hidden", "must be 1..1000000")


def _calibration_points(points: list, source: str) -> tuple[tuple[float, float], ...]:
    """``sigma_calibration`` as (sigma, k) pairs: sigma positive and increasing, k in (0, 4]."""
    out = []
    for p in points:
        ok = (isinstance(p, list) and len(p) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p))
        if not ok or not (p[0] > 0 and 0 < p[1] <= 4) or (out and p[0] <= out[-1][0]):
            raise _bad(source, "sigma_calibration", "must be [[sigma, k], ...] with sigma > 0 increasing and "
                       "k in (0, 4]")
        out.append((float(p[0]), float(p[1])))
    return tuple(out)


def _bad(source: str, key: str, problem: str) -> InputError:
    return InputError(f"{source}: '{key}' {problem}; fix the config or retrain the model")


def _check_types(cfg: object, source: str) -> None:
    """JSON types, required and unknown keys, format version and domain: what must hold before building."""
    if not isinstance(cfg, dict):
        raise InputError(f"{source}: config must be a JSON object; retrain or re-export the model")
    for key, (types, required) in _SCHEMA.items():
        if key not in cfg:
            if required:
                raise _bad(source, key, "is missing")
            continue
        value = cfg[key]
        # bool is an int subclass in Python; never accept it where a number is meant.
        if isinstance(value, bool) or not isinstance(value, types):
            names = "/".join("null" if t is type(None) else t.__name__ for t in types)
            raise _bad(source, key, f"must be {names}, got {type(value).__name__}")
    if cfg["format_version"] != FORMAT_VERSION:
        raise InputError(
            f"{source}: format_version {cfg['format_version']} is not supported (this diffuse reads "
            f"{FORMAT_VERSION}); retrain the model or upgrade diffuse"
        )
    if cfg["domain"] not in DOMAINS:
        raise _bad(source, "domain", f"is {cfg['domain']!r}; use one of {', '.join(DOMAINS)}")
    unknown = sorted(set(cfg) - set(_SCHEMA))
    if unknown:
        raise _bad(source, unknown[0], "is not a known key")




def default_config(domain: str, channels: int, **overrides: object) -> ModelConfig:
    """A complete, validated config for ``domain`` with ``channels``; keyword overrides replace any key."""
    cfg = ModelConfig(domain=domain, channels=int(channels)).to_dict()
    cfg["patch_size"] = 64 if domain == "image" else 1024
    cfg.update(overrides)
    if "widths" in overrides:
        cfg["widths"] = [int(w) for w in overrides["widths"]]  # type: ignore[union-attr]
    return ModelConfig.from_dict(cfg, "options")


def load_config(model_dir: str) -> ModelConfig:
    """Read and validate ``model_dir/config.json``; InputError when the directory or file is unusable."""
    if not os.path.isdir(model_dir):
        raise InputError(f"{model_dir}: model directory not found; pass a folder made by `diffuse train`")
    path = os.path.join(model_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing; this is not a model directory (train one with `diffuse train`)")
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable config ({exc.__class__.__name__}); retrain or re-export") from None
    return ModelConfig.from_dict(cfg, path)
