"""Mixer (docs/stages-audio.md): gains and the spectrum of a mix, alignment by timestamp, stalled
inputs filled with silence within stall_ms without blocking the others, bounded memory, events
passed on, typed errors, and MixKernel parity."""

from __future__ import annotations

import asyncio
import math
import os
import re
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import media_nodes.audio as twins
from media_nodes.audio import Gain, LevelMeter, Mixer
from stream import AudioFrame, ConfigError, Event, NodeError, Pipeline, VideoFrame
from stream.errors import FormatError
from stream.testing import join_frames, split_frames, tone

from ._util import assert_pts_continuous

PYTHON_ONLY = os.environ.get("REMOTEMEDIA_RUNTIME") == "python"
needs_engine = pytest.mark.skipif(PYTHON_ONLY, reason="Python-only session: needs the engine")
RATE = 48000


async def mix(mixer: Mixer) -> list[Any]:
    return [item async for item in Pipeline([mixer]).process()]


def audio_of(out: list[Any]) -> list[AudioFrame]:
    return [o for o in out if isinstance(o, AudioFrame)]


def amplitude_at(x: np.ndarray, freq: float, rate: int) -> float:
    """Amplitude of the ``freq`` component (whole periods in ``x``, so one FFT bin holds it)."""
    spectrum = np.fft.rfft(x.astype(np.float64))
    return float(np.abs(spectrum[round(freq * x.size / rate)]) * 2 / x.size)


# --------------------------------------------------------------------------- mixing


async def test_two_tones_with_gains_mix_to_the_expected_spectrum(backend: str) -> None:
    a = split_frames(tone(500, 1.0, RATE, amplitude=0.5), RATE, 960)
    b = split_frames(tone(1500, 1.0, RATE, channels=2, amplitude=0.5), RATE, 441)
    mixer = Mixer([a, b], gains_db=[-6.0, 3.0], channels=2)

    out = audio_of(await mix(mixer))

    assert mixer.backend == backend
    assert [f.num_samples for f in out] == [960] * 50
    assert_pts_continuous(out, 0, RATE)
    y = join_frames(out)
    for c in range(2):
        assert 20 * math.log10(amplitude_at(y[c], 500, RATE) / 0.5) == pytest.approx(-6, abs=0.01)
        assert 20 * math.log10(amplitude_at(y[c], 1500, RATE) / 0.5) == pytest.approx(3, abs=0.01)
        others = np.abs(np.fft.rfft(y[c]))
        others[[500, 1500]] = 0
        assert others.max() * 2 / y.shape[1] < 1e-5  # nothing else in the spectrum
    # Float output, not clipped: 0.5 * 1.41 + 0.5 * 0.5 can pass 0.9; a louder mix passes 1.
    loud = audio_of(await mix(Mixer([a, b], gains_db=[6.0, 6.0], channels=2)))
    assert np.abs(join_frames(loud)).max() > 1.0


async def test_inputs_with_offset_pts_align_on_one_clock(backend: str) -> None:
    x = tone(440, 0.5, RATE, amplitude=0.3)
    y = tone(700, 0.5, RATE, amplitude=0.3)
    a = split_frames(x, RATE, 960)
    b = split_frames(y, RATE, 480, timed=False)
    for k, f in enumerate(b):  # input 1 starts 250 ms later, stamped in milliseconds
        f.pts, f.time_base = 250 + 10 * k, Fraction(1, 1000)

    out = audio_of(await mix(Mixer([a, b])))

    assert out[0].pts == 0
    assert_pts_continuous(out, 0, RATE)
    got = join_frames(out)[0]
    want = np.zeros(36000, np.float32)
    want[:24000] += x[0]
    want[12000:] += y[0]
    assert got.size == 36000  # until the end of the latest input
    np.testing.assert_allclose(got, want, atol=1e-6)


async def test_output_starts_at_the_earliest_input_and_gaps_are_silence(backend: str) -> None:
    x = np.full((1, 4800), 0.25, np.float32)
    late = split_frames(x, RATE, 960)
    for f in late:
        f.pts += 48000  # starts at 1 s
    early = split_frames(x, RATE, 960)
    for f in early:
        f.pts += 24000  # starts at 0.5 s
    gappy = split_frames(x, RATE, 960)
    gappy = gappy[:2] + gappy[3:]  # a missing 20 ms frame: silence there

    out = audio_of(await mix(Mixer([late, early, gappy])))  # gappy starts at 0

    assert out[0].pts == 0
    y = join_frames(out)[0]
    assert y.size == 48000 + 4800
    assert np.all(y[1920:2880] == 0)  # the gap
    assert np.all(y[:1920] == 0.25) and np.all(y[2880:4800] == 0.25)
    assert np.all(y[4800:24000] == 0)
    assert np.all(y[24000:28800] == 0.25) and np.all(y[48000:] == 0.25)


