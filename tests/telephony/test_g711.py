"""G.711 against the standard's own tables, and the G711Encode/G711Decode stages on both backends.

The reference is built here from ITU-T G.711's segment definition (Table 1a for A-law, Table 2a
for mu-law: each segment's decision values, step size and the character signal of its
intervals), not from the implementation's bit arithmetic: intervals are enumerated, every int16
input is placed among the decision values with ``searchsorted``, and codes are counted down from
the table's first character (mu-law) or built as sign/segment/step bits with the even bits
inverted (A-law).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from aiohttp import WSMessage, WSMsgType
from hypothesis import given, settings
from hypothesis import strategies as st

from media_nodes.audio.g711 import G711Decode, G711Encode, G711Frame
from stream import Pipeline
from stream.engine import engine_available
from stream.errors import BackendUnavailable, ConfigError, FormatError, StreamError
from stream.frames import AudioFrame
from stream.kernels.g711 import (
    SILENCE,
    G711Kernel,
    decode_float,
    decode_int16,
    encode_float,
    encode_int16,
    g711_kernel,
)
from stream.testing import split_frames, tone
from stream.transport.telephony.call import Audio, ProviderLine
from stream.transport.telephony.twilio import TwilioSerializer

LAWS = ["mulaw", "alaw"]
needs_engine = pytest.mark.skipif(not engine_available(), reason="parity needs the engine")

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)


def _intervals(
    first: list[tuple[int, int]], ends: list[int], steps: list[int]
) -> list[tuple[int, int]]:
    """(lower decision value, upper decision value) of each of the 128 intervals, in order."""
    out = list(first)
    lo = out[-1][1] if out else 0
    for end, step in zip(ends, steps, strict=True):
        while lo < end:
            out.append((lo, lo + step))
            lo += step
    assert len(out) == 128
    return out


def mulaw_reference() -> tuple[np.ndarray, np.ndarray]:
    """Table 2a on the 14-bit scale (decision values 0, 1, 3, ... 8159): interval 0 of segment 0
    is [0, 1) with value 0, the other intervals have their midpoint; magnitudes past 8159 fall
    in the last interval. The character of interval i is 0xFF - i for positive inputs and
    0x7F - i for negative ones (all bits inverted for transmission)."""
    seg0 = [(0, 1)] + [(1 + 2 * k, 3 + 2 * k) for k in range(15)]  # 1 .. 31 in steps of 2
    iv = _intervals(seg0, [95, 223, 479, 991, 2015, 4063, 8159], [4, 8, 16, 32, 64, 128, 256])
    upper = np.array([hi for _, hi in iv])
    value = np.array([0] + [(lo + hi) // 2 for lo, hi in iv[1:]])
    x = ALL_INT16
    magnitude = np.where(x >= 0, x, -x - 1) // 4
    index = np.minimum(np.searchsorted(upper, magnitude, side="right"), 127)
    codes = np.where(x >= 0, 0xFF - index, 0x7F - index).astype(np.uint8)
    decoded = np.zeros(256, np.int64)
    for i in range(128):
        decoded[0xFF - i] = value[i] * 4
        decoded[0x7F - i] = -value[i] * 4
    return codes, decoded


def alaw_reference() -> tuple[np.ndarray, np.ndarray]:
    """Table 1a on the 12-bit scale (decision values 0, 2, 4, ... 4096): steps of 2 in segments
    0 and 1, then 4, 8 ... 128; every interval reconstructs to its midpoint. The character is
    sign (1 positive), three segment bits, four step bits, then the even bits inverted."""
    iv = _intervals([], [32, 64, 128, 256, 512, 1024, 2048, 4096], [2, 2, 4, 8, 16, 32, 64, 128])
    upper = np.array([hi for _, hi in iv])
    value = np.array([(lo + hi) // 2 for lo, hi in iv])
    x = ALL_INT16
    magnitude = np.where(x >= 0, x, -x - 1) // 8
    index = np.minimum(np.searchsorted(upper, magnitude, side="right"), 127)
    codes = (np.where(x >= 0, 0x80, 0) | index) ^ 0x55
    decoded = np.zeros(256, np.int64)
    for i in range(128):
        decoded[(0x80 | i) ^ 0x55] = value[i] * 8
        decoded[i ^ 0x55] = -value[i] * 8
    return codes.astype(np.uint8), decoded


REFERENCES = {"mulaw": mulaw_reference, "alaw": alaw_reference}


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_every_int16_encodes_and_every_code_decodes_as_the_standard_tables(law: str) -> None:
    codes, decoded = REFERENCES[law]()
    mine = encode_int16(ALL_INT16.astype(np.int16), law)
    bad = np.flatnonzero(mine != codes)
    assert bad.size == 0, f"{bad.size} inputs differ, first {ALL_INT16[bad[0]]}"
    assert np.array_equal(decode_int16(np.arange(256, dtype=np.uint8), law), decoded)


def test_known_characters() -> None:
    """Values every G.711 implementation agrees on: the zeros, the ends, silence."""

    def enc(law: str, *values: int) -> list[int]:
        return encode_int16(np.array(values, np.int16), law).tolist()

    assert enc("mulaw", 0, -1, 32767, -32768) == [0xFF, 0x7F, 0x80, 0x00]
    assert enc("alaw", 0, -1, 32767, -32768) == [0xD5, 0x55, 0xAA, 0x2A]
    assert decode_int16(np.array([0xFF, 0x80, 0x00], np.uint8), "mulaw").tolist() == [
        0,
        32124,
        -32124,
    ]
    assert decode_int16(np.array([0xD5, 0xAA, 0x2A], np.uint8), "alaw").tolist() == [
        8,
        32256,
        -32256,
    ]
    for law, code in SILENCE.items():
        assert abs(int(decode_int16(np.array([code], np.uint8), law)[0])) <= 8


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_round_trip(law: str) -> None:
    """A code decodes to a value that encodes to that code (mu-law's -0 becomes +0), and a tone
    comes back within the law's quantization error (SNR above 33 dB at -10 dBFS)."""
    codes = np.arange(256, dtype=np.uint8)
    again = encode_int16(decode_int16(codes, law), law)
    expected = codes.copy()
    if law == "mulaw":
        expected[0x7F] = 0xFF
    assert np.array_equal(again, expected)
    x = tone(1000, 1.0, 8000, amplitude=0.3)
    y = decode_float(encode_float(x, law), law)
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x - y).astype(np.float64) ** 2))
    assert snr > 33, snr


