"""The remote side of a ``RemoteStage``: one node living inside a Ray actor.

``StageActor`` is a plain class (``stage.py`` wraps it with ``ray.remote`` when Ray is loaded),
so this module imports nothing of Ray. It runs as a synchronous actor (one call at a time, in
the order one caller submitted them), and drives the node's async methods, when it has any, on
an event loop of its own. A node's exceptions come back as values (``Outcome``), so the caller
tells the stage's own errors (re-raised with their type) from Ray's failures (transport errors).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pickle
from typing import Any

from ..errors import StreamError
from ..node import Node, call_kind

#: ``(True, outputs)`` or ``(False, exception)``: what every call returns.
Outcome = tuple[bool, Any]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a StreamError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        plain = StreamError(f"{type(exc).__name__}: {exc}")
        plain.stage = getattr(exc, "stage", None)
        return plain
    return exc


async def _collect(agen: Any) -> list[Any]:
    return [x async for x in agen]


class StageActor:
    """Holds one node and runs its lifecycle calls; every method returns an ``Outcome``.

    No method here may be ``async``: Ray would make this an async actor, whose calls run
    concurrently and finish out of order (seen: a resampler stamping frames out of order).
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._loop = asyncio.new_event_loop()
        self._kind = "sync"

    def _run(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            return self._loop.run_until_complete(value)
        return value

    def _outputs(self, fn: Any, kind: str, *args: Any) -> list[Any]:
        if kind in ("list", "gen"):
            return list(fn(*args))
        if kind == "agen":
            collected: list[Any] = self._run(_collect(fn(*args)))
            return collected
        out = self._run(fn(*args))
        return [] if out is None else [out]

    def initialize(self, force_python: bool) -> Outcome:
        """Build the node's state here; the answer says where and on which backend it runs."""
        node = self._node
        try:
            node.force_python = force_python
            self._run(node.initialize())
        except Exception as exc:
            return False, _portable(exc)
        self._kind = "list" if getattr(node, "returns_list", False) else call_kind(node.process)
        ray: Any = importlib.import_module("ray")  # loaded already: this runs in a Ray worker
        return True, {
            "backend": node.backend,
            "reason": node.backend_reason,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
        }

    def process(self, item: Any) -> Outcome:
        """The node's outputs for one item, in order."""
        try:
            return True, self._outputs(self._node.process, self._kind, item)
        except Exception as exc:
            return False, _portable(exc)

    def flush(self) -> Outcome:
        """The node's tail at end of stream."""
        flush: Any = self._node.flush
        try:
            kind = call_kind(flush)
            if kind in ("gen", "agen"):
                return True, self._outputs(flush, kind)
            out = self._run(flush())
            return True, [] if out is None else list(out)
        except Exception as exc:
            return False, _portable(exc)

    def cleanup(self) -> Outcome:
        """Release the node's state (the actor is killed afterwards)."""
        try:
            self._run(self._node.cleanup())
        except Exception as exc:
            return False, _portable(exc)
        finally:
            self._loop.close()
        return True, None

    def pid(self) -> int:
        """This actor's process id (tests kill it to see a stage die mid-stream)."""
        return os.getpid()


__all__ = ["Outcome", "StageActor"]
