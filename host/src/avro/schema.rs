//! Schema model, parser, Parsing Canonical Form and Rabin fingerprint.
//!
//! Named types may be recursive (a linked-list record refers to itself), which
//! rules out a plain tree of `Arc`s. The parsed schema is therefore an arena:
//! every type is a [`Node`] addressed by a [`NodeId`], and a reference to a
//! named type is simply the id of its definition. The arena lives behind an
//! `Arc`, so cloning a [`Schema`] is a reference-count bump.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};

/// Error raised while parsing a schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema text is not valid JSON.
    #[error("schema is not valid json: {0}")]
    Json(String),
    /// A named type was defined twice.
    #[error("duplicate definition of named type `{0}`")]
    DuplicateName(String),
    /// A type name refers to nothing defined before it.
    #[error("unknown type `{0}`")]
    UnknownType(String),
    /// A name, namespace or enum symbol breaks the `[A-Za-z_][A-Za-z0-9_]*` rule.
    #[error("invalid {what} `{name}`")]
    InvalidName {
        /// What kind of name it is (`name`, `namespace`, `symbol`, ...).
        what: &'static str,
        /// The offending text.
        name: String,
    },
    /// A union is malformed (duplicate branch or directly nested union).
    #[error("invalid union: {0}")]
    InvalidUnion(String),
    /// An enum lists a symbol twice.
    #[error("duplicate symbol `{symbol}` in enum `{name}`")]
    DuplicateSymbol {
        /// Fullname of the enum.
        name: String,
        /// The repeated symbol.
        symbol: String,
    },
    /// A field's default does not match the field's type.
    #[error("default of field `{field}` is not a valid `{expected}`: {reason}")]
    InvalidDefault {
        /// Field name.
        field: String,
        /// The field's type, as written in messages.
        expected: String,
        /// Why the value was rejected.
        reason: String,
    },
    /// Any other structural problem (missing attribute, wrong JSON type, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Index of a type inside a [`Schema`]'s arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

impl NodeId {
    /// Position of the node in the arena.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Logical type annotation recognised by the codec.
///
/// Annotations that are unknown or invalid for their underlying type are
/// dropped at parse time, as the spec requires, so a node only carries a
/// logical type the codec knows how to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalType {
    /// Arbitrary-precision decimal on `bytes` or `fixed`.
    Decimal {
        /// Maximum number of significant digits.
        precision: u32,
        /// Number of digits after the decimal point.
        scale: u32,
    },
    /// RFC 4122 UUID on `string`.
    Uuid,
    /// Days since 1970-01-01 on `int`.
    Date,
    /// Milliseconds after midnight on `int`.
    TimeMillis,
    /// Microseconds after midnight on `long`.
    TimeMicros,
    /// Milliseconds since the UTC epoch on `long`.
    TimestampMillis,
    /// Microseconds since the UTC epoch on `long`.
    TimestampMicros,
    /// Milliseconds since the epoch in an unspecified local time zone on `long`.
    LocalTimestampMillis,
    /// Microseconds since the epoch in an unspecified local time zone on `long`.
    LocalTimestampMicros,
    /// Months, days and milliseconds on `fixed` of size 12.
    Duration,
}

impl LogicalType {
    /// The spec's name of the logical type, e.g. `timestamp-millis`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Decimal { .. } => "decimal",
            Self::Uuid => "uuid",
            Self::Date => "date",
            Self::TimeMillis => "time-millis",
            Self::TimeMicros => "time-micros",
            Self::TimestampMillis => "timestamp-millis",
            Self::TimestampMicros => "timestamp-micros",
            Self::LocalTimestampMillis => "local-timestamp-millis",
            Self::LocalTimestampMicros => "local-timestamp-micros",
            Self::Duration => "duration",
        }
    }
}

/// Sort order of a record field (kept for completeness; the codec ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldOrder {
    /// `"ascending"`, the default.
    #[default]
    Ascending,
    /// `"descending"`.
    Descending,
    /// `"ignore"`.
    Ignore,
}

