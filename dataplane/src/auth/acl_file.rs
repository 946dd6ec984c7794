//! The `file` authorizer: an ACL file in the format of Mosquitto's
//! `acl_file`, read at start and again whenever it changes.
//!
//! ```text
//! # comment
//! topic read sensors/#          # before any `user` line: anonymous clients
//! user alice
//! topic readwrite alice/#       # alice's rules
//! topic deny alice/secret/#
//! pattern write devices/%c/up   # every client; %c client id, %u username
//! ```
//!
//! Access is `read` (subscribe), `write` (publish), `readwrite` (both, also
//! when no access word is given) or `deny`. As in Mosquitto, every `deny`
//! that bears on the topic is looked at before any grant, and the rules of
//! the client's user (or the anonymous ones) and the patterns together; no
//! matching rule answers `Ignore`, so the next authorizer or
//! `auth.acl_no_match` decides (`deny` there gives Mosquitto's behaviour).
//!
//! Topic filters are compiled by `cluster::acl`, with its guarantees: a
//! placeholder's value is one literal level (a client id `#` widens
//! nothing), a subscription is allowed only when a grant covers every topic
//! it can match. One difference from Mosquitto: `%c` and `%u` are
//! substituted in `topic` lines too, not only in `pattern` lines.
//!
//! A file that cannot be read or parsed at start stops the node with the
//! line at fault; on a reload it is logged and the rules in force stay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mqtt_codec::ReasonCode;

use crate::cluster::access::Identity;
use crate::cluster::acl::{Bearing, Pattern, Placeholders, Subject};
use crate::cluster::view::Action;
use crate::hooks::{Authorizer, Verdict};

/// The largest ACL file read (a bigger one is refused, not half-read).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, action: Action) -> bool {
        match self {
            Access::Read => action == Action::Subscribe,
            Access::Write => action == Action::Publish,
            Access::ReadWrite => true,
            Access::Deny => false,
        }
    }
}

#[derive(Debug)]
struct Rule {
    access: Access,
    pattern: Pattern,
}

/// The parsed file.
#[derive(Debug, Default)]
struct Rules {
    anonymous: Vec<Rule>,
    users: HashMap<Box<str>, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl Rules {
    fn count(&self) -> usize {
        self.anonymous.len() + self.patterns.len() + self.users.values().map(Vec::len).sum::<usize>()
    }
}

/// Why an ACL file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    #[error("cannot read the ACL file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the ACL file {path} is {size} bytes, over the limit of {MAX_FILE_BYTES}")]
    TooBig { path: String, size: u64 },
    #[error("{path}:{line}: {reason}")]
    Line { path: String, line: usize, reason: String },
}

/// Parses the text of an ACL file; `path` only names it in errors.
fn parse(path: &Path, text: &str) -> Result<Rules, AclFileError> {
    let mut rules = Rules::default();
    // `None`: before any `user` line (the anonymous section).
    let mut user: Option<Box<str>> = None;
    for (index, raw) in text.lines().enumerate() {
        let fault =
            |reason: String| AclFileError::Line { path: path.display().to_string(), line: index + 1, reason };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match keyword {
            "user" => {
                if rest.is_empty() {
                    return Err(fault("`user` needs a username".into()));
                }
                user = Some(Box::from(rest));
                rules.users.entry(Box::from(rest)).or_default();
            }
            "topic" | "pattern" => {
                let rule = parse_rule(rest).map_err(fault)?;
                match (keyword, &user) {
                    ("pattern", _) => rules.patterns.push(rule),
                    (_, None) => rules.anonymous.push(rule),
                    (_, Some(name)) => rules.users.entry(name.clone()).or_default().push(rule),
                }
            }
            other => {
                return Err(fault(format!("unknown keyword {other:?} (expected topic, user or pattern)")))
            }
        }
    }
    Ok(rules)
}

/// `[read|write|readwrite|deny] <filter>`; without an access word, the
/// whole text is the filter and the access is `readwrite`.
fn parse_rule(text: &str) -> Result<Rule, String> {
    if text.is_empty() {
        return Err("a topic filter is needed".into());
    }
    let (first, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let access = match first {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    };
    let (access, filter) = match access {
        Some(access) if !rest.trim().is_empty() => (access, rest.trim()),
        Some(_) => return Err(format!("a topic filter is needed after {first:?}")),
        None => (Access::ReadWrite, text),
    };
    let pattern = Pattern::compile(filter).map_err(|error| error.to_string())?;
    Ok(Rule { access, pattern })
}

/// What was read last: to tell a changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn read(path: &Path) -> Result<(Rules, Stamp), AclFileError> {
    let name = || path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|source| AclFileError::Read { path: name(), source })?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(AclFileError::TooBig { path: name(), size: metadata.len() });
    }
    let stamp = Stamp { modified: metadata.modified().ok(), len: metadata.len() };
    let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Read { path: name(), source })?;
    Ok((parse(path, &text)?, stamp))
}

