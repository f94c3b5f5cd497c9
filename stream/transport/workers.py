"""Session workers for ``WebRTCServer``: sessions spread over event loops in other processes.

The front (the server's own process) keeps signaling, limits and the page; each worker runs a
``SessionHost`` on its own event loop, so its peer connections, codecs and pipelines use another
core (or another machine). Media flows between the peer and the worker directly (the worker's
own address and UDP ports). Two kinds of worker stand behind one small interface,
``WorkerHandle``, and a ``WorkerPool`` makes them:

- ``Worker`` / ``ProcessWorkerPool`` here: ``spawn``-ed processes on this machine
  (``WebRTCServer(workers=N)``);
- ``stream.ray.workers``: a Ray actor per cluster node, each driving a detached ``Worker`` on
  its node (``WebRTCServer(ray_address=...)``).

The interface: ``place(session_id, sdp) -> answer`` (raises ``OfferRefused``),
``close_session(session_id)``, ``status() -> dict`` (sessions, counts, the session list),
``drain()`` (take no new sessions; the ones there run to their end), ``stop()`` (close every
session, sinks finalized, and end the worker), ``describe()`` (what ``/status`` shows of it),
plus ``load`` (sessions placed or being placed), ``cpu`` (cores busy lately), ``alive``,
``sessions``. A worker calls ``on_closed(worker, session_id)`` when a session there ended and
``on_died(worker)`` once when it died (not when stopped); the front restarts a dead worker after
``restart_delay(attempt)`` seconds (1, 2, 4 ... capped at 30; the count resets once a worker
stayed up for ``HEALTHY_AFTER_S``).

The protocol over a ``multiprocessing`` pipe, pickled dicts:
front -> worker ``{"op": "offer"|"close"|"status"|"drain", "id": N, ...}``;
worker -> front ``{"id": N, "ok": bool, ...}`` answers, and ``{"event": "ready"|"closed"}``.
A worker whose pipe ends (it died) has all its sessions dropped by the front. A worker whose
front is gone tells each peer so on the data channel (an ``error`` message), closes its sessions
and exits. A *detached* worker (``Worker(..., detached=True)``) is not a child of the front
process but of no one (started through a launcher that exits), so it outlives a front that is
killed together with its children (a Ray actor is), and can say goodbye to its peers.

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
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiortc import RTCSessionDescription

from ..errors import TransportError
from . import control
from .host import OfferRefused, PipelineFactory, SessionHost, SinkFactory
from .session import SessionOptions

log = logging.getLogger("stream.transport")

Connection = multiprocessing.connection.Connection

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a worker up this long died of something new: restart at once again
GONE_NOTICE = "the worker serving this session stopped; the session ends"


def restart_delay(attempt: int) -> float:
    """Seconds to wait before restart ``attempt`` (0, 1, ...) of one worker slot: 1, 2, 4 ... 30."""
    return min(RESTART_FIRST_S * 2.0 ** max(0, attempt), RESTART_MAX_S)


# -- the interface the front uses
class WorkerHandle(Protocol):
    """One worker as the front sees it (see the module docstring)."""

    index: int
    sessions: set[str]
    alive: bool
    draining: bool
    started_at: float

    @property
    def load(self) -> int: ...

    @property
    def cpu(self) -> float: ...

    async def start(self, timeout: float = ...) -> None: ...

    async def place(self, session_id: str, sdp: str, timeout: float = ...) -> dict[str, Any]: ...

    def close_session(self, session_id: str, reason: str = ...) -> None: ...

    async def status(self, timeout: float = ...) -> dict[str, Any]: ...

    def drain(self) -> None: ...

    async def stop(self, timeout: float = ...) -> None: ...

    def describe(self) -> dict[str, Any]: ...


OnClosed = Callable[[WorkerHandle, str], None]
OnDied = Callable[[WorkerHandle], None]


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


# -- CPU use of a process, for placement
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads); None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores a process kept busy, over at least ``window_s`` seconds (0.0 where unreadable)."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self.cores = 0.0
        self._pid: int | None = None
        self._last: tuple[float, float] | None = None

    def sample(self, pid: int | None) -> float:
        if pid != self._pid:
            self._pid, self._last, self.cores = pid, None, 0.0
        if pid is None:
            return self.cores
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.window_s:
            return self.cores
        used = cpu_seconds(pid)
        if used is None:
            return self.cores
        if self._last is not None:
            self.cores = round(max(0.0, used - self._last[1]) / (now - self._last[0]), 3)
        self._last = (now, used)
        return self.cores


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


def detached_main() -> None:
    """Entry point of a detached worker: ``python -c '...detached_main()' FD``.

    FD is its end of a socket pair; the first message on it is ``worker_main``'s arguments.
    """
    conn = Connection(int(sys.argv[1]))
    args = conn.recv()
    worker_main(conn, *args)


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


# -- a detached worker process: no one's child
# The launcher starts the worker in a session of its own, prints its pid and exits, so the worker
# is adopted by init (or a subreaper): whoever kills the front's children does not reach it.
_LAUNCHER = (
    "import subprocess, sys\n"
    "fd = int(sys.argv[1])\n"
    "child = subprocess.Popen(sys.argv[2:], pass_fds=(fd,), start_new_session=True,\n"
    "                         stdin=subprocess.DEVNULL, stdout=2)\n"
    "print(child.pid, flush=True)\n"
)
_DETACHED_ENTRY = "from stream.transport.workers import detached_main; detached_main()"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


class _Detached:
    """A detached worker process, as far as ``multiprocessing.Process`` is used here."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def is_alive(self) -> bool:
        return pid_alive(self.pid)

    def join(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)


