//! What a route is, and the checks a route must pass before it is stored.
//!
//! A route takes the events of some nouns and verbs (`source`), keeps those
//! that pass an optional content filter, optionally asks a router plugin
//! where each one goes, and forwards it unchanged to its destinations.
//!
//! Destinations are topics outside the noun namespace: a noun's topic is
//! named after the noun (lower kebab case, no dot) and is itself read by the
//! routing engine, so forwarding into one could loop. Destinations therefore
//! hold at least one `.` (`portal.claims`), and may not be internal topics
//! (`_…`, `switchyard.…`). With a router plugin, destinations may hold `*`
//! wildcards and the plugin picks among the topics they allow; without one,
//! every destination gets every matching event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use crate::error::{ApiError, Code};

/// Longest route id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Most destinations one route may name.
pub const MAX_DESTINATIONS: usize = 32;

/// Most noun or verb patterns in one source.
pub const MAX_PATTERNS: usize = 32;

/// A route as teams write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique id, lower case letters, digits, `-`, `.` and `_`.
    #[serde(default)]
    pub id: String,
    /// Team that owns the route.
    pub owner: String,
    /// What the route is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Which events the route reads.
    pub source: Source,
    /// Content filter on the event's object; none passes everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Router plugin that picks destinations per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<RoutePlugin>,
    /// Topics the route writes to (patterns when a plugin picks).
    pub destinations: Vec<String>,
    /// A disabled route is kept but does nothing.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Nouns and verbs a route reads; `*` in a pattern stands for any run of
/// characters (`claim`, `prior-*`, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Noun patterns.
    pub nouns: Vec<String>,
    /// Verb patterns; every verb when left out.
    #[serde(default = "every_verb")]
    pub verbs: Vec<String>,
}

fn every_verb() -> Vec<String> {
    vec!["*".to_string()]
}

/// The router plugin of a route and its configuration for this route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePlugin {
    /// Name of a router plugin; its active version runs.
    pub name: String,
    /// Configuration values, added to (and overriding) the manifest's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// A route as stored: the route plus where it sits in the routes topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRoute {
    /// The route.
    #[serde(flatten)]
    pub route: Route,
    /// One past the offset of the record that holds this version of the
    /// route; it grows with every change, so it serves as an entity tag,
    /// and 0 never names a stored route.
    #[serde(default)]
    pub revision: i64,
    /// When it was written, RFC 3339.
    pub updated_at: String,
}

impl Route {
    /// Checks everything that can be checked without the rest of the host.
    /// Errors name the field to fix.
    pub fn validate(&self) -> Result<(), ApiError> {
        check_id(&self.id)?;
        let owner = self.owner.trim();
        if owner.is_empty() || self.owner.len() > MAX_ID_BYTES || has_control(&self.owner) {
            return Err(invalid(
                "owner",
                format!(
                    "owner must name the team, 1 to {MAX_ID_BYTES} bytes without control or invisible characters"
                ),
            ));
        }
        if self.description.len() > 1024 || has_control(&self.description) {
            return Err(invalid(
                "description",
                "description must be at most 1024 bytes without control or invisible characters"
                    .to_string(),
            ));
        }
        check_patterns("source.nouns", &self.source.nouns)?;
        check_patterns("source.verbs", &self.source.verbs)?;
        if let Some(plugin) = &self.plugin
            && plugin.name.is_empty()
        {
            return Err(invalid(
                "plugin.name",
                "plugin.name must name a router plugin".to_string(),
            ));
        }
        if self.destinations.is_empty() || self.destinations.len() > MAX_DESTINATIONS {
            return Err(invalid(
                "destinations",
                format!("a route needs 1 to {MAX_DESTINATIONS} destinations"),
            ));
        }
        for (index, destination) in self.destinations.iter().enumerate() {
            check_destination(destination, self.plugin.is_some())
                .map_err(|reason| invalid(&format!("destinations[{index}]"), reason))?;
        }
        Ok(())
    }

    /// Whether the route reads events of this noun and verb.
    pub fn reads(&self, noun: &str, verb: &str) -> bool {
        self.source.nouns.iter().any(|p| glob_matches(p, noun))
            && self.source.verbs.iter().any(|p| glob_matches(p, verb))
    }

    /// Whether the route reads some verb of `noun`.
    pub fn reads_noun(&self, noun: &str) -> bool {
        self.source.nouns.iter().any(|p| glob_matches(p, noun))
    }

    /// Whether a plugin may send to `topic`: one of the destinations allows it.
    pub fn allows(&self, topic: &str) -> bool {
        self.destinations.iter().any(|p| glob_matches(p, topic))
    }
}

fn invalid(field: &str, detail: String) -> ApiError {
    ApiError::new(Code::InvalidRoute, detail).with_field(field.to_string())
}

/// Control characters, and the invisible ones that make two owners or
/// descriptions look alike ([`crate::nvo::is_unsafe_char`]).
fn has_control(text: &str) -> bool {
    text.chars().any(crate::nvo::is_unsafe_char)
}

/// Checks a route id: the key of its record and part of URLs.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        });
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "id",
            format!(
                "route id `{}` must be 1 to {MAX_ID_BYTES} of `a-z 0-9 - . _`, starting with a letter or digit",
                id.escape_debug()
            ),
        ))
    }
}