/// The `file` authorizer.
#[derive(Debug)]
pub struct AclFile {
    path: PathBuf,
    interval: Duration,
    rules: ArcSwap<Rules>,
    /// The file as it was when loaded: a change made before
    /// [`AclFile::watch`] starts is seen too.
    loaded: Option<Stamp>,
}

impl AclFile {
    /// Reads and parses the file; an error names the file and line.
    pub fn load(path: &Path, interval: Duration) -> Result<Arc<AclFile>, AclFileError> {
        let (rules, stamp) = read(path)?;
        tracing::info!(path = %path.display(), rules = rules.count(), "ACL file loaded");
        Ok(Arc::new(AclFile {
            path: path.to_path_buf(),
            interval,
            rules: ArcSwap::from_pointee(rules),
            loaded: Some(stamp),
        }))
    }

    /// Looks at the file every interval and takes its rules in when it
    /// changed and parses (then calls `changed`, so that what clients hold
    /// is judged again); a file that does not parse keeps the rules in force.
    pub async fn watch(self: Arc<Self>, changed: impl Fn() + Send + 'static) {
        let mut last = self.loaded.clone();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let path = self.path.clone();
            let now = tokio::task::spawn_blocking(move || {
                std::fs::metadata(&path)
                    .ok()
                    .map(|metadata| Stamp { modified: metadata.modified().ok(), len: metadata.len() })
            })
            .await
            .ok()
            .flatten();
            if now.is_none() || now == last {
                continue;
            }
            let path = self.path.clone();
            match tokio::task::spawn_blocking(move || read(&path)).await {
                Ok(Ok((rules, stamp))) => {
                    tracing::info!(path = %self.path.display(), rules = rules.count(), "ACL file reloaded");
                    self.rules.store(Arc::new(rules));
                    last = Some(stamp);
                    changed();
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "ACL file not reloaded: the rules read before stay in force");
                    last = now;
                }
                Err(error) => tracing::error!(%error, "ACL file reload failed"),
            }
        }
    }
}

