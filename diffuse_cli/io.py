"""Read and write images, audio and numeric signals as :class:`Media` (numpy + Pillow + soundfile only).

Every failure a user can cause (missing or corrupt file, unknown format, bad numbers, unsafe output
path) becomes an :class:`~diffuse_cli.errors.InputError` with one line ``"<path>: <problem>; <fix>"``;
no Pillow, soundfile or numpy exception escapes :func:`load`, :func:`load_bytes`, :func:`encode` or
:func:`save`.

Units (design notes §1): images are float32 in [-1, 1] (``x = 2u - 1``), audio is float32 in [-1, 1]
as soundfile gives it, signals stay in their own units (float64). ``Media.scale`` converts a noise
level given in file units to model units: ``sigma_model = sigma_file / media.scale``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import soundfile as sf
from PIL import Image, ImageOps, UnidentifiedImageError

from diffuse_cli import png16
from diffuse_cli.errors import InputError

IMAGE_FORMATS = ("png", "jpeg", "tiff", "bmp", "webp")
AUDIO_FORMATS = ("wav", "flac", "ogg")
SIGNAL_FORMATS = ("csv", "txt", "npy")
READ_ONLY_FORMATS = ("gif",)
WRITE_FORMATS = IMAGE_FORMATS + AUDIO_FORMATS + SIGNAL_FORMATS

EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".webp": "webp",
    ".gif": "gif",
    ".wav": "wav",
    ".wave": "wav",
    ".flac": "flac",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "txt",
    ".dat": "txt",
    ".npy": "npy",
}
_ALIASES = {"jpg": "jpeg", "tif": "tiff", "tsv": "csv", "wave": "wav", "oga": "ogg"}
_PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}
_SF_NAMES = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)
_INTEGER = re.compile(r"^[+-]?\d+$")
_FORMAT_LIST = ", ".join(WRITE_FORMATS)


@dataclass
class Media:
    """One loaded file: samples in model units plus everything needed to write it back the same way."""

    domain: str  # "image" | "audio" | "signal"
    samples: np.ndarray  # image (H, W, C) float32 in [-1, 1]; audio (N, C) float32; signal (N, C) float64
    fmt: str  # format it was read as
    scale: float = 1.0  # file units per model unit
    alpha: np.ndarray | None = None  # image alpha (H, W), original dtype, carried untouched
    mode: str | None = None  # original Pillow mode ("L", "RGB", "RGBA", "I;16", "LA", "P", "CMYK", ...)
    bit_depth: int | None = None  # image: 8, 16 or 32 (float); 16-bit colour too (PNG, TIFF)
    sample_rate: int | None = None
    subtype: str | None = None  # soundfile subtype, e.g. "PCM_16"
    columns: list[str] | None = None  # CSV header names
    delimiter: str | None = None  # "," ";" "\t" or " " (any whitespace)
    dtype: str | None = None  # numpy dtype name of the stored numbers ("int16", "float64", ...)
    one_dimensional: bool = False  # signal stored as 1-D (N,) -> saved back 1-D
    time_axis: int = 0  # signal: the stored 2-D array's axis that is time; 1 = (channels, N), saved back so
    # CSV/TXT: how each column's numbers were written, to write them back alike: ("f", decimals) for plain
    # numbers, ("g", significant digits) for a column that uses exponents; None: shortest exact text.
    number_formats: list[tuple[str, int]] | None = None
    newline: str = "\n"  # CSV/TXT line ending ("\r\n" kept from Windows files)
    source: str = ""  # path or "<stdin>"
    notes: list[str] = field(default_factory=list)  # e.g. "animated GIF: used first frame"

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The range samples must stay in to be written back: images and PCM audio clip to [-1, 1]."""
        if self.domain == "image":
            return (-1.0, 1.0)
        if self.domain == "audio" and self.subtype not in _FLOAT_SUBTYPES:
            return (-1.0, 1.0)
        return None

    def with_samples(self, samples: np.ndarray) -> Media:
        """A copy with new samples (same metadata, its own notes list)."""
        return dataclasses.replace(self, samples=samples, notes=list(self.notes))


# ----------------------------------------------------------------------------------------------- formats


def normalize_format(fmt: str) -> str:
    """'JPG' / '.tif' -> 'jpeg' / 'tiff'; the name is not checked here."""
    name = fmt.strip().lower().lstrip(".")
    return _ALIASES.get(name, name)


def format_from_extension(path: str) -> str | None:
    """Format named by the file extension, or None when the extension is missing or unknown."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


def domain_of_format(fmt: str) -> str:
    """'png' -> 'image', 'wav' -> 'audio', 'csv' -> 'signal'."""
    fmt = normalize_format(fmt)
    if fmt in IMAGE_FORMATS or fmt in READ_ONLY_FORMATS:
        return "image"
    if fmt in AUDIO_FORMATS:
        return "audio"
    if fmt in SIGNAL_FORMATS:
        return "signal"
    raise InputError(f"--format: unknown format '{fmt}'; use one of {_FORMAT_LIST}")


def detect_format(data: bytes) -> str | None:
    """Format from the first bytes (magic numbers); 'text' for UTF-8 text; None when unknown."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    # "BM" alone is weak (a CSV header may start with it): also require a known DIB header size.
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little")
        in (
            12,
            16,
            40,
            52,
            56,
            64,
            108,
            124,
        )
    ):
        return "bmp"
    if b"\x00" not in data[:4096]:
        try:
            data[:4096].decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            if exc.start >= len(data[:4096]) - 3:  # a multi-byte character cut at the 4 KiB boundary
                return "text"
    return None


def output_format(path: str, fmt: str | None, fallback: str | None) -> str:
    """Output format from ``--format``, else the extension of ``path``, else ``fallback`` (the input's).

    A read-only input format (GIF) falls back to PNG.
    """
    if fmt:
        name = normalize_format(fmt)
        if name not in WRITE_FORMATS:
            raise InputError(f"--format: cannot write '{fmt}'; use one of {_FORMAT_LIST}")
        return name
    if path != "-":
        ext = os.path.splitext(path)[1].lower()
        if ext:
            name = EXTENSIONS.get(ext)
            if name is None:
                raise InputError(
                    f"{path}: unknown output extension '{ext}'; use one of {_FORMAT_LIST} or pass --format"
                )
            if name in READ_ONLY_FORMATS:
                raise InputError(f"{path}: {name} can be read but not written; write .png instead")
            return name
    if fallback:
        name = normalize_format(fallback)
        if name in READ_ONLY_FORMATS:
            return "png"
        if name in WRITE_FORMATS:
            return name
    raise InputError(f"{path}: cannot tell the output format; pass --format ({_FORMAT_LIST})")


