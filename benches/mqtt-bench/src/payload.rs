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

/// Sequence numbers above this are not believed: no publisher of a bounded
/// run sends that many messages, so such a stamp was corrupted on the way
/// (and a bitmap for it would take 32 MiB).
pub const MAX_SEQUENCE: u64 = 1 << 28;

/// What one delivery was, for the per-publisher check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A sequence number not seen before and above every one seen before.
    New,
    /// A sequence number not seen before but below one already seen.
    Reordered,
    /// A sequence number already seen: the same message again.
    Duplicate,
    /// A stamp naming no publisher of this run, or an impossible number.
    Corrupt,
}

/// The counts a [`SequenceTracker`] keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SequenceCounts {
    /// Distinct messages delivered (first copies, in or out of order).
    pub delivered: u64,
    /// Copies of a message already delivered.
    pub duplicates: u64,
    /// First copies that came after a message sent later by the same
    /// publisher.
    pub reordered: u64,
    /// Stamps that cannot be from this run.
    pub corrupt: u64,
}

impl SequenceCounts {
    pub fn add(&mut self, other: &SequenceCounts) {
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.corrupt += other.corrupt;
    }
}

/// Per-publisher check at one subscriber. MQTT keeps the order of messages
/// on one topic (at one QoS), and each publisher here has one topic, so a
/// new sequence number lower than the highest seen is a reordering. Which
/// numbers were seen is kept in a bitmap per publisher (sequence numbers
/// are dense from 0), so a repeat is told from a reordering however late it
/// comes: a duplicate is counted apart and not delivered twice.
#[derive(Debug)]
pub struct SequenceTracker {
    publishers: Vec<PublisherSeen>,
    counts: SequenceCounts,
}

#[derive(Debug, Default)]
struct PublisherSeen {
    /// Bit `n % 64` of word `n / 64` is set once sequence number `n` came.
    seen: Vec<u64>,
    /// One past the highest sequence number seen (0: none yet).
    high: u64,
}

impl SequenceTracker {
    pub fn new(publishers: usize) -> SequenceTracker {
        SequenceTracker {
            publishers: (0..publishers).map(|_| PublisherSeen::default()).collect(),
            counts: SequenceCounts::default(),
        }
    }

    /// Records one delivery and says what it was.
    pub fn observe(&mut self, stamp: &Stamp) -> Seen {
        let publisher =
            usize::try_from(stamp.publisher).ok().and_then(|index| self.publishers.get_mut(index));
        let Some(publisher) = publisher.filter(|_| stamp.sequence < MAX_SEQUENCE) else {
            self.counts.corrupt += 1;
            return Seen::Corrupt;
        };
        let sequence = stamp.sequence;
        // Below MAX_SEQUENCE, so the index fits any usize of 32 bits or more.
        let word = (sequence / 64) as usize;
        let bit = 1u64 << (sequence % 64);
        if word >= publisher.seen.len() {
            // `resize` reserves with amortized doubling.
            publisher.seen.resize(word + 1, 0);
        }
        if publisher.seen[word] & bit != 0 {
            self.counts.duplicates += 1;
            return Seen::Duplicate;
        }
        publisher.seen[word] |= bit;
        self.counts.delivered += 1;
        if sequence < publisher.high {
            self.counts.reordered += 1;
            Seen::Reordered
        } else {
            // A jump forward is loss (counted by the totals), not disorder.
            publisher.high = sequence + 1;
            Seen::New
        }
    }

    pub fn counts(&self) -> SequenceCounts {
        self.counts
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

    fn observe_all(tracker: &mut SequenceTracker, publisher: u32, sequences: &[u64]) -> Vec<Seen> {
        sequences
            .iter()
            .map(|&sequence| tracker.observe(&Stamp { publisher, sequence, sent_ns: 0 }))
            .collect()
    }

    #[test]
    fn tracker_tells_duplicates_from_reorderings() {
        use Seen::*;
        let mut tracker = SequenceTracker::new(2);
        let seen = observe_all(&mut tracker, 1, &[0, 1, 2, 5, 6, 6, 3, 7, 3, 0]);
        assert_eq!(seen, vec![New, New, New, New, New, Duplicate, Reordered, New, Duplicate, Duplicate]);
        assert_eq!(
            tracker.counts(),
            SequenceCounts { delivered: 7, duplicates: 3, reordered: 1, corrupt: 0 }
        );
    }

    #[test]
    fn tracker_counts_gaps_as_neither() {
        let mut tracker = SequenceTracker::new(1);
        observe_all(&mut tracker, 0, &[0, 10, 200, 201, 5000]);
        assert_eq!(
            tracker.counts(),
            SequenceCounts { delivered: 5, duplicates: 0, reordered: 0, corrupt: 0 }
        );
    }

    #[test]
    fn tracker_keeps_publishers_apart() {
        let mut tracker = SequenceTracker::new(3);
        observe_all(&mut tracker, 0, &[0, 1, 2]);
        observe_all(&mut tracker, 2, &[0, 1, 2]);
        // Publisher 1 starts late: its first numbers are new, not repeats of 0's.
        observe_all(&mut tracker, 1, &[0, 1, 1]);
        assert_eq!(
            tracker.counts(),
            SequenceCounts { delivered: 8, duplicates: 1, reordered: 0, corrupt: 0 }
        );
    }

    #[test]
    fn tracker_finds_a_duplicate_far_below_the_high_water_mark() {
        let mut tracker = SequenceTracker::new(1);
        let sequences: Vec<u64> = (0..100_000).collect();
        observe_all(&mut tracker, 0, &sequences);
        assert_eq!(observe_all(&mut tracker, 0, &[17, 64, 63, 99_999]), vec![Seen::Duplicate; 4]);
        assert_eq!(tracker.counts().delivered, 100_000);
        assert_eq!(tracker.counts().duplicates, 4);
    }

    #[test]
    fn tracker_counts_impossible_stamps_as_corrupt() {
        let mut tracker = SequenceTracker::new(2);
        assert_eq!(tracker.observe(&Stamp { publisher: 9, sequence: 0, sent_ns: 0 }), Seen::Corrupt);
        assert_eq!(tracker.observe(&Stamp { publisher: 0, sequence: u64::MAX, sent_ns: 0 }), Seen::Corrupt);
        assert_eq!(
            tracker.counts(),
            SequenceCounts { delivered: 0, duplicates: 0, reordered: 0, corrupt: 2 }
        );
    }
}
