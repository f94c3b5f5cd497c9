"""EnergyVAD: speech/non-speech from frame energy, as ``speech_start``/``speech_end`` events, and
optionally a gate that passes only the speech (with a pre-roll).

The kernel (Rust, or the Python twin below) runs the state machine of docs/stages-audio.md on
analysis frames of its own (``frame_ms``, counted from the stream's first sample, whatever the
input frames are), so its decisions do not depend on how the input is split; both kernels make
the same decisions on the same audio. The node turns the decisions into events carrying media
times and, with ``gate=True``, into frames holding exactly the speech plus the pre-roll.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from stream.frames import AudioFrame, audio_frame_unchecked
from stream.kernel import AnalysisKernel, Block, StreamFormat
from stream.kernel_node import KernelNode, check_audio
from stream.stage_settings import Setting, Settings, in_range

MAX_MS = 3_600_000.0  # the longest duration setting: one hour

Decision = tuple[str, int, int]  # (kind, sample, confirmed), samples counted from stream start


def duration(name: str, doc: str, default: float, *, kernel: bool = True) -> Setting:
    """A duration setting in ms, 0 to an hour."""
    return Setting(name, "float", default, in_range(name, 0.0, MAX_MS), doc=doc, kernel=kernel)


PREROLL_MS = duration("preroll_ms", "audio kept before speech by the gate", 200.0, kernel=False)
GATE = Setting("gate", "bool", False, bool, doc="pass only speech (plus pre-roll)", kernel=False)

SETTINGS = Settings(
    "EnergyVAD",
    Setting(
        "threshold_db",
        "float",
        -40.0,
        in_range("threshold_db", -200.0, 0.0),
        doc="mean square (dBFS) of a frame that starts speech",
    ),
    Setting(
        "hysteresis_db",
        "float",
        6.0,
        in_range("hysteresis_db", 0.0, 200.0),
        doc="how far below threshold_db a frame is quiet",
    ),
    duration("min_speech_ms", "how long speech lasts before it is confirmed", 100.0),
    duration("min_silence_ms", "how long quiet lasts before speech ends", 300.0),
    PREROLL_MS,
    Setting(
        "frame_ms",
        "float",
        10.0,
        in_range("frame_ms", 0.0, 1000.0, open_low=True),
        doc="analysis frame length",
    ),
    GATE,
)


def _check(stage: str, name: str, value: Any) -> float:
    """One EnergyVAD setting validated alone (ConfigError naming ``stage``)."""
    result: float = SETTINGS[name].validate(stage, value)
    return result


def ms_to_samples(ms: float, rate: int) -> int:
    """``round(ms * rate / 1000)`` (half to even, as the engine rounds)."""
    return round(ms * rate / 1000.0)


class EnergyVADKernel(AnalysisKernel[list[Decision]]):
    """Python twin of ``stream._engine.EnergyVADKernel`` (docs/stages-audio.md).

    ``process(samples, sample_rate)`` and ``flush()`` return the decisions completed, as
    ``(kind, sample, confirmed)``: ``kind`` is ``"speech_start"`` or ``"speech_end"``, ``sample``
    where speech began or ended and ``confirmed`` when that became certain, both in samples from
    the stream's first one.
    """

    def __init__(
        self,
        threshold_db: float = -40.0,
        hysteresis_db: float = 6.0,
        min_speech_ms: float = 100.0,
        min_silence_ms: float = 300.0,
        frame_ms: float = 10.0,
        *,
        stage: str = "energy_vad",
    ) -> None:
        super().__init__(stage=stage)
        values = SETTINGS.validate(
            stage,
            {
                "threshold_db": threshold_db,
                "hysteresis_db": hysteresis_db,
                "min_speech_ms": min_speech_ms,
                "min_silence_ms": min_silence_ms,
                "frame_ms": frame_ms,
            },
            kernel=True,
        )
        self.threshold_db: float = values["threshold_db"]
        self.hysteresis_db: float = values["hysteresis_db"]
        self.min_speech_ms: float = values["min_speech_ms"]
        self.min_silence_ms: float = values["min_silence_ms"]
        self.frame_ms: float = values["frame_ms"]
        # Compared as linear mean squares: the same float64 values as the engine's, so the same
        # decisions even for a frame exactly at a threshold.
        self._start_energy = 10.0 ** (self.threshold_db / 10.0)
        self._end_energy = 10.0 ** ((self.threshold_db - self.hysteresis_db) / 10.0)
        self._format = StreamFormat()
        self._clear()

    def _clear(self) -> None:
        self._frame = 0
        self._min_speech = self._min_silence = 0
        self._acc = np.zeros(0)
        self._filled = self._analyzed = self._seen = 0
        self._state = "silence"
        self._onset = 0  # start of the pending run in the maybe_* states

    @property
    def state(self) -> str:
        """``"silence"``, ``"maybe_speech"``, ``"speech"`` or ``"maybe_silence"``."""
        return self._state

    @property
    def speaking(self) -> bool:
        """Whether speech is on (confirmed, its end not yet confirmed)."""
        return self._state in ("speech", "maybe_silence")

    @property
    def pending_sample(self) -> int | None:
        """Where the unconfirmed run began (a candidate start or end), or None."""
        return self._onset if self._state.startswith("maybe") else None

    @property
    def analyzed_samples(self) -> int:
        """Samples of the stream in complete analysis frames."""
        return self._analyzed

    @property
    def frame_samples(self) -> int | None:
        """The analysis frame length of the current stream (None before its first block)."""
        return self._frame or None

    def process(self, samples: Any, sample_rate: int) -> list[Decision]:
        block = self.check(samples, sample_rate)
        rate = int(sample_rate)
        if self._format.check(self, block, rate):
            self._frame = max(1, ms_to_samples(self.frame_ms, rate))
            self._min_speech = ms_to_samples(self.min_speech_ms, rate)
            self._min_silence = ms_to_samples(self.min_silence_ms, rate)
            self._acc = np.zeros(block.shape[0])
        channels, n = block.shape
        squares = block.astype(np.float64)
        squares *= squares
        out: list[Decision] = []
        pos = 0
        while pos < n:
            take = min(self._frame - self._filled, n - pos)
            # Sample by sample from the carried sum (cumsum is sequential), as the engine adds.
            run = np.concatenate((self._acc[:, None], squares[:, pos : pos + take]), axis=1)
            self._acc = np.cumsum(run, axis=1)[:, -1]
            pos += take
            self._filled += take
            if self._filled == self._frame:
                total = 0.0
                for a in self._acc.tolist():
                    total += a
                energy = total / (channels * self._frame)
                self._acc = np.zeros(channels)
                self._filled = 0
                start = self._analyzed
                self._analyzed += self._frame
                self._step(start, energy >= self._start_energy, energy < self._end_energy, out)
        self._seen += n
        return out

    def _step(self, start: int, loud: bool, quiet: bool, out: list[Decision]) -> None:
        state = self._state
        if state == "silence":
            if loud:
                self._confirm_start(start, out)
        elif state == "maybe_speech":
            if quiet:
                self._state = "silence"
            else:
                self._confirm_start(self._onset, out)
        elif state == "speech":
            if quiet:
                self._confirm_end(start, out)
        elif not quiet:  # maybe_silence
            self._state = "speech"
        else:
            self._confirm_end(self._onset, out)

    def _confirm_start(self, onset: int, out: list[Decision]) -> None:
        end = self._analyzed
        if end - onset >= self._min_speech:
            out.append(("speech_start", onset, end))
            self._state = "speech"
        else:
            self._state, self._onset = "maybe_speech", onset

    def _confirm_end(self, onset: int, out: list[Decision]) -> None:
        end = self._analyzed
        if end - onset >= self._min_silence:
            out.append(("speech_end", onset, end))
            self._state = "silence"
        else:
            self._state, self._onset = "maybe_silence", onset

    def flush(self) -> list[Decision]:
        out: list[Decision] = []
        if self._state == "speech":
            out.append(("speech_end", self._seen, self._seen))
        elif self._state == "maybe_silence":
            out.append(("speech_end", self._onset, self._seen))
        self.reset()
        return out

    def reset(self) -> None:
        self._format.clear()
        self._clear()


class _Held:
    """Audio held by a gate: input frames with their first sample's index in the stream."""

    __slots__ = ("frames", "start")

    def __init__(self) -> None:
        self.frames: deque[tuple[int, AudioFrame]] = deque()
        self.start = 0  # the first sample not yet emitted or dropped

    def drop(self, upto: int) -> None:
        """Forget the samples before ``upto``."""
        self.start = max(self.start, upto)
        frames = self.frames
        while frames and frames[0][0] + frames[0][1].num_samples <= self.start:
            frames.popleft()

    def take(self, upto: int, rate: int) -> list[AudioFrame]:
        """The held samples before ``upto``, as frames; pieces whose pts run on are joined."""
        pieces: list[tuple[Block, int | None]] = []
        whole: AudioFrame | None = None
        for first, frame in self.frames:
            if first >= upto:
                break
            n = frame.num_samples
            lo, hi = max(self.start - first, 0), min(upto - first, n)
            if lo >= hi:
                continue
            pts = _pts_at(frame, lo, rate)
            pieces.append((frame.samples[:, lo:hi], pts))
            whole = frame if (lo, hi) == (0, n) else None
        self.drop(upto)
        if len(pieces) == 1 and whole is not None:
            return [whole]  # a whole input frame, as it came
        tb = Fraction(1, rate)
        out: list[AudioFrame] = []
        run: list[Block] = []
        run_pts: int | None = None
        expected: int | None = None
        for samples, pts in pieces:
            runs_on = pts == expected if pts is not None else run_pts is None
            if run and not runs_on:
                out.append(_frame(run, rate, run_pts, tb))
                run = []
            if not run:
                run_pts = pts
            run.append(samples)
            expected = None if pts is None else pts + samples.shape[1]
        if run:
            out.append(_frame(run, rate, run_pts, tb))
        return out

    def clear(self) -> None:
        self.frames.clear()
        self.start = 0


