//! Reader/writer schema compatibility (Avro 1.11 "Schema Resolution").
//!
//! Before a producer registers a new schema version, the host has to know
//! whether consumers can still decode what is on the topic: data written with
//! one schema (the writer's) must be readable with another (the reader's).
//! [`can_read`] answers that for one pair and lists every reason it cannot;
//! [`check`] applies a schema-registry [`CompatibilityLevel`] (Confluent
//! semantics) to a proposed schema and the versions already registered.
//!
//! The rules are the specification's resolution rules, checked statically:
//!
//! - primitives match themselves and the promotions `int` to `long`, `float`
//!   or `double`, `long` to `float` or `double`, `float` to `double`, and
//!   `string` to `bytes` and back;
//! - records, enums and fixed types match by unqualified name or by a reader
//!   alias; fixed sizes must be equal; every writer enum symbol must be a
//!   reader symbol unless the reader enum has a `default`;
//! - reader fields match writer fields by name or by a reader field alias;
//!   a reader field the writer lacks needs a `default` (`"default": null`
//!   counts, a missing `default` key does not); writer-only fields are skipped;
//! - every branch of a writer union must be readable, and a reader union reads
//!   a writer type when one of its branches does;
//! - recursive types terminate: a record pair already being compared is
//!   assumed compatible (greatest fixed point), which is sound because any
//!   real mismatch is still found on the first pass through the pair.
//!
//! Choices where the specification is silent or loose:
//!
//! - aliases are compared by their unqualified name as well, the same way the
//!   spec compares type names, so an alias matches whatever namespace the
//!   writer used (Java only accepts the writer's exact fullname);
//! - a reader union reads a writer type when *any* branch can, like the
//!   reference Java and Python checkers; the spec's "first matching branch"
//!   only differs for a `bytes` decimal branch that fails while a `string`
//!   branch would succeed, which this checker accepts;
//! - decimals: scales must be equal and the reader's precision must be at
//!   least the writer's (the spec asks for equal precision, but every value
//!   a narrower writer produces fits a wider reader); a missing `scale` is 0;
//!   a decimal on one side only falls back to the underlying type;
//! - other logical types follow their underlying type when only one side
//!   has one (a `timestamp-millis` reader accepts a plain `long` writer),
//!   like the reference checkers; two different logical types on the same
//!   underlying type (`timestamp-micros` written, `timestamp-millis` read)
//!   are incompatible, unlike the reference checkers, because every value
//!   would silently change meaning, and the decoder refuses them too.
//!
//! The shared Apache Avro cases (`avro_schema_compatibility_cases.shared.json`)
//! all agree with these rules; none needed an exception.
//!
//! Locations follow the reference checkers' JSON-pointer-like convention:
//! `/fields/<i>/type` uses the reader field's index, `/items`, `/values`,
//! `/symbols`, `/size` and `/name` point into the named part, and a numeric
//! segment is the index of the *writer* union branch being read; `/` is the
//! root.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::schema::{LogicalType, MAX_DEPTH, Node, NodeId, NodeKind, RecordSchema, Schema};

/// Upper bound on node-pair comparisons for one [`can_read`] call. Results are
/// memoized, so real schemas stay far below it; it only stops adversarial
/// recursive unions from turning the check into a denial of service.
const MAX_VISITS: usize = 1_000_000;

/// Why a reader schema cannot read some writer data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncompatibilityKind {
    /// The reader's type cannot read the writer's type at all.
    TypeMismatch,
    /// Two named types of the same kind have unrelated names.
    NameMismatch,
    /// Two `fixed` types have different sizes.
    FixedSizeMismatch,
    /// The writer enum has symbols the reader lacks and no reader default.
    MissingEnumSymbols,
    /// No branch of the reader union can read a writer type.
    MissingUnionBranch,
    /// A reader field is absent from the writer and has no default.
    MissingDefault,
    /// Decimal scales differ or the reader's precision is smaller.
    DecimalMismatch,
    /// The schemas are too large or too deeply nested to check.
    TooComplex,
}

impl IncompatibilityKind {
    /// Stable snake_case name, e.g. `missing_default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TypeMismatch => "type_mismatch",
            Self::NameMismatch => "name_mismatch",
            Self::FixedSizeMismatch => "fixed_size_mismatch",
            Self::MissingEnumSymbols => "missing_enum_symbols",
            Self::MissingUnionBranch => "missing_union_branch",
            Self::MissingDefault => "missing_default",
            Self::DecimalMismatch => "decimal_mismatch",
            Self::TooComplex => "too_complex",
        }
    }
}

