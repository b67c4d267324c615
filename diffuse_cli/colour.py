"""Colour: the opponent (luma/chroma) transform and the luma that training and denoising share.

numpy only. A gray model cleans a colour image channel by channel in the opponent space (as CBM3D
does), and a gray model is trained on the luma of colour photos: both use the first opponent row,
``luma = (R + G + B) / 3``, so the network sees at inference what it saw in training.
"""

from __future__ import annotations

import numpy as np

# Luma and two chroma channels, each scaled into the RGB range (sum of |row| = 1) so a gray model
# sees values like a gray image's. The rows are orthogonal, so i.i.d. RGB noise of std s stays
# independent across channels, with std s * |row|.
OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / 2, 0.0, -1 / 2], [1 / 4, -1 / 2, 1 / 4]])
OPPONENT_INVERSE = np.linalg.inv(OPPONENT)
OPPONENT_NOISE_GAIN = np.sqrt((OPPONENT**2).sum(axis=1))  # noise std of channel k over the RGB noise std


def to_opponent(rgb: np.ndarray, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """``(..., 3)`` RGB -> opponent channels: ``o = rgb @ OPPONENT.T`` (computed in ``dtype``)."""
    return np.asarray(rgb, dtype=dtype) @ OPPONENT.T.astype(dtype)


def from_opponent(opp: np.ndarray, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Inverse of :func:`to_opponent`: ``rgb = o @ inv(OPPONENT).T`` (computed in ``dtype``)."""
    return np.asarray(opp, dtype=dtype) @ OPPONENT_INVERSE.T.astype(dtype)


def luma(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB -> ``(..., 1)`` luma, the first opponent channel: ``(R + G + B) / 3``.

    Keeps a float input's dtype (float32 stays float32); other inputs give float64.
    """
    rgb = np.asarray(rgb)
    dtype = rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float64
    return (rgb.astype(dtype, copy=False) @ OPPONENT[0].astype(dtype))[..., None]
