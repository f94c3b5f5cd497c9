"""The worker protocol: what the front of a ``WebRTCServer`` asks of a session worker.

With workers, the front (the server's own process) keeps signaling, limits and the page; each
worker runs a ``SessionHost`` on an event loop of its own, so its peer connections, codecs and
pipelines use another core (or another machine), and media flows between the peer and the
worker directly. Two kinds of worker stand behind ``WorkerHandle``, and a ``WorkerPool`` makes
them:

- ``process_workers``: ``spawn``-ed processes on this machine (``WebRTCServer(workers=N)``);
- ``stream.ray.session_workers``: a Ray actor per cluster node, each driving a detached
  process worker on its node (``WebRTCServer(ray_address=...)``).

The interface: ``place(session_id, sdp) -> answer`` (raises ``OfferRefused``),
``close_session(session_id)``, ``status() -> dict`` (sessions, counts, the session list),
``drain()`` (take no new sessions; the ones there run to their end), ``stop()`` (close every
session, sinks finalized, and end the worker), ``describe()`` (what ``/status`` shows of it),
plus ``load`` (sessions placed or being placed), ``cpu`` (cores busy lately), ``alive``,
``sessions``. A worker calls ``on_closed(worker, session_id)`` when a session there ended and
``on_died(worker)`` once when it died (not when stopped); ``supervisor.Supervisor`` restarts it.

What a worker gets is ``WorkerArgs``, pickled: the pipeline factory and the sink factory must be
picklable (a module-level function or class instance, not a lambda or closure), and importable
in a fresh interpreter.
"""

from __future__ import annotations

import logging
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from ..errors import ConfigError, TransportError
from .host import OfferRefused, PipelineFactory, SinkFactory
from .session import SessionOptions

log = logging.getLogger("stream.transport")

GONE_NOTICE = "the worker serving this session stopped; the session ends"


class WorkerArgs(NamedTuple):
    """What every worker of a server is started with (a tuple: older callers pass one)."""

    pipeline_factory: PipelineFactory
    sink_factory: SinkFactory | None
    options: SessionOptions
    connect_timeout: float
    log_level: int


def check_shippable(objects: Mapping[str, object]) -> None:
    """ConfigError unless each of ``objects`` (name -> object) pickles, as a worker needs."""
    for what, obj in objects.items():
        try:
            pickle.dumps(obj)
        except Exception as exc:
            raise ConfigError(
                f"with workers, {what} must be picklable (a module-level function or "
                f"class instance, not a lambda or closure): {exc}"
            ) from exc


OnClosed = Callable[["WorkerHandle", str], None]
OnDied = Callable[["WorkerHandle"], None]


