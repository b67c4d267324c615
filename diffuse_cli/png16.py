"""16-bit colour PNG (RGB, RGBA, gray + alpha) read and written with numpy and zlib.

Pillow holds 16 bits only for single-channel images: it reads a 16-bit RGB PNG as 8-bit. This module
keeps every bit for PNG colour types 2 (RGB), 4 (gray + alpha) and 6 (RGBA) at bit depth 16; everything
else stays with Pillow. Samples are big-endian 16-bit integers (PNG spec, ISO/IEC 15948, §7 and §9).
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (16-bit colour types read here)
COLOUR_TYPE = {3: 2, 2: 4, 4: 6}  # samples per pixel -> colour type
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_IDAT_CHUNK = 1 << 20  # bytes of compressed data per IDAT chunk written


class PngError(ValueError):
    """A damaged or unsupported PNG; the message is one line."""


def header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) from a PNG's first 33 bytes, or None if it is no PNG."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def is_16_bit_colour(data: bytes) -> bool:
    """True for the PNGs this module reads: bit depth 16 with colour type 2, 4 or 6."""
    found = header(data)
    return found is not None and found[2] == 16 and found[3] in CHANNELS


# ------------------------------------------------------------------------------------------------ read


def _chunks(stream: BinaryIO):
    """(type, data) of every chunk after the signature, CRC-checked, up to IEND."""
    while True:
        head = stream.read(8)
        if len(head) < 8:
            raise PngError("file ends before the IEND chunk (truncated)")
        length, kind = struct.unpack(">I4s", head)
        if length > 1 << 31:
            raise PngError(f"chunk {kind!r} claims {length} bytes")
        data = stream.read(length)
        crc = stream.read(4)
        if len(data) < length or len(crc) < 4:
            raise PngError(f"file ends inside the {kind.decode('latin-1')} chunk (truncated)")
        if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
            raise PngError(f"CRC error in the {kind.decode('latin-1')} chunk")
        yield kind, data
        if kind == b"IEND":
            return


def read(stream: BinaryIO, max_pixels: int | None = None) -> np.ndarray:
    """A 16-bit colour PNG as uint16 (height, width, samples per pixel), samples in the file's order
    (R, G, B[, A] or gray, alpha). ``max_pixels``: refuse larger images before inflating anything."""
    if stream.read(8) != SIGNATURE:
        raise PngError("not a PNG file")
    width = height = bpp = 0
    interlace = 0
    inflate = zlib.decompressobj()
    parts: list[bytes] = []
    expected = 0
    got = 0
    for kind, data in _chunks(stream):
        if kind == b"IHDR":
            width, height, depth, colour, compression, method, interlace = struct.unpack(">IIBBBBB", data[:13])
            if depth != 16 or colour not in CHANNELS or compression or method or interlace not in (0, 1):
                raise PngError(f"not a 16-bit colour PNG this reader handles (depth {depth}, colour type {colour})")
            if width == 0 or height == 0:
                raise PngError("image has no pixels")
            if max_pixels is not None and width * height > max_pixels:
                raise PngError(f"image too large ({width * height} pixels > {max_pixels})")
            bpp = 2 * CHANNELS[colour]
            expected = sum(h * (1 + w * bpp) for w, h, _ in _passes(width, height, interlace))
        elif kind == b"IDAT":
            if not bpp:
                raise PngError("IDAT before IHDR")
            try:  # never inflate past the size the header promises (a zlib bomb stays small)
                block = inflate.decompress(inflate.unconsumed_tail + data, expected - got + 1)
            except zlib.error as exc:
                raise PngError(f"corrupt image data ({exc})") from exc
            got += len(block)
            parts.append(block)
    if not bpp:
        raise PngError("no IHDR chunk")
    raw = b"".join(parts)
    if len(raw) < expected:
        raise PngError(f"image data too short ({len(raw)} of {expected} bytes; truncated)")
    buffer = np.frombuffer(raw, dtype=np.uint8, count=expected)
    pixels = np.empty((height, width, bpp), dtype=np.uint8)
    offset = 0
    for w, h, (x0, y0, dx, dy) in _passes(width, height, interlace):
        size = h * (1 + w * bpp)
        rows = buffer[offset : offset + size].reshape(h, 1 + w * bpp)
        offset += size
        pixels[y0::dy, x0::dx] = unfilter(rows[:, 1:].reshape(h, w, bpp), rows[:, 0])
    return pixels.reshape(height, width * bpp).view(">u2").reshape(height, width, bpp // 2).astype(np.uint16)


def _passes(width: int, height: int, interlace: int):
    """(pass width, pass height, (x0, y0, dx, dy)) of each non-empty pass: one for a plain PNG, Adam7's seven."""
    for x0, y0, dx, dy in ADAM7 if interlace else ((0, 0, 1, 1),):
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            yield w, h, (x0, y0, dx, dy)


