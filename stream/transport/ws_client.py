"""The Python client of the plain WebSocket media protocol (``/ws``, stream/transport/telephony).

``connect_ws(url, source, sink)`` sends a hello (``rate``, ``channels``, ``format``), then the
source's audio as binary PCM frames of ``frame_ms``, paced in real time (``realtime=False``:
as fast as the socket takes them), and receives the server's audio into the sink as float32
planar ``AudioFrame``s at the hello's rate and JSON messages into ``WsResult.messages``. A source
is an iterable or async iterable of frames, or a ``Source`` node; a sink is a list (frames are
appended), a callable (called with each frame), a ``Node`` (a ``FileSink``: run in a pipeline of
its own and finalized at the end) or nothing. When the source ends (or ``seconds`` of it were
sent) it waits ``tail`` seconds for the processed audio still on its way, sends
``{"type": "stop"}`` and returns once the server closed (the server's ``{"type": "close",
"reason"}`` is ``WsResult.close_reason``; ``WsResult.ended_by`` is ``"server"`` when the server
closed before the stop, and ``WsResult.complete`` says whether nothing was lost). ``events`` are
JSON messages sent after the hello (``{"type": "event", "kind", "payload"}``, marks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import numpy as np

from ..audio_adapter import AudioAdapter
from ..errors import TransportError
from ..frames import AudioFrame
from ..node import Node, Source
from ..pipeline import Pipeline

FORMATS = {"s16le": ("s16", "<i2", 1 / 32768), "f32le": ("flt", "<f4", 1.0)}


@dataclass
class WsResult:
    """What an exchange did: the call id, counters, JSON messages, and why it closed."""

    call: str | None = None
    frames_sent: int = 0
    frames_received: int = 0
    audio_seconds_received: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    close_reason: str | None = None
    close_code: int | None = None
    ended_by: str = "client"  # "server": the server closed the call before the client's stop

    @property
    def errors(self) -> list[str]:
        """The server's ``{"type": "error"}`` messages (malformed input, a failed pipeline)."""
        return [str(m.get("error")) for m in self.messages if m.get("type") == "error"]

    @property
    def complete(self) -> bool:
        """True when the exchange lost nothing: the client's stop ended it, the server closed
        normally (1000) and reported no error."""
        return self.ended_by == "client" and self.close_code == 1000 and not self.errors

    def problem(self) -> str | None:
        """Why the exchange is not complete, in a line, or None when it is."""
        if self.ended_by == "server":
            return f"the server ended the call: {self.close_reason or 'no reason given'}"
        if self.errors:
            return f"the server reported errors: {'; '.join(self.errors[:3])}"
        if self.close_code != 1000:
            return f"the socket closed abnormally (code {self.close_code})"
        return None


async def _frames(source: Any) -> AsyncIterator[Any]:
    if source is None:
        return
    if isinstance(source, Source):
        async for item in Pipeline([source], name="ws source").process():
            yield item
    elif hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


class _NodeSink:
    """A sink node in a pipeline of its own, fed in order (nothing dropped); ``close()`` ends
    its stream, so it flushes and finalizes (a FileSink writes its file), and raises its error."""

    def __init__(self, node: Node) -> None:
        self._queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue()
        self._pipeline = Pipeline([node], name=f"{node.name}:sink")
        self.task = asyncio.create_task(self._run(), name=f"{node.name}:sink")

    async def _items(self) -> AsyncIterator[AudioFrame]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def _run(self) -> None:
        async for _ in self._pipeline.process(self._items()):
            pass

    def put(self, frame: AudioFrame) -> None:
        self._queue.put_nowait(frame)

    async def close(self) -> None:
        self._queue.put_nowait(None)
        await self.task


