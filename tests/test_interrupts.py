"""Interruptions: SIGINT / SIGTERM during `diffuse train` save a checkpoint and exit 130 / 143, SIGKILL loses
at most the steps since the last checkpoint, `--resume` continues from the saved step; a killed `diffuse
noise` never leaves a partial file under the output name.

The training tests run the real CLI in a subprocess on sample_data/photo-gray.png with a tiny U-Net
(widths 8,16, 32-pixel patches, batch 4) and a checkpoint every few steps.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import diffuse, diffuse_in_process

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "sample_data" / "photo-gray.png"
EVERY = 5  # --checkpoint-every
TINY = ["--widths", "8,16", "--patch-size", "32", "--batch-size", "4", "--checkpoint-every", str(EVERY),
        "--keep", "2", "--steps-per-epoch", "1000000", "--seed", "0"]
STARTUP_S = 600  # TensorFlow start-up plus the first checkpoint, on two busy cores


def _env() -> dict:
    return {**os.environ, "COLUMNS": "120", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM as a terminal gives them. A test run whose parent ignores
    SIGINT (``make test &``, nohup, some CI runners) would pass SIG_IGN on, and Python then never raises
    KeyboardInterrupt: the Ctrl-C tests would test the inherited disposition, not the program."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(args: list, log: Path) -> subprocess.Popen:
    """`python -m diffuse_cli ARGS` in the background; stderr goes to ``log`` (no pipe to fill up)."""
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "diffuse_cli", *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(), preexec_fn=_default_signals)


def wait(proc: subprocess.Popen, timeout: float, log: Path) -> int:
    """The child's exit code; a child still running after ``timeout`` (a signal it did not act on) is killed
    and the test fails, instead of leaving it running."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running {timeout} s after the signal: {log.read_text()[-2000:]}")


def latest_step(model_dir: Path) -> int | None:
    """Step of the checkpoint that TensorFlow's index (checkpoints/checkpoint) points at, without TensorFlow."""
    try:
        text = (model_dir / "checkpoints" / "checkpoint").read_text()
    except OSError:
        return None
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', text, re.MULTILINE)
    return int(found.group(1)) if found else None


def wait_for_checkpoint(proc: subprocess.Popen, model_dir: Path, log: Path, at_least: int) -> int:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        step = latest_step(model_dir)
        if step is not None and step >= at_least:
            return step
        if proc.poll() is not None:
            pytest.fail(f"train exited {proc.returncode} before its first checkpoint: {log.read_text()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no checkpoint at step >= {at_least} after {STARTUP_S} s: {log.read_text()}")


def train_args(out: Path, max_steps: int, resume: bool = False) -> list:
    return ["train", PHOTO, "--out", out, "--max-steps", max_steps, *TINY, *(["--resume"] if resume else [])]


def resume_and_finish(out: Path, saved: int, extra: int = 3) -> dict:
    """`--resume` must start at ``saved`` and run to ``saved + extra`` steps, then export the model (without
    model.tflite: the LiteRT export has its own tests). It runs in this process: what the signal left on disk is
    what is tested, and this process has TensorFlow loaded already."""
    r = diffuse_in_process(*train_args(out, saved + extra, resume=True), "--json", "--no-tflite")
    assert r.returncode == 0, r.stderr
    assert f"resumed at step {saved}" in r.stderr, r.stderr
    summary = json.loads(r.stdout)
    assert summary["steps"] == saved + extra
    assert latest_step(out) == saved + extra
    assert (out / "config.json").is_file() and (out / "weights.weights.h5").is_file()
    return summary


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_checkpoint_and_resume_continues(tmp_path, sig, code):
    out, log = tmp_path / "model", tmp_path / "train.log"
    proc = start(train_args(out, 1_000_000), log)
    wait_for_checkpoint(proc, out, log, at_least=EVERY)
    proc.send_signal(sig)
    assert wait(proc, 300, log) == code, log.read_text()
    err = log.read_text()
    found = re.search(r"interrupted: checkpoint saved at step (\d+)", err)
    assert found, err
    saved = int(found.group(1))
    assert latest_step(out) == saved >= EVERY  # the step it reports is the one on disk, not a rounded-down one
    assert "Traceback" not in err and f"diffuse: interrupted (signal {int(sig)})" in err
    resume_and_finish(out, saved)


@pytest.mark.slow
def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path):
    """SIGKILL cannot be caught: what survives is the last checkpoint written before it (TensorFlow renames
    its index file into place), so at most ``--checkpoint-every`` steps are lost and --resume works."""
    out, log = tmp_path / "model", tmp_path / "train.log"
    proc = start(train_args(out, 1_000_000), log)
    first = wait_for_checkpoint(proc, out, log, at_least=EVERY)
    time.sleep(random.uniform(0.0, 3.0))  # kill at a random moment, possibly in the middle of a save
    before = latest_step(out)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    saved = latest_step(out)
    assert saved is not None and first <= before <= saved <= before + EVERY, (first, before, saved)
    assert saved % EVERY == 0
    resume_and_finish(out, saved)


# ------------------------------------------------------------------------------------------------ atomic writes


