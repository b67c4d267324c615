"""The sinusoidal step encoding equals the seed's function; --steps parsing."""

import numpy as np
import pytest

from diffuse_cli.encoding import parse_steps, sinusoidal_step_encoding


def seed_sinusoidal_step_encoding(t, d_model):
    """Copied from the seed chapter (9.2.4), unchanged."""
    angle_rates = 1 / np.power(10000, (2 * (np.arange(d_model) // 2)) / np.float32(d_model))
    angle_rads = t * angle_rates
    angle_rads[:, 0::2] = np.sin(angle_rads[:, 0::2])
    angle_rads[:, 1::2] = np.cos(angle_rads[:, 1::2])
    return angle_rads


@pytest.mark.parametrize("d_model", [1, 2, 7, 16, 128])
def test_matches_seed(d_model):
    t = np.array([0, 1, 5, 10.5, 999.25]).reshape(-1, 1)
    np.testing.assert_allclose(sinusoidal_step_encoding(t, d_model), seed_sinusoidal_step_encoding(t, d_model),
                               atol=1e-6)


def test_even_sin_odd_cos():
    enc = sinusoidal_step_encoding(np.array([3.0]), 4)
    rate2 = 1 / 10000 ** (2 / 4)
    np.testing.assert_allclose(enc[0], [np.sin(3), np.cos(3), np.sin(3 * rate2), np.cos(3 * rate2)])


def test_parse_steps():
    np.testing.assert_array_equal(parse_steps("0,5,10.5"), [0, 5, 10.5])
    np.testing.assert_array_equal(parse_steps("0:10:2"), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(parse_steps("3:6"), [3, 4, 5])
    for bad in ["", "a,b", "5:1", "0:10:0", "-1,2", "1:2:3:4", "nan"]:
        with pytest.raises(ValueError):
            parse_steps(bad)


def test_parse_steps_refuses_a_huge_range_before_allocating(monkeypatch):
    """0:1e12 would allocate 8 TB: the count is computed arithmetically and refused first."""
    calls = []
    real_arange = np.arange
    monkeypatch.setattr(np, "arange", lambda *a, **k: calls.append(a) or real_arange(*a, **k))
    with pytest.raises(ValueError, match=r"too many steps \(1000000000000\).*STEP"):
        parse_steps("0:1e12")
    with pytest.raises(ValueError, match="too many steps"):
        parse_steps("0:1:1e-9")
    assert calls == []
    assert len(parse_steps("0:100000")) == 100_000


@pytest.mark.parametrize("bad", ["0:inf", "nan:5", "0:10:nan", "-inf:0"])
def test_parse_steps_refuses_non_finite_range_ends(bad):
    with pytest.raises(ValueError):
        parse_steps(bad)
