"""WebRTC sessions on a Ray cluster: ``WebRTCServer(..., ray_address=...)``.

The front (signaling, limits, the page) stays in the server's process; sessions run on the
cluster's nodes. Per node, ``RayWorkerPool`` places ``per_node`` ``SessionWorker`` actors there
(``NodeAffinitySchedulingStrategy``); each one drives a detached session-host process on its
node (``stream.transport.workers.Worker(detached=True)``), which runs the aiortc peer
connections and the pipelines, so media goes straight between the peer and that node.

Why a process beside the actor rather than the sessions in the actor itself: an actor that is
killed (``ray.kill``, Ray's memory monitor, a crash) cannot say goodbye, and its peers would
only notice when their ICE consent checks expire (about 30 s). The host process is no child of
the actor (Ray kills those with it); it sees the actor's end of their socket pair close, sends
each peer an ``error`` message on the data channel, closes its connections and exits.

``RayWorker`` is the front's handle on one actor, behind the same interface as the process
workers (``stream.transport.workers.WorkerHandle``). It follows the actor with a long poll
(``events``): sessions that closed, and the host's load (sessions, CPU); a failed poll, or a
host process that died, is the worker's death: ``on_died``, and the front restarts the slot on
the same node while the node lives (with the restart delays). Everything Ray is imported
lazily, through ``_ray``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import ConfigError, TransportError
from ..transport.host import OfferRefused
from ..transport.workers import OnClosed, OnDied, Worker, WorkerHandle
from ._ray import connect, ray_errors, require_ray

log = logging.getLogger("stream.ray")

POLL_S = 2.0  # a long poll's wait when nothing happens: also how fresh the load figures are
POLL_GRACE_S = 30.0  # a poll unanswered this much past its wait: the worker is gone
START_TIMEOUT_S = 90.0  # actor placement, its process, and the session host's start
JOIN_TIMEOUT_S = 60.0  # ray.init: a local Ray's start on a slow machine included
KEEP_EVENTS = 10_000


def _node_addresses() -> set[str]:
    """Every address of this node's interfaces."""
    import ifaddr

    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            found.add(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return found


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


def _is_address(item: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(item)
    except ValueError:
        return False
    return True


class SessionWorker:
    """The actor: a detached session-host process on this node, and the events it reports.

    A plain class: ``RayWorker`` wraps it with ``ray.remote``. Its methods are async, so Ray runs
    it as an async actor: many sessions' calls at once. Every method answers with plain dicts
    (never raises), so the front tells the host's refusals from Ray's failures.
    """

    def __init__(self, index: int, args: tuple[Any, ...], ice_spec: Sequence[str]) -> None:
        self.index = index
        self.args = args
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
        pipeline_factory, sink_factory, options, connect_timeout, log_level = self.args
        try:
            options = replace(options, ice_addresses=resolve_on_node(self.ice_spec))
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), **where}
        args = (pipeline_factory, sink_factory, options, connect_timeout, log_level)
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


_actor_class: Any = None


def _session_worker_class() -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = require_ray().remote(SessionWorker)
    return _actor_class


