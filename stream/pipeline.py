"""Pipelines: stages in order, streamed with ``async for``.

Scheduling: runs of synchronous stages execute inline, one after another, in the task that pulls
from them (they share one event-loop thread, so separate tasks would only add switches). Each
asynchronous or streaming stage gets its own task, joined to the next by a bounded
``asyncio.Queue`` of ``queue_size`` items (default ``DEFAULT_QUEUE_SIZE``), so I/O-bound stages
overlap with the rest while a slow consumer holds memory to a bounded number of items.
Consecutive native stages are fused into one engine call per frame (``FusedSegment``).

Figures: ``stats()`` gives each stage's items in and out, a histogram of its time in
``process()``, the depth and high-water mark of the queue it feeds, and the end-to-end latency
(``stream.metrics``). Keeping them costs one ``perf_counter_ns`` pair per scheduled step (a fused
segment is one step) and a bucket count; ``Pipeline(stats=False)`` keeps only the counters.

A stage that raises ends the stream with ``NodeError`` (stage name, frame index, chained from the
cause); every stage is then cleaned up and every task cancelled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import sys
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from typing import Any

from .engine import engine_version
from .errors import ConfigError, NodeError, StreamError
from .events import Event
from .kernel_node import FusedSegment, KernelNode
from .metrics import BOUNDS_NS, N_BUCKETS, Histogram, PipelineStats, StageStats
from .node import Node, StreamingNode, call_kind, maybe_await

log = logging.getLogger("stream.pipeline")

DEFAULT_QUEUE_SIZE = 8
_EOS = object()  # end of stream, as it travels through queues
_LATENCY_PENDING_MAX = 4096  # entered items waiting for an output, timed at most
_perf_ns = time.perf_counter_ns
#: ``Pipeline.sample_stages()``'s callback: (node or fused segment, start ns, end ns)
StageSampler = Callable[[Node, int, int], None]
_bucket = bisect.bisect_left


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Step:
    """One scheduled unit: a node, or a fused segment of native nodes, with its counters."""

    __slots__ = (
        "call",
        "emitted",
        "events_around",
        "hist",
        "hwm",
        "index",
        "kind",
        "max_ns",
        "node",
        "ns",
        "queue",
        "sample",
        "sample_every",
    )

    def __init__(self, node: Node, keep_stats: bool = True) -> None:
        self.node = node
        self.index = 0  # items taken in
        self.emitted = 0
        self.ns = 0  # time spent in process(), nanoseconds
        # per-bucket counts of process() times (stream.metrics.BOUNDS_NS); None: not kept
        self.hist: list[int] | None = [0] * N_BUCKETS if keep_stats else None
        self.max_ns = 0
        self.queue: asyncio.Queue[Any] | None = None  # the queue this step's task feeds
        self.hwm = 0  # the most items that queue held
        self.events_around = not node.accepts_events
        # Pipeline.sample_stages(): every ``sample_every``-th call reported to ``sample`` (the
        # session's trace turns them into stage spans); checked only where times are kept
        self.sample: StageSampler | None = None
        self.sample_every = 0
        if isinstance(node, StreamingNode):
            self.kind = "stream"
        elif getattr(node, "returns_list", False):
            self.kind = "list"
        else:
            self.kind = call_kind(node.process)
        self.call = self._sync_call()

    def _sync_call(self) -> Callable[[Any], list[Any]]:
        fn = self.node.process
        if self.kind == "list":
            return fn
        if self.kind == "gen":
            return lambda item: list(fn(item))

        def one(item: Any) -> list[Any]:
            out = fn(item)
            return [] if out is None else [out]

        return one

    @property
    def inline(self) -> bool:
        return self.kind in ("list", "sync", "gen")

    def observe(self, ns: int, end_ns: int) -> None:
        """Count one call of ``ns`` nanoseconds that ended at ``end_ns`` (the inline path does the
        same, inlined)."""
        self.ns += ns
        hist = self.hist
        if hist is not None:
            hist[_bucket(BOUNDS_NS, ns)] += 1
            if ns > self.max_ns:
                self.max_ns = ns
            if self.sample is not None and self.index % self.sample_every == 0:
                self.sample(self.node, end_ns - ns, end_ns)

    def histogram(self) -> Histogram:
        return Histogram(tuple(self.hist), self.ns, self.max_ns) if self.hist else Histogram()

    def fail(self, exc: Exception, index: int | None) -> NodeError:
        stage = self.node.name
        if isinstance(self.node, FusedSegment):  # name the member that raised, not the segment
            inner = getattr(exc, "stage", None)
            if inner in {n.name for n in self.node.nodes}:
                stage = inner
        return NodeError.from_cause(exc, stage, index)

    async def tail(self) -> list[Any]:
        """The node's flush() output, whatever form it takes."""
        flush: Any = self.node.flush  # a plain, async or generator function
        try:
            if call_kind(flush) == "agen":
                return [x async for x in flush()]
            out = await maybe_await(flush())
            return [] if out is None else list(out)
        except Exception as exc:
            raise self.fail(exc, None) from exc


