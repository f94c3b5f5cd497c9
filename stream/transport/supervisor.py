"""Supervision: a server's workers started, a dead one restarted, new capacity taken on.

A dead worker's slot is restarted after ``restart_delay(attempt)`` seconds (1, 2, 4 ... capped
at 30), counting the restarts in a row there; the count resets once a worker stayed up for
``HEALTHY_AFTER_S``, so a worker that ran for an hour and then died comes back at once. A
drained worker that dies is not restarted, nor is a slot whose Ray node is gone. Every
``DISCOVER_EVERY_S`` the pool is asked for capacity that appeared (Ray nodes that joined).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..errors import TransportError
from .worker_protocol import WorkerHandle, WorkerPool

log = logging.getLogger("stream.transport")

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a worker up this long died of something new: restart at once again
DISCOVER_EVERY_S = 10.0  # how often a Ray front looks for nodes that joined


def restart_delay(attempt: int) -> float:
    """Seconds to wait before restart ``attempt`` (0, 1, ...) of one worker slot: 1, 2, 4 ... 30."""
    return min(RESTART_FIRST_S * 2.0 ** max(0, attempt), RESTART_MAX_S)


class Supervisor:
    """Keeps the workers of the pool ``make_pool()`` running, from ``start()`` to ``stop()``.

    ``all_must_start``: ``start()`` fails unless every first worker starts (process workers);
    otherwise one is enough and the others are retried after the restart delays (Ray nodes).
    """

    def __init__(self, make_pool: Callable[[], WorkerPool], *, all_must_start: bool) -> None:
        self.make_pool = make_pool
        self.all_must_start = all_must_start
        self.pool: WorkerPool | None = None
        self.workers: list[WorkerHandle] = []
        self.restarts = 0  # workers restarted so far
        self.restarting: set[asyncio.Task[None]] = set()  # restarts waiting for their delay
        self._attempts: dict[int, int] = {}  # worker slot -> restarts in a row
        self._next_discover = 0.0
        self._stopping = False

    async def start(self) -> None:
        """Open the pool and start its first workers; raises TransportError (nothing is left
        running then)."""
        pool = self.pool = self.make_pool()
        try:
            self.workers = await pool.open()
        except BaseException:
            self.pool = None
            await pool.close()
            raise
        started = await asyncio.gather(*(w.start() for w in self.workers), return_exceptions=True)
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed and (self.all_must_start or len(failed) == len(started)):
            await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
            self.pool, self.workers = None, []
            await pool.close()
            if isinstance(failed[0], TransportError):
                raise failed[0]
            raise TransportError(f"the workers did not start: {failed[0]}") from failed[0]
        for worker, outcome in zip(self.workers, started, strict=True):
            if isinstance(outcome, BaseException):
                log.error("%s", outcome)
                self._schedule_restart(worker)
        self._next_discover = time.monotonic() + DISCOVER_EVERY_S

    def drain(self, index: int) -> WorkerHandle:
        """Worker ``index`` takes no new sessions; raises KeyError for no such worker."""
        for worker in self.workers:
            if worker.index == index:
                worker.drain()
                log.info("worker %d: draining (%d sessions left)", index, len(worker.sessions))
                return worker
        raise KeyError(index)

    def died(self, worker: WorkerHandle) -> None:
        """``worker`` died (its ``on_died``): restart its slot, unless it was draining."""
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
        self.restarting.add(task)
        task.add_done_callback(self.restarting.discard)

    async def _restart(self, dead: WorkerHandle, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping or self.pool is None:
            return
        try:
            worker = await self.pool.replacement(dead)
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
        self.restarts += 1

    def _replace(self, index: int, worker: WorkerHandle) -> None:
        for i, old in enumerate(self.workers):
            if old.index == index:
                self.workers[i] = worker
                return
        self.workers.append(worker)

    async def tick(self) -> None:
        """Look for new capacity when it is time to (call it periodically)."""
        if self.pool is None or self._stopping or time.monotonic() < self._next_discover:
            return
        self._next_discover = time.monotonic() + DISCOVER_EVERY_S
        try:
            found = await self.pool.discover(self.workers)
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

    async def stop(self, timeout: float = 15.0, reason: str = "server stopping") -> None:
        """Stop every worker (their sessions closed, each peer told ``reason``, sinks finalized)
        and close the pool."""
        self._stopping = True
        for task in list(self.restarting):
            task.cancel()
        await asyncio.gather(
            *(w.stop(timeout, reason) for w in self.workers), return_exceptions=True
        )
        if self.pool is not None:
            await self.pool.close()


__all__ = [
    "DISCOVER_EVERY_S",
    "HEALTHY_AFTER_S",
    "RESTART_FIRST_S",
    "RESTART_MAX_S",
    "Supervisor",
    "restart_delay",
]
