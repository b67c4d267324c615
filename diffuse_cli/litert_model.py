"""Inference without TensorFlow: a model directory's ``model.tflite`` run by the LiteRT interpreter.

:func:`open_for_inference` returns a :class:`LiteRTModel` (the interface denoise uses: ``eps``,
``step_encodings``, ``schedule``, ``config``, ``rank``, ...) when the directory has a ``model.tflite``, else
None (the caller falls back to :mod:`diffuse_cli.modelstore`). Nothing here imports TensorFlow or Keras:
the config is read by :mod:`diffuse_cli.config`, the file by ``ai_edge_litert`` (XNNPACK CPU kernels).

The file (written by :mod:`diffuse_cli.tflite_export`) holds the network from the step encoding on:
signature ``eps`` maps ``x_t`` (B, *spatial, C) and ``enc`` (B, dim) to ``eps`` (B, *spatial, C), batch and
spatial dims dynamic. The sinusoidal encoding is computed here by :func:`encoding.sinusoidal_step_encoding`
(float64, as the Keras layer computes it; LiteRT's builtin ops have no float64 sin/cos); a learned table is
read inside the file through a second signature, ``step_encoding`` (``t`` (B,) -> ``enc``).

Before use the file is checked like the weights file: size, the TFLite identifier, a ``diffuse_cli``
metadata entry that must name the same network as ``config.json``, the SHA-256 of the file's own
weights and of the ``weights.weights.h5`` it was converted from, the signatures' names, shapes and
dtypes, and one small run that must give finite numbers. Any fault is an InputError naming the file
and how to rebuild it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os

import numpy as np

from diffuse_cli.config import WEIGHTS_NAME, ModelConfig, load_config
from diffuse_cli.denoising.options import InferenceModel
from diffuse_cli.encoding import sinusoidal_step_encoding
from diffuse_cli.errors import InputError

TFLITE_NAME = "model.tflite"
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite
METADATA_NAME = "diffuse_cli"  # the metadata entry tflite_export writes
METADATA_FORMAT = 1
EPS_SIGNATURE = "eps"
ENCODING_SIGNATURE = "step_encoding"
# The config.json keys that define the network a .tflite holds (schedule, patch size and training
# settings do not change it).
NETWORK_KEYS = ("domain", "channels", "arch", "widths", "blocks", "dense_hidden", "length", "embedding",
                "embedding_dim", "kernel_size", "timesteps")
# The converted file holds the same float32 weights as the .weights.h5 plus the graph (a few hundred kB).
_SIZE_SLACK = 16 * 2**20


def tflite_path(model_dir: str) -> str:
    """Where a model directory keeps its converted network."""
    return os.path.join(model_dir, TFLITE_NAME)


def network_signature(config: ModelConfig) -> dict:
    """The network-defining part of ``config`` as JSON values (what the .tflite metadata records)."""
    values = config.to_dict()
    return json.loads(json.dumps({k: values[k] for k in NETWORK_KEYS}))


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def rebuild_hint(model_dir: str) -> str:
    return f"rebuild it with `python -m diffuse_cli.tflite_export {model_dir}` (or delete it to use the weights)"


def _metadata_entry(model: object) -> tuple[int, bytes] | None:
    """(buffer index, bytes) of the ``diffuse_cli`` metadata entry of a parsed flatbuffer, or None."""
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode("utf-8", "replace") == METADATA_NAME:
            index = entry.Buffer()
            if not 0 <= index < model.BuffersLength():
                raise ValueError("metadata points past the buffers")
            raw = model.Buffers(index).DataAsNumpy()
            if isinstance(raw, int):  # flatbuffers returns 0 for an absent vector
                raise ValueError("empty metadata buffer")
            return index, raw.tobytes()
    return None


def read_metadata(data: bytes) -> tuple[dict | None, str]:
    """(the ``diffuse_cli`` metadata entry of a .tflite as a dict or None, :func:`content_digest` of it).

    Raises ValueError (or the flatbuffer reader's errors) for an unreadable buffer or entry.
    """
    from ai_edge_litert import schema_py_generated as schema  # the TFLite flatbuffer schema

    model = schema.Model.GetRootAs(data, 0)
    found = _metadata_entry(model)
    digest = _buffers_digest(model, skip=found[0] if found else None)
    if found is None:
        return None, digest
    meta = json.loads(found[1].decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    return meta, digest


def content_digest(data: bytes) -> str:
    """SHA-256 over the .tflite's buffers (its weights and constants) except the ``diffuse_cli`` metadata.

    Recorded in that metadata at export, so a damaged weight is caught before use.
    """
    return read_metadata(data)[1]


def _buffers_digest(model: object, skip: int | None) -> str:
    digest = hashlib.sha256()
    for i in range(model.BuffersLength()):
        if i == skip:
            continue
        raw = model.Buffers(i).DataAsNumpy()
        block = b"" if isinstance(raw, int) else raw.tobytes()
        digest.update(len(block).to_bytes(8, "little"))
        digest.update(block)
    return digest.hexdigest()


class LiteRTModel(InferenceModel):
    """A model ready for inference on the LiteRT interpreter; same interface as ``modelstore.LoadedModel``.

    ``network`` feeds the interpreter's ``eps`` signature. The signature runner resizes the inputs to each
    call's shape; the interpreter keeps its allocation while the shape stays the same (tiles of one file
    share a shape), and re-plans its memory only when it changes.

    With ``model_content`` and ``num_threads`` > 1, a batch of two or more is split into ``num_threads``
    parts, each run at the same time on its own single-threaded interpreter (made on first use). The
    interpreters release the GIL, so every core runs the whole graph, also the ops XNNPACK leaves to the
    one-threaded builtin kernels, and no thread waits on another inside a call. A batch item's output does
    not depend on the batch it is in, so the split changes no number. A single tile (one large image tile)
    runs on ``interpreter`` with all its threads.
    """

    runtime = "litert"

    def __init__(self, config: ModelConfig, interpreter: object, path: str, model_content: bytes | None = None,
                 num_threads: int = 1) -> None:
        super().__init__(config)
        self.path = path
        self._interpreter = interpreter
        self._eps = interpreter.get_signature_runner(EPS_SIGNATURE)
        learned = config.embedding == "learned"
        self._encode = interpreter.get_signature_runner(ENCODING_SIGNATURE) if learned else None
        self._content = model_content
        self._parts = max(1, int(num_threads)) if model_content is not None else 1
        self._part_runners: list = []  # one single-threaded eps runner per part, made on first use
        self._pool = None  # runs parts 1.. while the calling thread runs part 0

    def network(self, fed: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The raw network output for its input ``fed`` at steps ``t`` (what the Keras model returns)."""
        fed = np.ascontiguousarray(fed, dtype=np.float32)
        t = np.broadcast_to(np.asarray(t, dtype=np.float32).reshape(-1), (fed.shape[0],))
        enc = self.step_encodings(t)
        parts = min(self._parts, fed.shape[0])
        if parts < 2:
            return self._eps(x_t=fed, enc=enc)["eps"]
        runners = self._runners(parts)
        bounds = [fed.shape[0] * k // parts for k in range(parts + 1)]
        pieces = [(runners[k], fed[a:b], enc[a:b]) for k, (a, b) in enumerate(itertools.pairwise(bounds))]
        later = [self._pool.submit(_run_eps, *piece) for piece in pieces[1:]]
        first = _run_eps(*pieces[0])
        return np.concatenate([first, *(f.result() for f in later)])

    def _runners(self, parts: int) -> list:
        """At least ``parts`` single-threaded eps runners (each on its own interpreter) and the thread pool."""
        from concurrent.futures import ThreadPoolExecutor

        from ai_edge_litert.interpreter import Interpreter

        while len(self._part_runners) < parts:
            interpreter = Interpreter(model_content=self._content, num_threads=1)
            self._part_runners.append(interpreter.get_signature_runner(EPS_SIGNATURE))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._parts - 1, thread_name_prefix="litert")
        return self._part_runners

    def step_encodings(self, steps: np.ndarray) -> np.ndarray:
        """The encodings the network feeds its blocks: learned table rows (interpolated) or sinusoidal.

        Sinusoidal: the seed's formula in float64, rounded to float32, as ``SinusoidalStepEncoding`` does.
        """
        steps = np.ascontiguousarray(np.asarray(steps, dtype=np.float32).reshape(-1))
        if self._encode is None:
            return sinusoidal_step_encoding(steps, self.config.embedding_dim).astype(np.float32)
        return self._encode(t=steps)["enc"]


