"""AudioAdapter: one component for rate, channel, sample-format and framing conversion.

Held to the stages it is made of (ChannelMix, Resample, Rebuffer, FormatConvert run one by one),
to itself on the other backend (the stages' parity tolerances), and to itself however the input
is cut; on the engine it makes one native call per frame.
"""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from media_nodes.audio import ChannelMix, FormatConvert, Rebuffer, Resample
from media_nodes.audio.format_convert import FormatConvertKernel
from stream import audio_adapter
from stream.audio_adapter import AudioAdapter
from stream.engine import make_chain
from stream.errors import ConfigError, FormatError
from stream.frames import AudioFrame
from stream.kernel_node import KernelNode
from stream.testing import noise, split_frames, tone

RESAMPLE_PARITY_TOL = 2e-5  # docs/kernels.md, as tests/audio/_util.py states it
needs_engine = pytest.mark.skipif(
    os.environ.get("REMOTEMEDIA_RUNTIME") == "python", reason="the Python-only session"
)


def _s16(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """fltp to s16 interleaved, FormatConvert's arithmetic."""
    return np.ascontiguousarray(
        np.clip(np.rint(samples * np.float32(32768)), -32768, 32767).T, dtype=np.int16
    )


def _run(adapter: AudioAdapter, frames: list[AudioFrame]) -> list[AudioFrame]:
    out: list[AudioFrame] = []
    for frame in frames:
        out += adapter.convert(frame)
    return out + adapter.flush()


def _stages_one_by_one(stages: list[KernelNode], frames: list[AudioFrame]) -> list[AudioFrame]:
    """What today's per-stage conversion gives: each stage's process (and flush) in turn."""
    for stage in stages:
        stage.initialize()
    items: list[Any] = list(frames)
    for stage in stages:
        out: list[Any] = []
        for item in items:
            out += stage.process(item)
        items = out + stage.flush()
    return items


def _joined(frames: list[AudioFrame]) -> npt.NDArray[Any]:
    axis = 1 if frames[0].planar else 0
    return np.concatenate([f.samples for f in frames], axis=axis)


def _assert_pts_continuous(frames: list[AudioFrame], first: int) -> None:
    pts = first
    for f in frames:
        assert f.pts == pts and f.time_base == Fraction(1, f.sample_rate)
        pts += f.num_samples


def test_webrtc_output_conversion_is_what_the_stages_give(backend: str) -> None:
    x = tone(440, 0.5, 16000, amplitude=0.9) + noise(0.5, 16000, amplitude=0.05, seed=1)
    frames = split_frames(x.astype(np.float32), 16000, 160)
    adapter = AudioAdapter("s16", 48000, 2, 960)
    assert adapter.backend == backend
    out = _run(adapter, frames)
    want = _stages_one_by_one(
        [
            ChannelMix(2),
            Resample(48000),
            Rebuffer(960, pad_final=True),
            FormatConvert("s16"),
        ],
        frames,
    )
    assert all(
        f.format == "s16" and f.channels == 2 and f.num_samples == 960 and f.sample_rate == 48000
        for f in out
    )
    assert len(out) == len(want) == -(-len(x[0]) * 3 // 960)
    np.testing.assert_array_equal(_joined(out), _joined(want))
    assert [f.pts for f in out] == [f.pts for f in want]
    _assert_pts_continuous(out, 0)


def test_webrtc_input_conversion_is_what_the_stages_give(backend: str) -> None:
    x = tone(300, 0.4, 48000, channels=2) * np.float32(0.8)
    frames = [
        AudioFrame(_s16(f.samples), 48000, f.pts, f.time_base, planar=False)
        for f in split_frames(x, 48000, 960)
    ]
    out = _run(AudioAdapter("fltp", 16000, 1), frames)
    want = _stages_one_by_one([FormatConvert("fltp"), ChannelMix(1), Resample(16000)], frames)
    assert all(f.format == "fltp" and f.channels == 1 and f.sample_rate == 16000 for f in out)
    np.testing.assert_allclose(_joined(out), _joined(want), rtol=0, atol=1e-6)
    _assert_pts_continuous(out, 0)


@needs_engine
@pytest.mark.parametrize(
    ("fmt", "rate", "channels", "size", "src_rate", "src_channels"),
    [
        ("s16", 48000, 2, 960, 16000, 1),
        ("fltp", 16000, 1, None, 48000, 2),
        ("fltp", 24000, None, 512, 44100, 1),
        ("flt", 48000, 1, None, 48000, 2),
    ],
)
def test_both_backends_agree_within_the_stages_tolerance(
    fmt: str, rate: int, channels: int | None, size: int | None, src_rate: int, src_channels: int
) -> None:
    x = noise(0.3, src_rate, channels=src_channels, amplitude=0.5, seed=3)
    frames = split_frames(x, src_rate, [441, 160, 1024])
    rust = _run(AudioAdapter(fmt, rate, channels, size, backend="rust"), frames)
    py = _run(AudioAdapter(fmt, rate, channels, size, backend="python"), frames)
    assert [(f.pts, f.num_samples, f.format) for f in rust] == [
        (f.pts, f.num_samples, f.format) for f in py
    ]
    a, b = _joined(rust).astype(np.float64), _joined(py).astype(np.float64)
    tol = 1 if fmt == "s16" else RESAMPLE_PARITY_TOL  # one LSB where rounding meets the tolerance
    assert float(np.max(np.abs(a - b))) <= tol


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_is_the_same_however_the_input_is_cut(backend: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = noise(0.25, 44100, channels=1, amplitude=0.5, seed=seed)
    sizes = [int(s) for s in rng.integers(1, 900, 40)]
    whole = _run(AudioAdapter("fltp", 48000, 2, 480), split_frames(x, 44100, x.shape[1]))
    cut = _run(AudioAdapter("fltp", 48000, 2, 480), split_frames(x, 44100, sizes))
    assert [f.num_samples for f in cut] == [f.num_samples for f in whole]
    assert all(f.num_samples == 480 for f in cut)
    np.testing.assert_allclose(_joined(cut), _joined(whole), rtol=0, atol=RESAMPLE_PARITY_TOL)
    _assert_pts_continuous(cut, 0)


def test_a_rate_and_channel_change_flushes_the_old_stream_first(backend: str) -> None:
    adapter = AudioAdapter("fltp", 48000, 2, 960)
    first = split_frames(tone(440, 0.105, 16000), 16000, 160)  # 5040 samples out at 48 kHz
    out = [f for frame in first for f in adapter.convert(frame)]
    assert [f.num_samples for f in out] == [960] * 5  # 240 wait for the next frame
    second = AudioFrame(tone(440, 0.02, 48000, channels=2), 48000, 48000, Fraction(1, 48000))
    changed = adapter.convert(second)
    # The old stream's tail (padded to 960), then the new stream's frame, its own pts.
    assert [(f.num_samples, f.pts) for f in changed] == [(960, 4800), (960, 48000)]
    assert all(f.channels == 2 and f.sample_rate == 48000 for f in out + changed)
    assert adapter.flush() == []


def test_flush_gives_the_padded_tail_and_the_pts_stay_continuous(backend: str) -> None:
    adapter = AudioAdapter("s16", None, None, 960)
    x = tone(1000, 1000 / 48000, 48000)
    out = adapter.convert(AudioFrame(x, 48000, 4800, Fraction(1, 48000)))
    assert [(f.num_samples, f.pts) for f in out] == [(960, 4800)]
    (tail,) = adapter.flush()
    assert (tail.num_samples, tail.pts, tail.format) == (960, 5760, "s16")
    np.testing.assert_array_equal(tail.samples[:40, 0], _s16(x[:, 960:])[:, 0])
    assert not tail.samples[40:].any()
    assert adapter.flush() == []


def test_formats_convert_as_format_convert_does(backend: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.2, 1.2, (2, 999)).astype(np.float32)  # beyond full scale: clipped
    frame = AudioFrame(x, 16000, 0, Fraction(1, 16000))
    for fmt in ("s16", "s16p", "flt"):
        (out,) = AudioAdapter(fmt).convert(frame)
        np.testing.assert_array_equal(out.samples, FormatConvertKernel(fmt).process(x, "fltp"))
        assert (out.format, out.pts, out.sample_rate) == (fmt, 0, 16000)
    ints = _s16(x)
    (back,) = AudioAdapter("fltp").convert(AudioFrame(ints, 16000, 5, planar=False))
    np.testing.assert_array_equal(back.samples, FormatConvertKernel("fltp").process(ints, "s16"))
    assert back.pts == 5


def test_format_only_and_no_op_conversions_keep_each_frames_timing(backend: str) -> None:
    frame = AudioFrame(tone(440, 0.01, 8000, channels=2), 8000, 123, Fraction(1, 1000))
    assert AudioAdapter("fltp", 8000, 2).convert(frame) == [frame]  # nothing to do: itself
    ints = AudioFrame(_s16(frame.samples), 8000, 7, planar=False)
    (same,) = AudioAdapter("s16").convert(ints)
    assert same is ints
    (mono,) = AudioAdapter("fltp", None, 1).convert(frame)  # not re-timed: the frame's pts
    assert (mono.channels, mono.pts, mono.time_base) == (1, 123, Fraction(1, 1000))
    np.testing.assert_allclose(mono.samples[0], frame.samples.mean(axis=0), atol=1e-7)


def test_more_than_two_channels_fall_back_unless_told_to_keep_them(backend: str) -> None:
    frame = AudioFrame(noise(0.01, 16000, channels=6, seed=2), 16000)
    with pytest.raises(FormatError, match="cannot mix 6 channels to 2"):
        AudioAdapter().convert(frame)
    (mono,) = AudioAdapter(fallback_channels=1).convert(frame)
    assert mono.channels == 1
    (kept,) = AudioAdapter(sample_rate=48000, fallback_channels=None).convert(frame)
    assert kept.channels == 6 and kept.sample_rate == 48000


def test_bad_audio_and_settings_are_refused(backend: str) -> None:
    x = tone(440, 0.01, 16000)
    x[0, 5] = np.nan
    with pytest.raises(FormatError, match="non-finite sample at channel 0, index 5") as err:
        AudioAdapter("fltp", 48000, name="out").convert(AudioFrame(x, 16000))
    assert (err.value.stage or "").startswith("out")
    with pytest.raises(FormatError, match="non-finite"):
        AudioAdapter("s16").convert(AudioFrame(x, 16000))
    with pytest.raises(ConfigError):
        AudioAdapter("s32")
    with pytest.raises(ConfigError):
        AudioAdapter(sample_rate=10)
    with pytest.raises(ConfigError):
        AudioAdapter(channels=0)
    with pytest.raises(ConfigError):
        AudioAdapter(frame_samples=0)
    with pytest.raises(ConfigError):
        AudioAdapter(backend="gpu")


@needs_engine
def test_on_the_engine_each_frame_is_one_native_call(monkeypatch: pytest.MonkeyPatch) -> None:
    chains: list[Any] = []

    class Counting:
        def __init__(self, kernels: list[Any]) -> None:
            assert all(type(k).__module__ == "stream._engine" for k in kernels)
            self.chain = make_chain(kernels)
            self.calls: dict[str, int] = {}
            chains.append(self)

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.chain, name)

            def call(*args: Any) -> Any:
                self.calls[name] = self.calls.get(name, 0) + 1
                return method(*args)

            return call

    monkeypatch.setattr(audio_adapter, "make_chain", Counting)
    adapter = AudioAdapter("s16", 48000, 2, 960, backend="rust")
    assert adapter.backend == "rust"
    frames = split_frames(tone(440, 0.2, 16000), 16000, 160)
    out = _run(adapter, frames)
    (chain,) = chains
    assert adapter.stages == ["convert.resample", "convert.mix", "convert.rebuffer"]
    assert chain.calls == {"output_rate": 1, "process": len(frames), "flush": 1}
    assert sum(f.num_samples for f in out) == 10 * 960


def test_the_old_names_still_import_with_a_deprecation_warning() -> None:
    import media_nodes.sources.file as file_source
    import stream.transport.tracks as tracks
    import stream.transport.webrtc as webrtc

    for module, now in ((tracks, AudioAdapter), (webrtc, AudioAdapter), (file_source, None)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = module.AudioConverter
        assert old is (now or file_source.CodecResampler)
        assert any(issubclass(w.category, DeprecationWarning) for w in caught)
