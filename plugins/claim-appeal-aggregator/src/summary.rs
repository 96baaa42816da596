//! The per-claim summary, independent of Switchyard so it is unit tested
//! natively.

use serde::{Deserialize, Serialize};

/// One status as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Status category code (STC01-1).
    pub category: String,
    /// Status code (STC01-2).
    pub code: String,
    /// When it was reported (the event time), RFC 3339.
    pub reported_at: String,
    /// The same, in milliseconds since the epoch.
    pub reported_at_millis: i64,
    /// The payer's effective date of the status, if given.
    pub effective_date: Option<String>,
}

/// The state kept per claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The claim.
    pub claim_id: String,
    /// The provider, as last reported.
    pub provider_id: Option<String>,
    /// Every status, in the order reported.
    pub history: Vec<StatusReport>,
    /// Milliseconds spent in each `category:code`, for statuses already left.
    pub millis_in_status: std::collections::BTreeMap<String, i64>,
    /// Reconsideration requests received.
    pub reconsiderations: u32,
    /// Ids of the events already folded in, newest last (bounded), so a
    /// redelivered event changes nothing.
    pub seen: Vec<String>,
}

/// How many event ids a summary remembers for de-duplication.
pub const SEEN_IDS: usize = 64;

impl Summary {
    fn seen_before(&mut self, event_id: &str) -> bool {
        if self.seen.iter().any(|id| id == event_id) {
            return true;
        }
        self.seen.push(event_id.to_string());
        if self.seen.len() > SEEN_IDS {
            self.seen.remove(0);
        }
        false
    }

    /// Folds in a status report, from the event `event_id`. The id is
    /// remembered among the recently seen, not in the history: every
    /// history entry is in the state of every later event, and an id per
    /// entry made the state about a fifth larger (older states that have
    /// one still read).
    pub fn record_status(
        &mut self,
        event_id: &str,
        claim_id: &str,
        provider_id: Option<&str>,
        report: StatusReport,
    ) {
        if self.seen_before(event_id) {
            return;
        }
        self.claim_id = claim_id.to_string();
        if let Some(provider_id) = provider_id {
            self.provider_id = Some(provider_id.to_string());
        }
        if let Some(previous) = self.history.last() {
            let spent = (report.reported_at_millis - previous.reported_at_millis).max(0);
            *self
                .millis_in_status
                .entry(format!("{}:{}", previous.category, previous.code))
                .or_default() += spent;
        }
        self.history.push(report);
    }

    /// Folds in a reconsideration request.
    pub fn record_reconsideration(&mut self, claim_id: &str, provider_id: &str, event_id: &str) {
        if self.seen_before(event_id) {
            return;
        }
        self.claim_id = claim_id.to_string();
        self.provider_id = Some(provider_id.to_string());
        self.reconsiderations += 1;
    }

    /// The `claim.appeal-summary-updated` object: a view that serializes
    /// straight from the summary, without building a JSON tree first.
    pub fn to_object(&self) -> SummaryObject<'_> {
        SummaryObject {
            claim_id: &self.claim_id,
            provider_id: self.provider_id.as_deref(),
            current_status: self.history.last().map(|s| CurrentStatus {
                category: &s.category,
                code: &s.code,
                since: &s.reported_at,
            }),
            history: self
                .history
                .iter()
                .map(|s| HistoryItem {
                    category: &s.category,
                    code: &s.code,
                    reported_at: &s.reported_at,
                    effective_date: s.effective_date.as_deref(),
                })
                .collect(),
            time_in_status: self
                .millis_in_status
                .iter()
                .map(|(status, millis)| TimeInStatus {
                    status,
                    millis: *millis,
                })
                .collect(),
            status_changes: self.history.len(),
            reconsiderations: self.reconsiderations,
        }
    }
}

/// The `claim.appeal-summary-updated` object, borrowed from a [`Summary`].
#[derive(Debug, Serialize)]
pub struct SummaryObject<'a> {
    /// The claim.
    pub claim_id: &'a str,
    /// Its provider, once known.
    pub provider_id: Option<&'a str>,
    /// The latest status, if any.
    pub current_status: Option<CurrentStatus<'a>>,
    /// Every status, oldest first.
    pub history: Vec<HistoryItem<'a>>,
    /// Time spent in each status left so far.
    pub time_in_status: Vec<TimeInStatus<'a>>,
    /// How many statuses were reported.
    pub status_changes: usize,
    /// How many reconsiderations were requested.
    pub reconsiderations: u32,
}

