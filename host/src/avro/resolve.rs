//! Schema resolution: Avro binary written with one schema, read as plain
//! JSON in the shape of another (spec section "Schema Resolution").
//!
//! Producers and consumers evolve their schemas independently, so a record
//! on a topic is often written with an older or newer schema than the one a
//! plugin expects. [`Resolver`] pairs the writer's schema with the reader's
//! once and compiles the pair into a plan of steps (one per writer/reader
//! node pair, shared by recursive types); decoding then follows the plan, so
//! field matching, alias lookups and default conversion are not repeated
//! for every message.
//!
//! The output is exactly what [`decode_to_json`](super::decode_to_json)
//! gives for the reader schema: when reader and writer are the same schema
//! the two agree value for value. The input is as untrusted as there: every
//! length is checked against the remaining bytes, zero-size items share one
//! budget per value, nesting is bounded, and writer fields the reader drops
//! are still walked with the same checks (without building their values).
//!
//! Choices the spec leaves open:
//!
//! - Named types match when their unqualified names are equal or a reader
//!   alias equals the writer's fullname or unqualified name (as the
//!   compatibility checker in [`super::compat`] has it, so what the registry
//!   accepts is what this decodes). In a reader union an exact match
//!   (same primitive, or a named type with the same fullname or an alias of
//!   it) wins over a promotion or a match by unqualified name, wherever it
//!   sits in the union.
//! - Field defaults are in the spec's JSON form (logical types in their
//!   underlying representation, a union's default for its first branch) and
//!   come out as the decoder would render the same value read from the wire:
//!   a `date` default of `0` reads as `"1970-01-01"`, a `decimal` default of
//!   `"\u0004\u00d2"` at scale 2 as `"12.34"`.
//! - Logical types travel with their underlying types. Two `decimal`s must
//!   have the same scale (otherwise every value would be off by a power of
//!   ten); a value with more digits than the reader's precision fails when it
//!   is read. Two different logical types on the two sides (such as
//!   `timestamp-micros` read as `timestamp-millis`) are refused for the same
//!   reason. When only one side is annotated the underlying types decide.
//! - A mismatch every value would meet (the top-level types, or a field that
//!   is always read) makes [`Resolver::new`] fail with the field's path. One
//!   that depends on the data (a union branch, an enum symbol, the items of
//!   an array) is reported when a value reaches it, with the value's path,
//!   so a branch the writer never uses costs nothing.

use std::cell::Cell;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::decimal;
use super::decode::{
    DecodeErrorKind, float_json, int_json, long_json, read_bytes, read_long, take,
};
use super::encode::union_needs_wrapper;
use super::path::Path;
use super::schema::{
    EnumSchema, LogicalType, MAX_DEPTH, Node, NodeId, NodeKind, RecordSchema, Schema, json_kind,
};

/// Most items that encode to zero bytes accepted in one value, as in the
/// single-schema decoder: their counts cannot be checked against the input.
const MAX_ZERO_SIZE_ITEMS: u64 = 1 << 16;

/// What went wrong while resolving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveErrorKind {
    /// The input is not a valid value of the writer schema.
    #[error(transparent)]
    Decode(DecodeErrorKind),
    /// The value the writer wrote has no counterpart in the reader schema.
    #[error("{0}")]
    Mismatch(String),
}

/// Error raised by [`Resolver`], [`decode_resolved`] and
/// [`decode_resolved_exact`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {kind}", Where(path))]
pub struct ResolveError {
    path: String,
    kind: ResolveErrorKind,
}

/// Renders a path for messages: `field `a.b`` below the root, else the path.
struct Where<'a>(&'a str);

impl std::fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.strip_prefix("$.") {
            Some(rest) => write!(f, "field `{rest}`"),
            None => write!(f, "at `{}`", self.0),
        }
    }
}

impl ResolveError {
    /// JSON path of the value being read (in the reader's field names where
    /// the reader has the field), e.g. `$.payer.status`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The kind of failure.
    pub fn kind(&self) -> &ResolveErrorKind {
        &self.kind
    }

    fn decode(path: &Path<'_>, kind: DecodeErrorKind) -> Self {
        Self {
            path: path.render(),
            kind: ResolveErrorKind::Decode(kind),
        }
    }

    fn mismatch(path: &Path<'_>, message: String) -> Self {
        Self {
            path: path.render(),
            kind: ResolveErrorKind::Mismatch(message),
        }
    }
}

/// Decodes one value written with `writer` from the front of `input` in the
/// shape of `reader`, advancing `input` past it; trailing bytes are left.
///
/// Compiles the schema pair on every call: keep a [`Resolver`] to decode
/// many values of the same pair.
pub fn decode_resolved(
    writer: &Schema,
    reader: &Schema,
    input: &mut &[u8],
) -> Result<Value, ResolveError> {
    Resolver::new(writer, reader)?.decode(input)
}