impl fmt::Display for IncompatibilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a reader schema cannot read data written with a writer schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// What went wrong.
    pub kind: IncompatibilityKind,
    /// Where, as a JSON-pointer-like path (see the module documentation).
    pub location: String,
    /// Lowercase explanation naming the field, symbol or type involved.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at `{}`)", self.message, self.location)
    }
}

/// Lists every reason data written with `writer` cannot be read with
/// `reader`; an empty list means the reader can read all of it.
pub fn can_read(reader: &Schema, writer: &Schema) -> Vec<Incompatibility> {
    let mut checker = Checker {
        reader,
        writer,
        active: Vec::new(),
        done: HashMap::new(),
        visits: 0,
        exhausted: false,
    };
    let verdict = checker.visit(reader.root(), writer.root(), 0);
    let mut out: Vec<Incompatibility> = verdict.issues.into_iter().map(Issue::finish).collect();
    if checker.exhausted {
        // The walk stopped early, so an empty list would be a false promise.
        out.push(Incompatibility {
            kind: IncompatibilityKind::TooComplex,
            location: "/".to_owned(),
            message: format!(
                "schemas are too large or nest deeper than {MAX_DEPTH} levels to check, \
                 so they are treated as incompatible"
            ),
        });
    }
    out
}

/// A problem found below some node pair, with its path kept relative so a
/// memoized result can be reused wherever the same pair appears again.
#[derive(Debug, Clone)]
struct Issue {
    kind: IncompatibilityKind,
    /// Pointer segments, innermost first: parents append on the way out.
    at: Vec<String>,
    /// Reader field names, innermost first, for the human-readable message.
    fields: Vec<String>,
    /// Message body without the field context.
    detail: String,
}

impl Issue {
    fn new(kind: IncompatibilityKind, detail: String) -> Self {
        Issue {
            kind,
            at: Vec::new(),
            fields: Vec::new(),
            detail,
        }
    }

    fn finish(self) -> Incompatibility {
        let location = if self.at.is_empty() {
            "/".to_owned()
        } else {
            self.at.iter().rev().fold(String::new(), |mut acc, s| {
                acc.push('/');
                acc.push_str(s);
                acc
            })
        };
        let path = self
            .fields
            .iter()
            .rev()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(".");
        let message = if self.kind == IncompatibilityKind::MissingDefault {
            format!("reader field `{path}` {}", self.detail)
        } else if path.is_empty() {
            self.detail
        } else {
            format!("field `{path}`: {}", self.detail)
        };
        Incompatibility {
            kind: self.kind,
            location,
            message,
        }
    }
}

/// Issues found below a node pair, plus the outermost in-progress record pair
/// the answer relied on (`usize::MAX` for none); only self-contained answers
/// may be memoized.
struct Verdict {
    issues: Vec<Issue>,
    assumes: usize,
}

impl Verdict {
    fn ok() -> Self {
        Verdict {
            issues: Vec::new(),
            assumes: usize::MAX,
        }
    }

    fn one(issue: Issue) -> Self {
        Verdict {
            issues: vec![issue],
            assumes: usize::MAX,
        }
    }

    fn merge(&mut self, other: Verdict) {
        self.issues.extend(other.issues);
        self.assumes = self.assumes.min(other.assumes);
    }

    fn under(mut self, segment: &str) -> Self {
        for issue in &mut self.issues {
            issue.at.push(segment.to_owned());
        }
        self
    }

    fn in_field(mut self, index: usize, name: &str) -> Self {
        for issue in &mut self.issues {
            issue.at.push("type".to_owned());
            issue.at.push(index.to_string());
            issue.at.push("fields".to_owned());
            issue.fields.push(name.to_owned());
        }
        self
    }
}

struct Checker<'a> {
    reader: &'a Schema,
    writer: &'a Schema,
    /// Record pairs being compared right now, outermost first.
    active: Vec<(NodeId, NodeId)>,
    /// Finished record pairs whose answer did not lean on an unfinished one.
    done: HashMap<(NodeId, NodeId), Vec<Issue>>,
    visits: usize,
    /// Set once a limit is hit; every later visit answers "no issues" and
    /// [`can_read`] reports the pair as too complex instead.
    exhausted: bool,
}

