"""Cut, corrupt and very wide files: FileSource says so on every container the docs list, and a
FileSink never leaves a half-written file where a whole one is expected.

Files are written here with PyAV alone (or the ``wave`` module), not with the nodes under test.
"""

from __future__ import annotations

import os
import stat
import threading
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from media_nodes import FileSink, FileSource, ToneSource
from stream import AudioFrame, FormatError, Node, NodeError, Pipeline
from stream.testing import split_frames, tone

from ._media import decode, format_error_of, has_encoder, write_av_file

SECONDS = 3.0

# name: (encoder, muxer or None for the extension's, muxer options)
AUDIO_FILES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "a.wav": ("pcm_s16le", None, {}),
    "a.flac": ("flac", None, {}),
    "a.ogg": ("libopus", None, {}),
    "a.opus": ("libopus", None, {}),
    "a.mp3": ("libmp3lame", None, {}),  # with the Xing/LAME header FFmpeg writes
    "noxing.mp3": ("libmp3lame", None, {"write_xing": "0"}),
    "a.m4a": ("aac", None, {}),  # moov written last
    "fast.m4a": ("aac", None, {"movflags": "faststart"}),  # moov first, then the samples
    "a.aac": ("aac", "adts", {}),
    "a.mka": ("aac", None, {}),
    "a.webm": ("libopus", None, {}),
}
AV_FILES = ["av.mp4", "av.mkv"]


def _param(name: str) -> Any:
    codec = AUDIO_FILES[name][0] if name in AUDIO_FILES else "aac"
    missing = not has_encoder(codec)
    return pytest.param(
        name, marks=pytest.mark.skipif(missing, reason=f"no {codec} encoder in this FFmpeg")
    )


ALL = [_param(n) for n in [*AUDIO_FILES, *AV_FILES]]


def write_file(path: Path, seconds: float = SECONDS) -> Path:
    """A mono 1 kHz tone (or, for av.*, tone plus pictures) in the container ``path`` names."""
    if path.name in AV_FILES:
        write_av_file(path, seconds=seconds)
        return path
    codec, muxer, options = AUDIO_FILES[path.name]
    rate = 48000 if codec == "libopus" else 44100
    x = tone(1000.0, seconds, rate, amplitude=0.5)
    with av.open(str(path), "w", format=muxer, options=options) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, x.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, start : start + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def cut(path: Path, keep: int) -> Path:
    out = path.with_name("cut-" + path.name)
    out.write_bytes(path.read_bytes()[:keep])
    return out


async def read_audio_seconds(path: Path) -> float:
    items = await Pipeline([FileSource(path, video=False, name="src")]).run()
    return sum(f.duration for f in items if isinstance(f, AudioFrame))


# -- every container -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
async def test_a_whole_file_reads_to_its_end_without_error(tmp_path: Path, name: str) -> None:
    path = write_file(tmp_path / name)
    assert await read_audio_seconds(path) == pytest.approx(SECONDS, abs=0.1)


