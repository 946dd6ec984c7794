//! Authorizers whose rules live outside the broker (`postgresql`, `mysql`,
//! `redis`, `http`; built by the `auth-backends` crate as [`RuleSource`]s):
//! a client's rules are fetched when it connects, held with the client
//! (its [`ClientAcl`]), and fetched again in the background once they are
//! older than the source's `refresh_s` (found so by a check of the client,
//! or by the source's sweep over its connected clients, every half
//! `refresh_s`), while the ones held keep deciding.
//!
//! Invariants:
//! - **Checks never wait for a source**: the authorizer chain runs on every
//!   publish and stays synchronous; a source is asked only when a client
//!   connects (the CONNECT waits, within the source's timeout) and on a
//!   task of its own afterwards, one refresh per client and source at a
//!   time.
//! - **A source that fails decides by its `on_error`**: `ignore` leaves the
//!   check to the next authorizer, `deny` refuses everything this source
//!   would have judged, until a later fetch succeeds (tried again after at
//!   most [`RETRY_AFTER_FAILURE`]). A refresh that fails keeps the rules
//!   the client holds (they were the source's answer a moment ago) and is
//!   tried again as soon.
//! - **New rules reach what the client holds**: a refresh that brings rules
//!   other than the held ones asks the connection to judge its
//!   subscriptions again (`Control::Revalidate`).
//! - The rules a client holds are bounded by the client (at most
//!   `client_rules::MAX_RULES` per source) and go with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::auth::client_rules::RuleSet;
use crate::cluster::access::Identity;
use crate::cluster::acl::Subject;
use crate::cluster::view::Action;
use crate::hooks::{Authorizer, HookFuture, Verdict};

/// How soon rules that could not be fetched are asked for again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// What a source does when it cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Deny,
    Ignore,
}

/// How the authorizer treats a source's rules.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    /// Rules older than this are fetched again.
    pub refresh: Duration,
    pub on_error: OnFailure,
    /// As logs name the source (no credentials).
    pub name: String,
}

/// A place a client's rules come from.
pub trait RuleSource: Send + Sync + std::fmt::Debug {
    /// `who`'s rules, or why they could not be had (never with anything the
    /// source echoed back that might hold a credential).
    fn rules<'a>(&'a self, who: &'a Identity) -> HookFuture<'a, Result<RuleSet, String>>;
    fn policy(&self) -> SourcePolicy;
}

/// What one client holds: the rules its authenticator gave (a JWT's `acl`
/// claim), checked before the chain, and each external source's.
#[derive(Debug, Default)]
pub struct ClientAcl {
    pub granted: Option<RuleSet>,
    sources: Box<[Held]>,
    /// When the client's credential stops being good (a JWT's `exp`).
    pub expires_at: Option<Instant>,
    /// The connection, told to judge what it holds again when a refresh
    /// brings other rules (held weakly: set once the connection exists).
    connection: std::sync::OnceLock<std::sync::Weak<crate::registry::ControlSlot>>,
    /// Whom the rules are for (without rules), for refreshes; `None` when
    /// no external source holds any.
    who: Option<Identity>,
}

impl ClientAcl {
    /// Names the connection that holds these rules.
    pub fn attach(&self, control: &Arc<crate::registry::ControlSlot>) {
        let _ = self.connection.set(Arc::downgrade(control));
    }

    /// The credential has expired: the client must go.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Instant::now())
    }

    /// The rules `source` (by its place among the external authorizers)
    /// holds for the client, if they were fetched.
    pub fn rules_of(&self, source: usize) -> Option<Arc<RuleSet>> {
        self.sources.get(source).and_then(|held| held.loaded.load().rules.clone())
    }
}

#[derive(Debug)]
struct Held {
    loaded: ArcSwap<Loaded>,
    refreshing: AtomicBool,
}

#[derive(Debug)]
struct Loaded {
    /// `None`: no fetch has succeeded yet.
    rules: Option<Arc<RuleSet>>,
    at: Instant,
    /// The last fetch failed (the rules, if any, are an earlier fetch's).
    failed: bool,
}

/// An authorizer in the chain that judges by a source's rules.
#[derive(Debug)]
pub struct ExternalAuthorizer {
    /// Its place among the external authorizers (the slot in a client's
    /// [`ClientAcl`]).
    index: usize,
    source: Arc<dyn RuleSource>,
    policy: SourcePolicy,
    /// The rules held for clients, for the sweep (dead ones pruned there).
    clients: parking_lot::Mutex<Vec<std::sync::Weak<ClientAcl>>>,
}

impl ExternalAuthorizer {
    pub fn new(index: usize, source: Arc<dyn RuleSource>) -> ExternalAuthorizer {
        let policy = source.policy();
        ExternalAuthorizer { index, source, policy, clients: Default::default() }
    }

