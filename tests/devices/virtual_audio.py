"""Virtual ALSA devices for the device tests: real PortAudio and ALSA, no sound card.

ALSA's ``file`` plugin over its ``null`` device makes a PCM that plays into a file and records
from one (``infile``). On its own it runs as fast as the CPU allows. To make a device run in real
time, its output file is a FIFO that a thread here drains at the device's byte rate: the plugin's
writes block when the pipe is full, which paces PortAudio's thread as a sound card's clock
would. A capture stream writes what it records to its ``file`` too, so the same trick paces a
microphone. (An ``infile`` that is itself a FIFO does not work: the plugin fills short reads
with silence; and putting ``plug``/``linear`` on top of ``file`` skips input blocks under
PortAudio's mmap access, so the devices here are plain ``file`` PCMs and the samples are
float32, the format the nodes ask for.)

Devices (``.asoundrc``-style config in ``$XDG_CONFIG_HOME/alsa/asoundrc``, which ALSA's own
``alsa.conf`` loads, so the real home directory is left alone):

- ``virtual_mic``: records ``mic_input`` (float32 interleaved), paced in real time.
- ``fast_mic``: records ``mic_input`` as fast as the CPU allows.
- ``virtual_speaker``: plays into a FIFO drained in real time; ``speaker.take()`` returns what
  was played (float32 interleaved bytes).
- ``fast_speaker``: plays into the file ``fast_speaker_file`` as fast as the CPU allows.
- ``default``: capture from ``virtual_mic``, playback to ``virtual_speaker``.

The configuration must be in place before PortAudio initializes, which ``sounddevice`` does at
import: tests/devices/conftest.py builds it when pytest collects the directory.
"""

from __future__ import annotations

import fcntl
import os
import select
import termios
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import numpy.typing as npt

F_SETPIPE_SZ = 1031  # linux/fcntl.h: keep the pipe small so the pacing is tight
F_GETPIPE_SZ = 1032

ASOUNDRC = """\
pcm.virtual_mic {{
    type file
    slave.pcm "null"
    file "{mic_clock}"
    infile "{mic_input}"
    format "raw"
}}
pcm.fast_mic {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{mic_input}"
    format "raw"
}}
pcm.virtual_speaker {{
    type file
    slave.pcm "null"
    file "{speaker_fifo}"
    format "raw"
}}
pcm.fast_speaker {{
    type file
    slave.pcm "null"
    file "{fast_speaker_file}"
    format "raw"
}}
pcm.!default {{
    type asym
    capture.pcm "virtual_mic"
    playback.pcm "virtual_speaker"
}}
"""


