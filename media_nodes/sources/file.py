"""FileSource: decodes a media file or URL with PyAV (FFmpeg) into AudioFrames and VideoFrames.

Any container and codec FFmpeg reads works: wav, flac, mp3, ogg/opus, m4a/aac, mp4/mkv with audio
and video. Packets are read and decoded one at a time (memory stays bounded on long files), and
frames come out in decode order, audio and video interleaved.

One audio format downstream: audio comes out float32 planar (fltp) at ``sample_rate`` Hz with
``channels`` channels when those are given; a setting left None is taken from the first decoded
audio frame (its rate; its channel layout). Audio whose rate or channel layout changes mid-file
(chained or concatenated streams) is converted to that first format, so downstream stages never
see a change. Audio pts count output samples (``time_base = 1/rate``) from the first frame's
timestamp, so they stay continuous whatever frame sizes the decoder or the conversion produce.
Video frames keep the file's pts and time_base (``VideoFrame.from_av``); attached pictures (cover
art) are not video and are skipped.

Audio of up to ``MAX_CHANNELS`` (64, FFmpeg's resampler's limit) channels is read; 1 to 8 get
FFmpeg's default layout (mono ... 7.1) when the file names none, more stay unordered
(``"N channels"``). A file of more channels is a FormatError at ``initialize()``.

Errors: bad settings are ConfigError. A missing or unreadable file, data FFmpeg cannot parse or
decode, a corrupt packet, no stream of the selected kinds, or a file shorter than it says
(truncated) are FormatError with a one-line message naming the node and the path; FFmpeg's
exceptions are mapped here and never escape. What each container lets us notice of a cut file:

- WAV: the data chunk's size (at ``initialize()``), and a sample cut in half (a corrupt packet).
- FLAC: the sample count in STREAMINFO; a frame cut short also fails to decode.
- Ogg (.ogg, .opus, .oga): a complete file ends with a whole page flagged end-of-stream; a file
  whose last page is cut short or lacks the flag is truncated (at ``initialize()``). FFmpeg
  itself drops a cut page without a word, and the duration it reports is the cut file's.
- Matroska/WebM and MP4/MOV/M4A: the durations in the header, allowing ``max(0.1 s, 5 %)`` of
  slack for codec delay and padding; an MP4 cut before its ``moov`` (written last by default)
  does not open at all.
- MP3: the frame count of a Xing/LAME header (LAME and FFmpeg write one), and a last frame
  shorter than its header says. Without a Xing header a cut on a frame boundary is not
  detectable: nothing in the file says how long it was.
- ADTS AAC (.aac): a frame cut short fails to decode; like MP3 without Xing, a cut on a frame
  boundary is not detectable.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import AsyncIterator, Generator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from av.audio.stream import AudioStream

from stream.errors import FormatError
from stream.frames import AudioFrame, VideoFrame, audio_frame_unchecked
from stream.kernel import config_error
from stream.node import Source

from .signals import RealtimePacer, check_int

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.stream import Stream

# Demuxers whose stream or container durations come from the file's own header (or its last
# timestamp), so a decode that ends well short of them means the file was cut.
_DECLARES_LENGTH = {"flac", "ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "mp3"}
_TRUNCATION_SLACK_S = 0.1
_TRUNCATION_SLACK_RATIO = 0.05

# FFmpeg's default channel layouts used here (mono, stereo ... 7.1), for 1 to 8 channels.
MAX_LAYOUT_CHANNELS = 8
# FFmpeg's resampler (SWR_CH_MAX) converts at most this many channels.
MAX_CHANNELS = 64
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header, segment table, data

AV_ERRORS: tuple[type[Exception], ...] = (av.FFmpegError, OSError)


def av_reason(exc: BaseException) -> str:
    """FFmpeg's one-line reason for ``exc`` (without the errno and file name decorations)."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(reason).splitlines()[0]