/// One field of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Type of the field.
    pub schema: NodeId,
    /// Default value in Avro JSON form (validated against `schema`).
    pub default: Option<Value>,
    /// Documentation string.
    pub doc: Option<String>,
    /// Alternative names (used by schema resolution).
    pub aliases: Vec<String>,
    /// Sort order.
    pub order: FieldOrder,
}

/// A record (or `error`) type.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSchema {
    /// Fullname, e.g. `org.example.Payer`.
    pub name: String,
    /// Documentation string.
    pub doc: Option<String>,
    /// Alias fullnames.
    pub aliases: Vec<String>,
    /// Fields in declaration (and encoding) order.
    pub fields: Vec<Field>,
    /// Field name to position, for O(1) lookups while encoding JSON objects.
    lookup: HashMap<String, usize>,
}

impl RecordSchema {
    /// Position of the field called `name`, if any.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        // Comparing a few names is cheaper than hashing one (a record is
        // looked up for every key of every object encoded).
        if self.fields.len() <= 8 {
            return self.fields.iter().position(|f| f.name == name);
        }
        self.lookup.get(name).copied()
    }
}

/// An enum type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumSchema {
    /// Fullname.
    pub name: String,
    /// Documentation string.
    pub doc: Option<String>,
    /// Alias fullnames.
    pub aliases: Vec<String>,
    /// Symbols in index order.
    pub symbols: Vec<String>,
    /// Default symbol used by schema resolution.
    pub default: Option<String>,
}

/// A fixed-size type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedSchema {
    /// Fullname.
    pub name: String,
    /// Documentation string.
    pub doc: Option<String>,
    /// Alias fullnames.
    pub aliases: Vec<String>,
    /// Size in bytes.
    pub size: usize,
}

/// The shape of a type.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null`.
    Null,
    /// `boolean`.
    Boolean,
    /// `int` (32-bit).
    Int,
    /// `long` (64-bit).
    Long,
    /// `float` (32-bit IEEE 754).
    Float,
    /// `double` (64-bit IEEE 754).
    Double,
    /// `bytes`.
    Bytes,
    /// `string`.
    String,
    /// `array` of the given item type.
    Array(NodeId),
    /// `map` from strings to the given value type.
    Map(NodeId),
    /// `union` of the given branches.
    Union(Vec<NodeId>),
    /// Named `record`.
    Record(RecordSchema),
    /// Named `enum`.
    Enum(EnumSchema),
    /// Named `fixed`.
    Fixed(FixedSchema),
}

/// One type in the arena: its shape plus an optional logical annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The underlying Avro type.
    pub kind: NodeKind,
    /// Valid logical type annotation, if any.
    pub logical: Option<LogicalType>,
}

impl Node {
    /// Fullname of a named type, `None` for anonymous types.
    pub fn fullname(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Record(r) => Some(&r.name),
            NodeKind::Enum(e) => Some(&e.name),
            NodeKind::Fixed(f) => Some(&f.name),
            _ => None,
        }
    }

    /// Name used for this type in messages and union wrappers: the fullname of
    /// a named type, otherwise the Avro type keyword (`int`, `array`, ...).
    pub fn type_name(&self) -> &str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Boolean => "boolean",
            NodeKind::Int => "int",
            NodeKind::Long => "long",
            NodeKind::Float => "float",
            NodeKind::Double => "double",
            NodeKind::Bytes => "bytes",
            NodeKind::String => "string",
            NodeKind::Array(_) => "array",
            NodeKind::Map(_) => "map",
            NodeKind::Union(_) => "union",
            NodeKind::Record(r) => &r.name,
            NodeKind::Enum(e) => &e.name,
            NodeKind::Fixed(f) => &f.name,
        }
    }
}

#[derive(Debug)]
struct Inner {
    nodes: Vec<Node>,
    root: NodeId,
    names: HashMap<String, NodeId>,
    /// Whether a value of the node can encode to zero bytes; the decoder uses
    /// it to bound item counts that cannot be checked against input length.
    zero_size: Vec<bool>,
}

