"""Each built-in stage's settings are defined once (``SETTINGS``, stream.stage_settings); the
node, both kernels, ``stream/_engine.pyi`` and the docs agree with that one definition, live
settings reach the running kernel on both backends (a fused native chain too), and the others
refuse assignment."""

from __future__ import annotations

import ast
import asyncio
import inspect
import math
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_nodes.audio import (
    aec3_kernel,
    auto_gain,
    channel_mix,
    denoise,
    echo_cancel_kernel,
    echo_settings,
    energy_vad,
    format_convert,
    g711,
    gain,
    high_pass,
    kalman_kernel,
    level_meter,
    mixer,
    noise_suppress,
    passthrough,
    rebuffer,
    resample,
    silero_vad,
)
from media_nodes.audio.echo_cancel import EchoCancel
from media_nodes.video import color_convert, frame_rate, grayscale, resize
from stream import ConfigError
from stream.frames import AudioFrame
from stream.kernel_node import FusedSegment, KernelNode
from stream.node import Node
from stream.stage_settings import REQUIRED, Settings

ROOT = Path(__file__).resolve().parents[1]
RUST = os.environ.get("REMOTEMEDIA_RUNTIME") != "python"


@dataclass
class Stage:
    node: type[Node]
    settings: Settings
    twin: type[Any]
    rust: str  # the kernel's class name in stream._engine
    needs: dict[str, Any] = field(default_factory=dict)  # required node arguments
    kernel_needs: dict[str, Any] = field(default_factory=dict)  # required kernel arguments
    other_args: tuple[str, ...] = ()  # node arguments that are not settings (streams)
    # A node with a choice of kernels (EchoCancel's algorithm) has an entry per kernel: the
    # kernel's own settings where they are not the node's, and a label naming the entry.
    kernel_settings: Settings | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.node.__name__

    @property
    def kernel(self) -> Settings:
        return self.kernel_settings or self.settings


STAGES = [
    Stage(
        passthrough.PassThrough,
        passthrough.SETTINGS,
        passthrough.PassThroughKernel,
        "PassThroughKernel",
    ),
    Stage(gain.Gain, gain.SETTINGS, gain.GainKernel, "GainKernel"),
    Stage(
        channel_mix.ChannelMix,
        channel_mix.SETTINGS,
        channel_mix.ChannelMixKernel,
        "ChannelMixKernel",
        {"channels": 2},
        {"channels": 2},
    ),
    Stage(
        format_convert.FormatConvert,
        format_convert.SETTINGS,
        format_convert.FormatConvertKernel,
        "FormatConvertKernel",
        {},
        {"format": "s16"},
    ),
    Stage(g711.G711Encode, g711.ENCODE_SETTINGS, g711.G711Kernel, "G711Kernel"),
    Stage(g711.G711Decode, g711.DECODE_SETTINGS, g711.G711Kernel, "G711Kernel"),
    Stage(
        resample.Resample,
        resample.SETTINGS,
        resample.ResampleKernel,
        "ResampleKernel",
        {"sample_rate": 16000},
        {"sample_rate": 16000},
    ),
    Stage(
        rebuffer.Rebuffer,
        rebuffer.SETTINGS,
        rebuffer.RebufferKernel,
        "RebufferKernel",
        {"samples": 480},
        {"samples": 480},
    ),
    Stage(
        level_meter.LevelMeter,
        level_meter.SETTINGS,
        level_meter.LevelMeterKernel,
        "LevelMeterKernel",
    ),
    Stage(energy_vad.EnergyVAD, energy_vad.SETTINGS, energy_vad.EnergyVADKernel, "EnergyVADKernel"),
    Stage(silero_vad.SileroVAD, silero_vad.SETTINGS, silero_vad.SileroVADKernel, "SileroVADKernel"),
    Stage(denoise.Denoise, denoise.SETTINGS, denoise.DenoiseKernel, "DenoiseKernel"),
    Stage(high_pass.HighPass, high_pass.SETTINGS, high_pass.HighPassKernel, "HighPassKernel"),
    Stage(
        noise_suppress.NoiseSuppress,
        noise_suppress.SETTINGS,
        noise_suppress.NoiseSuppressKernel,
        "NoiseSuppressKernel",
    ),
    Stage(auto_gain.AutoGain, auto_gain.SETTINGS, auto_gain.AutoGainKernel, "AutoGainKernel"),
    Stage(
        mixer.Mixer,
        mixer.SETTINGS,
        mixer.MixKernel,
        "MixKernel",
        {"inputs": [[]]},
        {"gains_db": [0.0]},
        ("inputs",),
    ),
    Stage(
        EchoCancel,
        echo_settings.SETTINGS,
        echo_cancel_kernel.EchoCancelKernel,
        "EchoCancelKernel",
        {"reference": "peer", "algorithm": "speex"},
        {},
        ("reference",),
    ),
    Stage(
        EchoCancel,
        echo_settings.SETTINGS,
        aec3_kernel.Aec3Kernel,
        "Aec3Kernel",
        {"reference": "peer", "algorithm": "aec3"},
        {},
        ("reference",),
        kernel_settings=echo_settings.AEC3_SETTINGS,
        label="EchoCancel/aec3",
    ),
    Stage(
        EchoCancel,
        echo_settings.SETTINGS,
        kalman_kernel.KalmanAecKernel,
        "KalmanAecKernel",
        {"reference": "peer"},
        {},
        ("reference",),
        kernel_settings=echo_settings.KALMAN_SETTINGS,
        label="EchoCancel/kalman",
    ),
    Stage(
        resize.Resize,
        resize.SETTINGS,
        resize.ResizeKernel,
        "ResizeKernel",
        {"width": 8, "height": 6},
        {"width": 8, "height": 6},
    ),
    Stage(
        color_convert.ColorConvert,
        color_convert.SETTINGS,
        color_convert.ColorConvertKernel,
        "ColorConvertKernel",
        {"format": "gray"},
        {"format": "gray"},
    ),
    Stage(grayscale.Grayscale, grayscale.SETTINGS, grayscale.GrayscaleKernel, "GrayscaleKernel"),
    Stage(
        frame_rate.FrameRate,
        frame_rate.SETTINGS,
        frame_rate.FrameRateKernel,
        "FrameRateKernel",
        {"fps": 25},
        {"fps": 25},
    ),
]
BY_NAME = {s.name: s for s in STAGES}
KERNELS = {s.rust: s for s in STAGES}
NOT_SETTINGS = ("self", "cls", "name", "backend", "stage")
EMPTY = inspect.Parameter.empty