def default_layout(channels: int) -> str:
    """FFmpeg's default channel layout for 1 to 8 channels (mono, stereo ... 7.1); beyond, the
    unordered ``"N channels"`` (FFmpeg's defaults above 8, 9.1.6 and 22.2, would make the
    resampler remix channels that carry no such meaning)."""
    if channels <= MAX_LAYOUT_CHANNELS:
        return av.AudioLayout(f"{channels}c").name
    return f"{channels} channels"


class CodecResampler:
    """Converts PyAV audio frames of any codec sample format, channel layout and rate to one
    target, with FFmpeg's resampler (``av.AudioResampler``).

    The codec-side step of file I/O, kept on PyAV because it does what ``AudioAdapter`` (four
    sample formats, ChannelMix's mono-to-any and any-to-mono) does not: codec formats such as
    s32, dbl or u8, layout-aware remixing (5.1 to stereo with FFmpeg's mix levels), and a rate
    change whose output is aligned with its input and whose tail comes out at the end (a file
    keeps its exact length).

    ``av.AudioResampler`` fixes its input format at its first frame; when the input changes, the
    old resampler is drained (its tail comes out first) and a new one built, so a stream whose
    format changes mid-way converts to the same target without losing samples. Output pts are left
    to the caller, which counts samples.
    """

    def __init__(self, format: str, layout: str, rate: int) -> None:
        self.format = format
        self.layout = layout
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    @property
    def channels(self) -> int:
        return av.AudioLayout(self.layout).nb_channels

    def convert(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[av.AudioFrame] = []
        if key != self._input:
            out.extend(self.flush())
            self._resampler = av.AudioResampler(self.format, self.layout, self.rate)
            self._input = key
        assert self._resampler is not None
        frame.pts = None  # samples are counted downstream; the decoder's timestamps play no part
        out.extend(self._resampler.resample(frame))
        return out

    def flush(self) -> list[av.AudioFrame]:
        """The samples the resampler still holds; then the converter takes any new input."""
        if self._resampler is None:
            return []
        tail = [f for f in self._resampler.resample(None) if f is not None]
        self._resampler, self._input = None, None
        return tail


def _frame_step(frame: av.VideoFrame, stream: Stream) -> float:
    """How long a picture shows: its own duration, else one period of the stream's frame rate."""
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.0


class _AudioTrack:
    """The audio of one run: conversion to the locked format and the sample clock."""

    def __init__(self, rate: int | None, channels: int | None) -> None:
        self.want_rate, self.want_channels = rate, channels
        self.converter: CodecResampler | None = None
        self.origin = 0  # pts of the first output sample, in output samples
        self.count = 0

    @property
    def end_s(self) -> float | None:
        if self.converter is None:
            return None
        return (self.origin + self.count) / self.converter.rate

    def frames(self, frame: av.AudioFrame) -> list[tuple[float, AudioFrame]]:
        if self.converter is None:
            rate = self.want_rate or frame.sample_rate
            if self.want_channels:
                layout = default_layout(self.want_channels)
            elif any(c.name == "NONE" for c in frame.layout.channels):
                layout = default_layout(frame.layout.nb_channels)  # unordered: the default order
            else:
                layout = frame.layout.name
            # packed: PyAV 18 reads past the planes of 8 or more (AudioFrame.from_av says why)
            self.converter = CodecResampler("flt", layout, rate)
            if frame.pts is not None and frame.time_base is not None:
                self.origin = round(frame.pts * frame.time_base * rate)
        return [self._stamp(f) for f in self.converter.convert(frame)]

    def flush(self) -> list[tuple[float, AudioFrame]]:
        if self.converter is None:
            return []
        return [self._stamp(f) for f in self.converter.flush()]

    def _stamp(self, frame: av.AudioFrame) -> tuple[float, AudioFrame]:
        assert self.converter is not None
        rate = self.converter.rate
        interleaved = frame.to_ndarray().reshape(-1, frame.layout.nb_channels)
        samples = np.ascontiguousarray(interleaved.T, dtype=np.float32)
        pts = self.origin + self.count
        self.count += samples.shape[1]
        return pts / rate, audio_frame_unchecked(samples, rate, pts, Fraction(1, rate))


class FileSource(Source):
    """Decode ``path_or_url`` (a file path or any URL FFmpeg opens) into frames.

    ``audio``/``video`` select the kinds to decode (FFmpeg's best stream of each kind; the file
    must hold at least one selected kind). ``sample_rate`` (Hz) and ``channels`` (1 to 64) convert
    the audio (see the module docstring for the one-format rule). ``realtime=True`` paces frames
    by their timestamps, as a live source would deliver them. ``initialize()`` opens and checks
    the file, so a missing or unreadable file fails at setup. Raises ConfigError for bad settings
    and FormatError for files it cannot read.
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike[str],
        realtime: bool = False,
        audio: bool = True,
        video: bool = True,
        sample_rate: int | None = None,
        channels: int | None = None,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(path_or_url, str | os.PathLike) or not os.fspath(path_or_url):
            raise config_error(
                self.name, f"path_or_url must be a non-empty path or URL, got {path_or_url!r}"
            )
        for flag, value in (("realtime", realtime), ("audio", audio), ("video", video)):
            if not isinstance(value, bool):
                raise config_error(self.name, f"{flag} must be a bool, got {value!r}")
        if not (audio or video):
            raise config_error(self.name, "audio and video are both False: nothing to decode")
        if sample_rate is not None:
            check_int(self.name, "sample_rate", sample_rate, 1)
        if channels is not None:
            check_int(self.name, "channels", channels, 1, MAX_CHANNELS)
        self.path = os.fspath(path_or_url)
        self.realtime = realtime
        self.audio = audio
        self.video = video
        self.sample_rate = sample_rate
        self.channels = channels
        self._container: InputContainer | None = None

    def params(self) -> dict[str, Any]:
        return {
            "path_or_url": self.path,
            "realtime": self.realtime,
            "audio": self.audio,
            "video": self.video,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
        }

    def initialize(self) -> None:
        self._close()
        self._container = self._open()

    def cleanup(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _error(self, message: str) -> FormatError:
        return FormatError(f"{self.path!r}: {message}", stage=self.name)

    def _open(self) -> InputContainer:
        try:
            container = av.open(self.path, "r", metadata_errors="replace")
        except AV_ERRORS as exc:
            raise self._error(f"cannot open: {av_reason(exc)}") from exc
        try:
            for stream in self._streams(container):
                channels = stream.codec_context.channels if isinstance(stream, AudioStream) else 0
                if channels > MAX_CHANNELS:
                    raise self._error(
                        f"{channels} audio channels; FFmpeg's resampler takes up to {MAX_CHANNELS}"
                    )
            if container.format.name == "wav":
                self._check_wav_size()
            elif container.format.name == "ogg":
                self._check_ogg_end()
        except BaseException:
            container.close()
            raise
        return container

    def _streams(self, container: InputContainer) -> list[Stream]:
        """The selected streams: the best audio and the best video (cover art is not video)."""
        chosen: list[Stream] = []
        if self.audio:
            audio = container.streams.best("audio")
            if audio is not None:
                chosen.append(audio)
        if self.video:
            videos = [
                s
                for s in container.streams.video
                if not s.disposition & av.stream.Disposition.attached_pic
            ]
            if videos:
                chosen.append(videos[0])
        if not chosen:
            kinds = " or ".join(k for k, on in (("audio", self.audio), ("video", self.video)) if on)
            raise self._error(f"no {kinds} stream in the file")
        return chosen

    def _check_wav_size(self) -> None:
        """FFmpeg reads a cut WAV to its end without a word; its data chunk size tells."""
        if not os.path.isfile(self.path):
            return
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return  # RF64 and friends: sizes live elsewhere
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
                if chunk_id == b"data":
                    if chunk_size not in (0, 0xFFFFFFFF) and pos + 8 + chunk_size > size:
                        have = size - pos - 8
                        raise self._error(
                            f"truncated: the header declares {chunk_size} bytes of audio, "
                            f"the file holds {have}"
                        )
                    return
                pos += 8 + chunk_size + (chunk_size & 1)

    def _check_ogg_end(self) -> None:
        """A whole Ogg file ends with a whole page flagged end-of-stream; FFmpeg reads a cut one
        to its last whole page without a word (and reports that page's time as the duration)."""
        if not os.path.isfile(self.path):
            return
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 2 * _OGG_MAX_PAGE))  # the last whole page starts in here
            tail = f.read()
        end = len(tail)
        cut: tuple[int, int] | None = None  # (bytes present, bytes the page declares)
        while (at := tail.rfind(b"OggS", 0, end)) >= 0:
            end = at
            page = _ogg_page(tail, at)
            if page is None:
                continue
            length, flags = page
            if at + length > len(tail):
                cut = cut or (len(tail) - at, length)
                continue
            if _ogg_crc(tail[at : at + length]) != _ogg_page_crc(tail, at):
                continue  # "OggS" inside some packet's data, not a page
            if cut is not None:
                raise self._error(
                    f"truncated: the last Ogg page holds {cut[0]} of its {cut[1]} bytes"
                )
            if not flags & 0x04:
                raise self._error("truncated: the file ends without the Ogg end-of-stream page")
            return
        if cut is not None:  # not one whole page at the end: FFmpeg may still have opened it
            raise self._error(f"truncated: the last Ogg page holds {cut[0]} of its {cut[1]} bytes")

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        container, self._container = self._container or self._open(), None
        pacer = RealtimePacer() if self.realtime else None
        frames = self._frames(container)
        try:
            for media_time, item in frames:
                if pacer is not None and media_time is not None:
                    await pacer.wait(media_time)
                yield item
        finally:
            frames.close()
            container.close()

    def _frames(
        self, container: InputContainer
    ) -> Generator[tuple[float | None, AudioFrame | VideoFrame], None, None]:
        """Decode lazily; every FFmpeg failure on the way becomes one FormatError."""
        track = _AudioTrack(self.sample_rate, self.channels)
        video_end: float | None = None
        streams: list[Stream] = []
        raw_mp3 = container.format.name == "mp3"
        last_audio: av.Packet[Stream] | None = None
        try:
            streams = self._streams(container)
            for stream in streams:
                if stream.type == "video":
                    stream.codec_context.thread_type = "AUTO"
            for packet in container.demux(streams):
                if packet.is_corrupt:
                    pts, tb = packet.pts, packet.time_base
                    at = f" at {float(pts * tb):.3f} s" if pts is not None and tb else ""
                    raise self._error(f"corrupt {packet.stream.type} packet{at}")
                if raw_mp3 and packet.stream.type == "audio" and packet.size:
                    last_audio = packet
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        yield from track.frames(frame)
                    elif isinstance(frame, av.VideoFrame):
                        out = VideoFrame.from_av(frame)
                        start = None if frame.time is None else float(frame.time)
                        if start is not None:
                            end = start + _frame_step(frame, packet.stream)
                            video_end = end if video_end is None else max(video_end, end)
                        yield start, out
            yield from track.flush()
        except AV_ERRORS as exc:
            raise self._error(f"cannot decode: {av_reason(exc)}") from exc
        if last_audio is not None:
            declared = _mpeg_audio_frame_size(bytes(last_audio)[:4])
            if declared is not None and last_audio.size < declared:
                raise self._error(
                    f"truncated: the last MP3 frame holds {last_audio.size} of its {declared} bytes"
                )
        self._check_length(container, streams, track.end_s, video_end)

    def _check_length(
        self,
        container: InputContainer,
        streams: list[Stream],
        audio_end: float | None,
        video_end: float | None,
    ) -> None:
        """FormatError when the decode ended well before the length the file declares."""
        if container.format.name not in _DECLARES_LENGTH:
            return
        checks: list[tuple[str, float, float, float | None]] = []  # kind, start, declared, got
        for stream in streams:
            if stream.duration and stream.time_base:
                start = float((stream.start_time or 0) * stream.time_base)
                declared = float(stream.duration * stream.time_base)
                got = audio_end if stream.type == "audio" else video_end
                checks.append((stream.type, start, declared, got))
        media = [s for s in container.streams if s.type in ("audio", "video")]
        if not checks and container.duration and len(streams) == len(media):
            start = (container.start_time or 0) / av.time_base
            ends = [e for e in (audio_end, video_end) if e is not None]
            checks.append(
                ("media", start, container.duration / av.time_base, max(ends, default=None))
            )
        for kind, start, declared, got in checks:
            decoded = 0.0 if got is None else got - start
            slack = max(_TRUNCATION_SLACK_S, _TRUNCATION_SLACK_RATIO * declared)
            if decoded < declared - slack:
                raise self._error(
                    f"truncated: decoded {decoded:.3f} s of {kind}, "
                    f"the file declares {declared:.3f} s"
                )


