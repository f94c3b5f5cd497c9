"""``Call``: one phone call (or plain WebSocket media session) and the pipeline that serves it.

The call's clock is a tick every ``frame_ms``: each tick the outbound pacer sends what is due
toward the caller, and the playout buffer hands the pipeline its next inbound frame (real audio
or concealment), so the pipeline sees a steady stream whatever the TCP link did. DTMF digits and
the marks the caller's side played come into the pipeline as ``Event``s (stage ``"caller"``,
kinds ``"dtmf"``, payload ``{"digit"}``, and ``"mark"``, payload ``{"name"}``), in order with the
audio. Out of the pipeline: ``AudioFrame``s go to the caller (converted to the line's rate by
the core's ``AudioAdapter``, then paced); an event of a kind in ``settings.barge_in`` (default
``speech_start``) or of kind ``"clear"`` clears what is queued toward the caller (barge-in); an
event of kind ``"mark"`` from a stage (payload ``{"name"}``) becomes a mark after the audio
before it; on ``/ws`` every other event goes to the client as JSON.

``EchoCancel(reference="peer")`` stages get what the call sends to the caller as their reference
(``PeerReference``: outbound chunks stamped onto the inbound clock), as on a WebRTC leg.

How the socket looks is the ``Line``'s: a provider's JSON (``ProviderLine``, with a serializer
per provider, G.711 at 8 kHz) or the plain protocol (``PlainLine``: PCM in binary frames). A
malformed message is counted and answered (an error event on ``/ws``, a log line on a provider's
socket); past ``max_errors`` the call closes with the reason. Nothing a caller sends ends another
call: each call's failures are caught in its own tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ...audio_adapter import AudioAdapter
from ...errors import FormatError, StreamError
from ...events import PLAYOUT_SHIFT, Event
from ...frames import AudioFrame
from ...kernels.g711 import G711Codec, g711_kernel
from ...pipeline import Pipeline
from ..echo_reference import PeerReference, peer_reference_nodes
from .playout import F32, OutboundPacer, PlayoutBuffer
from .protocol import Connected, Dtmf, Ignored, Mark, Media, ProtocolError, Serializer, Start, Stop
from .settings import TelephonySettings

log = logging.getLogger("stream.transport")

#: The stage name of the events a call puts into its pipeline (DTMF, played marks).
CALLER = "caller"
#: Most inbound frames waiting for the pipeline (past it frames are dropped; events past twice
#: that).
INPUT_QUEUE = 100
DRAIN_S = 2.0  # how long a call ending normally goes on sending what is queued


class Line(Protocol):
    """How one call's socket looks: messages in, audio and marks out."""

    rate: int
    channels: int
    started: bool

    def read(self, msg: Any) -> list[Any]:
        """The items of one WebSocket message: ``Start``, ``Media`` (with ``samples`` mono
        float32), ``Dtmf``, ``Mark``, ``Stop``, ``Event``s; raises ProtocolError."""
        ...

    async def audio(self, chunk: F32) -> None: ...

    async def mark(self, name: str) -> None: ...

    async def clear(self) -> None: ...

    async def event(self, message: dict[str, Any]) -> None: ...

    async def error(self, message: str) -> None: ...

    async def opened(self) -> None:
        """The stream started: what the line says back, if anything."""
        ...


class Audio:
    """Decoded audio of one message: ``samples`` mono float32, placed at ``timestamp_ms``."""

    __slots__ = ("samples", "timestamp_ms")

    def __init__(self, samples: F32, timestamp_ms: int | None) -> None:
        self.samples = samples
        self.timestamp_ms = timestamp_ms


