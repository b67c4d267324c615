#!/usr/bin/env python3
"""Fuzz the file loaders: mutate sample files and check that each one either loads or raises InputError.

    .venv/bin/python scripts/fuzz_loaders.py --iterations 2000 --seed 0
    .venv/bin/python scripts/fuzz_loaders.py --iterations 200 --crash-dir runs/fuzz-crashes

Seeds are the files in sample_data/ plus small files derived from them in every other format the loaders
read (JPEG, TIFF 8/16-bit/float/multi-page, BMP, WebP, animated GIF, palette, CMYK and LA images, FLAC,
OGG, float and 24-bit WAV, NPY, space-separated TXT). Each iteration applies 1-4 random mutations (bit
flips, "interesting" byte and integer values, truncation, inserted junk, deleted or duplicated ranges,
splices with another seed, text-specific edits) and calls ``io.load_bytes`` (even iterations) or writes
the input to a file and calls ``io.load`` (odd iterations; images and audio are decoded from the open
file there); what loads is also checked
(finite samples in the documented dtypes and ranges) and encoded back with ``io.encode``.

A crash is: any exception other than InputError, an InputError whose message is not one line starting
with the file name, a loaded Media that breaks its invariants, or an iteration that takes longer than
``--timeout`` seconds. The script prints the iterations and crashes found and exits 1 on any crash.
"""

from __future__ import annotations

