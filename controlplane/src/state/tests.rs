//! Unit tests for `ControlState::apply`: every command, accepted and refused,
//! and the snapshot round trip.

use super::*;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
const OTHER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$b3RoZXJoYXNob3RoZXJoYXNob3RoZXJoYXNo";

fn apply(state: &mut ControlState, command: Command) -> (Response, Vec<Change>) {
    let before = state.clone();
    let (response, changes) = state.apply(command);
    if let Response::Failed(_) = response {
        assert_eq!(&before, state, "a refused command changed the state");
        assert!(changes.is_empty(), "a refused command reported changes");
    }
    (response, changes)
}

fn add_user(name: &str) -> Command {
    Command::AddUser {
        username: name.to_owned(),
        password_hash: HASH.to_owned(),
        superuser: false,
        scram: None,
    }
}

fn rule(who: AclWho, filter: &str) -> AclRuleSpec {
    AclRuleSpec {
        who,
        action: AclAction::Publish,
        topic_filter: filter.to_owned(),
        permission: AclPermission::Allow,
    }
}

fn routes(node_id: u64, add: &[&str], remove: &[&str]) -> Command {
    Command::RouteBatch {
        node_id,
        add: add.iter().map(|s| s.to_string()).collect(),
        remove: remove.iter().map(|s| s.to_string()).collect(),
        share_add: vec![],
        share_remove: vec![],
        at_ms: 1,
    }
}

fn share(group: &str, filter: &str, client: &str) -> ShareSubscription {
    ShareSubscription { group: group.into(), topic_filter: filter.into(), client_id: client.into() }
}

fn heartbeat(node_id: u64, at_ms: u64) -> Command {
    Command::Heartbeat {
        node_id,
        address: format!("10.0.0.{node_id}:7000"),
        connections: 3,
        snapshot_index: 9,
        at_ms,
    }
}

fn ban(kind: BanKind, value: &str, until_ms: Option<u64>) -> Ban {
    Ban { key: BanKey { kind, value: value.into() }, reason: "test".into(), until_ms, created_ms: 1 }
}

#[test]
fn add_user_then_duplicate_is_refused() {
    let mut state = ControlState::default();
    let (response, changes) = apply(&mut state, add_user("alice"));
    assert_eq!(response, Response::Done);
    assert!(matches!(&changes[..], [Change::UserUpserted(user)] if user.username == "alice"));
    let (response, _) = apply(&mut state, add_user("alice"));
    assert_eq!(response, Response::Failed(CommandError::UserExists("alice".into())));
    assert_eq!(state.users().count(), 1);
}

#[test]
fn add_user_checks_name_and_hash() {
    let mut state = ControlState::default();
    let (response, _) = apply(&mut state, add_user(""));
    assert!(matches!(response, Response::Failed(CommandError::InvalidUsername(_))));
    let plain = Command::AddUser {
        username: "bob".into(),
        password_hash: "hunter2".into(),
        superuser: false,
        scram: None,
    };
    let (response, _) = apply(&mut state, plain);
    assert!(matches!(response, Response::Failed(CommandError::InvalidPasswordHash(_))));
}

#[test]
fn update_user() {
    let mut state = ControlState::default();
    apply(&mut state, add_user("alice"));
    let update = Command::UpdateUser {
        username: "alice".into(),
        password_hash: Some(OTHER_HASH.into()),
        superuser: Some(true),
        scram: None,
    };
    let (response, changes) = apply(&mut state, update);
    assert_eq!(response, Response::Done);
    assert_eq!(changes.len(), 1);
    let user = state.user("alice").expect("alice exists");
    assert!(user.superuser);
    assert_eq!(user.password_hash, OTHER_HASH);

    let missing = Command::UpdateUser {
        username: "nobody".into(),
        password_hash: None,
        superuser: Some(true),
        scram: None,
    };
    let (response, _) = apply(&mut state, missing);
    assert_eq!(response, Response::Failed(CommandError::UserNotFound("nobody".into())));
    let bad_hash = Command::UpdateUser {
        username: "alice".into(),
        password_hash: Some("x".into()),
        superuser: None,
        scram: None,
    };
    assert!(matches!(apply(&mut state, bad_hash).0, Response::Failed(CommandError::InvalidPasswordHash(_))));
}

