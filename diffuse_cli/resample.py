"""Sample-rate conversion for audio models trained at one rate (e.g. 16 kHz speech).

soxr (libsoxr, the resampler of SoX and FFmpeg's high-quality option) is used instead of a hand-written
polyphase filter: its 'HQ' filter keeps the pass band flat and aliasing below -100 dB.
"""

from __future__ import annotations

import numpy as np


def resample(x: np.ndarray, from_rate: int, to_rate: int, length: int | None = None) -> np.ndarray:
    """``x`` (samples, channels) at ``from_rate`` -> ``to_rate``; ``length`` trims or zero-pads the result.

    The output has ``ceil(n * to_rate / from_rate)`` samples unless ``length`` is given (used on the way
    back, so a round trip returns exactly the input's sample count).
    """
    import soxr

    x = np.asarray(x)
    if from_rate == to_rate:
        y = np.array(x, dtype=np.float64)
    else:
        y = soxr.resample(np.ascontiguousarray(x, dtype=np.float64), int(from_rate), int(to_rate), quality="HQ")
    if length is not None:
        if y.shape[0] >= length:
            y = y[:length]
        else:
            pad = [(0, length - y.shape[0])] + [(0, 0)] * (y.ndim - 1)
            y = np.pad(y, pad)
    return y


def noise_std_factor(from_rate: int, to_rate: int) -> float:
    """What resampling does to white noise's std: ``s -> s * sqrt(min(1, to_rate / from_rate))``.

    White noise of std ``s`` at rate R1 spreads its power evenly up to R1 / 2. Down to R2 < R1, the ideal
    low-pass keeps the share R2 / R1 of it, and the noise is white again at R2 (the same power density
    inside the band). Up to R2 > R1, the power is kept, but it lies below R1 / 2 only.
    """
    return float(np.sqrt(min(1.0, to_rate / from_rate)))

