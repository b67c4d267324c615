"""How the blind noise estimate of measured series (domain "signal") costs the bundled signal model, on
generated data only.

Usage:
    .venv/bin/python scripts/tune_signal_estimate.py [--model diffuse_cli/models/signal] [--per-set 48]
        [--cache runs/tune_signal_estimate.json] [--recompute] [--measure RULE]

The held-out series of bench/signals.py are for evaluation and are never read here. Three generated sets:

* ``ordinary``: :func:`diffuse_cli.synthetic_signals.compose` series (what the model trains on);
* ``cliff``: broadband content through a steep low-pass with its corner at 0.2-0.45 cycles/sample (a
  digitiser's anti-alias filter): the top of the band holds noise only, just above content;
* ``broadband``: content that fades towards the Nyquist frequency but still reaches it, where a blind
  estimate mistakes it for white noise: AR(1) with a positive pole, AR(2) with a resonance in the upper half
  of the band, 1/f^a noise with a in [1, 2.5], low-pass noise with a gentle roll-off, many sinusoids with
  amplitudes falling as f^-b up to Nyquist, and 1/f^a plus an alpha-like rhythm (EEG-like); 800-4000 samples.

Each series gets white noise at 10 and 20 dB zero-mean SNR (seed fixed per series and SNR) and is cleaned
through ``denoise_media`` with the noise level given, uncalibrated (what a blind run does with that level),
at a grid of ratios to the true sigma (RATIOS); the output SNR at any other level is interpolated in log
ratio, clamped to the grid (so a level far above the grid reads too kindly). Each rule in RULES (a function
of the noisy series' estimates: the package's blind level ``estimate.signal_noise`` and the Welch band
powers of :func:`welch_bands`) is scored per set and SNR: the mean output SNR, the number of series below
their input, and the worst change against the package's level (dB). ``--measure RULE`` also runs the model
at that rule's level and at the package's, so the two rows marked "measured" need no interpolation. The
curves are cached (``--cache``), so rules can be re-scored without the model.

The rules lower the level where the Welch spectrum still falls across the top of the band (content, not
only noise, there): ``extrapolate`` compares the band below the top quarter with the top quarter,
``halves`` the two halves of the top quarter beyond their white-noise spread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from diffuse_cli import io as dio  # noqa: E402
from diffuse_cli import synthetic_signals as syn  # noqa: E402
from diffuse_cli.denoising import estimate  # noqa: E402

SNRS = (10, 20)
SETS = ("ordinary", "cliff", "broadband")
RATIOS = (0.4, 0.55, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0, 2.4, 3.0)  # sigma used / true sigma


# ------------------------------------------------------------------------------------ generated series


def _shaped(n: int, gain, rng: np.random.Generator) -> np.ndarray:
    return syn._unit(syn._filtered_noise(n, gain, rng, pad=min(n, 4096)))


def broadband(n: int, rng: np.random.Generator, kind: int) -> np.ndarray:
    """Content that fades towards Nyquist but still reaches it (see the module docstring), unit std."""
    if kind == 0:  # AR(1), positive pole: power falls towards Nyquist and stays above zero there
        phi = rng.uniform(0.3, 0.9)
        return _shaped(n, lambda f: 1.0 / np.abs(1 - phi * np.exp(-2j * np.pi * f)), rng)
    if kind == 1:  # AR(2), a resonance in the upper half of the band
        r, theta = rng.uniform(0.5, 0.9), 2 * np.pi * rng.uniform(0.1, 0.35)
        a1, a2 = 2 * r * math.cos(theta), -r * r
        return _shaped(n, lambda f: 1.0 / np.abs(1 - a1 * np.exp(-2j * np.pi * f) - a2 * np.exp(-4j * np.pi * f)), rng)
    if kind == 2:  # 1/f^a
        a = rng.uniform(1.0, 2.5)
        return _shaped(n, lambda f: np.maximum(f, 1.0 / n) ** (-a / 2) * (f > 0), rng)
    if kind == 3:  # low-pass noise with a gentle roll-off (Butterworth-like, corner at 20-90 % of the band)
        fc, order = 0.5 * rng.uniform(0.2, 0.9), rng.uniform(1.0, 3.0)
        return _shaped(n, lambda f: (f > 0) / np.sqrt(1 + (f / fc) ** (2 * order)), rng)
    if kind == 4:  # many sinusoids up to Nyquist, amplitudes falling as f^-b
        t = np.arange(n)
        freqs = rng.uniform(0.002, 0.5, int(rng.integers(20, 200)))
        amps = rng.standard_normal(freqs.size) * freqs ** -rng.uniform(0.5, 1.5)
        phases = rng.uniform(0, 7, (freqs.size, 1))
        return syn._unit((amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases)).sum(0))
    # EEG-like: 1/f^a background plus an alpha-like rhythm
    a, fc = rng.uniform(1.0, 2.5), rng.uniform(0.02, 0.2)
    bg = _shaped(n, lambda f: np.maximum(f, 1.0 / n) ** (-a / 2) * (f > 0), rng)
    alpha = _shaped(n, lambda f: np.exp(-0.5 * ((f - fc) / (0.15 * fc)) ** 2), rng)
    return syn._unit(bg + rng.uniform(0.3, 1.5) * alpha)


def cliff(n: int, rng: np.random.Generator) -> np.ndarray:
    """Broadband content through a steep low-pass (a digitiser's anti-alias filter): 1/f^a content (a in
    [0, 1.5]), Butterworth-like gain of order 6-16 with its corner at 0.2-0.45 cycles/sample, unit std."""
    a, fc, order = rng.uniform(0.0, 1.5), rng.uniform(0.2, 0.45), rng.uniform(6.0, 16.0)

    def gain(f: np.ndarray) -> np.ndarray:
        return (f > 0) * np.maximum(f, 1.0 / n) ** (-a / 2) / np.sqrt(1 + (f / fc) ** (2 * order))

    return _shaped(n, gain, rng)


def generated(per_set: int) -> list[tuple[str, str, np.ndarray]]:
    """(set, label, clean series) for both sets, seeded."""
    out = []
    rng = np.random.default_rng(20261201)
    for _ in range(per_set):
        n = int(rng.choice([800, 2000, 4000]))
        x, info = syn.compose(n, rng)
        out.append(("ordinary", "+".join(info["families"]), x))
    for i in range(per_set):
        n = int(rng.choice([800, 2000, 4000]))
        kind = i % 6
        out.append(("broadband", ["ar1", "ar2", "1/f^a", "lowpass", "sines", "eeg-like"][kind],
                    100.0 * broadband(n, rng, kind) + 3.0))
    for _ in range(per_set):
        n = int(rng.choice([800, 2000, 4000]))
        out.append(("cliff", "anti-aliased", 0.01 * cliff(n, rng)))
    return out


# ------------------------------------------------------------------------------------ features and curves


def welch_bands(y: np.ndarray) -> dict:
    """Welch powers of the noisy series y (N,) as the package's top-band estimate takes them (Hann frames of
    ``estimate._top_band_frame`` samples, 50 % overlap, each frame's mean removed, white noise of std s
    gives s^2): the median power over ``0.25 <= f < 0.375`` (``mid``), ``0.375 <= f < 0.5`` (``top``) and
    the two halves of the latter (``lower``, ``upper``), and ``spread``, the std of lower / upper for white
    noise, ``2.2 / sqrt(frames x bins per half)`` (measured on 300 white-noise draws per length)."""
    frame = estimate._top_band_frame(y.size)
    w = np.hanning(frame)
    seg = sliding_window_view(y, frame)[:: frame // 2]
    seg = seg - seg.mean(axis=1, keepdims=True)
    power = np.mean(np.abs(np.fft.rfft(seg * w, axis=1)) ** 2, axis=0) / float(np.sum(w**2))
    f = np.fft.rfftfreq(frame)

    def band(lo: float, hi: float) -> float:
        return float(np.median(power[(f >= lo) & (f < hi)]))

    half = int(((f >= 0.375) & (f < 0.4375)).sum())
    return {"mid": band(0.25, 0.375), "top_power": band(0.375, 0.5), "lower": band(0.375, 0.4375),
            "upper": band(0.4375, 0.5), "spread": 2.2 / math.sqrt(seg.shape[0] * half)}


def features(y: np.ndarray) -> dict:
    """The estimates a rule may use, of the noisy series y (N,): the package's blind level (``est``, what
    ``estimate.signal_noise`` gives), its parts, and :func:`welch_bands`."""
    e = estimate._Estimates1D.of(y[None, :], top_band=True)
    return {"haar": e.haar, "spectral": e.spectral, "top": e.top, "structure": e.structure_dominated,
            "est": estimate.signal_noise(y[None, :, None], [slice(0, 1)])[0][0], **welch_bands(y)}


def noisy_cases(per_set: int):
    """(index, set, label, clean x, SNR, true sigma, noisy y) for every generated series and SNR, seeded."""
    for k, (kind, label, x) in enumerate(generated(per_set)):
        for snr in SNRS:
            sigma = math.sqrt(float(np.mean((x - x.mean()) ** 2)) / 10 ** (snr / 10))
            yield k, kind, label, x, snr, sigma, x + sigma * np.random.default_rng([k, snr]).standard_normal(x.size)


def curves(model_dir: str, per_set: int) -> list[dict]:
    """Output SNR at each of RATIOS x the true sigma, and the estimates, of every generated case."""
    from diffuse_cli import denoising, litert_model

    model = litert_model.open_model(model_dir)[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, kind, label, x, snr, sigma, y in noisy_cases(per_set):
            path = os.path.join(tmp, "y.npy")
            np.save(path, y)
            media = dio.load(path)
            snr_out = []
            for r in RATIOS:
                opts = denoising.DenoiseOptions(sigma=r * sigma, calibrate=False, on_harm="warn")
                out = np.asarray(denoising.denoise_media(media, model, opts)[0].samples, np.float64).reshape(-1)
                snr_out.append(score(x, out))
            row = {"set": kind, "label": label, "n": int(x.size), "snr": snr, "sigma": sigma,
                   "noisy": score(x, y), "out": snr_out, **features(y)}
            rows.append(row)
            print(f"{kind:9s} {label:28s} {x.size:5d} {snr} dB: est/true {row['est'] / sigma:5.2f} "
                  f"haar {row['haar'] / sigma:5.2f} top {row['top'] / sigma:5.2f} "
                  f"best {max(snr_out):6.2f} at {RATIOS[int(np.argmax(snr_out))]}", flush=True)
    return rows


def direct(rows: list[dict], model_dir: str, per_set: int, rule) -> None:
    """Output SNR of each case cleaned at the package's level (``direct_before``) and at ``rule``'s
    (``direct_package``), measured rather than interpolated."""
    from diffuse_cli import denoising, litert_model

    model = litert_model.open_model(model_dir)[0]
    with tempfile.TemporaryDirectory() as tmp:
        for row, (_, _, _, x, _, _, y) in zip(rows, noisy_cases(per_set)):
            path = os.path.join(tmp, "y.npy")
            np.save(path, y)
            media = dio.load(path)
            for key, level in (("direct_before", row["est"]), ("direct_package", rule(row))):
                opts = denoising.DenoiseOptions(sigma=level, calibrate=False, on_harm="warn")
                out = np.asarray(denoising.denoise_media(media, model, opts)[0].samples, np.float64).reshape(-1)
                row[key] = score(x, out)


def score(clean: np.ndarray, out: np.ndarray) -> float:
    """Output SNR around the clean series' mean (as bench/signals.py scores)."""
    err = float(np.sum((out - clean) ** 2))
    return 10 * math.log10(float(np.sum((clean - clean.mean()) ** 2)) / err)


