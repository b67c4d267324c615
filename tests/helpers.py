"""Shared test helpers: run the CLI as a user would, and make small synthetic inputs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import warnings
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


@contextlib.contextmanager
def _fd_captured(fd: int):
    """What native code writes to file descriptor ``fd`` inside the block, in the bytearray it yields (filled
    when the block ends)."""
    captured = bytearray()
    (sys.stdout if fd == 1 else sys.stderr).flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            captured += sink.read()


def diffuse_in_process(*args, stdin: bytes | None = None, env: dict | None = None) -> Result:
    """Run ``diffuse ARGS`` through ``diffuse_cli.cli.main`` in this process: the same entry point, exit codes
    and messages as :func:`diffuse`, without a new interpreter importing TensorFlow again.

    stdin/stdout/stderr are replaced by buffers (stdin empty unless given); what native code writes to file
    descriptors 1 and 2 is captured too and appended, so a test that asks for one line on stderr still sees
    TensorFlow's own chatter. The process-wide state main() changes (SIGTERM handler, warning filters) is
    restored. Use :func:`diffuse` where the process boundary is what is tested (pipes, signals, imports).
    """
    from typer.testing import CliRunner

    from diffuse_cli import cli

    sigterm = signal.getsignal(signal.SIGTERM)
    streams = CliRunner().isolation(input=stdin if stdin is not None else b"", env={"COLUMNS": "120", **(env or {})})
    with warnings.catch_warnings(), _fd_captured(1) as native_out, _fd_captured(2) as native_err:
        with streams as (out, err, _):
            try:
                cli.main([str(a) for a in args])
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            finally:
                signal.signal(signal.SIGTERM, sigterm)
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue(), err.getvalue()
    return Result(code, stdout + bytes(native_out), (stderr + bytes(native_err)).decode(errors="replace"))


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