def _run_eps(runner: object, x_t: np.ndarray, enc: np.ndarray) -> np.ndarray:
    """One eps signature call (a new output array each time)."""
    return runner(x_t=np.ascontiguousarray(x_t), enc=np.ascontiguousarray(enc))["eps"]


def open_for_inference(model_dir: str, num_threads: int | None = None) -> LiteRTModel | None:
    """The LiteRT model of ``model_dir`` when it has a ``model.tflite``, else None (use the weights).

    ``config.json`` is validated first (InputError as for any model); then the .tflite is checked
    (:func:`check_tflite`). ``num_threads``: interpreter threads, default the cores available.
    """
    config = load_config(model_dir)
    path = tflite_path(model_dir)
    if not os.path.isfile(path):
        return None
    return load(model_dir, config, num_threads=num_threads)


def open_model(model_dir: str, runtime: str = "auto") -> tuple[object, str | None]:
    """The model ``denoise`` and ``encode-steps`` run, and a note when it is not the fast path.

    ``runtime``: ``auto`` (LiteRT when the directory has a ``model.tflite``, else TensorFlow), ``litert``
    (the .tflite is required), ``tensorflow`` (the Keras weights; e.g. to use a GPU). TensorFlow is only
    imported on the TensorFlow path.
    """
    if runtime != "tensorflow":
        model = open_for_inference(model_dir)
        if model is not None:
            return model, None
        if runtime == "litert":
            raise InputError(f"{tflite_path(model_dir)}: missing; {rebuild_hint(model_dir)}")
    from diffuse_cli import modelstore  # imports TensorFlow

    note = None
    if runtime == "auto":
        note = (f"no {TFLITE_NAME} in {model_dir}: running on TensorFlow (slower start); "
                f"build it with `python -m diffuse_cli.tflite_export {model_dir}`")
    return modelstore.load_model(model_dir), note


