"""LevelMeter (docs/stages-audio.md): levels of known signals, audio passed bit-exact, event
timing, typed errors, and the kernels' parity and split invariance."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import media_nodes.audio as twins
from media_nodes.audio import Gain, LevelMeter
from stream import AudioFrame, ConfigError, Event, NodeError, Pipeline, VideoFrame
from stream.errors import FormatError
from stream.testing import noise, run_node, split_frames, tone

from ._util import kernel_module

PYTHON_ONLY = os.environ.get("REMOTEMEDIA_RUNTIME") == "python"
needs_engine = pytest.mark.skipif(PYTHON_ONLY, reason="Python-only session: needs the engine")
LEVEL_TOL_DB = 1e-6  # between backends (docs/stages-audio.md)


def db(x: float) -> float:
    return 20 * math.log10(x)


def frames_and_events(out: list[Any]) -> tuple[list[AudioFrame], list[Event]]:
    return [o for o in out if isinstance(o, AudioFrame)], [o for o in out if isinstance(o, Event)]


# --------------------------------------------------------------------------- known levels


@pytest.mark.parametrize("amplitude_db", [0.0, -6.0, -20.0, -43.5])
@pytest.mark.parametrize("channels", [1, 2])
async def test_tone_levels_within_a_tenth_of_a_db(
    backend: str, amplitude_db: float, channels: int
) -> None:
    amplitude = 10 ** (amplitude_db / 20)
    # 1 kHz at 48 kHz: 48 samples a period, so every 20 ms frame holds whole periods and crests.
    signal = tone(1000, 1.0, 48000, channels=channels, amplitude=amplitude)
    node = LevelMeter(window_ms=300.0, interval_ms=0.0)

    out = await run_node(node, split_frames(signal, 48000, 960))

    assert node.backend == backend
    _, events = frames_and_events(out)
    assert len(events) == 50
    for e in events:
        assert e.payload["rms_db"] == pytest.approx(amplitude_db - db(math.sqrt(2)), abs=0.1)
        assert e.payload["peak_db"] == pytest.approx(amplitude_db, abs=0.1)
        assert e.payload["window_rms_db"] == pytest.approx(amplitude_db - 3.0103, abs=0.1)
        assert e.payload["window_peak_db"] == pytest.approx(amplitude_db, abs=0.1)
    assert node.rms_db == events[-1].payload["rms_db"]
    assert node.window_peak_db == events[-1].payload["window_peak_db"]


async def test_channels_and_square_waves_measure_exactly(backend: str) -> None:
    # Channel 0 a +-0.5 square wave, channel 1 silent: mean square 0.125 over both channels.
    x = np.zeros((2, 960), np.float32)
    x[0] = np.where(np.arange(960) % 2 == 0, 0.5, -0.5)
    node = LevelMeter()
    await run_node(node, [AudioFrame(x, 48000, 0)])
    assert node.rms_db == pytest.approx(db(math.sqrt(0.125)), abs=1e-9)
    assert node.peak_db == pytest.approx(db(0.5), abs=1e-9)


async def test_window_covers_the_last_window_ms(backend: str) -> None:
    # 0.5 s of a -6 dBFS tone then silence; a 100 ms window, 10 ms frames.
    signal = np.concatenate(
        [tone(1000, 0.5, 48000, amplitude=0.5), np.zeros((1, 48000), np.float32)], axis=1
    )
    node = LevelMeter(window_ms=100.0, interval_ms=0.0)
    out = await run_node(node, split_frames(signal, 48000, 480))
    events = [o for o in out if isinstance(o, Event)]
    by_time = {round(e.time * 1000): e.payload for e in events}  # frame start, ms
    tone_rms = db(0.5 / math.sqrt(2))
    # The frame starting at 540 ms ends at 550 ms: its window holds 50 ms of tone in 100 ms.
    assert by_time[540]["window_rms_db"] == pytest.approx(tone_rms + 10 * math.log10(0.5), abs=0.1)
    assert by_time[540]["window_peak_db"] == pytest.approx(db(0.5), abs=0.1)
    assert by_time[540]["rms_db"] == -200.0 and by_time[540]["peak_db"] == -200.0
    # From 600 ms the window holds only silence: the floor, not a rounding residue.
    assert by_time[600]["window_rms_db"] == -200.0
    assert by_time[600]["window_peak_db"] == -200.0


# --------------------------------------------------------------------------- pass-through


async def test_audio_passes_bit_exact_as_the_same_frames(backend: str) -> None:
    signal = noise(0.5, 44100, channels=2, amplitude=0.8, seed=4)
    frames = split_frames(signal, 44100, [441, 1000, 17])
    copies = [f.samples.copy() for f in frames]
    video = VideoFrame.blank(4, 2, pts=0)
    node = LevelMeter(interval_ms=50.0)

    out = await run_node(node, [*frames[:3], video, *frames[3:]])

    audio, _ = frames_and_events(out)
    assert audio == frames  # the same objects, in order
    assert all(a is f for a, f in zip(audio, frames, strict=True))
    for f, c in zip(frames, copies, strict=True):
        np.testing.assert_array_equal(f.samples, c)
    assert video in out


# --------------------------------------------------------------------------- events


async def test_level_events_follow_their_frame_every_interval(backend: str) -> None:
    frames = split_frames(tone(440, 1.0, 48000), 48000, 960)  # 20 ms frames
    for f in frames:
        f.pts += 96000  # the stream starts at 2 s
    node = LevelMeter(interval_ms=100.0, name="meter")

    out = await run_node(node, frames)

    times = [o.time for o in out if isinstance(o, Event)]
    assert times == pytest.approx([2.0 + 0.1 * k for k in range(10)])
    for i, item in enumerate(out):
        if isinstance(item, Event):
            assert item.kind == "level" and item.stage == "meter"
            assert set(item.payload) == {"rms_db", "peak_db", "window_rms_db", "window_peak_db"}
            assert isinstance(out[i - 1], AudioFrame) and out[i - 1].time == item.time


@pytest.mark.parametrize(("frame", "interval_ms"), [(1440, 100.0), (441, 25.0), (960, 0.0)])
async def test_events_never_closer_than_the_interval(
    backend: str, frame: int, interval_ms: float
) -> None:
    frames = split_frames(noise(1.0, 48000), 48000, frame)
    out = await run_node(LevelMeter(interval_ms=interval_ms), frames)
    times = [o.time for o in out if isinstance(o, Event)]
    gaps = np.diff(times)
    assert times[0] == 0.0
    assert np.all(gaps >= interval_ms / 1000 - 1e-9)
    assert np.all(gaps <= interval_ms / 1000 + frame / 48000 + 1e-9)  # and not much later
    if interval_ms == 0:
        assert len(times) == len(frames)


async def test_untimed_audio_gives_untimed_events(backend: str) -> None:
    frames = split_frames(noise(0.2), 48000, 960, timed=False)
    out = await run_node(LevelMeter(), frames)
    events = [o for o in out if isinstance(o, Event)]
    assert len(events) == 2 and all(e.time is None for e in events)


async def test_events_reach_consumer_and_subscribers_in_order(backend: str) -> None:
    frames = split_frames(tone(440, 0.4, 48000), 48000, 960)
    meter = LevelMeter(interval_ms=40.0)
    pipeline = Pipeline([Gain(-6.0), meter, Gain(0.0)])
    seen: list[Event] = []
    pipeline.on_event(seen.append, kind="level")

    out = [item async for item in pipeline.process(frames)]

    events = [o for o in out if isinstance(o, Event)]
    assert seen == events and len(events) == 10
    # In order with the frames: each event right after the frame it measured.
    for i, item in enumerate(out):
        if isinstance(item, Event):
            assert out[i - 1].time == item.time
    assert events[0].payload["peak_db"] == pytest.approx(-6 + db(0.5), abs=0.1)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs",
    [{"window_ms": 0.0}, {"window_ms": float("nan")}, {"window_ms": 60001.0}, {"window_ms": "x"}],
)
def test_kernel_config_errors_name_the_stage(kernels: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"^lm: window_ms must be") as info:
        kernels.LevelMeterKernel(**kwargs, stage="lm")
    assert info.value.stage == "lm"


@pytest.mark.parametrize("kwargs", [{"window_ms": -1.0}, {"interval_ms": -5.0}])
def test_node_config_errors_name_the_node(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"^meter: ") as info:
        LevelMeter(**kwargs, name="meter")
    assert info.value.stage == "meter"


def test_kernel_format_errors(kernels: Any) -> None:
    k = kernels.LevelMeterKernel(stage="lm")
    with pytest.raises(FormatError, match=r"^lm: expected a float32 array"):
        k.process(np.zeros((1, 4)), 48000)
    with pytest.raises(FormatError, match=r"^lm: empty frame \(1 channels, 0 samples\)"):
        k.process(np.zeros((1, 0), np.float32), 48000)
    with pytest.raises(FormatError, match=r"^lm: invalid sample rate 0"):
        k.process(np.zeros((1, 4), np.float32), 0)
    bad = np.zeros((2, 4), np.float32)
    bad[1, 3] = np.inf
    with pytest.raises(FormatError, match=r"^lm: non-finite sample at channel 1, index 3"):
        k.process(bad, 48000)
    k.process(np.zeros((1, 4), np.float32), 48000)
    with pytest.raises(FormatError, match=r"^lm: sample rate changed mid-stream"):
        k.process(np.zeros((1, 4), np.float32), 16000)
    with pytest.raises(FormatError, match=r"^lm: channel count changed mid-stream from 1 to 2"):
        k.process(np.zeros((2, 4), np.float32), 48000)
    k.reset()
    assert k.window_samples is None
    k.process(np.zeros((2, 4), np.float32), 16000)
    assert k.window_samples == 4800


async def test_rate_change_in_a_pipeline_is_a_node_error(backend: str) -> None:
    frames = [AudioFrame(noise(0.02), 48000, 0), AudioFrame(noise(0.02, 16000), 16000, 320)]
    with pytest.raises(NodeError, match=r"stage 'meter' at frame 1: FormatError") as info:
        await run_node(LevelMeter(name="meter"), frames)
    assert isinstance(info.value.__cause__, FormatError)


# --------------------------------------------------------------------------- parity, splits


@st.composite
def signals(draw: st.DrawFn) -> np.ndarray:
    channels = draw(st.integers(1, 3))
    n = draw(st.integers(1, 6000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "bursts", "tiny"]))
    x = rng.uniform(-1, 1, (channels, n))
    if kind == "bursts":  # loud and silent stretches, so windows drop to the floor
        x *= (np.arange(n) // draw(st.integers(10, 2000)) % 2)[None, :]
    elif kind == "tiny":  # around the -200 dB floor
        x *= 10.0 ** draw(st.floats(-12, -8))
    return x.astype(np.float32)


def cut(x: np.ndarray, at: list[int]) -> list[np.ndarray]:
    return [np.ascontiguousarray(b) for b in np.split(x, sorted(set(at)), axis=1) if b.size]


@needs_engine
@settings(max_examples=40, deadline=None)
@given(
    x=signals(),
    window_ms=st.sampled_from([0.1, 5.0, 20.0, 300.0]) | st.floats(0.01, 500.0),
    rate=st.sampled_from([8000, 16000, 44100, 48000]),
    data=st.data(),
)
def test_rust_and_python_agree_and_windows_ignore_splits(
    x: np.ndarray, window_ms: float, rate: int, data: st.DataObject
) -> None:
    from stream import _engine

    blocks = cut(x, data.draw(st.lists(st.integers(1, x.shape[1]), max_size=10)))
    ends = np.cumsum([b.shape[1] for b in blocks])
    kernels = [
        twins.LevelMeterKernel(window_ms, stage="lm"),
        _engine.LevelMeterKernel(window_ms, stage="lm"),
    ]
    readings = [[k.process(b, rate) for b in blocks] for k in kernels]
    np.testing.assert_allclose(readings[0], readings[1], rtol=0, atol=LEVEL_TOL_DB)
    # The window at a block's end is the window of the stream up to there, however it was cut.
    for module in (twins, _engine):
        whole = module.LevelMeterKernel(window_ms, stage="lm")
        for end, split_reading in zip(ends, readings[module is _engine], strict=True):
            whole.reset()
            _, _, rms, peak = whole.process(np.ascontiguousarray(x[:, :end]), rate)
            assert rms == pytest.approx(split_reading[2], abs=1e-9)
            assert peak == split_reading[3]


def test_kernel_module_has_the_kernel(kernels: Any) -> None:
    assert kernel_module("python").LevelMeterKernel is twins.LevelMeterKernel
    k = kernels.LevelMeterKernel()
    assert k.window_ms == 300.0 and k.stage == "level_meter"
    rms, peak, wrms, wpeak = k.process(np.full((1, 10), 0.25, np.float32), 8000)
    assert (rms, peak) == (pytest.approx(db(0.25)), pytest.approx(db(0.25)))
    assert (wrms, wpeak) == (rms, peak)
