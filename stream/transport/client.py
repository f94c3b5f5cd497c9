"""The Python peer: send any source to a ``WebRTCServer``, receive its output into any sink.

``connect(url, source=..., sink=...)`` runs one exchange to the end; ``Peer`` is the same as an
async context manager, for sending control messages while media flows.

A source is an iterable or async iterable of ``AudioFrame``/``VideoFrame`` (a list, a generator,
``pipeline.process()``), or a ``Source`` node. A sink is a list (frames are appended), a callable
(called with each frame), or a ``Node`` (a ``FileSink``: run in a pipeline of its own and
finalized at the end).

Before its offer a peer asks the server's ``GET /config`` for the STUN/TURN servers to use
(unless given ``ice_servers``). An ``https://`` URL is checked against the system's CA store, or
``cafile``. When the server closes the session it says why (``{"type": "close", "reason"}``):
the peer closes its side and keeps the reason in ``PeerResult.close_reason``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from ..audio_adapter import AudioAdapter
from ..errors import TransportError
from ..frames import AudioFrame, VideoFrame
from ..node import Node, Source
from ..pipeline import Pipeline
from ._aiortc import (
    pin_host_addresses,
    resolve_host_addresses,
    rtc_configuration,
    selected_candidate_types,
    use_jitter_buffer,
)
from .ice import from_peer_config, parse_ice_server
from .session import SinkTap
from .tracks import AudioOutputTrack, VideoOutputTrack, track_frames

log = logging.getLogger("stream.transport")


@dataclass
class PeerResult:
    """What a finished exchange did: counters, the data-channel messages, the session id, and
    who ended it."""

    session: str | None = None
    frames_sent: int = 0
    frames_received: int = 0
    audio_seconds_received: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    ended_by: str = "peer"  # or "connection closed"/"connection failed": the other side ended it
    close_reason: str | None = None  # why the server closed the session, when it said so
    candidates: tuple[str, str] | None = None  # (local, remote) types of the pair ICE selected


async def _frames_of(source: Any) -> AsyncIterator[Any]:
    if isinstance(source, Source):
        async for item in Pipeline([source], name="peer source").process():
            yield item
    elif hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


class Peer:
    """A WebRTC peer of a RemoteMedia server (see the module docstring for sources and sinks).

    ``audio``/``video``: which tracks to offer (each sendrecv when there is a source, recvonly
    without). ``channels``: sent on the wire (2: mono is duplicated, as aiortc's own up-mix
    costs 3 dB); ``receive_channels``: of the audio handed to the sink (None: as decoded,
    stereo). ``token``: the server's bearer token. ``ice_addresses``, ``jitter_depth``: as for
    the server. ``ice_servers``: STUN/TURN specs (``ice`` module); None: those the server's
    ``/config`` gives (none from a server without it). ``cafile``: CA certificates (PEM) an
    ``https://`` server's certificate must chain to (default: the system's store).
    ``on_message``: called with each data-channel message (a dict). ``level_ms``,
    ``stats_ms``: ask the server for ``level`` / ``stats`` messages at these periods once the
    channel opens (0: none, for a peer that shows no meters or figures; None: the server's
    default, every 100 ms / every second).
    ``on_sent(frame, t)``: each 20 ms audio block as it is handed to the encoder, with
    ``time.perf_counter()``.
    """

    def __init__(
        self,
        url: str,
        source: Any = None,
        sink: Any = None,
        *,
        audio: bool = True,
        video: bool = False,
        channels: int = 2,
        receive_channels: int | None = 1,
        pixel_format: str = "rgb24",
        token: str | None = None,
        ice_addresses: Sequence[str] | None = None,
        ice_servers: Sequence[str] | None = None,
        jitter_depth: int | None = 3,
        connect_timeout: float = 15.0,
        cafile: str | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_sent: Callable[[AudioFrame, float], None] | None = None,
        level_ms: float | None = None,
        stats_ms: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.periods = {
            k: v for k, v in (("level_ms", level_ms), ("stats_ms", stats_ms)) if v is not None
        }
        self.source = source
        self.sink = sink
        self.want_audio = audio
        self.want_video = video
        self.receive_channels = receive_channels
        self.pixel_format = pixel_format
        self.token = token
        self.ice_addresses = resolve_host_addresses(ice_addresses) if ice_addresses else None
        self.jitter_depth = jitter_depth
        self.connect_timeout = connect_timeout
        self.on_message = on_message
        self.result = PeerResult()
        self.ice_servers = None if ice_servers is None else tuple(ice_servers)
        self.ssl = ssl.create_default_context(cafile=cafile) if cafile else None
        self.pc = RTCPeerConnection(rtc_configuration(self.ice_servers or ()))
        self.audio_track = (
            AudioOutputTrack(channels=channels, on_send=on_sent, trim_after_ms=None)
            if audio
            else None
        )
        self.video_track = VideoOutputTrack(max_frames=4) if video else None
        self.channel: RTCDataChannel | None = None
        self._sink_tap: SinkTap | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._receivers: list[asyncio.Task[None]] = []
        self._feeder: asyncio.Task[None] | None = None
        self._waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._open = asyncio.Event()
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._closing = False
        self._failed: str | None = None
        self._ice_problem = ""  # what went wrong gathering candidates, for the error message
        self._started = 0.0

    # -- set up
    async def start(self) -> None:
        """Offer, get the answer, and start sending. Raises TransportError."""
        self._started = time.perf_counter()
        if self.ice_servers is None:
            self.ice_servers = await self._fetch_ice_servers()
            if self.ice_servers:  # the connection made before knowing them has done nothing
                await self.pc.close()
                self.pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        pc = self.pc
        if isinstance(self.sink, Node):
            self._sink_tap = SinkTap(self.sink, "peer")
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        for kind, track in (("audio", self.audio_track), ("video", self.video_track)):
            if track is None:
                continue
            if self.source is None:
                pc.addTransceiver(kind, direction="recvonly")
            else:
                pc.addTrack(track)
        self.channel = pc.createDataChannel("control")
        self.channel.on("open", self._on_open)
        self.channel.on("message", self._on_message)
        use_jitter_buffer(pc, self.jitter_depth)
        offer = await pc.createOffer()
        with pin_host_addresses(self.ice_addresses):
            await pc.setLocalDescription(offer)
        local = pc.localDescription
        assert local is not None
        self._check_relay(local.sdp)
        answer = await self._signal({"sdp": local.sdp, "type": local.type})
        self.result.session = answer.get("session")
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._connected.wait()
        except TimeoutError:
            raise TransportError(
                f"no media connection to {self.url} within {self.connect_timeout:g} s "
                f"(ICE state {pc.iceConnectionState}){self._ice_problem}"
            ) from None
        if self._failed:
            raise TransportError(f"connection to {self.url} {self._failed}{self._ice_problem}")
        self.result.candidates = selected_candidate_types(pc)
        if self.source is not None:
            self._feeder = asyncio.create_task(self._feed(), name="peer feeder")

    def _on_open(self) -> None:
        if self.periods and self.channel is not None:
            self.channel.send(json.dumps({"type": "subscribe", **self.periods}))
        self._open.set()

    def _check_relay(self, sdp: str) -> None:
        """Note (and log) a TURN server that gave no relay candidate: aioice drops a failed
        allocation silently, and the connection then fails for want of a path."""
        turn = [s for s in self.ice_servers or () if parse_ice_server(s).is_turn]
        if turn and " typ relay" not in sdp:
            url = parse_ice_server(turn[0]).url
            self._ice_problem = (
                f"; the TURN server {url} gave no relay candidate (wrong credentials, "
                "or it cannot be reached)"
            )
            log.warning("peer: %s", self._ice_problem[2:])

    def _http(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl) if self.ssl is not None else None
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), connector=connector)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _fetch_ice_servers(self) -> tuple[str, ...]:
        """The STUN/TURN servers the server's ``/config`` names (none from a server without
        one); raises TransportError when the server cannot be reached or refuses."""
        try:
            async with (
                self._http() as http,
                http.get(f"{self.url}/config", headers=self._headers()) as resp,
            ):
                if resp.status == 404:  # a server from before /config
                    return ()
                text = await resp.text()
                if resp.status != 200:
                    raise TransportError(
                        f"{self.url}/config: HTTP {resp.status}: {_error_of(text)}"
                    )
                data = json.loads(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransportError(f"signaling with {self.url} failed: {exc}") from exc
        entries = data.get("iceServers") if isinstance(data, dict) else None
        return from_peer_config(entries if isinstance(entries, list) else [])

    async def _signal(self, offer: dict[str, str]) -> dict[str, Any]:
        try:
            async with (
                self._http() as http,
                http.post(f"{self.url}/offer", json=offer, headers=self._headers()) as resp,
            ):
                text = await resp.text()
                if resp.status != 200:
                    raise TransportError(f"{self.url}/offer: HTTP {resp.status}: {_error_of(text)}")
                data: dict[str, Any] = json.loads(text)
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransportError(f"signaling with {self.url} failed: {exc}") from exc

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self._failed = self._failed or state
            self._connected.set()
            self._ended.set()
            if not self._closing:
                self.result.ended_by = f"connection {state}"

    @property
    def ended(self) -> bool:
        """True once the connection failed or was closed (by either side)."""
        return self._ended.is_set()

    async def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until the connection ends, at most ``timeout`` s; True if it ended."""
        try:
            async with asyncio.timeout(timeout):
                await self._ended.wait()
        except TimeoutError:
            return False
        return True

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._receivers.append(asyncio.create_task(self._receive(track), name=f"peer {track.kind}"))

    def _on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        self.result.messages.append(data)
        if data.get("type") == "close":
            self.result.close_reason = str(data.get("reason", ""))
            if not self._closing:  # the server ends the session: leave now, as it asks
                self._tasks.append(asyncio.create_task(self.pc.close(), name="peer leaves"))
        request = data.get("request")
        key = data.get("id", request.get("id") if isinstance(request, dict) else None)
        waiter = self._waiting.pop(key, None) if isinstance(key, int | str) else None
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        if self.on_message is not None:
            self.on_message(data)

    # -- media
    async def _feed(self) -> None:
        audio, video = self.audio_track, self.video_track
        t0: float | None = None
        try:
            async for item in _frames_of(self.source):
                if isinstance(item, AudioFrame) and audio is not None:
                    while audio.buffered_ms > 60 and audio.readyState == "live":
                        await asyncio.sleep(0.01)
                    audio.put(item)
                elif isinstance(item, VideoFrame) and video is not None:
                    if item.pts is not None and item.time_base is not None:
                        at = float(item.pts * item.time_base)
                        now = time.perf_counter()
                        t0 = now - at if t0 is None else t0
                        await asyncio.sleep(max(0.0, t0 + at - now))
                    video.put(item)
        finally:
            if audio is not None:
                audio.end()
            if video is not None:
                video.end()

    async def _receive(self, track: MediaStreamTrack) -> None:
        converter = AudioAdapter("fltp", None, self.receive_channels, name="peer.in")
        async for frame in track_frames(track, audio=converter, pixel_format=self.pixel_format):
            self.result.frames_received += 1
            if isinstance(frame, AudioFrame):
                self.result.audio_seconds_received += frame.duration
            sink = self.sink
            if isinstance(sink, list):
                sink.append(frame)
            elif self._sink_tap is not None:
                self._sink_tap.put(frame)
            elif callable(sink):
                sink(frame)

    # -- use
    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a control message and wait for its answer (``ack``, ``error``, ``pong``...).

        The answer is matched by ``id`` (one is added when the message has none). Raises
        TimeoutError when none comes.
        """
        async with asyncio.timeout(timeout):
            await self._open.wait()
        assert self.channel is not None
        if "id" not in message:
            self._next_id += 1
            message = {**message, "id": f"peer-{self._next_id}"}
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[message["id"]] = waiter
        try:
            self.channel.send(json.dumps(message))
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiting.pop(message["id"], None)

    async def wait_sent(self, timeout: float | None = None) -> None:
        """Until the source has been sent completely, or the connection ended."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        if self._feeder is not None:
            ended = asyncio.ensure_future(self._ended.wait())
            try:
                await asyncio.wait(
                    [self._feeder, ended], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                ended.cancel()
            if not self._feeder.done() and not self.ended:
                raise TimeoutError
        track = self.audio_track
        while (
            track is not None
            and track.readyState == "live"
            and self.source is not None
            and not self.ended
        ):
            if deadline is not None and time.perf_counter() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Stop sending and receiving, close the connection, finalize the sink."""
        self._closing = True
        if self._feeder is not None:
            self._feeder.cancel()
        for track in (self.audio_track, self.video_track):
            if track is not None:
                track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        for task in [*self._receivers, *([self._feeder] if self._feeder else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sink_tap is not None:
            await self._sink_tap.close()
            self._sink_tap = None
        if self.audio_track is not None:
            self.result.frames_sent = self.audio_track.frames_sent
        self.result.seconds = time.perf_counter() - self._started

    async def __aenter__(self) -> Peer:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _error_of(text: str) -> str:
    """The ``error`` of a JSON refusal, else the text itself."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return str(data.get("error", text)) if isinstance(data, dict) else text


async def connect(
    url: str,
    source: Any = None,
    sink: Any = None,
    *,
    seconds: float | None = None,
    tail: float = 0.6,
    control: Sequence[dict[str, Any]] = (),
    **options: Any,
) -> PeerResult:
    """Send ``source`` to the server at ``url`` and receive its output into ``sink``.

    Runs until the source has been sent plus ``tail`` seconds (for the processed audio still on
    its way back), or for ``seconds`` when given (needed without a source), or until the server
    ends the connection (``PeerResult.ended_by`` says so). ``control`` messages
    are sent once the data channel opens; a rejected one raises TransportError. ``options`` go to
    ``Peer``. Raises TransportError when signaling or the connection fails.
    """
    if source is None and seconds is None:
        raise TransportError("connect() without a source needs seconds=")
    async with Peer(url, source, sink, **options) as peer:
        for message in control:
            answer = await peer.request(message)
            if answer.get("type") == "error":
                raise TransportError(f"control message refused: {answer.get('message')}")
        if seconds is not None:
            await peer.wait_ended(seconds)
        else:
            await peer.wait_sent()
            await peer.wait_ended(tail)
    return peer.result


__all__ = ["Peer", "PeerResult", "connect"]
