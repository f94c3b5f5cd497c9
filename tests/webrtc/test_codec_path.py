"""The audio codec path: decoded and Opus-encoded on the session's loop by default, on aiortc's
threads with ``--audio-codec aiortc``; the audio comes back the same either way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import manifest
from .signals import active, dominant_hz, joined, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from stream.transport._aiortc import first_audio_codec  # noqa: E402
from stream.transport.webrtc import Peer  # noqa: E402

GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))


@pytest.mark.parametrize(("option", "path"), [("inline", "inline+opus"), ("aiortc", "aiortc")])
def test_codec_path_round_trip(
    hosts: Any, start_server: Any, tmp_path: Path, option: str, path: str
) -> None:
    from media_nodes.sources import ToneSource

    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--audio-codec", option)
    received: list[Any] = []
    live = threading.Event()
    seen: dict[str, Any] = {}

    async def peer() -> None:
        source = ToneSource(660, amplitude=0.5, duration_s=3.0, realtime=True)
        async with Peer(server.url, source, received) as p:
            live.set()
            await p.wait_ended(30)

    def watch() -> None:
        live.wait(60)
        status = server.wait_for(lambda s: s["sessions"] == 1 and s["list"][0]["frames_in"] > 20)
        seen["codec"] = status["list"][0]["audio_codec"]

    watcher = threading.Thread(target=watch)
    watcher.start()
    hosts.run_async("client", peer)
    watcher.join(60)
    assert seen.get("codec") == path
    x = active(joined(received))
    assert len(x) > 48000  # over a second of the tone came back
    x = x[-48000:-4800]
    assert dominant_hz(x) == pytest.approx(660, abs=2)
    assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=1.0)


def test_first_audio_codec_reads_the_answer() -> None:
    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
    )
    assert first_audio_codec(sdp) == "pcmu/8000"
    assert first_audio_codec(sdp.replace("SAVPF 0 111", "SAVPF 111 0")) == "opus/48000/2"
    assert first_audio_codec(sdp.replace("m=audio 9", "m=audio 0")) is None  # rejected
    assert first_audio_codec("v=0\r\nm=video 9 RTP 96\r\n") is None


async def test_opus_track_sends_mono_output_as_mono_opus() -> None:
    """A mono pipeline output makes mono Opus packets, stamped on the track's clock, which a
    stereo decoder (what WebRTC negotiates) plays on both channels at the output's level."""
    from fractions import Fraction

    import av

    from stream.frames import AudioFrame
    from stream.testing import split_frames, tone
    from stream.transport.tracks import AudioOutputTrack

    track = AudioOutputTrack(lead_ms=1000.0, max_buffer_ms=2000.0, trim_after_ms=None)
    track.encode_opus()
    first = await track.recv()  # silence before any output: stereo, as the track began
    for frame in split_frames(tone(1000, 1.0, 48000, amplitude=0.5), 48000, 960):
        assert isinstance(frame, AudioFrame) and frame.channels == 1
        track.put(frame)
    packets = [first] + [await track.recv() for _ in range(50)]
    assert [p.pts for p in packets] == [960 * i for i in range(51)]
    assert track.channels == 1
    decoder: Any = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", 48000
    out = []
    for packet in packets:
        packet.time_base = Fraction(1, 48000)
        for frame in decoder.decode(packet):
            out.append(frame.to_ndarray().reshape(-1, 2))
    pcm = np.concatenate(out)[-24000:].astype(np.float64) / 32768
    assert np.array_equal(pcm[:, 0], pcm[:, 1])
    assert 20 * np.log10(np.sqrt(np.mean(pcm[:, 0] ** 2))) == pytest.approx(TONE_DB, abs=0.5)
    track.stop()


def _s16_blocks(seconds_tone: float, seconds_silence: float) -> list[Any]:
    from stream.frames import AudioFrame

    t = np.arange(int(seconds_tone * 48000)) / 48000
    tone = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    x = np.concatenate([tone, np.zeros(int(seconds_silence * 48000), np.int16), tone])
    return [
        AudioFrame(x[i : i + 960, None].copy(), 48000, i, planar=False)
        for i in range(0, len(x), 960)
    ]


