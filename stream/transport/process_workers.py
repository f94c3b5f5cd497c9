"""Process workers: sessions in worker processes on this machine (``WebRTCServer(workers=N)``).

``Worker`` is the front's handle on one worker process (``worker_process.worker_main`` runs
in it): requests over a pipe with answers, the sessions placed there, its CPU use.
``ProcessWorkerPool`` makes N of them in fixed slots. A worker whose pipe ends (it died) has
all its sessions dropped by the front.

A *detached* worker (``Worker(..., detached=True)``) is not a child of the front process but
of no one (started through a launcher that exits), so it outlives a front that is killed
together with its children (a Ray actor is), and can say goodbye to its peers.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TransportError
from .worker_process import worker_main
from .worker_protocol import OnClosed, OnDied, WorkerArgs, WorkerHandle

log = logging.getLogger("stream.transport")

Connection = multiprocessing.connection.Connection


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
_DETACHED_ENTRY = "from stream.transport.worker_process import detached_main; detached_main()"


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
class Worker(WorkerHandle):
    """One worker process as the front sees it: requests with answers, sessions placed on it.

    ``args``: the ``WorkerArgs`` it is started with. ``detached``: start it through the
    launcher (see the module docstring) rather than as a child.
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
        super().__init__(index, on_closed, on_died)
        self.detached = detached
        self._args = WorkerArgs(*args)
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
    def cpu(self) -> float:
        """Cores the process kept busy over the last second or so."""
        return self._cpu.sample(self.pid if self.alive else None)

    def _where(self) -> dict[str, Any]:
        return {"pid": self.pid}

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
                reason = f"worker {self.index} (pid {self.pid}) ended"
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
                    loop.call_soon_threadsafe(self._lost, reason)
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dispatch, message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
        elif event == "closed":
            self._session_closed(message["session"])
        else:
            future = self._waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)

    def _teardown(self, reason: str) -> None:
        error = TransportError(reason)
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

    async def _offer(self, session_id: str, sdp: str, timeout: float) -> dict[str, Any]:
        return await self.request({"op": "offer", "session": session_id, "sdp": sdp}, timeout)

    def close_session(self, session_id: str, reason: str = "closed") -> None:
        with contextlib.suppress(TransportError):
            self._send({"op": "close", "session": session_id, "reason": reason})

    async def _status(self, timeout: float) -> dict[str, Any]:
        return await self.request({"op": "status"}, timeout)

    async def _stop_remote(self, reason: str, timeout: float) -> None:
        await self.request({"op": "drain", "reason": reason}, timeout)

    async def _release(self) -> None:
        process = self.process
        if process is not None:
            await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                self.kill()

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
    "CpuMeter",
    "ProcessWorkerPool",
    "Worker",
    "cpu_seconds",
    "pid_alive",
]
