"""Frames and their one-function conversions to and from PyAV."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from stream import AudioFrame, FormatError, VideoFrame
from stream.testing import tone


@pytest.mark.parametrize("fmt", ["fltp", "flt", "s16p", "s16"])
@pytest.mark.parametrize("channels", [1, 2])
def test_audio_round_trip_through_pyav(fmt: str, channels: int) -> None:
    planar = fmt.endswith("p")
    x = tone(440, 0.01, 48000, channels=channels)
    samples = x if fmt.startswith("flt") else np.rint(x * 32767).astype(np.int16)
    if not planar:
        samples = np.ascontiguousarray(samples.T)
    frame = AudioFrame(samples, 48000, pts=960, time_base=Fraction(1, 48000), planar=planar)
    av_frame = frame.to_av()
    assert av_frame.format.name == fmt and len(av_frame.layout.channels) == channels
    assert av_frame.samples == 480 and av_frame.sample_rate == 48000 and av_frame.pts == 960
    back = AudioFrame.from_av(av_frame)
    assert back.format == fmt and back.planar == planar and back.pts == 960
    assert back.time_base == Fraction(1, 48000)
    np.testing.assert_array_equal(back.samples, samples)
    assert (back.channels, back.num_samples) == (channels, 480)


def test_audio_from_a_decoded_file(tmp_path: object) -> None:
    """PyAV's own encoder and decoder produce frames from_av takes as they are."""
    path = f"{tmp_path}/t.wav"
    with av.open(path, "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        x = np.rint(tone(1000, 0.1, 16000) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(path) as inp:
        frames = [AudioFrame.from_av(f) for f in inp.decode(audio=0)]
    assert sum(f.num_samples for f in frames) == 1600
    assert frames[0].format == "s16" and frames[0].sample_rate == 16000


def test_unsupported_av_audio_format_is_a_format_error() -> None:
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 64), np.int32), format="s32", layout="mono")
    with pytest.raises(FormatError, match="s32"):
        AudioFrame.from_av(frame)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros(10, np.float32), "2-D"),
        (np.zeros((1, 10), np.float64), "float64"),
        ([0.0, 1.0], "numpy array"),
    ],
)
def test_bad_audio_frames_are_format_errors(samples: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        AudioFrame(samples, 48000)  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="sample_rate"):
        AudioFrame(np.zeros((1, 10), np.float32), 0)


def test_pts_without_time_base_defaults_to_samples() -> None:
    frame = AudioFrame(np.zeros((1, 10), np.float32), 16000, pts=32000)
    assert frame.time_base == Fraction(1, 16000) and frame.time == 2.0


@pytest.mark.parametrize("fmt", ["rgb24", "bgr24", "gray", "yuv420p", "nv12"])
def test_video_round_trip_through_pyav(fmt: str) -> None:
    rng = np.random.default_rng(0)
    blank = VideoFrame.blank(64, 48, fmt)
    pixels = rng.integers(0, 256, blank.pixels.shape, dtype=np.uint8)
    frame = VideoFrame(pixels, fmt, pts=3, time_base=Fraction(1, 30))
    assert (frame.width, frame.height) == (64, 48)
    av_frame = frame.to_av()
    assert (av_frame.width, av_frame.height, av_frame.format.name) == (64, 48, fmt)
    back = VideoFrame.from_av(av_frame)
    assert back.format == fmt and back.pts == 3 and back.time_base == Fraction(1, 30)
    np.testing.assert_array_equal(back.pixels, pixels)


def test_other_pixel_formats_come_in_as_rgb24() -> None:
    src = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    frame = VideoFrame.from_av(src.reformat(format="yuv444p"))
    assert frame.format == "rgb24" and frame.pixels.shape == (16, 16, 3)


def test_bad_video_frames_are_format_errors() -> None:
    with pytest.raises(FormatError, match="pixel format"):
        VideoFrame(np.zeros((4, 4, 3), np.uint8), "rgba64")
    with pytest.raises(FormatError, match="uint8"):
        VideoFrame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(FormatError, match="shape"):
        VideoFrame(np.zeros((4, 4), np.uint8), "rgb24")
