"""SileroVAD (docs/stages-audio.md): the Silero model finds the speech-like syllable runs of a
scene within a window or two, emits EnergyVAD's events and gates as it does, does not depend on
the input split, and the two backends (tract, onnxruntime) give the same segments.

The scene uses ``stream.testing.speech_like`` (synthetic vowels): Silero reacts to them, but not
to every syllable (seeds 1 and 3 give long runs of probability above 0.5; a steady harmonic tone
fades out within a second), so its truth is the runs, not each syllable.
"""

from __future__ import annotations

import os
import pathlib
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import media_nodes.audio.silero_vad as silero
from media_nodes.audio import SileroVAD, SileroVADKernel
from stream import AudioFrame, ConfigError, Event, NodeError, Pipeline
from stream.engine import engine_available
from stream.errors import BackendUnavailable, FormatError
from stream.testing import run_node, speech_like, split_frames

RATE = 16000
PYTHON_ONLY = os.environ.get("REMOTEMEDIA_RUNTIME") == "python"


def _native() -> Any:
    if not engine_available():
        return None
    from stream import _engine

    return getattr(_engine, "SileroVADKernel", None)


NATIVE = _native()
# The kernel is behind the cargo feature `silero`: an engine built without it is the one reason
# to skip the rust runs (a missing engine fails them, as it does every stage's).
WITHOUT_SILERO = engine_available() and NATIVE is None
needs_native = pytest.mark.skipif(
    PYTHON_ONLY or NATIVE is None,
    reason="Python-only session" if PYTHON_ONLY else "engine built without the Silero kernel",
)


@pytest.fixture
def vad_backend(backend: str) -> str:
    """``backend``, skipping ``rust`` when this engine was built without the Silero kernel."""
    if backend == "rust" and WITHOUT_SILERO:
        pytest.skip("engine built without the Silero kernel")
    return backend


