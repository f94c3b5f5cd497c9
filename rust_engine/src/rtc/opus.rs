//! Opus at 48 kHz through libopus (the `opus` crate), set up as aiortc's codec is, with the
//! settled-silence shortcuts of `stream.transport.opus_silence` on both ends: once `SETTLED`
//! silent blocks in a row had the same packet, that packet stands for every further silent
//! block (the encoder is not run for zero blocks, the decoder not for that packet).

use opus::{Application, Bitrate, Channels};

use crate::dsp::{EngineError, Result};

pub const SAMPLE_RATE: u32 = 48_000;
/// Silent blocks in a row with one packet before the codec is skipped.
pub const SETTLED: u32 = 3;
/// Samples per channel in the longest Opus packet (120 ms).
const MAX_FRAME: usize = 5760;
/// The longest packet the encoder writes (libopus' recommended bound).
const MAX_PACKET: usize = 4000;

/// A port of `opus_silence.SettledSilence`: which packet a stream settled on for silence.
#[derive(Debug, Default)]
pub struct SettledSilence {
    pub packet: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
    run: u32,
}

impl SettledSilence {
    /// The packet of a silent block, or None for a block that was not silent.
    pub fn observe(&mut self, data: Option<&[u8]>) {
        if data.is_none() || data != self.last.as_deref() {
            self.packet = None;
            self.last = data.map(<[u8]>::to_vec);
            self.run = u32::from(data.is_some());
        } else {
            self.run += 1;
        }
        if self.run >= SETTLED {
            self.packet = self.last.clone();
        }
    }
}

fn channels(n: usize) -> Channels {
    if n == 1 {
        Channels::Mono
    } else {
        Channels::Stereo
    }
}

fn opus_error(what: &str, e: opus::Error) -> EngineError {
    EngineError::engine(format!("Opus {what} failed: {e}"))
}

/// The encoder, as `tracks.OpusPacketizer` sets PyAV's libopus up: VoIP, 96 kb/s stereo or
/// 64 kb/s mono, libopus' default complexity.
pub struct Encoder {
    encoder: opus::Encoder,
    pub channels: usize,
    silence: SettledSilence,
    /// Blocks the encoder ran on.
    pub encoded: u64,
    /// Zero blocks sent as the settled silence packet.
    pub reused: u64,
}

impl Encoder {
    pub fn new(channel_count: usize) -> Result<Self> {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, channels(channel_count), Application::Voip)
                .map_err(|e| opus_error("encoder setup", e))?;
        let bits = if channel_count == 2 { 96_000 } else { 64_000 };
        encoder
            .set_bitrate(Bitrate::Bits(bits))
            .map_err(|e| opus_error("encoder setup", e))?;
        Ok(Self {
            encoder,
            channels: channel_count,
            silence: SettledSilence::default(),
            encoded: 0,
            reused: 0,
        })
    }

    /// One packet of interleaved samples (a whole Opus frame), appended to `out`.
    pub fn encode(&mut self, interleaved: &[i16], out: &mut Vec<u8>) -> Result<()> {
        let silent = interleaved.iter().all(|&s| s == 0);
        if silent {
            if let Some(packet) = &self.silence.packet {
                self.reused += 1;
                out.extend_from_slice(packet);
                return Ok(());
            }
        }
        let start = out.len();
        out.resize(start + MAX_PACKET, 0);
        let n = self
            .encoder
            .encode(interleaved, &mut out[start..])
            .map_err(|e| opus_error("encode", e));
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        out.truncate(start + n);
        self.encoded += 1;
        self.silence.observe(silent.then_some(&out[start..]));
        Ok(())
    }
}

/// The decoder (48 kHz, `channels` out), decoding to 16 bits as aiortc's does, with the
/// settled-silence shortcut of `_aiortc.InlineAudioDecoder`.
pub struct Decoder {
    decoder: opus::Decoder,
    pub channels: usize,
    buffer: Vec<i16>,
    silence: SettledSilence,
    /// Samples per channel of the packet the stream settled on.
    zeros: usize,
    /// Packets libopus decoded.
    pub decoded: u64,
    /// Packets of settled silence returned as zeros without libopus.
    pub skipped: u64,
}

