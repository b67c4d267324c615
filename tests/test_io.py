"""Round trips, format detection, safe writes and error messages of diffuse_cli.io."""

from __future__ import annotations

import io as pyio
import os
import sys

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from diffuse_cli import io
from diffuse_cli.errors import InputError

RNG = np.random.default_rng(0)


def _pixels(shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    high = np.iinfo(dtype).max
    return RNG.integers(0, high + 1, size=shape, dtype=np.int64).astype(dtype)


def _write_pil(path, array: np.ndarray, fmt: str, **options) -> str:
    Image.fromarray(array).save(path, format=fmt, **options)
    return str(path)


def _resave(tmp_path, src: str, ext: str, **kwargs) -> tuple[io.Media, io.Media, str]:
    media = io.load(src)
    out = str(tmp_path / f"out{ext}")
    io.save(media, out, **kwargs)
    return media, io.load(out), out


# ------------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize(
    ("ext", "fmt", "shape", "dtype", "mode", "depth"),
    [
        (".png", "PNG", (17, 23), np.uint8, "L", 8),
        (".png", "PNG", (17, 23, 3), np.uint8, "RGB", 8),
        (".png", "PNG", (17, 23, 4), np.uint8, "RGBA", 8),
        (".png", "PNG", (17, 23, 2), np.uint8, "LA", 8),
        (".png", "PNG", (17, 23), np.uint16, "I;16", 16),
        (".tif", "TIFF", (17, 23), np.uint8, "L", 8),
        (".tif", "TIFF", (17, 23, 3), np.uint8, "RGB", 8),
        (".tif", "TIFF", (17, 23), np.uint16, "I;16", 16),
        (".bmp", "BMP", (17, 23), np.uint8, "L", 8),
        (".bmp", "BMP", (17, 23, 3), np.uint8, "RGB", 8),
        (".webp", "WEBP", (17, 23, 3), np.uint8, "RGB", 8),
        (".webp", "WEBP", (17, 23, 4), np.uint8, "RGBA", 8),
    ],
)
def test_lossless_image_round_trip(tmp_path, ext, fmt, shape, dtype, mode, depth):
    pixels = _pixels(shape, dtype)
    if mode == "RGBA" and fmt == "WEBP":
        pixels[..., 3] = np.where(pixels[..., 3] > 127, 255, 40)
    options = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    src = _write_pil(tmp_path / f"in{ext}", pixels, fmt, **options)
    media, back, out = _resave(tmp_path, src, ext)
    channels = 1 if len(shape) == 2 or shape[2] == 2 else 3
    assert media.domain == "image" and media.mode == mode and media.bit_depth == depth
    assert media.samples.shape == (17, 23, channels) and media.samples.dtype == np.float32
    assert media.samples.min() >= -1.0 and media.samples.max() <= 1.0
    assert media.scale == (127.5 if depth == 8 else 32767.5)
    assert (media.alpha is not None) == (mode in ("RGBA", "LA"))
    with Image.open(out) as written:
        assert written.mode == mode
        assert np.array_equal(np.asarray(written), pixels)
    assert back.mode == mode and back.bit_depth == depth
    np.testing.assert_array_equal(back.samples, media.samples)


def test_float_tiff_round_trip(tmp_path):
    pixels = RNG.random((9, 11), dtype=np.float32)
    src = _write_pil(tmp_path / "in.tif", pixels, "TIFF")
    media, _back, out = _resave(tmp_path, src, ".tif")
    assert media.mode == "F" and media.bit_depth == 32 and media.scale == 0.5
    np.testing.assert_allclose(media.samples[..., 0], 2 * pixels - 1, atol=1e-6)
    with Image.open(out) as written:
        assert written.mode == "F"
        np.testing.assert_allclose(np.asarray(written), pixels, atol=1e-6)