def test_kernel_checks_its_input() -> None:
    k = G711Kernel("alaw", stage="pcma")
    with pytest.raises(FormatError, match="pcma: non-finite sample at channel 0, index 1"):
        k.encode(np.array([[0.0, np.nan]], np.float32), 8000)
    with pytest.raises(FormatError, match=r"invalid sample rate 8000\.0"):
        k.encode(np.zeros((1, 4), np.float32), 8000.0)
    with pytest.raises(FormatError, match="expected a uint8 array"):
        k.decode(np.zeros((1, 4), np.int16))
    with pytest.raises(ConfigError, match="law must be one of"):
        G711Kernel("ulaw")


def test_frame_bytes() -> None:
    data = bytes(range(10))
    frame = G711Frame.from_bytes(data, "alaw", 8000, channels=2, pts=0)
    assert frame.codes.shape == (2, 5) and frame.to_bytes() == data
    assert frame.time_base is not None and frame.duration == 5 / 8000
    with pytest.raises(FormatError, match="whole 2-channel frames"):
        G711Frame.from_bytes(b"abc", channels=2)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
async def test_stages_encode_and_decode_on_each_backend(law: str, backend: str) -> None:
    x = tone(440, 0.2, 8000, amplitude=0.5)
    frames = split_frames(x, 8000, 160)
    pipeline = Pipeline([G711Encode(law, name="enc"), G711Decode(law, name="dec")])
    out = await pipeline.run(frames)
    assert all(isinstance(f, AudioFrame) for f in out)
    assert [f.pts for f in out] == [f.pts for f in frames]
    y = np.concatenate([f.samples for f in out], axis=1)
    assert np.array_equal(y, decode_float(encode_float(x, law), law))
    assert {n.backend for n in pipeline.nodes} == {backend}


def test_decode_refuses_the_other_law() -> None:
    frame = G711Frame(np.zeros((1, 8), np.uint8), "alaw")
    node = G711Decode("mulaw", name="dec", backend="python")
    node.initialize()
    with pytest.raises(FormatError, match="dec: expected mulaw audio, got alaw"):
        node.process(frame)


