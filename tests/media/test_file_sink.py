"""FileSink: round trips in every container, conversions, finalizing after failures, errors."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from media_nodes.audio import FormatConvert
from media_nodes.sinks import FileSink
from media_nodes.sources import FileSource, ToneSource
from stream import (
    AudioFrame,
    ConfigError,
    FormatError,
    Node,
    NodeError,
    Pipeline,
    Source,
    VideoFrame,
)
from stream.testing import join_frames, run_node, split_frames, tone

from ._media import decode, has_encoder, peak, write_av_file, write_tone_file

needs_mp3 = pytest.mark.skipif(
    not has_encoder("libmp3lame"), reason="this FFmpeg build has no libmp3lame encoder"
)


async def write(path: Path, *nodes: Node, **sink: Any) -> FileSink:
    node = FileSink(path, **sink)
    await Pipeline([*nodes, node]).run()
    return node


def quantized(x: np.ndarray) -> np.ndarray:
    """What a 16-bit lossless file holds for float samples, back as float."""
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.float32) / 32768


@pytest.mark.parametrize(("ext", "codec"), [("wav", "pcm_s16le"), ("flac", "flac")])
@pytest.mark.parametrize("rate", [44100, 16000])
async def test_lossless_round_trip_is_sample_exact(
    tmp_path: Path, ext: str, codec: str, rate: int
) -> None:
    path = tmp_path / f"t.{ext}"
    await write(path, ToneSource(1000.0, rate, 2, frame_ms=13.0, duration_s=0.77))
    got = decode(path)
    assert (got.audio_codec, got.rate, got.channels) == (codec, rate, 2)
    assert got.audio.shape[1] == round(0.77 * rate)
    np.testing.assert_array_equal(got.audio, quantized(tone(1000.0, 0.77, rate, 2)))


@pytest.mark.parametrize(
    ("ext", "codec", "rate_in", "rate_out"),
    [
        ("ogg", "opus", 44100, 48000),  # opus takes 48 kHz: resampled at the sink
        ("opus", "opus", 48000, 48000),
        ("m4a", "aac", 44100, 44100),
        ("mkv", "aac", 48000, 48000),
        pytest.param("mp3", "mp3float", 44100, 44100, marks=needs_mp3),
    ],
)
async def test_lossy_round_trip_keeps_duration_and_tone(
    tmp_path: Path, ext: str, codec: str, rate_in: int, rate_out: int
) -> None:
    path = tmp_path / f"t.{ext}"
    await write(path, ToneSource(1000.0, rate_in, 2, amplitude=0.5, duration_s=1.0))
    got = decode(path)
    assert (got.audio_codec, got.rate, got.channels) == (codec, rate_out, 2)
    assert got.seconds == pytest.approx(1.0, abs=0.05)
    freq, amplitude = peak(got.audio[1, rate_out // 10 : -rate_out // 10], rate_out)
    assert abs(freq - 1000.0) < 2.0
    assert 20 * np.log10(amplitude / 0.5) == pytest.approx(0.0, abs=1.0)


class AVSource(Source):
    """1 s of a 1 kHz tone in 20 ms frames and a picture per 1/30 s, interleaved by time."""

    def __init__(self, size: tuple[int, int] = (64, 48), seconds: float = 1.0) -> None:
        super().__init__()
        self.size, self.seconds = size, seconds

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        audio = split_frames(tone(1000.0, self.seconds, 48000), 48000, 960)
        width, height = self.size
        pictures = []
        for i in range(round(self.seconds * 30)):
            pixels = np.full((height, width, 3), (i * 8) % 256, np.uint8)
            pictures.append(VideoFrame(pixels, "rgb24", i, Fraction(1, 30)))
        timed = [(f.time or 0.0, 0, f) for f in audio]
        timed += [(float(p.pts * p.time_base), 1, p) for p in pictures]  # type: ignore[operator]
        for _, _, item in sorted(timed, key=lambda t: (t[0], t[1])):
            yield item


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
async def test_audio_and_video_round_trip(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"av.{ext}"
    await write(path, AVSource())
    got = decode(path)
    assert got.audio_codec == "aac" and got.rate == 48000 and got.channels == 1
    assert got.video_codec in ("h264", "mpeg4")
    assert got.seconds == pytest.approx(1.0, abs=0.05)
    assert len(got.pictures) == 30 and got.video_rate == 30
    assert {(p.width, p.height) for p in got.pictures} == {(64, 48)}
    times = [float(p.pts * p.time_base) for p in got.pictures]
    np.testing.assert_allclose(sorted(times), np.arange(30) / 30, atol=2e-3)
    grey = [float(np.median(p.to_ndarray(format="gray"))) for p in got.pictures]
    np.testing.assert_allclose(grey, 8 * np.arange(30), atol=3)  # picture i was grey 8 * i


async def test_odd_picture_sizes_are_made_even(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    await write(path, AVSource(size=(65, 49), seconds=0.2))
    got = decode(path)
    assert {(p.width, p.height) for p in got.pictures} == {(64, 48)} and len(got.pictures) == 6


@pytest.mark.parametrize(("ext", "codec"), [("wav", "pcm_s16le"), ("flac", "flac")])
async def test_file_source_to_file_sink_keeps_length_to_the_sample(
    tmp_path: Path, ext: str, codec: str
) -> None:
    src, dst = tmp_path / f"in.{ext}", tmp_path / f"out.{ext}"
    written = write_tone_file(src, codec, 44100, 2, seconds=1.2345)
    await write(dst, FileSource(src))
    got = decode(dst)
    assert got.rate == 44100 and got.channels == 2
    assert got.audio.shape[1] == written.shape[1] == round(1.2345 * 44100)
    np.testing.assert_array_equal(
        np.concatenate(got.raw, axis=-1).reshape(-1), written.T.reshape(-1)
    )


async def test_file_source_to_file_sink_with_video(tmp_path: Path) -> None:
    write_av_file(tmp_path / "in.mp4", seconds=1.0, fps=25)
    await write(tmp_path / "out.mkv", FileSource(tmp_path / "in.mp4"))
    got = decode(tmp_path / "out.mkv")
    assert len(got.pictures) == 25 and got.seconds == pytest.approx(1.0, abs=0.05)
    assert got.video_rate == 25


async def test_frames_of_another_rate_or_channels_are_converted(tmp_path: Path) -> None:
    first = split_frames(tone(440.0, 0.5, 48000, 1), 48000, 960)
    second = split_frames(tone(880.0, 0.5, 16000, 2), 16000, 320)
    for f in second:
        f.pts = (f.pts or 0) + 8000  # continues at 0.5 s, in its own rate's samples
    path = tmp_path / "mixed.wav"
    await Pipeline([FileSink(path)]).run([*first, *second])
    got = decode(path)
    assert got.rate == 48000 and got.channels == 1
    assert abs(got.audio.shape[1] - 48000) <= 64  # the resampler's tail is flushed, not lost
    assert abs(peak(got.audio[0, 2400:21600], 48000)[0] - 440.0) < 3.0
    assert abs(peak(got.audio[0, 26400:45600], 48000)[0] - 880.0) < 3.0


async def test_sample_rate_setting_converts(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    await write(path, ToneSource(1000.0, 48000, 1, duration_s=1.0), sample_rate=16000)
    got = decode(path)
    assert got.rate == 16000 and abs(got.audio.shape[1] - 16000) <= 2


@pytest.mark.parametrize("fmt", ["s16", "s16p", "flt"])
async def test_any_frame_format_is_taken(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "t.wav"
    frames = split_frames(tone(1000.0, 0.2, 16000, 2), 16000, 320)
    await Pipeline([FormatConvert(format=fmt), FileSink(path)]).run(frames)
    got = decode(path)
    assert got.channels == 2 and got.audio.shape[1] == 3200
    np.testing.assert_allclose(got.audio, quantized(join_frames(frames)), atol=1.01 / 32768)


async def test_bit_rate_reaches_the_encoder(tmp_path: Path) -> None:
    sizes = {}
    for bit_rate in (32000, 192000):
        path = tmp_path / f"t{bit_rate}.m4a"
        await write(path, ToneSource(duration_s=2.0, channels=2), bit_rate=bit_rate)
        sizes[bit_rate] = path.stat().st_size
    assert sizes[192000] > 3 * sizes[32000]


class FailAt(Node):
    """Raises on the ``index``-th frame."""

    def __init__(self, index: int) -> None:
        super().__init__("fail")
        self.index, self.seen = index, 0

    def process(self, item: Any) -> Any:
        if self.seen == self.index:
            raise RuntimeError("boom")
        self.seen += 1
        return item


@pytest.mark.parametrize("ext", ["wav", "flac", "m4a", "ogg", "mp4"])
async def test_a_failing_pipeline_leaves_a_finished_file(tmp_path: Path, ext: str) -> None:
    sink = FileSink(tmp_path / f"out.{ext}")
    source = AVSource(seconds=2.0) if ext == "mp4" else ToneSource(duration_s=2.0)
    with pytest.raises(NodeError, match="boom"):
        await Pipeline([source, FailAt(40), sink]).run()
    assert not (tmp_path / f"out.{ext}").exists()  # named as partial, not as the output
    path = tmp_path / f"out.partial.{ext}"
    assert sink.partial_path == str(path)
    got = decode(path)  # decodable: trailer written, container closed
    if ext in ("wav", "flac"):
        assert got.audio.shape[1] == 40 * 960  # exactly the frames that reached the sink
        with wave.open(str(path)) if ext == "wav" else _null() as w:
            assert w is None or w.getnframes() == 40 * 960  # the header was finalized
    elif ext == "mp4":
        assert len(got.pictures) > 5 and got.seconds > 0.3
    else:
        assert got.seconds == pytest.approx(40 * 0.02, abs=0.05)
    # FileSource reads it without a truncation error.
    assert await Pipeline([FileSource(path)]).run()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class CountingSink(FileSink):
    """A FileSink that sets ``written`` once it has taken ``frames`` frames."""

    def __init__(self, path: Path, frames: int) -> None:
        super().__init__(path)
        self.frames, self.taken = frames, 0
        self.written = asyncio.Event()

    def process(self, item: Any) -> None:
        super().process(item)
        self.taken += 1
        if self.taken == self.frames:
            self.written.set()


async def test_a_cancelled_pipeline_leaves_a_finished_file(tmp_path: Path) -> None:
    sink = CountingSink(tmp_path / "live.wav", frames=10)
    pipeline = Pipeline([ToneSource(realtime=True), sink])  # endless
    task = asyncio.create_task(pipeline.run())
    await sink.written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (tmp_path / "live.wav").exists()  # no flush(): the stream did not end
    path = tmp_path / "live.partial.wav"
    with wave.open(str(path)) as w:
        frames = w.getnframes()
        assert w.getframerate() == 48000
        assert frames == sink.taken * 960  # every frame the sink took, none after
    assert decode(path).audio.shape[1] == frames


async def test_a_kind_arriving_after_the_file_opened_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audio = split_frames(tone(1000.0, 1.5, 48000), 48000, 960)
    late = VideoFrame.blank(32, 32, pts=45, time_base=Fraction(1, 30))
    await Pipeline([FileSink(tmp_path / "late.mp4", name="sink")]).run([*audio, late])
    got = decode(tmp_path / "late.mp4")
    assert got.video_codec is None and got.seconds == pytest.approx(1.5, abs=0.05)
    assert "sink: dropping video: arrived after the file was opened without video" in caplog.text


async def test_no_frames_writes_no_file(tmp_path: Path) -> None:
    await Pipeline([FileSink(tmp_path / "empty.wav")]).run([])
    assert not (tmp_path / "empty.wav").exists()


async def test_bad_items_are_format_errors_naming_the_node(tmp_path: Path) -> None:
    with pytest.raises(NodeError) as info:
        await run_node(FileSink(tmp_path / "x.wav", name="sink"), ["not a frame"])
    assert isinstance(info.value.__cause__, FormatError)
    assert info.value.stage == "sink" and "str" in str(info.value)
    nine = AudioFrame(np.zeros((9, 480), np.float32), 48000)  # FLAC holds up to 8 channels
    with pytest.raises(NodeError) as info:
        await run_node(FileSink(tmp_path / "y.flac", name="sink"), [nine])
    assert isinstance(info.value.__cause__, FormatError)
    assert "flac encoder cannot take 9 channels" in str(info.value)
    assert not (tmp_path / "y.flac").exists() and not (tmp_path / "y.partial.flac").exists()


@needs_mp3
async def test_an_encoder_refusing_the_stream_says_why_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "six.mp3"
    with pytest.raises(NodeError) as info:
        await write(path, ToneSource(channels=6, duration_s=0.2), name="sink")
    assert isinstance(info.value.__cause__, FormatError)
    assert "libmp3lame encoder cannot take 6 channels at 48000 Hz" in str(info.value)
    assert not path.exists()


async def test_video_into_an_audio_file_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_av_file(tmp_path / "in.mp4", seconds=0.5)
    await write(tmp_path / "out.wav", FileSource(tmp_path / "in.mp4"), name="sink")
    got = decode(tmp_path / "out.wav")
    assert got.video_codec is None and got.seconds == pytest.approx(0.5, abs=0.05)
    assert "sink: dropping video: a wav file holds no video" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "x.xyz"}, "cannot tell the container"),
        ({"path": "x.bin", "format": "no_such_muxer"}, "unknown container format"),
        ({"path": "x.bin", "format": "adts"}, "no default codecs"),
        ({"path": "x.wav", "audio_codec": "no_such_encoder"}, "no_such_encoder"),
        ({"path": "x.wav", "audio_codec": "mpeg4"}, "video encoder"),
        ({"path": "x.ogg", "sample_rate": 44100}, "44100"),
        ({"path": "x.wav", "sample_rate": 0}, "sample_rate"),
        ({"path": "x.wav", "bit_rate": -5}, "bit_rate"),
        ({"path": "x.wav", "options": {"a": None}}, "options"),
        ({"path": ""}, "path"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^n: .*{message}"):
        FileSink(**kwargs, name="n")


def test_a_missing_encoder_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = av.Codec

    def without_lame(name: str, mode: str = "r") -> Any:
        if name == "libmp3lame":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av, "Codec", without_lame)
    with pytest.raises(ConfigError, match=r"^n: audio encoder 'libmp3lame' is not available"):
        FileSink("song.mp3", name="n")


async def test_a_missing_folder_is_a_config_error_at_setup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        await Pipeline([FileSink(tmp_path / "no" / "dir.wav")]).initialize()


async def test_explicit_format_and_codecs(tmp_path: Path) -> None:
    path = tmp_path / "raw.bin"
    await write(path, ToneSource(duration_s=0.5), format="adts", audio_codec="aac")
    with av.open(str(path)) as c:
        assert c.format.name == "aac" and c.streams.audio[0].codec_context.name == "aac"
    path = tmp_path / "f32.wav"
    await write(path, ToneSource(duration_s=0.1), audio_codec="pcm_f32le")
    got = decode(path)
    assert got.audio_codec == "pcm_f32le"
    np.testing.assert_allclose(got.audio, tone(440.0, 0.1, 48000), atol=1e-7)  # no 16-bit step


def test_params_rebuild_the_node() -> None:
    node = FileSink("o.mkv", None, "aac", "mpeg4", 44100, 96000, {"crf": "20"})
    params = json.loads(json.dumps(node.params()))
    assert FileSink(**params).params() == node.params()
    assert FileSink("o.wav").params()["options"] is None
