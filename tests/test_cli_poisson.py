"""Camera (Poisson) noise through the CLI: `noise --kind poisson` and `denoise --noise-kind poisson`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from diffuse_cli import metrics
from tests.helpers import diffuse

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def test_poisson_noise_has_the_photon_variance_of_its_peak(tmp_path: Path) -> None:
    # a flat 8-bit image at level 102: counts ~ Poisson(102 / g), g = 255 / peak, so the noise variance is
    # g * 102 in file units (before rounding to levels, which adds 1/12)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((128, 128), 102, np.uint8)).save(flat)
    out = tmp_path / "noisy.png"
    r = diffuse("noise", flat, "-o", out, "--kind", "poisson", "--peak", "20", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["gain"] == 255 / 20 and report["peak"] == 20
    noisy = np.asarray(Image.open(out), dtype=np.float64)
    gain = 255 / 20
    assert abs(noisy.mean() - 102) < 0.5
    assert abs(noisy.var() / (gain * 102 + 1 / 12) - 1) < 0.05
    again = tmp_path / "again.png"
    assert diffuse("noise", flat, "-o", again, "--kind", "poisson", "--peak", "20", "--seed", "3").returncode == 0
    assert again.read_bytes() == out.read_bytes()  # reproducible with --seed


def test_denoise_poisson_beats_the_gaussian_path_on_a_colour_photo(tmp_path: Path) -> None:
    clean = SAMPLES / "photo-color.png"
    noisy = tmp_path / "noisy.png"
    assert diffuse("noise", clean, "-o", noisy, "--kind", "poisson", "--peak", "30", "--seed", "1").returncode == 0
    scores = {}
    for kind in ("poisson", "gaussian"):
        out = tmp_path / f"{kind}.png"
        r = diffuse("denoise", noisy, "-o", out, "--noise-kind", kind, "--json")
        assert r.returncode == 0, r.stderr
        record = json.loads(r.stdout)
        scores[kind] = metrics.psnr(np.asarray(Image.open(clean), float), np.asarray(Image.open(out), float), 255.0)
    assert record["noise_kind_used"] == "gaussian"
    noisy_psnr = metrics.psnr(np.asarray(Image.open(clean), float), np.asarray(Image.open(noisy), float), 255.0)
    # measured: noisy 19.5, gaussian path 24.2, poisson path 30.0 dB
    assert scores["poisson"] > noisy_psnr + 9.0
    assert scores["poisson"] > scores["gaussian"] + 4.0


def test_denoise_poisson_reports_gain_and_read_noise(tmp_path: Path) -> None:
    noisy = tmp_path / "noisy.png"
    assert diffuse("noise", SAMPLES / "photo-gray.png", "-o", noisy, "--kind", "poisson", "--peak", "30",
                   "--seed", "2").returncode == 0
    r = diffuse("denoise", noisy, "-o", tmp_path / "out.png", "--noise-kind", "poisson", "--gain", "8.5",
                "--sigma", "0", "--json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["gain"] == 8.5 and not record["gain_estimated"]
    assert record["sigma"] == 0 and not record["sigma_estimated"]
    assert record["peak"] == 255 / 8.5
    assert "Poisson gain 8.5 (given)" in r.stderr


def test_poisson_options_are_checked(tmp_path: Path) -> None:
    cases = [
        (("noise", SAMPLES / "photo-gray.png", "-o", tmp_path / "a.png", "--kind", "poisson"), "needs --peak"),
        (("noise", SAMPLES / "sensor.csv", "-o", tmp_path / "a.csv", "--kind", "poisson", "--peak", "5"),
         "photon noise for images"),
        (("denoise", SAMPLES / "photo-gray-noisy.png", "-o", tmp_path / "b.png", "--gain", "3"),
         "--gain is for --noise-kind poisson"),
        (("denoise", SAMPLES / "photo-gray-noisy.png", "-o", tmp_path / "b.png", "--noise-kind", "poisson",
          "--gain", "-1"), "--gain -1.0: must be a positive number"),
        (("denoise", SAMPLES / "speech-noisy.wav", "-o", tmp_path / "b.wav", "--noise-kind", "poisson"),
         "photon noise for images"),
    ]
    for args, message in cases:
        r = diffuse(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written
