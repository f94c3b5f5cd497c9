"""G711Kernel, the Python twin of the G.711 codec (mu-law and A-law), and its SETTINGS.

Core, not beside its stages in ``media_nodes.audio``: the telephony transport encodes and decodes
with it, and transports import the core only (docs/architecture.md).

The codec maps 16-bit linear PCM to 8-bit codes and back by ITU-T G.711's segment tables, as
lookup tables (65536 entries to encode, 256 to decode) built once at import:

- **mu-law** works on 14-bit magnitudes (the 16-bit value shifted right by 2), eight segments
  of sixteen steps of 2, 4, ... 256 with the biased segment ends of the standard (0, 31, 95,
  223, 479, 991, 2015, 4063, 8159); codes are sent inverted (``0xFF`` is +0, ``0x7F`` -0).
- **A-law** works on 12-bit magnitudes (shifted right by 3), steps of 2, 2, 4, ... 128 with
  segment ends 32, 64, ... 4096; the even bits of the code are inverted (XOR ``0x55``) and the
  sign bit is 1 for positive values.

A negative 16-bit value ``x`` has the magnitude of ``~x`` (= ``-x - 1``), as ITU-T G.191's
reference code takes it, so the quantizer is symmetric about -1/2 LSB. Decoding gives each
interval's reconstruction value (its midpoint, G.711 Tables 1a/2a), with the sign.

Float audio is first made int16 as FormatConvert does (``clip(rint(x * 32768))``) and decoded
back to float as ``x / 32768``. The engine's ``G711Kernel`` (``rust_engine/src/dsp/g711.rs``)
does the same arithmetic, bit for bit; ``g711_kernel()`` picks one of the two as every stage
picks its kernel (``stream.engine``), for code outside a pipeline such as the telephony
transport.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..engine import select_kernel
from ..errors import FormatError
from ..frames import MAX_CHANNELS
from ..kernel import Block, KernelChecks
from ..stage_settings import Setting, Settings, one_of

#: The two companding laws.
LAWS = ("mulaw", "alaw")
SETTINGS = Settings(
    "G711",
    Setting("law", "str", "mulaw", one_of("law", LAWS), doc="mulaw (PCMU) or alaw (PCMA)"),
)
#: The code of digital silence (+0) in each law: what an idle line carries.
SILENCE = {"mulaw": 0xFF, "alaw": 0xD5}

Codes = npt.NDArray[np.uint8]


def _mulaw_tables() -> tuple[Codes, npt.NDArray[np.int16]]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    negative = x < 0
    magnitude = np.where(negative, ~x, x) >> 2  # 14-bit magnitude, 0..8191
    biased = np.minimum(magnitude, 8158) + 33  # the segment ends become powers of two
    segment = np.clip(np.floor(np.log2(biased)).astype(np.int32) - 5, 0, 7)
    step = (biased >> (segment + 1)) & 0xF
    code = (segment << 4) | step
    code = np.where(negative, code ^ 0x7F, code ^ 0xFF).astype(np.uint8)
    encode = np.empty(65536, np.uint8)
    encode[x.astype(np.uint16)] = code  # indexed by the int16 value's bits
    c = np.arange(256, dtype=np.int32) ^ 0xFF
    seg, q = (c >> 4) & 7, c & 0xF
    value = ((((q << 1) + 33) << seg) - 33) << 2  # the interval's midpoint, 16-bit scale
    decode = np.where(c & 0x80, -value, value).astype(np.int16)
    return encode, decode


def _alaw_tables() -> tuple[Codes, npt.NDArray[np.int16]]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    negative = x < 0
    magnitude = np.where(negative, ~x, x) >> 3  # 12-bit magnitude, 0..4095
    segment = np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4, 0, 7)
    step = np.where(segment == 0, magnitude >> 1, magnitude >> segment) & 0xF
    code = (segment << 4) | step
    code = np.where(negative, code, code | 0x80) ^ 0x55
    encode = np.empty(65536, np.uint8)
    encode[x.astype(np.uint16)] = code.astype(np.uint8)
    c = np.arange(256, dtype=np.int32) ^ 0x55
    seg, q = (c >> 4) & 7, c & 0xF
    value = np.where(seg == 0, (q << 1) + 1, ((q << 1) + 33) << np.maximum(seg - 1, 0)) << 3
    decode = np.where(c & 0x80, value, -value).astype(np.int16)
    return encode, decode


_TABLES = {"mulaw": _mulaw_tables(), "alaw": _alaw_tables()}
_TO_FLOAT = {
    law: (dec.astype(np.float32) / np.float32(32768.0)) for law, (_, dec) in _TABLES.items()
}


def encode_table(law: str) -> Codes:
    """The 65536-entry table: ``table[x.view(uint16)]`` is the code of int16 ``x`` (read-only)."""
    table = _TABLES[law][0].view()
    table.flags.writeable = False
    return table


def decode_table(law: str) -> npt.NDArray[np.int16]:
    """The 256-entry table: ``table[code]`` is its int16 value (read-only)."""
    table = _TABLES[law][1].view()
    table.flags.writeable = False
    return table


def encode_int16(samples: npt.NDArray[np.int16], law: str = "mulaw") -> Codes:
    """G.711 codes of int16 ``samples`` (any shape)."""
    return _TABLES[law][0][np.ascontiguousarray(samples, np.int16).view(np.uint16)]


def decode_int16(codes: Codes, law: str = "mulaw") -> npt.NDArray[np.int16]:
    """int16 samples of G.711 ``codes`` (any shape)."""
    return _TABLES[law][1][codes]


#: The largest float that is not past int16's full scale (exact in float32).
_TOP = np.float32(32767.0 / 32768.0)


def _to_int16(block: Block) -> npt.NDArray[np.int16]:
    # clip(rint(x * 32768)) with the clip first, where it gives the same values (the scale is a
    # power of two, so exact) and a value near float32's maximum cannot overflow the multiply.
    scaled = np.clip(block, np.float32(-1.0), _TOP)
    np.multiply(scaled, np.float32(32768.0), out=scaled)
    np.rint(scaled, out=scaled)
    out: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return out


def encode_float(samples: Block, law: str = "mulaw") -> Codes:
    """G.711 codes of float32 samples (any shape; finite values assumed: the kernel checks)."""
    return _TABLES[law][0][_to_int16(samples).view(np.uint16)]


def decode_float(codes: Codes, law: str = "mulaw") -> Block:
    """float32 samples (``int16 / 32768``) of G.711 ``codes`` (any shape)."""
    out: Block = _TO_FLOAT[law][codes]
    return out


class G711Kernel(KernelChecks):
    """Python twin of the engine's ``G711Kernel``: G.711 ``law`` encode and decode.

    ``encode(samples, sample_rate)``: a float32 ``(channels, samples)`` block (checks 1 to 4 of
    docs/kernels.md) -> uint8 codes of the same shape. ``decode(codes)``: a 2-D uint8 array ->
    float32 ``(channels, samples)``. Stateless: ``reset()`` and ``flush()`` do nothing.
    """

    def __init__(self, law: str = "mulaw", *, stage: str = "g711") -> None:
        super().__init__(stage=stage)
        self.law: str = SETTINGS.validate(stage, {"law": law}, kernel=True)["law"]
        self._encode, _ = _TABLES[self.law]
        self._decode = _TO_FLOAT[self.law]

    def encode(self, samples: Any, sample_rate: Any) -> Codes:
        block = self.check(samples, sample_rate)
        self.rate(sample_rate)
        return self._encode[_to_int16(block).view(np.uint16)]

    def decode(self, codes: Any) -> Block:
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2:
            dtype = getattr(codes, "dtype", type(codes).__name__)
            raise self.error(
                FormatError,
                "expected a uint8 array of shape (channels, samples), "
                f"got {dtype} with {getattr(codes, 'ndim', 0)} dimension(s)",
            )
        c, n = codes.shape
        if c == 0 or n == 0:
            raise self.error(FormatError, f"empty frame ({c} channels, {n} samples)")
        if c > MAX_CHANNELS:
            raise self.error(FormatError, f"too many channels ({c}; at most {MAX_CHANNELS})")
        out: Block = self._decode[codes]
        return out

    def flush(self) -> list[Block]:
        return []


class G711Codec(Protocol):
    """What both ``G711Kernel``s offer (the engine's and the twin)."""

    @property
    def law(self) -> str: ...

    @property
    def stage(self) -> str: ...

    def encode(self, samples: Any, sample_rate: Any) -> Codes: ...

    def decode(self, codes: Any) -> Block: ...


def g711_kernel(
    law: str = "mulaw", *, stage: str = "g711", backend: str | None = None
) -> tuple[G711Codec, str]:
    """A ``G711Kernel`` in ``law`` and the backend it runs on: the engine's when it is built
    (unless ``backend`` or ``REMOTEMEDIA_RUNTIME`` says ``python``), else the twin. Raises
    ConfigError for an unknown law, BackendUnavailable when ``rust`` was asked for and is not
    there."""
    kernel, chosen, _ = select_kernel(stage, backend, "G711Kernel", G711Kernel, {"law": law})
    codec: G711Codec = kernel
    return codec, chosen


__all__ = [
    "LAWS",
    "SETTINGS",
    "SILENCE",
    "G711Codec",
    "G711Kernel",
    "decode_float",
    "decode_int16",
    "decode_table",
    "encode_float",
    "encode_int16",
    "encode_table",
    "g711_kernel",
]
