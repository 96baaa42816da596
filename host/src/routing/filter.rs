//! The built-in content filter of a route: which events' objects it forwards.
//!
//! A filter is a JSON object in the spirit of `EventBridge` event patterns,
//! keyed by paths into the event's object instead of nested objects:
//!
//! ```json
//! {
//!   "status_category_code": ["F1", "F2"],
//!   "provider.id": [{"prefix": "12"}],
//!   "total_charge": [{"numeric": [">", 0, "<=", 1000]}],
//!   "$or": [{"payer.id": ["12345"]}, {"payer.name": [{"equals-ignore-case": "acme health"}]}]
//! }
//! ```
//!
//! - Every key must match (AND); any one condition in a key's array may match
//!   (OR). `$or` takes two or more filters of the same kind, any one of which
//!   must match, and is AND-ed with its sibling keys. `{}` matches every
//!   object.
//! - A path is dotted field names with an optional leading `$.`; a name that
//!   holds dots or brackets is written as a JSON string in brackets:
//!   `provider["npi.id"]`. Arrays are never indexed: when the path meets an
//!   array it goes on into every element, and a key matches when any value
//!   reached matches.
//! - Conditions: a JSON literal (exact match; numbers compare by value, so `5`
//!   equals `5.0`), `prefix`, `suffix`, `equals-ignore-case`, `wildcard`,
//!   `anything-but`, `numeric` and `exists`.
//! - `null` is a value: `exists: true` and the literal `null` match a present
//!   null, `exists: false` only a path that reaches nothing. Write
//!   `[null, {"exists": false}]` for "missing or null".
//! - `numeric` also reads strings that hold a plain decimal number, such as
//!   `"120.50"`, because decimals travel as strings; no other condition does.
//! - Value conditions test scalars. A path that ends at an object is present
//!   for `exists` but matches no other condition.
//!
//! Filters are parsed once, when a route is loaded; [`Filter::matches`] runs
//! for every event on every route, so it walks the object without allocating.
//! [`Filter::explain`] gives the same verdict with a reason for each key, for
//! people testing their filters.
//!
//! `docs/filters.md` is the user-facing description of the same rules.

use std::cmp::Ordering;
use std::fmt::{self, Display, Write as _};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// How deep `$or` may nest: an `$or` inside an `$or` alternative counts as
/// one more level. Filters deeper than this are rejected when parsed.
pub const MAX_OR_DEPTH: usize = 8;

/// How many conditions one filter may hold, counting every literal and
/// operator object in the keys' arrays and every value listed in an
/// `anything-but` array, across all `$or` alternatives.
pub const MAX_CONDITIONS: usize = 1000;

/// The operators a condition object may use.
const OPERATORS: [&str; 7] = [
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "numeric",
    "exists",
    "wildcard",
];

/// The operators allowed inside `anything-but`.
const EXCLUDING_OPERATORS: &str = "prefix, suffix, equals-ignore-case, wildcard";

/// How many failed comparisons an explanation spells out before summarizing.
const MAX_LISTED_MISSES: usize = 6;

/// How many characters of a string value an explanation shows.
const MAX_SHOWN_CHARS: usize = 60;

/// A parsed route filter. It keeps the JSON it was parsed from, which is what
/// it serializes back to.
#[derive(Debug, Clone)]
pub struct Filter {
    source: Value,
    root: Pattern,
    /// [`Filter::top_level_fields`], found once when parsed.
    fields: std::collections::BTreeSet<String>,
}

/// A problem in a filter document, found when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {reason}")]
pub struct FilterError {
    /// Where in the filter document the problem is, such as
    /// `filter.status_code[1].numeric`.
    pub path: String,
    /// What is wrong and how to fix it, in lowercase.
    pub reason: String,
}

/// The verdict of a filter on one object, with the reason for each key.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Whether the filter matches: every check matched.
    pub matched: bool,
    /// One check per key of the filter, in the filter's order.
    pub checks: Vec<Check>,
}

/// The verdict of one key of a filter.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The key as written in the filter: a field path, or `$or`.
    pub path: String,
    /// Whether the key matched.
    pub matched: bool,
    /// Why, such as "`F1` has prefix `F`" or "no value at `status.code`".
    pub reason: String,
    /// For `$or`, the explanation of each alternative, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<Explanation>,
}

impl Filter {
    /// The top-level fields of the object this filter reads: every path's
    /// first name. The filter gives the same verdict on an object cut down
    /// to these fields as on the whole object, since a path only ever goes
    /// down from the root. `{}` reads none.
    pub fn top_level_fields(&self) -> &std::collections::BTreeSet<String> {
        &self.fields
    }

    /// Parses a filter document.
    ///
    /// # Errors
    ///
    /// A [`FilterError`] naming the first problem found and where it is: a
    /// document that is not an object, a key whose value is not a non-empty
    /// array of conditions, a malformed path, an unknown operator or one with
    /// a wrong argument, a malformed `$or`, or a filter beyond
    /// [`MAX_OR_DEPTH`] or [`MAX_CONDITIONS`].
    pub fn parse(value: &Value) -> Result<Filter, FilterError> {
        let mut parser = Parser { conditions: 0 };
        let root = parser.pattern(value, "filter", 0)?;
        fn collect(pattern: &Pattern, out: &mut std::collections::BTreeSet<String>) {
            for clause in &pattern.clauses {
                match clause {
                    Clause::Field(field) => {
                        if let Some(first) = field.segments.first() {
                            out.insert(first.clone());
                        }
                    }
                    Clause::AnyOf(alternatives) => {
                        for alternative in alternatives {
                            collect(alternative, out);
                        }
                    }
                }
            }
        }
        let mut fields = std::collections::BTreeSet::new();
        collect(&root, &mut fields);
        Ok(Filter {
            source: value.clone(),
            root,
            fields,
        })
    }

    /// The filter document as it was given.
    #[must_use]
    pub fn as_json(&self) -> &Value {
        &self.source
    }

    /// Whether the filter matches the object.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        self.root.matches(object)
    }

    /// The same verdict as [`Filter::matches`], with a reason for every key.
    /// Unlike `matches` it evaluates every key, so that all failures show.
    #[must_use]
    pub fn explain(&self, object: &Value) -> Explanation {
        self.root.explain(object)
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Filter::parse(&value).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// The parsed form.

/// One filter object: its keys, in the order written.
#[derive(Debug, Clone)]
struct Pattern {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone)]
enum Clause {
    Field(Field),
    AnyOf(Vec<Pattern>),
}

#[derive(Debug, Clone)]
struct Field {
    /// The key as written, for explanations.
    key: String,
    segments: Vec<String>,
    conditions: Vec<Condition>,
    /// Whether one of the conditions is `exists: false`, which is decided on
    /// the whole path rather than value by value.
    absent_matches: bool,
}

#[derive(Debug, Clone)]
enum Condition {
    Equals(Literal),
    Text(TextMatch),
    AnythingBut(Vec<Excluded>),
    Numeric(Range),
    Exists(bool),
}

#[derive(Debug, Clone)]
enum Literal {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

#[derive(Debug, Clone)]
enum TextMatch {
    Prefix(String),
    Suffix(String),
    /// The argument as written, and lowercased once here so that matching
    /// only lowercases the value.
    IgnoreCase {
        written: String,
        lowered: String,
    },
    Wildcard(Glob),
}

#[derive(Debug, Clone)]
enum Excluded {
    Value(Literal),
    Text(TextMatch),
}

/// One or two comparisons; with two, `first` is the lower bound.
#[derive(Debug, Clone)]
struct Range {
    first: Bound,
    second: Option<Bound>,
}

#[derive(Debug, Clone)]
struct Bound {
    cmp: Cmp,
    limit: Number,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

/// A `*` pattern, split at its unescaped stars.
#[derive(Debug, Clone)]
struct Glob {
    written: String,
    /// Always at least one part; n stars give n + 1 parts.
    parts: Vec<String>,
}

// ---------------------------------------------------------------------------
// Matching.

impl Pattern {
    fn matches(&self, object: &Value) -> bool {
        self.clauses.iter().all(|clause| match clause {
            Clause::Field(field) => field.matches(object),
            Clause::AnyOf(alternatives) => alternatives.iter().any(|p| p.matches(object)),
        })
    }

