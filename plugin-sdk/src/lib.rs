//! Write Switchyard plugins in ordinary Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` that targets
//! one world of the `switchyard:plugin` WIT package (`wit/switchyard.wit` in
//! the repository). This crate generates the guest bindings of every world and
//! adds a few conveniences, so a plugin is a type, one trait impl and one macro
//! call:
//!
//! ```
//! use switchyard_plugin_sdk::{export_router, Router, Event, ConfigEntry, PluginError};
//!
//! struct EverythingToAudit;
//!
//! impl Router for EverythingToAudit {
//!     fn route(_event: Event, _config: Vec<ConfigEntry>) -> Result<Vec<String>, PluginError> {
//!         Ok(vec!["audit.all".to_string()])
//!     }
//! }
//!
//! export_router!(EverythingToAudit);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file in `target/wasm32-wasip2/release/` is the component to upload.
//!
//! Plugins see each event's object as a JSON document: use [`Event::object`]
//! to read it into your own `serde` type and [`Emitted::new`] to build output.
//! The host validates whatever a plugin emits against the registered Avro
//! schema, so a plugin never has to know Avro.
#![deny(missing_docs)]

/// Generated bindings of the `router` world. Most plugins use the re-exports
/// at the crate root instead.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod router {
    wit_bindgen::generate!({
        world: "router",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_router",
        default_bindings_module: "switchyard_plugin_sdk::router",
    });
}

/// Generated bindings of the `transformer` world. Its shared types are the
/// same Rust types as the router's, so helpers work for both.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod transformer {
    wit_bindgen::generate!({
        world: "transformer",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_transformer",
        default_bindings_module: "switchyard_plugin_sdk::transformer",
        with: {
            "switchyard:plugin/types@0.1.0": crate::router::switchyard::plugin::types,
            "switchyard:plugin/log@0.1.0": crate::router::switchyard::plugin::log,
        },
    });
}

/// Generated bindings of the `aggregator` world, sharing the router's types.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod aggregator {
    wit_bindgen::generate!({
        world: "aggregator",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_aggregator",
        default_bindings_module: "switchyard_plugin_sdk::aggregator",
        with: {
            "switchyard:plugin/types@0.1.0": crate::router::switchyard::plugin::types,
            "switchyard:plugin/log@0.1.0": crate::router::switchyard::plugin::log,
        },
    });
}

/// Generated bindings of the `session-aggregator` world: an aggregator over
/// session windows, which also merges two sessions an event joins.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod session_aggregator {
    wit_bindgen::generate!({
        world: "session-aggregator",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_session_aggregator",
        default_bindings_module: "switchyard_plugin_sdk::session_aggregator",
        with: {
            "switchyard:plugin/types@0.1.0": crate::router::switchyard::plugin::types,
            "switchyard:plugin/log@0.1.0": crate::router::switchyard::plugin::log,
        },
    });
}

pub use aggregator::Guest as Aggregator;
pub use aggregator::export_aggregator;
pub use router::Guest as Router;
pub use router::export_router;
pub use router::switchyard::plugin::log::Level;
pub use router::switchyard::plugin::types::{
    AggregateResult, ConfigEntry, Emitted, Event, Header, Metadata, PluginError, Position,
};
pub use session_aggregator::Guest as SessionAggregator;
pub use session_aggregator::export_session_aggregator;
pub use transformer::Guest as Transformer;
pub use transformer::export_transformer;

impl Event {
    /// Reads the event's object into any `serde` type.
    ///
    /// A payload that does not fit becomes [`PluginError::InvalidEvent`], which
    /// the host sends to the dead-letter topic with this message.
    ///
    /// ```
    /// # use switchyard_plugin_sdk::*;
    /// #[derive(serde::Deserialize)]
    /// struct Claim { claim_id: String }
    /// # let event = Event { metadata: Metadata { id: "1".into(), noun: "claim".into(),
    /// #   verb: "status-changed".into(), key: "C1".into(), time: String::new(),
    /// #   source: String::new(), headers: vec![], position: None },
    /// #   object: r#"{"claim_id":"C1"}"#.into() };
    /// let claim: Claim = event.object()?;
    /// assert_eq!(claim.claim_id, "C1");
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn object<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(&self.object).map_err(|error| {
            PluginError::InvalidEvent(format!(
                "object of `{}.{}` does not have the expected shape: {error}",
                self.metadata.noun, self.metadata.verb
            ))
        })
    }

    /// Reads the event's object as untyped JSON.
    pub fn object_value(&self) -> Result<serde_json::Value, PluginError> {
        self.object()
    }

    /// The value of the first header with this name, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.metadata
            .headers
            .iter()
            .find(|header| header.name == name)
            .map(|header| header.value.as_slice())
    }
}

