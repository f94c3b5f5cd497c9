"""The engine's native RTP audio leg (``stream._engine.RtpAudioLeg``) against the Python stack:
packets aiortc's RtpPacket, PyAV's libopus and pylibsrtp make are received by the leg, the leg's
datagrams are read back by them, and its jitter buffer decides as ``AdaptiveAudioJitterBuffer``
does. No mocks: every packet is real SRTP with real Opus."""

from __future__ import annotations

import os
import random
import select
import socket
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

from stream.engine import engine_available
from stream.errors import ConfigError, FormatError

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.skipif(
    not engine_available(), reason="the RTP leg is native only: the Rust engine is not built"
)

import av  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters  # noqa: E402
from aiortc.rtp import HeaderExtensionsMap, RtpPacket  # noqa: E402
from pylibsrtp import Error as SrtpError  # noqa: E402
from pylibsrtp import Policy, Session  # noqa: E402

from stream.transport._aiortc import AdaptiveAudioJitterBuffer  # noqa: E402

if TYPE_CHECKING:
    from stream._engine import RtpAudioLeg

RATE = 48_000
BLOCK = 960  # 20 ms
PT = 111
REMOTE_SSRC, LOCAL_SSRC = 0x1234_5678, 0x0BAD_CAFE
MID_ID = 9
# (name, libsrtp profile, key + salt bytes), as aiortc's rtcdtlstransport.py lists them
PROFILES = [
    ("SRTP_AEAD_AES_256_GCM", Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32 + 12),
    ("SRTP_AEAD_AES_128_GCM", Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16 + 12),
    ("SRTP_AES128_CM_SHA1_80", Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16 + 14),
]


def _leg_class() -> type[RtpAudioLeg]:
    from stream import _engine  # only where the engine is built (pytestmark)

    return _engine.RtpAudioLeg


def _session(key: bytes, profile: int, outbound: bool) -> Session:
    """A pylibsrtp session set up as aiortc's RTCDtlsTransport sets up its own."""
    policy = Policy(
        key=key,
        ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
        srtp_profile=profile,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


class Peer:
    """The Python side of one leg: pylibsrtp sessions keyed to match the leg's."""

    def __init__(self, name: str, profile: int, key_len: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.to_leg = rng.randbytes(key_len)  # the leg's rx key
        self.from_leg = rng.randbytes(key_len)  # the leg's tx key
        self.tx = _session(self.to_leg, profile, outbound=True)
        self.rx = _session(self.from_leg, profile, outbound=False)
        self.leg = _leg_class()(
            name,
            self.to_leg,
            self.from_leg,
            remote_ssrc=REMOTE_SSRC,
            local_ssrc=LOCAL_SSRC,
            payload_type=PT,
            mid=(MID_ID, b"audio0"),
        )

    def stats(self) -> dict[str, int]:
        return self.leg.stats()


def _tones(blocks: int) -> npt.NDArray[np.int16]:
    """440 Hz and 1 kHz under a 3 Hz syllable-like envelope, interleaved stereo int16
    ``(samples, 2)``. (Opus keeps the waveform of tones, not the phase of a voice's higher
    harmonics: a sample-wise SNR needs tones.)"""
    t = np.arange(blocks * BLOCK) / RATE
    tones = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1000 * t)
    envelope = 1 - 0.4 * (1 + np.sin(2 * np.pi * 3 * t))
    mono = (tones * envelope * 32767).astype(np.int16)
    return np.ascontiguousarray(np.stack([mono, mono], axis=1))


def _pyav_encoder() -> Any:
    """PyAV's libopus set up as aiortc's encoder (tracks.OpusPacketizer)."""
    codec: Any = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 96000
    codec.format = "s16"
    codec.layout = "stereo"
    codec.options = {"application": "voip"}
    codec.sample_rate = RATE
    codec.time_base = Fraction(1, RATE)
    return codec


def _opus_packets(source: npt.NDArray[np.int16]) -> list[bytes]:
    codec = _pyav_encoder()
    packets: list[bytes] = []
    for i in range(0, len(source), BLOCK):
        frame = av.AudioFrame.from_ndarray(
            source[i : i + BLOCK].reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = RATE
        frame.pts = i
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    return packets


def _pyav_decode(payloads: list[bytes]) -> npt.NDArray[np.float32]:
    """Left channel of PyAV's libopus decode of ``payloads``, as float32."""
    codec: Any = av.CodecContext.create("libopus", "r")
    codec.sample_rate = RATE
    codec.layout = "stereo"
    out = []
    for payload in payloads:
        for frame in codec.decode(av.Packet(payload)):
            samples = frame.to_ndarray()
            left = samples[0] if frame.format.is_planar else samples[0, ::2]
            scale = 1.0 if samples.dtype.kind == "f" else 1 / 32768
            out.append(left.astype(np.float32) * np.float32(scale))
    return np.concatenate(out)


def _snr_db(reference: npt.NDArray[np.float32], got: npt.NDArray[np.float32]) -> float:
    """SNR of ``got`` against ``reference`` at the best delay of ``got`` (0 to 20 ms)."""
    best = -np.inf
    n = min(len(reference), len(got)) - BLOCK
    ref = reference[:n].astype(np.float64)
    for delay in range(BLOCK):
        err = got[delay : delay + n].astype(np.float64) - ref
        best = max(best, 10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-12)))
    return float(best)


