"""Do no harm: the residual check's statistics on known inputs, and `diffuse denoise --on-harm` end to end.

The CLI cases use the bundled models (LiteRT) on the small sample files.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffuse_cli import residual_check as rc
from tests.helpers import diffuse

SAMPLES = "sample_data"


def _sums(z: np.ndarray, x: np.ndarray, rank: int = 1) -> np.ndarray:
    z, x = np.asarray(z, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if z.ndim == rank:
        z, x = z[..., None], x[..., None]
    sums = rc.ResidualSums(z.shape[-1], rank)
    sums.add(z, x)
    return sums.group(slice(None))


# ------------------------------------------------------------------------------------ pure functions


def test_pearson_and_ratio_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(500), rng.standard_normal(500)
    b = 0.6 * a + b
    got = rc.pearson(a.size, a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum())
    assert got == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert rc.pearson(10, 5.0, 3.0, 2.5, 0.9, 1.5) == 0.0  # a constant b (n sbb == sb^2): no correlation
    r = 3.0 + 2.0 * rng.standard_normal(1000)
    assert rc.residual_ratio(r.size, r.sum(), (r * r).sum(), 4.0) == pytest.approx(r.std() / 4.0, rel=1e-12)


def test_lag1_of_alternating_and_white_sequences():
    alternating = np.tile([1.0, -1.0], 50)
    check = rc.check_arrays(alternating, np.zeros(100), sigma=1.0)
    assert check.lag1 == pytest.approx(-0.99, abs=1e-9)  # sum of 99 products -1 over sum of 100 squares
    white = np.random.default_rng(1).standard_normal(20000)
    r0 = white - white.mean()
    expected = float(np.sum(r0[1:] * r0[:-1]) / np.sum(r0 * r0))
    assert rc.check_arrays(white, np.zeros_like(white), 1.0).lag1 == pytest.approx(expected, abs=1e-12)
    assert abs(expected) < 4 / math.sqrt(white.size)


def test_streamed_bands_give_the_sums_of_the_whole_array():
    rng = np.random.default_rng(2)
    for rank, shape in ((1, (1003, 2)), (2, (67, 45, 3))):
        z = rng.standard_normal(shape)
        x = 0.5 * z + 0.3 * rng.standard_normal(shape)
        whole = rc.ResidualSums(shape[-1], rank)
        whole.add(z, x)
        streamed = rc.ResidualSums(shape[-1], rank)
        a = 0
        for k in (5, 1, 17, 30, 3, 2000):
            streamed.add(z[a : a + k], x[a : a + k])
            a += k
        np.testing.assert_allclose(streamed.sums, whole.sums, rtol=1e-12)


def test_white_residual_passes():
    """A perfect denoiser: the output is the clean signal, the residual the Gaussian noise itself."""
    rng = np.random.default_rng(3)
    t = np.arange(4000)
    clean = np.sin(2 * np.pi * t / 200) + 0.5 * np.sign(np.sin(2 * np.pi * t / 900))
    noise = 0.3 * rng.standard_normal(t.size)
    check = rc.check_arrays(clean + noise, clean, sigma=0.3, blind=0.31)
    assert check.passed and check.reasons == ()
    assert check.residual_ratio == pytest.approx(noise.std() / 0.3, rel=1e-9)
    assert abs(check.output_correlation) < 0.05 and abs(check.structure_correlation) < 0.3


def test_removed_edges_fail_as_structure():
    """An over-smoothing denoiser: the residual holds the steps' edges, where the output changes most."""
    rng = np.random.default_rng(4)
    steps = np.repeat(rng.uniform(-2, 2, 40), 100)  # 40 levels, an edge every 100 samples
    z = steps + 0.01 * rng.standard_normal(steps.size)
    x = np.convolve(z, np.ones(31) / 31, mode="same")  # a 31-sample moving average blurs every edge
    check = rc.check_arrays(z, x, sigma=0.01, blind=0.01)
    # The same correlation computed directly: mean r^2 and mean squared step of x per 16-sample block.
    r = z - x
    blocks = r.size // 16
    energy = (r[: blocks * 16] ** 2).reshape(blocks, 16).mean(axis=1)
    activity = (np.diff(x[: blocks * 16].reshape(blocks, 16), axis=1) ** 2).mean(axis=1)
    assert check.structure_correlation == pytest.approx(np.corrcoef(energy, activity)[0, 1], abs=1e-9)
    assert check.structure_correlation > rc.STRUCTURE_MAX
    assert not check.passed and "structure" in check.reasons


