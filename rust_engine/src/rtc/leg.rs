//! One session's audio RTP leg: SRTP datagrams in, decoded 48 kHz audio out (through the
//! adaptive jitter buffer, with Opus packet-loss concealment), and 20 ms blocks in, SRTP
//! datagrams out. The receive half and the send half share nothing, so a binding can lock them
//! apart.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

use super::jitter::JitterBuffer;
use super::opus::{Decoder, Encoder, SAMPLE_RATE};
use super::relay::{Meter, Relay};
use super::rtp;
use super::srtp::{self, Refused, Srtp};
use crate::dsp::{Block, BlockRef, EngineError, Result};

/// The leg's name in error messages.
pub const NAME: &str = "rtp";
/// The jitter buffer's size and patience, as `AdaptiveAudioJitterBuffer`'s defaults.
const JITTER_CAPACITY: u16 = 16;
const SHRINK_AFTER: u32 = 250;
/// Gaps up to this many packets are concealed with Opus PLC; longer ones are not.
const MAX_CONCEALED: u16 = 5;
/// Samples of one concealed packet (20 ms).
const CONCEALED_SAMPLES: usize = 960;
/// Opus frame sizes at 48 kHz (2.5 to 60 ms).
const FRAME_SIZES: [usize; 6] = [120, 240, 480, 960, 1920, 2880];

/// The leg's settings, as the caller gives them (ranges checked by [`RtpAudioLeg::new`]).
#[derive(Debug, Clone)]
pub struct LegSettings {
    /// The DTLS-SRTP profile name, e.g. "SRTP_AEAD_AES_128_GCM".
    pub profile: String,
    /// Master key then master salt, for what the peer sends and what we send.
    pub rx_key: Vec<u8>,
    pub tx_key: Vec<u8>,
    pub remote_ssrc: i64,
    pub local_ssrc: i64,
    pub payload_type: i64,
    pub decode_channels: i64,
    pub jitter_depth: i64,
    /// The MID header extension `(id, value)` to put on every packet sent.
    pub mid: Option<(i64, Vec<u8>)>,
}

/// One decoded (or concealed) frame: planar float32 `(channels, samples)`; `timestamp` in
/// samples from the first packet received.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub timestamp: i64,
    pub channels: usize,
    pub samples: usize,
    pub data: Vec<f32>,
}

/// `(name, value)` counters.
pub type Stats = Vec<(&'static str, u64)>;

fn u32_setting(name: &str, value: i64) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| EngineError::config(format!("{name} must be in 0..4294967295, got {value}")))
}

fn in_range(name: &str, value: i64, lo: i64, hi: i64) -> Result<i64> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(EngineError::config(format!(
            "{name} must be in {lo}..{hi}, got {value}"
        )))
    }
}

fn random_u64() -> u64 {
    // RandomState's keys come from the OS' randomness (once per thread, then stepped).
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5254_5021);
    h.finish()
}

/// What the jitter buffer holds for a packet.
struct Held {
    timestamp: i64,
    payload: Vec<u8>,
}

/// The receive half.
pub struct RxLeg {
    srtp: Srtp,
    remote_ssrc: u32,
    payload_type: u8,
    jitter: JitterBuffer<Held>,
    decoder: Decoder,
    /// `(raw, unwrapped)` of the newest timestamp seen: later ones unwrap against it.
    ts_ref: Option<(u32, i64)>,
    /// Where the last packet handed on ended (its timestamp plus its samples).
    last_end: Option<i64>,
    /// Where the last frame returned ended (a packet that failed to decode returns none).
    released_end: Option<i64>,
    /// RFC 3550 A.1: the sequence numbers seen.
    base_seq: u16,
    max_seq: u16,
    cycles: u64,
    /// RFC 3550 A.8: interarrival jitter in timestamp units.
    first_arrival: Option<Instant>,
    transit: Option<f64>,
    jitter_estimate: f64,
    // counters
    packets: u64,
    bytes: u64,
    malformed: u64,
    auth_failures: u64,
    replays: u64,
    other_ssrc: u64,
    other_payload: u64,
    valid: u64,
    concealed: u64,
    decode_errors: u64,
}

