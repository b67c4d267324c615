"""`diffuse noise` and `diffuse encode-steps` as a user runs them: files, pipes, exit codes, numbers
checked independently of the package (Pillow, soundfile, numpy here). Pipes, --help and the guard against huge
tables run the real program in a new process; the rest call its entry point in this process (tests/helpers.py)."""

from __future__ import annotations

import io as pyio
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.helpers import diffuse, diffuse_in_process, midtone_gray, speechlike


@pytest.fixture
def gray_png(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(midtone_gray(128, 160)).save(path)
    return path


@pytest.fixture
def speech_wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, speechlike(16000, 2.0), 16000, subtype="PCM_16")
    return path


def test_gaussian_sigma25_psnr(gray_png, tmp_path):
    out = tmp_path / "noisy.png"
    r = diffuse_in_process("noise", gray_png, "-o", out, "--sigma", "25", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(gray_png), dtype=np.float64)
    b = np.asarray(Image.open(out), dtype=np.float64)
    psnr = 10 * math.log10(255**2 / np.mean((a - b) ** 2))
    assert abs(psnr - 20.17) < 0.3
    import json

    report = json.loads(r.stdout)
    assert abs(report["psnr_db"] - psnr) < 0.01


def test_gaussian_snr10_on_audio(speech_wav, tmp_path):
    out = tmp_path / "noisy.wav"
    r = diffuse_in_process("noise", speech_wav, "-o", out, "--snr", "10", "--seed", "1")
    assert r.returncode == 0, r.stderr
    clean, sr = sf.read(speech_wav)
    noisy, sr2 = sf.read(out)
    assert sr2 == sr == 16000 and sf.info(out).subtype == "PCM_16"
    snr = 10 * math.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2))
    assert abs(snr - 10) < 0.2
    assert "SNR" in r.stderr


def test_salt_pepper_amount_and_ratio(gray_png, tmp_path):
    out = tmp_path / "sp.png"
    r = diffuse_in_process("noise", gray_png, "-o", out, "--kind", "salt-pepper", "--amount", "0.1",
                           "--salt-ratio", "0.3", "--seed", "0")
    assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(gray_png))
    b = np.asarray(Image.open(out))
    changed = a != b
    assert abs(changed.mean() - 0.1) < 0.01
    assert set(np.unique(b[changed])) <= {0, 255}
    hit = b[changed]
    assert abs((hit == 255).mean() - 0.3) < 0.03


def test_diffusion_mean_and_variance(tmp_path):
    """q(x_t|x_0) on a float WAV (no clipping, no quantisation): mean sqrt(ab) x0, variance 1 - ab."""
    x0 = 0.5 * np.sin(np.linspace(0, 200 * np.pi, 400_000))
    src, out = tmp_path / "x0.wav", tmp_path / "xt.wav"
    sf.write(src, x0, 8000, subtype="DOUBLE")
    r = diffuse_in_process("noise", src, "-o", out, "--kind", "diffusion", "--step", "100", "--seed", "5")
    assert r.returncode == 0, r.stderr
    xt, _ = sf.read(out)
    ab = np.prod(1 - np.linspace(1e-4, 0.02, 1000)[:100])
    resid = xt - math.sqrt(ab) * x0
    n = len(x0)
    assert abs(resid.mean()) < 4 * math.sqrt((1 - ab) / n)
    assert abs(resid.var() / (1 - ab) - 1) < 4 * math.sqrt(2 / n)


def test_seed_reproducible(gray_png, tmp_path):
    outs = []
    for name, seed in [("a", "7"), ("b", "7"), ("c", "8")]:
        out = tmp_path / f"{name}.png"
        assert diffuse_in_process("noise", gray_png, "-o", out, "--sigma", "10", "--seed", seed).returncode == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_png_pipe(gray_png):
    r = diffuse("noise", "-", "-o", "-", "--sigma", "5", "--seed", "1", stdin=gray_png.read_bytes())
    assert r.returncode == 0, r.stderr
    img = Image.open(pyio.BytesIO(r.stdout_bytes))
    assert img.format == "PNG" and img.size == (160, 128) and img.mode == "L"


