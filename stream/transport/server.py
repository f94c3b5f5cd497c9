"""``WebRTCServer``: aiohttp signaling, the browser page, and one pipeline per peer connection.

Routes:

- ``GET /``: the browser page (``static/index.html``), ``GET /static/...``: its script and style.
- ``POST /offer``: ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "session"}``.
  401 without the bearer token (when one is set), 413 for an offer over ``max_offer_bytes``, 400
  for a malformed offer, 503 at ``max_sessions`` or while shutting down.
- ``GET /status``: sessions and leak counts (tasks, threads, live pipelines, tracks, peer
  connections); needs the token too. With workers, the counts are summed over the front and its
  workers, and ``workers`` lists each one (pid, sessions, counts).

With ``workers=N`` (N >= 1) the sessions run in N worker processes (``workers.py``), each new
session on the worker with the fewest; signaling, limits and the page stay here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import pickle
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCSessionDescription
from aiortc import sdp as sdp_module

from ..errors import ConfigError, TransportError
from ._aiortc import resolve_host_addresses
from .host import OfferRefused, PipelineFactory, SessionHost, SinkFactory, process_counts
from .session import Session, SessionOptions
from .workers import Worker

log = logging.getLogger("stream.transport")

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_OFFER_BYTES = 64 * 1024


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
        workers: int = 0,
    ) -> None:
        if max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {max_sessions}")
        if max_offer_bytes < 256:
            raise ConfigError(f"max_offer_bytes must be >= 256, got {max_offer_bytes}")
        if idle_timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("idle_timeout and connect_timeout must be > 0")
        if jitter_depth is not None and not 0 <= jitter_depth <= 8:
            raise ConfigError(f"jitter_depth must be in 0..8 or None, got {jitter_depth}")
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        if workers:
            shipped = {"pipeline_factory": pipeline_factory, "sink_factory": sink_factory}
            for what, obj in shipped.items():
                try:
                    pickle.dumps(obj)
                except Exception as exc:
                    raise ConfigError(
                        f"with workers, {what} must be picklable (a module-level function or "
                        f"class instance, not a lambda or closure): {exc}"
                    ) from exc
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
        self.local = SessionHost(
            pipeline_factory,
            self.options,
            connect_timeout=connect_timeout,
            sink_factory=sink_factory,
        )
        self.workers: list[Worker] = []
        self.worker_count = workers
        self.worker_restarts = 0
        self.placed: dict[str, Worker] = {}  # session id -> the worker it runs on
        self.sessions_total = 0
        self.rejected: dict[int, int] = {}
        self._pending = 0  # offers being answered, counted against max_sessions
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._restarts: set[asyncio.Task[None]] = set()
        self.app = self._make_app()

    @property
    def sessions(self) -> dict[str, Session]:
        """The sessions running in this process (none with workers)."""
        return self.local.sessions

    @property
    def live_sessions(self) -> int:
        return len(self.placed) if self.worker_count else len(self.local.sessions)

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
        return web.json_response(await self.gather_status())

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
        if self.live_sessions + self._pending >= self.max_sessions:
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
        self.sessions_total += 1
        try:
            if self.worker_count:
                sdp, kind = await self._place(session_id, offer)
            else:
                answer = await self.local.answer(session_id, offer)
                sdp, kind = answer.sdp, answer.type
        except OfferRefused as exc:
            return self._reject(exc.status, str(exc))
        log.info("session %s: answered (%d live)", session_id, self.live_sessions)
        return web.json_response({"sdp": sdp, "type": kind, "session": session_id})

    async def _place(self, session_id: str, offer: RTCSessionDescription) -> tuple[str, str]:
        """Start the session on the least loaded live worker: (answer sdp, type)."""
        live = [w for w in self.workers if w.alive and not w.draining]
        if not live:
            raise OfferRefused(503, "no worker is running")
        worker = min(live, key=lambda w: (w.load, w.index))
        try:
            reply = await worker.place(session_id, offer.sdp)
        except TransportError as exc:
            if isinstance(exc, OfferRefused):
                raise
            raise OfferRefused(503, f"the worker failed: {exc}") from exc
        if session_id in worker.sessions:
            self.placed[session_id] = worker
        log.info("session %s: on worker %d (pid %s)", session_id, worker.index, worker.pid)
        return str(reply["sdp"]), str(reply["type"])

    def _worker_session_closed(self, worker: Worker, session_id: str) -> None:
        self.placed.pop(session_id, None)

    def _worker_died(self, worker: Worker) -> None:
        for session_id in list(worker.sessions):
            self.placed.pop(session_id, None)
        if not self._stopping:
            task = asyncio.create_task(self._restart(worker), name=f"restart worker {worker.index}")
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart(self, dead: Worker, delay: float = 1.0) -> None:
        await asyncio.sleep(delay)
        if self._stopping:
            return
        worker = self._new_worker(dead.index)
        try:
            await worker.start()
        except TransportError as exc:
            log.error("%s; not restarted", exc)
            return
        if self._stopping:
            await worker.drain()
            return
        self.workers[dead.index] = worker
        self.worker_restarts += 1

    def _new_worker(self, index: int) -> Worker:
        args = (
            self.pipeline_factory,
            self.sink_factory,
            self.options,
            self.connect_timeout,
            logging.getLogger().getEffectiveLevel(),
        )
        return Worker(index, args, self._worker_session_closed, self._worker_died)

    # -- status and life cycle
    def status(self) -> dict[str, Any]:
        """Sessions in this process, and counts that show leaks (see ``gather_status``)."""
        local = self.local.status()
        return {
            "sessions": self.live_sessions,
            "max_sessions": self.max_sessions,
            "sessions_total": self.sessions_total,
            "rejected": {str(k): v for k, v in sorted(self.rejected.items())},
            "stopping": self._stopping,
            "counts": local["counts"],
            "list": local["list"],
        }

    async def gather_status(self) -> dict[str, Any]:
        """``status()`` with each worker's sessions and counts, the counts summed over all."""
        status = self.status()
        if not self.worker_count:
            return status
        front = process_counts()
        counts = {k: v for k, v in front.items() if isinstance(v, int)}
        entries: list[dict[str, Any]] = []
        for worker in self.workers:
            entry: dict[str, Any] = {
                "index": worker.index,
                "pid": worker.pid,
                "alive": worker.alive,
                "sessions": len(worker.sessions),
            }
            if worker.alive:
                try:
                    got = await worker.status()
                except TransportError as exc:
                    entry["error"] = str(exc)
                else:
                    entry["counts"] = got["counts"]
                    entry["sessions"] = got["sessions"]
                    status["list"].extend({**s, "worker": worker.index} for s in got["list"])
                    for key in counts:
                        counts[key] += int(got["counts"].get(key, 0))
            entries.append(entry)
        status["counts"] = {**counts, "front_thread_names": front["thread_names"]}
        status["workers"] = entries
        status["worker_restarts"] = self.worker_restarts
        return status

    async def _watch(self) -> None:
        """Close sessions whose peer went silent or never connected."""
        while True:
            await asyncio.sleep(0.5)
            self.local.check()

    async def start(self) -> None:
        """Start the workers (if any), listen; raises TransportError when either fails."""
        if self.worker_count and not self.workers:
            self.workers = [self._new_worker(i) for i in range(self.worker_count)]
            try:
                await asyncio.gather(*(w.start() for w in self.workers))
            except TransportError:
                await asyncio.gather(*(w.drain() for w in self.workers))
                raise
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await asyncio.gather(*(w.drain() for w in self.workers))
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
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(
            self.local.close_all("server stopping", timeout),
            *(w.drain(timeout) for w in self.workers),
            return_exceptions=True,
        )
        self.placed.clear()
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