/// Like [`decode_resolved`], but `bytes` must hold exactly one value.
pub fn decode_resolved_exact(
    writer: &Schema,
    reader: &Schema,
    bytes: &[u8],
) -> Result<Value, ResolveError> {
    Resolver::new(writer, reader)?.decode_exact(bytes)
}

/// A compiled writer/reader schema pair; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Resolver {
    writer: Schema,
    reader: Schema,
    steps: Vec<Step>,
    root: StepId,
}

impl Resolver {
    /// Pairs `writer` with `reader`. Fails when every value of `writer`
    /// would meet the same mismatch (see the module doc); mismatches that
    /// depend on the data are reported by [`Resolver::decode`] when data
    /// reaches them.
    pub fn new(writer: &Schema, reader: &Schema) -> Result<Resolver, ResolveError> {
        let mut compiler = Compiler {
            writer,
            reader,
            steps: Vec::new(),
            memo: HashMap::new(),
        };
        let root = compiler.compile(writer.root(), reader.root(), 0)?;
        let mut seen = vec![false; compiler.steps.len()];
        if let Some(e) = certain_failure(&compiler.steps, root, &Path::Root, &mut seen) {
            return Err(e);
        }
        Ok(Resolver {
            writer: writer.clone(),
            reader: reader.clone(),
            steps: compiler.steps,
            root,
        })
    }

    /// The writer schema.
    pub fn writer(&self) -> &Schema {
        &self.writer
    }

    /// The reader schema.
    pub fn reader(&self) -> &Schema {
        &self.reader
    }

    /// Decodes one value from the front of `input`, advancing it past the
    /// value. Trailing bytes are left in `input`.
    pub fn decode(&self, input: &mut &[u8]) -> Result<Value, ResolveError> {
        Run {
            res: self,
            zero_size_budget: Cell::new(MAX_ZERO_SIZE_ITEMS),
        }
        .value(self.root, input, &Path::Root, 0)
    }

    /// Decodes exactly one value from `input`, rejecting trailing bytes.
    pub fn decode_exact(&self, mut input: &[u8]) -> Result<Value, ResolveError> {
        let value = self.decode(&mut input)?;
        if !input.is_empty() {
            return Err(ResolveError::decode(
                &Path::Root,
                DecodeErrorKind::TrailingBytes(input.len()),
            ));
        }
        Ok(value)
    }
}

/// Index of a step in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StepId(usize);

/// How a writer scalar is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
}

/// A writer scalar as read from the wire, before the reader renders it.
enum Raw<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(&'a [u8]),
    Text(&'a str),
}

/// One writer field of a record step.
#[derive(Debug, Clone)]
enum FieldRead {
    /// Read into the reader field at `slot`.
    Keep { slot: usize, step: StepId },
    /// The reader has no such field: walk past the writer's value.
    Skip { name: String, writer: NodeId },
}

#[derive(Debug, Clone)]
struct RecordStep {
    /// Writer fields in encoding order.
    reads: Vec<FieldRead>,
    /// Reader field names in output order.
    names: Vec<String>,
    /// Rendered defaults of the reader fields the writer lacks.
    defaults: Vec<Option<Value>>,
}

#[derive(Debug, Clone)]
enum Step {
    /// Resolution is impossible here: raised when data reaches the step,
    /// or up front when every value must (see `certain_failure`).
    Fail(String),
    /// A writer scalar rendered as the reader node (same type or promoted).
    Scalar {
        wire: Wire,
        reader: NodeId,
    },
    /// Writer symbol index to reader symbol, or the error for an unknown one.
    Enum(Vec<Result<String, String>>),
    Array {
        writer_items: NodeId,
        items: StepId,
    },
    Map {
        values: StepId,
    },
    Record(RecordStep),
    /// The writer wrote a union: each branch has its own step.
    WriterUnion(Vec<StepId>),
    /// The reader has a union and the writer does not: `inner` produces the
    /// value of reader branch `index`, wrapped as the decoder would.
    ReaderBranch {
        union: NodeId,
        index: usize,
        inner: StepId,
    },
}

struct Compiler<'s> {
    writer: &'s Schema,
    reader: &'s Schema,
    steps: Vec<Step>,
    memo: HashMap<(NodeId, NodeId), StepId>,
}