def scene(seed: int = 0) -> np.ndarray:
    """6 s: -60 dBFS noise, speech-like syllables 1.0-2.8 s and 4.0-5.3 s (mono, 16 kHz)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.001, 6 * RATE)
    a = speech_like(1.8, seed=3, rate=RATE)  # first syllable starts 0.2 s in
    b = speech_like(1.3, seed=1, rate=RATE)
    x[RATE : RATE + a.size] += a
    x[4 * RATE : 4 * RATE + b.size] += b
    return x[None, :].astype(np.float32)


# Where the syllables of each run begin and end (first and last sample above 1e-3).
TRUTH = [(1.208, 2.799), (4.205, 5.296)]


def events_of(out: list[Any]) -> list[Event]:
    return [o for o in out if isinstance(o, Event)]


def segments(events: list[Event]) -> list[tuple[float, float]]:
    starts = [e.time for e in events if e.kind == "speech_start"]
    ends = [e.time for e in events if e.kind == "speech_end"]
    assert [e.kind for e in events] == ["speech_start", "speech_end"] * len(starts)
    return list(zip(starts, ends, strict=True))


def decisions(kernel: Any, x: np.ndarray, sizes: list[int]) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    pos, k = 0, 0
    while pos < x.shape[1]:
        n = sizes[k % len(sizes)]
        k += 1
        out += kernel.process(x[:, pos : pos + n], RATE)
        pos += n
    return out + list(kernel.flush())


# --------------------------------------------------------------------------- detection


async def test_speech_runs_found_with_media_times(vad_backend: str) -> None:
    frames = split_frames(scene(), RATE, 320)
    for f in frames:
        f.pts += 10 * RATE  # the stream starts at 10 s: event times are media times
    vad = SileroVAD(name="vad")

    out = await run_node(vad, frames)

    assert vad.backend == vad_backend
    events = events_of(out)
    found = segments(events)
    assert len(found) == len(TRUTH)
    for (start, end), (a, b) in zip(found, TRUTH, strict=True):
        assert abs(start - (10 + a)) <= 0.064, (start, a)  # within two 32 ms windows
        assert -0.064 <= end - (10 + b) <= 0.128, (end, b)  # the model's probability decays
    for e in events:
        assert e.stage == "vad"
        assert e.payload["sample"] == round((e.time - 10) * RATE)
        assert e.payload["sample"] % 512 == 0  # decisions fall on window boundaries
        if e.kind == "speech_start":  # confirmed min_speech_ms (250 -> 8 windows) after it began
            assert e.payload["confirmed_time"] - e.time == pytest.approx(0.256)
        else:
            assert e.payload["confirmed_time"] - e.time == pytest.approx(0.128)
            assert e.payload["duration"] == pytest.approx(e.time - e.payload["start_time"])
    # Not gating: every frame passes, the same objects.
    passed = [o for o in out if isinstance(o, AudioFrame)]
    assert all(a is b for a, b in zip(passed, frames, strict=True))
    assert len(passed) == len(frames)


async def test_gate_passes_speech_with_preroll(vad_backend: str) -> None:
    signal = scene(seed=1)
    out = await run_node(SileroVAD(gate=True, preroll_ms=200.0), split_frames(signal, RATE, 480))
    bounds = [e.payload["sample"] for e in events_of(out)]
    assert len(bounds) == 4
    covered: list[list[int]] = []
    for o in out:
        if isinstance(o, AudioFrame):
            np.testing.assert_array_equal(o.samples, signal[:, o.pts : o.pts + o.num_samples])
            if covered and covered[-1][1] == o.pts:
                covered[-1][1] += o.num_samples
            else:
                covered.append([o.pts, o.pts + o.num_samples])
    want = [[max(0, s - 3200), e] for s, e in zip(bounds[::2], bounds[1::2], strict=True)]
    assert covered == want


def test_kernel_is_split_invariant(vad_backend: str) -> None:
    x = scene()
    path = silero.model_path()
    whole = decisions(_kernel(vad_backend, path), x, [x.shape[1]])
    assert len(whole) == 4
    for sizes in ([512], [320], [7, 1000, 513, 64]):
        assert decisions(_kernel(vad_backend, path), x, sizes) == whole


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_kernel_is_split_invariant_random(sizes: list[int]) -> None:
    x = scene()[:, : 3 * RATE]
    path = silero.model_path()
    want = decisions(SileroVADKernel(path), x, [x.shape[1]])
    assert decisions(SileroVADKernel(path), x, sizes) == want
    if NATIVE is not None and not PYTHON_ONLY:
        assert decisions(NATIVE(path), x, sizes) == want


def _kernel(backend: str, path: str, **kw: Any) -> Any:
    if backend == "python":
        return SileroVADKernel(path, **kw)
    assert NATIVE is not None, "the Rust engine is not built"
    return NATIVE(path, **kw)


# --------------------------------------------------------------------------- parity


# Probabilities of the two backends (tract and onnxruntime on the same file) may differ by this
# much per window; measured at most 3.5e-6 on the test scenes. Decisions then agree unless a
# window's probability sits within it of a threshold.
PROBABILITY_TOLERANCE = 1e-4


def probabilities(kernel: Any, x: np.ndarray) -> list[float]:
    """Each window's probability, feeding ``x`` a window at a time."""
    out = []
    for i in range(0, x.shape[1] - 511, 512):
        kernel.process(x[:, i : i + 512], RATE)
        out.append(kernel.probability)
    return out


@needs_native
def test_backends_agree_on_probabilities_and_segments() -> None:
    path = silero.model_path()
    for seed in (0, 1, 2):
        x = scene(seed=seed)
        py, rs = SileroVADKernel(path), NATIVE(path)
        p_py, p_rs = probabilities(py, x), probabilities(rs, x)
        assert np.max(np.abs(np.subtract(p_py, p_rs))) <= PROBABILITY_TOLERANCE
        assert max(p_rs) > 0.9 and min(p_rs) < 0.05  # both speech and silence were seen
        d_py = decisions(SileroVADKernel(path), x, [320])
        assert len(d_py) == 4
        assert decisions(NATIVE(path), x, [320]) == d_py


