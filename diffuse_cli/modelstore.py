"""A model on disk: ``config.json`` (validated schema), ``weights.weights.h5`` (EMA weights) and a
``saved_model/`` export that plain TensorFlow loads (signature ``x_t``, ``t`` -> ``eps``).

Nothing is built before the config validates; weights are plain HDF5 arrays loaded into a network
rebuilt from registered layers (no Lambda, no pickle: the safe-mode guarantees by construction).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from diffuse_cli import networks  # noqa: E402
from diffuse_cli.errors import InputError  # noqa: E402
from diffuse_cli.schedule import SCHEDULES, Schedule  # noqa: E402

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.weights.h5"
SAVED_MODEL_DIR = "saved_model"
CHECKPOINT_DIR = "checkpoints"
DOMAINS = ("image", "audio", "signal")

# key: (types, required). ``None`` in types means JSON null is allowed.
_SCHEMA: dict[str, tuple[tuple, bool]] = {
    "format_version": ((int,), True),
    "domain": ((str,), True),
    "channels": ((int,), True),
    "arch": ((str,), True),
    "widths": ((list,), False),
    "blocks": ((int,), False),
    "dense_hidden": ((int,), False),
    "length": ((int, type(None)), False),
    "embedding": ((str,), False),
    "embedding_dim": ((int,), False),
    "activation_noise": ((int, float), False),
    "kernel_size": ((int, type(None)), False),
    "schedule": ((str,), False),
    "timesteps": ((int,), False),
    "patch_size": ((int, type(None)), False),
    "sample_rate": ((int, type(None)), False),
    "training": ((dict,), False),
}


def default_config(domain: str, channels: int, **overrides) -> dict:
    """A complete config for ``domain`` with ``channels``; keyword overrides replace any key."""
    cfg = {
        "format_version": FORMAT_VERSION,
        "domain": domain,
        "channels": int(channels),
        "arch": "unet",
        "widths": [32, 64, 128],
        "blocks": 1,
        "dense_hidden": 128,
        "length": None,
        "embedding": "sinusoidal",
        "embedding_dim": 64,
        "activation_noise": 0.0,
        "kernel_size": None,
        "schedule": "linear",
        "timesteps": 1000,
        "patch_size": 64 if domain == "image" else 1024,
        "sample_rate": None,
        "training": {},
    }
    cfg.update(overrides)
    if "widths" in overrides:
        cfg["widths"] = [int(w) for w in overrides["widths"]]
    return cfg


def validate_config(cfg: dict, source: str) -> dict:
    """Check types, ranges and names; fill defaults for optional keys. Returns a new, complete dict.

    Any problem raises InputError naming ``source`` (the config file) and the offending key.
    """

    def bad(key: str, problem: str) -> InputError:
        return InputError(f"{source}: '{key}' {problem}; fix the config or retrain the model")

    if not isinstance(cfg, dict):
        raise InputError(f"{source}: config must be a JSON object; retrain or re-export the model")
    for key, (types, required) in _SCHEMA.items():
        if key not in cfg:
            if required:
                raise bad(key, "is missing")
            continue
        value = cfg[key]
        # bool is an int subclass in Python; never accept it where a number is meant.
        if isinstance(value, bool) or not isinstance(value, types):
            names = "/".join("null" if t is type(None) else t.__name__ for t in types)
            raise bad(key, f"must be {names}, got {type(value).__name__}")
    if cfg["format_version"] != FORMAT_VERSION:
        raise InputError(
            f"{source}: format_version {cfg['format_version']} is not supported (this diffuse reads "
            f"{FORMAT_VERSION}); retrain the model or upgrade diffuse"
        )
    domain = cfg["domain"]
    if domain not in DOMAINS:
        raise bad("domain", f"is {domain!r}; use one of {', '.join(DOMAINS)}")
    out = default_config(domain, cfg["channels"])
    out.update({k: v for k, v in cfg.items() if k in _SCHEMA})
    unknown = sorted(set(cfg) - set(_SCHEMA))
    if unknown:
        raise bad(unknown[0], "is not a known key")

    if not 1 <= out["channels"] <= 4:
        raise bad("channels", f"is {out['channels']}; must be 1..4")
    if out["arch"] not in networks.ARCHS:
        raise bad("arch", f"is {out['arch']!r}; use one of {', '.join(networks.ARCHS)}")
    if out["embedding"] not in networks.EMBEDDINGS:
        raise bad("embedding", f"is {out['embedding']!r}; use one of {', '.join(networks.EMBEDDINGS)}")
    if out["schedule"] not in SCHEDULES:
        raise bad("schedule", f"is {out['schedule']!r}; use one of {', '.join(SCHEDULES)}")
    if not 2 <= out["timesteps"] <= 100_000:
        raise bad("timesteps", "must be 2..100000")
    if not 1 <= out["embedding_dim"] <= 4096:
        raise bad("embedding_dim", "must be 1..4096")
    noise = float(out["activation_noise"])
    if not (math.isfinite(noise) and 0.0 <= noise <= 10.0):
        raise bad("activation_noise", "must be a number in [0, 10]")
    out["activation_noise"] = noise
    if out["kernel_size"] is not None and not 1 <= out["kernel_size"] <= 63:
        raise bad("kernel_size", "must be 1..63 or null")
    if out["sample_rate"] is not None and out["sample_rate"] <= 0:
        raise bad("sample_rate", "must be positive or null")
    if out["patch_size"] is not None and out["patch_size"] < 1:
        raise bad("patch_size", "must be positive or null")
    if out["arch"] == "unet":
        widths = out["widths"]
        if not widths or len(widths) > 8 or not all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in widths
        ):
            raise bad("widths", "must be a list of 1..8 integers in 1..4096")
        if not 1 <= out["blocks"] <= 16:
            raise bad("blocks", "must be 1..16")
    else:
        if domain == "image":
            raise bad("arch", "'dense' is for fixed-length 1D signals, not images; use 'unet'")
        if out["length"] is None or not 1 <= out["length"] <= 1_000_000:
            raise bad("length", "must be a positive integer for arch 'dense'")
        if not 1 <= out["dense_hidden"] <= 1_000_000:
            raise bad("dense_hidden", "must be 1..1000000")
    return out


def load_config(model_dir: str) -> dict:
    """Read and validate ``model_dir/config.json``; InputError when the directory or file is unusable."""
    if not os.path.isdir(model_dir):
        raise InputError(f"{model_dir}: model directory not found; pass a folder made by `diffuse train`")
    path = os.path.join(model_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing; this is not a model directory (train one with `diffuse train`)")
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable config ({exc.__class__.__name__}); retrain or re-export") from None
    return validate_config(cfg, path)


def write_config(model_dir: str, config: dict) -> None:
    """Atomically write ``config.json`` (temp file + rename)."""
    os.makedirs(model_dir, exist_ok=True)
    _atomic_write(os.path.join(model_dir, CONFIG_NAME), (json.dumps(config, indent=2) + "\n").encode())


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model(model_dir: str, config: dict, model: keras.Model) -> None:
    """Write config.json and weights.weights.h5 atomically, then the SavedModel export.

    ``model`` holds the weights inference should use (training passes the EMA copy).
    """
    config = validate_config(config, os.path.join(model_dir, CONFIG_NAME))
    os.makedirs(model_dir, exist_ok=True)
    tmp_weights = os.path.join(model_dir, ".tmp-weights.weights.h5")
    model.save_weights(tmp_weights, overwrite=True)
    os.replace(tmp_weights, os.path.join(model_dir, WEIGHTS_NAME))
    write_config(model_dir, config)
    export_saved_model(model, config, os.path.join(model_dir, SAVED_MODEL_DIR))


def _signature(config: dict) -> list[tf.TensorSpec]:
    """Serving input specs: ``x_t`` (None, *spatial, C) with None spatial dims (dense: fixed length)."""
    channels = int(config["channels"])
    if config["arch"] == "dense":
        spatial: tuple = (int(config["length"]),)
    else:
        spatial = (None,) * networks.network_rank(config)
    return [
        tf.TensorSpec((None, *spatial, channels), tf.float32, name="x_t"),
        tf.TensorSpec((None,), tf.float32, name="t"),
    ]


class _Serving(tf.Module):
    """What the SavedModel holds: the network's variables and one ``serve(x_t, t) -> {eps}`` function."""

    def __init__(self, model: keras.Model, config: dict) -> None:
        super().__init__(name="diffuse_denoiser")
        self.model = model
        # Track the tf.Variables explicitly so the export never depends on Keras' own tracking.
        self.weights = [v.value if hasattr(v, "value") else v for v in model.weights]
        self.serve = tf.function(self._serve, input_signature=_signature(config))

    def _serve(self, x_t: tf.Tensor, t: tf.Tensor) -> dict:
        return {"eps": self.model([x_t, t], training=False)}


