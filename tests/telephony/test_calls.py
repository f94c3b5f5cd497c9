"""Calls over real WebSockets: a served pipeline on the server test host, callers speaking Twilio's
protocol (and the plain ``/ws`` one, with the Python client) from the client test host.

What is asserted holds whatever the scheduling: counts and order of messages, levels and pitch of
the audio, lower bounds on time (pacing cannot send early), never how fast anything happened.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import pytest

from media_nodes.audio import EchoCancel, Gain
from media_nodes.audio.echo_scene import room_response
from stream import Pipeline
from stream.events import PLAYOUT_SHIFT
from stream.testing import tone

from .callers import CHUNK, RATE, Speaker, twilio_call
from .nodes import EventLog, FarEnd, MarkEvery, Recorder, Talker

pytestmark = pytest.mark.webrtc


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    return float(np.argmax(spectrum) * rate / x.shape[0])


def test_tone_comes_back_processed(call_server: Any, caller: Any) -> None:
    server = call_server(lambda: Pipeline([Gain(gain_db=-6, name="gain")]))
    x = tone(440, 3.0, RATE, amplitude=0.5)[0]
    got = caller(lambda: twilio_call(f"{server.base}/twilio", x))
    y = got.audio()
    assert y.shape[0] >= x.shape[0] - 0.3 * RATE  # all but the tail still queued at the stop
    steady = y[int(0.3 * RATE) : int(2.5 * RATE)]
    assert abs(db(steady) - (db(x) - 6)) < 0.5
    assert abs(peak_hz(steady, RATE) - 440) < 5
    assert all(len(m) == CHUNK for _, m in got.media[:-1])  # 20 ms chunks
    assert got.close_code == 1000
    status = server.status()
    assert status["calls"] == 0 and status["calls_total"] == 1
    assert status["ended"] == {"caller stopped the stream": 1}


def test_marks_follow_the_audio_before_them_and_come_back_as_events(
    call_server: Any, caller: Any
) -> None:
    logs: list[EventLog] = []

    def factory() -> Pipeline:
        logs.append(EventLog(name="log"))
        return Pipeline([MarkEvery(25, name="marks"), logs[-1]])

    server = call_server(factory)
    got = caller(lambda: twilio_call(f"{server.base}/twilio", tone(440, 3.0, RATE)[0]))
    assert [name for _, name, _ in got.marks][:4] == ["m1", "m2", "m3", "m4"]
    # The server's pacing starts no earlier than the first audio it got, which the caller sent
    # at ``started`` (the first media that came back may be late on a busy machine: its arrival
    # is no lower bound).
    first = got.started
    lead = 1  # TelephonySettings.lead_chunks
    for arrival, name, before in got.marks:
        k = int(name[1:])
        assert before == 25 * k  # exactly the audio emitted before the mark came first
        # paced: the mark cannot leave before the audio before it had time to play
        assert arrival - first >= (25 * k - 1 - lead) * CHUNK / RATE
    echoed = [e.payload["name"] for e in logs[0].events if e.kind == "mark" and e.stage == "caller"]
    assert echoed[:4] == ["m1", "m2", "m3", "m4"]


def test_dtmf_reaches_the_pipeline_as_events(call_server: Any, caller: Any) -> None:
    logs: list[EventLog] = []

    def factory() -> Pipeline:
        logs.append(EventLog(name="log"))
        return Pipeline([logs[-1]])

    server = call_server(factory)
    x = tone(440, 2.0, RATE)[0]
    caller(lambda: twilio_call(f"{server.base}/twilio", x, dtmf={10: "1", 30: "2", 60: "#"}))
    dtmf = [e for e in logs[0].events if e.kind == "dtmf"]
    assert [e.payload["digit"] for e in dtmf] == ["1", "2", "#"]
    assert all(e.stage == "caller" for e in dtmf)
    times = [e.time for e in dtmf]
    assert times == sorted(times) and all(t is not None for t in times)


def test_clear_drops_the_queued_audio(call_server: Any, caller: Any) -> None:
    server = call_server(lambda: Pipeline([Talker(3.0, digit="5", name="bot")]))
    x = tone(440, 2.5, RATE, amplitude=0.01)[0]
    got = caller(lambda: twilio_call(f"{server.base}/twilio", x, dtmf_after_media=(25, "5")))
    assert len(got.clears) == 1
    _, before = got.clears[0]
    assert len(got.media) == before  # nothing of the dropped audio after the clear
    assert got.audio().shape[0] < 2.0 * RATE  # the bot's 3 s were cut
    status_calls = server.status()
    assert status_calls["calls_total"] == 1


def test_bursts_and_loss_give_continuous_output(call_server: Any, caller: Any) -> None:
    calls: list[Any] = []
    server = call_server(lambda: Pipeline([Gain(gain_db=0, name="gain")]))
    x = tone(440, 6.0, RATE, amplitude=0.5)[0]

    async def call() -> Any:
        task = asyncio.create_task(
            twilio_call(
                f"{server.base}/twilio", x, burst=10, loss=0.1, seed=3, stop=False, tail_s=1.0
            )
        )
        while not task.done():
            await asyncio.sleep(0.5)
            calls.append(server.status())
        return await task

    got = caller(call)
    playout = next(s["list"][0]["playout"] for s in reversed(calls) if s["list"])
    assert playout["lost"] > 0 and playout["concealed"] >= playout["lost"], playout
    y = got.audio()
    assert y.shape[0] >= x.shape[0] - 0.5 * RATE
    frames = y[: (y.shape[0] // CHUNK) * CHUNK].reshape(-1, CHUNK)
    # from when the delay has grown to the bursts to the end of the caller's audio
    levels = [db(f) for f in frames[50 : x.shape[0] // CHUNK - 15]]
    assert min(levels) > db(x) - 10, "a gap in the output"
    assert abs(peak_hz(y[RATE : 5 * RATE], RATE) - 440) < 5


def test_ws_round_trip_with_the_python_client(call_server: Any, caller: Any) -> None:
    from stream.testing import split_frames
    from stream.transport.ws_client import connect_ws

    server = call_server(lambda: Pipeline([Gain(gain_db=-6, name="gain")]))
    x = tone(440, 2.0, 16000, amplitude=0.5)
    received: list[Any] = []
    result = caller(
        lambda: connect_ws(f"{server.base}/ws", split_frames(x, 16000, 320), received, rate=16000)
    )
    assert result.call is not None and result.frames_received > 0
    y = np.concatenate([f.samples[0] for f in received])
    assert {f.sample_rate for f in received} == {16000}
    steady = y[int(0.3 * 16000) : int(1.7 * 16000)]
    assert abs(db(steady) - (db(x[0]) - 6)) < 0.5
    assert abs(peak_hz(steady, 16000) - 440) < 5
    assert result.close_reason == "caller stopped the stream"


def test_limits_and_malformed_messages(call_server: Any, caller: Any) -> None:
    server = call_server(
        lambda: Pipeline([Gain(gain_db=0, name="gain")]),
        max_calls=3,  # the good call, and two plain ones
        max_errors=3,
        token="t0k",
        twilio_auth_token="s3cret",
        public_url="wss://calls.example.com",
    )
    from stream.transport.telephony.twilio import signature

    good = {"X-Twilio-Signature": signature("s3cret", "wss://calls.example.com/twilio")}

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        x = tone(440, 1.5, RATE)[0]
        out["unsigned"] = (await twilio_call(f"{server.base}/twilio", x)).handshake_status
        out["bad_sig"] = (
            await twilio_call(f"{server.base}/twilio", x, headers={"X-Twilio-Signature": "AAAA"})
        ).handshake_status
        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(f"{server.base}/ws")
            except aiohttp.WSServerHandshakeError as exc:
                out["no_token"] = exc.status
            # a good call runs beside a caller sending garbage: the garbage ends its own call only
            good_call = asyncio.create_task(twilio_call(f"{server.base}/twilio", x, headers=good))
            ws = await http.ws_connect(f"{server.base}/ws?token=t0k")
            await ws.send_str(
                json.dumps({"type": "hello", "rate": 16000, "channels": 1, "format": "s16le"})
            )
            out["hello"] = json.loads((await ws.receive(10)).data)
            await ws.send_bytes(b"\x01")  # half a sample
            await ws.send_str("{not json")
            await ws.send_str(json.dumps({"type": "nope"}))
            await ws.send_str(json.dumps({"type": "hello", "rate": 8000, "format": "s16le"}))
            messages = []
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    messages.append(json.loads(msg.data))
            out["errors"] = [m for m in messages if m["type"] == "error"]
            out["close"] = [m for m in messages if m["type"] == "close"]
            out["close_code"] = ws.close_code
            # the limit: with the good call, three calls are up and a fourth is refused
            a = await http.ws_connect(f"{server.base}/ws?token=t0k")
            b = await http.ws_connect(f"{server.base}/ws?token=t0k", headers={})
            try:
                await http.ws_connect(f"{server.base}/ws?token=t0k")
            except aiohttp.WSServerHandshakeError as exc:
                out["third"] = exc.status
            await a.close()
            await b.close()
            out["good"] = await good_call
        return out

    out = caller(run)
    assert out["unsigned"] == 403 and out["bad_sig"] == 403 and out["no_token"] == 403
    assert out["hello"]["type"] == "hello" and out["hello"]["rate"] == 16000
    assert len(out["errors"]) == 3
    assert "whole s16le frames" in out["errors"][0]["error"]
    assert out["close"][0]["reason"].startswith("too many malformed messages (4)")
    assert out["close_code"] == 1008
    assert out["third"] == 503
    good = out["good"]
    assert good.handshake_status is None and good.close_code == 1000
    assert good.audio().shape[0] > 1.0 * RATE
    status = server.status()
    assert status["refused"]["403"] == 3 and status["refused"]["503"] >= 1


def test_idle_call_is_closed(call_server: Any, caller: Any) -> None:
    server = call_server(lambda: Pipeline([Gain(gain_db=0, name="gain")]), idle_timeout=0.5)
    x = tone(440, 0.4, RATE)[0]
    got = caller(lambda: twilio_call(f"{server.base}/twilio", x, stop=False, tail_s=0.1))
    assert got.close_code == 1000
    assert server.status()["ended"] == {"no message for 0.5 s": 1}


def _echo_call(
    call_server: Any, caller: Any, hold: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, EchoCancel, list[Any]]:
    """A 10 s call whose caller plays what it receives through a room (``room_response``) into
    its microphone (``hold``: its sends held back a while); the pipeline (EchoCancel(
    reference="peer"), the default Kalman canceller, then a far-end talker) cancels that echo.
    Returns the microphone as the pipeline got it, the cancelled output, the canceller, and the
    events the pipeline got from the call."""
    probes: list[tuple[EventLog, Recorder, EchoCancel, FarEnd]] = []
    seconds = 10.0

    def factory() -> Pipeline:
        log, probe = EventLog(name="log"), Recorder(name="probe")
        far = FarEnd(seconds, RATE, name="far")
        aec = EchoCancel(reference="peer", name="aec")
        probes.append((log, probe, aec, far))
        return Pipeline([log, probe, aec, far])

    server = call_server(factory)
    rir = room_response(RATE, np.random.default_rng(0))
    silence = np.zeros(int(seconds * RATE), np.float32)
    speaker = Speaker(rir)
    caller(
        lambda: twilio_call(f"{server.base}/twilio", silence, room=speaker, hold=hold),
        timeout=180,
    )
    log, probe, aec, far = probes[0]
    raw, cancelled = probe.signal(), far.signal()
    n = min(raw.shape[0], cancelled.shape[0])
    return raw[:n], cancelled[:n], aec, log.events


def _erle(raw: np.ndarray, cancelled: np.ndarray, a: float, aec: EchoCancel) -> float:
    """Echo reduction from ``a`` s to half a second before the end; prints the details."""
    n = raw.shape[0]
    lo, hi = int(a * RATE), n - int(0.5 * RATE)
    assert hi - lo > 3 * RATE
    echo_db, left_db = db(raw[lo:hi]), db(cancelled[lo:hi])
    assert echo_db > -45, "no echo came back"
    per_s = [
        round(db(raw[i : i + RATE]) - db(cancelled[i : i + RATE]), 1)
        for i in range(0, n - RATE, RATE)
    ]
    print(
        f"echo {echo_db:.1f} dBFS, left {left_db:.1f} dBFS, ERLE {echo_db - left_db:.1f} dB; per "
        f"second {per_s}; bulk delay {aec.bulk_delay_ms} ms (moved {aec.delay_changes}x, last "
        f"estimate {aec.delay_estimate_ms} ms); stalls {aec.stalls}, unreferenced frames "
        f"{aec.unreferenced_frames}"
    )
    return echo_db - left_db


def test_echo_is_cancelled_on_a_call(call_server: Any, caller: Any) -> None:
    raw, cancelled, aec, _ = _echo_call(call_server, caller)
    # "auto" finds the echo (the estimate varies 85-135 ms with the call's timing); measured
    # 24.7-27.7 dB, also beside three CPU hogs (AEC3: 26-27 dB). Before the playout buffer's
    # stretches and skips were followed, a busy machine's took it down to 11-16 dB.
    erle = _erle(raw, cancelled, 3.0, aec)
    assert erle >= 20, erle


def test_echo_stays_cancelled_across_a_network_stall(call_server: Any, caller: Any) -> None:
    """The caller's sends stall for 200 ms at 4 s: the call's playout buffer conceals the gap
    (stretches) and then drops a frame a second to shrink its delay again (skips), each a
    ``playout_shift`` event. The canceller follows them: a second after the stall its depth is
    back (measured 27.1-27.7 dB from 5.5 s, with the skips in it); not followed, 1.2 dB."""
    raw, cancelled, aec, events = _echo_call(call_server, caller, hold=(200, 10))
    shifts = [(e.time, e.payload["shift_ms"]) for e in events if e.kind == PLAYOUT_SHIFT]
    assert sum(ms for t, ms in shifts if 4.0 <= t < 4.5) >= 100, shifts  # the stall stretched
    assert sum(1 for t, ms in shifts if 5.5 <= t < 9.0 and ms < 0) >= 2, shifts  # then skips
    erle = _erle(raw, cancelled, 5.5, aec)
    assert erle >= 18, erle


def test_telnyx_call_with_alaw(call_server: Any, caller: Any) -> None:
    """The second provider: Telnyx's names and framing, PCMA (A-law) audio both ways."""
    from stream.kernels.g711 import decode_float, encode_float

    server = call_server(lambda: Pipeline([Gain(gain_db=-6, name="gain")]))
    x = tone(440, 2.0, RATE, amplitude=0.5)[0]

    async def run() -> tuple[list[dict[str, Any]], np.ndarray]:
        import base64
        import time

        out: list[dict[str, Any]] = []
        audio: list[np.ndarray] = []
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/telnyx") as ws:
            await ws.send_str(json.dumps({"event": "connected", "version": "1.0.0"}))
            start = {
                "call_control_id": "v3:test",
                "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
            }
            await ws.send_str(
                json.dumps(
                    {"event": "start", "sequence_number": "1", "start": start, "stream_id": "s1"}
                )
            )

            async def receive() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    out.append(data)
                    if data["event"] == "media":
                        raw = base64.b64decode(data["media"]["payload"])
                        audio.append(decode_float(np.frombuffer(raw, np.uint8), "alaw"))

            receiver = asyncio.create_task(receive())
            t0 = time.monotonic()
            for i in range(x.shape[0] // CHUNK):
                payload = base64.b64encode(encode_float(x[i * CHUNK : (i + 1) * CHUNK], "alaw"))
                media = {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20)}
                message = {"event": "media", "sequence_number": str(i + 2), "stream_id": "s1"}
                await ws.send_str(
                    json.dumps({**message, "media": {**media, "payload": payload.decode()}})
                )
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))
            await asyncio.wait({receiver}, timeout=0.5)
            await ws.send_str(json.dumps({"event": "stop", "stream_id": "s1", "stop": {}}))
            await asyncio.wait({receiver}, timeout=10)
        return out, np.concatenate(audio)

    messages, y = caller(run)
    assert {m["event"] for m in messages} == {"media"}
    assert {m["stream_id"] for m in messages} == {"s1"}
    steady = y[int(0.3 * RATE) : int(1.5 * RATE)]
    assert abs(db(steady) - (db(x) - 6)) < 0.5
    assert abs(peak_hz(steady, RATE) - 440) < 5


