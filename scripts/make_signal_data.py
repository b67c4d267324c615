"""Write the synthetic training and validation series for the bundled ``signal`` model.

    python scripts/make_signal_data.py runs/signal-data            # 4000 train + 200 val series

OUT/train/sig-NNNNN.npy and OUT/val/sig-NNNNN.npy are clean 1-D float64 series from
:mod:`diffuse_cli.synthetic_signals` (lengths log-uniform in [--min-length, --max-length]); series i of a
split is drawn with ``numpy.random.default_rng([seed, split, i])``, so any file can be remade alone.
OUT/manifest.json lists each file's families, weights, quantisation step, units and offset. No real
series are used (real ones are kept for bench/signals.py).

The model is then trained with the existing CLI (low priority, resumable; the noise levels are in the
robust units training normalises each file to, ``(x - median) / (1.4826 MAD)``, since a signal's file
units are its own). Makefile-ready; rerunning it resumes from the last checkpoint:

    nice -n 10 .venv/bin/diffuse train runs/signal-data/train --out runs/signal-model --resume \\
        --widths 8,16,24,32,48,64 --kernel-size 5 --patch-size 1024 --batch-size 16 --max-steps 20000 \\
        --lr 1e-3 --warmup-steps 200 --steps-per-epoch 250 --checkpoint-every 250 --keep 2 --seed 0 \\
        --low-noise-fraction 0.9 --low-noise-sigma 0.01,2 --val-sigma 0.3 \\
        --description "1D series (sensor logs, physiology, seismic, economic): 4000 synthetic series of 12 \\
    families (trend, seasonal, steps, spikes, oscillation, chirp, random walk, ARMA, band-limited, burst, \\
    smooth GP, 1/f noise; 30% quantised; units and offsets random) from diffuse_cli/synthetic_signals.py, \\
    written by scripts/make_signal_data.py (seed 0); no real data"

(the description is one line). The network is small (widths 8..64, kernel 5) for inference speed;
0.01-2 robust units spans input SNRs of about 40 dB down to 0 dB for most series.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from diffuse_cli import synthetic_signals  # noqa: E402

SPLITS = {"train": 0, "val": 1}


def series_length(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Log-uniform integer length in [lo, hi]."""
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def write_split(out: str, split: str, count: int, seed: int, lo: int, hi: int) -> list[dict]:
    folder = os.path.join(out, split)
    os.makedirs(folder, exist_ok=True)
    records = []
    for i in range(count):
        rng = np.random.default_rng([seed, SPLITS[split], i])
        length = series_length(rng, lo, hi)
        x, info = synthetic_signals.compose(length, rng)
        name = f"sig-{i:05d}.npy"
        path = os.path.join(folder, name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, x)
        os.replace(tmp, path)
        records.append({"file": f"{split}/{name}", "length": length, **info})
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (train/ and val/ are created in it)")
    parser.add_argument("--train", type=int, default=4000, help="training series")
    parser.add_argument("--val", type=int, default=200, help="validation series")
    parser.add_argument("--min-length", type=int, default=1024, help="shortest series (>= the patch size)")
    parser.add_argument("--max-length", type=int, default=32768, help="longest series")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 16 <= args.min_length <= args.max_length:
        parser.error("need 16 <= --min-length <= --max-length")
    manifest = {"generator": "diffuse_cli.synthetic_signals.compose", "seed": args.seed,
                "lengths": [args.min_length, args.max_length], "series": []}
    for split, count in (("train", args.train), ("val", args.val)):
        manifest["series"] += write_split(args.out, split, count, args.seed, args.min_length, args.max_length)
        print(f"{split}: {count} series in {os.path.join(args.out, split)}", file=sys.stderr)
    counts: dict[str, int] = {}
    for rec in manifest["series"]:
        for fam in rec["families"]:
            counts[fam] = counts.get(fam, 0) + 1
    manifest["family_counts"] = dict(sorted(counts.items()))
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    print(f"families: {manifest['family_counts']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