def _run_inline(steps: list[_Step], start: int, items: list[Any]) -> list[Any]:
    """Push items through ``steps[start:]``, depth by depth; order is kept."""
    for i in range(start, len(steps)):
        step = steps[i]
        call = step.call
        hist = step.hist
        out: list[Any] = []
        for item in items:
            if type(item) is Event and step.events_around:
                out.append(item)
                continue
            step.index += 1
            t0 = _perf_ns()
            try:
                out.extend(call(item))
            except Exception as exc:
                raise step.fail(exc, step.index - 1) from exc
            ns = _perf_ns() - t0
            step.ns += ns
            if hist is not None:  # Step.observe(), inlined: this is the per-frame path
                hist[_bucket(BOUNDS_NS, ns)] += 1
                if ns > step.max_ns:
                    step.max_ns = ns
                if step.sample is not None and step.index % step.sample_every == 0:
                    step.sample(step.node, t0, t0 + ns)
        step.emitted += len(out)
        items = out
        if not items:
            break
    return items


async def _flush_inline(steps: list[_Step]) -> list[Any]:
    out: list[Any] = []
    for i, step in enumerate(steps):
        tail = await step.tail()
        if tail:
            step.emitted += len(tail)
            out.extend(_run_inline(steps, i + 1, tail))
    return out


class _Latency:
    """End-to-end latency: each item that enters is timed until the last stage has finished
    with an item after it (taken it in and returned: a sink has then written it), or an item
    left the pipeline, whichever comes first."""

    __slots__ = ("hist", "items_in", "items_out", "max_ns", "pending", "sum_ns")

    def __init__(self, keep_stats: bool) -> None:
        self.items_in = 0
        self.items_out = 0
        self.pending: list[int] = []  # entry times of items no output has followed yet
        self.hist: list[int] | None = [0] * N_BUCKETS if keep_stats else None
        self.sum_ns = 0
        self.max_ns = 0

    def enter(self, item: Any) -> None:
        if type(item) is Event:
            return
        self.items_in += 1
        if self.hist is not None and len(self.pending) < _LATENCY_PENDING_MAX:
            self.pending.append(_perf_ns())

    def leave(self) -> None:
        self.items_out += 1
        self.done()

    def done(self) -> None:
        pending = self.pending
        hist = self.hist
        if not pending or hist is None:
            return
        now = _perf_ns()
        for t in pending:
            ns = now - t
            hist[_bucket(BOUNDS_NS, ns)] += 1
            self.sum_ns += ns
            if ns > self.max_ns:
                self.max_ns = ns
        pending.clear()

    def histogram(self) -> Histogram:
        return Histogram(tuple(self.hist), self.sum_ns, self.max_ns) if self.hist else Histogram()


async def _as_aiter(stream: Any, latency: _Latency) -> AsyncIterator[Any]:
    enter = latency.enter
    if isinstance(stream, AsyncIterable):
        async for item in stream:
            enter(item)
            yield item
    else:
        for item in stream:
            enter(item)
            yield item


async def _inline_stage(
    upstream: AsyncIterator[Any], steps: list[_Step], latency: _Latency | None
) -> AsyncIterator[Any]:
    """Steps run inline; ``latency`` when the last of them is the pipeline's last stage."""
    last = steps[-1]
    async with _closing(upstream):
        async for item in upstream:
            taken = last.index
            outs = _run_inline(steps, 0, [item])
            if latency is not None and last.index != taken:
                latency.done()
            for out in outs:
                yield out
    for out in await _flush_inline(steps):
        yield out


