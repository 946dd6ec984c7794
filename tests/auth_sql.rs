//! The SQL authenticators against real servers from Debian's packages
//! (`scripts/test.sh` installs them), each started by the test in a
//! temporary directory on a free loopback port with a password:
//! PostgreSQL (`type = "postgresql"`, run as the `postgres` system user when
//! the test runs as root: PostgreSQL refuses root) and MariaDB (`type =
//! "mysql"`, with EMQX's MySQL layout, `is_superuser tinyint(1)`). For each:
//! allow, deny, a superuser, usernames that try SQL injection, and a
//! database that goes down.

// The databases are started before the broker, by the harness: blocking waits are fine there.
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
            if common::wait_listening(&mut server.child, port, Duration::from_secs(20)).is_ok() {
                return server;
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

const DB_PASSWORD: &str = "my-s3cret";

/// A MariaDB server of the test's own, killed on drop.
struct Mariadb {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mariadb {
    fn start() -> Mariadb {
        assert!(
            Command::new("mariadbd").arg("--version").output().is_ok_and(|o| o.status.success()),
            "mariadbd is missing: install Debian's mariadb-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let init = Command::new("mariadb-install-db")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--skip-test-db", "--auth-root-authentication-method=socket"])
            .output()
            .expect("run mariadb-install-db");
        assert!(init.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&init.stderr));
        let port = common::free_port();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", dir.path().join("err").display()))
            .args(["--user=root", "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin"])
            .args(["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M"])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        let mut server = Mariadb { child, port, dir };
        if let Err(why) = common::wait_listening(&mut server.child, port, Duration::from_secs(30)) {
            let log = std::fs::read_to_string(server.dir.path().join("err")).unwrap_or_default();
            panic!("mariadbd: {why}: {log}");
        }
        server.root(&format!(
            "CREATE DATABASE mqtt; CREATE USER 'mqtt'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; \
             GRANT ALL ON mqtt.* TO 'mqtt'@'127.0.0.1';"
        ));
        server
    }

    /// Runs SQL as the server's root user, over its socket.
    fn root(&self, sql: &str) {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.path().join("sock").display()))
            .args(["-u", "root", "-e", sql])
            .output()
            .expect("run mariadb");
        assert!(output.status.success(), "mariadb {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The users every database gets: (username, password, salt, superuser),
/// sha256 of password then salt.
const USERS: [(&str, &str, &str, bool); 2] =
    [("alice", "secret", "salt-a", false), ("root", "pw", "salt-r", true)];

fn insert(table: &str, superuser: fn(bool) -> &'static str) -> String {
    USERS
        .iter()
        .map(|(user, password, salt, is_superuser)| {
            let hash = hex_sha256(format!("{password}{salt}").as_bytes());
            format!(
                "INSERT INTO {table} (username, password_hash, salt, is_superuser) \
                 VALUES ('{user}', '{hash}', '{salt}', {});",
                superuser(*is_superuser)
            )
        })
        .collect()
}

/// The chain entry for a `kind` database at `port`.
fn chain(kind: &str, port: u16, database: &str, password: &str) -> String {
    format!(
        "auth.authenticators=[{{ type = \"{kind}\", server = \"127.0.0.1:{port}\", database = \"{database}\", \
         username = \"mqtt\", password = \"{password}\", \
         query = \"SELECT password_hash, salt, is_superuser FROM mqtt_user WHERE username = ${{username}} LIMIT 1\", \
         password_hash = {{ algorithm = \"sha256\", salt_position = \"suffix\" }}, \
         timeout_ms = 2000, cache_entries = 0 }}, {{ type = \"builtin\" }}]"
    )
}

/// What every SQL authenticator must do, against a broker whose chain is
/// `chain`; `stop` takes the database down.
async fn exercise(chain: &str, stop: impl FnOnce()) {
    let broker = Broker::start(&[chain, "auth.allow_anonymous=deny", "auth.acl_no_match=deny"]);
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
    assert_eq!(subscribe_reason(&mut root, "any/#").await, ReasonCode::GRANTED_QOS_0, "a superuser");
    let (mut alice, _) = login(port, ProtocolVersion::V5, "al", "alice", "secret").await;
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED, "not a superuser");

    // Pasted into the SQL, these would find alice's row (and her password
    // would match); bound, they are usernames no row has: no such user,
    // and the built-in provider (no anonymous clients) refuses.
    for sneaky in ["x' OR username = 'alice", "alice' -- ", "alice'; DROP TABLE mqtt_user; -- "] {
        let (_c, reason) = login(port, ProtocolVersion::V5, "s", sneaky, "secret").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{sneaky}");
    }
    let (_c, reason) = login(port, ProtocolVersion::V5, "a3", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "the table is still there");

    // Down: on_error = deny, within the timeout.
    stop();
    let started = Instant::now();
    let (_c, reason) = login(port, ProtocolVersion::V5, "d", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "database down: on_error = deny");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_users_decide_who_connects_and_no_username_becomes_sql() {
    let mut pg = Postgres::start();
    pg.sql("CREATE TABLE mqtt_user (id serial PRIMARY KEY, username text UNIQUE, password_hash text, salt text, is_superuser boolean)");
    pg.sql(&insert("mqtt_user", |superuser| if superuser { "true" } else { "false" }));
    let chain = chain("postgresql", pg.port, "postgres", PG_PASSWORD);
    exercise(&chain, || pg.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_users_decide_who_connects_and_no_username_becomes_sql() {
    let mut db = Mariadb::start();
    db.root(
        "CREATE TABLE mqtt.mqtt_user (id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(100) UNIQUE, \
         password_hash VARCHAR(100), salt VARCHAR(40), is_superuser TINYINT(1) DEFAULT 0)",
    );
    db.root(&insert("mqtt.mqtt_user", |superuser| if superuser { "1" } else { "0" }));
    let chain = chain("mysql", db.port, "mqtt", DB_PASSWORD);
    exercise(&chain, || db.stop()).await;
}