def test_jpeg_round_trip_is_close(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    pixels = np.stack([x * 5, y * 7, (x + y) * 3], axis=-1).astype(np.uint8)
    src = _write_pil(tmp_path / "in.jpg", pixels, "JPEG", quality=95)
    media, back, _ = _resave(tmp_path, src, ".jpg")
    assert media.fmt == "jpeg" and media.mode == "RGB" and back.samples.shape == (32, 48, 3)
    assert np.abs(back.samples - media.samples).mean() * 127.5 < 2.0


def test_jpeg_drops_alpha_and_16_bit_with_notes(tmp_path):
    src = _write_pil(tmp_path / "in.png", _pixels((8, 8, 4)), "PNG")
    notes: list[str] = []
    io.save(io.load(src), str(tmp_path / "out.jpg"), notes=notes)
    assert any("alpha" in n for n in notes)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.mode == "RGB"
    src16 = _write_pil(tmp_path / "in16.png", _pixels((8, 8), np.uint16), "PNG")
    notes = []
    io.save(io.load(src16), str(tmp_path / "out16.jpg"), notes=notes)
    assert any("8-bit" in n for n in notes)
    with Image.open(tmp_path / "out16.jpg") as written:
        assert written.mode == "L"


def test_webp_gray_widens_to_rgb_with_note(tmp_path):
    media = io.load(_write_pil(tmp_path / "in.png", _pixels((6, 6, 2)), "PNG"))
    notes: list[str] = []
    io.save(media, str(tmp_path / "o.webp"), notes=notes)
    assert any("RGBA" in n for n in notes)
    back = io.load(str(tmp_path / "o.webp"))
    assert back.mode == "RGBA" and np.array_equal(back.alpha, media.alpha)
    np.testing.assert_array_equal(back.samples, np.repeat(media.samples, 3, axis=2))


def test_bit_depth_override(tmp_path):
    src = _write_pil(tmp_path / "in.png", _pixels((8, 8)), "PNG")
    media = io.load(src)
    io.save(media, str(tmp_path / "out.png"), bit_depth=16)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "I;16"
        assert np.array_equal(np.asarray(written) // 257, np.asarray(Image.open(src)))
    back = io.load(str(tmp_path / "out.png"))
    np.testing.assert_allclose(back.samples, media.samples, atol=1e-6)


def test_alpha_carried_untouched(tmp_path):
    pixels = _pixels((10, 12, 4))
    media = io.load(_write_pil(tmp_path / "in.png", pixels, "PNG"))
    cleaned = media.with_samples(np.zeros_like(media.samples))
    io.save(cleaned, str(tmp_path / "out.png"))
    with Image.open(tmp_path / "out.png") as written:
        out = np.asarray(written)
    assert np.array_equal(out[..., 3], pixels[..., 3]) and np.all(out[..., :3] == 128)


def test_palette_cmyk_one_bit_gif_and_exif(tmp_path):
    rgb = Image.fromarray(_pixels((16, 16, 3)))
    rgb.quantize(8).save(tmp_path / "p.png")
    media = io.load(str(tmp_path / "p.png"))
    assert media.mode == "P" and media.samples.shape == (16, 16, 3) and media.notes
    rgb.convert("CMYK").save(tmp_path / "c.jpg")
    media = io.load(str(tmp_path / "c.jpg"))
    assert media.mode == "CMYK" and media.samples.shape[2] == 3 and any("CMYK" in n for n in media.notes)
    Image.fromarray(_pixels((9, 9)) > 127).save(tmp_path / "b.png")
    media = io.load(str(tmp_path / "b.png"))
    assert media.samples.shape == (9, 9, 1) and set(np.unique(media.samples)) <= {-1.0, 1.0}
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)) for v in (0, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    media = io.load(str(tmp_path / "a.gif"))
    assert media.fmt == "gif" and any("first of 2" in n for n in media.notes)
    assert io.output_format("-", None, media.fmt) == "png"
    tall = Image.fromarray(_pixels((4, 7)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    tall.save(tmp_path / "r.jpg", exif=exif)
    media = io.load(str(tmp_path / "r.jpg"))
    assert media.samples.shape == (7, 4, 1) and any("EXIF" in n for n in media.notes)


def test_multipage_tiff_first_page(tmp_path):
    pages = [Image.fromarray(np.full((5, 5), v, np.uint8)) for v in (10, 20, 30)]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    media = io.load(str(tmp_path / "m.tif"))
    assert any("first of 3" in n for n in media.notes)
    assert np.allclose(media.samples, 10 / 127.5 - 1)


def test_decompression_bomb_is_input_error(tmp_path, monkeypatch):
    src = _write_pil(tmp_path / "big.png", _pixels((40, 40)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: warning level, treated as error
    with pytest.raises(InputError, match="too large"):
        io.load(src)


# ------------------------------------------------------------------------------------------------ audio


@pytest.mark.parametrize(
    ("ext", "container", "subtype", "channels", "exact"),
    [
        (".wav", "WAV", "PCM_16", 1, True),
        (".wav", "WAV", "PCM_16", 2, True),
        (".wav", "WAV", "PCM_24", 1, True),
        (".wav", "WAV", "PCM_24", 2, True),
        (".wav", "WAV", "FLOAT", 1, True),
        (".wav", "WAV", "FLOAT", 2, True),
        (".flac", "FLAC", "PCM_16", 2, True),
        (".flac", "FLAC", "PCM_24", 1, True),
        (".ogg", "OGG", "VORBIS", 2, False),
    ],
)
def test_audio_round_trip(tmp_path, ext, container, subtype, channels, exact):
    t = np.arange(4000) / 8000
    wave = np.stack([0.5 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)], axis=1)
    src = str(tmp_path / f"in{ext}")
    sf.write(src, wave, 8000, subtype=subtype, format=container)
    media, back, out = _resave(tmp_path, src, ext)
    assert media.domain == "audio" and media.samples.shape == (4000, channels)
    assert media.samples.dtype == np.float32 and media.sample_rate == 8000 and media.subtype == subtype
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (8000, channels, subtype)
    if exact:
        original, _ = sf.read(src, dtype="float64", always_2d=True)
        written, _ = sf.read(out, dtype="float64", always_2d=True)
        np.testing.assert_array_equal(written, original)
    else:
        n = min(len(back.samples), len(media.samples))
        assert np.abs(back.samples[:n] - media.samples[:n]).mean() < 0.05
    assert media.value_range == (None if subtype == "FLOAT" else (-1.0, 1.0))


def test_pcm_clips_and_bit_depth(tmp_path):
    media = io.Media(
        "audio", np.array([[2.0], [-3.0], [0.5]], np.float32), "wav", sample_rate=8000, subtype="PCM_16"
    )
    io.save(media, str(tmp_path / "c.wav"))
    data, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    assert list(data) == [32767, -32768, 16384]
    io.save(media, str(tmp_path / "d.wav"), bit_depth=24)
    assert sf.info(str(tmp_path / "d.wav")).subtype == "PCM_24"
    notes: list[str] = []
    io.save(media.with_samples(media.samples / 4), str(tmp_path / "f.flac"), notes=notes)
    assert sf.info(str(tmp_path / "f.flac")).subtype == "PCM_16"


def test_audio_from_stdin_bytes(tmp_path, monkeypatch):
    wav = pyio.BytesIO()
    sf.write(wav, np.zeros((100, 2)), 16000, subtype="PCM_16", format="WAV")

    class FakeStdin:
        buffer = pyio.BytesIO(wav.getvalue())

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    media = io.load("-")
    assert media.source == "<stdin>" and media.samples.shape == (100, 2) and media.sample_rate == 16000


def test_save_to_stdout_wav(monkeypatch):
    class FakeStdout:
        buffer = pyio.BytesIO()

    monkeypatch.setattr(sys, "stdout", FakeStdout())
    media = io.Media("audio", np.zeros((50, 1), np.float32), "wav", sample_rate=8000, subtype="PCM_16")
    assert io.save(media, "-") == "wav"
    assert FakeStdout.buffer.getvalue().startswith(b"RIFF")


def test_empty_audio_is_input_error(tmp_path):
    src = str(tmp_path / "empty.wav")
    sf.write(src, np.zeros((0, 1)), 8000, subtype="PCM_16")
    with pytest.raises(InputError, match=r"empty\.wav: audio has no samples"):
        io.load(src)


# ------------------------------------------------------------------------------------------------ signals


def test_csv_with_header_multicolumn(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("time,value\n0,0.1\n1,0.30000000000000004\n2,-1e-300\n")
    media, back, _out = _resave(tmp_path, str(src), ".csv")
    assert media.columns == ["time", "value"] and media.delimiter == "," and media.samples.shape == (3, 2)
    assert media.samples.dtype == np.float64 and media.dtype == "float64"
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "time,value"
    np.testing.assert_array_equal(back.samples, media.samples)
    assert back.samples[1, 1] == 0.30000000000000004


@pytest.mark.parametrize(
    ("text", "delimiter", "shape"),
    [
        ("1.5;2\n3;4\n", ";", (2, 2)),
        ("1.5\t2\n3\t4\n", "\t", (2, 2)),
        ("  1.5   2\n3 4\n", " ", (2, 2)),
        ("0.25\n0.5\n\n0.75\n", " ", (3, 1)),
    ],
)
def test_csv_delimiters(tmp_path, text, delimiter, shape):
    src = tmp_path / "d.csv"
    src.write_text(text)
    media, back, _ = _resave(tmp_path, str(src), ".csv")
    assert media.delimiter == delimiter and media.samples.shape == shape
    np.testing.assert_array_equal(back.samples, media.samples)


def test_txt_integers_stay_integers(tmp_path):
    src = tmp_path / "n.txt"
    src.write_text("value\n1\n-2\n3\n")
    media, _back, _ = _resave(tmp_path, str(src), ".txt")
    assert media.fmt == "txt" and media.dtype == "int64" and media.one_dimensional
    io.save(media.with_samples(media.samples + 0.4), str(tmp_path / "n2.txt"))
    assert (tmp_path / "n2.txt").read_text() == "value\n1\n-2\n3\n"


@pytest.mark.parametrize(
    ("array", "one_d"),
    [
        (np.linspace(-3, 7, 50), True),
        (RNG.normal(size=(30, 3)), False),
        (np.array([-32768, 0, 5, 32767], np.int16), True),
        (RNG.normal(size=(8, 2)).astype(np.float32), False),
    ],
)
def test_npy_round_trip(tmp_path, array, one_d):
    src = str(tmp_path / "a.npy")
    np.save(src, array)
    media, _, out = _resave(tmp_path, src, ".npy")
    assert media.one_dimensional == one_d and media.dtype == array.dtype.name
    assert media.samples.shape == (array.shape[0], 1 if array.ndim == 1 else array.shape[1])
    written = np.load(out)
    assert written.dtype == array.dtype and written.shape == array.shape
    np.testing.assert_array_equal(written, array)


def test_npy_int_rounds_and_clips(tmp_path):
    np.save(tmp_path / "i.npy", np.array([0, 1, 2], np.int16))
    media = io.load(str(tmp_path / "i.npy"))
    io.save(media.with_samples(np.array([[1e9], [-1e9], [1.6]])), str(tmp_path / "o.npy"))
    assert np.load(tmp_path / "o.npy").tolist() == [32767, -32768, 2]


def test_format_conversion_csv_to_npy(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("0.5\n1.5\n")
    media = io.load(str(src))
    assert io.save(media, str(tmp_path / "s.npy")) == "npy"
    assert np.load(tmp_path / "s.npy").tolist() == [0.5, 1.5]


# ------------------------------------------------------------------------------------------------ detection


def test_magic_bytes_beat_the_extension(tmp_path):
    lying = tmp_path / "photo.wav"
    Image.fromarray(_pixels((4, 4))).save(lying, format="PNG")
    media = io.load(str(lying))
    assert media.fmt == "png" and media.domain == "image" and any("extension" in n for n in media.notes)
    sound = tmp_path / "sound.png"
    sf.write(sound, np.zeros(10), 8000, format="FLAC")
    assert io.load(str(sound)).fmt == "flac"
    numbers = tmp_path / "numbers.npy"
    numbers.write_text("1\n2\n")
    assert io.load(str(numbers)).fmt == "csv"
    arr = tmp_path / "arr.csv"
    with open(arr, "wb") as handle:
        np.save(handle, np.arange(3.0))
    with open(arr, "rb") as handle:
        assert io.load_bytes(handle.read(), str(arr)).fmt == "npy"


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"BM" + bytes(12) + (40).to_bytes(4, "little"), "bmp"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"GIF89a", "gif"),
        (b"fLaC", "flac"),
        (b"OggS", "ogg"),
        (b"\x93NUMPY", "npy"),
        (b"BMI,weight\n1,2\n", "text"),
        (b"\x00\x01\x02\xff\xfe", None),
    ],
)
def test_detect_format(data, fmt):
    assert io.detect_format(data) == fmt


def test_output_format():
    assert io.output_format("a.JPG", None, "png") == "jpeg"
    assert io.output_format("a.png", "tif", "png") == "tiff"
    assert io.output_format("-", None, "wav") == "wav"
    assert io.output_format("noext", None, "csv") == "csv"
    for path, fmt, fallback in [
        ("a.xyz", None, "png"),
        ("-", None, None),
        ("a.png", "mp3", None),
        ("a.gif", None, "png"),
    ]:
        with pytest.raises(InputError):
            io.output_format(path, fmt, fallback)
    assert io.domain_of_format("flac") == "audio" and io.domain_of_format("npy") == "signal"


# ------------------------------------------------------------------------------------------------ writing


def test_atomic_write_refuses_to_clobber_and_leaves_no_temp(tmp_path):
    out = tmp_path / "o.bin"
    io.atomic_write_bytes(str(out), b"one")
    with pytest.raises(InputError, match="already exists.*--force"):
        io.atomic_write_bytes(str(out), b"two")
    assert out.read_bytes() == b"one"
    io.atomic_write_bytes(str(out), b"three", force=True)
    assert out.read_bytes() == b"three"
    assert sorted(os.listdir(tmp_path)) == ["o.bin"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not NamedTemporaryFile's 0600


def test_failed_encode_keeps_old_output_and_no_temp(tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    bad = io.Media("image", np.full((4, 4, 1), np.nan, np.float32), "png", scale=127.5, bit_depth=8)
    with pytest.raises(InputError, match=r"o\.png: result contains NaN"):
        io.save(bad, str(out), force=True)
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["o.png"]


def test_failed_write_removes_temp(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(InputError, match="No space left"):
        io.atomic_write_bytes(str(tmp_path / "o.bin"), b"x", force=True)
    assert os.listdir(tmp_path) == []


def test_check_output_path(tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    with pytest.raises(InputError, match="also an input"):
        io.check_output_path(str(tmp_path / "." / "in.png"), [str(src)], force=True)
    link = tmp_path / "link.png"
    link.symlink_to(src)
    with pytest.raises(InputError, match="also an input"):
        io.check_output_path(str(link), [str(src)], force=True)
    with pytest.raises(InputError, match="does not exist"):
        io.check_output_path(str(tmp_path / "missing" / "o.png"), [], force=False)
    with pytest.raises(InputError, match="is a directory"):
        io.check_output_path(str(tmp_path), [], force=True)
    io.check_output_path("-", ["-"], force=False)


def test_save_refuses_wrong_domain(tmp_path):
    media = io.Media("signal", np.zeros((3, 1)), "csv")
    with pytest.raises(InputError, match=r"^\S*o\.png: cannot write signal data as png"):
        io.save(media, str(tmp_path / "o.png"))


# ------------------------------------------------------------------------------------------------ bad inputs


def _bad_png(tmp_path) -> bytes:
    buffer = pyio.BytesIO()
    Image.fromarray(_pixels((32, 32, 3))).save(buffer, "PNG")
    return buffer.getvalue()[:200]


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("empty.png", b"", "empty file"),
        ("trunc.png", "TRUNCATED", "corrupt|truncated"),
        ("junk.bin", b"\x00\x01\x02\x03garbage", "unrecognised file format"),
        ("nan.csv", b"1\nnan\n3\n", "NaN or infinite"),
        ("inf.csv", b"1,2\n3,inf\n", "NaN or infinite"),
        ("word.csv", b"a,b\n1,2\n3,x\n", "line 3: 'x' is not a number"),
        ("hole.csv", b"1,2\n3,\n", "line 2: an empty cell"),
        ("ragged.csv", b"1,2\n3,4,5\n", "line 2 has 3 values, expected 2"),
        ("header.csv", b"time,value\n", "only a header"),
        ("obj.npy", "OBJECT", "Python objects"),
        ("cube.npy", "CUBE", "1-D"),
        ("trunc.npy", "TRUNCNPY", "truncated or corrupt|corrupt"),
        ("utf16.csv", "1,2\n3,4\n".encode("utf-16"), "UTF-16"),
        ("bad.wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", "corrupt or unsupported"),
    ],
)
def test_bad_inputs_raise_one_line_input_error(tmp_path, name, content, pattern):
    path = tmp_path / name
    if content == "TRUNCATED":
        content = _bad_png(tmp_path)
    elif content == "OBJECT":
        buffer = pyio.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        content = buffer.getvalue()
    elif content == "CUBE":
        buffer = pyio.BytesIO()
        np.save(buffer, np.zeros((2, 2, 2)))
        content = buffer.getvalue()
    elif content == "TRUNCNPY":
        buffer = pyio.BytesIO()
        np.save(buffer, np.zeros(100))
        content = buffer.getvalue()[:150]
    path.write_bytes(content)
    with pytest.raises(InputError, match=pattern) as info:
        io.load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and ";" in message


def test_missing_and_directory_and_empty_stdin(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no such file"):
        io.load(str(tmp_path / "nope.png"))
    with pytest.raises(InputError, match="is a directory"):
        io.load(str(tmp_path))

    class EmptyStdin:
        buffer = pyio.BytesIO(b"")

    monkeypatch.setattr(sys, "stdin", EmptyStdin())
    with pytest.raises(InputError, match="<stdin>: no data"):
        io.load("-")


# ------------------------------------------------------------------------------------------------ inputs


def test_expand_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.png", "d/a.wav", "d/sub/c.csv", "d/notes.md", "d/.hidden.png", "x.npy"):
        (tmp_path / name).write_bytes(b"1")
    found = io.expand_inputs([str(tmp_path / "d"), str(tmp_path / "*.npy"), str(tmp_path / "x.npy")])
    names = [os.path.relpath(p, tmp_path) for p in found]
    assert names == ["d/a.wav", "d/b.png", "d/sub/c.csv", "x.npy"]
    with pytest.raises(InputError, match="no such file"):
        io.expand_inputs([str(tmp_path / "missing.png")])
    with pytest.raises(InputError, match="matches no"):
        io.expand_inputs([str(tmp_path / "*.flac")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no supported files"):
        io.expand_inputs([str(tmp_path / "empty")])


# ------------------------------------------------------------------------------------------------ scaling


def test_robust_normalize_round_trip():
    x = np.stack(
        [RNG.normal(5.0, 2.0, 5000), np.full(5000, 3.0), np.r_[np.zeros(4900), np.ones(100)]], axis=1
    )
    z, centre, scale = io.robust_normalize(x)
    np.testing.assert_allclose(centre, [np.median(x[:, 0]), 3.0, 0.0])
    assert abs(scale[0] - 2.0) < 0.1 and scale[1] == 1.0 and scale[2] == pytest.approx(0.25)
    np.testing.assert_allclose(io.robust_denormalize(z, centre, scale), x, atol=1e-12)
    z1, c1, s1 = io.robust_normalize(np.arange(10.0))
    assert z1.shape == (10,) and c1.shape == (1,) and s1.shape == (1,)


def test_robust_normalize_keeps_float32_images():
    x = RNG.normal(size=(8, 8, 3)).astype(np.float32)
    z, centre, scale = io.robust_normalize(x)
    assert z.dtype == np.float32 and centre.shape == (3,) and scale.shape == (3,)


# ------------------------------------------------------------------------------------------------ properties

_FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@_FAST
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 4)), elements=_FINITE))
def test_property_csv_round_trip_is_exact(tmp_path, array):
    media = io.Media("signal", array, "csv", columns=None, delimiter=",", dtype="float64")
    back = io.load_bytes(io.encode(media, "csv"), "p.csv")
    assert back.samples.shape == array.shape
    np.testing.assert_array_equal(back.samples, array)


@_FAST
@given(
    hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.int16, np.uint8, np.int32]),  # int64 > 2**53 is lossy
        st.one_of(st.tuples(st.integers(1, 30)), st.tuples(st.integers(1, 30), st.integers(1, 3))),
        elements={"allow_nan": False, "allow_infinity": False},
    )
)
def test_property_npy_round_trip_is_exact(tmp_path, array):
    media = io.load_bytes(_npy_bytes(array), "p.npy")
    written = np.load(pyio.BytesIO(io.encode(media, "npy")))
    assert written.dtype == array.dtype and written.shape == array.shape
    np.testing.assert_array_equal(written, array)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = pyio.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@_FAST
@given(
    hnp.arrays(
        st.sampled_from([np.uint8, np.uint16]),
        st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([1, 3, 4])),
    )
)
def test_property_png_round_trip_is_exact(tmp_path, pixels):
    if pixels.dtype == np.uint16 or pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    buffer = pyio.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    media = io.load_bytes(buffer.getvalue(), "p.png")
    with Image.open(pyio.BytesIO(io.encode(media, "png"))) as written:
        assert np.array_equal(np.asarray(written), pixels)


