"""Where the time goes: TensorFlow profiler trace of one denoise call and one training step, per op type.

Usage: .venv/bin/python scripts/profile_ops.py [--side 512] [--steps 5]

Traces (tf.profiler) one one-step denoise of a ``side`` x ``side`` gray image with the bundled photo model
and ``--steps`` training steps of the same network (batch 16, 96x96 patches), then sums the op events of the
trace by op type (Conv2D, Mean, ...) and prints the share of each. The raw trace stays in the log folder
for TensorBoard's profile plugin.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from diffuse_cli import denoising, models, modelstore, training  # noqa: E402
from diffuse_cli.io import Media  # noqa: E402


def op_shares(logdir: str) -> tuple[list[tuple[str, float, float]], float]:
    """(op type, milliseconds, share) from the newest trace in ``logdir``, largest first; and the total ms."""
    path = sorted(glob.glob(os.path.join(logdir, "plugins/profile/*/*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as fh:
        space.ParseFromString(fh.read())
    per_type: dict[str, float] = collections.defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads; ops are "scope/name:Type"
                continue
            for ev in line.events:
                name = names.get(ev.metadata_id, "?")
                if "::" in name or ":" not in name:  # executor bookkeeping wrapped around the ops
                    continue
                per_type[name.rsplit(":", 1)[-1]] += ev.duration_ps / 1e9
    total = sum(per_type.values())
    rows = sorted(((k, v, v / total if total else 0.0) for k, v in per_type.items()), key=lambda r: -r[1])
    return rows, total


def print_rows(title: str, rows: list[tuple[str, float, float]], total: float, top: int = 12) -> None:
    print(f"\n{title}: {total:.0f} ms of op time (all threads)")
    for name, ms, share in rows[:top]:
        print(f"  {name:28s} {ms:9.1f} ms  {100 * share:5.1f} %")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--logdir", default=None)
    args = p.parse_args()
    logdir = args.logdir or tempfile.mkdtemp(prefix="diffuse-profile-")

    model = modelstore.load_model(str(models.MODELS_DIR / "photo-gray"))
    rng = np.random.default_rng(0)
    shape = (args.side, args.side, 1)
    noisy = np.clip(rng.uniform(-0.6, 0.6, shape) + 0.2 * rng.standard_normal(shape), -1, 1).astype(np.float32)
    media = Media(domain="image", samples=noisy, fmt="png", scale=127.5, mode="L", bit_depth=8)
    opts = denoising.DenoiseOptions(sigma=25.0)
    denoising.denoise_media(media, model, opts)  # trace outside the profile
    tf.profiler.experimental.start(os.path.join(logdir, "denoise"))
    t0 = time.perf_counter()
    denoising.denoise_media(media, model, opts)
    wall = time.perf_counter() - t0
    tf.profiler.experimental.stop()
    rows, total = op_shares(os.path.join(logdir, "denoise"))
    print_rows(f"denoise one-step {args.side}x{args.side} gray ({wall:.2f} s wall)", rows, total)

    out = os.path.join(logdir, "train-model")
    opts_t = training.TrainOptions(
        data=[os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_data/photo-gray.png")],
        out=out, widths=(16, 32, 64, 128), batch_size=16, patch_size=96, max_steps=4 + args.steps,
        steps_per_epoch=10**6, checkpoint_every=10**9, log_every=1, seed=0, val_count=4,
    )
    state = {"n": 0}

    def progress(ev: dict) -> None:  # start the trace after 4 warm-up steps, stop it at the end
        if ev.get("event") == "step":
            state["n"] += 1
            if state["n"] == 4:
                tf.profiler.experimental.start(os.path.join(logdir, "train"))
                state["t0"] = time.perf_counter()
            elif state["n"] == 4 + args.steps:
                state["wall"] = time.perf_counter() - state["t0"]
                tf.profiler.experimental.stop()

    training.train(opts_t, progress)
    rows, total = op_shares(os.path.join(logdir, "train"))
    print_rows(f"training, {args.steps} steps of 16 x 96x96 ({state['wall'] / args.steps * 1000:.0f} ms/step wall)",
               rows, total)
    shutil.rmtree(out, ignore_errors=True)
    print(f"\ntrace: {logdir} (tensorboard --logdir {logdir}, Profile tab)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
