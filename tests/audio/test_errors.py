"""Bad input and bad settings: typed errors that name the stage, on every backend.

Kernel checks follow docs/kernels.md (order and wording); through a Pipeline they surface as
``NodeError`` naming the stage and the frame index, chained from the kernel's ``FormatError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from media_nodes.audio import (
    ChannelMix,
    FormatConvert,
    Gain,
    Rebuffer,
    Resample,
)
from stream import AudioFrame, Pipeline, VideoFrame
from stream.errors import ConfigError, FormatError, NodeError, StreamError
from stream.kernel_node import KernelNode
from stream.testing import noise, run_node, split_frames

from ._util import kernel_module

PYTHON_ONLY = os.environ.get("REMOTEMEDIA_RUNTIME", "").strip().lower() == "python"
EXPECTED_2D = "expected a float32 array of shape (channels, samples), got {} with {} dimension(s)"

# Every stage that takes float32 planar audio, built with a name of its own.
STAGES: dict[str, Callable[[str], KernelNode]] = {
    "gain": lambda name: Gain(-3.0, name=name),
    "channel_mix": lambda name: ChannelMix(1, name=name),
    "resample": lambda name: Resample(16000, name=name),
    "rebuffer": lambda name: Rebuffer(512, name=name),
}
STATEFUL = ["resample", "rebuffer"]


def make_kernel(stage: str, name: str) -> Any:
    """The kernel a node builds on the backend the environment selects."""
    node = STAGES[stage](name)
    node.initialize()
    return node.kernel


def check_error(exc: StreamError, name: str, message: str) -> None:
    assert exc.stage == name
    assert str(exc) == f"{name}: {message}"


# --------------------------------------------------------------------------- kernel checks


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            np.zeros((1, 8), np.int16),
            EXPECTED_2D.format("int16", 2),
        ),
        (
            np.zeros((2, 8), np.float64),
            EXPECTED_2D.format("float64", 2),
        ),
        (
            np.zeros(8, np.float32),
            EXPECTED_2D.format("float32", 1),
        ),
        (
            np.zeros((1, 2, 8), np.float32),
            EXPECTED_2D.format("float32", 3),
        ),
        (np.zeros((1, 0), np.float32), "empty frame (1 channels, 0 samples)"),
        (np.zeros((0, 16), np.float32), "empty frame (0 channels, 16 samples)"),
    ],
)
def test_kernel_rejects_bad_arrays(
    backend: str, stage: str, block: np.ndarray, message: str
) -> None:
    kernel = make_kernel(stage, f"my_{stage}")
    with pytest.raises(FormatError) as info:
        kernel.process(block, 48000)
    check_error(info.value, f"my_{stage}", message)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_kernel_rejects_non_finite_first_in_planar_order(
    backend: str, stage: str, bad: float
) -> None:
    block = noise(0.01, channels=2)
    block[1, 3] = bad
    block[0, 7] = np.nan  # planar order: channel 0 comes first
    kernel = make_kernel(stage, "x")
    with pytest.raises(FormatError) as info:
        kernel.process(block, 48000)
    check_error(info.value, "x", "non-finite sample at channel 0, index 7")

    block[0, 7] = 0.0
    with pytest.raises(FormatError) as info:
        kernel.process(block, 48000)
    check_error(info.value, "x", "non-finite sample at channel 1, index 3")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("rate", [0, -48000])
def test_kernel_rejects_bad_sample_rate(backend: str, stage: str, rate: int) -> None:
    kernel = make_kernel(stage, "s")
    with pytest.raises(FormatError) as info:
        kernel.process(noise(0.01), rate)
    check_error(info.value, "s", f"invalid sample rate {rate}")


@pytest.mark.parametrize("stage", STAGES)
def test_kernel_checks_run_in_the_documented_order(backend: str, stage: str) -> None:
    kernel = make_kernel(stage, "s")
    with pytest.raises(FormatError, match="got float64"):
        kernel.process(np.zeros((0, 0)), 0)  # wrong dtype and empty and bad rate
    with pytest.raises(FormatError, match="empty frame"):
        kernel.process(np.zeros((0, 4), np.float32), 0)  # empty and bad rate
    nan = np.full((1, 4), np.nan, np.float32)
    with pytest.raises(FormatError, match="invalid sample rate"):
        kernel.process(nan, 0)  # bad rate and non-finite


@pytest.mark.parametrize("stage", STATEFUL)
def test_stateful_kernel_rejects_rate_change(backend: str, stage: str) -> None:
    kernel = make_kernel(stage, "st")
    kernel.process(noise(0.01, 48000, channels=2), 48000)
    with pytest.raises(FormatError) as info:
        kernel.process(noise(0.01, 44100, channels=2), 44100)
    check_error(info.value, "st", "sample rate changed mid-stream from 48000 to 44100 Hz")
    # Non-finite data is checked before the stream format.
    bad = noise(0.01, 44100, channels=2)
    bad[0, 0] = np.nan
    with pytest.raises(FormatError, match="non-finite"):
        kernel.process(bad, 44100)


@pytest.mark.parametrize("stage", STATEFUL)
def test_stateful_kernel_rejects_channel_change(backend: str, stage: str) -> None:
    kernel = make_kernel(stage, "st")
    kernel.process(noise(0.01, channels=1), 48000)
    with pytest.raises(FormatError) as info:
        kernel.process(noise(0.01, channels=2), 48000)
    check_error(info.value, "st", "channel count changed mid-stream from 1 to 2")


@pytest.mark.parametrize("stage", STAGES)
def test_kernel_accepts_non_contiguous_input(backend: str, stage: str) -> None:
    base = noise(0.04, channels=2, amplitude=0.8)
    strided = base[:, ::2]
    fortran = np.asfortranarray(base[:, :960])
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    for block in (strided, fortran):
        a = make_kernel(stage, "a")
        b = make_kernel(stage, "b")
        out = a.process(block, 48000) + a.flush()
        ref = b.process(np.ascontiguousarray(block), 48000) + b.flush()
        assert [o.shape for o in out] == [r.shape for r in ref]
        for o, r in zip(out, ref, strict=True):
            assert o.flags.c_contiguous and o.dtype == np.float32
            np.testing.assert_array_equal(o, r)


def test_resample_unsupported_rate_pair(backend: str) -> None:
    kernel = make_kernel("resample", "rs")  # to 16000
    with pytest.raises(FormatError) as info:
        kernel.process(noise(0.01, 7919), 7919)  # prime rate: 16000 phases
    assert info.value.stage == "rs"
    assert str(info.value).startswith("rs: unsupported rate pair")


# --------------------------------------------------------------------------- through a pipeline


def frames_with(bad_index: int, bad: AudioFrame | Any, rate: int = 48000) -> list[Any]:
    frames: list[Any] = split_frames(noise(0.1, rate, channels=2), rate, rate // 50)
    frames[bad_index] = bad
    return frames


def _nan_frame() -> AudioFrame:
    samples = noise(0.02, channels=2)
    samples[1, 5] = np.nan
    return AudioFrame(samples, 48000, pts=2880)


def _replaced(what: str) -> AudioFrame:
    """A frame whose samples were swapped after construction (frames are mutable), for what no
    constructor takes."""
    frame = AudioFrame(noise(0.02, channels=2), 48000, pts=2880)
    if what == "float64":
        frame.samples = frame.samples.astype(np.float64)
    elif what == "empty":
        frame.samples = frame.samples[:, :0]
    else:
        frame.samples = frame.samples[0]
    return frame


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (_nan_frame, "non-finite sample at channel 1, index 5"),
        (lambda: _replaced("empty"), "empty frame (2 channels, 0 samples)"),
        (
            lambda: _replaced("ndim"),
            EXPECTED_2D.format("float32", 1),
        ),
    ],
    ids=["nan", "empty", "ndim"],
)
async def test_pipeline_error_names_stage_and_frame(
    backend: str, stage: str, make_bad: Callable[[], Any], message: str
) -> None:
    node = STAGES[stage]("the_stage")
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(3, make_bad()))
    assert node.backend == backend
    err = info.value
    assert err.stage == "the_stage" and err.index == 3
    assert str(err) == f"stage 'the_stage' at frame 3: FormatError: {message}"
    cause = err.__cause__
    assert isinstance(cause, FormatError)
    check_error(cause, "the_stage", message)


async def test_float64_samples_name_the_stage(backend: str) -> None:
    """The node's own check (before the kernel) must name the stage too."""
    stage = "gain"
    node = STAGES[stage]("the_stage")
    node.initialize()
    with pytest.raises(FormatError) as info:
        node.process(_replaced("float64"))
    assert node.backend == backend
    assert str(info.value).startswith("the_stage: ")
    with pytest.raises(NodeError) as info2:
        await run_node(STAGES[stage]("the_stage"), frames_with(2, _replaced("float64")))
    assert info2.value.stage == "the_stage" and info2.value.index == 2
    assert isinstance(info2.value.__cause__, FormatError)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("item", ["text", 42, None], ids=repr)
