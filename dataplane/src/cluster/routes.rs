//! Route registration: which topic filters this node has local subscribers
//! for, told to the control plane in batches.
//!
//! Changes are coalesced in a pending set (a filter added then removed
//! before the next batch cancels out), so a burst of 100,000 subscribes is
//! a handful of `RegisterRoutes` calls. The pending set is bounded by the
//! number of distinct filters, not by the number of subscribe packets.

use std::collections::HashSet;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// A shared-subscription member: (group, filter, client id).
pub type ShareMember = (String, String, String);

/// Route changes not yet sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PendingRoutes {
    pub add: HashSet<String>,
    pub remove: HashSet<String>,
    pub share_add: HashSet<ShareMember>,
    pub share_remove: HashSet<ShareMember>,
}

impl PendingRoutes {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.share_add.is_empty()
            && self.share_remove.is_empty()
    }
}

/// Collects route changes for the link to send.
#[derive(Debug, Default)]
pub struct RouteRegistrar {
    pending: Mutex<PendingRoutes>,
    notify: Notify,
}

fn toggle<T: std::hash::Hash + Eq + Clone>(gain: &mut HashSet<T>, loss: &mut HashSet<T>, item: &T) {
    if !loss.remove(item) {
        gain.insert(item.clone());
    }
}

impl RouteRegistrar {
    /// The first local subscriber to `filter` appeared.
    pub fn filter_added(&self, filter: &str) {
        let mut pending = self.pending.lock();
        let pending = &mut *pending;
        toggle(&mut pending.add, &mut pending.remove, &filter.to_string());
        self.notify.notify_one();
    }

    /// The last local subscriber to `filter` left.
    pub fn filter_removed(&self, filter: &str) {
        let mut pending = self.pending.lock();
        let pending = &mut *pending;
        toggle(&mut pending.remove, &mut pending.add, &filter.to_string());
        self.notify.notify_one();
    }

    /// A client joined a shared-subscription group.
    pub fn share_joined(&self, member: ShareMember) {
        let mut pending = self.pending.lock();
        let pending = &mut *pending;
        toggle(&mut pending.share_add, &mut pending.share_remove, &member);
        self.notify.notify_one();
    }

    /// A client left a shared-subscription group.
    pub fn share_left(&self, member: ShareMember) {
        let mut pending = self.pending.lock();
        let pending = &mut *pending;
        toggle(&mut pending.share_remove, &mut pending.share_add, &member);
        self.notify.notify_one();
    }

    /// Takes what is pending.
    pub fn take(&self) -> PendingRoutes {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts back a batch that could not be sent, under newer changes.
    pub fn put_back(&self, batch: PendingRoutes) {
        let mut guard = self.pending.lock();
        let newer = std::mem::replace(&mut *guard, batch);
        let pending = &mut *guard;
        for filter in newer.add {
            toggle(&mut pending.add, &mut pending.remove, &filter);
        }
        for filter in newer.remove {
            toggle(&mut pending.remove, &mut pending.add, &filter);
        }
        for member in newer.share_add {
            toggle(&mut pending.share_add, &mut pending.share_remove, &member);
        }
        for member in newer.share_remove {
            toggle(&mut pending.share_remove, &mut pending.share_add, &member);
        }
    }

    /// Waits until something is pending.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opposite_changes_cancel_and_retries_merge() {
        let registrar = RouteRegistrar::default();
        registrar.filter_added("a");
        registrar.filter_added("b");
        registrar.filter_removed("a");
        let batch = registrar.take();
        assert_eq!(batch.add, HashSet::from(["b".to_string()]));
        assert!(batch.remove.is_empty());
        registrar.filter_removed("b");
        registrar.put_back(batch);
        assert!(registrar.take().is_empty(), "b added then removed while the batch was out");
    }
}
