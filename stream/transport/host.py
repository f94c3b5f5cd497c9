"""``SessionHost``: the sessions of one event loop, whether the server's own or a worker's.

It builds a pipeline (and sink) per offer, answers, closes sessions that went silent or never
connected, and counts what could leak. ``WebRTCServer`` uses one in its own process
(``workers=0``); each worker process (``worker_process.py``) runs one of its own.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiortc import RTCSessionDescription

from ..errors import OfferRefused
from ..metrics import PipelineStats
from ..node import Node
from ..pipeline import Pipeline
from .rtp_stats import TransportStats
from .session import Session, SessionOptions, live_peer_connections, live_pipelines
from .tracks import live_tracks

log = logging.getLogger("stream.transport")

PipelineFactory = Callable[[], Pipeline]
SinkFactory = Callable[[str], Node | None]

ANSWER_TIMEOUT_S = 15.0  # applying an offer and gathering candidates; past it, 503
COLLECT_EVERY_S = 1.0  # at most one garbage collection this often, for status counts


def reason_kind(reason: str | None) -> str:
    """A close reason without its particulars (``"server stopping: drain timeout (5 s)
    reached"`` -> ``"server stopping"``), for counting sessions ended by reason."""
    return (reason or "unknown").split(":", 1)[0].strip() or "unknown"


async def loop_lag() -> float:
    """Seconds a callback scheduled now waits for the event loop (what else is ready runs
    first): the loop's lag, measured once."""
    t0 = time.perf_counter()
    await asyncio.sleep(0)
    return time.perf_counter() - t0


class SessionHost:
    """Sessions on this event loop, one pipeline each from ``pipeline_factory()``.

    ``on_closed(session_id)`` is called when a session has closed (for any reason).
    """

    def __init__(
        self,
        pipeline_factory: PipelineFactory,
        options: SessionOptions,
        *,
        connect_timeout: float = 20.0,
        sink_factory: SinkFactory | None = None,
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self.pipeline_factory = pipeline_factory
        self.options = options
        self.connect_timeout = connect_timeout
        self.sink_factory = sink_factory
        self.sessions: dict[str, Session] = {}
        self._on_closed = on_closed
        self._collected_at = -COLLECT_EVERY_S
        # figures of the sessions that ended here, so totals stay monotonic as sessions go;
        # ``instance`` tells a reader when a restarted worker's host started them from zero
        self.instance = uuid.uuid4().hex[:12]
        self.started = 0
        self.ended_by_reason: dict[str, int] = {}
        self.ended_stats: PipelineStats | None = None
        self.ended_transport: TransportStats | None = None

    async def answer(self, session_id: str, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Start a session for ``offer``; raises OfferRefused (400 bad offer, 503 not answered
        within ``ANSWER_TIMEOUT_S``, 500 otherwise)."""
        try:
            pipeline = self.pipeline_factory()
        except Exception as exc:
            log.exception("pipeline factory failed")
            raise OfferRefused(500, f"cannot build the pipeline: {exc}") from exc
        sink = self.sink_factory(session_id) if self.sink_factory else None
        session = Session(session_id, pipeline, self.options, sink=sink, on_closed=self._closed)
        self.sessions[session_id] = session
        self.started += 1
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                return await session.accept(offer)
        except TimeoutError as exc:
            await session.close("not answered in time")
            raise OfferRefused(
                503, f"the offer could not be answered in {ANSWER_TIMEOUT_S:g} s"
            ) from exc
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, AssertionError) as exc:
            # aiortc's SDP parser raises these for descriptions it cannot read
            await session.close("bad offer")
            raise OfferRefused(400, f"malformed offer: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            await session.close("offer failed")
            log.exception("session %s: answering failed", session_id)
            raise OfferRefused(500, f"cannot answer the offer: {exc}") from exc

    def _closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        kind = reason_kind(session.close_reason)
        self.ended_by_reason[kind] = self.ended_by_reason.get(kind, 0) + 1
        try:
            stats = session.pipeline_stats()
        except Exception:  # figures must not stop the close; log and go on without them
            log.exception("session %s: cannot read its pipeline figures", session.id)
        else:
            ended = self.ended_stats
            self.ended_stats = stats if ended is None else ended.merge(stats)
        transport = session.transport_stats().ended()
        done = self.ended_transport
        self.ended_transport = transport if done is None else done.merge(transport)
        if self._on_closed is not None:
            self._on_closed(session.id)

    def close_soon(self, session_id: str, reason: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            session.close_soon(reason)

    def check(self) -> None:
        """Close sessions whose peer went silent or never connected (call it periodically)."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.state == "connecting" and now - session.created > self.connect_timeout:
                session.close_soon("never connected")
            elif session.state == "connected" and (
                session.idle_seconds > session.options.idle_timeout
            ):
                session.close_soon(f"no media for {session.options.idle_timeout:g} s")

    async def close_all(self, reason: str, timeout: float = 10.0) -> None:
        """Close every session concurrently (sinks finalized)."""
        closing = [s.close(reason) for s in list(self.sessions.values())]
        if closing:
            async with asyncio.timeout(timeout):
                done = await asyncio.gather(*closing, return_exceptions=True)
            for result in done:
                if isinstance(result, BaseException):
                    log.error("closing a session failed: %s", result)

    def status(self) -> dict[str, Any]:
        """Live sessions with their counters, and counts that show leaks.

        Objects in reference cycles (a closed peer connection, its tracks) stay counted until
        the garbage collector runs. A full collection stalls the loop and with it every session's
        media, so it runs here only while no session is served, at most once a
        ``COLLECT_EVERY_S``: the counts are exact when leaks are looked for (no sessions), and a
        status request costs no collection while media flows.
        """
        now = time.monotonic()
        if not self.sessions and now - self._collected_at >= COLLECT_EVERY_S:
            self._collected_at = now
            gc.collect()
        return {
            "sessions": len(self.sessions),
            "counts": process_counts(),
            "list": [s.status() for s in self.sessions.values()],
            "metrics": self.metrics(),
        }

    def metrics(self) -> dict[str, Any]:
        """Totals over the sessions that ended here (JSON-ready): ``instance`` (new for each
        host: totals start from zero), ``started``, ``ended`` by reason (``reason_kind``),
        ``ended_stats`` (their ``PipelineStats`` added up, or None) and ``ended_transport``
        (their ``TransportStats`` added up, or None)."""
        ended = self.ended_stats
        transport = self.ended_transport
        return {
            "instance": self.instance,
            "started": self.started,
            "ended": dict(self.ended_by_reason),
            "ended_stats": None if ended is None else ended.to_dict(),
            "ended_transport": None if transport is None else transport.to_dict(),
        }


def process_counts() -> dict[str, Any]:
    """Tasks, threads, live pipelines, tracks and peer connections of this process."""
    return {
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        # aiortc's per-receiver decoder threads ("audio-decoder"); the loop's executor threads
        # ("asyncio_N") are pooled and stay, and a worker's pipe reader is its own: not counted
        "media_threads": sum(
            not t.name.startswith(("asyncio_", "MainThread", "worker-pipe"))
            for t in threading.enumerate()
        ),
        "thread_names": sorted(t.name for t in threading.enumerate()),
        "pipelines": len(live_pipelines),
        "tracks": len(live_tracks),
        "peer_connections": len(live_peer_connections),
    }


__all__ = [
    "ANSWER_TIMEOUT_S",
    "COLLECT_EVERY_S",
    "OfferRefused",
    "PipelineFactory",
    "SessionHost",
    "SinkFactory",
    "loop_lag",
    "process_counts",
    "reason_kind",
]
