"""The data channel against a hostile peer: every message gets one answer, none ends the session.

A fuzzer (hypothesis) drives ``control.handle`` on a real ``Session`` with text, bytes, invalid
UTF-8, lone surrogates, deep nesting, NaN/Infinity, huge numbers, wrong types and unknown fields;
then a peer on its own test host sends the worst of them through a real aiortc data channel and
checks that the session still answers, takes settings and sends its audio.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media_nodes import Gain, PassThrough
from stream.pipeline import Pipeline
from stream.testing import split_frames, tone

from .conftest import manifest
from .signals import dominant_hz, joined, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")

from stream.transport import control
from stream.transport.session import Session, SessionOptions
from stream.transport.webrtc import Peer

MAX = control.MAX_MESSAGE_BYTES
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    """A real session (not connected) over Gain and PassThrough: what the protocol drives."""
    pipeline = Pipeline([Gain(gain_db=-6.0, name="gain"), PassThrough(name="pass")], name="fuzz")
    loop = asyncio.new_event_loop()
    try:
        made = loop.run_until_complete(_made(pipeline))
        yield made
        loop.run_until_complete(made.pc.close())
    finally:
        loop.close()


async def _made(pipeline: Pipeline) -> Session:
    return Session("fuzz", pipeline, SessionOptions())


# -- what the answers must be, read independently of control.py

_MISSING = object()


def _depth(value: Any) -> int:
    """Arrays and objects inside one another (without recursion: json.loads nests ~1000 deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, depth + 1)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def _finite(value: Any) -> bool:
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= 1.7976931348623157e308
    return True


def _expected_id(raw: str | bytes) -> Any:
    """The id a reply must carry: the message's, when the message is one the protocol reads."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if len(text.encode("utf-8", "surrogatepass")) > MAX:
            return _MISSING
        msg = json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING
    if not isinstance(msg, dict) or "id" not in msg or _depth(msg) > control.MAX_DEPTH:
        return _MISSING
    return msg["id"] if _finite(msg["id"]) else _MISSING


def check_answers(raw: str | bytes, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One reply (a ``state`` may follow pause/resume), all JSON within the size; the reply."""
    for answer in answers:
        encoded = json.dumps(answer, allow_nan=False)  # raises for NaN or a non-JSON value
        assert len(encoded) <= control.MAX_ANSWER_BYTES
    replies = [a for a in answers if a["type"] != "state"]
    assert len(replies) == 1, answers
    reply = replies[0]
    assert reply["type"] in ("ack", "error", "pong", "stats")
    expected = _expected_id(raw)
    if expected is not _MISSING:
        assert json.dumps(reply["id"]) == json.dumps(expected)
    return reply


# -- the fuzzer's messages

_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_text = st.text(st.one_of(st.characters(), _surrogates), max_size=24)
_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and the infinities too
    st.sampled_from([-6, 0, 770, 771, 1e308, -1e308, 5e-324]),
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=16,
)
_messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["set", "get", "pause", "resume", "stats", "ping"]) | _json,
        "stage": st.sampled_from(["gain", "pass", "nope"]) | _json,
        "param": st.sampled_from(["gain_db", "ramp_ms", "__class__", "name"]) | _json,
        "value": _numbers | _json,
        "id": _json,
    },
).flatmap(lambda m: st.dictionaries(_text, _json, max_size=3).map(lambda extra: {**extra, **m}))


