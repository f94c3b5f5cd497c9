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
        +-- OfferRefused           an offer not answered: ``status`` (HTTP), ``retry_after_s``

Every error takes ``(message, *, stage=None)``. With a stage, ``str(err)`` is
``"{stage}: {message}"``, ``err.message`` the bare text and ``err.stage`` the stage's name, so a
failure inside a fused native segment still names the stage that failed, and ``NodeError`` reads
the parts instead of parsing the text. Build errors with ``stage=``; never prefix by hand.
"""

from __future__ import annotations

from typing import Any


class StreamError(Exception):
    """Base class of every RemoteMedia error; ``stage`` names the stage it belongs to, if any."""

    def __init__(self, message: str = "", *, stage: str | None = None) -> None:
        # The text is fixed here, once: setting ``stage`` later names the stage but keeps the text.
        super().__init__(self._where(stage) + message)
        self.message = message
        self.stage = stage

    def _where(self, stage: str | None) -> str:
        """The prefix of the text: ``"{stage}: "`` when there is a stage."""
        return f"{stage}: " if stage else ""

    # Pickling (worker processes, Ray) goes through ``__reduce__``: the default one rebuilds from
    # ``args`` (the joined text) and then restores ``__dict__``, which keeps stage and message.


class ConfigError(StreamError, ValueError):
    """Invalid settings for a stage or pipeline."""


class ManifestError(ConfigError):
    """A pipeline manifest that cannot build; ``problems`` lists each one with its location."""

    def __init__(self, problems: list[str], source: str = "manifest") -> None:
        # ``source`` is a file or "manifest", not a stage: it is part of the message.
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


class OfferRefused(TransportError):
    """An offer that could not be answered; ``status`` is the HTTP status the front sends,
    ``retry_after_s`` (when set) its ``Retry-After``."""

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:
        # the default would call OfferRefused(text) and fail: rebuild from the parts
        return (_offer_refused, (self.status, self.message, self.retry_after_s), self.__dict__)


def _offer_refused(status: int, message: str, retry_after_s: int | None) -> OfferRefused:
    return OfferRefused(status, message, retry_after_s=retry_after_s)


class NodeError(StreamError):
    """A stage raised while processing; names the stage and the index of the frame it was on.

    ``str(err)`` is ``"stage {stage!r} at frame {index}: {message}"``; build one from the
    stage's exception with ``NodeError.from_cause``.
    """

    def __init__(self, stage: str, index: int | None, message: str) -> None:
        self.index = index  # read by _where, below
        super().__init__(message, stage=stage)

    def _where(self, stage: str | None) -> str:
        at = f" at frame {self.index}" if self.index is not None else ""
        return f"stage {stage!r}{at}: "

    @classmethod
    def from_cause(
        cls, exc: BaseException, stage: str, index: int | None, *, aliases: tuple[str, ...] = ()
    ) -> NodeError:
        """A NodeError for ``exc`` raised by ``stage`` at frame ``index``, chained from it.

        The message is ``"{type}: {text}"``; the text leaves out the stage when ``exc`` names
        ``stage`` (or one of ``aliases``, other names of the same stage) as its own.
        """
        if isinstance(exc, StreamError) and exc.stage in (stage, *aliases):
            text = exc.message
        else:
            text = str(exc)
        err = cls(stage, index, f"{type(exc).__name__}: {text}")
        err.__cause__ = exc
        return err

    def __reduce__(self) -> tuple[Any, ...]:
        # the default would call NodeError(text) and fail: rebuild from the parts
        assert self.stage is not None  # set by __init__
        return (type(self), (self.stage, self.index, self.message), self.__dict__)


__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "EngineError",
    "FormatError",
    "ManifestError",
    "NodeError",
    "OfferRefused",
    "StreamError",
    "TransportError",
]
