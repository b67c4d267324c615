"""Poisson (camera) noise: the bundled photo model through the Anscombe transform against OpenCV's NLM.

    .venv/bin/python bench/poisson.py [--out bench/poisson.md] [--crop 384] [--quick]

Clean images: scikit-image's camera, astronaut and coffee (held out from the bundled model's training; gray
versions of the colour ones too), centre crops. Noise: ``z = g Poisson(x / g) + N(0, s^2)`` with ``g = 255 /
peak`` (``diffuse_cli.noise.add_poisson``), rounded and clipped to 8 bits as a PNG holds it; every method gets
that same 8-bit input. Methods:

* OpenCV NLM (``fastNlMeansDenoising`` / ``...Colored``) with ``h = k * s_eff`` (and ``hColor`` alike for
  colour), ``s_eff`` the image's true root-mean noise std, ``k`` from a grid chosen per column by the mean PSNR
  against the clean images (an oracle choice that can only flatter it);
* ours, Gaussian path, sigma estimated: what ``diffuse denoise`` does without a Poisson option;
* ours through the Anscombe transform (``diffuse_cli.denoising.poisson.denoise_poisson``), gain and read
  noise estimated, and given; and with DDIM-10 instead of one step.

Ours runs in-process: the bundled ``photo-gray`` model on LiteRT (``litert_model.open_model``), one-step,
through ``denoising.denoise_media`` (a colour image by the opponent channels). PSNR in dB on 0..255.
Needs the bench extras (``pip install -e .[bench]``: scikit-image, opencv-python-headless).
"""

from __future__ import annotations

import argparse
import dataclasses
import io as pyio
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

try:
    import diffuse_cli  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffuse_cli import denoising, metrics  # noqa: E402
from diffuse_cli import io as dio  # noqa: E402
from diffuse_cli import models as bundled  # noqa: E402
from diffuse_cli.denoising.poisson import denoise_poisson  # noqa: E402
from diffuse_cli.litert_model import open_model  # noqa: E402
from diffuse_cli.noise import add_poisson  # noqa: E402

LEVELS = ((10, 0.0), (30, 0.0), (100, 0.0), (100, 10.0))  # (peak counts at 255, Gaussian read noise)
# (h, hColor) / s_eff, hColor only for colour (OpenCV filters the chroma of its Lab conversion with it)
NLM_GRID = {"gray": tuple((k, None) for k in (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4)),
            "colour": tuple((k, c) for k in (0.4, 0.55, 0.7) for c in (0.35, 0.5, 0.7))}
METHODS = (
    ("noisy", "noisy input"),
    ("nlm", "OpenCV NLM (oracle h)"),
    ("gauss", "ours, Gaussian path (σ estimated)"),
    ("gat", "ours + Anscombe (gain, σ estimated)"),
    ("gat-known", "ours + Anscombe (gain, σ given)"),
    ("gat-ddim", "ours DDIM-10 + Anscombe (gain, σ estimated)"),
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def crop(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top : top + ch, left : left + cw].astype(np.float64)


def images(size: int, quick: bool) -> dict[str, list[tuple[str, np.ndarray]]]:
    import skimage.data as skd

    colour = [("astronaut", crop(skd.astronaut(), size)), ("coffee", crop(skd.coffee(), size))]
    gray = [("camera", crop(skd.camera(), size))] + [(f"{n} (gray)", np.round(c.mean(axis=-1))) for n, c in colour]
    if quick:
        return {"gray": gray[:1], "colour": colour[:1]}
    return {"gray": gray, "colour": colour}


def q8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255)


def png_media(a: np.ndarray, name: str) -> dio.Media:
    from PIL import Image

    buf = pyio.BytesIO()
    Image.fromarray(q8(a).astype(np.uint8)).save(buf, format="PNG")
    return dio.load_bytes(buf.getvalue(), f"{name}.png")


def nlm(y: np.ndarray, h: float, h_colour: float | None) -> np.ndarray:
    import cv2

    u = np.ascontiguousarray(q8(y).astype(np.uint8))
    if y.ndim == 3:
        return cv2.fastNlMeansDenoisingColored(u, None, h=h, hColor=h_colour, templateWindowSize=7,
                                               searchWindowSize=21).astype(np.float64)
    return cv2.fastNlMeansDenoising(u, None, h=h, templateWindowSize=7, searchWindowSize=21).astype(np.float64)


class Ours:
    """The bundled gray photo model, run in-process as ``diffuse denoise`` runs it."""

    def __init__(self) -> None:
        path = next(e["path"] for e in bundled.list_bundled() if e["name"] == "photo-gray")
        self.model, _ = open_model(path)
        self.options = denoising.DenoiseOptions(method="onestep")

    def gaussian(self, media: dio.Media, sigma: float | None, method: str = "onestep") -> tuple[np.ndarray, dict]:
        """Clean ``media`` at ``sigma`` (file units; None: estimated); 0..255 out, (H, W, C)."""
        options = dataclasses.replace(self.options, sigma=sigma, method=method, steps=10, seed=0)
        out, info = denoising.denoise_media(media, self.model, options)
        return (out.samples.astype(np.float64) + 1.0) * out.scale, info

    def anscombe(self, media: dio.Media, gain: float | None, sigma: float | None,
                 method: str = "onestep") -> tuple[np.ndarray, dict]:
        """The Poisson path as the CLI wires it: file units in, the Gaussian pipeline at a known sigma inside."""
        top = 2.0 * media.scale
        z = (media.samples.astype(np.float64) + 1.0) * media.scale

        def denoise_gaussian(y: np.ndarray, s: float) -> np.ndarray:
            inner = media.with_samples((y / media.scale - 1.0).astype(np.float32))
            return self.gaussian(inner, s, method)[0]

        return denoise_poisson(z, denoise_gaussian, top, gain=gain, sigma=sigma, source=media.source)


