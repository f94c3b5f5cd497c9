"""The node side of a Ray session worker: the ``SessionWorker`` actor and its session host.

Each ``SessionWorker`` actor drives a detached session-host process on its node
(``stream.transport.process_workers.Worker(detached=True)``), which runs the aiortc peer
connections and the pipelines, so media goes straight between the peer and that node.

Why a process beside the actor rather than the sessions in the actor itself: an actor that is
killed (``ray.kill``, Ray's memory monitor, a crash) cannot say goodbye, and its peers would
only notice when their ICE consent checks expire (about 30 s). The host process is no child of
the actor (Ray kills those with it); it sees the actor's end of their socket pair close, sends
each peer an ``error`` message on the data channel, closes its connections and exits.

Like ``actor.py``, this module imports nothing of Ray: ``session_workers.py`` wraps the class
with ``ray.remote`` when Ray is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..errors import ConfigError, TransportError
from ..transport.host import OfferRefused
from ..transport.process_workers import Worker
from ..transport.worker_protocol import WorkerArgs, WorkerHandle

KEEP_EVENTS = 10_000


def _node_addresses() -> set[str]:
    """Every address of this node's interfaces."""
    import ifaddr

    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            found.add(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return found


def _is_address(item: str) -> bool:
    try:
        ipaddress.ip_address(item)
    except ValueError:
        return False
    return True


def resolve_on_node(spec: Sequence[str]) -> frozenset[str] | None:
    """``--ice-address`` items as this node sees them: interfaces resolved here, addresses
    kept when they are this node's. None for an empty spec; ConfigError when none is here."""
    if not spec:
        return None
    from ..transport._aiortc import resolve_host_addresses

    mine = _node_addresses()
    names = [item for item in spec if item not in mine and not _is_address(item)]
    kept = {item for item in spec if item in mine}
    if names:
        with contextlib.suppress(ConfigError):
            kept |= resolve_host_addresses(names)
    if not kept:
        raise ConfigError(f"none of the ice addresses {list(spec)} is on this node")
    return frozenset(kept)


class SessionWorker:
    """The actor: a detached session-host process on this node, and the events it reports.

    A plain class: ``RayWorker`` wraps it with ``ray.remote``. Its methods are async, so Ray runs
    it as an async actor: many sessions' calls at once. Every method answers with plain dicts
    (never raises), so the front tells the host's refusals from Ray's failures.
    """

    def __init__(self, index: int, args: tuple[Any, ...], ice_spec: Sequence[str]) -> None:
        self.index = index
        self.args = WorkerArgs(*args)
        self.ice_spec = tuple(ice_spec)
        self.worker: Worker | None = None
        self._events: list[dict[str, Any]] = []
        self._first = 0  # sequence number of _events[0]
        self._changed: asyncio.Event | None = None

    def _event(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if len(self._events) > KEEP_EVENTS:
            drop = len(self._events) - KEEP_EVENTS
            del self._events[:drop]
            self._first += drop
        if self._changed is not None:
            self._changed.set()

    def _closed(self, worker: WorkerHandle, session_id: str) -> None:
        self._event({"closed": session_id})

    def _died(self, worker: WorkerHandle) -> None:
        pid = self.worker.pid if self.worker is not None else None
        self._event({"died": f"its session host (pid {pid}) ended"})

    async def start(self) -> dict[str, Any]:
        """Start the session host here; ``{"ok", ...where}`` or ``{"ok": False, "error"}``."""
        self._changed = asyncio.Event()
        ray: Any = importlib.import_module("ray")  # loaded already: this runs in a Ray worker
        where = {
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "actor_pid": os.getpid(),
        }
        try:
            ice_addresses = resolve_on_node(self.ice_spec)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), **where}
        args = self.args._replace(options=replace(self.args.options, ice_addresses=ice_addresses))
        self.worker = Worker(self.index, args, self._closed, self._died, detached=True)
        try:
            await self.worker.start()
        except TransportError as exc:
            return {"ok": False, "error": str(exc), **where}
        return {"ok": True, "pid": self.worker.pid, **where}

    async def offer(self, session_id: str, sdp: str) -> dict[str, Any]:
        """Answer an offer: ``{"ok": True, "sdp", "type"}`` or ``{"ok": False, "status", ...}``."""
        worker = self.worker
        if worker is None or not worker.alive:
            return {"ok": False, "status": 503, "error": "the session host is not running"}
        try:
            answer = await worker.place(session_id, sdp)
        except OfferRefused as exc:
            return {"ok": False, "status": exc.status, "error": str(exc)}
        except TransportError as exc:
            return {"ok": False, "status": 503, "error": str(exc)}
        return {"ok": True, **answer}

    async def close(self, session_id: str, reason: str = "closed") -> None:
        if self.worker is not None:
            self.worker.close_session(session_id, reason)

    async def status(self) -> dict[str, Any]:
        """The host's status (sessions, counts, list) and its CPU."""
        worker = self.worker
        if worker is None or not worker.alive:
            return {"ok": False, "error": "the session host is not running"}
        try:
            got = await worker.status()
        except TransportError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **got, "cpu": worker.cpu}

    async def events(self, cursor: int, wait_s: float) -> dict[str, Any]:
        """Events after ``cursor`` (waits up to ``wait_s`` for one), the cursor to ask next
        with, and the load: ``{"cursor", "events", "sessions", "cpu", "alive"}``."""
        end = self._first + len(self._events)
        if cursor >= end and self._changed is not None:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._changed.wait()
            end = self._first + len(self._events)
        worker = self.worker
        return {
            "cursor": end,
            "events": self._events[max(0, cursor - self._first) :],
            "sessions": len(worker.sessions) if worker is not None else 0,
            "cpu": worker.cpu if worker is not None else 0.0,
            "alive": worker is not None and worker.alive,
        }

    async def stop(self, reason: str = "server stopping") -> dict[str, Any]:
        """Close every session (sinks finalized) and end the host process."""
        if self.worker is not None:
            await self.worker.stop(reason=reason)
        return {"ok": True}


__all__ = ["KEEP_EVENTS", "SessionWorker", "resolve_on_node"]
