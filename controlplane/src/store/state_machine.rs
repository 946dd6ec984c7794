//! openraft's `RaftStateMachine` and `RaftSnapshotBuilder`: applies committed
//! entries to the in-memory [`SharedState`], and builds, stores and installs
//! snapshots.
//!
//! Invariants: the stored snapshot is the only durable copy of the state
//! machine (the log after it rebuilds the rest on start); a snapshot is
//! written to redb (its own file: see [`Snapshots`]) before openraft is
//! told it exists; installing a snapshot
//! replaces the whole state and resets the change feed.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use redb::Database;

use super::{any_error, blocking, Db, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, SNAPSHOT};
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

/// Where snapshots are kept: a redb file of their own, so that writing one
/// (tens of MB, fsynced) never holds redb's single write lock that the
/// log's appends take. `legacy` is the log's file, where a data directory
/// from before kept its snapshot: read when the own file has none yet.
pub(crate) struct Snapshots {
    pub(crate) current: Arc<Db>,
    pub(crate) legacy: Arc<Db>,
}

impl Snapshots {
    fn read(&self) -> Result<Option<(Meta, Vec<u8>)>, String> {
        match read_snapshot(&self.current)? {
            Some(found) => Ok(Some(found)),
            None => read_snapshot(&self.legacy),
        }
    }

    fn write(&self, meta: &Meta, data: &[u8]) -> Result<(), String> {
        write_snapshot(&self.current, meta, data)
    }
}

fn to_string(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn read_snapshot(database: &Database) -> Result<Option<(Meta, Vec<u8>)>, String> {
    let transaction = database.begin_read().map_err(to_string)?;
    let table = transaction.open_table(SNAPSHOT).map_err(to_string)?;
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

fn write_snapshot(database: &Database, meta: &Meta, data: &[u8]) -> Result<(), String> {
    let meta = serde_json::to_vec(meta).map_err(to_string)?;
    let transaction = database.begin_write().map_err(to_string)?;
    {
        let mut table = transaction.open_table(SNAPSHOT).map_err(to_string)?;
        table.insert(KEY_SNAPSHOT_META, meta.as_slice()).map_err(to_string)?;
        table.insert(KEY_SNAPSHOT_DATA, data).map_err(to_string)?;
    }
    transaction.commit().map_err(to_string)
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
        // `ControlState`), and serializing it runs on a blocking thread: a
        // snapshot of a million routes never holds up writes or Raft's RPCs.
        let applied = self.shared.copy();
        let state = applied.state.clone();
        let data = blocking(move || state.to_snapshot_bytes().map_err(|error| error.to_string()))
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
        blocking(move || snapshots.write(&stored_meta, &stored_data))
            .await
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), any_error(error)))?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

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
