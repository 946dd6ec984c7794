//! A session's bounded queue of deliveries, shared between the publishers
//! that fill it and the connection task that drains it.
//!
//! Invariant: the queue never holds more than its limit; when it is full the
//! configured policy drops a message and the caller counts it. The queue
//! outlives connections: while a persistent session is offline, deliveries
//! wait here and go out in order when the client comes back. Each mailbox
//! has its own lock, held only for a push or a drain, never across `.await`.
//!
//! Back-pressure: once a connected session's queue is half full, every
//! push reports pressure until the queue has drained to a quarter, and each
//! of those publishers' connections waits (bounded) for that before it
//! reads more from its socket, so fast publishers are slowed to their
//! subscribers' pace instead of losing messages. (Pressure that only held
//! above half full let the publishers not yet waiting keep the queue there,
//! so the waiting ones timed out and the queue then overflowed.) A subscriber that does not drain in time is marked stalled and
//! no longer holds publishers back; the queue limit and its policy apply.
//!
//! Wake-ups: the connection leaves a waker (its task's, or the hibernator's
//! while it hibernates); a push takes it and wakes it once. A push with no
//! waker there leaves a pending wake-up for the next look.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use mqtt_codec::QoS;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::QueueFullPolicy;
use crate::message::Delivery;

/// What happened to a pushed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Queued, and an older message was dropped to make room.
    DroppedOldest,
    /// Not queued: the queue was full, or the session is offline and the
    /// message is QoS 0 while QoS 0 is not queued for offline sessions.
    Dropped,
}

/// Limits applied on push.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_len: usize,
    pub policy: QueueFullPolicy,
    pub queue_qos0_offline: bool,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Delivery>,
    online: bool,
    /// Set when publishers waited for this queue in vain; cleared once it drains.
    stalled: bool,
    /// Set when the queue reaches half full; cleared once it drains to a quarter.
    pressured: bool,
    /// Times waiting publishers were released (the queue drained, or the
    /// session went offline), so that a waiter knows it happened.
    releases: u32,
    /// Back-pressure thresholds, from the last push's limits (a `u32`: with
    /// the other small fields it keeps a mailbox in jemalloc's 96-byte class).
    low_water: u32,
    /// Publishers wait for this queue to drain.
    publishers_waiting: bool,
    /// A wake-up is pending for the connection.
    notified: bool,
    /// Who to wake on the next push.
    waker: Option<Waker>,
    /// After the session moved here from another node: deliveries it
    /// already has (message id, through a shared group), refused until the
    /// deadline, so that a copy still on its way is not delivered twice.
    already: Option<Box<Copies>>,
}

/// Deliveries a moved session already has, refused until a deadline.
type Copies = (std::collections::HashSet<(u64, bool)>, std::time::Instant);

impl Inner {
    /// Records a wake-up; returns the waker to call once the lock is released.
    fn signal(&mut self) -> Option<Waker> {
        self.notified = true;
        self.waker.take()
    }
}

/// The queue of one session.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
}

/// Wakes publishers waiting for a queue to drain. One for all queues, so
/// that no mailbox carries one: it is only touched when a queue with
/// waiting publishers drains, and each woken publisher looks at its queue.
static DRAINED: Notify = Notify::const_new();

/// Lets the publishers waiting for this queue go on (the lock is released
/// before they are woken), counting the release so that a waiter that looks
/// late still sees it happened.
fn release_waiters(mut inner: parking_lot::MutexGuard<'_, Inner>) {
    if std::mem::take(&mut inner.publishers_waiting) {
        inner.releases = inner.releases.wrapping_add(1);
        drop(inner);
        DRAINED.notify_waiters();
    }
}

/// The result of a push: what happened, and whether the publisher should
/// wait for this queue to drain before publishing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub outcome: PushOutcome,
    pub pressure: bool,
}

impl Mailbox {
    pub fn new() -> Mailbox {
        Mailbox::default()
    }

    /// Adds a delivery and wakes the connection, applying the limits.
    pub fn push(&self, delivery: Delivery, limits: QueueLimits) -> PushOutcome {
        self.push_with_pressure(delivery, limits).outcome
    }

