//! Avro binary to plain JSON.
//!
//! Input is untrusted (it arrives from Kafka), so every length is checked
//! against the bytes actually remaining before anything is allocated, block
//! counts of items that occupy no bytes are capped, and nesting is bounded.

use serde_json::{Map, Number, Value};

use super::decimal;
use super::encode::union_needs_wrapper;
use super::path::Path;
use super::schema::{LogicalType, MAX_DEPTH, NodeId, NodeKind, Schema};
use super::time::{self, Unit};

/// Most items that encode to zero bytes (such as `null`) accepted in one
/// whole value, across all its arrays. Such counts cannot be checked against
/// the input length, so without a budget for the whole value a few bytes of
/// nested array counts could demand gigabytes of output.
const MAX_ZERO_SIZE_ITEMS: u64 = 1 << 16;

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input")]
    UnexpectedEof,
    /// A varint ran past 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A value decoded as `long` does not fit the schema's `int`.
    #[error("value {0} is out of range for `int`")]
    IntOutOfRange(i64),
    /// A bytes/string length or block size was negative.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// A length or item count exceeds what the remaining input can hold.
    #[error("length {0} exceeds the remaining input")]
    LengthTooLarge(i64),
    /// A boolean byte was neither 0 nor 1.
    #[error("invalid boolean byte 0x{0:02x}")]
    InvalidBoolean(u8),
    /// A union branch index was out of range.
    #[error("union index {index} is out of range for {count} branches")]
    InvalidUnionIndex {
        /// Index read from the input.
        index: i64,
        /// Number of branches in the schema.
        count: usize,
    },
    /// An enum symbol index was out of range.
    #[error("enum index {index} is out of range for {count} symbols")]
    InvalidEnumIndex {
        /// Index read from the input.
        index: i64,
        /// Number of symbols in the schema.
        count: usize,
    },
    /// A `string` was not valid UTF-8.
    #[error("string is not valid utf-8")]
    InvalidUtf8,
    /// Bytes were left after the value (only from [`decode_exact`]).
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// Nesting exceeded the decoder's depth limit.
    #[error("value is nested deeper than {0} levels")]
    TooDeep(usize),
    /// A well-formed value the logical type cannot represent.
    #[error("{0}")]
    InvalidValue(String),
}

/// Error raised by [`decode_to_json`] and [`decode_exact`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at `{path}`: {kind}")]
pub struct DecodeError {
    path: String,
    kind: DecodeErrorKind,
}

impl DecodeError {
    /// JSON path of the value being decoded when the error happened.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The kind of failure.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    pub(crate) fn at(path: &Path<'_>, kind: DecodeErrorKind) -> Self {
        Self {
            path: path.render(),
            kind,
        }
    }
}

/// Decodes one value of `schema` from the front of `input`, advancing it past
/// the value. Trailing bytes are left in `input`.
pub fn decode_to_json(schema: &Schema, input: &mut &[u8]) -> Result<Value, DecodeError> {
    Decoder {
        schema,
        zero_size_budget: std::cell::Cell::new(MAX_ZERO_SIZE_ITEMS),
    }
    .value(schema.root(), input, &Path::Root, 0)
}

/// Decodes exactly one value of `schema` from `input`, rejecting trailing bytes.
pub fn decode_exact(schema: &Schema, mut input: &[u8]) -> Result<Value, DecodeError> {
    let value = decode_to_json(schema, &mut input)?;
    if !input.is_empty() {
        return Err(DecodeError::at(
            &Path::Root,
            DecodeErrorKind::TrailingBytes(input.len()),
        ));
    }
    Ok(value)
}

