"""Bad input and bad settings of the video stages: typed errors naming the stage, with the same
messages on every backend (docs/stages-video.md), and NodeError through a pipeline."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from media_nodes.video import ColorConvert, FrameRate, Grayscale, Resize
from stream import NodeError, Pipeline, VideoFrame
from stream.errors import BackendUnavailable, ConfigError, FormatError, StreamError

from ._util import noise

PICTURE_KERNELS: dict[str, Callable[[ModuleType], Any]] = {
    "resize": lambda k: k.ResizeKernel(8, 6, stage="rs"),
    "color_convert": lambda k: k.ColorConvertKernel("rgb24", stage="rs"),
    "grayscale": lambda k: k.GrayscaleKernel(stage="rs"),
}
LAYOUT = "(height * 3 // 2, width)"
SUPPORTED = "['rgb24', 'bgr24', 'gray', 'yuv420p', 'nv12']"


def check(exc: StreamError, stage: str, message: str) -> None:
    assert exc.stage == stage
    assert str(exc) == f"{stage}: {message}"


@pytest.mark.parametrize("kernel", PICTURE_KERNELS)
@pytest.mark.parametrize(
    ("pixels", "fmt", "message"),
    [
        (
            noise("gray", 4, 4),
            "rgba",
            f"unsupported pixel format 'rgba'; supported: {SUPPORTED}",
        ),
        (noise("gray", 4, 4), None, f"unsupported pixel format None; supported: {SUPPORTED}"),
        (
            np.zeros((4, 4, 3), np.float32),
            "rgb24",
            "expected a uint8 array of shape (height, width, 3) for rgb24, "
            "got float32 with 3 dimension(s)",
        ),
        (
            np.zeros((4, 4), np.uint8),
            "bgr24",
            "expected a uint8 array of shape (height, width, 3) for bgr24, "
            "got uint8 with 2 dimension(s)",
        ),
        (
            [[1, 2], [3, 4]],
            "gray",
            "expected a uint8 array of shape (height, width) for gray, "
            "got list with 0 dimension(s)",
        ),
        (
            np.zeros((4, 4, 4), np.uint8),
            "rgb24",
            "expected a uint8 array of shape (height, width, 3) for rgb24, got shape (4, 4, 4)",
        ),
        (
            np.zeros((5, 4), np.uint8),
            "yuv420p",
            f"expected a uint8 array of shape {LAYOUT} for yuv420p, got shape (5, 4)",
        ),
        (np.zeros((0, 4), np.uint8), "gray", "empty picture (4x0)"),
        (np.zeros((3, 0, 3), np.uint8), "rgb24", "empty picture (0x3)"),
        (np.zeros((6, 5), np.uint8), "nv12", "nv12 needs an even width and height, got 5x4"),
        (np.zeros((6, 3), np.uint8), "yuv420p", "yuv420p needs an even width and height, got 3x4"),
    ],
)
def test_picture_checks_in_contract_order(
    kernels: ModuleType, kernel: str, pixels: Any, fmt: Any, message: str
) -> None:
    k = PICTURE_KERNELS[kernel](kernels)
    with pytest.raises(FormatError) as info:
        k.process(pixels, fmt)
    check(info.value, "rs", message)


@pytest.mark.parametrize("kernel", PICTURE_KERNELS)
def test_strided_input_is_accepted(kernels: ModuleType, kernel: str) -> None:
    k = PICTURE_KERNELS[kernel](kernels)
    big = noise("rgb24", 32, 24)
    strided = big[::2, ::2]
    assert not strided.flags.c_contiguous
    a = k.process(strided, "rgb24")
    b = k.process(np.ascontiguousarray(strided), "rgb24")
    assert np.array_equal(a, b)
    fortran = np.asfortranarray(noise("gray", 9, 7))
    assert np.array_equal(
        k.process(fortran, "gray"), k.process(np.ascontiguousarray(fortran), "gray")
    )


def test_odd_targets_for_4_2_0(kernels: ModuleType) -> None:
    with pytest.raises(FormatError) as info:
        kernels.ResizeKernel(9, 6, stage="rs").process(noise("yuv420p", 8, 4), "yuv420p")
    check(info.value, "rs", "cannot resize yuv420p to 9x6: 4:2:0 needs an even width and height")
    with pytest.raises(FormatError) as info:
        kernels.ColorConvertKernel("nv12", stage="cc").process(noise("rgb24", 5, 4), "rgb24")
    check(
        info.value,
        "cc",
        "cannot convert a 5x4 picture to nv12: 4:2:0 needs an even width and height",
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: k.ResizeKernel(0, 4, stage="s"), "width must be an int from 1 to 16384, got 0"),
        (
            lambda k: k.ResizeKernel(4, 16385, stage="s"),
            "height must be an int from 1 to 16384, got 16385",
        ),
        (lambda k: k.ResizeKernel(4.0, 4, stage="s"), "width must be an int, got 4.0"),
        (lambda k: k.ResizeKernel(4, "4", stage="s"), "height must be an int, got '4'"),
        (
            lambda k: k.ResizeKernel(4, 4, "area", stage="s"),
            "quality must be one of ['nearest', 'bilinear', 'bicubic', 'lanczos'], got 'area'",
        ),
        (
            lambda k: k.ResizeKernel(4, 4, 3, stage="s"),
            "quality must be one of ['nearest', 'bilinear', 'bicubic', 'lanczos'], got 3",
        ),
        (
            lambda k: k.ColorConvertKernel("rgba", stage="s"),
            f"format must be one of {SUPPORTED}, got 'rgba'",
        ),
        (
            lambda k: k.ColorConvertKernel(None, stage="s"),
            f"format must be one of {SUPPORTED}, got None",
        ),
        (
            lambda k: k.FrameRateKernel(0, stage="s"),
            "fps must be above 0 and at most 1000, with numerator and denominator at most "
            "1048576, got 0",
        ),
        (
            lambda k: k.FrameRateKernel(-30, stage="s"),
            "fps must be above 0 and at most 1000, with numerator and denominator at most "
            "1048576, got -30",
        ),
        (
            lambda k: k.FrameRateKernel(1001, stage="s"),
            "fps must be above 0 and at most 1000, with numerator and denominator at most "
            "1048576, got 1001",
        ),
        (
            lambda k: k.FrameRateKernel(Fraction(1, 2**21), stage="s"),
            "fps must be above 0 and at most 1000, with numerator and denominator at most "
            "1048576, got 1/2097152",
        ),
        (
            lambda k: k.FrameRateKernel(2**70, stage="s"),
            "fps must be above 0 and at most 1000, with numerator and denominator at most "
            f"1048576, got {2**70}",
        ),
        (
            lambda k: k.FrameRateKernel("fast", stage="s"),
            "fps must be a number (an int, float, Fraction or 'num/den' string), got 'fast'",
        ),
        (
            lambda k: k.FrameRateKernel(float("nan"), stage="s"),
            "fps must be a number (an int, float, Fraction or 'num/den' string), got nan",
        ),
        (
            lambda k: k.FrameRateKernel(None, stage="s"),
            "fps must be a number (an int, float, Fraction or 'num/den' string), got None",
        ),
    ],
)
def test_kernel_settings_are_config_errors(
    kernels: ModuleType, make: Callable[[ModuleType], Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make(kernels)
    check(info.value, "s", message)


def test_fps_forms(kernels: ModuleType) -> None:
    for fps, expected in [
        (30, Fraction(30)),
        (29.97, Fraction(2997, 100)),
        (23.976, Fraction(2997, 125)),
        (Fraction(30000, 1001), Fraction(30000, 1001)),
        ("30000/1001", Fraction(30000, 1001)),
        (np.int64(25), Fraction(25)),
    ]:
        k = kernels.FrameRateKernel(fps)
        assert k.fps == expected and k.time_base == 1 / expected


@pytest.mark.parametrize(
    ("pts", "tb", "message"),
    [
        (1.5, Fraction(1, 30), "pts must be an int in the int64 range, got 1.5"),
        (None, Fraction(1, 30), "pts must be an int in the int64 range, got None"),
        (2**63, Fraction(1, 30), f"pts must be an int in the int64 range, got {2**63}"),
        (0, None, "time_base must be a Fraction with int64 terms, got None"),
        (0, 0.5, "time_base must be a Fraction with int64 terms, got 0.5"),
        (
            0,
            Fraction(1, 2**31),
            "invalid time base 1/2147483648: numerator and denominator must be in 1..=2147483647",
        ),
        (0, 0, "invalid time base 0: numerator and denominator must be in 1..=2147483647"),
        (
            2**62,
            Fraction(1, 1),
            f"pts {2**62} is out of range: its output pts is beyond +-2**62",
        ),
    ],
)
def test_frame_rate_timestamp_checks(kernels: ModuleType, pts: Any, tb: Any, message: str) -> None:
    k = kernels.FrameRateKernel(30, stage="fr")
    with pytest.raises(FormatError) as info:
        k.process(pts, tb)
    check(info.value, "fr", message)
    assert k.process(0, Fraction(1, 30)) == (0, 0)  # the stream is still usable


# --------------------------------------------------------------------------- nodes


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Resize(0, 10, name="n"), "width must be an int from 1 to 16384, got 0"),
        (
            lambda: Resize(10, 10, "fast", name="n"),
            "quality must be one of ['nearest', 'bilinear', 'bicubic', 'lanczos'], got 'fast'",
        ),
        (
            lambda: ColorConvert("yuv444p", name="n"),
            f"format must be one of {SUPPORTED}, got 'yuv444p'",
        ),
        (
            lambda: FrameRate(0, name="n"),
            "fps must be above 0 and at most 1000, with numerator and denominator at most "
            "1048576, got 0",
        ),
    ],
)
def test_node_settings_are_config_errors_at_construction(
    make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    check(info.value, "n", message)


def test_bad_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Grayscale(backend="gpu")


def test_rust_asked_for_without_engine_support_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import stream.engine as engine

    monkeypatch.setattr(engine, "_engine", None)
    node = Resize(4, 4, backend="rust", name="r")
    with pytest.raises(BackendUnavailable):
        node.initialize()


async def test_bad_frames_end_the_stream_with_node_errors(backend: str) -> None:
    good = VideoFrame(noise("yuv420p", 8, 4), "yuv420p", 0, Fraction(1, 30))
    odd = VideoFrame(np.zeros((6, 4), np.uint8), "nv12", 1, Fraction(1, 30))
    odd.pixels = np.zeros((6, 5), np.uint8)  # an odd width, set after construction
    with pytest.raises(NodeError) as info:
        await Pipeline([Resize(4, 2, name="rs")]).run([good, odd])
    err = info.value
    assert (err.stage, err.index) == ("rs", 1)
    assert isinstance(err.__cause__, FormatError)
    assert "nv12 needs an even width and height, got 5x4" in str(err)


@pytest.mark.parametrize(
    "make", [lambda: Resize(4, 4), lambda: ColorConvert("gray"), Grayscale, lambda: FrameRate(30)]
)
async def test_non_frames_are_format_errors(backend: str, make: Callable[[], Any]) -> None:
    node = make()
    with pytest.raises(NodeError) as info:
        await Pipeline([node]).run(["not a frame"])
    cause = info.value.__cause__
    assert isinstance(cause, FormatError)
    check(cause, node.name, "expected a VideoFrame, got str")


@pytest.mark.parametrize(
    "make", [lambda: Resize(4, 4), lambda: ColorConvert("gray"), Grayscale, lambda: FrameRate(30)]
)
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pixels", np.zeros((6, 8, 3), np.float32), "got float32 with 3 dimension(s)"),
        ("pixels", np.zeros((0, 8), np.uint8), "empty picture (8x0)"),
        ("format", "rgba", "unsupported pixel format 'rgba'"),
        ("pts", 2.5, "pts must be an int or None, got 2.5"),
        ("time_base", 0.5, "time_base must be a Fraction above 0 or None, got 0.5"),
    ],
)
async def test_frames_changed_after_construction_name_the_stage(
    backend: str, make: Callable[[], Any], field: str, value: Any, message: str
) -> None:
    """Frames are mutable, so each video stage checks what it is handed: FrameRate used to hold
    and repeat any pixels, and every stage passed a float pts on to its outputs."""
    frames = [
        VideoFrame(noise("gray", 8, 6, i), "gray", i * 3000, Fraction(1, 90000)) for i in range(4)
    ]
    setattr(frames[2], field, value)
    node = make()
    with pytest.raises(NodeError) as info:
        await Pipeline([node]).run(frames)
    assert node.backend == backend
    assert (info.value.stage, info.value.index) == (node.name, 2)
    cause = info.value.__cause__
    assert isinstance(cause, FormatError) and cause.stage == node.name
    assert str(cause).startswith(f"{node.name}: ") and message in str(cause)
