//! Integration tests against the real local stack (`scripts/stack.sh up`).
//! One binary, so the host and the plugins are built and linked once.

mod admin;
mod aggregation;
mod bad_input;
mod compatibility;
mod harness;
mod languages;
mod outage;
mod poison;
mod registry;
mod resume;
mod round_trip;
mod routing;
mod sandbox;
mod scaffold;
mod wire;
mod x12;
