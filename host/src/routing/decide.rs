//! Deciding where one event goes under one route. The routing engine, the
//! `explain` answer and `dry-run` all use this, so what they report is what
//! the engine does.

use std::sync::Arc;

use serde::Serialize;

use super::filter::Explanation;
use super::route::Route;
use crate::plugin::{self, ConfigEntry, Output, Plugin};

/// The event as routing sees it.
pub struct Candidate<'a> {
    /// Noun, from `ce_type`.
    pub noun: &'a str,
    /// Verb, from `ce_type`.
    pub verb: &'a str,
    /// The decoded object, when it could be decoded; `Err` holds why not.
    pub object: Result<&'a serde_json::Value, &'a str>,
    /// The event as a plugin sees it, built on first need.
    pub plugin_event: &'a dyn Fn() -> Option<plugin::Event>,
    /// Whether to explain the filter's verdict key by key (`explain` and
    /// `dry-run`); the routing engine needs only the verdict, which
    /// [`Filter::matches`](super::filter::Filter::matches) gives without
    /// allocating.
    pub explain: bool,
}

/// What a route does with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The route does not read this noun and verb, is disabled, or its
    /// filter turned the event away.
    Skip,
    /// Forward to these topics.
    Forward(Vec<String>),
    /// The route failed on this event: it goes to the dead-letter topic.
    Fail {
        /// Failure class, as in the dead-letter headers.
        class: &'static str,
        /// Why.
        reason: String,
        /// `name@version` of the plugin that failed, if one did.
        plugin: Option<String>,
    },
}

/// Finds the plugin a route names: its running version, if any.
pub type PluginLookup<'a> = &'a dyn Fn(&str) -> Option<Arc<Plugin>>;

/// Decides, and says why in words and (for the filter) in detail.
pub fn decide(
    route: &Route,
    candidate: &Candidate<'_>,
    plugins: PluginLookup<'_>,
) -> (Decision, Reasons) {
    let mut reasons = Reasons::default();
    if !route.enabled {
        reasons.summary = "the route is disabled".to_string();
        return (Decision::Skip, reasons);
    }
    if !route.reads(candidate.noun, candidate.verb) {
        reasons.summary = format!(
            "`{}.{}` is not in the route's source",
            candidate.noun, candidate.verb
        );
        return (Decision::Skip, reasons);
    }
    let needs_object = route.filter.is_some() || route.plugin.is_some();
    let object = match candidate.object {
        Ok(object) => Some(object),
        Err(reason) if needs_object => {
            reasons.summary = format!("the event cannot be decoded: {reason}");
            return (
                Decision::Fail {
                    class: "undecodable",
                    reason: reason.to_string(),
                    plugin: None,
                },
                reasons,
            );
        }
        Err(_) => None,
    };
    if let (Some(filter), Some(object)) = (&route.filter, object) {
        let matched = if candidate.explain {
            let explanation = filter.explain(object);
            let matched = explanation.matched;
            reasons.filter = Some(explanation);
            matched
        } else {
            filter.matches(object)
        };
        if !matched {
            reasons.summary = "the filter turned the event away".to_string();
            return (Decision::Skip, reasons);
        }
    }
    let Some(plugin_ref) = &route.plugin else {
        reasons.summary = "source and filter match; forwarded to every destination".to_string();
        return (Decision::Forward(route.destinations.clone()), reasons);
    };
    let Some(plugin) = plugins(&plugin_ref.name) else {
        let reason = format!(
            "router plugin `{}` is not running on this instance (not uploaded, not activated, or deleted)",
            plugin_ref.name
        );
        reasons.summary.clone_from(&reason);
        return (
            Decision::Fail {
                class: "plugin-unavailable",
                reason,
                plugin: None,
            },
            reasons,
        );
    };
    let label = plugin.label().to_string();
    reasons.plugin = Some(label.clone());
    let fail = |class: &'static str, reason: String, reasons: Reasons| {
        (
            Decision::Fail {
                class,
                reason,
                plugin: Some(label.clone()),
            },
            reasons,
        )
    };
    let Some(event) = (candidate.plugin_event)() else {
        return fail(
            "undecodable",
            "the event cannot be given to a plugin".to_string(),
            reasons,
        );
    };
    let config: Vec<ConfigEntry> = plugin_ref
        .config
        .iter()
        .map(|(name, value)| ConfigEntry {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    let topics = match plugin.call_configured(&event, None, &config) {
        Ok(Output::Destinations(topics)) => topics,
        Ok(_) => {
            plugin.stats().record_refused_output();
            let reason = format!("plugin `{label}` is not a router");
            reasons.summary.clone_from(&reason);
            return fail("invalid-output", reason, reasons);
        }
        Err(failure) => {
            reasons.summary = format!("plugin `{label}` failed: {failure}");
            let class = failure.class();
            return fail(class, failure.to_string(), reasons);
        }
    };
    if let Some(bad) = topics
        .iter()
        .find(|topic| crate::nvo::check_topic(topic).is_err())
    {
        plugin.stats().record_refused_output();
        let reason = format!(
            "plugin `{label}` chose `{}`, which is not a valid Kafka topic name",
            bad.escape_debug()
        );
        reasons.summary.clone_from(&reason);
        return fail("invalid-output", reason, reasons);
    }
    if let Some(bad) = topics.iter().find(|topic| !route.allows(topic)) {
        plugin.stats().record_refused_output();
        let reason = format!(
            "plugin `{label}` chose `{}`, which the route's destinations do not allow",
            bad.escape_debug()
        );
        reasons.summary.clone_from(&reason);
        return fail("invalid-output", reason, reasons);
    }
    reasons.summary = if topics.is_empty() {
        format!("plugin `{label}` chose no destination")
    } else {
        format!("plugin `{label}` chose {}", topics.join(", "))
    };
    (Decision::Forward(topics), reasons)
}

/// Why a route decided as it did, for `explain` and `dry-run`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reasons {
    /// One sentence.
    pub summary: String,
    /// The filter's check of each path, when the filter ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Explanation>,
    /// `name@version` of the router plugin that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}
