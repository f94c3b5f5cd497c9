"""The Python client of the plain WebSocket media protocol (``/ws``, stream/transport/telephony).

``connect_ws(url, source, sink)`` sends a hello (``rate``, ``channels``, ``format``), then the
source's audio as binary PCM frames of ``frame_ms``, paced in real time (``realtime=False``:
as fast as the socket takes them), and receives the server's audio into the sink (a list, a
callable, or nothing) as float32 planar ``AudioFrame``s at the hello's rate and JSON messages
into ``WsResult.messages``. When the source ends it waits ``tail`` seconds for the processed
audio still on its way, sends ``{"type": "stop"}`` and returns once the server closed (the
server's ``{"type": "close", "reason"}`` is ``WsResult.close_reason``). ``events`` are JSON
messages sent after the hello (``{"type": "event", "kind", "payload"}``, marks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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


async def _frames(source: Any) -> AsyncIterator[Any]:
    if source is None:
        return
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


async def connect_ws(
    url: str,
    source: Any = None,
    sink: list[Any] | Callable[[AudioFrame], Any] | None = None,
    *,
    rate: int = 16000,
    channels: int = 1,
    format: str = "s16le",
    frame_ms: float = 20.0,
    token: str | None = None,
    events: Sequence[dict[str, Any]] = (),
    realtime: bool = True,
    tail: float = 0.5,
    timeout: float = 10.0,
) -> WsResult:
    """Exchange audio with ``/ws`` at ``url`` (``ws://host:port/ws``). Raises TransportError when
    the server refuses (its HTTP status and error) or the socket fails."""
    if format not in FORMATS:
        raise TransportError(f"format must be one of {list(FORMATS)}, got {format!r}")
    av_format, dtype, scale = FORMATS[format]
    frame = round(rate * frame_ms / 1000)
    adapter = AudioAdapter(av_format, rate, channels, frame)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    result = WsResult()
    started = time.monotonic()
    put = sink.append if isinstance(sink, list) else sink
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(
                url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=timeout)
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise TransportError(
                f"the server refused the socket: {exc.status} {exc.message}"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"cannot connect to {url}: {exc}") from exc
        async with ws:
            await ws.send_str(
                json.dumps({"type": "hello", "rate": rate, "channels": channels, "format": format})
            )
            hello = await ws.receive(timeout)
            if hello.type != aiohttp.WSMsgType.TEXT:
                raise TransportError(f"no hello from the server ({hello.type!r}: {hello.extra})")
            answer = json.loads(hello.data)
            if answer.get("type") != "hello":
                raise TransportError(f"the server answered the hello with {answer}")
            result.call = answer.get("call")
            for message in events:
                await ws.send_str(json.dumps(message))

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
                    with contextlib.suppress(ConnectionResetError):
                        await ws.send_str('{"type":"stop"}')
                    await asyncio.wait({receiver}, timeout=timeout)
            finally:
                if not receiver.done():
                    receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver
            result.close_code = ws.close_code
    result.seconds = time.monotonic() - started
    return result


__all__ = ["WsResult", "connect_ws"]
