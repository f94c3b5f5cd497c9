"""Worker processes for ``WebRTCServer(workers=N)``: sessions spread over N event loops.

The front (the server's own process) keeps signaling, limits and the page; each worker is a
``spawn``-ed process running a ``SessionHost`` on its own event loop, so its peer connections,
codecs and pipelines use another core. Media flows between the peer and the worker directly
(same address, the worker's own UDP ports). The interface is small on purpose, so other kinds of
worker (a Ray actor) can stand in later:

- ``place(session_id, sdp) -> answer sdp`` (raises ``OfferRefused``),
- ``close_session(session_id)``,
- ``status() -> dict`` (sessions, counts, the session list),
- ``drain()``: close every session (sinks finalized) and exit.

The protocol over a ``multiprocessing`` pipe, pickled dicts:
front -> worker ``{"op": "offer"|"close"|"status"|"drain", "id": N, ...}``;
worker -> front ``{"id": N, "ok": bool, ...}`` answers, and ``{"event": "ready"|"closed"}``.
A worker whose pipe ends (it died) has all its sessions dropped by the front; a worker whose front
is gone closes its sessions and exits.

What the worker gets is pickled: the pipeline factory and the sink factory must be picklable
(a module-level function or class instance, not a lambda or closure), and importable in a fresh
interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from aiortc import RTCSessionDescription

from ..errors import TransportError
from .host import OfferRefused, PipelineFactory, SessionHost, SinkFactory
from .session import SessionOptions

log = logging.getLogger("stream.transport")

Connection = multiprocessing.connection.Connection


# -- the worker process
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
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s worker {index}: %(name)s: %(message)s"
    )
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(max(log_level, logging.WARNING))
    asyncio.run(_serve_worker(conn, pipeline_factory, sink_factory, options, connect_timeout))


async def _serve_worker(
    conn: Connection,
    pipeline_factory: PipelineFactory,
    sink_factory: SinkFactory | None,
    options: SessionOptions,
    connect_timeout: float,
) -> None:
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
        pipeline_factory,
        options,
        connect_timeout=connect_timeout,
        sink_factory=sink_factory,
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
                send({"id": request_id, "ok": True, **host.status()})
            elif op == "drain":
                if answering:
                    await asyncio.wait(answering, timeout=10)
                await host.close_all(message.get("reason", "server stopping"))
                send({"id": request_id, "ok": True})
                return
            else:
                send({"id": request_id, "ok": False, "status": 500, "error": f"unknown op {op}"})
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


# -- the front's handle on one worker
class Worker:
    """One worker process as the front sees it: requests with answers, sessions placed on it.

    ``on_closed(worker, session_id)`` when a session there ended; ``on_died(worker)`` once, when
    its pipe ended without a drain (the process died).
    """

    def __init__(
        self,
        index: int,
        args: tuple[Any, ...],
        on_closed: Callable[[Worker, str], None],
        on_died: Callable[[Worker], None],
    ) -> None:
        self.index = index
        self.sessions: set[str] = set()
        self.pending = 0  # offers being placed here
        self.alive = False
        self.draining = False
        self._args = args
        self._on_closed = on_closed
        self._on_died = on_died
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.process: Any = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def load(self) -> int:
        return len(self.sessions) + self.pending

    async def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it serves; raises TransportError when it does not."""
        self._loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        front, child = ctx.Pipe()
        self.process = ctx.Process(
            target=worker_main,
            args=(child, self.index, *self._args),
            name=f"remotemedia-worker-{self.index}",
            daemon=True,
        )
        self._ready = self._loop.create_future()
        self.process.start()
        child.close()  # the front keeps only its end, so the worker's death ends the pipe
        self._conn = front
        threading.Thread(
            target=self._read, args=(front,), name=f"worker-pipe-{self.index}", daemon=True
        ).start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except (TimeoutError, TransportError) as exc:
            self.kill()
            raise TransportError(f"worker {self.index} did not start: {exc}") from exc
        self.alive = True
        log.info("worker %d: pid %s", self.index, self.pid)

    def _read(self, conn: Connection) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
                    loop.call_soon_threadsafe(self._ended)
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dispatch, message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
        elif event == "closed":
            session_id = message["session"]
            self.sessions.discard(session_id)
            self._on_closed(self, session_id)
        else:
            future = self._waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)

    def _ended(self) -> None:
        was_alive = self.alive
        self.alive = False
        error = TransportError(f"worker {self.index} (pid {self.pid}) ended")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.process is not None:
            self.process.join(1)
        if was_alive and not self.draining:
            lost = len(self.sessions)
            log.error("worker %d (pid %s) died: %d sessions lost", self.index, self.pid, lost)
            self._on_died(self)
        self.sessions.clear()

    def _send(self, message: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None or not self.alive:
            raise TransportError(f"worker {self.index} is not running")
        try:
            with self._send_lock:
                conn.send(message)
        except (OSError, ValueError) as exc:
            raise TransportError(f"worker {self.index}: {exc}") from exc

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and wait for its answer; raises TransportError when the worker fails."""
        assert self._loop is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[request_id] = future
        try:
            self._send({**message, "id": request_id})
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise TransportError(f"worker {self.index} did not answer in {timeout:g} s") from exc
        finally:
            self._waiting.pop(request_id, None)

    # -- the worker interface
    async def place(self, session_id: str, sdp: str, timeout: float = 30.0) -> dict[str, Any]:
        """Start a session here: the answer ``{sdp, type}``; raises OfferRefused/TransportError."""
        self.pending += 1
        try:
            reply = await self.request({"op": "offer", "session": session_id, "sdp": sdp}, timeout)
        finally:
            self.pending -= 1
        if not reply["ok"]:
            raise OfferRefused(int(reply.get("status", 500)), str(reply.get("error")))
        self.sessions.add(session_id)
        return {"sdp": reply["sdp"], "type": reply["type"]}

    def close_session(self, session_id: str, reason: str = "closed") -> None:
        with contextlib.suppress(TransportError):
            self._send({"op": "close", "session": session_id, "reason": reason})

    async def status(self, timeout: float = 5.0) -> dict[str, Any]:
        reply = await self.request({"op": "status"}, timeout)
        reply.pop("id", None)
        reply.pop("ok", None)
        return reply

    async def drain(self, timeout: float = 15.0) -> None:
        """Close every session there (sinks finalized), then end the process (killed if stuck)."""
        self.draining = True
        if self.alive:
            try:
                await self.request({"op": "drain"}, timeout)
            except TransportError as exc:
                log.error("worker %d: drain failed: %s", self.index, exc)
        process = self.process
        if process is not None:
            await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                self.kill()
        self.alive = False

    def kill(self) -> None:
        process = self.process
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)


__all__ = ["Worker", "worker_main"]
