//! The SQL authenticators against real servers from Debian's packages
//! (`scripts/test.sh` installs them), each started by the test in a
//! temporary directory on a free loopback port with a password:
//! PostgreSQL (`type = "postgresql"`, run as the `postgres` system user when
//! the test runs as root: PostgreSQL refuses root) and MariaDB (`type =
//! "mysql"`, with EMQX's MySQL layout, `is_superuser tinyint(1)`). For each:
//! allow, deny, a superuser, usernames that try SQL injection, and a
//! database that goes down; and the SQL authorizers with EMQX's `mqtt_acl`
//! layout: rule order, placeholders, QoS and retain conditions, client ids
//! that try SQL injection, rules changed in the table, a database down.

// The databases are started before the broker, by the harness: blocking waits are fine there.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{login, subscribe_reason, Broker, VERSIONS};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};
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
        Postgres::start_with(None)
    }

    /// With `pki`, TLS on (`ssl = on`) with its server certificate.
    fn start_with(pki: Option<&common::TestPki>) -> Postgres {
        let bin = bin_dir();
        let mut dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), PG_PASSWORD).unwrap();
        if let Some(pki) = pki {
            std::fs::write(dir.path().join("server.crt"), &pki.cert).unwrap();
            std::fs::write(dir.path().join("server.key"), &pki.key).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
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
            let mut command = as_postgres(&bin.join("postgres"));
            if pki.is_some() {
                let file = |name: &str| dir.path().join(name).display().to_string();
                command.args(["-c", "ssl=on", "-c", &format!("ssl_cert_file={}", file("server.crt"))]);
                command.args(["-c", &format!("ssl_key_file={}", file("server.key"))]);
            }
            let child = command
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
        // A temporary directory of its own: instances started at once (the
        // tests run in parallel) must not share /tmp's temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let init = Command::new("mariadb-install-db")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--user=root", "--skip-test-db", "--auth-root-authentication-method=socket"])
            .output()
            .expect("run mariadb-install-db");
        assert!(init.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&init.stderr));
        let port = common::free_port();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
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

/// The publish's acknowledgement reason: PUBACK's at QoS 1, PUBREC's at
/// QoS 2 (the exchange completed when it succeeded).
async fn ack(client: &mut common::Client, topic: &str, qos: QoS, retain: bool, packet_id: u16) -> ReasonCode {
    let publish = Publish {
        qos,
        retain,
        topic: topic.into(),
        packet_id: Some(packet_id),
        payload: b"x".to_vec().into(),
        ..Default::default()
    };
    client.send(&Packet::Publish(publish)).await;
    match client.recv().await {
        Some(Packet::PubAck(ack)) if qos == QoS::AtLeastOnce => ack.reason,
        Some(Packet::PubRec(rec)) if qos == QoS::ExactlyOnce => {
            if rec.reason.0 < 0x80 {
                client.send(&Packet::PubRel(PubAck { packet_id, ..Default::default() })).await;
                assert!(matches!(client.recv().await, Some(Packet::PubComp(_))));
            }
            rec.reason
        }
        other => panic!("expected the acknowledgement, got {other:?}"),
    }
}

fn allowed(reason: ReasonCode) -> bool {
    reason == ReasonCode::SUCCESS || reason == ReasonCode::NO_MATCHING_SUBSCRIBERS
}

/// EMQX's `mqtt_acl` rows for the client `dev-1`, in id order.
const RULES: [(&str, &str, &str, &str, &str); 3] = [
    // (permission, action, topic, qos, retain)
    ("deny", "all", "dev/secret/#", "NULL", "NULL"),
    ("allow", "publish", "dev/${clientid}/up", "1", "0"),
    ("allow", "subscribe", "dev/#", "NULL", "NULL"),
];

fn insert_rules(table: &str) -> String {
    RULES
        .iter()
        .map(|(permission, action, topic, qos, retain)| {
            format!(
                "INSERT INTO {table} (clientid, permission, action, topic, qos, retain) \
                 VALUES ('dev-1', '{permission}', '{action}', '{topic}', {qos}, {retain});"
            )
        })
        .collect()
}

/// A database the tests run SQL on and stop.
trait Database {
    fn run(&self, sql: &str);
    fn halt(&mut self);
}

impl Database for Postgres {
    fn run(&self, sql: &str) {
        self.sql(sql)
    }
    fn halt(&mut self) {
        self.stop()
    }
}

impl Database for Mariadb {
    fn run(&self, sql: &str) {
        self.root(sql)
    }
    fn halt(&mut self) {
        self.stop()
    }
}

