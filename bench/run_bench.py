"""`make bench`: the bundled (or a given) diffusion denoiser against classical filters, in one run.

Usage:
    .venv/bin/python bench/run_bench.py --data runs/defaults-data/bench --out bench [--quick] [--full]

Protocol (numbers are only comparable when measured the same way):
- Held-out images: every PNG in DATA/images; gray = ``convert("L")`` of each, color = RGB ones.
  Central ``--crop`` x ``--crop`` crops by default (``--full``: whole images).
- Gaussian noise at known sigma (0..255), fixed seeds, noisy input quantised to 8 bits (round + clip):
  gray at 15/25/50, color at 25. Every method's output is quantised to 8 bits too (as saved).
- Salt-and-pepper 10 % / 30 % (half salt, half pepper) on the gray images.
- Speech (DATA/speech/*.wav) plus white noise at input SNR 0/5/10 dB, noisy input quantised to PCM 16.
- Metrics: PSNR, SSIM (diffuse_cli.metrics, data_range 255), seconds per megapixel; SI-SDR, SNR
  (and their improvement over the noisy input), real-time factor (processing seconds / audio seconds).
- Classical methods get the *known* noise level. Their free parameter (TV weight, NLM h, Wiener window,
  noisereduce strength) is picked per noise level from a small grid by the best mean score over the
  benchmark set itself: an oracle choice that can only flatter the baselines.
- Ours runs in-process through the package engine (diffuse_cli.denoising.denoise_media) with the known
  sigma and with the estimated one (sigma=None), one-step and DDIM (10 steps). Timings exclude the first
  call (graph tracing), which is reported separately.

Writes OUT/report.json (every number), OUT/report.md (tables) and OUT/figure.png (crops side by side).
"""

from __future__ import annotations

import argparse
import hashlib
import io as pyio
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
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
from diffuse_cli.errors import InputError  # noqa: E402
from diffuse_cli.noise import add_salt_pepper  # noqa: E402

GRAY_SIGMAS = (15, 25, 50)
COLOR_SIGMAS = (25,)
SP_AMOUNTS = (0.10, 0.30)
AUDIO_SNRS = (0, 5, 10)
DDIM_STEPS = 10