def unfilter(filtered: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Undo PNG row filters (spec §9): ``x = filt + pred(a, b, c) mod 256`` per byte, with a = the same byte of
    the pixel to the left, b = above, c = above-left (0 outside the image) and pred by the row's filter type:
    0 none: 0; 1 sub: a; 2 up: b; 3 average: floor((a + b) / 2); 4 Paeth: whichever of a, b, c is closest
    to ``a + b - c`` (ties: a, then b).

    ``filtered`` is (height, width, bytes per pixel) uint8. Each pixel depends on its left, upper and
    upper-left neighbours only, so all pixels of one anti-diagonal (row + column = k) are computed together:
    height + width - 1 vectorised steps instead of a Python loop over every pixel.
    """
    height, width, _bpp = filtered.shape
    kinds = np.asarray(kinds)
    if np.any(kinds > 4):
        raise PngError(f"unknown row filter type {int(kinds.max())}")
    if np.all(kinds <= 2):  # none / sub / up only: whole rows at a time (uint8 arithmetic wraps mod 256)
        out = np.zeros((height + 1, width + 1, filtered.shape[2]), dtype=np.uint8)  # a zero row above
        for r in range(height):
            if kinds[r] == 1:
                out[r + 1, 1:] = np.cumsum(filtered[r], axis=0, dtype=np.uint8)
            elif kinds[r] == 2:
                out[r + 1, 1:] = filtered[r] + out[r, 1:]
            else:
                out[r + 1, 1:] = filtered[r]
        return out[1:, 1:]
    # Skewed storage: diagonal k of the zero-padded image is the contiguous row skew[k] (skew[k, i] holds padded
    # pixel (i, k - i)), so a pixel's left, upper and upper-left neighbours are plain slices of the two
    # previous diagonals. Pixel (r, c) of the image is padded (r + 1, c + 1), on diagonal r + c + 2.
    skew = np.zeros((height + width + 1, height + 1, filtered.shape[2]), dtype=np.uint8)
    kinds = kinds.astype(np.int16)[:, None]
    for k in range(2, height + width + 1):
        lo, hi = max(1, k - width), min(height, k - 1)  # padded rows of the diagonal's image pixels
        a = skew[k - 1, lo : hi + 1].astype(np.int16)
        b = skew[k - 1, lo - 1 : hi].astype(np.int16)
        ul = skew[k - 2, lo - 1 : hi].astype(np.int16)
        rows = np.arange(lo - 1, hi)
        x = filtered[rows, k - 2 - rows]
        kind = kinds[lo - 1 : hi]
        pa, pb, pc = np.abs(b - ul), np.abs(a - ul), np.abs(a + b - 2 * ul)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, ul))
        pred = np.where(kind == 4, paeth, np.where(kind == 3, (a + b) >> 1, np.where(kind == 2, b, a * (kind == 1))))
        skew[k, lo : hi + 1] = (x + pred) & 0xFF
    out = np.empty_like(filtered)
    for r in range(height):
        out[r] = skew[r + 2 : r + 2 + width, r + 1]
    return out


# ------------------------------------------------------------------------------------------------ write


def _chunk(out: BinaryIO, kind: bytes, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))


def write(out: BinaryIO, pixels: np.ndarray, level: int = 6) -> None:
    """Write uint16 (height, width, 2 | 3 | 4) samples as a 16-bit PNG (gray + alpha, RGB, RGBA), not
    interlaced, every row with filter 1 (sub: ``filt = x - a mod 256``), compressed a strip of rows at a time."""
    height, width, channels = pixels.shape
    if channels not in COLOUR_TYPE or pixels.dtype != np.uint16:
        raise ValueError(f"cannot write {pixels.dtype} pixels with {channels} channels as a 16-bit PNG")
    out.write(SIGNATURE)
    _chunk(out, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, COLOUR_TYPE[channels], 0, 0, 0))
    deflate = zlib.compressobj(level)
    pending = b""
    rows = max(1, (1 << 20) // (width * channels * 2))
    for top in range(0, height, rows):
        strip = pixels[top : top + rows].astype(">u2").view(np.uint8).reshape(-1, width, channels * 2)
        filtered = np.empty((strip.shape[0], 1 + width * channels * 2), dtype=np.uint8)
        filtered[:, 0] = 1
        body = strip.astype(np.int16)
        body[:, 1:] -= strip[:, :-1]
        filtered[:, 1:] = (body & 0xFF).reshape(strip.shape[0], -1)
        pending += deflate.compress(filtered.tobytes())
        while len(pending) >= _IDAT_CHUNK:
            _chunk(out, b"IDAT", pending[:_IDAT_CHUNK])
            pending = pending[_IDAT_CHUNK:]
    pending += deflate.flush()
    for start in range(0, len(pending), _IDAT_CHUNK):
        _chunk(out, b"IDAT", pending[start : start + _IDAT_CHUNK])
    _chunk(out, b"IEND", b"")
