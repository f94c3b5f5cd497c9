"""Stages the WebRTC tests load into the server process by manifest (``webrtc.nodes:...``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.frames import VideoFrame
from stream.node import Node


class InvertVideo(Node):
    """Inverts rgb24 pictures (255 - value); hands everything else on."""

    def process(self, item: Any) -> Any:
        if isinstance(item, VideoFrame) and item.format == "rgb24":
            return VideoFrame(
                np.subtract(255, item.pixels, dtype=np.uint8), "rgb24", item.pts, item.time_base
            )
        return item

    def params(self) -> dict[str, Any]:
        return {}