def test_invented_detail_fails_as_anti_correlated():
    """The output holds what was 'removed', with the opposite sign: r = -p for invented detail p."""
    rng = np.random.default_rng(5)
    clean = np.sin(2 * np.pi * np.arange(3000) / 300)  # std 0.707
    invented = rng.standard_normal(clean.size)
    check = rc.check_arrays(clean, clean + invented, sigma=1.0, blind=1.0)
    expected = np.corrcoef(-invented, clean + invented)[0, 1]  # about -1 / sqrt(1.5)
    assert check.output_correlation == pytest.approx(expected, abs=1e-12)
    assert expected < rc.CORRELATION_MIN
    assert check.reasons == ("anti-correlated",)


def test_too_little_noise_in_the_input_fails_on_its_level():
    rng = np.random.default_rng(6)
    z = rng.standard_normal(2000)
    assert rc.check_arrays(z, 0.5 * z, sigma=1.0, blind=0.4).reasons == ("noise level",)
    assert rc.check_arrays(z, 0.5 * z, sigma=1.0, blind=0.6).passed
    assert rc.check_arrays(z, 0.5 * z, sigma=1.0, blind=None).passed  # no blind estimate: not judged


def test_too_few_samples_pass():
    z = np.arange(40, dtype=float)
    assert rc.check_arrays(z, -z, sigma=1.0, blind=0.0).passed  # anti-correlated and noiseless, but 40 values


def test_image_structure_in_blocks():
    """Rank 2: a blurred-away square edge leaves its outline in the residual's 8x8 block energies."""
    img = np.zeros((128, 128))
    img[32:96, 32:96] = 1.0
    blurred = img.copy()
    for axis in (0, 1):  # a separable 5-tap box blur
        blurred = sum(np.roll(blurred, k, axis=axis) for k in range(-2, 3)) / 5
    check = rc.check_arrays(img, blurred, sigma=0.01, blind=0.01, rank=2)
    assert check.structure_correlation > rc.STRUCTURE_MAX and not check.passed


# ------------------------------------------------------------------------------------ the CLI


def _csv_values(path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1)[:, 1]


def _snr(clean: np.ndarray, out: np.ndarray) -> float:
    err = float(np.sum((out - clean) ** 2))
    return math.inf if err == 0 else 10 * math.log10(float(np.sum((clean - clean.mean()) ** 2)) / err)


def test_wrong_sigma_on_a_clean_signal_warns_and_the_fallback_does_better(tmp_path):
    """sensor.csv is the clean series; 12.5 is 50x the noise std of sensor-noisy.csv."""
    clean = _csv_values(f"{SAMPLES}/sensor.csv")
    warned = diffuse("denoise", f"{SAMPLES}/sensor.csv", "-o", tmp_path / "warn.csv", "--sigma", "12.5",
                     "--on-harm", "warn", "--json")
    assert warned.returncode == 0, warned.stderr
    record = json.loads(warned.stdout)
    assert record["check"]["passed"] is False and record["check"]["action"] == "warn"
    assert "noise level" in record["check"]["reasons"]
    assert record["check"]["noise_ratio"] < rc.NOISE_RATIO_MIN
    assert "warning: do no harm" in warned.stderr

    fell_back = diffuse("denoise", f"{SAMPLES}/sensor.csv", "-o", tmp_path / "fallback.csv", "--sigma", "12.5",
                        "--json")  # --on-harm auto: fallback for a CSV signal
    assert fell_back.returncode == 0, fell_back.stderr
    check = json.loads(fell_back.stdout)["check"]
    assert check["action"] == "fallback" and "warning: do no harm" in fell_back.stderr
    assert _snr(clean, _csv_values(tmp_path / "fallback.csv")) > _snr(clean, _csv_values(tmp_path / "warn.csv")) + 20


def test_on_harm_error_writes_nothing(tmp_path):
    out = tmp_path / "out.csv"
    result = diffuse("denoise", f"{SAMPLES}/sensor.csv", "-o", out, "--sigma", "12.5", "--on-harm", "error")
    assert result.returncode == 2
    assert not out.exists()
    lines = [line for line in result.stderr.splitlines() if line.startswith("diffuse: error:")]
    assert len(lines) == 1 and "do no harm" in lines[0] and "--on-harm error" in lines[0]


@pytest.mark.parametrize("name", ["sensor-noisy.csv", "photo-gray-noisy.png", "photo-color-noisy.png",
                                  "speech-noisy.wav"])
def test_ordinary_noisy_inputs_pass_quietly(name, tmp_path):
    out = tmp_path / ("out" + name[name.rindex(".") :])
    result = diffuse("denoise", f"{SAMPLES}/{name}", "-o", out, "--json", "--on-harm", "error")
    assert result.returncode == 0, result.stderr
    check = json.loads(result.stdout)["check"]
    assert check["passed"] is True and check["action"] == "none" and check["message"] is None
    assert "warning:" not in result.stderr
