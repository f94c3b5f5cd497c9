"""The narrow seams into aiortc and aioice internals, all in one place.

aiortc has no public option for five things this transport needs:

- *Which addresses ICE gathers host candidates from.* aioice's ``Connection.gather_candidates``
  calls the module function ``aioice.ice.get_host_addresses``; we wrap that function once, and the
  wrapper filters its result by a context variable (``pinned_addresses``) that a server or client
  sets around its own ``setLocalDescription``. Unset, it changes nothing, so other aiortc users in
  the same process are unaffected, and two servers in one process can pin different addresses.
- *The audio jitter buffer.* ``RTCRtpReceiver`` builds ``JitterBuffer(capacity=16, prefetch=4)``,
  which holds every packet until four newer ones arrived: 80 ms of latency on a clean network.
  ``use_jitter_buffer`` swaps in ``AdaptiveAudioJitterBuffer`` on a receiver.
- *Text messages that are not UTF-8.* aiortc decodes a text message itself, inside its DTLS
  receive loop; a peer's invalid UTF-8 raised there and ended the session. We wrap
  ``RTCSctpTransport._data_channel_receive`` once: such a message goes on as binary, which the
  application refuses with an answer (``control.handle``).
- *No STUN server by default.* ``RTCConfiguration(iceServers=None)`` means Google's public STUN
  server; ``rtc_configuration`` always passes an explicit list (empty unless configured), and
  hands TURN credentials written in a URL to aiortc as ``username``/``credential``.
- *The selected candidate pair.* aiortc reports none; ``selected_candidate_types`` reads aioice's
  nominated pair (to show, and test, that a session runs through a TURN relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import ipaddress
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import aioice.ice
import av
import ifaddr
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcsctptransport import WEBRTC_BINARY, WEBRTC_STRING, RTCSctpTransport
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gte

from ..errors import ConfigError
from .ice import rtc_ice_servers
from .opus_silence import SettledSilence

log = logging.getLogger("stream.transport")

#: The host addresses ICE may use in this context; None means every address aioice finds.
pinned_addresses: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "remotemedia_pinned_addresses", default=None
)

_original_get_host_addresses = aioice.ice.get_host_addresses


def _pinned_get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    found = _original_get_host_addresses(use_ipv4, use_ipv6)
    allowed = pinned_addresses.get()
    if allowed is None:
        return found
    # 127.0.0.1 is never in aioice's list; a pinned loopback address is added back explicitly.
    extra = [a for a in sorted(allowed) if a not in found and _family_ok(a, use_ipv4, use_ipv6)]
    return [a for a in found if a in allowed] + extra


def _family_ok(address: str, use_ipv4: bool, use_ipv6: bool) -> bool:
    version = ipaddress.ip_address(address).version
    return (version == 4 and use_ipv4) or (version == 6 and use_ipv6)


if getattr(aioice.ice.get_host_addresses, "__name__", "") != _pinned_get_host_addresses.__name__:
    aioice.ice.get_host_addresses = _pinned_get_host_addresses

_original_data_channel_receive = RTCSctpTransport._data_channel_receive


async def _utf8_checked_data_channel_receive(
    self: RTCSctpTransport, stream_id: int, pp_id: int, data: bytes
) -> None:
    if pp_id == WEBRTC_STRING:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pp_id = WEBRTC_BINARY
    await _original_data_channel_receive(self, stream_id, pp_id, data)


if RTCSctpTransport._data_channel_receive.__name__ != _utf8_checked_data_channel_receive.__name__:
    RTCSctpTransport._data_channel_receive = _utf8_checked_data_channel_receive  # type: ignore[method-assign]


def resolve_host_addresses(spec: Iterable[str]) -> frozenset[str]:
    """Addresses for ICE host candidates from interface names and/or IP addresses.

    ``spec`` items are IPv4/IPv6 addresses or interface names (``eth1``); an interface stands for
    all its addresses. Raises ConfigError for a name that is neither.
    """
    adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
    out: set[str] = set()
    for item in spec:
        item = item.strip()
        if not item:
            continue
        try:
            out.add(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        adapter = adapters.get(item)
        if adapter is None:
            raise ConfigError(
                f"ice address {item!r} is neither an IP address nor an interface "
                f"(interfaces: {', '.join(sorted(adapters))})"
            )
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                out.add(ip.ip)
            elif ip.ip[2] == 0:  # IPv6 without a scope id, as aioice takes them
                out.add(ip.ip[0])
    if not out:
        raise ConfigError("ice addresses: the list names no address")
    return frozenset(out)


@contextlib.contextmanager
def pin_host_addresses(addresses: frozenset[str] | None) -> Iterator[None]:
    """Within the block, ICE gathering in this context uses only ``addresses`` (None: all)."""
    token = pinned_addresses.set(addresses)
    try:
        yield
    finally:
        pinned_addresses.reset(token)


def rtc_configuration(ice_servers: Iterable[str] = ()) -> RTCConfiguration:
    """An RTCConfiguration with exactly the given STUN/TURN servers (none by default).

    Each is a spec string (``ice.parse_ice_server``): credentials in the URL are handed to
    aiortc as ``username``/``credential`` (aiortc's own parser refuses them in the URL), and a
    TURN shared secret gives fresh time-limited credentials for this connection.
    """
    return RTCConfiguration(iceServers=rtc_ice_servers(ice_servers))


def selected_candidate_types(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """``(local, remote)`` candidate types (``host``, ``srflx``, ``relay``) of the pair ICE
    nominated for ``pc``'s (bundled) transport, or None before one is.

    aiortc has no ``getStats()`` entry for the selected pair; aioice keeps it in
    ``Connection._nominated`` (component -> CandidatePair).
    """
    for transceiver_or_sctp in [*pc.getTransceivers(), pc.sctp]:
        if transceiver_or_sctp is None:
            continue
        dtls = getattr(transceiver_or_sctp, "transport", None)
        if dtls is None and hasattr(transceiver_or_sctp, "sender"):
            dtls = transceiver_or_sctp.sender.transport
        ice = getattr(dtls, "transport", None)
        connection = getattr(ice, "_connection", None)
        nominated = getattr(connection, "_nominated", None) or {}
        for pair in nominated.values():
            return str(pair.local_candidate.type), str(pair.remote_candidate.type)
    return None


class AdaptiveAudioJitterBuffer(JitterBuffer):
    """Audio jitter buffer that hands each packet on as soon as it is the next in sequence.

    aiortc's receiver asks for at most one frame per arriving packet. In order, each packet goes
    straight out (no added latency). A packet that arrives ahead of a missing one is held; the
    gap is waited for until ``depth`` newer packets are held, then skipped as lost. When a late
    packet fills a gap, the packets it released go out one per arrival, so the buffer has grown by
    that many packets (it adapts to the reordering it saw); after ``shrink_after`` packets in a
    row with a backlog it drops one to shrink again. ``depth`` is at most ``capacity // 2``.
    """

    def __init__(self, depth: int = 3, capacity: int = 16, shrink_after: int = 250) -> None:
        super().__init__(capacity=capacity, prefetch=0)
        if not 0 <= depth <= capacity // 2:
            raise ConfigError(f"jitter depth must be in 0..{capacity // 2}, got {depth}")
        self.depth = depth
        self.shrink_after = shrink_after
        self._held: dict[int, RtpPacket] = {}
        self._next: int | None = None
        self._steady = 0
        self.skipped = 0  # packets given up as lost
        self.dropped = 0  # packets dropped to shrink the backlog
        self.late = 0  # packets that came after their turn was given up (not used)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        elif not uint16_gte(seq, self._next):
            self.late += 1
            return False, None  # older than what was handed on: too late
        if uint16_add(seq, -self._next) >= self.capacity:  # a jump: start over from here
            self._held.clear()
            self._next = seq
        self._held[seq] = packet
        if self._next not in self._held and len(self._held) >= max(self.depth, 1):
            self.skipped += uint16_add(min(self._held, key=self._distance), -self._next)
            self._next = min(self._held, key=self._distance)
        if self._next not in self._held:
            return False, None
        if self._backlog() > 1:
            self._steady += 1
            if self._steady >= self.shrink_after:
                self._steady = 0
                self._pop()
                self.dropped += 1
        else:
            self._steady = 0
        out = self._pop()
        # the receiver sets ``_data`` (the depacketized payload) before add(), as aiortc's does
        data: bytes = getattr(out, "_data", b"")
        return False, JitterFrame(data=data, timestamp=out.timestamp)

    def _distance(self, seq: int) -> int:
        assert self._next is not None
        return uint16_add(seq, -self._next)

    def _backlog(self) -> int:
        n, seq = 0, self._next
        assert seq is not None
        while seq in self._held:
            n += 1
            seq = uint16_add(seq, 1)
        return n

    def _pop(self) -> RtpPacket:
        assert self._next is not None
        packet = self._held.pop(self._next)
        self._next = uint16_add(self._next, 1)
        return packet


def use_jitter_buffer(pc: RTCPeerConnection, depth: int | None) -> None:
    """Give every audio receiver of ``pc`` an ``AdaptiveAudioJitterBuffer(depth)``.

    ``depth=None`` keeps aiortc's own buffer (80 ms). Call it after setRemoteDescription (or
    addTransceiver), before media flows. Logs and keeps aiortc's buffer if its internals moved.
    """
    if depth is None:
        return
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver: Any = transceiver.receiver
        attr = "_RTCRtpReceiver__jitter_buffer"
        if not isinstance(getattr(receiver, attr, None), JitterBuffer):
            log.warning("aiortc's receiver has no %s; keeping its jitter buffer", attr)
            return
        setattr(receiver, attr, AdaptiveAudioJitterBuffer(depth))


class InlineAudioDecoder:
    """Stands in for the decoder queue of an aiortc audio receiver: decodes each encoded frame
    where it is put (in the receiver's RTP handler, on the event loop) and hands the frames
    straight to the track's queue.

    aiortc decodes every frame on a thread of the receiver's own: a hand-off there and one back
    (``run_coroutine_threadsafe``, which wakes the loop) per 20 ms per session, which costs more
    than an Opus decode. The thread aiortc still starts waits in ``get()`` until the receiver
    stops, then ends the track as it always does. Decode errors are logged and flagged as
    aiortc does (the frame is lost, the decoder kept).

    A peer's settled digital silence is not decoded: once ``SETTLED`` packets in a row had the
    same bytes and decoded to exact zeros, further packets with those bytes become zero frames
    without libopus (``skipped``; the mirror of ``tracks.OpusPacketizer``'s shortcut).
    """

    SETTLED = 3

    def __init__(self, output: Any, error: threading.Event) -> None:
        self._output = output  # the remote track's asyncio.Queue
        self._error = error
        self._decoder: Any = None
        self._codec_name: str | None = None
        self._stopped = threading.Event()
        self._silence = SettledSilence()  # packets that decoded to exact zeros
        self._zeros: Any = None  # (samples, layout, format, rate) of a zero frame decoded
        self.skipped = 0

    def put(self, item: Any) -> None:
        if item is None:  # the receiver stops: let the waiting thread end the track
            self._stopped.set()
            return
        codec, encoded_frame = item
        if codec.name != self._codec_name:
            self._decoder = get_decoder(codec)
            self._codec_name = codec.name
        data = encoded_frame.data
        if data == self._silence.packet:
            self.skipped += 1
            self._output.put_nowait(self._zero_frame(encoded_frame.timestamp))
            return
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:
            log.warning("audio receiver: failed to decode a %s frame: %s", codec.name, exc)
            self._error.set()
            return
        if codec.name == "opus":
            self._watch_silence(data, frames)
        for frame in frames:
            self._output.put_nowait(frame)

    def _watch_silence(self, data: bytes, frames: list[Any]) -> None:
        frame: Any = frames[0] if len(frames) == 1 else None
        zeros = frame is not None and not frame.to_ndarray().any()
        if zeros:
            self._zeros = (frame.samples, frame.layout.name, frame.format.name, frame.sample_rate)
        self._silence.observe(data if zeros else None, self.SETTLED)

    def _zero_frame(self, timestamp: int) -> av.AudioFrame:
        samples, layout, fmt, rate = self._zeros
        frame = av.AudioFrame(format=fmt, layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = rate
        frame.pts = timestamp
        frame.time_base = fractions.Fraction(1, rate)
        return frame

    def get(self) -> None:
        """What aiortc's decoder thread waits on: nothing until the receiver stops."""
        self._stopped.wait()


def decode_inline(pc: RTCPeerConnection) -> bool:
    """Give every audio receiver of ``pc`` an ``InlineAudioDecoder``. Call it after
    setRemoteDescription, before setLocalDescription starts the receivers. Returns False (and
    logs) when aiortc's internals moved: its own decoder thread is kept then."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver: Any = transceiver.receiver
        queue_attr, error_attr = "_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_error"
        error = getattr(receiver, error_attr, None)
        track: Any = getattr(receiver, "_track", None)
        if (
            getattr(receiver, "_RTCRtpReceiver__started", True)
            or getattr(receiver, queue_attr, None) is None
            or not isinstance(error, threading.Event)
            or not isinstance(getattr(track, "_queue", None), asyncio.Queue)
        ):
            log.warning("aiortc's audio receiver changed; keeping its decoder thread")
            return False
        setattr(receiver, queue_attr, InlineAudioDecoder(track._queue, error))
    return True


def data_delivered(pc: RTCPeerConnection) -> bool:
    """Whether everything sent on ``pc``'s data channels has been acknowledged by the peer's
    SCTP (which hands a message to the peer's channel before it acknowledges it). True without
    an SCTP transport, or when aiortc's internals moved (then nothing can be waited for)."""
    sctp: Any = pc.sctp
    if sctp is None:
        return True
    queues = [getattr(sctp, name, None) for name in ("_data_channel_queue", "_outbound_queue")]
    queues.append(getattr(sctp, "_sent_queue", None))
    if any(q is None for q in queues):
        return True
    return not any(queues)


def first_audio_codec(sdp: str) -> str | None:
    """The codec an answer's first audio section lists first (what aiortc's sender encodes
    with), as ``name/rate[/channels]`` in lower case (``opus/48000/2``); None without audio."""
    payload: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if payload is not None:
                return None  # the audio section had no rtpmap for its first payload type
            parts = line.split()
            if parts[0] == "m=audio" and len(parts) > 3 and parts[1] != "0":
                payload = parts[3]
        elif payload is not None and line.startswith(f"a=rtpmap:{payload} "):
            return line.split(" ", 1)[1].strip().lower()
    return None


__all__ = [
    "AdaptiveAudioJitterBuffer",
    "InlineAudioDecoder",
    "data_delivered",
    "decode_inline",
    "first_audio_codec",
    "pin_host_addresses",
    "pinned_addresses",
    "resolve_host_addresses",
    "rtc_configuration",
    "selected_candidate_types",
    "use_jitter_buffer",
]
