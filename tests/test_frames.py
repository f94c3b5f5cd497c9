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


# --------------------------------------------------------------------------- what a frame holds


@pytest.mark.parametrize(
    ("samples", "planar", "message"),
    [
        (np.zeros((2, 0), np.float32), True, "empty frame (2 channels, 0 samples)"),
        (np.zeros((0, 16), np.float32), True, "empty frame (0 channels, 16 samples)"),
        (np.zeros((16, 0), np.int16), False, "empty frame (0 channels, 16 samples)"),
        (np.zeros((65, 4), np.float32), True, "too many channels (65; at most 64)"),
        (np.zeros((4, 65), np.int16), False, "too many channels (65; at most 64)"),
        (np.zeros((1, 2, 4), np.float32), True, "got float32 with 3 dimension(s)"),
        (np.zeros((1, 4), ">f4"), True, "got >f4 with 2 dimension(s)"),
    ],
)
def test_audio_frame_refuses_what_no_stage_takes(
    samples: np.ndarray, planar: bool, message: str
) -> None:
    with pytest.raises(FormatError) as info:
        AudioFrame(samples, 48000, planar=planar)
    assert str(info.value).startswith("AudioFrame: ") and message in str(info.value)


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (0, "0"),
        (-48000, "-48000"),
        (768_001, "768001"),
        (10**9, "1000000000"),
        (True, "True"),
        (False, "False"),
        (48000.0, "48000.0"),
        (np.float64(16000), "np.float64(16000.0)"),
        ("48000", "'48000'"),
        (None, "None"),
        (Fraction(48000), "Fraction(48000, 1)"),
    ],
    ids=repr,
)
def test_audio_frame_rate_is_an_int_in_range(rate: object, shown: str) -> None:
    with pytest.raises(FormatError) as info:
        AudioFrame(np.zeros((1, 4), np.float32), rate)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"AudioFrame: invalid sample rate {shown}; sample_rate must be an int in 1..=768000 Hz"
    )


def test_audio_frame_takes_numpy_ints_as_plain_ints() -> None:
    frame = AudioFrame(np.zeros((64, 1), np.float32), np.int64(768_000), pts=np.int32(7))
    assert type(frame.sample_rate) is int and frame.sample_rate == 768_000
    assert type(frame.pts) is int and frame.pts == 7
    assert frame.time_base == Fraction(1, 768_000)
    assert AudioFrame(np.zeros((1, 1), np.int16), 1).sample_rate == 1  # the lowest rate


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"pts": 1.5}, "pts must be an int or None, got 1.5"),
        ({"pts": True}, "pts must be an int or None, got True"),
        ({"pts": 0, "time_base": 0.5}, "time_base must be a Fraction above 0 or None, got 0.5"),
        ({"time_base": Fraction(0)}, "time_base must be a Fraction above 0 or None"),
        ({"time_base": Fraction(-1, 30)}, "time_base must be a Fraction above 0 or None"),
    ],
)
def test_bad_timing_is_a_format_error(timing: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=f"^AudioFrame: {message}"):
        AudioFrame(np.zeros((1, 4), np.float32), 48000, **timing)  # type: ignore[arg-type]
    with pytest.raises(FormatError, match=f"^VideoFrame: {message}"):
        VideoFrame(np.zeros((2, 2), np.uint8), "gray", **timing)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pixels", "fmt", "message"),
    [
        (np.zeros((0, 0, 3), np.uint8), "rgb24", "empty picture (0x0)"),
        (np.zeros((4, 0), np.uint8), "gray", "empty picture (0x4)"),
        (np.zeros((6, 5), np.uint8), "nv12", "nv12 needs an even width and height, got 5x4"),
        (np.zeros((9, 3), np.uint8), "yuv420p", "yuv420p needs an even width and height, got 3x6"),
        (np.zeros((4, 4, 3), np.uint8), None, "unsupported pixel format None"),
    ],
)
def test_video_frame_refuses_what_no_video_stage_takes(
    pixels: np.ndarray, fmt: str, message: str
) -> None:
    with pytest.raises(FormatError) as info:
        VideoFrame(pixels, fmt)
    assert str(info.value).startswith(f"VideoFrame: {message}")
