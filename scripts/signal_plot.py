"""Before/after plot of a denoised series: noisy | denoised | clean reference, full length and a zoom.

Runs ``diffuse denoise`` on the noisy CSV (bundled ``signal`` model unless ``--model``; sigma estimated),
scores it against the clean CSV with the command's own ``--reference`` metrics, prints the SNRs and
writes a small PNG (900 x 400 px): the top row the whole series, the bottom row the zoomed span.

Usage:
    .venv/bin/python scripts/signal_plot.py [--noisy sample_data/sensor-noisy.csv]
        [--clean sample_data/sensor.csv] [--out docs/signal-before-after.png] [--zoom 2.5,4.5]

The CSVs are ``time,value`` with time in seconds (as sample_data/sensor.csv); the plot's axis is hours.
The PNG needs matplotlib (``pip install -e .[bench]``); without it the SNRs are printed and a note says
the PNG was not written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTH_PX, HEIGHT_PX, DPI = 900, 400, 100


def read_series(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(time in hours, value) of a two-column ``time,value`` CSV with a header row."""
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return data[:, 0] / 3600.0, data[:, 1]


def denoise(noisy: str, clean: str, out: str, model: str | None) -> dict:
    """``diffuse denoise NOISY -o OUT --reference CLEAN --json``; its JSON record (metrics included)."""
    cmd = [sys.executable, "-m", "diffuse_cli", "denoise", noisy, "-o", out, "--reference", clean,
           "--json", "--quiet", "--force"]
    if model:
        cmd += ["--model", model]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"diffuse denoise failed ({run.returncode}): {run.stderr.strip()}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def plot(out: str, hours: np.ndarray, series: list[tuple[str, np.ndarray, str]], zoom: tuple[float, float]) -> None:
    """Three columns (one per series), two rows (whole series, ``zoom`` span in hours); shared value axes."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(series), figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI,
                             sharey="row", sharex="row")
    inside = (hours >= zoom[0]) & (hours <= zoom[1])
    for col, (title, values, colour) in enumerate(series):
        top, bottom = axes[0, col], axes[1, col]
        top.plot(hours, values, color=colour, linewidth=0.6)
        top.axvspan(*zoom, color="0.85", zorder=0)
        top.set_title(title, fontsize=8)
        bottom.plot(hours[inside], values[inside], color=colour, linewidth=0.9)
        bottom.set_xlabel("hours", fontsize=7)
        for ax in (top, bottom):
            ax.tick_params(labelsize=6, length=2)
            ax.grid(True, linewidth=0.3, color="0.8")
    axes[0, 0].set_ylabel("°C", fontsize=7)
    axes[1, 0].set_ylabel(f"°C, {zoom[0]:g}-{zoom[1]:g} h", fontsize=7)
    fig.tight_layout(pad=0.4, h_pad=0.3, w_pad=0.3)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noisy", default=str(ROOT / "sample_data" / "sensor-noisy.csv"))
    parser.add_argument("--clean", default=str(ROOT / "sample_data" / "sensor.csv"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "signal-before-after.png"))
    parser.add_argument("--model", default=None, help="model directory (default: the bundled signal model)")
    parser.add_argument("--zoom", default="2.5,4.5", help="hours shown in the bottom row: START,END")
    args = parser.parse_args(argv)
    try:
        zoom = tuple(float(v) for v in args.zoom.split(","))
    except ValueError:
        zoom = ()
    if len(zoom) != 2 or not zoom[0] < zoom[1]:
        parser.error(f"--zoom {args.zoom}: give START,END in hours with START < END")
    with tempfile.TemporaryDirectory(prefix="signal-plot-") as tmp:
        cleaned = os.path.join(tmp, "denoised.csv")
        record = denoise(args.noisy, args.clean, cleaned, args.model)
        hours, denoised = read_series(cleaned)
    _, noisy = read_series(args.noisy)
    _, clean = read_series(args.clean)
    m = record["metrics"]
    print(f"{os.path.relpath(args.noisy)}: SNR {m['snr_in']:.2f} dB -> {m['snr_out']:.2f} dB "
          f"(SI-SDR {m['si_sdr_in']:.2f} -> {m['si_sdr_out']:.2f} dB), sigma {record['sigma']:.4f} estimated, "
          f"{record['runtime']}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"note: {args.out} not written: it needs matplotlib (pip install -e '.[bench]')", file=sys.stderr)
        return 0
    plot(args.out, hours, [
        (f"noisy: SNR {m['snr_in']:.1f} dB", noisy, "0.45"),
        (f"denoised (σ {record['sigma']:.2f} °C estimated): SNR {m['snr_out']:.1f} dB", denoised, "tab:blue"),
        ("clean reference", clean, "black"),
    ], zoom)
    print(f"wrote {os.path.relpath(args.out)} ({os.path.getsize(args.out) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
