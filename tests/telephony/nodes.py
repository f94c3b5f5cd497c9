"""Stages the call tests serve: they record what they see in the test's own process (the server
runs in a thread of the test process) and answer as a voice bot would."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.events import Event
from stream.frames import AudioFrame
from stream.node import Node
from stream.testing import speech_like, tone


class EventLog(Node):
    """Hands everything on; keeps every Event it sees."""

    accepts_events = True

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name)
        self.events: list[Event] = []

    def process(self, item: Any) -> Any:
        if isinstance(item, Event):
            self.events.append(item)
        return item


class MarkEvery(Node):
    """Hands audio on; after every ``every``-th audio frame, an Event asking for a mark."""

    def __init__(self, every: int, *, name: str | None = None) -> None:
        super().__init__(name)
        self.every = every
        self.count = 0

    def process(self, item: Any) -> Any:
        if not isinstance(item, AudioFrame):
            yield item
            return
        self.count += 1
        yield item
        if self.count % self.every == 0:
            yield self.event("mark", item.time, name=f"m{self.count // self.every}")


class Talker(Node):
    """A bot that answers the first audio frame with ``seconds`` of a tone at once (as a TTS
    engine hands over a sentence), and asks for barge-in (``speech_start``) on DTMF ``digit``."""

    accepts_events = True

    def __init__(self, seconds: float = 3.0, digit: str = "5", *, name: str | None = None) -> None:
        super().__init__(name)
        self.seconds = seconds
        self.digit = digit
        self.spoke = False

    def process(self, item: Any) -> Any:
        if isinstance(item, Event):
            if item.kind == "dtmf" and item.payload.get("digit") == self.digit:
                yield self.event("speech_start")
            return
        if isinstance(item, AudioFrame) and not self.spoke:
            self.spoke = True
            x = tone(300, self.seconds, item.sample_rate, amplitude=0.3)
            for i in range(0, x.shape[1], 160):
                yield AudioFrame(np.ascontiguousarray(x[:, i : i + 160]), item.sample_rate)


class Recorder(Node):
    """Hands everything on; keeps the mono float32 audio it sees, by its pts."""

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name)
        self.blocks: list[tuple[int, np.ndarray]] = []

    def process(self, item: Any) -> Any:
        if isinstance(item, AudioFrame) and item.pts is not None:
            self.blocks.append((item.pts, item.samples[0].copy()))
        return item

    def signal(self) -> np.ndarray:
        if not self.blocks:
            return np.zeros(0, np.float32)
        first = self.blocks[0][0]
        n = max(p + b.shape[0] for p, b in self.blocks) - first
        x = np.zeros(n, np.float32)
        for p, b in self.blocks:
            x[p - first : p - first + b.shape[0]] = b
        return x


class FarEnd(Recorder):
    """Records what reaches it (the cancelled near-end) and answers each frame with as many
    samples of a speech-like far-end (the bot's voice, whose echo comes back)."""

    def __init__(self, seconds: float, rate: int = 8000, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.far = speech_like(seconds, seed=1, rate=rate).astype(np.float32)
        self.pos = 0

    def process(self, item: Any) -> Any:
        if not isinstance(item, AudioFrame):
            return None
        super().process(item)
        n = item.num_samples
        out = np.zeros((1, n), np.float32)
        piece = self.far[self.pos : self.pos + n]
        out[0, : piece.shape[0]] = piece
        self.pos += n
        return AudioFrame(out, item.sample_rate, item.pts, item.time_base)


class FailAfter(Node):
    """Hands ``frames`` audio frames on, then raises (a stage with a bug)."""

    def __init__(self, frames: int, *, name: str | None = None) -> None:
        super().__init__(name)
        self.frames = frames

    def process(self, item: Any) -> Any:
        if isinstance(item, AudioFrame):
            self.frames -= 1
            if self.frames < 0:
                raise RuntimeError("the stage broke")
        return item
