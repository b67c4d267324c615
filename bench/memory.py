"""Peak memory and throughput of `diffuse denoise` on very large inputs, against small ones.

Usage:
    .venv/bin/python bench/memory.py [--out bench] [--quick] [--model-image DIR] [--model-audio DIR]

Generates, in a temporary folder, a synthetic noisy RGB photo of 8000 x 8000 pixels and a one-hour 16 kHz
mono recording (``--quick``: 4000 x 4000 and ten minutes), plus small inputs of the same kind (1000 x 1000,
60 s) and a tiny warm-up file. Each case runs ``diffuse denoise WARMUP INPUT -o DIR --json`` in a child
process (noise level estimated, the default path), reaped with ``os.wait4``: peak RSS is that process's
own ``ru_maxrss``. The warm-up file takes the model load and the graph trace, so

- throughput = elements / (CPU seconds of [warm-up + input] - CPU seconds of [warm-up] alone), CPU time
  (user + system, all threads) because wall time on a shared machine is noise; the per-file wall seconds
  the CLI reports are given too;
- the big input's throughput is compared with the small input's (target: at most 20 % slower).

Targets: peak RSS under 2 GiB for the 8000 x 8000 photo, under 1 GiB for the hour of audio. ``--engine``
also measures the engine alone in a child (the file decoded in strips, denoise_media(in_place=True), no
encoding), which tells the engine's share from io's reading and writing.

With no bundled or given model, an untrained network of the bundled models' architecture is used (gray
photo U-Net 16/32/64/128, which cleans colour through the opponent transform; speech U-Net 16/32/48/64/64,
kernel 5, 16 kHz): memory and speed do not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GIB = 1024**3

IMAGE_ARCH = {"widths": [16, 32, 64, 128]}
AUDIO_ARCH = {"widths": [16, 32, 48, 64, 64], "kernel_size": 5, "sample_rate": 16000}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def diffuse_cmd() -> list[str]:
    exe = Path(PY).parent / "diffuse"
    return [str(exe)] if exe.exists() else [PY, "-m", "diffuse_cli"]


def run_wait4(cmd: list[str]) -> dict:
    """Run a child; its own peak RSS (bytes), CPU seconds (user + system) and wall seconds."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=child_env(), cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"rc": os.waitstatus_to_exitcode(status), "peak_rss_bytes": usage.ru_maxrss * 1024,
                "cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": wall,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


# ------------------------------------------------------------------------------------------------ inputs


def write_photo(path: Path, h: int, w: int, seed: int) -> None:
    """8-bit RGB: smooth colour waves plus Gaussian noise (sigma 15), built in strips (bounded memory)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), dtype=np.uint8)
    xs = np.arange(w)
    for top in range(0, h, 512):
        y = np.arange(top, min(top + 512, h))[:, None]
        base = [128 + 70 * np.sin(xs / (40.0 + 9 * c)) * np.cos(y / (55.0 + 7 * c)) for c in range(3)]
        strip = np.stack(base, -1) + 15 * rng.standard_normal((len(y), w, 3))
        img[top : top + len(y)] = np.clip(np.rint(strip), 0, 255)
    Image.fromarray(img).save(path, compress_level=1)


def write_speech(path: Path, seconds: float, seed: int, rate: int = 16000) -> None:
    """16-bit PCM mono: harmonic bursts with pauses plus white noise (SNR about 10 dB), written in blocks."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as fh:
        for start in range(0, total, rate * 60):
            t = np.arange(start, min(start + rate * 60, total)) / rate
            phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
            voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
            envelope = np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None) ** 2
            fh.write(np.clip(0.3 * voiced * envelope + 0.03 * rng.standard_normal(t.size), -1, 1))


# ------------------------------------------------------------------------------------------------ models


def ensure_model(kind: str, explicit: str | None, tmp: Path) -> tuple[str, bool]:
    """(model dir, trained?): the given one, else the bundled one, else an untrained one of that architecture."""
    if explicit:
        return explicit, True
    sys.path.insert(0, str(ROOT))
    from diffuse_cli import models as bundled

    for entry in bundled.list_bundled():
        if kind == "image" and entry["domain"] == "image" and entry["channels"] in (1, 3):
            return entry["path"], True
        if kind == "audio" and entry["domain"] == "audio":
            return entry["path"], True
    path = tmp / f"untrained-{kind}"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from diffuse_cli import modelstore, networks\n"
        f"cfg = modelstore.default_config({kind!r}, 1, **{IMAGE_ARCH if kind == 'image' else AUDIO_ARCH!r})\n"
        "cfg = modelstore.validate_config(cfg, sys.argv[2])\n"
        "modelstore.save_model(sys.argv[2], cfg, networks.build_network(cfg))\n"
    )
    res = run_wait4([PY, "-c", code, str(ROOT), str(path)])
    if res["rc"] != 0:
        raise SystemExit(f"cannot build an untrained {kind} model: {res['stderr'][-500:]}")
    return str(path), False


