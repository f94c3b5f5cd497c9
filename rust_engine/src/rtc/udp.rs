//! A relay thread on a session's UDP socket: the peer's media datagrams go through a relay
//! function and what it returns goes straight back to the peer, with no Python (no event-loop
//! wake-up, no GIL) per packet; every other datagram (STUN, DTLS, RTCP) is queued for the
//! socket's owner, which a byte on `wake_fd` tells (a pipe its event loop watches).
//!
//! The socket stays the owner's: the thread works on a duplicate of its descriptor (the two share
//! the non-blocking flag, so the thread polls), and the owner keeps sending on it (DTLS, STUN)
//! while the thread sends media. The owner stops reading the socket while the thread runs.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::dsp::{catch_panic, EngineError};

/// How often the thread looks at its stop flag when no datagram comes.
const POLL_MS: i32 = 50;
/// Datagrams for the owner held at most (the owner reads them at once; this bounds a stalled
/// loop): past it the oldest goes, counted.
pub const PASSED_MAX: usize = 1024;
/// Larger than any datagram a UDP socket delivers.
const DATAGRAM_MAX: usize = 65536;

/// A datagram the thread did not relay, with where it came from.
pub type Passed = (Vec<u8>, SocketAddr);

/// The relay function: one media datagram in, the datagrams to send back out.
pub type RelayFn = Box<dyn FnMut(&[u8]) -> Result<Vec<Vec<u8>>, EngineError> + Send>;
/// Whether a datagram is the peer's media (relayed) or for the owner (passed).
pub type MediaTest = Box<dyn Fn(&[u8]) -> bool + Send>;

#[derive(Default)]
struct Counters {
    relayed: AtomicU64,
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_failed: AtomicU64,
    passed: AtomicU64,
    passed_dropped: AtomicU64,
    paused_drops: AtomicU64,
    after_error: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    paused: AtomicBool,
    passed: Mutex<VecDeque<Passed>>,
    error: Mutex<Option<EngineError>>,
    counters: Counters,
    wake_fd: RawFd,
}

impl Shared {
    fn wake(&self) {
        let byte = [1u8];
        // A full pipe already has a wake-up pending: nothing is lost by failing here.
        // SAFETY: writes one byte from a live buffer to a descriptor the owner keeps open until
        // the thread has been joined (`UdpRelay::stop`).
        unsafe { libc::write(self.wake_fd, byte.as_ptr().cast(), 1) };
    }

    fn pass(&self, datagram: Passed) {
        let mut queue = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = queue.is_empty();
        if queue.len() >= PASSED_MAX {
            queue.pop_front();
            self.counters.passed_dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(datagram);
        self.counters.passed.fetch_add(1, Ordering::Relaxed);
        drop(queue);
        // The owner reads the pipe, then takes the whole queue: a push that finds it empty
        // comes after a take, so one byte per empty-to-non-empty is enough.
        if was_empty {
            self.wake();
        }
    }

    fn fail(&self, error: EngineError) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.wake();
    }