def _rtp(seq: int, timestamp: int, payload: bytes, ssrc: int = REMOTE_SSRC) -> bytes:
    packet = RtpPacket(
        payload_type=PT, sequence_number=seq & 0xFFFF, timestamp=timestamp, ssrc=ssrc
    )
    packet.payload = payload
    return bytes(packet.serialize())


@pytest.fixture(scope="module")
def speech() -> tuple[npt.NDArray[np.int16], list[bytes]]:
    source = _tones(100)
    return source, _opus_packets(source)


@pytest.mark.parametrize(("name", "profile", "key_len"), PROFILES)
def test_leg_receives_what_aiortc_pyav_and_libsrtp_send(
    name: str, profile: int, key_len: int, speech: tuple[npt.NDArray[np.int16], list[bytes]]
) -> None:
    source, payloads = speech
    peer = Peer(name, profile, key_len)
    base_seq, base_ts = 65_500, 0xFFFF_0000  # both wrap during the stream
    got: list[tuple[int, npt.NDArray[np.float32]]] = []
    for i, payload in enumerate(payloads):
        got.extend(
            peer.leg.receive(
                peer.tx.protect(_rtp(base_seq + i, (base_ts + i * BLOCK) % 2**32, payload))
            )
        )
    assert [t for t, _ in got] == [i * BLOCK for i in range(len(payloads))]
    for _, samples in got:
        assert samples.dtype == np.float32 and samples.shape == (2, BLOCK)
        assert samples.flags.c_contiguous
    left = np.concatenate([s[0] for _, s in got])
    reference = source[:, 0].astype(np.float32) / np.float32(32768)
    skip = 5 * BLOCK  # the encoder's start-up
    assert _snr_db(reference[skip:], left[skip:]) > 12.0  # about 20 dB
    # the same packets through PyAV's libopus decoder give the same audio (both 16-bit)
    assert _snr_db(_pyav_decode(payloads)[skip:], left[skip:]) > 60.0
    stats = peer.stats()
    assert stats["frames_decoded"] == stats["packets_received"] == len(payloads)
    assert stats["base_sequence"] == base_seq
    assert stats["highest_sequence"] == base_seq + len(payloads) - 1  # one cycle: 65536 + seq
    assert stats["auth_failures"] == stats["packets_lost"] == stats["decode_errors"] == 0