def test_sensor_style_csv_keeps_whole_numbers_plain(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("time,value\n0,20.500\n30,-0.25\n60,1e-20\n")
    media, back, _out = _resave(tmp_path, str(src), ".csv")
    assert (tmp_path / "out.csv").read_text() == "time,value\n0,20.5\n30,-0.25\n60,1e-20\n"
    np.testing.assert_array_equal(back.samples, media.samples)


# ------------------------------------------------------------------------------------------------ text precision


def _three_decimal_log(n: int = 50) -> tuple[np.ndarray, np.ndarray, str]:
    t = np.arange(n) * 30
    temp = np.round(20 + np.sin(np.arange(n) / 7.0), 3)
    text = "time,temp\n" + "".join(f"{a},{b:.3f}\n" for a, b in zip(t, temp))
    return t, temp, text


def test_csv_output_keeps_the_input_decimals(tmp_path):
    """A 3-decimal column is written with 3 decimals (not 17 significant digits); an integer column stays integer."""
    t, temp, text = _three_decimal_log()
    src = tmp_path / "log.csv"
    src.write_text(text)
    media = io.load(str(src))
    changed = media.samples.copy()
    changed[:, 1] += np.random.default_rng(0).normal(0, 0.01, size=len(t))
    io.save(media.with_samples(changed), str(tmp_path / "out.csv"))
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "time,temp" and len(lines) == len(t) + 1
    for line, a, b in zip(lines[1:], t, changed[:, 1]):
        time_text, temp_text = line.split(",")
        assert time_text == str(a)
        assert len(temp_text.split(".")[1]) == 3, line
        assert abs(float(temp_text) - b) <= 0.0005 + 1e-12  # rounded to the input's resolution, not truncated


@pytest.mark.parametrize(
    "text",
    [
        "time,temp,pressure\n0,20.125,1013.50\n30,20.250,1013.25\n60,-0.500,1012.00\n",
        "a;b\r\n1.5e-05;-3\r\n2.25e-05;4\r\n",
        "0.10\t7\n0.25\t8\n",
        "x\n0.1\n0.30000000000000004\n-1e-300\n",
    ],
    ids=["decimals", "exponents-crlf-semicolon", "tabs-no-header", "shortest-repr"],
)
def test_unmodified_csv_round_trip_is_byte_identical(tmp_path, text):
    src = tmp_path / "in.csv"
    src.write_bytes(text.encode())
    media = io.load(str(src))
    io.save(media, str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_bytes() == text.encode()


def test_text_precision_never_writes_negative_zero(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("v\n0.500\n1.000\n")
    media = io.load(str(src))
    io.save(media.with_samples(np.array([[-0.0001], [2.0]])), str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text() == "v\n0.000\n2.000\n"


# ------------------------------------------------------------------------------------------------ array layout


def test_channels_first_npy_is_read_along_its_long_axis_and_written_back_as_it_was(tmp_path):
    arr = np.stack([np.sin(np.arange(3000) / (20.0 + 5 * c)) + 10 * c for c in range(3)])  # (3, 3000)
    np.save(tmp_path / "cf.npy", arr)
    media = io.load(str(tmp_path / "cf.npy"))
    assert media.samples.shape == (3000, 3) and media.time_axis == 1
    np.testing.assert_array_equal(media.samples, arr.T)
    assert any("3 channels of 3000 samples" in n and "axis 1" in n for n in media.notes), media.notes
    io.save(media, str(tmp_path / "out.npy"))
    written = np.load(tmp_path / "out.npy")
    assert written.shape == (3, 3000) and written.tobytes() == arr.tobytes()


def test_ambiguous_npy_layout_gets_a_note_and_axis_chooses(tmp_path):
    arr = np.arange(64 * 256, dtype=np.float32).reshape(64, 256)
    np.save(tmp_path / "a.npy", arr)
    media = io.load(str(tmp_path / "a.npy"))
    assert media.samples.shape == (256, 64) and media.time_axis == 1
    assert any("ambiguous" in n and "--axis 0" in n for n in media.notes), media.notes
    rows = io.load(str(tmp_path / "a.npy"), axis=0)
    assert rows.samples.shape == (64, 256) and rows.time_axis == 0
    assert not any("ambiguous" in n for n in rows.notes) and any("axis 0" in n for n in rows.notes)
    for m, name in ((media, "b.npy"), (rows, "c.npy")):
        io.save(m, str(tmp_path / name))
        written = np.load(tmp_path / name)
        assert written.dtype == arr.dtype and written.shape == arr.shape
        np.testing.assert_array_equal(written, arr)


def test_tall_npy_is_read_as_rows_of_samples_with_a_note(tmp_path):
    arr = RNG.normal(size=(4096, 2))
    np.save(tmp_path / "t.npy", arr)
    media = io.load(str(tmp_path / "t.npy"))
    assert media.samples.shape == (4096, 2) and media.time_axis == 0
    assert any("2 channels of 4096 samples" in n for n in media.notes)
    assert not any("ambiguous" in n for n in media.notes)
    np.save(tmp_path / "one.npy", arr[:, 0])
    assert io.load(str(tmp_path / "one.npy")).notes == []  # a 1-D array has one reading


def test_axis_one_reads_csv_rows_as_channels(tmp_path):
    src = tmp_path / "rows.csv"
    src.write_text("1.5,2.5,3.5,4.5\n10,20,30,40\n")
    media = io.load(str(src), axis=1)
    np.testing.assert_array_equal(media.samples, [[1.5, 10], [2.5, 20], [3.5, 30], [4.5, 40]])
    io.save(media, str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text() == "1.5,2.5,3.5,4.5\n10,20,30,40\n"


@pytest.mark.parametrize(("content", "axis", "pattern"), [
    ("1-d", 1, "1-D"), ("2-d", 2, "--axis 2"), ("header", 1, "header"),
])
def test_bad_axis_is_a_one_line_input_error(tmp_path, content, axis, pattern):
    if content == "header":
        path = tmp_path / "h.csv"
        path.write_text("a,b\n1,2\n3,4\n")
    else:
        path = tmp_path / "x.npy"
        np.save(path, np.zeros(10) if content == "1-d" else np.zeros((10, 2)))
    with pytest.raises(InputError, match=pattern) as err:
        io.load(str(path), axis=axis)
    assert "\n" not in str(err.value)


def test_axis_is_ignored_with_a_note_for_images(tmp_path):
    path = _write_pil(tmp_path / "g.png", _pixels((8, 8)), "PNG")
    media = io.load(path, axis=1)
    assert media.samples.shape == (8, 8, 1) and any("--axis" in n for n in media.notes)


# ------------------------------------------------------------------------------------------------ 16-bit colour


def _png_16(pixels: np.ndarray, filters=(0, 1, 2, 3, 4), interlace: bool = False) -> bytes:
    """A 16-bit colour PNG written here, independently of diffuse_cli (plain Python filters, spec §9)."""
    import struct
    import zlib

    def filtered(sub: np.ndarray) -> bytes:
        height, width, channels = sub.shape
        bpp = 2 * channels
        raw = sub.astype(">u2").view(np.uint8).reshape(height, width * bpp).astype(int).tolist()
        data = bytearray()
        for r, row in enumerate(raw):
            kind = filters[r % len(filters)]
            data.append(kind)
            for i, x in enumerate(row):
                a = row[i - bpp] if i >= bpp else 0
                b = raw[r - 1][i] if r else 0
                c = raw[r - 1][i - bpp] if r and i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                paeth = a if pa <= pb and pa <= pc else b if pb <= pc else c
                data.append((x - (0, a, b, (a + b) // 2, paeth)[kind]) % 256)
        return bytes(data)

    height, width, channels = pixels.shape
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    subs = [pixels[y::dy, x::dx] for x, y, dx, dy in passes] if interlace else [pixels]
    body = b"".join(filtered(s) for s in subs if s.size)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, {2: 4, 3: 2, 4: 6}[channels], 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def _check_16_bit(media: io.Media, pixels: np.ndarray) -> None:
    colour = pixels[:, :, :1] if pixels.shape[2] == 2 else pixels[:, :, :3]
    assert media.bit_depth == 16 and media.scale == 32767.5
    np.testing.assert_array_equal(np.rint((media.samples.astype(np.float64) + 1) * 32767.5), colour)
    if pixels.shape[2] in (2, 4):
        assert media.alpha.dtype == np.uint16
        np.testing.assert_array_equal(media.alpha, pixels[:, :, -1])
    else:
        assert media.alpha is None


@pytest.mark.parametrize("channels", [2, 3, 4], ids=["gray-alpha", "rgb", "rgba"])
@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "adam7"])
def test_16_bit_colour_png_round_trip_is_exact(tmp_path, channels, interlace):
    pixels = _pixels((13, 17, channels), np.uint16)
    pixels[0, 0] = 65535
    pixels[0, 1] = 300  # > 255: lost by an 8-bit reading
    src = tmp_path / "in.png"
    src.write_bytes(_png_16(pixels, interlace=interlace))
    media = io.load(str(src))
    _check_16_bit(media, pixels)
    io.save(media, str(tmp_path / "out.png"))
    _check_16_bit(io.load(str(tmp_path / "out.png")), pixels)
    assert io.load(str(tmp_path / "out.png")).bit_depth == 16
    with Image.open(tmp_path / "out.png") as written:  # a valid PNG to a third party too (Pillow: top 8 bits)
        assert written.size == (17, 13)
        if channels == 3:
            np.testing.assert_array_equal(np.asarray(written), (pixels >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [2, 3, 4], ids=["gray-alpha", "rgb", "rgba"])
@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_16_bit_colour_tiff_round_trip_is_exact(tmp_path, channels, planar):
    tifffile = pytest.importorskip("tifffile")  # a dependency of diffuse_cli
    pixels = _pixels((11, 9, channels), np.uint16)
    pixels[0, 0] = 4095
    stored = np.moveaxis(pixels, -1, 0) if planar == "separate" else pixels
    tifffile.imwrite(tmp_path / "in.tif", stored, photometric="rgb" if channels >= 3 else "minisblack",
                     planarconfig=planar, extrasamples=("unassalpha",) if channels in (2, 4) else None)
    media = io.load(str(tmp_path / "in.tif"))
    _check_16_bit(media, pixels)
    io.save(media, str(tmp_path / "out.tif"))
    written = tifffile.imread(tmp_path / "out.tif")
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, pixels)


def test_16_bit_tiff_orientation_is_applied(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pixels = _pixels((4, 6, 3), np.uint16)
    tifffile.imwrite(tmp_path / "o.tif", pixels, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    media = io.load(str(tmp_path / "o.tif"))
    _check_16_bit(media, np.rot90(pixels, -1))  # orientation 6: rotate 90 degrees clockwise to display
    assert "applied the EXIF orientation" in media.notes


def test_8_bit_colour_written_at_16_bits_on_request(tmp_path):
    pixels = _pixels((5, 7, 4))
    media = io.load(_write_pil(tmp_path / "in.png", pixels, "PNG"))
    notes: list[str] = []
    io.save(media, str(tmp_path / "out.png"), bit_depth=16, notes=notes)
    back = io.load(str(tmp_path / "out.png"))
    assert back.bit_depth == 16 and notes == []
    _check_16_bit(back, pixels.astype(np.uint16) * 257)


def test_16_bit_colour_to_jpeg_says_8_bit(tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(_png_16(_pixels((6, 6, 3), np.uint16)))
    notes: list[str] = []
    io.save(io.load(str(src)), str(tmp_path / "out.jpg"), notes=notes)
    assert any("8-bit" in n for n in notes)


def _lzw_tiff_16_bit_rgb(pixels: np.ndarray) -> bytes:
    """A tiny LZW-compressed 16-bit RGB TIFF, written by hand: every byte a 9-bit literal code (no table use)."""
    import struct

    data = pixels.astype("<u2").tobytes()
    codes = [256, *data, 257]  # clear, literals, end of information
    bits = "".join(format(code, "09b") for code in codes)
    bits += "0" * (-len(bits) % 8)
    strip = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    height, width, _ = pixels.shape
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, 0), (259, 3, 1, 5), (262, 3, 1, 2),
            (273, 4, 1, 0), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(strip)), (284, 3, 1, 1)]
    ifd_size = 2 + 12 * len(tags) + 4
    bits_at = 8 + ifd_size
    strip_at = bits_at + 6
    entries = b""
    for tag, kind, count, value in tags:
        value = {258: bits_at, 273: strip_at}.get(tag, value)
        packed = struct.pack("<HHI", tag, kind, count)
        entries += packed + (struct.pack("<HH", value, 0) if kind == 3 and tag != 258 else struct.pack("<I", value))
    return (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries + b"\x00" * 4
            + struct.pack("<HHH", 16, 16, 16) + strip)


def test_16_bit_colour_tiff_is_never_truncated_silently(tmp_path):
    """LZW needs imagecodecs in tifffile: without it the file is refused with the fix, never read as 8-bit."""
    pixels = _pixels((3, 4, 3), np.uint16)
    pixels[0, 0] = 40000
    src = tmp_path / "lzw.tif"
    src.write_bytes(_lzw_tiff_16_bit_rgb(pixels))
    try:
        media = io.load(str(src))
    except InputError as err:
        assert "imagecodecs" in str(err) and "16-bit" in str(err) and "\n" not in str(err)
    else:
        _check_16_bit(media, pixels)
