//! W3C Trace Context and Baggage headers as callers send them.
//!
//! A malformed `traceparent` is ignored, as the W3C recommendation says: the
//! request still succeeds and the event starts a new trace instead of
//! carrying garbage into Kafka headers. A `traceparent` of a higher version
//! is read by its first four fields. `tracestate` and `baggage` are carried
//! only with a valid `traceparent` and when they are within the sizes the
//! specifications allow.
//!
//! The host's own spans continue these traces: a span that handles an event
//! takes the event's `traceparent` as its parent ([`continue_trace`]), and
//! what it writes names that span as the parent ([`span_headers`]). When
//! spans are not exported, trace headers pass through unchanged.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{BorrowedHeaders, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

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

/// The remote parent that a caller's (or a record's) trace headers name,
/// when the `traceparent` is valid.
pub fn remote_parent(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<opentelemetry::Context> {
    let traceparent = parse_traceparent(traceparent?)?;
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent)]);
    if let Some(state) = tracestate.filter(|v| is_carryable(v, MAX_TRACESTATE_BYTES)) {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    parent.span().span_context().is_valid().then_some(parent)
}

/// The parent that a Kafka record's headers name.
pub fn record_parent(headers: Option<&BorrowedHeaders>) -> Option<opentelemetry::Context> {
    let text = |name: &str| {
        headers?
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    };
    remote_parent(text("traceparent"), text("tracestate"))
}