class ProviderLine:
    """A telephony provider's socket: JSON messages (``serializer``), G.711 audio at 8 kHz mono.

    The G.711 codec is the engine's ``G711Kernel`` when the engine is built (``backend``, as
    the call's audio adapters take it, can ask for the Python twin): ``codec_backend`` says
    which."""

    rate = 8000
    channels = 1

    def __init__(
        self, ws: web.WebSocketResponse, serializer: Serializer, backend: str | None = None
    ) -> None:
        self.ws = ws
        self.serializer = serializer
        self.stream_id = ""
        self.started = False
        self.start: Start | None = None
        self.ignored = 0
        self._backend = backend
        self._codec: G711Codec
        self.codec_backend = ""
        self._use_law("mulaw")

    @property
    def law(self) -> str:
        """The stream's G.711 law (``mulaw`` until the start message says otherwise)."""
        return self._codec.law

    def _use_law(self, law: str) -> None:
        self._codec, self.codec_backend = g711_kernel(law, stage="call.g711", backend=self._backend)

    def read(self, msg: Any) -> list[Any]:
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError("binary message: this protocol speaks JSON text")
        item = self.serializer.parse(msg.data)
        if isinstance(item, Media):
            if not self.started:
                raise ProtocolError("media before start")
            codes = np.frombuffer(item.payload, np.uint8)
            if not codes.size:  # nothing to decode (the codec refuses an empty block)
                return [Audio(np.zeros(0, np.float32), item.timestamp_ms)]
            return [Audio(self._codec.decode(codes[None, :])[0], item.timestamp_ms)]
        if isinstance(item, Start):
            if self.started:
                raise ProtocolError("a second start on one stream")
            self.start, self.started = item, True
            self.stream_id = item.stream_id
            if item.encoding != self.law:
                self._use_law(item.encoding)
            return [item]
        if isinstance(item, Connected | Ignored):
            self.ignored += isinstance(item, Ignored)
            return []
        if not self.started and not isinstance(item, Stop):
            raise ProtocolError(f"{type(item).__name__.lower()} before start")
        return [item]

    async def audio(self, chunk: F32) -> None:
        block = chunk[None, :]
        try:
            codes = self._codec.encode(block, self.rate)[0]
        except FormatError:  # a stage made NaN or infinity: send it as silence and full scale
            codes = self._codec.encode(np.nan_to_num(block, nan=0.0), self.rate)[0]
        await self.ws.send_str(self.serializer.media(self.stream_id, codes.tobytes()))

    async def mark(self, name: str) -> None:
        await self.ws.send_str(self.serializer.mark(self.stream_id, name))

    async def clear(self) -> None:
        await self.ws.send_str(self.serializer.clear(self.stream_id))

    async def event(self, message: dict[str, Any]) -> None:
        return None  # a provider's socket has no place for pipeline events

    async def error(self, message: str) -> None:
        return None  # nor for errors: the call logs them

    async def opened(self) -> None:
        return None


#: The plain protocol's sample formats: name -> (dtype, scale to float)
PLAIN_FORMATS: dict[str, tuple[type[np.generic], float]] = {
    "s16le": (np.int16, 1 / 32768),
    "f32le": (np.float32, 1.0),
}
MAX_PLAIN_RATE = 48000