class RayWorker:
    """The front's handle on one ``SessionWorker`` actor, pinned to one node."""

    kind = "ray"

    def __init__(
        self,
        index: int,
        node_id: str,
        node_ip: str,
        args: tuple[Any, ...],
        on_closed: OnClosed,
        on_died: OnDied,
        *,
        num_cpus: float = 1.0,
        resources: dict[str, float] | None = None,
        ice_spec: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.node_id = node_id
        self.node_ip = node_ip  # as the cluster knows the node (ray start --node-ip-address)
        self.sessions: set[str] = set()
        self.pending = 0
        self.alive = False
        self.draining = False
        self.stopping = False
        self.started_at = 0.0
        self.pid: int | None = None  # the session host's
        self.actor_pid: int | None = None
        self.reported_sessions = 0
        self._cpu = 0.0
        self._args = args
        self._on_closed = on_closed
        self._on_died = on_died
        self._num_cpus = num_cpus
        self._resources = dict(resources or {})
        self._ice_spec = tuple(ice_spec)
        self._actor: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._follower: asyncio.Task[None] | None = None
        self._placing: set[str] = set()
        self._closed_early: set[str] = set()

    @property
    def load(self) -> int:
        return len(self.sessions) + self.pending

    @property
    def cpu(self) -> float:
        """Cores the session host kept busy, as of the latest poll."""
        return self._cpu

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "pid": self.pid,
            "actor_pid": self.actor_pid,
            "node_id": self.node_id,
            "node_ip": self.node_ip,
            "alive": self.alive,
            "draining": self.draining,
            "sessions": len(self.sessions),
            "cpu": self.cpu,
        }

    # -- calls
    async def _call(self, method: str, *args: Any, timeout: float) -> Any:
        actor = self._actor
        if actor is None:
            raise TransportError(f"worker {self.index}: no actor")
        try:
            ref = getattr(actor, method).remote(*args)
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(ref.future())
        except TimeoutError:
            raise TransportError(
                f"worker {self.index} (node {self.node_ip}) did not answer "
                f"{method} in {timeout:g} s"
            ) from None
        except self._errors as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise TransportError(
                f"worker {self.index} (node {self.node_ip}) failed ({type(exc).__name__}): {reason}"
            ) from exc

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Place the actor on its node and start its session host; raises TransportError."""
        self._errors = ray_errors()
        strategies: Any = importlib.import_module("ray.util.scheduling_strategies")
        options: dict[str, Any] = {
            "num_cpus": self._num_cpus,
            "scheduling_strategy": strategies.NodeAffinitySchedulingStrategy(
                self.node_id, soft=False
            ),
            "max_restarts": 0,  # the front restarts a slot itself, with its delays
            "max_task_retries": 0,
            "max_concurrency": 256,  # sessions' offers, closes and the long poll, at once
        }
        if self._resources:
            options["resources"] = self._resources
        self._actor = (
            _session_worker_class()
            .options(**options)
            .remote(self.index, self._args, self._ice_spec)
        )
        try:
            info = await self._call("start", timeout=timeout)
        except TransportError as exc:
            self.kill()
            raise TransportError(f"worker {self.index} did not start: {exc}") from exc
        self.actor_pid = info.get("actor_pid")
        if info.get("node_id") != self.node_id:  # cannot be, with a hard node affinity
            log.warning("worker %d: placed on node %s, not %s", self.index, info, self.node_id)
        if not info["ok"]:
            self.kill()
            raise TransportError(
                f"worker {self.index} on node {self.node_ip} did not start: {info['error']}"
            )
        self.pid = info["pid"]
        self.alive = True
        self.started_at = time.monotonic()
        self._follower = asyncio.create_task(self._follow(), name=f"follow worker {self.index}")
        log.info(
            "worker %d: node %s, actor pid %s, session host pid %s",
            self.index,
            self.node_ip,
            self.actor_pid,
            self.pid,
        )

    async def _follow(self) -> None:
        """Long-poll the actor for closed sessions and load, until it fails or is stopped."""
        cursor = 0
        while self.alive:
            try:
                reply = await self._call("events", cursor, POLL_S, timeout=POLL_S + POLL_GRACE_S)
            except TransportError as exc:
                self._ended(str(exc))
                return
            cursor = int(reply["cursor"])
            self._cpu = float(reply["cpu"])
            self.reported_sessions = int(reply["sessions"])
            for event in reply["events"]:
                if "closed" in event:
                    self._session_closed(str(event["closed"]))
                elif "died" in event:
                    self._ended(f"worker {self.index} (node {self.node_ip}): {event['died']}")
                    return
            if not reply["alive"]:
                self._ended(f"worker {self.index} (node {self.node_ip}): session host gone")
                return

    def _session_closed(self, session_id: str) -> None:
        if session_id in self._placing:
            self._closed_early.add(session_id)
        if session_id in self.sessions:
            self.sessions.discard(session_id)
            self._on_closed(self, session_id)

    def _ended(self, reason: str) -> None:
        was_alive = self.alive
        self.alive = False
        self.kill()  # a host that died leaves a live actor; a lost actor is dead already
        if was_alive and not self.stopping:
            log.error("%s: worker died, %d sessions lost", reason, len(self.sessions))
            self._on_died(self)
        self.sessions.clear()

    # -- the worker interface
    async def place(self, session_id: str, sdp: str, timeout: float = 30.0) -> dict[str, Any]:
        """Start a session there: the answer ``{sdp, type}``; raises OfferRefused/TransportError."""
        self.pending += 1
        self._placing.add(session_id)
        try:
            reply = await self._call("offer", session_id, sdp, timeout=timeout)
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

    def close_session(self, session_id: str, reason: str = "closed") -> None:
        if self._actor is not None and self.alive:
            with contextlib.suppress(Exception):  # gone already: nothing to close
                self._actor.close.remote(session_id, reason)

    async def status(self, timeout: float = 5.0) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call("status", timeout=timeout)
        if not reply.pop("ok"):
            raise TransportError(f"worker {self.index}: {reply.get('error')}")
        self._cpu = float(reply.pop("cpu", self._cpu))
        return reply

    def drain(self) -> None:
        """Take no new sessions; the ones here run to their end."""
        self.draining = True

    async def stop(self, timeout: float = 15.0, reason: str = "server stopping") -> None:
        """Close every session there (sinks finalized), end the host process and the actor."""
        self.stopping = True
        if self.alive:
            try:
                await self._call("stop", reason, timeout=timeout)
            except TransportError as exc:
                log.error("worker %d: stop failed: %s", self.index, exc)
        self.alive = False
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        self.kill()

    def kill(self) -> None:
        actor, self._actor = self._actor, None
        if actor is not None:
            with contextlib.suppress(Exception):  # already gone: nothing left to end
                require_ray().kill(actor, no_restart=True)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """TransportError unless a TCP connection to the head's ``host:port`` opens: Ray itself
    retries an unreachable head for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TransportError(f"--ray wants HOST:PORT, 'auto' or 'local', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout).close()
    except OSError as exc:
        raise TransportError(f"cannot reach the Ray head at {address}: {exc}") from exc


async def _in_daemon_thread(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` on a daemon thread: a call that hangs past ``timeout`` (TimeoutError) does
    not keep the process from exiting, as an executor thread would.

    The thread stays (parked) after the call: a local Ray's processes are started with
    PR_SET_PDEATHSIG, which fires when the *thread* that started them ends (seen: the GCS of
    ``--ray local`` gone a moment after ``ray.init`` returned on a thread that then exited).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(error: BaseException | None, value: Any) -> None:
        if future.done():  # timed out already
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def run() -> None:
        try:
            value = fn(*args)
        except BaseException as exc:
            error: BaseException | None = exc
        else:
            error = None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, error, None if error else value)
        threading.Event().wait()  # parked for good (see above); a daemon: it ends with us

    threading.Thread(target=run, name="ray-join", daemon=True).start()
    async with asyncio.timeout(timeout):
        return await future


def _key(node: dict[str, Any]) -> tuple[str, str]:
    return str(node.get("NodeManagerAddress")), str(node["NodeID"])


class RayWorkerPool:
    """``per_node`` session workers on every alive node that has ``num_cpus`` CPUs and the
    custom ``resources`` (see ``WebRTCServer``); joins the cluster at ``address`` on open."""

    kind = "ray"

    def __init__(
        self,
        address: str,
        args: tuple[Any, ...],
        *,
        on_closed: OnClosed,
        on_died: OnDied,
        per_node: int = 1,
        num_cpus: float = 1.0,
        resources: dict[str, float] | None = None,
        ice_spec: Sequence[str] = (),
    ) -> None:
        if per_node < 1:
            raise ConfigError(f"per_node must be >= 1, got {per_node}")
        self.address = address
        self.args = args
        self.on_closed = on_closed
        self.on_died = on_died
        self.per_node = per_node
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.ice_spec = tuple(ice_spec)
        self._started_ray = False

    def _request(self) -> dict[str, float]:
        return {"CPU": self.num_cpus, **self.resources}

    def _fits(self, node: dict[str, Any]) -> bool:
        total = node.get("Resources", {})
        return all(total.get(k, 0.0) >= v for k, v in self._request().items() if v > 0)

    def _nodes(self) -> dict[str, str]:
        """Alive nodes that can hold a session worker: node id -> address, in a stable order."""
        ray = require_ray()
        nodes = [n for n in ray.nodes() if n.get("Alive") and self._fits(n)]
        return {str(n["NodeID"]): str(n["NodeManagerAddress"]) for n in sorted(nodes, key=_key)}

    def _make(self, index: int, node_id: str, node_ip: str) -> RayWorker:
        return RayWorker(
            index,
            node_id,
            node_ip,
            self.args,
            self.on_closed,
            self.on_died,
            num_cpus=self.num_cpus,
            resources=self.resources,
            ice_spec=self.ice_spec,
        )

    async def open(self) -> list[WorkerHandle]:
        """Join the cluster; one worker per free slot (not started). Raises TransportError."""
        ray = require_ray()
        was_connected = ray.is_initialized()
        # "auto": Ray's own default (RAY_ADDRESS, else a cluster running here, else a new one)
        address = None if self.address == "auto" else self.address
        if address is not None and address != "local" and not was_connected:
            await asyncio.to_thread(_reachable, address)
        try:
            await _in_daemon_thread(connect, address, timeout=JOIN_TIMEOUT_S)
        except TimeoutError:
            raise TransportError(
                f"cannot join the Ray cluster at {self.address}: no answer in {JOIN_TIMEOUT_S:g} s"
            ) from None
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            raise TransportError(f"cannot join the Ray cluster at {self.address}: {exc}") from exc
        self._started_ray = not was_connected
        workers = await self.discover([])
        if not workers:
            await self.close()
            raise TransportError(
                f"no Ray node can hold a session worker (each needs {self._request()})"
            )
        return workers

    async def replacement(self, dead: WorkerHandle) -> WorkerHandle | None:
        node_id = str(dead.describe()["node_id"])
        try:
            alive = await asyncio.to_thread(self._nodes)
        except Exception as exc:  # the cluster is unreachable: try again later
            raise TransportError(f"cannot list the Ray nodes: {exc}") from exc
        return self._make(dead.index, node_id, alive[node_id]) if node_id in alive else None

    async def discover(self, known: Sequence[WorkerHandle]) -> list[WorkerHandle]:
        try:
            nodes = await asyncio.to_thread(self._nodes)
        except Exception as exc:
            raise TransportError(f"cannot list the Ray nodes: {exc}") from exc
        slots: dict[str, int] = {}
        for worker in known:
            node_id = str(worker.describe()["node_id"])
            slots[node_id] = slots.get(node_id, 0) + 1
        index = max((w.index for w in known), default=-1) + 1
        found: list[WorkerHandle] = []
        for node_id, node_ip in nodes.items():
            for _ in range(self.per_node - slots.get(node_id, 0)):
                found.append(self._make(index, node_id, node_ip))
                index += 1
        return found

    async def close(self) -> None:
        """Leave the cluster when this pool joined it (a local Ray started here stops)."""
        if self._started_ray:
            self._started_ray = False
            ray = require_ray()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(ray.shutdown)


__all__ = ["RayWorker", "RayWorkerPool", "SessionWorker", "resolve_on_node"]
