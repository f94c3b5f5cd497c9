"""EnergyVAD (docs/stages-audio.md): speech-like bursts over a low noise floor are found within one
analysis frame of the truth, minimum durations hold, the gate passes exactly the speech plus the
pre-roll with true pts, and the decisions do not depend on the input split or the backend."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import media_nodes.audio as twins
from media_nodes.audio import EnergyVAD, Gain, LevelMeter
from stream import AudioFrame, ConfigError, Event, NodeError, Pipeline, VideoFrame
from stream.errors import FormatError
from stream.testing import run_node, split_frames

PYTHON_ONLY = os.environ.get("REMOTEMEDIA_RUNTIME") == "python"
needs_engine = pytest.mark.skipif(PYTHON_ONLY, reason="Python-only session: needs the engine")


# --------------------------------------------------------------------------- test signals


def speech_like(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced-speech stand-in at -20 dBFS RMS: harmonics of a wavering 140 Hz fundamental,
    amplitude-modulated at a syllable rate of 4 Hz."""
    t = np.arange(n) / rate
    phase = 2 * np.pi * np.cumsum(140 + 15 * np.sin(2 * np.pi * 3 * t)) / rate
    voiced = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))
    x = voiced * envelope
    return x * (0.1 / np.sqrt(np.mean(x**2)))


