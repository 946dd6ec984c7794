//! Hibernation: idle plain-TCP connections live without a task.
//!
//! An MQTT connection spends most of its life waiting, and while it waits
//! its tokio task and its socket's reactor registration cost well over a
//! kilobyte. So a connection that has been idle for
//! `mqtt.hibernate_after_ms` (or has done nothing since its CONNACK) gives
//! them up: its socket moves into this module's own epoll set (mio) and its
//! state into a slot of the slab here. It wakes, as a new task with its
//! socket back on the runtime's reactor, when the first of these happens:
//! - the socket becomes readable, or the peer closes it;
//! - a delivery reaches its mailbox, or a control request (takeover,
//!   shutdown) its control slot: the control slot knows the slab slot, and
//!   is the waker the mailbox holds;
//! - its keep-alive deadline passes (a sweep every [`SWEEP_EVERY`]).
//!
//! Invariant: a slot is emptied exactly once, by whichever wake-up takes it
//! first under the slab lock, and a slot's generation changes each time it
//! is filled, so a stale token (an old event, an old waker) wakes nothing
//! and a connection never runs twice. The socket is registered while the
//! slab lock is held, so no event can find its slot still empty.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::connection::Dormant;
use crate::mailbox::Mailbox;
use crate::registry::ControlSlot;

/// How often parked connections are checked for passed deadlines.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Slots checked per hold of the slab lock during a sweep.
const SWEEP_BATCH: usize = 4096;
/// Readiness events taken from the epoll set per call.
const EVENTS_PER_POLL: usize = 1024;

/// One place in the slab, holding a hibernating connection inline: no
/// allocation of its own, so no allocator overhead or fragmentation.
struct Slot {
    generation: u32,
    /// In [`TICK`]s since the hibernator started; `u32::MAX` for none.
    deadline: u32,
    parked: Option<Dormant>,
}

/// Slots per chunk of the slab: as many as fit in 64 KiB, a size that
/// allocators serve without rounding up. The slab grows by whole chunks
/// and never moves a slot, so growing it copies nothing.
const CHUNK: usize = 64 * 1024 / std::mem::size_of::<Slot>();

/// The unit of deadlines in the slab (u32 of them last 13 years).
const TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Slab {
    chunks: Vec<Box<[Slot]>>,
    /// Slots handed out so far (in use or free).
    len: usize,
    free: Vec<u32>,
}

fn token(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

impl Slab {
    fn slot(&self, index: usize) -> Option<&Slot> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// A free slot's index, growing the slab by a chunk if none is free.
    fn reserve(&mut self) -> usize {
        if let Some(index) = self.free.pop() {
            return index as usize;
        }
        if self.len.is_multiple_of(CHUNK) {
            let chunk = (0..CHUNK).map(|_| Slot { generation: 0, deadline: u32::MAX, parked: None });
            self.chunks.push(chunk.collect());
        }
        self.len += 1;
        self.len - 1
    }

    /// Takes the connection of `token` if that slot still holds it.
    fn take(&mut self, token: u64) -> Option<Dormant> {
        let index = (token & u64::from(u32::MAX)) as usize;
        let slot = self.slot_mut(index)?;
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        let parked = slot.parked.take()?;
        self.free.push(index as u32);
        Some(parked)
    }
}

/// The hibernating connections of one broker, and their epoll set.
pub struct Hibernator {
    registry: mio::Registry,
    slab: Mutex<Slab>,
    runtime: Handle,
    epoch: Instant,
    /// Connections hibernating now.
    hibernating: AtomicU64,
    /// Times a connection went into hibernation, since the start.
    hibernations: AtomicU64,
    /// A failure to hibernate was logged.
    warned: AtomicBool,
}

impl std::fmt::Debug for Hibernator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hibernator").field("hibernating", &self.count()).finish()
    }
}

