//! openraft's `RaftStateMachine` and `RaftSnapshotBuilder`: applies committed
//! entries to the in-memory [`SharedState`], and builds, stores and installs
//! snapshots.
//!
//! Invariants: the stored snapshot is the only durable copy of the state
//! machine (the log after it rebuilds the rest on start); a snapshot is
//! written to its file (see [`Snapshots`]) before openraft is told it
//! exists; installing a snapshot
//! replaces the whole state and resets the change feed.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use redb::Database;

use super::snapshot_file::SnapshotFile;
use super::{any_error, blocking, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, SNAPSHOT};
use crate::applied::{Applied, SharedState};
use crate::state::{ControlState, Response};
use crate::{NodeId, TypeConfig};

type Meta = SnapshotMeta<NodeId, BasicNode>;

pub(crate) struct StateMachineStore {
    snapshots: Arc<Snapshots>,
    shared: Arc<SharedState>,
}

/// Builds a snapshot from a copy of the state taken when it starts.
pub(crate) struct SnapshotBuilder {
    snapshots: Arc<Snapshots>,
    shared: Arc<SharedState>,
}

/// Where snapshots are kept: a plain file of their own ([`SnapshotFile`]),
/// written in synced chunks so that neither redb's single write lock nor a
/// pile of dirty pages holds up the log's appends. One write at a time, and
/// never an older snapshot over a newer one (a snapshot built from the
/// state before an install from the leader may finish after it).
pub(crate) struct Snapshots {
    file: SnapshotFile,
    /// The last log id of the stored snapshot; held while writing.
    stored: Mutex<Option<Option<LogId<NodeId>>>>,
}

impl Snapshots {
    /// The snapshot file in `data_dir`. If there is none yet, a snapshot an
    /// older version kept in redb (`older`, newest place first) is moved to
    /// it, so that the current snapshot is always in one place.
    pub(crate) fn open(data_dir: &Path, older: &[&Database]) -> Result<Snapshots, String> {
        let snapshots = Snapshots { file: SnapshotFile::new(data_dir), stored: Mutex::new(None) };
        if !snapshots.file.path().exists() {
            for database in older {
                if let Some((meta, data)) = read_redb_snapshot(database)? {
                    snapshots.write(&meta, &data)?;
                    tracing::info!(snapshot = %meta.snapshot_id, "moved the last snapshot to its own file");
                    break;
                }
            }
        }
        Ok(snapshots)
    }

    /// Reads the stored snapshot, and remembers its log id.
    fn read(&self) -> Result<Option<(Meta, Vec<u8>)>, String> {
        let read = self.read_file()?;
        if let Some((meta, _)) = &read {
            let mut stored = self.stored.lock();
            if !matches!(*stored, Some(kept) if kept >= meta.last_log_id) {
                *stored = Some(meta.last_log_id);
            }
        }
        Ok(read)
    }

    fn read_file(&self) -> Result<Option<(Meta, Vec<u8>)>, String> {
        let path = self.file.path().display();
        let Some((meta, data)) = self.file.read().map_err(|error| format!("{path}: {error}"))? else {
            return Ok(None);
        };
        let meta: Meta = serde_json::from_slice(&meta).map_err(|error| format!("{path}: meta: {error}"))?;
        Ok(Some((meta, data)))
    }

    /// Stores the snapshot unless a newer one is stored already.
    fn write(&self, meta: &Meta, data: &[u8]) -> Result<(), String> {
        let mut stored = self.stored.lock();
        if let Some(stored) = *stored {
            if stored > meta.last_log_id {
                tracing::info!(snapshot = %meta.snapshot_id, "a newer snapshot is stored already: not kept");
                return Ok(());
            }
        }
        let encoded = serde_json::to_vec(meta).map_err(to_string)?;
        self.file
            .write(&encoded, data)
            .map_err(|error| format!("{}: {error}", self.file.path().display()))?;
        *stored = Some(meta.last_log_id);
        Ok(())
    }
}

