//! ACL rule patterns and the decision they give, for a topic (publish) or a
//! whole topic filter (subscribe).
//!
//! A rule's topic filter is compiled once, when the view is built, into a
//! [`Pattern`]: levels that are literal, `+`, `#`, or a template holding
//! placeholders (`%u`/`${username}`, `%c`/`${clientid}`). Invariants:
//!
//! - **A placeholder's value is one literal level.** It is compared as text,
//!   never parsed as a filter, so a client id `#` or a username `a/+` cannot
//!   widen a rule. A value that could not be one ordinary level (absent,
//!   empty, holding `/`, `+`, `#` or NUL, or starting with `$`) makes an
//!   allow rule match nothing and a deny rule match any one level there.
//! - **A subscription is allowed only if every topic it can match is
//!   allowed**, judged by the same first-matching-rule order a publish to
//!   that topic would meet: an overlapping deny rule refuses the filter, and
//!   an allow rule decides only once it covers the whole filter.
//! - `$share/{group}/…` and `$queue/…` rules constrain shared subscriptions
//!   by group (`+` for any group); rules without a group apply to the
//!   filter of every subscription, plain or shared.
//! - Topics starting with `$` are not matched by a leading wildcard, on
//!   either side (MQTT 4.7.2).

use std::borrow::Cow;

/// One level of a compiled rule filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(Box<str>),
    Plus,
    Hash,
    /// Text and placeholders, e.g. `%u` or `dev-${clientid}`.
    Template(Box<[Part]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<str>),
    Username,
    ClientId,
}

/// A rule's topic filter, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// `Some` for `$share/{group}/…` and `$queue/…` rules.
    group: Option<Level>,
    levels: Box<[Level]>,
}

/// Why a rule's filter could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ACL topic filter {filter:?}: {reason}")]
pub struct PatternError {
    pub filter: String,
    pub reason: &'static str,
}

/// The values placeholders take for one client.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}

/// What a check is about: a topic name, or a subscription's filter with
/// its share group.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The share group (`$queue` for `$queue/`), for shared subscriptions.
    pub group: Option<&'a str>,
    /// A topic name, or a topic filter without its prefix.
    pub filter: &'a str,
    /// The QoS of the publish, or the one a subscription would be granted;
    /// `None` when not known (an allow rule that names QoS levels then does
    /// not match, a deny rule does).
    pub qos: Option<mqtt_codec::QoS>,
    /// The publish's retain flag (`None` for subscriptions).
    pub retain: Option<bool>,
}

impl<'a> Subject<'a> {
    /// A topic name or a plain filter, with nothing else known.
    pub fn topic(filter: &'a str) -> Subject<'a> {
        Subject { group: None, filter, qos: None, retain: None }
    }
}

/// How one rule bears on a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearing {
    /// No topic of the subject is matched by the rule.
    None,
    /// Some topics of the subject are matched by the rule, maybe not all.
    Overlaps,
    /// Every topic of the subject is matched by the rule.
    Covers,
}

fn parse_level(level: &str, whole: &str) -> Result<Level, PatternError> {
    let error = |reason| PatternError { filter: whole.to_string(), reason };
    match level {
        "+" => return Ok(Level::Plus),
        "#" => return Ok(Level::Hash),
        _ if level.contains(['+', '#']) => return Err(error("a wildcard must be a whole level")),
        _ => {}
    }
    let mut parts = Vec::new();
    let mut rest = level;
    let mut text = String::new();
    while !rest.is_empty() {
        let found = [("%u", Part::Username), ("%c", Part::ClientId)]
            .into_iter()
            .chain([("${username}", Part::Username), ("${clientid}", Part::ClientId)])
            .find(|(token, _)| rest.starts_with(token));
        match found {
            Some((token, part)) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text).into()));
                }
                parts.push(part);
                rest = &rest[token.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if parts.is_empty() {
        return Ok(Level::Literal(text.into()));
    }
    if !text.is_empty() {
        parts.push(Part::Text(text.into()));
    }
    Ok(Level::Template(parts.into()))
}

