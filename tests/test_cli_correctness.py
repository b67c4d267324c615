"""`diffuse denoise` reports the right numbers for every input, and says what it did with each file.

Every metric is recomputed here from the written files with numpy, independently of diffuse_cli.metrics.
The runs use the bundled models (no training); each CLI run is shared by the tests that read it. They call the
command's entry point in this process (tests/helpers.py); --help is rendered by the real program.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import diffuse_in_process, midtone_gray

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ------------------------------------------------------------------------------ independent metrics


def psnr8(ref, x) -> float:
    err = np.mean((np.asarray(ref, float) - np.asarray(x, float)) ** 2)
    return math.inf if err == 0 else 10 * math.log10(255.0**2 / err)


def zero_mean_snr(ref, x) -> float:
    """Signal power around each column's mean over the error power, in dB."""
    ref, x = np.asarray(ref, float), np.asarray(x, float)
    return 10 * math.log10(np.sum((ref - ref.mean(axis=0)) ** 2) / np.sum((x - ref) ** 2))


def si_sdr(ref, x) -> float:
    """Le Roux et al. 2019, one 1-D channel: both zero-mean, x projected onto ref."""
    r, e = ref - ref.mean(), x - x.mean()
    target = np.dot(e, r) / np.dot(r, r) * r
    return 10 * math.log10(np.sum(target**2) / np.sum((e - target) ** 2))


def strict_json(text: str):
    """JSON as the standard defines it: NaN and Infinity are not numbers there."""
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")
    return json.loads(text, parse_constant=refuse)


def noisy_copy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)


def stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ------------------------------------------------------------------------------ item: signal reference


@pytest.mark.slow
def test_signal_reference_scores_the_value_column_around_its_mean(tmp_path):
    """sensor.csv has a time column (0, 30, 60, ...) and a temperature near 20.5: SNR is taken around the
    value's mean, and neither SNR nor SI-SDR sees the time column."""
    out = tmp_path / "out.csv"
    r = diffuse_in_process("denoise", "sample_data/sensor-noisy.csv", "-o", out,
                           "--reference", "sample_data/sensor.csv", "--json")
    assert r.returncode == 0, r.stderr
    m = strict_json(r.stdout)["metrics"]
    clean = np.loadtxt("sample_data/sensor.csv", delimiter=",", skiprows=1)[:, 1]
    noisy = np.loadtxt("sample_data/sensor-noisy.csv", delimiter=",", skiprows=1)[:, 1]
    cleaned = np.loadtxt(out, delimiter=",", skiprows=1)[:, 1]
    assert m["snr_in"] == pytest.approx(zero_mean_snr(clean, noisy), abs=0.01)
    assert 10.5 < m["snr_in"] < 12  # the value column's own SNR, not 100+ dB from the DC level and time
    assert m["snr_out"] == pytest.approx(zero_mean_snr(clean, cleaned), abs=0.01)
    assert m["si_sdr_in"] == pytest.approx(si_sdr(clean, noisy), abs=0.01)
    assert m["si_sdr_out"] == pytest.approx(si_sdr(clean, cleaned), abs=0.01)
    assert f"SNR {m['snr_in']:.2f} -> {m['snr_out']:.2f} dB" in r.stderr


def test_reference_help_says_how_signals_are_scored():
    text = option_help("denoise", "--reference")
    assert "mean" in text and "time" in text, text


# ------------------------------------------------------------------------------ item: tiny images


@pytest.mark.slow
def test_reference_smaller_than_the_ssim_window_reports_ssim_null(tmp_path):
    clean = midtone_gray(8, 9, seed=3)
    Image.fromarray(clean).save(tmp_path / "ref.png")
    Image.fromarray(noisy_copy(clean, 20, 1)).save(tmp_path / "noisy.png")
    out = tmp_path / "out.png"
    r = diffuse_in_process("denoise", tmp_path / "noisy.png", "-o", out, "--reference", tmp_path / "ref.png", "--json")
    assert r.returncode == 0, r.stderr
    assert out.exists()
    m = strict_json(r.stdout)["metrics"]
    assert m["ssim_in"] is None and m["ssim_out"] is None
    assert m["psnr_in"] == pytest.approx(psnr8(clean, Image.open(tmp_path / "noisy.png")), abs=0.01)
    assert m["psnr_out"] == pytest.approx(psnr8(clean, Image.open(out)), abs=0.01)
    assert "SSIM n/a -> n/a" in r.stderr, r.stderr


# ------------------------------------------------------------------------------ a folder scored against a folder


