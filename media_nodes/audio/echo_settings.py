"""EchoCancel's settings, one definition (stream.stage_settings) for the node and its kernels.

Apart from ``echo_cancel.py`` so the kernel twins (``kalman_kernel.py``: ours;
``echo_cancel_kernel.py``: Speex; ``aec3_kernel.py``: AEC3) and the node can all take it without
importing each other. ``SETTINGS`` is the node's (and Speex's kernel's: ``filter_ms``,
``frame_ms``); ``KALMAN_SETTINGS`` the Kalman kernel's (the same two); ``AEC3_SETTINGS`` the AEC3
kernel's (``frame_ms`` only, a multiple of AEC3's 10 ms), the check the node's ``relate`` applies
when ``algorithm="aec3"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from stream.stage_settings import Invalid, Setting, Settings, as_number, in_range, one_of

FILTER_MS = (10.0, 2000.0)
FRAME_MS = (2.0, 100.0)
#: ``frame_ms`` with AEC3: a whole number of its 10 ms sub-frames, one to ten.
AEC3_FRAME_MS = (10.0, 100.0)
AEC3_SUB_FRAME_MS = 10
STALL_MS = (0.0, 60000.0)
DELAY_MS = (0.0, 10000.0)
#: ``delay_ms="auto"``: the bulk delay is estimated from the signals
AUTO = "auto"
#: ``algorithm``: our frequency-domain Kalman canceller (kalman_aec.py, the default), WebRTC's
#: AEC3, or Speex's MDF
AEC3, SPEEX, KALMAN = "aec3", "speex", "kalman"
ALGORITHMS = (AEC3, SPEEX, KALMAN)


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


def aec3_frame_ms(value: Any) -> float:
    """``frame_ms`` as AEC3 takes it (both AEC3 twins say the same words)."""
    v = as_number("frame_ms", value)
    lo, hi = AEC3_FRAME_MS
    if not (math.isfinite(v) and lo <= v <= hi and v % AEC3_SUB_FRAME_MS == 0):
        raise Invalid(f"frame_ms must be a multiple of 10.0 in [{lo}, {hi}], got {v!r}")
    return v


def _relate(values: dict[str, Any]) -> None:
    # The kernels' validation sees no algorithm: Speex's kernel keeps its own range alone.
    if values.get("algorithm") == AEC3:
        aec3_frame_ms(values["frame_ms"])


SETTINGS = Settings(
    "EchoCancel",
    Setting(
        "filter_ms",
        "float",
        200.0,
        _range("filter_ms", FILTER_MS),
        doc="longest echo path modelled (Speex, Kalman; AEC3 sizes its own filters)",
    ),
    Setting(
        "frame_ms",
        "float",
        20.0,
        _range("frame_ms", FRAME_MS),
        doc="the kernel's frame (with AEC3 a multiple of 10 ms)",
    ),
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
    Setting(
        "algorithm",
        "str",
        KALMAN,
        one_of("algorithm", ALGORITHMS),
        doc="the canceller: 'kalman' (ours), 'aec3' (WebRTC's AEC3) or 'speex' (Speex's MDF)",
        kernel=False,
    ),
    relate=_relate,
)

#: The AEC3 kernel's settings (``Aec3Kernel``, both twins): the frame only.
AEC3_SETTINGS = Settings(
    "Aec3Kernel",
    Setting(
        "frame_ms",
        "float",
        20.0,
        aec3_frame_ms,
        doc="the emitted frame (a multiple of AEC3's 10 ms)",
    ),
)

__all__ = [
    "AEC3",
    "AEC3_FRAME_MS",
    "AEC3_SETTINGS",
    "ALGORITHMS",
    "AUTO",
    "DELAY_MS",
    "FILTER_MS",
    "FRAME_MS",
    "SETTINGS",
    "SPEEX",
    "STALL_MS",
    "aec3_frame_ms",
]

#: The Kalman canceller's settings (``KalmanAecKernel``, both twins): the echo path modelled and
#: the emitted frame, the ranges of EchoCancel's.
KALMAN_SETTINGS = Settings(
    "KalmanAecKernel",
    Setting("filter_ms", "float", 200.0, _range("filter_ms", FILTER_MS), doc="echo path modelled"),
    Setting("frame_ms", "float", 20.0, _range("frame_ms", FRAME_MS), doc="the emitted frame"),
)
