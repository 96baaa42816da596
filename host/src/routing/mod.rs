//! Self-service routing: routes kept in a compacted topic ([`store`]),
//! checked when written ([`route`]), filtered by content ([`filter`]),
//! decided per event ([`decide`]) and run exactly once by the [`engine`].
//! [`preview`] answers `explain` and `dry-run` without sending anything.

pub mod decide;
pub mod engine;
pub mod filter;
pub mod preview;
pub mod route;
pub mod store;

pub use route::{Route, RoutePlugin, Source, StoredRoute};
pub use store::RouteStore;