class PlainLine:
    """``/ws``: a JSON hello ``{"type": "hello", "rate", "channels", "format"}`` (s16le or
    f32le, 1 or 2 channels, 8000..48000 Hz) answered by the server's hello (``call`` id added),
    then binary frames of interleaved PCM both ways and JSON beside them. In: ``{"type":
    "event", "kind", "payload"}`` (an Event of stage ``"caller"``), ``{"type": "mark", "name"}``,
    ``{"type": "stop"}``. Out: ``{"type": "event", ...}``, ``{"type": "mark", "name"}`` (after the
    audio before it was sent), ``{"type": "clear"}``, ``{"type": "error", "error"}``,
    ``{"type": "close", "reason"}``. The call path is mono: two channels in are averaged, and
    the mono result goes out on both."""

    def __init__(self, ws: web.WebSocketResponse, call_id: str, max_bytes: int) -> None:
        self.ws = ws
        self.call_id = call_id
        self.max_bytes = max_bytes
        self.rate = 16000
        self.channels = 1
        self.format = "s16le"
        self.started = False
        self._dtype: type[np.generic] = np.int16
        self._scale = 1 / 32768

    def read(self, msg: Any) -> list[Any]:
        if msg.type == WSMsgType.BINARY:
            if not self.started:
                raise ProtocolError("audio before the hello")
            return [Audio(self._decode(msg.data), None)]
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError(f"unexpected message type {msg.type!r}")
        try:
            data = json.loads(msg.data)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError("expected a JSON object")
        kind = data.get("type")
        if kind == "hello":
            return [self._hello(data)]
        if not self.started:
            raise ProtocolError("the first message must be the hello")
        if kind == "event":
            ev, payload = data.get("kind"), data.get("payload", {})
            if not isinstance(ev, str) or not ev or len(ev) > 64 or not isinstance(payload, dict):
                raise ProtocolError("an event needs a 'kind' (string) and a 'payload' object")
            if ev == PLAYOUT_SHIFT:
                raise ProtocolError(f"{PLAYOUT_SHIFT!r} is the server's own event")
            return [Event(ev, CALLER, None, payload)]
        if kind == "mark":
            name = data.get("name")
            if not isinstance(name, str) or len(name) > 256:
                raise ProtocolError("a mark needs a 'name' (string)")
            return [Mark(name)]
        if kind == "stop":
            return [Stop()]
        raise ProtocolError(f"unknown message type {kind!r}")

    def _hello(self, data: dict[str, Any]) -> Start:
        if self.started:
            raise ProtocolError("a second hello")
        rate, channels, fmt = data.get("rate"), data.get("channels", 1), data.get("format")
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int)
            or not 8000 <= rate <= MAX_PLAIN_RATE
        ):
            raise ProtocolError(f"rate must be an int in 8000..={MAX_PLAIN_RATE}, got {rate!r}")
        if type(channels) is not int or channels not in (1, 2):
            raise ProtocolError(f"channels must be 1 or 2, got {channels!r}")
        if not isinstance(fmt, str) or fmt not in PLAIN_FORMATS:
            raise ProtocolError(f"format must be one of {list(PLAIN_FORMATS)}, got {fmt!r}")
        self.rate, self.channels, self.format = rate, channels, fmt
        self._dtype, self._scale = PLAIN_FORMATS[fmt]
        self.started = True
        return Start(self.call_id, self.call_id, fmt, rate, channels)

    def _decode(self, data: bytes) -> F32:
        width = np.dtype(self._dtype).itemsize * self.channels
        if not data or len(data) % width:
            raise ProtocolError(
                f"a binary frame must be whole {self.format} frames ({width} bytes)"
            )
        x = np.frombuffer(data, np.dtype(self._dtype).newbyteorder("<")).astype(np.float32)
        if self._scale != 1.0:
            x *= np.float32(self._scale)
        elif not math.isfinite(float(x.sum())):
            raise ProtocolError("non-finite samples")
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return x

    def encode(self, chunk: F32) -> bytes:
        x = np.repeat(chunk, self.channels) if self.channels > 1 else chunk
        if self._dtype == np.int16:
            y = np.clip(np.rint(x * np.float32(32768)), -32768, 32767).astype("<i2")
            return bytes(y.tobytes())
        return bytes(x.astype("<f4").tobytes())

    async def audio(self, chunk: F32) -> None:
        await self.ws.send_bytes(self.encode(chunk))

    async def mark(self, name: str) -> None:
        await self.ws.send_str(json.dumps({"type": "mark", "name": name}))

    async def clear(self) -> None:
        await self.ws.send_str('{"type":"clear"}')

    async def event(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message, default=repr, allow_nan=False))

    async def error(self, message: str) -> None:
        await self.ws.send_str(json.dumps({"type": "error", "error": message}))

    async def opened(self) -> None:
        hello = {"type": "hello", "call": self.call_id, "rate": self.rate}
        await self.ws.send_str(
            json.dumps({**hello, "channels": self.channels, "format": self.format})
        )


def _is_playout_shift(item: Any) -> bool:
    """The call's own ``playout_shift`` event (clients cannot send one: ``PlainLine``)."""
    return isinstance(item, Event) and item.kind == PLAYOUT_SHIFT and item.stage == CALLER


