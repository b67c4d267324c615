"""Bad input: exit code 2, one line on stderr naming the file, no traceback, no output, input untouched.

The matrix covers `noise`, `denoise`, `train` and `encode-steps` with missing, empty, truncated and corrupt
files of every format, bad numbers, odd image modes, decompression bombs, broken or tampered model
directories and unsafe output paths. Inputs that a user would expect to work (palette, CMYK, LA, 16-bit,
float, animated GIF, multi-page TIFF, 1x1 and 1x100000 images) are checked to work, with a note on stderr
where they were converted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.helpers import diffuse, diffuse_in_process, midtone_gray

# ------------------------------------------------------------------------------------------------ inputs


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, depth: int, colour: int, rows: bytes | None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour, nor a header without the pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"")
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def flip_bytes(data: bytes, start: int, count: int = 64) -> bytes:
    body = bytearray(data)
    for i in range(start, min(len(body), start + count)):
        body[i] ^= 0x5A
    return bytes(body)


def make_inputs(d: Path) -> None:
    gray = midtone_gray(32, 32)
    rgb = np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)
    Image.fromarray(gray).save(d / "ok.png")
    good = (d / "ok.png").read_bytes()
    (d / "empty.png").write_bytes(b"")
    (d / "trunc.png").write_bytes(good[: len(good) // 2])
    (d / "corrupt.png").write_bytes(flip_bytes(good, 60, 200))  # IDAT bytes flipped: CRC and zlib fail
    (d / "garbage.png").write_bytes(b"this is not an image at all\x00\x01\x02" * 10)
    (d / "text.png").write_text("Hello, this is a text file\nwith a picture's name\n")
    (d / "folder").mkdir()

    Image.fromarray(rgb).save(d / "ok.jpg", quality=90)
    jpg = (d / "ok.jpg").read_bytes()
    (d / "empty.jpg").write_bytes(b"")
    (d / "trunc.jpg").write_bytes(jpg[: len(jpg) // 3])
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(0) + bytes(range(256)) * 8)

    Image.fromarray(gray).save(d / "ok.tif")
    tif = (d / "ok.tif").read_bytes()
    (d / "trunc.tif").write_bytes(tif[:40])
    (d / "corrupt.tif").write_bytes(b"II*\x00" + b"\xff\xff\xff\x7f" + bytes(range(256)) * 4)

    # an image header promising 30000 x 30000 pixels (Pillow's bomb error) or 10000 x 10000 (its warning)
    (d / "bomb.png").write_bytes(png_bytes(30000, 30000, 8, 0, None))
    (d / "bomb-warn.png").write_bytes(png_bytes(10000, 10000, 8, 0, None))

    sf.write(d / "ok.wav", 0.1 * np.sin(np.arange(4000) / 5.0), 16000, subtype="PCM_16")
    wav = (d / "ok.wav").read_bytes()
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "zero.wav", np.zeros((0,)), 16000)
    (d / "trunc.wav").write_bytes(wav[:30])
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x10\x00\x00WAVEfmt " + b"\xff" * 64)
    sf.write(d / "ok.flac", 0.1 * np.sin(np.arange(4000) / 5.0), 16000, format="FLAC")
    flac = (d / "ok.flac").read_bytes()
    (d / "trunc.flac").write_bytes(flac[:20])
    (d / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 2)
    sf.write(d / "zero.flac", np.zeros((0,)), 16000, format="FLAC")

    (d / "ok.csv").write_text("time,value\n0,1.5\n1,2.5\n2,3.5\n3,2.0\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "nan.csv").write_text("value\n1.0\nnan\n3.0\n")
    (d / "inf.csv").write_text("value\n1.0\n-inf\n3.0\n")
    (d / "text.csv").write_text("value\n1.0\nabc\n3.0\n")
    (d / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (d / "header.csv").write_text("time,value\n")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    np.save(d / "ok.npy", np.linspace(0, 1, 50))
    npy = (d / "ok.npy").read_bytes()
    (d / "empty.npy").write_bytes(b"")
    (d / "trunc.npy").write_bytes(npy[:100])
    (d / "corrupt.npy").write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': garbage, }        \n" + b"\x00" * 64)
    np.save(d / "nan.npy", np.array([1.0, np.nan, 2.0]))
    np.save(d / "inf.npy", np.array([1.0, np.inf, 2.0]))
    np.save(d / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(d / "cube.npy", np.zeros((4, 4, 4)))
    np.save(d / "strings.npy", np.array(["a", "b"]))

    # images a user expects to work (with a note where they are converted)
    Image.fromarray(rgb).quantize(16).save(d / "palette.png")
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(d / "palette-alpha.png", transparency=0)
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.tif")
    Image.merge("LA", [Image.fromarray(gray), Image.fromarray(255 - gray)]).save(d / "la.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(d / "gray16.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(d / "gray16.tif")
    Image.fromarray((gray / 255.0).astype(np.float32)).save(d / "float.tif")
    rows = b"".join(b"\x00" + (np.repeat(gray[y].astype(">u2") * 257, 3)).tobytes() for y in range(32))
    (d / "rgb16.png").write_bytes(png_bytes(32, 32, 16, 2, rows))
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (40, 200, 120)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:])
    pages = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 20)]
    pages[0].save(d / "pages.tif", save_all=True, append_images=pages[1:])
    Image.fromarray(np.full((1, 1), 99, np.uint8)).save(d / "dot.png")
    Image.fromarray(midtone_gray(1, 100000)).save(d / "wide.png")
    Image.fromarray(midtone_gray(100000, 1)).save(d / "tall.png")

    # training data folders
    (d / "train-bad").mkdir()
    Image.fromarray(gray).save(d / "train-bad" / "a.png")
    (d / "train-bad" / "b.png").write_bytes(good[: len(good) // 2])
    (d / "train-none").mkdir()
    (d / "train-none" / "notes.md").write_text("no data here\n")
    (d / "train-mixed").mkdir()
    Image.fromarray(gray).save(d / "train-mixed" / "a.png")
    shutil.copy(d / "ok.wav", d / "train-mixed" / "b.wav")
    (d / "train-nan").mkdir()
    (d / "train-nan" / "s.csv").write_text("value\n" + "1.0\n" * 300 + "nan\n")
    (d / "out-is-file").write_text("not a folder\n")


# ------------------------------------------------------------------------------------------------ models


def make_models(m: Path) -> None:
    """Model directories that are broken in one way each; the good ones hold untrained (random) weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from diffuse_cli import modelstore, networks

    def good(name: str, domain: str = "image", channels: int = 1) -> Path:
        extra = {} if domain == "image" else {"sample_rate": 16000, "patch_size": 256}
        cfg = modelstore.default_config(domain, channels, widths=[4, 8], embedding_dim=8, **extra)
        path = m / name
        path.mkdir()
        networks.build_network(cfg).save_weights(str(path / modelstore.WEIGHTS_NAME))
        (path / modelstore.CONFIG_NAME).write_text(json.dumps(cfg.to_dict()))
        return path

    with warnings.catch_warnings():  # Keras 3 on numpy 2: a DeprecationWarning per saved array
        warnings.simplefilter("ignore", DeprecationWarning)
        base = good("gray")
        good("rgb", channels=3)

    def variant(name: str, **changes) -> Path:
        path = m / name
        shutil.copytree(base, path)
        cfg = json.loads((base / modelstore.CONFIG_NAME).read_text())
        cfg.update(changes)
        (path / modelstore.CONFIG_NAME).write_text(json.dumps(cfg))
        return path

    (m / "empty").mkdir()
    variant("v2", format_version=2)
    variant("badtype", widths="4,8")
    variant("badarch", arch="transformer")
    variant("huge-steps", timesteps=10**9)
    variant("huge-widths", widths=[4, 10**7])
    variant("zero-channels", channels=0)
    variant("unknown-key", shell="rm -rf /")
    notjson = variant("notjson")
    (notjson / modelstore.CONFIG_NAME).write_text("{'format_version': 1,")
    noweights = variant("noweights")
    (noweights / modelstore.WEIGHTS_NAME).unlink()
    corrupt = variant("corrupt-weights")
    (corrupt / modelstore.WEIGHTS_NAME).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00garbage" * 100)
    trunc = variant("trunc-weights")
    data = (base / modelstore.WEIGHTS_NAME).read_bytes()
    (trunc / modelstore.WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    # Valid configs of enormous networks over small weights: must fail before anything is allocated.
    variant("big-unet", widths=[4096] * 8)
    variant("big-dense", domain="signal", arch="dense", length=10**6, dense_hidden=10**6, sample_rate=None)
    other = variant("other-net", widths=[4, 8, 16])  # a valid config that does not match the weights
    assert other.is_dir()
    # model.tflite (what denoise runs on LiteRT), broken one way each next to good weights
    (variant("tflite-empty") / "model.tflite").write_bytes(b"")
    (variant("tflite-random") / "model.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    (variant("tflite-text") / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"not a flatbuffer" * 64)
    speech = Path(__file__).resolve().parent.parent / "diffuse_cli" / "models" / "speech-16k" / "model.tflite"
    shutil.copy(speech, variant("tflite-foreign") / "model.tflite")  # another model's network


# ------------------------------------------------------------------------------------------------ cases

# name: (arguments, text the error line must contain). {d}: inputs, {o}: an empty output folder,
# {m}: model folders (cases using it import TensorFlow: marked slow), {x}: a folder we cannot write to.
N = ["noise"]
G = ["--sigma", "5"]
CASES: dict[str, tuple[list[str], str]] = {
    # missing, empty, truncated and corrupt files of every format
    "missing file": (N + ["{d}/nope.png", "-o", "{o}/out.png"] + G, "nope.png"),
    "empty png": (N + ["{d}/empty.png", "-o", "{o}/out.png"] + G, "empty.png"),
    "truncated png": (N + ["{d}/trunc.png", "-o", "{o}/out.png"] + G, "trunc.png"),
    "corrupt png": (N + ["{d}/corrupt.png", "-o", "{o}/out.png"] + G, "corrupt.png"),
    "binary garbage with png name": (N + ["{d}/garbage.png", "-o", "{o}/out.png"] + G, "garbage.png"),
    "text with png name": (N + ["{d}/text.png", "-o", "{o}/out.png"] + G, "text.png"),
    "empty jpeg": (N + ["{d}/empty.jpg", "-o", "{o}/out.jpg"] + G, "empty.jpg"),
    "truncated jpeg": (N + ["{d}/trunc.jpg", "-o", "{o}/out.jpg"] + G, "trunc.jpg"),
    "corrupt jpeg": (N + ["{d}/corrupt.jpg", "-o", "{o}/out.jpg"] + G, "corrupt.jpg"),
    "truncated tiff": (N + ["{d}/trunc.tif", "-o", "{o}/out.tif"] + G, "trunc.tif"),
    "corrupt tiff": (N + ["{d}/corrupt.tif", "-o", "{o}/out.tif"] + G, "corrupt.tif"),
    "decompression bomb": (N + ["{d}/bomb.png", "-o", "{o}/out.png"] + G, "bomb.png"),
    "decompression bomb warning": (N + ["{d}/bomb-warn.png", "-o", "{o}/out.png"] + G, "bomb-warn.png"),
    "folder as file": (N + ["{d}/folder", "-o", "{o}/out.png"] + G, "folder"),
    "empty wav": (N + ["{d}/empty.wav", "-o", "{o}/out.wav", "--snr", "5"], "empty.wav"),
    "zero-length wav": (N + ["{d}/zero.wav", "-o", "{o}/out.wav", "--snr", "5"], "zero.wav"),
    "truncated wav": (N + ["{d}/trunc.wav", "-o", "{o}/out.wav", "--snr", "5"], "trunc.wav"),
    "corrupt wav": (N + ["{d}/corrupt.wav", "-o", "{o}/out.wav", "--snr", "5"], "corrupt.wav"),
    "zero-length flac": (N + ["{d}/zero.flac", "-o", "{o}/out.flac", "--snr", "5"], "zero.flac"),
    "truncated flac": (N + ["{d}/trunc.flac", "-o", "{o}/out.flac", "--snr", "5"], "trunc.flac"),
    "corrupt flac": (N + ["{d}/corrupt.flac", "-o", "{o}/out.flac", "--snr", "5"], "corrupt.flac"),
    "empty csv": (N + ["{d}/empty.csv", "-o", "{o}/out.csv"] + G, "empty.csv"),
    "nan in csv": (N + ["{d}/nan.csv", "-o", "{o}/out.csv"] + G, "nan.csv"),
    "inf in csv": (N + ["{d}/inf.csv", "-o", "{o}/out.csv"] + G, "inf.csv"),
    "text in csv": (N + ["{d}/text.csv", "-o", "{o}/out.csv"] + G, "text.csv"),
    "ragged csv": (N + ["{d}/ragged.csv", "-o", "{o}/out.csv"] + G, "ragged.csv"),
    "header-only csv": (N + ["{d}/header.csv", "-o", "{o}/out.csv"] + G, "header.csv"),
    "binary garbage with csv name": (N + ["{d}/binary.csv", "-o", "{o}/out.csv"] + G, "binary.csv"),
    "empty npy": (N + ["{d}/empty.npy", "-o", "{o}/out.npy"] + G, "empty.npy"),
    "truncated npy": (N + ["{d}/trunc.npy", "-o", "{o}/out.npy"] + G, "trunc.npy"),
    "corrupt npy header": (N + ["{d}/corrupt.npy", "-o", "{o}/out.npy"] + G, "corrupt.npy"),
    "nan in npy": (N + ["{d}/nan.npy", "-o", "{o}/out.npy"] + G, "nan.npy"),
    "inf in npy": (N + ["{d}/inf.npy", "-o", "{o}/out.npy"] + G, "inf.npy"),
    "pickled objects in npy": (N + ["{d}/object.npy", "-o", "{o}/out.npy"] + G, "object.npy"),
    "3-d npy": (N + ["{d}/cube.npy", "-o", "{o}/out.npy"] + G, "cube.npy"),
    "strings in npy": (N + ["{d}/strings.npy", "-o", "{o}/out.npy"] + G, "strings.npy"),
    "stdin empty": (N + ["-", "-o", "{o}/out.png"] + G, "<stdin>"),
    # output paths
    "output is input": (N + ["{d}/ok.png", "-o", "{d}/ok.png", "--force"] + G, "ok.png"),
    "output via another path to the input": (N + ["{d}/ok.png", "-o", "{d}/folder/../ok.png", "--force"] + G,
                                             "ok.png"),
    "missing output folder": (N + ["{d}/ok.png", "-o", "{o}/no/such/dir/out.png"] + G, "out.png"),
    "output folder is a file": (N + ["{d}/ok.png", "-o", "{d}/ok.csv/out.png"] + G, "out.png"),
    "unwritable output folder": (N + ["{d}/ok.png", "-o", "{x}/out.png"] + G, "out.png"),
    "output is a folder": (N + ["{d}/ok.png", "-o", "{d}/folder"] + G, "folder"),
    "unknown output format": (N + ["{d}/ok.png", "-o", "{o}/out.xyz"] + G, "out.xyz"),
    "read-only output format": (N + ["{d}/ok.png", "-o", "{o}/out.gif"] + G, "out.gif"),
    "image written as audio": (N + ["{d}/ok.png", "-o", "{o}/out.wav"] + G, "out.wav"),
    # options
    "negative sigma": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--sigma", "-3"], "--sigma"),
    "sigma and snr": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--sigma", "3", "--snr", "4"], "--sigma"),
    "unknown kind": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--kind", "pink"], "--kind"),
    "amount above 1": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--kind", "salt-pepper", "--amount", "1.5"],
                       "--amount"),
    "diffusion without step": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--kind", "diffusion"], "--step"),
    "step beyond T": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--kind", "diffusion", "--step", "2000"], "--step"),
    "not a number": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--sigma", "lots"], "--sigma"),
    "bad bit depth": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--bit-depth", "12"] + G, "--bit-depth"),
    "unknown option": (N + ["{d}/ok.png", "-o", "{o}/out.png", "--sigmaa", "5"], "--sigmaa"),
    # encode-steps
    "encode bad steps": (["encode-steps", "--steps", "5:1", "-o", "{o}/out.npy"], "--steps"),
    "encode bad dim": (["encode-steps", "--steps", "1,2", "--dim", "0", "-o", "{o}/out.npy"], "--dim"),
    "encode bad extension": (["encode-steps", "--steps", "1,2", "-o", "{o}/out.xyz"], "out.xyz"),
    "encode missing output folder": (["encode-steps", "--steps", "1,2", "-o", "{o}/no/out.npy"], "out.npy"),
    "encode missing model": (["encode-steps", "--steps", "1,2", "--model", "{d}/nomodel"], "nomodel"),
    "encode tampered model": (["encode-steps", "--steps", "1,2", "--model", "{m}/badarch"], "badarch"),
    # denoise: files and output paths (no model is loaded before these fail)
    "denoise stdin empty": (["denoise", "-", "-o", "{o}/out.png", "--model", "{d}/nomodel"], "<stdin>"),
    "denoise truncated png": (["denoise", "{d}/trunc.png", "-o", "{o}/out.png", "--model", "{d}/nomodel"],
                              "trunc.png"),
    "denoise output is input": (["denoise", "{d}/ok.png", "-o", "{d}/ok.png", "--force", "--model", "{d}/nomodel"],
                                "ok.png"),
    "denoise without output": (["denoise", "{d}/ok.png"], "-o"),
    # denoise: model directories
    "model missing": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{d}/nomodel"], "nomodel"),
    "model folder empty": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/empty"], "empty"),
    "model without weights": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/noweights"],
                              "noweights"),
    "model of another format_version": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/v2"],
                                        "v2"),
    "model config not json": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/notjson"],
                              "notjson"),
    "model config bad type": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/badtype"],
                              "badtype"),
    "model unknown arch": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/badarch"], "badarch"),
    "model absurd timesteps": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/huge-steps"],
                               "huge-steps"),
    "model absurd widths": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/huge-widths"],
                            "huge-widths"),
    "model zero channels": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/zero-channels"],
                            "zero-channels"),
    "model unknown config key": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/unknown-key"],
                                 "unknown-key"),
    "model corrupt weights": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/corrupt-weights"],
                              "corrupt-weights"),
    "model truncated weights": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/trunc-weights"],
                                "trunc-weights"),
    "model weights of another network": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/other-net"],
                                         "other-net"),
    "empty model.tflite": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/tflite-empty"],
                           "model.tflite"),
    "random model.tflite": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/tflite-random"],
                            "model.tflite"),
    "damaged model.tflite": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/tflite-text"],
                             "model.tflite"),
    "model.tflite of another model": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model",
                                       "{m}/tflite-foreign"], "model.tflite"),
    "model config of a huge U-Net": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/big-unet"],
                                     "big-unet"),
    "model config of a huge dense net": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/big-dense"],
                                         "big-dense"),
    "model of the wrong domain": (["denoise", "{d}/ok.wav", "-o", "{o}/out.wav", "--model", "{m}/gray"], "gray"),
    "model of the wrong channel count": (["denoise", "{d}/ok.png", "-o", "{o}/out.png", "--model", "{m}/rgb"],
                                         "rgb"),
    "denoise corrupt wav with a model": (["denoise", "{d}/corrupt.wav", "-o", "{o}/out.wav", "--model", "{m}/gray"],
                                         "corrupt.wav"),
    # train
    "train corrupt image among good": (["train", "{d}/train-bad", "--out", "{o}/model"], "b.png"),
    "train folder without data": (["train", "{d}/train-none", "--out", "{o}/model"], "train-none"),
    "train missing data": (["train", "{d}/nodata", "--out", "{o}/model"], "nodata"),
    "train mixed kinds": (["train", "{d}/train-mixed", "--out", "{o}/model"], "data"),
    "train nan in signal": (["train", "{d}/train-nan", "--out", "{o}/model"], "s.csv"),
    # images of at least half a patch are mirror-padded: 32x32 takes --patch-size 64, not 128
    "train patch larger than images": (["train", "{d}/ok.png", "--out", "{o}/model", "--patch-size", "128"],
                                       "--patch-size"),
    "train out is a file": (["train", "{d}/ok.png", "--out", "{d}/out-is-file", "--patch-size", "16"],
                            "out-is-file"),
    "train out inside a file": (["train", "{d}/ok.png", "--out", "{d}/out-is-file/model"], "out-is-file"),
    "train unwritable out": (["train", "{d}/ok.png", "--out", "{x}/model"], "model"),

    "train stdin": (["train", "-", "--out", "{o}/model"], "stdin"),
    "train bad widths": (["train", "{d}/ok.png", "--out", "{o}/model", "--widths", "8,x"], "--widths"),
}
# Cases whose command imports TensorFlow before it fails (seconds each on two cores): marked slow.
NO_TF_TRAIN = {"train bad widths", "train out is a file", "train out inside a file", "train unwritable out"}
TF_CASES = {name for name in CASES if name.startswith(("model ", "train ", "encode missing model",
                                                      "encode tampered model")) and name not in NO_TF_TRAIN}
