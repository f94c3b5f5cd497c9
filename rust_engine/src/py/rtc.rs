//! `RtpAudioLeg(profile, rx_key, tx_key, *, remote_ssrc, local_ssrc, payload_type,
//! decode_channels=2, jitter_depth=3, mid=None)`: one session's audio RTP leg (`crate::rtc`),
//! and `relay(datagram, chain)`: a whole round trip through a native `Chain` in one call.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::args;
use super::array::{read, to_array};
use super::chain::Chain;
use super::error::{to_pyerr, IntoPyResult};
use crate::dsp::{catch_panic, chain, EngineError, NamedStage};
use crate::rtc::leg::{RxLeg, TxLeg, NAME};
use crate::rtc::relay::{Relay, RATE};
use crate::rtc::rtp::is_rtp_of;
use crate::rtc::udp::UdpRelay;
use crate::rtc::{Frame, LegSettings, RtpAudioLeg as Leg};

const INT16_BLOCK: &str = "an int16 array of shape (samples, channels)";

/// SRTP datagrams in, decoded 48 kHz audio out (adaptive jitter buffer, Opus PLC); 20 ms int16
/// blocks in, Opus in SRTP datagrams out. The two directions lock apart, so one thread may
/// receive while another sends.
#[pyclass(frozen, module = "stream._engine")]
pub struct RtpAudioLeg {
    // Locked in this order when a call takes more than one.
    rx: Mutex<RxLeg>,
    tx: Mutex<TxLeg>,
    relay: Mutex<Relay>,
}

fn bytes_arg(name: &str, obj: &Bound<'_, PyAny>) -> Result<Vec<u8>, EngineError> {
    obj.cast::<PyBytes>()
        .map(|b| b.as_bytes().to_vec())
        .map_err(|_| {
            let t = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            EngineError::config(format!("{name} must be bytes, got {t}"))
        })
}

fn mid_arg(obj: Option<&Bound<'_, PyAny>>) -> Result<Option<(i64, Vec<u8>)>, EngineError> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let tuple = obj
        .cast::<PyTuple>()
        .ok()
        .filter(|t| t.len() == 2)
        .ok_or_else(|| EngineError::config("mid must be a tuple (id, value) or None"))?;
    let id = args::int(
        "mid id",
        &tuple
            .get_item(0)
            .map_err(|e| EngineError::config(e.to_string()))?,
    )?;
    let value = bytes_arg(
        "mid value",
        &tuple
            .get_item(1)
            .map_err(|e| EngineError::config(e.to_string()))?,
    )?;
    Ok(Some((id, value)))
}

fn frames_to_list<'py>(py: Python<'py>, frames: Vec<Frame>) -> PyResult<Bound<'py, PyList>> {
    let items = frames.into_iter().map(|f| {
        let array = to_array(py, f.channels, f.samples, f.data);
        PyTuple::new(
            py,
            [f.timestamp.into_pyobject(py)?.into_any(), array.into_any()],
        )
    });
    PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
}

impl RtpAudioLeg {
    /// One datagram's round trip through `stages` (the body of `relay`, either thread's; the
    /// caller checked the chain's output rate).
    fn relay_through(
        &self,
        stages: &mut [&mut NamedStage],
        buffers: &mut chain::Buffers,
        datagram: &[u8],
        arrival: Instant,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let mut relay = self.relay.lock().unwrap_or_else(|p| p.into_inner());
        relay
            .relay(&mut rx, &mut tx, datagram, arrival, |block| {
                chain::process(stages, block, i64::from(RATE), buffers)
            })
            .map_err(|e| e.at(NAME))
    }
}