async def test_non_audio_item_into_audio_stage(backend: str, stage: str, item: Any) -> None:
    node = STAGES[stage]("the_stage")
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(1, item))
    assert node.backend == backend
    err = info.value
    assert err.stage == "the_stage" and err.index == 1
    assert isinstance(err.__cause__, FormatError)
    assert f"expected an AudioFrame, got {type(item).__name__}" in str(err)


@pytest.mark.parametrize("stage", [*STAGES, "format_convert"])
async def test_video_frames_pass_audio_stages_untouched(backend: str, stage: str) -> None:
    """Audio stages sit in audio+video streams: video goes on as the same object, in order."""
    video = VideoFrame.blank(4, 4)
    make = STAGES.get(stage, lambda name: FormatConvert("s16", name=name))
    node = make("the_stage")
    items = frames_with(1, video)
    out = await run_node(node, items)
    assert node.backend == backend
    assert any(o is video for o in out)
    assert sum(isinstance(o, AudioFrame) for o in out) >= 1


async def test_non_audio_item_into_format_convert(backend: str) -> None:
    node = FormatConvert("s16", name="conv")
    with pytest.raises(NodeError) as info:
        await run_node(node, ["text"])
    assert node.backend == backend
    assert info.value.stage == "conv" and info.value.index == 0
    assert isinstance(info.value.__cause__, FormatError)
    assert "expected an AudioFrame, got str" in str(info.value)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("planar", [True, False])
