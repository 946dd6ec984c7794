//! The `ldap` authenticator against a real OpenLDAP `slapd` (Debian's slapd
//! package; `scripts/test.sh` installs it), started by the test on free
//! loopback ports with a suffix of its own loaded by `slapadd`, plain, over
//! LDAPS and with StartTLS (a CA made by the test): users who bind as
//! themselves, users found by a service account's search, superusers by
//! group and by attribute, an unknown user that falls through to the next
//! authenticator, usernames with filter wildcards, an empty password (which
//! LDAP would read as an anonymous bind), a directory that hangs or is down
//! (the configured outcome within the timeout while connected clients keep
//! publishing), a directory back again, and a server certificate from
//! another CA.

// slapd is started before the broker, by the harness: a blocking wait is fine there.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{login, login_while_talking, subscribe_reason, Broker, VERSIONS};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};

const SUFFIX: &str = "dc=example,dc=org";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "ldap-s3cret";

/// The directory every test loads: people (alice, root, al), devices
/// (sensor-1), and the group of superusers (root).
const ENTRIES: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=devices,dc=example,dc=org
objectClass: organizationalUnit
ou: devices

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: secret

dn: uid=al,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: al
cn: Al
sn: B
userPassword: al-password

dn: uid=root,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: root
cn: Root
sn: R
userPassword: pw

dn: uid=sensor-1,ou=devices,dc=example,dc=org
objectClass: inetOrgPerson
uid: sensor-1
cn: Sensor 1
sn: S
employeeType: TRUE
userPassword: device-pw

dn: cn=mqtt-admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: mqtt-admins
member: uid=root,ou=people,dc=example,dc=org
";