# ----------------------------------------------------------------------------------------------- load


def load(path: str, axis: int | None = None) -> Media:
    """Read a file (or all of stdin for "-"); the format comes from the content, not the extension.

    ``axis`` (``--axis``): for 2-D signals, the stored array's axis that is time: 0 = rows are samples
    ``(N, channels)``, 1 = channels first ``(channels, N)``. None: NPY arrays along their longer axis,
    CSV/TXT rows as samples. Either way a note says how the array was read, and :func:`save` writes it
    back in the same layout.
    """
    check_axis(axis)
    if path == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise InputError("<stdin>: no data on standard input; pipe a file in or give a file path")
        return load_bytes(data, "<stdin>", axis)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a file; give a file (or use a batch command)")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc}); check the file permissions") from exc
    with handle:
        try:
            head = handle.read(_HEAD)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc}); check the file permissions") from exc
        if not head:
            raise InputError(f"{path}: empty file; give a file with data in it")
        handle.seek(0)
        # Images and audio are decoded from the open file: no in-memory copy of a large file next to its samples.
        return _decode(handle, head, path, axis)


_HEAD = 4096  # bytes that detect_format looks at


def load_bytes(data: bytes, source: str, axis: int | None = None) -> Media:
    """Decode an in-memory file; ``source`` names it in messages ("<stdin>" for pipes); ``axis`` as in :func:`load`."""
    check_axis(axis)
    if not data:
        raise InputError(f"{source}: empty input; give a file with data in it")
    return _decode(data, data[:_HEAD], source, axis)


def check_axis(axis: int | None) -> None:
    """``--axis`` is None, 0 or 1."""
    if axis not in (None, 0, 1):
        raise InputError(f"--axis {axis}: use 0 (rows are samples: N x channels) or 1 (channels first: channels x N)")


def _decode(content: bytes | BinaryIO, head: bytes, source: str, axis: int | None = None) -> Media:
    """Decode a file's ``content`` (bytes, or an open binary file at offset 0) whose first bytes are ``head``."""
    detected = detect_format(head)
    claimed = format_from_extension(source)
    if detected is None and head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{source}: UTF-16 text; save the numbers as UTF-8 (plain CSV)")
    if detected is None:
        raise InputError(
            f"{source}: unrecognised file format; use an image ({', '.join(IMAGE_FORMATS)}, gif), "
            f"audio ({', '.join(AUDIO_FORMATS)}) or numbers ({', '.join(SIGNAL_FORMATS)})"
        )
    if detected == "text":
        detected = "txt" if claimed == "txt" else "csv"
    notes = []
    if claimed and claimed != detected and {claimed, detected} != {"csv", "txt"}:
        notes.append(f"content is {detected}, not {claimed} as the extension says: read as {detected}")
    try:
        if detected in IMAGE_FORMATS or detected in READ_ONLY_FORMATS:
            media = _load_image(content, head, source, detected)
        elif detected in AUDIO_FORMATS:
            media = _load_audio(content, source, detected)
        else:
            media = _load_numbers(content if isinstance(content, bytes) else content.read(), source, detected,
                                  claimed, axis)
    except InputError:
        raise
    except Exception as exc:  # any library failure on bad bytes becomes a one-line message
        raise InputError(
            f"{source}: cannot read {detected} ({_reason(exc)}); the file may be corrupt"
        ) from exc
    if axis is not None and media.domain != "signal":
        notes.append(f"--axis applies to signals (CSV, TXT, NPY), not {media.domain}: ignored")
    media.notes[:0] = notes
    return media


def _load_numbers(data: bytes, source: str, fmt: str, claimed: str | None, axis: int | None) -> Media:
    """npy, or CSV/text numbers."""
    if fmt == "npy":
        return _load_npy(data, source, axis)
    try:
        return _load_text(data, source, fmt, axis)
    except InputError as exc:
        if claimed is None or claimed in SIGNAL_FORMATS:
            raise
        # A text file named like an image or a recording: say that first, not "line 2: not a number".
        detail = str(exc).removeprefix(f"{source}: ").split(";")[0]
        raise InputError(
            f"{source}: is a text file, not a {claimed} file as its name says (nor numeric CSV: "
            f"{detail}); give a real {claimed} file"
        ) from exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _check_finite(values: np.ndarray, source: str) -> None:
    if not np.all(np.isfinite(values)):
        count = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise InputError(f"{source}: {count} NaN or infinite value(s); remove or interpolate them first")


# -- images


@contextlib.contextmanager
def _native_stderr_captured(lines: list[str], active: bool = True):
    """Collect what C libraries print on file descriptor 2 while decoding (libtiff reports damaged files
    there: "ZIPDecode: Decoding error at scanline 0"), so it becomes part of our one-line message instead
    of extra lines on the user's terminal."""
    if not active:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded use): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(8192).decode("utf-8", errors="replace")
            lines.extend(" ".join(line.split()) for line in text.splitlines() if line.strip() and "\x1b" not in line)