async def test_int16_frame_says_to_use_format_convert(
    backend: str, stage: str, planar: bool
) -> None:
    ints = np.zeros((2, 960) if planar else (960, 2), np.int16)
    node = STAGES[stage]("the_stage")
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(0, AudioFrame(ints, 48000, planar=planar)))
    assert node.backend == backend
    assert info.value.stage == "the_stage" and info.value.index == 0
    assert isinstance(info.value.__cause__, FormatError)
    assert "FormatConvert" in str(info.value) and ("s16p" if planar else "s16") in str(info.value)


async def test_interleaved_float_frame_is_rejected(backend: str) -> None:
    node = Gain(name="g")
    frame = AudioFrame(np.zeros((960, 2), np.float32), 48000, planar=False)
    with pytest.raises(NodeError, match="FormatConvert") as info:
        await run_node(node, [frame])
    assert node.backend == backend
    assert isinstance(info.value.__cause__, FormatError)


@pytest.mark.parametrize("stage", STATEFUL)
async def test_rate_change_mid_stream(backend: str, stage: str) -> None:
    node = STAGES[stage]("st")
    other = AudioFrame(noise(0.02, 44100, channels=2), 44100, pts=1764)
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(2, other))
    assert node.backend == backend
    err = info.value
    assert err.stage == "st" and err.index == 2
    assert str(err) == (
        "stage 'st' at frame 2: FormatError: sample rate changed mid-stream from 48000 to 44100 Hz"
    )
    assert isinstance(err.__cause__, FormatError) and err.__cause__.stage == "st"


@pytest.mark.parametrize("stage", STATEFUL)
async def test_channel_change_mid_stream(backend: str, stage: str) -> None:
    node = STAGES[stage]("st")
    mono = AudioFrame(noise(0.02, channels=1), 48000, pts=4800)
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(4, mono))
    assert node.backend == backend
    err = info.value
    assert err.stage == "st" and err.index == 4
    assert str(err).endswith("channel count changed mid-stream from 2 to 1")
    assert isinstance(err.__cause__, FormatError) and err.__cause__.stage == "st"


async def test_channel_change_is_fine_for_stateless_stages(backend: str) -> None:
    frames = [
        AudioFrame(noise(0.02, channels=2), 48000, pts=0),
        AudioFrame(noise(0.02, channels=1), 48000, pts=960),
        AudioFrame(noise(0.02, 16000, channels=3), 16000, pts=960),
    ]
    gain = Gain(-6.0, name="g")
    out = await run_node(gain, frames)
    assert gain.backend == backend
    assert [f.channels for f in out] == [2, 1, 3]