impl Checker<'_> {
    fn visit(&mut self, r: NodeId, w: NodeId, depth: usize) -> Verdict {
        if self.exhausted {
            return Verdict::ok();
        }
        self.visits += 1;
        if self.visits > MAX_VISITS || depth > MAX_DEPTH {
            self.exhausted = true;
            return Verdict::ok();
        }
        let (Some(rn), Some(wn)) = (node(self.reader, r), node(self.writer, w)) else {
            // Ids always come from their own arena; refuse rather than panic.
            return Verdict::one(Issue::new(
                IncompatibilityKind::TypeMismatch,
                "schema refers to a type outside itself".to_owned(),
            ));
        };

        // A writer union is resolved branch by branch, whatever the reader is.
        if let NodeKind::Union(branches) = &wn.kind {
            let mut verdict = Verdict::ok();
            for (i, &b) in branches.iter().enumerate() {
                let sub = self.visit(r, b, depth + 1);
                verdict.merge(sub.under(&i.to_string()));
            }
            return verdict;
        }
        if let NodeKind::Union(branches) = &rn.kind {
            return self.reader_union(branches, w, wn, depth);
        }

        match (&rn.kind, &wn.kind) {
            (NodeKind::Null, NodeKind::Null)
            | (NodeKind::Boolean, NodeKind::Boolean)
            | (NodeKind::Int, NodeKind::Int)
            | (NodeKind::Long, NodeKind::Int | NodeKind::Long)
            | (NodeKind::Float, NodeKind::Int | NodeKind::Long | NodeKind::Float)
            | (
                NodeKind::Double,
                NodeKind::Int | NodeKind::Long | NodeKind::Float | NodeKind::Double,
            ) => logical(rn, wn),
            (NodeKind::Bytes | NodeKind::String, NodeKind::Bytes | NodeKind::String) => {
                logical(rn, wn)
            }
            (NodeKind::Array(ri), NodeKind::Array(wi)) => {
                self.visit(*ri, *wi, depth + 1).under("items")
            }
            (NodeKind::Map(rv), NodeKind::Map(wv)) => {
                self.visit(*rv, *wv, depth + 1).under("values")
            }
            (NodeKind::Fixed(rf), NodeKind::Fixed(wf)) => {
                if !names_match(&rf.name, &rf.aliases, &wf.name) {
                    return name_mismatch(rn, wn);
                }
                if rf.size != wf.size {
                    return Verdict::one(Issue::new(
                        IncompatibilityKind::FixedSizeMismatch,
                        format!(
                            "reader fixed `{}` has size {} but writer fixed `{}` has size {}",
                            rf.name, rf.size, wf.name, wf.size
                        ),
                    ))
                    .under("size");
                }
                logical(rn, wn)
            }
            (NodeKind::Enum(re), NodeKind::Enum(we)) => {
                if !names_match(&re.name, &re.aliases, &we.name) {
                    return name_mismatch(rn, wn);
                }
                if re.default.is_some() {
                    // Unknown writer symbols resolve to the reader's default.
                    return Verdict::ok();
                }
                let missing: Vec<String> = we
                    .symbols
                    .iter()
                    .filter(|s| !re.symbols.contains(s))
                    .map(|s| format!("`{s}`"))
                    .collect();
                if missing.is_empty() {
                    return Verdict::ok();
                }
                let noun = if missing.len() == 1 {
                    "symbol"
                } else {
                    "symbols"
                };
                Verdict::one(Issue::new(
                    IncompatibilityKind::MissingEnumSymbols,
                    format!(
                        "reader enum `{}` lacks writer {noun} {} and has no default",
                        re.name,
                        missing.join(", ")
                    ),
                ))
                .under("symbols")
            }
            (NodeKind::Record(rr), NodeKind::Record(wr)) => {
                if !names_match(&rr.name, &rr.aliases, &wr.name) {
                    return name_mismatch(rn, wn);
                }
                self.record(r, w, rr, wr, depth)
            }
            _ => Verdict::one(Issue::new(
                IncompatibilityKind::TypeMismatch,
                format!(
                    "reader {} cannot read writer {}",
                    describe(rn),
                    describe(wn)
                ),
            )),
        }
    }

    fn record(
        &mut self,
        r: NodeId,
        w: NodeId,
        rr: &RecordSchema,
        wr: &RecordSchema,
        depth: usize,
    ) -> Verdict {
        if let Some(level) = self.active.iter().position(|&p| p == (r, w)) {
            return Verdict {
                issues: Vec::new(),
                assumes: level,
            };
        }
        if let Some(issues) = self.done.get(&(r, w)) {
            return Verdict {
                issues: issues.clone(),
                assumes: usize::MAX,
            };
        }
        let level = self.active.len();
        self.active.push((r, w));
        let mut verdict = Verdict::ok();
        for (i, rf) in rr.fields.iter().enumerate() {
            let found = wr
                .field_index(&rf.name)
                .or_else(|| rf.aliases.iter().find_map(|a| wr.field_index(a)))
                .and_then(|j| wr.fields.get(j));
            match found {
                Some(wf) => {
                    let sub = self.visit(rf.schema, wf.schema, depth + 1);
                    verdict.merge(sub.in_field(i, &rf.name));
                }
                None if rf.default.is_none() => {
                    let mut issue = Issue::new(
                        IncompatibilityKind::MissingDefault,
                        "has no default and is missing from the writer".to_owned(),
                    );
                    issue.at.push(i.to_string());
                    issue.at.push("fields".to_owned());
                    issue.fields.push(rf.name.clone());
                    verdict.issues.push(issue);
                }
                None => {}
            }
        }
        self.active.pop();
        if verdict.assumes >= level {
            // Every assumption made below was about this pair or deeper ones,
            // all settled now: the answer holds anywhere the pair reappears.
            verdict.assumes = usize::MAX;
            if !self.exhausted {
                self.done.insert((r, w), verdict.issues.clone());
            }
        }
        verdict
    }

    fn reader_union(&mut self, branches: &[NodeId], w: NodeId, wn: &Node, depth: usize) -> Verdict {
        let mut assumes = usize::MAX;
        let mut tried = Vec::with_capacity(branches.len());
        for &b in branches {
            let sub = self.visit(b, w, depth + 1);
            assumes = assumes.min(sub.assumes);
            if sub.issues.is_empty() {
                return Verdict {
                    issues: Vec::new(),
                    assumes,
                };
            }
            tried.push((b, sub.issues));
        }
        // No branch reads the writer type. If one is clearly meant to (same
        // named type, same container kind), its own problems say more than
        // "no branch", e.g. which field of a record lost its default.
        let meant = tried
            .into_iter()
            .find(|(b, _)| node(self.reader, *b).is_some_and(|bn| same_shape(bn, wn)));
        let issues = match meant {
            Some((_, issues)) => issues,
            None => vec![Issue::new(
                IncompatibilityKind::MissingUnionBranch,
                format!(
                    "reader union has no branch that can read writer {}",
                    describe(wn)
                ),
            )],
        };
        Verdict { issues, assumes }
    }
}

