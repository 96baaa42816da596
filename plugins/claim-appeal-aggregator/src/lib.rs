//! The reference aggregator of the claim appeal business case: per claim,
//! the current status, every status reported with its time, the time spent
//! in each status, and counts. Each change emits
//! `claim.appeal-summary-updated` with the whole summary, so a portal can
//! show a claim's appeal at a glance.
//!
//! Time comes from the events (`ce_time`), never from a clock, so replaying
//! the same events gives the same summary.

pub mod summary;

use switchyard_plugin_sdk::{
    AggregateResult, Aggregator, ConfigEntry, Emitted, Event, PluginError, config_value,
    export_aggregator, state_or_default,
};

use crate::summary::{StatusReport, Summary, parse_rfc3339_millis};

/// The aggregator.
pub struct ClaimAppealAggregator;

#[derive(serde::Deserialize)]
struct StatusChanged {
    claim_id: String,
    provider: Provider,
    status_category_code: String,
    status_code: String,
    status_effective_date: Option<String>,
}

#[derive(serde::Deserialize)]
struct Provider {
    id: Option<String>,
}

#[derive(serde::Deserialize)]
struct ReconsiderationReceived {
    claim_id: String,
    provider_id: String,
}

impl Aggregator for ClaimAppealAggregator {
    fn aggregate(
        event: Event,
        state: Option<String>,
        config: Vec<ConfigEntry>,
    ) -> Result<AggregateResult, PluginError> {
        let mut summary: Summary = state_or_default(state)?;
        let at_millis = parse_rfc3339_millis(&event.metadata.time).ok_or_else(|| {
            PluginError::InvalidEvent(format!(
                "event time `{}` is not RFC 3339",
                event.metadata.time
            ))
        })?;
        match event.metadata.verb.as_str() {
            "status-changed" => {
                let status: StatusChanged = event.object()?;
                summary.record_status(
                    &event.metadata.id,
                    &status.claim_id,
                    status.provider.id.as_deref(),
                    StatusReport {
                        category: status.status_category_code,
                        code: status.status_code,
                        reported_at: event.metadata.time.clone(),
                        reported_at_millis: at_millis,
                        effective_date: status.status_effective_date,
                    },
                );
            }
            "reconsideration-received" => {
                let request: ReconsiderationReceived = event.object()?;
                summary.record_reconsideration(
                    &request.claim_id,
                    &request.provider_id,
                    &event.metadata.id,
                );
            }
            // Not in the manifest's source; nothing to fold.
            _ => {
                return Ok(AggregateResult {
                    state: None,
                    emit: Vec::new(),
                });
            }
        }
        // `output_noun` (default `claim`) names where summaries go, for a
        // deployment that keeps them apart from the claims themselves.
        let emitted = Emitted::new(
            config_value(&config, "output_noun").unwrap_or("claim"),
            "appeal-summary-updated",
            &event.metadata.key,
            &summary.to_object(),
        )?;
        AggregateResult::keep(&summary, vec![emitted])
    }
}

export_aggregator!(ClaimAppealAggregator);
