package dev.switchyard.bench.kstreams;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;

/**
 * Turns a consumed record (Confluent-framed Avro value, CloudEvents binary
 * headers) into a {@link ClaimEvent}. One instance per stream task: it reuses
 * its Avro decoder and records, so it is not thread-safe.
 *
 * <p>The writer schema is chosen by {@code ce_type}; the 4-byte schema id in
 * the framing is not looked up (there is no registry client here), only the
 * magic byte is checked. Both claim schemas are bundled in the jar.
 */
final class EventDecoder {
    static final String STATUS_CHANGED = "claim.status-changed";
    static final String RECONSIDERATION_RECEIVED = "claim.reconsideration-received";

    /** Thrown for a record that Switchyard would also refuse (bad envelope or body). */
    static final class BadEvent extends Exception {
        BadEvent(String message) {
            super(message);
        }

        BadEvent(String message, Throwable cause) {
            super(message, cause);
        }
    }

    static final Schema STATUS_SCHEMA = load("status-changed.avsc");
    static final Schema RECONSIDERATION_SCHEMA = load("reconsideration-received.avsc");

    private static Schema load(String file) {
        String path = "/schemas/claim/" + file;
        try (InputStream in = EventDecoder.class.getResourceAsStream(path)) {
            if (in == null) {
                throw new IllegalStateException("schema " + path + " is not in the jar");
            }
            return new Schema.Parser().parse(in);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read schema " + path, e);
        }
    }

    private final GenericDatumReader<GenericRecord> statusReader = new GenericDatumReader<>(STATUS_SCHEMA);
    private final GenericDatumReader<GenericRecord> reconsiderationReader =
            new GenericDatumReader<>(RECONSIDERATION_SCHEMA);
    private BinaryDecoder decoder;
    private GenericRecord statusRecord;
    private GenericRecord reconsiderationRecord;

    private static final int S_CLAIM_ID = STATUS_SCHEMA.getField("claim_id").pos();
    private static final int S_PROVIDER = STATUS_SCHEMA.getField("provider").pos();
    private static final int S_CATEGORY = STATUS_SCHEMA.getField("status_category_code").pos();
    private static final int S_CODE = STATUS_SCHEMA.getField("status_code").pos();
    private static final int S_EFFECTIVE = STATUS_SCHEMA.getField("status_effective_date").pos();
    private static final int PARTY_ID = STATUS_SCHEMA.getField("provider").schema().getField("id").pos();
    private static final int R_CLAIM_ID = RECONSIDERATION_SCHEMA.getField("claim_id").pos();
    private static final int R_PROVIDER_ID = RECONSIDERATION_SCHEMA.getField("provider_id").pos();

    /**
     * Decodes a record, or returns null for an event type the aggregation does
     * not read (Switchyard's aggregator leaves those alone too).
     */
    ClaimEvent decode(byte[] value, Headers headers) throws BadEvent {
        String type = header(headers, "ce_type");
        if (type == null) {
            throw new BadEvent("no ce_type header");
        }
        ClaimEvent.Kind kind;
        if (type.equals(STATUS_CHANGED)) {
            kind = ClaimEvent.Kind.STATUS_CHANGED;
        } else if (type.equals(RECONSIDERATION_RECEIVED)) {
            kind = ClaimEvent.Kind.RECONSIDERATION_RECEIVED;
        } else {
            return null;
        }
        String spec = header(headers, "ce_specversion");
        if (spec != null && !spec.equals("1.0")) {
            throw new BadEvent("ce_specversion `" + spec + "` is not 1.0");
        }
        String id = header(headers, "ce_id");
        if (id == null) {
            throw new BadEvent("no ce_id header");
        }
        if (header(headers, "ce_source") == null) {
            throw new BadEvent("no ce_source header");
        }
        String rawTime = header(headers, "ce_time");
        if (rawTime == null) {
            throw new BadEvent("no ce_time header");
        }
        long millis = timeMillis(rawTime);
        String time = canonical(rawTime) ? rawTime : format(millis);

        if (value == null || value.length < 5 || value[0] != 0) {
            throw new BadEvent("value is not in the Confluent wire format");
        }
        decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
        try {
            if (kind == ClaimEvent.Kind.STATUS_CHANGED) {
                GenericRecord r = statusRecord = statusReader.read(statusRecord, decoder);
                GenericRecord provider = (GenericRecord) r.get(S_PROVIDER);
                Object effective = r.get(S_EFFECTIVE);
                return new ClaimEvent(kind, id, time, millis,
                        r.get(S_CLAIM_ID).toString(),
                        text(provider.get(PARTY_ID)),
                        r.get(S_CATEGORY).toString(),
                        r.get(S_CODE).toString(),
                        effective == null ? null : date((Integer) effective),
                        value);
            }
            GenericRecord r = reconsiderationRecord = reconsiderationReader.read(reconsiderationRecord, decoder);
            return new ClaimEvent(kind, id, time, millis,
                    r.get(R_CLAIM_ID).toString(),
                    r.get(R_PROVIDER_ID).toString(),
                    null, null, null, value);
        } catch (IOException | RuntimeException e) {
            throw new BadEvent("cannot decode the " + type + " body: " + e, e);
        }
    }