fn node(schema: &Schema, id: NodeId) -> Option<&Node> {
    (id.index() < schema.node_count()).then(|| schema.node(id))
}

/// Whether a reader union branch is the one the writer type resolves to by
/// name or kind, so its failure is worth reporting in detail.
fn same_shape(r: &Node, w: &Node) -> bool {
    match (&r.kind, &w.kind) {
        (NodeKind::Record(a), NodeKind::Record(b)) => names_match(&a.name, &a.aliases, &b.name),
        (NodeKind::Enum(a), NodeKind::Enum(b)) => names_match(&a.name, &a.aliases, &b.name),
        (NodeKind::Fixed(a), NodeKind::Fixed(b)) => names_match(&a.name, &a.aliases, &b.name),
        (NodeKind::Array(_), NodeKind::Array(_))
        | (NodeKind::Map(_), NodeKind::Map(_))
        | (NodeKind::Bytes | NodeKind::String, NodeKind::Bytes | NodeKind::String) => true,
        _ => false,
    }
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Unqualified name equality, or a reader alias with the writer's
/// unqualified name (see the module documentation for why namespaces are
/// ignored here).
fn names_match(reader: &str, reader_aliases: &[String], writer: &str) -> bool {
    let w = short(writer);
    short(reader) == w || reader_aliases.iter().any(|a| short(a) == w)
}

fn name_mismatch(r: &Node, w: &Node) -> Verdict {
    Verdict::one(Issue::new(
        IncompatibilityKind::NameMismatch,
        format!(
            "reader {} does not match writer {} by name or alias",
            describe(r),
            describe(w)
        ),
    ))
    .under("name")
}

/// Logical types on both sides: the same one, and for decimals the same
/// scale and no narrower precision.
fn logical(r: &Node, w: &Node) -> Verdict {
    if let (Some(rl), Some(wl)) = (r.logical, w.logical)
        && rl.name() != wl.name()
    {
        return Verdict {
            issues: vec![Issue::new(
                IncompatibilityKind::TypeMismatch,
                format!(
                    "reader logical type `{}` differs from writer logical type `{}`",
                    rl.name(),
                    wl.name()
                ),
            )],
            ..Verdict::ok()
        };
    }
    let (
        Some(LogicalType::Decimal {
            precision: rp,
            scale: rs,
        }),
        Some(LogicalType::Decimal {
            precision: wp,
            scale: ws,
        }),
    ) = (r.logical, w.logical)
    else {
        return Verdict::ok();
    };
    let mut verdict = Verdict::ok();
    if rs != ws {
        verdict.issues.push(Issue::new(
            IncompatibilityKind::DecimalMismatch,
            format!("reader decimal scale {rs} differs from writer decimal scale {ws}"),
        ));
    }
    if rp < wp {
        verdict.issues.push(Issue::new(
            IncompatibilityKind::DecimalMismatch,
            format!("reader decimal precision {rp} is smaller than writer decimal precision {wp}"),
        ));
    }
    verdict
}

/// A type as named in messages: "record `ns.Name`" or "type `int`".
fn describe(n: &Node) -> String {
    match &n.kind {
        NodeKind::Record(r) => format!("record `{}`", r.name),
        NodeKind::Enum(e) => format!("enum `{}`", e.name),
        NodeKind::Fixed(f) => format!("fixed `{}`", f.name),
        _ => match n.logical {
            Some(LogicalType::Decimal { precision, scale }) => {
                format!("type `{}` (decimal({precision}, {scale}))", n.type_name())
            }
            Some(lt) => format!("type `{}` ({})", n.type_name(), lt.name()),
            None => format!("type `{}`", n.type_name()),
        },
    }
}

/// Schema-registry compatibility level, as Confluent names and applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    /// No check at all.
    None,
    /// The proposed schema can read data written with the latest version.
    #[default]
    Backward,
    /// The proposed schema can read data written with every version.
    BackwardTransitive,
    /// The latest version can read data written with the proposed schema.
    Forward,
    /// Every version can read data written with the proposed schema.
    ForwardTransitive,
    /// Both [`Backward`](Self::Backward) and [`Forward`](Self::Forward).
    Full,
    /// Both directions against every version.
    FullTransitive,
}

