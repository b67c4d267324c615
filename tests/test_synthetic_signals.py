"""The synthetic series generator for the signal model and the script that writes its data set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from diffuse_cli import synthetic_signals as ss

EXPECTED_FAMILIES = {"trend", "seasonal", "steps", "spikes", "oscillation", "chirp", "random_walk", "arma",
                     "bandlimited", "burst", "smooth", "power_law"}


def test_family_registry_is_complete_and_weighted():
    assert set(ss.FAMILIES) == EXPECTED_FAMILIES
    assert set(ss.FAMILY_WEIGHTS) == EXPECTED_FAMILIES
    assert all(w > 0 for w in ss.FAMILY_WEIGHTS.values())


@pytest.mark.parametrize("name", sorted(EXPECTED_FAMILIES))
@pytest.mark.parametrize("n", [64, 1500])
def test_each_family_gives_finite_unit_series_of_the_asked_length(name, n):
    rng = np.random.default_rng([7, n])
    for _ in range(5):
        x = ss.FAMILIES[name](n, rng)
        assert x.shape == (n,) and x.dtype == np.float64
        assert np.all(np.isfinite(x))
        # each family returns (x - mean) / std, or all zeros for a constant draw
        assert abs(float(x.mean())) < 1e-9
        assert float(x.std()) == pytest.approx(1.0, abs=1e-9) or not np.any(x)


@pytest.mark.parametrize("name", sorted(EXPECTED_FAMILIES))
def test_each_family_is_reproducible_with_a_seed(name):
    a = ss.FAMILIES[name](300, np.random.default_rng(3))
    b = ss.FAMILIES[name](300, np.random.default_rng(3))
    c = ss.FAMILIES[name](300, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generate_shapes_finiteness_and_seed():
    x = ss.generate(6, 500, np.random.default_rng(0))
    assert x.shape == (6, 500) and x.dtype == np.float64
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, ss.generate(6, 500, np.random.default_rng(0)))
    assert not np.array_equal(x, ss.generate(6, 500, np.random.default_rng(1)))
    assert ss.generate(0, 10, np.random.default_rng(0)).shape == (0, 10)
    with pytest.raises(ValueError):
        ss.generate(2, 0, np.random.default_rng(0))


def test_compositions_use_every_family_and_never_give_a_flat_series():
    rng = np.random.default_rng(11)
    seen: set[str] = set()
    quantised = 0
    for _ in range(300):
        x, info = ss.compose(128, rng)
        assert x.shape == (128,) and np.all(np.isfinite(x))
        assert 1 <= len(info["families"]) <= 3
        seen.update(info["families"])
        # what training normalises by: a robust scale of 0 would blow a series up
        assert ss.robust_scale(x) > 0
        quantised += info["quantise_step"] is not None
    assert seen == EXPECTED_FAMILIES
    assert 0.15 * 300 < quantised < 0.45 * 300


def test_quantised_compositions_lie_on_their_grid():
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 5:
        x, info = ss.compose(400, rng)
        if info["quantise_step"] is None:
            continue
        k = (x - info["offset"]) / info["quantise_step"]
        np.testing.assert_allclose(k, np.round(k), atol=1e-6 * max(1.0, float(np.max(np.abs(k)))))
        checked += 1


def test_quantise_rounds_to_the_step():
    np.testing.assert_allclose(ss.quantise(np.array([0.26, -0.74, 1.0]), 0.5), [0.5, -0.5, 1.0])


def test_a_one_regime_step_draw_becomes_a_usable_series():
    # (seed, split, index) 0/0/1435 drew one regime only: a constant series, once NaN after quantising.
    script = _script()
    rng = np.random.default_rng([0, 0, 1435])
    x, info = ss.compose(script.series_length(rng, 1024, 32768), rng)
    assert info["families"] == ["steps"] and info["background"] is not None
    assert np.all(np.isfinite(x)) and ss.robust_scale(x) > 0


def _script():
    path = Path(__file__).resolve().parent.parent / "scripts" / "make_signal_data.py"
    spec = importlib.util.spec_from_file_location("make_signal_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_signal_data_writes_loadable_train_and_val_series(tmp_path):
    from diffuse_cli import io

    script = _script()
    assert script.main([str(tmp_path), "--train", "3", "--val", "2", "--min-length", "64",
                        "--max-length", "96"]) == 0
    train = sorted((tmp_path / "train").glob("*.npy"))
    val = sorted((tmp_path / "val").glob("*.npy"))
    assert len(train) == 3 and len(val) == 2
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["file"] for r in manifest["series"]] == [f"train/{p.name}" for p in train] + [
        f"val/{p.name}" for p in val]
    for path, rec in zip(train + val, manifest["series"]):
        media = io.load(str(path))
        assert media.domain == "signal" and media.samples.shape == (rec["length"], 1)
        assert 64 <= rec["length"] <= 96
    # series i of a split is remade alone from (seed, split, i)
    rng = np.random.default_rng([0, 1, 1])
    x, _ = ss.compose(script.series_length(rng, 64, 96), rng)
    np.testing.assert_array_equal(np.load(val[1]), x)