    fn explain(&self, object: &Value) -> Explanation {
        let checks: Vec<Check> = self
            .clauses
            .iter()
            .map(|clause| match clause {
                Clause::Field(field) => field.explain(object),
                Clause::AnyOf(alternatives) => explain_any_of(alternatives, object),
            })
            .collect();
        Explanation {
            matched: checks.iter().all(|c| c.matched),
            checks,
        }
    }
}

fn explain_any_of(alternatives: &[Pattern], object: &Value) -> Check {
    let any_of: Vec<Explanation> = alternatives.iter().map(|p| p.explain(object)).collect();
    let hits: Vec<String> = any_of
        .iter()
        .enumerate()
        .filter(|(_, e)| e.matched)
        .map(|(i, _)| format!("`$or[{i}]`"))
        .collect();
    let reason = if hits.is_empty() {
        format!("none of the {} alternatives matched", any_of.len())
    } else {
        format!("matched by {}", hits.join(", "))
    };
    Check {
        path: "$or".to_string(),
        matched: !hits.is_empty(),
        reason,
        any_of,
    }
}

/// Calls `visit` on every value the path reaches, spreading into arrays, until
/// `visit` returns true; returns whether it did.
fn walk<'v, F>(value: &'v Value, segments: &[String], visit: &mut F) -> bool
where
    F: FnMut(&'v Value) -> bool,
{
    if let Value::Array(items) = value {
        return items.iter().any(|item| walk(item, segments, visit));
    }
    match segments.split_first() {
        None => visit(value),
        Some((name, rest)) => match value {
            Value::Object(map) => map
                .get(name.as_str())
                .is_some_and(|child| walk(child, rest, visit)),
            _ => false,
        },
    }
}

impl Field {
    fn matches(&self, object: &Value) -> bool {
        let mut reached = false;
        let hit = walk(object, &self.segments, &mut |value| {
            reached = true;
            self.conditions.iter().any(|c| c.matches(value))
        });
        hit || (!reached && self.absent_matches)
    }

    fn explain(&self, object: &Value) -> Check {
        let mut values = Vec::new();
        walk(object, &self.segments, &mut |value| {
            values.push(value);
            false
        });
        let (matched, reason) = if values.is_empty() {
            if self.absent_matches {
                (
                    true,
                    format!("no value at `{}`, as `exists: false` asks", self.key),
                )
            } else {
                (false, format!("no value at `{}`", self.key))
            }
        } else {
            let hit = values.iter().find_map(|value| {
                self.conditions
                    .iter()
                    .find(|c| c.matches(value))
                    .map(|c| c.hit(value))
            });
            match hit {
                Some(reason) => (true, reason),
                None => (false, self.misses(&values)),
            }
        };
        Check {
            path: self.key.clone(),
            matched,
            reason,
            any_of: Vec::new(),
        }
    }

    fn misses(&self, values: &[&Value]) -> String {
        let total = values.len() * self.conditions.len();
        let mut listed: Vec<String> = values
            .iter()
            .flat_map(|value| self.conditions.iter().map(move |c| c.miss(value)))
            .take(MAX_LISTED_MISSES)
            .collect();
        if total > listed.len() {
            listed.push(format!("and {} more", total - listed.len()));
        }
        listed.join("; ")
    }
}

impl Condition {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Condition::Equals(literal) => literal.matches(value),
            Condition::Text(text) => value.as_str().is_some_and(|s| text.matches(s)),
            Condition::AnythingBut(excluded) => {
                is_scalar(value) && !excluded.iter().any(|x| x.matches(value))
            }
            Condition::Numeric(range) => range.matches(value),
            Condition::Exists(present) => *present,
        }
    }

    /// Why `value` matches; only called when it does.
    fn hit(&self, value: &Value) -> String {
        let shown = show(value);
        match self {
            Condition::Equals(literal) => format!("{shown} equals {literal}"),
            Condition::Text(text) => format!("{shown} {}", text.verb(true)),
            Condition::AnythingBut(excluded) => {
                format!("{shown} is none of {}", ExcludedList(excluded))
            }
            Condition::Numeric(range) => format!("{shown} is {range}"),
            Condition::Exists(_) => format!("{shown} is present"),
        }
    }

    /// Why `value` does not match; only called when it does not.
    fn miss(&self, value: &Value) -> String {
        let shown = show(value);
        if value.is_object() && !matches!(self, Condition::Exists(_)) {
            return format!("{shown} was found, and only `exists` tests objects");
        }
        match self {
            Condition::Equals(literal) => match (literal, value) {
                (Literal::Number(_), Value::String(_)) => {
                    format!("{shown} is a string, not the number {literal}")
                }
                (Literal::String(_), Value::Number(_) | Value::Bool(_)) => {
                    format!("{shown} is {}, not the string {literal}", kind(value))
                }
                _ => format!("{shown} is not {literal}"),
            },
            Condition::Text(text) => {
                if value.is_string() {
                    format!("{shown} {}", text.verb(false))
                } else {
                    format!("{shown} is not a string")
                }
            }
            Condition::AnythingBut(excluded) => {
                format!("{shown} is one of {}", ExcludedList(excluded))
            }
            Condition::Numeric(range) => {
                if number_of(value).is_some() {
                    format!("{shown} is not {range}")
                } else {
                    format!("{shown} is not a number")
                }
            }
            Condition::Exists(true) => format!("{shown} is present"),
            Condition::Exists(false) => {
                format!("{shown} is present, so `exists: false` fails")
            }
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

impl Literal {
    fn from_scalar(value: &Value) -> Literal {
        match value {
            Value::Bool(b) => Literal::Bool(*b),
            Value::Number(n) => Literal::Number(n.clone()),
            Value::String(s) => Literal::String(s.clone()),
            // The parser only hands scalars here.
            Value::Null | Value::Array(_) | Value::Object(_) => Literal::Null,
        }
    }

    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Literal::Null, Value::Null) => true,
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::Number(a), Value::Number(b)) => {
                Num::of(a).compare(Num::of(b)) == Some(Ordering::Equal)
            }
            (Literal::String(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

impl TextMatch {
    fn matches(&self, s: &str) -> bool {
        match self {
            TextMatch::Prefix(prefix) => s.starts_with(prefix.as_str()),
            TextMatch::Suffix(suffix) => s.ends_with(suffix.as_str()),
            TextMatch::IgnoreCase { lowered, .. } => {
                s.chars().flat_map(char::to_lowercase).eq(lowered.chars())
            }
            TextMatch::Wildcard(glob) => glob.matches(s),
        }
    }

    fn verb(&self, positive: bool) -> String {
        let (has, is, matches) = if positive {
            ("has", "is", "matches")
        } else {
            ("does not have", "is not", "does not match")
        };
        match self {
            TextMatch::Prefix(p) => format!("{has} prefix `{p}`"),
            TextMatch::Suffix(s) => format!("{has} suffix `{s}`"),
            TextMatch::IgnoreCase { written, .. } => format!("{is} `{written}` ignoring case"),
            TextMatch::Wildcard(glob) => format!("{matches} wildcard `{}`", glob.written),
        }
    }
}

impl Excluded {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Excluded::Value(literal) => literal.matches(value),
            Excluded::Text(text) => value.as_str().is_some_and(|s| text.matches(s)),
        }
    }
}

impl Range {
    fn matches(&self, value: &Value) -> bool {
        number_of(value)
            .is_some_and(|n| self.first.holds(n) && self.second.as_ref().is_none_or(|b| b.holds(n)))
    }
}

impl Bound {
    fn holds(&self, n: Num) -> bool {
        n.compare(Num::of(&self.limit))
            .is_some_and(|ordering| self.cmp.accepts(ordering))
    }
}

impl Cmp {
    fn parse(symbol: &str) -> Option<Cmp> {
        Some(match symbol {
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            "=" => Cmp::Eq,
            ">=" => Cmp::Ge,
            ">" => Cmp::Gt,
            _ => return None,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "=",
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
        }
    }

    /// Whether `value ⋄ limit` holds, given how value compares to limit.
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Cmp::Lt => ordering == Ordering::Less,
            Cmp::Le => ordering != Ordering::Greater,
            Cmp::Eq => ordering == Ordering::Equal,
            Cmp::Ge => ordering != Ordering::Less,
            Cmp::Gt => ordering == Ordering::Greater,
        }
    }

    fn is_lower(self) -> bool {
        matches!(self, Cmp::Gt | Cmp::Ge)
    }

    fn is_upper(self) -> bool {
        matches!(self, Cmp::Lt | Cmp::Le)
    }
}

impl Glob {
    fn matches(&self, s: &str) -> bool {
        match self.parts.as_slice() {
            [] => s.is_empty(),
            [whole] => s == whole,
            [first, middle @ .., last] => {
                // Anchoring both ends first keeps them from overlapping; the
                // middle parts then only need to appear in order, and taking
                // each at its leftmost place never loses a match.
                if s.len() < first.len() + last.len()
                    || !s.starts_with(first.as_str())
                    || !s.ends_with(last.as_str())
                {
                    return false;
                }
                let mut rest = &s[first.len()..s.len() - last.len()];
                for part in middle {
                    match rest.find(part.as_str()) {
                        Some(at) => rest = &rest[at + part.len()..],
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

/// A number read from a value, compared exactly when both sides are integers
/// (so ids above 2^53 stay distinct) and as `f64` otherwise.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::Int(i128::from(u))
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// Reads a plain decimal such as `120.50` or `-3`: an optional sign,
    /// digits, and an optional point followed by digits. Exponents, `inf`
    /// and padding are refused so that only what people write as amounts
    /// counts as a number.
    fn parse_decimal(s: &str) -> Option<Num> {
        let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (unsigned, None),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
            return None;
        }
        if fraction.is_none()
            && let Ok(i) = s.parse::<i128>()
        {
            return Some(Num::Int(i));
        }
        s.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Num::Float)
    }

    #[expect(
        clippy::cast_precision_loss,
        reason = "mixed integer and fraction comparisons are done in f64 on purpose"
    )]
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            _ => self.as_f64().partial_cmp(&other.as_f64()),
        }
    }
}

/// The number a value holds for `numeric`: a JSON number, or a string that
/// is a plain decimal.
fn number_of(value: &Value) -> Option<Num> {
    match value {
        Value::Number(n) => Some(Num::of(n)),
        Value::String(s) => Num::parse_decimal(s),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// How explanations show values and conditions.

fn show(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "an empty string".to_string(),
        Value::String(s) => {
            let mut shown: String = s.chars().take(MAX_SHOWN_CHARS).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("`{shown}`")
        }
        Value::Object(_) => "an object".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Null | Value::Bool(_) | Value::Number(_) => format!("`{value}`"),
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Number(n) => write!(f, "{n}"),
            // As JSON, so that `"65"` and `65` read differently.
            Literal::String(s) => write!(f, "{}", Value::from(s.as_str())),
        }
    }
}

impl Display for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextMatch::Prefix(p) => write!(f, "prefix `{p}`"),
            TextMatch::Suffix(s) => write!(f, "suffix `{s}`"),
            TextMatch::IgnoreCase { written, .. } => write!(f, "equals-ignore-case `{written}`"),
            TextMatch::Wildcard(glob) => write!(f, "wildcard `{}`", glob.written),
        }
    }
}

struct ExcludedList<'a>(&'a [Excluded]);

impl Display for ExcludedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, excluded) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match excluded {
                Excluded::Value(literal) => write!(f, "{literal}")?,
                Excluded::Text(text) => write!(f, "{text}")?,
            }
        }
        f.write_char(']')
    }
}

