"""FileSource on files PyAV writes here: formats, conversion, the one-format rule, errors."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from media_nodes.sources import FileSource
from stream import AudioFrame, ConfigError, FormatError, Pipeline, VideoFrame
from stream.testing import join_frames, tone

from ._media import (
    format_error_of,
    has_encoder,
    peak,
    write_audio,
    write_av_file,
    write_tone_file,
)

needs_mp3 = pytest.mark.skipif(
    not has_encoder("libmp3lame"), reason="this FFmpeg build has no libmp3lame encoder"
)


async def read(path: Path, **kwargs: Any) -> list[Any]:
    return list(await Pipeline([FileSource(path, **kwargs)]).run())


def audio_of(items: list[Any]) -> list[AudioFrame]:
    return [f for f in items if isinstance(f, AudioFrame)]


def assert_continuous(frames: list[AudioFrame], rate: int, channels: int) -> None:
    assert frames
    expected = frames[0].pts
    for f in frames:
        assert f.samples.dtype == np.float32 and f.planar and f.format == "fltp"
        assert f.sample_rate == rate and f.channels == channels
        assert f.time_base == Fraction(1, rate) and f.pts == expected
        expected += f.num_samples


@pytest.mark.parametrize(
    ("name", "codec", "channels"),
    [("t.wav", "pcm_s16le", 1), ("t.wav", "pcm_s16le", 2), ("t.flac", "flac", 2)],
)
async def test_lossless_files_decode_to_the_same_samples(
    tmp_path: Path, name: str, codec: str, channels: int
) -> None:
    written = write_tone_file(tmp_path / name, codec, 44100, channels, seconds=0.7)
    frames = audio_of(await read(tmp_path / name))
    assert_continuous(frames, 44100, channels)
    assert frames[0].pts == 0
    np.testing.assert_array_equal(join_frames(frames), written.astype(np.float32) / 32768)


@pytest.mark.parametrize(
    ("name", "codec", "rate"),
    [
        ("t.ogg", "libopus", 48000),
        ("t.m4a", "aac", 44100),
        pytest.param("t.mp3", "libmp3lame", 44100, marks=needs_mp3),
    ],
)
async def test_lossy_files_keep_rate_length_and_tone(
    tmp_path: Path, name: str, codec: str, rate: int
) -> None:
    write_tone_file(tmp_path / name, codec, rate, 2, seconds=1.0, freq_hz=1000.0)
    frames = audio_of(await read(tmp_path / name))
    assert_continuous(frames, rate, 2)
    x = join_frames(frames)
    assert abs(x.shape[1] - rate) <= 2048  # codec delay and padding
    freq, amplitude = peak(x[0, rate // 10 : -rate // 10], rate)
    assert abs(freq - 1000.0) < 2.0 and amplitude == pytest.approx(0.5, rel=0.1)


async def test_audio_and_video_come_interleaved_with_timestamps(tmp_path: Path) -> None:
    write_av_file(tmp_path / "av.mp4", seconds=1.0, fps=25)
    items = await read(tmp_path / "av.mp4")
    kinds = ["a" if isinstance(f, AudioFrame) else "v" for f in items]
    assert kinds.count("v") == 25 and all(isinstance(f, AudioFrame | VideoFrame) for f in items)
    first_video = kinds.index("v")
    assert "a" in kinds[first_video:]  # interleaved, not all audio first
    audio = audio_of(items)
    assert_continuous(audio, 48000, 1)
    assert abs(sum(f.num_samples for f in audio) - 48000) <= 2048
    pictures = [f for f in items if isinstance(f, VideoFrame)]
    assert {(p.width, p.height) for p in pictures} == {(64, 48)}
    times = sorted(float(p.pts * p.time_base) for p in pictures)
    np.testing.assert_allclose(times, np.arange(25) / 25, atol=1e-3)
    # Pixels survive: picture i was grey 9 * i, which is luma 16 + 9 * i * 219 / 255 in yuv420p.
    assert {p.format for p in pictures} == {"yuv420p"}
    levels = [float(np.median(p.pixels[:48])) for p in sorted(pictures, key=lambda p: p.pts)]
    np.testing.assert_allclose(levels, 16 + 9 * np.arange(25) * 219 / 255, atol=3)


async def test_audio_and_video_selection(tmp_path: Path) -> None:
    write_av_file(tmp_path / "av.mkv", seconds=0.5)
    only_audio = await read(tmp_path / "av.mkv", video=False)
    only_video = await read(tmp_path / "av.mkv", audio=False)
    assert all(isinstance(f, AudioFrame) for f in only_audio) and only_audio
    assert all(isinstance(f, VideoFrame) for f in only_video) and len(only_video) == 12
    write_tone_file(tmp_path / "a.wav", "pcm_s16le", seconds=0.1)
    err = await format_error_of(Pipeline([FileSource(tmp_path / "a.wav", audio=False, name="src")]))
    assert str(err).startswith("src: ") and "no video stream" in str(err) and "a.wav" in str(err)


async def test_conversion_to_the_asked_rate_and_channels(tmp_path: Path) -> None:
    write_tone_file(tmp_path / "t.wav", "pcm_s16le", 48000, 1, seconds=1.0)
    frames = audio_of(await read(tmp_path / "t.wav", sample_rate=16000, channels=2))
    assert_continuous(frames, 16000, 2)
    x = join_frames(frames)
    assert abs(x.shape[1] - 16000) <= 2
    np.testing.assert_array_equal(x[0], x[1])  # mono up-mixed
    freq, _ = peak(x[0], 16000)
    assert abs(freq - 1000.0) < 1.0


def concatenated_adts(path: Path) -> None:
    """Raw AAC (ADTS): 0.5 s of 440 Hz, 44.1 kHz mono, then 0.5 s of 880 Hz, 48 kHz stereo.

    ADTS headers carry rate and channels in every frame, so the decoder changes format mid-file.
    """
    parts = []
    for rate, channels, freq in ((44100, 1, 440.0), (48000, 2, 880.0)):
        import io

        buf = io.BytesIO()
        write_audio(buf, tone(freq, 0.5, rate, channels), rate, "aac", fmt="adts")
        parts.append(buf.getvalue())
    path.write_bytes(b"".join(parts))


@pytest.mark.parametrize(
    ("kwargs", "rate", "channels"),
    [({}, 44100, 1), ({"sample_rate": 16000, "channels": 2}, 16000, 2)],
)
async def test_mid_file_format_change_is_converted_to_one_format(
    tmp_path: Path, kwargs: dict[str, Any], rate: int, channels: int
) -> None:
    path = tmp_path / "chained.aac"
    concatenated_adts(path)
    # The file really changes format mid-way, as PyAV decodes it.
    with av.open(str(path)) as c:
        formats = {(f.sample_rate, f.layout.nb_channels) for f in c.decode(audio=0)}
    assert formats == {(44100, 1), (48000, 2)}

    frames = audio_of(await read(path, **kwargs))
    assert_continuous(frames, rate, channels)  # every frame in the one format, pts unbroken
    x = join_frames(frames)
    assert abs(x.shape[1] / rate - 1.0) < 0.08  # both halves, converted (aac adds padding)
    # Converted, not relabelled: the second half's 880 Hz is still 880 Hz at the locked rate.
    first = peak(x[0, int(0.05 * rate) : int(0.45 * rate)], rate)[0]
    second = peak(x[0, int(0.6 * rate) : int(0.95 * rate)], rate)[0]
    assert abs(first - 440.0) < 3.0 and abs(second - 880.0) < 3.0


async def test_missing_file_is_a_format_error_naming_node_and_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.wav"
    err = await format_error_of(Pipeline([FileSource(path, name="src")]))
    assert str(err).startswith("src: ") and str(path) in str(err) and err.stage == "src"
    assert "\n" not in str(err)
    assert not isinstance(err, av.FFmpegError)


async def test_setup_fails_at_initialize_not_mid_stream(tmp_path: Path) -> None:
    pipeline = Pipeline([FileSource(tmp_path / "nowhere.flac", name="src")])
    with pytest.raises(FormatError, match=r"nowhere\.flac"):
        await pipeline.initialize()


def truncate(path: Path, keep: float | int) -> Path:
    data = path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    out = path.with_name("cut-" + path.name)
    out.write_bytes(data[:n])
    return out


def corrupt(path: Path, seed: int = 1) -> Path:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    third = len(data) // 3
    data[third : 2 * third] = rng.integers(0, 256, third, dtype=np.uint8).tobytes()
    out = path.with_name("bad-" + path.name)
    out.write_bytes(bytes(data))
    return out


def make(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    if name.endswith((".mp4", ".mkv")):
        write_av_file(path, seconds=1.0)
    else:
        codec = {
            "wav": "pcm_s16le",
            "flac": "flac",
            "ogg": "libopus",
            "m4a": "aac",
            "mp3": "libmp3lame",
        }
        write_tone_file(
            path, codec[name.split(".")[1]], 48000 if name.endswith(".ogg") else 44100, 1
        )
    return path


FORMATS = [
    "a.wav",
    "a.flac",
    "a.ogg",
    "a.m4a",
    "a.mp4",
    "a.mkv",
    pytest.param("a.mp3", marks=needs_mp3),
]


@pytest.mark.parametrize("name", FORMATS)
async def test_truncated_files_are_format_errors(tmp_path: Path, name: str) -> None:
    cut = truncate(make(tmp_path, name), 0.5)
    err = await format_error_of(Pipeline([FileSource(cut, name="src")]))
    assert str(err).startswith("src: ") and str(cut) in str(err)


async def test_wav_cut_on_a_sample_boundary_is_truncated(tmp_path: Path) -> None:
    path = make(tmp_path, "a.wav")
    size = path.stat().st_size
    cut = truncate(path, size - 2 * 10000)  # whole samples missing: FFmpeg itself says nothing
    err = await format_error_of(Pipeline([FileSource(cut, name="src")]))
    assert "truncated" in str(err)


@pytest.mark.parametrize("name", [n for n in FORMATS if n != "a.wav"])
async def test_corrupt_files_are_format_errors(tmp_path: Path, name: Any) -> None:
    bad = corrupt(make(tmp_path, name))
    err = await format_error_of(Pipeline([FileSource(bad, name="src")]))
    assert str(err).startswith("src: ") and str(bad) in str(err)


@pytest.mark.parametrize("data", [b"", b"RIFF", bytes(range(256)) * 40])
async def test_garbage_is_a_format_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(data)
    err = await format_error_of(Pipeline([FileSource(path, name="src")]))
    assert str(err).startswith("src: ") and "garbage.wav" in str(err)


async def test_realtime_paces_by_timestamps(tmp_path: Path) -> None:
    write_tone_file(tmp_path / "t.wav", "pcm_s16le", 16000, 1, seconds=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = audio_of(await read(tmp_path / "t.wav", realtime=True))
    elapsed = loop.time() - start
    last = frames[-1]
    assert float(last.pts * last.time_base) - 0.01 <= elapsed  # never ahead of its timestamps


async def test_decoding_is_lazy_and_memory_stays_bounded(tmp_path: Path) -> None:
    # 20 s of 48 kHz stereo: 7.7 MB as float32 frames, far more than the pipeline ever holds.
    x = np.zeros((2, 20 * 48000), np.int16)
    write_audio(tmp_path / "long.wav", x, 48000, "pcm_s16le")
    count = 0
    tracemalloc.start()
    try:
        async for frame in Pipeline([FileSource(tmp_path / "long.wav")]).process():
            count += frame.num_samples
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20 * 48000
    assert peak_bytes < 2_000_000, peak_bytes


async def test_stopping_early_closes_the_file(tmp_path: Path) -> None:
    write_tone_file(tmp_path / "t.flac", "flac", seconds=2.0)
    source = FileSource(tmp_path / "t.flac")
    pipeline = Pipeline([source])
    got = 0
    async with pipeline:
        async for _ in pipeline.process():
            got += 1
            if got == 3:
                break
    assert source._container is None  # closed by cleanup; nothing left open


@pytest.mark.parametrize(
    "make_node",
    [
        lambda: FileSource("", name="n"),
        lambda: FileSource(3, name="n"),
        lambda: FileSource("a.wav", audio=False, video=False, name="n"),
        lambda: FileSource("a.wav", sample_rate=0, name="n"),
        lambda: FileSource("a.wav", channels=0, name="n"),
        lambda: FileSource("a.wav", channels=2.0, name="n"),
        lambda: FileSource("a.wav", realtime=1, name="n"),
    ],
)
def test_bad_settings_are_config_errors(make_node: Any) -> None:
    with pytest.raises(ConfigError, match=r"^n: "):
        make_node()


def test_params_rebuild_the_node(tmp_path: Path) -> None:
    node = FileSource(tmp_path / "x.mkv", True, True, False, 16000, 2)
    params = json.loads(json.dumps(node.params()))
    assert params["path_or_url"] == str(tmp_path / "x.mkv")
    assert FileSource(**params).params() == node.params()


async def test_an_initialized_pipeline_reads_the_file_on_every_run(tmp_path: Path) -> None:
    written = write_tone_file(tmp_path / "t.wav", "pcm_s16le", 16000, 1, seconds=0.2)
    pipeline = Pipeline([FileSource(tmp_path / "t.wav")])
    async with pipeline:
        first = join_frames(await pipeline.run())
        second = join_frames(await pipeline.run())
    np.testing.assert_array_equal(first, second)
    assert first.shape == written.shape