# ------------------------------------------------------------------------------------------------ runs


def run_cli(files: list[Path], model: str, out_dir: Path) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    res = run_wait4([*diffuse_cmd(), "denoise", *map(str, files), "-o", str(out_dir), "--model", model,
                     "--force", "--quiet", "--json"])
    seconds = {}
    if res["rc"] == 0:
        try:
            for rec in json.loads(res["stdout"])["files"]:
                seconds[Path(rec["input"]).name] = rec.get("seconds")
        except (ValueError, KeyError):
            pass
    res["file_seconds"] = seconds
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


ENGINE_CHILD = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from diffuse_cli import denoising, modelstore
from diffuse_cli.io import Media
model = modelstore.load_model(sys.argv[2])
for path in sys.argv[3:]:
    # Decoded here, in strips, into the units io.load gives (images: u / 127.5 - 1, audio: float32), so the
    # peak is the engine's: model + input + output work, without io's own full-size temporaries.
    if path.endswith(".png"):
        from PIL import Image
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        samples = np.empty(pixels.shape, dtype=np.float32)
        for top in range(0, pixels.shape[0], 256):
            samples[top : top + 256] = pixels[top : top + 256] / np.float32(127.5) - np.float32(1.0)
        del pixels
        media = Media(domain="image", samples=samples, fmt="png", scale=127.5, bit_depth=8, mode="RGB")
    else:
        import soundfile as sf
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        media = Media(domain="audio", samples=samples, fmt="wav", sample_rate=rate, subtype="PCM_16")
    t0 = time.perf_counter()
    denoising.denoise_media(media, model, denoising.DenoiseOptions(), in_place=True)
    print(path, time.perf_counter() - t0, flush=True)
    del media, samples
