"""The bundled models' outputs on crops of sample_data, pinned: a refactor must not change them.

Each case cleans a crop of a sample file with a bundled model (float32 network: the same numbers on
any machine) and compares the cleaned samples, in model units, with an array saved in
tests/data/pinned/ by the code before the denoiser was split into modules (re-pinned only where a fix
changed an output on purpose; the commit says which and why); tolerance 1e-6.
The reported noise level, t* and impulse count are pinned too (tests/data/pinned/reports.json).

To re-pin after an intended change of output: ``python tests/test_pinned_outputs.py [MODEL ...]`` (it
rewrites the files of every case, or only of the cases of the named bundled models; say why in the commit).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from diffuse_cli import io  # noqa: E402
from diffuse_cli.denoising import DenoiseOptions, denoise_media  # noqa: E402

pytestmark = pytest.mark.slow
SAMPLES = ROOT / "sample_data"
PINNED = ROOT / "tests" / "data" / "pinned"
MODELS = ROOT / "diffuse_cli" / "models"
ATOL = 1e-6  # model units

# name -> (model, sample file, crop along the first axes, options)
CASES: dict[str, tuple[str, str, tuple[slice, ...], dict]] = {
    "gray-onestep-estimated": ("photo-gray", "photo-gray-noisy.png", np.s_[40:168, 90:218], {}),
    "gray-onestep-sigma25": ("photo-gray", "photo-gray-noisy.png", np.s_[40:168, 90:218], {"sigma": 25.0}),
    "gray-ddim3-sigma25": ("photo-gray", "photo-gray-noisy.png", np.s_[100:148, 30:78],
                           {"sigma": 25.0, "method": "ddim", "steps": 3}),
    "gray-ddim3-estimated-tiled": ("photo-gray", "photo-gray-noisy.png", np.s_[0:72, 0:88],
                                   {"method": "ddim", "steps": 3, "tile": 48, "overlap": 8}),
    "gray-ddpm3-seed1": ("photo-gray", "photo-gray-noisy.png", np.s_[160:200, 160:200],
                         {"sigma": 25.0, "method": "ddpm", "steps": 3, "seed": 1}),
    "colour-onestep-estimated": ("photo-gray", "photo-color-noisy.png", np.s_[96:160, 96:160], {}),
    "colour-onestep-sigma25": ("photo-gray", "photo-color-noisy.png", np.s_[96:160, 96:160], {"sigma": 25.0}),
    "colour-ddim3-sigma25": ("photo-gray", "photo-color-noisy.png", np.s_[20:52, 200:232],
                             {"sigma": 25.0, "method": "ddim", "steps": 3}),
    "gray-salt-pepper-auto": ("photo-gray", "salt-pepper", np.s_[128:192, 0:64], {"noise_kind": "auto"}),
    "speech-onestep-estimated": ("speech-16k", "speech-noisy.wav", np.s_[12000:28000], {}),
    "speech-onestep-sigma": ("speech-16k", "speech-noisy.wav", np.s_[12000:28000], {"sigma": 0.05}),
    "speech-ddim3-sigma": ("speech-16k", "speech-noisy.wav", np.s_[20000:24096],
                           {"sigma": 0.05, "method": "ddim", "steps": 3}),
    "speech-22k-resampled": ("speech-16k", "resampled-22050", np.s_[12000:20000], {}),
    "sensor-onestep-estimated": ("speech-16k", "sensor-noisy.csv", np.s_[:], {}),
    "sensor-onestep-sigma": ("speech-16k", "sensor-noisy.csv", np.s_[:], {"sigma": 0.25}),
}
REPORT_KEYS = ("sigma", "sigma_model", "sigma_estimated", "t_star", "method", "steps", "noise_kind_used",
               "impulses", "notes", "sigma_per_channel", "sigma_channels", "energy_above_band")


def _media(source: str, crop: tuple[slice, ...]) -> io.Media:
    """A sample file's crop; two inputs derived from sample files with fixed seeds."""
    if source == "salt-pepper":  # 10% impulses on the clean gray photo
        media = io.load(str(SAMPLES / "photo-gray.png"))
        x = np.array(media.samples[crop])
        hit = np.random.default_rng(0).random(x.shape[:-1]) < 0.1
        x[hit] = np.where(np.random.default_rng(1).random(int(hit.sum())) < 0.5, -1.0, 1.0)[:, None]
        return media.with_samples(x)
    if source == "resampled-22050":  # the noisy speech at another rate: resampled to 16 kHz and back
        import soxr

        media = io.load(str(SAMPLES / "speech-noisy.wav"))
        x = soxr.resample(np.asarray(media.samples, dtype=np.float64), 16000, 22050, quality="HQ")
        return dataclasses.replace(media.with_samples(x[crop].astype(np.float32)), sample_rate=22050)
    media = io.load(str(SAMPLES / source))
    return media.with_samples(np.array(media.samples[crop]))


_LOADED: dict = {}


def _model(name: str):
    if name not in _LOADED:
        from diffuse_cli import modelstore

        _LOADED[name] = modelstore.load_model(str(MODELS / name), mixed_precision=False)
    return _LOADED[name]


def run_case(name: str) -> tuple[np.ndarray, dict]:
    model_name, source, crop, options = CASES[name]
    cleaned, report = denoise_media(_media(source, crop), _model(model_name), DenoiseOptions(**options))
    return np.asarray(cleaned.samples), {k: report[k] for k in REPORT_KEYS if k in report}


@pytest.fixture(scope="module")
def pinned_reports() -> dict:
    return json.loads((PINNED / "reports.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_matches_pinned(name, pinned_reports):
    out, report = run_case(name)
    expected = np.load(PINNED / f"{name}.npy", allow_pickle=False)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)
    pinned = pinned_reports[name]
    assert report.keys() == pinned.keys()
    for key, value in pinned.items():
        if isinstance(value, float):
            assert report[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        elif key == "sigma_per_channel":  # None: a channel left as it was
            assert [v is None for v in report[key]] == [v is None for v in value], key
            assert [v for v in report[key] if v is not None] == pytest.approx([v for v in value if v is not None],
                                                                               rel=1e-6), key
        else:
            assert report[key] == value, key


def test_pinned_cases_do_real_work(pinned_reports):
    """The references are not trivially the input: every case changed its crop by more than the tolerance."""
    for name, (_, source, crop, _) in CASES.items():
        expected = np.load(PINNED / f"{name}.npy", allow_pickle=False)
        noisy = np.asarray(_media(source, crop).samples, dtype=np.float64)
        assert np.max(np.abs(expected - noisy)) > 100 * ATOL, name
    total = sum(p.stat().st_size for p in PINNED.iterdir())
    assert total < 1.2 * 2**20, total


def write_references(models: list[str] | None = None) -> None:
    """Re-pin every case, or only those of ``models`` (the other cases' files and reports are kept)."""
    PINNED.mkdir(parents=True, exist_ok=True)
    report_file = PINNED / "reports.json"
    reports = json.loads(report_file.read_text()) if models and report_file.exists() else {}
    for name in sorted(CASES):
        if models and CASES[name][0] not in models:
            continue
        out, reports[name] = run_case(name)
        np.save(PINNED / f"{name}.npy", out, allow_pickle=False)
        print(name, out.shape, out.dtype, reports[name].get("sigma"), reports[name].get("t_star"))
    report_file.write_text(json.dumps(reports, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_references(sys.argv[1:] or None)
