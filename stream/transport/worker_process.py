"""The worker's side of a process worker: a ``SessionHost`` serving requests from a pipe.

The messages, pickled dicts over a ``multiprocessing`` pipe:
front -> worker ``{"op": "offer"|"close"|"status"|"drain", "id": N, ...}``;
worker -> front ``{"id": N, "ok": bool, ...}`` answers, and ``{"event": "ready"|"closed"}``.
A status answer is the host's ``SessionHost.status()`` (its ``metrics`` included) and the
worker's event-loop lag, ``loop_lag_s``.
A worker whose front is gone (the pipe ended) tells each peer so on the data channel (an
``error`` message with ``GONE_NOTICE``), closes its sessions and exits. The front's side is
``process_workers.Worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing.connection
import os
import signal
import sys
import threading
from typing import Any

from aiortc import RTCSessionDescription

from . import control, logs, telemetry
from .host import OfferRefused, PipelineFactory, SessionHost, SinkFactory, loop_lag
from .session import SessionOptions, tell_closing
from .settings import CLOSE_NOTICE_S
from .worker_protocol import GONE_NOTICE, WorkerArgs

log = logging.getLogger("stream.transport")

Connection = multiprocessing.connection.Connection


def worker_main(
    conn: Connection,
    index: int,
    pipeline_factory: PipelineFactory,
    sink_factory: SinkFactory | None,
    options: SessionOptions,
    connect_timeout: float,
    log_level: int,
) -> None:
    """Entry point of a worker process: serve sessions until drained or the front is gone."""
    # Ctrl-C reaches the whole process group; the front decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the front's --log-format (inherited); every line names this worker
    fmt = os.environ.get("REMOTEMEDIA_LOG_FORMAT", "text")
    logs.set_worker(f"worker {index}")
    logs.configure("json" if fmt == "json" else "text", log_level)
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(max(log_level, logging.WARNING))
    args = WorkerArgs(pipeline_factory, sink_factory, options, connect_timeout, log_level)
    try:
        asyncio.run(_serve(conn, args))
    finally:
        telemetry.shutdown()  # export the spans still buffered


def detached_main() -> None:
    """Entry point of a detached worker: ``python -c '...detached_main()' FD``.

    FD is its end of a socket pair; the first message on it is ``worker_main``'s arguments.
    """
    conn = Connection(int(sys.argv[1]))
    args = conn.recv()
    worker_main(conn, *args)


async def _serve(conn: Connection, args: WorkerArgs) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    send_lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with send_lock, contextlib.suppress(OSError, ValueError):
            conn.send(message)

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                loop.call_soon_threadsafe(inbox.put_nowait, None)
                return
            loop.call_soon_threadsafe(inbox.put_nowait, message)

    host = SessionHost(
        args.pipeline_factory,
        args.options,
        connect_timeout=args.connect_timeout,
        sink_factory=args.sink_factory,
        on_closed=lambda sid: send({"event": "closed", "session": sid}),
    )
    threading.Thread(target=read, name="worker-pipe", daemon=True).start()

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.5)
            host.check()

    async def answer(request_id: int, session_id: str, sdp: str) -> None:
        try:
            local = await host.answer(session_id, RTCSessionDescription(sdp=sdp, type="offer"))
        except OfferRefused as exc:
            send({"id": request_id, "ok": False, "status": exc.status, "error": str(exc)})
            return
        send({"id": request_id, "ok": True, "sdp": local.sdp, "type": local.type})

    watchdog = asyncio.create_task(watch(), name="worker watchdog")
    answering: set[asyncio.Task[None]] = set()
    send({"event": "ready", "pid": os.getpid()})
    try:
        while True:
            message = await inbox.get()
            if message is None:
                log.warning("the front is gone: closing %d sessions", len(host.sessions))
                for session in list(host.sessions.values()):
                    session.send(control.error(GONE_NOTICE))
                if host.sessions:
                    await asyncio.sleep(0.2)  # the notices leave before the connections close
                await host.close_all("server gone")
                return
            op, request_id = message.get("op"), int(message.get("id", 0))
            if op == "offer":
                task = asyncio.create_task(
                    answer(request_id, message["session"], message["sdp"]), name="worker answer"
                )
                answering.add(task)
                task.add_done_callback(answering.discard)
            elif op == "close":
                host.close_soon(message["session"], message.get("reason", "closed"))
            elif op == "status":
                lag = await loop_lag()
                send({"id": request_id, "ok": True, **host.status(), "loop_lag_s": lag})
            elif op == "drain":  # the front stops: close everything here, peers told why
                if answering:
                    await asyncio.wait(answering, timeout=10)
                reason = message.get("reason", "server stopping")
                await _close_with_notice(host, reason)
                send({"id": request_id, "ok": True})
                return
            else:
                send({"id": request_id, "ok": False, "status": 500, "error": f"unknown op {op}"})
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


__all__ = ["detached_main", "worker_main"]


async def _close_with_notice(host: SessionHost, reason: str) -> None:
    """Tell every peer here why (as the front tells its own: ``session.tell_closing``), then
    close the sessions."""
    await tell_closing(list(host.sessions.values()), reason, CLOSE_NOTICE_S)
    await host.close_all(reason)
