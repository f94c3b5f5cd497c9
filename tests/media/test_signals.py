"""Generated sources: exact lengths, continuous pts, the signal itself, endless runs, pacing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from media_nodes.sources import NoiseSource, SilenceSource, ToneSource
from stream import AudioFrame, ConfigError, Pipeline
from stream.testing import join_frames, noise, tone

from ._media import peak


async def collect(node: Any) -> list[AudioFrame]:
    return list(await Pipeline([node]).run())


@pytest.mark.parametrize(
    ("rate", "frame_ms", "duration_s"),
    [(48000, 20.0, 1.0), (44100, 10.0, 0.333), (16000, 32.0, 0.1), (8000, 7.3, 0.25)],
)
@pytest.mark.parametrize("cls", [ToneSource, NoiseSource, SilenceSource])
async def test_exact_length_and_continuous_pts(
    cls: Any, rate: int, frame_ms: float, duration_s: float
) -> None:
    frames = await collect(
        cls(sample_rate=rate, channels=2, frame_ms=frame_ms, duration_s=duration_s)
    )
    size, total = round(rate * frame_ms / 1000), round(duration_s * rate)
    assert sum(f.num_samples for f in frames) == total
    assert [f.num_samples for f in frames[:-1]] == [size] * (len(frames) - 1)
    assert 0 < frames[-1].num_samples <= size
    pos = 0
    for f in frames:
        assert f.samples.dtype == np.float32 and f.planar and f.samples.shape[0] == 2
        assert f.sample_rate == rate and f.time_base == Fraction(1, rate) and f.pts == pos
        pos += f.num_samples


async def test_zero_duration_emits_nothing() -> None:
    assert await collect(ToneSource(duration_s=0.0)) == []


async def test_tone_frequency_level_and_phase_continuity() -> None:
    # 7.3 ms frames: 350.4 samples, so frames do not hold whole periods.
    frames = await collect(
        ToneSource(
            freq_hz=1000.0,
            sample_rate=48000,
            channels=2,
            frame_ms=7.3,
            amplitude=0.25,
            duration_s=1.0,
        )
    )
    x = join_frames(frames)
    freq, amplitude = peak(x[1], 48000)
    assert abs(freq - 1000.0) < 0.5
    assert 20 * np.log10(amplitude / 0.25) == pytest.approx(0.0, abs=0.05)
    # One continuous sine: the same samples as a sine computed in one piece.
    np.testing.assert_allclose(x, tone(1000.0, 1.0, 48000, 2, amplitude=0.25), atol=2e-6)


async def test_noise_is_seeded_bounded_and_independent_of_frame_size() -> None:
    a = join_frames(
        await collect(NoiseSource(amplitude=0.2, seed=7, frame_ms=20.0, duration_s=0.5))
    )
    b = join_frames(await collect(NoiseSource(amplitude=0.2, seed=7, frame_ms=3.0, duration_s=0.5)))
    c = join_frames(
        await collect(NoiseSource(amplitude=0.2, seed=8, frame_ms=20.0, duration_s=0.5))
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a).max() <= 0.2
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(0.2 / np.sqrt(3), rel=0.02)
    # Mono noise is exactly what the test helper draws.
    np.testing.assert_array_equal(a, noise(0.5, 48000, 1, amplitude=0.2, seed=7))


async def test_silence_is_zeros() -> None:
    x = join_frames(await collect(SilenceSource(channels=3, duration_s=0.1)))
    assert x.shape == (3, 4800) and not x.any()


async def test_each_run_starts_the_signal_afresh() -> None:
    source = NoiseSource(seed=3, duration_s=0.1)
    first = join_frames(await collect(source))
    second = join_frames(await collect(source))
    np.testing.assert_array_equal(first, second)


async def test_endless_source_stops_when_the_consumer_does() -> None:
    source = ToneSource(frame_ms=10.0)  # no duration: endless
    pipeline = Pipeline([source], queue_size=4)
    frames: list[AudioFrame] = []
    async with contextlib.aclosing(pipeline.process()) as stream:
        async for frame in stream:
            frames.append(frame)
            if len(frames) == 200:
                break
    assert [f.pts for f in frames] == [480 * i for i in range(200)]
    assert not pipeline.initialized  # process() cleaned up the pipeline it initialized
    await asyncio.sleep(0)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []  # the source's task was cancelled and awaited


async def test_realtime_paces_frames_on_their_timestamps() -> None:
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    pts: list[int] = []
    start = loop.time()
    async for frame in Pipeline(
        [ToneSource(duration_s=0.3, frame_ms=20.0, realtime=True)]
    ).process():
        arrivals.append(loop.time() - start)
        pts.append(frame.pts)
    elapsed = loop.time() - start
    assert len(arrivals) == 15
    assert elapsed >= 0.28
    for arrival, p in zip(arrivals, pts, strict=True):
        due = p / 48000
        assert arrival >= due - 0.002, (arrival, due)  # never early (late is the machine's)


async def test_non_realtime_runs_faster_than_real_time() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = await collect(ToneSource(duration_s=5.0))
    assert len(frames) == 250 and loop.time() - start < 2.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: ToneSource(freq_hz=0.0, name="n"),
        lambda: ToneSource(freq_hz=24000.0, name="n"),
        lambda: ToneSource(freq_hz=float("nan"), name="n"),
        lambda: ToneSource(amplitude=1.5, name="n"),
        lambda: ToneSource(sample_rate=0, name="n"),
        lambda: ToneSource(sample_rate=48000.0, name="n"),
        lambda: ToneSource(channels=0, name="n"),
        lambda: ToneSource(channels=65, name="n"),
        lambda: ToneSource(frame_ms=0.0, name="n"),
        lambda: ToneSource(frame_ms=0.001, name="n"),
        lambda: ToneSource(duration_s=-1.0, name="n"),
        lambda: ToneSource(duration_s=float("inf"), name="n"),
        lambda: ToneSource(realtime="yes", name="n"),
        lambda: NoiseSource(amplitude=-0.1, name="n"),
        lambda: NoiseSource(seed=-1, name="n"),
        lambda: NoiseSource(seed=1.5, name="n"),
        lambda: SilenceSource(channels=True, name="n"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_node(make: Any) -> None:
    with pytest.raises(ConfigError, match=r"^n: ") as info:
        make()
    assert info.value.stage == "n"


@pytest.mark.parametrize(
    "node",
    [
        ToneSource(880.0, 16000, 2, 10.0, 0.3, 1.5, True),
        NoiseSource(0.05, 4, 8000, 1, 30.0, None, False),
        SilenceSource(22050, 2, 5.0, 0.5),
    ],
)
def test_params_rebuild_the_node(node: Any) -> None:
    params = json.loads(json.dumps(node.params()))
    assert "name" not in params
    assert type(node)(**params).params() == node.params()
