package dev.switchyard.bench.kstreams;

/**
 * One input event after decoding: the CloudEvents attributes the aggregation
 * needs and the few payload fields it reads. The raw record value is kept
 * (by reference, never serialized) so the routing branch can forward it
 * byte for byte.
 */
final class ClaimEvent {
    enum Kind { STATUS_CHANGED, RECONSIDERATION_RECEIVED }

    final Kind kind;
    /** {@code ce_id}. */
    final String id;
    /** {@code ce_time}, normalized to UTC with milliseconds, as Switchyard hands it to plugins. */
    final String time;
    /** The same instant in milliseconds since the epoch. */
    final long timeMillis;
    final String claimId;
    /** status-changed: {@code provider.id} (may be null); reconsideration: {@code provider_id}. */
    final String providerId;
    /** status-changed only. */
    final String category;
    final String code;
    /** status-changed only: {@code status_effective_date} as YYYY-MM-DD, or null. */
    final String effectiveDate;
    /** The record value as consumed (Confluent framing and all); not part of the serde. */
    final transient byte[] raw;

    ClaimEvent(Kind kind, String id, String time, long timeMillis, String claimId, String providerId,
               String category, String code, String effectiveDate, byte[] raw) {
        this.kind = kind;
        this.id = id;
        this.time = time;
        this.timeMillis = timeMillis;
        this.claimId = claimId;
        this.providerId = providerId;
        this.category = category;
        this.code = code;
        this.effectiveDate = effectiveDate;
        this.raw = raw;
    }

    /** A status-changed event whose status category is a finalized one ({@code F...}). */
    boolean isFinalizedStatus() {
        return kind == Kind.STATUS_CHANGED && category.startsWith("F");
    }
}