fn check_patterns(field: &str, patterns: &[String]) -> Result<(), ApiError> {
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return Err(invalid(
            field,
            format!("{field} needs 1 to {MAX_PATTERNS} patterns such as `claim` or `*`"),
        ));
    }
    for (index, pattern) in patterns.iter().enumerate() {
        let valid = !pattern.is_empty()
            && pattern.len() <= crate::nvo::MAX_NAME_BYTES
            && pattern
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*');
        if !valid {
            return Err(invalid(
                &format!("{field}[{index}]"),
                format!(
                    "pattern `{}` may only hold `a-z 0-9 -` and `*` wildcards",
                    pattern.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

fn check_destination(topic: &str, plugin_picks: bool) -> Result<(), String> {
    let literal = topic.replace('*', "x");
    crate::nvo::check_topic(&literal).map_err(|e| e.detail)?;
    if topic.contains('*') && !plugin_picks {
        return Err(format!(
            "destination `{topic}` has a wildcard, which only a route with a router plugin may use"
        ));
    }
    if topic.starts_with('_') || topic.starts_with("switchyard.") {
        return Err(format!(
            "destination `{topic}` is an internal topic; pick a topic of your own"
        ));
    }
    if !topic.contains('.') {
        return Err(format!(
            "destination `{topic}` looks like a noun's topic, which routing reads; name it with a dot, such as `portal.{topic}`"
        ));
    }
    Ok(())
}

/// Matches `text` against a pattern in which `*` stands for any run of
/// characters (including none). Linear in practice: the classic greedy
/// algorithm with one backtrack point.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(json: serde_json::Value) -> Route {
        serde_json::from_value(json).expect("route parses")
    }

    fn portal() -> Route {
        route(serde_json::json!({
            "id": "finalized-to-portal",
            "owner": "provider-portal",
            "source": {"nouns": ["claim"], "verbs": ["status-*"]},
            "filter": {"status_category_code": [{"prefix": "F"}]},
            "destinations": ["portal.claims"]
        }))
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("claim", "claim"));
        assert!(!glob_matches("claim", "claims"));
        assert!(glob_matches("status-*", "status-changed"));
        assert!(glob_matches("*-received", "reconsideration-received"));
        assert!(glob_matches("portal.provider.*", "portal.provider.123"));
        assert!(!glob_matches("portal.provider.*", "portal.payer.123"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn a_good_route_passes_and_reads_its_source() {
        let route = portal();
        route.validate().unwrap();
        assert!(route.enabled);
        assert!(route.reads("claim", "status-changed"));
        assert!(!route.reads("claim", "reconsideration-received"));
        assert!(!route.reads("member", "status-changed"));
    }

    #[test]
    fn verbs_default_to_every_verb() {
        let route = route(serde_json::json!({
            "id": "all-claims", "owner": "t", "source": {"nouns": ["claim"]},
            "destinations": ["audit.claims"]
        }));
        assert!(route.reads("claim", "anything"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (serde_json::json!({"id": "Bad Id"}), "id"),
            (serde_json::json!({"owner": " "}), "owner"),
            (serde_json::json!({"owner": "team\u{200B}a"}), "owner"),
            (serde_json::json!({"source": {"nouns": []}}), "source.nouns"),
            (
                serde_json::json!({"source": {"nouns": ["claim"], "verbs": ["Status"]}}),
                "source.verbs[0]",
            ),
            (serde_json::json!({"destinations": []}), "destinations"),
            (
                serde_json::json!({"destinations": ["claim"]}),
                "destinations[0]",
            ),
            (
                serde_json::json!({"destinations": ["portal.a", "_schemas"]}),
                "destinations[1]",
            ),
            (
                serde_json::json!({"destinations": ["portal.*"]}),
                "destinations[0]",
            ),
            (
                serde_json::json!({"destinations": ["portal claims"]}),
                "destinations[0]",
            ),
        ];
        for (change, field) in cases {
            let mut value = serde_json::to_value(portal()).unwrap();
            for (k, v) in change.as_object().unwrap() {
                value[k] = v.clone();
            }
            let error = route(value).validate().unwrap_err();
            assert_eq!(error.code, Code::InvalidRoute);
            assert_eq!(error.field.as_deref(), Some(field), "{}", error.detail);
        }
    }

    #[test]
    fn wildcard_destinations_need_a_plugin() {
        let mut route = portal();
        route.destinations = vec!["portal.provider.*".to_string()];
        assert!(route.validate().is_err());
        route.plugin = Some(RoutePlugin {
            name: "portal-router".to_string(),
            config: BTreeMap::new(),
        });
        route.validate().unwrap();
        assert!(route.allows("portal.provider.1234567890"));
        assert!(!route.allows("portal.payer.1"));
    }

    #[test]
    fn unknown_fields_and_bad_filters_are_refused() {
        let mut value = serde_json::to_value(portal()).unwrap();
        value["destination"] = serde_json::json!("x.y");
        assert!(serde_json::from_value::<Route>(value).is_err());
        let mut value = serde_json::to_value(portal()).unwrap();
        value["filter"] = serde_json::json!({"status": "F1"});
        assert!(serde_json::from_value::<Route>(value).is_err());
    }
}
