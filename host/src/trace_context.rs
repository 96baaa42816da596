//! W3C Trace Context and Baggage headers as callers send them.
//!
//! A malformed `traceparent` is ignored, as the W3C recommendation says: the
//! request still succeeds and the event starts a new trace instead of
//! carrying garbage into Kafka headers. A `traceparent` of a higher version
//! is read by its first four fields. `tracestate` and `baggage` are carried
//! only with a valid `traceparent` and when they are within the sizes the
//! specifications allow.

/// Longest `tracestate` carried, in bytes (the W3C limit for 32 members).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// Longest `baggage` carried, in bytes (the W3C Baggage limit).
pub const MAX_BAGGAGE_BYTES: usize = 8_192;

fn is_lower_hex(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Returns the `traceparent` to carry, normalized to version `00`, or none
/// when the value is malformed.
pub fn parse_traceparent(value: &str) -> Option<String> {
    let value = value.trim();
    if value.len() < 55 {
        return None;
    }
    let version = &value[..2];
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may append
    // fields after another dash.
    if version == "00" && value.len() != 55 {
        return None;
    }
    if value.len() > 55 && value.as_bytes()[55] != b'-' {
        return None;
    }
    let fields: Vec<&str> = value[..55].split('-').collect();
    let [_, trace_id, parent_id, flags] = fields.as_slice() else {
        return None;
    };
    let valid = trace_id.len() == 32
        && is_lower_hex(trace_id)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.len() == 16
        && is_lower_hex(parent_id)
        && parent_id.bytes().any(|b| b != b'0')
        && flags.len() == 2
        && is_lower_hex(flags);
    valid.then(|| format!("00-{trace_id}-{parent_id}-{flags}"))
}

/// Whether a `tracestate` or `baggage` value may be carried: bounded,
/// printable ASCII only.
pub fn is_carryable(value: &str, max_bytes: usize) -> bool {
    !value.is_empty()
        && value.len() <= max_bytes
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The trace headers to carry from a caller's `traceparent`, `tracestate`
/// and `baggage`, in that order.
pub fn carried(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    baggage: Option<&str>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let Some(traceparent) = traceparent.and_then(parse_traceparent) else {
        return Vec::new();
    };
    let mut headers = vec![("traceparent".to_string(), Some(traceparent.into_bytes()))];
    if let Some(state) = tracestate.filter(|v| is_carryable(v, MAX_TRACESTATE_BYTES)) {
        headers.push(("tracestate".to_string(), Some(state.as_bytes().to_vec())));
    }
    if let Some(baggage) = baggage.filter(|v| is_carryable(v, MAX_BAGGAGE_BYTES)) {
        headers.push(("baggage".to_string(), Some(baggage.as_bytes().to_vec())));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn valid_values_are_kept() {
        assert_eq!(parse_traceparent(VALID).as_deref(), Some(VALID));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "garbage!!",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_higher_version_is_read_by_its_first_four_fields() {
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next";
        assert_eq!(parse_traceparent(future).as_deref(), Some(VALID));
        assert_eq!(
            parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x"),
            None
        );
    }

    #[test]
    fn state_and_baggage_ride_only_with_a_valid_parent() {
        assert!(carried(Some("nope"), Some("a=b"), Some("k=v")).is_empty());
        let headers = carried(Some(VALID), Some("a=b"), Some(&"k".repeat(9_000)));
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["traceparent", "tracestate"]);
    }
}
