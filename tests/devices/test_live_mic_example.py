"""examples/live_mic.py runs against the virtual devices (in a subprocess, as a user runs it)."""

from __future__ import annotations

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
    levels = [float(x) for x in re.findall(r"level\s+(-?[\d.]+) dBFS", run.stdout)]
    assert len(levels) >= 5
    assert levels == pytest.approx([-15.0] * len(levels), abs=0.1)  # -9 dBFS tone, -6 dB gain
    assert "from 'default' at 48000 Hz" in run.stdout
    assert "to   'default' at 44100 Hz" in run.stdout
    assert re.search(r"microphone: \{'frames': \d+, 'overflows': 0", run.stdout)
    played = nonzero(virtual.played(1)[0])
    assert played.size > 44100  # more than a second reached the speaker
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