def _defaults(params: list[tuple[str, Any]], skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    return [(n, REQUIRED if d is EMPTY else d) for n, d in params if n not in NOT_SETTINGS + skip]


def _signature(fn: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    params = inspect.signature(fn).parameters.values()
    return _defaults([(p.name, p.default) for p in params], skip)


def _parsed(text: str) -> list[tuple[str, Any]]:
    """``(name, default)`` of a signature written as text: ``(a, b=1, *, stage="x")``."""
    fn = ast.parse(f"def f{text}: pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    positional = args.posonlyargs + args.args
    pos_defaults = [EMPTY] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    out = [(a.arg, d) for a, d in zip(positional, pos_defaults, strict=True)]
    out += [
        (a.arg, EMPTY if d is None else ast.literal_eval(d))
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    return _defaults(out)


def _node_expected(stage: Stage) -> list[tuple[str, Any]]:
    return [(s.name, s.default) for s in stage.settings.node_settings()]


def _kernel_expected(stage: Stage) -> list[tuple[str, Any]]:
    return [(s.name, s.default_in_kernel) for s in stage.kernel.kernel_settings()]


def _same(got: list[tuple[str, Any]], expected: list[tuple[str, Any]]) -> bool:
    """Equal names in order, and equal defaults (1 and 1.0 differ: the type is part of it)."""
    return [n for n, _ in got] == [n for n, _ in expected] and all(
        (g is REQUIRED) == (e is REQUIRED) and (g is REQUIRED or (g == e and type(g) is type(e)))
        for (_, g), (_, e) in zip(got, expected, strict=True)
    )


# ----------------------------------------------------------------- (a) node and twin signatures


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_node_and_twin_signatures_are_the_settings(stage: Stage) -> None:
    node = _signature(stage.node.__init__, stage.other_args)
    assert _same(node, _node_expected(stage)), (node, _node_expected(stage))
    twin = _signature(stage.twin.__init__)
    assert _same(twin, _kernel_expected(stage)), (twin, _kernel_expected(stage))
    assert stage.node.settings is stage.settings


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_node_built_with_defaults_holds_them(stage: Stage) -> None:
    node = stage.node(**stage.needs)
    for s in stage.settings.node_settings():
        resolved = ("gains_db", "delay_ms", "neg_threshold")
        if not s.required and s.name not in resolved and s.name not in stage.needs:
            assert getattr(node, s.name) == s.default, s.name  # those three are resolved
    if isinstance(node, KernelNode) and stage.name != "SileroVAD":  # its model is found later
        args = node.kernel_args()
        assert list(args) == [s.name for s in stage.settings.kernel_settings()]
    if isinstance(node, EchoCancel):  # the arguments of the algorithm's kernel
        assert list(node.kernel_args()) == [s.name for s in stage.kernel.kernel_settings()]


# ----------------------------------------------------------------- (b) engine and .pyi


@pytest.mark.skipif(not RUST, reason="the Python-only session has no engine")
@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_engine_text_signature_is_the_settings(stage: Stage) -> None:
    from stream import _engine

    cls = getattr(_engine, stage.rust)
    got = _parsed(cls.__text_signature__)
    assert _same(got, _kernel_expected(stage)), (got, _kernel_expected(stage))


def _pyi_signatures() -> dict[str, list[tuple[str, Any]]]:
    tree = ast.parse((ROOT / "stream" / "_engine.pyi").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__new__":
                    text = ast.unparse(item.args)
                    out[node.name] = _parsed(f"({text})")
    return out


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_pyi_is_the_settings(stage: Stage) -> None:
    got = _pyi_signatures()[stage.rust]
    assert _same(got, _kernel_expected(stage)), (got, _kernel_expected(stage))


# ----------------------------------------------------------------- (c) docs


def _doc_headings() -> dict[str, list[tuple[str, Any]]]:
    out = {}
    for path in (ROOT / "docs").glob("*.md"):
        for m in re.finditer(r"^## (\w+)(\([^)]*\))\s*$", path.read_text(), re.M):
            out[m.group(1)] = _parsed(m.group(2))
    return out


def test_every_stage_and_kernel_has_a_docs_heading_that_is_its_settings() -> None:
    headings = _doc_headings()
    for stage in STAGES:
        got = headings[stage.rust]
        assert _same(got, _kernel_expected(stage)), (stage.rust, got)
        if stage.name in headings:  # node headings where the docs give the node its own
            node = [(n, d) for n, d in headings[stage.name] if n not in stage.other_args]
            assert _same(node, _node_expected(stage)), (stage.name, node)


def test_readme_and_video_node_tables_show_the_settings_defaults() -> None:
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "stages-video.md").read_text()
    seen = set()
    for m in re.finditer(r"^\| `(\w+)\(([^`]*)\)`", text, re.M):
        stage = BY_NAME.get(m.group(1))
        if stage is None:
            continue
        seen.add(stage.name)
        for part in filter(None, (p.strip() for p in m.group(2).split(","))):
            if part in ("...", "*", "name=None", "backend=None"):
                continue
            name, _, shown = part.partition("=")
            if name in stage.other_args:
                continue
            setting = stage.settings[name]
            if shown:
                assert ast.literal_eval(shown) == setting.default, (stage.name, part)
            else:
                assert setting.required, (stage.name, f"{name} has a default: show it")
    assert {"Gain", "FormatConvert", "Rebuffer", "LevelMeter", "Mixer", "FrameRate"} <= seen


# ----------------------------------------------------------------- (d) live and fixed settings


def test_live_settings_are_the_ones_that_reach_a_running_kernel() -> None:
    live = {(s.name, n) for s in STAGES for n in s.settings.live}
    assert live == {("Gain", "gain_db"), ("Mixer", "gains_db")}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_setting_that_is_not_live_refuses_assignment(stage: Stage) -> None:
    node = stage.node(**stage.needs, name="it")
    for s in stage.settings.node_settings():
        if s.live:
            continue
        before = getattr(node, s.name)
        with pytest.raises(ConfigError) as info:
            setattr(node, s.name, before)
        assert str(info.value) == (
            f"it: {s.name} is fixed at construction; build a new {stage.node.__name__}"
        )
        assert getattr(node, s.name) == before


def _frame(value: float, n: int = 480, pts: int = 0, rate: int = 48000) -> AudioFrame:
    return AudioFrame(np.full((1, n), value, np.float32), rate, pts, Fraction(1, rate))


def test_energy_vad_threshold_cannot_change_mid_stream(backend: str) -> None:
    """The issue's case: a -43 dBFS tone after ``threshold_db = -60`` never started speech; now
    the assignment says so instead of doing nothing."""
    vad = energy_vad.EnergyVAD(threshold_db=-40.0, name="vad")
    vad.initialize()
    vad.process(_frame(0.0))
    with pytest.raises(ConfigError, match=r"^vad: threshold_db is fixed at construction"):
        vad.threshold_db = -60.0
    assert vad.threshold_db == -40.0
    assert vad.kernel.threshold_db == -40.0


def _last_level(frames: list[Any]) -> float:
    return float(frames[-1].samples[0, -1])


def test_gain_change_reaches_the_running_kernel(backend: str) -> None:
    node = gain.Gain(0.0, ramp_ms=5.0)
    node.initialize()
    assert node.backend == backend
    first = node.process(_frame(0.5))
    assert _last_level(first) == pytest.approx(0.5)
    node.gain_db = -20.0
    assert node.gain_db == -20.0 and node.kernel.gain_db == -20.0
    out = [f for i in range(1, 5) for f in node.process(_frame(0.5, pts=480 * i))]
    assert _last_level(out) == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(ConfigError, match="gain_db must be finite"):
        node.gain_db = math.inf
    assert node.gain_db == -20.0 and node.kernel.gain_db == -20.0


@pytest.mark.skipif(not RUST, reason="a fused chain needs the engine")
def test_gain_change_reaches_a_gain_inside_a_fused_chain() -> None:
    g, r = gain.Gain(0.0, backend="rust"), resample.Resample(16000, backend="rust")
    g.initialize()
    r.initialize()
    chain = FusedSegment([g, r])
    first = chain.process(_frame(0.5))
    assert _last_level(first) == pytest.approx(0.5, abs=1e-3)
    g.gain_db = -20.0
    out = [f for i in range(1, 10) for f in chain.process(_frame(0.5, pts=480 * i))]
    assert _last_level(out) == pytest.approx(0.05, abs=1e-4)


async def _ones(frames: int) -> AsyncIterator[AudioFrame]:
    for i in range(frames):
        yield _frame(0.25, 960, pts=960 * i)


def test_mixer_gain_change_reaches_the_running_kernel(backend: str) -> None:
    async def run() -> list[float]:
        mix = mixer.Mixer([_ones(40), _ones(40)], gains_db=[0.0, 0.0], frame_ms=20.0)
        mix.initialize()
        assert mix.backend == backend
        levels = []
        async for item in mix.stream(None):
            if isinstance(item, AudioFrame):
                levels.append(float(item.samples[0, -1]))
                if len(levels) == 1:  # after the first output, long before the inputs end
                    mix.gains_db = [-200.0, 0.0]
        return levels

    levels = asyncio.run(run())
    assert levels[0] == pytest.approx(0.5)
    assert levels[-1] == pytest.approx(0.25)
    m = mixer.Mixer([[]], name="m")
    with pytest.raises(ConfigError, match=r"^m: gains_db has 2 gains for 1 inputs"):
        m.gains_db = [0.0, 0.0]
    m.set_gain_db(0, -6.0)
    assert m.gains_db == [-6.0]


# ----------------------------------------------------------------- (e) bounds, alike everywhere

NAN, INF = math.nan, math.inf
BAD: dict[str, dict[str, list[Any]]] = {
    "Gain": {"gain_db": [NAN, 800.0, "loud", True], "ramp_ms": [-1.0, INF, False]},
    "ChannelMix": {"channels": [0, 65, True, 2.0]},
    "FormatConvert": {"format": ["s24", 3]},
    "G711Encode": {"law": ["ulaw", "PCMU", 3, ""]},
    "G711Decode": {"law": ["MULAW", b"alaw"]},
    "Resample": {"sample_rate": [500, 400_000, 16000.0]},
    "Rebuffer": {"samples": [0, True], "frame_ms": [0.0, -5.0]},
    "LevelMeter": {"window_ms": [0.0, 60_001.0, "x"], "interval_ms": [-1.0]},
    "EnergyVAD": {
        "threshold_db": [1.0, -201.0, NAN],
        "hysteresis_db": [-1.0],
        "min_speech_ms": [-1.0, 3_600_001.0],
        "min_silence_ms": [-1.0],
        "preroll_ms": [-1.0],
        "frame_ms": [0.0, 1001.0],
    },
    "SileroVAD": {
        "threshold": [1.5, -0.1],
        "neg_threshold": [0.9, 2.0],
        "min_speech_ms": [-1.0],
        "min_silence_ms": [INF],
        "preroll_ms": [-1.0],
    },
    "Denoise": {"mix": [1.5, -0.5, True]},
    "Mixer": {
        "gains_db": [[NAN], "x"],
        "sample_rate": [0],
        "channels": [65],
        "frame_ms": [0.0],
        "stall_ms": [-1.0],
    },
    "EchoCancel": {
        "filter_ms": [5.0, 3000.0],
        "frame_ms": [1.0],
        "stall_ms": [-1.0],
        "delay_ms": [-1.0, "soon"],
        "algorithm": ["webrtc", "AEC3", 3, None],
    },
    # frame_ms inside EchoCancel's [2, 100] but not whole 10 ms (the node's relate check, in the
    # AEC3 kernels' words); outside it the node's range speaks first.
    "EchoCancel/aec3": {
        "filter_ms": [5.0],
        "frame_ms": [5.0, 15.0, 99.0],
        "stall_ms": [-1.0],
        "delay_ms": ["soon"],
        "algorithm": [""],
    },
    # The default algorithm: the node's ranges, which its kernel twins share.
    "EchoCancel/kalman": {
        "filter_ms": [5.0, 3000.0, "long"],
        "frame_ms": [1.0, 101.0],
        "stall_ms": [-1.0],
        "delay_ms": ["soon"],
        "algorithm": ["kalman2"],
    },
    "Resize": {"width": [0, 16385, 1.5], "height": [0], "quality": ["best"]},
    "ColorConvert": {"format": ["yuv444p"]},
    "FrameRate": {"fps": [0, 1001, "fast"]},
}


# Where the engine (rust_engine/src/py/*.rs) still disagrees; each is a Rust change to make.
RUST_DIFFERS: dict[tuple[str, str, str], str] = {}  # (stage, setting, repr(value)): why


def test_every_setting_with_bounds_has_bad_values_here() -> None:
    for stage in STAGES:
        for s in stage.settings.node_settings():
            if s.type != "bool":
                assert BAD.get(stage.name, {}).get(s.name), (stage.name, s.name)


def _message(make: Any) -> str:
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.stage == "s"
    return str(info.value)


def _cases() -> list[tuple[Stage, str, Any]]:
    return [(BY_NAME[n], k, v) for n, bad in BAD.items() for k, vs in bad.items() for v in vs]


@pytest.mark.parametrize(
    ("stage", "setting", "value"), _cases(), ids=lambda x: getattr(x, "name", repr(x))
)
def test_a_bad_value_is_refused_alike_by_node_twin_and_engine(
    stage: Stage, setting: str, value: Any
) -> None:
    node = _message(lambda: stage.node(**{**stage.needs, setting: value}, name="s"))
    if setting not in stage.kernel or not stage.kernel[setting].kernel:
        return
    args = {**stage.kernel_needs, setting: value}
    if stage.name == "SileroVAD":
        args["model_path"] = "/nonexistent.onnx"  # settings are checked before the model is read
    twin = _message(lambda: stage.twin(**args, stage="s"))
    assert node == twin
    if RUST:
        from stream import _engine

        differs = RUST_DIFFERS.get((stage.name, setting, repr(value)))
        try:
            rust = _message(lambda: getattr(_engine, stage.rust)(**args, stage="s"))
            assert rust == twin
        except (AssertionError, pytest.fail.Exception):
            if differs:
                pytest.xfail(differs)
            raise
        assert not differs, "the engine agrees now: drop the case from RUST_DIFFERS"


def test_live_bounds_are_the_construction_bounds(backend: str) -> None:
    node = gain.Gain(name="s")
    node.initialize()
    for bad in BAD["Gain"]["gain_db"]:
        built = _message(lambda bad=bad: gain.Gain(bad, name="s"))
        live = _message(lambda bad=bad: setattr(node, "gain_db", bad))
        kernel = _message(lambda bad=bad: setattr(node.kernel, "gain_db", bad))
        assert built == live == kernel.replace(node.kernel.stage, "s", 1)
