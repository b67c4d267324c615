"""Shared test helpers: run the CLI as a user would, and make small synthetic inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np


@dataclass
class Result:
    returncode: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="replace")


def diffuse(*args, stdin: bytes | None = None, timeout: float = 300, env: dict | None = None) -> Result:
    """Run `python -m diffuse_cli ARGS` in a subprocess (stdin closed unless given)."""
    proc = subprocess.run(
        [sys.executable, "-m", "diffuse_cli", *map(str, args)],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def midtone_gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth mid-tone 8-bit image (values ~60..190), so sigma-25 noise is rarely clipped."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 125 + 40 * np.sin(x / 9.0) * np.cos(y / 13.0) + 20 * np.sin((x + y) / 31.0)
    img += rng.normal(0, 2, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def speechlike(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonic bursts with pauses: a stand-in for speech in tests."""
    t = np.arange(int(sr * seconds)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 1.5 * t), 0, None) ** 2
    return (0.3 * voiced * envelope).astype(np.float64)
