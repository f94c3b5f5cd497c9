"""Bad settings are ConfigErrors naming the stage, alike on both kernels and on the nodes."""

from __future__ import annotations

import os
from typing import Any

import pytest

import media_nodes.audio as twins
from media_nodes import ChannelMix, FormatConvert, Gain, Rebuffer, Resample
from stream import ConfigError

BAD_KERNEL_ARGS: list[tuple[str, dict[str, Any]]] = [
    ("GainKernel", {"gain_db": float("nan")}),
    ("GainKernel", {"gain_db": 0.0, "ramp_ms": -1.0}),
    ("GainKernel", {"gain_db": 800.0}),
    ("ChannelMixKernel", {"channels": 0}),
    ("FormatConvertKernel", {"format": "s24"}),
    ("ResampleKernel", {"sample_rate": 500}),
    ("RebufferKernel", {}),
    ("RebufferKernel", {"samples": 0}),
    ("RebufferKernel", {"samples": 10, "frame_ms": 20.0}),
]


def _kernel_classes(name: str) -> list[Any]:
    classes = [getattr(twins, name)]
    if os.environ.get("REMOTEMEDIA_RUNTIME") != "python":
        from stream import _engine

        classes.append(getattr(_engine, name))
    return classes


@pytest.mark.parametrize(("name", "kwargs"), BAD_KERNEL_ARGS)
def test_kernel_config_errors_name_the_stage(name: str, kwargs: dict[str, Any]) -> None:
    for cls in _kernel_classes(name):
        with pytest.raises(ConfigError) as info:
            cls(**kwargs, stage="the_stage")
        assert str(info.value).startswith("the_stage: "), (cls, str(info.value))
        assert info.value.stage == "the_stage"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Gain(float("inf"), name="n"),
        lambda: ChannelMix(65, name="n"),
        lambda: FormatConvert("u8", name="n"),
        lambda: Resample(1_000_000, name="n"),
        lambda: Rebuffer(name="n"),
        lambda: Rebuffer(samples=True, name="n"),  # a bool is not a count
        lambda: ChannelMix(True, name="n"),
    ],
)
def test_node_config_errors_name_the_node(make: Any) -> None:
    with pytest.raises(ConfigError, match=r"^n: ") as info:
        make()
    assert info.value.stage == "n"