# Cases run by the real program in a new process, one for each way a command fails (with and without loading
# TensorFlow or LiteRT first): there stderr also shows what a library prints while it is imported. The other
# cases call the same entry point in this process (tests/helpers.py).
SUBPROCESS_CASES = {"missing file", "stdin empty", "encode bad steps", "encode tampered model",
                    "denoise stdin empty", "model without weights", "empty model.tflite", "train missing data",
                    "train bad widths"}


def test_matrix_is_large_enough():
    assert len(CASES) >= 40
    assert SUBPROCESS_CASES <= set(CASES)
    commands = {args[0] for args, _ in CASES.values()}
    assert commands == {"noise", "denoise", "train", "encode-steps"}


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    make_inputs(d)
    return d


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    m = tmp_path_factory.mktemp("bad-models")
    make_models(m)
    return m


@pytest.fixture
def unwritable_dir(tmp_path) -> str:
    """A folder this process cannot create files in (root ignores permission bits: use sysfs then)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        yield str(locked)
        locked.chmod(0o755)
        return
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("running as root without /sys: no folder is unwritable")
    yield "/sys"


def tree(d: Path) -> dict[str, str]:
    """Every file and folder under ``d`` (hidden ones too) -> content hash ('dir' for folders)."""
    found = {}
    for root, dirs, files in os.walk(d):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), d)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, d)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _params():
    for name in sorted(CASES):
        marks = [pytest.mark.slow] if name in TF_CASES else []
        yield pytest.param(name, marks=marks, id=name.replace(" ", "-"))


@pytest.mark.parametrize("name", list(_params()))
def test_bad_input(name, inputs_dir, tmp_path, request):
    args, names = CASES[name]
    joined = " ".join(args)
    models = request.getfixturevalue("models_dir") if "{m}" in joined else None
    unwritable = request.getfixturevalue("unwritable_dir") if "{x}" in joined else None
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before_inputs = tree(inputs_dir)
    before_models = tree(models) if models else None
    argv = [a.format(d=inputs_dir, o=out_dir, m=models, x=unwritable) for a in args]
    r = (diffuse if name in SUBPROCESS_CASES else diffuse_in_process)(*argv)
    assert r.returncode == 2, (name, r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, (name, r.stderr)
    assert "Traceback" not in r.stderr and lines[0].startswith("diffuse: error:"), (name, r.stderr)
    assert names in lines[0], (name, names, lines[0])
    assert len(lines[0]) > len("diffuse: error: ") + len(names) + 10, (name, lines[0])
    assert r.stdout == ""
    assert tree(inputs_dir) == before_inputs, f"{name}: inputs changed or files written next to them"
    if models:
        assert tree(models) == before_models, f"{name}: model folders changed"
    assert tree(out_dir) == {}, f"{name}: output or temp files left: {tree(out_dir)}"


# ------------------------------------------------------------------------------------------------ inputs that work

# file: (output name, text a note on stderr must contain, or None when nothing is converted)
WORKS = {
    "palette.png": ("out.png", "palette"),
    "palette-alpha.png": ("out.png", "palette"),
    "cmyk.jpg": ("out.jpg", "CMYK"),
    "cmyk.tif": ("out.tif", "CMYK"),
    "la.png": ("out.png", None),
    "gray16.png": ("out.png", None),
    "gray16.tif": ("out.tif", None),
    "float.tif": ("out.tif", None),
    "rgb16.png": ("out.png", None),  # 16-bit colour is kept (diffuse_cli.png16): nothing to note
    "animated.gif": ("out.png", "first of 3 frames"),
    "pages.tif": ("out.tif", "first of 2 frames"),
    "dot.png": ("out.png", None),
    "wide.png": ("out.png", None),
    "tall.png": ("out.png", None),
}


@pytest.mark.parametrize("source", sorted(WORKS))
def test_unusual_images_work(source, inputs_dir, tmp_path):
    out_name, note = WORKS[source]
    before = tree(inputs_dir)
    out = tmp_path / out_name
    r = diffuse_in_process("noise", inputs_dir / source, "-o", out, "--sigma", "5", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    if note:
        assert note in r.stderr and source in r.stderr, r.stderr
    with Image.open(inputs_dir / source) as original, Image.open(out) as written:
        assert written.size == original.size
        written.load()
    assert tree(inputs_dir) == before
    assert sorted(os.listdir(tmp_path)) == [out_name]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["palette.png", "cmyk.jpg", "la.png", "gray16.png", "float.tif", "animated.gif",
                                    "dot.png", "wide.png"])
def test_unusual_images_denoise(source, inputs_dir, models_dir, tmp_path):
    model = models_dir / ("gray" if source in ("la.png", "gray16.png", "float.tif", "dot.png", "wide.png")
                          else "rgb")
    out = tmp_path / "out.png"
    r = diffuse_in_process("denoise", inputs_dir / source, "-o", out, "--model", model, "--sigma", "5")
    assert r.returncode == 0, r.stderr
    with Image.open(inputs_dir / source) as original, Image.open(out) as written:
        assert written.size == original.size


# ------------------------------------------------------------------------------------------------ the rest


def test_existing_output_needs_force(inputs_dir, tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    r = diffuse_in_process("noise", inputs_dir / "ok.png", "-o", out, "--sigma", "5")
    assert r.returncode == 2 and "--force" in r.stderr and "out.png" in r.stderr
    assert out.read_bytes() == b"keep me"
    assert diffuse_in_process("noise", inputs_dir / "ok.png", "-o", out, "--sigma", "5", "--force").returncode == 0
    assert Image.open(out).size == (32, 32)



# ------------------------------------------------------------------------------------------------ fuzzing


def test_fuzz_loaders_short_run():
    """200 mutated sample files (scripts/fuzz_loaders.py; `make fuzz` runs 2000): each loads or is an InputError."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "scripts" / "fuzz_loaders.py"
    spec = importlib.util.spec_from_file_location("fuzz_loaders", path)
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_loaders"] = fuzz  # dataclasses look their module up there
    spec.loader.exec_module(fuzz)
    report = fuzz.run(iterations=200, seed=12345)
    assert report.iterations == 200 and report.loaded > 0 and report.rejected > 0
    assert report.crashes == [], report.crashes[:3]