/// The latest status of a summary.
#[derive(Debug, Serialize)]
pub struct CurrentStatus<'a> {
    /// X12 status category code.
    pub category: &'a str,
    /// X12 status code.
    pub code: &'a str,
    /// When it was reported.
    pub since: &'a str,
}

/// One status of the history.
#[derive(Debug, Serialize)]
pub struct HistoryItem<'a> {
    /// X12 status category code.
    pub category: &'a str,
    /// X12 status code.
    pub code: &'a str,
    /// When it was reported.
    pub reported_at: &'a str,
    /// The status's effective date, when the source gave one.
    pub effective_date: Option<&'a str>,
}

/// Time spent in one status.
#[derive(Debug, Serialize)]
pub struct TimeInStatus<'a> {
    /// `<category>:<code>`.
    pub status: &'a str,
    /// Milliseconds.
    pub millis: i64,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into milliseconds
/// since the Unix epoch.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0_i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 60 + rest[4..6].parse::<i64>().ok()?)
        }
    };
    // Days from the civil date (proleptic Gregorian), after H. Hinnant.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(
        ((days * 86_400 + hour * 3_600 + minute * 60 + second) - offset_minutes * 60) * 1_000
            + millis,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(category: &str, code: &str, at: &str) -> StatusReport {
        StatusReport {
            category: category.into(),
            code: code.into(),
            reported_at: at.into(),
            reported_at_millis: parse_rfc3339_millis(at).unwrap(),
            effective_date: None,
        }
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(
            parse_rfc3339_millis("2000-03-01T00:00:00Z"),
            Some(951_868_800_000)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-12-04T16:02:02.361Z"),
            Some(1_796_400_122_361)
        );
        assert_eq!(parse_rfc3339_millis("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
        assert_eq!(parse_rfc3339_millis("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn history_time_in_status_and_counts() {
        let mut summary = Summary::default();
        summary.record_status(
            "e1",
            "C1",
            Some("1666666661"),
            report("A2", "20", "2026-01-01T00:00:00Z"),
        );
        summary.record_status(
            "e2",
            "C1",
            None,
            report("P3", "317", "2026-01-01T01:00:00Z"),
        );
        summary.record_reconsideration("C1", "1666666661", "e3");
        summary.record_status("e4", "C1", None, report("F0", "3", "2026-01-03T01:00:00Z"));
        let object = serde_json::to_value(summary.to_object()).unwrap();
        assert_eq!(
            object["history"][1],
            serde_json::json!({"category": "P3", "code": "317", "reported_at": "2026-01-01T01:00:00Z", "effective_date": null})
        );
        assert_eq!(object["current_status"]["category"], "F0");
        assert_eq!(object["status_changes"], 3);
        assert_eq!(object["reconsiderations"], 1);
        assert_eq!(object["provider_id"], "1666666661");
        assert_eq!(summary.millis_in_status["A2:20"], 3_600_000);
        assert_eq!(summary.millis_in_status["P3:317"], 2 * 86_400_000);
    }

    #[test]
    fn a_redelivered_event_changes_nothing() {
        let mut summary = Summary::default();
        summary.record_status("e1", "C1", None, report("A2", "20", "2026-01-01T00:00:00Z"));
        let before = summary.clone();
        summary.record_status("e1", "C1", None, report("A2", "20", "2026-01-01T00:00:00Z"));
        assert_eq!(summary, before);
    }

    /// A state written when history entries carried their event's id.
    #[test]
    fn a_state_with_event_ids_in_its_history_still_reads() {
        let old = r#"{"claim_id":"C1","provider_id":null,"history":[{"category":"A2","code":"20","reported_at":"2026-01-01T00:00:00Z","reported_at_millis":1767225600000,"effective_date":null,"event_id":"e1"}],"millis_in_status":{},"reconsiderations":0,"seen":["e1"]}"#;
        let summary: Summary = serde_json::from_str(old).unwrap();
        assert_eq!(summary.history.len(), 1);
        assert_eq!(summary.seen, ["e1"]);
        assert!(
            !serde_json::to_string(&summary)
                .unwrap()
                .contains("event_id")
        );
    }
}
