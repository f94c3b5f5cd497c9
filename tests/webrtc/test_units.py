"""Parts of the transport that need no network: control protocol, track pacing, jitter buffer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest

from stream.frames import AudioFrame
from stream.testing import split_frames, tone

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")

from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from media_nodes import Gain, PassThrough
from stream.audio_adapter import AudioAdapter
from stream.transport import control
from stream.transport._aiortc import (
    AdaptiveAudioJitterBuffer,
    pin_host_addresses,
    resolve_host_addresses,
)
from stream.transport.server import _parse_offer
from stream.transport.tracks import AudioOutputTrack


class Target:
    def __init__(self) -> None:
        self.nodes = [Gain(gain_db=-6.0, name="gain"), PassThrough(name="pass")]
        self.paused = False
        self.periods = {"level_ms": 100.0, "stats_ms": 1000.0}

    def stats(self) -> dict[str, Any]:
        return {"frames_in": 3}

    def subscribe(
        self, level_ms: float | None = None, stats_ms: float | None = None
    ) -> dict[str, float]:
        for key, value in (("level_ms", level_ms), ("stats_ms", stats_ms)):
            if value is not None:
                self.periods[key] = value
        return self.periods


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{", "not JSON"),
        ("42", "JSON object"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ('{"type": "set"}', "needs 'stage' and 'param'"),
        ('{"type": "set", "stage": "x", "param": "gain_db", "value": 1}', "no stage named 'x'"),
        ('{"type": "set", "stage": "gain", "param": "ramp_ms", "value": 1}', "cannot be set"),
        ('{"type": "set", "stage": "gain", "param": "gain_db", "value": true}', "takes a float"),
        ('{"type": "set", "stage": "gain", "param": "gain_db", "value": 900}', "at most 770"),
        ('{"type": "set", "stage": "gain", "param": "__class__", "value": 1}', "cannot be set"),
        ('{"type": "get", "stage": "nope"}', "no stage named"),
        ('{"type": "subscribe"}', "subscribe needs 'level_ms'"),
        ('{"type": "subscribe", "level_ms": -1}', "subscribe needs"),
        ('{"type": "subscribe", "stats_ms": true}', "subscribe needs"),
        ('{"type": "subscribe", "level_ms": 0, "stats_ms": "1"}', "subscribe needs"),
        ("x" * (control.MAX_MESSAGE_BYTES + 1), "too large"),
    ],
)
def test_bad_control_messages_get_errors(raw: str, expected: str) -> None:
    target = Target()
    answers = control.handle(raw, target)
    assert [a["type"] for a in answers] == ["error"]
    assert expected in answers[0]["message"]
    assert target.nodes[0].gain_db == -6.0  # type: ignore[attr-defined]


def test_control_messages_do_what_they_say() -> None:
    target = Target()
    ack = control.handle(
        '{"type": "set", "stage": "gain", "param": "gain_db", "value": -20, "id": 1}', target
    )
    assert ack == [
        {
            "type": "ack",
            "request": "set",
            "id": 1,
            "stage": "gain",
            "param": "gain_db",
            "value": -20,
        }
    ]
    assert target.nodes[0].gain_db == -20.0  # type: ignore[attr-defined]
    paused = control.handle('{"type": "pause"}', target)
    assert target.paused and paused[1] == {"type": "state", "paused": True}
    control.handle('{"type": "resume"}', target)
    assert not target.paused
    got = control.handle('{"type": "get"}', target)[0]
    assert [s["name"] for s in got["stages"]] == ["gain", "pass"]
    assert got["stages"][0]["settable"] == ["gain_db"]
    assert control.handle('{"type": "ping", "t": 5}', target) == [{"type": "pong", "t": 5}]
    assert control.handle('{"type": "stats"}', target)[0]["frames_in"] == 3
    subscribed = control.handle('{"type": "subscribe", "level_ms": 0, "id": 2}', target)
    assert subscribed == [
        {"type": "ack", "request": "subscribe", "id": 2, "level_ms": 0.0, "stats_ms": 1000.0}
    ]
    json.dumps(got)  # everything is JSON


async def _recv_times(track: AudioOutputTrack, n: int) -> list[tuple[float, Any]]:
    out = []
    for _ in range(n):
        frame = await track.recv()
        out.append((time.perf_counter(), frame))
    return out


async def test_output_track_paces_20ms_frames_with_continuous_pts() -> None:
    track = AudioOutputTrack(lead_ms=0, max_buffer_ms=1000)
    for frame in split_frames(tone(440, 0.5, 16000, channels=1), 16000, 160):  # 10 ms at 16 kHz
        track.put(frame)
    got = await _recv_times(track, 20)
    frames = [f for _, f in got]
    assert all(f.sample_rate == 48000 and f.samples == 960 for f in frames)
    assert all(f.format.name == "s16" and len(f.layout.channels) == 2 for f in frames)
    assert [f.pts for f in frames] == [i * 960 for i in range(20)]
    span = got[-1][0] - got[0][0]
    assert span >= 19 * 0.020 - 0.015  # paced on the media clock: never ahead of it
    pcm = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames]) / 32768
    assert np.abs(pcm).max() == pytest.approx(0.5, abs=0.02)  # resampled, not attenuated
    track.stop()


async def test_output_track_fills_gaps_with_silence_and_ends() -> None:
    track = AudioOutputTrack(grace_ms=10)
    track.put(AudioFrame(np.full((1, 960), 0.25, np.float32), 48000, 0))
    first = await track.recv()
    gap = await track.recv()  # nothing queued: silence after the grace period
    assert np.abs(gap.to_ndarray()).max() == 0
    assert track.underruns == 1 and gap.pts == 960
    assert np.abs(first.to_ndarray()).max() > 0
    track.put(AudioFrame(np.full((1, 480), 0.25, np.float32), 48000, 960))
    track.end()
    tail = await track.recv()  # the padded last frame
    assert tail.pts == 1920 and tail.samples == 960
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended"


async def test_output_track_bounds_its_buffer() -> None:
    track = AudioOutputTrack(max_buffer_ms=100)
    for frame in split_frames(tone(440, 1.0), 48000, 960):
        track.put(frame)
    assert track.buffered_ms == 100 and track.dropped == 45
    track.stop()


def test_converter_mixes_resamples_and_rebuffers() -> None:
    conv = AudioAdapter("s16", 48000, 2, 960)
    out = []
    for frame in split_frames(tone(1000, 0.2, 8000, channels=1), 8000, 80):
        out += conv.convert(frame)
    out += conv.flush()
    assert all(f.format == "s16" and f.channels == 2 and f.num_samples == 960 for f in out)
    assert sum(f.num_samples for f in out) >= 0.2 * 48000
    conv.close()


def _packet(seq: int) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq % 65536, timestamp=seq * 960)
    packet._data = bytes([seq % 256])  # type: ignore[attr-defined]
    return packet


def _run(buffer: AdaptiveAudioJitterBuffer, order: list[int]) -> list[int]:
    out = []
    for seq in order:
        _, frame = buffer.add(_packet(seq))
        if frame is not None:
            out.append(frame.timestamp // 960)
    return out


def test_jitter_buffer_passes_in_order_packets_at_once() -> None:
    assert _run(AdaptiveAudioJitterBuffer(3), list(range(65530, 65546))) == list(
        range(65530, 65546)
    )


def test_jitter_buffer_reorders_and_skips_losses() -> None:
    buffer = AdaptiveAudioJitterBuffer(depth=2)
    assert _run(buffer, [0, 2, 1, 3]) == [0, 1, 2]  # 2 waits for 1, then one per arrival
    buffer = AdaptiveAudioJitterBuffer(depth=2)
    assert _run(buffer, [0, 2, 3, 4, 5]) == [0, 2, 3, 4]  # 1 is lost: skipped after 2 waits
    assert buffer.skipped == 1
    assert _run(buffer, [1]) == []  # too late now
    assert buffer.late == 1


def test_jitter_buffer_shrinks_its_backlog() -> None:
    buffer = AdaptiveAudioJitterBuffer(depth=2, shrink_after=5)
    out = _run(buffer, [0, 2, 1, *range(3, 12)])
    assert buffer.dropped == 1
    assert out[-1] == 11  # caught up: the newest packet goes straight out again


def test_offer_checks() -> None:
    for body in (b"", b"{}", b'{"type": "offer", "sdp": 5}', b'{"type": "offer", "sdp": "v=0"}'):
        offer, problem = _parse_offer(body)
        assert offer is None and problem


def test_ice_address_resolution() -> None:
    assert resolve_host_addresses(["10.0.0.1", " ", "lo"]) >= {"10.0.0.1", "127.0.0.1"}
    with pytest.raises(ValueError, match="neither an IP address nor an interface"):
        resolve_host_addresses(["no-such-interface0"])
    import aioice.ice

    with pin_host_addresses(frozenset({"127.0.0.1"})):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_pinning_is_per_context() -> None:
    import aioice.ice

    async def gather(pin: frozenset[str] | None) -> list[str]:
        with pin_host_addresses(pin):
            await asyncio.sleep(0)
            return aioice.ice.get_host_addresses(True, False)

    async def both() -> tuple[list[str], list[str]]:
        a, b = await asyncio.gather(gather(frozenset({"127.0.0.1"})), gather(None))
        return a, b

    pinned, free = asyncio.run(both())
    assert pinned == ["127.0.0.1"] and "127.0.0.1" not in free
