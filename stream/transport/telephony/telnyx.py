"""Telnyx Media Streaming (Call Control ``stream_url``, TeXML ``<Stream>``): ``TelnyxSerializer``.

In: ``connected``, ``start`` (``stream_id``; ``start.call_control_id``, ``start.media_format``
with ``encoding`` PCMU or PCMA, ``sample_rate``, ``channels``; ``start.custom_parameters``),
``media`` (``media.payload`` base64 RTP payload, ``chunk``, ``timestamp``, ``track``), ``mark``,
``dtmf`` (``dtmf.digit``), ``error`` and ``stop``; every message carries ``sequence_number``
and ``stream_id``. Out (bidirectional mode ``rtp`` with the call's codec): ``media``
(``media.payload``), ``mark`` (``mark.name``) and ``clear``; Telnyx takes them without a
``stream_id``, this side adds it anyway. Telnyx does not promise order: ``chunk`` and
``timestamp`` place the audio (the playout buffer does).
"""

from __future__ import annotations

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

#: Telnyx's codec names -> G.711 law (others, such as G722 or OPUS, are refused)
ENCODINGS = {"PCMU": "mulaw", "PCMA": "alaw"}


class TelnyxSerializer:
    """Telnyx Media Streaming messages (``max_message_bytes``, ``max_payload`` as Twilio's)."""

    name = "telnyx"

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
            fmt = start.get("media_format", {})
            if not isinstance(fmt, dict):
                raise ProtocolError("'media_format' must be an object")
            encoding = text(fmt, "encoding", "PCMU")
            if encoding not in ENCODINGS:
                raise ProtocolError(f"unsupported encoding {encoding!r} (PCMU or PCMA)")
            rate = integer(fmt, "sample_rate") or 8000
            channels = integer(fmt, "channels") or 1
            if rate != 8000 or channels != 1:
                raise ProtocolError(f"unsupported format: {rate} Hz, {channels} channel(s)")
            stream_id = text(data, "stream_id", "")
            if not stream_id:
                raise ProtocolError("start without a 'stream_id'")
            return Start(
                stream_id,
                text(start, "call_control_id", ""),
                ENCODINGS[encoding],
                rate,
                channels,
                parameters(start.get("custom_parameters")),
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
            return Connected("", text(data, "version", ""))
        if not isinstance(event, str):
            raise ProtocolError("message without an 'event'")
        return Ignored(event[:64])  # "error" among them: Telnyx reports, the call goes on

    def media(self, stream_id: str, payload: bytes) -> str:
        return dumps({"event": "media", "stream_id": stream_id, "media": {"payload": b64(payload)}})

    def mark(self, stream_id: str, name: str) -> str:
        return dumps({"event": "mark", "stream_id": stream_id, "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return dumps({"event": "clear", "stream_id": stream_id})


__all__ = ["ENCODINGS", "TelnyxSerializer"]