impl RxLeg {
    /// Takes one datagram as received at `arrival`; returns the frames it releases (concealed
    /// ones first). Anything wrong with the datagram drops it and is counted.
    pub fn receive(&mut self, datagram: &[u8], arrival: Instant) -> Vec<Frame> {
        self.packets += 1;
        self.bytes += datagram.len() as u64;
        match rtp::parse_header(datagram) {
            Err(_) => {
                self.malformed += 1;
                return Vec::new();
            }
            // Checked before decryption: SRTP keeps state per SSRC, which a peer could
            // otherwise make grow with every SSRC it invents.
            Ok(h) if h.ssrc != self.remote_ssrc => {
                self.other_ssrc += 1;
                return Vec::new();
            }
            Ok(_) => {}
        }
        let plain = match self.srtp.unprotect(datagram) {
            Ok(plain) => plain,
            Err(Refused::Auth) => {
                self.auth_failures += 1;
                return Vec::new();
            }
            Err(Refused::Replay) => {
                self.replays += 1;
                return Vec::new();
            }
        };
        let parsed = rtp::parse_header(&plain)
            .and_then(|h| rtp::payload(&plain, &h).map(|(payload, _)| (h, payload)));
        let Ok((header, payload)) = parsed else {
            self.malformed += 1;
            return Vec::new();
        };
        if header.payload_type != self.payload_type {
            self.other_payload += 1;
            return Vec::new();
        }
        let timestamp = self.track(&header, arrival);
        let added = self.jitter.add(
            header.sequence_number,
            Held {
                timestamp,
                payload: payload.to_vec(),
            },
        );
        let Some(packet) = added.out else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        if let (1..=MAX_CONCEALED, Some(mut at)) = (added.skipped, self.last_end) {
            for _ in 0..added.skipped {
                match self.decoder.conceal(CONCEALED_SAMPLES) {
                    Ok(data) => {
                        self.concealed += 1;
                        frames.push(self.frame(at, CONCEALED_SAMPLES, data));
                    }
                    Err(_) => self.decode_errors += 1,
                }
                at += CONCEALED_SAMPLES as i64;
            }
        }
        match self.decoder.decode(&packet.payload) {
            Ok((n, data)) => {
                self.last_end = Some(packet.timestamp + n as i64);
                frames.push(self.frame(packet.timestamp, n, data));
            }
            Err(_) => {
                self.decode_errors += 1;
                self.last_end = Some(packet.timestamp + CONCEALED_SAMPLES as i64);
            }
        }
        if let Some(f) = frames.last() {
            self.released_end = Some(f.timestamp + f.samples as i64);
        }
        frames
    }

    /// Where the last frame returned ended (its timestamp plus its samples).
    pub fn released_end(&self) -> Option<i64> {
        self.released_end
    }

    fn frame(&self, timestamp: i64, samples: usize, data: Vec<f32>) -> Frame {
        Frame {
            timestamp,
            channels: self.decoder.channels,
            samples,
            data,
        }
    }

    /// Updates the sequence and jitter statistics with a valid packet; returns its timestamp
    /// unwrapped, relative to the first packet's.
    fn track(&mut self, header: &rtp::Header, arrival: Instant) -> i64 {
        let seq = header.sequence_number;
        let timestamp = match self.ts_ref {
            None => {
                self.base_seq = seq;
                self.max_seq = seq;
                self.first_arrival = Some(arrival);
                self.ts_ref = Some((header.timestamp, 0));
                0
            }
            Some((raw, unwrapped)) => {
                let delta = header.timestamp.wrapping_sub(raw) as i32;
                let ext = unwrapped + i64::from(delta);
                if delta > 0 {
                    self.ts_ref = Some((header.timestamp, ext));
                }
                let forward = seq.wrapping_sub(self.max_seq);
                if forward != 0 && forward < 0x8000 {
                    if seq < self.max_seq {
                        self.cycles += 1;
                    }
                    self.max_seq = seq;
                }
                ext
            }
        };
        self.valid += 1;
        let since = arrival.saturating_duration_since(self.first_arrival.unwrap_or(arrival));
        let transit = since.as_secs_f64() * f64::from(SAMPLE_RATE) - timestamp as f64;
        if let Some(last) = self.transit {
            self.jitter_estimate += ((transit - last).abs() - self.jitter_estimate) / 16.0;
        }
        self.transit = Some(transit);
        timestamp
    }

