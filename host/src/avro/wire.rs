//! Confluent schema-registry wire format: `0x00`, a 4-byte big-endian schema
//! id, then the Avro body.

/// Error raised by [`unframe`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message has no bytes at all (often a tombstone).
    #[error("empty message: expected magic byte 0x00 and a 4-byte schema id")]
    Empty,
    /// The first byte is not the Confluent magic byte.
    #[error("wrong magic byte 0x{0:02x}: expected 0x00 (not a schema-registry framed message)")]
    BadMagic(u8),
    /// The message ends before the 4-byte schema id does.
    #[error("message of {0} bytes is shorter than the 5-byte header")]
    TooShort(usize),
}

/// Magic byte that starts every Confluent-framed message.
const MAGIC: u8 = 0;

/// Prefixes an Avro body with the Confluent header for `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a Confluent-framed message into its schema id and Avro body.
pub fn unframe(message: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match message {
        [] => Err(WireError::Empty),
        [m, ..] if *m != MAGIC => Err(WireError::BadMagic(*m)),
        [_, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => Err(WireError::TooShort(message.len())),
    }
}
