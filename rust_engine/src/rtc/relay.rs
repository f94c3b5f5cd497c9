//! A whole audio round trip in one call: one SRTP datagram in, its released frames through a
//! processing chain, the chain's output cut into 20 ms blocks, encoded and protected, the
//! datagrams out. The pieces are pure functions and small structs ([`to_int16`], [`Cutter`],
//! [`Meter`]); [`Relay::relay`] takes the chain as a closure, so the leg is tested without one.

use std::time::Instant;

use super::leg::{RxLeg, Stats, TxLeg};
use crate::dsp::{Block, BlockRef, EngineError, Result};

/// Samples per block sent (20 ms at 48 kHz), as `tracks._Chunker` cuts them.
pub const BLOCK: usize = 960;
/// The only rate the relay's chain may emit.
pub const RATE: u32 = 48_000;

/// Float32 planar `block` appended to `out` as int16 interleaved, as
/// `audio_adapter.from_fltp` converts: `clip(rint(x * 32768), -32768, 32767)` (ties to even).
pub fn to_int16(block: BlockRef<'_>, out: &mut Vec<i16>) {
    let (channels, frames) = (block.channels, block.frames);
    let start = out.len();
    out.resize(start + channels * frames, 0);
    let dest = &mut out[start..];
    for c in 0..channels {
        for (i, &x) in block.channel(c).iter().enumerate() {
            let scaled = (x * 32768.0).round_ties_even().clamp(-32768.0, 32767.0);
            dest[i * channels + c] = scaled as i16;
        }
    }
}

/// Interleaved int16 `samples` at `from` channels as `to` channels (1 or 2): mono duplicated,
/// stereo averaged (ties to even), as ChannelMix mixes.
fn remix(samples: &[i16], from: usize, to: usize) -> Vec<i16> {
    match (from, to) {
        (1, 2) => samples.iter().flat_map(|&s| [s, s]).collect(),
        (2, 1) => samples
            .chunks_exact(2)
            .map(|p| ((f32::from(p[0]) + f32::from(p[1])) * 0.5).round_ties_even() as i16)
            .collect(),
        _ => samples.to_vec(),
    }
}

/// Cuts int16 interleaved audio into [`BLOCK`]-sample blocks, as `tracks._Chunker` does: the
/// stream's first piece is padded at the front with zeros to a multiple of [`BLOCK`] (so a
/// resampler's delay does not hold back every later block), the remainder waits for the next.
/// A piece at another channel count remixes the remainder to it (it is less than a block).
#[derive(Debug, Default)]
pub struct Cutter {
    channels: usize,
    buf: Vec<i16>,
    started: bool,
}

impl Cutter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one piece of the stream (`channels` 1 or 2; checked by the caller).
    pub fn push(&mut self, samples: &[i16], channels: usize) {
        let frames = samples.len() / channels;
        if frames == 0 {
            return;
        }
        if !self.started {
            self.started = true;
            let pad = (BLOCK - frames % BLOCK) % BLOCK;
            self.append(&vec![0; pad * channels], channels);
        }
        self.append(samples, channels);
    }

    fn append(&mut self, samples: &[i16], channels: usize) {
        if channels != self.channels {
            if !self.buf.is_empty() {
                self.buf = remix(&self.buf, self.channels, channels);
            }
            self.channels = channels;
        }
        self.buf.extend_from_slice(samples);
    }

    /// The channel count of the held samples (0 before any).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The whole blocks held, in order (interleaved); [`Cutter::consume`] drops them.
    pub fn blocks(&self) -> std::slice::ChunksExact<'_, i16> {
        self.buf.chunks_exact(BLOCK * self.channels.max(1))
    }

    /// Drops the whole blocks held, keeping the remainder.
    pub fn consume(&mut self) {
        let whole = self.buf.len() - self.blocks().remainder().len();
        self.buf.drain(..whole);
    }

    /// Samples per channel held (less than a block after [`Cutter::consume`]).
    pub fn held(&self) -> usize {
        self.buf.len() / self.channels.max(1)
    }
}

/// Peak, sum of squares and count of samples (every channel), in float full scale, as
/// `session._Meter.add` accumulates them; read and reset by [`Meter::take`].
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Meter {
    pub peak: f64,
    pub sum_sq: f64,
    pub count: u64,
}

impl Meter {
    pub fn add_f32(&mut self, samples: &[f32]) {
        for &x in samples {
            let x = f64::from(x);
            self.peak = self.peak.max(x.abs());
            self.sum_sq += x * x;
        }
        self.count += samples.len() as u64;
    }

