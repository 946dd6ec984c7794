//! The `postgresql` authenticator against a real PostgreSQL (Debian's
//! postgresql package; `scripts/test.sh` installs it), started by the test
//! in a temporary directory on a free loopback port, with a password, as
//! the `postgres` system user when the test runs as root (PostgreSQL
//! refuses root): users in EMQX's table layout, allow, deny, a superuser,
//! a username that tries SQL injection, and a database that goes down.

// PostgreSQL is started before the broker, by the harness: blocking waits are fine there.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{login, subscribe_reason, Broker, VERSIONS};
use mqtt_codec::{ProtocolVersion, ReasonCode};
use sha2::Digest;

const PG_PASSWORD: &str = "pg-s3cret";

/// A PostgreSQL server of the test's own, stopped on drop.
struct Postgres {
    child: Child,
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

/// The newest PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|entry| entry.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("postgres").exists());
    versions.sort();
    versions.pop().expect("PostgreSQL is missing: install Debian's postgresql (scripts/test.sh does)")
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// `program` with `args`, as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Postgres {
    fn start() -> Postgres {
        let bin = bin_dir();
        let mut dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), PG_PASSWORD).unwrap();
        if running_as_root() {
            let owner = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(owner.is_ok_and(|status| status.success()), "chown the data directory to postgres");
        }
        let data = dir.path().join("data");
        let init = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "mqtt", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", dir.path().join("pw").display()))
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        for _ in 0..3 {
            let port = common::free_port();
            let child = as_postgres(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .arg("-k")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn postgres");
            let mut server = Postgres { child, bin: bin.clone(), port, dir };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if common::listens_on(server.child.id(), port) {
                    return server;
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
        }
        panic!("postgres did not start");
    }

    /// Runs SQL with psql as the `mqtt` user.
    fn sql(&self, sql: &str) {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "mqtt", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .expect("run psql");
        assert!(output.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Stops it at once, as a crash would.
    fn stop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_a_table_decide_who_connects_and_no_username_becomes_sql() {
    let mut pg = Postgres::start();
    pg.sql(
        "CREATE TABLE mqtt_user (id serial PRIMARY KEY, username text UNIQUE, password_hash text, \
         salt text, is_superuser boolean)",
    );
    for (user, password, salt, superuser) in
        [("alice", "secret", "salt-a", false), ("root", "pw", "salt-r", true)]
    {
        let hash = hex_sha256(format!("{password}{salt}").as_bytes());
        pg.sql(&format!(
            "INSERT INTO mqtt_user (username, password_hash, salt, is_superuser) \
             VALUES ('{user}', '{hash}', '{salt}', {superuser})"
        ));
    }
    let chain = format!(
        "auth.authenticators=[{{ type = \"postgresql\", server = \"127.0.0.1:{}\", database = \"postgres\", \
         username = \"mqtt\", password = \"{PG_PASSWORD}\", \
         query = \"SELECT password_hash, salt, is_superuser FROM mqtt_user WHERE username = ${{username}} LIMIT 1\", \
         password_hash = {{ algorithm = \"sha256\", salt_position = \"suffix\" }}, \
         timeout_ms = 2000, cache_entries = 0 }}, {{ type = \"builtin\" }}]",
        pg.port
    );
    let broker = Broker::start(&[&chain, "auth.allow_anonymous=deny", "auth.acl_no_match=deny"]);
    let port = broker.port;

    for version in VERSIONS {
        let (_c, reason) = login(port, version, "a", "alice", "secret").await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
        let (_c, reason) = login(port, version, "a2", "alice", "wrong").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
    }
    // A superuser from the table passes every authorizer; others meet
    // acl_no_match = deny.
    let (mut root, reason) = login(port, ProtocolVersion::V5, "rs", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut root, "any/#").await, ReasonCode::GRANTED_QOS_0);
    let (mut alice, _) = login(port, ProtocolVersion::V5, "al", "alice", "secret").await;
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED);

    // Pasted into the SQL, these would find alice's row (and her password
    // would match); bound, they are usernames no row has: no such user,
    // and the built-in provider (no anonymous clients) refuses.
    for sneaky in ["x' OR username = 'alice", "alice' --", "alice'; DROP TABLE mqtt_user; --"] {
        let (_c, reason) = login(port, ProtocolVersion::V5, "s", sneaky, "secret").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{sneaky}");
    }
    let (_c, reason) = login(port, ProtocolVersion::V5, "a3", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "the table is still there");

    // Down: on_error = deny, within the timeout.
    pg.stop();
    let started = Instant::now();
    let (_c, reason) = login(port, ProtocolVersion::V5, "d", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "database down: on_error = deny");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}