@st.composite
def _encoded(draw: st.DrawFn) -> str | bytes:
    """A message as a peer could put it on the wire, intact or damaged."""
    text = json.dumps(draw(_messages), ensure_ascii=draw(st.booleans()))
    how = draw(st.sampled_from(["text", "bytes", "cut", "nested", "padded"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "nested":
        n = draw(st.integers(0, 3000))
        text = text[:-1] + (", " if len(text) > 2 else "") + '"deep": ' + "[" * n + "]" * n + "}"
    elif how == "padded":  # around the size limit
        text += " " * max(
            0, MAX - len(text.encode("utf-8", "surrogatepass")) + draw(st.integers(-2, 2))
        )
    if how == "text" or (how != "bytes" and draw(st.booleans())):
        return text
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8


_nests = st.builds(
    lambda n, opener, closed: opener * n + ({"[": "]", '{"a":': "}"}[opener] * n if closed else ""),
    st.integers(0, MAX // 2),
    st.sampled_from(["[", '{"a":']),
    st.booleans(),
)
_raw = st.one_of(
    _encoded(),
    st.binary(max_size=MAX + 64),
    st.text(st.one_of(st.characters(), _surrogates), max_size=200),
    _nests,
    st.integers(0, 6000).map(lambda n: '{"type": "ping", "id": 1, "n": ' + "9" * n + "}"),
    st.sampled_from(["NaN", "[Infinity]", '"\\ud800"', "", "\ufeff{}", '{"type": "ping"'] * 3),
)


@FUZZ
@given(raw=_raw)
def test_every_message_gets_one_json_answer(session: Session, raw: str | bytes) -> None:
    check_answers(raw, control.handle(raw, session))
    gain = session.nodes[0]
    assert isinstance(gain, Gain)
    assert math.isfinite(gain.gain_db) and gain.gain_db <= 770  # nothing got past the checks
    assert isinstance(session.paused, bool)


@settings(FUZZ, max_examples=100)
@given(raw=_encoded())
def test_the_session_handler_never_raises(session: Session, raw: str | bytes) -> None:
    session._on_message(raw)  # no data channel: the answers are dropped, nothing may escape


# -- the cases the issue names, and the limits, exactly


def test_a_deep_nest_gets_an_error_not_a_recursion_error(session: Session) -> None:
    raw = "[" * 2000 + "]" * 2000  # the 4 KB message
    [answer] = control.handle(raw, session)
    assert answer["type"] == "error" and "nested more than" in answer["message"]
    session._on_message(raw)


@pytest.mark.parametrize("extra", [0, 1])
def test_nesting_is_limited_and_brackets_in_strings_do_not_count(
    session: Session, extra: int
) -> None:
    depth = control.MAX_DEPTH - 1 + extra  # inside the message object
    raw = '{"type": "ping", "id": 1, "x": ' + "[" * depth + "]" * depth + "}"
    reply = check_answers(raw, control.handle(raw, session))
    assert reply["type"] == ("pong" if extra == 0 else "error"), reply
    brackets = '{"type": "ping", "id": 2, "x": "' + "[{" * 4000 + '\\"]"}'
    assert check_answers(brackets, control.handle(brackets, session))["type"] == "pong"


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "ping", "id": 7, "x": NaN}',
        '{"type": "set", "stage": "gain", "param": "gain_db", "value": Infinity, "id": 7}',
        '{"type": "ping", "id": 7, "x": -1e400}',
        '{"type": "ping", "id": 7, "x": 1' + "0" * 400 + "}",
        '{"type": "ping", "id": 7, "x": 1' + "0" * 5000 + "}",  # past Python's 4300 digits
    ],
)
def test_a_request_holding_a_non_finite_number_gets_an_error_with_its_id(
    session: Session, raw: str
) -> None:
    [answer] = control.handle(raw, session)
    assert answer == {
        "type": "error",
        "message": "NaN, Infinity and numbers beyond the double range are not accepted",
        "id": 7,
    }


def test_an_unreadable_id_is_not_echoed(session: Session) -> None:
    [answer] = control.handle('{"type": "ping", "id": [1, NaN]}', session)
    assert answer["type"] == "error" and "id" not in answer


@pytest.mark.parametrize(
    "message",
    [
        {"type": "launch"},
        {"type": "set", "stage": "gain", "param": "gain_db", "value": "loud"},
        {"type": "set", "stage": "gain", "param": "gain_db", "value": 10**300},
        {"type": "get", "stage": ["gain"]},
        {"type": {"nested": [1]}, "unknown": True},
    ],
)
def test_error_answers_echo_the_request_id(session: Session, message: dict[str, Any]) -> None:
    raw = json.dumps({**message, "id": "req-9"})
    [answer] = control.handle(raw, session)
    assert answer["type"] == "error" and answer["id"] == "req-9"
    assert answer["request"] == json.loads(raw)


def test_the_size_limit_counts_utf8_bytes(session: Session) -> None:
    body = '{"type": "ping", "id": 1}'
    exact = body + " " * (MAX - len(body))
    assert control.handle(exact, session)[0]["type"] == "pong"
    assert control.handle(exact.encode() + b" ", session)[0]["message"].startswith("message too")
    wide = '{"type": "ping", "x": "' + "é" * (MAX // 2) + '"}'  # fewer characters than MAX
    assert len(wide) < MAX
    assert "too large" in control.handle(wide, session)[0]["message"]


def test_an_answer_too_large_to_send_drops_the_echo_but_keeps_the_id(session: Session) -> None:
    emoji = "\U0001f600" * 2000  # 8 KB of UTF-8, 24 KB once escaped for an answer
    raw = json.dumps({"type": "nope", "id": emoji, "a": emoji}, ensure_ascii=False)
    assert len(raw.encode()) <= MAX
    [answer] = control.handle(raw, session)  # the id, twice, and "a": 72 KB with the echo
    assert answer["type"] == "error" and answer["id"] == emoji and "request" not in answer
    assert "unknown message type" in answer["message"]
    assert len(json.dumps(answer)) <= control.MAX_ANSWER_BYTES
    ping = raw.replace("nope", "ping")
    assert check_answers(ping, control.handle(ping, session))["a"] == emoji  # 48 KB: whole


# -- end to end: a peer on its own host, a served session, a real data channel

HOSTILE: list[str | bytes] = [
    "[" * 2000 + "]" * 2000,
    "[" * (MAX - 1),
    '{"type": "ping", "id": "nan", "x": NaN}',
    '{"type": "set", "stage": "gain", "param": "gain_db", "value": 1e400, "id": "inf"}',
    '{"type": "ping", "n": ' + "9" * 5000 + "}",
    b"\xff\xfe\x00garbage",
    '{"type": "ping", "id": "\\ud800", "s": "\\udfff"}',
    '{"type": ["set"], "stage": {"a": 1}, "id": [1, 2]}',
    '{"type": "set", "stage": "gain", "param": "__class__", "value": 1, "extra": null}',
    '{"type": "get", "stage": "x' + "\u00e9" * 3000 + '"}',
    "x" * (MAX + 1),
    "",
    b"",
]
INVALID_TEXT = b"\xc3\x28 is not UTF-8"  # sent as a text message, which aiortc decodes itself


def _send_invalid_text(peer: Peer, payload: bytes) -> asyncio.Future[None]:
    """Send ``payload`` as a *text* message (SCTP payload protocol id 51): aiortc's public
    ``send`` always encodes valid UTF-8, a hostile peer need not, so this queues the bytes."""
    from aiortc.rtcsctptransport import WEBRTC_STRING

    channel = peer.channel
    assert channel is not None
    sctp = channel.transport
    sctp._data_channel_queue.append((channel, WEBRTC_STRING, payload))
    return asyncio.ensure_future(sctp._data_channel_flush())


async def _tone_until(stop: asyncio.Event) -> AsyncIterator[Any]:
    for frame in split_frames(tone(1000, 40.0, 48000, amplitude=0.5), 48000, 960):
        if stop.is_set():
            return
        yield frame


@pytest.mark.webrtc
def test_hostile_messages_through_a_data_channel_leave_the_session_serving(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": 0}}]),
    )
    received: list[Any] = []
    answers: list[dict[str, Any]] = []  # everything the session answered, in order

    async def run() -> tuple[list[list[dict[str, Any]]], Any, bool]:
        stop = asyncio.Event()
        between: list[list[dict[str, Any]]] = []
        async with asyncio.timeout(90):
            peer = Peer(server.url, _tone_until(stop), received, on_message=answers.append)
            async with peer:
                await peer.request({"type": "ping"}, timeout=15)
                assert peer.channel is not None
                for i, hostile in enumerate([*HOSTILE, INVALID_TEXT]):
                    before = len(answers)
                    if i == len(HOSTILE):
                        await _send_invalid_text(peer, INVALID_TEXT)
                    else:
                        peer.channel.send(hostile)
                    pong = await peer.request({"type": "ping", "id": f"after-{i}"}, timeout=10)
                    assert pong["type"] == "pong", pong
                    # the channel is ordered: what came before the pong answered the hostile one
                    replies = [
                        m
                        for m in answers[before:]
                        if m["type"] in ("error", "ack", "pong", "state") and m is not pong
                    ]
                    between.append(replies)
                ack = await peer.request(
                    {"type": "set", "stage": "gain", "param": "gain_db", "value": -20, "id": 99}
                )
                mark = len(received)
                while len(received) - mark < 150:  # 3 s of audio after the setting
                    assert not peer.ended, "the session ended"
                    await asyncio.sleep(0.1)
                ended = peer.ended
                stop.set()
        return between, ack, ended

    try:
        between, ack, ended = hosts.run_async("client", run)
    except (TimeoutError, AssertionError) as exc:
        raise AssertionError(f"{exc!r}; the server said:\n{server.log()}") from exc
    assert not ended
    for i, (hostile, replies) in enumerate(zip([*HOSTILE, INVALID_TEXT], between, strict=True)):
        expected = "pong" if i == 6 else "error"  # lone surrogates escaped in JSON are JSON
        assert [r["type"] for r in replies] == [expected], (hostile[:40], replies)
    assert between[6][0]["s"] == "\udfff"
    assert between[2][0]["id"] == "nan" and between[3][0]["id"] == "inf"
    assert between[7][0]["id"] == [1, 2]
    assert ack == {
        "type": "ack",
        "request": "set",
        "id": 99,
        "stage": "gain",
        "param": "gain_db",
        "value": -20,
    }
    after = received[-100:]  # the last 2 s, 1 s after the setting took effect
    assert dominant_hz(joined(after)) == pytest.approx(1000, abs=2)
    # per 20 ms frame, so a late frame (an underrun on a busy machine) does not count
    level = float(np.median([rms_db(joined([frame])) for frame in after]))
    assert level == pytest.approx(TONE_DB - 20, abs=0.7)
    status = server.status()
    assert "Traceback" not in server.log(), server.log()
    assert status["sessions_total"] == 1