    /// The SSRC this leg receives.
    pub fn remote_ssrc(&self) -> u32 {
        self.remote_ssrc
    }

    pub fn stats(&self) -> Stats {
        let valid = self.valid > 0;
        vec![
            ("packets_received", self.packets),
            ("bytes_received", self.bytes),
            ("packets_malformed", self.malformed),
            ("auth_failures", self.auth_failures),
            ("replays", self.replays),
            ("other_ssrc", self.other_ssrc),
            ("other_payload", self.other_payload),
            ("packets_valid", self.valid),
            ("packets_late", self.jitter.late),
            ("packets_lost", self.jitter.skipped),
            ("packets_dropped", self.jitter.dropped),
            ("jitter_held", self.jitter.held() as u64),
            ("concealed", self.concealed),
            ("decode_errors", self.decode_errors),
            ("frames_decoded", self.decoder.decoded),
            ("silence_skipped", self.decoder.skipped),
            (
                "highest_sequence",
                if valid {
                    self.cycles * 65536 + u64::from(self.max_seq)
                } else {
                    0
                },
            ),
            ("base_sequence", u64::from(self.base_seq)),
            ("jitter", self.jitter_estimate as u64),
            ("remote_ssrc", u64::from(self.remote_ssrc)),
        ]
    }
}

/// The send half.
pub struct TxLeg {
    srtp: Srtp,
    local_ssrc: u32,
    payload_type: u8,
    mid: Option<Vec<u8>>,
    encoder: Option<Encoder>,
    sequence_number: u16,
    timestamp: u32,
    started: bool,
    payload: Vec<u8>,
    packet: Vec<u8>,
    // counters
    sent: u64,
    payload_bytes: u64,
    encoded: u64,
    reused: u64,
    last_timestamp: u32,
}

impl TxLeg {
    /// One block of interleaved 16-bit samples at 48 kHz (`channels` 1 or 2, a whole Opus
    /// frame) as one SRTP datagram.
    pub fn send(&mut self, interleaved: &[i16], channels: usize) -> Result<Vec<u8>> {
        if !(1..=2).contains(&channels) {
            return Err(EngineError::format(format!(
                "send takes 1 or 2 channels, got {channels}"
            )));
        }
        let frames = interleaved.len() / channels;
        if !FRAME_SIZES.contains(&frames) {
            return Err(EngineError::format(format!(
                "send takes a whole Opus frame at 48 kHz (120, 240, 480, 960, 1920 or 2880 \
                 samples), got {frames}"
            )));
        }
        let encoder = match &mut self.encoder {
            Some(e) if e.channels == channels => e,
            slot => slot.insert(Encoder::new(channels)?),
        };
        let (encoded, reused) = (encoder.encoded, encoder.reused);
        self.payload.clear();
        encoder.encode(interleaved, &mut self.payload)?;
        self.encoded += encoder.encoded - encoded;
        self.reused += encoder.reused - reused;
        let extension = self.mid.as_deref().map(|m| (rtp::ONE_BYTE_PROFILE, m));
        self.packet.clear();
        rtp::build(
            &rtp::Packet {
                marker: !self.started,
                payload_type: self.payload_type,
                sequence_number: self.sequence_number,
                timestamp: self.timestamp,
                ssrc: self.local_ssrc,
                csrcs: Vec::new(),
                extension,
                payload: &self.payload,
                padding: 0,
            },
            &mut self.packet,
        );
        let datagram = self.srtp.protect(&self.packet)?;
        self.started = true;
        self.sent += 1;
        self.payload_bytes += self.payload.len() as u64;
        self.last_timestamp = self.timestamp;
        self.sequence_number = self.sequence_number.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(frames as u32);
        Ok(datagram)
    }

