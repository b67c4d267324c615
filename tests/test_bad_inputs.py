"""Bad input: exit code 2, one line on stderr naming the problem, no traceback, no output, input untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.helpers import diffuse, midtone_gray


def make_inputs(d):
    png = d / "ok.png"
    Image.fromarray(midtone_gray(32, 32)).save(png)
    good = png.read_bytes()
    (d / "empty.png").write_bytes(b"")
    (d / "trunc.png").write_bytes(good[: len(good) // 2])
    (d / "garbage.png").write_bytes(b"this is not an image at all\x00\x01\x02" * 10)
    (d / "nan.csv").write_text("value\n1.0\nnan\n3.0\n")
    (d / "text.csv").write_text("value\n1.0\nabc\n3.0\n")
    np.save(d / "inf.npy", np.array([1.0, np.inf, 2.0]))
    sf.write(d / "zero.wav", np.zeros((0,)), 16000)
    sf.write(d / "ok.wav", np.zeros(1000) + 0.1, 16000)
    (d / "trunc.wav").write_bytes((d / "ok.wav").read_bytes()[:30])
    (d / "folder").mkdir()
    return png


CASES = {
    "missing file": ["noise", "{d}/nope.png", "-o", "{d}/out.png", "--sigma", "5"],
    "empty file": ["noise", "{d}/empty.png", "-o", "{d}/out.png", "--sigma", "5"],
    "truncated png": ["noise", "{d}/trunc.png", "-o", "{d}/out.png", "--sigma", "5"],
    "garbage with png name": ["noise", "{d}/garbage.png", "-o", "{d}/out.png", "--sigma", "5"],
    "nan in csv": ["noise", "{d}/nan.csv", "-o", "{d}/out.csv", "--sigma", "5"],
    "text in csv": ["noise", "{d}/text.csv", "-o", "{d}/out.csv", "--sigma", "5"],
    "inf in npy": ["noise", "{d}/inf.npy", "-o", "{d}/out.npy", "--sigma", "5"],
    "zero-length wav": ["noise", "{d}/zero.wav", "-o", "{d}/out.wav", "--snr", "5"],
    "truncated wav": ["noise", "{d}/trunc.wav", "-o", "{d}/out.wav", "--snr", "5"],
    "folder as file": ["noise", "{d}/folder", "-o", "{d}/out.png", "--sigma", "5"],
    "negative sigma": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--sigma", "-3"],
    "sigma and snr": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--sigma", "3", "--snr", "4"],
    "unknown kind": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--kind", "pink"],
    "amount above 1": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--kind", "salt-pepper", "--amount", "1.5"],
    "diffusion without step": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--kind", "diffusion"],
    "step beyond T": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--kind", "diffusion", "--step", "2000"],
    "not a number": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--sigma", "lots"],
    "output is input": ["noise", "{d}/ok.png", "-o", "{d}/ok.png", "--sigma", "5", "--force"],
    "missing output folder": ["noise", "{d}/ok.png", "-o", "{d}/no/such/dir/out.png", "--sigma", "5"],
    "unknown output format": ["noise", "{d}/ok.png", "-o", "{d}/out.xyz", "--sigma", "5"],
    "stdin empty": ["noise", "-", "-o", "{d}/out.png", "--sigma", "5"],
    "bad bit depth": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--sigma", "5", "--bit-depth", "12"],
    "encode bad steps": ["encode-steps", "--steps", "5:1", "-o", "{d}/out.npy"],
    "encode bad dim": ["encode-steps", "--steps", "1,2", "--dim", "0", "-o", "{d}/out.npy"],
    "encode bad extension": ["encode-steps", "--steps", "1,2", "-o", "{d}/out.xyz"],
    "encode missing model": ["encode-steps", "--steps", "1,2", "--model", "{d}/nomodel"],
    "unknown option": ["noise", "{d}/ok.png", "-o", "{d}/out.png", "--sigmaa", "5"],
}


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    make_inputs(d)
    return d


def digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, inputs_dir):
    before = digest(inputs_dir)
    args = [a.format(d=inputs_dir) for a in CASES[name]]
    r = diffuse(*args)
    assert r.returncode == 2, (name, r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, (name, r.stderr)
    assert "Traceback" not in r.stderr and lines[0].startswith("diffuse: error:")
    assert r.stdout == ""
    after = digest(inputs_dir)
    assert after == before, f"{name}: inputs changed or output written: {set(after) ^ set(before)}"


def test_existing_output_needs_force(inputs_dir, tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    r = diffuse("noise", inputs_dir / "ok.png", "-o", out, "--sigma", "5")
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"keep me"
    assert diffuse("noise", inputs_dir / "ok.png", "-o", out, "--sigma", "5", "--force").returncode == 0
    assert Image.open(out).size == (32, 32)


def test_error_names_the_file(inputs_dir):
    r = diffuse("noise", inputs_dir / "trunc.png", "-o", inputs_dir / "x.png", "--sigma", "5")
    assert "trunc.png" in r.stderr
