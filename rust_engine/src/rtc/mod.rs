//! A native RTP audio leg: the per-packet media path of a WebRTC audio session (SRTP, RTP, the
//! adaptive jitter buffer, Opus) once aiortc's ICE and DTLS have given the SRTP keys. Pure Rust,
//! no PyO3; `py::rtc` binds it as `stream._engine.RtpAudioLeg`.

pub mod jitter;
pub mod leg;
pub mod opus;
pub mod relay;
pub mod rtp;
pub mod srtp;
pub mod udp;

pub use leg::{Frame, LegSettings, RtpAudioLeg, Stats};