class Call:
    """One call: the socket (``ws`` through ``line``), its pipeline, both directions' timing.

    ``run()`` serves it until the caller stops, the socket closes, the pipeline ends or fails,
    the call goes idle, or ``close(reason)``; it always cleans up the pipeline. ``stats()``:
    counters, JSON-ready.
    """

    def __init__(
        self,
        call_id: str,
        kind: str,
        ws: web.WebSocketResponse,
        line: Line,
        pipeline: Pipeline,
        settings: TelephonySettings,
        clock: Callable[[], float] = time.monotonic,
        on_ended: Callable[[Call], None] | None = None,
    ) -> None:
        self.id = call_id
        self._on_ended = on_ended
        self.kind = kind
        self.ws = ws
        self.line = line
        self.pipeline = pipeline
        self.settings = settings
        self.clock = clock
        self.created = clock()
        self.last_activity = self.created
        self.state = "new"
        self.close_reason: str | None = None
        self.errors = 0
        self.messages_in = 0
        self.events_in = 0
        self.events_dropped = 0
        self.events_out = 0
        self.frames_in = 0
        self.frames_dropped = 0
        self.barge_ins = 0
        self.start: Start | None = None
        self.playout: PlayoutBuffer | None = None
        self._announced = 0  # the playout's shift as of the last playout_shift event
        self.pacer: OutboundPacer | None = None
        self._input: asyncio.Queue[Any] = asyncio.Queue()
        self._end_input = object()
        self._closing = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._echo_nodes = peer_reference_nodes(pipeline.nodes)
        self.reference = PeerReference(clock=clock) if self._echo_nodes else None
        self._out_adapter: AudioAdapter | None = None
        self._in_adapter: AudioAdapter | None = None
        self._in_pos = 0  # samples handed to the pipeline (the inbound clock)
        self._out_pos = 0  # samples sent to the caller (the outbound clock)
        self._flow_start: float | None = None  # when the current run of outbound audio began
        self._flow_samples = 0

    # -- the whole call
    async def run(self) -> str:
        """Serve the call; returns why it ended."""
        self.state = "running"
        reader = asyncio.create_task(self._read(), name=f"call {self.id}: read")
        closing = asyncio.create_task(self._closing.wait(), name=f"call {self.id}: closing")
        try:
            await asyncio.wait({reader, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, closing):
                task.cancel()
            await asyncio.gather(reader, closing, return_exceptions=True)
            await self._finish()
        return self.close_reason or "closed"

    def close(self, reason: str) -> None:
        """End the call (from any task of this loop); ``run()`` returns ``reason``."""
        if self.close_reason is None:
            self.close_reason = reason
        self._closing.set()

    async def _read(self) -> None:
        try:
            await self._read_messages()
        except ConnectionError:
            self.close("caller closed the socket")
        except Exception as exc:  # a bug here must end this call only, and say so
            log.exception("call %s: reading the socket failed", self.id)
            self.close(f"internal error: {exc}")

    async def _read_messages(self) -> None:
        ws, settings = self.ws, self.settings
        while True:
            try:
                msg = await ws.receive(timeout=settings.idle_timeout)
            except TimeoutError:
                self.close(f"no message for {settings.idle_timeout:g} s")
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            self.last_activity = self.clock()
            self.messages_in += 1
            if msg.type == WSMsgType.ERROR:
                self.close(f"socket error: {ws.exception()}")
                return
            try:
                items = self.line.read(msg)
            except ProtocolError as exc:
                self.errors += 1
                log.info("call %s: %s", self.id, exc.message)
                if self.errors > settings.max_errors:
                    self.close(f"too many malformed messages ({self.errors}); last: {exc.message}")
                    return
                await self._send_safely(self.line.error(exc.message))
                continue
            for item in items:
                if self._take(item):
                    return
                if isinstance(item, Start):
                    await self._send_safely(self.line.opened())
        if self.close_reason is None:
            code = ws.close_code
            self.close("caller closed the socket" + (f" ({code})" if code else ""))

    def _take(self, item: Any) -> bool:
        """Handle one inbound item; True when the call ends."""
        if isinstance(item, Audio):
            if self.playout is not None:
                self.playout.put(item.samples, item.timestamp_ms, self.clock())
            return False
        if isinstance(item, Start):
            self._begin(item)
            return False
        if isinstance(item, Dtmf):
            self._event(Event("dtmf", CALLER, self._in_time(), {"digit": item.digit}))
            return False
        if isinstance(item, Mark):
            self._event(Event("mark", CALLER, self._in_time(), {"name": item.name}))
            return False
        if isinstance(item, Event):
            self._event(item)
            return False
        if isinstance(item, Stop):
            self.close("caller stopped the stream")
            return True
        return False

    def _in_time(self) -> float | None:
        return self._in_pos / self.line.rate if self.start is not None else None

    def _event(self, event: Event) -> None:
        if self._input.qsize() >= 2 * INPUT_QUEUE:  # a caller flooding events, a stalled pipeline
            self.events_dropped += 1
            return
        self.events_in += 1
        self._input.put_nowait(event)

    def _begin(self, start: Start) -> None:
        s = self.settings
        self.start = start
        rate = self.line.rate
        self.playout = PlayoutBuffer(
            rate, s.frame_ms, margin_ms=s.margin_ms, max_delay_ms=s.max_delay_ms
        )
        self.pacer = OutboundPacer(rate, s.frame_ms, max_backlog_ms=s.max_backlog_ms)
        self._in_adapter = AudioAdapter(
            "fltp", s.input_sample_rate, s.input_channels, backend=s.backend, name="call.in"
        )
        self._out_adapter = AudioAdapter("fltp", rate, 1, backend=s.backend, name="call.out")
        if self.reference is not None:
            for node in self._echo_nodes:
                node.use_reference(self.reference.frames())
        self._runner = asyncio.create_task(self._run_pipeline(), name=f"call {self.id}: pipeline")
        self._ticker = asyncio.create_task(self._tick(), name=f"call {self.id}: tick")

    # -- the clock: one tick per frame, both directions
    async def _tick(self) -> None:
        assert self.playout is not None and self.pacer is not None
        loop = asyncio.get_running_loop()
        period = self.settings.frame_ms / 1000
        t0 = loop.time()
        k = 0
        try:
            while not self._closing.is_set():
                now = loop.time()
                due = int((now - t0) / period) + 1
                if due - k > 50:  # the loop stalled for a second: start the clock afresh
                    t0, k, due = now, 0, 1
                while k < due:
                    await self._send_due()
                    if self.playout.started:  # the inbound clock starts with the first audio
                        self._feed(self.playout.pull(self.clock()))
                    k += 1
                await asyncio.sleep(max(0.0, t0 + k * period - loop.time()))
        except ConnectionError:
            self.close("caller closed the socket")
        except Exception as exc:  # a bug here must end this call only
            log.exception("call %s: clock failed", self.id)
            self.close(f"internal error: {exc}")

    def _feed(self, samples: F32) -> None:
        rate = self.line.rate
        frame = AudioFrame(samples[None, :], rate, self._in_pos, Fraction(1, rate))
        self._in_pos += samples.shape[0]
        if self._input.qsize() >= INPUT_QUEUE:
            self.frames_dropped += 1  # the pipeline is slower than real time
            return
        # The buffer's moves of the frames' clock against the caller's media since the last
        # event: an event before this frame, never dropped (echo cancellers follow it).
        assert self.playout is not None
        moved = self.playout.shift - self._announced
        if moved:
            shift_ms = moved * 1000 / rate
            self._input.put_nowait(Event(PLAYOUT_SHIFT, CALLER, frame.time, {"shift_ms": shift_ms}))
            self._announced = self.playout.shift
        self.frames_in += 1
        self._input.put_nowait(frame)

    async def _send_due(self) -> None:
        """Send the outbound chunks due now (and up to ``lead_chunks`` ahead)."""
        pacer = self.pacer
        assert pacer is not None
        now = self.clock()
        rate, frame = self.line.rate, pacer.frame
        lead = self.settings.lead_chunks * frame
        while True:
            if self._flow_start is not None:
                played = (now - self._flow_start) * rate  # samples the caller has played
                if self._flow_samples >= played + lead + frame:
                    return
                if pacer.empty and self._flow_samples + frame <= played:
                    self._flow_start = None  # a chunk was due and none came: the flow ended
                    pacer.underruns += 1
            chunk, marks = pacer.take()
            if chunk is not None:
                if self._flow_start is None:
                    self._flow_start, self._flow_samples = now, 0
                    # the outbound clock follows the wall clock across pauses
                    self._out_pos = max(self._out_pos, round((now - self.created) * rate))
                self._flow_samples += chunk.shape[0]
                await self.line.audio(chunk)
                if self.reference is not None:
                    self.reference.sent(
                        AudioFrame(chunk[None, :], rate, self._out_pos, Fraction(1, rate))
                    )
                self._out_pos += chunk.shape[0]
            for name in marks:
                await self.line.mark(name)
            if chunk is None:
                return

    # -- the pipeline
    async def _inputs(self) -> AsyncIterator[Any]:
        adapter = self._in_adapter
        assert adapter is not None
        while True:
            item = await self._input.get()
            if item is self._end_input:
                return
            if isinstance(item, AudioFrame):
                for frame in adapter.convert(item):
                    if self.reference is not None:
                        self.reference.heard(frame)
                    yield frame
            else:
                if self.reference is not None and _is_playout_shift(item):
                    self.reference.inbound_shifted(item.payload["shift_ms"] / 1000)
                yield item

    async def _run_pipeline(self) -> None:
        reason = "pipeline ended"
        try:
            async with self.pipeline:
                async for item in self.pipeline.process(self._inputs()):
                    await self._route(item)
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            reason = "caller closed the socket"
        except StreamError as exc:
            reason = f"pipeline failed: {exc}"
            log.error("call %s: %s", self.id, exc)
        except Exception as exc:  # a bug in a user stage: this call ends, the server serves on
            reason = f"pipeline failed: {type(exc).__name__}: {exc}"
            log.exception("call %s: pipeline crashed", self.id)
        if reason.startswith("pipeline failed"):
            await self._send_safely(self.line.error(reason))
        await self._drain()
        self.close(reason)

    async def _route(self, item: Any) -> None:
        pacer = self.pacer
        assert pacer is not None and self._out_adapter is not None
        if isinstance(item, AudioFrame):
            for frame in self._out_adapter.convert(item):
                pacer.put(np.ascontiguousarray(frame.samples[0]))
            return
        if not isinstance(item, Event):
            return
        if item.stage == CALLER:
            return  # the caller's own events, handed on by the stages: not echoed
        if item.kind in self.settings.barge_in or item.kind == "clear":
            self.barge_ins += 1
            marks = pacer.clear()
            self._flow_start = None
            await self.line.clear()
            for name in marks:  # the audio before them is dropped: they are answered now
                await self.line.mark(name)
        elif item.kind == "mark":
            pacer.mark(str(item.payload.get("name", "")))
            return
        self.events_out += 1
        await self.line.event(item.to_json())

    async def _drain(self) -> None:
        """Let the ticker send what is queued, up to DRAIN_S (the call ends normally)."""
        pacer = self.pacer
        deadline = self.clock() + DRAIN_S
        while pacer is not None and not pacer.empty and self._ticker is not None:
            if self._ticker.done() or self.clock() > deadline or self._closing.is_set():
                return
            await asyncio.sleep(self.settings.frame_ms / 1000)

    async def _send_safely(self, coro: Any) -> None:
        try:
            await coro
        except (ConnectionError, RuntimeError) as exc:  # the socket is closing
            log.debug("call %s: send failed: %s", self.id, exc)

    async def _finish(self) -> None:
        self.state = "closing"
        if self._runner is not None and not self._runner.done():
            self._input.put_nowait(self._end_input)
            try:
                async with asyncio.timeout(DRAIN_S + 1):
                    await asyncio.shield(self._runner)
            except TimeoutError:
                self._runner.cancel()
            except Exception:  # reported by the runner itself
                pass
        for task in (self._ticker, self._runner):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.reference is not None:
            self.reference.close()
        with contextlib.suppress(StreamError):
            await self.pipeline.cleanup()
        reason = self.close_reason or "closed"
        self.state = "closed"
        if self._on_ended is not None:  # before the caller sees the socket close
            self._on_ended(self)
        if not self.ws.closed:
            if isinstance(self.line, PlainLine):
                await self._send_safely(self.line.event({"type": "close", "reason": reason}))
            code = WSCloseCode.OK
            if reason.startswith("too many malformed"):
                code = WSCloseCode.POLICY_VIOLATION
            elif reason.startswith(("pipeline failed", "internal error")):
                code = WSCloseCode.INTERNAL_ERROR
            elif reason.startswith("server"):
                code = WSCloseCode.GOING_AWAY
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=reason.encode()[:120])

    def stats(self) -> dict[str, Any]:
        start = self.start
        return {
            "call": self.id,
            "kind": self.kind,
            "state": self.state,
            "age_s": round(self.clock() - self.created, 2),
            "stream": start.stream_id if start else None,
            "call_sid": start.call_id if start else None,
            "custom": dict(start.custom) if start else {},
            "messages_in": self.messages_in,
            "errors": self.errors,
            "frames_in": self.frames_in,
            "frames_dropped": self.frames_dropped,
            "events_in": self.events_in,
            "events_dropped": self.events_dropped,
            "events_out": self.events_out,
            "barge_ins": self.barge_ins,
            "playout": self.playout.stats if self.playout else None,
            "outbound": self.pacer.stats if self.pacer else None,
            "echo_reference": self.reference.stats if self.reference else None,
        }


__all__ = ["CALLER", "Call", "Line", "PlainLine", "ProviderLine"]