def at_ratio(row: dict, ratio: float) -> float:
    """Output SNR with sigma = ratio x true sigma, linear in log ratio between grid points (clamped)."""
    lr = np.log(np.clip(ratio, RATIOS[0], RATIOS[-1]))
    return float(np.interp(lr, np.log(RATIOS), row["out"]))


# ------------------------------------------------------------------------------------ rules


def rule_today(row: dict) -> float:
    return row["est"]


def rule_min_hs(row: dict) -> float:
    return min(v for v in (row["haar"], row["top"], row["spectral"]) if v is not None)


def rule_extrapolate(margin: float, slope: float, least: float):
    """Below the top quarter of the band vs the top quarter: where ``mid`` exceeds ``(1 + margin) top`` the
    excess, times ``slope``, is taken off ``top``: ``sqrt(max(top - slope (mid - (1 + margin) top),
    least^2 top))``, never above the estimate. Weak point: content that stops just below the top quarter
    (a digitiser's anti-alias filter, the ``cliff`` set) looks like a falling spectrum too."""
    def rule(row: dict) -> float:
        mid, top = row["mid"], row["top_power"]
        return min(row["est"], math.sqrt(max(top - slope * max(mid - (1 + margin) * top, 0.0), least**2 * top)))
    return rule


def rule_halves(z: float, slope: float, least: float):
    """The two halves of the top quarter: where ``lower`` exceeds ``upper`` by more than ``z`` white-noise
    spreads, ``sqrt(max(upper - slope (lower - (1 + z spread) upper), least^2 upper))``, never above the
    estimate; otherwise the estimate."""
    def rule(row: dict) -> float:
        excess = row["lower"] - (1 + z * row["spread"]) * row["upper"]
        if excess <= 0:
            return row["est"]
        return min(row["est"], math.sqrt(max(row["upper"] - slope * excess, least**2 * row["upper"])))
    return rule