@pytest.mark.parametrize(("name", "profile", "key_len"), PROFILES)
def test_leg_datagrams_read_back_with_aiortc_pyav_and_libsrtp(
    name: str, profile: int, key_len: int, speech: tuple[npt.NDArray[np.int16], list[bytes]]
) -> None:
    source, _ = speech
    peer = Peer(name, profile, key_len)
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=MID_ID, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                )
            ]
        )
    )
    packets = []
    for i in range(0, len(source), BLOCK):
        datagram = peer.leg.send(source[i : i + BLOCK])
        packets.append(RtpPacket.parse(peer.rx.unprotect(datagram), extensions))
    first = packets[0]
    assert first.marker == 1 and not any(p.marker for p in packets[1:])
    for i, p in enumerate(packets):
        assert (p.payload_type, p.ssrc) == (PT, LOCAL_SSRC)
        assert p.sequence_number == (first.sequence_number + i) & 0xFFFF
        assert p.timestamp == (first.timestamp + i * BLOCK) % 2**32
        assert p.extensions.mid == "audio0"
    stats = peer.stats()
    assert stats["packets_sent"] == stats["frames_encoded"] == len(packets)
    assert stats["bytes_sent"] == sum(len(p.payload) for p in packets)
    assert stats["last_timestamp"] == packets[-1].timestamp
    left = _pyav_decode([p.payload for p in packets])
    reference = source[:, 0].astype(np.float32) / np.float32(32768)
    assert _snr_db(reference[5 * BLOCK :], left[5 * BLOCK :]) > 12.0


