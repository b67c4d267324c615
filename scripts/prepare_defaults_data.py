"""Build the training, held-out and benchmark sets for the bundled default models, offline.

Sources (the only ones the image model is trained on; all offline, seeded, reproducible):
- photographs in Debian's ``plasma-workspace-wallpapers`` (Debian copyright: GPL-2+; each wallpaper's
  metadata: LGPL-3, Volna CC-BY-SA-4.0),
- photographs in Debian's ``lomiri-wallpapers-16.04`` / ``lomiri-wallpapers-20.04`` (CC-BY-4.0,
  CC-BY-SA-3.0/4.0, CC0-1.0 per file: /usr/share/doc/lomiri-wallpapers-16.04/copyright),
- images shipped inside scikit-image (``skimage/data``, licences in its data README),
- procedural dead leaves images (diffuse_cli.dead_leaves; ours),
- speech synthesised with Debian's ``espeak-ng`` (GPL-3; the audio it produces is ours).
Debian's ``gnome-backgrounds``, ``ukui-wallpapers`` and ``lomiri-wallpapers`` hold no photographs (only
renders and drawings, a different distribution), so nothing is taken from them.

Training and held-out sets are disjoint by *source image / sentence and voice*: the held-out photos
(OUT/heldout/images, listed in OUT/manifest.json) and utterances are never written to the training folders.
OUT/bench/images is the benchmark's subset of the held-out photos (bench/run_bench.py).

Usage: python scripts/prepare_defaults_data.py OUT_DIR [--skip-speech]
  (creates OUT_DIR/{train,bench}/{images,speech}, OUT_DIR/heldout/images and OUT_DIR/manifest.json)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout: diffuse_cli.dead_leaves
    sys.path.insert(0, str(ROOT))

from diffuse_cli.dead_leaves import dead_leaves_uint8  # noqa: E402

WALLPAPERS = Path("/usr/share/wallpapers")
BACKGROUNDS = Path("/usr/share/backgrounds")
# Photographic wallpapers (the rest of the package is digital art, a different distribution).
TRAIN_WALLPAPERS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "FallenLeaf", "Kite",
                    "summer_1am", "Volna"]
BENCH_WALLPAPERS = ["EveningGlow", "Path", "Grey", "OneStandsOut"]
# scikit-image's bundled natural images; camera, astronaut and coffee are kept for sample_data and the benchmark.
TRAIN_SKIMAGE = ["chelsea", "rocket", "coins", "moon", "immunohistochemistry", "brick", "grass",
                 "gravel", "hubble_deep_field", "horse", "text", "page", "clock"]
BENCH_SKIMAGE = ["camera", "astronaut", "coffee"]
# Photographs of lomiri-wallpapers-16.04 / -20.04 (file stem -> licence, from the packages' copyright
# files). Left out as not photographs: analogpattern (a processed texture), umang, Fossa, Infinite-Sea,
# Painting-Colors (renders/drawings).
LOMIRI_LICENCES = {
    "aitzgorri_by_Aitzol_Berasategi": "CC-BY-4.0", "Bridge_by_Sander_Klootwijk": "CC-BY-SA-4.0",
    "Dragonfly_by_Bolly": "CC-BY-SA-4.0", "free_by_Peter_Nerlich": "CC-BY-SA-4.0",
    "friends_by_Aitzol_Berasategi": "CC-BY-4.0", "greentock_by_Peter_Nerlich": "CC-BY-SA-4.0",
    "life_by_Aitzol_Berasategi": "CC-BY-4.0", "picosdeeuropa_by_Aitzol_Berasategi": "CC-BY-4.0",
    "Picture_0B_by_freespace": "CC-BY-4.0", "Picture_1A_by_freespace": "CC-BY-4.0",
    "seeding_by_Clements_Engelhardt": "CC0-1.0", "sunset_by_Aitzol_Berasategi": "CC-BY-4.0",
    "Wine_by_Jakkub_Mede": "CC-BY-4.0", "Kleiber_by_Lukas_Baubkus": "CC-BY-SA-3.0",
}
HELDOUT_LOMIRI = ["Bridge_by_Sander_Klootwijk", "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi",
                  "Picture_1A_by_freespace"]
TRAIN_LOMIRI = [n for n in LOMIRI_LICENCES if n not in HELDOUT_LOMIRI]
DEAD_LEAVES_COUNT = 12  # 512x512 each: about a sixth of the training pixels (patches are drawn by area)
DEAD_LEAVES_SIZE = 512

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


def write_images(names_wall, names_sk, out: Path, long_side: int, manifest: list, names_lomiri=()) -> None:
    import skimage.data as skd

    out.mkdir(parents=True, exist_ok=True)
    for name in names_wall:
        src = largest_wallpaper(name)
        img = crops_from_photo(Image.open(src).convert("RGB"), long_side)
        img.save(out / f"wall-{name}.png")
        manifest.append({"file": f"wall-{name}.png", "source": str(src), "licence": "plasma-workspace-wallpapers"})
    for name in names_lomiri:
        src = BACKGROUNDS / f"{name}.jpg"
        img = crops_from_photo(Image.open(src).convert("RGB"), long_side)
        img.save(out / f"lomiri-{name}.png")
        manifest.append({"file": f"lomiri-{name}.png", "source": str(src),
                         "licence": f"{LOMIRI_LICENCES[name]} (lomiri-wallpapers)"})
    for name in names_sk:
        arr = getattr(skd, name)()
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255 if arr.max() <= 1 else 1), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        img = crops_from_photo(Image.fromarray(arr), long_side)
        img.save(out / f"skimage-{name}.png")
        manifest.append({"file": f"skimage-{name}.png", "source": f"skimage.data.{name}", "licence": "skimage data"})


def write_dead_leaves(out: Path, count: int, size: int, manifest: list) -> None:
    """``count`` dead leaves images, image ``i`` from seed ``i`` (diffuse_cli.dead_leaves)."""
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = f"deadleaves-{i:02d}.png"
        Image.fromarray(dead_leaves_uint8(size, seed=i)).save(out / name)
        manifest.append({"file": name, "source": f"diffuse_cli.dead_leaves.dead_leaves_uint8({size}, seed={i})",
                         "licence": "procedural (ours)"})


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


def main(root: str, skip_speech: bool = False) -> None:
    lomiri = [BACKGROUNDS / f"{n}.jpg" for n in LOMIRI_LICENCES]
    if not WALLPAPERS.exists() or not all(p.exists() for p in lomiri):
        sys.exit("needs Debian's plasma-workspace-wallpapers and lomiri-wallpapers-16.04/-20.04: apt-get install -y "
                 "plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04")
    if not skip_speech and shutil.which("espeak-ng") is None:
        sys.exit("needs Debian's espeak-ng (apt-get install -y espeak-ng), or pass --skip-speech")
    root_path = Path(root)
    rng = np.random.default_rng(2026)
    manifest: dict = {"train_images": [], "heldout_images": [], "bench_images": [], "train_speech": [],
                      "bench_speech": []}
    write_images(TRAIN_WALLPAPERS, TRAIN_SKIMAGE, root_path / "train/images", 1024, manifest["train_images"],
                 TRAIN_LOMIRI)
    write_dead_leaves(root_path / "train/images", DEAD_LEAVES_COUNT, DEAD_LEAVES_SIZE, manifest["train_images"])
    write_images(BENCH_WALLPAPERS, BENCH_SKIMAGE, root_path / "bench/images", 512, manifest["bench_images"])
    write_images(BENCH_WALLPAPERS, BENCH_SKIMAGE, root_path / "heldout/images", 512, manifest["heldout_images"],
                 HELDOUT_LOMIRI)
    if not skip_speech:
        voices = [v + var for v in TRAIN_VOICES for var in TRAIN_VARIANTS]
        write_speech(root_path / "train/speech", TRAIN_SENTENCES, voices, rng, manifest["train_speech"], 160)
        write_speech(root_path / "bench/speech", BENCH_SENTENCES, BENCH_VOICES, rng, manifest["bench_speech"], 6)
    trained = {e["source"] for e in manifest["train_images"]}
    assert not trained & {e["source"] for e in manifest["heldout_images"]}, "a held-out photo is in training"
    (root_path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {root_path}: {sum(len(v) for v in manifest.values())} files")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="runs/defaults-data")
    parser.add_argument("--skip-speech", action="store_true", help="images only (no espeak-ng needed)")
    args = parser.parse_args()
    main(args.out, args.skip_speech)