    /// Moves the timestamp of the next packet on by `samples`: the peer sees a gap in time.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    pub fn stats(&self) -> Stats {
        vec![
            ("packets_sent", self.sent),
            ("bytes_sent", self.payload_bytes),
            ("frames_encoded", self.encoded),
            ("silence_reused", self.reused),
            ("last_timestamp", u64::from(self.last_timestamp)),
            ("local_ssrc", u64::from(self.local_ssrc)),
        ]
    }
}

/// Both halves, and the relay between them.
pub struct RtpAudioLeg {
    pub rx: RxLeg,
    pub tx: TxLeg,
    pub relay: Relay,
}

impl RtpAudioLeg {
    /// Checks the settings (config errors name "rtp") and builds both halves.
    pub fn new(s: &LegSettings) -> Result<Self> {
        Self::build(s).map_err(|e| e.at(NAME))
    }

    fn build(s: &LegSettings) -> Result<Self> {
        let profile = srtp::profile(&s.profile)?;
        let payload_type = in_range("payload_type", s.payload_type, 0, 127)? as u8;
        let decode_channels = in_range("decode_channels", s.decode_channels, 1, 2)? as usize;
        let jitter_depth = in_range(
            "jitter_depth",
            s.jitter_depth,
            0,
            i64::from(JITTER_CAPACITY / 2),
        )? as u32;
        let mid = match &s.mid {
            None => None,
            Some((id, value)) => {
                let id = in_range("mid id", *id, 1, 14)? as u8;
                if value.is_empty() || value.len() > 16 {
                    return Err(EngineError::config(format!(
                        "mid value must be 1 to 16 bytes, got {}",
                        value.len()
                    )));
                }
                Some(rtp::one_byte_extension(id, value))
            }
        };
        let remote_ssrc = u32_setting("remote_ssrc", s.remote_ssrc)?;
        let local_ssrc = u32_setting("local_ssrc", s.local_ssrc)?;
        let rx = RxLeg {
            srtp: Srtp::new(profile, &s.rx_key, "rx_key", true)?,
            remote_ssrc,
            payload_type,
            jitter: JitterBuffer::new(jitter_depth, JITTER_CAPACITY, SHRINK_AFTER)?,
            decoder: Decoder::new(decode_channels)?,
            ts_ref: None,
            last_end: None,
            released_end: None,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            first_arrival: None,
            transit: None,
            jitter_estimate: 0.0,
            packets: 0,
            bytes: 0,
            malformed: 0,
            auth_failures: 0,
            replays: 0,
            other_ssrc: 0,
            other_payload: 0,
            valid: 0,
            concealed: 0,
            decode_errors: 0,
        };
        let random = random_u64();
        let tx = TxLeg {
            srtp: Srtp::new(profile, &s.tx_key, "tx_key", false)?,
            local_ssrc,
            payload_type,
            mid,
            encoder: None,
            sequence_number: random as u16,
            timestamp: (random >> 32) as u32,
            started: false,
            payload: Vec::with_capacity(1500),
            packet: Vec::with_capacity(1500),
            sent: 0,
            payload_bytes: 0,
            encoded: 0,
            reused: 0,
            last_timestamp: 0,
        };
        Ok(Self {
            rx,
            tx,
            relay: Relay::new(),
        })
    }

    pub fn receive(&mut self, datagram: &[u8], arrival: Instant) -> Vec<Frame> {
        self.rx.receive(datagram, arrival)
    }

    pub fn send(&mut self, interleaved: &[i16], channels: usize) -> Result<Vec<u8>> {
        self.tx.send(interleaved, channels).map_err(|e| e.at(NAME))
    }

