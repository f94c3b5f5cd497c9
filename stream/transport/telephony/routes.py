"""The routes: ``/twilio``, ``/telnyx`` (provider WebSockets) and ``/ws`` (plain PCM), on the
server's aiohttp application; ``Calls``, the calls of one server and their limits.

Calls run in the process that serves HTTP (the front, with workers too): each gets its pipeline
from the server's ``pipeline_factory``, the one WebRTC sessions get theirs from. Admission, in
order, before the WebSocket opens (every refusal a JSON ``{"error"}`` with its HTTP status):
the token or Twilio signature (403), the server's ``ready()`` (503: stopping, draining, or
full), ``max_calls`` (503 with ``Retry-After``), the pipeline factory (500). A
``WebRTCServer`` counts calls with its sessions against ``max_sessions`` (server.py), so
calls and WebRTC sessions share one cap; ``max_calls`` bounds the calls alone.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ...pipeline import Pipeline
from . import twilio
from .call import Call, Line, PlainLine, ProviderLine
from .protocol import Serializer
from .settings import TelephonySettings
from .telnyx import TelnyxSerializer
from .twilio import TwilioSerializer

log = logging.getLogger("stream.transport")

RETRY_AFTER_S = 5
CLOSE_TIMEOUT_S = 10.0


class Calls:
    """The calls of one server: admission under the limits, status, closing them all."""

    def __init__(self, service: Any, settings: TelephonySettings) -> None:
        self.service = service
        self.settings = settings
        self.calls: dict[str, Call] = {}
        self.calls_total = 0
        self.refused: dict[int, int] = {}
        self.ended: dict[str, int] = {}  # close reasons (first words) -> count
        self.ended_playout: dict[str, int] = {}  # PLAYOUT_COUNTS of the calls that ended
        self._admitting = 0

    def status(self) -> dict[str, Any]:
        """Live calls with their counters, totals and refusals (JSON-ready)."""
        return {
            "calls": len(self.calls),
            "max_calls": self.settings.max_calls,
            "calls_total": self.calls_total,
            "refused": {str(k): v for k, v in sorted(self.refused.items())},
            "ended": dict(self.ended),
            "list": (calls := [c.stats() for c in self.calls.values()]),
            "playout_total": self._playout_total(calls),
        }

    def _playout_total(self, live: list[dict[str, Any]]) -> dict[str, int]:
        """``PLAYOUT_COUNTS`` over every call so far, ended and live (monotonic: metrics)."""
        total = dict.fromkeys(PLAYOUT_COUNTS, 0)
        total.update(self.ended_playout)
        for stats in live:
            for name, value in _playout_counts(stats).items():
                total[name] += value
        return total

    def _refuse(self, status: int, message: str, **headers: str) -> web.Response:
        self.refused[status] = self.refused.get(status, 0) + 1
        return web.json_response({"error": message}, status=status, headers=headers or None)

    def _pipeline_factory(self) -> Callable[[], Pipeline]:
        factory: Callable[[], Pipeline] = self.service.pipeline_factory
        return factory

    async def serve(
        self,
        request: web.Request,
        kind: str,
        make_line: Callable[[web.WebSocketResponse, str], Line],
    ) -> web.StreamResponse:
        """Admit the request, open the WebSocket and serve one call on it."""
        ready = getattr(self.service, "ready", None)
        if ready is not None:
            ok, why = ready()
            if not ok and not why.startswith("full"):
                return self._refuse(
                    503, f"not taking calls: {why}", **{"Retry-After": str(RETRY_AFTER_S)}
                )
        limit = self.settings.max_calls
        # no await between the check and the reservation: concurrent calls cannot both pass
        if len(self.calls) + self._admitting >= limit:
            return self._refuse(
                503, f"server full: {limit} calls", **{"Retry-After": str(RETRY_AFTER_S)}
            )
        self._admitting += 1
        try:
            try:
                pipeline = self._pipeline_factory()()
            except Exception as exc:
                log.exception("pipeline factory failed")
                return self._refuse(500, f"cannot build the pipeline: {exc}")
            ws = web.WebSocketResponse(max_msg_size=self.settings.max_message_bytes)
            await ws.prepare(request)
        finally:
            self._admitting -= 1
        call_id = uuid.uuid4().hex[:12]
        line = make_line(ws, call_id)
        call = Call(call_id, kind, ws, line, pipeline, self.settings, on_ended=self._ended)
        self.calls[call_id] = call
        self.calls_total += 1
        log.info("call %s (%s): started (%d live)", call_id, kind, len(self.calls))
        try:
            await call.run()
        finally:
            self._ended(call)
        return ws

    def _ended(self, call: Call) -> None:
        """Count a call's end, once (its socket is closed after this)."""
        if self.calls.pop(call.id, None) is None:
            return
        reason = call.close_reason or "closed"
        key = reason.split(":")[0].split("(")[0].strip()
        self.ended[key] = self.ended.get(key, 0) + 1
        for name, value in _playout_counts(call.stats()).items():
            self.ended_playout[name] = self.ended_playout.get(name, 0) + value
        log.info("call %s: ended (%s)", call.id, reason)

    async def close_all(self, reason: str = "server stopping") -> None:
        """Close every call (its caller told ``reason``) and wait for them, bounded."""
        calls = list(self.calls.values())
        for call in calls:
            call.close(reason)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                while self.calls:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.error("%d calls did not close in %g s", len(self.calls), CLOSE_TIMEOUT_S)