async def connect_ws(
    url: str,
    source: Any = None,
    sink: list[Any] | Callable[[AudioFrame], Any] | Node | None = None,
    *,
    rate: int = 16000,
    channels: int = 1,
    format: str = "s16le",
    frame_ms: float = 20.0,
    token: str | None = None,
    events: Sequence[dict[str, Any]] = (),
    realtime: bool = True,
    seconds: float | None = None,
    tail: float = 0.5,
    timeout: float = 10.0,
    cafile: str | None = None,
) -> WsResult:
    """Exchange audio with ``/ws`` at ``url`` (``ws://host:port/ws``); ``seconds``: send at most
    that much of the source; ``cafile``: CA certificates (PEM) a ``wss://`` server's certificate
    must chain to (default: the system's store). Raises TransportError when the server refuses
    (its HTTP status and error) or the socket fails, and a sink node's error."""
    if format not in FORMATS:
        raise TransportError(f"format must be one of {list(FORMATS)}, got {format!r}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    result = WsResult()
    started = time.monotonic()
    tls = ssl.create_default_context(cafile=cafile) if cafile else True
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(
                url,
                headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                ssl=tls,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise TransportError(
                f"the server refused the socket: {exc.status} {exc.message}"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"cannot connect to {url}: {exc}") from exc
        node_sink = _NodeSink(sink) if isinstance(sink, Node) else None
        put: Callable[[AudioFrame], Any] | None = None
        if node_sink is not None:
            put = node_sink.put
        elif isinstance(sink, list):
            put = sink.append
        elif callable(sink):
            put = sink
        try:
            async with ws:
                await _exchange(
                    ws, source, put, result, events,
                    hello={"type": "hello", "rate": rate, "channels": channels, "format": format},
                    frame_ms=frame_ms, seconds=seconds, realtime=realtime, tail=tail,
                    timeout=timeout,
                )  # fmt: skip
        except BaseException:
            if node_sink is not None:
                node_sink.task.cancel()
                with contextlib.suppress(BaseException):
                    await node_sink.task
            raise
        if node_sink is not None:
            await node_sink.close()
    result.seconds = time.monotonic() - started
    return result


async def _exchange(
    ws: aiohttp.ClientWebSocketResponse,
    source: Any,
    put: Callable[[AudioFrame], Any] | None,
    result: WsResult,
    events: Sequence[dict[str, Any]],
    *,
    hello: dict[str, Any],
    frame_ms: float,
    seconds: float | None,
    realtime: bool,
    tail: float,
    timeout: float,
) -> None:
    """The hello, then the source sent and the server's audio received until the server closed."""
    rate, channels = hello["rate"], hello["channels"]
    av_format, dtype, scale = FORMATS[hello["format"]]
    adapter = AudioAdapter(av_format, rate, channels, round(rate * frame_ms / 1000))
    await ws.send_str(json.dumps(hello))
    reply = await ws.receive(timeout)
    if reply.type != aiohttp.WSMsgType.TEXT:
        raise TransportError(f"no hello from the server ({reply.type!r}: {reply.extra})")
    answer = json.loads(reply.data)
    if answer.get("type") != "hello":
        raise TransportError(f"the server answered the hello with {answer}")
    result.call = answer.get("call")
    for message in events:
        await ws.send_str(json.dumps(message))
    stopped = False  # the client's stop went out: a close after it is the normal end

    async def receive() -> None:
        pos = 0
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                x = np.frombuffer(msg.data, dtype).astype(np.float32)
                if scale != 1.0:
                    x *= np.float32(scale)
                block = np.ascontiguousarray(x.reshape(-1, channels).T)
                out = AudioFrame(block, rate, pos, Fraction(1, rate))
                pos += block.shape[1]
                result.frames_received += 1
                result.audio_seconds_received += out.duration
                if put is not None:
                    put(out)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                result.messages.append(data)
                if data.get("type") == "close":
                    result.close_reason = data.get("reason")
        if not stopped:
            result.ended_by = "server"

    async def send() -> None:
        t0 = time.monotonic()
        sent = 0.0
        async for item in _frames(source):
            if not isinstance(item, AudioFrame):
                continue
            for out in adapter.convert(item):
                await ws.send_bytes(np.ascontiguousarray(out.samples, dtype).tobytes())
                result.frames_sent += 1
                sent += out.duration
                if seconds is not None and sent >= seconds - 1e-6:
                    return
                if realtime:
                    await asyncio.sleep(max(0.0, t0 + sent - time.monotonic()))
        for out in adapter.flush():
            await ws.send_bytes(np.ascontiguousarray(out.samples, dtype).tobytes())
            result.frames_sent += 1

    receiver = asyncio.create_task(receive())
    try:
        try:
            await send()
        except ConnectionResetError:  # the server ended the call: its reason follows
            await asyncio.wait({receiver}, timeout=timeout)
        # the processed audio still on its way back, then the end
        done, _ = await asyncio.wait({receiver}, timeout=tail)
        if not done and not ws.closed:
            stopped = True
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str('{"type":"stop"}')
            await asyncio.wait({receiver}, timeout=timeout)
    finally:
        if not receiver.done():
            receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    result.close_code = ws.close_code


__all__ = ["WsResult", "connect_ws"]
