"""`diffuse denoise` as users run it, with tiny models trained once per session (tests/conftest.py).

Quality is checked against clean references with numbers computed here, independently of the package.
Pipes and --help run the real command in a subprocess; the rest call the same entry point in this process.
"""

from __future__ import annotations

import io as pyio
import json
import math

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.helpers import diffuse, diffuse_in_process

pytestmark = pytest.mark.slow


def psnr(a, b, peak=255.0):
    return 10 * math.log10(peak**2 / np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2))


def snr(ref, x):
    return 10 * math.log10(np.sum(ref**2) / np.sum((x - ref) ** 2))


@pytest.fixture(scope="module")
def noisy_gray(tmp_path_factory):
    d = tmp_path_factory.mktemp("gray")
    clean = np.asarray(Image.open("sample_data/photo-gray.png"), dtype=np.float64)
    rng = np.random.default_rng(11)
    noisy = np.clip(np.round(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(d / "noisy.png")
    return d / "noisy.png", clean


def test_image_psnr_improves(tiny_image_model_dir, noisy_gray, tmp_path):
    noisy_path, clean = noisy_gray
    out = tmp_path / "clean.png"
    r = diffuse_in_process("denoise", noisy_path, "-o", out, "--model", tiny_image_model_dir, "--json",
                           "--reference", "sample_data/photo-gray.png")
    assert r.returncode == 0, r.stderr
    before = psnr(clean, np.asarray(Image.open(noisy_path)))
    after = psnr(clean, np.asarray(Image.open(out)))
    assert after > before + 3.0, (before, after)
    rec = json.loads(r.stdout)
    for key in ("input", "output", "sigma", "sigma_estimated", "method", "seconds", "metrics"):
        assert key in rec
    assert rec["sigma_estimated"] is True and 20 < rec["sigma"] < 30  # estimated in 0..255 units
    assert abs(rec["metrics"]["psnr_out"] - after) < 0.05
    assert abs(rec["metrics"]["psnr_in"] - before) < 0.05


def test_gray_model_cleans_a_colour_image(tiny_image_model_dir, tmp_path):
    clean = np.asarray(Image.open("sample_data/photo-color.png").convert("RGB"), dtype=np.float64)
    rng = np.random.default_rng(5)
    noisy = np.clip(np.round(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    r = diffuse_in_process("denoise", tmp_path / "noisy.png", "-o", tmp_path / "out.png",
                           "--model", tiny_image_model_dir, "--json")
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == clean.shape  # still colour
    assert psnr(clean, out) > psnr(clean, noisy) + 3.0
    rec = json.loads(r.stdout)
    assert any("opponent" in n for n in rec["notes"]) and 20 < rec["sigma"] < 30


def test_image_pipe(tiny_image_model_dir, noisy_gray):
    noisy_path, clean = noisy_gray
    r = diffuse("denoise", "-", "-o", "-", "--model", tiny_image_model_dir, stdin=noisy_path.read_bytes())
    assert r.returncode == 0, r.stderr
    img = Image.open(pyio.BytesIO(r.stdout_bytes))
    assert img.format == "PNG" and img.mode == "L" and img.size == (clean.shape[1], clean.shape[0])
    assert psnr(clean, np.asarray(img)) > psnr(clean, np.asarray(Image.open(noisy_path))) + 3.0


def test_ddim_and_ddpm_methods(tiny_image_model_dir, noisy_gray, tmp_path):
    noisy_path, clean = noisy_gray
    before = psnr(clean, np.asarray(Image.open(noisy_path)))
    outs = {}
    for method, extra in [("ddim", []), ("ddpm", ["--seed", "4"]), ("ddpm2", ["--seed", "4"])]:
        out = tmp_path / f"{method}.png"
        r = diffuse_in_process("denoise", noisy_path, "-o", out, "--model", tiny_image_model_dir,
                               "--method", method.rstrip("2"), "--steps", "4", "--sigma", "25", *extra)
        assert r.returncode == 0, r.stderr
        outs[method] = out.read_bytes()
        assert psnr(clean, np.asarray(Image.open(out))) > before
    assert outs["ddpm"] == outs["ddpm2"]  # --seed makes the stochastic sampler reproducible


def test_salt_and_pepper_beats_median(tiny_image_model_dir, tmp_path):
    clean = np.asarray(Image.open("sample_data/photo-gray.png"), dtype=np.float64)
    sp = tmp_path / "sp.png"
    assert diffuse_in_process("noise", "sample_data/photo-gray.png", "-o", sp, "--kind", "salt-pepper",
                              "--amount", "0.1", "--seed", "3").returncode == 0
    out = tmp_path / "out.png"
    r = diffuse_in_process("denoise", sp, "-o", out, "--model", tiny_image_model_dir, "--noise-kind", "auto", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["noise_kind_used"] == "salt-pepper"
    noisy = np.asarray(Image.open(sp), dtype=np.float64)
    padded = np.pad(noisy, 1, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    median3 = np.median(windows.reshape(*noisy.shape, 9), axis=-1)
    assert psnr(clean, np.asarray(Image.open(out))) > psnr(clean, median3)


@pytest.fixture(scope="module")
def noisy_wav(tmp_path_factory):
    d = tmp_path_factory.mktemp("wav")
    clean, sr = sf.read("sample_data/speech.wav")
    rng = np.random.default_rng(5)
    noisy = clean + rng.normal(0, np.sqrt(np.mean(clean**2) / 10 ** (5 / 10)), clean.shape)
    sf.write(d / "noisy.wav", noisy, sr, subtype="PCM_16")
    return d / "noisy.wav", clean, sr


def test_wav_snr_improves_and_pipe(tiny_signal_model_dir, noisy_wav, tmp_path):
    noisy_path, clean, sr = noisy_wav
    out = tmp_path / "clean.wav"
    r = diffuse_in_process("denoise", noisy_path, "-o", out, "--model", tiny_signal_model_dir)
    assert r.returncode == 0, r.stderr
    got, sr2 = sf.read(out)
    assert sr2 == sr and sf.info(out).subtype == "PCM_16" and got.shape == clean.shape
    noisy, _ = sf.read(noisy_path)
    assert snr(clean, got) > snr(clean, noisy) + 2.0
    p = diffuse("denoise", "-", "-o", "-", "--model", tiny_signal_model_dir, stdin=noisy_path.read_bytes())
    assert p.returncode == 0, p.stderr
    piped, _ = sf.read(pyio.BytesIO(p.stdout_bytes))
    np.testing.assert_allclose(piped, got, atol=1e-4)


def test_csv_snr_improves(tiny_signal_model_dir, tmp_path):
    t = np.arange(4000)
    clean = 50 + 10 * np.sin(t / 40.0) + 4 * np.sin(t / 13.0)
    noisy = clean + np.random.default_rng(2).normal(0, 2.0, t.shape)
    src = tmp_path / "trace.csv"
    src.write_text("t,reading\n" + "".join(f"{a},{float(b)!r}\n" for a, b in zip(t, noisy)))
    out = tmp_path / "out.csv"
    r = diffuse_in_process("denoise", src, "-o", out, "--model", tiny_signal_model_dir, "--json")
    assert r.returncode == 0, r.stderr
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(data[:, 0], t)  # the time axis is untouched
    assert snr(clean - 50, data[:, 1] - 50) > snr(clean - 50, noisy - 50) + 2.0
    assert 1.6 < json.loads(r.stdout)["sigma"] < 2.4  # estimated in the file's units


def test_folder_shards_and_json(tiny_image_model_dir, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png"]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(src / n)
    seen = []
    for i in (1, 2, 3):
        out = tmp_path / f"out{i}"
        r = diffuse_in_process("denoise", src, "-o", out, "--model", tiny_image_model_dir, "--shard", f"{i}/3",
                               "--json")
        assert r.returncode == 0, r.stderr
        rec = json.loads(r.stdout)
        assert rec["failed"] == 0
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
        assert written == sorted(f["output"].split(f"out{i}/")[1] for f in rec["files"])
        seen += written
    assert sorted(seen) == sorted(names)  # disjoint and covering


def test_bad_file_in_folder_is_skipped(tiny_image_model_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(src / "good.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    r = diffuse_in_process("denoise", src, "-o", out, "--model", tiny_image_model_dir)
    assert r.returncode == 2
    assert "bad.png" in r.stderr and (out / "good.png").exists() and not (out / "bad.png").exists()


@pytest.mark.parametrize("case", ["wrong domain", "missing model", "bad sigma", "unreadable"])
def test_denoise_bad_input(case, tiny_image_model_dir, tiny_signal_model_dir, tmp_path):
    out = tmp_path / "out.png"
    args = {
        "wrong domain": ["sample_data/speech.wav", "-o", tmp_path / "o.wav", "--model", tiny_image_model_dir],
        "missing model": ["sample_data/photo-gray.png", "-o", out, "--model", tmp_path / "nope"],
        "bad sigma": ["sample_data/photo-gray.png", "-o", out, "--model", tiny_image_model_dir, "--sigma", "-1"],
        "unreadable": [tmp_path / "missing.png", "-o", out, "--model", tiny_image_model_dir],
    }[case]
    r = diffuse_in_process("denoise", *args)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.glob("o*.*"))


def test_choice_options_show_their_values_in_help():
    r = diffuse("denoise", "--help")
    assert r.returncode == 0, r.stderr
    assert "onestep|ddim|ddpm" in r.stdout
    # --noise-kind's values are named in its help text (a <gaussian|salt-pepper|auto> column folds at 80 columns)
    lines = r.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "│ --noise-kind" in line)  # its row, not a mention
    end = next(i for i in range(start + 1, len(lines)) if "│ --" in lines[i])
    row = " ".join(" ".join(line.strip("│ ").split()) for line in lines[start:end])
    assert "<kind>" in row and "gaussian, salt-pepper (impulses are filled first), poisson" in row, row
    assert "or auto (gaussian or salt-pepper, decided per file)" in row, row


@pytest.mark.parametrize("option,value,choices", [
    ("--method", "euler", "'onestep', 'ddim', 'ddpm'"),
    ("--noise-kind", "pink", "'gaussian', 'salt-pepper', 'poisson', 'auto'"),
])
def test_bad_choice_is_one_line_usage_error(option, value, choices, tmp_path):
    """Typer checks the choice before any file is read or model loaded: exit 2, one line naming the option."""
    r = diffuse_in_process("denoise", "sample_data/photo-gray.png", "-o", tmp_path / "out.png", option, value)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and option in lines[0] and f"'{value}' is not one of {choices}" in lines[0], r.stderr
    assert not (tmp_path / "out.png").exists()


def test_choice_values_reach_the_engine(tmp_path):
    """--method ddim and --noise-kind salt-pepper arrive as such: the JSON record reports them."""
    out = tmp_path / "out.png"
    r = diffuse_in_process("denoise", "sample_data/photo-gray-noisy.png", "-o", out, "--method", "ddim", "--steps", "2",
                           "--noise-kind", "salt-pepper", "--tile", "64", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["method"] == "ddim" and rec["steps"] == 2 and rec["noise_kind_used"] == "salt-pepper"
