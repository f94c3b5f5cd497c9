"""The one error tree of RemoteMedia; the Rust engine raises these same classes.

::

    StreamError                    base of every error the runtime raises on purpose
    +-- ConfigError (ValueError)   bad settings: caught at construction or initialize()
    |   +-- ManifestError          a pipeline manifest that cannot build: ``problems`` lists each
    +-- FormatError (ValueError)   bad data: dtype, shape, rate/channel mismatch, empty, non-finite
    +-- BackendUnavailable         backend="rust" asked for, but the engine is not built
    +-- EngineError                the native engine failed internally (a Rust panic, caught)
    +-- NodeError                  a stage failed mid-stream: names the stage and the frame index,
    |                              chained (``__cause__``) from the error the stage raised
    +-- TransportError             network transports (WebRTC, signaling)

Errors raised inside a stage carry ``stage`` (the stage's name) when it is known, so a failure
inside a fused native segment still names the stage that failed.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every RemoteMedia error."""

    stage: str | None = None


class ConfigError(StreamError, ValueError):
    """Invalid settings for a stage or pipeline."""


class ManifestError(ConfigError):
    """A pipeline manifest that cannot build; ``problems`` lists each one with its location."""

    def __init__(self, problems: list[str], source: str = "manifest") -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = problems
        self.source = source

    def __reduce__(self) -> tuple[type[ManifestError], tuple[list[str], str]]:
        # pickled across worker processes: rebuild from the parts, not from the joined message
        return (type(self), (self.problems, self.source))


class FormatError(StreamError, ValueError):
    """Input data a stage cannot take: dtype, layout, shape, rate, channels, empty, non-finite."""


class BackendUnavailable(StreamError):
    """The requested backend cannot run here (for example the Rust engine is not built)."""


class EngineError(StreamError):
    """The native engine failed internally; a Rust panic surfaces as this, never as an abort."""


class TransportError(StreamError):
    """A network transport failed."""


class NodeError(StreamError):
    """A stage raised while processing; names the stage and the index of the frame it was on."""

    def __init__(self, stage: str, index: int | None, message: str) -> None:
        where = f"stage {stage!r}" + (f" at frame {index}" if index is not None else "")
        super().__init__(f"{where}: {message}")
        self.stage = stage
        self.index = index


__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "EngineError",
    "FormatError",
    "ManifestError",
    "NodeError",
    "StreamError",
    "TransportError",
]
