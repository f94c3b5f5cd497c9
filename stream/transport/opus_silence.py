"""Which packet an Opus stream has settled on for digital silence.

Both ends of the inline codec path skip libopus on settled silence (``tracks.OpusPacketizer``
does not encode it, ``_aiortc.InlineAudioDecoder`` does not decode it): once ``run`` silent
blocks in a row had the same packet, that packet stands for every further silent block.
"""

from __future__ import annotations


class SettledSilence:
    """Follows a stream block by block; ``packet`` is the settled silence packet, or None."""

    def __init__(self) -> None:
        self.packet: bytes | None = None
        self._last: bytes | None = None
        self._run = 0  # silent blocks in a row that had ``_last``

    def observe(self, data: bytes | None, run: int) -> None:
        """The packet of a silent block, or None for a block that was not silent (or not one
        packet); ``run``: how many equal silent packets in a row settle the stream."""
        if data is None or data != self._last:
            self.packet = None
            self._last = data
            self._run = 0 if data is None else 1
        else:
            self._run += 1
        if self._run >= run:
            self.packet = data