"""


def run_engine(files: list[Path], model: str) -> dict:
    return run_wait4([PY, "-c", ENGINE_CHILD, str(ROOT), model, *map(str, files)])


def measure(kind: str, warm: Path, small: Path, big: Path, n_small: int, n_big: int, model: str, tmp: Path,
            engine: bool, cli: bool = True) -> dict:
    out: dict = {"elements_small": n_small, "elements_big": n_big}
    runs = {"warm": [warm], "small": [warm, small], "big": [warm, big]}
    for name, files in runs.items():
        if cli:
            log(f"[{kind}] diffuse denoise {' '.join(f.name for f in files)} ...")
            res = run_cli(files, model, tmp / f"out-{kind}-{name}")
            if res["rc"] != 0:
                log(f"[{kind}] {name} failed (exit {res['rc']}): {res['stderr'].strip()[-400:]}")
            out[f"cli_{name}"] = {k: res[k] for k in ("rc", "peak_rss_bytes", "cpu_s", "wall_s", "file_seconds")}
        if engine and (name != "small" or not cli):
            log(f"[{kind}] engine only: {' '.join(f.name for f in files)} ...")
            res = run_engine(files, model)
            out[f"engine_{name}"] = {k: res[k] for k in ("rc", "peak_rss_bytes", "cpu_s", "wall_s")}
            if res["rc"] != 0:
                log(f"[{kind}] engine {name} failed: {res['stderr'].strip()[-400:]}")
    which = "cli" if cli else "engine"
    w, s, b = (out[f"{which}_{k}"] for k in ("warm", "small", "big"))
    cpu_small, cpu_big = s["cpu_s"] - w["cpu_s"], b["cpu_s"] - w["cpu_s"]
    out["cpu_per_element_small"] = cpu_small / n_small if cpu_small > 0 else None
    out["cpu_per_element_big"] = cpu_big / n_big if cpu_big > 0 else None
    if out["cpu_per_element_small"] and out["cpu_per_element_big"]:
        out["throughput_big_vs_small"] = out["cpu_per_element_small"] / out["cpu_per_element_big"]
    fs_small, fs_big = s.get("file_seconds", {}).get(small.name), b.get("file_seconds", {}).get(big.name)
    if fs_small and fs_big:
        out["wall_throughput_big_vs_small"] = (n_big / fs_big) / (n_small / fs_small)
    out["measured"] = which
    return out


def _speed(cpu_per_element: float | None, per: float) -> str:
    return f"{1 / cpu_per_element / per:.3f}" if cpu_per_element else "n/a"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench", help="folder for memory.json and memory.md")
    p.add_argument("--quick", action="store_true", help="4000 x 4000 photo and 10 minutes of audio")
    p.add_argument("--model-image", default=None)
    p.add_argument("--model-audio", default=None)
    p.add_argument("--no-image", action="store_true")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--engine", action="store_true", help="also measure the engine alone (no file encoding)")
    p.add_argument("--engine-only", action="store_true", help="measure the engine alone, not the CLI")
    p.add_argument("--side", type=int, default=None, help="photo side (default 8000, --quick 4000)")
    p.add_argument("--minutes", type=float, default=None, help="audio minutes (default 60, --quick 10)")
    args = p.parse_args()

    side, minutes = (4000, 10) if args.quick else (8000, 60)
    side, minutes = args.side or side, args.minutes or minutes
    out_dir = Path(args.out) if os.path.isabs(args.out) else ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="diffuse-memory-"))
    started = time.perf_counter()
    report: dict = {"settings": {"photo_side": side, "audio_minutes": minutes, "quick": args.quick},
                    "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}}
    try:
        if not args.no_image:
            model, trained = ensure_model("image", args.model_image, tmp)
            log(f"writing a {side} x {side} RGB photo ...")
            files = {"warm": (tmp / "warm.png", 64), "small": (tmp / "small.png", 1000), "big": (tmp / "big.png", side)}
            for i, (path, n) in enumerate(files.values()):
                write_photo(path, n, n, i)
            r = measure("image", files["warm"][0], files["small"][0], files["big"][0], 1000 * 1000, side * side,
                        model, tmp, args.engine or args.engine_only, cli=not args.engine_only)
            report["image"] = {"model": model, "trained": trained, "target_peak_bytes": 2 * GIB, **r}
        if not args.no_audio:
            model, trained = ensure_model("audio", args.model_audio, tmp)
            log(f"writing {minutes} minutes of 16 kHz audio ...")
            files = {"warm": (tmp / "warm.wav", 1.0), "small": (tmp / "small.wav", 60.0),
                     "big": (tmp / "big.wav", 60.0 * minutes)}
            for i, (path, sec) in enumerate(files.values()):
                write_speech(path, sec, i)
            r = measure("audio", files["warm"][0], files["small"][0], files["big"][0], 60 * 16000,
                        minutes * 60 * 16000, model, tmp, args.engine or args.engine_only, cli=not args.engine_only)
            report["audio"] = {"model": model, "trained": trained, "target_peak_bytes": 1 * GIB, **r}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["elapsed_s"] = time.perf_counter() - started

    rows = []
    for kind, label, unit, per in (("image", f"{side}x{side} RGB photo", "MP/CPU-s", 1e6),
                                   ("audio", f"{minutes} min 16 kHz audio", "audio-s/CPU-s", 16000)):
        r = report.get(kind)
        if not r:
            continue
        big, small = r[f"{r['measured']}_big"], r[f"{r['measured']}_small"]
        peak = big["peak_rss_bytes"]
        met = peak < r["target_peak_bytes"] and (r.get("throughput_big_vs_small") or 0) >= 0.8
        rows.append({"input": label, "measured": r["measured"], "peak_rss_gib": peak / GIB,
                     "small_peak_rss_gib": small["peak_rss_bytes"] / GIB,
                     "target_gib": r["target_peak_bytes"] / GIB,
                     "throughput_big": _speed(r["cpu_per_element_big"], per),
                     "throughput_small": _speed(r["cpu_per_element_small"], per), "unit": unit,
                     "big_vs_small": r.get("throughput_big_vs_small"),
                     "wall_big_vs_small": r.get("wall_throughput_big_vs_small"),
                     "engine_peak_gib": (r["engine_big"]["peak_rss_bytes"] / GIB) if "engine_big" in r else None,
                     "trained_model": r["trained"], "met": met, "rc": big["rc"]})
    report["summary"] = rows
    (out_dir / "memory.json").write_text(json.dumps(report, indent=1) + "\n")

    lines = ["# `bench/memory.py`: peak memory and throughput on large inputs", "",
             f"Settings: photo {side}x{side} RGB, audio {minutes} min 16 kHz mono; {os.cpu_count()} CPUs; "
             f"{report['elapsed_s'] / 60:.1f} min. Throughput is CPU-time based (see the script's docstring).", "",
             "| input | what | peak RSS GiB (target) | small input peak GiB | engine-only peak GiB | throughput big | "
             "throughput small | big ÷ small (CPU) | big ÷ small (wall) | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        eng = f"{row['engine_peak_gib']:.2f}" if row["engine_peak_gib"] is not None else "–"
        ratio = f"{row['big_vs_small']:.2f}" if row["big_vs_small"] else "n/a"
        wall = f"{row['wall_big_vs_small']:.2f}" if row["wall_big_vs_small"] else "n/a"
        status = ("met" if row["met"] else "NOT met") + ("" if row["rc"] == 0 else f" (exit {row['rc']})")
        lines.append(f"| {row['input']} | {row['measured']} | {row['peak_rss_gib']:.2f} (< {row['target_gib']:.0f}) | "
                     f"{row['small_peak_rss_gib']:.2f} | {eng} | {row['throughput_big']} {row['unit']} | "
                     f"{row['throughput_small']} {row['unit']} | {ratio} | {wall} | {status} |")
    if any(not r["trained_model"] for r in rows):
        lines += ["", "Untrained network of the bundled architecture (no bundled model yet): speed and memory only."]
    (out_dir / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
