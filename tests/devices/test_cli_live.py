"""`remotemedia live` and `remotemedia devices` on the virtual ALSA devices, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from stream.testing import tone

from ._signal import nonzero, peak_hz, rms_db
from .virtual_audio import VirtualAudio


def remotemedia(virtual: VirtualAudio, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env={**os.environ, **virtual.environ()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_live_plays_the_microphone_through_the_chain(virtual: VirtualAudio) -> None:
    virtual.set_mic_input(tone(440, 3.0, 48000, amplitude=0.5))
    virtual.set_speaker_format(44100, 1)
    run = remotemedia(virtual, "live", "--chain", "gain:-6", "--seconds", "1.5")
    assert run.returncode == 0, run.stderr
    assert "pipeline 'live'" in run.stdout and "RMS" in run.stdout
    played = nonzero(virtual.played(1)[0])
    assert played.size > 44100
    steady = played[4410:-4410]
    assert peak_hz(steady, 44100) == pytest.approx(440, abs=0.5)
    assert rms_db(steady) == pytest.approx(-15.05, abs=0.1)  # a -9 dBFS tone, 6 dB down


def test_live_records_to_a_file(virtual: VirtualAudio, tmp_path: Path) -> None:
    virtual.set_mic_input(tone(1000, 3.0, 48000, amplitude=0.5))
    out = tmp_path / "take.flac"
    run = remotemedia(virtual, "live", "--chain", "gain:-3", "--out", str(out), "--seconds", "1")
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as c:
        data = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0]
    x = data.astype(np.float64) / 32768
    assert x.size >= 40000
    assert peak_hz(x[4800:], 48000) == pytest.approx(1000, abs=1)
    assert rms_db(x[4800:]) == pytest.approx(-12.0, abs=0.2)


def test_devices_lists_the_virtual_devices(virtual: VirtualAudio) -> None:
    run = remotemedia(virtual, "devices")
    assert run.returncode == 0, run.stderr
    assert "virtual_mic" in run.stdout and "virtual_speaker" in run.stdout
    assert "< default input, > default output" in run.stdout


def test_unknown_device_is_one_line_listing_the_devices(virtual: VirtualAudio) -> None:
    run = remotemedia(virtual, "live", "--input-device", "no such mic", "--seconds", "1")
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("remotemedia: error: ")
    assert "virtual_mic" in lines[0]


def test_ctrl_c_stops_cleanly_and_finalizes_the_file(virtual: VirtualAudio, tmp_path: Path) -> None:
    import signal
    import time

    virtual.set_mic_input(tone(500, 10.0, 48000, amplitude=0.5))
    out = tmp_path / "take.wav"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "live", "--out", str(out)],
        env={**os.environ, **virtual.environ()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "remotemedia: stopped" in stderr and "Traceback" not in stderr
    with av.open(str(out)) as c:
        x = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0] / 32768
    assert x.size > 24000  # at least half a second was recorded and the file is whole
    assert peak_hz(x, 48000) == pytest.approx(500, abs=2)
