"""Synthetic echo scenes for tests, benchmarks and examples: ``room_response``, ``echo_scene``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def room_response(rate: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Exponentially decaying Gaussian noise (150 ms, 30 ms time constant, so about 60 dB down at
    200 ms) after a 10 ms direct-path delay, scaled to -6 dB energy gain."""
    taps = int(0.150 * rate)
    rir = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (0.030 * rate))
    rir = np.concatenate([np.zeros(int(0.010 * rate)), rir])
    rir *= 0.5 / np.sqrt(np.sum(rir**2))
    return rir


def echo_scene(
    seconds: float = 20.0,
    rate: int = 16000,
    double_talk: tuple[float, float] | None = (12.0, 15.0),
    seed: int = 0,
    near_gain: float = 0.7,
    path_change_s: float | None = None,
) -> dict[str, Any]:
    """A synthetic echo path for tests and benchmarks (float64 signals, one row each).

    ``far``: speech-like far-end (``stream.testing.speech_like``, seed ``seed + 1``); ``echo``: it
    through ``room_response`` (150 ms of decaying noise after 10 ms, -6 dB); from
    ``path_change_s`` on (if given) through another such room (the speaker or the microphone
    moved); ``near``: another speech-like signal (seed ``seed + 2``, times ``near_gain``) during
    ``double_talk`` only (None: never); ``noise``: white, -60 dBFS; ``mic = echo + near +
    noise``.
    """
    from stream.testing import speech_like

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    far = speech_like(seconds, seed=seed + 1, rate=rate)
    echo = np.convolve(far, room_response(rate, rng))[:n]
    if path_change_s is not None:
        moved = np.convolve(far, room_response(rate, np.random.default_rng(seed + 100)))[:n]
        at = int(path_change_s * rate)
        echo = np.concatenate([echo[:at], moved[at:]])
    near = near_gain * speech_like(seconds, seed=seed + 2, rate=rate)
    if double_talk is None:
        near[:] = 0.0
    else:
        a, b = (int(t * rate) for t in double_talk)
        near[:a] = 0.0
        near[b:] = 0.0
    noise = 10 ** (-60 / 20) * rng.standard_normal(n)
    return {
        "rate": rate,
        "far": far,
        "echo": echo,
        "near": near,
        "noise": noise,
        "mic": echo + near + noise,
        "double_talk": double_talk,
        "path_change_s": path_change_s,
    }
