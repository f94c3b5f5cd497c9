"""The data-channel protocol: JSON messages between a peer and its session's pipeline.

From the peer (each may carry an ``id`` that the answer echoes)::

    {"type": "set", "stage": "gain1", "param": "gain_db", "value": -6}   change a stage setting
    {"type": "get"}  /  {"type": "get", "stage": "gain1"}               settings of the stages
    {"type": "pause"}  /  {"type": "resume"}                            stop / restart processing
    {"type": "stats"}                                                   counters now
    {"type": "ping", ...}                                               {"type": "pong", ...}

To the peer: ``hello`` (session id and stages), ``ack``, ``error`` (``message`` and the
``request`` when it could be read), ``state``, ``pong``, ``event`` (``Event.to_json()``), ``level``
(dBFS of the session's input and output) and ``stats``. A message that cannot be read or done is
answered with an ``error``; nothing a peer sends ends its session.

A stage setting is settable when it is one of the stage's ``params()`` and a property with a
setter (``Gain.gain_db``); the value must have the setting's JSON type.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from ..errors import StreamError
from ..node import Node

MAX_MESSAGE_BYTES = 16 * 1024


class Controllable(Protocol):
    """What the protocol needs from a session."""

    @property
    def nodes(self) -> list[Node]: ...

    paused: bool

    def stats(self) -> dict[str, Any]: ...


def error(message: str, request: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "message": message}
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


def _same_kind(current: Any, value: Any) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, int | float) and current is not None:
        return isinstance(value, int | float) and math.isfinite(value)
    if isinstance(current, str):
        return isinstance(value, str)
    return current is None and value is None


def handle(raw: str | bytes, target: Controllable) -> list[dict[str, Any]]:
    """The answers to one message from the peer; never raises for anything the peer sent."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return [error(f"message too large ({len(raw)} bytes, at most {MAX_MESSAGE_BYTES})")]
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return [error(f"not JSON: {exc}")]
    if not isinstance(msg, dict):
        return [error("a message is a JSON object with a 'type'", msg)]
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
            return [error(f"no stage named {stage!r}; stages: {_names(target)}", msg)]
        return [{**ack, "stages": [stage_settings(n) for n in nodes]}]
    if kind in ("pause", "resume"):
        target.paused = kind == "pause"
        return [ack, {"type": "state", "paused": target.paused}]
    if kind == "stats":
        return [{**ack, **target.stats(), "type": "stats"}]
    if kind == "ping":
        return [{**msg, "type": "pong"}]
    known = "set, get, pause, resume, stats, ping"
    return [error(f"unknown message type {kind!r}; known: {known}", msg)]


def _names(target: Controllable) -> str:
    return ", ".join(n.name for n in target.nodes) or "(none)"


def _set(msg: dict[str, Any], target: Controllable) -> str | None:
    stage, param, value = msg.get("stage"), msg.get("param"), msg.get("value")
    if not isinstance(stage, str) or not isinstance(param, str) or "value" not in msg:
        return "set needs 'stage' and 'param' (strings) and 'value'"
    node = next((n for n in target.nodes if n.name == stage), None)
    if node is None:
        return f"no stage named {stage!r}; stages: {_names(target)}"
    settable = stage_settings(node)["settable"]
    if param not in settable:
        return f"{stage}: {param!r} cannot be set live; settable: {', '.join(settable) or 'none'}"
    current = getattr(node, param)
    if not _same_kind(current, value):
        return f"{stage}: {param} takes a {type(current).__name__}, got {json.dumps(value)}"
    try:
        setattr(node, param, value)
    except (StreamError, ValueError, TypeError, OverflowError) as exc:
        return str(exc)
    return None


__all__ = ["MAX_MESSAGE_BYTES", "Controllable", "error", "handle", "stage_settings"]