def _load_image(content: bytes | BinaryIO, head: bytes, source: str, fmt: str) -> Media:
    # Pillow holds 16 bits per channel only for one channel: 16-bit colour goes through png16 / tifffile.
    if fmt == "png" and png16.is_16_bit_colour(head):
        return _load_png_16_bit_colour(content, source)
    if fmt == "tiff":
        media = _load_tiff_16_bit_colour(content, source)
        if media is not None:
            return media
    notes: list[str] = []
    native: list[str] = []
    try:
        with _native_stderr_captured(native, fmt == "tiff"), warnings.catch_warnings(record=True) as caught:
            # Pillow's other warnings (e.g. "Corrupt EXIF data") become notes, never raw stderr lines.
            warnings.simplefilter("always")
            # Treat the bomb *warning* as an error too: a 90 Mpixel image would not fit a tile batch anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(content) if isinstance(content, bytes) else content)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                im.seek(0)
                kind = {"gif": "animated GIF", "tiff": "multi-page TIFF", "webp": "animated WebP"}.get(
                    fmt, fmt
                )
                notes.append(f"{kind}: used the first of {frames} frames")
            im.load()
            if im.getexif().get(0x0112, 1) not in (1, None):
                notes.append("applied the EXIF orientation")
            im = ImageOps.exif_transpose(im)
        for text in [str(w.message) for w in caught] + [f"libtiff: {line}" for line in native]:
            entry = f"warning: {_reason(text)}"
            if entry not in notes and len(notes) < 8:
                notes.append(entry)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{source}: image too large ({_reason(exc)}); crop or downscale it first") from exc
    except UnidentifiedImageError as exc:
        detail = f" (libtiff: {_reason(native[0])})" if native else ""
        raise InputError(f"{source}: not a readable {fmt} image{detail}; the file may be corrupt") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = f"; libtiff: {native[0]}" if native else ""
        raise InputError(
            f"{source}: corrupt or truncated {fmt} image ({_reason(str(exc) + detail)}); re-export it"
        ) from exc

    original_mode = im.mode
    if fmt == "tiff" and im.mode not in _SIXTEEN_BIT_MODES + ("I", "F") and max(_tiff_bits(im)) > 8:
        notes.append(f"{max(_tiff_bits(im))}-bit {im.mode} TIFF read as 8-bit (only gray, RGB, RGBA and gray with "
                     "alpha keep 16 bits)")
    if im.mode == "1":
        im = im.convert("L")
        notes.append("1-bit image: read as 8-bit gray")
    elif im.mode in ("P", "PA"):
        has_alpha = im.mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append(f"palette image: converted to {im.mode}")
    elif im.mode == "CMYK":
        im = im.convert("RGB")
        notes.append("CMYK image: converted to RGB")
    elif im.mode in ("La", "RGBa"):
        im = im.convert(im.mode.upper())  # un-premultiply
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F") + _SIXTEEN_BIT_MODES:
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        notes.append(f"{original_mode} image: converted to {im.mode}")

    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha = np.asarray(im.getchannel("A")).copy()
        im = im.convert(im.mode[:-1])
    if im.mode in ("L", "RGB"):  # 8-bit: converted a strip of rows at a time (no full-size copies)
        bit_depth, scale = 8, 127.5
        samples = _image_strips(im, _unit_table(255, scale))
    elif im.mode in _SIXTEEN_BIT_MODES or im.mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(
                f"{source}: 32-bit integer image with values outside 0..65535; save it as 16-bit or float"
            )
        bit_depth, scale = 16, 32767.5
        samples = _unit_table(65535, scale)[arr.astype(np.uint16, copy=False)]
    elif im.mode == "F":
        arr = np.asarray(im)
        bit_depth, scale = 32, 0.5
        _check_finite(arr, source)
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            notes.append("float image has values outside 0..1 (kept as they are)")
        with np.errstate(over="ignore"):
            samples = (arr.astype(np.float64) * 2.0 - 1.0).astype(np.float32)
        if not np.all(np.isfinite(samples)):  # a float image whose values overflow 32-bit floats once scaled
            raise InputError(
                f"{source}: float image values up to {float(np.max(np.abs(arr))):.3g} are too large to process; "
                "rescale the image to 0..1 first"
            )
    else:  # pragma: no cover - every other mode was converted above
        raise InputError(f"{source}: unsupported image mode {im.mode}; convert it to RGB or gray")
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.size == 0:
        raise InputError(f"{source}: image has no pixels; give a non-empty image")
    return Media(
        domain="image",
        samples=samples,
        fmt=fmt,
        scale=scale,
        alpha=alpha,
        mode=original_mode,
        bit_depth=bit_depth,
        source=source,
        notes=notes,
    )


def _tiff_bits(im: Image.Image) -> tuple[int, ...]:
    """BitsPerSample of a Pillow TIFF image (8 when the tag is missing)."""
    bits = getattr(im, "tag_v2", {}).get(258, 8)
    return tuple(bits) if isinstance(bits, (tuple, list)) and bits else (int(bits),)


def _too_large(width: int, height: int, source: str) -> None:
    """The limit Pillow applies to every other image (its bomb warning is an error here too)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise InputError(f"{source}: image too large ({width * height} pixels > {limit}); crop or downscale it first")


def _media_16_bit_colour(pixels: np.ndarray, source: str, fmt: str, notes: list[str]) -> Media:
    """uint16 (H, W, 2 | 3 | 4) gray + alpha, RGB or RGBA as Media: colour in model units, alpha carried as is."""
    channels = pixels.shape[2]
    alpha = np.ascontiguousarray(pixels[:, :, -1]) if channels in (2, 4) else None
    colour = pixels[:, :, :1] if channels == 2 else pixels[:, :, :3]
    return Media(
        domain="image",
        samples=_unit_table(65535, 32767.5)[colour],
        fmt=fmt,
        scale=32767.5,
        alpha=alpha,
        mode={2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels],
        bit_depth=16,
        source=source,
        notes=notes,
    )


def _load_png_16_bit_colour(content: bytes | BinaryIO, source: str) -> Media:
    stream = io.BytesIO(content) if isinstance(content, bytes) else content
    try:
        found = png16.header(stream.read(33))
        stream.seek(0)
        if found is not None:
            _too_large(found[0], found[1], source)
        pixels = png16.read(stream)
    except png16.PngError as exc:
        raise InputError(f"{source}: corrupt or truncated png image ({_reason(exc)}); re-export it") from exc
    return _media_16_bit_colour(pixels, source, "png", [])


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply a TIFF/EXIF orientation (1..8) to (H, W, C) pixels, as Pillow's ImageOps.exif_transpose does."""
    turns = {2: lambda p: p[:, ::-1], 3: lambda p: p[::-1, ::-1], 4: lambda p: p[::-1],
             5: lambda p: p.transpose(1, 0, 2), 6: lambda p: np.rot90(p, -1),
             7: lambda p: p.transpose(1, 0, 2)[::-1, ::-1], 8: lambda p: np.rot90(p, 1)}
    return np.ascontiguousarray(turns[orientation](pixels)) if orientation in turns else pixels


def _load_tiff_16_bit_colour(content: bytes | BinaryIO, source: str) -> Media | None:
    """A 16-bit RGB, RGBA or gray + alpha TIFF through tifffile (every bit kept); None for any other TIFF,
    or one tifffile cannot parse (Pillow then reads it, or says why it cannot)."""
    stream = io.BytesIO(content) if isinstance(content, bytes) else content
    with _tifffile_quiet():
        return _read_tiff_16_bit_colour(stream, source)


@contextlib.contextmanager
def _tifffile_quiet():
    """tifffile reports damaged tags through the logging module (stderr) and warnings: silence both; what
    matters becomes our one-line error (or Pillow's, for the TIFFs left to it)."""
    import logging

    logger = logging.getLogger("tifffile")
    disabled, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled


def _read_tiff_16_bit_colour(stream: BinaryIO, source: str) -> Media | None:
    import tifffile  # only for TIFF inputs: other commands and formats do not pay for the import

    try:
        tif = tifffile.TiffFile(stream)
    except Exception:
        stream.seek(0)
        return None
    try:
        try:  # anything odd about the first page: not ours to read, Pillow decides
            page = tif.pages[0]
            extra = tuple(int(e) for e in (page.extrasamples or ()))
            colour = int(page.photometric) == 2 and page.samplesperpixel in (3, 4)
            gray_alpha = int(page.photometric) == 1 and page.samplesperpixel == 2
            if page.bitspersample != 16 or int(page.sampleformat) != 1 or not (colour or gray_alpha):
                return None
            height, width = int(page.imagelength), int(page.imagewidth)
        except Exception:
            return None
        _too_large(width, height, source)
        try:
            frames = len(tif.pages)
        except Exception:  # a damaged chain of later pages: the first one is what is read
            frames = 1
        notes = [f"multi-page TIFF: used the first of {frames} frames"] if frames > 1 else []
        try:
            pixels = page.asarray()
        except Exception as exc:  # noqa: BLE001 - any decoder failure is one line
            name = getattr(page.compression, "name", str(page.compression))
            if "imagecodecs" in str(exc):
                raise InputError(
                    f"{source}: 16-bit colour TIFF with {name} compression: reading it without losing bits needs "
                    "the imagecodecs package (pip install imagecodecs), or re-save it uncompressed or with ZIP "
                    "(deflate) compression"
                ) from exc
            raise InputError(f"{source}: corrupt or truncated tiff image ({_reason(exc)}); re-export it") from exc
        if page.axes.startswith("S"):  # planar configuration "separate": (S, H, W)
            pixels = np.moveaxis(pixels, 0, -1)
        if pixels.shape != (height, width, page.samplesperpixel):
            raise InputError(f"{source}: unsupported TIFF layout {page.axes} {pixels.shape}; "
                             "save it as a plain RGB TIFF")
        pixels = pixels.astype(np.uint16, copy=False)
        if extra and extra[0] == 1 and pixels.shape[2] in (2, 4):  # associated (premultiplied) alpha: undo it
            a = pixels[:, :, -1:].astype(np.float64)
            colour_part = np.where(a > 0, np.rint(pixels[:, :, :-1] * 65535.0 / np.maximum(a, 1)), 0)
            pixels = np.concatenate([np.clip(colour_part, 0, 65535).astype(np.uint16), pixels[:, :, -1:]], axis=2)
        tag = page.tags.get(274)
        orientation = int(tag.value) if tag is not None else 1
        if orientation not in (1, 0):
            pixels = _orient(pixels, orientation)
            notes.append("applied the EXIF orientation")
        return _media_16_bit_colour(pixels, source, "tiff", notes)
    finally:
        tif.close()
        stream.seek(0)


