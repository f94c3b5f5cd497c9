"""The one place that imports Ray, lazily: nothing of it loads until a Ray feature is used.

Ray is an optional dependency (``pip install remotemedia[ray]``); ``require_ray()`` turns its
absence into ``BackendUnavailable`` saying so. The module is typed ``Any`` on purpose: Ray's
hints are partial (decorated actor classes have no static type), and every call into it sits
behind the few functions here, in ``stage.py`` and in ``session_workers.py``. Ray's own
failures become ``TransportError`` in one place, ``transport_errors()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import BackendUnavailable, TransportError

INSTALL_HINT = "pip install remotemedia[ray] (or pip install ray)"


def require_ray() -> Any:
    """The ``ray`` module; raises BackendUnavailable with the install command when missing."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise BackendUnavailable(f"Ray is not installed: {INSTALL_HINT}") from exc


def ray_available() -> bool:
    """Whether Ray can be imported here (imports it when it can)."""
    try:
        require_ray()
    except BackendUnavailable:
        return False
    return True


def connect(address: str | None = None) -> Any:
    """Join a Ray cluster once per process; returns the ``ray`` module.

    ``address``: ``"host:port"`` of a head started with ``ray start --head``, ``"auto"`` (the
    cluster this machine belongs to), ``"local"`` (start one in this process), or None: Ray's own
    default (``RAY_ADDRESS``, else a cluster running here, else a new local one). Does nothing
    when this process is already connected.
    """
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if address is not None:
            kwargs["address"] = address
        ray.init(**kwargs)
    return ray


def ray_errors() -> tuple[type[BaseException], ...]:
    """Ray's own failures (dead actor, lost object, system error): transport errors to us."""
    ray = require_ray()
    return (ray.exceptions.RayError,)


@contextlib.contextmanager
def transport_errors(who: str) -> Iterator[None]:
    """Ray's own failures in the block raised as ``TransportError("{who} failed (Type): ...")``
    with the first line of Ray's message (its tracebacks run to pages), chained from it."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, ray_errors()):
            raise
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise TransportError(f"{who} failed ({type(exc).__name__}): {reason}") from exc


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


async def join(address: str, timeout: float) -> bool:
    """Join the cluster at ``address`` (as ``connect``; ``"auto"``: Ray's own default) without
    blocking the event loop; True when this call joined it (this process was in none).

    Raises TransportError when the head cannot be reached or Ray does not join in ``timeout``.
    """
    ray = require_ray()
    was_connected = bool(ray.is_initialized())
    target = None if address == "auto" else address
    if target is not None and target != "local" and not was_connected:
        await asyncio.to_thread(_reachable, target)
    try:
        await _in_daemon_thread(connect, target, timeout=timeout)
    except TimeoutError:
        raise TransportError(
            f"cannot join the Ray cluster at {address}: no answer in {timeout:g} s"
        ) from None
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise TransportError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return not was_connected


__all__ = [
    "INSTALL_HINT",
    "connect",
    "join",
    "ray_available",
    "ray_errors",
    "require_ray",
    "transport_errors",
]
