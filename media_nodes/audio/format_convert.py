"""FormatConvert: moves audio between sample formats (float32/int16, planar/interleaved).

The kernel's Python twin and the settings are core: ``stream.kernels.format_convert`` (re-exported
here).
"""

from __future__ import annotations

from typing import Any, ClassVar

from stream.frames import SAMPLE_FORMATS, AudioFrame
from stream.kernel_node import KernelNode, check_audio
from stream.kernels.format_convert import SETTINGS, FormatConvertKernel


class FormatConvert(KernelNode):
    """Convert AudioFrames of any supported sample format to ``format``."""

    native_kernel = "FormatConvertKernel"
    python_kernel = FormatConvertKernel
    fusable: ClassVar[bool] = False  # it changes dtype/layout: an edge stage, run on its own
    settings = SETTINGS
    format: str

    def __init__(
        self, format: str = "fltp", *, name: str | None = None, backend: str | None = None
    ):
        super().__init__(name=name, backend=backend)
        self.configure(format=format)
        self._planar = SAMPLE_FORMATS[format][1]

    def process(self, frame: Any) -> list[Any]:
        audio = check_audio(self.name, frame, fltp=False)  # any of the four formats
        if audio is None:
            return [frame]  # video passes
        samples = self._kernel.process(audio.samples, audio.format)
        return [AudioFrame(samples, audio.sample_rate, audio.pts, audio.time_base, self._planar)]

    def flush(self) -> list[Any]:
        return []

    def cleanup(self) -> None:
        return None  # stateless: nothing to reset


__all__ = ["SETTINGS", "FormatConvert", "FormatConvertKernel"]
