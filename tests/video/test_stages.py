"""Behaviour of each video stage, on every backend (docs/stages-video.md is the contract).

Nodes are built without ``backend=``: they pick the backend from the environment the ``backend``
fixture sets, and each test checks that the stage really ran on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction

import numpy as np
import pytest

from media_nodes.audio import Gain
from media_nodes.video import ColorConvert, FrameRate, Grayscale, Resize
from stream import AudioFrame, Pipeline, VideoFrame
from stream.events import Event
from stream.manifest import from_manifest
from stream.testing import run_node, tone

from ._util import FORMATS, QUALITIES, YUV_FORMATS, frames, noise, picture, shape_of

TB = Fraction(1, 90000)


def timed(pixels: np.ndarray, fmt: str, pts: int = 3003) -> VideoFrame:
    return VideoFrame(pixels, fmt, pts, TB)


# --------------------------------------------------------------------------- Resize


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("quality", QUALITIES)
async def test_resize_gives_the_size_and_keeps_format_and_timing(
    backend: str, fmt: str, quality: str
) -> None:
    frame = timed(picture(fmt, 64, 48, "gradient"), fmt)
    node = Resize(32, 20, quality)

    [out] = await run_node(node, [frame])

    assert node.backend == backend
    assert (out.width, out.height, out.format) == (32, 20, fmt)
    assert out.pixels.shape == shape_of(fmt, 32, 20) and out.pixels.dtype == np.uint8
    assert out.pixels.flags.c_contiguous
    assert (out.pts, out.time_base) == (frame.pts, frame.time_base)


@pytest.mark.parametrize("fmt", ["rgb24", "gray"])
@pytest.mark.parametrize(("w", "h"), [(33, 17), (1, 1), (640, 3), (7, 480)])
async def test_resize_to_odd_and_extreme_sizes(backend: str, fmt: str, w: int, h: int) -> None:
    [out] = await run_node(Resize(w, h), [timed(noise(fmt, 41, 29), fmt)])
    assert out.pixels.shape == shape_of(fmt, w, h)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("quality", QUALITIES)
async def test_resize_keeps_flat_pictures_flat(backend: str, fmt: str, quality: str) -> None:
    pixels = np.full(shape_of(fmt, 50, 30), 91, np.uint8)
    [out] = await run_node(Resize(128, 72, quality), [timed(pixels, fmt)])
    assert (out.pixels == 91).all()


async def test_resize_down_then_up_keeps_smooth_content(backend: str) -> None:
    src = picture("rgb24", 320, 240, "smooth")
    nodes = [Resize(160, 120, "bicubic"), Resize(320, 240, "bicubic")]
    [out] = await Pipeline(nodes).run([timed(src, "rgb24")])
    err = np.abs(out.pixels.astype(int) - src)
    assert err.mean() < 2.0, err.mean()


async def test_resize_same_size_is_a_copy(backend: str) -> None:
    src = noise("nv12", 32, 16)
    [out] = await run_node(Resize(32, 16, "lanczos"), [timed(src, "nv12")])
    assert np.array_equal(out.pixels, src) and out.pixels is not src


async def test_resize_checkerboard_halving_follows_the_filter(backend: str) -> None:
    # 2x2 cells of 200 and 0, halved: the triangle filter widened to 2 input pixels weighs
    # 1/8, 3/8, 3/8, 1/8 per axis, so a cell keeps 3/4 of itself and takes 1/4 of its
    # neighbours per axis: 200 -> 200 * (9 + 1) / 16 = 125, 0 -> 200 * 6 / 16 = 75.
    cells = np.indices((32, 32)).sum(0) % 2
    src = (np.kron(cells, np.ones((2, 2))) * 200).astype(np.uint8)
    [out] = await run_node(Resize(32, 32, "bilinear"), [timed(src, "gray")])
    inner = out.pixels[1:-1, 1:-1]
    assert np.array_equal(inner, np.where(cells[1:-1, 1:-1] == 1, 125, 75))


# --------------------------------------------------------------------------- ColorConvert


@pytest.mark.parametrize("src", FORMATS)
@pytest.mark.parametrize("dst", FORMATS)
async def test_color_convert_every_pair(backend: str, src: str, dst: str) -> None:
    frame = timed(picture(src, 32, 24, "smooth"), src)
    node = ColorConvert(dst)

    [out] = await run_node(node, [frame])

    assert node.backend == backend
    assert (out.format, out.width, out.height) == (dst, 32, 24)
    assert out.pixels.shape == shape_of(dst, 32, 24) and out.pixels.dtype == np.uint8
    assert (out.pts, out.time_base) == (frame.pts, frame.time_base)
    if src == dst:
        assert np.array_equal(out.pixels, frame.pixels)


@pytest.mark.parametrize(
    ("rgb", "yuv"),
    [
        ((0, 0, 0), (16, 128, 128)),
        ((255, 255, 255), (235, 128, 128)),
        ((255, 0, 0), (81, 90, 240)),
        ((0, 255, 0), (145, 54, 34)),
        ((0, 0, 255), (41, 240, 110)),
        ((128, 128, 128), (126, 128, 128)),
    ],
)
async def test_color_convert_bt601_limited_range_values(
    backend: str, rgb: tuple[int, int, int], yuv: tuple[int, int, int]
) -> None:
    # The textbook BT.601 studio-swing values of black, white, the primaries and mid grey.
    pixels = np.empty((4, 6, 3), np.uint8)
    pixels[:] = rgb
    [out] = await Pipeline([ColorConvert("yuv420p")]).run([timed(pixels, "rgb24")])
    y, u, v = out.pixels[:4], out.pixels[4], out.pixels[5]
    assert (y == yuv[0]).all() and (u == yuv[1]).all() and (v == yuv[2]).all(), out.pixels
    [nv] = await Pipeline([ColorConvert("nv12")]).run([timed(pixels, "rgb24")])
    assert (nv.pixels[4:, 0::2] == yuv[1]).all() and (nv.pixels[4:, 1::2] == yuv[2]).all()
    [bgr] = await Pipeline([ColorConvert("bgr24")]).run([out])
    assert np.abs(bgr.pixels.astype(int) - rgb[::-1]).max() <= 2


async def test_color_convert_rgb_bgr_swap_exactly(backend: str) -> None:
    src = noise("rgb24", 17, 9)
    [bgr] = await run_node(ColorConvert("bgr24"), [timed(src, "rgb24")])
    assert np.array_equal(bgr.pixels, src[..., ::-1])
    [back] = await run_node(ColorConvert("rgb24"), [bgr])
    assert np.array_equal(back.pixels, src)


async def test_color_convert_yuv420p_nv12_repack_losslessly(backend: str) -> None:
    src = noise("yuv420p", 16, 8)
    [nv] = await run_node(ColorConvert("nv12"), [timed(src, "yuv420p")])
    y, u, v = src[:8], src[8:10].reshape(-1), src[10:].reshape(-1)
    assert np.array_equal(nv.pixels[:8], y)
    assert np.array_equal(nv.pixels[8:].reshape(-1, 2), np.stack([u, v], -1))
    [back] = await run_node(ColorConvert("yuv420p"), [nv])
    assert np.array_equal(back.pixels, src)


# --------------------------------------------------------------------------- Grayscale


@pytest.mark.parametrize("fmt", FORMATS)
async def test_grayscale_from_every_format(backend: str, fmt: str) -> None:
    frame = timed(picture(fmt, 20, 10, "gradient"), fmt)
    node = Grayscale()

    [out] = await run_node(node, [frame])

    assert node.backend == backend
    assert (out.format, out.pixels.shape) == ("gray", (10, 20))
    assert (out.pts, out.time_base) == (frame.pts, frame.time_base)
    [same] = await run_node(ColorConvert("gray"), [frame])
    assert np.array_equal(out.pixels, same.pixels)


async def test_grayscale_is_full_range_luma(backend: str) -> None:
    pixels = np.array(
        [[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8
    )
    [out] = await run_node(Grayscale(), [timed(pixels, "rgb24")])
    # round(0.299 * 255) = 76, round(0.587 * 255) = 150, round(0.114 * 255) = 29
    assert out.pixels.tolist() == [[0, 255, 76, 150, 29]]
    yuv = np.array([[16, 235], [16, 235], [128, 128]], np.uint8)
    [g] = await run_node(Grayscale(), [timed(yuv, "yuv420p")])
    assert g.pixels.tolist() == [[0, 255], [0, 255]]


# --------------------------------------------------------------------------- A/V streams


STAGES = {
    "resize": lambda: Resize(16, 8),
    "color_convert": lambda: ColorConvert("gray"),
    "grayscale": lambda: Grayscale(),
    "frame_rate": lambda: FrameRate(30),
}


@pytest.mark.parametrize("stage", STAGES)
async def test_audio_frames_and_events_pass_through_untouched(backend: str, stage: str) -> None:
    audio = [AudioFrame(tone(440, 0.02), 48000, i * 960, Fraction(1, 48000)) for i in range(3)]
    video = frames("yuv420p", 32, 16, 3)
    marker = Event("marker", "test", 0.0, {"n": 1})
    items = [video[0], audio[0], marker, audio[1], video[1], video[2], audio[2]]
    node = STAGES[stage]()

    out = await Pipeline([node]).run(items)

    assert node.backend == backend
    assert [o for o in out if isinstance(o, AudioFrame)] == audio  # the same objects
    assert marker in out
    assert all(isinstance(o, AudioFrame | VideoFrame | Event) for o in out)
    assert len([o for o in out if isinstance(o, VideoFrame)]) == 3


async def test_video_stages_sit_beside_audio_stages(backend: str) -> None:
    """An A/V stream through audio and video stages: each touches only its kind."""
    audio = AudioFrame(tone(440, 0.02), 48000, 0, Fraction(1, 48000))
    video = timed(noise("nv12", 64, 32), "nv12")
    pipeline = Pipeline([Gain(-6.0), Resize(32, 16), ColorConvert("rgb24"), Gain(6.0)])

    out = await pipeline.run([audio, video])

    a, v = out
    assert isinstance(a, AudioFrame) and np.allclose(a.samples, audio.samples, atol=1e-6)
    assert isinstance(v, VideoFrame) and v.pixels.shape == (16, 32, 3)
    assert [s["backend"] for s in pipeline.stages()] == [backend] * 4


async def test_video_stages_chain_with_pyav_frames(backend: str) -> None:
    """PyAV frames in, through the stages, PyAV frames out, timing intact."""
    import av

    src = av.VideoFrame.from_ndarray(picture("rgb24", 64, 48), format="rgb24")
    src = src.reformat(format="yuv420p")
    src.pts, src.time_base = 1001, Fraction(1, 30000)
    nodes = [Resize(32, 24, "lanczos"), ColorConvert("rgb24"), Grayscale()]

    [out] = await Pipeline(nodes).run([VideoFrame.from_av(src)])

    back = out.to_av()
    assert (back.width, back.height, back.format.name) == (32, 24, "gray")
    assert (back.pts, back.time_base) == (1001, Fraction(1, 30000))


# --------------------------------------------------------------------------- params


def test_params_rebuild_the_nodes() -> None:
    nodes = [
        Resize(320, 240, "lanczos"),
        ColorConvert("nv12", backend="python"),
        Grayscale(),
        FrameRate(Fraction(30000, 1001)),
        FrameRate(29.97),
    ]
    params = [n.params() for n in nodes]
    assert params == [
        {"width": 320, "height": 240, "quality": "lanczos"},
        {"format": "nv12", "backend": "python"},
        {},
        {"fps": "30000/1001"},
        {"fps": "2997/100"},
    ]
    for node, p in zip(nodes, params, strict=True):
        assert type(node)(**p).params() == p
    pipeline = Pipeline(nodes[:4], name="video")
    assert from_manifest(pipeline.to_manifest()).to_manifest() == pipeline.to_manifest()
    by_package = {
        "version": 1,
        "nodes": [{"type": "media_nodes.video:Resize", "params": params[0]}],
    }
    assert isinstance(from_manifest(by_package).nodes[0], Resize)


@pytest.mark.parametrize("fmt", YUV_FORMATS)
async def test_use_rust_false_forces_the_twin(fmt: str) -> None:
    node = Resize(16, 8)
    pipeline = Pipeline([node])
    await pipeline.run([timed(noise(fmt, 32, 16), fmt)], use_rust=False)
    assert node.backend == "python"


# --------------------------------------------------------------------------- leaks


async def test_many_frames_memory_stays_flat(backend: str) -> None:
    psutil = pytest.importorskip("psutil")
    import gc

    proc = psutil.Process()
    cam = noise("nv12", 320, 240)

    async def feed(n: int, start: int) -> AsyncIterator[VideoFrame]:
        for i in range(start, start + n):
            yield VideoFrame(cam, "nv12", i * 3000, TB)

    count = 150 if backend == "python" else 600
    p = Pipeline([Resize(160, 120), ColorConvert("rgb24"), Grayscale(), FrameRate(15)])
    async with p:
        async for _ in p.process(feed(count // 4, 0)):
            pass
        gc.collect()
        rss_warm = proc.memory_info().rss
        async for _ in p.process(feed(count, count)):
            pass
        gc.collect()
        grown = proc.memory_info().rss - rss_warm
    assert grown < 8 * 1024 * 1024, f"RSS grew {grown / 1e6:.1f} MB over {count} frames"
