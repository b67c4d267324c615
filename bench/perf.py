"""`make perf`: start-up, inference and training speed of diffuse_cli against plain baselines, in one run.

Usage:
    .venv/bin/python bench/perf.py [--out bench] [--quick] [--model-image DIR] [--model-audio DIR]

Every measurement runs in its own child process (this script re-invoked with ``--child KIND``), so peak
resident memory (``ru_maxrss`` from ``os.wait4``) belongs to that measurement alone and imports do not leak
between them. Absolute times on shared machines are noise; the ratios printed at the end are what count:

- start-up: ``diffuse --help`` and ``diffuse noise`` on a small PNG vs ``python -c pass`` (hyperfine when
  installed, else the median of repeated runs); checks that ``noise`` never imports TensorFlow;
- one file, cold: ``import tensorflow`` and the LiteRT import alone vs ``diffuse denoise`` on one 512x512
  gray photo and one 3 s 48 kHz recording, on LiteRT (the default) and ``--runtime tensorflow``, each call a
  new process (median of interleaved rounds): wall time, peak RSS, whether TensorFlow was imported;
- denoise: first-file latency of the CLI (process start to output written) and steady in-process
  throughput (megapixels/s, audio seconds per second) for one-step and DDIM-10, vs OpenCV NLM, BM3D and
  noisereduce on the same inputs, every method timed alike (:func:`best_of`: one warm-up call, then the best
  of 3 timed calls, 1 with --quick); one-step again on the TensorFlow runtime (LiteRT ÷ TensorFlow);
- a folder of 12 photos (scikit-image's bundled images, 512x512 gray, sigma 25): one ``diffuse denoise
  FOLDER`` call, process start included, vs BM3D in-process on the same photos;
- training: patches/s of ``diffuse_cli.training.train`` vs a plain ``model.fit`` on the same network and
  batch fed from memory (target: within 10 %);
- peak RSS for each.

With no bundled or given model, an untrained network of the bundled models' architecture is built for the
timing (speed does not depend on the weights; noted in the report). Writes OUT/perf.json and OUT/perf.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def diffuse_cmd() -> list[str]:
    exe = Path(PY).parent / "diffuse"
    return [str(exe)] if exe.exists() else [PY, "-m", "diffuse_cli"]


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_measured(cmd: list[str], timeout: float = 900) -> dict:
    """Run a command: wall seconds, exit status and output (no memory figure: see run_wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    return {"cmd": cmd, "wall_s": wall, "rc": proc.returncode, "stdout": out.decode(errors="replace"),
            "stderr": err.decode(errors="replace")}


def run_wait4(cmd: list[str]) -> dict:
    """Like run_measured, but reaps with os.wait4 to get this child's own peak RSS (Linux: KiB)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=child_env(), cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"cmd": cmd, "wall_s": wall, "rc": proc.returncode, "peak_rss_mib": usage.ru_maxrss / 1024,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def code_state() -> dict:
    """The commit measured and the files of the package that differed from it (the tree is shared)."""
    def git(*argv: str) -> str:
        res = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return res.stdout if res.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "diffuse_cli").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_in_diffuse_cli": changed}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children so far."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def best_of(call, repeats: int) -> dict:
    """Time ``call()`` the same way for every method, ours and the baselines alike: one warm-up call (imports,
    graph tracing, caches; reported as first_s), then the best of ``repeats`` timed calls (steady_s)."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "steady_s": min(times), "runs": len(times)}


def child_json(kind: str, extra: list[str]) -> dict:
    res = run_wait4([PY, str(Path(__file__).resolve()), "--child", kind, *extra])
    if res["rc"] != 0:
        tail = "\n".join(res["stderr"].strip().splitlines()[-5:])
        log(f"[{kind}] failed (exit {res['rc']}):\n{tail}")
        return {"error": tail or f"exit {res['rc']}", "peak_rss_mib": res["peak_rss_mib"]}
    lines = [ln for ln in res["stdout"].splitlines() if ln.startswith("{")]
    data = json.loads(lines[-1])
    data["peak_rss_mib"] = res["peak_rss_mib"]
    data["xnnpack_delegate"] = "XNNPACK delegate" in res["stderr"]  # LiteRT logs it when it applies XNNPACK
    data["process_wall_s"] = res["wall_s"]
    return data


# ------------------------------------------------------------------------------------------- start-up


def startup(runs: int, tmp: Path) -> dict:
    noisy_out = tmp / "startup-noisy.png"
    cmds = {
        "python -c pass": [PY, "-c", "pass"],
        "diffuse --help": [*diffuse_cmd(), "--help"],
        "diffuse noise": [*diffuse_cmd(), "noise", "sample_data/photo-gray.png", "-o", str(noisy_out),
                          "--sigma", "25", "--seed", "1", "--force"],
    }
    results: dict = {}
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        export = tmp / "hyperfine.json"
        argv = [hyperfine, "--warmup", "2", "--runs", str(runs), "--export-json", str(export), "-N"]
        argv += ["-n", "python -c pass", " ".join(cmds["python -c pass"])]
        argv += ["-n", "diffuse --help", " ".join(cmds["diffuse --help"])]
        argv += ["-n", "diffuse noise", " ".join(cmds["diffuse noise"])]
        res = run_measured(argv)
        if res["rc"] == 0:
            for r in json.loads(export.read_text())["results"]:
                results[r["command"]] = {"median_s": r["median"], "mean_s": r["mean"], "stddev_s": r["stddev"],
                                         "runs": len(r["times"]), "tool": "hyperfine"}
        else:
            log(f"hyperfine failed ({res['stderr'].strip()[:200]}); timing with subprocess instead")
    for name, cmd in cmds.items():
        peak = 0.0
        times = []
        for i in range(runs + 1):
            res = run_wait4(cmd)
            if res["rc"] != 0:
                log(f"[startup] {name} failed: {res['stderr'].strip()[:300]}")
                break
            peak = max(peak, res["peak_rss_mib"])
            if i:  # the first run warms the page cache
                times.append(res["wall_s"])
        entry = results.setdefault(name, {})
        if times and "median_s" not in entry:
            entry.update({"median_s": statistics.median(times), "mean_s": statistics.mean(times),
                          "runs": len(times), "tool": "subprocess"})
        entry["peak_rss_mib"] = peak
    # Does `diffuse noise` import TensorFlow? Run the CLI's main in-process and look at sys.modules.
    probe = ("import sys\nfrom diffuse_cli.cli import main\n"
             f"sys.argv = ['diffuse', 'noise', 'sample_data/photo-gray.png', '-o', {str(noisy_out)!r}, "
             "'--sigma', '25', '--seed', '1', '--force']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('TF_IMPORTED=' + str(any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules)),"
             " file=sys.stderr)\n")
    res = run_measured([PY, "-c", probe])
    results["noise_imports_tensorflow"] = "TF_IMPORTED=True" in res["stderr"]
    return results


# ------------------------------------------------------------------------------ one file, cold (new process)


# scikit-image data images that ship inside its wheel (skimage/data/; nothing is downloaded), for the folder
# run: natural photos, textures, micrographs, astronomy; colour ones are taken as luma.
FOLDER_IMAGES = ("astronaut", "brick", "camera", "cell", "coffee", "grass", "gravel", "hubble_deep_field",
                 "immunohistochemistry", "moon", "retina", "rocket")
FOLDER_SIGMA = 25.0
TF_FLAG = "TF_IMPORTED="


def gray_512(image, side: int = 512):
    """``image`` as 8-bit gray ``side`` x ``side``: luma (ITU-R 601) for colour, centre crop, reflect-padded
    where smaller."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.fromarray(image).convert("L")) if image.ndim == 3 else np.asarray(image, np.uint8)
    pad = [(max(0, side - n) // 2, max(0, side - n) - max(0, side - n) // 2) for n in a.shape]
    a = np.pad(a, pad, mode="reflect")
    top, left = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
    return a[top : top + side, left : left + side]


def add_gaussian(clean, sigma: float, seed: int):
    """``clip(round(x + sigma n), 0, 255)`` as uint8, ``n ~ N(0, 1)`` from ``default_rng(seed)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.clip(np.round(clean + sigma * rng.standard_normal(clean.shape)), 0, 255).astype(np.uint8)


def make_inputs(tmp: Path) -> dict:
    """The one-file and folder inputs, made here without a download: a 512x512 gray photo (scikit-image's
    camera + Gaussian noise, sigma 25), a 3 s 48 kHz recording (sample_data/speech.wav resampled to 48 kHz +
    white noise at 10 dB SNR), and FOLDER_IMAGES as 512x512 gray photos + noise (sigma FOLDER_SIGMA)."""
    import numpy as np
    import soundfile as sf
    import soxr
    from PIL import Image
    from skimage import data as skdata

    photo = tmp / "photo.png"
    Image.fromarray(add_gaussian(gray_512(skdata.camera()), 25.0, seed=0)).save(photo)
    speech, rate = sf.read(str(ROOT / "sample_data/speech.wav"), dtype="float64")
    x = soxr.resample(speech, rate, 48000)[: 3 * 48000]
    noise = np.sqrt(np.mean(x**2) / 10) * np.random.default_rng(0).standard_normal(x.shape)  # 10 dB SNR
    rec = tmp / "rec.wav"
    sf.write(str(rec), np.clip(x + noise, -1, 1), 48000, subtype="PCM_16")
    folder = tmp / "photos"
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(FOLDER_IMAGES):
        Image.fromarray(add_gaussian(gray_512(getattr(skdata, name)()), FOLDER_SIGMA, seed=i)).save(
            folder / f"{name}.png")
    return {"photo": photo, "rec": rec, "folder": folder, "rec_seconds": len(x) / 48000}


def tf_probe(argv: list[str]) -> list[str]:
    """``diffuse ARGV`` run through the CLI's own main, printing on stderr whether TensorFlow was imported."""
    code = ("import sys\nfrom diffuse_cli.cli import main\n"
            f"sys.argv = ['diffuse', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print({TF_FLAG!r} + str(any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules)),"
            " file=sys.stderr)\n")
    return [PY, "-c", code]


def one_file(rounds: int, tmp: Path, inputs: dict) -> dict:
    """Wall time and peak RSS of one-file calls, each a new process, in interleaved rounds (so drift in the
    machine's load hits every command alike): the imports alone, then ``diffuse denoise`` on one photo and
    one recording with the default runtime (LiteRT) and ``--runtime tensorflow``. A first untimed round
    warms the page cache; in it the denoise calls run through :func:`tf_probe` (the same CLI main), which
    says whether the process imported TensorFlow."""
    cmds: dict[str, tuple[list[str] | None, list[str]]] = {  # name -> (diffuse argv or None, command)
        "import tensorflow": (None, [PY, "-c", "import tensorflow"]),
        "import LiteRT": (None, [PY, "-c", "from ai_edge_litert.interpreter import Interpreter"]),
    }
    shown = {"import tensorflow": 'python -c "import tensorflow"',
             "import LiteRT": 'python -c "from ai_edge_litert.interpreter import Interpreter"'}
    # (name, input, variant, flags); litert is the default runtime. The smaller-calls variant shows how peak
    # memory follows the pixels per network call (one 512x512 tile per call by default; here four of 272x272,
    # one per call).
    variants = [(name, src, runtime, ["--runtime", "tensorflow"] if runtime == "tensorflow" else [])
                for name, src in (("photo", inputs["photo"]), ("rec", inputs["rec"]))
                for runtime in ("litert", "tensorflow")]
    variants.append(("photo", inputs["photo"], "litert, small calls", ["--tile", "272", "--batch", "1"]))
    for name, src, variant, flags in variants:
        ext = src.suffix
        argv = ["denoise", str(src), "-o", str(tmp / f"clean{ext}"), "--force", "--quiet", *flags]
        key = f"denoise {name} ({variant})"
        cmds[key] = (argv, [*diffuse_cmd(), *argv])
        shown[key] = " ".join(["diffuse denoise", f"{name}{ext}", "-o", f"clean{ext}", *flags])
    results: dict = {name: {"wall_s": [], "peak_rss_mib": [], "cmd": shown[name]} for name in cmds}
    for r in range(rounds + 1):
        for name, (argv, cmd) in cmds.items():
            res = run_wait4(tf_probe(argv) if (r == 0 and argv) else cmd)
            entry = results[name]
            if res["rc"] != 0:
                entry["error"] = res["stderr"].strip()[-300:]
                log(f"[one-file] {name} failed: {entry['error']}")
                continue
            if r == 0:
                if argv:
                    entry["imports_tensorflow"] = f"{TF_FLAG}True" in res["stderr"]
                continue
            entry["wall_s"].append(res["wall_s"])
            entry["peak_rss_mib"].append(res["peak_rss_mib"])
    for entry in results.values():
        if entry["wall_s"]:
            entry.update({"median_s": statistics.median(entry["wall_s"]), "best_s": min(entry["wall_s"]),
                          "max_peak_rss_mib": max(entry["peak_rss_mib"])})
    return results


def folder_run(repeats: int, tmp: Path, inputs: dict, no_bm3d: bool) -> dict:
    """One ``diffuse denoise FOLDER -o OUTDIR --sigma 25`` call (process start to last file written; median
    of ``repeats`` calls into fresh folders) vs BM3D on the same noisy photos, in-process with sigma known
    (only the bm3d calls are timed: imports and file reads are not counted for it)."""
    folder = inputs["folder"]
    ours: dict = {"wall_s": [], "peak_rss_mib": [], "files": len(FOLDER_IMAGES)}
    for i in range(repeats):
        dst = tmp / f"folder-out-{i}"
        res = run_wait4([*diffuse_cmd(), "denoise", str(folder), "-o", str(dst), "--sigma", str(FOLDER_SIGMA),
                         "--quiet"])
        written = len(list(dst.glob("*.png"))) if dst.is_dir() else 0
        if res["rc"] != 0 or written != len(FOLDER_IMAGES):
            ours["error"] = f"exit {res['rc']}, {written} files written: {res['stderr'].strip()[-300:]}"
            log(f"[folder] ours failed: {ours['error']}")
            break
        ours["wall_s"].append(res["wall_s"])
        ours["peak_rss_mib"].append(res["peak_rss_mib"])
        shutil.rmtree(dst, ignore_errors=True)
    if ours["wall_s"]:
        ours.update({"median_s": statistics.median(ours["wall_s"]), "best_s": min(ours["wall_s"]),
                     "max_peak_rss_mib": max(ours["peak_rss_mib"])})
    out = {"ours": ours, "images": list(FOLDER_IMAGES), "side": 512, "sigma": FOLDER_SIGMA}
    if not no_bm3d:
        out["bm3d"] = child_json("bm3d-folder", ["--tmp", str(folder)])
    return out


def child_bm3d_folder(args: argparse.Namespace) -> dict:
    """BM3D (``bm3d`` package, sigma known) on every PNG of the folder ``--tmp``: seconds of the bm3d calls."""
    import bm3d
    import numpy as np
    from PIL import Image

    per_image = {}
    for path in sorted(Path(args.tmp).glob("*.png")):
        with Image.open(path) as im:
            noisy = np.asarray(im, dtype=np.float64) / 255.0
        t0 = time.perf_counter()
        bm3d.bm3d(noisy, sigma_psd=FOLDER_SIGMA / 255)
        per_image[path.name] = time.perf_counter() - t0
    return {"total_s": sum(per_image.values()), "per_image_s": per_image, "files": len(per_image)}


# --------------------------------------------------------------------------------------- child: inference


# The bundled models' architectures (Makefile train-default-image / train-default-audio): the fallback
# when no model is bundled or given, so the timing is of the network users get.
IMAGE_ARCH = {"widths": [16, 32, 64, 128], "patch_size": 96}
AUDIO_ARCH = {"widths": [16, 32, 48, 64, 64], "kernel_size": 5, "patch_size": 4096, "sample_rate": 16000}


def _ensure_model(kind: str, explicit: str | None, tmp: str) -> tuple[str, bool]:
    """(model dir, trained?) for 'gray' | 'color' | 'audio': the given one, else the bundled one, else an
    untrained network of the bundled architecture (colour: the gray one, which cleans opponent channels)."""
    sys.path.insert(0, str(ROOT))
    from diffuse_cli import io as dio
    from diffuse_cli import models as bundled
    from diffuse_cli.errors import InputError

    if explicit:
        return explicit, True
    sample = {"gray": "sample_data/photo-gray.png", "color": "sample_data/photo-color.png",
              "audio": "sample_data/speech.wav"}[kind]
    try:
        return bundled.choose(dio.load(str(ROOT / sample))), True
    except InputError:
        pass
    from diffuse_cli import config, modelstore, networks

    name = "audio" if kind == "audio" else "image"
    path = os.path.join(tmp, f"untrained-{name}")
    if not os.path.isdir(path):
        cfg = config.default_config(name, 1, **(AUDIO_ARCH if kind == "audio" else IMAGE_ARCH))  # validated
        modelstore.save_model(path, cfg, networks.build_network(cfg))
    return path, False


def child_infer(args: argparse.Namespace) -> dict:
    """In-process steady throughput of our engine vs OpenCV NLM and BM3D on the same noisy images.

    ``--runtime``: what runs the network (``auto``: LiteRT, as ``diffuse denoise`` does; ``tensorflow``: the
    Keras weights). ``--onestep-only``: one-step alone, no DDIM and no baselines (the runtime comparison).
    """
    sys.path.insert(0, str(ROOT))
    from diffuse_cli import litert_model

    t0 = time.perf_counter()
    model, _ = litert_model.open_model(args.model_dir, args.runtime)
    load_s = time.perf_counter() - t0
    out: dict = {"kind": args.kind, "model": args.model_dir, "load_s": load_s, "runtime": model.runtime,
                 "threads": litert_model.available_cores() if model.runtime == "litert" else None}
    _infer(args, model, out)
    out["imports_tensorflow"] = _tensorflow_imported()
    return out


def _tensorflow_imported() -> bool:
    return any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)