impl Authorizer for AclFile {
    fn authorize(&self, who: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()> {
        let rules = self.rules.load();
        let own: &[Rule] = match &who.username {
            Some(name) => rules.users.get(name.as_ref()).map_or(&[], Vec::as_slice),
            None => &rules.anonymous,
        };
        let values = Placeholders { username: who.username.as_deref(), client_id: &who.client_id };
        let applicable = || own.iter().chain(rules.patterns.iter());
        let denied = applicable().any(|rule| {
            rule.access == Access::Deny && rule.pattern.bearing(subject, values, false) != Bearing::None
        });
        if denied {
            return Verdict::Deny(ReasonCode::NOT_AUTHORIZED);
        }
        let granted = applicable().any(|rule| {
            rule.access.grants(action) && rule.pattern.bearing(subject, values, true) == Bearing::Covers
        });
        if granted {
            Verdict::Allow(())
        } else {
            Verdict::Ignore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> AclFile {
        let rules = parse(Path::new("test.acl"), text).expect("parses");
        AclFile {
            path: PathBuf::new(),
            interval: Duration::from_secs(1),
            rules: ArcSwap::from_pointee(rules),
            loaded: None,
        }
    }

    fn who(username: Option<&str>, client_id: &str) -> Identity {
        Identity {
            client_id: Arc::from(client_id),
            username: username.map(Box::from),
            address: std::net::IpAddr::from([127, 0, 0, 1]),
            superuser: false,
            credential: None,
            external: false,
            acl: None,
        }
    }

    fn decide(file: &AclFile, who: &Identity, action: Action, filter: &str) -> Verdict<()> {
        file.authorize(who, action, Subject::topic(filter))
    }

    const FILE: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write shared/in

user bob smith
topic read shared/#

pattern write devices/%c/up
pattern read devices/%u/down
";

    #[test]
    fn user_rules_apply_to_their_user_only() {
        let file = rules(FILE);
        let alice = who(Some("alice"), "a1");
        assert_eq!(decide(&file, &alice, Action::Publish, "alice/x"), Verdict::Allow(()));
        assert_eq!(
            decide(&file, &alice, Action::Subscribe, "alice/#"),
            Verdict::Deny(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(
            decide(&file, &alice, Action::Subscribe, "alice/+/x"),
            Verdict::Deny(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(decide(&file, &alice, Action::Subscribe, "alice/open/#"), Verdict::Allow(()));
        assert_eq!(
            decide(&file, &alice, Action::Publish, "alice/secret/k"),
            Verdict::Deny(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(decide(&file, &alice, Action::Publish, "shared/in"), Verdict::Allow(()));
        assert_eq!(decide(&file, &alice, Action::Subscribe, "shared/in"), Verdict::Ignore, "write only");
        assert_eq!(
            decide(&file, &alice, Action::Subscribe, "public/news"),
            Verdict::Ignore,
            "anonymous rule"
        );
        let bob = who(Some("bob smith"), "b1");
        assert_eq!(decide(&file, &bob, Action::Subscribe, "shared/#"), Verdict::Allow(()));
        assert_eq!(decide(&file, &bob, Action::Publish, "shared/in"), Verdict::Ignore);
        assert_eq!(decide(&file, &bob, Action::Publish, "alice/x"), Verdict::Ignore);
        let mallory = who(Some("mallory"), "m1");
        assert_eq!(decide(&file, &mallory, Action::Subscribe, "public/news"), Verdict::Ignore);
    }

    #[test]
    fn anonymous_rules_apply_to_clients_without_a_username() {
        let file = rules(FILE);
        let anonymous = who(None, "x");
        assert_eq!(decide(&file, &anonymous, Action::Subscribe, "public/#"), Verdict::Allow(()));
        assert_eq!(decide(&file, &anonymous, Action::Publish, "public/a"), Verdict::Ignore, "read only");
        assert_eq!(decide(&file, &anonymous, Action::Subscribe, "#"), Verdict::Ignore, "not covered");
        assert_eq!(decide(&file, &anonymous, Action::Publish, "alice/x"), Verdict::Ignore);
    }

    #[test]
    fn patterns_substitute_one_literal_level() {
        let file = rules(FILE);
        let device = who(Some("d7"), "dev-7");
        assert_eq!(decide(&file, &device, Action::Publish, "devices/dev-7/up"), Verdict::Allow(()));
        assert_eq!(decide(&file, &device, Action::Publish, "devices/dev-8/up"), Verdict::Ignore);
        assert_eq!(decide(&file, &device, Action::Subscribe, "devices/d7/down"), Verdict::Allow(()));
        // A client id that is a wildcard widens nothing.
        let sneaky = who(Some("+"), "#");
        assert_eq!(decide(&file, &sneaky, Action::Publish, "devices/#/up"), Verdict::Ignore);
        assert_eq!(decide(&file, &sneaky, Action::Subscribe, "devices/+/down"), Verdict::Ignore);
        // Patterns apply to anonymous clients as well; %u then matches nothing.
        let anonymous = who(None, "dev-9");
        assert_eq!(decide(&file, &anonymous, Action::Publish, "devices/dev-9/up"), Verdict::Allow(()));
        assert_eq!(decide(&file, &anonymous, Action::Subscribe, "devices/+/down"), Verdict::Ignore);
    }

    #[test]
    fn a_deny_anywhere_wins_over_a_grant_before_it() {
        let file = rules("pattern readwrite #\nuser carol\ntopic deny private/#\n");
        let carol = who(Some("carol"), "c");
        assert_eq!(
            decide(&file, &carol, Action::Publish, "private/x"),
            Verdict::Deny(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(decide(&file, &carol, Action::Subscribe, "#"), Verdict::Deny(ReasonCode::NOT_AUTHORIZED));
        assert_eq!(decide(&file, &carol, Action::Publish, "other/x"), Verdict::Allow(()));
        // `$SYS` is not matched by a leading wildcard.
        assert_eq!(decide(&file, &carol, Action::Subscribe, "$SYS/#"), Verdict::Ignore);
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        for (text, line) in [
            ("topic read a\nbogus x\n", 2),
            ("user\n", 1),
            ("topic read\n", 1),
            ("# c\n\ntopic read a/#/b\n", 3),
            ("pattern\n", 1),
        ] {
            match parse(Path::new("f.acl"), text) {
                Err(AclFileError::Line { line: at, .. }) => assert_eq!(at, line, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        // An access word alone is a topic, as in Mosquitto.
        let file = rules("topic a b c\n");
        assert_eq!(decide(&file, &who(None, "x"), Action::Publish, "a b c"), Verdict::Allow(()));
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_rules(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::TempDir::new()?;
        let path = directory.path().join("acl");
        std::fs::write(&path, "topic read a/#\n")?;
        let file = AclFile::load(&path, Duration::from_millis(20))?;
        let watcher = tokio::spawn(file.clone().watch(|| {}));
        let anonymous = who(None, "x");
        assert_eq!(decide(&file, &anonymous, Action::Subscribe, "a/1"), Verdict::Allow(()));

        std::fs::write(&path, "topic read a/#\ntopic read bb/#\n")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while decide(&file, &anonymous, Action::Subscribe, "bb/1") != Verdict::Allow(()) {
            assert!(tokio::time::Instant::now() < deadline, "the new rule was not loaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::write(&path, "topic read a/#\nnonsense here and more\n")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(decide(&file, &anonymous, Action::Subscribe, "bb/1"), Verdict::Allow(()), "kept");
        watcher.abort();
        Ok(())
    }
}