def noise_burst(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise at -20 dBFS RMS (a fricative stand-in)."""
    return rng.normal(0, 0.1, n)


def scene(
    parts: list[tuple[str, float, float]], seconds: float, rate: int, seed: int = 0
) -> np.ndarray:
    """-60 dBFS noise with ``(kind, start_s, end_s)`` bursts of ``speech`` or ``noise`` added."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.001, round(seconds * rate))
    for kind, a, b in parts:
        i, j = round(a * rate), round(b * rate)
        x[i:j] += speech_like(j - i, rate, rng) if kind == "speech" else noise_burst(j - i, rng)
    return x[None, :].astype(np.float32)


# Speech from 0.5037 to 1.4011 s, a noise burst, speech with a 150 ms pause (one segment), and a
# 60 ms click (shorter than min_speech_ms: not speech).
PARTS = [
    ("speech", 0.5037, 1.4011),
    ("noise", 2.0, 2.6),
    ("speech", 3.3, 3.8),
    ("speech", 3.95, 4.5),
    ("noise", 5.0, 5.06),
]
TRUTH = [(0.5037, 1.4011), (2.0, 2.6), (3.3, 4.5)]


def events_of(out: list[Any]) -> list[Event]:
    return [o for o in out if isinstance(o, Event)]


def segments(events: list[Event]) -> list[tuple[float, float]]:
    starts = [e.time for e in events if e.kind == "speech_start"]
    ends = [e.time for e in events if e.kind == "speech_end"]
    assert [e.kind for e in events] == ["speech_start", "speech_end"] * len(starts)
    return list(zip(starts, ends, strict=True))


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("rate", [16000, 48000])
async def test_bursts_found_within_one_analysis_frame(backend: str, rate: int) -> None:
    signal = scene(PARTS, 6.0, rate)
    frames = split_frames(signal, rate, rate // 50)
    for f in frames:
        f.pts += 10 * rate  # the stream starts at 10 s: event times are media times
    vad = EnergyVAD(name="vad")

    out = await run_node(vad, frames)

    assert vad.backend == backend
    events = events_of(out)
    found = segments(events)
    assert len(found) == len(TRUTH)
    for (start, end), (a, b) in zip(found, TRUTH, strict=True):
        assert abs(start - (10 + a)) <= 0.010, (start, a)
        assert abs(end - (10 + b)) <= 0.010, (end, b)
    for e in events:
        assert e.stage == "vad"
        if e.kind == "speech_start":  # confirmed min_speech_ms after it began
            assert e.payload["confirmed_time"] - e.time == pytest.approx(0.1, abs=0.0101)
        else:
            assert e.payload["confirmed_time"] - e.time == pytest.approx(0.3, abs=0.0101)
            assert e.payload["duration"] == pytest.approx(e.time - e.payload["start_time"])
        assert e.payload["sample"] == round((e.time - 10) * rate)
    # Not gating: every frame passes, the same objects, each before the events decided on it.
    assert [o for o in out if isinstance(o, AudioFrame)] == frames
    passed = [o for o in out if not isinstance(o, Event)]
    assert all(a is b for a, b in zip(passed, frames, strict=True))
    for i, item in enumerate(out):
        if isinstance(item, Event):
            assert item.payload["confirmed_time"] <= out[i - 1].time + out[i - 1].duration


async def test_min_durations_and_hysteresis(backend: str) -> None:
    rate = 16000
    # A 80 ms burst (< 100 ms: ignored), then speech with a 250 ms pause (< 300: kept whole),
    # then a 350 ms pause (>= 300: split).
    parts = [
        ("speech", 0.3, 0.38),
        ("speech", 1.0, 1.5),
        ("speech", 1.75, 2.2),
        ("speech", 2.55, 3.0),
    ]
    signal = scene(parts, 4.0, rate, seed=3)
    out = await run_node(EnergyVAD(), split_frames(signal, rate, 320))
    found = segments(events_of(out))
    assert [(round(a, 2), round(b, 2)) for a, b in found] == [(1.0, 2.2), (2.55, 3.0)]

    # Between the thresholds (-43 dB: under -40, over -46) speech neither starts nor ends.
    between = 10 ** (-43 / 20)
    x = np.full(4 * rate, between, np.float32)
    x[rate : 2 * rate] = 0.1  # loud for a second, then "between" until the end
    x[::2] *= -1
    out = await run_node(EnergyVAD(), split_frames(x[None, :], rate, 320))
    events = events_of(out)
    assert [(e.kind, e.time) for e in events] == [("speech_start", 1.0), ("speech_end", 4.0)]
    assert events[1].payload["confirmed_time"] == 4.0  # ended by the end of the stream


async def test_speech_at_stream_end_ends_at_the_quiet_run(backend: str) -> None:
    rate = 16000
    signal = scene([("speech", 0.2, 0.9)], 1.05, rate)  # 150 ms of quiet before the end
    out = await run_node(EnergyVAD(), split_frames(signal, rate, 320))
    ((_, end),) = segments(events_of(out))
    assert abs(end - 0.9) <= 0.01
    assert events_of(out)[-1].payload["confirmed_time"] == pytest.approx(1.05)


# --------------------------------------------------------------------------- gating


def coverage(out: list[Any]) -> list[tuple[int, int]]:
    """The sample ranges the gated frames cover, runs of contiguous pts joined."""
    covered: list[list[int]] = []
    for o in out:
        if isinstance(o, AudioFrame):
            if covered and covered[-1][1] == o.pts:
                covered[-1][1] += o.num_samples
            else:
                covered.append([o.pts, o.pts + o.num_samples])
    return [(a, b) for a, b in covered]


@pytest.mark.parametrize("sizes", [320, [160, 480, 7, 1000], 4096])
async def test_gate_passes_speech_with_preroll_and_true_pts(backend: str, sizes: Any) -> None:
    rate = 16000
    signal = scene(PARTS, 6.0, rate, seed=1)
    vad = EnergyVAD(gate=True, preroll_ms=200.0)

    out = await run_node(vad, split_frames(signal, rate, sizes))

    bounds = [e.payload["sample"] for e in events_of(out)]
    assert len(bounds) == 6
    # Every output sample is the input sample at its pts ...
    for o in out:
        if isinstance(o, AudioFrame):
            np.testing.assert_array_equal(o.samples, signal[:, o.pts : o.pts + o.num_samples])
    # ... and together they cover exactly pre-roll + speech of each segment, in order ...
    want = [(max(0, s - 3200), e) for s, e in zip(bounds[::2], bounds[1::2], strict=True)]
    assert coverage(out) == want
    # ... each segment's audio after its speech_start event and before its speech_end.
    for i, item in enumerate(out):
        if isinstance(item, AudioFrame):
            last_event = next(o for o in reversed(out[:i]) if isinstance(o, Event))
            assert last_event.kind == "speech_start"


async def test_gate_preroll_stops_at_stream_start_and_previous_segment(backend: str) -> None:
    rate = 16000
    # Speech 100 ms in (its 500 ms pre-roll is cut at 0) and again 400 ms after the first ends
    # (its pre-roll reaches into the first segment's audio, which is not sent twice).
    signal = scene([("speech", 0.1, 0.6), ("speech", 1.0, 1.5)], 2.0, rate, seed=2)
    out = await run_node(EnergyVAD(gate=True, preroll_ms=500.0), split_frames(signal, rate, 320))
    _, e1, s2, e2 = (e.payload["sample"] for e in events_of(out))
    assert s2 - 8000 < e1  # the case under test
    assert coverage(out) == [(0, e2)]
    assert sum(o.num_samples for o in out if isinstance(o, AudioFrame)) == e2


async def test_gate_keeps_pts_of_other_time_bases(backend: str) -> None:
    rate = 16000
    signal = scene([("speech", 0.5, 1.0)], 1.5, rate)
    frames = split_frames(signal, rate, 320)
    for f in frames:  # pts in milliseconds from 3 s
        f.pts = 3000 + f.pts // 16
        f.time_base = f.time_base * 16
    out = await run_node(EnergyVAD(gate=True), frames)
    audio = [o for o in out if isinstance(o, AudioFrame)]
    start = events_of(out)[0].time
    assert audio[0].time == pytest.approx(start - 0.2, abs=1e-9)
    for a in audio:
        i = round((a.time - 3.0) * rate)
        np.testing.assert_array_equal(a.samples, signal[:, i : i + a.num_samples])


async def test_video_passes_and_non_audio_is_an_error(backend: str) -> None:
    rate = 16000
    video = VideoFrame.blank(4, 2, pts=0)
    frames = split_frames(scene([], 0.1, rate), rate, 320)
    out = await run_node(EnergyVAD(gate=True), [video, *frames])
    assert out == [video]  # silence gated away, video untouched
    with pytest.raises(NodeError, match=r"stage 'v' at frame 0: FormatError"):
        await run_node(EnergyVAD(name="v"), ["text"])


# --------------------------------------------------------------------------- events in a pipeline


async def test_events_of_several_stages_reach_consumer_and_subscribers(backend: str) -> None:
    rate = 16000
    frames = split_frames(scene(PARTS[:2], 3.0, rate), rate, 320)
    pipeline = Pipeline([LevelMeter(interval_ms=200.0), Gain(-6.0), EnergyVAD(), Gain(6.0)])
    everything: list[Event] = []
    speech: list[Event] = []
    pipeline.on_event(everything.append)
    pipeline.on_event(speech.append, kind="speech_start")

    out = [item async for item in pipeline.process(frames)]

    events = events_of(out)
    assert everything == events
    assert speech == [e for e in events if e.kind == "speech_start"] and len(speech) == 2
    assert {e.kind for e in events} == {"level", "speech_start", "speech_end"}
    # In order with the frames: a level event right after its frame, VAD events no earlier than
    # the frame on which they were decided.
    for i, item in enumerate(out):
        if isinstance(item, Event) and item.kind == "level":
            assert out[i - 1].time == item.time
        elif isinstance(item, Event):
            frame = next(o for o in reversed(out[:i]) if isinstance(o, AudioFrame))
            assert item.payload["confirmed_time"] <= frame.time + frame.duration + 1e-9


# --------------------------------------------------------------------------- errors


BAD = [
    {"threshold_db": 3.0},
    {"threshold_db": float("nan")},
    {"hysteresis_db": -1.0},
    {"min_speech_ms": -1.0},
    {"min_silence_ms": float("inf")},
    {"frame_ms": 0.0},
    {"frame_ms": "10"},
]


@pytest.mark.parametrize("kwargs", BAD)
def test_kernel_config_errors_name_the_stage(kernels: Any, kwargs: dict[str, Any]) -> None:
    (name,) = kwargs
    with pytest.raises(ConfigError, match=rf"^v: {name} must be") as info:
        kernels.EnergyVADKernel(**kwargs, stage="v")
    assert info.value.stage == "v"


@pytest.mark.parametrize("kwargs", [*BAD, {"preroll_ms": -1.0}])
def test_node_config_errors_name_the_node(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"^vad: ") as info:
        EnergyVAD(**kwargs, name="vad")
    assert info.value.stage == "vad"


def test_kernel_format_errors_and_properties(kernels: Any) -> None:
    k = kernels.EnergyVADKernel(stage="v")
    assert (k.threshold_db, k.hysteresis_db, k.frame_ms) == (-40.0, 6.0, 10.0)
    assert (k.min_speech_ms, k.min_silence_ms) == (100.0, 300.0)
    assert (k.state, k.speaking, k.pending_sample, k.frame_samples) == (
        "silence",
        False,
        None,
        None,
    )
    with pytest.raises(FormatError, match=r"^v: expected a float32 array"):
        k.process([0.0], 16000)
    with pytest.raises(FormatError, match=r"^v: invalid sample rate -1"):
        k.process(np.zeros((1, 4), np.float32), -1)
    loud = np.full((1, 250), 0.5, np.float32)
    assert k.process(loud, 16000) == []
    assert (k.state, k.pending_sample, k.analyzed_samples, k.frame_samples) == (
        "maybe_speech",
        0,
        160,
        160,
    )
    with pytest.raises(FormatError, match=r"^v: sample rate changed mid-stream"):
        k.process(loud, 8000)
    assert k.process(np.full((1, 1500), 0.5, np.float32), 16000) == [("speech_start", 0, 1600)]
    assert k.speaking and k.state == "speech"
    assert k.flush() == [("speech_end", 1750, 1750)]
    assert k.state == "silence" and k.analyzed_samples == 0


async def test_default_name_reads_well() -> None:
    assert EnergyVAD().name.startswith("energy_vad")


# --------------------------------------------------------------------------- properties


@st.composite
def bursty(draw: st.DrawFn) -> np.ndarray:
    """Noise in stretches of random length and level: silent, near the thresholds, loud."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = draw(st.integers(1, 2))
    stretches = draw(st.integers(1, 12))
    parts = []
    for _ in range(stretches):
        n = int(rng.integers(1, 3000))
        level_db = float(rng.choice([-80.0, -50.0, -44.0, -41.0, -38.0, -20.0, 0.0]))
        parts.append(rng.uniform(-1, 1, (channels, n)) * 10 ** (level_db / 20) * np.sqrt(3))
    return np.concatenate(parts, axis=1).astype(np.float32)


vad_settings = st.fixed_dictionaries(
    {
        "threshold_db": st.floats(-50.0, -25.0),
        "hysteresis_db": st.sampled_from([0.0, 3.0, 6.0]) | st.floats(0.0, 12.0),
        "min_speech_ms": st.sampled_from([0.0, 10.0, 50.0]) | st.floats(0.0, 200.0),
        "min_silence_ms": st.sampled_from([0.0, 20.0, 100.0]) | st.floats(0.0, 300.0),
        "frame_ms": st.sampled_from([2.5, 5.0, 10.0, 20.0]) | st.floats(0.1, 30.0),
    }
)


def cut(x: np.ndarray, at: list[int]) -> list[np.ndarray]:
    return [np.ascontiguousarray(b) for b in np.split(x, sorted(set(at)), axis=1) if b.size]


def decide(kernel: Any, blocks: list[np.ndarray], rate: int) -> list[list[tuple[str, int, int]]]:
    """Decisions of each call, then of flush."""
    return [kernel.process(b, rate) for b in blocks] + [kernel.flush()]


def flat(calls: list[list[tuple[str, int, int]]]) -> list[tuple[str, int, int]]:
    return [d for call in calls for d in call]


BACKEND_MODULES = ["python"] if PYTHON_ONLY else ["python", "rust"]


@settings(max_examples=40, deadline=None)
@given(
    x=bursty(),
    config=vad_settings,
    rate=st.sampled_from([8000, 16000, 48000]),
    backend_name=st.sampled_from(BACKEND_MODULES),
    data=st.data(),
)
def test_decisions_do_not_depend_on_the_split(
    x: np.ndarray, config: dict[str, float], rate: int, backend_name: str, data: st.DataObject
) -> None:
    from ._util import kernel_module

    module = kernel_module(backend_name)
    at = data.draw(st.lists(st.integers(1, x.shape[1]), max_size=15))
    whole = flat(decide(module.EnergyVADKernel(**config), [x], rate))
    split = flat(decide(module.EnergyVADKernel(**config), cut(x, at), rate))
    assert split == whole
    # Minimum durations hold: speech lasts at least min_speech_ms, pauses min_silence_ms.
    min_speech = round(config["min_speech_ms"] * rate / 1000)
    min_silence = round(config["min_silence_ms"] * rate / 1000)
    kinds = [d[0] for d in whole]
    assert kinds == ["speech_start", "speech_end"] * (len(kinds) // 2)
    marks = [d[1] for d in whole]
    assert all(b - a >= min_speech for a, b in zip(marks[::2], marks[1::2], strict=True))
    assert all(b - a >= min_silence for a, b in zip(marks[1::2], marks[2::2], strict=False))


@needs_engine
@settings(max_examples=60, deadline=None)
@given(x=bursty(), config=vad_settings, rate=st.sampled_from([8000, 16000, 48000]), data=st.data())
def test_rust_and_python_make_identical_decisions(
    x: np.ndarray, config: dict[str, float], rate: int, data: st.DataObject
) -> None:
    from stream import _engine

    blocks = cut(x, data.draw(st.lists(st.integers(1, x.shape[1]), max_size=15)))
    py_kernel = twins.EnergyVADKernel(**config, stage="v")
    rs_kernel = _engine.EnergyVADKernel(**config, stage="v")
    for block in blocks:
        assert py_kernel.process(block, rate) == rs_kernel.process(block, rate)
        assert (py_kernel.state, py_kernel.pending_sample, py_kernel.analyzed_samples) == (
            rs_kernel.state,
            rs_kernel.pending_sample,
            rs_kernel.analyzed_samples,
        )
    assert py_kernel.flush() == rs_kernel.flush()


async def test_node_events_and_gated_audio_do_not_depend_on_frame_size(backend: str) -> None:
    rate = 16000
    signal = scene(PARTS, 6.0, rate, seed=5)
    results = []
    for sizes in (320, [1, 999, 160], 16000):
        out = await run_node(EnergyVAD(gate=True), split_frames(signal, rate, sizes))
        events = [(e.kind, e.time, e.payload["sample"]) for e in events_of(out)]
        audio = np.concatenate([o.samples for o in out if isinstance(o, AudioFrame)], axis=1)
        results.append((events, audio))
    for events, audio in results[1:]:
        assert events == results[0][0]
        np.testing.assert_array_equal(audio, results[0][1])


@needs_engine
@pytest.mark.parametrize("amplitude", [0.25, 0.1, 0.01, 10 ** (-40 / 20)])
@pytest.mark.parametrize("nudge", [-1, 0, 1])
@pytest.mark.parametrize("edge", ["start", "end"])
def test_frames_exactly_at_a_threshold_decide_alike(
    amplitude: float, nudge: int, edge: str
) -> None:
    """Energies on a threshold, to the last bit: both kernels compare the same float64 values."""
    from stream import _engine

    energy = float(np.float32(amplitude)) ** 2
    at = 10 * np.log10(energy)
    at = float(np.nextafter(at, np.inf if nudge > 0 else -np.inf)) if nudge else float(at)
    x = np.full(6000, amplitude, np.float32)
    x[::2] *= -1
    if edge == "start":
        config = {"threshold_db": at, "hysteresis_db": 0.0}
    else:  # loud first, then the level sits on the end threshold
        x[:2000] = 0.9
        config = {"threshold_db": min(at + 3.0, 0.0), "hysteresis_db": 3.0}
    config |= {"min_speech_ms": 0.0, "min_silence_ms": 0.0}
    blocks = [x[None, :1234], x[None, 1234:]]
    py_kernel = twins.EnergyVADKernel(**config)
    rs_kernel = _engine.EnergyVADKernel(**config)
    assert decide(py_kernel, blocks, 16000) == decide(rs_kernel, blocks, 16000)