async def _async_stage(
    upstream: AsyncIterator[Any], step: _Step, latency: _Latency | None
) -> AsyncIterator[Any]:
    """An async step; ``latency`` when it is the pipeline's last stage."""
    fn = step.node.process
    async with _closing(upstream):
        async for item in upstream:
            if type(item) is Event and step.events_around:
                yield item
                continue
            step.index += 1
            t0 = _perf_ns()
            try:
                if step.kind == "agen":
                    outs = [x async for x in fn(item)]
                else:
                    out = await fn(item)
                    outs = [] if out is None else [out]
            except Exception as exc:
                raise step.fail(exc, step.index - 1) from exc
            t1 = _perf_ns()
            step.observe(t1 - t0, t1)  # wall time: includes the awaits
            if latency is not None:
                latency.done()
            step.emitted += len(outs)
            for out in outs:
                yield out
    for out in await step.tail():
        step.emitted += 1
        yield out


async def _streaming_stage(
    upstream: AsyncIterator[Any] | None, step: _Step, latency: _Latency
) -> AsyncIterator[Any]:
    """A stage that streams (a source when ``upstream`` is None: its items enter the pipeline).
    Its items are counted, not timed: it decides when each one comes."""
    node = step.node
    assert isinstance(node, StreamingNode)

    async def counted(src: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for item in src:
            step.index += 1
            yield item

    source = node.stream(None if upstream is None else counted(upstream))
    try:
        async with _closing(source), _closing(upstream):
            async for out in source:
                step.emitted += 1
                if upstream is None:
                    latency.enter(out)
                yield out
    except NodeError:
        raise  # an upstream stage failed; it is already named
    except Exception as exc:
        raise step.fail(exc, step.index - 1 if step.index else None) from exc


@contextlib.asynccontextmanager
async def _closing(gen: AsyncIterator[Any] | None) -> AsyncIterator[None]:
    """Close an async generator when its consumer stops early, so none is left for the GC."""
    try:
        yield
    finally:
        aclose = getattr(gen, "aclose", None)
        if aclose is not None:
            await aclose()


async def _pump(source: AsyncIterator[Any], queue: asyncio.Queue[Any], step: _Step) -> None:
    try:
        async with _closing(source):
            async for item in source:
                await queue.put(item)
                depth = queue.qsize()
                if depth > step.hwm:
                    step.hwm = depth
        await queue.put(_EOS)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the consumer, which raises it
        await queue.put(_Failure(exc))


async def _stop(tasks: list[asyncio.Task[None]], every_s: float = 0.5) -> None:
    """Cancel the stage tasks and wait for them. A task that swallowed its cancellation (stage
    code catching CancelledError; asyncio.wait_for on 3.11 when its future completes in the same
    tick) is cancelled again until it ends, so cleanup never hangs on it."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every_s)
    for task in tasks:  # retrieve the results: no "exception never retrieved" warnings
        if not task.cancelled():
            task.exception()


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while True:
        item = await queue.get()
        if item is _EOS:
            return
        if isinstance(item, _Failure):
            raise item.exc
        yield item


class _Run:
    """One process() call: its stage tasks, and its generator (weakly: a consumer that leaves by
    `break` drops it, and Python then closes it on its own, later)."""

    __slots__ = ("gen", "runs", "tasks")

    def __init__(self, runs: set[_Run]) -> None:
        self.runs = runs
        self.tasks: list[asyncio.Task[None]] = []
        self.gen: weakref.ref[AsyncGenerator[Any, None]] | None = None

    async def close(self) -> None:
        """End the run now: close its generator if it is still referenced (RuntimeError: it is
        executing, it called us), and in any case stop its stage tasks before returning."""
        self.runs.discard(self)
        gen = self.gen() if self.gen is not None else None
        if gen is not None:
            with contextlib.suppress(RuntimeError):
                await gen.aclose()
        await _stop(self.tasks)


class Pipeline:
    """An ordered chain of stages.

    ``Pipeline(nodes=None, name=None, queue_size=8, fuse=True, stats=True)``; ``add_node()``
    chains; ``fuse=False`` runs native stages one engine call each (for comparison);
    ``stats=False`` keeps no time histograms or latency (``stats()`` then has counts only). Use
    ``async with`` (initialize/cleanup) and ``async for out in pipeline.process(stream)``, or
    ``await run(...)``.
    """

    def __init__(
        self,
        nodes: Iterable[Node] | None = None,
        name: str | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        fuse: bool = True,
        stats: bool = True,
    ) -> None:
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        self.name = name or "pipeline"
        self.nodes: list[Node] = []
        self.queue_size = queue_size
        self.fuse = fuse
        self.keep_stats = stats
        self._steps: list[_Step] = []
        self._latency = _Latency(stats)
        self._drops: dict[str, int] = {}
        self._sampler: tuple[StageSampler, int] | None = None
        self._initialized = False
        self._runs: set[_Run] = set()  # process() calls under way
        self._subscribers: list[tuple[str | None, Callable[[Event], Any]]] = []
        for node in nodes or ():
            self.add_node(node)

    def add_node(self, node: Node) -> Pipeline:
        """Append a stage; returns the pipeline so calls chain."""
        if not isinstance(node, Node):
            raise ConfigError(
                f"add_node() takes a Node, got {type(node).__name__}", stage=self.name
            )
        if self._initialized:
            raise ConfigError("cannot add nodes to an initialized pipeline", stage=self.name)
        self.nodes.append(node)
        return self

    @property
    def initialized(self) -> bool:
        return self._initialized

    async def initialize(self, use_rust: bool = True) -> None:
        """Build every stage's state and pick backends; ``use_rust=False`` forces Python."""
        if self._initialized:
            return
        names = [n.name for n in self.nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"stage names must be unique, repeated: {dupes}", stage=self.name)
        done: list[Node] = []
        try:
            for node in self.nodes:
                node.force_python = not use_rust
                await maybe_await(node.initialize())
                done.append(node)
        except BaseException:
            await self._cleanup_nodes(done)
            raise
        self._steps = self._schedule()
        self._latency = _Latency(self.keep_stats)
        self._initialized = True

    def _schedule(self) -> list[_Step]:
        steps: list[_Step] = []
        run: list[KernelNode] = []

        def close_run() -> None:
            if len(run) > 1:
                steps.append(_Step(FusedSegment(list(run)), self.keep_stats))
            elif run:
                steps.append(_Step(run[0], self.keep_stats))
            run.clear()

        for node in self.nodes:
            if (
                self.fuse
                and isinstance(node, KernelNode)
                and node.backend == "rust"
                and node.fusable
            ):
                run.append(node)
                continue
            close_run()
            steps.append(_Step(node, self.keep_stats))
        close_run()
        if self._sampler is not None:
            sample, every = self._sampler
            for step in steps:
                step.sample, step.sample_every = sample, every
        return steps

    def native_run(self) -> list[Any] | None:
        """After ``initialize()``: the kernels, in order, of a pipeline that is one run of native
        stages (every node fusable and on the engine: what one ``FusedSegment`` runs); None for
        any other pipeline. A transport may run them itself (``native_rtp``), then reports the
        work with ``count_native_run``."""
        steps = self._steps if self._initialized else []
        node = steps[0].node if len(steps) == 1 else None
        if isinstance(node, FusedSegment):
            return [n.kernel for n in node.nodes]
        if isinstance(node, KernelNode) and node.backend == "rust" and node.fusable:
            return [node.kernel]
        return None

    def count_native_run(self, frames_in: int, frames_out: int, ns: int) -> None:
        """Count frames and time the ``native_run`` kernels spent outside ``process()`` in its
        step's figures and the pipeline's items in and out (``stages()``, ``stats()``); the
        per-call and latency histograms are left as they are (no call was timed one by one)."""
        step = self._steps[0]
        step.index += frames_in
        step.emitted += frames_out
        step.ns += ns
        self._latency.items_in += frames_in
        self._latency.items_out += frames_out

    def sample_stages(self, sample: StageSampler | None, every: int = 50) -> None:
        """Report one call in ``every`` of each scheduled step (a node, or a fused segment) to
        ``sample(node, start_ns, end_ns)`` (``time.perf_counter_ns`` readings): how a session's
        trace gets its stage spans. Needs ``stats=True``; takes effect at ``initialize()``;
        None or ``every`` < 1 turns it off. ``sample`` runs on the frame's path: keep it short."""
        self._sampler = (sample, every) if sample is not None and every >= 1 else None

    async def cleanup(self) -> None:
        """End any unfinished ``process()`` (its stage tasks ended), then release every stage's
        state; runs them all even when one fails."""
        for run in list(self._runs):
            await run.close()
        if not self._initialized:
            return
        self._initialized = False
        await self._cleanup_nodes(self.nodes)

    async def _cleanup_quietly_if_failing(self) -> None:
        """Clean up; while another exception is in flight, cleanup errors are only logged."""
        if sys.exc_info()[1] is None:
            await self.cleanup()
            return
        try:
            await self.cleanup()
        except Exception as exc:
            log.error("%s: cleanup failed after an earlier error: %s", self.name, exc)

    async def _cleanup_nodes(self, nodes: list[Node]) -> None:
        first: BaseException | None = None
        for node in nodes:
            try:
                await maybe_await(node.cleanup())
            except Exception as exc:
                log.error("%s: cleanup of %s failed: %s", self.name, node.name, exc)
                first = first or exc
        if first is not None:
            raise first

    async def __aenter__(self) -> Pipeline:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._cleanup_quietly_if_failing()

    def on_event(self, callback: Callable[[Event], Any], kind: str | None = None) -> None:
        """Call ``callback(event)`` for every event (of ``kind``, if given) leaving the pipeline."""
        self._subscribers.append((kind, callback))

    def process(self, stream: Any = None, events: bool = True) -> AsyncGenerator[Any, None]:
        """Stream items through the stages; with no ``stream`` the first stage is the source.

        ``stream`` is any iterable or async iterable. Events come out in order with the frames
        (``events=False`` leaves them to ``on_event`` subscribers only). Initializes (and
        afterwards cleans up) the pipeline if it was not initialized. Raises NodeError when a
        stage fails. Leaving the ``async for`` early is fine inside ``async with pipeline``:
        cleanup() ends the run and its stage tasks before it returns.
        """
        run = _Run(self._runs)
        gen = self._process(stream, events, run)
        run.gen = weakref.ref(gen)
        return gen

    async def _process(self, stream: Any, events: bool, run: _Run) -> AsyncGenerator[Any, None]:
        owned = not self._initialized
        if owned:
            await self.initialize()
        if self._runs:
            raise StreamError("process() is already running", stage=self.name)
        self._runs.add(run)
        try:
            upstream = self._build(stream, run.tasks)
            subscribers = self._subscribers
            leave = self._latency.leave
            async with _closing(upstream):
                async for item in upstream:
                    if type(item) is Event:
                        for kind, callback in subscribers:
                            if kind is None or kind == item.kind:
                                callback(item)
                        if not events:
                            continue
                    else:
                        leave()
                    yield item
        finally:
            self._runs.discard(run)
            await _stop(run.tasks)
            if owned:
                await self._cleanup_quietly_if_failing()

    def _build(self, stream: Any, tasks: list[asyncio.Task[None]]) -> AsyncIterator[Any]:
        steps = self._steps
        latency = self._latency
        latency.pending.clear()  # items an earlier run held and never gave out are not timed
        upstream: AsyncIterator[Any] | None
        if stream is None:
            if not steps or steps[0].kind != "stream":
                raise ConfigError(
                    "process() without a stream needs a source as the first stage", stage=self.name
                )
            upstream = None
        else:
            upstream = _as_aiter(stream, latency)
        i = 0
        while i < len(steps):
            step = steps[i]
            if step.inline:
                group = [step]
                while i + 1 < len(steps) and steps[i + 1].inline:
                    i += 1
                    group.append(steps[i])
                assert upstream is not None
                upstream = _inline_stage(upstream, group, latency if i == len(steps) - 1 else None)
            else:
                if step.kind == "stream":
                    stage = _streaming_stage(upstream, step, latency)
                else:
                    assert upstream is not None
                    stage = _async_stage(upstream, step, latency if i == len(steps) - 1 else None)
                queue: asyncio.Queue[Any] = asyncio.Queue(self.queue_size)
                step.queue = queue
                tasks.append(asyncio.create_task(_pump(stage, queue, step), name=step.node.name))
                upstream = _drain(queue)
            i += 1
        assert upstream is not None
        return upstream

    async def run(self, input_data: Any = None, use_rust: bool = True) -> Any:
        """Process ``input_data`` and collect the outputs.

        A list (or any iterable/async iterable) in gives a list out; a single item in gives its
        single output (None when it emits nothing, a list when it emits several).
        ``use_rust=False`` runs every stage on its Python twin.
        """
        single = input_data is not None and not _is_stream(input_data)
        owned = not self._initialized
        if owned:
            await self.initialize(use_rust=use_rust)
        elif not use_rust and any(n.backend == "rust" for n in self.nodes):
            raise ConfigError(
                "run(use_rust=False) on a pipeline initialized with Rust stages; clean it up first",
                stage=self.name,
            )
        try:
            stream = [input_data] if single else input_data
            results = [item async for item in self.process(stream)]
        finally:
            if owned:
                await self._cleanup_quietly_if_failing()
        if not single:
            return results
        return None if not results else results[0] if len(results) == 1 else results

    def to_manifest(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """This pipeline as a manifest dict (see ``stream.manifest``); also written to ``path``
        (JSON, or YAML for .yaml/.yml) when given."""
        from . import manifest

        data = manifest.to_manifest(self)
        if path is not None:
            manifest.save(data, path)
        return data

    @classmethod
    def from_manifest(cls, source: Any, allow_modules: Iterable[str] = ()) -> Pipeline:
        """A pipeline from a manifest dict or a JSON/YAML file; ManifestError lists problems.

        ``module:Class`` types may name ``media_nodes``/``stream`` modules, and modules under
        the ``allow_modules`` prefixes (see ``stream.manifest``)."""
        from . import manifest

        return manifest.from_manifest(source, allow_modules=allow_modules)

    def stages(self) -> list[dict[str, Any]]:
        """Per stage: name, type, backend and why, the segment it ran in, and counters."""
        rows = []
        for step in self._steps or [_Step(n) for n in self.nodes]:
            members = step.node.nodes if isinstance(step.node, FusedSegment) else [step.node]
            for node in members:
                rows.append(
                    {
                        "name": node.name,
                        "type": type(node).__name__,
                        "backend": node.backend,
                        "reason": node.backend_reason,
                        "segment": step.node.name,
                        "fused": isinstance(step.node, FusedSegment),
                        "frames_in": step.index,
                        "frames_out": step.emitted,
                        "us_per_frame": step.ns / 1000 / step.index if step.index else 0.0,
                    }
                )
        return rows

    def count_drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items dropped for ``reason`` (by whoever drives the pipeline: a session
        drops input while paused, output its peer cannot take); shown in ``stats().drops``."""
        self._drops[reason] = self._drops.get(reason, 0) + n

    def stats(self) -> PipelineStats:
        """The figures so far (``stream.metrics.PipelineStats``): per stage items in and out,
        time histogram, queue depth and high-water mark; end-to-end latency; drops by reason.
        Plain data: ``.to_dict()`` is JSON-ready. Cheap enough to call every second."""
        rows: list[StageStats] = []
        for step in self._steps or [_Step(n, False) for n in self.nodes]:
            fused = isinstance(step.node, FusedSegment)
            members = step.node.nodes if isinstance(step.node, FusedSegment) else [step.node]
            queue = step.queue
            hist = step.histogram()
            for node in members:
                rows.append(
                    StageStats(
                        name=node.name,
                        type=type(node).__name__,
                        backend=node.backend,
                        segment=step.node.name,
                        fused=fused,
                        items_in=step.index,
                        items_out=step.emitted,
                        time=hist,
                        queue_size=None if queue is None else self.queue_size,
                        queue_depth=None if queue is None else queue.qsize(),
                        queue_hwm=None if queue is None else step.hwm,
                    )
                )
        lat = self._latency
        return PipelineStats(
            name=self.name,
            enabled=self.keep_stats,
            items_in=lat.items_in,
            items_out=lat.items_out,
            latency=lat.histogram(),
            stages=tuple(rows),
            drops=dict(self._drops),
        )

    def describe(self) -> str:
        """A table of the stages: backend each ran on and why, frames and time per frame."""
        rows = self.stages()
        head = f"pipeline {self.name!r}: {len(rows)} stages, engine " + (
            engine_version() or "not built"
        )
        lines = [head, f"  {'stage':<22} {'backend':<8} {'frames in/out':>14} {'us/frame':>9}  why"]
        for r in rows:
            why = r["reason"] + (f" [fused: {r['segment']}]" if r["fused"] else "")
            frames = f"{r['frames_in']}/{r['frames_out']}"
            lines.append(
                f"  {r['name']:<22} {r['backend']:<8} {frames:>14} {r['us_per_frame']:>9.1f}  {why}"
            )
        return "\n".join(lines)


def _is_stream(data: Any) -> bool:
    return isinstance(data, list | tuple | Iterator | AsyncIterable) or (
        hasattr(data, "__aiter__") and not hasattr(data, "samples")
    )


__all__ = ["DEFAULT_QUEUE_SIZE", "Pipeline"]
