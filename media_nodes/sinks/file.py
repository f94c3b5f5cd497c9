"""FileSink: encodes AudioFrames and VideoFrames into a media file with PyAV (FFmpeg).

The container comes from the file's extension, or from ``format`` (an extension below or an
FFmpeg muxer name), with these codecs unless ``audio_codec``/``video_codec`` say otherwise:

    .wav  pcm_s16le      .flac flac (16-bit)   .ogg/.opus libopus   .mp3 libmp3lame
    .m4a  aac            .mp4/.mov/.mkv  h264 (libx264, else mpeg4) + aac

Audio: the stream opens at the first audio frame's channel count and at its rate (or at
``sample_rate``); a codec that cannot take that rate gets the smallest rate it supports above it,
else its highest (so opus encodes 44.1 kHz input at 48 kHz). Every frame is converted with
``CodecResampler`` (FFmpeg's resampler, media_nodes.sources.file) to the codec's sample format
and to the stream's rate and channel count, so frames of another rate or channel count than the
first are converted, not rejected. Audio pts count the samples written, so the file's audio is
gapless whatever the input frame sizes.
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

Finalizing: the file is written under a temporary name beside ``path`` (``.NAME.XXXX.part``) and
only a complete run puts it in place. ``flush()`` at end of stream drains the converters and
encoders, writes the trailer and renames the file to ``path`` in one step (``os.replace``), so
``path`` holds either its old content or the whole new file, never a half-written one, and a
file being read (the input of the same run, or a hard link to it) keeps its data. ``cleanup()``
after an error or a cancellation, with no ``flush()`` before it, finalizes the file too but names
it ``STEM.partial.EXT`` (``partial_path`` holds that name; ``path`` is left untouched): it plays,
and its name says it is not the whole stream. A caller for whom a stop is the end (a recording
ended by Ctrl-C) calls ``flush()`` itself. A symlink ``path`` is written through (its target is
replaced); a ``path`` that exists and is not a regular file (``/dev/null``, a FIFO) is written
directly. A stream with no frames writes no file.

Errors: unknown container, missing encoder or bad settings -> ConfigError at construction; an
item that is not an AudioFrame or VideoFrame, audio of more channels than FFmpeg's resampler
takes (``MAX_CHANNELS``, 64) or than the encoder takes, or an encoder or muxer failure ->
FormatError naming the node; a file that cannot be created or renamed -> ConfigError.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import stat
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
from stream.kernel_node import check_audio
from stream.node import Node

from ..sources.file import (
    AV_ERRORS,
    MAX_CHANNELS,
    CodecResampler,
    av_reason,
    default_layout,
)
from ..sources.signals import check_int
from ..video.base import check_video

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
        #: where the last run that ended without flush() left its file (STEM.partial.EXT)
        self.partial_path: str | None = None
        self._reset()

    @property
    def partial_name(self) -> str:
        """``path`` with ``.partial`` before its extension: where an unfinished run's file goes."""
        root, ext = os.path.splitext(self._target())
        return f"{root}.partial{ext}"

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
        self._temp: str | None = None  # the file being written, until it is put in place
        self._audio: AudioStream | None = None
        self._converter: CodecResampler | None = None
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
        self._finish(complete=False)  # a file left open by an earlier run is completed first

    def process(self, item: Any) -> None:
        if isinstance(item, AudioFrame):
            check_audio(self.name, item, fltp=False)  # frames are mutable: look at what came
            kind, codec = "audio", self.plan.audio_codec
            if item.channels > MAX_CHANNELS:
                raise self._error(f"takes up to {MAX_CHANNELS} channels, got {item.channels}")
        elif isinstance(item, VideoFrame):
            check_video(self.name, item)
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
        """End of stream: finish the file and put it at ``path``."""
        self._finish(complete=True)

    def cleanup(self) -> None:
        """Without a flush() first (an error, a cancellation) the file goes to ``partial_name``."""
        self._finish(complete=False)

    # -- writing -----------------------------------------------------------------------------

    def _error(self, message: str, cls: type[StreamError] = FormatError) -> StreamError:
        return cls(message, stage=self.name)

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
        target = self._target()
        temp = self._create_temp(target)
        try:
            container = av.open(temp or target, "w", format=self.plan.muxer)
        except AV_ERRORS as exc:
            self._discard(temp)
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
            self._discard(temp)  # nothing was written: no file, not even a partial one
            raise
        self._container, self._temp, self.partial_path = container, temp, None
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
        self._converter = CodecResampler(fmt, layout, rate)
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

    def _finish(self, complete: bool) -> None:
        """Write what is held, drain converter and encoders, write the trailer, close the file,
        then put it at ``path`` (``complete``) or at ``partial_name``."""
        if self._container is None:
            self._open()
        container, temp = self._container, self._temp
        if container is None:
            return
        try:
            try:
                if self._audio is not None and self._converter is not None:
                    for out in self._converter.flush():
                        self._encode_audio(out)
                    container.mux(self._audio.encode(None))
                if self._video is not None:
                    container.mux(self._video.encode(None))
            finally:
                self._reset()
                container.close()
        except BaseException as exc:
            self._settle(temp, complete=False)  # the file misses its end: partial, whatever asked
            if isinstance(exc, AV_ERRORS):
                raise self._error(f"cannot finish {self.path!r}: {av_reason(exc)}") from exc
            raise
        self._settle(temp, complete)

    # -- the file's name ---------------------------------------------------------------------

    def _target(self) -> str:
        """The file ``path`` names: a symlink is written through, so its target is replaced."""
        return os.path.realpath(self.path) if os.path.islink(self.path) else self.path

    def _create_temp(self, target: str) -> str | None:
        """A new, empty file beside ``target`` to write into (same folder: the rename is atomic),
        with the mode ``target`` has; None when ``target`` is not a regular file to replace."""
        try:
            mode = os.stat(target).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise self._error(f"cannot create {self.path!r}: {exc.strerror}", ConfigError) from exc
        if mode is not None and not stat.S_ISREG(mode):
            return None  # /dev/null, a FIFO: written as they are, a rename would replace them
        folder, name = os.path.split(target)
        for _ in range(100):
            temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
            try:  # 0o666 less the umask, as a plain open() would create it
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except OSError as exc:
                raise self._error(
                    f"cannot create a file beside {self.path!r}: {exc.strerror}", ConfigError
                ) from exc
            try:
                if mode is not None:
                    os.fchmod(fd, stat.S_IMODE(mode))
            finally:
                os.close(fd)
            return temp
        raise self._error(f"cannot create a file beside {self.path!r}", ConfigError)

    def _settle(self, temp: str | None, complete: bool) -> None:
        """Move the finished ``temp`` to ``path`` (complete) or to ``partial_name``."""
        if temp is None:
            return
        dest = self._target() if complete else self.partial_name
        try:
            os.replace(temp, dest)
        except OSError as exc:
            raise self._error(
                f"cannot move the written file to {dest!r}: {exc.strerror}; it is in {temp!r}",
                ConfigError,
            ) from exc
        if not complete:
            self.partial_path = dest
            log.info("%s: the stream did not end; what was written is in %s", self.name, dest)

    @staticmethod
    def _discard(temp: str | None) -> None:
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


__all__ = ["CONTAINERS", "ContainerPlan", "FileSink", "pick_rate", "plan_container"]