def _big_image(path: Path) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1200, 0:1200]
    base = 128 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0)
    img = base[..., None] + rng.normal(0, 10, size=(1200, 1200, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in keep)


def _kill_while_writing(proc: subprocess.Popen, folder: Path, prefix: str, extra_s: float) -> bool:
    """SIGKILL ``extra_s`` after the temporary file ``prefix*`` appears (the write/fsync/rename window);
    True when the kill landed while it was there."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(name.startswith(prefix) for name in os.listdir(folder)):
            time.sleep(extra_s)
            proc.kill()
            return True
        time.sleep(0.0005)
    proc.kill()
    return False


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True], ids=["new-output", "replace-existing"])
def test_killed_noise_leaves_no_partial_output(tmp_path, force):
    """SIGKILL at random moments (of the run, and of the write itself): the output is absent, or complete
    and equal to a normal run's (with --force: the old file or the new one, never a mix); temporary files
    are hidden (.name.*.tmp), never the output name itself."""
    src, ref, out = tmp_path / "in.png", tmp_path / "ref.png", tmp_path / "out.png"
    _big_image(src)
    args = ["noise", src, "-o", out, "--sigma", "10", "--seed", "1"] + (["--force"] if force else [])
    started = time.monotonic()
    r = diffuse("noise", src, "-o", ref, "--sigma", "10", "--seed", "1")
    duration = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    reference = ref.read_bytes()
    old = b"an older output that --force replaces\n"
    source_bytes = src.read_bytes()
    rng = random.Random(1)
    outcomes, seen, in_window = [], {"output": 0, "temp file": 0, "nothing": 0}, 0
    for attempt in range(8):
        if force:
            out.write_bytes(old)
        proc = start(args, tmp_path / "noise.log")
        if attempt % 2:  # at a random moment of the whole run
            time.sleep(rng.uniform(0.2, duration * 1.1))
            proc.kill()
        else:  # at a random moment of the write itself
            in_window += _kill_while_writing(proc, tmp_path, ".out.png.", rng.uniform(0.0, 0.02))
        proc.wait(timeout=60)
        outcomes.append(proc.returncode)
        if out.exists():
            data = out.read_bytes()
            assert data == reference or (force and data == old), "partial or foreign output under the final name"
            if data == reference:
                seen["output"] += 1
                with Image.open(out) as written:
                    written.load()
        leftovers = _leftovers(tmp_path, {"in.png", "ref.png", "out.png", "noise.log"})
        for name in leftovers:
            assert name.startswith(".out.png.") and name.endswith(".tmp"), name
            os.unlink(tmp_path / name)
        seen["temp file"] += bool(leftovers)
        seen["nothing"] += not leftovers and not (out.exists() and out.read_bytes() == reference)
        if out.exists():
            out.unlink()
        assert src.read_bytes() == source_bytes
    print(f"reference run {duration:.1f} s; exit codes {outcomes}; {in_window} kills in the write window; "
          f"after the kill: {seen}")
    assert any(code == -signal.SIGKILL for code in outcomes), outcomes  # at least one kill landed mid-run
    assert in_window >= 1  # the dangerous moment was really tested


@pytest.mark.slow
def test_sigterm_during_noise_exits_143_and_cleans_up(tmp_path):
    """SIGTERM is caught: the temporary file is removed, nothing is left, exit code 143."""
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    _big_image(src)
    rng = random.Random(2)
    for _ in range(4):
        proc = start(["noise", src, "-o", out, "--sigma", "10", "--seed", "1"], tmp_path / "noise.log")
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGTERM)
        code = wait(proc, 60, tmp_path / "noise.log")
        err = (tmp_path / "noise.log").read_text()
        assert code in (0, 143, -signal.SIGTERM), (code, err)  # -15: before main() installed its handler
        assert "Traceback" not in err
        if code == 143:
            assert "interrupted" in err and not out.exists()
        assert _leftovers(tmp_path, {"in.png", "out.png", "noise.log"}) == []
        if out.exists():
            with Image.open(out) as written:
                written.load()
            out.unlink()


def test_latest_step_reads_the_index(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert latest_step(tmp_path) is None
    (tmp_path / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-15"\nall_model_checkpoint_paths: "ckpt-10"\n'
    )
    assert latest_step(tmp_path) == 15
    shutil.rmtree(tmp_path / "checkpoints")


@pytest.mark.slow
def test_ctrl_c_during_denoise_says_interrupted(tmp_path):
    """SIGINT (Ctrl-C) in the middle of a denoise: exit 130, one line saying so, no output, no temp files."""
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    _big_image(src)
    source_bytes = src.read_bytes()
    proc = start(["denoise", src, "-o", out, "--method", "ddim", "--steps", "50"], tmp_path / "denoise.log")
    time.sleep(6.0)  # past the imports, inside 50 network passes over 1.4 Mpixel x 3 channels
    proc.send_signal(signal.SIGINT)
    code = wait(proc, 120, tmp_path / "denoise.log")
    err = (tmp_path / "denoise.log").read_text()
    assert code == 130, (code, err)
    assert err.strip().splitlines()[-1] == "diffuse: interrupted", err
    assert "Traceback" not in err
    assert not out.exists() and _leftovers(tmp_path, {"in.png", "denoise.log"}) == []
    assert src.read_bytes() == source_bytes
