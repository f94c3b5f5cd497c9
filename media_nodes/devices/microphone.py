"""MicrophoneSource: live audio from an input device, as timed float32 planar AudioFrames.

PortAudio calls back on its own thread with one block of exactly ``frame_ms`` at a time. The
callback never blocks: it copies the block into a bounded buffer (a deque: ``append`` and
``popleft`` are atomic, so neither side takes a lock) and, only when the consumer is waiting,
wakes it with ``loop.call_soon_threadsafe``; it touches no other asyncio object.

When the consumer falls behind by ``buffer_frames`` frames, the *oldest* buffered frame is
dropped for each new one: a live source keeps the freshest audio, and the delay it can build up
stays bounded at ``buffer_frames * frame_ms``. pts count samples from the start of the capture
and include dropped frames, so a drop shows as a pts gap of its length and time stays true. The
same holds for audio the device itself lost (PortAudio's input-overflow flag): the block after an
overflow is stamped where its capture time says it belongs, so the lost stretch is a pts gap
(measured in whole blocks; without device times, as some host APIs give, no gap can be seen).

Clock: ``stream_origin`` is the PortAudio stream time (seconds) of the sample with pts 0,
estimated from each block's ``inputBufferAdcTime`` (``StreamClock``), so a pts maps onto the
clock PortAudio shares between the streams of one host API: ``stream_origin + pts /
sample_rate``. ``SpeakerSink.reference(microphone=...)`` uses it to stamp what the speaker played
on this source's pts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.errors import StreamError
from stream.frames import audio_frame_unchecked
from stream.kernel import config_error
from stream.node import Source

from ._portaudio import (
    AudioStream,
    DeviceInfo,
    StreamClock,
    callback_stop,
    check_settings,
    open_stream,
)
from .listing import check_device_arg, find_device


class MicrophoneSource(Source):
    """Capture from an input device: ``device`` is None (the default input), an index, or a
    case-insensitive name (or part of one).

    Frames are float32 ``(channels, samples)`` of ``round(sample_rate * frame_ms / 1000)``
    samples, pts in samples (time_base ``1/sample_rate``). ``buffer_frames`` bounds the frames
    held for a slow consumer (the oldest is dropped when full). ``stats``: frames delivered,
    overflows (frames dropped here plus PortAudio's input-overflow flags), dropped, buffered.

    Raises ConfigError for bad settings (at construction), and at ``initialize()`` for a device
    that matches nothing (the message lists the input devices) or cannot open at
    ``sample_rate``/``channels``.
    """

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: float = 20.0,
        buffer_frames: int = 50,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        check_device_arg(self.name, device)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise config_error(
                self.name, f"sample_rate must be a positive int, got {sample_rate!r}"
            )
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise config_error(self.name, f"channels must be an int >= 1, got {channels!r}")
        if (
            isinstance(frame_ms, bool)
            or not isinstance(frame_ms, int | float)
            or not math.isfinite(frame_ms)
            or round(sample_rate * frame_ms / 1000) < 1
        ):
            raise config_error(
                self.name, f"frame_ms must give at least one sample per frame, got {frame_ms!r}"
            )
        if (
            isinstance(buffer_frames, bool)
            or not isinstance(buffer_frames, int)
            or buffer_frames < 1
        ):
            raise config_error(
                self.name, f"buffer_frames must be an int >= 1, got {buffer_frames!r}"
            )
        self.device = device
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_ms = float(frame_ms)
        self.buffer_frames = buffer_frames
        self.frame_samples = round(sample_rate * frame_ms / 1000)
        self.device_info: DeviceInfo | None = None
        self._stream: AudioStream | None = None
        self._reset_state(None)

    def params(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_ms": self.frame_ms,
            "buffer_frames": self.buffer_frames,
        }

    def _reset_state(self, loop: asyncio.AbstractEventLoop | None) -> None:
        # Shared with the audio thread; each field has one writer (noted), so no lock is needed.
        self._loop = loop
        self._buffer: collections.deque[tuple[int, npt.NDArray[np.float32]]] = collections.deque()
        self._wake = asyncio.Event()
        self._waiting = False  # written by both: set by the consumer, cleared by whoever wakes it
        self._finished = False  # audio thread
        self._failure: BaseException | None = None  # audio thread
        self._captured = 0  # samples, audio thread: the next frame's pts
        self._dropped = 0  # audio thread
        self._device_overflows = 0  # audio thread
        self._delivered = 0  # consumer
        self._clock = StreamClock(self.sample_rate)  # audio thread

    @property
    def stats(self) -> dict[str, int]:
        """frames delivered, overflows (dropped + device flags), dropped, buffered (held now)."""
        return {
            "frames": self._delivered,
            "overflows": self._dropped + self._device_overflows,
            "dropped": self._dropped,
            "buffered": len(self._buffer),
        }

    @property
    def active(self) -> bool:
        """True while the device stream is open."""
        return self._stream is not None

    @property
    def stream_origin(self) -> float | None:
        """PortAudio stream time (seconds) of the sample with pts 0; None until the first block
        (or when the host API gives no times). Sample ``pts`` was captured at ``stream_origin +
        pts / sample_rate`` on the clock the speaker's ``outputBufferDacTime`` uses."""
        return self._clock.origin

    def initialize(self) -> None:
        """Find the device and check that it opens at ``sample_rate``/``channels`` (ConfigError)."""
        info = find_device(self.name, self.device, "input")
        check_settings(self.name, "input", info, self.sample_rate, self.channels)
        self.device_info = info

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        """Open and start the device, then yield frames until the consumer stops."""
        if self.device_info is None:
            self.initialize()
        assert self.device_info is not None
        self._close()
        self._reset_state(asyncio.get_running_loop())
        self._stream = open_stream(
            self.name,
            "input",
            self.device_info,
            self.sample_rate,
            self.channels,
            self.frame_samples,
            self._callback,
            self._on_finished,
        )
        time_base = Fraction(1, self.sample_rate)
        try:
            self._stream.start()
            buffer = self._buffer
            while True:
                try:
                    pts, block = buffer.popleft()
                except IndexError:
                    await self._wait()
                    continue
                self._delivered += 1
                yield audio_frame_unchecked(block, self.sample_rate, pts, time_base)
        finally:
            self._close()

    async def _wait(self) -> None:
        """Sleep until the audio thread has added a frame (or the device stopped)."""
        self._wake.clear()
        self._waiting = True
        # Re-check after announcing the wait: a frame added before the flag was seen would
        # otherwise not wake us.
        if self._buffer:
            self._waiting = False
            return
        if self._finished:
            self._waiting = False
            cause = self._failure
            raise StreamError(
                "the input device stopped"
                + (f": {type(cause).__name__}: {cause}" if cause else ""),
                stage=self.name,
            ) from cause
        await self._wake.wait()

    def _callback(
        self, indata: npt.NDArray[np.float32], frames: int, time: Any, status: Any
    ) -> None:
        """PortAudio's thread: copy the block in, drop the oldest when full, wake the consumer."""
        try:
            if status.input_overflow:
                self._device_overflows += 1
                self._captured += self._lost(frames, time.inputBufferAdcTime)
            pts = self._captured
            self._captured += frames
            self._clock.update(pts, time.inputBufferAdcTime)
            # A copy, always: PortAudio reuses indata (and for mono, indata.T is already
            # contiguous, so ascontiguousarray would return a view of it).
            block: npt.NDArray[np.float32] = indata.T.copy()
            buffer = self._buffer
            if len(buffer) >= self.buffer_frames:
                try:
                    buffer.popleft()
                    self._dropped += 1
                except IndexError:  # the consumer took it meanwhile: there is room after all
                    pass
            buffer.append((pts, block))
            if self._waiting:
                self._waiting = False
                self._notify()
        except Exception as exc:
            self._failure = exc
            raise callback_stop() from exc

    def _lost(self, frames: int, adc_time: float) -> int:
        """Audio thread, after an input overflow: how many samples the device lost before this
        block, from how far its capture time runs ahead of the samples counted. Less than a
        block is timestamp jitter, not loss: 0."""
        origin = self._clock.origin
        if origin is None or not adc_time > 0:
            return 0
        lost = round((adc_time - origin) * self.sample_rate) - self._captured
        return lost if lost >= frames else 0

    def _on_finished(self) -> None:
        """PortAudio's thread: the stream stopped (closed by us, or the device failed)."""
        self._finished = True
        self._notify()

    def _notify(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._wake.set)

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()  # drops the blocks PortAudio still holds; a live input needs no drain
            stream.close()

    def cleanup(self) -> None:
        """Stop and close the device stream if it is still open."""
        self._close()
        self._loop = None
