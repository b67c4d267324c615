"""Convert a model's Keras network to ``model.tflite``, the file :mod:`diffuse_cli.litert_model` runs.

What the file holds (builtin LiteRT ops only, float32, no TensorFlow kernels at run time):

- signature ``eps``: ``x_t`` (B, *spatial, C) and ``enc`` (B, dim), the step encoding, to ``eps``; batch
  and spatial dims dynamic (dense networks: fixed length), so one file serves every tile size and batch;
- signature ``step_encoding`` for a learned table: ``t`` (B,) -> ``enc``, the interpolation of
  ``LearnedStepEncoding`` itself, in float32 as in Keras;
- metadata ``diffuse_cli``: the network keys of ``config.json``, the SHA-256 of the weights file the
  network was loaded from and a digest of the file's own buffers, so a stale, foreign or damaged file
  is refused at load.

The sinusoidal encoding is left outside: its layer computes in float64 (angles reach T radians, where
float32 loses ~1e-4), which builtin ops lack; the runtime computes it with the same float64 formula.

Every conversion is checked before it is written: the LiteRT output must match the Keras network's on
a probe batch within 1e-4 (max |a - b| / max |b|).

``python -m diffuse_cli.tflite_export DIR [DIR ...]`` rebuilds the file of model directories from their
config.json and weights.weights.h5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from diffuse_cli import io, networks  # noqa: E402
from diffuse_cli.config import WEIGHTS_NAME, ModelConfig  # noqa: E402
from diffuse_cli.errors import InputError  # noqa: E402
from diffuse_cli.litert_model import (  # noqa: E402
    ENCODING_SIGNATURE,
    EPS_SIGNATURE,
    METADATA_FORMAT,
    METADATA_NAME,
    TFLITE_IDENTIFIER,
    content_digest,
    file_sha256,
    network_signature,
    tflite_path,
)

TOLERANCE = 1e-4  # max |litert - keras| / max |keras| on the probe batch


class NearestUpsample(layers.Layer):
    """Nearest-neighbour x2 upsampling as one resize op: ``out[i] = in[i // 2]`` along each spatial axis.

    The same values as ``UpSampling1D/2D(size=2)``. Keras implements those with ``tf.repeat``, whose
    result loses its static channel count in the converter's shape inference, and LiteRT's convolution
    needs it. A 1D input is resized as a (length, 1) image.
    """

    def __init__(self, rank: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rank = int(rank)

    def call(self, x):
        shape = tf.shape(x)
        if self.rank == 2:
            return tf.image.resize(x, 2 * shape[1:3], method="nearest")
        y = tf.image.resize(tf.expand_dims(x, 2), tf.stack([2 * shape[1], 1]), method="nearest")
        return tf.squeeze(y, 2)


@contextlib.contextmanager
def _float32_policy() -> Iterator[None]:
    """Build layers in float32 whatever the global Keras policy is (training may have set mixed_float16)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """fd 2 to /dev/null while LiteRT starts: its C++ log line ("Created TensorFlow Lite XNNPACK delegate")
    is not ours, and stderr carries only our messages. Python errors raised inside still print."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _upsample_swap(layer: layers.Layer) -> layers.Layer:
    """clone_model hook: the U-Net's upsampling layers become :class:`NearestUpsample`, others are shared."""
    if isinstance(layer, (layers.UpSampling1D, layers.UpSampling2D)):
        size = layer.size if isinstance(layer.size, (tuple, list)) else (layer.size,)
        interpolation = getattr(layer, "interpolation", "nearest")
        if any(int(s) != 2 for s in size) or interpolation != "nearest":
            raise ValueError(f"{layer.name}: only nearest x2 upsampling converts (got {size}, {interpolation})")
        return NearestUpsample(len(size) if isinstance(layer, layers.UpSampling2D) else 1, name=layer.name)
    return layer


def export_network(model: keras.Model, config: ModelConfig) -> tuple[keras.Model, keras.Model, layers.Layer]:
    """(float32 copy of ``model``, its body ``body([x_t, enc]) -> eps``, its step encoding layer)."""
    with _float32_policy():
        net = networks.build_network(config, mixed_precision=False)
        net.set_weights(model.get_weights())  # variables are float32 under either policy
        encoding = net.get_layer("step_encoding")
        body = keras.Model([net.get_layer("x_t").output, encoding.output], net.output, name="body")
        body = keras.models.clone_model(body, clone_function=_upsample_swap)
    return net, body, encoding


class _Export(tf.Module):
    """What the converter reads: the body's variables and the signature functions."""

    def __init__(self, body: keras.Model, encoding: layers.Layer, config: ModelConfig) -> None:
        super().__init__(name="diffuse_litert")
        self.body = body
        self.encoding = encoding
        # Track the tf.Variables explicitly so the export never depends on Keras' own tracking.
        self.weights = [v.value if hasattr(v, "value") else v for v in [*body.weights, *encoding.weights]]
        spatial = (config.length,) if config.arch == "dense" else (None,) * config.rank
        self.eps = tf.function(
            self._eps,
            input_signature=[tf.TensorSpec((None, *spatial, config.channels), tf.float32, name="x_t"),
                             tf.TensorSpec((None, config.embedding_dim), tf.float32, name="enc")],
        )
        self.step_encoding = tf.function(
            self._step_encoding, input_signature=[tf.TensorSpec((None,), tf.float32, name="t")]
        )

    def _eps(self, x_t: tf.Tensor, enc: tf.Tensor) -> dict:
        return {"eps": tf.cast(self.body([x_t, enc], training=False), tf.float32)}

    def _step_encoding(self, t: tf.Tensor) -> dict:
        return {"enc": tf.cast(self.encoding(t), tf.float32)}


def convert(model: keras.Model, config: ModelConfig, weights_sha256: str | None = None) -> bytes:
    """The .tflite bytes of ``model`` (built from ``config``, weights loaded), checked against Keras.

    ``weights_sha256``: the digest of the weights file ``model`` was loaded from or saved to, recorded in
    the metadata (None: no weights check at load).
    """
    net, body, encoding = export_network(model, config)
    module = _Export(body, encoding, config)
    signatures = {EPS_SIGNATURE: module.eps.get_concrete_function()}
    if config.embedding == "learned":
        signatures[ENCODING_SIGNATURE] = module.step_encoding.get_concrete_function()
    with tempfile.TemporaryDirectory(prefix="diffuse-tflite-") as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no TensorFlow kernels
        data = converter.convert()
    meta = {"format": METADATA_FORMAT, "network": network_signature(config), "weights_sha256": weights_sha256,
            "content_sha256": content_digest(data)}
    data = with_metadata(data, METADATA_NAME, json.dumps(meta, sort_keys=True).encode())
    verify(data, net, config)
    return data


def with_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """``data`` (a .tflite flatbuffer) with metadata entry ``name`` set to ``value``.

    A new entry's buffer goes last; an existing entry keeps its buffer, so the other buffers (and
    :func:`litert_model.content_digest`) are unchanged either way.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    existing = [m for m in model.metadata if m.name.decode() == name]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def probe_batch(config: ModelConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small deterministic (x_t, t) batch of two: unit-variance noise at a valid size, fractional steps."""
    multiple = config.size_multiple
    if config.arch == "dense":
        spatial: tuple[int, ...] = (multiple,)
    else:
        side = multiple * -(-(48 if config.rank == 2 else 1024) // multiple)  # a multiple near 48 / 1024
        spatial = (side,) * config.rank
    rng = np.random.default_rng(seed)
    x_t = rng.standard_normal((2, *spatial, config.channels)).astype(np.float32)
    t = np.array([0.37 * config.timesteps, 0.05 * config.timesteps + 0.5], dtype=np.float32)
    return x_t, t


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|`` (0 when both are all zero)."""
    diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(b) else 0.0
    scale = float(np.max(np.abs(b))) if np.size(b) else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def verify(data: bytes, model: keras.Model, config: ModelConfig) -> None:
    """Raise RuntimeError unless the converted network matches ``model`` (float32) on :func:`probe_batch`."""
    from ai_edge_litert.interpreter import Interpreter

    from diffuse_cli.litert_model import LiteRTModel

    x_t, t = probe_batch(config)
    expected = np.asarray(model([tf.constant(x_t), tf.constant(t)], training=False), dtype=np.float32)
    with _native_stderr_quiet():
        lite = LiteRTModel(config, Interpreter(model_content=data, num_threads=1), "<converted>")
        got = lite.network(x_t, t)
    error = relative_error(got, expected)
    if not error <= TOLERANCE:
        raise RuntimeError(f"converted network differs from Keras by {error:.2e} (relative); not written")


def write(model_dir: str, model: keras.Model, config: ModelConfig) -> str:
    """Convert and atomically write ``model_dir/model.tflite``; call after the weights file is saved."""
    weights = os.path.join(model_dir, WEIGHTS_NAME)
    digest = file_sha256(weights) if os.path.isfile(weights) else None
    data = convert(model, config, weights_sha256=digest)
    path = tflite_path(model_dir)
    io.atomic_write_bytes(path, data, force=True)
    return path


def rebuild(model_dir: str) -> str:
    """Rebuild ``model_dir/model.tflite`` from its config.json and weights.weights.h5 (validated as usual)."""
    from diffuse_cli import modelstore

    loaded = modelstore.load_model(model_dir, mixed_precision=False)
    return write(model_dir, loaded.model, loaded.config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffuse_cli.tflite_export",
        description="Rebuild model.tflite (the LiteRT network denoise runs) of model directories.",
    )
    parser.add_argument("model_dirs", nargs="+", metavar="DIR", help="folders with config.json and weights")
    args = parser.parse_args(argv)
    status = 0
    for model_dir in args.model_dirs:
        try:
            path = rebuild(model_dir)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"{path}: {os.path.getsize(path):,} bytes", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
