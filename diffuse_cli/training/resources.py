"""What a run may use: the tf.distribute strategy, float16 compute, XLA, and the memory that sets
``--batch-size auto``. Every ``auto`` follows one probe, ``modelstore.gpu_visible``.
"""

from __future__ import annotations

import os
import subprocess

import keras
import tensorflow as tf

from diffuse_cli import modelstore
from diffuse_cli.config import ModelConfig
from diffuse_cli.enums import Precision, Strategy, Xla

# --batch-size auto: the largest power of two up to this whose activations fit in half the free memory.
AUTO_BATCH_CAP = 128
AUTO_MEMORY_SHARE = 0.5


def use_mixed_precision(precision: str) -> bool:
    """``auto``: float16 compute where a GPU is visible (tensor cores; on CPU float16 is slower), else float32."""
    return modelstore.gpu_visible() if precision == Precision.auto else precision == Precision.mixed


def use_xla(mode: str) -> bool:
    """``auto``: XLA where a GPU is visible; on CPU it was measured no faster (bench/README.md)."""
    return modelstore.gpu_visible() if mode == Xla.auto else mode == Xla.on


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: no distribution; mirrored: all GPUs (else all logical CPUs); multi-worker: TF_CONFIG."""
    if name == Strategy.mirrored:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == Strategy.multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the model folder: always, except on the non-chief workers of a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    spec = resolver.cluster_spec().as_dict()
    if "chief" in spec:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


# ------------------------------------------------------------------------------------ --batch-size auto
def forward_bytes_per_patch(model: keras.Model, config: ModelConfig) -> int:
    """Bytes of every tensor the training-mode forward pass of one patch produces (batch 1, traced, not run).

    An upper bound on what backprop keeps alive per patch (bench/README.md compares it with the measured
    growth of peak memory per patch).
    """
    shape = [1, *(config.patch_size if d is None else d for d in model.inputs[0].shape[1:])]

    def forward(x_t: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        return model([x_t, t], training=True)

    graph = tf.function(forward).get_concrete_function(
        tf.TensorSpec(shape, tf.float32), tf.TensorSpec([1], tf.float32)
    ).graph
    total = 0
    for op in graph.get_operations():
        for out in op.outputs:  # per-example tensors only (weights and scalars do not grow with the batch)
            if out.shape.rank and out.shape.is_fully_defined() and out.shape[0] == 1 and out.dtype.size:
                total += out.shape.num_elements() * out.dtype.size
    return total


def gpu_free_bytes() -> int | None:
    """Free memory of the fullest GPU (nvidia-smi), or None when it cannot be read."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return int(min(float(v) for v in out.split()) * 2**20)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def host_available_bytes() -> int:
    """The host's MemAvailable (/proc/meminfo, else sysconf), lowered to what the cgroup limit leaves."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(free), 0)


def available_memory() -> tuple[int, str]:
    """Free memory for training and where it was read: the GPU's when TensorFlow sees one, else the host's."""
    if modelstore.gpu_visible():
        free = gpu_free_bytes()
        if free is not None:
            return free, "free on the GPU"
    return host_available_bytes(), "available"


def auto_batch_size(per_patch: int, available: int, replicas: int = 1, cap: int = AUTO_BATCH_CAP) -> int:
    """``2^k * replicas``, the largest with ``2^k * replicas <= cap`` and ``batch * per_patch <= share * available``
    (at least ``replicas``: one patch per replica always runs)."""
    budget = AUTO_MEMORY_SHARE * available
    batch = replicas
    while batch * 2 <= max(cap, replicas) and batch * 2 * per_patch <= budget:
        batch *= 2
    return batch


def choose_batch_size(model: keras.Model, config: ModelConfig, replicas: int) -> tuple[int, str]:
    """``--batch-size auto``: the batch and the note that tells the user how it was chosen."""
    per_patch = forward_bytes_per_patch(model, config)
    available, where = available_memory()
    batch = auto_batch_size(per_patch, available, replicas)
    note = (f"--batch-size auto: {batch} (at most {per_patch / 2**20:.0f} MiB of activations per patch, "
            f"{available / 2**30:.1f} GiB {where})")
    return batch, note
