"""MicrophoneSource on virtual ALSA devices through the real sounddevice/PortAudio path."""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction
from typing import Any

import numpy as np
import psutil
import pytest

from media_nodes.audio import Gain
from media_nodes.devices import MicrophoneSource
from stream import Pipeline
from stream.errors import ConfigError
from stream.frames import AudioFrame
from stream.testing import join_frames, tone

from ._signal import native_threads, native_threads_back_to, peak_hz, rms_db, until
from .virtual_audio import VirtualAudio


async def take(pipeline: Pipeline, count: int) -> list[AudioFrame]:
    """The first ``count`` outputs; then the pipeline's stream is closed, as a consumer that
    stops early closes it."""
    frames: list[AudioFrame] = []
    async with contextlib.aclosing(pipeline.process()) as outputs:
        async for frame in outputs:
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


async def test_delivers_the_devices_samples_in_real_time(virtual: VirtualAudio) -> None:
    signal = tone(440, 1.2, 48000, amplitude=0.5)
    virtual.set_mic_input(signal)
    mic = MicrophoneSource("virtual_mic")
    start = time.monotonic()
    frames = await take(Pipeline([mic]), 50)
    elapsed = time.monotonic() - start

    assert [f.num_samples for f in frames] == [960] * 50
    assert [f.pts for f in frames] == [960 * i for i in range(50)]
    assert all(f.time_base == Fraction(1, 48000) and f.sample_rate == 48000 for f in frames)
    assert all(f.samples.dtype == np.float32 and f.planar for f in frames)
    got = join_frames(frames)
    np.testing.assert_array_equal(got, signal[:, : got.shape[1]])  # bit-exact, nothing skipped
    assert peak_hz(got[0], 48000) == pytest.approx(440, abs=0.5)
    assert rms_db(got) == pytest.approx(-9.03, abs=0.05)  # a sine of amplitude 0.5
    assert mic.stats == {
        "frames": 50,
        "overflows": 0,
        "dropped": 0,
        "buffered": mic.stats["buffered"],
    }
    assert elapsed > 0.7  # 1 s of audio arrives in real time (less the pipe's few ms)
    assert not mic.active


async def test_rate_channels_and_frame_size_are_what_was_asked(virtual: VirtualAudio) -> None:
    left, right = tone(440, 0.6, 16000), tone(1000, 0.6, 16000, amplitude=0.25)
    virtual.set_mic_input(np.concatenate([left, right]), sample_rate=16000)
    mic = MicrophoneSource("virtual_mic", sample_rate=16000, channels=2, frame_ms=10)
    frames = await take(Pipeline([mic]), 40)
    assert {f.samples.shape for f in frames} == {(2, 160)}
    assert [f.pts for f in frames] == [160 * i for i in range(40)]
    assert frames[0].time_base == Fraction(1, 16000)
    got = join_frames(frames)
    assert peak_hz(got[0], 16000) == pytest.approx(440, abs=0.5)
    assert peak_hz(got[1], 16000) == pytest.approx(1000, abs=0.5)
    np.testing.assert_array_equal(got[1], right[0, : got.shape[1]])


async def test_default_device_and_gain_chain_on_each_backend(
    virtual: VirtualAudio, backend: str
) -> None:
    signal = tone(440, 1.0, 48000)
    virtual.set_mic_input(signal)
    mic, gain = MicrophoneSource(), Gain(gain_db=-6.0)
    frames = await take(Pipeline([mic, gain]), 20)
    assert mic.device_info is not None and mic.device_info.name == "default"
    assert gain.backend == backend
    got = join_frames(frames)
    expected = signal[:, : got.shape[1]] * np.float32(10 ** (-6 / 20))
    np.testing.assert_allclose(got, expected, atol=1e-6)


async def test_unknown_name_lists_the_input_devices() -> None:
    with pytest.raises(ConfigError) as err:
        await Pipeline([MicrophoneSource("no such microphone", name="mic")]).initialize()
    message = str(err.value)
    assert message.startswith("mic: no input device matches 'no such microphone'; input devices:")
    assert "'virtual_mic'" in message and "'fast_mic'" in message
    assert err.value.stage == "mic"


