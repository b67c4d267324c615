"""A model on disk: ``config.json`` (validated schema), ``weights.weights.h5`` (EMA weights) and a
``saved_model/`` export that plain TensorFlow loads (signature ``x_t``, ``t`` -> ``eps``).

Nothing is built before the config validates; weights are plain HDF5 arrays loaded into a network
rebuilt from registered layers (no Lambda, no pickle: the safe-mode guarantees by construction).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from diffuse_cli import io, networks  # noqa: E402
from diffuse_cli.config import (  # noqa: E402, F401  (re-exported: the model store's names)
    CHECKPOINT_DIR,
    CONFIG_NAME,
    SAVED_MODEL_DIR,
    WEIGHTS_NAME,
    ModelConfig,
    default_config,
    load_config,
)
from diffuse_cli.denoising.options import InferenceModel  # noqa: E402
from diffuse_cli.errors import InputError  # noqa: E402
from diffuse_cli.schedule import Schedule  # noqa: E402

validate_config = ModelConfig.from_dict  # (raw dict, source) -> ModelConfig


def write_config(model_dir: str, config: ModelConfig) -> None:
    """Atomically write ``config.json`` (temp file + rename)."""
    os.makedirs(model_dir, exist_ok=True)
    data = (json.dumps(config.to_dict(), indent=2) + "\n").encode()
    io.atomic_write_bytes(os.path.join(model_dir, CONFIG_NAME), data, force=True)


def save_model(model_dir: str, config: ModelConfig, model: keras.Model, tflite: bool = True) -> None:
    """Write config.json and weights.weights.h5 atomically, then the SavedModel export and ``model.tflite``.

    ``model`` holds the weights inference should use (training passes the EMA copy). The config is
    validated again as it will be read back, so a model directory is never written with a bad one.
    ``tflite=False`` skips the LiteRT file (and removes a stale one: it would not match the new weights).
    """
    config = validate_config(config.to_dict(), os.path.join(model_dir, CONFIG_NAME))
    os.makedirs(model_dir, exist_ok=True)
    tmp_weights = os.path.join(model_dir, ".tmp-weights.weights.h5")
    model.save_weights(tmp_weights, overwrite=True)
    os.replace(tmp_weights, os.path.join(model_dir, WEIGHTS_NAME))
    write_config(model_dir, config)
    export_saved_model(model, config, os.path.join(model_dir, SAVED_MODEL_DIR))
    from diffuse_cli import litert_model, tflite_export

    if tflite:
        tflite_export.write(model_dir, model, config)  # after the weights: it records their digest
    elif os.path.exists(litert_model.tflite_path(model_dir)):
        os.remove(litert_model.tflite_path(model_dir))


def _signature(config: ModelConfig) -> list[tf.TensorSpec]:
    """Serving input specs: ``x_t`` (None, *spatial, C) with None spatial dims (dense: fixed length)."""
    spatial = (config.length,) if config.arch == "dense" else (None,) * config.rank
    return [
        tf.TensorSpec((None, *spatial, config.channels), tf.float32, name="x_t"),
        tf.TensorSpec((None,), tf.float32, name="t"),
    ]


class _Serving(tf.Module):
    """What the SavedModel holds: the network's variables and one ``serve(x_t, t) -> {eps}`` function."""

    def __init__(self, model: keras.Model, config: ModelConfig) -> None:
        super().__init__(name="diffuse_denoiser")
        self.model = model
        self.config = config
        # Track the tf.Variables explicitly so the export never depends on Keras' own tracking.
        self.weights = [v.value if hasattr(v, "value") else v for v in model.weights]
        self.serve = tf.function(self._serve, input_signature=_signature(config))

    def _serve(self, x_t: tf.Tensor, t: tf.Tensor) -> dict:
        """eps for any objective: the network output turned into eps inside the graph, so a plain TensorFlow
        user of the export needs nothing from this package."""
        if self.config.objective == "eps":
            return {"eps": self.model([x_t, t], training=False)}
        # Imported here: the training package imports this module.
        from diffuse_cli.training import tf_objectives
        from diffuse_cli.training.tf_schedule import TfSchedule

        objective, sd = self.config.objective, self.config.sigma_data
        ab = TfSchedule(Schedule.create(self.config.schedule, self.config.timesteps)).alpha_bar_at(t)
        out = tf.cast(self.model([tf_objectives.network_input(x_t, ab, objective, sd), t], training=False), tf.float32)
        return {"eps": tf_objectives.eps_from_output(out, x_t, ab, objective, sd)}


