"""An aiortc peer on 127.0.0.1 answered in the test process by a ``SessionHost``: a live session
without test hosts (aioice leaves loopback out unless ICE is pinned to it, on both sides)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from stream.transport._aiortc import pin_host_addresses, rtc_configuration
from stream.transport.host import SessionHost

LOOPBACK = frozenset({"127.0.0.1"})


@contextlib.asynccontextmanager
async def loopback_peer(
    host: SessionHost,
    session_id: str,
    track: MediaStreamTrack,
    *,
    on_frame: Callable[[Any], None] | None = None,
    edit_offer: Callable[[str], str] | None = None,
) -> AsyncIterator[RTCPeerConnection]:
    """A peer sending ``track`` to session ``session_id`` of ``host`` (the offer passed through
    ``edit_offer`` first), each frame it receives handed to ``on_frame``; closed on exit."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTrack(track)
    drains: list[asyncio.Task[None]] = []

    async def drain(received: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await received.recv()
                if on_frame is not None:
                    on_frame(frame)

    pc.on("track", lambda received: drains.append(asyncio.create_task(drain(received))))
    try:
        with pin_host_addresses(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription
        assert offer is not None
        sdp = edit_offer(offer.sdp) if edit_offer else offer.sdp
        answer = await host.answer(session_id, RTCSessionDescription(sdp, offer.type))
        await pc.setRemoteDescription(answer)
        yield pc
    finally:
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        await pc.close()
