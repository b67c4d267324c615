"""Held-out 1D series: the diffusion denoiser against classical filters (a `make bench` table).

Usage:
    .venv/bin/python bench/signals.py --model runs/signal-model --out bench [--reference-model DIR] [--cli]

Protocol:
- Held-out series, all real and none used for training or tuning (the ``signal`` model trains on
  diffuse_cli/synthetic_signals.py only): matplotlib's sample data (EEG, membrane potential, stock
  prices), ObsPy's bundled seismograms, and sample_data/sensor.csv; see SERIES below for sources and
  licences. A series whose package is not installed is skipped with a note.
- White Gaussian noise at 10 and 20 dB zero-mean SNR, ``sigma^2 = mean((x - mean x)^2) / 10^(snr/10)``,
  seed ``(crc32(series name), snr)``; sample_data/sensor-noisy.csv is also scored as shipped.
- Score: output SNR in dB around the clean series' mean (the DC level is not signal), see score().
- Baselines: wavelet BayesShrink (scikit-image, sym8, soft, blind: sigma estimated); Savitzky-Golay
  (scipy) and total variation (scikit-image Chambolle), each with the parameter that gives the best
  output SNR against the clean series (an oracle choice, per series and noise level).
- Ours: ``--model`` (blind, and with the true sigma) and the ``--reference-model`` (default: the bundled
  speech model, blind), in-process through the package's denoise_media on the runtime the CLI picks
  (LiteRT when the folder has a model.tflite, else TensorFlow), or through ``diffuse denoise --model DIR``
  with ``--cli``. These rows only warn when the do-no-harm check fails (``--on-harm warn``); the row
  "with the check" is the blind run as ``diffuse denoise`` makes it for a signal by default
  (``--on-harm fallback``: cleaned again with a smaller sigma, or the input kept, where the check fails).
- Speed: samples per second of the in-process blind run over a 2^20-sample series (best of 2, after a
  warm-up call), wall-clock and per CPU second, next to the machine's load average, and relative to the
  reference model run interleaved on the same series (a ratio that holds when the cores are shared).

Writes OUT/signals.json (every number) and OUT/signals.md (the tables), and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
try:
    import diffuse_cli  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from diffuse_cli import io as dio  # noqa: E402

SNRS = (10, 20)
SPEED_SAMPLES = 1 << 20


# ------------------------------------------------------------------------------------ held-out series


@dataclass(frozen=True)
class Series:
    name: str
    source: str  # where it comes from (package and file)
    licence: str
    rate: str  # sampling, in words
    load: Callable[[], np.ndarray]  # the clean series, (N,) float64


def _mpl(name: str) -> str:
    import matplotlib.cbook as cbook

    return str(cbook.get_sample_data(name, asfileobj=False))


def _eeg(channel: int) -> np.ndarray:
    # 800 samples x 4 channels, float64 (matplotlib's mri_with_eeg example reads it this way).
    return np.fromfile(_mpl("eeg.dat"), dtype=np.float64).reshape(800, 4)[:, channel]


def _membrane() -> np.ndarray:
    return np.fromfile(_mpl("membrane.dat"), dtype=np.float32).astype(np.float64)


def _goog() -> np.ndarray:
    with np.load(_mpl("goog.npz")) as data:
        return np.asarray(data["price_data"]["close"], dtype=np.float64)


def _stocks(column: str) -> np.ndarray:
    # Monthly closes (rows dated on the 1st of a month; the file also has a few mid-month rows).
    with open(_mpl("Stocks.csv"), newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    head, body = rows[0], rows[1:]
    j = head.index(column)
    return np.array([float(r[j]) for r in sorted(body) if r[0].endswith("-01") and r[j]], dtype=np.float64)


def _obspy(relpath: str | None, trace: int = 0) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import obspy

        if relpath is None:
            stream = obspy.read()  # ObsPy's example stream (BW.RJOB, 3 components)
        else:
            stream = obspy.read(os.path.join(os.path.dirname(obspy.__file__), relpath))
        return np.asarray(stream[trace].data, dtype=np.float64)

    return load


def _sensor(name: str = "sensor.csv") -> np.ndarray:
    return np.loadtxt(ROOT / "sample_data" / name, delimiter=",", skiprows=1)[:, 1]


MPL = "matplotlib sample data (mpl-data/sample_data), matplotlib licence (PSF-based)"
OBSPY = "ObsPy test/example data, LGPL-3.0"
SERIES = (
    Series("eeg-1", "matplotlib eeg.dat, channel 1 of 4", MPL, "EEG, 800 samples", lambda: _eeg(0)),
    Series("eeg-2", "matplotlib eeg.dat, channel 2 of 4", MPL, "EEG, 800 samples", lambda: _eeg(1)),
    Series("eeg-3", "matplotlib eeg.dat, channel 3 of 4", MPL, "EEG, 800 samples", lambda: _eeg(2)),
    Series("eeg-4", "matplotlib eeg.dat, channel 4 of 4", MPL, "EEG, 800 samples", lambda: _eeg(3)),
    Series("membrane", "matplotlib membrane.dat (float32)", MPL, "membrane potential, quantised", _membrane),
    Series("goog-close", "matplotlib goog.npz, close", MPL, "daily stock price 2004-2008", _goog),
    Series("sp500-monthly", "matplotlib Stocks.csv, ^GSPC", MPL, "monthly index 1990-2022", lambda: _stocks("^GSPC")),
    Series("ibm-monthly", "matplotlib Stocks.csv, IBM", MPL, "monthly price 1990-2022", lambda: _stocks("IBM")),
    Series("rjob-ehz", "obspy.read() example, BW.RJOB..EHZ", OBSPY, "seismogram 100 Hz", _obspy(None, 0)),
    Series("rjob-ehn", "obspy.read() example, BW.RJOB..EHN", OBSPY, "seismogram 100 Hz", _obspy(None, 1)),
    Series("rjob-ehe", "obspy.read() example, BW.RJOB..EHE", OBSPY, "seismogram 100 Hz", _obspy(None, 2)),
    Series("anmo-bhz", "obspy clients/fdsn/tests/data/dataselect_example.mseed, IU.ANMO.00.BHZ", OBSPY,
           "seismogram 20 Hz", _obspy("clients/fdsn/tests/data/dataselect_example.mseed")),
    Series("uln-lh1", "obspy core/tests/data/IU_ULN_00_LH1_2015-07-18T02.mseed", OBSPY,
           "long-period seismogram 1 Hz", _obspy("core/tests/data/IU_ULN_00_LH1_2015-07-18T02.mseed")),
    Series("hgn-bhz", "obspy io/mseed/tests/data/test.mseed, NL.HGN.00.BHZ", OBSPY, "seismogram 40 Hz",
           _obspy("io/mseed/tests/data/test.mseed")),
    Series("bgld-ehe", "obspy io/mseed/tests/data/timingquality.mseed, BW.BGLD..EHE", OBSPY,
           "seismogram 200 Hz", _obspy("io/mseed/tests/data/timingquality.mseed")),
    Series("i59-bdf", "obspy signal/tests/data/IM.I59H1..BDF_2020_10_31.mseed", OBSPY, "infrasound 20 Hz",
           _obspy("signal/tests/data/IM.I59H1..BDF_2020_10_31.mseed")),
    Series("cer-bhz", "obspy io/seisan/tests/data/2005-07-23-1452-04S.CER___030.mseed, .CER.00.BHZ", OBSPY,
           "seismogram 150 Hz", _obspy("io/seisan/tests/data/2005-07-23-1452-04S.CER___030.mseed")),
    Series("sensor", "sample_data/sensor.csv, value column", "synthetic, this project's licence",
           "room temperature every 30 s", _sensor),
)


def load_series(names: list[str] | None) -> tuple[list[tuple[Series, np.ndarray]], list[str]]:
    """The held-out series that load here (optionally only ``names``), and notes for those that do not."""
    out, notes = [], []
    for s in SERIES:
        if names and s.name not in names:
            continue
        try:
            x = s.load()
        except ImportError as exc:
            notes.append(f"{s.name}: skipped ({exc.name} is not installed)")
            continue
        out.append((s, np.asarray(x, dtype=np.float64)))
    return out, notes


# ------------------------------------------------------------------------------------ noise and scores


def noise_sigma(x: np.ndarray, snr_db: float) -> float:
    """``sigma = sqrt(mean((x - mean x)^2) / 10^(snr/10))``: white noise at ``snr_db`` zero-mean SNR."""
    return math.sqrt(float(np.mean((x - x.mean()) ** 2)) / 10.0 ** (snr_db / 10.0))


def add_noise(x: np.ndarray, snr_db: float, seed: tuple[int, ...]) -> tuple[np.ndarray, float]:
    sigma = noise_sigma(x, snr_db)
    return x + sigma * np.random.default_rng(list(seed)).standard_normal(x.shape), sigma


def score(clean: np.ndarray, out: np.ndarray) -> float:
    """Output SNR around the clean series' mean: ``10 log10(sum((x - mean x)^2) / sum((out - x)^2))``."""
    clean = np.asarray(clean, dtype=np.float64)
    err = float(np.sum((np.asarray(out, dtype=np.float64).reshape(clean.shape) - clean) ** 2))
    power = float(np.sum((clean - clean.mean()) ** 2))
    return 10.0 * math.log10(power / err) if err > 0 else float("inf")


