"""The remotemedia command, run as users run it: a subprocess, checked by outputs and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from stream.testing import tone


def remotemedia(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMOTEMEDIA_RUNTIME"} | {
        "REMOTEMEDIA_RUNTIME": os.environ.get("REMOTEMEDIA_RUNTIME", "auto")
    }
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def write_wav(path: Path, seconds: float = 1.0, rate: int = 44100, channels: int = 2) -> None:
    x = np.rint(tone(1000, seconds, rate, channels) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(x.T).tobytes())


def decode(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray() for f in c.decode(audio=0)]
        rate = c.streams.audio[0].rate
        layout = c.streams.audio[0].layout.nb_channels
    data = np.concatenate(frames, axis=1)
    return data.reshape(-1, layout).T if data.shape[0] == 1 and layout > 1 else data, rate


def test_demo_is_the_default_command(tmp_path: Path) -> None:
    result = remotemedia("--seconds", "0.5", "--out", str(tmp_path / "d.wav"))
    assert result.returncode == 0, result.stderr
    assert "pipeline 'demo'" in result.stdout and "resample" in result.stdout
    with wave.open(str(tmp_path / "d.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 8000)


@pytest.mark.parametrize("out_name", ["out.wav", "out.flac", "out.ogg"])
def test_process_converts_a_file_through_a_chain(tmp_path: Path, out_name: str) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, 1.0, 44100, 2)
    out = tmp_path / out_name
    result = remotemedia("process", str(src), str(out), "--chain", "mix:1,resample:16000,gain:-6")
    assert result.returncode == 0, result.stderr
    assert "real time" in result.stdout and "pipeline 'process'" in result.stdout
    data, rate = decode(out)
    assert data.shape[0] == 1
    expected_rate = 48000 if out_name.endswith(".ogg") else 16000  # opus encodes at 48 kHz
    assert rate == expected_rate
    assert abs(data.shape[1] / rate - 1.0) < 0.03
    x = data[0].astype(np.float64)
    x = x / 32768 if data.dtype == np.int16 else x
    rms = np.sqrt(np.mean(x[rate // 10 : -rate // 10] ** 2))
    assert abs(20 * np.log10(rms / (0.5 / np.sqrt(2))) + 6) < 0.5  # -6 dB from the 0.5 sine
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * rate / x.size - 1000) < 5


def test_process_with_a_pipeline_file(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, 0.5, 48000, 1)
    manifest = tmp_path / "p.json"
    manifest.write_text(
        json.dumps({"nodes": [{"type": "Resample", "params": {"sample_rate": 8000}}]})
    )
    out = tmp_path / "out.wav"
    result = remotemedia("process", str(src), str(out), "--pipeline", str(manifest))
    assert result.returncode == 0, result.stderr
    assert decode(out)[1] == 8000


def test_run_and_validate_a_pipeline_file(tmp_path: Path) -> None:
    out = tmp_path / "tone.flac"
    manifest = tmp_path / "p.json"
    manifest.write_text(
        json.dumps(
            {
                "name": "tone",
                "nodes": [
                    {"type": "ToneSource", "params": {"freq_hz": 500, "duration_s": 0.5}},
                    {"type": "Gain", "params": {"gain_db": -6}},
                    {"type": "FileSink", "params": {"path": str(out)}},
                ],
            }
        )
    )
    valid = remotemedia("validate", str(manifest))
    assert valid.returncode == 0 and "ok, 3 stages" in valid.stdout
    result = remotemedia("run", str(manifest))
    assert result.returncode == 0, result.stderr
    data, rate = decode(out)
    assert rate == 48000 and data.shape[1] == 24000


def test_validate_reports_every_problem_with_its_location(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.json"
    manifest.write_text(
        json.dumps(
            {
                "nodes": [
                    {"type": "Resample", "params": {"sample_rate": 3}},
                    {"type": "Nope"},
                    {"type": "Gain", "params": {"volume": 1}},
                ]
            }
        )
    )
    result = remotemedia("validate", str(manifest))
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{manifest}: nodes[0]: ")
    assert lines[1].startswith(f"{manifest}: nodes[1]: unknown node type 'Nope'")
    assert lines[2].startswith(f"{manifest}: nodes[2].params: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["process", "/nonexistent/in.wav", "OUT.wav", "--chain", "gain:-3"], "in.wav"),
        (["process", "IN", "OUT.wav", "--chain", "gain"], "chain item 1 'gain': needs an argument"),
        (["process", "IN", "OUT.wav", "--chain", "mix:1,warp:9"], "chain item 2 'warp:9': unknown"),
        (["process", "IN", "OUT.xyz", "--chain", "gain:1"], "OUT.xyz"),
        (["run", "/nonexistent.json"], "cannot read"),
        (["validate", "NOTJSON"], "not valid JSON"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(
    tmp_path: Path, args: list[str], message: str
) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, 0.1)
    (tmp_path / "NOTJSON").write_text("{")
    args = [str(src) if a == "IN" else a for a in args]
    args = [str(tmp_path / a) if a in ("OUT.wav", "OUT.xyz", "NOTJSON") else a for a in args]
    result = remotemedia(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("remotemedia: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = remotemedia("run", "/nonexistent.json", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr
