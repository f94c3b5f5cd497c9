"""`remotemedia process` never loses data and never exits 0 on a cut or broken input.

Run as users run it (a subprocess); files are written with PyAV or the ``wave`` module.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from media._media import decode  # tests/ is on sys.path
from media.test_truncation import ALL, write_file, write_wide_wav

from .test_cli import remotemedia, write_wav


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("remotemedia: error: ") and "Traceback" not in stderr
    return lines[0]


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    with wave.open(str(path)) as w:
        channels, rate = w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return data.reshape(-1, channels).T, rate


# -- the input is never written over ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_writing_over_the_input_is_refused_and_the_input_kept(tmp_path: Path, how: str) -> None:
    src = tmp_path / "b.wav"
    write_wav(src, 10.0, 44100, 2)
    before = src.read_bytes()
    out = src
    if how == "symlink":
        out = tmp_path / "link.wav"
        out.symlink_to(src)
    elif how == "hard link":
        out = tmp_path / "link.wav"
        os.link(src, out)
    run = remotemedia("process", str(src), str(out), "--chain", "gain:-3")
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert f"{out} is the input file {src}" in line and "write to another path" in line
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"b.wav", out.name})


# -- a cut input: non-zero, one line, no plausible output ------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_a_cut_input_fails_with_one_line_and_no_output(tmp_path: Path, name: str) -> None:
    whole = write_file(tmp_path / name)
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    ext = "mkv" if name.startswith("av.") else "wav"  # video too: no "dropping video" warning
    out = tmp_path / f"out.{ext}"
    run = remotemedia("process", str(cut), str(out), "--chain", "gain:-3")
    assert run.returncode == 1, run.stdout
    line = one_error_line(run.stderr)
    assert str(cut) in line
    assert any(w in line for w in ("truncated", "cannot decode", "cannot open", "corrupt"))
    assert not out.exists()  # nothing that looks like a finished output
    partial = tmp_path / f"out.partial.{ext}"
    if partial.exists():  # what was decoded before the cut showed, named as such in the line
        assert line.endswith(f"the output so far is in {partial}")
        assert decode(partial).seconds > 0
    else:
        assert line.endswith(f"{out} was not written")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_cut_input_leaves_an_earlier_output_as_it_was(tmp_path: Path) -> None:
    src = write_file(tmp_path / "a.wav")
    out = tmp_path / "out.wav"
    first = remotemedia("process", str(src), str(out), "--chain", "gain:-3")
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    cut = tmp_path / "cut.ogg"
    whole = write_file(tmp_path / "a.ogg")
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    run = remotemedia("process", str(cut), str(out))
    assert run.returncode == 1
    assert "truncated" in one_error_line(run.stderr)
    assert out.read_bytes() == before


def test_a_whole_input_replaces_the_output_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, 2.0, 16000, 1)
    out = tmp_path / "out.wav"
    out.write_bytes(b"not a wav")
    run = remotemedia("process", str(src), str(out), "--chain", "gain:-6")
    assert run.returncode == 0, run.stderr
    data, rate = read_wav(out)
    assert rate == 16000 and data.shape == (1, 32000)
    source, _ = read_wav(src)
    np.testing.assert_allclose(data, source * 10 ** (-6 / 20), atol=1.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]


# -- 64 channels -----------------------------------------------------------------------------------


def test_a_64_channel_wav_is_processed_channel_for_channel(tmp_path: Path) -> None:
    written = write_wide_wav(tmp_path / "w64.wav", 64)
    out = tmp_path / "out.wav"
    run = remotemedia("process", str(tmp_path / "w64.wav"), str(out), "--chain", "gain:-6")
    assert run.returncode == 0, run.stderr
    data, rate = read_wav(out)
    assert rate == 16000 and data.shape == written.shape
    np.testing.assert_allclose(data, written * 10 ** (-6 / 20), atol=1.01)


def test_a_65_channel_wav_is_one_line_naming_the_limit(tmp_path: Path) -> None:
    write_wide_wav(tmp_path / "w65.wav", 65)
    out = tmp_path / "out.wav"
    run = remotemedia("process", str(tmp_path / "w65.wav"), str(out))
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert "w65.wav" in line and "65 audio channels" in line and "up to 64" in line
    assert not out.exists()
