//! The authenticator and authorizer chains as configured
//! (`[[auth.authenticators]]`, `[[auth.authorizers]]`): which hooks, in
//! which order. The built-in provider (users and ACL rules from the control
//! plane) is `cluster::access`; the backends that need no heavy dependency
//! live here (`acl_file.rs`), and so does the memory of failed logins that
//! bans an address guessing passwords (`failures.rs`).
//!
//! With no chain configured, each chain is the built-in provider alone (the
//! behaviour before chains existed). A configured chain holds exactly what
//! it lists: leaving `builtin` out leaves the control plane's users or ACL
//! rules out.

pub mod acl_file;
pub mod client_rules;
pub mod external;
pub mod failures;
pub mod scram;
pub mod x509;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{AuthConfig, AuthenticatorConfig, AuthorizerConfig, ListenersConfig};
use crate::hooks::{Authenticator, Authorizer};

pub use acl_file::{AclFile, AclFileError};

/// Builds the hooks of backends that live outside the data plane's core
/// (the `auth-backends` crate, composed by `mqttd`).
pub trait Backends: Send + Sync + std::fmt::Debug {
    /// The authenticator for `entry`; `None` if this factory does not know
    /// its type, an error (naming the key at fault) if its settings are bad.
    fn authenticator(&self, entry: &AuthenticatorConfig) -> Option<Result<Arc<dyn Authenticator>, String>>;

    /// The rule source of an external authorizer entry, as `authenticator`.
    fn rule_source(
        &self,
        _entry: &AuthorizerConfig,
    ) -> Option<Result<Arc<dyn external::RuleSource>, String>> {
        None
    }
}

/// One place in a chain.
#[derive(Debug)]
pub enum Slot<T: ?Sized> {
    /// The built-in provider.
    Builtin,
    Hook(Arc<T>),
}

/// The configured chains, loaded.
#[derive(Debug)]
pub struct Chains {
    pub authenticators: Vec<Slot<dyn Authenticator>>,
    pub authorizers: Vec<Slot<dyn Authorizer>>,
    /// ACL files to watch for changes.
    pub acl_files: Vec<Arc<AclFile>>,
    /// The external authorizers, in chain order: each client's rules from
    /// them are fetched when it connects.
    pub rule_sources: Vec<Arc<external::ExternalAuthorizer>>,
    /// The chains of listeners that have their own (by listener index: 0
    /// `tcp`, 1 `tls`, 2 `ws`, 3 `wss`), used instead of `authenticators`.
    pub listener_authenticators: [Option<Vec<Slot<dyn Authenticator>>>; 4],
}

impl Default for Chains {
    /// The built-in provider alone.
    fn default() -> Self {
        Chains {
            authenticators: vec![Slot::Builtin],
            authorizers: vec![Slot::Builtin],
            acl_files: Vec::new(),
            rule_sources: Vec::new(),
            listener_authenticators: Default::default(),
        }
    }
}

/// A chain could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("auth.authorizers entry {position}: {source}")]
    AclFile { position: usize, source: AclFileError },
    #[error("{chain} entry {position}: type {kind:?} is not built yet")]
    NotBuilt { chain: &'static str, position: usize, kind: &'static str },
    #[error("{chain} entry {position} (type {kind:?}): {reason}")]
    Backend { chain: &'static str, position: usize, kind: &'static str, reason: String },
}

impl Chains {
    /// Loads what `config` lists (reading ACL files), asking `backends` for
    /// the types the core does not have. The config has been validated; a
    /// type no one builds is still refused here.
    pub fn load(
        config: &AuthConfig,
        listeners: &ListenersConfig,
        backends: Option<&dyn Backends>,
    ) -> Result<Chains, ChainError> {
        let mut chains = Chains {
            authenticators: authenticators(&config.authenticators, "auth.authenticators", backends)?,
            authorizers: Vec::new(),
            acl_files: Vec::new(),
            rule_sources: Vec::new(),
            listener_authenticators: Default::default(),
        };
        for (index, key) in LISTENER_CHAINS.iter().enumerate() {
            if let Some(entries) = listeners.authenticators(index as u8) {
                let mut chain = authenticators(entries, key, backends)?;
                if chain.is_empty() {
                    chain.push(Slot::Builtin);
                }
                chains.listener_authenticators[index] = Some(chain);
            }
        }
        for (index, entry) in config.authorizers.iter().enumerate() {
            match entry {
                AuthorizerConfig::Builtin => chains.authorizers.push(Slot::Builtin),
                AuthorizerConfig::File(file) => {
                    let interval = Duration::from_millis(file.reload_interval_ms.max(1));
                    let loaded = AclFile::load(&file.path, interval)
                        .map_err(|source| ChainError::AclFile { position: index + 1, source })?;
                    chains.acl_files.push(loaded.clone());
                    chains.authorizers.push(Slot::Hook(loaded));
                }
                other => {
                    let (position, kind) = (index + 1, other.kind());
                    match backends.and_then(|backends| backends.rule_source(other)) {
                        Some(Ok(source)) => {
                            let hook = Arc::new(external::ExternalAuthorizer::new(
                                chains.rule_sources.len(),
                                source,
                            ));
                            chains.rule_sources.push(hook.clone());
                            chains.authorizers.push(Slot::Hook(hook));
                        }
                        Some(Err(reason)) => {
                            return Err(ChainError::Backend {
                                chain: "auth.authorizers",
                                position,
                                kind,
                                reason,
                            })
                        }
                        None => {
                            return Err(ChainError::NotBuilt { chain: "auth.authorizers", position, kind })
                        }
                    }
                }
            }
        }
        if chains.authenticators.is_empty() {
            chains.authenticators.push(Slot::Builtin);
        }
        if chains.authorizers.is_empty() {
            chains.authorizers.push(Slot::Builtin);
        }
        Ok(chains)
    }
}

/// The config keys of the listeners' own chains, by listener index.
const LISTENER_CHAINS: [&str; 4] = [
    "listeners.tcp.authenticators",
    "listeners.tls.authenticators",
    "listeners.ws.authenticators",
    "listeners.wss.authenticators",
];

/// Builds an authenticator chain (`key` names it in errors).
fn authenticators(
    entries: &[AuthenticatorConfig],
    key: &'static str,
    backends: Option<&dyn Backends>,
) -> Result<Vec<Slot<dyn Authenticator>>, ChainError> {
    let mut chain: Vec<Slot<dyn Authenticator>> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match entry {
            AuthenticatorConfig::Builtin => chain.push(Slot::Builtin),
            AuthenticatorConfig::X509(x509) => {
                chain.push(Slot::Hook(Arc::new(x509::X509Authenticator::new(x509.username, x509.clientid))))
            }
            other => {
                let (position, kind) = (index + 1, other.kind());
                match backends.and_then(|backends| backends.authenticator(other)) {
                    Some(Ok(hook)) => chain.push(Slot::Hook(hook)),
                    Some(Err(reason)) => {
                        return Err(ChainError::Backend { chain: key, position, kind, reason })
                    }
                    None => return Err(ChainError::NotBuilt { chain: key, position, kind }),
                }
            }
        }
    }
    Ok(chain)
}