# Oracle grids (factor times the known sigma on the [0, 1] scale, or a window / strength).
TV_GRID = (0.25, 0.5, 0.75, 1.0, 1.5)
SK_NLM_GRID = (0.3, 0.45, 0.6, 0.8)
CV_NLM_GRID = (0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
WIENER_GRID = (5, 7, 11, 15, 21)
NR_GRID = (0.5, 0.75, 1.0)

# Issue 5 targets.
TARGET_GRAY_DB = 0.0  # ours - BM3D, each sigma
TARGET_SPEEDUP = 20.0  # BM3D s/MP over ours s/MP
TARGET_COLOR_DB = 0.0  # ours - CBM3D
TARGET_SP_DB = 0.0  # ours - adaptive median (strictly above)
TARGET_AUDIO_DB = 3.0  # ours SI-SDR - best classical
TARGET_RTF = 0.05

OURS_VARIANTS = (  # (key, label, method, known sigma?)
    ("ours-1", "ours one-step (σ known)", "onestep", True),
    ("ours-1e", "ours one-step (σ estimated)", "onestep", False),
    ("ours-ddim", f"ours DDIM-{DDIM_STEPS} (σ known)", "ddim", True),
    ("ours-ddime", f"ours DDIM-{DDIM_STEPS} (σ estimated)", "ddim", False),
)


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class Item:
    name: str
    clean: np.ndarray  # float64 0..255 (H, W) gray or (H, W, 3) color; or audio (N,) float


def central_crop(a: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return a
    h, w = a.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top : top + ch, left : left + cw]


def load_images(folder: Path, crop: int | None, limit: int | None) -> tuple[list[Item], list[Item], list[str]]:
    from PIL import Image

    paths = sorted(folder.glob("*.png"))
    if limit:
        paths = paths[:limit]
    gray, color = [], []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            gray.append(Item(p.stem, central_crop(np.asarray(im.convert("L"), dtype=np.float64), crop)))
            if im.mode in ("RGB", "RGBA", "P", "CMYK"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
                if np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max() > 0:  # skip gray images stored as RGB
                    color.append(Item(p.stem, central_crop(rgb, crop)))
    return gray, color, [str(p) for p in paths]


def load_speech(folder: Path, limit: int | None, max_seconds: float | None) -> tuple[list[Item], int, list[str]]:
    import soundfile as sf

    paths = sorted(folder.glob("*.wav"))
    if limit:
        paths = paths[:limit]
    items, rate = [], 0
    for p in paths:
        x, sr = sf.read(str(p), dtype="float64", always_2d=True)
        x = x.mean(axis=1)
        if max_seconds:
            x = x[: int(max_seconds * sr)]
        if rate and sr != rate:
            raise SystemExit(f"{p}: sample rate {sr} differs from {rate}; the benchmark speech must share one rate")
        rate = sr
        items.append(Item(p.stem, x))
    return items, rate, [str(p) for p in paths]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def q8(a: np.ndarray) -> np.ndarray:
    """Round and clip to the 8-bit grid (values stay float64 on the 0..255 scale)."""
    return np.clip(np.round(a), 0, 255)


def png_bytes(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = pyio.BytesIO()
    Image.fromarray(q8(a).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(x: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = pyio.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def pcm16(x: np.ndarray, rate: int) -> np.ndarray:
    """What a 16-bit WAV of ``x`` reads back as."""
    import soundfile as sf

    return sf.read(pyio.BytesIO(wav_bytes(x, rate)), dtype="float64")[0]


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -------------------------------------------------------------------------------------- classical methods


def tv(y: np.ndarray, sigma: float, k: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    axis = -1 if y.ndim == 3 else None
    return 255.0 * denoise_tv_chambolle(y / 255.0, weight=k * sigma / 255.0, channel_axis=axis)


def nlm_skimage(y: np.ndarray, sigma: float, k: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    axis = -1 if y.ndim == 3 else None
    s = sigma / 255.0
    return 255.0 * denoise_nl_means(y / 255.0, h=k * s, sigma=s, fast_mode=True, patch_size=5,
                                    patch_distance=6, channel_axis=axis)


def nlm_opencv(y: np.ndarray, sigma: float, k: float) -> np.ndarray:
    import cv2

    u = np.ascontiguousarray(q8(y).astype(np.uint8))
    if y.ndim == 3:
        return cv2.fastNlMeansDenoisingColored(u, None, h=k * sigma, hColor=k * sigma,
                                               templateWindowSize=7, searchWindowSize=21).astype(np.float64)
    return cv2.fastNlMeansDenoising(u, None, h=k * sigma, templateWindowSize=7,
                                    searchWindowSize=21).astype(np.float64)


def bm3d_filter(y: np.ndarray, sigma: float, _k: float | None = None) -> np.ndarray:
    import bm3d

    if y.ndim == 3:  # CBM3D (opponent colour space)
        return 255.0 * bm3d.bm3d_rgb(y / 255.0, sigma_psd=sigma / 255.0)
    return 255.0 * bm3d.bm3d(y / 255.0, sigma_psd=sigma / 255.0)


def median3(y: np.ndarray, _sigma: float = 0, _k: float | None = None) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(y, size=3, mode="reflect")


def adaptive_median(y: np.ndarray, _sigma: float = 0, _k: float | None = None, max_size: int = 7) -> np.ndarray:
    """Adaptive median filter (Hwang & Haddad 1995; Gonzalez & Woods' two-level form), max window 7.

    Level A: grow the window (3, 5, 7) until ``zmin < zmed < zmax`` (the median is not an impulse);
    level B: keep the pixel when ``zmin < z < zmax`` (not an impulse), else output ``zmed``. A pixel whose
    window never passes level A gets the median of the largest window.
    """
    from scipy.ndimage import maximum_filter, median_filter, minimum_filter

    out = np.array(y, dtype=np.float64, copy=True)
    done = np.zeros(y.shape, dtype=bool)
    zmed = y
    for size in range(3, max_size + 1, 2):
        zmin = minimum_filter(y, size=size, mode="reflect")
        zmax = maximum_filter(y, size=size, mode="reflect")
        zmed = median_filter(y, size=size, mode="reflect")
        level_a = (zmin < zmed) & (zmed < zmax) & ~done
        keep = (zmin < y) & (y < zmax)
        out[level_a] = np.where(keep, y, zmed)[level_a]
        done |= level_a
    out[~done] = zmed[~done]
    return out


def wiener(y: np.ndarray, sigma: float, size: int) -> np.ndarray:
    from scipy.signal import wiener as scipy_wiener

    return scipy_wiener(y, mysize=int(size), noise=sigma**2)


def wavelet(y: np.ndarray, sigma: float, _k: float | None = None) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(y, sigma=sigma, wavelet="sym8", method="BayesShrink", mode="soft", rescale_sigma=True)


def make_noisereduce(rate: int, seed: int) -> tuple[Callable, Callable]:
    import noisereduce as nr

    def blind(y: np.ndarray, _sigma: float, _k: float | None = None) -> np.ndarray:
        return nr.reduce_noise(y=y, sr=rate, stationary=True)

    def with_clip(y: np.ndarray, sigma: float, prop: float) -> np.ndarray:
        # A 2 s clip of the same white noise (known level, independent draw): noisereduce's intended use.
        clip = sigma * rng_for(seed, 99).standard_normal(2 * rate)
        return nr.reduce_noise(y=y, sr=rate, stationary=True, y_noise=clip, prop_decrease=prop)

    return blind, with_clip


# ------------------------------------------------------------------------------------------ our engine


class Ours:
    """Resolves and loads our models once per domain; runs denoise_media in-process."""

    def __init__(self, explicit: dict[str, str | None], enabled: bool) -> None:
        self.explicit = explicit
        self.enabled = enabled
        self.loaded: dict[str, object] = {}
        self.chosen: dict[str, dict] = {}
        self.first_call: dict[str, float] = {}
        self.loaded_as: dict[str, str] = {}  # kind -> key in self.loaded

    def resolve(self, kind: str, sample: dio.Media) -> object | None:
        """kind: "gray" | "color" | "audio". None (with a printed reason) when no model is available."""
        if kind in self.chosen:
            return self.loaded.get(self.loaded_as.get(kind, ""))
        if not self.enabled:
            self.chosen[kind] = {"skipped": "--no-ours"}
            return None
        path, why = None, ""
        want_channels = {"gray": 1, "color": 3}.get(kind)
        candidates = [self.explicit.get(kind)] + ([self.explicit.get("image")] if kind != "audio" else [])
        for cand in [c for c in candidates if c]:
            try:
                cfg = json.loads((Path(cand) / "config.json").read_text())
            except (OSError, ValueError) as exc:
                why = f"{cand}: cannot read config.json ({exc})"
                continue
            have = int(cfg.get("channels", 0))
            # a gray model also cleans colour (opponent channels one by one)
            if want_channels is None or have == want_channels or (kind == "color" and have == 1):
                path = cand
                break
            why = f"{cand} has {cfg.get('channels')} channel(s), not {want_channels}"
        if path is None:
            try:
                path = bundled.choose(sample)
            except InputError as exc:
                why = (why + "; " if why else "") + str(exc)
        if path is None:
            log(f"[ours] {kind}: no model ({why}); skipping ours for {kind}")
            self.chosen[kind] = {"skipped": why}
            return None
        if path not in self.loaded:
            try:
                from diffuse_cli import modelstore  # imports TensorFlow: only when a model exists

                t0 = time.perf_counter()
                self.loaded[path] = modelstore.load_model(path)
                log(f"[ours] {kind}: loaded {path} in {time.perf_counter() - t0:.1f} s")
            except (InputError, ImportError, OSError) as exc:
                log(f"[ours] {kind}: cannot load {path} ({exc}); skipping ours for {kind}")
                self.chosen[kind] = {"skipped": str(exc), "path": path}
                return None
        model = self.loaded[path]
        self.loaded_as[kind] = path
        cfg = model.config
        rel = os.path.relpath(path)
        self.chosen[kind] = {"path": path if rel.startswith("..") else rel, "arch": cfg.arch,
                             "widths": list(cfg.widths),
                             "channels": cfg.channels, "schedule": cfg.schedule,
                             "sample_rate": cfg.sample_rate,
                             "training": {k: v for k, v in (cfg.training or {}).items() if k != "history"}}
        return model

    def run(self, model, media: dio.Media, opts: denoising.DenoiseOptions,
            warm_key: str) -> tuple[dio.Media, dict, float]:
        if warm_key not in self.first_call:  # the first call traces the graph: time it apart
            t0 = time.perf_counter()
            denoising.denoise_media(media, model, opts)
            self.first_call[warm_key] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, info = denoising.denoise_media(media, model, opts)
        return out, info, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- image runs


def image_row(section: str, kind: str, level: float, method: str, item: Item, out: np.ndarray,
              seconds: float, extra: dict | None = None) -> dict:
    ref = item.clean
    out = q8(out)
    mp = ref.shape[0] * ref.shape[1] / 1e6
    row = {"section": section, "kind": kind, "level": level, "method": method, "image": item.name,
           "psnr": metrics.psnr(ref, out, 255.0), "ssim": metrics.ssim(ref, out, 255.0),
           "seconds": seconds, "megapixels": mp, "s_per_mp": seconds / mp if seconds else 0.0}
    if extra:
        row.update(extra)
    return row


def timed(fn: Callable, *args) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_tuned(name: str, fn: Callable, grid: tuple | None, items: list[Item], noisy: list[np.ndarray],
              level: float, section: str, kind: str, tuning: dict, keep: dict) -> list[dict]:
    """Run ``fn`` over the items for every grid value; keep the value with the best mean PSNR."""
    best_rows, best_mean, best_k = None, -np.inf, None
    scores = {}
    for k in grid or (None,):
        rows, outs = [], []
        for item, y in zip(items, noisy):
            out, sec = timed(fn, y, level, k)
            rows.append(image_row(section, kind, level, name, item, out, sec, {"param": k}))
            outs.append(q8(out))
        mean = float(np.mean([r["psnr"] for r in rows]))
        scores[str(k)] = mean
        if mean > best_mean:
            best_rows, best_mean, best_k = rows, mean, k
            keep[(section, kind, level, name)] = outs[0]
    if grid:
        tuning[f"{section}/{kind}/{level}/{name}"] = {"grid": list(grid), "mean_psnr": scores, "chosen": best_k}
    return best_rows


def run_ours_images(ours: Ours, kind: str, items: list[Item], noisy: list[np.ndarray], level: float,
                    section: str, keep: dict) -> list[dict]:
    if not items:
        return []
    sample = dio.load_bytes(png_bytes(noisy[0]), f"{items[0].name}.png")
    model = ours.resolve(kind, sample)
    if model is None:
        return []
    rows = []
    variants = OURS_VARIANTS if section == "gaussian" else (("ours-sp", "ours (salt-pepper)", "onestep", False),)
    for key, _label, method, known in variants:
        for i, (item, y) in enumerate(zip(items, noisy)):
            media = dio.load_bytes(png_bytes(y), f"{item.name}.png")
            opts = denoising.DenoiseOptions(
                sigma=float(level) if (known and section == "gaussian") else None, method=method, steps=DDIM_STEPS,
                noise_kind="salt-pepper" if section == "salt-pepper" else "gaussian", seed=0)
            try:
                out, info, sec = ours.run(model, media, opts, f"{kind}/{method}")
            except InputError as exc:
                log(f"[ours] {item.name} {section} {level} {key}: {exc}; skipped")
                continue
            arr = out.samples.astype(np.float64) * out.scale + out.scale  # model units -> 0..255
            arr = arr[..., 0] if item.clean.ndim == 2 else arr
            rows.append(image_row(section, kind, level, key, item, arr, sec,
                                  {"sigma_used": info.get("sigma"), "t_star": info.get("t_star"),
                                   "model": ours.chosen[kind]["path"]}))
            if i == 0:
                keep[(section, kind, level, key)] = q8(arr)
    return rows


def gaussian_benchmark(args, gray: list[Item], color: list[Item], ours: Ours, tuning: dict, keep: dict) -> list[dict]:
    rows: list[dict] = []
    plan = [("gray", s, gray) for s in args.gray_sigmas] + [("color", s, color) for s in args.color_sigmas]
    for kind, sigma, items in plan:
        if not items:
            continue
        t0 = time.perf_counter()
        noisy = [q8(it.clean + sigma * rng_for(args.seed, 1, i, int(sigma), it.clean.ndim).standard_normal(
            it.clean.shape)) for i, it in enumerate(items)]
        for item, y in zip(items, noisy):
            rows.append(image_row("gaussian", kind, sigma, "noisy", item, y, 0.0))
        keep[("gaussian", kind, sigma, "noisy")] = noisy[0]
        keep[("gaussian", kind, sigma, "clean")] = items[0].clean
        rows += run_tuned("tv", tv, TV_GRID, items, noisy, sigma, "gaussian", kind, tuning, keep)
        rows += run_tuned("nlm-skimage", nlm_skimage, SK_NLM_GRID, items, noisy, sigma, "gaussian", kind, tuning, keep)
        rows += run_tuned("nlm-opencv", nlm_opencv, CV_NLM_GRID, items, noisy, sigma, "gaussian", kind, tuning, keep)
        if not args.no_bm3d:
            rows += run_tuned("bm3d", bm3d_filter, None, items, noisy, sigma, "gaussian", kind, tuning, keep)
        rows += run_ours_images(ours, kind, items, noisy, sigma, "gaussian", keep)
        log(f"gaussian {kind} sigma {sigma}: {len(items)} images in {time.perf_counter() - t0:.1f} s")
    return rows


def salt_pepper_benchmark(args, gray: list[Item], ours: Ours, keep: dict) -> list[dict]:
    rows: list[dict] = []
    for amount in args.sp_amounts:
        t0 = time.perf_counter()
        noisy = []
        for i, it in enumerate(gray):
            y, _ = add_salt_pepper(it.clean[..., None], amount, 0.5, 0.0, 255.0,
                                   rng_for(args.seed, 2, i, int(round(amount * 100))))
            noisy.append(y[..., 0])
        level = amount
        for item, y in zip(gray, noisy):
            rows.append(image_row("salt-pepper", "gray", level, "noisy", item, y, 0.0))
        keep[("salt-pepper", "gray", level, "noisy")] = noisy[0]
        keep[("salt-pepper", "gray", level, "clean")] = gray[0].clean
        for name, fn in (("median3", median3), ("adaptive-median", adaptive_median)):
            rows += run_tuned(name, fn, None, gray, noisy, level, "salt-pepper", "gray", {}, keep)
        rows += run_ours_images(ours, "gray", gray, noisy, level, "salt-pepper", keep)
        log(f"salt-and-pepper {amount:.0%}: {len(gray)} images in {time.perf_counter() - t0:.1f} s")
    return rows


# ------------------------------------------------------------------------------------------- audio runs


def audio_row(snr: float, method: str, item: Item, noisy: np.ndarray, out: np.ndarray, seconds: float,
              rate: int, extra: dict | None = None) -> dict:
    ref = item.clean
    out = np.asarray(out, dtype=np.float64).reshape(-1)[: len(ref)]
    si, si0 = metrics.si_sdr(ref, out), metrics.si_sdr(ref, noisy)
    snr_out, snr_in = metrics.snr_db(ref, out), metrics.snr_db(ref, noisy)
    duration = len(ref) / rate
    row = {"section": "audio", "kind": "speech", "level": snr, "method": method, "file": item.name,
           "si_sdr": si, "si_sdr_improvement": si - si0, "snr": snr_out, "snr_improvement": snr_out - snr_in,
           "seconds": seconds, "audio_seconds": duration, "rtf": seconds / duration}
    if extra:
        row.update(extra)
    return row


def audio_benchmark(args, speech: list[Item], rate: int, ours: Ours, tuning: dict) -> list[dict]:
    rows: list[dict] = []
    blind, with_clip = make_noisereduce(rate, args.seed)
    methods = (("wiener", wiener, WIENER_GRID), ("wavelet-bayes", wavelet, None),
               ("noisereduce", blind, None), ("noisereduce-clip", with_clip, NR_GRID))
    for snr in args.snrs:
        t0 = time.perf_counter()
        sigmas, noisy = [], []
        for i, it in enumerate(speech):
            s = float(np.sqrt(np.mean(it.clean**2) / 10 ** (snr / 10)))
            sigmas.append(s)
            noisy.append(pcm16(it.clean + s * rng_for(args.seed, 3, i, int(snr + 100)).standard_normal(len(it.clean)),
                               rate))
        for it, y in zip(speech, noisy):
            rows.append(audio_row(snr, "noisy", it, y, y, 0.0, rate))
        for name, fn, grid in methods:
            best, best_mean, best_k, scores = None, -np.inf, None, {}
            for k in grid or (None,):
                cand = []
                for it, y, s in zip(speech, noisy, sigmas):
                    out, sec = timed(fn, y, s, k)
                    cand.append(audio_row(snr, name, it, y, out, sec, rate, {"param": k}))
                mean = float(np.mean([r["si_sdr"] for r in cand]))
                scores[str(k)] = mean
                if mean > best_mean:
                    best, best_mean, best_k = cand, mean, k
            if grid:
                tuning[f"audio/speech/{snr}/{name}"] = {"grid": list(grid), "mean_si_sdr": scores, "chosen": best_k}
            rows += best
        if speech:
            sample = dio.load_bytes(wav_bytes(noisy[0], rate), f"{speech[0].name}.wav")
            model = ours.resolve("audio", sample)
            if model is not None:
                for key, method, known in (("ours-1", "onestep", True), ("ours-1e", "onestep", False)):
                    for it, y, s in zip(speech, noisy, sigmas):
                        media = dio.load_bytes(wav_bytes(y, rate), f"{it.name}.wav")
                        opts = denoising.DenoiseOptions(sigma=s if known else None, method=method, seed=0)
                        try:
                            out, info, sec = ours.run(model, media, opts, f"audio/{method}")
                        except InputError as exc:
                            log(f"[ours] {it.name} audio {snr} dB {key}: {exc}; skipped")
                            continue
                        rows.append(audio_row(snr, key, it, y, out.samples[:, 0], sec, rate,
                                              {"sigma_used": info.get("sigma"), "model": ours.chosen["audio"]["path"]}))
        log(f"audio {snr} dB: {len(speech)} files in {time.perf_counter() - t0:.1f} s")
    return rows


# ------------------------------------------------------------------------------------------- summaries

LABELS = {
    "noisy": "noisy input",
    "tv": "TV (Chambolle, tuned weight)",
    "nlm-skimage": "NLM (scikit-image, fast)",
    "nlm-opencv": "NLM (OpenCV)",
    "bm3d": "BM3D (CBM3D on color)",
    "median3": "median 3x3",
    "adaptive-median": "adaptive median (max 7)",
    "ours-sp": "ours (salt-pepper)",
    "wiener": "Wiener (scipy, tuned window)",
    "wavelet-bayes": "wavelet BayesShrink (sym8)",
    "noisereduce": "noisereduce (stationary, blind)",
    "noisereduce-clip": "noisereduce (stationary, noise clip)",
    "ours-1": "ours one-step (σ known)",
    "ours-1e": "ours one-step (σ estimated)",
    "ours-ddim": f"ours DDIM-{DDIM_STEPS} (σ known)",
    "ours-ddime": f"ours DDIM-{DDIM_STEPS} (σ estimated)",
}
CLASSICAL_IMAGE = ("tv", "nlm-skimage", "nlm-opencv", "bm3d")
CLASSICAL_AUDIO = ("wiener", "wavelet-bayes", "noisereduce", "noisereduce-clip")


def summarise(rows: list[dict]) -> dict:
    """Means per (section, kind, level, method); s/MP and RTF as totals (sum seconds / sum size)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["section"], r["kind"], r["level"], r["method"])].append(r)
    out = {}
    for (section, kind, level, method), rs in groups.items():
        entry = {"n": len(rs)}
        if section == "audio":
            for key in ("si_sdr", "si_sdr_improvement", "snr", "snr_improvement"):
                entry[key] = float(np.mean([r[key] for r in rs]))
            entry["rtf"] = sum(r["seconds"] for r in rs) / sum(r["audio_seconds"] for r in rs)
        else:
            entry["psnr"] = float(np.mean([r["psnr"] for r in rs]))
            entry["ssim"] = float(np.mean([r["ssim"] for r in rs]))
            entry["s_per_mp"] = sum(r["seconds"] for r in rs) / sum(r["megapixels"] for r in rs)
        if "param" in rs[0]:
            entry["param"] = rs[0]["param"]
        out[f"{section}|{kind}|{level}|{method}"] = entry
    return out


def get(summary: dict, section: str, kind: str, level, method: str) -> dict | None:
    return summary.get(f"{section}|{kind}|{level}|{method}")


def ratios(summary: dict, args) -> list[dict]:
    """Our numbers against the issue-5 targets, from this run."""
    out = []

    def add(what: str, value: float | None, target: str, met: bool | None, note: str = "") -> None:
        out.append({"what": what, "value": value, "target": target, "met": met, "note": note})

    for variant in ("ours-1", "ours-ddim", "ours-1e"):
        for kind, sigmas, ref_name in (("gray", args.gray_sigmas, "BM3D"), ("color", args.color_sigmas, "CBM3D")):
            for s in sigmas:
                o, b = get(summary, "gaussian", kind, s, variant), get(summary, "gaussian", kind, s, "bm3d")
                if o is None or b is None:
                    continue
                d = o["psnr"] - b["psnr"]
                add(f"{kind} σ{s}: {LABELS[variant]} PSNR − {ref_name}", d, f"≥ {TARGET_GRAY_DB:+.1f} dB",
                    d >= TARGET_GRAY_DB if variant == "ours-1" else None,
                    f"{o['psnr']:.2f} vs {b['psnr']:.2f} dB")
    for variant in ("ours-1", "ours-ddim"):
        o_rows = [get(summary, "gaussian", "gray", s, variant) for s in args.gray_sigmas]
        b_rows = [get(summary, "gaussian", "gray", s, "bm3d") for s in args.gray_sigmas]
        if all(o_rows) and all(b_rows) and o_rows:
            o_t = float(np.mean([r["s_per_mp"] for r in o_rows]))
            b_t = float(np.mean([r["s_per_mp"] for r in b_rows]))
            speed = b_t / o_t if o_t > 0 else None
            add(f"gray speed-up: BM3D s/MP ÷ {LABELS[variant]} s/MP", speed, f"≥ {TARGET_SPEEDUP:.0f}×",
                (speed or 0) >= TARGET_SPEEDUP if variant == "ours-1" else None,
                f"{b_t:.2f} vs {o_t:.3f} s/MP on {os.cpu_count()} CPU(s)")
    for a in args.sp_amounts:
        o = get(summary, "salt-pepper", "gray", a, "ours-sp")
        m = get(summary, "salt-pepper", "gray", a, "adaptive-median")
        if o and m:
            d = o["psnr"] - m["psnr"]
            add(f"salt-pepper {a:.0%}: ours PSNR − adaptive median", d, "> 0 dB", d > TARGET_SP_DB,
                f"{o['psnr']:.2f} vs {m['psnr']:.2f} dB")
    for variant in ("ours-1", "ours-1e"):
        for snr in args.snrs:
            o = get(summary, "audio", "speech", snr, variant)
            cl = [(get(summary, "audio", "speech", snr, c), c) for c in CLASSICAL_AUDIO]
            cl = [(e, c) for e, c in cl if e]
            if not o or not cl:
                continue
            best, name = max(cl, key=lambda ec: ec[0]["si_sdr"])
            d = o["si_sdr"] - best["si_sdr"]
            add(f"speech {snr} dB: {LABELS[variant]} SI-SDR − best classical", d, f"≥ {TARGET_AUDIO_DB:+.1f} dB",
                d >= TARGET_AUDIO_DB if variant == "ours-1" else None,
                f"{o['si_sdr']:.2f} vs {best['si_sdr']:.2f} dB ({LABELS[name]})")
        rtfs = [get(summary, "audio", "speech", snr, variant) for snr in args.snrs]
        if all(rtfs) and rtfs:
            rtf = float(np.mean([r["rtf"] for r in rtfs]))
            add(f"speech real-time factor, {LABELS[variant]}", rtf, f"≤ {TARGET_RTF}",
                rtf <= TARGET_RTF if variant == "ours-1" else None, f"on {os.cpu_count()} CPU(s)")
    return out


# ------------------------------------------------------------------------------------------ rendering


def tables(summary: dict, args) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the console and markdown."""
    result = []
    image_methods = ["noisy", *CLASSICAL_IMAGE, *(v[0] for v in OURS_VARIANTS)]
    cols = [("gray", s) for s in args.gray_sigmas] + [("color", s) for s in args.color_sigmas]
    header = ["method"] + [f"{k} σ={s} PSNR / SSIM" for k, s in cols] + ["s/MP gray", "s/MP color"]
    body = []
    for m in image_methods:
        cells, seen = [LABELS[m]], False
        for k, s in cols:
            e = get(summary, "gaussian", k, s, m)
            seen |= e is not None
            cells.append(f"{e['psnr']:.2f} / {e['ssim']:.3f}" if e else "–")
        for k in ("gray", "color"):
            es = [get(summary, "gaussian", k, s, m) for kk, s in cols if kk == k]
            es = [e for e in es if e]
            cells.append(f"{np.mean([e['s_per_mp'] for e in es]):.3f}" if es and m != "noisy" else "–")
        if seen:
            body.append(cells)
    if body:
        result.append(("Gaussian noise (images, 8-bit, mean over images)", header, body))
    header = ["method"] + [f"{a:.0%} PSNR / SSIM" for a in args.sp_amounts] + ["s/MP"]
    body = []
    for m in ("noisy", "median3", "adaptive-median", "ours-sp"):
        es = [get(summary, "salt-pepper", "gray", a, m) for a in args.sp_amounts]
        if not any(es):
            continue
        cells = [LABELS[m]] + [f"{e['psnr']:.2f} / {e['ssim']:.3f}" if e else "–" for e in es]
        ok = [e for e in es if e]
        cells.append(f"{np.mean([e['s_per_mp'] for e in ok]):.3f}" if m != "noisy" else "–")
        body.append(cells)
    if body:
        result.append(("Salt-and-pepper noise (gray images)", header, body))
    header = ["method"] + [f"{s} dB: SI-SDR (Δ) / SNR Δ" for s in args.snrs] + ["RTF"]
    body = []
    for m in ("noisy", *CLASSICAL_AUDIO, "ours-1", "ours-1e"):
        es = [get(summary, "audio", "speech", s, m) for s in args.snrs]
        if not any(es):
            continue
        cells = [LABELS[m]] + [
            f"{e['si_sdr']:.2f} ({e['si_sdr_improvement']:+.2f}) / {e['snr_improvement']:+.2f}" if e else "–"
            for e in es]
        ok = [e for e in es if e]
        cells.append(f"{np.mean([e['rtf'] for e in ok]):.4f}" if m != "noisy" else "–")
        body.append(cells)
    if body:
        result.append(("Speech + white noise (mean over files)", header, body))
    return result


def fmt_ratio(r: dict) -> list[str]:
    v = r["value"]
    value = "–" if v is None else (f"{v:.1f}×" if "speed-up" in r["what"] else
                                   f"{v:.4f}" if "real-time" in r["what"] else f"{v:+.2f} dB")
    met = {True: "met", False: "NOT met", None: "(info)"}[r["met"]]
    return [r["what"], value, r["target"], met, r["note"]]


def print_console(tabs, rat, notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for title, header, body in tabs:
        t = Table(title=title)
        for h in header:
            t.add_column(h, justify="left" if h == "method" else "right")
        for row in body:
            t.add_row(*row)
        console.print(t)
    if rat:
        t = Table(title="Ours vs the issue-5 targets (same run)")
        for h in ("comparison", "value", "target", "status", "detail"):
            t.add_column(h)
        for r in rat:
            cells = fmt_ratio(r)
            style = {"met": "green", "NOT met": "red"}.get(cells[3], "")
            t.add_row(*cells[:3], f"[{style}]{cells[3]}[/]" if style else cells[3], cells[4])
        console.print(t)
    for n in notes:
        console.print(n)


def markdown(tabs, rat, notes: list[str], meta: dict) -> str:
    def md_table(header, body):
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)

    parts = ["# diffuse_cli benchmark", "",
             f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']['cpu_count']} CPU(s), {meta['machine']['cpu_model']}, "
             f"Python {meta['machine']['python']}; total run {meta['elapsed_s']:.0f} s.", "",
             "![noisy / best classical / ours](figure.png)", ""]
    for title, header, body in tabs:
        parts += [f"## {title}", "", md_table(header, body), ""]
    if rat:
        parts += ["## Ours vs the issue-5 targets (same run)", "",
                  md_table(["comparison", "value", "target", "status", "detail"], [fmt_ratio(r) for r in rat]), ""]
    parts += ["## Protocol", ""] + [f"- {n}" for n in notes] + [""]
    parts += ["## Models", ""]
    for kind, m in meta["models"].items():
        if "skipped" in m:
            parts.append(f"- {kind}: none ({m['skipped']})")
        else:
            tr = m.get("training") or {}
            summary = ", ".join(f"{k}={tr[k]}" for k in ("description", "sources", "steps", "seconds",
                                                         "batch_size") if k in tr)
            tail = f"; {summary}" if summary else ""
            parts.append(f"- {kind}: `{m['path']}` ({m['arch']} {m['widths']}, {m['schedule']}){tail}")
    parts += ["", "## Benchmark files (held out from training)", ""]
    parts += [f"- `{f['path']}` sha256 {f['sha256'][:16]}…" for f in meta["files"]]
    return "\n".join(parts) + "\n"


def figure(keep: dict, summary: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for section, kind, level, ours_key, classical in (
        ("gaussian", "gray", 25, "ours-1", CLASSICAL_IMAGE), ("gaussian", "color", 25, "ours-1", CLASSICAL_IMAGE),
        ("salt-pepper", "gray", max(args.sp_amounts, default=0.3), "ours-sp", ("median3", "adaptive-median")),
    ):
        clean = keep.get((section, kind, level, "clean"))
        if clean is None:
            continue
        noisy = keep[(section, kind, level, "noisy")]
        cands = [(c, keep[(section, kind, level, c)]) for c in classical if (section, kind, level, c) in keep]
        best = max(cands, key=lambda c: metrics.psnr(clean, c[1], 255.0)) if cands else None
        ours_img = keep.get((section, kind, level, ours_key))
        label = f"{kind} σ={level}" if section == "gaussian" else f"salt-pepper {level:.0%}"
        panels.append((label, clean, noisy, best, ours_img))
    if not panels:
        return
    size = min(min(p[1].shape[:2]) for p in panels)
    size = min(size, 256)
    fig, axes = plt.subplots(len(panels), 4, figsize=(13, 3.4 * len(panels)), squeeze=False)
    for row, (label, clean, noisy, best, ours_img) in zip(axes, panels):
        cells = [("clean", clean), (f"noisy {metrics.psnr(clean, noisy, 255.0):.2f} dB", noisy)]
        cells.append((f"{LABELS[best[0]]} {metrics.psnr(clean, best[1], 255.0):.2f} dB", best[1]) if best else
                     ("no classical", None))
        cells.append((f"ours {metrics.psnr(clean, ours_img, 255.0):.2f} dB", ours_img) if ours_img is not None else
                     ("ours: no model", None))
        for ax, (title, img) in zip(row, cells):
            ax.axis("off")
            ax.set_title(f"{label}: {title}", fontsize=9)
            if img is not None:
                img = central_crop(img, size)
                ax.imshow(img.astype(np.uint8), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                          interpolation="nearest")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    pkgs = ("numpy", "scipy", "scikit-image", "opencv-python-headless", "bm3d", "noisereduce", "PyWavelets",
            "matplotlib", "tensorflow", "keras", "pillow", "soundfile")
    return {"cpu_count": os.cpu_count(), "cpus_usable": affinity, "cpu_model": cpu_model,
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": {p: version(p) for p in pkgs}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="runs/defaults-data/bench", help="folder with images/*.png and speech/*.wav")
    p.add_argument("--out", default="bench", help="where report.json, report.md and figure.png go")
    p.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    p.add_argument("--max-audio", type=int, default=None, help="use only the first N speech files")
    p.add_argument("--crop", type=int, default=256, help="central crop side in pixels (default 256)")
    p.add_argument("--full", action="store_true", help="whole images instead of central crops")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 images, 128 px crops, 2 speech files (2 s)")
    p.add_argument("--model-image", default=None, help="image model dir (default: the bundled one)")
    p.add_argument("--model-image-color", default=None, help="3-channel image model dir, if different")
    p.add_argument("--model-audio", default=None, help="audio model dir (default: the bundled one)")
    p.add_argument("--no-ours", action="store_true", help="baselines only")
    p.add_argument("--no-bm3d", action="store_true", help="skip BM3D/CBM3D (slowest baseline)")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--no-images", action="store_true")
    p.add_argument("--seed", type=int, default=2024, help="noise seed (fixed: same inputs every run)")
    args = p.parse_args(argv)
    args.gray_sigmas, args.color_sigmas, args.sp_amounts, args.snrs = GRAY_SIGMAS, COLOR_SIGMAS, SP_AMOUNTS, AUDIO_SNRS
    args.max_seconds = None
    if args.quick:
        args.max_images = args.max_images or 2
        args.max_audio = args.max_audio or 2
        args.crop = min(args.crop, 128)
        args.max_seconds = 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    data, out_dir = Path(args.data), Path(args.out)
    images_dir, speech_dir = data / "images", data / "speech"
    if not args.no_images and not images_dir.is_dir():
        raise SystemExit(f"{images_dir}: no such folder; run `make defaults-data` (scripts/prepare_defaults_data.py) "
                         "or pass --data DIR with images/*.png and speech/*.wav")
    out_dir.mkdir(parents=True, exist_ok=True)
    crop = None if args.full else args.crop
    gray, color, image_files = ([], [], []) if args.no_images else load_images(images_dir, crop, args.max_images)
    speech, rate, speech_files = ([], 0, []) if args.no_audio or not speech_dir.is_dir() else load_speech(
        speech_dir, args.max_audio, args.max_seconds)
    if not args.no_audio and not speech_dir.is_dir():
        log(f"{speech_dir}: no such folder; skipping the audio benchmark")
    log(f"benchmark: {len(gray)} gray / {len(color)} color images "
        f"({'whole' if crop is None else f'central {crop}x{crop}'}), {len(speech)} speech files; "
        f"{os.cpu_count()} CPU(s)")

    ours = Ours({"image": args.model_image, "color": args.model_image_color, "gray": None,
                 "audio": args.model_audio}, enabled=not args.no_ours)
    tuning: dict = {}
    keep: dict = {}
    rows: list[dict] = []
    phase: dict[str, float] = {}
    if gray or color:
        t0 = time.perf_counter()
        rows += gaussian_benchmark(args, gray, color, ours, tuning, keep)
        phase["gaussian_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows += salt_pepper_benchmark(args, gray, ours, keep)
        phase["salt_pepper_s"] = time.perf_counter() - t0
    if speech:
        t0 = time.perf_counter()
        rows += audio_benchmark(args, speech, rate, ours, tuning)
        phase["audio_s"] = time.perf_counter() - t0

    summary = summarise(rows)
    rat = ratios(summary, args)
    tabs = tables(summary, args)
    notes = [
        "Gaussian noise: known sigma on the 0..255 scale, fixed seeds, noisy input rounded and clipped to 8 bits; "
        "every output rounded and clipped to 8 bits before PSNR/SSIM (diffuse_cli.metrics, data_range 255).",
        f"Images: {'whole images' if crop is None else f'central {crop}x{crop} crops'}; gray = PIL convert('L').",
        "Classical methods are given the known sigma. TV weight (k·σ/255), NLM h (k·σ) and the Wiener window / "
        "noisereduce strength are chosen per noise level from a small grid by the best mean score on this "
        "benchmark set itself (an oracle choice that favours the baselines); chosen values in report.json 'tuning'.",
        "BM3D: bm3d.bm3d(sigma_psd=σ/255) on [0,1]; color: CBM3D bm3d.bm3d_rgb. NLM scikit-image: fast_mode, "
        "patch 5, distance 6, sigma=σ; OpenCV: fastNlMeansDenoising(Colored), template 7, search 21.",
        "Ours: diffuse_cli.denoising.denoise_media in-process, one-step and DDIM-10, with the known sigma and with "
        "sigma=None (estimated); s/MP excludes the first call (graph tracing), reported as first_call_s.",
        "Salt-and-pepper: half salt (255), half pepper (0); ours uses noise_kind='salt-pepper' and an estimated sigma.",
        "Speech: white noise at the input SNR, noisy input written/read as 16-bit PCM; SI-SDR/SNR in dB; RTF = "
        "seconds / audio seconds. noisereduce 'noise clip' gets 2 s of white noise at the known level; "
        "wavelet gets the known sigma; Wiener gets the known noise power.",
        "Timings are wall-clock on this machine with all its cores; ratios from one run are what count.",
    ]
    elapsed = time.perf_counter() - start
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "elapsed_s": elapsed, "phases_s": phase, "machine": machine(),
        "models": ours.chosen, "first_call_s": ours.first_call,
        "files": [{"path": f, "sha256": sha256(f)} for f in image_files + speech_files],
    }
    report = {
        **meta,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
        "tuning": tuning, "summary": summary, "ratios": rat, "rows": rows, "notes": notes,
        "labels": LABELS,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out_dir / "report.md").write_text(markdown(tabs, rat, notes, meta))
    figure(keep, summary, args, out_dir / "figure.png")
    print_console(tabs, rat, [f"wrote {out_dir / 'report.md'}, {out_dir / 'report.json'}, {out_dir / 'figure.png'} "
                              f"in {elapsed:.0f} s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