def psnr(clean: np.ndarray, out: np.ndarray) -> float:
    return metrics.psnr(clean, q8(out), data_range=255.0)


def run(size: int, quick: bool, seed: int) -> tuple[dict, list[str]]:
    ours = Ours()
    sets = images(size, quick)
    scores: dict = {}  # (kind, level) -> method -> [psnr per image]
    chosen: dict = {}
    details: list[str] = []
    for kind, items in sets.items():
        for li, (peak, read) in enumerate(LEVELS):
            t0 = time.perf_counter()
            gain = 255.0 / peak
            row = {m: [] for m, _ in METHODS}
            nlm_scores = {k: [] for k in NLM_GRID[kind]}
            for ii, (name, clean) in enumerate(items):
                rng = np.random.default_rng([seed, li, ii, int(clean.ndim)])
                noisy = q8(add_poisson(clean, peak, 255.0, rng, sigma=read))
                media = png_media(noisy, name)
                row["noisy"].append(psnr(clean, noisy))
                s_eff = float(np.sqrt(np.mean(gain * clean + read**2)))
                for k, c in NLM_GRID[kind]:
                    nlm_scores[(k, c)].append(psnr(clean, nlm(noisy, k * s_eff, c * s_eff if c else None)))
                squeeze = (lambda a: a[..., 0]) if clean.ndim == 2 else (lambda a: a)
                out, info = ours.gaussian(media, None)
                row["gauss"].append(psnr(clean, squeeze(out)))
                out, rep = ours.anscombe(media, None, None)
                row["gat"].append(psnr(clean, squeeze(out)))
                details.append(f"{kind} {name} peak {peak} σ {read:g}: gain {rep['gain']:.3g} (true {gain:.3g}), "
                               f"σ {rep['sigma']:.3g} (true {read:g}); Gaussian path estimated σ {info['sigma']:.3g}")
                out, _ = ours.anscombe(media, gain, read)
                row["gat-known"].append(psnr(clean, squeeze(out)))
                out, _ = ours.anscombe(media, None, None, "ddim")
                row["gat-ddim"].append(psnr(clean, squeeze(out)))
            best = max(NLM_GRID[kind], key=lambda k: np.mean(nlm_scores[k]))
            row["nlm"] = nlm_scores[best]
            chosen[(kind, peak, read)] = best
            scores[(kind, peak, read)] = row
            log(f"{kind} peak {peak} σ {read:g}: " + ", ".join(f"{m} {np.mean(v):.2f}" for m, v in row.items())
                + f" ({time.perf_counter() - t0:.1f} s)")
    names = {kind: [n for n, _ in items] for kind, items in sets.items()}
    return {"scores": scores, "chosen": chosen, "names": names}, details


def markdown(result: dict, details: list[str], seconds: float, args) -> str:
    scores, chosen = result["scores"], result["chosen"]
    cols = [(kind, peak, read) for kind in result["names"] for peak, read in LEVELS]

    def head(c):
        kind, peak, read = c
        return f"{kind} peak {peak}" + (f" + σ {read:g}" if read else "")

    lines = ["# Poisson noise: ours through the Anscombe transform vs OpenCV NLM", "",
             f"Command: `python bench/poisson.py{' --quick' if args.quick else ''} --crop {args.crop}`  ",
             f"Machine: {os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}; total run {seconds:.0f} s (1-minute load average at the end "
             f"{os.getloadavg()[0]:.1f}: other jobs shared the CPUs).", "",
             "Mean PSNR (dB, 0..255) over the images of each column; noise `z = g·Poisson(x/g) + N(0, σ²)` with "
             "`g = 255/peak`, rounded and clipped to 8 bits. Ours: bundled `photo-gray`, one-step, LiteRT.", "",
             "| method | " + " | ".join(head(c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for key, label in METHODS:
        lines.append(f"| {label} | " + " | ".join(f"{np.mean(scores[c][key]):.2f}" for c in cols) + " |")
    lines += ["", "Ours + Anscombe (estimated) minus OpenCV NLM (oracle h):", "",
              "| column | Δ dB | NLM h / s_eff | NLM hColor / s_eff |", "|---|---|---|---|"]
    for c in cols:
        delta = np.mean(scores[c]["gat"]) - np.mean(scores[c]["nlm"])
        h, h_colour = chosen[c]
        lines.append(f"| {head(c)} | {delta:+.2f} | {h} | {h_colour if h_colour else '–'} |")
    lines += ["", "Images (centre crops of scikit-image data, held out from the bundled model's training): "
              + "; ".join(f"{k}: {', '.join(v)}" for k, v in result["names"].items()) + ".", "",
              "Estimates (gain in 0..255 units per count, σ read noise):", ""]
    lines += [f"- {d}" for d in details]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/poisson.md")
    p.add_argument("--crop", type=int, default=384, help="centre crop side (pixels)")
    p.add_argument("--quick", action="store_true", help="one gray and one colour image")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result, details = run(args.crop, args.quick, args.seed)
    text = markdown(result, details, time.perf_counter() - t0, args)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