/// A `slapd` of the test's own, killed on drop.
struct Slapd {
    child: Child,
    /// `ldap://` (plain and StartTLS) and `ldaps://`.
    port: u16,
    tls_port: u16,
    /// The CA that signed the server's certificate.
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Slapd {
    fn start() -> Slapd {
        assert!(
            Path::new("/usr/sbin/slapd").exists() && Path::new("/usr/sbin/slapadd").exists(),
            "slapd is missing: install Debian's slapd and ldap-utils (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let pki = common::test_pki("ldap", &["127.0.0.1"]);
        std::fs::write(path("ca.pem"), &pki.ca).unwrap();
        std::fs::write(path("cert.pem"), &pki.cert).unwrap();
        std::fs::write(path("key.pem"), &pki.key).unwrap();
        std::fs::create_dir(path("db")).unwrap();
        let config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {dir}/slapd.pid\n\
             TLSCertificateFile {dir}/cert.pem\n\
             TLSCertificateKeyFile {dir}/key.pem\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {dir}/db\n\
             access to attrs=userPassword by anonymous auth by self write by * none\n\
             access to * by users read by * none\n",
            dir = dir.path().display()
        );
        std::fs::write(path("slapd.conf"), config).unwrap();
        std::fs::write(path("entries.ldif"), ENTRIES).unwrap();
        let loaded = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(path("slapd.conf"))
            .arg("-l")
            .arg(path("entries.ldif"))
            .output()
            .expect("run slapadd");
        assert!(loaded.status.success(), "slapadd: {}", String::from_utf8_lossy(&loaded.stderr));
        for _ in 0..3 {
            let [port, tls_port] = common::free_ports();
            let child = Command::new("/usr/sbin/slapd")
                .arg("-f")
                .arg(path("slapd.conf"))
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"))
                .args(["-d", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn slapd");
            let mut slapd =
                Slapd { child, port, tls_port, ca_file: path("ca.pem"), _dir: tempfile::tempdir().unwrap() };
            if common::wait_listening(&mut slapd.child, port, Duration::from_secs(10)).is_ok()
                && common::wait_listening(&mut slapd.child, tls_port, Duration::from_secs(10)).is_ok()
            {
                slapd._dir = dir;
                return slapd;
            }
        }
        panic!("slapd did not start");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bind as `uid=${username},ou=people`, superusers by group.
fn bind_chain(slapd: &Slapd, on_error: &str) -> String {
    format!(
        "auth.authenticators=[{{ type = \"ldap\", server = \"127.0.0.1:{}\", \
         bind_dn = \"uid=${{username}},ou=people,{SUFFIX}\", \
         superuser_group = \"cn=mqtt-admins,ou=groups,{SUFFIX}\", \
         timeout_ms = 500, cache_entries = 0, on_error = \"{on_error}\" }}, {{ type = \"builtin\" }}]",
        slapd.port
    )
}

/// A search (as the admin) under `ou`, then a bind as the entry found.
fn search_entry(server: &str, tls: &str, ca_file: &Path, ou: &str) -> String {
    format!(
        "{{ type = \"ldap\", server = \"{server}\", tls = \"{tls}\", ca_file = \"{}\", \
         base_dn = \"ou={ou},{SUFFIX}\", filter = \"(&(objectClass=inetOrgPerson)(uid=${{username}}))\", \
         username = \"{ADMIN_DN}\", password = \"{ADMIN_PASSWORD}\", is_superuser_attribute = \"employeeType\", \
         timeout_ms = 2000, cache_entries = 0 }}",
        ca_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_bind_as_themselves_and_a_directory_that_fails_follows_on_error() {
    let slapd = Slapd::start();
    let broker = Broker::start(&[&bind_chain(&slapd, "deny"), "auth.acl_no_match=deny"]);
    let port = broker.port;

    for version in VERSIONS {
        let (_c, reason) = login(port, version, "a", "alice", "secret").await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
        let (_c, reason) = login(port, version, "a2", "alice", "wrong").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
        // A directory answers an unknown DN as a wrong password.
        let (_c, reason) = login(port, version, "c", "carol", "x").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
    }
    // An empty password would be an anonymous bind: refused as a wrong
    // password, before the directory is asked.
    let (_c, reason) = login(port, ProtocolVersion::V5, "e", "alice", "").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // A username that tries to be more of the DN stays one value.
    let (_c, reason) = login(port, ProtocolVersion::V5, "i", "alice,ou=people", "secret").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // The group's member is a superuser; others meet acl_no_match = deny.
    let (mut root, reason) = login(port, ProtocolVersion::V5, "r", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut root, "any/#").await, ReasonCode::GRANTED_QOS_0);
    let (mut alice, _) = login(port, ProtocolVersion::V5, "al", "alice", "secret").await;
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED);

    // The directory hangs (stopped): a CONNECT gets on_error = deny within
    // the timeout, while a client that is in keeps publishing.
    let (mut talker, _) = login(port, ProtocolVersion::V5, "t", "root", "pw").await;
    talker.subscribe("t/#", QoS::AtMostOnce).await;
    slapd.signal("STOP");
    let (reason, took) = login_while_talking(port, &mut talker, "h", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "a hanging directory: on_error = deny");
    assert!(took < Duration::from_secs(3), "answered within the timeout: {took:?}");
    slapd.signal("CONT");
    common::eventually("the directory answers again", || async {
        login(port, ProtocolVersion::V5, "b", "alice", "secret").await.1 == ReasonCode::SUCCESS
    })
    .await;

    // Down: refused connections give the same outcome, fast.
    drop(slapd);
    let started = Instant::now();
    let (_c, reason) = login(port, ProtocolVersion::V5, "d", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "directory down: on_error = deny");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_tls_finds_the_user_and_wildcards_in_a_username_find_nobody() {
    let slapd = Slapd::start();
    // People over LDAPS, devices over StartTLS: a user the first search
    // does not find falls through to the second; nobody anonymous.
    let people = search_entry(&format!("127.0.0.1:{}", slapd.tls_port), "ldaps", &slapd.ca_file, "people");
    let devices = search_entry(&format!("127.0.0.1:{}", slapd.port), "starttls", &slapd.ca_file, "devices");
    let broker = Broker::start(&[
        &format!("auth.authenticators=[{people}, {devices}, {{ type = \"builtin\" }}]"),
        "auth.allow_anonymous=deny",
        "auth.acl_no_match=deny",
    ]);
    let port = broker.port;

    for version in VERSIONS {
        let (_c, reason) = login(port, version, "a", "alice", "secret").await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
        let (_c, reason) = login(port, version, "a2", "alice", "wrong").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
        let (_c, reason) = login(port, version, "s", "sensor-1", "device-pw").await;
        assert_eq!(reason, ReasonCode::SUCCESS, "found by the second authenticator ({version:?})");
    }
    // Nobody by that name in either place: the built-in provider decides
    // (no such user, no anonymous clients).
    let (_c, reason) = login(port, ProtocolVersion::V5, "n", "nobody", "secret").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // Filter syntax in a username is matched as characters: `al*` with
    // al's password must not log in as al (nor as alice), and `*` finds
    // no one (unescaped, it would match every entry).
    for sneaky in ["al*", "a*", "*", "x)(uid=al", "al)(|(uid=*"] {
        for password in ["al-password", "secret"] {
            let (_c, reason) = login(port, ProtocolVersion::V5, "w", sneaky, password).await;
            assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{sneaky:?} / {password:?}");
        }
    }
    let (_c, reason) = login(port, ProtocolVersion::V5, "al", "al", "al-password").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "al exists: the refusals above were the escaping's");

    // The attribute makes the device a superuser; alice is not one.
    let (mut sensor, _) = login(port, ProtocolVersion::V5, "s", "sensor-1", "device-pw").await;
    assert_eq!(subscribe_reason(&mut sensor, "any/#").await, ReasonCode::GRANTED_QOS_0);
    let (mut alice, _) = login(port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_whose_certificate_another_ca_signed_is_not_trusted() {
    let slapd = Slapd::start();
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca.pem");
    std::fs::write(&other_ca, common::test_pki("other", &["127.0.0.1"]).ca).unwrap();
    let server = format!("127.0.0.1:{}", slapd.tls_port);
    let untrusted = search_entry(&server, "ldaps", &other_ca, "people");
    let broker = Broker::start(&[&format!("auth.authenticators=[{untrusted}]"), "auth.allow_anonymous=deny"]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "the TLS handshake fails: on_error = deny");
    // The same directory with its own CA: trusted.
    let trusted = search_entry(&server, "ldaps", &slapd.ca_file, "people");
    let broker = Broker::start(&[&format!("auth.authenticators=[{trusted}]"), "auth.allow_anonymous=deny"]);
    let (_c, reason) = login(broker.port, ProtocolVersion::V5, "a", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
}