impl Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.first.cmp.symbol(), self.first.limit)?;
        if let Some(second) = &self.second {
            write!(f, " and {} {}", second.cmp.symbol(), second.limit)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parsing.

struct Parser {
    conditions: usize,
}

fn fail<T>(path: &str, reason: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        path: path.to_string(),
        reason: reason.into(),
    })
}

/// "a string", "an object" and so on, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Parser {
    fn count(&mut self, at: &str, n: usize) -> Result<(), FilterError> {
        self.conditions += n;
        if self.conditions > MAX_CONDITIONS {
            return fail(
                at,
                format!(
                    "the filter has more than {MAX_CONDITIONS} conditions; \
                     use fewer or split the route"
                ),
            );
        }
        Ok(())
    }

    fn pattern(&mut self, value: &Value, at: &str, depth: usize) -> Result<Pattern, FilterError> {
        let Value::Object(map) = value else {
            return fail(
                at,
                format!("a filter must be a JSON object, found {}", kind(value)),
            );
        };
        let mut clauses = Vec::with_capacity(map.len());
        for (key, conditions) in map {
            let here = format!("{at}.{key}");
            if key == "$or" {
                clauses.push(Clause::AnyOf(self.any_of(conditions, &here, depth)?));
            } else {
                let segments = parse_path(key).map_err(|reason| FilterError {
                    path: here.clone(),
                    reason,
                })?;
                clauses.push(Clause::Field(self.field(key, segments, conditions, &here)?));
            }
        }
        Ok(Pattern { clauses })
    }

    fn any_of(
        &mut self,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Vec<Pattern>, FilterError> {
        let Value::Array(items) = value else {
            return fail(
                at,
                format!(
                    "`$or` takes an array of at least two filters, found {}",
                    kind(value)
                ),
            );
        };
        match items.len() {
            0 => {
                return fail(
                    at,
                    "`$or` takes an array of at least two filters, found none",
                );
            }
            1 => {
                return fail(
                    at,
                    "`$or` takes at least two filters, found one; \
                     move its keys up and drop the `$or`",
                );
            }
            _ => {}
        }
        if depth + 1 > MAX_OR_DEPTH {
            return fail(
                at,
                format!("`$or` is nested more than {MAX_OR_DEPTH} levels deep; flatten the filter"),
            );
        }
        let mut alternatives = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}[{i}]");
            match item {
                Value::Object(map) if map.is_empty() => {
                    return fail(
                        &here,
                        "an empty filter inside `$or` matches every object; \
                         remove it or the whole `$or`",
                    );
                }
                Value::Object(_) => alternatives.push(self.pattern(item, &here, depth + 1)?),
                other => {
                    return fail(
                        &here,
                        format!(
                            "each `$or` alternative must be a filter object, found {}",
                            kind(other)
                        ),
                    );
                }
            }
        }
        Ok(alternatives)
    }

    fn field(
        &mut self,
        key: &str,
        segments: Vec<String>,
        value: &Value,
        at: &str,
    ) -> Result<Field, FilterError> {
        let items = match value {
            Value::Array(items) => items,
            // A lone operator object is a condition that lost its array.
            Value::Object(map)
                if map.len() == 1 && map.keys().all(|k| OPERATORS.contains(&k.as_str())) =>
            {
                return fail(
                    at,
                    format!(
                        "expected an array of conditions, found an operator object; wrap it: [{value}]"
                    ),
                );
            }
            Value::Object(map) => {
                let example = map
                    .keys()
                    .next()
                    .map_or_else(|| format!("{key}.name"), |first| format!("{key}.{first}"));
                return fail(
                    at,
                    format!(
                        "expected an array of conditions, found an object; to match a nested \
                         field, write its path as the key, e.g. `{example}`"
                    ),
                );
            }
            scalar => {
                return fail(
                    at,
                    format!(
                        "expected an array of conditions, found {}; wrap it: [{scalar}]",
                        kind(scalar)
                    ),
                );
            }
        };
        if items.is_empty() {
            return fail(
                at,
                "an empty array of conditions matches nothing; add at least one condition",
            );
        }
        let mut conditions = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            conditions.push(self.condition(item, &format!("{at}[{i}]"))?);
        }
        let absent_matches = conditions
            .iter()
            .any(|c| matches!(c, Condition::Exists(false)));
        Ok(Field {
            key: key.to_string(),
            segments,
            conditions,
            absent_matches,
        })
    }

    fn condition(&mut self, value: &Value, at: &str) -> Result<Condition, FilterError> {
        self.count(at, 1)?;
        match value {
            Value::Array(_) => fail(
                at,
                "a condition is a value or an operator object, not an array; \
                 list the values directly in the key's array",
            ),
            Value::Object(map) => self.operator(map, at),
            scalar => Ok(Condition::Equals(Literal::from_scalar(scalar))),
        }
    }

    fn operator(&mut self, map: &Map<String, Value>, at: &str) -> Result<Condition, FilterError> {
        let (name, argument) = single_key(map, at, &OPERATORS.join(", "))?;
        let here = format!("{at}.{name}");
        if let Some(text) = text_operator(name, argument, &here)? {
            return Ok(Condition::Text(text));
        }
        match name.as_str() {
            "anything-but" => self.anything_but(argument, &here),
            "numeric" => numeric(argument, &here),
            "exists" => match argument {
                Value::Bool(present) => Ok(Condition::Exists(*present)),
                other => fail(
                    &here,
                    format!("`exists` takes true or false, found {}", kind(other)),
                ),
            },
            other => fail(
                &here,
                format!(
                    "unknown operator `{other}`; use one of {}",
                    OPERATORS.join(", ")
                ),
            ),
        }
    }

    fn anything_but(&mut self, argument: &Value, at: &str) -> Result<Condition, FilterError> {
        let excluded = match argument {
            Value::Array(items) => {
                if items.is_empty() {
                    return fail(at, "`anything-but` needs at least one value to exclude");
                }
                self.count(at, items.len())?;
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| excluded(item, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?
            }
            single => vec![excluded(single, at)?],
        };
        Ok(Condition::AnythingBut(excluded))
    }
}

fn single_key<'m>(
    map: &'m Map<String, Value>,
    at: &str,
    choices: &str,
) -> Result<(&'m String, &'m Value), FilterError> {
    let mut entries = map.iter();
    match (entries.next(), entries.next()) {
        (Some(entry), None) => Ok(entry),
        (None, _) => fail(at, format!("empty operator object; use one of {choices}")),
        (Some(_), Some(_)) => {
            let names: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
            fail(
                at,
                format!(
                    "an operator object has exactly one key, found {} ({}); \
                     give each operator its own object",
                    map.len(),
                    names.join(", ")
                ),
            )
        }
    }
}

/// Parses the string operators, which `anything-but` may also hold; `None`
/// when `name` is not one of them.
fn text_operator(name: &str, argument: &Value, at: &str) -> Result<Option<TextMatch>, FilterError> {
    let make: fn(&str, &str) -> Result<TextMatch, FilterError> = match name {
        "prefix" => |s, _| Ok(TextMatch::Prefix(s.to_string())),
        "suffix" => |s, _| Ok(TextMatch::Suffix(s.to_string())),
        "equals-ignore-case" => |s, _| {
            Ok(TextMatch::IgnoreCase {
                written: s.to_string(),
                lowered: s.chars().flat_map(char::to_lowercase).collect(),
            })
        },
        "wildcard" => |s, at| Glob::parse(s, at).map(TextMatch::Wildcard),
        _ => return Ok(None),
    };
    match argument {
        Value::String(s) => make(s, at).map(Some),
        Value::Number(_) | Value::Bool(_) => fail(
            at,
            format!(
                "`{name}` takes a string, found {}; write \"{argument}\"",
                kind(argument)
            ),
        ),
        other => fail(
            at,
            format!("`{name}` takes a string, found {}", kind(other)),
        ),
    }
}

fn excluded(value: &Value, at: &str) -> Result<Excluded, FilterError> {
    match value {
        Value::Array(_) => fail(
            at,
            "`anything-but` lists cannot be nested; put every value in one array",
        ),
        Value::Object(map) => {
            let (name, argument) = single_key(map, at, EXCLUDING_OPERATORS)?;
            let here = format!("{at}.{name}");
            if let Some(text) = text_operator(name, argument, &here)? {
                return Ok(Excluded::Text(text));
            }
            match name.as_str() {
                "anything-but" | "numeric" | "exists" => fail(
                    &here,
                    format!(
                        "`{name}` cannot be used inside `anything-but`; \
                         use one of {EXCLUDING_OPERATORS}"
                    ),
                ),
                other => fail(
                    &here,
                    format!(
                        "unknown operator `{other}` inside `anything-but`; \
                         use one of {EXCLUDING_OPERATORS}"
                    ),
                ),
            }
        }
        scalar => Ok(Excluded::Value(Literal::from_scalar(scalar))),
    }
}