    /// Like [`Mailbox::push`], also saying whether the publisher should wait.
    pub fn push_with_pressure(&self, delivery: Delivery, limits: QueueLimits) -> Pushed {
        let mut inner = self.inner.lock();
        if let Some(already) = &inner.already {
            if already.1 <= std::time::Instant::now() {
                inner.already = None;
            } else if already.0.contains(&(delivery.message.id, delivery.share.is_some())) {
                // A copy of a delivery the session has: not a drop.
                return Pushed { outcome: PushOutcome::Queued, pressure: false };
            }
        }
        if !inner.online && delivery.qos == QoS::AtMostOnce && !limits.queue_qos0_offline {
            return Pushed { outcome: PushOutcome::Dropped, pressure: false };
        }
        inner.low_water = u32::try_from(limits.max_len / 4).unwrap_or(u32::MAX);
        if inner.queue.len() + 1 >= limits.max_len / 2 {
            inner.pressured = true;
        }
        let pressure = inner.online && !inner.stalled && inner.pressured;
        let mut outcome = PushOutcome::Queued;
        if inner.queue.len() >= limits.max_len {
            match limits.policy {
                QueueFullPolicy::DropNew => return Pushed { outcome: PushOutcome::Dropped, pressure },
                QueueFullPolicy::DropOldest => {
                    let victim = inner.queue.iter().position(|d| d.qos == QoS::AtMostOnce).unwrap_or(0);
                    inner.queue.remove(victim);
                    outcome = PushOutcome::DroppedOldest;
                }
            }
        }
        inner.queue.push_back(delivery);
        let waker = if inner.online { inner.signal() } else { None };
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
        Pushed { outcome, pressure }
    }

    /// Waits until the queue has drained below its low-water mark (now or
    /// at any moment since the wait began: other publishers may have filled
    /// it again before this one got to look), the session goes offline, or
    /// `deadline` passes; in the last case marks the queue stalled, so that
    /// publishers stop waiting for it.
    pub async fn wait_drained(&self, deadline: tokio::time::Instant) {
        let start = self.inner.lock().releases;
        loop {
            let drained = DRAINED.notified();
            {
                let mut inner = self.inner.lock();
                if !inner.online
                    || inner.stalled
                    || inner.releases != start
                    || inner.queue.len() <= inner.low_water as usize
                {
                    return;
                }
                inner.publishers_waiting = true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                self.inner.lock().stalled = true;
                return;
            }
        }
    }

