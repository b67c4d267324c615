"""The ``diffuse`` command line: parses options, calls the engine, reports on stderr.

No TensorFlow here: the engine modules that need it (training, modelstore) are imported
inside the commands that use them, so ``--help``, ``noise`` and ``encode-steps`` start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from diffuse_cli import __version__
from diffuse_cli.enums import (
    Arch,
    Embedding,
    Loss,
    Method,
    NoiseKind,
    Objective,
    OnHarm,
    Precision,
    Runtime,
    ScheduleKind,
    Strategy,
    Xla,
)
from diffuse_cli.errors import InputError, Interrupted

console = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="diffuse",
    help="Clean noisy signals, audio and images with a step-conditioned diffusion denoiser.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Options shared by several commands: one definition, one help text.
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Output file, or '-' for stdout.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="Output format (png, jpeg, tiff, bmp, webp, wav, flac, ogg, csv, txt, npy); "
                 "default: from the output's extension, or the input's format for '-'."),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr (errors still).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed: the same seed gives identical output.")]
BitDepthOpt = Annotated[
    int | None, typer.Option("--bit-depth", help="Images: write 8 or 16 bits per channel (default: as the input).")
]
AxisOpt = Annotated[
    int | None,
    typer.Option("--axis", help="Signals: the array axis that is time: 0 = rows are samples (N x channels), "
                 "1 = channels first (channels x N). Default: NPY along its longer axis, CSV/TXT rows. "
                 "The output keeps the input's layout."),
]


def version_callback(value: bool) -> None:
    if value:
        print(f"diffuse {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Clean noisy signals, audio and images with a step-conditioned diffusion denoiser.

    Every command reads '-' as stdin and writes '-' to stdout; messages go to stderr.
    Exit codes: 0 ok, 1 internal error, 2 bad input, 130/143 interrupted.
    """


@contextlib.contextmanager
def native_stderr_silenced():
    """Silence TensorFlow's C++ start-up chatter (absl, CUDA probing) on fd 2 while it loads.

    TF_CPP_MIN_LOG_LEVEL does not cover absl's pre-initialisation warning, and stderr must carry
    only our own messages. Python-level errors raised inside still reach the user: fd 2 is restored
    before they are printed.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def info(message: str, quiet: bool) -> None:
    if not quiet:
        console.print(message)


def emit_json(record: object, data_on_stdout: bool) -> None:
    """JSON goes to stdout, unless stdout carries the data; then to stderr. JSON has no infinity or NaN:
    such a value (the PSNR of identical data, the SSIM of a tiny image) is written as null."""
    from diffuse_cli.metrics import json_safe

    text = json.dumps(json_safe(record), indent=None, default=float, allow_nan=False)
    print(text, file=sys.stderr if data_on_stdout else sys.stdout, flush=True)


# --------------------------------------------------------------------------- noise


@app.command(
    epilog="Example: diffuse noise photo.png -o noisy.png --sigma 25 --seed 1\n\n"
    "Example: cat speech.wav | diffuse noise - -o - --format wav --snr 10 > noisy.wav"
)
def noise(
    input: Annotated[str, typer.Argument(help="Image, audio or signal file, or '-' for stdin.")],
    output: OutputOpt,
    kind: Annotated[str, typer.Option(help="gaussian, salt-pepper, poisson (camera photon noise, images) or "
                                      "diffusion.")] = "gaussian",
    sigma: Annotated[
        float | None, typer.Option(help="Gaussian std in the file's units (0-255 for 8-bit images); with "
                                   "--kind poisson the Gaussian read noise added to it.")
    ] = None,
    snr: Annotated[
        float | None,
        typer.Option(help="Gaussian noise for this target SNR in dB. Signals (CSV/TXT/NPY): signal power "
                     "around its mean (a DC level is not signal), time/index columns excluded; audio: mean "
                     "square. The reported SNR is measured the same way."),
    ] = None,
    amount: Annotated[float, typer.Option(help="Salt-and-pepper: fraction of pixels/samples hit.")] = 0.05,
    salt_ratio: Annotated[float, typer.Option(help="Salt-and-pepper: fraction of hits set to the maximum.")] = 0.5,
    peak: Annotated[float | None, typer.Option(help="Poisson: photon count at full scale (fewer is noisier, "
                                               "e.g. 30: gain 255/30 for 8-bit).")] = None,
    step: Annotated[float | None, typer.Option(help="Diffusion: step t of q(x_t|x_0) (real values allowed).")] = None,
    schedule: Annotated[str, typer.Option(help="Diffusion: linear or cosine betas.")] = "linear",
    timesteps: Annotated[int, typer.Option(help="Diffusion: number of steps T.")] = 1000,
    axis: AxisOpt = None,
    seed: SeedOpt = None,
    format: FormatOpt = None,
    bit_depth: BitDepthOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add Gaussian, salt-and-pepper, Poisson or forward-diffusion noise to a file, reproducibly with --seed."""
    from diffuse_cli import io, metrics
    from diffuse_cli.noise import NoiseOptions, noise_media, validate_options

    opts = NoiseOptions(kind=kind, sigma=sigma, snr=snr, amount=amount, salt_ratio=salt_ratio, peak=peak,
                        step=step, schedule=schedule, timesteps=timesteps, seed=seed)
    validate_options(opts)  # before reading stdin, so option errors come first
    check_bit_depth(bit_depth)
    io.check_axis(axis)
    io.check_output_path(output, [input], force)
    media = io.load(input, axis=axis)
    noisy, report = noise_media(media, opts)
    notes = list(media.notes)
    fmt = io.save(noisy, output, fmt=format, bit_depth=bit_depth, force=force, inputs=[input], notes=notes)
    report.update(input=input, output=output, format=fmt, notes=notes)
    if "psnr_db" in report:
        info(f"{output}: {kind} noise, PSNR {report['psnr_db']:.2f} dB against the input", quiet)
    else:
        info(f"{output}: {kind} noise, SNR {report['snr_db']:.2f} dB against the input", quiet)
    show_notes(input, notes, quiet)
    if json_out:
        emit_json(metrics.json_safe(report), data_on_stdout=output == "-")  # an infinite PSNR is null