def export_saved_model(model: keras.Model, config: ModelConfig, path: str) -> None:
    """``tf.saved_model.save`` with a ``serving_default`` signature (x_t, t) -> {"eps": ...}.

    Written to a temporary sibling folder and swapped in, so a failed export never leaves half a model.
    """
    module = _Serving(model, config)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-saved_model-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the folder gets the usual mode like every other
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LoadedModel(InferenceModel):
    """A model ready for inference: config, schedule and a compiled ``eps(x_t, t)``.

    ``eps`` is one ``tf.function`` whose input signature leaves the batch and spatial dims None, so
    tiles and chunks of any size and any number reuse a single trace: a folder of differently sized
    files traces once per model (``trace_count`` counts traces, for the tests). On CPU a new shape
    costs little in graph mode, which is why denoise picks tile sizes for the least padded area instead
    of padding them to a few fixed shapes (bench/README.md has the measurements).

    ``jit_compile=True`` compiles with XLA instead; off by default: on CPU it was no faster than the
    graph, and XLA compiles once per distinct input shape.
    """

    runtime = "tensorflow"

    def __init__(self, config: ModelConfig, model: keras.Model, jit_compile: bool = False) -> None:
        super().__init__(config)
        self.model = model
        self.trace_count = 0
        self.jit_compile = bool(jit_compile)
        if self.jit_compile:  # XLA needs static shapes: it retraces (and compiles) per input shape
            self._network_fn = tf.function(self._network_graph, jit_compile=True, reduce_retracing=False)
        else:
            self._network_fn = tf.function(self._network_graph, input_signature=_signature(config))
        self._encoding = model.get_layer("step_encoding")

    def _network_graph(self, x_t: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        self.trace_count += 1  # Python side effect: runs once per trace, not per call
        return tf.cast(self.model([x_t, t], training=False), tf.float32)

    def network(self, fed: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The raw network output for its input ``fed`` at steps ``t``, float32 (one graph trace for any shape)."""
        fed = np.asarray(fed, dtype=np.float32)
        t = np.broadcast_to(np.asarray(t, dtype=np.float32).reshape(-1), (fed.shape[0],))
        return self._network_fn(tf.convert_to_tensor(fed), tf.convert_to_tensor(t)).numpy()

    def step_encodings(self, steps: np.ndarray) -> np.ndarray:
        """The encodings the network feeds its blocks: learned table rows (interpolated) or sinusoidal."""
        steps = np.asarray(steps, dtype=np.float32).reshape(-1)
        return np.asarray(self._encoding(tf.convert_to_tensor(steps)))


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU: what every ``auto`` setting (mixed precision, XLA, batch memory) follows."""
    return bool(tf.config.list_physical_devices("GPU"))


def load_model(model_dir: str, jit_compile: bool = False, mixed_precision: bool | None = None) -> LoadedModel:
    """Validate config.json, rebuild the network and load ``weights.weights.h5`` (InputError on any fault).

    ``jit_compile``: see :class:`LoadedModel` (off by default: no faster on CPU). ``mixed_precision``:
    float16 compute (:func:`networks.build_network`); None = where TensorFlow sees a GPU."""
    config = load_config(model_dir)
    weights = os.path.join(model_dir, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise InputError(
            f"{weights}: missing; finish training or run `diffuse train --export-only --out {model_dir}`"
        )
    if mixed_precision is None:
        mixed_precision = gpu_visible()
    # Before building: a config that describes a far larger network than the file holds (corrupt or edited)
    # would otherwise allocate it first, and a huge one would exhaust memory instead of failing cleanly.
    try:
        stored, stored_bytes = _stored_arrays(weights)
    except Exception as exc:  # h5py raises many types for truncated or foreign files
        reason = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
        raise InputError(
            f"{weights}: cannot load weights ({reason}); the file is corrupt or not a weights file"
        ) from exc
    if stored_bytes > os.path.getsize(weights):
        raise InputError(f"{weights}: declares {stored_bytes:,} bytes of weights but the file is smaller; "
                         "it is corrupt")
    least = config.parameter_lower_bound
    if 4 * least > stored_bytes:
        raise InputError(f"{weights}: config.json describes at least {least:,} weights, the file holds "
                         f"{stored_bytes // 4:,}; the file does not match config.json")
    model = networks.build_network(config, mixed_precision=mixed_precision)
    problem = None
    try:
        if stored != len(model.weights):
            problem = f"it holds {stored} arrays, the network has {len(model.weights)}"
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.load_weights(weights)
            # Keras only warns when parts of the file do not fit; a half-loaded model must not run.
            skipped = [w for w in caught if "Skipping" in str(w.message) or "mismatch" in str(w.message)]
            if skipped:
                problem = str(skipped[0].message).splitlines()[0][:120]
    except Exception as exc:  # h5py/Keras raise many types for truncated or mismatched files
        problem = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
    if problem:
        raise InputError(
            f"{weights}: cannot load weights ({problem}); the file is corrupt or does not match config.json"
        )
    return LoadedModel(config, model, jit_compile=jit_compile)


def _stored_arrays(path: str) -> tuple[int, int]:
    """(number of arrays, their bytes) in a Keras ``.weights.h5`` file, from the HDF5 metadata alone (plain
    datasets, nothing executable, no data read)."""
    count, nbytes = 0, 0

    def visit(name: str, obj: object) -> None:
        nonlocal count, nbytes
        if isinstance(obj, h5py.Dataset):
            count += 1
            nbytes += int(obj.size) * int(obj.dtype.itemsize)

    with h5py.File(path, "r") as fh:
        fh.visititems(visit)
    return count, nbytes