@needs_native
async def test_backends_give_the_same_events() -> None:
    frames = split_frames(scene(seed=1), RATE, 480)
    out = {}
    for backend in ("python", "rust"):
        vad = SileroVAD(name="vad", backend=backend)
        out[backend] = [(e.kind, e.time, e.payload) for e in events_of(await run_node(vad, frames))]
        assert vad.backend == backend
    assert len(out["rust"]) == 4
    assert out["rust"] == out["python"]


@needs_native
@settings(max_examples=6, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(-70, -20),
    st.lists(st.integers(1, 2000), min_size=1, max_size=4),
)
def test_backends_agree_on_random_scenes(seed: int, noise_db: float, sizes: list[int]) -> None:
    """Noise at a random level under random syllables; the rust kernel fed in random splits."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 10 ** (noise_db / 20), 2 * RATE)
    voiced = speech_like(1.2, seed=seed % 7, rate=RATE) * rng.uniform(0.05, 1.0)
    start = int(rng.integers(0, RATE // 2))
    x[start : start + voiced.size] += voiced
    x32 = x[None, :].astype(np.float32)
    path = silero.model_path()
    p_py, p_rs = probabilities(SileroVADKernel(path), x32), probabilities(NATIVE(path), x32)
    assert np.max(np.abs(np.subtract(p_py, p_rs))) <= PROBABILITY_TOLERANCE
    margin = min(min(abs(p - 0.5), abs(p - 0.35)) for p in p_py)
    if margin > PROBABILITY_TOLERANCE:  # no window on the fence: the decisions must agree
        want = decisions(SileroVADKernel(path), x32, [x32.shape[1]])
        assert decisions(NATIVE(path), x32, sizes) == want


@needs_native
def test_gil_is_released_during_inference() -> None:
    x = np.tile(scene(), 3)  # 18 s: about 560 windows, a few hundred ms of inference
    kernel = NATIVE(silero.model_path())
    spans: list[tuple[float, float]] = []

    def work() -> None:
        t0 = time.perf_counter()
        kernel.process(x, RATE)
        spans.append((t0, time.perf_counter()))

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL over quickly
    try:
        thread = threading.Thread(target=work)
        stamps = []
        thread.start()
        while thread.is_alive():
            stamps.append(time.perf_counter())
        thread.join()
    finally:
        sys.setswitchinterval(previous)
    ((t0, t1),) = spans
    during = np.count_nonzero((np.array(stamps) > t0) & (np.array(stamps) < t1))
    # With the GIL held through the call this thread could not run between the two stamps (but
    # for a switch interval's worth at the edges); a machine shared with other work may pause it,
    # so no bound on the longest gap.
    assert during > 1000, (during, t1 - t0)


async def test_engine_without_the_kernel_falls_back_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine built without the cargo feature `silero`: the Python twin runs, and says why."""
    from stream import engine

    without = types.SimpleNamespace(__version__="0.1.0")  # an engine lacking SileroVADKernel
    monkeypatch.setattr(engine, "_engine", without)
    monkeypatch.delenv("REMOTEMEDIA_RUNTIME", raising=False)
    vad = SileroVAD(name="sv")
    pipeline = Pipeline([vad])
    await pipeline.initialize()
    await pipeline.cleanup()
    assert vad.backend == "python"
    assert vad.backend_reason == (
        "fallback: engine built without the Silero kernel (cargo feature 'silero')"
    )
    assert "engine built without the Silero kernel" in pipeline.describe()
    with pytest.raises(BackendUnavailable, match="engine built without the Silero kernel"):
        SileroVAD(name="sv", backend="rust").initialize()


# --------------------------------------------------------------------------- errors


