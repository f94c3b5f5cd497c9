"""PassThrough: hands every item on unchanged (audio, video or any object)."""

from __future__ import annotations

from typing import Any, ClassVar

from stream.kernel import Block, PyKernel
from stream.kernel_node import KernelNode
from stream.stage_settings import Settings

SETTINGS = Settings("PassThrough")  # nothing to set


class PassThroughKernel(PyKernel):
    """Python twin of ``stream._engine.PassThroughKernel``: returns the block itself."""

    def __init__(self, *, stage: str = "passthrough") -> None:
        super().__init__(stage=stage)

    def process(self, samples: Any, sample_rate: int) -> list[Block]:
        self.check(samples, sample_rate)
        return [samples]


class PassThrough(KernelNode):
    """Emits each input as it is. Inside a fused native segment it costs nothing."""

    native_kernel = "PassThroughKernel"
    python_kernel = PassThroughKernel
    accepts_any: ClassVar[bool] = True
    settings = SETTINGS

    def __init__(self, name: str | None = None, *, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure()

    def process(self, item: Any) -> list[Any]:
        return [item]
