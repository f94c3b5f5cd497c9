"""Events: what stages detect (speech start/end, levels, stats) flows beside the media.

A stage emits an ``Event`` by returning or yielding it among its outputs. Stages that do not
declare ``accepts_events = True`` never see events: the pipeline hands them on around the stage,
in order with the frames at that point. Events reach the consumer of ``Pipeline.process()`` in
order with the frames, and ``Pipeline.on_event(callback, kind=None)`` subscribes to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The kind of event a live source emits where its frames' clock moved against the media they
#: carry: a playout buffer concealed an underrun with audio of its own (``shift_ms`` > 0) or
#: dropped audio to shrink its delay (< 0). The frames after it carry the peer's media
#: ``shift_ms`` later than the frames before did; ``EchoCancel`` keeps the echo where it learnt it.
PLAYOUT_SHIFT = "playout_shift"


@dataclass(slots=True, frozen=True)
class Event:
    """Something a stage detected.

    ``kind``: what happened (``"speech_start"``, ``"speech_end"``, ``"level"`` ...); ``stage``: the
    name of the stage that emitted it; ``time``: media time in seconds of the audio or video it is
    about (None when untimed); ``payload``: JSON-ready details.
    """

    kind: str
    stage: str
    time: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"type": "event", "kind", "stage", "time", "payload"}``."""
        return {
            "type": "event",
            "kind": self.kind,
            "stage": self.stage,
            "time": self.time,
            "payload": self.payload,
        }


__all__ = ["PLAYOUT_SHIFT", "Event"]
