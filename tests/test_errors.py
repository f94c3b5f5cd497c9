"""The error tree: one constructor owns the stage, errors survive pickling, NodeError reads parts.

Both backends raise the same classes built the same way: ``Class(message, stage=name)``, so
``str(err)`` is ``"{stage}: {message}"`` while ``message`` and ``stage`` stay apart.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

import stream.errors as errors
from media_nodes import Gain, PassThrough
from stream import AudioFrame, Node, Pipeline
from stream.errors import (
    BackendUnavailable,
    ConfigError,
    EngineError,
    FormatError,
    ManifestError,
    NodeError,
    OfferRefused,
    StreamError,
    TransportError,
)

LIMIT_S = 120.0  # a bound, not a speed claim: a busy machine starts processes slowly


def test_the_docstring_lists_the_whole_tree_with_each_parent() -> None:
    doc = errors.__doc__ or ""
    tree = doc[doc.index("StreamError") : doc.index("\n\n", doc.index("StreamError"))]
    # each line "+-- Name" sits one level (4 columns) under its parent
    listed: dict[str, str] = {}
    stack: list[tuple[int, str]] = [(-4, "StreamError")]
    for line in tree.splitlines()[1:]:
        m = re.match(r"^(\s*(?:\|\s*)*)\+-- (\w+)", line)
        if m is None:
            continue
        depth = len(m.group(1))
        while stack[-1][0] >= depth:
            stack.pop()
        listed[m.group(2)] = stack[-1][1] if stack[-1][0] >= 0 else "StreamError"
        stack.append((depth, m.group(2)))
    assert set(listed) | {"StreamError"} == set(errors.__all__)
    for name, parent in listed.items():
        cls = getattr(errors, name)
        assert cls.__bases__[0] is getattr(errors, parent), name
    assert issubclass(ConfigError, ValueError) and issubclass(FormatError, ValueError)


def test_offer_refused_is_the_transport_error_of_the_tree() -> None:
    host = importlib.import_module("stream.transport.host")
    assert host.OfferRefused is OfferRefused
    err = OfferRefused(503, "server full: 4 sessions", retry_after_s=5)
    assert isinstance(err, TransportError)
    assert (err.status, err.retry_after_s, str(err)) == (503, 5, "server full: 4 sessions")


@pytest.mark.parametrize(
    "cls", [StreamError, ConfigError, FormatError, BackendUnavailable, EngineError, TransportError]
)
def test_the_constructor_owns_the_stage_prefix(cls: type[StreamError]) -> None:
    err = cls("bad block", stage="gain_1")
    assert (str(err), err.message, err.stage) == ("gain_1: bad block", "bad block", "gain_1")
    plain = cls("bad block")
    assert (str(plain), plain.message, plain.stage) == ("bad block", "bad block", None)


def test_node_error_text_names_stage_and_frame() -> None:
    err = NodeError("mix", 7, "FormatError: input 1 failed")
    assert str(err) == "stage 'mix' at frame 7: FormatError: input 1 failed"
    assert (err.stage, err.index, err.message) == ("mix", 7, "FormatError: input 1 failed")
    assert str(NodeError("mix", None, "x")) == "stage 'mix': x"


# Built in the child process and pickled back to the parent, as worker processes and Ray do.
SAMPLES: list[tuple[str, Any]] = [
    ("format", lambda: FormatError("non-finite sample at channel 0, index 3", stage="g")),
    ("config", lambda: ConfigError("gain_db must be finite", stage="g")),
    ("engine", lambda: EngineError("speex_echo_state_init failed", stage="aec")),
    ("plain", lambda: StreamError("no stage here")),
    ("node", lambda: NodeError("g", 4, "FormatError: boom")),
    ("offer", lambda: OfferRefused(503, "server full", retry_after_s=5)),
    ("manifest", lambda: ManifestError(["nodes[0]: unknown type 'x'"], "m.yaml")),
]


def _raise(key: str) -> None:
    raise dict(SAMPLES)[key]()


def _parts(err: BaseException) -> tuple[Any, ...]:
    return (
        type(err),
        str(err),
        getattr(err, "message", None),
        getattr(err, "stage", None),
        getattr(err, "index", None),
        getattr(err, "status", None),
        getattr(err, "retry_after_s", None),
        getattr(err, "problems", None),
    )


def test_errors_cross_processes_with_stage_and_message() -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(_raise, key) for key, _ in SAMPLES}
        for key, make in SAMPLES:
            with pytest.raises(StreamError) as info:
                futures[key].result(timeout=LIMIT_S)
            assert _parts(info.value) == _parts(make()), key


def test_errors_pickle_in_process() -> None:
    for key, make in SAMPLES:
        err = make()
        assert _parts(pickle.loads(pickle.dumps(err))) == _parts(err), key


class Raises(Node):
    """Raises ``exc`` on its first frame."""

    def __init__(self, exc: Exception, name: str) -> None:
        super().__init__(name=name)
        self.exc = exc

    def process(self, item: Any) -> Any:
        raise self.exc


async def _node_error(node: Node) -> NodeError:
    async with asyncio.timeout(LIMIT_S):
        with pytest.raises(NodeError) as info:
            await Pipeline([PassThrough(), node]).run([1])
    assert info.value.__cause__ is node.exc  # type: ignore[attr-defined]
    return info.value


async def test_node_error_reads_the_stage_from_the_error_not_the_text() -> None:
    own = await _node_error(Raises(FormatError("bad: x", stage="bad"), "bad"))
    assert str(own) == "stage 'bad' at frame 0: FormatError: bad: x"
    # a foreign error whose text merely starts like the stage's name is kept whole
    foreign = await _node_error(Raises(ValueError("bad: looks like a prefix"), "bad"))
    assert str(foreign) == "stage 'bad' at frame 0: ValueError: bad: looks like a prefix"
    # an error that names another stage keeps that name in the text
    other = await _node_error(Raises(ConfigError("x", stage="inner"), "bad"))
    assert str(other) == "stage 'bad' at frame 0: ConfigError: inner: x"
    assert (own.stage, own.index, own.message) == ("bad", 0, "FormatError: bad: x")


@pytest.mark.parametrize("make", ["kernel", "node"])
async def test_both_backends_build_stage_errors_alike(backend: str, make: str) -> None:
    bad = np.full((1, 480), np.nan, np.float32)
    if make == "kernel":
        module = importlib.import_module(
            "stream._engine" if backend == "rust" else "media_nodes.audio"
        )
        with pytest.raises(FormatError) as kinfo:
            module.GainKernel(-3.0, stage="g7").process(bad, 48000)
        err: StreamError = kinfo.value
    else:
        async with asyncio.timeout(LIMIT_S):
            with pytest.raises(NodeError) as ninfo:
                await Pipeline([Gain(-3.0, name="g7")]).run([AudioFrame(bad, 48000)])
        assert ninfo.value.message == f"FormatError: {ninfo.value.__cause__.message}"  # type: ignore[union-attr]
        err = ninfo.value.__cause__  # type: ignore[assignment]
    assert type(err) is FormatError and err.stage == "g7"
    assert err.message == "non-finite sample at channel 0, index 0"
    assert str(err) == f"g7: {err.message}"