impl Pattern {
    /// Compiles a rule's topic filter.
    pub fn compile(filter: &str) -> Result<Pattern, PatternError> {
        let error = |reason| PatternError { filter: filter.to_string(), reason };
        let (group, rest) = if let Some(rest) = filter.strip_prefix("$share/") {
            let (group, rest) =
                rest.split_once('/').ok_or_else(|| error("$share/ needs a group and a filter"))?;
            if group.is_empty() || group == "#" {
                return Err(error("a share group is one level, or + for any"));
            }
            (Some(parse_level(group, filter)?), rest)
        } else if let Some(rest) = filter.strip_prefix("$queue/") {
            (Some(Level::Literal("$queue".into())), rest)
        } else {
            (None, filter)
        };
        if rest.is_empty() {
            return Err(error("empty topic filter"));
        }
        let levels: Vec<Level> = rest.split('/').map(|l| parse_level(l, filter)).collect::<Result<_, _>>()?;
        if levels.iter().rev().skip(1).any(|l| *l == Level::Hash) {
            return Err(error("# must be the last level"));
        }
        Ok(Pattern { group, levels: levels.into() })
    }

    /// How this rule, read as an allow rule (`allow`) or a deny rule, bears
    /// on `subject` for a client with `values`.
    pub fn bearing(&self, subject: Subject<'_>, values: Placeholders<'_>, allow: bool) -> Bearing {
        let group = match (&self.group, subject.group) {
            (None, _) => Bearing::Covers,
            (Some(_), None) => return Bearing::None,
            (Some(level), Some(group)) => match resolve(level, values, allow) {
                Resolved::Never => return Bearing::None,
                Resolved::Plus | Resolved::Hash => Bearing::Covers,
                Resolved::Literal(name) if name == group => Bearing::Covers,
                Resolved::Literal(_) => return Bearing::None,
            },
        };
        debug_assert_eq!(group, Bearing::Covers);
        let resolved = self.levels.iter().map(|level| resolve(level, values, allow));
        if !overlaps(resolved.clone(), subject.filter) {
            Bearing::None
        } else if covers(resolved, subject.filter) {
            Bearing::Covers
        } else {
            Bearing::Overlaps
        }
    }
}

/// A rule level with its placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved<'a> {
    Literal(Cow<'a, str>),
    Plus,
    Hash,
    /// Matches no level (an allow rule's placeholder without a usable value).
    Never,
}

/// True when `value` can stand as one ordinary topic level.
fn usable(value: &str) -> bool {
    !value.is_empty() && !value.starts_with('$') && !value.contains(['/', '+', '#', '\0'])
}

fn resolve<'a>(level: &'a Level, values: Placeholders<'_>, allow: bool) -> Resolved<'a> {
    let unusable = if allow { Resolved::Never } else { Resolved::Plus };
    match level {
        Level::Literal(text) => Resolved::Literal(Cow::Borrowed(text)),
        Level::Plus => Resolved::Plus,
        Level::Hash => Resolved::Hash,
        Level::Template(parts) => {
            let mut out = String::new();
            for part in parts.iter() {
                let value = match part {
                    Part::Text(text) => {
                        out.push_str(text);
                        continue;
                    }
                    Part::Username => values.username,
                    Part::ClientId => Some(values.client_id),
                };
                match value {
                    Some(value) if usable(value) => out.push_str(value),
                    _ => return unusable,
                }
            }
            if usable(&out) {
                Resolved::Literal(Cow::Owned(out))
            } else {
                unusable
            }
        }
    }
}

/// Whether some topic is matched both by the rule and by `filter`.
fn overlaps<'a>(mut rule: impl Iterator<Item = Resolved<'a>>, filter: &str) -> bool {
    let mut levels = filter.split('/');
    let mut first = true;
    loop {
        let (r, f) = (rule.next(), levels.next());
        let dollar = |text: &str| first && text.starts_with('$');
        match (r, f) {
            (Some(Resolved::Never), _) => return false,
            (None, None) => return true,
            // A `#` matches its parent level too: `a/#` and `a` share topic `a`.
            (Some(Resolved::Hash), None) | (None, Some("#")) => return true,
            (Some(Resolved::Hash), Some(f)) => return !dollar(f),
            (Some(Resolved::Literal(l)), Some("#")) => return !dollar(&l),
            (Some(Resolved::Plus), Some("#")) => return true,
            (Some(Resolved::Plus), Some(f)) if dollar(f) => return false,
            (Some(Resolved::Plus), Some(_)) => {}
            (Some(Resolved::Literal(l)), Some("+")) if dollar(&l) => return false,
            (Some(Resolved::Literal(_)), Some("+")) => {}
            (Some(Resolved::Literal(l)), Some(f)) if *l == *f => {}
            _ => return false,
        }
        first = false;
    }
}

