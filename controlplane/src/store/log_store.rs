//! openraft's `RaftLogStorage` over redb: entries, vote, committed and last
//! purged log ids.
//!
//! Invariants: the log has no holes (append writes consecutive entries,
//! truncate removes a suffix, purge a prefix); every write is durable before
//! it is acknowledged; writes are serialized by `&mut self`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{any_error, blocking, Db, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOG, META};
use crate::{NodeId, TypeConfig};

/// Log entries removed per write transaction when the log is purged (an
/// entry may carry a thousand routes: 32 of them are about a MB).
const PURGE_AT_ONCE: u64 = 32;

/// The Raft log. Cloning shares the database (the clone is the log reader
/// that replication tasks use).
#[derive(Clone)]
pub(crate) struct LogStore {
    database: Arc<Db>,
}

fn to_string(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn read_meta<T: DeserializeOwned>(database: &Database, key: &str) -> Result<Option<T>, String> {
    let transaction = database.begin_read().map_err(to_string)?;
    let table = transaction.open_table(META).map_err(to_string)?;
    match table.get(key).map_err(to_string)? {
        Some(value) => serde_json::from_slice(value.value()).map(Some).map_err(to_string),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(database: &Database, key: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(to_string)?;
    let transaction = database.begin_write().map_err(to_string)?;
    {
        let mut table = transaction.open_table(META).map_err(to_string)?;
        table.insert(key, bytes.as_slice()).map_err(to_string)?;
    }
    transaction.commit().map_err(to_string)
}

impl LogStore {
    pub(crate) fn new(database: Arc<Db>) -> Self {
        LogStore { database }
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, String>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let database = self.database.clone();
        blocking(move || read_meta(&database, key)).await
    }

    async fn write_meta<T>(&self, key: &'static str, value: T) -> Result<(), String>
    where
        T: Serialize + Send + 'static,
    {
        let database = self.database.clone();
        blocking(move || write_meta(&database, key, &value)).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
        let database = self.database.clone();
        blocking(move || {
            let transaction = database.begin_read().map_err(to_string)?;
            let table = transaction.open_table(LOG).map_err(to_string)?;
            let mut entries = Vec::new();
            for item in table.range(bounds).map_err(to_string)? {
                let (_, value) = item.map_err(to_string)?;
                entries.push(serde_json::from_slice(value.value()).map_err(to_string)?);
            }
            Ok(entries)
        })
        .await
        .map_err(|error| StorageIOError::read_logs(any_error(error)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let database = self.database.clone();
        blocking(move || {
            let last_purged: Option<LogId<NodeId>> = read_meta(&database, KEY_LAST_PURGED)?;
            let transaction = database.begin_read().map_err(to_string)?;
            let table = transaction.open_table(LOG).map_err(to_string)?;
            let last_log_id = match table.last().map_err(to_string)? {
                Some((_, value)) => {
                    let entry: Entry<TypeConfig> =
                        serde_json::from_slice(value.value()).map_err(to_string)?;
                    Some(entry.log_id)
                }
                None => last_purged,
            };
            Ok(LogState { last_purged_log_id: last_purged, last_log_id })
        })
        .await
        .map_err(|error| StorageIOError::read_logs(any_error(error)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(KEY_VOTE, *vote)
            .await
            .map_err(|error| StorageIOError::write_vote(any_error(error)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(KEY_VOTE).await.map_err(|error| StorageIOError::read_vote(any_error(error)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(KEY_COMMITTED, committed)
            .await
            .map_err(|error| StorageIOError::write(any_error(error)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)
            .await
            .map(Option::flatten)
            .map_err(|error| StorageIOError::read(any_error(error)).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|error| {
                StorageIOError::write_log_entry(entry.log_id, any_error(error.to_string()))
            })?;
            encoded.push((entry.log_id.index, bytes));
        }
        let database = self.database.clone();
        let result = blocking(move || {
            let transaction = database.begin_write().map_err(to_string)?;
            {
                let mut table = transaction.open_table(LOG).map_err(to_string)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice()).map_err(to_string)?;
                }
            }
            transaction.commit().map_err(to_string)
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.clone())));
                Err(StorageIOError::write_logs(any_error(error)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let database = self.database.clone();
        blocking(move || {
            let transaction = database.begin_write().map_err(to_string)?;
            {
                let mut table = transaction.open_table(LOG).map_err(to_string)?;
                table.retain_in(log_id.index.., |_, _| false).map_err(to_string)?;
            }
            transaction.commit().map_err(to_string)
        })
        .await
        .map_err(|error| StorageIOError::write_logs(any_error(error)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let database = self.database.clone();
        blocking(move || {
            // The purged id first: entries up to it are never read again,
            // so a crash between the two leaves only unread garbage.
            let bytes = serde_json::to_vec(&Some(log_id)).map_err(to_string)?;
            let transaction = database.begin_write().map_err(to_string)?;
            {
                let mut meta = transaction.open_table(META).map_err(to_string)?;
                meta.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(to_string)?;
            }
            transaction.commit().map_err(to_string)?;
            // Then the entries, a few at a time: each transaction holds
            // redb's one write lock, which the appends need too. (Commits
            // without fsync were tried: the next durable commit, an
            // append's, then frees all their pages and stalls.)
            loop {
                let transaction = database.begin_write().map_err(to_string)?;
                let more = {
                    let mut table = transaction.open_table(LOG).map_err(to_string)?;
                    let first = match table.first().map_err(to_string)? {
                        Some((first, _)) if first.value() <= log_id.index => first.value(),
                        _ => break,
                    };
                    let last = first.saturating_add(PURGE_AT_ONCE - 1).min(log_id.index);
                    table.retain_in(first..=last, |_, _| false).map_err(to_string)?;
                    last < log_id.index
                };
                transaction.commit().map_err(to_string)?;
                if !more {
                    break;
                }
            }
            Ok(())
        })
        .await
        .map_err(|error| StorageIOError::write_logs(any_error(error)).into())
    }
}
