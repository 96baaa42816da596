//! Pausing a plugin that keeps failing, wherever it runs: in a pipeline of
//! its own, under a route, or as an aggregator.
//!
//! Each place that calls a plugin keeps a [`FailureWindow`] of its recent
//! calls. When the failed share of a full window reaches the plugin's
//! policy, [`AutoPause::pause`] marks the plugin paused in the store (so
//! every instance stops calling it), says why, and publishes a
//! `plugin.paused` event; an admin resumes it. A plugin loaded from the
//! folder cannot be paused through the store: the caller decides what to do
//! with it on this instance.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Plugin;
use super::store::PluginStore;
use crate::publish::{EventInput, Publisher};

/// When a plugin that keeps failing is paused.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Share of failed calls in the window that pauses the plugin.
    pub ratio: f64,
    /// Calls in the window.
    pub window: usize,
}

/// The outcomes of a plugin's recent calls.
#[derive(Debug)]
pub struct FailureWindow {
    policy: FailurePolicy,
    recent: VecDeque<bool>,
}

impl FailureWindow {
    /// An empty window under `policy`.
    pub fn new(policy: FailurePolicy) -> Self {
        FailureWindow {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a call; returns the failed count when the plugin must pause.
    pub fn record(&mut self, failed: bool) -> Option<usize> {
        self.recent.push_back(failed);
        while self.recent.len() > self.policy.window {
            self.recent.pop_front();
        }
        let failures = self.recent.iter().filter(|f| **f).count();
        let full = self.policy.window > 0 && self.recent.len() == self.policy.window;
        (full && failures as f64 >= self.policy.ratio * self.policy.window as f64)
            .then_some(failures)
    }
}

/// The recent calls of one running version of a plugin.
#[derive(Debug)]
pub struct Tracked {
    label: String,
    window: FailureWindow,
}

/// Pauses failing plugins through the store and announces it.
pub struct AutoPause {
    store: Arc<PluginStore>,
    publisher: Arc<Publisher>,
    default_policy: FailurePolicy,
}

impl AutoPause {
    /// Pausing through `store`, announcing through `publisher`, with the
    /// host's policy for plugins whose manifest sets none.
    pub fn new(
        store: Arc<PluginStore>,
        publisher: Arc<Publisher>,
        default_policy: FailurePolicy,
    ) -> AutoPause {
        AutoPause {
            store,
            publisher,
            default_policy,
        }
    }

    /// The failure policy of a plugin: its manifest's, else the host's.
    pub fn policy_of(&self, plugin: &Plugin) -> FailurePolicy {
        let limits = &plugin.manifest().limits;
        FailurePolicy {
            ratio: limits
                .failure_pause_ratio
                .unwrap_or(self.default_policy.ratio),
            window: limits
                .failure_window_calls
                .unwrap_or(self.default_policy.window),
        }
    }

    /// A fresh window for a plugin (a new version starts with a clean
    /// record).
    pub fn window(&self, plugin: &Plugin) -> FailureWindow {
        FailureWindow::new(self.policy_of(plugin))
    }

    /// Counts a call of the version `label` in `slot`, starting a fresh
    /// window (with the policy of `plugin()`) when the version changed.
    /// Returns the failed count, and empties the slot, when the plugin must
    /// pause.
    pub fn track(
        &self,
        slot: &mut Option<Tracked>,
        label: &str,
        plugin: impl FnOnce() -> Option<Arc<Plugin>>,
        failed: bool,
    ) -> Option<usize> {
        if slot.as_ref().is_none_or(|tracked| tracked.label != label) {
            let plugin = plugin()?;
            *slot = Some(Tracked {
                label: label.to_string(),
                window: self.window(&plugin),
            });
        }
        let failures = slot.as_mut()?.window.record(failed)?;
        *slot = None;
        Some(failures)
    }

    /// Pauses a plugin that keeps failing and says so with a
    /// `plugin.paused` event. Returns false for a plugin loaded from the
    /// folder, which the store cannot pause.
    pub async fn pause(&self, plugin: &Plugin, failed: usize) -> bool {
        let window = self.policy_of(plugin).window;
        let reason = format!(
            "paused automatically: {failed} of its last {window} calls failed; fix the plugin or its input, then resume it"
        );
        let name = &plugin.manifest().name;
        tracing::error!(
            plugin = plugin.label(),
            failed,
            window,
            "plugin keeps failing; pausing it"
        );
        let stored = self.store.get(name).is_ok();
        if stored && let Err(error) = self.store.set_paused(name, Some(reason.clone())).await {
            tracing::error!(plugin = plugin.label(), %error, "cannot record the pause; it stays active on other instances");
        }
        let stats = plugin.stats();
        let last = [
            ("timeout", &stats.timeouts),
            ("trap", &stats.traps),
            ("out-of-memory", &stats.out_of_memory),
            ("invalid-output", &stats.invalid_outputs),
            ("plugin-error", &stats.plugin_errors),
        ]
        .iter()
        .max_by_key(|(_, counter)| counter.load(Ordering::Relaxed))
        .map_or("plugin-error", |(class, _)| *class);
        let event = EventInput {
            noun: "plugin".to_string(),
            verb: "paused".to_string(),
            key: name.clone(),
            object: serde_json::json!({
                "name": name,
                "version": plugin.manifest().version,
                "reason": reason,
                "failed_calls": failed,
                "window_calls": window,
                "last_failure_class": last,
            }),
            source: Some("/switchyard/pipeline".to_string()),
            ..EventInput::default()
        };
        if let Err(error) = self.publisher.publish(event).await {
            tracing::warn!(plugin = plugin.label(), %error, "cannot publish `plugin.paused`");
        }
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_trips_only_when_full_and_over_the_share() {
        let mut window = FailureWindow::new(FailurePolicy {
            ratio: 0.5,
            window: 4,
        });
        assert_eq!(window.record(true), None);
        assert_eq!(window.record(true), None);
        assert_eq!(window.record(false), None);
        assert_eq!(window.record(false), Some(2));
        // The oldest failure slides out: 1 of 4.
        assert_eq!(window.record(false), None);
        let mut off = FailureWindow::new(FailurePolicy {
            ratio: 0.5,
            window: 0,
        });
        assert_eq!(off.record(true), None);
    }
}
