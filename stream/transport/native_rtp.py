"""The native audio path: a session's audio RTP handled by the engine, under aiortc's ICE and DTLS.

aiortc spends a session's CPU on per-packet Python: SRTP calls, RTP parsing and building, the
jitter buffer, codec calls and the tasks and queues between them (docs/benchmarks.md, "WebRTC
sessions per core"). Once aiortc's DTLS handshake has the SRTP keys, ``NativeAudioPath`` takes
the peer's audio RTP (its SSRC, from the offer) off aiortc where it arrives, in aioice's
``Connection.data_received``, and hands each datagram to the engine's ``RtpAudioLeg``: one native
call unprotects, parses, reorders (the same adaptive jitter buffer as
``_aiortc.AdaptiveAudioJitterBuffer``, with Opus concealment of short gaps) and decodes it. The
session's outgoing audio goes the other way: each paced 20 ms block of the session's
``AudioOutputTrack`` is encoded, packetized and protected in one native call and sent on the ICE
pair aiortc nominated (through a TURN relay too).

aiortc keeps everything else: signaling, ICE (STUN checks, consent, TURN), DTLS, RTCP (its
receiver reports and sender reports read the leg's counters: ``LegStreamStatistics`` and
``sync_sender``), the data channel, video. Its audio sender is given a ``ParkedTrack``, which
never yields a frame, so only the leg sends on the audio SSRC.

A session whose whole pipeline is native kernels goes further (``relay_chain``, ``start_relay``):
each datagram's audio runs through one engine ``Chain`` (the input adapter's kernels, the
pipeline's, the output adapter's) and is encoded and protected in the same call
(``RtpAudioLeg.relay``), and the datagrams it returns are sent at once, from aioice's datagram
callback: no task, queue or pacing per packet. Output is paced by the peer's input then. On a
direct (host or server-reflexive) pair the relay runs on a thread of the engine's instead
(``RtpAudioLeg.relay_socket``), on the pair's own UDP socket: the event loop stops reading that
socket, the thread takes each of the peer's audio datagrams through the chain and sends the
result back, and hands everything else (STUN, DTLS, RTCP) to aioice's protocol through a pipe the
loop watches, so no Python runs per audio packet. A TURN pair keeps the callback relay.

``plan_audio(offer_sdp)`` says whether a session can take this path: one audio section that offers
Opus at 48 kHz and names its SSRC. The session falls back to aiortc's path otherwise, and when
the engine is missing; ``/status`` shows which one each session took (``audio_transport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from aioice.turn import TurnTransport
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.clock import current_ntp_time
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import SRTP_PROFILES
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.sdp import SessionDescription

from .. import engine
from ..audio_adapter import AudioAdapter
from ..engine import make_chain
from ..errors import TransportError
from ..frames import AudioFrame, audio_frame_unchecked
from .tracks import RTC_SAMPLE_RATE, AudioOutputTrack

log = logging.getLogger("stream.transport")

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_TIME_BASE = Fraction(1, RTC_SAMPLE_RATE)
_SYNC_EVERY = 10  # sent packets between updates of aiortc's sender-report counters


@dataclass(frozen=True, slots=True)
class AudioPlan:
    """What the offer says of its audio: the peer's SSRC and its Opus payload type and mid."""

    remote_ssrc: int
    payload_type: int
    mid: str | None


def plan_audio(offer_sdp: str) -> AudioPlan | None:
    """The native path's plan for an offer, or None when it cannot take it: not exactly one
    audio section, no Opus at 48 kHz offered, or no SSRC named for the audio (RTX groups are
    skipped: the first SSRC of the section is the media's)."""
    try:
        description = SessionDescription.parse(offer_sdp)
    except (ValueError, KeyError, IndexError):
        return None
    audio = [m for m in description.media if m.kind == "audio" and m.port != 0]
    if len(audio) != 1 or not audio[0].ssrc:
        return None
    media = audio[0]
    opus = [
        c
        for c in media.rtp.codecs
        if c.mimeType.lower() == "audio/opus" and c.clockRate == RTC_SAMPLE_RATE
    ]
    if not opus or opus[0].payloadType is None:
        return None
    return AudioPlan(media.ssrc[0].ssrc, opus[0].payloadType, media.rtp.muxId or None)


