//! The state machine as last applied, shared between the Raft store (its
//! only writer) and the gRPC services and handle (readers).
//!
//! Invariants: the store changes [`Applied`] only through
//! [`SharedState::apply_entry`] and [`SharedState::install`], which publish
//! to the change feed while still holding the write lock, so a reader that
//! takes a snapshot at index N finds every delta after N in the feed (lock
//! order: state, then feed). Locks are `parking_lot` and never held across
//! an `.await`.

use std::sync::Arc;

use openraft::{BasicNode, EntryPayload, LogId, StoredMembership};
use parking_lot::RwLock;

use crate::feed::ChangeFeed;
use crate::state::{Change, ControlState, Response};
use crate::{NodeId, TypeConfig};

/// The replicated state plus what Raft needs to know about it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub state: ControlState,
}

impl Applied {
    pub fn last_applied_index(&self) -> Option<u64> {
        self.last_applied.map(|log_id| log_id.index)
    }
}

pub(crate) struct SharedState {
    applied: RwLock<Applied>,
    feed: ChangeFeed,
}

impl SharedState {
    pub fn new() -> Arc<Self> {
        Arc::new(SharedState { applied: RwLock::new(Applied::default()), feed: ChangeFeed::new() })
    }

    pub fn read<R>(&self, read: impl FnOnce(&Applied) -> R) -> R {
        read(&self.applied.read())
    }

    pub fn feed(&self) -> &ChangeFeed {
        &self.feed
    }

    /// Applies one committed entry and publishes what it changed.
    pub fn apply_entry(&self, entry: openraft::Entry<TypeConfig>) -> Response {
        let mut applied = self.applied.write();
        applied.last_applied = Some(entry.log_id);
        let (response, changes) = match entry.payload {
            EntryPayload::Blank => (Response::Done, Vec::new()),
            EntryPayload::Normal(command) => {
                let _span = tracing::debug_span!("raft_apply", index = entry.log_id.index).entered();
                applied.state.apply(command)
            }
            EntryPayload::Membership(membership) => {
                let members = crate::pb_impl::members_of(&membership);
                applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                (Response::Done, vec![Change::ControlPlaneMembers(members)])
            }
        };
        self.feed.publish(entry.log_id.index, &changes);
        response
    }

    /// Replaces the whole state (a snapshot was installed or loaded); every
    /// watcher behind it gets a fresh snapshot.
    pub fn install(&self, new: Applied) {
        let mut applied = self.applied.write();
        self.feed.reset(new.last_applied_index());
        *applied = new;
    }

    /// A consistent copy of the state, for building a snapshot off the lock.
    pub fn copy(&self) -> Applied {
        self.applied.read().clone()
    }
}