/// Whether every topic matched by `filter` is matched by the rule.
fn covers<'a>(mut rule: impl Iterator<Item = Resolved<'a>>, filter: &str) -> bool {
    let mut levels = filter.split('/');
    let mut first = true;
    loop {
        let (r, f) = (rule.next(), levels.next());
        match (r, f) {
            (None, None) => return true,
            (Some(Resolved::Hash), None) => return true,
            (Some(Resolved::Hash), Some(f)) => return !(first && f.starts_with('$')),
            (Some(Resolved::Plus), Some(f)) if f != "#" && !(first && f.starts_with('$')) => {}
            (Some(Resolved::Literal(l)), Some(f)) if f != "+" && f != "#" && *l == *f => {}
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: Placeholders<'static> = Placeholders { username: Some("bob"), client_id: "c1" };

    fn bearing(rule: &str, filter: &str, allow: bool) -> Bearing {
        Pattern::compile(rule).unwrap().bearing(Subject::topic(filter), NOBODY, allow)
    }

    #[test]
    fn overlap_and_cover() {
        use Bearing::*;
        assert_eq!(bearing("secret/#", "#", false), Overlaps);
        assert_eq!(bearing("secret/#", "secret/+", false), Covers);
        assert_eq!(bearing("secret/#", "+/x", false), Overlaps);
        assert_eq!(bearing("secret/#", "public/#", false), None);
        assert_eq!(bearing("sensors/+", "sensors/#", true), Overlaps, "sensors/# also matches sensors/a/b");
        assert_eq!(bearing("sensors/+", "sensors/+", true), Covers);
        assert_eq!(bearing("a/#", "a", true), Covers, "a/# matches its parent");
        assert_eq!(bearing("a", "a/#", true), Overlaps);
        assert_eq!(bearing("a", "a/+", true), None);
        assert_eq!(bearing("#", "$SYS/#", false), None, "a leading # does not match $ topics");
        assert_eq!(bearing("$SYS/#", "#", false), None);
        assert_eq!(bearing("$SYS/#", "+/x", false), None);
        assert_eq!(bearing("+/#", "$SYS/x", true), None);
        assert_eq!(bearing("#", "+/x", true), Covers);
        assert_eq!(bearing("a/+/c", "a/b/c", true), Covers);
    }

    #[test]
    fn placeholders_are_one_literal_level() {
        let p = Pattern::compile("clients/%c/#").unwrap();
        let subject = Subject::topic("clients/#");
        for id in ["#", "+", "a/b", "", "$x"] {
            let who = Placeholders { username: None, client_id: id };
            assert_eq!(p.bearing(subject, who, true), Bearing::None, "client id {id:?} must not widen");
            assert_eq!(p.bearing(subject, who, false), Bearing::Overlaps, "a deny rule still denies");
        }
        let who = Placeholders { username: None, client_id: "c1" };
        assert_eq!(p.bearing(Subject::topic("clients/c1/x"), who, true), Bearing::Covers);
        let user = Pattern::compile("home/${username}/dev-%c").unwrap();
        let who = Placeholders { username: Some("ann"), client_id: "7" };
        assert_eq!(user.bearing(Subject::topic("home/ann/dev-7"), who, true), Bearing::Covers);
        let anon = Placeholders { username: None, client_id: "7" };
        assert_eq!(user.bearing(Subject::topic("home/+/dev-7"), anon, true), Bearing::None);
    }

    #[test]
    fn share_groups() {
        let p = Pattern::compile("$share/g1/jobs/#").unwrap();
        let who = NOBODY;
        assert_eq!(
            p.bearing(Subject { group: Some("g1"), filter: "jobs/+", qos: None, retain: None }, who, true),
            Bearing::Covers
        );
        assert_eq!(
            p.bearing(Subject { group: Some("g2"), filter: "jobs/+", qos: None, retain: None }, who, true),
            Bearing::None
        );
        assert_eq!(p.bearing(Subject::topic("jobs/+"), who, true), Bearing::None);
        let any = Pattern::compile("$share/+/jobs/#").unwrap();
        assert_eq!(
            any.bearing(Subject { group: Some("g2"), filter: "jobs/a", qos: None, retain: None }, who, false),
            Bearing::Covers
        );
        let queue = Pattern::compile("$queue/jobs").unwrap();
        assert_eq!(
            queue.bearing(
                Subject { group: Some("$queue"), filter: "jobs", qos: None, retain: None },
                who,
                true
            ),
            Bearing::Covers
        );
        for bad in ["a/#/b", "a+", "$share/g", "$share/#/a", "", "$share/g/"] {
            assert!(Pattern::compile(bad).is_err(), "{bad:?}");
        }
    }
}