def answer_audio(answer_sdp: str) -> tuple[int | None, int | None]:
    """``(payload type of the first codec, id of the sdes:mid header extension)`` of the
    answer's audio section, each None when absent."""
    for media in SessionDescription.parse(answer_sdp).media:
        if media.kind == "audio":
            codecs = media.rtp.codecs
            mid = next((e.id for e in media.rtp.headerExtensions if e.uri == MID_URI), None)
            return (codecs[0].payloadType if codecs else None), None if mid is None else int(mid)
    return None, None


def srtp_keys(dtls: Any) -> tuple[str, bytes, bytes]:
    """``(profile, rx key+salt, tx key+salt)`` of a connected aiortc ``RTCDtlsTransport``,
    exported from its DTLS session as aiortc's ``_setup_srtp`` does (RFC 5764)."""
    name: bytes = dtls._ssl.get_selected_srtp_profile()
    profile = next(p for p in SRTP_PROFILES if p.openssl_profile == name)
    view = dtls._ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    rx, tx = (0, 1) if dtls._role == "server" else (1, 0)
    return name.decode(), profile.get_key_and_salt(view, rx), profile.get_key_and_salt(view, tx)


def relay_chain(
    kernels: list[Any],
    *,
    decode_channels: int,
    input_rate: int | None,
    input_channels: int | None,
) -> Any:
    """One engine ``Chain`` for a session's whole audio round trip: the kernels of the input
    adapter (48 kHz audio as decoded, to what the pipeline takes: ``SessionOptions``), the
    pipeline's (``Pipeline.native_run``), and the output adapter's (back to 48 kHz, mono or
    stereo as the pipeline's output is; more channels are mixed to two). Raises StreamError
    (ConfigError) when a kernel refuses the format."""
    inbound = AudioAdapter("fltp", input_rate, input_channels, backend="rust", name="in.audio")
    front = inbound.kernels_for(RTC_SAMPLE_RATE, decode_channels)
    rate = int(make_chain(front + kernels).output_rate(RTC_SAMPLE_RATE))
    channels = input_channels or decode_channels
    for kernel in kernels:  # ChannelMix is the one native block stage that changes the count
        if type(kernel).__name__ == "ChannelMixKernel":
            channels = int(kernel.channels)
    outbound = AudioAdapter(
        "fltp", RTC_SAMPLE_RATE, min(channels, 2), backend="rust", name="out.audio"
    )
    return make_chain(front + kernels + outbound.kernels_for(rate, channels))


class ParkedTrack(MediaStreamTrack):
    """The audio track aiortc's sender is given when the leg sends: it never yields a frame
    (so aiortc's RTP loop sends nothing) and ends when stopped."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


class LegStreamStatistics(StreamStatistics):
    """aiortc's per-SSRC receive statistics, read from the leg: its receiver reports (RTCP) and
    ``getStats()`` show what the leg received."""

    def __init__(self, leg: Any) -> None:  # no super().__init__: its fields are properties here
        self._leg = leg
        self._clockrate = RTC_SAMPLE_RATE
        self._expected_prior = 0
        self._received_prior = 0

    def add(self, packet: Any) -> None:
        """Packets of this SSRC go to the leg, not to aiortc; one that got there is ignored."""

    @property
    def base_seq(self) -> int:  # type: ignore[override]
        return int(self._leg.stats()["base_sequence"])

    @property
    def max_seq(self) -> int:  # type: ignore[override]
        return int(self._leg.stats()["highest_sequence"]) & 0xFFFF

    @property
    def cycles(self) -> int:  # type: ignore[override]
        return int(self._leg.stats()["highest_sequence"]) & ~0xFFFF

    @property
    def packets_received(self) -> int:  # type: ignore[override]
        return int(self._leg.stats()["packets_valid"])

    @property
    def packets_expected(self) -> int:
        """0 before the first packet (aiortc makes its statistics at the first packet; these
        exist from the start, and aiortc's receiver reports read them every second)."""
        return super().packets_expected if self.packets_received else 0

    @property
    def fraction_lost(self) -> int:
        """As aiortc's, within the 8 bits an RTCP report block has for it: an error in aiortc's
        RTCP task would leave its receiver unable to stop."""
        return min(255, max(0, super().fraction_lost))

    @property
    def jitter(self) -> int:
        return int(self._leg.stats()["jitter"])


class NativeAudioSource:
    """The peer's decoded audio, as a track-like source (``recv()`` gives RemoteMedia frames, 48
    kHz float32 planar): ``track_frames`` reads it as it reads an aiortc track. Holds at most
    ``max_frames`` (the oldest go first, counted in ``dropped``): a pipeline that falls behind
    loses audio, it does not build up latency or memory."""

    kind = "audio"

    def __init__(self, max_frames: int = 50) -> None:
        self._frames: deque[AudioFrame] = deque()
        self._max = max_frames
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._fallback: MediaStreamTrack | None = None
        self.dropped = 0

    def follow(self, track: MediaStreamTrack) -> None:
        """From now on, give what ``track`` gives (aiortc's, when the leg could not start)."""
        self._fallback = track
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, frame: AudioFrame) -> None:
        self._frames.append(frame)
        if len(self._frames) > self._max:
            self._frames.popleft()
            self.dropped += 1
        self._wake()

    async def recv(self) -> Any:  # AudioFrame; av.AudioFrame when following aiortc's track
        while not self._frames:
            if self._fallback is not None:
                return await self._fallback.recv()
            if self._ended:
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def stop(self) -> None:
        self._ended = True
        self._wake()


