"""Synthetic 1D series for training the bundled ``signal`` model (numpy only, no real data).

Each family is a pure function ``family(n, rng) -> (n,) float64`` that draws its own parameters, and
above all its own time scale: a feature (a cycle, a beat, a step, a correlation length) spans from a
couple of samples to the whole series, log-uniformly, because a model cannot know how densely a
user's series was sampled. :func:`compose` sums one to three families with random weights, may
quantise the result, and puts it in random units with a random offset; :func:`generate` draws a batch.

The series are clean: training adds the Gaussian noise itself. Families:

======================  ========================================================================
``trend``               polynomial, exponential, logistic or piecewise-linear drift
``seasonal``            periodic cycle of a few harmonics (one or two periods), slowly modulated
``steps``               level shifts and regimes: piecewise constant, instant or ramped changes
``spikes``              ECG-like beats (P, QRS, T waves), neural spike trains, decaying events, peaks
``oscillation``         sines, square, triangle and sawtooth waves, ringing (damped) oscillations
``chirp``               frequency sweeps (linear or exponential) under a smooth envelope
``random_walk``         Brownian (Gaussian or heavy-tailed steps), integrated and geometric walks
``arma``                stationary AR(1), AR(2) (quasi-periodic) and ARMA(2, 1) texture, with volatility
``bandlimited``         band-pass filtered noise, like EEG rhythms or a seismometer's background
``burst``               transient bursts of band-limited noise with a decaying coda (seismic arrivals)
``smooth``              Gaussian-process curves with a squared-exponential correlation length
``power_law``           1/f^beta noise, beta from 0.5 (pinkish) to 4 (very smooth)
======================  ========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Family = Callable[[int, np.random.Generator], np.ndarray]

# Relative weight of each family when a composition picks its components.
FAMILY_WEIGHTS = {
    "trend": 0.8,
    "seasonal": 1.0,
    "steps": 1.0,
    "spikes": 1.0,
    "oscillation": 1.0,
    "chirp": 0.6,
    "random_walk": 1.0,
    "arma": 1.0,
    "bandlimited": 1.0,
    "burst": 0.7,
    "smooth": 1.0,
    "power_law": 0.8,
}
QUANTISE_PROBABILITY = 0.3
MAX_PEAK_TO_MAD = 12.0  # std / (1.4826 MAD) above this gets a background (see compose)


# ------------------------------------------------------------------------------------------- helpers


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """``exp(U(log lo, log hi))``: scale-free draw between lo and hi."""
    lo, hi = float(lo), float(max(hi, lo))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _unit(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` (a constant stays 0)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    s = float(x.std())
    return x / s if s > 0 else x


def _filtered_noise(n: int, gain: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator,
                    pad: int | None = None) -> np.ndarray:
    """White noise shaped in frequency: ``irfft(rfft(w) * gain(f))`` with ``f`` in cycles/sample.

    Rendered over ``n + 2 pad`` samples and cropped to the middle, so the circular wrap of the FFT
    does not join the ends (``pad`` defaults to n, capped at 2^16).
    """
    pad = min(n, 1 << 16) if pad is None else int(pad)
    m = n + 2 * pad
    w = rng.standard_normal(m)
    f = np.fft.rfftfreq(m)
    x = np.fft.irfft(np.fft.rfft(w) * gain(f), m)
    return x[pad : pad + n]


def gaussian_smooth_noise(n: int, length: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary Gaussian process with squared-exponential correlation ``exp(-tau^2 / (4 length^2))``:
    white noise convolved with a Gaussian of std ``length`` samples (gain ``exp(-2 (pi f length)^2)``),
    unit std."""
    pad = int(min(max(4 * length, 16), 1 << 16))
    return _unit(_filtered_noise(n, lambda f: np.exp(-2.0 * (math.pi * f * length) ** 2), rng, pad))


def quantise(x: np.ndarray, step: float) -> np.ndarray:
    """Values rounded to a grid: ``step * round(x / step)`` (an ADC or a log written with few decimals)."""
    return step * np.round(np.asarray(x, dtype=np.float64) / step)


def robust_scale(x: np.ndarray) -> float:
    """``1.4826 * median(|x - median(x)|)``, the scale the signal model normalises by."""
    x = np.asarray(x, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


# ------------------------------------------------------------------------------------------- families


def trend(n: int, rng: np.random.Generator) -> np.ndarray:
    """Slow drift over the whole series (sensor drift, growth, saturation): a polynomial of degree 1-3,
    ``exp(k u)``, a logistic step ``1 / (1 + exp(-(u - c) / w))`` with w from 0.005 to 0.3 of the length,
    or a continuous piecewise-linear curve with 2-6 knots; ``u`` in [-1, 1] over the series."""
    u = np.linspace(-1.0, 1.0, n)
    kind = rng.integers(4)
    if kind == 0:
        coef = rng.standard_normal(int(rng.integers(2, 5)))
        x = np.polynomial.polynomial.polyval(u, coef)
    elif kind == 1:
        x = np.exp(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 4.0) * u)
    elif kind == 2:
        c = rng.uniform(-0.8, 0.8)
        w = _log_uniform(rng, 0.005, 0.3) * 2.0
        x = 1.0 / (1.0 + np.exp(-(u - c) / w)) + 0.3 * rng.standard_normal() * u
    else:
        knots = np.sort(rng.uniform(-1, 1, int(rng.integers(2, 7))))
        xs = np.concatenate([[-1.0], knots, [1.0]])
        ys = np.cumsum(rng.standard_normal(xs.size))
        x = np.interp(u, xs, ys)
    return _unit(x)


def seasonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Periodic cycle (daily/yearly seasons, a thermostat, tides): period P log-uniform from 3 samples to
    half the series, ``sum_k a_k cos(2 pi k t / P + phi_k)`` with 1-6 harmonics, ``a_k ~ N(0, 1) / k^p``;
    sometimes a second, longer period (5-30 P) on top, sometimes a slow amplitude modulation."""
    t = np.arange(n, dtype=np.float64)

    def cycle(period: float) -> np.ndarray:
        k = np.arange(1, int(rng.integers(1, 7)) + 1)
        k = k[k < period / 2] if period > 2 else k[:1]
        if k.size == 0:
            k = np.array([1])
        amp = rng.standard_normal(k.size) / k ** rng.uniform(0.5, 2.0)
        phase = rng.uniform(0, 2 * math.pi, k.size)
        return (amp[:, None] * np.cos(2 * math.pi * k[:, None] * t[None, :] / period + phase[:, None])).sum(0)

    period = _log_uniform(rng, 3.0, max(n / 2.0, 4.0))
    x = _unit(cycle(period))
    if rng.random() < 0.3 and period * 10 < n:
        long_period = period * rng.uniform(5.0, 30.0)
        x = x + _log_uniform(rng, 0.3, 3.0) * _unit(cycle(long_period))
    if rng.random() < 0.4:
        x = x * (1.0 + 0.3 * gaussian_smooth_noise(n, n / rng.uniform(2.0, 8.0), rng))
    return _unit(x)


def steps(n: int, rng: np.random.Generator) -> np.ndarray:
    """Level shifts and regimes (a relay, a recalibrated sensor, an interest rate): piecewise constant
    with change points at random places, their count log-uniform from 1 to n/8; levels either a random
    walk of jumps or independent draws from a few regimes; changes instant or linear ramps of 1-50
    samples (30 %)."""
    count = int(min(max(1, round(_log_uniform(rng, 1.0, max(n / 8.0, 1.0)))), n - 1))
    cuts = np.sort(rng.choice(np.arange(1, n), size=count, replace=False))
    if rng.random() < 0.5:
        levels = np.cumsum(rng.standard_normal(count + 1) * np.exp(0.5 * rng.standard_normal(count + 1)))
    else:
        regimes = rng.standard_normal(int(rng.integers(2, 6)))
        levels = regimes[rng.integers(regimes.size, size=count + 1)]
    x = levels[np.searchsorted(cuts, np.arange(n), side="right")]
    if rng.random() < 0.3:
        ramp = int(round(_log_uniform(rng, 1.0, 50.0)))
        if ramp > 1:
            x = np.convolve(np.pad(x, (ramp - 1, 0), mode="edge"), np.ones(ramp) / ramp, mode="valid")
    return _unit(x)


def _beats(n: int, rr: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Beat times (samples) at mean interval ``rr`` with relative jitter, starting before the series."""
    count = int(n / rr) + 3
    intervals = rr * np.exp(jitter * rng.standard_normal(count))
    return np.cumsum(intervals) - rng.uniform(0, rr) - rr


def _gaussian_waves(n: int, centres: np.ndarray, widths: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """``sum_j amps_j exp(-(t - centres_j)^2 / (2 widths_j^2))``, each wave rendered over +-6 widths only."""
    x = np.zeros(n)
    for c, w, a in zip(centres, widths, amps):
        lo, hi = max(0, int(c - 6 * w) - 1), min(n, int(c + 6 * w) + 2)
        if hi > lo:
            t = np.arange(lo, hi)
            x[lo:hi] += a * np.exp(-0.5 * ((t - c) / w) ** 2)
    return x


def spikes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sharp, sparse events on a quiet baseline:

    * ECG-like beats: interval RR log-uniform from 6 to 1500 samples (2-10 % jitter), each beat P, Q, R, S
      and T Gaussian waves placed and sized in fractions of RR (R: width ~0.01 RR), shapes varied by 30 %;
    * neural spike trains: biphasic spikes 1-20 samples wide at Poisson times;
    * decaying events (membrane potentials, rainfall, counts): instant rise, exponential decay, tau 2-500;
    * peaks (spectra, chromatograms): Gaussian bumps of log-uniform widths and heights.
    """
    kind = rng.integers(4)
    if kind == 0:
        rr = _log_uniform(rng, 6.0, min(1500.0, max(n / 2.0, 7.0)))
        beats = _beats(n, rr, rng.uniform(0.02, 0.1), rng)
        shape = {  # offset (x RR), width (x RR), amplitude
            "P": (-0.2, 0.025, 0.15), "Q": (-0.03, 0.008, -0.12), "R": (0.0, 0.01, 1.0),
            "S": (0.03, 0.01, -0.25), "T": (0.3, 0.05, 0.3),
        }
        centres, widths, amps = [], [], []
        for off, width, amp in shape.values():
            k = beats.size
            centres.append(beats + rr * off * rng.uniform(0.7, 1.3))
            widths.append(np.maximum(rr * width * rng.uniform(0.7, 1.3) * np.ones(k), 0.4))
            amps.append(amp * rng.uniform(0.7, 1.3) * np.exp(0.1 * rng.standard_normal(k)))
        x = _gaussian_waves(n, np.concatenate(centres), np.concatenate(widths), np.concatenate(amps))
    elif kind == 1:
        rate = _log_uniform(rng, 1.0 / 2000.0, 1.0 / 10.0)
        times = rng.uniform(0, n, rng.poisson(rate * n) + 1)
        width = _log_uniform(rng, 1.0, 20.0)
        amps = np.exp(0.3 * rng.standard_normal(times.size))
        x = _gaussian_waves(n, times, np.full(times.size, width * 0.5), -amps)
        x += _gaussian_waves(n, times + width, np.full(times.size, width), 0.4 * amps)
    elif kind == 2:
        tau = _log_uniform(rng, 2.0, 500.0)
        rate = _log_uniform(rng, 0.2, 5.0) / tau
        impulses = np.zeros(n)
        times = rng.integers(0, n, rng.poisson(rate * n) + 1)
        np.add.at(impulses, times, np.exp(0.7 * rng.standard_normal(times.size)))
        kernel = np.exp(-np.arange(int(min(10 * tau, n))) / tau)
        x = np.convolve(impulses, kernel)[:n]
        if rng.random() < 0.5:  # a smooth rise too (alpha-function events)
            x = np.convolve(x, np.ones(max(1, int(tau / 5))) / max(1, int(tau / 5)))[:n]
    else:
        count = int(max(1, round(_log_uniform(rng, 1.0, max(n / 20.0, 2.0)))))
        centres = rng.uniform(0, n, count)
        widths = np.array([_log_uniform(rng, 0.7, max(n / 20.0, 1.0)) for _ in range(count)])
        amps = np.exp(rng.standard_normal(count))
        x = _gaussian_waves(n, centres, widths, amps)
    return _unit(x)


def _waveform(phase: np.ndarray, kind: int) -> np.ndarray:
    """Periodic shapes of a phase in cycles: sine, square, triangle, sawtooth."""
    frac = phase % 1.0
    if kind == 0:
        return np.sin(2 * math.pi * phase)
    if kind == 1:
        return np.where(frac < 0.5, 1.0, -1.0)
    if kind == 2:
        return 4.0 * np.abs(frac - 0.5) - 1.0
    return 2.0 * frac - 1.0


def oscillation(n: int, rng: np.random.Generator) -> np.ndarray:
    """Oscillations (vibration, rotating machines, AC mains, tides): 1-4 components, each of period
    log-uniform from 2.2 samples to the whole series, a sine (60 %) or a square, triangle or sawtooth
    wave; optionally amplitude-modulated, or ringing: decaying ``exp(-t / tau)`` after random kicks."""
    t = np.arange(n, dtype=np.float64)
    x = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        period = _log_uniform(rng, 2.2, max(float(n), 3.0))
        kind = 0 if rng.random() < 0.6 else int(rng.integers(1, 4))
        comp = _waveform(t / period + rng.uniform(), kind)
        mode = rng.random()
        if mode < 0.3:
            comp = comp * (1.0 + 0.5 * gaussian_smooth_noise(n, max(period * rng.uniform(2.0, 20.0), 2.0), rng))
        elif mode < 0.5:
            tau = period * _log_uniform(rng, 1.0, 50.0)
            kicks = np.sort(rng.uniform(0, n, int(rng.integers(1, 6))))
            last = kicks[np.maximum(np.searchsorted(kicks, t, side="right") - 1, 0)]
            comp = np.where(t >= kicks[0], comp * np.exp(-(t - last) / tau), 0.0)
        x += _log_uniform(rng, 0.1, 1.0) * comp
    return _unit(x)


def chirp(n: int, rng: np.random.Generator) -> np.ndarray:
    """Frequency sweeps (radar, bird song, dispersed seismic waves, a run-up motor): instantaneous period
    from P0 to P1 (each log-uniform, 2.5 samples to half the series), swept linearly or exponentially in
    frequency, under a smooth Tukey-like envelope; sometimes two chirps."""
    t = np.arange(n, dtype=np.float64)
    x = np.zeros(n)
    for _ in range(1 if rng.random() < 0.7 else 2):
        f0 = 1.0 / _log_uniform(rng, 2.5, max(n / 2.0, 3.0))
        f1 = 1.0 / _log_uniform(rng, 2.5, max(n / 2.0, 3.0))
        start = int(rng.integers(0, max(n // 4, 1)))
        length = max(int(rng.uniform(0.5, 1.0) * (n - start)), 4)
        u = np.clip((t - start) / length, 0.0, 1.0)
        if rng.random() < 0.5:
            freq = f0 + (f1 - f0) * u
        else:
            freq = f0 * (f1 / f0) ** u
        phase = np.cumsum(freq) + rng.uniform()
        edge = rng.uniform(0.05, 0.5)
        env = np.clip(np.minimum(u, 1.0 - u) / (edge / 2), 0.0, 1.0)
        env = np.sin(0.5 * math.pi * env) ** 2 * ((t >= start) & (t < start + length))
        x += env * np.sin(2 * math.pi * phase)
    return _unit(x)


def random_walk(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random walks (prices, positions, accumulated errors): ``cumsum`` of Gaussian or Student-t (2-5
    degrees of freedom) steps with optional drift; an integrated (twice summed) walk; a geometric walk
    ``exp(c * walk)``; or a walk on a coarse grid (every 2-500 samples) interpolated, i.e. a walk sampled
    faster than it moves."""
    kind = rng.integers(4)
    coarse = int(round(_log_uniform(rng, 2.0, 500.0))) if kind == 3 else 1
    m = max(n // coarse + 2, 2)
    if rng.random() < 0.3:
        steps_ = rng.standard_t(rng.uniform(2.0, 5.0), m)
    else:
        steps_ = rng.standard_normal(m)
    steps_ = steps_ + rng.standard_normal() * rng.uniform(0, 0.1) * (rng.random() < 0.5)
    walk = np.cumsum(steps_)
    if kind == 1:
        walk = np.cumsum(walk - walk.mean())
    elif kind == 2:
        walk = np.exp(rng.uniform(0.5, 2.5) * _unit(walk))
    if coarse > 1:
        grid = np.arange(m) * coarse
        walk = np.interp(np.arange(n), grid, walk)
    return _unit(walk[:n])


def arma(n: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary ARMA texture (turbulence, economic cycles, sensor jitter): AR(1) with
    ``phi = 1 - d``, d log-uniform in [0.001, 1.5] (so phi from -0.5 to 0.999); AR(2) with complex poles
    of radius 1 - d, d in [0.002, 0.5], at a period of 2.5-500 samples; or ARMA(2, 1) with an MA term in
    [-0.8, 0.8]. Innovations Gaussian or Student-t; sometimes volatility clustering (the innovations
    times ``exp(smooth GP)``). Filtered in frequency, ``H(f) = B(e^{i 2 pi f}) / A(e^{i 2 pi f})``."""
    kind = rng.integers(3)
    if kind == 0:
        poles = np.array([1.0 - _log_uniform(rng, 0.001, 1.5)])
    else:
        radius = 1.0 - _log_uniform(rng, 0.002, 0.5)
        theta = 2 * math.pi / _log_uniform(rng, 2.5, 500.0)
        poles = radius * np.exp(np.array([1j, -1j]) * theta)
    a = np.real(np.poly(poles))  # 1 - a1 z^-1 - ...
    b = np.array([1.0, rng.uniform(-0.8, 0.8)]) if kind == 2 else np.array([1.0])
    memory = int(min(10.0 / max(1.0 - float(np.max(np.abs(poles))), 1e-3), 1 << 15))
    pad = min(memory + 64, 1 << 16)
    m = n + 2 * pad
    e = rng.standard_t(rng.uniform(3.0, 8.0), m) if rng.random() < 0.3 else rng.standard_normal(m)
    if rng.random() < 0.3:
        e = e * np.exp(0.7 * gaussian_smooth_noise(m, _log_uniform(rng, 5.0, 500.0), rng))
    z = np.exp(-2j * math.pi * np.fft.rfftfreq(m))
    h = np.polyval(b[::-1], z) / np.polyval(a[::-1], z)
    x = np.fft.irfft(np.fft.rfft(e) * h, m)[pad : pad + n]
    return _unit(x)


def bandlimited(n: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited random texture (EEG alpha/beta rhythms, microseism, vibration spectra): white noise
    through a Gaussian band in log-frequency, centre period log-uniform from 2.2 samples to a quarter
    of the series, width 0.2-3 octaves; sometimes over a 1/f background."""
    fc = 1.0 / _log_uniform(rng, 2.2, max(n / 4.0, 3.0))
    octaves = rng.uniform(0.2, 3.0)

    def gain(f: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            lf = np.log2(np.maximum(f, 1e-12) / fc)
        return np.exp(-0.5 * (lf / (octaves / 2.355)) ** 2) * (f > 0)

    x = _unit(_filtered_noise(n, gain, rng, pad=min(n, 4096)))
    if rng.random() < 0.3:
        x = x + _log_uniform(rng, 0.1, 1.0) * power_law(n, rng)
    return _unit(x)


def burst(n: int, rng: np.random.Generator) -> np.ndarray:
    """Transients (earthquake arrivals, knocks, machine faults): 1-4 bursts of band-limited noise,
    each starting sharply (rise of 1-20 % of its duration) and decaying exponentially (tau 10-3000
    samples), with log-normal amplitudes, on a quiet band-limited background 0.01-0.1 as strong."""
    t = np.arange(n, dtype=np.float64)
    env_total = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        tau = _log_uniform(rng, 10.0, min(3000.0, max(n / 2.0, 11.0)))
        onset = rng.uniform(-0.1, 0.9) * n
        rise = tau * rng.uniform(0.01, 0.2)
        after = np.maximum(t - onset, 0.0)
        env = (1.0 - np.exp(-after / max(rise, 0.5))) * np.exp(-after / tau) * (t >= onset)
        env_total += np.exp(0.7 * rng.standard_normal()) * env
    x = env_total * bandlimited(n, rng)
    background = _log_uniform(rng, 0.01, 0.1) * float(np.max(np.abs(x)) or 1.0) * bandlimited(n, rng)
    return _unit(x + background)


def smooth(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random curves (temperature, slow physiology, a process variable): a Gaussian process with
    correlation length log-uniform from 1 sample to half the series (:func:`gaussian_smooth_noise`)."""
    return gaussian_smooth_noise(n, _log_uniform(rng, 1.0, max(n / 2.0, 2.0)), rng)


def power_law(n: int, rng: np.random.Generator) -> np.ndarray:
    """Scale-free 1/f^beta noise (natural fluctuations, flicker, terrain profiles): power spectrum
    ``f^-beta``, beta uniform in [0.5, 4], lowest frequencies cut below 1 / (2 n)."""
    beta = rng.uniform(0.5, 4.0)
    f_lo = 1.0 / (2.0 * n)

    def gain(f: np.ndarray) -> np.ndarray:
        return np.maximum(f, f_lo) ** (-beta / 2.0) * (f > 0)

    return _unit(_filtered_noise(n, gain, rng, pad=min(n, 1 << 16)))


FAMILIES: dict[str, Family] = {
    "trend": trend,
    "seasonal": seasonal,
    "steps": steps,
    "spikes": spikes,
    "oscillation": oscillation,
    "chirp": chirp,
    "random_walk": random_walk,
    "arma": arma,
    "bandlimited": bandlimited,
    "burst": burst,
    "smooth": smooth,
    "power_law": power_law,
}


# ------------------------------------------------------------------------------------------- compositions


def compose(length: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One clean series of ``length`` samples and a description of how it was made.

    ``x = offset + units * Q(sum_i w_i f_i(length))``: 1-3 families (35/40/25 %) drawn by
    ``FAMILY_WEIGHTS`` (the same family may repeat, at another time scale), the first with weight 1, the
    others log-uniform in [0.03, 2]; a series whose std exceeds ``MAX_PEAK_TO_MAD`` robust scales (a spike
    train on an exactly flat baseline) gets a smooth or ARMA background so that its robust scale stays
    meaningful; ``Q`` rounds to a grid of 0.003-0.5 robust scales (30 %); units log-uniform in
    [1e-3, 1e4] and an offset of up to 1000 units.
    """
    names = list(FAMILIES)
    p = np.array([FAMILY_WEIGHTS[k] for k in names])
    count = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    picks = [names[i] for i in rng.choice(len(names), size=count, p=p / p.sum())]
    x = np.zeros(length)
    weights = []
    for i, name in enumerate(picks):
        w = 1.0 if i == 0 else _log_uniform(rng, 0.03, 2.0)
        weights.append(w)
        x += w * FAMILIES[name](length, rng)
    scale = robust_scale(x)
    background = None
    if scale <= 0 or float(np.std(x)) > MAX_PEAK_TO_MAD * scale:
        background = "smooth" if rng.random() < 0.5 else "arma"
        spread = float(np.std(x)) or 1.0  # a constant draw (one regime only) becomes the background alone
        x += spread / MAX_PEAK_TO_MAD * rng.uniform(1.0, 3.0) * FAMILIES[background](length, rng)
        scale = robust_scale(x)
    step = None
    if rng.random() < QUANTISE_PROBABILITY and scale > 0:
        step = scale * _log_uniform(rng, 0.003, 0.5)
        x = quantise(x, step)
    units = _log_uniform(rng, 1e-3, 1e4)
    offset = units * rng.standard_normal() * _log_uniform(rng, 0.01, 1000.0)
    x = offset + units * x
    info = {"families": picks, "weights": [round(w, 4) for w in weights], "background": background,
            "quantise_step": None if step is None else step * units, "units": units, "offset": offset}
    return x, info


def generate(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` clean series of ``length`` samples, shape (n, length), float64 (see :func:`compose`)."""
    if n < 0 or length < 1:
        raise ValueError(f"generate: need n >= 0 and length >= 1, got n={n}, length={length}")
    out = np.empty((n, length))
    for i in range(n):
        out[i], _ = compose(length, rng)
    return out
