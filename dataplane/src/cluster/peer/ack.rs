//! `RemoteAck`: what a publisher's acknowledgement waits for when its
//! message went to other nodes.
//!
//! One per forwarded QoS 1 or 2 message, shared by the peer links it went
//! to. Each link settles its share once: accepted (the node put it in its
//! subscribers' queues), released (the node is known to be down, or did not
//! answer within `dataplane.peer_ack_timeout_ms`), or refused (this node's
//! buffer for that peer was full). The last one to settle wakes the
//! publisher's connection, which then sends the PUBACK or PUBCOMP.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::mailbox::Mailbox;

/// The remote nodes a publisher's acknowledgement still waits for.
#[derive(Debug)]
pub struct RemoteAck {
    remaining: AtomicUsize,
    refused: AtomicBool,
    /// The publisher's queue: waking it runs its connection's loop.
    publisher: Arc<Mailbox>,
}

impl RemoteAck {
    /// Waits for `nodes` links; wakes `publisher` when all settled.
    pub fn new(nodes: usize, publisher: Arc<Mailbox>) -> Arc<RemoteAck> {
        Arc::new(RemoteAck { remaining: AtomicUsize::new(nodes), refused: AtomicBool::new(false), publisher })
    }

    /// One node settled (accepted, or released as down or late).
    pub fn settle(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.publisher.wake();
        }
    }

    /// One node could not be given the message (its buffer here was full).
    pub fn refuse(&self) {
        self.refused.store(true, Ordering::Release);
        self.settle();
    }

    /// Every node settled.
    pub fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// A node could not be given the message.
    pub fn was_refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_after_every_node_settles_and_refusal_sticks() {
        let ack = RemoteAck::new(2, Arc::new(Mailbox::new()));
        assert!(!ack.is_done());
        ack.settle();
        assert!(!ack.is_done());
        ack.refuse();
        assert!(ack.is_done() && ack.was_refused());
    }
}