#[pymethods]
impl RtpAudioLeg {
    #[new]
    #[pyo3(
        signature = (profile, rx_key, tx_key, *, remote_ssrc, local_ssrc, payload_type,
                     decode_channels = None, jitter_depth = None, mid = None),
        text_signature = "(profile, rx_key, tx_key, *, remote_ssrc, local_ssrc, payload_type, \
                          decode_channels=2, jitter_depth=3, mid=None)"
    )]
    #[allow(clippy::too_many_arguments)] // the Python signature's arguments, one each
    fn new(
        py: Python<'_>,
        profile: &Bound<'_, PyAny>,
        rx_key: &Bound<'_, PyAny>,
        tx_key: &Bound<'_, PyAny>,
        remote_ssrc: &Bound<'_, PyAny>,
        local_ssrc: &Bound<'_, PyAny>,
        payload_type: &Bound<'_, PyAny>,
        decode_channels: Option<&Bound<'_, PyAny>>,
        jitter_depth: Option<&Bound<'_, PyAny>>,
        mid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let settings = (|| {
            let profile = profile
                .cast::<PyString>()
                .map_err(|_| EngineError::config("profile must be a str"))?
                .to_string();
            Ok::<_, EngineError>(LegSettings {
                profile,
                rx_key: bytes_arg("rx_key", rx_key)?,
                tx_key: bytes_arg("tx_key", tx_key)?,
                remote_ssrc: args::int("remote_ssrc", remote_ssrc)?,
                local_ssrc: args::int("local_ssrc", local_ssrc)?,
                payload_type: args::int("payload_type", payload_type)?,
                decode_channels: args::opt_int("decode_channels", decode_channels)?.unwrap_or(2),
                jitter_depth: args::opt_int("jitter_depth", jitter_depth)?.unwrap_or(3),
                mid: mid_arg(mid)?,
            })
        })()
        .map_err(|e| e.at(NAME))
        .py_err(py)?;
        let leg = py
            .detach(|| catch_panic(|| Leg::new(&settings)))
            .map_err(|e| e.at(NAME))
            .py_err(py)?;
        Ok(Self {
            rx: Mutex::new(leg.rx),
            tx: Mutex::new(leg.tx),
            relay: Mutex::new(leg.relay),
        })
    }

    /// One SRTP datagram from the network -> the `(timestamp, (channels, n) float32)` frames it
    /// releases (concealed ones first). Never raises for what a peer sends: bad packets are
    /// dropped and counted in `stats()`.
    fn receive<'py>(&self, py: Python<'py>, datagram: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let arrival = Instant::now();
        let frames = py
            .detach(|| {
                let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
                catch_panic(|| Ok(rx.receive(datagram, arrival)))
            })
            .map_err(|e| e.at(NAME))
            .py_err(py)?;
        frames_to_list(py, frames)
    }

    /// One block of int16 `(samples, channels)` at 48 kHz (a whole Opus frame) -> one SRTP
    /// datagram.
    fn send<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let block = read::<i16>(samples, INT16_BLOCK)
            .map_err(|e| e.at(NAME))
            .py_err(py)?;
        let (data, channels) = (block.data(), block.cols);
        let datagram = py
            .detach(|| {
                let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
                catch_panic(|| tx.send(data, channels))
            })
            .map_err(|e| e.at(NAME))
            .py_err(py)?;
        Ok(PyBytes::new(py, &datagram))
    }

    /// `receive(datagram)`, each released frame through `chain` (which must emit 48 kHz, 1 or 2
    /// channels), the output cut into 20 ms blocks and sent as `send` sends: the datagrams to
    /// send. One call, the GIL released for all of it.
    fn relay<'py>(
        &self,
        py: Python<'py>,
        datagram: &[u8],
        chain: &Bound<'py, Chain>,
    ) -> PyResult<Bound<'py, PyList>> {
        let arrival = Instant::now();
        let datagrams = chain.get().run(py, |stages, buffers| {
            check_output_rate(stages)?; // a call may bring another chain
            self.relay_through(stages, buffers, datagram, arrival)
        })?;
        PyList::new(py, datagrams.iter().map(|d| PyBytes::new(py, d)))
    }

    /// `relay` on a thread of its own, on the session's UDP socket `fd` (a duplicate; the
    /// caller stops reading it meanwhile): the peer's audio (RTP of its SSRC) goes through
    /// `chain` and straight back to `(host, port)`; every other datagram waits in the relay's
    /// `take_passed()` and a byte on `wake_fd` says so (or that the chain failed). No Python
    /// per packet.
    fn relay_socket(
        slf: &Bound<'_, Self>,
        fd: i32,
        host: &str,
        port: u16,
        chain: &Bound<'_, Chain>,
        wake_fd: i32,
    ) -> PyResult<SocketRelay> {
        let py = slf.py();
        let remote = (|| {
            let ip: IpAddr = host
                .parse()
                .map_err(|_| EngineError::config(format!("{host:?} is not an IP address")))?;
            Ok::<_, EngineError>(SocketAddr::new(ip, port))
        })()
        .map_err(|e| e.at(NAME))
        .py_err(py)?;
        chain.get().run(py, |stages, _| check_output_rate(stages))?; // once: the chain is fixed
        let ssrc = slf
            .get()
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remote_ssrc();
        let leg: Py<RtpAudioLeg> = slf.clone().unbind();
        let chain: Py<Chain> = chain.clone().unbind();
        let relay = Box::new(move |datagram: &[u8]| {
            let arrival = Instant::now();
            let leg = leg.get();
            chain.get().run_waiting(|stages, buffers| {
                leg.relay_through(stages, buffers, datagram, arrival)
            })
        });
        let running = py
            .detach(|| {
                UdpRelay::start(
                    fd,
                    remote,
                    wake_fd,
                    Box::new(move |d| is_rtp_of(d, ssrc)),
                    relay,
                )
            })
            .map_err(|e| EngineError::config(format!("relay thread: {e}")).at(NAME))
            .py_err(py)?;
        Ok(SocketRelay {
            inner: Mutex::new(running),
        })
    }

    /// `(in_peak, in_sum_sq, in_count, out_peak, out_sum_sq, out_count)` of what `relay` saw
    /// since the last call (float full scale, every sample of every channel), then reset.
    fn levels(&self, py: Python<'_>) -> (f64, f64, u64, f64, f64, u64) {
        let (i, o) = py.detach(|| {
            let mut relay = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            relay.levels()
        });
        (i.peak, i.sum_sq, i.count, o.peak, o.sum_sq, o.count)
    }

    /// The leg's counters (packets, bytes, losses, jitter, relay, ...).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (mut stats, tx, relay) = py.detach(|| {
            let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).stats();
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).stats();
            let relay = self.relay.lock().unwrap_or_else(|p| p.into_inner()).stats();
            (rx, tx, relay)
        });
        stats.extend(tx);
        stats.extend(relay);
        let dict = PyDict::new(py);
        for (name, value) in stats {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }
}