fn numeric(argument: &Value, at: &str) -> Result<Condition, FilterError> {
    const EXAMPLE: &str = "[\">=\", 0] or [\">\", 0, \"<=\", 100]";
    let Value::Array(items) = argument else {
        return fail(
            at,
            format!(
                "`numeric` takes an array such as {EXAMPLE}, found {}",
                kind(argument)
            ),
        );
    };
    if items.len() != 2 && items.len() != 4 {
        return fail(
            at,
            format!(
                "`numeric` takes one or two comparisons, such as {EXAMPLE}; found {} items",
                items.len()
            ),
        );
    }
    let mut bounds = items.chunks(2).enumerate().map(|(i, pair)| {
        let op_at = format!("{at}[{}]", 2 * i);
        let cmp = match &pair[0] {
            Value::String(symbol) => Cmp::parse(symbol).ok_or_else(|| FilterError {
                path: op_at.clone(),
                reason: format!("unknown comparison `{symbol}`; use one of <, <=, =, >=, >"),
            })?,
            other => {
                return fail(
                    &op_at,
                    format!(
                        "expected a comparison (<, <=, =, >=, >), found {}",
                        kind(other)
                    ),
                );
            }
        };
        let limit_at = format!("{at}[{}]", 2 * i + 1);
        match &pair[1] {
            Value::Number(limit) => Ok(Bound {
                cmp,
                limit: limit.clone(),
            }),
            Value::String(s) if Num::parse_decimal(s).is_some() => fail(
                &limit_at,
                format!(
                    "expected a number after `{}`, found a string; write {s} without quotes",
                    cmp.symbol()
                ),
            ),
            other => fail(
                &limit_at,
                format!(
                    "expected a number after `{}`, found {}",
                    cmp.symbol(),
                    kind(other)
                ),
            ),
        }
    });
    let first = bounds
        .next()
        .unwrap_or_else(|| fail(at, "`numeric` is empty"))?;
    let second = bounds.next().transpose()?;
    if let Some(upper) = &second {
        if !first.cmp.is_lower() || !upper.cmp.is_upper() {
            return fail(
                at,
                "with two comparisons, the first must be a lower bound (`>` or `>=`) \
                 and the second an upper bound (`<` or `<=`)",
            );
        }
        let ordering = Num::of(&first.limit).compare(Num::of(&upper.limit));
        if ordering != Some(Ordering::Less) {
            let hint = if ordering == Some(Ordering::Equal) {
                format!("; to match one number write [\"=\", {}]", first.limit)
            } else {
                String::new()
            };
            return fail(
                at,
                format!(
                    "the lower bound {} must be below the upper bound {}{hint}",
                    first.limit, upper.limit
                ),
            );
        }
    }
    Ok(Condition::Numeric(Range { first, second }))
}

impl Glob {
    /// `*` stands for any run of characters; `\*` and `\\` for a literal star
    /// and backslash.
    fn parse(written: &str, at: &str) -> Result<Glob, FilterError> {
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut chars = written.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => parts.push(std::mem::take(&mut current)),
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => current.push(escaped),
                    _ => {
                        return fail(
                            at,
                            "in a wildcard a backslash must be followed by `*` or `\\`; \
                             write `\\\\` for a backslash",
                        );
                    }
                },
                other => current.push(other),
            }
        }
        parts.push(current);
        Ok(Glob {
            written: written.to_string(),
            parts,
        })
    }
}

/// Splits a key into field names; the error is the reason only, since the
/// caller knows where the key is.
fn parse_path(key: &str) -> Result<Vec<String>, String> {
    let rest = if key.is_empty() {
        return Err("empty path; name a field, e.g. `status_code`".to_string());
    } else if key == "$" || key == "$." {
        return Err(format!(
            "path `{key}` names the whole object; name a field, e.g. `$.status_code`"
        ));
    } else if let Some(rest) = key.strip_prefix("$.") {
        rest
    } else if key.starts_with("$[") {
        &key[1..]
    } else if key.starts_with('$') {
        return Err(format!(
            "keys starting with `$` are reserved for `$or` and `$.` paths; to name a field \
             `{key}`, quote it: [{}]",
            Value::from(key)
        ));
    } else {
        key
    };

    let mut segments = Vec::new();
    let mut i = 0;
    loop {
        if rest[i..].starts_with('[') {
            let (name, next) = quoted_segment(key, rest, i)?;
            segments.push(name);
            i = next;
        } else {
            let end = rest[i..].find(['.', '[']).map_or(rest.len(), |at| i + at);
            let name = &rest[i..end];
            if name.is_empty() {
                return Err(format!(
                    "empty segment in path `{key}`; every segment between dots needs a name"
                ));
            }
            if name.contains([']', '"']) {
                return Err(format!(
                    "unexpected `]` or `\"` in path `{key}`; write a name that holds them as a \
                     quoted segment, e.g. `provider[\"npi.id\"]`"
                ));
            }
            segments.push(name.to_string());
            i = end;
        }
        match rest.as_bytes().get(i) {
            None => return Ok(segments),
            Some(b'.') => {
                i += 1;
                if i == rest.len() {
                    return Err(format!(
                        "path `{key}` ends with a dot; remove it or add a field name"
                    ));
                }
            }
            Some(b'[') => {}
            Some(_) => {
                return Err(format!("expected `.` or `[` after `]` in path `{key}`"));
            }
        }
    }
}