class PacedDrain:
    """Reads a FIFO at ``byte_rate`` bytes per second, optionally keeping what it read.

    The FIFO is opened read-write, so opening its other end never blocks and reads never see
    end-of-file. Idle time earns no credit (at most 20 ms), so a new stream starts in real time.

    The drain is the device's clock: a byte is played (or, for a capture device, let through)
    when the drain reads it. When this process is starved, the drain and the stream it paces
    both run late and that time is lost for good (the device stalls, as a sound card would
    underrun or overflow), so ``timeline()`` records when each read happened and ``origin()``
    is where the device's sample 0 sits on its own clock, from the reads that were on time.
    """

    def __init__(self, path: Path, byte_rate: int, record: bool) -> None:
        self.path = path
        self.byte_rate = byte_rate
        self.record = record
        self._data = bytearray()
        self._count = 0  # bytes read since the last take() or mark()
        self._timeline: deque[tuple[float, int]] = deque(maxlen=1 << 16)  # (read at, count)
        self._passes = 0  # turns of the drain loop, each after its read is recorded
        self._lock = threading.Lock()
        os.mkfifo(path)
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        fcntl.fcntl(self._fd, F_SETPIPE_SZ, 4096)
        self.pipe_bytes = fcntl.fcntl(self._fd, F_GETPIPE_SZ)
        self._thread = threading.Thread(target=self._run, name=f"drain {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            with self._lock:
                self._passes += 1
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                continue
            now = time.monotonic()
            due = max(due, now - 0.02)
            if due > now:
                time.sleep(due - now)
            chunk = max(64, self.byte_rate // 200) // 64 * 64  # about 5 ms
            try:
                data = os.read(self._fd, chunk)
            except BlockingIOError:
                continue
            read_at = time.monotonic()
            with self._lock:
                if self.record:
                    self._data.extend(data)
                self._count += len(data)
                self._timeline.append((read_at, self._count))
            due += len(data) / self.byte_rate

    def take(self) -> bytes:
        """What was read since the last take (and forget it, and the timeline)."""
        with self._lock:
            data = bytes(self._data)
            self._data.clear()
            self._count = 0
            self._timeline.clear()
        return data

    def mark(self) -> None:
        """Count from here on: ``timeline()`` and ``origin()`` start again at byte 0."""
        with self._lock:
            self._count = 0
            self._timeline.clear()

    def timeline(self) -> list[tuple[float, int]]:
        """Per read: ``(time.monotonic() when it ended, bytes read since take()/mark())``."""
        with self._lock:
            return list(self._timeline)

    def origin(self) -> float:
        """``time.monotonic()`` of byte 0 on the device's clock: the earliest ``read time -
        bytes / byte_rate`` over the reads (a late read only gives a later one). Raises
        AssertionError when nothing was read."""
        reads = self.timeline()
        assert reads, f"{self.path.name}: nothing was read"
        return min(t - n / self.byte_rate for t, n in reads)

    def pending(self) -> int:
        """Bytes waiting in the FIFO."""
        return int.from_bytes(fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"), "little")

    def settle(self, quiet_s: float = 0.05, timeout_s: float = 10.0) -> None:
        """Wait until the device has finished: the FIFO is empty, the drain has recorded its
        last read, and nothing more came for ``quiet_s``. Call it once the stream is closed
        (closing it puts its last bytes in the FIFO): it waits on the FIFO, not on a quiet spell
        alone, which a drain this process starved would also show. Raises AssertionError after
        ``timeout_s`` when something keeps writing (a stream left open)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pending():
                time.sleep(0.005)
                continue
            with self._lock:
                passes = self._passes
            while self._passes == passes and time.monotonic() < deadline:
                time.sleep(0.005)  # the drain turned round its loop: its last read is recorded
            with self._lock:
                count = self._count
            time.sleep(quiet_s)
            with self._lock:
                if self._count == count and not self.pending():
                    return
        raise AssertionError(f"{self.path.name}: still written to after {timeout_s} s")


class VirtualAudio:
    """The virtual devices, their files and the threads that pace them (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mic_input = root / "mic-input.f32"
        self.fast_speaker_file = root / "fast-speaker.f32"
        self.set_mic_input(np.zeros((1, 4800), np.float32))
        self.mic_clock = PacedDrain(root / "mic-clock.fifo", 48000 * 4, record=False)
        self.speaker = PacedDrain(root / "speaker.fifo", 48000 * 4, record=True)
        conf = root / "alsa" / "asoundrc"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            ASOUNDRC.format(
                mic_clock=self.mic_clock.path,
                mic_input=self.mic_input,
                speaker_fifo=self.speaker.path,
                fast_speaker_file=self.fast_speaker_file,
            )
        )

    def environ(self) -> dict[str, str]:
        """Environment variables that point ALSA at these devices."""
        return {"XDG_CONFIG_HOME": str(self.root)}

    def set_mic_input(self, samples: npt.NDArray[np.float32], sample_rate: int = 48000) -> None:
        """What the microphones record next: planar ``(channels, samples)``, at ``sample_rate``
        (the rate the test will open them at, which sets the real-time pace)."""
        samples.T.astype("<f4").tofile(self.mic_input)
        if hasattr(self, "mic_clock"):
            self.mic_clock.byte_rate = sample_rate * samples.shape[0] * 4

    def set_speaker_format(self, sample_rate: int, channels: int) -> None:
        """The rate and channels the next speaker stream plays at (sets the real-time pace)."""
        self.speaker.byte_rate = sample_rate * channels * 4

    def played(self, channels: int) -> npt.NDArray[np.float32]:
        """What ``virtual_speaker`` played since the last call, planar ``(channels, samples)``."""
        self.speaker.settle()
        data = np.frombuffer(self.speaker.take(), "<f4")
        data = data[: data.size // channels * channels]
        return np.ascontiguousarray(data.reshape(-1, channels).T)

    def fast_played(self, channels: int) -> npt.NDArray[np.float32]:
        """What ``fast_speaker`` played in its last stream, planar."""
        data = np.fromfile(self.fast_speaker_file, "<f4")
        data = data[: data.size // channels * channels]
        return np.ascontiguousarray(data.reshape(-1, channels).T)