def _image_strips(im: Image.Image, table: np.ndarray) -> np.ndarray:
    """An 8-bit L or RGB image as float32 model units (H, W, C): ``table[v]``, a strip of rows at a time
    (numpy's view of a whole Pillow image would be one more full-size copy)."""
    width, height = im.size
    bands = len(im.getbands())
    out = np.empty((height, width, bands), dtype=np.float32)
    rows = max(1, _STRIP // max(1, width * bands))
    for r in range(0, height, rows):
        strip = np.asarray(im.crop((0, r, width, min(height, r + rows))))
        out[r : r + rows] = table[strip].reshape(-1, width, bands)
    return out


def _unit_table(top: int, scale: float) -> np.ndarray:
    """float32 model units ``v / scale - 1`` (computed in float64) for every integer v in 0..top: indexing it
    converts a whole image with one float32 array, no float64 copy of a large photo."""
    return (np.arange(top + 1, dtype=np.float64) / scale - 1.0).astype(np.float32)


# -- audio


def _load_audio(content: bytes | BinaryIO, source: str, fmt: str) -> Media:
    try:
        with sf.SoundFile(io.BytesIO(content) if isinstance(content, bytes) else content) as handle:
            sample_rate, subtype = int(handle.samplerate), str(handle.subtype)
            samples = handle.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # soundfile prefixes "Error opening <_io.BytesIO object at 0x...>: ": keep only libsndfile's reason
        reason = getattr(exc, "error_string", None) or re.sub(r"^Error opening <[^>]*>:\s*", "", _reason(exc))
        raise InputError(
            f"{source}: corrupt or unsupported {fmt} audio ({_reason(reason)}); re-export it"
        ) from exc
    if samples.shape[0] == 0:
        raise InputError(f"{source}: audio has no samples (0 frames); give a non-empty recording")
    _check_finite(samples, source)
    return Media(
        domain="audio",
        samples=samples,
        fmt=fmt,
        scale=1.0,
        sample_rate=sample_rate,
        subtype=subtype,
        source=source,
    )


# -- signals


def _check_npy_size(data: bytes, source: str) -> None:
    """Compare the header's shape with the bytes that follow it before numpy allocates the whole array:
    a damaged header that promises terabytes must be a one-line error, not a MemoryError or a long stall."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in reader:
            return  # version 3 (UTF-8 header): numpy checks it itself
        shape, _fortran, dtype = reader[version](stream)
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError, KeyError) as exc:
        raise InputError(f"{source}: corrupt NPY header ({_reason(exc)}); re-save it with numpy.save") from exc
    if dtype.hasobject:
        raise InputError(f"{source}: NPY holds Python objects; save a plain numeric array")
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = len(data) - stream.tell()
    if expected > available:
        raise InputError(
            f"{source}: truncated or corrupt NPY file (the header promises {expected} bytes of data, "
            f"the file has {available}); re-save it with numpy.save"
        )


def array_layout(shape: tuple[int, ...], axis: int | None, source: str, what: str) -> tuple[int, str | None]:
    """(time axis, note) for a stored signal array of ``shape``: ``axis`` when given, else the longer axis
    (ties: rows). The note says how it was read; it calls the layout ambiguous, with the ``--axis`` that
    flips it, when neither axis is at least 8 times the other."""
    if len(shape) == 1:
        if axis == 1:
            raise InputError(f"{source}: --axis 1 but the {what} is 1-D (one channel); leave --axis out or use 0")
        return 0, None
    rows, cols = shape
    time_axis = axis if axis is not None else (0 if rows >= cols else 1)
    samples, channels = (rows, cols) if time_axis == 0 else (cols, rows)
    if channels == 1 and (axis is not None or time_axis == 0):
        return time_axis, None  # one column (or one row, as asked): nothing to choose
    plural = "s" if channels != 1 else ""
    note = f"{what} {rows}x{cols}: read as {channels} channel{plural} of {samples} samples (time along axis {time_axis}"
    if axis is not None:
        return time_axis, note + f", --axis {axis})"
    if max(rows, cols) < 8 * min(rows, cols):
        return time_axis, note + f", the longer one; ambiguous: pass --axis {1 - time_axis} if time runs along axis " \
            f"{1 - time_axis})"
    return time_axis, note + ", the longer one)"


def _load_npy(data: bytes, source: str, axis: int | None = None) -> Media:
    _check_npy_size(data, source)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(f"{source}: NPY holds Python objects; save a plain numeric array") from exc
        raise InputError(f"{source}: corrupt NPY file ({_reason(exc)}); re-save it with numpy.save") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{source}: truncated or corrupt NPY file; re-save it with numpy.save") from exc
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{source}: NPY dtype {arr.dtype} is not real numbers; save an int or float array")
    if arr.ndim not in (1, 2):
        raise InputError(
            f"{source}: NPY array has shape {arr.shape}; save a 1-D (N,) or 2-D (N, channels) array"
        )
    if arr.size == 0:
        raise InputError(f"{source}: NPY array is empty; save at least one value")
    _check_finite(arr, source)
    time_axis, note = array_layout(arr.shape, axis, source, "NPY array")
    one_dimensional = arr.ndim == 1
    samples = arr.astype(np.float64).reshape(arr.shape[0], -1)
    if time_axis == 1:
        samples = np.ascontiguousarray(samples.T)
    return Media(
        domain="signal",
        samples=samples,
        fmt="npy",
        dtype=arr.dtype.name,
        one_dimensional=one_dimensional,
        time_axis=time_axis,
        source=source,
        notes=[note] if note else [],
    )


def _split(line: str, delimiter: str) -> list[str]:
    if delimiter == " ":
        return line.split()
    return [cell.strip() for cell in line.split(delimiter)]


def _load_text(data: bytes, source: str, fmt: str, axis: int | None = None) -> Media:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text; save the numbers as UTF-8 CSV") from exc
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(f"{source}: no numbers found; give one or more numeric columns")
    first_cells = [c for c in re.split(r"[,;\t ]+", lines[0][1]) if c]
    header_line = None
    if not all(_NUMBER.match(c) for c in first_cells):
        header_line, lines = lines[0], lines[1:]
        if not lines:
            raise InputError(f"{source}: only a header line, no data rows; add numbers below the header")
    data_line = lines[0][1]
    delimiter = next((d for d in ("\t", ";", ",") if d in data_line), " ")
    width = len(_split(data_line, delimiter))
    rows: list[list[str]] = []
    for number, line in lines:
        cells = _split(line, delimiter)
        if len(cells) != width:
            raise InputError(
                f"{source}: line {number} has {len(cells)} values, expected {width}; "
                "give every row the same number of columns"
            )
        rows.append(cells)
    flat = [cell for row in rows for cell in row]
    for index, cell in enumerate(flat):
        if not _NUMBER.match(cell):
            number = lines[index // width][0]
            shown = cell if len(cell) <= 30 else cell[:27] + "..."
            what = "an empty cell" if not cell else f"'{shown}' is not a number"
            raise InputError(f"{source}: line {number}: {what}; every data cell must be a number")
    values = np.array(flat, dtype=np.float64).reshape(len(rows), width)
    _check_finite(values, source)
    columns = None
    if header_line is not None:
        columns = _split(header_line[1], delimiter)
        if len(columns) != width:
            if width == 1:
                columns = [header_line[1]]
            else:
                raise InputError(
                    f"{source}: header has {len(columns)} names but rows have {width} values; fix the header"
                )
    integer = all(_INTEGER.match(cell) for cell in flat)
    # Rows are samples unless --axis 1 says each row is a channel (then a header cannot name the columns).
    time_axis = 0
    note = None
    if axis == 1:
        if columns is not None:
            raise InputError(f"{source}: --axis 1 reads rows as channels, but the file has a header naming its "
                             "columns; leave --axis out or remove the header")
        time_axis, note = array_layout(values.shape, 1, source, fmt.upper())
        values = np.ascontiguousarray(values.T)
        formats = [_column_format(row) for row in rows]
    else:
        formats = [_column_format([row[c] for row in rows]) for c in range(width)]
    return Media(
        domain="signal",
        samples=values,
        fmt=fmt,
        columns=columns,
        delimiter=delimiter,
        dtype="int64" if integer else "float64",
        one_dimensional=width == 1 and time_axis == 0,
        time_axis=time_axis,
        source=source,
        notes=[note] if note else [],
        number_formats=formats,
        newline="\r\n" if "\r\n" in text else "\n",
    )


def _column_format(cells: list[str]) -> tuple[str, int]:
    """How a column's numbers are written: ("f", most decimals) when no cell uses an exponent, else
    ("g", most significant digits) ("20.500" has 3 decimals and 5 significant digits, "1.5e-05" 2 digits)."""
    decimals, digits, exponent = 0, 1, False
    for cell in cells:
        mantissa, _, power = cell.lower().partition("e")
        exponent = exponent or bool(power)
        mantissa = mantissa.lstrip("+-")
        whole, _, fraction = mantissa.partition(".")
        decimals = max(decimals, len(fraction))
        digits = max(digits, len((whole + fraction).lstrip("0")))
    return ("g", digits) if exponent else ("f", decimals)


def _format_column(values: list[float], spec: tuple[str, int] | None) -> list[str]:
    """Text of one column: ``format(v, ".{d}f")`` for ("f", d) (no "-0.000"); for ("g", p) the shortest
    text of v rounded to p significant digits; for None the shortest text that reads back as v."""
    if spec is None:
        return [_float_text(v) for v in values]
    kind, count = spec
    if kind == "f":
        texts = [format(v, f".{count}f") for v in values]
        return [t[1:] if t[0] == "-" and not t.strip("-0.") else t for t in texts]
    return [_float_text(float(format(v, f".{max(count - 1, 0)}e"))) for v in values]


def round_like_text(media: Media, samples: np.ndarray) -> np.ndarray:
    """The values a CSV/TXT output of ``media`` will hold: each column rounded as it is written
    (:func:`_format_column`); other media are returned unchanged."""
    formats = media.number_formats
    values = np.asarray(samples, dtype=np.float64)
    if media.fmt not in ("csv", "txt") or not formats or values.ndim != 2 or len(formats) != values.shape[1]:
        return values
    out = np.empty_like(values)
    for c, spec in enumerate(formats):
        out[:, c] = [float(t) for t in _format_column(values[:, c].tolist(), spec)]
    return out


# ----------------------------------------------------------------------------------------------- encode


def encode(
    media: Media,
    fmt: str,
    bit_depth: int | None = None,
    notes: list[str] | None = None,
    label: str | None = None,
) -> bytes:
    """Encode ``media`` as ``fmt`` in memory (clip + round to integer types).

    ``notes`` (optional) receives lossy conversions made to fit the format, e.g. "JPEG cannot hold
    alpha: dropped it". ``label`` names the output in error messages (default: the format).
    """
    buffer = io.BytesIO()
    encode_into(buffer, media, fmt, bit_depth, notes, label)
    return buffer.getvalue()


def encode_into(
    out: BinaryIO,
    media: Media,
    fmt: str,
    bit_depth: int | None = None,
    notes: list[str] | None = None,
    label: str | None = None,
) -> None:
    """:func:`encode` straight into a seekable binary file (``save`` passes its temporary file, so a large
    output is never held in memory as a whole). Nothing is written when the media cannot be encoded."""
    fmt = normalize_format(fmt)
    label = label or fmt
    if fmt not in WRITE_FORMATS:
        raise InputError(f"--format: cannot write '{fmt}'; use one of {_FORMAT_LIST}")
    if domain_of_format(fmt) != media.domain:
        allowed = {"image": IMAGE_FORMATS, "audio": AUDIO_FORMATS, "signal": SIGNAL_FORMATS}[media.domain]
        raise InputError(
            f"{label}: cannot write {media.domain} data as {fmt}; use one of {', '.join(allowed)}"
        )
    if bit_depth is not None and bit_depth not in (8, 16, 24, 32):
        raise InputError(f"--bit-depth: {bit_depth} is not supported; use 8 or 16 (24/32 for audio)")
    sink = notes if notes is not None else []
    samples = np.asarray(media.samples)
    flat = samples.reshape(-1)
    if not all(np.isfinite(flat[a : a + _STRIP]).all() for a in range(0, flat.size, _STRIP)):
        raise InputError(f"{label}: result contains NaN or infinite values; nothing written")
    try:
        if media.domain == "image":
            _encode_image(media, samples, fmt, bit_depth, sink, label, out)
        elif media.domain == "audio":
            _encode_audio(media, samples, fmt, bit_depth, sink, label, out)
        elif fmt == "npy":
            out.write(_encode_npy(media, samples))
        else:
            out.write(_encode_text(media, samples, fmt))
    except InputError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the file system (disk full, ...): the caller
            raise  # reports the write
        raise InputError(f"{label}: cannot encode as {fmt} ({_reason(exc)}); try another format") from exc


# -- images

# What Pillow can write per format: (colour modes, bit depths for gray without alpha).
_IMAGE_CAPS = {
    "png": ({"L", "LA", "RGB", "RGBA"}, (8, 16)),
    "tiff": ({"L", "LA", "RGB", "RGBA"}, (8, 16, 32)),
    "jpeg": ({"L", "RGB"}, (8,)),
    "bmp": ({"L", "RGB"}, (8,)),
    "webp": ({"RGB", "RGBA"}, (8,)),
}


def _encode_image(
    media: Media, samples: np.ndarray, fmt: str, bit_depth: int | None, notes: list[str], label: str, out: BinaryIO
) -> None:
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.ndim != 3 or samples.shape[2] not in (1, 3):
        raise InputError(f"{label}: image samples have shape {samples.shape}; expected (H, W, 1 or 3)")
    height, width, channels = samples.shape
    alpha = media.alpha
    if alpha is not None and alpha.shape != (height, width):
        notes.append("alpha does not match the image size: dropped it")
        alpha = None
    modes, depths = _IMAGE_CAPS[fmt]
    name = fmt.upper()
    want = bit_depth or media.bit_depth or 8
    if want == 24:
        want = 16
    depth = want
    if depth not in depths:
        depth = max(d for d in depths if d <= depth)
        notes.append(f"{name} cannot hold {want}-bit: wrote {depth}-bit")
    if depth == 32 and (channels != 1 or alpha is not None):
        notes.append(f"{name} holds 32-bit float only for gray without alpha: wrote 16-bit")
        depth = 16
    if depth == 16 and (channels != 1 or alpha is not None):  # 16-bit colour or alpha: PNG and TIFF hold it
        _encode_16_bit_colour(samples, alpha, fmt, out)
        return

    if depth == 32:
        pixels = _to_pixels(samples[:, :, :1], np.float32)[:, :, 0]
        image = Image.fromarray(pixels)
    elif depth == 16:
        pixels = _to_pixels(samples[:, :, :1], np.uint16)[:, :, 0]
        image = Image.fromarray(pixels)
    else:
        pixels = _to_pixels(samples, np.uint8)
        colour = "L" if channels == 1 else "RGB"
        mode = colour + ("A" if alpha is not None else "")
        if mode == "LA" and mode not in modes and "RGBA" in modes:
            notes.append(f"{name} has no gray mode: wrote RGBA")
            mode = "RGBA"  # widen to colour, keep the alpha
        if mode not in modes and alpha is not None:
            notes.append(f"{name} cannot hold alpha: dropped it")
            mode, alpha = colour, None
        if mode not in modes:
            notes.append(f"{name} has no gray mode: wrote RGB")
            mode = "RGB"
        if mode.startswith("RGB") and channels == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        if alpha is not None:
            a = alpha.astype(np.float64)
            if alpha.dtype != np.uint8:  # e.g. 16-bit alpha from elsewhere
                a = np.rint(a / (np.iinfo(alpha.dtype).max if alpha.dtype.kind in "iu" else 1.0) * 255.0)
            pixels = np.concatenate([pixels, np.clip(a, 0, 255).astype(np.uint8)[:, :, None]], axis=2)
        image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    options: dict[str, object] = {}
    if fmt == "jpeg":
        options = {"quality": 95, "subsampling": 0}
    elif fmt == "webp":
        options = {"lossless": True, "exact": True}  # a denoiser should not add compression artefacts
    elif fmt == "png":
        options = {"compress_level": 6}
    del pixels
    image.save(out, format=_PIL_NAMES[fmt], **options)


def _encode_16_bit_colour(samples: np.ndarray, alpha: np.ndarray | None, fmt: str, out: BinaryIO) -> None:
    """RGB, RGBA or gray + alpha at 16 bits per channel: PNG through png16, TIFF through tifffile (uncompressed,
    as Pillow writes TIFF). An 8-bit alpha is widened (``a * 257``), a 16-bit one written as it is."""
    pixels = _to_pixels(samples, np.uint16)
    if alpha is not None:
        if alpha.dtype == np.uint16:
            a = alpha
        elif alpha.dtype == np.uint8:
            a = alpha.astype(np.uint16) * 257
        else:
            top = float(np.iinfo(alpha.dtype).max) if alpha.dtype.kind in "iu" else 1.0
            a = np.clip(np.rint(alpha.astype(np.float64) / top * 65535.0), 0, 65535).astype(np.uint16)
        pixels = np.concatenate([pixels, a[:, :, None]], axis=2)
    if fmt == "png":
        png16.write(out, pixels)
        return
    import tifffile

    tifffile.imwrite(out, pixels, photometric="rgb" if samples.shape[2] == 3 else "minisblack",
                     planarconfig="contig", extrasamples=("unassalpha",) if alpha is not None else None,
                     metadata=None)


_STRIP = 1 << 20  # values converted at a time: float64 temporaries stay at a few MB for any image size


def _to_pixels(samples: np.ndarray, dtype: type) -> np.ndarray:
    """Model units (H, W, C) -> pixels: ``u = (x + 1) / 2`` then ``rint(clip(u, 0, 1) * max)`` for integer
    types, ``u`` itself for float32; computed in float64, a strip of rows at a time."""
    out = np.empty(samples.shape, dtype=dtype)
    rows = max(1, _STRIP // max(1, samples.shape[1] * samples.shape[2]))
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None
    for r in range(0, samples.shape[0], rows):
        u = (samples[r : r + rows].astype(np.float64) + 1.0) / 2.0
        out[r : r + rows] = u if top is None else np.rint(np.clip(u, 0.0, 1.0) * top)
    return out


# -- audio


def _audio_subtype(media: Media, fmt: str, bit_depth: int | None, notes: list[str]) -> str:
    container = _SF_NAMES[fmt]
    if bit_depth is not None:
        by_depth = {8: "PCM_U8" if fmt == "wav" else "PCM_S8", 16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
        wanted = by_depth[bit_depth]
    else:
        wanted = media.subtype or sf.default_subtype(container)
    if sf.check_format(container, wanted):
        return wanted
    if fmt == "flac" and wanted in ("FLOAT", "DOUBLE", "PCM_32"):
        fallback = "PCM_24"
    else:
        fallback = sf.default_subtype(container)
    notes.append(f"{fmt.upper()} cannot hold {wanted}: wrote {fallback}")
    return fallback


def _encode_audio(
    media: Media, samples: np.ndarray, fmt: str, bit_depth: int | None, notes: list[str], label: str, out: BinaryIO
) -> None:
    if media.sample_rate is None:
        raise InputError(f"{label}: audio has no sample rate; cannot write {fmt}")
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise InputError(f"{label}: audio samples have shape {samples.shape}; expected (N, channels)")
    subtype = _audio_subtype(media, fmt, bit_depth, notes)
    dtype = np.float64 if subtype == "DOUBLE" else np.float32
    # ``out`` is seekable (soundfile rewrites the WAV header at the end): a file, or a buffer for stdout.
    with sf.SoundFile(out, "w", int(media.sample_rate), samples.shape[1], subtype=subtype,
                      format=_SF_NAMES[fmt]) as handle:
        step = max(1, _STRIP // samples.shape[1])
        for a in range(0, samples.shape[0], step):  # a block at a time: no full-length copies
            block = samples[a : a + step].astype(dtype)
            if subtype not in _FLOAT_SUBTYPES:
                np.clip(block, -1.0, 1.0, out=block)  # PCM and lossy codecs hold [-1, 1]; clip, not wrap
            handle.write(block)


# -- signals


def _signal_array(media: Media, samples: np.ndarray, dtype: np.dtype) -> np.ndarray:
    values = samples.astype(np.float64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def _encode_npy(media: Media, samples: np.ndarray) -> bytes:
    dtype = np.dtype(media.dtype or "float64")
    if samples.ndim == 1:
        samples = samples[:, None]
    values = _signal_array(media, samples, dtype)
    if media.one_dimensional and values.shape[1] == 1:
        values = values[:, 0]
    elif media.time_axis == 1:  # back to (channels, N), as it was read
        values = np.ascontiguousarray(values.T)
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def _float_text(value: float) -> str:
    """Shortest text that reads back as the same float64 (repr), without a trailing ".0" on whole numbers
    (a time or index column written as 0, 30, 60 stays readable)."""
    text = repr(value)
    return text.removesuffix(".0")


def _encode_text(media: Media, samples: np.ndarray, fmt: str) -> bytes:
    if samples.ndim == 1:
        samples = samples[:, None]
    dtype = np.dtype(media.dtype or "float64")
    integer = dtype.kind in "iu"
    values = _signal_array(media, samples, dtype if integer else np.dtype(np.float64))
    if fmt == "csv":
        delimiter = media.delimiter if media.delimiter in (",", ";", "\t") else ","
    else:
        delimiter = media.delimiter or " "
    formats = media.number_formats if media.number_formats and len(media.number_formats) == values.shape[1] else None
    lines = []
    if media.columns and len(media.columns) == values.shape[1]:
        lines.append(delimiter.join(media.columns))
    if integer:
        columns = [list(map(str, values[:, c].tolist())) for c in range(values.shape[1])]
    else:  # column by column, each written with the precision it was read with
        columns = [_format_column(values[:, c].tolist(), formats[c] if formats else None)
                   for c in range(values.shape[1])]
    if media.time_axis == 1:  # one row per channel, as it was read
        lines.extend(delimiter.join(channel) for channel in columns)
    else:
        lines.extend(delimiter.join(row) for row in zip(*columns))
    newline = media.newline if media.newline in ("\n", "\r\n") else "\n"
    return (newline.join(lines) + newline).encode("utf-8")


# ----------------------------------------------------------------------------------------------- save


def check_output_path(path: str, inputs: Sequence[str], force: bool) -> None:
    """Refuse an output that is an input, exists (without ``force``), or sits in a missing/unwritable dir."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory; give an output file name")
    for source in inputs:
        if source == "-" or not source:
            continue
        same = os.path.realpath(source) == os.path.realpath(path)
        if not same and os.path.exists(source) and os.path.exists(path):
            try:
                same = os.path.samefile(source, path)
            except OSError:
                same = False
        if same:
            raise InputError(f"{path}: is also an input file; choose a different output name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write to folder {parent}; choose a writable location")
    if os.path.lexists(path) and not force:
        raise InputError(f"{path}: already exists; pass --force to overwrite or choose another name")


