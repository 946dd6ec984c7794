//! Topic names and topic filters: validation, matching, and the `$share/`,
//! `$queue/` and `$local/` prefixes.
//!
//! Matching follows MQTT 4.7: `+` matches one level, `#` (last level only)
//! matches the parent and any number of levels below, and a topic that starts
//! with `$` is not matched by a filter that starts with a wildcard.

/// Why a topic filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("empty topic filter")]
    Empty,
    #[error("wildcard not alone in its level, or # not last")]
    BadWildcard,
    #[error("invalid shared subscription")]
    BadShare,
}

/// Checks a topic filter's wildcard syntax.
pub fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(FilterError::BadWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::BadWildcard);
        }
    }
    Ok(())
}

/// True when `filter` contains `+` or `#`.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// True when topic name `topic` matches topic filter `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when `raw` names a shared subscription (`$share/…` or `$queue/…`).
pub fn is_shared(raw: &str) -> bool {
    raw.starts_with("$share/") || raw.starts_with("$queue/")
}

/// A subscription's filter with its prefix taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedFilter<'a> {
    /// An ordinary filter, delivered to every subscriber.
    Plain(&'a str),
    /// `$share/{group}/{filter}` or `$queue/{filter}` (group `$queue`).
    Shared { group: &'a str, filter: &'a str },
    /// `$local/{filter}`: local to this node; behaves as the plain filter here.
    Local(&'a str),
}

impl<'a> ParsedFilter<'a> {
    /// The filter that is matched against topics.
    pub fn filter(&self) -> &'a str {
        match self {
            ParsedFilter::Plain(f) | ParsedFilter::Local(f) => f,
            ParsedFilter::Shared { filter, .. } => filter,
        }
    }
}

/// Splits the `$share/`, `$queue/` or `$local/` prefix off a filter and
/// validates what is left.
pub fn parse_filter(raw: &str) -> Result<ParsedFilter<'_>, FilterError> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').ok_or(FilterError::BadShare)?;
        if group.is_empty() || has_wildcard(group) || filter.is_empty() {
            return Err(FilterError::BadShare);
        }
        validate_filter(filter)?;
        return Ok(ParsedFilter::Shared { group, filter });
    }
    if raw == "$share" {
        return Err(FilterError::BadShare);
    }
    if let Some(filter) = raw.strip_prefix("$queue/") {
        validate_filter(filter)?;
        return Ok(ParsedFilter::Shared { group: "$queue", filter });
    }
    if let Some(filter) = raw.strip_prefix("$local/") {
        validate_filter(filter)?;
        return Ok(ParsedFilter::Local(filter));
    }
    validate_filter(raw)?;
    Ok(ParsedFilter::Plain(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_syntax() {
        for ok in ["a", "/", "#", "+", "a/+/b", "a/#", "+/+", "sport/tennis/#", "$SYS/#"] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "a/#/b", "a+", "+a/b", "#/a", "a/b#"] {
            assert_eq!(validate_filter(bad), Err(FilterError::BadWildcard), "{bad}");
        }
        assert_eq!(validate_filter(""), Err(FilterError::Empty));
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("#", "a/b/c"));
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_filter("$share/g/a/+"), Ok(ParsedFilter::Shared { group: "g", filter: "a/+" }));
        assert_eq!(parse_filter("$queue/a"), Ok(ParsedFilter::Shared { group: "$queue", filter: "a" }));
        assert_eq!(parse_filter("$local/a/#"), Ok(ParsedFilter::Local("a/#")));
        assert_eq!(parse_filter("$share/g"), Err(FilterError::BadShare));
        assert_eq!(parse_filter("$share//a"), Err(FilterError::BadShare));
        assert_eq!(parse_filter("$share/g+/a"), Err(FilterError::BadShare));
        assert_eq!(parse_filter("$share/g/a#"), Err(FilterError::BadWildcard));
    }
}
