//! The adaptive audio jitter buffer, a line-by-line port of
//! `stream.transport._aiortc.AdaptiveAudioJitterBuffer` (same decisions, same counts).
//!
//! Each packet is handed on as soon as it is the next in sequence. A packet that arrives ahead of
//! a missing one is held; the gap is waited for until `depth` newer packets are held, then
//! skipped as lost. When a late packet fills a gap, the packets it released go out one per
//! arrival, so the buffer has grown by that many packets; after `shrink_after` packets in a row
//! with a backlog it drops one to shrink again.

use crate::dsp::{EngineError, Result};

/// aiortc's `uint16_gte(a, b)`: `a` is `b` or comes after it (serial number arithmetic).
fn uint16_gte(a: u16, b: u16) -> bool {
    a == b || (a < b && b - a > 0x8000) || (a > b && a - b < 0x8000)
}

/// What one `add` did besides handing a packet on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added<T> {
    /// The packet handed on, if any.
    pub out: Option<T>,
    /// Packets given up as lost by this call (they come right before `out`).
    pub skipped: u16,
}

/// The buffer; `T` is what is held for a packet.
pub struct JitterBuffer<T> {
    pub capacity: u16,
    pub depth: u16,
    pub shrink_after: u32,
    /// Held packets by `seq % capacity`: all lie in `next .. next + capacity`.
    held: Vec<Option<T>>,
    count: usize,
    next: Option<u16>,
    steady: u32,
    /// Packets given up as lost.
    pub skipped: u64,
    /// Packets dropped to shrink the backlog.
    pub dropped: u64,
    /// Packets that came after their turn was given up.
    pub late: u64,
}

impl<T> JitterBuffer<T> {
    /// `capacity` a power of two (so slots follow the 16-bit sequence wrap); `depth` in
    /// `0..=capacity / 2`.
    pub fn new(depth: u32, capacity: u16, shrink_after: u32) -> Result<Self> {
        debug_assert!(capacity.is_power_of_two());
        if depth > u32::from(capacity / 2) {
            return Err(EngineError::config(format!(
                "jitter_depth must be in 0..{}, got {depth}",
                capacity / 2
            )));
        }
        Ok(Self {
            capacity,
            depth: depth as u16,
            shrink_after,
            held: (0..capacity).map(|_| None).collect(),
            count: 0,
            next: None,
            steady: 0,
            skipped: 0,
            dropped: 0,
            late: 0,
        })
    }

    /// Packets held now (waiting for a missing one, or a backlog).
    pub fn held(&self) -> usize {
        self.count
    }

    fn slot(&self, seq: u16) -> usize {
        usize::from(seq % self.capacity)
    }

    fn holds(&self, seq: u16) -> bool {
        self.held[self.slot(seq)].is_some()
    }

    fn clear(&mut self) {
        self.held.iter_mut().for_each(|h| *h = None);
        self.count = 0;
    }

    /// The held sequence number nearest after `next` (the buffer holds at least one).
    fn nearest(&self, next: u16) -> u16 {
        (0..self.capacity)
            .map(|d| next.wrapping_add(d))
            .find(|&s| self.holds(s))
            .expect("a held packet")
    }

    /// Packets in sequence from `next` on.
    fn backlog(&self, next: u16) -> u16 {
        let mut n = 0;
        while n < self.capacity && self.holds(next.wrapping_add(n)) {
            n += 1;
        }
        n
    }

    fn pop(&mut self) -> T {
        let next = self.next.expect("started");
        let slot = self.slot(next);
        self.count -= 1;
        self.next = Some(next.wrapping_add(1));
        self.held[slot].take().expect("the next packet is held")
    }

    /// Takes one arriving packet; hands on at most one.
    pub fn add(&mut self, seq: u16, packet: T) -> Added<T> {
        let mut added = Added {
            out: None,
            skipped: 0,
        };
        let next = match self.next {
            None => {
                self.next = Some(seq);
                seq
            }
            Some(next) if !uint16_gte(seq, next) => {
                self.late += 1;
                return added; // older than what was handed on: too late
            }
            Some(next) => next,
        };
        if seq.wrapping_sub(next) >= self.capacity {
            // a jump: start over from here
            self.clear();
            self.next = Some(seq);
        }
        let slot = self.slot(seq);
        if self.held[slot].replace(packet).is_none() {
            self.count += 1;
        }
        let next = self.next.expect("started");
        if !self.holds(next) && self.count >= usize::from(self.depth.max(1)) {
            let nearest = self.nearest(next);
            added.skipped = nearest.wrapping_sub(next);
            self.skipped += u64::from(added.skipped);
            self.next = Some(nearest);
        }
        let next = self.next.expect("started");
        if !self.holds(next) {
            return added;
        }
        if self.backlog(next) > 1 {
            self.steady += 1;
            if self.steady >= self.shrink_after {
                self.steady = 0;
                self.pop();
                self.dropped += 1;
            }
        } else {
            self.steady = 0;
        }
        added.out = Some(self.pop());
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(buffer: &mut JitterBuffer<u16>, order: &[u16]) -> Vec<u16> {
        order
            .iter()
            .filter_map(|&seq| buffer.add(seq, seq).out)
            .collect()
    }

    // The cases of tests/webrtc/test_units.py, against the Python buffer.
    #[test]
    fn in_order_packets_pass_at_once_across_the_wrap() {
        let order: Vec<u16> = (65530..65546u32).map(|s| s as u16).collect();
        assert_eq!(
            run(&mut JitterBuffer::new(3, 16, 250).unwrap(), &order),
            order
        );
    }

    #[test]
    fn reorders_and_skips_losses() {
        let mut buffer = JitterBuffer::new(2, 16, 250).unwrap();
        assert_eq!(run(&mut buffer, &[0, 2, 1, 3]), [0, 1, 2]);
        let mut buffer = JitterBuffer::new(2, 16, 250).unwrap();
        assert_eq!(run(&mut buffer, &[0, 2, 3, 4, 5]), [0, 2, 3, 4]);
        assert_eq!(buffer.skipped, 1);
        assert_eq!(run(&mut buffer, &[1]), Vec::<u16>::new());
        assert_eq!(buffer.late, 1);
    }

    #[test]
    fn shrinks_its_backlog() {
        let mut buffer = JitterBuffer::new(2, 16, 5).unwrap();
        let order: Vec<u16> = [0, 2, 1].into_iter().chain(3..12).collect();
        let out = run(&mut buffer, &order);
        assert_eq!(buffer.dropped, 1);
        assert_eq!(out.last(), Some(&11));
    }

    #[test]
    fn a_jump_starts_over_and_depth_zero_skips_at_once() {
        let mut buffer = JitterBuffer::new(3, 16, 250).unwrap();
        assert_eq!(run(&mut buffer, &[10, 11, 40, 41]), [10, 11, 40, 41]);
        assert_eq!((buffer.skipped, buffer.late), (0, 0));
        let mut buffer = JitterBuffer::new(0, 16, 250).unwrap();
        let added = {
            buffer.add(5, 5);
            buffer.add(8, 8)
        };
        assert_eq!(
            added,
            Added {
                out: Some(8),
                skipped: 2
            }
        );
        assert!(JitterBuffer::<u16>::new(9, 16, 250).is_err());
    }
}