fn to_string(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// A snapshot where versions before the snapshot file kept it.
fn read_redb_snapshot(database: &Database) -> Result<Option<(Meta, Vec<u8>)>, String> {
    let transaction = database.begin_read().map_err(to_string)?;
    let table = match transaction.open_table(SNAPSHOT) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let meta = table.get(KEY_SNAPSHOT_META).map_err(to_string)?;
    let data = table.get(KEY_SNAPSHOT_DATA).map_err(to_string)?;
    match (meta, data) {
        (Some(meta), Some(data)) => {
            let meta: Meta = serde_json::from_slice(meta.value()).map_err(to_string)?;
            Ok(Some((meta, data.value().to_vec())))
        }
        _ => Ok(None),
    }
}

fn applied_from(meta: &Meta, data: &[u8]) -> Result<Applied, String> {
    let state = ControlState::from_snapshot_bytes(data).map_err(to_string)?;
    Ok(Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone(), state })
}

impl StateMachineStore {
    /// Loads the last stored snapshot, if any, into `shared`.
    pub(crate) fn open(snapshots: Arc<Snapshots>, shared: Arc<SharedState>) -> Result<Self, String> {
        if let Some((meta, data)) = snapshots.read()? {
            shared.install(applied_from(&meta, &data)?);
            tracing::info!(snapshot = %meta.snapshot_id, "loaded the state machine from its last snapshot");
        }
        Ok(StateMachineStore { snapshots, shared })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // The copy is cheap (the large maps are persistent, see
        // `ControlState`), and serializing and storing it run on a thread of
        // their own at the lowest CPU priority: a snapshot of a million
        // routes (about a second of CPU) never holds up writes or Raft's RPCs.
        let applied = self.shared.copy();
        let state = applied.state.clone();
        let data = in_background(move || state.to_snapshot_bytes().map_err(|error| error.to_string()))
            .await
            .map_err(|error| StorageIOError::read_state_machine(any_error(error)))?;
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let snapshot_id = match applied.last_applied {
            Some(log_id) => format!("{}-{}-{stamp}", log_id.leader_id, log_id.index),
            None => format!("empty-{stamp}"),
        };
        let meta =
            Meta { last_log_id: applied.last_applied, last_membership: applied.membership, snapshot_id };
        let snapshots = self.snapshots.clone();
        let (stored_meta, stored_data) = (meta.clone(), data.clone());
        in_background(move || snapshots.write(&stored_meta, &stored_data))
            .await
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), any_error(error)))?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

/// Runs `work` on a thread of its own at the lowest CPU priority (nice 19):
/// it gets the cores only when the log's writes, the state machine and the
/// RPCs leave them.
async fn in_background<T, F>(work: F) -> Result<T, String>
where
    F: FnOnce() -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raft-snapshot".to_owned())
        .spawn(move || {
            lower_priority();
            let _ = sender.send(work());
        })
        .map_err(|error| format!("cannot start a snapshot thread: {error}"))?;
    receiver.await.map_err(|_| "the snapshot thread failed".to_owned())?
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value is per thread: this one only.
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), 19) {
        tracing::debug!(%error, "cannot lower the snapshot thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        Ok(self.shared.read(|applied| (applied.last_applied, applied.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        Ok(entries.into_iter().map(|entry| self.shared.apply_entry(entry)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { snapshots: self.snapshots.clone(), shared: self.shared.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let applied = applied_from(meta, &data)
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), any_error(error)))?;
        let snapshots = self.snapshots.clone();
        let stored_meta = meta.clone();
        blocking(move || snapshots.write(&stored_meta, &data))
            .await
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), any_error(error)))?;
        self.shared.install(applied);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let snapshots = self.snapshots.clone();
        let stored = blocking(move || snapshots.read())
            .await
            .map_err(|error| StorageIOError::read_snapshot(None, any_error(error)))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn meta(index: u64) -> Meta {
        Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("at-{index}"),
        }
    }

    /// A snapshot built before an install from the leader may finish after
    /// it: it must not replace the newer one.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() -> Result<(), String> {
        let directory = tempfile::TempDir::new().map_err(to_string)?;
        let snapshots = Snapshots::open(directory.path(), &[])?;
        snapshots.write(&meta(5), b"five")?;
        snapshots.write(&meta(3), b"three")?;
        let (kept, data) = snapshots.read()?.ok_or("no snapshot")?;
        assert_eq!((kept.snapshot_id.as_str(), data.as_slice()), ("at-5", &b"five"[..]));

        // Also after a restart, from what the file says.
        let snapshots = Snapshots::open(directory.path(), &[])?;
        snapshots.read()?;
        snapshots.write(&meta(4), b"four")?;
        snapshots.write(&meta(6), b"six")?;
        let (kept, _) = snapshots.read()?.ok_or("no snapshot")?;
        assert_eq!(kept.snapshot_id, "at-6");
        Ok(())
    }
}
