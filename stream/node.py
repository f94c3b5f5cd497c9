"""The Node contract: settings at construction, ``initialize()`` builds state, ``process()`` per
item, ``flush()`` at end of stream, ``cleanup()`` always runs.

``process`` may be a plain function (its return value is one output; None emits nothing), a
generator or async generator function (every yielded value is an output), or a coroutine function
(the awaited value is one output). ``flush`` returns the tail as a list (or None), or yields it.
A ``StreamingNode`` consumes the whole input stream instead; a ``Source`` is a streaming node
that ignores its input and starts a pipeline.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any, ClassVar

from .errors import ConfigError
from .events import Event
from .stage_settings import NotASetting, Settings

_counter = itertools.count(1)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Node:
    """Base class of pipeline stages.

    ``name`` identifies the stage in errors and in ``Pipeline.describe()``; it defaults to the class
    name in snake case plus a number. ``backend`` says where the stage ran (``"python"`` unless the
    stage has a native kernel and runs it) and ``backend_reason`` why.
    """

    backend: str = "python"
    backend_reason: str = "Python node"
    #: True for stages that only ever see AudioFrames; False lets any object through.
    accepts_any: ClassVar[bool] = True
    #: Events flow around a stage unless it sets this (see stream.events).
    accepts_events: ClassVar[bool] = False
    #: Set by ``Pipeline.initialize(use_rust=False)``: build Python kernels only.
    force_python: bool = False
    #: The stage's settings (stream.stage_settings), one definition; each becomes an attribute.
    settings: ClassVar[Settings | None] = None
    _settings: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("settings")
        if own is None:
            return
        own.install(cls)
        for base in cls.__mro__[1:]:  # settings a base class has and this stage has not
            inherited = base.__dict__.get("settings")
            for name in inherited.names if inherited is not None else ():
                if name not in own and name not in cls.__dict__:
                    hidden = NotASetting()
                    hidden.__set_name__(cls, name)
                    setattr(cls, name, hidden)

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{_snake(type(self).__name__)}{next(_counter)}"

    def configure(self, **values: Any) -> None:
        """Validate and keep the stage's settings (``type(self).settings``); ConfigError naming
        the stage. Called once, by the constructor."""
        settings = type(self).settings
        assert settings is not None, f"{type(self).__name__} declares no settings"
        self._settings = settings.validate(self.name, values)

    def apply_live(self, name: str, value: Any) -> None:
        """A live setting changed (already validated and stored): hand it to running state."""
        return None

    def initialize(self) -> Awaitable[None] | None:
        """Build runtime state; called once before the first item (sync or async)."""
        return None

    def process(self, item: Any) -> Any:
        """Handle one item; return the output (None emits nothing), or yield several."""
        return item

    def flush(self) -> Iterable[Any] | Awaitable[Iterable[Any] | None] | None:
        """End of stream: return (or yield) the items still held; default none."""
        return None

    def cleanup(self) -> Awaitable[None] | None:
        """Release runtime state; always called once the stream ends, fails or is cancelled."""
        return None

    def event(self, kind: str, time: float | None = None, **payload: Any) -> Event:
        """An Event from this stage, to return or yield among the outputs."""
        return Event(kind, self.name, time, payload)

    def on_ray(self, **options: Any) -> Node:
        """This node in a Ray actor: ``stream.ray.RemoteStage(self, **options)``."""
        from .ray import RemoteStage

        return RemoteStage(self, **options)

    def params(self) -> dict[str, Any]:
        """The constructor arguments, in JSON types and without ``name``, that rebuild this node.

        Manifests (``Pipeline.to_manifest``) store them; a node type that cannot be rebuilt from
        JSON raises ConfigError.
        """
        raise ConfigError(f"{type(self).__name__} does not define params(), so no manifest has it")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class StreamingNode(Node):
    """A stage that consumes the whole input stream and yields its outputs.

    Override ``stream``; ``items`` is None when the node is the pipeline's source.
    """

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        if items is None:
            return
        async for item in items:
            yield item


class Source(StreamingNode):
    """A streaming node that produces items and starts a pipeline (its input is ignored)."""


def call_kind(fn: Any) -> str:
    """How a ``process``/``flush`` callable delivers outputs: sync, gen, coro or agen."""
    if inspect.isasyncgenfunction(fn):
        return "agen"
    if inspect.iscoroutinefunction(fn):
        return "coro"
    if inspect.isgeneratorfunction(fn):
        return "gen"
    return "sync"


async def maybe_await(value: Any) -> Any:
    """Await ``value`` if it is awaitable, else return it."""
    if inspect.isawaitable(value):
        return await value
    return value


__all__ = ["Node", "Source", "StreamingNode", "call_kind", "maybe_await"]