impl Decoder {
    pub fn new(channel_count: usize) -> Result<Self> {
        let decoder = opus::Decoder::new(SAMPLE_RATE, channels(channel_count))
            .map_err(|e| opus_error("decoder setup", e))?;
        Ok(Self {
            decoder,
            channels: channel_count,
            buffer: vec![0; MAX_FRAME * channel_count],
            silence: SettledSilence::default(),
            zeros: 0,
            decoded: 0,
            skipped: 0,
        })
    }

    /// Planar float32 `(channels, n)` from interleaved 16-bit samples.
    fn planar(&self, n: usize) -> Vec<f32> {
        let c = self.channels;
        let mut out = vec![0.0f32; c * n];
        for (i, frame) in self.buffer[..n * c].chunks_exact(c).enumerate() {
            for (ch, &s) in frame.iter().enumerate() {
                out[ch * n + i] = f32::from(s) / 32768.0;
            }
        }
        out
    }

    /// Decodes one packet: `(samples per channel, planar data)`. A packet libopus refuses is an
    /// error and leaves the silence run as it was (as the Python decoder does).
    pub fn decode(&mut self, packet: &[u8]) -> Result<(usize, Vec<f32>)> {
        if self.silence.packet.as_deref() == Some(packet) {
            self.skipped += 1;
            return Ok((self.zeros, vec![0.0; self.channels * self.zeros]));
        }
        if packet.is_empty() {
            return Err(EngineError::format("empty Opus packet"));
        }
        let n = self
            .decoder
            .decode(packet, &mut self.buffer, false)
            .map_err(|e| opus_error("decode", e))?;
        self.decoded += 1;
        let zeros = self.buffer[..n * self.channels].iter().all(|&s| s == 0);
        if zeros {
            self.zeros = n;
        }
        self.silence.observe(zeros.then_some(packet));
        Ok((n, self.planar(n)))
    }

    /// `n` samples per channel of packet-loss concealment. The decoder's state moves on, so
    /// the silence run starts again.
    pub fn conceal(&mut self, n: usize) -> Result<Vec<f32>> {
        let n = n.min(MAX_FRAME);
        let got = self
            .decoder
            .decode(&[], &mut self.buffer[..n * self.channels], false)
            .map_err(|e| opus_error("concealment", e))?;
        self.silence.observe(None);
        let mut out = self.planar(got);
        out.resize(self.channels * n, 0.0); // libopus conceals what was asked; never less
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_silence_follows_the_python_twin() {
        let mut s = SettledSilence::default();
        for _ in 0..2 {
            s.observe(Some(b"z"));
        }
        assert_eq!(s.packet, None);
        s.observe(Some(b"z"));
        assert_eq!(s.packet.as_deref(), Some(&b"z"[..]));
        s.observe(Some(b"y"));
        assert_eq!(s.packet, None);
        s.observe(None);
        s.observe(Some(b"y"));
        s.observe(Some(b"y"));
        assert_eq!(s.packet, None);
    }

    #[test]
    fn zeros_settle_both_ends() {
        let mut enc = Encoder::new(2).unwrap();
        let mut dec = Decoder::new(2).unwrap();
        let zeros = vec![0i16; 1920];
        let mut packets = Vec::new();
        for _ in 0..20 {
            let mut p = Vec::new();
            enc.encode(&zeros, &mut p).unwrap();
            let (n, samples) = dec.decode(&p).unwrap();
            assert_eq!((n, samples.len()), (960, 1920));
            packets.push(p);
        }
        assert!(enc.reused > 0 && enc.encoded + enc.reused == 20);
        assert!(dec.skipped > 0 && dec.decoded + dec.skipped == 20);
        assert!(packets[10..].iter().all(|p| p == &packets[19]));
        // a non-silent block ends the run on both ends
        let tone: Vec<i16> = (0..1920)
            .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
            .collect();
        let mut p = Vec::new();
        enc.encode(&tone, &mut p).unwrap();
        let before = dec.decoded;
        dec.decode(&p).unwrap();
        dec.decode(&packets[19]).unwrap();
        assert_eq!(dec.decoded, before + 2);
        assert!(dec.decode(b"").is_err());
    }
}
