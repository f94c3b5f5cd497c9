"""``WebRTCServer``: one pipeline per WebRTC peer, served in this process or on workers.

The server puts together what the other modules hold: ``settings`` (checked once),
``signaling`` (the HTTP routes, tokens and limits), ``host.SessionHost`` (the sessions of one
event loop), and with workers ``placement`` (which worker takes a session),
``supervisor`` (restarts) and a worker pool (``process_workers``, or
``stream.ray.session_workers`` on a Ray cluster). What is left here: admitting an offer under
``max_sessions``, the status of the whole, and the life cycle: ``ready()`` (for ``/readyz``),
``drain()`` (SIGTERM: take no offers, let sessions run on up to ``drain_timeout``, then close
them, telling each peer why) and ``stop()``.

What a peer is told on its data channel: ``{"type": "draining", "deadline_s"}`` when a drain
starts (sessions in this process), ``{"type": "close", "reason"}`` just before the server closes
its session (here, or on the worker that runs it). The Python peer and the page then close
their side (``PeerResult.close_reason``).

With ``workers=N`` (N >= 1) the sessions run in N worker processes; with ``ray_address`` on
session workers on the nodes of a Ray cluster (N per node). Signaling, limits and the page stay
in this process (the front).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import warnings
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, Unpack

from aiohttp import web
from aiortc import RTCSessionDescription

from ..errors import TransportError
from .host import OfferRefused, PipelineFactory, SessionHost, SinkFactory, process_counts
from .http_guard import RateLimit
from .placement import Placement
from .process_workers import ProcessWorkerPool
from .session import Session, tell_closing
from .settings import (
    CLOSE_NOTICE_S,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_OFFER_BYTES,
    DEFAULT_STATUS_RATE,
    STATIC_DIR,
    STATUS_BURST_S,
    ServerOptions,
    ServerSettings,
)
from .signaling import DRAIN_RETRY_AFTER_S, Signaling
from .signaling import parse_offer as _parse_offer  # noqa: F401 (its old home; tests use it)
from .supervisor import Supervisor
from .telephony.routes import CALLS_KEY, calls_status
from .telephony.routes import add_routes as add_telephony_routes
from .worker_protocol import OnClosed, OnDied, WorkerArgs, WorkerHandle, WorkerPool, check_shippable

log = logging.getLogger("stream.transport")

WATCH_EVERY_S = 0.5  # how often silent sessions are looked for (and new capacity, when due)


class WebRTCServer:
    """Serve pipelines to WebRTC peers: one pipeline from ``pipeline_factory()`` per peer.

    ``host``/``port``: where signaling and the page listen (port 0 picks a free one; see ``port``
    after ``start()``). ``max_sessions``: concurrent peers, 503 past it. ``max_offer_bytes``: 413
    past it. ``token``: when set, ``/offer`` needs ``Authorization: Bearer TOKEN`` (401 otherwise),
    and so do ``/status`` and drain unless ``admin_token`` is set: then they need that one instead.
    ``status_rate``: admin requests a second per client address (bursts of ``STATUS_BURST_S``
    seconds' worth; 0: no limit), 429 past it; ``offer_rate`` the same for offers (default 0: no
    limit; with one, a client cannot take every session slot by churning offers).
    ``header_timeout``/``body_timeout``: seconds for a request's headers / an offer's body to arrive
    (the connection is closed / 408). ``idle_timeout``: seconds without media from a peer before its
    session is closed. ``ice_addresses``: interface names or addresses ICE may offer as host
    candidates (default: all but loopback, as aioice does). ``ice_servers``: STUN/TURN URLs (default
    none). ``jitter_depth``, ``opus_inline``, ``native_rtp``: see ``SessionOptions`` (jitter None:
    aiortc's own 80 ms buffer).
    ``sink_factory(session_id)``: a sink node that also gets every output of that session (a
    ``FileSink``); finalized when the session closes.

    ``workers``: run sessions in that many worker processes (0: in this process).
    ``ray_address``: run them on a Ray cluster instead (``"host:port"``, ``"auto"``: the
    cluster this machine belongs to, else a new local one, ``"local"``: a new one in this
    process), ``workers`` session workers per node (default 1), each reserving
    ``ray_worker_cpus`` CPUs and ``ray_resources`` (custom node resources: only nodes that have
    them get workers). ``worker_sessions``: most sessions per worker (None: no cap but
    ``max_sessions``).

    The keyword arguments are ``ServerSettings``' fields; ``settings=`` takes one whole (the
    keyword arguments, ``host`` and ``port`` then override its values). The settings are in
    ``settings``. Raises ConfigError for bad settings, BackendUnavailable for ``ray_address``
    without Ray installed.
    """

    def __init__(
        self,
        pipeline_factory: PipelineFactory,
        host: str | None = None,
        port: int | None = None,
        *,
        settings: ServerSettings | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        changes: dict[str, Any] = dict(options)
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
        if settings is None:
            settings = ServerSettings(**changes)
        elif changes:
            settings = replace(settings, **changes)
        if settings.ray_address is not None:
            from ..ray._ray import require_ray  # stream.ray itself loads no Ray

            require_ray()  # BackendUnavailable with the install command, now
        if settings.pooled:
            check_shippable(
                {"pipeline_factory": pipeline_factory, "sink_factory": settings.sink_factory}
            )
        self.pipeline_factory = pipeline_factory
        self.settings = settings
        self.options = settings.session_options()
        self.local = SessionHost(
            pipeline_factory,
            self.options,
            connect_timeout=settings.connect_timeout,
            sink_factory=settings.sink_factory,
            on_closed=lambda _session_id: self._sessions_changed.set(),
        )
        self.placement = Placement(settings.worker_sessions)
        self.supervisor: Supervisor | None = None
        if settings.pooled:
            self.supervisor = Supervisor(
                self._make_pool, all_must_start=settings.ray_address is None
            )
        self.signaling = Signaling(settings, self)
        if settings.telephony is not None:  # phone calls and plain WebSocket media
            add_telephony_routes(self.signaling.app, self, settings.telephony)
        self.sessions_total = 0
        # offers being answered, counted against max_sessions until they are live sessions
        self._answering: set[str] = set()
        self._stopping = False
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._sessions_changed = asyncio.Event()  # set whenever a session ends
        self._started = False
        self._watchdog: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    # -- what the server holds
    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        """The port listened on (the one picked, after ``start()`` with port 0)."""
        return self.signaling.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{host}:{self.port}/"

    @property
    def app(self) -> web.Application:
        """The aiohttp application (``signaling.app``)."""
        return self.signaling.app

    @property
    def pooled(self) -> bool:
        return self.settings.pooled

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def draining(self) -> bool:
        """Offers are refused (503) while the live sessions run to their end (``drain()``)."""
        return self._draining

    def ready(self) -> tuple[bool, str]:
        """Whether an offer would be taken now, and why not: ``(True, "ready")`` or
        ``(False, reason)`` (draining, stopping, no worker up, at ``max_sessions``)."""
        if self._stopping:
            return False, "stopping"
        if self._draining:
            return False, "draining"
        if not self._started:
            return False, "starting"
        if self.pooled and not any(w.alive and not w.draining for w in self.workers):
            return False, "no worker is up"
        limit = self.settings.max_sessions
        if self._sessions_in_use() >= limit:
            return False, f"full: {limit} sessions"
        return True, "ready"

    @property
    def sessions(self) -> dict[str, Session]:
        """The sessions running in this process (none with workers)."""
        return self.local.sessions

    @property
    def workers(self) -> list[WorkerHandle]:
        """The workers (none without); a restarted worker replaces the dead one in its slot."""
        return self.supervisor.workers if self.supervisor is not None else []

    @property
    def worker_restarts(self) -> int:
        return self.supervisor.restarts if self.supervisor is not None else 0

    @property
    def placed(self) -> dict[str, WorkerHandle]:
        """Session id -> the worker it runs on."""
        return self.placement.placed

    @property
    def rejected(self) -> dict[int, int]:
        """Refused requests by HTTP status."""
        return self.signaling.rejected

    @property
    def live_sessions(self) -> int:
        return len(self.placed) if self.pooled else len(self.local.sessions)

    def _sessions_in_use(self) -> int:
        """Live sessions plus offers being answered, each counted once.

        A local session is in ``local.sessions`` from the moment its offer is being answered, so
        an offer is counted by id, not added to the live count.
        """
        live = self.placed if self.pooled else self.local.sessions
        calls = self.app.get(CALLS_KEY)  # telephony calls share max_sessions
        in_calls = len(calls.calls) if calls is not None else 0
        return len(live) + sum(1 for sid in self._answering if sid not in live) + in_calls

    # -- sessions
    async def offer(self, offer: RTCSessionDescription) -> tuple[str, str, str]:
        """Start a session for ``offer``, here or on a worker: ``(session id, sdp, type)`` of
        the answer. Raises OfferRefused (503 with ``retry_after_s`` at ``max_sessions``)."""
        if self._draining or self._stopping:
            raise OfferRefused(
                503, "the server is shutting down", retry_after_s=DRAIN_RETRY_AFTER_S
            )
        limit = self.settings.max_sessions
        # no await between the check and the reservation: concurrent offers cannot both pass
        if self._sessions_in_use() >= limit:
            raise OfferRefused(503, f"server full: {limit} sessions", retry_after_s=5)
        session_id = uuid.uuid4().hex[:12]
        self._answering.add(session_id)
        try:
            self.sessions_total += 1
            if self.pooled:
                sdp, kind = await self.placement.place(self.workers, session_id, offer.sdp)
            else:
                answer = await self.local.answer(session_id, offer)
                sdp, kind = answer.sdp, answer.type
            log.info(
                "session %s: answered (%d live)",
                session_id,
                self.live_sessions,
                extra={"session": session_id},
            )
        finally:
            self._answering.discard(session_id)
        return session_id, sdp, kind

    def drain_worker(self, index: int) -> WorkerHandle:
        """Worker ``index`` takes no new sessions; its sessions run to their end.

        A drained worker that dies is not restarted. Raises KeyError for no such worker.
        """
        if self.supervisor is None:
            raise KeyError(index)
        return self.supervisor.drain(index)

    def _make_pool(self) -> WorkerPool:
        return worker_pool(
            self.settings,
            WorkerArgs(
                self.pipeline_factory,
                self.settings.sink_factory,
                self.options,
                self.settings.connect_timeout,
                logging.getLogger().getEffectiveLevel(),
            ),
            self._worker_session_closed,
            self._worker_died,
        )

    def _worker_session_closed(self, worker: WorkerHandle, session_id: str) -> None:
        self.placement.closed(worker, session_id)
        self._sessions_changed.set()

    def _worker_died(self, worker: WorkerHandle) -> None:
        self.placement.lost(worker)
        if self.supervisor is not None:
            self.supervisor.died(worker)

    # -- status
    def status(self) -> dict[str, Any]:
        """Sessions in this process, and counts that show leaks (see ``gather_status``)."""
        local = self.local.status()
        return {
            "sessions": self.live_sessions,
            "max_sessions": self.settings.max_sessions,
            "sessions_total": self.sessions_total,
            "rejected": {str(k): v for k, v in sorted(self.rejected.items())},
            "stopping": self._stopping,
            "draining": self._draining,
            "counts": local["counts"],
            "list": local["list"],
            **({"calls": calls} if (calls := calls_status(self.app)) is not None else {}),
        }

    async def gather_status(self) -> dict[str, Any]:
        """``status()`` with each worker's sessions and counts, the counts summed over all.

        With workers, ``workers`` lists each one (pid, sessions, cpu, draining, counts; a Ray
        worker also its node), and each session in ``list`` names its ``worker`` (and ``node``).
        """
        status = self.status()
        if self.supervisor is None:
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
        if self.supervisor.pool is not None:
            status["worker_kind"] = self.supervisor.pool.kind
        return status

    # -- life cycle
    async def _watch(self) -> None:
        """Close sessions whose peer went silent or never connected; take on new workers."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            self.local.check()
            if self.supervisor is not None:
                await self.supervisor.tick()

    async def start(self) -> None:
        """Start the workers (if any), listen; raises TransportError when either fails.

        Process workers must all start; on a Ray cluster at least one must (the others are
        retried after the restart delays).
        """
        supervisor = self.supervisor
        if supervisor is not None and supervisor.pool is None:
            await supervisor.start()
        try:
            await self.signaling.listen()
        except TransportError:
            if supervisor is not None:
                await supervisor.stop()
            raise
        self._started = True
        self._watchdog = asyncio.create_task(self._watch(), name="webrtc watchdog")
        log.info("serving on %s", self.url)

    async def drain(
        self, timeout: float | None = None, reason: str = "server shutting down"
    ) -> None:
        """Graceful shutdown: refuse new offers (503 with ``Retry-After``, ``/readyz`` 503), let
        the live sessions run to their end for up to ``timeout`` seconds (None:
        ``settings.drain_timeout``), then ``stop()``: each session left is closed, its peer told
        ``reason``. Returns once stopped; a ``stop()`` meanwhile (a second signal) cuts it short.
        """
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(
                self._drain(self.settings.drain_timeout if timeout is None else timeout, reason),
                name="webrtc drain",
            )
        await asyncio.shield(self._drain_task)

    async def _drain(self, timeout: float, reason: str) -> None:
        self._draining = True
        left = self._sessions_in_use()
        log.info("draining: %d sessions may run on for up to %g s", left, timeout)
        self._tell_peers({"type": "draining", "deadline_s": timeout})
        try:
            async with asyncio.timeout(timeout):
                await self._sessions_ended(lambda: self._stopping)
        except TimeoutError:
            left = self._sessions_in_use()
            log.info("drain timeout: closing %d sessions", left)
            reason = f"{reason}: drain timeout ({timeout:g} s) reached"
        await self.stop(reason=reason)

    async def _sessions_ended(self, also: Callable[[], bool] = lambda: False) -> None:
        """Until no session is live or being answered (or ``also()`` is true)."""
        while self._sessions_in_use() and not also():
            self._sessions_changed.clear()
            await self._sessions_changed.wait()

    def _tell_peers(self, message: dict[str, Any]) -> int:
        """Send ``message`` on the data channel of every session in this process; how many.

        Sessions on workers are not reached (the worker protocol has no such request); their
        workers send the ``close`` notice themselves when stopped.
        """
        sessions = list(self.local.sessions.values())
        for session in sessions:
            session.notify(message)  # a session just starting gets it when its channel opens
        return len(sessions)

    async def stop(self, timeout: float = 10.0, reason: str = "server stopping") -> None:
        """Refuse new offers, close every session (its peer told ``reason``, sinks finalized),
        stop listening. A second call while one runs waits for it."""
        if self._stopping:
            self._sessions_changed.set()  # a drain waiting for sessions: stop waiting
            await self._stopped.wait()
            return
        self._stopping = True
        self._sessions_changed.set()
        # every peer here gets the reason before its session is closed below
        await tell_closing(list(self.local.sessions.values()), reason, CLOSE_NOTICE_S)
        await asyncio.gather(
            self.local.close_all(reason, timeout),
            *([self.supervisor.stop(timeout, reason)] if self.supervisor is not None else []),
            return_exceptions=True,
        )
        self.placement.placed.clear()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await self.signaling.close()
        self._stopped.set()

    async def __aenter__(self) -> WebRTCServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start (if not started) and serve until ``stop()`` is called or the task is cancelled."""
        if not self._started:
            await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    if not TYPE_CHECKING:  # type checkers see only the new names

        def __getattr__(self, name: str) -> Any:
            moved = _MOVED.get(name)
            if moved is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            where, get = moved
            warnings.warn(
                f"WebRTCServer.{name} is deprecated: use WebRTCServer.{where}",
                DeprecationWarning,
                stacklevel=2,
            )
            return get(self)


def _setting(name: str) -> tuple[str, Callable[[WebRTCServer], Any]]:
    return f"settings.{name}", lambda server: getattr(server.settings, name)


# settings added after the move: they never were attributes, so they get no deprecated alias
_NEW_SETTINGS = ("turn_secret", "turn_ttl", "drain_timeout", "cert_file", "key_file")

# attributes that moved: old name -> (where it is now, how to get it)
_MOVED: dict[str, tuple[str, Callable[[WebRTCServer], Any]]] = {
    **{
        f.name: _setting(f.name)
        for f in fields(ServerSettings)
        if f.name not in ("host", "port", "workers", "static_dir", "ice_addresses")
        and f.name not in _NEW_SETTINGS
    },
    "static_dir": ("settings.page_dir", lambda s: s.settings.page_dir),
    "worker_count": ("settings.workers", lambda s: s.settings.workers),
    "ice_spec": ("settings.ice_addresses", lambda s: tuple(s.settings.ice_addresses or ())),
    "status_limit": ("signaling.status_limit", lambda s: s.signaling.status_limit),
    "deadlines": ("signaling.deadlines", lambda s: s.signaling.deadlines),
}


def worker_pool(
    settings: ServerSettings, args: WorkerArgs, on_closed: OnClosed, on_died: OnDied
) -> WorkerPool:
    """The pool ``settings`` ask for: worker processes here, or session workers on Ray."""
    if settings.ray_address is None:
        return ProcessWorkerPool(settings.workers, args, on_closed, on_died)
    from ..ray.session_workers import RayWorkerPool  # loads Ray: only when asked for

    return RayWorkerPool(
        settings.ray_address,
        args,
        on_closed=on_closed,
        on_died=on_died,
        per_node=settings.workers or 1,
        num_cpus=settings.ray_worker_cpus,
        resources=dict(settings.ray_resources or {}),
        ice_spec=tuple(settings.ice_addresses or ()),
    )


__all__ = [
    "CLOSE_NOTICE_S",
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_OFFER_BYTES",
    "DEFAULT_STATUS_RATE",
    "STATIC_DIR",
    "STATUS_BURST_S",
    "PipelineFactory",
    "RateLimit",
    "ServerSettings",
    "SinkFactory",
    "WebRTCServer",
    "worker_pool",
]
