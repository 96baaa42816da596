package dev.switchyard.bench.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A claim's appeal summary, folded event by event. Same semantics as the
 * reference aggregator (plugins/claim-appeal-aggregator/src/summary.rs):
 * <ul>
 *   <li>an event id already among the last {@value #SEEN_IDS} folded changes nothing;</li>
 *   <li>a status report appends to the history, and the time since the previous
 *       report (never negative) is added to the previous status's {@code category:code};</li>
 *   <li>a status report sets the provider only when it names one; a
 *       reconsideration always sets it and counts one more reconsideration.</li>
 * </ul>
 * {@link #toJson()} writes the same object as the reference's {@code to_object},
 * field for field and in the same order, escaped the way serde_json escapes.
 */
final class Summary {
    static final int SEEN_IDS = 64;

    /** Rust's BTreeMap orders String keys by their UTF-8 bytes, which is code point order. */
    static final Comparator<String> CODE_POINT_ORDER = (a, b) -> {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i);
            int cb = b.codePointAt(j);
            if (ca != cb) {
                return Integer.compare(ca, cb);
            }
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    };

    static final class Report {
        final String category;
        final String code;
        final String reportedAt;
        final long reportedAtMillis;
        final String effectiveDate;

        Report(String category, String code, String reportedAt, long reportedAtMillis, String effectiveDate) {
            this.category = category;
            this.code = code;
            this.reportedAt = reportedAt;
            this.reportedAtMillis = reportedAtMillis;
            this.effectiveDate = effectiveDate;
        }
    }

    String claimId = "";
    String providerId;
    final List<Report> history = new ArrayList<>();
    final TreeMap<String, Long> millisInStatus = new TreeMap<>(CODE_POINT_ORDER);
    /** Unsigned 32-bit in the reference; never near the limit here. */
    int reconsiderations;
    /** Ids of the events folded in, newest last. */
    final ArrayDeque<String> seen = new ArrayDeque<>();

    private boolean seenBefore(String eventId) {
        if (seen.contains(eventId)) {
            return true;
        }
        seen.addLast(eventId);
        if (seen.size() > SEEN_IDS) {
            seen.removeFirst();
        }
        return false;
    }

    /** Folds one event in; returns this summary. */
    Summary fold(ClaimEvent event) {
        switch (event.kind) {
            case STATUS_CHANGED:
                recordStatus(event);
                break;
            case RECONSIDERATION_RECEIVED:
                recordReconsideration(event);
                break;
            default:
                throw new IllegalArgumentException("no fold for " + event.kind);
        }
        return this;
    }

    private void recordStatus(ClaimEvent event) {
        if (seenBefore(event.id)) {
            return;
        }
        claimId = event.claimId;
        if (event.providerId != null) {
            providerId = event.providerId;
        }
        if (!history.isEmpty()) {
            Report previous = history.get(history.size() - 1);
            long spent = Math.max(event.timeMillis - previous.reportedAtMillis, 0L);
            millisInStatus.merge(previous.category + ":" + previous.code, spent, Long::sum);
        }
        history.add(new Report(event.category, event.code, event.time, event.timeMillis, event.effectiveDate));
    }

    private void recordReconsideration(ClaimEvent event) {
        if (seenBefore(event.id)) {
            return;
        }
        claimId = event.claimId;
        providerId = event.providerId;
        reconsiderations++;
    }

    // ---- the published JSON ----

    byte[] toJson() {
        StringBuilder out = new StringBuilder(256 + history.size() * 96);
        out.append("{\"claim_id\":");
        string(out, claimId);
        out.append(",\"provider_id\":");
        nullable(out, providerId);
        out.append(",\"current_status\":");
        if (history.isEmpty()) {
            out.append("null");
        } else {
            Report last = history.get(history.size() - 1);
            out.append("{\"category\":");
            string(out, last.category);
            out.append(",\"code\":");
            string(out, last.code);
            out.append(",\"since\":");
            string(out, last.reportedAt);
            out.append('}');
        }
        out.append(",\"history\":[");
        for (int i = 0; i < history.size(); i++) {
            Report r = history.get(i);
            if (i > 0) {
                out.append(',');
            }
            out.append("{\"category\":");
            string(out, r.category);
            out.append(",\"code\":");
            string(out, r.code);
            out.append(",\"reported_at\":");
            string(out, r.reportedAt);
            out.append(",\"effective_date\":");
            nullable(out, r.effectiveDate);
            out.append('}');
        }
        out.append("],\"time_in_status\":[");
        boolean first = true;
        for (Map.Entry<String, Long> e : millisInStatus.entrySet()) {
            if (!first) {
                out.append(',');
            }
            first = false;
            out.append("{\"status\":");
            string(out, e.getKey());
            out.append(",\"millis\":").append(e.getValue().longValue()).append('}');
        }
        out.append("],\"status_changes\":").append(history.size());
        out.append(",\"reconsiderations\":").append(Integer.toUnsignedString(reconsiderations));
        out.append('}');
        return out.toString().getBytes(StandardCharsets.UTF_8);
    }

    private static void nullable(StringBuilder out, String s) {
        if (s == null) {
            out.append("null");
        } else {
            string(out, s);
        }
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    /** A JSON string, escaped as serde_json does: quote, backslash and C0 controls only. */
    private static void string(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\b': out.append("\\b"); break;
                case '\f': out.append("\\f"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        out.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 0xf]);
                    } else {
                        out.append(c);
                    }
            }
        }
        out.append('"');
    }

    // ---- the state store's format ----

    private static final int FORMAT = 1;

    byte[] serialize() {
        Bin.Writer w = new Bin.Writer();
        w.writeByte(FORMAT);
        w.writeString(claimId);
        w.writeNullable(providerId);
        w.writeInt(history.size());
        for (Report r : history) {
            w.writeString(r.category);
            w.writeString(r.code);
            w.writeString(r.reportedAt);
            w.writeLong(r.reportedAtMillis);
            w.writeNullable(r.effectiveDate);
        }
        w.writeInt(millisInStatus.size());
        for (Map.Entry<String, Long> e : millisInStatus.entrySet()) {
            w.writeString(e.getKey());
            w.writeLong(e.getValue());
        }
        w.writeInt(reconsiderations);
        w.writeInt(seen.size());
        for (String id : seen) {
            w.writeString(id);
        }
        return w.toBytes();
    }

    static Summary deserialize(byte[] bytes) {
        Bin.Reader r = new Bin.Reader(bytes);
        int format = r.readByte();
        if (format != FORMAT) {
            throw new IllegalStateException("unknown summary state format " + format);
        }
        Summary s = new Summary();
        s.claimId = r.readString();
        s.providerId = r.readNullable();
        int n = r.readInt();
        for (int i = 0; i < n; i++) {
            s.history.add(new Report(r.readString(), r.readString(), r.readString(), r.readLong(), r.readNullable()));
        }
        n = r.readInt();
        for (int i = 0; i < n; i++) {
            s.millisInStatus.put(r.readString(), r.readLong());
        }
        s.reconsiderations = r.readInt();
        n = r.readInt();
        for (int i = 0; i < n; i++) {
            s.seen.addLast(r.readString());
        }
        return s;
    }
}
