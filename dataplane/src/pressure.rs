//! What a publisher is asked to wait for before it sends more: a
//! subscriber's queue past half full (`mailbox`), or a peer link holding
//! more than half of what it may hold (`LinkGauge`, kept by
//! `cluster::peer::outbox`). A publisher's connection waits for each, with a
//! deadline; a queue that does not drain in time, or a link whose node
//! acknowledges nothing in that time, is marked stalled and holds no
//! publisher back until it has drained, so a stuck subscriber or node never
//! stops a publisher for longer than the deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::mailbox::Mailbox;

/// One thing a publisher waits for.
#[derive(Debug, Clone)]
pub enum Pressure {
    Queue(Arc<Mailbox>),
    Link(Arc<LinkGauge>),
}

impl Pressure {
    /// Whether both are the same queue or link.
    pub fn same(&self, other: &Pressure) -> bool {
        match (self, other) {
            (Pressure::Queue(a), Pressure::Queue(b)) => Arc::ptr_eq(a, b),
            (Pressure::Link(a), Pressure::Link(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Adds `self` to `list` unless it is there already.
    pub fn add_to(self, list: &mut Vec<Pressure>) {
        if !list.iter().any(|p| p.same(&self)) {
            list.push(self);
        }
    }

    /// Waits until it drained, or `deadline` (then it may be marked stalled).
    pub async fn wait(&self, deadline: tokio::time::Instant) {
        match self {
            Pressure::Queue(mailbox) => mailbox.wait_drained(deadline).await,
            Pressure::Link(gauge) => gauge.wait_drained(deadline).await,
        }
    }
}

/// How full one peer link is: messages handed to it and not yet
/// acknowledged by its node (or dropped). Pressure starts at `high` and
/// ends once it is back to `low`.
#[derive(Debug)]
pub struct LinkGauge {
    /// The node the link goes to (for logs).
    node: u64,
    pending: AtomicUsize,
    /// Messages settled since the start, to tell a link that moves slowly
    /// from one that does not move.
    settled: AtomicUsize,
    high: usize,
    low: usize,
    pressured: AtomicBool,
    stalled: AtomicBool,
    drained: Notify,
}

impl LinkGauge {
    /// A gauge for a link that holds at most about `limit` messages.
    pub fn new(node: u64, limit: usize) -> LinkGauge {
        LinkGauge {
            node,
            pending: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
            high: (limit / 2).max(1),
            low: limit / 4,
            pressured: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            drained: Notify::new(),
        }
    }

    /// Messages handed to the link and not yet settled.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// One more message; returns whether publishers should now wait.
    pub fn add(&self) -> bool {
        let pending = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        if pending >= self.high && !self.pressured.load(Ordering::Relaxed) {
            self.pressured.store(true, Ordering::Relaxed);
        }
        self.pressured.load(Ordering::Relaxed) && !self.stalled.load(Ordering::Relaxed)
    }

    /// `count` messages settled (acknowledged, or dropped).
    pub fn settle(&self, count: usize) {
        self.settled.fetch_add(count, Ordering::Relaxed);
        let before = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(count)))
            .unwrap_or(0);
        let now = before.saturating_sub(count);
        if now <= self.low && self.pressured.load(Ordering::Relaxed) {
            self.pressured.store(false, Ordering::Relaxed);
            self.stalled.store(false, Ordering::Relaxed);
            self.drained.notify_waiters();
        }
    }

    /// Waits until the link drained to `low`, or `deadline`. A link whose
    /// node acknowledged nothing meanwhile is then marked stalled and holds
    /// no publisher back until it drained; one that moves, however slowly,
    /// keeps holding them back (a link carries many publishers' messages,
    /// so it drains at their subscribers' pace, not at one publisher's).
    pub async fn wait_drained(&self, deadline: tokio::time::Instant) {
        let settled = self.settled.load(Ordering::Relaxed);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.pressured.load(Ordering::Relaxed) || self.stalled.load(Ordering::Relaxed) {
                return;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                if self.settled.load(Ordering::Relaxed) == settled
                    && !self.stalled.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        node = self.node,
                        pending = self.pending(),
                        "peer link acknowledged nothing while publishers waited; they no longer wait for it"
                    );
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_link_presses_from_half_full_to_a_quarter_and_stalls_after_the_deadline() {
        let gauge = Arc::new(LinkGauge::new(2, 8));
        assert!(!gauge.add() && !gauge.add() && !gauge.add());
        assert!(gauge.add(), "4 of 8: half full");
        let waiter = {
            let gauge = gauge.clone();
            tokio::spawn(async move {
                gauge.wait_drained(tokio::time::Instant::now() + Duration::from_secs(5)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        gauge.settle(1);
        assert!(!waiter.is_finished(), "3 is above a quarter");
        gauge.settle(1);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("released at 2").expect("joined");
        assert!(!gauge.add(), "pressure ended at a quarter");
        assert!(gauge.add(), "4 again");
        // Moving, however slowly: still pressing after the deadline.
        let waiter = {
            let gauge = gauge.clone();
            tokio::spawn(async move {
                gauge.wait_drained(tokio::time::Instant::now() + Duration::from_millis(50)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        gauge.settle(1);
        waiter.await.expect("joined");
        assert!(gauge.add(), "a link that moves is not stalled");
        let started = std::time::Instant::now();
        gauge.wait_drained(tokio::time::Instant::now() + Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(40), "waited for the deadline");
        assert!(!gauge.add(), "stalled: holds no publisher back");
        gauge.settle(6);
        assert_eq!(gauge.pending(), 0);
        for _ in 0..3 {
            gauge.add();
        }
        assert!(gauge.add(), "drained, so it presses again");
    }
}
