//! The session registry: which client identifiers have a session here, and
//! whether a connection holds it.
//!
//! A session is either held by one live connection (`Online`, reachable
//! through its control channel for a takeover or a kick) or parked
//! (`Offline`, with its state, a pending will and a generation number that
//! the expiry timer checks before it removes the session). The registry lock
//! is held only to look up or swap an entry, never across `.await`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::message::Message;
use crate::session::SessionState;

/// Identifies one network connection.
pub type ConnectionId = u64;

/// A request sent to a live connection.
#[derive(Debug)]
pub enum Control {
    /// Another connection takes this session: send DISCONNECT 0x8E, close,
    /// and hand the session state over.
    TakeOver { reply: oneshot::Sender<Box<SessionState>> },
    /// The server is shutting down: send DISCONNECT 0x8B and close.
    Shutdown,
}

/// A live connection's inbox for control requests. Lighter than a channel
/// (every connection has one): one pending request at a time, a newer one
/// replacing an older one, whose requester then sees its reply dropped.
#[derive(Debug, Default)]
pub struct ControlSlot {
    request: Mutex<Option<Control>>,
    notify: Notify,
}

impl ControlSlot {
    /// Leaves a request for the connection and wakes it.
    pub fn send(&self, control: Control) {
        *self.request.lock() = Some(control);
        self.notify.notify_one();
    }

    /// Drops a pending request (its requester sees its reply dropped).
    pub fn clear(&self) {
        self.request.lock().take();
    }

    /// Waits for the next request.
    pub async fn recv(&self) -> Control {
        loop {
            if let Some(control) = self.request.lock().take() {
                return control;
            }
            self.notify.notified().await;
        }
    }
}

/// A will waiting for its delay to pass.
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub message: Arc<Message>,
}

/// A registry entry.
#[derive(Debug)]
pub enum Entry {
    Online { connection: ConnectionId, control: Arc<ControlSlot> },
    Offline { state: Box<SessionState>, generation: u64, will: Option<PendingWill> },
}

/// Sessions by client identifier.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<HashMap<Arc<str>, Entry>>,
}

/// What a connecting client finds.
#[derive(Debug)]
pub enum Claim {
    /// No session: the caller now holds the entry.
    Fresh,
    /// A parked session, now held by the caller (its pending will, if any).
    Resumed(Box<SessionState>, Option<PendingWill>),
    /// Held by a live connection: ask it to hand over, then claim again.
    Busy { connection: ConnectionId, control: Arc<ControlSlot> },
}

impl Registry {
    /// Claims `client_id` for `connection` unless a live connection holds it.
    pub fn claim(&self, client_id: &Arc<str>, connection: ConnectionId, control: &Arc<ControlSlot>) -> Claim {
        let mut entries = self.entries.lock();
        let online = Entry::Online { connection, control: control.clone() };
        match entries.get(client_id) {
            Some(Entry::Online { connection: holder, control: holder_control }) => {
                Claim::Busy { connection: *holder, control: holder_control.clone() }
            }
            Some(Entry::Offline { .. }) => match entries.insert(client_id.clone(), online) {
                Some(Entry::Offline { state, will, .. }) => Claim::Resumed(state, will),
                _ => Claim::Fresh,
            },
            None => {
                entries.insert(client_id.clone(), online);
                Claim::Fresh
            }
        }
    }

    /// After a takeover: claims the entry if `previous` still holds it.
    pub fn claim_from(
        &self,
        client_id: &Arc<str>,
        previous: ConnectionId,
        connection: ConnectionId,
        control: &Arc<ControlSlot>,
    ) -> bool {
        let mut entries = self.entries.lock();
        match entries.get(client_id) {
            Some(Entry::Online { connection: holder, .. }) if *holder == previous => {
                entries.insert(client_id.clone(), Entry::Online { connection, control: control.clone() });
                true
            }
            None => {
                entries.insert(client_id.clone(), Entry::Online { connection, control: control.clone() });
                true
            }
            _ => false,
        }
    }

    /// Parks a session when its connection ends. Returns false (and gives the
    /// state back) if this connection no longer holds the entry.
    pub fn park(
        &self,
        connection: ConnectionId,
        state: Box<SessionState>,
        generation: u64,
        will: Option<PendingWill>,
    ) -> Result<(), Box<SessionState>> {
        let mut entries = self.entries.lock();
        match entries.get(&state.client_id) {
            Some(Entry::Online { connection: holder, .. }) if *holder == connection => {
                entries.insert(state.client_id.clone(), Entry::Offline { state, generation, will });
                Ok(())
            }
            _ => Err(state),
        }
    }

    /// Removes the entry if `connection` holds it (the session ends with it).
    pub fn release(&self, client_id: &Arc<str>, connection: ConnectionId) {
        let mut entries = self.entries.lock();
        if matches!(entries.get(client_id), Some(Entry::Online { connection: holder, .. }) if *holder == connection)
        {
            entries.remove(client_id);
        }
    }

    /// Takes the pending will of a parked session of this generation.
    pub fn take_will(&self, client_id: &Arc<str>, generation: u64) -> Option<PendingWill> {
        let mut entries = self.entries.lock();
        match entries.get_mut(client_id) {
            Some(Entry::Offline { generation: g, will, .. }) if *g == generation => will.take(),
            _ => None,
        }
    }

    /// Removes a parked session of this generation (it expired).
    pub fn expire(
        &self,
        client_id: &Arc<str>,
        generation: u64,
    ) -> Option<(Box<SessionState>, Option<PendingWill>)> {
        let mut entries = self.entries.lock();
        match entries.get(client_id) {
            Some(Entry::Offline { generation: g, .. }) if *g == generation => match entries.remove(client_id)
            {
                Some(Entry::Offline { state, will, .. }) => Some((state, will)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Control channels of every live connection.
    pub fn online_controls(&self) -> Vec<Arc<ControlSlot>> {
        self.entries
            .lock()
            .values()
            .filter_map(|e| match e {
                Entry::Online { control, .. } => Some(control.clone()),
                Entry::Offline { .. } => None,
            })
            .collect()
    }

    /// Number of sessions, online and parked.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// True when there is no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
