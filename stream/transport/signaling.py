"""Signaling: the HTTP side of a ``WebRTCServer`` (aiohttp): routes, tokens, limits, the page.

Routes:

- ``GET /``: the browser page (``static/index.html``), ``GET /static/...``: its script and style.
- ``POST /offer``: ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "session"}``.
  401 without the bearer token (when one is set), 413 for an offer over ``max_offer_bytes``, 408
  for a body not received within ``body_timeout``, 400 for a malformed offer, 503 at
  ``max_sessions`` or while draining or shutting down (with ``Retry-After``).
- ``GET /config``: what a peer needs before its offer: ``{"iceServers": [...]}`` (W3C
  ``RTCIceServer`` dictionaries; TURN REST credentials made for this request). Needs the offer
  token when one is set (it hands out TURN credentials).
- ``GET /healthz``: 200 ``{"status": "alive"}`` while the process serves HTTP.
- ``GET /readyz``: 200 ``{"status": "ready"}`` when an offer would be taken now; 503
  ``{"status": "not ready", "reason"}`` while draining or stopping, with no worker up, or at
  ``max_sessions``. Neither probe needs a token: they tell no more than an offer's answer would.
- ``GET /metrics``: Prometheus exposition (``prom.metrics_response``); 501 when
  ``prometheus_client`` is not installed.
- ``GET /status``: sessions and leak counts (see ``WebRTCServer.gather_status``).
- ``POST /workers/{index}/drain``: that worker takes no new sessions; the ones there run to
  their end. 404 for no such worker.

``/status``, ``/metrics`` and drain are the admin endpoints: they need ``admin_token`` when one
is set, else ``token`` when that is set, and they share a rate limit per client address (429
past it).
Every HTTP phase has a deadline: a connection that has not delivered a complete request line and
headers within ``header_timeout`` seconds (from its opening, or from the end of its previous
request) is closed, so are idle keep-alive connections and clients that do not read their
response; an offer's body must arrive within ``body_timeout``; answering has its own deadline
(``host.ANSWER_TIMEOUT_S``). A malformed request is logged as one line, not a traceback. Every
refusal is a JSON ``{"error": ...}``, counted by status in ``rejected``.

What is done with an offer is the server's (``Service``): this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import json
import logging
import math
import ssl
from typing import Any, Protocol

from aiohttp import web
from aiohttp.log import server_logger
from aiortc import RTCSessionDescription
from aiortc import sdp as sdp_module

from ..errors import TransportError
from .host import OfferRefused
from .http_guard import ConnectionDeadline, RateLimit, RequestLog, one_line
from .ice import for_peer
from .settings import STATUS_BURST_S, ServerSettings
from .worker_protocol import WorkerHandle

log = logging.getLogger("stream.transport")

SWEEP_EVERY_S = 0.25  # how often connections are checked against the header deadline
DRAIN_RETRY_AFTER_S = 5  # Retry-After on offers refused while draining or stopping


class Service(Protocol):
    """What the HTTP side asks of the server behind it."""

    @property
    def stopping(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    def ready(self) -> tuple[bool, str]:
        """Whether an offer would be taken now, and the reason when not."""
        ...

    async def offer(self, offer: RTCSessionDescription) -> tuple[str, str, str]:
        """Start a session: ``(session id, answer sdp, answer type)``; raises OfferRefused."""
        ...

    async def gather_status(self) -> dict[str, Any]: ...

    def drain_worker(self, index: int) -> WorkerHandle:
        """Drain worker ``index``; raises KeyError for no such worker."""
        ...


class Signaling:
    """The aiohttp application of a server, and its listening socket once ``listen()`` ran."""

    def __init__(self, settings: ServerSettings, service: Service) -> None:
        self.settings = settings
        self.service = service
        rate = settings.status_rate
        self.status_limit = RateLimit(rate, rate * STATUS_BURST_S) if rate > 0 else None
        rate = settings.offer_rate
        self.offer_limit = RateLimit(rate, rate * STATUS_BURST_S) if rate > 0 else None
        self.rejected: dict[int, int] = {}
        self.deadlines = ConnectionDeadline(settings.header_timeout)
        self.port = settings.port  # the one bound, after listen()
        self.runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.app = web.Application(
            client_max_size=settings.max_offer_bytes + 1, middlewares=[self.deadlines.middleware]
        )
        self.app.router.add_get("/", self._index)
        self.app.router.add_post("/offer", self._offer)
        self.app.router.add_get("/config", self._config)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/status", self._status)
        self.app.router.add_post("/workers/{index}/drain", self._drain)
        self.app.router.add_static("/static/", settings.page_dir, show_index=False)

    # -- the socket
    async def listen(self) -> None:
        """Listen on ``host``/``port`` (port 0: a free one, see ``port``); raises
        TransportError when the address cannot be had."""
        host = self.settings.host
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            logger=RequestLog(server_logger, {}),
        )
        try:
            context = self.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot use the certificate and key: {exc}") from exc
        await runner.setup()
        site = web.TCPSite(runner, host, self.settings.port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise TransportError(f"cannot listen on {host}:{self.settings.port}: {exc}") from exc
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self.runner = runner
        self._sweeper = asyncio.create_task(
            self.deadlines.sweep(runner, SWEEP_EVERY_S), name="webrtc header deadline"
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of ``cert_file``/``key_file`` (None: plain HTTP); raises OSError or
        ssl.SSLError for files that cannot be read or do not match."""
        cert, key = self.settings.cert_file, self.settings.key_file
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        return context

    async def close(self) -> None:
        """Stop listening; open connections are closed."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if self.runner is not None:
            await self.runner.cleanup()

    # -- refusals and tokens
    def _reject(self, status: int, message: str, **headers: str) -> web.Response:
        self.rejected[status] = self.rejected.get(status, 0) + 1
        return web.json_response({"error": message}, status=status, headers=headers or None)

    def _authorized(self, request: web.Request, *, admin: bool = False) -> bool:
        """Whether the request carries the token its endpoint needs (admin: ``/status``, drain)."""
        token = self.settings.token
        expected = (self.settings.admin_token or token) if admin else token
        if expected is None:
            return True
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        # bytes: compare_digest refuses str with non-ASCII characters (a header may have them)
        sent = value.strip().encode("utf-8", "surrogateescape")
        return scheme.lower() == "bearer" and hmac.compare_digest(sent, expected.encode())

    def _unauthorized(self) -> web.Response:
        return self._reject(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})

    def _limited(self, request: web.Request, limit: RateLimit | None) -> web.Response | None:
        """429 with ``Retry-After`` when the client is past ``limit``; None otherwise."""
        if limit is None:
            return None
        wait = limit.wait(request.remote or "?")
        if wait <= 0:
            return None
        return self._reject(
            429,
            f"too many requests: at most {limit.rate_per_s:g} a second per client "
            f"(bursts of {limit.burst:g})",
            **{"Retry-After": str(max(1, math.ceil(wait)))},
        )

    def _admin_refusal(self, request: web.Request) -> web.Response | None:
        """429 past the rate limit (counted before the token, so guessing it is limited too),
        401 without the admin token; None when the request may go on."""
        limited = self._limited(request, self.status_limit)
        if limited is not None:
            return limited
        if not self._authorized(request, admin=True):
            return self._unauthorized()
        return None

    # -- routes
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.settings.page_dir / "index.html")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self.service.ready()
        if ready:
            return web.json_response({"status": "ready"})
        # not counted in ``rejected``: a probe's answer, not a refused request
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def _config(self, request: web.Request) -> web.Response:
        limited = self._limited(request, self.offer_limit)
        if limited is not None:
            return limited
        if not self._authorized(request):
            return self._unauthorized()
        servers = for_peer(self.settings.ice_server_specs)
        return web.json_response({"iceServers": servers}, headers={"Cache-Control": "no-store"})

    async def _metrics(self, request: web.Request) -> web.Response:
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        try:  # loaded on the first scrape: prometheus_client is optional
            prom = importlib.import_module(f"{__package__}.prom")
        except ImportError as exc:
            return self._reject(501, f"prometheus_client not installed ({one_line(exc)})")
        body, content_type = await prom.metrics_response(self.service)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type  # with its version and charset
        return response

    async def _status(self, request: web.Request) -> web.Response:
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        return web.json_response(await self.service.gather_status())

    async def _drain(self, request: web.Request) -> web.Response:
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        try:
            worker = self.service.drain_worker(int(request.match_info["index"]))
        except (ValueError, KeyError):
            return self._reject(404, f"no worker {request.match_info['index']}")
        return web.json_response(worker.describe())

    async def _offer(self, request: web.Request) -> web.Response:
        limited = self._limited(request, self.offer_limit)  # before the token, as for /status
        if limited is not None:
            return limited
        if not self._authorized(request):
            return self._unauthorized()
        if self.service.stopping or self.service.draining:  # before reading the body
            return self._reject(
                503, "the server is shutting down", **{"Retry-After": str(DRAIN_RETRY_AFTER_S)}
            )
        size = request.content_length
        limit = self.settings.max_offer_bytes
        if size is not None and size > limit:
            return self._reject(413, f"offer too large: {size} bytes, at most {limit}")
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        offer, problem = parse_offer(body)
        if offer is None:
            return self._reject(400, problem)
        try:
            session_id, sdp, kind = await self.service.offer(offer)
        except OfferRefused as exc:
            retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else {}
            return self._reject(exc.status, str(exc), **retry)
        return web.json_response({"sdp": sdp, "type": kind, "session": session_id})

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The whole body, however many segments it came in; a refusal when it cannot be had.

        ``content.read(n)`` returns what has arrived so far, so it is called until the end of
        the body (the declared length, or the last chunk), or one byte past the limit.
        """
        limit = self.settings.max_offer_bytes
        timeout = self.settings.body_timeout
        body = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while len(body) <= limit:
                    chunk = await request.content.read(limit + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
        except TimeoutError:
            declared = request.content_length
            got = f"{len(body)} of {declared}" if declared is not None else f"{len(body)}"
            return self._reject(
                408, f"the offer did not arrive in {timeout:g} s ({got} bytes came)"
            )
        except (ConnectionError, asyncio.IncompleteReadError, web.RequestPayloadError) as exc:
            return self._reject(400, f"cannot read the offer: {one_line(exc)}")
        if len(body) > limit:
            return self._reject(413, f"offer too large: over {limit} bytes")
        return bytes(body)


def parse_offer(body: bytes) -> tuple[RTCSessionDescription | None, str]:
    """An offer's body as a session description, or None and what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the offer is not JSON: {exc}"
    if not isinstance(data, dict):
        return None, "the offer must be a JSON object {sdp, type}"
    sdp, kind = data.get("sdp"), data.get("type")
    if kind != "offer":
        return None, f"type must be 'offer', got {kind!r}"
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        return None, "sdp must be a session description (a string starting with 'v=0')"
    try:
        parsed = sdp_module.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser fails in many ways on text it cannot read
        return None, f"unreadable sdp: {type(exc).__name__}: {exc}"
    if not parsed.media:
        return None, "the offer has no media section"
    for media in parsed.media:
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            return None, f"the {media.kind} section has no ICE credentials (ice-ufrag/ice-pwd)"
        if media.dtls is None or not media.dtls.fingerprints:
            return None, f"the {media.kind} section has no DTLS fingerprint"
    return RTCSessionDescription(sdp=sdp, type="offer"), ""


__all__ = ["DRAIN_RETRY_AFTER_S", "SWEEP_EVERY_S", "Service", "Signaling", "parse_offer"]
