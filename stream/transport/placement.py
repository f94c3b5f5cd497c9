"""Placement: which worker a new session goes to, and which worker each session is on.

Each new session goes to the live worker with the fewest sessions (offers being placed count),
then the least CPU, that is not draining and is under the per-worker cap; when that worker fails
the offer, the next one is tried. A session is remembered until its worker reports its end or
dies, so the server's session count (``max_sessions``) follows the workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import TransportError
from .host import OfferRefused
from .worker_protocol import WorkerHandle

log = logging.getLogger("stream.transport")


def candidates(workers: Sequence[WorkerHandle], cap: int | None) -> list[WorkerHandle]:
    """Workers that may take a session, best first: fewest sessions, then least CPU.

    ``cap``: most sessions per worker (None: no cap).
    """
    ready = [w for w in workers if w.alive and not w.draining and (cap is None or w.load < cap)]
    return sorted(ready, key=lambda w: (w.load, w.cpu, w.index))


class Placement:
    """The sessions placed on workers: ``placed`` maps a session id to its worker."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.placed: dict[str, WorkerHandle] = {}

    async def place(
        self, workers: Sequence[WorkerHandle], session_id: str, sdp: str
    ) -> tuple[str, str]:
        """Start the session on the best worker (the next one if that one fails): (sdp, type).

        Raises OfferRefused: the worker's own refusal, or 503 when no worker could take it.
        """
        failures: list[str] = []
        for worker in candidates(workers, self.cap):
            if not worker.alive:  # died while an earlier one was tried
                continue
            try:
                reply = await worker.place(session_id, sdp)
            except OfferRefused:
                raise
            except TransportError as exc:
                log.warning("session %s: worker %d failed: %s", session_id, worker.index, exc)
                failures.append(f"worker {worker.index}: {exc}")
                continue
            if session_id in worker.sessions:  # not when it closed again already
                self.placed[session_id] = worker
            where = worker.describe()
            node = f", node {where['node_ip']}" if where.get("node_ip") else ""
            log.info(
                "session %s: on worker %d (pid %s%s)", session_id, worker.index, where["pid"], node
            )
            return str(reply["sdp"]), str(reply["type"])
        if failures:
            raise OfferRefused(503, "the workers failed: " + "; ".join(failures))
        live = [w for w in workers if w.alive]
        if not live:
            raise OfferRefused(503, "no worker is running")
        draining = sum(w.draining for w in live)
        raise OfferRefused(
            503,
            f"no worker can take a session: {len(live)} running, {draining} draining, the "
            f"others at their cap of {self.cap} sessions",
        )

    def closed(self, worker: WorkerHandle, session_id: str) -> None:
        """A session ended on ``worker`` (its ``on_closed``)."""
        self.placed.pop(session_id, None)

    def lost(self, worker: WorkerHandle) -> None:
        """``worker`` died: its sessions are gone with it."""
        for session_id in list(worker.sessions):
            self.placed.pop(session_id, None)


__all__ = ["Placement", "candidates"]
