"""Gray one-step PSNR of image models on the held-out photos (and BM3D, when installed), side by side.

Usage:
    .venv/bin/python scripts/eval_photo.py MODEL_DIR [MODEL_DIR ...] [--data runs/defaults-data/heldout/images]
        [--sigmas 15,25,50] [--crop 256] [--ddim] [--json OUT.json]

Protocol (the same as bench/run_bench.py's Gaussian section): every PNG in --data, gray = convert("L"),
central --crop x --crop crop; Gaussian noise of known sigma (0..255) from a seed fixed per image and
sigma, noisy input rounded and clipped to 8 bits; every output rounded and clipped to 8 bits before PSNR
(data range 255). Each model runs one-step through diffuse_cli.denoising.denoise_media with the known
sigma and with sigma estimated (and DDIM-10 with the known sigma under --ddim). BM3D
(bm3d.bm3d(sigma_psd=sigma/255)) is computed once per image, crop and sigma and cached in --bm3d-cache,
since it does not depend on the models.
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

NOISE_SEED = 15


def q8(a: np.ndarray) -> np.ndarray:
    """Round and clip to the 8-bit grid (float64, 0..255)."""
    return np.clip(np.round(a), 0, 255)


def central_crop(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top : top + ch, left : left + cw]


def png_bytes(a: np.ndarray) -> bytes:
    buf = pyio.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def noisy_image(clean: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """``q8(clean + sigma n)``, ``n`` standard normal from seed ``(NOISE_SEED, index, sigma)``."""
    rng = np.random.default_rng([NOISE_SEED, index, int(sigma)])
    return q8(clean + sigma * rng.standard_normal(clean.shape))


def run_model(model, noisy: np.ndarray, name: str, sigma: float | None, method: str) -> np.ndarray:
    media = dio.load_bytes(png_bytes(noisy), f"{name}.png")
    opts = denoising.DenoiseOptions(sigma=sigma, method=method, steps=10, seed=0)
    out, _ = denoising.denoise_media(media, model, opts)
    return q8(out.samples[..., 0].astype(np.float64) * out.scale + out.scale)


def bm3d_psnr(cache_path: Path, key: str, clean: np.ndarray, noisy: np.ndarray, sigma: float) -> float | None:
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if key not in cache:
        try:
            import bm3d
        except ImportError:
            return None
        out = q8(bm3d.bm3d(noisy / 255.0, sigma_psd=sigma / 255.0) * 255.0)
        cache[key] = metrics.psnr(clean, out, 255.0)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    return cache[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model folders or bundled names")
    parser.add_argument("--data", default="runs/defaults-data/heldout/images")
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--ddim", action="store_true", help="also DDIM-10 with the known sigma")
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--baseline", default=None, help="an earlier --json of this script: add its rows")
    parser.add_argument("--bm3d-cache", default=str(ROOT / "runs" / "eval-photo-bm3d.json"))
    args = parser.parse_args()

    from diffuse_cli import modelstore

    sigmas = [float(s) for s in args.sigmas.split(",")]
    paths = sorted(Path(args.data).glob("*.png"))
    if not paths:
        sys.exit(f"{args.data}: no PNG files; run scripts/prepare_defaults_data.py first")
    cleans = [central_crop(np.asarray(Image.open(p).convert("L"), dtype=np.float64), args.crop) for p in paths]
    cache = Path(args.bm3d_cache)
    variants = [("onestep", True), ("onestep", False)] + ([("ddim", True)] if args.ddim else [])
    results: dict = {"data": args.data, "images": [p.name for p in paths], "crop": args.crop, "psnr": {}}
    rows = {"noisy": {}, "BM3D": {}}
    for s in sigmas:
        noisy = [noisy_image(c, s, i) for i, c in enumerate(cleans)]
        rows["noisy"][s] = float(np.mean([metrics.psnr(c, n, 255.0) for c, n in zip(cleans, noisy)]))
        b = [bm3d_psnr(cache, f"{p.name}/{args.crop}/{s:g}/{NOISE_SEED}", c, n, s)
             for p, c, n in zip(paths, cleans, noisy)]
        rows["BM3D"][s] = float(np.mean(b)) if None not in b else None
        for m in args.models:
            model_dir = str(bundled.MODELS_DIR / m) if (bundled.MODELS_DIR / m).is_dir() else m
            model = modelstore.load_model(model_dir)
            for method, known in variants:
                label = f"{m} {method}{'-10' if method == 'ddim' else ''} (σ {'known' if known else 'estimated'})"
                per = [metrics.psnr(c, run_model(model, n, p.stem, s if known else None, method), 255.0)
                       for p, c, n in zip(paths, cleans, noisy)]
                rows.setdefault(label, {})[s] = float(np.mean(per))
                results["psnr"].setdefault(label, {})[f"{s:g}"] = per
        print(f"sigma {s:g} done", file=sys.stderr, flush=True)
    results["mean"] = {k: {f"{s:g}": v for s, v in r.items()} for k, r in rows.items()}
    if args.baseline:  # same images, crop, seeds: its rows are directly comparable
        earlier = json.loads(Path(args.baseline).read_text())
        if earlier["images"] != results["images"] or earlier["crop"] != args.crop:
            sys.exit(f"{args.baseline}: another image set or crop; rerun it with this one")
        for k, r in earlier["mean"].items():
            if k not in rows and all(f"{s:g}" in r for s in sigmas):
                rows[f"{k} [baseline]"] = {s: r[f"{s:g}"] for s in sigmas}
    print(f"{len(paths)} held-out images, central {args.crop}x{args.crop} gray crops; mean PSNR (dB)\n")
    print("| method | " + " | ".join(f"σ={s:g}" for s in sigmas) + " |")
    print("|---|" + "---|" * len(sigmas))
    for k, r in rows.items():
        print(f"| {k} | " + " | ".join("–" if r.get(s) is None else f"{r[s]:.2f}" for s in sigmas) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
