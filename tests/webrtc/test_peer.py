"""A Python peer and the server, each on its own test host: audio and video through pipelines."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.frames import AudioFrame, VideoFrame
from stream.testing import split_frames, tone

from .conftest import REPO, manifest
from .signals import active, band_share, dominant_hz, joined, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from stream.transport.webrtc import Peer, connect  # noqa: E402

TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))  # rms of a 0.5-amplitude sine, about -9 dBFS


def _steady(received: list[Any], skip_s: float = 0.3) -> np.ndarray:
    x = active(joined(received))
    n = int(skip_s * 48000)
    return x[n : len(x) - n]


def test_tone_comes_back_through_gain(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]),
    )
    received: list[Any] = []

    async def run() -> Any:
        frames = split_frames(tone(440, 2.0, 48000, amplitude=0.5), 48000, 960)
        return await connect(server.url, frames, received)

    result = hosts.run_async("client", run)
    assert result.session
    assert result.frames_sent >= 100
    x = _steady(received)
    assert len(x) > 48000, f"only {len(x)} samples of audio came back"
    assert dominant_hz(x) == pytest.approx(440, abs=2)
    assert band_share(x, 440) > 0.99  # a clean sine, not noise or another tone
    assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=0.5)
    assert any(m["type"] == "level" for m in result.messages)
    hello = next(m for m in result.messages if m["type"] == "hello")
    assert hello["stages"][0]["settable"] == ["gain_db"]


def test_control_messages_change_the_pipeline_live(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": 0}}]),
    )
    received: list[Any] = []

    async def run() -> list[dict[str, Any]]:
        frames = split_frames(tone(1000, 3.0, 48000, amplitude=0.5), 48000, 960)
        answers = []
        async with Peer(server.url, frames, received) as peer:
            async with asyncio.timeout(30):  # a second of the tone back before the changes
                while peer.result.audio_seconds_received < 1.2:
                    await asyncio.sleep(0.05)
            assert peer.channel is not None
            for bad in ("not json", "[1, 2]", '{"type": "launch"}'):
                peer.channel.send(bad)
                answers.append(await peer.request({"type": "ping", "n": 1}))
            for message in (
                {"type": "set", "stage": "nope", "param": "gain_db", "value": 1},
                {"type": "set", "stage": "gain", "param": "ramp_ms", "value": 1},
                {"type": "set", "stage": "gain", "param": "gain_db", "value": "loud"},
                {"type": "set", "stage": "gain", "param": "gain_db", "value": 1e9},
                {"type": "set", "stage": "gain", "param": "gain_db", "value": -20, "id": 7},
            ):
                answers.append(await peer.request(message))
            await peer.wait_sent(10)
            await asyncio.sleep(0.5)
        errors = [m for m in peer.result.messages if m["type"] == "error"]
        assert len(errors) == 3 + 4, errors  # three unreadable, four refused settings
        return answers

    answers = hosts.run_async("client", run)
    assert all(a["type"] == "pong" for a in answers[:3])
    assert [a["type"] for a in answers[3:]] == ["error", "error", "error", "error", "ack"]
    assert "no stage named 'nope'" in answers[3]["message"]
    assert "cannot be set live" in answers[4]["message"]
    assert "takes a float" in answers[5]["message"]
    assert answers[7]["id"] == 7
    x = active(joined(received))
    before, after = x[12000:48000], x[-60000:-12000]
    assert rms_db(before) == pytest.approx(TONE_DB, abs=0.5)
    assert rms_db(after) == pytest.approx(TONE_DB - 20, abs=0.7)
    assert dominant_hz(after) == pytest.approx(1000, abs=2)


def _split_picture(width: int = 160, height: int = 120) -> np.ndarray:
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:, : width // 2] = 40
    pixels[:, width // 2 :] = 200
    return pixels


async def _audio_and_video(seconds: float) -> Any:
    from fractions import Fraction

    audio = split_frames(tone(440, seconds, 48000), 48000, 960)
    pixels = _split_picture()
    video = [
        VideoFrame(pixels.copy(), "rgb24", i * 6000, Fraction(1, 90000))  # 15 fps
        for i in range(int(seconds * 15))
    ]
    items: list[Any] = []
    for i, frame in enumerate(audio):  # interleave by time
        items.append(frame)
        if i % 3 == 0 and video:
            items.append(video.pop(0))
    for item in items:
        yield item


def test_video_comes_back_transformed(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server(
        "--allow-module",
        "webrtc.nodes",
        "--pipeline",
        manifest(tmp_path, [{"type": "webrtc.nodes:InvertVideo", "name": "invert"}]),
    )
    received: list[Any] = []

    async def run() -> Any:
        return await connect(server.url, _audio_and_video(3.0), received, video=True)

    hosts.run_async("client", run)
    pictures = [f for f in received if isinstance(f, VideoFrame)]
    assert len(pictures) >= 10, f"{len(pictures)} video frames came back\n{server.log()}"
    last = pictures[-1].pixels.astype(np.float64)
    width = last.shape[1]
    left, right = last[:, 8 : width // 2 - 8], last[:, width // 2 + 8 : -8]
    assert left.mean() == pytest.approx(255 - 40, abs=10)
    assert right.mean() == pytest.approx(255 - 200, abs=10)
    assert any(isinstance(f, AudioFrame) for f in received)


def test_connect_command_records_the_processed_file(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    import av

    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": 0}}]),
    )
    out = tmp_path / "back.wav"
    done = hosts.run(
        "client",
        [
            sys.executable, "-m", "stream.transport", "connect", server.url,
            "--tone", "880", "--seconds", "2", "--set", "gain.gain_db=-12", "--out", str(out),
            "--json",
        ],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        blocks = [f.to_ndarray() for f in container.decode(audio=0)]
    x = np.concatenate(blocks, axis=1)[0].astype(np.float64)
    x = active(x / 32768.0 if np.abs(x).max() > 2 else x)[24000:-12000]
    assert dominant_hz(x) == pytest.approx(880, abs=2)
    assert rms_db(x) == pytest.approx(TONE_DB - 12, abs=0.7)


def test_pinned_ice_address(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    ns, link = hosts.namespaces["server"], hosts.interfaces["server"]
    extra = "10.213.1.1"
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{extra}/24", "dev", link], check=True)
    try:
        answers = {}
        for label, args in (("all", []), ("pinned", ["--ice-address", hosts.server_ip])):
            server = start_server(*args)

            async def run(url: str = server.url) -> str:
                async with Peer(url, split_frames(tone(440, 0.5), 48000, 960), []) as p:
                    assert p.pc.remoteDescription is not None
                    return str(p.pc.remoteDescription.sdp)

            answers[label] = hosts.run_async("client", run)
            server.stop()
    finally:
        subprocess.run(["ip", "-n", ns, "addr", "del", f"{extra}/24", "dev", link], check=False)

    def hosts_in(sdp: str) -> set[str]:
        return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}

    assert hosts_in(answers["all"]) == {hosts.server_ip, extra}
    assert hosts_in(answers["pinned"]) == {hosts.server_ip}