@dataclass
class _RelayThread:
    """The engine's relay thread on an ICE pair's socket, and what giving the socket back to
    the event loop needs."""

    relay: Any  # the engine's SocketRelay
    protocol: Any  # aioice's protocol on the socket: gets what the thread passes on
    transport: Any  # the loop's datagram transport: not reading meanwhile
    loop: asyncio.AbstractEventLoop
    wake_r: int  # the pipe the thread writes a byte to, watched by the loop
    wake_w: int
    paused_counted: int = 0  # the thread's paused drops already counted

    def pass_on(self) -> None:
        for data, addr in self.relay.take_passed():  # one at a time, as the loop's reader
            try:
                self.protocol.datagram_received(data, addr)
            except Exception:
                log.exception("native relay: aioice refused a datagram")

    def stop(self) -> dict[str, int]:
        """Joins the thread; its final counts."""
        self.relay.stop()
        counts: dict[str, int] = self.relay.counts()
        return counts

    def give_back(self) -> None:
        """After ``stop``: the pipe closed, what the thread held passed on, and the socket
        read by the loop again."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self.wake_r)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.pass_on()
        if not self.transport.is_closing():
            self.transport.resume_reading()


class NativeAudioPath:
    """One session's audio RTP through the engine's ``RtpAudioLeg`` (see the module docstring).

    ``install()`` after ``setLocalDescription`` (the ICE connection exists then); the leg is made
    when DTLS connects. ``source`` is the peer's audio; ``send_from(track)`` sends a track's
    paced blocks until it ends. ``close()`` gives the datagrams back to aiortc.
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        plan: AudioPlan,
        *,
        jitter_depth: int,
        decode_channels: int,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.pc = pc
        self.plan = plan
        self.source = NativeAudioSource()
        self._jitter_depth = jitter_depth
        self._decode_channels = decode_channels
        self._on_error = on_error
        self._ssrc_bytes = plan.remote_ssrc.to_bytes(4, "big")
        self._leg: Any = None
        self._ready = asyncio.Event()
        self._connection: Any = None
        self._original: Callable[[bytes, int], None] | None = None
        self._transceiver: Any = next(t for t in pc.getTransceivers() if t.kind == "audio")
        self._dtls: Any = None
        self._payload_type = plan.payload_type
        self._mid_id: int | None = None
        self.failed: str | None = None  # why the leg could not start (aiortc then has the audio)
        self._bytes_sent = 0  # datagram bytes, headers and SRTP tag included
        # relay (``start_relay``): the round trip's chain, whether to drop input, who hears of
        # a chain error
        self._chain: Any = None
        self._paused: Callable[[], bool] = lambda: False
        self._relay_error: Callable[[Exception], None] = lambda exc: None
        self.paused_drops = 0  # packets dropped by the relay while the session was paused
        self.unsent = 0  # relay datagrams with no nominated pair to go on
        self.off_pair = 0  # the peer's audio dropped: not on the pair the relay thread reads
        # the relay's thread on the pair's socket (``_start_socket_relay``), when it runs
        self._thread: _RelayThread | None = None

    @property
    def leg(self) -> Any:
        """The engine's ``RtpAudioLeg`` once DTLS connected, else None."""
        return self._leg

    def install(self, answer_sdp: str) -> None:
        """Divert the peer's audio datagrams, and make the leg as soon as DTLS has keys."""
        payload_type, self._mid_id = answer_audio(answer_sdp)
        if payload_type is not None:
            self._payload_type = payload_type
        self._dtls = self._transceiver.receiver.transport
        connection = self._dtls.transport._connection
        self._connection = connection
        self._original = connection.data_received
        connection.data_received = self._data_received
        self._dtls.on("statechange", self._on_dtls_state)

    def _on_dtls_state(self) -> None:
        dtls = self._dtls
        if self._leg is not None or dtls is None or dtls.state != "connected":
            return
        try:
            profile, rx_key, tx_key = srtp_keys(dtls)
            mid = self._transceiver.mid
            self._leg = engine.rtp_audio_leg(
                profile,
                rx_key,
                tx_key,
                remote_ssrc=self.plan.remote_ssrc,
                local_ssrc=self._transceiver.sender._ssrc,
                payload_type=self._payload_type,
                decode_channels=self._decode_channels,
                jitter_depth=self._jitter_depth,
                mid=(self._mid_id, mid.encode()) if self._mid_id and mid else None,
            )
        except Exception as exc:  # keys or engine: aiortc keeps the audio, the session goes on
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("native audio path not started (%s); aiortc carries the audio", exc)
            self.source.follow(self._transceiver.receiver.track)
            if self._on_error is not None:
                self._on_error(self.failed)
            if self._chain is not None:  # a relay has no pipeline task to take aiortc's frames
                self._chain = None
                self._relay_error(TransportError(f"native audio path: {self.failed}"))
            return
        streams = getattr(self._transceiver.receiver, "_RTCRtpReceiver__remote_streams", None)
        if isinstance(streams, dict):
            streams[self.plan.remote_ssrc] = LegStreamStatistics(self._leg)
        self._ready.set()
        if self._chain is not None:
            self._start_socket_relay()

    def _data_received(self, data: bytes, component: int) -> None:
        leg = self._leg
        if (
            leg is not None
            and len(data) > 12
            and data[8:12] == self._ssrc_bytes
            and 127 < data[0] < 192
            and not 191 < data[1] < 224  # RTCP packet types (RFC 5761)
        ):
            chain = self._chain
            if chain is not None:
                if self._thread is not None:  # the peer's audio on another of our
                    self.off_pair += 1  # sockets than the pair's, which the thread reads
                    return
                self._relay(leg, chain, data)
                return
            try:
                frames = leg.receive(data)
            except Exception:  # the leg never raises for what a peer sends: an engine bug
                log.exception("native audio path: receive failed")
                return
            push = self.source.push
            for timestamp, samples in frames:
                push(audio_frame_unchecked(samples, RTC_SAMPLE_RATE, timestamp, _TIME_BASE))
            return
        assert self._original is not None
        self._original(data, component)

    def start_relay(
        self,
        chain: Any,
        *,
        paused: Callable[[], bool],
        on_error: Callable[[Exception], None],
    ) -> None:
        """From now on, run each datagram's audio through ``chain`` (``relay_chain``) and send
        what comes out at once. ``paused()``: drop input while true; ``on_error(exc)``: the
        chain failed (the relay stops; the session ends)."""
        self._paused, self._relay_error = paused, on_error
        self._chain = chain
        if self._leg is not None:
            self._start_socket_relay()

    def stop_relay(self) -> None:
        self._chain = None
        self._stop_socket_relay()

    @property
    def relay_thread(self) -> bool:
        """Whether the relay runs on the engine's thread on the pair's socket."""
        return self._thread is not None

    def _start_socket_relay(self) -> None:
        """Move the relay onto the engine's thread on the nominated pair's socket, when that
        pair is a plain UDP socket of the event loop's (not a TURN allocation)."""
        if self._thread is not None or self._connection is None:
            return
        pair = self._connection._nominated.get(1)
        transport = getattr(getattr(pair, "protocol", None), "transport", None)
        if pair is None or transport is None or isinstance(transport, TurnTransport):
            return
        sock = transport.get_extra_info("socket")
        if sock is None or not hasattr(transport, "pause_reading") or transport.is_closing():
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        host, port = pair.remote_addr[:2]
        try:
            relay = self._leg.relay_socket(sock.fileno(), host, port, self._chain, write_fd)
        except Exception as exc:  # no thread, no socket: the callback relay goes on
            log.warning("native relay thread not started (%s); relaying from the callback", exc)
            os.close(read_fd)
            os.close(write_fd)
            return
        relay.set_paused(self._paused())
        loop = asyncio.get_running_loop()
        self._thread = _RelayThread(relay, pair.protocol, transport, loop, read_fd, write_fd)
        transport.pause_reading()
        loop.add_reader(read_fd, self._drain_socket_relay)

    def _drain_socket_relay(self) -> None:
        """Hand aioice what the thread did not relay (STUN, DTLS, RTCP), as the loop would
        have; end the relay if the chain failed."""
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(BlockingIOError):
            os.read(thread.wake_r, 4096)
        thread.pass_on()
        error = thread.relay.take_error()
        if error is not None:
            self._chain = None
            self._stop_socket_relay()
            self._relay_error(error)

    def sync_paused(self) -> None:
        """Tell the relay thread whether the session is paused, and count what it dropped."""
        thread = self._thread
        if thread is None:
            return
        thread.relay.set_paused(self._paused())
        dropped = thread.relay.counts()["paused_drops"]
        self.paused_drops += dropped - thread.paused_counted
        thread.paused_counted = dropped

    def _stop_socket_relay(self) -> None:
        """Join the thread, give the socket back to the loop, and pass on what it held."""
        thread = self._thread
        if thread is None:
            return
        counts = thread.stop()
        self._bytes_sent += counts["bytes_sent"]
        self.unsent += counts["send_failed"]
        self.sync_paused()
        self._thread = None
        thread.give_back()

    def _relay(self, leg: Any, chain: Any, data: bytes) -> None:
        if self._paused():
            self.paused_drops += 1
            return
        try:
            datagrams = leg.relay(data, chain)
        except Exception as exc:  # a kernel refused the audio: the pipeline failed
            self._chain = None
            self._relay_error(exc)
            return
        if datagrams:
            pair = self._connection._nominated.get(1)
            if pair is None:  # ICE lost its pair: the connection is ending
                self.unsent += len(datagrams)
                return
            # a host pair's transport sends at once; a relayed pair's is aioice's TURN transport
            sendto, address = pair.protocol.transport.sendto, pair.remote_addr
            for datagram in datagrams:
                sendto(datagram, address)
                self._bytes_sent += len(datagram)

    async def send_from(self, track: AudioOutputTrack) -> None:
        """Encode and send ``track``'s paced 20 ms blocks until it ends or the connection goes."""
        await self._ready.wait()
        leg, connection = self._leg, self._connection
        sent = 0
        while True:
            try:
                frame = await track.next_frame()
            except MediaStreamError:
                return
            datagram = leg.send(frame.samples)
            try:
                await connection.send(datagram)
            except ConnectionError:
                return
            self._bytes_sent += len(datagram)
            sent += 1
            if sent % _SYNC_EVERY == 1:
                self.sync_sender()

    def sync_sender(self, stats: Mapping[str, int] | None = None) -> None:
        """aiortc's sender reports (RTCP SR) and ``getStats()`` count what the leg sent
        (``stats``: the leg's, if just read)."""
        sender = self._transceiver.sender
        stats = self._leg.stats() if stats is None else stats
        sender._RTCRtpSender__packet_count = stats["packets_sent"]
        sender._RTCRtpSender__octet_count = stats["bytes_sent"]
        sender._RTCRtpSender__rtp_timestamp = stats["last_timestamp"]
        sender._RTCRtpSender__ntp_timestamp = current_ntp_time()

    def stats(self) -> dict[str, int]:
        """The leg's counters (empty before it starts), the datagram bytes both ways (as a
        transport counts them) and the input frames dropped here."""
        if self._leg is None:
            return {}
        counts: dict[str, int] = dict(self._leg.stats())
        counts["datagram_bytes_received"] = counts["bytes_received"]
        sent, unsent = self._bytes_sent, self.unsent
        if self._thread is not None:
            thread = self._thread.relay.counts()
            sent += thread["bytes_sent"]
            unsent += thread["send_failed"]
            counts["relay_thread"] = 1
            counts["relay_passed"] = thread["passed"]
            counts["relay_passed_dropped"] = thread["passed_dropped"]
            counts["relay_off_pair"] = self.off_pair
        counts["datagram_bytes_sent"] = sent
        counts["input_dropped"] = self.source.dropped
        counts["relay_unsent"] = unsent
        return counts

    def close(self) -> None:
        """Give the datagrams back to aiortc and end the source."""
        self._stop_socket_relay()
        if self._connection is not None and self._original is not None:
            vars(self._connection).pop("data_received", None)  # aioice's own method again
            self._original = None
        if self._dtls is not None:
            self._dtls.remove_listener("statechange", self._on_dtls_state)
        self.source.stop()


__all__ = [
    "AudioPlan",
    "LegStreamStatistics",
    "NativeAudioPath",
    "NativeAudioSource",
    "ParkedTrack",
    "answer_audio",
    "plan_audio",
    "relay_chain",
    "srtp_keys",
]