    fn failed(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// The running thread; `stop()` (or drop) ends and joins it.
pub struct UdpRelay {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl UdpRelay {
    /// Starts relaying on a duplicate of `fd`, sending to `remote`. `wake_fd` gets a byte when
    /// datagrams wait in `take_passed()` or the relay failed (`error()`); it must stay open
    /// until `stop()` returned.
    pub fn start(
        fd: RawFd,
        remote: SocketAddr,
        wake_fd: RawFd,
        is_media: MediaTest,
        relay: RelayFn,
    ) -> io::Result<Self> {
        // SAFETY: `dup` of a descriptor the caller holds open; the new one is owned here.
        let own = unsafe { libc::dup(fd) };
        if own < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `own` is a fresh descriptor nothing else owns.
        let socket = unsafe { UdpSocket::from_raw_fd(own) };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            passed: Mutex::new(VecDeque::new()),
            error: Mutex::new(None),
            counters: Counters::default(),
            wake_fd,
        });
        let worker = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("rm-udp-relay".to_owned())
            .spawn(move || run(&socket, remote, &worker, is_media, relay))?;
        Ok(Self {
            shared,
            handle: Some(handle),
        })
    }

    /// Ends the thread and waits for it (at most one poll interval plus a relay call).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join(); // `run` catches panics of the relay; nothing else panics
        }
    }

    /// Whether the thread is running (not stopped, not failed).
    pub fn running(&self) -> bool {
        self.handle.is_some() && !self.shared.failed()
    }

    /// Drops the peer's media while `paused` (counted), as a paused session drops its input.
    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }

    /// The datagrams for the owner, oldest first.
    pub fn take_passed(&self) -> Vec<Passed> {
        let mut queue = self.shared.passed.lock().unwrap_or_else(|p| p.into_inner());
        queue.drain(..).collect()
    }

    /// Why the relay stopped relaying (its function failed), once.
    pub fn take_error(&self) -> Option<EngineError> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The thread's counters.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("relayed", get(&c.relayed)),
            ("sent", get(&c.sent)),
            ("bytes_sent", get(&c.bytes_sent)),
            ("send_failed", get(&c.send_failed)),
            ("passed", get(&c.passed)),
            ("passed_dropped", get(&c.passed_dropped)),
            ("paused_drops", get(&c.paused_drops)),
            ("after_error", get(&c.after_error)),
        ]
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn readable(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    n > 0
}