/// What every SQL authorizer must do: `entry` reads the rules by client
/// id from `table` of `db`.
async fn exercise_rules(entry: &str, db: &mut impl Database, table: &str) {
    let broker = Broker::start(&[
        &format!("auth.authorizers=[{entry}, {{ type = \"builtin\" }}]"),
        "auth.acl_no_match=deny",
    ]);
    let port = broker.port;
    let mut dev = common::Client::connect(port, ProtocolVersion::V5, "dev-1", true).await;
    assert!(allowed(ack(&mut dev, "dev/dev-1/up", QoS::AtLeastOnce, false, 1).await), "rule 2");
    for (topic, qos, retain, why) in [
        ("dev/dev-2/up", QoS::AtLeastOnce, false, "another client's topic"),
        ("dev/secret/up", QoS::AtLeastOnce, false, "rule 1 denies"),
        ("dev/dev-1/up", QoS::ExactlyOnce, false, "rule 2 is for QoS 1 only"),
        ("dev/dev-1/up", QoS::AtLeastOnce, true, "rule 2 is for retain = 0 only"),
        ("elsewhere", QoS::AtLeastOnce, false, "no rule: acl_no_match = deny"),
    ] {
        assert_eq!(ack(&mut dev, topic, qos, retain, 2).await, ReasonCode::NOT_AUTHORIZED, "{why}");
    }
    assert_eq!(subscribe_reason(&mut dev, "dev/dev-1/down").await, ReasonCode::GRANTED_QOS_0);
    assert_eq!(subscribe_reason(&mut dev, "dev/#").await, ReasonCode::NOT_AUTHORIZED, "reaches dev/secret");
    // Another client has no rows; a client id that tries to be SQL is bound.
    for other in ["dev-2", "x' OR clientid = 'dev-1", "dev-1' -- "] {
        let mut client = common::Client::connect(port, ProtocolVersion::V5, other, true).await;
        let topic = format!("dev/{}/up", other.replace(['/', '+', '#'], "_"));
        assert_eq!(
            ack(&mut client, &topic, QoS::AtLeastOnce, false, 1).await,
            ReasonCode::NOT_AUTHORIZED,
            "{other}"
        );
    }

    // A rule added to the table reaches the connected client once its
    // rules are refreshed (refresh_s = 1).
    db.run(&format!(
        "INSERT INTO {table} (clientid, permission, action, topic) VALUES ('dev-1', 'allow', 'publish', 'dev/new');"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut packet_id = 10;
    while !allowed(ack(&mut dev, "dev/new", QoS::AtLeastOnce, false, packet_id).await) {
        assert!(Instant::now() < deadline, "the new rule was never read");
        packet_id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A rule removed from the table takes the subscription it granted
    // away once the client's rules are read again (every refresh_s, even
    // for a client that only listens).
    db.run(&format!(
        "INSERT INTO {table} (clientid, permission, action, topic) VALUES ('pub-1', 'allow', 'publish', 'dev/#');"
    ));
    let mut publisher = common::Client::connect(port, ProtocolVersion::V5, "pub-1", true).await;
    assert!(allowed(ack(&mut publisher, "dev/dev-1/down", QoS::AtLeastOnce, false, 1).await));
    assert_eq!(dev.expect_publish().await.topic, "dev/dev-1/down", "subscribed by rule 3");
    db.run(&format!("DELETE FROM {table} WHERE clientid = 'dev-1' AND action = 'subscribe';"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(allowed(ack(&mut publisher, "dev/dev-1/down", QoS::AtLeastOnce, false, 2).await));
        match dev.recv_within(Duration::from_millis(300)).await {
            None => break,
            Some(Packet::Publish(_)) => {}
            other => panic!("expected a PUBLISH or nothing, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "the subscription was never dropped");
    }
    packet_id += 1;
    assert!(
        allowed(ack(&mut dev, "dev/dev-1/up", QoS::AtLeastOnce, false, packet_id).await),
        "still connected"
    );
    assert_eq!(subscribe_reason(&mut dev, "dev/dev-1/down").await, ReasonCode::NOT_AUTHORIZED);

    // The database goes down: the connected client keeps the rules it
    // holds; a client connecting now gets none (on_error = ignore: the
    // built-in rules, none, then acl_no_match = deny).
    db.halt();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(allowed(ack(&mut dev, "dev/dev-1/up", QoS::AtLeastOnce, false, 3).await), "held rules");
    let mut late = common::Client::connect(port, ProtocolVersion::V5, "dev-3", true).await;
    assert_eq!(ack(&mut late, "dev/dev-3/up", QoS::AtLeastOnce, false, 1).await, ReasonCode::NOT_AUTHORIZED);
    assert!(allowed(ack(&mut dev, "dev/dev-1/up", QoS::AtLeastOnce, false, 4).await), "still held");
}

fn rules_entry(kind: &str, port: u16, database: &str, password: &str) -> String {
    format!(
        "{{ type = \"{kind}\", server = \"127.0.0.1:{port}\", database = \"{database}\", \
         username = \"mqtt\", password = \"{password}\", \
         query = \"SELECT permission, action, topic, qos, retain FROM mqtt_acl WHERE clientid = ${{clientid}} ORDER BY id\", \
         timeout_ms = 1000, refresh_s = 1 }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_rules_decide_what_a_client_may_do() {
    let mut pg = Postgres::start();
    pg.sql(
        "CREATE TABLE mqtt_acl (id serial PRIMARY KEY, ipaddress text NOT NULL DEFAULT '', \
         username text NOT NULL DEFAULT '', clientid text NOT NULL DEFAULT '', action text NOT NULL, \
         permission text NOT NULL, topic text NOT NULL, qos smallint, retain smallint)",
    );
    pg.sql(&insert_rules("mqtt_acl"));
    let entry = rules_entry("postgresql", pg.port, "postgres", PG_PASSWORD);
    exercise_rules(&entry, &mut pg, "mqtt_acl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_rules_decide_what_a_client_may_do() {
    let mut db = Mariadb::start();
    // EMQX's MySQL layout.
    db.root(
        "CREATE TABLE mqtt.mqtt_acl (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         ipaddress VARCHAR(60) NOT NULL DEFAULT '', username VARCHAR(255) NOT NULL DEFAULT '', \
         clientid VARCHAR(255) NOT NULL DEFAULT '', action ENUM('publish', 'subscribe', 'all') NOT NULL, \
         permission ENUM('allow', 'deny') NOT NULL, topic VARCHAR(255) NOT NULL DEFAULT '', \
         qos TINYINT(1), retain TINYINT(1))",
    );
    db.root(&insert_rules("mqtt.mqtt_acl"));
    let entry = rules_entry("mysql", db.port, "mqtt", DB_PASSWORD);
    exercise_rules(&entry, &mut db, "mqtt.mqtt_acl").await;
}

/// TLS to PostgreSQL: `verify_full` with the CA that signed the server's
/// certificate connects; with another CA, or `require` against a server
/// without TLS, the check fails (on_error = deny: 0x88).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_over_tls_verifies_the_server_certificate() {
    let pki = common::test_pki("pg", &["127.0.0.1"]);
    let mut pg = Postgres::start_with(Some(&pki));
    pg.sql("CREATE TABLE mqtt_user (id serial PRIMARY KEY, username text UNIQUE, password_hash text, salt text, is_superuser boolean)");
    pg.sql(&insert("mqtt_user", |superuser| if superuser { "true" } else { "false" }));
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ca.pem");
    std::fs::write(&ours, &pki.ca).unwrap();
    let theirs = dir.path().join("other.pem");
    std::fs::write(&theirs, common::test_pki("other", &["127.0.0.1"]).ca).unwrap();
    let entry = |tls: &str, ca: &std::path::Path| {
        format!(
            "auth.authenticators=[{{ type = \"postgresql\", server = \"127.0.0.1:{}\", database = \"postgres\", \
             username = \"mqtt\", password = \"{PG_PASSWORD}\", tls = \"{tls}\", ca_file = \"{}\", \
             query = \"SELECT password_hash, salt FROM mqtt_user WHERE username = ${{username}}\", \
             password_hash = {{ algorithm = \"sha256\", salt_position = \"suffix\" }}, timeout_ms = 2000 }}]",
            pg.port,
            ca.display()
        )
    };
    let broker = Broker::start(&[&entry("verify_full", &ours)]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "TLS with the server's CA");
    let broker = Broker::start(&[&entry("verify_full", &theirs)]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "another CA: no connection");
    pg.stop();

    let plain = Postgres::start();
    plain.sql("CREATE TABLE mqtt_user (username text, password_hash text, salt text)");
    let required = format!(
        "auth.authenticators=[{{ type = \"postgresql\", server = \"127.0.0.1:{}\", database = \"postgres\", \
         username = \"mqtt\", password = \"{PG_PASSWORD}\", tls = \"require\", \
         query = \"SELECT password_hash FROM mqtt_user WHERE username = ${{username}}\", \
         password_hash = {{ algorithm = \"plain\" }}, timeout_ms = 2000 }}]",
        plain.port
    );
    let broker = Broker::start(&[&required]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "tls = require and a server without TLS");
}