fn wire_of(kind: &NodeKind) -> Option<Wire> {
    Some(match kind {
        NodeKind::Null => Wire::Null,
        NodeKind::Boolean => Wire::Boolean,
        NodeKind::Int => Wire::Int,
        NodeKind::Long => Wire::Long,
        NodeKind::Float => Wire::Float,
        NodeKind::Double => Wire::Double,
        NodeKind::Bytes => Wire::Bytes,
        NodeKind::String => Wire::String,
        NodeKind::Fixed(f) => Wire::Fixed(f.size),
        _ => return None,
    })
}

/// The spec's promotions, writer type first.
fn promotes(writer: &NodeKind, reader: &NodeKind) -> bool {
    matches!(
        (writer, reader),
        (
            NodeKind::Int,
            NodeKind::Long | NodeKind::Float | NodeKind::Double
        ) | (NodeKind::Long, NodeKind::Float | NodeKind::Double)
            | (NodeKind::Float, NodeKind::Double)
            | (NodeKind::String, NodeKind::Bytes)
            | (NodeKind::Bytes, NodeKind::String)
    )
}

fn short_name(fullname: &str) -> &str {
    fullname.rsplit('.').next().unwrap_or(fullname)
}

fn reader_aliases(node: &Node) -> &[String] {
    match &node.kind {
        NodeKind::Record(r) => &r.aliases,
        NodeKind::Enum(e) => &e.aliases,
        NodeKind::Fixed(f) => &f.aliases,
        _ => &[],
    }
}

fn same_kind(writer: &NodeKind, reader: &NodeKind) -> bool {
    std::mem::discriminant(writer) == std::mem::discriminant(reader)
}

/// Same type without promotion: the same primitive or container, or a named
/// type of the same kind whose fullname (or a reader alias) is the writer's.
fn exact_match(writer: &Node, reader: &Node) -> bool {
    if !same_kind(&writer.kind, &reader.kind) {
        return false;
    }
    match (writer.fullname(), reader.fullname()) {
        (Some(w), Some(r)) => w == r || reader_aliases(reader).iter().any(|a| a == w),
        _ => true,
    }
}

/// Whether the reader can read the writer's type at all (spec: "match").
fn loose_match(writer: &Node, reader: &Node) -> bool {
    if promotes(&writer.kind, &reader.kind) {
        return true;
    }
    if !same_kind(&writer.kind, &reader.kind) {
        return false;
    }
    match (writer.fullname(), reader.fullname()) {
        (Some(w), Some(r)) => {
            short_name(w) == short_name(r)
                || reader_aliases(reader)
                    .iter()
                    .any(|a| a == w || short_name(a) == short_name(w))
        }
        _ => true,
    }
}

/// Name of a node for messages: the logical type if any, else the type.
fn describe(node: &Node) -> String {
    let kind = match &node.kind {
        NodeKind::Record(_) => "record ",
        NodeKind::Enum(_) => "enum ",
        NodeKind::Fixed(_) => "fixed ",
        _ => "",
    };
    match node.logical {
        Some(LogicalType::Decimal { precision, scale }) => {
            format!("{kind}`decimal({precision},{scale})`")
        }
        Some(l) => format!("`{}`", l.name()),
        None => format!("{kind}`{}`", node.type_name()),
    }
}

/// Why two annotated scalars cannot be read one as the other, if they cannot.
fn logical_conflict(writer: &Node, reader: &Node) -> Option<String> {
    match (writer.logical, reader.logical) {
        (
            Some(LogicalType::Decimal { scale: ws, .. }),
            Some(LogicalType::Decimal { scale: rs, .. }),
        ) if ws != rs => Some(format!(
            "writer decimal scale {ws} differs from reader decimal scale {rs}"
        )),
        (Some(LogicalType::Decimal { .. }), Some(LogicalType::Decimal { .. })) => None,
        (Some(w), Some(r)) if w != r => Some(format!(
            "writer logical type `{}` cannot be read as reader logical type `{}`",
            w.name(),
            r.name()
        )),
        _ => None,
    }
}