# --------------------------------------------------------------------------- the engine's kernel


def _engine_kernel(law: str, stage: str = "g711") -> Any:
    from stream import _engine

    return _engine.G711Kernel(law, stage=stage)


def _edge_floats() -> np.ndarray:
    """Every int16 value as a float, the half-way points between them (round half to even
    decides those), values past full scale (clipped), and signed zeros."""
    ints = np.arange(-32768, 32768, dtype=np.float64)
    halves = (ints + 0.5) / 32768
    extra = np.array([-0.0, 0.0, 1.0, -1.0, 1.5, -7.0, 3e38, -3e38, 1e-45, -1e-45])
    return np.concatenate([ints / 32768, halves, extra]).astype(np.float32)


@needs_engine
@pytest.mark.parametrize("law", LAWS)
def test_engine_encodes_and_decodes_bit_exactly_as_the_twin(law: str) -> None:
    rust, twin = _engine_kernel(law), G711Kernel(law)
    x = _edge_floats()
    block = x.reshape(1, -1)
    assert np.array_equal(rust.encode(block, 8000), twin.encode(block, 8000))
    codes, _ = REFERENCES[law]()  # the standard's codes of every int16, built independently
    assert np.array_equal(rust.encode(block[:, :65536], 8000)[0], codes)
    every = np.arange(256, dtype=np.uint8).reshape(4, 64)  # four channels of codes
    got, want = rust.decode(every), twin.decode(every)
    assert got.dtype == np.float32 and got.shape == (4, 64)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # -0.0 would differ
    # strided input (a channel of an interleaved buffer) is read as its values
    pairs = np.stack([x[:4096], x[4096:8192]]).T.copy()  # (samples, 2)
    strided = pairs.T
    assert not strided.flags.c_contiguous
    assert np.array_equal(rust.encode(strided, 8000), twin.encode(strided, 8000))
    assert rust.law == twin.law == law and rust.stage == twin.stage == "g711"
    assert rust.flush() == twin.flush() == []


_finite = st.floats(-1.5, 1.5, width=32, allow_subnormal=True)


@needs_engine
@settings(max_examples=60, deadline=None)
@given(
    x=st.integers(1, 4).flatmap(
        lambda c: st.lists(st.lists(_finite, min_size=40, max_size=40), min_size=c, max_size=c)
    ),
    law=st.sampled_from(LAWS),
    cuts=st.lists(st.integers(1, 39), max_size=4, unique=True),
)
def test_engine_and_twin_agree_and_any_split_gives_the_same_codes(
    x: list[list[float]], law: str, cuts: list[int]
) -> None:
    block = np.array(x, np.float32)
    rust, twin = _engine_kernel(law), G711Kernel(law)
    whole = twin.encode(block, 8000)
    assert np.array_equal(rust.encode(block, 8000), whole)
    for kernel in (rust, twin):  # stateless: blocks of any split give the whole's codes
        pieces = np.split(block, sorted(cuts), axis=1)
        joined = np.concatenate([kernel.encode(np.ascontiguousarray(p), 8000) for p in pieces], 1)
        assert np.array_equal(joined, whole)
        back = np.concatenate(
            [kernel.decode(np.ascontiguousarray(p)) for p in np.split(whole, sorted(cuts), 1)], 1
        )
        assert np.array_equal(back, twin.decode(whole))


def _outcome(call: Any) -> tuple[str, str]:
    try:
        call()
    except StreamError as exc:
        return type(exc).__name__, str(exc)
    except Exception as exc:  # a foreign error is the bug: show it
        return f"foreign {type(exc).__name__}", str(exc)
    return "ok", ""


BAD_CODES: list[Any] = [
    np.zeros((1, 4), np.int16),
    np.zeros(4, np.uint8),
    np.zeros((1, 2, 2), np.uint8),
    np.zeros((0, 4), np.uint8),
    np.zeros((2, 0), np.uint8),
    np.zeros((65, 1), np.uint8),
    np.zeros((1, 4), np.int8),
    [[1, 2, 3]],
    b"\x00\x01",
    None,
    np.uint8(3),
    np.zeros((3, 4), np.uint8)[:, ::2],  # strided: accepted
]


