"""Backend selection: argument, environment, run(use_rust=False), missing engine, fusion."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from media_nodes import ChannelMix, FormatConvert, Gain, PassThrough, Resample
from stream import ConfigError, Pipeline, engine_available
from stream.kernel_node import FusedSegment
from stream.testing import split_frames, tone

needs_engine = pytest.mark.skipif(
    not engine_available(), reason="the Rust engine is not built in this environment"
)


def test_bad_backend_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backend"):
        Gain(0.0, backend="gpu")


async def test_python_asked_for_by_argument_and_by_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REMOTEMEDIA_RUNTIME", raising=False)
    by_arg = Gain(0.0, backend="python")
    by_arg.initialize()
    assert (by_arg.backend, by_arg.backend_reason) == ("python", "asked for (backend='python')")
    monkeypatch.setenv("REMOTEMEDIA_RUNTIME", "python")
    by_env = Gain(0.0)
    by_env.initialize()
    assert by_env.backend == "python" and "REMOTEMEDIA_RUNTIME=python" in by_env.backend_reason


@needs_engine
async def test_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEMEDIA_RUNTIME", "python")
    node = Gain(0.0, backend="rust")
    node.initialize()
    assert node.backend == "rust"


@needs_engine
async def test_use_rust_false_forces_python_for_that_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMOTEMEDIA_RUNTIME", raising=False)
    frames = split_frames(tone(440, 0.1), 48000, 960)
    p = Pipeline([Gain(-3.0, backend="rust"), Resample(16000)])
    await p.run(frames, use_rust=False)
    assert [n.backend for n in p.nodes] == ["python", "python"]
    await p.run(frames)
    assert [n.backend for n in p.nodes] == ["rust", "rust"]


@needs_engine
async def test_consecutive_native_stages_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEMEDIA_RUNTIME", "auto")
    nodes = [
        ChannelMix(1),
        Gain(-1.0),
        Resample(16000),
        FormatConvert("s16"),  # an edge stage: native, but not fused
        PassThrough(),
        Gain(0.0, backend="python"),
    ]
    p = Pipeline(nodes)
    await p.initialize()
    kinds = [type(step.node).__name__ for step in p._steps]
    assert kinds == ["FusedSegment", "FormatConvert", "PassThrough", "Gain"]
    seg = p._steps[0].node
    assert isinstance(seg, FusedSegment) and seg.nodes == nodes[:3]
    await p.cleanup()
    unfused = Pipeline([ChannelMix(1), Gain(-1.0)], fuse=False)
    await unfused.initialize()
    assert [type(s.node).__name__ for s in unfused._steps] == ["ChannelMix", "Gain"]
    await unfused.cleanup()


def _run_without_engine(code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter where ``stream._engine`` cannot be imported."""
    prelude = "import sys\nsys.modules['stream._engine'] = None  # as if the engine was not built\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "REMOTEMEDIA_RUNTIME": "auto"},
    )


def test_missing_engine_falls_back_and_says_so_once() -> None:
    result = _run_without_engine(
        """
        import asyncio
        from stream import Pipeline, engine_available
        from stream.testing import split_frames, tone
        from media_nodes import Gain, Resample
        assert not engine_available()
        p = Pipeline([Gain(-6.0), Resample(16000), Gain(0.0)])
        out = asyncio.run(p.run(split_frames(tone(440, 0.1), 48000, 960)))
        assert sum(f.num_samples for f in out) == 1600
        print([n.backend for n in p.nodes])
        print(p.nodes[0].backend_reason)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "['python', 'python', 'python']"
    assert lines[1].startswith("fallback: engine not built")
    assert result.stderr.count("falling back to Python stages") == 1


def test_rust_without_engine_is_backend_unavailable_at_initialize() -> None:
    result = _run_without_engine(
        """
        import asyncio
        from stream import BackendUnavailable, Pipeline
        from media_nodes import Gain
        p = Pipeline([Gain(-6.0, backend="rust", name="loud")])
        try:
            asyncio.run(p.initialize())
        except BackendUnavailable as exc:
            print("raised:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("raised: loud: backend 'rust' was asked for")
