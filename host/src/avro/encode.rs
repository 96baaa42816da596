//! Plain JSON to Avro binary.
//!
//! "Plain" JSON is what plugins and people write: unions are unwrapped (the
//! first branch the value fits is used), logical types are human-readable
//! (`"2024-01-31"`, `"8513.88"`) and bytes are strings of code points 0-255.
//! The Avro-style wrapper `{"<branch name>": value}` is accepted too, so the
//! decoder can disambiguate the rare value that would otherwise select a
//! different branch.

use serde_json::{Map, Value};

use super::decimal;
use super::path::Path;
use super::schema::{LogicalType, MAX_DEPTH, NodeId, NodeKind, RecordSchema, Schema, json_kind};
use super::time::{self, Unit};

/// Error raised by [`encode_json`]: where in the JSON value it failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at `{path}`: {message}")]
pub struct EncodeError {
    path: String,
    message: String,
    /// Set when the JSON kind itself did not match the schema node (as
    /// opposed to a problem inside a value of the right kind). Union branch
    /// selection prefers reporting a non-shallow error, because that is the
    /// branch the caller most likely meant.
    shallow: bool,
}

impl EncodeError {
    /// JSON path of the failing value, e.g. `$.payer.name` or `$.lines[2].charge`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What was expected and what was found, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(path: &Path<'_>, message: String) -> Self {
        Self {
            path: path.render(),
            message,
            shallow: false,
        }
    }

    fn deep(mut self) -> Self {
        self.shallow = false;
        self
    }
}

/// Encodes a plain JSON value as Avro binary according to `schema`.
pub fn encode_json(schema: &Schema, value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    Encoder {
        schema,
        mode: Mode::Plain,
    }
    .value(schema.root(), value, &Path::Root, 0, &mut out)?;
    Ok(out)
}

/// Encodes `value` as node `id` at nesting `depth`, appending to `out`
/// (for [`super::encode_text`], which hands over the nodes it does not
/// read itself): plain JSON, or with `default` a field default in Avro JSON
/// form, as a record missing that field gets it.
pub(crate) fn encode_node(
    schema: &Schema,
    id: NodeId,
    value: &Value,
    default: bool,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mode = if default { Mode::Default } else { Mode::Plain };
    Encoder { schema, mode }.value(id, value, &Path::Root, depth, out)
}

/// Checks that a field default (in Avro JSON form) is valid for `id`.
pub(crate) fn check_default(schema: &Schema, id: NodeId, value: &Value) -> Result<(), EncodeError> {
    Encoder {
        schema,
        mode: Mode::Default,
    }
    .value(id, value, &Path::Root, 0, &mut Vec::new())
}

/// Whether the decoder must emit `{"<branch>": value}` for a value decoded
/// from branch `chosen`, because plain-JSON branch selection would otherwise
/// pick a different branch (or read the value as a wrapper).
pub(crate) fn union_needs_wrapper(
    schema: &Schema,
    branches: &[NodeId],
    chosen: usize,
    value: &Value,
) -> bool {
    let enc = Encoder {
        schema,
        mode: Mode::Plain,
    };
    let mut scratch = Vec::new();
    if let Some((k, inner)) = enc.wrapper(branches, value)
        && enc
            .value(branches[k], inner, &Path::Root, 0, &mut scratch)
            .is_ok()
    {
        return true;
    }
    branches[..chosen].iter().any(|&b| {
        scratch.clear();
        if !enc.may_accept(b, value) {
            return false;
        }
        enc.value(b, value, &Path::Root, 0, &mut scratch).is_ok()
    })
}

/// Appends a zig-zag varint.
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// How JSON is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain JSON from callers: logical types rendered, unions unwrapped by
    /// value, wrappers accepted.
    Plain,
    /// Field defaults: the spec's Avro JSON form, i.e. logical types in their
    /// underlying representation and unions taking their first branch.
    Default,
}

struct Encoder<'s> {
    schema: &'s Schema,
    mode: Mode,
}

fn mismatch(path: &Path<'_>, expected: &str, found: &Value) -> EncodeError {
    EncodeError {
        path: path.render(),
        message: format!("expected `{expected}`, found {}", json_kind(found)),
        shallow: true,
    }
}

