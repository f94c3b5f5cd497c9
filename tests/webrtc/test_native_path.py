"""The native audio path (``stream/transport/native_rtp.py``): a session's audio RTP in the
engine's ``RtpAudioLeg`` under aiortc's ICE and DTLS, against a real aiortc peer on loopback;
the offer-reading it decides with; and the fallback to aiortc's path."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from stream import Pipeline
from stream.engine import has_rtp_audio_leg

from .signals import dominant_hz, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from aiortc import RTCPeerConnection  # noqa: E402
from aiortc.mediastreams import MediaStreamTrack  # noqa: E402

from media_nodes import Gain  # noqa: E402
from stream.transport._aiortc import rtc_configuration  # noqa: E402
from stream.transport.host import SessionHost  # noqa: E402
from stream.transport.native_rtp import plan_audio  # noqa: E402
from stream.transport.session import SessionOptions  # noqa: E402

from .loopback import LOOPBACK, loopback_peer  # noqa: E402

TONE_HZ, TONE_AMPLITUDE = 440.0, 0.5
TONE_DB = 20 * np.log10(TONE_AMPLITUDE / np.sqrt(2))
needs_leg = pytest.mark.skipif(
    not has_rtp_audio_leg(), reason="the engine has no RtpAudioLeg, or the runtime is Python-only"
)


class ToneTrack(MediaStreamTrack):
    """A stereo 48 kHz tone in 20 ms frames, paced in real time (as a microphone gives them)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._sent = 0

    async def recv(self) -> Any:
        now = time.monotonic()
        self._start = now if self._start is None else self._start
        wait = self._start + self._sent * 0.02 - now
        if wait > 0:
            await asyncio.sleep(wait)  # pacing, as a capture device's clock does
        pts = self._sent * 960
        self._sent += 1
        t = (pts + np.arange(960)) / 48000
        tone = np.round(TONE_AMPLITUDE * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2)[None, :], format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        frame.pts = pts
        frame.time_base = Fraction(1, 48000)
        return frame


async def _offer_sdp(*kinds: str) -> str:
    pc = RTCPeerConnection(rtc_configuration())
    try:
        for kind in kinds:
            pc.addTransceiver(kind)
        offer = await pc.createOffer()
        return str(offer.sdp)
    finally:
        await pc.close()


def test_plan_audio_reads_the_offer() -> None:
    sdp = asyncio.run(_offer_sdp("audio", "video"))
    plan = plan_audio(sdp)
    assert plan is not None
    ssrc_line = next(line for line in sdp.splitlines() if line.startswith("a=ssrc:"))
    assert plan.remote_ssrc == int(ssrc_line.split()[0].split(":")[1])
    opus = next(line for line in sdp.splitlines() if "opus/48000/2" in line)
    assert plan.payload_type == int(opus.split()[0].split(":")[1])
    assert plan.mid == "0"


def test_plan_audio_refuses_what_it_cannot_carry() -> None:
    sdp = asyncio.run(_offer_sdp("audio"))
    no_ssrc = "\r\n".join(line for line in sdp.splitlines() if not line.startswith("a=ssrc"))
    assert plan_audio(no_ssrc + "\r\n") is None  # the SSRC is learned from the offer only
    assert plan_audio(asyncio.run(_offer_sdp("audio", "audio"))) is None  # two audio sections
    assert plan_audio(sdp.replace("opus/48000/2", "opus/24000/2")) is None  # no 48 kHz Opus
    assert plan_audio("v=0\r\nnot sdp") is None


async def _session(
    options: SessionOptions, edit_offer: Any = None, gain_backend: str | None = None
) -> dict[str, Any]:
    """A Gain(-6 dB) session on a SessionHost served to an aiortc peer on 127.0.0.1 that sends a
    tone; runs until the server has sampled its round trip and over 50 RTP packets each way, and
    the peer has 1.5 s of audio back.
    Returns the live status, the host status after the close and the audio the peer got."""
    host = SessionHost(
        lambda: Pipeline([Gain(gain_db=-6.0, name="gain", backend=gain_backend)]), options
    )
    got: list[np.ndarray] = []

    def heard(frame: Any) -> None:
        got.append(frame.to_ndarray().reshape(-1, 2)[:, 0])

    async with loopback_peer(host, "s1", ToneTrack(), on_frame=heard, edit_offer=edit_offer):
        deadline = time.monotonic() + 40
        while True:
            live = host.status()["list"][0]
            seconds = sum(len(x) for x in got) / 48000
            t = live["transport"]  # sampled once a second
            counted = min(t["packets_received"]["audio"], t["packets_sent"]["audio"])
            if t["round_trip"]["count"] > 0 and counted > 50 and seconds > 1.5:
                break
            assert time.monotonic() < deadline, f"no round trip and audio in 40 s: {live}"
            await asyncio.sleep(0.1)  # polling with a deadline: samples come every second
        await host.close_all("test over")
        return {"live": live, "after": host.status(), "audio": np.concatenate(got)}


