"""`--batch-size auto`: the memory estimate, the choice, and the CLI (flag, summary, bad values)."""

from __future__ import annotations

import json

import pytest

from diffuse_cli import networks
from diffuse_cli.config import default_config
from diffuse_cli.training import resources
from tests.helpers import diffuse_in_process

MiB, GiB = 2**20, 2**30


@pytest.mark.parametrize(
    "per_patch, available, replicas, want",
    [
        (100 * MiB, 10 * GiB, 1, 32),  # budget 5 GiB = 51.2 patches -> the power of two below: 32
        (100 * MiB, 12800 * MiB, 1, 64),  # budget exactly 64 patches: 64 fits
        (1 * MiB, 100 * GiB, 1, 128),  # plenty of memory: the cap
        (4 * GiB, 1 * GiB, 1, 1),  # not even one patch fits: still 1 (training runs, the user was told)
        (100 * MiB, 10 * GiB, 2, 32),  # two replicas: 2 * 2^k
        (100 * MiB, 10 * GiB, 3, 48),  # three replicas: 3 * 2^k; 48 patches (4.7 GiB) fit, 96 > the cap
    ],
)
def test_auto_batch_size_is_largest_power_of_two_that_fits(per_patch, available, replicas, want):
    got = resources.auto_batch_size(per_patch, available, replicas)
    assert got == want
    assert got % replicas == 0
    assert got * per_patch <= resources.AUTO_MEMORY_SHARE * available or got == replicas


def test_forward_bytes_scale_with_patch_area():
    """Per-example activations grow with the patch area (4x from 32 to 64); only the step MLP does not."""
    sizes = {}
    for patch in (32, 64):
        config = default_config("image", 1, widths=[8, 16], embedding_dim=32, timesteps=100, patch_size=patch)
        sizes[patch] = resources.forward_bytes_per_patch(networks.build_network(config), config)
    # At least the input, the stem's 8 channels and the output: 10 float32 values per pixel.
    assert sizes[32] >= 32 * 32 * 10 * 4
    assert 3.6 < sizes[64] / sizes[32] <= 4.0


def test_cli_batch_size_auto_trains_and_reports_choice(synthetic_image_dir, tmp_path):
    out = tmp_path / "m"
    r = diffuse_in_process("train", synthetic_image_dir, "--out", out, "--batch-size", "auto", "--widths", "8,16",
                           "--patch-size", "32", "--max-steps", "2", "--steps-per-epoch", "2", "--no-tflite", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    batch = summary["batch_size"]
    assert isinstance(batch, int) and 1 <= batch <= resources.AUTO_BATCH_CAP
    assert batch & (batch - 1) == 0, batch  # a power of two
    assert f"--batch-size auto: {batch} (" in r.stderr
    # one loss figure at the end, labelled as what it is: the last epoch's mean
    assert r.stderr.strip().splitlines()[-1] == f"{out}: trained 2 steps, epoch mean loss {summary['loss']:.4f}"
    stored = json.loads((out / "config.json").read_text())["training"]["batch_size"]
    assert stored == batch


@pytest.mark.parametrize("value", ["0", "-4", "lots", "2.5"])
def test_cli_batch_size_bad_values(value, synthetic_image_dir, tmp_path):
    out = tmp_path / "m"
    r = diffuse_in_process("train", synthetic_image_dir, "--out", out, "--batch-size", value)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--batch-size {value}" in lines[0] and "auto" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()

