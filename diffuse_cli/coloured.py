"""Coloured noise and mains hum made into what a white-noise denoiser can clean.

numpy only. A step-conditioned model trained on white Gaussian noise removes noise of one level ``sigma``
at every frequency. Real recordings bring coloured noise (fans, rumble, pink noise) and hum: much more
noise in some bands than in others. :func:`prepare_for_white_model` turns such a signal into speech plus
approximately white noise at the level of the quiet bands (the floor), so the model is run at that
floor's sigma, and nothing has to be undone afterwards:

1. hum: a mains fundamental (45-65 Hz) with harmonics is detected and its tones are subtracted
   (:func:`remove_hum`), a least-squares fit per half second that follows amplitude, phase and drift;
2. the noise PSD ``N_k`` is estimated (:func:`diffuse_cli.spectrum.estimate_noise_psd`) and its floor ``F``
   (a low quantile over the speech band) taken as the white part;
3. the excess ``N_k - F`` is removed per time-frequency bin by a Wiener gain with decision-directed a
   priori SNR (Ephraim and Malah 1984), which leaves white noise of about ``F``; below 50 Hz, where speech
   has no energy, a strong excess (rumble, drift) is cut.

Whitening instead (scaling every bin to the same noise level, running the model, and scaling back)
amplifies the model's errors in the bins it scaled down by as much as it scaled them, which undoes the
gain on steep spectra (brown noise, fan hum); the excess gain is never undone, so it has no such step.

A bin's noise estimate is raised by speech that never pauses in it, which would make white noise look
coloured there. An excess is therefore trusted where the noise is a large share of the bin's mean power
(``reliability``), and everywhere once the trusted bins show a clear excess (``colour``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from diffuse_cli import spectrum as sp

HUM_FUNDAMENTALS = (50.0, 60.0)  # mains frequencies; the fundamental is refined within +-2 Hz of them
HUM_RANGE = (45.0, 65.0)  # ... and within this range
HUM_PROMINENCE_DB = 8.0  # a harmonic is hum when its 1 Hz-wide peak stands this far above its +-12 Hz
HUM_MIN_HARMONICS = 2  # ... and hum needs at least this many such harmonics
HUM_MAX_HZ = 2000.0  # harmonics above this are left to the noise estimate
HUM_BLOCK_SECONDS = 0.5  # least-squares fit of the tones per block (50% overlap)
HUM_SEGMENT_SECONDS = 10.0  # the fundamental is refined per segment of this length (it drifts)

FLOOR_BAND_HZ = (150.0, 0.975)  # the floor is taken over 150 Hz .. 0.975 x Nyquist
FLOOR_QUANTILE = 0.4  # the floor F: this quantile of N_k over that band
EXCESS_DEAD_ZONE = 2.0  # bins with N_k <= 2 F (3 dB) are left alone: white noise's estimate scatters
DD_SMOOTHING = 0.8  # decision-directed weight of the previous frame's estimate
RELIABLE_SHARE = (0.3, 0.7)  # noise share N_k / mean power at which an excess starts / is fully trusted
COLOUR_DB = (2.0, 6.0)  # excess (dB) in the trusted bins from which all excess starts / is fully trusted
COLOUR_TOP = 0.03  # ... measured as the mean of this top fraction of the band's bins
LOWCUT_HZ = 50.0  # below this, a noise estimate 100x (20 dB) above the floor is removed entirely:
LOWCUT_EXCESS = 100.0  # rumble and drift reach this; the low quantile of clean speech there stays below


# --------------------------------------------------------------------------- hum


@dataclass(frozen=True)
class Hum:
    """Detected mains hum: the fundamental (Hz, per segment) and the harmonic numbers removed."""

    f0: tuple[float, ...]  # one per HUM_SEGMENT_SECONDS segment
    harmonics: tuple[int, ...]

    def report(self) -> dict:
        """For ``--json``: the mean fundamental and the harmonics."""
        return {"f0_hz": round(float(np.mean(self.f0)), 3), "harmonics": list(self.harmonics)}


def _welch(x: np.ndarray, sample_rate: float, seconds: float = 1.0) -> tuple[np.ndarray, float]:
    """Mean Hann-windowed periodogram of 50%-overlapping segments of about ``seconds`` (at most 64 evenly
    spread), and its bin spacing in Hz."""
    length = min(len(x), 1 << int(round(math.log2(seconds * sample_rate))))
    starts = np.linspace(0, len(x) - length, max(1, min(64, 2 * len(x) // length - 1))).round().astype(int)
    w = np.hanning(length)
    power = np.zeros(length // 2 + 1)
    for s in starts:
        power += np.abs(np.fft.rfft(x[s : s + length] * w)) ** 2
    return power / len(starts), sample_rate / length


def _prominence_db(power: np.ndarray, df: float, freq: float) -> float:
    """Peak power within +-1 Hz of ``freq`` over the median power 3-12 Hz either side, in dB."""
    k = int(round(freq / df))
    near, far_lo, far_hi = max(1, int(round(1.0 / df))), int(round(3.0 / df)), int(round(12.0 / df))
    if k + far_hi >= len(power) or k - far_hi < 0:
        return -math.inf
    peak = power[k - near : k + near + 1].max()
    ref = np.median(np.r_[power[k - far_hi : k - far_lo], power[k + far_lo + 1 : k + far_hi + 1]])
    return 10 * math.log10(peak / ref) if ref > 0 and peak > 0 else -math.inf


def _refine_f0(x: np.ndarray, sample_rate: float, guess: float, harmonics: list[int], span: float) -> float:
    """The fundamental maximising ``sum_h P(h f0) / max P(h .)`` over ``guess +- span`` Hz (a 0.002 Hz grid),
    ``P`` the periodogram of the Hann-windowed ``x`` zero-padded to at least twice its length, linearly
    interpolated between bins."""
    nfft = 1 << int(math.ceil(math.log2(2 * len(x))))
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft)) ** 2
    bins = np.arange(len(power), dtype=np.float64)
    grid = np.arange(max(HUM_RANGE[0], guess - span), min(HUM_RANGE[1], guess + span) + 1e-9, 0.002)
    score = np.zeros(len(grid))
    for h in harmonics[:8]:
        at = np.interp(h * grid * nfft / sample_rate, bins, power)
        score += at / max(float(at.max()), 1e-300)
    return float(grid[int(np.argmax(score))])


def detect_hum(x: np.ndarray, sample_rate: float) -> Hum | None:
    """Mains hum in ``x``: for each of 50 and 60 Hz, the harmonics ``h f`` below ``HUM_MAX_HZ`` whose peak in
    a 1 s Welch spectrum is ``HUM_PROMINENCE_DB`` above its surroundings (speech harmonics move with the
    pitch and are smeared by the averaging; hum stays put). The family with more such harmonics wins
    (at least ``HUM_MIN_HARMONICS``); its fundamental is refined (:func:`_refine_f0`), the harmonics
    looked up again at it, and the fundamental refined per ``HUM_SEGMENT_SECONDS`` segment. None when
    there is no hum or the signal is shorter than 1 s."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < sample_rate:
        return None
    power, df = _welch(x, sample_rate)

    def prominent(f0: float) -> list[int]:
        top = int(min(HUM_MAX_HZ, 0.45 * sample_rate) // f0)
        return [h for h in range(1, top + 1) if _prominence_db(power, df, h * f0) > HUM_PROMINENCE_DB]

    best: tuple[float, list[int]] | None = None
    for base in HUM_FUNDAMENTALS:
        found = prominent(base)
        if len(found) >= HUM_MIN_HARMONICS and (best is None or len(found) > len(best[1])):
            best = (base, found)
    if best is None:
        return None
    base, harmonics = best
    seg = int(HUM_SEGMENT_SECONDS * sample_rate)
    guess = _refine_f0(x[: min(len(x), seg)], sample_rate, base, harmonics, 2.0)
    harmonics = prominent(guess) or harmonics  # high harmonics sit where the refined f0 puts them
    f0 = []
    for a in range(0, len(x), seg):
        piece = x[a : a + seg]
        f0.append(_refine_f0(piece, sample_rate, guess, harmonics, 0.3) if len(piece) >= sample_rate else guess)
    return Hum(tuple(f0), tuple(harmonics))


def hum_waveform(x: np.ndarray, sample_rate: float, hum: Hum) -> np.ndarray:
    """The hum's tones in ``x``: per block of ``HUM_BLOCK_SECONDS`` (hop half a block, window
    ``w = sin^2``, which sums to 1 over the overlaps), the least-squares fit
    ``min_c sum_n w[n] (x[n] - sum_h a_h cos(2 pi h f0 t_n) + b_h sin(2 pi h f0 t_n))^2``, ``f0`` the
    block's segment's fundamental; the fits are overlap-added with ``w``."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    block = max(16, int(round(HUM_BLOCK_SECONDS * sample_rate)) // 2 * 2)
    hop = block // 2
    w = np.sin(np.pi * (np.arange(block) + 0.5) / block) ** 2
    padded = np.zeros(n + 2 * block)
    padded[block : block + n] = x
    out = np.zeros_like(padded)
    h = np.asarray(hum.harmonics, dtype=np.float64)
    seg = int(HUM_SEGMENT_SECONDS * sample_rate)
    for a in range(0, n + block, hop):
        centre = min(max(a - block + hop, 0), n - 1)
        f0 = hum.f0[min(centre // seg, len(hum.f0) - 1)]
        t = (np.arange(a, a + block) - block) / sample_rate
        phase = 2 * np.pi * f0 * t[:, None] * h[None, :]
        basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1)
        weighted = basis * w[:, None]
        coef, *_ = np.linalg.lstsq(weighted.T @ basis, weighted.T @ padded[a : a + block], rcond=None)
        out[a : a + block] += (basis @ coef) * w
    return out[block : block + n]


def remove_hum(x: np.ndarray, sample_rate: float) -> tuple[np.ndarray, Hum | None]:
    """``x`` less its mains hum (:func:`detect_hum`, :func:`hum_waveform`); ``x`` itself when there is none."""
    hum = detect_hum(x, sample_rate)
    if hum is None:
        return np.asarray(x, dtype=np.float64), None
    return np.asarray(x, dtype=np.float64) - hum_waveform(x, sample_rate, hum), hum


# --------------------------------------------------------------------------- excess noise


def noise_floor(noise: sp.NoiseSpectrum, quantile: float = FLOOR_QUANTILE) -> float:
    """The white part of the noise, ``F = Q_q(N_k)`` over the bins from 150 Hz to 0.975 x Nyquist (the
    speech band of a 16 kHz model)."""
    f = noise.frequencies
    band = (f >= FLOOR_BAND_HZ[0]) & (f <= FLOOR_BAND_HZ[1] * noise.sample_rate / 2)
    return float(np.quantile(noise.psd[band], quantile))


def reliability(noise_psd: np.ndarray, mean_power: np.ndarray) -> np.ndarray:
    """How far a bin's noise estimate can be trusted, 0..1: the noise share ``r_k = N_k / mean_l P[l, k]``
    (averaged over 5 neighbouring bins) mapped linearly from ``RELIABLE_SHARE[0]`` (0) to
    ``RELIABLE_SHARE[1]`` (1). Where speech dominates a bin, its estimate is mostly speech."""
    share = noise_psd / np.maximum(mean_power, 1e-300)
    share = np.convolve(np.pad(share, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    lo, hi = RELIABLE_SHARE
    return np.clip((share - lo) / (hi - lo), 0.0, 1.0)


def colour_weight(noise: sp.NoiseSpectrum, floor: float, trust: np.ndarray) -> float:
    """0..1, how clearly the trusted bins show coloured noise: ``e`` = mean of the top ``COLOUR_TOP`` of
    ``trust_k * 10 log10(max(N_k, F) / F)`` over the floor's band, mapped linearly from ``COLOUR_DB[0]``
    (0) to ``COLOUR_DB[1]`` (1)."""
    f = noise.frequencies
    band = (f >= FLOOR_BAND_HZ[0]) & (f <= FLOOR_BAND_HZ[1] * noise.sample_rate / 2)
    excess_db = trust[band] * 10 * np.log10(np.maximum(noise.psd[band], floor) / floor)
    top = max(1, int(round(COLOUR_TOP * excess_db.size)))
    e = float(np.mean(np.sort(excess_db)[-top:]))
    lo, hi = COLOUR_DB
    return float(np.clip((e - lo) / (hi - lo), 0.0, 1.0))


class ExcessWiener:
    """Gains that remove the noise in excess of a white floor ``F``, frame by frame (the state is the
    previous frame's estimate, so blocks of frames must come in order).

    Per bin with ``N_k > kappa F`` and excess ``E_k = N_k - F``: ``G = xi / (1 + xi)`` with the
    decision-directed a priori SNR ``xi[l] = max(a G[l-1]^2 P[l-1] / E + (1 - a) max(P[l] / E - 1, 0),
    F / E, g_min / (1 - g_min))`` (what is kept, speech plus the white floor, is never less than ``F``;
    ``g_min`` is the least gain); ``G = 1`` elsewhere, and ``G = 0`` in the ``cut`` bins. ``P`` is
    :func:`diffuse_cli.spectrum.periodogram`. With ``F = 0`` this is the classic decision-directed Wiener
    filter.
    """

    def __init__(self, noise: np.ndarray | Callable[[int, int], np.ndarray], floor: float, frame: int,
                 cut: np.ndarray | None = None, smoothing: float = DD_SMOOTHING,
                 dead_zone: float = EXCESS_DEAD_ZONE, min_gain: float = 0.0) -> None:
        self.noise = noise  # (bins,), or noise(first, count) -> (count, bins) for a tracked estimate
        self.floor, self.frame, self.smoothing, self.dead_zone = floor, frame, smoothing, dead_zone
        self.xi_min = min_gain / (1.0 - min_gain)
        self.cut = cut
        self.prev: np.ndarray | None = None

    def __call__(self, spec: np.ndarray, first: int) -> np.ndarray:
        power = sp.periodogram(spec, self.frame)
        noise = self.noise(first, power.shape[0]) if callable(self.noise) else self.noise
        noise = np.broadcast_to(noise, power.shape)
        gains = np.ones(power.shape)
        prev = np.zeros(power.shape[1]) if self.prev is None else self.prev
        a = self.smoothing
        active = (noise > self.dead_zone * self.floor) & (noise > self.floor)
        inv_excess = np.where(active, 1.0 / np.where(active, noise - self.floor, 1.0), 0.0)
        xi_low = np.maximum(self.floor * inv_excess, self.xi_min)
        cols = np.flatnonzero(active.any(axis=0))  # only bins with an excess somewhere need the recursion
        p, inv, low, act = power[:, cols], inv_excess[:, cols], xi_low[:, cols], active[:, cols]
        prev_c = prev[cols]
        for i in range(power.shape[0]):
            xi = np.maximum(a * prev_c * inv[i] + (1 - a) * np.maximum(p[i] * inv[i] - 1.0, 0.0), low[i])
            g = np.where(act[i], xi / (1.0 + xi), 1.0)
            gains[i, cols] = g
            prev_c = g * g * p[i]
        prev = np.zeros(power.shape[1])
        prev[cols] = prev_c
        self.prev = prev
        if self.cut is not None:
            gains[:, self.cut] = 0.0
        return gains


@dataclass
class Prepared:
    """What :func:`prepare_for_white_model` made of a signal.

    ``signal``: for the white-noise model, to be cleaned at ``sigma`` (same units as the input). When
    ``coloured`` is False nothing was changed (``signal`` is the input) and ``sigma`` is None: use the
    plain white-noise path with its own estimate.
    """

    signal: np.ndarray
    sigma: float | None
    coloured: bool
    noise: sp.NoiseSpectrum
    floor: float
    colour: float
    hum: Hum | None = None
    lowcut_hz: float | None = None
    notes: list[str] = field(default_factory=list)

    def report(self, scale: float = 1.0) -> dict:
        """For ``--json`` (sigmas times ``scale``, the file units per model unit): the noise per octave
        band, the floor, whether the noise was treated as coloured, the hum and the low cut."""
        return {
            "noise_colour": "coloured" if self.coloured else "white",
            "noise_floor_sigma": scale * math.sqrt(max(self.floor, 0.0)),
            "noise_sigma_total": scale * math.sqrt(max(sp.noise_variance(self.noise.psd), 0.0)),
            "colour_weight": round(self.colour, 3),
            "noise_bands": sp.octave_bands(self.noise, scale),
            "hum": self.hum.report() if self.hum is not None else None,
            "lowcut_hz": self.lowcut_hz,
        }


def prepare_for_white_model(x: np.ndarray, sample_rate: float) -> Prepared:
    """Hum removed, then the noise in excess of the white floor removed, so that what is left is speech
    plus roughly white noise of variance ``F`` (:func:`noise_floor`): clean the result at
    ``sigma = sqrt(F)`` with the white-noise model.

    Per bin the trusted noise is ``N'_k = F + c_k max(N_k - F, 0)``, ``c_k = max(reliability_k, colour)``
    (:func:`reliability`, :func:`colour_weight`), removed by :class:`ExcessWiener`; bins below
    ``LOWCUT_HZ`` with ``N_k > 100 F`` are cut. The noise is taken as stationary (one ``F``, one model
    sigma). With no hum, no trusted excess and nothing to cut, the input is returned unchanged
    (``coloured`` False).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"prepare_for_white_model takes a 1D signal, got shape {x.shape}")
    frame, hop = sp.frame_for_rate(sample_rate)
    y, hum = remove_hum(x, sample_rate)
    noise = sp.estimate_noise_psd(y, sample_rate, frame, hop)
    floor = noise_floor(noise)
    if not floor > 0:  # digital silence or a constant under the hum, if any: no noise left to remove
        return Prepared(y, 0.0, True, noise, 0.0, 0.0, hum) if hum else Prepared(x, None, False, noise, 0.0, 0.0)
    trust = reliability(noise.psd, noise.mean_power)
    colour = colour_weight(noise, floor, trust)
    weight = np.maximum(trust, colour)
    f = noise.frequencies
    cut = (f < LOWCUT_HZ) & (noise.psd > LOWCUT_EXCESS * floor)
    trusted = floor + weight * np.maximum(noise.psd - floor, 0.0)
    excess = bool(np.any(trusted > EXCESS_DEAD_ZONE * floor))
    if hum is None and not excess and not cut.any():
        return Prepared(x, None, False, noise, floor, colour)
    gains = ExcessWiener(trusted, floor, frame, cut)
    signal = sp.filter_frames(y, gains, frame, hop) if (excess or cut.any()) else y
    notes = []
    if hum is not None:
        notes.append(f"mains hum at {np.mean(hum.f0):.2f} Hz removed ({len(hum.harmonics)} harmonics)")
    if excess:
        notes.append("coloured noise: excess over the white floor removed before the model")
    lowcut = LOWCUT_HZ if cut.any() else None
    return Prepared(signal, math.sqrt(floor), True, noise, floor, colour, hum, lowcut, notes)
