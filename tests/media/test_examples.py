"""examples/transcode.py, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from media_nodes import FileSink
from stream import Pipeline
from stream.testing import split_frames, tone

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "transcode.py"


async def test_transcode_makes_16k_mono_wav_of_the_same_length(tmp_path: Path) -> None:
    src = tmp_path / "talk.m4a"
    await Pipeline([FileSink(str(src))]).run(split_frames(tone(700, 2.0, 44100, 2), 44100, 1024))
    dst = tmp_path / "talk-16k.wav"
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), str(src), str(dst)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "pipeline 'transcode'" in run.stdout
    with av.open(str(dst)) as c:
        stream = c.streams.audio[0]
        assert (stream.rate, stream.layout.nb_channels, stream.codec_context.name) == (
            16000,
            1,
            "pcm_s16le",
        )
        x = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0] / 32768
    assert abs(x.size - 32000) <= 1100  # AAC's priming/padding changes the length a little
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / x.size - 700) < 2
