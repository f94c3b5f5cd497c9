"""Test helpers shipped with the package: signal and frame factories, and ``run_node``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from .frames import AudioFrame
from .node import Node
from .pipeline import Pipeline


def tone(
    freq_hz: float,
    seconds: float,
    sample_rate: int = 48000,
    channels: int = 1,
    amplitude: float = 0.5,
) -> npt.NDArray[np.float32]:
    """A sine of ``freq_hz`` as a float32 ``(channels, samples)`` array."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq_hz * t)
    return np.repeat(wave[None, :], channels, axis=0).astype(np.float32)


def noise(
    seconds: float,
    sample_rate: int = 48000,
    channels: int = 1,
    amplitude: float = 0.1,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """Uniform white noise in [-amplitude, amplitude] as float32 ``(channels, samples)``."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    return rng.uniform(-amplitude, amplitude, (channels, n)).astype(np.float32)


# (F1, F2, F3) in Hz of six vowels: the synthetic "speech" is a source-filter model of them.
VOWELS = [
    (730, 1090, 2440),
    (270, 2290, 3010),
    (300, 870, 2240),
    (530, 1840, 2480),
    (640, 1190, 2390),
    (490, 1350, 1690),
]


def _resonate(
    x: npt.NDArray[np.float64], freq: float, bw: float, rate: int
) -> npt.NDArray[np.float64]:
    """Two-pole resonator at ``freq`` Hz with bandwidth ``bw`` Hz (a formant)."""
    r = np.exp(-np.pi * bw / rate)
    a1, a2 = 2 * r * np.cos(2 * np.pi * freq / rate), -r * r
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    g = 1 - r
    for i, v in enumerate(x):  # short signals: a plain loop is fast enough
        y0 = g * v + a1 * y1 + a2 * y2
        y[i], y2, y1 = y0, y1, y0
    return y


def speech_like(seconds: float, seed: int = 0, rate: int = 48000) -> npt.NDArray[np.float64]:
    """Syllables of 0.12-0.35 s: a glottal pulse train (pitch 100-200 Hz with vibrato and a
    falling contour) through three formant resonators, with pauses; peak 0.3."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n)
    pos = int(0.2 * rate)
    while pos < n:
        length = min(int(rng.uniform(0.12, 0.35) * rate), n - pos)
        t = np.arange(length) / rate
        f0 = rng.uniform(100, 200) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
        f0 *= 1 - 0.15 * t / max(t[-1], 1e-9)
        pulses = np.diff(np.floor(np.cumsum(f0) / rate), prepend=0.0)
        src = np.zeros(length)
        acc = 0.0
        for i, p in enumerate(pulses):  # glottal roll-off: one-pole low-pass
            acc = p + 0.97 * acc
            src[i] = acc
        src += 0.02 * rng.standard_normal(length)
        y = src
        for freq, bw in zip(VOWELS[rng.integers(len(VOWELS))], (80, 100, 140), strict=True):
            y = _resonate(y, freq, bw, rate)
        env = np.minimum(1, np.minimum(t / 0.03, (t[-1] - t) / 0.05))
        out[pos : pos + length] = y * env
        pos += length + int(rng.uniform(0.04, 0.25) * rate)
    peak = float(np.max(np.abs(out)))
    return out * (0.3 / peak)


def add_noise(
    clean: npt.NDArray[np.float64], kind: str, snr_db: float, seed: int = 7
) -> npt.NDArray[np.float32]:
    """``clean`` plus white or pink (1/f power) Gaussian noise at ``snr_db``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(clean.size)
    if kind == "pink":
        spec = np.fft.rfft(w)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        w = np.fft.irfft(spec / np.sqrt(f), clean.size)
    w *= np.sqrt(np.mean(clean**2) / 10 ** (snr_db / 10) / np.mean(w**2))
    return (clean + w).astype(np.float32)


def snr(clean: npt.ArrayLike, test: npt.ArrayLike) -> float:
    """Signal-to-noise ratio in dB of ``test`` against ``clean`` (same length and alignment)."""
    c = np.asarray(clean, np.float64)
    e = np.asarray(test, np.float64) - c
    return float(10 * np.log10(np.sum(c * c) / np.sum(e * e)))


def split_frames(
    samples: npt.NDArray[np.float32],
    sample_rate: int,
    sizes: int | Sequence[int] = 960,
    timed: bool = True,
) -> list[AudioFrame]:
    """Cut a ``(channels, samples)`` array into AudioFrames of ``sizes`` (an int, or a list that
    is cycled), with pts counted in samples when ``timed``."""
    seq = [sizes] if isinstance(sizes, int) else list(sizes)
    frames, pos, k = [], 0, 0
    n = samples.shape[1]
    while pos < n:
        size = seq[k % len(seq)]
        k += 1
        block = np.ascontiguousarray(samples[:, pos : pos + size])
        tb = Fraction(1, sample_rate) if timed else None
        frames.append(AudioFrame(block, sample_rate, pos if timed else None, tb))
        pos += size
    return frames


def join_frames(frames: Iterable[AudioFrame]) -> npt.NDArray[np.float32]:
    """Concatenate planar frames back into one ``(channels, samples)`` array."""
    blocks = [f.samples for f in frames]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)


async def run_node(node: Node, items: Iterable[Any], use_rust: bool = True) -> list[Any]:
    """Run one node over ``items`` in a pipeline of its own, flush included."""
    return list(await Pipeline([node], name=f"test:{node.name}").run(list(items), use_rust))


__all__ = [
    "add_noise",
    "join_frames",
    "noise",
    "run_node",
    "snr",
    "speech_like",
    "split_frames",
    "tone",
]
