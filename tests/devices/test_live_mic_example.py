"""examples/live_mic.py runs against the virtual devices (in a subprocess, as a user runs it)."""

from __future__ import annotations

import ast
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.testing import tone

from ._signal import nonzero, peak_hz, rms_db
from .virtual_audio import VirtualAudio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "live_mic.py"


def test_live_mic_example_plays_the_microphone_through_gain(virtual: VirtualAudio) -> None:
    """--seconds is wall-clock time, so how much audio the run carries depends on how busy the
    machine is: what it printed is checked against its own stage table instead, and only as
    much audio as the measurements need (a third of the run) is asked for."""
    virtual.set_mic_input(tone(440, 3.0, 48000, amplitude=0.5))
    virtual.set_speaker_format(44100, 1)  # the example plays at the default device's rate
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--seconds", "1.5", "--gain-db", "-6"],
        env={**os.environ, **virtual.environ()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "from 'default' at 48000 Hz" in run.stdout
    assert "to   'default' at 44100 Hz" in run.stdout
    lines = re.findall(r"^\s*(\d+\.\d+) s  level\s+(-?[\d.]+) dBFS", run.stdout, re.MULTILINE)
    times, levels = [float(t) for t, _ in lines], [float(db) for _, db in lines]
    meter = re.search(r"^\s+meter\s+\S+\s+(\d+)/\d+", run.stdout, re.MULTILINE)
    mic = re.search(r"^microphone: (\{.*\})$", run.stdout, re.MULTILINE)
    speaker = re.search(r"^\s+speaker\s+\S+\s+(\d+)/\d+", run.stdout, re.MULTILINE)
    assert meter and mic and speaker, run.stdout
    # One line per 200 ms (10 frames) of audio through the meter, each at the time of the frame
    # that ended its 200 ms: 0.18 s, 0.38 s ... on the microphone's pts, unless frames were
    # dropped (a consumer more than a second behind), which only moves the later lines on.
    assert len(levels) == int(meter[1]) // 10 >= 2
    assert levels == pytest.approx([-15.0] * len(levels), abs=0.1)  # -9 dBFS tone, -6 dB gain
    stats = ast.literal_eval(mic[1])
    assert stats["overflows"] == stats["dropped"]  # the virtual device itself never overflows
    if stats["dropped"] == 0:
        assert times == pytest.approx([0.18 + 0.2 * i for i in range(len(times))], abs=1e-6)
    else:
        assert all(b - a >= 0.2 - 1e-6 for a, b in itertools.pairwise(times))
    played = nonzero(virtual.played(1)[0])
    assert 0.5 * 44100 <= played.size <= int(speaker[1]) * 882  # 20 ms frames at 44.1 kHz
    steady = played[4410:-4410]
    assert peak_hz(steady, 44100) == pytest.approx(440, abs=0.5)
    assert rms_db(steady) == pytest.approx(-15.05, abs=0.1)
    assert np.abs(steady).max() <= 0.2515


def test_live_mic_example_lists_devices(virtual: VirtualAudio) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--list"],
        env={**os.environ, **virtual.environ()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "virtual_mic" in run.stdout and "virtual_speaker" in run.stdout