async def test_jittered_pts_join_seamlessly_and_late_audio_is_dropped(backend: str) -> None:
    x = tone(1000, 0.2, 44100, amplitude=0.5)
    frames = split_frames(x, 44100, 1024)  # 23.22 ms: pts in ms are rounded, jittering
    for f in frames:
        f.pts, f.time_base = round(f.pts * 1000 / 44100), Fraction(1, 1000)
    out = audio_of(await mix(Mixer([frames], frame_ms=10.0)))
    np.testing.assert_array_equal(join_frames(out), x)  # no sample dropped or repeated

    # A frame overlapping its input's earlier audio keeps the earlier audio.
    ones = split_frames(np.ones((1, 2880), np.float32), RATE, 960)
    replay = AudioFrame(np.full((1, 960), 0.5, np.float32), RATE, 480)
    out = audio_of(await mix(Mixer([[ones[0], ones[1], replay, ones[2]]])))
    np.testing.assert_array_equal(join_frames(out)[0], np.ones(2880, np.float32))


async def test_inputs_that_end_stop_contributing(backend: str) -> None:
    short = split_frames(np.full((1, 960 * 3), 0.5, np.float32), RATE, 960)
    long = split_frames(np.full((1, 960 * 10 + 100), 0.25, np.float32), RATE, 960)
    out = audio_of(await mix(Mixer([short, long])))
    y = join_frames(out)[0]
    assert [f.num_samples for f in out] == [960] * 10 + [100]
    assert np.all(y[:2880] == 0.75) and np.all(y[2880:] == 0.25)


async def test_channels_are_mapped_like_channel_mix(backend: str) -> None:
    mono = [AudioFrame(np.full((1, 960), 0.5, np.float32), RATE, 0)]
    stereo = [AudioFrame(np.array([[0.2] * 960, [0.4] * 960], np.float32), RATE, 0)]
    up = join_frames(audio_of(await mix(Mixer([mono, stereo], channels=2))))
    np.testing.assert_allclose(up[:, 0], [0.7, 0.9], rtol=1e-6)
    down = join_frames(audio_of(await mix(Mixer([stereo, mono], channels=1))))
    np.testing.assert_allclose(down[:, 0], [0.8], rtol=1e-6)
    # By default the output has the channels of input 0's first frame.
    default = join_frames(audio_of(await mix(Mixer([mono, stereo]))))
    assert default.shape == (1, 960)


# --------------------------------------------------------------------------- stalls


async def paced(frames: list[AudioFrame], period: float, pause_at: int = -1, pause: float = 0.0):
    for i, f in enumerate(frames):
        if i == pause_at:
            await asyncio.sleep(pause)
        await asyncio.sleep(period)
        yield f


async def test_a_stalled_input_is_filled_with_silence_and_blocks_no_one(backend: str) -> None:
    """Input 0 plays in real time (20 ms frames every 20 ms); input 1 stops after 5 frames and
    resumes only once the mix has gone on without it for 10 frames: a mixer that waited for it
    would never get there. Then input 1 is picked up again (its late frames dropped)."""
    a = split_frames(np.full((1, 960 * 40), 0.25, np.float32), RATE, 960)
    b = split_frames(np.full((1, 960 * 40), 0.5, np.float32), RATE, 960)
    resume = asyncio.Event()

    async def stalls() -> AsyncIterator[AudioFrame]:
        for i, f in enumerate(b):
            if i == 5:
                await resume.wait()
            yield f

    mixer = Mixer([paced(a, 0.02), stalls()], stall_ms=100.0)
    frames: list[AudioFrame] = []
    alone = 0
    async with asyncio.timeout(60):  # a mixer held up by input 1 would hang here
        async for item in Pipeline([mixer]).process():
            frames.append(item)
            if float(item.samples[0, 0]) == 0.25:
                alone += 1
                if alone == 10:
                    resume.set()

    assert_pts_continuous(frames, 0, RATE)
    levels = [float(f.samples[0, 0]) for f in frames]
    assert levels[:5] == [0.75] * 5  # both
    assert alone >= 10  # input 1 stalled: silent, and the mix went on ...
    assert levels[-1] == 0.75  # ... and back (its late frames dropped, the rest mixed)