/// Bytes and fixed values are JSON strings whose characters are code points
/// 0-255, one per byte (the Avro JSON convention).
fn latin1(path: &Path<'_>, s: &str) -> Result<Vec<u8>, EncodeError> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| {
            EncodeError::new(
                path,
                "bytes must be a string of code points 0-255 (one character per byte)".into(),
            )
        })
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn decimal_text(path: &Path<'_>, v: &Value) -> Result<String, EncodeError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        // Integers print exactly; floats print as the shortest text that reads
        // back as the same double, which is what the JSON author typed.
        Value::Number(n) => Ok(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        }),
        other => Err(mismatch(path, "decimal", other)),
    }
}

impl Encoder<'_> {
    /// Encodes `v` as node `id`. Kept small and free of scalar temporaries
    /// because it is on the recursion path: in debug builds a fat frame here
    /// would overflow a 2 MiB thread stack well before `MAX_DEPTH`.
    fn value(
        &self,
        id: NodeId,
        v: &Value,
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if depth > MAX_DEPTH {
            return Err(EncodeError::new(
                path,
                format!("value is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        match (&self.schema.node(id).kind, v) {
            (NodeKind::Array(items), Value::Array(vs)) => self.array(*items, vs, path, depth, out),
            (NodeKind::Map(values), Value::Object(m)) => self.map(*values, m, path, depth, out),
            (NodeKind::Record(r), Value::Object(m)) => self.record(r, m, path, depth, out),
            (NodeKind::Union(branches), _) => self.union(branches, v, path, depth, out),
            _ => self.scalar(id, v, path, out),
        }
    }

    fn array(
        &self,
        items: NodeId,
        vs: &[Value],
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if !vs.is_empty() {
            write_long(out, vs.len() as i64);
            for (i, item) in vs.iter().enumerate() {
                self.value(items, item, &Path::Index(path, i), depth + 1, out)
                    .map_err(EncodeError::deep)?;
            }
        }
        out.push(0);
        Ok(())
    }

    fn map(
        &self,
        values: NodeId,
        m: &Map<String, Value>,
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if !m.is_empty() {
            write_long(out, m.len() as i64);
            for (k, item) in m {
                write_bytes(out, k.as_bytes());
                self.value(values, item, &Path::Key(path, k), depth + 1, out)
                    .map_err(EncodeError::deep)?;
            }
        }
        out.push(0);
        Ok(())
    }

    /// Leaf types, plus containers given the wrong JSON kind.
    #[inline(never)]
    fn scalar(
        &self,
        id: NodeId,
        v: &Value,
        path: &Path<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let node = self.schema.node(id);
        let logical = match self.mode {
            Mode::Plain => node.logical,
            Mode::Default => None,
        };
        let expected = match logical {
            Some(l) => l.name(),
            None => node.type_name(),
        };
        match &node.kind {
            NodeKind::Null => match v {
                Value::Null => Ok(()),
                other => Err(mismatch(path, expected, other)),
            },
            NodeKind::Boolean => match v {
                Value::Bool(b) => {
                    out.push(u8::from(*b));
                    Ok(())
                }
                other => Err(mismatch(path, expected, other)),
            },
            NodeKind::Int => {
                let n = match (logical, v) {
                    (Some(LogicalType::Date), Value::String(s)) => {
                        i64::from(time::parse_date(s).ok_or_else(|| {
                            EncodeError::new(
                                path,
                                format!("`{s}` is not a valid `YYYY-MM-DD` date"),
                            )
                        })?)
                    }
                    (_, Value::Number(_)) => self.integer(v, path, expected)?,
                    (_, other) => return Err(mismatch(path, expected, other)),
                };
                if i32::try_from(n).is_err() {
                    return Err(EncodeError::new(
                        path,
                        format!("{n} is out of range for `int`"),
                    ));
                }
                write_long(out, n);
                Ok(())
            }
            NodeKind::Long => {
                let n = match (logical, v) {
                    (Some(lt), Value::String(s)) => {
                        let (unit, local) = match lt {
                            LogicalType::TimestampMillis => (Unit::Millis, false),
                            LogicalType::TimestampMicros => (Unit::Micros, false),
                            LogicalType::LocalTimestampMillis => (Unit::Millis, true),
                            LogicalType::LocalTimestampMicros => (Unit::Micros, true),
                            _ => return Err(mismatch(path, expected, v)),
                        };
                        time::parse_timestamp(s, unit, local)
                            .map_err(|m| EncodeError::new(path, m))?
                    }
                    (_, Value::Number(_)) => self.integer(v, path, expected)?,
                    (_, other) => return Err(mismatch(path, expected, other)),
                };
                write_long(out, n);
                Ok(())
            }
            NodeKind::Float => {
                let f = float_value(v, path, expected)?;
                if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                    return Err(EncodeError::new(
                        path,
                        format!("{f} is out of range for `float`"),
                    ));
                }
                out.extend_from_slice(&(f as f32).to_le_bytes());
                Ok(())
            }
            NodeKind::Double => {
                let f = float_value(v, path, expected)?;
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            NodeKind::Bytes => {
                if let Some(LogicalType::Decimal { precision, scale }) = logical {
                    let text = decimal_text(path, v)?;
                    let b = decimal::to_unscaled(&text, precision, scale)
                        .map_err(|m| EncodeError::new(path, m))?;
                    write_bytes(out, &b);
                    return Ok(());
                }
                match v {
                    Value::String(s) => {
                        write_bytes(out, &latin1(path, s)?);
                        Ok(())
                    }
                    other => Err(mismatch(path, expected, other)),
                }
            }
            NodeKind::String => match v {
                Value::String(s) => {
                    if logical == Some(LogicalType::Uuid) && !is_uuid(s) {
                        return Err(EncodeError::new(
                            path,
                            format!(
                                "`{s}` is not a uuid like `123e4567-e89b-12d3-a456-426614174000`"
                            ),
                        ));
                    }
                    write_bytes(out, s.as_bytes());
                    Ok(())
                }
                other => Err(mismatch(path, expected, other)),
            },
            NodeKind::Fixed(f) => {
                let bytes = match (logical, v) {
                    (Some(LogicalType::Decimal { precision, scale }), _) => {
                        let text = decimal_text(path, v)?;
                        let b = decimal::to_unscaled(&text, precision, scale)
                            .map_err(|m| EncodeError::new(path, m))?;
                        decimal::sign_extend(&b, f.size).ok_or_else(|| {
                            EncodeError::new(
                                path,
                                format!("`{text}` does not fit in {} bytes", f.size),
                            )
                        })?
                    }
                    (Some(LogicalType::Duration), Value::Object(m)) => duration(m, path)?,
                    (_, Value::String(s)) => latin1(path, s)?,
                    (_, other) => return Err(mismatch(path, expected, other)),
                };
                if bytes.len() != f.size {
                    return Err(EncodeError::new(
                        path,
                        format!(
                            "expected {} bytes for fixed `{}`, found {}",
                            f.size,
                            f.name,
                            bytes.len()
                        ),
                    ));
                }
                out.extend_from_slice(&bytes);
                Ok(())
            }
            NodeKind::Enum(e) => match v {
                Value::String(s) => match e.symbols.iter().position(|x| x == s) {
                    Some(i) => {
                        write_long(out, i as i64);
                        Ok(())
                    }
                    None => Err(EncodeError::new(
                        path,
                        format!(
                            "`{s}` is not a symbol of enum `{}`; expected one of {}",
                            e.name,
                            list(&e.symbols)
                        ),
                    )),
                },
                other => Err(mismatch(path, expected, other)),
            },
            NodeKind::Array(_) | NodeKind::Map(_) | NodeKind::Record(_) | NodeKind::Union(_) => {
                Err(mismatch(path, expected, v))
            }
        }
    }

    fn integer(&self, v: &Value, path: &Path<'_>, expected: &str) -> Result<i64, EncodeError> {
        let Value::Number(n) = v else {
            return Err(mismatch(path, expected, v));
        };
        if let Some(i) = n.as_i64() {
            Ok(i)
        } else if n.is_u64() {
            Err(EncodeError::new(
                path,
                format!("{n} is out of range for `{expected}`"),
            ))
        } else {
            Err(EncodeError::new(
                path,
                format!("expected `{expected}`, found non-integer number {n}"),
            ))
        }
    }

    fn record(
        &self,
        r: &RecordSchema,
        m: &Map<String, Value>,
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        // Unknown keys first: a misspelt field would otherwise surface as a
        // confusing "missing required field" for the correct spelling.
        if let Some(k) = m.keys().find(|k| r.field_index(k).is_none()) {
            let names: Vec<String> = r.fields.iter().map(|f| f.name.clone()).collect();
            return Err(EncodeError::new(
                &Path::Field(path, k),
                format!(
                    "unknown field `{k}` in record `{}`; remove it or use one of {}",
                    r.name,
                    list(&names)
                ),
            ));
        }
        for f in &r.fields {
            let fpath = Path::Field(path, &f.name);
            match (m.get(&f.name), &f.default) {
                (Some(v), _) => self
                    .value(f.schema, v, &fpath, depth + 1, out)
                    .map_err(EncodeError::deep)?,
                (None, Some(d)) => Encoder {
                    schema: self.schema,
                    mode: Mode::Default,
                }
                .value(f.schema, d, &fpath, depth + 1, out)
                .map_err(EncodeError::deep)?,
                (None, None) => {
                    return Err(EncodeError::new(
                        &fpath,
                        format!("missing required field `{}` of record `{}`", f.name, r.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Cheap pre-filter for union branch selection: `false` when the JSON
    /// kind alone rules the branch out, which spares building (and throwing
    /// away) an error for the common `["null", T]` case.
    fn may_accept(&self, id: NodeId, v: &Value) -> bool {
        let node = self.schema.node(id);
        matches!(
            (&node.kind, v),
            (NodeKind::Null, Value::Null)
                | (NodeKind::Boolean, Value::Bool(_))
                | (
                    NodeKind::Int
                        | NodeKind::Long
                        | NodeKind::Float
                        | NodeKind::Double
                        | NodeKind::Bytes
                        | NodeKind::Fixed(_),
                    Value::Number(_) | Value::String(_),
                )
                | (NodeKind::String | NodeKind::Enum(_), Value::String(_))
                | (NodeKind::Array(_), Value::Array(_))
                | (
                    NodeKind::Map(_) | NodeKind::Record(_) | NodeKind::Fixed(_),
                    Value::Object(_)
                )
                | (NodeKind::Union(_), _)
        )
    }

    /// The branch named by a single-key wrapper object, if `v` is one.
    fn wrapper<'v>(&self, branches: &[NodeId], v: &'v Value) -> Option<(usize, &'v Value)> {
        let Value::Object(m) = v else { return None };
        if m.len() != 1 {
            return None;
        }
        let (key, inner) = m.iter().next()?;
        let idx = branches.iter().position(|&b| {
            let node = self.schema.node(b);
            node.type_name() == key
                || node
                    .fullname()
                    .is_some_and(|full| full.rsplit('.').next() == Some(key.as_str()))
        })?;
        Some((idx, inner))
    }

    fn union(
        &self,
        branches: &[NodeId],
        v: &Value,
        path: &Path<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if self.mode == Mode::Default {
            // The spec: a union field's default is for the first branch.
            let Some(&first) = branches.first() else {
                return Err(EncodeError::new(
                    path,
                    "an empty union has no values".into(),
                ));
            };
            out.push(0);
            return self.value(first, v, path, depth + 1, out);
        }
        if let Some((k, inner)) = self.wrapper(branches, v) {
            let mark = out.len();
            write_long(out, k as i64);
            if self.value(branches[k], inner, path, depth + 1, out).is_ok() {
                return Ok(());
            }
            out.truncate(mark);
        }
        let mut best: Option<EncodeError> = None;
        for (i, &b) in branches.iter().enumerate() {
            if !self.may_accept(b, v) {
                continue;
            }
            let mark = out.len();
            write_long(out, i as i64);
            match self.value(b, v, path, depth + 1, out) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    out.truncate(mark);
                    if !e.shallow && best.is_none() {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| {
            let names: Vec<String> = branches
                .iter()
                .map(|&b| {
                    let n = self.schema.node(b);
                    match n.logical {
                        Some(l) => l.name().to_owned(),
                        None => n.type_name().to_owned(),
                    }
                })
                .collect();
            EncodeError {
                path: path.render(),
                message: format!("expected one of {}, found {}", list(&names), json_kind(v)),
                shallow: true,
            }
        }))
    }
}

fn float_value(v: &Value, path: &Path<'_>, expected: &str) -> Result<f64, EncodeError> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| {
            EncodeError::new(path, format!("{n} is not representable as `{expected}`"))
        }),
        // JSON has no NaN or infinities; these spellings are what the decoder
        // emits for them (and what Java's Avro JSON encoder writes).
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(mismatch(path, expected, v)),
        },
        other => Err(mismatch(path, expected, other)),
    }
}

fn duration(m: &Map<String, Value>, path: &Path<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(12);
    for key in ["months", "days", "milliseconds"] {
        let n = m
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                EncodeError::new(
                    path,
                    format!("duration needs `{key}` as an unsigned 32-bit integer"),
                )
            })?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    if let Some(k) = m
        .keys()
        .find(|k| !matches!(k.as_str(), "months" | "days" | "milliseconds"))
    {
        return Err(EncodeError::new(
            &Path::Field(path, k),
            format!("unknown field `{k}` in duration; use `months`, `days` and `milliseconds`"),
        ));
    }
    Ok(out)
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
