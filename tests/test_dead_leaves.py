"""The dead leaves generator (training images for the bundled photo model): seeded, bounded, power-law radii."""

from __future__ import annotations

import numpy as np

from diffuse_cli.dead_leaves import dead_leaves, dead_leaves_uint8, gaussian_blur, gaussian_kernel, power_law_radii


def test_same_seed_same_image_and_other_seeds_differ():
    a = dead_leaves(48, np.random.default_rng(3), max_discs=3000)
    b = dead_leaves(48, np.random.default_rng(3), max_discs=3000)
    c = dead_leaves(48, np.random.default_rng(4), max_discs=3000)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05


def test_values_fill_the_unit_range_without_gaps():
    img = dead_leaves(64, np.random.default_rng(0), max_discs=4000)
    assert img.shape == (64, 64) and img.dtype == np.float64
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
    assert img.max() - img.min() > 0.5  # many discs of random grey levels, not one flat area
    u8 = dead_leaves_uint8(32, seed=5)
    assert u8.dtype == np.uint8 and u8.shape == (32, 32)


def test_one_disc_larger_than_the_image_covers_it_alone():
    """Front to back: the first disc drawn is on top, so a disc that covers everything is all one sees
    (its shading spans at most 0.15, a few pixels' worth across a 32-pixel image of a 2000-pixel disc)."""
    img = dead_leaves(32, np.random.default_rng(1), r_min=2000.0, r_max=2001.0, max_discs=5, max_blur=0.0)
    assert img.max() - img.min() < 0.01


def test_radii_follow_the_truncated_power_law():
    """Empirical CDF against ``F(r) = (r^-2 - 2^-2) / (200^-2 - 2^-2)`` (alpha 3 on [2, 200])."""
    r = power_law_radii(200_000, 2.0, 200.0, 3.0, np.random.default_rng(0))
    assert r.min() >= 2.0 and r.max() <= 200.0
    grid = np.array([2.2, 2.5, 3.0, 4.0, 6.0, 10.0, 30.0, 100.0])
    analytic = (grid**-2.0 - 2.0**-2.0) / (200.0**-2.0 - 2.0**-2.0)
    empirical = np.array([(r <= g).mean() for g in grid])
    np.testing.assert_allclose(empirical, analytic, atol=0.005)
    # maximum-likelihood exponent of a power law above r_min (r_max far away): 1 + n / sum(log(r / r_min))
    assert abs(1 + len(r) / np.log(r / 2.0).sum() - 3.0) < 0.05


def test_gaussian_blur_spreads_an_impulse_as_the_kernel_and_keeps_flat_areas():
    k = gaussian_kernel(1.0)
    assert abs(k.sum() - 1.0) < 1e-12 and len(k) == 7
    impulse = np.zeros((15, 15))
    impulse[7, 7] = 1.0
    np.testing.assert_allclose(gaussian_blur(impulse, 1.0)[4:11, 4:11], np.outer(k, k), atol=1e-12)
    np.testing.assert_allclose(gaussian_blur(np.full((9, 9), 0.3), 2.0), 0.3, atol=1e-12)
