//! A small, dependency-free parser for X12 005010 277 transactions: the claim
//! status response (005010X212) and the claim acknowledgment 277CA
//! (005010X214).
//!
//! It runs inside a wasm32-wasip2 plugin, so it only uses `std` and does no
//! I/O. It reads the interchange envelope strictly (a truncated or mismatched
//! envelope is an error, because a half-delivered file must not be mistaken
//! for a complete one), but within a transaction set it only interprets the
//! segments it needs and skips everything else.
//!
//! Positions in error messages are 1-based segment numbers counted from the
//! first `ISA` of the input, so they can be found by counting terminators.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A party named by an `NM1` segment (schema record `Party`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Party {
    /// Organization name (NM103), or `LAST, FIRST` for a person (NM102 = 1).
    pub name: String,
    /// NM108, e.g. `PI` payer id, `XX` NPI, `MI` member id.
    pub id_qualifier: Option<String>,
    /// NM109.
    pub id: Option<String>,
}

/// A service line (loop 2220D/2220E) and its status (schema record
/// `ServiceLineStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceLineStatus {
    /// SVC01 as `qualifier:code`, e.g. `HC:99203` (always joined with `:`,
    /// whatever component separator the interchange declared).
    pub procedure_code: String,
    /// SVC02, the line charge, as a decimal string with two fraction digits.
    pub charge: Option<String>,
    /// SVC03, the line payment, as a decimal string with two fraction digits.
    pub payment: Option<String>,
    /// STC01-1 of the first `STC` after the `SVC`.
    pub status_category_code: Option<String>,
    /// STC01-2 of the first `STC` after the `SVC`.
    pub status_code: Option<String>,
}

/// One claim-level status: an `STC` of loop 2200D/2200E (schema record
/// `switchyard.claim.StatusChanged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimStatus {
    /// TRN02 of the claim loop (the provider's patient control number).
    pub claim_id: String,
    /// REF*1K, the payer's claim control number.
    pub payer_claim_control_number: Option<String>,
    /// REF*EJ, the patient account number.
    pub patient_account_number: Option<String>,
    /// NM1*PR of the information source level (HL 20).
    pub payer: Party,
    /// NM1*1P (277) or NM1*85 (277CA) of the provider level (HL 19).
    pub provider: Party,
    /// The dependent (NM1*QC) when present, else the subscriber (NM1*IL).
    pub patient: Option<Party>,
    /// STC01-1, e.g. `F0`, `P3`, `A2`.
    pub status_category_code: String,
    /// STC01-2.
    pub status_code: String,
    /// STC01-3, when given.
    pub entity_code: Option<String>,
    /// STC02 as `YYYY-MM-DD`.
    pub status_effective_date: Option<String>,
    /// STC04, the billed amount, as a decimal string with two fraction digits.
    pub total_charge: Option<String>,
    /// STC05, the paid amount, as a decimal string with two fraction digits.
    pub payment_amount: Option<String>,
    /// Claim-level DTP*472 start (or single date), `YYYY-MM-DD`.
    pub service_date_from: Option<String>,
    /// Claim-level DTP*472 end; equal to the start for a single date.
    pub service_date_to: Option<String>,
    /// Service lines reported under the claim (empty when none).
    pub service_lines: Vec<ServiceLineStatus>,
    /// ISA13 of the interchange that carried the status.
    pub interchange_control_number: String,
    /// GS08, e.g. `005010X212` or `005010X214`.
    pub transaction_set: String,
}

/// Why an input could not be read as a 277 interchange.
///
/// `segment` fields are 1-based positions counted from the first `ISA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X12Error {
    /// The input is empty or only whitespace (and perhaps a byte-order mark).
    Empty,
    /// The input does not start with `ISA`.
    NotAnInterchange {
        /// The first characters found instead.
        found: String,
    },
    /// The fixed-width `ISA` segment is malformed, so its delimiters cannot
    /// be trusted.
    InvalidIsa {
        /// Position of the `ISA` segment.
        segment: usize,
        /// What is wrong.
        detail: String,
    },
    /// The input ended before the `IEA` closing the interchange.
    Truncated {
        /// Position of the last complete segment.
        after_segment: usize,
        /// Its segment id.
        after_id: String,
    },
    /// The input ended inside a segment (no segment terminator).
    Unterminated {
        /// Position of the unterminated segment.
        segment: usize,
        /// Its segment id, as far as it was read.
        id: String,
        /// The terminator declared in the `ISA`.
        terminator: char,
    },
    /// The interchange carries a transaction set other than 277.
    NotClaimStatus {
        /// Position of the `ST` segment.
        segment: usize,
        /// ST01 as found, e.g. `276` or `835`.
        found: String,
    },
    /// The envelope or loop structure is broken (mismatched control numbers
    /// or counts, segments out of place, missing parties...).
    Structure {
        /// Position of the offending segment.
        segment: usize,
        /// Its segment id.
        id: String,
        /// What is wrong.
        detail: String,
    },
    /// An element holds a value that cannot be interpreted.
    InvalidElement {
        /// Position of the segment.
        segment: usize,
        /// Its segment id.
        id: String,
        /// The element reference, e.g. `STC04`.
        element: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl fmt::Display for X12Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "input is empty: expected an X12 interchange starting with `ISA`"
            ),
            Self::NotAnInterchange { found } => write!(
                f,
                "input is not an X12 interchange: expected `ISA` at the start, found `{found}`"
            ),
            Self::InvalidIsa { segment, detail } => {
                write!(f, "malformed `ISA` at segment {segment}: {detail}")
            }
            Self::Truncated {
                after_segment,
                after_id,
            } => write!(
                f,
                "interchange is truncated: no `IEA` segment after segment {after_segment} (`{after_id}`)"
            ),
            Self::Unterminated {
                segment,
                id,
                terminator,
            } => write!(
                f,
                "interchange is truncated: segment {segment} (`{id}`) has no segment terminator `{}`",
                terminator.escape_debug()
            ),
            Self::NotClaimStatus { segment, found } => write!(
                f,
                "expected a 277 claim status transaction set, but segment {segment} is `ST` {found} ({})",
                describe_transaction(found)
            ),
            Self::Structure {
                segment,
                id,
                detail,
            } => write!(f, "{detail} at segment {segment} (`{id}`)"),
            Self::InvalidElement {
                segment,
                id,
                element,
                value,
                detail,
            } => write!(
                f,
                "invalid {element} `{value}` at segment {segment} (`{id}`): {detail}"
            ),
        }
    }
}

impl std::error::Error for X12Error {}

