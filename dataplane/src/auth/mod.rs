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

use crate::config::{AuthConfig, AuthenticatorConfig, AuthorizerConfig};
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
}

impl Default for Chains {
    /// The built-in provider alone.
    fn default() -> Self {
        Chains {
            authenticators: vec![Slot::Builtin],
            authorizers: vec![Slot::Builtin],
            acl_files: Vec::new(),
            rule_sources: Vec::new(),
        }
    }
}

/// A chain could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("auth.authorizers entry {position}: {source}")]
    AclFile { position: usize, source: AclFileError },
    #[error("auth.{chain} entry {position}: type {kind:?} is not built yet")]
    NotBuilt { chain: &'static str, position: usize, kind: &'static str },
    #[error("auth.{chain} entry {position} (type {kind:?}): {reason}")]
    Backend { chain: &'static str, position: usize, kind: &'static str, reason: String },
}

impl Chains {
    /// Loads what `config` lists (reading ACL files), asking `backends` for
    /// the types the core does not have. The config has been validated; a
    /// type no one builds is still refused here.
    pub fn load(config: &AuthConfig, backends: Option<&dyn Backends>) -> Result<Chains, ChainError> {
        let mut chains = Chains {
            authenticators: Vec::new(),
            authorizers: Vec::new(),
            acl_files: Vec::new(),
            rule_sources: Vec::new(),
        };
        for (index, entry) in config.authenticators.iter().enumerate() {
            match entry {
                AuthenticatorConfig::Builtin => chains.authenticators.push(Slot::Builtin),
                AuthenticatorConfig::X509(x509) => chains
                    .authenticators
                    .push(Slot::Hook(Arc::new(x509::X509Authenticator::new(x509.username)))),
                other => {
                    let (position, kind) = (index + 1, other.kind());
                    match backends.and_then(|backends| backends.authenticator(other)) {
                        Some(Ok(hook)) => chains.authenticators.push(Slot::Hook(hook)),
                        Some(Err(reason)) => {
                            return Err(ChainError::Backend {
                                chain: "authenticators",
                                position,
                                kind,
                                reason,
                            })
                        }
                        None => return Err(ChainError::NotBuilt { chain: "authenticators", position, kind }),
                    }
                }
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
                            return Err(ChainError::Backend { chain: "authorizers", position, kind, reason })
                        }
                        None => return Err(ChainError::NotBuilt { chain: "authorizers", position, kind }),
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
