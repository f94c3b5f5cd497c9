"""Guards of the signaling server's HTTP side: deadlines, rate limits, one-line request logs.

Whatever a client does on a connection (trickle headers, send nothing, keep a connection idle,
not read its answer, hammer the admin endpoints, send unparsable requests) costs the server a
bounded amount of time, memory and log, and never a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("stream.transport")


class ConnectionDeadline:
    """Close connections that deliver no complete request within ``timeout_s`` seconds.

    Counted from a connection's opening, or from the end of its previous request: trickled
    headers, silent connections, idle keep-alive and clients that do not read their response
    all end. A connection inside a handler is exempt (its request arrived; the handler's own
    deadlines apply). One sweep enforces it and logs one line per connection, whatever
    aiohttp's own idle timer does in a given release.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.waiting_since: dict[web.RequestHandler, float] = {}
        self.in_handler: set[web.RequestHandler] = set()
        self.served: set[web.RequestHandler] = set()  # connections that completed a request

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Mark the connection as inside a handler: the deadline is off until it returns."""
        conn = request.protocol
        self.in_handler.add(conn)
        try:
            return await handler(request)
        finally:
            self.in_handler.discard(conn)
            self.served.add(conn)
            # from here the response goes out and the next request may come: one deadline
            self.waiting_since[conn] = time.monotonic()

    def check(self, connections: list[web.RequestHandler], now: float | None = None) -> None:
        """Close the connections past the deadline, forget those that are gone."""
        now = time.monotonic() if now is None else now
        open_now = set(connections)
        for gone in self.waiting_since.keys() - open_now:
            del self.waiting_since[gone]
        self.served &= open_now
        for conn in connections:
            if conn in self.in_handler:
                continue
            since = self.waiting_since.setdefault(conn, now)
            if now - since <= self.timeout_s:
                continue
            del self.waiting_since[conn]
            peer = conn.transport.get_extra_info("peername") if conn.transport else None
            where = peer[0] if isinstance(peer, tuple) else "?"
            if conn in self.served:  # a browser's keep-alive connection, most likely
                log.debug("closed an idle connection from %s", where)
            else:
                log.info(
                    "closed a connection from %s: no complete request in %g s",
                    where,
                    self.timeout_s,
                )
            conn.force_close()

    async def sweep(self, runner: web.AppRunner, every_s: float) -> None:
        """Check the runner's connections every ``every_s`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(every_s)
            if runner.server is not None:
                self.check(list(runner.server.connections))


class RateLimit:
    """Token buckets per client: ``rate_per_s`` requests a second, ``burst`` at once.

    At most ``max_clients`` buckets are kept (least recently used dropped first), so a client
    that comes from many addresses cannot grow it without bound.
    """

    def __init__(self, rate_per_s: float, burst: float, max_clients: int = 4096) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, burst)
        self.max_clients = max_clients
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def wait(self, client: str, now: float | None = None) -> float:
        """Take a token for ``client``: 0.0 when it had one, else seconds until it will."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate_per_s)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s
        self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short log line (a request's bytes can hold newlines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


class RequestLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger: a malformed or cut-off request is one INFO line.

    aiohttp logs every request it cannot parse with a traceback at ERROR; from the network
    that is noise a client can make at will. An error in a handler keeps its traceback.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError | ConnectionError | asyncio.IncompleteReadError):
            self.logger.info("%s: %s", str(msg) % args if args else msg, one_line(exc))
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)