import argparse
import hashlib
import io as pyio
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffuse_cli import io  # noqa: E402
from diffuse_cli.errors import InputError  # noqa: E402

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
INTERESTING_INTS = (0, 1, 2, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
TEXT_JUNK = (b"nan", b"inf", b"-inf", b"1e999", b"-", b"e", b".", b",", b";", b"\t", b"\n", b"\r\n", b" ",
             b"#", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xc3", b"abc", b",,,", b"0x10", b"1_000", b"\xe2\x80\xa8")


# --------------------------------------------------------------------------------------------- seeds


def _image_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = pyio.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _audio_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = pyio.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = pyio.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load_seeds(sample_dir: Path) -> list[tuple[str, bytes]]:
    """(file name, bytes): the sample files themselves, then small derived files in the other formats."""
    seeds = [(p.name, p.read_bytes()) for p in sorted(sample_dir.iterdir())
             if p.is_file() and io.format_from_extension(p.name)]
    with Image.open(sample_dir / "photo-gray.png") as im:
        gray = im.convert("L").crop((0, 0, 40, 32))
    with Image.open(sample_dir / "photo-color.png") as im:
        rgb = im.convert("RGB").crop((0, 0, 40, 32))
    g = np.asarray(gray)
    seeds += [
        ("small.png", _image_bytes(gray, "PNG")),
        ("small-rgba.png", _image_bytes(rgb.convert("RGBA"), "PNG")),
        ("small.jpg", _image_bytes(rgb, "JPEG", quality=85)),
        ("small-gray.jpg", _image_bytes(gray, "JPEG", quality=85)),
        ("small.tif", _image_bytes(rgb, "TIFF")),
        ("small-deflate.tif", _image_bytes(gray, "TIFF", compression="tiff_deflate")),
        ("small16.tif", _image_bytes(Image.fromarray(g.astype(np.uint16) * 257), "TIFF")),
        ("small16.png", _image_bytes(Image.fromarray(g.astype(np.uint16) * 257), "PNG")),
        ("float.tif", _image_bytes(Image.fromarray((g / 255.0).astype(np.float32)), "TIFF")),
        ("pages.tif", _image_bytes(gray, "TIFF", save_all=True, append_images=[rgb.convert("L")])),
        ("small.bmp", _image_bytes(rgb, "BMP")),
        ("small.webp", _image_bytes(rgb, "WEBP", lossless=True)),
        ("animated.gif", _image_bytes(rgb.convert("P"), "GIF", save_all=True, append_images=[gray.convert("P")])),
        ("palette.png", _image_bytes(rgb.quantize(16), "PNG", transparency=0)),
        ("cmyk.jpg", _image_bytes(rgb.convert("CMYK"), "JPEG")),
        ("la.png", _image_bytes(Image.merge("LA", [gray, gray]), "PNG")),
        ("one-bit.png", _image_bytes(gray.convert("1"), "PNG")),
    ]
    speech, rate = sf.read(sample_dir / "speech.wav", dtype="float32", frames=1500)
    seeds += [
        ("small.wav", _audio_bytes(speech, rate, "WAV", "PCM_16")),
        ("float.wav", _audio_bytes(speech, rate, "WAV", "FLOAT")),
        ("stereo24.wav", _audio_bytes(np.stack([speech, speech[::-1]], 1), rate, "WAV", "PCM_24")),
        ("small.flac", _audio_bytes(speech, rate, "FLAC", "PCM_16")),
        ("small.ogg", _audio_bytes(speech, rate, "OGG", "VORBIS")),
    ]
    sensor = io.load(str(sample_dir / "sensor.csv"))
    values = sensor.samples[:200]
    seeds += [
        ("sensor.npy", _npy_bytes(values)),
        ("sensor-1d.npy", _npy_bytes(values[:, -1].astype(np.float32))),
        ("ints.npy", _npy_bytes(np.rint(values * 10).astype(np.int16))),
        ("sensor.txt", "\n".join(" ".join(repr(v) for v in row) for row in values.tolist()).encode() + b"\n"),
        ("semicolon.csv", b"a;b\n" + b"\n".join(b"%d;%g" % (i, v) for i, v in enumerate(values[:50, -1]))),
    ]
    return seeds


# --------------------------------------------------------------------------------------------- mutations


def _position(rng: random.Random, size: int) -> int:
    """Half the time in the first 256 bytes (headers matter most), else anywhere."""
    if size <= 1:
        return 0
    if rng.random() < 0.5:
        return rng.randrange(min(size, 256))
    return rng.randrange(size)


def mutate(data: bytes, rng: random.Random, seeds: list[tuple[str, bytes]], is_text: bool) -> tuple[bytes, list]:
    body = bytearray(data)
    ops = []
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        pos = _position(rng, len(body))
        if not body:
            body += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            ops.append(("refill", len(body)))
        elif is_text and choice < 0.35:
            junk = rng.choice(TEXT_JUNK)
            if rng.random() < 0.5:
                body[pos:pos] = junk
            else:
                body[pos : pos + len(junk)] = junk
            ops.append(("text", pos, junk))
        elif choice < 0.45:
            bits = rng.randint(1, 8)
            for _ in range(bits):
                p = _position(rng, len(body))
                body[p] ^= 1 << rng.randrange(8)
            ops.append(("flip", bits))
        elif choice < 0.55:
            body[pos] = rng.choice(INTERESTING_BYTES)
            ops.append(("byte", pos, body[pos]))
        elif choice < 0.65:
            width, order = rng.choice((2, 4)), rng.choice(("little", "big"))
            value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
            body[pos : pos + width] = value.to_bytes(width, order)
            ops.append(("int", pos, width, order, value))
        elif choice < 0.75:
            cut = rng.randrange(len(body)) if rng.random() < 0.5 else _position(rng, len(body))
            del body[cut:]
            ops.append(("truncate", cut))
        elif choice < 0.83:
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            body[pos:pos] = junk
            ops.append(("insert", pos, len(junk)))
        elif choice < 0.89:
            length = rng.randint(1, 256)
            del body[pos : pos + length]
            ops.append(("delete", pos, length))
        elif choice < 0.95:
            length = rng.randint(1, 256)
            body[pos:pos] = body[pos : pos + length]
            ops.append(("duplicate", pos, length))
        else:
            name, other = rng.choice(seeds)
            start = rng.randrange(len(other)) if other else 0
            body[pos:] = other[start:]
            ops.append(("splice", pos, name, start))
    return bytes(body), ops


# --------------------------------------------------------------------------------------------- checks


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def check_message(err: InputError, source: str) -> str | None:
    text = str(err)
    if "\n" in text or "\r" in text:
        return "InputError message spans several lines"
    if not text.startswith(f"{source}:"):
        return f"InputError message does not start with the file name: {text[:120]!r}"
    return None


def check_media(media: io.Media) -> str | None:
    x = np.asarray(media.samples)
    if media.domain not in ("image", "audio", "signal"):
        return f"unknown domain {media.domain!r}"
    if x.size == 0:
        return "loaded with no samples"
    if not np.all(np.isfinite(x)):
        return "loaded NaN or infinite samples"
    if media.domain == "image":
        if x.ndim != 3 or x.shape[2] not in (1, 3) or x.dtype != np.float32:
            return f"image samples {x.shape} {x.dtype}"
        if media.bit_depth in (8, 16) and (x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6):
            return f"integer image outside [-1, 1]: {x.min()}..{x.max()}"
        if media.alpha is not None and media.alpha.shape != x.shape[:2]:
            return f"alpha {media.alpha.shape} does not match {x.shape}"
    elif media.domain == "audio":
        if x.ndim != 2 or x.dtype != np.float32 or not media.sample_rate or media.sample_rate <= 0:
            return f"audio samples {x.shape} {x.dtype} at {media.sample_rate} Hz"
    elif x.ndim != 2 or x.dtype != np.float64:
        return f"signal samples {x.shape} {x.dtype}"
    return None


def output_format(media: io.Media) -> str:
    if media.fmt in io.WRITE_FORMATS:
        return media.fmt
    return {"image": "png", "audio": "wav", "signal": "csv"}[media.domain]


@dataclass
class Report:
    iterations: int = 0
    loaded: int = 0
    rejected: int = 0
    crashes: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class NativeStderr:
    """Everything written on file descriptor 2 (C libraries print there) while the block runs."""

    def __enter__(self) -> NativeStderr:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.sink = tempfile.TemporaryFile()
        os.dup2(self.sink.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.sink.seek(0)
        self.text = self.sink.read(4096).decode("utf-8", errors="replace")
        self.sink.close()


def one(data: bytes, name: str, timeout: float, folder: Path | None = None) -> tuple[str, str | None]:
    """('loaded' | 'rejected' | 'crash', detail); output on stderr (the CLI's one-line contract) is a crash."""
    with NativeStderr() as captured:
        outcome, detail = _one(data, name, timeout, folder)
    if outcome != "crash" and captured.text.strip():
        return "crash", f"wrote to stderr: {' '.join(captured.text.split())[:200]}"
    return outcome, detail


def _one(data: bytes, name: str, timeout: float, folder: Path | None) -> tuple[str, str | None]:
    """``folder``: write the input there and read it with ``io.load(path)`` (decoded from the open file),
    else ``io.load_bytes`` (stdin's path)."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            if folder is None:
                media = io.load_bytes(data, name)
            else:
                name = str(folder / name)  # messages name the path
                Path(name).write_bytes(data)
                media = io.load(name)
        except InputError as err:
            return ("crash", problem) if (problem := check_message(err, name)) else ("rejected", None)
        problem = check_media(media)
        if problem:
            return "crash", problem
        try:
            io.encode(media, output_format(media), label=name)
        except InputError as err:
            return ("crash", f"encode: {problem}") if (problem := check_message(err, name)) else ("loaded", None)
        return "loaded", None
    except Hang:
        return "crash", f"took longer than {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - every other exception is what we are looking for
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "diffuse_cli" in f.filename),
                     f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?")
        return "crash", f"{type(exc).__name__} at {where}: {' '.join(str(exc).split())[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run(iterations: int = 2000, seed: int = 0, sample_dir: Path | None = None, crash_dir: Path | None = None,
        timeout: float = 20.0, progress: bool = False) -> Report:
    seeds = load_seeds(sample_dir or ROOT / "sample_data")
    rng = random.Random(seed)
    report = Report()
    started = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    folder = Path(tempfile.mkdtemp(prefix="fuzz-loaders-"))
    try:
        for i in range(iterations):
            name, original = seeds[i % len(seeds)] if i < len(seeds) else rng.choice(seeds)
            is_text = io.detect_format(original) == "text"
            data, ops = mutate(original, rng, seeds, is_text)
            # Odd iterations go through a file on disk, even ones through memory: both decoding paths.
            outcome, detail = one(data, name, timeout, folder if i % 2 else None)
            report.iterations += 1
            if outcome == "loaded":
                report.loaded += 1
            elif outcome == "rejected":
                report.rejected += 1
            else:
                digest = hashlib.sha256(data).hexdigest()[:12]
                crash = {"iteration": i, "seed_file": name, "ops": ops, "problem": detail, "sha": digest}
                report.crashes.append(crash)
                print(f"CRASH iteration {i} ({name}, {len(ops)} mutation(s)): {detail}", file=sys.stderr)
                if crash_dir:
                    crash_dir.mkdir(parents=True, exist_ok=True)
                    (crash_dir / f"crash-{digest}-{name}").write_bytes(data)
            if progress and (i + 1) % 500 == 0:
                print(f"  {i + 1} iterations, {len(report.crashes)} crash(es)", file=sys.stderr)
    finally:
        signal.signal(signal.SIGALRM, old)
        shutil.rmtree(folder, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="mutated inputs to try (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed replays the same inputs")
    parser.add_argument("--samples", type=Path, default=ROOT / "sample_data", help="folder of seed files")
    parser.add_argument("--crash-dir", type=Path, default=None, help="save each crashing input here")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds one input may take (default 20)")
    parser.add_argument("--memory-mb", type=int, default=4096,
                        help="address-space limit, so a damaged size field cannot eat the machine (0: none)")
    args = parser.parse_args(argv)
    if args.memory_mb > 0:
        limit = args.memory_mb * 2**20
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    warnings.filterwarnings("ignore")  # as the CLI does: a stray Python warning never reaches its users
    report = run(args.iterations, args.seed, args.samples, args.crash_dir, args.timeout, progress=True)
    kinds = {}
    for crash in report.crashes:
        kinds[crash["problem"].split(":")[0]] = kinds.get(crash["problem"].split(":")[0], 0) + 1
    print(f"fuzz_loaders: {report.iterations} iterations (seed {args.seed}), {report.loaded} loaded, "
          f"{report.rejected} rejected with InputError, {len(report.crashes)} crash(es) in {report.seconds:.1f} s")
    for kind, count in sorted(kinds.items()):
        print(f"  {count} x {kind}")
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
