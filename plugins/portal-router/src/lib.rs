//! Routes claim status events to the portal stream of the provider they are
//! about, so each provider's portal subscribes to one topic and sees only its
//! own claims.
//!
//! Configuration:
//! - `prefix` (default `portal.provider`): destination topics are
//!   `<prefix>.<provider id>`.

use switchyard_plugin_sdk::{
    ConfigEntry, Event, Level, PluginError, Router, config_value, export_router, log,
};

/// Default first part of every portal topic name.
pub const DEFAULT_PREFIX: &str = "portal.provider";

/// The router.
pub struct PortalRouter;

#[derive(serde::Deserialize)]
struct Provider {
    id: Option<String>,
}

#[derive(serde::Deserialize)]
struct ClaimStatus {
    claim_id: String,
    provider: Provider,
}

impl Router for PortalRouter {
    fn route(event: Event, config: Vec<ConfigEntry>) -> Result<Vec<String>, PluginError> {
        if event.metadata.noun != "claim" {
            return Ok(Vec::new());
        }
        let prefix = config_value(&config, "prefix").unwrap_or(DEFAULT_PREFIX);
        let status: ClaimStatus = event.object()?;
        let topic = portal_topic(prefix, status.provider.id.as_deref())?;
        log(
            Level::Debug,
            "routed claim status to portal",
            &[("claim_id", &status.claim_id), ("topic", &topic)],
        );
        Ok(vec![topic])
    }
}

/// Builds the portal topic of a provider, refusing ids that would make an
/// invalid or surprising Kafka topic name.
pub fn portal_topic(prefix: &str, provider_id: Option<&str>) -> Result<String, PluginError> {
    let id = provider_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| PluginError::InvalidEvent("claim status has no `provider.id`".into()))?;
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(PluginError::InvalidEvent(format!(
            "`provider.id` `{id}` may only hold letters, digits and `-` to name a portal topic"
        )));
    }
    let topic = format!("{prefix}.{id}");
    if topic.len() > 249 {
        return Err(PluginError::InvalidConfig(format!(
            "portal topic `{topic}` is longer than Kafka's 249 characters; shorten `prefix`"
        )));
    }
    Ok(topic)
}

export_router!(PortalRouter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_is_prefix_dot_provider() {
        assert_eq!(
            portal_topic(DEFAULT_PREFIX, Some("1666666661")).unwrap(),
            "portal.provider.1666666661"
        );
    }

    #[test]
    fn missing_or_odd_provider_ids_are_refused() {
        assert!(portal_topic(DEFAULT_PREFIX, None).is_err());
        assert!(portal_topic(DEFAULT_PREFIX, Some("")).is_err());
        assert!(portal_topic(DEFAULT_PREFIX, Some("../x")).is_err());
        assert!(portal_topic(DEFAULT_PREFIX, Some("a b")).is_err());
    }
}