def _tone_back(audio: np.ndarray) -> np.ndarray:
    x = audio.astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(x) > 0.05)
    assert len(loud) > 48000, "the tone did not come back"
    return x[loud[0] + 4800 : loud[-1] - 4800]


@needs_leg
@pytest.mark.parametrize(
    ("gain_backend", "codec"),
    [(None, "native relay"), ("python", "native")],
    ids=["relay", "python-stage"],
)
def test_native_session_carries_audio_both_ways_and_keeps_rtcp(
    gain_backend: str | None, codec: str
) -> None:
    """A pipeline of native stages runs inside the leg's relay call; one with a Python stage
    gets the leg's decoded frames and hands it paced blocks to send."""
    got = asyncio.run(_session(SessionOptions(ice_addresses=LOOPBACK), gain_backend=gain_backend))
    live = got["live"]
    assert live["audio_transport"] == "native" and live["audio_codec"] == codec
    assert live["frames_in"] > 50 and live["stages"][0]["frames_in"] > 50
    leg = live["audio_native"]
    assert leg["packets_received"] > 50 and leg["frames_decoded"] > 50
    assert leg["packets_sent"] > 50
    if codec == "native relay":  # on a host pair: the engine's thread on the pair's socket,
        # which handed aioice the rest (DTLS, RTCP: the round trip below needs them)
        assert leg["relay_thread"] == 1 and leg["relay_passed"] > 0
        assert leg["relay_passed_dropped"] == 0
    assert leg["auth_failures"] == leg["decode_errors"] == leg["packets_malformed"] == 0
    assert leg["other_payload"] == 0
    # aiortc's RTCP and getStats read the leg: the session ran until the peer's receiver reports
    # on what the leg sent gave a round trip, and the packets were counted (``_session``)
    transport = live["transport"]
    assert transport["packets_received"]["audio"] <= leg["packets_received"]
    assert transport["bytes_received"] > 0 and transport["bytes_sent"] > 0
    x = _tone_back(got["audio"])
    assert dominant_hz(x) == pytest.approx(TONE_HZ, abs=2)
    assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=1.0)
    after = got["after"]
    assert after["sessions"] == 0
    assert after["metrics"]["ended_transport"]["packets_received"]["audio"] >= 50


def test_aiortc_path_when_asked_or_when_the_offer_names_no_ssrc() -> None:
    asked = asyncio.run(_session(SessionOptions(ice_addresses=LOOPBACK, native_rtp=False)))
    assert asked["live"]["audio_transport"] == "aiortc"
    assert asked["live"]["audio_native"] is None

    def strip_ssrc(sdp: str) -> str:
        return "".join(line + "\r\n" for line in sdp.splitlines() if not line.startswith("a=ssrc"))

    unnamed = asyncio.run(_session(SessionOptions(ice_addresses=LOOPBACK), strip_ssrc))
    assert unnamed["live"]["audio_transport"] == "aiortc"
    for got in (asked, unnamed):
        x = _tone_back(got["audio"])
        assert dominant_hz(x) == pytest.approx(TONE_HZ, abs=2)
        assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=1.0)


@needs_leg
def test_receive_statistics_fit_an_rtcp_report_before_the_first_packet() -> None:
    """aiortc's receiver reports read the leg's statistics from the moment DTLS connects; a
    report aiortc cannot serialize would end its RTCP task, and then its receiver never stops."""
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    from stream.engine import rtp_audio_leg
    from stream.transport.native_rtp import LegStreamStatistics

    leg = rtp_audio_leg(
        "SRTP_AES128_CM_SHA1_80",
        bytes(30),
        bytes(30),
        remote_ssrc=1,
        local_ssrc=2,
        payload_type=111,
    )
    stats = LegStreamStatistics(leg)
    assert stats.packets_expected == 0 and stats.packets_lost == 0
    report = RtcpReceiverInfo(
        ssrc=1,
        fraction_lost=stats.fraction_lost,
        packets_lost=stats.packets_lost,
        highest_sequence=stats.max_seq,
        jitter=stats.jitter,
        lsr=0,
        dlsr=0,
    )
    assert len(bytes(RtcpRrPacket(ssrc=2, reports=[report]))) == 32