/// Names a transaction set so a refusal says what was received instead.
fn describe_transaction(code: &str) -> &'static str {
    match code {
        "270" => "an eligibility inquiry",
        "271" => "an eligibility response",
        "276" => "a claim status request",
        "278" => "a services review",
        "820" => "a premium payment",
        "834" => "a benefit enrollment",
        "835" => "a claim payment/remittance advice",
        "837" => "a health care claim",
        "997" => "a functional acknowledgment",
        "999" => "an implementation acknowledgment",
        _ => "not a transaction set this parser reads",
    }
}

/// Parses every 277 transaction set of one or more back-to-back
/// interchanges into one [`ClaimStatus`] per claim-level `STC` segment.
///
/// Delimiters are taken from each `ISA`. Whitespace (including newlines)
/// between segments and a leading UTF-8 byte-order mark are tolerated.
/// Statuses at the information source, receiver and provider levels are
/// skipped; service lines are attached to their claim.
///
/// # Errors
///
/// Returns an [`X12Error`] if the input is not a complete, well-enveloped
/// X12 interchange, carries a transaction set other than 277, or holds a
/// claim whose required data (trace number, status, payer, provider) is
/// missing or malformed.
pub fn parse_277(text: &str) -> Result<Vec<ClaimStatus>, X12Error> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pos = text.len() - body.trim_start().len();
    if pos == text.len() {
        return Err(X12Error::Empty);
    }
    if !text[pos..].starts_with("ISA") {
        return Err(X12Error::NotAnInterchange {
            found: preview(&text[pos..]),
        });
    }
    let mut statuses = Vec::new();
    let mut last_segment = 0;
    loop {
        let (end, iea_segment) = parse_interchange(text, pos, last_segment, &mut statuses)?;
        last_segment = iea_segment;
        let rest = &text[end..];
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            return Ok(statuses);
        }
        if !trimmed.starts_with("ISA") {
            return Err(X12Error::Structure {
                segment: iea_segment,
                id: "IEA".to_owned(),
                detail: format!(
                    "unexpected data `{}` after the interchange ends",
                    preview(trimmed)
                ),
            });
        }
        pos = end + (rest.len() - trimmed.len());
    }
}

/// First few characters of `text`, escaped, for error messages.
fn preview(text: &str) -> String {
    text.chars().take(16).flat_map(char::escape_debug).collect()
}

/// The delimiters an `ISA` declares. All are ASCII (checked), so splitting
/// a `&str` on them never cuts a multi-byte character.
#[derive(Debug, Clone, Copy)]
struct Delimiters {
    element: u8,
    component: u8,
    segment: u8,
}

/// Byte offsets of the 16 element separators in the fixed-width `ISA`.
const ISA_SEPARATORS: [usize; 16] = [
    3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103,
];
/// Length of the `ISA` including its segment terminator.
const ISA_LEN: usize = 106;

/// Reads the fixed-width `ISA` at `start`, returning its delimiters and
/// ISA13. `segment` is the position to report errors at.
fn read_isa(text: &str, start: usize, segment: usize) -> Result<(Delimiters, String), X12Error> {
    let invalid = |detail: String| X12Error::InvalidIsa { segment, detail };
    let bytes = &text.as_bytes()[start..];
    if bytes.len() < ISA_LEN {
        // Too short to hold the delimiters: there is nothing else to go on.
        return Err(invalid(format!(
            "the input ends {} characters into the `ISA`, which must be {ISA_LEN} characters long",
            bytes.len()
        )));
    }
    let isa = &bytes[..ISA_LEN];
    if let Some(at) = isa.iter().position(|b| !b.is_ascii()) {
        return Err(invalid(format!(
            "non-ASCII character at position {at}; the `ISA` must be {ISA_LEN} ASCII characters"
        )));
    }
    let element = isa[3];
    if element.is_ascii_alphanumeric() || element.is_ascii_whitespace() {
        return Err(invalid(format!(
            "`{}` at position 3 cannot be an element separator",
            (element as char).escape_debug()
        )));
    }
    for (i, &expected_at) in ISA_SEPARATORS.iter().enumerate() {
        // Any extra or missing separator shifts the following ones; find
        // the first place this happens to point at the broken element.
        let found_at = isa[..ISA_LEN - 1]
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == element)
            .nth(i)
            .map(|(at, _)| at);
        if found_at != Some(expected_at) {
            return Err(invalid(format!(
                "ISA{i:02} is not its fixed width: expected element separator `{}` at position \
                 {expected_at}, found `{}` (the `ISA` must be exactly {ISA_LEN} characters)",
                element as char,
                (isa[expected_at] as char).escape_debug()
            )));
        }
    }
    let component = isa[104];
    let terminator = isa[105];
    if component.is_ascii_alphanumeric() || component.is_ascii_whitespace() || component == element
    {
        return Err(invalid(format!(
            "ISA16 `{}` cannot be a component separator",
            (component as char).escape_debug()
        )));
    }
    if terminator.is_ascii_alphanumeric() || terminator == element || terminator == component {
        return Err(invalid(format!(
            "`{}` at position 105 cannot be a segment terminator (the `ISA` must be exactly \
             {ISA_LEN} characters)",
            (terminator as char).escape_debug()
        )));
    }
    // Checked ASCII above, so this slice is on character boundaries.
    let isa_text = &text[start..start + ISA_LEN - 1];
    let control = isa_text
        .split(element as char)
        .nth(13)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if control.is_empty() {
        return Err(invalid(
            "ISA13 (interchange control number) is blank".to_owned(),
        ));
    }
    Ok((
        Delimiters {
            element,
            component,
            segment: terminator,
        },
        control,
    ))
}

/// One segment, split into elements (element 0 is the segment id).
#[derive(Debug, Clone)]
struct Segment<'a> {
    index: usize,
    elements: Vec<&'a str>,
}

impl<'a> Segment<'a> {
    fn id(&self) -> &'a str {
        self.elements[0]
    }

    /// Element `n` trimmed, or `""` when absent.
    fn get(&self, n: usize) -> &'a str {
        self.elements.get(n).map_or("", |e| e.trim())
    }

    /// Element `n` trimmed, or `None` when absent or blank.
    fn opt(&self, n: usize) -> Option<&'a str> {
        Some(self.get(n)).filter(|e| !e.is_empty())
    }

    fn structure(&self, detail: String) -> X12Error {
        X12Error::Structure {
            segment: self.index,
            id: self.id().to_owned(),
            detail,
        }
    }

    fn invalid(&self, n: usize, detail: &str) -> X12Error {
        X12Error::InvalidElement {
            segment: self.index,
            id: self.id().to_owned(),
            element: format!("{}{n:02}", self.id()),
            value: self.get(n).to_owned(),
            detail: detail.to_owned(),
        }
    }
}