# ------------------------------------------------------------------------------------ baselines


def wavelet_blind(y: np.ndarray) -> np.ndarray:
    """BayesShrink, sym8, soft thresholds, sigma estimated by scikit-image (MAD of the finest details)."""
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(y, wavelet="sym8", method="BayesShrink", mode="soft", rescale_sigma=True)


def savgol_windows(n: int) -> list[int]:
    """Odd windows from 5 to min(1001, n - 1 rounded down to odd), about 24 log-spaced."""
    top = min(1001, n - 1 if n % 2 == 0 else n - 2)
    grid = np.unique(np.round(np.exp(np.linspace(np.log(5), np.log(max(top, 5)), 24))).astype(int) // 2 * 2 + 1)
    return [int(w) for w in grid if 5 <= w <= top]


def savgol_oracle(y: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, dict]:
    """Savitzky-Golay with the (window, order), order 1-4, that scores best against the clean series."""
    from scipy.signal import savgol_filter

    best, best_param, best_score = y, {}, -np.inf
    for w in savgol_windows(len(y)):
        for order in (1, 2, 3, 4):
            if order >= w - 1:
                continue
            out = savgol_filter(y, w, order, mode="interp")
            s = score(clean, out)
            if s > best_score:
                best, best_param, best_score = out, {"window": w, "order": order}, s
    return best, best_param


TV_FACTORS = np.exp(np.linspace(np.log(0.05), np.log(20.0), 16))


def tv_oracle(y: np.ndarray, clean: np.ndarray, sigma: float) -> tuple[np.ndarray, dict]:
    """Total variation (Chambolle) with the weight ``k * sigma``, k in 0.05..20 (16 log-spaced), that
    scores best against the clean series; a coarse grid then a refinement around the best k."""
    from skimage.restoration import denoise_tv_chambolle

    def run(k: float) -> tuple[np.ndarray, float]:
        out = denoise_tv_chambolle(y, weight=k * sigma, max_num_iter=400)
        return out, score(clean, out)

    results = {float(k): run(k) for k in TV_FACTORS}
    k0 = max(results, key=lambda k: results[k][1])
    for k in (k0 / 1.25, k0 * 1.25):
        results[k] = run(k)
    k_best = max(results, key=lambda k: results[k][1])
    return results[k_best][0], {"weight_over_sigma": round(k_best, 4)}


# ------------------------------------------------------------------------------------ ours


def _engine():
    """The package's denoising engine (the ``denoising`` package, or the older ``denoise`` module)."""
    try:
        from diffuse_cli import denoising
    except ImportError:
        from diffuse_cli import denoise as denoising
    return denoising


def open_model(model_dir: str) -> object:
    """The model as `diffuse denoise` runs it: LiteRT when the folder has a model.tflite, else TensorFlow."""
    try:
        from diffuse_cli import litert_model
    except ImportError:  # a tree without the LiteRT runtime
        from diffuse_cli import modelstore

        return modelstore.load_model(model_dir)
    return litert_model.open_model(model_dir)[0]


class Ours:
    """A model directory run in-process (load once, denoise_media per series) or through the CLI."""

    def __init__(self, model_dir: str, use_cli: bool) -> None:
        self.model_dir, self.use_cli = model_dir, use_cli
        self.model = None
        self.runtime = "cli"
        if not use_cli:
            self.model = open_model(model_dir)
            self.runtime = str(getattr(self.model, "runtime", "tensorflow"))
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-signals-")

    def __call__(self, y: np.ndarray, sigma: float | None = None,
                 on_harm: str = "warn") -> tuple[np.ndarray, float, dict]:
        """Cleaned series, seconds, and the engine's report (sigma, notes, the do-no-harm check)."""
        path = os.path.join(self.tmp.name, "noisy.npy")
        np.save(path, y)
        if self.use_cli:
            out_path = os.path.join(self.tmp.name, "clean.npy")
            cmd = [str(ROOT / ".venv" / "bin" / "diffuse"), "denoise", path, "-o", out_path, "--model",
                   self.model_dir, "--force", "--json", "--quiet"]
            if sigma is not None:
                cmd += ["--sigma", repr(float(sigma))]
            cmd += ["--on-harm", on_harm]
            t0 = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if run.returncode != 0:
                raise RuntimeError(f"diffuse denoise failed ({run.returncode}): {run.stderr.strip()}")
            try:
                info = json.loads(run.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                info = {}
            return np.load(out_path).astype(np.float64), seconds, info
        engine = _engine()
        media = dio.load(path)
        opts = engine.DenoiseOptions(sigma=sigma, on_harm=on_harm)
        t0 = time.perf_counter()
        cleaned, info = engine.denoise_media(media, self.model, opts)
        seconds = time.perf_counter() - t0
        return np.asarray(cleaned.samples, dtype=np.float64).reshape(-1), seconds, info


def speed(ours: Ours, reference: Ours | None, rng: np.random.Generator) -> dict:
    """In-process blind runs over SPEED_SAMPLES samples: best of 2 after a warm-up call, wall-clock and
    process CPU time (all threads). The reference model runs interleaved on the same series, so the
    ratio of the two holds even when other work shares the cores."""
    from diffuse_cli import synthetic_signals

    x, _ = synthetic_signals.compose(SPEED_SAMPLES, rng)
    y, _ = add_noise(x, 15.0, (999, 15))
    models = {"ours": ours} if reference is None else {"ours": ours, "reference": reference}
    for m in models.values():
        m(y[:16384])
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(2):
        for key, m in models.items():
            c0 = time.process_time()
            seconds = m(y)[1]
            wall[key] = min(wall.get(key, math.inf), seconds)
            cpu[key] = min(cpu.get(key, math.inf), time.process_time() - c0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = {"samples": SPEED_SAMPLES, "seconds": wall["ours"], "samples_per_s": SPEED_SAMPLES / wall["ours"],
           "cpu_seconds": cpu["ours"], "samples_per_cpu_s": SPEED_SAMPLES / cpu["ours"],
           "load_average_1min": round(load, 2), "cpus": os.cpu_count()}
    if reference is not None:
        out["reference_seconds"] = wall["reference"]
        out["speedup_over_reference"] = wall["reference"] / wall["ours"]
    return out


# ------------------------------------------------------------------------------------ the run


METHODS = ("noisy", "wavelet", "savgol", "tv", "ours", "ours-check", "ours-known", "reference")
LABELS = {
    "noisy": "noisy input",
    "wavelet": "wavelet BayesShrink (sym8, blind)",
    "savgol": "Savitzky-Golay (oracle window/order)",
    "tv": "TV Chambolle (oracle weight)",
    "best-classical": "best of the three per series",
    "ours": "ours (signal model, σ estimated)",
    "ours-check": "ours (signal model, σ estimated, with the check)",
    "ours-known": "ours (signal model, σ known)",
    "reference": "speech-16k (bundled, σ estimated)",
}


def run(args: argparse.Namespace) -> dict:
    t_start = time.time()
    series, notes = load_series(args.series)
    ours = Ours(args.model, args.cli)
    reference = Ours(args.reference_model, args.cli) if args.reference_model else None
    rows = []
    for s, x in series:
        for snr in SNRS:
            y, sigma = add_noise(x, snr, (zlib.crc32(s.name.encode()), snr))
            row = {"series": s.name, "n": int(x.size), "snr_in": snr, "sigma": sigma}
            row["noisy"] = score(x, y)
            row["wavelet"] = score(x, wavelet_blind(y))
            out, row["savgol_param"] = savgol_oracle(y, x)
            row["savgol"] = score(x, out)
            out, row["tv_param"] = tv_oracle(y, x, sigma)
            row["tv"] = score(x, out)
            out, row["ours_seconds"], info = ours(y)
            row["ours"] = score(x, out)
            row["ours_sigma_estimated"] = info.get("sigma")
            row["ours_notes"] = info.get("notes", [])
            row["ours_check"] = _check_summary(info)
            row["ours-check"] = row["ours"] if row["ours_check"]["passed"] else score(x, ours(y, None, "fallback")[0])
            out, _, info = ours(y, sigma)
            row["ours-known"] = score(x, out)
            row["ours_known_check"] = _check_summary(info)
            if reference is not None:
                out, _, _ = reference(y)
                row["reference"] = score(x, out)
            row["best-classical"] = max(row["wavelet"], row["savgol"], row["tv"])
            rows.append(row)
            print(f"{s.name:14s} {snr:2d} dB: noisy {row['noisy']:6.2f}  wavelet {row['wavelet']:6.2f}  "
                  f"SG {row['savgol']:6.2f}  TV {row['tv']:6.2f}  ours {row['ours']:6.2f} "
                  f"(known {row['ours-known']:6.2f})"
                  + (f"  speech {row['reference']:6.2f}" if reference is not None else ""), flush=True)
    shipped = None
    if any(s.name == "sensor" for s, _ in series):
        x, y = _sensor("sensor.csv"), _sensor("sensor-noisy.csv")
        shipped = {"series": "sample_data/sensor-noisy.csv (as shipped)", "noisy": score(x, y),
                   "wavelet": score(x, wavelet_blind(y)), "savgol": score(x, savgol_oracle(y, x)[0]),
                   "tv": score(x, tv_oracle(y, x, float(np.std(y - x)))[0]), "ours": score(x, ours(y)[0]),
                   "ours-check": score(x, ours(y, None, "fallback")[0])}
        if reference is not None:
            shipped["reference"] = score(x, reference(y)[0])
    perf = None if args.no_speed or args.cli else speed(ours, reference, np.random.default_rng(0))
    return {
        "command": "python bench/signals.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "reference_model": args.reference_model,
        "via": "cli" if args.cli else "in-process",
        "runtime": ours.runtime,
        "machine": f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",
        "seconds": round(time.time() - t_start, 1),
        "series": [{"name": s.name, "source": s.source, "licence": s.licence, "what": s.rate, "n": int(x.size)}
                   for s, x in series],
        "notes": notes,
        "rows": rows,
        "shipped_sensor": shipped,
        "speed": perf,
    }


def _check_summary(info: dict) -> dict:
    """The do-no-harm check of one run: passed, and why not (an engine without the check: passed)."""
    check = info.get("check") or {}
    return {"passed": bool(check.get("passed", True)), "reasons": check.get("reasons", [])}


def _mean(rows: list[dict], key: str, snr: int) -> float:
    values = [r[key] for r in rows if r["snr_in"] == snr and key in r]
    return float(np.mean(values)) if values else float("nan")


def markdown(report: dict) -> str:
    rows = report["rows"]
    methods = [m for m in ("noisy", "wavelet", "savgol", "tv", "best-classical", "ours", "ours-check", "ours-known",
                           "reference") if any(m in r for r in rows)]
    lines = [f"Command: `{report['command']}`  ", f"Model: `{report['model']}` ({report['via']}, "
             f"{report.get('runtime', '?')}); "
             f"machine: {report['machine']}; total run {report['seconds']} s.", ""]
    lines += ["### Held-out series + white noise: mean output SNR (dB, zero-mean reference)", "",
              "| method | " + " | ".join(f"{snr} dB in" for snr in SNRS) + " |",
              "|---|" + "---|" * len(SNRS)]
    for m in methods:
        lines.append(f"| {LABELS[m]} | " + " | ".join(f"{_mean(rows, m, snr):.2f}" for snr in SNRS) + " |")
    lines += ["", "### Targets", "", "| comparison | " + " | ".join(f"{snr} dB" for snr in SNRS) + " |",
              "|---|" + "---|" * len(SNRS)]
    best_mean = {snr: max(_mean(rows, m, snr) for m in ("wavelet", "savgol", "tv")) for snr in SNRS}
    for key in [k for k in ("ours", "ours-check", "ours-known") if k in methods]:
        lines.append(f"| {LABELS[key]} − best classical mean | "
                     + " | ".join(f"{_mean(rows, key, snr) - best_mean[snr]:+.2f}" for snr in SNRS) + " |")
        lines.append(f"| {LABELS[key]}: series below the noisy input | " + " | ".join(
            str(sum(1 for r in rows if r["snr_in"] == snr and r[key] < r["noisy"])) for snr in SNRS) + " |")
        lines.append(f"| {LABELS[key]}: series below the per-series best classical | " + " | ".join(
            str(sum(1 for r in rows if r["snr_in"] == snr and r[key] < r["best-classical"])) for snr in SNRS)
            + f" (of {len(rows) // len(SNRS)}) |")
    fired = [f"{r['series']} {r['snr_in']} dB" for r in rows if not r.get("ours_check", {"passed": True})["passed"]]
    fired_known = [f"{r['series']} {r['snr_in']} dB" for r in rows
                   if not r.get("ours_known_check", {"passed": True})["passed"]]
    if any("ours_check" in r for r in rows):
        lines += ["", f"Do-no-harm check (bench/harm.md): failed on {len(fired)} of {len(rows)} blind runs"
                  + (f" ({', '.join(fired)})" if fired else "") + f", on {len(fired_known)} of {len(rows)} with σ known"
                  + (f" ({', '.join(fired_known)})" if fired_known else "") + "."]
    if report.get("speed"):
        sp = report["speed"]
        lines += ["", f"Speed (in-process, blind, {sp['samples']} samples): {sp['samples_per_s'] / 1e6:.2f} M "
                  f"samples/s wall-clock (target >= 1 M), {sp['samples_per_cpu_s'] / 1e6:.2f} M samples per CPU "
                  f"second, on {sp['cpus']} CPU(s) with a 1-min load average of {sp['load_average_1min']}"
                  + (f"; {sp['speedup_over_reference']:.2f}x the reference model's speed on the same series"
                     if "speedup_over_reference" in sp else "") + "."]
    lines += ["", "### Per series (output SNR, dB)", "",
              "| series | n | in | " + " | ".join(m for m in methods if m != "noisy") + " |",
              "|---|---|---|" + "---|" * (len(methods) - 1)]
    for r in rows:
        lines.append(f"| {r['series']} | {r['n']} | {r['noisy']:.2f} | "
                     + " | ".join(f"{r[m]:.2f}" if m in r else "–" for m in methods if m != "noisy") + " |")
    if report.get("shipped_sensor"):
        sh = report["shipped_sensor"]
        keys = [k for k in ("noisy", "wavelet", "savgol", "tv", "ours", "ours-check", "reference") if k in sh]
        lines += ["", "### sample_data/sensor-noisy.csv as shipped (SNR dB)", "",
                  "| " + " | ".join(LABELS[k] for k in keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{sh[k]:.2f}" for k in keys) + " |"]
    lines += ["", "### Held-out series", "", "| name | what | n | source | licence |", "|---|---|---|---|---|"]
    for s in report["series"]:
        lines.append(f"| {s['name']} | {s['what']} | {s['n']} | {s['source']} | {s['licence']} |")
    for note in report["notes"]:
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"


def _finite(value: object) -> object:
    """JSON has no NaN or infinity: such floats become null (numpy scalars become Python numbers)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Held-out 1D series benchmark (see the module docstring).")
    parser.add_argument("--model", required=True, help="the signal model directory to benchmark")
    parser.add_argument("--reference-model", default=str(ROOT / "diffuse_cli" / "models" / "speech-16k"),
                        help="a second model for reference (default: the bundled speech model; '' for none)")
    parser.add_argument("--out", default="bench", help="folder for signals.md and signals.json")
    parser.add_argument("--series", nargs="*", help="only these series (names as in the table)")
    parser.add_argument("--cli", action="store_true", help="run `diffuse denoise` per file instead of in-process")
    parser.add_argument("--no-speed", action="store_true", help="skip the 2^20-sample speed measurement")
    args = parser.parse_args(argv)
    report = run(args)
    text = markdown(report)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    for name, data in (("signals.json", json.dumps(_finite(report), indent=1) + "\n"), ("signals.md", text)):
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(args.out, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