    private static String text(Object o) {
        return o == null ? null : o.toString();
    }

    private static String header(Headers headers, String name) throws BadEvent {
        // Switchyard reads headers in order and keeps the last of a name.
        Header h = headers.lastHeader(name);
        if (h == null) {
            return null;
        }
        if (h.value() == null) {
            throw new BadEvent("header " + name + " has no value");
        }
        return new String(h.value(), StandardCharsets.UTF_8);
    }

    /** A date as Switchyard's Avro decoder renders it (YYYY-MM-DD for years 0000-9999). */
    static String date(int epochDay) throws BadEvent {
        LocalDate d = LocalDate.ofEpochDay(epochDay);
        if (d.getYear() < 0 || d.getYear() > 9999) {
            // Switchyard would hand the plugin a number here, which the
            // reference aggregator refuses as not a string.
            throw new BadEvent("status_effective_date " + epochDay + " is outside years 0000-9999");
        }
        char[] c = new char[10];
        put(c, 0, d.getYear(), 4);
        c[4] = '-';
        put(c, 5, d.getMonthValue(), 2);
        c[7] = '-';
        put(c, 8, d.getDayOfMonth(), 2);
        return new String(c);
    }

    private static void put(char[] c, int at, int v, int width) {
        for (int i = at + width - 1; i >= at; i--) {
            c[i] = (char) ('0' + v % 10);
            v /= 10;
        }
    }

    // ---- ce_time ----
    //
    // Switchyard parses ce_time as RFC 3339 and hands plugins the instant
    // re-rendered in UTC with exactly three fraction digits and `Z`
    // (e.g. 2026-01-05T10:00:00.000Z); the aggregator stores that text and
    // its milliseconds. The generator writes that form already, so the
    // common case is checked and used as is; anything else goes through
    // java.time.

    private static final DateTimeFormatter CANONICAL =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    private static final int[] DIGITS = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22};

    private static boolean canonical(String t) {
        if (t.length() != 24 || t.charAt(4) != '-' || t.charAt(7) != '-' || t.charAt(10) != 'T'
                || t.charAt(13) != ':' || t.charAt(16) != ':' || t.charAt(19) != '.' || t.charAt(23) != 'Z') {
            return false;
        }
        for (int i : DIGITS) {
            char ch = t.charAt(i);
            if (ch < '0' || ch > '9') {
                return false;
            }
        }
        return true;
    }

    private static int num(String t, int from, int to) {
        int v = 0;
        for (int i = from; i < to; i++) {
            v = v * 10 + (t.charAt(i) - '0');
        }
        return v;
    }

    static long timeMillis(String t) throws BadEvent {
        if (canonical(t)) {
            int year = num(t, 0, 4);
            int month = num(t, 5, 7);
            int day = num(t, 8, 10);
            int hour = num(t, 11, 13);
            int minute = num(t, 14, 16);
            int second = num(t, 17, 19);
            if (month >= 1 && month <= 12 && day >= 1 && day <= LocalDate.of(year, month, 1).lengthOfMonth()
                    && hour <= 23 && minute <= 59 && second <= 59) {
                long days = LocalDate.of(year, month, day).toEpochDay();
                return ((days * 86_400L + hour * 3_600L + minute * 60L + second) * 1_000L) + num(t, 20, 23);
            }
            throw new BadEvent("ce_time `" + t + "` is not a valid date-time");
        }
        try {
            Instant at = OffsetDateTime.parse(t, DateTimeFormatter.ISO_OFFSET_DATE_TIME).toInstant();
            return at.truncatedTo(ChronoUnit.MILLIS).toEpochMilli();
        } catch (RuntimeException e) {
            throw new BadEvent("ce_time `" + t + "` is not RFC 3339", e);
        }
    }

    static String format(long millis) {
        return CANONICAL.format(Instant.ofEpochMilli(millis));
    }
}