impl Compiler<'_> {
    /// The step for writer node `w` read as reader node `r`, shared by every
    /// place the same pair occurs (which also ends recursion).
    fn compile(&mut self, w: NodeId, r: NodeId, depth: usize) -> Result<StepId, ResolveError> {
        if let Some(&id) = self.memo.get(&(w, r)) {
            return Ok(id);
        }
        if depth > MAX_DEPTH {
            return Err(ResolveError::mismatch(
                &Path::Root,
                format!("schemas are nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let id = StepId(self.steps.len());
        // Placeholder so a recursive reference to this pair finds its id.
        self.steps.push(Step::Fail(String::new()));
        self.memo.insert((w, r), id);
        let step = self.build(w, r, depth)?;
        self.steps[id.0] = step;
        Ok(id)
    }

    fn build(&mut self, w: NodeId, r: NodeId, depth: usize) -> Result<Step, ResolveError> {
        let (writer, reader) = (self.writer, self.reader);
        let (wn, rn) = (writer.node(w), reader.node(r));
        Ok(match (&wn.kind, &rn.kind) {
            // A writer union resolves whichever branch was written.
            (NodeKind::Union(branches), _) => {
                let mut steps = Vec::with_capacity(branches.len());
                for &b in branches {
                    steps.push(self.compile(b, r, depth + 1)?);
                }
                Step::WriterUnion(steps)
            }
            (_, NodeKind::Union(branches)) => {
                let pick = |test: fn(&Node, &Node) -> bool| {
                    branches.iter().position(|&b| test(wn, reader.node(b)))
                };
                match pick(exact_match).or_else(|| pick(loose_match)) {
                    Some(index) => Step::ReaderBranch {
                        union: r,
                        index,
                        inner: self.compile(w, branches[index], depth + 1)?,
                    },
                    None => Step::Fail(format!(
                        "writer {} matches no branch of the reader union [{}]",
                        describe(wn),
                        branches
                            .iter()
                            .map(|&b| describe(reader.node(b)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            _ if !loose_match(wn, rn) => Step::Fail(self.mismatch_message(wn, rn)),
            (NodeKind::Record(wr), NodeKind::Record(rr)) => self.record(wr, rr, depth)?,
            (NodeKind::Enum(we), NodeKind::Enum(re)) => Step::Enum(enum_map(we, re)),
            (NodeKind::Array(wi), NodeKind::Array(ri)) => Step::Array {
                writer_items: *wi,
                items: self.compile(*wi, *ri, depth + 1)?,
            },
            (NodeKind::Map(wv), NodeKind::Map(rv)) => Step::Map {
                values: self.compile(*wv, *rv, depth + 1)?,
            },
            (wk, _) => match (wire_of(wk), logical_conflict(wn, rn)) {
                (_, Some(conflict)) => Step::Fail(conflict),
                (Some(Wire::Fixed(ws)), _) => match &rn.kind {
                    NodeKind::Fixed(rf) if rf.size != ws => Step::Fail(format!(
                        "writer fixed `{}` has size {ws} but reader fixed `{}` has size {}",
                        wn.type_name(),
                        rf.name,
                        rf.size
                    )),
                    _ => Step::Scalar {
                        wire: Wire::Fixed(ws),
                        reader: r,
                    },
                },
                (Some(wire), _) => Step::Scalar { wire, reader: r },
                (None, _) => Step::Fail(self.mismatch_message(wn, rn)),
            },
        })
    }

    fn mismatch_message(&self, wn: &Node, rn: &Node) -> String {
        if same_kind(&wn.kind, &rn.kind) && wn.fullname().is_some() {
            format!(
                "writer {} does not match reader {} by name or alias",
                describe(wn),
                describe(rn)
            )
        } else {
            format!(
                "writer {} cannot be read as reader {}",
                describe(wn),
                describe(rn)
            )
        }
    }

    fn record(
        &mut self,
        wr: &RecordSchema,
        rr: &RecordSchema,
        depth: usize,
    ) -> Result<Step, ResolveError> {
        // Reader field -> writer field: names first, then the reader's field
        // aliases for writer fields no name claimed.
        let mut source: Vec<Option<usize>> =
            rr.fields.iter().map(|f| wr.field_index(&f.name)).collect();
        let mut claimed = vec![false; wr.fields.len()];
        for &wi in source.iter().flatten() {
            claimed[wi] = true;
        }
        for (ri, rf) in rr.fields.iter().enumerate() {
            if source[ri].is_some() {
                continue;
            }
            let found = rf
                .aliases
                .iter()
                .filter_map(|a| wr.field_index(a))
                .find(|&wi| !claimed[wi]);
            if let Some(wi) = found {
                claimed[wi] = true;
                source[ri] = Some(wi);
            }
        }
        let mut defaults = Vec::with_capacity(rr.fields.len());
        for (rf, src) in rr.fields.iter().zip(&source) {
            if src.is_some() {
                defaults.push(None);
                continue;
            }
            let Some(default) = &rf.default else {
                return Ok(Step::Fail(format!(
                    "reader field `{}` of record `{}` is missing from the writer record `{}` and has no default",
                    rf.name, rr.name, wr.name
                )));
            };
            match default_json(self.reader, rf.schema, default, 0) {
                Ok(v) => defaults.push(Some(v)),
                Err(e) => {
                    return Ok(Step::Fail(format!(
                        "default of reader field `{}` of record `{}`: {e}",
                        rf.name, rr.name
                    )));
                }
            }
        }
        let mut reads = Vec::with_capacity(wr.fields.len());
        for (wi, wf) in wr.fields.iter().enumerate() {
            match source.iter().position(|&s| s == Some(wi)) {
                Some(slot) => reads.push(FieldRead::Keep {
                    slot,
                    step: self.compile(wf.schema, rr.fields[slot].schema, depth + 1)?,
                }),
                None => reads.push(FieldRead::Skip {
                    name: wf.name.clone(),
                    writer: wf.schema,
                }),
            }
        }
        Ok(Step::Record(RecordStep {
            reads,
            names: rr.fields.iter().map(|f| f.name.clone()).collect(),
            defaults,
        }))
    }
}

/// A mismatch that every value of the writer runs into, found from the plan
/// alone: the step fails, or a record field (always read) does, or every
/// branch of a writer union does. Arrays and maps may be empty, so what lies
/// inside them is left to decoding. `seen` ends recursion; a step met again
/// counts as readable, which can only miss a failure, never invent one.
fn certain_failure(
    steps: &[Step],
    id: StepId,
    path: &Path<'_>,
    seen: &mut [bool],
) -> Option<ResolveError> {
    if std::mem::replace(&mut seen[id.0], true) {
        return None;
    }
    match &steps[id.0] {
        Step::Fail(message) => Some(ResolveError::mismatch(path, message.clone())),
        Step::Record(rec) => rec.reads.iter().find_map(|read| match read {
            FieldRead::Keep { slot, step } => {
                certain_failure(steps, *step, &Path::Field(path, &rec.names[*slot]), seen)
            }
            FieldRead::Skip { .. } => None,
        }),
        Step::WriterUnion(branches) => {
            let mut first = None;
            for &b in branches {
                let e = certain_failure(steps, b, path, seen)?;
                first.get_or_insert(e);
            }
            first
        }
        Step::ReaderBranch { inner, .. } => certain_failure(steps, *inner, path, seen),
        Step::Scalar { .. } | Step::Enum(_) | Step::Array { .. } | Step::Map { .. } => None,
    }
}

/// Writer symbol index to the reader's symbol, by name.
fn enum_map(we: &EnumSchema, re: &EnumSchema) -> Vec<Result<String, String>> {
    we.symbols
        .iter()
        .map(|s| {
            if re.symbols.contains(s) {
                Ok(s.clone())
            } else if let Some(d) = &re.default {
                Ok(d.clone())
            } else {
                Err(format!(
                    "writer symbol `{s}` is unknown to the reader enum `{}`, which has no default",
                    re.name
                ))
            }
        })
        .collect()
}

/// Renders bytes the Avro JSON way: one character per byte.
fn latin1(b: &[u8]) -> Value {
    Value::String(b.iter().map(|&c| char::from(c)).collect())
}

/// Renders a writer scalar as reader `node`, exactly as the single-schema
/// decoder renders a value of that node (promotions applied first).
fn render(node: &Node, raw: Raw<'_>) -> Result<Value, DecodeErrorKind> {
    let invalid = |m: String| DecodeErrorKind::InvalidValue(m);
    Ok(match (&node.kind, raw) {
        (NodeKind::Null, Raw::Null) => Value::Null,
        (NodeKind::Boolean, Raw::Bool(b)) => Value::Bool(b),
        (NodeKind::Int, Raw::Long(n)) => {
            let n = i32::try_from(n).map_err(|_| DecodeErrorKind::IntOutOfRange(n))?;
            int_json(n, node.logical)
        }
        (NodeKind::Long, Raw::Long(n)) => long_json(n, node.logical),
        // A reader `float` holds an f32 whatever it was promoted from; the
        // casts round to nearest as the spec's promotions do.
        (NodeKind::Float, Raw::Long(n)) => float_json(f64::from(n as f32)),
        (NodeKind::Float, Raw::Float(f)) => float_json(f64::from(f)),
        (NodeKind::Double, Raw::Long(n)) => float_json(n as f64),
        (NodeKind::Double, Raw::Float(f)) => float_json(f64::from(f)),
        (NodeKind::Double, Raw::Double(f)) => float_json(f),
        (NodeKind::Bytes | NodeKind::Fixed(_), Raw::Bytes(b)) => match node.logical {
            Some(LogicalType::Decimal { precision, scale }) => {
                Value::String(decimal::from_unscaled(b, precision, scale).map_err(invalid)?)
            }
            Some(LogicalType::Duration) if b.len() == 12 => {
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
        },
        (NodeKind::Bytes, Raw::Text(s)) => render(node, Raw::Bytes(s.as_bytes()))?,
        (NodeKind::String, Raw::Text(s)) => Value::String(s.to_owned()),
        (NodeKind::String, Raw::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| DecodeErrorKind::InvalidUtf8)?
                .to_owned(),
        ),
        // The compiler only pairs the combinations above; anything else is
        // reported rather than trusted.
        _ => {
            return Err(invalid(format!(
                "cannot render this value as `{}`",
                node.type_name()
            )));
        }
    })
}

/// Wraps a value of reader union branch `index` as the decoder would.
fn wrap_branch(reader: &Schema, branches: &[NodeId], index: usize, v: Value) -> Value {
    if union_needs_wrapper(reader, branches, index, &v) {
        let mut m = Map::new();
        m.insert(reader.node(branches[index]).type_name().to_owned(), v);
        Value::Object(m)
    } else {
        v
    }
}

/// Converts a reader field default (spec JSON form) to the shape the decoder
/// would produce for the same value read from the wire. Defaults were
/// validated when the schema was parsed; the checks here only keep a bad one
/// from turning into a panic.
fn default_json(reader: &Schema, id: NodeId, v: &Value, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("default is nested deeper than {MAX_DEPTH} levels"));
    }
    let node = reader.node(id);
    let rendered = |raw| render(node, raw).map_err(|k| k.to_string());
    match (&node.kind, v) {
        (NodeKind::Union(branches), _) => {
            // The spec: a union's default is for its first branch.
            let first = *branches.first().ok_or("an empty union has no default")?;
            let inner = default_json(reader, first, v, depth + 1)?;
            Ok(wrap_branch(reader, branches, 0, inner))
        }
        (NodeKind::Array(items), Value::Array(vs)) => vs
            .iter()
            .map(|x| default_json(reader, *items, x, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (NodeKind::Map(values), Value::Object(m)) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k.clone(), default_json(reader, *values, x, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        (NodeKind::Record(r), Value::Object(m)) => {
            let mut out = Map::new();
            for f in &r.fields {
                // A record default may leave out fields that have their own.
                let x = m
                    .get(&f.name)
                    .or(f.default.as_ref())
                    .ok_or_else(|| format!("missing field `{}` of record `{}`", f.name, r.name))?;
                out.insert(
                    f.name.clone(),
                    default_json(reader, f.schema, x, depth + 1)?,
                );
            }
            Ok(Value::Object(out))
        }
        (NodeKind::Null, Value::Null) => Ok(Value::Null),
        (NodeKind::Boolean, Value::Bool(b)) => Ok(Value::Bool(*b)),
        (NodeKind::Int | NodeKind::Long, Value::Number(n)) => match n.as_i64() {
            Some(i) => rendered(Raw::Long(i)),
            None => Err(format!("{n} is not a 64-bit integer")),
        },
        (NodeKind::Float | NodeKind::Double, _) => {
            let f = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) if s == "NaN" => Some(f64::NAN),
                Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
                Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            }
            .ok_or_else(|| format!("expected {}, found {}", describe(node), json_kind(v)))?;
            if matches!(node.kind, NodeKind::Float) {
                rendered(Raw::Float(f as f32))
            } else {
                rendered(Raw::Double(f))
            }
        }
        (NodeKind::Bytes | NodeKind::Fixed(_), Value::String(s)) => {
            let bytes = s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or("bytes must be a string of code points 0-255")?;
            if let NodeKind::Fixed(f) = &node.kind
                && f.size != bytes.len()
            {
                return Err(format!(
                    "expected {} bytes for fixed `{}`, found {}",
                    f.size,
                    f.name,
                    bytes.len()
                ));
            }
            rendered(Raw::Bytes(&bytes))
        }
        (NodeKind::String, Value::String(s)) => Ok(Value::String(s.clone())),
        (NodeKind::Enum(e), Value::String(s)) if e.symbols.contains(s) => Ok(v.clone()),
        _ => Err(format!(
            "expected {}, found {}",
            describe(node),
            json_kind(v)
        )),
    }
}

struct Run<'r> {
    res: &'r Resolver,
    /// Zero-size writer items still allowed in this value.
    zero_size_budget: Cell<u64>,
}

impl Run<'_> {
    /// Follows step `id`. Kept small because it is on the recursion path
    /// (see the decoder's `value`).
    fn value(
        &self,
        id: StepId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, ResolveError> {
        if depth > MAX_DEPTH {
            return Err(ResolveError::decode(
                path,
                DecodeErrorKind::TooDeep(MAX_DEPTH),
            ));
        }
        match &self.res.steps[id.0] {
            Step::Fail(message) => Err(ResolveError::mismatch(path, message.clone())),
            Step::Scalar { wire, reader } => self.scalar(*wire, *reader, input, path),
            Step::Enum(symbols) => Self::enumeration(symbols, input, path),
            Step::Array {
                writer_items,
                items,
            } => self.array(*writer_items, *items, input, path, depth),
            Step::Map { values } => self.map(*values, input, path, depth),
            Step::Record(rec) => self.record(rec, input, path, depth),
            Step::WriterUnion(branches) => {
                let index = read_long(input).map_err(|k| ResolveError::decode(path, k))?;
                let step = union_index(index, branches.len(), path)?;
                self.value(branches[step], input, path, depth + 1)
            }
            Step::ReaderBranch {
                union,
                index,
                inner,
            } => {
                // Not a level of its own: the writer wrote no union here.
                let v = self.value(*inner, input, path, depth)?;
                Ok(self.wrap(*union, *index, v))
            }
        }
    }

    fn wrap(&self, union: NodeId, index: usize, v: Value) -> Value {
        let reader = &self.res.reader;
        match &reader.node(union).kind {
            NodeKind::Union(branches) => wrap_branch(reader, branches, index, v),
            _ => v,
        }
    }

    #[inline(never)]
    fn scalar(
        &self,
        wire: Wire,
        reader: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
    ) -> Result<Value, ResolveError> {
        let err = |k| ResolveError::decode(path, k);
        let raw = read_raw(wire, input).map_err(err)?;
        render(self.res.reader.node(reader), raw).map_err(err)
    }

    fn enumeration(
        symbols: &[Result<String, String>],
        input: &mut &[u8],
        path: &Path<'_>,
    ) -> Result<Value, ResolveError> {
        let index = read_long(input).map_err(|k| ResolveError::decode(path, k))?;
        let symbol = usize::try_from(index)
            .ok()
            .and_then(|i| symbols.get(i))
            .ok_or_else(|| {
                ResolveError::decode(
                    path,
                    DecodeErrorKind::InvalidEnumIndex {
                        index,
                        count: symbols.len(),
                    },
                )
            })?;
        match symbol {
            Ok(s) => Ok(Value::String(s.clone())),
            Err(message) => Err(ResolveError::mismatch(path, message.clone())),
        }
    }

    /// Bounds a block's item count before looping on it: by the remaining
    /// input, or for items of zero size by the value's shared budget.
    fn admit(
        &self,
        count: u64,
        zero_size: bool,
        input: &[u8],
        path: &Path<'_>,
    ) -> Result<(), ResolveError> {
        let limit = if zero_size {
            self.zero_size_budget.get()
        } else {
            input.len() as u64
        };
        if count > limit {
            return Err(ResolveError::decode(
                path,
                DecodeErrorKind::LengthTooLarge(count as i64),
            ));
        }
        if zero_size {
            self.zero_size_budget.set(limit - count);
        }
        Ok(())
    }

    fn array(
        &self,
        writer_items: NodeId,
        items: StepId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, ResolveError> {
        let zero_size = self.res.writer.is_zero_size(writer_items);
        let mut out = Vec::new();
        loop {
            let count = block_count(input, path)?;
            if count == 0 {
                break;
            }
            self.admit(count, zero_size, input, path)?;
            out.reserve(count.min(input.len() as u64) as usize);
            for _ in 0..count {
                let i = out.len();
                out.push(self.value(items, input, &Path::Index(path, i), depth + 1)?);
            }
        }
        Ok(Value::Array(out))
    }

    fn map(
        &self,
        values: StepId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, ResolveError> {
        let mut out = Map::new();
        loop {
            let count = block_count(input, path)?;
            if count == 0 {
                break;
            }
            // Every entry has at least a one-byte key length.
            self.admit(count, false, input, path)?;
            for _ in 0..count {
                let key = read_key(input, path)?;
                let v = self.value(values, input, &Path::Key(path, key), depth + 1)?;
                out.insert(key.to_owned(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn record(
        &self,
        rec: &RecordStep,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, ResolveError> {
        let mut slots: Vec<Option<Value>> = vec![None; rec.names.len()];
        for read in &rec.reads {
            match read {
                FieldRead::Keep { slot, step } => {
                    let fpath = Path::Field(path, &rec.names[*slot]);
                    slots[*slot] = Some(self.value(*step, input, &fpath, depth + 1)?);
                }
                FieldRead::Skip { name, writer } => {
                    self.skip(*writer, input, &Path::Field(path, name), depth + 1)?;
                }
            }
        }
        let mut out = Map::new();
        for ((name, slot), default) in rec.names.iter().zip(slots).zip(&rec.defaults) {
            let v = match (slot, default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.clone(),
                // Every reader field has a writer source or a default, or
                // the record compiled to a failure.
                (None, None) => Value::Null,
            };
            out.insert(name.clone(), v);
        }
        Ok(Value::Object(out))
    }

    /// Walks past a writer value the reader does not want, with the same
    /// checks as reading it but without building it. Logical types are not
    /// rendered, so only the underlying encoding is validated.
    fn skip(
        &self,
        id: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), ResolveError> {
        if depth > MAX_DEPTH {
            return Err(ResolveError::decode(
                path,
                DecodeErrorKind::TooDeep(MAX_DEPTH),
            ));
        }
        let writer = &self.res.writer;
        match &writer.node(id).kind {
            NodeKind::Array(items) => {
                let zero_size = writer.is_zero_size(*items);
                let mut i = 0;
                loop {
                    let count = block_count(input, path)?;
                    if count == 0 {
                        return Ok(());
                    }
                    self.admit(count, zero_size, input, path)?;
                    for _ in 0..count {
                        self.skip(*items, input, &Path::Index(path, i), depth + 1)?;
                        i += 1;
                    }
                }
            }
            NodeKind::Map(values) => loop {
                let count = block_count(input, path)?;
                if count == 0 {
                    return Ok(());
                }
                self.admit(count, false, input, path)?;
                for _ in 0..count {
                    let key = read_key(input, path)?;
                    self.skip(*values, input, &Path::Key(path, key), depth + 1)?;
                }
            },
            NodeKind::Record(r) => {
                for f in &r.fields {
                    self.skip(f.schema, input, &Path::Field(path, &f.name), depth + 1)?;
                }
                Ok(())
            }
            NodeKind::Union(branches) => {
                let index = read_long(input).map_err(|k| ResolveError::decode(path, k))?;
                let i = union_index(index, branches.len(), path)?;
                self.skip(branches[i], input, path, depth + 1)
            }
            NodeKind::Enum(e) => {
                let index = read_long(input).map_err(|k| ResolveError::decode(path, k))?;
                if usize::try_from(index).is_ok_and(|i| i < e.symbols.len()) {
                    Ok(())
                } else {
                    Err(ResolveError::decode(
                        path,
                        DecodeErrorKind::InvalidEnumIndex {
                            index,
                            count: e.symbols.len(),
                        },
                    ))
                }
            }
            kind => match wire_of(kind) {
                Some(wire) => read_raw(wire, input)
                    .map(drop)
                    .map_err(|k| ResolveError::decode(path, k)),
                None => Ok(()),
            },
        }
    }
}

/// Reads one scalar of the writer's wire type.
fn read_raw<'a>(wire: Wire, input: &mut &'a [u8]) -> Result<Raw<'a>, DecodeErrorKind> {
    Ok(match wire {
        Wire::Null => Raw::Null,
        Wire::Boolean => match take(input, 1)?[0] {
            0 => Raw::Bool(false),
            1 => Raw::Bool(true),
            b => return Err(DecodeErrorKind::InvalidBoolean(b)),
        },
        Wire::Int => {
            let n = read_long(input)?;
            i32::try_from(n).map_err(|_| DecodeErrorKind::IntOutOfRange(n))?;
            Raw::Long(n)
        }
        Wire::Long => Raw::Long(read_long(input)?),
        Wire::Float => {
            let b = take(input, 4)?;
            Raw::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        Wire::Double => {
            let mut a = [0u8; 8];
            a.copy_from_slice(take(input, 8)?);
            Raw::Double(f64::from_le_bytes(a))
        }
        Wire::Bytes => Raw::Bytes(read_bytes(input)?),
        // Checked even when the reader wants bytes: invalid UTF-8 is not a
        // valid value of the writer's `string`.
        Wire::String => Raw::Text(
            std::str::from_utf8(read_bytes(input)?).map_err(|_| DecodeErrorKind::InvalidUtf8)?,
        ),
        Wire::Fixed(size) => Raw::Bytes(take(input, size)?),
    })
}

fn read_key<'a>(input: &mut &'a [u8], path: &Path<'_>) -> Result<&'a str, ResolveError> {
    let key = read_bytes(input).map_err(|k| ResolveError::decode(path, k))?;
    std::str::from_utf8(key).map_err(|_| ResolveError::decode(path, DecodeErrorKind::InvalidUtf8))
}

fn union_index(index: i64, count: usize, path: &Path<'_>) -> Result<usize, ResolveError> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < count)
        .ok_or_else(|| {
            ResolveError::decode(path, DecodeErrorKind::InvalidUnionIndex { index, count })
        })
}

/// Reads an array/map block header and returns its item count. A negative
/// count announces a byte size, which is read and ignored.
fn block_count(input: &mut &[u8], path: &Path<'_>) -> Result<u64, ResolveError> {
    let err = |k| ResolveError::decode(path, k);
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

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
