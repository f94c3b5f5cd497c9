"""Provider messages in and out (Twilio, Telnyx), malformed ones (a fuzzer: never an exception
but ``ProtocolError``), and Twilio's request signature against its documented examples."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import numpy as np
import pytest
from aiohttp import WSMsgType
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.errors import TransportError
from stream.events import Event
from stream.transport.telephony.call import Audio, PlainLine
from stream.transport.telephony.protocol import (
    Connected,
    Dtmf,
    Ignored,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
)
from stream.transport.telephony.telnyx import TelnyxSerializer
from stream.transport.telephony.twilio import TwilioSerializer, signature, signature_valid

TWILIO_START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC123",
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
        "callSid": "CA7e6eb7f2c2ba7a56c5b9d1e0c8f3d3a4",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "RemoteParty": "Bob"},
    },
    "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
}


def test_twilio_messages_in() -> None:
    t = TwilioSerializer()
    assert t.parse(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == (
        Connected("Call", "1.0.0")
    )
    start = t.parse(json.dumps(TWILIO_START))
    assert isinstance(start, Start)
    assert start.stream_id == "MZ18ad3ab5a668481ce02b83e7395059f0"
    assert start.call_id.startswith("CA7e6")
    assert (start.encoding, start.sample_rate, start.channels) == ("mulaw", 8000, 1)
    assert start.custom == {"FirstName": "Jane", "RemoteParty": "Bob"}
    media = {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "f39/fw=="},
        "streamSid": "MZ1",
    }
    assert t.parse(json.dumps(media)) == Media(b"\x7f\x7f\x7f\x7f", 1, 5, "inbound")
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "m1"}}
    assert t.parse(json.dumps(mark)) == Mark("m1")
    dtmf = {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "#"}}
    assert t.parse(json.dumps(dtmf)) == Dtmf("#")
    stop = {"event": "stop", "streamSid": "MZ1", "stop": {"accountSid": "AC1", "callSid": "CA1"}}
    assert t.parse(json.dumps(stop)) == Stop()
    assert t.parse('{"event": "somethingNew"}') == Ignored("somethingNew")


def test_twilio_messages_out() -> None:
    t = TwilioSerializer()
    assert json.loads(t.media("MZ1", b"\xff\x00")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(b"\xff\x00").decode()},
    }
    assert json.loads(t.mark("MZ1", "said-hello")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "said-hello"},
    }
    assert json.loads(t.clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_telnyx_messages() -> None:
    t = TelnyxSerializer()
    start = {
        "event": "start",
        "sequence_number": "1",
        "start": {
            "user_id": "3e6f995f",
            "call_control_id": "v3:abc",
            "client_state": "aGF2ZQ==",
            "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
        },
        "stream_id": "32de0dea",
    }
    got = t.parse(json.dumps(start))
    assert isinstance(got, Start)
    assert (got.stream_id, got.call_id, got.encoding) == ("32de0dea", "v3:abc", "alaw")
    media = {
        "event": "media",
        "sequence_number": "4",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": "1dXV1Q=="},
        "stream_id": "32de0dea",
    }
    assert t.parse(json.dumps(media)) == Media(b"\xd5" * 4, 2, 5, "inbound")
    assert t.parse('{"event":"dtmf","stream_id":"s","dtmf":{"digit":"7"}}') == Dtmf("7")
    assert t.parse('{"event":"error","payload":{"code":100003}}') == Ignored("error")
    opus = json.loads(json.dumps(start))
    opus["start"]["media_format"]["encoding"] = "OPUS"
    with pytest.raises(ProtocolError, match="unsupported encoding 'OPUS'"):
        t.parse(json.dumps(opus))
    assert json.loads(t.clear("s")) == {"event": "clear", "stream_id": "s"}
    assert json.loads(t.media("s", b"\xd5"))["media"] == {"payload": "1Q=="}


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b'{"event": "stop"}', "binary message"),
        ("[1, 2]", "expected a JSON object"),
        ("{", "not JSON"),
        ('{"event": "media", "media": {"payload": "!!"}}', "not base64"),
        ('{"event": "media", "media": {"payload": ""}}', "empty media payload"),
        ('{"event": "media", "media": {"payload": "AA==", "chunk": "x"}}', "'chunk'"),
        ('{"event": "media"}', "without a 'media' object"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "not a DTMF digit"),
        ('{"event": "mark", "mark": {}}', "'name'"),
        ('{"no": "event"}', "without an 'event'"),
        (
            '{"event": "start", "start": {"mediaFormat": {"encoding": "audio/x-mulaw"}}}',
            "streamSid",
        ),
        (
            '{"event": "start", "streamSid": "s", "start": {"mediaFormat": {"sampleRate": 16000}}}',
            "16000 Hz",
        ),
        ("[" * 100000 + "]" * 100000, "characters"),
    ],
)
def test_twilio_malformed(message: str | bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as info:
        TwilioSerializer().parse(message)
    assert isinstance(info.value, TransportError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _shaped(event: str, body: Any) -> str:
    """A message with a real event name and a random body: the fuzzer reaches every branch."""
    section = {"start": "start", "media": "media", "mark": "mark", "dtmf": "dtmf"}.get(event)
    message: dict[str, Any] = {"event": event, "streamSid": body if isinstance(body, str) else "MZ"}
    if section is not None:
        message[section] = body
        message["start" if event == "start" else "x"] = body
    return json.dumps(message)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=50),
        json_values.map(json.dumps),
        st.tuples(
            st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "clear"]),
            json_values,
        ).map(lambda t: _shaped(*t)),
    ),
    st.sampled_from([TwilioSerializer(4096, 1024), TelnyxSerializer(4096, 1024)]),
)
def test_fuzz_parse_raises_only_protocol_error(message: str | bytes, serializer: Any) -> None:
    try:
        got = serializer.parse(message)
    except ProtocolError:
        return
    assert isinstance(got, Connected | Start | Media | Mark | Dtmf | Stop | Ignored)


# -- the signature
def test_signature_matches_twilios_documented_examples() -> None:
    """Twilio's own worked examples: its security page (token 12345, the URL with a query, five
    POST parameters) and the vector its C# helper library tests."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    library = {**params, "Caller": "+14158675309", "From": "+14158675309"}
    assert signature("12345", url, library) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature_valid("12345", url, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", library)
    assert not signature_valid("12345", url, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", params)
    assert not signature_valid("54321", url, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", params)
    assert not signature_valid("12345", url, None, params)


def test_websocket_signature_is_over_the_wss_url() -> None:
    """A Media Stream's socket is a GET: the signature is over its wss URL alone, computed as
    Twilio documents it (HMAC-SHA1 keyed with the auth token, base64), with or without the
    default port written out."""
    url = "wss://calls.example.com/twilio?tenant=7"
    mac = hmac.new(b"s3cret", url.encode(), hashlib.sha1).digest()
    expected = base64.b64encode(mac).decode()
    assert signature("s3cret", url) == expected
    assert signature_valid("s3cret", url, expected)
    assert signature_valid("s3cret", "wss://calls.example.com:443/twilio?tenant=7", expected)
    assert not signature_valid("s3cret", "wss://calls.example.com/twilio?tenant=8", expected)


class _Msg:
    """What aiohttp hands a handler: a type and data."""

    def __init__(self, kind: Any, data: Any) -> None:
        self.type = kind
        self.data = data


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64).map(lambda b: _Msg(WSMsgType.BINARY, b)),
            st.text(max_size=100).map(lambda t: _Msg(WSMsgType.TEXT, t)),
            json_values.map(lambda v: _Msg(WSMsgType.TEXT, json.dumps(v))),
            st.fixed_dictionaries(
                {"type": st.sampled_from(["hello", "event", "mark", "stop", "x"])},
                optional={
                    "rate": json_values | st.sampled_from([8000, 16000, 48000]),
                    "channels": json_values | st.sampled_from([1, 2]),
                    "format": json_values | st.sampled_from(["s16le", "f32le"]),
                    "kind": json_values,
                    "payload": json_values,
                    "name": json_values,
                },
            ).map(lambda d: _Msg(WSMsgType.TEXT, json.dumps(d))),
        ),
        max_size=6,
    )
)
def test_fuzz_plain_protocol_raises_only_protocol_error(messages: list[_Msg]) -> None:
    line = PlainLine(None, "call", 65536)  # type: ignore[arg-type]  (reading needs no socket)
    for message in messages:
        try:
            items = line.read(message)
        except ProtocolError:
            continue
        for item in items:
            assert isinstance(item, Audio | Start | Event | Mark | Stop)
            if isinstance(item, Audio):
                assert item.samples.dtype == np.float32 and item.samples.ndim == 1


def test_plain_protocol_keeps_playout_shift_for_the_server() -> None:
    """A client's own ``playout_shift`` event would move the echo canceller's far-end: refused;
    other events pass as the caller's."""
    line = PlainLine(None, "call", 65536)  # type: ignore[arg-type]  (reading needs no socket)
    hello = {"type": "hello", "rate": 16000, "format": "s16le"}
    line.read(_Msg(WSMsgType.TEXT, json.dumps(hello)))
    shift = {"type": "event", "kind": "playout_shift", "payload": {"shift_ms": 20}}
    with pytest.raises(ProtocolError, match="playout_shift"):
        line.read(_Msg(WSMsgType.TEXT, json.dumps(shift)))
    [event] = line.read(_Msg(WSMsgType.TEXT, json.dumps({**shift, "kind": "hello_there"})))
    assert isinstance(event, Event) and event.kind == "hello_there"
