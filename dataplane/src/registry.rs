//! The session registry: which client identifiers have a session here, and
//! whether a connection holds it.
//!
//! A session is either held by one live connection (`Online`, reachable
//! through its control channel for a takeover or a kick) or parked
//! (`Offline`, with its state, a pending will and a generation number that
//! the expiry timer checks before it removes the session). The registry lock
//! is held only to look up or swap an entry, never across `.await`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Weak};
use std::task::{Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::hibernate::Hibernator;
use crate::message::Will;
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
    /// Users, bans or ACL rules changed: check the client's access and its
    /// subscriptions again.
    Revalidate,
}

/// A live connection's inbox for control requests. Lighter than a channel
/// (every connection has one): one pending request at a time, a newer one
/// replacing an older one, whose requester then sees its reply dropped.
///
/// While the connection hibernates, the slot knows where: it is then also
/// the waker that its mailbox calls (no allocation per hibernation).
#[derive(Debug, Default)]
pub struct ControlSlot {
    inner: Mutex<SlotInner>,
}

#[derive(Debug, Default)]
struct SlotInner {
    request: Option<Control>,
    /// Whom a request wakes.
    waiter: Waiter,
}

/// Whom a request wakes: the connection's task, or, while it hibernates,
/// its slot in the hibernator (possibly stale once it woke). One field for
/// both keeps a control slot in jemalloc's 64-byte class.
#[derive(Debug, Default)]
enum Waiter {
    #[default]
    None,
    Task(Waker),
    Hibernating(Hibernating),
}

/// Where a hibernating connection sleeps.
#[derive(Debug)]
struct Hibernating {
    hibernator: Weak<Hibernator>,
    token: u64,
}

impl Hibernating {
    fn wake(self) {
        if let Some(hibernator) = self.hibernator.upgrade() {
            hibernator.wake(self.token);
        }
    }
}

impl ControlSlot {
    /// Leaves a request for the connection and wakes it.
    pub fn send(&self, control: Control) {
        self.put(control, true);
    }

    fn put(&self, control: Control, replace: bool) {
        let mut inner = self.inner.lock();
        if !replace && inner.request.is_some() {
            return;
        }
        inner.request = Some(control);
        let waiter = std::mem::take(&mut inner.waiter);
        drop(inner);
        match waiter {
            Waiter::None => {}
            Waiter::Task(waker) => waker.wake(),
            Waiter::Hibernating(hibernating) => hibernating.wake(),
        }
    }

    /// Asks the connection to check its access again, unless a request
    /// is already pending (a takeover or shutdown ends it anyway).
    pub fn revalidate(&self) {
        self.put(Control::Revalidate, false);
    }

