//! ITU-T G.711 mu-law and A-law (`G711Kernel`): float32 samples to 8-bit codes and back.
//!
//! The same arithmetic as the Python twin (`stream/kernels/g711.py`, which says why each step
//! is what the standard's segment tables are): a float sample is first made int16 as
//! FormatConvert does (`clip(rint(x * 32768))`), a negative int16 `x` has the magnitude of
//! `!x` (= `-x - 1`, as ITU-T G.191 takes it), and a code decodes to its interval's midpoint,
//! shown as float `value / 32768`. Stateless: nothing to reset.

use super::format::{f32_to_s16, s16_to_f32};
use super::{check_dims, BlockRef, EngineError, Result};

/// A companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// mu-law (PCMU): 14-bit magnitudes, codes sent inverted.
    Mulaw,
    /// A-law (PCMA): 12-bit magnitudes, even bits inverted.
    Alaw,
}

impl Law {
    /// The names, as Python prints the list of them.
    pub const NAMES: &'static str = "['mulaw', 'alaw']";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mulaw" => Some(Self::Mulaw),
            "alaw" => Some(Self::Alaw),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mulaw => "mulaw",
            Self::Alaw => "alaw",
        }
    }

    /// The code of the 16-bit linear sample `x`.
    pub fn encode(self, x: i16) -> u8 {
        match self {
            Self::Mulaw => mulaw_encode(x),
            Self::Alaw => alaw_encode(x),
        }
    }

    /// The 16-bit linear value of `code`.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Self::Mulaw => mulaw_decode(code),
            Self::Alaw => alaw_decode(code),
        }
    }
}

/// `floor(log2(v))` for `v >= 1`.
fn log2(v: u32) -> u32 {
    31 - v.leading_zeros()
}

fn mulaw_encode(x: i16) -> u8 {
    let negative = x < 0;
    let magnitude = (if negative { !x } else { x }) as u32 >> 2; // 0..8191
    let biased = magnitude.min(8158) + 33; // 33..8191: the segment ends become powers of two
    let segment = log2(biased).saturating_sub(5).min(7);
    let step = (biased >> (segment + 1)) & 0xF;
    let code = ((segment << 4) | step) as u8;
    if negative {
        code ^ 0x7F
    } else {
        code ^ 0xFF
    }
}

fn mulaw_decode(code: u8) -> i16 {
    let c = i32::from(code ^ 0xFF);
    let (segment, step) = ((c >> 4) & 7, c & 0xF);
    let value = ((((step << 1) + 33) << segment) - 33) << 2; // at most 32124
    (if c & 0x80 != 0 { -value } else { value }) as i16
}

fn alaw_encode(x: i16) -> u8 {
    let negative = x < 0;
    let magnitude = (if negative { !x } else { x }) as u32 >> 3; // 0..4095
    let segment = log2(magnitude.max(1)).saturating_sub(4).min(7);
    let step = if segment == 0 {
        magnitude >> 1
    } else {
        magnitude >> segment
    } & 0xF;
    let code = ((segment << 4) | step) as u8;
    (if negative { code } else { code | 0x80 }) ^ 0x55
}

fn alaw_decode(code: u8) -> i16 {
    let c = i32::from(code ^ 0x55);
    let (segment, step) = ((c >> 4) & 7, c & 0xF);
    let value = if segment == 0 {
        (step << 1) + 1
    } else {
        ((step << 1) + 33) << (segment - 1)
    } << 3; // at most 32256
    (if c & 0x80 != 0 { value } else { -value }) as i16
}

/// G.711 encode and decode in one law.
#[derive(Debug, Clone)]
pub struct G711 {
    law: Law,
}

impl G711 {
    pub fn new(law: &str) -> Result<Self> {
        Law::parse(law).map(|law| Self { law }).ok_or_else(|| {
            EngineError::config(format!("law must be one of {}, got '{law}'", Law::NAMES))
        })
    }

    pub fn law(&self) -> Law {
        self.law
    }

    /// The codes of a checked block (checks 1 to 4 done by the caller), in its layout.
    pub fn encode(&self, block: BlockRef<'_>) -> Vec<u8> {
        let law = self.law;
        block
            .data
            .iter()
            .map(|&x| law.encode(f32_to_s16(x)))
            .collect()
    }