def _fused_case(case: str) -> tuple[list[Any], int, str, str]:
    """(frames, mix channels, failing stage, message) for a Gain -> ChannelMix -> Resample run."""
    if case == "mix":  # 3 channels cannot be mixed to 2: the middle stage fails on frame 0
        frames = [AudioFrame(noise(0.02, channels=3), 48000, pts=960 * i) for i in range(3)]
        return frames, 2, "m", "cannot mix 3 channels to 2"
    bad = {
        "nan": (_nan_frame(), "g", "non-finite sample at channel 1, index 5"),
        "rate": (
            AudioFrame(noise(0.02, 44100, channels=2), 44100, pts=882),
            "r",
            "sample rate changed mid-stream from 48000 to 44100 Hz",
        ),
        "not audio": ("text", "g", "expected an AudioFrame, got str"),
    }[case]
    return frames_with(2, bad[0]), 1, bad[1], bad[2]


@pytest.mark.parametrize("case", ["nan", "rate", "mix", "not audio"])
async def test_error_inside_fused_segment_names_the_failing_stage(backend: str, case: str) -> None:
    """On rust these three stages run as one native chain; errors still name the stage."""
    frames, channels, stage, message = _fused_case(case)
    nodes = [Gain(-1.0, name="g"), ChannelMix(channels, name="m"), Resample(16000, name="r")]

    with pytest.raises(NodeError) as info:
        await Pipeline(nodes).run(frames)

    assert all(n.backend == backend for n in nodes)
    err = info.value
    assert err.stage == stage, str(err)
    assert err.index == (0 if case == "mix" else 2)
    # The contract leaves the tail of the mix error open ("...; ...").
    assert str(err).startswith(f"stage {stage!r} at frame {err.index}: FormatError: {message}")
    assert isinstance(err.__cause__, FormatError)


# --------------------------------------------------------------------------- bad settings

BAD_NODE_SETTINGS: list[tuple[Callable[[], Any], str]] = [
    (lambda: Gain(float("nan")), "gain_db"),
    (lambda: Gain(float("inf")), "gain_db"),
    (lambda: Gain(0.0, ramp_ms=-1.0), "ramp_ms"),
    (lambda: Gain(0.0, ramp_ms=float("nan")), "ramp_ms"),
    (lambda: ChannelMix(0), "channels"),
    (lambda: ChannelMix(65), "channels"),
    (lambda: ChannelMix(2.0), "channels"),
    (lambda: FormatConvert("s32"), "format"),
    (lambda: FormatConvert("fltp", backend="gpu"), "backend"),
    (lambda: Resample(999), "sample_rate"),
    (lambda: Resample(384001), "sample_rate"),
    (lambda: Resample(44100.0), "sample_rate"),
    (lambda: Rebuffer(), "one of samples or frame_ms"),
    (lambda: Rebuffer(512, frame_ms=10.0), "one of samples or frame_ms"),
    (lambda: Rebuffer(0), "samples"),
    (lambda: Rebuffer(512.0), "samples"),
    (lambda: Rebuffer(frame_ms=0.0), "frame_ms"),
    (lambda: Rebuffer(frame_ms=-5.0), "frame_ms"),
    (lambda: Rebuffer(frame_ms=float("nan")), "frame_ms"),
    (lambda: Gain(backend="fast"), "backend"),
]


@pytest.mark.parametrize(("make", "word"), BAD_NODE_SETTINGS)
def test_bad_node_settings_are_config_errors(make: Callable[[], Any], word: str) -> None:
    with pytest.raises(ConfigError, match=word) as info:
        make()
    assert isinstance(info.value, ValueError)


def test_gain_setter_rejects_non_finite(backend: str) -> None:
    node = Gain(0.0)
    node.initialize()
    with pytest.raises(ConfigError):
        node.gain_db = float("nan")
    with pytest.raises(ConfigError):
        node.kernel.gain_db = float("inf")
    assert node.gain_db == 0.0 and node.kernel.gain_db == 0.0