/// Decodes exactly one value of `schema` from `input`, keeping only the
/// top-level fields of a record that `keep` names: the value of
/// [`decode_exact`] without the other fields. The fields left out are still
/// read and checked, so this fails exactly where and how [`decode_exact`]
/// would; they are only not built. For a route filter, which reads a few
/// fields of every event. A schema whose root is not a record is decoded
/// whole.
pub fn decode_exact_fields(
    schema: &Schema,
    mut input: &[u8],
    keep: impl Fn(&str) -> bool,
) -> Result<Value, DecodeError> {
    let NodeKind::Record(record) = &schema.node(schema.root()).kind else {
        return decode_exact(schema, input);
    };
    let decoder = Decoder {
        schema,
        zero_size_budget: std::cell::Cell::new(MAX_ZERO_SIZE_ITEMS),
    };
    let mut out = Map::new();
    for f in &record.fields {
        let path = Path::Field(&Path::Root, &f.name);
        if keep(&f.name) {
            let v = decoder.value(f.schema, &mut input, &path, 1)?;
            out.insert(f.name.clone(), v);
        } else {
            decoder.check(f.schema, &mut input, &path, 1)?;
        }
    }
    if !input.is_empty() {
        return Err(DecodeError::at(
            &Path::Root,
            DecodeErrorKind::TrailingBytes(input.len()),
        ));
    }
    Ok(Value::Object(out))
}

/// Decodes exactly one value of `schema` from `input` as JSON text: the
/// text of [`decode_exact`]'s value, without building it. Records, arrays
/// and strings, the bulk of an event, are written as they are read; maps
/// and unions (whose rendering depends on the whole value) and the other
/// scalars go through a [`Value`] of their own.
pub fn decode_exact_to_text(schema: &Schema, mut input: &[u8]) -> Result<String, DecodeError> {
    let decoder = Decoder {
        schema,
        zero_size_budget: std::cell::Cell::new(MAX_ZERO_SIZE_ITEMS),
    };
    let mut out = Vec::with_capacity(input.len() * 2 + 16);
    decoder.write(schema.root(), &mut input, &Path::Root, 0, &mut out)?;
    if !input.is_empty() {
        return Err(DecodeError::at(
            &Path::Root,
            DecodeErrorKind::TrailingBytes(input.len()),
        ));
    }
    // Only valid UTF-8 was written: strings were checked, the rest is
    // serde_json's output.
    Ok(String::from_utf8(out).expect("json text is utf-8"))
}

/// Appends `value` as JSON text (serde_json's own rendering, as `Display`
/// of a [`Value`] gives it).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("writing json to memory does not fail");
}

/// Reads a zig-zag varint `long`.
pub(crate) fn read_long(input: &mut &[u8]) -> Result<i64, DecodeErrorKind> {
    let mut n: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&b, rest) = input.split_first().ok_or(DecodeErrorKind::UnexpectedEof)?;
        *input = rest;
        if shift == 63 && b > 1 {
            return Err(DecodeErrorKind::VarintOverflow);
        }
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
        }
        shift += 7;
    }
}