def _pts_at(frame: AudioFrame, offset: int, rate: int) -> int | None:
    """pts, in samples of ``rate``, of sample ``offset`` of ``frame``."""
    if frame.pts is None or frame.time_base is None:
        return None
    if frame.time_base * rate == 1:
        return frame.pts + offset
    return round(frame.pts * frame.time_base * rate) + offset


def _frame(blocks: list[Block], rate: int, pts: int | None, tb: Fraction) -> AudioFrame:
    samples = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    return audio_frame_unchecked(
        np.ascontiguousarray(samples), rate, pts, tb if pts is not None else None
    )


class EnergyVAD(KernelNode):
    """Voice activity from energy: ``speech_start``/``speech_end`` events, optionally a gate.

    A frame (``frame_ms`` of analysis) at least ``threshold_db`` (mean square, dBFS) loud starts
    speech, confirmed once it lasted ``min_speech_ms`` without a frame below ``threshold_db -
    hysteresis_db``; speech ends once such quiet frames lasted ``min_silence_ms``. Event times are
    when speech began and ended (media seconds; None for untimed audio), not when it was
    confirmed. ``gate=True`` passes only the speech, from ``preroll_ms`` before its start, and
    drops the rest; frames keep their true pts. Raises ConfigError for bad settings.
    """

    native_kernel = "EnergyVADKernel"
    python_kernel = EnergyVADKernel
    fusable: ClassVar[bool] = False  # it emits events (and gates), which a native chain cannot
    settings = SETTINGS
    threshold_db: float
    hysteresis_db: float
    min_speech_ms: float
    min_silence_ms: float
    preroll_ms: float
    frame_ms: float
    gate: bool

    def __init__(
        self,
        threshold_db: float = -40.0,
        hysteresis_db: float = 6.0,
        min_speech_ms: float = 100.0,
        min_silence_ms: float = 300.0,
        preroll_ms: float = 200.0,
        frame_ms: float = 10.0,
        gate: bool = False,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name, backend=backend)
        if name is None:  # "energy_vad3", not the generic "energy_v_a_d3"
            self.name = "energy_vad" + self.name.removeprefix("energy_v_a_d")
        self.configure(
            threshold_db=threshold_db,
            hysteresis_db=hysteresis_db,
            min_speech_ms=min_speech_ms,
            min_silence_ms=min_silence_ms,
            preroll_ms=preroll_ms,
            frame_ms=frame_ms,
            gate=gate,
        )
        self._start_state()

    def _start_state(self) -> None:
        self._held = _Held()
        self._anchors: deque[tuple[int, float | None]] = deque()  # (first sample, its time)
        self._restart()

    def _restart(self) -> None:
        self._rate = 0
        self._seen = 0
        self._preroll = 0
        self._horizon = 0
        self._speaking = False
        self._onset_time: float | None = None
        self._onset = 0
        self._held.clear()
        self._anchors.clear()

    def params(self) -> dict[str, Any]:
        return {**super().params(), "preroll_ms": self.preroll_ms, "gate": self.gate}

    @property
    def speaking(self) -> bool:
        """Whether speech is on: its start was confirmed and its end not yet."""
        return self._speaking

    def initialize(self) -> None:
        super().initialize()
        self._restart()

    def _time(self, sample: int) -> float | None:
        for first, time in reversed(self._anchors):
            if first <= sample:
                return None if time is None else time + (sample - first) / self._rate
        return None  # pragma: no cover - anchors reach back past every pending decision

    def _decide(self, decisions: list[Decision], out: list[Any]) -> None:
        for kind, sample, confirmed in decisions:
            if kind == "speech_start":
                if self.gate:
                    self._held.drop(sample - self._preroll)
                self._speaking = True
                self._onset, self._onset_time = sample, self._time(sample)
                out.append(
                    self.event(
                        kind, self._onset_time, sample=sample, confirmed_time=self._time(confirmed)
                    )
                )
            else:
                if self.gate:
                    out.extend(self._held.take(sample, self._rate))
                self._speaking = False
                out.append(
                    self.event(
                        kind,
                        self._time(sample),
                        sample=sample,
                        confirmed_time=self._time(confirmed),
                        start_time=self._onset_time,
                        duration=(sample - self._onset) / self._rate,
                    )
                )

    def process(self, frame: Any) -> list[Any]:
        audio = check_audio(self.name, frame)
        if audio is None:
            return [frame]
        kernel = self._kernel
        decisions = kernel.process(audio.samples, audio.sample_rate)
        start = self._seen
        if start == 0:
            rate = self._rate = audio.sample_rate
            self._preroll = ms_to_samples(self.preroll_ms, rate)
            # How far back a decision can reach: a pending run lasts at most the longer minimum
            # duration, plus a frame to confirm it and one not yet complete.
            frame_len = max(1, ms_to_samples(self.frame_ms, rate))
            longest = max(self.min_speech_ms, self.min_silence_ms)
            self._horizon = ms_to_samples(longest, rate) + 2 * frame_len + 1
        self._anchors.append((start, audio.time))
        self._seen = start + audio.num_samples
        out: list[Any] = []
        if self.gate:
            self._held.frames.append((start, audio))
        else:
            out.append(frame)
        self._decide(decisions, out)
        if self.gate:
            pending = kernel.pending_sample
            upto = kernel.analyzed_samples if pending is None else pending
            if self._speaking:
                out.extend(self._held.take(upto, self._rate))
            else:
                self._held.drop(upto - self._preroll)
        anchors = self._anchors
        oldest = self._seen - self._horizon
        while len(anchors) > 1 and anchors[1][0] <= oldest:
            anchors.popleft()
        return out

    def flush(self) -> list[Any]:
        out: list[Any] = []
        self._decide(self._kernel.flush(), out)
        self._restart()
        return out

    def cleanup(self) -> None:
        super().cleanup()
        self._restart()


__all__ = ["EnergyVAD", "EnergyVADKernel"]