#: The playout buffer's counters summed over calls for ``/status`` and ``/metrics``.
PLAYOUT_COUNTS = ("frames", "concealed", "lost", "late", "skipped")


def _playout_counts(stats: dict[str, Any]) -> dict[str, int]:
    playout = stats.get("playout") or {}
    return {name: int(playout.get(name, 0) or 0) for name in PLAYOUT_COUNTS}


def _token_ok(request: web.Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.query.get("token")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        given = header[7:]
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def request_url(request: web.Request, public_url: str | None) -> str:
    """The URL a provider requested, as it signed it: ``public_url`` + path and query, else this
    request's scheme (``wss`` behind TLS or an ``X-Forwarded-Proto: https`` proxy) and Host."""
    if public_url is not None:
        return public_url.rstrip("/") + request.path_qs
    proto = request.headers.get("X-Forwarded-Proto", "https" if request.secure else "http")
    scheme = "wss" if proto.split(",")[0].strip() in ("https", "wss") else "ws"
    return f"{scheme}://{request.host}{request.path_qs}"


#: Where the application keeps its ``Calls``.
CALLS_KEY = web.AppKey("telephony_calls", Calls)


def add_routes(app: web.Application, service: Any, settings: TelephonySettings) -> None:
    """Register ``GET /twilio``, ``/telnyx`` and ``/ws`` (WebSocket upgrades) on ``app``.

    ``service`` gives ``pipeline_factory`` (a callable returning a new Pipeline) and, if it has
    one, ``ready() -> (bool, reason)`` (a ``WebRTCServer`` has both). The calls are in
    ``app[CALLS_KEY]`` (``calls_status(app)`` for ``/status``); they are closed when the
    application shuts down.
    """
    calls = Calls(service, settings)
    app[CALLS_KEY] = calls
    limit = settings.max_message_bytes

    def provider(
        serializer: Callable[[], Serializer],
    ) -> Callable[[web.WebSocketResponse, str], Line]:
        return lambda ws, _call_id: ProviderLine(ws, serializer(), settings.backend)

    async def twilio_route(request: web.Request) -> web.StreamResponse:
        token = settings.twilio_auth_token
        if token is not None:
            url = request_url(request, settings.public_url)
            given = request.headers.get("X-Twilio-Signature")
            if not twilio.signature_valid(token, url, given):
                return calls._refuse(403, "missing or invalid X-Twilio-Signature")
        return await calls.serve(
            request, "twilio", provider(lambda: TwilioSerializer(limit, limit))
        )

    async def telnyx_route(request: web.Request) -> web.StreamResponse:
        if not _token_ok(request, settings.token):
            return calls._refuse(403, "missing or wrong token")
        return await calls.serve(
            request, "telnyx", provider(lambda: TelnyxSerializer(limit, limit))
        )

    async def plain_route(request: web.Request) -> web.StreamResponse:
        if not _token_ok(request, settings.token):
            return calls._refuse(403, "missing or wrong token")
        return await calls.serve(request, "ws", lambda ws, call_id: PlainLine(ws, call_id, limit))

    async def on_shutdown(_app: web.Application) -> None:
        await calls.close_all()

    app.router.add_get("/twilio", twilio_route)
    app.router.add_get("/telnyx", telnyx_route)
    app.router.add_get("/ws", plain_route)
    app.on_shutdown.append(on_shutdown)


def calls_status(app: web.Application) -> dict[str, Any] | None:
    """The calls' status, or None when ``add_routes`` was not called on ``app``."""
    calls = app.get(CALLS_KEY)
    return None if calls is None else calls.status()


__all__ = ["CALLS_KEY", "Calls", "add_routes", "calls_status", "request_url"]
