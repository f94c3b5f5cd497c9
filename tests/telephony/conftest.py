"""Telephony test hosts: a served pipeline with the call routes on one network namespace, callers
on the other (``tests/hosts/netns.py``); they skip, saying why, without root and ``ip netns``.

``call_server(factory, **settings)`` starts a ``WebRTCServer`` with ``add_routes`` on its
application, in a thread on the server host (its own event loop, listening on the server's
address), and stops it after the test; ``caller(coro)`` runs a coroutine on the client host.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "webrtc: needs root and ip netns; runs a server and peers on test hosts"
    )


@pytest.fixture(scope="session")
def hosts() -> Iterator[Any]:
    pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
    from hosts.netns import netns_unavailable, test_hosts

    reason = netns_unavailable()
    if reason:
        pytest.skip(f"no test hosts: {reason}")
    with test_hosts("tp") as made:
        yield made


class CallServer:
    """A WebRTCServer with the telephony routes, on the server host, in a thread of its own."""

    def __init__(self, hosts: Any, factory: Callable[[], Any], settings: Any) -> None:
        from stream.transport.server import WebRTCServer
        from stream.transport.telephony import CALLS_KEY, add_routes

        self.hosts = hosts
        started: queue.Queue[Any] = queue.Queue()

        async def main() -> None:
            server = WebRTCServer(factory, hosts.server_ip, 0)
            add_routes(server.app, server, settings)
            await server.start()
            stop = asyncio.get_running_loop().create_future()
            started.put((asyncio.get_running_loop(), server, stop))
            await stop
            await server.stop()

        def run() -> None:
            try:
                hosts.run_async("server", main, timeout=900)
            except BaseException as exc:  # the test sees it through started
                started.put(exc)

        self.thread = threading.Thread(target=run, name="call server", daemon=True)
        self.thread.start()
        got = started.get(timeout=60)
        if isinstance(got, BaseException):
            raise got
        self.loop, self.server, self._stop = got
        self.calls = self.server.app[CALLS_KEY]
        self.base = f"ws://{hosts.server_ip}:{self.server.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """``coro`` run on the server's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def status(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            return self.calls.status()  # type: ignore[no-any-return]

        return self.call(read())

    def stop(self) -> None:
        if self.thread.is_alive() and not self._stop.done():
            self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self.thread.join(60)


@pytest.fixture
def call_server(hosts: Any) -> Iterator[Callable[..., CallServer]]:
    from stream.transport.telephony import TelephonySettings

    made: list[CallServer] = []

    def start(factory: Callable[[], Any], **settings: Any) -> CallServer:
        made.append(CallServer(hosts, factory, TelephonySettings(**settings)))
        return made[-1]

    yield start
    for server in made:
        server.stop()


@pytest.fixture
def caller(hosts: Any) -> Callable[..., Any]:
    def run(main: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
        return hosts.run_async("client", main, timeout)  # type: ignore[no-any-return]

    return run
