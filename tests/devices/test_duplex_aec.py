"""SpeakerSink.reference() and `remotemedia live --aec` on the virtual ALSA devices.

The virtual microphone records a static file, so it cannot hear the speaker: these tests check
that the reference is exactly what was played, stamped on the microphone's clock, and that the
duplex pipeline runs. ERLE is measured on the synthetic echo path in tests/audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from media_nodes.devices import MicrophoneSource, SpeakerSink
from stream import Pipeline
from stream.frames import AudioFrame
from stream.testing import split_frames, tone

from .test_cli_live import remotemedia
from .virtual_audio import VirtualAudio

# On ALSA, PortAudio's stream time is CLOCK_MONOTONIC, the clock of time.monotonic() and of the
# virtual devices' drains.
ALIGN_S = 0.1  # the bound on |played - stamped| is ALIGN_S / 2 (measured: within 13 ms, load 10)
EDGE = 0.01  # a sample above this is the tone (amplitude 0.5): its first and last samples


async def _feed(frames: list[AudioFrame]) -> AsyncIterator[AudioFrame]:
    for frame in frames:
        yield frame


async def _play_with_reference(
    virtual: VirtualAudio, mic_rate: int
) -> tuple[MicrophoneSource, list[AudioFrame], np.ndarray, float, float]:
    """Play a 1 s tone with a microphone open; returns the microphone, the reference frames,
    what the speaker played, and the device clocks' origins: the speaker's (when its sample 0
    played) and the microphone's (when its sample 0 reached PortAudio)."""
    virtual.set_mic_input(np.zeros((1, mic_rate * 4), np.float32), mic_rate)
    virtual.set_speaker_format(48000, 1)
    mic = MicrophoneSource("virtual_mic", sample_rate=mic_rate)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000)
    signal = tone(440, 1.0, 48000, amplitude=0.5)
    refs: list[AudioFrame] = []
    heard = asyncio.Event()

    async def listen() -> None:
        async with contextlib.aclosing(mic.stream(None)) as frames:
            async for frame in frames:
                if (frame.pts or 0) >= 0.3 * mic_rate:
                    heard.set()

    async def follow(reference: AsyncIterator[AudioFrame]) -> None:
        async for frame in reference:
            refs.append(frame)

    listening = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(30):
            await heard.wait()  # 0.3 s captured: the microphone's clock has settled
            following = asyncio.create_task(follow(sink.reference(microphone=mic)))
            await Pipeline([sink]).run(_feed(split_frames(signal, 48000, 960)))
            await following  # the speaker stream stopped: the reference ends
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    virtual.mic_clock.settle()
    virtual.speaker.settle()
    # The virtual microphone hands a sample to PortAudio as it enters the FIFO, a pipe-full
    # before its drain (the device's clock) takes it; the speaker plays a sample as it is taken.
    mic_origin = virtual.mic_clock.origin() - virtual.mic_clock.pipe_bytes / (mic_rate * 4)
    speaker_origin = virtual.speaker.origin()
    return mic, refs, virtual.played(1), speaker_origin, mic_origin


def _edges(x: np.ndarray) -> tuple[int, int]:
    """Indices of the tone's first and last samples."""
    loud = np.flatnonzero(np.abs(x) > EDGE)
    return int(loud[0]), int(loud[-1])


@pytest.mark.parametrize("mic_rate", [48000, 16000])
async def test_reference_is_what_was_played_on_the_microphone_clock(
    virtual: VirtualAudio, mic_rate: int
) -> None:
    """What the speaker played comes back, stamped with the microphone pts at which it played.

    "When" is read on the virtual devices' own clocks (their drains), not on this test's event
    loop, which a busy machine delays. Those clocks lose the time this process is starved for
    (a stall, as a sound card's underrun or overflow), and each device loses its own; the stream
    clocks that SpeakerSink and MicrophoneSource fit follow such a step only over their 2-4 s
    window (StreamClock), longer than this test. So the comparison is on each device's clock
    counted from its own start: the tone's first and last samples are stamped where they played.
    """
    mic, refs, played, speaker_origin, mic_origin = await _play_with_reference(virtual, mic_rate)
    assert refs and all(f.sample_rate == mic_rate and f.channels == 1 for f in refs)
    # pts continuous on the microphone's sample clock
    for a, b in itertools.pairwise(refs):
        assert b.pts == (a.pts or 0) + a.num_samples
    ref = np.concatenate([f.samples for f in refs], axis=1)
    if mic_rate == 48000:
        # Every sample the callback played, in order; before it, only the silence PortAudio
        # primes the device with at start (no callback sees it).
        primed = played.shape[1] - ref.shape[1]
        assert 0 <= primed <= 0.1 * 48000
        assert not played[:, :primed].any()
        np.testing.assert_array_equal(played[:, primed:], ref)
    else:  # resampled to the microphone's rate: the same length within the filter's delay
        assert played.shape[1] / 3 - 0.1 * 16000 <= ref.shape[1] <= played.shape[1] / 3 + 40
    assert mic.stream_origin is not None
    first_pts = refs[0].pts
    assert first_pts is not None
    for played_at, stamped in zip(_edges(played[0]), _edges(ref[0]), strict=True):
        played_s = speaker_origin + played_at / 48000
        stamped_s = mic_origin + (first_pts + stamped) / mic_rate
        assert abs(played_s - stamped_s) < ALIGN_S / 2, (played_s - stamped_s, mic_rate)


async def test_an_unread_reference_stays_bounded(virtual: VirtualAudio) -> None:
    virtual.set_speaker_format(48000, 1)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000)
    reference = sink.reference(max_ms=100.0)  # never read
    await Pipeline([sink]).run(_feed(split_frames(tone(440, 1.0, 48000), 48000, 960)))
    stats = sink.reference_stats
    assert stats["played"] >= 48000
    assert stats["buffered"] <= 4800 and stats["dropped"] >= stats["played"] - 4800
    assert stats["played"] == stats["buffered"] + stats["dropped"]
    frames = [f async for f in reference]  # what is left: the newest 100 ms, then the end
    assert sum(f.num_samples for f in frames) == stats["buffered"]


def test_live_aec_runs_the_duplex_pipeline(virtual: VirtualAudio) -> None:
    virtual.set_mic_input(tone(440, 4.0, 48000, amplitude=0.5))
    virtual.set_speaker_format(44100, 1)  # the speaker's default rate: the reference is resampled
    run = remotemedia(virtual, "live", "--aec", "--seconds", "2")
    assert run.returncode == 0, run.stderr
    assert "echo_cancel" in run.stdout and "pipeline 'live'" in run.stdout
    assert virtual.played(1).any()


def test_live_aec_needs_the_speaker(virtual: VirtualAudio, tmp_path: Path) -> None:
    run = remotemedia(virtual, "live", "--aec", "--out", str(tmp_path / "x.wav"), "--seconds", "1")
    assert run.returncode == 1 and "--aec" in run.stderr