def show_notes(name: str, notes: list[str], quiet: bool) -> None:
    """Conversions the user should know about (palette -> RGB, first GIF frame, alpha dropped), one per line."""
    for note in dict.fromkeys(notes):
        info(f"{'<stdin>' if name == '-' else name}: note: {one_line(note)}", quiet)


def check_bit_depth(bit_depth: int | None) -> None:
    if bit_depth not in (None, 8, 16):
        raise InputError(f"--bit-depth {bit_depth}: images can be written with 8 or 16 bits per channel")


# --------------------------------------------------------------------------- encode-steps


@app.command(
    "encode-steps",
    epilog="Example: diffuse encode-steps --steps 0,5,10.5 --dim 16\n\n"
    "Example: diffuse encode-steps --steps 0:1000:10 --dim 128 -o enc.png",
)
def encode_steps(
    steps: Annotated[str, typer.Option(help="Comma list (0,5,10.5) or range START:STOP[:STEP].")] = "0:10",
    dim: Annotated[int, typer.Option(help="Encoding size d_model (ignored with --model).")] = 16,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write .npy, .csv or .png (heatmap); '-' for stdout.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Show this trained model's encodings (learned too).")] = None,
    format: Annotated[str | None, typer.Option("--format", help="npy, csv or png (default: from -o).")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print or save sinusoidal step encodings (the seed's formula), or a trained model's."""
    from diffuse_cli import encoding, io

    try:
        t = encoding.parse_steps(steps)
    except ValueError as err:
        raise InputError(f"--steps {steps!r}: {err}") from None
    if model is not None:
        with native_stderr_silenced():
            from diffuse_cli import litert_model  # TensorFlow only for a model without model.tflite

            loaded, note = litert_model.open_model(model)
        if note:
            info(f"{model}: note: {note}", quiet)
        values = loaded.step_encodings(t)
        source = f"{model} ({loaded.config.embedding})"
    else:
        if not 1 <= dim <= 8192:
            raise InputError(f"--dim {dim}: must be between 1 and 8192")
        if len(t) * dim > encoding.MAX_VALUES:  # checked before the table is allocated
            raise InputError(f"--dim {dim}: {len(t)} steps x {dim} dims is more than {encoding.MAX_VALUES} values; "
                             "give fewer --steps or a smaller --dim")
        values = encoding.sinusoidal_step_encoding(t, dim)
        source = "sinusoidal"
    if output is None:
        if json_out:
            emit_json({"steps": t.tolist(), "source": source, "encodings": values.tolist()}, False)
        elif sys.stdout.isatty():
            show_table(t, values, source)
        else:
            sys.stdout.write(encodings_csv(t, values))
        return
    fmt = (format or Path(output).suffix.lstrip(".") or "").lower()
    if fmt not in ("npy", "csv", "png"):
        raise InputError(f"{output}: cannot tell the format; use a .npy, .csv or .png name or --format")
    io.check_output_path(output, [], force)
    data = {"npy": encodings_npy, "csv": encodings_csv_bytes, "png": encodings_png}[fmt](t, values)
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        io.atomic_write_bytes(output, data, force=force)
    info(f"{output}: {len(t)} steps x {values.shape[1]} dims ({source})", quiet)
    if json_out:
        emit_json({"output": output, "format": fmt, "steps": len(t), "dim": int(values.shape[1]),
                   "source": source}, data_on_stdout=output == "-")


def show_table(t, values, source: str) -> None:
    from rich.table import Table

    out = Console()
    cols = min(values.shape[1], max(4, (out.width - 10) // 9))
    table = Table(title=f"step encodings ({source}), {values.shape[1]} dims"
                  + (f", first {cols} shown" if cols < values.shape[1] else ""))
    table.add_column("t", justify="right")
    for i in range(cols):
        table.add_column(str(i), justify="right")
    for step, row in zip(t, values):
        table.add_row(f"{step:g}", *(f"{v:+.4f}" for v in row[:cols]))
    out.print(table)


def encodings_csv(t, values) -> str:
    header = "t," + ",".join(f"e{i}" for i in range(values.shape[1]))
    lines = [header] + [f"{s!r}," + ",".join(repr(float(v)) for v in row) for s, row in zip(t.tolist(), values)]
    return "\n".join(lines) + "\n"


def encodings_csv_bytes(t, values) -> bytes:
    return encodings_csv(t, values).encode()


def encodings_npy(t, values) -> bytes:
    import io as pyio

    import numpy as np

    buf = pyio.BytesIO()
    np.save(buf, np.asarray(values, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def encodings_png(t, values) -> bytes:
    """Heatmap: one row per step, one column per dimension; blue -1, white 0, red +1."""
    import io as pyio

    import numpy as np
    from PIL import Image

    v = np.clip(np.asarray(values, dtype=np.float64), -1, 1)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb = np.stack([1 - neg, 1 - np.maximum(pos, neg), 1 - pos], axis=-1)
    img = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    zoom = max(1, min(16, 512 // max(v.shape)))
    img = img.resize((v.shape[1] * zoom, v.shape[0] * zoom), Image.Resampling.NEAREST)
    buf = pyio.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- train


@app.command(
    epilog="Example: diffuse train sample_data/photo-*.png --out models/photos --max-steps 2000\n\n"
    "Example: diffuse train recordings/ --out models/speech --arch unet --epochs 5 --resume\n\n"
    "Example: diffuse train scans/ --out models/scans --init-from photo-gray --max-steps 500",
)
def train(
    ctx: typer.Context,
    data: Annotated[list[str], typer.Argument(help="Files, folders or globs of images, audio or signals.")],
    out: Annotated[str, typer.Option("--out", help="Model directory (config, weights, checkpoints, SavedModel).")],
    arch: Annotated[Arch, typer.Option(help="unet: conditioned U-Net; dense: the seed's Dense model.")] = Arch.unet,
    widths: Annotated[str, typer.Option(help="U-Net channel widths per level, comma separated.")] = "32,64,128",
    blocks: Annotated[int, typer.Option(help="U-Net residual blocks per level.")] = 1,
    dense_hidden: Annotated[int, typer.Option(help="Dense model: hidden units (the seed uses 128).")] = 128,
    length: Annotated[int | None, typer.Option(help="Dense model: fixed signal length.")] = None,
    embedding: Annotated[Embedding, typer.Option(help="Step encoding.")] = Embedding.sinusoidal,
    embedding_dim: Annotated[int, typer.Option(help="Step encoding size.")] = 64,
    activation_noise: Annotated[
        float, typer.Option(help="Std of Gaussian noise on activations during training (0: off).")
    ] = 0.0,
    schedule: Annotated[ScheduleKind, typer.Option(help="Noise schedule.")] = ScheduleKind.linear,
    timesteps: Annotated[int, typer.Option(help="Diffusion length T.")] = 1000,
    patch_size: Annotated[
        int | None, typer.Option(help="Image patch side or signal segment length (default 64 / 1024).")
    ] = None,
    batch_size: Annotated[
        str, typer.Option(help="Patches per training step, or auto: the largest power of two up to 128 that fits "
                               "in half the free memory.")
    ] = "16",
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Stop after this many epochs.")] = None,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch (validation runs after each).")] = 200,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam, warm-up then cosine decay).")] = 2e-4,
    objective: Annotated[
        Objective | None, typer.Option(help="What the network learns: eps (the noise, the seed's loss), x0 (the "
                                            "clean data) or edm (Karras et al. 2022: every noise level weighs the "
                                            "same). Default: edm for unet, eps for dense.")
    ] = None,
    loss: Annotated[
        Loss, typer.Option(help="Loss terms (a '+' sums them): mse and l1 on the network output against the "
                                "objective's target, ssim on the clean-data estimate.")
    ] = Loss.mse,
    loss_weights: Annotated[str | None, typer.Option(help="Weights for a mixed loss, e.g. 1,0.1.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Save a checkpoint every N steps.")] = 100,
    keep: Annotated[int, typer.Option(help="Keep the last K checkpoints.")] = 3,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")] = False,
    export_only: Annotated[
        bool, typer.Option("--export-only", help="Only export the latest checkpoint (config, weights, SavedModel).")
    ] = False,
    init_from: Annotated[
        str | None, typer.Option(help="Start from this model's weights (a model folder or a bundled model's "
                                      "name, e.g. photo-gray): its network, schedule and objective, a fresh "
                                      "optimizer, step 0.")
    ] = None,
    no_tflite: Annotated[
        bool, typer.Option("--no-tflite", help="Do not write model.tflite (the LiteRT file fast inference uses).")
    ] = False,
    strategy: Annotated[
        Strategy, typer.Option(help="Distribution; multi-worker reads TF_CONFIG.")
    ] = Strategy.default,
    precision: Annotated[
        Precision, typer.Option(help="auto: mixed (float16 compute) on a GPU, else float32.")
    ] = Precision.auto,
    xla: Annotated[Xla, typer.Option(help="XLA-compile forward+backward; auto: on with a GPU.")] = Xla.auto,
    channels: Annotated[
        int | None, typer.Option(help="Images: train on 1 (luma) or 3 channels; default: the data's own.")
    ] = None,
    kernel_size: Annotated[int | None, typer.Option(help="Convolution kernel size (default 3 images, 7 1D).")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Learning-rate warm-up steps (default 5%, <= 500).")] = None,
    val_sigma: Annotated[
        float | None, typer.Option(help="Validation noise std in file units (default 25 for 8-bit images).")
    ] = None,
    low_noise_fraction: Annotated[
        float, typer.Option(help="Share of each batch drawn at denoising noise levels (the rest: uniform t).")
    ] = 0.5,
    low_noise_sigma: Annotated[
        str | None, typer.Option(help="LO,HI noise std range for that share, in file units (e.g. 1,100).")
    ] = None,
    description: Annotated[
        str | None, typer.Option(help="What the model was trained on; stored in config.json, shown by --list-models.")
    ] = None,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the step-conditioned denoiser on a folder of signals or images."""
    params = train_params(ctx.params)
    check_model_out(out)
    with native_stderr_silenced():
        import tensorflow as tf

        from diffuse_cli import training  # imports TensorFlow

        tf.config.list_physical_devices()  # device probing (cuInit errors on CPU-only hosts) happens here, silenced

    created = not os.path.exists(out)
    try:
        with TrainProgress(quiet) as progress:
            summary = training.train(training.TrainOptions(**params), progress=progress.update)
    except InputError:
        # Bad data found before the first checkpoint: leave no half-made model folder behind.
        if created and not os.path.exists(os.path.join(out, "checkpoints", "checkpoint")):
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    info(f"{out}: trained {summary.get('steps')} steps, epoch mean loss {summary.get('loss', float('nan')):.4f}",
         quiet)
    if json_out:
        emit_json(summary, data_on_stdout=False)


# train parameters that are not TrainOptions fields (--no-tflite is TrainOptions.tflite, inverted)
TRAIN_CLI_ONLY = ("json_out", "quiet", "description", "no_tflite")


def train_params(params: dict) -> dict:
    """The train command's parameters as TrainOptions keywords (same names): comma lists and --batch-size
    parsed, --description kept for the summary, the output switches dropped."""
    kwargs = {name: value for name, value in params.items() if name not in TRAIN_CLI_ONLY}
    try:
        kwargs["widths"] = tuple(int(w) for w in params["widths"].split(","))
        for name in ("loss_weights", "low_noise_sigma"):
            kwargs[name] = tuple(float(v) for v in params[name].split(",")) if params[name] else None
    except ValueError:
        raise InputError("--widths/--loss-weights/--low-noise-sigma: give comma-separated numbers, e.g. 32,64,128") \
            from None
    batch: int | str = params["batch_size"].strip().lower()
    if batch != "auto":  # the range is checked with the other options (training.options.check_options)
        try:
            batch = int(batch)
        except ValueError:
            raise InputError(f"--batch-size {params['batch_size']}: give a positive whole number or auto") from None
    kwargs.update(data=list(params["data"]), batch_size=batch, tflite=not params["no_tflite"])
    kwargs["extra"] = {"description": params["description"]} if params["description"] else {}
    return kwargs


def check_model_out(out: str) -> None:
    """--out must be a folder (or not exist yet) inside a folder we can write to."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"{out}: exists and is not a folder; --out names the model directory, choose another")
    probe = os.path.abspath(out)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise InputError(f"{out}: {probe} is a file, not a folder; choose another --out")
    try:  # os.access() says yes to root everywhere: really create (and remove) a folder there
        os.rmdir(tempfile.mkdtemp(prefix=".diffuse-probe-", dir=probe))
    except OSError as exc:
        raise InputError(f"{out}: cannot write to folder {probe} ({exc.strerror or exc}); choose a writable --out") \
            from None


class TrainProgress:
    """Renders training events (dicts from training.train) as a Rich progress bar on stderr."""

    def __init__(self, quiet: bool, out: Console = console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=out,
            disable=quiet or not out.is_terminal,
        )
        self.task = None

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, event: dict) -> None:
        kind = event.get("event")
        if self.task is None and event.get("total"):
            self.task = self.progress.add_task("train", total=event["total"], stats="",
                                               completed=event.get("step", 0))
        if kind == "step" and self.task is not None:
            # the mean of the steps since the last update, not the epoch's mean that the epoch lines print
            stats = (f"loss {event.get('loss', float('nan')):.4f} (last {event.get('loss_steps', 1)} steps)  "
                     f"{event.get('patches_per_s', 0):.0f} patches/s")
            self.progress.update(self.task, completed=event["step"], stats=stats)
        elif event.get("message") and not self.quiet:
            self.progress.console.print(event["message"], markup=False)


# --------------------------------------------------------------------------- denoise


@app.command(
    epilog="Example: diffuse denoise noisy.png -o clean.png\n\n"
    "Example: diffuse denoise scans/ -o cleaned/ --model models/photos --json\n\n"
    "Example: cat noisy.wav | diffuse denoise - -o - > clean.wav",
)
def denoise(
    inputs: Annotated[list[str] | None, typer.Argument(help="Files, folders, globs, or '-' for stdin.")] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output file, folder (for several inputs) or '-'.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Trained model directory (default: the bundled model for the data).")
    ] = None,
    sigma: Annotated[
        float | None, typer.Option(help="Noise std in the file's units (0-255 for 8-bit); default: estimated. "
                                   "With --noise-kind poisson: the Gaussian read noise (0 allowed).")
    ] = None,
    method: Annotated[
        Method, typer.Option(help="Reverse process: onestep is the fastest, one step to the posterior-mean "
                             "estimate; ddim (deterministic) and ddpm (stochastic, --seed) take --steps steps, "
                             "more time; the PSNR each reaches is measured in bench/report.md.")
    ] = Method.onestep,
    steps: Annotated[int, typer.Option(help="Reverse steps for ddim/ddpm.")] = 10,
    noise_kind: Annotated[
        NoiseKind, typer.Option(metavar="<kind>", help="Noise to remove: gaussian, salt-pepper (impulses are "
                                "filled first), poisson (camera photon noise, images: through the Anscombe "
                                "transform; --method ddim helps in very low light) or auto (gaussian or "
                                "salt-pepper, decided per file).")
    ] = NoiseKind.gaussian,
    gain: Annotated[
        float | None, typer.Option(help="--noise-kind poisson: file units per photon count (255/peak for "
                                   "8-bit); default: estimated.")
    ] = None,
    tile: Annotated[int, typer.Option(help="Image tile side (pixels); memory stays bounded.")] = 512,
    overlap: Annotated[int, typer.Option(help="Tile overlap (pixels), blended with a smooth window.")] = 32,
    batch: Annotated[int, typer.Option(help="Tiles per network call.")] = 8,
    reference: Annotated[
        str | None,
        typer.Option(help="Clean file, or a folder holding each input's clean version under the same relative "
                     "path, to score input and output against. Images: PSNR and SSIM (n/a below 11x11 pixels). "
                     "Audio: SNR and SI-SDR. Signals (CSV/TXT/NPY): SNR with the signal power around each "
                     "column's mean, and SI-SDR, time/index columns excluded."),
    ] = None,
    shard: Annotated[
        str | None, typer.Option(help="Process only slice I of N of the file list, as I/N (a slice with no "
                                 "files prints a note and exits 0).")
    ] = None,
    list_models: Annotated[bool, typer.Option("--list-models", help="List the bundled models and exit.")] = False,
    runtime: Annotated[
        Runtime, typer.Option(help="auto: LiteRT when the model folder has model.tflite (fast start, no "
                              "TensorFlow), else TensorFlow; tensorflow: the Keras weights (e.g. on a GPU).")
    ] = Runtime.auto,
    on_harm: Annotated[
        OnHarm, typer.Option(
            metavar="<mode>",
            help="Do no harm: after cleaning, what was removed is compared with the noise assumed (its level, its "
                 "correlation with the output, structure left in it); when it does not look like noise: warn (a "
                 "warning; the output is written), fallback (clean again with half the sigma, at most 3 times, else "
                 "keep the input as it was), error (write nothing, exit 2). auto: fallback for CSV/TXT/NPY signals, "
                 "warn for images and audio (cleaned in place, without a copy of the input to go back to)."),
    ] = OnHarm.auto,
    axis: AxisOpt = None,
    seed: SeedOpt = None,
    format: FormatOpt = None,
    bit_depth: BitDepthOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Clean files, folders or a stdin stream with a trained (or the bundled) model."""
    from diffuse_cli import models as bundled

    if list_models:
        show_models(bundled.list_bundled(), json_out)
        return
    if not inputs:
        raise InputError("no input given; pass files, folders, globs or '-' (see diffuse denoise --help)")
    if output is None:
        raise InputError("no output given; pass -o FILE, -o FOLDER for several inputs, or -o - for stdout")
    check_bit_depth(bit_depth)
    from diffuse_cli import denoising, io

    io.check_axis(axis)
    options = denoising.DenoiseOptions(sigma=sigma, method=method, steps=steps, noise_kind=noise_kind, seed=seed,
                                       tile=tile, overlap=overlap, batch=batch, gain=gain)
    denoising.validate_options(options)
    jobs = plan_jobs(inputs, output, shard, format)
    single = len(jobs) == 1 and not Path(output).is_dir() and not any(io.is_collection(a) for a in inputs)
    if single:
        io.check_output_path(jobs[0][1], [jobs[0][0]], force)
    elif output == "-":
        raise InputError("-o -: several inputs need an output folder, not stdout")
    skipped = [] if single else skipped_files(inputs)
    show_skipped(skipped, quiet)
    if not jobs:  # more shards than files: this one has nothing to do, which is not an error
        info(f"diffuse: note: --shard {shard} has no files (the list has fewer files than shards); "
             "nothing to do", quiet)
    run = DenoiseRun(model, options, reference, format, bit_depth, force, axis, runtime.value, on_harm.value)
    records, failures = run_jobs(jobs, run, single, quiet)
    if json_out:
        emit_json(records[0] if single else {"files": records, "failed": failures, "skipped": skipped},
                  data_on_stdout=output == "-")
    if failures:
        raise InputError(f"{failures} of {len(jobs)} files failed (see the messages above); the rest were written")


@dataclass
class DenoiseRun:
    """What every file of one ``diffuse denoise`` run shares."""

    model_dir: str | None  # None: the bundled model for each file
    options: object  # denoising.DenoiseOptions
    reference: str | None
    fmt: str | None
    bit_depth: int | None
    force: bool
    axis: int | None = None  # signals: the array axis that is time (--axis), for inputs and references
    runtime: str = "auto"  # --runtime: LiteRT or TensorFlow
    on_harm: str = "auto"  # --on-harm: resolved per file (on_harm_for)
    models: dict = field(default_factory=dict)  # (model, note) by path, each loaded once


def run_jobs(jobs: list[tuple[str, str, str]], run: DenoiseRun, single: bool, quiet: bool) -> tuple[list[dict], int]:
    """Clean each (input, output, name) job; a bad file among several is reported and skipped.
    Returns one record per file and the number that failed."""
    records, failures = [], 0
    with FileProgress(len(jobs), quiet) as progress:
        for src, dst, rel in jobs:
            try:
                record = denoise_one(src, dst, rel, run, progress)
            except InputError as err:
                if single:
                    raise
                failures += 1
                console.print(f"diffuse: error: {one_line(str(err))} (skipped)", markup=False)
                # nothing was written for it (outputs are atomic) and nothing was measured
                record = {"input": src, "output": None, "error": one_line(str(err))}
            else:
                report_file(record, quiet)
            records.append(record)
            progress.file_done()
    return records, failures


def plan_jobs(inputs: list[str], output: str, shard: str | None, fmt: str | None) -> list[tuple[str, str, str]]:
    """(input, output, name) jobs: one file to one output, or many files into an output folder mirroring
    names. The name is the input's path inside its folder (a file's own name): outputs and references
    are found under it."""
    from diffuse_cli import io

    if inputs == ["-"]:
        return [("-", output, "-")]
    if "-" in inputs:
        raise InputError("'-' (stdin) cannot be mixed with other inputs")
    pairs = io.expand_inputs_with_names(inputs)
    if not pairs:
        raise InputError(f"{' '.join(inputs)}: no image, audio or signal files found")
    if shard:
        pairs = shard_slice(pairs, shard)
    if len(pairs) == 1 and not any(io.is_collection(a) for a in inputs) and not Path(output).is_dir():
        return [(pairs[0][0], output, pairs[0][1])]
    jobs = []
    for src, rel in pairs:
        dst = Path(output) / rel
        if fmt:
            dst = dst.with_suffix("." + fmt.lower().lstrip("."))
        jobs.append((src, str(dst), rel))
    return jobs


def skipped_files(inputs: list[str]) -> list[str]:
    """Files that folders or patterns among ``inputs`` hold but the expansion leaves out: not an image,
    audio or signal file by their extension (hidden files and folders are left out on purpose, unnamed)."""
    import glob

    from diffuse_cli import io

    skipped: list[str] = []
    for arg in inputs:
        if arg == "-" or not io.is_collection(arg):
            continue
        if os.path.isdir(arg):
            for root, dirs, names in os.walk(arg):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                skipped.extend(os.path.join(root, n) for n in sorted(names)
                               if not n.startswith(".") and io.format_from_extension(n) is None)
        else:
            skipped.extend(m for m in sorted(glob.glob(arg, recursive=True))
                           if os.path.isfile(m) and io.format_from_extension(m) is None)
    return list(dict.fromkeys(skipped))


def show_skipped(skipped: list[str], quiet: bool, shown: int = 3) -> None:
    """One note line: how many files were skipped and the first few names."""
    if not skipped:
        return
    names = ", ".join(skipped[:shown]) + (f" and {len(skipped) - shown} more" if len(skipped) > shown else "")
    what = "file that is not an image, audio or signal file" if len(skipped) == 1 else \
        "files that are not image, audio or signal files"
    info(f"diffuse: note: skipped {len(skipped)} {what} (by extension): {names}", quiet)


def shard_slice(items: list, shard: str) -> list:
    """The I-th (1-based) of N disjoint, deterministic slices of a sorted list: items[I-1::N]."""
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard {shard!r}: use I/N with 1 <= I <= N, e.g. 2/4") from None
    if not 1 <= i <= n:
        raise InputError(f"--shard {shard!r}: use I/N with 1 <= I <= N, e.g. 2/4")
    return list(items)[i - 1 :: n]


def denoise_one(src: str, dst: str, rel: str, run: DenoiseRun, progress: FileProgress) -> dict:
    """Load, clean and save one file (``rel``: its name inside its folder); the record ``--json`` prints for
    it. A reference that is missing or does not match fails the file before anything is written."""
    from diffuse_cli import denoising, io
    from diffuse_cli import models as bundled

    started = time.perf_counter()
    if dst != "-":
        Path(dst).parent.mkdir(parents=True, exist_ok=True)  # an output folder mirrors the input tree
        io.check_output_path(dst, [src], run.force)
    media = io.load(src, axis=run.axis)
    clean = load_reference(run.reference, src, rel, media, run.axis) if run.reference else None
    model_path = run.model_dir or bundled.choose(media)
    choice_notes = [] if run.model_dir else [bundled.why(media, model_path)]
    if model_path not in run.models:
        with native_stderr_silenced():
            from diffuse_cli import litert_model  # TensorFlow only without model.tflite or with --runtime

            run.models[model_path] = litert_model.open_model(model_path, run.runtime)
    model, runtime_note = run.models[model_path]
    denoising.check_model_fits(model.config, media, model_path)
    progress.start_file(src)
    on_harm = on_harm_for(run.on_harm, media.domain)
    # Without --reference the noisy samples are not needed afterwards: clean them in place (one full-size
    # array for a large photo or recording instead of two; the fallback keeps them to clean again).
    cleaned, details = denoising.denoise_media(media, model, replace(run.options, on_harm=on_harm),
                                               progress=progress.tiles, in_place=not run.reference)
    check = details.get("check") or {}
    if on_harm == "error" and not check.get("passed", True):
        raise InputError(f"{'<stdin>' if src == '-' else src}: {check['message']}; nothing written "
                         "(--on-harm error)")
    save_notes: list[str] = []
    written = io.save(cleaned, dst, fmt=run.fmt, bit_depth=run.bit_depth, force=run.force, inputs=[src],
                      notes=save_notes)
    record = {"input": src, "output": dst, "format": written, "model": str(model_path), **details,
              "seconds": round(time.perf_counter() - started, 3)}
    record["runtime"] = model.runtime
    runtime_notes = [runtime_note] if runtime_note else []
    record["notes"] = list(dict.fromkeys([*media.notes, *choice_notes, *runtime_notes, *details.get("notes", []),
                                          *save_notes]))
    if clean is not None:
        record["metrics"] = score(media, cleaned, clean)
    return record


def on_harm_for(choice: str, domain: str) -> str:
    """``--on-harm`` for one file: ``auto`` falls back for signals (small, and their input is kept anyway)
    and warns for images and audio (cleaned in place to bound memory)."""
    if choice != "auto":
        return choice
    return "fallback" if domain == "signal" else "warn"


def reference_for(reference: str, rel: str) -> str:
    """A reference file, or the file at the input's relative path ``rel`` inside a reference folder
    (``in/a/x.png`` -> ``ref/a/x.png``, as outputs mirror it)."""
    ref = Path(reference)
    return str(ref / rel) if ref.is_dir() else reference


def load_reference(reference: str, src: str, rel: str, media, axis: int | None):
    """The clean version of ``src``, read like the input (``--axis``), with the input's shape."""
    from diffuse_cli import io

    path = reference_for(reference, rel)
    if Path(reference).is_dir() and (src == "-" or not os.path.isfile(path)):
        name = "<stdin>" if src == "-" else src
        raise InputError(f"{name}: no reference {path} (a reference folder holds each input's clean version "
                         "under the same relative path); add it, or give --reference FILE")
    clean = io.load(path, axis=axis)
    if clean.samples.shape != media.samples.shape:
        raise InputError(f"{path}: reference shape {clean.samples.shape} differs from the input's "
                         f"{media.samples.shape}; give the clean version of the same file")
    return clean


def score(noisy, cleaned, clean) -> dict:
    """PSNR/SSIM (images, 0..max scale) or SNR/SI-SDR (audio, signals) of input and output against the
    clean Media.

    Signals are scored as ``noise`` measures them: time/index columns (:func:`noise.axis_columns`) are not
    measurements and are left out, and the SNR's signal power is taken around each column's mean (a DC
    level, 20 degrees C of a temperature log, is not signal). SSIM is NaN for an image under 11x11.
    """
    import numpy as np

    from diffuse_cli import metrics
    from diffuse_cli.noise import axis_columns, quantize_like_file

    ref = np.asarray(clean.samples, dtype=np.float64)
    before = np.asarray(noisy.samples, dtype=np.float64)
    after = quantize_like_file(cleaned, cleaned.samples)
    if noisy.domain == "image":
        return {"psnr_in": metrics.psnr(ref, before, 2.0), "psnr_out": metrics.psnr(ref, after, 2.0),
                "ssim_in": metrics.ssim(ref, before, 2.0), "ssim_out": metrics.ssim(ref, after, 2.0)}
    signal = noisy.domain == "signal"
    skipped = axis_columns(ref) if signal else []
    measured = [c for c in range(ref.shape[-1]) if c not in skipped] or list(range(ref.shape[-1]))
    ref, before, after = ref[..., measured], before[..., measured], after[..., measured]
    result = {"snr_in": metrics.snr_db(ref, before, zero_mean=signal),
              "snr_out": metrics.snr_db(ref, after, zero_mean=signal),
              "si_sdr_in": metrics.si_sdr(ref, before), "si_sdr_out": metrics.si_sdr(ref, after)}
    if skipped:
        result["unscored_columns"] = skipped
    return result


def report_file(record: dict, quiet: bool) -> None:
    sigma = record.get("sigma")
    how = "estimated" if record.get("sigma_estimated") else "given"
    line = f"{record['input']} -> {record['output']}: sigma {sigma:.4g} ({how}), {record.get('method')}"
    if record.get("noise_kind_used") == "poisson":
        how = "estimated" if record.get("gain_estimated") else "given"
        line = (f"{record['input']} -> {record['output']}: Poisson gain {record['gain']:.4g} ({how}), read noise "
                f"{sigma:.4g}, {record.get('method')}")
    elif record.get("noise_kind_used") and record.get("noise_kind_used") != "gaussian":
        line += f", {record['noise_kind_used']} ({record.get('impulses', 0)} impulses filled)"
    m = record.get("metrics")
    if m and "psnr_in" in m:
        line += (f"; PSNR {metric_text(m['psnr_in'])} -> {metric_text(m['psnr_out'])} dB, "
                 f"SSIM {metric_text(m['ssim_in'], '.3f')} -> {metric_text(m['ssim_out'], '.3f')}")
    elif m:
        line += (f"; SNR {metric_text(m['snr_in'])} -> {metric_text(m['snr_out'])} dB, "
                 f"SI-SDR {metric_text(m['si_sdr_in'])} -> {metric_text(m['si_sdr_out'])} dB")
    info(line, quiet)
    show_notes(record["input"], record.get("notes") or [], quiet)
    check = record.get("check") or {}
    if not check.get("passed", True):
        info(f"{'<stdin>' if record['input'] == '-' else record['input']}: warning: {one_line(check['message'])}",
             quiet)


def metric_text(value: float | None, spec: str = ".2f") -> str:
    """A metric for the text report: 'n/a' where it could not be computed (SSIM of a tiny image)."""
    import math

    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def show_models(entries: list[dict], json_out: bool) -> None:
    if json_out:
        emit_json(entries, data_on_stdout=False)
        return
    from rich.table import Table

    table = Table(title="bundled models")
    for col in ("name", "domain", "channels", "arch", "sample rate", "trained on"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["name"], e["domain"], str(e["channels"]), e["arch"], str(e.get("sample_rate") or "-"),
                      e.get("trained_on", ""))
    Console().print(table)


class FileProgress:
    """A Rich progress bar over files and, within a file, tiles; silent when stderr is not a terminal."""

    def __init__(self, total_files: int, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 console=console, transient=True, disable=quiet or not console.is_terminal)
        self.files = self.progress.add_task("files", total=total_files)
        self.tile_task = None

    def __enter__(self) -> FileProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_file(self, name: str) -> None:
        if self.tile_task is not None:
            self.progress.remove_task(self.tile_task)
        self.tile_task = self.progress.add_task(Path(name).name[:30], total=None)

    def tiles(self, done: int, total: int) -> None:
        if self.tile_task is not None:
            self.progress.update(self.tile_task, completed=done, total=total)

    def file_done(self) -> None:
        self.progress.advance(self.files)


# --------------------------------------------------------------------------- main


class Terminated(BaseException):
    """SIGTERM outside training: unwinds the stack (so an atomic write removes its temporary file) and
    passes every ``except Exception`` on the way, then main() exits 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every failure into one line on stderr and an exit code."""
    import signal

    with contextlib.suppress(ValueError):  # not the main thread (embedded use): keep the default
        signal.signal(signal.SIGTERM, _on_sigterm)  # training installs its own handler while it runs
    try:  # typer >= 0.20 vendors click; older releases use click itself
        from typer._click.exceptions import ClickException
        from typer.exceptions import Abort
    except ImportError:  # pragma: no cover
        from click.exceptions import Abort, ClickException

    if not os.environ.get("DIFFUSE_DEBUG"):
        # stderr carries our own lines only: a library's stray warning is not a message for the user
        # (io turns the ones that matter into notes; modelstore records its own).
        warnings.filterwarnings("ignore")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="diffuse", standalone_mode=False)
        if code == 130:  # Typer turns Ctrl-C into Exit(130) before it reaches the except below
            console.print("diffuse: interrupted", markup=False)
    except ClickException as err:
        console.print(f"diffuse: error: {one_line(err.format_message())}", markup=False)
        code = 2 if err.exit_code in (1, 2) else err.exit_code
    except InputError as err:
        console.print(f"diffuse: error: {one_line(str(err))}", markup=False)
        code = 2
    except Interrupted as err:
        console.print(f"diffuse: interrupted (signal {err.signum}); state saved", markup=False)
        code = 128 + err.signum
    except Terminated:
        console.print("diffuse: interrupted (SIGTERM)", markup=False)
        code = 143
    except (KeyboardInterrupt, Abort):
        console.print("diffuse: interrupted", markup=False)
        code = 130
    except BrokenPipeError:
        code = 1
    except Exception as err:  # anything else is our bug: one line, the traceback only on request
        if os.environ.get("DIFFUSE_DEBUG"):
            raise
        console.print(f"diffuse: internal error: {type(err).__name__}: {one_line(str(err))} "
                      "(set DIFFUSE_DEBUG=1 for a traceback)", markup=False)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


if __name__ == "__main__":
    main()
