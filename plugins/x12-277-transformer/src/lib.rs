//! Turns one X12 277 interchange (an `edi.x12-received` event) into one
//! `claim.status-changed` event per claim-level status (STC) it reports.
//!
//! The parsing lives in [`x12`] and knows nothing of Switchyard, so it is unit
//! tested natively against the sample interchanges.

pub mod x12;

use switchyard_plugin_sdk::{
    ConfigEntry, Emitted, Event, Level, PluginError, Transformer, export_transformer, log,
};

/// The transformer.
pub struct X12ClaimStatus;

#[derive(serde::Deserialize)]
struct X12Received {
    interchange: String,
    filename: Option<String>,
}

impl Transformer for X12ClaimStatus {
    fn transform(event: Event, _config: Vec<ConfigEntry>) -> Result<Vec<Emitted>, PluginError> {
        let received: X12Received = event.object()?;
        let statuses = x12::parse_277(&received.interchange).map_err(|error| {
            let file = received.filename.as_deref().unwrap_or("interchange");
            PluginError::InvalidEvent(format!("`{file}` is not a valid 277: {error}"))
        })?;
        log(
            Level::Debug,
            "parsed 277",
            &[("statuses", &statuses.len().to_string())],
        );
        statuses
            .iter()
            .map(|status| Emitted::new("claim", "status-changed", &status.claim_id, status))
            .collect()
    }
}

export_transformer!(X12ClaimStatus);
