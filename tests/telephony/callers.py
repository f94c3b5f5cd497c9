"""A caller speaking Twilio's Media Streams protocol, as Twilio's side of a call does: it sends
``connected``, ``start``, the caller's audio as base64 mu-law chunks of 20 ms (in real time, or
in bursts, some left out, or held back a while as a stalled network does), DTMF digits, and
answers each ``mark`` once the audio before it has been received; it records what the server
sends, with arrival times. With a ``room`` it plays what it receives and its microphone picks
that up again (the echo)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from stream.kernels.g711 import decode_float, encode_float

RATE = 8000
CHUNK = 160


@dataclass
class Received:
    media: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, samples)
    marks: list[tuple[float, str, int]] = field(
        default_factory=list
    )  # (arrival, name, media before)
    clears: list[tuple[float, int]] = field(default_factory=list)  # (arrival, media before)
    other: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    handshake_status: int | None = None

    def audio(self) -> np.ndarray:
        if not self.media:
            return np.zeros(0, np.float32)
        return np.concatenate([m for _, m in self.media])


class Speaker:
    """The caller's loudspeaker into its microphone: what it received, played from the first
    received sample on (after ``buffer_ms``), convolved with ``rir``."""

    def __init__(self, rir: np.ndarray, buffer_ms: float = 40.0) -> None:
        self.rir = rir.astype(np.float64)
        self.buffer_s = buffer_ms / 1000
        self.played: list[np.ndarray] = []
        self.first: float | None = None

    def echo(self, received: Received, start_s: float, n: int) -> np.ndarray:
        """The echo in the microphone over ``n`` samples from ``start_s`` (caller's clock)."""
        if not received.media:
            return np.zeros(n)
        if self.first is None:
            self.first = received.media[0][0] + self.buffer_s
        x = received.audio().astype(np.float64)
        a = round((start_s - self.first) * RATE)  # speaker sample at the chunk's start
        taps = self.rir.shape[0]
        lo = a - taps + 1
        seg = np.zeros(n + taps - 1)
        src_lo, src_hi = max(lo, 0), min(a + n, x.shape[0])
        if src_hi > src_lo:
            seg[src_lo - lo : src_hi - lo] = x[src_lo:src_hi]
        return np.convolve(seg, self.rir, mode="valid")[:n]


async def twilio_call(
    url: str,
    signal: np.ndarray,
    *,
    burst: int = 1,
    loss: float = 0.0,
    seed: int = 0,
    dtmf: dict[int, str] | None = None,
    dtmf_after_media: tuple[int, str] | None = None,
    room: Speaker | None = None,
    noise_db: float = -60.0,
    tail_s: float = 0.6,
    headers: dict[str, str] | None = None,
    stream_sid: str = "MZtest",
    stop: bool = True,
    after_media: tuple[int, Callable[[], Awaitable[Any]]] | None = None,
    hold: tuple[int, int] | None = None,
) -> Received:
    """Call ``url`` with ``signal`` (float32 mono at 8 kHz); see the module docstring.
    ``hold=(i, k)``: chunks ``i .. i + k - 1`` are sent together with chunk ``i + k``."""
    got = Received()
    rng = np.random.default_rng(seed)
    n_chunks = signal.shape[0] // CHUNK
    dtmf = dtmf or {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers or {})
        except aiohttp.WSServerHandshakeError as exc:
            got.handshake_status = exc.status
            return got
        async with ws:
            await ws.send_str(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            start = {
                "accountSid": "ACtest",
                "streamSid": stream_sid,
                "callSid": "CAtest",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"caller": "test"},
            }
            await ws.send_str(
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": "1",
                        "start": start,
                        "streamSid": stream_sid,
                    }
                )
            )
            seq = 2
            dtmf_sent = False
            hooks: list[asyncio.Task[Any]] = []

            async def receive() -> None:
                nonlocal seq, dtmf_sent
                async for msg in ws:
                    now = time.monotonic()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(msg.data)
                    event = data.get("event")
                    if event == "media":
                        raw = base64.b64decode(data["media"]["payload"])
                        got.media.append((now, decode_float(np.frombuffer(raw, np.uint8))))
                        if (
                            dtmf_after_media is not None
                            and not dtmf_sent
                            and len(got.media) >= dtmf_after_media[0]
                        ):
                            dtmf_sent = True
                            await ws.send_str(
                                json.dumps(
                                    {
                                        "event": "dtmf",
                                        "streamSid": stream_sid,
                                        "dtmf": {"digit": dtmf_after_media[1]},
                                    }
                                )
                            )
                        if after_media is not None and len(got.media) == after_media[0]:
                            hooks.append(asyncio.get_running_loop().create_task(after_media[1]()))
                    elif event == "mark":
                        name = data["mark"]["name"]
                        got.marks.append((now, name, len(got.media)))
                        # Twilio answers a mark once the audio before it has played: here, received
                        await ws.send_str(
                            json.dumps(
                                {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}
                            )
                        )
                    elif event == "clear":
                        got.clears.append((now, len(got.media)))
                    else:
                        got.other.append(data)

            receiver = asyncio.create_task(receive())
            t0 = time.monotonic()
            got.started = t0
            pending: list[str] = []
            for i in range(n_chunks):
                x = signal[i * CHUNK : (i + 1) * CHUNK].astype(np.float64)
                if room is not None:
                    due = t0 + (i + 1) * CHUNK / RATE
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    x = x + room.echo(got, t0 + i * CHUNK / RATE, CHUNK)
                    x = x + rng.standard_normal(CHUNK) * 10 ** (noise_db / 20)
                keep = rng.random() >= loss or i == 0
                if keep:
                    payload = base64.b64encode(
                        encode_float(x.astype(np.float32)).tobytes()
                    ).decode()
                    media = {
                        "track": "inbound",
                        "chunk": str(i + 1),
                        "timestamp": str(i * 20),
                        "payload": payload,
                    }
                    pending.append(
                        json.dumps(
                            {
                                "event": "media",
                                "sequenceNumber": str(seq),
                                "media": media,
                                "streamSid": stream_sid,
                            }
                        )
                    )
                    seq += 1
                if i in dtmf:
                    pending.append(
                        json.dumps(
                            {
                                "event": "dtmf",
                                "streamSid": stream_sid,
                                "dtmf": {"track": "inbound_track", "digit": dtmf[i]},
                            }
                        )
                    )
                held = hold is not None and hold[0] <= i < hold[0] + hold[1]
                if ((i + 1) % burst == 0 or i == n_chunks - 1) and not held:
                    if room is None:
                        due = t0 + (i + 1) * CHUNK / RATE
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                    try:
                        for message in pending:
                            await ws.send_str(message)
                    except (aiohttp.ClientConnectionResetError, ConnectionResetError):
                        break  # the server ended the call
                    pending.clear()
            await asyncio.wait({receiver}, timeout=tail_s)  # the processed audio still on its way
            if stop and not ws.closed:
                await ws.send_str(
                    json.dumps(
                        {
                            "event": "stop",
                            "sequenceNumber": str(seq),
                            "streamSid": stream_sid,
                            "stop": {},
                        }
                    )
                )
            await asyncio.wait({receiver}, timeout=10)
            if not receiver.done():
                receiver.cancel()
            await asyncio.gather(*hooks)
            got.close_code = ws.close_code
            extra = ws.exception()
            got.close_reason = str(extra) if extra else ""
    return got