def _schedule(count: int, seed: int) -> list[int]:
    """Packet indices as a bad network delivers them: reordered, lost, duplicated, a long
    outage and a straggler long after its turn; then a calm stretch after one swap, long enough
    for the buffer to shrink its backlog (``shrink_after``)."""
    rng = random.Random(seed)
    rough = count - 400
    order = [i for i in range(rough) if not 700 <= i < 720 and rng.random() > 0.02]
    for _ in range(rough // 25):  # swaps of neighbours and near neighbours
        i = rng.randrange(len(order) - 4)
        j = i + rng.randint(1, 4)
        order[i], order[j] = order[j], order[i]
    for _ in range(rough // 50):  # duplicates, soon or long after
        i = rng.randrange(len(order))
        order.insert(min(len(order), i + rng.choice([1, 3, 40])), order[i])
    order.insert(900, 705)  # from inside the outage, far too late
    return [*order, rough + 1, rough, *range(rough + 2, count)]


def test_jitter_buffer_decides_as_the_python_one(
    speech: tuple[npt.NDArray[np.int16], list[bytes]],
) -> None:
    _, payloads = speech
    name, profile, key_len = PROFILES[1]
    peer = Peer(name, profile, key_len)
    python_rx = _session(peer.to_leg, profile, outbound=False)  # aiortc's receive path
    buffer = AdaptiveAudioJitterBuffer(depth=3)
    count, base_seq, base_ts = 1500, 64_000, 123_456
    datagrams = [
        peer.tx.protect(_rtp(base_seq + i, base_ts + i * BLOCK, payloads[i % len(payloads)]))
        for i in range(count)
    ]
    expected: list[int] = []
    got: list[int] = []
    last_end: int | None = None
    for i in _schedule(count, seed=13):
        got.extend(t for t, _ in peer.leg.receive(datagrams[i]))
        try:
            packet = RtpPacket.parse(python_rx.unprotect(datagrams[i]))
        except SrtpError:  # a replay: libsrtp drops it before the jitter buffer
            continue
        skipped = buffer.skipped
        _, frame = buffer.add(packet)
        if frame is None:
            continue
        at = frame.timestamp - base_ts
        gap = buffer.skipped - skipped
        if 0 < gap <= 5 and last_end is not None:  # concealed, 20 ms each, before the packet
            expected.extend(last_end + k * BLOCK for k in range(gap))
        expected.append(at)
        last_end = at + BLOCK
    assert got == expected
    stats = peer.stats()
    counts = (stats["packets_late"], stats["packets_lost"], stats["packets_dropped"])
    assert counts == (buffer.late, buffer.skipped, buffer.dropped)
    assert stats["jitter_held"] == len(buffer._held)  # what /metrics shows as held now
    assert buffer.late > 0 and buffer.skipped > 20 and buffer.dropped > 0  # all were exercised
    assert stats["replays"] > 0 and stats["concealed"] > 0
    assert stats["concealed"] == len(expected) - stats["frames_decoded"]


@pytest.mark.parametrize(("name", "profile", "key_len"), PROFILES)
def test_garbage_never_raises(
    name: str, profile: int, key_len: int, speech: tuple[npt.NDArray[np.int16], list[bytes]]
) -> None:
    _, payloads = speech
    peer = Peer(name, profile, key_len)
    rng = random.Random(5)
    good = [peer.tx.protect(_rtp(10 + i, i * BLOCK, payloads[i])) for i in range(4)]
    assert len(peer.leg.receive(good[0])) == 1
    junk: list[bytes] = [b"", b"\x80", good[1][:11], good[1][:20]]
    junk += [rng.randbytes(rng.randrange(1, 300)) for _ in range(200)]
    junk += [
        bytes([0x80 | rng.randrange(16)]) + rng.randbytes(rng.randrange(11, 200))
        for _ in range(200)
    ]
    junk.append(good[0])  # a replay
    flipped = bytearray(good[1])
    flipped[len(flipped) // 2] ^= 0x10
    junk.append(bytes(flipped))
    other = bytearray(peer.tx.protect(_rtp(11, BLOCK, payloads[1], ssrc=REMOTE_SSRC ^ 1)))
    junk.append(bytes(other))
    for datagram in junk:
        assert peer.leg.receive(datagram) == []
    stats = peer.stats()
    dropped = sum(
        stats[k]
        for k in ("packets_malformed", "auth_failures", "replays", "other_ssrc", "other_payload")
    )
    assert dropped == len(junk)
    assert stats["replays"] == 1 and stats["auth_failures"] >= 1 and stats["other_ssrc"] >= 1
    # the leg goes on: the next packets decode as if nothing had come between
    assert [t for d in good[1:] for t, _ in peer.leg.receive(d)] == [BLOCK, 2 * BLOCK, 3 * BLOCK]


def test_settings_and_blocks_are_checked() -> None:
    leg_class = _leg_class()
    name, _, key_len = PROFILES[1]
    key = bytes(key_len)
    good: dict[str, Any] = {"remote_ssrc": 1, "local_ssrc": 2, "payload_type": PT}
    bad: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        (("SRTP_NULL", key, key), good, "unknown SRTP profile"),
        ((name, key[:-1], key), good, "rx_key must be 28 bytes"),
        ((name, key, key + b"x"), good, "tx_key must be 28 bytes"),
        ((name, key, "text"), good, "tx_key must be bytes"),
        ((name, key, key), {**good, "payload_type": 128}, "payload_type"),
        ((name, key, key), {**good, "remote_ssrc": 2**32}, "remote_ssrc"),
        ((name, key, key), {**good, "decode_channels": 3}, "decode_channels"),
        ((name, key, key), {**good, "jitter_depth": 9}, "jitter_depth"),
        ((name, key, key), {**good, "mid": (15, b"0")}, "mid id"),
        ((name, key, key), {**good, "mid": (1, b"")}, "mid value"),
        ((name, key, key), {**good, "mid": (1, bytes(17))}, "mid value"),
    ]
    for args, kwargs, message in bad:
        with pytest.raises(ConfigError, match=message) as info:
            leg_class(*args, **kwargs)
        assert info.value.stage == "rtp" and str(info.value).startswith("rtp: ")
    leg = leg_class(name, key, key, **good, decode_channels=1, jitter_depth=0)
    blocks: list[tuple[Any, str]] = [
        (np.zeros((960, 2), np.float32), "int16"),
        (np.zeros(1920, np.int16), "int16"),
        (np.zeros((1000, 2), np.int16), "whole Opus frame"),
        (np.zeros((960, 3), np.int16), "1 or 2 channels"),
    ]
    for block, message in blocks:
        with pytest.raises(FormatError, match=message) as err:
            leg.send(block)
        assert err.value.stage == "rtp"
    # mono, strided input and every Opus frame size are taken
    for size in (120, 240, 480, 960, 1920, 2880):
        assert leg.send(np.zeros((size, 1), np.int16))
    assert leg.send(np.zeros((960, 4), np.int16)[:, ::2])
    assert leg.stats()["packets_sent"] == 7


# -- relay: a whole round trip in one call ---------------------------------------------------

TONE_HZ = 1000.0


def _relay_legs(key_len: int = 28) -> tuple[RtpAudioLeg, RtpAudioLeg, RtpAudioLeg, RtpAudioLeg]:
    """``(a, b, c, twin)``: A sends to B, B relays to C (B's tx key is C's rx key), and ``twin``
    is keyed as B, to receive what B relays with plain ``receive``."""
    leg_class = _leg_class()
    name = PROFILES[1][0]
    rng = random.Random(11)
    a_to_b, b_to_c, unused = (rng.randbytes(key_len) for _ in range(3))
    a_ssrc, b_ssrc, c_ssrc = 0x0A0A, 0x0B0B, 0x0C0C

    def leg(rx: bytes, tx: bytes, remote: int, local: int) -> RtpAudioLeg:
        return leg_class(name, rx, tx, remote_ssrc=remote, local_ssrc=local, payload_type=PT)

    return (
        leg(unused, a_to_b, c_ssrc, a_ssrc),
        leg(a_to_b, b_to_c, a_ssrc, b_ssrc),
        leg(b_to_c, unused, b_ssrc, c_ssrc),
        leg(a_to_b, b_to_c, a_ssrc, b_ssrc),
    )


def _tone(blocks: int) -> npt.NDArray[np.int16]:
    t = np.arange(blocks * BLOCK) / RATE
    mono = np.rint(0.25 * np.sin(2 * np.pi * TONE_HZ * t) * 32768).astype(np.int16)
    return np.ascontiguousarray(np.stack([mono, mono], axis=1))


def _gain_chain() -> Any:
    from stream import _engine

    return _engine.Chain([_engine.GainKernel(gain_db=-6.0)])


def _resampling_chain() -> Any:
    from stream import _engine

    return _engine.Chain(
        [
            _engine.ChannelMixKernel(1),
            _engine.ResampleKernel(16_000),
            _engine.GainKernel(gain_db=-6.0),
            _engine.ResampleKernel(RATE, stage="upsample"),
        ]
    )


def _received(leg: RtpAudioLeg, datagrams: list[bytes]) -> tuple[list[int], Any]:
    """Frame timestamps and the left channel of what ``leg`` receives of ``datagrams``."""
    stamps: list[int] = []
    left: list[npt.NDArray[np.float32]] = []
    for d in datagrams:
        for timestamp, samples in leg.receive(d):
            stamps.append(timestamp)
            left.append(samples[0])
    return stamps, np.concatenate(left) if left else np.zeros(0, np.float32)


@pytest.mark.parametrize("chain_name", ["gain", "resampling"])
def test_relay_sends_the_tone_back_through_the_chain(chain_name: str) -> None:
    a, b, c, _ = _relay_legs()
    chain = _gain_chain() if chain_name == "gain" else _resampling_chain()
    source = _tone(100)
    relayed: list[bytes] = []
    for i in range(100):
        relayed += b.relay(a.send(source[i * BLOCK : (i + 1) * BLOCK]), chain)
    stats = b.stats()
    assert stats["relay_frames"] == 100 and stats["frames_decoded"] == 100
    # the resampling chain's first output is short by its delay and is front-padded, so no
    # block waits for the next frame: every call sends one
    assert stats["packets_sent"] == len(relayed) == 100
    assert stats["relay_gaps"] == 0 and stats["relay_ns"] > 0
    stamps, left = _received(c, relayed)
    assert stamps == [i * BLOCK for i in range(100)]
    steady = left[20 * BLOCK :].astype(np.float64)
    reference = source[20 * BLOCK :, 0].astype(np.float64) / 32768
    level_db = 10 * np.log10(np.mean(steady**2) / np.mean(reference**2))
    assert abs(level_db + 6.0) < 0.5, level_db
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    peak_hz = np.argmax(spectrum) * RATE / len(steady)
    assert abs(peak_hz - TONE_HZ) < 5, peak_hz


def test_relay_keeps_time_across_losses_and_measures_levels() -> None:
    from stream.audio_adapter import from_fltp

    a, b, c, twin = _relay_legs()
    chain, twin_chain = _gain_chain(), _gain_chain()
    sent = [a.send(block) for block in np.split(_tone(60), 60)]
    kept = [d for i, d in enumerate(sent) if i != 10 and not 30 <= i < 40]  # 1 lost, then 10
    relayed: list[bytes] = []
    expected_out: list[npt.NDArray[np.int16]] = []
    expected_in: list[npt.NDArray[np.float32]] = []
    direct: list[int] = []
    for d in kept:
        relayed += b.relay(d, chain)
        for timestamp, samples in twin.receive(d):
            direct.append(timestamp)
            expected_in.append(samples)
            expected_out += [from_fltp(x, "s16") for x in twin_chain.process(samples, RATE)]
    stats = b.stats()
    assert (stats["concealed"], stats["packets_lost"], stats["relay_gaps"]) == (1, 11, 1)
    # what C sees is timed as what B received: concealment keeps it continuous, the long gap
    # is a jump of the send timestamp, not audio played early
    stamps, _ = _received(c, relayed)
    assert stamps == direct
    steps = np.diff(stamps)
    assert sorted(set(steps.tolist())) == [BLOCK, 11 * BLOCK]
    in_peak, in_sum_sq, in_count, out_peak, out_sum_sq, out_count = b.levels()
    x = np.concatenate([s.ravel() for s in expected_in]).astype(np.float64)
    y = np.concatenate([s.ravel() for s in expected_out]).astype(np.float64) / 32768
    assert (in_count, out_count) == (x.size, y.size) == (2 * BLOCK * len(direct),) * 2
    assert in_peak == np.max(np.abs(x)) and out_peak == np.max(np.abs(y))
    assert in_sum_sq == pytest.approx(np.dot(x, x), rel=1e-9)
    assert out_sum_sq == pytest.approx(np.dot(y, y), rel=1e-9)
    assert b.levels() == (0.0, 0.0, 0, 0.0, 0.0, 0)


def test_relay_refuses_what_rtp_cannot_send_and_goes_on() -> None:
    from stream import _engine

    a, b, c, _ = _relay_legs()
    sent = [a.send(block) for block in np.split(_tone(7), 7)]
    with pytest.raises(ConfigError, match="48000 Hz") as config:
        b.relay(sent[0], _engine.Chain([_engine.ResampleKernel(16_000)]))
    assert config.value.stage == "rtp"
    assert b.stats()["packets_received"] == 0  # refused before the datagram was taken
    with pytest.raises(FormatError, match="2 channels to 3") as kernel:  # a kernel's own error
        b.relay(sent[1], _engine.Chain([_engine.ChannelMixKernel(3)]))
    assert kernel.value.stage == "channel_mix"
    to_three: list[_engine.Kernel] = [
        _engine.ChannelMixKernel(1),
        _engine.ChannelMixKernel(3, stage="to_three"),
    ]
    with pytest.raises(FormatError, match="must emit 1 or 2 channels") as fmt:
        b.relay(sent[2], _engine.Chain(to_three))
    assert fmt.value.stage == "rtp"
    assert b.stats()["frames_decoded"] == 2 and b.stats()["packets_sent"] == 0
    # garbage: nothing sent, counted; then the leg relays as before
    rng = random.Random(3)
    junk = [rng.randbytes(rng.randrange(1, 200)) for _ in range(50)] + [sent[1]]  # + a replay
    chain = _gain_chain()
    for datagram in junk:
        assert b.relay(datagram, chain) == []
    stats = b.stats()
    dropped = sum(
        stats[k]
        for k in ("packets_malformed", "auth_failures", "replays", "other_ssrc", "other_payload")
    )
    assert dropped == len(junk) and stats["replays"] == 1
    relayed = [d for s in sent[3:] for d in b.relay(s, chain)]
    assert len(relayed) == 4
    stamps, _ = _received(c, relayed)
    assert stamps == [0, BLOCK, 2 * BLOCK, 3 * BLOCK]


def test_relay_and_receive_mix() -> None:
    from stream.audio_adapter import from_fltp

    a, b, c, _ = _relay_legs()
    chain = _gain_chain()
    sent = [a.send(block) for block in np.split(_tone(12), 12)]
    out: list[bytes] = []
    for i, d in enumerate(sent[:8]):
        if i % 2:
            out += b.relay(d, chain)
        else:  # the Python path: receive, the same chain, send
            for _, samples in b.receive(d):
                out += [b.send(from_fltp(x, "s16")) for x in chain.process(samples, RATE)]
    assert b.stats()["relay_gaps"] == 0 and b.stats()["relay_frames"] == 4
    out += b.relay(sent[8], chain)
    assert len(out) == 9
    out += b.relay(sent[9], chain)
    assert len(out) == 10
    stamps, _ = _received(c, out)
    assert stamps == [i * BLOCK for i in range(10)]
    assert b.stats()["packets_sent"] == 10


def _wait_readable(fd: int) -> None:
    ready, _, _ = select.select([fd], [], [], 10)
    assert ready, "no wake-up from the relay thread in 10 s"
    os.read(fd, 64)


def test_relay_socket_relays_on_its_thread_and_passes_the_rest() -> None:
    """``relay_socket``: the peer's audio goes through the chain and back on the engine's thread;
    what is not its audio waits for the socket's owner, who hears of it through the pipe."""
    a, b, c, _ = _relay_legs()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wake_r, wake_w = os.pipe()
    try:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)  # as the event loop's socket is
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(10)
        os.set_blocking(wake_w, False)
        to_server, peer_port = server.getsockname(), peer.getsockname()[1]
        relay = b.relay_socket(server.fileno(), "127.0.0.1", peer_port, _gain_chain(), wake_w)
        assert relay.running
        source = _tone(30)
        sent = [a.send(block) for block in np.split(source, 30)]
        back = []
        for d in sent[:20]:
            peer.sendto(d, to_server)
            back.append(peer.recv(4096))  # the gain chain gives one block per frame
        stamps, left = _received(c, back)
        assert stamps == [i * BLOCK for i in range(20)]
        steady = left[10 * BLOCK :].astype(np.float64)
        reference = source[10 * BLOCK : 20 * BLOCK, 0].astype(np.float64) / 32768
        level_db = 10 * np.log10(np.mean(steady**2) / np.mean(reference**2))
        assert abs(level_db + 6.0) < 0.5, level_db
        # not the peer's audio (STUN, DTLS, RTCP, another SSRC): passed on, in order
        other_ssrc = _rtp(1, 0, b"\x00" * 10, ssrc=0x0C0C)
        others = (b"\x00\x01stun", b"\x16\xfe\xfddtls", other_ssrc)
        for datagram in others:
            peer.sendto(datagram, to_server)
        _wait_readable(wake_r)
        passed = relay.take_passed()
        while len(passed) < 3:
            _wait_readable(wake_r)
            passed += relay.take_passed()
        assert passed == [(d, ("127.0.0.1", peer_port)) for d in others]
        # paused: the audio is dropped and counted (the thread reads in order, so the datagram
        # passed after it shows it was handled)
        relay.set_paused(True)
        peer.sendto(sent[20], to_server)
        peer.sendto(b"\x00\x01after", to_server)
        _wait_readable(wake_r)
        assert relay.take_passed() == [(b"\x00\x01after", ("127.0.0.1", peer_port))]
        relay.set_paused(False)
        for d in sent[21:]:
            peer.sendto(d, to_server)
        peer.sendto(b"\x00\x01end", to_server)  # after the thread handled the audio
        _wait_readable(wake_r)
        assert relay.take_passed() == [(b"\x00\x01end", ("127.0.0.1", peer_port))]
        relay.stop()
        assert not relay.running
        counts = relay.counts()
        assert (counts["relayed"], counts["paused_drops"]) == (29, 1)
        assert counts["passed"] == 5 and counts["passed_dropped"] == counts["send_failed"] == 0
        after = [peer.recv(4096) for _ in range(counts["sent"] - 20)]
        stamps, _ = _received(c, after)
        assert stamps and stamps[0] >= 20 * BLOCK  # on after the dropped one (the jitter
        assert stamps == sorted(stamps)  # buffer may hold the last for a late packet)
        assert counts["bytes_sent"] == sum(map(len, back + after))  # datagram bytes
        # stopped: the socket is its owner's again
        peer.sendto(b"mine", to_server)
        server.settimeout(10)
        assert server.recv(64) == b"mine"
    finally:
        server.close()
        peer.close()
        os.close(wake_r)
        os.close(wake_w)


def test_relay_socket_refuses_a_chain_rtp_cannot_send_and_a_bad_address() -> None:
    from stream import _engine

    _, b, _, _ = _relay_legs()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        r, w = os.pipe()
        try:
            chain = _engine.Chain([_engine.ResampleKernel(16_000)])
            with pytest.raises(ConfigError, match="48000 Hz"):
                b.relay_socket(s.fileno(), "127.0.0.1", 9, chain, w)
            with pytest.raises(ConfigError, match="not an IP address") as bad:
                b.relay_socket(s.fileno(), "peer.example", 9, _gain_chain(), w)
            assert bad.value.stage == "rtp"
        finally:
            os.close(r)
            os.close(w)


def test_relay_socket_waits_for_a_live_setting() -> None:
    """A live ``set`` (the session's loop changing a stage's setting) holds the kernel for a
    moment; the relay thread waits for it rather than failing the call as busy."""
    import threading

    from stream import _engine

    a, b, c, _ = _relay_legs()
    gain = _engine.GainKernel(gain_db=-6.0)
    chain = _engine.Chain([gain])
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wake_r, wake_w = os.pipe()
    stop = threading.Event()

    def settings() -> None:  # as fast as a loop can: the kernel is held most of the time
        while not stop.is_set():
            gain.gain_db = -6.0

    setter = threading.Thread(target=settings)
    try:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(10)
        os.set_blocking(wake_w, False)
        relay = b.relay_socket(server.fileno(), "127.0.0.1", peer.getsockname()[1], chain, wake_w)
        setter.start()
        back = []
        for block in np.split(_tone(50), 50):
            peer.sendto(a.send(block), server.getsockname())
            back.append(peer.recv(4096))
        stop.set()
        setter.join()
        assert relay.running and relay.take_error() is None
        relay.stop()
        assert relay.counts()["relayed"] == 50
        assert _received(c, back)[0] == [i * BLOCK for i in range(50)]
    finally:
        stop.set()
        if setter.is_alive():
            setter.join()
        server.close()
        peer.close()
        os.close(wake_r)
        os.close(wake_w)
