"""``WebRTCServer``: aiohttp signaling, the browser page, and one pipeline per peer connection.

Routes:

- ``GET /``: the browser page (``static/index.html``), ``GET /static/...``: its script and style.
- ``POST /offer``: ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "session"}``.
  401 without the bearer token (when one is set), 413 for an offer over ``max_offer_bytes``, 408
  for a body not received within ``body_timeout``, 400 for a malformed offer, 503 at
  ``max_sessions`` or while shutting down.
- ``GET /status``: sessions and leak counts (tasks, threads, live pipelines, tracks, peer
  connections). With workers, the counts are summed over the front and its workers, ``workers``
  lists each one (pid, sessions, cpu, draining, counts; a Ray worker also its node), and each
  session in ``list`` names its ``worker`` (and ``node``).
- ``POST /workers/{index}/drain``: that worker takes no new sessions; the ones there run to
  their end. 404 for no such worker.

``/status`` and drain are the admin endpoints: they need ``admin_token`` when one is set, else
``token`` when that is set, and they share a rate limit per client address (429 past it).
Every HTTP phase has a deadline: a connection that has not delivered a complete request line and
headers within ``header_timeout`` seconds (from its opening, or from the end of its previous
request) is closed, so are idle keep-alive connections and clients that do not read their
response; an offer's body must arrive within ``body_timeout``; answering has its own deadline
(``host.ANSWER_TIMEOUT_S``). A malformed request is logged as one line, not a traceback.

With ``workers=N`` (N >= 1) the sessions run in N worker processes (``workers.py``); with
``ray_address`` on session workers on the nodes of a Ray cluster (``stream.ray.workers``, N per
node). Each new session goes to the live worker with the fewest sessions (then the least CPU)
that is not draining and under ``worker_sessions``; signaling, limits and the page stay here.
A dead worker's sessions are dropped and the worker restarted after a growing delay
(``workers.restart_delay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import pickle
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.log import server_logger
from aiortc import RTCSessionDescription
from aiortc import sdp as sdp_module

from ..errors import ConfigError, TransportError
from ._aiortc import resolve_host_addresses
from .host import OfferRefused, PipelineFactory, SessionHost, SinkFactory, process_counts
from .http_guard import ConnectionDeadline, RateLimit, RequestLog, one_line
from .session import Session, SessionOptions
from .workers import HEALTHY_AFTER_S, ProcessWorkerPool, WorkerHandle, WorkerPool, restart_delay

log = logging.getLogger("stream.transport")

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_OFFER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_STATUS_RATE = 5.0  # admin requests a second per client address
STATUS_BURST_S = 4.0  # a client may spend this many seconds' worth of them at once
DISCOVER_EVERY_S = 10.0  # how often a Ray front looks for nodes that joined
SWEEP_EVERY_S = 0.25  # how often connections are checked against the header deadline


class WebRTCServer:
    """Serve pipelines to WebRTC peers: one pipeline from ``pipeline_factory()`` per peer.

    ``host``/``port``: where signaling and the page listen (port 0 picks a free one; see
    ``port`` after ``start()``). ``max_sessions``: concurrent peers, 503 past it.
    ``max_offer_bytes``: 413 past it. ``token``: when set, ``/offer`` needs
    ``Authorization: Bearer TOKEN`` (401 otherwise), and so do ``/status`` and drain unless
    ``admin_token`` is set: then they need that one instead. ``status_rate``: admin requests a
    second per client address (bursts of ``STATUS_BURST_S`` seconds' worth; 0: no limit), 429
    past it. ``header_timeout``/``body_timeout``: seconds for a request's headers / an offer's
    body to arrive (the connection is closed / 408). ``idle_timeout``: seconds without media from
    a peer before its session is closed. ``ice_addresses``: interface names or addresses ICE may
    offer as host candidates (default: all but loopback, as aioice does). ``ice_servers``:
    STUN/TURN URLs (default none). ``jitter_depth``: see ``SessionOptions`` (None: aiortc's own
    80 ms buffer). ``sink_factory(session_id)``: a sink node that also gets every output of that
    session (a ``FileSink``); finalized when the session closes.

    ``workers``: run sessions in that many worker processes (0: in this process).
    ``ray_address``: run them on a Ray cluster instead (``"host:port"``, ``"auto"``: the
    cluster this machine belongs to, else a new local one, ``"local"``: a new one in this
    process), ``workers`` session workers per node (default 1), each reserving
    ``ray_worker_cpus`` CPUs and ``ray_resources`` (custom node resources: only nodes that have
    them get workers). ``worker_sessions``: most sessions per worker (None: no cap but
    ``max_sessions``). Raises ConfigError for bad settings, BackendUnavailable for
    ``ray_address`` without Ray installed.
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
        admin_token: str | None = None,
        status_rate: float = DEFAULT_STATUS_RATE,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
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
        ray_address: str | None = None,
        ray_worker_cpus: float = 1.0,
        ray_resources: dict[str, float] | None = None,
        worker_sessions: int | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {max_sessions}")
        if max_offer_bytes < 256:
            raise ConfigError(f"max_offer_bytes must be >= 256, got {max_offer_bytes}")
        if idle_timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("idle_timeout and connect_timeout must be > 0")
        if not (header_timeout > 0 and body_timeout > 0):
            raise ConfigError(
                f"header_timeout and body_timeout must be > 0, got {header_timeout}, {body_timeout}"
            )
        if not status_rate >= 0:
            raise ConfigError(f"status_rate must be >= 0 (0: no limit), got {status_rate}")
        if jitter_depth is not None and not 0 <= jitter_depth <= 8:
            raise ConfigError(f"jitter_depth must be in 0..8 or None, got {jitter_depth}")
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        if worker_sessions is not None and worker_sessions < 1:
            raise ConfigError(f"worker_sessions must be >= 1, got {worker_sessions}")
        if ray_address is not None:
            if not ray_address.strip():
                raise ConfigError("ray_address is empty (give host:port, 'auto' or 'local')")
            if ray_worker_cpus < 0:
                raise ConfigError(f"ray_worker_cpus must be >= 0, got {ray_worker_cpus}")
            from ..ray._ray import require_ray  # stream.ray itself loads no Ray

            require_ray()  # BackendUnavailable with the install command, now
        if workers or ray_address is not None:
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
        self.admin_token = admin_token or None
        self.header_timeout = float(header_timeout)
        self.body_timeout = float(body_timeout)
        self.status_limit = (
            RateLimit(status_rate, status_rate * STATUS_BURST_S) if status_rate > 0 else None
        )
        self.connect_timeout = connect_timeout
        self.sink_factory = sink_factory
        self.static_dir = static_dir or STATIC_DIR
        self.ray_address = ray_address
        self.ray_worker_cpus = float(ray_worker_cpus)
        self.ray_resources = dict(ray_resources or {})
        self.worker_sessions = worker_sessions
        # on a Ray cluster each worker resolves interface names on its own node
        self.ice_spec = tuple(ice_addresses or ())
        resolve_here = bool(ice_addresses) and ray_address is None
        self.options = SessionOptions(
            input_channels=input_channels,
            input_sample_rate=input_sample_rate,
            pixel_format=pixel_format,
            idle_timeout=idle_timeout,
            jitter_depth=jitter_depth,
            ice_addresses=resolve_host_addresses(self.ice_spec) if resolve_here else None,
            ice_servers=tuple(ice_servers),
            backend=backend,
        )
        self.local = SessionHost(
            pipeline_factory,
            self.options,
            connect_timeout=connect_timeout,
            sink_factory=sink_factory,
        )
        self.workers: list[WorkerHandle] = []
        self.worker_count = workers
        self.pooled = bool(workers) or ray_address is not None
        self.worker_restarts = 0
        self.placed: dict[str, WorkerHandle] = {}  # session id -> the worker it runs on
        self._pool: WorkerPool | None = None
        self._attempts: dict[int, int] = {}  # worker slot -> restarts in a row
        self.sessions_total = 0
        self.rejected: dict[int, int] = {}
        # offers being answered, counted against max_sessions until they are live sessions
        self._answering: set[str] = set()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.deadlines = ConnectionDeadline(self.header_timeout)
        self._stopped = asyncio.Event()
        self._restarts: set[asyncio.Task[None]] = set()
        self._next_discover = 0.0
        self.app = self._make_app()

    @property
    def sessions(self) -> dict[str, Session]:
        """The sessions running in this process (none with workers)."""
        return self.local.sessions

    @property
    def live_sessions(self) -> int:
        return len(self.placed) if self.pooled else len(self.local.sessions)

    def _sessions_in_use(self) -> int:
        """Live sessions plus offers being answered, each counted once.

        A local session is in ``local.sessions`` from the moment its offer is being answered, so
        an offer is counted by id, not added to the live count.
        """
        live = self.placed if self.pooled else self.local.sessions
        return len(live) + sum(1 for sid in self._answering if sid not in live)

    # -- HTTP
    def _make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_offer_bytes + 1, middlewares=[self.deadlines.middleware]
        )
        app.router.add_get("/", self._index)
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/status", self._status)
        app.router.add_post("/workers/{index}/drain", self._drain)
        app.router.add_static("/static/", self.static_dir, show_index=False)
        return app

    def _reject(self, status: int, message: str, **headers: str) -> web.Response:
        self.rejected[status] = self.rejected.get(status, 0) + 1
        return web.json_response({"error": message}, status=status, headers=headers or None)

    def _authorized(self, request: web.Request, *, admin: bool = False) -> bool:
        """Whether the request carries the token its endpoint needs (admin: ``/status``, drain)."""
        expected = (self.admin_token or self.token) if admin else self.token
        if expected is None:
            return True
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        # bytes: compare_digest refuses str with non-ASCII characters (a header may have them)
        sent = value.strip().encode("utf-8", "surrogateescape")
        return scheme.lower() == "bearer" and hmac.compare_digest(sent, expected.encode())

    def _unauthorized(self) -> web.Response:
        return self._reject(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})

    def _admin_refusal(self, request: web.Request) -> web.Response | None:
        """429 past the rate limit (counted before the token, so guessing it is limited too),
        401 without the admin token; None when the request may go on."""
        if self.status_limit is not None:
            wait = self.status_limit.wait(request.remote or "?")
            if wait > 0:
                limit = self.status_limit
                return self._reject(
                    429,
                    f"too many requests: at most {limit.rate_per_s:g} a second per client "
                    f"(bursts of {limit.burst:g})",
                    **{"Retry-After": str(max(1, math.ceil(wait)))},
                )
        if not self._authorized(request, admin=True):
            return self._unauthorized()
        return None

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.static_dir / "index.html")

    async def _status(self, request: web.Request) -> web.Response:
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        return web.json_response(await self.gather_status())

    async def _drain(self, request: web.Request) -> web.Response:
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        try:
            worker = self.drain_worker(int(request.match_info["index"]))
        except (ValueError, KeyError):
            return self._reject(404, f"no worker {request.match_info['index']}")
        return web.json_response(worker.describe())

    async def _offer(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        if self._stopping:
            return self._reject(503, "the server is shutting down")
        size = request.content_length
        if size is not None and size > self.max_offer_bytes:
            limit = self.max_offer_bytes
            return self._reject(413, f"offer too large: {size} bytes, at most {limit}")
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        offer, problem = _parse_offer(body)
        if offer is None:
            return self._reject(400, problem)
        # no await between the check and the reservation: concurrent offers cannot both pass
        if self._sessions_in_use() >= self.max_sessions:
            return self._reject(
                503, f"server full: {self.max_sessions} sessions", **{"Retry-After": "5"}
            )
        session_id = uuid.uuid4().hex[:12]
        self._answering.add(session_id)
        try:
            return await self._answer(session_id, offer)
        finally:
            self._answering.discard(session_id)

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The whole body, however many segments it came in; a refusal when it cannot be had.

        ``content.read(n)`` returns what has arrived so far, so it is called until the end of
        the body (the declared length, or the last chunk), or one byte past the limit.
        """
        limit = self.max_offer_bytes
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                while len(body) <= limit:
                    chunk = await request.content.read(limit + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
        except TimeoutError:
            declared = request.content_length
            got = f"{len(body)} of {declared}" if declared is not None else f"{len(body)}"
            return self._reject(
                408, f"the offer did not arrive in {self.body_timeout:g} s ({got} bytes came)"
            )
        except (ConnectionError, asyncio.IncompleteReadError, web.RequestPayloadError) as exc:
            return self._reject(400, f"cannot read the offer: {one_line(exc)}")
        if len(body) > limit:
            return self._reject(413, f"offer too large: over {limit} bytes")
        return bytes(body)

    async def _answer(self, session_id: str, offer: RTCSessionDescription) -> web.Response:
        self.sessions_total += 1
        try:
            if self.pooled:
                sdp, kind = await self._place(session_id, offer)
            else:
                answer = await self.local.answer(session_id, offer)
                sdp, kind = answer.sdp, answer.type
        except OfferRefused as exc:
            return self._reject(exc.status, str(exc))
        log.info("session %s: answered (%d live)", session_id, self.live_sessions)
        return web.json_response({"sdp": sdp, "type": kind, "session": session_id})

    def _candidates(self) -> list[WorkerHandle]:
        """Workers that may take a session, best first: fewest sessions, then least CPU."""
        cap = self.worker_sessions
        ready = [
            w for w in self.workers if w.alive and not w.draining and (cap is None or w.load < cap)
        ]
        return sorted(ready, key=lambda w: (w.load, w.cpu, w.index))

    async def _place(self, session_id: str, offer: RTCSessionDescription) -> tuple[str, str]:
        """Start the session on the best worker (the next one if that one fails): (sdp, type)."""
        failures: list[str] = []
        for worker in self._candidates():
            if not worker.alive:  # died while an earlier one was tried
                continue
            try:
                reply = await worker.place(session_id, offer.sdp)
            except OfferRefused:
                raise
            except TransportError as exc:
                log.warning("session %s: worker %d failed: %s", session_id, worker.index, exc)
                failures.append(f"worker {worker.index}: {exc}")
                continue
            if session_id in worker.sessions:
                self.placed[session_id] = worker
            where = worker.describe()
            node = f", node {where['node_ip']}" if where.get("node_ip") else ""
            log.info(
                "session %s: on worker %d (pid %s%s)", session_id, worker.index, where["pid"], node
            )
            return str(reply["sdp"]), str(reply["type"])
        if failures:
            raise OfferRefused(503, "the workers failed: " + "; ".join(failures))
        live = [w for w in self.workers if w.alive]
        if not live:
            raise OfferRefused(503, "no worker is running")
        draining = sum(w.draining for w in live)
        raise OfferRefused(
            503,
            f"no worker can take a session: {len(live)} running, {draining} draining, the "
            f"others at their cap of {self.worker_sessions} sessions",
        )

    def drain_worker(self, index: int) -> WorkerHandle:
        """Worker ``index`` takes no new sessions; its sessions run to their end.

        A drained worker that dies is not restarted. Raises KeyError for no such worker.
        """
        for worker in self.workers:
            if worker.index == index:
                worker.drain()
                log.info("worker %d: draining (%d sessions left)", index, len(worker.sessions))
                return worker
        raise KeyError(index)

    def _worker_session_closed(self, worker: WorkerHandle, session_id: str) -> None:
        self.placed.pop(session_id, None)

    def _worker_died(self, worker: WorkerHandle) -> None:
        for session_id in list(worker.sessions):
            self.placed.pop(session_id, None)
        if worker.draining:
            log.info("worker %d died while draining: not restarted", worker.index)
            return
        if time.monotonic() - worker.started_at > HEALTHY_AFTER_S:
            self._attempts[worker.index] = 0
        self._schedule_restart(worker)

    def _schedule_restart(self, dead: WorkerHandle) -> None:
        """Restart ``dead``'s slot after ``restart_delay`` of the restarts in a row there."""
        if self._stopping:
            return
        attempt = self._attempts.get(dead.index, 0)
        self._attempts[dead.index] = attempt + 1
        delay = restart_delay(attempt)
        log.info("worker %d: restart in %g s", dead.index, delay)
        task = asyncio.create_task(self._restart(dead, delay), name=f"restart worker {dead.index}")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, dead: WorkerHandle, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping or self._pool is None:
            return
        try:
            worker = await self._pool.replacement(dead)
        except TransportError as exc:
            log.error("worker %d: no replacement: %s", dead.index, exc)
            self._schedule_restart(dead)
            return
        if worker is None:
            log.warning("worker %d: its slot is gone (node lost): not restarted", dead.index)
            return
        try:
            await worker.start()
        except TransportError as exc:
            log.error("%s", exc)
            self._schedule_restart(dead)
            return
        if self._stopping:
            await worker.stop()
            return
        self._replace(dead.index, worker)
        self.worker_restarts += 1

    def _replace(self, index: int, worker: WorkerHandle) -> None:
        for i, old in enumerate(self.workers):
            if old.index == index:
                self.workers[i] = worker
                return
        self.workers.append(worker)

    def _make_pool(self) -> WorkerPool:
        args = (
            self.pipeline_factory,
            self.sink_factory,
            self.options,
            self.connect_timeout,
            logging.getLogger().getEffectiveLevel(),
        )
        if self.ray_address is None:
            return ProcessWorkerPool(
                self.worker_count, args, self._worker_session_closed, self._worker_died
            )
        from ..ray.workers import RayWorkerPool

        return RayWorkerPool(
            self.ray_address,
            args,
            on_closed=self._worker_session_closed,
            on_died=self._worker_died,
            per_node=self.worker_count or 1,
            num_cpus=self.ray_worker_cpus,
            resources=self.ray_resources,
            ice_spec=self.ice_spec,
        )

    async def _discover(self) -> None:
        """Start workers for capacity that appeared (Ray nodes that joined)."""
        if self._pool is None or self._stopping:
            return
        try:
            found = await self._pool.discover(self.workers)
        except TransportError as exc:
            log.warning("looking for new workers failed: %s", exc)
            return
        for worker in found:
            self.workers.append(worker)
            try:
                await worker.start()
            except TransportError as exc:
                log.error("%s", exc)
                self._schedule_restart(worker)

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
        if not self.pooled:
            return status
        front = process_counts()
        counts = {k: v for k, v in front.items() if isinstance(v, int)}
        workers = list(self.workers)
        live = [w for w in workers if w.alive]
        replies = await asyncio.gather(*(w.status() for w in live), return_exceptions=True)
        got_by_index = {w.index: r for w, r in zip(live, replies, strict=True)}
        entries: list[dict[str, Any]] = []
        for worker in workers:
            entry = worker.describe()
            got = got_by_index.get(worker.index)
            if isinstance(got, BaseException):
                entry["error"] = str(got)
            elif got is not None:
                entry["counts"] = got["counts"]
                entry["sessions"] = got["sessions"]
                where: dict[str, Any] = {"worker": worker.index}
                if entry.get("node_ip"):
                    where["node"] = entry["node_ip"]
                status["list"].extend({**s, **where} for s in got["list"])
                for key in counts:
                    counts[key] += int(got["counts"].get(key, 0))
            entries.append(entry)
        status["counts"] = {**counts, "front_thread_names": front["thread_names"]}
        status["workers"] = entries
        status["worker_restarts"] = self.worker_restarts
        if self._pool is not None:
            status["worker_kind"] = self._pool.kind
        return status

    async def _watch(self) -> None:
        """Close sessions whose peer went silent or never connected."""
        while True:
            await asyncio.sleep(0.5)
            self.local.check()
            if self._pool is not None and time.monotonic() >= self._next_discover:
                self._next_discover = time.monotonic() + DISCOVER_EVERY_S
                await self._discover()

    async def start(self) -> None:
        """Start the workers (if any), listen; raises TransportError when either fails.

        Process workers must all start; on a Ray cluster at least one must (the others are
        retried after the restart delays).
        """
        if self.pooled and self._pool is None:
            await self._start_workers()
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            logger=RequestLog(server_logger, {}),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
            if self._pool is not None:
                await self._pool.close()
            raise TransportError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._runner = runner
        self._watchdog = asyncio.create_task(self._watch(), name="webrtc watchdog")
        self._sweeper = asyncio.create_task(
            self.deadlines.sweep(runner, SWEEP_EVERY_S), name="webrtc header deadline"
        )
        log.info("serving on %s", self.url)

    async def _start_workers(self) -> None:
        pool = self._pool = self._make_pool()
        try:
            self.workers = await pool.open()
        except BaseException:
            self._pool = None
            await pool.close()
            raise
        started = await asyncio.gather(*(w.start() for w in self.workers), return_exceptions=True)
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed and (self.ray_address is None or len(failed) == len(started)):
            await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
            self._pool, self.workers = None, []
            await pool.close()
            if isinstance(failed[0], TransportError):
                raise failed[0]
            raise TransportError(f"the workers did not start: {failed[0]}") from failed[0]
        for worker, outcome in zip(self.workers, started, strict=True):
            if isinstance(outcome, BaseException):
                log.error("%s", outcome)
                self._schedule_restart(worker)
        self._next_discover = time.monotonic() + DISCOVER_EVERY_S

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
            *(w.stop(timeout) for w in self.workers),
            return_exceptions=True,
        )
        self.placed.clear()
        if self._pool is not None:
            await self._pool.close()
        for background in (self._watchdog, self._sweeper):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
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
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_OFFER_BYTES",
    "DEFAULT_STATUS_RATE",
    "STATIC_DIR",
    "STATUS_BURST_S",
    "PipelineFactory",
    "RateLimit",
    "SinkFactory",
    "WebRTCServer",
]