    /// See [`Relay::relay`]; `chain` stands for the processing chain.
    pub fn relay(
        &mut self,
        datagram: &[u8],
        arrival: Instant,
        chain: impl FnMut(BlockRef<'_>) -> Result<Vec<Block>>,
    ) -> Result<Vec<Vec<u8>>> {
        self.relay
            .relay(&mut self.rx, &mut self.tx, datagram, arrival, chain)
            .map_err(|e| e.at(NAME))
    }

    /// `(input, output)` levels of what `relay` saw since the last call.
    pub fn levels(&mut self) -> (Meter, Meter) {
        self.relay.levels()
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.rx.stats();
        stats.extend(self.tx.stats());
        stats.extend(self.relay.stats());
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::time::Duration;

    const PROFILES: [(&str, usize); 3] = [
        ("SRTP_AEAD_AES_256_GCM", 44),
        ("SRTP_AEAD_AES_128_GCM", 28),
        ("SRTP_AES128_CM_SHA1_80", 30),
    ];

    fn settings(profile: &str, key_len: usize) -> LegSettings {
        LegSettings {
            profile: profile.into(),
            rx_key: (0..key_len as u8).collect(),
            tx_key: (0..key_len as u8).rev().collect(),
            remote_ssrc: 1111,
            local_ssrc: 2222,
            payload_type: 111,
            decode_channels: 2,
            jitter_depth: 3,
            mid: Some((4, b"0".to_vec())),
        }
    }

    /// Leg A sends to leg B: A's tx key is B's rx key, A's SSRC B's remote one.
    fn pair(profile: &str, key_len: usize) -> (RtpAudioLeg, RtpAudioLeg) {
        let a = settings(profile, key_len);
        let b = peer_settings(&a);
        (RtpAudioLeg::new(&a).unwrap(), RtpAudioLeg::new(&b).unwrap())
    }

    fn peer_settings(a: &LegSettings) -> LegSettings {
        LegSettings {
            rx_key: a.tx_key.clone(),
            tx_key: a.rx_key.clone(),
            remote_ssrc: a.local_ssrc,
            local_ssrc: a.remote_ssrc,
            ..a.clone()
        }
    }

    fn sine(blocks: usize) -> Vec<i16> {
        (0..blocks * 960)
            .flat_map(|i| {
                let s = (0.3 * (2.0 * PI * 440.0 * i as f64 / 48_000.0).sin() * 32767.0) as i16;
                [s, s]
            })
            .collect()
    }

    fn stat(leg: &RtpAudioLeg, name: &str) -> u64 {
        leg.stats().iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// SNR in dB of `got` against `reference`, at the best delay in 0..max_delay.
    fn best_snr(reference: &[f32], got: &[f32], max_delay: usize) -> f64 {
        (0..max_delay)
            .map(|d| {
                let n = got.len() - d;
                let (mut sig, mut err) = (0.0f64, 0.0f64);
                for i in 0..n.min(reference.len()) {
                    let r = f64::from(reference[i]);
                    sig += r * r;
                    err += (f64::from(got[i + d]) - r).powi(2);
                }
                10.0 * (sig / err.max(1e-12)).log10()
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn a_sine_goes_from_leg_to_leg_on_every_profile() {
        for (profile, key_len) in PROFILES {
            let (mut a, mut b) = pair(profile, key_len);
            let source = sine(50);
            let now = Instant::now();
            let mut left = Vec::new();
            let mut stamps = Vec::new();
            for (i, block) in source.chunks(1920).enumerate() {
                let datagram = a.send(block, 2).unwrap();
                let frames = b.receive(&datagram, now + Duration::from_millis(20 * i as u64));
                assert_eq!(frames.len(), 1, "{profile}");
                let f = &frames[0];
                assert_eq!((f.channels, f.samples), (2, 960));
                stamps.push(f.timestamp);
                left.extend_from_slice(&f.data[..960]);
            }
            assert_eq!(stamps, (0..50).map(|i| i * 960).collect::<Vec<i64>>());
            let reference: Vec<f32> = source
                .iter()
                .step_by(2)
                .map(|&s| f32::from(s) / 32768.0)
                .collect();
            // after Opus' 6.5 ms delay, skipping the start-up
            let snr = best_snr(&reference[4800..], &left[4800..], 960);
            assert!(snr > 20.0, "{profile}: SNR {snr:.1} dB");
            assert_eq!(stat(&b, "frames_decoded"), 50);
            assert_eq!(stat(&a, "packets_sent"), 50);
            assert_eq!(stat(&b, "highest_sequence") - stat(&b, "base_sequence"), 49);
            assert_eq!(stat(&b, "jitter"), 0); // sent at exactly 20 ms
        }
    }

    #[test]
    fn lost_packets_are_concealed_and_long_gaps_are_not() {
        let (mut a, mut b) = pair("SRTP_AEAD_AES_128_GCM", 28);
        let now = Instant::now();
        let datagrams: Vec<Vec<u8>> = sine(30)
            .chunks(1920)
            .map(|x| a.send(x, 2).unwrap())
            .collect();
        let mut got = Vec::new();
        // 5 lost: concealed once the jitter buffer gives up on it (3 newer packets held)
        for i in (0..5).chain(6..10) {
            for f in b.receive(&datagrams[i], now) {
                got.push((f.timestamp / 960, f.data.iter().any(|&s| s != 0.0)));
            }
        }
        let stamps: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(stamps, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(got[5].1, "PLC of a tone is not silence");
        assert_eq!((stat(&b, "concealed"), stat(&b, "packets_lost")), (1, 1));
        // a gap of 10: the buffer skips it but it is not concealed
        let mut stamps = Vec::new();
        for d in &datagrams[20..24] {
            stamps.extend(b.receive(d, now).iter().map(|f| f.timestamp / 960));
        }
        assert_eq!(stamps, [8, 9, 20, 21]); // 8 and 9 were held
        assert_eq!((stat(&b, "concealed"), stat(&b, "packets_lost")), (1, 11));
    }

    #[test]
    fn silence_is_neither_encoded_nor_decoded_once_settled() {
        let (mut a, mut b) = pair("SRTP_AES128_CM_SHA1_80", 30);
        let zeros = vec![0i16; 1920];
        for _ in 0..20 {
            let d = a.send(&zeros, 2).unwrap();
            let frames = b.receive(&d, Instant::now());
            assert!(frames[0].data.iter().all(|&s| s == 0.0));
        }
        assert!(stat(&a, "silence_reused") >= 10, "{:?}", a.stats());
        assert_eq!(stat(&a, "silence_reused") + stat(&a, "frames_encoded"), 20);
        assert!(stat(&b, "silence_skipped") >= 10, "{:?}", b.stats());
        assert_eq!(stat(&b, "silence_skipped") + stat(&b, "frames_decoded"), 20);
    }

    #[test]
    fn what_a_peer_sends_wrong_is_dropped_and_counted() {
        let (mut a, mut b) = pair("SRTP_AEAD_AES_256_GCM", 44);
        let now = Instant::now();
        let good = a.send(&sine(1), 2).unwrap();
        assert!(b.receive(&good[..5], now).is_empty());
        let mut v1 = good.clone();
        v1[0] &= 0x7F;
        assert!(b.receive(&v1, now).is_empty());
        let mut flipped = good.clone();
        flipped[30] ^= 4;
        assert!(b.receive(&flipped, now).is_empty());
        let mut ssrc = good.clone();
        ssrc[11] ^= 1;
        assert!(b.receive(&ssrc, now).is_empty());
        assert_eq!(b.receive(&good, now).len(), 1);
        assert!(b.receive(&good, now).is_empty());
        let counts: Vec<u64> = [
            "packets_malformed",
            "auth_failures",
            "other_ssrc",
            "replays",
        ]
        .iter()
        .map(|n| stat(&b, n))
        .collect();
        assert_eq!(counts, [2, 1, 1, 1]);
        // another payload type, properly protected, and a payload libopus takes or refuses
        let (mut c, mut d) = pair("SRTP_AEAD_AES_256_GCM", 44);
        c.tx.payload_type = 0;
        let other = c.send(&sine(1), 2).unwrap();
        assert!(d.receive(&other, now).is_empty());
        assert_eq!(stat(&d, "other_payload"), 1);
        for len in 0..64 {
            let mut junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            junk.insert(0, 0x80);
            let _ = d.receive(&junk, now);
        }
        assert_eq!(stat(&d, "packets_received"), 65);
    }

    #[test]
    fn settings_are_checked() {
        let good = settings("SRTP_AEAD_AES_128_GCM", 28);
        let cases: [(LegSettings, &str); 8] = [
            (
                LegSettings {
                    profile: "nope".into(),
                    ..good.clone()
                },
                "unknown SRTP profile",
            ),
            (
                LegSettings {
                    rx_key: vec![0; 30],
                    ..good.clone()
                },
                "rx_key must be 28 bytes",
            ),
            (
                LegSettings {
                    payload_type: 128,
                    ..good.clone()
                },
                "payload_type",
            ),
            (
                LegSettings {
                    decode_channels: 3,
                    ..good.clone()
                },
                "decode_channels",
            ),
            (
                LegSettings {
                    jitter_depth: 9,
                    ..good.clone()
                },
                "jitter_depth",
            ),
            (
                LegSettings {
                    mid: Some((15, b"0".to_vec())),
                    ..good.clone()
                },
                "mid id",
            ),
            (
                LegSettings {
                    mid: Some((1, vec![])),
                    ..good.clone()
                },
                "mid value",
            ),
            (
                LegSettings {
                    remote_ssrc: -1,
                    ..good.clone()
                },
                "remote_ssrc",
            ),
        ];
        for (s, expected) in cases {
            let Err(e) = RtpAudioLeg::new(&s) else {
                panic!("{expected}: taken");
            };
            assert_eq!(e.kind, crate::dsp::ErrorKind::Config);
            assert_eq!(e.stage, "rtp");
            assert!(e.message.contains(expected), "{e}");
        }
        let mut leg = RtpAudioLeg::new(&good).unwrap();
        assert!(leg
            .send(&[0; 1000], 2)
            .unwrap_err()
            .to_string()
            .starts_with("rtp: "));
        assert!(leg.send(&[0; 960 * 3], 3).is_err());
        // a block with another channel count makes a new encoder
        leg.send(&[0; 960], 1).unwrap();
        leg.send(&[0; 1920], 2).unwrap();
        assert_eq!(stat(&leg, "frames_encoded"), 2);
    }

    fn identity(b: BlockRef<'_>) -> Result<Vec<Block>> {
        Ok(vec![Block::new(b.channels, b.frames, b.data.to_vec())])
    }

    /// Relays `indices` of A's datagrams through B (identity chain) and receives them with
    /// `twin`, a leg keyed as B; A receives B's datagrams back (A's keys and SSRCs match B's tx
    /// side). Returns the frame timestamps (in blocks) A got and twin got.
    fn round_trip(
        (a, b, twin): (&mut RtpAudioLeg, &mut RtpAudioLeg, &mut RtpAudioLeg),
        datagrams: &[Vec<u8>],
        indices: impl Iterator<Item = usize>,
    ) -> (Vec<i64>, Vec<i64>) {
        let now = Instant::now();
        let (mut back, mut direct) = (Vec::new(), Vec::new());
        for i in indices {
            for d in b.relay(&datagrams[i], now, identity).unwrap() {
                back.extend(a.receive(&d, now).iter().map(|f| f.timestamp / 960));
            }
            direct.extend(
                twin.receive(&datagrams[i], now)
                    .iter()
                    .map(|f| f.timestamp / 960),
            );
        }
        (back, direct)
    }

    #[test]
    fn relay_keeps_time_through_concealment_and_across_long_gaps() {
        let (mut a, mut b) = pair("SRTP_AEAD_AES_128_GCM", 28);
        let mut twin =
            RtpAudioLeg::new(&peer_settings(&settings("SRTP_AEAD_AES_128_GCM", 28))).unwrap();
        let legs = (&mut a, &mut b, &mut twin);
        let datagrams: Vec<Vec<u8>> = sine(40)
            .chunks(1920)
            .map(|x| legs.0.send(x, 2).unwrap())
            .collect();
        // one lost: concealed, so the relayed stream has no hole (two stay in the buffer)
        let (back, direct) = round_trip(legs, &datagrams, (0..5).chain(6..10));
        assert_eq!(back, (0..8).collect::<Vec<i64>>());
        assert_eq!(direct, back);
        assert_eq!((stat(&b, "concealed"), stat(&b, "relay_gaps")), (1, 0));
        assert_eq!(stat(&b, "relay_frames"), 8);
        // ten lost: not concealed, the send timestamp jumps by the gap
        let legs = (&mut a, &mut b, &mut twin);
        let (back, direct) = round_trip(legs, &datagrams, 20..30);
        assert_eq!(back, direct);
        assert_eq!(back[..3], [8, 9, 20]);
        assert_eq!(*back.last().unwrap(), 19 + back.len() as i64 - 2);
        assert_eq!(stat(&b, "relay_gaps"), 1);
        assert_eq!(stat(&b, "relay_frames"), 8 + back.len() as u64);
        assert_eq!(stat(&b, "packets_sent"), stat(&b, "relay_frames"));
        // the relayed tone comes back (identity chain)
        let (input, output) = b.levels();
        let samples = 2 * 960 * stat(&b, "relay_frames");
        assert_eq!((input.count, output.count), (samples, samples));
        assert!((input.peak - 0.3).abs() < 0.05, "{input:?}");
        assert!((output.peak - input.peak).abs() < 1e-4);
        assert!((output.sum_sq - input.sum_sq).abs() < 1e-3 * input.sum_sq);
        assert_eq!(b.levels().0.count, 0);
    }

    #[test]
    fn relay_and_receive_mix_and_a_failing_chain_loses_nothing() {
        let (mut a, mut b) = pair("SRTP_AES128_CM_SHA1_80", 30);
        let datagrams: Vec<Vec<u8>> = sine(10)
            .chunks(1920)
            .map(|x| a.send(x, 2).unwrap())
            .collect();
        let now = Instant::now();
        assert_eq!(b.receive(&datagrams[0], now).len(), 1);
        // a receive between relays is no gap: the relay starts where receive ended
        assert_eq!(b.relay(&datagrams[1], now, identity).unwrap().len(), 1);
        assert_eq!(b.receive(&datagrams[2], now).len(), 1);
        assert_eq!(b.relay(&datagrams[3], now, identity).unwrap().len(), 1);
        assert_eq!(stat(&b, "relay_gaps"), 0);
        let e = b
            .relay(&datagrams[4], now, |_| {
                Err(EngineError::format("boom").at("gain"))
            })
            .unwrap_err();
        assert_eq!((e.stage.as_str(), e.message.as_str()), ("gain", "boom"));
        assert_eq!(stat(&b, "frames_decoded"), 5);
        // the chain emits mono halves: the first call's output waits, the next sends both
        let half = |blk: BlockRef<'_>| {
            identity(BlockRef::new(
                1,
                blk.frames / 2,
                &blk.data[..blk.frames / 2],
            ))
        };
        assert_eq!(b.relay(&datagrams[5], now, half).unwrap().len(), 0);
        assert_eq!(b.relay(&datagrams[6], now, half).unwrap().len(), 1);
        let e = b
            .relay(&datagrams[7], now, |blk| {
                identity(BlockRef::new(3, blk.frames / 3, &blk.data[..blk.frames]))
            })
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rtp: the chain must emit 1 or 2 channels (RTP audio), got 3"),
            "{e}"
        );
        assert_eq!(stat(&b, "packets_sent"), 3);
        // garbage: counted, nothing sent, the leg goes on
        assert!(b.relay(&[0x80; 40], now, identity).unwrap().is_empty());
        assert_eq!(b.relay(&datagrams[8], now, identity).unwrap().len(), 1);
        assert_eq!(stat(&b, "packets_received"), 10);
    }
}