def _infer(args: argparse.Namespace, model, out: dict) -> dict:
    """The timings of child_infer, added to ``out``."""
    import numpy as np
    from PIL import Image

    from diffuse_cli import denoising
    from diffuse_cli import io as dio

    kind = args.kind
    if kind == "audio":
        import io as pyio

        import soundfile as sf

        x, rate = sf.read(str(ROOT / "sample_data/speech-noisy.wav"), dtype="float64")
        reps = max(1, int(np.ceil(args.audio_seconds * rate / len(x))))
        y = np.tile(x, reps)[: int(args.audio_seconds * rate)]
        buf = pyio.BytesIO()
        sf.write(buf, y, rate, format="WAV", subtype="PCM_16")
        media = dio.load_bytes(buf.getvalue(), "perf.wav")
        seconds = len(y) / rate
        opts = denoising.DenoiseOptions(sigma=None, method="onestep", seed=0)
        e = best_of(lambda: denoising.denoise_media(media, model, opts), args.repeats)
        out["ours-onestep"] = {**e, "audio_s_per_s": seconds / e["steady_s"], "rtf": e["steady_s"] / seconds}
        out["audio_seconds"] = seconds
        if args.onestep_only:
            return out
        short = min(10.0, seconds)
        buf = pyio.BytesIO()
        sf.write(buf, y[: int(short * rate)], rate, format="WAV", subtype="PCM_16")
        short_media = dio.load_bytes(buf.getvalue(), "perf-short.wav")
        ddim = denoising.DenoiseOptions(method="ddim", steps=10, seed=0)
        e = best_of(lambda: denoising.denoise_media(short_media, model, ddim), args.repeats)
        out["ours-ddim"] = {**e, "audio_s_per_s": short / e["steady_s"], "rtf": e["steady_s"] / short,
                            "audio_seconds": short}
        out["trace_count"] = getattr(model, "trace_count", None)
        try:
            import noisereduce as nr

            e = best_of(lambda: nr.reduce_noise(y=y, sr=rate, stationary=True), args.repeats)
            out["noisereduce"] = {**e, "audio_s_per_s": seconds / e["steady_s"], "rtf": e["steady_s"] / seconds}
        except ImportError:
            pass
        out["audio_seconds"] = seconds
        return out

    src = ROOT / args.image
    with Image.open(src) as im:
        im = im.convert("L" if kind == "gray" else "RGB")
        side = args.side
        im = im.resize((side, side), Image.Resampling.LANCZOS) if min(im.size) < side else im.crop((0, 0, side, side))
        clean = np.asarray(im, dtype=np.float64)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(clean + 25 * rng.standard_normal(clean.shape)), 0, 255).astype(np.uint8)
    buf = __import__("io").BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    media = dio.load_bytes(buf.getvalue(), "perf.png")
    mp = side * side / 1e6
    out["megapixels"] = mp
    for method in ("onestep",) if args.onestep_only else ("onestep", "ddim"):  # each first call warms up
        opts = denoising.DenoiseOptions(sigma=25.0, method=method, steps=10, seed=0)
        e = best_of(lambda opts=opts: denoising.denoise_media(media, model, opts), args.repeats)
        out[f"ours-{method}"] = {**e, "mp_per_s": mp / e["steady_s"]}
    out["trace_count"] = getattr(model, "trace_count", None)
    if args.onestep_only:
        return out
    try:
        import cv2

        if kind == "gray":
            e = best_of(lambda: cv2.fastNlMeansDenoising(noisy, None, h=20, templateWindowSize=7,
                                                         searchWindowSize=21), args.repeats)
        else:
            e = best_of(lambda: cv2.fastNlMeansDenoisingColored(noisy, None, h=20, hColor=20, templateWindowSize=7,
                                                                searchWindowSize=21), args.repeats)
        out["nlm-opencv"] = {**e, "mp_per_s": mp / e["steady_s"]}
    except ImportError:
        pass
    if not args.no_bm3d:
        try:
            import bm3d

            if kind == "gray":
                e = best_of(lambda: bm3d.bm3d(noisy / 255.0, sigma_psd=25 / 255), args.repeats)
            else:
                e = best_of(lambda: bm3d.bm3d_rgb(noisy / 255.0, sigma_psd=25 / 255), args.repeats)
            out["bm3d"] = {**e, "mp_per_s": mp / e["steady_s"]}
        except ImportError:
            pass
    return out


