"""What every telephony provider's WebSocket protocol says, in one shape; a serializer per provider.

A provider (Twilio, Telnyx) opens a WebSocket to the app and sends JSON text messages: the stream
starts, audio arrives as base64 G.711 in ``media`` messages, the caller presses keys, playback
marks come back, the stream stops. The app sends audio, marks and ``clear`` back. Providers
differ in names and framing only, so each one is a ``Serializer`` (``parse`` one message into
the types below; ``media``/``mark``/``clear`` build the outbound ones), and the call
(``call.py``) speaks to the types, never to a provider's JSON.

Errors: ``ProtocolError`` (a ``TransportError``) for any message that cannot be read; parsing
raises nothing else, whatever the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...errors import TransportError

#: Longest field values taken from a provider (ids, names, digits); longer is a ProtocolError.
MAX_FIELD_CHARS = 256
MAX_CUSTOM_PARAMETERS = 64


class ProtocolError(TransportError):
    """A message that does not follow the provider's protocol (the call answers with an error
    event or closes with the reason; it never ends another call)."""


@dataclass(frozen=True, slots=True)
class Connected:
    """The socket is up (the first message)."""

    protocol: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class Start:
    """The stream started: its id (what outbound messages name), the call's id, the audio's
    ``encoding`` (``"mulaw"`` or ``"alaw"``), rate and channels, and the custom parameters."""

    stream_id: str
    call_id: str
    encoding: str = "mulaw"
    sample_rate: int = 8000
    channels: int = 1
    custom: dict[str, str] = field(default_factory=dict)
    tracks: tuple[str, ...] = ("inbound",)


@dataclass(frozen=True, slots=True)
class Media:
    """Audio from the caller: G.711 ``payload`` bytes; ``chunk`` (sequence, from 1) and
    ``timestamp_ms`` (since the stream started) when the provider gives them."""

    payload: bytes
    chunk: int | None = None
    timestamp_ms: int | None = None
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Mark:
    """A mark the app sent came back: the audio queued before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    """The caller pressed a key."""

    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream ended (the caller hung up, or the provider stopped it)."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message of a kind this side does not act on (counted, not an error)."""

    event: str


Inbound = Connected | Start | Media | Mark | Dtmf | Stop | Ignored


class Serializer(Protocol):
    """One provider's messages."""

    name: str

    def parse(self, message: str | bytes) -> Inbound:
        """One message from the provider; ProtocolError when it is not one (nothing else)."""
        ...

    def media(self, stream_id: str, payload: bytes) -> str:
        """Audio toward the caller."""
        ...

    def mark(self, stream_id: str, name: str) -> str:
        """A mark after the audio sent so far (the provider answers when it has played)."""
        ...

    def clear(self, stream_id: str) -> str:
        """Drop the audio the provider has queued toward the caller."""
        ...


# -- the readers serializers share: each raises ProtocolError, and only that
def load(message: str | bytes, limit: int) -> dict[str, Any]:
    """A JSON object from a text message of at most ``limit`` bytes."""
    if isinstance(message, bytes):
        raise ProtocolError("binary message: this protocol speaks JSON text")
    if not isinstance(message, str):
        raise ProtocolError(f"unexpected message type {type(message).__name__}")
    if len(message) > limit:
        raise ProtocolError(f"message of {len(message)} characters (at most {limit})")
    try:
        data = json.loads(message)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}")
    return data


def section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(f"{data.get('event')!r} message without a {name!r} object")
    return value


def text(data: dict[str, Any], name: str, default: str | None = None) -> str:
    """A string field (numbers are taken as their text); ProtocolError when missing or odd."""
    value = data.get(name, default)
    if isinstance(value, bool) or value is None:
        raise ProtocolError(f"field {name!r} missing or not a string")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise ProtocolError(f"field {name!r} missing, not a string or too long")
    return value


def integer(data: dict[str, Any], name: str) -> int | None:
    """An int given as a number or a decimal string ("12"); None when absent."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError(f"field {name!r} is not an integer")
    if isinstance(value, str) and len(value) <= 20 and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or not -(2**53) <= value <= 2**53:
        raise ProtocolError(f"field {name!r} is not an integer")
    return value


def payload(data: dict[str, Any], limit: int) -> bytes:
    """The base64 ``payload`` field, decoded; at most ``limit`` bytes."""
    value = data.get("payload")
    if not isinstance(value, str):
        raise ProtocolError("media without a base64 'payload'")
    if len(value) > limit * 4 // 3 + 4:
        raise ProtocolError(f"media payload over {limit} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"payload is not base64: {exc}") from None
    if not raw:
        raise ProtocolError("empty media payload")
    return raw


def media(data: dict[str, Any], limit: int) -> Media:
    """A ``media`` message's audio (both providers: ``media.payload/chunk/timestamp/track``)."""
    body = section(data, "media")
    return Media(
        payload(body, limit),
        integer(body, "chunk"),
        integer(body, "timestamp"),
        text(body, "track", "inbound"),
    )


def parameters(value: Any) -> dict[str, str]:
    """Custom parameters: a JSON object of strings (others taken as their text), bounded."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_CUSTOM_PARAMETERS:
        raise ProtocolError("custom parameters must be an object of at most 64 entries")
    out: dict[str, str] = {}
    for k, v in value.items():
        s = v if isinstance(v, str) else json.dumps(v)
        if len(k) > MAX_FIELD_CHARS or len(s) > MAX_FIELD_CHARS:
            raise ProtocolError("custom parameter name or value too long")
        out[k] = s
    return out


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


__all__ = [
    "MAX_FIELD_CHARS",
    "Connected",
    "Dtmf",
    "Ignored",
    "Inbound",
    "Mark",
    "Media",
    "ProtocolError",
    "Serializer",
    "Start",
    "Stop",
]