def load(model_dir: str, config: ModelConfig, num_threads: int | None = None) -> LiteRTModel:
    """Check ``model_dir/model.tflite`` against ``config`` and build its interpreter (InputError on any fault)."""
    from ai_edge_litert.interpreter import Interpreter

    path = tflite_path(model_dir)
    data = check_tflite(path, config, os.path.join(model_dir, WEIGHTS_NAME))
    hint = rebuild_hint(model_dir)
    threads = int(num_threads or available_cores())
    try:
        interpreter = Interpreter(model_content=data, num_threads=threads)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a usable LiteRT model ({_first_line(exc)}); {hint}") from None
    problem = _signature_problem(interpreter, config)
    if problem:
        raise InputError(f"{path}: {problem}; {hint}")
    model = LiteRTModel(config, interpreter, path, model_content=data, num_threads=threads)
    _probe(model, path, hint)
    return model


def check_tflite(path: str, config: ModelConfig, weights_path: str | None) -> bytes:
    """Read and check a .tflite before the interpreter sees it; returns its bytes.

    Size (non-empty, at least the float32 weights ``config`` describes, at most twice the weights file
    plus 16 MiB), the ``TFL3`` identifier, and the ``diffuse_cli`` metadata: the same network keys as
    ``config``, the digest of the file's own buffers (:func:`content_digest`) and, when ``weights_path``
    exists, its SHA-256.
    """
    model_dir = os.path.dirname(path) or "."
    hint = rebuild_hint(model_dir)

    def bad(problem: str) -> InputError:
        return InputError(f"{path}: {problem}; {hint}")

    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise bad(f"unreadable ({exc.__class__.__name__})") from None
    if size == 0:
        raise bad("is empty")
    least = 4 * config.parameter_lower_bound
    if size < least:
        raise bad(f"holds {size:,} bytes, less than the {least:,} bytes of weights config.json describes")
    weights_exist = bool(weights_path) and os.path.isfile(weights_path)
    limit = 2 * os.path.getsize(weights_path) + _SIZE_SLACK if weights_exist else 2**31
    if size > limit:
        raise bad(f"is {size:,} bytes, far larger than the model's weights")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise bad(f"unreadable ({exc.__class__.__name__})") from None
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise bad("is not a LiteRT (.tflite) model file")
    try:
        meta, digest = read_metadata(data)
    except Exception as exc:  # the flatbuffer reader raises many types for damaged buffers
        raise bad(f"damaged model file ({_first_line(exc)})") from None
    if meta is None:
        raise bad(f"has no '{METADATA_NAME}' metadata; it was not written by diffuse")
    if meta.get("format") != METADATA_FORMAT:
        raise bad(f"metadata format {meta.get('format')!r} is not supported (this diffuse reads {METADATA_FORMAT})")
    expected = network_signature(config)
    stored = meta.get("network")
    if stored != expected:
        differing = sorted(k for k in expected if not isinstance(stored, dict) or stored.get(k) != expected[k])
        raise bad(f"holds another network than config.json describes (differs in {', '.join(differing) or 'keys'})")
    if meta.get("content_sha256") != digest:
        raise bad("is damaged (its weights do not match the checksum stored in it)")
    if weights_exist and meta.get("weights_sha256") != file_sha256(weights_path):
        raise bad(f"was converted from other weights than {os.path.basename(weights_path)}")
    return data