    /// Fetches the client's rules again on a task of its own, if they are
    /// older than `refresh_s` (or failed, and older than
    /// [`RETRY_AFTER_FAILURE`]) and no fetch is under way.
    fn refresh_if_due(&self, acl: &Arc<ClientAcl>) {
        let Some(held) = acl.sources.get(self.index) else { return };
        let Some(who) = &acl.who else { return };
        let loaded = held.loaded.load();
        let due = match loaded.failed {
            false => self.policy.refresh,
            true => self.policy.refresh.min(RETRY_AFTER_FAILURE),
        };
        if loaded.at.elapsed() < due || held.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            held.refreshing.store(false, Ordering::Release);
            return;
        };
        let (acl, index) = (acl.clone(), self.index);
        let (source, name) = (self.source.clone(), self.policy.name.clone());
        let who = who.clone();
        let previous = loaded.rules.clone();
        runtime.spawn(async move {
            let loaded = fetch(source.as_ref(), &name, &who, previous.clone()).await;
            let changed = loaded.rules != previous;
            if let Some(held) = acl.sources.get(index) {
                held.loaded.store(Arc::new(loaded));
                held.refreshing.store(false, Ordering::Release);
            }
            if changed {
                // Subscriptions (and queued messages) the new rules deny go,
                // as after a change of the built-in rules.
                if let Some(control) = acl.connection.get().and_then(std::sync::Weak::upgrade) {
                    control.revalidate();
                }
            }
        });
    }

    /// Refreshes, every so often, the rules of every connected client whose
    /// rules are due, so that a client that only listens is judged by the
    /// source's rules of now too. Runs until the broker stops.
    pub async fn sweep(self: Arc<Self>) {
        let tick = (self.policy.refresh / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let live: Vec<Arc<ClientAcl>> = {
                let mut clients = self.clients.lock();
                clients.retain(|client| client.strong_count() > 0);
                clients.iter().filter_map(std::sync::Weak::upgrade).collect()
            };
            for acl in live {
                // Parked sessions wait for their client to come back.
                if acl.connection.get().and_then(std::sync::Weak::upgrade).is_some() {
                    self.refresh_if_due(&acl);
                }
            }
        }
    }

    fn failed(&self) -> Verdict<()> {
        match self.policy.on_error {
            OnFailure::Deny => Verdict::Deny(mqtt_codec::ReasonCode::NOT_AUTHORIZED),
            OnFailure::Ignore => Verdict::Ignore,
        }
    }
}

/// Fetches `who`'s rules; a failure keeps `previous` (the rules of the
/// last fetch that succeeded), to be tried again soon.
async fn fetch(
    source: &dyn RuleSource,
    name: &str,
    who: &Identity,
    previous: Option<Arc<RuleSet>>,
) -> Loaded {
    match source.rules(who).await {
        Ok(rules) => Loaded { rules: Some(Arc::new(rules)), at: Instant::now(), failed: false },
        Err(failure) => {
            tracing::warn!(source = %name, client_id = %who.client_id, %failure, "ACL rules not fetched");
            Loaded { rules: previous, at: Instant::now(), failed: true }
        }
    }
}

/// Fetches every source's rules for `who` (the CONNECT waits for them);
/// `None` when there is nothing to hold.
pub async fn load(
    sources: &[Arc<ExternalAuthorizer>],
    who: &Identity,
    granted: Option<RuleSet>,
    expires_at: Option<Instant>,
) -> Option<Arc<ClientAcl>> {
    if sources.is_empty() && granted.is_none() && expires_at.is_none() {
        return None;
    }
    let mut held = Vec::with_capacity(sources.len());
    for source in sources {
        let loaded = fetch(source.source.as_ref(), &source.policy.name, who, None).await;
        held.push(Held { loaded: ArcSwap::from_pointee(loaded), refreshing: AtomicBool::new(false) });
    }
    let who = (!sources.is_empty()).then(|| Identity { acl: None, ..who.clone() });
    let acl = Arc::new(ClientAcl {
        granted,
        sources: held.into(),
        expires_at,
        connection: Default::default(),
        who,
    });
    for source in sources {
        source.clients.lock().push(Arc::downgrade(&acl));
    }
    Some(acl)
}

impl Authorizer for ExternalAuthorizer {
    fn authorize(&self, who: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()> {
        let Some(acl) = &who.acl else { return self.failed() };
        let Some(held) = acl.sources.get(self.index) else { return self.failed() };
        let loaded = held.loaded.load();
        self.refresh_if_due(acl);
        match &loaded.rules {
            Some(rules) => rules.decide(who, action, subject),
            None => self.failed(),
        }
    }
}
