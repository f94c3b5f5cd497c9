"""``TelephonySettings``: the limits and options of the phone-call and plain WebSocket routes,
checked once (ConfigError), frozen."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import ConfigError


@dataclass(frozen=True, slots=True)
class TelephonySettings:
    """What ``add_routes`` serves with.

    ``max_calls``: concurrent calls on these routes (a call past it is refused with 503 before
    the WebSocket opens; so is one while the server is not ready: stopping, draining or full).
    ``max_message_bytes``: the largest WebSocket message taken (a larger one closes the socket
    with 1009, "message too big"). ``idle_timeout``: seconds without a message before a call is
    closed. ``max_errors``: malformed messages a call may send before it is closed (each one
    before that gets an error event on ``/ws``, a log line on a provider's socket).
    ``twilio_auth_token``: when set, ``/twilio`` needs a valid ``X-Twilio-Signature`` (403
    otherwise), computed over ``public_url`` + the request's path and query (``public_url``:
    the ``wss://host`` Twilio is given; None: this request's scheme and Host header).
    ``token``: when set, ``/ws`` and ``/telnyx`` need it (``Authorization: Bearer`` or
    ``?token=``; providers cannot set headers).
    ``frame_ms``: the tick of both directions. ``margin_ms``, ``max_delay_ms``: the playout
    buffer's (``playout.py``); ``max_backlog_ms``: the outbound cap. ``lead_chunks``: chunks sent
    ahead of real time. ``barge_in``: event kinds from the pipeline that clear what is queued
    toward the caller. ``input_sample_rate``/``input_channels``: what the pipeline receives
    (None: the line's, 8 kHz mono on a phone). ``backend``: for the audio adapters.
    """

    max_calls: int = 16
    max_message_bytes: int = 65536
    idle_timeout: float = 10.0
    max_errors: int = 20
    twilio_auth_token: str | None = None
    public_url: str | None = None
    token: str | None = None
    frame_ms: float = 20.0
    margin_ms: float = 20.0
    max_delay_ms: float = 1000.0
    max_backlog_ms: float = 10000.0
    lead_chunks: int = 1
    barge_in: tuple[str, ...] = ("speech_start",)
    input_sample_rate: int | None = None
    input_channels: int | None = 1
    backend: str | None = None

    def __post_init__(self) -> None:
        def positive(name: str, value: float, lowest: float = 0.0) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}", stage="telephony")
            if not math.isfinite(value) or value <= lowest:
                raise ConfigError(
                    f"{name} must be above {lowest:g}, got {value}", stage="telephony"
                )

        positive("max_calls", self.max_calls)
        positive("max_message_bytes", self.max_message_bytes, 1024)
        positive("idle_timeout", self.idle_timeout)
        positive("max_errors", self.max_errors)
        positive("frame_ms", self.frame_ms, 1.0)
        positive("margin_ms", self.margin_ms)
        positive("max_delay_ms", self.max_delay_ms, self.margin_ms + self.frame_ms)
        positive("max_backlog_ms", self.max_backlog_ms, self.frame_ms)
        if not isinstance(self.lead_chunks, int) or not 0 <= self.lead_chunks <= 50:
            raise ConfigError("lead_chunks must be an int in 0..=50", stage="telephony")
        if self.public_url is not None and not self.public_url.startswith(("wss://", "ws://")):
            raise ConfigError("public_url must start with wss:// or ws://", stage="telephony")
        if not all(isinstance(k, str) for k in self.barge_in):
            raise ConfigError("barge_in must be event kinds (strings)", stage="telephony")


__all__ = ["TelephonySettings"]
