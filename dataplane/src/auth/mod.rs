//! The authenticator and authorizer chains as configured
//! (`[[auth.authenticators]]`, `[[auth.authorizers]]`): which hooks, in
//! which order. The built-in provider (users and ACL rules from the control
//! plane) is `cluster::access`; the backends that need no heavy dependency
//! live here (`acl_file.rs`).
//!
//! With no chain configured, each chain is the built-in provider alone (the
//! behaviour before chains existed). A configured chain holds exactly what
//! it lists: leaving `builtin` out leaves the control plane's users or ACL
//! rules out.

pub mod acl_file;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{AuthConfig, AuthenticatorConfig, AuthorizerConfig};
use crate::hooks::Authorizer;

pub use acl_file::{AclFile, AclFileError};

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
    pub authenticators: Vec<Slot<dyn crate::hooks::Authenticator>>,
    pub authorizers: Vec<Slot<dyn Authorizer>>,
    /// ACL files to watch for changes.
    pub acl_files: Vec<Arc<AclFile>>,
}

impl Default for Chains {
    /// The built-in provider alone.
    fn default() -> Self {
        Chains {
            authenticators: vec![Slot::Builtin],
            authorizers: vec![Slot::Builtin],
            acl_files: Vec::new(),
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
}

impl Chains {
    /// Loads what `config` lists (reading ACL files). The config has been
    /// validated; a type this build lacks is still refused here.
    pub fn load(config: &AuthConfig) -> Result<Chains, ChainError> {
        let mut chains =
            Chains { authenticators: Vec::new(), authorizers: Vec::new(), acl_files: Vec::new() };
        for (index, entry) in config.authenticators.iter().enumerate() {
            match entry {
                AuthenticatorConfig::Builtin => chains.authenticators.push(Slot::Builtin),
                other => {
                    return Err(ChainError::NotBuilt {
                        chain: "authenticators",
                        position: index + 1,
                        kind: other.kind(),
                    })
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
                    return Err(ChainError::NotBuilt {
                        chain: "authorizers",
                        position: index + 1,
                        kind: other.kind(),
                    })
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