def _decode(packets: list[Any]) -> Any:
    from fractions import Fraction

    import av

    decoder: Any = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", 48000
    out = []
    for packet in packets:
        packet.time_base = Fraction(1, 48000)
        out += [f.to_ndarray().reshape(-1, 2)[:, 0] for f in decoder.decode(packet)]
    return np.concatenate(out).astype(np.float64) / 32768


def test_settled_silence_is_sent_without_the_encoder() -> None:
    """Zero blocks after the encoder settled reuse its silence packet: the same bytes libopus
    gives for them, pts continuous; the tone after the silence is encoded again, at its level."""
    from fractions import Fraction

    from stream.transport.tracks import OpusPacketizer

    blocks = _s16_blocks(0.5, 2.0)
    skipping, reference = OpusPacketizer(1), OpusPacketizer(1)
    sent = [p for b in blocks for p in skipping.encode_block(b)]
    every = [p for b in blocks for p in reference.encode(b.to_av())]
    assert [p.pts for p in sent] == [b.pts for b in blocks]
    assert {p.time_base for p in sent} == {Fraction(1, 48000)}  # aiortc stamps RTP from both
    silent = range(25, 125)  # the 2 s of zeros
    assert skipping.reused >= len(silent) - 10  # the encoder settles within a few blocks
    assert skipping.encoded + skipping.reused == len(blocks)
    assert all(bytes(sent[i]) == bytes(every[i]) for i in silent)
    out, ref = _decode(sent), _decode(every)
    quiet = out[30 * 960 : 120 * 960]
    assert np.abs(quiet).max() < 1e-3
    back = out[-12000:]  # the tone after the silence
    assert rms_db(back) == pytest.approx(rms_db(ref[-12000:]), abs=0.5)
    assert rms_db(back) == pytest.approx(TONE_DB, abs=0.5)


async def test_track_counts_reused_silence() -> None:
    """An output track with Opus on sends underrun silence through the same shortcut."""
    from stream.transport.tracks import AudioOutputTrack

    track = AudioOutputTrack(lead_ms=1000.0, max_buffer_ms=4000.0, trim_after_ms=None)
    track.encode_opus()
    for block in _s16_blocks(0.2, 1.0):
        track.put(block)
    packets = [await track.recv() for _ in range(70)]
    assert [p.pts for p in packets] == [960 * i for i in range(70)]
    assert track.silence_reused >= 40
    assert rms_db(_decode(packets)[-4800:]) == pytest.approx(TONE_DB, abs=0.5)
    track.stop()


async def test_settled_silence_received_is_not_decoded() -> None:
    """The inline decoder turns a peer's settled silence packets into zero frames without
    libopus: the same frames (format, pts, samples) as decoding them, and the tone after."""
    import asyncio

    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from stream.transport._aiortc import InlineAudioDecoder
    from stream.transport.tracks import OpusPacketizer

    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2)
    encoder = OpusPacketizer(1)
    packets = [bytes(p) for b in _s16_blocks(0.5, 2.0) for p in encoder.encode(b.to_av())]
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(), asyncio.Queue()]
    skipping, reference = (InlineAudioDecoder(q, threading.Event()) for q in queues)
    reference.SETTLED = len(packets) + 1  # never settles: decodes every packet
    for i, data in enumerate(packets):
        for decoder in (skipping, reference):
            decoder.put((opus, JitterFrame(data=data, timestamp=i * 960)))
    assert skipping.skipped >= 80 and reference.skipped == 0
    got, want = ([q.get_nowait() for _ in range(q.qsize())] for q in queues)
    assert len(got) == len(want) == len(packets)
    for a, b in zip(got, want, strict=True):
        assert (a.format.name, a.layout.name, a.sample_rate, a.pts, a.time_base, a.samples) == (
            b.format.name,
            b.layout.name,
            b.sample_rate,
            b.pts,
            b.time_base,
            b.samples,
        )
    x = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in got]) / 32768
    y = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in want]) / 32768
    assert not x[30 * 960 : 120 * 960].any()
    assert rms_db(x[-12000:]) == pytest.approx(rms_db(y[-12000:]), abs=0.5)
