"""Measure, per noise level, the sigma scale k that gives an image model's one-step output its best PSNR.

Usage:
    .venv/bin/python scripts/calibrate_sigma.py MODEL_DIR --data runs/defaults-data/train/images
        [--sigmas 5,10,15,25,35,50,75] [--scales 0.7,...,1.1] [--crop 192] [--per-image 2] [--write]

The one-step estimate is the network's reading of the noisy image as if it were x_t at the step t* whose
noise matches sigma. A network can read an image as noisier or cleaner than it is at some levels; telling it
k * sigma (k < 1: "less noisy") corrects that. This script measures k on *training* images only (the held-out
photos are for evaluation and must not be used here) and, with --write, stores the curve in the model's
config.json as ``sigma_calibration`` ([[sigma, k], ...] with sigma in model units, [-1, 1] for the image's
range: sigma_255 / 127.5), which diffuse_cli.calibration applies to one-step denoising.

Protocol: crops of --crop px (the central one and --per-image - 1 more at seeded positions) of every PNG in
--data whose name does not start with "deadleaves" (the procedural images are not photographs), gray =
convert("L"); Gaussian noise of known sigma from a seed fixed per crop and sigma, rounded and clipped to
8 bits; outputs rounded and clipped to 8 bits; mean PSNR over crops (data range 255). The chosen k at each
sigma is the grid point with the best mean PSNR, refined by a parabola through it and its neighbours.
"""

from __future__ import annotations

import argparse
import io as pyio
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from diffuse_cli import denoising, metrics  # noqa: E402
from diffuse_cli import io as dio  # noqa: E402
from diffuse_cli import models as bundled  # noqa: E402
from diffuse_cli.calibration import refine_peak  # noqa: E402


def crops(paths: list[Path], size: int, per_image: int) -> list[np.ndarray]:
    out = []
    for i, p in enumerate(paths):
        a = np.asarray(Image.open(p).convert("L"), dtype=np.float64)
        h, w = a.shape
        if min(h, w) < size:
            continue
        rng = np.random.default_rng([7, i])
        tops = [(h - size) // 2] + list(rng.integers(0, h - size + 1, per_image - 1))
        lefts = [(w - size) // 2] + list(rng.integers(0, w - size + 1, per_image - 1))
        out += [a[t : t + size, left : left + size] for t, left in zip(tops, lefts)]
    return out


def png_bytes(a: np.ndarray) -> bytes:
    buf = pyio.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def one_step(model, noisy: np.ndarray, sigma: float) -> np.ndarray:
    media = dio.load_bytes(png_bytes(noisy), "crop.png")
    opts = denoising.DenoiseOptions(sigma=sigma, method="onestep", calibrate=False)
    out, _ = denoising.denoise_media(media, model, opts)
    return np.clip(np.round(out.samples[..., 0].astype(np.float64) * out.scale + out.scale), 0, 255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder or bundled name")
    parser.add_argument("--data", default="runs/defaults-data/train/images")
    parser.add_argument("--sigmas", default="5,10,15,25,35,50,75")
    parser.add_argument("--scales", default="0.7,0.75,0.8,0.85,0.9,0.95,1.0,1.05,1.1")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--per-image", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="store the curve in MODEL/config.json")
    args = parser.parse_args()

    from diffuse_cli import modelstore

    model_dir = str(bundled.MODELS_DIR / args.model) if (bundled.MODELS_DIR / args.model).is_dir() else args.model
    model = modelstore.load_model(model_dir)
    paths = sorted(p for p in Path(args.data).glob("*.png") if not p.name.startswith("deadleaves"))
    cleans = crops(paths, args.crop, args.per_image)
    if not cleans:
        sys.exit(f"{args.data}: no PNG photographs of at least {args.crop} px")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    scales = [float(k) for k in args.scales.split(",")]
    print(f"{len(cleans)} crops of {len(paths)} training photos; mean one-step PSNR (dB) when told k*sigma\n")
    print("| sigma | " + " | ".join(f"k={k:g}" for k in scales) + " | best k |")
    print("|---|" + "---|" * (len(scales) + 1))
    curve = []
    for s in sigmas:
        noisy = []
        for i, c in enumerate(cleans):
            rng = np.random.default_rng([11, i, int(round(s * 10))])
            noisy.append(np.clip(np.round(c + s * rng.standard_normal(c.shape)), 0, 255))
        means = [float(np.mean([metrics.psnr(c, one_step(model, n, k * s), 255.0)
                                for c, n in zip(cleans, noisy)])) for k in scales]
        best = refine_peak(scales, means)
        curve.append([round(s / 127.5, 5), round(best, 3)])
        print(f"| {s:g} | " + " | ".join(f"{m:.2f}" for m in means) + f" | {best:.3f} |", flush=True)
    print(f"\nsigma_calibration: {json.dumps(curve)}")
    if args.write:
        path = Path(model_dir) / "config.json"
        cfg = json.loads(path.read_text())
        cfg["sigma_calibration"] = curve
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        print(f"written to {path}")


if __name__ == "__main__":
    main()
