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
