"""Bundled default models: each a model directory next to this file (config.json + weights).

Only config.json is read here (no TensorFlow), to list the models and pick one for a file.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffuse_cli.errors import InputError

MODELS_DIR = Path(__file__).resolve().parent


def list_bundled() -> list[dict]:
    """One entry per bundled model: name, path, domain, channels, arch, sample_rate, trained_on."""
    entries = []
    for config_path in sorted(MODELS_DIR.glob("*/config.json")):
        try:
            cfg = json.loads(config_path.read_text())
        except (OSError, ValueError):
            continue
        training = cfg.get("training") or {}
        entries.append({
            "name": config_path.parent.name,
            "path": str(config_path.parent),
            "domain": cfg.get("domain"),
            "channels": cfg.get("channels"),
            "arch": cfg.get("arch"),
            "sample_rate": cfg.get("sample_rate"),
            "trained_on": training.get("description", ""),
        })
    return entries


def choose(media) -> str:
    """The bundled model for a loaded file.

    Images: a model with the image's channel count, else a gray model (it cleans a colour image's
    opponent channels one by one). Audio and signals: a 1D model, audio models first for audio.
    """
    entries = list_bundled()
    channels = media.samples.shape[-1] if media.samples.ndim >= 2 else 1
    if media.domain == "image":
        images = [e for e in entries if e["domain"] == "image"]
        for e in images:
            if e["channels"] == channels:
                return e["path"]
        for e in images:
            if e["channels"] == 1 and channels == 3:
                return e["path"]
    wanted = () if media.domain == "image" else (media.domain, "audio", "signal")
    for domain in wanted:
        for e in entries:
            if e["domain"] == domain:
                return e["path"]
    kind = f"{channels}-channel image" if media.domain == "image" else media.domain
    raise InputError(
        f"{media.source}: no bundled model for {kind} data; pass --model DIR "
        f"(train one with: diffuse train FILES --out DIR)"
    )


KIND_WORDS = {"image": "images", "audio": "audio files", "signal": "CSV/TXT/NPY series"}


def why(media, path: str) -> str:
    """The note that says which bundled model cleans a file, and why."""
    return (f"bundled model '{Path(path).name}' (the default for {KIND_WORDS.get(media.domain, media.domain)}; "
            "--model DIR uses another)")
