"""Terminal views for the command line: a media-time progress bar and a live level meter.

Both are probe nodes placed before the pipeline's sink: they look at frames as they pass.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .frames import AudioFrame, VideoFrame
from .node import Node


def _media_end(frame: Any) -> float | None:
    """The time (seconds) at which a frame ends, or None if untimed."""
    if isinstance(frame, AudioFrame) and frame.time is not None:
        return frame.time + frame.duration
    if isinstance(frame, VideoFrame) and frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return None


class ProgressProbe(Node):
    """Tracks media time through the pipeline and draws it as a progress bar with speed."""

    def __init__(self, total_seconds: float | None, console: Console | None = None) -> None:
        super().__init__(name="progress")
        self.media_seconds = 0.0
        self._started = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[media]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(
            "processing", total=total_seconds or None, media="0.0 s", speed=""
        )

    @property
    def speed(self) -> float:
        """Media seconds processed per wall-clock second."""
        return self.media_seconds / max(time.perf_counter() - self._started, 1e-9)

    def initialize(self) -> None:
        self._started = time.perf_counter()
        self._progress.start()

    def process(self, item: Any) -> Any:
        end = _media_end(item)
        if end is not None and end > self.media_seconds:
            self.media_seconds = end
            self._progress.update(
                self._task,
                completed=end,
                media=f"{end:.1f} s",
                speed=f"{self.speed:.1f}x real time",
            )
        return item

    def cleanup(self) -> None:
        self._progress.stop()


def dbfs(value: float) -> float:
    return 20 * math.log10(value) if value > 1e-10 else -200.0


class LevelProbe(Node):
    """Measures RMS and peak (dBFS) of the audio passing and shows them with device counters."""

    def __init__(self, counters: dict[str, Any] | None = None, console: Console | None = None):
        super().__init__(name="levels")
        self.rms_db = self.peak_db = -200.0
        self.frames = 0
        self.counters = counters or {}
        self.console = console or Console(stderr=True)
        self._last_draw = 0.0

    def process(self, item: Any) -> Any:
        if isinstance(item, AudioFrame) and item.samples.dtype == np.float32:
            x = item.samples
            self.rms_db = dbfs(float(np.sqrt(np.mean(x * x))))
            self.peak_db = dbfs(float(np.abs(x).max()))
            self.frames += 1
            now = time.monotonic()
            if now - self._last_draw > 0.1:
                self._last_draw = now
                self.draw()
        return item

    def line(self) -> str:
        width = 40
        filled = max(0, min(width, round((self.rms_db + 60) / 60 * width)))
        bar = "#" * filled + "-" * (width - filled)
        stats = "  ".join(f"{k} {v() if callable(v) else v}" for k, v in self.counters.items())
        return f"RMS {self.rms_db:6.1f} dBFS [{bar}] peak {self.peak_db:6.1f}  {stats}"

    def draw(self) -> None:
        if self.console.is_terminal:
            self.console.print(self.line(), end="\r", highlight=False, soft_wrap=True)


__all__ = ["LevelProbe", "ProgressProbe", "dbfs"]
