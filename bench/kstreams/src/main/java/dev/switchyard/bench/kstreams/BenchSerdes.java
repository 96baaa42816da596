package dev.switchyard.bench.kstreams;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** Serdes for the state store (summaries) and, should the topology ever repartition, decoded events. */
final class BenchSerdes {
    private BenchSerdes() {}

    static Serde<Summary> summary() {
        Serializer<Summary> ser = (topic, s) -> s == null ? null : s.serialize();
        Deserializer<Summary> de = (topic, b) -> b == null ? null : Summary.deserialize(b);
        return Serdes.serdeFrom(ser, de);
    }

    /**
     * Decoded events. The topology groups by the key it consumed, so Kafka
     * Streams does not repartition and never calls this; it is here so a
     * change that does repartition still works. The raw value is not kept.
     */
    static Serde<ClaimEvent> claimEvent() {
        Serializer<ClaimEvent> ser = (topic, e) -> {
            if (e == null) {
                return null;
            }
            Bin.Writer w = new Bin.Writer();
            w.writeByte(e.kind.ordinal());
            w.writeString(e.id);
            w.writeString(e.time);
            w.writeLong(e.timeMillis);
            w.writeString(e.claimId);
            w.writeNullable(e.providerId);
            w.writeNullable(e.category);
            w.writeNullable(e.code);
            w.writeNullable(e.effectiveDate);
            return w.toBytes();
        };
        Deserializer<ClaimEvent> de = (topic, b) -> {
            if (b == null) {
                return null;
            }
            Bin.Reader r = new Bin.Reader(b);
            ClaimEvent.Kind kind = ClaimEvent.Kind.values()[r.readByte()];
            return new ClaimEvent(kind, r.readString(), r.readString(), r.readLong(), r.readString(),
                    r.readNullable(), r.readNullable(), r.readNullable(), r.readNullable(), null);
        };
        return Serdes.serdeFrom(ser, de);
    }
}
