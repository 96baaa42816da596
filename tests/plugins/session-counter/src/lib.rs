//! Test fixture: an aggregator whose state lists the event times it folded,
//! in the order it folded them, the window it was told it folds into, and
//! how many merges made it. The window tests read it back through the state
//! query API to see what the host folded where.

use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{
    AggregateResult, ConfigEntry, Event, PluginError, SessionAggregator, export_session_aggregator,
};

/// The state of one key (or window).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Folded {
    /// Event times, as the host gave them (RFC 3339), in folding order.
    pub times: Vec<String>,
    /// Merges that went into this state.
    pub merges: u32,
    /// The window bounds given with the last call, if any.
    pub window: Option<(String, String)>,
}

fn window_of(config: &[ConfigEntry]) -> Option<(String, String)> {
    let value = |name: &str| {
        config
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| entry.value.clone())
    };
    Some((value("window.start")?, value("window.end")?))
}

fn parse(state: &str) -> Result<Folded, PluginError> {
    serde_json::from_str(state)
        .map_err(|error| PluginError::Failed(format!("state is not this plugin's: {error}")))
}

fn text(folded: &Folded) -> Result<String, PluginError> {
    serde_json::to_string(folded).map_err(|error| PluginError::Failed(error.to_string()))
}

/// Folds an event: appends its time.
pub fn fold(
    event: &Event,
    state: Option<&str>,
    config: &[ConfigEntry],
) -> Result<Folded, PluginError> {
    let mut folded = state.map(parse).transpose()?.unwrap_or_default();
    folded.times.push(event.metadata.time.clone());
    folded.window = window_of(config);
    Ok(folded)
}

/// Merges two sessions: the earlier's times, then the later's.
pub fn merge_states(
    earlier: &str,
    later: &str,
    config: &[ConfigEntry],
) -> Result<Folded, PluginError> {
    let mut merged = parse(earlier)?;
    let later = parse(later)?;
    merged.times.extend(later.times);
    merged.merges += later.merges + 1;
    merged.window = window_of(config);
    Ok(merged)
}

struct SessionCounter;

impl SessionAggregator for SessionCounter {
    fn aggregate(
        event: Event,
        state: Option<String>,
        config: Vec<ConfigEntry>,
    ) -> Result<AggregateResult, PluginError> {
        let folded = fold(&event, state.as_deref(), &config)?;
        Ok(AggregateResult {
            state: Some(text(&folded)?),
            emit: Vec::new(),
        })
    }

    fn merge(
        _key: String,
        earlier: String,
        later: String,
        config: Vec<ConfigEntry>,
    ) -> Result<Option<String>, PluginError> {
        Ok(Some(text(&merge_states(&earlier, &later, &config)?)?))
    }
}

export_session_aggregator!(SessionCounter);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::Metadata;

    fn event(time: &str) -> Event {
        Event {
            metadata: Metadata {
                id: "1".into(),
                noun: "claim".into(),
                verb: "status-changed".into(),
                key: "C1".into(),
                time: time.into(),
                source: String::new(),
                headers: Vec::new(),
                position: None,
            },
            object: "{}".into(),
        }
    }

    fn window(start: &str, end: &str) -> Vec<ConfigEntry> {
        vec![
            ConfigEntry {
                name: "window.start".into(),
                value: start.into(),
            },
            ConfigEntry {
                name: "window.end".into(),
                value: end.into(),
            },
        ]
    }

    #[test]
    fn folds_then_merges_in_time_order() {
        let first = fold(&event("t1"), None, &window("1", "1")).unwrap();
        let first = serde_json::to_string(&first).unwrap();
        let second = fold(&event("t3"), None, &window("3", "3")).unwrap();
        let second = serde_json::to_string(&second).unwrap();
        let merged = merge_states(&first, &second, &window("1", "3")).unwrap();
        assert_eq!(merged.times, ["t1", "t3"]);
        assert_eq!(merged.merges, 1);
        let merged = serde_json::to_string(&merged).unwrap();
        let folded = fold(&event("t2"), Some(&merged), &window("1", "3")).unwrap();
        assert_eq!(folded.times, ["t1", "t3", "t2"]);
        assert_eq!(folded.window, Some(("1".to_string(), "3".to_string())));
        assert!(merge_states("{", &merged, &[]).is_err());
    }
}