#[test]
fn delete_user() {
    let mut state = ControlState::default();
    apply(&mut state, add_user("alice"));
    let (response, changes) = apply(&mut state, Command::DeleteUser { username: "alice".into() });
    assert_eq!(response, Response::Done);
    assert_eq!(changes, vec![Change::UserRemoved("alice".into())]);
    let (response, _) = apply(&mut state, Command::DeleteUser { username: "alice".into() });
    assert_eq!(response.into_result().map_err(|e| e.kind()), Err(ErrorKind::NotFound));
}

#[test]
fn acl_rules_are_ordered_and_ids_not_reused() {
    let mut state = ControlState::default();
    let (first, _) =
        apply(&mut state, Command::AddAclRule { rule: rule(AclWho::All, "a/#"), position: None });
    assert_eq!(first, Response::AclRuleAdded { id: 1 });
    let (second, changes) = apply(
        &mut state,
        Command::AddAclRule { rule: rule(AclWho::Username("u".into()), "users/%u/#"), position: Some(0) },
    );
    assert_eq!(second, Response::AclRuleAdded { id: 2 });
    assert!(matches!(&changes[..], [Change::AclReplaced(rules)] if rules.len() == 2));
    let ids: Vec<u64> = state.acl_rules().iter().map(|rule| rule.id).collect();
    assert_eq!(ids, vec![2, 1]);

    let (response, _) = apply(&mut state, Command::DeleteAclRule { id: 2 });
    assert_eq!(response, Response::Done);
    let (third, _) = apply(&mut state, Command::AddAclRule { rule: rule(AclWho::All, "b"), position: None });
    assert_eq!(third, Response::AclRuleAdded { id: 3 });
    let (missing, _) = apply(&mut state, Command::DeleteAclRule { id: 2 });
    assert_eq!(missing, Response::Failed(CommandError::AclRuleNotFound(2)));
}

#[test]
fn acl_rule_validation() {
    let mut state = ControlState::default();
    let bad_cidr =
        Command::AddAclRule { rule: rule(AclWho::IpNetwork("10.0.0.0/40".into()), "a"), position: None };
    assert!(matches!(apply(&mut state, bad_cidr).0, Response::Failed(CommandError::InvalidIpNetwork(_))));
    let bad_filter = Command::AddAclRule { rule: rule(AclWho::All, "a/#/b"), position: None };
    assert!(matches!(
        apply(&mut state, bad_filter).0,
        Response::Failed(CommandError::InvalidTopicFilter { .. })
    ));
    let bad_position = Command::AddAclRule { rule: rule(AclWho::All, "a"), position: Some(1) };
    assert!(matches!(
        apply(&mut state, bad_position).0,
        Response::Failed(CommandError::AclPositionOutOfRange { position: 1, len: 0 })
    ));
    let cidr =
        Command::AddAclRule { rule: rule(AclWho::IpNetwork("192.168.1.7/24".into()), "a"), position: None };
    assert_eq!(apply(&mut state, cidr).0, Response::AclRuleAdded { id: 1 });
    assert_eq!(state.acl_rules()[0].spec.who, AclWho::IpNetwork("192.168.1.0/24".into()));
}

#[test]
fn bans_add_replace_delete() {
    let mut state = ControlState::default();
    let (response, changes) =
        apply(&mut state, Command::AddBan { ban: ban(BanKind::IpAddress, "10.0.0.1", None) });
    assert_eq!(response, Response::Done);
    assert!(matches!(&changes[..], [Change::BanUpserted(b)] if b.key.value == "10.0.0.1/32"));
    apply(&mut state, Command::AddBan { ban: ban(BanKind::IpAddress, "10.0.0.1/32", Some(5)) });
    assert_eq!(state.bans().count(), 1, "same address, same ban");
    let delete = Command::DeleteBan { key: BanKey { kind: BanKind::IpAddress, value: "10.0.0.1".into() } };
    assert_eq!(apply(&mut state, delete.clone()).0, Response::Done);
    assert!(matches!(apply(&mut state, delete).0, Response::Failed(CommandError::BanNotFound { .. })));
    let bad = Command::AddBan { ban: ban(BanKind::IpAddress, "nope", None) };
    assert!(matches!(apply(&mut state, bad).0, Response::Failed(CommandError::InvalidIpNetwork(_))));
    let empty = Command::AddBan { ban: ban(BanKind::ClientId, "", None) };
    assert!(matches!(apply(&mut state, empty).0, Response::Failed(CommandError::InvalidValue { .. })));
}

