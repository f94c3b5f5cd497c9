"""FormatConvertKernel, the Python twin of FormatConvert, and its SETTINGS.

Moves audio between sample formats (float32/int16, planar/interleaved).

Formats are named as PyAV names them: ``fltp`` float32 ``(channels, samples)``, ``flt`` float32
``(samples, channels)``, ``s16p`` int16 ``(channels, samples)``, ``s16`` int16
``(samples, channels)``. float to int16 is ``clip(rint(x * 32768), -32768, 32767)``; int16 to
float is ``x / 32768``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import FormatError
from ..frames import MAX_CHANNELS, SAMPLE_FORMATS
from ..kernel import KernelChecks
from ..stage_settings import REQUIRED, Setting, Settings, one_of

_FORMAT = one_of("format", SAMPLE_FORMATS)
SETTINGS = Settings(
    "FormatConvert",
    # The kernel has no default: it is built for one target, always said.
    Setting("format", "str", "fltp", _FORMAT, doc="output format", kernel_default=REQUIRED),
)


class FormatConvertKernel(KernelChecks):
    """Python twin of ``stream._engine.FormatConvertKernel`` (docs/kernels.md)."""

    def __init__(self, format: str, *, stage: str = "format_convert") -> None:
        super().__init__(stage=stage)
        self.format: str = SETTINGS.validate(stage, {"format": format}, kernel=True)["format"]

    def process(self, samples: Any, src_format: str) -> npt.NDArray[Any]:
        SETTINGS["format"].validate(self.stage, src_format)
        dtype, planar = SAMPLE_FORMATS[src_format]
        if not isinstance(samples, np.ndarray) or samples.dtype != dtype or samples.ndim != 2:
            raise self.error(
                FormatError,
                f"expected a 2-D {np.dtype(dtype).name} array for {src_format}, "
                f"got {getattr(samples, 'dtype', type(samples).__name__)} "
                f"with {getattr(samples, 'ndim', 0)} dimension(s)",
            )
        c, n = samples.shape if planar else samples.shape[::-1]
        if c == 0 or n == 0:
            raise self.error(FormatError, f"empty frame ({c} channels, {n} samples)")
        if c > MAX_CHANNELS:
            raise self.error(FormatError, f"too many channels ({c}; at most {MAX_CHANNELS})")
        planar_in = samples if planar else samples.T
        if dtype == np.float32:
            finite = np.isfinite(planar_in)
            if not finite.all():
                c, i = np.argwhere(~finite)[0]
                raise self.error(FormatError, f"non-finite sample at channel {c}, index {i}")
        out_dtype, out_planar = SAMPLE_FORMATS[self.format]
        if dtype == out_dtype:
            converted = planar_in
        elif out_dtype == np.int16:
            converted = np.clip(np.rint(planar_in * np.float32(32768.0)), -32768, 32767)
        else:
            converted = planar_in * np.float32(1.0 / 32768.0)
        result = converted if out_planar else converted.T
        return np.ascontiguousarray(result, dtype=out_dtype)


__all__ = ["SETTINGS", "FormatConvertKernel"]