@pytest.mark.parametrize("name", ALL)
async def test_a_file_cut_in_half_is_a_format_error_naming_it(tmp_path: Path, name: str) -> None:
    path = write_file(tmp_path / name)
    half = cut(path, path.stat().st_size // 2)
    err = await format_error_of(Pipeline([FileSource(half, name="src")]))
    message = str(err)
    assert message.startswith("src: ") and str(half) in message and "\n" not in message
    # what went wrong, in words: cut (truncated), or data FFmpeg cannot take (moov missing...)
    assert any(w in message for w in ("truncated", "cannot decode", "cannot open", "corrupt"))


# -- Ogg: FFmpeg drops a cut page without a word ---------------------------------------------------


def ogg_page_ends(data: bytes) -> list[int]:
    """Where each page of an Ogg file ends, walking its headers from the start."""
    ends, at = [], 0
    while at < len(data):
        assert data[at : at + 4] == b"OggS"
        segments = data[at + 26]
        at += 27 + segments + sum(data[at + 27 : at + 27 + segments])
        ends.append(at)
    return ends


@pytest.mark.parametrize("name", [_param("a.ogg"), _param("a.opus")])
async def test_ogg_cut_in_half_is_truncated_not_a_shorter_file(tmp_path: Path, name: str) -> None:
    """The issue's case: FFmpeg alone reads 0.99 s of a 3 s file cut at half and says nothing."""
    path = write_file(tmp_path / name)
    half = cut(path, path.stat().st_size // 2)
    with av.open(str(half)) as c:  # what FFmpeg reports for the cut file: the cut file's length
        assert c.duration is not None and c.duration / 1e6 < SECONDS / 2
    err = await format_error_of(Pipeline([FileSource(half, name="src")]))
    assert "truncated: the last Ogg page holds" in str(err)


async def test_ogg_cut_on_a_page_boundary_is_truncated(tmp_path: Path) -> None:
    path = write_file(tmp_path / "a.ogg")
    data = path.read_bytes()
    ends = ogg_page_ends(data)
    assert ends[-1] == len(data) and len(ends) >= 4  # headers, tags, audio pages
    whole_pages = cut(path, ends[-2])  # every page whole, only the last (end-of-stream) missing
    err = await format_error_of(Pipeline([FileSource(whole_pages, name="src")]))
    assert "truncated: the file ends without the Ogg end-of-stream page" in str(err)


async def test_an_ogg_file_with_bytes_after_its_last_page_reads(tmp_path: Path) -> None:
    """Bytes that are no page (a tag some tool appended) are not a cut page."""
    path = write_file(tmp_path / "a.ogg")
    path.write_bytes(path.read_bytes() + b"TAG" + bytes(125))
    assert await read_audio_seconds(path) == pytest.approx(SECONDS, abs=0.1)


# -- MP3 without a Xing header: only a frame cut short tells ---------------------------------------


@pytest.mark.skipif(not has_encoder("libmp3lame"), reason="no libmp3lame encoder")
async def test_mp3_without_xing_cut_inside_a_frame_is_truncated(tmp_path: Path) -> None:
    path = write_file(tmp_path / "noxing.mp3")
    with av.open(str(path)) as c:  # no Xing header: the duration is the size over the bit rate
        packets = [(p.pos, p.size) for p in c.demux(audio=0) if p.size]
    pos, size = packets[len(packets) // 2]
    inside = cut(path, pos + size // 2)
    err = await format_error_of(Pipeline([FileSource(inside, name="src")]))
    assert f"truncated: the last MP3 frame holds {size // 2} of its {size} bytes" in str(err)


# -- channels beyond 7.1 ---------------------------------------------------------------------------


def write_wide_wav(
    path: Path, channels: int, rate: int = 16000, seconds: float = 0.5
) -> npt.NDArray[np.int16]:
    """A WAV (no channel mask: the ``wave`` module writes plain PCM) whose channel k holds a
    tone at 100 * (k + 1) Hz, so a swapped or remixed channel shows."""
    n = round(rate * seconds)
    t = np.arange(n) / rate
    x = np.stack([np.sin(2 * np.pi * 100 * (k + 1) * t) for k in range(channels)])
    samples = np.rint(x * 0.5 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(samples.T).tobytes())
    return samples


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path)) as w:
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return data.reshape(-1, channels).T


@pytest.mark.parametrize("channels", [9, 16, 64])
async def test_wide_wavs_read_and_write_channel_for_channel(tmp_path: Path, channels: int) -> None:
    written = write_wide_wav(tmp_path / "wide.wav", channels)
    out = tmp_path / "copy.wav"
    items = await Pipeline(
        [FileSource(tmp_path / "wide.wav", name="src"), FileSink(out, name="sink")]
    ).run()
    assert items == []
    frames = await Pipeline([FileSource(tmp_path / "wide.wav")]).run()
    assert {f.channels for f in frames} == {channels}
    got = np.concatenate([f.samples for f in frames], axis=1)
    np.testing.assert_allclose(got, written / 32768, atol=1e-6)  # no remix, no reorder
    np.testing.assert_array_equal(read_wav(out), written)


async def test_more_channels_than_ffmpeg_converts_fail_at_setup(tmp_path: Path) -> None:
    write_wide_wav(tmp_path / "w65.wav", 65)
    source = FileSource(tmp_path / "w65.wav", name="src")
    with pytest.raises(FormatError, match=r"65 audio channels; FFmpeg's resampler takes up to 64"):
        await Pipeline([source]).initialize()


@pytest.mark.parametrize("channels", [3, 8, 9, 16, 64])
def test_frames_convert_to_and_from_pyav_channel_for_channel(channels: int) -> None:
    """Up to 7.1 FFmpeg's default layouts, beyond unordered ones; from 8 channels PyAV gets
    packed frames (it miscounts 8 or more planes) and planar ones are read through packed."""
    x = np.arange(channels * 32, dtype=np.float32).reshape(channels, 32) / 4096
    out = AudioFrame(x, 16000, pts=7, time_base=Fraction(1, 16000)).to_av()
    assert out.layout.nb_channels == channels and (out.pts, out.sample_rate) == (7, 16000)
    assert (out.layout.name == "7.1") == (channels == 8)
    back = AudioFrame.from_av(out)
    np.testing.assert_array_equal(back.samples if back.planar else back.samples.T, x)
    planar = av.AudioResampler("fltp", out.layout, 16000).resample(out)  # 8+ planes from FFmpeg
    got = AudioFrame.from_av(planar[0])
    assert got.planar and got.sample_rate == 16000
    np.testing.assert_array_equal(got.samples, x)


# -- what a failed run leaves ----------------------------------------------------------------------


class FailAfter(Node):
    """Passes ``count`` frames, then raises."""

    def __init__(self, count: int) -> None:
        super().__init__("fail")
        self.count = count

    def process(self, item: Any) -> Any:
        if self.count == 0:
            raise RuntimeError("boom")
        self.count -= 1
        return item


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
async def test_a_failed_run_leaves_nothing_at_the_path_and_names_its_partial_file(
    tmp_path: Path, ext: str
) -> None:
    path = tmp_path / f"out.{ext}"
    sink = FileSink(path, name="sink")
    with pytest.raises(NodeError, match="boom"):
        await Pipeline([ToneSource(duration_s=2.0), FailAfter(40), sink]).run()
    assert not path.exists()
    assert sink.partial_path == str(tmp_path / f"out.partial.{ext}")
    assert decode(sink.partial_path).seconds == pytest.approx(40 * 0.02, abs=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out.partial.{ext}"]  # no temp file


async def test_a_failed_run_keeps_the_file_that_was_there(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    await Pipeline([ToneSource(duration_s=0.5), FileSink(path)]).run()
    before = path.read_bytes()
    with pytest.raises(NodeError, match="boom"):
        await Pipeline([ToneSource(duration_s=2.0), FailAfter(10), FileSink(path)]).run()
    assert path.read_bytes() == before


async def test_a_whole_run_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    sink = FileSink(path)
    await Pipeline([ToneSource(duration_s=0.5), sink]).run()
    assert decode(path).seconds == pytest.approx(0.5, abs=0.01)
    assert sink.partial_path is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the file's mode is kept
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


async def test_the_file_being_read_keeps_its_data_while_written_over(tmp_path: Path) -> None:
    """Source and sink on one path (or a hard link to it): the read is whole, then the file is
    replaced; the other name of a hard link keeps the original."""
    path = tmp_path / "b.wav"
    written = write_wide_wav(path, 1, seconds=10.0)  # far more than FFmpeg reads ahead
    link = tmp_path / "link.wav"
    os.link(path, link)
    out = await Pipeline([FileSource(path), FileSink(link)]).run()
    assert out == []
    np.testing.assert_array_equal(read_wav(path), written)  # the other name: untouched
    np.testing.assert_array_equal(read_wav(link), written)  # the whole input went through


async def test_a_symlink_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "real.wav"
    target.write_bytes(b"old")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    await Pipeline([ToneSource(duration_s=0.3), FileSink(link)]).run()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert decode(target).seconds == pytest.approx(0.3, abs=0.01)


async def test_a_fifo_is_written_to_not_replaced(tmp_path: Path) -> None:
    """A path that is not a regular file (a FIFO here, /dev/null alike) is written as it is."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    received = bytearray()

    def drain() -> None:
        with open(fifo, "rb") as f:
            while chunk := f.read(65536):
                received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    frames = split_frames(tone(440.0, 0.3, 16000), 16000, 320)
    await Pipeline([FileSink(fifo, format="wav")]).run(frames)
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the FIFO, not a file renamed over it
    assert received[:4] == b"RIFF" and len(received) > 0.3 * 16000 * 2
    assert [p.name for p in tmp_path.iterdir()] == ["pipe.wav"]