def test_server_stop_closes_live_calls(call_server: Any, caller: Any) -> None:
    server = call_server(lambda: Pipeline([Gain(gain_db=0, name="gain")]))
    x = tone(440, 4.0, RATE)[0]

    async def stop_server() -> None:
        await asyncio.get_running_loop().run_in_executor(None, server.stop)

    got = caller(
        lambda: twilio_call(f"{server.base}/twilio", x, after_media=(10, stop_server), stop=False)
    )
    assert got.close_code == 1001  # going away: the server is stopping
    assert len(got.media) < x.shape[0] // CHUNK
    assert server.calls.status()["ended"] == {"server stopping": 1}


def test_a_failing_pipeline_ends_its_call_only(call_server: Any, caller: Any) -> None:
    from stream.testing import split_frames
    from stream.transport.ws_client import connect_ws

    from .nodes import FailAfter

    made: list[int] = []

    def factory() -> Pipeline:
        made.append(1)
        # the first pipeline built breaks after half a second; the second does not
        return Pipeline([FailAfter(25 if len(made) == 1 else 10**9, name="fragile")])

    server = call_server(factory)
    x = tone(440, 1.5, 16000)

    async def run() -> list[Any]:
        return list(
            await asyncio.gather(
                *(connect_ws(f"{server.base}/ws", split_frames(x, 16000, 320), []) for _ in "ab")
            )
        )

    results = sorted(caller(run), key=lambda r: r.close_code)
    fine, broken = results  # whichever call got the fragile pipeline (the first built)
    assert broken.close_code == 1011
    assert broken.close_reason is not None and "the stage broke" in broken.close_reason
    assert any(m["type"] == "error" and "the stage broke" in m["error"] for m in broken.messages)
    assert fine.close_code == 1000 and fine.close_reason == "caller stopped the stream"
    assert fine.audio_seconds_received > 1.0