def test_wav_pipe_with_format(speech_wav):
    r = diffuse("noise", "-", "-o", "-", "--format", "wav", "--snr", "10", "--seed", "1",
                stdin=speech_wav.read_bytes())
    assert r.returncode == 0, r.stderr
    data, sr = sf.read(pyio.BytesIO(r.stdout_bytes))
    assert sr == 16000 and data.shape == (32000,)


def seed_sinusoidal_step_encoding(t, d_model):
    angle_rates = 1 / np.power(10000, (2 * (np.arange(d_model) // 2)) / np.float32(d_model))
    angle_rads = t * angle_rates
    angle_rads[:, 0::2] = np.sin(angle_rads[:, 0::2])
    angle_rads[:, 1::2] = np.cos(angle_rads[:, 1::2])
    return angle_rads


@pytest.mark.parametrize("steps,values,dim", [("0,5,10.5", [0, 5, 10.5], 16), ("0:50:7", list(range(0, 50, 7)), 9)])
def test_encode_steps_npy_and_csv(tmp_path, steps, values, dim):
    expected = seed_sinusoidal_step_encoding(np.array(values, dtype=float).reshape(-1, 1), dim)
    npy, csv = tmp_path / "e.npy", tmp_path / "e.csv"
    assert diffuse_in_process("encode-steps", "--steps", steps, "--dim", str(dim), "-o", npy).returncode == 0
    np.testing.assert_allclose(np.load(npy), expected, atol=1e-6)
    assert diffuse_in_process("encode-steps", "--steps", steps, "--dim", str(dim), "-o", csv).returncode == 0
    table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
    np.testing.assert_allclose(table[:, 0], values)
    np.testing.assert_allclose(table[:, 1:], expected, atol=1e-6)


def test_encode_steps_png_heatmap(tmp_path):
    out = tmp_path / "e.png"
    assert diffuse_in_process("encode-steps", "--steps", "0:100", "--dim", "32", "-o", out).returncode == 0
    img = Image.open(out)
    assert img.mode == "RGB" and img.size[0] > img.size[1] / 100 * 32 * 0.9  # steps are rows, dims columns
    assert img.size == (32 * 5, 100 * 5)


def test_encode_steps_piped_is_csv():
    r = diffuse("encode-steps", "--steps", "1,2", "--dim", "4")
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "t,e0,e1,e2,e3" and len(lines) == 3


def test_cli_does_not_import_tensorflow():
    code = "import sys, diffuse_cli.cli, diffuse_cli.noise, diffuse_cli.io, diffuse_cli.png16, " \
           "diffuse_cli.denoising; " \
           "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_help_and_version():
    r = diffuse("--help")
    assert r.returncode == 0 and "denoise" in r.stdout and "encode-steps" in r.stdout
    for cmd in ("noise", "train", "denoise", "encode-steps"):
        h = diffuse(cmd, "--help")
        assert h.returncode == 0 and "Example" in h.stdout
    v = diffuse("--version")
    assert v.returncode == 0 and v.stdout.startswith("diffuse ")


def test_time_column_of_a_csv_is_left_alone(tmp_path):
    src, out = tmp_path / "s.csv", tmp_path / "n.csv"
    t = np.arange(500) * 30
    v = 20 + np.sin(t / 900.0)
    src.write_text("time,value\n" + "".join(f"{a},{float(b)!r}\n" for a, b in zip(t, v)))
    r = diffuse_in_process("noise", src, "-o", out, "--sigma", "0.1", "--seed", "2")
    assert r.returncode == 0, r.stderr
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(data[:, 0], t)
    assert 0.08 < np.std(data[:, 1] - v) < 0.12
    assert out.read_text().splitlines()[0] == "time,value"


def test_last_diffusion_step_of_a_short_schedule_is_almost_pure_noise(tmp_path):
    """T = 10 linear: the rescaled betas reach 2.0 unless capped; step 9 must be noise, not the signal."""
    x0 = 0.5 * np.sin(np.linspace(0, 40 * np.pi, 20_000))
    src, out = tmp_path / "x0.wav", tmp_path / "xt.wav"
    sf.write(src, x0, 8000, subtype="DOUBLE")
    r = diffuse_in_process("noise", src, "-o", out, "--kind", "diffusion", "--step", "9", "--timesteps", "10",
                           "--seed", "1", "--json")
    assert r.returncode == 0, r.stderr
    xt, _ = sf.read(out)
    report = json.loads(r.stdout)
    assert report["alpha_bar"] < 1e-6
    # Independently: the correlation with the clean signal is what sqrt(alpha_bar) allows, i.e. none.
    assert abs(np.corrcoef(xt, x0)[0, 1]) < 0.05
    assert 10 * math.log10(np.sum(x0**2) / np.sum((xt - x0) ** 2)) < -3
    assert abs(np.std(xt) - 1.0) < 0.05


@pytest.mark.parametrize(("args", "option"), [(["--steps", "0:1e12"], "--steps"),
                                              (["--steps", "0:100000", "--dim", "8192"], "--dim")])
def test_encode_steps_refuses_huge_tables_before_allocating(args, option):
    r = diffuse("encode-steps", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffuse: error: {option}"), r.stderr
    assert "too many" in lines[0] or "more than" in lines[0]
    assert "MemoryError" not in r.stderr and r.stdout == ""


def _temperature_log(path, n=4000):
    """time (s) and a temperature around 20 degrees C varying by about +-0.5: the DC level dwarfs the variation."""
    t = np.arange(n) * 30
    temp = 20.0 + 0.5 * np.sin(t / 3000.0) + 0.2 * np.cos(t / 700.0)
    path.write_text("time,temp\n" + "".join(f"{a},{float(b)!r}\n" for a, b in zip(t, temp)))
    return t, temp


def test_snr_of_a_signal_is_relative_to_its_variation_not_its_dc_level(tmp_path):
    src, out = tmp_path / "log.csv", tmp_path / "noisy.csv"
    t, temp = _temperature_log(src)
    r = diffuse_in_process("noise", src, "-o", out, "--snr", "10", "--seed", "1", "--json")
    assert r.returncode == 0, r.stderr
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(data[:, 0], t)  # the time column is not a measurement
    noise = data[:, 1] - temp
    achieved = 10 * math.log10(np.var(temp) / np.mean(noise**2))  # computed here, around the mean
    assert abs(achieved - 10.0) < 0.3, achieved
    report = json.loads(r.stdout)
    assert report["snr_db"] == pytest.approx(achieved, abs=0.01)  # the reported SNR is zero-mean too
    assert f"SNR {achieved:.2f} dB" in r.stderr


def test_reported_snr_of_a_signal_skips_time_columns_and_the_dc_level(tmp_path):
    src, out = tmp_path / "log.csv", tmp_path / "noisy.csv"
    t, temp = _temperature_log(src)
    r = diffuse_in_process("noise", src, "-o", out, "--sigma", "0.05", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    expected = 10 * math.log10(np.sum((temp - temp.mean()) ** 2) / np.sum((data[:, 1] - temp) ** 2))
    assert json.loads(r.stdout)["snr_db"] == pytest.approx(expected, abs=0.01)


def test_snr_of_a_constant_signal_is_refused(tmp_path):
    src, out = tmp_path / "flat.csv", tmp_path / "noisy.csv"
    src.write_text("value\n" + "20.5\n" * 100)
    r = diffuse_in_process("noise", src, "-o", out, "--snr", "10")
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.strip().startswith("diffuse: error:") and "--sigma" in r.stderr, r.stderr


def test_snr_help_says_how_the_signal_power_is_taken():
    r = diffuse("noise", "--help")
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.stdout).split())
    assert "around its mean" in text and "time/index columns" in text, text


def test_noise_json_has_null_for_an_infinite_psnr(gray_png, tmp_path):
    r = diffuse_in_process("noise", gray_png, "-o", tmp_path / "same.png", "--sigma", "0", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout, parse_constant=lambda name: pytest.fail(f"invalid JSON constant {name}"))
    assert report["psnr_db"] is None


def test_noise_on_a_three_decimal_csv_writes_three_decimals(tmp_path):
    src, out = tmp_path / "log.csv", tmp_path / "noisy.csv"
    t = np.arange(300) * 30
    temp = 20 + np.sin(t / 900.0)
    src.write_text("time,temp\n" + "".join(f"{a},{b:.3f}\n" for a, b in zip(t, temp)))
    r = diffuse_in_process("noise", src, "-o", out, "--sigma", "0.2", "--seed", "4", "--json")
    assert r.returncode == 0, r.stderr
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert [a for a, _ in rows] == [str(v) for v in t]
    assert all(re.fullmatch(r"-?\d+\.\d{3}", b) for _, b in rows), rows[:5]
    # The reported SNR is that of the file as written (values at the input's resolution).
    clean = np.array([float(f"{b:.3f}") for b in temp])
    noisy = np.array([float(b) for _, b in rows])
    expected = 10 * math.log10(np.sum((clean - clean.mean()) ** 2) / np.sum((noisy - clean) ** 2))
    assert json.loads(r.stdout)["snr_db"] == pytest.approx(expected, abs=1e-3)


def test_noise_on_a_channels_first_npy_works_along_time(tmp_path):
    """(3, 3000): 3 channels at levels 100/200/300 varying by ~1. Read as 3000 channels of 3 samples, the SNR
    would be taken across the channel levels and the noise would be ~100x too large."""
    n = 3000
    arr = np.stack([100.0 * (c + 1) + np.sin(np.arange(n) / (30.0 + 7 * c)) for c in range(3)])
    src, out = tmp_path / "cf.npy", tmp_path / "noisy.npy"
    np.save(src, arr)
    r = diffuse_in_process("noise", src, "-o", out, "--snr", "10", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "3 channels of 3000 samples" in r.stderr
    noisy = np.load(out)
    assert noisy.shape == (3, n)
    expected_sigma = math.sqrt(np.mean((arr - arr.mean(axis=1, keepdims=True)) ** 2) / 10.0)
    assert abs(np.std(noisy - arr) / expected_sigma - 1) < 0.05
    r = diffuse_in_process("noise", src, "-o", tmp_path / "rows.npy", "--snr", "10", "--seed", "1", "--axis", "1")
    assert r.returncode == 0 and np.array_equal(np.load(tmp_path / "rows.npy"), noisy)
    r = diffuse_in_process("noise", src, "-o", tmp_path / "bad.npy", "--snr", "10", "--axis", "3")
    assert r.returncode == 2 and "--axis" in r.stderr and not (tmp_path / "bad.npy").exists()


@pytest.mark.parametrize("ext", [".tif", ".png"])
def test_noise_keeps_16_bit_colour(tmp_path, ext):
    """16-bit RGB in, 16-bit RGB out: --sigma 0 changes nothing, --sigma 1000 is 1000 in 0..65535 units."""
    tifffile = pytest.importorskip("tifffile")
    from diffuse_cli import png16

    y, x = np.mgrid[0:64, 0:80]
    pixels = np.stack([20000 + 100 * x, 30000 + 150 * y, 25000 + 50 * (x + y)], axis=-1).astype(np.uint16)
    src = tmp_path / f"in{ext}"
    if ext == ".tif":
        tifffile.imwrite(src, pixels, photometric="rgb")
        read = tifffile.imread
    else:
        with open(src, "wb") as handle:
            png16.write(handle, pixels)

        def read(path):
            with open(path, "rb") as handle:
                return png16.read(handle)
    same, noisy = tmp_path / f"same{ext}", tmp_path / f"noisy{ext}"
    r = diffuse_in_process("noise", src, "-o", same, "--sigma", "0", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["psnr_db"] is None  # identical: infinite PSNR, null in JSON
    np.testing.assert_array_equal(read(same), pixels)
    r = diffuse_in_process("noise", src, "-o", noisy, "--sigma", "1000", "--seed", "1")
    assert r.returncode == 0, r.stderr
    out = read(noisy)
    assert out.dtype == np.uint16 and out.shape == pixels.shape
    assert abs(np.std(out.astype(np.float64) - pixels) / 1000 - 1) < 0.05