def atomic_write_bytes(path: str, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` all-or-nothing (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(data), force)


def atomic_write(path: str, write: Callable[[BinaryIO], object], force: bool = False) -> None:
    """Run ``write(handle)`` on a temp file in the same folder, fsync, then rename it to ``path``.

    A failure at any point (an exception from ``write`` included) leaves no temp file behind and the old
    ``path`` (if any) untouched.
    """
    check_output_path(path, (), force)
    parent = os.path.dirname(os.path.abspath(path))
    temp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp", delete=False
        ) as handle:
            temp_name = handle.name
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)  # NamedTemporaryFile makes 0600; give the usual file mode
        if force:
            os.replace(temp_name, path)
        else:
            try:  # link() fails if path appeared meanwhile: never clobber without --force
                os.link(temp_name, path)
            except FileExistsError as exc:
                raise InputError(
                    f"{path}: already exists; pass --force to overwrite or choose another name"
                ) from exc
            except OSError:  # filesystems without hard links
                os.replace(temp_name, path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(
            f"{path}: cannot write ({exc.strerror or exc}); check free space and permissions"
        ) from exc
    finally:
        if temp_name is not None and os.path.lexists(temp_name):
            os.unlink(temp_name)
    try:  # make the rename itself durable
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save(
    media: Media,
    path: str,
    fmt: str | None = None,
    bit_depth: int | None = None,
    force: bool = False,
    inputs: Sequence[str] = (),
    notes: list[str] | None = None,
) -> str:
    """Write ``media`` to ``path`` ("-" = stdout) atomically; returns the format written.

    Format: ``fmt`` (``--format``), else the extension, else the input's format. ``notes`` (optional)
    receives lossy conversions, e.g. alpha dropped for JPEG.
    """
    out_fmt = output_format(path, fmt, media.fmt)
    check_output_path(path, inputs, force)
    if path == "-":  # encoded in memory first: a pipe cannot seek back to finish a WAV header
        sys.stdout.buffer.write(encode(media, out_fmt, bit_depth, notes, label="<stdout>"))
        sys.stdout.buffer.flush()
    else:  # encoded straight into the temporary file: a large output is never held in memory
        atomic_write(path, lambda handle: encode_into(handle, media, out_fmt, bit_depth, notes, label=path), force)
    return out_fmt


# ----------------------------------------------------------------------------------------------- inputs


def _supported(name: str) -> bool:
    return format_from_extension(name) is not None and not os.path.basename(name).startswith(".")


def is_collection(arg: str) -> bool:
    """True for an argument that names several files: a folder or a glob pattern."""
    return arg != "-" and (os.path.isdir(arg) or (not os.path.exists(arg) and glob.has_magic(arg)))


def expand_inputs_with_names(args: Sequence[str]) -> list[tuple[str, str]]:
    """(path, output name) pairs: files as given (name = basename), folders searched recursively for
    supported extensions (name = path inside the folder, so outputs mirror the tree), globs expanded.

    A path that does not exist, a folder without supported files, or a pattern matching nothing
    raises InputError. Duplicates are dropped, order is kept (sorted within a folder or pattern).
    """
    found: dict[str, str] = {}
    for arg in args:
        if arg == "-":
            found.setdefault(arg, arg)
        elif os.path.isdir(arg):
            files = []
            for root, dirs, names in os.walk(arg):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                files.extend(os.path.join(root, n) for n in names if _supported(n))
            if not files:
                raise InputError(
                    f"{arg}: folder has no supported files; add {', '.join(sorted(set(EXTENSIONS)))} files"
                )
            for f in sorted(files):
                found.setdefault(f, os.path.relpath(f, arg))
        elif os.path.exists(arg):
            found.setdefault(arg, os.path.basename(arg))
        elif glob.has_magic(arg):
            matches = sorted(m for m in glob.glob(arg, recursive=True) if os.path.isfile(m) and _supported(m))
            if not matches:
                raise InputError(f"{arg}: pattern matches no supported files; check the pattern")
            for m in matches:
                found.setdefault(m, os.path.basename(m))
        else:
            raise InputError(f"{arg}: no such file or folder; check the path")
    names = list(found.values())
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise InputError(f"{sorted(clash)[0]}: several inputs share this name; pass their folder instead")
    return list(found.items())


def expand_inputs(args: Sequence[str]) -> list[str]:
    """The input paths of :func:`expand_inputs_with_names`."""
    return [path for path, _ in expand_inputs_with_names(args)]


# ----------------------------------------------------------------------------------------------- scaling


def robust_normalize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel (last axis) robust standardisation: ``z = (x - centre) / scale``.

    ``centre = median(x)``, ``scale = 1.4826 * median(|x - centre|)`` (the MAD, equal to the standard
    deviation for Gaussian data); where the MAD is 0 (mostly constant signals) ``scale = (p99 - p1) / 4``,
    and where that is 0 too, ``scale = 1``. A 1-D ``x`` is one channel. Returns ``(z, centre, scale)``
    with ``centre`` and ``scale`` of shape (C,).
    """
    values = np.asarray(x)
    flat = values.reshape(-1, 1) if values.ndim <= 1 else values.reshape(-1, values.shape[-1])
    flat = flat.astype(np.float64)
    centre = np.median(flat, axis=0)
    scale = 1.4826 * np.median(np.abs(flat - centre), axis=0)
    spread = (np.percentile(flat, 99, axis=0) - np.percentile(flat, 1, axis=0)) / 4.0
    scale = np.where(scale > 0, scale, np.where(spread > 0, spread, 1.0))
    dtype = values.dtype if values.dtype.kind == "f" else np.float64
    z = ((values - centre) / scale).astype(dtype)
    return z, centre, scale


def robust_denormalize(z: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Undo :func:`robust_normalize`: ``x = z * scale + centre`` (float64)."""
    return np.asarray(z, dtype=np.float64) * np.asarray(scale) + np.asarray(centre)
