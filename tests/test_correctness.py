"""Correctness checks that fit no other test module: metrics that cannot be computed, JSON-safe numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffuse_cli import metrics


@pytest.mark.parametrize("shape", [(10, 40), (40, 10), (5, 5, 3), (1, 1)])
def test_ssim_of_an_image_smaller_than_its_window_is_nan_not_an_error(shape):
    """An 11x11 window does not fit: SSIM is not computable, which is NaN (the CLI reports null), not a crash."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, size=shape)
    assert math.isnan(metrics.ssim(a, a + 0.1, 2.0))


def test_ssim_at_the_window_size_is_computed():
    a = np.random.default_rng(1).uniform(-1, 1, size=(11, 11))
    assert metrics.ssim(a, a, 2.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("value", "expected"), [(3.5, 3.5), (float("inf"), None), (float("-inf"), None),
                                                 (float("nan"), None), (None, None), (np.float64(2.0), 2.0)])
def test_finite_or_none(value, expected):
    assert metrics.finite_or_none(value) == expected


def test_json_safe_turns_non_finite_numbers_into_null():
    record = {"psnr_in": float("inf"), "ssim": [0.5, float("nan")], "name": "a", "n": 3, "ok": True,
              "nested": {"x": np.float32(1.5), "y": -math.inf}}
    text = json.dumps(metrics.json_safe(record), allow_nan=False)
    assert json.loads(text) == {"psnr_in": None, "ssim": [0.5, None], "name": "a", "n": 3, "ok": True,
                                "nested": {"x": 1.5, "y": None}}


def test_a_time_column_with_rounded_decimals_is_an_axis():
    """ECG-style `time,value` written with 4 decimals: the rounded time steps vary, the column is still time."""
    from diffuse_cli.noise import axis_columns

    n = 2000
    t = np.round(np.arange(n) / 360.0, 4)  # 360 Hz, rounded: steps of 0.0028 or 0.0027
    rng = np.random.default_rng(0)
    value = np.sin(np.arange(n) / 20.0) + 0.2 * rng.normal(size=n)
    assert axis_columns(np.stack([t, value], 1)) == [0]
    rising = np.cumsum(np.abs(rng.normal(size=n)))  # monotonic but irregular steps: a measurement
    assert axis_columns(np.stack([rising, value], 1)) == []
