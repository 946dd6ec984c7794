//! Durable Raft storage in the node's data directory: the log, the vote and
//! the committed and last purged log ids in a redb file, the last
//! state-machine snapshot in a plain file of its own (so that writing a large
//! snapshot never holds the write lock the log's appends need, nor leaves
//! tens of MB for their fsyncs to flush).
//!
//! - `log_store.rs`: openraft's `RaftLogStorage` (storage-v2 API).
//! - `state_machine.rs`: openraft's `RaftStateMachine` and snapshot builder.
//! - `snapshot_file.rs`: the snapshot file, written in synced chunks.
//!
//! Design: the state machine lives in memory ([`SharedState`]) and is made
//! durable by snapshots; on start it is loaded from the last snapshot and
//! openraft re-applies the committed log after it (the committed log id is
//! saved for that). A snapshot is built every `snapshot_every` entries, and
//! openraft then purges the log up to it (log compaction). Every write
//! transaction is committed with redb's default durability (fsync) before
//! the call returns or its callback fires; redb work runs on the blocking
//! thread pool, not on a runtime worker.

mod log_store;
mod snapshot_file;
mod state_machine;
#[cfg(test)]
mod test_store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, TableDefinition};
use tokio::sync::oneshot;

pub(crate) use log_store::LogStore;
pub use snapshot_file::SNAPSHOT_DATA_FILE;
pub(crate) use state_machine::StateMachineStore;

use crate::applied::SharedState;

/// The file name of the store inside the data directory.
pub const STORE_FILE: &str = "controlplane.redb";

/// Where versions before [`SNAPSHOT_DATA_FILE`] kept the last snapshot (read
/// once, moved to that file and removed).
pub const SNAPSHOT_FILE: &str = "controlplane-snapshot.redb";

/// redb's page cache for the log's file. Its default (1 GiB) kept every
/// page the log ever wrote in memory: appends are sequential and reads are
/// of recent entries, so a small cache serves them.
const CACHE_BYTES: usize = 32 << 20;

/// Log index → JSON of openraft's `Entry`.
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// `vote`, `committed`, `last_purged` → JSON.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");
/// `meta` (JSON `SnapshotMeta`) and `data` (the snapshot document), where
/// versions before [`SNAPSHOT_DATA_FILE`] kept them.
const SNAPSHOT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshot");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {source}")]
    Open { path: String, source: Box<redb::Error> },
    #[error("cannot read the last snapshot in {path}: {reason}")]
    Snapshot { path: String, reason: String },
}

/// Opens (or creates) the store in `data_dir` and loads the last snapshot
/// into `shared`. The directory must exist.
pub(crate) fn open(
    data_dir: &Path,
    shared: Arc<SharedState>,
) -> Result<(LogStore, StateMachineStore, StoreWatch), StoreError> {
    let path = data_dir.join(STORE_FILE);
    let (database, closed) = open_file(&path)?;
    let snapshot_error = |path: &Path| {
        let path = path.display().to_string();
        move |reason| StoreError::Snapshot { path, reason }
    };
    let older_path = data_dir.join(SNAPSHOT_FILE);
    let older = if older_path.exists() { Some(open_file(&older_path)?) } else { None };
    let mut places: Vec<&Database> = Vec::new();
    if let Some((older, _)) = &older {
        places.push(older);
    }
    places.push(&database);
    let snapshots = state_machine::Snapshots::open(data_dir, &places)
        .map_err(snapshot_error(&data_dir.join(SNAPSHOT_DATA_FILE)))?;
    drop(places);
    if let Some((older, older_closed)) = older {
        drop(older);
        drop(older_closed);
        std::fs::remove_file(&older_path)
            .map_err(|error| snapshot_error(&older_path)(format!("cannot remove it: {error}")))?;
    }
    let state_machine = StateMachineStore::open(Arc::new(snapshots), shared)
        .map_err(snapshot_error(&data_dir.join(SNAPSHOT_DATA_FILE)))?;
    Ok((LogStore::new(database), state_machine, StoreWatch { closed: vec![closed] }))
}

/// Opens (or creates) one redb file with every table.
fn open_file(path: &Path) -> Result<(Arc<Db>, oneshot::Receiver<()>), StoreError> {
    let open_error = |source: Box<redb::Error>| StoreError::Open { path: path.display().to_string(), source };
    let database = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|error| open_error(Box::new(error.into())))?;
    create_tables(&database).map_err(open_error)?;
    let (closed_sender, closed) = oneshot::channel();
    Ok((Arc::new(Db { database, _closed: closed_sender }), closed))
}

/// The open database, shared by the log store, the state machine and their
/// readers.
pub(crate) struct Db {
    database: Database,
    /// Declared after `database`, so dropped after it: the [`StoreWatch`]
    /// hears of the close only once redb has released the file.
    _closed: oneshot::Sender<()>,
}

impl std::ops::Deref for Db {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.database
    }
}

/// Tells when the last user of the database is gone and the file is closed
/// (redb locks the file while it is open, so a restart must wait for this).
pub(crate) struct StoreWatch {
    closed: Vec<oneshot::Receiver<()>>,
}

impl StoreWatch {
    /// Waits up to `timeout` for the database files to close; false if one
    /// did not.
    pub async fn closed(self, timeout: Duration) -> bool {
        // The senders are never used: their drop (an error here) is the signal.
        let all = async {
            for closed in self.closed {
                let _ = closed.await;
            }
        };
        tokio::time::timeout(timeout, all).await.is_ok()
    }
}

/// Creates the tables so that read transactions always find them.
fn create_tables(database: &Database) -> Result<(), Box<redb::Error>> {
    fn boxed(error: impl Into<redb::Error>) -> Box<redb::Error> {
        Box::new(error.into())
    }
    let transaction = database.begin_write().map_err(boxed)?;
    transaction.open_table(LOG).map_err(boxed)?;
    transaction.open_table(META).map_err(boxed)?;
    transaction.commit().map_err(boxed)
}

/// Runs blocking redb work on the blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, String>
where
    F: FnOnce() -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|error| format!("storage task failed: {error}"))?
}

/// An error message as openraft's `AnyError` source.
fn any_error(message: String) -> openraft::AnyError {
    openraft::AnyError::error(message)
}
