"""Step encodings: the seed's sinusoidal formula (numpy; accepts real-valued t).

The Keras layers that feed an encoding into a network (sinusoidal or a learned embedding
table) live in :mod:`diffuse_cli.networks`; this module stays numpy-only so that
``diffuse encode-steps`` never imports TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np


def angle_rates(d_model: int) -> np.ndarray:
    """``angle_rates[i] = 1 / 10000^(2 * (i // 2) / d_model)`` for i = 0..d_model-1 (the seed's formula)."""
    return 1 / np.power(10000, (2 * (np.arange(d_model) // 2)) / np.float32(d_model))


def sinusoidal_step_encoding(t: np.ndarray | float, d_model: int) -> np.ndarray:
    """Sinusoidal step encoding, exactly as the seed computes it.

    ``angle = t * angle_rates``; ``enc[:, 2k] = sin(angle[:, 2k])``, ``enc[:, 2k+1] = cos(angle[:, 2k+1])``.

    ``t`` is a scalar or any array of (real-valued) steps; returns shape ``(n, d_model)``.
    """
    if d_model < 1:
        raise ValueError("d_model must be a positive integer")
    t = np.asarray(t, dtype=np.float64).reshape(-1, 1)
    angle_rads = t * angle_rates(d_model)
    angle_rads[:, 0::2] = np.sin(angle_rads[:, 0::2])
    angle_rads[:, 1::2] = np.cos(angle_rads[:, 1::2])
    return angle_rads


MAX_STEPS = 100_000  # rows of one encode-steps table
MAX_VALUES = 1 << 24  # steps x dimensions of one table (128 MiB of float64)


def range_count(start: float, stop: float, step: float) -> int:
    """Number of values in ``START:STOP:STEP`` (STOP excluded), as ``np.arange`` makes them:
    ``ceil((stop - start) / step)``, computed without building the range."""
    return max(0, math.ceil((stop - start) / step))


def parse_steps(text: str) -> np.ndarray:
    """Parse ``--steps``: a comma list (``0,5,10.5``) or a range ``START:STOP[:STEP]`` (STOP excluded).

    At most ``MAX_STEPS`` values; a range is counted before anything is allocated. Raises ValueError with
    a one-line reason (and the fix) on anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty step list")
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad range {text!r}; use START:STOP[:STEP]")
        start, stop = float(parts[0]), float(parts[1])
        step = float(parts[2]) if len(parts) == 3 else 1.0
        if not all(math.isfinite(v) for v in (start, stop, step)):
            raise ValueError(f"bad range {text!r}; START, STOP and STEP must be finite numbers")
        if step <= 0 or stop <= start:
            raise ValueError(f"bad range {text!r}; need STOP > START and STEP > 0")
        count = range_count(start, stop, step)
        if count > MAX_STEPS:
            raise ValueError(f"too many steps ({count}); at most {MAX_STEPS}: use a larger STEP or a shorter range")
        values = np.arange(start, stop, step, dtype=np.float64)
    else:
        values = np.array([float(v) for v in text.split(",") if v.strip() != ""], dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"bad step list {text!r}")
    if np.any(values < 0):
        raise ValueError(f"steps must be >= 0, got {text!r}")
    if values.size > MAX_STEPS:
        raise ValueError(f"too many steps ({values.size}); at most {MAX_STEPS}: give fewer steps")
    return values