#[test]
fn expire_bans() {
    let mut state = ControlState::default();
    apply(&mut state, Command::AddBan { ban: ban(BanKind::ClientId, "c1", Some(100)) });
    apply(&mut state, Command::AddBan { ban: ban(BanKind::Username, "u1", Some(200)) });
    apply(&mut state, Command::AddBan { ban: ban(BanKind::Username, "forever", None) });
    let (response, changes) = apply(&mut state, Command::ExpireBans { now_ms: 150 });
    assert_eq!(response, Response::Done);
    assert_eq!(changes.len(), 1);
    let remaining: Vec<&str> = state.bans().map(|b| b.key.value.as_str()).collect();
    assert_eq!(remaining, vec!["forever", "u1"]);
}

#[test]
fn config_documents() {
    let mut state = ControlState::default();
    let put =
        Command::PutConfig { kind: ConfigKind::Bridge, name: "b1".into(), json: r#"{"remote":"x"}"#.into() };
    assert_eq!(apply(&mut state, put).0, Response::Done);
    assert_eq!(state.configs(ConfigKind::Bridge).len(), 1);
    assert!(state.configs(ConfigKind::Plugin).is_empty());
    let bad = Command::PutConfig { kind: ConfigKind::Plugin, name: "p".into(), json: "{not json".into() };
    assert!(matches!(apply(&mut state, bad).0, Response::Failed(CommandError::InvalidJson { .. })));
    let delete = Command::DeleteConfig { kind: ConfigKind::Bridge, name: "b1".into() };
    assert_eq!(apply(&mut state, delete.clone()).0, Response::Done);
    assert!(matches!(apply(&mut state, delete).0, Response::Failed(CommandError::ConfigNotFound { .. })));
}

#[test]
fn route_batches_add_and_remove() {
    let mut state = ControlState::default();
    let (response, changes) = apply(&mut state, routes(1, &["a/+", "b/#"], &[]));
    assert_eq!(response, Response::Done);
    // The unknown node is recorded, and two routes are set.
    assert_eq!(changes.len(), 3);
    apply(&mut state, routes(2, &["a/+"], &[]));
    assert_eq!(state.routes()["a/+"].len(), 2);
    let (_, changes) = apply(&mut state, routes(1, &[], &["a/+", "b/#", "absent"]));
    assert_eq!(changes.len(), 2, "removing an absent filter changes nothing");
    assert_eq!(state.routes().len(), 1);
    assert!(state.routes()["a/+"].contains(&2));
    let bad = routes(1, &["ok", "a#"], &[]);
    assert!(matches!(apply(&mut state, bad).0, Response::Failed(CommandError::InvalidTopicFilter { .. })));
}

#[test]
fn route_batches_share_members() {
    let mut state = ControlState::default();
    let add = Command::RouteBatch {
        node_id: 1,
        add: vec![],
        remove: vec![],
        share_add: vec![share("g", "t/#", "c1"), share("g", "t/#", "c2")],
        share_remove: vec![],
        at_ms: 1,
    };
    apply(&mut state, add);
    let key = ShareGroupKey { group: "g".into(), topic_filter: "t/#".into() };
    assert_eq!(state.share_groups()[&key].len(), 2);
    let remove = Command::RouteBatch {
        node_id: 1,
        add: vec![],
        remove: vec![],
        share_add: vec![],
        share_remove: vec![share("g", "t/#", "c1"), share("g", "t/#", "c2")],
        at_ms: 2,
    };
    let (_, changes) = apply(&mut state, remove);
    assert!(matches!(&changes[..], [Change::ShareGroupSet { members, .. }] if members.is_empty()));
    assert!(state.share_groups().is_empty());
    let bad = Command::RouteBatch {
        node_id: 1,
        add: vec![],
        remove: vec![],
        share_add: vec![share("g/x", "t", "c")],
        share_remove: vec![],
        at_ms: 3,
    };
    assert!(matches!(apply(&mut state, bad).0, Response::Failed(CommandError::InvalidValue { .. })));
}

#[test]
fn heartbeat_records_node_and_reports_only_visible_changes() {
    let mut state = ControlState::default();
    let (response, changes) = apply(&mut state, heartbeat(1, 100));
    assert_eq!(response, Response::Done);
    assert_eq!(changes.len(), 1);
    let (_, changes) = apply(&mut state, heartbeat(1, 200));
    assert!(changes.is_empty(), "same address and state: no delta");
    let node = state.dataplane_node(1).expect("node 1");
    assert_eq!(node.last_heartbeat_ms, 200);
    assert_eq!(node.state, DataPlaneState::Up);
    assert_eq!(node.connections, 3);
}

#[test]
fn mark_down_unless_newer_heartbeat() {
    let mut state = ControlState::default();
    apply(&mut state, heartbeat(1, 100));
    let stale = Command::MarkDataPlaneDown { node_id: 1, last_heartbeat_ms: 50, at_ms: 1000 };
    let (_, changes) = apply(&mut state, stale);
    assert!(changes.is_empty(), "a newer heartbeat was applied: no-op");
    let down = Command::MarkDataPlaneDown { node_id: 1, last_heartbeat_ms: 100, at_ms: 1000 };
    assert_eq!(apply(&mut state, down).0, Response::Done);
    assert_eq!(state.dataplane_node(1).map(|n| n.state), Some(DataPlaneState::Down { since_ms: 1000 }));
    let unknown = Command::MarkDataPlaneDown { node_id: 9, last_heartbeat_ms: 0, at_ms: 1 };
    assert_eq!(apply(&mut state, unknown), (Response::Done, vec![]));
    // A heartbeat brings it back up.
    let (_, changes) = apply(&mut state, heartbeat(1, 1100));
    assert_eq!(changes.len(), 1);
}

#[test]
fn expire_node_removes_routes_and_share_members() {
    let mut state = ControlState::default();
    apply(&mut state, heartbeat(1, 100));
    apply(&mut state, routes(1, &["a", "b"], &[]));
    apply(&mut state, routes(2, &["a"], &[]));
    apply(
        &mut state,
        Command::RouteBatch {
            node_id: 1,
            add: vec![],
            remove: vec![],
            share_add: vec![share("g", "t", "c1")],
            share_remove: vec![],
            at_ms: 1,
        },
    );
    let early = Command::ExpireDataPlaneNode { node_id: 1, down_since_ms: 1000 };
    assert_eq!(apply(&mut state, early.clone()), (Response::Done, vec![]), "still up: no-op");
    apply(&mut state, Command::MarkDataPlaneDown { node_id: 1, last_heartbeat_ms: 100, at_ms: 1000 });
    let (response, changes) = apply(&mut state, early);
    assert_eq!(response, Response::Done);
    assert!(changes.contains(&Change::DataPlaneRemoved(1)));
    assert!(state.dataplane_node(1).is_none());
    assert_eq!(state.routes().len(), 1);
    assert_eq!(state.routes()["a"].iter().copied().collect::<Vec<_>>(), vec![2]);
    assert!(state.share_groups().is_empty());
}

#[test]
fn batch_applies_each_command_alone() {
    let mut state = ControlState::default();
    let batch =
        Command::Batch(vec![add_user("a"), add_user("a"), Command::Batch(vec![]), routes(1, &["x"], &[])]);
    let (response, _) = state.apply(batch);
    let Response::Batch(responses) = response else { panic!("batch answers a batch: {response:?}") };
    assert_eq!(responses[0], Response::Done);
    assert_eq!(responses[1], Response::Failed(CommandError::UserExists("a".into())));
    assert_eq!(responses[2], Response::Failed(CommandError::NestedBatch));
    assert_eq!(responses[3], Response::Done);
    assert_eq!(state.users().count(), 1);
    assert_eq!(state.routes().len(), 1);
}

#[test]
fn snapshot_round_trip() {
    let mut state = ControlState::default();
    apply(&mut state, add_user("alice"));
    apply(
        &mut state,
        Command::AddAclRule { rule: rule(AclWho::ClientId("c".into()), "%c/#"), position: None },
    );
    apply(&mut state, Command::AddBan { ban: ban(BanKind::Username, "mallory", Some(9)) });
    apply(&mut state, Command::PutConfig { kind: ConfigKind::Plugin, name: "p".into(), json: "[1]".into() });
    apply(&mut state, heartbeat(4, 10));
    apply(&mut state, routes(4, &["t/+"], &[]));
    apply(&mut state, routes(5, &["t/+"], &[]));
    apply(
        &mut state,
        Command::RouteBatch {
            node_id: 4,
            add: vec![],
            remove: vec![],
            share_add: vec![share("g", "s/+", "c1")],
            share_remove: vec![],
            at_ms: 1,
        },
    );
    apply(&mut state, add_token(TokenRole::Dataplane, Some(4), 'a'));
    let bytes = state.to_snapshot_bytes().expect("serializes");
    let restored = ControlState::from_snapshot_bytes(&bytes).expect("reads back");
    assert_eq!(restored, state);
    // The shape older readers expect (the writer borrows from the state;
    // the reader owns).
    let text = String::from_utf8(bytes).expect("JSON");
    assert!(text.contains(r#""routes":[{"topic_filter":"t/+","node_ids":[4,5]}]"#), "{text}");
    assert!(text.contains(r#""share_groups":[{"group":"g","topic_filter":"s/+","members":["#), "{text}");
}

fn add_token(role: TokenRole, node_id: Option<crate::NodeId>, digit: char) -> Command {
    Command::AddToken { role, node_id, hash: digit.to_string().repeat(64), created_ms: 5 }
}

#[test]
fn tokens_are_checked_numbered_and_deleted_without_changes_to_watchers() {
    let mut state = ControlState::default();
    let (response, changes) = state.apply(add_token(TokenRole::Admin, None, 'a'));
    assert_eq!(response, Response::TokenAdded { id: 1 });
    assert!(changes.is_empty(), "tokens never reach the Watch stream");
    assert_eq!(state.apply(add_token(TokenRole::Dataplane, Some(3), 'b')).0, Response::TokenAdded { id: 2 });
    for refused in [
        add_token(TokenRole::Dataplane, None, 'c'),
        add_token(TokenRole::Admin, Some(3), 'c'),
        add_token(TokenRole::Admin, None, 'a'),
        add_token(TokenRole::Admin, None, 'X'),
    ] {
        assert!(matches!(state.apply(refused.clone()).0, Response::Failed(_)), "{refused:?}");
    }
    assert_eq!(state.token_by_hash(&"b".repeat(64)).map(|token| token.node_id), Some(Some(3)));
    assert_eq!(state.apply(Command::DeleteToken { id: 1 }).0, Response::Done);
    assert_eq!(
        state.apply(Command::DeleteToken { id: 1 }).0,
        Response::Failed(CommandError::TokenNotFound(1))
    );
    assert_eq!(state.apply(add_token(TokenRole::Admin, None, 'a')).0, Response::TokenAdded { id: 3 });
}

#[test]
fn snapshot_versions() {
    let newer =
        format!(r#"{{"format_version":{},"users":[],"a_future_field":[1,2]}}"#, SNAPSHOT_FORMAT_VERSION + 1);
    assert!(ControlState::from_snapshot_bytes(newer.as_bytes()).is_ok(), "an adjacent newer version reads");
    let far = format!(r#"{{"format_version":{}}}"#, SNAPSHOT_FORMAT_VERSION + 2);
    assert!(matches!(
        ControlState::from_snapshot_bytes(far.as_bytes()),
        Err(SnapshotFormatError::UnsupportedVersion { .. })
    ));
    assert!(matches!(ControlState::from_snapshot_bytes(b"{"), Err(SnapshotFormatError::Malformed(_))));
}

fn set_peer_secret(digit: char, only_if_unset: bool) -> Command {
    Command::SetPeerSecret { secret: digit.to_string().repeat(64), only_if_unset }
}

#[test]
fn peer_secret_is_set_once_unless_replaced_and_reported() {
    let mut state = ControlState::default();
    assert_eq!(state.peer_secret(), None);
    let (response, changes) = apply(&mut state, set_peer_secret('a', true));
    assert_eq!(response, Response::Done);
    assert_eq!(changes, vec![Change::PeerSecret("a".repeat(64))]);
    assert_eq!(state.peer_secret(), Some("a".repeat(64).as_str()));

    // A second leader's proposal: the first secret stays, nothing reported.
    let (response, changes) = apply(&mut state, set_peer_secret('b', true));
    assert_eq!(response, Response::Done);
    assert!(changes.is_empty(), "a kept secret is not reported");
    assert_eq!(state.peer_secret(), Some("a".repeat(64).as_str()));

    // Without `only_if_unset` it replaces the secret (a rotation).
    let (response, changes) = apply(&mut state, set_peer_secret('c', false));
    assert_eq!(response, Response::Done);
    assert_eq!(changes, vec![Change::PeerSecret("c".repeat(64))]);
    assert_eq!(state.peer_secret(), Some("c".repeat(64).as_str()));
}

#[test]
fn invalid_peer_secrets_are_refused_and_change_nothing() {
    let valid = "0123456789abcdef".repeat(4);
    let mut too_long = valid.clone();
    too_long.push('0');
    let upper = valid.to_uppercase();
    let not_hex = format!("{}g", &valid[..63]);
    let multibyte = format!("{}é", &valid[..62]);
    for state in [ControlState::default(), {
        let mut set = ControlState::default();
        set.apply(set_peer_secret('d', false));
        set
    }] {
        for (bad, only_if_unset) in [
            (String::new(), false),
            (valid[..63].to_owned(), false),
            (too_long.clone(), false),
            (upper.clone(), true),
            (not_hex.clone(), false),
            (multibyte.clone(), true),
            (format!(" {}", &valid[..63]), false),
        ] {
            let mut state = state.clone();
            let (response, _) =
                apply(&mut state, Command::SetPeerSecret { secret: bad.clone(), only_if_unset });
            match response {
                Response::Failed(CommandError::InvalidValue { what, reason }) => {
                    assert_eq!(what, "peer secret");
                    assert!(!reason.contains(&bad) || bad.is_empty(), "the error repeats the value");
                }
                other => panic!("{bad:?} was not refused: {other:?}"),
            }
        }
        let mut state = state.clone();
        let (response, _) =
            apply(&mut state, Command::SetPeerSecret { secret: valid.clone(), only_if_unset: false });
        assert_eq!(response, Response::Done);
        assert_eq!(state.peer_secret(), Some(valid.as_str()));
    }
    let mut state = ControlState::default();
    let batch = Command::Batch(vec![
        Command::SetPeerSecret { secret: "x".into(), only_if_unset: true },
        set_peer_secret('e', true),
    ]);
    let (response, changes) = state.apply(batch);
    assert!(matches!(&response, Response::Batch(responses) if matches!(responses[0], Response::Failed(_))));
    assert_eq!(changes, vec![Change::PeerSecret("e".repeat(64))]);
}

#[test]
fn peer_secret_survives_a_snapshot_and_an_old_snapshot_has_none() {
    let mut state = ControlState::default();
    apply(&mut state, add_user("alice"));
    apply(&mut state, Command::AddAclRule { rule: rule(AclWho::All, "#"), position: None });
    apply(&mut state, set_peer_secret('f', true));
    assert!(!format!("{state:?}").contains(&"f".repeat(64)), "Debug shows the secret");
    let bytes = state.to_snapshot_bytes().expect("serializes");
    let restored = ControlState::from_snapshot_bytes(&bytes).expect("reads back");
    assert_eq!(restored.peer_secret(), Some("f".repeat(64).as_str()));
    assert_eq!(restored, state);

    // A version-1 document from before the field: reads, with no secret,
    // and the leader may then set one.
    let old = format!(
        r#"{{"format_version":1,"users":[{}],"next_acl_id":1,"tokens":[],"next_token_id":1}}"#,
        serde_json::to_string(state.user("alice").expect("alice")).expect("user")
    );
    let mut restored = ControlState::from_snapshot_bytes(old.as_bytes()).expect("an old snapshot reads");
    assert_eq!(restored.peer_secret(), None);
    assert!(restored.user("alice").is_some());
    apply(&mut restored, set_peer_secret('1', true));
    assert_eq!(restored.peer_secret(), Some("1".repeat(64).as_str()));

    // Unset, the field is left out, so a build from before it reads the
    // same document it always wrote.
    let empty = ControlState::default().to_snapshot_bytes().expect("serializes");
    assert!(!String::from_utf8_lossy(&empty).contains("peer_secret"));
}
