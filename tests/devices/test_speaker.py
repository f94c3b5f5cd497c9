"""SpeakerSink on virtual ALSA devices through the real sounddevice/PortAudio path."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from media_nodes.audio import Resample
from media_nodes.devices import SpeakerSink, list_devices
from stream import Pipeline
from stream.errors import ConfigError, FormatError, NodeError
from stream.frames import AudioFrame
from stream.testing import join_frames, run_node, split_frames, tone

from ._signal import (
    gaps,
    native_threads,
    native_threads_back_to,
    nonzero,
    peak_hz,
    rms_db,
    until,
)
from .virtual_audio import VirtualAudio


async def starving_feed(
    frames: list[AudioFrame], sink: SpeakerSink, every: int
) -> AsyncIterator[AudioFrame]:
    """Yield ``frames``; every ``every`` frames, stall until the device has run out of audio
    (an underrun is counted), however fast this machine lets it play."""
    for i, frame in enumerate(frames):
        if i and i % every == 0:
            before = sink.stats["underruns"]
            await until(lambda: sink.stats["underruns"] > before)  # noqa: B023 (awaited here)
        yield frame


async def test_plays_the_stream_exactly_paced_by_the_device(
    virtual: VirtualAudio, backend: str
) -> None:
    signal = tone(440, 1.0, 48000)
    virtual.set_speaker_format(48000, 1)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000)
    fed: list[float] = []

    async def feed() -> AsyncIterator[AudioFrame]:
        for frame in split_frames(signal, 48000, 960):
            yield frame
            fed.append(time.monotonic())

    start = time.monotonic()
    assert await Pipeline([sink]).run(feed()) == []
    elapsed = time.monotonic() - start
    played = virtual.played(1)

    # A producer faster than real time waited for the device: the last frame went in when all
    # but the jitter buffer (60 ms), PortAudio's and the pipe's few ms had played.
    assert fed[-1] - start > 0.8
    assert elapsed > 0.9  # flush() waited for the tail to play
    stats = sink.stats
    assert stats["frames"] == 50 and stats["resampled"] is False
    np.testing.assert_array_equal(nonzero(played), nonzero(signal))  # every sample, in order
    # Back to back, unless a machine busy enough to keep this producer from the ring for some
    # 40 ms made it run dry: then silence only where an underrun was counted.
    assert gaps(played[0]) <= stats["underruns"] <= gaps(played[0]) + 1
    if stats["underruns"] == 0:
        start_at = int(np.flatnonzero(played[0])[0]) - 1  # tone() starts at an exact zero
        np.testing.assert_array_equal(played[:, start_at : start_at + 48000], signal)
    assert not sink.active


async def test_a_16khz_stream_on_a_48khz_device_is_resampled(
    virtual: VirtualAudio, backend: str
) -> None:
    signal = tone(440, 1.0, 16000, amplitude=0.5)
    frames = split_frames(signal, 16000, 320)
    virtual.set_speaker_format(48000, 1)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000)
    await run_node(sink, frames)
    played = nonzero(virtual.played(1)[0])

    assert sink.stats["resampled"] is True and sink.device_rate == 48000
    assert sink.backend == backend
    expected = nonzero(join_frames(await run_node(Resample(48000), frames)))
    np.testing.assert_array_equal(played, expected)  # the engine's resampler, sample for sample
    assert played.size == pytest.approx(48000, abs=10)
    steady = played[2000:-2000]
    assert peak_hz(steady, 48000) == pytest.approx(440, abs=0.5)
    assert rms_db(steady) == pytest.approx(-9.03, abs=0.05)


async def test_no_rate_given_plays_at_the_devices_default_rate(virtual: VirtualAudio) -> None:
    default = next(d for d in list_devices() if d["name"] == "virtual_speaker")
    rate = round(default["default_sample_rate"])
    virtual.set_speaker_format(rate, 1)
    sink = SpeakerSink("virtual_speaker")
    await run_node(sink, split_frames(tone(1000, 0.5, 48000), 48000, 960))
    played = nonzero(virtual.played(1)[0])
    assert sink.device_rate == rate == 44100  # PortAudio's default for these ALSA devices
    assert sink.stats["resampled"] is True
    assert played.size == pytest.approx(22050, abs=10)
    assert peak_hz(played[1000:-1000], rate) == pytest.approx(1000, abs=0.5)


async def test_channels_are_adapted_like_channel_mix(virtual: VirtualAudio) -> None:
    mono = tone(440, 0.4, 48000)
    virtual.set_speaker_format(48000, 2)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000, channels=2)
    await run_node(sink, split_frames(mono, 48000, 960))
    played = virtual.played(2)
    assert sink.device_channels == 2
    np.testing.assert_array_equal(played[0], played[1])  # mono copied to both
    np.testing.assert_array_equal(nonzero(played[0]), nonzero(mono))

    stereo = np.concatenate([tone(440, 0.4, 48000), tone(440, 0.4, 48000, amplitude=0.25)])
    virtual.set_speaker_format(48000, 1)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000, channels=1)
    await run_node(sink, split_frames(stereo, 48000, 960))
    played = virtual.played(1)
    down = stereo.sum(axis=0, dtype=np.float32) * np.float32(0.5)  # ChannelMix's average
    np.testing.assert_array_equal(nonzero(played[0]), nonzero(down))

    virtual.set_speaker_format(48000, 2)  # channels=None: the stream's own count
    sink = SpeakerSink("virtual_speaker", sample_rate=48000)
    await run_node(sink, split_frames(stereo, 48000, 960))
    assert sink.device_channels == 2
    played = virtual.played(2)
    np.testing.assert_array_equal(nonzero(played[1]), nonzero(stereo[1]))


async def test_underruns_are_counted_and_filled_with_silence(virtual: VirtualAudio) -> None:
    signal = tone(440, 1.0, 48000)
    virtual.set_speaker_format(48000, 1)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000, jitter_ms=40)
    frames = split_frames(signal, 48000, 960)
    stalls = len(range(12, len(frames), 12))  # 4 stalls, each until the buffer ran dry
    await Pipeline([sink]).run(starving_feed(frames, sink, every=12))
    played = virtual.played(1)
    np.testing.assert_array_equal(nonzero(played), nonzero(signal))  # late, but all of it
    # Each underrun is one stretch of silence, then playback waits for a full buffer again; the
    # last one may fall after the last sample. (A busy machine can add underruns of its own.)
    assert stalls <= gaps(played[0]) <= sink.stats["underruns"] <= gaps(played[0]) + 1


async def test_a_device_faster_than_the_producer(virtual: VirtualAudio, backend: str) -> None:
    """``fast_speaker`` plays as fast as the CPU goes, so the buffer usually runs dry over and
    over (how often depends on the machine's load, so it is not asserted); what was played is
    still every sample, in order."""
    signal = tone(440, 0.5, 16000)
    sink = SpeakerSink("fast_speaker", sample_rate=48000)
    frames = split_frames(signal, 16000, 320)
    await run_node(sink, frames)
    played = virtual.fast_played(1)
    expected = join_frames(await run_node(Resample(48000), frames))
    np.testing.assert_array_equal(nonzero(played), nonzero(expected))


async def test_cleanup_closes_the_stream(virtual: VirtualAudio) -> None:
    before = native_threads()
    virtual.set_speaker_format(48000, 1)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000)
    pipeline = Pipeline([sink])
    async with pipeline:
        frames = split_frames(tone(440, 0.2), 48000, 960)
        await pipeline.run(frames)
        assert sink.active
        device_stream = sink._stream
    assert device_stream is not None and device_stream.closed
    assert not sink.active
    assert native_threads_back_to(before)
    virtual.played(1)


async def test_unknown_device_lists_the_output_devices() -> None:
    with pytest.raises(ConfigError) as err:
        SpeakerSink("nowhere", name="spk").initialize()
    message = str(err.value)
    assert message.startswith("spk: no output device matches 'nowhere'; output devices:")
    assert "'virtual_speaker'" in message and "'fast_speaker'" in message


async def test_a_rate_the_device_cannot_open_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot open at 1000000 Hz"):
        SpeakerSink("virtual_speaker", sample_rate=1_000_000).initialize()


async def test_audio_it_cannot_take_is_a_format_error(virtual: VirtualAudio) -> None:
    virtual.set_speaker_format(48000, 2)
    frames = split_frames(tone(440, 0.1), 48000, 960)
    s16 = [AudioFrame((f.samples * 32767).astype(np.int16), 48000, f.pts) for f in frames]
    with pytest.raises(NodeError) as err:
        await run_node(SpeakerSink("virtual_speaker", name="spk"), s16)
    assert isinstance(err.value.__cause__, FormatError)
    assert "expects float32 planar audio" in str(err.value)

    three = split_frames(tone(440, 0.1, channels=3), 48000, 960)
    with pytest.raises(NodeError, match="cannot play 3 channels on 2"):
        await run_node(SpeakerSink("virtual_speaker", channels=2, name="spk"), three)

    mixed = frames[:2] + split_frames(tone(440, 0.1, 16000), 16000, 320)
    with pytest.raises(NodeError, match="sample rate changed mid-stream from 48000 to 16000"):
        await run_node(SpeakerSink("virtual_speaker", sample_rate=48000, name="spk"), mixed)
    virtual.played(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": -2}, "device index must be >= 0"),
        ({"sample_rate": -1}, "sample_rate must be None or a positive int"),
        ({"channels": 0}, "channels must be None or an int >= 1"),
        ({"jitter_ms": 0}, "jitter_ms must be a number > 0"),
        ({"jitter_ms": float("inf")}, "jitter_ms must be a number > 0"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SpeakerSink(**kwargs)


def test_params_rebuild_the_node() -> None:
    sink = SpeakerSink("virtual_speaker", 48000, 2, 80.0, name="s")
    params = sink.params()
    assert params == {
        "device": "virtual_speaker",
        "sample_rate": 48000,
        "channels": 2,
        "jitter_ms": 80.0,
    }
    assert SpeakerSink(**params).params() == params


async def test_tone_source_pipeline_into_the_speaker(virtual: VirtualAudio, backend: str) -> None:
    from media_nodes import ToneSource

    virtual.set_speaker_format(48000, 2)
    source = ToneSource(1000.0, sample_rate=16000, channels=1, duration_s=0.5, amplitude=0.25)
    sink = SpeakerSink("virtual_speaker", sample_rate=48000, channels=2)
    assert await Pipeline([source, sink]).run() == []
    played = virtual.played(2)
    left = nonzero(played[0])
    np.testing.assert_array_equal(played[0], played[1])
    assert sink.stats["resampled"] is True
    # silence mid-stream only where an underrun was counted (none, unless the machine is busy)
    assert gaps(played[0]) <= sink.stats["underruns"] <= gaps(played[0]) + 1
    assert left.size == pytest.approx(24000, abs=10)
    assert peak_hz(left[1000:-1000], 48000) == pytest.approx(1000, abs=0.5)
    assert rms_db(left[1000:-1000]) == pytest.approx(-15.05, abs=0.05)