    /// Puts deliveries back at the front, in their order (a redispatch).
    pub fn push_front_all(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for delivery in deliveries.into_iter().rev() {
            inner.queue.push_front(delivery);
        }
        let waker = inner.signal();
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves deliveries into `out` in order, stopping before the first QoS 1
    /// or 2 delivery once `window` of them have been taken, or after `max`.
    pub fn drain_into(&self, out: &mut Vec<Delivery>, mut window: usize, max: usize) {
        let mut inner = self.inner.lock();
        while out.len() < max {
            match inner.queue.front() {
                None => break,
                Some(front) if front.qos != QoS::AtMostOnce => {
                    if window == 0 {
                        break;
                    }
                    window -= 1;
                }
                Some(_) => {}
            }
            if let Some(delivery) = inner.queue.pop_front() {
                out.push(delivery);
            }
        }
        if inner.queue.len() <= inner.low_water as usize {
            inner.stalled = false;
            inner.pressured = false;
            release_waiters(inner);
        }
    }

    /// Refuses, until `until`, deliveries of the messages in `ids` (message
    /// id, through a shared group) that the session already has.
    pub fn refuse_copies(&self, ids: std::collections::HashSet<(u64, bool)>, until: std::time::Instant) {
        self.inner.lock().already = (!ids.is_empty()).then(|| Box::new((ids, until)));
    }

    /// Takes every queued delivery out (the session is going away).
    pub fn take_all(&self) -> Vec<Delivery> {
        self.inner.lock().queue.drain(..).collect()
    }

    /// Marks the session online or offline.
    pub fn set_online(&self, online: bool) {
        let mut inner = self.inner.lock();
        inner.online = online;
        if online {
            let waker = inner.signal();
            drop(inner);
            if let Some(waker) = waker {
                waker.wake();
            }
        } else {
            inner.waker = None;
            release_waiters(inner);
        }
    }

    /// True while a connection is attached to the session.
    pub fn is_online(&self) -> bool {
        self.inner.lock().online
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until something is pushed (or a wake-up was already pending).
    pub async fn notified(&self) {
        poll_fn(|cx| self.poll_notified(cx)).await
    }

    /// Ready, consuming it, if a wake-up is pending; otherwise leaves the
    /// task's waker for the next push.
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if std::mem::take(&mut inner.notified) {
            return Poll::Ready(());
        }
        if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Leaves `waker` for the next push (a hibernating connection). If a
    /// wake-up is already pending, returns true instead (the caller wakes).
    pub fn wake_on_push(&self, waker: Waker) -> bool {
        let mut inner = self.inner.lock();
        // A wake-up with nothing queued is stale: the connection has seen it all.
        if std::mem::take(&mut inner.notified) && !inner.queue.is_empty() {
            return true;
        }
        inner.waker = Some(waker);
        false
    }

    /// Wakes the connection without pushing (e.g. the window opened).
    pub fn wake(&self) {
        let waker = self.inner.lock().signal();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::Message;

    fn delivery(qos: QoS, n: u8) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                id: crate::message::next_id(),
                topic: "t".into(),
                payload: bytes::Bytes::from(vec![n]),
                qos,
                retain: false,
                properties: Default::default(),
                publisher: None,
                expires_at: None,
            }),
            qos,
            retain: false,
            subscription_ids: vec![],
            share: None,
        }
    }

    fn limits(max_len: usize, policy: QueueFullPolicy) -> QueueLimits {
        QueueLimits { max_len, policy, queue_qos0_offline: false }
    }

    #[test]
    fn full_queue_drops_oldest_qos0_first() {
        let mailbox = Mailbox::new();
        mailbox.set_online(true);
        let l = limits(3, QueueFullPolicy::DropOldest);
        mailbox.push(delivery(QoS::AtLeastOnce, 1), l);
        mailbox.push(delivery(QoS::AtMostOnce, 2), l);
        mailbox.push(delivery(QoS::AtLeastOnce, 3), l);
        assert_eq!(mailbox.push(delivery(QoS::AtLeastOnce, 4), l), PushOutcome::DroppedOldest);
        let payloads: Vec<u8> = mailbox.take_all().iter().map(|d| d.message.payload[0]).collect();
        assert_eq!(payloads, vec![1, 3, 4]);
    }

    #[test]
    fn full_queue_drop_new_keeps_old() {
        let mailbox = Mailbox::new();
        mailbox.set_online(true);
        let l = limits(1, QueueFullPolicy::DropNew);
        assert_eq!(mailbox.push(delivery(QoS::AtLeastOnce, 1), l), PushOutcome::Queued);
        assert_eq!(mailbox.push(delivery(QoS::AtLeastOnce, 2), l), PushOutcome::Dropped);
        assert_eq!(mailbox.len(), 1);
    }

    #[test]
    fn offline_qos0_is_dropped_unless_configured() {
        let mailbox = Mailbox::new();
        let l = limits(10, QueueFullPolicy::DropOldest);
        assert_eq!(mailbox.push(delivery(QoS::AtMostOnce, 1), l), PushOutcome::Dropped);
        assert_eq!(mailbox.push(delivery(QoS::AtLeastOnce, 2), l), PushOutcome::Queued);
    }

    #[test]
    fn drain_respects_the_window_but_not_for_qos0() {
        let mailbox = Mailbox::new();
        mailbox.set_online(true);
        let l = limits(10, QueueFullPolicy::DropOldest);
        for (i, qos) in
            [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::ExactlyOnce, QoS::AtMostOnce].iter().enumerate()
        {
            mailbox.push(delivery(*qos, i as u8), l);
        }
        let mut out = Vec::new();
        mailbox.drain_into(&mut out, 1, 100);
        assert_eq!(out.len(), 2);
        assert_eq!(mailbox.len(), 2);
    }

    #[tokio::test]
    async fn pressure_holds_until_the_queue_drains_to_a_quarter() {
        let mailbox = Mailbox::new();
        mailbox.set_online(true);
        let l = limits(100, QueueFullPolicy::DropOldest);
        for n in 0..49 {
            assert!(!mailbox.push_with_pressure(delivery(QoS::AtMostOnce, n), l).pressure);
        }
        assert!(mailbox.push_with_pressure(delivery(QoS::AtMostOnce, 49), l).pressure, "half full");
        let mut out = Vec::new();
        mailbox.drain_into(&mut out, 0, 10);
        // Below half full but above a quarter: still pressure, for every
        // publisher, so that those not yet waiting do not keep it filled.
        assert!(mailbox.push_with_pressure(delivery(QoS::AtMostOnce, 50), l).pressure);
        out.clear();
        mailbox.drain_into(&mut out, 0, 20);
        assert_eq!(mailbox.len(), 21);
        assert!(!mailbox.push_with_pressure(delivery(QoS::AtMostOnce, 51), l).pressure, "drained");
    }

    #[tokio::test]
    async fn a_drain_releases_a_waiter_even_if_the_queue_refills_before_it_looks() {
        let mailbox = Arc::new(Mailbox::new());
        mailbox.set_online(true);
        let l = limits(100, QueueFullPolicy::DropOldest);
        for n in 0..60 {
            mailbox.push_with_pressure(delivery(QoS::AtMostOnce, n), l);
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let waiter = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.wait_drained(deadline).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // The subscriber drains to a quarter, and other publishers refill
        // it before the waiter runs again.
        let mut out = Vec::new();
        mailbox.drain_into(&mut out, 0, 40);
        for n in 0..30 {
            mailbox.push_with_pressure(delivery(QoS::AtMostOnce, n), l);
        }
        let released = tokio::time::timeout(std::time::Duration::from_millis(500), waiter).await;
        assert!(released.is_ok(), "the waiter missed the drain and waits for its deadline");
        assert!(!mailbox.inner.lock().stalled, "a queue that drained is not stalled");
    }
}
