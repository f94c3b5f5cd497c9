"""EchoCancel's settings, one definition (stream.stage_settings) for the node and both kernels.

Apart from ``echo_cancel.py`` so the kernel twin (``echo_cancel_kernel.py``) and the node can
both take it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream.stage_settings import Invalid, Setting, Settings, in_range

FILTER_MS = (10.0, 2000.0)
FRAME_MS = (2.0, 100.0)
STALL_MS = (0.0, 60000.0)
DELAY_MS = (0.0, 10000.0)
#: ``delay_ms="auto"``: the bulk delay is estimated from the signals
AUTO = "auto"


def _range(name: str, bounds: tuple[float, float]) -> Callable[[Any], float]:
    # The message shows the bounds as floats ("[10.0, 2000.0]"), as both kernels always have.
    return in_range(name, *bounds, shown=f"a number in [{bounds[0]}, {bounds[1]}]")


_DELAY = _range("delay_ms", DELAY_MS)


def _delay_ms(value: Any) -> float | str | None:
    if value is None or value == AUTO:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        raise Invalid(
            f"delay_ms must be a number in [{DELAY_MS[0]}, {DELAY_MS[1]}] or {AUTO!r}, "
            f"got {value!r}"
        )
    return _DELAY(value)


SETTINGS = Settings(
    "EchoCancel",
    Setting(
        "filter_ms",
        "float",
        200.0,
        _range("filter_ms", FILTER_MS),
        doc="longest echo path modelled",
    ),
    Setting("frame_ms", "float", 20.0, _range("frame_ms", FRAME_MS), doc="the kernel's frame"),
    Setting(
        "stall_ms",
        "float",
        50.0,
        _range("stall_ms", STALL_MS),
        doc="how long a near-end frame waits for reference audio",
        kernel=False,
    ),
    Setting(
        "delay_ms",
        "float | str | None",
        None,
        _delay_ms,
        doc="bulk delay of the echo path, or 'auto' (None: 'auto' for 'peer', else 0)",
        kernel=False,
    ),
)

__all__ = ["AUTO", "DELAY_MS", "FILTER_MS", "FRAME_MS", "SETTINGS", "STALL_MS"]
