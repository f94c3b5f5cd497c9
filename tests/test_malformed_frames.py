"""Malformed frames into every built-in stage and kernel, on both backends (issue 9, item 8).

Property: whatever a stage is handed (a wrong dtype or rank, an empty or too wide frame, NaN, a
rate that is a float, a bool or absurd, a channel or rate change mid-stream, bad timing, video
with a wrong shape, or no frame at all), it either gives valid output or ends the stream with a
``NodeError`` naming it, chained from a ``FormatError``/``ConfigError`` that names it too: never
an ``IndexError``, ``TypeError``, numpy error, engine panic or hang. Kernels: the Python twin
raises what the Rust kernel raises (class and message) for the same bad input.

Stages are enumerated from ``media_nodes.__all__``, kernels from ``media_nodes.audio`` and
``media_nodes.video``: a new one fails ``test_every_*_is_covered`` until it is given a way to be
built here.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import media_nodes
from media_nodes.audio.g711 import G711Encode, G711Frame
from stream import AudioFrame, Pipeline, VideoFrame
from stream.errors import BackendUnavailable, ConfigError, FormatError, NodeError, StreamError
from stream.events import Event
from stream.frames import MAX_CHANNELS, rate_problem, samples_problem, timing_problem
from stream.kernel_node import KernelNode
from stream.node import Node, Source

RUN_TIMEOUT_S = 60.0  # one short stream through one stage: seconds at most, even on a busy box
EXAMPLES = 12  # per stage and backend; every kind of damage is an explicit example too

# --------------------------------------------------------------------------- the damage


def _video(fmt: str = "rgb24", width: int = 8, height: int = 6, pts: int = 0) -> VideoFrame:
    return VideoFrame.blank(width, height, fmt, pts=pts, time_base=Fraction(1, 30))


def _set(frame: Any, **fields: Any) -> Any:
    """``frame`` with ``fields`` assigned after construction: frames are mutable, so a stage can
    be handed what no constructor would have built."""
    for key, value in fields.items():
        setattr(frame, key, value)
    return frame


# name -> how to damage a good frame (audio) or build a bad item; each takes a random generator.
Damage = Callable[[AudioFrame, np.random.Generator], Any]


def _nan_at(frame: AudioFrame, rng: np.random.Generator, value: float) -> AudioFrame:
    x = frame.samples.copy()
    x[rng.integers(x.shape[0]), rng.integers(x.shape[1])] = value
    return _set(frame, samples=x)


DAMAGE: dict[str, Damage] = {
    # samples
    "float64": lambda f, r: _set(f, samples=f.samples.astype(np.float64)),
    "float16": lambda f, r: _set(f, samples=f.samples.astype(np.float16)),
    "int32": lambda f, r: _set(f, samples=(f.samples * 1000).astype(np.int32)),
    "complex": lambda f, r: _set(f, samples=f.samples.astype(np.complex64)),
    "object": lambda f, r: _set(f, samples=f.samples.astype(object)),
    "bool samples": lambda f, r: _set(f, samples=f.samples > 0),
    "byte-swapped": lambda f, r: _set(f, samples=f.samples.astype(">f4")),
    "1-D": lambda f, r: _set(f, samples=f.samples[0].copy()),
    "3-D": lambda f, r: _set(f, samples=f.samples[None].copy()),
    "0-D": lambda f, r: _set(f, samples=np.array(0.5, np.float32)),
    "scalar": lambda f, r: _set(f, samples=np.float32(0.5)),
    "list": lambda f, r: _set(f, samples=f.samples.tolist()),
    "None samples": lambda f, r: _set(f, samples=None),
    "empty": lambda f, r: _set(f, samples=f.samples[:, :0].copy()),
    "zero channels": lambda f, r: _set(f, samples=f.samples[:0].copy()),
    "65 channels": lambda f, r: _set(
        f, samples=np.zeros((MAX_CHANNELS + 1, f.num_samples), np.float32)
    ),
    "NaN": lambda f, r: _nan_at(f, r, float("nan")),
    "inf": lambda f, r: _nan_at(f, r, float("inf")),
    "-inf": lambda f, r: _nan_at(f, r, float("-inf")),
    # the rate
    "float rate": lambda f, r: _set(f, sample_rate=float(f.sample_rate)),
    "numpy float rate": lambda f, r: _set(f, sample_rate=np.float64(f.sample_rate)),
    "True rate": lambda f, r: _set(f, sample_rate=True),
    "False rate": lambda f, r: _set(f, sample_rate=False),
    "str rate": lambda f, r: _set(f, sample_rate=str(f.sample_rate)),
    "None rate": lambda f, r: _set(f, sample_rate=None),
    "Fraction rate": lambda f, r: _set(f, sample_rate=Fraction(f.sample_rate)),
    "zero rate": lambda f, r: _set(f, sample_rate=0),
    "negative rate": lambda f, r: _set(f, sample_rate=-f.sample_rate),
    "10**9 rate": lambda f, r: _set(f, sample_rate=10**9),
    "2**70 rate": lambda f, r: _set(f, sample_rate=2**70),
    "numpy int rate": lambda f, r: _set(f, sample_rate=np.int64(f.sample_rate)),  # valid
    # timing
    "numpy int pts": lambda f, r: _set(f, pts=np.int64(f.pts or 0)),  # valid
    "float pts": lambda f, r: _set(f, pts=1.5),
    "str pts": lambda f, r: _set(f, pts="0"),
    "float time_base": lambda f, r: _set(f, time_base=0.5),
    "zero time_base": lambda f, r: _set(f, time_base=Fraction(0)),
    "negative time_base": lambda f, r: _set(f, time_base=Fraction(-1, 48000)),
    # other sample formats and layouts (valid frames many stages do not take)
    "interleaved": lambda f, r: AudioFrame(f.samples.T.copy(), f.sample_rate, f.pts, planar=False),
    "int16": lambda f, r: AudioFrame((f.samples * 3000).astype(np.int16), f.sample_rate, f.pts),
    "strided": lambda f, r: _set(f, samples=np.repeat(f.samples, 2, axis=1)[:, ::2]),
    # mid-stream changes (valid frames on their own)
    "channel change": lambda f, r: AudioFrame(
        np.repeat(f.samples[:1], 1 if f.channels > 1 else 2, axis=0), f.sample_rate, f.pts
    ),
    "rate change": lambda f, r: AudioFrame(f.samples, 44100 if f.sample_rate != 44100 else 32000),
    # not an audio frame at all
    "str item": lambda f, r: "text",
    "int item": lambda f, r: 42,
    "None item": lambda f, r: None,
    "bytes item": lambda f, r: f.samples.tobytes(),
    "array item": lambda f, r: f.samples,
    "dict item": lambda f, r: {"samples": f.samples},
    # video, good and bad
    "video": lambda f, r: _video(),
    "video float pixels": lambda f, r: _set(_video(), pixels=np.zeros((6, 8, 3), np.float32)),
    "video 2-D rgb": lambda f, r: _set(_video(), pixels=np.zeros((6, 8), np.uint8)),
    "video empty": lambda f, r: _set(_video(), pixels=np.zeros((0, 0, 3), np.uint8)),
    "video odd nv12": lambda f, r: _set(_video("nv12"), pixels=np.zeros((6, 5), np.uint8)),
    "video bad format": lambda f, r: _set(_video(), format="rgba"),
    "video None pixels": lambda f, r: _set(_video(), pixels=None),
    "video float pts": lambda f, r: _set(_video(), pts=2.5),
}


def frame_problem(item: Any) -> str | None:
    """Why ``item`` breaks the frame contract (stream/frames.py), or None when it keeps it."""
    if isinstance(item, AudioFrame):
        return (
            samples_problem(item.samples, item.planar)
            or rate_problem(item.sample_rate)
            or timing_problem(item.pts, item.time_base)
        )
    if isinstance(item, VideoFrame):
        try:
            VideoFrame(item.pixels, item.format, item.pts, item.time_base)
        except FormatError as exc:
            return str(exc)
    return None


def check_output(out: Any, fed: list[Any]) -> None:
    """An output is an input handed on as it came, an Event, or a frame keeping the contract
    (finite samples for float audio)."""
    if any(out is item for item in fed) or type(out) is Event:
        return
    if isinstance(out, G711Frame):  # G711Encode's output: its constructor is its contract
        G711Frame(out.codes, out.law, out.sample_rate, out.pts, out.time_base)
        return
    assert isinstance(out, AudioFrame | VideoFrame), f"unexpected output {out!r}"
    problem = frame_problem(out)
    assert problem is None, f"invalid output frame: {problem}"
    if isinstance(out, AudioFrame) and out.samples.dtype == np.float32:
        assert np.isfinite(out.samples).all(), "non-finite output"


def check_error(err: BaseException, name: str) -> None:
    """A NodeError naming the stage, chained from a typed error that names it too."""
    assert isinstance(err, NodeError), f"{type(err).__name__}: {err}"
    assert err.stage == name, str(err)
    cause = err.__cause__
    assert isinstance(cause, FormatError | ConfigError), f"cause {type(cause).__name__}: {cause}"
    assert str(cause).startswith(f"{name}: "), str(cause)
    assert cause.stage == name, (cause.stage, str(cause))


# --------------------------------------------------------------------------- the stages

Make = Callable[[str, Path, list[Any]], Node]


@dataclass(frozen=True)
class Case:
    """How a stage is built and fed: ``make(name, tmp_path, items)``; good audio at ``rate``
    with ``channels``, or video when ``video``. ``via`` is how ``items`` reach it: ``"process"``
    (a pipeline of its own), ``"inputs"`` (a Mixer's input, beside a good one) or
    ``"reference"`` (EchoCancel's far end, with a good near end)."""

    make: Make
    rate: int = 48000
    channels: int = 2
    video: bool = False
    via: str = "process"


def _audio(rate: int, channels: int, count: int, start: int = 0) -> list[AudioFrame]:
    """``count`` timed 20 ms frames of noise, the first at frame index ``start``."""
    n = rate // 50
    rng = np.random.default_rng(start)
    return [
        AudioFrame(
            rng.uniform(-0.3, 0.3, (channels, n)).astype(np.float32),
            rate,
            (start + i) * n,
            Fraction(1, rate),
        )
        for i in range(count)
    ]


def _good(case: Case, count: int, start: int = 0) -> list[Any]:
    """``count`` items ``case``'s stage takes: audio as it says, or small pictures."""
    if case.video:
        return [_video("yuv420p", 8, 6, pts=start + i) for i in range(count)]
    return list(_audio(case.rate, case.channels, count, start))


# Stages whose constructors need arguments, or whose good input is not 48 kHz stereo audio. A
# stage not listed here is built with no arguments and fed 48 kHz stereo float32 audio.
CASES: dict[str, Case] = {
    "ChannelMix": Case(lambda n, t, i: media_nodes.ChannelMix(1, name=n)),
    "Resample": Case(lambda n, t, i: media_nodes.Resample(16000, name=n)),
    "Rebuffer": Case(lambda n, t, i: media_nodes.Rebuffer(500, name=n)),
    "FormatConvert": Case(lambda n, t, i: media_nodes.FormatConvert("s16", name=n)),
    "EnergyVAD": Case(lambda n, t, i: media_nodes.EnergyVAD(gate=True, name=n)),
    "SileroVAD": Case(lambda n, t, i: media_nodes.SileroVAD(name=n), rate=16000, channels=1),
    "EchoCancel": Case(
        lambda n, t, i: media_nodes.EchoCancel(
            _audio(16000, 1, 9, start=300), stall_ms=5.0, delay_ms=0.0, name=n
        ),
        rate=16000,
        channels=1,
    ),
    "EchoCancel.aec3": Case(  # the default is Kalman; AEC3 and Speex take the same checks
        lambda n, t, i: media_nodes.EchoCancel(
            _audio(16000, 1, 9, start=300), stall_ms=5.0, delay_ms=0.0, algorithm="aec3", name=n
        ),
        rate=16000,
        channels=1,
    ),
    "EchoCancel.speex": Case(
        lambda n, t, i: media_nodes.EchoCancel(
            _audio(16000, 1, 9, start=300), stall_ms=5.0, delay_ms=0.0, algorithm="speex", name=n
        ),
        rate=16000,
        channels=1,
    ),
    "EchoCancel.reference": Case(
        lambda n, t, i: media_nodes.EchoCancel(i, stall_ms=5.0, delay_ms=0.0, name=n),
        rate=16000,
        channels=1,
        via="reference",
    ),
    "Mixer": Case(
        lambda n, t, i: media_nodes.Mixer(
            [i, _audio(48000, 2, 5, start=100)], stall_ms=5.0, name=n
        ),
        via="inputs",
    ),
    "FileSink": Case(lambda n, t, i: media_nodes.FileSink(str(t / f"{n}.wav"), name=n)),
    "Resize": Case(lambda n, t, i: media_nodes.Resize(4, 2, name=n), video=True),
    "ColorConvert": Case(lambda n, t, i: media_nodes.ColorConvert("gray", name=n), video=True),
    "Grayscale": Case(lambda n, t, i: media_nodes.Grayscale(name=n), video=True),
    "FrameRate": Case(lambda n, t, i: media_nodes.FrameRate(15, name=n), video=True),
}
# Sources that make their own stream and take no frames (their settings are checked elsewhere).
NO_INPUT = {"FileSource", "MicrophoneSource", "NoiseSource", "SilenceSource", "ToneSource"}
# Plays on a device: only its input check runs here (tests/devices plays on virtual devices).
DEVICE_SINKS = {"SpeakerSink"}


def exported_stages() -> list[str]:
    return sorted(
        name
        for name in media_nodes.__all__
        if inspect.isclass(obj := getattr(media_nodes, name)) and issubclass(obj, Node)
    )


def case_of(stage: str) -> Case:
    if stage in CASES:
        return CASES[stage]
    cls = getattr(media_nodes, stage)
    return Case(lambda n, t, i: cls(name=n))


FED = [s for s in exported_stages() if s not in NO_INPUT | DEVICE_SINKS] + [
    "EchoCancel.reference",
    "EchoCancel.speex",
]


def test_every_stage_is_covered(tmp_path: Path) -> None:
    """Every exported stage is fed here, or is a source that takes no frames, or a device sink.
    A new stage with a no-argument constructor is covered as it is; others need a Case."""
    for stage in exported_stages():
        cls = getattr(media_nodes, stage)
        if stage in NO_INPUT:
            assert issubclass(cls, Source), f"{stage} takes frames: give it a Case"
        elif stage not in DEVICE_SINKS:
            node = case_of(stage).make("probe", tmp_path, [])  # needs arguments: add a Case
            assert isinstance(node, cls)
    assert set(exported_stages()) >= DEVICE_SINKS | NO_INPUT


async def _run(case: Case, node: Node, items: list[Any]) -> list[Any]:
    """Stream ``items`` to ``node`` as ``case.via`` says; returns every output."""
    async with asyncio.timeout(RUN_TIMEOUT_S):  # a hang fails the test instead of stalling it
        if case.via == "inputs":  # the Mixer was built on the items
            return list(await Pipeline([node]).run())
        if case.via == "reference":  # EchoCancel was built on the items; a good near end
            return list(await Pipeline([node]).run(_good(case, len(items) + 4)))
        return list(await Pipeline([node]).run(items))


def _feed(stage: str, backend: str, tmp_path: Path, damage: dict[int, str], seed: int) -> None:
    """Five good items, item ``i`` damaged as ``damage[i]`` says, through ``stage``."""
    case = case_of(stage)
    name = "the_stage"
    rng = np.random.default_rng(seed)
    items: list[Any] = _good(case, 5)
    for at, kind in damage.items():
        template = _good(replace(case, video=False), 1, start=at)[0]
        items[at] = DAMAGE[kind](template, rng)
    shown = f"{stage} on {backend}, {damage}"
    node = case.make(name, tmp_path, items)
    try:
        outputs = asyncio.run(_run(case, node, items))
    except BackendUnavailable as exc:  # a missing library or model: not what this is about
        pytest.skip(f"{stage} cannot run here: {exc}")
    except NodeError as err:
        check_error(err, name)
        return
    except Exception as exc:  # anything else is the bug this test is for
        pytest.fail(f"{shown}: {type(exc).__name__}: {exc}")
    if isinstance(node, KernelNode):
        assert node.backend == backend
    for out in outputs:
        check_output(out, items)
    # A stage that works on float32 audio must refuse audio that breaks the contract, on both
    # backends (the Python twins used to pass a float sample_rate on).
    strict = isinstance(node, KernelNode) and not node.accepts_any and not case.video
    strict = strict or isinstance(node, G711Encode)  # a KernelBacked stage that takes fltp only
    broken = [frame_problem(x) for x in items if isinstance(x, AudioFrame) and frame_problem(x)]
    if strict and broken:
        pytest.fail(f"{shown}: took {broken[0]!r} without an error")


@pytest.mark.parametrize("stage", FED)
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_each_kind_of_damage(backend: str, tmp_path: Path, stage: str, kind: str) -> None:
    _feed(stage, backend, tmp_path, {2: kind}, seed=0)


@pytest.mark.parametrize("stage", FED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    damage=st.dictionaries(st.integers(0, 4), st.sampled_from(list(DAMAGE)), min_size=1),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_damage(
    backend: str, tmp_path: Path, stage: str, damage: dict[int, str], seed: int
) -> None:
    """Several damaged items at random places in one stream: what one stage makes of a mix."""
    _feed(stage, backend, tmp_path, damage, seed)


@pytest.mark.parametrize("stage", sorted(DEVICE_SINKS))
@pytest.mark.parametrize("kind", list(DAMAGE))
async def test_device_sink_checks_its_input(backend: str, stage: str, kind: str) -> None:
    """A device sink checks what it is handed before it touches the device, so that runs here;
    a frame it can play would open the device, and is left to tests/devices."""
    node = getattr(media_nodes, stage)(name="sink")
    bad = DAMAGE[kind](_audio(48000, 2, 1)[0], np.random.default_rng(0))
    if isinstance(bad, VideoFrame):
        assert await node.process(bad) is None  # a speaker plays the audio of an A/V stream
        return
    if isinstance(bad, AudioFrame) and frame_problem(bad) is None and bad.format == "fltp":
        return
    with pytest.raises(FormatError) as info:
        await node.process(bad)
    assert str(info.value).startswith("sink: ") and info.value.stage == "sink"


# --------------------------------------------------------------------------- kernel parity

# Each kernel of media_nodes.audio / media_nodes.video: its constructor arguments and how a
# damaged frame's (samples, sample_rate) -- or pixels and format -- reach it.
KernelCall = Callable[[Any, Any, Any], Any]


def _mix(kernel: Any, samples: Any, rate: Any) -> Any:
    # The damaged block is input 0; a damaged rate doubles as the channel count.
    length = samples.shape[-1] if getattr(samples, "ndim", 0) else 1
    channels = 1 if type(rate) is int and rate == 48000 else rate
    return kernel.process([samples, None], channels, length)


KERNELS: dict[str, tuple[dict[str, Any], KernelCall]] = {
    "PassThroughKernel": ({}, lambda k, x, r: k.process(x, r)),
    "GainKernel": ({"gain_db": -6.0}, lambda k, x, r: k.process(x, r)),
    "ChannelMixKernel": ({"channels": 1}, lambda k, x, r: k.process(x, r)),
    "ResampleKernel": ({"sample_rate": 16000}, lambda k, x, r: k.process(x, r)),
    "RebufferKernel": ({"samples": 256}, lambda k, x, r: k.process(x, r)),
    "DenoiseKernel": ({}, lambda k, x, r: k.process(x, r)),
    "HighPassKernel": ({}, lambda k, x, r: k.process(x, r)),
    "NoiseSuppressKernel": ({}, lambda k, x, r: k.process(x, r)),
    "AutoGainKernel": ({}, lambda k, x, r: k.process(x, r)),
    "LevelMeterKernel": ({}, lambda k, x, r: k.process(x, r)),
    "EnergyVADKernel": ({}, lambda k, x, r: k.process(x, r)),
    "EchoCancelKernel": ({}, lambda k, x, r: k.process(x, np.zeros_like(x), r)),
    "Aec3Kernel": ({}, lambda k, x, r: k.process(x, np.zeros_like(x), r)),
    "KalmanAecKernel": ({}, lambda k, x, r: k.process(x, np.zeros_like(x), r)),
    "MixKernel": ({"gains_db": [0.0, -6.0]}, _mix),
    "FormatConvertKernel": ({"format": "s16"}, lambda k, x, r: k.process(x, "fltp")),
    "G711Kernel": ({"law": "alaw"}, lambda k, x, r: k.encode(x, r)),
    "SileroVADKernel": ({}, lambda k, x, r: k.process(x, r)),
    "ResizeKernel": ({"width": 4, "height": 2}, lambda k, x, r: k.process(x, r)),
    "ColorConvertKernel": ({"format": "gray"}, lambda k, x, r: k.process(x, r)),
    "GrayscaleKernel": ({}, lambda k, x, r: k.process(x, r)),
    "FrameRateKernel": ({"fps": 30}, lambda k, x, r: k.process(x, r)),
}
VIDEO_KERNELS = {"ResizeKernel", "ColorConvertKernel", "GrayscaleKernel", "FrameRateKernel"}
PYTHON_ONLY_SESSION = os.environ.get("REMOTEMEDIA_RUNTIME", "").strip().lower() == "python"


def exported_kernels() -> list[str]:
    import media_nodes.audio
    import media_nodes.video

    names = [*media_nodes.audio.__all__, *media_nodes.video.__all__]
    return sorted(n for n in names if n.endswith("Kernel"))


def test_every_kernel_is_covered() -> None:
    assert sorted(KERNELS) == exported_kernels()


def _kernel_args(name: str) -> list[Any]:
    """The damaged (payload, second argument) pairs: for audio kernels a damaged frame's samples
    and rate; for picture kernels its pixels and format; for FrameRate its pts and time base."""
    if name == "FrameRateKernel":
        return [
            (pts, tb)
            for pts in (0, 1.5, None, True, "0", 2**63, -5)
            for tb in (Fraction(1, 30), 0.5, None, Fraction(0), Fraction(-1, 30), "1/30")
        ]
    out = []
    for kind, damage in DAMAGE.items():
        item = damage(_audio(48000, 1 if "Echo" in name else 2, 1)[0], np.random.default_rng(1))
        if name in VIDEO_KERNELS:
            if isinstance(item, VideoFrame):
                out.append((item.pixels, item.format))
            out.append((item, "rgb24"))
        elif isinstance(item, AudioFrame):
            out.append((item.samples, item.sample_rate))
        else:
            out.append((item, 48000))
        if kind == "float rate" and name not in VIDEO_KERNELS:
            out.append((_audio(48000, 1, 1)[0].samples, 48000.0))
    return out


def _outcome(name: str, module: Any, payload: Any, arg: Any) -> tuple[str, str]:
    kwargs, call = KERNELS[name]
    if name == "SileroVADKernel":
        from media_nodes.audio.silero_vad import model_path

        try:
            kwargs = {"model_path": model_path()}
        except BackendUnavailable as exc:
            pytest.skip(str(exc))
    try:
        kernel = getattr(module, name)(**kwargs, stage="k")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    try:
        call(kernel, payload, arg)
    except StreamError as exc:
        assert exc.stage == "k" and str(exc).startswith("k: "), str(exc)
        return type(exc).__name__, str(exc)
    except Exception as exc:  # a foreign error is the bug: show which one
        return f"foreign {type(exc).__name__}", str(exc)
    return "ok", ""


@pytest.mark.skipif(PYTHON_ONLY_SESSION, reason="parity needs the Rust kernels")
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_twins_fail_alike(name: str) -> None:
    """For each damaged input the Python twin and the Rust kernel both succeed, or both raise
    the same stream.errors class with the same message; neither raises anything else."""
    import stream._engine as engine

    twins = importlib.import_module(
        "media_nodes.video" if name in VIDEO_KERNELS else "media_nodes.audio"
    )
    for payload, arg in _kernel_args(name):
        rust = _outcome(name, engine, payload, arg)
        python = _outcome(name, twins, payload, arg)
        shown = f"{name}.process({type(payload).__name__}, {arg!r})"
        assert not rust[0].startswith("foreign"), f"{shown}: rust raised {rust}"
        assert not python[0].startswith("foreign"), f"{shown}: python raised {python}"
        assert rust == python, f"{shown}: rust {rust} != python {python}"
