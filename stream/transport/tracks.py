"""Adapters between aiortc tracks and pipelines.

- ``track_frames(track)``: an aiortc ``MediaStreamTrack`` as an async source of ``AudioFrame`` /
  ``VideoFrame`` (audio converted through the engine to the format a pipeline wants).
- ``AudioOutputTrack``: a ``MediaStreamTrack`` fed with pipeline output (any rate, channel count
  or sample format) that hands aiortc 20 ms s16 frames at 48 kHz, paced on the media clock, with
  continuous pts; conversion is one ``stream.audio_adapter.AudioAdapter`` (one native call per
  frame on the engine).
- ``VideoOutputTrack``: the same for video, keeping the frames' own pts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..audio_adapter import AudioAdapter
from ..errors import FormatError
from ..frames import AudioFrame, VideoFrame
from .opus_silence import SettledSilence

#: Every live output track, for leak accounting (``WebRTCServer.status()``).
live_tracks: weakref.WeakSet[MediaStreamTrack] = weakref.WeakSet()

RTC_SAMPLE_RATE = 48000  # what aiortc's Opus encoder works at
VIDEO_CLOCK = Fraction(1, 90000)


class FrameSource(Protocol):
    """What ``track_frames`` reads: an aiortc track, or a track-like source of our own."""

    @property
    def kind(self) -> str: ...

    async def recv(self) -> Any: ...


async def track_frames(
    track: FrameSource,
    *,
    audio: AudioAdapter | None = None,
    pixel_format: str | None = "rgb24",
    on_frame: Callable[[Any], None] | None = None,
) -> AsyncIterator[AudioFrame | VideoFrame]:
    """Frames received on an aiortc track until it ends, as RemoteMedia frames (a track-like
    source may give RemoteMedia audio frames itself: ``native_rtp.NativeAudioSource``).

    Audio goes through ``audio`` (default: float32 planar, rate and channels as received);
    video is converted to ``pixel_format`` (None keeps the decoder's, usually yuv420p).
    ``on_frame`` sees every frame as it arrives (activity tracking, levels).
    """
    converter = audio or AudioAdapter("fltp", name=f"in.{track.kind}")
    try:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            if isinstance(frame, AudioFrame | av.AudioFrame):
                ours = frame if isinstance(frame, AudioFrame) else AudioFrame.from_av(frame)
                for out in converter.convert(ours):
                    if on_frame is not None:
                        on_frame(out)
                    yield out
            elif isinstance(frame, av.VideoFrame):
                if pixel_format is not None and frame.format.name != pixel_format:
                    frame = frame.reformat(format=pixel_format)
                video = VideoFrame.from_av(frame)
                if on_frame is not None:
                    on_frame(video)
                yield video
        for out in converter.flush():
            yield out
    finally:
        converter.close()


class _Chunker:
    """Cuts s16 interleaved audio into ``size``-sample blocks for the encoder.

    The stream's first block is padded at the front to a multiple of ``size``: a resampler's
    first output is short by its delay, and without the pad every later block would wait for
    the next one to complete it (up to a block of added latency for the whole session).
    """

    def __init__(self, size: int, channels: int) -> None:
        self.size = size
        self._buf = np.zeros((0, channels), np.int16)
        self._pts: int | None = None  # of the first sample in _buf
        self._started = False

    def push(self, frame: AudioFrame) -> list[AudioFrame]:
        samples = frame.samples
        if not self._started:
            self._started = True
            pad = (-samples.shape[0]) % self.size
            if pad:
                samples = np.concatenate([np.zeros((pad, samples.shape[1]), np.int16), samples])
            if frame.pts is not None and frame.time_base is not None:
                self._pts = round(frame.pts * frame.time_base * RTC_SAMPLE_RATE) - pad
        buf = np.concatenate([self._buf, samples]) if len(self._buf) else samples
        n = len(buf) // self.size
        out = [self._block(buf[i * self.size : (i + 1) * self.size]) for i in range(n)]
        self._buf = buf[n * self.size :]
        return out

    def _block(self, samples: npt.NDArray[Any]) -> AudioFrame:
        pts = self._pts
        if self._pts is not None:
            self._pts += self.size
        return AudioFrame(np.ascontiguousarray(samples), RTC_SAMPLE_RATE, pts, planar=False)

    def flush(self) -> list[AudioFrame]:
        if not len(self._buf):
            return []
        pad = np.zeros((self.size - len(self._buf), self._buf.shape[1]), np.int16)
        out = [self._block(np.concatenate([self._buf, pad]))]
        self._buf = self._buf[:0]
        self._started = False
        return out


class OpusPacketizer:
    """Opus packets of 20 ms s16 frames, encoded inline: libopus through PyAV, set up as aiortc's
    own encoder is (48 kHz stereo, 96 kb/s, the ``voip`` application).

    aiortc encodes every frame a track gives it on the event loop's default thread pool: one
    hand-off to a thread and one back per 20 ms per session, which costs more than the encode
    itself (docs/webrtc.md, "Where a session's CPU goes"). A track that returns ``av.Packet``s
    instead is only packed. A packet's timestamp is its frame's pts (samples on the track's
    clock: libopus' own pts would lead by its look-ahead and restart with a new encoder). Mono
    frames make mono Opus packets, which every Opus decoder plays on both channels of the
    ``opus/48000/2`` that WebRTC always negotiates (RFC 7587), at half the encoding cost of
    stereo. What this path does not give: the RTP audio-level header extension, which aiortc
    computes only for frames it encodes.

    Digital silence (a block of zeros: a listening voice agent, an underrun) is not encoded once
    the encoder has settled on it: after ``SETTLED`` zero blocks in a row gave the same packet,
    further zero blocks reuse that packet (libopus gives exactly that packet for each of them;
    a settled encoder costs 100-250 us per 20 ms on silence). Speech after the silence is
    encoded by an encoder that saw fewer zero blocks: its packets may differ in codec noise
    (decoded output 32-37 dB apart), not in quality (tests/webrtc/test_codec_path.py).
    """

    SETTLED = 3  # zero blocks in a row with one packet before the encoder is skipped

    def __init__(self, channels: int = 2) -> None:
        codec: Any = av.CodecContext.create("libopus", "w")
        codec.bit_rate = 96000 if channels == 2 else 64000
        codec.format = "s16"
        codec.layout = "stereo" if channels == 2 else "mono"
        codec.options = {"application": "voip"}
        codec.sample_rate = RTC_SAMPLE_RATE
        codec.time_base = Fraction(1, RTC_SAMPLE_RATE)
        self._codec = codec
        self.channels = channels
        self._silence = SettledSilence()
        self.encoded = 0  # blocks the encoder ran on
        self.reused = 0  # zero blocks sent as the settled silence packet

    def encode(self, frame: av.AudioFrame) -> list[Any]:
        """The ``av.Packet``s of one frame (one, in practice), stamped with the frame's pts."""
        self.encoded += 1
        packets: list[Any] = list(self._codec.encode(frame))
        for packet in packets:
            packet.pts = frame.pts
        return packets

    def encode_block(self, frame: AudioFrame) -> list[Any]:
        """``encode`` for a RemoteMedia frame of interleaved s16, skipping settled silence."""
        silent = not frame.samples.any()
        if silent and self._silence.packet is not None:
            self.reused += 1
            packet = av.Packet(self._silence.packet)
            packet.pts = frame.pts
            packet.time_base = self._codec.time_base
            return [packet]
        packets = self.encode(frame.to_av())
        one = silent and len(packets) == 1
        self._silence.observe(bytes(packets[0]) if one else None, self.SETTLED)
        return packets


class AudioOutputTrack(MediaStreamTrack):
    """An aiortc audio track fed with ``put(frame)``: 20 ms s16 frames at 48 kHz, paced.

    ``recv()`` (called by aiortc's sender) returns the next 20 ms as soon as it is there, but never
    more than ``lead_ms`` ahead of the media clock; when nothing came ``grace_ms`` after a frame
    was due it returns silence (an underrun) so the clock and the pts stay continuous. Audio
    beyond ``max_buffer_ms`` is dropped oldest first, and a backlog that stood for a whole
    ``trim_after_ms`` window (a burst at start-up, a late packet that was waited for) is dropped
    too, so latency cannot build up (None: keep all, for sources faster than real time that are
    paced by their writer). ``end()``: the
    track ends once the buffered audio has been sent. Mono is sent as two equal channels
    (``channels=2``, the default): aiortc's encoder would up-mix it itself at -3 dB; with
    ``encode_opus()`` mono output is sent as mono Opus instead.
    ``on_send(block, perf_counter)``: each block of audio as it goes out; ``on_frame(frame)``:
    every frame handed to aiortc, silence included, pts on the track's sample clock (what the
    peer plays: an echo reference). ``encode_opus()`` (once the session knows the peer took
    Opus): ``recv()`` returns Opus packets encoded here instead of frames (``OpusPacketizer``).
    """

    kind = "audio"

    def __init__(
        self,
        *,
        channels: int = 2,
        frame_ms: int = 20,
        lead_ms: float = 20.0,
        grace_ms: float = 20.0,
        max_buffer_ms: float = 200.0,
        trim_after_ms: float | None = 1000.0,
        backend: str | None = None,
        on_send: Callable[[AudioFrame, float], None] | None = None,
        on_frame: Callable[[AudioFrame], None] | None = None,
    ) -> None:
        super().__init__()
        if channels not in (1, 2):
            raise FormatError(f"an RTC audio track carries 1 or 2 channels, not {channels}")
        self.sample_rate = RTC_SAMPLE_RATE
        self.channels = channels
        self.frame_samples = RTC_SAMPLE_RATE * frame_ms // 1000
        self._period = frame_ms / 1000
        self._lead = lead_ms / 1000
        self._grace = grace_ms / 1000
        self._max_blocks = max(1, int(max_buffer_ms // frame_ms))
        self._trim_window = int(trim_after_ms // frame_ms) if trim_after_ms else 0
        self._window_min = self._max_blocks
        self._window_count = 0
        self.trimmed = 0  # 20 ms blocks dropped because they only added delay
        self._converter = AudioAdapter(
            "s16", RTC_SAMPLE_RATE, channels, backend=backend, name="out.audio"
        )
        self._chunker = _Chunker(self.frame_samples, channels)
        self._blocks: collections.deque[AudioFrame] = collections.deque()
        self._put_times: collections.deque[float] = collections.deque()
        self.queue_ms = 0.0  # how long audio waits here before it is sent (moving average)
        self._waiter: asyncio.Future[None] | None = None
        self._start: float | None = None
        self._ended = False
        self._on_send = on_send
        self._on_frame = on_frame
        self.frames_sent = 0  # every frame handed to aiortc, silence included
        self.underruns = 0  # silence sent while audio had started and was expected
        self.dropped = 0  # 20 ms blocks dropped to bound the buffer
        self._audio_started = False
        self._opus: OpusPacketizer | None = None
        self._configured = False  # the first put() may make an Opus track mono
        self._backend = backend
        live_tracks.add(self)

    def encode_opus(self) -> None:
        """Encode here from now on: ``recv()`` returns Opus packets (the negotiated codec must be
        Opus at 48 kHz; call before the first ``put()``). A first frame that is mono makes the
        track mono (mono Opus: ``OpusPacketizer``)."""
        if self._opus is None:
            self._opus = OpusPacketizer(self.channels)

    def _first_put(self, frame: AudioFrame) -> None:
        self._configured = True
        if self._opus is not None and frame.channels == 1 and self.channels == 2:
            self.channels = 1
            self._converter.close()
            self._converter = AudioAdapter(
                "s16", RTC_SAMPLE_RATE, 1, backend=self._backend, name="out.audio"
            )
            self._chunker = _Chunker(self.frame_samples, 1)
            self._opus = OpusPacketizer(1)

    def put(self, frame: AudioFrame) -> None:
        """Queue pipeline output (any rate, channels, sample format). Raises FormatError."""
        if self._ended:
            return
        if not self._configured:
            self._first_put(frame)
        for converted in self._converter.convert(frame):
            for block in self._chunker.push(converted):
                self._append(block)

    def _append(self, block: AudioFrame) -> None:
        self._put_times.append(time.perf_counter())
        self._blocks.append(block)
        while len(self._blocks) > self._max_blocks:
            self._blocks.popleft()
            self._put_times.popleft()
            self.dropped += 1
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _trim(self) -> None:
        """Drop a standing backlog: audio that waited here for a whole window adds only delay."""
        if not self._trim_window:
            return
        self._window_min = min(self._window_min, len(self._blocks))
        self._window_count += 1
        if self._window_count >= self._trim_window:
            for _ in range(self._window_min):
                self._blocks.popleft()
                self._put_times.popleft()
                self.trimmed += 1
            self._window_min = self._max_blocks
            self._window_count = 0

    def end(self) -> None:
        """No more input: send what is buffered (and the converter's tail), then end."""
        if not self._ended:
            for converted in self._converter.flush():
                for block in self._chunker.push(converted):
                    self._append(block)
            for block in self._chunker.flush():
                self._append(block)
            self._ended = True
            self._wake()

    @property
    def silence_reused(self) -> int:
        """20 ms blocks of digital silence sent without running the Opus encoder."""
        return self._opus.reused if self._opus is not None else 0

    @property
    def buffered_ms(self) -> float:
        return len(self._blocks) * self._period * 1000

    async def recv(self) -> Any:  # av.AudioFrame, or av.Packet after encode_opus()
        if self._opus is None:
            return (await self.next_frame()).to_av()
        while True:  # libopus gives one packet per 20 ms frame (none: take the next frame)
            frame = await self.next_frame()  # first: the first put() may change the encoder
            packets = self._opus.encode_block(frame)
            if len(packets) == 1:
                return packets[0]
            if packets:  # Opus packets cannot be joined into one RTP payload
                raise FormatError(f"the Opus encoder gave {len(packets)} packets for 20 ms")

    async def next_frame(self) -> AudioFrame:
        """The next paced 20 ms block (s16 interleaved, pts on the track's sample clock):
        ``recv()`` without the conversion for aiortc, for a sender of our own
        (``native_rtp.NativeAudioPath``). Raises MediaStreamError once the track ended."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self.frames_sent * self._period
        block: AudioFrame | None = None
        while True:
            now = loop.time()
            if self._blocks:
                if not self._audio_started:  # the schedule starts with the audio, not before
                    self._start = now - self.frames_sent * self._period
                    due = now
                if now >= due - self._lead:
                    block = self._blocks.popleft()
                    waited = time.perf_counter() - self._put_times.popleft()
                    self.queue_ms = 0.9 * self.queue_ms + 0.1 * waited * 1000
                    self._trim()
                    break
                await asyncio.sleep(due - self._lead - now)
                continue
            if self._ended:
                self.stop()
                raise MediaStreamError
            if now >= due + self._grace:
                if self._audio_started:
                    self.underruns += 1
                break
            self._waiter = loop.create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due + self._grace - now):
                    await self._waiter
            self._waiter = None
            if self.readyState != "live":
                raise MediaStreamError
        if block is None:
            samples: npt.NDArray[Any] = np.zeros((self.frame_samples, self.channels), np.int16)
        else:
            self._audio_started = True
            samples = block.samples
        frame = AudioFrame(
            samples, self.sample_rate, self.frames_sent * self.frame_samples, planar=False
        )
        self.frames_sent += 1
        if self._on_frame is not None:
            self._on_frame(frame)
        if block is not None and self._on_send is not None:
            self._on_send(block, time.perf_counter())
        return frame

    def stop(self) -> None:
        self._ended = True
        self._wake()
        if self.readyState == "live":
            self._converter.close()
        super().stop()


class VideoOutputTrack(MediaStreamTrack):
    """An aiortc video track fed with ``put(frame)``; keeps at most ``max_frames`` queued.

    Frames keep their pts and time_base; untimed frames are stamped from the wall clock at 90 kHz.
    When the queue is full the oldest frame is dropped (latency over completeness).
    """

    kind = "video"

    def __init__(self, *, max_frames: int = 2) -> None:
        super().__init__()
        self._queue: collections.deque[VideoFrame | None] = collections.deque()
        self._max = max_frames
        self._waiter: asyncio.Future[None] | None = None
        self._t0: float | None = None
        self.frames_sent = 0
        self.dropped = 0
        live_tracks.add(self)

    def put(self, frame: VideoFrame) -> None:
        self._queue.append(frame)
        while len(self._queue) > self._max:
            self._queue.popleft()
            self.dropped += 1
        self._wake()

    def end(self) -> None:
        self._queue.append(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.VideoFrame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        frame = self._queue.popleft()
        if frame is None or self.readyState != "live":
            self.stop()
            raise MediaStreamError
        out = frame.to_av()
        if frame.pts is None or frame.time_base is None:
            now = time.perf_counter()
            self._t0 = now if self._t0 is None else self._t0
            out.pts = round((now - self._t0) / VIDEO_CLOCK)
            out.time_base = VIDEO_CLOCK
        self.frames_sent += 1
        return out

    def stop(self) -> None:
        self._wake()
        super().stop()


def __getattr__(name: str) -> Any:
    if name == "AudioConverter":  # its old name, before it moved to the core
        warnings.warn(
            "stream.transport.tracks.AudioConverter is now stream.audio_adapter.AudioAdapter",
            DeprecationWarning,
            stacklevel=2,
        )
        return AudioAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RTC_SAMPLE_RATE",
    "AudioAdapter",
    "AudioOutputTrack",
    "VideoOutputTrack",
    "live_tracks",
    "track_frames",
]