fn run(
    socket: &UdpSocket,
    remote: SocketAddr,
    shared: &Shared,
    is_media: MediaTest,
    mut relay: RelayFn,
) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let c = &shared.counters;
    let mut failed = false;
    while !shared.stop.load(Ordering::Relaxed) {
        if !readable(socket) {
            continue;
        }
        loop {
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // An ICMP error of an earlier send (port unreachable): the socket goes on.
                Err(_) => break,
            };
            let datagram = &buf[..n];
            if !is_media(datagram) {
                shared.pass((datagram.to_vec(), from));
                continue;
            }
            if failed {
                c.after_error.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if shared.paused.load(Ordering::Relaxed) {
                c.paused_drops.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            c.relayed.fetch_add(1, Ordering::Relaxed);
            match catch_panic(|| relay(datagram)) {
                Ok(out) => {
                    for d in out {
                        match socket.send_to(&d, remote) {
                            Ok(_) => {
                                c.sent.fetch_add(1, Ordering::Relaxed);
                                c.bytes_sent.fetch_add(d.len() as u64, Ordering::Relaxed);
                            }
                            // A full socket buffer or a route gone: the packet is lost, as a
                            // network would lose it; RTP and the peer's jitter buffer cope.
                            Err(_) => {
                                c.send_failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(e) => {
                    failed = true;
                    shared.fail(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    /// A relay on a loopback socket `server`, sending to `peer`, waking through a pipe.
    struct Rig {
        relay: UdpRelay,
        server: UdpSocket,
        peer: UdpSocket,
        wake: OwnedFd,
        _wake_w: OwnedFd, // closed after `relay` (fields drop in order)
    }

    impl Rig {
        fn new(is_media: MediaTest, relay: RelayFn) -> Self {
            let server = UdpSocket::bind("127.0.0.1:0").unwrap();
            server.set_nonblocking(true).unwrap();
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut fds = [0; 2];
            // SAFETY: a two-int array for pipe2(2); both descriptors are owned below.
            assert_eq!(
                unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
                0
            );
            let (wake, wake_w) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let relay = UdpRelay::start(
                server.as_raw_fd(),
                peer.local_addr().unwrap(),
                wake_w.as_raw_fd(),
                is_media,
                relay,
            )
            .unwrap();
            Self {
                relay,
                server,
                peer,
                wake,
                _wake_w: wake_w,
            }
        }

        fn send(&self, datagram: &[u8]) {
            self.peer
                .send_to(datagram, self.server.local_addr().unwrap())
                .unwrap();
        }

        fn recv(&self) -> Vec<u8> {
            let mut buf = [0u8; 64];
            let (n, _) = self.peer.recv_from(&mut buf).unwrap();
            buf[..n].to_vec()
        }

        fn count(&self, name: &str) -> u64 {
            let counts: HashMap<_, _> = self.relay.counts().into_iter().collect();
            counts[name]
        }

        fn wait_count(&self, name: &str, value: u64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.count(name) < value {
                assert!(Instant::now() < deadline, "{name} never reached {value}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn woken(&self) -> bool {
            let mut byte = [0u8; 8];
            // SAFETY: reads into a live buffer from a descriptor this rig owns.
            unsafe { libc::read(self.wake.as_raw_fd(), byte.as_mut_ptr().cast(), 8) >= 1 }
        }
    }

    #[test]
    fn media_relayed_to_the_remote_and_the_rest_passed_with_a_wake_up() {
        let mut rig = Rig::new(
            Box::new(|d| d.first() == Some(&0x80)),
            Box::new(|d| Ok(vec![d.iter().rev().copied().collect(), b"x".to_vec()])),
        );
        rig.send(&[0x80, 1, 2]);
        assert_eq!(rig.recv(), [2, 1, 0x80]);
        assert_eq!(rig.recv(), b"x");
        rig.send(&[0x16, 9]);
        rig.wait_count("passed", 1);
        assert!(rig.woken());
        let from = rig.peer.local_addr().unwrap();
        assert_eq!(rig.relay.take_passed(), vec![(vec![0x16, 9], from)]);
        // the owner may still send on its socket while the thread runs
        rig.server.send_to(b"dtls", from).unwrap();
        assert_eq!(rig.recv(), b"dtls");
        rig.relay.stop();
        assert_eq!(
            (
                rig.count("relayed"),
                rig.count("sent"),
                rig.count("bytes_sent")
            ),
            (1, 2, 4)
        );
        // after stop the owner's socket is intact and readable by the owner again
        rig.send(&[0x80, 5]);
        rig.server.set_nonblocking(false).unwrap();
        rig.server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = rig.server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x80, 5]);
    }

    #[test]
    fn a_failing_or_panicking_relay_stops_relaying_and_says_why() {
        for panics in [false, true] {
            let rig = Rig::new(
                Box::new(|_| true),
                Box::new(move |_| {
                    if panics {
                        panic!("boom");
                    }
                    Err(EngineError::config("no"))
                }),
            );
            rig.send(&[1]);
            rig.wait_count("relayed", 1);
            let deadline = Instant::now() + Duration::from_secs(10);
            while rig.relay.running() {
                assert!(Instant::now() < deadline, "still running");
                std::thread::sleep(Duration::from_millis(5));
            }
            let error = rig.relay.take_error().unwrap().to_string();
            assert!(
                error.contains(if panics { "boom" } else { "no" }),
                "{error}"
            );
            rig.send(&[2]);
            rig.wait_count("after_error", 1);
            assert_eq!(rig.count("relayed"), 1);
        }
    }

    #[test]
    fn paused_media_is_dropped_and_counted() {
        let rig = Rig::new(Box::new(|_| true), Box::new(|d| Ok(vec![d.to_vec()])));
        rig.relay.set_paused(true);
        rig.send(&[1]);
        rig.wait_count("paused_drops", 1);
        rig.relay.set_paused(false);
        rig.send(&[2]);
        assert_eq!(rig.recv(), [2]);
    }

    #[test]
    fn the_queue_for_the_owner_is_bounded() {
        let rig = Rig::new(Box::new(|_| false), Box::new(|_| Ok(vec![])));
        let total = PASSED_MAX + 10;
        for i in 0..total {
            rig.send(&(i as u32).to_be_bytes());
            if i % 64 == 0 {
                // the kernel's socket buffer is bounded too: let the thread keep up
                rig.wait_count("passed", i as u64 + 1);
            }
        }
        rig.wait_count("passed", total as u64);
        let passed = rig.relay.take_passed();
        assert_eq!(passed.len(), PASSED_MAX);
        assert_eq!(rig.count("passed_dropped"), 10);
        assert_eq!(passed[0].0, 10u32.to_be_bytes().to_vec()); // the oldest went
    }
}
