"""One peer connection on the server: its own pipeline, tracks, data channel and life cycle.

A session takes the peer's offer, answers it, and runs its pipeline over the media the peer sends
(audio and video merged into one stream; audio stages hand video frames on). Outputs are routed
by type: ``AudioFrame`` to the outgoing audio track, ``VideoFrame`` to the video track, ``Event``
(and any object with ``to_json()``) to the data channel, everything to the optional sink.
It closes when the peer leaves or fails, when no media arrived for ``idle_timeout`` seconds, when
the pipeline ends or fails, or when the server stops; closing always cleans up the pipeline,
stops every track, closes the peer connection and finalizes the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from ..audio_adapter import AudioAdapter
from ..engine import has_rtp_audio_leg
from ..errors import StreamError
from ..events import Event
from ..frames import AudioFrame, VideoFrame
from ..metrics import PipelineStats
from ..node import Node, StreamingNode
from ..pipeline import Pipeline
from . import control, logs
from ._aiortc import (
    data_delivered,
    decode_inline,
    first_audio_codec,
    pin_host_addresses,
    rtc_configuration,
    use_jitter_buffer,
)
from .echo_reference import PeerReference, peer_reference_nodes
from .native_rtp import AudioPlan, NativeAudioPath, ParkedTrack, plan_audio, relay_chain
from .rtp_stats import TransportMeter, TransportStats
from .telemetry import SessionTrace
from .tracks import AudioOutputTrack, VideoOutputTrack, track_frames

log = logging.getLogger("stream.transport")

#: Every pipeline and peer connection a session made and has not released, for leak counts.
live_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()
live_peer_connections: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()

#: Why a session drops items (``Session.pipeline_stats().drops``), each counted from 0:
#: input that arrived while paused; outputs its sink tap was too far behind for; audio past the
#: outgoing track's buffer bound, or trimmed because it only added delay; video past the outgoing
#: track's queue. The pipeline between them never drops: its queues hold the stage before.
DROP_REASONS = (
    "paused",
    "sink_behind",
    "audio_out_overflow",
    "audio_out_trimmed",
    "video_out_overflow",
)


#: how long closing a session waits for aiortc's peer connection to stop
PC_CLOSE_TIMEOUT_S = 5.0
#: The message periods a peer may ask for (``{"type": "subscribe", ...}``), 0 aside.
MIN_PERIOD_MS = 20.0
MAX_PERIOD_MS = 60_000.0


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session settings, validated once by the server.

    ``input_channels``/``input_sample_rate``: what the pipeline receives (None: as decoded, 48 kHz
    stereo from Opus); ``pixel_format`` of video given to the pipeline; ``jitter_depth``: packets
    the audio jitter buffer may wait for a missing one (None keeps aiortc's fixed 80 ms buffer);
    ``opus_inline``: audio is decoded on the session's loop, and Opus-encoded there when the
    peer took Opus (else by aiortc, on a decoder thread and its thread pool:
    ``_aiortc.decode_inline``, ``tracks.OpusPacketizer``); ``native_rtp``: the peer's audio RTP
    and ours are handled by the engine (``native_rtp.NativeAudioPath``) where the offer allows it
    (Opus, a named SSRC) and the engine is built; needs a ``jitter_depth``.
    ``level_ms``/``stats_ms``: how often levels and stats go to the data channel (a peer may
    ask for other periods, or none: ``{"type": "subscribe", "level_ms": ..., "stats_ms": ...}``).
    """

    input_channels: int | None = 1
    input_sample_rate: int | None = None
    pixel_format: str = "rgb24"
    idle_timeout: float = 10.0
    jitter_depth: int | None = 3
    opus_inline: bool = True
    native_rtp: bool = True
    ice_addresses: frozenset[str] | None = None
    ice_servers: tuple[str, ...] = ()
    level_ms: float = 100.0
    stats_ms: float = 1000.0
    backend: str | None = None