def _ogg_page(data: bytes, at: int) -> tuple[int, int] | None:
    """(length, header flags) of the Ogg page whose header starts at ``at``, or None when the
    bytes there are not a page header (RFC 3533: version 0, flags 0..7, then the lacing)."""
    if at + 27 > len(data) or data[at + 4] != 0 or data[at + 5] > 7:
        return None
    segments = data[at + 26]
    if at + 27 + segments > len(data):
        return 27 + segments + 255 * segments, data[at + 5]  # cut in its lacing: at least this
    return 27 + segments + sum(data[at + 27 : at + 27 + segments]), data[at + 5]


def _ogg_page_crc(data: bytes, at: int) -> int:
    return int.from_bytes(data[at + 22 : at + 26], "little")


def _make_ogg_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):  # CRC-32, polynomial 0x04C11DB7, not reflected (RFC 3533)
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_OGG_CRC_TABLE = _make_ogg_crc_table()


def _ogg_crc(page: bytes) -> int:
    """The checksum of an Ogg page, computed with its own checksum field as zeros."""
    crc = 0
    table = _OGG_CRC_TABLE
    for byte in page[:22] + bytes(4) + page[26:]:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


# MPEG audio bit rates (kbit/s) by (MPEG-1 or not, layer) and the header's 4-bit index.
_MPA_KBPS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPA_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_audio_frame_size(header: bytes) -> int | None:
    """The size in bytes of the MPEG audio (MP1/2/3) frame this 4-byte header starts, or None
    when it is not a header with a known size (free-format bit rate, reserved fields)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, 4 - ((header[1] >> 1) & 3)
    rate_index, kbps_index = (header[2] >> 2) & 3, header[2] >> 4
    if version == 1 or layer == 4 or rate_index == 3 or kbps_index in (0, 15):
        return None
    mpeg1 = version == 3
    bit_rate = _MPA_KBPS[mpeg1, layer][kbps_index] * 1000
    rate = _MPA_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        return (12 * bit_rate // rate + padding) * 4
    return (144 if mpeg1 or layer == 2 else 72) * bit_rate // rate + padding


def __getattr__(name: str) -> Any:
    if name == "AudioConverter":  # its old name, shared with the transport's (now AudioAdapter)
        warnings.warn(
            "media_nodes.sources.file.AudioConverter is now CodecResampler",
            DeprecationWarning,
            stacklevel=2,
        )
        return CodecResampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MAX_CHANNELS", "CodecResampler", "FileSource", "av_reason", "default_layout"]
