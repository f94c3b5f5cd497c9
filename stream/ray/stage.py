"""``RemoteStage``: a node whose state lives in a Ray actor, on whichever cluster node fits.

Frames are sent as they arrive, up to ``max_in_flight`` at once, and come back in order, so the
round trip to the actor overlaps with the next frames instead of adding up. Events the wrapped
node does not take go around it, in order with the frames. The wrapped node picks its backend
(Rust or its Python twin) on the remote side; ``backend``/``backend_reason`` report that choice
and the Ray node it was made on.

Failures: the wrapped node's own errors come back with their type; a dead or unreachable actor
(or one silent for ``timeout_s``) is a ``TransportError``. Either ends the stream with a
``NodeError`` naming this stage and the frame, chained from that cause, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import ConfigError, NodeError, StreamError, TransportError
from ..events import Event
from ..node import Node, StreamingNode
from ._ray import connect, require_ray, transport_errors
from .actor import StageActor

log = logging.getLogger("stream.ray")

_END = object()  # the input stream ended


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class RemoteStage(StreamingNode):
    """Run ``node`` in a Ray actor: ``RemoteStage(Gain(-6), num_cpus=1, resources={"gpu_box": 1})``.

    ``num_cpus``/``num_gpus``/``resources`` are the actor's Ray resource request (custom node
    resources pick the node); ``max_in_flight`` (>= 1) bounds the frames sent and not yet
    answered; ``timeout_s`` bounds each wait for the actor (placement included); ``address`` is
    the cluster to join when this process has not joined one (see ``stream.ray.connect``).
    ``node`` must be picklable and importable on the cluster's nodes. Raises
    BackendUnavailable without Ray, ConfigError for bad settings.
    """

    accepts_events = True  # decides per event, from the wrapped node's own flag

    def __init__(
        self,
        node: Node,
        num_cpus: float = 1,
        num_gpus: float = 0,
        resources: dict[str, float] | None = None,
        max_in_flight: int = 4,
        *,
        name: str | None = None,
        timeout_s: float = 30.0,
        address: str | None = None,
    ) -> None:
        if not isinstance(node, Node):
            raise ConfigError(f"RemoteStage takes a Node, got {type(node).__name__}")
        if isinstance(node, StreamingNode):
            raise ConfigError(
                f"RemoteStage({node.name}): streaming nodes and sources cannot run remotely yet"
            )
        super().__init__(name or f"{node.name}@ray")
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {max_in_flight}", stage=self.name)
        if num_cpus < 0 or num_gpus < 0:
            raise ConfigError("num_cpus and num_gpus must be >= 0", stage=self.name)
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}", stage=self.name)
        require_ray()  # BackendUnavailable now, not mid-setup
        self.node = node
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.resources = dict(resources or {})
        self.max_in_flight = max_in_flight
        self.timeout_s = float(timeout_s)
        self.address = address
        self.backend = "unset"
        self.backend_reason = "not initialized"
        #: where the actor runs, after initialize(): backend, reason, pid, node_id, node_ip
        self.placement: dict[str, Any] = {}
        #: most frames ever sent and not yet answered (never above max_in_flight)
        self.peak_in_flight = 0
        #: per-frame round trips (send to answer), nanoseconds, the latest 100000
        self.round_trips_ns: deque[int] = deque(maxlen=100_000)
        self._actor: Any = None

    # -- lifecycle
    async def initialize(self) -> None:
        """Place the actor and build the node there; raises TransportError when it cannot."""
        ray = await asyncio.to_thread(connect, self.address)
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_restarts": 0,  # state does not survive a restart: a dead stage fails the stream
            "max_task_retries": 0,
            "max_concurrency": 1,  # one call at a time, in the order this stage sent them
        }
        if self.resources:
            options["resources"] = self.resources
        actor_class = ray.remote(StageActor)
        self._actor = actor_class.options(**options).remote(self.node)
        try:
            info = await self._call("initialize", self.node.force_python, what="start")
        except BaseException:
            self._kill()
            raise
        self.placement = info
        self.backend = str(info["backend"])
        self.backend_reason = (
            f"Ray actor on {info['node_ip']} node {str(info['node_id'])[:8]}: {info['reason']}"
        )

    async def cleanup(self) -> None:
        """Clean the node up remotely (best effort), then end the actor."""
        if self._actor is None:
            return
        try:
            await self._call("cleanup", what="clean up")
        except StreamError as exc:
            log.warning("%s: %s", self.name, exc)
        finally:
            self._kill()

    def _kill(self) -> None:
        actor, self._actor = self._actor, None
        if actor is not None:
            with contextlib.suppress(Exception):  # already gone: nothing left to end
                require_ray().kill(actor, no_restart=True)

    # -- calls
    async def _await(self, future: asyncio.Future[Any], what: str) -> Any:
        """The Outcome behind ``future``; Ray failures and timeouts as TransportError."""
        try:
            with transport_errors(f"{self.name}: the Ray actor of {self.node.name}"):
                async with asyncio.timeout(self.timeout_s):
                    return await future
        except TimeoutError:
            hint = ""
            if what == "start":
                hint = f" (no node with free {self._request()}, or the node is too slow to start)"
            raise TransportError(
                f"the Ray actor of {self.node.name} did not {what} within "
                f"{self.timeout_s:g} s{hint}",
                stage=self.name,
            ) from None

    async def _call(self, method: str, *args: Any, what: str) -> Any:
        if self._actor is None:
            raise TransportError("not initialized (no Ray actor)", stage=self.name)
        ref = getattr(self._actor, method).remote(*args)
        ok, value = await self._await(asyncio.wrap_future(ref.future()), what)
        if not ok:
            raise value
        return value

    def _request(self) -> dict[str, float]:
        return {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}

    def actor_pid(self) -> int | None:
        """Process id of the actor, once placed."""
        pid = self.placement.get("pid")
        return int(pid) if pid is not None else None

    # -- the stream
    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        """Send each item to the actor (at most ``max_in_flight`` unanswered); yield in order."""
        if items is None:
            return
        if self._actor is None:
            raise TransportError("not initialized (no Ray actor)", stage=self.name)
        actor = self._actor
        around = not self.node.accepts_events
        pending: asyncio.Queue[Any] = asyncio.Queue()  # entries in input order
        slots = asyncio.Semaphore(self.max_in_flight)
        in_flight = 0
        trips = self.round_trips_ns

        def timed(t0: int) -> Callable[[asyncio.Future[Any]], None]:
            return lambda _: trips.append(time.perf_counter_ns() - t0)

        async def feed() -> None:
            nonlocal in_flight
            index = 0
            try:
                async for item in items:
                    if around and type(item) is Event:
                        pending.put_nowait((index, None, item))
                    else:
                        await slots.acquire()
                        in_flight += 1
                        self.peak_in_flight = max(self.peak_in_flight, in_flight)
                        t0 = time.perf_counter_ns()
                        future = asyncio.wrap_future(actor.process.remote(item).future())
                        future.add_done_callback(timed(t0))
                        pending.put_nowait((index, future, None))
                    index += 1
                pending.put_nowait(_END)
            except Exception as exc:  # the upstream failed: the consumer raises it in order
                pending.put_nowait(_Failed(exc))

        feeder = asyncio.create_task(feed(), name=f"{self.name} feed")
        try:
            while True:
                entry = await pending.get()
                if entry is _END:
                    break
                if isinstance(entry, _Failed):
                    raise entry.exc
                index, future, item = entry
                if future is None:
                    yield item
                    continue
                outputs = await self._answer(future, index)
                in_flight -= 1
                slots.release()
                for out in outputs:
                    yield out
            for out in await self._tail():
                yield out
        finally:
            feeder.cancel()
            with contextlib.suppress(BaseException):
                await feeder

    async def _answer(self, future: asyncio.Future[Any], index: int) -> list[Any]:
        try:
            ok, value = await self._await(future, "answer")
        except TransportError as exc:
            raise self._fail(exc, index) from exc
        if not ok:
            raise self._fail(value, index) from value
        outputs: list[Any] = value
        return outputs

    async def _tail(self) -> list[Any]:
        try:
            outputs: list[Any] = await self._call("flush", what="flush")
        except Exception as exc:
            raise self._fail(exc, None) from exc
        return outputs

    def _fail(self, exc: BaseException, index: int | None) -> NodeError:
        return NodeError.from_cause(exc, self.name, index, aliases=(self.node.name,))

    def params(self) -> dict[str, Any]:
        raise ConfigError("RemoteStage is not in manifests yet", stage=self.name)

    def __repr__(self) -> str:
        return f"RemoteStage({self.node!r}, name={self.name!r}, backend={self.backend!r})"


__all__ = ["RemoteStage"]
