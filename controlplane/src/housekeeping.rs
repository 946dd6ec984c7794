//! Leader housekeeping: makes the cluster's peer secret if there is none
//! yet, marks data-plane nodes down when their heartbeats stop, removes them
//! (with their routes and shared-subscription memberships) after the grace
//! period, and drops expired bans.
//!
//! It runs on every member but acts only while that member leads (on every
//! tick, and at once when it becomes leader), and it only proposes
//! commands: the decisions are replayed deterministically by every replica.
//! Each command names the state it expects (last heartbeat, down-since time;
//! the peer secret is set only if still unset), so a heartbeat that lands in
//! between, or a secret another leader set first, wins. The peer secret is
//! never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::applied::SharedState;
use crate::credentials::generate_token;
use crate::state::{Command, DataPlaneState, Response};
use crate::writer::Writer;
use crate::{NodeId, Raft};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0)
}

pub(crate) struct Housekeeping {
    pub node_id: NodeId,
    pub raft: Raft,
    pub shared: std::sync::Arc<SharedState>,
    pub writer: Writer,
    pub down_after: Duration,
    pub grace_period: Duration,
}

impl Housekeeping {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let period = (self.down_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut metrics = self.raft.metrics();
        let mut was_leader = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Act at once on becoming leader, not on every other
                    // metrics change (each applied entry is one).
                    let leads = metrics.borrow_and_update().current_leader == Some(self.node_id);
                    let became_leader = leads && !was_leader;
                    was_leader = leads;
                    if !became_leader {
                        continue;
                    }
                }
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            let leads = self.raft.metrics().borrow().current_leader == Some(self.node_id);
            was_leader = leads;
            if !leads {
                continue;
            }
            self.ensure_peer_secret().await;
            let commands = self.due(now_ms());
            if commands.is_empty() {
                continue;
            }
            tracing::info!(commands = commands.len(), "housekeeping: expiring data-plane nodes or bans");
            if let Err(error) = self.writer.write(Command::Batch(commands)).await {
                tracing::warn!(%error, "housekeeping write failed; will retry");
            }
        }
    }

    /// Proposes a new random peer secret if the applied state has none. Only
    /// if still unset when applied: a secret another leader set first stays.
    async fn ensure_peer_secret(&self) {
        if self.shared.read(|applied| applied.state.peer_secret().is_some()) {
            return;
        }
        // 32 bytes from the OS, as 64 lowercase hex digits.
        let command = Command::SetPeerSecret { secret: generate_token(), only_if_unset: true };
        match self.writer.write(command).await {
            Ok((index, Response::Done)) => {
                tracing::info!(index, "housekeeping: the cluster's peer secret is set")
            }
            Ok((_, response)) => tracing::warn!(?response, "the peer secret was refused; will retry"),
            Err(error) => tracing::warn!(%error, "proposing the peer secret failed; will retry"),
        }
    }

    /// The commands due at `now`.
    fn due(&self, now: u64) -> Vec<Command> {
        let down_after = self.down_after.as_millis() as u64;
        let grace = self.grace_period.as_millis() as u64;
        self.shared.read(|applied| {
            let mut commands = Vec::new();
            for node in applied.state.dataplane_nodes() {
                match node.state {
                    DataPlaneState::Up if now.saturating_sub(node.last_heartbeat_ms) > down_after => {
                        commands.push(Command::MarkDataPlaneDown {
                            node_id: node.id,
                            last_heartbeat_ms: node.last_heartbeat_ms,
                            at_ms: now,
                        });
                    }
                    DataPlaneState::Down { since_ms } if now.saturating_sub(since_ms) > grace => {
                        commands
                            .push(Command::ExpireDataPlaneNode { node_id: node.id, down_since_ms: since_ms });
                    }
                    _ => {}
                }
            }
            if applied.state.bans().any(|ban| ban.until_ms.is_some_and(|until| until <= now)) {
                commands.push(Command::ExpireBans { now_ms: now });
            }
            commands
        })
    }
}
