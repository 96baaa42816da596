//! Object container file reader (spec section "Object Container Files").

use serde_json::Value;

use super::decode::{DecodeError, DecodeErrorKind, decode_to_json, read_bytes, read_long, take};
use super::inflate::inflate;
use super::path::Path;
use super::schema::{Schema, SchemaError};

/// Largest decompressed block accepted, so a small hostile file cannot make
/// the reader allocate without bound.
const MAX_BLOCK_BYTES: usize = 64 << 20;

/// Error raised by [`read_container`].
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The file does not start with `Obj\x01`.
    #[error("not an avro object container file: missing `Obj\\x01` magic")]
    BadMagic,
    /// The header is malformed.
    #[error("invalid container header: {0}")]
    Header(DecodeErrorKind),
    /// The header has no `avro.schema` entry.
    #[error("container header has no `avro.schema` metadata")]
    MissingSchema,
    /// The embedded schema does not parse.
    #[error("invalid schema in container header: {0}")]
    Schema(#[from] SchemaError),
    /// The file uses a codec this reader does not implement.
    #[error("unsupported codec `{0}`; supported codecs are `null` and `deflate`")]
    UnsupportedCodec(String),
    /// A block header or sync marker is malformed.
    #[error("invalid block {block}: {reason}")]
    Block {
        /// Zero-based block number.
        block: usize,
        /// What was wrong.
        reason: String,
    },
    /// A record inside a block failed to decode.
    #[error("invalid record {record} in block {block}: {source}")]
    Record {
        /// Zero-based block number.
        block: usize,
        /// Zero-based record number within the block.
        record: usize,
        /// The decoding error.
        source: DecodeError,
    },
}

/// Reads a whole object container file into its writer schema and records.
pub fn read_container(data: &[u8]) -> Result<(Schema, Vec<Value>), ContainerError> {
    let mut input = data
        .strip_prefix(b"Obj\x01".as_slice())
        .ok_or(ContainerError::BadMagic)?;
    let mut schema_text = None;
    let mut codec = String::from("null");
    // The metadata is an Avro `map<bytes>`, read with the primitive readers.
    loop {
        let mut count = read_long(&mut input).map_err(ContainerError::Header)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            read_long(&mut input).map_err(ContainerError::Header)?;
            count = count.checked_neg().ok_or(ContainerError::Header(
                DecodeErrorKind::LengthTooLarge(count),
            ))?;
        }
        for _ in 0..count {
            let key = read_bytes(&mut input).map_err(ContainerError::Header)?;
            let value = read_bytes(&mut input).map_err(ContainerError::Header)?;
            match key {
                b"avro.schema" => schema_text = Some(value),
                b"avro.codec" => {
                    codec = String::from_utf8(value.to_vec())
                        .map_err(|_| ContainerError::Header(DecodeErrorKind::InvalidUtf8))?;
                }
                _ => {}
            }
        }
    }
    let sync = take(&mut input, 16).map_err(ContainerError::Header)?;
    let schema_text = schema_text.ok_or(ContainerError::MissingSchema)?;
    let schema_text = std::str::from_utf8(schema_text)
        .map_err(|_| ContainerError::Header(DecodeErrorKind::InvalidUtf8))?;
    let schema = Schema::parse_str(schema_text)?;
    if !matches!(codec.as_str(), "null" | "deflate") {
        return Err(ContainerError::UnsupportedCodec(codec));
    }

    let mut records = Vec::new();
    let mut block = 0;
    while !input.is_empty() {
        let bad = |reason: String| ContainerError::Block { block, reason };
        let count = read_long(&mut input).map_err(|e| bad(e.to_string()))?;
        let size = read_long(&mut input).map_err(|e| bad(e.to_string()))?;
        if count < 0 || size < 0 {
            return Err(bad(format!("negative object count {count} or size {size}")));
        }
        let size = usize::try_from(size).map_err(|_| bad(format!("size {size} is too large")))?;
        let raw = take(&mut input, size)
            .map_err(|_| bad(format!("size {size} exceeds the remaining input")))?;
        let marker = take(&mut input, 16).map_err(|_| bad("missing sync marker".into()))?;
        if marker != sync {
            return Err(bad("sync marker does not match the header".into()));
        }
        let inflated;
        let mut body = if codec == "deflate" {
            inflated = inflate(raw, MAX_BLOCK_BYTES).map_err(bad)?;
            inflated.as_slice()
        } else {
            raw
        };
        // A record may encode to zero bytes, so the count cannot always be
        // checked against the block size; a fixed bound keeps it from spinning.
        if count as u64 > (body.len() as u64).max(1 << 20) {
            return Err(bad(format!("object count {count} exceeds the block size")));
        }
        for record in 0..count as usize {
            let v =
                decode_to_json(&schema, &mut body).map_err(|source| ContainerError::Record {
                    block,
                    record,
                    source,
                })?;
            records.push(v);
        }
        if !body.is_empty() {
            return Err(ContainerError::Record {
                block,
                record: count as usize,
                source: DecodeError::at(&Path::Root, DecodeErrorKind::TrailingBytes(body.len())),
            });
        }
        block += 1;
    }
    Ok((schema, records))
}