/// A parsed Avro schema; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct Schema {
    inner: Arc<Inner>,
}

impl PartialEq for Schema {
    /// Two schemas are equal when their canonical forms are: that is the
    /// spec's notion of "the same schema" for encoding purposes.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.canonical_form() == other.canonical_form()
    }
}

/// Deepest nesting of records, arrays, maps and unions the codec will follow.
/// Recursive schemas let hostile input nest without bound; this keeps the
/// recursion far from the stack limit of a 2 MiB worker thread.
pub(crate) const MAX_DEPTH: usize = 256;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

impl Schema {
    /// Parses a schema from its JSON text.
    pub fn parse_str(text: &str) -> Result<Schema, SchemaError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        Self::parse_value(&value)
    }

    /// Parses a schema from an already-parsed JSON value.
    pub fn parse_value(value: &Value) -> Result<Schema, SchemaError> {
        let mut parser = Parser::default();
        let root = parser.parse(value, None)?;
        let zero_size = zero_size_table(&parser.nodes);
        let schema = Schema {
            inner: Arc::new(Inner {
                nodes: parser.nodes,
                root,
                names: parser.names,
                zero_size,
            }),
        };
        // Defaults are checked after the whole arena exists because a default
        // may have the type of a record still being parsed (recursion).
        schema.validate_defaults()?;
        Ok(schema)
    }

    /// Id of the top-level type.
    pub fn root(&self) -> NodeId {
        self.inner.root
    }

    /// The node with the given id. Panics if the id comes from another schema
    /// and is out of range, like slice indexing.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.inner.nodes[id.0]
    }

    /// Looks up a named type by fullname.
    pub fn named(&self, fullname: &str) -> Option<NodeId> {
        self.inner.names.get(fullname).copied()
    }

    /// Number of nodes in the arena.
    pub fn node_count(&self) -> usize {
        self.inner.nodes.len()
    }

    pub(crate) fn is_zero_size(&self, id: NodeId) -> bool {
        self.inner.zero_size[id.0]
    }

    fn validate_defaults(&self) -> Result<(), SchemaError> {
        for node in &self.inner.nodes {
            let NodeKind::Record(rec) = &node.kind else {
                continue;
            };
            for field in &rec.fields {
                if let Some(default) = &field.default
                    && let Err(e) = super::encode::check_default(self, field.schema, default)
                {
                    return Err(SchemaError::InvalidDefault {
                        field: field.name.clone(),
                        expected: self.node(field.schema).type_name().to_owned(),
                        reason: if e.path() == "$" {
                            e.message().to_owned()
                        } else {
                            format!("{} at `{}`", e.message(), e.path())
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// The schema's Parsing Canonical Form (spec section "Parsing Canonical
    /// Form for Schemas"): only `name`, `type`, `fields`, `symbols`, `items`,
    /// `values` and `size` survive, in that order, names are fullnames,
    /// primitives are bare strings and there is no whitespace.
    pub fn canonical_form(&self) -> String {
        let mut out = String::new();
        let mut seen = HashSet::new();
        self.write_canonical(self.root(), false, &mut seen, &mut out);
        out
    }

    /// The Parsing Canonical Form plus what schema resolution and logical
    /// types depend on: field defaults, aliases, enum defaults and logical
    /// types with their attributes (decimal precision and scale). Parsing
    /// Canonical Form alone drops those, so two schemas that read data
    /// differently (decimal scale 2 and 3, or a field with and without a
    /// default) would share it; the registry uses this form for identity
    /// instead, so spelling (whitespace, key order, namespace written apart
    /// or in the full name, `{"type":"string"}` for `"string"`, docs) still
    /// never makes a new schema, but meaning does.
    pub fn identity_form(&self) -> String {
        let mut out = String::new();
        let mut seen = HashSet::new();
        self.write_canonical(self.root(), true, &mut seen, &mut out);
        out
    }

    /// CRC-64-AVRO (Rabin) fingerprint of the canonical form, as used by the
    /// single-object encoding and schema registries.
    pub fn fingerprint_rabin(&self) -> u64 {
        rabin(self.canonical_form().as_bytes())
    }

    fn write_canonical(
        &self,
        id: NodeId,
        full: bool,
        seen: &mut HashSet<NodeId>,
        out: &mut String,
    ) {
        let node = self.node(id);
        if full
            && let Some(logical) = node.logical
            && !matches!(
                node.kind,
                NodeKind::Fixed(_) | NodeKind::Record(_) | NodeKind::Enum(_)
            )
        {
            out.push_str(r#"{"type":"#);
            push_json_str(out, node.type_name());
            push_logical(out, logical);
            out.push('}');
            return;
        }
        match &node.kind {
            NodeKind::Array(items) => {
                out.push_str(r#"{"type":"array","items":"#);
                self.write_canonical(*items, full, seen, out);
                out.push('}');
            }
            NodeKind::Map(values) => {
                out.push_str(r#"{"type":"map","values":"#);
                self.write_canonical(*values, full, seen, out);
                out.push('}');
            }
            NodeKind::Union(branches) => {
                out.push('[');
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_canonical(*b, full, seen, out);
                }
                out.push(']');
            }
            NodeKind::Record(_) | NodeKind::Enum(_) | NodeKind::Fixed(_) if !seen.insert(id) => {
                // Later occurrences of a named type are written as its fullname.
                push_json_str(out, node.type_name());
            }
            NodeKind::Record(r) => {
                out.push_str(r#"{"name":"#);
                push_json_str(out, &r.name);
                out.push_str(r#","type":"record","fields":["#);
                for (i, f) in r.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(r#"{"name":"#);
                    push_json_str(out, &f.name);
                    out.push_str(r#","type":"#);
                    self.write_canonical(f.schema, full, seen, out);
                    if full {
                        if let Some(default) = &f.default {
                            out.push_str(r#","default":"#);
                            push_sorted_json(out, default);
                        }
                        push_aliases(out, &f.aliases);
                    }
                    out.push('}');
                }
                out.push(']');
                if full {
                    push_aliases(out, &r.aliases);
                }
                out.push('}');
            }
            NodeKind::Enum(e) => {
                out.push_str(r#"{"name":"#);
                push_json_str(out, &e.name);
                out.push_str(r#","type":"enum","symbols":["#);
                for (i, s) in e.symbols.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_str(out, s);
                }
                out.push(']');
                if full {
                    if let Some(default) = &e.default {
                        out.push_str(r#","default":"#);
                        push_json_str(out, default);
                    }
                    push_aliases(out, &e.aliases);
                }
                out.push('}');
            }
            NodeKind::Fixed(f) => {
                out.push_str(r#"{"name":"#);
                push_json_str(out, &f.name);
                let _ = write!(out, r#","type":"fixed","size":{}"#, f.size);
                if full {
                    if let Some(logical) = node.logical {
                        push_logical(out, logical);
                    }
                    push_aliases(out, &f.aliases);
                }
                out.push('}');
            }
            _ => push_json_str(out, node.type_name()),
        }
    }
}

/// `,"logicalType":…` and the type's attributes.
fn push_logical(out: &mut String, logical: LogicalType) {
    out.push_str(r#","logicalType":"#);
    push_json_str(out, logical.name());
    if let LogicalType::Decimal { precision, scale } = logical {
        let _ = write!(out, r#","precision":{precision},"scale":{scale}"#);
    }
}

/// `,"aliases":[…]` when there are any.
fn push_aliases(out: &mut String, aliases: &[String]) {
    if aliases.is_empty() {
        return;
    }
    out.push_str(r#","aliases":["#);
    for (i, alias) in aliases.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, alias);
    }
    out.push(']');
}

/// JSON with object keys sorted, so a default's spelling does not matter.
fn push_sorted_json(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, key);
                out.push(':');
                push_sorted_json(out, &map[key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_sorted_json(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's string escaping is the JSON escaping the STRINGS rule asks for.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// CRC-64-AVRO polynomial's empty value, from the spec.
const RABIN_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const RABIN_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (RABIN_EMPTY & 0u64.wrapping_sub(fp & 1));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// CRC-64-AVRO of arbitrary bytes.
pub(crate) fn rabin(bytes: &[u8]) -> u64 {
    let mut fp = RABIN_EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ RABIN_TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// Least fixed point of "can encode to zero bytes": records whose fields are
/// all zero-size, `null`, and `fixed` of size 0. Starting from `false`
/// everywhere makes self-referencing records (which cannot be finite anyway)
/// come out `false`.
fn zero_size_table(nodes: &[Node]) -> Vec<bool> {
    let mut zero: Vec<bool> = nodes
        .iter()
        .map(|n| {
            matches!(n.kind, NodeKind::Null) || matches!(&n.kind, NodeKind::Fixed(f) if f.size == 0)
        })
        .collect();
    loop {
        let mut changed = false;
        for (i, n) in nodes.iter().enumerate() {
            if let NodeKind::Record(r) = &n.kind
                && !zero[i]
                && r.fields.iter().all(|f| zero[f.schema.0])
            {
                zero[i] = true;
                changed = true;
            }
        }
        if !changed {
            return zero;
        }
    }
}

fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_valid_fullname(s: &str) -> bool {
    s.split('.').all(is_valid_name)
}

#[derive(Default)]
struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, NodeId>,
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<Option<&'a str>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SchemaError::Invalid(format!(
            "`{key}` of {ctx} must be a string"
        ))),
    }
}

fn require_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<&'a str, SchemaError> {
    get_str(obj, key, ctx)?
        .ok_or_else(|| SchemaError::Invalid(format!("{ctx} is missing required attribute `{key}`")))
}

impl Parser {
    fn push(&mut self, kind: NodeKind, logical: Option<LogicalType>) -> NodeId {
        self.nodes.push(Node { kind, logical });
        NodeId(self.nodes.len() - 1)
    }

    fn primitive(name: &str) -> Option<NodeKind> {
        Some(match name {
            "null" => NodeKind::Null,
            "boolean" => NodeKind::Boolean,
            "int" => NodeKind::Int,
            "long" => NodeKind::Long,
            "float" => NodeKind::Float,
            "double" => NodeKind::Double,
            "bytes" => NodeKind::Bytes,
            "string" => NodeKind::String,
            _ => return None,
        })
    }

    /// Resolves a reference to a previously defined named type. Like the Java
    /// implementation, an unqualified name is tried in the enclosing namespace
    /// first and then in the null namespace.
    fn lookup(&self, name: &str, ns: Option<&str>) -> Result<NodeId, SchemaError> {
        let found = if name.contains('.') {
            self.names.get(name)
        } else {
            ns.and_then(|ns| self.names.get(&format!("{ns}.{name}")))
                .or_else(|| self.names.get(name))
        };
        found
            .copied()
            .ok_or_else(|| SchemaError::UnknownType(name.to_owned()))
    }

    fn parse(&mut self, value: &Value, ns: Option<&str>) -> Result<NodeId, SchemaError> {
        match value {
            Value::String(name) => match Self::primitive(name) {
                Some(kind) => Ok(self.push(kind, None)),
                None => self.lookup(name, ns),
            },
            Value::Array(branches) => self.parse_union(branches, ns),
            Value::Object(obj) => self.parse_object(obj, ns),
            other => Err(SchemaError::Invalid(format!(
                "a schema must be a string, array or object, found {}",
                json_kind(other)
            ))),
        }
    }

    fn parse_union(&mut self, branches: &[Value], ns: Option<&str>) -> Result<NodeId, SchemaError> {
        let mut ids = Vec::with_capacity(branches.len());
        let mut seen = HashSet::new();
        for b in branches {
            let id = self.parse(b, ns)?;
            let node = &self.nodes[id.0];
            if matches!(node.kind, NodeKind::Union(_)) {
                return Err(SchemaError::InvalidUnion(
                    "a union may not directly contain another union".into(),
                ));
            }
            // Logical annotations do not make a distinct branch: `long` and
            // `timestamp-millis` would both be written as a `long`.
            let key = node.type_name().to_owned();
            if !seen.insert(key.clone()) {
                return Err(SchemaError::InvalidUnion(format!(
                    "duplicate branch `{key}`"
                )));
            }
            ids.push(id);
        }
        Ok(self.push(NodeKind::Union(ids), None))
    }

    fn parse_object(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
    ) -> Result<NodeId, SchemaError> {
        let ty = obj.get("type").ok_or_else(|| {
            SchemaError::Invalid("schema object is missing required attribute `type`".into())
        })?;
        let ty = match ty {
            Value::String(s) => s.as_str(),
            // `{"type": {...}}` or `{"type": [...]}`: a wrapped schema.
            other => return self.parse(other, ns),
        };
        if let Some(kind) = Self::primitive(ty) {
            let logical = logical_for(obj, &kind);
            return Ok(self.push(kind, logical));
        }
        match ty {
            "record" | "error" => self.parse_record(obj, ns),
            "enum" => self.parse_enum(obj, ns),
            "fixed" => self.parse_fixed(obj, ns),
            "array" => {
                let items = obj.get("items").ok_or_else(|| {
                    SchemaError::Invalid(
                        "array schema is missing required attribute `items`".into(),
                    )
                })?;
                let items = self.parse(items, ns)?;
                Ok(self.push(NodeKind::Array(items), None))
            }
            "map" => {
                let values = obj.get("values").ok_or_else(|| {
                    SchemaError::Invalid("map schema is missing required attribute `values`".into())
                })?;
                let values = self.parse(values, ns)?;
                Ok(self.push(NodeKind::Map(values), None))
            }
            other => self.lookup(other, ns),
        }
    }

    /// Computes the fullname and namespace of a named type definition and
    /// validates both.
    fn fullname(
        &self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        ctx: &str,
    ) -> Result<(String, Option<String>), SchemaError> {
        let name = require_str(obj, "name", ctx)?;
        let (full, space) = if let Some((space, _)) = name.rsplit_once('.') {
            (name.to_owned(), Some(space.to_owned()))
        } else {
            let space = match get_str(obj, "namespace", ctx)? {
                Some("") => None,
                Some(s) => Some(s.to_owned()),
                None => ns.map(str::to_owned),
            };
            let full = match &space {
                Some(s) => format!("{s}.{name}"),
                None => name.to_owned(),
            };
            (full, space)
        };
        if !is_valid_fullname(&full) {
            let what = if is_valid_fullname(full.rsplit('.').next().unwrap_or_default()) {
                "namespace"
            } else {
                "name"
            };
            return Err(SchemaError::InvalidName { what, name: full });
        }
        let short = full.rsplit('.').next().unwrap_or_default();
        if PRIMITIVES.contains(&short) {
            return Err(SchemaError::InvalidName {
                what: "name (a primitive type name)",
                name: full,
            });
        }
        if self.names.contains_key(&full) {
            return Err(SchemaError::DuplicateName(full));
        }
        Ok((full, space))
    }

    fn aliases(
        obj: &Map<String, Value>,
        space: Option<&str>,
        ctx: &str,
    ) -> Result<Vec<String>, SchemaError> {
        let Some(list) = obj.get("aliases") else {
            return Ok(Vec::new());
        };
        let list = list.as_array().ok_or_else(|| {
            SchemaError::Invalid(format!("`aliases` of {ctx} must be an array of strings"))
        })?;
        list.iter()
            .map(|a| {
                let a = a.as_str().ok_or_else(|| {
                    SchemaError::Invalid(format!("`aliases` of {ctx} must be an array of strings"))
                })?;
                let full = match space {
                    Some(s) if !a.contains('.') => format!("{s}.{a}"),
                    _ => a.to_owned(),
                };
                if !is_valid_fullname(&full) {
                    return Err(SchemaError::InvalidName {
                        what: "alias",
                        name: a.to_owned(),
                    });
                }
                Ok(full)
            })
            .collect()
    }

    fn parse_record(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
    ) -> Result<NodeId, SchemaError> {
        let (name, space) = self.fullname(obj, ns, "record")?;
        let ctx = format!("record `{name}`");
        let doc = get_str(obj, "doc", &ctx)?.map(str::to_owned);
        let aliases = Self::aliases(obj, space.as_deref(), &ctx)?;
        let fields_json = obj
            .get("fields")
            .ok_or_else(|| {
                SchemaError::Invalid(format!("{ctx} is missing required attribute `fields`"))
            })?
            .as_array()
            .ok_or_else(|| SchemaError::Invalid(format!("`fields` of {ctx} must be an array")))?;
        // Register the name before parsing fields so fields can refer to the
        // record itself (recursive types).
        let id = self.push(
            NodeKind::Record(RecordSchema {
                name: name.clone(),
                doc,
                aliases,
                fields: Vec::new(),
                lookup: HashMap::new(),
            }),
            None,
        );
        self.names.insert(name.clone(), id);
        let mut fields = Vec::with_capacity(fields_json.len());
        let mut lookup = HashMap::with_capacity(fields_json.len());
        for f in fields_json {
            let f = f.as_object().ok_or_else(|| {
                SchemaError::Invalid(format!("each field of {ctx} must be an object"))
            })?;
            let fname = require_str(f, "name", &format!("a field of {ctx}"))?;
            let fctx = format!("field `{fname}` of {ctx}");
            if !is_valid_name(fname) {
                return Err(SchemaError::InvalidName {
                    what: "field name",
                    name: fname.to_owned(),
                });
            }
            let ty = f.get("type").ok_or_else(|| {
                SchemaError::Invalid(format!("{fctx} is missing required attribute `type`"))
            })?;
            let schema = self.parse(ty, space.as_deref())?;
            let order = match get_str(f, "order", &fctx)? {
                None | Some("ascending") => FieldOrder::Ascending,
                Some("descending") => FieldOrder::Descending,
                Some("ignore") => FieldOrder::Ignore,
                Some(o) => {
                    return Err(SchemaError::Invalid(format!(
                        "invalid `order` `{o}` of {fctx}"
                    )));
                }
            };
            let aliases = match f.get("aliases") {
                None => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        s.as_str().map(str::to_owned).ok_or_else(|| {
                            SchemaError::Invalid(format!(
                                "`aliases` of {fctx} must be an array of strings"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(SchemaError::Invalid(format!(
                        "`aliases` of {fctx} must be an array of strings"
                    )));
                }
            };
            if lookup.insert(fname.to_owned(), fields.len()).is_some() {
                return Err(SchemaError::Invalid(format!(
                    "duplicate field `{fname}` in {ctx}"
                )));
            }
            fields.push(Field {
                name: fname.to_owned(),
                schema,
                default: f.get("default").cloned(),
                doc: get_str(f, "doc", &fctx)?.map(str::to_owned),
                aliases,
                order,
            });
        }
        if let NodeKind::Record(r) = &mut self.nodes[id.0].kind {
            r.fields = fields;
            r.lookup = lookup;
        }
        Ok(id)
    }

    fn parse_enum(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
    ) -> Result<NodeId, SchemaError> {
        let (name, space) = self.fullname(obj, ns, "enum")?;
        let ctx = format!("enum `{name}`");
        let list = obj
            .get("symbols")
            .ok_or_else(|| {
                SchemaError::Invalid(format!("{ctx} is missing required attribute `symbols`"))
            })?
            .as_array()
            .ok_or_else(|| {
                SchemaError::Invalid(format!("`symbols` of {ctx} must be an array of strings"))
            })?;
        let mut symbols = Vec::with_capacity(list.len());
        let mut seen = HashSet::new();
        for s in list {
            let s = s.as_str().ok_or_else(|| {
                SchemaError::Invalid(format!("`symbols` of {ctx} must be an array of strings"))
            })?;
            if !is_valid_name(s) {
                return Err(SchemaError::InvalidName {
                    what: "symbol",
                    name: s.to_owned(),
                });
            }
            if !seen.insert(s) {
                return Err(SchemaError::DuplicateSymbol {
                    name,
                    symbol: s.to_owned(),
                });
            }
            symbols.push(s.to_owned());
        }
        let default = get_str(obj, "default", &ctx)?.map(str::to_owned);
        if let Some(d) = &default
            && !seen.contains(d.as_str())
        {
            return Err(SchemaError::Invalid(format!(
                "default `{d}` of {ctx} is not one of its symbols"
            )));
        }
        let node = NodeKind::Enum(EnumSchema {
            doc: get_str(obj, "doc", &ctx)?.map(str::to_owned),
            aliases: Self::aliases(obj, space.as_deref(), &ctx)?,
            name: name.clone(),
            symbols,
            default,
        });
        let id = self.push(node, None);
        self.names.insert(name, id);
        Ok(id)
    }

    fn parse_fixed(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
    ) -> Result<NodeId, SchemaError> {
        let (name, space) = self.fullname(obj, ns, "fixed")?;
        let ctx = format!("fixed `{name}`");
        let size = obj
            .get("size")
            .ok_or_else(|| {
                SchemaError::Invalid(format!("{ctx} is missing required attribute `size`"))
            })?
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| {
                SchemaError::Invalid(format!("`size` of {ctx} must be a non-negative integer"))
            })?;
        let kind = NodeKind::Fixed(FixedSchema {
            doc: get_str(obj, "doc", &ctx)?.map(str::to_owned),
            aliases: Self::aliases(obj, space.as_deref(), &ctx)?,
            name: name.clone(),
            size,
        });
        let logical = logical_for(obj, &kind);
        let id = self.push(kind, logical);
        self.names.insert(name, id);
        Ok(id)
    }
}

/// Reads `logicalType` and keeps it only when valid for `kind`; anything else
/// is ignored, as the spec says implementations must fall back to the
/// underlying type.
fn logical_for(obj: &Map<String, Value>, kind: &NodeKind) -> Option<LogicalType> {
    let name = obj.get("logicalType")?.as_str()?;
    let lt = match (name, kind) {
        ("decimal", NodeKind::Bytes | NodeKind::Fixed(_)) => {
            let precision = u32::try_from(obj.get("precision")?.as_u64()?).ok()?;
            let scale = match obj.get("scale") {
                None => 0,
                Some(s) => u32::try_from(s.as_u64()?).ok()?,
            };
            if precision == 0 || scale > precision {
                return None;
            }
            if let NodeKind::Fixed(f) = kind
                && u64::from(precision) > max_fixed_precision(f.size)
            {
                return None;
            }
            LogicalType::Decimal { precision, scale }
        }
        ("uuid", NodeKind::String) => LogicalType::Uuid,
        ("date", NodeKind::Int) => LogicalType::Date,
        ("time-millis", NodeKind::Int) => LogicalType::TimeMillis,
        ("time-micros", NodeKind::Long) => LogicalType::TimeMicros,
        ("timestamp-millis", NodeKind::Long) => LogicalType::TimestampMillis,
        ("timestamp-micros", NodeKind::Long) => LogicalType::TimestampMicros,
        ("local-timestamp-millis", NodeKind::Long) => LogicalType::LocalTimestampMillis,
        ("local-timestamp-micros", NodeKind::Long) => LogicalType::LocalTimestampMicros,
        ("duration", NodeKind::Fixed(f)) if f.size == 12 => LogicalType::Duration,
        _ => return None,
    };
    Some(lt)
}

/// `floor(log10(2^(8 * size - 1) - 1))`: the most decimal digits a signed
/// two's-complement number of `size` bytes can always hold.
fn max_fixed_precision(size: usize) -> u64 {
    if size == 0 {
        return 0;
    }
    let bits = (size as f64) * 8.0 - 1.0;
    (bits * std::f64::consts::LOG10_2).floor() as u64
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