    /// float32 samples of `codes` (`channels` x `frames`, row-major); check 2 on its shape.
    pub fn decode(&self, codes: &[u8], channels: usize, frames: usize) -> Result<Vec<f32>> {
        check_dims(channels, frames)?;
        let law = self.law;
        Ok(codes.iter().map(|&c| s16_to_f32(law.decode(c))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAWS: [Law; 2] = [Law::Mulaw, Law::Alaw];

    /// The standard's decision values, enumerated (not the bit arithmetic above): each law's
    /// 128 intervals of one sign, as (upper decision value, reconstruction value) on its
    /// magnitude scale, with the shift to 16 bits.
    fn intervals(law: Law) -> (Vec<(i32, i32)>, u32) {
        let mut out = Vec::new();
        let (ends, steps, shift, mut lo): (&[i32], &[i32], u32, i32) = match law {
            Law::Mulaw => {
                out.push((1, 0));
                out.extend((0..15).map(|k| (3 + 2 * k, 2 + 2 * k)));
                (
                    &[95, 223, 479, 991, 2015, 4063, 8159],
                    &[4, 8, 16, 32, 64, 128, 256],
                    2,
                    31,
                )
            }
            Law::Alaw => (
                &[32, 64, 128, 256, 512, 1024, 2048, 4096],
                &[2, 2, 4, 8, 16, 32, 64, 128],
                3,
                0,
            ),
        };
        for (&end, &step) in ends.iter().zip(steps) {
            while lo < end {
                out.push((lo + step, lo + step / 2));
                lo += step;
            }
        }
        assert_eq!(out.len(), 128);
        (out, shift)
    }

    /// The character of interval `i` of a sign, as each law sends it.
    fn character(law: Law, i: usize, negative: bool) -> u8 {
        let i = i as u8;
        match (law, negative) {
            (Law::Mulaw, false) => 0xFF - i,
            (Law::Mulaw, true) => 0x7F - i,
            (Law::Alaw, false) => (0x80 | i) ^ 0x55,
            (Law::Alaw, true) => i ^ 0x55,
        }
    }

    #[test]
    fn every_int16_encodes_as_the_tables_say() {
        for law in LAWS {
            let (iv, shift) = intervals(law);
            for x in i16::MIN..=i16::MAX {
                let negative = x < 0;
                let magnitude = (if negative { -(x as i32) - 1 } else { x as i32 }) >> shift;
                let i = iv.iter().position(|&(hi, _)| magnitude < hi).unwrap_or(127);
                assert_eq!(law.encode(x), character(law, i, negative), "{law:?} {x}");
            }
        }
    }

    #[test]
    fn every_code_decodes_to_its_midpoint() {
        for law in LAWS {
            let (iv, shift) = intervals(law);
            for (i, &(_, value)) in iv.iter().enumerate() {
                let v = (value << shift) as i16;
                assert_eq!(law.decode(character(law, i, false)), v, "{law:?} {i}");
                assert_eq!(law.decode(character(law, i, true)), -v, "{law:?} -{i}");
            }
        }
    }

    #[test]
    fn known_characters_and_floats() {
        let enc = |law: Law, xs: &[i16]| xs.iter().map(|&x| law.encode(x)).collect::<Vec<_>>();
        assert_eq!(
            enc(Law::Mulaw, &[0, -1, 32767, -32768]),
            [0xFF, 0x7F, 0x80, 0x00]
        );
        assert_eq!(
            enc(Law::Alaw, &[0, -1, 32767, -32768]),
            [0xD5, 0x55, 0xAA, 0x2A]
        );
        let k = G711::new("mulaw").unwrap();
        let block = [1.0f32, -1.0, 0.0, -0.5 / 32768.0];
        let codes = k.encode(BlockRef::new(1, 4, &block));
        assert_eq!(codes, [0x80, 0x00, 0xFF, 0xFF]); // rint(-0.5) is -0: +0's code
        let back = k.decode(&codes, 1, 4).unwrap();
        assert_eq!(back, [32124.0 / 32768.0, -32124.0 / 32768.0, 0.0, 0.0]);
    }

    #[test]
    fn refuses_unknown_laws_and_empty_codes() {
        let e = G711::new("ulaw").unwrap_err();
        assert_eq!(
            e.message,
            "law must be one of ['mulaw', 'alaw'], got 'ulaw'"
        );
        let e = G711::new("alaw").unwrap().decode(&[], 1, 0).unwrap_err();
        assert_eq!(e.message, "empty frame (1 channels, 0 samples)");
    }
}
