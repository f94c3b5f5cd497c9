"""SpeakerSink: play AudioFrames on an output device, paced by the device.

Frames go into a jitter buffer, a single-producer single-consumer ring of ``jitter_ms`` of audio
at the device's rate: ``process`` (the event loop) writes, PortAudio's callback (its own thread)
reads. Each side only advances its own counter, so neither takes a lock, and the callback never
waits. When the ring is full, ``process`` awaits room, so a source faster than real time (a file)
is paced by the device; the callback wakes it through ``loop.call_soon_threadsafe``.

Playback starts once the ring is full (``jitter_ms`` of audio queued) and the callback then
drains it; if it runs dry mid-stream, that is an underrun: counted, the rest of the block is
silence, and playback waits until the ring is full again, so a stalling producer gives one gap
rather than many clicks. At end of stream (``flush``) whatever is queued plays out.

Frames play back to back in arrival order (pts gaps are not filled with silence: in a live chain
that would only add delay). Audio at another rate or channel count than the device's is adapted
by one ``stream.audio_adapter.AudioAdapter`` (one native call per frame on the engine, else the
Python twins, by the usual backend rules); channels are adapted as ChannelMix does (mono to any,
any to mono).

``reference()`` hands out what the device played, for echo cancellation: every block the
callback gives PortAudio (silence before playback starts and during underruns included: it is
what the room heard) is copied, with its ``outputBufferDacTime``, into a bounded deque that the
reader drains (the oldest blocks dropped, counted, when nobody keeps up). The clock rule: the
microphone and the speaker each count samples from their own stream start; PortAudio stamps both
streams' blocks on one stream clock (for streams of one host API), so each side fits the stream
time of its sample 0 (``StreamClock``) and ``reference(microphone=mic)`` stamps played sample
``k`` with the microphone pts ``k + (speaker origin - microphone origin) * rate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from stream.audio_adapter import AudioAdapter
from stream.errors import FormatError, StreamError
from stream.frames import AudioFrame, audio_frame_unchecked
from stream.kernel import config_error
from stream.kernel_node import _check_audio
from stream.node import Node

from ._portaudio import (
    AudioStream,
    DeviceInfo,
    StreamClock,
    callback_stop,
    check_settings,
    open_stream,
)
from .listing import check_device_arg, find_device

if TYPE_CHECKING:
    from .microphone import MicrophoneSource

Block = npt.NDArray[np.float32]
log = logging.getLogger("media_nodes.devices")


class _Ring:
    """Planar float32 ring of ``capacity`` samples; ``written``/``read`` count samples ever
    written/read, each advanced by one side only (producer / callback)."""

    __slots__ = ("buf", "capacity", "read", "written")

    def __init__(self, channels: int, capacity: int) -> None:
        self.buf: Block = np.zeros((channels, capacity), np.float32)
        self.capacity = capacity
        self.written = 0
        self.read = 0

    @property
    def filled(self) -> int:
        return self.written - self.read

    def write(self, block: Block) -> int:
        """Copy as much of ``block`` as fits; returns the samples taken."""
        n = min(int(block.shape[1]), self.capacity - self.filled)
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self.buf[:, start : start + first] = block[:, :first]
        self.buf[:, : n - first] = block[:, first:n]
        self.written += n  # publish only after the samples are in place
        return n

    def read_into(self, out: Block, n: int) -> None:
        """Copy the next ``n`` samples (n <= filled) into ``out[:n]``, an interleaved
        ``(samples, channels)`` array."""
        start = self.read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self.buf[:, start : start + first].T
        out[first:n] = self.buf[:, : n - first].T
        self.read += n


class _Tap:
    """What the device played, for one ``reference()`` reader: ``(pos, block)`` pairs appended by
    the callback (``pos``: the block's first sample, counted from the stream start), taken by the
    reader. Bounded at ``capacity`` samples: the callback drops the oldest (counted) to make room.
    Each counter has one writer, so neither side locks."""

    def __init__(self, max_ms: float) -> None:
        self.max_ms = max_ms
        self.capacity = 0  # samples; set when the device rate is known
        self.blocks: deque[tuple[int, Block]] = deque()
        self.pushed = 0  # samples, audio thread
        self.dropped = 0  # samples, audio thread
        self.taken = 0  # samples, reader
        self.loop: asyncio.AbstractEventLoop | None = None  # reader
        self.wake = asyncio.Event()
        self.waiting = False  # set by the reader, cleared by whoever wakes it
        self.closed = False  # the device stream stopped: no more blocks

    def push(self, pos: int, outdata: Block) -> None:
        """Audio thread: copy the block just played; drop the oldest when over capacity."""
        block: Block = outdata.T.copy()  # PortAudio reuses outdata
        n = int(block.shape[1])
        while self.pushed - self.dropped - self.taken + n > self.capacity:
            try:
                _, old = self.blocks.popleft()
            except IndexError:  # the reader took it meanwhile (or one block exceeds capacity)
                break
            self.dropped += int(old.shape[1])
        self.blocks.append((pos, block))
        self.pushed += n
        if self.waiting:
            self.waiting = False
            self.notify()

    def close(self) -> None:
        self.closed = True
        self.notify()

    def notify(self) -> None:
        loop = self.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self.wake.set)

    async def wait(self) -> None:
        self.wake.clear()
        self.waiting = True
        if self.blocks or self.closed:  # arrived before the flag was seen
            self.waiting = False
            return
        await self.wake.wait()


class SpeakerSink(Node):
    """Play audio on an output device: ``device`` is None (the default output), an index, or a
    case-insensitive name (or part of one). Emits nothing.

    ``sample_rate``: the rate the device plays at (None: the device's default rate); other
    rates are resampled. ``channels``: the device's channel count (None: the stream's, when the
    device has that many, else stereo or mono). ``jitter_ms``: the buffer between producer and
    device. ``stats``: frames played, underruns (plus PortAudio's output-underflow flags),
    resampled (bool). ``reference()``: what the device played, for ``EchoCancel``. Raises
    ConfigError for bad settings or a device that matches nothing or cannot open as asked;
    FormatError for audio it cannot take.
    """

    accepts_any = False

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int | None = None,
        channels: int | None = None,
        jitter_ms: float = 60.0,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        check_device_arg(self.name, device)
        if sample_rate is not None and (
            isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0
        ):
            raise config_error(
                self.name, f"sample_rate must be None or a positive int, got {sample_rate!r}"
            )
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or channels < 1
        ):
            raise config_error(self.name, f"channels must be None or an int >= 1, got {channels!r}")
        if (
            isinstance(jitter_ms, bool)
            or not isinstance(jitter_ms, int | float)
            or not math.isfinite(jitter_ms)
            or jitter_ms <= 0
        ):
            raise config_error(self.name, f"jitter_ms must be a number > 0, got {jitter_ms!r}")
        self.device = device
        self.sample_rate = sample_rate
        self.channels = channels
        self.jitter_ms = float(jitter_ms)
        self.backend = "unset"
        self.backend_reason = "not initialized"
        self.device_info: DeviceInfo | None = None
        self.device_rate = 0  # Hz the device plays at, known after initialize()
        self.device_channels = 0  # known once the first frame opened the device
        self._stream: AudioStream | None = None
        self._adapter: AudioAdapter | None = None
        self._ring: _Ring | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._waiting = False
        self._tap: _Tap | None = None  # the reference() reader's buffer, if any
        self._played = 0  # samples given to the device since the stream opened (audio thread)
        self._clock = StreamClock(1)
        self._unaligned = 0  # reference samples dropped before the clocks were known (reader)
        self._reset_stats()

    def params(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "jitter_ms": self.jitter_ms,
        }

    def _reset_stats(self) -> None:
        self._frames = 0
        self._underruns = 0  # audio thread
        self._resampled = False
        self._stream_rate = 0
        self._stream_channels = 0
        self._playing = False  # audio thread, once started
        self._draining = False  # event loop: end of stream, play whatever is queued
        self._finished = False  # audio thread: the device stream stopped
        self._failure: BaseException | None = None

    @property
    def stats(self) -> dict[str, Any]:
        """frames taken, underruns (plus device underflow flags), resampled (bool)."""
        return {"frames": self._frames, "underruns": self._underruns, "resampled": self._resampled}

    @property
    def active(self) -> bool:
        """True while the device stream is open."""
        return self._stream is not None

    @property
    def capacity(self) -> int:
        """The jitter buffer's size in samples at the device rate (0 before initialize())."""
        return max(1, round(self.jitter_ms * self.device_rate / 1000)) if self.device_rate else 0

    def initialize(self) -> None:
        """Find the device, fix its rate, check it opens (ConfigError), pick the resampler."""
        info = find_device(self.name, self.device, "output")
        rate = self.sample_rate or round(info.default_sample_rate)
        check_settings(self.name, "output", info, rate, self.channels or 1)
        self.device_info, self.device_rate = info, rate
        self._adapter = None
        probe = AudioAdapter(
            sample_rate=rate, backend="python" if self.force_python else None, name=self.name
        )
        self.backend = probe.backend
        self.backend_reason = "run(use_rust=False)" if self.force_python else probe.backend_reason
        self._reset_stats()

    def _open(self, stream_channels: int) -> None:
        """Open the device for the first frame's channel count and start it (silent until the
        jitter buffer is full)."""
        assert self.device_info is not None
        info = self.device_info
        channels = self.channels
        if channels is None:
            if stream_channels <= info.max_output_channels:
                channels = stream_channels
            else:
                channels = 2 if info.max_output_channels >= 2 else 1
        if channels != stream_channels and stream_channels != 1 and channels != 1:
            raise FormatError(
                f"cannot play {stream_channels} channels on {channels}; "
                "supported: mono to any, any to mono, or the same count",
                stage=self.name,
            )
        self._adapter = AudioAdapter(
            sample_rate=self.device_rate,
            channels=channels,
            backend=self.backend,
            name=self.name,
        )
        self.device_channels = channels
        self._ring = _Ring(channels, self.capacity)
        self._played = 0
        self._clock = StreamClock(self.device_rate)
        tap = self._tap
        if tap is not None:
            tap.capacity = max(1, round(tap.max_ms * self.device_rate / 1000))
        self._loop = asyncio.get_running_loop()
        self._stream = open_stream(
            self.name,
            "output",
            info,
            self.device_rate,
            channels,
            0,  # let PortAudio pick the block size it does best
            self._callback,
            self._on_finished,
        )
        self._stream.start()

    async def process(self, frame: Any) -> None:
        frame = _check_audio(self.name, frame)
        if frame is None:
            return  # video: a speaker plays the audio of an A/V stream
        if self._stream_rate == 0:
            self._stream_rate, self._stream_channels = frame.sample_rate, frame.channels
        elif frame.sample_rate != self._stream_rate:
            raise FormatError(
                f"sample rate changed mid-stream from {self._stream_rate} to "
                f"{frame.sample_rate} Hz",
                stage=self.name,
            )
        elif frame.channels != self._stream_channels:
            raise FormatError(
                f"channel count changed mid-stream from {self._stream_channels} "
                f"to {frame.channels}",
                stage=self.name,
            )
        if self._stream is None:
            self._open(frame.channels)
        if frame.sample_rate != self.device_rate:
            self._resampled = True
        assert self._adapter is not None
        for out in self._adapter.convert(frame):
            await self._write(out.samples)
        self._frames += 1

    async def _write(self, block: Block) -> None:
        ring = self._ring
        assert ring is not None
        taken = ring.write(block)
        while taken < block.shape[1]:
            await self._room()
            taken += ring.write(block[:, taken:])

    async def _room(self) -> None:
        """Wait until the callback has freed space in the jitter buffer."""
        ring = self._ring
        assert ring is not None
        self._wake.clear()
        self._waiting = True
        if ring.filled < ring.capacity:  # freed before the flag was seen
            self._waiting = False
            return
        self._raise_if_stopped()
        # A device plays the ring in about capacity/rate seconds; one that takes far longer has
        # stalled, so check on it now and then instead of waiting forever.
        try:
            async with asyncio.timeout(self.stall_timeout):
                await self._wake.wait()
        except TimeoutError:
            self._waiting = False
            self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        if self._finished:
            cause = self._failure
            raise StreamError(
                "the output device stopped"
                + (f": {type(cause).__name__}: {cause}" if cause else ""),
                stage=self.name,
            ) from cause

    def _callback(self, outdata: Block, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: fill ``outdata`` from the ring, silence for what is missing."""
        try:
            if status.output_underflow:
                self._underruns += 1
            ring = self._ring
            assert ring is not None
            filled = ring.filled
            if not self._playing and (filled >= ring.capacity or (self._draining and filled > 0)):
                self._playing = True
            if self._playing:
                n = min(filled, frames)
                ring.read_into(outdata, n)
                if n < frames:
                    outdata[n:] = 0
                    if not self._draining:
                        self._underruns += 1
                    self._playing = False  # wait for a full ring again before resuming
                if self._waiting and n:
                    self._waiting = False
                    self._notify()
            else:
                outdata.fill(0)
            # What was played, silence included, for reference() (the tap never blocks).
            pos = self._played
            self._played += frames
            self._clock.update(pos, time_info.outputBufferDacTime)
            tap = self._tap
            if tap is not None:
                tap.push(pos, outdata)
        except Exception as exc:
            self._failure = exc
            raise callback_stop() from exc

    def _on_finished(self) -> None:
        self._finished = True
        self._notify()
        tap = self._tap
        if tap is not None:
            tap.close()

    def _notify(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._wake.set)

    async def flush(self) -> None:
        """End of stream: play what is queued, then let the device finish. Gives up (with a
        warning) when the device makes no progress for ``stall_timeout`` seconds."""
        ring, stream = self._ring, self._stream
        if ring is None or stream is None:
            return
        if self._adapter is not None:  # a resampler's tail: nothing, by the kernel contract
            for out in self._adapter.flush():
                await self._write(out.samples)
        self._draining = True
        last, since = ring.read, time.monotonic()
        while ring.filled and not self._finished:
            self._wake.clear()
            self._waiting = True
            if ring.filled:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._wake.wait()
            self._waiting = False
            if ring.read != last:
                last, since = ring.read, time.monotonic()
            elif time.monotonic() - since > self.stall_timeout:
                log.warning(
                    "%s: the output device stalled; %d queued samples not played",
                    self.name,
                    ring.filled,
                )
                break
        self._raise_if_stopped()
        # stop() returns once PortAudio has played the blocks it holds; off the event loop.
        await asyncio.to_thread(stream.stop)

    @property
    def stall_timeout(self) -> float:
        """Seconds without progress after which the device counts as stalled."""
        latency = self._stream.latency if self._stream is not None else 0.0
        return max(1.0, 4 * self.jitter_ms / 1000 + 2 * latency)

    def cleanup(self) -> None:
        """Stop and close the device stream; drop the resampler's state."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()
        if self._adapter is not None:
            self._adapter.close()
        self._ring = None
        self._loop = None
        self._draining = False
        self._playing = False
        tap = self._tap
        if tap is not None:
            tap.close()

    @property
    def stream_origin(self) -> float | None:
        """PortAudio stream time (seconds) of the first sample the open stream played (fitted
        from ``outputBufferDacTime``); None before the first block or without host times."""
        return self._clock.origin

    @property
    def reference_stats(self) -> dict[str, int]:
        """For the current reference() reader: samples played into it, dropped (reader too
        slow), taken, buffered; ``unaligned``: samples it dropped, no clock to stamp them."""
        tap = self._tap
        if tap is None:
            return {"played": 0, "dropped": 0, "taken": 0, "buffered": 0, "unaligned": 0}
        return {
            "played": tap.pushed,
            "dropped": tap.dropped,
            "taken": tap.taken,
            "buffered": tap.pushed - tap.dropped - tap.taken,
            "unaligned": self._unaligned,
        }

    def reference(
        self, max_ms: float = 1000.0, *, microphone: MicrophoneSource | None = None
    ) -> AsyncIterator[AudioFrame]:
        """What the device plays, as float32 planar AudioFrames, for ``EchoCancel(reference=...)``.

        Capture starts now (one reader at a time: a new call replaces the previous reader) and
        ends when the device stream stops; at most ``max_ms`` of audio waits for the reader (the
        oldest is dropped, ``reference_stats["dropped"]``). Without ``microphone``: frames at the
        device rate, pts in samples of PortAudio's stream time (``round(time * rate)``). With
        it: pts on the microphone's pts (its samples from its stream start), resampled to its
        rate when the device plays at another; blocks played before the microphone has a clock
        are dropped (``unaligned``). pts are continuous; they are re-anchored (a jump) only when
        the two clocks' fitted origins move apart by more than 5 ms. Raises ConfigError for a bad
        ``max_ms``.
        """
        if (
            isinstance(max_ms, bool)
            or not isinstance(max_ms, int | float)
            or not math.isfinite(max_ms)
            or max_ms <= 0
        ):
            raise config_error(self.name, f"max_ms must be a number > 0, got {max_ms!r}")
        tap = _Tap(float(max_ms))
        if self.device_rate:
            tap.capacity = max(1, round(tap.max_ms * self.device_rate / 1000))
        self._tap = tap
        self._unaligned = 0
        return self._reference(tap, microphone)

    async def _reference(
        self, tap: _Tap, microphone: MicrophoneSource | None
    ) -> AsyncIterator[AudioFrame]:
        tap.loop = asyncio.get_running_loop()
        resampler: Any = None
        shift: int | None = None  # device-rate samples from the speaker's count to the pts
        next_pos: int | None = None
        out_pos = 0
        # Blocks wait here (up to the tap's capacity) until both clocks are known: a stream's
        # first blocks are played before PortAudio has times for them.
        pending: deque[tuple[int, Block]] = deque()
        held = 0
        try:
            while True:
                try:
                    item = tap.blocks.popleft()
                except IndexError:
                    if tap.closed:
                        return
                    await tap.wait()
                    continue
                tap.taken += int(item[1].shape[1])
                pending.append(item)
                held += int(item[1].shape[1])
                mic_origin = microphone.stream_origin if microphone is not None else 0.0
                spk_origin = self._clock.origin
                if mic_origin is None or spk_origin is None:
                    while held > tap.capacity and len(pending) > 1:
                        dropped = int(pending.popleft()[1].shape[1])
                        held -= dropped
                        self._unaligned += dropped
                    continue
                rate = self.device_rate
                out_rate = microphone.sample_rate if microphone is not None else rate
                ideal = round((spk_origin - mic_origin) * rate)
                while pending:
                    pos, block = pending.popleft()
                    n = int(block.shape[1])
                    held -= n
                    fresh = (
                        shift is None
                        or abs(ideal - shift) > round(0.005 * rate)
                        or next_pos != pos  # blocks were dropped: restart the resampler
                    )
                    if fresh:
                        shift = ideal
                        if resampler is not None:
                            resampler.reset()
                        out_pos = round((pos + shift) * out_rate / rate)  # the next output's pts
                    next_pos = pos + n
                    if out_rate == rate:
                        blocks = [block]
                    else:
                        if resampler is None:
                            resampler = AudioAdapter(
                                sample_rate=out_rate,
                                fallback_channels=None,
                                backend="python" if self.force_python else None,
                                name=self.name,
                            )
                        played = audio_frame_unchecked(block, rate, None, None)
                        blocks = [f.samples for f in resampler.convert(played)]
                        if fresh:  # its output lags its input by the filter's delay
                            out_pos -= int(resampler.latency_samples)
                    for b in blocks:
                        yield audio_frame_unchecked(b, out_rate, out_pos, Fraction(1, out_rate))
                        out_pos += int(b.shape[1])
        finally:
            if self._tap is tap:
                self._tap = None
