"""Helpers of the media tests: files written and read with PyAV directly (not through the nodes
under test), spectra, and a way to reach the FormatError behind a pipeline failure."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from stream import FormatError, NodeError, Pipeline
from stream.testing import tone


def has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


def write_audio(
    target: str | Path | io.BytesIO,
    samples: npt.NDArray[Any],
    rate: int,
    codec: str,
    fmt: str | None = None,
) -> None:
    """Encode ``(channels, n)`` samples (float32, or int16 for pcm_s16le/flac) with PyAV alone."""
    channels = samples.shape[0]
    layout = {1: "mono", 2: "stereo"}[channels]
    sample_fmt = "s16p" if samples.dtype == np.int16 else "fltp"
    with av.open(target, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples), format=sample_fmt, layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_tone_file(
    path: Path,
    codec: str,
    rate: int = 48000,
    channels: int = 1,
    seconds: float = 1.0,
    freq_hz: float = 1000.0,
) -> npt.NDArray[np.int16]:
    """A tone file; returns the int16 samples written (what lossless decodes give back)."""
    x = np.rint(tone(freq_hz, seconds, rate, channels) * 32767).astype(np.int16)
    write_audio(path, x, rate, codec)
    return x


def write_av_file(
    path: Path, seconds: float = 1.0, fps: int = 25, size: tuple[int, int] = (64, 48)
) -> None:
    """An mp4/mkv with a 1 kHz aac tone at 48 kHz and an h264 (or mpeg4) picture per 1/fps."""
    rate = 48000
    video_codec = "libx264" if has_encoder("libx264") else "mpeg4"
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=rate, layout="mono")
        video = out.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        x = tone(1000.0, seconds, rate)
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        for i in range(round(seconds * fps)):
            pixels = np.full((size[1], size[0], 3), (i * 9) % 256, np.uint8)
            picture = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode(None))


@dataclass
class Decoded:
    """A file as PyAV decodes it: audio as float ``(channels, n)``, video pictures, codecs."""

    audio: npt.NDArray[np.float32]
    rate: int
    audio_codec: str | None
    pictures: list[av.VideoFrame] = field(default_factory=list)
    video_codec: str | None = None
    raw: list[npt.NDArray[Any]] = field(default_factory=list)  # the decoder's own arrays
    video_rate: Fraction | None = None  # the video stream's average frame rate

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def seconds(self) -> float:
        return self.audio.shape[1] / self.rate


def decode(path: str | Path) -> Decoded:
    """Every audio and video frame of ``path``, through PyAV alone."""
    blocks: list[npt.NDArray[np.float32]] = []
    raw: list[npt.NDArray[Any]] = []
    pictures: list[av.VideoFrame] = []
    rate, audio_codec, video_codec, video_rate = 0, None, None, None
    with av.open(str(path)) as c:
        streams = [*c.streams.audio[:1], *c.streams.video[:1]]
        for s in streams:
            if s.type == "audio":
                audio_codec = s.codec_context.name
            else:
                video_codec, video_rate = s.codec_context.name, s.average_rate
        for frame in c.decode(*streams):
            if isinstance(frame, av.AudioFrame):
                rate = frame.sample_rate
                raw.append(frame.to_ndarray())
                as_float = av.AudioResampler(format="fltp").resample(frame)
                blocks.extend(f.to_ndarray() for f in as_float if f is not None)
            elif isinstance(frame, av.VideoFrame):
                pictures.append(frame)
    audio = np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)
    return Decoded(audio, rate, audio_codec, pictures, video_codec, raw, video_rate)


def peak(x: npt.ArrayLike, rate: int) -> tuple[float, float]:
    """(frequency in Hz, amplitude) of the largest spectral peak, Hann window, interpolated."""
    y = np.asarray(x, dtype=np.float64)
    window = np.hanning(y.size)
    spectrum = np.abs(np.fft.rfft(y * window))
    k = int(np.argmax(spectrum[1:]) + 1)
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-300)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    amplitude = 2 * np.exp(b - 0.25 * (a - c) * offset) / window.sum()
    return (k + offset) * rate / y.size, float(amplitude)


async def format_error_of(pipeline: Pipeline, timeout_s: float = 10.0) -> FormatError:
    """Run ``pipeline`` expecting a FormatError, raised directly (setup) or behind a NodeError."""
    try:
        await asyncio.wait_for(pipeline.run(), timeout_s)
    except FormatError as exc:
        return exc
    except NodeError as exc:
        assert isinstance(exc.__cause__, FormatError), repr(exc.__cause__)
        return exc.__cause__
    raise AssertionError("no error was raised")
