"""The data-channel protocol: JSON messages between a peer and its session's pipeline.

From the peer (each may carry an ``id`` that the answer echoes)::

    {"type": "set", "stage": "gain1", "param": "gain_db", "value": -6}   change a stage setting
    {"type": "get"}  /  {"type": "get", "stage": "gain1"}               settings of the stages
    {"type": "pause"}  /  {"type": "resume"}                            stop / restart processing
    {"type": "stats"}                                                   counters now
    {"type": "ping", ...}                                               {"type": "pong", ...}

To the peer: ``hello`` (session id and stages), ``ack``, ``error`` (``message``, the request's
``id`` when one could be read, and the ``request`` when it could be read and fits), ``state``,
``pong``, ``event`` (``Event.to_json()``), ``level`` (dBFS of the session's input and output),
``stats``, and from the server's life cycle ``draining`` (``deadline_s``: the server stops taking
sessions; this one may run that long) and ``close`` (``reason``: the server closes the session
now; the Python peer and the page close their side and keep the reason).

Every message from the peer gets exactly one answer: its normal answer (``pause``/``resume`` are
followed by a ``state``) or one ``error``; nothing a peer sends ends its session. A message is
UTF-8 JSON text (sent as text or binary) of at most ``MAX_MESSAGE_BYTES``, an object nested at
most ``MAX_DEPTH`` deep, whose numbers are finite doubles (no ``NaN``, ``Infinity``, ``1e400``).
Peer values quoted in an error message are cut to ``QUOTE_CHARS``; an answer longer than
``MAX_ANSWER_BYTES`` (the size every WebRTC peer accepts) drops its ``request`` echo.

A stage setting is settable when it is one of the stage's ``params()`` and a property with a
setter (``Gain.gain_db``); the value must have the setting's JSON type.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Protocol

import numpy as np

from ..errors import StreamError
from ..node import Node

log = logging.getLogger("stream.transport")

MAX_MESSAGE_BYTES = 16 * 1024
#: Arrays and objects inside one another; the control messages need 2. Python's parser recurses
#: once per level and a RecursionError in the data channel's handler would stop aiortc's DTLS loop.
MAX_DEPTH = 32
#: What an answer may take, encoded: the message size a WebRTC peer must accept when it states
#: none (RFC 8841), and aiortc's default for the remote side.
MAX_ANSWER_BYTES = 64 * 1024
QUOTE_CHARS = 60
SUBSCRIBE_USAGE = (
    "subscribe needs 'level_ms' and/or 'stats_ms': 0 (no such messages) or a period in ms"
)

# The scan for nesting depth, in a few C-speed passes: drop the JSON strings (an unterminated one
# runs to the end, so the pattern matches wherever it starts and the scan stays linear), then sum
# the brackets left, over the UTF-8 bytes (no multi-byte character holds a bracket's byte).
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_STEPS = np.zeros(256, np.int32)
_STEPS[[ord("["), ord("{")]] = 1
_STEPS[[ord("]"), ord("}")]] = -1


class Controllable(Protocol):
    """What the protocol needs from a session."""

    @property
    def nodes(self) -> list[Node]: ...

    paused: bool

    def stats(self) -> dict[str, Any]: ...

    def subscribe(
        self, level_ms: float | None = None, stats_ms: float | None = None
    ) -> dict[str, float]: ...


def error(message: str, request: Any = None) -> dict[str, Any]:
    """An ``error`` answer; it echoes ``request`` and its ``id`` (when it has one)."""
    out: dict[str, Any] = {"type": "error", "message": message}
    if isinstance(request, dict) and "id" in request:
        out["id"] = request["id"]
    if request is not None:
        out["request"] = request
    return out


def stage_settings(node: Node) -> dict[str, Any]:
    """A stage's JSON settings (its params()), with which of them can be set live."""
    try:
        params = node.params()
    except StreamError:
        params = {}
    values = {k: getattr(node, k, v) for k, v in params.items()}
    return {
        "name": node.name,
        "type": type(node).__name__,
        "params": _jsonable(values),
        "settable": sorted(k for k in params if _setter(node, k)),
    }


