"""FileSink: encodes AudioFrames and VideoFrames into a media file with PyAV (FFmpeg).

The container comes from the file's extension, or from ``format`` (an extension below or an
FFmpeg muxer name), with these codecs unless ``audio_codec``/``video_codec`` say otherwise:

    .wav  pcm_s16le      .flac flac (16-bit)   .ogg/.opus libopus   .mp3 libmp3lame
    .m4a  aac            .mp4/.mov/.mkv  h264 (libx264, else mpeg4) + aac

Audio: the stream opens at the first audio frame's channel count and at its rate (or at
``sample_rate``); a codec that cannot take that rate gets the smallest rate it supports above it,
else its highest (so opus encodes 44.1 kHz input at 48 kHz). Every frame is converted with
``av.AudioResampler`` to the codec's sample format and to the stream's rate and channel count, so
frames of another rate or channel count than the first are converted, not rejected. Audio pts
count the samples written, so the file's audio is gapless whatever the input frame sizes.
``bit_rate`` (bits/s) applies to the audio encoder; ``options`` (FFmpeg encoder options, such as
``{"crf": "20"}`` or ``{"compression_level": "8"}``) go to every encoder, each taking the ones it
knows.

Video: the stream opens at the first video frame's size (rounded down to even sizes for 4:2:0
codecs); later frames of another size or pixel format are converted to it. Pts come from the
frames' timestamps, relative to the first frame in the file and kept strictly increasing; untimed
frames are spaced at the rate of the first timed ones, else 30 per second.

Streams cannot be added once writing starts, so a container that takes both audio and video
holds the first frames until it has seen audio and two pictures (which give the frame rate), or
1 s of audio, or 30 pictures; a kind that arrives after that is dropped with a warning. So is a
kind the container cannot hold (video sent to a .wav), as ``ffmpeg -i in.mp4 out.wav`` does.

Finalizing: ``flush()`` at end of stream, and ``cleanup()`` after an error or cancellation, drain
the converters and encoders, write the trailer and close the file, so a failed run leaves a
playable file holding what was written. A stream with no frames writes no file.

Errors: unknown container, missing encoder or bad settings -> ConfigError at construction; an
item that is not an AudioFrame or VideoFrame, audio of more than 8 channels, or an encoder or
muxer failure -> FormatError naming the node.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from stream.errors import ConfigError, FormatError, StreamError
from stream.frames import AudioFrame, VideoFrame
from stream.kernel import config_error
from stream.node import Node

from ..sources.file import (
    AV_ERRORS,
    MAX_LAYOUT_CHANNELS,
    AudioConverter,
    av_reason,
    default_layout,
)
from ..sources.signals import check_int

if TYPE_CHECKING:
    from av.container import OutputContainer

log = logging.getLogger("media_nodes.sinks.file")

_VIDEO = ("libx264", "mpeg4")
# extension: (FFmpeg muxer, audio encoders to try, video encoders to try)
CONTAINERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "wav": ("wav", ("pcm_s16le",), ()),
    "flac": ("flac", ("flac",), ()),
    "ogg": ("ogg", ("libopus",), ()),
    "opus": ("opus", ("libopus",), ()),
    "mp3": ("mp3", ("libmp3lame",), ()),
    "m4a": ("ipod", ("aac",), ()),
    "mp4": ("mp4", ("aac",), _VIDEO),
    "mov": ("mov", ("aac",), _VIDEO),
    "mkv": ("matroska", ("aac",), _VIDEO),
}
_MUXER_ALIASES = {"matroska": "mkv", "ipod": "m4a"}
# Float first (no requantizing before a lossy encoder), then 16-bit (flac, pcm).
_SAMPLE_FORMATS = ("fltp", "flt", "s16p", "s16", "s32p", "s32")
_HOLD_AUDIO_S = 1.0
_HOLD_VIDEO_FRAMES = 30
_DEFAULT_FPS = Fraction(30)


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    """What a FileSink writes: the FFmpeg muxer and the encoders (None: kind not accepted)."""

    muxer: str
    audio_codec: str | None
    video_codec: str | None


def _encoder(stage: str, kind: str, name: str) -> av.Codec | None:
    try:
        codec = av.Codec(name, "w")
    except (ValueError, av.FFmpegError):  # PyAV's UnknownCodecError is a ValueError
        return None
    if codec.type != kind:
        raise config_error(stage, f"{name!r} is a {codec.type} encoder, not an {kind} one")
    return codec


def plan_container(
    stage: str, path: str, format: str | None, audio_codec: str | None, video_codec: str | None
) -> ContainerPlan:
    """Resolve the muxer and encoders from the extension or ``format``; ConfigError if it can't."""
    key = format if format is not None else Path(path).suffix.lower().lstrip(".")
    key = _MUXER_ALIASES.get(key, key)
    if key in CONTAINERS:
        muxer, audio_defaults, video_defaults = CONTAINERS[key]
    elif format is None:
        raise config_error(
            stage,
            f"cannot tell the container from {path!r}; use one of "
            f"{', '.join('.' + e for e in CONTAINERS)} or pass format=",
        )
    elif format not in av.formats_available:
        raise config_error(stage, f"unknown container format {format!r}")
    elif audio_codec is None and video_codec is None:
        raise config_error(
            stage, f"format {format!r} has no default codecs here; pass audio_codec or video_codec"
        )
    else:
        muxer, audio_defaults, video_defaults = format, (), ()
    chosen: dict[str, str | None] = {}
    for kind, explicit, defaults in (
        ("audio", audio_codec, audio_defaults),
        ("video", video_codec, video_defaults),
    ):
        names = (explicit,) if explicit is not None else defaults
        found = next((n for n in names if _encoder(stage, kind, n) is not None), None)
        if names and found is None:
            raise config_error(
                stage,
                f"{kind} encoder {names[0]!r} is not available in this FFmpeg build "
                f"(needed for {path!r}); pass {kind}_codec= to use another",
            )
        chosen[kind] = found
    return ContainerPlan(muxer, chosen["audio"], chosen["video"])


