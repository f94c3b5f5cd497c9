"""VoiceProcessor: a browser's voice front end, server-side, as one node.

``VoiceProcessor(echo=..., noise=..., gain=..., high_pass=...)`` is what ``getUserMedia``'s
``echoCancellation``, ``noiseSuppression`` and ``autoGainControl`` give a browser tab, with the
module's high-pass filter in front: ``HighPass -> EchoCancel -> NoiseSuppress (or Denoise) ->
AutoGain``, each an ordinary built-in stage with its own backend, composed here rather than
reimplemented. Consecutive native stages run as one fused engine call (as a pipeline fuses
them); ``stages()`` and ``backend_reason`` say where each ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from stream.errors import BackendUnavailable, ConfigError, EngineError, FormatError, StreamError
from stream.events import Event
from stream.kernel_node import FusedSegment, KernelNode, check_audio
from stream.node import Node, call_kind, maybe_await
from stream.stage_settings import Invalid, Setting, Settings

from .auto_gain import AutoGain
from .denoise import Denoise
from .echo_cancel import PEER, EchoCancel
from .high_pass import HighPass
from .noise_suppress import NoiseSuppress

NOISE = (None, "webrtc", "rnnoise")
#: The typed errors an inner stage raises that this node raises in its own name.
_RENAMED = (FormatError, ConfigError, EngineError, BackendUnavailable)


def _noise(value: Any) -> str | None:
    if value not in NOISE or isinstance(value, bool):
        raise Invalid(f"noise must be None, 'webrtc' or 'rnnoise', got {value!r}")
    return value  # type: ignore[no-any-return]


def _flag(name: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"{name} must be True or False, got {value!r}")
        return value

    return check


SETTINGS = Settings(
    "VoiceProcessor",
    Setting(
        "noise",
        "str | None",
        "webrtc",
        _noise,
        doc="noise suppressor: 'webrtc' (NoiseSuppress), 'rnnoise' (Denoise, 48 kHz) or None",
        kernel=False,
    ),
    Setting("gain", "bool", True, _flag("gain"), doc="AutoGain (AGC2) last", kernel=False),
    Setting("high_pass", "bool", True, _flag("high_pass"), doc="HighPass first", kernel=False),
)


class VoiceProcessor(Node):
    """High-pass filter, echo canceller, noise suppressor and automatic gain, as one node.

    ``echo``: None (no echo cancellation), ``"peer"`` (the audio a WebRTC session sends to its
    peer, bound by the session) or a reference stream of AudioFrames, as ``EchoCancel`` takes
    it (its default: Kalman). ``noise``: ``"webrtc"`` (``NoiseSuppress``), ``"rnnoise"``
    (``Denoise``, 48 kHz only) or None. ``gain``: ``AutoGain`` last. ``high_pass``:
    ``HighPass`` first. ``backend`` goes to every inner stage. Inner stages are named
    ``{name}.high_pass``, ``{name}.echo``, ``{name}.noise``, ``{name}.gain``; their typed
    errors are raised as this node's, naming the inner stage in the message (``"... (in
    vp.noise)"``) and chained from the inner one. Rates: what every inner stage takes (8, 16,
    32 or 48 kHz; 48 kHz with ``"rnnoise"``); the echo canceller takes mono near-end audio, the
    others any channel count.
    """

    settings = SETTINGS
    noise: str | None
    gain: bool
    high_pass: bool

    def __init__(
        self,
        echo: AsyncIterable[Any] | Iterable[Any] | str | None = None,
        noise: str | None = "webrtc",
        gain: bool = True,
        high_pass: bool = True,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.configure(noise=noise, gain=gain, high_pass=high_pass)
        self.requested_backend = backend
        self.echo = echo
        nodes: list[Node] = []
        if high_pass:
            nodes.append(HighPass(name=f"{self.name}.high_pass", backend=backend))
        self._echo: EchoCancel | None = None
        if echo is not None:
            self._echo = EchoCancel(echo, name=f"{self.name}.echo", backend=backend)
            nodes.append(self._echo)
        if noise == "webrtc":
            nodes.append(NoiseSuppress(name=f"{self.name}.noise", backend=backend))
        elif noise == "rnnoise":
            nodes.append(Denoise(name=f"{self.name}.noise", backend=backend))
        if gain:
            nodes.append(AutoGain(name=f"{self.name}.gain", backend=backend))
        #: The inner stages, in order.
        self.nodes = nodes
        self._steps: list[Node] = list(nodes)
        self.backend = "unset"
        self.backend_reason = "not initialized"

    # -- what a WebRTC session looks for on a reference="peer" echo canceller

    @property
    def reference(self) -> Any:
        """The echo canceller's reference (``"peer"``, a stream, or None without one)."""
        return self.echo

    def use_reference(self, reference: AsyncIterable[Any] | Iterable[Any]) -> None:
        """Bind the stream ``echo="peer"`` reads (as ``EchoCancel.use_reference``)."""
        if self._echo is None:
            from stream.kernel import config_error

            raise config_error(self.name, "use_reference() is for echo='peer' only")
        self._echo.use_reference(reference)

    def params(self) -> dict[str, Any]:
        if self.echo is not None and self.echo != PEER:
            from stream.kernel import config_error

            raise config_error(
                self.name,
                "VoiceProcessor has a manifest form only with echo=None or 'peer' (a stream is "
                "not JSON)",
            )
        extra = {} if self.requested_backend is None else {"backend": self.requested_backend}
        return {"echo": self.echo, **self._settings, **extra}

    # -- life cycle

    async def initialize(self) -> None:
        done: list[Node] = []
        try:
            for node in self.nodes:
                node.force_python = self.force_python
                await maybe_await(node.initialize())
                done.append(node)
        except BaseException:
            for node in reversed(done):
                await maybe_await(node.cleanup())
            raise
        self._steps = self._fuse()
        backends = {n.backend for n in self.nodes}
        self.backend = backends.pop() if len(backends) == 1 else "mixed"
        self.backend_reason = "; ".join(
            f"{r['name']}: {r['backend']}" + (" (fused)" if r["fused"] else "")
            for r in self.stages()
        )

    def _fuse(self) -> list[Node]:
        """Runs of native block stages as one engine call each, as ``Pipeline`` fuses them."""
        steps: list[Node] = []
        run: list[KernelNode] = []
        for node in [*self.nodes, None]:
            if isinstance(node, KernelNode) and node.backend == "rust" and node.fusable:
                run.append(node)
                continue
            if len(run) > 1:
                steps.append(FusedSegment(list(run)))
            else:
                steps += run
            run = []
            if node is not None:
                steps.append(node)
        return steps

    def stages(self) -> list[dict[str, Any]]:
        """Per inner stage: name, type, backend and why, and whether it ran fused."""
        rows = []
        for step in self._steps:
            members = step.nodes if isinstance(step, FusedSegment) else [step]
            for node in members:
                rows.append(
                    {
                        "name": node.name,
                        "type": type(node).__name__,
                        "backend": node.backend,
                        "reason": node.backend_reason,
                        "segment": step.name,
                        "fused": isinstance(step, FusedSegment),
                    }
                )
        return rows

    @property
    def latency_samples(self) -> int:
        """The inner stages' delays summed, in samples (after the first frame)."""
        return sum(int(getattr(n, "latency_samples", 0)) for n in self.nodes)

    async def _through(self, start: int, items: list[Any]) -> list[Any]:
        """``items`` through the steps from ``start`` on; events pass the later steps by."""
        for step in self._steps[start:]:
            out: list[Any] = []
            for item in items:
                if type(item) is Event:
                    out.append(item)
                elif call_kind(step.process) == "agen":
                    out += [o async for o in step.process(item)]
                else:
                    got = await maybe_await(step.process(item))
                    out += got if isinstance(got, list) else [] if got is None else [got]
            items = out
        return items

    def _named(self, err: StreamError) -> StreamError:
        """An inner stage's typed error as this node's (the inner stage in the message)."""
        cls = type(err)
        if err.stage == self.name or cls not in _RENAMED:
            return err
        renamed = cls(f"{err.message} (in {err.stage})", stage=self.name)
        renamed.__cause__ = err
        return renamed

    async def process(self, item: Any) -> AsyncIterator[Any]:
        if type(item) is not Event:
            check_audio(self.name, item)  # the frame contract, in this node's name
        try:
            outs = await self._through(0, [item])
        except StreamError as err:
            raise self._named(err) from err
        for out in outs:
            yield out

    async def flush(self) -> list[Any]:
        """Each step's tail, through the steps after it, in order."""
        out: list[Any] = []
        try:
            for i, step in enumerate(self._steps):
                tail = await maybe_await(step.flush())
                out += await self._through(i + 1, list(tail or []))
        except StreamError as err:
            raise self._named(err) from err
        return out

    async def cleanup(self) -> None:
        for node in self.nodes:
            await maybe_await(node.cleanup())


__all__ = ["SETTINGS", "VoiceProcessor"]
