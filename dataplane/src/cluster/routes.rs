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

/// Moves items from `from` to `to` while `budget` lasts (an item costs its
/// size plus framing); the first item moves whatever its size.
fn move_some<T: std::hash::Hash + Eq + Clone>(
    from: &mut HashSet<T>,
    to: &mut HashSet<T>,
    budget: &mut usize,
    size: impl Fn(&T) -> usize,
) {
    from.retain(|item| {
        if *budget == 0 && !to.is_empty() {
            return true;
        }
        *budget = budget.saturating_sub(size(item) + 8);
        to.insert(item.clone());
        false
    });
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

    /// Takes pending changes worth about `max_bytes` of names (at least
    /// one change), leaving the rest pending: a batch stays below the
    /// control plane's message limit however many filters are pending.
    pub fn take_bounded(&self, max_bytes: usize) -> PendingRoutes {
        let mut pending = self.pending.lock();
        let mut out = PendingRoutes::default();
        let mut budget = max_bytes;
        move_some(&mut pending.remove, &mut out.remove, &mut budget, |f| f.len());
        move_some(&mut pending.add, &mut out.add, &mut budget, |f| f.len());
        let member = |(g, f, c): &ShareMember| g.len() + f.len() + c.len();
        move_some(&mut pending.share_remove, &mut out.share_remove, &mut budget, member);
        move_some(&mut pending.share_add, &mut out.share_add, &mut budget, member);
        out
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

    #[test]
    fn bounded_batches_split_a_large_backlog() {
        let registrar = RouteRegistrar::default();
        for i in 0..10_000 {
            registrar.filter_added(&format!("devices/{i:06}/state/{}", "x".repeat(80)));
        }
        let mut batches = 0;
        let mut total = 0;
        loop {
            let batch = registrar.take_bounded(64 * 1024);
            if batch.is_empty() {
                break;
            }
            let bytes: usize = batch.add.iter().map(|f| f.len() + 8).sum();
            assert!(bytes <= 64 * 1024 + 200, "a batch of {bytes} bytes");
            total += batch.add.len();
            batches += 1;
        }
        assert_eq!(total, 10_000);
        assert!(batches > 10);
    }
}