RULES = {"estimate (package)": rule_today}
RULES.update({f"extrapolate margin {m} slope {k} least {q}": rule_extrapolate(m, k, q)
              for m, k, q in ((0.2, 3, 0.3), (0.2, 2, 0.5), (0.4, 2, 0.6))})
RULES.update({f"halves z {z} slope {k} least {q}": rule_halves(z, k, q)
              for z, k, q in ((2, 2, 0.4), (2, 3, 0.5), (3, 2, 0.5))})


def report(rows: list[dict]) -> None:
    """Per rule, set and SNR: mean output SNR / series below their input / worst change against the estimate
    before the rule; rows marked "measured" are direct runs, the others interpolated on the curves."""
    print(f"{'rule':36s} | " + " | ".join(f"{s} {snr}dB: mean / below / worst" for s in SETS
                                            for snr in SNRS))
    rules = dict(RULES)
    if "direct_before" in rows[0]:
        rules = {"estimate (package), measured": None, "--measure rule, measured": None, **rules}
    for name, rule in rules.items():
        cells = []
        for kind in SETS:
            for snr in SNRS:
                sel = [r for r in rows if r["set"] == kind and r["snr"] == snr]
                if rule is None:
                    outs = [r["direct_package" if "rule" in name else "direct_before"] for r in sel]
                    ref = [r["direct_before"] for r in sel]
                else:
                    outs = [at_ratio(r, rule(r) / r["sigma"]) for r in sel]
                    ref = [at_ratio(r, r["est"] / r["sigma"]) for r in sel]
                below = sum(o < r["noisy"] for o, r in zip(outs, sel))
                worst = min(o - b for o, b in zip(outs, ref))
                cells.append(f"{np.mean(outs):6.2f} / {below:2d} / {worst:+6.2f}")
        print(f"{name:36s} | " + " | ".join(cells))
    for kind in SETS:
        for snr in SNRS:
            sel = [r for r in rows if r["set"] == kind and r["snr"] == snr]
            print(f"{kind} {snr} dB: noisy {np.mean([r['noisy'] for r in sel]):.2f}, "
                  f"at true sigma {np.mean([at_ratio(r, 1.0) for r in sel]):.2f}, "
                  f"best over the grid {np.mean([max(r['out']) for r in sel]):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "diffuse_cli" / "models" / "signal"))
    parser.add_argument("--per-set", type=int, default=48)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "tune_signal_estimate.json"))
    parser.add_argument("--recompute", action="store_true", help="rerun the model even if the cache exists")
    parser.add_argument("--measure", choices=sorted(RULES), help="also run the model at this rule's level and at "
                        "the package's (measured rows, beside the interpolated ones)")
    args = parser.parse_args()
    cache = Path(args.cache)
    if cache.exists() and not args.recompute:
        rows = json.loads(cache.read_text())
    else:
        rows = curves(args.model, args.per_set)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(rows))
    for row, case in zip(rows, noisy_cases(args.per_set)):  # the package's estimate as it is now
        row.update(features(case[-1]))
    if args.measure:
        direct(rows, args.model, args.per_set, RULES[args.measure])
    report(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
