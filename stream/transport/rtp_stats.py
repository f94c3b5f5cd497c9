"""WebRTC transport figures of a session: RTP packets, loss, jitter, round trip, jitter buffer.

``TransportMeter(pc)`` samples a peer connection (``await meter.sample()``, about once a second:
``Session`` does) from aiortc's ``getStats()`` and from the session's audio jitter buffers
(``_aiortc.AdaptiveAudioJitterBuffer``), and keeps:

- counters per media kind (``audio``, ``video``): RTP packets received and lost on the way in
  (``inbound-rtp``: lost is counted from sequence-number gaps), packets sent, and packets of ours
  the peer reported lost (``remote-inbound-rtp``, from its RTCP receiver reports); bytes over the
  transport; packets the jitter buffer gave up waiting for (``lost``) or dropped to shrink a
  backlog (``dropped``);
- sampled histograms: at each sample, the inbound interarrival jitter per kind and the round trip
  time (RTCP; once the peer has reported one) are observed once. A histogram of such samples adds
  up over sessions and workers like any Prometheus histogram: ``histogram_quantile`` over its
  rate is a quantile over session-seconds;
- gauges, live sessions only: packets the jitter buffers hold now.

``TransportStats`` is the JSON-ready, mergeable value (``to_dict``/``from_dict``/``merge``), as
``PipelineStats`` is for a pipeline: a host adds up the figures of its ended sessions with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from ..metrics import Histogram
from ._aiortc import AdaptiveAudioJitterBuffer

KINDS = ("audio", "video")
VIDEO_CLOCK_RATE = 90_000  # every WebRTC video payload format runs its RTP clock at 90 kHz

_EMPTY = Histogram()


def _kinds(value: int = 0) -> dict[str, int]:
    return dict.fromkeys(KINDS, value)


def _add_kinds(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


@dataclass(frozen=True, slots=True)
class TransportStats:
    """Transport figures of one session, or of many added up (``merge``).

    Counters (per kind where a dict): ``packets_received``, ``packets_lost`` (inbound),
    ``packets_sent``, ``remote_packets_lost`` (outbound, as the peer reported), ``bytes_received``,
    ``bytes_sent``, ``jitter_buffer_lost``, ``jitter_buffer_dropped``, ``jitter_buffer_late``.
    Sampled histograms: ``jitter`` per kind and ``round_trip`` (durations, ns). Gauge:
    ``jitter_buffer_held`` (packets held now; 0 for ended sessions).
    """

    packets_received: dict[str, int] = field(default_factory=_kinds)
    packets_lost: dict[str, int] = field(default_factory=_kinds)
    packets_sent: dict[str, int] = field(default_factory=_kinds)
    remote_packets_lost: dict[str, int] = field(default_factory=_kinds)
    bytes_received: int = 0
    bytes_sent: int = 0
    jitter: dict[str, Histogram] = field(default_factory=lambda: dict.fromkeys(KINDS, _EMPTY))
    round_trip: Histogram = _EMPTY
    jitter_buffer_lost: int = 0
    jitter_buffer_dropped: int = 0
    jitter_buffer_late: int = 0
    jitter_buffer_held: int = 0

    def merge(self, other: TransportStats) -> TransportStats:
        """Both figures added up (histograms bucket by bucket, the held packets summed)."""
        kinds = sorted(set(self.jitter) | set(other.jitter))
        return TransportStats(
            packets_received=_add_kinds(self.packets_received, other.packets_received),
            packets_lost=_add_kinds(self.packets_lost, other.packets_lost),
            packets_sent=_add_kinds(self.packets_sent, other.packets_sent),
            remote_packets_lost=_add_kinds(self.remote_packets_lost, other.remote_packets_lost),
            bytes_received=self.bytes_received + other.bytes_received,
            bytes_sent=self.bytes_sent + other.bytes_sent,
            jitter={
                k: self.jitter.get(k, _EMPTY).merge(other.jitter.get(k, _EMPTY)) for k in kinds
            },
            round_trip=self.round_trip.merge(other.round_trip),
            jitter_buffer_lost=self.jitter_buffer_lost + other.jitter_buffer_lost,
            jitter_buffer_dropped=self.jitter_buffer_dropped + other.jitter_buffer_dropped,
            jitter_buffer_late=self.jitter_buffer_late + other.jitter_buffer_late,
            jitter_buffer_held=self.jitter_buffer_held + other.jitter_buffer_held,
        )

    def ended(self) -> TransportStats:
        """These figures once the session is gone: it holds no packets any more."""
        return replace(self, jitter_buffer_held=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "packets_received": dict(self.packets_received),
            "packets_lost": dict(self.packets_lost),
            "packets_sent": dict(self.packets_sent),
            "remote_packets_lost": dict(self.remote_packets_lost),
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "jitter": {k: h.to_dict() for k, h in self.jitter.items()},
            "round_trip": self.round_trip.to_dict(),
            "jitter_buffer_lost": self.jitter_buffer_lost,
            "jitter_buffer_dropped": self.jitter_buffer_dropped,
            "jitter_buffer_late": self.jitter_buffer_late,
            "jitter_buffer_held": self.jitter_buffer_held,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransportStats:
        def kinds(key: str) -> dict[str, int]:
            return {str(k): int(v) for k, v in data.get(key, {}).items()}

        return cls(
            packets_received=kinds("packets_received"),
            packets_lost=kinds("packets_lost"),
            packets_sent=kinds("packets_sent"),
            remote_packets_lost=kinds("remote_packets_lost"),
            bytes_received=int(data.get("bytes_received", 0)),
            bytes_sent=int(data.get("bytes_sent", 0)),
            jitter={str(k): Histogram.from_dict(h) for k, h in data.get("jitter", {}).items()},
            round_trip=Histogram.from_dict(data["round_trip"]) if "round_trip" in data else _EMPTY,
            jitter_buffer_lost=int(data.get("jitter_buffer_lost", 0)),
            jitter_buffer_dropped=int(data.get("jitter_buffer_dropped", 0)),
            jitter_buffer_late=int(data.get("jitter_buffer_late", 0)),
            jitter_buffer_held=int(data.get("jitter_buffer_held", 0)),
        )


def clock_rates(sdp: str) -> dict[str, int]:
    """The RTP clock rate (Hz) of the first payload format of each audio and video section of
    ``sdp`` (what aiortc's jitter figures count in); video is 90 kHz when the SDP does not say."""
    out: dict[str, int] = {}
    kind: str | None = None
    payload: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line.split()
            kind = parts[0][2:] if len(parts) > 3 and parts[1] != "0" else None
            payload = parts[3] if kind in KINDS else None
        elif payload is not None and kind is not None and line.startswith(f"a=rtpmap:{payload} "):
            fmt = line.split(" ", 1)[1].split("/")
            if len(fmt) > 1 and fmt[1].strip().isdigit():
                out.setdefault(kind, int(fmt[1]))
            payload = None
    out.setdefault("video", VIDEO_CLOCK_RATE)
    return out


def jitter_buffers(pc: RTCPeerConnection) -> list[AdaptiveAudioJitterBuffer]:
    """The adaptive jitter buffers ``_aiortc.use_jitter_buffer`` gave ``pc``'s audio receivers
    (none when aiortc's own buffer was kept)."""
    found = []
    for transceiver in pc.getTransceivers():
        buffer = getattr(transceiver.receiver, "_RTCRtpReceiver__jitter_buffer", None)
        if isinstance(buffer, AdaptiveAudioJitterBuffer):
            found.append(buffer)
    return found


class TransportMeter:
    """Samples ``pc``'s transport figures; ``stats()`` is what it counted so far.

    Counters never go down within a session (a peer's cumulative loss in RTCP may: RFC 3550
    lets duplicates make it shrink), so each keeps the most it has seen.
    """

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        #: the counters of the session's native audio path (``NativeAudioPath.stats``), if any
        self.native: Callable[[], Mapping[str, int]] | None = None
        self._leg_bytes = (0, 0)
        self._counts: dict[str, dict[str, int]] = {
            key: _kinds()
            for key in ("packets_received", "packets_lost", "packets_sent", "remote_packets_lost")
        }
        self._bytes = {"received": 0, "sent": 0}
        self._jitter = {k: _EMPTY for k in KINDS}
        self._round_trip = _EMPTY
        self._rates: dict[str, int] | None = None
        # jitter buffers' lost, dropped, held, late at the last sample
        self._buffered = (0, 0, 0, 0)
        # the latest values, for /status: seconds, and the peer's fraction of ours lost (0..1)
        self.now: dict[str, Any] = {"jitter_s": {}, "round_trip_s": None, "fraction_lost": {}}

    def _rate(self, kind: str) -> int | None:
        if self._rates is None:
            local = self.pc.localDescription
            if local is None:
                return None
            self._rates = clock_rates(local.sdp)
        return self._rates.get(kind)

    def _count(self, key: str, kind: str, value: int) -> None:
        counts = self._counts[key]
        counts[kind] = max(counts.get(kind, 0), int(value))

    async def sample(self) -> None:
        """Read ``getStats()`` once and observe the jitter and round trip now."""
        report = await self.pc.getStats()
        jitter_s: dict[str, float] = {}
        fraction_lost: dict[str, float] = dict(self.now["fraction_lost"])
        round_trip_s: float | None = self.now["round_trip_s"]
        for entry in report.values():
            if isinstance(entry, RTCInboundRtpStreamStats):
                self._count("packets_received", entry.kind, entry.packetsReceived)
                self._count("packets_lost", entry.kind, entry.packetsLost)
                rate = self._rate(entry.kind)
                if rate and entry.packetsReceived > 1:  # jitter needs two packets
                    jitter_s[entry.kind] = entry.jitter / rate
            elif isinstance(entry, RTCOutboundRtpStreamStats):
                self._count("packets_sent", entry.kind, entry.packetsSent)
            elif isinstance(entry, RTCRemoteInboundRtpStreamStats):
                self._count("remote_packets_lost", entry.kind, entry.packetsLost)
                fraction_lost[entry.kind] = round(entry.fractionLost / 256, 4)
                if entry.roundTripTime is not None:
                    round_trip_s = entry.roundTripTime
            elif isinstance(entry, RTCTransportStats):  # one per transport; bundled: one
                self._bytes["received"] = max(self._bytes["received"], entry.bytesReceived)
                self._bytes["sent"] = max(self._bytes["sent"], entry.bytesSent)
        for kind, seconds in jitter_s.items():
            self._jitter[kind] = self._jitter.get(kind, _EMPTY).merge(_one(seconds))
        if round_trip_s is not None:
            self._round_trip = self._round_trip.merge(_one(round_trip_s))
        self.now = {  # a new dict each time: a status that holds the last one keeps it as it was
            "jitter_s": {k: round(v, 6) for k, v in jitter_s.items()},
            "round_trip_s": None if round_trip_s is None else round(round_trip_s, 6),
            "fraction_lost": fraction_lost,
        }
        buffers = jitter_buffers(self.pc)
        leg = self.native() if self.native is not None else {}
        self._buffered = (
            sum(b.skipped for b in buffers) + leg.get("packets_lost", 0),
            sum(b.dropped for b in buffers) + leg.get("packets_dropped", 0),
            sum(len(b._held) for b in buffers) + leg.get("jitter_held", 0),
            sum(getattr(b, "late", 0) for b in buffers) + leg.get("packets_late", 0),
        )
        # the engine's audio datagrams bypass aiortc's DTLS transport, which counts the bytes
        if leg:
            self._leg_bytes = (leg["datagram_bytes_received"], leg["datagram_bytes_sent"])

    def stats(self) -> TransportStats:
        """The figures as of the last ``sample()``."""
        lost, dropped, held, late = self._buffered
        return TransportStats(
            packets_received=dict(self._counts["packets_received"]),
            packets_lost=dict(self._counts["packets_lost"]),
            packets_sent=dict(self._counts["packets_sent"]),
            remote_packets_lost=dict(self._counts["remote_packets_lost"]),
            bytes_received=self._bytes["received"] + self._leg_bytes[0],
            bytes_sent=self._bytes["sent"] + self._leg_bytes[1],
            jitter=dict(self._jitter),
            round_trip=self._round_trip,
            jitter_buffer_lost=lost,
            jitter_buffer_dropped=dropped,
            jitter_buffer_late=late,
            jitter_buffer_held=held,
        )


def _one(seconds: float) -> Histogram:
    return Histogram.of([max(0, round(seconds * 1e9))])


__all__ = [
    "KINDS",
    "TransportMeter",
    "TransportStats",
    "clock_rates",
    "jitter_buffers",
]
