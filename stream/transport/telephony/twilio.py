"""Twilio Media Streams: the messages (``TwilioSerializer``) and the request signature.

In: ``connected``, ``start`` (``streamSid``, ``callSid``, ``mediaFormat``, ``customParameters``),
``media`` (base64 mu-law 8 kHz, ``chunk``, ``timestamp`` in ms), ``mark``, ``dtmf``, ``stop``.
Out, on the call's ``streamSid``: ``media``, ``mark``, ``clear``. TwiML that opens such a
stream: ``<Response><Connect><Stream url="wss://host/twilio"/></Connect></Response>``.

The signature (``X-Twilio-Signature``): base64 of HMAC-SHA1, keyed with the account's auth
token, over the full URL Twilio requested (scheme, host, path, query) followed by each POST
parameter's name and value, sorted by name. Twilio opens a Media Stream's WebSocket with a GET,
so there it is the ``wss://`` URL alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from .protocol import (
    Connected,
    Dtmf,
    Ignored,
    Inbound,
    Mark,
    ProtocolError,
    Start,
    Stop,
    b64,
    dumps,
    integer,
    load,
    media,
    parameters,
    section,
    text,
)

#: Twilio's encodings (``mediaFormat.encoding``) -> G.711 law
ENCODINGS = {"audio/x-mulaw": "mulaw", "audio/x-alaw": "alaw"}


class TwilioSerializer:
    """Twilio Media Streams messages. ``max_message_bytes`` bounds a message, ``max_payload``
    the audio in one."""

    name = "twilio"

    def __init__(self, max_message_bytes: int = 65536, max_payload: int = 16000) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_payload = max_payload

    def parse(self, message: str | bytes) -> Inbound:
        data = load(message, self.max_message_bytes)
        event = data.get("event")
        if event == "media":
            return media(data, self.max_payload)
        if event == "start":
            start = section(data, "start")
            fmt = start.get("mediaFormat", {})
            if not isinstance(fmt, dict):
                raise ProtocolError("'mediaFormat' must be an object")
            encoding = text(fmt, "encoding", "audio/x-mulaw")
            if encoding not in ENCODINGS:
                raise ProtocolError(f"unsupported encoding {encoding!r}")
            rate = integer(fmt, "sampleRate") or 8000
            channels = integer(fmt, "channels") or 1
            if rate != 8000 or channels != 1:
                raise ProtocolError(f"unsupported format: {rate} Hz, {channels} channel(s)")
            tracks = start.get("tracks", ["inbound"])
            if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
                raise ProtocolError("'tracks' must be a list of strings")
            return Start(
                text(data, "streamSid", text(start, "streamSid", "")) or _missing("streamSid"),
                text(start, "callSid", ""),
                ENCODINGS[encoding],
                rate,
                channels,
                parameters(start.get("customParameters")),
                tuple(tracks[:4]),
            )
        if event == "mark":
            return Mark(text(section(data, "mark"), "name"))
        if event == "dtmf":
            digit = text(section(data, "dtmf"), "digit")
            if len(digit) != 1 or digit not in "0123456789*#ABCD":
                raise ProtocolError(f"not a DTMF digit: {digit!r}")
            return Dtmf(digit)
        if event == "stop":
            return Stop()
        if event == "connected":
            return Connected(text(data, "protocol", ""), text(data, "version", ""))
        if not isinstance(event, str):
            raise ProtocolError("message without an 'event'")
        return Ignored(event[:64])

    def media(self, stream_id: str, payload: bytes) -> str:
        return dumps({"event": "media", "streamSid": stream_id, "media": {"payload": b64(payload)}})

    def mark(self, stream_id: str, name: str) -> str:
        return dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return dumps({"event": "clear", "streamSid": stream_id})


def _missing(name: str) -> str:
    raise ProtocolError(f"start without a {name!r}")


def signature(
    auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> str:
    """``X-Twilio-Signature`` of a request: base64(HMAC-SHA1(token, url + sorted name+value))."""
    items = params.items() if isinstance(params, Mapping) else params
    data = url + "".join(k + v for k, v in sorted(items))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def _with_and_without_port(url: str) -> list[str]:
    """The URL as given, and with the default port added or removed: Twilio signs what it
    requested, and proxies in between may add or strip ``:443``."""
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is None and default is not None:
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    elif parts.port == default:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])
    else:
        return [url]
    return [url, urlunsplit(other)]


def signature_valid(
    auth_token: str,
    url: str,
    given: str | None,
    params: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> bool:
    """Whether ``given`` is the signature of this request (compared in constant time)."""
    if not given or not auth_token:
        return False
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    ok = False
    for candidate in _with_and_without_port(url):
        ok |= hmac.compare_digest(signature(auth_token, candidate, pairs), given)
    return ok


__all__ = ["ENCODINGS", "TwilioSerializer", "signature", "signature_valid"]