def _setter(node: Node, param: str) -> bool:
    prop = getattr(type(node), param, None)
    return isinstance(prop, property) and prop.fset is not None


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _quote(value: Any) -> str:
    """A peer's value for an error message: its repr, cut to QUOTE_CHARS."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def _same_kind(current: Any, value: Any) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, int | float):
        return isinstance(value, int | float) and _finite(value)
    if isinstance(current, str):
        return isinstance(value, str)
    return current is None and value is None


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the double range
        return False


class _Unreadable(Exception):
    """The message is not a JSON value this protocol reads; the text says why."""


class _BadNumber:
    """Stands in for a number that is not a finite double, so the rest can still be read."""

    __slots__ = ()


_BAD_NUMBER = _BadNumber()


def _holds_bad_number(value: Any) -> bool:
    if isinstance(value, list):
        return any(_holds_bad_number(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bad_number(v) for v in value.values())
    return value is _BAD_NUMBER


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # every message of the protocol
        return False
    outside = _STRINGS.sub("", text).encode("utf-8", "surrogatepass")
    depth = np.cumsum(_STEPS[np.frombuffer(outside, np.uint8)])
    return bool(depth.size) and int(depth.max()) > MAX_DEPTH


def _parse(raw: str | bytes) -> tuple[Any, bool]:
    """The peer's JSON value, and whether a number in it was replaced by ``_BAD_NUMBER``.

    Raises _Unreadable for anything else: too large, not UTF-8, too deep, not JSON.
    """
    too_large = _Unreadable(f"message too large (at most {MAX_MESSAGE_BYTES} bytes)")
    if len(raw) > MAX_MESSAGE_BYTES:  # characters never outnumber UTF-8 bytes
        raise too_large
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Unreadable(f"not UTF-8 text: {exc}") from None
    else:
        text = raw
        # a str from aiortc is valid UTF-8; a lone surrogate (possible from other callers) is
        # counted as the 3 bytes it would take
        if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
            raise too_large
    if _too_deep(text):
        raise _Unreadable(f"not JSON this protocol reads: nested more than {MAX_DEPTH} deep")
    bad = False

    def constant(_: str) -> Any:  # NaN, Infinity, -Infinity: Python reads them, JSON has none
        nonlocal bad
        bad = True
        return _BAD_NUMBER

    def number(literal: str, kind: type[int] | type[float]) -> Any:
        nonlocal bad
        try:
            value = kind(literal)
            if math.isfinite(value):
                return value
        except (ValueError, OverflowError):  # beyond the int digit limit, or the double range
            pass
        bad = True
        return _BAD_NUMBER

    try:
        msg = json.loads(
            text,
            parse_constant=constant,
            parse_int=lambda s: number(s, int),
            parse_float=lambda s: number(s, float),
        )
    except ValueError as exc:
        raise _Unreadable(f"not JSON: {exc}") from None
    except RecursionError:  # _too_deep should have refused it; a deep stack at the call?
        raise _Unreadable("not JSON this protocol reads: nested too deep") from None
    return msg, bad


def handle(raw: str | bytes, target: Controllable) -> list[dict[str, Any]]:
    """The answers to one message from the peer: its normal answers or one ``error``.

    Never raises for anything the peer sent; every answer encodes as JSON (no NaN) within
    MAX_ANSWER_BYTES.
    """
    try:
        msg, bad_number = _parse(raw)
    except _Unreadable as exc:
        return [error(str(exc))]
    if not isinstance(msg, dict):
        request = None if bad_number else msg
        return [_sendable(error("a message is a JSON object with a 'type'", request), None)]
    if bad_number:
        out = error("NaN, Infinity and numbers beyond the double range are not accepted")
        if "id" in msg and not _holds_bad_number(msg["id"]):
            out["id"] = msg["id"]
        return [_sendable(out, None)]
    try:
        answers = _answers(msg, target)
    except Exception as exc:  # a stage's setter or stats() failed: a bug, never the peer's doing
        log.exception("control message %s failed", _quote(msg.get("type")))
        answers = [error(f"internal error ({type(exc).__name__}), logged by the server", msg)]
    return [_sendable(a, msg) for a in answers]


def _answers(msg: dict[str, Any], target: Controllable) -> list[dict[str, Any]]:
    kind = msg.get("type")
    ack: dict[str, Any] = {"type": "ack", "request": kind}
    if "id" in msg:
        ack["id"] = msg["id"]
    if kind == "set":
        problem = _set(msg, target)
        if problem:
            return [error(problem, msg)]
        ack.update(stage=msg["stage"], param=msg["param"], value=msg["value"])
        return [ack]
    if kind == "get":
        stage = msg.get("stage")
        nodes = [n for n in target.nodes if stage is None or n.name == stage]
        if stage is not None and not nodes:
            return [error(f"no stage named {_quote(stage)}; stages: {_names(target)}", msg)]
        return [{**ack, "stages": [stage_settings(n) for n in nodes]}]
    if kind in ("pause", "resume"):
        target.paused = kind == "pause"
        return [ack, {"type": "state", "paused": target.paused}]
    if kind == "stats":
        return [{**ack, **target.stats(), "type": "stats"}]
    if kind == "subscribe":
        periods = {k: msg[k] for k in ("level_ms", "stats_ms") if k in msg}
        if not periods or any(
            isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in periods.values()
        ):
            return [error(SUBSCRIBE_USAGE, msg)]
        return [{**ack, **target.subscribe(**{k: float(v) for k, v in periods.items()})}]
    if kind == "ping":
        return [{**msg, "type": "pong"}]
    known = "set, get, pause, resume, stats, subscribe, ping"
    return [error(f"unknown message type {_quote(kind)}; known: {known}", msg)]


def _sendable(answer: dict[str, Any], request: dict[str, Any] | None) -> dict[str, Any]:
    """``answer``, or the closest answer that encodes within MAX_ANSWER_BYTES."""
    if _fits(answer):
        return answer
    if answer.get("type") == "error" and "request" in answer:
        slim = {k: v for k, v in answer.items() if k != "request"}
        if _fits(slim):
            return slim
    out = error(f"the {_quote(answer.get('type'))} answer is too large to send")
    if request is not None and "id" in request:
        out["id"] = request["id"]
    return out if _fits(out) else error(out["message"])


def _fits(answer: dict[str, Any]) -> bool:
    try:  # as Session.send encodes it; ASCII, so characters are bytes
        encoded = json.dumps(answer, default=repr, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return len(encoded) <= MAX_ANSWER_BYTES


def _names(target: Controllable) -> str:
    return ", ".join(n.name for n in target.nodes) or "(none)"


def _set(msg: dict[str, Any], target: Controllable) -> str | None:
    stage, param, value = msg.get("stage"), msg.get("param"), msg.get("value")
    if not isinstance(stage, str) or not isinstance(param, str) or "value" not in msg:
        return "set needs 'stage' and 'param' (strings) and 'value'"
    node = next((n for n in target.nodes if n.name == stage), None)
    if node is None:
        return f"no stage named {_quote(stage)}; stages: {_names(target)}"
    settable = stage_settings(node)["settable"]
    if param not in settable:
        names = ", ".join(settable) or "none"
        return f"{stage}: {_quote(param)} cannot be set live; settable: {names}"
    current = getattr(node, param)
    if not _same_kind(current, value):
        return f"{stage}: {param} takes a {type(current).__name__}, got {_quote(value)}"
    try:
        setattr(node, param, value)
    except (StreamError, ValueError, TypeError, OverflowError) as exc:
        return str(exc)
    return None


__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "QUOTE_CHARS",
    "Controllable",
    "error",
    "handle",
    "stage_settings",
]
