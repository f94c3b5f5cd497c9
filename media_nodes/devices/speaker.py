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
that would only add delay). Audio at another rate than the device's is resampled by the engine's
``ResampleKernel`` (or its Python twin, by the usual backend rules); channels are adapted as
ChannelMix does (mono to any, any to mono).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from media_nodes.audio.channel_mix import ChannelMixKernel
from media_nodes.audio.resample import ResampleKernel
from stream.engine import select_kernel
from stream.errors import FormatError, StreamError
from stream.kernel import config_error
from stream.kernel_node import _check_audio
from stream.node import Node

from ._portaudio import AudioStream, DeviceInfo, callback_stop, check_settings, open_stream
from .listing import check_device_arg, find_device

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


class SpeakerSink(Node):
    """Play audio on an output device: ``device`` is None (the default output), an index, or a
    case-insensitive name (or part of one). Emits nothing.

    ``sample_rate``: the rate the device plays at (None: the device's default rate); other
    rates are resampled. ``channels``: the device's channel count (None: the stream's, when the
    device has that many, else stereo or mono). ``jitter_ms``: the buffer between producer and
    device. ``stats``: frames played, underruns (plus PortAudio's output-underflow flags),
    resampled (bool). Raises ConfigError for bad settings or a device that matches nothing or
    cannot open as asked; FormatError for audio it cannot take.
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
        self._resampler: Any = None
        self._mixer: Any = None
        self._ring: _Ring | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._waiting = False
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
        self._resampler, self.backend, reason = select_kernel(
            self.name,
            None,
            "ResampleKernel",
            ResampleKernel,
            {"sample_rate": rate},
            self.force_python,
        )
        self.backend_reason = f"resampler: {reason}"
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
                f"{self.name}: cannot play {stream_channels} channels on {channels}; "
                "supported: mono to any, any to mono, or the same count"
            )
        self._mixer = None
        if channels != stream_channels:
            self._mixer, _, _ = select_kernel(
                self.name,
                None,
                "ChannelMixKernel",
                ChannelMixKernel,
                {"channels": channels},
                self.force_python,
            )
        self.device_channels = channels
        self._ring = _Ring(channels, self.capacity)
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
        if self._stream_rate == 0:
            self._stream_rate, self._stream_channels = frame.sample_rate, frame.channels
        elif frame.sample_rate != self._stream_rate:
            raise FormatError(
                f"{self.name}: sample rate changed mid-stream from {self._stream_rate} to "
                f"{frame.sample_rate} Hz"
            )
        elif frame.channels != self._stream_channels:
            raise FormatError(
                f"{self.name}: channel count changed mid-stream from {self._stream_channels} "
                f"to {frame.channels}"
            )
        if self._stream is None:
            self._open(frame.channels)
        if frame.sample_rate != self.device_rate:
            self._resampled = True
            blocks = self._resampler.process(frame.samples, frame.sample_rate)
        else:
            blocks = [frame.samples]
        for block in blocks:
            await self._write(block)
        self._frames += 1

    async def _write(self, block: Block) -> None:
        if self._mixer is not None:
            (block,) = self._mixer.process(block, self.device_rate)
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
            await asyncio.wait_for(self._wake.wait(), self.stall_timeout)
        except TimeoutError:
            self._waiting = False
            self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        if self._finished:
            cause = self._failure
            raise StreamError(
                f"{self.name}: the output device stopped"
                + (f": {type(cause).__name__}: {cause}" if cause else "")
            ) from cause

    def _callback(self, outdata: Block, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: fill ``outdata`` from the ring, silence for what is missing."""
        try:
            if status.output_underflow:
                self._underruns += 1
            ring = self._ring
            assert ring is not None
            filled = ring.filled
            if not self._playing:
                if filled >= ring.capacity or (self._draining and filled > 0):
                    self._playing = True
                else:
                    outdata.fill(0)
                    return
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
        except Exception as exc:
            self._failure = exc
            raise callback_stop() from exc

    def _on_finished(self) -> None:
        self._finished = True
        self._notify()

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
        for block in self._resampler.flush():  # nothing, by the kernel contract; kept general
            await self._write(block)
        self._draining = True
        last, since = ring.read, time.monotonic()
        while ring.filled and not self._finished:
            self._wake.clear()
            self._waiting = True
            if ring.filled:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.05)
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
        if self._resampler is not None:
            self._resampler.reset()
        self._ring = None
        self._loop = None
        self._draining = False
        self._playing = False
