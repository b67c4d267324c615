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