/// Splits the text after an `ISA` into segments.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    next_index: usize,
    delims: Delimiters,
}

impl<'a> Reader<'a> {
    fn next_segment(&mut self) -> Result<Option<Segment<'a>>, X12Error> {
        loop {
            let rest = &self.text[self.pos..];
            let Some(len) = rest.bytes().position(|b| b == self.delims.segment) else {
                let raw = rest.trim();
                if raw.is_empty() {
                    self.pos = self.text.len();
                    return Ok(None);
                }
                return Err(X12Error::Unterminated {
                    segment: self.next_index,
                    id: preview(raw.split(self.delims.element as char).next().unwrap_or(raw)),
                    terminator: self.delims.segment as char,
                });
            };
            self.pos += len + 1;
            let raw = rest[..len].trim();
            if raw.is_empty() {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            let elements: Vec<&'a str> = raw.split(self.delims.element as char).collect();
            let id = elements[0];
            let valid_id = (2..=3).contains(&id.len())
                && id.starts_with(|c: char| c.is_ascii_uppercase())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !valid_id {
                return Err(X12Error::Structure {
                    segment: index,
                    id: preview(id),
                    detail: format!("`{}` is not a valid segment id", preview(id)),
                });
            }
            return Ok(Some(Segment { index, elements }));
        }
    }
}

/// What the enclosing `GS` says about the transaction sets in it.
struct Group<'a> {
    control: &'a str,
    version: &'a str,
    sets: usize,
}

/// Parses the interchange whose `ISA` starts at byte `start`; `before` is
/// the number of segments already read. Returns the byte offset after the
/// `IEA` terminator and the `IEA`'s position.
fn parse_interchange(
    text: &str,
    start: usize,
    before: usize,
    out: &mut Vec<ClaimStatus>,
) -> Result<(usize, usize), X12Error> {
    let isa_index = before + 1;
    let (delims, control) = read_isa(text, start, isa_index)?;
    let mut reader = Reader {
        text,
        pos: start + ISA_LEN,
        next_index: isa_index + 1,
        delims,
    };
    let mut last = (isa_index, "ISA");
    let mut groups = 0usize;
    let mut group: Option<Group<'_>> = None;
    let mut transaction: Option<Vec<Segment<'_>>> = None;
    loop {
        let Some(seg) = reader.next_segment()? else {
            return Err(X12Error::Truncated {
                after_segment: last.0,
                after_id: last.1.to_owned(),
            });
        };
        last = (seg.index, seg.id());
        match seg.id() {
            "ISA" => {
                return Err(seg.structure(format!(
                    "`ISA` before the `IEA` closing interchange {control}"
                )));
            }
            "IEA" => {
                if let Some(open) = &transaction {
                    return Err(seg.structure(format!(
                        "`IEA` while transaction set {} has no `SE`",
                        open[0].get(2)
                    )));
                }
                if let Some(open) = &group {
                    return Err(seg.structure(format!(
                        "`IEA` while functional group {} has no `GE`",
                        open.control
                    )));
                }
                if seg.get(2) != control {
                    return Err(seg.invalid(2, &format!("does not match ISA13 `{control}`")));
                }
                if seg.get(1).parse::<usize>().ok() != Some(groups) {
                    return Err(seg.invalid(
                        1,
                        &format!("the interchange has {groups} functional group(s)"),
                    ));
                }
                return Ok((reader.pos, seg.index));
            }
            "GS" => {
                if transaction.is_some() || group.is_some() {
                    return Err(seg.structure(
                        "`GS` before the previous group or transaction set was closed".to_owned(),
                    ));
                }
                groups += 1;
                group = Some(Group {
                    control: seg.get(6),
                    version: seg.get(8),
                    sets: 0,
                });
            }
            "GE" => {
                if transaction.is_some() {
                    return Err(seg.structure("`GE` before `SE`".to_owned()));
                }
                let Some(open) = group.take() else {
                    return Err(seg.structure("`GE` without a `GS`".to_owned()));
                };
                if seg.get(2) != open.control {
                    return Err(seg.invalid(2, &format!("does not match GS06 `{}`", open.control)));
                }
                if seg.get(1).parse::<usize>().ok() != Some(open.sets) {
                    return Err(seg.invalid(
                        1,
                        &format!("the group has {} transaction set(s)", open.sets),
                    ));
                }
            }
            "ST" => {
                if transaction.is_some() {
                    return Err(seg.structure("`ST` before the previous `SE`".to_owned()));
                }
                let Some(open) = group.as_mut() else {
                    return Err(seg.structure("`ST` outside a functional group".to_owned()));
                };
                if seg.get(1) != "277" {
                    return Err(X12Error::NotClaimStatus {
                        segment: seg.index,
                        found: seg.get(1).to_owned(),
                    });
                }
                open.sets += 1;
                transaction = Some(vec![seg]);
            }
            "SE" => {
                let Some(mut segments) = transaction.take() else {
                    return Err(seg.structure("`SE` without an `ST`".to_owned()));
                };
                let st_control = segments[0].get(2);
                if seg.get(2) != st_control {
                    return Err(seg.invalid(2, &format!("does not match ST02 `{st_control}`")));
                }
                let count = segments.len() + 1;
                if seg.get(1).parse::<usize>().ok() != Some(count) {
                    return Err(
                        seg.invalid(1, &format!("the transaction set has {count} segments"))
                    );
                }
                segments.push(seg);
                let version = match group.as_ref().map(|g| g.version) {
                    Some(v) if !v.is_empty() => v,
                    _ => segments[0].get(3),
                };
                if version.is_empty() {
                    return Err(segments[0]
                        .structure("no implementation convention in GS08 or ST03".to_owned()));
                }
                let context = Context {
                    control: &control,
                    version,
                    component: delims.component as char,
                };
                parse_transaction(&segments, &context, out)?;
            }
            "TA1" if group.is_none() => {
                // An interchange acknowledgment may sit between ISA and GS;
                // it carries no claim status.
            }
            other => match transaction.as_mut() {
                Some(segments) => segments.push(seg),
                None => {
                    return Err(
                        seg.structure(format!("segment `{other}` outside a transaction set"))
                    );
                }
            },
        }
    }
}

/// Envelope data copied into every status.
struct Context<'a> {
    control: &'a str,
    version: &'a str,
    component: char,
}

/// An `HL` and the names (`NM1`) given directly under it.
struct HlNode<'a> {
    level: &'a str,
    id: &'a str,
    parent: Option<usize>,
    names: Vec<(&'a str, Party)>,
}

/// One claim-level `STC`, already validated.
struct Stc {
    category: String,
    code: String,
    entity: Option<String>,
    date: Option<String>,
    charge: Option<String>,
    payment: Option<String>,
}

