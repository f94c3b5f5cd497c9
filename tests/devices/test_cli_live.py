"""`remotemedia live` and `remotemedia devices` on the virtual ALSA devices, in a subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from stream.testing import tone

from ._signal import nonzero, peak_hz, rms_db
from .virtual_audio import VirtualAudio

WAV_HEADER_MAX = 4096  # bytes before the samples in a WAV file FFmpeg writes (44 and a LIST chunk)


def remotemedia(virtual: VirtualAudio, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env={**os.environ, **virtual.environ()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def stage_frames(stdout: str, stage: str) -> tuple[int, int]:
    """Frames in and out of ``stage``, from the table a run prints at its end."""
    found = re.search(rf"^\s+{re.escape(stage)}\s+\S+\s+(\d+)/(\d+)\s", stdout, re.MULTILINE)
    assert found, f"no row for {stage!r} in:\n{stdout}"
    return int(found[1]), int(found[2])


# A --seconds run lasts that long on the wall clock, so how much audio it carries depends on how
# busy the machine is; the tests below check what went through against the stage table, and ask
# for only as much audio as their measurements need (a third of the run).


def test_live_plays_the_microphone_through_the_chain(virtual: VirtualAudio) -> None:
    virtual.set_mic_input(tone(440, 3.0, 48000, amplitude=0.5))
    virtual.set_speaker_format(44100, 1)
    run = remotemedia(virtual, "live", "--chain", "gain:-6", "--seconds", "1.5")
    assert run.returncode == 0, run.stderr
    assert "pipeline 'live'" in run.stdout and "RMS" in run.stdout
    taken, _ = stage_frames(run.stdout, "speaker")
    played = nonzero(virtual.played(1)[0])
    assert 0.5 * 44100 <= played.size <= taken * 882  # 20 ms frames, played at 44.1 kHz
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
    taken, _ = stage_frames(run.stdout, "output")
    assert x.size == taken * 960  # every frame the sink took is in the file
    assert x.size >= 0.33 * 48000
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


@contextlib.contextmanager
def sigint_reaches_children() -> Iterator[None]:
    """Start children with Ctrl-C's default action, as a terminal starts them.

    A shell starts a background job (``make test &``) with SIGINT ignored, and an ignored
    signal stays ignored in the children, which Python then leaves alone: ``remotemedia live``
    would run on after the test's SIGINT. A handled one is reset to the default in a child.
    """
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def bytes_written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def test_ctrl_c_stops_cleanly_and_finalizes_the_file(virtual: VirtualAudio, tmp_path: Path) -> None:
    virtual.set_mic_input(tone(500, 30.0, 48000, amplitude=0.5))
    out = tmp_path / "take.wav"
    with sigint_reaches_children():
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "live", "--out", str(out)],
            env={**os.environ, **virtual.environ()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        # Ctrl-C once a second of audio is on disk (in the file the sink writes beside ``out``):
        # however long the start took, the recording is under way when it is stopped.
        deadline = time.monotonic() + 60
        while (written := bytes_written(tmp_path)) < WAV_HEADER_MAX + 96000:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{written} bytes written in 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()  # a child left running would go on recording from the virtual microphone
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "remotemedia: stopped" in stderr and "Traceback" not in stderr
    with av.open(str(out)) as c:
        x = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0] / 32768
    assert x.size >= (written - WAV_HEADER_MAX) // 2  # what was on disk, and the file is whole
    assert peak_hz(x, 48000) == pytest.approx(500, abs=2)