@pytest.fixture(scope="module")
def scored_folder(tmp_path_factory):
    """in/a/x.png and in/b/x.png (same name, different pictures), an 8x8 image, an input identical to its
    reference and a video file, all scored against ref/ with the same relative paths."""
    d = tmp_path_factory.mktemp("scored")
    clean = {"a/x.png": midtone_gray(32, 32, seed=1), "b/x.png": midtone_gray(32, 32, seed=2)[::-1],
             "tiny.png": midtone_gray(8, 8, seed=4), "same.png": midtone_gray(24, 24, seed=5)}
    noisy = {"a/x.png": noisy_copy(clean["a/x.png"], 25, 1), "b/x.png": noisy_copy(clean["b/x.png"], 10, 2),
             "tiny.png": noisy_copy(clean["tiny.png"], 20, 3), "same.png": clean["same.png"]}
    for rel in clean:
        for top, pixels in (("ref", clean[rel]), ("in", noisy[rel])):
            (d / top / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(d / top / rel)
    (d / "in" / "clip.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST")
    r = diffuse_in_process("denoise", d / "in", "-o", d / "out", "--reference", d / "ref", "--json")
    records = {str(Path(f["input"]).relative_to(d / "in")): f for f in strict_json(r.stdout)["files"]} \
        if r.stdout.strip() else {}
    return d, clean, noisy, r, records


@pytest.mark.slow
def test_folder_with_a_tiny_image_goes_on_with_ssim_null(scored_folder):
    d, clean, _, r, records = scored_folder
    assert r.returncode == 0, r.stderr
    assert (d / "out" / "tiny.png").exists() and (d / "out" / "a" / "x.png").exists()
    assert records["tiny.png"]["metrics"]["ssim_out"] is None
    assert records["a/x.png"]["metrics"]["ssim_out"] is not None


@pytest.mark.slow
def test_reference_folder_is_matched_by_relative_path(scored_folder):
    d, clean, noisy, r, records = scored_folder
    assert r.returncode == 0, r.stderr
    for rel in ("a/x.png", "b/x.png"):
        m = records[rel]["metrics"]
        assert m["psnr_in"] == pytest.approx(psnr8(clean[rel], noisy[rel]), abs=0.01), rel
        assert m["psnr_out"] == pytest.approx(psnr8(clean[rel], Image.open(d / "out" / rel)), abs=0.01), rel
    assert abs(records["a/x.png"]["metrics"]["psnr_in"] - records["b/x.png"]["metrics"]["psnr_in"]) > 3


@pytest.mark.slow
def test_identical_input_has_psnr_null_not_a_huge_number(scored_folder):
    _, _, _, r, records = scored_folder
    assert r.returncode == 0, r.stderr
    assert records["same.png"]["metrics"]["psnr_in"] is None  # infinite: JSON has no such number


@pytest.mark.slow
def test_files_skipped_in_a_folder_are_named(scored_folder):
    d, _, _, r, _ = scored_folder
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in stderr_lines(r.stderr) if "clip.avi" in ln]
    assert len(lines) == 1 and "skipped" in lines[0], r.stderr
    assert strict_json(r.stdout)["skipped"] == [str(d / "in" / "clip.avi")]


@pytest.fixture(scope="module")
def failing_folder(tmp_path_factory):
    """A good image, a broken one and one whose reference is missing."""
    d = tmp_path_factory.mktemp("failing")
    for top in ("in", "ref"):
        (d / top / "sub").mkdir(parents=True)
    clean = midtone_gray(32, 32, seed=7)
    Image.fromarray(clean).save(d / "ref" / "good.png")
    Image.fromarray(noisy_copy(clean, 20, 7)).save(d / "in" / "good.png")
    (d / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.fromarray(clean).save(d / "ref" / "bad.png")
    Image.fromarray(noisy_copy(clean, 20, 8)).save(d / "in" / "sub" / "noref.png")
    Image.fromarray(clean).save(d / "ref" / "noref.png")  # same basename, other folder: not its reference
    r = diffuse_in_process("denoise", d / "in", "-o", d / "out", "--reference", d / "ref", "--json")
    records = {str(Path(f["input"]).relative_to(d / "in")): f for f in strict_json(r.stdout)["files"]}
    return d, r, records


@pytest.mark.slow
def test_missing_reference_fails_that_file_only(failing_folder):
    d, r, records = failing_folder
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in stderr_lines(r.stderr) if "noref.png" in ln]
    assert len(lines) == 1 and str(Path("sub") / "noref.png") in lines[0], r.stderr
    assert "error" in records["sub/noref.png"] and not (d / "out" / "sub" / "noref.png").exists()
    assert (d / "out" / "good.png").exists() and records["good.png"]["metrics"]["psnr_out"] > 0


