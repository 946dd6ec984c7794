//! What a benchmark payload carries, and the checks a subscriber makes on it.
//!
//! A payload of at least [`STAMP_LEN`] bytes starts with a [`Stamp`]: the
//! publisher's number, its sequence number and the send time in nanoseconds
//! since the run's [`Clock`] base, all big-endian, then zero padding up to
//! `--size`. Shorter payloads are plain zeros and carry no stamp, so order
//! and latency cannot be checked for them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::time::Instant;

/// Bytes taken by a stamp: u32 publisher, u64 sequence, u64 send time.
pub const STAMP_LEN: usize = 4 + 8 + 8;

/// The run's common time base, shared by publishers and subscribers.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { base: Instant::now() }
    }

    /// Nanoseconds since the base.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Who sent a message, its place in that sender's sequence, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub sequence: u64,
    pub sent_ns: u64,
}

/// Builds payloads of one size, reusing one buffer's allocation.
#[derive(Debug)]
pub struct PayloadWriter {
    size: usize,
    scratch: BytesMut,
    /// The payload for sizes too small to stamp; cloned, never copied.
    filler: Bytes,
}

impl PayloadWriter {
    pub fn new(size: usize) -> PayloadWriter {
        PayloadWriter { size, scratch: BytesMut::new(), filler: Bytes::from(vec![0u8; size]) }
    }

    /// True when payloads carry a stamp.
    pub fn stamped(&self) -> bool {
        self.size >= STAMP_LEN
    }

    /// A payload carrying `stamp` (or the filler when too small for one).
    pub fn payload(&mut self, stamp: Stamp) -> Bytes {
        if !self.stamped() {
            return self.filler.clone();
        }
        if self.scratch.capacity() < self.size {
            self.scratch.reserve(self.size.max(64 * 1024));
        }
        self.scratch.put_u32(stamp.publisher);
        self.scratch.put_u64(stamp.sequence);
        self.scratch.put_u64(stamp.sent_ns);
        self.scratch.put_bytes(0, self.size - STAMP_LEN);
        self.scratch.split().freeze()
    }
}

/// Reads the stamp at the front of a payload, if it is long enough.
pub fn read_stamp(mut payload: &[u8]) -> Option<Stamp> {
    if payload.len() < STAMP_LEN {
        return None;
    }
    Some(Stamp { publisher: payload.get_u32(), sequence: payload.get_u64(), sent_ns: payload.get_u64() })
}

/// Per-publisher ordering check at one subscriber. MQTT keeps the order of
/// messages on one topic at one QoS, and each publisher here has one topic,
/// so a sequence number at or below one already seen is a duplicate or a
/// reordering.
#[derive(Debug)]
pub struct SequenceTracker {
    /// Next sequence number expected from each publisher.
    next: Vec<u64>,
    out_of_order: u64,
}

impl SequenceTracker {
    pub fn new(publishers: usize) -> SequenceTracker {
        SequenceTracker { next: vec![0; publishers], out_of_order: 0 }
    }

    /// Records one delivery; stamps from unknown publishers are ignored.
    pub fn observe(&mut self, stamp: &Stamp) {
        let Some(next) = usize::try_from(stamp.publisher).ok().and_then(|index| self.next.get_mut(index))
        else {
            return;
        };
        if stamp.sequence < *next {
            self.out_of_order += 1;
        } else {
            // A jump forward is loss (counted by the totals), not disorder.
            *next = stamp.sequence + 1;
        }
    }

    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_pads_to_size() {
        let mut writer = PayloadWriter::new(64);
        let stamp = Stamp { publisher: 3, sequence: 99, sent_ns: 123_456 };
        let payload = writer.payload(stamp);
        assert_eq!(payload.len(), 64);
        assert_eq!(read_stamp(&payload), Some(stamp));
        let next = writer.payload(Stamp { sequence: 100, ..stamp });
        assert_eq!(read_stamp(&next).map(|s| s.sequence), Some(100));
        assert_eq!(read_stamp(&payload), Some(stamp), "earlier payloads are not overwritten");
    }

    #[test]
    fn small_payloads_carry_no_stamp() {
        let mut writer = PayloadWriter::new(8);
        assert!(!writer.stamped());
        let payload = writer.payload(Stamp { publisher: 0, sequence: 0, sent_ns: 0 });
        assert_eq!(payload.len(), 8);
        assert_eq!(read_stamp(&payload), None);
    }

    #[test]
    fn tracker_counts_repeats_and_reorderings_but_not_gaps() {
        let mut tracker = SequenceTracker::new(2);
        for sequence in [0, 1, 2, 5, 6, 6, 3, 7] {
            tracker.observe(&Stamp { publisher: 1, sequence, sent_ns: 0 });
        }
        tracker.observe(&Stamp { publisher: 9, sequence: 0, sent_ns: 0 });
        assert_eq!(tracker.out_of_order(), 2);
    }
}