    /// Drops a pending request (its requester sees its reply dropped).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.request = None;
        inner.waiter = Waiter::None;
    }

    /// The connection hibernates in `hibernator` under `token`: the next
    /// request (or a call of this slot as a waker) wakes it there. If a
    /// request is already waiting, returns true instead (the caller wakes).
    pub(crate) fn hibernate(&self, hibernator: Weak<Hibernator>, token: u64) -> bool {
        let mut inner = self.inner.lock();
        if inner.request.is_some() {
            return true;
        }
        inner.waiter = Waiter::Hibernating(Hibernating { hibernator, token });
        false
    }

    /// Waits for the next request.
    pub async fn recv(&self) -> Control {
        poll_fn(|cx| {
            let mut inner = self.inner.lock();
            match inner.request.take() {
                Some(control) => Poll::Ready(control),
                None => {
                    // A task that polls is awake: a hibernation left here is stale.
                    if !matches!(&inner.waiter, Waiter::Task(w) if w.will_wake(cx.waker())) {
                        inner.waiter = Waiter::Task(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// A hibernating connection's mailbox wakes it through its control slot.
impl Wake for ControlSlot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let hibernating = {
            let mut inner = self.inner.lock();
            match std::mem::take(&mut inner.waiter) {
                Waiter::Hibernating(hibernating) => Some(hibernating),
                // A task waiting for requests is not woken for deliveries.
                other => {
                    inner.waiter = other;
                    None
                }
            }
        };
        if let Some(hibernating) = hibernating {
            hibernating.wake();
        }
    }
}

/// A will waiting for its delay to pass.
pub type PendingWill = Box<Will>;

/// A registry entry.
#[derive(Debug)]
pub enum Entry {
    Online {
        connection: ConnectionId,
        control: Arc<ControlSlot>,
        /// When the connection came (microseconds since the Unix epoch):
        /// across nodes, the newest connection for a client id wins.
        since: u64,
    },
    /// Boxed, so that an entry (nearly always online) is three words.
    Offline(Box<Parked>),
}

/// A parked session, with the generation its expiry timer checks.
#[derive(Debug)]
pub struct Parked {
    pub state: Box<SessionState>,
    pub generation: u64,
    pub will: Option<PendingWill>,
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
    /// Claims `client_id` for `connection` (that came at `since`) unless a
    /// live connection holds it.
    pub fn claim(
        &self,
        client_id: &Arc<str>,
        connection: ConnectionId,
        control: &Arc<ControlSlot>,
        since: u64,
    ) -> Claim {
        let mut entries = self.entries.lock();
        let online = Entry::Online { connection, control: control.clone(), since };
        match entries.get(client_id) {
            Some(Entry::Online { connection: holder, control: holder_control, .. }) => {
                Claim::Busy { connection: *holder, control: holder_control.clone() }
            }
            Some(Entry::Offline(_)) => match entries.insert(client_id.clone(), online) {
                Some(Entry::Offline(parked)) => Claim::Resumed(parked.state, parked.will),
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
        since: u64,
    ) -> bool {
        let mut entries = self.entries.lock();
        let online = Entry::Online { connection, control: control.clone(), since };
        match entries.get(client_id) {
            Some(Entry::Online { connection: holder, .. }) if *holder == previous => {
                entries.insert(client_id.clone(), online);
                true
            }
            None => {
                entries.insert(client_id.clone(), online);
                true
            }
            _ => false,
        }
    }

    /// When the live connection holding `client_id` came, if one does.
    pub fn online_since(&self, client_id: &str) -> Option<u64> {
        match self.entries.lock().get(client_id) {
            Some(Entry::Online { since, .. }) => Some(*since),
            _ => None,
        }
    }

    /// The live connection holding `client_id`: its id, control slot and
    /// when it came.
    pub fn online_holder(&self, client_id: &str) -> Option<(ConnectionId, Arc<ControlSlot>, u64)> {
        match self.entries.lock().get(client_id) {
            Some(Entry::Online { connection, control, since }) => {
                Some((*connection, control.clone(), *since))
            }
            _ => None,
        }
    }

    /// Every live connection's client id and when it came.
    pub fn online_ids(&self) -> Vec<(Arc<str>, u64)> {
        self.entries
            .lock()
            .iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Online { since, .. } => Some((id.clone(), *since)),
                Entry::Offline(_) => None,
            })
            .collect()
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
        match entries.get(state.client_id()) {
            Some(Entry::Online { connection: holder, .. }) if *holder == connection => {
                let client_id = state.client_id().clone();
                entries.insert(client_id, Entry::Offline(Box::new(Parked { state, generation, will })));
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
            Some(Entry::Offline(parked)) if parked.generation == generation => parked.will.take(),
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
            Some(Entry::Offline(parked)) if parked.generation == generation => {
                match entries.remove(client_id) {
                    Some(Entry::Offline(parked)) => Some((parked.state, parked.will)),
                    _ => None,
                }
            }
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
                Entry::Offline(_) => None,
            })
            .collect()
    }

    /// The parked sessions now, as (client id, generation).
    pub fn parked(&self) -> Vec<(Arc<str>, u64)> {
        self.entries
            .lock()
            .iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Offline(parked) => Some((id.clone(), parked.generation)),
                Entry::Online { .. } => None,
            })
            .collect()
    }

    /// Calls `keep` on the parked session of `client_id` if it is still of
    /// `generation`; removes and returns it if `keep` refuses it (its
    /// pending will is dropped, its timer finds nothing). The lock is held
    /// for this one session only.
    pub fn judge_parked(
        &self,
        client_id: &Arc<str>,
        generation: u64,
        keep: impl FnOnce(&mut SessionState) -> bool,
    ) -> Option<Box<SessionState>> {
        let mut entries = self.entries.lock();
        match entries.get_mut(client_id) {
            Some(Entry::Offline(parked)) if parked.generation == generation => {
                if keep(&mut parked.state) {
                    return None;
                }
            }
            _ => return None,
        }
        match entries.remove(client_id) {
            Some(Entry::Offline(parked)) => Some(parked.state),
            _ => None,
        }
    }

    /// Number of sessions, online and parked.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }
}