class SinkTap:
    """Runs a sink node in a pipeline of its own, fed from a queue, beside the session's output.

    ``close()`` ends its stream, so the sink flushes and finalizes (a FileSink writes its file).
    """

    def __init__(self, sink: Node, name: str, max_items: int = 500) -> None:
        self.sink = sink
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_items)
        self._end = object()
        self.dropped = 0
        self._pipeline = Pipeline([sink], name=f"{name}:sink")
        self._task = asyncio.create_task(self._run(), name=f"{name}:sink")

    async def _items(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is self._end:
                return
            yield item

    async def _run(self) -> None:
        try:
            async for _ in self._pipeline.process(self._items()):
                pass
        except StreamError as exc:
            log.error("%s: sink failed: %s", self._pipeline.name, exc)

    def put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    async def close(self, timeout: float = 10.0) -> None:
        while True:  # make room for the end marker: the sink is behind, drop what it has not seen
            try:
                self._queue.put_nowait(self._end)
                break
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.error("%s: sink did not finish in %.0f s", self._pipeline.name, timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _Meter:
    """Peak and RMS level (dBFS) of the audio seen since the last ``take()``."""

    __slots__ = ("count", "peak", "sum_sq")

    def __init__(self) -> None:
        self.peak = 0.0
        self.sum_sq = 0.0
        self.count = 0

    def add_sums(self, peak: float, sum_sq: float, count: int) -> None:
        """Add figures measured elsewhere (the native relay's ``levels()``)."""
        self.peak = max(self.peak, peak)
        self.sum_sq += sum_sq
        self.count += count

    def add(self, frame: AudioFrame) -> None:
        x = frame.samples
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        if x.size:
            self.peak = max(self.peak, float(np.max(np.abs(x))))
            self.sum_sq += float(np.dot(x.ravel(), x.ravel()))
            self.count += x.size

    def take(self) -> dict[str, float | None]:
        rms = math.sqrt(self.sum_sq / self.count) if self.count else 0.0
        out = {"rms_db": _db(rms), "peak_db": _db(self.peak)}
        self.peak, self.sum_sq, self.count = 0.0, 0.0, 0
        return out


def _db(x: float) -> float | None:
    return round(20 * math.log10(x), 1) if x > 1e-9 else None


class Session:
    """A peer connection and the pipeline that serves it. Made by ``WebRTCServer``."""

    def __init__(
        self,
        session_id: str,
        pipeline: Pipeline,
        options: SessionOptions,
        *,
        sink: Node | None = None,
        on_closed: Callable[[Session], None] | None = None,
    ) -> None:
        self.id = session_id
        self.pipeline = pipeline
        self.options = options
        self.pc = RTCPeerConnection(rtc_configuration(options.ice_servers))
        live_peer_connections.add(self.pc)
        live_pipelines.add(pipeline)
        self._paused = False
        # periods of the level and stats messages; 0: none (the peer said so)
        self._level_ms, self._stats_ms = options.level_ms, options.stats_ms
        self.state = "new"
        self.close_reason: str | None = None
        self.created = time.monotonic()
        self.last_activity = self.created
        self.frames_in = 0
        self.frames_out = 0
        self.events_out = 0
        self.error: str | None = None
        self._sink_node = sink
        self._sink: SinkTap | None = None
        self._on_closed = on_closed
        self._inbound: list[MediaStreamTrack] = []
        self._audio_out: AudioOutputTrack | None = None
        self._video_out: VideoOutputTrack | None = None
        self._channel: RTCDataChannel | None = None
        # notices (draining, close) sent before the data channel opened: sent when it opens
        self._unsent: list[dict[str, Any]] = []
        self._run_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        # EchoCancel(reference="peer") stages cancel the echo of what this session sends
        self._echo_nodes = peer_reference_nodes(pipeline.nodes)
        self._reference = PeerReference() if self._echo_nodes else None
        self._in_meter = _Meter()
        self._out_meter = _Meter()
        self._next_level = 0.0
        self._next_stats = 0.0
        self._track_drops: dict[str, int] = {}  # of the output tracks, kept when they go
        # RTP packets, loss, jitter, round trip: sampled every stats_ms, at most once a second
        self._transport = TransportMeter(self.pc)
        self._transport_task: asyncio.Task[None] | None = None
        # where audio is decoded / encoded: "aiortc" (its threads), "inline" (decoded on this
        # loop), "inline+opus" (and Opus-encoded here too), "native" (RTP in the engine)
        self._codec_path = "aiortc"
        self._native: NativeAudioPath | None = None
        self._native_plan: AudioPlan | None = None
        self._native_send: asyncio.Task[None] | None = None
        self._relay_ns = 0  # the relay's chain time already counted in the pipeline's figures
        # OpenTelemetry: the session's span and its phases, stage spans sampled by the pipeline
        # (no-ops when tracing is off: stream/transport/telemetry.py)
        self.trace = SessionTrace(session_id, worker=logs.worker_name() or None)
        # this session's log lines name it (and its trace) whichever task logs them
        self._log = logging.LoggerAdapter(
            log, {"session": session_id, "trace_id": self.trace.trace_id}
        )
        if self.trace.frame_every:
            pipeline.sample_stages(self._stage_sample, self.trace.frame_every)

    # -- the protocol control.handle() needs
    @property
    def nodes(self) -> list[Node]:
        return self.pipeline.nodes

    @property
    def paused(self) -> bool:
        """Input is dropped while true (the peer's ``pause``/``resume``)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if self._native is not None:  # a relay thread drops from the next packet on
            self._native.sync_paused()

    def subscribe(
        self, level_ms: float | None = None, stats_ms: float | None = None
    ) -> dict[str, float]:
        """Level and stats messages every so many ms (``MIN_PERIOD_MS`` to ``MAX_PERIOD_MS``),
        or none for 0 (None: unchanged): a peer that shows no meters or figures need not pay for
        them. Returns the periods taken."""

        def period(ms: float) -> float:
            return 0.0 if ms == 0 else min(max(ms, MIN_PERIOD_MS), MAX_PERIOD_MS)

        if level_ms is not None:
            self._level_ms, self._next_level = period(level_ms), 0.0
        if stats_ms is not None:
            self._stats_ms, self._next_stats = period(stats_ms), 0.0
        return {"level_ms": self._level_ms, "stats_ms": self._stats_ms}

    def _tick_s(self) -> float:
        """How often a relay session's task reads the leg: at the shorter message period, at
        least once a second (activity and the sender reports need it)."""
        periods = [ms for ms in (self._level_ms, self._stats_ms) if ms > 0]
        return min([*periods, 1000.0]) / 1000

    def stats(self) -> dict[str, Any]:
        """Counters of this session, JSON-ready."""
        audio = self._audio_out
        native = self._native.stats() if self._native is not None else None
        reused = audio.silence_reused if audio else 0
        if native is not None:
            reused = native.get("silence_reused", 0)
        return {
            "session": self.id,
            "state": self.state,
            "paused": self.paused,
            "age_s": round(time.monotonic() - self.created, 2),
            "tracks_in": [t.kind for t in self._inbound],
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "events_out": self.events_out,
            "audio_underruns": audio.underruns if audio else 0,
            "audio_dropped": audio.dropped if audio else 0,
            "audio_buffered_ms": audio.buffered_ms if audio else 0.0,
            "audio_queue_ms": round(audio.queue_ms, 2) if audio else 0.0,
            "audio_trimmed": audio.trimmed if audio else 0,
            "audio_codec": self._codec_path,
            "audio_transport": "native" if self._native_active else "aiortc",
            "audio_silence_reused": reused,
            "audio_native": native,
            "echo_reference": self._reference.stats if self._reference else None,
            "stages": [
                {k: r[k] for k in ("name", "backend", "frames_in", "frames_out", "us_per_frame")}
                for r in self.pipeline.stages()
            ],
        }

    @property
    def _native_active(self) -> bool:
        return self._native is not None and self._native.failed is None

    def pipeline_stats(self) -> PipelineStats:
        """The pipeline's figures (``Pipeline.stats()``) with this session's drops by reason
        (``DROP_REASONS``, every one present)."""
        stats = self.pipeline.stats()
        drops = dict.fromkeys(DROP_REASONS, 0)
        drops.update(stats.drops)
        for reason, n in (self._track_drops or self._output_drops()).items():
            drops[reason] += n
        if self._sink is not None:
            drops["sink_behind"] += self._sink.dropped
        return replace(stats, drops=drops)

    def _output_drops(self) -> dict[str, int]:
        audio, video = self._audio_out, self._video_out
        return {
            "audio_out_overflow": audio.dropped if audio else 0,
            "audio_out_trimmed": audio.trimmed if audio else 0,
            "video_out_overflow": video.dropped if video else 0,
        }

    def transport_stats(self) -> TransportStats:
        """RTP and jitter-buffer figures as of the last sample (``rtp_stats.TransportMeter``)."""
        return self._transport.stats()

    def status(self) -> dict[str, Any]:
        """``stats()``, the pipeline's figures (``pipeline``: ``PipelineStats.to_dict()``) and
        the transport's (``transport``: ``TransportStats.to_dict()``, with ``now``: the latest
        jitter, round trip and loss fraction), what ``/status`` and the metrics show of a
        session."""
        transport = {**self.transport_stats().to_dict(), "now": self._transport.now}
        return {**self.stats(), "pipeline": self.pipeline_stats().to_dict(), "transport": transport}

    # -- signaling
    async def accept(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Answer the peer's offer and start the pipeline. Raises ValueError for a bad offer."""
        pc = self.pc
        self.trace.phase("offer")
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("iceconnectionstatechange", self._on_ice_state)
        opts = self.options
        if opts.native_rtp and opts.jitter_depth is not None and has_rtp_audio_leg(opts.backend):
            self._native_plan = plan_audio(offer.sdp)  # None: aiortc carries the audio
        await pc.setRemoteDescription(offer)
        use_jitter_buffer(pc, self.options.jitter_depth)
        if self.options.opus_inline and decode_inline(pc):
            self._codec_path = "inline"  # incoming audio decoded on this loop, no thread hops
        answer = await pc.createAnswer()
        with pin_host_addresses(self.options.ice_addresses):
            await pc.setLocalDescription(answer)
        local_sdp = pc.localDescription.sdp if pc.localDescription else ""
        opus = first_audio_codec(local_sdp) == "opus/48000/2"
        if self._native_plan is not None:
            self._start_native(local_sdp, opus)
        if self._native is None and self._audio_out is not None and opus and opts.opus_inline:
            self._audio_out.encode_opus()  # no thread hop per frame (tracks.OpusPacketizer)
            self._codec_path += "+opus"
        self.state = "connecting"
        self.trace.phase("ice")
        # the run task and what it starts log with this session's id and trace id
        with logs.bound(session=self.id, trace_id=self.trace.trace_id):
            self._run_task = asyncio.create_task(self._run(), name=f"session {self.id}")
            self._transport_task = asyncio.create_task(
                self._watch_transport(), name=f"session {self.id}: transport stats"
            )
        local = pc.localDescription
        assert local is not None
        return local

    def _start_native(self, local_sdp: str, opus: bool) -> None:
        """Hand the audio RTP to the engine (``native_rtp``) when the answer took Opus; else
        give aiortc's sender the real track back."""
        plan, audio_out = self._native_plan, self._audio_out
        sender = next((t.sender for t in self.pc.getTransceivers() if t.kind == "audio"), None)
        if plan is None or not opus or audio_out is None or sender is None:
            if sender is not None and audio_out is not None:
                sender.replaceTrack(audio_out)
            self._native_plan = None
            return
        native = NativeAudioPath(
            self.pc,
            plan,
            jitter_depth=self.options.jitter_depth or 0,
            decode_channels=2 if self.options.input_channels != 1 else 1,
            on_error=lambda why: sender.replaceTrack(audio_out),
        )
        native.install(local_sdp)
        self._native = native
        self._transport.native = native.stats
        self._codec_path = "native"

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._inbound.append(track)
        if track.kind == "audio" and self._audio_out is None:
            # live input: bursts from the network go straight out (up to 2 frames early)
            ref = self._reference
            self._audio_out = AudioOutputTrack(
                lead_ms=40, backend=self.options.backend, on_frame=ref.sent if ref else None
            )
            # on the native path the engine sends; aiortc's sender gets a track that never yields
            self.pc.addTrack(ParkedTrack() if self._native_plan else self._audio_out)
        elif track.kind == "video" and self._video_out is None:
            self._video_out = VideoOutputTrack()
            self.pc.addTrack(self._video_out)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self._on_message)
        hello = {
            "type": "hello",
            "session": self.id,
            "stages": [control.stage_settings(n) for n in self.pipeline.nodes],
        }
        if channel.readyState == "open":
            self._greet(hello)
        else:
            channel.on("open", lambda: self._greet(hello))

    def _greet(self, hello: dict[str, Any]) -> None:
        """The channel opened: the hello, then the notices that waited for it."""
        self.send(hello)
        unsent, self._unsent = self._unsent, []
        for message in unsent:
            self.send(message)

    def _on_message(self, message: str | bytes) -> None:
        self.last_activity = time.monotonic()
        # aiortc calls this inside its DTLS receive loop: an exception escaping here stops that
        # loop, and with it the media and the session. control.handle() answers everything a
        # peer can send; the guard is for a bug in it, which must not end the session either.
        try:
            answers = control.handle(message, self)
        except Exception:
            self._log.exception("session %s: control message handler failed", self.id)
            answers = [control.error("internal error, logged by the server")]
        for answer in answers:
            self.send(answer)

    def _on_ice_state(self) -> None:
        if self.pc.iceConnectionState in ("connected", "completed"):
            self.trace.phase("dtls")  # ICE found a pair; DTLS handshakes over it next

    def _stage_sample(self, node: Node, start_ns: int, end_ns: int) -> None:
        self.trace.stage(node.name, type(node).__name__, node.backend, start_ns, end_ns)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.state == "connecting":
            self.state = "connected"
            self.trace.phase("pipeline")  # DTLS done: media flows through the pipeline
        elif state in ("failed", "closed"):
            self.close_soon(f"peer connection {state}")

    @property
    def data_delivered(self) -> bool:
        """Whether the peer has what was sent on the data channel (``_aiortc.data_delivered``)."""
        return self.state == "closed" or data_delivered(self.pc)

    @property
    def can_send(self) -> bool:
        """Whether the data channel is open."""
        return self._channel is not None and self._channel.readyState == "open"

    def notify(self, message: dict[str, Any]) -> None:
        """Send a notice (draining, close) now, or after the hello once the data channel opens
        (a session just starting; at most a few are kept)."""
        if self.can_send:
            self.send(message)
        elif self.state != "closed" and len(self._unsent) < 4:
            self._unsent.append(message)

    def send(self, message: dict[str, Any]) -> None:
        """Send a JSON message on the data channel, if one is open (else drop it)."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        try:
            channel.send(json.dumps(message, default=repr, allow_nan=False))
        except (ValueError, TypeError) as exc:
            self._log.warning("session %s: cannot send %s: %s", self.id, message.get("type"), exc)
        except Exception as exc:  # the channel closed under us (aiortc raises its own errors)
            self._log.debug("session %s: data channel send failed: %s", self.id, exc)

    # -- media
    def _on_input(self, frame: Any) -> None:
        self.last_activity = time.monotonic()
        self.frames_in += 1
        if isinstance(frame, AudioFrame):
            self._in_meter.add(frame)
            if self._reference is not None:
                self._reference.heard(frame)

    async def _input(self) -> AsyncIterator[Any]:
        """Frames of every inbound track, merged; dropped while paused."""
        opts = self.options
        native = self._native
        sources = [
            track_frames(
                native.source if native is not None and t.kind == "audio" else t,
                audio=AudioAdapter(
                    "fltp",
                    opts.input_sample_rate,
                    opts.input_channels,
                    backend=opts.backend,
                    name=f"in.{t.kind}",
                ),
                pixel_format=opts.pixel_format,
                on_frame=self._on_input,
            )
            for t in self._inbound
        ]
        if len(sources) == 1:
            async for frame in sources[0]:
                if not self.paused:
                    yield frame
                else:
                    self.pipeline.count_drop("paused")
            return
        queue: asyncio.Queue[Any] = asyncio.Queue(16)
        done = object()

        async def pump(source: AsyncIterator[Any]) -> None:
            try:
                async for frame in source:
                    await queue.put(frame)
            finally:
                await queue.put(done)

        pumps = [asyncio.create_task(pump(s)) for s in sources]
        try:
            remaining = len(pumps)
            while remaining:
                item = await queue.get()
                if item is done:
                    remaining -= 1
                elif not self.paused:
                    yield item
                else:
                    self.pipeline.count_drop("paused")
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _run(self) -> None:
        reason = "pipeline ended"
        pipeline = self.pipeline
        try:
            if self._sink_node is not None:
                self._sink = SinkTap(self._sink_node, f"session {self.id}")
            first = pipeline.nodes[0] if pipeline.nodes else None
            generates = isinstance(first, StreamingNode) and not self._inbound
            stream = None if generates else self._input()
            if self._reference is not None:
                for node in self._echo_nodes:
                    node.use_reference(self._reference.frames())
            async with pipeline:
                chain = self._relay_chain()
                if chain is not None:
                    await self._run_relay(chain)
                else:
                    self._start_native_send()
                    async for item in pipeline.process(stream):
                        self._route(item)
            if self._audio_out is not None:
                self._audio_out.end()
            if self._video_out is not None:
                self._video_out.end()
            await self._drain_outputs()
        except asyncio.CancelledError:
            raise
        except StreamError as exc:
            reason = "pipeline failed"
            self.error = str(exc)
            self._log.error("session %s: %s", self.id, exc)
            self.send(control.error(f"pipeline failed: {exc}"))
        except Exception as exc:  # a bug in a user stage that escaped NodeError: keep serving
            reason = "pipeline failed"
            self.error = f"{type(exc).__name__}: {exc}"
            self._log.exception("session %s: pipeline crashed", self.id)
            self.send(control.error(f"pipeline failed: {self.error}"))
        self.close_soon(reason)

    def _start_native_send(self) -> None:
        native, audio_out = self._native, self._audio_out
        if native is not None and audio_out is not None:
            self._native_send = asyncio.create_task(
                native.send_from(audio_out), name=f"session {self.id}: native audio out"
            )

    def _relay_chain(self) -> Any:
        """The engine chain for a native relay (``native_rtp.relay_chain``) when this session
        can take one: the native audio path, audio in only, a pipeline that is one native run,
        no sink tap and no echo reference (both need the frames in Python); else None."""
        native, opts = self._native, self.options
        if (
            native is None
            or self._sink_node is not None
            or self._reference is not None
            or any(t.kind != "audio" for t in self._inbound)
        ):
            return None
        kernels = self.pipeline.native_run()
        if not kernels:
            return None
        try:
            return relay_chain(
                kernels,
                decode_channels=2 if opts.input_channels != 1 else 1,
                input_rate=opts.input_sample_rate,
                input_channels=opts.input_channels,
            )
        except StreamError as exc:
            self._log.info("session %s: no native relay (%s)", self.id, exc)
            return None

    async def _run_relay(self, chain: Any) -> None:
        """The round trip runs in the engine, from aioice's datagram callback; this task keeps
        the session's figures and messages (levels, stats, activity) every ``level_ms`` and
        ends the session when the chain fails."""
        native = self._native
        assert native is not None
        failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        def fail(exc: Exception) -> None:
            if not failed.done():
                failed.set_result(exc)

        native.start_relay(chain, paused=lambda: self.paused, on_error=fail)
        self._codec_path = "native relay"
        try:
            while not failed.done():  # a new level period applies from the next tick on
                await asyncio.wait([failed], timeout=self._tick_s())
                self._relay_tick(native)
        finally:
            native.stop_relay()
        raise failed.result()

    def _relay_tick(self, native: NativeAudioPath) -> None:
        leg = native.leg
        if leg is None:  # DTLS not connected yet
            return
        stats = leg.stats()
        native.sync_sender(stats)
        in_peak, in_sq, in_n, out_peak, out_sq, out_n = leg.levels()
        self._in_meter.add_sums(in_peak, in_sq, in_n)
        self._out_meter.add_sums(out_peak, out_sq, out_n)
        frames, sent, ns = stats["relay_frames"], stats["packets_sent"], stats["relay_ns"]
        new = frames - self.frames_in
        if new > 0:
            self.last_activity = time.monotonic()
            self.pipeline.count_native_run(new, new, ns - self._relay_ns)
        self._relay_ns = ns
        self.frames_in, self.frames_out = frames, sent
        native.sync_paused()
        if native.paused_drops:
            self.pipeline.count_drop("paused", native.paused_drops)
            native.paused_drops = 0
        self._tick()

    async def _drain_outputs(self, timeout: float = 5.0) -> None:
        """Wait until the outgoing audio has been sent (bounded), so the peer gets the tail."""
        deadline = time.monotonic() + timeout
        audio = self._audio_out
        while audio is not None and audio.readyState == "live" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _route(self, item: Any) -> None:
        if self._sink is not None:
            self._sink.put(item)
        if isinstance(item, AudioFrame):
            self.frames_out += 1
            self._out_meter.add(item)
            if self._audio_out is not None:
                self._audio_out.put(item)
            self._tick()
        elif isinstance(item, VideoFrame):
            self.frames_out += 1
            if self._video_out is not None:
                self._video_out.put(item)
        elif isinstance(item, Event) or hasattr(item, "to_json"):
            self.events_out += 1
            self.send(item.to_json())

    def _tick(self) -> None:
        """Levels and stats on the data channel, at most every level_ms / stats_ms."""
        now = time.monotonic()
        if self._level_ms > 0 and now >= self._next_level:
            self._next_level = now + self._level_ms / 1000
            self.send(
                {"type": "level", "input": self._in_meter.take(), "output": self._out_meter.take()}
            )
        if self._stats_ms > 0 and now >= self._next_stats:
            self._next_stats = now + self._stats_ms / 1000
            self.send({"type": "stats", **self.stats()})

    async def _watch_transport(self) -> None:
        """Sample the transport figures every ``stats_ms``, at most once a second: a
        ``getStats()`` builds a report of every sender and receiver, not to be done per frame
        or per scrape."""
        every = max(1.0, self.options.stats_ms / 1000)
        while True:
            await asyncio.sleep(every)
            await self._sample_transport()

    async def _sample_transport(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self._transport.sample()
        except Exception as exc:  # figures must never end a session (nor its close)
            self._log.debug("session %s: transport stats: %r", self.id, exc)

    # -- life cycle
    @property
    def idle_seconds(self) -> float:
        return time.monotonic() - self.last_activity

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def close_soon(self, reason: str) -> None:
        """Start closing (from a callback); ``close()`` awaits the same."""
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close(reason), name=f"close {self.id}")

    async def close(self, reason: str = "closed") -> None:
        """Close everything this session holds; safe to call again and from any task."""
        self.close_soon(reason)
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def _close(self, reason: str) -> None:
        self.close_reason = reason
        self.state = "closing"
        self._log.info("session %s: closing (%s)", self.id, reason)
        task = self._run_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for track in (self._audio_out, self._video_out, *self._inbound):
            if track is not None:
                track.stop()
        if self._native is not None:
            self._native.close()
        send = self._native_send
        if send is not None and not send.done():
            send.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await send
        if self._reference is not None:
            self._reference.close()
        watch = self._transport_task
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await self._sample_transport()  # the last figures, while the connection is up
        try:
            async with asyncio.timeout(PC_CLOSE_TIMEOUT_S):  # a close has a deadline too
                await self.pc.close()
        except TimeoutError:  # a task of aiortc's that died never says it stopped
            self._log.warning(
                "session %s: the peer connection did not close in %g s; left behind",
                self.id,
                PC_CLOSE_TIMEOUT_S,
            )
        except Exception as exc:  # aiortc may fail closing a half-open transport; we are done
            self._log.warning("session %s: closing the peer connection: %s", self.id, exc)
        self._track_drops = self._output_drops()  # the tracks go below; their counts stay
        sink = self._sink
        if sink is not None:
            await sink.close()
            self.pipeline.count_drop("sink_behind", sink.dropped)  # no await: counted once
            self._sink = None
        with contextlib.suppress(StreamError):  # the run task normally cleaned it up already
            await self.pipeline.cleanup()
        self._inbound.clear()
        self._audio_out = self._video_out = None
        self._channel = None
        self._sink = None
        self.pc.remove_all_listeners()
        self.state = "closed"
        self.trace.close(reason)
        if self._on_closed is not None:
            self._on_closed(self)


#: How long a close notice waits for the data channel of a session that is just starting (its
#: peer's channel usually opens within a round trip of the media; a peer without one waits
#: this long at most).
OPENING_S = 1.0


async def tell_closing(sessions: list[Session], reason: str, timeout: float) -> None:
    """Send each session's peer ``{"type": "close", "reason"}`` and wait (up to ``timeout``)
    until every one has it (its SCTP acknowledged the message) or has closed: closing the
    connection sooner could end it before the notice arrives, on a busy machine. A session
    younger than ``OPENING_S`` whose channel is not open yet gets the notice when it opens."""
    notice = {"type": "close", "reason": reason}
    opening: list[Session] = []
    for session in sessions:
        session.notify(notice)
        young = time.monotonic() - session.created < OPENING_S
        if not session.can_send and session.state != "closed" and young:
            opening.append(session)
    until = time.monotonic() + OPENING_S
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not all(s.data_delivered for s in sessions) or any(
                not s.can_send and s.state != "closed" for s in opening
            ):
                if time.monotonic() >= until:
                    opening = []  # their peers opened no channel in time
                await asyncio.sleep(0.02)  # no event for an SCTP acknowledgement


__all__ = [
    "DROP_REASONS",
    "Session",
    "SessionOptions",
    "SinkTap",
    "live_peer_connections",
    "live_pipelines",
    "tell_closing",
]
