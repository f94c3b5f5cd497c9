"""``WebRTCServer``: aiohttp signaling, the browser page, and one pipeline per peer connection.

Routes:

- ``GET /``: the browser page (``static/index.html``), ``GET /static/...``: its script and style.
- ``POST /offer``: ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "session"}``.
  401 without the bearer token (when one is set), 413 for an offer over ``max_offer_bytes``, 400
  for a malformed offer, 503 at ``max_sessions`` or while shutting down.
- ``GET /status``: sessions and leak counts (tasks, threads, live pipelines, tracks, peer
  connections); needs the token too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCSessionDescription
from aiortc import sdp as sdp_module

from ..errors import ConfigError, TransportError
from ..node import Node
from ..pipeline import Pipeline
from ._aiortc import resolve_host_addresses
from .session import Session, SessionOptions, live_peer_connections, live_pipelines
from .tracks import live_tracks

log = logging.getLogger("stream.transport")

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_OFFER_BYTES = 64 * 1024

PipelineFactory = Callable[[], Pipeline]
SinkFactory = Callable[[str], Node | None]


class WebRTCServer:
    """Serve pipelines to WebRTC peers: one pipeline from ``pipeline_factory()`` per peer.

    ``host``/``port``: where signaling and the page listen (port 0 picks a free one; see
    ``port`` after ``start()``). ``max_sessions``: concurrent peers, 503 past it.
    ``max_offer_bytes``: 413 past it. ``token``: when set, ``/offer`` and ``/status`` need
    ``Authorization: Bearer TOKEN`` (401 otherwise). ``idle_timeout``: seconds without media from
    a peer before its session is closed. ``ice_addresses``: interface names or addresses ICE may
    offer as host candidates (default: all but loopback, as aioice does). ``ice_servers``:
    STUN/TURN URLs (default none). ``jitter_depth``: see ``SessionOptions`` (None: aiortc's own
    80 ms buffer). ``sink_factory(session_id)``: a sink node that also gets every output of that
    session (a ``FileSink``); finalized when the session closes. Raises ConfigError for bad
    settings.
    """

    def __init__(
        self,
        pipeline_factory: PipelineFactory,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        max_sessions: int = 16,
        max_offer_bytes: int = DEFAULT_MAX_OFFER_BYTES,
        token: str | None = None,
        idle_timeout: float = 10.0,
        connect_timeout: float = 20.0,
        ice_addresses: Sequence[str] | None = None,
        ice_servers: Sequence[str] = (),
        jitter_depth: int | None = 3,
        input_channels: int | None = 1,
        input_sample_rate: int | None = None,
        pixel_format: str = "rgb24",
        sink_factory: SinkFactory | None = None,
        backend: str | None = None,
        static_dir: Path | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {max_sessions}")
        if max_offer_bytes < 256:
            raise ConfigError(f"max_offer_bytes must be >= 256, got {max_offer_bytes}")
        if idle_timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("idle_timeout and connect_timeout must be > 0")
        if jitter_depth is not None and not 0 <= jitter_depth <= 8:
            raise ConfigError(f"jitter_depth must be in 0..8 or None, got {jitter_depth}")
        self.pipeline_factory = pipeline_factory
        self.host = host
        self.port = port
        self.max_sessions = max_sessions
        self.max_offer_bytes = max_offer_bytes
        self.token = token or None
        self.connect_timeout = connect_timeout
        self.sink_factory = sink_factory
        self.static_dir = static_dir or STATIC_DIR
        self.options = SessionOptions(
            input_channels=input_channels,
            input_sample_rate=input_sample_rate,
            pixel_format=pixel_format,
            idle_timeout=idle_timeout,
            jitter_depth=jitter_depth,
            ice_addresses=resolve_host_addresses(ice_addresses) if ice_addresses else None,
            ice_servers=tuple(ice_servers),
            backend=backend,
        )
        self.sessions: dict[str, Session] = {}
        self.sessions_total = 0
        self.rejected: dict[int, int] = {}
        self._pending = 0  # offers being answered, counted against max_sessions
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.app = self._make_app()

    # -- HTTP
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_offer_bytes + 1)
        app.router.add_get("/", self._index)
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/status", self._status)
        app.router.add_static("/static/", self.static_dir, show_index=False)
        return app

    def _reject(self, status: int, message: str, **headers: str) -> web.Response:
        self.rejected[status] = self.rejected.get(status, 0) + 1
        return web.json_response({"error": message}, status=status, headers=headers or None)

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), self.token)

    def _unauthorized(self) -> web.Response:
        return self._reject(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.static_dir / "index.html")

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response(self.status())

    async def _offer(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        if self._stopping:
            return self._reject(503, "the server is shutting down")
        size = request.content_length
        if size is not None and size > self.max_offer_bytes:
            limit = self.max_offer_bytes
            return self._reject(413, f"offer too large: {size} bytes, at most {limit}")
        try:
            body = await request.content.read(self.max_offer_bytes + 1)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            return self._reject(400, f"cannot read the offer: {exc}")
        if len(body) > self.max_offer_bytes:
            return self._reject(413, f"offer too large: over {self.max_offer_bytes} bytes")
        offer, problem = _parse_offer(body)
        if offer is None:
            return self._reject(400, problem)
        if len(self.sessions) + self._pending >= self.max_sessions:
            return self._reject(
                503, f"server full: {self.max_sessions} sessions", **{"Retry-After": "5"}
            )
        self._pending += 1
        try:
            return await self._answer(offer)
        finally:
            self._pending -= 1

    async def _answer(self, offer: RTCSessionDescription) -> web.Response:
        session_id = uuid.uuid4().hex[:12]
        try:
            pipeline = self.pipeline_factory()
        except Exception as exc:
            log.exception("pipeline factory failed")
            return self._reject(500, f"cannot build the pipeline: {exc}")
        sink = self.sink_factory(session_id) if self.sink_factory else None
        session = Session(session_id, pipeline, self.options, sink=sink, on_closed=self._closed)
        self.sessions[session_id] = session
        self.sessions_total += 1
        try:
            answer = await session.accept(offer)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, AssertionError) as exc:
            # aiortc's SDP parser raises these for descriptions it cannot read
            await session.close("bad offer")
            return self._reject(400, f"malformed offer: {type(exc).__name__}: {exc}")
        except Exception as exc:
            await session.close("offer failed")
            log.exception("session %s: answering failed", session_id)
            return self._reject(500, f"cannot answer the offer: {exc}")
        log.info("session %s: answered (%d live)", session_id, len(self.sessions))
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": session_id})

    def _closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    # -- status and life cycle
    def status(self) -> dict[str, Any]:
        """Sessions, and counts that show leaks: live pipelines, tracks, peer connections, tasks."""
        gc.collect()
        return {
            "sessions": len(self.sessions),
            "max_sessions": self.max_sessions,
            "sessions_total": self.sessions_total,
            "rejected": {str(k): v for k, v in sorted(self.rejected.items())},
            "stopping": self._stopping,
            "counts": {
                "tasks": len(asyncio.all_tasks()),
                "threads": threading.active_count(),
                # aiortc's per-receiver decoder threads ("audio-decoder"); the loop's executor
                # threads ("asyncio_N") are pooled and stay, so they are not counted here
                "media_threads": sum(
                    not t.name.startswith(("asyncio_", "MainThread")) for t in threading.enumerate()
                ),
                "thread_names": sorted(t.name for t in threading.enumerate()),
                "pipelines": len(live_pipelines),
                "tracks": len(live_tracks),
                "peer_connections": len(live_peer_connections),
            },
            "list": [s.stats() for s in self.sessions.values()],
        }

    async def _watch(self) -> None:
        """Close sessions whose peer went silent or never connected."""
        while True:
            await asyncio.sleep(0.5)
            self._check_sessions()  # a helper, so no session stays referenced from this frame

    def _check_sessions(self) -> None:
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.state == "connecting" and now - session.created > self.connect_timeout:
                session.close_soon("never connected")
            elif session.state == "connected" and (
                session.idle_seconds > session.options.idle_timeout
            ):
                session.close_soon(f"no media for {session.options.idle_timeout:g} s")

    async def start(self) -> None:
        """Listen; raises TransportError when the address cannot be bound."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise TransportError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._runner = runner
        self._watchdog = asyncio.create_task(self._watch(), name="webrtc watchdog")
        log.info("serving on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: refuse new offers, close every session (sinks finalized), stop."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        closing = [s.close("server stopping") for s in list(self.sessions.values())]
        if closing:
            done = await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout)
            for result in done:
                if isinstance(result, BaseException):
                    log.error("closing a session failed: %s", result)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._runner is not None:
            await self._runner.cleanup()
        self._stopped.set()

    async def __aenter__(self) -> WebRTCServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start (if not started) and serve until ``stop()`` is called or the task is cancelled."""
        if self._runner is None:
            await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()


def _parse_offer(body: bytes) -> tuple[RTCSessionDescription | None, str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the offer is not JSON: {exc}"
    if not isinstance(data, dict):
        return None, "the offer must be a JSON object {sdp, type}"
    sdp, kind = data.get("sdp"), data.get("type")
    if kind != "offer":
        return None, f"type must be 'offer', got {kind!r}"
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        return None, "sdp must be a session description (a string starting with 'v=0')"
    try:
        parsed = sdp_module.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser fails in many ways on text it cannot read
        return None, f"unreadable sdp: {type(exc).__name__}: {exc}"
    if not parsed.media:
        return None, "the offer has no media section"
    for media in parsed.media:
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            return None, f"the {media.kind} section has no ICE credentials (ice-ufrag/ice-pwd)"
        if media.dtls is None or not media.dtls.fingerprints:
            return None, f"the {media.kind} section has no DTLS fingerprint"
    return RTCSessionDescription(sdp=sdp, type="offer"), ""


__all__ = [
    "DEFAULT_MAX_OFFER_BYTES",
    "STATIC_DIR",
    "PipelineFactory",
    "SinkFactory",
    "WebRTCServer",
]
