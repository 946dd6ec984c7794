//! Users for the snapshot: imported with `UserAdd` and an argon2id hash
//! computed once here, as a migration from another broker would (hashing
//! 100,000 passwords on the server at tens of milliseconds each would take
//! the better part of an hour and measure argon2, not the control plane).
//! Each `UserAdd` is its own Raft write; `--user-concurrency` calls are in
//! flight at once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proto::admin::UserAddRequest;
use serde_json::json;

use crate::args::Config;
use crate::cluster::Cluster;
use crate::stats::{emit, merge, round, say, Summary};

/// One argon2id PHC string (random salt), hashed by the control plane's
/// own function; every imported user gets it.
pub async fn imported_hash() -> Result<String> {
    tokio::task::spawn_blocking(|| controlplane::state::hash_password("controlplane-bench"))
        .await?
        .context("hashing the imported password")
}

pub fn username(i: u64) -> String {
    format!("user-{i:07}")
}

/// Imports `config.users` users through the leader's admin API.
pub async fn import(cluster: &Cluster, config: &Config, hash: &str) -> Result<()> {
    let leader = cluster.leader()?;
    let applied_before = cluster.voters[leader].applied_index().unwrap_or(0);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..config.user_concurrency {
        let mut admin = cluster.admin(leader).await?;
        let (next, hash, total) = (next.clone(), hash.to_owned(), config.users);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut indexes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>((latencies, indexes));
                }
                let request = UserAddRequest {
                    username: username(i),
                    password_hash: Some(hash.clone()),
                    ..Default::default()
                };
                let call = Instant::now();
                let reply =
                    admin.user_add(request).await.with_context(|| format!("importing {}", username(i)))?;
                latencies.push(call.elapsed());
                indexes.push(reply.into_inner().index);
            }
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut entries = BTreeSet::new();
    for task in tasks {
        let (task_latencies, task_indexes) = task.await??;
        latencies.extend(task_latencies);
        entries.extend(task_indexes);
    }
    let seconds = started.elapsed().as_secs_f64();
    let applied_after = cluster.voters[leader].applied_index().unwrap_or(0);
    let summary = Summary::of(&latencies);
    say(format!(
        "user import: {} users ({} calls in flight) in {:.1} s = {:.0} users/s; call {}; {} Raft entries",
        config.users,
        config.user_concurrency,
        seconds,
        config.users as f64 / seconds,
        summary.human(),
        entries.len(),
    ));
    emit(merge(
        json!({
            "measurement": "user_import",
            "users": config.users,
            "concurrency": config.user_concurrency,
            "seconds": round(seconds),
            "users_per_sec": round(config.users as f64 / seconds),
            "raft_entries": entries.len(),
            "applied_index_delta": applied_after - applied_before,
        }),
        summary.json(""),
    ));
    Ok(())
}
