//! SRTP (RFC 3711, RFC 7714) for one direction of a leg: a thin wrapper over webrtc-rs'
//! `webrtc-srtp`, with profiles named as aiortc and OpenSSL name them.

use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::dsp::{EngineError, Result};

/// The replay window, as aiortc sets its receive policy (`window_size = 1024`), so both stacks
/// drop the same late duplicates.
const REPLAY_WINDOW: usize = 1024;

/// The profiles a WebRTC peer negotiates, by their DTLS-SRTP names.
pub fn profile(name: &str) -> Result<ProtectionProfile> {
    match name {
        "SRTP_AEAD_AES_256_GCM" => Ok(ProtectionProfile::AeadAes256Gcm),
        "SRTP_AEAD_AES_128_GCM" => Ok(ProtectionProfile::AeadAes128Gcm),
        "SRTP_AES128_CM_SHA1_80" => Ok(ProtectionProfile::Aes128CmHmacSha1_80),
        _ => Err(EngineError::config(format!(
            "unknown SRTP profile {name:?} (expected SRTP_AEAD_AES_256_GCM, \
             SRTP_AEAD_AES_128_GCM or SRTP_AES128_CM_SHA1_80)"
        ))),
    }
}

/// Why a packet was not unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The authentication tag did not match (or the packet was too short to hold one).
    Auth,
    /// A sequence number seen before, or older than the replay window.
    Replay,
}

/// One direction's SRTP context.
pub struct Srtp {
    context: Context,
}

impl Srtp {
    /// `key`: master key followed by master salt (`what` names it in errors: "rx_key").
    pub fn new(profile: ProtectionProfile, key: &[u8], what: &str, rx: bool) -> Result<Self> {
        let (key_len, salt_len) = (profile.key_len(), profile.salt_len());
        if key.len() != key_len + salt_len {
            return Err(EngineError::config(format!(
                "{what} must be {} bytes ({key_len}-byte master key and {salt_len}-byte salt) \
                 for this profile, got {}",
                key_len + salt_len,
                key.len()
            )));
        }
        let replay = rx.then(|| srtp_replay_protection(REPLAY_WINDOW));
        let context = Context::new(&key[..key_len], &key[key_len..], profile, replay, None)
            .map_err(|e| EngineError::config(format!("{what}: {e}")))?;
        Ok(Self { context })
    }

    /// The RTP packet of an SRTP datagram (header in clear, payload decrypted, tag removed).
    pub fn unprotect(&mut self, datagram: &[u8]) -> std::result::Result<Vec<u8>, Refused> {
        match self.context.decrypt_rtp(datagram) {
            Ok(packet) => Ok(packet.to_vec()),
            Err(webrtc_srtp::Error::SrtpSsrcDuplicated(..)) => Err(Refused::Replay),
            Err(_) => Err(Refused::Auth),
        }
    }

    /// The SRTP datagram of an RTP packet.
    pub fn protect(&mut self, packet: &[u8]) -> Result<Vec<u8>> {
        self.context
            .encrypt_rtp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| EngineError::engine(format!("SRTP protect failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtc::rtp;

    pub const PROFILES: [(&str, usize); 3] = [
        ("SRTP_AEAD_AES_256_GCM", 44),
        ("SRTP_AEAD_AES_128_GCM", 28),
        ("SRTP_AES128_CM_SHA1_80", 30),
    ];

    fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        rtp::build(
            &rtp::Packet {
                marker: false,
                payload_type: 111,
                sequence_number: seq,
                timestamp: 960 * u32::from(seq),
                ssrc: 42,
                csrcs: vec![],
                extension: Some((rtp::ONE_BYTE_PROFILE, &rtp::one_byte_extension(1, b"0"))),
                payload,
                padding: 0,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn each_profile_round_trips_and_refuses_tampering_and_replays() {
        for (name, key_len) in PROFILES {
            let p = profile(name).unwrap();
            let key: Vec<u8> = (0..key_len as u8).collect();
            let mut tx = Srtp::new(p, &key, "tx_key", false).unwrap();
            let mut rx = Srtp::new(p, &key, "rx_key", true).unwrap();
            for seq in [65534u16, 65535, 0, 1] {
                let plain = rtp_packet(seq, b"some opus bytes");
                let sealed = tx.protect(&plain).unwrap();
                assert!(sealed.len() > plain.len(), "{name}: no tag");
                assert_ne!(&sealed[plain.len() - 15..plain.len()], b"some opus bytes");
                let mut flipped = sealed.clone();
                *flipped.last_mut().unwrap() ^= 1;
                assert_eq!(rx.unprotect(&flipped), Err(Refused::Auth), "{name}");
                let mut body = sealed.clone();
                body[20] ^= 0x80;
                assert_eq!(rx.unprotect(&body), Err(Refused::Auth), "{name}");
                assert_eq!(rx.unprotect(&sealed), Ok(plain), "{name}");
                assert_eq!(rx.unprotect(&sealed), Err(Refused::Replay), "{name}");
            }
        }
    }

    #[test]
    fn bad_keys_and_profiles_are_config_errors() {
        let e = profile("SRTP_NULL").unwrap_err();
        assert!(e.message.contains("SRTP_NULL"), "{e}");
        let p = profile("SRTP_AES128_CM_SHA1_80").unwrap();
        let Err(e) = Srtp::new(p, &[0; 28], "rx_key", true) else {
            panic!("a short key was taken");
        };
        assert!(e.message.contains("rx_key must be 30 bytes"), "{e}");
    }
}
