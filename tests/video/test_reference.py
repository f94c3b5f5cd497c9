"""The video kernels against PyAV's swscale and against themselves (round trips), on every
backend, within the tolerances docs/stages-video.md states."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from ._util import (
    SWSCALE_CHROMA_MAX,
    SWSCALE_CHROMA_MEAN,
    SWSCALE_LUMA_MAX,
    SWSCALE_RESIZE_MAX,
    SWSCALE_RESIZE_MEAN,
    SWSCALE_TO_RGB_MAX,
    SWSCALE_TO_RGB_MEAN,
    YUV_FORMATS,
    av_convert,
    av_resize,
    av_to_rgb,
    diff,
    gradient_rgb,
    picture,
    smooth_rgb,
)

SIZES = [(64, 48), (640, 480), (1280, 720)]


@pytest.mark.parametrize(("w", "h"), SIZES)
@pytest.mark.parametrize("to", ["yuv420p", "nv12", "gray"])
@pytest.mark.parametrize("kind", ["smooth", "gradient", "noise"])
def test_from_rgb_matches_swscale(kernels: ModuleType, w: int, h: int, to: str, kind: str) -> None:
    rgb = picture("rgb24", w, h, kind)
    ours = kernels.ColorConvertKernel(to).process(rgb, "rgb24")
    theirs = av_convert(rgb, "rgb24", to)
    assert diff(ours[:h], theirs[:h])[0] <= SWSCALE_LUMA_MAX  # Y, or gray
    if kind != "noise":
        # swscale filters chroma vertically over more than the 2x2 block: on noise the chroma
        # planes differ by up to ~33 levels, on real pictures by a few.
        worst, mean = diff(ours, theirs)
        assert worst <= SWSCALE_CHROMA_MAX and mean <= SWSCALE_CHROMA_MEAN, (worst, mean)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert np.array_equal(kernels.ColorConvertKernel(to).process(bgr, "bgr24"), ours)


@pytest.mark.parametrize(("w", "h"), SIZES)
@pytest.mark.parametrize("src", YUV_FORMATS)
@pytest.mark.parametrize("to", ["rgb24", "bgr24", "gray"])
def test_from_yuv_matches_swscale(kernels: ModuleType, w: int, h: int, src: str, to: str) -> None:
    yuv = picture(src, w, h, "smooth")
    ours = kernels.ColorConvertKernel(to).process(yuv, src)
    theirs = av_to_rgb(yuv, src, to)
    worst, mean = diff(ours, theirs)
    assert worst <= SWSCALE_TO_RGB_MAX and mean <= SWSCALE_TO_RGB_MEAN, (worst, mean)
    if to == "gray":
        assert np.array_equal(ours, av_convert(yuv, src, to))  # measured: identical


@pytest.mark.parametrize("cell", [8, 32])
def test_rgb_yuv_rgb_round_trip_is_as_good_as_swscale(kernels: ModuleType, cell: int) -> None:
    rgb = smooth_rgb(320, 240, cell=cell, seed=3)
    to_yuv, to_rgb = kernels.ColorConvertKernel("yuv420p"), kernels.ColorConvertKernel("rgb24")
    ours = diff(to_rgb.process(to_yuv.process(rgb, "rgb24"), "yuv420p"), rgb)
    swscale = diff(av_convert(av_convert(rgb, "rgb24", "yuv420p"), "yuv420p", "rgb24"), rgb)
    # 4:2:0 drops chroma detail; on smooth content both lose about the same.
    assert ours[1] <= swscale[1] * 1.1 + 0.1, (ours, swscale)
    assert ours[0] <= swscale[0] + 2, (ours, swscale)


def test_round_trip_of_flat_2x2_blocks_only_rounds(kernels: ModuleType) -> None:
    # Chroma constant over each 2x2 block: 4:2:0 loses nothing but limited-range rounding.
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    for via in YUV_FORMATS:
        yuv = kernels.ColorConvertKernel(via).process(rgb, "rgb24")
        back = kernels.ColorConvertKernel("rgb24").process(yuv, via)
        worst, mean = diff(back, rgb)
        assert worst <= 3 and mean <= 1.0, (via, worst, mean)
    # Inside the gamut a grey ramp comes back within a level.
    grey = gradient_rgb(256, 2)
    grey[...] = grey[..., :1]
    yuv = kernels.ColorConvertKernel("nv12").process(np.ascontiguousarray(grey), "rgb24")
    assert diff(kernels.ColorConvertKernel("rgb24").process(yuv, "nv12"), grey)[0] <= 1


@pytest.mark.parametrize(
    ("quality", "interpolation"),
    [("bilinear", "BILINEAR"), ("bicubic", "BICUBIC"), ("lanczos", "LANCZOS")],
)
@pytest.mark.parametrize(("w", "h"), [(160, 120), (320, 240), (400, 300), (1280, 720)])
@pytest.mark.parametrize("fmt", ["rgb24", "gray", "yuv420p"])
def test_resize_matches_swscale_on_smooth_pictures(
    kernels: ModuleType, quality: str, interpolation: str, w: int, h: int, fmt: str
) -> None:
    # Features about 16 px across; on sharp edges the filters' details differ more.
    src = picture(fmt, 640, 480, "smooth")
    ours = kernels.ResizeKernel(w, h, quality).process(src, fmt)
    theirs = av_resize(src, fmt, w, h, interpolation)
    worst, mean = diff(ours, theirs)
    assert worst <= SWSCALE_RESIZE_MAX and mean <= SWSCALE_RESIZE_MEAN, (worst, mean)
