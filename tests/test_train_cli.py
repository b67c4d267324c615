"""`diffuse train` on the command line: --help readable at 80 columns, fixed choices as Typer Enums, the
options collected into TrainOptions by name, and progress lines that say which loss they print."""

from __future__ import annotations

import re

import pytest
import typer
from rich.console import Console

from diffuse_cli import cli
from diffuse_cli.enums import Arch, Loss, Precision, Strategy
from diffuse_cli.training.options import FIELDS, TrainOptions
from tests.helpers import diffuse, diffuse_in_process

TRAIN = typer.main.get_command(cli.app).commands["train"]


def option_names() -> list[str]:
    return [name for param in TRAIN.params for name in (*param.opts, *param.secondary_opts) if name.startswith("-")]


def test_help_shows_every_option_whole_at_80_columns():
    r = diffuse("train", "--help", env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    names = option_names()
    assert "--low-noise-fraction" in names and len(names) > 30
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} is not shown whole"
    for choices in ("unet|dense", "sinusoidal|learned", "linear|cosine", "auto|float32|mixed", "auto|on|off"):
        assert choices in text


@pytest.mark.parametrize("option, value, choices", [
    ("--arch", "resnet", ["unet", "dense"]),
    ("--embedding", "rope", ["sinusoidal", "learned"]),
    ("--schedule", "sigmoid", ["linear", "cosine"]),
    ("--loss", "perceptual", ["mse", "l1", "ssim", "mse+ssim"]),
    ("--precision", "half", ["auto", "float32", "mixed"]),
    ("--xla", "maybe", ["auto", "on", "off"]),
    ("--strategy", "tpu", ["default", "mirrored", "multi-worker"]),
])
def test_bad_choice_is_typers_one_line_error(option, value, choices, tmp_path):
    r = diffuse_in_process("train", tmp_path, "--out", tmp_path / "m", option, value)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("diffuse: error: Invalid value for"), r.stderr
    assert f"'{option}'" in lines[0] and f"'{value}'" in lines[0]
    assert all(f"'{c}'" in lines[0] for c in choices), lines[0]
    assert not (tmp_path / "m").exists()


def test_every_train_option_is_a_train_options_field():
    """The command's parameters are TrainOptions fields by name (nothing restated), bar the output switches."""
    names = {param.name for param in TRAIN.params} - {"ctx"}
    assert names - set(cli.TRAIN_CLI_ONLY) <= set(FIELDS), names - set(FIELDS)


def test_command_line_becomes_train_options():
    ctx = TRAIN.make_context("train", [
        "a.png", "b/", "--out", "m", "--arch", "unet", "--widths", "8,16", "--loss", "mse+ssim", "--loss-weights",
        "1,0.2", "--low-noise-sigma", "1,100", "--batch-size", "auto", "--precision", "float32", "--strategy",
        "mirrored", "--description", "test set", "--resume", "--quiet", "--json",
    ])
    options = TrainOptions(**cli.train_params(ctx.params))
    assert options.data == ["a.png", "b/"] and options.out == "m"
    assert options.widths == (8, 16) and options.loss_weights == (1.0, 0.2)
    assert options.low_noise_sigma == (1.0, 100.0)  # file units, as given
    assert options.loss is Loss.mse_ssim and options.arch is Arch.unet
    assert options.precision is Precision.float32 and options.strategy is Strategy.mirrored
    assert options.batch_size == "auto" and options.resume is True
    assert options.extra == {"description": "test set"}
    assert options.tflite is True  # model.tflite is written unless --no-tflite


def test_progress_bar_says_which_loss_it_shows():
    """The bar shows the mean of the steps since its last update (the epoch lines print the epoch's mean, see
    tests/test_training.py::test_progress_events): it says so."""
    out = Console(record=True, force_terminal=True, width=120)
    with cli.TrainProgress(quiet=False, out=out) as progress:
        progress.update({"event": "start", "step": 0, "total": 200, "message": "training"})
        progress.update({"event": "step", "step": 200, "total": 200, "loss": 0.2912, "loss_steps": 10,
                         "patches_per_s": 50.0})
        progress.progress.refresh()
    text = out.export_text()
    assert "loss 0.2912 (last 10 steps)" in text, text
