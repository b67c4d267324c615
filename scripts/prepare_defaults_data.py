"""Build the training and held-out benchmark sets for the bundled default models, offline.

Sources (allowed by the project, all offline):
- photographs in Debian's ``plasma-workspace-wallpapers`` (licences: see
  /usr/share/doc/plasma-workspace-wallpapers/copyright; LGPL-3 / CC-BY-SA per wallpaper),
- images shipped inside scikit-image (``skimage/data``, licences in its data README),
- speech synthesised with Debian's ``espeak-ng`` (GPL-3; the audio it produces is ours).

Training and benchmark sets are disjoint by *source image / sentence and voice*: the held-out
photos and utterances are never written to the training folders.

Usage: python scripts/prepare_defaults_data.py OUT_DIR  (creates OUT_DIR/{train,bench}/{images,speech})
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

WALLPAPERS = Path("/usr/share/wallpapers")
# Photographic wallpapers (the rest of the package is digital art, a different distribution).
TRAIN_WALLPAPERS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "FallenLeaf", "Kite",
                    "summer_1am", "Volna"]
BENCH_WALLPAPERS = ["EveningGlow", "Path", "Grey", "OneStandsOut"]
# scikit-image's bundled natural images; camera, astronaut and coffee are kept for sample_data and the benchmark.
TRAIN_SKIMAGE = ["chelsea", "rocket", "coins", "moon", "immunohistochemistry", "brick", "grass",
                 "gravel", "hubble_deep_field", "horse", "text", "page", "clock"]
BENCH_SKIMAGE = ["camera", "astronaut", "coffee"]

TRAIN_SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "Measure the signal twice before you clean it.", "Noise hides in every recording we make.",
    "Turn the dial slowly until the tone is clear.", "Seven quick foxes jumped over the fence at dawn.",
]
BENCH_SENTENCES = [
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "Two blue fish swam in the tank.", "Her purse was full of useless trash.",
]
TRAIN_VOICES = ["en", "en-us", "en-gb-scotland", "de", "fr", "es", "it", "nl"]
TRAIN_VARIANTS = ["", "+m1", "+m3", "+f1", "+f3", "+m5", "+f4"]
BENCH_VOICES = ["en+m2", "en-us+f2", "en+m7", "en-us+f5"]


def crops_from_photo(img: Image.Image, long_side: int) -> Image.Image:
    """Downscale so the long side is ``long_side`` (also averages away JPEG artefacts)."""
    scale = long_side / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return img


def largest_wallpaper(name: str) -> Path:
    best = None
    for p in (WALLPAPERS / name / "contents" / "images").iterdir():
        try:
            w, h = (int(v) for v in p.stem.split("x"))
        except ValueError:
            continue
        if w >= h and (best is None or w * h > best[0]):
            best = (w * h, p)
    return best[1]


def write_images(names_wall, names_sk, out: Path, long_side: int, manifest: list) -> None:
    import skimage.data as skd

    out.mkdir(parents=True, exist_ok=True)
    for name in names_wall:
        src = largest_wallpaper(name)
        img = crops_from_photo(Image.open(src).convert("RGB"), long_side)
        img.save(out / f"wall-{name}.png")
        manifest.append({"file": f"wall-{name}.png", "source": str(src), "licence": "plasma-workspace-wallpapers"})
    for name in names_sk:
        arr = getattr(skd, name)()
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255 if arr.max() <= 1 else 1), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        img = crops_from_photo(Image.fromarray(arr), long_side)
        img.save(out / f"skimage-{name}.png")
        manifest.append({"file": f"skimage-{name}.png", "source": f"skimage.data.{name}", "licence": "skimage data"})


def speak(text: str, voice: str, speed: int, pitch: int, path: Path, rate: int = 16000) -> None:
    """espeak-ng -> WAV at ``rate`` Hz (resampled with scipy's polyphase filter)."""
    from math import gcd

    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                       check=True, capture_output=True)
        data, sr = sf.read(raw)
    if sr != rate:
        g = gcd(sr, rate)
        data = resample_poly(data, rate // g, sr // g)
    data = 0.7 * data / max(np.max(np.abs(data)), 1e-9)
    sf.write(path, data, rate, subtype="PCM_16")


def write_speech(out: Path, sentences, voices, rng: np.random.Generator, manifest: list, count: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = sentences[i % len(sentences)]
        voice = voices[rng.integers(len(voices))]
        speed, pitch = int(rng.integers(130, 190)), int(rng.integers(25, 75))
        name = f"utt{i:03d}.wav"
        speak(text, voice, speed, pitch, out / name)
        manifest.append({"file": name, "text": text, "voice": voice, "speed": speed, "pitch": pitch})


def main(root: str) -> None:
    if shutil.which("espeak-ng") is None or not WALLPAPERS.exists():
        sys.exit("needs Debian's espeak-ng and plasma-workspace-wallpapers: "
                 "apt-get install -y espeak-ng plasma-workspace-wallpapers")
    root_path = Path(root)
    rng = np.random.default_rng(2026)
    manifest: dict = {"train_images": [], "bench_images": [], "train_speech": [], "bench_speech": []}
    write_images(TRAIN_WALLPAPERS, TRAIN_SKIMAGE, root_path / "train/images", 1024, manifest["train_images"])
    write_images(BENCH_WALLPAPERS, BENCH_SKIMAGE, root_path / "bench/images", 512, manifest["bench_images"])
    voices = [v + var for v in TRAIN_VOICES for var in TRAIN_VARIANTS]
    write_speech(root_path / "train/speech", TRAIN_SENTENCES, voices, rng, manifest["train_speech"], 160)
    write_speech(root_path / "bench/speech", BENCH_SENTENCES, BENCH_VOICES, rng, manifest["bench_speech"], 6)
    (root_path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {root_path}: {sum(len(v) for v in manifest.values())} files")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/defaults-data")
