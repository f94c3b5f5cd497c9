"""A stage the metrics tests load by manifest (``webrtc.metrics_nodes:Busy``) or directly."""

from __future__ import annotations

import time
from typing import Any

from stream.node import Node


class Busy(Node):
    """Hands each item on after being busy for ``ms`` milliseconds (a spin, not a sleep: its
    time in ``process()`` is at least that, whatever the load)."""

    def __init__(self, ms: float = 1.0, name: str | None = None) -> None:
        super().__init__(name=name)
        self.ms = ms

    def process(self, item: Any) -> Any:
        end = time.perf_counter_ns() + int(self.ms * 1e6)
        while time.perf_counter_ns() < end:
            pass
        return item