async def test_an_input_that_never_sends_does_not_hold_the_start(backend: str) -> None:
    async def silent_forever() -> AsyncIterator[AudioFrame]:
        await asyncio.sleep(3600)
        yield AudioFrame(np.zeros((1, 960), np.float32), RATE, 0)

    a = split_frames(np.full((1, 960 * 5), 0.25, np.float32), RATE, 960)
    mixer = Mixer([silent_forever(), a], stall_ms=50.0)
    out: list[AudioFrame] = []
    async with asyncio.timeout(60):  # held for the silent input's first frame: an hour
        async for item in Pipeline([mixer]).process():
            out.append(item)
            if len(out) == 5:
                break
    np.testing.assert_array_equal(join_frames(out), 0.25)


async def test_memory_stays_bounded(backend: str) -> None:
    """A fast input beside a slower one is read only as fast as the mix goes; over a minute of
    audio neither the queues nor the held audio grow."""

    def fast() -> Iterator[AudioFrame]:
        for i in range(3000):  # 60 s, made on demand
            yield AudioFrame(np.full((2, 960), 0.1, np.float32), RATE, i * 960)

    async def slower() -> AsyncIterator[AudioFrame]:
        for i in range(3000):
            await asyncio.sleep(0)
            yield AudioFrame(np.full((2, 960), 0.2, np.float32), RATE, i * 960)

    mixer = Mixer([fast(), slower()])
    worst = [0, 0]
    count = 0
    tracemalloc.start()
    try:
        async for _ in Pipeline([mixer]).process():
            count += 1
            for queued, held in mixer.backlog():
                worst = [max(worst[0], queued), max(worst[1], held)]
            if count == 100:
                tracemalloc.reset_peak()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3000
    assert worst[0] <= 4 and worst[1] <= 2 * 960
    assert peak < 2_000_000  # a minute of stereo float32 would be 23 MB
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mixer")]


# --------------------------------------------------------------------------- events, pipelines


async def test_input_pipelines_feed_it_and_events_pass_on(backend: str) -> None:
    x = tone(440, 0.2, RATE, amplitude=0.5)
    voice = Pipeline([Gain(-6.0), LevelMeter(interval_ms=100.0, name="voice_level")])
    music = Pipeline([Gain(0.0)])
    mixer = Mixer([voice.process(split_frames(x, RATE)), music.process(split_frames(x, RATE))])
    meter = LevelMeter(interval_ms=0.0, name="mix_level")
    pipeline = Pipeline([mixer, meter])
    seen: list[Event] = []
    pipeline.on_event(seen.append)

    out = [item async for item in pipeline.process()]

    events = [o for o in out if isinstance(o, Event)]
    assert seen == events
    assert [e.stage for e in events].count("voice_level") == 2
    assert [e.stage for e in events].count("mix_level") == 10
    for i, item in enumerate(out):
        if isinstance(item, Event) and item.stage == "mix_level":
            assert out[i - 1].time == item.time
    y = join_frames(audio_of(out))
    assert np.abs(y).max() == pytest.approx(0.5 * (1 + 10 ** (-6 / 20)), rel=1e-3)


async def test_video_is_ignored_and_other_items_are_errors(backend: str) -> None:
    a = split_frames(np.full((1, 1920), 0.25, np.float32), RATE, 960)
    out = audio_of(await mix(Mixer([[a[0], VideoFrame.blank(2, 2), a[1]]])))
    assert len(out) == 2
    with pytest.raises(NodeError, match=r"stage 'm'.*input 0: expected an AudioFrame, got str"):
        await mix(Mixer([["text"]], name="m"))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([[AudioFrame(np.zeros((1, 480), np.float32), 16000, 0)]], "input 1 is at 16000 Hz"),
        ([[AudioFrame(np.zeros((3, 960), np.float32), RATE, 0)]], "input 1: cannot mix 3"),
    ],
)
async def test_format_errors_name_the_mixer_and_the_input(
    backend: str, inputs: list[Any], message: str
) -> None:
    a = [AudioFrame(np.zeros((2, 960), np.float32), RATE, 0)]
    with pytest.raises(NodeError, match=rf"stage 'm'.*FormatError: {message}") as info:
        await mix(Mixer([a, *inputs], name="m"))
    assert isinstance(info.value.__cause__, FormatError)