async def test_device_by_index_or_unique_part_of_the_name() -> None:
    from media_nodes.devices import list_devices

    index = next(d["index"] for d in list_devices() if d["name"] == "fast_mic")
    by_index, by_part = MicrophoneSource(index), MicrophoneSource("FAST_M")
    by_index.initialize()
    by_part.initialize()
    assert by_index.device_info == by_part.device_info
    assert by_part.device_info is not None and by_part.device_info.name == "fast_mic"
    with pytest.raises(ConfigError, match="matches several input devices"):
        MicrophoneSource("mic").initialize()  # virtual_mic and fast_mic
    with pytest.raises(ConfigError, match="no input device with index 99"):
        MicrophoneSource(99).initialize()


async def test_a_rate_the_device_cannot_open_is_a_config_error() -> None:
    mic = MicrophoneSource("virtual_mic", sample_rate=1_000_000, name="mic")
    with pytest.raises(
        ConfigError,
        match=r"mic: input device \d+ 'virtual_mic' cannot open at "
        r"1000000 Hz with 1 channel\(s\).*Invalid sample rate",
    ):
        mic.initialize()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": -1}, "device index must be >= 0"),
        ({"device": ""}, "device name must not be empty"),
        ({"device": 1.5}, "device must be None, an index or a name"),
        ({"sample_rate": 0}, "sample_rate must be a positive int"),
        ({"sample_rate": 48000.0}, "sample_rate must be a positive int"),
        ({"channels": 0}, "channels must be an int >= 1"),
        ({"frame_ms": 0.0}, "frame_ms must give at least one sample"),
        ({"frame_ms": float("nan")}, "frame_ms must give at least one sample"),
        ({"buffer_frames": 0}, "buffer_frames must be an int >= 1"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MicrophoneSource(**kwargs)


def test_params_rebuild_the_node() -> None:
    mic = MicrophoneSource("virtual_mic", 16000, 2, 10.0, 7, name="m")
    params = mic.params()
    assert params == {
        "device": "virtual_mic",
        "sample_rate": 16000,
        "channels": 2,
        "frame_ms": 10.0,
        "buffer_frames": 7,
    }
    assert MicrophoneSource(**params).params() == params


async def test_stream_closes_when_the_consumer_stops_and_on_cleanup(
    virtual: VirtualAudio,
) -> None:
    virtual.set_mic_input(tone(440, 1.0))
    before = native_threads()
    mic = MicrophoneSource("virtual_mic")
    pipeline = Pipeline([mic])
    async with pipeline:
        async with contextlib.aclosing(pipeline.process()) as outputs:
            async for _ in outputs:
                device_stream = mic._stream
                assert mic.active and device_stream is not None and device_stream.active
                break
        # the consumer stopped: the device stream is closed before the pipeline's cleanup
        assert not mic.active and device_stream.closed
    assert native_threads_back_to(before)  # PortAudio's callback thread is gone

    # cleanup() closes a stream that is still open, whatever happened to its consumer
    agen = mic.stream(None)
    await agen.__anext__()
    device_stream = mic._stream
    assert device_stream is not None and device_stream.active
    mic.cleanup()
    assert device_stream.closed and not mic.active
    with contextlib.suppress(StopAsyncIteration):
        await agen.aclose()
    assert native_threads_back_to(before)


async def test_cancelled_consumer_closes_the_stream(virtual: VirtualAudio) -> None:
    virtual.set_mic_input(tone(440, 1.0))
    mic = MicrophoneSource("virtual_mic")
    pipeline = Pipeline([mic])
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in pipeline.process():
            started.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(30):
        await started.wait()  # a frame came: the device stream is open and running
    assert mic.active
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not mic.active


async def test_a_stalled_consumer_drops_the_oldest_frames_and_pts_stay_true(
    virtual: VirtualAudio,
) -> None:
    signal = tone(440, 4.0)
    virtual.set_mic_input(signal)
    mic = MicrophoneSource("virtual_mic", buffer_frames=5)
    pipeline = Pipeline([mic], queue_size=1)
    frames: list[AudioFrame] = []
    async with contextlib.aclosing(pipeline.process()) as outputs:
        async for frame in outputs:
            frames.append(frame)
            if len(frames) == 3:
                # Stall until the device has overrun the buffers (5 + the queue's 1 + the one in
                # hand) by 15 frames: however slowly this machine lets the device run.
                await until(lambda: mic.stats["dropped"] >= 15)
                in_stall = mic.stats["dropped"]
                assert mic.stats["buffered"] <= 5
            if len(frames) == 20:
                break
    stats = mic.stats
    pts = [f.pts for f in frames]
    assert all(f.num_samples == 960 for f in frames)
    assert pts == sorted(pts) and all(p is not None and p % 960 == 0 for p in pts)
    missing = pts[-1] // 960 + 1 - len(frames)  # type: ignore[operator]  # the device's from 0
    # Every frame dropped while the consumer stalled is older than the five it then found
    # buffered, so it is a pts gap of its length (as is one dropped before the first was taken,
    # when this machine was slow to start the consumer); one dropped once the consumer was back
    # (the machine starved it again) may come after the last frame taken.
    assert in_stall <= missing <= stats["dropped"]
    assert stats["overflows"] == stats["dropped"]  # no device overflow on this device
    assert 20 <= stats["frames"] <= 22  # and the pipeline's queue (1) and its pump (1) held
    for frame in frames:  # each frame is still the device's audio at its pts
        assert frame.pts is not None
        np.testing.assert_array_equal(frame.samples, signal[:, frame.pts : frame.pts + 960])


async def test_overflow_from_a_device_faster_than_the_consumer_stays_bounded(
    virtual: VirtualAudio,
) -> None:
    signal = tone(440, 5.0)
    virtual.set_mic_input(signal)
    mic = MicrophoneSource("fast_mic", buffer_frames=10)
    process = psutil.Process()
    agen = mic.stream(None)
    try:
        await agen.__anext__()
        rss = process.memory_info().rss
        peak = 0

        def overrun() -> bool:  # the consumer reads nothing while the device runs flat out
            nonlocal peak
            peak = max(peak, mic.stats["buffered"])
            return mic.stats["dropped"] > 100

        await until(overrun)
        grown = process.memory_info().rss - rss
        later = [await agen.__anext__() for _ in range(10)]
    finally:
        await agen.aclose()
    stats = mic.stats
    assert stats["overflows"] >= stats["dropped"] > 100
    assert peak <= 10
    assert grown < 20 * 2**20  # 10 frames of 960 floats are held, not the whole overflow
    pts = [f.pts for f in later]
    assert pts == sorted(set(pts)) and all(f.num_samples == 960 for f in later)
    assert not mic.active


def test_audio_the_device_lost_is_a_pts_gap_of_its_length() -> None:
    """An input overflow (the device lost audio: PortAudio's flag) cannot be caused on demand
    with the virtual device, which blocks instead of losing, so this calls the node's callback
    as PortAudio's thread does, with the times and flags a real overrun brings."""
    from types import SimpleNamespace

    rate, frame = 48000, 960
    mic = MicrophoneSource(sample_rate=rate, channels=1, frame_ms=20.0, buffer_frames=1000)
    block = np.zeros((frame, 1), np.float32)
    ok = SimpleNamespace(input_overflow=False)
    t0 = 100.0
    for i in range(20):  # 0.4 s of blocks, each at its time
        mic._callback(block, frame, SimpleNamespace(inputBufferAdcTime=t0 + i * 0.02), ok)
    assert mic.stream_origin == pytest.approx(t0)
    # 0.5 s lost, then one block 2 ms off its slot: jitter is not loss
    lost = SimpleNamespace(input_overflow=True)
    mic._callback(block, frame, SimpleNamespace(inputBufferAdcTime=t0 + 0.4 + 0.5), lost)
    mic._callback(block, frame, SimpleNamespace(inputBufferAdcTime=t0 + 0.92 + 0.002), lost)
    mic._callback(block, frame, SimpleNamespace(inputBufferAdcTime=t0 + 0.94), ok)
    pts = [p for p, _ in mic._buffer]
    assert pts[:20] == [i * frame for i in range(20)]
    assert pts[20:] == [45 * frame, 46 * frame, 47 * frame]  # 0.9 s: after the 0.5 s gap
    assert mic.stats["overflows"] == 2
    # the clock still maps pts to capture time: the origin did not move
    assert mic.stream_origin == pytest.approx(t0)
    # without device times (a host API that gives none) nothing can be seen: no gap
    blind = MicrophoneSource(sample_rate=rate, channels=1, frame_ms=20.0)
    for overflow in (False, True):
        blind._callback(
            block,
            frame,
            SimpleNamespace(inputBufferAdcTime=0.0),
            SimpleNamespace(input_overflow=overflow),
        )
    assert [p for p, _ in blind._buffer] == [0, frame]