/// A claim loop (2200D/2200E) being read: it starts at `TRN*2` and ends at
/// the next `TRN*2`, `HL` or `SE`.
struct OpenClaim<'a> {
    trn: &'a Segment<'a>,
    hl: usize,
    statuses: Vec<Stc>,
    payer_claim_control_number: Option<String>,
    patient_account_number: Option<String>,
    service_dates: Option<(String, String)>,
    lines: Vec<ServiceLineStatus>,
}

/// HL03 codes of the levels that carry claims: subscriber and dependent
/// (277, 005010X212) and patient (277CA, 005010X214).
fn is_claim_level(level: &str) -> bool {
    matches!(level, "22" | "23" | "PT")
}

fn parse_transaction<'a>(
    segments: &'a [Segment<'a>],
    context: &Context<'_>,
    out: &mut Vec<ClaimStatus>,
) -> Result<(), X12Error> {
    let mut nodes: Vec<HlNode<'a>> = Vec::new();
    // HL01 -> index in `nodes`, so long transactions stay linear-ish.
    let mut ids: BTreeMap<&'a str, usize> = BTreeMap::new();
    let mut claim: Option<OpenClaim<'a>> = None;
    // Skip ST and SE, which the envelope already checked.
    for seg in &segments[1..segments.len() - 1] {
        let current = nodes.len().checked_sub(1);
        let at_claim_level = current.is_some_and(|i| is_claim_level(nodes[i].level));
        match seg.id() {
            "HL" => {
                if let Some(done) = claim.take() {
                    finish_claim(done, &nodes, context, out)?;
                }
                let node = read_hl(seg, &ids)?;
                ids.insert(node.id, nodes.len());
                nodes.push(node);
            }
            "NM1" if claim.is_none() => {
                if let Some(i) = current {
                    nodes[i].names.push((seg.get(1), read_party(seg)));
                }
            }
            "TRN" if at_claim_level && seg.get(1) == "2" => {
                if let Some(done) = claim.take() {
                    finish_claim(done, &nodes, context, out)?;
                }
                if seg.get(2).is_empty() {
                    return Err(seg.invalid(2, "the claim trace number is missing"));
                }
                claim = Some(OpenClaim {
                    trn: seg,
                    hl: nodes.len() - 1,
                    statuses: Vec::new(),
                    payer_claim_control_number: None,
                    patient_account_number: None,
                    service_dates: None,
                    lines: Vec::new(),
                });
            }
            "STC" => match claim.as_mut() {
                Some(open) => {
                    let stc = read_stc(seg, context.component)?;
                    match open.lines.last_mut() {
                        // The first STC after an SVC is the line's status;
                        // the schema has room for one.
                        Some(line) => {
                            if line.status_category_code.is_none() {
                                line.status_category_code = Some(stc.category);
                                line.status_code = Some(stc.code);
                            }
                        }
                        None => open.statuses.push(stc),
                    }
                }
                None if at_claim_level => {
                    return Err(seg.structure(
                        "claim-level `STC` without a preceding `TRN*2` claim trace number"
                            .to_owned(),
                    ));
                }
                // Statuses of the information source, receiver or provider
                // are about the request or provider, not a claim.
                None => {}
            },
            "REF" => {
                if let Some(open) = claim.as_mut().filter(|c| c.lines.is_empty()) {
                    let value = seg.opt(2).map(str::to_owned);
                    match seg.get(1) {
                        "1K" if open.payer_claim_control_number.is_none() => {
                            open.payer_claim_control_number = value;
                        }
                        "EJ" if open.patient_account_number.is_none() => {
                            open.patient_account_number = value;
                        }
                        _ => {}
                    }
                }
            }
            "DTP" => {
                // A DTP*472 after an SVC dates the line, which the schema
                // does not carry.
                if let Some(open) = claim.as_mut().filter(|c| c.lines.is_empty())
                    && seg.get(1) == "472"
                    && open.service_dates.is_none()
                {
                    open.service_dates = Some(read_date_range(seg)?);
                }
            }
            "SVC" => {
                let Some(open) = claim.as_mut() else {
                    return Err(seg.structure("service line outside a claim loop".to_owned()));
                };
                open.lines.push(read_svc(seg, context.component)?);
            }
            _ => {}
        }
    }
    if let Some(done) = claim.take() {
        finish_claim(done, &nodes, context, out)?;
    }
    Ok(())
}

fn read_hl<'a>(seg: &Segment<'a>, ids: &BTreeMap<&'a str, usize>) -> Result<HlNode<'a>, X12Error> {
    let id = seg.get(1);
    if id.is_empty() {
        return Err(seg.invalid(1, "the hierarchical id is missing"));
    }
    if ids.contains_key(id) {
        return Err(seg.invalid(1, "the hierarchical id is used twice"));
    }
    let parent = match seg.opt(2) {
        None => None,
        Some(parent) => match ids.get(parent) {
            Some(&i) => Some(i),
            None => return Err(seg.invalid(2, "no earlier `HL` has this id")),
        },
    };
    let level = seg.get(3);
    if level.is_empty() {
        return Err(seg.invalid(3, "the hierarchical level code is missing"));
    }
    Ok(HlNode {
        level,
        id,
        parent,
        names: Vec::new(),
    })
}

fn read_party(seg: &Segment<'_>) -> Party {
    let last = seg.get(3);
    let name = match (seg.get(2), seg.get(4)) {
        ("1", first) if !first.is_empty() && !last.is_empty() => format!("{last}, {first}"),
        ("1", first) if last.is_empty() => first.to_owned(),
        _ => last.to_owned(),
    };
    Party {
        name,
        id_qualifier: seg.opt(8).map(str::to_owned),
        id: seg.opt(9).map(str::to_owned),
    }
}

fn read_stc(seg: &Segment<'_>, component: char) -> Result<Stc, X12Error> {
    let mut parts = seg.get(1).split(component).map(str::trim);
    let category = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let entity = parts.next().unwrap_or_default();
    if category.is_empty() {
        return Err(seg.invalid(1, "the status category code (STC01-1) is missing"));
    }
    if code.is_empty() {
        return Err(seg.invalid(1, "the status code (STC01-2) is missing"));
    }
    Ok(Stc {
        category: category.to_owned(),
        code: code.to_owned(),
        entity: Some(entity.to_owned()).filter(|e| !e.is_empty()),
        date: optional(seg, 2, parse_date)?,
        charge: optional(seg, 4, parse_amount)?,
        payment: optional(seg, 5, parse_amount)?,
    })
}