def child_bm3d_only(args: argparse.Namespace) -> dict:
    """Peak memory of a classical baseline alone (same input as child_infer)."""
    import numpy as np
    from PIL import Image

    with Image.open(ROOT / args.image) as im:
        im = im.convert("L")
        side = args.side
        im = im.resize((side, side)) if min(im.size) < side else im.crop((0, 0, side, side))
        clean = np.asarray(im, dtype=np.float64)
    noisy = np.clip(np.round(clean + 25 * np.random.default_rng(0).standard_normal(clean.shape)), 0, 255)
    t0 = time.perf_counter()
    if args.kind == "bm3d":
        import bm3d

        bm3d.bm3d(noisy / 255.0, sigma_psd=25 / 255)
    else:
        import cv2

        cv2.fastNlMeansDenoising(noisy.astype(np.uint8), None, h=20, templateWindowSize=7, searchWindowSize=21)
    return {"steady_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------- child: training


def child_train_ours(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    from diffuse_cli import training

    events: list[dict] = []

    def progress(ev: dict) -> None:
        if ev.get("event") == "step":
            events.append({"step": ev.get("step"), "t": time.perf_counter(), "pps": ev.get("patches_per_s")})

    out_dir = os.path.join(args.tmp, "train-ours")
    shutil.rmtree(out_dir, ignore_errors=True)
    opts = training.TrainOptions(
        data=[str(ROOT / "sample_data/photo-gray.png"), str(ROOT / "sample_data/photo-color.png")],
        out=out_dir, channels=1, widths=tuple(IMAGE_ARCH["widths"]), batch_size=args.batch,
        max_steps=args.steps, patch_size=64,
        steps_per_epoch=args.steps, checkpoint_every=10**9, log_every=10, seed=0,
    )
    t0 = time.perf_counter()
    summary = training.train(opts, progress)
    total = time.perf_counter() - t0
    # Steady rate: the steps after the first third (tracing and warm-up excluded), from progress timestamps.
    pps = None
    later = [e for e in events if e["step"] >= args.steps // 3]
    if len(later) >= 2:
        a, b = later[0], later[-1]
        if b["t"] > a["t"] and b["step"] > a["step"]:
            pps = (b["step"] - a["step"]) * args.batch / (b["t"] - a["t"])
    if pps is None:
        reported = [e["pps"] for e in events if e.get("pps")]
        pps = statistics.median(reported) if reported else args.steps * args.batch / total
    return {"patches_per_s": pps, "total_s": total, "steps": args.steps, "batch": args.batch,
            "model_dir": out_dir, "summary_keys": sorted(summary) if isinstance(summary, dict) else None}


def child_train_plain(args: argparse.Namespace) -> dict:
    """Plain Keras: same network (from the config `diffuse train` wrote), Adam + MSE on eps, fed from memory."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import keras

    from diffuse_cli import config, networks
    from diffuse_cli.schedule import Schedule

    cfg = config.load_config(os.path.join(args.tmp, "train-ours"))
    model = networks.build_network(cfg)
    sched = Schedule.create(cfg.schedule, cfg.timesteps)
    rng = np.random.default_rng(0)
    n = args.batch * 16
    p = int(cfg.patch_size or 64)
    x0 = rng.uniform(-1, 1, size=(n, p, p, int(cfg.channels))).astype(np.float32)
    t = rng.uniform(1, sched.timesteps, size=(n,)).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    ab = np.asarray(sched.alpha_bar_at(t), dtype=np.float32).reshape(-1, 1, 1, 1)
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    import tensorflow as tf

    # In memory, repeated: the fit never runs out of batches (steps_per_epoch > n / batch).
    data = tf.data.Dataset.from_tensor_slices(((x_t, t), eps)).batch(args.batch, drop_remainder=True)
    data = data.cache().repeat().prefetch(tf.data.AUTOTUNE)
    model.compile(optimizer=keras.optimizers.Adam(2e-4), loss="mse")
    warm = max(4, args.steps // 3)  # the same warm-up share as child_train_ours
    model.fit(data, steps_per_epoch=warm, epochs=1, verbose=0, shuffle=False)
    steps = args.steps - warm
    t0 = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    dt = time.perf_counter() - t0
    return {"patches_per_s": steps * args.batch / dt, "steps": steps, "batch": args.batch,
            "jit_compile": bool(getattr(model, "jit_compile", False))}


# ------------------------------------------------------------------------------------------------ main


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    """perf.md: the same tables as the terminal, from perf.json's numbers."""
    s, infer = report["startup"], report.get("inference", {})
    lat, base_mem = report.get("first_file_latency", {}), report.get("baseline_memory", {})
    machine = report["machine"]
    cpu = report.get("section_cpu_s", {})
    minutes = ", ".join(f"{k} {v / 60:.1f}" + (f" (CPU {cpu[k] / 60:.1f})" if k in cpu else "")
                        for k, v in report.get("section_s", {}).items())
    lines = ["# `make perf`: start-up, throughput, training and memory (one run)", "",
             f"{machine['cpu_count']} CPUs, Python {machine['python']}; settings "
             f"{json.dumps(report['settings'])}; {report['elapsed_s'] / 60:.1f} min (by section, wall and the CPU "
             f"minutes of this process and its children: {minutes}). "
             f"Load average {machine.get('load_average_at_start', 0):.1f} at the start, "
             f"{machine.get('load_average_at_end', 0):.1f} at the end. Code: commit "
             f"{report.get('code', {}).get('commit')}"
             + (f", with uncommitted changes in {', '.join(report['code']['uncommitted_in_diffuse_cli'])}"
                if report.get("code", {}).get("uncommitted_in_diffuse_cli") else "") + ".", "",
             "The machine is shared (other agents, a training run), so absolute times are noise: every comparison "
             "is a ratio of two measurements from this same run, and the one-file calls run in interleaved rounds "
             "so that a change in load hits each command alike.", "",
             "## Start-up (median wall time)", "", "| command | median s | peak RSS MiB | tool |", "|---|---|---|---|"]
    for name in ("python -c pass", "diffuse --help", "diffuse noise"):
        e = s.get(name, {})
        lines.append(f"| `{name}` | {_f(e.get('median_s'))} | {_f(e.get('peak_rss_mib'), 0)} | {e.get('tool', '')} |")
    lines.append(f"\n`diffuse noise` imports TensorFlow: **{s.get('noise_imports_tensorflow')}**\n")
    one = report.get("one_file", {})
    if one:
        ins = report.get("one_file_inputs", {})
        lines += ["## One file, cold (each call a new process)", "",
                  f"`photo.png`: {ins.get('photo')}; `rec.wav`: {ins.get('rec')}. Default runtime: LiteRT (the "
                  f"bundled models ship `model.tflite`). {report['settings']['one_file_rounds']} interleaved rounds "
                  "after an untimed one; peak RSS is the process's own `ru_maxrss` (the highest of the rounds). "
                  "*Imports TF*: `tensorflow` in `sys.modules` at the end of the untimed round (the CLI's main run "
                  "in a small wrapper).", "",
                  "| command | median s | best s | peak RSS MiB | imports TF |", "|---|---|---|---|---|"]
        for e in one.values():
            if "error" in e and not e.get("wall_s"):
                lines.append(f"| `{e['cmd']}` | error: {e['error'][:80]} | | | |")
                continue
            lines.append(f"| `{e['cmd']}` | {_f(e.get('median_s'), 2)} | {_f(e.get('best_s'), 2)} | "
                         f"{_f(e.get('max_peak_rss_mib'), 0)} | {_f(e.get('imports_tensorflow', '–'))} |")
        lines.append("")
    lines += ["## Denoise", "", "First file: the CLI from process start to output written (imports, model load, "
              "trace). Every method, ours and the baselines: one warm-up call (first call s), then steady = best "
              "of the repeats, in-process.", "",
              "| input | method | first-file s (CLI) | first call s | steady s | MP/s or audio s/s | peak RSS MiB |",
              "|---|---|---|---|---|---|---|"]
    runtimes = sorted({f"{r.get('runtime')}" + (f" ({r['threads']} threads)" if r.get("threads") else "")
                       for r in infer.values() if "error" not in r})
    lines.insert(-2, f"Ours runs on: {', '.join(runtimes)}, as `diffuse denoise` does by default.\n")
    for kind, r in infer.items():
        if "error" in r:
            lines.append(f"| {kind} | error | {r['error'][:80]} | | | | |")
            continue
        for method in ("ours-onestep", "ours-ddim", "nlm-opencv", "bm3d", "noisereduce"):
            if method not in r:
                continue
            e = r[method]
            peak = r.get("peak_rss_mib") if method.startswith("ours") else base_mem.get(method, {}).get("peak_rss_mib")
            first_file = lat.get(kind, {}).get("wall_s") if method == "ours-onestep" else None
            speed = e.get("mp_per_s", e.get("audio_s_per_s"))
            lines.append(f"| {kind} | {method} | {_f(first_file, 2)} | {_f(e.get('first_s'))} | "
                         f"{_f(e.get('steady_s'))} | {_f(speed)} | {_f(peak, 0)} |")
    infer_tf = report.get("inference_tensorflow", {})
    if infer_tf:
        lines += ["", "## Runtime: LiteRT vs TensorFlow (in-process, steady, same model and input)", "",
                  "One-step, the inputs of the table above (gray: the 512×512 photo at σ 25; audio: "
                  f"{report['settings']['audio_seconds']:.0f} s of 16 kHz speech, σ estimated). LiteRT: XNNPACK "
                  "(LiteRT's CPU delegate), threads = cores available. Each: one warm-up call, best of the repeats.",
                  "", "| input | runtime | load s | first call s | steady s | MP/s or audio s/s | peak RSS MiB | "
                  "imports TF |", "|---|---|---|---|---|---|---|---|"]
        for kind in infer_tf:
            for r in (infer.get(kind, {}), infer_tf[kind]):
                if "error" in r or "ours-onestep" not in r:
                    lines.append(f"| {kind} | error | {r.get('error', 'not run')[:80]} | | | | | |")
                    continue
                e = r["ours-onestep"]
                name = r["runtime"] + (f" (XNNPACK, {r['threads']} threads)" if r.get("xnnpack_delegate") else "")
                lines.append(f"| {kind} | {name} | {_f(r.get('load_s'), 2)} | {_f(e.get('first_s'))} | "
                             f"{_f(e.get('steady_s'))} | {_f(e.get('mp_per_s', e.get('audio_s_per_s')))} | "
                             f"{_f(r.get('peak_rss_mib'), 0)} | {_f(r.get('imports_tensorflow'))} |")
    folder = report.get("folder")
    if folder:
        o, b = folder["ours"], folder.get("bm3d", {})
        lines += ["", f"## A folder of {len(folder['images'])} photos vs BM3D", "",
                  f"scikit-image's {', '.join(folder['images'])} (shipped in its wheel), as {folder['side']}×"
                  f"{folder['side']} gray (luma, centre crop, reflect padding) + Gaussian noise σ {folder['sigma']:g}. "
                  f"Ours: one `diffuse denoise FOLDER -o OUTDIR --sigma {folder['sigma']:g}` call, process start to "
                  "the last file written (median of the calls). BM3D: the `bm3d` package, in-process, σ known, only "
                  "its calls timed.", "", "| method | wall s | per photo s | peak RSS MiB | runs s |",
                  "|---|---|---|---|---|"]
        n = len(folder["images"])
        per = o["median_s"] / n if o.get("median_s") else None
        lines.append(f"| ours (CLI, one process) | {_f(o.get('median_s'), 2)} | {_f(per)} | "
                     f"{_f(o.get('max_peak_rss_mib'), 0)} | {', '.join(_f(v, 2) for v in o.get('wall_s', []))} |")
        if b:
            per = b["total_s"] / n if b.get("total_s") else None
            lines.append(f"| BM3D (in-process) | {_f(b.get('total_s'), 2)} | {_f(per)} | "
                         f"{_f(b.get('peak_rss_mib'), 0)} | {_f(b.get('total_s'), 2)} |")
    if "training" in report:
        lines += ["", "## Training (patches/s, steady: after the first third; best of alternating rounds)", "",
                  "| run | patches/s (best) | all rounds | peak RSS MiB |", "|---|---|---|---|"]
        for name, e in report["training"].items():
            rounds = ", ".join(_f(v, 1) for v in e.get("all_patches_per_s", []))
            lines.append(f"| {name} | {_f(e.get('patches_per_s'), 1)} | {rounds} | {_f(e.get('peak_rss_mib'), 0)} |")
    lines += ["", "## Ratios (same run)", "", "| comparison | value | target | status | detail |",
              "|---|---|---|---|---|"]
    for r in report["ratios"]:
        status = {True: "met", False: "**NOT met**", None: ""}[r["met"]]
        lines.append(f"| {r['what']} | {_f(r['value'])} | {r['target']} | {status} | {r['note']} |")
    untrained = [k for k, m in report.get("models", {}).items() if m.get("trained") is False]
    if untrained:
        lines += ["", f"No trained model for {', '.join(untrained)}: an untrained network of the bundled architecture "
                  "was timed (speed and memory do not depend on the weights)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs, fewer training steps")
    p.add_argument("--model-image", default=None, help="gray image model dir (default: bundled)")
    p.add_argument("--model-image-color", default=None)
    p.add_argument("--model-audio", default=None)
    p.add_argument("--image", default="sample_data/photo-gray.png", help="image used for throughput")
    p.add_argument("--side", type=int, default=512, help="square image side for throughput (pixels)")
    p.add_argument("--no-bm3d", action="store_true")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--train-rounds", type=int, default=3, help="alternating training runs (best of each)")
    p.add_argument("--one-file-rounds", type=int, default=3, help="timed rounds of the one-file calls (median)")
    # child mode
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--kind", default="gray", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--audio-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=96, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--runtime", default="auto", choices=("auto", "litert", "tensorflow"), help=argparse.SUPPRESS)
    p.add_argument("--onestep-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        fn = {"infer": child_infer, "train-ours": child_train_ours, "train-plain": child_train_plain,
              "baseline": child_bm3d_only, "bm3d-folder": child_bm3d_folder, "model": None}[args.child]
        if args.child == "model":
            path, trained = _ensure_model(args.kind, args.model_dir, args.tmp)
            print(json.dumps({"path": path, "trained": trained}))
        else:
            print(json.dumps(fn(args), default=float))
        return 0

    start = time.perf_counter()
    out_dir = ROOT / args.out if not os.path.isabs(args.out) else Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="diffuse-perf-"))
    if args.quick:
        args.side, args.repeats, args.steps, args.audio_seconds, args.train_rounds = 256, 1, 24, 10.0, 1
        args.one_file_rounds = 1
    common = ["--tmp", str(tmp), "--side", str(args.side), "--image", args.image, "--repeats", str(args.repeats)]
    common += ["--no-bm3d"] if args.no_bm3d else []
    report: dict = {"machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                                "load_average_at_start": os.getloadavg()[0]}, "settings": {
        "side": args.side, "repeats": args.repeats, "train_steps": args.steps, "batch": args.batch,
        "audio_seconds": args.audio_seconds, "one_file_rounds": args.one_file_rounds}}
    sections: dict[str, float] = {}  # wall seconds per section
    cpu: dict[str, float] = {}  # CPU seconds per section (this process and its children)
    report["code"] = code_state()

    log("start-up ...")
    mark, cpu_mark = time.perf_counter(), cpu_seconds()
    report["startup"] = startup(3 if args.quick else 10, tmp)
    inputs = make_inputs(tmp)
    log("one file, cold (new process each): imports, denoise on LiteRT and on TensorFlow ...")
    report["one_file"] = one_file(args.one_file_rounds, tmp, inputs)
    report["one_file_inputs"] = {"photo": "scikit-image camera, 512x512 gray, + Gaussian noise sigma 25",
                                 "rec": f"sample_data/speech.wav resampled to 48 kHz, {inputs['rec_seconds']:.1f} s,"
                                        " + white noise at 10 dB SNR (PCM_16)"}
    sections["start-up and one file"] = time.perf_counter() - mark
    cpu["start-up and one file"] = cpu_seconds() - cpu_mark

    models = {}
    for kind, explicit in (("gray", args.model_image), ("color", args.model_image_color), ("audio", args.model_audio)):
        extra = ["--kind", kind, "--tmp", str(tmp)] + (["--model-dir", explicit] if explicit else [])
        models[kind] = child_json("model", extra)
    report["models"] = models

    # CLI first-file latency: process start to output written, cold model load and trace included.
    log("denoise first-file latency ...")
    latency = {}
    for kind, sample in (("gray", "sample_data/photo-gray-noisy.png"), ("color", "sample_data/photo-color-noisy.png"),
                         ("audio", "sample_data/speech-noisy.wav")):
        m = models[kind]
        if "path" not in m:
            continue
        dst = tmp / f"latency-{kind}{Path(sample).suffix}"
        res = run_wait4([*diffuse_cmd(), "denoise", sample, "-o", str(dst), "--model", m["path"], "--force",
                         "--quiet"])
        latency[kind] = {"wall_s": res["wall_s"], "rc": res["rc"], "peak_rss_mib": res["peak_rss_mib"],
                         "error": res["stderr"].strip()[-300:] if res["rc"] else None}
    report["first_file_latency"] = latency

    log("denoise throughput ...")
    mark, cpu_mark = time.perf_counter(), cpu_seconds()
    infer = {}
    for kind in ("gray", "color", "audio"):
        m = models[kind]
        if "path" in m:
            infer[kind] = child_json("infer", [*common, "--kind", kind, "--model-dir", m["path"],
                                               "--audio-seconds", str(args.audio_seconds)])
    report["inference"] = infer
    # The same model and inputs on the TensorFlow runtime (one-step): what LiteRT gains per call once warm.
    infer_tf = {}
    for kind in ("gray", "audio"):
        m = models[kind]
        if "path" in m:
            infer_tf[kind] = child_json("infer", [*common, "--kind", kind, "--model-dir", m["path"], "--audio-seconds",
                                                  str(args.audio_seconds), "--runtime", "tensorflow", "--onestep-only"])
    report["inference_tensorflow"] = infer_tf
    baseline_mem = {}
    for kind in ("nlm-opencv",) + (() if args.no_bm3d else ("bm3d",)):
        baseline_mem[kind] = child_json("baseline", [*common, "--kind", kind])
    report["baseline_memory"] = baseline_mem
    sections["throughput"] = time.perf_counter() - mark
    cpu["throughput"] = cpu_seconds() - cpu_mark
    log(f"folder of {len(FOLDER_IMAGES)} photos: diffuse denoise FOLDER vs BM3D ...")
    mark, cpu_mark = time.perf_counter(), cpu_seconds()
    report["folder"] = folder_run(1 if args.quick else 3, tmp, inputs, args.no_bm3d)
    sections["folder"] = time.perf_counter() - mark
    cpu["folder"] = cpu_seconds() - cpu_mark

    if not args.no_train:
        log("training throughput ...")
        mark, cpu_mark = time.perf_counter(), cpu_seconds()
        tr = ["--tmp", str(tmp), "--steps", str(args.steps), "--batch", str(args.batch)]
        # Alternate the two, best of `rounds` each: shared machines drift by tens of percent between runs.
        runs: dict[str, list[dict]] = {"ours": [], "plain_fit": []}
        for _ in range(args.train_rounds):
            ours = child_json("train-ours", tr)
            runs["ours"].append(ours)
            if "error" in ours:
                break
            runs["plain_fit"].append(child_json("train-plain", tr))
        report["training"] = {}
        for name, rs in runs.items():
            ok = [r for r in rs if "error" not in r]
            best = max(ok, key=lambda r: r["patches_per_s"]) if ok else (rs[-1] if rs else {"error": "not run"})
            report["training"][name] = {**best, "all_patches_per_s": [r.get("patches_per_s") for r in rs]}
        sections["training"] = time.perf_counter() - mark
        cpu["training"] = cpu_seconds() - cpu_mark
    report["section_s"] = sections
    report["section_cpu_s"] = cpu
    report["machine"]["load_average_at_end"] = os.getloadavg()[0]

    # Ratios.
    s = report["startup"]
    base = s.get("python -c pass", {}).get("median_s")
    rat = []

    def add(what: str, value, target: str = "", met=None, note: str = "") -> None:
        rat.append({"what": what, "value": value, "target": target, "met": met, "note": note})

    help_s = s.get("diffuse --help", {}).get("median_s")
    if help_s and base:
        add("diffuse --help minus python -c pass (s)", help_s - base, "≤ 0.3 s", help_s - base <= 0.3)
    noise_s = s.get("diffuse noise", {}).get("median_s")
    if noise_s and base:
        add("diffuse noise minus python -c pass (s)", noise_s - base, "", None)
    add("diffuse noise imports TensorFlow", s.get("noise_imports_tensorflow"), "False",
        s.get("noise_imports_tensorflow") is False)
    one = report["one_file"]
    tf_import = one["import tensorflow"].get("median_s")
    for name, what in (("photo", "512×512 gray photo"), ("rec", "3 s 48 kHz recording")):
        lite, tf = one[f"denoise {name} (litert)"], one[f"denoise {name} (tensorflow)"]
        v = ratio(lite.get("median_s"), tf_import)
        add(f"one file ({what}): denoise (LiteRT) wall ÷ `import tensorflow` wall", v, "≤ 0.5",
            v is not None and v <= 0.5, f"median {_f(lite.get('median_s'), 2)} vs {_f(tf_import, 2)} s, new processes")
        v = ratio(tf.get("median_s"), lite.get("median_s"))
        add(f"one file ({what}): denoise --runtime tensorflow wall ÷ LiteRT wall", v, "", None,
            f"median {_f(tf.get('median_s'), 2)} vs {_f(lite.get('median_s'), 2)} s")
        mb = lite["max_peak_rss_mib"] * 2**20 / 1e6 if lite.get("max_peak_rss_mib") else None
        add(f"one file ({what}): denoise (LiteRT) peak RSS, MB", mb, "< 400 MB", mb is not None and mb < 400,
            f"{_f(lite.get('max_peak_rss_mib'), 0)} MiB (highest of the runs); --runtime tensorflow "
            f"{_f(tf.get('max_peak_rss_mib'), 0)} MiB")
        add(f"one file ({what}): the LiteRT denoise process imports TensorFlow", lite.get("imports_tensorflow"),
            "False", lite.get("imports_tensorflow") is False,
            f"--runtime tensorflow: {tf.get('imports_tensorflow')} (the probe's control)")
    small, default = one.get("denoise photo (litert, small calls)", {}), one["denoise photo (litert)"]
    if small.get("max_peak_rss_mib"):
        add("one file (512×512 gray photo), `--tile 272 --batch 1` (four 272² calls): peak RSS, MB",
            small["max_peak_rss_mib"] * 2**20 / 1e6, "", None,
            f"{small['max_peak_rss_mib']:.0f} vs {_f(default.get('max_peak_rss_mib'), 0)} MiB with one 512² call; "
            f"wall {_f(small.get('median_s'), 2)} vs {_f(default.get('median_s'), 2)} s")
    for kind, what in (("gray", "gray 512×512 one-step, MP/s"), ("audio", "audio one-step, audio s/s")):
        lite = report["inference"].get(kind, {}).get("ours-onestep", {})
        tf = report["inference_tensorflow"].get(kind, {}).get("ours-onestep", {})
        unit = "mp_per_s" if kind == "gray" else "audio_s_per_s"
        v = ratio(lite.get(unit), tf.get(unit))
        add(f"in-process, steady: LiteRT ÷ TensorFlow runtime ({what})", v, "", None,
            f"{_f(lite.get(unit))} vs {_f(tf.get(unit))}; LiteRT threads "
            f"{report['inference'].get(kind, {}).get('threads')}")
    folder = report["folder"]
    ours_s, bm3d_s = folder["ours"].get("median_s"), folder.get("bm3d", {}).get("total_s")
    v = ratio(bm3d_s, ours_s)
    add(f"folder of {len(folder['images'])} photos (512×512, σ 25): BM3D time ÷ one `diffuse denoise FOLDER` call",
        v, "≥ 20×", None if v is None else v >= 20,
        f"{_f(bm3d_s, 1)} s (in-process, σ known) vs {_f(ours_s, 1)} s (process start included, median)")
    for kind, r in infer.items():
        if "error" in r:
            continue
        if kind == "audio":
            o = r.get("ours-onestep", {})
            add("audio: ours one-step real-time factor", o.get("rtf"), "≤ 0.05", (o.get("rtf") or 1) <= 0.05,
                f"{o.get('audio_s_per_s', 0):.0f} audio s per s")
            if "noisereduce" in r:
                add("audio: ours speed ÷ noisereduce speed", ratio(o.get("audio_s_per_s"),
                                                                   r["noisereduce"]["audio_s_per_s"]))
            continue
        for method in ("onestep", "ddim"):
            o = r.get(f"ours-{method}", {})
            for other in ("nlm-opencv", "bm3d"):
                if other in r:
                    v = ratio(o.get("mp_per_s"), r[other]["mp_per_s"])
                    target = "≥ 20×" if (other == "bm3d" and method == "onestep" and kind == "gray") else ""
                    add(f"{kind}: ours {method} MP/s ÷ {other} MP/s", v, target,
                        (v or 0) >= 20 if target else None,
                        f"{o.get('mp_per_s', 0):.3f} vs {r[other]['mp_per_s']:.3f} MP/s")
    for label, runs in (("", infer), (" (TensorFlow runtime, one-step calls)", report["inference_tensorflow"])):
        for kind, r in runs.items():
            if "error" not in r and r.get("trace_count") is not None:
                add(f"{kind}: graph traces for all calls of the run{label}", r["trace_count"], "≤ 3",
                    r["trace_count"] <= 3)
    audio = infer.get("audio", {})
    if "ours-ddim" in audio:
        add("audio: ours DDIM-10 real-time factor", audio["ours-ddim"]["rtf"], "", None,
            f"on {audio['ours-ddim']['audio_seconds']:.0f} s")
    if "training" in report:
        o, pl = report["training"]["ours"], report["training"]["plain_fit"]
        v = ratio(o.get("patches_per_s"), pl.get("patches_per_s"))
        add("training: diffuse train patches/s ÷ plain model.fit", v, "≥ 0.90", (v or 0) >= 0.9,
            f"{o.get('patches_per_s', 0):.1f} vs {pl.get('patches_per_s', 0):.1f} patches/s; peak RSS "
            f"{o.get('peak_rss_mib', 0):.0f} vs {pl.get('peak_rss_mib', 0):.0f} MiB")
    report["ratios"] = rat
    report["elapsed_s"] = time.perf_counter() - start
    (out_dir / "perf.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out_dir / "perf.md").write_text(markdown(report))

    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    t = Table(title="One file, cold (new process each; median of interleaved rounds)")
    for h in ("command", "median s", "best s", "peak RSS MiB", "imports TF"):
        t.add_column(h)
    for e in report["one_file"].values():
        t.add_row(e["cmd"], _f(e.get("median_s"), 2), _f(e.get("best_s"), 2), _f(e.get("max_peak_rss_mib"), 0),
                  _f(e.get("imports_tensorflow", "–")))
    console.print(t)
    t = Table(title="Start-up (median wall time)")
    for h in ("command", "median s", "peak RSS MiB", "tool"):
        t.add_column(h)
    for name in ("python -c pass", "diffuse --help", "diffuse noise"):
        e = s.get(name, {})
        t.add_row(name, f"{e.get('median_s', float('nan')):.3f}", f"{e.get('peak_rss_mib', 0):.0f}", e.get("tool", ""))
    console.print(t)
    t = Table(title="Denoise: first file (CLI, cold) and steady throughput (in-process)")
    for h in ("input", "method", "first-file s (CLI)", "first call s", "steady s", "MP/s or audio s/s", "peak RSS MiB"):
        t.add_column(h)
    for kind, r in infer.items():
        if "error" in r:
            t.add_row(kind, "error", r["error"][:60], "", "", "", "")
            continue
        lat = latency.get(kind, {})
        for method in ("ours-onestep", "ours-ddim", "nlm-opencv", "bm3d", "noisereduce"):
            if method not in r:
                continue
            e = r[method]
            speed = e.get("mp_per_s", e.get("audio_s_per_s"))
            peak = r.get("peak_rss_mib") if method.startswith("ours") else baseline_mem.get(method, {}).get(
                "peak_rss_mib")
            t.add_row(kind, method, f"{lat.get('wall_s', float('nan')):.2f}" if method == "ours-onestep" else "",
                      f"{e['first_s']:.3f}" if "first_s" in e else "", f"{e['steady_s']:.3f}",
                      f"{speed:.3f}" if speed else "", f"{peak:.0f}" if peak else "")
    console.print(t)
    t = Table(title="Ratios (same run)")
    for h in ("comparison", "value", "target", "status", "detail"):
        t.add_column(h)
    for r in rat:
        v = r["value"]
        val = str(v) if isinstance(v, bool) or v is None else f"{v:.3f}"
        t.add_row(r["what"], val, r["target"], {True: "[green]met[/]", False: "[red]NOT met[/]", None: ""}[r["met"]],
                  r["note"])
    console.print(t)
    untrained = [k for k, m in models.items() if m.get("trained") is False]
    if untrained:
        console.print(f"note: no trained model for {', '.join(untrained)}: timed an untrained network of the bundled "
                      "architecture (speed only)")
    console.print(f"wrote {out_dir / 'perf.json'} and perf.md in {report['elapsed_s']:.0f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
