"""Property tests: the Rust video kernels and their Python twins agree within the tolerances of
docs/stages-video.md, over random sizes (odd widths where the format allows), formats, filters,
contents and timestamps.

Needs the engine: only the Python-only session (``REMOTEMEDIA_RUNTIME=python``) skips this module.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest

if os.environ.get("REMOTEMEDIA_RUNTIME") == "python":
    pytest.skip("Python-only session: parity needs the Rust engine", allow_module_level=True)

from hypothesis import given, settings
from hypothesis import strategies as st

import media_nodes.video as py
from stream import _engine as rs

from ._util import FORMATS, QUALITIES, RESIZE_PARITY_MAX, YUV_FORMATS, diff, shape_of

SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def pictures(draw: st.DrawFn, formats: list[str] = FORMATS, max_side: int = 80) -> tuple:
    """``(format, pixels)``: noise, flat, extremes, smooth or stripes content, of any size the
    format allows."""
    fmt = draw(st.sampled_from(formats))
    even = fmt in YUV_FORMATS
    w = draw(st.integers(1, max_side // (2 if even else 1))) * (2 if even else 1)
    h = draw(st.integers(1, max_side // (2 if even else 1))) * (2 if even else 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = shape_of(fmt, w, h)
    kind = draw(st.sampled_from(["noise", "flat", "extremes", "smooth", "stripes"]))
    if kind == "noise":
        x = rng.integers(0, 256, shape)
    elif kind == "flat":
        x = np.full(shape, rng.integers(0, 256))
    elif kind == "extremes":
        x = rng.choice([0, 255], shape)
    elif kind == "smooth":
        ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * rng.uniform(0.1, 4)
        x = ramp.reshape(shape[:2] + (1,) * (len(shape) - 2)) + rng.integers(0, 60, shape)
    else:
        x = (np.arange(shape[1]) % rng.integers(2, 5) == 0)[None] * 255 * np.ones(shape[:2])
        x = x.reshape(shape[:2] + (1,) * (len(shape) - 2)) * np.ones(shape)
    return fmt, (np.asarray(x) % 256).astype(np.uint8)


@SETTINGS
@given(
    pictures(),
    st.integers(1, 100),
    st.integers(1, 100),
    st.sampled_from(QUALITIES),
)
def test_resize_matches(pic: tuple, w: int, h: int, quality: str) -> None:
    fmt, pixels = pic
    if fmt in YUV_FORMATS:
        w, h = w + w % 2, h + h % 2
    a = rs.ResizeKernel(w, h, quality).process(pixels, fmt)
    b = py.ResizeKernel(w, h, quality).process(pixels, fmt)
    assert a.shape == b.shape == shape_of(fmt, w, h)
    assert a.dtype == b.dtype == np.uint8
    assert diff(a, b)[0] <= RESIZE_PARITY_MAX


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize(("w", "h"), [(1280, 720), (640, 480), (320, 180), (1920, 1080), (101, 77)])
def test_resize_matches_on_video_sizes(quality: str, w: int, h: int) -> None:
    rng = np.random.default_rng(w * h)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    a = rs.ResizeKernel(w, h, quality).process(pixels, "rgb24")
    b = py.ResizeKernel(w, h, quality).process(pixels, "rgb24")
    assert diff(a, b)[0] <= RESIZE_PARITY_MAX


@SETTINGS
@given(pictures(), st.sampled_from(FORMATS))
def test_color_convert_is_identical(pic: tuple, to: str) -> None:
    fmt, pixels = pic
    h, w = pixels.shape[:2]
    if to in YUV_FORMATS and fmt not in YUV_FORMATS:
        pixels = pixels[: h - h % 2, : w - w % 2]  # a 4:2:0 target needs an even size
        if pixels.size == 0:
            return
    a = rs.ColorConvertKernel(to).process(pixels, fmt)
    b = py.ColorConvertKernel(to).process(pixels, fmt)
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    assert np.array_equal(a, b)


@SETTINGS
@given(pictures())
def test_grayscale_is_identical(pic: tuple) -> None:
    fmt, pixels = pic
    a = rs.GrayscaleKernel().process(pixels, fmt)
    b = py.GrayscaleKernel().process(pixels, fmt)
    assert np.array_equal(a, b)


fps_values = st.one_of(
    st.integers(1, 240),
    st.sampled_from([Fraction(30000, 1001), Fraction(24000, 1001), Fraction(1, 2), 29.97, 12.5]),
)
time_bases = st.sampled_from(
    [
        Fraction(1, 30),
        Fraction(1, 90000),
        Fraction(1, 1000),
        Fraction(1001, 30000),
        Fraction(1, 48000),
    ]
)


@SETTINGS
@given(
    fps_values,
    time_bases,
    st.lists(st.integers(-5000, 200000), min_size=1, max_size=60),
    st.booleans(),
    st.integers(-(10**9), 10**9),
)
def test_frame_rate_is_identical(
    fps: object, tb: Fraction, steps: list[int], monotonic: bool, origin: int
) -> None:
    """Same (start, count) for every frame and at the end, on any timestamps: regular,
    jittered, repeated or going backwards."""
    pts = list(np.cumsum(np.abs(steps) if monotonic else steps) + origin)
    a, b = rs.FrameRateKernel(fps), py.FrameRateKernel(fps)
    assert a.fps == b.fps and a.time_base == b.time_base
    for p in pts:
        assert a.process(int(p), tb) == b.process(int(p), tb)
    assert a.flush() == b.flush()
    assert a.flush() == b.flush() == (0, 0)
