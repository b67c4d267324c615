"""Training data: colour photos become gray training data through the luma inference uses, items and
patches have the model's shapes, and the held-out split is fixed by the seed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from diffuse_cli import colour, io
from diffuse_cli.training.data import DataSource, PatchSampler, split_holdout
from diffuse_cli.training.options import TrainOptions
from tests.conftest import write_images


def test_gray_training_data_from_colour_photos_is_the_opponent_luma(tmp_path):
    """A gray model cleans colour images in the opponent space, whose first channel is (R + G + B) / 3: it must be
    trained on that channel too (not on BT.601 luma, which weighs green 0.587)."""
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 40, 90  # strongly coloured, so the two lumas differ by 40 levels
    rgb[10:30, 5:35] = (30, 220, 10)
    path = str(tmp_path / "colour.png")
    Image.fromarray(rgb).save(path)
    source = DataSource([path], TrainOptions(data=[path], out="", channels=1))
    (item,) = source.items
    samples = io.load(path).samples
    assert item.shape == (40, 40, 1) and item.dtype == np.float32
    np.testing.assert_allclose(item, colour.to_opponent(samples)[..., :1], atol=1e-6)
    np.testing.assert_allclose(item, colour.luma(samples), atol=1e-6)


def test_gray_images_repeated_for_a_colour_model(tmp_path):
    folder = write_images(str(tmp_path), count=1, size=24, channels=1)
    path = os.path.join(folder, "img0.png")
    (item,) = DataSource([path], TrainOptions(data=[path], out="", channels=3)).items
    gray = io.load(path).samples
    assert item.shape == (24, 24, 3)
    for c in range(3):
        np.testing.assert_array_equal(item[..., c], gray[..., 0])


def test_holdout_split_is_seeded_and_disjoint():
    files = [f"f{k}.png" for k in range(40)]
    train, held = split_holdout(files, seed=5)
    assert len(held) == 2 and sorted(train + held) == sorted(files) and not set(train) & set(held)
    assert split_holdout(files, seed=5) == (train, held)
    assert split_holdout(files[:7], seed=5) == (files[:7], [])  # too few files: nothing held out


@pytest.mark.parametrize("rank, shape, size", [(2, (20, 30, 3), 16), (2, (10, 40, 1), 16), (1, (300, 1), 64)])
def test_patches_have_the_patch_shape(rank, shape, size):
    rng = np.random.default_rng(0)
    item = rng.standard_normal(shape).astype(np.float32)
    sampler = PatchSampler(rank, size, augment=True, domain="image" if rank == 2 else "audio")
    (usable,) = sampler.usable([item])  # 10 rows >= half a 16-patch: mirror-padded
    patch = sampler.sample(usable, rng)
    want = (size, size, shape[-1]) if rank == 2 else (size, 1)
    assert patch.shape == want and patch.dtype == np.float32
