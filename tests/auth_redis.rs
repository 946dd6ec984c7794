//! The `redis` authenticator against a real `redis-server` (Debian's
//! redis-server package; `scripts/test.sh` installs it), started by the
//! test on a free loopback port with a password: users as EMQX stores them
//! (sha256 with a salt, a superuser flag), allow, deny, ignore (no such
//! user: the next authenticator decides), a username that tries to be more
//! than one Redis argument, a Redis that hangs or is down (the configured
//! outcome within the timeout, while connected clients keep publishing),
//! and a Redis back again.

// Redis is started before the broker, by the harness: a blocking wait is fine there.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{login, login_while_talking, subscribe_reason, Broker, VERSIONS};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};
use sha2::Digest;

const REDIS_PASSWORD: &str = "redis-s3cret";

/// A `redis-server` of the test's own, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    /// With TLS only: the CA that signed the server's certificate.
    ca_file: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(false)
    }

    /// With `tls`, TLS only (no plain port), a certificate for 127.0.0.1
    /// from a CA of the test's own.
    fn start_with(tls: bool) -> Redis {
        assert!(
            Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success()),
            "redis-server is missing: install Debian's redis-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca_file = tls.then(|| {
            let pki = common::test_pki("redis", &["127.0.0.1"]);
            std::fs::write(dir.path().join("ca.pem"), pki.ca).unwrap();
            std::fs::write(dir.path().join("cert.pem"), pki.cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), pki.key).unwrap();
            dir.path().join("ca.pem")
        });
        for _ in 0..3 {
            let port = common::free_port();
            let mut command = Command::new("redis-server");
            if tls {
                let file = |name: &str| dir.path().join(name).display().to_string();
                command.args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"]);
                command.args(["--tls-cert-file", &file("cert.pem"), "--tls-key-file", &file("key.pem")]);
                command.args(["--tls-ca-cert-file", &file("ca.pem")]);
            } else {
                command.args(["--port", &port.to_string()]);
            }
            let child = command
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--requirepass", REDIS_PASSWORD])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut redis =
                Redis { child, port, ca_file: ca_file.clone(), _dir: tempfile::tempdir().unwrap() };
            if common::wait_listening(&mut redis.child, port, Duration::from_secs(10)).is_ok() {
                redis._dir = dir;
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// Runs a command with redis-cli; returns its output.
    fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        if let Some(ca) = &self.ca_file {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        let output = command
            .args(["-p", &self.port.to_string(), "--no-auth-warning", "-a", REDIS_PASSWORD])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a user as EMQX's documentation shows it: sha256 of password then
/// salt (`salt_position = "suffix"`), in hex.
fn add_user(redis: &Redis, username: &str, password: &str, salt: &str, superuser: bool) {
    let hash = hex_sha256(format!("{password}{salt}").as_bytes());
    let key = format!("mqtt_user:{username}");
    let superuser = if superuser { "1" } else { "0" };
    redis.cli(&["HSET", &key, "password_hash", &hash, "salt", salt, "is_superuser", superuser]);
}

fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn chain(redis: &Redis, on_error: &str, extra: &str) -> String {
    format!(
        "auth.authenticators=[{{ type = \"redis\", server = \"127.0.0.1:{}\", password = \"{REDIS_PASSWORD}\", \
         cmd = \"HMGET mqtt_user:${{username}} password_hash salt is_superuser\", \
         password_hash = {{ algorithm = \"sha256\", salt_position = \"suffix\" }}, \
         timeout_ms = 500, on_error = \"{on_error}\"{extra} }}, {{ type = \"builtin\" }}]",
        redis.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_redis_decide_who_connects_and_its_failures_follow_on_error() {
    let redis = Redis::start();
    add_user(&redis, "alice", "secret", "salt-a", false);
    add_user(&redis, "root", "pw", "salt-r", true);
    // No cache: every CONNECT asks Redis.
    let broker = Broker::start(&[&chain(&redis, "deny", ", cache_entries = 0"), "auth.acl_no_match=deny"]);
    let port = broker.port;

    for version in VERSIONS {
        let (_c, reason) = login(port, version, "a", "alice", "secret").await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
        let (_c, reason) = login(port, version, "a2", "alice", "wrong").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
        // The salt is the user's: the right password with the other salt
        // order does not pass.
        let (_c, reason) = login(port, version, "a3", "alice", "salt-asecret").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
        // No such user in Redis: ignored, the built-in provider decides
        // (anonymous from loopback).
        let (_c, reason) = login(port, version, "c", "carol", "x").await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
    }
    // A superuser from Redis passes every authorizer; others meet
    // acl_no_match = deny.
    let (mut root, reason) = login(port, ProtocolVersion::V5, "rs", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut root, "any/#").await, ReasonCode::GRANTED_QOS_0);
    let (mut alice, _) = login(port, ProtocolVersion::V5, "al", "alice", "secret").await;
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED);

    // A username that tries to be a second command stays one key.
    let sneaky = "x password_hash\r\nFLUSHALL\r\nHMGET y";
    let (_c, reason) = login(port, ProtocolVersion::V5, "s", sneaky, "nope").await;
    assert_eq!(
        reason,
        ReasonCode::SUCCESS,
        "no such user: the built-in provider's loopback anonymous policy"
    );
    assert_eq!(redis.cli(&["EXISTS", "mqtt_user:alice"]), "1", "nothing flushed");
    let (_c, reason) = login(port, ProtocolVersion::V5, "a4", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    // A password changed in Redis counts at once (no cache here).
    add_user(&redis, "alice", "changed", "salt-b", false);
    let (_c, reason) = login(port, ProtocolVersion::V5, "a5", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_c, reason) = login(port, ProtocolVersion::V5, "a6", "alice", "changed").await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    // Redis hangs (stopped): a CONNECT gets on_error = deny within the
    // timeout, while a client that is in keeps publishing.
    let (mut talker, _) = login(port, ProtocolVersion::V5, "t", "root", "pw").await;
    talker.subscribe("t/#", QoS::AtMostOnce).await;
    redis.signal("STOP");
    let (reason, took) = login_while_talking(port, &mut talker, "h", "alice", "changed").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "a hanging Redis: on_error = deny");
    assert!(took < Duration::from_secs(3), "answered within the timeout: {took:?}");
    // Back: used again (the connection may have been dropped and made anew).
    redis.signal("CONT");
    common::eventually("Redis answers again", || async {
        login(port, ProtocolVersion::V5, "b", "alice", "changed").await.1 == ReasonCode::SUCCESS
    })
    .await;

    // Down: refused connections give the same outcome, fast.
    drop(redis);
    let started = Instant::now();
    let (_c, reason) = login(port, ProtocolVersion::V5, "d", "alice", "changed").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "Redis down: on_error = deny");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_ignore_asks_the_next_and_results_are_cached() {
    let redis = Redis::start();
    add_user(&redis, "root", "pw", "s", true);
    let broker = Broker::start(&[&chain(&redis, "ignore", ""), "auth.allow_anonymous=deny"]);
    let port = broker.port;
    let (_c, reason) = login(port, ProtocolVersion::V5, "r", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    drop(redis);
    // Down, on_error = ignore: the built-in provider decides (and refuses:
    // no anonymous clients, no such user)...
    let (_c, reason) = login(port, ProtocolVersion::V5, "x", "root", "wrong").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // ...but the result cached while Redis was up still lets root in.
    let (_c, reason) = login(port, ProtocolVersion::V5, "r", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "cached");
}

/// The `redis` authorizer with EMQX's layout (`HGETALL mqtt_acl:${username}`,
/// topic → action): what the hash allows, a deny that a wider allow cannot
/// undo, QoS conditions, rules changed in Redis, and Redis down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_in_redis_decide_what_a_user_may_do() {
    let redis = Redis::start();
    add_user(&redis, "alice", "secret", "s", false);
    redis.cli(&["HSET", "mqtt_acl:alice", "alice/#", "all"]);
    redis.cli(&["HSET", "mqtt_acl:alice", "alice/secret/#", r#"{"permission": "deny", "action": "all"}"#]);
    redis.cli(&["HSET", "mqtt_acl:alice", "shared/in", r#"{"action": "publish", "qos": 1}"#]);
    let authz = format!(
        "auth.authorizers=[{{ type = \"redis\", server = \"127.0.0.1:{}\", password = \"{REDIS_PASSWORD}\", \
         cmd = \"HGETALL mqtt_acl:${{username}}\", timeout_ms = 500, refresh_s = 1 }}]",
        redis.port
    );
    let broker = Broker::start(&[&chain(&redis, "deny", ""), &authz, "auth.acl_no_match=deny"]);
    let port = broker.port;

    let (mut alice, reason) = login(port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut alice, "alice/inbox/#").await, ReasonCode::GRANTED_QOS_0);
    assert_eq!(subscribe_reason(&mut alice, "alice/#").await, ReasonCode::NOT_AUTHORIZED, "reaches the deny");
    assert_eq!(subscribe_reason(&mut alice, "alice/secret/x").await, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(subscribe_reason(&mut alice, "bob/#").await, ReasonCode::NOT_AUTHORIZED, "no rule");
    assert_eq!(subscribe_reason(&mut alice, "shared/in").await, ReasonCode::NOT_AUTHORIZED, "publish only");
    let reason = alice.publish_reason("shared/in", b"x", 1).await;
    assert!(reason == ReasonCode::SUCCESS || reason == ReasonCode::NO_MATCHING_SUBSCRIBERS, "{reason:?}");
    assert_eq!(alice.publish_reason("alice/secret/x", b"x", 2).await, ReasonCode::NOT_AUTHORIZED);

    // A rule added in Redis is read once the held ones are a second old.
    redis.cli(&["HSET", "mqtt_acl:alice", "bob/#", "subscribe"]);
    common::eventually("the new rule is read", || async {
        let (mut again, _) = login(port, ProtocolVersion::V5, "a2", "alice", "secret").await;
        subscribe_reason(&mut again, "bob/x").await == ReasonCode::GRANTED_QOS_0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribe_reason(&mut alice, "bob/y").await != ReasonCode::GRANTED_QOS_0 {
        assert!(Instant::now() < deadline, "the connected client's rules were never refreshed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Redis stopped: the connected client keeps what it holds.
    redis.signal("STOP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(subscribe_reason(&mut alice, "alice/inbox/2").await, ReasonCode::GRANTED_QOS_0, "held rules");
    assert_eq!(
        subscribe_reason(&mut alice, "alice/secret/2").await,
        ReasonCode::NOT_AUTHORIZED,
        "held denies"
    );
}

/// TLS to Redis: a TLS-only server, its certificate verified against the
/// CA in `ca_file`; another CA, or no TLS, gets no answer (on_error = deny).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_verifies_the_server_certificate() {
    let redis = Redis::start_with(true);
    add_user(&redis, "alice", "secret", "s", false);
    let ca = redis.ca_file.clone().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("other.pem");
    std::fs::write(&other, common::test_pki("other", &["127.0.0.1"]).ca).unwrap();
    let tls = |ca: &std::path::Path| format!(", tls = true, ca_file = \"{}\"", ca.display());
    let broker = Broker::start(&[&chain(&redis, "deny", &tls(&ca))]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "TLS with the server's CA");
    let broker = Broker::start(&[&chain(&redis, "deny", &tls(&other))]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "another CA");
    let broker = Broker::start(&[&chain(&redis, "deny", "")]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "plain TCP to a TLS-only server");
}

/// Redis processes of the test's own (a cluster's nodes, a master and its
/// Sentinel), killed on drop.
struct Processes {
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--no-auth-warning", "-a", REDIS_PASSWORD])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(output.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn spawn_redis(processes: &mut Processes, args: &[&str]) {
    let child = Command::new("redis-server")
        .args(args)
        .current_dir(processes.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    processes.children.push(child);
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mode = "cluster"`: users spread over a three-node Redis Cluster's
/// slots are found wherever their key lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_holds_the_users() {
    let mut nodes = Processes { children: Vec::new(), dir: tempfile::tempdir().unwrap() };
    let ports = common::free_ports::<3>();
    for port in ports {
        let port = port.to_string();
        let config = format!("nodes-{port}.conf");
        spawn_redis(
            &mut nodes,
            &[
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
            ]
            .into_iter()
            .chain(["--save", "", "--appendonly", "no", "--requirepass", REDIS_PASSWORD])
            .chain(["--masterauth", REDIS_PASSWORD])
            .collect::<Vec<_>>(),
        );
    }
    for (child, port) in nodes.children.iter_mut().zip(ports) {
        common::wait_listening(child, port, Duration::from_secs(10)).expect("a cluster node listens");
    }
    let addresses: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.push("--cluster-yes");
    redis_cli(ports[0], &create);
    wait_for("the cluster is ok", || {
        ports.iter().all(|port| redis_cli(*port, &["cluster", "info"]).contains("cluster_state:ok"))
    });
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    for (n, name) in users.iter().enumerate() {
        let hash = hex_sha256(format!("pw-{n}salt").as_bytes());
        let key = format!("mqtt_user:{name}");
        redis_cli(ports[0], &["-c", "HSET", &key, "password_hash", &hash, "salt", "salt"]);
    }
    let slots: std::collections::BTreeSet<String> = users
        .iter()
        .map(|name| redis_cli(ports[0], &["cluster", "keyslot", &format!("mqtt_user:{name}")]))
        .collect();
    assert!(slots.len() > 1, "the keys are spread over slots");

    let chain = format!(
        "auth.authenticators=[{{ type = \"redis\", mode = \"cluster\", servers = \"{}\", password = \"{REDIS_PASSWORD}\", \
         cmd = \"HMGET mqtt_user:${{username}} password_hash salt\", \
         password_hash = {{ algorithm = \"sha256\", salt_position = \"suffix\" }}, timeout_ms = 2000 }}]",
        addresses.join(",")
    );
    let broker = Broker::start(&[&chain, "auth.allow_anonymous=deny"]);
    for (n, name) in users.iter().enumerate() {
        let (_c, reason) = login(broker.port, ProtocolVersion::V5, "c", name, &format!("pw-{n}")).await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{name}");
        let (_c, reason) = login(broker.port, ProtocolVersion::V5, "c", name, "wrong").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{name}");
    }
}

/// `mode = "sentinel"`: the master is the one the Sentinel names; when it
/// dies and the Sentinel promotes its replica, logins go on against the new
/// master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_names_the_master_and_a_failover_is_followed() {
    let mut processes = Processes { children: Vec::new(), dir: tempfile::tempdir().unwrap() };
    let [master, replica, sentinel] = common::free_ports();
    let auth = ["--requirepass", REDIS_PASSWORD, "--masterauth", REDIS_PASSWORD];
    let common_args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    let (master_port, replica_port) = (master.to_string(), replica.to_string());
    let master_args: Vec<&str> =
        ["--port", master_port.as_str()].into_iter().chain(common_args).chain(auth).collect();
    spawn_redis(&mut processes, &master_args);
    let replica_args: Vec<&str> =
        ["--port", replica_port.as_str(), "--replicaof", "127.0.0.1", master_port.as_str()]
            .into_iter()
            .chain(common_args)
            .chain(auth)
            .collect();
    spawn_redis(&mut processes, &replica_args);
    common::wait_listening(&mut processes.children[0], master, Duration::from_secs(10))
        .expect("the master listens");
    common::wait_listening(&mut processes.children[1], replica, Duration::from_secs(10))
        .expect("the replica listens");
    let config = processes.dir.path().join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {sentinel}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master} 1\n\
             sentinel auth-pass mymaster {REDIS_PASSWORD}\nsentinel down-after-milliseconds mymaster 500\n\
             sentinel failover-timeout mymaster 2000\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    spawn_redis(&mut processes, &[&config, "--sentinel"]);
    common::wait_listening(&mut processes.children[2], sentinel, Duration::from_secs(10))
        .expect("the sentinel listens");
    let hash = hex_sha256(b"secretsalt");
    redis_cli(master, &["HSET", "mqtt_user:alice", "password_hash", &hash, "salt", "salt"]);
    wait_for("the replica has the user", || redis_cli(replica, &["EXISTS", "mqtt_user:alice"]) == "1");

    let chain = format!(
        "auth.authenticators=[{{ type = \"redis\", mode = \"sentinel\", servers = [\"127.0.0.1:{sentinel}\"], \
         sentinel = \"mymaster\", password = \"{REDIS_PASSWORD}\", cache_entries = 0, \
         cmd = \"HMGET mqtt_user:${{username}} password_hash salt\", \
         password_hash = {{ algorithm = \"sha256\", salt_position = \"suffix\" }}, timeout_ms = 1000 }}]"
    );
    let broker = Broker::start(&[&chain, "auth.allow_anonymous=deny"]);
    common::eventually("the sentinel answers", || async {
        login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await.1 == ReasonCode::SUCCESS
    })
    .await;
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "wrong").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // The master dies; the Sentinel promotes the replica; logins resume
    // (the connection to the dead master fails once, and the Sentinel is
    // asked again). The Sentinel learns of replicas from the master's INFO,
    // every 10 s: the master may die only once the replica is known.
    let replica_port = replica.to_string();
    wait_for("the Sentinel knows the replica", || {
        let output = Command::new("redis-cli")
            .args(["-p", &sentinel.to_string(), "SENTINEL", "replicas", "mymaster"])
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == replica_port)
    });
    let _ = processes.children[0].kill();
    let _ = processes.children[0].wait();
    wait_for("the replica is promoted", || redis_cli(replica, &["ROLE"]).starts_with("master"));
    common::eventually("logins go on against the new master", || async {
        login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await.1 == ReasonCode::SUCCESS
    })
    .await;
}