class WorkerHandle(ABC):
    """One worker as the front sees it: the bookkeeping every kind of worker shares.

    A subclass says how it reaches its worker (``start``, ``cpu``, ``close_session`` and the
    ``_offer``/``_status``/``_stop_remote``/``_release``/``_teardown`` steps), and calls
    ``_session_closed`` when the worker reports a session's end, ``_lost`` when it is gone.
    """

    kind = "?"

    def __init__(self, index: int, on_closed: OnClosed, on_died: OnDied) -> None:
        self.index = index
        self.sessions: set[str] = set()
        self.pending = 0  # offers being placed here
        self.alive = False
        self.draining = False  # takes no new sessions
        self.stopping = False  # being stopped: its end is not a death
        self.started_at = 0.0
        self._on_closed = on_closed
        self._on_died = on_died
        # a session's end can be reported before its offer's answer (Ray's events overtake it)
        self._placing: set[str] = set()
        self._closed_early: set[str] = set()
        # from the last status reply: the host's totals (SessionHost.metrics()) and loop lag,
        # for the metrics exporter (``prom``), which reads them after ``gather_status``
        self.metrics: dict[str, Any] | None = None
        self.loop_lag_s: float | None = None

    @property
    def load(self) -> int:
        return len(self.sessions) + self.pending

    @property
    @abstractmethod
    def cpu(self) -> float:
        """Cores the worker kept busy lately (0.0 where unknown)."""
        ...

    @abstractmethod
    def _where(self) -> dict[str, Any]:
        """Where the worker runs, for ``describe()`` (its pid, its node)."""
        ...

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            **self._where(),
            "alive": self.alive,
            "draining": self.draining,
            "sessions": len(self.sessions),
            "cpu": self.cpu,
        }

    @abstractmethod
    async def start(self, timeout: float = 60.0) -> None:
        """Start the worker and wait until it serves; raises TransportError when it does not."""
        ...

    async def place(self, session_id: str, sdp: str, timeout: float = 30.0) -> dict[str, Any]:
        """Start a session there: the answer ``{sdp, type}``; raises OfferRefused/TransportError."""
        self.pending += 1
        self._placing.add(session_id)
        try:
            reply = await self._offer(session_id, sdp, timeout)
        finally:
            self.pending -= 1
            self._placing.discard(session_id)
        closed_already = session_id in self._closed_early
        self._closed_early.discard(session_id)
        if not reply["ok"]:
            raise OfferRefused(int(reply.get("status", 500)), str(reply.get("error")))
        if not closed_already and self.alive:
            self.sessions.add(session_id)
        return {"sdp": reply["sdp"], "type": reply["type"]}

    @abstractmethod
    def close_session(self, session_id: str, reason: str = "closed") -> None:
        """Ask the worker to close a session (best effort: a gone worker has none)."""
        ...

    async def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The worker's ``SessionHost.status()``; raises TransportError when it cannot say."""
        reply = await self._status(timeout)
        if not reply.pop("ok", True):
            raise TransportError(f"worker {self.index}: {reply.get('error')}")
        reply.pop("id", None)
        self.metrics = reply.get("metrics")
        lag = reply.get("loop_lag_s")
        self.loop_lag_s = None if lag is None else float(lag)
        return reply

    def drain(self) -> None:
        """Take no new sessions; the ones here run to their end."""
        self.draining = True

    async def stop(self, timeout: float = 15.0, reason: str = "server stopping") -> None:
        """Close every session there (sinks finalized), then end the worker (killed if stuck)."""
        self.stopping = True
        if self.alive:
            try:
                await self._stop_remote(reason, timeout)
            except TransportError as exc:
                log.error("worker %d: stop failed: %s", self.index, exc)
        self.alive = False
        await self._release()

    # -- events from the worker
    def _session_closed(self, session_id: str) -> None:
        if session_id in self._placing:
            self._closed_early.add(session_id)
        if session_id in self.sessions:
            self.sessions.discard(session_id)
            self._on_closed(self, session_id)

    def _lost(self, reason: str) -> None:
        """The worker is gone (``reason`` says how): its sessions with it; a death unless it
        was being stopped."""
        was_alive = self.alive
        self.alive = False
        self._teardown(reason)
        if was_alive and not self.stopping:
            log.error("%s: worker died, %d sessions lost", reason, len(self.sessions))
            self._on_died(self)
        self.sessions.clear()

    # -- how a kind reaches its worker
    @abstractmethod
    async def _offer(self, session_id: str, sdp: str, timeout: float) -> dict[str, Any]:
        """The worker's reply to an offer: ``{"ok": True, "sdp", "type"}`` or
        ``{"ok": False, "status", "error"}``; raises TransportError when it gives none."""
        ...

    @abstractmethod
    async def _status(self, timeout: float) -> dict[str, Any]:
        """The worker's status reply (``ok`` False with an ``error`` when it has none to give);
        raises TransportError when it gives no reply."""
        ...

    @abstractmethod
    async def _stop_remote(self, reason: str, timeout: float) -> None:
        """Have the worker close its sessions and end; raises TransportError."""
        ...

    @abstractmethod
    async def _release(self) -> None:
        """After a stop: make sure the worker has ended (join, kill)."""
        ...

    @abstractmethod
    def _teardown(self, reason: str) -> None:
        """On the worker's end: drop what still points at it (waiting requests, its actor)."""
        ...


class WorkerPool(Protocol):
    """Makes a server's workers: the first ones, one to replace a dead one, new ones found."""

    kind: str

    async def open(self) -> list[WorkerHandle]:
        """The first workers (not started); raises TransportError when there can be none."""
        ...

    async def replacement(self, dead: WorkerHandle) -> WorkerHandle | None:
        """A new worker for a dead one's slot (same index), or None when the slot is gone."""
        ...

    async def discover(self, known: Sequence[WorkerHandle]) -> list[WorkerHandle]:
        """Workers for capacity that appeared since (Ray nodes that joined); indexes follow."""
        ...

    async def close(self) -> None: ...


__all__ = [
    "GONE_NOTICE",
    "OnClosed",
    "OnDied",
    "WorkerArgs",
    "WorkerHandle",
    "WorkerPool",
    "check_shippable",
]