fn read_svc(seg: &Segment<'_>, component: char) -> Result<ServiceLineStatus, X12Error> {
    let mut parts = seg.get(1).split(component).map(str::trim);
    let qualifier = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if qualifier.is_empty() || code.is_empty() {
        return Err(seg.invalid(1, "expected `qualifier:procedure code`"));
    }
    Ok(ServiceLineStatus {
        procedure_code: format!("{qualifier}:{code}"),
        charge: optional(seg, 2, parse_amount)?,
        payment: optional(seg, 3, parse_amount)?,
        status_category_code: None,
        status_code: None,
    })
}

/// Converts element `n` with `convert` when present.
fn optional(
    seg: &Segment<'_>,
    n: usize,
    convert: fn(&str) -> Result<String, &'static str>,
) -> Result<Option<String>, X12Error> {
    seg.opt(n)
        .map(|value| convert(value).map_err(|detail| seg.invalid(n, detail)))
        .transpose()
}

fn read_date_range(seg: &Segment<'_>) -> Result<(String, String), X12Error> {
    let value = seg.get(3);
    let convert = |date: &str| parse_date(date).map_err(|detail| seg.invalid(3, detail));
    match seg.get(2) {
        "D8" => {
            let date = convert(value)?;
            Ok((date.clone(), date))
        }
        "RD8" => {
            let Some((from, to)) = value.split_once('-') else {
                return Err(seg.invalid(3, "expected a `CCYYMMDD-CCYYMMDD` range"));
            };
            let (from, to) = (convert(from)?, convert(to)?);
            // ISO dates compare correctly as strings.
            if to < from {
                return Err(seg.invalid(3, "the range ends before it starts"));
            }
            Ok((from, to))
        }
        _ => Err(seg.invalid(2, "expected date format `D8` or `RD8`")),
    }
}

/// `CCYYMMDD` to `CCYY-MM-DD`, rejecting impossible dates.
fn parse_date(value: &str) -> Result<String, &'static str> {
    const BAD: &str = "expected a `CCYYMMDD` date";
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    let number = |range: std::ops::Range<usize>| value[range].parse::<u32>().map_err(|_| BAD);
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err("the month is not 01-12"),
    };
    if day == 0 || day > days {
        return Err("the day does not exist in that month");
    }
    Ok(format!(
        "{}-{}-{}",
        &value[0..4],
        &value[4..6],
        &value[6..8]
    ))
}

/// An X12 decimal (`R`) to a string with exactly two fraction digits, as
/// the schema's decimal(12, 2) needs. More precision than that is refused
/// rather than rounded, because money must not change silently.
fn parse_amount(value: &str) -> Result<String, &'static str> {
    const BAD: &str = "expected a decimal amount";
    let (negative, unsigned) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(BAD);
    }
    if fraction.len() > 2 && fraction[2..].bytes().any(|b| b != b'0') {
        return Err("more than two decimal places");
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 10 {
        return Err("more than 12 digits");
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    let cents = format!("{:0<2}", &fraction[..fraction.len().min(2)]);
    let sign = if negative && (whole != "0" || cents != "00") {
        "-"
    } else {
        ""
    };
    Ok(format!("{sign}{whole}.{cents}"))
}

/// The `HL` at `start` and its ancestors, nearest first. Parents always
/// precede their children (checked in [`read_hl`]), so this ends.
fn lineage<'n, 'a>(nodes: &'n [HlNode<'a>], start: usize) -> impl Iterator<Item = &'n HlNode<'a>> {
    std::iter::successors(Some(&nodes[start]), move |node| {
        node.parent.map(|p| &nodes[p])
    })
}

