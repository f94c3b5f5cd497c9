"""Stages the echo-leg test loads into the server process by manifest (``webrtc.echo_nodes:...``).

``Probe`` records the audio passing it; ``FarEndTalker`` records what reaches it and answers each
near-end frame with the next stretch of a speech-like far-end signal (what the server "says" to
the peer, the audio whose echo comes back). Both save what they saw to ``path`` (npz) at cleanup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stream.frames import AudioFrame
from stream.node import Node
from stream.testing import speech_like


class _Recorder:
    """AudioFrames as (start sample, samples) on their own clock, saved as one npz."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.starts: list[int] = []
        self.blocks: list[np.ndarray] = []
        self.rate = 0

    def add(self, frame: AudioFrame) -> None:
        self.rate = frame.sample_rate
        t = frame.time
        start = self.starts[-1] + self.blocks[-1].shape[0] if t is None else round(t * self.rate)
        self.starts.append(start)
        self.blocks.append(np.asarray(frame.samples[0], np.float32).copy())

    def save(self, **extra: Any) -> None:
        if not self.blocks:
            return
        first = self.starts[0]
        n = max(s + b.shape[0] for s, b in zip(self.starts, self.blocks, strict=True)) - first
        x = np.zeros(n, np.float32)
        for s, b in zip(self.starts, self.blocks, strict=True):
            x[s - first : s - first + b.shape[0]] = b
        tmp = Path(self.path + ".tmp.npz")
        np.savez(tmp, samples=x, first=first, rate=self.rate, **extra)
        tmp.rename(self.path)  # whole or not there: the test polls for it


class Probe(Node):
    """Hands everything on; records the mono float32 AudioFrames it sees."""

    def __init__(self, path: str, *, name: str | None = None) -> None:
        super().__init__(name)
        self.recorder = _Recorder(path)

    def process(self, item: Any) -> Any:
        if isinstance(item, AudioFrame):
            self.recorder.add(item)
        return item

    def cleanup(self) -> None:
        self.recorder.save()

    def params(self) -> dict[str, Any]:
        return {"path": self.recorder.path}


class FarEndTalker(Node):
    """Records the audio reaching it (the echo-cancelled near-end) and, for each frame, emits
    as many samples of the far-end: ``speech_like(seconds, seed)``, then silence. ``rate``: the
    rate expected (the signal is made for it up front, not on the event loop mid-stream)."""

    def __init__(
        self,
        path: str,
        seconds: float = 10.0,
        seed: int = 1,
        rate: int = 16000,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.recorder = _Recorder(path)
        self.seconds = seconds
        self.seed = seed
        self._far: np.ndarray | None = None
        self._rate = 0
        self._pos = 0
        self._make(rate)

    def _make(self, rate: int) -> None:
        self._far = speech_like(self.seconds, seed=self.seed, rate=rate).astype(np.float32)
        self._rate = rate

    def process(self, item: Any) -> Any:
        if not isinstance(item, AudioFrame):
            return None
        self.recorder.add(item)
        rate = item.sample_rate
        if self._far is None or rate != self._rate:
            self._make(rate)
        assert self._far is not None
        n = item.num_samples
        out = np.zeros((1, n), np.float32)
        piece = self._far[self._pos : self._pos + n]
        out[0, : piece.shape[0]] = piece
        self._pos += n
        return AudioFrame(out, rate, item.pts, item.time_base)

    def cleanup(self) -> None:
        self.recorder.save(far=self._far if self._far is not None else np.zeros(0))

    def params(self) -> dict[str, Any]:
        return {
            "path": self.recorder.path,
            "seconds": self.seconds,
            "seed": self.seed,
            "rate": self._rate,
        }
