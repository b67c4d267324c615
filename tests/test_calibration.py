"""The sigma calibration curve: interpolation, peak refinement, config validation."""

from __future__ import annotations

import math

import pytest

from diffuse_cli.calibration import refine_peak, sigma_scale
from diffuse_cli.config import ModelConfig, default_config
from diffuse_cli.errors import InputError

CURVE = [[0.1, 1.0], [0.4, 0.9]]


def test_sigma_scale_is_linear_in_log_sigma_between_points_and_flat_beyond() -> None:
    # 0.2 is log-halfway between 0.1 and 0.4: k = (1.0 + 0.9) / 2
    assert sigma_scale(CURVE, 0.2) == pytest.approx(0.95, abs=1e-12)
    # a quarter of the way in log: 0.1 * 4 ** 0.25
    assert sigma_scale(CURVE, 0.1 * 4 ** 0.25) == pytest.approx(0.975, abs=1e-12)
    assert sigma_scale(CURVE, 0.01) == 1.0
    assert sigma_scale(CURVE, 3.0) == 0.9


def test_sigma_scale_is_one_without_a_curve_or_a_usable_sigma() -> None:
    assert sigma_scale((), 0.3) == 1.0
    assert sigma_scale(None, 0.3) == 1.0
    for bad in (0.0, -1.0, math.nan, math.inf):
        assert sigma_scale(CURVE, bad) == 1.0


def test_refine_peak_finds_the_vertex_of_a_sampled_parabola() -> None:
    xs = [0.8, 0.85, 0.9, 0.95, 1.0]
    ys = [-(x - 0.912) ** 2 for x in xs]
    assert refine_peak(xs, ys) == pytest.approx(0.912, abs=1e-9)
    # a peak at the end of the grid is not extrapolated
    assert refine_peak(xs, [1, 2, 3, 4, 5]) == 1.0
    assert refine_peak(xs, [5, 4, 3, 2, 1]) == 0.8


def test_config_round_trips_the_curve_and_rejects_bad_ones() -> None:
    cfg = default_config("image", 1).to_dict()
    assert "sigma_calibration" not in cfg  # absent unless measured: older readers keep working
    cfg["sigma_calibration"] = CURVE
    loaded = ModelConfig.from_dict(cfg, "config.json")
    assert loaded.sigma_calibration == ((0.1, 1.0), (0.4, 0.9))
    assert loaded.to_dict()["sigma_calibration"] == CURVE
    for bad in ([[0.4, 0.9], [0.1, 1.0]], [[0.1, 0.0]], [[0.1]], [[-0.1, 1.0]], [[0.1, True]], [[0.1, math.nan]]):
        cfg["sigma_calibration"] = bad
        with pytest.raises(InputError, match="sigma_calibration"):
            ModelConfig.from_dict(cfg, "config.json")


def _copy_with_curve(tmp_path, curve, name):  # the bundled gray model with this calibration curve (or none)
    import json
    import shutil

    from diffuse_cli import models as bundled

    out = tmp_path / name
    shutil.copytree(bundled.MODELS_DIR / "photo-gray", out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("sigma_calibration", None)
    if curve:
        cfg["sigma_calibration"] = curve
    (out / "config.json").write_text(json.dumps(cfg))
    return str(out)


def test_one_step_with_a_given_sigma_is_told_the_calibrated_sigma(tmp_path) -> None:
    import numpy as np

    from diffuse_cli import denoising, litert_model
    from diffuse_cli.io import Media

    rng = np.random.default_rng(0)
    clean = np.clip(np.linspace(-0.8, 0.8, 48)[None, :, None] + np.zeros((48, 1, 1)), -1, 1)
    noisy = np.clip(clean + 0.2 * rng.standard_normal(clean.shape), -1, 1).astype(np.float32)

    reports = []

    def run(model_dir, **opts):
        model, _ = litert_model.open_model(model_dir, "auto")
        media = Media(domain="image", samples=noisy.copy(), fmt="png", scale=127.5, mode="L", bit_depth=8)
        out, report = denoising.denoise_media(media, model, denoising.DenoiseOptions(**opts))
        reports.append(report)
        return out.samples

    # sigma 25.5 file units = 0.2 model units: log-halfway between 0.1 and 0.4 -> k = 0.95
    calibrated = _copy_with_curve(tmp_path, CURVE, "calibrated")
    plain = _copy_with_curve(tmp_path, None, "plain")
    np.testing.assert_array_equal(run(calibrated, sigma=25.5), run(plain, sigma=25.5 * 0.95))
    # the report keeps the sigma given and gives the step actually used
    assert reports[0]["sigma"] == 25.5 and reports[0]["t_star"] == reports[1]["t_star"]
    assert not np.array_equal(run(calibrated, sigma=25.5), run(plain, sigma=25.5))
    # estimated sigma (already the noise as it is in the file) and DDIM are not rescaled
    np.testing.assert_array_equal(run(calibrated), run(plain))
    np.testing.assert_array_equal(run(calibrated, sigma=25.5, method="ddim", steps=2, seed=1),
                                  run(plain, sigma=25.5, method="ddim", steps=2, seed=1))
