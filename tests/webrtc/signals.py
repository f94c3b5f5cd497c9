"""Signal checks for the WebRTC tests: the dominant frequency and level of received audio."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stream.frames import AudioFrame


def joined(frames: Sequence[object], channel: int = 0) -> npt.NDArray[np.float64]:
    """One channel of the AudioFrames among ``frames`` as float64 in [-1, 1]."""
    blocks = []
    for f in frames:
        if isinstance(f, AudioFrame):
            x = f.samples if f.planar else f.samples.T
            x = x.astype(np.float64)
            if f.samples.dtype == np.int16:
                x /= 32768.0
            blocks.append(x[channel])
    return np.concatenate(blocks) if blocks else np.zeros(0)


def active(x: npt.NDArray[np.float64], threshold: float = 0.01) -> npt.NDArray[np.float64]:
    """``x`` from its first sample above ``threshold`` to its last."""
    idx = np.flatnonzero(np.abs(x) > threshold)
    return x[idx[0] : idx[-1] + 1] if idx.size else x[:0]


def spectrum(
    x: npt.NDArray[np.float64], rate: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    window = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * window))
    return np.fft.rfftfreq(len(x), 1 / rate), mag


def dominant_hz(x: npt.NDArray[np.float64], rate: int = 48000) -> float:
    freqs, mag = spectrum(x, rate)
    return float(freqs[int(np.argmax(mag[1:])) + 1])


def band_share(
    x: npt.NDArray[np.float64], hz: float, rate: int = 48000, width: float = 30.0
) -> float:
    """Fraction of the signal's energy within ``hz +- width``."""
    freqs, mag = spectrum(x, rate)
    power = mag**2
    band = (freqs > hz - width) & (freqs < hz + width)
    return float(power[band].sum() / max(power.sum(), 1e-30))


def rms_db(x: npt.NDArray[np.float64]) -> float:
    return 20 * math.log10(max(float(np.sqrt(np.mean(x**2))), 1e-12))
