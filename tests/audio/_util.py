"""Helpers shared by the audio stage tests: measurements and the contract's formulas, written
out independently of the code under test (docs/kernels.md)."""

from __future__ import annotations

import importlib
import math
from collections.abc import AsyncIterator, Callable, Iterable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.frames import AudioFrame

RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
RATE_PAIRS = [(a, b) for a in RATES for b in RATES]

# Tolerances between backends, from docs/kernels.md.
PARITY_TOL = 1e-5
RESAMPLE_PARITY_TOL = 2e-5


def kernel_module(backend: str) -> ModuleType:
    """Where a backend's kernel classes live: ``stream._engine`` or the Python twins."""
    if backend == "rust":
        return importlib.import_module("stream._engine")
    return importlib.import_module("media_nodes.audio")


def rms(x: npt.ArrayLike) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a)))


def db(ratio: float) -> float:
    return 20.0 * math.log10(ratio)


def sine_fit(
    y: npt.ArrayLike, freq_hz: float, sample_rate: int
) -> tuple[float, npt.NDArray[np.float64]]:
    """Least-squares fit of ``a sin + b cos`` at ``freq_hz``: (amplitude, residual)."""
    y = np.asarray(y, dtype=np.float64)
    t = np.arange(y.size) / sample_rate
    basis = np.column_stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)])
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(*coef)), y - basis @ coef


def sine_snr_db(y: npt.ArrayLike, freq_hz: float, sample_rate: int) -> float:
    """SNR of a tone: fitted sine power over the power of everything else."""
    amplitude, residual = sine_fit(y, freq_hz, sample_rate)
    return 10.0 * math.log10((amplitude**2 / 2) / float(np.mean(residual**2)))


def resampled_length(n_in: int, in_rate: int, out_rate: int) -> int:
    """The contract's output count after ``n_in`` inputs: n_in * ratio rounded half up."""
    return (2 * n_in * out_rate + in_rate) // (2 * in_rate)


def resample_latency(in_rate: int, out_rate: int) -> int:
    """``latency_samples`` from the filter design in docs/kernels.md, recomputed here."""
    if in_rate == out_rate:
        return 0
    g = math.gcd(in_rate, out_rate)
    up = out_rate // g
    nyq = min(in_rate, out_rate) / 2
    df = 0.18 * nyq
    n_est = (90.0 - 7.95) / (2.285 * 2 * math.pi * df / (in_rate * up))
    n = math.ceil(n_est / up) * up
    centre = (n - 1) / 2
    return round(centre / up / in_rate * out_rate)


async def feed(
    items: Iterable[Any], actions: dict[int, Callable[[], None]] | None = None
) -> AsyncIterator[Any]:
    """Yield ``items``; before item ``i`` is handed on, run ``actions[i]`` (pull-based, so the
    action lands between items ``i - 1`` and ``i``)."""
    for i, item in enumerate(items):
        if actions and i in actions:
            actions[i]()
        yield item


def assert_pts_continuous(frames: list[AudioFrame], first_pts: int, rate: int) -> None:
    """Each frame starts where the previous ended, in samples of ``rate``."""
    expected = first_pts
    for i, f in enumerate(frames):
        assert f.sample_rate == rate, f"frame {i}: rate {f.sample_rate} != {rate}"
        assert f.time_base is not None and f.time_base * rate == 1, f"frame {i}: {f.time_base}"
        assert f.pts == expected, f"frame {i}: pts {f.pts} != {expected}"
        expected += f.num_samples


def random_sizes(rng: np.random.Generator, total: int, max_size: int) -> list[int]:
    """Random positive block sizes adding up to ``total``."""
    sizes: list[int] = []
    left = total
    while left:
        size = int(rng.integers(1, min(max_size, left) + 1))
        sizes.append(size)
        left -= size
    return sizes