/// `RtpAudioLeg.relay_socket`'s thread; `stop()` (or losing the last reference) ends it.
#[pyclass(frozen, module = "stream._engine")]
pub struct SocketRelay {
    inner: Mutex<UdpRelay>,
}

impl SocketRelay {
    fn lock(&self) -> std::sync::MutexGuard<'_, UdpRelay> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl SocketRelay {
    /// Ends the thread and waits for it (tens of milliseconds at most); the socket is the
    /// caller's alone again.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.lock().stop());
    }

    /// Whether it relays (not stopped, the chain not failed).
    #[getter]
    fn running(&self) -> bool {
        self.lock().running()
    }

    /// Drop the peer's audio (counted as `paused_drops`) while true.
    fn set_paused(&self, paused: bool) {
        self.lock().set_paused(paused);
    }

    /// The datagrams that were not the peer's audio, oldest first, as `(data, (host, port))`
    /// (what the socket's protocol would have been given).
    fn take_passed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let passed = py.detach(|| self.lock().take_passed());
        let items = passed.into_iter().map(|(data, from)| {
            PyTuple::new(
                py,
                [
                    PyBytes::new(py, &data).into_any(),
                    (from.ip().to_string(), from.port())
                        .into_pyobject(py)?
                        .into_any(),
                ],
            )
        });
        PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
    }

    /// The chain's error that stopped the relaying, once (None if none).
    fn take_error(&self, py: Python<'_>) -> Option<PyErr> {
        self.lock().take_error().map(|e| to_pyerr(py, e))
    }

    /// The thread's counters: relayed, sent, bytes_sent, send_failed, passed, passed_dropped,
    /// paused_drops, after_error.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in self.lock().counts() {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }
}

/// A relay's chain must emit what RTP sends: 48 kHz.
fn check_output_rate(stages: &[&mut NamedStage]) -> Result<(), EngineError> {
    let refs: Vec<&NamedStage> = stages.iter().map(|s| &**s).collect();
    let rate = chain::output_rate(&refs, i64::from(RATE))?;
    if rate == RATE {
        Ok(())
    } else {
        Err(EngineError::config(format!(
            "relay needs a chain that emits {RATE} Hz for {RATE} Hz input; this one emits {rate} Hz"
        ))
        .at(NAME))
    }
}