BAD_KERNEL_SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("GainKernel", {"gain_db": float("nan")}),
    ("GainKernel", {"gain_db": float("-inf")}),
    ("GainKernel", {"ramp_ms": -0.5}),
    ("GainKernel", {"ramp_ms": float("inf")}),
    ("ChannelMixKernel", {"channels": 0}),
    ("ChannelMixKernel", {"channels": 65}),
    ("FormatConvertKernel", {"format": "s32p"}),
    ("FormatConvertKernel", {"format": "FLTP"}),
    ("ResampleKernel", {"sample_rate": 999}),
    ("ResampleKernel", {"sample_rate": 384001}),
    ("ResampleKernel", {"sample_rate": 0}),
    ("RebufferKernel", {}),
    ("RebufferKernel", {"samples": 512, "frame_ms": 10.0}),
    ("RebufferKernel", {"samples": 0}),
    ("RebufferKernel", {"frame_ms": 0.0}),
    ("RebufferKernel", {"frame_ms": float("nan")}),
]


@pytest.mark.parametrize(("cls", "kwargs"), BAD_KERNEL_SETTINGS)
def test_bad_kernel_settings_are_config_errors(
    backend: str, cls: str, kwargs: dict[str, Any]
) -> None:
    kernel_cls = getattr(kernel_module(backend), cls)
    with pytest.raises(ConfigError):
        kernel_cls(**kwargs, stage="k")


@pytest.mark.parametrize("gain_db", [1e6, 800.0])
def test_gain_whose_linear_gain_overflows_is_a_config_error(backend: str, gain_db: float) -> None:
    """A finite gain_db whose linear gain is not a finite float32 (|gain_db| > ~770 dB) cannot
    give finite audio: it must be a ConfigError, not an OverflowError or inf samples."""
    with pytest.raises(ConfigError, match="gain_db"):
        kernel_module(backend).GainKernel(gain_db=gain_db, stage="g")
    with pytest.raises(ConfigError, match="gain_db"):
        Gain(gain_db)


def test_format_convert_kernel_rejects_mismatched_source(backend: str) -> None:
    kernel = kernel_module(backend).FormatConvertKernel("fltp", stage="fc")
    with pytest.raises(FormatError) as info:
        kernel.process(np.zeros((2, 8), np.float32), "s16p")
    assert info.value.stage == "fc" and str(info.value).startswith("fc: ")
    with pytest.raises(FormatError) as info:
        kernel.process(np.zeros((8, 2), np.int16), "flt")
    assert info.value.stage == "fc"
    with pytest.raises(FormatError) as info:
        kernel.process(np.zeros((0, 2), np.float32), "flt")
    check_error(info.value, "fc", "empty frame (2 channels, 0 samples)")
    bad = np.zeros((8, 2), np.float32)
    bad[5, 1] = np.inf
    with pytest.raises(FormatError) as info:
        kernel.process(bad, "flt")
    check_error(info.value, "fc", "non-finite sample at channel 1, index 5")


# --------------------------------------------------------------------------- typed and even

NOT_RATES = [
    (48000.0, "48000.0"),
    (np.float64(48000), "np.float64(48000.0)"),
    (True, "True"),
    (False, "False"),
    ("48000", "'48000'"),
    (None, "None"),
    (768_001, "768001"),
    (10**9, "1000000000"),
    (2**70, str(2**70)),
]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("rate", "shown"), NOT_RATES, ids=repr)
def test_a_rate_that_is_not_an_int_in_range_is_a_format_error(
    backend: str, stage: str, rate: Any, shown: str
) -> None:
    """Both twins: a float or bool rate is check 3's FormatError, never a TypeError (Rust) or a
    block passed on (the Python twins did that with 48000.0)."""
    kernel = make_kernel(stage, "s")
    with pytest.raises(FormatError) as info:
        kernel.process(noise(0.01), rate)
    check_error(info.value, "s", f"invalid sample rate {shown}")
    with pytest.raises(FormatError) as info:
        kernel.output_rate(rate)
    check_error(info.value, "s", f"invalid sample rate {shown}")


@pytest.mark.parametrize("stage", STAGES)
def test_numpy_int_rates_and_64_channels_are_fine(backend: str, stage: str) -> None:
    kernel = make_kernel(stage, "s")
    kernel.process(noise(0.01), np.int64(48000))
    assert kernel.output_rate(np.int32(48000)) in (48000, 16000)
    wide = make_kernel(stage, "w")
    if stage != "channel_mix":  # ChannelMix(1) mixes any count down
        wide.process(np.zeros((64, 32), np.float32), 48000)
    with pytest.raises(FormatError) as info:
        wide.process(np.zeros((65, 32), np.float32), 48000)
    check_error(info.value, "w", "too many channels (65; at most 64)")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("rate", "shown"), NOT_RATES[:4], ids=repr)