/// Reads `["name"]` starting at the `[` at `start`; returns the name and the
/// index just past the `]`.
fn quoted_segment(key: &str, rest: &str, start: usize) -> Result<(String, usize), String> {
    let bytes = rest.as_bytes();
    if bytes.get(start + 1) != Some(&b'"') {
        return Err(format!(
            "a `[` in a path opens a quoted name, as in `provider[\"npi.id\"]`; \
             found none in `{key}`"
        ));
    }
    // `"` and `\` are ASCII, so scanning bytes never lands inside a UTF-8
    // sequence.
    let mut at = start + 2;
    let close = loop {
        match bytes.get(at) {
            None => {
                return Err(format!(
                    "unterminated quoted name in path `{key}`; close it with `\"]`"
                ));
            }
            Some(b'\\') => at += 2,
            Some(b'"') => break at,
            Some(_) => at += 1,
        }
    };
    let name: String = serde_json::from_str(&rest[start + 1..=close])
        .map_err(|_| format!("the quoted name in path `{key}` is not a valid JSON string"))?;
    if bytes.get(close + 1) != Some(&b']') {
        return Err(format!(
            "expected `]` after the quoted name in path `{key}`"
        ));
    }
    Ok((name, close + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: &Value) -> Filter {
        match Filter::parse(value) {
            Ok(f) => f,
            Err(e) => panic!("{value} should parse: {e}"),
        }
    }

    fn parse_error(value: &Value) -> FilterError {
        match Filter::parse(value) {
            Ok(_) => panic!("{value} should not parse"),
            Err(e) => e,
        }
    }

    /// Asserts the verdict, and that `explain` agrees with `matches`.
    fn check(f: &Value, object: &Value, expected: bool) {
        let parsed = filter(f);
        assert_eq!(
            parsed.matches(object),
            expected,
            "filter {f} on {object}: {:#?}",
            parsed.explain(object)
        );
        assert_eq!(
            parsed.explain(object).matched,
            expected,
            "explain of {f} on {object}"
        );
    }

    fn yes(f: &Value, object: &Value) {
        check(f, object, true);
    }

    fn no(f: &Value, object: &Value) {
        check(f, object, false);
    }

    fn claim() -> Value {
        json!({
            "claim_id": "CLM-1",
            "payer": {"name": "ACME HEALTH", "id": "12345"},
            "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": "1234567890"},
            "patient": null,
            "status_category_code": "F1",
            "status_code": "65",
            "total_charge": "120.50",
            "payment_amount": null,
            "service_lines": [
                {"procedure_code": "HC:99203", "status_category_code": "F1", "status_code": "65"},
                {"procedure_code": "HC:85025", "status_category_code": "P3", "status_code": "20",
                 "modifiers": ["25", "59"]}
            ],
            "attachments": [],
            "line_count": 2,
            "urgent": false
        })
    }

    // --- literals --------------------------------------------------------

    #[test]
    fn literal_strings_match_exactly() {
        let c = claim();
        yes(&json!({"status_category_code": ["F1"]}), &c);
        yes(&json!({"status_category_code": ["F0", "F1"]}), &c);
        no(&json!({"status_category_code": ["f1"]}), &c);
        no(&json!({"status_category_code": ["F"]}), &c);
    }

    #[test]
    fn literal_numbers_compare_by_value_and_never_equal_strings() {
        let c = claim();
        yes(&json!({"line_count": [2]}), &c);
        yes(&json!({"line_count": [2.0]}), &c);
        no(&json!({"line_count": [3]}), &c);
        no(&json!({"line_count": ["2"]}), &c);
        no(&json!({"status_code": [65]}), &c);
        // Integers are compared exactly, not through f64.
        let big = json!({"n": 9_007_199_254_740_993_u64});
        yes(&json!({"n": [9_007_199_254_740_993_u64]}), &big);
        no(&json!({"n": [9_007_199_254_740_992_u64]}), &big);
        yes(&json!({"n": [-1]}), &json!({"n": -1.0}));
    }

    #[test]
    fn literal_booleans_and_null() {
        let c = claim();
        yes(&json!({"urgent": [false]}), &c);
        no(&json!({"urgent": [true]}), &c);
        no(&json!({"urgent": ["false"]}), &c);
        yes(&json!({"payment_amount": [null]}), &c);
        no(&json!({"missing": [null]}), &c);
        no(&json!({"status_code": [null]}), &c);
        no(&json!({"payment_amount": [false]}), &c);
    }

    // --- string operators -----------------------------------------------

    #[test]
    fn prefix_and_suffix() {
        let c = claim();
        yes(&json!({"status_category_code": [{"prefix": "F"}]}), &c);
        no(&json!({"status_category_code": [{"prefix": "P"}]}), &c);
        yes(&json!({"claim_id": [{"suffix": "-1"}]}), &c);
        no(&json!({"claim_id": [{"suffix": "-2"}]}), &c);
        yes(&json!({"claim_id": [{"prefix": ""}]}), &c);
        // Strings only.
        no(&json!({"line_count": [{"prefix": "2"}]}), &c);
        no(&json!({"payment_amount": [{"prefix": ""}]}), &c);
        no(&json!({"payer": [{"prefix": ""}]}), &c);
    }

    #[test]
    fn equals_ignore_case_lowercases_unicode() {
        let c = claim();
        yes(
            &json!({"payer.name": [{"equals-ignore-case": "acme health"}]}),
            &c,
        );
        yes(
            &json!({"payer.name": [{"equals-ignore-case": "Acme Health"}]}),
            &c,
        );
        no(&json!({"payer.name": [{"equals-ignore-case": "acme"}]}), &c);
        yes(
            &json!({"city": [{"equals-ignore-case": "ÉCLAIR"}]}),
            &json!({"city": "éclair"}),
        );
        no(
            &json!({"city": [{"equals-ignore-case": "ECLAIR"}]}),
            &json!({"city": "éclair"}),
        );
        yes(
            &json!({"n": [{"equals-ignore-case": "ΣΊΣΥΦΟΣ"}]}),
            &json!({"n": "σίσυφοσ"}),
        );
        no(&json!({"line_count": [{"equals-ignore-case": "2"}]}), &c);
    }

    #[test]
    fn wildcard() {
        let id = |s: &str| json!({"claim_id": s});
        let f = || json!({"claim_id": [{"wildcard": "claim-*-2024"}]});
        yes(&f(), &id("claim-7-2024"));
        yes(&f(), &id("claim--2024"));
        yes(&f(), &id("claim-a-b-2024"));
        no(&f(), &id("claim-2024"));
        no(&f(), &id("claim-7-2025"));
        no(&f(), &id("xclaim-7-2024"));
        yes(&json!({"claim_id": [{"wildcard": "*"}]}), &id(""));
        yes(&json!({"claim_id": [{"wildcard": "*-1"}]}), &id("CLM-1"));
        yes(&json!({"claim_id": [{"wildcard": "C*"}]}), &id("CLM-1"));
        yes(&json!({"claim_id": [{"wildcard": "C*M*1"}]}), &id("CLM-1"));
        no(&json!({"claim_id": [{"wildcard": "C*X*1"}]}), &id("CLM-1"));
        yes(&json!({"claim_id": [{"wildcard": "CLM-1"}]}), &id("CLM-1"));
        no(&json!({"claim_id": [{"wildcard": "CLM-"}]}), &id("CLM-1"));
        // First and last parts must not share characters.
        no(&json!({"claim_id": [{"wildcard": "ab*ba"}]}), &id("aba"));
        yes(&json!({"claim_id": [{"wildcard": r"a\*b"}]}), &id("a*b"));
        no(&json!({"claim_id": [{"wildcard": r"a\*b"}]}), &id("axb"));
        yes(&json!({"claim_id": [{"wildcard": r"a\\*"}]}), &id(r"a\xyz"));
        yes(&json!({"claim_id": [{"wildcard": "é*ü"}]}), &id("éaü"));
        no(&json!({"line_count": [{"wildcard": "*"}]}), &claim());
    }

    // --- anything-but ----------------------------------------------------

    #[test]
    fn anything_but_forms() {
        let c = claim();
        yes(
            &json!({"status_category_code": [{"anything-but": "P3"}]}),
            &c,
        );
        no(
            &json!({"status_category_code": [{"anything-but": "F1"}]}),
            &c,
        );
        yes(
            &json!({"status_category_code": [{"anything-but": ["P3", "A2"]}]}),
            &c,
        );
        no(
            &json!({"status_category_code": [{"anything-but": ["P3", "F1"]}]}),
            &c,
        );
        no(
            &json!({"status_category_code": [{"anything-but": {"prefix": "F"}}]}),
            &c,
        );
        yes(
            &json!({"status_category_code": [{"anything-but": {"prefix": "P"}}]}),
            &c,
        );
        no(
            &json!({"claim_id": [{"anything-but": {"suffix": "-1"}}]}),
            &c,
        );
        no(
            &json!({"payer.name": [{"anything-but": {"equals-ignore-case": "acme health"}}]}),
            &c,
        );
        no(
            &json!({"claim_id": [{"anything-but": {"wildcard": "CLM-*"}}]}),
            &c,
        );
        // Mixed lists.
        no(
            &json!({"status_category_code": [{"anything-but": ["A2", {"prefix": "F"}]}]}),
            &c,
        );
        yes(
            &json!({"status_category_code": [{"anything-but": ["A2", {"prefix": "P"}]}]}),
            &c,
        );
        // Types differ, so these are not excluded.
        yes(&json!({"line_count": [{"anything-but": "2"}]}), &c);
        no(&json!({"line_count": [{"anything-but": 2}]}), &c);
        no(&json!({"line_count": [{"anything-but": 2.0}]}), &c);
        yes(
            &json!({"line_count": [{"anything-but": {"prefix": "2"}}]}),
            &c,
        );
    }

    #[test]
    fn anything_but_needs_a_present_scalar() {
        let c = claim();
        no(&json!({"missing": [{"anything-but": "x"}]}), &c);
        no(&json!({"attachments": [{"anything-but": "x"}]}), &c);
        yes(&json!({"payment_amount": [{"anything-but": "x"}]}), &c);
        no(&json!({"payment_amount": [{"anything-but": null}]}), &c);
        no(&json!({"payer": [{"anything-but": "x"}]}), &c);
    }

    #[test]
    fn anything_but_over_arrays_matches_when_any_value_is_not_excluded() {
        let c = claim();
        yes(
            &json!({"service_lines.status_category_code": [{"anything-but": "F1"}]}),
            &c,
        );
        no(
            &json!({"service_lines.status_category_code": [{"anything-but": ["F1", "P3"]}]}),
            &c,
        );
    }

    // --- numeric ---------------------------------------------------------

    #[test]
    fn numeric_operators_and_bounds() {
        let n = |v: Value| json!({"n": v});
        let f = |spec: Value| json!({"n": [{"numeric": spec}]});
        yes(&f(json!([">", 0])), &n(json!(1)));
        no(&f(json!([">", 0])), &n(json!(0)));
        yes(&f(json!([">=", 0])), &n(json!(0)));
        no(&f(json!([">=", 0])), &n(json!(-0.001)));
        yes(&f(json!(["<", 10])), &n(json!(9.999)));
        no(&f(json!(["<", 10])), &n(json!(10)));
        yes(&f(json!(["<=", 10])), &n(json!(10.0)));
        no(&f(json!(["<=", 10])), &n(json!(10.000_001)));
        yes(&f(json!(["=", 5])), &n(json!(5.0)));
        no(&f(json!(["=", 5])), &n(json!(5.1)));
        let range = || f(json!([">", 0, "<=", 100]));
        no(&range(), &n(json!(0)));
        yes(&range(), &n(json!(0.01)));
        yes(&range(), &n(json!(100)));
        no(&range(), &n(json!(100.01)));
        yes(&f(json!([">=", -5.5, "<", -1])), &n(json!(-5.5)));
        no(&f(json!([">=", -5.5, "<", -1])), &n(json!(-1)));
        yes(
            &f(json!([">", 9_007_199_254_740_992_u64])),
            &n(json!(9_007_199_254_740_993_u64)),
        );
    }

    #[test]
    fn numeric_reads_decimal_strings_and_nothing_else() {
        let c = claim();
        yes(
            &json!({"total_charge": [{"numeric": [">", 100, "<=", 120.5]}]}),
            &c,
        );
        no(&json!({"total_charge": [{"numeric": ["<", 120.5]}]}), &c);
        yes(&json!({"total_charge": [{"numeric": ["=", 120.5]}]}), &c);
        let n = |v: Value| json!({"n": v});
        let positive = || json!({"n": [{"numeric": [">", 0]}]});
        yes(&positive(), &n(json!("7")));
        yes(&positive(), &n(json!("+7")));
        yes(&positive(), &n(json!("0007.50")));
        no(&positive(), &n(json!("-7")));
        for odd in [
            "", "abc", "1e3", " 5", "5 ", ".5", "5.", "inf", "NaN", "--1", "1.2.3", "0x10",
        ] {
            no(&positive(), &n(json!(odd)));
        }
        no(&positive(), &n(json!(true)));
        no(&positive(), &n(json!(null)));
        no(&positive(), &n(json!({"amount": 5})));
        no(&json!({"missing": [{"numeric": [">", 0]}]}), &c);
        // An integer string too long for i128 still reads, as a float.
        yes(&positive(), &n(json!("1".repeat(50))));
    }

    // --- exists ----------------------------------------------------------

    #[test]
    fn exists_on_missing_null_and_arrays() {
        let c = claim();
        let t = |k: &str| json!({k: [{"exists": true}]});
        let f = |k: &str| json!({k: [{"exists": false}]});
        yes(&t("status_code"), &c);
        no(&f("status_code"), &c);
        no(&t("missing"), &c);
        yes(&f("missing"), &c);
        // A present null is present.
        yes(&t("payment_amount"), &c);
        no(&f("payment_amount"), &c);
        // Through a null there is nothing.
        yes(&f("patient.name"), &c);
        no(&t("patient.name"), &c);
        // An object is present.
        yes(&t("payer"), &c);
        // An empty array holds no values.
        no(&t("attachments"), &c);
        yes(&f("attachments"), &c);
        yes(&t("service_lines.modifiers"), &c);
        // `exists: false` is decided on the whole path: one line has
        // modifiers, so they exist.
        no(&f("service_lines.modifiers"), &c);
        yes(&f("service_lines.units"), &c);
        // Missing or null, OR-ed within one key.
        let missing_or_null = |k: &str| json!({k: [null, {"exists": false}]});
        yes(&missing_or_null("payment_amount"), &c);
        yes(&missing_or_null("missing"), &c);
        no(&missing_or_null("total_charge"), &c);
    }

    #[test]
    fn exists_false_or_a_value() {
        let f = || json!({"status_code": [{"exists": false}, "65"]});
        yes(&f(), &json!({}));
        yes(&f(), &json!({"status_code": "65"}));
        no(&f(), &json!({"status_code": "20"}));
    }

    // --- paths and arrays ------------------------------------------------

    #[test]
    fn arrays_along_paths() {
        let c = claim();
        yes(&json!({"service_lines.status_code": ["20"]}), &c);
        yes(&json!({"service_lines.status_code": ["65"]}), &c);
        no(&json!({"service_lines.status_code": ["99"]}), &c);
        yes(&json!({"service_lines.modifiers": ["59"]}), &c);
        yes(
            &json!({"service_lines.procedure_code": [{"prefix": "HC:85"}]}),
            &c,
        );
        let nested = json!({"a": [[{"b": [1, [2, 3]]}], {"b": 4}]});
        yes(&json!({"a.b": [3]}), &nested);
        yes(&json!({"a.b": [4]}), &nested);
        no(&json!({"a.b": [5]}), &nested);
        // A root array is spread too.
        yes(&json!({"k": ["v"]}), &json!([{"k": "x"}, {"k": "v"}]));
        // Scalars along the path end it.
        no(&json!({"status_code.x": [{"exists": true}]}), &c);
    }

    #[test]
    fn path_syntax() {
        let c = claim();
        yes(&json!({"$.payer.id": ["12345"]}), &c);
        yes(&json!({"payer.id": ["12345"]}), &c);
        let dotted = json!({"provider": {"npi.id": "1234567890", "a\"b": 1, "x]": 2}, "a.b": 3});
        yes(&json!({"provider[\"npi.id\"]": ["1234567890"]}), &dotted);
        yes(&json!({"$.provider[\"npi.id\"]": ["1234567890"]}), &dotted);
        yes(
            &json!({"[\"provider\"][\"npi.id\"]": ["1234567890"]}),
            &dotted,
        );
        yes(&json!({"provider.[\"npi.id\"]": ["1234567890"]}), &dotted);
        yes(&json!({"provider[\"a\\\"b\"]": [1]}), &dotted);
        yes(&json!({"provider[\"x]\"]": [2]}), &dotted);
        yes(&json!({"$[\"a.b\"]": [3]}), &dotted);
        yes(&json!({"[\"a.b\"]": [3]}), &dotted);
        no(&json!({"a.b": [3]}), &dotted);
        yes(&json!({"[\"$status\"]": ["x"]}), &json!({"$status": "x"}));
        yes(&json!({"[\"\"]": ["empty"]}), &json!({"": "empty"}));
        assert_eq!(
            parse_path("a[\"b.c\"].d[\"e\"]").unwrap(),
            vec!["a", "b.c", "d", "e"]
        );
    }

    // --- combining -------------------------------------------------------

    #[test]
    fn and_across_keys_or_within_a_key() {
        let c = claim();
        yes(
            &json!({"status_category_code": ["F1"], "payer.id": ["12345"]}),
            &c,
        );
        no(
            &json!({"status_category_code": ["F1"], "payer.id": ["99999"]}),
            &c,
        );
        yes(
            &json!({"status_category_code": ["P3", {"prefix": "F"}]}),
            &c,
        );
        // Two spellings of one path are two keys, so both must match.
        let both =
            || json!({"claim_id": [{"prefix": "CLM-"}], "$.claim_id": [{"anything-but": "CLM-1"}]});
        no(&both(), &c);
        yes(&both(), &json!({"claim_id": "CLM-2"}));
    }

    #[test]
    fn empty_filter_matches_everything() {
        let f = filter(&json!({}));
        for object in [claim(), json!({}), json!(null), json!([1]), json!("x")] {
            assert!(f.matches(&object));
            let e = f.explain(&object);
            assert!(e.matched);
            assert!(e.checks.is_empty());
        }
    }

    #[test]
    fn or_groups_and_nesting() {
        let c = claim();
        let alternatives =
            || json!([{"payer.id": ["99999"]}, {"payer.name": [{"prefix": "ACME"}]}]);
        yes(&json!({"$or": alternatives()}), &c);
        yes(&json!({"status_code": ["65"], "$or": alternatives()}), &c);
        no(&json!({"status_code": ["20"], "$or": alternatives()}), &c);
        no(
            &json!({"$or": [{"payer.id": ["99999"]}, {"payer.name": ["OTHER"]}]}),
            &c,
        );
        let nested = json!({"$or": [
            {"status_code": ["1"]},
            {"$or": [{"status_code": ["2"]}, {"$or": [{"status_code": ["3"]}, {"claim_id": ["CLM-1"]}]}]}
        ]});
        yes(&nested.clone(), &c);
        no(&nested, &json!({"claim_id": "CLM-2"}));
        // `$or` alternatives may themselves carry several keys.
        yes(
            &json!({"$or": [
                {"status_code": ["65"], "payer.id": ["0"]},
                {"status_code": ["65"], "payer.id": ["12345"]}
            ]}),
            &c,
        );
    }

    // --- limits ----------------------------------------------------------

    fn nested_or(levels: usize) -> Value {
        let mut f = json!({"a": ["x"]});
        for _ in 0..levels {
            f = json!({"$or": [f, {"b": ["y"]}]});
        }
        f
    }

    #[test]
    fn or_depth_limit() {
        let deepest = filter(&nested_or(MAX_OR_DEPTH));
        assert!(deepest.matches(&json!({"a": "x"})));
        let e = parse_error(&nested_or(MAX_OR_DEPTH + 1));
        let expected_path = format!("filter{}", ".$or[0]".repeat(MAX_OR_DEPTH)) + ".$or";
        assert_eq!(e.path, expected_path);
        assert_eq!(
            e.reason,
            "`$or` is nested more than 8 levels deep; flatten the filter"
        );
    }

    #[test]
    fn condition_limit() {
        let values: Vec<Value> = (0..MAX_CONDITIONS).map(|i| json!(i.to_string())).collect();
        let f = filter(&json!({"status_code": values}));
        assert!(f.matches(&json!({"status_code": "999"})));

        let too_many: Vec<Value> = (0..=MAX_CONDITIONS).map(|i| json!(i)).collect();
        let e = parse_error(&json!({"status_code": too_many}));
        assert_eq!(e.path, "filter.status_code[1000]");
        assert_eq!(
            e.reason,
            "the filter has more than 1000 conditions; use fewer or split the route"
        );

        // Values listed in `anything-but` count too.
        let listed: Vec<Value> = (0..MAX_CONDITIONS).map(|i| json!(i)).collect();
        let e = parse_error(&json!({"status_code": [{"anything-but": listed}]}));
        assert_eq!(e.path, "filter.status_code[0].anything-but");

        // And so do conditions in every `$or` alternative.
        let half: Vec<Value> = (0..MAX_CONDITIONS / 2).map(|i| json!(i)).collect();
        let e = parse_error(&json!({"$or": [{"a": half}, {"b": half}], "c": [1]}));
        assert_eq!(e.path, "filter.c[0]");
    }

    // --- parse errors ----------------------------------------------------

    fn assert_error(f: &Value, path: &str, reason: &str) {
        let e = parse_error(f);
        assert_eq!(
            (e.path.as_str(), e.reason.as_str()),
            (path, reason),
            "for {f}"
        );
    }

    #[test]
    fn error_display() {
        let e = parse_error(&json!({"status_code": [{"prefx": "6"}]}));
        assert_eq!(
            e.to_string(),
            "`filter.status_code[0].prefx`: unknown operator `prefx`; use one of prefix, suffix, \
             equals-ignore-case, anything-but, numeric, exists, wildcard"
        );
    }

    #[test]
    fn errors_in_the_document_shape() {
        assert_error(
            &json!([]),
            "filter",
            "a filter must be a JSON object, found an array",
        );
        assert_error(
            &json!("x"),
            "filter",
            "a filter must be a JSON object, found a string",
        );
        assert_error(
            &json!(null),
            "filter",
            "a filter must be a JSON object, found null",
        );
        assert_error(
            &json!({"status_code": "65"}),
            "filter.status_code",
            "expected an array of conditions, found a string; wrap it: [\"65\"]",
        );
        assert_error(
            &json!({"line_count": 2}),
            "filter.line_count",
            "expected an array of conditions, found a number; wrap it: [2]",
        );
        assert_error(
            &json!({"payer": {"name": ["ACME HEALTH"]}}),
            "filter.payer",
            "expected an array of conditions, found an object; to match a nested field, \
             write its path as the key, e.g. `payer.name`",
        );
        assert_error(
            &json!({"status_code": {"prefix": "6"}}),
            "filter.status_code",
            "expected an array of conditions, found an operator object; wrap it: [{\"prefix\":\"6\"}]",
        );
        assert_error(
            &json!({"status_code": []}),
            "filter.status_code",
            "an empty array of conditions matches nothing; add at least one condition",
        );
        assert_error(
            &json!({"status_code": [["65", "20"]]}),
            "filter.status_code[0]",
            "a condition is a value or an operator object, not an array; list the values \
             directly in the key's array",
        );
    }

    #[test]
    fn errors_in_operator_objects() {
        assert_error(
            &json!({"status_code": ["65", {}]}),
            "filter.status_code[1]",
            "empty operator object; use one of prefix, suffix, equals-ignore-case, anything-but, \
             numeric, exists, wildcard",
        );
        assert_error(
            &json!({"status_code": [{"prefix": "6", "suffix": "5"}]}),
            "filter.status_code[0]",
            "an operator object has exactly one key, found 2 (`prefix`, `suffix`); give each \
             operator its own object",
        );
        assert_error(
            &json!({"status_code": ["65", {"prefx": "6"}]}),
            "filter.status_code[1].prefx",
            "unknown operator `prefx`; use one of prefix, suffix, equals-ignore-case, \
             anything-but, numeric, exists, wildcard",
        );
        assert_error(
            &json!({"status_code": [{"prefix": 6}]}),
            "filter.status_code[0].prefix",
            "`prefix` takes a string, found a number; write \"6\"",
        );
        assert_error(
            &json!({"status_code": [{"suffix": ["5"]}]}),
            "filter.status_code[0].suffix",
            "`suffix` takes a string, found an array",
        );
        assert_error(
            &json!({"payer.name": [{"equals-ignore-case": null}]}),
            "filter.payer.name[0].equals-ignore-case",
            "`equals-ignore-case` takes a string, found null",
        );
        assert_error(
            &json!({"claim_id": [{"wildcard": true}]}),
            "filter.claim_id[0].wildcard",
            "`wildcard` takes a string, found a boolean; write \"true\"",
        );
        assert_error(
            &json!({"claim_id": [{"wildcard": r"CLM\-*"}]}),
            "filter.claim_id[0].wildcard",
            r"in a wildcard a backslash must be followed by `*` or `\`; write `\\` for a backslash",
        );
        assert_error(
            &json!({"claim_id": [{"wildcard": "CLM\\"}]}),
            "filter.claim_id[0].wildcard",
            r"in a wildcard a backslash must be followed by `*` or `\`; write `\\` for a backslash",
        );
        assert_error(
            &json!({"patient": [{"exists": "yes"}]}),
            "filter.patient[0].exists",
            "`exists` takes true or false, found a string",
        );
    }

    #[test]
    fn errors_in_anything_but() {
        assert_error(
            &json!({"s": [{"anything-but": []}]}),
            "filter.s[0].anything-but",
            "`anything-but` needs at least one value to exclude",
        );
        assert_error(
            &json!({"s": [{"anything-but": ["a", ["b"]]}]}),
            "filter.s[0].anything-but[1]",
            "`anything-but` lists cannot be nested; put every value in one array",
        );
        assert_error(
            &json!({"s": [{"anything-but": {"numeric": [">", 0]}}]}),
            "filter.s[0].anything-but.numeric",
            "`numeric` cannot be used inside `anything-but`; use one of prefix, suffix, \
             equals-ignore-case, wildcard",
        );
        assert_error(
            &json!({"s": [{"anything-but": ["a", {"exists": true}]}]}),
            "filter.s[0].anything-but[1].exists",
            "`exists` cannot be used inside `anything-but`; use one of prefix, suffix, \
             equals-ignore-case, wildcard",
        );
        assert_error(
            &json!({"s": [{"anything-but": {"prefx": "a"}}]}),
            "filter.s[0].anything-but.prefx",
            "unknown operator `prefx` inside `anything-but`; use one of prefix, suffix, \
             equals-ignore-case, wildcard",
        );
        assert_error(
            &json!({"s": [{"anything-but": {}}]}),
            "filter.s[0].anything-but",
            "empty operator object; use one of prefix, suffix, equals-ignore-case, wildcard",
        );
        assert_error(
            &json!({"s": [{"anything-but": {"prefix": 1}}]}),
            "filter.s[0].anything-but.prefix",
            "`prefix` takes a string, found a number; write \"1\"",
        );
    }

    #[test]
    fn errors_in_numeric() {
        let at = "filter.total_charge[1].numeric";
        let spec = |s: Value| json!({"total_charge": ["0", {"numeric": s}]});
        assert_error(
            &spec(json!(">0")),
            at,
            "`numeric` takes an array such as [\">=\", 0] or [\">\", 0, \"<=\", 100], found a string",
        );
        assert_error(
            &spec(json!([">"])),
            at,
            "`numeric` takes one or two comparisons, such as [\">=\", 0] or [\">\", 0, \"<=\", 100]; \
             found 1 items",
        );
        assert_error(
            &spec(json!([">", 0, "<"])),
            at,
            "`numeric` takes one or two comparisons, such as [\">=\", 0] or [\">\", 0, \"<=\", 100]; \
             found 3 items",
        );
        assert_error(
            &spec(json!(["=>", 0])),
            "filter.total_charge[1].numeric[0]",
            "unknown comparison `=>`; use one of <, <=, =, >=, >",
        );
        assert_error(
            &spec(json!([0, ">"])),
            "filter.total_charge[1].numeric[0]",
            "expected a comparison (<, <=, =, >=, >), found a number",
        );
        assert_error(
            &spec(json!([">", 0, "<=", "100"])),
            "filter.total_charge[1].numeric[3]",
            "expected a number after `<=`, found a string; write 100 without quotes",
        );
        assert_error(
            &spec(json!([">", null])),
            "filter.total_charge[1].numeric[1]",
            "expected a number after `>`, found null",
        );
        let order = "with two comparisons, the first must be a lower bound (`>` or `>=`) and the \
                     second an upper bound (`<` or `<=`)";
        assert_error(&spec(json!(["<", 100, ">", 0])), at, order);
        assert_error(&spec(json!(["=", 1, "<", 5])), at, order);
        assert_error(&spec(json!([">", 1, ">", 5])), at, order);
        assert_error(
            &spec(json!([">", 100, "<", 0])),
            at,
            "the lower bound 100 must be below the upper bound 0",
        );
        assert_error(
            &spec(json!([">=", 5, "<=", 5.0])),
            at,
            "the lower bound 5 must be below the upper bound 5.0; to match one number write [\"=\", 5]",
        );
    }

    #[test]
    fn errors_in_or() {
        assert_error(
            &json!({"$or": {"a": ["x"]}}),
            "filter.$or",
            "`$or` takes an array of at least two filters, found an object",
        );
        assert_error(
            &json!({"$or": []}),
            "filter.$or",
            "`$or` takes an array of at least two filters, found none",
        );
        assert_error(
            &json!({"$or": [{"a": ["x"]}]}),
            "filter.$or",
            "`$or` takes at least two filters, found one; move its keys up and drop the `$or`",
        );
        assert_error(
            &json!({"$or": [{"a": ["x"]}, "b"]}),
            "filter.$or[1]",
            "each `$or` alternative must be a filter object, found a string",
        );
        assert_error(
            &json!({"$or": [{"a": ["x"]}, {}]}),
            "filter.$or[1]",
            "an empty filter inside `$or` matches every object; remove it or the whole `$or`",
        );
        assert_error(
            &json!({"$or": [{"a": ["x"]}, {"b": [{"numeric": [">", "0"]}]}]}),
            "filter.$or[1].b[0].numeric[1]",
            "expected a number after `>`, found a string; write 0 without quotes",
        );
    }

    #[test]
    fn errors_in_paths() {
        let cases = [
            (
                "",
                "filter.",
                "empty path; name a field, e.g. `status_code`",
            ),
            (
                "$",
                "filter.$",
                "path `$` names the whole object; name a field, e.g. `$.status_code`",
            ),
            (
                "$.",
                "filter.$.",
                "path `$.` names the whole object; name a field, e.g. `$.status_code`",
            ),
            (
                "status..code",
                "filter.status..code",
                "empty segment in path `status..code`; every segment between dots needs a name",
            ),
            (
                ".status",
                "filter..status",
                "empty segment in path `.status`; every segment between dots needs a name",
            ),
            (
                "$..status",
                "filter.$..status",
                "empty segment in path `$..status`; every segment between dots needs a name",
            ),
            (
                "status.",
                "filter.status.",
                "path `status.` ends with a dot; remove it or add a field name",
            ),
            (
                "$and",
                "filter.$and",
                "keys starting with `$` are reserved for `$or` and `$.` paths; to name a field \
                 `$and`, quote it: [\"$and\"]",
            ),
            (
                "provider[npi]",
                "filter.provider[npi]",
                "a `[` in a path opens a quoted name, as in `provider[\"npi.id\"]`; found none in \
                 `provider[npi]`",
            ),
            (
                "provider[\"npi.id",
                "filter.provider[\"npi.id",
                "unterminated quoted name in path `provider[\"npi.id`; close it with `\"]`",
            ),
            (
                "provider[\"npi.id\"",
                "filter.provider[\"npi.id\"",
                "expected `]` after the quoted name in path `provider[\"npi.id\"`",
            ),
            (
                "provider[\"npi\"]id",
                "filter.provider[\"npi\"]id",
                "expected `.` or `[` after `]` in path `provider[\"npi\"]id`",
            ),
            (
                "provider[\"a\\qb\"]",
                "filter.provider[\"a\\qb\"]",
                "the quoted name in path `provider[\"a\\qb\"]` is not a valid JSON string",
            ),
            (
                "provider]",
                "filter.provider]",
                "unexpected `]` or `\"` in path `provider]`; write a name that holds them as a \
                 quoted segment, e.g. `provider[\"npi.id\"]`",
            ),
            (
                "provider.[\"id\"].",
                "filter.provider.[\"id\"].",
                "path `provider.[\"id\"].` ends with a dot; remove it or add a field name",
            ),
        ];
        for (key, path, reason) in cases {
            assert_error(&json!({key: ["x"]}), path, reason);
        }
    }

    // --- explanations ----------------------------------------------------

    fn reasons(f: &Value, object: &Value) -> Vec<String> {
        filter(f)
            .explain(object)
            .checks
            .into_iter()
            .map(|c| c.reason)
            .collect()
    }

    #[test]
    fn explanation_reasons() {
        let c = claim();
        assert_eq!(
            reasons(&json!({"status_category_code": [{"prefix": "F"}]}), &c),
            ["`F1` has prefix `F`"]
        );
        assert_eq!(
            reasons(&json!({"status.code": ["65"]}), &c),
            ["no value at `status.code`"]
        );
        assert_eq!(
            reasons(
                &json!({"s": [{"anything-but": ["F1", {"prefix": "A"}]}]}),
                &json!({"s": "P3"})
            ),
            ["`P3` is none of [\"F1\", prefix `A`]"]
        );
        assert_eq!(
            reasons(
                &json!({"s": [{"anything-but": ["F1", {"prefix": "A"}]}]}),
                &json!({"s": "A2"})
            ),
            ["`A2` is one of [\"F1\", prefix `A`]"]
        );
        assert_eq!(
            reasons(&json!({"status_code": [65]}), &c),
            ["`65` is a string, not the number 65"]
        );
        assert_eq!(
            reasons(&json!({"line_count": ["2"]}), &c),
            ["`2` is a number, not the string \"2\""]
        );
        assert_eq!(
            reasons(
                &json!({"total_charge": [{"numeric": [">", 0, "<=", 100]}]}),
                &c
            ),
            ["`120.50` is not > 0 and <= 100"]
        );
        assert_eq!(
            reasons(&json!({"total_charge": [{"numeric": [">", 0]}]}), &c),
            ["`120.50` is > 0"]
        );
        assert_eq!(
            reasons(&json!({"claim_id": [{"numeric": [">", 0]}]}), &c),
            ["`CLM-1` is not a number"]
        );
        assert_eq!(
            reasons(
                &json!({"payer.name": [{"equals-ignore-case": "acme health"}]}),
                &c
            ),
            ["`ACME HEALTH` is `acme health` ignoring case"]
        );
        assert_eq!(
            reasons(&json!({"payment_amount": [{"exists": false}]}), &c),
            ["`null` is present, so `exists: false` fails"]
        );
        assert_eq!(
            reasons(&json!({"missing": [{"exists": false}]}), &c),
            ["no value at `missing`, as `exists: false` asks"]
        );
        assert_eq!(
            reasons(&json!({"payer": ["ACME HEALTH"]}), &c),
            ["an object was found, and only `exists` tests objects"]
        );
        assert_eq!(
            reasons(
                &json!({"service_lines.status_code": ["99", {"suffix": "7"}]}),
                &c
            ),
            [
                "`65` is not \"99\"; `65` does not have suffix `7`; `20` is not \"99\"; \
              `20` does not have suffix `7`"
            ]
        );
        assert_eq!(
            reasons(&json!({"line_count": [{"prefix": "2"}]}), &c),
            ["`2` is not a string"]
        );
        assert_eq!(
            reasons(&json!({"claim_id": [{"wildcard": "CLM-*"}]}), &c),
            ["`CLM-1` matches wildcard `CLM-*`"]
        );
        let many: Vec<Value> = (0..10).map(|i| json!(i.to_string())).collect();
        let long = reasons(&json!({"status_code": many}), &c);
        assert!(long[0].ends_with("; and 4 more"), "{}", long[0]);
    }

    #[test]
    fn explanation_of_or_and_serialized_shape() {
        let c = claim();
        let f = filter(&json!({
            "status_code": ["65"],
            "$or": [{"payer.id": ["99999"]}, {"payer.name": [{"prefix": "ACME"}]}],
            "claim_id": ["CLM-2"]
        }));
        let e = f.explain(&c);
        assert!(!e.matched);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "matched": false,
                "checks": [
                    {"path": "status_code", "matched": true, "reason": "`65` equals \"65\""},
                    {"path": "$or", "matched": true, "reason": "matched by `$or[1]`", "any_of": [
                        {"matched": false, "checks": [
                            {"path": "payer.id", "matched": false, "reason": "`12345` is not \"99999\""}
                        ]},
                        {"matched": true, "checks": [
                            {"path": "payer.name", "matched": true, "reason": "`ACME HEALTH` has prefix `ACME`"}
                        ]}
                    ]},
                    {"path": "claim_id", "matched": false, "reason": "`CLM-1` is not \"CLM-2\""}
                ]
            })
        );
        let none = filter(&json!({"$or": [{"a": ["x"]}, {"b": ["y"]}, {"c": ["z"]}]})).explain(&c);
        assert_eq!(none.checks[0].reason, "none of the 3 alternatives matched");
    }

    // --- serde -----------------------------------------------------------

    #[test]
    fn serde_round_trip_keeps_the_document() {
        let text = r#"{"status_code":["65",{"prefix":"2"}],"$or":[{"a":[1]},{"b":[{"exists":false}]}],"$.total_charge":[{"numeric":[">",0,"<=",100.5]}]}"#;
        let f: Filter = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), text);
        assert_eq!(f.as_json(), &serde_json::from_str::<Value>(text).unwrap());
        let again: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(again, f);
        assert!(again.matches(&json!({"status_code": "20", "a": 1, "total_charge": "99"})));
    }

    #[test]
    fn deserialize_reports_the_parse_error() {
        #[derive(Debug, Deserialize)]
        struct Route {
            #[serde(rename = "filter")]
            _filter: Filter,
        }
        let err = serde_json::from_str::<Route>(
            r#"{"filter": {"status_code": [{"numeric": [">", 5, "<", 1]}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "`filter.status_code[0].numeric`: the lower bound 5 must be below the upper bound 1"
            ),
            "{err}"
        );
    }

    // --- matches and explain agree ---------------------------------------

    /// A small deterministic generator, so the cases are the same every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            usize::try_from(self.0 % n as u64).unwrap()
        }

        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())].clone()
        }
    }

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        let scalars = [
            json!("F1"),
            json!("f1"),
            json!("P3"),
            json!("65"),
            json!("120.50"),
            json!(""),
            json!(0),
            json!(5),
            json!(5.0),
            json!(100),
            json!(-1),
            json!(true),
            json!(null),
        ];
        match rng.below(if depth == 0 { 1 } else { 4 }) {
            0 | 1 => rng.pick(&scalars),
            2 => {
                let len = rng.below(3);
                Value::Array((0..len).map(|_| random_value(rng, depth - 1)).collect())
            }
            _ => random_object(rng, depth - 1),
        }
    }

    fn random_object(rng: &mut Rng, depth: usize) -> Value {
        let mut map = Map::new();
        for key in ["a", "b", "c"] {
            if rng.below(3) > 0 {
                map.insert(key.to_string(), random_value(rng, depth));
            }
        }
        Value::Object(map)
    }

    fn random_filter(rng: &mut Rng, depth: usize) -> Value {
        let paths = ["a", "b", "c", "a.b", "$.b.c", "a.a.c", "c[\"a\"]"];
        let conditions = [
            json!("F1"),
            json!(5),
            json!(null),
            json!(true),
            json!({"prefix": "F"}),
            json!({"suffix": "0"}),
            json!({"equals-ignore-case": "f1"}),
            json!({"wildcard": "*5*"}),
            json!({"anything-but": "F1"}),
            json!({"anything-but": [5, {"prefix": "P"}]}),
            json!({"numeric": [">", 0]}),
            json!({"numeric": [">=", 5, "<", 100]}),
            json!({"numeric": ["=", 120.5]}),
            json!({"exists": true}),
            json!({"exists": false}),
        ];
        let mut map = Map::new();
        for _ in 0..=rng.below(3) {
            let count = 1 + rng.below(3);
            let picked: Vec<Value> = (0..count).map(|_| rng.pick(&conditions)).collect();
            map.insert(rng.pick(&paths).to_string(), Value::Array(picked));
        }
        if depth > 0 && rng.below(3) == 0 {
            let alternatives = (0..2 + rng.below(2))
                .map(|_| random_filter(rng, depth - 1))
                .collect();
            map.insert("$or".to_string(), Value::Array(alternatives));
        }
        Value::Object(map)
    }

    /// What the routing engine relies on when it decodes only the fields a
    /// filter reads.
    #[test]
    fn an_object_cut_to_the_fields_read_gets_the_same_verdict() {
        let mut rng = Rng(0x5EED_1234_ABCD_0002);
        let objects: Vec<Map<String, Value>> = (0..60)
            .filter_map(|_| match random_object(&mut rng, 3) {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect();
        assert!(objects.len() > 30, "{} objects", objects.len());
        let mut compared = 0;
        for _ in 0..300 {
            let f = filter(&random_filter(&mut rng, 2));
            let fields = f.top_level_fields();
            for object in &objects {
                let cut: Map<String, Value> = object
                    .iter()
                    .filter(|(name, _)| fields.contains(name.as_str()))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                let (whole, cut) = (Value::Object(object.clone()), Value::Object(cut));
                assert_eq!(
                    f.matches(&whole),
                    f.matches(&cut),
                    "filter {} (fields {fields:?}) on {whole}",
                    f.as_json()
                );
                compared += 1;
            }
        }
        assert!(compared > 9000);
        let nested = filter(&json!({
            "a.b": ["x"],
            "$.c": [{"exists": true}],
            "$or": [{"d[\"e.f\"]": ["y"]}, {"$or": [{"g": ["z"]}, {"a": ["w"]}]}]
        }));
        assert_eq!(
            nested.top_level_fields().iter().collect::<Vec<_>>(),
            ["a", "c", "d", "g"]
        );
        assert!(filter(&json!({})).top_level_fields().is_empty());
    }

    #[test]
    fn matches_agrees_with_explain() {
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let objects: Vec<Value> = (0..60).map(|_| random_object(&mut rng, 3)).collect();
        let mut agreed = 0;
        let mut matched = 0;
        for _ in 0..300 {
            let f = filter(&random_filter(&mut rng, 2));
            for object in &objects {
                let verdict = f.matches(object);
                let explanation = f.explain(object);
                assert_eq!(
                    verdict,
                    explanation.matched,
                    "filter {} on {object}: {explanation:#?}",
                    f.as_json()
                );
                assert!(explanation.checks.iter().all(|c| !c.reason.is_empty()));
                agreed += 1;
                matched += usize::from(verdict);
            }
        }
        assert_eq!(agreed, 18_000);
        // The cases are only worth something if both verdicts occur often.
        assert!(
            matched > 1000 && agreed - matched > 1000,
            "{matched} of {agreed} matched"
        );

        // And the hand-written claim cases.
        let c = claim();
        for f in [
            json!({}),
            json!({"service_lines.status_code": [{"anything-but": "65"}]}),
            json!({"service_lines.modifiers": [{"exists": false}, "59"]}),
            json!({"payer": [{"exists": true}], "patient": [null]}),
            json!({"$or": [{"missing": [{"exists": false}]}, {"x": ["y"]}]}),
        ] {
            let f = filter(&f);
            assert_eq!(f.matches(&c), f.explain(&c).matched, "{}", f.as_json());
        }
    }
}