impl Emitted {
    /// Builds an event to emit from any `serde` value.
    ///
    /// ```
    /// # use switchyard_plugin_sdk::*;
    /// let out = Emitted::new("claim", "status-changed", "C1", &serde_json::json!({"claim_id": "C1"}))?;
    /// assert_eq!(out.noun, "claim");
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn new<T: serde::Serialize>(
        noun: &str,
        verb: &str,
        key: &str,
        object: &T,
    ) -> Result<Self, PluginError> {
        let object = serde_json::to_string(object).map_err(|error| {
            PluginError::Failed(format!(
                "cannot serialize object of `{noun}.{verb}`: {error}"
            ))
        })?;
        Ok(Emitted {
            noun: noun.to_string(),
            verb: verb.to_string(),
            key: key.to_string(),
            object,
        })
    }
}

impl AggregateResult {
    /// Keeps `state` (any `serde` value) as the key's new state and emits
    /// `emit`.
    ///
    /// ```
    /// # use switchyard_plugin_sdk::*;
    /// let result = AggregateResult::keep(&serde_json::json!({"count": 2}), vec![])?;
    /// assert_eq!(result.state.as_deref(), Some(r#"{"count":2}"#));
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn keep<T: serde::Serialize>(state: &T, emit: Vec<Emitted>) -> Result<Self, PluginError> {
        let state = serde_json::to_string(state)
            .map_err(|error| PluginError::Failed(format!("cannot serialize the state: {error}")))?;
        Ok(AggregateResult {
            state: Some(state),
            emit,
        })
    }

    /// Deletes the key's state (for instance when a claim is closed).
    pub fn delete(emit: Vec<Emitted>) -> Self {
        AggregateResult { state: None, emit }
    }
}

/// Reads an aggregator's state argument into a `serde` type, or its default
/// when the key has no state yet.
///
/// ```
/// # use switchyard_plugin_sdk::*;
/// #[derive(Default, serde::Deserialize)]
/// struct Count { count: u64 }
/// let fresh: Count = state_or_default(None)?;
/// assert_eq!(fresh.count, 0);
/// let known: Count = state_or_default(Some(r#"{"count":4}"#.to_string()))?;
/// assert_eq!(known.count, 4);
/// # Ok::<(), PluginError>(())
/// ```
pub fn state_or_default<T: serde::de::DeserializeOwned + Default>(
    state: Option<String>,
) -> Result<T, PluginError> {
    match state {
        None => Ok(T::default()),
        Some(text) => serde_json::from_str(&text).map_err(|error| {
            PluginError::Failed(format!(
                "stored state does not have the expected shape: {error}"
            ))
        }),
    }
}

/// Finds a configuration value by name.
///
/// ```
/// # use switchyard_plugin_sdk::*;
/// let config = vec![ConfigEntry { name: "prefix".into(), value: "portal".into() }];
/// assert_eq!(config_value(&config, "prefix"), Some("portal"));
/// assert_eq!(config_value(&config, "missing"), None);
/// ```
pub fn config_value<'a>(config: &'a [ConfigEntry], name: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| entry.value.as_str())
}

/// Writes a structured log line into the host's log, tagged with this
/// plugin's name and version.
///
/// ```no_run
/// # use switchyard_plugin_sdk::*;
/// log(Level::Info, "routed claim", &[("claim_id", "C1")]);
/// ```
///
/// Outside WebAssembly (a plugin's native unit tests) there is no host: the
/// line goes to stderr when `SWITCHYARD_PLUGIN_LOG` is set, and nowhere
/// otherwise, so plugins can be tested with plain `cargo test`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        router::switchyard::plugin::log::emit(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *ENABLED.get_or_init(|| std::env::var_os("SWITCHYARD_PLUGIN_LOG").is_some()) {
            eprintln!("[{level:?}] {message} {fields:?}");
        }
    }
}
