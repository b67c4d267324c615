"""LiteRT batches split across single-threaded interpreters (one per core) give the same numbers."""

from __future__ import annotations

import numpy as np

from diffuse_cli import litert_model
from diffuse_cli import models as bundled

BUNDLED = {e["name"]: e["path"] for e in bundled.list_bundled()}


def _batch(n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x_t = rng.standard_normal((n, length, 1)).astype(np.float32)
    x_t *= np.linspace(0.5, 3.0, n, dtype=np.float32)[:, None, None]  # items differ in scale and step
    return x_t, rng.uniform(1.0, 900.0, n).astype(np.float32)


def test_split_batches_match_item_by_item_runs():
    split = litert_model.open_for_inference(BUNDLED["signal"], num_threads=2)
    single = litert_model.open_for_inference(BUNDLED["signal"], num_threads=1)
    for n in (5, 2, 4, 1):  # odd and even splits, then one item (the many-threaded interpreter)
        x_t, t = _batch(n, 1024)
        got = split.eps(x_t, t)
        expected = np.concatenate([single.eps(x_t[i : i + 1], t[i : i + 1]) for i in range(n)])
        assert got.shape == x_t.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    assert len(split._part_runners) == 2  # the batches of two and more did run split
    assert single._part_runners == []  # one core: never split


def test_a_model_without_its_file_bytes_never_splits():
    """What tflite_export builds to check a conversion: one interpreter, no extra ones."""
    from ai_edge_litert.interpreter import Interpreter

    lite = litert_model.open_for_inference(BUNDLED["signal"], num_threads=1)
    with open(litert_model.tflite_path(BUNDLED["signal"]), "rb") as fh:
        interpreter = Interpreter(model_content=fh.read(), num_threads=1)
    plain = litert_model.LiteRTModel(lite.config, interpreter, "<converted>")
    x_t, t = _batch(3, 512)
    np.testing.assert_array_equal(plain.eps(x_t, t), lite.eps(x_t, t))
    assert plain._part_runners == []