@pytest.mark.slow
def test_failed_files_have_no_output_and_no_metrics(failing_folder):
    d, r, records = failing_folder
    assert r.returncode == 2, r.stderr
    for rel in ("bad.png", "sub/noref.png"):
        assert records[rel]["output"] is None and "metrics" not in records[rel], records[rel]
        assert "error" in records[rel]
    assert records["good.png"]["output"] == str(d / "out" / "good.png")
    assert strict_json(r.stdout)["failed"] == 2


# ------------------------------------------------------------------------------ item: shards


def test_empty_shard_says_so(tmp_path):
    Image.fromarray(midtone_gray(16, 16)).save(tmp_path / "one.png")
    r = diffuse_in_process("denoise", tmp_path / "one.png", "-o", tmp_path / "out", "--shard", "2/2", "--json")
    assert r.returncode == 0, r.stderr
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1 and "2/2" in lines[0] and "no files" in lines[0], r.stderr
    assert strict_json(r.stdout) == {"files": [], "failed": 0, "skipped": []}
    assert not (tmp_path / "out").exists()
    assert "no files" in option_help("denoise", "--shard")


# ------------------------------------------------------------------------------ item: --axis


def test_denoise_axis_is_checked_before_anything_is_read():
    # an empty stdin would be the next error
    r = diffuse_in_process("denoise", "-", "-o", "-", "--axis", "2", stdin=b"")
    assert r.returncode == 2
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1 and "--axis 2" in lines[0] and "use 0" in lines[0], r.stderr


@pytest.mark.slow
def test_denoise_axis_reads_input_and_reference_alike(tmp_path):
    """A (64, 100) array whose rows are 64 samples of 100 sensors: by default (time along the longer axis)
    it would be read as 100 samples of 64 channels. With --axis 0 the input and the reference are both
    read as 64 samples x 100 channels, the output keeps the layout and the SNR is the array's own."""
    rng = np.random.default_rng(0)
    t = np.arange(64)[:, None]
    clean = 3.0 + np.sin(t / (3.0 + np.arange(100)[None, :] / 20.0))
    noisy = clean + rng.normal(0, 0.3, clean.shape)
    np.save(tmp_path / "ref.npy", clean)
    np.save(tmp_path / "noisy.npy", noisy)
    out = tmp_path / "out.npy"
    r = diffuse_in_process("denoise", tmp_path / "noisy.npy", "-o", out, "--axis", "0",
                           "--reference", tmp_path / "ref.npy", "--json")
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert got.shape == (64, 100)
    m = strict_json(r.stdout)["metrics"]
    assert m["snr_in"] == pytest.approx(zero_mean_snr(clean, noisy), abs=0.01)
    assert m["snr_out"] == pytest.approx(zero_mean_snr(clean, got), abs=0.01)
    assert m["snr_out"] > m["snr_in"]


def test_noise_and_denoise_share_the_axis_option():
    assert option_help("denoise", "--axis") == option_help("noise", "--axis")


# ------------------------------------------------------------------------------ help text


def test_method_help_follows_the_benchmark():
    text = option_help("denoise", "--method")
    assert "best PSNR" not in text and "bench/report.md" in text, text
    assert not re.search(r"\d+(\.\d+)? ?dB", text)  # the numbers live in the report


def help_at_80_columns(*command: str) -> str:
    """`diffuse COMMAND --help` as an 80-column terminal shows it, whatever terminal runs the tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(COLUMNS="80", TERMINAL_WIDTH="80", NO_COLOR="1", TERM="dumb")
    proc = subprocess.run([sys.executable, "-m", "diffuse_cli", *command, "--help"], capture_output=True,
                          input=b"", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ANSI.sub("", proc.stdout.decode())


def click_command(name: str | None):
    import typer

    from diffuse_cli.cli import app

    root = typer.main.get_command(app)
    return root if name is None else root.commands[name]


def option_help(command: str, option: str) -> str:
    params = [p for p in click_command(command).params if option in p.opts]
    assert len(params) == 1, option
    return " ".join((params[0].help or "").split())


@pytest.mark.parametrize("command", ["denoise", "noise", "encode-steps", None])
def test_help_renders_every_option_whole_at_80_columns(command):
    """Every option name, and the values a choice option takes, stand whole on one line (never cut with
    an ellipsis or folded in the middle)."""
    import typer

    text = help_at_80_columns(*([command] if command else []))
    assert max(len(line) for line in text.splitlines()) <= 80
    cmd = click_command(command)
    ctx = typer.Context(cmd, info_name="diffuse")
    for param in cmd.params:
        for name in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if name.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (name, text)
        shown = param.display_type_rich(ctx) if hasattr(param, "display_type_rich") else None
        if shown and "|" in shown:
            assert shown in text, (shown, text)
    for name in getattr(cmd, "commands", {}):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (name, text)
    assert "…" not in text