async def test_a_frame_given_a_float_rate_fails_naming_the_stage(
    backend: str, stage: str, rate: Any, shown: str
) -> None:
    frame = AudioFrame(noise(0.02, channels=2), 48000, pts=1920)
    frame.sample_rate = rate  # frames are mutable: what no constructor would take
    node = STAGES[stage]("the_stage")
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(2, frame))
    assert node.backend == backend
    assert str(info.value) == (
        f"stage 'the_stage' at frame 2: FormatError: invalid sample rate {shown}"
    )
    assert isinstance(info.value.__cause__, FormatError)
    check_error(info.value.__cause__, "the_stage", f"invalid sample rate {shown}")


@pytest.mark.parametrize("rate", [48000.0, True, 10**9])
async def test_a_bad_rate_inside_a_fused_segment_names_the_stage(backend: str, rate: Any) -> None:
    """On rust these run as one native chain; the error names the stage that reads the input,
    not the segment ('g+m+r')."""
    frames = frames_with(2, AudioFrame(noise(0.02, channels=2), 48000, pts=1920))
    frames[2].sample_rate = rate
    nodes = [Gain(-1.0, name="g"), ChannelMix(1, name="m"), Resample(16000, name="r")]
    with pytest.raises(NodeError) as info:
        await Pipeline(nodes).run(frames)
    assert all(n.backend == backend for n in nodes)
    assert (info.value.stage, info.value.index) == ("g", 2)
    assert isinstance(info.value.__cause__, FormatError)


@pytest.mark.skipif(PYTHON_ONLY, reason="the Python-only session: no native chain")
def test_chain_reads_rates_as_kernels_do() -> None:
    engine = kernel_module("rust")
    chain = engine.Chain([engine.GainKernel(stage="g"), engine.ResampleKernel(16000, stage="r")])
    for rate, shown in NOT_RATES:
        with pytest.raises(FormatError) as info:
            chain.process(noise(0.01), rate)
        check_error(info.value, "g", f"invalid sample rate {shown}")
        with pytest.raises(FormatError) as info:
            chain.output_rate(rate)
        check_error(info.value, "g", f"invalid sample rate {shown}")
    assert chain.output_rate(np.int64(44100)) == 16000


@pytest.mark.parametrize(
    ("channels", "samples", "message"),
    [
        (2.0, 4, "invalid channel count 2.0"),
        (True, 4, "invalid channel count True"),
        (np.int64(65), 4, "invalid channel count 65"),
        (1, 4.0, "invalid sample count 4.0"),
        (1, None, "invalid sample count None"),
    ],
)
def test_mix_kernel_counts_are_ints(
    kernels: Any, channels: Any, samples: Any, message: str
) -> None:
    kernel = kernels.MixKernel([0.0], stage="mx")
    with pytest.raises(FormatError) as info:
        kernel.process([np.zeros((1, 4), np.float32)], channels, samples)
    check_error(info.value, "mx", message)
    assert kernel.process([None], np.int64(2), np.int32(4)).shape == (2, 4)


@pytest.mark.parametrize("src_format", [None, 3, b"fltp", "FLTP"])
def test_format_convert_source_format_must_be_a_name(kernels: Any, src_format: Any) -> None:
    kernel = kernels.FormatConvertKernel("s16", stage="fc")
    with pytest.raises(ConfigError) as info:
        kernel.process(np.zeros((1, 4), np.float32), src_format)
    check_error(
        info.value,
        "fc",
        f"format must be one of ['fltp', 'flt', 's16p', 's16'], got {src_format!r}",
    )
    with pytest.raises(FormatError) as info:
        kernel.process(np.zeros((65, 4), np.float32), "fltp")
    check_error(info.value, "fc", "too many channels (65; at most 64)")


async def test_format_convert_names_itself_for_a_frame_it_cannot_read(backend: str) -> None:
    frame = AudioFrame(noise(0.02, channels=2), 48000, pts=1920)
    frame.samples = frame.samples.astype(np.float64)  # no sample format at all
    node = FormatConvert("s16", name="conv")
    with pytest.raises(NodeError) as info:
        await run_node(node, frames_with(2, frame))
    assert node.backend == backend
    check_error(
        info.value.__cause__,  # type: ignore[arg-type]
        "conv",
        "expected a 2-D float32 or int16 numpy array of shape (channels, samples), "
        "got float64 with 2 dimension(s)",
    )


