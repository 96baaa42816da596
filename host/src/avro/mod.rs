//! Self-contained Apache Avro 1.11 codec.
//!
//! The host moves events between Kafka topics whose payloads are Avro
//! (Confluent wire format) and plugins that speak plain JSON, so this module
//! converts in both directions without an external Avro crate:
//!
//! - [`Schema`]: parser for the full 1.11 schema language, Parsing Canonical
//!   Form and the CRC-64-AVRO (Rabin) fingerprint;
//! - [`encode_json`]: plain JSON to Avro binary, and [`encode_json_text`],
//!   its fast path for JSON text (no tree in between);
//! - [`decode_to_json`] / [`decode_exact`]: Avro binary to plain JSON (the
//!   same shape [`encode_json`] accepts, so the two round-trip), and
//!   [`decode_exact_to_text`], the same as JSON text without the tree in
//!   between (what plugins are handed), and [`decode_exact_fields`], the
//!   value with only some top-level fields built (what route filters read);
//! - [`frame`] / [`unframe`]: the Confluent schema-registry wire format;
//! - [`read_container`]: object container files (codecs `null` and
//!   `deflate`);
//! - [`compat`]: static reader/writer compatibility ([`compat::can_read`])
//!   and schema-registry levels ([`compat::check`]), so a new schema version
//!   can be vetted before anyone writes with it.
//!
//! Schema resolution (reading with a schema different from the writer's) is
//! done by [`Resolver`] and [`decode_resolved`] / [`decode_resolved_exact`]:
//! they walk the writer and the reader arena side by side and produce the
//! same JSON shape as [`decode_to_json`] gives for the reader schema.

// Parsing untrusted bytes is exactly where unsafe shortcuts hurt most.
#![forbid(unsafe_code)]

pub mod compat;
mod container;
mod decimal;
mod decode;
mod encode;
mod encode_text;
mod inflate;
mod path;
mod resolve;
mod schema;
mod time;
mod wire;

#[cfg(test)]
mod tests;

pub use container::{ContainerError, read_container};
pub use decode::{
    DecodeError, DecodeErrorKind, decode_exact, decode_exact_fields, decode_exact_to_text,
    decode_to_json,
};
pub use encode::{EncodeError, encode_json};
pub use encode_text::encode_json_text;
pub use resolve::{
    ResolveError, ResolveErrorKind, Resolver, decode_resolved, decode_resolved_exact,
};
pub use schema::{
    EnumSchema, Field, FieldOrder, FixedSchema, LogicalType, Node, NodeId, NodeKind, RecordSchema,
    Schema, SchemaError,
};
pub use wire::{WireError, frame, unframe};