/// The span of a record taken from Kafka to `operation` on it (`route`,
/// `aggregate`, `transformer`, …) in consumer `group`: it continues the
/// trace of whoever wrote the record, or starts one.
pub fn record_span(
    operation: &str,
    group: &str,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> tracing::Span {
    use rdkafka::Message;
    let span = tracing::debug_span!(
        "process",
        otel.name = %format_args!("{operation} {}", message.topic()),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = message.topic(),
        messaging.destination.partition.id = message.partition(),
        messaging.kafka.offset = message.offset(),
        messaging.consumer.group.name = group,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    continue_trace(&span, record_parent(message.headers()));
    span
}

/// Makes `span` continue the trace that `parent` names (without one, it
/// starts a trace) and records the trace id in the span's `trace_id`
/// field, so the log lines inside it carry the id. Call it before the span
/// is first entered.
pub fn continue_trace(span: &tracing::Span, parent: Option<opentelemetry::Context>) {
    if let Some(parent) = parent {
        // Fails only when spans are not exported, which is fine.
        let _ = span.set_parent(parent);
    }
    let context = span_context(span);
    if context.is_valid() {
        span.record("trace_id", tracing::field::display(context.trace_id()));
    }
}

/// The OpenTelemetry identity of a span; invalid when spans are not
/// exported.
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// The W3C headers that name `span` as the parent of what it writes, in
/// header order; empty when spans are not exported.
pub fn span_headers(span: &tracing::Span) -> Vec<(&'static str, Vec<u8>)> {
    let context = span_context(span);
    if !context.is_valid() {
        return Vec::new();
    }
    let mut headers = vec![(
        "traceparent",
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
        .into_bytes(),
    )];
    let state = context.trace_state().header();
    if !state.is_empty() {
        headers.push(("tracestate", state.into_bytes()));
    }
    headers
}

/// Puts `span`'s trace headers in place of those in `extensions` (a new
/// event's headers); leaves them as they are when spans are not exported.
pub fn set_span_headers(extensions: &mut Vec<(String, Option<Vec<u8>>)>, span: &tracing::Span) {
    let headers = span_headers(span);
    if headers.is_empty() {
        return;
    }
    extensions.retain(|(name, _)| name != "traceparent" && name != "tracestate");
    for (name, value) in headers.into_iter().rev() {
        extensions.insert(0, (name.to_string(), Some(value)));
    }
}

/// The trace headers of a new event derived from another (a plugin's
/// output), given the input's headers by name: `span`'s (or, when spans
/// are not exported, the input's own `traceparent` and `tracestate`, so the
/// trace still goes on), and the input's `baggage`, which travels with
/// everything its request caused.
pub fn derived(
    span: &tracing::Span,
    input: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = span_headers(span)
        .into_iter()
        .map(|(name, value)| (name.to_string(), Some(value)))
        .collect();
    let names: &[&str] = if headers.is_empty() {
        &["traceparent", "tracestate", "baggage"]
    } else {
        &["baggage"]
    };
    for name in names {
        if let Some(value) = input(name) {
            headers.push(((*name).to_string(), Some(value)));
        }
    }
    headers
}

/// A record's headers for a record written on its behalf: the same
/// headers, with `span` as the trace parent (when spans are exported), and
/// `extra` at the end.
pub fn forwarded_headers(
    headers: Option<&BorrowedHeaders>,
    span: &tracing::Span,
    extra: &[(&str, &[u8])],
) -> OwnedHeaders {
    let trace = span_headers(span);
    let replaced: Vec<(&str, &[u8])> = trace
        .iter()
        .map(|(name, value)| (*name, value.as_slice()))
        .collect();
    crate::envelope::headers_replacing(headers, &replaced, extra)
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

    fn header(headers: &OwnedHeaders, name: &str) -> Option<String> {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn record_headers() -> OwnedHeaders {
        crate::envelope::headers_plus(
            None,
            &[
                ("ce_id", b"1"),
                ("traceparent", VALID.as_bytes()),
                ("tracestate", b"a=b"),
                ("baggage", b"team=claims"),
            ],
        )
    }

    #[test]
    fn without_export_trace_headers_pass_unchanged() {
        // No OpenTelemetry layer in unit tests: spans have no identity.
        let span = tracing::info_span!("test", trace_id = tracing::field::Empty);
        continue_trace(&span, remote_parent(Some(VALID), None));
        assert!(span_headers(&span).is_empty());
        let headers = record_headers();
        let forwarded = forwarded_headers(Some(headers.as_borrowed()), &span, &[("x", b"1")]);
        assert_eq!(header(&forwarded, "traceparent").as_deref(), Some(VALID));
        assert_eq!(header(&forwarded, "x").as_deref(), Some("1"));
        let input = |name: &str| header(&headers, name).map(String::into_bytes);
        let names: Vec<String> = derived(&span, input).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["traceparent", "tracestate", "baggage"]);
    }

    #[test]
    fn spans_continue_the_remote_trace_and_name_themselves_as_parent() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::prelude::*;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("test", trace_id = tracing::field::Empty);
            continue_trace(&span, remote_parent(Some(VALID), Some("a=b")));
            let context = span_context(&span);
            assert_eq!(
                context.trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
            let own = format!(
                "00-0af7651916cd43dd8448eb211c80319c-{}-01",
                context.span_id()
            );
            assert_ne!(own, VALID);
            let headers = record_headers();
            let forwarded = forwarded_headers(Some(headers.as_borrowed()), &span, &[]);
            assert_eq!(header(&forwarded, "traceparent"), Some(own.clone()));
            assert_eq!(header(&forwarded, "tracestate").as_deref(), Some("a=b"));
            assert_eq!(
                header(&forwarded, "baggage").as_deref(),
                Some("team=claims")
            );
            assert_eq!(header(&forwarded, "ce_id").as_deref(), Some("1"));
            assert_eq!(
                forwarded.iter().filter(|h| h.key == "traceparent").count(),
                1
            );

            let mut extensions = vec![
                ("traceparent".to_string(), Some(VALID.as_bytes().to_vec())),
                ("causationid".to_string(), Some(b"9".to_vec())),
            ];
            set_span_headers(&mut extensions, &span);
            assert_eq!(extensions[0].1.as_deref(), Some(own.as_bytes()));
            assert_eq!(extensions.len(), 3, "{extensions:?}");

            let input = |name: &str| header(&headers, name).map(String::into_bytes);
            let derived = derived(&span, input);
            assert_eq!(derived[0].1.as_deref(), Some(own.as_bytes()));
            assert_eq!(derived.last().unwrap().0, "baggage");
        });
    }

    #[test]
    fn a_malformed_parent_starts_a_new_trace() {
        assert!(remote_parent(Some("00-zz-01"), None).is_none());
        assert!(remote_parent(None, Some("a=b")).is_none());
        assert!(remote_parent(Some(VALID), None).is_some());
    }
}
