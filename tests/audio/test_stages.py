"""Behaviour of each built-in audio stage, on every backend (docs/kernels.md is the contract).

Nodes are built without ``backend=``: they pick the backend from the environment the ``backend``
fixture sets, and each test checks that the stage really ran on it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from media_nodes.audio import (
    ChannelMix,
    FormatConvert,
    Gain,
    PassThrough,
    Rebuffer,
    Resample,
)
from stream import AudioFrame, NodeError, Pipeline, VideoFrame
from stream.errors import FormatError
from stream.testing import join_frames, noise, run_node, split_frames, tone

from ._util import (
    RATE_PAIRS,
    RATES,
    assert_pts_continuous,
    db,
    feed,
    resample_latency,
    resampled_length,
    rms,
)

# --------------------------------------------------------------------------- PassThrough


async def test_passthrough_hands_on_every_item_unchanged(backend: str) -> None:
    frames = split_frames(noise(0.06, channels=2), 48000, 960)
    video = VideoFrame.blank(4, 2)
    items = [*frames[:2], "marker", video, *frames[2:]]
    node = PassThrough()

    out = await run_node(node, items)

    assert node.backend == backend
    assert len(out) == len(items)
    assert all(o is i for o, i in zip(out, items, strict=True))


async def test_passthrough_kernel_returns_the_same_array(kernels) -> None:
    kernel = kernels.PassThroughKernel()
    block = noise(0.01)
    out = kernel.process(block, 48000)
    assert len(out) == 1 and out[0] is block
    assert kernel.flush() == []


async def test_passthroughs_in_a_row_let_any_item_through(backend: str) -> None:
    # On rust consecutive native stages are fused; a run of PassThroughs must stay transparent.
    frames = split_frames(noise(0.04), 48000, 960)
    items = ["start", frames[0], {"event": "speech"}, frames[1]]
    nodes = [PassThrough(), PassThrough()]

    out = await Pipeline(nodes).run(items)

    assert [n.backend for n in nodes] == [backend, backend]
    assert all(o is i for o, i in zip(out, items, strict=True))


async def test_stages_in_one_pipeline_equal_the_stages_one_by_one(backend: str) -> None:
    """A pipeline of native stages (fused on rust) gives what running each stage alone gives."""
    signal = noise(0.3, 44100, channels=2, amplitude=0.5)
    frames = split_frames(signal, 44100, [882, 441, 1000])
    for f in frames:
        f.pts += 4410

    def stages() -> list:
        return [
            ChannelMix(1),
            Gain(-6.0),
            PassThrough(),
            Resample(16000),
            Rebuffer(512, pad_final=True),
            Gain(3.0),
        ]

    nodes = stages()
    together = await Pipeline(nodes).run(frames)
    assert all(n.backend == backend for n in nodes)
    alone = frames
    for node in stages():
        alone = await run_node(node, alone)

    assert [f.num_samples for f in together] == [f.num_samples for f in alone]
    assert [f.pts for f in together] == [f.pts for f in alone]
    np.testing.assert_allclose(join_frames(together), join_frames(alone), rtol=0, atol=1e-6)
    assert_pts_continuous(together, 1600, 16000)
    n_out = resampled_length(signal.shape[1], 44100, 16000)
    assert sum(f.num_samples for f in together) == -(-n_out // 512) * 512


KERNEL_FACTORIES = {
    "gain_0db": lambda k: k.GainKernel(gain_db=0.0),
    "gain": lambda k: k.GainKernel(gain_db=-6.0),
    "mix_same": lambda k: k.ChannelMixKernel(channels=2),
    "mix_down": lambda k: k.ChannelMixKernel(channels=1),
    "resample_same_rate": lambda k: k.ResampleKernel(sample_rate=48000),
    "resample": lambda k: k.ResampleKernel(sample_rate=16000),
    "rebuffer_exact": lambda k: k.RebufferKernel(samples=480),
    "rebuffer": lambda k: k.RebufferKernel(samples=300),
}


@pytest.mark.parametrize("make", KERNEL_FACTORIES.values(), ids=KERNEL_FACTORIES.keys())
def test_kernel_outputs_are_new_arrays(kernels, make) -> None:
    """Outputs never alias the input: a caller may reuse its buffer right after the call."""
    kernel = make(kernels)
    buf = noise(0.01, channels=2, amplitude=0.5)  # 480 samples
    outs = []
    copies = []
    for _ in range(4):
        out = kernel.process(buf, 48000)
        outs += out
        copies += [o.copy() for o in out]
        buf[:] = np.float32(0.25)  # the caller refills its buffer
    outs += kernel.flush()
    assert outs
    for out, copy in zip(outs, copies, strict=False):
        assert not np.shares_memory(out, buf)
        np.testing.assert_array_equal(out, copy)


async def test_a_pipeline_streams_twice_alike(backend: str) -> None:
    """End of stream resets every stage: a second stream through the same pipeline gives the
    same frames, pts included (fused on rust)."""
    frames = split_frames(noise(0.1, 44100, channels=2), 44100, 441)
    nodes = [Gain(-3.0), ChannelMix(1), Resample(16000), Rebuffer(500)]
    runs = []
    async with Pipeline(nodes) as pipeline:
        for _ in range(2):
            nodes[0].gain_db = -3.0
            stream = feed(frames, {3: lambda: setattr(nodes[0], "gain_db", -12.0)})
            runs.append([f async for f in pipeline.process(stream)])
    assert all(n.backend == backend for n in nodes)
    first, second = runs
    assert [f.pts for f in first] == [f.pts for f in second]
    assert [f.num_samples for f in first] == [f.num_samples for f in second]
    np.testing.assert_array_equal(join_frames(first), join_frames(second))


# --------------------------------------------------------------------------- Gain


@pytest.mark.parametrize("gain_db", [-40.0, -20.0, -6.0, 0.0, 3.5, 12.0])
async def test_gain_scales_rms_by_gain_db(backend: str, gain_db: float) -> None:
    signal = tone(1000, 0.1, channels=2, amplitude=0.2)  # 100 whole periods
    node = Gain(gain_db)

    out = join_frames(await run_node(node, split_frames(signal, 48000, 960)))

    assert node.backend == backend
    assert out.shape == signal.shape and out.dtype == np.float32
    measured = db(rms(out) / rms(signal))
    assert measured == pytest.approx(gain_db, abs=1e-4)
    # The contract pins the arithmetic: float32(x) * float32(10 ** (gain_db / 20)).
    np.testing.assert_allclose(out, signal * np.float32(10 ** (gain_db / 20)), rtol=1e-6, atol=1e-9)


async def test_gain_keeps_frames_and_timing(backend: str) -> None:
    frames = split_frames(noise(0.1, channels=2), 48000, [960, 480, 333])
    for f in frames:
        f.pts += 123_000  # an arbitrary start
    node = Gain(-6.0)

    out = await run_node(node, frames)

    assert node.backend == backend
    assert [f.num_samples for f in out] == [f.num_samples for f in frames]
    assert [f.pts for f in out] == [f.pts for f in frames]
    assert all(o.time_base == f.time_base for o, f in zip(out, frames, strict=True))
    assert all(o.sample_rate == 48000 and o.channels == 2 for o in out)


def _ramp_gains(
    total: int, changes: list[tuple[int, float]], start_db: float, ramp: int
) -> np.ndarray:
    """Per-sample gains by the contract: each change at sample ``at`` starts a linear ramp of
    ``ramp`` samples from the gain the previous sample had."""
    gains = np.empty(total, np.float64)
    current = 10 ** (start_db / 20)
    target = current
    start = current
    pos = ramp_pos = 0
    ramp_len = 0
    changes = sorted(changes)
    for at, new_db in [*changes, (total, None)]:
        while pos < at:
            if ramp_pos < ramp_len:
                ramp_pos += 1
                current = start + (target - start) * ramp_pos / ramp_len
            else:
                current = target
            gains[pos] = current
            pos += 1
        if new_db is not None:
            start, target = current, 10 ** (new_db / 20)
            ramp_len, ramp_pos = ramp, 0
    return gains.astype(np.float32)


@pytest.mark.parametrize(
    ("frame", "ramp_ms", "changes"),
    [
        (960, 5.0, [(2880, -20.0)]),  # 240-sample ramp inside one frame
        (100, 5.0, [(300, -20.0)]),  # ramp across three frames
        (960, 30.0, [(1920, -20.0), (2880, 6.0)]),  # second change starts mid-ramp
        (960, 0.0, [(1920, -20.0)]),  # ramp_ms=0: a jump
    ],
)
async def test_gain_change_mid_stream_follows_linear_ramp(
    backend: str, frame: int, ramp_ms: float, changes: list[tuple[int, float]]
) -> None:
    rate = 48000
    total = 6000
    signal = np.full((2, total), 0.5, np.float32)
    node = Gain(0.0, ramp_ms=ramp_ms)
    frames = split_frames(signal, rate, frame)
    actions = {}
    for at, value in changes:
        assert at % frame == 0
        actions[at // frame] = lambda value=value: setattr(node, "gain_db", value)

    out = join_frames([f async for f in Pipeline([node]).process(feed(frames, actions))])

    assert node.backend == backend
    ramp = round(ramp_ms * rate / 1000)
    expected = _ramp_gains(total, changes, 0.0, ramp)
    np.testing.assert_allclose(out, signal * expected, rtol=0, atol=1e-7)
    # No click: no step between neighbouring samples is larger than the ramp's slope.
    steps = np.abs(np.diff(out[0].astype(np.float64)))
    if ramp:
        slope = max(abs(10 ** (d / 20) - 10 ** (p / 20)) for (_, p), (_, d) in _pairs(changes))
        assert steps.max() <= 0.5 * slope / ramp * 1.001 + 1e-7
    assert node.gain_db == changes[-1][1]


def _pairs(changes: list[tuple[int, float]]) -> list[tuple[tuple[int, float], tuple[int, float]]]:
    return list(zip([(0, 0.0), *changes[:-1]], changes, strict=True))


async def test_gain_set_before_any_block_jumps(kernels) -> None:
    kernel = kernels.GainKernel(gain_db=0.0, ramp_ms=5.0)
    kernel.gain_db = -6.0
    assert kernel.gain_db == -6.0
    block = np.full((1, 480), 0.5, np.float32)
    (out,) = kernel.process(block, 48000)
    np.testing.assert_allclose(out, block * np.float32(10 ** (-6 / 20)), rtol=1e-6)


async def test_gain_flush_ends_ramp_at_target(kernels) -> None:
    kernel = kernels.GainKernel(gain_db=0.0, ramp_ms=10.0)
    block = np.full((1, 100), 0.5, np.float32)
    kernel.process(block, 48000)
    kernel.gain_db = -20.0  # a 480-sample ramp
    kernel.process(block, 48000)  # 100 samples into it
    assert kernel.flush() == []
    (out,) = kernel.process(block, 48000)
    np.testing.assert_allclose(out, block * np.float32(0.1), rtol=1e-6)


@pytest.mark.parametrize("end", ["flush", "reset"])
def test_gain_set_at_the_start_of_a_new_stream_jumps(kernels, end: str) -> None:
    """After flush() or reset() the kernel takes a new stream: no block of it was seen yet, so
    a gain set before its first block applies at once instead of ramping from the old stream."""
    kernel = kernels.GainKernel(gain_db=-12.0, ramp_ms=5.0)
    block = np.full((1, 480), 0.5, np.float32)
    kernel.process(block, 48000)
    getattr(kernel, end)()
    kernel.gain_db = 0.0
    (out,) = kernel.process(block, 48000)
    np.testing.assert_array_equal(out, block)


async def test_gain_change_reaches_kernel_inside_fused_segment(backend: str) -> None:
    # Gain followed by another native stage runs fused on rust: a gain change must still land.
    rate, total = 48000, 4800
    signal = np.full((1, total), 0.5, np.float32)
    gain = Gain(0.0, ramp_ms=5.0, name="gain")
    mix = ChannelMix(2, name="mix")
    frames = split_frames(signal, rate, 960)
    actions = {2: lambda: setattr(gain, "gain_db", -20.0)}

    out = join_frames([f async for f in Pipeline([gain, mix]).process(feed(frames, actions))])

    assert gain.backend == backend and mix.backend == backend
    expected = _ramp_gains(total, [(1920, -20.0)], 0.0, 240)
    np.testing.assert_allclose(out, np.vstack([signal, signal]) * expected, atol=1e-7)


# --------------------------------------------------------------------------- ChannelMix


@pytest.mark.parametrize("channels", [1, 2, 6])
async def test_channel_mix_up_from_mono_duplicates(backend: str, channels: int) -> None:
    signal = noise(0.05, channels=1, amplitude=0.9)
    node = ChannelMix(channels)

    out = join_frames(await run_node(node, split_frames(signal, 48000, 960)))

    assert node.backend == backend
    assert out.shape == (channels, signal.shape[1])
    for c in range(channels):
        np.testing.assert_array_equal(out[c], signal[0])


@pytest.mark.parametrize("channels_in", [2, 3, 6])
async def test_channel_mix_down_to_mono_averages(backend: str, channels_in: int) -> None:
    signal = noise(0.05, channels=channels_in, amplitude=0.9, seed=channels_in)
    node = ChannelMix(1)

    out = join_frames(await run_node(node, split_frames(signal, 48000, 960)))

    assert node.backend == backend
    assert out.shape == (1, signal.shape[1])
    total = np.zeros(signal.shape[1], np.float32)
    for c in range(channels_in):
        total = total + signal[c]
    np.testing.assert_allclose(out[0], total * np.float32(1 / channels_in), rtol=0, atol=1e-7)


async def test_channel_mix_same_count_copies_and_keeps_timing(backend: str) -> None:
    frames = split_frames(noise(0.05, channels=2), 48000, [960, 100])
    node = ChannelMix(2)

    out = await run_node(node, frames)

    assert node.backend == backend
    assert [f.pts for f in out] == [f.pts for f in frames]
    for o, f in zip(out, frames, strict=True):
        np.testing.assert_array_equal(o.samples, f.samples)
        assert o.samples is not f.samples


async def test_channel_mix_three_to_two_is_a_format_error(backend: str) -> None:
    frames = split_frames(noise(0.04, channels=3), 48000, 960)
    node = ChannelMix(2, name="mixer")

    with pytest.raises(NodeError) as info:
        await run_node(node, frames)

    assert node.backend == backend
    err = info.value
    assert err.stage == "mixer" and err.index == 0
    assert isinstance(err.__cause__, FormatError)
    assert "cannot mix 3 channels to 2" in str(err)


# --------------------------------------------------------------------------- FormatConvert

#  value                 int16 by clip(rint(x * 32768))
FLOAT_TO_S16 = [
    (0.0, 0),
    (0.5, 16384),
    (-0.5, -16384),
    (1.0, 32767),  # clipped
    (-1.0, -32768),
    (1.5, 32767),
    (-1.5, -32768),
    (0.99999, 32767),  # rint gives 32768, clipped
    (1 / 65536, 0),  # 0.5 rounds to even
    (3 / 65536, 2),  # 1.5 rounds to even
    (5 / 65536, 2),  # 2.5 rounds to even
    (-3 / 65536, -2),
    (-1 / 65536, 0),
    (0.30000001, 9830),
]


async def test_format_convert_float_to_s16_clips_and_rounds_half_even(backend: str) -> None:
    values = np.array([[v for v, _ in FLOAT_TO_S16]], np.float32)
    expected = np.array([[s for _, s in FLOAT_TO_S16]], np.int16)
    frame = AudioFrame(np.vstack([values, -values]), 16000, pts=7)
    node = FormatConvert("s16p")

    (out,) = await run_node(node, [frame])

    assert node.backend == backend
    assert out.format == "s16p" and out.planar and out.samples.dtype == np.int16
    np.testing.assert_array_equal(out.samples[0], expected[0])
    negated = np.clip(np.rint(-values[0].astype(np.float64) * 32768), -32768, 32767)
    np.testing.assert_array_equal(out.samples[1], negated.astype(np.int16))
    assert (out.pts, out.time_base, out.sample_rate) == (7, Fraction(1, 16000), 16000)


async def test_format_convert_round_trip_through_every_format(backend: str) -> None:
    signal = noise(0.02, channels=2, amplitude=0.99)
    signal[0, :4] = [1.0, -1.0, 1.25, -1.25]  # clipped on the way through int16
    chain = ["flt", "s16", "s16p", "flt", "fltp"]
    frames = split_frames(signal, 48000, 480)
    for f in frames:
        f.pts += 48000
    shapes = {"fltp": (2, 480), "flt": (480, 2), "s16p": (2, 480), "s16": (480, 2)}
    dtypes = {"fltp": np.float32, "flt": np.float32, "s16p": np.int16, "s16": np.int16}

    stages = [FormatConvert(fmt, name=f"to_{fmt}_{i}") for i, fmt in enumerate(chain)]
    current = frames
    for node, fmt in zip(stages, chain, strict=True):
        current = await run_node(node, current)
        assert node.backend == backend
        assert [f.format for f in current] == [fmt] * len(frames)
        assert all(f.samples.shape == shapes[fmt] for f in current)
        assert all(f.samples.dtype == dtypes[fmt] for f in current)
        assert all(f.samples.flags.c_contiguous for f in current)
        assert [f.pts for f in current] == [f.pts for f in frames]

    back = join_frames(current)
    expected = np.clip(np.rint(signal.astype(np.float64) * 32768), -32768, 32767) / 32768
    np.testing.assert_array_equal(back, expected.astype(np.float32))
    inside = np.abs(signal) <= 32767 / 32768
    assert np.abs(back - signal)[inside].max() <= 0.5 / 32768 + 1e-9
    assert back[0, :4].tolist() == [32767 / 32768, -1.0, 32767 / 32768, -1.0]


@pytest.mark.parametrize("dst", ["s16", "s16p"])
def test_format_convert_kernel_rounding_table(kernels, dst: str) -> None:
    values = np.array([[v for v, _ in FLOAT_TO_S16]], np.float32)
    expected = np.array([[s for _, s in FLOAT_TO_S16]], np.int16)
    kernel = kernels.FormatConvertKernel(dst)
    out = kernel.process(values, "fltp")
    assert out.dtype == np.int16 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected if dst == "s16p" else expected.T)
    back = kernels.FormatConvertKernel("fltp").process(out, dst)
    np.testing.assert_array_equal(back, expected.astype(np.float32) / 32768)


async def test_format_convert_s16_to_float_divides_by_32768(backend: str) -> None:
    ints = np.array([[-32768, -16384, -1, 0, 1, 16384, 32767]], np.int16)
    node = FormatConvert("flt")

    (out,) = await run_node(node, [AudioFrame(ints.T.copy(), 8000, planar=False)])

    assert node.backend == backend
    assert out.format == "flt" and out.samples.shape == (7, 1)
    np.testing.assert_array_equal(out.samples[:, 0], ints[0].astype(np.float32) / 32768)


@pytest.mark.parametrize(("src", "dst"), [("fltp", "flt"), ("flt", "fltp"), ("s16", "s16p")])
async def test_format_convert_layout_only_is_a_transpose(backend: str, src: str, dst: str) -> None:
    rng = np.random.default_rng(3)
    if src.startswith("s16"):
        planar = rng.integers(-32768, 32768, (3, 100)).astype(np.int16)
    else:
        planar = rng.uniform(-1.5, 1.5, (3, 100)).astype(np.float32)
    is_planar = src.endswith("p")
    frame = AudioFrame(
        np.ascontiguousarray(planar if is_planar else planar.T), 8000, planar=is_planar
    )
    node = FormatConvert(dst)

    (out,) = await run_node(node, [frame])

    assert node.backend == backend
    np.testing.assert_array_equal(out.samples, planar if dst.endswith("p") else planar.T)


# --------------------------------------------------------------------------- Resample


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
async def test_resample_counts_and_latency(backend: str, rate_in: int, rate_out: int) -> None:
    """Every 20 ms frame yields its share within a sample; the total is the input length times
    the ratio, rounded half up; flush adds nothing; the delay is under 5 ms."""
    signal = noise(0.1, rate_in, channels=2, seed=rate_in + rate_out)
    extra = noise(0.001, rate_in, channels=2, seed=1)[:, :7]  # a ragged last frame
    signal = np.concatenate([signal, extra], axis=1)
    frames = split_frames(signal, rate_in, rate_in // 50)
    node = Resample(rate_out)
    node.initialize()
    assert node.latency_samples == 0

    made = taken = 0
    for frame in frames:
        for out in node.process(frame):
            assert out.sample_rate == rate_out and out.channels == 2
            assert out.samples.dtype == np.float32 and out.num_samples > 0
            made += out.num_samples
        taken += frame.num_samples
        assert abs(made - taken * rate_out / rate_in) <= 0.5, (taken, made)
        assert made == resampled_length(taken, rate_in, rate_out)
    assert node.backend == backend
    assert made == resampled_length(signal.shape[1], rate_in, rate_out)
    assert node.kernel.input_rate == rate_in
    assert node.latency_samples == resample_latency(rate_in, rate_out)
    assert node.latency_samples / rate_out <= 0.005
    seconds = node.kernel.latency_seconds
    assert abs(seconds * rate_out - node.latency_samples) <= 0.5 + 1e-9
    assert node.flush() == []
    assert node.kernel.input_rate is None and node.latency_samples == 0  # flushed: a new stream
    node.cleanup()


@pytest.mark.parametrize(
    ("rate_in", "rate_out"), [(48000, 16000), (16000, 48000), (44100, 48000), (8000, 22050)]
)
async def test_resample_pts_continuous(backend: str, rate_in: int, rate_out: int) -> None:
    frames = split_frames(noise(0.2, rate_in), rate_in, [rate_in // 50, 333, 1])
    offset = rate_in // 10  # the stream starts at 0.1 s
    for f in frames:
        f.pts += offset
    frames[0].pts, frames[0].time_base = 100, Fraction(1, 1000)  # the same instant in ms
    node = Resample(rate_out)

    out = await run_node(node, frames)

    assert node.backend == backend
    assert_pts_continuous(out, round(0.1 * rate_out), rate_out)
    assert sum(f.num_samples for f in out) == resampled_length(
        sum(f.num_samples for f in frames), rate_in, rate_out
    )


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 44100), (8000, 48000), (48000, 8000)])
async def test_resample_one_sample_frames_equal_one_block(
    kernels, rate_in: int, rate_out: int
) -> None:
    signal = noise(0.03, rate_in, channels=2, amplitude=0.9)
    whole = np.concatenate(kernels.ResampleKernel(rate_out).process(signal, rate_in), axis=1)
    kernel = kernels.ResampleKernel(rate_out)
    counts = []
    pieces = []
    for i in range(signal.shape[1]):
        out = kernel.process(signal[:, i : i + 1], rate_in)
        assert all(b.shape[1] > 0 for b in out)  # never an empty block
        counts.append(sum(b.shape[1] for b in out))
        pieces += out
    assert np.cumsum(counts).tolist() == [
        resampled_length(t, rate_in, rate_out) for t in range(1, signal.shape[1] + 1)
    ]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=0, atol=1e-6)


async def test_resample_untimed_frames_stay_untimed(backend: str) -> None:
    frames = split_frames(noise(0.05), 48000, 960, timed=False)
    node = Resample(16000)
    out = await run_node(node, frames)
    assert node.backend == backend
    assert out and all(f.pts is None for f in out)


@pytest.mark.parametrize("rate", RATES)
async def test_resample_same_rate_copies(backend: str, rate: int) -> None:
    signal = noise(0.05, rate, channels=2)
    node = Resample(rate)
    out = await run_node(node, split_frames(signal, rate, rate // 50))
    assert node.backend == backend
    np.testing.assert_array_equal(join_frames(out), signal)
    assert node.latency_samples == 0


@pytest.mark.parametrize(
    ("rate_in", "rate_out"), [(48000, 16000), (16000, 48000), (44100, 48000), (48000, 8000)]
)
async def test_resample_delay_is_the_reported_latency(
    backend: str, rate_in: int, rate_out: int
) -> None:
    """An impulse comes out ``latency_samples`` later than its own time (within a sample)."""
    at = rate_in // 20  # the impulse at 50 ms
    signal = np.zeros((1, rate_in // 5), np.float32)
    signal[0, at] = 1.0
    node = Resample(rate_out)
    node.initialize()
    out = join_frames(
        [o for f in split_frames(signal, rate_in, rate_in // 50) for o in node.process(f)]
    )
    assert node.backend == backend
    expected = at * rate_out / rate_in + node.latency_samples
    assert abs(int(np.argmax(np.abs(out[0]))) - expected) <= 1
    # Unity DC gain: the impulse response sums to the rate ratio.
    assert float(np.sum(out[0], dtype=np.float64)) == pytest.approx(rate_out / rate_in, rel=1e-3)


async def test_resample_flush_resets_for_a_new_stream(kernels) -> None:
    kernel = kernels.ResampleKernel(16000)
    first = noise(0.02, 48000, seed=1)
    a = np.concatenate(kernel.process(first, 48000), axis=1)
    assert kernel.flush() == []
    assert kernel.input_rate is None and kernel.latency_samples == 0
    # A new stream, at another rate: no mid-stream error, and history does not leak in.
    kernel.process(noise(0.02, 44100), 44100)
    kernel.reset()
    b = np.concatenate(kernel.process(first, 48000), axis=1)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- Rebuffer


@pytest.mark.parametrize("pad_final", [False, True])
async def test_rebuffer_960_to_512(backend: str, pad_final: bool) -> None:
    signal = noise(0.5, channels=2)  # 24000 samples: 46 blocks of 512 and 448 left over
    frames = split_frames(signal, 48000, 960)
    node = Rebuffer(512, pad_final=pad_final)

    out = await run_node(node, frames)

    assert node.backend == backend
    sizes = [f.num_samples for f in out]
    assert sizes == [512] * 46 + [512 if pad_final else 448]
    joined = join_frames(out)
    np.testing.assert_array_equal(joined[:, :24000], signal)
    if pad_final:
        np.testing.assert_array_equal(joined[:, 24000:], np.zeros((2, 64), np.float32))
    assert_pts_continuous(out, 0, 48000)
    assert all(f.samples.flags.c_contiguous for f in out)


@pytest.mark.parametrize(
    ("rate", "kwargs", "size"),
    [
        (16000, {"frame_ms": 10}, 160),
        (44100, {"frame_ms": 10}, 441),
        (48000, {"frame_ms": 32}, 1536),
        (8000, {"frame_ms": 0.01}, 1),  # 0.08 samples: at least 1
        (48000, {"samples": 1}, 1),
        (48000, {"samples": 4096}, 4096),
    ],
)
async def test_rebuffer_block_size(backend: str, rate: int, kwargs: dict, size: int) -> None:
    signal = noise(0.1, rate)
    rng = np.random.default_rng(rate)
    sizes = [int(s) for s in rng.integers(1, 700, 40)]
    frames = split_frames(signal, rate, sizes)
    for f in frames:
        f.pts += 1000
    node = Rebuffer(**kwargs)

    out = await run_node(node, frames)

    assert node.backend == backend
    n = signal.shape[1]
    assert [f.num_samples for f in out] == [size] * (n // size) + ([n % size] if n % size else [])
    np.testing.assert_array_equal(join_frames(out), signal)
    assert_pts_continuous(out, 1000, rate)


async def test_rebuffer_emits_blocks_as_soon_as_complete(kernels) -> None:
    kernel = kernels.RebufferKernel(samples=512)
    signal = noise(0.1)
    counts = []
    pos = 0
    for size in (100, 400, 12, 1500, 1, 511):
        out = kernel.process(signal[:, pos : pos + size], 48000)
        pos += size
        counts.append(len(out))
        assert all(b.shape == (1, 512) for b in out)
    # after 100, 500, 512, 2012, 2013, 2524 samples in: 0, 0, 1, 3, 3, 4 blocks in all
    assert counts == [0, 0, 1, 2, 0, 1]
    (tail,) = kernel.flush()
    assert tail.shape == (1, 2524 - 4 * 512)
    np.testing.assert_array_equal(tail, signal[:, 4 * 512 : 2524])
    assert kernel.flush() == []


async def test_rebuffer_outputs_do_not_alias_the_input(kernels) -> None:
    """Outputs are new arrays: a caller that reuses its buffer must not change them."""
    kernel = kernels.RebufferKernel(samples=480)
    buf = np.zeros((1, 480), np.float32)
    outs = []
    for value in (0.1, 0.2, 0.3):
        buf[:] = value
        outs += kernel.process(buf, 48000)
    buf[:] = 0.9
    assert len(outs) == 3
    for out, value in zip(outs, (0.1, 0.2, 0.3), strict=True):
        assert not np.shares_memory(out, buf)
        np.testing.assert_array_equal(out, np.full((1, 480), value, np.float32))


async def test_rebuffer_keeps_what_it_holds_when_the_caller_reuses_its_buffer(kernels) -> None:
    """A device source fills one buffer again and again; held samples must be the values at
    the time of the call."""
    kernel = kernels.RebufferKernel(samples=512)
    buf = np.zeros((2, 160), np.float32)
    expected = []
    outs = []
    for i in range(8):
        buf[:] = np.arange(160, dtype=np.float32) / 1000 + i
        expected.append(buf.copy())
        outs += kernel.process(buf, 16000)
    buf[:] = -1.0
    outs += kernel.flush()
    np.testing.assert_array_equal(np.concatenate(outs, axis=1), np.concatenate(expected, axis=1))


async def test_rebuffer_flush_then_new_stream(kernels) -> None:
    kernel = kernels.RebufferKernel(frame_ms=10.0, pad_final=True)
    kernel.process(noise(0.015, 48000), 48000)
    (tail,) = kernel.flush()
    assert tail.shape == (1, 480)
    np.testing.assert_array_equal(tail[:, 240:], 0)
    # New stream at a new rate: block size re-derived from frame_ms, no mid-stream error.
    out = kernel.process(noise(0.02, 16000, channels=2), 16000)
    assert [b.shape for b in out] == [(2, 160), (2, 160)]
