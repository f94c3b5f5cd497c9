"""Measurements (and a wait) for the device tests."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt


def peak_hz(x: npt.ArrayLike, sample_rate: int) -> float:
    """The strongest frequency, from a Hann-windowed spectrum with parabolic interpolation."""
    y = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size), 8 * y.size))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    return float((k + 0.5 * (a - c) / (a - 2 * b + c)) * sample_rate / (8 * y.size))


def rms_db(x: npt.ArrayLike) -> float:
    y = np.asarray(x, dtype=np.float64)
    return 20 * math.log10(float(np.sqrt(np.mean(y * y))))


def native_threads() -> int:
    """Threads of this process that Python did not start: PortAudio's callback threads."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def native_threads_back_to(count: int, timeout_s: float = 10.0) -> bool:
    """True once at most ``count`` native threads run (a closed stream's thread is joined, but
    another test's may still be on its way out)."""
    deadline = time.monotonic() + timeout_s
    while native_threads() > count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``condition`` on the event loop until it holds: a test paced by what a device did,
    not by how long that took on this machine. TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


def nonzero(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The samples that are not exactly zero: played audio without the silence a device adds
    before, after and (on underruns) between blocks."""
    return x[x != 0]


def gaps(x: npt.NDArray[np.float32]) -> int:
    """Runs of exact zeros between played samples: where a device played silence mid-stream (an
    underrun), in a signal that has no exact zero of its own past its first sample."""
    loud = np.flatnonzero(x)
    return int((np.diff(loud) > 1).sum()) if loud.size else 0