async def test_other_rates_and_stereo_are_format_errors(vad_backend: str) -> None:
    x = np.zeros((1, 4800), np.float32)
    with pytest.raises(NodeError) as info:
        await run_node(SileroVAD(name="sv"), split_frames(x, 48000, 480))
    err = info.value.__cause__
    assert isinstance(err, FormatError)
    assert str(err) == (
        "sv: Silero VAD runs at 16000 Hz, got 48000 Hz; put Resample(16000) before it"
    )
    k = _kernel(vad_backend, silero.model_path(), stage="k")
    with pytest.raises(FormatError, match=r"^k: Silero VAD takes mono audio, got 2 channels"):
        k.process(np.zeros((2, 512), np.float32), RATE)
    with pytest.raises(FormatError, match=r"^k: non-finite sample at channel 0, index 3"):
        k.process(np.array([[0, 0, 0, np.nan]], np.float32), RATE)
    with pytest.raises(FormatError, match=r"^k: expected a float32 array"):
        k.process(np.zeros((1, 512)), RATE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "threshold must be a number in [0, 1], got 1.5"),
        ({"neg_threshold": -0.1}, "neg_threshold must be a number in [0, 1], got -0.1"),
        ({"threshold": 0.3, "neg_threshold": 0.4}, "neg_threshold must be at most threshold"),
        ({"min_speech_ms": -1}, "min_speech_ms must be a number in [0, 3600000], got -1.0"),
        ({"min_silence_ms": float("nan")}, "min_silence_ms must be a number in [0, 3600000]"),
    ],
)
def test_bad_settings_are_config_errors(
    vad_backend: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SileroVAD(name="sv", **kwargs)
    assert str(info.value).startswith(f"sv: {message}")
    with pytest.raises(ConfigError) as info:
        _kernel(vad_backend, silero.model_path(), stage="k", **kwargs)
    assert str(info.value).startswith(f"k: {message}")
    with pytest.raises(ConfigError, match="preroll_ms must be"):
        SileroVAD(name="sv", preroll_ms=-5)


def test_defaults_and_names() -> None:
    vad = SileroVAD()
    assert vad.name.startswith("silero_vad") and vad.name[len("silero_vad") :].isdigit()
    assert vad.neg_threshold == pytest.approx(0.35)
    assert vad.params() == {
        "threshold": 0.5,
        "neg_threshold": None,
        "min_speech_ms": 250.0,
        "min_silence_ms": 100.0,
        "preroll_ms": 200.0,
        "gate": False,
    }


async def test_missing_model_is_backend_unavailable(
    vad_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(silero, "MODEL_PACKAGE", "no_such_silero_package")
    with pytest.raises(BackendUnavailable) as info:  # at initialize(), before any frame
        await run_node(SileroVAD(name="sv"), split_frames(scene(), RATE, 512))
    assert str(info.value).startswith("sv: the Silero VAD model is not installed; ")
    assert "pip install 'remotemedia[silero]'" in str(info.value)


def test_missing_onnxruntime_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(BackendUnavailable, match=r"^k: Silero VAD needs onnxruntime"):
        SileroVADKernel(silero.model_path(), stage="k")


def test_missing_model_file_is_backend_unavailable(vad_backend: str, tmp_path: Any) -> None:
    missing = str(tmp_path / "silero.onnx")
    with pytest.raises(BackendUnavailable) as info:
        _kernel(vad_backend, missing, stage="k")
    assert str(info.value).startswith(f"k: no Silero VAD model at {missing!r}")
    assert info.value.stage == "k"


@needs_native
def test_rust_kernel_rejects_a_file_that_is_not_the_model(tmp_path: Any) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not an onnx file")
    with pytest.raises(ConfigError, match=r"^k: model_path '.*other.onnx': not a Silero VAD model"):
        NATIVE(str(other), stage="k")
    with pytest.raises(ConfigError, match=r"^k: model_path must be a path, got 3"):
        NATIVE(3, stage="k")


@needs_native
async def test_rust_backend_needs_no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    vad = SileroVAD(backend="rust")
    found = segments(events_of(await run_node(vad, split_frames(scene(), RATE, 320))))
    assert len(found) == 2
    kernel = NATIVE(pathlib.Path(silero.model_path()))  # a path object works too
    assert (kernel.frame_ms, kernel.neg_threshold, kernel.probability) == (32.0, 0.35, None)
    assert kernel.model_path == silero.model_path()
