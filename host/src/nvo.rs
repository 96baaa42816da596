//! The Noun-Verb-Object vocabulary: what an event is about (noun), what
//! happened (verb), and which entity (key). Names are checked here once, so
//! every transport rejects the same inputs with the same words.

use std::fmt;

use crate::error::{ApiError, Code};

/// Longest noun or verb, in bytes. Long enough for any business term, short
/// enough that `<noun>.<verb>` stays a readable CloudEvents type.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest entity key, in bytes. Keys are ids, not payloads.
pub const MAX_KEY_BYTES: usize = 256;

/// A business entity name, lower kebab case (`claim`, `prior-auth`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Noun(String);

/// What happened to an entity, past tense, lower kebab case
/// (`reconsideration-received`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verb(String);

fn check_kebab(kind: &str, value: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            Code::InvalidName,
            format!(
                "{kind} `{}` {why}; use lower kebab case such as `status-changed`",
                value.escape_debug()
            ),
        )
        .with_field(kind.to_string())
    };
    if value.is_empty() {
        return Err(invalid("is empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(&format!("is longer than {MAX_NAME_BYTES} bytes")));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid("may only hold `a`-`z`, `0`-`9` and `-`"));
    }
    if !value.as_bytes()[0].is_ascii_lowercase() {
        return Err(invalid("must start with a letter"));
    }
    if value.ends_with('-') || value.contains("--") {
        return Err(invalid("has an empty word"));
    }
    Ok(())
}

impl Noun {
    /// Checks and wraps a noun.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        check_kebab("noun", value)?;
        Ok(Noun(value.to_string()))
    }

    /// The noun as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Verb {
    /// Checks and wraps a verb.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        check_kebab("verb", value)?;
        Ok(Verb(value.to_string()))
    }

    /// The verb as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Noun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The CloudEvents type of an event: `<noun>.<verb>`.
pub fn event_type(noun: &Noun, verb: &Verb) -> String {
    format!("{noun}.{verb}")
}

/// Splits a CloudEvents type back into noun and verb.
pub fn parse_event_type(value: &str) -> Result<(Noun, Verb), ApiError> {
    let (noun, verb) = value.split_once('.').ok_or_else(|| {
        ApiError::new(
            Code::InvalidName,
            format!(
                "event type `{}` is not `<noun>.<verb>`",
                value.escape_debug()
            ),
        )
    })?;
    Ok((Noun::parse(noun)?, Verb::parse(verb)?))
}

/// Characters refused in keys, sources and other identifiers: control
/// characters (a CR or LF could forge lines in logs or SSE frames), Unicode
/// line and paragraph separators, and the invisible direction and
/// zero-width marks that make two different ids look the same.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// Checks an entity key: not empty, bounded, no unsafe characters (see
/// [`is_unsafe_char`]).
pub fn check_key(key: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            Code::InvalidName,
            format!("key {why}; give the entity's id"),
        )
        .with_field("key")
    };
    if key.is_empty() {
        return Err(invalid("is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(&format!("is longer than {MAX_KEY_BYTES} bytes")));
    }
    if key.chars().any(is_unsafe_char) {
        return Err(invalid(
            "holds a control, separator or invisible formatting character",
        ));
    }
    Ok(())
}

/// Checks a Kafka topic name the way the broker does (legal characters and
/// length), so a bad destination fails with a clear reason before producing.
pub fn check_topic(topic: &str) -> Result<(), ApiError> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::InvalidName,
            format!(
                "topic `{}` is not a valid Kafka topic name: use 1 to 249 of `a-z A-Z 0-9 . _ -`",
                topic.escape_debug()
            ),
        )
        .with_field("topic"))
    }
}

/// Matches a `noun.verb` pattern where either side may be `*`.
pub fn pattern_matches(pattern: &str, noun: &str, verb: &str) -> bool {
    let Some((pattern_noun, pattern_verb)) = pattern.split_once('.') else {
        return false;
    };
    (pattern_noun == "*" || pattern_noun == noun) && (pattern_verb == "*" || pattern_verb == verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_names_are_accepted() {
        for name in ["claim", "status-changed", "reconsideration-received", "x12"] {
            Noun::parse(name).unwrap();
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, why) in [
            ("", "empty"),
            ("Claim", "may only hold"),
            ("claim_status", "may only hold"),
            ("claim\nx", "may only hold"),
            ("-claim", "start with a letter"),
            ("claim-", "empty word"),
            ("a--b", "empty word"),
        ] {
            let error = Verb::parse(name).unwrap_err();
            assert_eq!(error.code, Code::InvalidName);
            assert!(error.detail.contains(why), "{name:?}: {}", error.detail);
        }
        assert!(Noun::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn keys_reject_control_characters() {
        check_key("CLM-1").unwrap();
        assert!(check_key("").is_err());
        assert!(check_key("a\r\nb").is_err());
        assert!(check_key("a\u{2028}b").is_err());
        assert!(check_key("abc\u{202E}fed").is_err());
        check_key("Müller-Ω").unwrap();
        assert!(check_key(&"k".repeat(257)).is_err());
    }

    #[test]
    fn event_types_round_trip() {
        let (noun, verb) = parse_event_type("claim.status-changed").unwrap();
        assert_eq!(event_type(&noun, &verb), "claim.status-changed");
        assert!(parse_event_type("claim").is_err());
    }

    #[test]
    fn topics_follow_kafka_rules() {
        check_topic("portal.provider.1666666661").unwrap();
        assert!(check_topic("").is_err());
        assert!(check_topic("..").is_err());
        assert!(check_topic("a/b").is_err());
        assert!(check_topic(&"t".repeat(250)).is_err());
    }

    #[test]
    fn patterns_take_wildcards() {
        assert!(pattern_matches("claim.*", "claim", "status-changed"));
        assert!(pattern_matches(
            "*.status-changed",
            "claim",
            "status-changed"
        ));
        assert!(!pattern_matches("edi.*", "claim", "status-changed"));
        assert!(!pattern_matches("claim", "claim", "x"));
    }
}