def pick_rate(codec: av.Codec, rate: int) -> int:
    """``rate`` if the codec takes it, else its smallest supported rate above, else its highest."""
    rates = codec.audio_rates
    if not rates or rate in rates:
        return rate
    above = [r for r in rates if r >= rate]
    return min(above) if above else max(rates)


def _pick_sample_format(codec: av.Codec) -> str:
    names = [f.name for f in codec.audio_formats or ()]
    return next((f for f in _SAMPLE_FORMATS if f in names), names[0] if names else "fltp")


def media_time(frame: AudioFrame | VideoFrame) -> float | None:
    """A frame's start in seconds, or None when it is untimed."""
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


def _estimate_fps(frames: list[VideoFrame]) -> Fraction:
    times = sorted(t for t in map(media_time, frames) if t is not None)
    steps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    if not steps:
        return _DEFAULT_FPS
    return Fraction(1 / steps[len(steps) // 2]).limit_denominator(1001)


class FileSink(Node):
    """Write AudioFrames and VideoFrames to ``path``; emits nothing.

    See the module docstring for containers, codecs, conversions and finalizing. ``sample_rate``
    (Hz) sets the audio rate in the file; ``bit_rate`` (bits/s) the audio bit rate; ``options``
    are FFmpeg encoder options. Raises ConfigError for bad settings or a missing encoder and
    FormatError for items it cannot write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        audio_codec: str | None = None,
        video_codec: str | None = None,
        sample_rate: int | None = None,
        bit_rate: int | None = None,
        options: Mapping[str, str | int | float] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise config_error(self.name, f"path must be a non-empty path, got {path!r}")
        for label, value in (
            ("format", format),
            ("audio_codec", audio_codec),
            ("video_codec", video_codec),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                raise config_error(self.name, f"{label} must be a non-empty str, got {value!r}")
        for label, number in (("sample_rate", sample_rate), ("bit_rate", bit_rate)):
            if number is not None:
                check_int(self.name, label, number, 1)
        if options is not None and (
            not isinstance(options, Mapping)
            or not all(
                isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
                for k, v in options.items()
            )
        ):
            raise config_error(self.name, f"options must map str to str, got {options!r}")
        self.path = os.fspath(path)
        self.plan = plan_container(self.name, self.path, format, audio_codec, video_codec)
        if sample_rate is not None and self.plan.audio_codec is not None:
            rates = av.Codec(self.plan.audio_codec, "w").audio_rates
            if rates and sample_rate not in rates:
                raise config_error(
                    self.name,
                    f"{self.plan.audio_codec} cannot encode at {sample_rate} Hz; it takes "
                    f"{', '.join(map(str, sorted(rates)))}",
                )
        self.format = format
        self.audio_codec = audio_codec
        self.video_codec = video_codec
        self.sample_rate = sample_rate
        self.bit_rate = bit_rate
        self.options = {k: str(v) for k, v in (options or {}).items()}
        self._reset()

    def params(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "audio_codec": self.audio_codec,
            "video_codec": self.video_codec,
            "sample_rate": self.sample_rate,
            "bit_rate": self.bit_rate,
            "options": dict(self.options) or None,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def _reset(self) -> None:
        self._held: list[AudioFrame | VideoFrame] = []
        self._container: OutputContainer | None = None
        self._audio: AudioStream | None = None
        self._converter: AudioConverter | None = None
        self._audio_origin = 0
        self._audio_written = 0
        self._video: VideoStream | None = None
        self._video_tb = Fraction(1, 1000)
        self._video_fps = _DEFAULT_FPS
        self._video_count = 0
        self._video_last_pts: int | None = None
        self._t0 = 0.0
        self._dropped: set[str] = set()

    def initialize(self) -> None:
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise config_error(self.name, f"the folder of {self.path!r} does not exist")
        self._finish()  # a file left open by an earlier run is completed first

    def process(self, item: Any) -> None:
        if isinstance(item, AudioFrame):
            kind, codec = "audio", self.plan.audio_codec
            if item.channels > MAX_LAYOUT_CHANNELS:
                raise self._error(
                    f"takes up to {MAX_LAYOUT_CHANNELS} channels, got {item.channels}"
                )
        elif isinstance(item, VideoFrame):
            kind, codec = "video", self.plan.video_codec
        else:
            raise self._error(f"expected an AudioFrame or VideoFrame, got {type(item).__name__}")
        if codec is None:
            self._drop(kind, f"a {self.plan.muxer} file holds no {kind}")
            return
        if self._container is None:
            self._held.append(item)
            if self._ready():
                self._open()
            return
        self._write(item)

    def flush(self) -> None:
        self._finish()

    def cleanup(self) -> None:
        self._finish()

    # -- writing -----------------------------------------------------------------------------

    def _error(self, message: str, cls: type[StreamError] = FormatError) -> StreamError:
        err = cls(f"{self.name}: {message}")
        err.stage = self.name
        return err

    def _ready(self) -> bool:
        """True once the held frames tell which streams the file gets (and, for video, two
        pictures tell its frame rate), or the hold is full."""
        audio = [f for f in self._held if isinstance(f, AudioFrame)]
        videos = len(self._held) - len(audio)
        has_audio = bool(audio) or self.plan.audio_codec is None
        has_video = videos >= 2 or self.plan.video_codec is None
        if has_audio and has_video:
            return True
        return videos >= _HOLD_VIDEO_FRAMES or sum(f.duration for f in audio) >= _HOLD_AUDIO_S

    def _open(self) -> None:
        held, self._held = self._held, []
        if not held:
            return
        audio = [f for f in held if isinstance(f, AudioFrame)]
        video = [f for f in held if isinstance(f, VideoFrame)]
        times = [t for t in map(media_time, held) if t is not None]
        self._t0 = min(times, default=0.0)
        try:
            container = av.open(self.path, "w", format=self.plan.muxer)
        except AV_ERRORS as exc:
            raise self._error(
                f"cannot create {self.path!r}: {av_reason(exc)}", ConfigError
            ) from exc
        try:
            if audio:
                self._open_audio(container, audio[0])
            if video:
                self._open_video(container, video)
        except BaseException:
            self._reset()
            container.close()
            raise
        self._container = container
        for frame in held:
            self._write(frame)

    def _open_audio(self, container: OutputContainer, first: AudioFrame) -> None:
        assert self.plan.audio_codec is not None
        codec = av.Codec(self.plan.audio_codec, "w")
        rate = self.sample_rate or pick_rate(codec, first.sample_rate)
        layout = default_layout(first.channels)
        fmt = _pick_sample_format(codec)
        stream = container.add_stream(self.plan.audio_codec, rate=rate, options=self.options)
        assert isinstance(stream, AudioStream)
        stream.codec_context.layout = layout
        stream.codec_context.format = fmt
        stream.codec_context.time_base = Fraction(1, rate)
        if self.bit_rate is not None:
            stream.codec_context.bit_rate = self.bit_rate
        try:  # open now, so an encoder that refuses these settings fails here, saying why
            stream.codec_context.open()
        except AV_ERRORS as exc:
            raise self._error(
                f"the {self.plan.audio_codec} encoder cannot take {first.channels} channels at "
                f"{rate} Hz for {self.path!r}: {av_reason(exc)}"
            ) from exc
        self._audio = stream
        self._converter = AudioConverter(fmt, layout, rate)
        start = media_time(first)
        if start is not None:
            self._audio_origin = round((start - self._t0) * rate)

    def _open_video(self, container: OutputContainer, frames: list[VideoFrame]) -> None:
        assert self.plan.video_codec is not None
        first = frames[0]
        codec = av.Codec(self.plan.video_codec, "w")
        formats = [f.name for f in codec.video_formats or ()]
        pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
        width, height = first.width, first.height
        if pix_fmt in ("yuv420p", "yuvj420p", "nv12"):  # 4:2:0 chroma needs even sizes
            width, height = max(2, width // 2 * 2), max(2, height // 2 * 2)
        fps = _estimate_fps(frames)
        tb = first.time_base
        if media_time(first) is None or tb is None:
            tb = 1 / fps
        elif tb.denominator > 65535:  # MPEG-4 part 2 caps the denominator; ms are plenty
            tb = Fraction(1, 1000)
        stream = container.add_stream(self.plan.video_codec, rate=fps, options=self.options)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = tb
        try:
            stream.codec_context.open()
        except AV_ERRORS as exc:
            raise self._error(
                f"the {self.plan.video_codec} encoder cannot take {width}x{height} {pix_fmt} "
                f"at {fps} frames/s for {self.path!r}: {av_reason(exc)}"
            ) from exc
        self._video, self._video_tb, self._video_fps = stream, tb, fps

    def _write(self, frame: AudioFrame | VideoFrame) -> None:
        try:
            if isinstance(frame, AudioFrame):
                if self._converter is None:
                    self._drop("audio", "arrived after the file was opened without audio")
                    return
                for out in self._converter.convert(frame.to_av()):
                    self._encode_audio(out)
            else:
                if self._video is None:
                    self._drop("video", "arrived after the file was opened without video")
                    return
                self._encode_video(frame)
        except AV_ERRORS as exc:
            raise self._error(f"cannot write {self.path!r}: {av_reason(exc)}") from exc

    def _drop(self, kind: str, why: str) -> None:
        if kind not in self._dropped:
            self._dropped.add(kind)
            log.warning("%s: dropping %s: %s (%s)", self.name, kind, why, self.path)

    def _encode_audio(self, frame: av.AudioFrame) -> None:
        assert self._container is not None and self._audio is not None
        rate = frame.sample_rate
        frame.pts = self._audio_origin + self._audio_written
        frame.time_base = Fraction(1, rate)
        self._audio_written += frame.samples
        self._container.mux(self._audio.encode(frame))

    def _encode_video(self, frame: VideoFrame) -> None:
        assert self._container is not None and self._video is not None
        stream, tb = self._video, self._video_tb
        out = frame.to_av()
        size = (stream.width, stream.height, stream.pix_fmt)
        if (out.width, out.height, out.format.name) != size:
            out = out.reformat(width=stream.width, height=stream.height, format=stream.pix_fmt)
        t = media_time(frame)
        if t is None:
            t = self._t0 + float(self._video_count / self._video_fps)
        pts = round((t - self._t0) / tb)
        if self._video_last_pts is not None and pts <= self._video_last_pts:
            pts = self._video_last_pts + 1  # encoders take strictly increasing timestamps only
        out.pts, out.time_base = pts, tb
        self._video_last_pts = pts
        self._video_count += 1
        self._container.mux(stream.encode(out))

    def _finish(self) -> None:
        """Write what is held, drain converter and encoders, write the trailer, close the file."""
        if self._container is None:
            self._open()
        container = self._container
        if container is None:
            return
        try:
            if self._audio is not None and self._converter is not None:
                for out in self._converter.flush():
                    self._encode_audio(out)
                container.mux(self._audio.encode(None))
            if self._video is not None:
                container.mux(self._video.encode(None))
        except AV_ERRORS as exc:
            raise self._error(f"cannot finish {self.path!r}: {av_reason(exc)}") from exc
        finally:
            self._reset()
            try:
                container.close()
            except AV_ERRORS as exc:
                raise self._error(f"cannot close {self.path!r}: {av_reason(exc)}") from exc


__all__ = ["CONTAINERS", "ContainerPlan", "FileSink", "pick_rate", "plan_container"]
