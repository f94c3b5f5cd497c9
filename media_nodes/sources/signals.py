"""Generated test signals: ``ToneSource``, ``NoiseSource``, ``SilenceSource``.

Each emits float32 planar AudioFrames of ``round(sample_rate * frame_ms / 1000)`` samples with pts
counted in samples (``time_base = 1/sample_rate``). With ``duration_s`` the stream holds exactly
``round(duration_s * sample_rate)`` samples (the last frame is shorter); without it the stream is
endless and ends when its consumer stops. ``realtime=True`` paces frames on the monotonic clock at
their timestamps, as a live source delivers them; ``RealtimePacer`` is that clock, and
``FileSource`` paces with it too.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any

import numpy as np

from stream.frames import AudioFrame, audio_frame_unchecked
from stream.kernel import Block, config_error
from stream.node import Source

MAX_CHANNELS = 64


class RealtimePacer:
    """Sleeps until a media time is due on the event loop's monotonic clock.

    The first ``wait(t)`` anchors media time ``t`` to now; a later ``wait(t)`` sleeps until
    ``anchor + t``. Each deadline is computed from the anchor, never from the previous wake-up, so
    late wake-ups do not add up to drift; media time that is already due returns at once.
    """

    __slots__ = ("_origin",)

    def __init__(self) -> None:
        self._origin: float | None = None

    async def wait(self, media_time_s: float) -> None:
        loop = asyncio.get_running_loop()
        if self._origin is None:
            self._origin = loop.time() - media_time_s
            return
        delay = self._origin + media_time_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def check_number(stage: str, name: str, value: Any, low: float, high: float | None = None) -> None:
    """ConfigError naming ``stage`` unless ``value`` is a finite real in ``[low, high]``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise config_error(stage, f"{name} must be a finite number {bound}, got {value!r}")