    /// int16 samples as `x / 32768`.
    pub fn add_i16(&mut self, samples: &[i16]) {
        for &s in samples {
            let x = f64::from(s) / 32768.0;
            self.peak = self.peak.max(x.abs());
            self.sum_sq += x * x;
        }
        self.count += samples.len() as u64;
    }

    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

/// The relay's state: the cutter, the level meters and its counters.
#[derive(Debug, Default)]
pub struct Relay {
    pub cutter: Cutter,
    input: Meter,
    output: Meter,
    /// The chain's output of one call as int16 interleaved (kept to reuse its allocation).
    scratch: Vec<i16>,
    frames: u64,
    ns: u64,
    gaps: u64,
}

impl Relay {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(input, output)` levels since the last call, then reset.
    pub fn levels(&mut self) -> (Meter, Meter) {
        (self.input.take(), self.output.take())
    }

    /// What [`RxLeg::receive`] does with `datagram`, then each released frame through `chain`
    /// (which must emit 48 kHz blocks of 1 or 2 channels), the output cut into 20 ms blocks and
    /// sent as [`TxLeg::send`] sends; returns the datagrams to send. A frame that starts after
    /// the previous one ended (a gap not concealed) moves the send timestamp on by the gap.
    /// A chain error is returned after the output of the frames before it was kept for the next
    /// call (nothing is sent by a call that fails, so no sequence number is lost).
    pub fn relay(
        &mut self,
        rx: &mut RxLeg,
        tx: &mut TxLeg,
        datagram: &[u8],
        arrival: Instant,
        mut chain: impl FnMut(BlockRef<'_>) -> Result<Vec<Block>>,
    ) -> Result<Vec<Vec<u8>>> {
        let mut end = rx.released_end();
        let frames = rx.receive(datagram, arrival);
        for frame in &frames {
            if let Some(gap) = end.map(|e| frame.timestamp - e).filter(|&g| g > 0) {
                tx.skip(gap as u32); // a gap beyond 2^32 samples (a day) wraps as RTP does
                self.gaps += 1;
            }
            end = Some(frame.timestamp + frame.samples as i64);
            self.input.add_f32(&frame.data);
            let block = BlockRef::new(frame.channels, frame.samples, &frame.data);
            let started = Instant::now();
            let out = chain(block);
            self.ns += started.elapsed().as_nanos() as u64;
            for b in out? {
                check_channels(b.channels, "the chain must emit")?;
                self.scratch.clear();
                to_int16(b.as_ref(), &mut self.scratch);
                self.output.add_i16(&self.scratch);
                self.cutter.push(&self.scratch, b.channels);
            }
            self.frames += 1;
        }
        let channels = self.cutter.channels();
        let mut datagrams = Vec::new();
        let mut result = Ok(());
        for block in self.cutter.blocks() {
            match tx.send(block, channels) {
                Ok(d) => datagrams.push(d),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.cutter.consume();
        result.map(|()| datagrams)
    }

    pub fn stats(&self) -> Stats {
        vec![
            ("relay_frames", self.frames),
            ("relay_ns", self.ns),
            ("relay_gaps", self.gaps),
        ]
    }
}

fn check_channels(channels: usize, what: &str) -> Result<()> {
    if (1..=2).contains(&channels) {
        Ok(())
    } else {
        Err(EngineError::format(format!(
            "{what} 1 or 2 channels (RTP audio), got {channels}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int16_conversion_rounds_half_to_even_clips_and_interleaves() {
        let data = [
            0.5 / 32768.0,
            1.5 / 32768.0,
            -2.5 / 32768.0,
            1.0,
            -1.5,
            0.25,
        ];
        let mut out = vec![7];
        to_int16(BlockRef::new(2, 3, &data), &mut out);
        // channel 0: 0.5->0, 1.5->2, -2.5->-2; channel 1: 1.0->32767, -1.5->-32768, 0.25->8192
        assert_eq!(out, [7, 0, 32767, 2, -32768, -2, 8192]);
    }

    #[test]
    fn the_cutter_pads_the_first_piece_only_and_keeps_the_remainder() {
        let mut c = Cutter::new();
        let piece: Vec<i16> = (1..=700).collect();
        c.push(&piece, 1);
        let blocks: Vec<&[i16]> = c.blocks().collect();
        assert_eq!(blocks.len(), 1);
        assert!(blocks[0][..260].iter().all(|&s| s == 0));
        assert_eq!(&blocks[0][260..], &piece[..]);
        c.consume();
        assert_eq!(c.held(), 0);
        c.push(&piece, 1); // no pad after the first
        assert_eq!((c.blocks().count(), c.held()), (0, 700));
        c.push(&piece, 1);
        assert_eq!(c.blocks().count(), 1);
        assert_eq!(c.blocks().next().unwrap()[..700], piece[..]);
        c.consume();
        assert_eq!(c.held(), 440);
        // another channel count: the remainder is remixed, nothing is lost
        c.push(&[5; 2 * 520], 2);
        let block = c.blocks().next().unwrap();
        assert_eq!(block.len(), 1920);
        assert_eq!((block[0], block[1]), (261, 261));
        assert_eq!((block[1918], block[1919]), (5, 5));
    }

    #[test]
    fn remixing_averages_and_duplicates() {
        assert_eq!(remix(&[1, 2, -3, -4, 3, 4], 2, 1), [2, -4, 4]);
        assert_eq!(remix(&[1, -2], 1, 2), [1, 1, -2, -2]);
    }

    #[test]
    fn the_meter_sums_every_sample_and_resets() {
        let mut m = Meter::default();
        m.add_f32(&[0.5, -0.75]);
        m.add_i16(&[-16384, i16::MIN]);
        assert_eq!(m.peak, 1.0);
        assert_eq!(m.sum_sq, 0.25 + 0.5625 + 0.25 + 1.0);
        assert_eq!(m.count, 4);
        assert_eq!(m.take().count, 4);
        assert_eq!(m, Meter::default());
    }
}