async def test_a_failing_input_fails_the_mix(backend: str) -> None:
    async def broken() -> AsyncIterator[AudioFrame]:
        yield AudioFrame(np.zeros((1, 960), np.float32), RATE, 0)
        raise RuntimeError("device unplugged")

    with pytest.raises(NodeError, match=r"input 0 failed: RuntimeError: device unplugged"):
        await mix(Mixer([broken()], name="m"))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": 5}, "inputs"),
        ({"inputs": ["abc"]}, "input 0"),
        ({"gains_db": [0.0]}, "gains_db has 1 gains for 2 inputs"),
        ({"gains_db": [0.0, float("nan")]}, "gains_db\\[1\\]"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"channels": 65}, "channels"),
        ({"frame_ms": 0.0}, "frame_ms"),
        ({"stall_ms": -1.0}, "stall_ms"),
        ({"backend": "gpu"}, "backend"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any], word: str) -> None:
    args = {"inputs": [[], []], **kwargs}
    with pytest.raises(ConfigError, match=word):
        Mixer(**args, name="m")


async def test_gains_can_change_between_frames(backend: str) -> None:
    a = split_frames(np.full((1, 960 * 40), 0.5, np.float32), RATE, 960)
    mixer = Mixer([a], gains_db=[0.0])
    out: list[AudioFrame] = []
    async for frame in Pipeline([mixer]).process():
        out.append(frame)
        mixer.set_gain_db(0, -6.0)
    assert mixer.gains_db == [-6.0] and mixer.kernel.gains_db == [-6.0]
    assert float(out[0].samples[0, 0]) == 0.5
    assert float(out[-1].samples[0, 0]) == pytest.approx(0.5 * 10 ** (-6 / 20), rel=1e-6)
    with pytest.raises(ConfigError):
        mixer.set_gain_db(1, 0.0)


# --------------------------------------------------------------------------- the kernel


def test_kernel_checks_in_order(kernels: Any) -> None:
    k = kernels.MixKernel([0.0, -6.0], stage="mx")
    assert k.inputs == 2 and k.gains_db == [0.0, -6.0] and k.stage == "mx"
    ok = np.zeros((1, 4), np.float32)
    cases = [
        (([ok], 1, 4), "expected 2 blocks (one per input), got 1"),
        (([ok, ok], 0, 4), "invalid channel count 0"),
        (([ok, ok], 1, 0), "invalid sample count 0"),
        (([ok, np.zeros(4, np.float32)], 1, 4), "input 1: expected a float32 array"),
        (([np.zeros((1, 0), np.float32), ok], 1, 4), "input 0: empty frame"),
        (([None, np.zeros((1, 5), np.float32)], 1, 4), "input 1: 5 samples, expected 4"),
        (([np.zeros((2, 4), np.float32), None], 3, 4), "input 0: cannot mix 2 channels to 3"),
    ]
    for args, message in cases:
        with pytest.raises(FormatError, match="^" + re.escape(f"mx: {message}")):
            k.process(*args)
    bad = np.zeros((2, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(FormatError, match=r"^mx: input 1: non-finite sample at channel 1, index 2"):
        k.process([None, bad], 2, 4)
    out = k.process([None, None], 3, 5)
    assert out.shape == (3, 5) and out.dtype == np.float32 and not out.any()


@pytest.mark.parametrize("gains", [[], [float("inf")], [800.0], "0", 5, [0.0] * 257, [0.0, "loud"]])
def test_kernel_config_errors_name_the_stage(kernels: Any, gains: Any) -> None:
    with pytest.raises(ConfigError, match=r"^mx: gains_db") as info:
        kernels.MixKernel(gains, stage="mx")
    assert info.value.stage == "mx"


@needs_engine
@settings(max_examples=50, deadline=None)
@given(
    inputs=st.integers(1, 5),
    channels=st.integers(1, 4),
    n=st.integers(1, 2000),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_rust_and_python_mix_alike(
    inputs: int, channels: int, n: int, seed: int, data: st.DataObject
) -> None:
    from stream import _engine

    rng = np.random.default_rng(seed)
    gains = data.draw(st.lists(st.floats(-60.0, 12.0), min_size=inputs, max_size=inputs))
    blocks: list[np.ndarray | None] = []
    for _ in range(inputs):
        have = data.draw(st.sampled_from([None, 1, channels, 3 if channels == 1 else channels]))
        blocks.append(None if have is None else rng.uniform(-1, 1, (have, n)).astype(np.float32))
    a = twins.MixKernel(gains, stage="m").process(blocks, channels, n)
    b = _engine.MixKernel(gains, stage="m").process(blocks, channels, n)
    assert a.shape == b.shape == (channels, n) and b.dtype == np.float32
    assert b.flags.c_contiguous
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
