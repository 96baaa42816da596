//! Host-side bindings generated from `wit/switchyard.wit`.
//!
//! The transformer world reuses the router world's `types` and `log`
//! modules, so a host value of `Event` works for both worlds and `log` is
//! implemented once.
#![allow(missing_docs, clippy::all)]

/// The `router` world.
pub mod router {
    wasmtime::component::bindgen!({
        world: "router",
        path: "../wit",
    });
}

/// The `transformer` world.
pub mod transformer {
    wasmtime::component::bindgen!({
        world: "transformer",
        path: "../wit",
        with: {
            "switchyard:plugin/types": super::router::switchyard::plugin::types,
            "switchyard:plugin/log": super::router::switchyard::plugin::log,
        },
    });
}

/// The `aggregator` world.
pub mod aggregator {
    wasmtime::component::bindgen!({
        world: "aggregator",
        path: "../wit",
        with: {
            "switchyard:plugin/types": super::router::switchyard::plugin::types,
            "switchyard:plugin/log": super::router::switchyard::plugin::log,
        },
    });
}

/// The `session-aggregator` world: an aggregator that also merges sessions.
pub mod session_aggregator {
    wasmtime::component::bindgen!({
        world: "session-aggregator",
        path: "../wit",
        with: {
            "switchyard:plugin/types": super::router::switchyard::plugin::types,
            "switchyard:plugin/log": super::router::switchyard::plugin::log,
        },
    });
}

pub use router::switchyard::plugin::log::{Host as LogHost, Level};
pub use router::switchyard::plugin::types::{
    AggregateResult, ConfigEntry, Emitted, Event, Header, Metadata, PluginError, Position,
};