@needs_engine
@pytest.mark.parametrize("codes", BAD_CODES, ids=lambda c: f"{type(c).__name__}")
def test_decode_refuses_what_is_not_codes_alike(codes: Any) -> None:
    rust, twin = _engine_kernel("alaw", "k"), G711Kernel("alaw", stage="k")
    got, want = _outcome(lambda: rust.decode(codes)), _outcome(lambda: twin.decode(codes))
    assert not got[0].startswith("foreign") and got == want, (got, want)


@pytest.mark.parametrize("law", LAWS)
def test_g711_kernel_selects_as_the_stages_do(law: str, backend: str) -> None:
    kernel, chosen = g711_kernel(law, stage="line")
    assert chosen == backend and kernel.law == law and kernel.stage == "line"
    assert type(kernel).__module__ == (
        "stream._engine" if backend == "rust" else G711Kernel.__module__
    )
    with pytest.raises(ConfigError, match=r"^line: law must be one of"):
        g711_kernel("pcmu", stage="line")


def test_asking_for_the_engine_without_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream import engine

    monkeypatch.setattr(engine, "_engine", None)
    with pytest.raises(BackendUnavailable, match="backend 'rust' was asked for"):
        g711_kernel(backend="rust")
    assert g711_kernel()[1] == "python"


def _twilio(event: str, **fields: Any) -> WSMessage:
    return WSMessage(WSMsgType.TEXT, json.dumps({"event": event, **fields}), None)


@pytest.mark.parametrize("law", LAWS)
def test_a_call_decodes_messages_with_the_selected_kernel(law: str, backend: str) -> None:
    """A provider's line decodes each media message with the engine's kernel (or the twin),
    bit-exactly as the tables say, in the law the start message names."""
    line = ProviderLine(None, TwilioSerializer())  # type: ignore[arg-type]  # no socket read here
    assert line.codec_backend == backend and line.law == "mulaw"
    encoding = {"mulaw": "audio/x-mulaw", "alaw": "audio/x-alaw"}[law]
    start = {"streamSid": "MZ1", "mediaFormat": {"encoding": encoding}}
    line.read(_twilio("start", streamSid="MZ1", start=start))
    assert line.law == law and line.codec_backend == backend
    codes = np.arange(256, dtype=np.uint8).tobytes()
    payload = base64.b64encode(codes).decode()
    (audio,) = line.read(_twilio("media", media={"payload": payload, "timestamp": "20"}))
    assert isinstance(audio, Audio) and audio.timestamp_ms == 20
    want = decode_float(np.frombuffer(codes, np.uint8), law)
    assert audio.samples.shape == (256,) and np.array_equal(audio.samples, want)


def _damaged(**fields: Any) -> G711Frame:
    """A good frame with ``fields`` assigned after construction (frames are mutable)."""
    frame = G711Frame(np.full((1, 160), 0xFF, np.uint8), "mulaw", 8000, 0)
    for key, value in fields.items():
        setattr(frame, key, value)
    return frame


DAMAGED_FRAMES: dict[str, dict[str, Any]] = {
    "int16 codes": {"codes": np.zeros((1, 160), np.int16)},
    "1-D codes": {"codes": np.zeros(160, np.uint8)},
    "empty codes": {"codes": np.zeros((1, 0), np.uint8)},
    "list codes": {"codes": [[1, 2]]},
    "float rate": {"sample_rate": 8000.0},
    "zero rate": {"sample_rate": 0},
    "float pts": {"pts": 1.5},
    "bad time base": {"time_base": 0.5},
}


@pytest.mark.parametrize("kind", list(DAMAGED_FRAMES))
async def test_decode_refuses_a_damaged_frame_naming_itself(kind: str, backend: str) -> None:
    from stream.errors import NodeError

    frames = [G711Frame(np.full((1, 160), 0x7F, np.uint8), "mulaw", 8000, 0)]
    frames.append(_damaged(**DAMAGED_FRAMES[kind]))
    node = G711Decode(name="dec")
    with pytest.raises(NodeError) as info:
        await Pipeline([node]).run(frames)
    assert node.backend == backend
    cause = info.value.__cause__
    assert isinstance(cause, FormatError) and cause.stage == "dec", repr(cause)
    assert str(cause).startswith("dec: ")