def _refuse_legs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the engine refuses to make a leg when DTLS connects."""
    from stream import engine
    from stream.errors import BackendUnavailable

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("no leg (fault injected by the test)")

    monkeypatch.setattr(engine, "rtp_audio_leg", refuse)


@needs_leg
def test_a_leg_that_cannot_start_leaves_the_audio_to_aiortc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _refuse_legs(monkeypatch)
    got = asyncio.run(_session(SessionOptions(ice_addresses=LOOPBACK), gain_backend="python"))
    assert got["live"]["audio_transport"] == "aiortc"
    x = _tone_back(got["audio"])  # aiortc's receiver and sender took over, nothing lost
    assert dominant_hz(x) == pytest.approx(TONE_HZ, abs=2)
    assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=1.0)


@needs_leg
def test_a_relay_whose_leg_cannot_start_ends_its_session_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _refuse_legs(monkeypatch)

    async def run() -> Any:
        host = SessionHost(
            lambda: Pipeline([Gain(gain_db=-6.0, name="gain")]),
            SessionOptions(ice_addresses=LOOPBACK),
        )
        async with loopback_peer(host, "s1", ToneTrack()):
            session = host.sessions["s1"]
            deadline = time.monotonic() + 30
            while not session.closed:
                assert time.monotonic() < deadline, session.status()
                await asyncio.sleep(0.1)  # polling with a deadline
            return session

    session = asyncio.run(run())
    assert session.close_reason == "pipeline failed"
    assert session.error is not None and "no leg" in session.error


@needs_leg
def test_relay_thread_pauses_and_resumes_and_messages_can_be_turned_off() -> None:
    """A paused relay session drops the peer's audio on the engine's thread from then on
    (counted as ``paused`` drops) and sends nothing back; resumed, the audio comes back. A peer
    that asks for no levels or stats gets none; the session's task then reads the leg once a
    second."""

    async def run() -> tuple[int, tuple[int, int], tuple[int, int], list[str]]:
        host = SessionHost(
            lambda: Pipeline([Gain(gain_db=-6.0, name="gain")]),
            SessionOptions(ice_addresses=LOOPBACK),
        )
        heard = [0]
        async with loopback_peer(
            host, "s1", ToneTrack(), on_frame=lambda f: heard.__setitem__(0, heard[0] + 1)
        ):
            session = host.sessions["s1"]
            sent: list[str] = []
            send = session.send

            def spy(message: Any) -> None:  # what goes to the data channel
                sent.append(message.get("type", "") if isinstance(message, dict) else "")
                send(message)

            session.send = spy  # type: ignore[method-assign]

            async def until(what: str, done: Any) -> None:
                deadline = time.monotonic() + 30
                while not done():
                    assert time.monotonic() < deadline, f"{what}: {session.stats()}"
                    await asyncio.sleep(0.05)  # polling with a deadline

            def leg() -> dict[str, Any]:
                return session.stats()["audio_native"] or {}

            await until("relay thread", lambda: leg().get("relay_thread") == 1 and heard[0] > 25)
            drops = session.pipeline.stats().drops
            session.paused = True

            def paused_drops() -> int:
                return int(session.pipeline.stats().drops.get("paused", 0))

            await until("drops", lambda: paused_drops() > 0)
            paused_frames, dropped = leg()["relay_frames"], paused_drops()
            await until("more drops", lambda: paused_drops() > dropped + 25)
            assert leg()["relay_frames"] == paused_frames  # none relayed while paused
            session.paused = False
            await until("resume", lambda: leg()["relay_frames"] > paused_frames + 25)
            assert session.subscribe(level_ms=1) == {"level_ms": 20.0, "stats_ms": 1000.0}
            assert session.subscribe(stats_ms=1e9)["stats_ms"] == 60_000.0
            assert session.subscribe(0, 0) == {"level_ms": 0.0, "stats_ms": 0.0}
            await asyncio.sleep(0)
            levels_before, stats_before = sent.count("level"), sent.count("stats")
            mark = leg()["relay_frames"]
            await until("frames", lambda: leg()["relay_frames"] > mark + 100)  # > 2 s of audio
            after = sent.count("level"), sent.count("stats")
            await host.close_all("test over")
            return drops.get("paused", 0), (levels_before, stats_before), after, sent

    drops_before, before, after, sent = asyncio.run(run())
    assert drops_before == 0
    assert before[0] > 0 and before[1] > 0, sent
    assert after == before, sent  # none of either once the peer asked for none