/// The first name with one of `qualifiers` (in order of preference) under the
/// nearest `HL` of `levels`.
fn find_party(
    nodes: &[HlNode<'_>],
    start: usize,
    levels: &[&str],
    qualifiers: &[&str],
) -> Option<Party> {
    lineage(nodes, start)
        .filter(|node| levels.contains(&node.level))
        .find_map(|node| {
            qualifiers.iter().find_map(|q| {
                node.names
                    .iter()
                    .find(|(qualifier, _)| qualifier == q)
                    .map(|(_, party)| party.clone())
            })
        })
}

fn finish_claim(
    claim: OpenClaim<'_>,
    nodes: &[HlNode<'_>],
    context: &Context<'_>,
    out: &mut Vec<ClaimStatus>,
) -> Result<(), X12Error> {
    let claim_id = claim.trn.get(2);
    let missing = |what: &str| {
        claim
            .trn
            .structure(format!("claim `{claim_id}` has {what}"))
    };
    if claim.statuses.is_empty() {
        return Err(missing("no claim-level `STC` status"));
    }
    // A 277CA information source may be a clearinghouse (AY) instead of a
    // payer; it is still the party reporting the status.
    let payer = find_party(nodes, claim.hl, &["20"], &["PR", "AY"])
        .ok_or_else(|| missing("no payer (`NM1*PR` under an `HL` level 20 above it)"))?;
    let provider = find_party(nodes, claim.hl, &["19"], &["1P", "85"]).ok_or_else(|| {
        missing("no provider (`NM1*1P` or `NM1*85` under an `HL` level 19 above it)")
    })?;
    let patient = find_party(nodes, claim.hl, &["23", "PT", "22"], &["QC", "IL"]);
    let (from, to) = claim.service_dates.unzip();
    for stc in claim.statuses {
        out.push(ClaimStatus {
            claim_id: claim_id.to_owned(),
            payer_claim_control_number: claim.payer_claim_control_number.clone(),
            patient_account_number: claim.patient_account_number.clone(),
            payer: payer.clone(),
            provider: provider.clone(),
            patient: patient.clone(),
            status_category_code: stc.category,
            status_code: stc.code,
            entity_code: stc.entity,
            status_effective_date: stc.date,
            total_charge: stc.charge,
            payment_amount: stc.payment,
            service_date_from: from.clone(),
            service_date_to: to.clone(),
            service_lines: claim.lines.clone(),
            interchange_control_number: context.control.to_owned(),
            transaction_set: context.version.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values below were written by reading the sample files, not by
    // running the parser.
    const CLAIM_LEVEL: &str =
        include_str!("../../../../shared/data/x12/277/lfh__277__claim-level-status.277");
    const PROVIDER_LEVEL: &str =
        include_str!("../../../../shared/data/x12/277/lfh__277__provider-level-status.277");
    const RECEIVER_LEVEL: &str = include_str!(
        "../../../../shared/data/x12/277/lfh__277__information-receiver-level-status.277"
    );
    const NCPDP: &str =
        include_str!("../../../../shared/data/x12/277/lfh__277__claim-level-status-ncpdp.277");
    const CA_ACCEPTED: &str =
        include_str!("../../../../shared/data/x12/277/imsweb__277ca__x12_277CA_accepted.txt");
    const CA_REJECTED: &str =
        include_str!("../../../../shared/data/x12/277/imsweb__277ca__x12_277CA_rejected.txt");
    const TRUNCATED: &str =
        include_str!("../../../../shared/data/x12/277/oopf__277ca__FromBogeyone.txt");

    const SAMPLES: [(&str, &str); 7] = [
        ("claim-level", CLAIM_LEVEL),
        ("provider-level", PROVIDER_LEVEL),
        ("receiver-level", RECEIVER_LEVEL),
        ("ncpdp", NCPDP),
        ("277ca-accepted", CA_ACCEPTED),
        ("277ca-rejected", CA_REJECTED),
        ("truncated", TRUNCATED),
    ];

    const NOT_277: [(&str, &str, &str); 8] = [
        (
            "276",
            "276",
            include_str!("../../../../shared/data/x12/276/lfh__276__claim-level-status.276"),
        ),
        (
            "276",
            "276",
            include_str!("../../../../shared/data/x12/276/lfh__276__provider-level-status.276"),
        ),
        (
            "276",
            "276",
            include_str!("../../../../shared/data/x12/276/lfh__276__claim-level-status-ncpdp.276"),
        ),
        (
            "835",
            "835",
            include_str!("../../../../shared/data/x12/835/lfh__835__managed-care.835"),
        ),
        (
            "835",
            "835",
            include_str!("../../../../shared/data/x12/835/lfh__835__medicare-part-a.835"),
        ),
        (
            "835",
            "835",
            include_str!("../../../../shared/data/x12/835/lfh__835__secondary-payment.835"),
        ),
        (
            "835",
            "835",
            include_str!(
                "../../../../shared/data/x12/835/lfh__835__cob-contractural-adjustment.835"
            ),
        ),
        (
            "835",
            "835",
            include_str!("../../../../shared/data/x12/835/pyx12__835__835_mult_loops.txt"),
        ),
    ];

    fn s(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    fn party(name: &str, qualifier: Option<&str>, id: Option<&str>) -> Party {
        Party {
            name: name.to_owned(),
            id_qualifier: qualifier.map(str::to_owned),
            id: id.map(str::to_owned),
        }
    }

    fn abc_insurance() -> Party {
        party("ABC INSURANCE", Some("PI"), Some("12345"))
    }

    fn home_hospital() -> Party {
        party("HOME HOSPITAL", Some("XX"), Some("1666666661"))
    }

    fn nysdoh() -> Party {
        party("NYSDOH", Some("FI"), Some("141797357"))
    }

    /// ABCXYZ1 as reported in both the claim-level and provider-level files.
    fn abcxyz1() -> ClaimStatus {
        ClaimStatus {
            claim_id: "ABCXYZ1".to_owned(),
            payer_claim_control_number: s("05347006051"),
            patient_account_number: s("SM123456"),
            payer: abc_insurance(),
            provider: home_hospital(),
            patient: Some(party("SMITH, FRED", Some("MI"), Some("123456789A"))),
            status_category_code: "P3".to_owned(),
            status_code: "317".to_owned(),
            entity_code: None,
            status_effective_date: s("2005-09-13"),
            total_charge: s("8513.88"),
            payment_amount: None,
            service_date_from: s("2005-08-31"),
            service_date_to: s("2005-09-06"),
            service_lines: vec![],
            interchange_control_number: "000000907".to_owned(),
            transaction_set: "005010X212".to_owned(),
        }
    }

    #[test]
    fn claim_level_status_has_three_claims() {
        let expected = vec![
            abcxyz1(),
            ClaimStatus {
                claim_id: "ABCXYZ2".to_owned(),
                payer_claim_control_number: s("0529675341"),
                patient_account_number: s("J0234567"),
                payer: abc_insurance(),
                provider: home_hospital(),
                patient: Some(party("JONES, MARY", Some("MI"), Some("234567890A"))),
                status_category_code: "F0".to_owned(),
                status_code: "3".to_owned(),
                entity_code: None,
                status_effective_date: s("2005-09-15"),
                total_charge: s("7599.00"),
                payment_amount: s("7599.00"),
                service_date_from: s("2005-07-31"),
                service_date_to: s("2005-08-09"),
                service_lines: vec![],
                interchange_control_number: "000000907".to_owned(),
                transaction_set: "005010X212".to_owned(),
            },
            ClaimStatus {
                claim_id: "ABCXYC3".to_owned(),
                payer_claim_control_number: s("051681010827"),
                patient_account_number: s("MA345678"),
                payer: abc_insurance(),
                provider: party("HOME HOSPITAL PHYSICIANS", Some("XX"), Some("166666666")),
                // The dependent of HL 23, who has no NM108/NM109.
                patient: Some(party("MANN, JOSEPH", None, None)),
                status_category_code: "F2".to_owned(),
                status_code: "88".to_owned(),
                entity_code: s("QC"),
                status_effective_date: s("2005-06-12"),
                total_charge: s("150.00"),
                payment_amount: s("0.00"),
                // The only DTP*472 follows the SVC, so it dates the line.
                service_date_from: None,
                service_date_to: None,
                service_lines: vec![ServiceLineStatus {
                    procedure_code: "HC:99203".to_owned(),
                    charge: s("150.00"),
                    payment: s("0.00"),
                    status_category_code: s("F2"),
                    status_code: s("88"),
                }],
                interchange_control_number: "000000907".to_owned(),
                transaction_set: "005010X212".to_owned(),
            },
        ];
        assert_eq!(parse_277(CLAIM_LEVEL), Ok(expected));
    }

    #[test]
    fn provider_level_status_is_not_a_claim() {
        // HL 5's STC*E0:24:85 is about the provider and yields nothing.
        assert_eq!(parse_277(PROVIDER_LEVEL), Ok(vec![abcxyz1()]));
    }

    #[test]
    fn receiver_level_status_yields_no_claims() {
        assert_eq!(parse_277(RECEIVER_LEVEL), Ok(vec![]));
    }

    #[test]
    fn ncpdp_claim() {
        let expected = ClaimStatus {
            claim_id: "ABCXYZ1".to_owned(),
            payer_claim_control_number: s("05347006051"),
            patient_account_number: None,
            payer: abc_insurance(),
            provider: party("HOME HOSPITAL PHARMACY", Some("XX"), Some("1666666662")),
            patient: Some(party("SMITH, FRED", Some("MI"), Some("123456789A"))),
            status_category_code: "F2".to_owned(),
            status_code: "80".to_owned(),
            // STC01-3 is present but empty (`F2:80::RX`).
            entity_code: None,
            status_effective_date: s("2006-03-01"),
            total_charge: s("85.00"),
            payment_amount: s("0.00"),
            service_date_from: s("2006-03-01"),
            service_date_to: s("2006-03-01"),
            service_lines: vec![],
            interchange_control_number: "000000907".to_owned(),
            transaction_set: "005010X212".to_owned(),
        };
        assert_eq!(parse_277(NCPDP), Ok(vec![expected]));
    }

    #[test]
    fn acknowledgment_accepted() {
        // The receiver-level STC*A1:20 (batch receipt) is not a claim status.
        let expected = ClaimStatus {
            claim_id: "5781".to_owned(),
            payer_claim_control_number: s("1107000000014420"),
            patient_account_number: None,
            payer: nysdoh(),
            provider: party("OCTOR, IMA", Some("XX"), Some("1234567890")),
            patient: Some(party("TPATIENT, THEBE", Some("MI"), Some("LL99999X"))),
            status_category_code: "A2".to_owned(),
            status_code: "20".to_owned(),
            entity_code: None,
            status_effective_date: s("2011-03-11"),
            total_charge: s("125.00"),
            payment_amount: None,
            service_date_from: s("1001-01-01"),
            service_date_to: s("1001-01-01"),
            service_lines: vec![],
            interchange_control_number: "000014420".to_owned(),
            transaction_set: "005010X214".to_owned(),
        };
        assert_eq!(parse_277(CA_ACCEPTED), Ok(vec![expected]));
    }

    #[test]
    fn acknowledgment_rejected_on_one_line_with_pipe_components() {
        let expected = ClaimStatus {
            claim_id: "3920394930203".to_owned(),
            payer_claim_control_number: s("1107000000001120"),
            patient_account_number: None,
            payer: nysdoh(),
            provider: party("PROVLNAME", Some("XX"), Some("123456789")),
            patient: Some(party("CLILNAME, CLIFNAME", Some("MI"), Some("XX99999X"))),
            status_category_code: "A7".to_owned(),
            status_code: "562".to_owned(),
            entity_code: s("85"),
            status_effective_date: s("2011-03-11"),
            total_charge: s("199.14"),
            payment_amount: None,
            service_date_from: s("2009-03-11"),
            service_date_to: s("2009-03-11"),
            service_lines: vec![],
            interchange_control_number: "000001120".to_owned(),
            transaction_set: "005010X214".to_owned(),
        };
        assert_eq!(parse_277(CA_REJECTED), Ok(vec![expected]));
    }

    #[test]
    fn truncated_file_is_rejected() {
        // BOM and indentation are fine; the file stops after segment 10,
        // `HL*2*1*21*1~`.
        let error = parse_277(TRUNCATED).unwrap_err();
        assert_eq!(
            error,
            X12Error::Truncated {
                after_segment: 10,
                after_id: "HL".to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "interchange is truncated: no `IEA` segment after segment 10 (`HL`)"
        );
    }

    #[test]
    fn other_transaction_sets_are_refused() {
        for (code, _, text) in NOT_277 {
            let error = parse_277(text).unwrap_err();
            assert_eq!(
                error,
                X12Error::NotClaimStatus {
                    segment: 3,
                    found: code.to_owned()
                }
            );
            let message = error.to_string();
            assert!(message.contains(&format!("`ST` {code}")), "{message}");
            assert!(message.contains("expected a 277"), "{message}");
        }
        assert_eq!(
            parse_277(NOT_277[0].2).unwrap_err().to_string(),
            "expected a 277 claim status transaction set, but segment 3 is `ST` 276 \
             (a claim status request)"
        );
        assert_eq!(
            parse_277(NOT_277[3].2).unwrap_err().to_string(),
            "expected a 277 claim status transaction set, but segment 3 is `ST` 835 \
             (a claim payment/remittance advice)"
        );
    }

    /// Rewrites every delimiter of `text` consistently.
    fn redelimit(text: &str, map: &[(char, char)]) -> String {
        // Whitespace may already occur between segments, where it is ignored.
        for &(_, to) in map.iter().filter(|(_, to)| !to.is_whitespace()) {
            assert!(!text.contains(to), "`{to}` already occurs in the sample");
        }
        text.chars()
            .map(|c| {
                map.iter()
                    .find(|(from, _)| *from == c)
                    .map_or(c, |&(_, to)| to)
            })
            .collect()
    }

    #[test]
    fn other_delimiters_parse_identically() {
        let original = parse_277(CLAIM_LEVEL).unwrap();
        let rewritten = redelimit(
            CLAIM_LEVEL,
            &[('*', '!'), (':', '>'), ('^', '}'), ('~', '\'')],
        );
        assert_eq!(parse_277(&rewritten), Ok(original.clone()));
        // Newline as the terminator: the existing newlines become blank lines.
        let newline = redelimit(CLAIM_LEVEL, &[('*', '|'), ('~', '\n')]);
        assert_eq!(parse_277(&newline), Ok(original));

        let original = parse_277(CA_REJECTED).unwrap();
        let rewritten = redelimit(CA_REJECTED, &[('*', '+'), ('|', '>'), ('~', '\'')]);
        assert_eq!(parse_277(&rewritten), Ok(original));
    }

    #[test]
    fn crlf_and_indentation_are_tolerated() {
        let crlf = CLAIM_LEVEL.replace('\n', "\r\n\t  ");
        assert_eq!(parse_277(&crlf), parse_277(CLAIM_LEVEL));
    }

    #[test]
    fn several_claim_level_statuses_yield_one_status_each() {
        let text = CLAIM_LEVEL
            .replace(
                "STC*P3:317*20050913**8513.88~\n",
                "STC*P3:317*20050913**8513.88~\nSTC*P1:20*20050914*WQ*8513.88*0~\n",
            )
            .replace("SE*38*", "SE*39*");
        let statuses = parse_277(&text).unwrap();
        assert_eq!(statuses.len(), 4);
        assert_eq!(statuses[0], abcxyz1());
        let second = ClaimStatus {
            status_category_code: "P1".to_owned(),
            status_code: "20".to_owned(),
            status_effective_date: s("2005-09-14"),
            payment_amount: s("0.00"),
            ..abcxyz1()
        };
        assert_eq!(statuses[1], second);
        assert_eq!(statuses[2].claim_id, "ABCXYZ2");
    }

    #[test]
    fn back_to_back_interchanges() {
        let both = format!("{CLAIM_LEVEL}\n{CA_REJECTED}");
        let mut expected = parse_277(CLAIM_LEVEL).unwrap();
        expected.extend(parse_277(CA_REJECTED).unwrap());
        assert_eq!(parse_277(&both), Ok(expected));
    }

    #[test]
    fn envelope_mismatches_are_errors() {
        let cases = [
            (
                CLAIM_LEVEL.replace("SE*38*", "SE*37*"),
                "invalid SE01 `37` at segment 40 (`SE`): the transaction set has 38 segments",
            ),
            (
                CLAIM_LEVEL.replace("SE*38*0001", "SE*38*0002"),
                "invalid SE02 `0002` at segment 40 (`SE`): does not match ST02 `0001`",
            ),
            (
                CLAIM_LEVEL.replace("GE*1*1~", "GE*2*1~"),
                "invalid GE01 `2` at segment 41 (`GE`): the group has 1 transaction set(s)",
            ),
            (
                CLAIM_LEVEL.replace("IEA*1*000000907", "IEA*1*000000908"),
                "invalid IEA02 `000000908` at segment 42 (`IEA`): does not match ISA13 `000000907`",
            ),
            (
                CLAIM_LEVEL.replace("HL*8*7*23~", "HL*8*9*23~"),
                "invalid HL02 `9` at segment 31 (`HL`): no earlier `HL` has this id",
            ),
            (
                CLAIM_LEVEL.replace("STC*F0:3*", "STC*F0*"),
                "invalid STC01 `F0` at segment 22 (`STC`): the status code (STC01-2) is missing",
            ),
            (
                CLAIM_LEVEL.replace("7599.00*7599.00", "7599.00*7599.001"),
                "invalid STC05 `7599.001` at segment 22 (`STC`): more than two decimal places",
            ),
            (
                CLAIM_LEVEL.replace("20050731-20050809", "20050731-20050231"),
                "invalid DTP03 `20050731-20050231` at segment 26 (`DTP`): \
                 the day does not exist in that month",
            ),
            (
                format!("{CLAIM_LEVEL}GS*HN~"),
                "unexpected data `GS*HN~` after the interchange ends at segment 42 (`IEA`)",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse_277(&text).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn bad_isa_is_reported() {
        // ISA02 one space short: the fixed-width delimiter positions shift.
        let short = CLAIM_LEVEL.replacen("*9876543210*01", "*987654321*01", 1);
        let message = parse_277(&short).unwrap_err().to_string();
        assert!(
            message.starts_with("malformed `ISA` at segment 1: ISA02"),
            "{message}"
        );
        assert!(message.contains("106 characters"), "{message}");
        let message = parse_277("ISA*00*").unwrap_err().to_string();
        assert!(
            message.contains("ends 7 characters into the `ISA`"),
            "{message}"
        );
    }

    #[test]
    fn garbage_and_empty_input_are_errors() {
        assert_eq!(parse_277(""), Err(X12Error::Empty));
        assert_eq!(parse_277(" \r\n\t"), Err(X12Error::Empty));
        assert_eq!(parse_277("\u{feff}\n"), Err(X12Error::Empty));
        assert_eq!(
            parse_277("hello world").unwrap_err().to_string(),
            "input is not an X12 interchange: expected `ISA` at the start, found `hello world`"
        );
        assert!(parse_277("{\"json\": true}").is_err());
        assert!(parse_277(&"ISA".repeat(100)).is_err());
        assert!(parse_277(&"~".repeat(300)).is_err());
        assert!(parse_277("ISA\u{e9}\u{e9}\u{e9}\u{e9}".repeat(40).as_str()).is_err());
        // A valid envelope with a garbage segment inside.
        let garbage = CLAIM_LEVEL.replace("BHT*", "bh t*");
        assert_eq!(
            parse_277(&garbage).unwrap_err().to_string(),
            "`bh t` is not a valid segment id at segment 4 (`bh t`)"
        );
    }

    #[test]
    fn no_truncation_panics_and_every_incomplete_prefix_is_an_error() {
        for (name, text) in SAMPLES {
            let complete = text.rfind('~').map_or(0, |at| at + 1);
            for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
                let result = parse_277(&text[..end]);
                if end < complete || name == "truncated" {
                    assert!(result.is_err(), "{name} cut at {end} parsed");
                } else {
                    assert!(result.is_ok(), "{name} cut at {end}: {result:?}");
                }
            }
        }
        for (_, _, text) in NOT_277 {
            for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
                assert!(parse_277(&text[..end]).is_err());
            }
        }
    }

    #[test]
    fn json_matches_the_schema_shape() {
        let statuses = parse_277(CLAIM_LEVEL).unwrap();
        let json = serde_json::to_value(&statuses[2]).unwrap();
        let expected = serde_json::json!({
            "claim_id": "ABCXYC3",
            "payer_claim_control_number": "051681010827",
            "patient_account_number": "MA345678",
            "payer": {"name": "ABC INSURANCE", "id_qualifier": "PI", "id": "12345"},
            "provider": {"name": "HOME HOSPITAL PHYSICIANS", "id_qualifier": "XX", "id": "166666666"},
            "patient": {"name": "MANN, JOSEPH", "id_qualifier": null, "id": null},
            "status_category_code": "F2",
            "status_code": "88",
            "entity_code": "QC",
            "status_effective_date": "2005-06-12",
            "total_charge": "150.00",
            "payment_amount": "0.00",
            "service_date_from": null,
            "service_date_to": null,
            "service_lines": [{
                "procedure_code": "HC:99203",
                "charge": "150.00",
                "payment": "0.00",
                "status_category_code": "F2",
                "status_code": "88"
            }],
            "interchange_control_number": "000000907",
            "transaction_set": "005010X212"
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn amounts_and_dates() {
        assert_eq!(parse_amount("125").as_deref(), Ok("125.00"));
        assert_eq!(parse_amount("125.0").as_deref(), Ok("125.00"));
        assert_eq!(parse_amount("0").as_deref(), Ok("0.00"));
        assert_eq!(parse_amount(".5").as_deref(), Ok("0.50"));
        assert_eq!(parse_amount("007.100").as_deref(), Ok("7.10"));
        assert_eq!(parse_amount("-9.00").as_deref(), Ok("-9.00"));
        assert_eq!(parse_amount("-0").as_deref(), Ok("0.00"));
        assert_eq!(
            parse_amount("9999999999.99").as_deref(),
            Ok("9999999999.99")
        );
        for bad in [
            "",
            ".",
            "-",
            "1.234",
            "1,00",
            "+1",
            "1e3",
            "12345678901",
            "1.2.3",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_date("20240229").as_deref(), Ok("2024-02-29"));
        assert_eq!(parse_date("20000229").as_deref(), Ok("2000-02-29"));
        for bad in [
            "20230229", "19000229", "20241301", "20240100", "2024011", "2024-1-1",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
