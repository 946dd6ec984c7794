//! The change feed: the recent deltas, in memory, for Watch streams.
//!
//! Each applied entry that changed something a data-plane node needs becomes
//! one `StateDelta` (converted to protobuf once, shared by `Arc` among all
//! watchers). The feed keeps the last [`CHANGE_LOG_CAPACITY`] deltas, and
//! no more than [`CHANGE_LOG_CHANGES`] changes in all (a delta of a route
//! batch holds thousands): a watcher resuming from index N gets the deltas
//! after N if they are all still held, else a full snapshot. Memory is
//! bounded by those two whatever the number or speed of watchers; a slow
//! watcher only holds its cursor, and when it falls off the end it is sent
//! a snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use proto::controlplane as pb;
use tokio::sync::watch;

use crate::state::Change;

/// How many deltas stay in memory for resuming watchers.
pub(crate) const CHANGE_LOG_CAPACITY: usize = 4096;

/// How many changes the deltas in memory hold at most, in all (about 90
/// bytes each for a route); the newest delta stays whatever its size.
pub(crate) const CHANGE_LOG_CHANGES: usize = 65_536;

/// What a watcher at some index should be sent next.
#[derive(Debug)]
pub(crate) enum Since {
    /// The deltas after the cursor (possibly none yet), in index order.
    Deltas(Vec<Arc<pb::StateDelta>>),
    /// The deltas after the cursor are no longer all held: send a snapshot.
    Snapshot,
}

struct Ring {
    deltas: VecDeque<Arc<pb::StateDelta>>,
    /// The changes `deltas` hold, in all.
    changes: usize,
    /// Every delta with an index above `floor` is in `deltas` (`None`: every
    /// delta since the first entry).
    floor: Option<u64>,
    /// The last applied index.
    applied: Option<u64>,
}

pub(crate) struct ChangeFeed {
    ring: Mutex<Ring>,
    /// Bumped on every publish or reset, to wake watchers.
    version: watch::Sender<u64>,
}

impl ChangeFeed {
    pub fn new() -> Self {
        ChangeFeed {
            ring: Mutex::new(Ring { deltas: VecDeque::new(), changes: 0, floor: None, applied: None }),
            version: watch::Sender::new(0),
        }
    }

    /// Records that `index` was applied, with its changes (maybe none).
    pub fn publish(&self, index: u64, changes: &[Change]) {
        {
            let mut ring = self.ring.lock();
            ring.applied = Some(index);
            if !changes.is_empty() {
                let delta = pb::StateDelta { index, changes: changes.iter().map(Into::into).collect() };
                ring.changes += delta.changes.len();
                ring.deltas.push_back(Arc::new(delta));
                while ring.deltas.len() > CHANGE_LOG_CAPACITY
                    || (ring.changes > CHANGE_LOG_CHANGES && ring.deltas.len() > 1)
                {
                    let Some(evicted) = ring.deltas.pop_front() else { break };
                    ring.changes -= evicted.changes.len();
                    ring.floor = Some(evicted.index);
                }
            }
        }
        self.version.send_modify(|version| *version += 1);
    }

    /// Forgets every delta: the state jumped to `index` (snapshot install or
    /// load), and only a snapshot can bring a watcher there.
    pub fn reset(&self, index: Option<u64>) {
        {
            let mut ring = self.ring.lock();
            ring.deltas.clear();
            ring.changes = 0;
            ring.floor = index;
            ring.applied = index;
        }
        self.version.send_modify(|version| *version += 1);
    }

    /// What a watcher that holds the state as of `cursor` needs next.
    pub fn since(&self, cursor: Option<u64>) -> Since {
        let ring = self.ring.lock();
        let behind_floor = match (ring.floor, cursor) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(floor), Some(cursor)) => cursor < floor,
        };
        // A cursor past what this member applied comes from elsewhere (another
        // member, or another history): only a snapshot is sure to be right.
        let ahead = match (ring.applied, cursor) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(applied), Some(cursor)) => cursor > applied,
        };
        if behind_floor || ahead {
            return Since::Snapshot;
        }
        let deltas = ring
            .deltas
            .iter()
            .filter(|delta| cursor.is_none_or(|cursor| delta.index > cursor))
            .cloned()
            .collect();
        Since::Deltas(deltas)
    }

    /// A receiver that changes whenever the feed does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Vec<Change> {
        vec![Change::UserRemoved("u".into())]
    }

    fn indexes(since: Since) -> Vec<u64> {
        match since {
            Since::Deltas(deltas) => deltas.iter().map(|d| d.index).collect(),
            Since::Snapshot => panic!("expected deltas"),
        }
    }

    #[test]
    fn resume_from_cursor() {
        let feed = ChangeFeed::new();
        feed.publish(0, &change());
        feed.publish(1, &[]);
        feed.publish(2, &change());
        assert_eq!(indexes(feed.since(None)), vec![0, 2]);
        assert_eq!(indexes(feed.since(Some(0))), vec![2]);
        assert_eq!(indexes(feed.since(Some(2))), Vec::<u64>::new());
        assert!(matches!(feed.since(Some(3)), Since::Snapshot), "ahead of this member");
    }

    #[test]
    fn slow_watcher_falls_off_and_gets_snapshot() {
        let feed = ChangeFeed::new();
        for index in 0..(CHANGE_LOG_CAPACITY as u64 + 10) {
            feed.publish(index, &change());
        }
        assert!(matches!(feed.since(Some(5)), Since::Snapshot));
        assert!(matches!(feed.since(None), Since::Snapshot));
        assert_eq!(
            indexes(feed.since(Some(CHANGE_LOG_CAPACITY as u64 + 8))),
            vec![CHANGE_LOG_CAPACITY as u64 + 9]
        );
    }

    #[test]
    fn large_deltas_are_bounded_by_their_changes() {
        let feed = ChangeFeed::new();
        let batch: Vec<Change> =
            (0..CHANGE_LOG_CHANGES / 4).map(|k| Change::UserRemoved(format!("u{k}"))).collect();
        for index in 0..6 {
            feed.publish(index, &batch);
        }
        // Four batches fill the budget: the two oldest are gone.
        assert!(matches!(feed.since(Some(0)), Since::Snapshot));
        assert_eq!(indexes(feed.since(Some(1))), vec![2, 3, 4, 5]);
        // One delta larger than the budget is still held, alone.
        let huge: Vec<Change> =
            (0..CHANGE_LOG_CHANGES + 1).map(|k| Change::UserRemoved(format!("u{k}"))).collect();
        feed.publish(6, &huge);
        assert_eq!(indexes(feed.since(Some(5))), vec![6]);
        assert!(matches!(feed.since(Some(4)), Since::Snapshot));
    }

    #[test]
    fn reset_forces_snapshot_for_older_cursors() {
        let feed = ChangeFeed::new();
        feed.publish(1, &change());
        feed.reset(Some(10));
        assert!(matches!(feed.since(Some(1)), Since::Snapshot));
        assert_eq!(indexes(feed.since(Some(10))), Vec::<u64>::new());
    }
}
