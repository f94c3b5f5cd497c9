"""Every script in examples/ runs as a user runs it (a subprocess, smallest arguments), exits 0
and prints what it is about; a new example without a case here fails the coverage check.

Deeper checks of two examples live beside the features they use: tests/media/test_examples.py
(transcode.py's output file) and tests/devices/test_live_mic_example.py (live_mic.py on the
virtual sound devices; here only its --help, as no device is assumed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@dataclass
class Case:
    """``args`` (``{tmp}`` is the test's directory), the patterns stdout must hold, and a check
    of what the run wrote."""

    args: list[str]
    expect: list[str]
    check: Callable[[Path, str], None] | None = None
    setup: Callable[[Path], None] | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _duration(path: Path, kind: str = "audio") -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0] if kind == "audio" else c.streams.video[0]
        frames = list(c.decode(stream))
    if kind == "audio":
        return sum(f.samples for f in frames) / frames[0].sample_rate
    return float(len(frames))


def _talk_file(tmp: Path) -> None:
    rate = 44100
    t = np.arange(rate) / rate
    x = np.rint(0.3 * np.sin(2 * np.pi * 700 * t) * 32767).astype(np.int16)[None, :]
    with av.open(str(tmp / "talk.wav"), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(x, format="s16p", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _check_vad(tmp: Path, out: str) -> None:
    passed = float(re.search(r"gate: ([\d.]+) s of audio passed", out).group(1))  # type: ignore[union-attr]
    assert 1.5 < passed < 3.0  # two utterances of 1.2 s (less their quiet ends) plus pre-roll
    assert _duration(tmp / "speech.wav") == pytest.approx(passed, abs=0.05)


def _check_denoise(tmp: Path, out: str) -> None:
    gain = float(re.search(r"SNR out .*\(\+([\d.]+) dB\)", out).group(1))  # type: ignore[union-attr]
    assert gain >= 3.0  # measured 6.9-7.4 dB at 0 dB white noise
    assert _duration(tmp / "clean.wav") == pytest.approx(2.0, abs=0.05)


def _check_echo(tmp: Path, out: str) -> None:
    found = float(re.search(r"echo delay found: ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    assert 300.0 <= found <= 330.0
    level = float(re.search(r"near-end level in double talk: ([-+\d.]+) dB", out).group(1))  # type: ignore[union-attr]
    assert abs(level) <= 0.5


def _check_mix(tmp: Path, out: str) -> None:
    # The bed: a 0.2 tone (-17 dBFS) through -3 dB, mixed at -6 dB; ducked 12 dB from 1 s.
    rows = re.findall(r"^\s+(\d)\s+(-[\d.]+) dB\s+(-[\d.]+) dB", out, re.M)
    assert float(rows[0][2]) == pytest.approx(-26.0, abs=0.3)
    assert _duration(tmp / "mix.wav") == pytest.approx(2.0, abs=0.05)


def _check_video(tmp: Path, out: str) -> None:
    assert _duration(tmp / "small.mp4", "video") == 15.0  # 1 s at 15 fps


CASES: dict[str, Case] = {
    "vad_segments.py": Case(
        ["--seconds", "4", "--gate", "{tmp}/speech.wav"],
        [r"energy: speech\s+0\.\d+ s", r"energy: 2 segments", r"pipeline 'vad'"],
        _check_vad,
    ),
    "denoise_file.py": Case(
        ["--seconds", "2", "--out", "{tmp}/clean.wav"],
        [r"SNR in\s+-?[\d.]+ dB", r"SNR out", r"pipeline 'denoise'"],
        _check_denoise,
    ),
    "echo_cancel.py": Case(
        ["--seconds", "8", "--delay-ms", "300"],
        [r"echo delay found", r"\d+-\d+\s+[-\d.]+ dB \(double talk\)", r"pipeline 'echo'"],
        _check_echo,
    ),
    "mix_streams.py": Case(
        ["--seconds", "2", "--out", "{tmp}/mix.wav"],
        [r"the bed ducked to -18 dB", r"mixed 100 frames \(2.00 s\)", r"pipeline 'mix'"],
        _check_mix,
    ),
    "video_resize.py": Case(
        ["--seconds", "1", "--out", "{tmp}/small.mp4"],
        [r"made .*clip\.mp4", r"out: 15 pictures, \(320, 240, 'gray'\)", r"written: \w+ 320x240"],
        _check_video,
    ),
    "levels.py": Case(
        ["--seconds", "1"],
        [r"0\.00 s\s+rms", r"10 level events over 1\.00 s"],
    ),
    "transcode.py": Case(
        ["{tmp}/talk.wav", "{tmp}/talk-16k.wav"],
        [r"pipeline 'transcode'"],
        lambda tmp, out: None if (tmp / "talk-16k.wav").exists() else pytest.fail("no output"),
        _talk_file,
    ),
    "voice_frontend.py": Case([], [r"100 frames in, 100 out", r"pipeline 'voice'"]),
    "live_mic.py": Case(["--help"], [r"usage: live_mic.py", r"--gain-db"]),
}


def test_every_example_has_a_case() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script: str, tmp_path: Path) -> None:
    case = CASES[script]
    if case.setup is not None:
        case.setup(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, **case.extra},
    )
    assert run.returncode == 0, f"{script} failed:\n{run.stdout}\n{run.stderr}"
    for pattern in case.expect:
        assert re.search(pattern, run.stdout, re.M), f"{pattern!r} not in:\n{run.stdout}"
    if case.check is not None:
        case.check(tmp_path, run.stdout)