def check_int(stage: str, name: str, value: Any, low: int, high: int | None = None) -> None:
    """ConfigError naming ``stage`` unless ``value`` is an int (not a bool) in ``low..high``."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise config_error(stage, f"{name} must be an int {bound}, got {value!r}")


class _SignalSource(Source):
    """Shared settings, validation and frame loop of the generated sources."""

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        frame_ms: float,
        duration_s: float | None,
        realtime: bool,
        name: str | None,
    ) -> None:
        super().__init__(name)
        check_int(self.name, "sample_rate", sample_rate, 1)
        check_int(self.name, "channels", channels, 1, MAX_CHANNELS)
        check_number(self.name, "frame_ms", frame_ms, 0.0)
        if round(sample_rate * frame_ms / 1000.0) < 1:
            raise config_error(
                self.name,
                f"frame_ms={frame_ms} gives frames of no samples at {sample_rate} Hz",
            )
        if duration_s is not None:
            check_number(self.name, "duration_s", duration_s, 0.0)
        if not isinstance(realtime, bool):
            raise config_error(self.name, f"realtime must be a bool, got {realtime!r}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_ms = float(frame_ms)
        self.duration_s = None if duration_s is None else float(duration_s)
        self.realtime = realtime

    @property
    def frame_samples(self) -> int:
        """Samples per frame (the last frame of a finite stream may be shorter)."""
        return round(self.sample_rate * self.frame_ms / 1000.0)

    @property
    def total_samples(self) -> int | None:
        """Samples in the whole stream, or None when it is endless."""
        if self.duration_s is None:
            return None
        return round(self.duration_s * self.sample_rate)

    def _common_params(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_ms": self.frame_ms,
            "duration_s": self.duration_s,
            "realtime": self.realtime,
        }

    def _renderer(self) -> Callable[[int], Block]:
        """A fresh generator of the next ``n`` samples, as ``(channels, n)`` float32."""
        raise NotImplementedError

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[AudioFrame]:
        render = self._renderer()  # state per stream: every run starts the signal afresh
        rate, size, total = self.sample_rate, self.frame_samples, self.total_samples
        time_base = Fraction(1, rate)
        pacer = RealtimePacer() if self.realtime else None
        pos = 0
        while total is None or pos < total:
            n = size if total is None else min(size, total - pos)
            if pacer is not None:
                await pacer.wait(pos / rate)
            yield audio_frame_unchecked(render(n), rate, pos, time_base)
            pos += n


class ToneSource(_SignalSource):
    """A sine of ``freq_hz`` at ``amplitude`` (full scale 1.0), the same on every channel.

    The phase runs on across frames, so the joined frames are one continuous sine starting at
    phase 0. Raises ConfigError for a frequency outside (0, sample_rate / 2) or bad settings.
    """

    def __init__(
        self,
        freq_hz: float = 440.0,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: float = 20.0,
        amplitude: float = 0.5,
        duration_s: float | None = None,
        realtime: bool = False,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(sample_rate, channels, frame_ms, duration_s, realtime, name)
        check_number(self.name, "amplitude", amplitude, 0.0, 1.0)
        check_number(self.name, "freq_hz", freq_hz, 0.0)
        if not 0 < freq_hz < sample_rate / 2:
            raise config_error(
                self.name,
                f"freq_hz must be above 0 and below half the sample rate ({sample_rate / 2} Hz), "
                f"got {freq_hz}",
            )
        self.freq_hz = float(freq_hz)
        self.amplitude = float(amplitude)

    def params(self) -> dict[str, Any]:
        return {"freq_hz": self.freq_hz, "amplitude": self.amplitude, **self._common_params()}

    def _renderer(self) -> Callable[[int], Block]:
        step = 2.0 * math.pi * self.freq_hz / self.sample_rate
        amplitude, channels = self.amplitude, self.channels
        phase = 0.0

        def render(n: int) -> Block:
            nonlocal phase
            wave = (amplitude * np.sin(phase + step * np.arange(n))).astype(np.float32)
            # Keep the phase reduced so an endless tone loses no precision as time grows.
            phase = math.fmod(phase + step * n, 2.0 * math.pi)
            return np.repeat(wave[None, :], channels, axis=0)

        return render


class NoiseSource(_SignalSource):
    """Uniform white noise in ``[-amplitude, amplitude]`` from a seeded generator.

    The same ``seed`` gives the same samples whatever ``frame_ms`` is (samples are drawn in time
    order, channels interleaved). Raises ConfigError for bad settings.
    """

    def __init__(
        self,
        amplitude: float = 0.1,
        seed: int = 0,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: float = 20.0,
        duration_s: float | None = None,
        realtime: bool = False,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(sample_rate, channels, frame_ms, duration_s, realtime, name)
        check_number(self.name, "amplitude", amplitude, 0.0, 1.0)
        check_int(self.name, "seed", seed, 0)
        self.amplitude = float(amplitude)
        self.seed = seed

    def params(self) -> dict[str, Any]:
        return {"amplitude": self.amplitude, "seed": self.seed, **self._common_params()}

    def _renderer(self) -> Callable[[int], Block]:
        rng = np.random.default_rng(self.seed)
        amplitude, channels = self.amplitude, self.channels

        def render(n: int) -> Block:
            draws = rng.uniform(-amplitude, amplitude, (n, channels)).astype(np.float32)
            return np.ascontiguousarray(draws.T)

        return render


class SilenceSource(_SignalSource):
    """Digital silence (zeros). Raises ConfigError for bad settings."""

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: float = 20.0,
        duration_s: float | None = None,
        realtime: bool = False,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(sample_rate, channels, frame_ms, duration_s, realtime, name)

    def params(self) -> dict[str, Any]:
        return self._common_params()

    def _renderer(self) -> Callable[[int], Block]:
        channels = self.channels
        return lambda n: np.zeros((channels, n), np.float32)


__all__ = ["NoiseSource", "RealtimePacer", "SilenceSource", "ToneSource"]