impl CompatibilityLevel {
    /// All levels, in Confluent's documentation order.
    pub const ALL: [CompatibilityLevel; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    /// Confluent's name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a compatibility level name that Confluent does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compatibility level `{0}`")]
pub struct UnknownCompatibilityLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = UnknownCompatibilityLevel;

    /// Accepts Confluent's names in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCompatibilityLevel(s.to_owned()))
    }
}

/// Checks `proposed` against the registered versions `existing` (oldest
/// first) under `level`; returns human-readable reasons, empty when the
/// proposed schema may be registered.
///
/// Versions are numbered from 1 in `existing` order. Non-transitive levels
/// only look at the latest version; with no existing version everything is
/// compatible, as in a registry where the subject is new.
pub fn check(level: CompatibilityLevel, proposed: &Schema, existing: &[Schema]) -> Vec<String> {
    let against = if level.transitive() {
        existing
    } else {
        existing.last().map_or(&[][..], std::slice::from_ref)
    };
    let first = existing.len() - against.len() + 1;
    let mut reasons = Vec::new();
    for (offset, old) in against.iter().enumerate() {
        let version = first + offset;
        let label = if version == existing.len() {
            format!("version {version} (latest)")
        } else {
            format!("version {version}")
        };
        if level.backward() {
            reasons.extend(can_read(proposed, old).into_iter().map(|i| {
                format!(
                    "backward: the proposed schema cannot read data written with existing {label}: {i}"
                )
            }));
        }
        if level.forward() {
            reasons.extend(can_read(old, proposed).into_iter().map(|i| {
                format!(
                    "forward: existing {label} cannot read data written with the proposed schema: {i}"
                )
            }));
        }
    }
    reasons
}

#[cfg(test)]
#[path = "compat_tests.rs"]
mod tests;
