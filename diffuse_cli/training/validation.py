"""Validation during training: one-step denoising of fixed patches at a fixed noise level, scored by
PSNR (images) or SNR (audio, signals), the figure each epoch reports."""

from __future__ import annotations

import math

import keras
import numpy as np

from diffuse_cli import objectives
from diffuse_cli import schedule as sch


class Validator:
    """One-step denoising of fixed patches at ``sigma`` (model units): PSNR for images, SNR for 1D.

    ``x_t* = sqrt(ab*) x0 + sqrt(1 - ab*) eps`` with ``t* = sigma_to_t(sigma)``; ``x0_hat = predict_x0`` of the
    eps the network's output gives for the model's ``objective`` (:func:`objectives.predict_eps`).
    """

    def __init__(self, patches: np.ndarray, sigma: float, schedule: sch.Schedule, domain: str, seed: int,
                 objective: str = "eps", sigma_data: float = 0.5) -> None:
        self.objective, self.sigma_data = objective, sigma_data
        self.x0 = patches.astype(np.float64)
        self.domain = domain
        self.metric = "psnr" if domain == "image" else "snr"
        rng = np.random.default_rng([seed, 29])
        eps = rng.standard_normal(self.x0.shape)
        self.t = float(schedule.sigma_to_t(sigma))
        self.ab = float(schedule.alpha_bar_at(self.t))
        self.x_t = sch.q_sample(self.x0, eps, self.ab).astype(np.float32)
        self.sigma = sigma
        self.baseline = self.score(self.x_t / math.sqrt(self.ab))  # eps_hat = 0: the noisy input itself

    def score(self, x0_hat: np.ndarray) -> float:
        """PSNR of images on their [-1, 1] range (clipped), SNR of 1D data, in dB."""
        if self.domain == "image":
            mse = float(np.mean((np.clip(x0_hat, -1, 1) - self.x0) ** 2))
            return 10.0 * math.log10(4.0 / max(mse, 1e-20))
        err = float(np.sum((x0_hat - self.x0) ** 2))
        return 10.0 * math.log10(max(float(np.sum(self.x0**2)), 1e-20) / max(err, 1e-20))

    def __call__(self, model: keras.Model) -> float:
        outs = []
        for i in range(0, len(self.x_t), 16):
            xb = self.x_t[i : i + 16]
            t = np.full((len(xb),), self.t, np.float32)

            def network(fed: np.ndarray, t: np.ndarray = t) -> np.ndarray:
                return np.asarray(model([fed, t], training=False), dtype=np.float32)

            outs.append(objectives.predict_eps(network, xb, self.ab, self.objective, self.sigma_data))
        eps_hat = np.concatenate(outs).astype(np.float64)
        return self.score(sch.predict_x0(self.x_t, eps_hat, self.ab))
