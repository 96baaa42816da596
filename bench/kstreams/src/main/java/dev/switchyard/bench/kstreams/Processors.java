package dev.switchyard.bench.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.LongAdder;

import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.processor.api.ContextualFixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The value-only steps of the topology; none of them changes a key, so nothing is repartitioned. */
final class Processors {
    private Processors() {}

    private static final Logger LOG = LoggerFactory.getLogger(Processors.class);

    static final LongAdder DECODED = new LongAdder();
    static final LongAdder IGNORED = new LongAdder();
    static final LongAdder REFUSED = new LongAdder();
    static final LongAdder ROUTED = new LongAdder();
    static final LongAdder SUMMARIES = new LongAdder();

    static final String ROUTE_HEADER = "switchyard-route";
    static final byte[] ROUTE = "finalized-statuses".getBytes(StandardCharsets.UTF_8);
    static final byte[] JSON = "application/json".getBytes(StandardCharsets.UTF_8);

    /**
     * Raw record to {@link ClaimEvent}. Records of other event types are
     * dropped quietly; records Switchyard would refuse (no envelope, bad
     * body) are dropped with a warning, as Switchyard does not fold them either.
     */
    static final class Decode extends ContextualFixedKeyProcessor<String, byte[], ClaimEvent> {
        private final EventDecoder decoder = new EventDecoder();

        @Override
        public void process(FixedKeyRecord<String, byte[]> record) {
            if (record.key() == null) {
                REFUSED.increment();
                LOG.warn("skipping a record without key");
                return;
            }
            ClaimEvent event;
            try {
                event = decoder.decode(record.value(), record.headers());
            } catch (EventDecoder.BadEvent e) {
                REFUSED.increment();
                LOG.warn("skipping record with key {}: {}", record.key(), e.getMessage());
                return;
            }
            if (event == null) {
                IGNORED.increment();
                return;
            }
            DECODED.increment();
            context().forward(record.withValue(event));
        }
    }

    /**
     * The original value bytes and headers, plus the route header. The
     * headers are copied: the aggregation branch sees the same record.
     */
    static final class Route extends ContextualFixedKeyProcessor<String, ClaimEvent, byte[]> {
        @Override
        public void process(FixedKeyRecord<String, ClaimEvent> record) {
            RecordHeaders headers = new RecordHeaders(record.headers().toArray());
            headers.add(ROUTE_HEADER, ROUTE);
            ROUTED.increment();
            context().forward(record.withValue(record.value().raw).withHeaders(headers));
        }
    }

    /** A summary as JSON; the input event's CloudEvents headers are not carried over. */
    static final class SummaryJson extends ContextualFixedKeyProcessor<String, Summary, byte[]> {
        @Override
        public void process(FixedKeyRecord<String, Summary> record) {
            if (record.value() == null) {
                return;
            }
            RecordHeaders headers = new RecordHeaders();
            headers.add("content-type", JSON);
            SUMMARIES.increment();
            context().forward(record.withValue(record.value().toJson()).withHeaders(headers));
        }
    }
}
