"""Device tests run on virtual ALSA devices (tests/devices/virtual_audio.py).

They are configured here, at collection, because PortAudio reads ALSA's configuration once, when
``sounddevice`` is first imported; the tests import it later (through ``media_nodes.devices``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from .virtual_audio import VirtualAudio

_root = Path(tempfile.mkdtemp(prefix="remotemedia-alsa-"))
atexit.register(shutil.rmtree, _root, ignore_errors=True)
VIRTUAL = VirtualAudio(_root)
os.environ.update(VIRTUAL.environ())
if "sounddevice" in sys.modules:  # imported before collection: make PortAudio scan again
    sd = sys.modules["sounddevice"]
    sd._terminate()
    sd._initialize()


@pytest.fixture
def virtual() -> VirtualAudio:
    """The virtual devices: write what the microphones hear, read what the speaker played."""
    for drain in (VIRTUAL.speaker, VIRTUAL.mic_clock):
        drain.settle()  # the last test's streams are closed: let their last bytes through
    VIRTUAL.speaker.take()  # start each test with nothing recorded
    VIRTUAL.mic_clock.mark()  # and the microphone's clock at its first sample
    return VIRTUAL