def _launch_detached(child: Connection, timeout: float = 30.0) -> _Detached:
    fd = child.fileno()
    argv = [sys.executable, "-c", _LAUNCHER, str(fd), sys.executable, "-c", _DETACHED_ENTRY]
    done = subprocess.run(
        [*argv, str(fd)], pass_fds=(fd,), stdout=subprocess.PIPE, timeout=timeout, check=True
    )
    return _Detached(int(done.stdout.split()[0]))


# -- the front's handle on one worker process
class Worker:
    """One worker process as the front sees it: requests with answers, sessions placed on it.

    ``args``: ``worker_main``'s arguments after ``conn`` and ``index``. ``detached``: start it
    through the launcher (see the module docstring) rather than as a child.
    """

    kind = "process"

    def __init__(
        self,
        index: int,
        args: tuple[Any, ...],
        on_closed: OnClosed,
        on_died: OnDied,
        *,
        detached: bool = False,
    ) -> None:
        self.index = index
        self.sessions: set[str] = set()
        self.pending = 0  # offers being placed here
        self.alive = False
        self.draining = False  # takes no new sessions
        self.stopping = False  # being stopped: its end is not a death
        self.started_at = 0.0
        self.detached = detached
        self._args = args
        self._on_closed = on_closed
        self._on_died = on_died
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cpu = CpuMeter()
        self.process: Any = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def load(self) -> int:
        return len(self.sessions) + self.pending

    @property
    def cpu(self) -> float:
        """Cores the process kept busy over the last second or so."""
        return self._cpu.sample(self.pid if self.alive else None)

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "pid": self.pid,
            "alive": self.alive,
            "draining": self.draining,
            "sessions": len(self.sessions),
            "cpu": self.cpu,
        }

    async def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it serves; raises TransportError when it does not."""
        self._loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        front, child = ctx.Pipe()
        self._ready = self._loop.create_future()
        if self.detached:
            try:
                self.process = await asyncio.to_thread(_launch_detached, child)
                front.send((self.index, *self._args))
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                front.close()
                child.close()
                raise TransportError(f"worker {self.index} did not start: {exc}") from exc
            except Exception as exc:  # the factories did not pickle
                front.close()
                child.close()
                self.kill()
                raise TransportError(f"worker {self.index}: cannot send settings: {exc}") from exc
        else:
            self.process = ctx.Process(
                target=worker_main,
                args=(child, self.index, *self._args),
                name=f"remotemedia-worker-{self.index}",
                daemon=True,
            )
            self.process.start()
        child.close()  # the front keeps only its end, so the worker's death ends the pipe
        self._conn = front
        threading.Thread(
            target=self._read, args=(front,), name=f"worker-pipe-{self.index}", daemon=True
        ).start()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._ready)
        except (TimeoutError, TransportError) as exc:
            self.kill()
            raise TransportError(f"worker {self.index} did not start: {exc}") from exc
        self.alive = True
        self.started_at = time.monotonic()
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
        if self.process is not None and not self.detached:
            self.process.join(1)
        if was_alive and not self.stopping:
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
            async with asyncio.timeout(timeout):
                return await future
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

    def drain(self) -> None:
        """Take no new sessions; the ones here run to their end."""
        self.draining = True

    async def stop(self, timeout: float = 15.0, reason: str = "server stopping") -> None:
        """Close every session there (sinks finalized), then end the process (killed if stuck)."""
        self.stopping = True
        if self.alive:
            try:
                await self.request({"op": "drain", "reason": reason}, timeout)
            except TransportError as exc:
                log.error("worker %d: stop failed: %s", self.index, exc)
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


class ProcessWorkerPool:
    """``count`` worker processes on this machine, in fixed slots 0..count-1."""

    kind = "process"

    def __init__(
        self, count: int, args: tuple[Any, ...], on_closed: OnClosed, on_died: OnDied
    ) -> None:
        self.count = count
        self.args = args
        self.on_closed = on_closed
        self.on_died = on_died

    def _make(self, index: int) -> Worker:
        return Worker(index, self.args, self.on_closed, self.on_died)

    async def open(self) -> list[WorkerHandle]:
        return [self._make(i) for i in range(self.count)]

    async def replacement(self, dead: WorkerHandle) -> WorkerHandle | None:
        return self._make(dead.index)

    async def discover(self, known: Sequence[WorkerHandle]) -> list[WorkerHandle]:
        return []

    async def close(self) -> None:
        return None


__all__ = [
    "GONE_NOTICE",
    "CpuMeter",
    "ProcessWorkerPool",
    "Worker",
    "WorkerHandle",
    "WorkerPool",
    "cpu_seconds",
    "detached_main",
    "pid_alive",
    "restart_delay",
    "worker_main",
]
