"""FrameRate on every backend: counts, timestamps, which input each output shows, one frame at a
time against the whole stream at once, and the rule of docs/stages-video.md checked against a
reference written out here."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media_nodes.video import FrameRate
from stream import AudioFrame, NodeError, Pipeline, VideoFrame
from stream.errors import FormatError
from stream.testing import run_node, tone

from ._util import frames, noise


def shown(out: list[Any], inputs: list[VideoFrame]) -> list[int]:
    """Index of the input frame each output shows (outputs share the input's pixel array)."""
    ids = {id(f.pixels): i for i, f in enumerate(inputs)}
    return [ids[id(o.pixels)] for o in out]


def reference(times: list[Fraction], fps: Fraction) -> list[tuple[int, int]]:
    """The rule, brute force: slots from the first frame's slot to the end slot; slot k shows
    the latest input (arrival order) with floor(t * fps + 1/2) <= k."""
    slot = [math.floor(t * fps + Fraction(1, 2)) for t in times]
    n = len(times)
    if n > 1 and times[-1] > times[0]:
        end_time = times[-1] + (times[-1] - times[0]) / (n - 1)
    else:
        end_time = times[-1] + 1 / fps
    end = math.floor(end_time * fps + Fraction(1, 2))
    out = []
    for k in range(slot[0], end):
        due = [i for i in range(n) if slot[i] <= k]
        # Frames arriving after slot k was emitted cannot change it: slot k is final once a
        # frame with a later slot arrives.
        closing = next((i for i in range(n) if slot[i] > k), n)
        due = [i for i in due if i < closing]
        out.append((k, due[-1]))
    return out


@pytest.mark.parametrize(
    ("fps_in", "fps_out", "count", "expected_count"),
    [(30, 15, 30, 15), (24, 30, 24, 30), (30, 30, 45, 45), (25, 50, 10, 20), (60, 24, 60, 24)],
)
async def test_rate_conversion_counts_and_timestamps(
    backend: str, fps_in: int, fps_out: int, count: int, expected_count: int
) -> None:
    inputs = frames("gray", 8, 4, count, fps=fps_in)
    node = FrameRate(fps_out)

    out = await run_node(node, inputs)

    assert node.backend == backend
    assert len(out) == expected_count
    assert [f.pts for f in out] == list(range(expected_count))
    assert all(f.time_base == Fraction(1, fps_out) for f in out)
    times = [f.pts * f.time_base for f in inputs]
    assert list(enumerate(shown(out, inputs))) == reference(times, Fraction(fps_out))


async def test_thirty_to_fifteen_keeps_the_even_frames(backend: str) -> None:
    inputs = frames("rgb24", 4, 4, 30)
    out = await run_node(FrameRate(15), inputs)
    assert shown(out, inputs) == list(range(0, 30, 2))
    assert all(o.format == "rgb24" and o.pixels is inputs[2 * k].pixels for k, o in enumerate(out))


async def test_twenty_four_to_thirty_repeats_every_fourth(backend: str) -> None:
    inputs = frames("nv12", 4, 4, 24, fps=24)
    out = await run_node(FrameRate(30), inputs)
    assert shown(out, inputs)[:10] == [0, 1, 1, 2, 3, 4, 5, 5, 6, 7]
    assert [o.pts for o in out] == list(range(30))


async def test_output_is_anchored_at_the_first_frame_time(backend: str) -> None:
    # A stream starting at 2.5 s in a 90 kHz time base, 30 fps in and out.
    tb = Fraction(1, 90000)
    inputs = [VideoFrame(noise("gray", 4, 4, i), "gray", 225000 + i * 3000, tb) for i in range(5)]
    out = await run_node(FrameRate(30), inputs)
    assert [o.pts for o in out] == [75, 76, 77, 78, 79]
    assert shown(out, inputs) == [0, 1, 2, 3, 4]


async def test_jitter_under_half_a_period_changes_nothing(backend: str) -> None:
    rng = np.random.default_rng(5)
    tb = Fraction(1, 90000)
    jitter = rng.integers(-1400, 1400, 90)  # up to 0.47 of a 30 fps period
    inputs = [
        VideoFrame(noise("gray", 2, 2, i), "gray", i * 3000 + int(j), tb)
        for i, j in enumerate(jitter)
    ]
    out = await run_node(FrameRate(30), inputs)
    assert shown(out, inputs) == list(range(90))


async def test_ntsc_rates(backend: str) -> None:
    # 30000/1001 in (pts in 1/30000 s), 15 fps out; and 25 in, 30000/1001 out.
    ntsc = [
        VideoFrame(noise("gray", 2, 2, i), "gray", i * 1001, Fraction(1, 30000)) for i in range(300)
    ]
    out = await run_node(FrameRate(15), ntsc)
    times = [f.pts * f.time_base for f in ntsc]
    assert list(enumerate(shown(out, ntsc))) == reference(times, Fraction(15))
    assert len(out) == 150  # 10.01 s at 15 fps, rounded

    pal = frames("gray", 2, 2, 100, fps=25)
    out = await run_node(FrameRate(Fraction(30000, 1001)), pal)
    assert out[0].time_base == Fraction(1001, 30000)
    times = [f.pts * f.time_base for f in pal]
    assert list(enumerate(shown(out, pal))) == reference(times, Fraction(30000, 1001))


async def _live(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        await asyncio.sleep(0)
        yield item


@pytest.mark.parametrize(("fps_in", "fps_out"), [(30, 15), (24, 30)])
async def test_one_frame_at_a_time_equals_the_whole_stream(
    backend: str, fps_in: int, fps_out: int
) -> None:
    inputs = frames("yuv420p", 8, 4, 40, fps=fps_in, first_pts=7)

    batched = await run_node(FrameRate(fps_out), inputs)

    # One frame at a time, as a live source delivers them.
    pipeline = Pipeline([FrameRate(fps_out)])
    async with pipeline:
        live = [f async for f in pipeline.process(_live(inputs))]

    # By hand: process() per frame, then flush().
    node = FrameRate(fps_out)
    node.initialize()
    by_hand = [o for f in inputs for o in node.process(f)] + node.flush()

    for other in (live, by_hand):
        assert [(o.pts, o.time_base) for o in other] == [(o.pts, o.time_base) for o in batched]
        assert shown(other, inputs) == shown(batched, inputs)


async def test_a_frame_comes_out_when_the_next_one_arrives(backend: str) -> None:
    inputs = frames("gray", 2, 2, 3)
    node = FrameRate(30)
    node.initialize()
    assert node.process(inputs[0]) == []  # held: a later frame could still take its slot
    assert [o.pts for o in node.process(inputs[1])] == [0]
    assert [o.pts for o in node.process(inputs[2])] == [1]
    assert [o.pts for o in node.flush()] == [2]
    node.initialize()  # a second stream starts afresh
    assert node.process(inputs[2]) == [] and [o.pts for o in node.flush()] == [2]


async def test_audio_passes_at_once_while_video_is_held(backend: str) -> None:
    video = frames("gray", 2, 2, 2)
    audio = AudioFrame(tone(440, 0.01), 48000, 0, Fraction(1, 48000))
    out = await run_node(FrameRate(30), [video[0], audio, video[1]])
    assert out[0] is audio
    assert [o.pts for o in out[1:]] == [0, 1]


async def test_single_frame_and_empty_streams(backend: str) -> None:
    [one] = await run_node(FrameRate(10), frames("gray", 2, 2, 1))
    assert (one.pts, one.time_base) == (0, Fraction(1, 10))
    assert await run_node(FrameRate(10), []) == []


async def test_untimed_frames_are_format_errors(backend: str) -> None:
    node = FrameRate(30, name="fr")
    with pytest.raises(NodeError) as info:
        await run_node(node, [VideoFrame(noise("gray", 2, 2), "gray")])
    cause = info.value.__cause__
    assert isinstance(cause, FormatError) and cause.stage == "fr"
    assert str(cause) == (
        "fr: FrameRate needs timed video frames (pts and time_base), got pts=None"
    )


async def test_time_base_change_mid_stream_is_a_format_error(backend: str) -> None:
    a = VideoFrame(noise("gray", 2, 2), "gray", 0, Fraction(1, 30))
    b = VideoFrame(noise("gray", 2, 2), "gray", 3000, Fraction(1, 90000))
    with pytest.raises(NodeError) as info:
        await run_node(FrameRate(30, name="fr"), [a, b])
    assert info.value.index == 1
    assert str(info.value.__cause__) == "fr: time base changed mid-stream from 1/30 to 1/90000"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from([15, 24, 25, 30, 50, 60, Fraction(30000, 1001)]),
    st.sampled_from([Fraction(1, 90000), Fraction(1, 1000), Fraction(1, 30)]),
    st.lists(st.integers(0, 9000), min_size=1, max_size=40),
)
async def test_follows_the_rule_on_any_timestamps(
    backend: str, fps: Fraction | int, tb: Fraction, steps: list[int]
) -> None:
    pts = np.cumsum(steps)
    inputs = [VideoFrame(noise("gray", 1, 1), "gray", int(p), tb) for p in pts]
    out = await run_node(FrameRate(fps), inputs)
    times = [f.pts * f.time_base for f in inputs]
    assert list(enumerate(shown(out, inputs), start=out[0].pts if out else 0)) == reference(
        times, Fraction(fps)
    )