def export_saved_model(model: keras.Model, config: dict, path: str) -> None:
    """``tf.saved_model.save`` with a ``serving_default`` signature (x_t, t) -> {"eps": ...}.

    Written to a temporary sibling folder and swapped in, so a failed export never leaves half a model.
    """
    module = _Serving(model, config)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-saved_model-")
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LoadedModel:
    """A model ready for inference: config, schedule and a compiled ``eps(x_t, t)``.

    ``eps`` is one ``tf.function`` whose input signature leaves the batch and spatial dims None, so
    tiles and chunks of any size and any number reuse a single trace: a folder of differently sized
    files traces once per model (``trace_count`` counts traces, for the tests). On CPU a new shape
    costs nothing extra in graph mode (measured: first call at a new tile size within 10-30 ms of the
    second), which is why denoise picks tile sizes for the least padded area instead of padding them
    to a few fixed shapes.

    ``jit_compile=True`` compiles with XLA instead; off by default: on CPU it was no faster than the
    graph (within 5 %, one-step 512x512 image and 16384-sample audio chunks, bench/README.md) and XLA
    compiles once per distinct input shape (10-20 s each on 2 cores).
    """

    def __init__(self, config: dict, model: keras.Model, jit_compile: bool = False) -> None:
        self.config = config
        self.model = model
        self.schedule = Schedule.create(config["schedule"], config["timesteps"])
        self.domain = config["domain"]
        self.channels = int(config["channels"])
        self.rank = networks.network_rank(config)
        self.size_multiple = networks.size_multiple(config)
        self.trace_count = 0
        self.jit_compile = bool(jit_compile)
        if self.jit_compile:  # XLA needs static shapes: it retraces (and compiles) per input shape
            self._eps_fn = tf.function(self._eps_graph, jit_compile=True, reduce_retracing=False)
        else:
            self._eps_fn = tf.function(self._eps_graph, input_signature=_signature(config))
        self._encoding = model.get_layer("step_encoding")

    def _eps_graph(self, x_t: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        self.trace_count += 1  # Python side effect: runs once per trace, not per call
        return tf.cast(self.model([x_t, t], training=False), tf.float32)

    def eps(self, x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Predicted noise for a batch: ``x_t`` (B, *spatial, C), ``t`` (B,) real steps; float32 out."""
        x_t = np.asarray(x_t, dtype=np.float32)
        t = np.broadcast_to(np.asarray(t, dtype=np.float32).reshape(-1), (x_t.shape[0],))
        return self._eps_fn(tf.convert_to_tensor(x_t), tf.convert_to_tensor(t)).numpy()

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
    least = networks.parameter_lower_bound(config)
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
