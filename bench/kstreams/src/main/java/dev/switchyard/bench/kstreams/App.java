package dev.switchyard.bench.kstreams;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The Kafka Streams counterpart of a Switchyard deployment with the
 * finalized-status route and the claim appeal aggregator.
 *
 * <pre>
 * java -jar target/kstreams-bench.jar [--bootstrap HOST:PORT] [--application-id ID]
 *     [--input-topic claim] [--threads 1] [--commit-interval-ms 100] [--state-dir DIR]
 *     [--routed-topic bench.routed] [--summaries-topic bench.summaries]
 * </pre>
 *
 * Each option can also come from the environment (BOOTSTRAP_SERVERS,
 * APPLICATION_ID, INPUT_TOPIC, NUM_STREAM_THREADS, COMMIT_INTERVAL_MS,
 * STATE_DIR, ROUTED_TOPIC, SUMMARIES_TOPIC); an argument wins over the
 * environment. On stdout the app prints one machine-readable line per
 * milestone: {@code kstreams-bench started <epoch ms>}, {@code kstreams-bench
 * running <epoch ms>} (the first time the client reaches RUNNING) and
 * {@code kstreams-bench stopped <epoch ms> ...counters}.
 */
public final class App {
    private App() {}

    /** Option name to [environment variable, default]. */
    private static final Map<String, String[]> OPTIONS = new LinkedHashMap<>();

    static {
        OPTIONS.put("bootstrap", new String[] {"BOOTSTRAP_SERVERS", "127.0.0.1:29092"});
        OPTIONS.put("application-id", new String[] {"APPLICATION_ID", "switchyard-bench-kstreams"});
        OPTIONS.put("input-topic", new String[] {"INPUT_TOPIC", "claim"});
        OPTIONS.put("threads", new String[] {"NUM_STREAM_THREADS", "1"});
        OPTIONS.put("commit-interval-ms", new String[] {"COMMIT_INTERVAL_MS", "100"});
        OPTIONS.put("state-dir", new String[] {"STATE_DIR", null});
        OPTIONS.put("routed-topic", new String[] {"ROUTED_TOPIC", "bench.routed"});
        OPTIONS.put("summaries-topic", new String[] {"SUMMARIES_TOPIC", "bench.summaries"});
    }

    static final String STORE = "claim-appeal-summaries";

    public static void main(String[] args) throws InterruptedException {
        long started = System.currentTimeMillis();
        // slf4j-simple reads these when the first logger is made.
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel",
                System.getenv().getOrDefault("LOG_LEVEL", "warn"));
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
        System.setProperty("org.slf4j.simpleLogger.dateTimeFormat", "HH:mm:ss.SSS");
        Map<String, String> opts = parse(args);
        milestone("started", started, "");
        Topology topology = topology(opts.get("input-topic"), opts.get("routed-topic"), opts.get("summaries-topic"));
        System.err.println(topology.describe());

        KafkaStreams streams = new KafkaStreams(topology, config(opts));
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean announced = new AtomicBoolean();
        streams.setStateListener((now, before) -> {
            System.err.printf("kstreams-bench: state %s -> %s%n", before, now);
            if (now == KafkaStreams.State.RUNNING && announced.compareAndSet(false, true)) {
                milestone("running", System.currentTimeMillis(), "");
            }
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kstreams-bench: stream thread failed: " + e);
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            stopped.countDown();
            milestone("stopped", System.currentTimeMillis(), String.format(
                    " decoded=%d ignored=%d refused=%d routed=%d summaries=%d",
                    Processors.DECODED.sum(), Processors.IGNORED.sum(), Processors.REFUSED.sum(),
                    Processors.ROUTED.sum(), Processors.SUMMARIES.sum()));
        }, "kstreams-bench-shutdown"));

        streams.start();
        stopped.await();
        // Reached on a fatal error (a signal ends the process via the hook).
        if (streams.state() == KafkaStreams.State.ERROR) {
            System.exit(1);
        }
    }

    private static void milestone(String what, long at, String extra) {
        System.out.println("kstreams-bench " + what + " " + at + extra);
        System.out.flush();
    }

    static Topology topology(String inputTopic, String routedTopic, String summariesTopic) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, ClaimEvent> events = builder
                .stream(inputTopic, Consumed.with(Serdes.String(), Serdes.ByteArray()).withName("input"))
                .processValues(Processors.Decode::new, Named.as("decode"));

        // Routing: finalized statuses, forwarded as they came plus a route header.
        events.filter((key, event) -> event.isFinalizedStatus(), Named.as("finalized-statuses"))
                .processValues(Processors.Route::new, Named.as("route"))
                .to(routedTopic, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("routed"));

        // Aggregation: every event folded into its claim's summary; caching is
        // off so each event's update is written, as the Switchyard aggregator
        // emits one summary per event.
        events.groupByKey(Grouped.with("by-claim", Serdes.String(), BenchSerdes.claimEvent()))
                .aggregate(Summary::new, (key, event, summary) -> summary.fold(event), Named.as("aggregate"),
                        Materialized.<String, Summary, KeyValueStore<Bytes, byte[]>>as(STORE)
                                .withKeySerde(Serdes.String())
                                .withValueSerde(BenchSerdes.summary())
                                .withCachingDisabled())
                .toStream(Named.as("summary-updates"))
                .processValues(Processors.SummaryJson::new, Named.as("summary-json"))
                .to(summariesTopic, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("summaries"));
        return builder.build();
    }

    static Properties config(Map<String, String> opts) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, opts.get("application-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, opts.get("bootstrap"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(opts.get("threads")));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(opts.get("commit-interval-ms")));
        if (opts.get("state-dir") != null) {
            p.put(StreamsConfig.STATE_DIR_CONFIG, opts.get("state-dir"));
        }
        return p;
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new LinkedHashMap<>();
        for (Map.Entry<String, String[]> o : OPTIONS.entrySet()) {
            String env = System.getenv(o.getValue()[0]);
            opts.put(o.getKey(), env != null && !env.isEmpty() ? env : o.getValue()[1]);
        }
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("-h") || a.equals("--help")) {
                System.out.println("options (environment variable, default):");
                OPTIONS.forEach((k, v) -> System.out.printf("  --%s  (%s, %s)%n", k, v[0], v[1]));
                System.exit(0);
            }
            String name;
            String value;
            if (a.startsWith("--") && a.contains("=")) {
                name = a.substring(2, a.indexOf('='));
                value = a.substring(a.indexOf('=') + 1);
            } else if (a.startsWith("--") && i + 1 < args.length) {
                name = a.substring(2);
                value = args[++i];
            } else {
                throw new IllegalArgumentException("unexpected argument `" + a + "`; see --help");
            }
            if (!OPTIONS.containsKey(name)) {
                throw new IllegalArgumentException("unknown option --" + name + "; see --help");
            }
            opts.put(name, value);
        }
        return opts;
    }
}