def _signature_problem(interpreter: object, config: ModelConfig) -> str | None:
    """What is wrong with the interpreter's signatures for ``config`` (None when they fit)."""
    signatures = interpreter.get_signature_list()
    wanted = {EPS_SIGNATURE: ({"x_t", "enc"}, {"eps"})}
    if config.embedding == "learned":
        wanted[ENCODING_SIGNATURE] = ({"t"}, {"enc"})
    for key, (inputs, outputs) in wanted.items():
        found = signatures.get(key)
        if found is None:
            return f"has no '{key}' signature"
        got_in, got_out = set(found.get("inputs", ())), set(found.get("outputs", ()))
        if got_in != inputs or got_out != outputs:
            return f"signature '{key}' takes {sorted(got_in)}, gives {sorted(got_out)}"
    spatial = [config.length] if config.arch == "dense" else [-1] * config.rank
    data_shape = [-1, *spatial, config.channels]
    enc_shape = [-1, config.embedding_dim]
    expected = {
        (EPS_SIGNATURE, "x_t"): data_shape, (EPS_SIGNATURE, "enc"): enc_shape, (EPS_SIGNATURE, "eps"): data_shape,
        (ENCODING_SIGNATURE, "t"): [-1], (ENCODING_SIGNATURE, "enc"): enc_shape,
    }
    for key in wanted:
        runner = interpreter.get_signature_runner(key)
        details = {**runner.get_input_details(), **runner.get_output_details()}
        for name, detail in details.items():
            shape = [int(d) for d in detail.get("shape_signature", detail["shape"])]
            if shape != expected[(key, name)] or np.dtype(detail["dtype"]) != np.float32:
                return (f"'{key}' tensor '{name}' is {np.dtype(detail['dtype']).name} {shape}, "
                        f"config.json needs float32 {expected[(key, name)]}")
    return None


def _probe(model: LiteRTModel, path: str, hint: str) -> None:
    """One run at the smallest valid size: the kernels must prepare and give finite numbers."""
    spatial = (model.size_multiple,) * (1 if model.config.arch == "dense" else model.rank)
    try:
        out = model.eps(np.zeros((1, *spatial, model.channels), np.float32), np.array([model.schedule.timesteps / 2]))
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: the model does not run ({_first_line(exc)}); {hint}") from None
    if out.shape != (1, *spatial, model.channels) or not np.all(np.isfinite(out)):
        raise InputError(f"{path}: the model gives non-finite or misshapen output; {hint}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else exc.__class__.__name__