def _mono(n: int, rate: int = 16000, start: int = 0) -> list[AudioFrame]:
    size = rate // 50
    return [
        AudioFrame(noise(0.02, rate, seed=start + i), rate, (start + i) * size) for i in range(n)
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("1-D", EXPECTED_2D.format("float32", 1)),
        ("3-D", EXPECTED_2D.format("float32", 3)),
        ("rate", "invalid sample rate 16000.0"),
    ],
)
async def test_echo_cancel_checks_near_and_reference_frames(
    backend: str, change: str, message: str
) -> None:
    """A 1-D near-end frame was an IndexError, a 3-D reference frame numpy's ValueError."""
    from media_nodes import EchoCancel

    def damaged(frames: list[AudioFrame]) -> list[AudioFrame]:
        f = frames[2]
        if change == "rate":
            f.sample_rate = 16000.0  # type: ignore[assignment]
        else:
            f.samples = f.samples[0] if change == "1-D" else f.samples[None]
        return frames

    for side in ("near", "reference"):
        # The reference covers the near end's time, so the near end waits for (and so reads)
        # the damaged frame; the wait ends as the error arrives, not at stall_ms.
        near, far = _mono(6), _mono(9, start=100)
        for k, f in enumerate(far):
            f.pts = k * 320
        node = EchoCancel(
            damaged(far) if side == "reference" else far, stall_ms=5000.0, delay_ms=0.0, name="ec"
        )
        with pytest.raises(NodeError) as info:
            await run_node(node, damaged(near) if side == "near" else near)
        assert node.backend == backend
        assert info.value.stage == "ec"
        cause = info.value.__cause__
        assert isinstance(cause, FormatError)
        prefix = "reference: " if side == "reference" else ""
        check_error(cause, "ec", prefix + message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("3-D", EXPECTED_2D.format("float32", 3)),
        ("1-D", EXPECTED_2D.format("float32", 1)),
        ("65 channels", "too many channels (65; at most 64)"),
        ("rate", "invalid sample rate True"),
    ],
)
async def test_mixer_checks_its_inputs_frames(backend: str, change: str, message: str) -> None:
    """A 3-D input frame was numpy's ValueError from deep inside the mix."""
    from media_nodes import Mixer

    frames = split_frames(noise(0.1, channels=2), 48000, 960)
    bad = frames[2]
    if change == "rate":
        bad.sample_rate = True
    elif change == "65 channels":
        bad.samples = np.zeros((65, 960), np.float32)
    else:
        bad.samples = bad.samples[None] if change == "3-D" else bad.samples[0]
    mixer = Mixer([frames, split_frames(noise(0.1, channels=2), 48000, 960)], name="mx")
    with pytest.raises(NodeError) as info:
        await Pipeline([mixer]).run()
    assert mixer.backend == backend
    assert info.value.stage == "mx"
    assert isinstance(info.value.__cause__, FormatError)
    check_error(info.value.__cause__, "mx", f"input 0: {message}")


async def test_a_gain_that_overflows_float32_says_so_alone_and_in_a_fused_chain(
    backend: str,
) -> None:
    """Stages after the first in a fused chain do not check their input again, so the Gain
    that took a sample past float32's range raises, on both backends, naming itself."""
    x = np.full((1, 960), 1e3, np.float32)
    x[0, 500] = 1e35  # * 10 ** (700 / 20) = 3e35 * 1e35: past float32's 3.4e38
    message = "output overflows float32 at channel 0, index 500: lower gain_db or the input level"
    frames = [AudioFrame(x, 48000, 0)]
    loud = Gain(700.0, name="loud")
    with pytest.raises(NodeError) as alone:
        await run_node(loud, frames)
    check_error(alone.value.__cause__, "loud", message)
    chain = [Gain(0.0, name="first"), Gain(700.0, name="loud"), Gain(-6.0)]
    with pytest.raises(NodeError) as fused:
        await Pipeline(chain).run(frames)
    assert fused.value.stage == "loud"
    check_error(fused.value.__cause__, "loud", message)
    # Within range it is no error: 1e3 * 10 ** (700 / 20) = 3e38.
    x[0, 500] = 1e3
    out = await run_node(Gain(700.0), [AudioFrame(x, 48000, 0)])
    assert np.isfinite(out[0].samples).all()