impl Hibernator {
    /// Creates the epoll set and starts the task that watches it, on the
    /// current runtime; the task ends when `shutdown` turns true.
    pub fn start(shutdown: watch::Receiver<bool>) -> io::Result<Arc<Hibernator>> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let runtime = Handle::try_current().map_err(io::Error::other)?;
        // SAFETY: the `Poll` owns its epoll descriptor and the `AsyncFd`
        // owns the `Poll`: the descriptor stays open, and is not reused,
        // for as long as it is registered.
        #[allow(unsafe_code)]
        let watched = unsafe { AsyncFd::register_with_interest(poll, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        let hibernator = Arc::new(Hibernator {
            registry,
            slab: Mutex::new(Slab::default()),
            runtime,
            epoch: Instant::now(),
            hibernating: AtomicU64::new(0),
            hibernations: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        });
        tokio::spawn(watch_events(Arc::downgrade(&hibernator), watched, shutdown));
        Ok(hibernator)
    }

    /// Connections hibernating now.
    pub fn count(&self) -> u64 {
        self.hibernating.load(Ordering::Relaxed)
    }

    /// Times a connection went into hibernation, since the start.
    pub fn hibernations(&self) -> u64 {
        self.hibernations.load(Ordering::Relaxed)
    }

    /// Ticks since the hibernator started, rounded down.
    fn ticks(&self, at: Instant) -> u32 {
        let ticks = at.saturating_duration_since(self.epoch).as_millis() / TICK.as_millis();
        ticks.min(u128::from(u32::MAX - 1)) as u32
    }

    /// Puts `connection` to sleep with its `socket`, to wake by `deadline`
    /// at the latest, leaving a waker with its `mailbox` and `control` slot.
    /// If the socket cannot be watched, the connection goes on awake in a
    /// new task.
    pub(crate) fn hibernate(
        self: &Arc<Self>,
        connection: Dormant,
        deadline: Option<tokio::time::Instant>,
        mailbox: &Mailbox,
        control: &Arc<ControlSlot>,
    ) {
        // Rounded up, so that the sweep never wakes a connection early.
        let deadline = match deadline {
            Some(at) => self.ticks(at.into_std() + TICK),
            None => u32::MAX,
        };
        let Some(fd) = connection.socket().map(AsRawFd::as_raw_fd) else {
            return connection.wake(&self.runtime);
        };
        let mut slab = self.slab.lock();
        let index = slab.reserve();
        let Some(slot) = slab.slot_mut(index) else {
            drop(slab);
            return connection.wake(&self.runtime);
        };
        slot.generation = slot.generation.wrapping_add(1);
        let token = token(index, slot.generation);
        let registered =
            self.registry.register(&mut SourceFd(&fd), mio::Token(token as usize), mio::Interest::READABLE);
        if let Err(error) = registered {
            slab.free.push(index as u32);
            drop(slab);
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(%error, "cannot hibernate connections; they stay awake");
            }
            connection.wake(&self.runtime);
            return;
        }
        slot.deadline = deadline;
        slot.parked = Some(connection);
        self.hibernating.fetch_add(1, Ordering::Relaxed);
        self.hibernations.fetch_add(1, Ordering::Relaxed);
        // The wakers go in before the slot can be taken (the lock is still
        // held): a waker left later could replace that of the task that
        // already woke, which would then miss its wake-ups.
        let pending = control.hibernate(Arc::downgrade(self), token)
            | mailbox.wake_on_push(Waker::from(control.clone()));
        drop(slab);
        if pending {
            self.wake(token);
        }
    }

    /// Wakes the connection of `token`, if it still hibernates there.
    pub(crate) fn wake(&self, token: u64) {
        let Some(connection) = self.slab.lock().take(token) else { return };
        self.hibernating.fetch_sub(1, Ordering::Relaxed);
        if let Some(socket) = connection.socket() {
            let _ = self.registry.deregister(&mut SourceFd(&socket.as_raw_fd()));
        }
        connection.wake(&self.runtime);
    }

    /// Wakes the connections whose deadline has passed (all of them with
    /// `everyone`), holding the slab lock for a chunk of slots at a time.
    fn sweep(&self, everyone: bool) {
        let now = if everyone { u32::MAX } else { self.ticks(Instant::now()) };
        let mut start = 0;
        let mut due = Vec::new();
        loop {
            {
                let slab = self.slab.lock();
                let end = (start + SWEEP_BATCH).min(slab.len);
                for index in start..end {
                    if let Some(slot) = slab.slot(index) {
                        if slot.parked.is_some() && slot.deadline <= now {
                            due.push(token(index, slot.generation));
                        }
                    }
                }
                if end >= slab.len {
                    break;
                }
                start = end;
            }
        }
        for token in due {
            self.wake(token);
        }
    }
}

/// Wakes connections whose sockets turn readable, and sweeps deadlines.
async fn watch_events(
    hibernator: Weak<Hibernator>,
    mut watched: AsyncFd<mio::Poll>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = mio::Events::with_capacity(EVENTS_PER_POLL);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = watched.readable_mut() => {
                let mut guard = match ready {
                    Ok(guard) => guard,
                    Err(error) => {
                        warn!(%error, "hibernation: epoll set failed; waking every connection");
                        if let Some(hibernator) = hibernator.upgrade() {
                            hibernator.sweep(true);
                        }
                        return;
                    }
                };
                loop {
                    match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => {
                            debug!(%error, "hibernation: poll failed");
                            break;
                        }
                    }
                    if events.is_empty() {
                        guard.clear_ready();
                        break;
                    }
                    let Some(hibernator) = hibernator.upgrade() else { return };
                    for event in events.iter() {
                        hibernator.wake(event.token().0 as u64);
                    }
                }
            }
            _ = sweep.tick() => {
                let Some(hibernator) = hibernator.upgrade() else { return };
                hibernator.sweep(false);
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    if let Some(hibernator) = hibernator.upgrade() {
                        hibernator.sweep(true);
                    }
                    return;
                }
            }
        }
    }
}