/// Splits `n` bytes off the front of `input`.
pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeErrorKind> {
    if input.len() < n {
        return Err(DecodeErrorKind::UnexpectedEof);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// Reads a length-prefixed byte sequence without copying.
pub(crate) fn read_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], DecodeErrorKind> {
    let len = read_long(input)?;
    if len < 0 {
        return Err(DecodeErrorKind::NegativeLength(len));
    }
    // Checked before any use of `len`, so a hostile length costs nothing.
    let n = usize::try_from(len).map_err(|_| DecodeErrorKind::LengthTooLarge(len))?;
    if n > input.len() {
        return Err(DecodeErrorKind::LengthTooLarge(len));
    }
    take(input, n)
}

/// Renders bytes the Avro JSON way: one character per byte.
fn latin1(b: &[u8]) -> Value {
    Value::String(b.iter().map(|&c| char::from(c)).collect())
}

/// An `int` as JSON: a `date` as its ISO date, else the number. Shared with
/// the resolving decoder, so both render a value alike.
pub(super) fn int_json(n: i32, logical: Option<LogicalType>) -> Value {
    match logical {
        Some(LogicalType::Date) => {
            time::format_date(i64::from(n)).map_or_else(|| Value::from(n), Value::String)
        }
        _ => Value::from(n),
    }
}

/// A `long` as JSON: timestamps as RFC 3339 text, else the number.
pub(super) fn long_json(n: i64, logical: Option<LogicalType>) -> Value {
    let text = match logical {
        Some(LogicalType::TimestampMillis) => time::format_timestamp(n, Unit::Millis, false),
        Some(LogicalType::TimestampMicros) => time::format_timestamp(n, Unit::Micros, false),
        Some(LogicalType::LocalTimestampMillis) => time::format_timestamp(n, Unit::Millis, true),
        Some(LogicalType::LocalTimestampMicros) => time::format_timestamp(n, Unit::Micros, true),
        _ => None,
    };
    text.map_or_else(|| Value::from(n), Value::String)
}

/// A float as JSON; NaN and the infinities, which JSON numbers cannot
/// hold, as strings.
pub(super) fn float_json(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

struct Decoder<'s> {
    schema: &'s Schema,
    /// Zero-size items still allowed in this value.
    zero_size_budget: std::cell::Cell<u64>,
}

impl Decoder<'_> {
    /// Decodes node `id`. Kept small because it is on the recursion path (see
    /// the encoder's `value`).
    fn value(
        &self,
        id: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::at(path, DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        match &self.schema.node(id).kind {
            NodeKind::Array(items) => self.array(*items, input, path, depth),
            NodeKind::Map(values) => self.map(*values, input, path, depth),
            NodeKind::Record(r) => {
                let mut out = Map::new();
                for f in &r.fields {
                    let v = self.value(f.schema, input, &Path::Field(path, &f.name), depth + 1)?;
                    out.insert(f.name.clone(), v);
                }
                Ok(Value::Object(out))
            }
            NodeKind::Union(branches) => self.union(branches, input, path, depth),
            _ => self.scalar(id, input, path),
        }
    }

    /// Reads node `id` as [`Self::value`] does, with the same checks and
    /// the same errors, without building the value.
    fn check(
        &self,
        id: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::at(path, DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        let err = |kind| DecodeError::at(path, kind);
        let node = self.schema.node(id);
        match &node.kind {
            NodeKind::Record(r) => {
                for f in &r.fields {
                    self.check(f.schema, input, &Path::Field(path, &f.name), depth + 1)?;
                }
            }
            NodeKind::Array(items) => self.array_items(*items, input, path, |i, input| {
                self.check(*items, input, &Path::Index(path, i), depth + 1)
            })?,
            NodeKind::Map(values) => self.map_entries(input, path, |key, input| {
                self.check(*values, input, &Path::Key(path, key), depth + 1)
            })?,
            NodeKind::Union(branches) => {
                let chosen = self.union_branch(branches, input, path)?;
                self.check(branches[chosen], input, path, depth + 1)?;
            }
            NodeKind::Null => {}
            NodeKind::String => {
                let b = read_bytes(input).map_err(err)?;
                std::str::from_utf8(b).map_err(|_| err(DecodeErrorKind::InvalidUtf8))?;
            }
            NodeKind::Long => {
                read_long(input).map_err(err)?;
            }
            NodeKind::Enum(e) => {
                let index = read_long(input).map_err(err)?;
                if usize::try_from(index).map_or(true, |i| i >= e.symbols.len()) {
                    return Err(err(DecodeErrorKind::InvalidEnumIndex {
                        index,
                        count: e.symbols.len(),
                    }));
                }
            }
            // The rest are short, or carry checks of their own (ranges,
            // decimals): read as `value` reads them.
            _ => {
                self.scalar(id, input, path)?;
            }
        }
        Ok(())
    }

    /// [`Self::value`], written as JSON text to `out`.
    fn write(
        &self,
        id: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::at(path, DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        match &self.schema.node(id).kind {
            NodeKind::Record(r) => {
                out.push(b'{');
                // Field names are unique within a record (the schema parser
                // refuses duplicates), so none overwrites another as it
                // would in a map.
                for (i, f) in r.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json(out, f.name.as_str());
                    out.push(b':');
                    self.write(f.schema, input, &Path::Field(path, &f.name), depth + 1, out)?;
                }
                out.push(b'}');
                Ok(())
            }
            NodeKind::Array(items) => self.write_array(*items, input, path, depth, out),
            NodeKind::String if self.schema.node(id).logical.is_none() => {
                let b = read_bytes(input).map_err(|kind| DecodeError::at(path, kind))?;
                let text = std::str::from_utf8(b)
                    .map_err(|_| DecodeError::at(path, DecodeErrorKind::InvalidUtf8))?;
                write_json(out, text);
                Ok(())
            }
            _ => {
                let value = self.value(id, input, path, depth)?;
                write_json(out, &value);
                Ok(())
            }
        }
    }

    /// [`Self::array`], written as JSON text to `out`.
    fn write_array(
        &self,
        items: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        out.push(b'[');
        self.array_items(items, input, path, |i, input| {
            if i > 0 {
                out.push(b',');
            }
            self.write(items, input, &Path::Index(path, i), depth + 1, out)
        })?;
        out.push(b']');
        Ok(())
    }

    fn array(
        &self,
        items: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        let mut out = Vec::new();
        self.array_items(items, input, path, |i, input| {
            out.push(self.value(items, input, &Path::Index(path, i), depth + 1)?);
            Ok(())
        })?;
        Ok(Value::Array(out))
    }

    fn map(
        &self,
        values: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        let mut out = Map::new();
        self.map_entries(input, path, |key, input| {
            let v = self.value(values, input, &Path::Key(path, key), depth + 1)?;
            out.insert(key.to_owned(), v);
            Ok(())
        })?;
        Ok(Value::Object(out))
    }

    /// Reads an array's blocks, handing each item's index to `item` to read
    /// the item.
    fn array_items<'i>(
        &self,
        items: NodeId,
        input: &mut &'i [u8],
        path: &Path<'_>,
        mut item: impl FnMut(usize, &mut &'i [u8]) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let zero_size = self.schema.is_zero_size(items);
        let mut i = 0_usize;
        loop {
            let count = self.array_block(zero_size, input, path)?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                item(i, input)?;
                i += 1;
            }
        }
    }

    /// Reads a map's blocks and keys, handing each key to `entry` to read
    /// its value.
    fn map_entries<'i>(
        &self,
        input: &mut &'i [u8],
        path: &Path<'_>,
        mut entry: impl FnMut(&str, &mut &'i [u8]) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let err = |kind| DecodeError::at(path, kind);
        loop {
            let count = self.block_count(input, path)?;
            if count == 0 {
                return Ok(());
            }
            // Every entry has at least a one-byte key length.
            if count > input.len() as u64 {
                return Err(err(DecodeErrorKind::LengthTooLarge(count as i64)));
            }
            for _ in 0..count {
                let key = read_bytes(input).map_err(err)?;
                let key =
                    std::str::from_utf8(key).map_err(|_| err(DecodeErrorKind::InvalidUtf8))?;
                entry(key, input)?;
            }
        }
    }

    /// Reads a union's branch index and checks it names a branch.
    fn union_branch(
        &self,
        branches: &[NodeId],
        input: &mut &[u8],
        path: &Path<'_>,
    ) -> Result<usize, DecodeError> {
        let index = read_long(input).map_err(|k| DecodeError::at(path, k))?;
        usize::try_from(index)
            .ok()
            .filter(|&i| i < branches.len())
            .ok_or_else(|| {
                DecodeError::at(
                    path,
                    DecodeErrorKind::InvalidUnionIndex {
                        index,
                        count: branches.len(),
                    },
                )
            })
    }

    fn union(
        &self,
        branches: &[NodeId],
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        let chosen = self.union_branch(branches, input, path)?;
        let v = self.value(branches[chosen], input, path, depth + 1)?;
        Ok(if union_needs_wrapper(self.schema, branches, chosen, &v) {
            let mut m = Map::new();
            m.insert(self.schema.node(branches[chosen]).type_name().to_owned(), v);
            Value::Object(m)
        } else {
            v
        })
    }

    /// Leaf types.
    #[inline(never)]
    fn scalar(&self, id: NodeId, input: &mut &[u8], path: &Path<'_>) -> Result<Value, DecodeError> {
        let err = |kind| DecodeError::at(path, kind);
        let node = self.schema.node(id);
        Ok(match &node.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Boolean => match take(input, 1).map_err(err)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(err(DecodeErrorKind::InvalidBoolean(b))),
            },
            NodeKind::Int => {
                let n = read_long(input).map_err(err)?;
                let n = i32::try_from(n).map_err(|_| err(DecodeErrorKind::IntOutOfRange(n)))?;
                int_json(n, node.logical)
            }
            NodeKind::Long => long_json(read_long(input).map_err(err)?, node.logical),
            NodeKind::Float => {
                let b = take(input, 4).map_err(err)?;
                float_json(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            NodeKind::Double => {
                let b = take(input, 8).map_err(err)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                float_json(f64::from_le_bytes(a))
            }
            NodeKind::Bytes => {
                let b = read_bytes(input).map_err(err)?;
                match node.logical {
                    Some(LogicalType::Decimal { precision, scale }) => Value::String(
                        decimal::from_unscaled(b, precision, scale)
                            .map_err(|m| err(DecodeErrorKind::InvalidValue(m)))?,
                    ),
                    _ => latin1(b),
                }
            }
            NodeKind::String => {
                let b = read_bytes(input).map_err(err)?;
                Value::String(
                    std::str::from_utf8(b)
                        .map_err(|_| err(DecodeErrorKind::InvalidUtf8))?
                        .to_owned(),
                )
            }
            NodeKind::Fixed(f) => {
                let b = take(input, f.size).map_err(err)?;
                match node.logical {
                    Some(LogicalType::Decimal { precision, scale }) => Value::String(
                        decimal::from_unscaled(b, precision, scale)
                            .map_err(|m| err(DecodeErrorKind::InvalidValue(m)))?,
                    ),
                    Some(LogicalType::Duration) => {
                        let part = |i: usize| {
                            Value::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
                        };
                        let mut m = Map::new();
                        m.insert("months".into(), part(0));
                        m.insert("days".into(), part(4));
                        m.insert("milliseconds".into(), part(8));
                        Value::Object(m)
                    }
                    _ => latin1(b),
                }
            }
            NodeKind::Enum(e) => {
                let index = read_long(input).map_err(err)?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| {
                        err(DecodeErrorKind::InvalidEnumIndex {
                            index,
                            count: e.symbols.len(),
                        })
                    })?;
                Value::String(symbol.clone())
            }
            NodeKind::Array(_) | NodeKind::Map(_) | NodeKind::Record(_) | NodeKind::Union(_) => {
                unreachable!("containers are dispatched by `value`")
            }
        })
    }

    /// Reads an array block header and returns its item count, bounded:
    /// each item takes at least one byte unless it is zero-size, and
    /// zero-size items draw on the whole value's budget.
    fn array_block(
        &self,
        zero_size: bool,
        input: &mut &[u8],
        path: &Path<'_>,
    ) -> Result<u64, DecodeError> {
        let count = self.block_count(input, path)?;
        let limit = if zero_size {
            self.zero_size_budget.get()
        } else {
            input.len() as u64
        };
        if count > limit {
            return Err(DecodeError::at(
                path,
                DecodeErrorKind::LengthTooLarge(count as i64),
            ));
        }
        if zero_size {
            self.zero_size_budget.set(limit - count);
        }
        Ok(count)
    }

    /// Reads an array/map block header and returns its item count. A
    /// negative count announces a byte size, which we read and ignore.
    fn block_count(&self, input: &mut &[u8], path: &Path<'_>) -> Result<u64, DecodeError> {
        let err = |kind| DecodeError::at(path, kind);
        let count = read_long(input).map_err(err)?;
        if count < 0 {
            let size = read_long(input).map_err(err)?;
            if size < 0 {
                return Err(err(DecodeErrorKind::NegativeLength(size)));
            }
            return Ok(count.unsigned_abs());
        }
        Ok(count as u64)
    }
}
