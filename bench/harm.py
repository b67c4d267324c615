"""Do no harm: how often the residual check fires, and what the fallback does, on generated inputs.

Usage:
    .venv/bin/python bench/harm.py --out bench [--series 60 --images 8]

Protocol (generated inputs only; the held-out series of bench/signals.py are not used here):
- Signals: ``--series`` clean series from diffuse_cli/synthetic_signals.py (``compose``, 200-8000 samples,
  seed 0), cleaned by the bundled ``signal`` model. Images: ``--images`` 128x128 dead-leaves images
  (diffuse_cli/dead_leaves.py, seeds 0..) and the two sample photos (sample_data/photo-gray.png,
  photo-color.png), cleaned by ``photo-gray``. Audio: sample_data/speech.wav and two generated 2 s
  clips at 16 kHz (a sum of tones and a chirp, from synthetic_signals), cleaned by ``speech-16k``.
- Conditions: white Gaussian noise at three levels (signals and audio by SNR, images by sigma on the 0-255
  scale, clipped to the range), cleaned with sigma estimated ("blind") and given ("known"); the clean
  input cleaned blind; the clean input given a wrong ``--sigma`` (signals and audio: 2, 5 and 50 times the
  std of 20 dB noise; images: 10, 25 and 50).
- Each case runs through denoise_media as the CLI does, first with ``on_harm="warn"``, then, where the
  check failed, with ``"fallback"``. Scores: output SNR (signals around the mean, audio plain) or PSNR
  (images, 8-bit peak) against the clean input; ``fired`` is the share of cases whose check failed; a
  false alarm is a failure on a case whose output was above the input's score anyway.

Writes OUT/harm.json (every case) and OUT/harm.md (the tables), and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
try:
    import diffuse_cli  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from diffuse_cli import io as dio  # noqa: E402
from diffuse_cli import synthetic_signals  # noqa: E402
from diffuse_cli.denoising import DenoiseOptions, denoise_media  # noqa: E402
from diffuse_cli.litert_model import open_model  # noqa: E402

MODELS = ROOT / "diffuse_cli" / "models"
CLEAN = 999.0  # the score of an output identical to its reference


def snr_db(ref: np.ndarray, out: np.ndarray, zero_mean: bool) -> float:
    """``10 log10(sum(ref'^2) / sum((out - ref)^2))``, ``ref'`` around its mean for signals."""
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    power = float(np.sum((ref - ref.mean()) ** 2 if zero_mean else ref**2))
    err = float(np.sum((out - ref) ** 2))
    return 10.0 * math.log10(power / err) if err > 0 else CLEAN


def psnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR in model units ([-1, 1], peak-to-peak 2): ``10 log10(4 / MSE)``."""
    err = float(np.mean((np.asarray(out, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return 10.0 * math.log10(4.0 / err) if err > 0 else CLEAN


# ------------------------------------------------------------------------------------ inputs


def signal_inputs(count: int) -> list[tuple[str, dio.Media, dict]]:
    """Clean synthetic series as Media, and the noise std that gives 10/20/30 dB around the mean."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        n = int(rng.choice([200, 400, 800, 2000, 8000]))
        x, info = synthetic_signals.compose(n, rng)
        power = float(np.mean((x - x.mean()) ** 2))
        levels = {f"{snr} dB": math.sqrt(power / 10 ** (snr / 10)) for snr in (10, 20, 30)}
        media = dio.Media(domain="signal", samples=x[:, None].astype(np.float64), fmt="npy", dtype="float64")
        out.append((f"series-{i} ({'+'.join(info['families'])})", media, levels))
    return out


def image_inputs(count: int) -> list[tuple[str, dio.Media, dict]]:
    """Dead-leaves images (128x128 gray) and the sample photos; noise sigma 5/25/50 on the 0-255 scale."""
    from diffuse_cli.dead_leaves import dead_leaves_uint8

    levels = {f"σ {s}": float(s) for s in (5, 25, 50)}
    out = []
    for seed in range(count):
        img = dead_leaves_uint8(128, seed).astype(np.float32)[..., None] / 127.5 - 1.0
        out.append((f"dead-leaves-{seed}", dio.Media(domain="image", samples=img, fmt="png", scale=127.5,
                                                     mode="L", bit_depth=8), levels))
    for name in ("photo-gray.png", "photo-color.png"):
        out.append((name, dio.load(str(ROOT / "sample_data" / name)), levels))
    return out


def audio_inputs() -> list[tuple[str, dio.Media, dict]]:
    """The sample speech and two generated 2 s clips at 16 kHz; noise at 0/10/20 dB SNR."""
    rate = 16000
    clips = [("speech.wav", dio.load(str(ROOT / "sample_data" / "speech.wav")).samples)]
    rng = np.random.default_rng(1)
    t = np.arange(2 * rate) / rate
    tones = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * f * t) for f in (220.0, 330.0, 1250.0))
    clips.append(("tones", tones[:, None]))
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 900 * t**2)) * np.hanning(t.size)
    clips.append(("chirp", chirp[:, None]))
    out = []
    for name, x in clips:
        x = np.asarray(x, np.float32)
        power = float(np.mean(x.astype(np.float64) ** 2))
        levels = {f"{snr} dB": math.sqrt(power / 10 ** (snr / 10)) for snr in (0, 10, 20)}
        out.append((name, dio.Media(domain="audio", samples=x, fmt="wav", sample_rate=rate, subtype="PCM_16"),
                    levels))
    return out


# ------------------------------------------------------------------------------------ the run


def run_case(model, media: dio.Media, clean: np.ndarray, sigma: float | None, score) -> dict:
    """Clean once with the check warning; again with the fallback where it failed."""
    out, rep = denoise_media(media.with_samples(media.samples.copy()), model, DenoiseOptions(sigma=sigma))
    check = rep["check"]
    row = {"sigma": rep["sigma"], "out": score(clean, out.samples), "passed": check["passed"],
           "reasons": check.get("reasons", []), "noise_ratio": check.get("noise_ratio"),
           "output_correlation": check.get("output_correlation"),
           "structure_correlation": check.get("structure_correlation")}
    if not check["passed"]:
        fb, fb_rep = denoise_media(media.with_samples(media.samples.copy()), model,
                                   DenoiseOptions(sigma=sigma, on_harm="fallback"))
        row["fallback"] = score(clean, fb.samples)
        row["kept_input"] = bool(fb_rep["check"].get("kept_input"))
    return row


def run_media(kind: str, model, inputs: list, wrong: dict[str, float], score, rng: np.random.Generator) -> list:
    """Every condition for every input of one media type."""
    rows = []
    for name, media, levels in inputs:
        clean = media.samples.astype(np.float64)
        value_range = media.value_range
        for level, std in levels.items():
            noisy = clean + std / media.scale * rng.standard_normal(clean.shape)
            if value_range is not None:
                noisy = np.clip(noisy, *value_range)
            noisy_media = media.with_samples(noisy.astype(media.samples.dtype))
            score_in = score(clean, noisy_media.samples)
            for mode, sigma in (("blind", None), ("known", std)):
                row = run_case(model, noisy_media, clean, sigma, score)
                rows.append({"media": kind, "input": name, "condition": f"noisy {level}", "mode": mode,
                             "in": score_in, **row})
        rows.append({"media": kind, "input": name, "condition": "clean", "mode": "blind", "in": CLEAN,
                     **run_case(model, media, clean, None, score)})
        for label, sigma in wrong.items():
            given = sigma * (levels.get("20 dB", 1.0) if kind != "image" else 1.0)
            rows.append({"media": kind, "input": name, "condition": f"clean, wrong {label}", "mode": "given",
                         "in": CLEAN, **run_case(model, media, clean, given, score)})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per media type, condition and mode: cases, share fired, false alarms, mean output minus input
    (plain and with the fallback), outputs below the input (plain and with the fallback)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["media"], r["condition"], r["mode"]), []).append(r)
    table = []
    for (media, condition, mode), rs in groups.items():
        fired = [r for r in rs if not r["passed"]]
        after = [r.get("fallback", r["out"]) for r in rs]
        clean_input = rs[0]["in"] >= CLEAN
        table.append({
            "media": media, "condition": condition, "mode": mode, "cases": len(rs),
            "fired": len(fired) / len(rs),
            "false_alarms": sum(1 for r in fired if r["out"] >= r["in"]) if not clean_input else None,
            "median_out": float(np.median([r["out"] for r in rs])),
            "median_out_fallback": float(np.median(after)),
            "mean_gain": None if clean_input else float(np.mean([r["out"] - r["in"] for r in rs])),
            "mean_gain_fallback": None if clean_input else float(np.mean([a - r["in"] for a, r in zip(after, rs)])),
            "below_input": None if clean_input else sum(1 for r in rs if r["out"] < r["in"]),
            "below_input_fallback": None if clean_input else sum(1 for a, r in zip(after, rs) if a < r["in"]),
        })
    return table


def markdown(report: dict) -> str:
    lines = [f"Command: `{report['command']}`  ",
             f"Machine: {report['machine']}; total run {report['seconds']} s.", "",
             "Generated inputs only (see bench/harm.py). *fired*: share of cases whose check failed; *false "
             "alarms*: failures on noisy inputs whose output was above the input anyway; scores are output SNR "
             "(signals, audio) or PSNR (images) in dB against the clean input, 999 for an exact copy of it. "
             "*gain*: mean output minus input score; *fallback* columns: with `--on-harm fallback`.", ""]
    head = ("| media | condition | σ | cases | fired | false alarms | median out | median out, fallback | "
            "gain | gain, fallback | below input | below input, fallback |")
    lines += [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(v: float | None, spec: str = ".2f") -> str:
        return "–" if v is None else format(v, spec)

    for t in report["summary"]:
        lines.append(f"| {t['media']} | {t['condition']} | {t['mode']} | {t['cases']} | {t['fired']:.0%} | "
                     f"{num(t.get('false_alarms'), 'd')} | {num(t['median_out'])} | {num(t['median_out_fallback'])} | "
                     f"{num(t.get('mean_gain'), '+.2f')} | {num(t.get('mean_gain_fallback'), '+.2f')} | "
                     f"{num(t.get('below_input'), 'd')} | {num(t.get('below_input_fallback'), 'd')} |")
    lines += ["", "### False-alarm rates (check failed on an input the plain output improved)", "",
              "| media | noisy, σ estimated | noisy, σ known | clean, σ estimated (fired) | clean, wrong σ "
              "(fired) |", "|---|---|---|---|---|"]
    for media in dict.fromkeys(r["media"] for r in report["rows"]):
        rs = [r for r in report["rows"] if r["media"] == media]
        noisy_blind = [r for r in rs if r["condition"].startswith("noisy") and r["mode"] == "blind"]
        noisy_known = [r for r in rs if r["condition"].startswith("noisy") and r["mode"] == "known"]
        clean = [r for r in rs if r["condition"] == "clean"]
        wrong = [r for r in rs if r["condition"].startswith("clean, wrong")]
        lines.append(f"| {media} | {_false_alarms(noisy_blind)} | {_false_alarms(noisy_known)} | {_fired(clean)} | "
                     f"{_fired(wrong)} |")
    blind_harm = [r for r in report["rows"] if r["condition"].startswith("noisy") and r["mode"] == "blind"
                  and r["out"] < r["in"]]
    caught = sum(1 for r in blind_harm if not r["passed"])
    lines += ["", f"Noisy inputs cleaned blind whose output fell below the input: {len(blind_harm)}; the check "
              f"failed on {caught} of them (the noise level was overestimated; what was removed still looked "
              "like noise)."]
    alarms = [r for r in report["rows"] if r["condition"].startswith("noisy") and not r["passed"]]
    for r in alarms:
        lines.append(f"\nCheck failed on a noisy input: {r['media']} {r['input']}, {r['condition']}, σ {r['mode']} "
                     f"({', '.join(r.get('reasons', []))}): {r['in']:.2f} -> {r['out']:.2f} dB, with the "
                     f"fallback {r['fallback']:.2f} dB.")
    return "\n".join(lines) + "\n"


def _json(report: dict) -> str:
    """The report as JSON, numbers rounded to 4 decimals, one case per line."""
    def rounded(v):
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rounded(x) for x in v]
        return v

    head = {k: rounded(v) for k, v in report.items() if k != "rows"}
    rows = ",\n".join(json.dumps(rounded(r), ensure_ascii=False) for r in report["rows"])
    return json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "rows": [\n' + rows + "\n ]\n}\n"


def _false_alarms(rows: list[dict]) -> str:
    """Failures on cases whose plain output scored above the input: 'k/n (p %)'."""
    alarms = sum(1 for r in rows if not r["passed"] and r["out"] >= r["in"])
    return f"{alarms}/{len(rows)} ({alarms / max(len(rows), 1):.1%})"


def _fired(rows: list[dict]) -> str:
    """Failures among the cases: 'k/n (p %)'."""
    n = sum(1 for r in rows if not r["passed"])
    return f"{n}/{len(rows)} ({n / max(len(rows), 1):.0%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Do-no-harm check on generated inputs (see the module docstring).")
    parser.add_argument("--out", default="bench", help="folder for harm.md and harm.json")
    parser.add_argument("--series", type=int, default=60, help="generated signals")
    parser.add_argument("--images", type=int, default=8, help="generated dead-leaves images")
    args = parser.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(123)
    rows = []
    signal = open_model(str(MODELS / "signal"))[0]
    rows += run_media("signal", signal, signal_inputs(args.series), {"2x": 2.0, "5x": 5.0, "50x": 50.0},
                      lambda ref, out: snr_db(ref, out, zero_mean=True), rng)
    photo = open_model(str(MODELS / "photo-gray"))[0]
    rows += run_media("image", photo, image_inputs(args.images), {"σ 10": 10.0, "σ 25": 25.0, "σ 50": 50.0},
                      psnr_db, rng)
    speech = open_model(str(MODELS / "speech-16k"))[0]
    rows += run_media("audio", speech, audio_inputs(), {"2x": 2.0, "5x": 5.0, "50x": 50.0},
                      lambda ref, out: snr_db(ref, out, zero_mean=False), rng)
    report = {"command": "python bench/harm.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": f"{os.cpu_count()} CPU(s), {platform.machine()}, Python {platform.python_version()}",
              "seconds": round(time.time() - t0, 1), "summary": summarise(rows), "rows": rows}
    text = markdown(report)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    for name, data in (("harm.json", _json(report)), ("harm.md", text)):
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(args.out, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
