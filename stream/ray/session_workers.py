"""WebRTC sessions on a Ray cluster: ``WebRTCServer(..., ray_address=...)``.

The front (signaling, limits, the page) stays in the server's process; sessions run on the
cluster's nodes. Per node, ``RayWorkerPool`` places ``per_node`` ``SessionWorker`` actors there
(``NodeAffinitySchedulingStrategy``); each one drives a detached session-host process on its
node (``session_actor.py`` says why).

``RayWorker`` is the front's handle on one actor, a ``WorkerHandle`` as the process workers
are. It follows the actor with a long poll (``events``): sessions that closed, and the host's
load (sessions, CPU); a failed poll, or a host process that died, is the worker's death:
``on_died``, and the front restarts the slot on the same node while the node lives (with the
restart delays). Everything Ray is imported lazily, through ``_ray``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, TransportError
from ..transport.worker_protocol import OnClosed, OnDied, WorkerHandle
from ._ray import join, require_ray, transport_errors
from .session_actor import SessionWorker

log = logging.getLogger("stream.ray")

POLL_S = 2.0  # a long poll's wait when nothing happens: also how fresh the load figures are
POLL_GRACE_S = 30.0  # a poll unanswered this much past its wait: the worker is gone
START_TIMEOUT_S = 90.0  # actor placement, its process, and the session host's start
JOIN_TIMEOUT_S = 60.0  # ray.init: a local Ray's start on a slow machine included

_actor_class: Any = None


def _session_worker_class() -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = require_ray().remote(SessionWorker)
    return _actor_class


class RayWorker(WorkerHandle):
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
        super().__init__(index, on_closed, on_died)
        self.node_id = node_id
        self.node_ip = node_ip  # as the cluster knows the node (ray start --node-ip-address)
        self.pid: int | None = None  # the session host's
        self.actor_pid: int | None = None
        self.reported_sessions = 0
        self._cpu = 0.0
        self._args = args
        self._num_cpus = num_cpus
        self._resources = dict(resources or {})
        self._ice_spec = tuple(ice_spec)
        self._actor: Any = None
        self._follower: asyncio.Task[None] | None = None

    @property
    def cpu(self) -> float:
        """Cores the session host kept busy, as of the latest poll."""
        return self._cpu

    def _where(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "actor_pid": self.actor_pid,
            "node_id": self.node_id,
            "node_ip": self.node_ip,
        }

    # -- calls
    async def _call(self, method: str, *args: Any, timeout: float) -> Any:
        actor = self._actor
        if actor is None:
            raise TransportError(f"worker {self.index}: no actor")
        try:
            with transport_errors(f"worker {self.index} (node {self.node_ip})"):
                ref = getattr(actor, method).remote(*args)
                async with asyncio.timeout(timeout):
                    return await asyncio.wrap_future(ref.future())
        except TimeoutError:
            raise TransportError(
                f"worker {self.index} (node {self.node_ip}) did not answer "
                f"{method} in {timeout:g} s"
            ) from None

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Place the actor on its node and start its session host; raises TransportError."""
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
                self._lost(str(exc))
                return
            cursor = int(reply["cursor"])
            self._cpu = float(reply["cpu"])
            self.reported_sessions = int(reply["sessions"])
            for event in reply["events"]:
                if "closed" in event:
                    self._session_closed(str(event["closed"]))
                elif "died" in event:
                    self._lost(f"worker {self.index} (node {self.node_ip}): {event['died']}")
                    return
            if not reply["alive"]:
                self._lost(f"worker {self.index} (node {self.node_ip}): session host gone")
                return

    def _teardown(self, reason: str) -> None:
        self.kill()  # a host that died leaves a live actor; a lost actor is dead already

    async def _offer(self, session_id: str, sdp: str, timeout: float) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call("offer", session_id, sdp, timeout=timeout)
        return reply

    def close_session(self, session_id: str, reason: str = "closed") -> None:
        if self._actor is not None and self.alive:
            with contextlib.suppress(Exception):  # gone already: nothing to close
                self._actor.close.remote(session_id, reason)

    async def _status(self, timeout: float) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call("status", timeout=timeout)
        self._cpu = float(reply.pop("cpu", self._cpu))
        return reply

    async def _stop_remote(self, reason: str, timeout: float) -> None:
        await self._call("stop", reason, timeout=timeout)

    async def _release(self) -> None:
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
        self._started_ray = await join(self.address, JOIN_TIMEOUT_S)
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


__all__ = ["JOIN_TIMEOUT_S", "POLL_S", "RayWorker", "RayWorkerPool"]
