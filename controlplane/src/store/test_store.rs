//! Runs openraft's storage test suite against the redb store, each test on a
//! fresh temporary directory.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

use super::{LogStore, StateMachineStore};
use crate::applied::SharedState;
use crate::{NodeId, TypeConfig};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let directory = TempDir::new().map_err(|error| {
            StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, error)
        })?;
        let (log_store, state_machine, _) =
            super::open(directory.path(), SharedState::new()).map_err(|error| {
                StorageError::from_io_error(
                    openraft::ErrorSubject::Store,
                    openraft::ErrorVerb::Read,
                    std::io::Error::other(error.to_string()),
                )
            })?;
        Ok((directory, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), Box<StorageError<NodeId>>> {
    Suite::test_all(RedbBuilder).map_err(Box::new)
}

#[test]
fn restart_keeps_log_vote_and_snapshot() -> Result<(), Box<dyn std::error::Error>> {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote};

    use crate::state::Command;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let directory = TempDir::new()?;
        let entry = |index: u64, command: Command| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        };
        let hash = crate::state::hash_password("pw")?;
        let add =
            Command::AddUser { username: "alice".into(), password_hash: hash, superuser: true, scram: None };
        {
            let shared = SharedState::new();
            let (mut log_store, mut state_machine, _) = super::open(directory.path(), shared.clone())?;
            log_store.save_vote(&Vote::new(1, 1)).await?;
            let entries =
                vec![entry(1, add.clone()), entry(2, Command::DeleteUser { username: "bob".into() })];
            log_store.blocking_append(entries.clone()).await?;
            state_machine.apply(entries).await?;
            state_machine.get_snapshot_builder().await.build_snapshot().await?;
        }
        let shared = SharedState::new();
        let (mut log_store, _state_machine, _) = super::open(directory.path(), shared.clone())?;
        assert_eq!(log_store.read_vote().await?, Some(Vote::new(1, 1)));
        assert_eq!(log_store.try_get_log_entries(1..3).await?.len(), 2);
        let user = shared.read(|applied| applied.state.user("alice").cloned());
        assert!(user.is_some_and(|user| user.superuser), "state loaded from the snapshot");
        assert_eq!(shared.read(|applied| applied.last_applied_index()), Some(2));
        Ok(())
    })
}

/// Versions before the snapshot file kept the snapshot in redb: first in the
/// log's file, then in a redb file of its own. Either is loaded, moved to the
/// snapshot file, and the old snapshot file removed.
#[test]
fn a_snapshot_kept_in_redb_by_an_older_version_is_loaded_and_moved() -> Result<(), Box<dyn std::error::Error>>
{
    for place in [super::STORE_FILE, super::SNAPSHOT_FILE] {
        snapshot_moved_from(place)?;
    }
    Ok(())
}

fn snapshot_moved_from(place: &str) -> Result<(), Box<dyn std::error::Error>> {
    use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
    use redb::Database;

    use super::snapshot_file::SnapshotFile;
    use crate::state::Command;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let directory = TempDir::new()?;
        let hash = crate::state::hash_password("pw")?;
        let add =
            Command::AddUser { username: "carol".into(), password_hash: hash, superuser: false, scram: None };
        let entries = vec![Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(add),
        }];
        {
            let (mut log_store, mut state_machine, _) = super::open(directory.path(), SharedState::new())?;
            log_store.blocking_append(entries.clone()).await?;
            state_machine.apply(entries).await?;
            state_machine.get_snapshot_builder().await.build_snapshot().await?;
        }
        // Move the snapshot where an older version kept it.
        let file = SnapshotFile::new(directory.path());
        let (meta, data) = file.read()?.ok_or("no snapshot file written")?;
        std::fs::remove_file(file.path())?;
        {
            let database = Database::create(directory.path().join(place))?;
            let write = database.begin_write()?;
            {
                let mut table = write.open_table(super::SNAPSHOT)?;
                table.insert(super::KEY_SNAPSHOT_META, meta.as_slice())?;
                table.insert(super::KEY_SNAPSHOT_DATA, data.as_slice())?;
            }
            write.commit()?;
        }
        let shared = SharedState::new();
        let _store = super::open(directory.path(), shared.clone())?;
        assert!(shared.read(|applied| applied.state.user("carol").is_some()), "loaded from {place}");
        assert_eq!(file.read()?, Some((meta, data)), "moved to the snapshot file from {place}");
        assert!(!directory.path().join(super::SNAPSHOT_FILE).exists(), "the old snapshot file is removed");
        Ok(())
    })
}
